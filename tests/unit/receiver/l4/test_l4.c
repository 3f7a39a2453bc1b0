/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/l4: TCP reassembly (sequence wrap-around, out-of-order segments,
 * the first-copy-wins overlap policy, gap markers, buffer and connection limits), the
 * connection table, and IPv4 fragment reassembly with its limits. Packets are built as decoded struct pkt; the callbacks record
 * each stream as text where a gap of N bytes shows as "<gapN>".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "receiver/l4/l4.h"

static const uint8_t ip_a[4] = { 198, 18, 0, 1 }, ip_b[4] = { 198, 18, 0, 2 }, ip_c[4] = { 198, 18, 0, 3 };

struct rec {
	char out[2][4096];
	size_t len[2];
	struct l4_conn_info ended[16]; /* the first connections that ended */
	enum l4_end why[16];
	size_t nended;
};

static void
rec_add(struct rec *r, int dir, const char *p, size_t n)
{
	assert_true(r->len[dir] + n < sizeof(r->out[dir]));
	memcpy(r->out[dir] + r->len[dir], p, n);
	r->len[dir] += n;
	r->out[dir][r->len[dir]] = '\0';
}

static void
on_data(void *arg, const struct l4_conn_info *c, int dir, const uint8_t *p, size_t n)
{
	rec_add(arg, dir, (const char *)p, n);
}

static void
on_gap(void *arg, const struct l4_conn_info *c, int dir, uint64_t len)
{
	char t[32];
	int n = snprintf(t, sizeof(t), "<gap%llu>", (unsigned long long)len);

	rec_add(arg, dir, t, (size_t)n);
}

static void
on_end(void *arg, const struct l4_conn_info *c, enum l4_end why)
{
	struct rec *r = arg;

	if (r->nended < 16) {
		r->why[r->nended] = why;
		r->ended[r->nended] = *c;
	}
	r->nended++;
}

struct find {
	uint64_t id;
	const struct l4_conn_info *c;
};

static void
find_one(void *arg, const struct l4_conn_info *c)
{
	struct find *f = arg;

	if (c->conn_id == f->id)
		f->c = c;
}

/* Connection id, live or ended; NULL when unknown. */
static const struct l4_conn_info *
conn(struct l4 *l, struct rec *r, uint64_t id)
{
	struct find f = { id, NULL };

	l4_each(l, find_one, &f);
	for (size_t i = 0; f.c == NULL && i < r->nended && i < 16; i++)
		if (r->ended[i].conn_id == id)
			f.c = &r->ended[i];
	return f.c;
}

static struct l4 *
mk(struct rec *r, const struct l4_limits *lim)
{
	struct l4_callbacks cb = { on_data, on_gap, on_end, r };
	struct l4 *l;

	memset(r, 0, sizeof(*r));
	l = l4_new(lim, &cb);
	assert_non_null(l);
	return l;
}

/* One TCP segment from a:1000 to b:80 (to_server) or back. */
static void
seg(struct l4 *l, bool to_server, uint8_t flags, uint32_t seq, const char *data)
{
	struct pkt p = { .family = 4, .proto = 6, .tcp_seq = seq, .tcp_flags = flags };

	p.src = to_server ? ip_a : ip_b;
	p.dst = to_server ? ip_b : ip_a;
	p.sport = to_server ? 1000 : 80;
	p.dport = to_server ? 80 : 1000;
	p.payload = (const uint8_t *)data;
	p.payload_len = data ? strlen(data) : 0;
	assert_int_equal(l4_packet(l, 0, 0, &p, 54 + p.payload_len), 0);
}

#define SYN PKT_TCP_SYN
#define ACK PKT_TCP_ACK
#define FIN PKT_TCP_FIN

static void
test_wraparound(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	seg(l, true, SYN, 0xfffffff8u, NULL);
	seg(l, false, SYN | ACK, 5, NULL);
	seg(l, true, ACK, 0xfffffff9u, "0123456");  /* ends at 2^32 */
	seg(l, true, ACK, 0x00000004u, "BCD");      /* out of order past the wrap */
	seg(l, true, ACK, 0x00000000u, "789A");     /* fills the hole */
	seg(l, true, ACK, 0xfffffffcu, "3456789A"); /* retransmission across the wrap */
	l4_finish(l);
	assert_string_equal(r.out[L4_CLIENT], "0123456789ABCD");
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].retrans, 1);
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].out_of_order, 1);
	assert_int_equal(conn(l, &r, 0)->state, L4_ST_ESTABLISHED);
	l4_free(l);
}

static void
test_out_of_order(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	seg(l, true, SYN, 100, NULL);
	seg(l, true, ACK, 107, "ghi");
	seg(l, true, ACK, 104, "def");
	assert_int_equal(r.len[L4_CLIENT], 0);
	assert_int_equal(l4_stats(l)->buffered, 6);
	seg(l, true, ACK, 101, "abc");
	assert_string_equal(r.out[L4_CLIENT], "abcdefghi");
	assert_int_equal(l4_stats(l)->buffered, 0);
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].out_of_order, 2);
	l4_free(l);
}

/* The first copy of a byte wins: buffered bytes over a later in-order copy, delivered
 * bytes over any retransmission; differing buffered bytes count as bad overlaps. */
static void
test_overlap_first_wins(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);
	const struct l4_side *s;

	seg(l, true, SYN, 0, NULL);
	seg(l, true, ACK, 5, "EFGH");       /* buffered: bytes 5..8 */
	seg(l, true, ACK, 1, "abcdefghij"); /* in order, overlaps 5..8 with other bytes */
	assert_string_equal(r.out[L4_CLIENT], "abcdEFGHij");
	seg(l, true, ACK, 9, "XYk"); /* partial overlap with delivered bytes */
	assert_string_equal(r.out[L4_CLIENT], "abcdEFGHijk");
	seg(l, true, ACK, 21, "uvw");
	seg(l, true, ACK, 21, "uvw");   /* same bytes again: an overlap, consistent */
	seg(l, true, ACK, 20, "tUVWx"); /* differs from the buffered copy */
	seg(l, true, ACK, 12, "lmnopqrs");
	s = &conn(l, &r, 0)->side[L4_CLIENT];
	assert_string_equal(r.out[L4_CLIENT], "abcdEFGHijklmnopqrstuvwx");
	assert_int_equal(s->bad_overlaps, 2);
	assert_int_equal(s->overlaps, 4);
	l4_free(l);
}

static void
test_gap_at_finish(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	seg(l, true, SYN, 0, NULL);
	seg(l, true, ACK, 1, "ab");
	seg(l, true, ACK, 8, "hi");        /* 3..7 never arrives */
	seg(l, true, FIN | ACK, 15, NULL); /* 10..14 never arrives either */
	seg(l, false, ACK, 500, "srv");    /* mid-stream pick-up on the server side */
	assert_string_equal(r.out[L4_CLIENT], "ab");
	l4_finish(l);
	assert_string_equal(r.out[L4_CLIENT], "ab<gap5>hi<gap5>");
	assert_string_equal(r.out[L4_SERVER], "srv");
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].gap_bytes, 10);
	assert_int_equal(conn(l, &r, 0)->state, L4_ST_CLOSING);
	l4_free(l);
}

static void
test_buffer_limits(void **state)
{
	struct l4_limits lim = { .max_conn_buf = 8, .max_buf = 11 };
	struct rec r;
	struct l4 *l = mk(&r, &lim);

	seg(l, true, SYN, 0, NULL);
	seg(l, true, ACK, 11, "klmno");
	seg(l, true, ACK, 21, "uvw");
	assert_int_equal(r.len[L4_CLIENT], 0);
	/* 9 bytes buffered: above the per-direction limit, the first hole is skipped. */
	seg(l, true, ACK, 31, "E");
	assert_string_equal(r.out[L4_CLIENT], "<gap10>klmno");
	assert_int_equal(l4_stats(l)->buf_flushes, 1);
	/* The global limit counts every connection: 4 client bytes, and the server adds 8. */
	seg(l, false, SYN | ACK, 0, NULL);
	seg(l, false, ACK, 3, "12345678");
	assert_string_equal(r.out[L4_SERVER], "<gap2>12345678");
	l4_finish(l);
	assert_string_equal(r.out[L4_CLIENT], "<gap10>klmno<gap5>uvw<gap7>E");
	assert_int_equal(l4_stats(l)->buffered, 0);
	l4_free(l);
}

static void
test_conn_table(void **state)
{
	struct l4_limits lim = { .max_conns = 3 };
	struct rec r;
	struct l4 *l = mk(&r, &lim);
	struct pkt p = { .family = 4,
		.proto = 6,
		.tcp_flags = SYN | ACK,
		.src = ip_b,
		.dst = ip_a,
		.sport = 80,
		.dport = 1000 };

	/* A SYN+ACK first: its receiver is the client. */
	assert_int_equal(l4_packet(l, 0, 1, &p, 60), 0);
	seg(l, true, ACK, 1, "x");
	p = (struct pkt){ .family = 4, .proto = 17, .src = ip_a, .dst = ip_c, .sport = 53, .dport = 53 };
	assert_int_equal(l4_packet(l, 0, 2, &p, 60), 0);
	p.sport = 54;
	assert_int_equal(l4_packet(l, 0, 3, &p, 60), 0);
	assert_int_equal(l4_frame_conn(l)->conn_id, 2);
	/* Beyond max_conns: the least recently active UDP conversation makes room. */
	p.sport = 55;
	assert_int_equal(l4_packet(l, 0, 4, &p, 60), 0);
	assert_int_equal(l4_stats(l)->live, 3);
	assert_int_equal(l4_stats(l)->evicted, 1);
	assert_int_equal(r.nended, 1);
	assert_int_equal(r.ended[0].conn_id, 1);
	assert_int_equal(r.why[0], L4_END_EVICTED);
	assert_memory_equal(conn(l, &r, 0)->ep[L4_CLIENT].addr, ip_a, 4);
	assert_int_equal(conn(l, &r, 0)->ep[L4_CLIENT].port, 1000);
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].pkts, 1);
	assert_int_equal(conn(l, &r, 0)->side[L4_SERVER].pkts, 1);
	assert_int_equal(conn(l, &r, 2)->proto_index, 1);                   /* second UDP connection */
	assert_int_equal(conn(l, &r, 3)->flow_id, conn(l, &r, 2)->flow_id); /* same address pair */
	assert_int_equal(conn(l, &r, 1)->flow_id, conn(l, &r, 2)->flow_id);
	assert_true(conn(l, &r, 0)->flow_id != conn(l, &r, 2)->flow_id);
	/* The same 5-tuple in another domain is another connection, of another flow. */
	assert_int_equal(l4_packet(l, 1, 5, &p, 60), 0);
	assert_int_equal(l4_frame_conn(l)->conn_id, 4);
	assert_int_equal(l4_frame_conn(l)->domain, 1);
	assert_true(l4_frame_conn(l)->flow_id != conn(l, &r, 3)->flow_id);
	assert_int_equal(l4_packet(l, L4_MAX_DOMAINS, 5, &p, 60), -EINVAL);
	l4_finish(l);
	assert_int_equal(r.nended, 5);
	assert_int_equal(l4_stats(l)->live, 0);
	l4_free(l);
}

/* 200,000 connections through a table of 1,000: evictions keep the hash table
 * consistent (every later packet finds its connection or starts a new one). */
static void
test_eviction_churn(void **state)
{
	struct l4_limits lim = { .max_conns = 1000 };
	struct rec r;
	struct l4 *l = mk(&r, &lim);
	uint8_t src[4] = { 198, 18, 0, 0 }, dst[4] = { 198, 19, 0, 1 };
	struct pkt p = { .family = 4, .proto = 6, .tcp_flags = SYN, .src = src, .dst = dst, .dport = 80 };

	for (uint32_t i = 0; i < 200000; i++) {
		src[2] = (uint8_t)(i >> 16);
		src[3] = (uint8_t)(i >> 8);
		p.sport = (uint16_t)(1024 + (i & 0xff));
		p.tcp_seq = i;
		assert_int_equal(l4_packet(l, 0, i, &p, 60), 0);
		assert_int_equal(l4_frame_conn(l)->conn_id, i);
		/* A retransmitted SYN of a recent connection finds it. */
		if (i >= 400) {
			uint32_t j = i - 400;

			src[2] = (uint8_t)(j >> 16);
			src[3] = (uint8_t)(j >> 8);
			p.sport = (uint16_t)(1024 + (j & 0xff));
			p.tcp_seq = j;
			assert_int_equal(l4_packet(l, 0, i, &p, 60), 0);
			assert_int_equal(l4_frame_conn(l)->conn_id, j);
		}
	}
	assert_int_equal(l4_stats(l)->conns, 200000);
	assert_int_equal(l4_stats(l)->evicted, 199000);
	assert_int_equal(l4_stats(l)->live, 1000);
	l4_free(l);
}

/* A new SYN on a 5-tuple: a retransmission keeps the connection, another initial
 * sequence number or a SYN after FIN or RST starts a new one (Wireshark's rule). */
static void
test_port_reuse(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	seg(l, true, SYN, 100, NULL);
	seg(l, true, SYN, 100, NULL); /* retransmitted */
	assert_int_equal(l4_stats(l)->conns, 1);
	seg(l, false, SYN | ACK, 7000, NULL);
	seg(l, true, ACK, 101, "one");
	seg(l, true, FIN | ACK, 104, NULL);
	seg(l, false, FIN | ACK, 7001, NULL);
	seg(l, true, SYN, 100, NULL); /* same ISN, but after FINs: new */
	assert_int_equal(l4_stats(l)->conns, 2);
	assert_int_equal(r.why[0], L4_END_REUSED);
	assert_int_equal(r.ended[0].state, L4_ST_CLOSED);
	seg(l, false, SYN | ACK, 9000, NULL);
	seg(l, true, ACK, 101, "two");
	seg(l, true, SYN, 5000, NULL); /* another ISN, no FIN: new */
	assert_int_equal(l4_stats(l)->conns, 3);
	assert_int_equal(l4_stats(l)->reused, 2);
	l4_finish(l);
	assert_string_equal(r.out[L4_CLIENT], "onetwo");
	assert_int_equal(conn(l, &r, 1)->side[L4_CLIENT].delivered, 3);
	assert_int_equal(conn(l, &r, 1)->proto_index, 1);
	l4_free(l);
}

/* Idle timeouts in domain time, by class: closed, half-open/UDP, established. */
static void
test_idle_timeouts(void **state)
{
	struct l4_limits lim = { .timeout_closed_ns = 10, .timeout_short_ns = 100, .timeout_tcp_ns = 1000 };
	struct rec r;
	struct l4 *l = mk(&r, &lim);
	struct pkt p = { .family = 4, .proto = 6, .src = ip_a, .dst = ip_c, .sport = 1, .dport = 2 };

	seg(l, true, SYN, 0, NULL); /* established below, at time 0 */
	seg(l, false, SYN | ACK, 0, NULL);
	p.tcp_flags = SYN; /* half-open, time 5 */
	assert_int_equal(l4_packet(l, 0, 5, &p, 60), 0);
	p.sport = 3;
	p.tcp_flags = PKT_TCP_RST; /* reset, time 6 */
	assert_int_equal(l4_packet(l, 0, 6, &p, 60), 0);
	p.sport = 4;
	p.tcp_flags = ACK; /* another domain's clock does not count */
	assert_int_equal(l4_packet(l, 1, 5000, &p, 60), 0);
	assert_int_equal(r.nended, 0);
	p.sport = 5;
	assert_int_equal(l4_packet(l, 0, 20, &p, 60), 0);
	assert_int_equal(r.nended, 1); /* the reset one, idle 14 > 10 */
	assert_int_equal(r.ended[0].state, L4_ST_RESET);
	assert_int_equal(r.why[0], L4_END_IDLE);
	assert_int_equal(l4_packet(l, 0, 106, &p, 60), 0);
	assert_int_equal(r.nended, 2); /* the half-open one */
	assert_int_equal(r.ended[1].state, L4_ST_SYN_SENT);
	assert_int_equal(l4_packet(l, 0, 1001, &p, 60), 0);
	assert_int_equal(r.nended, 3); /* the established one */
	assert_int_equal(r.ended[2].conn_id, 0);
	assert_int_equal(l4_stats(l)->ended_idle, 3);
	l4_free(l);
}

/* Handshake RTT, zero windows and resets per side. */
static void
test_conn_stats(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);
	struct pkt p = { .family = 4, .proto = 6, .src = ip_a, .dst = ip_b, .sport = 1000, .dport = 80 };

	p.tcp_flags = SYN;
	p.tcp_win = 0; /* a SYN's window does not count */
	assert_int_equal(l4_packet(l, 0, 1000, &p, 60), 0);
	p = (struct pkt){ .family = 4,
		.proto = 6,
		.src = ip_b,
		.dst = ip_a,
		.sport = 80,
		.dport = 1000,
		.tcp_flags = SYN | ACK,
		.tcp_win = 100 };
	assert_int_equal(l4_packet(l, 0, 1400, &p, 60), 0);
	p.tcp_flags = ACK;
	p.tcp_seq = 1;
	p.tcp_win = 0; /* the server's window is full */
	assert_int_equal(l4_packet(l, 0, 1500, &p, 60), 0);
	p = (struct pkt){ .family = 4,
		.proto = 6,
		.src = ip_a,
		.dst = ip_b,
		.sport = 1000,
		.dport = 80,
		.tcp_flags = ACK,
		.tcp_seq = 1,
		.tcp_win = 50 };
	assert_int_equal(l4_packet(l, 0, 1600, &p, 60), 0);
	assert_int_equal(l4_frame_conn(l)->rtt_ns, 600);
	assert_false(l4_frame_conn(l)->midstream);
	p.tcp_flags = PKT_TCP_RST;
	assert_int_equal(l4_packet(l, 0, 1700, &p, 60), 0);
	assert_int_equal(l4_frame_conn(l)->side[L4_SERVER].zero_windows, 1);
	assert_int_equal(l4_frame_conn(l)->side[L4_CLIENT].zero_windows, 0);
	assert_int_equal(l4_frame_conn(l)->side[L4_CLIENT].resets, 1);
	assert_int_equal(l4_frame_conn(l)->state, L4_ST_RESET);
	/* Picked up mid-stream: no RTT. */
	p.sport = 1001;
	p.tcp_flags = ACK;
	assert_int_equal(l4_packet(l, 0, 1800, &p, 60), 0);
	assert_true(l4_frame_conn(l)->midstream);
	assert_int_equal(l4_frame_conn(l)->rtt_ns, 0);
	l4_free(l);
}

static void
test_rst(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	seg(l, true, SYN, 0, NULL);
	seg(l, true, PKT_TCP_RST | ACK, 1, "diagnostic");
	l4_finish(l);
	assert_int_equal(r.len[L4_CLIENT], 0);
	assert_int_equal(conn(l, &r, 0)->state, L4_ST_RESET);
	l4_free(l);
}

/* An IPv4 fragment (linktype 228): 20-byte header, protocol UDP, then the bytes. */
static int
frag(struct l4 *l, uint64_t ts, uint16_t id, size_t off, bool more, const uint8_t *p, size_t n)
{
	uint8_t b[128] = { 0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17 };
	uint16_t fo = (uint16_t)(off / 8) | (more ? 0x2000 : 0);

	assert_true(n + 20 <= sizeof(b));
	b[2] = (uint8_t)((n + 20) >> 8);
	b[3] = (uint8_t)(n + 20);
	b[4] = (uint8_t)(id >> 8);
	b[5] = (uint8_t)id;
	b[6] = (uint8_t)(fo >> 8);
	b[7] = (uint8_t)fo;
	memcpy(b + 12, ip_a, 4);
	memcpy(b + 16, ip_b, 4);
	memcpy(b + 20, p, n);
	return l4_frame(l, 0, ts, 228, b, n + 20, n + 20);
}

/* A UDP datagram of 8 + 24 bytes, cut into 8-byte fragments. */
static const uint8_t dgram[32] = { 0x04, 0x00, 0x00, 0x35, 0x00, 32, 0, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g',
	'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x' };

static void
test_fragments(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	/* Out of order, with a duplicate and an overlap that tries other bytes. */
	assert_int_equal(frag(l, 1, 7, 24, false, dgram + 24, 8), 0);
	frag(l, 2, 7, 8, true, dgram + 8, 16);
	frag(l, 3, 7, 8, true, (const uint8_t *)"XXXXXXXXXXXXXXXX", 16);
	assert_int_equal(r.len[L4_CLIENT], 0);
	frag(l, 4, 7, 0, true, dgram, 8);
	assert_string_equal(r.out[L4_CLIENT], "abcdefghijklmnopqrstuvwx");
	assert_int_equal(l4_stats(l)->frag_reassembled, 1);
	assert_int_equal(l4_stats(l)->frag_bad_overlaps, 2);
	assert_int_equal(l4_stats(l)->frag_dropped, 0);
	/* The frame length counted is the completing fragment's. */
	assert_int_equal(conn(l, &r, 0)->side[L4_CLIENT].bytes, 28);
	assert_int_equal(conn(l, &r, 0)->ep[L4_SERVER].port, 53);
	/* A fragment not a multiple of 8 bytes (not the last), and one past 65535. */
	frag(l, 5, 8, 0, true, dgram, 7);
	frag(l, 5, 8, 65528, false, dgram, 16);
	assert_int_equal(l4_stats(l)->frag_dropped, 2);
	/* Left incomplete: dropped at l4_finish(). */
	frag(l, 6, 9, 0, true, dgram, 8);
	l4_finish(l);
	assert_int_equal(l4_stats(l)->frag_dropped, 3);
	l4_free(l);
}

static void
test_fragment_limits(void **state)
{
	struct l4_limits lim = { .max_frag_datagrams = 2, .max_frag_bytes = 40, .frag_timeout_ns = 100 };
	struct rec r;
	struct l4 *l = mk(&r, &lim);

	frag(l, 1, 1, 0, true, dgram, 8);
	frag(l, 1, 2, 0, true, dgram, 8);
	frag(l, 1, 3, 0, true, dgram, 8); /* a third datagram */
	assert_int_equal(l4_stats(l)->frag_dropped, 1);
	frag(l, 1, 2, 48, true, dgram, 8); /* 56 bytes for datagram 2: above max_frag_bytes */
	assert_int_equal(l4_stats(l)->frag_dropped, 3);
	frag(l, 200, 4, 0, true, dgram, 8); /* datagram 1 times out */
	assert_int_equal(l4_stats(l)->frag_dropped, 4);
	frag(l, 201, 4, 24, false, dgram + 24, 8);
	frag(l, 202, 4, 8, true, dgram + 8, 16);
	assert_string_equal(r.out[L4_CLIENT], "abcdefghijklmnopqrstuvwx");
	l4_free(l);
}

/* An IPv6 fragment (linktype 229): 40-byte header, a fragment header, then the bytes. */
static int
frag6(struct l4 *l, uint64_t ts, uint32_t id, size_t off, bool more, const uint8_t *p, size_t n)
{
	uint8_t b[160] = { 0x60, 0, 0, 0, 0, 0, 44, 64 };
	uint16_t fo = (uint16_t)off | (more ? 1 : 0);

	assert_true(n + 48 <= sizeof(b));
	b[4] = (uint8_t)((n + 8) >> 8);
	b[5] = (uint8_t)(n + 8);
	b[8 + 15] = 1;  /* ::1 */
	b[24 + 15] = 2; /* ::2 */
	b[40] = 17;
	b[42] = (uint8_t)(fo >> 8);
	b[43] = (uint8_t)fo;
	b[44] = (uint8_t)(id >> 24);
	b[45] = (uint8_t)(id >> 16);
	b[46] = (uint8_t)(id >> 8);
	b[47] = (uint8_t)id;
	memcpy(b + 48, p, n);
	return l4_frame(l, 0, ts, 229, b, n + 48, n + 48);
}

static void
test_fragments_v6(void **state)
{
	struct rec r;
	struct l4 *l = mk(&r, NULL);

	assert_int_equal(frag6(l, 1, 0x01020304, 16, false, dgram + 16, 16), 0);
	assert_null(l4_frame_conn(l));
	frag6(l, 2, 0x01020305, 0, true, dgram, 16); /* another datagram: other id */
	frag6(l, 3, 0x01020304, 0, true, dgram, 16);
	assert_string_equal(r.out[L4_CLIENT], "abcdefghijklmnopqrstuvwx");
	assert_non_null(l4_frame_conn(l));
	assert_int_equal(l4_frame_conn(l)->family, 6);
	assert_int_equal(l4_frame_conn(l)->ep[L4_SERVER].port, 53);
	assert_int_equal(l4_frame_conn(l)->side[L4_CLIENT].bytes, 64);
	assert_int_equal(l4_stats(l)->frag_pkts, 3);
	assert_int_equal(l4_stats(l)->frag_reassembled, 1);
	l4_finish(l);
	assert_int_equal(l4_stats(l)->frag_dropped, 1);
	l4_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wraparound),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_overlap_first_wins),
		cmocka_unit_test(test_gap_at_finish),
		cmocka_unit_test(test_buffer_limits),
		cmocka_unit_test(test_conn_table),
		cmocka_unit_test(test_eviction_churn),
		cmocka_unit_test(test_port_reuse),
		cmocka_unit_test(test_idle_timeouts),
		cmocka_unit_test(test_conn_stats),
		cmocka_unit_test(test_rst),
		cmocka_unit_test(test_fragments),
		cmocka_unit_test(test_fragment_limits),
		cmocka_unit_test(test_fragments_v6),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
