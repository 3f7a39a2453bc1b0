/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline l4: connections and reassembled TCP streams of a capture file.
 *   l4 conns [OPTS] FILE     one line per TCP connection (index = Wireshark's
 *                            tcp.stream), or per UDP conversation with --udp
 *   l4 follow [OPTS] FILE N  the two byte streams of connection N in the format of
 *                            `tshark -q -z follow,tcp,raw,N`, holes included as tshark
 *                            marks them: the text "[N bytes missing in capture file]\0"
 *   l4 stats [OPTS] FILE     the L4 pass's counters, time and memory
 * OPTS: --max-conns N (tracked at once), --no-timeouts (connections end only at the end
 * of the file or by eviction).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "receiver/cli/cli.h"
#include "receiver/l4/l4.h"
#include "shared/log.h"
#include "shared/pcapfile.h"

struct follow {
	uint64_t index;
	bool found;
	struct l4_conn_info conn;
	FILE *out; /* chunks, printed after the header once the file is read */
	char *buf;
	size_t len;
	uint64_t gaps[2];
};

static void
follow_on_data(void *arg, const struct l4_conn_info *c, int dir, const uint8_t *p, size_t n)
{
	struct follow *f = arg;

	if (c->proto != 6 || c->proto_index != f->index)
		return;
	/* tshark prints the second node's chunks after a tab. */
	if (dir == L4_SERVER)
		fputc('\t', f->out);
	for (size_t i = 0; i < n; i++)
		fprintf(f->out, "%02x", p[i]);
	fputc('\n', f->out);
}

static void
follow_on_gap(void *arg, const struct l4_conn_info *c, int dir, uint64_t len)
{
	struct follow *f = arg;

	char text[64];
	int n;

	if (c->proto != 6 || c->proto_index != f->index)
		return;
	f->gaps[dir] += len;
	/* tshark's marker for a hole, with the terminating NUL it prints as well. */
	n = snprintf(text, sizeof(text), "[%" PRIu64 " bytes missing in capture file]", len);
	follow_on_data(arg, c, dir, (const uint8_t *)text, (size_t)n + 1);
}

static void
format_ep(const struct l4_conn_info *c, int side, bool brackets, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->ep[side].addr, a, sizeof(a));
	if (c->family == 6 && brackets)
		snprintf(buf, size, "[%s]:%u", a, c->ep[side].port);
	else
		snprintf(buf, size, "%s:%u", a, c->ep[side].port);
}

struct l4_opts {
	struct l4_limits lim;
	bool udp;
	const char *path;
};

/* Parses [--udp] [--max-conns N] [--no-timeouts] FILE [N]; returns the arguments left
 * after FILE, or -1. */
static int
parse_opts(int argc, char **argv, bool udp_ok, struct l4_opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--udp") == 0 && udp_ok) {
			o->udp = true;
		} else if (strcmp(argv[i], "--no-timeouts") == 0) {
			o->lim.timeout_closed_ns = o->lim.timeout_short_ns = o->lim.timeout_tcp_ns =
				UINT64_MAX;
		} else if (strcmp(argv[i], "--max-conns") == 0 && i + 1 < argc) {
			char *end;
			unsigned long long n;

			errno = 0;
			n = strtoull(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || n == 0 || argv[i][0] == '-') {
				log_warnx("--max-conns: '%s' is not a positive number", argv[i]);
				return -1;
			}
			o->lim.max_conns = (size_t)n;
		} else {
			log_warnx("unknown option '%s'", argv[i]);
			return -1;
		}
	}
	if (i >= argc)
		return -1;
	o->path = argv[i];
	return argc - i - 1;
}

/* Feeds every record of path to l (all in domain 0, as tshark sees one file), then
 * ends every connection. Returns 0 or -1 after logging the problem. */
static int
l4_read_file(struct l4 *l, const char *path, uint64_t *first_ns)
{
	struct pcapf_rec rec;
	struct pcapr *r;
	int err, rc;

	if ((r = pcapr_open(path, &err)) == NULL) {
		log_warnx("%s: %s", path, pcapf_strerror(err));
		return -1;
	}
	*first_ns = 0;
	while ((rc = pcapr_next(r, &rec)) == 1) {
		if (*first_ns == 0)
			*first_ns = rec.ts_ns;
		if (l4_frame(l, 0, rec.ts_ns, pcapr_iface(r, rec.iface)->linktype, rec.data, rec.caplen,
			    rec.origlen) == -ENOMEM) {
			log_warnx("out of memory");
			pcapr_close(r);
			return -1;
		}
	}
	if (rc < 0)
		log_warnx("%s: %s (records before it were read)", path, pcapf_strerror(rc));
	pcapr_close(r);
	l4_finish(l);
	return 0;
}

static void
print_stats(const struct l4 *l)
{
	const struct l4_stats *s = l4_stats(l);

	if (s->decode_errs || s->frag_pkts || s->evicted || s->buf_flushes)
		log_info("%" PRIu64 " frames: %" PRIu64 " not decoded, %" PRIu64 " IP fragments (%" PRIu64
			 " datagrams reassembled, %" PRIu64 " fragments dropped, %" PRIu64
			 " blocks overlapping with other bytes), %" PRIu64 " connections evicted, %" PRIu64
			 " buffer-limit gaps",
			s->pkts, s->decode_errs, s->frag_pkts, s->frag_reassembled, s->frag_dropped,
			s->frag_bad_overlaps, s->evicted, s->buf_flushes);
}

struct conn_list {
	struct l4_conn_info *v;
	size_t n, cap;
	uint8_t proto;
	bool oom;
};

static void
collect_on_end(void *arg, const struct l4_conn_info *c, enum l4_end why)
{
	struct conn_list *cl = arg;

	(void)why;
	if (c->proto != cl->proto || cl->oom)
		return;
	if (cl->n == cl->cap) {
		size_t cap = cl->cap ? cl->cap * 2 : 256;
		struct l4_conn_info *v = realloc(cl->v, cap * sizeof(*v));

		if (v == NULL) {
			cl->oom = true;
			return;
		}
		cl->v = v;
		cl->cap = cap;
	}
	cl->v[cl->n++] = *c;
}

static int
by_conn_id(const void *a, const void *b)
{
	const struct l4_conn_info *x = a, *y = b;

	return x->conn_id < y->conn_id ? -1 : x->conn_id > y->conn_id;
}

static int
l4_conns(const struct l4_opts *o)
{
	struct conn_list cl = { .proto = o->udp ? 17 : 6 };
	struct l4_callbacks cb = { .on_end = collect_on_end, .arg = &cl };
	struct l4 *l = l4_new(&o->lim, &cb);
	uint64_t first_ns;
	char a[64], b[64];

	if (l == NULL || l4_read_file(l, o->path, &first_ns) != 0 || cl.oom) {
		if (cl.oom)
			log_warnx("out of memory");
		l4_free(l);
		free(cl.v);
		return EXIT_FAIL;
	}
	if (cl.n > 0)
		qsort(cl.v, cl.n, sizeof(*cl.v), by_conn_id);
	printf("%-6s %-46s %-46s %8s %10s %8s %10s %14s %10s %-11s %s\n", "stream", "client", "server",
		"c>s_pkts", "c>s_bytes", "s>c_pkts", "s>c_bytes", "rel_start", "duration", "state",
		"retrans ooo gap_bytes bad_overlaps rtt_us zero_win resets midstream");
	for (size_t i = 0; i < cl.n; i++) {
		const struct l4_conn_info *c = &cl.v[i];
		const struct l4_side *cs = &c->side[L4_CLIENT], *ss = &c->side[L4_SERVER];

		format_ep(c, L4_CLIENT, false, a, sizeof(a));
		format_ep(c, L4_SERVER, false, b, sizeof(b));
		printf("%-6" PRIu64 " %-46s %-46s %8" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64
		       " %14.9f %10.4f %-11s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.3f %" PRIu64
		       " %" PRIu64 " %d\n",
			c->proto_index, a, b, cs->pkts, cs->bytes, ss->pkts, ss->bytes,
			(double)(c->first_ns - first_ns) / 1e9, (double)(c->last_ns - c->first_ns) / 1e9,
			l4_state_name(c->state), cs->retrans + ss->retrans,
			cs->out_of_order + ss->out_of_order, cs->gap_bytes + ss->gap_bytes,
			cs->bad_overlaps + ss->bad_overlaps, (double)c->rtt_ns / 1e3,
			cs->zero_windows + ss->zero_windows, cs->resets + ss->resets, c->midstream);
	}
	print_stats(l);
	l4_free(l);
	free(cl.v);
	return 0;
}

static void
follow_on_end(void *arg, const struct l4_conn_info *c, enum l4_end why)
{
	struct follow *f = arg;

	(void)why;
	if (c->proto == 6 && c->proto_index == f->index) {
		f->found = true;
		f->conn = *c;
	}
}

static int
l4_follow(const struct l4_opts *o, uint64_t index)
{
	struct follow f = { .index = index };
	struct l4_callbacks cb = { follow_on_data, follow_on_gap, follow_on_end, &f };
	struct l4 *l = NULL;
	uint64_t first_ns;
	char a[64] = "", b[64] = "";
	int rc = EXIT_FAIL;

	if ((f.out = open_memstream(&f.buf, &f.len)) == NULL || (l = l4_new(&o->lim, &cb)) == NULL) {
		log_warn("follow");
		goto out;
	}
	if (l4_read_file(l, o->path, &first_ns) != 0)
		goto out;
	fflush(f.out);
	/* Like tshark, an unknown stream prints empty nodes. */
	if (f.found) {
		format_ep(&f.conn, L4_CLIENT, true, a, sizeof(a));
		format_ep(&f.conn, L4_SERVER, true, b, sizeof(b));
	}
	printf("\n===================================================================\n"
	       "Follow: tcp,raw\nFilter: tcp.stream eq %" PRIu64 "\nNode 0: %s\nNode 1: %s\n",
		index, f.found ? a : ":0", f.found ? b : ":0");
	fwrite(f.buf, 1, f.len, stdout);
	printf("===================================================================\n");
	if (f.gaps[0] || f.gaps[1])
		log_info("stream %" PRIu64 ": %" PRIu64 " client and %" PRIu64 " server bytes missing (gaps)",
			index, f.gaps[0], f.gaps[1]);
	print_stats(l);
	rc = 0;
out:
	l4_free(l);
	if (f.out != NULL)
		fclose(f.out);
	free(f.buf);
	return rc;
}

int
cli_follow_file(const char *path, uint64_t index)
{
	struct l4_opts o;

	memset(&o, 0, sizeof(o));
	o.lim.timeout_closed_ns = o.lim.timeout_short_ns = o.lim.timeout_tcp_ns = UINT64_MAX;
	o.path = path;
	return l4_follow(&o, index);
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		ru.ru_stime.tv_usec / 1e6;
}

/* Peak resident memory of this program, in KiB. Not ru_maxrss: Linux keeps in it the peak
 * of the address space exec() replaced, i.e. that of the parent that forked or vforked us
 * (a large test runner would show as our peak). VmHWM is our own address space's. */
static long
peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (f != NULL) {
		while (kib < 0 && fgets(line, sizeof(line), f) != NULL)
			(void)sscanf(line, "VmHWM: %ld kB", &kib);
		fclose(f);
	}
	if (kib < 0) {
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		kib = ru.ru_maxrss;
	}
	return kib;
}

/* Counters of one pass, with its CPU time and peak memory: what make bench reports. */
static int
l4_stats_cmd(const struct l4_opts *o)
{
	struct l4 *l = l4_new(&o->lim, NULL);
	const struct l4_stats *s;
	uint64_t first_ns, bytes = 0;
	double cpu0 = cpu_seconds(), cpu;
	struct stat st;

	if (l == NULL || l4_read_file(l, o->path, &first_ns) != 0) {
		l4_free(l);
		return EXIT_FAIL;
	}
	cpu = cpu_seconds() - cpu0;
	s = l4_stats(l);
	if (stat(o->path, &st) == 0)
		bytes = (uint64_t)st.st_size;
	printf("frames %" PRIu64 "\nfile_bytes %" PRIu64 "\nnot_decoded %" PRIu64 "\nfragments %" PRIu64
	       "\nfragments_reassembled %" PRIu64 "\nfragments_dropped %" PRIu64 "\nconnections %" PRIu64
	       "\nended_idle %" PRIu64 "\nevicted %" PRIu64 "\nport_reuse %" PRIu64 "\ngap_bytes %" PRIu64
	       "\nbuffer_limit_gaps %" PRIu64 "\ncpu_seconds %.3f\nmax_rss_kib %ld\n",
		s->pkts, bytes, s->decode_errs, s->frag_pkts, s->frag_reassembled, s->frag_dropped, s->conns,
		s->ended_idle, s->evicted, s->reused, s->gap_bytes, s->buf_flushes, cpu, peak_rss_kib());
	l4_free(l);
	return 0;
}

int
cmd_l4(int argc, char **argv)
{
	struct l4_opts o;
	char *end;
	unsigned long long n;
	int left;

	if (argc < 2)
		return cli_usage("l4");
	if (strcmp(argv[1], "conns") == 0 && parse_opts(argc - 1, argv + 1, true, &o) == 0)
		return l4_conns(&o);
	if (strcmp(argv[1], "stats") == 0 && parse_opts(argc - 1, argv + 1, false, &o) == 0)
		return l4_stats_cmd(&o);
	if (strcmp(argv[1], "follow") == 0 && (left = parse_opts(argc - 1, argv + 1, false, &o)) == 1) {
		const char *arg = argv[argc - 1];

		errno = 0;
		n = strtoull(arg, &end, 10);
		if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-') {
			log_warnx("'%s' is not a connection index", arg);
			return cli_usage("l4");
		}
		return l4_follow(&o, n);
	}
	return cli_usage("l4");
}
