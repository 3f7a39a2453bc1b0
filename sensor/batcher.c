/* SPDX-License-Identifier: BSD-2-Clause */
#include "sensor/batcher.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "proto/wire.h"

struct batcher {
	uint8_t *raw;
	uint32_t cap;     /* allocated bytes of raw */
	uint32_t max_raw; /* seal threshold */
	uint32_t len;
	uint32_t n;
	uint64_t since;
	uint64_t seq;
	batcher_sealed_cb cb;
	void *arg;
};

uint64_t
mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct batcher *
batcher_new(uint32_t max_raw, uint64_t first_seq, batcher_sealed_cb cb, void *arg)
{
	struct batcher *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->max_raw = max_raw;
	/* Room for one maximal record beyond the threshold so that no record is refused. */
	b->cap = max_raw + PROTO_REC_HDR_LEN + PROTO_MAX_SNAPLEN;
	b->raw = malloc(b->cap);
	if (!b->raw || proto_lz4_bound(b->cap) <= 0) {
		free(b->raw);
		free(b);
		return NULL;
	}
	b->seq = first_seq;
	b->cb = cb;
	b->arg = arg;
	return b;
}

void
batcher_flush(struct batcher *b)
{
	if (b->n == 0)
		return;
	uint16_t flags = 0;
	const size_t hdr = PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN;
	/* lz4 writes straight into the frame, which therefore has room for its worst case
	 * (a little above the raw size); the slack is given back below, in place. */
	size_t room = (size_t)proto_lz4_bound(b->len);
	if (room < b->len)
		room = b->len;
	struct batch *bt = malloc(sizeof(*bt) + hdr + room);
	if (!bt) {
		/* Nothing sensible to do without memory: the records are lost and counted
		 * by the caller as queue drops through the missing batch. */
		log_warnx("batcher: out of memory, %u records lost", b->n);
		b->len = b->n = 0;
		b->since = 0;
		return;
	}
	uint32_t dlen = b->len;
	int clen = proto_lz4_compress(b->raw, b->len, bt->frame + hdr, (uint32_t)room);
	if (clen > 0 && (uint32_t)clen < b->len) {
		flags = PROTO_F_LZ4;
		dlen = (uint32_t)clen;
	} else {
		/* Incompressible (encrypted payloads): sent as is, never larger. */
		memcpy(bt->frame + hdr, b->raw, b->len);
	}
	if (dlen < room) {
		struct batch *small = realloc(bt, sizeof(*bt) + hdr + dlen);
		if (small)
			bt = small;
	}
	proto_batch_hdr_encode(b->seq, b->n, b->len, bt->frame + PROTO_HDR_LEN, PROTO_BATCH_HDR_LEN);
	proto_hdr_encode(bt->frame, PROTO_BATCH, flags, PROTO_BATCH_HDR_LEN + dlen);
	bt->next = NULL;
	bt->seq = b->seq++;
	bt->n_records = b->n;
	bt->raw_len = b->len;
	bt->first_ns = b->since;
	bt->len = PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + dlen;
	b->len = b->n = 0;
	b->since = 0;
	b->cb(b->arg, bt);
}

void
batcher_add(struct batcher *b, uint16_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
	uint32_t origlen)
{
	if (caplen > PROTO_MAX_SNAPLEN)
		caplen = PROTO_MAX_SNAPLEN;
	if (b->n > 0 && b->len + PROTO_REC_HDR_LEN + caplen > b->max_raw)
		batcher_flush(b);
	if (b->n == 0)
		b->since = mono_ns();
	proto_rec_hdr_encode(b->raw + b->len, ts_ns, iface, caplen, origlen < caplen ? caplen : origlen);
	memcpy(b->raw + b->len + PROTO_REC_HDR_LEN, data, caplen);
	b->len += PROTO_REC_HDR_LEN + caplen;
	b->n++;
}

uint64_t
batcher_open_since(const struct batcher *b)
{
	return b->n ? b->since : 0;
}
uint64_t
batcher_next_seq(const struct batcher *b)
{
	return b->seq;
}
void
batcher_set_next_seq(struct batcher *b, uint64_t seq)
{
	b->seq = seq;
}

void
batcher_free(struct batcher *b)
{
	if (!b)
		return;
	free(b->raw);
	free(b);
}
