/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for receiver/l4: packet decoding (shared/pkt), the connection table
 * and TCP reassembly. The input is a limits byte and then frames, each a link-type byte
 * (an index into link_types) and a 16-bit big-endian length before its bytes. The limits
 * byte picks tiny buffers, tables and fragment limits so that the limit paths run as
 * often as the others.
 *
 * Besides memory errors, the target checks: every byte handed to on_data is counted in
 * its side's delivered total, every gap in gap_bytes, and nothing stays buffered after
 * l4_finish().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t link_types[] = {1, 0, 101, 113, 276, 228, 229, 108};

struct totals {
	uint64_t data, gap;
};

static void must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_l4: %s\n", what);
		abort();
	}
}

static void on_data(void *arg, const struct l4_conn_info *c, int dir, const uint8_t *p, size_t n)
{
	struct totals *t = arg;
	volatile uint8_t sink = 0;

	must(n > 0 && dir >= 0 && dir <= 1, "on_data arguments");
	for (size_t i = 0; i < n; i++)
		sink ^= p[i]; /* ASan checks that every delivered byte is readable */
	(void)sink;
	t->data += n;
}

static void on_gap(void *arg, const struct l4_conn_info *c, int dir, uint64_t len)
{
	struct totals *t = arg;

	must(len > 0 && len <= UINT32_MAX, "gap length");
	t->gap += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct totals t = {0, 0};
	struct l4_callbacks cb = {on_data, on_gap, &t};
	struct l4_limits lim = {0, 0, 0};
	struct l4 *l;
	uint64_t delivered = 0, gaps = 0, ts = 0;
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
		l4_frame(l, ts++, lt, copy, n, n);
		free(copy);
		off += n;
	}
	l4_finish(l);
	must(l4_stats(l)->buffered == 0, "bytes left buffered after l4_finish");
	for (size_t i = 0; i < l4_conn_count(l); i++) {
		const struct l4_conn_info *c = l4_conn(l, i);

		must(c->conn_id == i, "conn_id order");
		for (int d = 0; d < 2; d++) {
			delivered += c->side[d].delivered;
			gaps += c->side[d].gap_bytes;
		}
	}
	must(delivered == t.data, "delivered bytes differ from on_data");
	must(gaps == t.gap && gaps == l4_stats(l)->gap_bytes, "gap bytes differ from on_gap");
	l4_free(l);
	return 0;
}
