/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/outputs/live.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <linux/sockios.h>
#include <pcap/pcap.h>

#include "shared/fsutil.h"
#include "shared/log.h"
#include "shared/pcapfile.h"

#define LIVE_SNAPLEN     262144
/* Link types one consumer compiles its filter for (each sensor interface brings one). */
#define LIVE_MAX_PROGS   8
#define LIVE_TICK_MS     200
#define LIVE_COALESCE_MS 10 /* the hub looks at most this often while batches come */

/* One stored batch waiting for the hub thread; a gap (raw_len 0, gap records) stands for
 * a batch the backlog had no room for. Followed by its interfaces and its records. */
struct live_batch {
	struct live_batch *next;
	size_t size;
	uint32_t raw_len, n_records;
	uint32_t gap; /* records not copied (a gap): all dropped as gap_why */
	enum live_drop gap_why;
	uint16_t n_ifaces;
	uint32_t max_snaplen;
	char sensor[PROTO_MAX_ID + 1];
	struct proto_iface *ifaces;
	uint8_t *raw;
};

struct live_prog {
	uint32_t linktype;
	bool ok; /* compiled; else records of this link type are LIVE_DROP_FILTER */
	struct bpf_program prog;
};

struct live_ng_if {
	char sensor[PROTO_MAX_ID + 1];
	uint16_t iface;
	uint32_t linktype;
	char name[PROTO_MAX_IFNAME + 1];
};

struct live_consumer {
	struct live_consumer *prev, *next; /* hub.cons, under hub.cmu */
	uint64_t id;
	char name[96];
	char **sensors;
	size_t n_sensors;
	char *filter;
	enum live_format format;
	int fd;
	/* The hub thread's alone. */
	struct live_prog progs[LIVE_MAX_PROGS];
	unsigned n_progs;
	bool header_done;
	uint32_t linktype;
	struct live_ng_if *ng_if;
	unsigned n_ng_if;
	struct pcapw *w;
	bool filter_warned;
	/* The queue: a ring of cap bytes, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *ring;
	size_t cap, head, used;
	struct timespec waiting_since; /* when unread bytes last started to wait, or last read */
	int last_outq;                 /* bytes in fd's send queue when last looked at */
	bool cut;
	bool hungry; /* counted in hub.n_hungry: see live_hungry_update() */
	/* Counters, under mu. */
	uint64_t packets, bytes, drops[LIVE_DROP_N];
};

static struct {
	bool inited;
	struct live_opts o;
	atomic_uint n_cons;   /* consumers now: live_feed()'s fast check */
	atomic_uint n_hungry; /* consumers that may take a batch now: else it is not copied */
	atomic_bool stopping; /* live_shutdown() */
	pthread_t th;
	/* Backlog, under bmu. */
	pthread_mutex_t bmu;
	pthread_cond_t bcv;
	struct live_batch *head, *tail;
	size_t backlog;
	bool stop;
	/* Consumers, under cmu (held by the hub thread while it delivers a batch). */
	pthread_mutex_t cmu;
	struct live_consumer *cons;
	uint64_t next_id;
	/* Totals, under smu. */
	pthread_mutex_t smu;
	uint64_t consumers_total, cut_off, refused, packets, drops[LIVE_DROP_N];
} hub = {
	.bmu = PTHREAD_MUTEX_INITIALIZER,
	.bcv = PTHREAD_COND_INITIALIZER,
	.cmu = PTHREAD_MUTEX_INITIALIZER,
	.smu = PTHREAD_MUTEX_INITIALIZER,
};

const char *
live_drop_name(enum live_drop d)
{
	static const char *const names[LIVE_DROP_N] = { "queue_full", "backlog", "linktype",
		"filter_linktype", "format" };
	return (unsigned)d < LIVE_DROP_N ? names[d] : "?";
}

static double
live_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Whether a consumer may take records now: its queue has LIVE_HUNGRY_ROOM free, or it
 * has a filter (what a batch holds for it is known only by filtering it). A batch no
 * consumer may take is not copied: each that wants it counts its records as queue_full,
 * as it would have one by one, at the cost of a counter. Under c->mu. */
#define LIVE_HUNGRY_ROOM (64u * 1024)
static void
live_hungry_update(struct live_consumer *c)
{
	bool h = !c->cut && (c->filter != NULL || c->cap - c->used >= LIVE_HUNGRY_ROOM);

	if (h == c->hungry)
		return;
	c->hungry = h;
	if (h)
		atomic_fetch_add(&hub.n_hungry, 1);
	else
		atomic_fetch_sub(&hub.n_hungry, 1);
}

/* Backlog ------------------------------------------------------------------------------ */

bool
live_active(void)
{
	return atomic_load_explicit(&hub.n_cons, memory_order_relaxed) != 0;
}

void
live_feed(const char *sensor, const struct proto_iface *ifaces, uint16_t n_ifaces, const uint8_t *raw,
	uint32_t raw_len, uint32_t n_records)
{
	if (!live_active() || !hub.inited || n_ifaces == 0 || n_ifaces > PROTO_MAX_IFACES)
		return;
	size_t ifs = n_ifaces * sizeof(*ifaces);
	bool hungry = atomic_load_explicit(&hub.n_hungry, memory_order_relaxed) != 0;
	pthread_mutex_lock(&hub.bmu);
	bool backlog_room = hub.backlog + raw_len <= LIVE_BACKLOG_BYTES && !hub.stop;
	bool room = backlog_room && hungry;
	enum live_drop why = backlog_room ? LIVE_DROP_QUEUE : LIVE_DROP_BACKLOG;
	struct live_batch *t = hub.tail;
	if (!room && t && t->gap && t->gap_why == why && strcmp(t->sensor, sensor) == 0 &&
		t->gap <= UINT32_MAX - n_records) {
		/* A gap after a gap of the same sensor: the hub counts both at once when it
		 * next looks (at its tick), without a wake-up per batch; waking it for every
		 * batch nobody can take cost storage a tenth of its speed on two CPUs. */
		t->gap += n_records;
		pthread_mutex_unlock(&hub.bmu);
		return;
	}
	pthread_mutex_unlock(&hub.bmu);
	/* Without room (the hub is behind, or every consumer's queue is full) only the gap
	 * itself is queued, so that the consumers that wanted the batch count it as theirs. */
	size_t size = sizeof(struct live_batch) + ifs + (room ? raw_len : 0);
	struct live_batch *b = malloc(size);
	if (!b)
		return; /* out of memory: the consumers see a gap in time, nothing else to do */
	memset(b, 0, sizeof(*b));
	b->size = size;
	b->n_ifaces = n_ifaces;
	b->ifaces = (struct proto_iface *)(void *)(b + 1);
	memcpy(b->ifaces, ifaces, ifs);
	for (uint16_t i = 0; i < n_ifaces; i++)
		if (ifaces[i].snaplen > b->max_snaplen)
			b->max_snaplen = ifaces[i].snaplen;
	b->raw = (uint8_t *)b->ifaces + ifs;
	snprintf(b->sensor, sizeof(b->sensor), "%s", sensor);
	b->n_records = n_records;
	if (room) {
		memcpy(b->raw, raw, raw_len);
		b->raw_len = raw_len;
	} else {
		b->gap = n_records;
		b->gap_why = why;
	}
	pthread_mutex_lock(&hub.bmu);
	hub.backlog += b->size;
	if (hub.tail)
		hub.tail->next = b;
	else
		hub.head = b;
	hub.tail = b;
	if (room)
		pthread_cond_signal(&hub.bcv); /* records to deliver now; a gap waits for the tick */
	pthread_mutex_unlock(&hub.bmu);
}

/* Delivery (hub thread) ---------------------------------------------------------------- */

static void
live_count(struct live_consumer *c, enum live_drop why, uint64_t n)
{
	pthread_mutex_lock(&c->mu);
	c->drops[why] += n;
	pthread_mutex_unlock(&c->mu);
}

/* pcapw's sink: into the consumer's ring. The hub reserved the room before writing. */
static int
live_sink(void *arg, const void *buf, size_t len)
{
	struct live_consumer *c = arg;
	const uint8_t *p = buf;
	pthread_mutex_lock(&c->mu);
	if (len > c->cap - c->used) {
		pthread_mutex_unlock(&c->mu);
		return -ENOSPC; /* a reservation bug: the consumer is cut off, never overrun */
	}
	if (c->used == 0)
		clock_gettime(CLOCK_MONOTONIC, &c->waiting_since);
	size_t tail = (c->head + c->used) % c->cap, first = c->cap - tail;
	if (first > len)
		first = len;
	memcpy(c->ring + tail, p, first);
	memcpy(c->ring, p + first, len - first);
	c->used += len;
	live_hungry_update(c);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

static bool
live_wants(const struct live_consumer *c, const char *sensor)
{
	if (c->n_sensors == 0)
		return true;
	for (size_t i = 0; i < c->n_sensors; i++)
		if (strcmp(c->sensors[i], sensor) == 0)
			return true;
	return false;
}

/* libpcap's DLT_ value for a LINKTYPE_ value (what travels in HELLO and files): the same
 * number but for the few the registry renumbered (tcpdump.org linktypes). */
static int
live_dlt(uint32_t linktype)
{
	switch (linktype) {
	case 100:
		return DLT_ATM_RFC1483;
	case 101:
		return DLT_RAW;
	case 102:
		return DLT_SLIP_BSDOS;
	case 103:
		return DLT_PPP_BSDOS;
	default:
		return (int)linktype;
	}
}

/* The consumer's filter for a link type, compiled on first use; NULL: no filter. */
static struct live_prog *
live_prog(struct live_consumer *c, uint32_t linktype)
{
	if (!c->filter)
		return NULL;
	for (unsigned i = 0; i < c->n_progs; i++)
		if (c->progs[i].linktype == linktype)
			return &c->progs[i];
	struct live_prog *p = &c->progs[c->n_progs < LIVE_MAX_PROGS ? c->n_progs++ : LIVE_MAX_PROGS - 1];
	if (p->ok)
		pcap_freecode(&p->prog); /* more link types than slots: the last one is reused */
	p->linktype = linktype;
	p->ok = false;
	pcap_t *dead = pcap_open_dead(live_dlt(linktype), LIVE_SNAPLEN);
	if (dead) {
		p->ok = pcap_compile(dead, &p->prog, c->filter, 1, PCAP_NETMASK_UNKNOWN) == 0;
		if (!p->ok && !c->filter_warned) {
			log_warnx("live %s: filter does not apply to link type %u (%s): its packets are "
				  "dropped and counted",
				c->name, linktype, pcap_geterr(dead));
			c->filter_warned = true;
		}
		pcap_close(dead);
	}
	return p;
}

/* The pcapng interface of (sensor, iface), described on first use. -1: no room. */
static int
live_ng_iface(struct live_consumer *c, const struct live_batch *b, uint16_t iface, size_t *need)
{
	const struct proto_iface *pi = &b->ifaces[iface];
	for (unsigned i = 0; i < c->n_ng_if; i++) {
		const struct live_ng_if *n = &c->ng_if[i];
		if (n->iface == iface && n->linktype == pi->linktype && strcmp(n->sensor, b->sensor) == 0 &&
			strcmp(n->name, pi->name) == 0)
			return (int)i;
	}
	if (c->n_ng_if == LIVE_MAX_NG_IFACES || pi->linktype > 0xffff)
		return -1;
	*need = 512; /* an interface description block is at most this (pcapw_ng_iface) */
	return -2;
}

/* True when every record of b would be written but for room: no filter to apply, and
 * a format that takes every interface of b as it is. */
static bool
live_all_fit(const struct live_consumer *c, const struct live_batch *b)
{
	if (c->filter || (c->format == LIVE_PCAP && !c->header_done))
		return false;
	for (uint16_t i = 0; i < b->n_ifaces; i++)
		if (c->format == LIVE_PCAP && b->ifaces[i].linktype != c->linktype)
			return false;
	return c->format == LIVE_PCAP; /* pcapng: interfaces may still need describing */
}

/* Writes the records of one batch that consumer c wants into its queue. */
static void
live_deliver(struct live_consumer *c, const struct live_batch *b)
{
	if (c->cut || !live_wants(c, b->sensor))
		return;
	if (b->gap) {
		live_count(c, b->gap_why, b->gap);
		return;
	}
	pthread_mutex_lock(&c->mu);
	size_t room = c->cap - c->used;
	pthread_mutex_unlock(&c->mu);
	uint64_t start = pcapw_bytes(c->w), drops[LIVE_DROP_N] = { 0 }, packets = 0, bytes = 0;
	struct proto_rec_iter it;
	struct proto_rec r;
	int rc = 0;
	uint32_t seen = 0;
	/* Every record is written but for room: once one does not fit, the queue is full
	 * for this batch, and the rest are queue_full drops without being looked at (a
	 * stuck or slow reader costs next to nothing). */
	bool all_fit = live_all_fit(c, b);
	proto_rec_iter_init(&it, b->raw, b->raw_len, b->n_ifaces, b->max_snaplen);
	while (rc == 0 && proto_rec_next(&it, &r) == 1) {
		uint32_t lt = b->ifaces[r.iface].linktype;
		seen++;
		/* Past 2106 the repository keeps nothing (classic pcap), so neither stream
		 * format gets it: the stream is what was stored. */
		if (r.ts_ns / 1000000000u > UINT32_MAX) {
			drops[LIVE_DROP_FORMAT]++;
			continue;
		}
		size_t used = (size_t)(pcapw_bytes(c->w) - start), need, extra = 0;
		int ngi = 0;
		if (c->format == LIVE_PCAP) {
			if (c->header_done && lt != c->linktype) {
				drops[LIVE_DROP_LINKTYPE]++;
				continue;
			}
			if (!c->header_done)
				extra = 24;
			need = 16 + (size_t)r.caplen;
		} else {
			if ((ngi = live_ng_iface(c, b, r.iface, &extra)) == -1) {
				drops[LIVE_DROP_FORMAT]++;
				continue;
			}
			need = 32 + (size_t)r.caplen + 3;
		}
		struct live_prog *p = live_prog(c, lt);
		if (p && !p->ok) {
			drops[LIVE_DROP_FILTER]++;
			continue;
		}
		if (p) {
			struct pcap_pkthdr h = { .caplen = r.caplen, .len = r.origlen };
			if (!pcap_offline_filter(&p->prog, &h, r.data))
				continue; /* not wanted: not a drop */
		}
		if (used + extra + need > room) {
			if (all_fit) {
				drops[LIVE_DROP_QUEUE] += b->n_records - seen + 1;
				break;
			}
			drops[LIVE_DROP_QUEUE]++;
			continue;
		}
		if (c->format == LIVE_PCAP && !c->header_done) {
			rc = pcapw_pcap_header(c->w, lt, LIVE_SNAPLEN);
			c->header_done = true;
			c->linktype = lt;
		} else if (ngi == -2) {
			struct live_ng_if *n = &c->ng_if[c->n_ng_if];
			char name[PROTO_MAX_ID + PROTO_MAX_IFNAME + 2];
			snprintf(n->sensor, sizeof(n->sensor), "%s", b->sensor);
			snprintf(n->name, sizeof(n->name), "%s", b->ifaces[r.iface].name);
			n->iface = r.iface;
			n->linktype = lt;
			snprintf(name, sizeof(name), "%s/%s", b->sensor, n->name);
			rc = pcapw_ng_iface(c->w, lt, b->ifaces[r.iface].snaplen, name);
			ngi = (int)c->n_ng_if++;
		}
		if (rc == 0)
			rc = pcapw_write_if(c->w, (uint32_t)ngi, r.ts_ns, r.data, r.caplen, r.origlen);
		if (rc == 0) {
			packets++;
			bytes += r.caplen;
		}
	}
	if (rc == 0)
		rc = pcapw_flush(c->w); /* records flushed per batch */
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < LIVE_DROP_N; i++)
		c->drops[i] += drops[i];
	c->packets += packets;
	c->bytes += bytes;
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_lock(&hub.smu);
	hub.packets += packets;
	pthread_mutex_unlock(&hub.smu);
	if (rc != 0) {
		log_warnx("live %s: cannot write its stream: %s; cutting it off", c->name, strerror(-rc));
		pthread_mutex_lock(&c->mu);
		c->cut = true;
		live_hungry_update(c);
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
}

/* Cuts off consumers whose unread bytes have waited longer than live.stall_timeout. */
static void
live_check_stalls(void)
{
	double limit = hub.o.stall_ms / 1000.0;
	for (struct live_consumer *c = hub.cons; c; c = c->next) {
		int outq = -1;
		/* A slow reader's server thread may wait long on a full socket before it reads
		 * its queue again: bytes leaving the socket's send queue are progress too. Only a
		 * reader that moves nothing at all is stuck. */
		if (c->fd >= 0 && ioctl(c->fd, SIOCOUTQ, &outq) != 0)
			outq = -1;
		pthread_mutex_lock(&c->mu);
		if (outq >= 0 && outq != c->last_outq) {
			c->last_outq = outq;
			clock_gettime(CLOCK_MONOTONIC, &c->waiting_since);
		}
		bool cut = !c->cut && c->used > 0 && live_since(&c->waiting_since) > limit;
		if (cut) {
			c->cut = true;
			live_hungry_update(c);
			pthread_cond_broadcast(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
		if (!cut)
			continue;
		log_warnx("live %s: read nothing of its queue for %.1f s (live.stall_timeout): cut off "
			  "(%zu bytes queued, %d unsent in its socket)",
			c->name, limit, c->used, outq);
		pthread_mutex_lock(&hub.smu);
		hub.cut_off++;
		pthread_mutex_unlock(&hub.smu);
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR); /* its server thread sees the end at once */
	}
}

static void *
live_main(void *arg)
{
	bool worked = false;

	pthread_mutex_lock(&hub.bmu);
	while (!hub.stop) {
		if (!hub.head && worked) {
			/* Look again a little later rather than be woken for every batch: a
			 * wake-up per batch takes the CPUs from the sensors and storage; the
			 * stream is a few milliseconds later. */
			struct timespec nap = { 0, LIVE_COALESCE_MS * 1000000L };
			pthread_mutex_unlock(&hub.bmu);
			nanosleep(&nap, NULL);
			pthread_mutex_lock(&hub.bmu);
			worked = false;
			continue;
		}
		if (!hub.head) {
			struct timespec t;
			clock_gettime(CLOCK_REALTIME, &t);
			t.tv_nsec += LIVE_TICK_MS * 1000000L;
			if (t.tv_nsec >= 1000000000L) {
				t.tv_sec++;
				t.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&hub.bcv, &hub.bmu, &t);
		}
		struct live_batch *b = hub.head;
		if (b) {
			hub.head = b->next;
			if (!hub.head)
				hub.tail = NULL;
		}
		pthread_mutex_unlock(&hub.bmu);
		pthread_mutex_lock(&hub.cmu);
		if (b)
			for (struct live_consumer *c = hub.cons; c; c = c->next)
				live_deliver(c, b);
		live_check_stalls();
		pthread_mutex_unlock(&hub.cmu);
		pthread_mutex_lock(&hub.bmu);
		if (b) {
			hub.backlog -= b->size;
			free(b);
			worked = true;
		}
	}
	pthread_mutex_unlock(&hub.bmu);
	return NULL;
}

int
live_init(const struct live_opts *o)
{
	if (hub.inited)
		return -EALREADY;
	hub.o = *o;
	if (hub.o.queue_bytes == 0)
		hub.o.queue_bytes = LIVE_QUEUE_DEFAULT;
	if (hub.o.queue_bytes < LIVE_QUEUE_MIN)
		hub.o.queue_bytes = LIVE_QUEUE_MIN;
	if (hub.o.stall_ms == 0)
		hub.o.stall_ms = LIVE_STALL_DEFAULT_MS;
	if (hub.o.max_consumers == 0)
		hub.o.max_consumers = LIVE_MAX_CONSUMERS;
	hub.stop = false;
	atomic_store(&hub.stopping, false);
	hub.consumers_total = hub.cut_off = hub.refused = hub.packets = 0;
	memset(hub.drops, 0, sizeof(hub.drops));
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&hub.th, NULL, live_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	hub.inited = true;
	return 0;
}

void
live_shutdown(void)
{
	atomic_store(&hub.stopping, true);
	pthread_mutex_lock(&hub.cmu);
	for (struct live_consumer *c = hub.cons; c; c = c->next) {
		pthread_mutex_lock(&c->mu);
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&hub.cmu);
}

void
live_fini(void)
{
	if (!hub.inited)
		return;
	live_shutdown();
	pthread_mutex_lock(&hub.bmu);
	hub.stop = true;
	pthread_cond_signal(&hub.bcv);
	pthread_mutex_unlock(&hub.bmu);
	pthread_join(hub.th, NULL);
	while (hub.head) {
		struct live_batch *b = hub.head;
		hub.head = b->next;
		free(b);
	}
	hub.tail = NULL;
	hub.backlog = 0;
	hub.inited = false;
}

/* Consumers ------------------------------------------------------------------------------ */

static void
live_consumer_destroy(struct live_consumer *c)
{
	for (unsigned i = 0; i < c->n_progs; i++)
		if (c->progs[i].ok)
			pcap_freecode(&c->progs[i].prog);
	for (size_t i = 0; i < c->n_sensors; i++)
		free(c->sensors[i]);
	free(c->sensors);
	free(c->filter);
	free(c->ng_if);
	pcapw_discard(c->w);
	free(c->ring);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

struct live_consumer *
live_consumer_new(const struct live_consumer_opts *o, char *err, size_t errlen)
{
	struct live_consumer *c = NULL;
	int e = ENOMEM;

	if (!hub.inited || atomic_load(&hub.stopping)) {
		snprintf(err, errlen, "the live stream is not running (receiver stopping)");
		errno = ESHUTDOWN;
		return NULL;
	}
	if (o->n_sensors > LIVE_MAX_SENSORS) {
		snprintf(err, errlen, "sensor: more than %d", LIVE_MAX_SENSORS);
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < o->n_sensors; i++) {
		if (!fsu_name_ok(o->sensors[i]) || strlen(o->sensors[i]) > PROTO_MAX_ID) {
			snprintf(err, errlen,
				"sensor: '%.64s' is not a sensor id (letters, digits, '.', '_', '-')",
				o->sensors[i]);
			errno = EINVAL;
			return NULL;
		}
	}
	if (o->filter && *o->filter) {
		/* Checked for Ethernet up front so that a typo is refused at once; each link type
		 * the stream meets compiles it again. */
		pcap_t *dead = pcap_open_dead(DLT_EN10MB, LIVE_SNAPLEN);
		struct bpf_program prog;
		if (!dead) {
			snprintf(err, errlen, "out of memory");
			errno = ENOMEM;
			return NULL;
		}
		if (pcap_compile(dead, &prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
			snprintf(err, errlen, "filter: %.200s", pcap_geterr(dead));
			pcap_close(dead);
			errno = EINVAL;
			return NULL;
		}
		pcap_freecode(&prog);
		pcap_close(dead);
	}
	if (!(c = calloc(1, sizeof(*c))))
		goto nomem;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->fd = o->fd;
	c->last_outq = -1;
	c->format = o->format;
	snprintf(c->name, sizeof(c->name), "%s", o->name ? o->name : "consumer");
	if (o->filter && *o->filter && !(c->filter = strdup(o->filter)))
		goto nomem;
	if (o->n_sensors && !(c->sensors = calloc(o->n_sensors, sizeof(char *))))
		goto nomem;
	for (; c->n_sensors < o->n_sensors; c->n_sensors++)
		if (!(c->sensors[c->n_sensors] = strdup(o->sensors[c->n_sensors])))
			goto nomem;
	if (o->format == LIVE_PCAPNG && !(c->ng_if = calloc(LIVE_MAX_NG_IFACES, sizeof(*c->ng_if))))
		goto nomem;
	c->cap = hub.o.queue_bytes;
	if (!(c->ring = malloc(c->cap)) || !(c->w = pcapw_new_sink(live_sink, c)))
		goto nomem;
	clock_gettime(CLOCK_MONOTONIC, &c->waiting_since);
	if (o->format == LIVE_PCAPNG) {
		char appl[64];
		snprintf(appl, sizeof(appl), "pcapline %s live", PCAPLINE_VERSION);
		/* Ahead of any packet: a pcapng reader has its section header at once. */
		if (pcapw_ng_section(c->w, appl) != 0 || pcapw_flush(c->w) != 0)
			goto nomem;
	}
	pthread_mutex_lock(&hub.cmu);
	if (atomic_load(&hub.n_cons) >= hub.o.max_consumers) {
		pthread_mutex_unlock(&hub.cmu);
		pthread_mutex_lock(&hub.smu);
		hub.refused++;
		pthread_mutex_unlock(&hub.smu);
		snprintf(err, errlen, "%u live consumers already (live.max_consumers)", hub.o.max_consumers);
		e = EBUSY;
		goto fail;
	}
	c->id = ++hub.next_id;
	c->next = hub.cons;
	if (hub.cons)
		hub.cons->prev = c;
	hub.cons = c;
	atomic_fetch_add(&hub.n_cons, 1);
	pthread_mutex_lock(&c->mu);
	live_hungry_update(c);
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&hub.cmu);
	pthread_mutex_lock(&hub.smu);
	hub.consumers_total++;
	pthread_mutex_unlock(&hub.smu);
	log_info("live %s: consumer %" PRIu64 " joined (%s, %zu sensor(s)%s%s)", c->name, c->id,
		c->format == LIVE_PCAPNG ? "pcapng" : "pcap", c->n_sensors, c->filter ? ", filter " : "",
		c->filter ? c->filter : "");
	return c;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	if (c)
		live_consumer_destroy(c);
	errno = e;
	return NULL;
}

ssize_t
live_consumer_read(struct live_consumer *c, void *buf, size_t max, unsigned timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	for (;;) {
		if (c->cut) {
			pthread_mutex_unlock(&c->mu);
			return -ECONNABORTED;
		}
		if (c->used > 0)
			break; /* what is queued goes out, even when stopping */
		if (atomic_load(&hub.stopping)) {
			pthread_mutex_unlock(&c->mu);
			return -ESHUTDOWN;
		}
		if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT && c->used == 0) {
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
	}
	size_t n = c->used < max ? c->used : max, first = c->cap - c->head;
	if (first > n)
		first = n;
	uint8_t *p = buf;
	memcpy(p, c->ring + c->head, first);
	memcpy(p + first, c->ring, n - first);
	c->head = (c->head + n) % c->cap;
	c->used -= n;
	live_hungry_update(c);
	/* Progress: the stall clock starts again for what is still waiting. */
	clock_gettime(CLOCK_MONOTONIC, &c->waiting_since);
	pthread_mutex_unlock(&c->mu);
	return (ssize_t)n;
}

void
live_consumer_free(struct live_consumer *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&hub.cmu);
	if (c->prev)
		c->prev->next = c->next;
	else
		hub.cons = c->next;
	if (c->next)
		c->next->prev = c->prev;
	atomic_fetch_sub(&hub.n_cons, 1);
	pthread_mutex_lock(&c->mu);
	if (c->hungry) { /* gone: it takes nothing more */
		c->hungry = false;
		atomic_fetch_sub(&hub.n_hungry, 1);
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&hub.cmu);
	uint64_t total = 0;
	pthread_mutex_lock(&hub.smu);
	for (int i = 0; i < LIVE_DROP_N; i++) {
		hub.drops[i] += c->drops[i];
		total += c->drops[i];
	}
	pthread_mutex_unlock(&hub.smu);
	log_info("live %s: consumer %" PRIu64 " ended%s: %" PRIu64 " packets (%" PRIu64
		 " bytes) delivered, %" PRIu64 " dropped (queue_full %" PRIu64 ", backlog %" PRIu64
		 ", linktype %" PRIu64 ", filter_linktype %" PRIu64 ", format %" PRIu64 ")",
		c->name, c->id, c->cut ? " (cut off)" : "", c->packets, c->bytes, total,
		c->drops[LIVE_DROP_QUEUE], c->drops[LIVE_DROP_BACKLOG], c->drops[LIVE_DROP_LINKTYPE],
		c->drops[LIVE_DROP_FILTER], c->drops[LIVE_DROP_FORMAT]);
	live_consumer_destroy(c);
}

void
live_stats_get(struct live_stats *st)
{
	st->n = 0;
	pthread_mutex_lock(&hub.cmu);
	st->consumers = atomic_load(&hub.n_cons);
	pthread_mutex_lock(&hub.smu);
	st->consumers_total = hub.consumers_total;
	st->cut_off = hub.cut_off;
	st->refused = hub.refused;
	st->packets = hub.packets;
	memcpy(st->drops, hub.drops, sizeof(st->drops));
	pthread_mutex_unlock(&hub.smu);
	for (struct live_consumer *c = hub.cons; c; c = c->next) {
		pthread_mutex_lock(&c->mu);
		for (int i = 0; i < LIVE_DROP_N; i++)
			st->drops[i] += c->drops[i];
		if (st->each && st->n < st->max) {
			struct live_consumer_stats *e = &st->each[st->n++];
			e->id = c->id;
			snprintf(e->name, sizeof(e->name), "%s", c->name);
			e->packets = c->packets;
			e->bytes = c->bytes;
			memcpy(e->drops, c->drops, sizeof(e->drops));
			e->cut_off = c->cut;
		}
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&hub.cmu);
}
