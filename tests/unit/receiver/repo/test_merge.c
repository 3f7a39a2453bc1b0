/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/repo/merge.c (the k-way merge behind `pcapline export`), with the
 * byte stream it feeds (the sink writer of shared/pcapfile.c) and the time arguments that choose its window
 * (timearg.c): exact order and counts over small generated segments, hand-made equal
 * timestamps, window edges, lazy opening, out-of-order and corrupt inputs, and a
 * randomized comparison against a stable sort.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "receiver/repo/merge.h"
#include "shared/pcapfile.h"
#include "receiver/repo/timearg.h"

#define MAX_INPUTS 32

static char tmpdir[] = "/tmp/test_merge.XXXXXX";

/* Every record's payload says where it came from: input, position (little-endian). */
struct tag {
	uint32_t input, pos;
};

static void
write_seg(const char *path, uint32_t linktype, uint32_t input, const uint64_t *ts, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct pcapw *w;

	assert_true(fd >= 0);
	w = pcapw_new(fd, linktype, 65535);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t data[64];
		struct tag t = { input, (uint32_t)i };

		memset(data, 0xa5, sizeof(data));
		memcpy(data, &t, sizeof(t));
		assert_int_equal(pcapw_write(w, ts[i], data, sizeof(data), 100), 0);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);
}

static char *
seg_path(uint32_t input)
{
	char *p;

	assert_true(asprintf(&p, "%s/seg%u.pcap", tmpdir, input) > 0);
	return p;
}

struct got {
	uint64_t ts;
	uint32_t input, pos;
};

/* Runs the merge; returns the count of records, fills out[] (up to max). */
static size_t
run(struct merge_input *in, size_t n, uint64_t from, uint64_t to, struct got *out, size_t max, int *last_rc,
	struct merge **keep)
{
	struct merge *m = merge_new(in, n, from, to);
	struct merge_rec r;
	size_t k = 0;
	int rc;

	assert_non_null(m);
	while ((rc = merge_next(m, &r)) == 1) {
		struct tag t;

		assert_int_equal(r.rec.caplen, 64);
		assert_int_equal(r.rec.origlen, 100);
		assert_non_null(r.ifc);
		assert_int_equal(r.ifc->linktype, 1);
		memcpy(&t, r.rec.data, sizeof(t));
		assert_int_equal(t.input, r.input);
		if (k < max)
			out[k] = (struct got){ r.rec.ts_ns, t.input, t.pos };
		k++;
	}
	if (last_rc != NULL)
		*last_rc = rc;
	else
		assert_int_equal(rc, 0);
	if (keep != NULL)
		*keep = m;
	else
		merge_free(m);
	return k;
}

static void
make_inputs(struct merge_input *in, char **paths, const uint64_t *const *ts, const size_t *lens, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		paths[i] = seg_path((uint32_t)i);
		write_seg(paths[i], 1, (uint32_t)i, ts[i], lens[i]);
		in[i].path = paths[i];
		in[i].min_ns = lens[i] > 0 ? ts[i][0] : 0;
	}
}

static void
free_paths(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unlink(paths[i]);
		free(paths[i]);
	}
}

/* --------------------------------------------------------------------------------- */

static void
test_three_segments_interleaved(void **state)
{
	static const uint64_t a[] = { 1, 4, 7, 10 }, b[] = { 2, 5, 8 }, c[] = { 3, 6, 9, 11, 12 };
	const uint64_t *ts[] = { a, b, c };
	const size_t lens[] = { 4, 3, 5 };
	struct merge_input in[3];
	char *paths[3];
	struct got g[16];

	(void)state;
	make_inputs(in, paths, ts, lens, 3);
	assert_int_equal(run(in, 3, 0, UINT64_MAX, g, 16, NULL, NULL), 12);
	for (size_t i = 0; i < 12; i++)
		assert_int_equal(g[i].ts, i + 1);
	/* Every input's records come out in their own order. */
	assert_int_equal(g[0].input, 0);
	assert_int_equal(g[1].input, 1);
	assert_int_equal(g[2].input, 2);
	assert_int_equal(g[11].input, 2);
	assert_int_equal(g[11].pos, 4);
	free_paths(paths, 3);
}

static void
test_equal_timestamps_by_input_then_position(void **state)
{
	static const uint64_t a[] = { 10, 20, 20, 30 }, b[] = { 20, 20, 25 }, c[] = { 5, 20 };
	const uint64_t *ts[] = { a, b, c };
	const size_t lens[] = { 4, 3, 2 };
	static const struct got want[] = {
		{ 5, 2, 0 },
		{ 10, 0, 0 },
		{ 20, 0, 1 },
		{ 20, 0, 2 },
		{ 20, 1, 0 },
		{ 20, 1, 1 },
		{ 20, 2, 1 },
		{ 25, 1, 2 },
		{ 30, 0, 3 },
	};
	struct merge_input in[3];
	char *paths[3];
	struct got g[16];

	(void)state;
	make_inputs(in, paths, ts, lens, 3);
	assert_int_equal(run(in, 3, 0, UINT64_MAX, g, 16, NULL, NULL), 9);
	for (size_t i = 0; i < 9; i++) {
		assert_int_equal(g[i].ts, want[i].ts);
		assert_int_equal(g[i].input, want[i].input);
		assert_int_equal(g[i].pos, want[i].pos);
	}
	/* The same with the inputs given in another order: ties follow the new order. */
	struct merge_input rev[3] = { in[2], in[1], in[0] };
	struct merge *m = merge_new(rev, 3, 0, UINT64_MAX);
	struct merge_rec r;
	static const size_t want_idx[] = { 0, 2, 0, 1, 1, 2, 2, 1, 2 };
	for (size_t i = 0; i < 9; i++) {
		assert_int_equal(merge_next(m, &r), 1);
		assert_int_equal(r.rec.ts_ns, want[i].ts);
		assert_int_equal(r.input, want_idx[i]);
	}
	assert_int_equal(merge_next(m, &r), 0);
	assert_int_equal(merge_next(m, &r), 0);
	merge_free(m);
	free_paths(paths, 3);
}

static void
test_window_edges(void **state)
{
	static const uint64_t a[] = { 10, 20, 20, 30 }, b[] = { 20, 20, 25 }, c[] = { 5, 20, 29, 31 };
	const uint64_t *ts[] = { a, b, c };
	const size_t lens[] = { 4, 3, 4 };
	struct merge_input in[3];
	char *paths[3];
	struct got g[16];

	(void)state;
	make_inputs(in, paths, ts, lens, 3);
	/* [20, 30): 20 is in, 30 is out. */
	assert_int_equal(run(in, 3, 20, 30, g, 16, NULL, NULL), 7);
	assert_int_equal(g[0].ts, 20);
	assert_int_equal(g[0].input, 0);
	assert_int_equal(g[0].pos, 1);
	assert_int_equal(g[4].ts, 20);
	assert_int_equal(g[4].input, 2);
	assert_int_equal(g[5].ts, 25);
	assert_int_equal(g[6].ts, 29);
	/* A window with nothing in it, one before everything, one after. */
	assert_int_equal(run(in, 3, 21, 25, g, 16, NULL, NULL), 0);
	assert_int_equal(run(in, 3, 0, 5, g, 16, NULL, NULL), 0);
	assert_int_equal(run(in, 3, 32, 1000, g, 16, NULL, NULL), 0);
	/* One nanosecond wide. */
	assert_int_equal(run(in, 3, 31, 32, g, 16, NULL, NULL), 1);
	assert_int_equal(g[0].input, 2);
	free_paths(paths, 3);
}

static void
test_opens_inputs_only_when_reached(void **state)
{
	uint64_t ts[10][100];
	const uint64_t *tp[10];
	size_t lens[10];
	struct merge_input in[10];
	char *paths[10];
	struct got g[1000];
	struct merge *m;

	(void)state;
	/* Ten consecutive segments, as one interface rotates them. */
	for (size_t i = 0; i < 10; i++) {
		for (size_t k = 0; k < 100; k++)
			ts[i][k] = 1000000 + i * 100 + k;
		tp[i] = ts[i];
		lens[i] = 100;
	}
	make_inputs(in, paths, tp, lens, 10);
	assert_int_equal(run(in, 10, 0, UINT64_MAX, g, 1000, NULL, &m), 1000);
	assert_int_equal(merge_max_open(m), 1);
	assert_int_equal(merge_disorder(m), 0);
	merge_free(m);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(g[i].ts, 1000000 + i);
	/* Two interfaces side by side: two open at a time. */
	free_paths(paths, 10);
	for (size_t i = 0; i < 10; i++) {
		for (size_t k = 0; k < 100; k++)
			ts[i][k] = 1000000 + (i / 2) * 1000 + k * 10 + (i % 2);
	}
	make_inputs(in, paths, tp, lens, 10);
	assert_int_equal(run(in, 10, 0, UINT64_MAX, g, 1000, NULL, &m), 1000);
	assert_int_equal(merge_max_open(m), 2);
	merge_free(m);
	for (size_t i = 1; i < 1000; i++)
		assert_true(g[i].ts > g[i - 1].ts);
	/* Unknown min_ns (0): everything is opened at once, the order is the same. */
	for (size_t i = 0; i < 10; i++)
		in[i].min_ns = 0;
	assert_int_equal(run(in, 10, 0, UINT64_MAX, g, 1000, NULL, &m), 1000);
	assert_int_equal(merge_max_open(m), 10);
	merge_free(m);
	for (size_t i = 1; i < 1000; i++)
		assert_true(g[i].ts > g[i - 1].ts);
	free_paths(paths, 10);
}

static void
test_out_of_order_input_keeps_its_order(void **state)
{
	static const uint64_t a[] = { 10, 30, 20 }, b[] = { 25 };
	const uint64_t *ts[] = { a, b };
	const size_t lens[] = { 3, 1 };
	struct merge_input in[2];
	char *paths[2];
	struct got g[8];
	struct merge *m;

	(void)state;
	make_inputs(in, paths, ts, lens, 2);
	/* Like mergecap: 20 stays after 30, its predecessor in the same file. */
	assert_int_equal(run(in, 2, 0, UINT64_MAX, g, 8, NULL, &m), 4);
	assert_int_equal(merge_disorder(m), 1);
	merge_free(m);
	assert_int_equal(g[0].ts, 10);
	assert_int_equal(g[1].ts, 25);
	assert_int_equal(g[2].ts, 30);
	assert_int_equal(g[3].ts, 20);
	free_paths(paths, 2);
}

static void
test_corrupt_and_missing_inputs(void **state)
{
	static const uint64_t a[] = { 10, 20, 30 }, b[] = { 15, 25, 35 };
	const uint64_t *ts[] = { a, b };
	const size_t lens[] = { 3, 3 };
	struct merge_input in[3];
	char *paths[3];
	struct got g[8];
	struct merge *m;
	struct merge_rec r;
	int rc;

	(void)state;
	make_inputs(in, paths, ts, lens, 2);
	/* Cut input 1 in the middle of its last record. */
	assert_int_equal(truncate(paths[1], 24 + 2 * (16 + 64) + 20), 0);
	size_t k = run(in, 2, 0, UINT64_MAX, g, 8, &rc, &m);
	assert_int_equal(rc, PCAPF_ETRUNC);
	assert_int_equal(merge_failed(m), 1);
	/* Every record before the cut that sorts before it came out, in order. */
	assert_true(k >= 4);
	for (size_t i = 1; i < k; i++)
		assert_true(g[i].ts >= g[i - 1].ts);
	/* The error is sticky. */
	assert_int_equal(merge_next(m, &r), PCAPF_ETRUNC);
	merge_free(m);

	/* A missing file fails when the merge reaches it, naming it. */
	in[0].path = paths[0];
	paths[2] = seg_path(99);
	in[1].path = paths[2];
	in[1].min_ns = 20;
	m = merge_new(in, 2, 0, UINT64_MAX);
	assert_int_equal(merge_next(m, &r), 1);
	assert_int_equal(r.rec.ts_ns, 10);
	assert_int_equal(merge_next(m, &r), -ENOENT);
	assert_int_equal(merge_failed(m), 1);
	merge_free(m);

	/* Not a capture at all. */
	FILE *f = fopen(paths[2], "w");
	fputs("this is not a pcap file at all", f);
	fclose(f);
	m = merge_new(in + 1, 1, 0, UINT64_MAX);
	assert_int_equal(merge_next(m, &r), PCAPF_EFORMAT);
	merge_free(m);
	free_paths(paths, 3);
}

static void
test_no_inputs_and_empty_inputs(void **state)
{
	static const uint64_t a[] = { 7 };
	const uint64_t *ts[] = { a, a };
	const size_t lens[] = { 0, 1 };
	struct merge_input in[2];
	char *paths[2];
	struct merge_rec r;
	struct got g[4];
	struct merge *m = merge_new(NULL, 0, 0, UINT64_MAX);

	(void)state;
	assert_non_null(m);
	assert_int_equal(merge_next(m, &r), 0);
	assert_int_equal(merge_bytes_read(m), 0);
	merge_free(m);
	merge_free(NULL);
	/* A header-only segment next to a real one. */
	make_inputs(in, paths, ts, lens, 2);
	assert_int_equal(run(in, 2, 0, UINT64_MAX, g, 4, NULL, &m), 1);
	assert_int_equal(g[0].input, 1);
	assert_int_equal(merge_bytes_read(m), 24 + 24 + 16 + 64);
	merge_free(m);
	free_paths(paths, 2);
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static int
cmp_ref(const void *a, const void *b)
{
	const struct got *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->input != y->input)
		return x->input < y->input ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void
test_random_against_stable_sort(void **state)
{
	static uint64_t ts[MAX_INPUTS][300];
	const uint64_t *tp[MAX_INPUTS];
	size_t lens[MAX_INPUTS];
	struct merge_input in[MAX_INPUTS];
	char *paths[MAX_INPUTS];
	static struct got ref[MAX_INPUTS * 300], g[MAX_INPUTS * 300];

	(void)state;
	for (int round = 0; round < 20; round++) {
		size_t n = 1 + rnd() % MAX_INPUTS, total = 0, want = 0;
		uint64_t from = rnd() % 500, to = from + 1 + rnd() % 3000;

		for (size_t i = 0; i < n; i++) {
			uint64_t t = rnd() % 1000;
			lens[i] = rnd() % 300;
			/* Coarse steps make many equal timestamps within and across inputs. */
			for (size_t k = 0; k < lens[i]; k++) {
				t += rnd() % 4 == 0 ? rnd() % 20 : 0;
				ts[i][k] = t;
			}
			tp[i] = ts[i];
		}
		make_inputs(in, paths, tp, lens, n);
		for (size_t i = 0; i < n; i++) {
			if (rnd() % 4 == 0)
				in[i].min_ns = 0; /* unknown */
			for (size_t k = 0; k < lens[i]; k++) {
				if (ts[i][k] >= from && ts[i][k] < to)
					ref[want++] = (struct got){ ts[i][k], (uint32_t)i, (uint32_t)k };
				total++;
			}
		}
		qsort(ref, want, sizeof(*ref), cmp_ref);
		assert_int_equal(run(in, n, from, to, g, MAX_INPUTS * 300, NULL, NULL), want);
		for (size_t i = 0; i < want; i++) {
			assert_int_equal(g[i].ts, ref[i].ts);
			assert_int_equal(g[i].input, ref[i].input);
			assert_int_equal(g[i].pos, ref[i].pos);
		}
		(void)total;
		free_paths(paths, n);
	}
}

/* The sink writer: the merged stream, written as pcap and as pcapng, reads back the same. ---- */

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static int
mem_sink(void *arg, const void *buf, size_t len)
{
	struct membuf *m = arg;

	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->p = realloc(m->p, m->cap);
		assert_non_null(m->p);
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	return 0;
}

static void
check_stream(bool ng)
{
	static const uint64_t a[] = { 1000000001, 1000000003 },
			      b[] = { 1000000002, 4000000000ull * 1000000000ull };
	const uint64_t late = 4300000000ull * 1000000000ull; /* 2106-04, past 32-bit seconds */
	const uint64_t *ts[] = { a, b };
	const size_t lens[] = { 2, 2 };
	struct merge_input in[2];
	char *paths[2];
	struct membuf mb = { 0 };
	struct pcapw *o = pcapw_new_sink(mem_sink, &mb);
	struct merge *m;
	struct merge_rec r;
	struct pcapr *rd;
	struct pcapf_rec rec;
	int rc, n = 0;

	make_inputs(in, paths, ts, lens, 2);
	if (ng) {
		assert_int_equal(pcapw_ng_section(o, "test"), 0);
		assert_int_equal(pcapw_ng_iface(o, 1, 65535, "eth0"), 0);
		assert_int_equal(pcapw_ng_iface(o, 1, 65535, "a-rather-long-interface-name"), 0);
	} else {
		assert_int_equal(pcapw_pcap_header(o, 1, 65535), 0);
	}
	m = merge_new(in, 2, 0, UINT64_MAX);
	while ((rc = merge_next(m, &r)) == 1) {
		assert_int_equal(pcapw_write_if(o, (uint32_t)r.input, r.rec.ts_ns, r.rec.data, r.rec.caplen,
					 r.rec.origlen),
			0);
	}
	assert_int_equal(rc, 0);
	merge_free(m);
	/* Classic pcap has 32-bit seconds: it ends in 2106, pcapng does not. */
	assert_int_equal(pcapw_write_if(o, 1, late, NULL, 0, 0), ng ? 0 : -EOVERFLOW);
	assert_int_equal(pcapw_flush(o), 0);
	assert_int_equal(pcapw_bytes(o), mb.len);
	pcapw_discard(o);

	rd = pcapr_open_mem(mb.p, mb.len, &rc);
	assert_non_null(rd);
	assert_int_equal(pcapr_is_pcapng(rd), ng);
	assert_int_equal(pcapr_iface_count(rd), ng ? 2 : 1);
	if (ng)
		assert_string_equal(pcapr_iface(rd, 1)->name, "a-rather-long-interface-name");
	const uint64_t want[] = { 1000000001, 1000000002, 1000000003, 4000000000ull * 1000000000ull, late };
	static const uint32_t want_if[] = { 0, 1, 0, 1, 1 };
	while ((rc = pcapr_next(rd, &rec)) == 1) {
		assert_int_equal(rec.ts_ns, want[n]);
		assert_int_equal(rec.caplen, n < 4 ? 64 : 0);
		assert_int_equal(rec.origlen, n < 4 ? 100 : 0);
		assert_int_equal(rec.iface, ng ? want_if[n] : 0);
		n++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, ng ? 5 : 4);
	pcapr_close(rd);
	free(mb.p);
	free_paths(paths, 2);
}

static void
test_pcapout_pcap(void **state)
{
	(void)state;
	check_stream(false);
}

static void
test_pcapout_pcapng(void **state)
{
	(void)state;
	check_stream(true);
}

/* timearg: what --from and --to accept. ------------------------------------------- */

static void
test_time_arguments(void **state)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t ns;
	} cases[] = {
		{ "2026-11-24T22:00:00Z", 0, 1795557600000000000ull },
		{ "2026-11-24T22:00:00.123456789Z", 0, 1795557600123456789ull },
		{ "2026-11-24T22:00:00.5Z", 0, 1795557600500000000ull },
		{ "2026-11-24t22:00:00z", 0, 1795557600000000000ull },
		{ "2026-11-24 22:00:00Z", 0, 1795557600000000000ull },
		{ "2026-11-24T23:30:00+01:30", 0, 1795557600000000000ull },
		{ "2026-11-24T20:00:00-02:00", 0, 1795557600000000000ull },
		{ "1970-01-01T00:00:00Z", 0, 0 },
		{ "2024-02-29T00:00:00Z", 0, 1709164800000000000ull },
		{ "2016-12-31T23:59:60Z", 0, 1483228800000000000ull },
		{ "1795557600", 0, 1795557600000000000ull },
		{ "1795557600.000000001", 0, 1795557600000000001ull },
		{ "0", 0, 0 },
		{ "now", 0, 1000 * 1000000000ull },
		{ "now-5m", 0, 700 * 1000000000ull },
		{ "now-1h", -EINVAL, 0 },
		{ "now-2m30s", 0, 850 * 1000000000ull },
		{ "now+250ms", 0, 1000250000000ull },
		{ "now-1000s", 0, 0 },
		{ "now-1001s", -EINVAL, 0 },
		{ "2023-02-29T00:00:00Z", -EINVAL, 0 },
		{ "2026-13-01T00:00:00Z", -EINVAL, 0 },
		{ "2026-11-24T24:00:00Z", -EINVAL, 0 },
		{ "2026-11-24T22:00:00", -EINVAL, 0 },
		{ "2026-11-24T22:00:00.Z", -EINVAL, 0 },
		{ "2026-11-24T22:00:00.1234567891Z", -EINVAL, 0 },
		{ "1969-12-31T23:59:59Z", -EINVAL, 0 },
		{ "1970-01-01T00:30:00+01:00", -EINVAL, 0 },
		{ "12x", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "now-", -EINVAL, 0 },
		{ "now-5", -EINVAL, 0 },
		{ "now-5y", -EINVAL, 0 },
		{ "99999999999999999999", -EINVAL, 0 },
	};
	char buf[TIMEARG_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = 0;
		int rc = timearg_parse(cases[i].s, 1000 * 1000000000ull, &got);
		if (rc != cases[i].rc || (rc == 0 && got != cases[i].ns))
			fail_msg("'%s': rc %d ns %llu, want rc %d ns %llu", cases[i].s, rc,
				(unsigned long long)got, cases[i].rc, (unsigned long long)cases[i].ns);
	}
	timearg_format(1795557600123456789ull, buf);
	assert_string_equal(buf, "2026-11-24T22:00:00.123456789Z");
	timearg_format(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000000000Z");
	timearg_format(1709164800000000000ull, buf);
	assert_string_equal(buf, "2024-02-29T00:00:00.000000000Z");
	/* Formatting and parsing agree across many instants. */
	for (int i = 0; i < 10000; i++) {
		uint64_t t = rnd() % (4000000000ull * 1000000000ull), back;
		timearg_format(t, buf);
		assert_int_equal(timearg_parse(buf, 0, &back), 0);
		assert_int_equal(back, t);
	}
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_segments_interleaved),
		cmocka_unit_test(test_equal_timestamps_by_input_then_position),
		cmocka_unit_test(test_window_edges),
		cmocka_unit_test(test_opens_inputs_only_when_reached),
		cmocka_unit_test(test_out_of_order_input_keeps_its_order),
		cmocka_unit_test(test_corrupt_and_missing_inputs),
		cmocka_unit_test(test_no_inputs_and_empty_inputs),
		cmocka_unit_test(test_random_against_stable_sort),
		cmocka_unit_test(test_pcapout_pcap),
		cmocka_unit_test(test_pcapout_pcapng),
		cmocka_unit_test(test_time_arguments),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
