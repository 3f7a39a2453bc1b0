/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Capture sources. Live interfaces use libpcap with a large TPACKET_V3 ring and
 * non-blocking dispatch from the event loop; files are read with our own reader
 * (pcapng files may mix link types, which libpcap cannot) and filtered with
 * pcap_offline_filter() using one compiled program per link type.
 */
#include "sensor/capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "shared/log.h"
#include "shared/pcapfile.h"

/* Records read from a file per idle callback: large enough to amortise the loop,
 * small enough to keep the loop responsive to ACKs and timers. */
#define CAPTURE_FILE_CHUNK  2048
/* Dispatch rounds per readable event, so one busy interface cannot starve the rest. */
#define CAPTURE_LIVE_ROUNDS 16

struct capture_live {
	pcap_t *pcap;
	ev_io io;
	struct capture *owner;
	uint16_t index;
	char name[PROTO_MAX_IFNAME + 1];
	uint32_t linktype;
};

struct capture {
	struct capture_opts o;
	struct ev_loop *loop;
	bool paused;
	/* Live sources. */
	struct capture_live *live;
	size_t n_live;
	/* File source. */
	struct pcapr *file;
	ev_idle idle;
	bool done;
	int file_err;
	struct bpf_program *progs; /* one per file interface, bf_insns NULL if no filter */
	bool have_filter;
	struct capture_stats st;
};

static char *
capture_expr(const char *user, const char *exclude)
{
	bool u = user && *user, x = exclude && *exclude;
	size_t n = (u ? strlen(user) : 0) + (x ? strlen(exclude) : 0) + 32;
	char *s = malloc(n);
	if (!s)
		return NULL;
	if (u && x)
		snprintf(s, n, "(%s) and not (%s)", user, exclude);
	else if (u)
		snprintf(s, n, "%s", user);
	else if (x)
		snprintf(s, n, "not (%s)", exclude);
	else
		s[0] = '\0';
	return s;
}

/* ---- live interfaces ---------------------------------------------------- */

static void
capture_live_packet(u_char *arg, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct capture_live *l = (struct capture_live *)arg;
	struct capture *c = l->owner;
	/* The handle was opened with nanosecond precision, so tv_usec holds nanoseconds. */
	uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
	c->st.captured++;
	c->st.bytes += h->caplen;
	c->o.cb(c->o.cb_arg, l->index, ts, bytes, h->caplen, h->len);
}

static void
capture_live_dispatch(struct capture_live *l)
{
	for (int round = 0; round < CAPTURE_LIVE_ROUNDS; round++) {
		int n = pcap_dispatch(l->pcap, -1, capture_live_packet, (u_char *)l);
		if (n == 0 || n == PCAP_ERROR_BREAK)
			return;
		if (n < 0) {
			static struct log_limit lim;
			if (log_limit_ok(&lim, 5, 10))
				log_warnx("capture: %s: %s", l->name, pcap_geterr(l->pcap));
			return;
		}
	}
}

static void
capture_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct capture_live *l = w->data;
	capture_live_dispatch(l);
}

static int
capture_live_filter(struct capture_live *l, const char *expr, char *err, size_t errlen)
{
	struct bpf_program prog;
	if (pcap_compile(l->pcap, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) != 0) {
		snprintf(err, errlen, "capture: invalid filter '%s': %s", expr, pcap_geterr(l->pcap));
		return -1;
	}
	int rc = pcap_setfilter(l->pcap, &prog);
	pcap_freecode(&prog);
	if (rc != 0) {
		snprintf(err, errlen, "capture: %s: cannot set filter: %s", l->name, pcap_geterr(l->pcap));
		return -1;
	}
	return 0;
}

static int
capture_live_open(struct capture *c, size_t i, const char *expr, char *err, size_t errlen)
{
	struct capture_live *l = &c->live[i];
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	const char *name = c->o.ifaces[i];
	l->owner = c;
	l->index = (uint16_t)i;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->pcap = pcap_create(name, ebuf);
	if (!l->pcap) {
		snprintf(err, errlen, "capture: %s: %s", name, ebuf);
		return -1;
	}
	pcap_set_snaplen(l->pcap, (int)c->o.snaplen);
	pcap_set_promisc(l->pcap, c->o.promisc ? 1 : 0);
	pcap_set_buffer_size(l->pcap, (int)(c->o.buffer_bytes > 0x7fffffff ? 0x7fffffff : c->o.buffer_bytes));
	/* The ring's block timeout bounds latency at low rates; batching does the rest. */
	pcap_set_timeout(l->pcap, 50);
	pcap_set_tstamp_precision(l->pcap, PCAP_TSTAMP_PRECISION_NANO);
	int rc = pcap_activate(l->pcap);
	if (rc == PCAP_ERROR_NO_SUCH_DEVICE) {
		snprintf(err, errlen, "capture: interface '%s' does not exist", name);
		return -1;
	}
	if (rc == PCAP_ERROR_PERM_DENIED) {
		snprintf(err, errlen, "capture: %s: permission denied (needs CAP_NET_RAW): %s", name,
			pcap_geterr(l->pcap));
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "capture: %s: %s", name, pcap_geterr(l->pcap));
		return -1;
	}
	if (rc > 0)
		log_warnx("capture: %s: %s", name, pcap_geterr(l->pcap));
	if (pcap_get_tstamp_precision(l->pcap) != PCAP_TSTAMP_PRECISION_NANO) {
		snprintf(err, errlen, "capture: %s: nanosecond timestamps are not supported", name);
		return -1;
	}
	l->linktype = (uint32_t)pcap_datalink(l->pcap);
	if (*expr && capture_live_filter(l, expr, err, errlen) != 0)
		return -1;
	if (pcap_setnonblock(l->pcap, 1, ebuf) != 0) {
		snprintf(err, errlen, "capture: %s: %s", name, ebuf);
		return -1;
	}
	int fd = pcap_get_selectable_fd(l->pcap);
	if (fd < 0) {
		snprintf(err, errlen, "capture: %s: no selectable descriptor", name);
		return -1;
	}
	ev_io_init(&l->io, capture_on_readable, fd, EV_READ);
	l->io.data = l;
	return 0;
}

/* ---- capture files ------------------------------------------------------ */

static int
capture_file_compile(struct capture *c, const char *expr, struct bpf_program *progs, char *err, size_t errlen)
{
	size_t n = pcapr_iface_count(c->file);
	for (size_t i = 0; i < n; i++) {
		const struct pcapf_iface *fi = pcapr_iface(c->file, i);
		pcap_t *dead = pcap_open_dead_with_tstamp_precision(
			(int)fi->linktype, (int)c->o.snaplen, PCAP_TSTAMP_PRECISION_NANO);
		if (!dead) {
			snprintf(
				err, errlen, "capture: cannot compile filter for link type %u", fi->linktype);
			return -1;
		}
		if (pcap_compile(dead, &progs[i], expr, 1, PCAP_NETMASK_UNKNOWN) != 0) {
			snprintf(err, errlen, "capture: invalid filter '%s': %s", expr, pcap_geterr(dead));
			pcap_close(dead);
			return -1;
		}
		pcap_close(dead);
	}
	return 0;
}

static void
capture_file_free_progs(struct bpf_program *progs, size_t n)
{
	if (!progs)
		return;
	for (size_t i = 0; i < n; i++)
		pcap_freecode(&progs[i]);
	free(progs);
}

static void
capture_on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct capture *c = w->data;
	struct pcapf_rec rec;
	for (int i = 0; i < CAPTURE_FILE_CHUNK && !c->paused; i++) {
		int rc = pcapr_next(c->file, &rec);
		if (rc <= 0) {
			c->file_err = rc;
			c->done = true;
			ev_idle_stop(loop, w);
			return;
		}
		uint32_t caplen = rec.caplen > c->o.snaplen ? c->o.snaplen : rec.caplen;
		if (c->have_filter) {
			struct pcap_pkthdr h = { .caplen = caplen, .len = rec.origlen };
			if (!pcap_offline_filter(&c->progs[rec.iface], &h, rec.data)) {
				c->st.filtered_out++;
				continue;
			}
		}
		c->st.captured++;
		c->st.bytes += caplen;
		c->o.cb(c->o.cb_arg, (uint16_t)rec.iface, rec.ts_ns, rec.data, caplen, rec.origlen);
	}
}

/* ---- common ------------------------------------------------------------- */

struct capture *
capture_open(const struct capture_opts *o, char *err, size_t errlen)
{
	struct capture *c = calloc(1, sizeof(*c));
	char *expr = capture_expr(o->filter, o->exclude);
	if (!c || !expr) {
		snprintf(err, errlen, "capture: out of memory");
		goto fail;
	}
	c->o = *o;
	if (o->filter && *o->filter) {
		/* Check the user's expression on its own first, so that an error names only it. */
		pcap_t *dead = pcap_open_dead(DLT_EN10MB, PROTO_MAX_SNAPLEN);
		struct bpf_program prog;
		if (dead && pcap_compile(dead, &prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
			snprintf(err, errlen, "capture: invalid filter '%s': %s", o->filter,
				pcap_geterr(dead));
			pcap_close(dead);
			goto fail;
		}
		if (dead) {
			pcap_freecode(&prog);
			pcap_close(dead);
		}
	}
	if (o->file && *o->file) {
		int e = 0;
		c->file = pcapr_open(o->file, &e);
		if (!c->file) {
			snprintf(err, errlen, "capture: cannot read %s: %s", o->file, pcapf_strerror(e));
			goto fail;
		}
		size_t n = pcapr_iface_count(c->file);
		if (n == 0 || n > PROTO_MAX_IFACES) {
			snprintf(err, errlen, "capture: %s: %zu interfaces (1..%d supported)", o->file, n,
				PROTO_MAX_IFACES);
			goto fail;
		}
		if (*expr) {
			c->progs = calloc(n, sizeof(*c->progs));
			if (!c->progs || capture_file_compile(c, expr, c->progs, err, errlen) != 0)
				goto fail;
			c->have_filter = true;
		}
		ev_idle_init(&c->idle, capture_on_idle);
		c->idle.data = c;
	} else {
		if (o->n_ifaces == 0 || o->n_ifaces > PROTO_MAX_IFACES) {
			snprintf(err, errlen, "capture: %zu interfaces configured (1..%d supported)",
				o->n_ifaces, PROTO_MAX_IFACES);
			goto fail;
		}
		c->live = calloc(o->n_ifaces, sizeof(*c->live));
		if (!c->live) {
			snprintf(err, errlen, "capture: out of memory");
			goto fail;
		}
		c->n_live = o->n_ifaces;
		for (size_t i = 0; i < o->n_ifaces; i++)
			if (capture_live_open(c, i, expr, err, errlen) != 0)
				goto fail;
	}
	free(expr);
	return c;
fail:
	free(expr);
	capture_close(c);
	return NULL;
}

void
capture_start(struct capture *c, struct ev_loop *loop)
{
	c->loop = loop;
	c->paused = false;
	if (c->file) {
		ev_idle_start(loop, &c->idle);
		return;
	}
	for (size_t i = 0; i < c->n_live; i++)
		ev_io_start(loop, &c->live[i].io);
}

void
capture_pause(struct capture *c)
{
	if (c->paused)
		return;
	c->paused = true;
	if (c->file) {
		ev_idle_stop(c->loop, &c->idle);
		return;
	}
	for (size_t i = 0; i < c->n_live; i++)
		ev_io_stop(c->loop, &c->live[i].io);
}

void
capture_resume(struct capture *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	if (c->file) {
		if (!c->done)
			ev_idle_start(c->loop, &c->idle);
		return;
	}
	for (size_t i = 0; i < c->n_live; i++)
		ev_io_start(c->loop, &c->live[i].io);
}

bool
capture_done(const struct capture *c)
{
	return c->file && c->done;
}
bool
capture_is_file(const struct capture *c)
{
	return c->file != NULL;
}

void
capture_drain(struct capture *c)
{
	for (size_t i = 0; i < c->n_live; i++)
		capture_live_dispatch(&c->live[i]);
}

size_t
capture_iface_count(const struct capture *c)
{
	return c->file ? pcapr_iface_count(c->file) : c->n_live;
}

void
capture_iface(const struct capture *c, size_t i, struct proto_iface *out)
{
	memset(out, 0, sizeof(*out));
	if (c->file) {
		const struct pcapf_iface *fi = pcapr_iface(c->file, i);
		out->linktype = fi->linktype;
		out->snaplen = fi->snaplen < c->o.snaplen && fi->snaplen > 0 ? fi->snaplen : c->o.snaplen;
		snprintf(out->name, sizeof(out->name), "%s", fi->name);
	} else {
		out->linktype = c->live[i].linktype;
		out->snaplen = c->o.snaplen;
		snprintf(out->name, sizeof(out->name), "%s", c->live[i].name);
	}
}

void
capture_stats(struct capture *c, struct capture_stats *out)
{
	uint64_t drop = 0, ifdrop = 0;
	for (size_t i = 0; i < c->n_live; i++) {
		struct pcap_stat ps;
		if (pcap_stats(c->live[i].pcap, &ps) == 0) {
			drop += ps.ps_drop;
			ifdrop += ps.ps_ifdrop;
		}
	}
	c->st.kernel_drops = drop;
	c->st.if_drops = ifdrop;
	*out = c->st;
}

int
capture_set_filter(struct capture *c, const char *filter, char *err, size_t errlen)
{
	char *expr = capture_expr(filter, c->o.exclude);
	if (!expr) {
		snprintf(err, errlen, "capture: out of memory");
		return -1;
	}
	int rc = 0;
	if (c->file) {
		size_t n = pcapr_iface_count(c->file);
		struct bpf_program *progs = calloc(n, sizeof(*progs));
		if (!*expr) {
			capture_file_free_progs(c->progs, n);
			c->progs = progs;
			c->have_filter = false;
		} else if (!progs || capture_file_compile(c, expr, progs, err, errlen) != 0) {
			capture_file_free_progs(progs, n);
			rc = -1;
		} else {
			capture_file_free_progs(c->progs, n);
			c->progs = progs;
			c->have_filter = true;
		}
	} else {
		/* pcap_setfilter swaps the kernel filter atomically: no packet escapes both. */
		for (size_t i = 0; i < c->n_live && rc == 0; i++)
			rc = capture_live_filter(&c->live[i], *expr ? expr : "", err, errlen);
	}
	free(expr);
	return rc;
}

int
capture_file_error(const struct capture *c, char *err, size_t errlen)
{
	if (!c->file || c->file_err == 0)
		return 0;
	snprintf(err, errlen, "capture: %s: %s", c->o.file, pcapf_strerror(c->file_err));
	return c->file_err;
}

void
capture_close(struct capture *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_live; i++) {
		if (c->loop)
			ev_io_stop(c->loop, &c->live[i].io);
		if (c->live[i].pcap)
			pcap_close(c->live[i].pcap);
	}
	free(c->live);
	if (c->file) {
		if (c->loop)
			ev_idle_stop(c->loop, &c->idle);
		capture_file_free_progs(c->progs, pcapr_iface_count(c->file));
		pcapr_close(c->file);
	}
	free(c);
}
