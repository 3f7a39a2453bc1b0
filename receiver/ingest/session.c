/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/ingest/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "shared/hash.h"
#include "shared/hostport.h"
#include "shared/log.h"
#include "shared/tls.h"
#include "proto/wire.h"

#define SESSION_INBUF_MIN (64 * 1024)
#define SESSION_OUTBUF 8192
#define SESSION_SYNC_EARLY (2u << 20) /* interval policy: sync once this much waits */
#define SESSION_MAX_HELLO 5172 /* largest valid HELLO payload, PROTOCOL.md 7 */
#define SERVER_MAX_LISTENERS 8
/* Bytes of input handled per readable event before yielding to other sessions. */
#define SESSION_READ_BUDGET (8u << 20)
/* Unauthenticated connections that end quietly (shed, timed out, closed by the peer)
 * are summed up in one line this often, so that a flood cannot flood the log. */
#define SESSION_UNAUTH_SUMMARY_S 10.0

enum session_state { S_HANDSHAKE, S_HELLO, S_STREAM };

struct session {
	struct session *prev, *next;
	struct server *srv;
	int fd;
	SSL *ssl;
	ev_io io;
	enum session_state state;
	double since, last_rx, last_tx;
	char peer[INET6_ADDRSTRLEN + 8];
	/* Until TLS and HELLO are done: in the server's age-ordered unauthenticated list,
	 * grouped by source (an IPv4 address, an IPv6 /64) for the per-source bound. */
	bool unauth;
	struct session *uprev, *unext;
	uint8_t src[16];
	char cert_id[PROTO_MAX_ID + 1];
	struct store_sensor *ss;
	struct names_log *names; /* this sensor's names.jsonl */
	uint64_t epoch;
	uint64_t ack_pending;
	uint64_t last_seq; /* last BATCH handled in this session, 0 = none yet */
	struct store_counters at_start; /* the sensor's counters when this session began */ /* stored, waiting for the next sync before its ACK; 0 = none */
	/* Rate limit: a token bucket in bytes; reading stops while it is empty. */
	double tokens, tokens_at;
	bool throttled;
	bool stalled; /* storage failing: the batch at the head of the buffer waits */
	uint64_t stall_retries;
	uint64_t throttled_count;
	ev_timer unthrottle;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t out[SESSION_OUTBUF];
	size_t out_len, out_off, retry_len;
};

struct server {
	struct server_opts o;
	struct ev_loop *loop;
	int lfd[SERVER_MAX_LISTENERS];
	ev_io lio[SERVER_MAX_LISTENERS];
	int n_listeners;
	struct session *sessions;
	unsigned n_sessions;
	uint8_t *dec; /* one decompression buffer: the loop is single-threaded */
	ev_timer tick;
	ev_timer sync;
	unsigned n_known_sensors;
	ev_timer accept_pause; /* out of descriptors: stop accepting for a moment */
	struct log_limit accept_lim, refuse_lim;
	/* Unauthenticated connections, oldest first; they are bounded apart from the
	 * sessions so that they cannot take the slots sensors need. */
	struct session *uhead, *utail;
	unsigned n_unauth;
	struct server_src *src_tab; /* scratch: per-source counts when the total is full */
	size_t src_cap;
	uint32_t src_gen;
	struct {
		uint64_t shed_src, shed_total, timed_out, peer_closed, failed, failed_quiet;
		char last[200];
	} uq;                       /* since the last summary line */
	double uq_at;
	struct log_limit unauth_lim;
};

/* One source in the scratch table that picks which unauthenticated connection to shed. */
struct server_src {
	uint8_t key[16];
	uint32_t gen;               /* == server.src_gen: in use */
	unsigned n;
	struct session *oldest;
};

/* How an unauthenticated connection ended, for the summary line. */
enum unauth_end { UNAUTH_SHED_SRC, UNAUTH_SHED_TOTAL, UNAUTH_TIMED_OUT, UNAUTH_PEER_CLOSED };

static void session_on_io(struct ev_loop *loop, ev_io *w, int revents);

/* The ERROR code that answers a decoder result (PROTOCOL.md 6.5). */
static uint16_t session_error_code(int rc)
{
	if (rc == PROTO_EVERSION)
		return PROTO_ERR_VERSION;
	if (rc == PROTO_ETOOBIG)
		return PROTO_ERR_LIMIT;
	return PROTO_ERR_PROTOCOL;
}

/* Takes se off the unauthenticated list: it is authenticated now, or closing. */
static void session_unauth_unlink(struct session *se)
{
	struct server *srv = se->srv;

	if (!se->unauth)
		return;
	if (se->uprev)
		se->uprev->unext = se->unext;
	else
		srv->uhead = se->unext;
	if (se->unext)
		se->unext->uprev = se->uprev;
	else
		srv->utail = se->uprev;
	se->uprev = se->unext = NULL;
	se->unauth = false;
	srv->n_unauth--;
}

static void session_free(struct session *se)
{
	struct server *srv = se->srv;
	session_unauth_unlink(se);
	ev_io_stop(srv->loop, &se->io);
	ev_timer_stop(srv->loop, &se->unthrottle);
	if (se->ss) {
		store_sensor_end(se->ss);
		store_sensor_write_stats(se->ss, false);
		if (se->names) {
			const struct names_log_counters *nc = names_log_counters(se->names);

			if (nc->written || nc->repeats || nc->lost)
				log_info("sensor %s: names: %" PRIu64 " events stored, %" PRIu64
					 " repeats of the mapping in effect skipped, %" PRIu64 " lost to storage errors",
					 se->cert_id, nc->written, nc->repeats, nc->lost);
		}
		const struct store_counters *c = store_sensor_counters(se->ss), *b = &se->at_start;
		log_info("sensor %s: session from %s ended: stored %" PRIu64 " batches, %" PRIu64 " packets, %" PRIu64
			 " bytes; %" PRIu64 " duplicate batches dropped",
			 se->cert_id, se->peer, c->batches - b->batches, c->packets - b->packets, c->bytes - b->bytes,
			 c->duplicates - b->duplicates);
	}
	names_log_close(se->names);
	if (se->ssl)
		SSL_free(se->ssl);
	close(se->fd);
	if (se->prev)
		se->prev->next = se->next;
	else
		srv->sessions = se->next;
	if (se->next)
		se->next->prev = se->prev;
	srv->n_sessions--;
	free(se->in);
	free(se);
}

/* Writes buffered output; returns 0 or -1 (session must close). */
static int session_flush(struct session *se)
{
	while (se->out_off < se->out_len) {
		size_t n = se->retry_len ? se->retry_len : se->out_len - se->out_off;
		ssize_t w;
		if (se->ssl) {
			ERR_clear_error();
			int r = SSL_write(se->ssl, se->out + se->out_off, (int)n);
			if (r <= 0) {
				int e = SSL_get_error(se->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					se->retry_len = n;
					break;
				}
				return -1;
			}
			w = r;
			se->retry_len = 0;
		} else {
			w = send(se->fd, se->out + se->out_off, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				return -1;
			}
		}
		se->out_off += (size_t)w;
		se->last_tx = ev_now(se->srv->loop);
	}
	if (se->out_off == se->out_len)
		se->out_off = se->out_len = 0;
	/* A throttled session is not read from: watching EV_READ would spin. */
	int ev = (se->throttled ? 0 : EV_READ) | (se->out_len ? EV_WRITE : 0);
	if (ev != (se->io.events & (EV_READ | EV_WRITE)) || !ev_is_active(&se->io) != !ev) {
		ev_io_stop(se->srv->loop, &se->io);
		ev_io_set(&se->io, se->fd, ev ? ev : EV_READ);
		if (ev)
			ev_io_start(se->srv->loop, &se->io);
	}
	return 0;
}

static int session_send(struct session *se, uint8_t type, const uint8_t *payload, size_t n)
{
	if (se->out_len + PROTO_HDR_LEN + n > sizeof(se->out)) {
		/* Compact first; if the peer still does not read its ACKs, it is stuck. */
		if (se->out_off && !se->retry_len) {
			memmove(se->out, se->out + se->out_off, se->out_len - se->out_off);
			se->out_len -= se->out_off;
			se->out_off = 0;
		}
		if (se->out_len + PROTO_HDR_LEN + n > sizeof(se->out))
			return -1;
	}
	proto_hdr_encode(se->out + se->out_len, type, 0, (uint32_t)n);
	memcpy(se->out + se->out_len + PROTO_HDR_LEN, payload, n);
	se->out_len += PROTO_HDR_LEN + n;
	return session_flush(se);
}

/* Logs why, tells the peer (best effort) and frees the session. */
static void session_close(struct session *se, uint16_t code, const char *why)
{
	if (code) {
		struct proto_error e = {.code = code};
		snprintf(e.text, sizeof(e.text), "%s", why);
		uint8_t buf[PROTO_MAX_TEXT + 8];
		int n = proto_error_encode(&e, buf, sizeof(buf));
		if (n > 0 && se->state != S_HANDSHAKE)
			session_send(se, PROTO_ERROR, buf, (size_t)n);
	}
	if (se->unauth) {
		/* Anyone can open these: a line each would let a flood flood the log. */
		struct server *srv = se->srv;
		if (log_limit_ok(&srv->unauth_lim, 10, 10))
			log_warnx("session %s%s%s: closed: %s", se->peer, se->cert_id[0] ? " sensor " : "", se->cert_id, why);
		else
			srv->uq.failed_quiet++;
		srv->uq.failed++;
		snprintf(srv->uq.last, sizeof(srv->uq.last), "%s: %s", se->peer, why);
		session_free(se);
		return;
	}
	/* A sensor hanging up after its last ACK is the normal end of a session. */
	log_msg(code == 0 && strcmp(why, "sensor closed the connection") == 0 ? LOG_LVL_INFO : LOG_LVL_WARN,
		"session %s%s%s: closed: %s", se->peer, se->cert_id[0] ? " sensor " : "", se->cert_id, why);
	session_free(se);
}

/* Ends an unauthenticated connection that was shed, timed out or closed by its peer:
 * counted for the summary line, not logged one by one. */
static void session_end_unauth(struct session *se, enum unauth_end how, const char *why)
{
	struct server *srv = se->srv;

	if (how == UNAUTH_SHED_SRC)
		srv->uq.shed_src++;
	else if (how == UNAUTH_SHED_TOTAL)
		srv->uq.shed_total++;
	else if (how == UNAUTH_TIMED_OUT)
		srv->uq.timed_out++;
	else
		srv->uq.peer_closed++;
	snprintf(srv->uq.last, sizeof(srv->uq.last), "%s: %s", se->peer, why);
	log_debug("session %s: closed: %s", se->peer, why);
	if (se->state == S_HELLO && how != UNAUTH_PEER_CLOSED) {
		struct proto_error e = {.code = how == UNAUTH_TIMED_OUT ? PROTO_ERR_PROTOCOL : PROTO_ERR_LIMIT};
		uint8_t buf[PROTO_MAX_TEXT + 8];
		snprintf(e.text, sizeof(e.text), "%s", why);
		int n = proto_error_encode(&e, buf, sizeof(buf));
		if (n > 0)
			session_send(se, PROTO_ERROR, buf, (size_t)n);
	}
	session_free(se);
}

/* One line per SESSION_UNAUTH_SUMMARY_S at most for what session_end_unauth counted
 * and for the failures whose own line the rate limit held back. */
static void server_unauth_summary(struct server *srv, double now, bool force)
{
	uint64_t quiet = srv->uq.shed_src + srv->uq.shed_total + srv->uq.timed_out + srv->uq.peer_closed;

	if (!force && now - srv->uq_at < SESSION_UNAUTH_SUMMARY_S)
		return;
	if (quiet || srv->uq.failed_quiet)
		log_msg(quiet == srv->uq.peer_closed && !srv->uq.failed_quiet ? LOG_LVL_INFO : LOG_LVL_WARN,
			"unauthenticated connections in the last %.0f s: %" PRIu64 " shed (%" PRIu64
			" over limits.unauth_per_source, %" PRIu64 " over limits.unauth_max or limits.max_sessions), %" PRIu64
			" timed out, %" PRIu64 " closed by the peer, %" PRIu64 " failed (%" PRIu64
			" not logged singly); %u open now; last: %s",
			now - srv->uq_at, srv->uq.shed_src + srv->uq.shed_total, srv->uq.shed_src, srv->uq.shed_total,
			srv->uq.timed_out, srv->uq.peer_closed, srv->uq.failed, srv->uq.failed_quiet, srv->n_unauth,
			srv->uq.last);
	memset(&srv->uq, 0, sizeof(srv->uq));
	srv->uq_at = now;
}

static int session_hello(struct session *se, const uint8_t *p, uint32_t len)
{
	struct server *srv = se->srv;
	struct proto_hello h;
	char why[400];
	int rc = proto_hello_decode(p, len, &h);
	if (rc != 0) {
		snprintf(why, sizeof(why), "malformed HELLO: %s", proto_strerror(rc));
		session_close(se, PROTO_ERR_PROTOCOL, why);
		return -1;
	}
	if (se->ssl && strcmp(h.sensor_id, se->cert_id) != 0) {
		snprintf(why, sizeof(why), "HELLO claims sensor id '%s' but the certificate says '%s'", h.sensor_id,
			 se->cert_id);
		session_close(se, PROTO_ERR_AUTH, why);
		return -1;
	}
	if (!se->ssl)
		snprintf(se->cert_id, sizeof(se->cert_id), "%s", h.sensor_id);
	size_t tl = strlen(srv->o.token ? srv->o.token : "");
	/* Constant time, so the comparison does not leak how much of a guess was right. */
	if (tl && (strlen(h.token) != tl || CRYPTO_memcmp(h.token, srv->o.token, tl) != 0)) {
		session_close(se, PROTO_ERR_AUTH, "bearer token refused");
		return -1;
	}
	/* One live session per sensor: a reconnecting sensor replaces its stale one. */
	for (struct session *o = srv->sessions; o; o = o->next) {
		if (o != se && o->state == S_STREAM && strcmp(o->cert_id, se->cert_id) == 0) {
			session_close(o, PROTO_ERR_SHUTDOWN, "replaced by a new session of the same sensor");
			break;
		}
	}
	if (srv->o.max_sensors && !store_sensor_known(srv->o.store, se->cert_id) &&
	    store_sensor_count(srv->o.store) >= srv->o.max_sensors) {
		snprintf(why, sizeof(why), "refused: %u sensors already known (limits.max_sensors)", srv->o.max_sensors);
		session_close(se, PROTO_ERR_LIMIT, why);
		return -1;
	}
	se->ss = store_sensor_get(srv->o.store, se->cert_id, why, sizeof(why));
	if (!se->ss) {
		session_close(se, PROTO_ERR_STORAGE, why);
		return -1;
	}
	se->names = names_log_open(srv->o.names, se->cert_id);
	struct proto_welcome w = {
		.epoch = h.epoch,
		.next_seq = store_sensor_begin(se->ss, h.epoch, h.ifaces, h.n_ifaces),
		.max_frame = srv->o.max_frame,
		.heartbeat_ms = srv->o.heartbeat_ms,
	};
	uint8_t buf[64];
	int n = proto_welcome_encode(&w, buf, sizeof(buf));
	se->state = S_STREAM;
	se->epoch = h.epoch;
	se->at_start = *store_sensor_counters(se->ss);
	log_info("sensor %s connected from %s (version %s, %u interface(s), epoch %016" PRIx64 ", next batch %" PRIu64 ")",
		 se->cert_id, se->peer, h.version, h.n_ifaces, h.epoch, w.next_seq);
	if (n < 0 || session_send(se, PROTO_WELCOME, buf, (size_t)n) != 0) {
		session_close(se, 0, "cannot send WELCOME");
		return -1;
	}
	return 0;
}

static int session_ack(struct session *se, uint64_t seq)
{
	struct proto_ack a = {.epoch = se->epoch, .seq = seq};
	uint8_t buf[32];
	int n = proto_ack_encode(&a, buf, sizeof(buf));
	if (n < 0 || session_send(se, PROTO_ACK, buf, (size_t)n) != 0) {
		session_close(se, 0, "sensor does not read acknowledgements");
		return -1;
	}
	return 0;
}

static int session_batch(struct session *se, const struct proto_hdr *hd, const uint8_t *p)
{
	struct server *srv = se->srv;
	struct proto_batch b;
	char why[600], err[400];
	int rc = proto_batch_decode(p, hd->len, srv->o.max_raw, &b);
	if (rc == 0 && !(hd->flags & PROTO_F_LZ4) && b.data_len != b.raw_len)
		rc = PROTO_EINVAL;
	if (rc != 0) {
		snprintf(why, sizeof(why), "malformed BATCH: %s", proto_strerror(rc));
		session_close(se, session_error_code(rc), why);
		return -1;
	}
	if (se->last_seq && b.seq <= se->last_seq) {
		/* Within one session sequence numbers strictly increase (PROTOCOL.md 6.3). */
		snprintf(why, sizeof(why), "replayed sequence: BATCH %" PRIu64 " after %" PRIu64, b.seq, se->last_seq);
		session_close(se, PROTO_ERR_PROTOCOL, why);
		return -1;
	}
	const uint8_t *raw = b.data;
	if (hd->flags & PROTO_F_LZ4) {
		rc = proto_lz4_decompress(b.data, b.data_len, srv->dec, b.raw_len);
		if (rc != 0) {
			snprintf(why, sizeof(why), "BATCH %" PRIu64 ": %s", b.seq, proto_strerror(rc));
			session_close(se, PROTO_ERR_PROTOCOL, why);
			return -1;
		}
		raw = srv->dec;
	}
	enum store_result sr = store_batch(se->ss, b.seq, raw, b.raw_len, b.n_records, err, sizeof(err));
	if (sr == STORE_SEQ_REUSED) {
		snprintf(why, sizeof(why), "rejected batch: %s", err);
		session_close(se, PROTO_ERR_SEQUENCE, why);
		return -1;
	}
	if (sr == STORE_REJECTED) {
		snprintf(why, sizeof(why), "rejected batch: %s", err);
		session_close(se, PROTO_ERR_PROTOCOL, why);
		return -1;
	}
	if (sr == STORE_FAILED) {
		/* Retrying this batch would fail the same way: say so and end the session
		 * rather than hold it for ever; the sensor keeps it and backs off. */
		snprintf(why, sizeof(why), "cannot store batch %" PRIu64 ": %s", b.seq, err);
		session_close(se, PROTO_ERR_STORAGE, why);
		return -1;
	}
	if (sr == STORE_RETRY) {
		/* Storage is failing (a full disk): hold the batch, ACK nothing, stop reading
		 * (the sensor's window and spool absorb it) and try again in a second. */
		if (!se->stalled)
			log_warnx("sensor %s: storage failed: %s; not acknowledging, retrying every second", se->cert_id,
				  err);
		se->stalled = true;
		se->stall_retries++;
		se->throttled = true;
		session_flush(se);
		ev_timer_set(&se->unthrottle, 1.0, 0.);
		ev_timer_start(srv->loop, &se->unthrottle);
		return 1;
	}
	if (se->stalled) {
		log_info("sensor %s: storage works again after %" PRIu64 " retries", se->cert_id, se->stall_retries);
		se->stalled = false;
		se->stall_retries = 0;
	}
	if (srv->o.sensor_rate) {
		double now = ev_now(srv->loop), burst = (double)srv->o.sensor_rate;
		se->tokens += (now - se->tokens_at) * (double)srv->o.sensor_rate;
		if (se->tokens > burst)
			se->tokens = burst;
		se->tokens_at = now;
		se->tokens -= (double)b.raw_len;
		if (se->tokens < 0 && !se->throttled) {
			/* Stop reading: TCP pushes back, the sensor's window and spool absorb it. */
			se->throttled = true;
			se->throttled_count++;
			session_flush(se);
			ev_timer_set(&se->unthrottle, -se->tokens / (double)srv->o.sensor_rate, 0.);
			ev_timer_start(srv->loop, &se->unthrottle);
		}
	}
	se->last_seq = b.seq;
	if (store_sensor_needs_sync(se->ss)) {
		se->ack_pending = b.seq; /* the sync timer ACKs it */
		/* Sync early once enough is waiting: ACKs held for a whole interval would
		 * let the sensors' windows fill up and cap the throughput. */
		if (store_unsynced_bytes(srv->o.store) >= SESSION_SYNC_EARLY)
			ev_feed_event(srv->loop, &srv->sync, EV_TIMER);
		return 0;
	}
	return session_ack(se, b.seq);
}

static int session_frame(struct session *se, const struct proto_hdr *h, const uint8_t *p)
{
	char why[300];
	if (se->state == S_HELLO) {
		if (h->type != PROTO_HELLO) {
			snprintf(why, sizeof(why), "expected HELLO, got frame type %u", h->type);
			session_close(se, PROTO_ERR_PROTOCOL, why);
			return -1;
		}
		int rc = session_hello(se, p, h->len);
		if (rc == 0)
			session_unauth_unlink(se); /* a sensor now: never shed for a newcomer */
		return rc;
	}
	switch (h->type) {
	case PROTO_BATCH:
		return session_batch(se, h, p);
	case PROTO_STATS: {
		struct proto_stats st;
		int rc = proto_stats_decode(p, h->len, &st);
		if (rc == 0) {
			store_sensor_stats(se->ss, &st);
			return 0;
		}
		snprintf(why, sizeof(why), "malformed STATS: %s", proto_strerror(rc));
		break;
	}
	case PROTO_NAMES: {
		static struct proto_names m; /* 90 KiB; the loop is single-threaded */
		char err[4200];
		int rc = proto_names_decode(p, h->len, &m);
		if (rc != 0) {
			snprintf(why, sizeof(why), "malformed NAMES: %s", proto_strerror(rc));
			break;
		}
		/* Names are derived data: a storage failure is logged and counted, and the
		 * session (whose packets may still be stored) goes on. */
		static struct log_limit names_lim, nodir_lim;
		if (!se->names) {
			if (log_limit_ok(&nodir_lim, 1, 3600))
				log_info("sensor %s: name events not kept: no storage.dir", se->cert_id);
		} else if (names_log_append(se->names, &m, err, sizeof(err)) < 0 && log_limit_ok(&names_lim, 3, 10)) {
			log_warnx("sensor %s: cannot store %u name events: %s", se->cert_id, m.n, err);
		}
		return 0;
	}
	case PROTO_HEARTBEAT: {
		uint64_t ts;
		int rc = proto_heartbeat_decode(p, h->len, &ts);
		if (rc == 0)
			return 0;
		snprintf(why, sizeof(why), "malformed HEARTBEAT: %s", proto_strerror(rc));
		break;
	}
	case PROTO_ERROR: {
		struct proto_error e;
		if (proto_error_decode(p, h->len, &e) == 0)
			snprintf(why, sizeof(why), "sensor reported error %u: %s", e.code, e.text);
		else
			snprintf(why, sizeof(why), "sensor sent a malformed ERROR");
		session_close(se, 0, why);
		return -1;
	}
	default:
		snprintf(why, sizeof(why), "unexpected frame type %u", h->type);
		break;
	}
	session_close(se, PROTO_ERR_PROTOCOL, why);
	return -1;
}

/* Reads and handles frames. Returns -1 if the session was closed. */
/* Handles every complete frame in the input buffer. Returns -1 if the session was
 * closed, 1 if it must pause (throttled, or storage failing: the frame that failed
 * stays in the buffer for the retry), 0 otherwise. */
static int session_parse(struct session *se)
{
	struct server *srv = se->srv;
	char why[300];
	size_t off = 0;
	int ret = 0;
	while (!se->throttled) {
		struct proto_hdr h;
		/* Before HELLO nothing larger than the largest valid HELLO is accepted
		 * (PROTOCOL.md 7), so an unidentified peer cannot make us buffer max_frame. */
		uint32_t max_len = se->state == S_HELLO ? SESSION_MAX_HELLO : srv->o.max_frame;
		int rc = proto_hdr_decode(se->in + off, se->in_len - off, max_len, &h);
		if (rc == PROTO_EAGAIN)
			break;
		if (rc != 0) {
			snprintf(why, sizeof(why), "bad frame header: %s", proto_strerror(rc));
			session_close(se, session_error_code(rc), why);
			return -1;
		}
		size_t need = PROTO_HDR_LEN + (size_t)h.len;
		if (se->in_len - off < need) {
			if (need > se->in_cap) {
				uint8_t *ni = realloc(se->in, need);
				if (!ni) {
					session_close(se, PROTO_ERR_LIMIT, "out of memory for a frame");
					return -1;
				}
				se->in = ni;
				se->in_cap = need;
			}
			break;
		}
		rc = session_frame(se, &h, se->in + off + PROTO_HDR_LEN);
		if (rc < 0)
			return -1;
		if (rc == 0)
			off += need;
	}
	if (se->throttled)
		ret = 1;
	if (off) {
		memmove(se->in, se->in + off, se->in_len - off);
		se->in_len -= off;
	}
	return ret;
}

/* Reads and handles frames. Returns -1 if the session was closed. */
static int session_read(struct session *se)
{
	struct server *srv = se->srv;
	char why[300], tb[256];
	size_t budget = SESSION_READ_BUDGET;
	/* Frames left from a pause come first. */
	int rc = session_parse(se);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	while (budget > 0) {
		ssize_t r;
		if (se->ssl) {
			ERR_clear_error();
			int n = SSL_read(se->ssl, se->in + se->in_len, (int)(se->in_cap - se->in_len));
			if (n <= 0) {
				int e = SSL_get_error(se->ssl, n);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return 0;
				if (e == SSL_ERROR_ZERO_RETURN)
					snprintf(why, sizeof(why), "sensor closed the connection");
				else if (e == SSL_ERROR_SYSCALL)
					snprintf(why, sizeof(why), "connection lost: %s", errno ? strerror(errno) : "EOF");
				else
					snprintf(why, sizeof(why), "tls: %s", tls_errors(tb, sizeof(tb)));
				session_close(se, 0, why);
				return -1;
			}
			r = n;
		} else {
			r = read(se->fd, se->in + se->in_len, se->in_cap - se->in_len);
			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					return 0;
				session_close(se, 0, r == 0 ? "sensor closed the connection" : strerror(errno));
				return -1;
			}
		}
		se->in_len += (size_t)r;
		budget = budget > (size_t)r ? budget - (size_t)r : 0;
		se->last_rx = ev_now(srv->loop);
		rc = session_parse(se);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	/* Budget spent: come back on the next loop iteration even if the socket is
	 * already drained into OpenSSL's buffer. */
	if (se->ssl && SSL_pending(se->ssl))
		ev_feed_event(srv->loop, &se->io, EV_READ);
	return 0;
}

static void session_handshake(struct session *se)
{
	char why[400], tb[256];
	ERR_clear_error();
	int r = SSL_accept(se->ssl);
	if (r == 1) {
		int idr = tls_peer_identity(se->ssl, se->cert_id, sizeof(se->cert_id));
		if (idr != 0) {
			snprintf(why, sizeof(why), "client certificate refused: %s", tls_identity_strerror(idr));
			se->cert_id[0] = '\0';
			session_close(se, 0, why);
			return;
		}
		if (!proto_sensor_id_ok(se->cert_id, strlen(se->cert_id))) {
			snprintf(why, sizeof(why), "certificate CN '%s' is not a valid sensor id", se->cert_id);
			se->cert_id[0] = '\0';
			session_close(se, 0, why);
			return;
		}
		se->state = S_HELLO;
		se->since = ev_now(se->srv->loop);
		log_debug("session %s: TLS established (%s, %s), sensor %s", se->peer, SSL_get_version(se->ssl),
			  SSL_get_cipher(se->ssl), se->cert_id);
		return;
	}
	int e = SSL_get_error(se->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ev_io_stop(se->srv->loop, &se->io);
		ev_io_set(&se->io, se->fd, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
		ev_io_start(se->srv->loop, &se->io);
		return;
	}
	long v = SSL_get_verify_result(se->ssl);
	bool eof = ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
	const char *errs = tls_errors(tb, sizeof(tb));
	if (v == X509_V_OK && (eof || (!*errs && (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)))) {
		/* Gone before saying anything wrong: a port scan, or a flood ending. */
		session_end_unauth(se, UNAUTH_PEER_CLOSED, "TLS handshake: connection closed by peer");
		return;
	}
	if (v != X509_V_OK)
		snprintf(why, sizeof(why), "TLS handshake failed: client certificate refused: %s",
			 X509_verify_cert_error_string(v));
	else
		snprintf(why, sizeof(why), "TLS handshake failed: %s",
			 *errs ? errs : (e == SSL_ERROR_SYSCALL ? "connection closed by peer" : "unknown error"));
	session_close(se, 0, why);
}

static void session_on_unthrottle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *se = w->data;
	se->throttled = false;
	if (session_flush(se) != 0) {
		session_close(se, 0, "write failed");
		return;
	}
	/* Frames may already sit in our buffer or in OpenSSL's. */
	ev_feed_event(loop, &se->io, EV_READ);
}

static void session_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *se = w->data;
	if (!se->in) {
		/* First event: a connection that never sends anything (a flood) never costs
		 * the input buffer and the TLS state. */
		struct server *srv = se->srv;
		se->in = malloc(SESSION_INBUF_MIN);
		se->in_cap = se->in ? SESSION_INBUF_MIN : 0;
		if (se->in && srv->o.ssl_ctx && (!(se->ssl = SSL_new(srv->o.ssl_ctx)) || SSL_set_fd(se->ssl, se->fd) != 1)) {
			free(se->in);
			se->in = NULL;
		}
		if (!se->in) {
			session_end_unauth(se, UNAUTH_SHED_TOTAL, "out of memory");
			return;
		}
	}
	if (se->state == S_HANDSHAKE) {
		session_handshake(se);
		return; /* freed or waiting; the next event reads HELLO */
	}
	if (session_read(se) != 0)
		return;
	if (session_flush(se) != 0)
		session_close(se, 0, "write failed");
}

/* The source key of an address: IPv4 (also when mapped into IPv6) whole, IPv6 by its
 * /64, since one host commonly holds a whole /64. */
static void server_src_key(const struct sockaddr_storage *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &s4->sin_addr, 4);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(key, &s6->sin6_addr, IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) ? 16 : 8);
	}
}

/* The unauthenticated connection to shed when the total is full: the oldest one of the
 * source that holds the most, so that a flood from a few sources pays for itself and a
 * sensor's single connection from elsewhere stays. One pass over the list (at most
 * limits.unauth_max) with a scratch table sized for it. */
static struct session *server_unauth_victim(struct server *srv)
{
	struct server_src *best = NULL;

	if (++srv->src_gen == 0) {
		memset(srv->src_tab, 0, srv->src_cap * sizeof(*srv->src_tab));
		srv->src_gen = 1;
	}
	for (struct session *u = srv->uhead; u; u = u->unext) {
		size_t i = (size_t)hash_end(hash_add(HASH_INIT, u->src, 16)) & (srv->src_cap - 1);
		struct server_src *t;
		/* The table has twice the room the list can need: a free slot is always found. */
		for (t = &srv->src_tab[i]; t->gen == srv->src_gen && memcmp(t->key, u->src, 16) != 0;
		     t = &srv->src_tab[i = (i + 1) & (srv->src_cap - 1)])
			;
		if (t->gen != srv->src_gen) {
			t->gen = srv->src_gen;
			memcpy(t->key, u->src, 16);
			t->n = 0;
			t->oldest = u; /* the list is oldest first */
		}
		t->n++;
		if (!best || t->n > best->n)
			best = t;
	}
	return best ? best->oldest : NULL;
}

/* Makes room for a new connection from source key src: sheds the oldest unauthenticated
 * connection of the same source when that source is at limits.unauth_per_source, else
 * one chosen by server_unauth_victim when unauthenticated connections are at
 * limits.unauth_max or all sessions at limits.max_sessions. Authenticated sessions are
 * never shed. False when there is no room (every session is a sensor's). */
static bool server_make_room(struct server *srv, const uint8_t src[16])
{
	struct session *same = NULL;
	unsigned n_same = 0;

	for (struct session *u = srv->uhead; u; u = u->unext) {
		if (memcmp(u->src, src, 16) == 0 && n_same++ == 0)
			same = u;
	}
	if (same && n_same >= srv->o.unauth_per_source) {
		session_end_unauth(same, UNAUTH_SHED_SRC, "shed: too many unauthenticated connections from its source");
		return true;
	}
	if (srv->n_unauth < srv->o.unauth_max && srv->n_sessions < srv->o.max_sessions)
		return true;
	struct session *v = server_unauth_victim(srv);
	if (!v)
		return false;
	session_end_unauth(v, UNAUTH_SHED_TOTAL, "shed: too many unauthenticated connections");
	return true;
}

static void server_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct server *srv = w->data;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd = accept4(w->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* The listener stays readable while the backlog waits: without a pause
				 * the loop would spin. Existing sessions keep streaming meanwhile. */
				if (log_limit_ok(&srv->accept_lim, 3, 10))
					log_warn("accept: pausing new connections for 1 s (%u sessions open)",
						 srv->n_sessions);
				for (int k = 0; k < srv->n_listeners; k++)
					ev_io_stop(loop, &srv->lio[k]);
				ev_timer_start(loop, &srv->accept_pause);
			} else if (errno != EAGAIN && errno != EINTR && log_limit_ok(&srv->accept_lim, 3, 10)) {
				log_warn("accept");
			}
			return;
		}
		char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
		uint8_t src[16];
		server_src_key(&sa, src);
		getnameinfo((struct sockaddr *)&sa, salen, host, sizeof(host), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
		if (!server_make_room(srv, src)) {
			if (log_limit_ok(&srv->refuse_lim, 3, 10))
				log_warnx("session %s:%s: refused: %u sessions open (limits.max_sessions)", host, port,
					  srv->n_sessions);
			close(fd);
			continue;
		}
		struct session *se = calloc(1, sizeof(*se));
		if (!se) {
			close(fd);
			continue;
		}
		se->srv = srv;
		se->fd = fd;
		snprintf(se->peer, sizeof(se->peer), "%s:%s", host, port);
		se->since = se->last_rx = se->last_tx = ev_now(loop);
		se->state = srv->o.ssl_ctx ? S_HANDSHAKE : S_HELLO; /* buffer and TLS state: on the first event */
		se->next = srv->sessions;
		if (srv->sessions)
			srv->sessions->prev = se;
		srv->sessions = se;
		srv->n_sessions++;
		memcpy(se->src, src, sizeof(se->src));
		se->unauth = true;
		se->uprev = srv->utail;
		if (srv->utail)
			srv->utail->unext = se;
		else
			srv->uhead = se;
		srv->utail = se;
		srv->n_unauth++;
		ev_io_init(&se->io, session_on_io, fd, EV_READ);
		se->io.data = se;
		ev_timer_init(&se->unthrottle, session_on_unthrottle, 1., 0.);
		se->unthrottle.data = se;
		se->tokens = (double)srv->o.sensor_rate;
		se->tokens_at = ev_now(loop);
		ev_io_start(loop, &se->io);
	}
}

static void server_on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	int rc = store_sync(srv->o.store);
	if (rc != 0 && log_limit_ok(&srv->accept_lim, 3, 10))
		log_warnx("store: sync failed: %s (acknowledgements held back)", strerror(-rc));
	struct session *se = srv->sessions, *next;
	for (; se; se = next) {
		next = se->next;
		names_log_sync(se->names);
		if (se->ack_pending && se->ss && !store_sensor_needs_sync(se->ss)) {
			uint64_t seq = se->ack_pending;
			se->ack_pending = 0;
			session_ack(se, seq);
		}
	}
}

static void server_on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	for (int k = 0; k < srv->n_listeners; k++)
		ev_io_start(loop, &srv->lio[k]);
}

static void server_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	double now = ev_now(loop), hb = srv->o.heartbeat_ms / 1000.0, setup = srv->o.setup_ms / 1000.0;
	struct session *se, *next;
	for (se = srv->uhead; se; se = next) {
		next = se->unext;
		if (now - se->since <= setup)
			continue;
		char why[64];
		snprintf(why, sizeof(why), se->state == S_HELLO ? "no HELLO within %.0f s" : "TLS handshake timed out after %.0f s",
			 setup);
		session_end_unauth(se, UNAUTH_TIMED_OUT, why);
	}
	server_unauth_summary(srv, now, false);
	for (se = srv->sessions; se; se = next) {
		next = se->next;
		if (se->state != S_STREAM)
			continue;
		if (se->throttled)
			se->last_rx = now; /* we are not reading: the sensor cannot be heard */
		if (now - se->last_rx > 3 * hb) {
			char why[96];
			snprintf(why, sizeof(why), "sensor silent for %.1f s", now - se->last_rx);
			session_close(se, PROTO_ERR_PROTOCOL, why);
			continue;
		}
		if (now - se->last_tx >= hb) {
			uint8_t buf[8];
			int n = proto_heartbeat_encode((uint64_t)(now * 1e9), buf, sizeof(buf));
			if (n > 0 && session_send(se, PROTO_HEARTBEAT, buf, (size_t)n) != 0)
				session_close(se, 0, "cannot send heartbeat");
		}
	}
	store_tick(srv->o.store);
}

struct server *server_new(struct ev_loop *loop, const struct server_opts *o)
{
	struct server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->o = *o;
	srv->loop = loop;
	if (srv->o.unauth_max > srv->o.max_sessions)
		srv->o.unauth_max = srv->o.max_sessions;
	if (srv->o.unauth_max == 0)
		srv->o.unauth_max = 1;
	if (srv->o.unauth_per_source == 0)
		srv->o.unauth_per_source = 1;
	if (srv->o.setup_ms == 0)
		srv->o.setup_ms = 10000;
	for (srv->src_cap = 4; srv->src_cap < 2 * (size_t)srv->o.unauth_max + 2; srv->src_cap *= 2)
		;
	srv->dec = malloc(o->max_raw);
	srv->src_tab = calloc(srv->src_cap, sizeof(*srv->src_tab));
	if (!srv->dec || !srv->src_tab) {
		free(srv->dec);
		free(srv->src_tab);
		free(srv);
		return NULL;
	}
	srv->uq_at = ev_now(loop);
	if (o->sync_ms) {
		ev_timer_init(&srv->sync, server_on_sync, o->sync_ms / 1000.0, o->sync_ms / 1000.0);
		srv->sync.data = srv;
		ev_timer_start(loop, &srv->sync);
	}
	ev_timer_init(&srv->accept_pause, server_on_accept_pause, 1., 0.);
	srv->accept_pause.data = srv;
	ev_timer_init(&srv->tick, server_on_tick, 1., 1.);
	srv->tick.data = srv;
	ev_timer_start(loop, &srv->tick);
	return srv;
}

int server_listen(struct server *srv, const char *addr, char *err, size_t errlen)
{
	struct hostport hp;
	if (srv->n_listeners == SERVER_MAX_LISTENERS) {
		snprintf(err, errlen, "listen: at most %d addresses", SERVER_MAX_LISTENERS);
		return -1;
	}
	/* Port 0 lets the kernel pick one (tests read it back from the log). */
	if (hostport_parse(addr, HOSTPORT_LISTEN | HOSTPORT_PORT0, "listen", &hp, err, errlen) != 0)
		return -1;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai;
	int rc = getaddrinfo(*hp.host ? hp.host : NULL, hp.port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "listen: %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A deep backlog (the kernel caps it at net.core.somaxconn): under a flood of
	 * connections a sensor's SYN waits its turn instead of being dropped and retried
	 * a second or more later; the accept loop sheds the flood quickly. */
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
		snprintf(err, errlen, "listen: %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	int i = srv->n_listeners++;
	srv->lfd[i] = fd;
	ev_io_init(&srv->lio[i], server_on_accept, fd, EV_READ);
	srv->lio[i].data = srv;
	ev_io_start(srv->loop, &srv->lio[i]);
	return 0;
}

void server_shutdown(struct server *srv)
{
	for (int i = 0; i < srv->n_listeners; i++) {
		ev_io_stop(srv->loop, &srv->lio[i]);
		close(srv->lfd[i]);
	}
	srv->n_listeners = 0;
	ev_timer_stop(srv->loop, &srv->accept_pause);
	if (srv->o.sync_ms) {
		/* Sessions end now: make what they stored durable and ACK it first. */
		server_on_sync(srv->loop, &srv->sync, 0);
		ev_timer_stop(srv->loop, &srv->sync);
	}
	while (srv->uhead)
		session_free(srv->uhead); /* nothing to tell a peer that never identified itself */
	while (srv->sessions)
		session_close(srv->sessions, PROTO_ERR_SHUTDOWN, "receiver shutting down");
	server_unauth_summary(srv, ev_now(srv->loop), true);
	ev_timer_stop(srv->loop, &srv->tick);
}

bool server_sensor_connected(const struct server *srv, const char *id)
{
	for (const struct session *se = srv->sessions; se; se = se->next)
		if (se->state == S_STREAM && strcmp(se->cert_id, id) == 0)
			return true;
	return false;
}

void server_set_store(struct server *srv, struct store *store) { srv->o.store = store; }

unsigned server_session_count(const struct server *srv) { return srv->n_sessions; }

void server_free(struct server *srv)
{
	if (!srv)
		return;
	server_shutdown(srv);
	free(srv->dec);
	free(srv->src_tab);
	free(srv);
}
