/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for receiver/l4: packet decoding (shared/pkt), the connection table
 * and TCP reassembly. The input is a limits byte and then frames, each a link-type byte
 * (an index into link_types) and a 16-bit big-endian length before its bytes. The limits
 * byte picks tiny buffers, tables and fragment limits so that the limit paths run as
 * often as the others.
 *
 * Besides memory errors, the target checks: every byte handed to on_data is counted in
 * its side's delivered total, every gap in gap_bytes, every connection ends exactly once
 * (on_end, with increasing ids never seen before and the live count back at zero), and
 * nothing stays buffered after l4_finish(). Frames go to one of four domains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver/l4/l4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t link_types[] = { 1, 0, 101, 113, 276, 228, 229, 108 };

struct totals {
	uint64_t data, gap;
	uint64_t delivered, gaps, ended;
	uint8_t seen[4096]; /* ended conn_ids, one bit each */
};

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_l4: %s\n", what);
		abort();
	}
}

static void
on_data(void *arg, const struct l4_conn_info *c, int dir, const uint8_t *p, size_t n)
{
	struct totals *t = arg;
	volatile uint8_t sink = 0;

	must(n > 0 && dir >= 0 && dir <= 1, "on_data arguments");
	for (size_t i = 0; i < n; i++)
		sink ^= p[i]; /* ASan checks that every delivered byte is readable */
	(void)sink;
	t->data += n;
}

static void
on_gap(void *arg, const struct l4_conn_info *c, int dir, uint64_t len)
{
	struct totals *t = arg;

	must(len > 0 && len <= UINT32_MAX, "gap length");
	t->gap += len;
}

static void
on_end(void *arg, const struct l4_conn_info *c, enum l4_end why)
{
	struct totals *t = arg;

	must(why <= L4_END_REUSED, "end reason");
	if (c->conn_id < sizeof(t->seen) * 8) {
		must(!(t->seen[c->conn_id / 8] & (1u << (c->conn_id % 8))), "connection ended twice");
		t->seen[c->conn_id / 8] |= (uint8_t)(1u << (c->conn_id % 8));
	}
	for (int d = 0; d < 2; d++) {
		t->delivered += c->side[d].delivered;
		t->gaps += c->side[d].gap_bytes;
	}
	t->ended++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct totals t;
	struct l4_callbacks cb = { on_data, on_gap, on_end, &t };
	struct l4_limits lim = { 0, 0, 0 };
	struct l4 *l;
	uint64_t ts = 0;
	size_t off = 1;

	if (size < 1)
		return 0;
	if (data[0] & 1)
		lim.max_conns = 1 + (data[0] >> 4);
	if (data[0] & 2)
		lim.max_conn_buf = 1 + (size_t)(data[0] >> 2) * 64;
	if (data[0] & 4)
		lim.max_buf = 1 + (size_t)(data[0] >> 3) * 128;
	if (data[0] & 8) {
		lim.max_frag_datagrams = 1 + (data[0] >> 6);
		lim.max_frag_bytes = 1 + (size_t)(data[0] >> 4) * 32;
		lim.frag_timeout_ns = 1 + (data[0] >> 5);
	}
	memset(&t, 0, sizeof(t));
	if (data[0] & 16)
		lim.timeout_short_ns = lim.timeout_closed_ns = lim.timeout_tcp_ns = 1 + (data[0] >> 5);
	if ((l = l4_new(&lim, &cb)) == NULL)
		return 0;
	while (size - off >= 3) {
		uint32_t lt = link_types[data[off] % (sizeof(link_types) / sizeof(link_types[0]))];
		size_t n = (size_t)data[off + 1] << 8 | data[off + 2];
		uint8_t *copy;

		off += 3;
		if (n > size - off)
			n = size - off;
		/* A copy of exactly n bytes, so that ASan sees any read past the frame. */
		if ((copy = malloc(n ? n : 1)) == NULL)
			break;
		memcpy(copy, data + off, n);
		l4_frame(l, data[off - 3] >> 6, ts++, lt, copy, n, n);
		free(copy);
		off += n;
	}
	l4_finish(l);
	must(l4_stats(l)->buffered == 0, "bytes left buffered after l4_finish");
	must(l4_stats(l)->live == 0 && t.ended == l4_stats(l)->conns, "connections not ended exactly once");
	must(t.delivered == t.data, "delivered bytes differ from on_data");
	must(t.gaps == t.gap && t.gaps == l4_stats(l)->gap_bytes, "gap bytes differ from on_gap");
	l4_free(l);
	return 0;
}
