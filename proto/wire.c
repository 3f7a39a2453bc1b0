/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline wire protocol v1 codecs. The byte layout is specified in proto/PROTOCOL.md;
 * this file, that document and the vectors in tests/unit/proto/test_wire.c change together.
 *
 * Every byte from the network is read through the bounds-checked cursor (shared/cursor.h), never by
 * casting to a struct, so neither padding, alignment nor host byte order can leak into the
 * encoding (the discipline of tcpdump's GET_BE_U_2 accessors). Encoders apply the same
 * validity rules as decoders, so that we never emit a frame that a peer would reject.
 */
#include "proto/wire.h"

#include "shared/cursor.h"

#include <limits.h>
#include <lz4.h>
#include <string.h>

/* Header flag bits that v1 defines; any other bit set is rejected. */
#define WIRE_KNOWN_FLAGS PROTO_F_LZ4

/*
 * WELCOME bounds (PROTOCOL.md, sections 5.2 and 7). The floor lets one record of the largest
 * snaplen travel in one uncompressed batch, so a sensor never has to cut a packet to fit;
 * the ceiling stops a broken receiver from making a sensor allocate gigabytes.
 */
#define WIRE_MIN_FRAME        (PROTO_BATCH_HDR_LEN + PROTO_REC_HDR_LEN + PROTO_MAX_SNAPLEN)
#define WIRE_MAX_FRAME        (16u * 1024 * 1024)
#define WIRE_MIN_HEARTBEAT_MS 100u
#define WIRE_MAX_HEARTBEAT_MS 600000u

#define WELCOME_LEN    24
#define ACK_LEN        16
#define HEARTBEAT_LEN  8
#define STAT_LEN       10
#define NAME_LABEL_MAX 63 /* RFC 1035, section 2.3.4 */

const char *
proto_strerror(int err)
{
	switch (err) {
	case PROTO_OK:
		return "success";
	case PROTO_EAGAIN:
		return "incomplete frame header";
	case PROTO_EMAGIC:
		return "bad magic (not a pcapline peer)";
	case PROTO_EVERSION:
		return "unsupported protocol version";
	case PROTO_ETYPE:
		return "unknown or reserved frame type";
	case PROTO_ETOOBIG:
		return "length above the configured maximum";
	case PROTO_ETRUNC:
		return "truncated payload";
	case PROTO_EINVAL:
		return "invalid field value";
	case PROTO_ENOSPC:
		return "output buffer too small";
	case PROTO_ELZ4:
		return "lz4 block does not decode to the announced length";
	case PROTO_ETRAILING:
		return "trailing bytes after the last field";
	}
	return "unknown protocol error";
}

/* Big-endian loads and stores on raw bytes; the only place where byte order lives. */
static inline uint16_t
ld_u16be(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t
ld_u32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
ld_u64be(const uint8_t *p)
{
	return (uint64_t)ld_u32be(p) << 32 | ld_u32be(p + 4);
}

static inline void
st_u16be(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
st_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void
st_u64be(uint8_t *p, uint64_t v)
{
	st_u32be(p, (uint32_t)(v >> 32));
	st_u32be(p + 4, (uint32_t)v);
}

/*
 * Reads go through the project's one bounds-checked cursor (shared/cursor.h, pure, no
 * I/O); these adapters only turn its "false, nothing consumed" into PROTO_ETRUNC.
 */
static inline int
cur_bytes(struct cursor *c, size_t n, const uint8_t **out)
{
	return cursor_bytes(c, n, out) ? 0 : PROTO_ETRUNC;
}

static inline int
cur_u16be(struct cursor *c, uint16_t *v)
{
	return cursor_u16be(c, v) ? 0 : PROTO_ETRUNC;
}

static inline int
cur_u32be(struct cursor *c, uint32_t *v)
{
	return cursor_u32be(c, v) ? 0 : PROTO_ETRUNC;
}

static inline int
cur_u64be(struct cursor *c, uint64_t *v)
{
	return cursor_u64be(c, v) ? 0 : PROTO_ETRUNC;
}

/* A decoder has consumed its last field: anything left is an error, not padding. */
static inline int
cur_done(const struct cursor *c)
{
	return cursor_left(c) ? PROTO_ETRAILING : 0;
}

/*
 * Write cursor with a sticky error: once a write would overflow, nothing more is written
 * and wcur_finish() reports PROTO_ENOSPC. This keeps the encoders straight-line code.
 */
struct wcur {
	uint8_t *start;
	uint8_t *p;
	size_t left;
	int err;
};

static inline void
wcur_init(struct wcur *w, uint8_t *out, size_t cap)
{
	w->start = out;
	w->p = out;
	w->left = cap;
	w->err = 0;
}

static inline uint8_t *
wcur_take(struct wcur *w, size_t n)
{
	uint8_t *q = w->p;

	if (w->err || w->left < n) {
		w->err = PROTO_ENOSPC;
		return NULL;
	}
	if (n)
		w->p += n;
	w->left -= n;
	return q;
}

static inline void
put_u16be(struct wcur *w, uint16_t v)
{
	uint8_t *q = wcur_take(w, 2);

	if (q)
		st_u16be(q, v);
}

static inline void
put_u32be(struct wcur *w, uint32_t v)
{
	uint8_t *q = wcur_take(w, 4);

	if (q)
		st_u32be(q, v);
}

static inline void
put_u64be(struct wcur *w, uint64_t v)
{
	uint8_t *q = wcur_take(w, 8);

	if (q)
		st_u64be(q, v);
}

static inline void
put_bytes(struct wcur *w, const void *src, size_t n)
{
	uint8_t *q = wcur_take(w, n);

	if (q && n)
		memcpy(q, src, n);
}

/* Every v1 payload that an encoder writes is far below INT_MAX bytes (NAMES, the
 * largest, is at most 90114), so the length always fits the int return value. */
static inline int
wcur_finish(const struct wcur *w)
{
	return w->err ? w->err : (int)(w->p - w->start);
}

/*
 * Character classes of the string fields (PROTOCOL.md, section 1). Strings become C
 * strings and end up in logs and file names, so NUL, control bytes and non-ASCII are
 * refused instead of being passed on for every consumer to sanitise again.
 */
enum str_class {
	STR_ID,    /* sensor id: [A-Za-z0-9._-], not starting with '.' */
	STR_PRINT, /* 0x20..0x7e: version, error text */
	STR_GRAPH  /* 0x21..0x7e: token, interface name */
};

bool
proto_sensor_id_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		ch == '.' || ch == '_' || ch == '-';
}

bool
proto_sensor_id_ok(const char *s, size_t n)
{
	/* The sensor id names a directory on the receiver: "." and ".." would escape or alias
	 * it, and a leading dot would hide it, so ids may not start with a dot. */
	if (s == NULL || n < 1 || n > PROTO_MAX_ID || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!proto_sensor_id_char(s[i]))
			return false;
	return true;
}

static int
str_valid(const uint8_t *s, size_t n, enum str_class cls)
{
	/* Empty ids never get here: the callers' minimum length for STR_ID is 1. */
	if (cls == STR_ID)
		return proto_sensor_id_ok((const char *)s, n);
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];

		if (ch < (cls == STR_PRINT ? 0x20 : 0x21) || ch > 0x7e)
			return 0;
	}
	return 1;
}

/* Reads a u16 length and that many bytes into a NUL-terminated field of at least max+1
 * bytes. A length outside [min, max] is EINVAL even when the bytes are missing, because
 * the length alone already proves the frame invalid. */
static int
cur_str(struct cursor *c, size_t min, size_t max, enum str_class cls, char *out)
{
	uint16_t len;
	const uint8_t *s;
	int rc;

	if ((rc = cur_u16be(c, &len)) < 0)
		return rc;
	if (len < min || len > max)
		return PROTO_EINVAL;
	if ((rc = cur_bytes(c, len, &s)) < 0)
		return rc;
	if (!str_valid(s, len, cls))
		return PROTO_EINVAL;
	if (len)
		memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

/* Length of a NUL-terminated string field of `size` bytes, checked against the same rules
 * as cur_str(); returns -1 when it is unterminated or invalid. */
static long
field_len(const char *s, size_t size, size_t min, size_t max, enum str_class cls)
{
	const char *nul = memchr(s, '\0', size);
	size_t len;

	if (!nul)
		return -1;
	len = (size_t)(nul - s);
	if (len < min || len > max || !str_valid((const uint8_t *)s, len, cls))
		return -1;
	return (long)len;
}

static inline void
put_str(struct wcur *w, const char *s, long len)
{
	put_u16be(w, (uint16_t)len);
	put_bytes(w, s, (size_t)len);
}

/* ---- Frame header ---------------------------------------------------------------- */

void
proto_hdr_encode(uint8_t out[PROTO_HDR_LEN], uint8_t type, uint16_t flags, uint32_t len)
{
	st_u32be(out, PROTO_MAGIC);
	out[4] = PROTO_VERSION;
	out[5] = type;
	st_u16be(out + 6, flags);
	st_u32be(out + 8, len);
	st_u32be(out + 12, 0);
}

/* CONTROL is reserved for a later revision: a v1 peer has no codec for it and must close
 * the session, so it is as unknown here as type 0 or 200. */
static int
type_known(uint8_t type)
{
	switch (type) {
	case PROTO_HELLO:
	case PROTO_WELCOME:
	case PROTO_BATCH:
	case PROTO_ACK:
	case PROTO_STATS:
	case PROTO_NAMES:
	case PROTO_HEARTBEAT:
	case PROTO_ERROR:
		return 1;
	}
	return 0;
}

int
proto_hdr_decode(const uint8_t *p, size_t n, uint32_t max_len, struct proto_hdr *h)
{
	uint32_t len;
	uint16_t flags;

	if (n < PROTO_HDR_LEN)
		return PROTO_EAGAIN;
	/* The checks run in the order PROTOCOL.md lists, so every implementation reports the
	 * same reason for the same bytes. */
	if (ld_u32be(p) != PROTO_MAGIC)
		return PROTO_EMAGIC;
	if (p[4] != PROTO_VERSION)
		return PROTO_EVERSION;
	if (!type_known(p[5]))
		return PROTO_ETYPE;
	flags = ld_u16be(p + 6);
	len = ld_u32be(p + 8);
	if (ld_u32be(p + 12) != 0)
		return PROTO_EINVAL;
	if (flags & ~WIRE_KNOWN_FLAGS)
		return PROTO_EINVAL;
	if ((flags & PROTO_F_LZ4) && p[5] != PROTO_BATCH)
		return PROTO_EINVAL;
	if (len > max_len)
		return PROTO_ETOOBIG;
	h->version = p[4];
	h->type = p[5];
	h->flags = flags;
	h->len = len;
	return 0;
}

/* ---- HELLO ------------------------------------------------------------------------ */

int
proto_hello_encode(const struct proto_hello *m, uint8_t *out, size_t cap)
{
	long id_len = field_len(m->sensor_id, sizeof(m->sensor_id), 1, PROTO_MAX_ID, STR_ID);
	long ver_len = field_len(m->version, sizeof(m->version), 0, PROTO_MAX_VERSION, STR_PRINT);
	long tok_len = field_len(m->token, sizeof(m->token), 0, PROTO_MAX_TEXT, STR_GRAPH);
	long name_len[PROTO_MAX_IFACES];
	struct wcur w;

	if (id_len < 0 || ver_len < 0 || tok_len < 0)
		return PROTO_EINVAL;
	if (m->n_ifaces < 1 || m->n_ifaces > PROTO_MAX_IFACES)
		return PROTO_EINVAL;
	for (unsigned i = 0; i < m->n_ifaces; i++) {
		const struct proto_iface *f = &m->ifaces[i];

		name_len[i] = field_len(f->name, sizeof(f->name), 0, PROTO_MAX_IFNAME, STR_GRAPH);
		if (name_len[i] < 0 || f->snaplen < 1 || f->snaplen > PROTO_MAX_SNAPLEN)
			return PROTO_EINVAL;
	}

	wcur_init(&w, out, cap);
	put_str(&w, m->sensor_id, id_len);
	put_str(&w, m->version, ver_len);
	put_u32be(&w, m->caps);
	put_u64be(&w, m->epoch);
	put_str(&w, m->token, tok_len);
	put_u16be(&w, m->n_ifaces);
	for (unsigned i = 0; i < m->n_ifaces; i++) {
		put_u32be(&w, m->ifaces[i].linktype);
		put_u32be(&w, m->ifaces[i].snaplen);
		put_str(&w, m->ifaces[i].name, name_len[i]);
	}
	return wcur_finish(&w);
}

int
proto_hello_decode(const uint8_t *p, size_t n, struct proto_hello *m)
{
	struct cursor c;
	int rc;

	memset(m, 0, sizeof(*m));
	cursor_init(&c, p, n);
	if ((rc = cur_str(&c, 1, PROTO_MAX_ID, STR_ID, m->sensor_id)) < 0)
		return rc;
	if ((rc = cur_str(&c, 0, PROTO_MAX_VERSION, STR_PRINT, m->version)) < 0)
		return rc;
	if ((rc = cur_u32be(&c, &m->caps)) < 0)
		return rc;
	if ((rc = cur_u64be(&c, &m->epoch)) < 0)
		return rc;
	if ((rc = cur_str(&c, 0, PROTO_MAX_TEXT, STR_GRAPH, m->token)) < 0)
		return rc;
	if ((rc = cur_u16be(&c, &m->n_ifaces)) < 0)
		return rc;
	if (m->n_ifaces < 1 || m->n_ifaces > PROTO_MAX_IFACES)
		return PROTO_EINVAL;
	for (unsigned i = 0; i < m->n_ifaces; i++) {
		struct proto_iface *f = &m->ifaces[i];

		if ((rc = cur_u32be(&c, &f->linktype)) < 0)
			return rc;
		if ((rc = cur_u32be(&c, &f->snaplen)) < 0)
			return rc;
		if (f->snaplen < 1 || f->snaplen > PROTO_MAX_SNAPLEN)
			return PROTO_EINVAL;
		if ((rc = cur_str(&c, 0, PROTO_MAX_IFNAME, STR_GRAPH, f->name)) < 0)
			return rc;
	}
	return cur_done(&c);
}

/* ---- WELCOME ---------------------------------------------------------------------- */

static int
welcome_valid(const struct proto_welcome *m)
{
	return m->max_frame >= WIRE_MIN_FRAME && m->max_frame <= WIRE_MAX_FRAME &&
		m->heartbeat_ms >= WIRE_MIN_HEARTBEAT_MS && m->heartbeat_ms <= WIRE_MAX_HEARTBEAT_MS;
}

int
proto_welcome_encode(const struct proto_welcome *m, uint8_t *out, size_t cap)
{
	struct wcur w;

	if (!welcome_valid(m))
		return PROTO_EINVAL;
	wcur_init(&w, out, cap);
	put_u64be(&w, m->epoch);
	put_u64be(&w, m->next_seq);
	put_u32be(&w, m->max_frame);
	put_u32be(&w, m->heartbeat_ms);
	return wcur_finish(&w);
}

int
proto_welcome_decode(const uint8_t *p, size_t n, struct proto_welcome *m)
{
	if (n < WELCOME_LEN)
		return PROTO_ETRUNC;
	if (n > WELCOME_LEN)
		return PROTO_ETRAILING;
	m->epoch = ld_u64be(p);
	m->next_seq = ld_u64be(p + 8);
	m->max_frame = ld_u32be(p + 16);
	m->heartbeat_ms = ld_u32be(p + 20);
	return welcome_valid(m) ? 0 : PROTO_EINVAL;
}

/* ---- BATCH ------------------------------------------------------------------------ */

int
proto_batch_hdr_encode(uint64_t seq, uint32_t n_records, uint32_t raw_len, uint8_t *out, size_t cap)
{
	struct wcur w;

	if (n_records == 0 || (uint64_t)n_records * PROTO_REC_HDR_LEN > raw_len)
		return PROTO_EINVAL;
	wcur_init(&w, out, cap);
	put_u64be(&w, seq);
	put_u32be(&w, n_records);
	put_u32be(&w, raw_len);
	return wcur_finish(&w);
}

int
proto_batch_decode(const uint8_t *p, size_t n, uint32_t max_raw, struct proto_batch *m)
{
	struct cursor c;
	size_t data_len;
	int rc;

	cursor_init(&c, p, n);
	if ((rc = cur_u64be(&c, &m->seq)) < 0)
		return rc;
	if ((rc = cur_u32be(&c, &m->n_records)) < 0)
		return rc;
	if ((rc = cur_u32be(&c, &m->raw_len)) < 0)
		return rc;
	/* raw_len sizes the receiver's decompression buffer, so it is bounded before anything
	 * else: this is what makes a decompression bomb impossible. */
	if (m->raw_len > max_raw)
		return PROTO_ETOOBIG;
	if (m->n_records == 0 || (uint64_t)m->n_records * PROTO_REC_HDR_LEN > m->raw_len)
		return PROTO_EINVAL;
	data_len = cursor_left(&c);
	/* No valid data is empty: raw data holds at least one record header, and an lz4 block
	 * is at least one byte. */
	if (data_len == 0)
		return PROTO_ETRUNC;
	if (data_len > UINT32_MAX)
		return PROTO_ETOOBIG;
	m->data = c.p;
	m->data_len = (uint32_t)data_len;
	return 0;
}

/* ---- ACK -------------------------------------------------------------------------- */

int
proto_ack_encode(const struct proto_ack *m, uint8_t *out, size_t cap)
{
	struct wcur w;

	wcur_init(&w, out, cap);
	put_u64be(&w, m->epoch);
	put_u64be(&w, m->seq);
	return wcur_finish(&w);
}

int
proto_ack_decode(const uint8_t *p, size_t n, struct proto_ack *m)
{
	if (n < ACK_LEN)
		return PROTO_ETRUNC;
	if (n > ACK_LEN)
		return PROTO_ETRAILING;
	m->epoch = ld_u64be(p);
	m->seq = ld_u64be(p + 8);
	return 0;
}

/* ---- STATS ------------------------------------------------------------------------ */

/* Each counter may appear once: two values for one id would leave the receiver to guess
 * which one is current. Ids it does not know are still valid and kept. */
static int
stats_unique(const struct proto_stat *s, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = 0; j < i; j++)
			if (s[i].id == s[j].id)
				return 0;
	return 1;
}

int
proto_stats_encode(const struct proto_stats *m, uint8_t *out, size_t cap)
{
	struct wcur w;

	if (m->n > PROTO_MAX_STATS || !stats_unique(m->s, m->n))
		return PROTO_EINVAL;
	wcur_init(&w, out, cap);
	put_u64be(&w, m->ts_ns);
	put_u16be(&w, m->n);
	for (unsigned i = 0; i < m->n; i++) {
		put_u16be(&w, m->s[i].id);
		put_u64be(&w, m->s[i].value);
	}
	return wcur_finish(&w);
}

int
proto_stats_decode(const uint8_t *p, size_t n, struct proto_stats *m)
{
	struct cursor c;
	int rc;

	memset(m, 0, sizeof(*m));
	cursor_init(&c, p, n);
	if ((rc = cur_u64be(&c, &m->ts_ns)) < 0)
		return rc;
	if ((rc = cur_u16be(&c, &m->n)) < 0)
		return rc;
	if (m->n > PROTO_MAX_STATS)
		return PROTO_EINVAL;
	for (unsigned i = 0; i < m->n; i++) {
		if ((rc = cur_u16be(&c, &m->s[i].id)) < 0)
			return rc;
		if ((rc = cur_u64be(&c, &m->s[i].value)) < 0)
			return rc;
	}
	if ((rc = cur_done(&c)) < 0)
		return rc;
	return stats_unique(m->s, m->n) ? 0 : PROTO_EINVAL;
}

/* ---- HEARTBEAT -------------------------------------------------------------------- */

int
proto_heartbeat_encode(uint64_t ts_ns, uint8_t *out, size_t cap)
{
	struct wcur w;

	wcur_init(&w, out, cap);
	put_u64be(&w, ts_ns);
	return wcur_finish(&w);
}

int
proto_heartbeat_decode(const uint8_t *p, size_t n, uint64_t *ts_ns)
{
	if (n < HEARTBEAT_LEN)
		return PROTO_ETRUNC;
	if (n > HEARTBEAT_LEN)
		return PROTO_ETRAILING;
	*ts_ns = ld_u64be(p);
	return 0;
}

/* ---- ERROR ------------------------------------------------------------------------ */

int
proto_error_encode(const struct proto_error *m, uint8_t *out, size_t cap)
{
	long len = field_len(m->text, sizeof(m->text), 0, PROTO_MAX_TEXT, STR_PRINT);
	struct wcur w;

	if (len < 0)
		return PROTO_EINVAL;
	wcur_init(&w, out, cap);
	put_u16be(&w, m->code);
	put_str(&w, m->text, len);
	return wcur_finish(&w);
}

int
proto_error_decode(const uint8_t *p, size_t n, struct proto_error *m)
{
	struct cursor c;
	int rc;

	memset(m, 0, sizeof(*m));
	cursor_init(&c, p, n);
	if ((rc = cur_u16be(&c, &m->code)) < 0)
		return rc;
	if ((rc = cur_str(&c, 0, PROTO_MAX_TEXT, STR_PRINT, m->text)) < 0)
		return rc;
	return cur_done(&c);
}

/* ---- NAMES ------------------------------------------------------------------------ */

/*
 * Names and namespaces end up in JSON files, logs and (later) pcapng name blocks and
 * query results, so only host-name characters pass (RFC 952 / RFC 1123 letters, digits
 * and hyphens, plus '_' for SRV-style labels such as _ldap._tcp), in non-empty labels of
 * at most 63 bytes. One spelling per name also keeps the encoding canonical.
 */
int
proto_name_valid(const char *s, size_t len, size_t max)
{
	size_t label = 0;

	if (len > max)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			    ch == '-' || ch == '_'))
			return 0;
		if (++label > NAME_LABEL_MAX)
			return 0;
	}
	return len == 0 || label > 0;
}

static int
name_event_valid(const struct proto_name *e, long name_len, long ns_len)
{
	return e->source != 0 && (e->family == 4 || e->family == 6) && e->ttl_s <= PROTO_MAX_TTL &&
		name_len >= 1 && ns_len >= 0;
}

/* Length of a NUL-terminated name field, or -1 when unterminated or outside its class. */
static long
name_field_len(const char *s, size_t size, size_t min, size_t max)
{
	const char *nul = memchr(s, '\0', size);
	size_t len;

	if (!nul)
		return -1;
	len = (size_t)(nul - s);
	if (len < min || !proto_name_valid(s, len, max))
		return -1;
	return (long)len;
}

int
proto_names_encode(const struct proto_names *m, uint8_t *out, size_t cap)
{
	struct wcur w;

	if (m->n < 1 || m->n > PROTO_MAX_NAMES)
		return PROTO_EINVAL;
	for (unsigned i = 0; i < m->n; i++) {
		const struct proto_name *e = &m->ev[i];

		if (!name_event_valid(e, name_field_len(e->name, sizeof(e->name), 1, PROTO_MAX_NAME),
			    name_field_len(e->ns, sizeof(e->ns), 0, PROTO_MAX_NS)))
			return PROTO_EINVAL;
	}
	wcur_init(&w, out, cap);
	put_u16be(&w, m->n);
	for (unsigned i = 0; i < m->n; i++) {
		const struct proto_name *e = &m->ev[i];
		uint8_t *q;

		put_u64be(&w, e->ts_ns);
		if ((q = wcur_take(&w, 2)) != NULL) {
			q[0] = e->source;
			q[1] = e->family;
		}
		put_bytes(&w, e->addr, e->family == 4 ? 4 : 16);
		put_u16be(&w, e->port);
		put_u32be(&w, e->ttl_s);
		put_str(&w, e->name, (long)strlen(e->name));
		put_str(&w, e->ns, (long)strlen(e->ns));
	}
	return wcur_finish(&w);
}

/* Reads a name or namespace: length range first (EINVAL even if the bytes are missing),
 * then the bytes, then their class. */
static int
cur_name(struct cursor *c, size_t min, size_t max, char *out)
{
	uint16_t len;
	const uint8_t *s;
	int rc;

	if ((rc = cur_u16be(c, &len)) < 0)
		return rc;
	if (len < min || len > max)
		return PROTO_EINVAL;
	if ((rc = cur_bytes(c, len, &s)) < 0)
		return rc;
	if (!proto_name_valid((const char *)s, len, max))
		return PROTO_EINVAL;
	if (len)
		memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int
proto_names_decode(const uint8_t *p, size_t n, struct proto_names *m)
{
	struct cursor c;
	int rc;

	m->n = 0;
	cursor_init(&c, p, n);
	if ((rc = cur_u16be(&c, &m->n)) < 0)
		return rc;
	if (m->n < 1 || m->n > PROTO_MAX_NAMES)
		return PROTO_EINVAL;
	for (unsigned i = 0; i < m->n; i++) {
		struct proto_name *e = &m->ev[i];
		const uint8_t *b;

		memset(e, 0, sizeof(*e));
		if ((rc = cur_u64be(&c, &e->ts_ns)) < 0)
			return rc;
		if ((rc = cur_bytes(&c, 2, &b)) < 0)
			return rc;
		e->source = b[0];
		e->family = b[1];
		/* The family sizes the address, so it is checked before the address is read. */
		if (e->source == 0 || (e->family != 4 && e->family != 6))
			return PROTO_EINVAL;
		if ((rc = cur_bytes(&c, e->family == 4 ? 4 : 16, &b)) < 0)
			return rc;
		memcpy(e->addr, b, e->family == 4 ? 4 : 16);
		if ((rc = cur_u16be(&c, &e->port)) < 0)
			return rc;
		if ((rc = cur_u32be(&c, &e->ttl_s)) < 0)
			return rc;
		if (e->ttl_s > PROTO_MAX_TTL)
			return PROTO_EINVAL;
		if ((rc = cur_name(&c, 1, PROTO_MAX_NAME, e->name)) < 0)
			return rc;
		if ((rc = cur_name(&c, 0, PROTO_MAX_NS, e->ns)) < 0)
			return rc;
	}
	return cur_done(&c);
}

/* ---- Records ---------------------------------------------------------------------- */

void
proto_rec_hdr_encode(
	uint8_t out[PROTO_REC_HDR_LEN], uint64_t ts_ns, uint16_t iface, uint32_t caplen, uint32_t origlen)
{
	st_u64be(out, ts_ns);
	st_u16be(out + 8, iface);
	st_u16be(out + 10, 0);
	st_u32be(out + 12, caplen);
	st_u32be(out + 16, origlen);
}

void
proto_rec_iter_init(
	struct proto_rec_iter *it, const uint8_t *p, size_t n, uint16_t n_ifaces, uint32_t max_caplen)
{
	it->p = p;
	it->end = n ? p + n : p;
	it->n_ifaces = n_ifaces;
	it->max_caplen = max_caplen;
}

int
proto_rec_next(struct proto_rec_iter *it, struct proto_rec *r)
{
	struct cursor c = { it->p, it->end };
	const uint8_t *h, *data;
	uint32_t caplen, origlen;
	uint16_t iface;

	if (cursor_left(&c) == 0)
		return 0;
	if (cur_bytes(&c, PROTO_REC_HDR_LEN, &h) < 0)
		return PROTO_ETRUNC;
	iface = ld_u16be(h + 8);
	caplen = ld_u32be(h + 12);
	origlen = ld_u32be(h + 16);
	if (ld_u16be(h + 10) != 0)
		return PROTO_EINVAL;
	if (iface >= it->n_ifaces || caplen > origlen || caplen > it->max_caplen)
		return PROTO_EINVAL;
	if (cur_bytes(&c, caplen, &data) < 0)
		return PROTO_ETRUNC;
	r->ts_ns = ld_u64be(h);
	r->iface = iface;
	r->caplen = caplen;
	r->origlen = origlen;
	r->data = data;
	/* The iterator only advances on success, so after an error every further call
	 * reports the same error instead of resuming inside a broken record. */
	it->p = c.p;
	return 1;
}

/* ---- lz4 -------------------------------------------------------------------------- */

/* liblz4 takes int sizes; every size is checked against its limits before the cast.
 * The byte layout of a block is lz4's "Block Format Description" (lz4_Block_format.md). */

int
proto_lz4_bound(uint32_t raw_len)
{
	if (raw_len > LZ4_MAX_INPUT_SIZE)
		return PROTO_ETOOBIG;
	return LZ4_compressBound((int)raw_len);
}

int
proto_lz4_compress(const uint8_t *src, uint32_t n, uint8_t *dst, uint32_t cap)
{
	int out;

	if (n > LZ4_MAX_INPUT_SIZE)
		return PROTO_ETOOBIG;
	out = LZ4_compress_default(
		(const char *)src, (char *)dst, (int)n, cap > INT_MAX ? INT_MAX : (int)cap);
	return out > 0 ? out : PROTO_ENOSPC;
}

int
proto_lz4_decompress(const uint8_t *src, uint32_t n, uint8_t *dst, uint32_t raw_len)
{
	int out;

	if (n == 0 || n > INT_MAX || raw_len > INT_MAX)
		return PROTO_ELZ4;
	/* LZ4_decompress_safe never writes past raw_len bytes and fails when the block would
	 * need more; a block that ends early is caught by the exact-length comparison. */
	out = LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)raw_len);
	if (out < 0 || (uint32_t)out != raw_len)
		return PROTO_ELZ4;
	return 0;
}
