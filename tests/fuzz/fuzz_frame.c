/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for everything a peer can send down one session: the input is a
 * stream of frames, read the way a session reads its socket buffer. Each payload goes to
 * the decoder for its type; batch data goes through lz4 (bounded by max_raw) and the
 * record iterator.
 *
 * Besides memory errors, the target checks one property: whatever a decoder accepts, the
 * matching encoder writes back byte for byte. v1 has exactly one encoding per message, so
 * a difference means the decoder accepted something non-canonical or the two disagree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

#define FUZZ_MAX_LEN (1u << 20)
#define FUZZ_MAX_RAW (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_frame: %s\n", what);
		abort();
	}
}

/* Re-encodes a decoded message and compares it with the bytes it came from. */
static void
same_bytes(int enc_rc, const uint8_t *out, const uint8_t *p, size_t n, const char *what)
{
	must(enc_rc >= 0 && (size_t)enc_rc == n && memcmp(out, p, n) == 0, what);
}

/* Walks the records of one batch; each record header must re-encode to its own bytes. */
static void
walk_records(const uint8_t *raw, uint32_t raw_len, uint16_t n_ifaces)
{
	struct proto_rec_iter it;
	struct proto_rec r;
	uint8_t hdr[PROTO_REC_HDR_LEN];
	int rc;

	proto_rec_iter_init(&it, raw, raw_len, n_ifaces, PROTO_MAX_SNAPLEN);
	while ((rc = proto_rec_next(&it, &r)) == 1) {
		must(r.caplen <= r.origlen && r.iface < n_ifaces, "record limits not enforced");
		proto_rec_hdr_encode(hdr, r.ts_ns, r.iface, r.caplen, r.origlen);
		must(memcmp(hdr, r.data - PROTO_REC_HDR_LEN, PROTO_REC_HDR_LEN) == 0,
			"record header differs");
	}
	/* A failed step must leave the iterator where it was. */
	if (rc < 0)
		must(proto_rec_next(&it, &r) == rc, "record error is not sticky");
}

static void
on_batch(const uint8_t *p, size_t n, uint16_t flags, uint16_t n_ifaces)
{
	struct proto_batch b;
	uint8_t out[PROTO_BATCH_HDR_LEN];

	if (proto_batch_decode(p, n, FUZZ_MAX_RAW, &b) < 0)
		return;
	must(b.raw_len <= FUZZ_MAX_RAW, "raw_len above max_raw accepted");
	same_bytes(proto_batch_hdr_encode(b.seq, b.n_records, b.raw_len, out, sizeof(out)), out, p,
		PROTO_BATCH_HDR_LEN, "batch header differs");
	must(b.data == p + PROTO_BATCH_HDR_LEN && b.data_len == n - PROTO_BATCH_HDR_LEN,
		"batch data misplaced");

	if (flags & PROTO_F_LZ4) {
		/* Exactly raw_len bytes, so that ASan sees any write past it. */
		uint8_t *raw = malloc(b.raw_len);

		if (!raw)
			return;
		if (proto_lz4_decompress(b.data, b.data_len, raw, b.raw_len) == 0)
			walk_records(raw, b.raw_len, n_ifaces);
		free(raw);
	} else if (b.data_len == b.raw_len) {
		walk_records(b.data, b.raw_len, n_ifaces);
	}
}

/* Decodes one payload of the given type; returns the interface count of a HELLO, else 0. */
static uint16_t
on_payload(uint8_t type, uint16_t flags, const uint8_t *p, size_t n, uint16_t n_ifaces)
{
	/* Large enough for the largest payload any encoder can produce (NAMES, 90114 bytes). */
	static uint8_t out[PROTO_NAMES_MAX_LEN];

	switch (type) {
	case PROTO_HELLO: {
		static struct proto_hello m;

		if (proto_hello_decode(p, n, &m) == 0) {
			same_bytes(proto_hello_encode(&m, out, sizeof(out)), out, p, n, "HELLO differs");
			return m.n_ifaces;
		}
		break;
	}
	case PROTO_WELCOME: {
		struct proto_welcome m;

		if (proto_welcome_decode(p, n, &m) == 0)
			same_bytes(proto_welcome_encode(&m, out, sizeof(out)), out, p, n, "WELCOME differs");
		break;
	}
	case PROTO_BATCH:
		on_batch(p, n, flags, n_ifaces);
		break;
	case PROTO_ACK: {
		struct proto_ack m;

		if (proto_ack_decode(p, n, &m) == 0)
			same_bytes(proto_ack_encode(&m, out, sizeof(out)), out, p, n, "ACK differs");
		break;
	}
	case PROTO_STATS: {
		static struct proto_stats m;

		if (proto_stats_decode(p, n, &m) == 0)
			same_bytes(proto_stats_encode(&m, out, sizeof(out)), out, p, n, "STATS differs");
		break;
	}
	case PROTO_NAMES: {
		static struct proto_names m;

		if (proto_names_decode(p, n, &m) == 0) {
			for (unsigned i = 0; i < m.n; i++)
				must(m.ev[i].name[0] != '\0' && (m.ev[i].family == 4 || m.ev[i].family == 6),
					"NAMES limits not enforced");
			same_bytes(proto_names_encode(&m, out, sizeof(out)), out, p, n, "NAMES differs");
		}
		break;
	}
	case PROTO_HEARTBEAT: {
		uint64_t ts;

		if (proto_heartbeat_decode(p, n, &ts) == 0)
			same_bytes(
				proto_heartbeat_encode(ts, out, sizeof(out)), out, p, n, "HEARTBEAT differs");
		break;
	}
	case PROTO_ERROR: {
		static struct proto_error m;

		if (proto_error_decode(p, n, &m) == 0)
			same_bytes(proto_error_encode(&m, out, sizeof(out)), out, p, n, "ERROR differs");
		break;
	}
	default:
		must(0, "header decoder let through a type without a codec");
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Records are checked against the interface count of the last HELLO in the stream,
	 * as a receiver would; before any HELLO, against the largest count allowed. */
	uint16_t n_ifaces = PROTO_MAX_IFACES;
	size_t off = 0;

	while (off < size) {
		struct proto_hdr h;
		uint8_t hdr[PROTO_HDR_LEN];
		uint8_t *payload;
		uint16_t got;

		if (proto_hdr_decode(data + off, size - off, FUZZ_MAX_LEN, &h) < 0)
			break;
		must(h.len <= FUZZ_MAX_LEN && h.version == PROTO_VERSION, "header limits not enforced");
		proto_hdr_encode(hdr, h.type, h.flags, h.len);
		must(memcmp(hdr, data + off, PROTO_HDR_LEN) == 0, "frame header differs");
		off += PROTO_HDR_LEN;
		/* A session would wait for the rest of the payload; here the stream just ends. */
		if (h.len > size - off)
			break;
		/* A private copy of exactly len bytes, so ASan catches a decoder reading into the
		 * next frame. */
		payload = malloc(h.len ? h.len : 1);
		if (!payload)
			break;
		memcpy(payload, data + off, h.len);
		got = on_payload(h.type, h.flags, payload, h.len, n_ifaces);
		if (got)
			n_ifaces = got;
		free(payload);
		off += h.len;
	}
	return 0;
}
