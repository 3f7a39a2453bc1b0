/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * L4: connections and TCP stream reassembly over decoded packets (shared/pkt.h). No I/O:
 * the caller feeds captured frames in capture order and receives the reassembled bytes
 * of each TCP direction, and every connection that ends, through callbacks.
 *
 * Packets come from numbered domains (a receiver uses one per sensor interface): a
 * connection is keyed by domain and 5-tuple (either direction) in a bounded table.
 * conn_id numbers the connections of one l4 instance in the order of their first
 * packet; proto_index numbers those of one protocol the same way (for TCP over one
 * file it equals Wireshark's tcp.stream); flow_id is a 63-bit hash of the domain and
 * the unordered address pair, the same for every connection between two peers.
 *
 * TCP reassembly, per direction (RFC 9293; sequence numbers compare modulo 2^32):
 *  - The stream starts after the SYN, or at the first segment seen (mid-stream pick-up).
 *  - Bytes below the next expected sequence number are dropped as retransmissions.
 *  - Overlaps: the first copy of a byte wins, whether it was delivered or buffered.
 *    An overlap with a buffered segment whose bytes differ counts as inconsistent;
 *    bytes already delivered are not kept, so a retransmission that rewrites them is
 *    counted as a retransmission only.
 *  - Out-of-order segments are buffered up to L4_LIMITS max_conn_buf bytes per
 *    direction and max_buf bytes in all. Beyond either limit, or when the connection
 *    ends, the hole before the first buffered byte is reported with on_gap() and
 *    delivery goes on: the stream never stalls. A FIN whose sequence number was not
 *    reached gives a final gap when the connection ends.
 *  - Client: the sender of a SYN without ACK, the receiver of a SYN+ACK, else the
 *    sender of the first packet.
 *  - A SYN without ACK on a known 5-tuple starts a new connection (the old one ends,
 *    L4_END_REUSED) when its sequence number differs from the first one that side sent
 *    (Wireshark's rule for reused ports), or when the old connection saw a FIN or RST
 *    (Wireshark 4.0 keeps such a SYN with the same sequence number in the old stream).
 * Connections end on l4_finish(), when a new SYN reuses their 5-tuple, when idle for
 * longer than their timeout in domain time (the newest packet time seen in the domain):
 * timeout_closed after FINs both ways or an RST, timeout_short for half-open TCP and
 * for UDP, timeout_tcp otherwise; and, at max_conns, the least recently active one is
 * evicted for a new one (counted). Every end reaches on_end() once, with the final
 * counters, after which the connection is freed.
 * IP fragments (RFC 791, RFC 8200 section 4.5) are reassembled, bounded by
 * max_frag_datagrams in progress, max_frag_bytes held and frag_timeout_ns from a
 * datagram's first fragment (capture time); the first copy of an overlapped 8-byte
 * block wins. A reassembled datagram is processed as a packet with the frame length
 * of its completing fragment (as Wireshark counts it). Every fragment dropped (limits,
 * timeout, bad offsets, left incomplete at l4_finish()) is counted.
 */
#ifndef PCAPLINE_L4_H
#define PCAPLINE_L4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/pkt.h"

enum {
	L4_CLIENT = 0,
	L4_SERVER = 1
};

enum l4_state {
	L4_ST_SYN_SENT = 0, /* SYN seen, no SYN+ACK yet */
	L4_ST_ESTABLISHED,  /* handshake seen, or picked up mid-stream; also UDP */
	L4_ST_CLOSING,      /* a FIN seen in one direction */
	L4_ST_CLOSED,       /* FINs seen in both directions */
	L4_ST_RESET         /* an RST seen */
};

struct l4_limits {
	size_t max_conns;          /* connections tracked; packets of others are counted, skipped */
	size_t max_conn_buf;       /* out-of-order bytes buffered per direction */
	size_t max_buf;            /* out-of-order bytes buffered in all connections */
	size_t max_frag_datagrams; /* IPv4 datagrams being reassembled */
	size_t max_frag_bytes;     /* bytes held for them */
	uint64_t frag_timeout_ns;
	uint64_t timeout_closed_ns; /* idle timeouts, see above; UINT64_MAX: never */
	uint64_t timeout_short_ns;
	uint64_t timeout_tcp_ns;
};
#define L4_DEFAULT_MAX_CONNS          262144
#define L4_DEFAULT_MAX_CONN_BUF       (1u << 20)
#define L4_DEFAULT_MAX_BUF            (256u << 20)
#define L4_DEFAULT_MAX_FRAG_DATAGRAMS 1024
#define L4_DEFAULT_MAX_FRAG_BYTES     (4u << 20)
#define L4_DEFAULT_FRAG_TIMEOUT_NS    (30ull * 1000000000) /* Linux ipfrag_time */
#define L4_DEFAULT_TIMEOUT_CLOSED_NS  (10ull * 1000000000)
#define L4_DEFAULT_TIMEOUT_SHORT_NS   (120ull * 1000000000)
#define L4_DEFAULT_TIMEOUT_TCP_NS     (3600ull * 1000000000)
/* Upper bound of the memory one tracked connection takes, table slot included. */
#define L4_CONN_BYTES                 512

struct l4_endpoint {
	uint8_t addr[16]; /* 4 bytes used for IPv4 */
	uint16_t port;
};

/* Per direction, indexed by L4_CLIENT (client to server) and L4_SERVER. */
struct l4_side {
	uint64_t pkts;
	uint64_t bytes;        /* captured frame lengths (original length) */
	uint64_t delivered;    /* stream bytes handed to on_data() */
	uint64_t gap_bytes;    /* stream bytes reported missing with on_gap() */
	uint64_t retrans;      /* segments carrying only bytes already delivered */
	uint64_t out_of_order; /* segments that arrived ahead of the next expected byte */
	uint64_t zero_windows; /* segments advertising a zero window (no SYN, FIN or RST) */
	uint64_t resets;       /* RST segments */
	uint64_t overlaps;     /* segments overlapping buffered or delivered bytes */
	uint64_t bad_overlaps; /* overlaps with buffered bytes that differ */
};

enum l4_end {
	L4_END_FINISH = 0, /* l4_finish() */
	L4_END_IDLE,       /* idle timeout */
	L4_END_EVICTED,    /* the table was full */
	L4_END_REUSED      /* a new SYN on the same 5-tuple */
};

struct l4_conn_info {
	uint64_t conn_id;
	uint64_t proto_index;
	uint64_t flow_id;
	uint64_t user; /* the caller's, 0 at first (see l4_frame_conn()) */
	uint32_t domain;
	uint8_t family;           /* 4 or 6 */
	uint8_t proto;            /* 6 or 17 */
	bool midstream;           /* TCP picked up without the client's SYN */
	struct l4_endpoint ep[2]; /* [L4_CLIENT], [L4_SERVER] */
	struct l4_side side[2];
	uint64_t first_ns, last_ns;
	uint64_t rtt_ns; /* handshake: SYN to the ACK of the SYN+ACK (0: not seen) */
	enum l4_state state;
};

struct l4_stats {
	uint64_t pkts;                        /* frames given to l4_frame()/l4_packet() */
	uint64_t decode_errs;                 /* frames pkt_decode() refused, fragments excepted */
	uint64_t frag_pkts;                   /* IP fragments seen */
	uint64_t frag_reassembled;            /* IPv4 datagrams rebuilt from them */
	uint64_t frag_dropped;                /* fragments discarded (see above), IPv6 ones included */
	uint64_t frag_bad_overlaps;           /* 8-byte blocks received again with other bytes */
	uint64_t conns;                       /* connections started */
	uint64_t live;                        /* connections tracked now */
	uint64_t ended_idle, evicted, reused; /* connections ended for these reasons */
	uint64_t buf_flushes;                 /* times a buffer limit forced a gap */
	uint64_t gap_bytes;
	size_t buffered; /* out-of-order bytes held now */
};

/*
 * Callbacks; conn is borrowed for the duration of the call. on_data gets TCP stream
 * bytes in order (and every UDP datagram payload); on_gap the length of a hole in a
 * TCP stream; on_end a connection that ends (it is freed after the call). Any may be
 * NULL.
 */
struct l4_callbacks {
	void (*on_data)(void *arg, const struct l4_conn_info *conn, int dir, const uint8_t *p, size_t n);
	void (*on_gap)(void *arg, const struct l4_conn_info *conn, int dir, uint64_t len);
	void (*on_end)(void *arg, const struct l4_conn_info *conn, enum l4_end why);
	void *arg;
};

struct l4;

/* Limits of 0 take the defaults. Returns NULL with errno set. Free with l4_free(). */
struct l4 *l4_new(const struct l4_limits *lim, const struct l4_callbacks *cb);
void l4_free(struct l4 *l);

#define L4_MAX_DOMAINS 65536

/* Decodes and processes one captured frame (len bytes captured, origlen on the wire)
 * of a domain (< L4_MAX_DOMAINS). Returns 0 (an IP fragment, held or dropped,
 * included), a PKT_E* code for a frame counted and skipped, -EINVAL for a domain out
 * of range, or -ENOMEM. */
int l4_frame(struct l4 *l, uint32_t domain, uint64_t ts_ns, uint32_t linktype, const uint8_t *p, size_t len,
	size_t origlen);
/* Processes one already decoded packet. Returns 0, -EINVAL or -ENOMEM. */
int l4_packet(struct l4 *l, uint32_t domain, uint64_t ts_ns, const struct pkt *p, size_t origlen);
/* The connection the last l4_frame() or l4_packet() counted the packet in, or NULL (not
 * decoded, a fragment held, an error). Valid until the next call; only user may be
 * written. */
struct l4_conn_info *l4_frame_conn(struct l4 *l);
/* Ends every connection: buffered bytes are delivered after gaps, then on_end(). */
void l4_finish(struct l4 *l);

/* Calls fn for every tracked connection, in no particular order. */
void l4_each(const struct l4 *l, void (*fn)(void *arg, const struct l4_conn_info *conn), void *arg);
const struct l4_stats *l4_stats(const struct l4 *l);
const char *l4_state_name(enum l4_state s);
const char *l4_end_name(enum l4_end why);

#endif
