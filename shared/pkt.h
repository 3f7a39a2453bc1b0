/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Packet decoding: link, network and transport headers of one captured packet, read
 * through a bounds-checked cursor. No reassembly, no allocation, no I/O: a fragment is
 * reported as such, and the transport payload is what this one packet carries.
 *
 * Link types (tcpdump.org LINKTYPE_ values, and the DLT_ values libpcap hands out live
 * where they differ): NULL 0 and LOOP 108 (BSD loopback, family in either byte order),
 * Ethernet 1 (with any number up to 8 of 802.1Q / 802.1ad / QinQ tags), raw IP 101
 * (DLT_RAW 12 and 14), IPv4 228, IPv6 229, Linux cooked SLL 113 and SLL2 276.
 * Network: IPv4 (options skipped) and IPv6 (hop-by-hop, routing, destination options,
 * fragment and AH headers skipped). Transport: UDP and TCP.
 */
#ifndef PCAPLINE_SHARED_PKT_H
#define PCAPLINE_SHARED_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pkt_err {
	PKT_OK = 0,
	PKT_ELINK = -1,  /* link type not decoded here, or the frame does not carry IP */
	PKT_ETRUNC = -2, /* a header is cut short (snaplen, or a broken packet) */
	PKT_EFRAG = -3,  /* an IP fragment: the transport header or payload is incomplete */
	PKT_EINVAL = -4, /* a header field holds an impossible value */
	PKT_EPROTO = -5  /* IP, but neither UDP nor TCP */
};

struct pkt {
	uint8_t family;     /* 4 or 6 */
	uint8_t proto;      /* 6 (TCP) or 17 (UDP) */
	const uint8_t *src; /* 4 or 16 bytes, borrowed from the packet */
	const uint8_t *dst;
	uint16_t sport, dport;
	const uint8_t *payload; /* transport payload, borrowed from the packet */
	size_t payload_len;     /* bytes of it captured (IP and UDP lengths bound it) */
	bool cut;               /* the capture holds less payload than the headers announce */
	/* PKT_EFRAG: the fragment (IPv4: RFC 791; IPv6: RFC 8200, section 4.5), payload is
	 * its part of the datagram and proto the datagram's protocol (any, not only TCP and
	 * UDP). IPv6 identifications are 32 bits, IPv4 ones 16. */
	uint32_t frag_id;
	uint16_t frag_off; /* in bytes */
	bool frag_more;
	/* TCP only (RFC 9293, section 3.1): zero for UDP. */
	uint32_t tcp_seq, tcp_ack;
	uint16_t tcp_win;  /* the window field as sent (not scaled) */
	uint8_t tcp_flags; /* PKT_TCP_* bits */
};

#define PKT_TCP_FIN 0x01
#define PKT_TCP_SYN 0x02
#define PKT_TCP_RST 0x04
#define PKT_TCP_PSH 0x08
#define PKT_TCP_ACK 0x10

/* Decodes the n bytes at p, captured with the given link type, down to the transport
 * payload. Returns PKT_OK with *out filled, or a PKT_E* code. */
int pkt_decode(uint32_t linktype, const uint8_t *p, size_t n, struct pkt *out);

/* Decodes the UDP or TCP header at the start of a (reassembled) IP payload of n bytes;
 * out->family, src and dst must be set already. Returns PKT_OK or a PKT_E* code. */
int pkt_decode_l4(uint8_t proto, const uint8_t *p, size_t n, struct pkt *out);

const char *pkt_strerror(int err);

#endif
