/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for shared/pcapfile.c: golden reads of real captures checked against tshark,
 * synthetic pcap/pcapng files that reach every block type and option, hostile inputs,
 * and writer round trips including full-disk and short-write failures.
 *
 * Run from the repository root: test data is opened as "tests/data/...".
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/pcapfile.h"

/* FNV-1a 64 over the captured bytes of every record, in file order. */
#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t
fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Deterministic record content, so that the read side can check every byte. */
static void
fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7);
}

/* ---------------------------------------------------------------------------------
 * Golden captures.
 *
 * Every expected value below comes from Wireshark 4.0.17, not from our reader:
 *   per record:  tshark -r F -t e -T fields -e frame.number -e frame.time_epoch \
 *                       -e frame.len -e frame.cap_len -e frame.interface_id
 *   interfaces:  capinfos -I F   (encapsulation, capture length, name)
 *   hash:        tshark -r F -T ek -x | python3 fnv.py, where fnv.py runs FNV-1a 64
 *                over bytes.fromhex(layers.frame_raw) of every packet in order.
 * Timestamps are frame.time_epoch with its nanosecond digits, as an integer.
 */

struct golden_rec {
	size_t num; /* tshark frame.number, from 1 */
	uint64_t ts_ns;
	uint32_t origlen; /* frame.len */
	uint32_t caplen;  /* frame.cap_len */
	uint32_t iface;
};

struct golden {
	const char *path;
	bool ng;
	bool nano;
	size_t n_ifaces;
	uint32_t linktype[2];
	uint32_t snaplen[2];
	const char *name[2];
	size_t count;
	size_t per_iface[2];
	int end_rc; /* what pcapr_next() returns after the last record */
	uint64_t first_ns;
	uint64_t last_ns;
	uint64_t fnv;
	struct golden_rec rec[3];
};

static const struct golden goldens[] = {
	{
		.path = "tests/data/nanosecond-multi-proto.pcap",
		.nano = true,
		.n_ifaces = 1,
		.linktype = { 1 },
		.snaplen = { 262144 },
		.name = { "if0" },
		.count = 179,
		.per_iface = { 179 },
		.first_ns = 1278472579466743000ull,
		.last_ns = 1278472582723492386ull,
		.fnv = 0x3d27ad629d626415ull,
		.rec = { { 2, 1278472579467465137ull, 66, 66, 0 },
			{ 99, 1278472581323233426ull, 1514, 1514, 0 },
			{ 100, 1278472581323280563ull, 66, 66, 0 } },
	},
	{
		.path = "tests/data/pcapng-multi-interface-dns.pcapng",
		.ng = true,
		.n_ifaces = 2,
		.linktype = { 1, 1 },
		.snaplen = { 262144, 262144 },
		.name = { "eth0", "\\Device\\NPF_{5AE6EDB4-EFF9-46B3-A3C2-EE50C688A9E6}" },
		.count = 6,
		.per_iface = { 2, 4 },
		.first_ns = 1767663089500330493ull,
		.last_ns = 1767663437140942000ull,
		.fnv = 0x51d3fdd0c9934815ull,
		.rec = { { 2, 1767663089514291940ull, 214, 214, 0 }, { 3, 1767663437111897000ull, 70, 70, 1 },
			{ 4, 1767663437126460000ull, 166, 166, 1 } },
	},
	{
		.path = "tests/data/kafka-multi-interface.pcapng",
		.ng = true,
		.n_ifaces = 2,
		.linktype = { 1, 1 },
		.snaplen = { 262144, 262144 },
		.name = { "if0", "lo" },
		.count = 41,
		.per_iface = { 22, 19 },
		.first_ns = 1681844706292198000ull,
		.last_ns = 1703132769960435569ull,
		.fnv = 0x7a25d6cfdd2565ceull,
		.rec = { { 15, 1681878308076966000ull, 514, 514, 0 },
			{ 22, 1681883408373461000ull, 91, 91, 0 },
			{ 23, 1703132756328165530ull, 74, 74, 1 } },
	},
	{
		.path = "tests/data/redis-benchmark-sll.pcap",
		.n_ifaces = 1,
		.linktype = { 113 },
		.snaplen = { 262144 },
		.name = { "if0" },
		.count = 150,
		.per_iface = { 150 },
		.first_ns = 1424744580757048000ull,
		.last_ns = 1424744580763263000ull,
		.fnv = 0xe0b7b3c4c11ca5e9ull,
		.rec = { { 2, 1424744580757078000ull, 76, 76, 0 },
			{ 136, 1424744580762673000ull, 5474, 5474, 0 },
			{ 150, 1424744580763263000ull, 68, 68, 0 } },
	},
	{
		.path = "tests/data/redis-large-bulk-loopback.pcap",
		.n_ifaces = 1,
		.linktype = { 0 },
		.snaplen = { 65535 },
		.name = { "if0" },
		.count = 58,
		.per_iface = { 58 },
		.first_ns = 1776777854353235000ull,
		.last_ns = 1776777881821984000ull,
		.fnv = 0xeda0a360e8c98236ull,
		.rec = { { 2, 1776777854353378000ull, 68, 68, 0 },
			{ 9, 1776777854354504000ull, 16388, 16388, 0 },
			{ 58, 1776777881821984000ull, 56, 56, 0 } },
	},
	{
		.path = "tests/data/malformed-truncated-tcp-headers.pcap",
		.n_ifaces = 1,
		.linktype = { 1 },
		.snaplen = { 68 },
		.name = { "if0" },
		.count = 24,
		.per_iface = { 24 },
		.first_ns = 1103139821634774000ull,
		.last_ns = 1103139823145958000ull,
		.fnv = 0xd5e4d98cf5749f6eull,
		.rec = { { 1, 1103139821634774000ull, 74, 68, 0 }, { 2, 1103139821635001000ull, 60, 58, 0 },
			{ 24, 1103139823145958000ull, 60, 54, 0 } },
	},
	{
		/*
		 * head -c 4298 dns-udp-queries.pcap: record 38 (99 bytes from offset 4239)
		 * is cut 59 bytes in. tshark and capinfos read 37 packets and report the
		 * file "cut short in the middle of a packet".
		 */
		.path = "tests/data/cut-mid-record.pcap",
		.n_ifaces = 1,
		.linktype = { 1 },
		.snaplen = { 65535 },
		.name = { "if0" },
		.count = 37,
		.per_iface = { 37 },
		.end_rc = PCAPF_ETRUNC,
		.first_ns = 1112172466496046000ull,
		.last_ns = 1112172745357346000ull,
		.fnv = 0x27952a197ccfdaafull,
		.rec = { { 2, 1112172466496576000ull, 98, 98, 0 }, { 4, 1112172471333401000ull, 298, 298, 0 },
			{ 37, 1112172745357346000ull, 83, 83, 0 } },
	},
};

static void
check_golden(const struct golden *g)
{
	struct pcapf_rec rec;
	struct pcapr *r;
	size_t n = 0, per_iface[2] = { 0, 0 };
	uint64_t h = FNV_INIT, first = 0, last = 0;
	int err = 1, rc;

	r = pcapr_open(g->path, &err);
	if (r == NULL)
		fail_msg("%s: %s", g->path, pcapf_strerror(err));
	assert_int_equal(err, 0);
	assert_int_equal(pcapr_is_pcapng(r), g->ng);
	assert_int_equal(pcapr_is_nano(r), g->nano);
	assert_int_equal(pcapr_iface_count(r), g->n_ifaces);
	for (size_t i = 0; i < g->n_ifaces; i++) {
		const struct pcapf_iface *ifc = pcapr_iface(r, i);
		assert_non_null(ifc);
		assert_int_equal(ifc->linktype, g->linktype[i]);
		assert_int_equal(ifc->snaplen, g->snaplen[i]);
		assert_string_equal(ifc->name, g->name[i]);
	}
	assert_null(pcapr_iface(r, g->n_ifaces));

	while ((rc = pcapr_next(r, &rec)) == 1) {
		n++;
		assert_true(rec.caplen <= rec.origlen);
		assert_true(rec.iface < g->n_ifaces);
		per_iface[rec.iface]++;
		h = fnv1a(h, rec.data, rec.caplen);
		if (n == 1)
			first = rec.ts_ns;
		last = rec.ts_ns;
		for (size_t k = 0; k < 3; k++) {
			const struct golden_rec *e = &g->rec[k];
			if (e->num != n)
				continue;
			assert_int_equal(rec.ts_ns, e->ts_ns);
			assert_int_equal(rec.origlen, e->origlen);
			assert_int_equal(rec.caplen, e->caplen);
			assert_int_equal(rec.iface, e->iface);
		}
	}
	assert_int_equal(rc, g->end_rc);
	/* End of file and errors are sticky. */
	assert_int_equal(pcapr_next(r, &rec), g->end_rc);
	assert_int_equal(n, g->count);
	assert_int_equal(per_iface[0], g->per_iface[0]);
	assert_int_equal(per_iface[1], g->per_iface[1]);
	assert_int_equal(first, g->first_ns);
	assert_int_equal(last, g->last_ns);
	assert_int_equal(h, g->fnv);
	pcapr_close(r);
}

static void
test_golden_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++)
		check_golden(&goldens[i]);
}

/* The offset of a clean classic file ends at its size; a cut one stops before the
 * incomplete record. */
static void
test_offsets(void **state)
{
	struct pcapf_rec rec;
	struct pcapr *r;
	int err;

	(void)state;
	r = pcapr_open("tests/data/malformed-truncated-tcp-headers.pcap", &err);
	assert_non_null(r);
	assert_int_equal(pcapr_offset(r), 24);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(pcapr_offset(r), 24 + 16 + 68);
	while (pcapr_next(r, &rec) == 1)
		;
	assert_int_equal(pcapr_offset(r), 1722);
	pcapr_close(r);

	r = pcapr_open("tests/data/cut-mid-record.pcap", &err);
	assert_non_null(r);
	while (pcapr_next(r, &rec) == 1)
		;
	assert_int_equal(pcapr_offset(r), 4239);
	pcapr_close(r);
}

/* ---------------------------------------------------------------------------------
 * Builders for synthetic files, in either byte order.
 */

struct fbuf {
	uint8_t *d;
	size_t n;
	size_t cap;
	bool be;
};

static void
fb_init(struct fbuf *b)
{
	b->cap = 1 << 20;
	b->d = calloc(1, b->cap);
	assert_non_null(b->d);
	b->n = 0;
	b->be = false;
}

static void
fb_u8(struct fbuf *b, uint8_t v)
{
	assert_true(b->n < b->cap);
	b->d[b->n++] = v;
}

static void
fb_uint(struct fbuf *b, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned shift = b->be ? 8 * (bytes - 1 - i) : 8 * i;
		fb_u8(b, (uint8_t)(v >> shift));
	}
}

static void
fb_u16(struct fbuf *b, uint16_t v)
{
	fb_uint(b, v, 2);
}

static void
fb_u32(struct fbuf *b, uint32_t v)
{
	fb_uint(b, v, 4);
}

static void
fb_u64(struct fbuf *b, uint64_t v)
{
	fb_uint(b, v, 8);
}

static void
fb_pad(struct fbuf *b)
{
	while (b->n % 4 != 0)
		fb_u8(b, 0);
}

static void
fb_bytes(struct fbuf *b, const void *p, size_t n)
{
	assert_true(n <= b->cap - b->n);
	if (n != 0)
		memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void
fb_patch32(struct fbuf *b, size_t at, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		b->d[at + i] = (uint8_t)(v >> (b->be ? 8 * (3 - i) : 8 * i));
}

static size_t
ng_begin(struct fbuf *b, uint32_t type)
{
	size_t at = b->n;

	fb_u32(b, type);
	fb_u32(b, 0);
	return at;
}

static void
ng_end(struct fbuf *b, size_t at)
{
	uint32_t total;

	fb_pad(b);
	total = (uint32_t)(b->n - at + 4);
	fb_u32(b, total);
	fb_patch32(b, at + 4, total);
}

static void
ng_opt(struct fbuf *b, uint16_t code, const void *val, uint16_t len)
{
	fb_u16(b, code);
	fb_u16(b, len);
	fb_bytes(b, val, len);
	fb_pad(b);
}

static void
ng_shb(struct fbuf *b, bool be)
{
	size_t at;

	b->be = be;
	at = ng_begin(b, 0x0a0d0d0a);
	fb_u32(b, 0x1a2b3c4d);
	fb_u16(b, 1);
	fb_u16(b, 0);
	fb_u64(b, UINT64_MAX); /* section length not given */
	ng_end(b, at);
}

#define NO_TSRESOL (-1)

static void
ng_idb(struct fbuf *b, uint16_t link, uint32_t snaplen, int tsresol, int64_t tsoffset, const char *name)
{
	size_t at = ng_begin(b, 1);

	fb_u16(b, link);
	fb_u16(b, 0);
	fb_u32(b, snaplen);
	if (name != NULL)
		ng_opt(b, 2, name, (uint16_t)strlen(name));
	if (tsresol != NO_TSRESOL) {
		uint8_t v = (uint8_t)tsresol;
		ng_opt(b, 9, &v, 1);
	}
	if (tsoffset != 0) {
		fb_u16(b, 14);
		fb_u16(b, 8);
		fb_u64(b, (uint64_t)tsoffset);
	}
	if (name != NULL || tsresol != NO_TSRESOL || tsoffset != 0)
		fb_u32(b, 0); /* opt_endofopt */
	ng_end(b, at);
}

static void
ng_epb(struct fbuf *b, uint32_t id, uint64_t ticks, const uint8_t *data, uint32_t caplen, uint32_t origlen)
{
	size_t at = ng_begin(b, 6);

	fb_u32(b, id);
	fb_u32(b, (uint32_t)(ticks >> 32));
	fb_u32(b, (uint32_t)ticks);
	fb_u32(b, caplen);
	fb_u32(b, origlen);
	fb_bytes(b, data, caplen);
	fb_pad(b);
	ng_end(b, at);
}

static const uint8_t payload[64] = {
	0x00,
	0x11,
	0x22,
	0x33,
	0x44,
	0x55,
	0x66,
	0x77,
	0x88,
	0x99,
	0xaa,
	0xbb,
	0xcc,
	0xdd,
	0xee,
	0xff,
	0x01,
	0x02,
	0x03,
	0x04,
	0x05,
	0x06,
	0x07,
	0x08,
	0x09,
	0x0a,
	0x0b,
	0x0c,
	0x0d,
	0x0e,
	0x0f,
	0x10,
	0x20,
	0x30,
	0x40,
	0x50,
	0x60,
	0x70,
	0x80,
};

static struct pcapr *
open_buf(const struct fbuf *b, int expect_err)
{
	int err = 12345;
	struct pcapr *r = pcapr_open_mem(b->d, b->n, &err);

	assert_int_equal(err, expect_err);
	if (expect_err != 0)
		assert_null(r);
	else
		assert_non_null(r);
	return r;
}

/* ---------------------------------------------------------------------------------
 * Synthetic pcapng: every packet block type, options, several sections.
 */

static void
test_pcapng_sections_and_blocks(void **state)
{
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;
	const struct pcapf_iface *ifc;
	uint8_t spb[1500];
	size_t at;

	(void)state;
	fb_init(&b);

	/* Section 1, big-endian: milliseconds with a +100 s offset, and 2^-10 s. */
	ng_shb(&b, true);
	ng_idb(&b, 1, 1500, 3, 100,
		"eth\x01"
		"0");
	ng_idb(&b, 101, 0, 0x8a, 0, NULL);
	/* A Name Resolution Block, an Interface Statistics Block, a custom block. */
	at = ng_begin(&b, 4);
	fb_u16(&b, 0);
	fb_u16(&b, 0);
	ng_end(&b, at);
	at = ng_begin(&b, 5);
	fb_u32(&b, 0);
	fb_u64(&b, 0);
	ng_end(&b, at);
	at = ng_begin(&b, 0x00000bad);
	fb_u32(&b, 32473);
	fb_bytes(&b, "xyz", 3);
	ng_end(&b, at);
	ng_epb(&b, 0, 1234567, payload, 10, 60);
	ng_epb(&b, 1, 3 * 1024 + 1, payload, 20, 20);

	/* Simple Packet Block: caplen is min(origlen, snaplen, block space). */
	fill(spb, sizeof(spb), 3);
	at = ng_begin(&b, 3);
	fb_u32(&b, 2000);
	fb_bytes(&b, spb, sizeof(spb));
	ng_end(&b, at);
	at = ng_begin(&b, 3);
	fb_u32(&b, 7);
	fb_bytes(&b, payload, 8);
	ng_end(&b, at);

	/* Obsolete Packet Block with a 16-bit interface id, and an EPB with options. */
	at = ng_begin(&b, 2);
	fb_u16(&b, 1);
	fb_u16(&b, 0);
	fb_u32(&b, 0);
	fb_u32(&b, 2048);
	fb_u32(&b, 5);
	fb_u32(&b, 9);
	fb_bytes(&b, payload, 5);
	fb_pad(&b);
	ng_end(&b, at);
	at = ng_begin(&b, 6);
	fb_u32(&b, 0);
	fb_u32(&b, 1);
	fb_u32(&b, 1);
	fb_u32(&b, 3);
	fb_u32(&b, 3);
	fb_bytes(&b, payload, 3);
	fb_pad(&b);
	ng_opt(&b, 1, "comment", 7);
	fb_u32(&b, 0);
	ng_end(&b, at);

	/* Section 2, little-endian: picoseconds, nanoseconds with a negative offset. */
	ng_shb(&b, false);
	ng_idb(&b, 113, 65535, 12, 0, "any");
	ng_idb(&b, 1, 65535, 9, -5, NULL);
	ng_epb(&b, 0, 1700000000123456789ull, payload, 64, 64);
	ng_epb(&b, 1, 4000000000ull, payload, 1, 1);
	ng_epb(&b, 1, 5000000001ull, payload, 1, 1);

	/* Section 3 has no interfaces of its own. */
	ng_shb(&b, true);

	r = open_buf(&b, 0);
	assert_true(pcapr_is_pcapng(r));
	assert_false(pcapr_is_nano(r));
	assert_int_equal(pcapr_iface_count(r), 4);
	ifc = pcapr_iface(r, 0);
	assert_int_equal(ifc->linktype, 1);
	assert_int_equal(ifc->snaplen, 1500);
	assert_string_equal(ifc->name, "eth?0");
	ifc = pcapr_iface(r, 1);
	assert_int_equal(ifc->linktype, 101);
	assert_string_equal(ifc->name, "if1");
	ifc = pcapr_iface(r, 2);
	assert_int_equal(ifc->linktype, 113);
	assert_string_equal(ifc->name, "any");
	assert_string_equal(pcapr_iface(r, 3)->name, "if3");

	/* 1234567 ms + 100 s. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 0);
	assert_int_equal(rec.ts_ns, 1334567000000ull);
	assert_int_equal(rec.caplen, 10);
	assert_int_equal(rec.origlen, 60);
	assert_memory_equal(rec.data, payload, 10);

	/* 3 + 1/1024 s = 3.0009765625 s, rounded down to whole ns. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 1);
	assert_int_equal(rec.ts_ns, 3000976562ull);
	assert_int_equal(rec.caplen, 20);

	/* SPB: snaplen 1500 < origlen 2000. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 0);
	assert_int_equal(rec.ts_ns, 0);
	assert_int_equal(rec.caplen, 1500);
	assert_int_equal(rec.origlen, 2000);
	assert_memory_equal(rec.data, spb, 1500);
	/* SPB: origlen 7 in an 8-byte padded body. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.caplen, 7);
	assert_int_equal(rec.origlen, 7);

	/* Packet Block on interface 1: 2048 ticks of 2^-10 s = 2 s. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 1);
	assert_int_equal(rec.ts_ns, 2000000000ull);
	assert_int_equal(rec.caplen, 5);
	assert_int_equal(rec.origlen, 9);

	/* EPB whose 64-bit timestamp needs the high word: 2^32 + 1 ms + 100 s. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.ts_ns, ((1ull << 32) + 1) * 1000000ull + 100000000000ull);
	assert_int_equal(rec.caplen, 3);

	/* Section 2 maps its local interfaces 0 and 1 to global 2 and 3. */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 2);
	assert_int_equal(rec.ts_ns, 1700000000123456ull); /* ps -> ns, rounded down */
	assert_int_equal(rec.caplen, 64);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 3);
	assert_int_equal(rec.ts_ns, 0); /* 4 s - 5 s clamps at the epoch */
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 3);
	assert_int_equal(rec.ts_ns, 1); /* 5 s + 1 ns - 5 s */

	assert_int_equal(pcapr_next(r, &rec), 0);
	assert_int_equal(pcapr_offset(r), b.n);
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);
	free(b.d);
}

/*
 * An SPB whose block is shorter than min(origlen, snaplen) is off the spec (Wireshark
 * refuses the file); we return what the block holds, as a record cut by the snaplen.
 */
static void
test_pcapng_spb_short_block(void **state)
{
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;
	size_t at;

	(void)state;
	fb_init(&b);
	ng_shb(&b, true);
	ng_idb(&b, 1, 1500, NO_TSRESOL, 0, NULL);
	at = ng_begin(&b, 3);
	fb_u32(&b, 2000);
	fb_bytes(&b, payload, 64);
	ng_end(&b, at);
	r = open_buf(&b, 0);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.caplen, 64);
	assert_int_equal(rec.origlen, 2000);
	assert_memory_equal(rec.data, payload, 64);
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);
	free(b.d);
}

/* Exact conversion of extreme resolutions and clamping of extreme values. */
static void
test_pcapng_timestamp_extremes(void **state)
{
	static const struct {
		int tsresol;
		int64_t offset;
		uint64_t ticks;
		uint64_t ns;
	} cases[] = {
		{ 0, 0, 1700000000ull, 1700000000000000000ull }, /* seconds */
		{ 0, 0, UINT64_MAX, UINT64_MAX },                /* clamped */
		{ 6, INT64_MIN, UINT64_MAX, 0 },                 /* clamped at 0 */
		{ 6, INT64_MAX, 0, UINT64_MAX }, { 9, 0, UINT64_MAX, UINT64_MAX },
		{ 10, 0, 15, 1 },         /* 1.5 ns -> 1 */
		{ 28, 0, UINT64_MAX, 1 }, /* 10^-28 s ticks */
		{ 29, 0, UINT64_MAX, 0 }, { 127, 0, UINT64_MAX, 0 }, { 0x80, 0, 3, 3000000000ull }, /* 2^0 */
		{ 0x80 | 30, 0, 1ull << 30, 1000000000ull }, { 0x80 | 30, 0, 1, 0 }, /* 0.93 ns */
		{ 0x80 | 30, 0, 2, 1 },                                              /* 1.86 ns */
		{ 0x80 | 64, 0, UINT64_MAX, 999999999ull },                          /* just under 1 s */
		{ 0x80 | 127, 0, UINT64_MAX, 0 },
		{ NO_TSRESOL, 0, 1500000, 1500000000ull }, /* default: microseconds */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fbuf b;
		struct pcapf_rec rec;
		struct pcapr *r;

		fb_init(&b);
		ng_shb(&b, (i & 1) != 0);
		ng_idb(&b, 1, 0, cases[i].tsresol, cases[i].offset, NULL);
		ng_epb(&b, 0, cases[i].ticks, payload, 1, 1);
		r = open_buf(&b, 0);
		assert_int_equal(pcapr_next(r, &rec), 1);
		if (rec.ts_ns != cases[i].ns)
			fail_msg("case %zu: got %llu want %llu", i, (unsigned long long)rec.ts_ns,
				(unsigned long long)cases[i].ns);
		pcapr_close(r);
		free(b.d);
	}
}

/* ---------------------------------------------------------------------------------
 * Synthetic classic pcap.
 */

static void
pcap_hdr(struct fbuf *b, bool be, uint32_t magic, uint16_t major, uint32_t snaplen, uint32_t link)
{
	b->be = be;
	fb_u32(b, magic);
	fb_u16(b, major);
	fb_u16(b, 4);
	fb_u32(b, 0);
	fb_u32(b, 0);
	fb_u32(b, snaplen);
	fb_u32(b, link);
}

static void
pcap_rec(struct fbuf *b, uint32_t sec, uint32_t sub, uint32_t caplen, uint32_t origlen, const uint8_t *data)
{
	fb_u32(b, sec);
	fb_u32(b, sub);
	fb_u32(b, caplen);
	fb_u32(b, origlen);
	fb_bytes(b, data, data != NULL ? caplen : 0);
}

static void
test_classic_byte_orders(void **state)
{
	static const struct {
		bool be;
		uint32_t magic;
		bool nano;
	} v[] = {
		{ false, 0xa1b2c3d4, false },
		{ true, 0xa1b2c3d4, false },
		{ false, 0xa1b23c4d, true },
		{ true, 0xa1b23c4d, true },
	};

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		struct fbuf b;
		struct pcapf_rec rec;
		struct pcapr *r;

		fb_init(&b);
		/* FCS flag and length in the upper bits must not leak into the linktype. */
		pcap_hdr(&b, v[i].be, v[i].magic, 2, 96, 0x14000000u | 105);
		pcap_rec(&b, UINT32_MAX, 999999, 40, 1000, payload);
		pcap_rec(&b, 1, 0, 0, 0, NULL);
		r = open_buf(&b, 0);
		assert_false(pcapr_is_pcapng(r));
		assert_int_equal(pcapr_is_nano(r), v[i].nano);
		assert_int_equal(pcapr_iface_count(r), 1);
		assert_int_equal(pcapr_iface(r, 0)->linktype, 105);
		assert_int_equal(pcapr_iface(r, 0)->snaplen, 96);
		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_int_equal(
			rec.ts_ns, UINT32_MAX * 1000000000ull + (v[i].nano ? 999999ull : 999999000ull));
		assert_int_equal(rec.caplen, 40);
		assert_int_equal(rec.origlen, 1000);
		assert_memory_equal(rec.data, payload, 40);
		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_int_equal(rec.ts_ns, 1000000000ull);
		assert_int_equal(rec.caplen, 0);
		assert_int_equal(pcapr_next(r, &rec), 0);
		pcapr_close(r);
		free(b.d);
	}
}

/* ---------------------------------------------------------------------------------
 * Hostile inputs.
 */

static void
test_bad_magic_and_short_files(void **state)
{
	static const uint8_t le_us[] = { 0xd4, 0xc3, 0xb2, 0xa1 };
	static const uint8_t ng[] = { 0x0a, 0x0d, 0x0d, 0x0a };
	struct fbuf b;
	int err;

	(void)state;
	assert_null(pcapr_open_mem(NULL, 0, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	assert_null(pcapr_open_mem("", 0, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	assert_null(pcapr_open_mem(le_us, 3, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	assert_null(pcapr_open_mem(ng, 2, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	assert_null(pcapr_open_mem("GI", 2, &err));
	assert_int_equal(err, PCAPF_EFORMAT);
	assert_null(pcapr_open_mem("GIF89a, not a capture", 21, &err));
	assert_int_equal(err, PCAPF_EFORMAT);
	assert_null(pcapr_open_mem(NULL, 5, &err));
	assert_int_equal(err, -EINVAL);

	/* A classic header cut short, then one of an archaic version. */
	fb_init(&b);
	pcap_hdr(&b, false, 0xa1b2c3d4, 2, 65535, 1);
	assert_null(pcapr_open_mem(b.d, 20, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	b.n = 0;
	pcap_hdr(&b, false, 0xa1b2c3d4, 1, 65535, 1);
	open_buf(&b, PCAPF_EFORMAT);

	/* Modified (Kuznetzov) pcap and byte-swapped garbage are not ours. */
	b.n = 0;
	pcap_hdr(&b, false, 0xa1b2cd34, 2, 65535, 1);
	open_buf(&b, PCAPF_EFORMAT);
	free(b.d);

	/* A NULL err pointer is allowed. */
	assert_null(pcapr_open_mem("xxxxxxxx", 8, NULL));
}

static void
test_classic_huge_and_cut_records(void **state)
{
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;

	(void)state;
	fb_init(&b);
	pcap_hdr(&b, true, 0xa1b2c3d4, 2, 65535, 1);
	pcap_rec(&b, 1, 2, 4, 4, payload);
	pcap_rec(&b, 1, 2, 0x7fffffff, 0x7fffffff, NULL);
	fb_bytes(&b, payload, 64);
	r = open_buf(&b, 0);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(pcapr_next(r, &rec), PCAPF_ETOOBIG);
	assert_int_equal(pcapr_next(r, &rec), PCAPF_ETOOBIG);
	pcapr_close(r);

	/* PCAPF_MAX_CAPLEN itself is allowed, one more is not. */
	b.n = 0;
	pcap_hdr(&b, false, 0xa1b2c3d4, 2, 65535, 1);
	pcap_rec(&b, 1, 2, PCAPF_MAX_CAPLEN, PCAPF_MAX_CAPLEN, NULL);
	b.n += PCAPF_MAX_CAPLEN;
	pcap_rec(&b, 1, 2, PCAPF_MAX_CAPLEN + 1, PCAPF_MAX_CAPLEN + 1, NULL);
	b.n += PCAPF_MAX_CAPLEN + 1;
	r = open_buf(&b, 0);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.caplen, PCAPF_MAX_CAPLEN);
	assert_int_equal(pcapr_next(r, &rec), PCAPF_ETOOBIG);
	pcapr_close(r);

	/* Cut inside a record header and inside record data. */
	b.n = 0;
	pcap_hdr(&b, false, 0xa1b2c3d4, 2, 65535, 1);
	pcap_rec(&b, 1, 2, 30, 30, payload);
	pcap_rec(&b, 1, 2, 30, 30, payload);
	for (size_t cut = 24 + 46 + 1; cut < b.n; cut++) {
		r = pcapr_open_mem(b.d, cut, NULL);
		assert_non_null(r);
		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_int_equal(pcapr_next(r, &rec), PCAPF_ETRUNC);
		assert_int_equal(pcapr_offset(r), 24 + 46);
		pcapr_close(r);
	}
	free(b.d);
}

/*
 * Before version 2.3 the original length came first in a record header. libpcap and
 * Wireshark exchange the two fields of every record of a 2.0-2.2 file, and those of a
 * 2.3 record whose captured length exceeds its original length (checked with tcpdump
 * and tshark on such files: 60 bytes captured of 100, and a 2.2 record in 2.4 order is
 * unreadable to both). Each minor version, both byte orders.
 */
static void
test_classic_old_versions_swapped_lengths(void **state)
{
	static const struct {
		uint16_t minor;
		uint32_t f1, f2; /* the two length fields as written */
		uint32_t caplen, origlen;
	} v[] = {
		{ 0, 100, 30, 30, 100 },
		{ 1, 100, 30, 30, 100 },
		{ 2, 100, 30, 30, 100 },
		{ 2, 30, 30, 30, 30 },
		{ 3, 100, 30, 30, 100 },
		{ 3, 30, 100, 30, 100 }, /* 2.3 in the 2.4 order: kept */
		{ 4, 30, 100, 30, 100 },
	};
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (int be = 0; be < 2; be++) {
			fb_init(&b);
			pcap_hdr(&b, be != 0, 0xa1b2c3d4, 2, 65535, 1);
			b.n -= 18; /* rewrite the minor version */
			fb_u16(&b, v[i].minor);
			b.n += 16;
			for (unsigned k = 0; k < 2; k++) {
				fb_u32(&b, 1700000000 + k);
				fb_u32(&b, 5);
				fb_u32(&b, v[i].f1);
				fb_u32(&b, v[i].f2);
				fb_bytes(&b, payload, v[i].caplen);
			}
			r = open_buf(&b, 0);
			for (unsigned k = 0; k < 2; k++) {
				assert_int_equal(pcapr_next(r, &rec), 1);
				assert_int_equal(rec.caplen, v[i].caplen);
				assert_int_equal(rec.origlen, v[i].origlen);
				assert_int_equal(rec.ts_ns, (1700000000ull + k) * 1000000000ull + 5000);
				assert_memory_equal(rec.data, payload, v[i].caplen);
			}
			assert_int_equal(pcapr_next(r, &rec), 0);
			pcapr_close(r);
			free(b.d);
		}
	}
}

static void
test_pcapng_shb_only(void **state)
{
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;

	(void)state;
	for (int be = 0; be < 2; be++) {
		fb_init(&b);
		ng_shb(&b, be != 0);
		r = open_buf(&b, 0);
		assert_true(pcapr_is_pcapng(r));
		assert_int_equal(pcapr_iface_count(r), 0);
		assert_null(pcapr_iface(r, 0));
		assert_int_equal(pcapr_next(r, &rec), 0);
		assert_int_equal(pcapr_offset(r), 28);
		pcapr_close(r);
		free(b.d);
	}
}

static void
test_pcapng_bad_shb(void **state)
{
	struct fbuf b;

	(void)state;
	fb_init(&b);
	ng_shb(&b, false);
	/* Byte-order magic that is neither order. */
	b.d[8] = 0x12;
	open_buf(&b, PCAPF_EFORMAT);
	/* Major version 2 does not exist. */
	b.n = 0;
	ng_shb(&b, true);
	b.d[13] = 2;
	open_buf(&b, PCAPF_EFORMAT);
	/* Length not a multiple of 4 in the first block. */
	b.n = 0;
	ng_shb(&b, false);
	b.d[4] = 30;
	open_buf(&b, PCAPF_EFORMAT);
	/* An SHB too short for its fixed fields. */
	b.n = 0;
	b.be = false;
	fb_u32(&b, 0x0a0d0d0a);
	fb_u32(&b, 24);
	fb_u32(&b, 0x1a2b3c4d);
	fb_u32(&b, 1);
	fb_u32(&b, 0);
	fb_u32(&b, 24);
	open_buf(&b, PCAPF_EFORMAT);
	/* A first SHB cut short. */
	b.n = 0;
	ng_shb(&b, false);
	b.n = 20;
	open_buf(&b, PCAPF_ETRUNC);
	b.n = 8;
	open_buf(&b, PCAPF_ETRUNC);
	free(b.d);
}

/* Builds SHB + IDB + one good EPB, then lets the caller append a bad block. */
static void
ng_good_start(struct fbuf *b, bool be)
{
	fb_init(b);
	ng_shb(b, be);
	ng_idb(b, 1, 65535, NO_TSRESOL, 0, NULL);
	ng_epb(b, 0, 1, payload, 8, 8);
}

/* Opens b, expects one good record and then err, sticky. */
static void
expect_one_then(struct fbuf *b, int err)
{
	struct pcapf_rec rec;
	struct pcapr *r = open_buf(b, 0);

	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(pcapr_next(r, &rec), err);
	assert_int_equal(pcapr_next(r, &rec), err);
	pcapr_close(r);
}

static void
test_pcapng_bad_block_framing(void **state)
{
	struct fbuf b;
	size_t at;

	(void)state;
	for (int be = 0; be < 2; be++) {
		/* Total length not a multiple of 4. */
		ng_good_start(&b, be);
		at = b.n;
		ng_epb(&b, 0, 1, payload, 8, 8);
		fb_patch32(&b, at + 4, 30);
		expect_one_then(&b, PCAPF_EFORMAT);
		free(b.d);

		/* Total length below the 12-byte minimum. */
		ng_good_start(&b, be);
		at = b.n;
		ng_epb(&b, 0, 1, payload, 8, 8);
		fb_patch32(&b, at + 4, 8);
		expect_one_then(&b, PCAPF_EFORMAT);
		free(b.d);

		/* Trailing length differs from the leading one. */
		ng_good_start(&b, be);
		ng_epb(&b, 0, 1, payload, 8, 8);
		fb_patch32(&b, b.n - 4, 36);
		expect_one_then(&b, PCAPF_EFORMAT);
		free(b.d);

		/* A length past the end of the file is a cut file... */
		ng_good_start(&b, be);
		at = b.n;
		ng_epb(&b, 0, 1, payload, 8, 8);
		fb_patch32(&b, at + 4, 4096);
		expect_one_then(&b, PCAPF_ETRUNC);
		free(b.d);

		/* ...but an absurd one is reported as too big. */
		ng_good_start(&b, be);
		at = b.n;
		ng_epb(&b, 0, 1, payload, 8, 8);
		fb_patch32(&b, at + 4, 0xfffffff0u);
		expect_one_then(&b, PCAPF_ETOOBIG);
		free(b.d);

		/* Fewer than 12 bytes left after the last block. */
		ng_good_start(&b, be);
		fb_u32(&b, 6);
		fb_u32(&b, 32);
		expect_one_then(&b, PCAPF_ETRUNC);
		free(b.d);
	}
}

static void
test_pcapng_bad_packet_blocks(void **state)
{
	struct fbuf b;
	size_t at;

	(void)state;
	/* EPB naming an interface the section does not have. */
	ng_good_start(&b, false);
	ng_epb(&b, 1, 1, payload, 8, 8);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* EPB caplen above PCAPF_MAX_CAPLEN. */
	ng_good_start(&b, true);
	at = b.n;
	ng_epb(&b, 0, 1, payload, 8, 8);
	fb_patch32(&b, at + 20, PCAPF_MAX_CAPLEN + 1);
	expect_one_then(&b, PCAPF_ETOOBIG);
	free(b.d);

	/* EPB caplen larger than its block. */
	ng_good_start(&b, false);
	at = b.n;
	ng_epb(&b, 0, 1, payload, 8, 8);
	fb_patch32(&b, at + 20, 9);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* EPB too short for its fixed fields. */
	ng_good_start(&b, false);
	at = ng_begin(&b, 6);
	fb_u32(&b, 0);
	fb_u32(&b, 0);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* Obsolete Packet Block and SPB too short for their fixed fields. */
	ng_good_start(&b, true);
	at = ng_begin(&b, 2);
	fb_u32(&b, 0);
	fb_u32(&b, 0);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);
	ng_good_start(&b, false);
	at = ng_begin(&b, 3);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* An SPB holding more than PCAPF_MAX_CAPLEN bytes, with no snaplen to cut it. */
	fb_init(&b);
	ng_shb(&b, false);
	ng_idb(&b, 1, 0, NO_TSRESOL, 0, NULL);
	ng_epb(&b, 0, 1, payload, 8, 8);
	at = ng_begin(&b, 3);
	fb_u32(&b, UINT32_MAX);
	b.n += PCAPF_MAX_CAPLEN + 4;
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_ETOOBIG);
	free(b.d);

	/* SPB in a section without interfaces: the second section's. */
	ng_good_start(&b, false);
	ng_shb(&b, true);
	at = ng_begin(&b, 3);
	fb_u32(&b, 4);
	fb_u32(&b, 0);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* A later section cannot use an earlier section's interfaces. */
	ng_good_start(&b, false);
	ng_idb(&b, 1, 65535, NO_TSRESOL, 0, NULL);
	ng_shb(&b, false);
	ng_idb(&b, 1, 65535, NO_TSRESOL, 0, NULL);
	ng_epb(&b, 1, 1, payload, 8, 8);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* An EPB may not use an interface described only after it. */
	ng_good_start(&b, false);
	ng_epb(&b, 1, 1, payload, 8, 8);
	ng_idb(&b, 1, 65535, NO_TSRESOL, 0, NULL);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);
}

static void
test_pcapng_bad_idb(void **state)
{
	struct fbuf b;
	size_t at;

	(void)state;
	/* An option whose length runs past the block. */
	ng_good_start(&b, false);
	at = ng_begin(&b, 1);
	fb_u32(&b, 1);
	fb_u32(&b, 0);
	fb_u16(&b, 2);
	fb_u16(&b, 200);
	fb_u32(&b, 0);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* if_tsresol and if_tsoffset of the wrong length. */
	ng_good_start(&b, true);
	at = ng_begin(&b, 1);
	fb_u32(&b, 1);
	fb_u32(&b, 0);
	ng_opt(&b, 9, "\x06\x06", 2);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);
	ng_good_start(&b, false);
	at = ng_begin(&b, 1);
	fb_u32(&b, 1);
	fb_u32(&b, 0);
	ng_opt(&b, 14, "1234", 4);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* An IDB too short for linktype and snaplen. */
	ng_good_start(&b, false);
	at = ng_begin(&b, 1);
	fb_u32(&b, 1);
	ng_end(&b, at);
	expect_one_then(&b, PCAPF_EFORMAT);
	free(b.d);

	/* A long name is cut to 64 bytes. */
	{
		char name[100];
		struct pcapr *r;

		memset(name, 'n', sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		fb_init(&b);
		ng_shb(&b, false);
		ng_idb(&b, 1, 0, NO_TSRESOL, 0, name);
		r = open_buf(&b, 0);
		assert_int_equal(strlen(pcapr_iface(r, 0)->name), 64);
		pcapr_close(r);
		free(b.d);
	}
}

static void
test_pcapng_iface_limit(void **state)
{
	struct fbuf b;
	struct pcapf_rec rec;
	struct pcapr *r;

	(void)state;
	/* Exactly PCAPF_MAX_IFACES over two sections is fine... */
	fb_init(&b);
	ng_shb(&b, false);
	for (int i = 0; i < 40; i++)
		ng_idb(&b, 1, 0, NO_TSRESOL, 0, NULL);
	ng_shb(&b, true);
	for (int i = 0; i < PCAPF_MAX_IFACES - 40; i++)
		ng_idb(&b, (uint16_t)i, 0, NO_TSRESOL, 0, NULL);
	ng_epb(&b, PCAPF_MAX_IFACES - 41, 1, payload, 8, 8);
	r = open_buf(&b, 0);
	assert_int_equal(pcapr_iface_count(r), PCAPF_MAX_IFACES);
	assert_string_equal(pcapr_iface(r, 63)->name, "if63");
	assert_int_equal(pcapr_iface(r, 63)->linktype, 23);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.iface, 63);
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);

	/* ...one more, anywhere in the file, is refused at open. */
	ng_idb(&b, 1, 0, NO_TSRESOL, 0, NULL);
	open_buf(&b, PCAPF_EIFACES);
	free(b.d);
}

/* A pcapng file cut anywhere yields its complete records, then PCAPF_ETRUNC. */
static void
test_pcapng_cut_everywhere(void **state)
{
	struct fbuf b;
	size_t ends[4], n_ends = 0, first_rec;

	(void)state;
	fb_init(&b);
	ng_shb(&b, true);
	ng_idb(&b, 1, 65535, 9, 0, "x");
	first_rec = b.n;
	for (int i = 0; i < 3; i++) {
		ng_epb(&b, 0, (uint64_t)i, payload, (uint32_t)(10 + i), 64);
		ends[n_ends++] = b.n;
	}
	for (size_t cut = first_rec; cut <= b.n; cut++) {
		struct pcapf_rec rec;
		struct pcapr *r = pcapr_open_mem(b.d, cut, NULL);
		size_t whole = 0;
		int rc;

		assert_non_null(r);
		for (size_t k = 0; k < n_ends; k++)
			whole += ends[k] <= cut;
		for (size_t k = 0; k < whole; k++) {
			assert_int_equal(pcapr_next(r, &rec), 1);
			assert_int_equal(rec.ts_ns, k);
			assert_int_equal(rec.caplen, 10 + k);
		}
		rc = pcapr_next(r, &rec);
		assert_int_equal(
			rc, (whole > 0 && ends[whole - 1] == cut) || cut == first_rec ? 0 : PCAPF_ETRUNC);
		pcapr_close(r);
	}
	free(b.d);
}

/* ---------------------------------------------------------------------------------
 * pcapr_open() on things that are not capture files.
 */

static void
test_open_errors(void **state)
{
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	int fd, err;

	(void)state;
	assert_null(pcapr_open("tests/data/does-not-exist.pcap", &err));
	assert_int_equal(err, -ENOENT);
	assert_null(pcapr_open("tests/data", &err));
	assert_int_equal(err, -EISDIR);
	assert_null(pcapr_open("/dev/null", &err));
	assert_int_equal(err, -EINVAL);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_null(pcapr_open(path, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	assert_int_equal(write(fd, "\x0a\x0d\x0d\x0a\x1c\x00\x00", 7), 7);
	assert_null(pcapr_open(path, &err));
	assert_int_equal(err, PCAPF_ETRUNC);
	close(fd);
	unlink(path);

	assert_string_equal(pcapf_strerror(-ENOENT), strerror(ENOENT));
	assert_non_null(strstr(pcapf_strerror(PCAPF_ETRUNC), "middle"));
	assert_non_null(pcapf_strerror(PCAPF_EFORMAT));
	assert_non_null(pcapf_strerror(PCAPF_ETOOBIG));
	assert_non_null(pcapf_strerror(PCAPF_EIFACES));
	assert_non_null(pcapf_strerror(-999999));
	assert_non_null(pcapf_strerror(7));
	assert_string_equal(pcapf_strerror(0), "success");
	pcapr_close(NULL);
}

/* ---------------------------------------------------------------------------------
 * Writer.
 */

static int
tmpfile_fd(char *path)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	return fd;
}

static void
test_writer_header_bytes(void **state)
{
	/* What capinfos reports for such a file: nsecpcap, version 2.4, snaplen 1514,
	 * encapsulation 1 (Ethernet); in host byte order, which is little-endian here. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	static const uint8_t want[24] = { 0x4d, 0x3c, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0,
		0, 0xea, 0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 };
#else
	static const uint8_t want[24] = { 0xa1, 0xb2, 0x3c, 0x4d, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0,
		0, 0x00, 0x00, 0x05, 0xea, 0x00, 0x00, 0x00, 0x01 };
#endif
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	uint8_t got[64];
	struct pcapw *w;
	int fd = tmpfile_fd(path);

	(void)state;
	w = pcapw_new(fd, 1, 1514);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	assert_int_equal(pcapw_header(w), -EINVAL); /* only once, at the start */
	assert_int_equal(pcapw_bytes(w), 24);
	assert_int_equal(pcapw_durable_bytes(w), 0);
	assert_int_equal(pcapw_flush(w), 0);
	assert_int_equal(pcapw_durable_bytes(w), 24);
	assert_int_equal(pcapw_free(w), 0);
	assert_int_equal(pread(fd, got, sizeof(got), 0), 24);
	assert_memory_equal(got, want, 24);
	close(fd);
	unlink(path);
}

static void
test_writer_round_trip(void **state)
{
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	int fd = tmpfile_fd(path), err;
	uint8_t *big = malloc(PCAPF_MAX_CAPLEN), *want = malloc(PCAPF_MAX_CAPLEN);
	struct pcapw *w;
	struct pcapr *r;
	struct pcapf_rec rec;
	uint64_t expect_bytes = 24;
	const unsigned n = 3000;

	(void)state;
	assert_non_null(big);
	assert_non_null(want);
	w = pcapw_new(fd, 113, PCAPF_MAX_CAPLEN);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (unsigned i = 0; i < n; i++) {
		/* Mostly small records, with a full-size one (written straight through)
		 * and some mid-size ones to force flushes of a partly full buffer. */
		uint32_t len = i % 1000 == 500 ? PCAPF_MAX_CAPLEN : i % 97 == 0 ? 60000 : i % 1500;
		fill(big, len, i);
		assert_int_equal(pcapw_write(w, 1700000000000000000ull + i * 1001ull, big, len, len + 4), 0);
		expect_bytes += 16 + len;
		assert_int_equal(pcapw_bytes(w), expect_bytes);
		assert_true(pcapw_durable_bytes(w) <= expect_bytes);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);

	r = pcapr_open(path, &err);
	assert_non_null(r);
	assert_true(pcapr_is_nano(r));
	assert_int_equal(pcapr_iface(r, 0)->linktype, 113);
	assert_int_equal(pcapr_iface(r, 0)->snaplen, PCAPF_MAX_CAPLEN);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = i % 1000 == 500 ? PCAPF_MAX_CAPLEN : i % 97 == 0 ? 60000 : i % 1500;
		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_int_equal(rec.ts_ns, 1700000000000000000ull + i * 1001ull);
		assert_int_equal(rec.caplen, len);
		assert_int_equal(rec.origlen, len + 4);
		fill(want, len, i);
		assert_memory_equal(rec.data, want, len);
	}
	assert_int_equal(pcapr_next(r, &rec), 0);
	assert_int_equal(pcapr_offset(r), expect_bytes);
	pcapr_close(r);
	unlink(path);
	free(big);
	free(want);
}

static void
test_writer_snaplen_and_args(void **state)
{
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	int fd = tmpfile_fd(path), err;
	struct pcapw *w;
	struct pcapr *r;
	struct pcapf_rec rec;

	(void)state;
	errno = 0;
	assert_null(pcapw_new(fd, 1, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(pcapw_new(fd, 1, PCAPF_MAX_CAPLEN + 1));
	assert_int_equal(errno, EINVAL);
	assert_null(pcapw_new(-1, 1, 100));
	assert_int_equal(errno, EBADF);
	assert_int_equal(pcapw_free(NULL), 0);

	w = pcapw_new(fd, 1, 32);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	/* Caller mistakes are refused without poisoning the writer. */
	assert_int_equal(pcapw_write(w, 5000000000ull * 1000000000ull, payload, 4, 4), -EOVERFLOW);
	assert_int_equal(pcapw_write(w, 0, NULL, 4, 4), -EINVAL);
	/* Clipped to the snaplen, origlen kept. */
	assert_int_equal(pcapw_write(w, 4294967295999999999ull, payload, 64, 1500), 0);
	assert_int_equal(pcapw_write(w, 0, NULL, 0, 0), 0);
	assert_int_equal(pcapw_bytes(w), 24 + 16 + 32 + 16);
	assert_int_equal(pcapw_free(w), 0);
	close(fd);

	r = pcapr_open(path, &err);
	assert_non_null(r);
	assert_int_equal(pcapr_iface(r, 0)->snaplen, 32);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.ts_ns, 4294967295999999999ull);
	assert_int_equal(rec.caplen, 32);
	assert_int_equal(rec.origlen, 1500);
	assert_memory_equal(rec.data, payload, 32);
	assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(rec.caplen, 0);
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);
	unlink(path);
}

/* /dev/full fails every write with ENOSPC: the error is returned and then sticky. */
static void
test_writer_full_disk(void **state)
{
	int fd = open("/dev/full", O_WRONLY);
	struct pcapw *w;

	(void)state;
	assert_true(fd >= 0);
	w = pcapw_new(fd, 1, 65535);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	assert_int_equal(pcapw_write(w, 1, payload, 64, 64), 0);
	assert_int_equal(pcapw_flush(w), -ENOSPC);
	assert_int_equal(pcapw_write(w, 1, payload, 64, 64), -ENOSPC);
	assert_int_equal(pcapw_header(w), -ENOSPC);
	assert_int_equal(pcapw_flush(w), -ENOSPC);
	assert_int_equal(pcapw_durable_bytes(w), 0);
	assert_int_equal(pcapw_free(w), -ENOSPC);

	/* The same for a record written straight through. */
	w = pcapw_new(fd, 1, PCAPF_MAX_CAPLEN);
	assert_non_null(w);
	{
		uint8_t *big = calloc(1, PCAPF_MAX_CAPLEN);
		assert_non_null(big);
		assert_int_equal(pcapw_write(w, 1, big, PCAPF_MAX_CAPLEN, PCAPF_MAX_CAPLEN), -ENOSPC);
		free(big);
	}
	assert_int_equal(pcapw_write(w, 1, payload, 1, 1), -ENOSPC);
	assert_int_equal(pcapw_free(w), -ENOSPC);
	close(fd);
}

/*
 * A file size limit makes write(2) short and then fail with EFBIG, which is what a
 * disk filling up mid-flush looks like. The file then ends in a partial record;
 * truncating it to pcapw_durable_bytes() must give a clean capture again.
 */
static void
test_writer_short_write_then_truncate(void **state)
{
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	int fd = tmpfile_fd(path), err;
	struct rlimit old, lim;
	struct sigaction sa, old_sa;
	struct pcapw *w;
	struct pcapr *r;
	struct pcapf_rec rec;
	uint8_t data[1000];
	uint64_t durable;
	unsigned i, written = 0;
	int rc = 0;
	struct stat st;

	(void)state;
	fill(data, sizeof(data), 1);
	w = pcapw_new(fd, 1, 65535);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (i = 0; i < 10; i++)
		assert_int_equal(pcapw_write(w, i, data, sizeof(data), sizeof(data)), 0);
	assert_int_equal(pcapw_flush(w), 0);
	durable = pcapw_durable_bytes(w);
	assert_int_equal(durable, 24 + 10 * 1016);
	written = 10;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGXFSZ, &sa, &old_sa), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = durable + 5000;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

	/* Fill more than the buffer so that a flush runs into the limit. */
	for (i = 0; i < 400 && rc == 0; i++) {
		rc = pcapw_write(w, i, data, sizeof(data), sizeof(data));
		if (rc == 0)
			written++;
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(sigaction(SIGXFSZ, &old_sa, NULL), 0);

	assert_int_equal(rc, -EFBIG);
	assert_int_equal(pcapw_write(w, 0, data, 1, 1), -EFBIG);
	assert_int_equal(pcapw_durable_bytes(w), durable);
	assert_int_equal(pcapw_free(w), -EFBIG);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, durable + 5000); /* a partial record is on disk */

	/* Read as it is: a cut file. */
	r = pcapr_open(path, &err);
	assert_non_null(r);
	for (i = 0; i < 10 + 4; i++)
		assert_int_equal(pcapr_next(r, &rec), 1);
	assert_int_equal(pcapr_next(r, &rec), PCAPF_ETRUNC);
	pcapr_close(r);

	/* What the caller is told to do. */
	assert_int_equal(ftruncate(fd, (off_t)durable), 0);
	r = pcapr_open(path, &err);
	assert_non_null(r);
	for (i = 0; i < 10; i++) {
		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_memory_equal(rec.data, data, sizeof(data));
	}
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);
	assert_true(written > 10);
	close(fd);
	unlink(path);
}

/* ---------------------------------------------------------------------------------
 * The sink writer: the same writer handing its bytes to a callback (exports, live
 * outputs) instead of a file descriptor.
 */

struct membuf {
	uint8_t *p;
	size_t len, cap;
	unsigned calls;
	size_t max_chunk;
	unsigned fail_at; /* call number that fails with -EPIPE (0: never) */
};

static int
mem_sink(void *arg, const void *buf, size_t len)
{
	struct membuf *m = arg;

	m->calls++;
	if (m->fail_at != 0 && m->calls >= m->fail_at)
		return -EPIPE;
	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->p = realloc(m->p, m->cap);
		assert_non_null(m->p);
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	if (len > m->max_chunk)
		m->max_chunk = len;
	return 0;
}

static uint32_t
sink_len(unsigned i)
{
	return i % 1000 == 500 ? PCAPF_MAX_CAPLEN : i % 97 == 0 ? 60000 : i % 1500;
}

/* The same records through a file and through a sink: the same bytes. */
static void
test_writer_sink_matches_fd(void **state)
{
	char path[] = "/tmp/test_pcapfile.XXXXXX";
	int fd = tmpfile_fd(path);
	uint8_t *big = malloc(PCAPF_MAX_CAPLEN), *file;
	struct membuf m = { 0 };
	struct pcapw *wf, *ws;
	struct stat st;
	const unsigned n = 2500;

	(void)state;
	assert_non_null(big);
	wf = pcapw_new(fd, 1, PCAPF_MAX_CAPLEN);
	ws = pcapw_new_sink(mem_sink, &m);
	assert_non_null(wf);
	assert_non_null(ws);
	assert_int_equal(pcapw_header(wf), 0);
	assert_int_equal(pcapw_pcap_header(ws, 1, PCAPF_MAX_CAPLEN), 0);
	assert_int_equal(pcapw_pcap_header(ws, 1, PCAPF_MAX_CAPLEN), -EINVAL);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = sink_len(i);

		fill(big, len, i);
		assert_int_equal(pcapw_write(wf, 1700000000000000000ull + i * 7ull, big, len, len + 1), 0);
		assert_int_equal(pcapw_write(ws, 1700000000000000000ull + i * 7ull, big, len, len + 1), 0);
		assert_int_equal(pcapw_bytes(ws), pcapw_bytes(wf));
	}
	assert_int_equal(
		pcapw_write(ws, (uint64_t)UINT32_MAX * 1000000000ull + 1000000000ull, big, 1, 1), -EOVERFLOW);
	assert_int_equal(pcapw_free(wf), 0);
	assert_int_equal(pcapw_flush(ws), 0);
	assert_int_equal(pcapw_durable_bytes(ws), m.len);
	assert_int_equal(pcapw_free(ws), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, m.len);
	file = malloc(m.len);
	assert_non_null(file);
	assert_int_equal(pread(fd, file, m.len, 0), (ssize_t)m.len);
	assert_memory_equal(file, m.p, m.len);
	/* Buffered: a few hundred calls for 100+ MB, none larger than a record. */
	assert_true(m.calls < m.len / 65536 + 64);
	assert_true(m.max_chunk <= 256u * 1024);
	close(fd);
	unlink(path);
	free(file);
	free(m.p);
	free(big);
}

/*
 * pcapng into a sink: the exact bytes of a section and an interface (pcapng sections
 * 4.1 and 4.2), then records on two interfaces that read back with their interface,
 * timestamp and every byte, a full-size one included.
 */
static void
test_writer_sink_pcapng(void **state)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* 8 + 16 (byte-order magic, version 1.0, section length unknown) + 8
	 * (shb_userappl "pl1", padded) + 4 (opt_endofopt) + 4 = 40 bytes. */
	static const uint8_t shb[40] = { 0x0a, 0x0d, 0x0d, 0x0a, 40, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0,
		0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 4, 0, 3, 0, 'p', 'l', '1', 0, 0, 0, 0, 0,
		40, 0, 0, 0 };
	/* The end-of-options marker ends the block: 8 + 8 + 8 (if_name "eth0") +
	 * 8 (if_tsresol 9) + 4 (opt_endofopt) + 4 = 40 bytes. */
	static const uint8_t idb[40] = { 1, 0, 0, 0, 40, 0, 0, 0, 113, 0, 0, 0, 0xdc, 0x05, 0, 0, 2, 0, 4, 0,
		'e', 't', 'h', '0', 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0 };
#endif
	uint8_t *big = malloc(PCAPF_MAX_CAPLEN);
	struct membuf m = { 0 };
	struct pcapw *w = pcapw_new_sink(mem_sink, &m);
	struct pcapr *r;
	struct pcapf_rec rec;
	uint64_t expect = 0;
	const unsigned n = 1200;
	int err;

	(void)state;
	assert_non_null(big);
	assert_non_null(w);
	assert_int_equal(pcapw_ng_iface(w, 1, 1500, "x"), -EINVAL); /* no section yet */
	assert_int_equal(pcapw_ng_section(w, "pl1"), 0);
	assert_int_equal(pcapw_ng_iface(w, 113, 1500, "eth0"), 0);
	assert_int_equal(pcapw_ng_iface(w, 1, PCAPF_MAX_CAPLEN, NULL), 0);
	assert_int_equal(pcapw_ng_iface(w, 0x10000, 1500, "bad"), -EINVAL);
	assert_int_equal(pcapw_flush(w), 0);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	assert_memory_equal(m.p, shb, sizeof(shb));
	assert_memory_equal(m.p + sizeof(shb), idb, sizeof(idb));
#endif
	expect = m.len;
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = i == 600 ? PCAPF_MAX_CAPLEN : i % 1400;

		fill(big, len, i);
		/* pcapng holds 64-bit timestamps: no end in 2106. */
		assert_int_equal(
			pcapw_write_if(w, len > 1500 ? 1 : i & 1, (1ull << 62) + i, big, len, len + 2), 0);
		expect += 28 + ((len + 3) & ~3u) + 4;
		assert_int_equal(pcapw_bytes(w), expect);
	}
	assert_int_equal(pcapw_free(w), 0);
	assert_int_equal(m.len, expect);

	r = pcapr_open_mem(m.p, m.len, &err);
	assert_non_null(r);
	assert_true(pcapr_is_pcapng(r));
	assert_int_equal(pcapr_iface_count(r), 2);
	assert_int_equal(pcapr_iface(r, 0)->linktype, 113);
	assert_int_equal(pcapr_iface(r, 0)->snaplen, 1500);
	assert_string_equal(pcapr_iface(r, 0)->name, "eth0");
	assert_int_equal(pcapr_iface(r, 1)->snaplen, PCAPF_MAX_CAPLEN);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = i == 600 ? PCAPF_MAX_CAPLEN : i % 1400;

		assert_int_equal(pcapr_next(r, &rec), 1);
		assert_int_equal(rec.iface, len > 1500 ? 1 : i & 1);
		assert_int_equal(rec.ts_ns, (1ull << 62) + i);
		assert_int_equal(rec.caplen, len);
		assert_int_equal(rec.origlen, len + 2);
		fill(big, len, i);
		assert_memory_equal(rec.data, big, len);
	}
	assert_int_equal(pcapr_next(r, &rec), 0);
	pcapr_close(r);
	free(m.p);
	free(big);
}

/* A failing sink stops the writer for good; what it accepted ends on a record. */
static void
test_writer_sink_error_sticky(void **state)
{
	uint8_t rec[1000];
	struct membuf m = { .fail_at = 3 };
	struct pcapw *w = pcapw_new_sink(mem_sink, &m);
	unsigned calls;
	int rc = 0;

	(void)state;
	assert_null(pcapw_new_sink(NULL, NULL));
	assert_non_null(w);
	fill(rec, sizeof(rec), 1);
	assert_int_equal(pcapw_pcap_header(w, 1, 65535), 0);
	for (unsigned i = 0; i < 2000 && rc == 0; i++)
		rc = pcapw_write(w, 1000000000ull * i, rec, sizeof(rec), sizeof(rec));
	assert_int_equal(rc, -EPIPE);
	assert_int_equal(m.calls, 3);
	assert_int_equal(pcapw_durable_bytes(w), m.len);
	assert_int_equal((m.len - 24) % (16 + sizeof(rec)), 0);
	calls = m.calls;
	assert_int_equal(pcapw_write(w, 0, rec, 10, 10), -EPIPE);
	assert_int_equal(pcapw_flush(w), -EPIPE);
	assert_int_equal(m.calls, calls);
	/* Discarding hands nothing more to the sink. */
	pcapw_discard(w);
	assert_int_equal(m.calls, calls);
	free(m.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_files),
		cmocka_unit_test(test_offsets),
		cmocka_unit_test(test_pcapng_sections_and_blocks),
		cmocka_unit_test(test_pcapng_spb_short_block),
		cmocka_unit_test(test_pcapng_timestamp_extremes),
		cmocka_unit_test(test_classic_byte_orders),
		cmocka_unit_test(test_bad_magic_and_short_files),
		cmocka_unit_test(test_classic_huge_and_cut_records),
		cmocka_unit_test(test_classic_old_versions_swapped_lengths),
		cmocka_unit_test(test_pcapng_shb_only),
		cmocka_unit_test(test_pcapng_bad_shb),
		cmocka_unit_test(test_pcapng_bad_block_framing),
		cmocka_unit_test(test_pcapng_bad_packet_blocks),
		cmocka_unit_test(test_pcapng_bad_idb),
		cmocka_unit_test(test_pcapng_iface_limit),
		cmocka_unit_test(test_pcapng_cut_everywhere),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_writer_header_bytes),
		cmocka_unit_test(test_writer_round_trip),
		cmocka_unit_test(test_writer_snaplen_and_args),
		cmocka_unit_test(test_writer_full_disk),
		cmocka_unit_test(test_writer_short_write_then_truncate),
		cmocka_unit_test(test_writer_sink_matches_fd),
		cmocka_unit_test(test_writer_sink_pcapng),
		cmocka_unit_test(test_writer_sink_error_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
