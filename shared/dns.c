/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Passive DNS response parser (RFC 1035). Every byte is read through struct cursor; a
 * name is decoded into a fixed buffer with its wire length, pointer count and pointer
 * direction bounded, so that no message can make it loop, recurse or allocate.
 */
#include "shared/dns.h"

#include <stdbool.h>
#include <string.h>

#include "shared/cursor.h"

#define DNS_HDR_LEN       12
#define DNS_MAX_WIRE_NAME 255 /* RFC 1035, section 3.1 */
#define DNS_MAX_LABEL     63
#define DNS_MAX_POINTERS  32
#define DNS_MAX_CNAMES    16 /* names a chain may add to the question name; real chains are short */
#define DNS_MAX_EDGES     32 /* CNAME records of one answer section considered */
#define DNS_CLASS_IN      1
/* The top bit of the class is mDNS's cache-flush / unicast-response bit (RFC 6762,
 * sections 10.2 and 5.4); it is not part of the class. */
#define DNS_CLASS_MASK    0x7fff

const char *
dns_strerror(int err)
{
	switch (err) {
	case DNS_ETRUNC:
		return "message cut short";
	case DNS_EINVAL:
		return "malformed message";
	case DNS_ENOTRESP:
		return "not a standard query response";
	case DNS_EUNSUP:
		return "more than one question";
	}
	return err >= 0 ? "success" : "unknown DNS error";
}

struct dns_msg {
	const uint8_t *p;
	size_t len;
};

static bool
dns_host_char(uint8_t ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		ch == '-' || ch == '_';
}

/*
 * Decodes the (possibly compressed) name at c and advances c past it (RFC 1035, sections
 * 3.1 and 4.1.4). Returns 1 and a lower-case dotted name in out if every label is a host
 * name label, 0 if the name is well formed but not usable here (other bytes, or the
 * root), or a DNS_E* code. Pointers may only point backwards, at most DNS_MAX_POINTERS
 * of them, and the name may not pass 255 bytes on the wire, so decoding always ends.
 */
static int
dns_name(const struct dns_msg *m, struct cursor *c, char out[DNS_MAX_NAME + 1])
{
	struct cursor r = *c;
	size_t wire = 1, olen = 0;
	int pointers = 0;
	bool usable = true, jumped = false;

	for (;;) {
		uint8_t len;
		const uint8_t *label;

		if (!cursor_u8(&r, &len))
			return DNS_ETRUNC;
		if ((len & 0xc0) == 0xc0) {
			uint8_t lo;
			size_t here = (size_t)(r.p - 1 - m->p), target;

			if (!cursor_u8(&r, &lo))
				return DNS_ETRUNC;
			target = (size_t)(len & 0x3f) << 8 | lo;
			if (target >= here || ++pointers > DNS_MAX_POINTERS)
				return DNS_EINVAL;
			if (!jumped) {
				c->p = r.p;
				jumped = true;
			}
			cursor_init(&r, m->p + target, m->len - target);
			continue;
		}
		/* 0x40 and 0x80 are the extended and unallocated label types (RFC 6891). */
		if (len & 0xc0)
			return DNS_EINVAL;
		if (len == 0)
			break;
		wire += (size_t)len + 1;
		if (wire > DNS_MAX_WIRE_NAME)
			return DNS_EINVAL;
		if (!cursor_bytes(&r, len, &label))
			return DNS_ETRUNC;
		/* wire <= 255 keeps the dotted form within 253 bytes plus the NUL. */
		if (olen)
			out[olen++] = '.';
		for (uint8_t i = 0; i < len; i++) {
			uint8_t ch = label[i];

			if (!dns_host_char(ch))
				usable = false;
			out[olen++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
		}
	}
	if (!jumped)
		c->p = r.p;
	out[olen] = '\0';
	return usable && olen > 0;
}

/* One resource record (section 4.1.3); rdata stays in the message for names in it. */
struct dns_rr {
	char owner[DNS_MAX_NAME + 1];
	int owner_ok;
	uint16_t type, class;
	uint32_t ttl;
	struct cursor rdata;
};

static int
dns_rr_read(const struct dns_msg *m, struct cursor *c, struct dns_rr *rr)
{
	uint16_t rdlen;
	const uint8_t *rd;

	rr->owner_ok = dns_name(m, c, rr->owner);
	if (rr->owner_ok < 0)
		return rr->owner_ok;
	if (!cursor_u16be(c, &rr->type) || !cursor_u16be(c, &rr->class) || !cursor_u32be(c, &rr->ttl) ||
		!cursor_u16be(c, &rdlen))
		return DNS_ETRUNC;
	if (!cursor_bytes(c, rdlen, &rd))
		return DNS_ETRUNC;
	cursor_init(&rr->rdata, rd, rdlen);
	rr->class &= DNS_CLASS_MASK;
	if (rr->ttl > DNS_MAX_TTL)
		rr->ttl = 0;
	return 0;
}

/* The name held by a CNAME or PTR rdata: 1 usable, 0 unusable (or not exactly filling
 * the rdata), or a DNS_E* code for a malformed name. */
static int
dns_rdata_name(const struct dns_msg *m, const struct dns_rr *rr, char out[DNS_MAX_NAME + 1])
{
	struct cursor c = rr->rdata;
	int ok = dns_name(m, &c, out);

	if (ok < 0)
		return ok;
	return ok == 1 && cursor_left(&c) == 0;
}

struct dns_chain {
	char names[DNS_MAX_CNAMES + 1][DNS_MAX_NAME + 1]; /* [0]: the question name */
	int n;
};

static bool
dns_chain_has(const struct dns_chain *ch, const char *name)
{
	for (int i = 0; i < ch->n; i++)
		if (strcmp(ch->names[i], name) == 0)
			return true;
	return false;
}

/* The CNAME records of an answer section, as read in one walk. */
struct dns_cnames {
	char owner[DNS_MAX_EDGES][DNS_MAX_NAME + 1];
	char target[DNS_MAX_EDGES][DNS_MAX_NAME + 1];
	int n;
};

/*
 * Walks the answer section once, checking every record, and keeps its first
 * DNS_MAX_EDGES usable CNAME records; then follows them from the question name. CNAMEs
 * may come in any order, so the chain grows until it stops changing, by at most
 * DNS_MAX_CNAMES names: the work is bounded whatever the message holds.
 * Returns 0 or a DNS_E* code for a malformed answer section.
 */
static int
dns_follow_cnames(const struct dns_msg *m, struct cursor answers, uint16_t ancount, struct dns_chain *ch,
	struct dns_cnames *cn)
{
	bool grew = true;

	cn->n = 0;
	for (unsigned i = 0; i < ancount; i++) {
		struct dns_rr rr;
		int rc = dns_rr_read(m, &answers, &rr);

		if (rc < 0)
			return rc;
		if (rr.type != DNS_T_CNAME || rr.class != DNS_CLASS_IN || rr.owner_ok != 1 ||
			cn->n == DNS_MAX_EDGES)
			continue;
		if ((rc = dns_rdata_name(m, &rr, cn->target[cn->n])) < 0)
			return rc;
		if (rc == 1) {
			memcpy(cn->owner[cn->n], rr.owner, sizeof(rr.owner));
			cn->n++;
		}
	}
	while (grew && ch->n <= DNS_MAX_CNAMES) {
		grew = false;
		for (int i = 0; i < cn->n && ch->n <= DNS_MAX_CNAMES; i++) {
			if (dns_chain_has(ch, cn->owner[i]) && !dns_chain_has(ch, cn->target[i])) {
				memcpy(ch->names[ch->n++], cn->target[i], sizeof(cn->target[i]));
				grew = true;
			}
		}
	}
	return 0;
}

int
dns_parse(const uint8_t *msg, size_t len, dns_map_fn fn, void *arg)
{
	struct dns_msg m = { msg, len };
	struct cursor c, answers;
	uint16_t flags, qdcount, ancount;
	struct dns_chain ch;
	struct dns_cnames cn;
	const char *qname = NULL;
	uint8_t qaddr[16];
	int qfamily = 0, found = 0, rc;

	cursor_init(&c, msg, len);
	if (!cursor_skip(&c, 2) || !cursor_u16be(&c, &flags) || !cursor_u16be(&c, &qdcount) ||
		!cursor_u16be(&c, &ancount) || !cursor_skip(&c, 4))
		return DNS_ETRUNC;
	/* QR set, opcode 0 (QUERY): section 4.1.1. */
	if (!(flags & 0x8000) || (flags & 0x7800))
		return DNS_ENOTRESP;
	if (qdcount > 1)
		return DNS_EUNSUP;
	if (flags & 0x000f)
		return 0; /* an error response answers nothing */

	ch.n = 0;
	if (qdcount == 1) {
		uint16_t qtype, qclass;
		int ok = dns_name(&m, &c, ch.names[0]);

		if (ok < 0)
			return ok;
		if (!cursor_u16be(&c, &qtype) || !cursor_u16be(&c, &qclass))
			return DNS_ETRUNC;
		if (ok == 0 || (qclass & DNS_CLASS_MASK) != DNS_CLASS_IN)
			return 0;
		ch.n = 1;
		qname = ch.names[0];
		qfamily = dns_reverse_addr(qname, qaddr);
	}
	answers = c;
	/* The first walk checks the whole answer section (and follows CNAMEs when there is a
	 * question), so that nothing is reported from a malformed one; the second reports. */
	if ((rc = dns_follow_cnames(&m, answers, ancount, &ch, &cn)) < 0)
		return rc;
	c = answers;
	for (unsigned i = 0; i < ancount; i++) {
		struct dns_rr rr;
		struct dns_map map = { 0 };
		char target[DNS_MAX_NAME + 1];
		size_t alen = 0;

		if ((rc = dns_rr_read(&m, &c, &rr)) < 0)
			return rc;
		if (rr.class != DNS_CLASS_IN || rr.owner_ok != 1)
			continue;
		if (qname && !dns_chain_has(&ch, rr.owner))
			continue;
		map.ttl = rr.ttl;
		map.rrtype = rr.type;
		switch (rr.type) {
		case DNS_T_A:
		case DNS_T_AAAA:
			alen = rr.type == DNS_T_A ? 4 : 16;
			if (cursor_left(&rr.rdata) != alen)
				continue;
			map.family = rr.type == DNS_T_A ? 4 : 6;
			memcpy(map.addr, rr.rdata.p, alen);
			map.name = qname ? qname : rr.owner;
			break;
		case DNS_T_PTR:
			/* Mappings may have been reported already: a bad target only skips this
			 * record. */
			if (dns_rdata_name(&m, &rr, target) != 1)
				continue;
			if (qname) {
				if (!qfamily)
					continue;
				map.family = (uint8_t)qfamily;
				memcpy(map.addr, qaddr, 16);
			} else {
				int fam = dns_reverse_addr(rr.owner, map.addr);

				if (!fam)
					continue;
				map.family = (uint8_t)fam;
			}
			map.name = target;
			break;
		default:
			continue;
		}
		found++;
		if (fn)
			fn(arg, &map);
	}
	return found;
}

int
dns_parse_tcp(const uint8_t *p, size_t len, dns_map_fn fn, void *arg)
{
	struct cursor c;
	int found = 0, msgs = 0;

	cursor_init(&c, p, len);
	while (cursor_left(&c) > 0) {
		uint16_t mlen;
		const uint8_t *m;
		int rc;

		if (!cursor_u16be(&c, &mlen) || !cursor_bytes(&c, mlen, &m))
			return msgs ? found : DNS_ETRUNC;
		rc = dns_parse(m, mlen, fn, arg);
		if (rc < 0)
			return msgs ? found : rc;
		found += rc;
		msgs++;
	}
	return found;
}

static int
dns_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int
dns_reverse_addr(const char *name, uint8_t addr[16])
{
	static const char v4_suffix[] = "in-addr.arpa", v6_suffix[] = "ip6.arpa";
	size_t n = strlen(name);

	memset(addr, 0, 16);
	/* 32 nibbles, least significant first: "b.a.9.8. ... .ip6.arpa" (RFC 3596, 2.5). */
	if (n == 64 + sizeof(v6_suffix) - 1 && strcmp(name + 64, v6_suffix) == 0) {
		for (int i = 0; i < 32; i++) {
			int v = dns_hexval(name[2 * i]);

			if (v < 0 || name[2 * i + 1] != '.')
				return 0;
			addr[15 - i / 2] |= (uint8_t)(i % 2 ? v << 4 : v);
		}
		return 6;
	}
	/* "d.c.b.a.in-addr.arpa" (RFC 1035, section 3.5): four decimal octets, reversed. */
	if (n > sizeof(v4_suffix) - 1 && strcmp(name + n - (sizeof(v4_suffix) - 1), v4_suffix) == 0) {
		const char *s = name;

		for (int i = 0; i < 4; i++) {
			unsigned v = 0;
			int digits = 0;

			while (*s >= '0' && *s <= '9' && digits < 4) {
				v = v * 10 + (unsigned)(*s - '0');
				s++;
				digits++;
			}
			/* 1..3 digits, no leading zero, at most 255, then a dot. */
			if (digits < 1 || digits > 3 || v > 255 || (digits > 1 && s[-digits] == '0') ||
				*s != '.')
				return 0;
			addr[3 - i] = (uint8_t)v;
			s++;
		}
		return strcmp(s, v4_suffix) == 0 ? 4 : 0;
	}
	return 0;
}
