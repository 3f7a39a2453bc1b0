/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the sensor's passive DNS path: packet decoding (shared/pkt.c) and
 * DNS response parsing (shared/dns.c). The first input byte picks what the rest is:
 *
 *   0          one DNS message (as a UDP payload)
 *   1          DNS over TCP: a segment payload of length-prefixed messages
 *   2..10      a captured frame of link type NULL, Ethernet, raw IP (101, DLT_RAW 12),
 *              IPv4, IPv6, LOOP, Linux SLL, Linux SLL2; its UDP or TCP payload is then
 *              parsed as DNS whatever the ports
 *
 * Besides memory errors, it checks what the sensor relies on: every reported name can go
 * into a NAMES frame as it is (proto_name_valid, lower case), the number of mappings
 * returned is the number reported, nothing is reported for a message that fails, and a
 * decoded payload lies inside the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/dns.h"
#include "shared/pkt.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t linktypes[] = { 0, 1, 101, 12, 228, 229, 108, 113, 276 };

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_dns: %s\n", what);
		abort();
	}
}

static void
on_map(void *arg, const struct dns_map *m)
{
	size_t *count = arg;
	size_t len = strlen(m->name);
	uint8_t back[16];

	(*count)++;
	must(m->family == 4 || m->family == 6, "bad family");
	must(len >= 1 && len <= DNS_MAX_NAME && proto_name_valid(m->name, len, PROTO_MAX_NAME),
		"a name NAMES cannot carry");
	for (size_t i = 0; i < len; i++)
		must(!(m->name[i] >= 'A' && m->name[i] <= 'Z'), "a name not in lower case");
	must(m->ttl <= DNS_MAX_TTL, "TTL above 2^31 - 1");
	must(m->rrtype == DNS_T_A || m->rrtype == DNS_T_AAAA || m->rrtype == DNS_T_PTR, "bad record type");
	/* A PTR mapping came from a reverse name; reading it again gives the same address
	 * only when it was the question, so just exercise the reader here. */
	(void)dns_reverse_addr(m->name, back);
}

static void
parse(const uint8_t *p, size_t n, int tcp)
{
	size_t count = 0;
	int rc = tcp ? dns_parse_tcp(p, n, on_map, &count) : dns_parse(p, n, on_map, &count);

	if (rc >= 0)
		must((size_t)rc == count, "mappings returned differ from mappings reported");
	else
		must(count == 0, "mappings reported for a failed message");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	size_t n;
	struct pkt p;

	if (size < 1)
		return 0;
	n = size - 1;
	/* A private copy of exactly n bytes, so that ASan sees any read past it. */
	copy = malloc(n ? n : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, n);
	if (data[0] == 0 || data[0] == 1) {
		parse(copy, n, data[0]);
	} else if (data[0] - 2u < sizeof(linktypes) / sizeof(linktypes[0])) {
		if (pkt_decode(linktypes[data[0] - 2], copy, n, &p) == PKT_OK) {
			must(p.family == 4 || p.family == 6, "bad family");
			must(p.proto == 6 || p.proto == 17, "bad transport");
			must(p.payload >= copy && p.payload_len <= n &&
					(size_t)(p.payload - copy) <= n - p.payload_len,
				"payload outside the packet");
			must(p.src >= copy && p.dst >= copy && p.src + (p.family == 4 ? 4 : 16) <= copy + n &&
					p.dst + (p.family == 4 ? 4 : 16) <= copy + n,
				"address outside the packet");
			parse(p.payload, p.payload_len, p.proto == 6);
		}
	}
	free(copy);
	return 0;
}
