/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * L4: connections and TCP stream reassembly over decoded packets (shared/pkt.h). No I/O:
 * the caller feeds captured frames in capture order and receives the reassembled bytes
 * of each TCP direction through callbacks.
 *
 * Connections are keyed by the 5-tuple (either direction) in a bounded hash table.
 * conn_id numbers every connection (TCP and UDP) in the order of its first packet;
 * proto_index numbers the connections of one protocol the same way (for TCP it equals
 * Wireshark's tcp.stream); flow_id numbers unordered address pairs by first appearance.
 *
 * TCP reassembly, per direction (RFC 9293; sequence numbers compare modulo 2^32):
 *  - The stream starts after the SYN, or at the first segment seen (mid-stream pick-up).
 *  - Bytes below the next expected sequence number are dropped as retransmissions.
 *  - Overlaps: the first copy of a byte wins, whether it was delivered or buffered.
 *    An overlap with a buffered segment whose bytes differ counts as inconsistent;
 *    bytes already delivered are not kept, so a retransmission that rewrites them is
 *    counted as a retransmission only.
 *  - Out-of-order segments are buffered up to L4_LIMITS max_conn_buf bytes per
 *    direction and max_buf bytes in all. Beyond either limit, or at l4_finish(), the
 *    hole before the first buffered byte is reported with on_gap() and delivery goes
 *    on: the stream never stalls. A FIN whose sequence number was not reached gives
 *    a final gap at l4_finish().
 *  - Client: the sender of a SYN without ACK, the receiver of a SYN+ACK, else the
 *    sender of the first packet.
 * IPv4 fragments (RFC 791) are reassembled, bounded by max_frag_datagrams in progress,
 * max_frag_bytes held and frag_timeout_ns from a datagram's first fragment (capture
 * time); the first copy of an overlapped 8-byte block wins. A reassembled datagram is
 * processed as a packet with the frame length of its completing fragment (as Wireshark
 * counts it). Every fragment dropped (limits, timeout, bad offsets, left incomplete at
 * l4_finish()) is counted. IPv6 fragments are counted as frag_pkts and skipped.
 */
#ifndef PCAPLINE_L4_H
#define PCAPLINE_L4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkt.h"

enum { L4_CLIENT = 0, L4_SERVER = 1 };

enum l4_state {
	L4_ST_SYN_SENT = 0, /* SYN seen, no SYN+ACK yet */
	L4_ST_ESTABLISHED,  /* handshake seen, or picked up mid-stream; also UDP */
	L4_ST_CLOSING,      /* a FIN seen in one direction */
	L4_ST_CLOSED,       /* FINs seen in both directions */
	L4_ST_RESET         /* an RST seen */
};

struct l4_limits {
	size_t max_conns;    /* connections tracked; packets of others are counted, skipped */
	size_t max_conn_buf; /* out-of-order bytes buffered per direction */
	size_t max_buf;      /* out-of-order bytes buffered in all connections */
	size_t max_frag_datagrams; /* IPv4 datagrams being reassembled */
	size_t max_frag_bytes;     /* bytes held for them */
	uint64_t frag_timeout_ns;
};
#define L4_DEFAULT_MAX_CONNS 1000000
#define L4_DEFAULT_MAX_CONN_BUF (1u << 20)
#define L4_DEFAULT_MAX_BUF (256u << 20)
#define L4_DEFAULT_MAX_FRAG_DATAGRAMS 1024
#define L4_DEFAULT_MAX_FRAG_BYTES (4u << 20)
#define L4_DEFAULT_FRAG_TIMEOUT_NS (30ull * 1000000000) /* Linux ipfrag_time */

struct l4_endpoint {
	uint8_t addr[16]; /* 4 bytes used for IPv4 */
	uint16_t port;
};

/* Per direction, indexed by L4_CLIENT (client to server) and L4_SERVER. */
struct l4_side {
	uint64_t pkts;
	uint64_t bytes;       /* captured frame lengths (original length) */
	uint64_t delivered;   /* stream bytes handed to on_data() */
	uint64_t gap_bytes;   /* stream bytes reported missing with on_gap() */
	uint64_t retrans;     /* segments carrying only bytes already delivered */
	uint64_t out_of_order; /* segments that arrived ahead of the next expected byte */
	uint64_t overlaps;    /* segments overlapping buffered or delivered bytes */
	uint64_t bad_overlaps; /* overlaps with buffered bytes that differ */
};

struct l4_conn_info {
	uint64_t conn_id;
	uint64_t proto_index;
	uint64_t flow_id;
	uint8_t family; /* 4 or 6 */
	uint8_t proto;  /* 6 or 17 */
	struct l4_endpoint ep[2]; /* [L4_CLIENT], [L4_SERVER] */
	struct l4_side side[2];
	uint64_t first_ns, last_ns;
	enum l4_state state;
};

struct l4_stats {
	uint64_t pkts;        /* frames given to l4_frame()/l4_packet() */
	uint64_t decode_errs; /* frames pkt_decode() refused, fragments excepted */
	uint64_t frag_pkts;   /* IP fragments seen */
	uint64_t frag_reassembled; /* IPv4 datagrams rebuilt from them */
	uint64_t frag_dropped; /* fragments discarded (see above), IPv6 ones included */
	uint64_t frag_bad_overlaps; /* 8-byte blocks received again with other bytes */
	uint64_t untracked_pkts; /* packets of connections beyond max_conns */
	uint64_t conns;
	uint64_t buf_flushes; /* times a buffer limit forced a gap */
	uint64_t gap_bytes;
	size_t buffered;      /* out-of-order bytes held now */
};

/*
 * Callbacks; conn is borrowed for the duration of the call. on_data gets TCP stream
 * bytes in order (and every UDP datagram payload); on_gap the length of a hole in a
 * TCP stream. Either may be NULL.
 */
struct l4_callbacks {
	void (*on_data)(void *arg, const struct l4_conn_info *conn, int dir, const uint8_t *p, size_t n);
	void (*on_gap)(void *arg, const struct l4_conn_info *conn, int dir, uint64_t len);
	void *arg;
};

struct l4;

/* Limits of 0 take the defaults. Returns NULL with errno set. Free with l4_free(). */
struct l4 *l4_new(const struct l4_limits *lim, const struct l4_callbacks *cb);
void l4_free(struct l4 *l);

/* Decodes and processes one captured frame (len bytes captured, origlen on the wire).
 * Returns 0 (an IPv4 fragment, held or dropped, included), a PKT_E* code for a frame
 * counted and skipped, or -ENOMEM. */
int l4_frame(struct l4 *l, uint64_t ts_ns, uint32_t linktype, const uint8_t *p, size_t len, size_t origlen);
/* Processes one already decoded packet. Returns 0 or -ENOMEM. */
int l4_packet(struct l4 *l, uint64_t ts_ns, const struct pkt *p, size_t origlen);
/* Ends every connection: buffered bytes are delivered after gaps. */
void l4_finish(struct l4 *l);

size_t l4_conn_count(const struct l4 *l);
/* Connection by conn_id (0 .. l4_conn_count() - 1); borrowed until the next call. */
const struct l4_conn_info *l4_conn(const struct l4 *l, size_t conn_id);
const struct l4_stats *l4_stats(const struct l4 *l);
const char *l4_state_name(enum l4_state s);

#endif
