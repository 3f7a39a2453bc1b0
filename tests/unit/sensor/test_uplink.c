/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for sensor/uplink.c: the window (room, pending counts and bytes, order,
 * renumbering for a new epoch) without any network; then against a real receiver
 * (receiver/ingest/session.c and a store in a temporary repository) on 127.0.0.1 port 0
 * in the same libev loop, plain and over mutual TLS with certificates made by
 * scripts/pcapline-certs: every batch ACKed and stored exactly once, fail-over past a
 * dead receiver, a refusal that retrying cannot cure, an epoch the receiver already
 * holds further than the sensor numbered, and a receiver whose frames are too small.
 * The loop runs until a condition holds, bounded by a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "proto/wire.h"
#include "receiver/ingest/session.h"
#include "receiver/store/store.h"
#include "sensor/batcher.h"
#include "sensor/uplink.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "shared/tls.h"
#include "tests/unit/testutil.h"

#define EPOCH UINT64_C(0x00c0ffee00c0ffee)
#define T0    UINT64_C(1700000000000000000)

/* What the uplink's callbacks saw. */
struct seen {
	unsigned room, sessions, epoch_reused, refused;
	char why[512];
	uint64_t next_seq; /* what next_seq() answers */
};

static void
cb_room(void *arg)
{
	((struct seen *)arg)->room++;
}

static void
cb_session(void *arg)
{
	((struct seen *)arg)->sessions++;
}

static uint64_t
cb_next_seq(void *arg)
{
	return ((struct seen *)arg)->next_seq;
}

static void
cb_epoch(void *arg)
{
	((struct seen *)arg)->epoch_reused++;
}

static void
cb_refused(void *arg, const char *why)
{
	struct seen *s = arg;

	s->refused++;
	snprintf(s->why, sizeof(s->why), "%s", why);
}

/* One batch of n records of 100 bytes (fill, ts T0 + base + i), numbered seq. */
static struct batch *sealed_one;

static void
on_sealed(void *arg, struct batch *b)
{
	(void)arg;
	sealed_one = b;
}

static struct batch *
make_batch(uint64_t seq, uint64_t base, unsigned n)
{
	struct batcher *bt = batcher_new(1 << 20, seq, on_sealed, NULL);
	uint8_t d[100];

	sealed_one = NULL;
	for (unsigned i = 0; i < n; i++) {
		memset(d, (int)(base + i), sizeof(d));
		batcher_add(bt, 0, T0 + base + i, d, sizeof(d), 100);
	}
	batcher_flush(bt);
	batcher_free(bt);
	assert_non_null(sealed_one);
	return sealed_one;
}

static struct proto_hello hello;

static void
init_hello(const char *id, const char *token)
{
	memset(&hello, 0, sizeof(hello));
	snprintf(hello.sensor_id, sizeof(hello.sensor_id), "%s", id);
	snprintf(hello.version, sizeof(hello.version), "test");
	snprintf(hello.token, sizeof(hello.token), "%s", token);
	hello.caps = PROTO_CAP_LZ4;
	hello.epoch = EPOCH;
	hello.n_ifaces = 1;
	hello.ifaces[0] = (struct proto_iface){ .linktype = 1, .snaplen = 65535 };
	snprintf(hello.ifaces[0].name, sizeof(hello.ifaces[0].name), "eth0");
}

static struct uplink_opts
opts(const struct uplink_target *t, size_t n, struct seen *s, uint64_t window)
{
	return (struct uplink_opts){
		.targets = t,
		.n_targets = n,
		.hello = &hello,
		.window_bytes = window,
		.max_batch_frame = 1 << 20,
		.on_room = cb_room,
		.on_session = cb_session,
		.next_seq = cb_next_seq,
		.on_epoch_reused = cb_epoch,
		.on_refused = cb_refused,
		.arg = s,
	};
}

struct order {
	uint64_t seq[16];
	size_t n;
};

static void
collect_order(void *arg, const struct batch *b)
{
	struct order *o = arg;

	o->seq[o->n++] = b->seq;
}

static void
collect_moved(void *arg, uint64_t old, uint64_t seq)
{
	struct order *o = arg;

	o->seq[o->n++] = old * 1000 + seq;
}

static void
test_window_offline(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct uplink_target t = { .host = "127.0.0.1", .port = "9" };
	struct seen s = { 0 };
	struct batch *b[3];
	struct uplink_opts o;
	struct uplink *u;
	struct uplink_stats st;
	struct order ord = { 0 };

	(void)state;
	init_hello("s1", "");
	for (int i = 0; i < 3; i++)
		b[i] = make_batch((uint64_t)i + 1, (uint64_t)i * 10, 10);
	/* The window holds the first two batches exactly. */
	o = opts(&t, 1, &s, b[0]->len + b[1]->len);
	u = uplink_new(loop, &o);
	assert_non_null(u);
	assert_true(uplink_idle(u));
	/* An empty window takes any batch, however large. */
	assert_true(uplink_has_room(u, 1u << 30));
	assert_true(uplink_has_room(u, b[0]->len));
	uplink_push(u, b[0]);
	assert_true(uplink_has_room(u, b[1]->len));
	assert_false(uplink_has_room(u, b[1]->len + 1));
	uplink_push(u, b[1]);
	assert_false(uplink_has_room(u, 1));
	/* The caller checks room; a push beyond it is still kept and counted. */
	uplink_push(u, b[2]);
	uplink_stats(u, &st);
	assert_int_equal(st.pending_batches, 3);
	assert_int_equal(st.pending_bytes, b[0]->len + b[1]->len + b[2]->len);
	assert_int_equal(st.batches_acked, 0);
	assert_false(st.connected);
	assert_false(uplink_idle(u));
	assert_int_equal(uplink_acked_seq(u), 0);
	uplink_foreach_pending(u, collect_order, &ord);
	assert_int_equal(ord.n, 3);
	assert_int_equal(ord.seq[0], 1);
	assert_int_equal(ord.seq[2], 3);
	/* Not connected: NAMES wait, STATS are dropped. */
	assert_int_equal(uplink_send_names(u, (const uint8_t *)"\0\0", 2), -ENOTCONN);
	uplink_send_stats(u, &(struct proto_stats){ .n = 0 });
	/* A new epoch renumbers every kept batch in order, frames included. */
	ord.n = 0;
	assert_int_equal(uplink_renumber(u, 100, collect_moved, &ord), 103);
	assert_int_equal(ord.n, 3);
	assert_int_equal(ord.seq[0], 1 * 1000 + 100);
	assert_int_equal(ord.seq[1], 2 * 1000 + 101);
	assert_int_equal(ord.seq[2], 3 * 1000 + 102);
	for (int i = 0; i < 3; i++) {
		struct proto_batch pb;

		assert_int_equal(b[i]->seq, 100 + (uint64_t)i);
		assert_int_equal(proto_batch_decode(b[i]->frame + PROTO_HDR_LEN, b[i]->len - PROTO_HDR_LEN,
					 1 << 20, &pb),
			0);
		assert_int_equal(pb.seq, 100 + (uint64_t)i);
		assert_int_equal(pb.n_records, 10);
	}
	assert_int_equal(s.room + s.sessions + s.refused + s.epoch_reused, 0);
	/* The uplink owns the batches: freed with it. */
	uplink_free(u);
	uplink_free(NULL);
	ev_loop_destroy(loop);
}

/* A receiver in the test's loop. */
struct rx {
	char dir[64];
	struct store *store;
	struct server *srv;
	SSL_CTX *sctx;
	char port[16];
};

static void
find_port(char out[16])
{
	/* The newest listening socket on 127.0.0.1 is the one just created. */
	snprintf(out, 16, "%u", tu_loopback_port(true));
}

static void
rx_start(struct rx *r, struct ev_loop *loop, bool tls, const char *token, uint32_t max_frame)
{
	struct store_opts so = { .single_file = "",
		.segment_bytes = 64u << 20,
		.segment_ms = 300000,
		.fsync = STORE_FSYNC_NEVER };
	char err[512] = "";

	snprintf(r->dir, sizeof(r->dir), "/tmp/pcapline-test-uplink-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	so.dir = r->dir;
	r->store = store_new(&so, err, sizeof(err));
	assert_non_null(r->store);
	r->sctx = NULL;
	if (tls) {
		char ca[256], crt[256], key[256];
		struct tls_opts to = { .ca = ca, .cert = crt, .key = key, .min_version = 13 };

		snprintf(ca, sizeof(ca), "%s/ca.crt", tu_certs_dir);
		snprintf(crt, sizeof(crt), "%s/receiver.crt", tu_certs_dir);
		snprintf(key, sizeof(key), "%s/receiver.key", tu_certs_dir);
		r->sctx = tls_ctx_server(&to, err, sizeof(err));
		if (r->sctx == NULL)
			fail_msg("%s", err);
	}
	r->srv = server_new(loop,
		&(struct server_opts){ .ssl_ctx = r->sctx,
			.token = token,
			.max_frame = max_frame,
			.max_raw = 4u << 20,
			.max_sessions = 8,
			.unauth_max = 8,
			.unauth_per_source = 8,
			.setup_ms = 10000,
			.heartbeat_ms = 30000,
			.store = r->store });
	assert_non_null(r->srv);
	if (server_listen(r->srv, "127.0.0.1:0", err, sizeof(err)) != 0)
		fail_msg("%s", err);
	find_port(r->port);
}

/* Checks one record the receiver stored for sensor s1 (its first byte tells its time). */
static void
rx_record(const struct pcapf_rec *rec, void *arg)
{
	(void)arg;
	assert_int_equal(rec->caplen, 100);
	assert_int_equal(rec->data[0], (uint8_t)(rec->ts_ns - T0));
}

/* Stops the receiver and counts the records it stored for sensor s1. */
static uint64_t
rx_stop(struct rx *r)
{
	uint64_t n;

	server_shutdown(r->srv);
	server_free(r->srv);
	store_free(r->store);
	SSL_CTX_free(r->sctx);
	n = tu_each_record(tu_path(r->dir, "sensors/s1/segments"), rx_record, NULL);
	fsu_rmtree(r->dir);
	return n;
}

/* Runs the loop until cond(arg) holds; fails after limit_s seconds. */
struct waiter {
	ev_timer poll, deadline;
	bool (*cond)(void *);
	void *arg;
	bool timed_out;
};

static void
on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct waiter *x = w->data;

	(void)revents;
	if (x->cond(x->arg))
		ev_break(loop, EVBREAK_ONE);
}

static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct waiter *x = w->data;

	(void)revents;
	x->timed_out = true;
	ev_break(loop, EVBREAK_ONE);
}

static void
run_until(struct ev_loop *loop, bool (*cond)(void *), void *arg, double limit_s, const char *what)
{
	struct waiter x = { .cond = cond, .arg = arg };

	if (cond(arg))
		return;
	ev_timer_init(&x.poll, on_poll, 0.01, 0.01);
	ev_timer_init(&x.deadline, on_deadline, limit_s, 0.);
	x.poll.data = x.deadline.data = &x;
	ev_timer_start(loop, &x.poll);
	ev_timer_start(loop, &x.deadline);
	ev_run(loop, 0);
	ev_timer_stop(loop, &x.poll);
	ev_timer_stop(loop, &x.deadline);
	if (x.timed_out)
		fail_msg("not within %.0f s: %s", limit_s, what);
}

static bool
is_idle(void *arg)
{
	return uplink_idle(arg);
}

static bool
was_refused(void *arg)
{
	return ((struct seen *)arg)->refused > 0;
}

static bool
epoch_was_reused(void *arg)
{
	return ((struct seen *)arg)->epoch_reused > 0;
}

static SSL_CTX *
client_ctx(void)
{
	char ca[256], crt[256], key[256], err[512] = "";
	struct tls_opts co = { .ca = ca, .cert = crt, .key = key, .min_version = 13 };
	SSL_CTX *c;

	snprintf(ca, sizeof(ca), "%s/ca.crt", tu_certs_dir);
	snprintf(crt, sizeof(crt), "%s/s1.crt", tu_certs_dir);
	snprintf(key, sizeof(key), "%s/s1.key", tu_certs_dir);
	c = tls_ctx_client(&co, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	return c;
}

/* Streams n_batches of 7 records each, then checks every counter and the store. */
static void
stream(bool tls, bool dead_first)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rx r;
	struct uplink_target t[2];
	struct seen s = { .next_seq = 9 };
	struct uplink_opts o;
	struct uplink *u;
	struct uplink_stats st;
	uint64_t bytes = 0;
	size_t nt = 0;

	init_hello("s1", "");
	rx_start(&r, loop, tls, "", 1 << 20);
	if (dead_first) {
		/* A receiver that is not there: the uplink moves on to the next one at once. */
		char dead[16];
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sa);

		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
		snprintf(dead, sizeof(dead), "%u", ntohs(sa.sin_port));
		close(fd);
		t[nt] = (struct uplink_target){ .host = "127.0.0.1" };
		snprintf(t[nt].port, sizeof(t[nt].port), "%s", dead);
		nt++;
	}
	t[nt] = (struct uplink_target){ .host = "127.0.0.1", .server_name = "127.0.0.1" };
	snprintf(t[nt].port, sizeof(t[nt].port), "%s", r.port);
	nt++;
	o = opts(t, nt, &s, 1 << 20);
	o.ssl_ctx = tls ? client_ctx() : NULL;
	u = uplink_new(loop, &o);
	assert_non_null(u);
	for (uint64_t i = 1; i <= 8; i++) {
		struct batch *b = make_batch(i, (i - 1) * 7, 7);
		bytes += b->len;
		uplink_push(u, b);
	}
	uplink_start(u);
	run_until(loop, is_idle, u, 20, "every batch ACKed");
	uplink_stats(u, &st);
	assert_true(st.connected);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.batches_acked, 8);
	assert_int_equal(st.packets_acked, 56);
	assert_int_equal(st.batches_sent, 8);
	assert_int_equal(st.bytes_sent, bytes);
	assert_int_equal(st.resent, 0);
	assert_int_equal(st.pending_batches, 0);
	assert_int_equal(st.pending_bytes, 0);
	assert_int_equal(uplink_acked_seq(u), 8);
	assert_int_equal(s.sessions, 1);
	assert_true(s.room >= 1);
	assert_int_equal(s.refused + s.epoch_reused, 0);
	/* Once streaming, NAMES can be queued. */
	{
		struct proto_names nm = { .n = 1 };
		uint8_t buf[1024];
		int n;

		nm.ev[0] = (struct proto_name){
			.ts_ns = T0, .source = PROTO_NSRC_STATIC, .family = 4, .addr = { 10, 0, 0, 1 }
		};
		snprintf(nm.ev[0].name, sizeof(nm.ev[0].name), "db.example");
		n = proto_names_encode(&nm, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(uplink_send_names(u, buf, (size_t)n), 0);
	}
	uplink_free(u);
	SSL_CTX_free(o.ssl_ctx);
	/* Stored exactly once each. */
	assert_int_equal(rx_stop(&r), 56);
	ev_loop_destroy(loop);
}

static void
test_stream_plain(void **state)
{
	(void)state;
	stream(false, false);
}

static void
test_stream_failover(void **state)
{
	(void)state;
	stream(false, true);
}

static void
test_stream_tls(void **state)
{
	(void)state;
	stream(true, false);
}

static void
test_refused_by_token(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rx r;
	struct uplink_target t = { .host = "127.0.0.1" };
	struct seen s = { 0 };
	struct uplink_opts o;
	struct uplink *u;
	struct uplink_stats st;

	(void)state;
	init_hello("s1", "guess");
	rx_start(&r, loop, false, "right", 1 << 20);
	snprintf(t.port, sizeof(t.port), "%s", r.port);
	o = opts(&t, 1, &s, 1 << 20);
	u = uplink_new(loop, &o);
	uplink_push(u, make_batch(1, 0, 3));
	uplink_start(u);
	run_until(loop, was_refused, &s, 20, "on_refused");
	assert_int_equal(s.refused, 1);
	assert_non_null(strstr(s.why, "bearer token refused"));
	uplink_stats(u, &st);
	assert_int_equal(st.connects, 0);
	assert_int_equal(st.pending_batches, 1); /* kept, never lost */
	uplink_free(u);
	assert_int_equal(rx_stop(&r), 0);
	ev_loop_destroy(loop);
}

static void
test_frame_limit_refused(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rx r;
	struct uplink_target t = { .host = "127.0.0.1" };
	struct seen s = { 0 };
	struct uplink_opts o;
	struct uplink *u;

	(void)state;
	init_hello("s1", "");
	/* The receiver takes frames of 262180 bytes (the protocol's floor); this sensor
	 * may build 1 MiB ones. */
	rx_start(&r, loop, false, "", 262180);
	snprintf(t.port, sizeof(t.port), "%s", r.port);
	o = opts(&t, 1, &s, 1 << 20);
	u = uplink_new(loop, &o);
	uplink_start(u);
	run_until(loop, was_refused, &s, 20, "on_refused");
	assert_non_null(strstr(s.why, "receiver accepts frames up to 262180 bytes"));
	uplink_free(u);
	rx_stop(&r);
	ev_loop_destroy(loop);
}

static void
test_epoch_reused(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rx r;
	struct uplink_target t = { .host = "127.0.0.1" };
	struct seen s = { .next_seq = 4 };
	struct uplink_opts o;
	struct uplink *u;

	(void)state;
	init_hello("s1", "");
	rx_start(&r, loop, false, "", 1 << 20);
	snprintf(t.port, sizeof(t.port), "%s", r.port);
	o = opts(&t, 1, &s, 1 << 20);
	/* A first run stores batches 1..3 of the epoch. */
	u = uplink_new(loop, &o);
	for (uint64_t i = 1; i <= 3; i++)
		uplink_push(u, make_batch(i, (i - 1) * 2, 2));
	uplink_start(u);
	run_until(loop, is_idle, u, 20, "first run ACKed");
	uplink_free(u);
	/* Another run with the same epoch that numbered only up to 1: the receiver holds
	 * more than it ever assigned, so it must move to a new epoch. */
	s.next_seq = 2;
	u = uplink_new(loop, &o);
	uplink_push(u, make_batch(1, 100, 2));
	uplink_start(u);
	run_until(loop, epoch_was_reused, &s, 20, "on_epoch_reused");
	assert_int_equal(s.epoch_reused, 1);
	assert_int_equal(s.sessions, 1); /* only the first run's */
	uplink_free(u);
	/* Only the first run's six records were stored. */
	assert_int_equal(rx_stop(&r), 6);
	ev_loop_destroy(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_offline),
		cmocka_unit_test(test_stream_plain),
		cmocka_unit_test(test_stream_failover),
		cmocka_unit_test(test_stream_tls),
		cmocka_unit_test(test_refused_by_token),
		cmocka_unit_test(test_frame_limit_refused),
		cmocka_unit_test(test_epoch_reused),
	};

	return cmocka_run_group_tests(tests, tu_certs_group_setup, tu_certs_group_teardown);
}
