/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for proto/wire.c. The hex vectors below are the ones printed in
 * proto/PROTOCOL.md, "Test vectors"; a change to either must change both.
 *
 * Inputs that a decoder must reject are copied into heap buffers of their exact size,
 * so that AddressSanitizer turns any read past the end into a failure; encoders likewise
 * write into buffers of exactly the capacity they are given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

/* ---- Vectors (keep in step with proto/PROTOCOL.md) ---------------------------------- */

#define HDR_EXAMPLE "50434c4e 01 03 0001 0000012c 00000000"

#define HELLO_HDR "50434c4e 01 01 0000 0000003b 00000000"
#define HELLO_PAYLOAD                     \
	"0002 7331"                       \
	"0005 302e312e30"                 \
	"00000001"                        \
	"0102030405060708"                \
	"0005 74306b336e"                 \
	"0002"                            \
	"00000001 0000ffff 0004 65746830" \
	"00000114 00040000 0003 616e79"

#define WELCOME_HDR     "50434c4e 01 02 0000 00000018 00000000"
#define WELCOME_PAYLOAD "0102030405060708 000000000000002a 00100000 00001388"

#define BATCH_HDR         "50434c4e 01 03 0000 0000003e 00000000"
#define BATCH_PAYLOAD_HDR "000000000000002a 00000002 0000002e"
#define REC1              "17979cfe3d85cd15 0000 0000 00000004 0000003c deadbeef"
#define REC2              "17979cfe3d85d0fd 0001 0000 00000002 00000002 0102"
#define BATCH_PAYLOAD     BATCH_PAYLOAD_HDR REC1 REC2

/* One record (ts 0, iface 0, caplen = origlen = 32, 32 zero bytes) as a hand-made lz4
 * block with three matches, so the vector does not depend on liblz4's compressor. */
#define LZ4_HDR         "50434c4e 01 03 0001 00000026 00000000"
#define LZ4_PAYLOAD_HDR "0000000000000007 00000001 00000034"
#define LZ4_BLOCK       "17 00 0100 40 00000020 0400 1f 00 0100 07 50 0000000000"
#define LZ4_RAW                                        \
	"0000000000000000 0000 0000 00000020 00000020" \
	"0000000000000000000000000000000000000000000000000000000000000000"

#define ACK_HDR     "50434c4e 01 04 0000 00000010 00000000"
#define ACK_PAYLOAD "0102030405060708 0000000000000029"

#define STATS_HDR     "50434c4e 01 05 0000 0000001e 00000000"
#define STATS_PAYLOAD "17979cfe362a0000 0002 0001 00000000000003e8 1234 0000000000000007"

#define HEARTBEAT_HDR     "50434c4e 01 07 0000 00000008 00000000"
#define HEARTBEAT_PAYLOAD "0102030405060708"

#define ERROR_HDR     "50434c4e 01 09 0000 0000000d 00000000"
#define ERROR_PAYLOAD "0003 0009 62616420746f6b656e"

#define NAMES_HDR       "50434c4e 01 06 0000 00000054 00000000"
#define NAMES_EV0_FIXED "17979cfe3d85cd15 01 04 c6120032 0000 0000003c"
#define NAMES_EV0_STRS  "000f 7777772e6578616d706c652e636f6d 0000"
#define NAMES_EV1                                                               \
	"17979cfe3d85d0fd 03 06 20010db8000000000000000000000001 01bb 00000000" \
	"0003 617069 0004 70726f64"
#define NAMES_PAYLOAD "0002" NAMES_EV0_FIXED NAMES_EV0_STRS NAMES_EV1

/* ---- Helpers ------------------------------------------------------------------------ */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses hex digits, ignoring spaces, into out; returns the byte count. */
static size_t
unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *s; s++) {
		int v;

		if (*s == ' ')
			continue;
		v = hexval(*s);
		if (v < 0)
			fail_msg("bad hex digit '%c' in vector", *s);
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= cap)
			fail_msg("vector longer than %zu bytes", cap);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0)
		fail_msg("odd number of hex digits in vector");
	return n;
}

static void
assert_bytes_hex(const uint8_t *got, size_t n, const char *hex)
{
	uint8_t want[8192];
	size_t wn = unhex(hex, want, sizeof(want));

	assert_int_equal(n, wn);
	assert_memory_equal(got, want, wn);
}

/* A heap copy of exactly n bytes (NULL for n == 0) so that ASan catches over-reads. */
static uint8_t *
dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *q;

	if (n == 0)
		return NULL;
	q = malloc(n);
	assert_non_null(q);
	memcpy(q, p, n);
	return q;
}

/* Decoders and encoders behind one signature, for the cut-point and capacity sweeps. */
typedef int (*decode_fn)(const uint8_t *p, size_t n);
typedef int (*encode_fn)(uint8_t *out, size_t cap);

/* Every strict prefix of a valid payload must be reported as truncated, and the full
 * payload plus one byte as trailing. */
static void
sweep_cuts(decode_fn dec, const char *hex)
{
	uint8_t buf[8192];
	size_t n = unhex(hex, buf, sizeof(buf) - 1);

	for (size_t k = 0; k < n; k++) {
		uint8_t *q = dup_exact(buf, k);
		int rc = dec(q, k);

		if (rc != PROTO_ETRUNC)
			fail_msg("cut at %zu of %zu: got %d (%s), want PROTO_ETRUNC", k, n, rc,
				proto_strerror(rc));
		free(q);
	}
	{
		uint8_t *q = dup_exact(buf, n);

		assert_int_equal(dec(q, n), 0);
		free(q);
	}
	buf[n] = 0x00;
	{
		uint8_t *q = dup_exact(buf, n + 1);

		assert_int_equal(dec(q, n + 1), PROTO_ETRAILING);
		free(q);
	}
}

/* An encoder given less room than its output must fail with ENOSPC, never write past the
 * capacity, and succeed with exactly the right capacity. */
static void
sweep_caps(encode_fn enc, const char *hex)
{
	uint8_t want[8192];
	size_t n = unhex(hex, want, sizeof(want));

	for (size_t cap = 0; cap < n; cap++) {
		uint8_t *out = cap ? malloc(cap) : NULL;
		int rc = enc(out, cap);

		if (rc != PROTO_ENOSPC)
			fail_msg("cap %zu of %zu: got %d, want PROTO_ENOSPC", cap, n, rc);
		free(out);
	}
	{
		uint8_t *out = malloc(n);

		assert_non_null(out);
		assert_int_equal(enc(out, n), (int)n);
		assert_memory_equal(out, want, n);
		free(out);
	}
}

static void
ref_hello(struct proto_hello *m)
{
	memset(m, 0, sizeof(*m));
	strcpy(m->sensor_id, "s1");
	strcpy(m->version, "0.1.0");
	m->caps = PROTO_CAP_LZ4;
	m->epoch = 0x0102030405060708ull;
	strcpy(m->token, "t0k3n");
	m->n_ifaces = 2;
	m->ifaces[0].linktype = 1;
	m->ifaces[0].snaplen = 65535;
	strcpy(m->ifaces[0].name, "eth0");
	m->ifaces[1].linktype = 276;
	m->ifaces[1].snaplen = 262144;
	strcpy(m->ifaces[1].name, "any");
}

static void
assert_hello_equal(const struct proto_hello *a, const struct proto_hello *b)
{
	assert_string_equal(a->sensor_id, b->sensor_id);
	assert_string_equal(a->version, b->version);
	assert_int_equal(a->caps, b->caps);
	assert_int_equal(a->epoch, b->epoch);
	assert_string_equal(a->token, b->token);
	assert_int_equal(a->n_ifaces, b->n_ifaces);
	for (unsigned i = 0; i < a->n_ifaces; i++) {
		assert_int_equal(a->ifaces[i].linktype, b->ifaces[i].linktype);
		assert_int_equal(a->ifaces[i].snaplen, b->ifaces[i].snaplen);
		assert_string_equal(a->ifaces[i].name, b->ifaces[i].name);
	}
}

static struct proto_hello hello_enc_src;
static int
enc_hello(uint8_t *out, size_t cap)
{
	return proto_hello_encode(&hello_enc_src, out, cap);
}
static int
dec_hello(const uint8_t *p, size_t n)
{
	static struct proto_hello m;

	return proto_hello_decode(p, n, &m);
}

static const struct proto_welcome ref_welcome = { 0x0102030405060708ull, 42, 1048576, 5000 };
static int
enc_welcome(uint8_t *out, size_t cap)
{
	return proto_welcome_encode(&ref_welcome, out, cap);
}
static int
dec_welcome(const uint8_t *p, size_t n)
{
	struct proto_welcome m;

	return proto_welcome_decode(p, n, &m);
}

static const struct proto_ack ref_ack = { 0x0102030405060708ull, 41 };
static int
enc_ack(uint8_t *out, size_t cap)
{
	return proto_ack_encode(&ref_ack, out, cap);
}
static int
dec_ack(const uint8_t *p, size_t n)
{
	struct proto_ack m;

	return proto_ack_decode(p, n, &m);
}

static void
ref_stats(struct proto_stats *m)
{
	memset(m, 0, sizeof(*m));
	m->ts_ns = 1700000000000000000ull;
	m->n = 2;
	m->s[0].id = PROTO_ST_CAPTURED;
	m->s[0].value = 1000;
	m->s[1].id = 0x1234; /* unknown to v1, must survive a round trip */
	m->s[1].value = 7;
}

static struct proto_stats stats_enc_src;
static int
enc_stats(uint8_t *out, size_t cap)
{
	return proto_stats_encode(&stats_enc_src, out, cap);
}
static int
dec_stats(const uint8_t *p, size_t n)
{
	static struct proto_stats m;

	return proto_stats_decode(p, n, &m);
}

static int
enc_heartbeat(uint8_t *out, size_t cap)
{
	return proto_heartbeat_encode(0x0102030405060708ull, out, cap);
}
static int
dec_heartbeat(const uint8_t *p, size_t n)
{
	uint64_t ts;

	return proto_heartbeat_decode(p, n, &ts);
}

static struct proto_error error_enc_src = { PROTO_ERR_AUTH, "bad token" };
static int
enc_error(uint8_t *out, size_t cap)
{
	return proto_error_encode(&error_enc_src, out, cap);
}
static int
dec_error(const uint8_t *p, size_t n)
{
	static struct proto_error m;

	return proto_error_decode(p, n, &m);
}

static void
ref_names(struct proto_names *m)
{
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

	memset(m, 0, sizeof(*m));
	m->n = 2;
	m->ev[0].ts_ns = 1700000000123456789ull;
	m->ev[0].source = PROTO_NSRC_DNS;
	m->ev[0].family = 4;
	memcpy(m->ev[0].addr, "\xc6\x12\x00\x32", 4);
	m->ev[0].ttl_s = 60;
	strcpy(m->ev[0].name, "www.example.com");
	m->ev[1].ts_ns = 1700000000123457789ull;
	m->ev[1].source = PROTO_NSRC_STATIC;
	m->ev[1].family = 6;
	memcpy(m->ev[1].addr, v6, 16);
	m->ev[1].port = 443;
	strcpy(m->ev[1].name, "api");
	strcpy(m->ev[1].ns, "prod");
}

static struct proto_names names_enc_src;
static int
enc_names(uint8_t *out, size_t cap)
{
	return proto_names_encode(&names_enc_src, out, cap);
}
static int
dec_names(const uint8_t *p, size_t n)
{
	static struct proto_names m;

	return proto_names_decode(p, n, &m);
}

static int
enc_batch_hdr(uint8_t *out, size_t cap)
{
	return proto_batch_hdr_encode(42, 2, 46, out, cap);
}

/* Decodes a hex payload into a fresh heap buffer with the given decoder. */
static int
dec_hex(decode_fn dec, const char *hex)
{
	uint8_t buf[8192];
	size_t n = unhex(hex, buf, sizeof(buf));
	uint8_t *q = dup_exact(buf, n);
	int rc = dec(q, n);

	free(q);
	return rc;
}

/* ---- proto_strerror ----------------------------------------------------------------- */

static void
test_strerror(void **state)
{
	(void)state;
	/* Every code has its own message, distinct from the fallback for unknown codes. */
	const char *unknown = proto_strerror(-1000);

	for (int a = PROTO_ETRAILING; a <= PROTO_OK; a++) {
		assert_non_null(proto_strerror(a));
		assert_string_not_equal(proto_strerror(a), unknown);
		for (int b = PROTO_ETRAILING; b < a; b++)
			assert_string_not_equal(proto_strerror(a), proto_strerror(b));
	}
	assert_string_equal(unknown, proto_strerror(1));
}

/* ---- Frame header ------------------------------------------------------------------- */

static void
test_hdr_encode_vector(void **state)
{
	uint8_t out[PROTO_HDR_LEN];

	(void)state;
	proto_hdr_encode(out, PROTO_BATCH, PROTO_F_LZ4, 300);
	assert_bytes_hex(out, sizeof(out), HDR_EXAMPLE);
	proto_hdr_encode(out, PROTO_HELLO, 0, 59);
	assert_bytes_hex(out, sizeof(out), HELLO_HDR);
	proto_hdr_encode(out, PROTO_ERROR, 0, 13);
	assert_bytes_hex(out, sizeof(out), ERROR_HDR);
}

static void
test_hdr_decode_ok(void **state)
{
	uint8_t buf[32];
	struct proto_hdr h;
	size_t n = unhex(HDR_EXAMPLE, buf, sizeof(buf));
	static const uint8_t types[] = { PROTO_HELLO, PROTO_WELCOME, PROTO_BATCH, PROTO_ACK, PROTO_STATS,
		PROTO_NAMES, PROTO_HEARTBEAT, PROTO_ERROR };

	(void)state;
	assert_int_equal(proto_hdr_decode(buf, n, 300, &h), 0);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.type, PROTO_BATCH);
	assert_int_equal(h.flags, PROTO_F_LZ4);
	assert_int_equal(h.len, 300);
	/* Bytes after the header belong to the payload and do not matter here. */
	memset(buf + n, 0xff, sizeof(buf) - n);
	assert_int_equal(proto_hdr_decode(buf, sizeof(buf), 1u << 20, &h), 0);
	assert_int_equal(h.len, 300);

	for (size_t i = 0; i < sizeof(types); i++) {
		proto_hdr_encode(buf, types[i], 0, 0);
		memset(&h, 0xaa, sizeof(h));
		assert_int_equal(proto_hdr_decode(buf, PROTO_HDR_LEN, 0, &h), 0);
		assert_int_equal(h.type, types[i]);
		assert_int_equal(h.flags, 0);
		assert_int_equal(h.len, 0);
	}
}

static void
test_hdr_eagain(void **state)
{
	uint8_t buf[PROTO_HDR_LEN];
	struct proto_hdr h;

	(void)state;
	unhex(HDR_EXAMPLE, buf, sizeof(buf));
	for (size_t k = 0; k < PROTO_HDR_LEN; k++) {
		uint8_t *q = dup_exact(buf, k);

		assert_int_equal(proto_hdr_decode(q, k, 1u << 20, &h), PROTO_EAGAIN);
		free(q);
	}
}

static void
test_hdr_errors(void **state)
{
	static const struct {
		const char *hex;
		uint32_t max_len;
		int want;
	} cases[] = {
		{ "50434c4f 01 03 0000 00000010 00000000", 1u << 20, PROTO_EMAGIC },
		{ "4e4c4350 01 03 0000 00000010 00000000", 1u << 20, PROTO_EMAGIC }, /* swapped */
		{ "00000000 00 00 0000 00000000 00000000", 1u << 20, PROTO_EMAGIC },
		{ "50434c4e 02 03 0000 00000010 00000000", 1u << 20, PROTO_EVERSION },
		{ "50434c4e 00 03 0000 00000010 00000000", 1u << 20, PROTO_EVERSION },
		{ "50434c4e ff 03 0000 00000010 00000000", 1u << 20, PROTO_EVERSION },
		{ "50434c4e 01 00 0000 00000010 00000000", 1u << 20, PROTO_ETYPE },
		{ "50434c4e 01 0a 0000 00000010 00000000", 1u << 20, PROTO_ETYPE },
		{ "50434c4e 01 08 0000 00000010 00000000", 1u << 20, PROTO_ETYPE }, /* CONTROL */
		{ "50434c4e 01 ff 0000 00000010 00000000", 1u << 20, PROTO_ETYPE },
		{ "50434c4e 01 03 0000 00000010 00000001", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 03 0000 00000010 00000100", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 03 0000 00000010 00010000", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 03 0000 00000010 80000000", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 03 0002 00000010 00000000", 1u << 20, PROTO_EINVAL }, /* flag 1 */
		{ "50434c4e 01 03 8001 00000010 00000000", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 01 0001 00000010 00000000", 1u << 20, PROTO_EINVAL }, /* HELLO+LZ4 */
		{ "50434c4e 01 07 0001 00000008 00000000", 1u << 20, PROTO_EINVAL },
		{ "50434c4e 01 03 0000 00100001 00000000", 1u << 20, PROTO_ETOOBIG },
		{ "50434c4e 01 03 0000 ffffffff 00000000", 1u << 20, PROTO_ETOOBIG },
		{ "50434c4e 01 03 0000 00000001 00000000", 0, PROTO_ETOOBIG },
		{ "50434c4e 01 03 0000 00100000 00000000", 1u << 20, 0 }, /* len == max passes */
		/* The first failing check decides the error, in the documented order. */
		{ "50434c4f 02 00 0002 ffffffff 00000001", 0, PROTO_EMAGIC },
		{ "50434c4e 02 00 0002 ffffffff 00000001", 0, PROTO_EVERSION },
		{ "50434c4e 01 00 0002 ffffffff 00000001", 0, PROTO_ETYPE },
		{ "50434c4e 01 03 0002 ffffffff 00000001", 0, PROTO_EINVAL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[PROTO_HDR_LEN];
		struct proto_hdr h;
		int rc;

		assert_int_equal(unhex(cases[i].hex, buf, sizeof(buf)), PROTO_HDR_LEN);
		uint8_t *q = dup_exact(buf, sizeof(buf));
		rc = proto_hdr_decode(q, sizeof(buf), cases[i].max_len, &h);
		free(q);
		if (rc != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].hex, rc, cases[i].want);
	}
}

/* ---- HELLO -------------------------------------------------------------------------- */

static void
test_hello_vector(void **state)
{
	struct proto_hello m, d;
	uint8_t out[8192];
	int n;

	(void)state;
	ref_hello(&m);
	n = proto_hello_encode(&m, out, sizeof(out));
	assert_int_equal(n, 59);
	assert_bytes_hex(out, (size_t)n, HELLO_PAYLOAD);

	memset(&d, 0xaa, sizeof(d));
	assert_int_equal(proto_hello_decode(out, (size_t)n, &d), 0);
	assert_hello_equal(&d, &m);

	hello_enc_src = m;
	sweep_caps(enc_hello, HELLO_PAYLOAD);
	sweep_cuts(dec_hello, HELLO_PAYLOAD);
}

static void
test_hello_limits(void **state)
{
	static struct proto_hello m, d;
	static uint8_t out[8192];
	int n;

	(void)state;
	/* The largest HELLO v1 allows; PROTOCOL.md quotes its size (5172 bytes). */
	memset(&m, 0, sizeof(m));
	memset(m.sensor_id, 'a', PROTO_MAX_ID);
	memset(m.version, ' ', PROTO_MAX_VERSION);
	memset(m.token, '~', PROTO_MAX_TEXT);
	m.caps = 0xffffffffu;
	m.epoch = UINT64_MAX;
	m.n_ifaces = PROTO_MAX_IFACES;
	for (unsigned i = 0; i < PROTO_MAX_IFACES; i++) {
		m.ifaces[i].linktype = 0xffffffffu;
		m.ifaces[i].snaplen = PROTO_MAX_SNAPLEN;
		memset(m.ifaces[i].name, '!', PROTO_MAX_IFNAME);
	}
	n = proto_hello_encode(&m, out, sizeof(out));
	assert_int_equal(n, 5172);
	assert_int_equal(proto_hello_decode(out, (size_t)n, &d), 0);
	assert_hello_equal(&d, &m);

	/* The smallest. */
	memset(&m, 0, sizeof(m));
	strcpy(m.sensor_id, "A-z_0.9");
	m.n_ifaces = 1;
	m.ifaces[0].snaplen = 1;
	n = proto_hello_encode(&m, out, sizeof(out));
	assert_int_equal(n, 37);
	assert_bytes_hex(out, (size_t)n,
		"0007 412d7a5f302e39 0000 00000000 0000000000000000 0000 0001 "
		"00000000 00000001 0000");
	assert_int_equal(proto_hello_decode(out, (size_t)n, &d), 0);
	assert_hello_equal(&d, &m);
}

/* Builds a HELLO payload field by field, so that tests can put any value in any field. */
struct raw_hello {
	const char *id;
	int id_len; /* -1: strlen(id) */
	const char *version;
	int version_len;
	const char *token;
	int token_len;
	int n_ifaces;  /* announced count */
	int n_written; /* iface entries actually written, -1: n_ifaces */
	uint32_t snaplen;
	const char *name;
	int name_len;
};

static size_t
put_raw_str(uint8_t *p, const char *s, int len)
{
	size_t n = len < 0 ? strlen(s) : (size_t)len;

	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return 2 + n;
}

static size_t
build_hello(uint8_t *out, const struct raw_hello *r)
{
	size_t n = 0;
	int written = r->n_written < 0 ? r->n_ifaces : r->n_written;

	n += put_raw_str(out + n, r->id, r->id_len);
	n += put_raw_str(out + n, r->version, r->version_len);
	memcpy(out + n, "\0\0\0\1\1\2\3\4\5\6\7\10", 12); /* caps, epoch */
	n += 12;
	n += put_raw_str(out + n, r->token, r->token_len);
	out[n++] = (uint8_t)(r->n_ifaces >> 8);
	out[n++] = (uint8_t)r->n_ifaces;
	for (int i = 0; i < written; i++) {
		memcpy(out + n, "\0\0\0\1", 4);
		n += 4;
		out[n++] = (uint8_t)(r->snaplen >> 24);
		out[n++] = (uint8_t)(r->snaplen >> 16);
		out[n++] = (uint8_t)(r->snaplen >> 8);
		out[n++] = (uint8_t)r->snaplen;
		n += put_raw_str(out + n, r->name, r->name_len);
	}
	return n;
}

static void
test_hello_invalid(void **state)
{
	/* Filled with 300 bytes of 'a' before use; long enough for every over-long field. */
	static char long_str[301];
	/* The first row is valid; each later row changes one field of it. The macros are the
	 * base row's fields: (string, length or -1 for strlen) and, for IF1, the announced and
	 * written interface counts and the snaplen. */
#define ID   "s1", -1
#define VER  "1.0", -1
#define TOK  "", -1
#define IF1  1, -1, 65535
#define NAME "eth0", -1
	static const struct {
		struct raw_hello r;
		int want;
		const char *what;
	} cases[] = {
		{ { ID, VER, TOK, IF1, NAME }, 0, "base case" },
		{ { "A-z_0.9", -1, "1.0 (x)", -1, "!~", -1, 1, -1, 1, "", -1 }, 0, "edge values" },
		{ { "a..b", -1, "", -1, TOK, 1, -1, 262144, "!", -1 }, 0, "inner dots" },
		{ { long_str, 128, "", -1, long_str, 256, 1, -1, 1, long_str, 64 }, 0, "max lengths" },
		{ { "", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "empty id" },
		{ { long_str, 129, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id 129" },
		{ { "a b", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id space" },
		{ { "a/b", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id slash" },
		{ { "a:b", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id colon" },
		{ { "a\0b", 3, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id NUL" },
		{ { "a\xc3\xa9", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id UTF-8" },
		{ { "..", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id dot-dot" },
		{ { ".", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id dot" },
		{ { ".s1", -1, VER, TOK, IF1, NAME }, PROTO_EINVAL, "id leading dot" },
		{ { ID, long_str, 33, TOK, IF1, NAME }, PROTO_EINVAL, "version 33" },
		{ { ID, "1.0\n", -1, TOK, IF1, NAME }, PROTO_EINVAL, "version LF" },
		{ { ID, "1.\x7f", -1, TOK, IF1, NAME }, PROTO_EINVAL, "version DEL" },
		{ { ID, VER, long_str, 257, IF1, NAME }, PROTO_EINVAL, "token 257" },
		{ { ID, VER, "a b", -1, IF1, NAME }, PROTO_EINVAL, "token space" },
		{ { ID, VER, "a\0", 2, IF1, NAME }, PROTO_EINVAL, "token NUL" },
		{ { ID, VER, TOK, 0, -1, 65535, NAME }, PROTO_EINVAL, "0 ifaces" },
		{ { ID, VER, TOK, 65, -1, 65535, NAME }, PROTO_EINVAL, "65 ifaces" },
		{ { ID, VER, TOK, 64, -1, 65535, NAME }, 0, "64 ifaces" },
		{ { ID, VER, TOK, 0xffff, 0, 65535, NAME }, PROTO_EINVAL, "65535 ifaces" },
		{ { ID, VER, TOK, 1, -1, 0, NAME }, PROTO_EINVAL, "snaplen 0" },
		{ { ID, VER, TOK, 1, -1, 262145, NAME }, PROTO_EINVAL, "snaplen 262145" },
		{ { ID, VER, TOK, 1, -1, 0xffffffffu, NAME }, PROTO_EINVAL, "snaplen max" },
		{ { ID, VER, TOK, IF1, long_str, 65 }, PROTO_EINVAL, "name 65" },
		{ { ID, VER, TOK, IF1, "eth 0", -1 }, PROTO_EINVAL, "name space" },
		{ { ID, VER, TOK, IF1, "eth\x7f", -1 }, PROTO_EINVAL, "name DEL" },
		{ { ID, VER, TOK, IF1, "eth\0", 4 }, PROTO_EINVAL, "name NUL" },
		{ { ID, VER, TOK, IF1, "eth\x80", -1 }, PROTO_EINVAL, "name 0x80" },
		/* Two interfaces announced, one present. */
		{ { ID, VER, TOK, 2, 1, 65535, NAME }, PROTO_ETRUNC, "missing iface" },
	};
#undef ID
#undef VER
#undef TOK
#undef IF1
#undef NAME
	static uint8_t buf[16384];

	(void)state;
	memset(long_str, 'a', sizeof(long_str) - 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = build_hello(buf, &cases[i].r);
		uint8_t *q = dup_exact(buf, n);
		static struct proto_hello m;
		int rc = proto_hello_decode(q, n, &m);

		free(q);
		if (rc != cases[i].want)
			fail_msg("case %zu (%s): got %d (%s), want %d", i, cases[i].what, rc,
				proto_strerror(rc), cases[i].want);
	}

	/* An over-long id is refused from its length field alone. */
	buf[0] = 0x00;
	buf[1] = 0x81;
	{
		static struct proto_hello m;

		assert_int_equal(proto_hello_decode(buf, 2, &m), PROTO_EINVAL);
	}
}

static void
test_hello_encode_invalid(void **state)
{
	static struct proto_hello m;
	uint8_t out[8192];

	(void)state;
	ref_hello(&m);
	memset(m.sensor_id, 'a', sizeof(m.sensor_id)); /* no terminating NUL */
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	m.sensor_id[0] = '\0';
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	strcpy(m.sensor_id, "../etc");
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	strcpy(m.sensor_id, "s 1");
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	memset(m.version, 'v', sizeof(m.version));
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	strcpy(m.version, "1\t0");
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	strcpy(m.token, "a b");
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	m.n_ifaces = 0;
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	m.n_ifaces = PROTO_MAX_IFACES + 1;
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	m.ifaces[1].snaplen = 0;
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	m.ifaces[1].snaplen = PROTO_MAX_SNAPLEN + 1;
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	strcpy(m.ifaces[1].name, "a b");
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_hello(&m);
	memset(m.ifaces[0].name, 'e', sizeof(m.ifaces[0].name));
	assert_int_equal(proto_hello_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	/* Validation comes before the capacity check: a bad HELLO is a bug, not a full buffer. */
	ref_hello(&m);
	m.n_ifaces = 0;
	assert_int_equal(proto_hello_encode(&m, NULL, 0), PROTO_EINVAL);
}

/* ---- WELCOME ------------------------------------------------------------------------ */

static void
test_welcome(void **state)
{
	uint8_t out[64];
	struct proto_welcome d;

	(void)state;
	assert_int_equal(proto_welcome_encode(&ref_welcome, out, sizeof(out)), 24);
	assert_bytes_hex(out, 24, WELCOME_PAYLOAD);
	memset(&d, 0xaa, sizeof(d));
	assert_int_equal(proto_welcome_decode(out, 24, &d), 0);
	assert_int_equal(d.epoch, ref_welcome.epoch);
	assert_int_equal(d.next_seq, ref_welcome.next_seq);
	assert_int_equal(d.max_frame, ref_welcome.max_frame);
	assert_int_equal(d.heartbeat_ms, ref_welcome.heartbeat_ms);
	sweep_caps(enc_welcome, WELCOME_PAYLOAD);
	sweep_cuts(dec_welcome, WELCOME_PAYLOAD);
}

static void
test_welcome_limits(void **state)
{
	static const struct {
		uint32_t max_frame, heartbeat_ms;
		int want;
	} cases[] = {
		{ 262180, 5000, 0 },
		{ 262179, 5000, PROTO_EINVAL },
		{ 16777216, 5000, 0 },
		{ 16777217, 5000, PROTO_EINVAL },
		{ 0, 5000, PROTO_EINVAL },
		{ 1048576, 100, 0 },
		{ 1048576, 99, PROTO_EINVAL },
		{ 1048576, 0, PROTO_EINVAL },
		{ 1048576, 600000, 0 },
		{ 1048576, 600001, PROTO_EINVAL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_welcome m = { 1, 1, cases[i].max_frame, cases[i].heartbeat_ms };
		uint8_t buf[24];
		int rc;

		rc = proto_welcome_encode(&m, buf, sizeof(buf));
		assert_int_equal(rc, cases[i].want == 0 ? 24 : cases[i].want);
		/* Write the bytes by hand too, so the decoder is tested even where the encoder
		 * refuses. */
		memcpy(buf, "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\1", 16);
		buf[16] = (uint8_t)(m.max_frame >> 24);
		buf[17] = (uint8_t)(m.max_frame >> 16);
		buf[18] = (uint8_t)(m.max_frame >> 8);
		buf[19] = (uint8_t)m.max_frame;
		buf[20] = (uint8_t)(m.heartbeat_ms >> 24);
		buf[21] = (uint8_t)(m.heartbeat_ms >> 16);
		buf[22] = (uint8_t)(m.heartbeat_ms >> 8);
		buf[23] = (uint8_t)m.heartbeat_ms;
		rc = proto_welcome_decode(buf, sizeof(buf), &m);
		if (rc != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, rc, cases[i].want);
	}
}

/* ---- BATCH and records -------------------------------------------------------------- */

static void
test_batch_vector(void **state)
{
	uint8_t buf[256], out[PROTO_BATCH_HDR_LEN], rh[PROTO_REC_HDR_LEN];
	size_t n = unhex(BATCH_PAYLOAD, buf, sizeof(buf));
	struct proto_batch b;
	struct proto_rec_iter it;
	struct proto_rec r;

	(void)state;
	assert_int_equal(n, 62);
	assert_int_equal(proto_batch_hdr_encode(42, 2, 46, out, sizeof(out)), PROTO_BATCH_HDR_LEN);
	assert_bytes_hex(out, sizeof(out), BATCH_PAYLOAD_HDR);
	sweep_caps(enc_batch_hdr, BATCH_PAYLOAD_HDR);

	proto_rec_hdr_encode(rh, 1700000000123456789ull, 0, 4, 60);
	assert_memory_equal(rh, buf + 16, PROTO_REC_HDR_LEN);
	proto_rec_hdr_encode(rh, 1700000000123457789ull, 1, 2, 2);
	assert_memory_equal(rh, buf + 16 + 24, PROTO_REC_HDR_LEN);

	uint8_t *q = dup_exact(buf, n);
	assert_int_equal(proto_batch_decode(q, n, 46, &b), 0);
	assert_int_equal(b.seq, 42);
	assert_int_equal(b.n_records, 2);
	assert_int_equal(b.raw_len, 46);
	assert_ptr_equal(b.data, q + 16);
	assert_int_equal(b.data_len, 46);

	proto_rec_iter_init(&it, b.data, b.data_len, 2, 65535);
	assert_int_equal(proto_rec_next(&it, &r), 1);
	assert_int_equal(r.ts_ns, 1700000000123456789ull);
	assert_int_equal(r.iface, 0);
	assert_int_equal(r.caplen, 4);
	assert_int_equal(r.origlen, 60);
	assert_ptr_equal(r.data, q + 16 + 20);
	assert_memory_equal(r.data, "\xde\xad\xbe\xef", 4);
	assert_int_equal(proto_rec_next(&it, &r), 1);
	assert_int_equal(r.ts_ns, 1700000000123457789ull);
	assert_int_equal(r.iface, 1);
	assert_int_equal(r.caplen, 2);
	assert_int_equal(r.origlen, 2);
	assert_memory_equal(r.data, "\x01\x02", 2);
	assert_int_equal(proto_rec_next(&it, &r), 0);
	assert_int_equal(proto_rec_next(&it, &r), 0);
	free(q);
}

static void
test_batch_errors(void **state)
{
	static const struct {
		const char *hex;
		uint32_t max_raw;
		int want;
	} cases[] = {
		{ "0000000000000001 00000001 00000014 00", 20, 0 },
		{ "0000000000000001 00000001 00000015 00", 20, PROTO_ETOOBIG },
		{ "0000000000000001 00000001 ffffffff 00", 1u << 20, PROTO_ETOOBIG },
		{ "0000000000000001 00000000 00000014 00", 20, PROTO_EINVAL },       /* no records */
		{ "0000000000000001 00000002 00000027 00", 1u << 20, PROTO_EINVAL }, /* 2 x 20 > 39 */
		{ "0000000000000001 00000002 00000028 00", 1u << 20, 0 },
		/* 0x0ccccccd * 20 wraps to 4 in 32 bits: the product must be computed wider. */
		{ "0000000000000001 0ccccccd 00000014 00", 1u << 20, PROTO_EINVAL },
		{ "0000000000000001 ffffffff ffffffff 00", UINT32_MAX, PROTO_EINVAL },
		{ "0000000000000001 00000001 00000014", 20, PROTO_ETRUNC }, /* no data at all */
		/* raw_len is bounded before anything else is looked at. */
		{ "0000000000000001 00000000 00000015", 20, PROTO_ETOOBIG },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[64];
		size_t n = unhex(cases[i].hex, buf, sizeof(buf));
		uint8_t *q = dup_exact(buf, n);
		struct proto_batch b;
		int rc = proto_batch_decode(q, n, cases[i].max_raw, &b);

		free(q);
		if (rc != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].hex, rc, cases[i].want);
	}

	/* Every cut inside the 16-byte batch header. */
	{
		uint8_t buf[256];
		size_t n = unhex(BATCH_PAYLOAD, buf, sizeof(buf));
		struct proto_batch b;

		(void)n;
		for (size_t k = 0; k <= PROTO_BATCH_HDR_LEN; k++) {
			uint8_t *q = dup_exact(buf, k);

			assert_int_equal(proto_batch_decode(q, k, 1u << 20, &b), PROTO_ETRUNC);
			free(q);
		}
	}

	/* The encoder refuses batches that the decoder would refuse. */
	{
		uint8_t out[PROTO_BATCH_HDR_LEN];

		assert_int_equal(proto_batch_hdr_encode(1, 0, 20, out, sizeof(out)), PROTO_EINVAL);
		assert_int_equal(proto_batch_hdr_encode(1, 2, 39, out, sizeof(out)), PROTO_EINVAL);
		assert_int_equal(proto_batch_hdr_encode(1, 0x0ccccccdu, 20, out, sizeof(out)), PROTO_EINVAL);
		assert_int_equal(proto_batch_hdr_encode(1, 2, 40, out, sizeof(out)), 16);
	}
}

static void
test_rec_errors(void **state)
{
	static const struct {
		const char *hex;
		uint16_t n_ifaces;
		uint32_t max_caplen;
		int want; /* result of the first proto_rec_next() */
	} cases[] = {
		{ "0000000000000001 0001 0000 00000002 00000003 aabb", 2, 100, 1 },
		{ "0000000000000001 0001 0000 00000000 00000000", 2, 100, 1 }, /* caplen 0 */
		{ "0000000000000001 0001 0000 00000003 00000002 aabbcc", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 0002 0000 00000002 00000002 aabb", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 ffff 0000 00000002 00000002 aabb", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 0000 0000 00000002 00000002 aabb", 0, 100, PROTO_EINVAL },
		{ "0000000000000001 0000 0001 00000002 00000002 aabb", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 0000 8000 00000002 00000002 aabb", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 0000 0000 00000065 00000065", 2, 100, PROTO_EINVAL },
		{ "0000000000000001 0000 0000 00000003 00000003 aabb", 2, 100, PROTO_ETRUNC },
		{ "0000000000000001 0000 0000 ffffffff ffffffff aabb", 2, UINT32_MAX, PROTO_ETRUNC },
		{ "0000000000000001 0000 0000 00000002 00000002", 2, 100, PROTO_ETRUNC },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[64];
		size_t n = unhex(cases[i].hex, buf, sizeof(buf));
		uint8_t *q = dup_exact(buf, n);
		struct proto_rec_iter it;
		struct proto_rec r;
		int rc;

		proto_rec_iter_init(&it, q, n, cases[i].n_ifaces, cases[i].max_caplen);
		rc = proto_rec_next(&it, &r);
		if (rc != cases[i].want)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].hex, rc, cases[i].want);
		if (rc < 0) {
			/* Errors are sticky: the iterator does not move past a bad record. */
			assert_int_equal(proto_rec_next(&it, &r), rc);
		} else {
			assert_int_equal(proto_rec_next(&it, &r), 0);
		}
		free(q);
	}
}

static void
test_rec_cuts(void **state)
{
	uint8_t buf[256];
	size_t n = unhex(REC1 REC2, buf, sizeof(buf));

	(void)state;
	/* Cutting anywhere inside the second record: the first still comes out whole, and a
	 * cut right after it is a clean end. */
	for (size_t k = 24; k < n; k++) {
		uint8_t *q = dup_exact(buf, k);
		struct proto_rec_iter it;
		struct proto_rec r;

		proto_rec_iter_init(&it, q, k, 2, 65535);
		assert_int_equal(proto_rec_next(&it, &r), 1);
		assert_int_equal(r.caplen, 4);
		assert_int_equal(proto_rec_next(&it, &r), k == 24 ? 0 : PROTO_ETRUNC);
		free(q);
	}
	/* Cutting inside the first record. */
	for (size_t k = 1; k < 24; k++) {
		uint8_t *q = dup_exact(buf, k);
		struct proto_rec_iter it;
		struct proto_rec r;

		proto_rec_iter_init(&it, q, k, 2, 65535);
		assert_int_equal(proto_rec_next(&it, &r), PROTO_ETRUNC);
		free(q);
	}
	/* Nothing at all is a clean, empty end. */
	{
		struct proto_rec_iter it;
		struct proto_rec r;

		proto_rec_iter_init(&it, NULL, 0, 2, 65535);
		assert_int_equal(proto_rec_next(&it, &r), 0);
	}
}

/* ---- lz4 ---------------------------------------------------------------------------- */

static void
test_lz4_vector(void **state)
{
	uint8_t payload[128], block[64], raw[64];
	size_t pn = unhex(LZ4_PAYLOAD_HDR LZ4_BLOCK, payload, sizeof(payload));
	size_t bn = unhex(LZ4_BLOCK, block, sizeof(block));
	size_t rn = unhex(LZ4_RAW, raw, sizeof(raw));
	struct proto_batch b;
	struct proto_rec_iter it;
	struct proto_rec r;
	uint8_t *dst;

	(void)state;
	assert_int_equal(pn, 38);
	assert_int_equal(bn, 22);
	assert_int_equal(rn, 52);
	assert_int_equal(proto_batch_decode(payload, pn, 1u << 20, &b), 0);
	assert_int_equal(b.seq, 7);
	assert_int_equal(b.n_records, 1);
	assert_int_equal(b.raw_len, 52);
	assert_int_equal(b.data_len, 22);
	assert_memory_equal(b.data, block, bn);

	dst = malloc(b.raw_len);
	assert_non_null(dst);
	assert_int_equal(proto_lz4_decompress(b.data, b.data_len, dst, b.raw_len), 0);
	assert_memory_equal(dst, raw, rn);
	proto_rec_iter_init(&it, dst, b.raw_len, 1, 262144);
	assert_int_equal(proto_rec_next(&it, &r), 1);
	assert_int_equal(r.ts_ns, 0);
	assert_int_equal(r.caplen, 32);
	assert_int_equal(r.origlen, 32);
	assert_int_equal(proto_rec_next(&it, &r), 0);
	free(dst);
}

static void
test_lz4_roundtrip(void **state)
{
	enum {
		N = 70000
	};
	uint8_t *src = malloc(N), *dst = malloc(N);
	int bound = proto_lz4_bound(N);
	uint8_t *z = malloc((size_t)bound);
	uint32_t x = 1;
	int zn;

	(void)state;
	assert_non_null(src);
	assert_non_null(dst);
	assert_non_null(z);
	assert_true(bound >= N);
	/* Half noise, half repetition, so that both literals and matches are exercised. */
	for (size_t i = 0; i < N; i++) {
		x = x * 1103515245u + 12345u;
		src[i] = i < N / 2 ? (uint8_t)(x >> 16) : (uint8_t)(i % 7);
	}
	zn = proto_lz4_compress(src, N, z, (uint32_t)bound);
	assert_true(zn > 0 && zn < N);
	assert_int_equal(proto_lz4_decompress(z, (uint32_t)zn, dst, N), 0);
	assert_memory_equal(dst, src, N);

	/* An empty input still makes a valid one-byte block. */
	zn = proto_lz4_compress(src, 0, z, (uint32_t)bound);
	assert_int_equal(zn, 1);
	assert_int_equal(proto_lz4_decompress(z, 1, dst, 0), 0);

	/* Noise cannot shrink, so it does not fit in fewer bytes than it has. */
	assert_int_equal(proto_lz4_compress(src, N / 2, z, N / 2), PROTO_ENOSPC);
	assert_int_equal(proto_lz4_compress(src, 16, z, 0), PROTO_ENOSPC);
	assert_int_equal(proto_lz4_bound(0xffffffffu), PROTO_ETOOBIG);
	free(z);
	free(dst);
	free(src);
}

static void
test_lz4_errors(void **state)
{
	static const struct {
		const char *hex;
		uint32_t raw_len;
		const char *what;
	} cases[] = {
		{ LZ4_BLOCK, 51, "block longer than raw_len" },
		{ LZ4_BLOCK, 53, "block shorter than raw_len" },
		{ LZ4_BLOCK, 0, "raw_len 0" },
		{ LZ4_BLOCK " 00", 52, "trailing byte after the last sequence" },
		{ "17 00 0100 40 00000020 0400 1f 00 0100 07 50 00000000", 52, "last literals cut" },
		{ "17 00 0200 40 00000020 0400 1f 00 0100 07 50 0000000000", 52, "offset < start" },
		{ "ff ff ff ff ff ff ff ff", 52, "garbage" },
		{ "f0 ffffffffffffffffff", 52, "literal run past the input" },
		{ "00", 52, "empty block for a non-empty batch" },
		{ "", 52, "no input" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t src[64];
		size_t n = unhex(cases[i].hex, src, sizeof(src));
		uint8_t *q = dup_exact(src, n);
		/* Room for raw_len plus a guard that must stay untouched. */
		uint8_t *dst = malloc(cases[i].raw_len + 16u);
		int rc;

		assert_non_null(dst);
		memset(dst, 0x5a, cases[i].raw_len + 16u);
		rc = proto_lz4_decompress(q, (uint32_t)n, dst, cases[i].raw_len);
		if (rc != PROTO_ELZ4)
			fail_msg("case %zu (%s): got %d, want PROTO_ELZ4", i, cases[i].what, rc);
		for (size_t j = cases[i].raw_len; j < cases[i].raw_len + 16u; j++)
			if (dst[j] != 0x5a)
				fail_msg("case %zu (%s): wrote past raw_len at %zu", i, cases[i].what, j);
		free(dst);
		free(q);
	}
}

/* ---- ACK, STATS, HEARTBEAT, ERROR --------------------------------------------------- */

static void
test_ack(void **state)
{
	uint8_t out[16];
	struct proto_ack d;

	(void)state;
	assert_int_equal(proto_ack_encode(&ref_ack, out, sizeof(out)), 16);
	assert_bytes_hex(out, 16, ACK_PAYLOAD);
	assert_int_equal(proto_ack_decode(out, 16, &d), 0);
	assert_int_equal(d.epoch, ref_ack.epoch);
	assert_int_equal(d.seq, 41);
	sweep_caps(enc_ack, ACK_PAYLOAD);
	sweep_cuts(dec_ack, ACK_PAYLOAD);
}

static void
test_stats(void **state)
{
	static struct proto_stats m, d;
	uint8_t out[1024];
	int n;

	(void)state;
	ref_stats(&m);
	n = proto_stats_encode(&m, out, sizeof(out));
	assert_int_equal(n, 30);
	assert_bytes_hex(out, (size_t)n, STATS_PAYLOAD);
	assert_int_equal(proto_stats_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.ts_ns, m.ts_ns);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.s[0].id, PROTO_ST_CAPTURED);
	assert_int_equal(d.s[0].value, 1000);
	assert_int_equal(d.s[1].id, 0x1234);
	assert_int_equal(d.s[1].value, 7);
	stats_enc_src = m;
	sweep_caps(enc_stats, STATS_PAYLOAD);
	sweep_cuts(dec_stats, STATS_PAYLOAD);

	/* No counters at all is a valid, if dull, report. */
	assert_int_equal(dec_hex(dec_stats, "0000000000000000 0000"), 0);

	/* The full 64 counters, including id 0 and the largest id. */
	memset(&m, 0, sizeof(m));
	m.n = PROTO_MAX_STATS;
	for (unsigned i = 0; i < PROTO_MAX_STATS; i++) {
		m.s[i].id = (uint16_t)(i == 63 ? 0xffff : i);
		m.s[i].value = UINT64_MAX - i;
	}
	n = proto_stats_encode(&m, out, sizeof(out));
	assert_int_equal(n, 10 + 64 * 10);
	assert_int_equal(proto_stats_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.n, 64);
	for (unsigned i = 0; i < PROTO_MAX_STATS; i++) {
		assert_int_equal(d.s[i].id, m.s[i].id);
		assert_int_equal(d.s[i].value, m.s[i].value);
	}

	/* 65 counters, all present: the count alone is the error. */
	{
		static uint8_t buf[10 + 65 * 10];

		memset(buf, 0, sizeof(buf));
		buf[9] = 65;
		for (unsigned i = 0; i < 65; i++)
			buf[10 + i * 10 + 1] = (uint8_t)i;
		assert_int_equal(proto_stats_decode(buf, sizeof(buf), &d), PROTO_EINVAL);
		assert_int_equal(proto_stats_decode(buf, 10, &d), PROTO_EINVAL);
	}

	/* Duplicate ids, on either side. */
	assert_int_equal(dec_hex(dec_stats,
				 "0000000000000000 0002 "
				 "0001 0000000000000001 0001 0000000000000002"),
		PROTO_EINVAL);
	ref_stats(&m);
	m.s[1].id = m.s[0].id;
	assert_int_equal(proto_stats_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_stats(&m);
	m.n = PROTO_MAX_STATS + 1;
	assert_int_equal(proto_stats_encode(&m, out, sizeof(out)), PROTO_EINVAL);
}

static void
test_heartbeat(void **state)
{
	uint8_t out[8];
	uint64_t ts = 0;

	(void)state;
	assert_int_equal(proto_heartbeat_encode(0x0102030405060708ull, out, sizeof(out)), 8);
	assert_bytes_hex(out, 8, HEARTBEAT_PAYLOAD);
	assert_int_equal(proto_heartbeat_decode(out, 8, &ts), 0);
	assert_int_equal(ts, 0x0102030405060708ull);
	sweep_caps(enc_heartbeat, HEARTBEAT_PAYLOAD);
	sweep_cuts(dec_heartbeat, HEARTBEAT_PAYLOAD);
}

static void
test_error(void **state)
{
	static struct proto_error m, d;
	uint8_t out[512];
	int n;

	(void)state;
	n = proto_error_encode(&error_enc_src, out, sizeof(out));
	assert_int_equal(n, 13);
	assert_bytes_hex(out, (size_t)n, ERROR_PAYLOAD);
	assert_int_equal(proto_error_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.code, PROTO_ERR_AUTH);
	assert_string_equal(d.text, "bad token");
	sweep_caps(enc_error, ERROR_PAYLOAD);
	sweep_cuts(dec_error, ERROR_PAYLOAD);

	/* The longest text, and a code v1 does not define (kept, not refused). */
	memset(&m, 0, sizeof(m));
	m.code = 0xbeef;
	memset(m.text, ' ', PROTO_MAX_TEXT);
	n = proto_error_encode(&m, out, sizeof(out));
	assert_int_equal(n, 4 + PROTO_MAX_TEXT);
	assert_int_equal(proto_error_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.code, 0xbeef);
	assert_int_equal(strlen(d.text), PROTO_MAX_TEXT);
	assert_int_equal(dec_hex(dec_error, "0001 0000"), 0);

	/* A text one byte too long is refused from its length field, bytes present or not. */
	{
		static uint8_t buf[4 + 257];

		memset(buf, 'x', sizeof(buf));
		buf[0] = 0;
		buf[1] = 1;
		buf[2] = 0x01;
		buf[3] = 0x01;
		assert_int_equal(proto_error_decode(buf, sizeof(buf), &d), PROTO_EINVAL);
		assert_int_equal(proto_error_decode(buf, 4, &d), PROTO_EINVAL);
	}
	/* LF, NUL and a non-ASCII byte are refused; a space is fine. */
	assert_int_equal(dec_hex(dec_error, "0001 0002 410a"), PROTO_EINVAL);
	assert_int_equal(dec_hex(dec_error, "0001 0002 4100"), PROTO_EINVAL);
	assert_int_equal(dec_hex(dec_error, "0001 0002 41ff"), PROTO_EINVAL);
	assert_int_equal(dec_hex(dec_error, "0001 0003 412041"), 0);

	memset(&m, 0, sizeof(m));
	strcpy(m.text, "a\x1b[2Jb");
	assert_int_equal(proto_error_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	memset(m.text, 'x', sizeof(m.text));
	assert_int_equal(proto_error_encode(&m, out, sizeof(out)), PROTO_EINVAL);
}

/* ---- NAMES -------------------------------------------------------------------------- */

static void
test_names_vector(void **state)
{
	static struct proto_names m, d;
	uint8_t out[512], hdr[PROTO_HDR_LEN];
	int n;

	(void)state;
	ref_names(&m);
	n = proto_names_encode(&m, out, sizeof(out));
	assert_int_equal(n, 84);
	assert_bytes_hex(out, (size_t)n, NAMES_PAYLOAD);
	proto_hdr_encode(hdr, PROTO_NAMES, 0, (uint32_t)n);
	assert_bytes_hex(hdr, sizeof(hdr), NAMES_HDR);
	assert_int_equal(proto_names_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.n, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(d.ev[i].ts_ns, m.ev[i].ts_ns);
		assert_int_equal(d.ev[i].source, m.ev[i].source);
		assert_int_equal(d.ev[i].family, m.ev[i].family);
		assert_memory_equal(d.ev[i].addr, m.ev[i].addr, 16);
		assert_int_equal(d.ev[i].port, m.ev[i].port);
		assert_int_equal(d.ev[i].ttl_s, m.ev[i].ttl_s);
		assert_string_equal(d.ev[i].name, m.ev[i].name);
		assert_string_equal(d.ev[i].ns, m.ev[i].ns);
	}
	names_enc_src = m;
	sweep_caps(enc_names, NAMES_PAYLOAD);
	sweep_cuts(dec_names, NAMES_PAYLOAD);
}

static void
test_names_limits(void **state)
{
	static struct proto_names m, d;
	static uint8_t out[PROTO_NAMES_MAX_LEN + 16];
	int n;

	(void)state;
	/* The largest payload: 256 IPv6 events with a 253-byte name and a 63-byte namespace. */
	memset(&m, 0, sizeof(m));
	m.n = PROTO_MAX_NAMES;
	for (unsigned i = 0; i < PROTO_MAX_NAMES; i++) {
		struct proto_name *e = &m.ev[i];

		e->ts_ns = UINT64_MAX - i;
		e->source = (uint8_t)(i % 255 + 1); /* every source, known or not */
		e->family = 6;
		memset(e->addr, (int)i, 16);
		e->port = (uint16_t)i;
		e->ttl_s = PROTO_MAX_TTL;
		/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
		memset(e->name, 'a', PROTO_MAX_NAME);
		e->name[63] = e->name[127] = e->name[191] = '.';
		e->name[0] = (char)('0' + i % 10);
		memset(e->ns, '_', PROTO_MAX_NS);
	}
	n = proto_names_encode(&m, out, sizeof(out));
	assert_int_equal(n, PROTO_NAMES_MAX_LEN);
	assert_int_equal(n, 90114);
	assert_int_equal(proto_names_decode(out, (size_t)n, &d), 0);
	assert_int_equal(d.n, PROTO_MAX_NAMES);
	assert_string_equal(d.ev[255].name, m.ev[255].name);
	assert_string_equal(d.ev[255].ns, m.ev[255].ns);
	assert_int_equal(d.ev[254].source, 255);
	assert_int_equal(proto_names_encode(&m, out, PROTO_NAMES_MAX_LEN - 1), PROTO_ENOSPC);

	/* The smallest payload: one IPv4 event with a 1-byte name. */
	assert_int_equal(
		dec_hex(dec_names, "0001 0000000000000000 01 04 00000000 0000 00000000 0001 61 0000"), 0);
	assert_int_equal(
		dec_hex(dec_names, "0001 0000000000000000 01 04 00000000 0000 00000000 0001 5f 0000"), 0);

	/* Encoder refusals mirror the decoder's. */
	ref_names(&m);
	m.n = 0;
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	m.n = PROTO_MAX_NAMES + 1;
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	m.ev[1].source = 0;
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	m.ev[1].family = 10;
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	m.ev[1].ttl_s = PROTO_MAX_TTL + 1;
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	m.ev[1].name[0] = '\0';
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	strcpy(m.ev[1].name, "a b");
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	strcpy(m.ev[1].ns, "prod.");
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	memset(m.ev[1].name, 'x', sizeof(m.ev[1].name)); /* unterminated */
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
	ref_names(&m);
	memset(m.ev[1].ns, 'x', sizeof(m.ev[1].ns));
	assert_int_equal(proto_names_encode(&m, out, sizeof(out)), PROTO_EINVAL);
}

/* The refusals listed in PROTOCOL.md, each a change to event 0 of the vector. */
static void
test_names_invalid(void **state)
{
	static const struct {
		const char *hex;
		int want;
	} cases[] = {
		{ "0001" NAMES_EV0_FIXED NAMES_EV0_STRS, 0 },
		{ "0000", PROTO_EINVAL },
		{ "0000" NAMES_EV0_FIXED NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0101" NAMES_EV0_FIXED NAMES_EV0_STRS, PROTO_EINVAL }, /* 257 */
		{ "0101", PROTO_EINVAL },
		{ "0001 17979cfe3d85cd15 00 04 c6120032 0000 0000003c" NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0001 17979cfe3d85cd15 01 05 c6120032 0000 0000003c" NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0001 17979cfe3d85cd15 01 00 c6120032 0000 0000003c" NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0001 17979cfe3d85cd15 01 05", PROTO_EINVAL }, /* family before the address */
		{ "0001 17979cfe3d85cd15 01 04 c6120032 0000 80000000" NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0001 17979cfe3d85cd15 01 04 c6120032 0000 ffffffff" NAMES_EV0_STRS, PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED "0000 0000", PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED "00fe", PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED "000f 7777772e2e78616d706c652e636f6d 0000",
			PROTO_EINVAL }, /* www..xample.com */
		{ "0001" NAMES_EV0_FIXED "000f 2e77772e6578616d706c652e636f6d 0000",
			PROTO_EINVAL }, /* .ww.example.com */
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c652e636f2e 0000",
			PROTO_EINVAL }, /* www.example.co. */
		{ "0001" NAMES_EV0_FIXED "000f 7777772065786d706c652e636f6d 0000", PROTO_EINVAL }, /* space */
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578612a6d706c652e636f6d 0000",
			PROTO_EINVAL },                                                              /* '*' */
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c650a636f6d 0000", PROTO_EINVAL }, /* LF */
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c65006f6d 0000", PROTO_EINVAL },   /* NUL */
		{ "0001" NAMES_EV0_FIXED "000f 7777772ee578616d706c652e636f6d 0000",
			PROTO_EINVAL }, /* 0xe5 */
		{ "0001" NAMES_EV0_FIXED "0001 2e 0000", PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED NAMES_EV0_STRS "00", PROTO_ETRAILING },
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c652e636f6d 0040", PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c652e636f6d 0001 2d", 0 },
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c652e636f6d 0001 2e", PROTO_EINVAL },
		{ "0001" NAMES_EV0_FIXED "000f 7777772e6578616d706c652e636f6d 0001", PROTO_ETRUNC },
		{ "0002" NAMES_EV0_FIXED NAMES_EV0_STRS, PROTO_ETRUNC },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = dec_hex(dec_names, cases[i].hex);

		if (rc != cases[i].want)
			fail_msg("case %zu: got %d (%s), want %d", i, rc, proto_strerror(rc), cases[i].want);
	}

	/* Labels: 63 bytes pass, 64 do not; 253 bytes in all pass, 254 do not. */
	{
		char name[300];

		memset(name, 'a', sizeof(name));
		assert_int_equal(proto_name_valid(name, 63, PROTO_MAX_NAME), 1);
		assert_int_equal(proto_name_valid(name, 64, PROTO_MAX_NAME), 0);
		name[63] = '.';
		name[127] = '.';
		name[191] = '.';
		assert_int_equal(proto_name_valid(name, 253, PROTO_MAX_NAME), 1);
		assert_int_equal(proto_name_valid(name, 254, PROTO_MAX_NAME), 0);
		assert_int_equal(proto_name_valid(name, 64, PROTO_MAX_NAME), 0); /* trailing dot */
		assert_int_equal(proto_name_valid("", 0, PROTO_MAX_NS), 1);
		assert_int_equal(proto_name_valid("_ldap._tcp.dc", 13, PROTO_MAX_NAME), 1);
		assert_int_equal(proto_name_valid("Kube-System", 11, PROTO_MAX_NS), 1);
	}
	/* A 64-byte label on the wire, then 63. The fixed part is 2 + 20 + 2 bytes. */
	{
		static uint8_t buf[128];
		uint8_t *q;

		assert_int_equal(unhex("0001" NAMES_EV0_FIXED "0040", buf, sizeof(buf)), 24);
		memset(buf + 24, 'a', 64);
		buf[88] = 0;
		buf[89] = 0;
		q = dup_exact(buf, 90);
		assert_int_equal(dec_names(q, 90), PROTO_EINVAL);
		free(q);
		buf[23] = 0x3f;
		buf[87] = 0;
		buf[88] = 0;
		q = dup_exact(buf, 89);
		assert_int_equal(dec_names(q, 89), 0);
		free(q);
	}
}

/* ---- A whole stream ----------------------------------------------------------------- */

/* Every frame vector back to back, read the way a session reads its socket buffer. */
static void
test_frame_stream(void **state)
{
	static const char *const stream[] = {
		HELLO_HDR HELLO_PAYLOAD,
		WELCOME_HDR WELCOME_PAYLOAD,
		BATCH_HDR BATCH_PAYLOAD,
		LZ4_HDR LZ4_PAYLOAD_HDR LZ4_BLOCK,
		ACK_HDR ACK_PAYLOAD,
		STATS_HDR STATS_PAYLOAD,
		NAMES_HDR NAMES_PAYLOAD,
		HEARTBEAT_HDR HEARTBEAT_PAYLOAD,
		ERROR_HDR ERROR_PAYLOAD,
	};
	static const uint8_t want_types[] = { PROTO_HELLO, PROTO_WELCOME, PROTO_BATCH, PROTO_BATCH, PROTO_ACK,
		PROTO_STATS, PROTO_NAMES, PROTO_HEARTBEAT, PROTO_ERROR };
	static uint8_t buf[4096];
	size_t n = 0, off = 0;
	unsigned seen = 0, records = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(stream) / sizeof(stream[0]); i++)
		n += unhex(stream[i], buf + n, sizeof(buf) - n);

	while (off < n) {
		struct proto_hdr h;
		const uint8_t *p;
		int rc = proto_hdr_decode(buf + off, n - off, 1u << 20, &h);

		assert_int_equal(rc, 0);
		assert_true(h.len <= n - off - PROTO_HDR_LEN);
		assert_int_equal(h.type, want_types[seen]);
		p = buf + off + PROTO_HDR_LEN;
		switch (h.type) {
		case PROTO_HELLO: {
			static struct proto_hello m, want;

			assert_int_equal(proto_hello_decode(p, h.len, &m), 0);
			ref_hello(&want);
			assert_hello_equal(&m, &want);
			break;
		}
		case PROTO_WELCOME: {
			struct proto_welcome m;

			assert_int_equal(proto_welcome_decode(p, h.len, &m), 0);
			assert_int_equal(m.next_seq, 42);
			break;
		}
		case PROTO_BATCH: {
			struct proto_batch b;
			struct proto_rec_iter it;
			struct proto_rec r;
			uint8_t raw[64];
			const uint8_t *recs;

			assert_int_equal(proto_batch_decode(p, h.len, 1u << 20, &b), 0);
			if (h.flags & PROTO_F_LZ4) {
				assert_true(b.raw_len <= sizeof(raw));
				rc = proto_lz4_decompress(b.data, b.data_len, raw, b.raw_len);
				assert_int_equal(rc, 0);
				recs = raw;
			} else {
				assert_int_equal(b.data_len, b.raw_len);
				recs = b.data;
			}
			proto_rec_iter_init(&it, recs, b.raw_len, 2, 262144);
			while ((rc = proto_rec_next(&it, &r)) == 1)
				records++;
			assert_int_equal(rc, 0);
			break;
		}
		case PROTO_ACK: {
			struct proto_ack m;

			assert_int_equal(proto_ack_decode(p, h.len, &m), 0);
			assert_int_equal(m.seq, 41);
			break;
		}
		case PROTO_STATS: {
			static struct proto_stats m;

			assert_int_equal(proto_stats_decode(p, h.len, &m), 0);
			assert_int_equal(m.n, 2);
			break;
		}
		case PROTO_NAMES: {
			static struct proto_names m;

			assert_int_equal(proto_names_decode(p, h.len, &m), 0);
			assert_string_equal(m.ev[1].ns, "prod");
			break;
		}
		case PROTO_HEARTBEAT: {
			uint64_t ts;

			assert_int_equal(proto_heartbeat_decode(p, h.len, &ts), 0);
			break;
		}
		case PROTO_ERROR: {
			static struct proto_error m;

			assert_int_equal(proto_error_decode(p, h.len, &m), 0);
			assert_string_equal(m.text, "bad token");
			break;
		}
		default:
			fail_msg("unexpected type %u", h.type);
		}
		off += PROTO_HDR_LEN + h.len;
		seen++;
	}
	assert_int_equal(off, n);
	assert_int_equal(seen, 9);
	assert_int_equal(records, 3);
}

/* The one sensor id rule, used by HELLO, certificates, configs, requests and folders. */
static void
test_sensor_id_rule(void **state)
{
	static const char *good[] = { "a", "sensor-1", "edge_01.dc2", "A.B-C_D", "0", "x.." };
	static const char *bad[] = { "", ".", "..", ".hidden", "a/b", "a b", "a:b", "\xc3\xa9", "a\nb",
		"a\\b", "*" };
	char big[PROTO_MAX_ID + 2];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(proto_sensor_id_ok(good[i], strlen(good[i])));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(proto_sensor_id_ok(bad[i], strlen(bad[i])));
	assert_false(proto_sensor_id_ok(NULL, 0));
	/* Not NUL-terminated input: only n bytes count; an embedded NUL is refused. */
	assert_true(proto_sensor_id_ok("ab/", 2));
	assert_false(proto_sensor_id_ok("a\0b", 3));
	memset(big, 'x', sizeof(big));
	assert_true(proto_sensor_id_ok(big, PROTO_MAX_ID));
	assert_false(proto_sensor_id_ok(big, PROTO_MAX_ID + 1));
	assert_true(proto_sensor_id_char('.'));
	assert_false(proto_sensor_id_char('/'));
	assert_false(proto_sensor_id_char('\0'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_hdr_encode_vector),
		cmocka_unit_test(test_hdr_decode_ok),
		cmocka_unit_test(test_hdr_eagain),
		cmocka_unit_test(test_hdr_errors),
		cmocka_unit_test(test_hello_vector),
		cmocka_unit_test(test_hello_limits),
		cmocka_unit_test(test_hello_invalid),
		cmocka_unit_test(test_hello_encode_invalid),
		cmocka_unit_test(test_welcome),
		cmocka_unit_test(test_welcome_limits),
		cmocka_unit_test(test_batch_vector),
		cmocka_unit_test(test_batch_errors),
		cmocka_unit_test(test_rec_errors),
		cmocka_unit_test(test_rec_cuts),
		cmocka_unit_test(test_lz4_vector),
		cmocka_unit_test(test_lz4_roundtrip),
		cmocka_unit_test(test_lz4_errors),
		cmocka_unit_test(test_ack),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_heartbeat),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_names_vector),
		cmocka_unit_test(test_names_limits),
		cmocka_unit_test(test_names_invalid),
		cmocka_unit_test(test_frame_stream),
		cmocka_unit_test(test_sensor_id_rule),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
