/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Passive DNS: the address -> name mappings one DNS response teaches (RFC 1035,
 * section 4), read through a bounds-checked cursor. Pure computation, no allocation.
 *
 * What counts, from the answer section only (authority and additional records are
 * unverified hints and are ignored; so are records of other classes than IN):
 *   - A and AAAA records whose owner is the question name, or a name reached from it
 *     through the CNAME records of the answer: address -> the question name (what the
 *     client asked for, as Kubeshark records it);
 *   - PTR records for an in-addr.arpa / ip6.arpa question name (or a name reached from
 *     it through CNAMEs, as in RFC 2317 classless delegation): the address spelled by the
 *     question name -> the PTR target;
 *   - a response without a question (multicast DNS announcements, RFC 6762): A/AAAA
 *     owner names, and PTR records whose owner is a reverse name, directly.
 * Names come out in lower case (DNS compares names case-insensitively, RFC 4343), without
 * the final dot, and only if every label is 1..63 bytes of [a-z0-9_-] and the name is at
 * most 253 bytes; a record with any other name is skipped.
 *
 * Compression pointers (section 4.1.4) must point backwards, at most 32 of them per name,
 * and a name may not exceed 255 bytes on the wire: no loop can last. The first 32 CNAME
 * records of an answer are considered, and a chain adds at most 16 names to the question
 * name, so the work per message is two walks of its answer section.
 */
#ifndef PCAPLINE_SHARED_DNS_H
#define PCAPLINE_SHARED_DNS_H

#include <stddef.h>
#include <stdint.h>

#define DNS_MAX_NAME 253         /* presentation form, no final dot */
#define DNS_MAX_TTL  0x7fffffffu /* RFC 2181, section 8: larger TTLs mean 0 */

enum dns_err {
	DNS_ETRUNC = -1, /* the message ends inside the header, question or answer section */
	DNS_EINVAL = -2, /* malformed: a bad label type, a pointer forwards or in a loop, a bad rdata length */
	DNS_ENOTRESP = -3, /* a query, or not a standard query response (opcode != 0) */
	DNS_EUNSUP = -4    /* more than one question */
};

enum dns_rrtype {
	DNS_T_A = 1,
	DNS_T_CNAME = 5,
	DNS_T_PTR = 12,
	DNS_T_AAAA = 28
};

struct dns_map {
	uint8_t family;   /* 4 or 6 */
	uint8_t addr[16]; /* network byte order; 4 bytes used for family 4 */
	uint32_t ttl;     /* seconds, 0..DNS_MAX_TTL */
	uint16_t rrtype;  /* the record it came from: DNS_T_A, DNS_T_AAAA or DNS_T_PTR */
	const char *name; /* borrowed until the callback returns */
};

typedef void (*dns_map_fn)(void *arg, const struct dns_map *m);

/*
 * Parses one DNS message (no TCP length prefix) and calls fn for every mapping of its
 * answer section, in record order (duplicates included). Nothing is reported unless the
 * header, the question and every record of the answer section are well formed (names,
 * fixed fields and rdata lengths; CNAME targets too). Authority and additional records
 * are not read. Returns the number of mappings (0 for an error response, RCODE != 0),
 * or a DNS_E* code.
 */
int dns_parse(const uint8_t *msg, size_t len, dns_map_fn fn, void *arg);

/*
 * DNS over TCP (RFC 1035, section 4.2.2; RFC 7766): parses the length-prefixed messages
 * that lie wholly within these bytes (one TCP segment's payload, which must start at a
 * message boundary). A message continuing into the next segment ends the walk: there is
 * no reassembly. Returns the mappings found, or the first message's error (DNS_ETRUNC
 * when even the first message is incomplete).
 */
int dns_parse_tcp(const uint8_t *p, size_t len, dns_map_fn fn, void *arg);

/* Reads the address spelled by a reverse-lookup name ("4.3.2.1.in-addr.arpa", 32 nibbles
 * ".ip6.arpa"; lower case, no final dot). Returns 4 or 6 with addr filled, or 0. */
int dns_reverse_addr(const char *name, uint8_t addr[16]);

const char *dns_strerror(int err);

#endif
