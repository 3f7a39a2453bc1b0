/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/pkt.c and shared/dns.c: real captures from tests/data/pcaps
 * decoded from the link layer up, with the mappings expected from tshark's reading of
 * the same responses (tests/integration/dnsref.py prints them:
 * `python3 tests/integration/dnsref.py FILE [PORT...]`), then hand-made messages for
 * every rule and every way a message can be broken.
 *
 * Run from the repository root: captures are opened as "tests/data/pcaps/...".
 * Inputs are copied into heap buffers of their exact size, so that AddressSanitizer
 * turns any read past the end into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/dns.h"
#include "shared/pcapfile.h"
#include "shared/pkt.h"

#define PCAPS "tests/data/pcaps/"

/* ---- Collecting mappings ------------------------------------------------------------ */

#define MAX_LINES 256

struct collect {
	unsigned frame;
	char lines[MAX_LINES][320];
	size_t n;
};

static void
on_map(void *arg, const struct dns_map *m)
{
	struct collect *c = arg;
	char a[INET6_ADDRSTRLEN];

	assert_true(m->family == 4 || m->family == 6);
	assert_non_null(inet_ntop(m->family == 4 ? AF_INET : AF_INET6, m->addr, a, sizeof(a)));
	assert_true(strlen(m->name) >= 1 && strlen(m->name) <= DNS_MAX_NAME);
	assert_true(m->ttl <= DNS_MAX_TTL);
	assert_true(c->n < MAX_LINES);
	snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%u %s %s", c->frame, a, m->name);
}

struct walk {
	unsigned packets, decoded, frags, truncated, dns_ok, dns_err;
};

static int
is_port(uint16_t p, const uint16_t *ports)
{
	return p == ports[0] || p == ports[1];
}

/* Reads a capture the way the sensor does: link layer to transport, then DNS on the
 * given ports (UDP: one message; TCP: whole messages in the segment). */
static void
walk_capture(const char *path, const uint16_t ports[2], struct collect *c, struct walk *w)
{
	struct pcapr *r;
	struct pcapf_rec rec;
	int err, rc;

	memset(w, 0, sizeof(*w));
	c->n = 0;
	c->frame = 0;
	r = pcapr_open(path, &err);
	if (!r)
		fail_msg("%s: %s", path, pcapf_strerror(err));
	while ((rc = pcapr_next(r, &rec)) == 1) {
		struct pkt p;
		uint8_t *copy = malloc(rec.caplen ? rec.caplen : 1);

		assert_non_null(copy);
		memcpy(copy, rec.data, rec.caplen);
		c->frame++;
		w->packets++;
		rc = pkt_decode(pcapr_iface(r, rec.iface)->linktype, copy, rec.caplen, &p);
		w->frags += rc == PKT_EFRAG;
		w->truncated += rc == PKT_ETRUNC;
		if (rc == PKT_OK) {
			w->decoded++;
			assert_true(p.payload_len <= rec.caplen);
			if ((is_port(p.sport, ports) || is_port(p.dport, ports)) && p.payload_len > 0) {
				rc = p.proto == 17 ? dns_parse(p.payload, p.payload_len, on_map, c)
						   : dns_parse_tcp(p.payload, p.payload_len, on_map, c);
				if (rc >= 0)
					w->dns_ok++;
				else if (rc != DNS_ENOTRESP)
					w->dns_err++;
			}
		}
		free(copy);
	}
	assert_int_equal(rc, 0);
	pcapr_close(r);
}

static void
assert_lines(const struct collect *c, const char *const *want, size_t n)
{
	for (size_t i = 0; i < n && i < c->n; i++)
		if (strcmp(c->lines[i], want[i]) != 0)
			fail_msg("mapping %zu: got '%s', want '%s'", i, c->lines[i], want[i]);
	if (c->n != n)
		fail_msg("got %zu mappings, want %zu", c->n, n);
}

/* ---- Captures ----------------------------------------------------------------------- */

static const uint16_t PORT53[2] = { 53, 53 };

static void
test_udp_queries(void **state)
{
	static struct collect c;
	struct walk w;
	/* Frame 4 (MX, with A records only in the additional section), 16 (a CNAME without
	 * addresses) and the SRV/NXDOMAIN answers yield nothing; frame 14 repeats frame 12. */
	static const char *const want[] = {
		"8 66.192.9.104 66-192-9-104.gen.twtelecom.net",
		"10 204.152.190.12 www.netbsd.org",
		"12 2001:4f8:4:7:2e0:81ff:fe52:9a6b www.netbsd.org",
		"14 2001:4f8:4:7:2e0:81ff:fe52:9a6b www.netbsd.org",
		"24 2001:4f8:0:2::d www.isc.org",
		"24 204.152.184.88 www.isc.org",
		"26 127.0.0.1 localhost",
	};

	(void)state;
	walk_capture(PCAPS "dns-udp-queries.pcap", PORT53, &c, &w);
	assert_lines(&c, want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(w.packets, 38);
	assert_int_equal(w.decoded, 38);
	assert_int_equal(w.dns_ok, 19); /* every response */
	assert_int_equal(w.dns_err, 0);
}

static void
test_tcp_multi(void **state)
{
	static struct collect c;
	struct walk w;

	(void)state;
	/* Twenty responses, each whole in its segment, all SOA-only (NXDOMAIN-like): they
	 * parse, and teach nothing. The 20 queries share one segment and are not responses. */
	walk_capture(PCAPS "dns-tcp-multi-request.pcap", PORT53, &c, &w);
	assert_int_equal(c.n, 0);
	assert_int_equal(w.packets, 48);
	assert_int_equal(w.dns_ok, 20);
	assert_int_equal(w.dns_err, 0);
}

static void
test_tls13_lookup(void **state)
{
	static struct collect c;
	struct walk w;
	static const char *const want[] = {
		"3 104.16.125.34 enabled.tls13.com",
		"3 104.16.126.34 enabled.tls13.com",
		"4 2606:4700::6810:7d22 enabled.tls13.com",
		"4 2606:4700::6810:7e22 enabled.tls13.com",
	};

	(void)state;
	walk_capture(PCAPS "tls13-handshake-sni.pcap", PORT53, &c, &w);
	assert_lines(&c, want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(w.decoded, 35);
}

static void
test_mdns_ipv6(void **state)
{
	static struct collect c;
	struct walk w;
	static const uint16_t mdns[2] = { 53, 5353 };
	/* Multicast DNS announcements: no question, so owner names map directly; frame 11's
	 * first mapping comes from a PTR record for 1.e.6.0...ip6.arpa. */
	static const char *const want[] = {
		"7 2001:6f8:102d:0:a9d2:1782:1995:b63b linux.local",
		"7 2001:6f8:102d:0:2d0:9ff:fee3:e8de linux.local",
		"7 2001:6f8:102d:0:1033:c4c:7e57:b19e linux.local",
		"10 2001:6f8:102d:0:a9d2:1782:1995:b63b linux.local",
		"10 2001:6f8:102d:0:2d0:9ff:fee3:e8de linux.local",
		"10 2001:6f8:102d:0:1033:c4c:7e57:b19e linux.local",
		"11 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"11 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"12 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"12 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"12 2001:6f8:102d:0:a9d2:1782:1995:b63b linux.local",
		"12 2001:6f8:102d:0:2d0:9ff:fee3:e8de linux.local",
		"12 2001:6f8:102d:0:1033:c4c:7e57:b19e linux.local",
		"13 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"13 2001:6f8:102d:0:999:39d7:ce98:6e1 linux.local",
		"13 2001:6f8:102d:0:a9d2:1782:1995:b63b linux.local",
		"13 2001:6f8:102d:0:2d0:9ff:fee3:e8de linux.local",
		"13 2001:6f8:102d:0:1033:c4c:7e57:b19e linux.local",
	};

	(void)state;
	walk_capture(PCAPS "http-ipv6.pcap", mdns, &c, &w);
	assert_lines(&c, want, sizeof(want) / sizeof(want[0]));
	/* Port 53 only (the default): nothing. */
	walk_capture(PCAPS "http-ipv6.pcap", PORT53, &c, &w);
	assert_int_equal(c.n, 0);
}

static void
test_pcapng_lookups(void **state)
{
	static struct collect c;
	struct walk w;
	static const char *const want[] = {
		"2 23.194.101.24 www.apple.com",
		"4 142.251.181.138 google.com",
		"4 142.251.181.139 google.com",
		"4 142.251.181.113 google.com",
		"4 142.251.181.100 google.com",
		"4 142.251.181.101 google.com",
		"4 142.251.181.102 google.com",
		"6 2607:f8b0:4023:2007::66 google.com",
		"6 2607:f8b0:4023:2007::8b google.com",
		"6 2607:f8b0:4023:2007::71 google.com",
		"6 2607:f8b0:4023:2007::8a google.com",
	};

	(void)state;
	walk_capture(PCAPS "pcapng-multi-interface-dns.pcapng", PORT53, &c, &w);
	assert_lines(&c, want, sizeof(want) / sizeof(want[0]));
}

/* 93 first fragments that claim 1500 bytes: the decoder refuses them all as fragments,
 * and the DNS parser, fed the bytes anyway, stays in bounds and agrees with tshark. */
static void
test_malformed_fragments(void **state)
{
	static struct collect c;
	struct walk w;
	struct pcapr *r;
	struct pcapf_rec rec;
	int err;
	unsigned parsed = 0, cut = 0;

	(void)state;
	walk_capture(PCAPS "malformed-dns-ip-frags.pcap", PORT53, &c, &w);
	assert_int_equal(w.packets, 93);
	assert_int_equal(w.frags, 93);
	assert_int_equal(c.n, 0);

	r = pcapr_open(PCAPS "malformed-dns-ip-frags.pcap", &err);
	assert_non_null(r);
	c.n = 0;
	c.frame = 0;
	while (pcapr_next(r, &rec) == 1) {
		/* Ethernet + 20-byte IPv4 + UDP: the DNS message as far as it was captured. */
		size_t n = rec.caplen > 42 ? rec.caplen - 42 : 0;
		uint8_t *copy = malloc(n ? n : 1);
		int rc;

		c.frame++;
		assert_non_null(copy);
		memcpy(copy, rec.data + 42, n);
		/* Every cut of the message too: none may read out of bounds or report more. */
		for (size_t k = 0; k < n; k += 7) {
			static struct collect scratch;
			uint8_t *part = malloc(k ? k : 1);

			memcpy(part, copy, k);
			scratch.n = 0;
			rc = dns_parse(part, k, on_map, &scratch);
			assert_true(rc < 0 || (size_t)rc == scratch.n);
			free(part);
		}
		rc = dns_parse(copy, n, on_map, &c);
		parsed += rc >= 0;
		cut += rc == DNS_ETRUNC;
		free(copy);
	}
	pcapr_close(r);
	assert_int_equal(parsed + cut, 93);
	assert_int_equal(c.n, 39);
	assert_string_equal(c.lines[0], "9 140.90.113.200 www.lightningsafety.noaa.gov");
	/* RFC 2317: 70.2.6.216.in-addr.arpa CNAME 70.64.2.6.216.in-addr.arpa PTR up2.com. */
	assert_string_equal(c.lines[17], "40 216.6.2.70 up2.com");
	/* The question in upper case: 102.4.163.132.IN-ADDR.ARPA. */
	assert_string_equal(c.lines[22], "50 132.163.4.102 time-b.timefreq.bldrdoc.gov");
	/* giving.Princeton.EDU comes out in lower case. */
	assert_string_equal(c.lines[6], "24 75.101.132.77 giving.princeton.edu");
}

/* ---- Link layers -------------------------------------------------------------------- */

static void
test_link_types(void **state)
{
	static const struct {
		const char *file;
		unsigned packets, decoded;
		uint16_t port;
	} cases[] = {
		{ PCAPS "http-vlan-qinq.pcap", 14, 14, 80 },              /* Ethernet, two 802.1Q tags */
		{ PCAPS "tcp-overlap-partial-vlan.pcap", 7, 7, 0 },       /* one 802.1Q tag */
		{ PCAPS "redis-benchmark-sll.pcap", 150, 150, 6379 },     /* Linux SLL */
		{ PCAPS "http-sll2-large-segments.pcap", 159, 159, 0 },   /* Linux SLL2 */
		{ PCAPS "http-upgrade-h2c-and-http1.pcap", 116, 116, 0 }, /* NULL */
		{ PCAPS "redis-large-bulk-loopback.pcap", 58, 58, 6379 }, /* NULL */
		{ PCAPS "http2-h2c-prior-knowledge-ipv6.pcap", 0, 0, 0 }, /* IPv6 */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pcapr *r;
		struct pcapf_rec rec;
		int err;
		unsigned packets = 0, decoded = 0, with_port = 0;

		r = pcapr_open(cases[i].file, &err);
		if (!r)
			fail_msg("%s: %s", cases[i].file, pcapf_strerror(err));
		while (pcapr_next(r, &rec) == 1) {
			struct pkt p;
			uint8_t *copy = malloc(rec.caplen ? rec.caplen : 1);

			memcpy(copy, rec.data, rec.caplen);
			packets++;
			if (pkt_decode(pcapr_iface(r, rec.iface)->linktype, copy, rec.caplen, &p) == PKT_OK) {
				decoded++;
				assert_int_equal(p.proto, 6);
				with_port += p.sport == cases[i].port || p.dport == cases[i].port;
			}
			free(copy);
		}
		pcapr_close(r);
		if (cases[i].packets) {
			assert_int_equal(packets, cases[i].packets);
			assert_int_equal(decoded, cases[i].decoded);
		} else {
			assert_int_equal(decoded, packets);
		}
		if (cases[i].port)
			assert_int_equal(with_port, decoded);
	}
}

static void
test_fragments_and_cuts(void **state)
{
	static struct collect c;
	struct walk w;

	(void)state;
	/* Two fragmented datagrams (2 fragments each) among the packets. */
	walk_capture(PCAPS "ipv4-frag-tcp-http.pcap", PORT53, &c, &w);
	assert_int_equal(w.frags, 4);
	assert_int_equal(w.decoded, w.packets - 4);
	/* A snaplen of 68 cuts TCP headers with options: some headers are truncated. */
	walk_capture(PCAPS "malformed-truncated-tcp-headers.pcap", PORT53, &c, &w);
	assert_true(w.truncated > 0);
	assert_int_equal(w.truncated + w.decoded, w.packets);
}

static int
decode_hex(uint32_t linktype, const char *hex, struct pkt *p)
{
	uint8_t buf[512], *copy;
	size_t n = 0;
	int hi = -1, rc;

	for (; *hex; hex++) {
		int v;

		if (*hex == ' ')
			continue;
		v = *hex >= 'a' ? *hex - 'a' + 10 : *hex - '0';
		if (hi < 0) {
			hi = v;
		} else {
			buf[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	copy = malloc(n ? n : 1);
	memcpy(copy, buf, n);
	rc = pkt_decode(linktype, copy, n, p);
	/* payload points into copy: keep only its length for the caller. */
	if (rc == PKT_OK)
		p->payload = NULL, p->src = p->dst = NULL;
	free(copy);
	return rc;
}

#define IP4_UDP "45000022 0000 0000 4011 0000 0a000001 0a000002 0035 3039 000e 0000 616263646566"
#define IP6_HDR(next, plen) \
	"60000000 " plen " " next "40 20010db8000000000000000000000001 20010db8000000000000000000000002"

static void
test_handmade_packets(void **state)
{
	struct pkt p;

	(void)state;
	/* Raw IPv4 (LINKTYPE_RAW, and DLT_RAW 12 and 14), UDP 53 -> 12345, 6 payload bytes. */
	for (uint32_t lt = 0; lt < 3; lt++) {
		static const uint32_t lts[] = { 101, 12, 228 };

		assert_int_equal(decode_hex(lts[lt], IP4_UDP, &p), PKT_OK);
		assert_int_equal(p.family, 4);
		assert_int_equal(p.sport, 53);
		assert_int_equal(p.dport, 12345);
		assert_int_equal(p.payload_len, 6);
	}
	/* Ethernet padding after a short IP packet is not payload. */
	assert_int_equal(decode_hex(1, "ffffffffffff 000000000001 0800 " IP4_UDP "00000000", &p), PKT_OK);
	assert_int_equal(p.payload_len, 6);
	/* BSD loopback, family 2 in either byte order; LOOP (108) too. */
	assert_int_equal(decode_hex(0, "02000000 " IP4_UDP, &p), PKT_OK);
	assert_int_equal(decode_hex(0, "00000002 " IP4_UDP, &p), PKT_OK);
	assert_int_equal(decode_hex(108, "00000002 " IP4_UDP, &p), PKT_OK);
	assert_int_equal(decode_hex(0, "07000000 " IP4_UDP, &p), PKT_ELINK);
	/* IPv6 with hop-by-hop, destination options and an atomic fragment header. */
	assert_int_equal(decode_hex(229,
				 IP6_HDR("00", "0026") " 3c00 000000000000  2c00 000000000000"
						       "11000000 00000000  0035 0035 000e 0000 616263646566",
				 &p),
		PKT_OK);
	assert_int_equal(p.family, 6);
	assert_int_equal(p.proto, 17);
	assert_int_equal(p.payload_len, 6);
	/* A real fragment (offset 8), and a first fragment (M set). */
	assert_int_equal(
		decode_hex(
			229, IP6_HDR("2c", "0016") " 11000040 00000000 0035 0035 000e 0000 616263646566", &p),
		PKT_EFRAG);
	assert_int_equal(
		decode_hex(
			229, IP6_HDR("2c", "0016") " 11000001 00000000 0035 0035 000e 0000 616263646566", &p),
		PKT_EFRAG);
	/* ICMPv6, and no next header. */
	assert_int_equal(decode_hex(229, IP6_HDR("3a", "0004") " 80000000", &p), PKT_EPROTO);
	assert_int_equal(decode_hex(229, IP6_HDR("3b", "0000"), &p), PKT_EPROTO);
	/* Broken headers: IHL 4, UDP length 7, TCP data offset 4, an IP version 5. */
	assert_int_equal(
		decode_hex(101, "44000022 0000 0000 4011 0000 0a000001 0a000002 0035 3039 000e 0000", &p),
		PKT_EINVAL);
	assert_int_equal(
		decode_hex(101, "45000022 0000 0000 4011 0000 0a000001 0a000002 0035 3039 0007 0000", &p),
		PKT_EINVAL);
	assert_int_equal(decode_hex(101,
				 "45000028 0000 0000 4006 0000 0a000001 0a000002 0035 3039 00000000 "
				 "00000000 4000 0000 00000000",
				 &p),
		PKT_EINVAL);
	assert_int_equal(decode_hex(101, "55000022", &p), PKT_ELINK);
	assert_int_equal(decode_hex(228, "65000022 0000 0000 4011 0000 0a000001 0a000002", &p), PKT_EINVAL);
	/* ARP, an 802.3 length field, an unknown link type, empty input. */
	assert_int_equal(decode_hex(1, "ffffffffffff 000000000001 0806 0001", &p), PKT_ELINK);
	assert_int_equal(decode_hex(1, "ffffffffffff 000000000001 0040 0001", &p), PKT_ELINK);
	assert_int_equal(decode_hex(147, IP4_UDP, &p), PKT_ELINK);
	assert_int_equal(pkt_decode(1, NULL, 0, &p), PKT_ETRUNC);
	assert_int_equal(pkt_decode(101, NULL, 0, &p), PKT_ETRUNC);
	/* Nine VLAN tags are more than we follow. */
	assert_int_equal(
		decode_hex(1,
			"ffffffffffff 000000000001 8100 0001 8100 0001 8100 0001 8100 0001 8100 0001 "
			"8100 0001 8100 0001 8100 0001 8100 0001 0800 " IP4_UDP,
			&p),
		PKT_ELINK);
	assert_int_equal(
		decode_hex(1, "ffffffffffff 000000000001 88a8 0001 8100 0002 0800 " IP4_UDP, &p), PKT_OK);
	/* Linux SLL and SLL2 headers. */
	assert_int_equal(decode_hex(113, "0000 0001 0006 000000000001 0000 0800 " IP4_UDP, &p), PKT_OK);
	assert_int_equal(
		decode_hex(276, "0800 0000 00000001 0001 00 06 000000000001 0000 " IP4_UDP, &p), PKT_OK);
	/* A UDP length beyond what was captured: payload is what is there, marked cut. */
	assert_int_equal(
		decode_hex(
			101, "45000022 0000 0000 4011 0000 0a000001 0a000002 0035 3039 0020 0000 6162", &p),
		PKT_OK);
	assert_true(p.cut);
	assert_int_equal(p.payload_len, 2);
	assert_string_equal(pkt_strerror(PKT_EFRAG), "IP fragment");
}

/* ---- Hand-made DNS messages --------------------------------------------------------- */

struct msg {
	uint8_t b[1024];
	size_t n;
};

static void
m_u8(struct msg *m, unsigned v)
{
	m->b[m->n++] = (uint8_t)v;
}
static void
m_u16(struct msg *m, unsigned v)
{
	m_u8(m, v >> 8);
	m_u8(m, v & 0xff);
}
static void
m_u32(struct msg *m, uint32_t v)
{
	m_u16(m, v >> 16);
	m_u16(m, v & 0xffff);
}
static void
m_bytes(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}
/* An uncompressed name, "" for the root. */
static void
m_name(struct msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);

		m_u8(m, (unsigned)len);
		m_bytes(m, name, len);
		name += len + (dot ? 1 : 0);
	}
	m_u8(m, 0);
}
static void
m_hdr(struct msg *m, unsigned flags, unsigned qd, unsigned an)
{
	m->n = 0;
	m_u16(m, 0x1234);
	m_u16(m, flags);
	m_u16(m, qd);
	m_u16(m, an);
	m_u16(m, 0);
	m_u16(m, 0);
}
static void
m_question(struct msg *m, const char *name, unsigned type)
{
	m_name(m, name);
	m_u16(m, type);
	m_u16(m, 1);
}
/* A record with an uncompressed owner name. */
static void
m_rr(struct msg *m, const char *owner, unsigned type, unsigned cls, uint32_t ttl, const void *rdata,
	size_t rdlen)
{
	m_name(m, owner);
	m_u16(m, type);
	m_u16(m, cls);
	m_u32(m, ttl);
	m_u16(m, (unsigned)rdlen);
	m_bytes(m, rdata, rdlen);
}
static void
m_rr_name(struct msg *m, const char *owner, unsigned type, const char *target)
{
	struct msg t = { .n = 0 };

	m_name(&t, target);
	m_rr(m, owner, type, 1, 300, t.b, t.n);
}

static const uint8_t A1[4] = { 192, 0, 2, 1 }, A2[4] = { 192, 0, 2, 2 };

/* Parses a copy of exactly m->n bytes; the lines go to c. */
static int
parse(const struct msg *m, struct collect *c)
{
	uint8_t *copy = malloc(m->n ? m->n : 1);
	int rc;

	memcpy(copy, m->b, m->n);
	c->n = 0;
	c->frame = 0;
	rc = dns_parse(copy, m->n, on_map, c);
	free(copy);
	if (rc >= 0)
		assert_int_equal((size_t)rc, c->n);
	else
		assert_int_equal(c->n, 0);
	return rc;
}

static void
test_cname_chains(void **state)
{
	static struct collect c;
	struct msg m;

	(void)state;
	/* www -> a (CNAME) -> b (CNAME), the CNAMEs in reverse order, addresses of b and of
	 * an unrelated name: only b's map, to the question name. */
	m_hdr(&m, 0x8180, 1, 5);
	m_question(&m, "WWW.Example.COM", 1);
	m_rr(&m, "b.example.net", 1, 1, 60, A1, 4);
	m_rr_name(&m, "a.example.org", 5, "b.example.net");
	m_rr_name(&m, "www.example.com", 5, "a.example.org");
	m_rr(&m, "evil.example", 1, 1, 60, A2, 4);
	m_rr(&m, "b.example.net", 1, 1, 0x80000001u, A2, 4);
	assert_int_equal(parse(&m, &c), 2);
	assert_string_equal(c.lines[0], "0 192.0.2.1 www.example.com");
	assert_string_equal(c.lines[1], "0 192.0.2.2 www.example.com");

	/* A CNAME loop ends: a -> b -> a, plus an address of b. */
	m_hdr(&m, 0x8180, 1, 3);
	m_question(&m, "a.test", 1);
	m_rr_name(&m, "a.test", 5, "b.test");
	m_rr_name(&m, "b.test", 5, "a.test");
	m_rr(&m, "b.test", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 192.0.2.1 a.test");

	/* A chain of 17 CNAMEs: the 16 followed reach n16, not n17. */
	m_hdr(&m, 0x8180, 1, 19);
	m_question(&m, "n0.test", 1);
	for (int i = 0; i < 17; i++) {
		char o[32], t[32];

		snprintf(o, sizeof(o), "n%d.test", i);
		snprintf(t, sizeof(t), "n%d.test", i + 1);
		m_rr_name(&m, o, 5, t);
	}
	m_rr(&m, "n16.test", 1, 1, 60, A1, 4);
	m_rr(&m, "n17.test", 1, 1, 60, A2, 4);
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 192.0.2.1 n0.test");
}

static void
test_records(void **state)
{
	static struct collect c;
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	struct msg m;

	(void)state;
	/* AAAA with a 4-byte rdata, A with 16, class CH, a record type we ignore (MX), an
	 * mDNS cache-flush class (0x8001, fine), a TTL with the top bit (read as 0). */
	m_hdr(&m, 0x8180, 1, 6);
	m_question(&m, "h.test", 255);
	m_rr(&m, "h.test", 28, 1, 60, A1, 4);
	m_rr(&m, "h.test", 1, 1, 60, v6, 16);
	m_rr(&m, "h.test", 1, 3, 60, A1, 4);
	m_rr(&m, "h.test", 15, 1, 60, "\0\1\0", 3);
	m_rr(&m, "h.test", 28, 0x8001, 0xffffffffu, v6, 16);
	m_rr(&m, "h.test", 1, 1, 7, A2, 4);
	assert_int_equal(parse(&m, &c), 2);
	assert_string_equal(c.lines[0], "0 2001:db8::1 h.test");
	assert_string_equal(c.lines[1], "0 192.0.2.2 h.test");

	/* Names outside the host-name class: an unusable question teaches nothing; an
	 * unusable CNAME target breaks the chain. */
	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, "a b.test", 1);
	m_rr(&m, "a b.test", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 0);
	m_hdr(&m, 0x8180, 1, 2);
	m_question(&m, "ok.test", 1);
	m_rr_name(&m, "ok.test", 5, "*.test");
	m_rr(&m, "*.test", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 0);
	/* The root as question. */
	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, "", 1);
	m_rr(&m, "", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 0);
	/* _srv-style labels are fine. */
	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, "_x._tcp.test", 1);
	m_rr(&m, "_x._tcp.test", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 192.0.2.1 _x._tcp.test");

	/* Flags: a query, an opcode other than QUERY, two questions, an NXDOMAIN. */
	m_hdr(&m, 0x0100, 1, 1);
	m_question(&m, "h.test", 1);
	m_rr(&m, "h.test", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), DNS_ENOTRESP);
	m.b[2] = 0x90; /* QR, opcode 2 */
	assert_int_equal(parse(&m, &c), DNS_ENOTRESP);
	m.b[2] = 0x81;
	m.b[5] = 2;
	assert_int_equal(parse(&m, &c), DNS_EUNSUP);
	m.b[5] = 1;
	m.b[3] = 0x83;
	assert_int_equal(parse(&m, &c), 0);
	m.b[3] = 0x80;
	assert_int_equal(parse(&m, &c), 1);
	/* Trailing bytes after the answer section (authority, additional, junk) are not read. */
	m_u32(&m, 0xdeadbeef);
	assert_int_equal(parse(&m, &c), 1);
}

static void
test_ptr(void **state)
{
	static struct collect c;
	struct msg m;
	const char *v6q = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";

	(void)state;
	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, "4.2.18.198.in-addr.arpa", 12);
	m_rr_name(&m, "4.2.18.198.in-addr.arpa", 12, "Host.Test");
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 198.18.2.4 host.test");

	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, v6q, 12);
	m_rr_name(&m, v6q, 12, "v6.test");
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 2001:db8::1 v6.test");

	/* A PTR for a question that is not a reverse name, and a bad target. */
	m_hdr(&m, 0x8180, 1, 2);
	m_question(&m, "x.test", 12);
	m_rr_name(&m, "x.test", 12, "y.test");
	m_rr_name(&m, "x.test", 12, "bad!name");
	assert_int_equal(parse(&m, &c), 0);

	/* No question (mDNS): PTR owners that are reverse names map directly. */
	m_hdr(&m, 0x8400, 0, 2);
	m_rr_name(&m, "9.0.18.198.in-addr.arpa", 12, "nine.local");
	m_rr_name(&m, "_http._tcp.local", 12, "web._http._tcp.local");
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 198.18.0.9 nine.local");
}

static void
test_reverse_names(void **state)
{
	uint8_t a[16];
	static const struct {
		const char *name;
		int family;
		const char *addr;
	} cases[] = {
		{ "4.3.2.1.in-addr.arpa", 4, "1.2.3.4" },
		{ "0.0.0.0.in-addr.arpa", 4, "0.0.0.0" },
		{ "255.255.255.255.in-addr.arpa", 4, "255.255.255.255" },
		{ "256.1.1.1.in-addr.arpa", 0, NULL },
		{ "01.1.1.1.in-addr.arpa", 0, NULL },
		{ "1.1.1.in-addr.arpa", 0, NULL },
		{ "1.1.1.1.1.in-addr.arpa", 0, NULL },
		{ "1..1.1.in-addr.arpa", 0, NULL },
		{ "a.1.1.1.in-addr.arpa", 0, NULL },
		{ "1234.1.1.1.in-addr.arpa", 0, NULL },
		{ "in-addr.arpa", 0, NULL },
		{ "1.1.1.1.in-addr.arpa.x", 0, NULL },
		{ "b.a.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", 6,
			"2001:db8::123:4567:89ab" },
		{ "b.a.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.ip6.arpa", 0, NULL },
		{ "g.a.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", 0, NULL },
		{ "ba.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.x.ip6.arpa", 0, NULL },
		{ "example.com", 0, NULL },
		{ "", 0, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fam = dns_reverse_addr(cases[i].name, a);
		char s[INET6_ADDRSTRLEN];

		if (fam != cases[i].family)
			fail_msg("'%s': family %d, want %d", cases[i].name, fam, cases[i].family);
		if (fam) {
			inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, s, sizeof(s));
			assert_string_equal(s, cases[i].addr);
		}
	}
}

static void
test_compression(void **state)
{
	static struct collect c;
	struct msg m;
	size_t qname_off = 12;

	(void)state;
	/* The usual shape: owner names point at the question name (0xc00c). */
	m_hdr(&m, 0x8180, 1, 2);
	m_question(&m, "www.example.com", 1);
	m_u16(&m, 0xc000 | (unsigned)qname_off);
	m_u16(&m, 5);
	m_u16(&m, 1);
	m_u32(&m, 60);
	m_u16(&m, 6);
	m_u8(&m, 3);
	m_bytes(&m, "cdn", 3);
	m_u16(&m, 0xc000 | 16); /* "cdn" + "example.com" of the question */
	m_u16(&m, 0xc000 | 45); /* the CNAME target, at offset 45 */
	m_u16(&m, 1);
	m_u16(&m, 1);
	m_u32(&m, 60);
	m_u16(&m, 4);
	m_bytes(&m, A1, 4);
	assert_int_equal(m.b[45], 3); /* the target's first label */
	assert_int_equal(parse(&m, &c), 1);
	assert_string_equal(c.lines[0], "0 192.0.2.1 www.example.com");

	/* Pointers to the pointer itself, forwards, past the end, and into the header (whose
	 * bytes then read as a label of 18 and a label type 0x40): all malformed. */
	for (unsigned i = 0; i < 4; i++) {
		static const unsigned targets[] = { 33, 40, 1000, 0 };

		m_hdr(&m, 0x8180, 1, 1);
		m_question(&m, "www.example.com", 1);
		assert_int_equal(m.n, 33);
		m_u16(&m, 0xc000 | targets[i]);
		m_u16(&m, 1);
		m_u16(&m, 1);
		m_u32(&m, 60);
		m_u16(&m, 4);
		m_bytes(&m, A1, 4);
		assert_int_equal(parse(&m, &c), DNS_EINVAL);
	}

	/* A loop through a label: "a", then a pointer back to that label. */
	m_hdr(&m, 0x8180, 1, 0);
	m_u8(&m, 1);
	m_u8(&m, 'a');
	m_u16(&m, 0xc00c);
	m_u16(&m, 1);
	m_u16(&m, 1);
	assert_int_equal(parse(&m, &c), DNS_EINVAL);

	/* A label of type 0x40 (EDNS extended) and 0x80 (reserved). */
	m_hdr(&m, 0x8180, 1, 0);
	m_u8(&m, 0x41);
	m_u8(&m, 0);
	m_u16(&m, 1);
	m_u16(&m, 1);
	assert_int_equal(parse(&m, &c), DNS_EINVAL);
	m.b[12] = 0x81;
	assert_int_equal(parse(&m, &c), DNS_EINVAL);

	/* A name of 256 bytes on the wire (four 63-byte labels): too long. */
	m_hdr(&m, 0x8180, 1, 0);
	for (int i = 0; i < 4; i++) {
		m_u8(&m, 63);
		for (int k = 0; k < 63; k++)
			m_u8(&m, 'a');
	}
	m_u8(&m, 0);
	m_u16(&m, 1);
	m_u16(&m, 1);
	assert_int_equal(parse(&m, &c), DNS_EINVAL);
	/* 255 bytes is the most: three 63-byte labels and one of 61 (presentation: 253). */
	m_hdr(&m, 0x8180, 1, 1);
	for (int i = 0; i < 4; i++) {
		m_u8(&m, i < 3 ? 63 : 61);
		for (int k = 0; k < (i < 3 ? 63 : 61); k++)
			m_u8(&m, 'a');
	}
	m_u8(&m, 0);
	m_u16(&m, 1);
	m_u16(&m, 1);
	m_u16(&m, 0xc00c);
	m_u16(&m, 1);
	m_u16(&m, 1);
	m_u32(&m, 60);
	m_u16(&m, 4);
	m_bytes(&m, A1, 4);
	assert_int_equal(parse(&m, &c), 1);
	assert_int_equal(strlen(strchr(c.lines[0], 'a')), 253);
}

/* A name reached through a chain of pointers: 32 are followed, 33 are refused. The chain
 * sits in the opaque rdata of a first record; a CNAME's target points at its end. */
static void
test_pointer_limit(void **state)
{
	static struct collect c;

	(void)state;
	for (unsigned chain = 30; chain <= 32; chain++) {
		struct msg m;
		size_t prev = 12, rdlen_at, start;

		m_hdr(&m, 0x8180, 1, 2);
		m_question(&m, "a.test", 1); /* the name at offset 12 */
		m_u16(&m, 0xc00c);
		m_u16(&m, 16); /* TXT: its rdata is not read */
		m_u16(&m, 1);
		m_u32(&m, 60);
		rdlen_at = m.n;
		m_u16(&m, 0);
		start = m.n;
		for (unsigned i = 0; i < chain; i++) {
			size_t here = m.n;

			m_u16(&m, 0xc000 | (unsigned)prev);
			prev = here;
		}
		m.b[rdlen_at] = (uint8_t)((m.n - start) >> 8);
		m.b[rdlen_at + 1] = (uint8_t)(m.n - start);
		/* a.test CNAME <pointer to the last of the chain>: chain + 1 pointers. */
		m_u16(&m, 0xc00c);
		m_u16(&m, 5);
		m_u16(&m, 1);
		m_u32(&m, 60);
		m_u16(&m, 2);
		m_u16(&m, 0xc000 | (unsigned)prev);
		if (chain + 1 <= 32)
			assert_int_equal(parse(&m, &c), 0); /* a CNAME to a.test itself: nothing */
		else
			assert_int_equal(parse(&m, &c), DNS_EINVAL);
	}
}

/* Every strict prefix of a valid response is cut short; nothing is reported for it. */
static void
test_cuts(void **state)
{
	static struct collect c;
	struct msg m, cut;
	int rc;

	(void)state;
	m_hdr(&m, 0x8180, 1, 2);
	m_question(&m, "www.example.com", 1);
	m_rr_name(&m, "www.example.com", 5, "web.example.net");
	m_rr(&m, "web.example.net", 1, 1, 60, A1, 4);
	assert_int_equal(parse(&m, &c), 1);
	for (size_t k = 0; k < m.n; k++) {
		cut = m;
		cut.n = k;
		rc = parse(&cut, &c);
		if (rc != DNS_ETRUNC)
			fail_msg("cut at %zu of %zu: %d", k, m.n, rc);
	}
	assert_string_equal(dns_strerror(DNS_ETRUNC), "message cut short");
	assert_string_equal(dns_strerror(2), "success");
}

static void
test_tcp(void **state)
{
	static struct collect c;
	struct msg m, s;
	uint8_t *copy;
	int rc;

	(void)state;
	m_hdr(&m, 0x8180, 1, 1);
	m_question(&m, "t.test", 1);
	m_rr(&m, "t.test", 1, 1, 60, A1, 4);
	/* Two whole messages, then the first 5 bytes of a third. */
	s.n = 0;
	for (int i = 0; i < 2; i++) {
		m_u16(&s, (unsigned)m.n);
		m_bytes(&s, m.b, m.n);
	}
	m_u16(&s, (unsigned)m.n);
	m_bytes(&s, m.b, 3);
	copy = malloc(s.n);
	memcpy(copy, s.b, s.n);
	c.n = 0;
	rc = dns_parse_tcp(copy, s.n, on_map, &c);
	assert_int_equal(rc, 2);
	assert_int_equal(c.n, 2);
	/* A segment that starts inside a message (no whole one at its start). */
	rc = dns_parse_tcp(copy + 1, s.n - 1, on_map, &c);
	assert_true(rc < 0);
	rc = dns_parse_tcp(copy, 1, on_map, &c);
	assert_int_equal(rc, DNS_ETRUNC);
	rc = dns_parse_tcp(copy, (size_t)m.n + 1, on_map, &c);
	assert_int_equal(rc, DNS_ETRUNC);
	free(copy);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_udp_queries),
		cmocka_unit_test(test_tcp_multi),
		cmocka_unit_test(test_tls13_lookup),
		cmocka_unit_test(test_mdns_ipv6),
		cmocka_unit_test(test_pcapng_lookups),
		cmocka_unit_test(test_malformed_fragments),
		cmocka_unit_test(test_link_types),
		cmocka_unit_test(test_fragments_and_cuts),
		cmocka_unit_test(test_handmade_packets),
		cmocka_unit_test(test_cname_chains),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_reverse_names),
		cmocka_unit_test(test_compression),
		cmocka_unit_test(test_pointer_limit),
		cmocka_unit_test(test_cuts),
		cmocka_unit_test(test_tcp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
