/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline l4: connections and reassembled TCP streams of a capture file.
 *   l4 conns FILE       one line per TCP connection (index = Wireshark's tcp.stream)
 *   l4 follow FILE N    the two byte streams of connection N in the format of
 *                       `tshark -q -z follow,tcp,raw,N`, holes included as tshark
 *                       marks them: the text "[N bytes missing in capture file]\0"
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "l4/l4.h"
#include "log.h"
#include "pcapfile.h"

struct follow {
	uint64_t index;
	FILE *out;     /* chunks, printed after the header once the file is read */
	char *buf;
	size_t len;
	uint64_t gaps[2];
};

static void follow_on_data(void *arg, const struct l4_conn_info *c, int dir, const uint8_t *p, size_t n)
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

static void follow_on_gap(void *arg, const struct l4_conn_info *c, int dir, uint64_t len)
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

static void format_ep(const struct l4_conn_info *c, int side, bool brackets, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->ep[side].addr, a, sizeof(a));
	if (c->family == 6 && brackets)
		snprintf(buf, size, "[%s]:%u", a, c->ep[side].port);
	else
		snprintf(buf, size, "%s:%u", a, c->ep[side].port);
}

/* Feeds every record of path to l. Returns 0 or -1 after logging the problem. */
static int l4_read_file(struct l4 *l, const char *path, uint64_t *first_ns)
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
		if (l4_frame(l, rec.ts_ns, pcapr_iface(r, rec.iface)->linktype, rec.data, rec.caplen,
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

static void print_stats(const struct l4 *l)
{
	const struct l4_stats *s = l4_stats(l);

	if (s->decode_errs || s->frag_pkts || s->untracked_pkts || s->buf_flushes)
		log_info("%" PRIu64 " frames: %" PRIu64 " not decoded, %" PRIu64 " IP fragments (%" PRIu64
			 " datagrams reassembled, %" PRIu64 " fragments dropped, %" PRIu64
			 " blocks overlapping with other bytes), %" PRIu64 " beyond the connection limit, %" PRIu64
			 " buffer-limit gaps",
			 s->pkts, s->decode_errs, s->frag_pkts, s->frag_reassembled, s->frag_dropped,
			 s->frag_bad_overlaps, s->untracked_pkts, s->buf_flushes);
}

static int l4_conns(const char *path)
{
	struct l4 *l = l4_new(NULL, NULL);
	uint64_t first_ns;
	char a[64], b[64];

	if (l == NULL || l4_read_file(l, path, &first_ns) != 0) {
		l4_free(l);
		return EXIT_FAIL;
	}
	printf("%-6s %-46s %-46s %8s %10s %8s %10s %14s %10s %-11s %s\n", "stream", "client", "server",
	       "c>s_pkts", "c>s_bytes", "s>c_pkts", "s>c_bytes", "rel_start", "duration", "state",
	       "retrans ooo gap_bytes bad_overlaps");
	for (size_t i = 0; i < l4_conn_count(l); i++) {
		const struct l4_conn_info *c = l4_conn(l, i);
		const struct l4_side *cs = &c->side[L4_CLIENT], *ss = &c->side[L4_SERVER];

		if (c->proto != 6)
			continue;
		format_ep(c, L4_CLIENT, false, a, sizeof(a));
		format_ep(c, L4_SERVER, false, b, sizeof(b));
		printf("%-6" PRIu64 " %-46s %-46s %8" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64
		       " %14.9f %10.4f %-11s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
		       c->proto_index, a, b, cs->pkts, cs->bytes, ss->pkts, ss->bytes,
		       (double)(c->first_ns - first_ns) / 1e9, (double)(c->last_ns - c->first_ns) / 1e9,
		       l4_state_name(c->state), cs->retrans + ss->retrans, cs->out_of_order + ss->out_of_order,
		       cs->gap_bytes + ss->gap_bytes, cs->bad_overlaps + ss->bad_overlaps);
	}
	print_stats(l);
	l4_free(l);
	return 0;
}

static int l4_follow(const char *path, uint64_t index)
{
	struct follow f = {.index = index};
	struct l4_callbacks cb = {follow_on_data, follow_on_gap, &f};
	const struct l4_conn_info *c = NULL;
	struct l4 *l = NULL;
	uint64_t first_ns;
	char a[64] = "", b[64] = "";
	int rc = EXIT_FAIL;

	if ((f.out = open_memstream(&f.buf, &f.len)) == NULL || (l = l4_new(NULL, &cb)) == NULL) {
		log_warn("follow");
		goto out;
	}
	if (l4_read_file(l, path, &first_ns) != 0)
		goto out;
	fflush(f.out);
	for (size_t i = 0; i < l4_conn_count(l) && c == NULL; i++)
		if (l4_conn(l, i)->proto == 6 && l4_conn(l, i)->proto_index == index)
			c = l4_conn(l, i);
	/* Like tshark, an unknown stream prints empty nodes. */
	if (c != NULL) {
		format_ep(c, L4_CLIENT, true, a, sizeof(a));
		format_ep(c, L4_SERVER, true, b, sizeof(b));
	}
	printf("\n===================================================================\n"
	       "Follow: tcp,raw\nFilter: tcp.stream eq %" PRIu64 "\nNode 0: %s\nNode 1: %s\n",
	       index, c ? a : ":0", c ? b : ":0");
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

int cmd_l4(int argc, char **argv)
{
	char *end;
	unsigned long long n;

	if (argc == 3 && strcmp(argv[1], "conns") == 0)
		return l4_conns(argv[2]);
	if (argc == 4 && strcmp(argv[1], "follow") == 0) {
		errno = 0;
		n = strtoull(argv[3], &end, 10);
		if (errno != 0 || end == argv[3] || *end != '\0' || argv[3][0] == '-') {
			log_warnx("'%s' is not a connection index", argv[3]);
			return cli_usage("l4");
		}
		return l4_follow(argv[2], n);
	}
	return cli_usage("l4");
}
