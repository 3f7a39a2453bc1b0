/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/ingest/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "shared/hash.h"
#include "shared/hostport.h"
#include "shared/log.h"
#include "shared/tls.h"
#include "proto/wire.h"
#include "receiver/store/worker.h"
#include "receiver/outputs/live.h"

#define SESSION_INBUF_MIN        (64 * 1024)
/* An input buffer or batch arena larger than this is given back once a burst is
 * stored, so that the memory a burst took does not stay with every session. */
#define SESSION_BUF_KEEP         (256u * 1024)
/* limits.ingest_buffer: bytes all sensors' sessions may hold at once in input buffers
 * and batch arenas not yet stored. Beyond it, a session that has a group with the
 * worker and more than its share (the budget / sessions, at least SESSION_SHARE_MIN)
 * stops reading until the worker gives memory back (TCP pushes back, the sensor's
 * window and spool absorb it). A session with nothing at the worker always reads, so
 * every sensor makes progress and none waits on another. */
#define SERVER_INGEST_BUDGET     (64u << 20) /* when not configured */
#define SESSION_SHARE_MIN        (256u * 1024)
#define SESSION_OUTBUF           8192
#define SESSION_SYNC_EARLY       (2u << 20) /* interval policy: sync once this much waits */
#define SESSION_MAX_HELLO        5172       /* largest valid HELLO payload, PROTOCOL.md 7 */
#define SERVER_MAX_LISTENERS     8
/* Bytes of input handled per readable event before yielding to other sessions. */
#define SESSION_READ_BUDGET      (8u << 20)
/* Unauthenticated connections that end quietly (shed, timed out, closed by the peer)
 * are summed up in one line this often, so that a flood cannot flood the log. */
#define SESSION_UNAUTH_SUMMARY_S 10.0

/* Jobs (STATS, NAMES, ...) one session may have with the worker before its input
 * waits: a sensor that floods small frames cannot queue unbounded memory. */
#define SESSION_MAX_JOBS 8
/* Reads remembered per session to date a frame by the read that completed it. */
#define SESSION_RX_MARKS 32

/*
 * Threads. Everything here runs on the libev loop except the run() of the jobs below,
 * which the store worker (worker.h) runs, one at a time, in submission order. A
 * session has at most one BATCH (or its BEGIN) with the worker: its input waits
 * meanwhile (`busy`, no EV_READ, the frame kept at the head of `in`), exactly as if
 * the store were called in line, so the order of batches, ACKs and errors per sensor
 * is what it always was; other sessions go on being read and decoded. The store and
 * names objects (ss, names) are touched by the worker only; at_start, ss and names
 * are written by the BEGIN job and read on the loop only after it came back.
 */
enum session_state {
	S_HANDSHAKE,
	S_HELLO,
	S_BEGIN,
	S_STREAM
};

struct session;

/* Raw bytes one group of batches may hold before it is handed over (beyond one batch). */
#define SESSION_GROUP_BYTES (4u << 20)

/* BATCH: consecutive batches of one session, decompressed into one arena, stored with
 * one sync and one state write (store_batches()). A session has two: one with the
 * worker, one being filled from the input meanwhile. */
struct batch_job {
	struct worker_job wj; /* first: the worker hands this pointer back */
	struct session *se;
	unsigned n;
	struct {
		uint64_t seq;
		uint32_t raw_len, n_records;
		size_t raw_off;   /* in arena */
		size_t frame_len; /* bytes of its frame in the session's input */
		uint64_t t;       /* when its frame was read whole (ns, monotonic) */
	} b[STORE_BATCHES_MAX];
	uint8_t *arena;
	size_t arena_len, arena_cap;
	/* Out. */
	struct store_batch_in in[STORE_BATCHES_MAX];
	unsigned fail; /* first batch neither stored nor a duplicate, n if none */
	bool needs_sync;
	uint64_t unsynced; /* all sensors' bytes waiting for the interval sync */
	char err[400];
};

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
	/* The HELLO's interface table, for the live outputs (set with the BEGIN's reply). */
	struct proto_iface *ifaces;
	uint16_t n_ifaces;
	uint64_t epoch;
	uint64_t ack_pending;
	uint64_t last_seq;              /* last BATCH handled in this session, 0 = none yet */
	struct store_counters at_start; /* the sensor's counters when this session began */
	uint64_t ack_pending_t;         /* when the batch ack_pending names was read (ns) */
	/* Store worker jobs of this session not yet back; a closed session (dead) is freed
	 * when the last one returns. busy: a BEGIN or BATCH is out, input waits. */
	unsigned inflight;
	bool busy, dead, begun;
	size_t head_len; /* bytes of the HELLO at the head of `in` that the worker has */
	/* Batch groups: gj[cur] is with the worker when group_busy, gj[!cur] fills up.
	 * Their frames stay at the head of `in` (held bytes, in order) until the worker
	 * is done with them: a batch storage could not take is parsed again from there. */
	struct batch_job gj[2];
	unsigned cur;
	bool group_busy;
	bool barrier; /* a frame waits for every group to come back */
	size_t held;
	uint64_t last_queued; /* last BATCH put into a group, 0 = none since last_seq */
	/* Input bytes appended and consumed since the start, and when the last reads
	 * ended, to date each frame by the read that completed it (ACK latency). */
	uint64_t rx_total, rx_consumed;
	struct {
		uint64_t end, t;
	} rx_mark[SESSION_RX_MARKS];
	unsigned rx_mark_n;
	/* Rate limit: a token bucket in bytes; reading stops while it is empty. */
	double tokens, tokens_at;
	bool throttled;
	bool stalled; /* storage failing: the batch at the head of the buffer waits */
	/* Its buffers count towards limits.ingest_buffer (from BEGIN on: a connection that
	 * is not a sensor yet cannot make sensors wait); waiting for the budget, in the
	 * server's list in the order the sessions stopped. */
	bool counted, budget_queued;
	struct session *bprev, *bnext;
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
	struct worker *w; /* the store worker: every store and names call runs there */
	bool tick_busy, sync_busy, stopping;
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
	} uq; /* since the last summary line */
	double uq_at;
	struct log_limit unauth_lim;
	/* limits.ingest_buffer: bytes the counted sessions hold, how many they are, and
	 * those waiting for the budget, the longest waiting first. */
	size_t held_bytes;
	unsigned n_counted;
	struct session *bhead, *btail;
	/* server_metrics_get() reads these from another thread: the loop only stores. */
	struct {
		atomic_uint_fast64_t accepted, refused, shed, timed_out, failed, peer_closed, throttled;
		atomic_uint_fast64_t sessions, unauth, held_bytes;
	} m;
};

#define SERVER_M_ADD(srv, f)    atomic_fetch_add_explicit(&(srv)->m.f, 1, memory_order_relaxed)
#define SERVER_M_SET(srv, f, v) atomic_store_explicit(&(srv)->m.f, (v), memory_order_relaxed)

/* One source in the scratch table that picks which unauthenticated connection to shed. */
struct server_src {
	uint8_t key[16];
	uint32_t gen; /* == server.src_gen: in use */
	unsigned n;
	struct session *oldest;
};

/* How an unauthenticated connection ended, for the summary line. */
enum unauth_end {
	UNAUTH_SHED_SRC,
	UNAUTH_SHED_TOTAL,
	UNAUTH_TIMED_OUT,
	UNAUTH_PEER_CLOSED
};

static void session_on_io(struct ev_loop *loop, ev_io *w, int revents);

/* The ERROR code that answers a decoder result (PROTOCOL.md 6.5). */
static uint16_t
session_error_code(int rc)
{
	if (rc == PROTO_EVERSION)
		return PROTO_ERR_VERSION;
	if (rc == PROTO_ETOOBIG)
		return PROTO_ERR_LIMIT;
	return PROTO_ERR_PROTOCOL;
}

/* Takes se off the unauthenticated list: it is authenticated now, or closing. */
static void
session_unauth_unlink(struct session *se)
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

static bool
session_group_full(const struct batch_job *g)
{
	return g->n == STORE_BATCHES_MAX || g->arena_len >= SESSION_GROUP_BYTES;
}

/* Bytes a session's buffers take (their capacities: that is what they cost). */
static size_t
session_bytes(const struct session *se)
{
	return se->in_cap + se->gj[0].arena_cap + se->gj[1].arena_cap;
}

/* A buffer of se grew or shrank from old_cap to new_cap bytes. */
static void
session_held(struct session *se, size_t old_cap, size_t new_cap)
{
	if (se->counted)
		se->srv->held_bytes = se->srv->held_bytes - old_cap + new_cap;
}

/* Over limits.ingest_buffer and over its share of it, with a group at the worker whose
 * return gives memory back and wakes it: reading more would only hold more. */
static bool
session_over_budget(const struct session *se)
{
	const struct server *srv = se->srv;
	if (!se->group_busy || srv->held_bytes <= srv->o.ingest_buffer)
		return false;
	size_t share = srv->o.ingest_buffer / (srv->n_counted ? srv->n_counted : 1);
	return session_bytes(se) > (share > SESSION_SHARE_MIN ? share : SESSION_SHARE_MIN);
}

/* Input waits: rate limit or storage failure (throttled), BEGIN with the worker
 * (busy), too many jobs there, a frame that must wait for the batches before it
 * (barrier), both batch groups taken, or the server-wide read-ahead budget spent. */
static bool
session_paused(const struct session *se)
{
	return se->throttled || se->busy || se->inflight >= SESSION_MAX_JOBS || se->barrier ||
		(se->group_busy && session_group_full(&se->gj[!se->cur])) || session_over_budget(se);
}

/* Queues se, which stopped reading for the budget, to be woken when memory comes back. */
static void
server_budget_wait(struct session *se)
{
	struct server *srv = se->srv;
	if (se->budget_queued)
		return;
	se->budget_queued = true;
	se->bnext = NULL;
	se->bprev = srv->btail;
	if (srv->btail)
		srv->btail->bnext = se;
	else
		srv->bhead = se;
	srv->btail = se;
}

static void
server_budget_unlink(struct session *se)
{
	struct server *srv = se->srv;
	if (!se->budget_queued)
		return;
	if (se->bprev)
		se->bprev->bnext = se->bnext;
	else
		srv->bhead = se->bnext;
	if (se->bnext)
		se->bnext->bprev = se->bprev;
	else
		srv->btail = se->bprev;
	se->bprev = se->bnext = NULL;
	se->budget_queued = false;
}

static uint64_t
session_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void session_resume(struct session *se);

/* Wakes, longest waiting first, the sessions the budget no longer holds back. */
static void
server_budget_wake(struct server *srv)
{
	struct session *se, *next;
	for (se = srv->bhead; se; se = next) {
		next = se->bnext;
		if (session_over_budget(se))
			continue;
		server_budget_unlink(se);
		session_resume(se);
	}
}

/* Frees what is left of a closed session once the worker has none of its jobs. */
static void
session_release(struct session *se)
{
	if (!se->dead || se->inflight)
		return;
	if (se->counted) {
		se->srv->held_bytes -= session_bytes(se);
		se->srv->n_counted--;
	}
	free(se->in);
	free(se->gj[0].arena);
	free(se->gj[1].arena);
	free(se->ifaces);
	free(se);
}

/* The start of every session job but BATCH (which lives in the session). */
struct session_job {
	struct worker_job wj; /* first: the worker hands this pointer back */
	struct session *se;
};

/* END: the session is over; on the worker, after everything it submitted. */
struct end_job {
	struct session_job h;
};

static void
session_end_run(struct worker_job *wj)
{
	struct session *se = ((struct session_job *)wj)->se;
	struct store *store = se->srv->o.store;
	if (se->ss) {
		store_sensor_end(se->ss);
		store_sensor_write_stats(se->ss, false);
		if (se->names) {
			const struct names_log_counters *nc = names_log_counters(se->names);

			if (nc->written || nc->repeats || nc->lost)
				log_info("sensor %s: names: %" PRIu64 " events stored, %" PRIu64
					 " repeats of the mapping in effect skipped, %" PRIu64
					 " lost to storage errors",
					se->cert_id, nc->written, nc->repeats, nc->lost);
		}
		const struct store_counters *c = store_sensor_counters(se->ss), *b = &se->at_start;
		log_info("sensor %s: session from %s ended: stored %" PRIu64 " batches, %" PRIu64
			 " packets, %" PRIu64 " bytes; %" PRIu64 " duplicate batches dropped",
			se->cert_id, se->peer, c->batches - b->batches, c->packets - b->packets,
			c->bytes - b->bytes, c->duplicates - b->duplicates);
		store_write_stats(store);
	}
	names_log_close(se->names);
	se->names = NULL;
}

/* Done for jobs whose only result is that they ran. */
static void
session_job_free_done(struct worker_job *wj)
{
	struct session *se = ((struct session_job *)wj)->se;
	free(wj);
	bool was_full = se->inflight-- == SESSION_MAX_JOBS;
	if (se->dead)
		session_release(se);
	else if (was_full && !session_paused(se))
		session_resume(se);
}

static void
session_free(struct session *se)
{
	struct server *srv = se->srv;
	session_unauth_unlink(se);
	server_budget_unlink(se);
	ev_io_stop(srv->loop, &se->io);
	ev_timer_stop(srv->loop, &se->unthrottle);
	if (se->begun) {
		/* After its BEGIN and any batch still out: ends the sensor's segments, writes
		 * its stats.json and closes its names log, all off the loop. */
		struct end_job *j = calloc(1, sizeof(*j));
		if (!j) {
			/* Cannot hand it over: wait for the worker (rare; a daemon out of memory). */
			worker_drain(srv->w);
			struct end_job tmp = { .h.se = se };
			session_end_run(&tmp.h.wj);
		} else {
			j->h.se = se;
			j->h.wj.run = session_end_run;
			j->h.wj.done = session_job_free_done;
			se->inflight++;
			worker_submit(srv->w, &j->h.wj);
		}
	}
	if (se->ssl)
		SSL_free(se->ssl);
	se->ssl = NULL;
	close(se->fd);
	se->fd = -1;
	if (se->prev)
		se->prev->next = se->next;
	else
		srv->sessions = se->next;
	if (se->next)
		se->next->prev = se->prev;
	srv->n_sessions--;
	se->dead = true;
	session_release(se);
}

/* Writes buffered output; returns 0 or -1 (session must close). */
static int
session_flush(struct session *se)
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
	/* A throttled session, or one whose batch the worker has, is not read from:
	 * watching EV_READ would spin. */
	int ev = (session_paused(se) ? 0 : EV_READ) | (se->out_len ? EV_WRITE : 0);
	if (session_over_budget(se))
		server_budget_wait(se);
	else
		server_budget_unlink(se); /* its own group came back: it reads again */
	if (ev != (se->io.events & (EV_READ | EV_WRITE)) || !ev_is_active(&se->io) != !ev) {
		ev_io_stop(se->srv->loop, &se->io);
		ev_io_set(&se->io, se->fd, ev ? ev : EV_READ);
		if (ev)
			ev_io_start(se->srv->loop, &se->io);
	}
	return 0;
}

static int
session_send(struct session *se, uint8_t type, const uint8_t *payload, size_t n)
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
static void
session_close(struct session *se, uint16_t code, const char *why)
{
	if (code) {
		struct proto_error e = { .code = code };
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
			log_warnx("session %s%s%s: closed: %s", se->peer, se->cert_id[0] ? " sensor " : "",
				se->cert_id, why);
		else
			srv->uq.failed_quiet++;
		srv->uq.failed++;
		SERVER_M_ADD(srv, failed);
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
static void
session_end_unauth(struct session *se, enum unauth_end how, const char *why)
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
	if (how == UNAUTH_SHED_SRC || how == UNAUTH_SHED_TOTAL)
		SERVER_M_ADD(srv, shed);
	else if (how == UNAUTH_TIMED_OUT)
		SERVER_M_ADD(srv, timed_out);
	else
		SERVER_M_ADD(srv, peer_closed);
	snprintf(srv->uq.last, sizeof(srv->uq.last), "%s: %s", se->peer, why);
	log_debug("session %s: closed: %s", se->peer, why);
	if (se->state == S_HELLO && how != UNAUTH_PEER_CLOSED) {
		struct proto_error e = { .code = how == UNAUTH_TIMED_OUT ? PROTO_ERR_PROTOCOL
									 : PROTO_ERR_LIMIT };
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
static void
server_unauth_summary(struct server *srv, double now, bool force)
{
	uint64_t quiet = srv->uq.shed_src + srv->uq.shed_total + srv->uq.timed_out + srv->uq.peer_closed;

	if (!force && now - srv->uq_at < SESSION_UNAUTH_SUMMARY_S)
		return;
	if (quiet || srv->uq.failed_quiet)
		log_msg(quiet == srv->uq.peer_closed && !srv->uq.failed_quiet ? LOG_LVL_INFO : LOG_LVL_WARN,
			"unauthenticated connections in the last %.0f s: %" PRIu64 " shed (%" PRIu64
			" over limits.unauth_per_source, %" PRIu64
			" over limits.unauth_max or limits.max_sessions), %" PRIu64 " timed out, %" PRIu64
			" closed by the peer, %" PRIu64 " failed (%" PRIu64
			" not logged singly); %u open now; last: %s",
			now - srv->uq_at, srv->uq.shed_src + srv->uq.shed_total, srv->uq.shed_src,
			srv->uq.shed_total, srv->uq.timed_out, srv->uq.peer_closed, srv->uq.failed,
			srv->uq.failed_quiet, srv->n_unauth, srv->uq.last);
	memset(&srv->uq, 0, sizeof(srv->uq));
	srv->uq_at = now;
}

/* BEGIN: finds or creates the sensor's store state and starts its session. */
struct begin_job {
	struct worker_job wj;
	struct session *se;
	uint64_t epoch;
	uint16_t n_ifaces;
	struct proto_iface ifaces[PROTO_MAX_IFACES];
	char version[PROTO_MAX_VERSION + 1];
	/* Out. */
	uint16_t code; /* 0, or the ERROR code that refuses the session */
	char why[400];
	uint64_t next_seq;
};

static void
session_begin_run(struct worker_job *wj)
{
	struct begin_job *j = (struct begin_job *)wj;
	struct session *se = j->se;
	struct server *srv = se->srv;
	struct store *store = srv->o.store;
	if (srv->o.max_sensors && !store_sensor_known(store, se->cert_id) &&
		store_sensor_count(store) >= srv->o.max_sensors) {
		snprintf(j->why, sizeof(j->why), "refused: %u sensors already known (limits.max_sensors)",
			srv->o.max_sensors);
		j->code = PROTO_ERR_LIMIT;
		return;
	}
	se->ss = store_sensor_get(store, se->cert_id, j->why, sizeof(j->why));
	if (!se->ss) {
		j->code = PROTO_ERR_STORAGE;
		return;
	}
	se->names = names_log_open(srv->o.names, se->cert_id);
	j->next_seq = store_sensor_begin(se->ss, j->epoch, j->ifaces, j->n_ifaces);
	se->at_start = *store_sensor_counters(se->ss);
}

static void session_consume_head(struct session *se);

static void
session_begin_done(struct worker_job *wj)
{
	struct begin_job *j = (struct begin_job *)wj;
	struct session *se = j->se;
	struct server *srv = se->srv;
	se->inflight--;
	se->busy = false;
	if (se->dead) {
		free(j);
		session_release(se);
		return;
	}
	if (j->code) {
		session_close(se, j->code, j->why);
		free(j);
		return;
	}
	struct proto_welcome w = {
		.epoch = j->epoch,
		.next_seq = j->next_seq,
		.max_frame = srv->o.max_frame,
		.heartbeat_ms = srv->o.heartbeat_ms,
	};
	uint8_t buf[64];
	int n = proto_welcome_encode(&w, buf, sizeof(buf));
	se->state = S_STREAM;
	se->epoch = j->epoch;
	free(se->ifaces);
	if ((se->ifaces = malloc(j->n_ifaces * sizeof(j->ifaces[0]))) != NULL) {
		memcpy(se->ifaces, j->ifaces, j->n_ifaces * sizeof(j->ifaces[0]));
		se->n_ifaces = j->n_ifaces;
	} else {
		se->n_ifaces = 0; /* no live output for this session, storage goes on */
	}
	se->counted = true;
	srv->n_counted++;
	srv->held_bytes += session_bytes(se);
	session_consume_head(se);
	log_info("sensor %s connected from %s (version %s, %u interface(s), epoch %016" PRIx64
		 ", next batch %" PRIu64 ")",
		se->cert_id, se->peer, j->version, j->n_ifaces, j->epoch, w.next_seq);
	free(j);
	if (n < 0 || session_send(se, PROTO_WELCOME, buf, (size_t)n) != 0) {
		session_close(se, 0, "cannot send WELCOME");
		return;
	}
	session_resume(se);
}

/* Checks HELLO and hands the sensor's start to the worker. Returns 1 (input waits for
 * the BEGIN job) or -1 (closed). */
static int
session_hello(struct session *se, const uint8_t *p, uint32_t len)
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
		snprintf(why, sizeof(why), "HELLO claims sensor id '%s' but the certificate says '%s'",
			h.sensor_id, se->cert_id);
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
	/* One live session per sensor: a reconnecting sensor replaces its stale one (whose
	 * end the worker then handles before this one's start). */
	for (struct session *o = srv->sessions; o; o = o->next) {
		if (o != se && (o->state == S_STREAM || o->state == S_BEGIN) &&
			strcmp(o->cert_id, se->cert_id) == 0) {
			session_close(o, PROTO_ERR_SHUTDOWN, "replaced by a new session of the same sensor");
			break;
		}
	}
	struct begin_job *j = calloc(1, sizeof(*j));
	if (!j) {
		session_close(se, PROTO_ERR_LIMIT, "out of memory");
		return -1;
	}
	j->se = se;
	j->epoch = h.epoch;
	j->n_ifaces = h.n_ifaces;
	memcpy(j->ifaces, h.ifaces, h.n_ifaces * sizeof(h.ifaces[0]));
	snprintf(j->version, sizeof(j->version), "%s", h.version);
	j->wj.run = session_begin_run;
	j->wj.done = session_begin_done;
	se->state = S_BEGIN;
	se->begun = true;
	se->busy = true;
	se->inflight++;
	worker_submit(srv->w, &j->wj);
	return 1;
}

/* Queues an ACK (cumulative: every batch up to seq). */
static int
session_ack(struct session *se, uint64_t seq)
{
	struct proto_ack a = { .epoch = se->epoch, .seq = seq };
	uint8_t buf[32];
	int n = proto_ack_encode(&a, buf, sizeof(buf));
	if (n < 0 || session_send(se, PROTO_ACK, buf, (size_t)n) != 0) {
		session_close(se, 0, "sensor does not read acknowledgements");
		return -1;
	}
	return 0;
}

/* The interval sync, with the names logs of the sessions open when it was asked for
 * (their END jobs, if they close meanwhile, come after this one). */
struct sync_job {
	struct worker_job wj;
	struct server *srv;
	int rc;
	size_t n_logs, n_failed;
	struct names_log **logs;
	const struct store_sensor **failed; /* still unsynced after it: their ACKs wait */
};

static void
server_sync_collect(void *arg, struct store_sensor *ss)
{
	struct sync_job *j = arg;
	if (store_sensor_needs_sync(ss) && j->failed)
		j->failed[j->n_failed++] = ss;
}

static void
server_sync_run(struct worker_job *wj)
{
	struct sync_job *j = (struct sync_job *)wj;
	struct store *store = j->srv->o.store;
	j->rc = store_sync(store);
	for (size_t i = 0; i < j->n_logs; i++)
		names_log_sync(j->logs[i]);
	j->failed = calloc(store_sensor_count(store) + 1, sizeof(*j->failed));
	store_foreach(store, server_sync_collect, j);
}

static void
server_sync_done(struct worker_job *wj)
{
	struct sync_job *j = (struct sync_job *)wj;
	struct server *srv = j->srv;
	srv->sync_busy = false;
	if (j->rc != 0 && log_limit_ok(&srv->accept_lim, 3, 10))
		log_warnx("store: sync failed: %s (acknowledgements held back)", strerror(-j->rc));
	struct session *se = srv->sessions, *next;
	for (; se; se = next) {
		next = se->next;
		if (!se->ack_pending || se->state != S_STREAM)
			continue;
		bool failed = !j->failed; /* not known: hold every ACK for the next sync */
		for (size_t i = 0; j->failed && i < j->n_failed; i++)
			failed |= j->failed[i] == se->ss;
		if (failed)
			continue;
		uint64_t seq = se->ack_pending;
		se->ack_pending = 0;
		/* One sample per ACK here, from the oldest batch it covers. */
		store_ack_latency(se->ss, (session_now_ns() - se->ack_pending_t) / 1000);
		session_ack(se, seq);
	}
	free(j->logs);
	free(j->failed);
	free(j);
}

/* Asks the worker for the interval sync, unless one is already out. */
static void
server_sync_start(struct server *srv)
{
	if (srv->sync_busy)
		return;
	struct sync_job *j = calloc(1, sizeof(*j));
	if (!j)
		return; /* the next timer tries again */
	j->srv = srv;
	j->wj.run = server_sync_run;
	j->wj.done = server_sync_done;
	j->logs = calloc(srv->n_sessions + 1, sizeof(*j->logs));
	for (struct session *se = srv->sessions; j->logs && se; se = se->next)
		if (se->state == S_STREAM && se->names)
			j->logs[j->n_logs++] = se->names;
	srv->sync_busy = true;
	worker_submit(srv->w, &j->wj);
}

static void
session_batch_run(struct worker_job *wj)
{
	struct batch_job *j = (struct batch_job *)wj;
	struct session *se = j->se;
	for (unsigned i = 0; i < j->n; i++)
		j->in[i] = (struct store_batch_in){ .seq = j->b[i].seq,
			.raw = j->arena + j->b[i].raw_off,
			.raw_len = j->b[i].raw_len,
			.n_records = j->b[i].n_records };
	j->fail = store_batches(se->ss, j->in, j->n, j->err, sizeof(j->err));
	j->needs_sync = store_sensor_needs_sync(se->ss);
	j->unsynced = store_unsynced_bytes(se->srv->o.store);
}

static void session_batch_done(struct worker_job *wj);

/* Hands the filling group to the worker. */
static void
session_group_submit(struct session *se)
{
	struct batch_job *j = &se->gj[!se->cur];
	se->cur = !se->cur;
	j->se = se;
	j->wj.run = session_batch_run;
	j->wj.done = session_batch_done;
	se->group_busy = true;
	se->inflight++;
	worker_submit(se->srv->w, &j->wj);
}

/* Gives back most of a large input buffer once little of it is used (a burst is
 * stored); the quarter keeps a buffer in steady use from shrinking and growing again. */
static void
session_in_shrink(struct session *se)
{
	if (se->in_cap <= SESSION_BUF_KEEP || se->in_len > se->in_cap / 4)
		return;
	size_t cap = se->in_len * 2 > SESSION_INBUF_MIN ? se->in_len * 2 : SESSION_INBUF_MIN;
	uint8_t *ni = realloc(se->in, cap);
	if (!ni)
		return; /* keeps the larger one */
	session_held(se, se->in_cap, cap);
	se->in = ni;
	se->in_cap = cap;
}

/* Drops n bytes of frames at the head of the input (batches the worker is done with). */
static void
session_consume(struct session *se, size_t n)
{
	if (n > se->in_len)
		n = se->in_len;
	memmove(se->in, se->in + n, se->in_len - n);
	se->in_len -= n;
	se->rx_consumed += n;
	se->held -= n < se->held ? n : se->held;
	session_in_shrink(se);
}

static void session_batch_back(struct batch_job *j);

/* A group is back: memory was given back, sessions waiting for the budget may go on. */
static void
session_batch_done(struct worker_job *wj)
{
	struct batch_job *j = (struct batch_job *)wj;
	struct server *srv = j->se->srv; /* j->se may be freed below */
	session_batch_back(j);
	server_budget_wake(srv);
}

/* A group is back from the worker: ACK what it stored, then hold, close or go on as
 * the first batch it did not store says (store_batch() results). */
static void
session_batch_back(struct batch_job *j)
{
	struct session *se = j->se;
	struct server *srv = se->srv;
	char why[600];
	se->inflight--;
	se->group_busy = false;
	if (se->dead) {
		session_release(se);
		return;
	}
	uint64_t acked = 0;
	size_t done_len = 0;
	/* Live outputs get a batch only once it is stored (never a duplicate, never one
	 * that failed); with no consumer this is one atomic load. */
	if (live_active())
		for (unsigned i = 0; i < j->fail; i++)
			if (j->in[i].sr == STORE_STORED)
				live_feed(se->cert_id, se->ifaces, se->n_ifaces, j->arena + j->b[i].raw_off,
					j->b[i].raw_len, j->b[i].n_records);
	for (unsigned i = 0; i < j->fail; i++) {
		done_len += j->b[i].frame_len;
		se->last_seq = j->b[i].seq;
		if (j->needs_sync) {
			if (!se->ack_pending)
				se->ack_pending_t = j->b[i].t; /* the oldest batch the sync will ACK */
			se->ack_pending = j->b[i].seq;         /* the sync ACKs it */
		} else {
			/* ACKs are cumulative: one frame for the group, a latency sample for each. */
			store_ack_latency(se->ss, (session_now_ns() - j->b[i].t) / 1000);
			acked = j->b[i].seq;
		}
	}
	session_consume(se, done_len);
	if (acked && session_ack(se, acked) != 0)
		return;
	if (j->needs_sync && j->fail && j->unsynced >= SESSION_SYNC_EARLY)
		/* Sync early once enough is waiting: ACKs held for a whole interval would
		 * let the sensors' windows fill up and cap the throughput. */
		server_sync_start(srv);
	unsigned n = j->n, fail = j->fail;
	uint64_t fseq = fail < n ? j->b[fail].seq : 0;
	j->n = 0;
	/* A large arena is given back when the group used little of it (the burst is
	 * over) or memory is short; a session in steady use keeps its own. */
	if (j->arena_cap > SESSION_BUF_KEEP &&
		(j->arena_len < j->arena_cap / 4 || srv->held_bytes > srv->o.ingest_buffer)) {
		session_held(se, j->arena_cap, 0);
		free(j->arena);
		j->arena = NULL;
		j->arena_cap = 0;
	}
	j->arena_len = 0;
	if (fail < n) {
		enum store_result sr = j->in[fail].sr;
		/* What was parsed after the failed batch is parsed again when its turn comes. */
		struct batch_job *next = &se->gj[!se->cur];
		next->n = 0;
		next->arena_len = 0;
		se->held = 0;
		se->barrier = false;
		se->last_queued = 0;
		if (sr == STORE_SEQ_REUSED || sr == STORE_REJECTED) {
			snprintf(why, sizeof(why), "rejected batch: %s", j->err);
			session_close(
				se, sr == STORE_SEQ_REUSED ? PROTO_ERR_SEQUENCE : PROTO_ERR_PROTOCOL, why);
			return;
		}
		if (sr != STORE_RETRY) {
			/* Retrying this batch would fail the same way: say so and end the session
			 * rather than hold it for ever; the sensor keeps it and backs off. */
			snprintf(why, sizeof(why), "cannot store batch %" PRIu64 ": %s", fseq, j->err);
			session_close(se, PROTO_ERR_STORAGE, why);
			return;
		}
		/* Storage is failing (a full disk): hold the batch (it stays at the head of
		 * the input), ACK nothing more, stop reading (the sensor's window and spool
		 * absorb it) and try again in a second. */
		if (!se->stalled)
			log_warnx("sensor %s: storage failed: %s; not acknowledging, retrying every second",
				se->cert_id, j->err);
		se->stalled = true;
		se->stall_retries++;
		se->throttled = true;
		if (session_flush(se) != 0) {
			session_close(se, 0, "write failed");
			return;
		}
		ev_timer_set(&se->unthrottle, 1.0, 0.);
		ev_timer_start(srv->loop, &se->unthrottle);
		return;
	}
	if (se->stalled) {
		log_info("sensor %s: storage works again after %" PRIu64 " retries", se->cert_id,
			se->stall_retries);
		se->stalled = false;
		se->stall_retries = 0;
	}
	if (se->gj[!se->cur].n && !srv->stopping)
		session_group_submit(se);
	else
		se->barrier = false; /* every batch before it is done */
	session_resume(se);
}

/* limits.sensor_rate: a token bucket of batch bytes, charged when a batch is taken
 * from the input (before it goes to the worker, so the limit holds however much is
 * read ahead). Once it runs dry the session stops reading until the bucket refills:
 * TCP pushes back and the sensor's window and spool absorb it. */
static void
session_rate_charge(struct session *se, uint32_t raw_len)
{
	struct server *srv = se->srv;
	if (!srv->o.sensor_rate)
		return;
	double now = ev_now(srv->loop), burst = (double)srv->o.sensor_rate;
	se->tokens += (now - se->tokens_at) * (double)srv->o.sensor_rate;
	if (se->tokens > burst)
		se->tokens = burst;
	se->tokens_at = now;
	se->tokens -= (double)raw_len;
	if (se->tokens < 0 && !se->throttled) {
		se->throttled = true;
		se->throttled_count++;
		SERVER_M_ADD(srv, throttled);
		ev_timer_set(&se->unthrottle, -se->tokens / (double)srv->o.sensor_rate, 0.);
		ev_timer_start(srv->loop, &se->unthrottle);
	}
}

/* Checks a BATCH frame on the loop (decoding, order, decompression) and adds it to the
 * group being filled. Returns 0 (added), -1 (closed), or 1 when the frame is bad but
 * batches before it are not done yet: it is parsed again after them, and fails then,
 * so that everything before it is stored and ACKed first, as it always was. */
static int
session_batch(struct session *se, const struct proto_hdr *hd, const uint8_t *p, size_t frame_len, uint64_t t)
{
	struct server *srv = se->srv;
	struct proto_batch b;
	struct batch_job *g = &se->gj[!se->cur];
	bool later = se->group_busy || g->n; /* batches before this one are not done */
	uint64_t last = se->last_queued ? se->last_queued : se->last_seq;
	char why[600];
	int rc = proto_batch_decode(p, hd->len, srv->o.max_raw, &b);
	if (rc == 0 && !(hd->flags & PROTO_F_LZ4) && b.data_len != b.raw_len)
		rc = PROTO_EINVAL;
	if (rc != 0) {
		if (later)
			return 1;
		snprintf(why, sizeof(why), "malformed BATCH: %s", proto_strerror(rc));
		session_close(se, session_error_code(rc), why);
		return -1;
	}
	if (last && b.seq <= last) {
		if (later)
			return 1;
		/* Within one session sequence numbers strictly increase (PROTOCOL.md 6.3). */
		snprintf(why, sizeof(why), "replayed sequence: BATCH %" PRIu64 " after %" PRIu64, b.seq,
			se->last_seq);
		session_close(se, PROTO_ERR_PROTOCOL, why);
		return -1;
	}
	/* The worker reads the batch from the group's arena: `in` moves as frames before
	 * it are consumed. */
	if (g->arena_cap - g->arena_len < b.raw_len) {
		size_t cap = g->arena_cap * 2 > g->arena_len + b.raw_len ? g->arena_cap * 2
									 : g->arena_len + b.raw_len;
		uint8_t *na = realloc(g->arena, cap ? cap : 1);
		if (!na) {
			if (later)
				return 1;
			session_close(se, PROTO_ERR_LIMIT, "out of memory for a batch");
			return -1;
		}
		session_held(se, g->arena_cap, cap);
		g->arena = na;
		g->arena_cap = cap;
	}
	uint8_t *raw = g->arena + g->arena_len;
	if (hd->flags & PROTO_F_LZ4) {
		rc = proto_lz4_decompress(b.data, b.data_len, raw, b.raw_len);
		if (rc != 0) {
			if (later)
				return 1;
			snprintf(why, sizeof(why), "BATCH %" PRIu64 ": %s", b.seq, proto_strerror(rc));
			session_close(se, PROTO_ERR_PROTOCOL, why);
			return -1;
		}
	} else if (b.raw_len) {
		memcpy(raw, b.data, b.raw_len);
	}
	session_rate_charge(se, b.raw_len);
	unsigned i = g->n++;
	g->b[i].seq = b.seq;
	g->b[i].raw_len = b.raw_len;
	g->b[i].n_records = b.n_records;
	g->b[i].raw_off = g->arena_len;
	g->b[i].frame_len = frame_len;
	g->b[i].t = t;
	g->arena_len += b.raw_len;
	se->last_queued = b.seq;
	return 0;
}

/* STATS: the sensor's own counters, kept with the store's. */
struct stats_job {
	struct session_job h;
	struct proto_stats st;
};

static void
session_stats_run(struct worker_job *wj)
{
	struct stats_job *j = (struct stats_job *)wj;
	store_sensor_stats(j->h.se->ss, &j->st);
}

/* NAMES: appended to the sensor's names.jsonl (synced per the fsync policy). */
struct names_job {
	struct session_job h;
	struct proto_names m; /* 90 KiB, so the job is allocated per frame */
};

static void
session_names_run(struct worker_job *wj)
{
	struct names_job *j = (struct names_job *)wj;
	struct session *se = j->h.se;
	char err[4200];
	/* Names are derived data: a storage failure is logged and counted, and the
	 * session (whose packets may still be stored) goes on. */
	static struct log_limit names_lim, nodir_lim;
	if (!se->names) {
		if (log_limit_ok(&nodir_lim, 1, 3600))
			log_info("sensor %s: name events not kept: no storage.dir", se->cert_id);
	} else if (names_log_append(se->names, &j->m, err, sizeof(err)) < 0 &&
		log_limit_ok(&names_lim, 3, 10)) {
		log_warnx("sensor %s: cannot store %u name events: %s", se->cert_id, j->m.n, err);
	}
}

/* Hands a session job to the worker. */
static void
session_submit(struct session *se, struct session_job *h, void (*run)(struct worker_job *))
{
	h->se = se;
	h->wj.run = run;
	h->wj.done = session_job_free_done;
	se->inflight++;
	worker_submit(se->srv->w, &h->wj);
}

static int
session_frame(struct session *se, const struct proto_hdr *h, const uint8_t *p)
{
	char why[300];
	if (se->state == S_HELLO) {
		if (h->type != PROTO_HELLO) {
			snprintf(why, sizeof(why), "expected HELLO, got frame type %u", h->type);
			session_close(se, PROTO_ERR_PROTOCOL, why);
			return -1;
		}
		int rc = session_hello(se, p, h->len);
		if (rc >= 0)
			session_unauth_unlink(se); /* a sensor now: never shed for a newcomer */
		return rc;
	}
	switch (h->type) {
	case PROTO_STATS: {
		struct stats_job *j = calloc(1, sizeof(*j));
		if (!j) {
			snprintf(why, sizeof(why), "out of memory");
			break;
		}
		int rc = proto_stats_decode(p, h->len, &j->st);
		if (rc == 0) {
			session_submit(se, &j->h, session_stats_run);
			return 0;
		}
		free(j);
		snprintf(why, sizeof(why), "malformed STATS: %s", proto_strerror(rc));
		break;
	}
	case PROTO_NAMES: {
		struct names_job *j = malloc(sizeof(*j));
		if (!j) {
			snprintf(why, sizeof(why), "out of memory");
			break;
		}
		int rc = proto_names_decode(p, h->len, &j->m);
		if (rc != 0) {
			free(j);
			snprintf(why, sizeof(why), "malformed NAMES: %s", proto_strerror(rc));
			break;
		}
		session_submit(se, &j->h, session_names_run);
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

/* Remembers that input up to rx_total was in at time t (ns). */
static void
session_rx_mark(struct session *se, uint64_t t)
{
	unsigned i = se->rx_mark_n++ % SESSION_RX_MARKS;
	se->rx_mark[i].end = se->rx_total;
	se->rx_mark[i].t = t;
}

/* When the input up to byte `end` (counted since the start) was in: the time of the
 * first remembered read that reached it (of the oldest remembered, if it is older). */
static uint64_t
session_rx_time(const struct session *se, uint64_t end)
{
	unsigned n = se->rx_mark_n < SESSION_RX_MARKS ? se->rx_mark_n : SESSION_RX_MARKS;
	uint64_t t = 0;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (se->rx_mark_n - 1 - k) % SESSION_RX_MARKS; /* newest first */
		if (se->rx_mark[i].end < end)
			break;
		t = se->rx_mark[i].t;
	}
	return t ? t : (n ? se->rx_mark[(se->rx_mark_n - n) % SESSION_RX_MARKS].t : session_now_ns());
}

/* Handles every complete frame in the input buffer. Returns -1 if the session was
 * closed, 1 if it must pause (throttled, or storage failing: the frame that failed
 * stays in the buffer for the retry), 0 otherwise. */
static int
session_parse(struct session *se)
{
	struct server *srv = se->srv;
	char why[300];
	/* Frames before `held` are with a batch group; frames before `done` are handled
	 * (only ever before any held one: a frame after batches waits for them). */
	size_t off = se->held, done = 0;
	while (!session_paused(se)) {
		struct proto_hdr h;
		/* Before HELLO nothing larger than the largest valid HELLO is accepted
		 * (PROTOCOL.md 7), so an unidentified peer cannot make us buffer max_frame. */
		uint32_t max_len = se->state == S_HELLO ? SESSION_MAX_HELLO : srv->o.max_frame;
		int rc = proto_hdr_decode(se->in + off, se->in_len - off, max_len, &h);
		if (rc == PROTO_EAGAIN)
			break;
		bool later = se->group_busy || se->gj[!se->cur].n;
		if (rc != 0 && later) {
			se->barrier = true; /* fails once the batches before it are done */
			break;
		}
		if (rc != 0) {
			snprintf(why, sizeof(why), "bad frame header: %s", proto_strerror(rc));
			session_close(se, session_error_code(rc), why);
			return -1;
		}
		size_t need = PROTO_HDR_LEN + (size_t)h.len;
		if (se->in_len - off < need) {
			if (off + need > se->in_cap) {
				uint8_t *ni = realloc(se->in, off + need);
				if (!ni) {
					session_close(se, PROTO_ERR_LIMIT, "out of memory for a frame");
					return -1;
				}
				session_held(se, se->in_cap, off + need);
				se->in = ni;
				se->in_cap = off + need;
			}
			break;
		}
		uint64_t t = session_rx_time(se, se->rx_consumed + off + need);
		if (se->state == S_STREAM && h.type == PROTO_BATCH) {
			if (session_group_full(&se->gj[!se->cur])) {
				if (se->group_busy)
					break;
				session_group_submit(se);
			}
			rc = session_batch(se, &h, se->in + off + PROTO_HDR_LEN, need, t);
			if (rc < 0)
				return -1;
			if (rc > 0) {
				se->barrier = true;
				break;
			}
			off += need;
			se->held = off - done;
			continue;
		}
		if (later) {
			/* STATS, NAMES, ERROR...: after the batches before them. */
			se->barrier = true;
			break;
		}
		se->head_len = need;
		rc = session_frame(se, &h, se->in + off + PROTO_HDR_LEN);
		if (rc < 0)
			return -1;
		if (rc == 0)
			done = off += need;
	}
	if (done) {
		/* Handled frames go; the batch frames after them move to the head. */
		memmove(se->in, se->in + done, se->in_len - done);
		se->in_len -= done;
		se->rx_consumed += done;
		session_in_shrink(se);
	}
	if (!se->group_busy && se->gj[!se->cur].n)
		session_group_submit(se);
	return session_paused(se) ? 1 : 0;
}

/* Drops the frame the worker was given, now that it is done with it. */
static void
session_consume_head(struct session *se)
{
	size_t n = se->head_len <= se->in_len ? se->head_len : se->in_len;
	memmove(se->in, se->in + n, se->in_len - n);
	se->in_len -= n;
	se->rx_consumed += n;
	se->head_len = 0;
}

/* Input may go on: frames already buffered (ours or OpenSSL's) come first. */
static void
session_resume(struct session *se)
{
	if (se->srv->stopping || se->dead)
		return;
	if (session_flush(se) != 0) {
		session_close(se, 0, "write failed");
		return;
	}
	if (!session_paused(se))
		ev_feed_event(se->srv->loop, &se->io, EV_READ);
}

/* Reads and handles frames. Returns -1 if the session was closed. */
static int
session_read(struct session *se)
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
		if (se->in_cap - se->in_len < SESSION_INBUF_MIN / 4) {
			/* Frames with a batch group stay in the buffer: make room to read on. */
			size_t cap = se->in_cap * 2 > se->in_len + SESSION_INBUF_MIN
				? se->in_cap * 2
				: se->in_len + SESSION_INBUF_MIN;
			uint8_t *ni = realloc(se->in, cap);
			if (!ni) {
				session_close(se, PROTO_ERR_LIMIT, "out of memory for input");
				return -1;
			}
			session_held(se, se->in_cap, cap);
			se->in = ni;
			se->in_cap = cap;
		}
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
					snprintf(why, sizeof(why), "connection lost: %s",
						errno ? strerror(errno) : "EOF");
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
				session_close(
					se, 0, r == 0 ? "sensor closed the connection" : strerror(errno));
				return -1;
			}
		}
		se->in_len += (size_t)r;
		se->rx_total += (uint64_t)r;
		session_rx_mark(se, session_now_ns());
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

static void
session_handshake(struct session *se)
{
	char why[400], tb[256];
	ERR_clear_error();
	int r = SSL_accept(se->ssl);
	if (r == 1) {
		int idr = tls_peer_identity(se->ssl, se->cert_id, sizeof(se->cert_id));
		if (idr != 0) {
			snprintf(why, sizeof(why), "client certificate refused: %s",
				tls_identity_strerror(idr));
			se->cert_id[0] = '\0';
			session_close(se, 0, why);
			return;
		}
		if (!proto_sensor_id_ok(se->cert_id, strlen(se->cert_id))) {
			snprintf(why, sizeof(why), "certificate CN '%s' is not a valid sensor id",
				se->cert_id);
			se->cert_id[0] = '\0';
			session_close(se, 0, why);
			return;
		}
		se->state = S_HELLO;
		se->since = ev_now(se->srv->loop);
		log_debug("session %s: TLS established (%s, %s), sensor %s", se->peer,
			SSL_get_version(se->ssl), SSL_get_cipher(se->ssl), se->cert_id);
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
			*errs ? errs
			      : (e == SSL_ERROR_SYSCALL ? "connection closed by peer" : "unknown error"));
	session_close(se, 0, why);
}

static void
session_on_unthrottle(struct ev_loop *loop, ev_timer *w, int revents)
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

static void
session_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *se = w->data;
	if (!se->in) {
		/* First event: a connection that never sends anything (a flood) never costs
		 * the input buffer and the TLS state. */
		struct server *srv = se->srv;
		se->in = malloc(SESSION_INBUF_MIN);
		se->in_cap = se->in ? SESSION_INBUF_MIN : 0;
		if (se->in && srv->o.ssl_ctx &&
			(!(se->ssl = SSL_new(srv->o.ssl_ctx)) || SSL_set_fd(se->ssl, se->fd) != 1)) {
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
static void
server_src_key(const struct sockaddr_storage *sa, uint8_t key[16])
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
static struct session *
server_unauth_victim(struct server *srv)
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
static bool
server_make_room(struct server *srv, const uint8_t src[16])
{
	struct session *same = NULL;
	unsigned n_same = 0;

	for (struct session *u = srv->uhead; u; u = u->unext) {
		if (memcmp(u->src, src, 16) == 0 && n_same++ == 0)
			same = u;
	}
	if (same && n_same >= srv->o.unauth_per_source) {
		session_end_unauth(
			same, UNAUTH_SHED_SRC, "shed: too many unauthenticated connections from its source");
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

static void
server_on_accept(struct ev_loop *loop, ev_io *w, int revents)
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
			} else if (errno != EAGAIN && errno != EINTR &&
				log_limit_ok(&srv->accept_lim, 3, 10)) {
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
			SERVER_M_ADD(srv, refused);
			if (log_limit_ok(&srv->refuse_lim, 3, 10))
				log_warnx("session %s:%s: refused: %u sessions open (limits.max_sessions)",
					host, port, srv->n_sessions);
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
		se->state = srv->o.ssl_ctx ? S_HANDSHAKE
					   : S_HELLO; /* buffer and TLS state: on the first event */
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
		SERVER_M_ADD(srv, accepted);
		ev_io_init(&se->io, session_on_io, fd, EV_READ);
		se->io.data = se;
		ev_timer_init(&se->unthrottle, session_on_unthrottle, 1., 0.);
		se->unthrottle.data = se;
		se->tokens = (double)srv->o.sensor_rate;
		se->tokens_at = ev_now(loop);
		ev_io_start(loop, &se->io);
	}
}

static void
server_on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
	server_sync_start(w->data);
}

/* TICK: segment age, index retries, retention; one at a time. */
struct tick_job {
	struct worker_job wj;
	struct server *srv;
};

static void
server_tick_run(struct worker_job *wj)
{
	store_tick(((struct tick_job *)wj)->srv->o.store);
}

static void
server_tick_done(struct worker_job *wj)
{
	((struct tick_job *)wj)->srv->tick_busy = false;
	free(wj);
}

static void
server_on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	for (int k = 0; k < srv->n_listeners; k++)
		ev_io_start(loop, &srv->lio[k]);
}

static void
server_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct server *srv = w->data;
	double now = ev_now(loop), hb = srv->o.heartbeat_ms / 1000.0, setup = srv->o.setup_ms / 1000.0;
	struct session *se, *next;
	for (se = srv->uhead; se; se = next) {
		next = se->unext;
		if (now - se->since <= setup)
			continue;
		char why[64];
		snprintf(why, sizeof(why),
			se->state == S_HELLO ? "no HELLO within %.0f s"
					     : "TLS handshake timed out after %.0f s",
			setup);
		session_end_unauth(se, UNAUTH_TIMED_OUT, why);
	}
	server_unauth_summary(srv, now, false);
	server_budget_wake(srv); /* memory of sessions closed meanwhile came back */
	SERVER_M_SET(srv, sessions, srv->n_sessions);
	SERVER_M_SET(srv, unauth, srv->n_unauth);
	SERVER_M_SET(srv, held_bytes, srv->held_bytes);
	for (se = srv->sessions; se; se = next) {
		next = se->next;
		if (se->state != S_STREAM)
			continue;
		if (session_paused(se))
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
	struct tick_job *j = srv->tick_busy ? NULL : calloc(1, sizeof(*j));
	if (j) {
		j->srv = srv;
		j->wj.run = server_tick_run;
		j->wj.done = server_tick_done;
		srv->tick_busy = true;
		worker_submit(srv->w, &j->wj);
	}
}

void
server_metrics_get(const struct server *srv, struct server_metrics *out)
{
	struct server *m = (struct server *)srv; /* atomic loads take non-const pointers */

#define SERVER_M_GET(f) out->f = atomic_load_explicit(&m->m.f, memory_order_relaxed)
	SERVER_M_GET(accepted);
	SERVER_M_GET(refused);
	SERVER_M_GET(shed);
	SERVER_M_GET(timed_out);
	SERVER_M_GET(failed);
	SERVER_M_GET(peer_closed);
	SERVER_M_GET(throttled);
	SERVER_M_GET(sessions);
	SERVER_M_GET(unauth);
	SERVER_M_GET(held_bytes);
#undef SERVER_M_GET
}

struct server *
server_new(struct ev_loop *loop, const struct server_opts *o)
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
	if (srv->o.ingest_buffer == 0)
		srv->o.ingest_buffer = SERVER_INGEST_BUDGET;
	for (srv->src_cap = 4; srv->src_cap < 2 * (size_t)srv->o.unauth_max + 2; srv->src_cap *= 2)
		;
	srv->src_tab = calloc(srv->src_cap, sizeof(*srv->src_tab));
	srv->w = srv->src_tab ? worker_new(loop) : NULL;
	if (!srv->w) {
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

int
server_listen(struct server *srv, const char *addr, char *err, size_t errlen)
{
	struct hostport hp;
	if (srv->n_listeners == SERVER_MAX_LISTENERS) {
		snprintf(err, errlen, "listen: at most %d addresses", SERVER_MAX_LISTENERS);
		return -1;
	}
	/* Port 0 lets the kernel pick one (tests read it back from the log). */
	if (hostport_parse(addr, HOSTPORT_LISTEN | HOSTPORT_PORT0, "listen", &hp, err, errlen) != 0)
		return -1;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
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

void
server_shutdown(struct server *srv)
{
	for (int i = 0; i < srv->n_listeners; i++) {
		ev_io_stop(srv->loop, &srv->lio[i]);
		close(srv->lfd[i]);
	}
	srv->n_listeners = 0;
	ev_timer_stop(srv->loop, &srv->accept_pause);
	/* Batches the worker has are stored and ACKed first; no more input is read. Here
	 * (and only here) the loop waits on storage. */
	srv->stopping = true;
	worker_drain(srv->w);
	if (srv->o.sync_ms) {
		/* Sessions end now: make what they stored durable and ACK it first. */
		server_sync_start(srv);
		worker_drain(srv->w);
		ev_timer_stop(srv->loop, &srv->sync);
	}
	while (srv->uhead)
		session_free(srv->uhead); /* nothing to tell a peer that never identified itself */
	while (srv->sessions)
		session_close(srv->sessions, PROTO_ERR_SHUTDOWN, "receiver shutting down");
	worker_drain(srv->w);
	server_unauth_summary(srv, ev_now(srv->loop), true);
	ev_timer_stop(srv->loop, &srv->tick);
}

/* CALL: a function of the caller's, run on the worker (it may use the store). */
struct call_job {
	struct worker_job wj;
	void (*fn)(void *arg);
	void *arg;
};

static void
server_call_run(struct worker_job *wj)
{
	struct call_job *j = (struct call_job *)wj;
	j->fn(j->arg);
}

static void
server_call_done(struct worker_job *wj)
{
	free(wj);
}

int
server_store_call(struct server *srv, void (*fn)(void *arg), void *arg)
{
	struct call_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	j->wj.run = server_call_run;
	j->wj.done = server_call_done;
	worker_submit(srv->w, &j->wj);
	return 0;
}

bool
server_sensor_connected(const struct server *srv, const char *id)
{
	for (const struct session *se = srv->sessions; se; se = se->next)
		if (se->state == S_STREAM && strcmp(se->cert_id, id) == 0)
			return true;
	return false;
}

void
server_set_store(struct server *srv, struct store *store)
{
	srv->o.store = store;
}

unsigned
server_session_count(const struct server *srv)
{
	return srv->n_sessions;
}

void
server_free(struct server *srv)
{
	if (!srv)
		return;
	server_shutdown(srv);
	worker_free(srv->w);
	free(srv->src_tab);
	free(srv);
}
