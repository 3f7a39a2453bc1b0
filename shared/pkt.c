/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/pkt.h"

#include "shared/cursor.h"

#define PKT_MAX_VLAN   8 /* stacked 802.1Q/802.1ad tags followed */
#define PKT_MAX_V6_EXT 8 /* IPv6 extension headers followed */

#define ETH_IPV4     0x0800
#define ETH_IPV6     0x86dd
#define ETH_8021Q    0x8100
#define ETH_8021AD   0x88a8
#define ETH_QINQ_OLD 0x9100 /* pre-standard QinQ tag, still seen */

#define IPP_HOPOPTS  0
#define IPP_TCP      6
#define IPP_UDP      17
#define IPP_ROUTING  43
#define IPP_FRAGMENT 44
#define IPP_AH       51
#define IPP_DSTOPTS  60

const char *
pkt_strerror(int err)
{
	switch (err) {
	case PKT_OK:
		return "success";
	case PKT_ELINK:
		return "not an IP packet of a supported link type";
	case PKT_ETRUNC:
		return "header cut short";
	case PKT_EFRAG:
		return "IP fragment";
	case PKT_EINVAL:
		return "invalid header field";
	case PKT_EPROTO:
		return "neither UDP nor TCP";
	}
	return "unknown packet error";
}

/* UDP (RFC 768) and TCP (RFC 9293, section 3.1) headers; c covers the IP payload. */
static int
pkt_l4(struct cursor *c, uint8_t proto, struct pkt *out)
{
	uint16_t len, skip16;
	uint8_t off;

	out->proto = proto;
	if (proto == IPP_UDP) {
		if (!cursor_u16be(c, &out->sport) || !cursor_u16be(c, &out->dport) ||
			!cursor_u16be(c, &len) || !cursor_u16be(c, &skip16))
			return PKT_ETRUNC;
		/* Length 0 only happens for IPv6 jumbograms (RFC 2675): take what is there. */
		if (len != 0) {
			if (len < 8)
				return PKT_EINVAL;
			if (cursor_left(c) < (size_t)len - 8)
				out->cut = true;
			cursor_limit(c, (size_t)len - 8);
		}
	} else if (proto == IPP_TCP) {
		if (!cursor_u16be(c, &out->sport) || !cursor_u16be(c, &out->dport) ||
			!cursor_u32be(c, &out->tcp_seq) || !cursor_u32be(c, &out->tcp_ack) ||
			!cursor_u8(c, &off) || !cursor_u8(c, &out->tcp_flags) ||
			!cursor_u16be(c, &out->tcp_win) || !cursor_skip(c, 4))
			return PKT_ETRUNC;
		if ((off >> 4) < 5)
			return PKT_EINVAL;
		if (!cursor_skip(c, (size_t)(off >> 4) * 4 - 20))
			return PKT_ETRUNC;
	} else {
		return PKT_EPROTO;
	}
	out->payload = c->p;
	out->payload_len = cursor_left(c);
	return PKT_OK;
}

/* IPv4, RFC 791. */
static int
pkt_ipv4(struct cursor *c, struct pkt *out)
{
	const uint8_t *h;
	uint16_t total, frag;
	size_t hl;

	if (cursor_left(c) < 20)
		return PKT_ETRUNC;
	h = c->p;
	if (h[0] >> 4 != 4)
		return PKT_EINVAL;
	hl = (size_t)(h[0] & 0x0f) * 4;
	if (hl < 20)
		return PKT_EINVAL;
	if (!cursor_skip(c, hl))
		return PKT_ETRUNC;
	total = (uint16_t)(h[2] << 8 | h[3]);
	frag = (uint16_t)(h[6] << 8 | h[7]);
	out->family = 4;
	out->src = h + 12;
	out->dst = h + 16;
	/* Segmentation offload hands over packets with total length 0: take what is there.
	 * Otherwise the total length cuts off the Ethernet padding of short frames. */
	if (total != 0) {
		if (total < hl)
			return PKT_EINVAL;
		if (cursor_left(c) < (size_t)total - hl)
			out->cut = true;
		cursor_limit(c, (size_t)total - hl);
	}
	/* More-fragments set, or an offset: this packet alone does not hold the datagram. */
	if (frag & 0x3fff) {
		out->proto = h[9];
		out->frag_id = (uint16_t)(h[4] << 8 | h[5]);
		out->frag_off = (uint16_t)((frag & 0x1fff) * 8);
		out->frag_more = (frag & 0x2000) != 0;
		out->payload = c->p;
		out->payload_len = cursor_left(c);
		return PKT_EFRAG;
	}
	return pkt_l4(c, h[9], out);
}

/* IPv6, RFC 8200, with the extension headers of section 4 and AH (RFC 4302). */
static int
pkt_ipv6(struct cursor *c, struct pkt *out)
{
	const uint8_t *h;
	uint16_t plen;
	uint8_t next;

	if (!cursor_bytes(c, 40, &h))
		return PKT_ETRUNC;
	if (h[0] >> 4 != 6)
		return PKT_EINVAL;
	plen = (uint16_t)(h[4] << 8 | h[5]);
	next = h[6];
	out->family = 6;
	out->src = h + 8;
	out->dst = h + 24;
	if (plen != 0) {
		if (cursor_left(c) < plen)
			out->cut = true;
		cursor_limit(c, plen);
	}
	for (int i = 0; i < PKT_MAX_V6_EXT; i++) {
		const uint8_t *x;

		switch (next) {
		case IPP_HOPOPTS:
		case IPP_ROUTING:
		case IPP_DSTOPTS:
			if (!cursor_bytes(c, 2, &x) || !cursor_skip(c, (size_t)x[1] * 8 + 6))
				return PKT_ETRUNC;
			next = x[0];
			break;
		case IPP_FRAGMENT:
			if (!cursor_bytes(c, 8, &x))
				return PKT_ETRUNC;
			/* An atomic fragment (offset 0, no more fragments) is a whole datagram. */
			if ((x[2] << 8 | x[3]) & 0xfff9) {
				out->proto = x[0];
				out->frag_id = (uint32_t)x[4] << 24 | (uint32_t)x[5] << 16 |
					(uint32_t)x[6] << 8 | x[7];
				out->frag_off = (uint16_t)((x[2] << 8 | x[3]) & 0xfff8);
				out->frag_more = (x[3] & 1) != 0;
				out->payload = c->p;
				out->payload_len = cursor_left(c);
				return PKT_EFRAG;
			}
			next = x[0];
			break;
		case IPP_AH:
			if (!cursor_bytes(c, 2, &x) || !cursor_skip(c, ((size_t)x[1] + 2) * 4 - 2))
				return PKT_ETRUNC;
			next = x[0];
			break;
		default:
			return pkt_l4(c, next, out);
		}
	}
	return PKT_EPROTO;
}

int
pkt_decode_l4(uint8_t proto, const uint8_t *p, size_t n, struct pkt *out)
{
	struct cursor c;

	cursor_init(&c, p, n);
	out->payload = NULL;
	out->payload_len = 0;
	return pkt_l4(&c, proto, out);
}

static int
pkt_ip(struct cursor *c, struct pkt *out)
{
	if (cursor_left(c) < 1)
		return PKT_ETRUNC;
	switch (c->p[0] >> 4) {
	case 4:
		return pkt_ipv4(c, out);
	case 6:
		return pkt_ipv6(c, out);
	}
	return PKT_ELINK;
}

/* An EtherType, after any number (up to PKT_MAX_VLAN) of VLAN tags (IEEE 802.1Q). */
static int
pkt_ethertype(struct cursor *c, uint16_t type, struct pkt *out)
{
	for (int i = 0; i <= PKT_MAX_VLAN; i++) {
		switch (type) {
		case ETH_IPV4:
			return pkt_ipv4(c, out);
		case ETH_IPV6:
			return pkt_ipv6(c, out);
		case ETH_8021Q:
		case ETH_8021AD:
		case ETH_QINQ_OLD:
			if (!cursor_skip(c, 2) || !cursor_u16be(c, &type))
				return PKT_ETRUNC;
			break;
		default:
			return PKT_ELINK;
		}
	}
	return PKT_ELINK;
}

/* BSD loopback: the address family in the byte order of the capturing host (NULL) or in
 * network byte order (LOOP); both are accepted for either. AF_INET6 differs by OS. */
static int
pkt_null(struct cursor *c, struct pkt *out)
{
	const uint8_t *h;
	uint32_t be, le;

	if (!cursor_bytes(c, 4, &h))
		return PKT_ETRUNC;
	be = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	le = (uint32_t)h[3] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[1] << 8 | h[0];
	if (be == 2 || le == 2)
		return pkt_ipv4(c, out);
	if (be == 10 || be == 24 || be == 28 || be == 30 || le == 10 || le == 24 || le == 28 || le == 30)
		return pkt_ipv6(c, out);
	return PKT_ELINK;
}

int
pkt_decode(uint32_t linktype, const uint8_t *p, size_t n, struct pkt *out)
{
	struct cursor c;
	uint16_t type;

	*out = (struct pkt){ 0 };
	cursor_init(&c, p, n);
	switch (linktype) {
	case 0:   /* NULL */
	case 108: /* LOOP */
		return pkt_null(&c, out);
	case 1: /* Ethernet: destination, source, EtherType */
		if (!cursor_skip(&c, 12) || !cursor_u16be(&c, &type))
			return PKT_ETRUNC;
		return pkt_ethertype(&c, type, out);
	case 12:  /* DLT_RAW on most systems */
	case 14:  /* DLT_RAW on OpenBSD */
	case 101: /* RAW */
		return pkt_ip(&c, out);
	case 228: /* IPV4 */
		return pkt_ipv4(&c, out);
	case 229: /* IPV6 */
		return pkt_ipv6(&c, out);
	case 113: /* LINUX_SLL: packet type, ARPHRD, address length, 8 address bytes, protocol */
		if (!cursor_skip(&c, 14) || !cursor_u16be(&c, &type))
			return PKT_ETRUNC;
		return pkt_ethertype(&c, type, out);
	case 276: /* LINUX_SLL2: protocol, reserved, ifindex, ARPHRD, type, address length, address */
		if (!cursor_u16be(&c, &type) || !cursor_skip(&c, 18))
			return PKT_ETRUNC;
		return pkt_ethertype(&c, type, out);
	}
	return PKT_ELINK;
}
