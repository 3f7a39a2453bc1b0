/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/ingest/session.c: a real server (libev loop on its own thread, a
 * real store in a temporary repository) listening on 127.0.0.1 port 0, driven by a
 * client written against proto/wire.h on a plain socket, and over mutual TLS with
 * certificates made by scripts/pcapline-certs. HELLO and WELCOME, BATCH frames built
 * by the sensor's batcher and their ACKs, resume after a reconnect (a resent batch is
 * ACKed, not stored twice), every kind of bad input closing that session only with the
 * right ERROR code, the token, the certificate identity, and the records on disk.
 *
 * The loop thread is stopped (ev_async + join) whenever the test looks at the server's
 * state, so that nothing is read while the loop runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <openssl/ssl.h>

#include "proto/wire.h"
#include "receiver/ingest/session.h"
#include "receiver/store/store.h"
#include "sensor/batcher.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "shared/tls.h"
#include "tests/unit/testutil.h"

#define EPOCH        UINT64_C(0x0123456789abcdef)
#define MAX_FRAME    (1u << 20)
#define HEARTBEAT_MS 30000

struct rig {
	char dir[64];
	struct ev_loop *loop;
	ev_async stop;
	pthread_t thread;
	bool running;
	struct store *store;
	struct server *srv;
	SSL_CTX *sctx, *cctx; /* TLS rig only */
	uint16_t port;
};

static void
on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *
loop_thread(void *arg)
{
	struct rig *r = arg;

	ev_run(r->loop, 0);
	return NULL;
}

static void
rig_resume(struct rig *r)
{
	assert_false(r->running);
	assert_int_equal(pthread_create(&r->thread, NULL, loop_thread, r), 0);
	r->running = true;
}

static void
rig_pause(struct rig *r)
{
	if (!r->running)
		return;
	ev_async_send(r->loop, &r->stop);
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	r->running = false;
}

/* The port of the listening socket on 127.0.0.1 (the server was given port 0). */
static uint16_t
listening_port(void)
{
	return tu_loopback_port(false);
}

struct limits {
	uint32_t setup_ms, unauth_per_source, max_sensors;
};

static struct rig *
rig_new_limits(bool tls, const char *token, const struct limits *lim)
{
	struct rig *r = calloc(1, sizeof(*r));
	struct store_opts so = { .single_file = "",
		.segment_bytes = 64u << 20,
		.segment_ms = 300000,
		.fsync = STORE_FSYNC_NEVER };
	char err[512] = "";

	assert_non_null(r);
	snprintf(r->dir, sizeof(r->dir), "/tmp/pcapline-test-session-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	so.dir = r->dir;
	r->store = store_new(&so, err, sizeof(err));
	if (r->store == NULL)
		fail_msg("store_new: %s", err);
	if (tls) {
		char ca[256], crt[256], key[256], scrt[256], skey[256];
		struct tls_opts to = { .ca = ca, .cert = crt, .key = key, .min_version = 13 };
		struct tls_opts co = { .ca = ca, .cert = scrt, .key = skey, .min_version = 13 };

		snprintf(ca, sizeof(ca), "%s/ca.crt", tu_certs_dir);
		snprintf(crt, sizeof(crt), "%s/receiver.crt", tu_certs_dir);
		snprintf(key, sizeof(key), "%s/receiver.key", tu_certs_dir);
		snprintf(scrt, sizeof(scrt), "%s/s1.crt", tu_certs_dir);
		snprintf(skey, sizeof(skey), "%s/s1.key", tu_certs_dir);
		r->sctx = tls_ctx_server(&to, err, sizeof(err));
		if (r->sctx == NULL)
			fail_msg("tls_ctx_server: %s", err);
		r->cctx = tls_ctx_client(&co, err, sizeof(err));
		if (r->cctx == NULL)
			fail_msg("tls_ctx_client: %s", err);
	}
	r->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(r->loop);
	ev_async_init(&r->stop, on_stop);
	ev_async_start(r->loop, &r->stop);
	{
		struct server_opts o = {
			.ssl_ctx = r->sctx,
			.token = token,
			.max_frame = MAX_FRAME,
			.max_raw = 4u << 20,
			.max_sessions = 16,
			.unauth_max = 16,
			.unauth_per_source = lim ? lim->unauth_per_source : 16,
			.setup_ms = lim ? lim->setup_ms : 10000,
			.heartbeat_ms = HEARTBEAT_MS,
			.sync_ms = 0,
			.max_sensors = lim ? lim->max_sensors : 0,
			.store = r->store,
		};
		r->srv = server_new(r->loop, &o);
		assert_non_null(r->srv);
	}
	if (server_listen(r->srv, "127.0.0.1:0", err, sizeof(err)) != 0)
		fail_msg("server_listen: %s", err);
	r->port = listening_port();
	rig_resume(r);
	return r;
}

static struct rig *
rig_new(bool tls, const char *token)
{
	return rig_new_limits(tls, token, NULL);
}

/* Stops the server and closes the store (segments renamed into place). */
static void
rig_stop(struct rig *r)
{
	rig_pause(r);
	if (r->srv != NULL) {
		server_shutdown(r->srv);
		server_free(r->srv);
		r->srv = NULL;
	}
	if (r->store != NULL) {
		store_free(r->store);
		r->store = NULL;
	}
}

static void
rig_free(struct rig *r)
{
	rig_stop(r);
	ev_async_stop(r->loop, &r->stop);
	ev_loop_destroy(r->loop);
	SSL_CTX_free(r->sctx);
	SSL_CTX_free(r->cctx);
	fsu_rmtree(r->dir);
	free(r);
}

/* A sensor's side of one connection. */
struct cl {
	int fd;
	SSL *ssl;
};

static void
cl_connect(struct rig *r, struct cl *c)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(r->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)
	};
	struct timeval tv = { .tv_sec = 15 };

	c->ssl = NULL;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (r->cctx != NULL) {
		c->ssl = SSL_new(r->cctx);
		assert_non_null(c->ssl);
		SSL_set_fd(c->ssl, c->fd);
		assert_int_equal(tls_client_expect(c->ssl, "127.0.0.1"), 0);
		assert_int_equal(SSL_connect(c->ssl), 1);
	}
}

static void
cl_close(struct cl *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	c->fd = -1;
}

static void
cl_write(struct cl *c, const void *p, size_t n)
{
	if (c->ssl != NULL) {
		assert_int_equal(SSL_write(c->ssl, p, (int)n), (int)n);
		return;
	}
	assert_int_equal(fsu_write_all(c->fd, p, n), 0);
}

/* Reads exactly n bytes; false at the end of the stream. */
static bool
cl_read(struct cl *c, void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = c->ssl != NULL ? SSL_read(c->ssl, (char *)p + got, (int)(n - got))
					   : read(c->fd, (char *)p + got, n - got);
		if (k < 0 && errno == EINTR && c->ssl == NULL)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			fail_msg("no answer from the server within 15 s");
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

static void
send_frame(struct cl *c, uint8_t type, uint16_t flags, const void *payload, size_t n)
{
	uint8_t h[PROTO_HDR_LEN];

	proto_hdr_encode(h, type, flags, (uint32_t)n);
	cl_write(c, h, sizeof(h));
	if (n > 0)
		cl_write(c, payload, n);
}

/* The next frame other than a heartbeat; false when the server closed. */
static bool
read_frame(struct cl *c, struct proto_hdr *h, uint8_t *buf, size_t cap)
{
	uint8_t hb[PROTO_HDR_LEN];

	for (;;) {
		if (!cl_read(c, hb, sizeof(hb)))
			return false;
		assert_int_equal(proto_hdr_decode(hb, sizeof(hb), (uint32_t)cap, h), 0);
		if (h->len > 0)
			assert_true(cl_read(c, buf, h->len));
		if (h->type != PROTO_HEARTBEAT)
			return true;
	}
}

static void
send_hello(struct cl *c, const char *id, const char *token, uint64_t epoch)
{
	struct proto_hello h = { .caps = PROTO_CAP_LZ4, .epoch = epoch, .n_ifaces = 2 };
	uint8_t buf[8192];
	int n;

	snprintf(h.sensor_id, sizeof(h.sensor_id), "%s", id);
	snprintf(h.version, sizeof(h.version), "test");
	snprintf(h.token, sizeof(h.token), "%s", token);
	h.ifaces[0] = (struct proto_iface){ .linktype = 1, .snaplen = 65535 };
	snprintf(h.ifaces[0].name, sizeof(h.ifaces[0].name), "eth0");
	h.ifaces[1] = (struct proto_iface){ .linktype = 1, .snaplen = 65535 };
	snprintf(h.ifaces[1].name, sizeof(h.ifaces[1].name), "eth1");
	n = proto_hello_encode(&h, buf, sizeof(buf));
	assert_true(n > 0);
	send_frame(c, PROTO_HELLO, 0, buf, (size_t)n);
}

static struct proto_welcome
expect_welcome(struct cl *c)
{
	struct proto_hdr h;
	uint8_t buf[4096];
	struct proto_welcome w;

	assert_true(read_frame(c, &h, buf, sizeof(buf)));
	if (h.type == PROTO_ERROR) {
		struct proto_error e;
		assert_int_equal(proto_error_decode(buf, h.len, &e), 0);
		fail_msg("ERROR %u instead of WELCOME: %s", e.code, e.text);
	}
	assert_int_equal(h.type, PROTO_WELCOME);
	assert_int_equal(proto_welcome_decode(buf, h.len, &w), 0);
	return w;
}

static void
expect_ack(struct cl *c, uint64_t epoch, uint64_t seq)
{
	struct proto_hdr h;
	uint8_t buf[4096];
	struct proto_ack a;

	assert_true(read_frame(c, &h, buf, sizeof(buf)));
	if (h.type == PROTO_ERROR) {
		struct proto_error e;
		assert_int_equal(proto_error_decode(buf, h.len, &e), 0);
		fail_msg("ERROR %u instead of ACK %" PRIu64 ": %s", e.code, seq, e.text);
	}
	assert_int_equal(h.type, PROTO_ACK);
	assert_int_equal(proto_ack_decode(buf, h.len, &a), 0);
	assert_int_equal(a.epoch, epoch);
	assert_int_equal(a.seq, seq);
}

/* Expects an ERROR with code and text containing part, then the end of the stream. */
static void
expect_error(struct cl *c, uint16_t code, const char *part)
{
	struct proto_hdr h;
	uint8_t buf[8192];
	struct proto_error e;

	assert_true(read_frame(c, &h, buf, sizeof(buf)));
	assert_int_equal(h.type, PROTO_ERROR);
	assert_int_equal(proto_error_decode(buf, h.len, &e), 0);
	if (e.code != code || strstr(e.text, part) == NULL)
		fail_msg("ERROR %u '%s', want %u '%s'", e.code, e.text, code, part);
	assert_false(read_frame(c, &h, buf, sizeof(buf)));
}

/* Batches sealed by the batcher, kept for sending. */
struct sealed {
	struct batch *b[16];
	size_t n;
};

static void
on_sealed(void *arg, struct batch *b)
{
	struct sealed *s = arg;

	assert_true(s->n < 16);
	s->b[s->n++] = b;
}

/* One batch of n records: ts base + i ns, iface i % 2, 64 bytes of fill + i. */
static struct batch *
make_batch(uint64_t seq, uint64_t base, unsigned n, uint8_t fill)
{
	struct sealed s = { 0 };
	struct batcher *bt = batcher_new(1 << 20, seq, on_sealed, &s);
	uint8_t data[64];

	for (unsigned i = 0; i < n; i++) {
		memset(data, fill + (int)i, sizeof(data));
		batcher_add(bt, (uint16_t)(i % 2), base + i, data, sizeof(data), 1514);
	}
	batcher_flush(bt);
	batcher_free(bt);
	assert_int_equal(s.n, 1);
	return s.b[0];
}

static void
send_batch(struct cl *c, struct batch *b)
{
	cl_write(c, b->frame, b->len);
}

/* Checks one stored record and adds its time to the sum at arg. */
static void
stored_record(const struct pcapf_rec *rec, void *arg)
{
	assert_int_equal(rec->caplen, 64);
	assert_int_equal(rec->origlen, 1514);
	*(uint64_t *)arg += rec->ts_ns;
}

/* Records of every closed segment of sensor id, counted per first data byte. */
static uint64_t
stored_records(struct rig *r, const char *id, uint64_t *ts_sum)
{
	char rel[512];

	*ts_sum = 0;
	snprintf(rel, sizeof(rel), "sensors/%s/segments", id);
	return tu_each_record(tu_path(r->dir, rel), stored_record, ts_sum);
}

#define T0 UINT64_C(1700000000000000000)

static void
test_stream_ack_resume(void **state)
{
	struct rig *r = *state;
	struct cl c;
	struct proto_welcome w;
	struct batch *b1 = make_batch(1, T0, 3, 0x10), *b2 = make_batch(2, T0 + 100, 200, 0x20);
	struct batch *b3 = make_batch(3, T0 + 1000, 5, 0x30);
	uint64_t sum, want_sum = 0;

	(void)state;
	/* The second batch is big enough to be sent compressed. */
	assert_true(b2->len < b2->raw_len);
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	w = expect_welcome(&c);
	assert_int_equal(w.epoch, EPOCH);
	/* PROTOCOL.md 6.3: 1 + the highest stored, so 1 for a new epoch. */
	assert_int_equal(w.next_seq, 1);
	assert_int_equal(w.max_frame, MAX_FRAME);
	assert_int_equal(w.heartbeat_ms, HEARTBEAT_MS);
	send_batch(&c, b1);
	expect_ack(&c, EPOCH, 1);
	send_batch(&c, b2);
	expect_ack(&c, EPOCH, 2);
	rig_pause(r);
	assert_true(server_sensor_connected(r->srv, "s1"));
	assert_false(server_sensor_connected(r->srv, "s2"));
	assert_int_equal(server_session_count(r->srv), 1);
	rig_resume(r);

	/* A reconnect of the same epoch resumes after the last batch stored; a resent batch
	 * is ACKed again and not stored twice. */
	cl_close(&c);
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	w = expect_welcome(&c);
	assert_int_equal(w.next_seq, 3);
	send_batch(&c, b2);
	expect_ack(&c, EPOCH, 2);
	send_batch(&c, b3);
	expect_ack(&c, EPOCH, 3);
	/* A second connection of the same sensor replaces the first. */
	{
		struct cl c2;

		cl_connect(r, &c2);
		send_hello(&c2, "s1", "", EPOCH);
		expect_error(&c, PROTO_ERR_SHUTDOWN, "replaced by a new session");
		w = expect_welcome(&c2);
		assert_int_equal(w.next_seq, 4);
		cl_close(&c2);
	}
	cl_close(&c);
	rig_stop(r);
	/* The store closed the session's segments: every record once. */
	for (unsigned i = 0; i < 3; i++)
		want_sum += T0 + i;
	for (unsigned i = 0; i < 200; i++)
		want_sum += T0 + 100 + i;
	for (unsigned i = 0; i < 5; i++)
		want_sum += T0 + 1000 + i;
	assert_int_equal(stored_records(r, "s1", &sum), 208);
	assert_int_equal(sum, want_sum);
	free(b1);
	free(b2);
	free(b3);
}

static void
test_bad_input_closes_session_only(void **state)
{
	struct rig *r = *state;
	struct cl good, c;
	struct batch *b1 = make_batch(1, T0, 2, 1), *b5 = make_batch(5, T0 + 5, 2, 5);
	uint8_t garbage[PROTO_HDR_LEN];

	(void)state;
	/* A healthy sensor that must not notice any of the below. */
	cl_connect(r, &good);
	send_hello(&good, "good", "", EPOCH);
	(void)expect_welcome(&good);

	/* A header with a bad magic. */
	cl_connect(r, &c);
	memset(garbage, 0x41, sizeof(garbage));
	cl_write(&c, garbage, sizeof(garbage));
	expect_error(&c, PROTO_ERR_PROTOCOL, "");
	cl_close(&c);

	/* A BATCH before HELLO. */
	cl_connect(r, &c);
	send_batch(&c, b1);
	expect_error(&c, PROTO_ERR_PROTOCOL, "expected HELLO, got frame type 3");
	cl_close(&c);

	/* A frame longer than max_frame: refused from its header, before its payload. */
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	(void)expect_welcome(&c);
	{
		uint8_t h[PROTO_HDR_LEN];
		proto_hdr_encode(h, PROTO_BATCH, 0, MAX_FRAME + 1);
		cl_write(&c, h, sizeof(h));
	}
	expect_error(&c, PROTO_ERR_LIMIT, "");
	cl_close(&c);

	/* A malformed HELLO (a payload of three bytes). */
	cl_connect(r, &c);
	send_frame(&c, PROTO_HELLO, 0, "abc", 3);
	expect_error(&c, PROTO_ERR_PROTOCOL, "malformed HELLO");
	cl_close(&c);

	/* A sequence number replayed within one session. */
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	(void)expect_welcome(&c);
	send_batch(&c, b5);
	expect_ack(&c, EPOCH, 5);
	send_batch(&c, b1);
	expect_error(&c, PROTO_ERR_PROTOCOL, "replayed sequence: BATCH 1 after 5");
	cl_close(&c);

	/* An lz4 flag on record bytes sent as they are: no lz4 block of the announced size. */
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	(void)expect_welcome(&c);
	{
		uint8_t frame[PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + 2 * (PROTO_REC_HDR_LEN + 64)];
		uint8_t *rec = frame + PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN;

		for (int k = 0; k < 2; k++) {
			proto_rec_hdr_encode(rec + k * (PROTO_REC_HDR_LEN + 64), T0 + 6, 0, 64, 64);
			memset(rec + k * (PROTO_REC_HDR_LEN + 64) + PROTO_REC_HDR_LEN, 0xee, 64);
		}
		proto_batch_hdr_encode(
			6, 2, 2 * (PROTO_REC_HDR_LEN + 64), frame + PROTO_HDR_LEN, PROTO_BATCH_HDR_LEN);
		proto_hdr_encode(frame, PROTO_BATCH, PROTO_F_LZ4, sizeof(frame) - PROTO_HDR_LEN);
		cl_write(&c, frame, sizeof(frame));
		expect_error(&c, PROTO_ERR_PROTOCOL, "BATCH 6");
	}
	cl_close(&c);

	/* A record naming an interface the HELLO did not announce: nothing stored. */
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	(void)expect_welcome(&c);
	{
		struct sealed s = { 0 };
		struct batcher *bt = batcher_new(1 << 20, 7, on_sealed, &s);
		uint8_t d[64] = { 0 };

		batcher_add(bt, 9, T0 + 7, d, sizeof(d), 1514);
		batcher_flush(bt);
		batcher_free(bt);
		send_batch(&c, s.b[0]);
		expect_error(&c, PROTO_ERR_PROTOCOL, "rejected batch");
		free(s.b[0]);
	}
	cl_close(&c);

	/* The healthy session is still there and stores. */
	send_batch(&good, b1);
	expect_ack(&good, EPOCH, 1);
	rig_pause(r);
	assert_int_equal(server_session_count(r->srv), 1);
	assert_true(server_sensor_connected(r->srv, "good"));
	rig_resume(r);
	cl_close(&good);
	free(b1);
	free(b5);
}

static void
test_token(void **state)
{
	struct rig *r = *state;
	struct cl c;

	(void)state;
	cl_connect(r, &c);
	send_hello(&c, "s1", "wrong", EPOCH);
	expect_error(&c, PROTO_ERR_AUTH, "bearer token refused");
	cl_close(&c);
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	expect_error(&c, PROTO_ERR_AUTH, "bearer token refused");
	cl_close(&c);
	cl_connect(r, &c);
	send_hello(&c, "s1", "t0ke", EPOCH);
	expect_error(&c, PROTO_ERR_AUTH, "bearer token refused");
	cl_close(&c);
	cl_connect(r, &c);
	send_hello(&c, "s1", "t0ken", EPOCH);
	(void)expect_welcome(&c);
	cl_close(&c);
}

static void
test_tls_identity(void **state)
{
	struct rig *r = *state;
	struct cl c;
	struct batch *b = make_batch(1, T0, 4, 9);

	(void)state;
	/* The certificate says s1: a HELLO claiming another id is refused. */
	cl_connect(r, &c);
	send_hello(&c, "s2", "", EPOCH);
	expect_error(&c, PROTO_ERR_AUTH, "HELLO claims sensor id 's2' but the certificate says 's1'");
	cl_close(&c);
	cl_connect(r, &c);
	send_hello(&c, "s1", "", EPOCH);
	(void)expect_welcome(&c);
	send_batch(&c, b);
	expect_ack(&c, EPOCH, 1);
	cl_close(&c);
	/* A client without a certificate does not get through the handshake. */
	{
		SSL_CTX *bare = SSL_CTX_new(TLS_client_method());
		struct sockaddr_in sa = { .sin_family = AF_INET,
			.sin_port = htons(r->port),
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		SSL *ssl;
		char byte;
		struct timeval tv = { .tv_sec = 15 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		SSL_CTX_set_verify(bare, SSL_VERIFY_NONE, NULL);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ssl = SSL_new(bare);
		SSL_set_fd(ssl, fd);
		/* TLS 1.3: the client may finish its side; the server's refusal shows on read. */
		if (SSL_connect(ssl) == 1)
			assert_true(SSL_read(ssl, &byte, 1) <= 0);
		SSL_free(ssl);
		SSL_CTX_free(bare);
		close(fd);
	}
	rig_pause(r);
	assert_int_equal(server_session_count(r->srv), 0);
	rig_resume(r);
	free(b);
}

static void
test_limits(void **state)
{
	struct rig *r = *state;
	struct cl c1, c2, c3, a, b;

	(void)state;
	/* Two connections without HELLO from one source are the most it may hold: a third
	 * sheds the oldest. */
	cl_connect(r, &c1);
	cl_connect(r, &c2);
	cl_connect(r, &c3);
	expect_error(&c1, PROTO_ERR_LIMIT, "shed: too many unauthenticated connections from its source");
	cl_close(&c1);
	/* A sensor is never shed, and one limit on distinct sensors holds. */
	cl_connect(r, &a);
	send_hello(&a, "a", "", EPOCH);
	(void)expect_welcome(&a);
	expect_error(&c2, PROTO_ERR_LIMIT, "shed");
	cl_close(&c2);
	cl_connect(r, &b);
	send_hello(&b, "b", "", EPOCH);
	expect_error(&b, PROTO_ERR_LIMIT, "refused: 1 sensors already known (limits.max_sensors)");
	cl_close(&b);
	/* The last one never says HELLO: ended after setup_ms (checked every second). */
	expect_error(&c3, PROTO_ERR_PROTOCOL, "no HELLO within");
	cl_close(&c3);
	/* Sensor a was not disturbed: the same id is welcome again. */
	rig_pause(r);
	assert_true(server_sensor_connected(r->srv, "a"));
	assert_int_equal(server_session_count(r->srv), 1);
	rig_resume(r);
	cl_close(&a);
}

static int
limits_rig(void **state)
{
	static const struct limits lim = { .setup_ms = 300, .unauth_per_source = 2, .max_sensors = 1 };

	*state = rig_new_limits(false, "", &lim);
	return 0;
}

static int
plain_rig(void **state)
{
	*state = rig_new(false, "");
	return 0;
}

static int
token_rig(void **state)
{
	*state = rig_new(false, "t0ken");
	return 0;
}

static int
tls_rig(void **state)
{
	*state = rig_new(true, "");
	return 0;
}

static int
rig_teardown(void **state)
{
	rig_free(*state);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stream_ack_resume, plain_rig, rig_teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_closes_session_only, plain_rig, rig_teardown),
		cmocka_unit_test_setup_teardown(test_token, token_rig, rig_teardown),
		cmocka_unit_test_setup_teardown(test_tls_identity, tls_rig, rig_teardown),
		cmocka_unit_test_setup_teardown(test_limits, limits_rig, rig_teardown),
	};

	return cmocka_run_group_tests(tests, tu_certs_group_setup, tu_certs_group_teardown);
}
