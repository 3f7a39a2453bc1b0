/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Batcher: packs packet records into batches bounded by size and by age, then
 * seals each into one complete, lz4-compressed BATCH frame ready for the wire.
 */
#ifndef PCAPLINE_SENSOR_BATCHER_H
#define PCAPLINE_SENSOR_BATCHER_H

#include <stddef.h>
#include <stdint.h>

/* A sealed BATCH frame. Owned by whoever holds it; free with free(). */
struct batch {
	struct batch *next;
	uint64_t seq;
	uint32_t n_records;
	uint32_t raw_len;  /* record bytes before compression */
	uint64_t first_ns; /* creation time (monotonic), for latency */
	size_t len;        /* bytes in frame */
	uint8_t frame[];   /* frame header + batch header + data */
};

typedef void (*batcher_sealed_cb)(void *arg, struct batch *b);

struct batcher;

/* max_raw: record bytes per batch (at least one maximal record fits regardless).
 * Sealed batches are handed to cb, which takes ownership. */
struct batcher *batcher_new(uint32_t max_raw, uint64_t first_seq, batcher_sealed_cb cb, void *arg);
/* Appends one record, sealing the current batch first if the record does not fit. */
void batcher_add(struct batcher *b, uint16_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
	uint32_t origlen);
/* Seals the current batch if it holds any record. */
void batcher_flush(struct batcher *b);
/* Monotonic ns when the oldest record of the open batch arrived, 0 if empty. */
uint64_t batcher_open_since(const struct batcher *b);
uint64_t batcher_next_seq(const struct batcher *b);
/* The open batch, and those after it, are numbered from seq (a new epoch). */
void batcher_set_next_seq(struct batcher *b, uint64_t seq);
void batcher_free(struct batcher *b);

uint64_t mono_ns(void);

#endif
