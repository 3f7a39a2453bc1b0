/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for sensor/batcher.c: where batches are sealed (the size bound, a record larger
 * than the bound, flush), the frames they become (decoded with proto/wire.c as the
 * receiver does: header, batch header, lz4 or raw data, every record's fields and
 * bytes), sequence numbers and epochs, the age of the open batch, and the clamps on
 * record lengths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/wire.h"
#include "sensor/batcher.h"

#define MAX_SEALED 64

struct sealed {
	struct batch *b[MAX_SEALED];
	size_t n;
};

static void
on_sealed(void *arg, struct batch *b)
{
	struct sealed *s = arg;

	assert_true(s->n < MAX_SEALED);
	s->b[s->n++] = b;
}

static void
sealed_free(struct sealed *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->b[i]);
	s->n = 0;
}

/* The record bytes of a sealed batch, checked as the receiver checks them. Caller frees. */
static uint8_t *
open_batch(const struct batch *b, struct proto_batch *pb, uint16_t *flags)
{
	struct proto_hdr h;
	uint8_t *raw;

	assert_int_equal(proto_hdr_decode(b->frame, b->len, UINT32_MAX, &h), 0);
	assert_int_equal(h.type, PROTO_BATCH);
	assert_int_equal(h.len, b->len - PROTO_HDR_LEN);
	assert_int_equal(proto_batch_decode(b->frame + PROTO_HDR_LEN, h.len, UINT32_MAX, pb), 0);
	assert_int_equal(pb->seq, b->seq);
	assert_int_equal(pb->n_records, b->n_records);
	assert_int_equal(pb->raw_len, b->raw_len);
	raw = malloc(pb->raw_len);
	assert_non_null(raw);
	if (h.flags & PROTO_F_LZ4) {
		assert_true(pb->data_len < pb->raw_len);
		assert_int_equal(proto_lz4_decompress(pb->data, pb->data_len, raw, pb->raw_len), 0);
	} else {
		assert_int_equal(pb->data_len, pb->raw_len);
		memcpy(raw, pb->data, pb->raw_len);
	}
	*flags = h.flags;
	return raw;
}

/* Record i: caplen 100, iface i % 3, ts 1000 + i, origlen 1500, bytes i + k. */
static void
add_rec(struct batcher *b, uint32_t i)
{
	uint8_t data[100];

	for (size_t k = 0; k < sizeof(data); k++)
		data[k] = (uint8_t)(i + k);
	batcher_add(b, (uint16_t)(i % 3), 1000 + i, data, sizeof(data), 1500);
}

/* Checks that the records of b are add_rec(first .. first + n - 1). */
static void
check_recs(const struct batch *b, uint32_t first, uint32_t n)
{
	struct proto_batch pb;
	struct proto_rec_iter it;
	struct proto_rec r;
	uint16_t flags;
	uint8_t *raw = open_batch(b, &pb, &flags);
	uint32_t k = 0;
	int rc;

	assert_int_equal(b->n_records, n);
	assert_int_equal(b->raw_len, n * (PROTO_REC_HDR_LEN + 100));
	proto_rec_iter_init(&it, raw, pb.raw_len, 3, PROTO_MAX_SNAPLEN);
	while ((rc = proto_rec_next(&it, &r)) == 1) {
		uint32_t i = first + k++;

		assert_int_equal(r.ts_ns, 1000 + i);
		assert_int_equal(r.iface, i % 3);
		assert_int_equal(r.caplen, 100);
		assert_int_equal(r.origlen, 1500);
		for (size_t j = 0; j < 100; j++)
			assert_int_equal(r.data[j], (uint8_t)(i + j));
	}
	assert_int_equal(rc, 0);
	assert_int_equal(k, n);
	free(raw);
}

static void
test_seal_by_size(void **state)
{
	struct sealed s = { 0 };
	/* 8 records of 120 bytes fit in 1000; the 9th seals the batch before it. */
	struct batcher *b = batcher_new(1000, 7, on_sealed, &s);

	(void)state;
	assert_non_null(b);
	for (uint32_t i = 0; i < 20; i++)
		add_rec(b, i);
	assert_int_equal(s.n, 2);
	check_recs(s.b[0], 0, 8);
	check_recs(s.b[1], 8, 8);
	assert_int_equal(s.b[0]->seq, 7);
	assert_int_equal(s.b[1]->seq, 8);
	assert_int_equal(batcher_next_seq(b), 9);
	/* The four left are sealed by flush; a second flush seals nothing. */
	batcher_flush(b);
	assert_int_equal(s.n, 3);
	check_recs(s.b[2], 16, 4);
	assert_int_equal(s.b[2]->seq, 9);
	batcher_flush(b);
	assert_int_equal(s.n, 3);
	assert_int_equal(batcher_next_seq(b), 10);
	/* Exactly max_raw fits: 1000 / 125 = 8 records of 105 bytes of data. */
	{
		uint8_t data[105] = { 0 };
		for (int i = 0; i < 9; i++)
			batcher_add(b, 0, 1, data, sizeof(data), sizeof(data));
		assert_int_equal(s.n, 4);
		assert_int_equal(s.b[3]->n_records, 8);
		assert_int_equal(s.b[3]->raw_len, 1000);
	}
	batcher_free(b);
	sealed_free(&s);
}

static void
test_compression_choice(void **state)
{
	struct sealed s = { 0 };
	struct batcher *b = batcher_new(1 << 20, 1, on_sealed, &s);
	struct proto_batch pb;
	uint16_t flags;
	uint8_t *raw, data[1400];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)state;
	/* Compressible: lz4, and the frame is smaller than the records. */
	memset(data, 'A', sizeof(data));
	for (int i = 0; i < 50; i++)
		batcher_add(b, 0, (uint64_t)i, data, sizeof(data), sizeof(data));
	batcher_flush(b);
	assert_int_equal(s.n, 1);
	raw = open_batch(s.b[0], &pb, &flags);
	assert_true(flags & PROTO_F_LZ4);
	assert_true(s.b[0]->len < PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + s.b[0]->raw_len / 10);
	free(raw);
	/* Incompressible (one record of random bytes): sent raw, never larger than the
	 * record bytes. */
	for (size_t k = 0; k < sizeof(data); k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[k] = (uint8_t)x;
	}
	batcher_add(b, 0, 1, data, sizeof(data), sizeof(data));
	batcher_flush(b);
	assert_int_equal(s.n, 2);
	raw = open_batch(s.b[1], &pb, &flags);
	assert_int_equal(flags & PROTO_F_LZ4, 0);
	assert_int_equal(s.b[1]->len, PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + PROTO_REC_HDR_LEN + sizeof(data));
	assert_memory_equal(s.b[1]->frame + s.b[1]->len - sizeof(data), data, sizeof(data));
	free(raw);
	/* Many random records: whichever form is chosen, never larger than raw. */
	for (int i = 0; i < 50; i++) {
		for (size_t k = 0; k < sizeof(data); k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			data[k] = (uint8_t)x;
		}
		batcher_add(b, 0, (uint64_t)i, data, sizeof(data), sizeof(data));
	}
	batcher_flush(b);
	assert_int_equal(s.n, 3);
	raw = open_batch(s.b[2], &pb, &flags);
	assert_true(
		s.b[2]->len <= PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + 50 * (PROTO_REC_HDR_LEN + sizeof(data)));
	assert_memory_equal(raw + pb.raw_len - sizeof(data), data, sizeof(data));
	free(raw);
	batcher_free(b);
	sealed_free(&s);
}

static void
test_record_limits(void **state)
{
	struct sealed s = { 0 };
	struct batcher *b = batcher_new(100, 1, on_sealed, &s);
	uint8_t *big = calloc(1, PROTO_MAX_SNAPLEN + 1000);
	struct proto_batch pb;
	struct proto_rec_iter it;
	struct proto_rec r;
	uint16_t flags;
	uint8_t *raw, small[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

	(void)state;
	assert_non_null(big);
	/* A record larger than max_raw is never refused: it goes alone. */
	batcher_add(b, 0, 1, small, sizeof(small), 10);
	batcher_add(b, 0, 2, big, 500, 500);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0]->n_records, 1);
	batcher_add(b, 0, 3, small, sizeof(small), 10);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.b[1]->n_records, 1);
	assert_int_equal(s.b[1]->raw_len, PROTO_REC_HDR_LEN + 500);
	/* caplen is clamped to PROTO_MAX_SNAPLEN (origlen kept), and an origlen below caplen
	 * is raised to it: the receiver refuses caplen > origlen. */
	batcher_add(b, 1, 4, big, PROTO_MAX_SNAPLEN + 1000, PROTO_MAX_SNAPLEN + 1000);
	batcher_add(b, 2, 5, small, sizeof(small), 3);
	batcher_flush(b);
	assert_int_equal(s.n, 5);
	raw = open_batch(s.b[3], &pb, &flags);
	proto_rec_iter_init(&it, raw, pb.raw_len, 3, PROTO_MAX_SNAPLEN);
	assert_int_equal(proto_rec_next(&it, &r), 1);
	assert_int_equal(r.ts_ns, 4);
	assert_int_equal(r.caplen, PROTO_MAX_SNAPLEN);
	assert_int_equal(r.origlen, PROTO_MAX_SNAPLEN + 1000);
	assert_int_equal(proto_rec_next(&it, &r), 0);
	free(raw);
	raw = open_batch(s.b[4], &pb, &flags);
	proto_rec_iter_init(&it, raw, pb.raw_len, 3, PROTO_MAX_SNAPLEN);
	assert_int_equal(proto_rec_next(&it, &r), 1);
	assert_int_equal(r.iface, 2);
	assert_int_equal(r.caplen, 10);
	assert_int_equal(r.origlen, 10);
	assert_memory_equal(r.data, small, 10);
	free(raw);
	/* A zero-length record is a record. */
	batcher_add(b, 0, 6, small, 0, 60);
	batcher_flush(b);
	assert_int_equal(s.n, 6);
	assert_int_equal(s.b[5]->raw_len, PROTO_REC_HDR_LEN);
	free(big);
	batcher_free(b);
	sealed_free(&s);
}

static void
test_age_and_epochs(void **state)
{
	struct sealed s = { 0 };
	struct batcher *b = batcher_new(4096, 100, on_sealed, &s);
	uint64_t before, since;

	(void)state;
	assert_int_equal(batcher_open_since(b), 0);
	before = mono_ns();
	add_rec(b, 0);
	since = batcher_open_since(b);
	assert_true(since >= before && since <= mono_ns());
	/* A later record does not make the batch younger. */
	add_rec(b, 1);
	assert_int_equal(batcher_open_since(b), since);
	/* A new epoch numbers the open batch too. */
	batcher_set_next_seq(b, 1);
	batcher_flush(b);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0]->seq, 1);
	assert_int_equal(s.b[0]->first_ns, since);
	assert_int_equal(batcher_open_since(b), 0);
	assert_int_equal(batcher_next_seq(b), 2);
	check_recs(s.b[0], 0, 2);
	batcher_free(b);
	batcher_free(NULL);
	sealed_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_by_size),
		cmocka_unit_test(test_compression_choice),
		cmocka_unit_test(test_record_limits),
		cmocka_unit_test(test_age_and_epochs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
