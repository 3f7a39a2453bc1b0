/* SPDX-License-Identifier: BSD-2-Clause */
#include "sensor/uplink.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "shared/log.h"
#include "shared/tls.h"

#define UPLINK_INBUF             (64 * 1024)
/* Control frames: HELLO, STATS, HEARTBEAT and ERROR fit in the reserve, which NAMES
 * frames (up to PROTO_NAMES_MAX_LEN) may not use, so that they never crowd those out. */
#define UPLINK_CTL_RESERVE       8192
#define UPLINK_CTLBUF            (UPLINK_CTL_RESERVE + PROTO_HDR_LEN + PROTO_NAMES_MAX_LEN)
#define UPLINK_WRITE_CHUNK       (256 * 1024)
#define UPLINK_BACKOFF_MIN_MS    200
#define UPLINK_BACKOFF_MAX_MS    30000
#define UPLINK_CONNECT_TIMEOUT_S 10.0
#define UPLINK_DEFAULT_HB_MS     5000

enum uplink_state {
	UL_WAIT,
	UL_CONNECTING,
	UL_HANDSHAKE,
	UL_HELLO,
	UL_STREAM
};

struct uplink {
	struct uplink_opts o;
	struct ev_loop *loop;
	enum uplink_state state;
	int fd;
	SSL *ssl;
	ev_io io;
	ev_timer retry;
	ev_timer tick;
	unsigned attempts;
	size_t target;
	double state_since, last_rx, last_tx;
	uint32_t hb_ms;

	/* Un-ACKed batches in sequence order; `send` is the next one to write. */
	struct batch *head, *tail, *send;
	size_t send_off;
	uint64_t pending_bytes, pending_batches;
	uint64_t max_written_seq;
	uint64_t acked_seq;
	bool written_any;

	uint8_t ctl[UPLINK_CTLBUF];
	size_t ctl_len, ctl_off;
	/* OpenSSL wants a failed SSL_write retried with the same length and the same bytes:
	 * retry_ctl says whether those are control bytes or batch bytes. */
	size_t retry_len;
	bool retry_ctl;

	uint8_t in[UPLINK_INBUF];
	size_t in_len;
	struct uplink_stats st;
	struct log_limit lim;
	/* Permanent refusals (see uplink_opts.on_refused): the next disconnect is one, and
	 * which receivers refused so far while no session was ever welcomed. */
	bool permanent, welcomed_once;
	bool *refused;
};

static void uplink_on_io(struct ev_loop *loop, ev_io *w, int revents);
static void uplink_schedule(struct uplink *u);

static const char *
uplink_target_name(const struct uplink *u, char *buf, size_t n)
{
	const struct uplink_target *t = &u->o.targets[u->target];
	snprintf(buf, n, "%s:%s", t->host, t->port);
	return buf;
}

static void
uplink_disconnect(struct uplink *u, const char *why)
{
	char name[300];
	bool permanent = u->permanent, refused_by_all = false;
	u->permanent = false;
	if (permanent && u->state != UL_WAIT) {
		/* Retrying cannot cure this: say so every time (the backoff spaces it out). */
		if (u->welcomed_once)
			log_msg(LOG_LVL_ERROR,
				"uplink: %s: REFUSED: %s; this needs fixing on the sensor or the receiver, "
				"retrying with backoff",
				uplink_target_name(u, name, sizeof(name)), why);
		u->refused[u->target] = !u->welcomed_once;
		refused_by_all = !u->welcomed_once;
		for (size_t i = 0; i < u->o.n_targets; i++)
			refused_by_all = refused_by_all && u->refused[i];
		if (!u->welcomed_once && !refused_by_all)
			log_msg(LOG_LVL_ERROR, "uplink: %s: refused: %s",
				uplink_target_name(u, name, sizeof(name)), why);
	} else if (u->state != UL_WAIT) {
		if (u->state == UL_STREAM)
			log_warnx("uplink: %s: disconnected: %s (%" PRIu64 " batches un-ACKed, will resend)",
				uplink_target_name(u, name, sizeof(name)), why, u->pending_batches);
		else if (log_limit_ok(&u->lim, 3, 30))
			log_warnx("uplink: %s: %s", uplink_target_name(u, name, sizeof(name)), why);
		u->st.disconnects += u->state == UL_STREAM;
	}
	ev_io_stop(u->loop, &u->io);
	if (u->ssl) {
		SSL_free(u->ssl);
		u->ssl = NULL;
	}
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
	}
	u->send = u->head;
	u->send_off = 0;
	u->ctl_len = u->ctl_off = 0;
	u->retry_len = 0;
	u->in_len = 0;
	u->st.connected = false;
	/* A connection that made it to streaming resets the backoff; anything less
	 * moves on to the next receiver in the list. */
	if (u->state != UL_STREAM) {
		u->attempts++;
		u->target = (u->target + 1) % u->o.n_targets;
	} else {
		u->attempts = 0;
	}
	u->state = UL_WAIT;
	uplink_schedule(u);
	if (refused_by_all && u->o.on_refused)
		u->o.on_refused(u->o.arg, why);
}

/* The next disconnect is for a reason retrying cannot cure. */
static void
uplink_disconnect_permanent(struct uplink *u, const char *why)
{
	u->permanent = true;
	uplink_disconnect(u, why);
}

/* True if the TLS errors queued say that the receiver refused our certificate (an
 * alert it sent) or the TLS version: retrying with the same certificate cannot help. */
static bool
uplink_tls_refused(void)
{
	unsigned long e[2] = { ERR_peek_error(), ERR_peek_last_error() };
	for (int i = 0; i < 2; i++) {
		if (!e[i] || ERR_GET_LIB(e[i]) != ERR_LIB_SSL)
			continue;
		switch (ERR_GET_REASON(e[i])) {
		case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
		case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
			return true;
		default:
			break;
		}
	}
	return false;
}

/* Returns > 0 bytes, 0 would block, -1 closed or failed (reason in why). */
static ssize_t
uplink_read(struct uplink *u, uint8_t *buf, size_t n, char *why, size_t wn)
{
	if (!u->ssl) {
		ssize_t r = read(u->fd, buf, n);
		if (r > 0)
			return r;
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		snprintf(why, wn, "%s", r == 0 ? "closed by receiver" : strerror(errno));
		return -1;
	}
	ERR_clear_error();
	int r = SSL_read(u->ssl, buf, (int)n);
	if (r > 0)
		return r;
	int e = SSL_get_error(u->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	char tb[256];
	if (e == SSL_ERROR_SSL && uplink_tls_refused())
		u->permanent = true; /* TLS 1.3: the refusal of our certificate arrives after the handshake */
	if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(why, wn, "closed by receiver");
	else if (e == SSL_ERROR_SYSCALL)
		snprintf(why, wn, "connection lost: %s", errno ? strerror(errno) : "EOF");
	else
		snprintf(why, wn, "tls: %s", tls_errors(tb, sizeof(tb)));
	return -1;
}

static ssize_t
uplink_write(struct uplink *u, const uint8_t *buf, size_t n, char *why, size_t wn)
{
	if (!u->ssl) {
		ssize_t r = send(u->fd, buf, n, MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		snprintf(why, wn, "%s", strerror(errno));
		return -1;
	}
	if (u->retry_len)
		n = u->retry_len;
	ERR_clear_error();
	int r = SSL_write(u->ssl, buf, (int)n);
	if (r > 0) {
		u->retry_len = 0;
		return r;
	}
	int e = SSL_get_error(u->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		u->retry_len = n;
		return 0;
	}
	char tb[256];
	snprintf(why, wn, "tls write: %s",
		e == SSL_ERROR_SYSCALL ? strerror(errno) : tls_errors(tb, sizeof(tb)));
	return -1;
}

static void
uplink_ctl(struct uplink *u, uint8_t type, const uint8_t *payload, size_t n)
{
	if (u->ctl_len + PROTO_HDR_LEN + n > sizeof(u->ctl))
		return; /* Control frames are advisory; a full buffer means one is skipped. */
	proto_hdr_encode(u->ctl + u->ctl_len, type, 0, (uint32_t)n);
	memcpy(u->ctl + u->ctl_len + PROTO_HDR_LEN, payload, n);
	u->ctl_len += PROTO_HDR_LEN + n;
}

static bool
uplink_wants_write(const struct uplink *u)
{
	return u->ctl_off < u->ctl_len || (u->state == UL_STREAM && u->send != NULL);
}

/* Writes control frames, then batches, until the socket would block. */
static int
uplink_flush(struct uplink *u)
{
	char why[300];
	for (;;) {
		const uint8_t *p;
		size_t n;
		bool ctl = false;
		/* Control frames go between batches, never inside one, nor while a batch write
		 * waits to be retried (and the other way round). */
		if (u->ctl_off < u->ctl_len && (u->send_off == 0 || u->state != UL_STREAM) &&
			!(u->retry_len && !u->retry_ctl)) {
			p = u->ctl + u->ctl_off;
			n = u->ctl_len - u->ctl_off;
			ctl = true;
		} else if (u->state == UL_STREAM && u->send && !(u->retry_len && u->retry_ctl)) {
			p = u->send->frame + u->send_off;
			n = u->send->len - u->send_off;
			if (n > UPLINK_WRITE_CHUNK)
				n = UPLINK_WRITE_CHUNK;
		} else {
			return 0;
		}
		ssize_t w = uplink_write(u, p, n, why, sizeof(why));
		if (w < 0) {
			uplink_disconnect(u, why);
			return -1;
		}
		if (w == 0) {
			u->retry_ctl = ctl;
			return 0;
		}
		u->last_tx = ev_now(u->loop);
		if (ctl) {
			u->ctl_off += (size_t)w;
			if (u->ctl_off == u->ctl_len)
				u->ctl_off = u->ctl_len = 0;
			continue;
		}
		u->send_off += (size_t)w;
		u->st.bytes_sent += (uint64_t)w;
		if (u->send_off == u->send->len) {
			if (u->written_any && u->send->seq <= u->max_written_seq)
				u->st.resent++;
			else
				u->max_written_seq = u->send->seq;
			u->written_any = true;
			u->st.batches_sent++;
			u->send = u->send->next;
			u->send_off = 0;
		}
	}
}

static void
uplink_update_watch(struct uplink *u)
{
	if (u->fd < 0)
		return;
	int ev = EV_READ | (uplink_wants_write(u) || u->retry_len ? EV_WRITE : 0);
	if (ev != (u->io.events & (EV_READ | EV_WRITE))) {
		ev_io_stop(u->loop, &u->io);
		ev_io_set(&u->io, u->fd, ev);
		ev_io_start(u->loop, &u->io);
	}
}

static void
uplink_release_acked(struct uplink *u, uint64_t seq)
{
	bool freed = false;
	if (seq > u->acked_seq)
		u->acked_seq = seq;
	while (u->head && u->head->seq <= seq) {
		struct batch *b = u->head;
		/* A batch ACKed before it was fully written again (after a reconnect the
		 * receiver already had it) must not stay the send cursor. */
		if (u->send == b) {
			u->send = b->next;
			u->send_off = 0;
		}
		u->head = b->next;
		if (!u->head)
			u->tail = NULL;
		u->pending_bytes -= b->len;
		u->pending_batches--;
		u->st.batches_acked++;
		u->st.packets_acked += b->n_records;
		free(b);
		freed = true;
	}
	if (freed && u->o.on_room)
		u->o.on_room(u->o.arg);
}

static int
uplink_handle(struct uplink *u, const struct proto_hdr *h, const uint8_t *p)
{
	char why[400];
	int rc = 0;
	switch (h->type) {
	case PROTO_WELCOME: {
		struct proto_welcome w;
		if (u->state != UL_HELLO || (rc = proto_welcome_decode(p, h->len, &w)) != 0)
			break;
		if (w.epoch != u->o.hello->epoch) {
			uplink_disconnect(u, "receiver answered for another epoch");
			return -1;
		}
		if (PROTO_HDR_LEN + (uint64_t)w.max_frame < u->o.max_batch_frame) {
			snprintf(why, sizeof(why),
				"receiver accepts frames up to %u bytes, but batch.max_bytes "
				"needs %" PRIu64
				": lower batch.max_bytes or raise the receiver's limits.max_frame",
				w.max_frame, u->o.max_batch_frame - PROTO_HDR_LEN);
			uplink_disconnect_permanent(u, why);
			return -1;
		}
		uint64_t ours = u->o.next_seq ? u->o.next_seq(u->o.arg) : 0;
		if (ours && w.next_seq > ours) {
			/* The receiver holds numbers of this epoch that we never assigned: another
			 * run used the epoch. Keeping it would make our new batches look like
			 * duplicates (PROTOCOL.md 6.3). */
			struct proto_error e = { .code = PROTO_ERR_PROTOCOL };
			snprintf(e.text, sizeof(e.text),
				"epoch reused: receiver holds batches up to %" PRIu64
				", this sensor numbered only up to %" PRIu64,
				w.next_seq - 1, ours - 1);
			uint8_t buf[PROTO_MAX_TEXT + 8];
			int n = proto_error_encode(&e, buf, sizeof(buf));
			if (n > 0) {
				uplink_ctl(u, PROTO_ERROR, buf, (size_t)n);
				uplink_flush(u);
			}
			if (u->state == UL_HELLO) {
				snprintf(why, sizeof(why), "%s; moving to a new epoch", e.text);
				uplink_disconnect(u, why);
			}
			if (u->o.on_epoch_reused)
				u->o.on_epoch_reused(u->o.arg);
			return -1;
		}
		u->hb_ms = w.heartbeat_ms ? w.heartbeat_ms : UPLINK_DEFAULT_HB_MS;
		if (w.next_seq > 0)
			uplink_release_acked(u, w.next_seq - 1);
		u->send = u->head;
		u->send_off = 0;
		u->state = UL_STREAM;
		u->st.connected = true;
		u->st.connects++;
		u->attempts = 0;
		u->welcomed_once = true;
		char name[300];
		log_info("uplink: connected to %s%s, resuming at batch %" PRIu64 " (%" PRIu64 " pending)",
			uplink_target_name(u, name, sizeof(name)),
			u->ssl ? " (TLS)" : " (INSECURE plain TCP)", w.next_seq, u->pending_batches);
		if (u->o.on_session)
			u->o.on_session(u->o.arg);
		return 0;
	}
	case PROTO_ACK: {
		struct proto_ack a;
		if (u->state != UL_STREAM || (rc = proto_ack_decode(p, h->len, &a)) != 0)
			break;
		uplink_release_acked(u, a.seq);
		return 0;
	}
	case PROTO_HEARTBEAT: {
		uint64_t ts;
		if ((rc = proto_heartbeat_decode(p, h->len, &ts)) != 0)
			break;
		return 0;
	}
	case PROTO_ERROR: {
		struct proto_error e;
		if ((rc = proto_error_decode(p, h->len, &e)) != 0)
			break;
		snprintf(why, sizeof(why), "receiver refused the session (code %u): %s", e.code, e.text);
		if (e.code == PROTO_ERR_SEQUENCE) {
			snprintf(why, sizeof(why),
				"receiver refused a batch (code %u): %s; moving to a new epoch", e.code,
				e.text);
			uplink_disconnect(u, why);
			if (u->o.on_epoch_reused)
				u->o.on_epoch_reused(u->o.arg);
			return -1;
		}
		/* Identity, certificate, token or protocol version: the same HELLO would be
		 * refused again. */
		u->permanent = e.code == PROTO_ERR_AUTH || e.code == PROTO_ERR_VERSION;
		uplink_disconnect(u, why);
		return -1;
	}
	default:
		break;
	}
	snprintf(why, sizeof(why), "unexpected frame type %u from receiver%s%s", h->type, rc ? ": " : "",
		rc ? proto_strerror(rc) : "");
	uplink_disconnect(u, why);
	return -1;
}

static int
uplink_pump_read(struct uplink *u)
{
	char why[300];
	for (;;) {
		ssize_t r = uplink_read(u, u->in + u->in_len, sizeof(u->in) - u->in_len, why, sizeof(why));
		if (r < 0) {
			uplink_disconnect(u, why);
			return -1;
		}
		if (r == 0)
			return 0;
		u->in_len += (size_t)r;
		u->last_rx = ev_now(u->loop);
		size_t off = 0;
		for (;;) {
			struct proto_hdr h;
			int rc = proto_hdr_decode(
				u->in + off, u->in_len - off, sizeof(u->in) - PROTO_HDR_LEN, &h);
			if (rc == PROTO_EAGAIN)
				break;
			if (rc != 0) {
				snprintf(why, sizeof(why), "bad frame from receiver: %s", proto_strerror(rc));
				uplink_disconnect(u, why);
				return -1;
			}
			if (u->in_len - off < PROTO_HDR_LEN + h.len)
				break;
			if (uplink_handle(u, &h, u->in + off + PROTO_HDR_LEN) != 0)
				return -1;
			off += PROTO_HDR_LEN + h.len;
		}
		memmove(u->in, u->in + off, u->in_len - off);
		u->in_len -= off;
	}
}

static void
uplink_send_hello(struct uplink *u)
{
	uint8_t buf[PROTO_HDR_LEN + 8192];
	int n = proto_hello_encode(u->o.hello, buf, sizeof(buf));
	if (n < 0) {
		uplink_disconnect(u, "cannot encode HELLO");
		return;
	}
	uplink_ctl(u, PROTO_HELLO, buf, (size_t)n);
	u->state = UL_HELLO;
	u->state_since = ev_now(u->loop);
}

static void
uplink_step(struct uplink *u)
{
	char why[400], tb[256];
	if (u->state == UL_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err == EINPROGRESS)
			return;
		if (err) {
			snprintf(why, sizeof(why), "connect: %s", strerror(err));
			uplink_disconnect(u, why);
			return;
		}
		if (!u->o.ssl_ctx) {
			uplink_send_hello(u);
		} else {
			u->state = UL_HANDSHAKE;
		}
	}
	if (u->state == UL_HANDSHAKE) {
		ERR_clear_error();
		int r = SSL_connect(u->ssl);
		if (r != 1) {
			int e = SSL_get_error(u->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				ev_io_stop(u->loop, &u->io);
				ev_io_set(&u->io, u->fd, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
				ev_io_start(u->loop, &u->io);
				return;
			}
			long v = SSL_get_verify_result(u->ssl);
			/* A receiver certificate we do not accept, or an alert refusing ours. */
			u->permanent = v != X509_V_OK || (e == SSL_ERROR_SSL && uplink_tls_refused());
			if (v != X509_V_OK)
				snprintf(why, sizeof(why), "TLS handshake failed: receiver certificate: %s",
					X509_verify_cert_error_string(v));
			else
				snprintf(why, sizeof(why), "TLS handshake failed: %s",
					e == SSL_ERROR_SYSCALL ? "connection closed (certificate refused?)"
							       : tls_errors(tb, sizeof(tb)));
			uplink_disconnect(u, why);
			return;
		}
		uplink_send_hello(u);
	}
	if (u->state == UL_HELLO || u->state == UL_STREAM) {
		if (uplink_pump_read(u) != 0)
			return;
		if (uplink_flush(u) != 0)
			return;
		uplink_update_watch(u);
	}
}

static void
uplink_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	uplink_step(w->data);
}

static void
uplink_connect(struct uplink *u)
{
	char why[400];
	const struct uplink_target *t = &u->o.targets[u->target];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	/* Name resolution blocks; receivers are normally given as addresses or resolved
	 * by the local stub resolver quickly, and nothing else runs while we are down. */
	int rc = getaddrinfo(t->host, t->port, &hints, &ai);
	if (rc != 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", t->host, gai_strerror(rc));
		u->state = UL_CONNECTING;
		uplink_disconnect(u, why);
		return;
	}
	u->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		freeaddrinfo(ai);
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		u->state = UL_CONNECTING;
		uplink_disconnect(u, why);
		return;
	}
	int one = 1;
	setsockopt(u->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	rc = connect(u->fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	u->state = UL_CONNECTING;
	u->state_since = ev_now(u->loop);
	u->last_rx = u->last_tx = ev_now(u->loop);
	if (rc != 0 && errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		uplink_disconnect(u, why);
		return;
	}
	if (u->o.ssl_ctx) {
		u->ssl = SSL_new(u->o.ssl_ctx);
		if (!u->ssl || SSL_set_fd(u->ssl, u->fd) != 1 ||
			tls_client_expect(u->ssl, t->server_name) != 0) {
			uplink_disconnect(u, "cannot set up TLS session");
			return;
		}
	}
	ev_io_init(&u->io, uplink_on_io, u->fd, EV_WRITE);
	u->io.data = u;
	ev_io_start(u->loop, &u->io);
}

static void
uplink_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	uplink_connect(w->data);
}

static void
uplink_schedule(struct uplink *u)
{
	/* Exponential backoff per full round over the receivers, with jitter in
	 * [50%, 100%] so that many sensors do not reconnect in lockstep. */
	unsigned round = u->attempts / (unsigned)u->o.n_targets;
	double ms = UPLINK_BACKOFF_MIN_MS;
	for (unsigned i = 0; i < round && ms < UPLINK_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > UPLINK_BACKOFF_MAX_MS)
		ms = UPLINK_BACKOFF_MAX_MS;
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)random();
	ms *= 0.5 + 0.5 * ((double)r / 4294967295.0);
	if (u->attempts % u->o.n_targets != 0)
		ms = 0; /* fail over to the next receiver at once */
	ev_timer_set(&u->retry, ms / 1000.0, 0.);
	ev_timer_start(u->loop, &u->retry);
}

static void
uplink_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct uplink *u = w->data;
	double now = ev_now(loop);
	char why[128];
	if (u->state == UL_CONNECTING || u->state == UL_HANDSHAKE || u->state == UL_HELLO) {
		if (now - u->state_since > UPLINK_CONNECT_TIMEOUT_S)
			uplink_disconnect(u, "timed out connecting");
		return;
	}
	if (u->state != UL_STREAM)
		return;
	double hb = u->hb_ms / 1000.0;
	if (now - u->last_rx > 3 * hb) {
		snprintf(why, sizeof(why), "receiver silent for %.1f s", now - u->last_rx);
		uplink_disconnect(u, why);
		return;
	}
	if (now - u->last_tx >= hb) {
		uint8_t buf[8];
		int n = proto_heartbeat_encode((uint64_t)(now * 1e9), buf, sizeof(buf));
		if (n > 0)
			uplink_ctl(u, PROTO_HEARTBEAT, buf, (size_t)n);
		uplink_step(u);
	}
}

struct uplink *
uplink_new(struct ev_loop *loop, const struct uplink_opts *o)
{
	struct uplink *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->refused = calloc(o->n_targets ? o->n_targets : 1, sizeof(*u->refused));
	if (!u->refused) {
		free(u);
		return NULL;
	}
	u->o = *o;
	u->loop = loop;
	u->fd = -1;
	u->state = UL_WAIT;
	u->hb_ms = UPLINK_DEFAULT_HB_MS;
	ev_timer_init(&u->retry, uplink_on_retry, 0., 0.);
	u->retry.data = u;
	ev_timer_init(&u->tick, uplink_on_tick, 0.5, 0.5);
	u->tick.data = u;
	return u;
}

void
uplink_start(struct uplink *u)
{
	ev_timer_start(u->loop, &u->tick);
	uplink_connect(u);
}

bool
uplink_has_room(const struct uplink *u, size_t len)
{
	return u->pending_bytes == 0 || u->pending_bytes + len <= u->o.window_bytes;
}

void
uplink_push(struct uplink *u, struct batch *b)
{
	b->next = NULL;
	if (u->tail)
		u->tail->next = b;
	else
		u->head = b;
	u->tail = b;
	u->pending_bytes += b->len;
	u->pending_batches++;
	if (!u->send)
		u->send = b;
	if (u->state == UL_STREAM) {
		if (uplink_flush(u) == 0)
			uplink_update_watch(u);
	}
}

void
uplink_send_stats(struct uplink *u, const struct proto_stats *st)
{
	if (u->state != UL_STREAM)
		return;
	uint8_t buf[16 + PROTO_MAX_STATS * 10];
	int n = proto_stats_encode(st, buf, sizeof(buf));
	if (n > 0) {
		uplink_ctl(u, PROTO_STATS, buf, (size_t)n);
		if (uplink_flush(u) == 0)
			uplink_update_watch(u);
	}
}

int
uplink_send_names(struct uplink *u, const uint8_t *payload, size_t len)
{
	if (u->state != UL_STREAM)
		return -ENOTCONN;
	if (len > PROTO_NAMES_MAX_LEN ||
		u->ctl_len + PROTO_HDR_LEN + len > sizeof(u->ctl) - UPLINK_CTL_RESERVE)
		return -ENOBUFS;
	uplink_ctl(u, PROTO_NAMES, payload, len);
	if (uplink_flush(u) == 0)
		uplink_update_watch(u);
	return 0;
}

void
uplink_stats(const struct uplink *u, struct uplink_stats *out)
{
	*out = u->st;
	out->pending_batches = u->pending_batches;
	out->pending_bytes = u->pending_bytes;
}

bool
uplink_idle(const struct uplink *u)
{
	return u->head == NULL;
}

uint64_t
uplink_renumber(
	struct uplink *u, uint64_t first, void (*moved)(void *arg, uint64_t old, uint64_t seq), void *arg)
{
	for (struct batch *b = u->head; b; b = b->next) {
		uint64_t old = b->seq;
		b->seq = first++;
		proto_batch_hdr_encode(
			b->seq, b->n_records, b->raw_len, b->frame + PROTO_HDR_LEN, PROTO_BATCH_HDR_LEN);
		if (moved)
			moved(arg, old, b->seq);
	}
	u->acked_seq = 0;
	u->max_written_seq = 0;
	u->written_any = false;
	return first;
}
uint64_t
uplink_acked_seq(const struct uplink *u)
{
	return u->acked_seq;
}

void
uplink_foreach_pending(const struct uplink *u, void (*fn)(void *arg, const struct batch *b), void *arg)
{
	for (const struct batch *b = u->head; b; b = b->next)
		fn(arg, b);
}

void
uplink_free(struct uplink *u)
{
	if (!u)
		return;
	ev_timer_stop(u->loop, &u->retry);
	ev_timer_stop(u->loop, &u->tick);
	ev_io_stop(u->loop, &u->io);
	if (u->ssl) {
		SSL_shutdown(u->ssl);
		SSL_free(u->ssl);
	}
	if (u->fd >= 0)
		close(u->fd);
	while (u->head) {
		struct batch *b = u->head;
		u->head = b->next;
		free(b);
	}
	free(u->refused);
	free(u);
}
