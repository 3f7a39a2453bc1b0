/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the receiver's hot path: the input is one BATCH payload. It is
 * decoded, its data read both as an lz4 block and as raw records (the header flag that
 * chooses between them lives outside the payload), and the records walked.
 *
 * Properties checked besides memory safety: the batch and record headers re-encode to
 * their own bytes, and records that decode cleanly survive an lz4 round trip.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

#define FUZZ_MAX_RAW (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_batch: %s\n", what);
		abort();
	}
}

/* Returns 1 when the records fill raw exactly and number n_records, as a receiver
 * requires before storing a batch. */
static int
walk_records(const uint8_t *raw, uint32_t raw_len, uint32_t n_records, uint16_t n_ifaces)
{
	struct proto_rec_iter it;
	struct proto_rec r;
	uint8_t hdr[PROTO_REC_HDR_LEN];
	uint32_t count = 0;
	int rc;

	proto_rec_iter_init(&it, raw, raw_len, n_ifaces, PROTO_MAX_SNAPLEN);
	while ((rc = proto_rec_next(&it, &r)) == 1) {
		must(r.caplen <= r.origlen && r.iface < n_ifaces && r.caplen <= PROTO_MAX_SNAPLEN,
			"record limits not enforced");
		must(r.data >= raw + PROTO_REC_HDR_LEN && r.data + r.caplen <= raw + raw_len,
			"record data outside the batch");
		proto_rec_hdr_encode(hdr, r.ts_ns, r.iface, r.caplen, r.origlen);
		must(memcmp(hdr, r.data - PROTO_REC_HDR_LEN, PROTO_REC_HDR_LEN) == 0,
			"record header differs");
		count++;
	}
	if (rc < 0) {
		must(proto_rec_next(&it, &r) == rc, "record error is not sticky");
		return 0;
	}
	return count == n_records;
}

/* Valid record bytes must come back unchanged through our own compressor. */
static void
lz4_round_trip(const uint8_t *raw, uint32_t raw_len)
{
	int bound = proto_lz4_bound(raw_len);
	uint8_t *z, *back;
	int zn;

	must(bound > 0, "no lz4 bound for a valid batch");
	z = malloc((size_t)bound);
	back = malloc(raw_len);
	if (z && back) {
		zn = proto_lz4_compress(raw, raw_len, z, (uint32_t)bound);
		must(zn > 0 && zn <= bound, "compression into the bound failed");
		must(proto_lz4_decompress(z, (uint32_t)zn, back, raw_len) == 0, "own block rejected");
		must(memcmp(back, raw, raw_len) == 0, "lz4 round trip differs");
	}
	free(back);
	free(z);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_batch b;
	uint8_t out[PROTO_BATCH_HDR_LEN];
	uint16_t n_ifaces;
	uint8_t *raw;
	int rc;

	if (proto_batch_decode(data, size, FUZZ_MAX_RAW, &b) < 0)
		return 0;
	must(b.raw_len <= FUZZ_MAX_RAW && b.n_records > 0, "batch limits not enforced");
	must((uint64_t)b.n_records * PROTO_REC_HDR_LEN <= b.raw_len, "record count not checked");
	must(b.data == data + PROTO_BATCH_HDR_LEN && b.data_len == size - PROTO_BATCH_HDR_LEN,
		"batch data misplaced");
	rc = proto_batch_hdr_encode(b.seq, b.n_records, b.raw_len, out, sizeof(out));
	must(rc == PROTO_BATCH_HDR_LEN && memcmp(out, data, PROTO_BATCH_HDR_LEN) == 0,
		"batch header differs");

	/* Let the input choose the interface count too, so the iface check gets exercised
	 * against every limit from 1 to 64. */
	n_ifaces = (uint16_t)(1 + b.seq % PROTO_MAX_IFACES);

	/* As if the LZ4 flag were set: decompress into exactly raw_len bytes. */
	raw = malloc(b.raw_len);
	if (raw) {
		if (proto_lz4_decompress(b.data, b.data_len, raw, b.raw_len) == 0 &&
			walk_records(raw, b.raw_len, b.n_records, n_ifaces))
			lz4_round_trip(raw, b.raw_len);
		free(raw);
	}

	/* As if it were not: the data are the records themselves, and must be raw_len long. */
	if (b.data_len == b.raw_len && walk_records(b.data, b.raw_len, b.n_records, n_ifaces))
		lz4_round_trip(b.data, b.raw_len);
	return 0;
}
