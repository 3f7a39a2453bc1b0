/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Capture files: a reader for classic pcap and pcapng, and a writer for classic pcap
 * with nanosecond timestamps.
 *
 * References: the pcap format is draft-ietf-opsawg-pcap, pcapng is
 * draft-ietf-opsawg-pcapng (section numbers below are from the pcapng draft).
 *
 * Every byte of the file is read through the bounds-checked helpers below; nothing is
 * cast to a struct, because a capture file is untrusted input (it may come from a
 * sensor we do not control, or be cut short by a crash).
 */
#include "shared/pcapfile.h"

#include "shared/cursor.h"
#include "shared/fsutil.h"

#include <byteswap.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* 128-bit arithmetic keeps timestamp conversion exact for any 64-bit tick count. */
__extension__ typedef unsigned __int128 pcapf_u128;

#define NSEC_PER_SEC 1000000000u

#define PCAP_MAGIC_US    0xa1b2c3d4u
#define PCAP_MAGIC_NS    0xa1b23c4du
#define PCAP_HDR_LEN     24
#define PCAP_REC_HDR_LEN 16

#define NG_BT_SHB 0x0a0d0d0au
#define NG_BT_IDB 0x00000001u
#define NG_BT_PB  0x00000002u /* obsolete Packet Block (appendix A) */
#define NG_BT_SPB 0x00000003u
#define NG_BT_EPB 0x00000006u
#define NG_BOM    0x1a2b3c4du

/* Block type + total length + trailing total length. */
#define NG_FRAME_LEN    12
/* Byte-order magic, version, section length. */
#define NG_SHB_MIN_BODY 16

/*
 * No legitimate block comes near this size: packet blocks are bounded by
 * PCAPF_MAX_CAPLEN and the rest (names, statistics, comments) are small. A larger
 * length is almost certainly corruption, which is reported as such rather than as a
 * truncated file.
 */
#define NG_MAX_BLOCK (16u * 1024 * 1024)

#define NG_OPT_ENDOFOPT    0
#define NG_OPT_IF_NAME     2
#define NG_OPT_IF_TSRESOL  9
#define NG_OPT_IF_TSOFFSET 14

#define PCAPW_BUF_SIZE (256u * 1024)

enum ts_kind {
	TS_MUL,
	TS_DIV,
	TS_SHIFT,
	TS_ZERO
};

/* How to turn one interface's timestamp ticks into nanoseconds since the epoch. */
struct ts_conv {
	enum ts_kind kind;
	unsigned shift;     /* TS_SHIFT: ticks are 2^-shift seconds */
	uint64_t factor;    /* TS_MUL: ns per tick; TS_DIV: ticks per ns */
	int64_t offset_sec; /* if_tsoffset */
};

/* Granularity of dropping already-read pages (a power of two, page-aligned). */
#define PCAPR_RELEASE_STEP (4u << 20)

struct pcapr {
	const uint8_t *base;
	size_t len;
	size_t off; /* next block or record */
	void *map;  /* owned mapping (pcapr_open), or NULL when borrowed */
	size_t map_len;
	size_t released; /* bytes at the start of the mapping already handed back */
	bool ng;
	bool nano;
	bool swap; /* file (or current section) byte order differs from ours */
	enum {
		LEN_AS_IS,
		LEN_SWAPPED,
		LEN_MAYBE_SWAPPED
	} lens;  /* classic pcap, see classic_open */
	int err; /* sticky error, returned by every later pcapr_next() */

	/*
	 * pcapng: the open-time scan validated every block before stop_off; at stop_off
	 * the reader reports stop_err (0 for a clean end of file).
	 */
	size_t stop_off;
	int stop_err;
	size_t sec_first; /* global index of the current section's interface 0 */
	size_t sec_count; /* interfaces seen so far in the current section */

	size_t n_ifaces;
	struct pcapf_iface ifaces[PCAPF_MAX_IFACES];
	struct ts_conv conv[PCAPF_MAX_IFACES];
};

struct pcapw {
	int fd; /* output, or -1 with sink */
	pcapw_sink sink;
	void *sink_arg;
	uint32_t linktype;
	uint32_t snaplen; /* classic pcap: records are clipped to it (0: never) */
	bool ng;          /* pcapng: the stream began with pcapw_ng_section() */
	int err;          /* sticky: once a write fails, every later call returns it */
	size_t used;
	uint64_t durable; /* bytes of flushes that completed */
	uint8_t *buf;
};

const char *
pcapf_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case PCAPF_EFORMAT:
		return "not a pcap/pcapng file, or a malformed header or block";
	case PCAPF_ETRUNC:
		return "capture file ends in the middle of a record or block";
	case PCAPF_ETOOBIG:
		return "record or block above the size limits";
	case PCAPF_EIFACES:
		return "too many interfaces in capture file";
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown capture file error";
}

/*
 * Byte readers. Callers have already checked that the bytes lie inside the buffer;
 * memcpy keeps unaligned reads defined.
 */
static inline uint16_t
rd16(const uint8_t *p, bool swap)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return swap ? bswap_16(v) : v;
}

static inline uint32_t
rd32(const uint8_t *p, bool swap)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return swap ? bswap_32(v) : v;
}

static inline uint64_t
rd64(const uint8_t *p, bool swap)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return swap ? bswap_64(v) : v;
}

static size_t
pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

/* Sets up a conversion from if_tsresol (pcapng section 4.2): bit 7 clear means
 * ticks of 10^-v seconds, set means 2^-v. */
static void
ts_conv_set(struct ts_conv *tc, uint8_t tsresol)
{
	unsigned v = tsresol & 0x7f;

	if (tsresol & 0x80) {
		tc->kind = TS_SHIFT;
		tc->shift = v;
		return;
	}
	if (v <= 9) {
		uint64_t f = 1;
		for (unsigned i = v; i < 9; i++)
			f *= 10;
		tc->kind = TS_MUL;
		tc->factor = f;
	} else if (v - 9 <= 19) {
		/* 10^19 is the largest power of ten that fits 64 bits. */
		uint64_t f = 1;
		for (unsigned i = 9; i < v; i++)
			f *= 10;
		tc->kind = TS_DIV;
		tc->factor = f;
	} else {
		/* A tick this small rounds every 64-bit count down to 0 ns. */
		tc->kind = TS_ZERO;
	}
}

/*
 * Converts ticks to ns since the epoch, rounding down. Results outside the range of
 * uint64_t (before 1970 through a negative if_tsoffset, or after 2554) are clamped,
 * because a hostile timestamp should not stop the reader.
 */
static uint64_t
ts_to_ns(const struct ts_conv *tc, uint64_t ticks)
{
	pcapf_u128 v;

	switch (tc->kind) {
	case TS_MUL:
		v = (pcapf_u128)ticks * tc->factor;
		break;
	case TS_DIV:
		v = ticks / tc->factor;
		break;
	case TS_SHIFT:
		v = ((pcapf_u128)ticks * NSEC_PER_SEC) >> tc->shift;
		break;
	default:
		v = 0;
		break;
	}
	if (tc->offset_sec >= 0) {
		v += (pcapf_u128)(uint64_t)tc->offset_sec * NSEC_PER_SEC;
	} else {
		/* Written so that INT64_MIN does not overflow on negation. */
		uint64_t mag = (uint64_t)(-(tc->offset_sec + 1)) + 1;
		pcapf_u128 sub = (pcapf_u128)mag * NSEC_PER_SEC;
		v = v > sub ? v - sub : 0;
	}
	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static void
iface_default_name(struct pcapf_iface *ifc, size_t idx)
{
	snprintf(ifc->name, sizeof(ifc->name), "if%zu", idx);
}

/*
 * Copies if_name. The name ends up in logs and file names, so control characters
 * are replaced rather than passed through from an untrusted file.
 */
static void
iface_set_name(struct pcapf_iface *ifc, const uint8_t *p, size_t n)
{
	size_t i;

	if (n > sizeof(ifc->name) - 1)
		n = sizeof(ifc->name) - 1;
	for (i = 0; i < n && p[i] != '\0'; i++)
		ifc->name[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
	ifc->name[i] = '\0';
}

/* ---------------------------------------------------------------------------------
 * Classic pcap (draft-ietf-opsawg-pcap).
 */

static int
classic_open(struct pcapr *r, uint32_t magic_native)
{
	const uint8_t *h = r->base;
	uint16_t major, minor;
	uint32_t link;

	if (r->len < PCAP_HDR_LEN)
		return PCAPF_ETRUNC;
	r->swap = magic_native != PCAP_MAGIC_US && magic_native != PCAP_MAGIC_NS;
	r->nano = rd32(h, r->swap) == PCAP_MAGIC_NS;
	major = rd16(h + 4, r->swap);
	minor = rd16(h + 6, r->swap);
	/* Version 2 is the only one in use since 1998; older ones differ in layout. */
	if (major != 2)
		return PCAPF_EFORMAT;
	/*
	 * Before 2.3 a record header held the original length before the captured one;
	 * 2.3 exchanged them to match the BPF header, and some 2.3 writers kept the old
	 * order. libpcap and Wireshark therefore exchange the two fields of every record
	 * of a 2.0-2.2 file, and those of a 2.3 record whose captured length exceeds its
	 * original length: read such files as they do, record for record.
	 */
	r->lens = minor < 3 ? LEN_SWAPPED : minor == 3 ? LEN_MAYBE_SWAPPED : LEN_AS_IS;
	link = rd32(h + 20, r->swap);
	/* The upper 16 bits carry the FCS length and flag (pcap draft, section 4). */
	r->ifaces[0].linktype = link & 0xffff;
	r->ifaces[0].snaplen = rd32(h + 16, r->swap);
	iface_default_name(&r->ifaces[0], 0);
	r->n_ifaces = 1;
	r->off = PCAP_HDR_LEN;
	return 0;
}

static int
classic_next(struct pcapr *r, struct pcapf_rec *rec)
{
	size_t left = r->len - r->off;
	const uint8_t *p = r->base + r->off;
	uint32_t sec, sub, caplen, origlen;

	if (left == 0)
		return 0;
	if (left < PCAP_REC_HDR_LEN)
		return PCAPF_ETRUNC;
	sec = rd32(p, r->swap);
	sub = rd32(p + 4, r->swap);
	caplen = rd32(p + 8, r->swap);
	origlen = rd32(p + 12, r->swap);
	if (r->lens == LEN_SWAPPED || (r->lens == LEN_MAYBE_SWAPPED && caplen > origlen)) {
		uint32_t t = caplen;

		caplen = origlen;
		origlen = t;
	}
	if (caplen > PCAPF_MAX_CAPLEN)
		return PCAPF_ETOOBIG;
	if (caplen > left - PCAP_REC_HDR_LEN)
		return PCAPF_ETRUNC;
	/* Cannot overflow: (2^32 - 1) * 10^9 + (2^32 - 1) * 1000 < 2^64. */
	rec->ts_ns = (uint64_t)sec * NSEC_PER_SEC + (uint64_t)sub * (r->nano ? 1 : 1000);
	rec->caplen = caplen;
	rec->origlen = origlen;
	rec->iface = 0;
	rec->data = p + PCAP_REC_HDR_LEN;
	r->off += PCAP_REC_HDR_LEN + (size_t)caplen;
	return 1;
}

/* ---------------------------------------------------------------------------------
 * pcapng (draft-ietf-opsawg-pcapng).
 */

struct ng_block {
	uint32_t type;
	size_t total;       /* whole block, framing included */
	struct cursor body; /* between the leading and trailing lengths */
	bool swap;          /* the section's byte order differs from ours */
};

/*
 * Validates the framing of the block at `off` (section 3.1): total length a multiple
 * of 4, at least 12, inside the buffer and repeated at the end. A Section Header
 * Block sets *swap from its byte-order magic before its length is read, since each
 * section may have its own byte order (section 4.1).
 */
static int
ng_frame(const uint8_t *base, size_t len, size_t off, bool *swap, struct ng_block *b)
{
	const uint8_t *p = base + off;
	size_t left = len - off;
	uint32_t type, total;
	bool sw = *swap;

	if (left < NG_FRAME_LEN)
		return PCAPF_ETRUNC;
	memcpy(&type, p, sizeof(type));
	if (type == NG_BT_SHB) {
		/* The SHB type reads the same in both byte orders; its magic does not. */
		uint32_t bom;
		memcpy(&bom, p + 8, sizeof(bom));
		if (bom == NG_BOM)
			sw = false;
		else if (bom == bswap_32(NG_BOM))
			sw = true;
		else
			return PCAPF_EFORMAT;
	} else {
		type = sw ? bswap_32(type) : type;
	}
	total = rd32(p + 4, sw);
	if (total % 4 != 0 || total < NG_FRAME_LEN)
		return PCAPF_EFORMAT;
	if (total > NG_MAX_BLOCK)
		return PCAPF_ETOOBIG;
	if (total > left)
		return PCAPF_ETRUNC;
	if (rd32(p + total - 4, sw) != total)
		return PCAPF_EFORMAT;
	if (type == NG_BT_SHB) {
		/* Major version 1 is the only one defined; 1.0 and the old 1.2 read alike. */
		if (total < NG_FRAME_LEN + NG_SHB_MIN_BODY || rd16(p + 12, sw) != 1)
			return PCAPF_EFORMAT;
	}
	b->type = type;
	b->total = total;
	cursor_init(&b->body, p + 8, total - NG_FRAME_LEN);
	b->swap = sw;
	*swap = sw;
	return 0;
}

/* Parses an Interface Description Block (section 4.2) into table slot idx. */
static int
ng_parse_idb(struct pcapr *r, struct cursor *c, bool swap, size_t idx)
{
	struct pcapf_iface *ifc = &r->ifaces[idx];
	struct ts_conv *tc = &r->conv[idx];
	uint16_t link, reserved;
	uint32_t snaplen;

	if (!cursor_u16x(c, swap, &link) || !cursor_u16x(c, swap, &reserved) ||
		!cursor_u32x(c, swap, &snaplen))
		return PCAPF_EFORMAT;
	ifc->linktype = link;
	ifc->snaplen = snaplen;
	iface_default_name(ifc, idx);
	memset(tc, 0, sizeof(*tc));
	ts_conv_set(tc, 6); /* The default resolution is microseconds. */

	/* Options (section 3.5); a block may also end without opt_endofopt. */
	while (cursor_left(c) > 0) {
		uint16_t code, olen;
		const uint8_t *val;

		if (!cursor_u16x(c, swap, &code) || !cursor_u16x(c, swap, &olen))
			return PCAPF_EFORMAT;
		if (code == NG_OPT_ENDOFOPT)
			break;
		val = c->p;
		if (!cursor_skip(c, pad4(olen)))
			return PCAPF_EFORMAT;
		switch (code) {
		case NG_OPT_IF_NAME:
			iface_set_name(ifc, val, olen);
			break;
		case NG_OPT_IF_TSRESOL:
			if (olen != 1)
				return PCAPF_EFORMAT;
			ts_conv_set(tc, val[0]);
			break;
		case NG_OPT_IF_TSOFFSET:
			if (olen != 8)
				return PCAPF_EFORMAT;
			tc->offset_sec = (int64_t)rd64(val, swap);
			break;
		default:
			break;
		}
	}
	return 0;
}

/*
 * Walks every block once at open so that the interface table covers all sections
 * before the first record is returned. The walk stops at the first bad block; the
 * records before it are still readable and the error is reported in its place.
 */
static int
ng_scan(struct pcapr *r)
{
	size_t off = 0;
	bool swap = false;
	int rc;

	r->stop_err = 0;
	while (off < r->len) {
		struct ng_block b;

		/* The first block is an SHB: pcapr_open_mem() dispatched on its type. */
		rc = ng_frame(r->base, r->len, off, &swap, &b);
		if (rc == 0 && b.type == NG_BT_IDB) {
			if (r->n_ifaces == PCAPF_MAX_IFACES)
				return PCAPF_EIFACES;
			rc = ng_parse_idb(r, &b.body, b.swap, r->n_ifaces);
			if (rc == 0)
				r->n_ifaces++;
		}
		if (rc != 0) {
			/* Without a valid first SHB there is no capture to read at all. */
			if (off == 0)
				return rc;
			r->stop_err = rc;
			break;
		}
		off += b.total;
	}
	r->stop_off = off;
	return 0;
}

/* Maps a section-local interface id to the global table (section 4.3). */
static int
ng_iface(const struct pcapr *r, uint32_t local, uint32_t *global)
{
	if (local >= r->sec_count)
		return PCAPF_EFORMAT;
	*global = (uint32_t)(r->sec_first + local);
	return 0;
}

/* Fills rec from an Enhanced (section 4.3) or obsolete (appendix A) Packet Block. */
static int
ng_packet(struct pcapr *r, struct ng_block *b, struct pcapf_rec *rec)
{
	struct cursor *c = &b->body;
	bool swap = b->swap;
	uint32_t local, hi, lo, caplen, origlen;

	if (b->type == NG_BT_EPB) {
		if (!cursor_u32x(c, swap, &local))
			return PCAPF_EFORMAT;
	} else {
		uint16_t id16, drops;
		if (!cursor_u16x(c, swap, &id16) || !cursor_u16x(c, swap, &drops))
			return PCAPF_EFORMAT;
		local = id16;
	}
	if (!cursor_u32x(c, swap, &hi) || !cursor_u32x(c, swap, &lo) || !cursor_u32x(c, swap, &caplen) ||
		!cursor_u32x(c, swap, &origlen))
		return PCAPF_EFORMAT;
	if (caplen > PCAPF_MAX_CAPLEN)
		return PCAPF_ETOOBIG;
	if (caplen > cursor_left(c))
		return PCAPF_EFORMAT;
	if (ng_iface(r, local, &rec->iface) != 0)
		return PCAPF_EFORMAT;
	rec->ts_ns = ts_to_ns(&r->conv[rec->iface], (uint64_t)hi << 32 | lo);
	rec->caplen = caplen;
	rec->origlen = origlen;
	rec->data = c->p;
	return 1;
}

/*
 * Fills rec from a Simple Packet Block (section 4.4): interface 0 of the section, no
 * timestamp (reported as 0), and a captured length that the block does not store.
 */
static int
ng_simple(struct pcapr *r, struct ng_block *b, struct pcapf_rec *rec)
{
	struct cursor *c = &b->body;
	bool swap = b->swap;
	uint32_t origlen, caplen, snaplen;
	size_t room;

	if (!cursor_u32x(c, swap, &origlen))
		return PCAPF_EFORMAT;
	if (ng_iface(r, 0, &rec->iface) != 0)
		return PCAPF_EFORMAT;
	snaplen = r->ifaces[rec->iface].snaplen;
	room = cursor_left(c);
	caplen = origlen;
	/* A snaplen of 0 means "no limit" (section 4.2). */
	if (snaplen != 0 && caplen > snaplen)
		caplen = snaplen;
	if (caplen > room)
		caplen = (uint32_t)room;
	if (caplen > PCAPF_MAX_CAPLEN)
		return PCAPF_ETOOBIG;
	rec->ts_ns = 0;
	rec->caplen = caplen;
	rec->origlen = origlen;
	rec->data = c->p;
	return 1;
}

static int
ng_next(struct pcapr *r, struct pcapf_rec *rec)
{
	for (;;) {
		struct ng_block b;
		int rc;

		if (r->off >= r->stop_off)
			return r->stop_err;
		rc = ng_frame(r->base, r->len, r->off, &r->swap, &b);
		if (rc != 0)
			return rc; /* Unreachable: the scan validated this block. */
		switch (b.type) {
		case NG_BT_SHB:
			r->sec_first += r->sec_count;
			r->sec_count = 0;
			rc = 0;
			break;
		case NG_BT_IDB:
			/* The scan parsed it; here it only becomes usable by later blocks. */
			if (r->sec_first + r->sec_count >= r->n_ifaces)
				return PCAPF_EFORMAT;
			r->sec_count++;
			rc = 0;
			break;
		case NG_BT_EPB:
		case NG_BT_PB:
			rc = ng_packet(r, &b, rec);
			break;
		case NG_BT_SPB:
			rc = ng_simple(r, &b, rec);
			break;
		default:
			/* Statistics, name resolution, secrets, custom blocks: not packets. */
			rc = 0;
			break;
		}
		if (rc < 0)
			return rc;
		r->off += b.total;
		if (rc == 1)
			return 1;
	}
}

/* ---------------------------------------------------------------------------------
 * Reader API.
 */

/* True when the first n bytes (n < 4) could begin a pcap or pcapng magic. */
static bool
magic_prefix(const uint8_t *p, size_t n)
{
	static const uint32_t magics[] = { PCAP_MAGIC_US, PCAP_MAGIC_NS, NG_BT_SHB };

	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		uint8_t be[4], le[4];
		for (size_t k = 0; k < 4; k++) {
			be[k] = (uint8_t)(magics[i] >> (24 - 8 * k));
			le[k] = (uint8_t)(magics[i] >> (8 * k));
		}
		if (memcmp(p, be, n) == 0 || memcmp(p, le, n) == 0)
			return true;
	}
	return false;
}

static void
set_err(int *err, int v)
{
	if (err != NULL)
		*err = v;
}

struct pcapr *
pcapr_open_mem(const void *buf, size_t len, int *err)
{
	struct pcapr *r;
	uint32_t magic;
	int rc;

	if (buf == NULL && len != 0) {
		set_err(err, -EINVAL);
		return NULL;
	}
	if (len < 4) {
		/* An empty or short file that could still become a capture was cut short. */
		set_err(err, (len == 0 || magic_prefix(buf, len)) ? PCAPF_ETRUNC : PCAPF_EFORMAT);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		set_err(err, -errno);
		return NULL;
	}
	r->base = buf;
	r->len = len;
	memcpy(&magic, buf, sizeof(magic));
	if (magic == PCAP_MAGIC_US || magic == PCAP_MAGIC_NS || magic == bswap_32(PCAP_MAGIC_US) ||
		magic == bswap_32(PCAP_MAGIC_NS)) {
		rc = classic_open(r, magic);
	} else if (magic == NG_BT_SHB) {
		r->ng = true;
		rc = ng_scan(r);
	} else {
		rc = PCAPF_EFORMAT;
	}
	if (rc != 0) {
		free(r);
		set_err(err, rc);
		return NULL;
	}
	set_err(err, 0);
	return r;
}

struct pcapr *
pcapr_open(const char *path, int *err)
{
	struct pcapr *r = NULL;
	struct stat st;
	void *map = MAP_FAILED;
	size_t len = 0;
	int fd, rc = 0;

	/* O_NONBLOCK so that a FIFO given by mistake fails below instead of hanging. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		rc = -EFBIG;
		goto out;
	}
	len = (size_t)st.st_size;
	if (len == 0) {
		/* mmap cannot map nothing; an empty file has no header. */
		rc = PCAPF_ETRUNC;
		goto out;
	}
	map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	(void)madvise(map, len, MADV_SEQUENTIAL);
	r = pcapr_open_mem(map, len, &rc);
	if (r != NULL) {
		r->map = map;
		r->map_len = len;
		map = MAP_FAILED;
	}
out:
	if (map != MAP_FAILED)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
	set_err(err, rc);
	return r;
}

int
pcapr_next(struct pcapr *r, struct pcapf_rec *rec)
{
	int rc;

	if (r->err != 0)
		return r->err;
	/*
	 * Pages already read are dropped from the mapping (the page cache keeps them), so
	 * that replaying a large file does not grow the process by the size of the file.
	 * Only bytes before the record about to be read go: the previous record's data is
	 * no longer borrowed once this call starts.
	 */
	if (r->map != NULL && r->off - r->released >= PCAPR_RELEASE_STEP) {
		size_t upto = r->off & ~(size_t)(PCAPR_RELEASE_STEP - 1);
		if (upto > r->released) {
			(void)madvise((uint8_t *)r->map + r->released, upto - r->released, MADV_DONTNEED);
			r->released = upto;
		}
	}
	rc = r->ng ? ng_next(r, rec) : classic_next(r, rec);
	if (rc < 0)
		r->err = rc;
	return rc;
}

size_t
pcapr_iface_count(const struct pcapr *r)
{
	return r->n_ifaces;
}

const struct pcapf_iface *
pcapr_iface(const struct pcapr *r, size_t idx)
{
	return idx < r->n_ifaces ? &r->ifaces[idx] : NULL;
}

bool
pcapr_is_pcapng(const struct pcapr *r)
{
	return r->ng;
}

/* Always false for pcapng, where resolution is per interface (records are in ns). */
bool
pcapr_is_nano(const struct pcapr *r)
{
	return r->nano;
}

uint64_t
pcapr_offset(const struct pcapr *r)
{
	return r->off;
}

void
pcapr_close(struct pcapr *r)
{
	if (r == NULL)
		return;
	if (r->map != NULL)
		munmap(r->map, r->map_len);
	free(r);
}

/* ---------------------------------------------------------------------------------
 * Writer: one buffer, one record layout, two outputs (a file descriptor or a sink).
 */

static struct pcapw *
pcapw_alloc(void)
{
	struct pcapw *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->buf = malloc(PCAPW_BUF_SIZE);
	if (w->buf == NULL) {
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	w->fd = -1;
	return w;
}

struct pcapw *
pcapw_new(int fd, uint32_t linktype, uint32_t snaplen)
{
	struct pcapw *w;

	if (fd < 0) {
		errno = EBADF;
		return NULL;
	}
	/* Our own reader refuses records above PCAPF_MAX_CAPLEN, so never write them. */
	if (snaplen == 0 || snaplen > PCAPF_MAX_CAPLEN) {
		errno = EINVAL;
		return NULL;
	}
	w = pcapw_alloc();
	if (w == NULL)
		return NULL;
	w->fd = fd;
	w->linktype = linktype;
	w->snaplen = snaplen;
	return w;
}

struct pcapw *
pcapw_new_sink(pcapw_sink sink, void *arg)
{
	struct pcapw *w;

	if (sink == NULL) {
		errno = EINVAL;
		return NULL;
	}
	w = pcapw_alloc();
	if (w == NULL)
		return NULL;
	w->sink = sink;
	w->sink_arg = arg;
	return w;
}

/*
 * Hands all of iov to the output. Returns 0 or -errno (a sink's own code); on
 * success the bytes count as durable. iov may be consumed.
 */
static int
out_iov(struct pcapw *w, struct iovec *iov, int iovcnt)
{
	size_t total = 0, done;
	int rc = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (w->sink == NULL) {
		rc = fsu_writev_all(w->fd, iov, iovcnt, &done);
	} else {
		for (int i = 0; rc == 0 && i < iovcnt; i++)
			if (iov[i].iov_len > 0)
				rc = w->sink(w->sink_arg, iov[i].iov_base, iov[i].iov_len);
	}
	if (rc != 0) {
		/*
		 * Part of the bytes may be out, ending mid-record. The writer stops here;
		 * pcapw_durable_bytes() tells the caller where to truncate.
		 */
		w->err = rc;
		return rc;
	}
	w->durable += total;
	return 0;
}

int
pcapw_flush(struct pcapw *w)
{
	struct iovec iov;
	int rc;

	if (w->err != 0)
		return w->err;
	if (w->used == 0)
		return 0;
	iov.iov_base = w->buf;
	iov.iov_len = w->used;
	rc = out_iov(w, &iov, 1);
	if (rc != 0)
		return rc;
	w->used = 0;
	return 0;
}

static void
wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void
wr16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

/*
 * Appends the pieces of one record or block: through the buffer, or, when they are
 * larger than the buffer (only a record of nearly PCAPF_MAX_CAPLEN), straight out
 * after the buffer, since copying would not batch anything. Nothing is partially
 * buffered: all pieces fit, or the buffer is flushed first.
 */
static int
put_iov(struct pcapw *w, struct iovec *iov, int iovcnt)
{
	size_t need = 0;
	int rc;

	if (w->err != 0)
		return w->err;
	for (int i = 0; i < iovcnt; i++)
		need += iov[i].iov_len;
	if (need > PCAPW_BUF_SIZE - w->used && (rc = pcapw_flush(w)) != 0)
		return rc;
	if (need > PCAPW_BUF_SIZE)
		return out_iov(w, iov, iovcnt);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > 0)
			memcpy(w->buf + w->used, iov[i].iov_base, iov[i].iov_len);
		w->used += iov[i].iov_len;
	}
	return 0;
}

static int
put_one(struct pcapw *w, const void *p, size_t n)
{
	struct iovec iov = { (void *)p, n };

	return put_iov(w, &iov, 1);
}

/* Headers belong at the start of what this writer produces, never later. */
static bool
at_start(const struct pcapw *w)
{
	return w->durable == 0 && w->used == 0;
}

int
pcapw_pcap_header(struct pcapw *w, uint32_t linktype, uint32_t snaplen)
{
	uint8_t h[PCAP_HDR_LEN];

	if (w->err != 0)
		return w->err;
	if (!at_start(w))
		return -EINVAL;
	w->ng = false;
	w->linktype = linktype;
	w->snaplen = snaplen;
	wr32(h, PCAP_MAGIC_NS);
	wr16(h + 4, 2);
	wr16(h + 6, 4);
	wr32(h + 8, 0);  /* thiszone: timestamps are UTC */
	wr32(h + 12, 0); /* sigfigs: unused by every reader */
	wr32(h + 16, snaplen);
	wr32(h + 20, linktype);
	return put_one(w, h, sizeof(h));
}

int
pcapw_header(struct pcapw *w)
{
	return pcapw_pcap_header(w, w->linktype, w->snaplen);
}

/* A pcapng option: code, length, value padded to 4 bytes. Returns bytes used. */
static size_t
ng_opt(uint8_t *p, uint16_t code, const void *val, uint16_t len)
{
	size_t padded = ((size_t)len + 3) & ~(size_t)3;

	wr16(p, code);
	wr16(p + 2, len);
	if (len > 0)
		memcpy(p + 4, val, len);
	memset(p + 4 + len, 0, padded - len);
	return 4 + padded;
}

int
pcapw_ng_section(struct pcapw *w, const char *appl)
{
	uint8_t b[512];
	size_t n = 8, alen = appl != NULL ? strnlen(appl, 256) : 0;
	uint64_t section_len = UINT64_MAX; /* unknown: the stream is written once */

	if (w->err != 0)
		return w->err;
	if (!at_start(w))
		return -EINVAL;
	w->ng = true;
	wr32(b, NG_BT_SHB);
	wr32(b + n, NG_BOM);
	wr16(b + n + 4, 1);
	wr16(b + n + 6, 0);
	memcpy(b + n + 8, &section_len, 8);
	n += NG_SHB_MIN_BODY;
	if (alen > 0)
		n += ng_opt(b + n, 4 /* shb_userappl */, appl, (uint16_t)alen);
	n += ng_opt(b + n, NG_OPT_ENDOFOPT, "", 0);
	n += 4;
	wr32(b + 4, (uint32_t)n);
	wr32(b + n - 4, (uint32_t)n);
	return put_one(w, b, n);
}

int
pcapw_ng_iface(struct pcapw *w, uint32_t linktype, uint32_t snaplen, const char *name)
{
	uint8_t b[512];
	size_t n = 8, nlen = name != NULL ? strnlen(name, 256) : 0;
	uint8_t resol = 9;

	if (w->err != 0)
		return w->err;
	if (!w->ng || linktype > 0xffff)
		return -EINVAL;
	wr32(b, NG_BT_IDB);
	wr16(b + n, (uint16_t)linktype);
	wr16(b + n + 2, 0);
	wr32(b + n + 4, snaplen);
	n += 8;
	if (nlen > 0)
		n += ng_opt(b + n, NG_OPT_IF_NAME, name, (uint16_t)nlen);
	n += ng_opt(b + n, NG_OPT_IF_TSRESOL, &resol, 1);
	n += ng_opt(b + n, NG_OPT_ENDOFOPT, "", 0);
	n += 4;
	wr32(b + 4, (uint32_t)n);
	wr32(b + n - 4, (uint32_t)n);
	return put_one(w, b, n);
}

int
pcapw_write_if(struct pcapw *w, uint32_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
	uint32_t origlen)
{
	static const uint8_t zero[4];
	uint8_t hdr[28];
	uint32_t total;
	size_t pad;

	if (w->err != 0)
		return w->err;
	if (data == NULL && caplen != 0)
		return -EINVAL;
	if (!w->ng) {
		uint64_t sec = ts_ns / NSEC_PER_SEC;

		/* Seconds are 32 bits unsigned in pcap: the format ends in 2106. */
		if (sec > UINT32_MAX)
			return -EOVERFLOW;
		if (w->snaplen != 0 && caplen > w->snaplen)
			caplen = w->snaplen;
		wr32(hdr, (uint32_t)sec);
		wr32(hdr + 4, (uint32_t)(ts_ns % NSEC_PER_SEC));
		wr32(hdr + 8, caplen);
		wr32(hdr + 12, origlen);
		struct iovec iov[2] = { { hdr, PCAP_REC_HDR_LEN }, { (void *)data, caplen } };
		return put_iov(w, iov, 2);
	}
	/* Enhanced Packet Block (pcapng section 4.3), nanosecond ticks (if_tsresol 9). */
	pad = (4 - (caplen & 3)) & 3;
	total = (uint32_t)(28 + caplen + pad + 4);
	wr32(hdr, NG_BT_EPB);
	wr32(hdr + 4, total);
	wr32(hdr + 8, iface);
	wr32(hdr + 12, (uint32_t)(ts_ns >> 32));
	wr32(hdr + 16, (uint32_t)ts_ns);
	wr32(hdr + 20, caplen);
	wr32(hdr + 24, origlen);
	struct iovec iov[4] = { { hdr, 28 }, { (void *)data, caplen }, { (void *)zero, pad }, { &total, 4 } };
	return put_iov(w, iov, 4);
}

int
pcapw_write(struct pcapw *w, uint64_t ts_ns, const uint8_t *data, uint32_t caplen, uint32_t origlen)
{
	return pcapw_write_if(w, 0, ts_ns, data, caplen, origlen);
}

uint64_t
pcapw_bytes(const struct pcapw *w)
{
	return w->durable + w->used;
}

uint64_t
pcapw_durable_bytes(const struct pcapw *w)
{
	return w->durable;
}

void
pcapw_discard(struct pcapw *w)
{
	if (w == NULL)
		return;
	free(w->buf);
	free(w);
}

int
pcapw_free(struct pcapw *w)
{
	int rc;

	if (w == NULL)
		return 0;
	rc = pcapw_flush(w);
	pcapw_discard(w);
	return rc;
}
