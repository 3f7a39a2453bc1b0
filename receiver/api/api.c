/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The receiver's HTTP API (see api.h). A request is answered on its connection's thread;
 * an export runs on a worker thread of its own writing the archive into a pipe whose read
 * end libmicrohttpd streams to the client (chunked), so memory stays flat and a client
 * that goes away ends the export with EPIPE. An export that fails after the 200 went out
 * ends the connection without the closing chunk, so the client sees a broken transfer
 * rather than a short archive.
 *
 * The capture of one connection or flow (l4query.h) streams the same way. Its response
 * is queued only once the worker has written its first bytes or has finished, so that an
 * unknown id is a 404 and a failure before the first bytes a 500, not a broken 200.
 * Connection and flow lists are small JSON documents (at most API_MAX_ROWS rows), built
 * whole and sent with a Content-Length.
 */
#include "receiver/api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pcap/pcap.h>

#include "receiver/api/metrics.h"
#include "receiver/api/sensors.h"
#include "receiver/repo/bundle.h"
#include "shared/fsutil.h"
#include "receiver/repo/l4query.h"
#include "shared/hostport.h"
#include "shared/log.h"
#include "receiver/repo/repo.h"
#include "receiver/repo/timearg.h"
#include "receiver/outputs/live.h"

#define API_MAX_PEM     (1 << 20)
#define API_MAX_SENSORS 1024
#define API_TIMEOUT_S   60
/* Connections that end quietly (slow headers, shed) are summed up this often. */
#define API_SUMMARY_S   10
/* Rows of one conns/flows answer at most (limit=): l4query builds the whole list in
 * memory, about 6 KiB a row with its JSON text, so this bounds a request near 60 MiB. */
#define API_MAX_ROWS    10000

/* One open connection, from libmicrohttpd's notification until its close: the guard
 * against clients that hold connections without ever finishing a request. */
struct api_conn {
	struct api_conn *prev, *next; /* api.head, oldest first */
	int fd;                       /* libmicrohttpd's, valid until the close notification */
	uint8_t src[16];              /* IPv4 address, or IPv6 /64 */
	struct timespec since;        /* accepted, or its previous request finished */
	bool busy;                    /* its request's headers are in: served, never shed */
	bool shed;                    /* shut down by the guard, closing */
};

struct api {
	int fd; /* bound listening socket until the daemon owns it */
	struct api_opts o;
	pthread_mutex_t mu; /* the fields below: libmicrohttpd's threads and the guard */
	struct api_conn *head, *tail;
	unsigned n_conns; /* not shed */
	struct {
		uint64_t slow, shed_src, shed_total, refused, quiet;
	} q; /* since the last summary line */
	struct log_limit mhd_lim;
	pthread_t guard;
	pthread_cond_t stop_cv;
	bool guard_running, stopping;
	struct MHD_Daemon *d;
	char *dir;
	unsigned char token_sha[SHA256_DIGEST_LENGTH];
	bool has_token;
	char *cert_pem, *key_pem;
	/* Readiness (/readyz) and the parts /metrics reads: under ready_mu, which a scrape
	 * holds while it copies the parts' counters, so that a part is never taken away
	 * in the middle (api_set_metrics() waits for that copy, never for storage). */
	pthread_mutex_t ready_mu;
	pthread_cond_t ready_cv;
	bool ready;
	char why[64];
	struct metrics_src *msrc;
};

/* The parameters of one export request. */
struct api_export_req {
	const char *from, *to, *filter;
	char *sensors[API_MAX_SENSORS];
	size_t n_sensors;
	char err[256]; /* the first problem, naming the parameter */
};

/* One export, shared by its worker (the writer) and its response (the reader); freed by
 * whichever lets go last. */
struct api_job {
	atomic_int refs;
	atomic_bool ok;       /* the worker finished the archive */
	int rfd;              /* pipe read end, the response's */
	struct bundle_opts o; /* o.out_fd: the write end, the worker's */
	struct bundle_sensor *bs;
	size_t n;
	char *filter;
	char *dir;
};

static struct addrinfo *
api_resolve(const char *listen, char *err, size_t errlen)
{
	struct hostport hp;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
	int rc;

	if (hostport_parse(listen, HOSTPORT_LISTEN, "api.listen", &hp, err, errlen) != 0)
		return NULL;
	rc = getaddrinfo(*hp.host ? hp.host : NULL, hp.port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "api.listen: %s: %s", listen, gai_strerror(rc));
		return NULL;
	}
	return ai;
}

int
api_listen_check(const char *listen, char *err, size_t errlen)
{
	struct addrinfo *ai;

	/* api_resolve() parses (and checks the port) before it resolves. */
	if ((ai = api_resolve(listen, err, errlen)) == NULL)
		return -1;
	freeaddrinfo(ai);
	return 0;
}

bool
api_listen_is_loopback(const char *listen)
{
	char err[256];
	struct addrinfo *ai = api_resolve(listen, err, sizeof(err)), *p;
	bool lo = ai != NULL;

	for (p = ai; p != NULL; p = p->ai_next) {
		if (p->ai_family == AF_INET) {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)p->ai_addr;
			lo &= (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
		} else if (p->ai_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)p->ai_addr;
			lo &= IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) != 0;
		} else {
			lo = false;
		}
	}
	if (ai != NULL)
		freeaddrinfo(ai);
	return lo;
}

/* Reads a whole PEM file (at most API_MAX_PEM bytes) as a string. */
static char *
api_read_pem(const char *key, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s: %s", key, path, strerror(errno));
		goto fail;
	}
	if (st.st_size <= 0 || st.st_size > API_MAX_PEM) {
		snprintf(err, errlen, "%s: %s: empty or larger than %d bytes", key, path, API_MAX_PEM);
		goto fail;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0) {
			snprintf(
				err, errlen, "%s: %s: %s", key, path, r < 0 ? strerror(errno) : "short read");
			goto fail;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(fd);
	return buf;
fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void
api_wipe_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
api_free(struct api *a)
{
	if (a == NULL)
		return;
	if (a->guard_running) {
		pthread_mutex_lock(&a->mu);
		a->stopping = true;
		pthread_cond_signal(&a->stop_cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->guard, NULL);
	}
	/* Requests waiting for ready give up now, rather than hold up the stop. */
	api_set_ready(a, false, "shutting down");
	if (a->d != NULL)
		MHD_stop_daemon(a->d); /* closes the listening socket too */
	else if (a->fd >= 0)
		close(a->fd);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->stop_cv);
	pthread_mutex_destroy(&a->ready_mu);
	pthread_cond_destroy(&a->ready_cv);
	free(a->msrc);
	api_wipe_free(a->key_pem);
	free(a->cert_pem);
	free(a->dir);
	OPENSSL_cleanse(a->token_sha, sizeof(a->token_sha));
	free(a);
}

struct api *
api_new(const struct api_opts *o, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	struct addrinfo *ai = NULL;
	bool tls = o->cert[0] != '\0' || o->key[0] != '\0';
	int one = 1;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->fd = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->stop_cv, NULL);
	pthread_mutex_init(&a->ready_mu, NULL);
	pthread_cond_init(&a->ready_cv, NULL);
	/* Ready unless the owner says otherwise: the repository alone is enough to serve
	 * (the receiver calls api_set_ready() while it loads its store). */
	a->ready = true;
	a->o = *o;
	a->o.listen = a->o.token = a->o.cert = a->o.key = a->o.dir = NULL; /* not kept */
	if (a->o.max_conns == 0)
		a->o.max_conns = API_MAX_CONNECTIONS;
	if (a->o.max_conns_per_source == 0 || a->o.max_conns_per_source > a->o.max_conns)
		a->o.max_conns_per_source = a->o.max_conns;
	if (a->o.header_timeout_ms == 0)
		a->o.header_timeout_ms = 10000;
	if (a->o.idle_timeout_s == 0)
		a->o.idle_timeout_s = API_TIMEOUT_S;
	if ((o->cert[0] == '\0') != (o->key[0] == '\0')) {
		snprintf(err, errlen, "api.cert and api.key: give both or neither");
		goto fail;
	}
	if (!api_listen_is_loopback(o->listen) && (o->token[0] == '\0' || !tls)) {
		snprintf(err, errlen,
			"api.listen: %s is not a loopback address: api.token, api.cert and "
			"api.key are required",
			o->listen);
		goto fail;
	}
	if (tls && !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
		snprintf(err, errlen, "api.cert: this libmicrohttpd has no TLS support");
		goto fail;
	}
	if (tls &&
		((a->cert_pem = api_read_pem("api.cert", o->cert, err, errlen)) == NULL ||
			(a->key_pem = api_read_pem("api.key", o->key, err, errlen)) == NULL))
		goto fail;
	if (o->token[0] != '\0') {
		SHA256((const unsigned char *)o->token, strlen(o->token), a->token_sha);
		a->has_token = true;
	}
	if ((a->dir = strdup(o->dir)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((ai = api_resolve(o->listen, err, errlen)) == NULL)
		goto fail;
	a->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a->fd >= 0)
		setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->fd < 0 || bind(a->fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(a->fd, 64) != 0) {
		snprintf(err, errlen, "api.listen: %s: %s", o->listen, strerror(errno));
		goto fail;
	}
	freeaddrinfo(ai);
	return a;
fail:
	if (ai != NULL)
		freeaddrinfo(ai);
	api_free(a);
	return NULL;
}

/* Connection guard --------------------------------------------------------------------
 *
 * libmicrohttpd's idle timeout does not end a client that sends its request headers one
 * byte at a time, and its connection limits refuse newcomers once such clients hold
 * every slot. So the API keeps its own list: a connection whose request headers are not
 * complete within api.header_timeout is shut down, and a new connection that finds its
 * source at api.max_connections_per_source, or all at api.max_connections, sheds the
 * oldest connection still waiting for its headers (of its source first, else of the
 * source holding most). A request being served (an export that streams for an hour to
 * a slow reader) is never cut by either. Shedding is shutdown(2) on the socket:
 * libmicrohttpd's thread sees the end and closes it as usual. */

static double
api_elapsed(const struct timespec *since, const struct timespec *now)
{
	return (double)(now->tv_sec - since->tv_sec) + (double)(now->tv_nsec - since->tv_nsec) / 1e9;
}

static void
api_src_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa != NULL && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &s4->sin_addr, 4);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(key, &s6->sin6_addr, IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) ? 16 : 8);
	}
}

/* Called with a->mu held. */
static void
api_shed(struct api *a, struct api_conn *ac)
{
	ac->shed = true;
	a->n_conns--;
	shutdown(ac->fd, SHUT_RDWR);
}

/* The connection to shed for a newcomer when all slots are taken: the oldest one still
 * waiting for its headers, of the source that holds most. NULL if every one is busy.
 * The list is short (api.max_connections): quadratic is fine. Called with a->mu held. */
static struct api_conn *
api_victim(struct api *a, const struct api_conn *except)
{
	struct api_conn *best = NULL;
	unsigned best_n = 0;

	for (struct api_conn *c = a->head; c != NULL; c = c->next) {
		unsigned n = 0;

		if (c->shed || c->busy || c == except)
			continue;
		for (struct api_conn *d = a->head; d != NULL; d = d->next)
			n += !d->shed && memcmp(d->src, c->src, 16) == 0;
		if (n > best_n) {
			best = c;
			best_n = n;
		}
	}
	return best;
}

static void
api_on_connection(
	void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
	struct api *a = cls;
	struct api_conn *ac = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (ac == NULL)
			return;
		pthread_mutex_lock(&a->mu);
		if (ac->prev != NULL)
			ac->prev->next = ac->next;
		else
			a->head = ac->next;
		if (ac->next != NULL)
			ac->next->prev = ac->prev;
		else
			a->tail = ac->prev;
		if (!ac->shed)
			a->n_conns--;
		pthread_mutex_unlock(&a->mu);
		free(ac);
		*socket_context = NULL;
		return;
	}
	const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (fi == NULL || (ac = calloc(1, sizeof(*ac))) == NULL)
		return; /* unguarded, still bounded by libmicrohttpd's own limits */
	ac->fd = fi->connect_fd;
	api_src_key(ai != NULL ? ai->client_addr : NULL, ac->src);
	clock_gettime(CLOCK_MONOTONIC, &ac->since);
	*socket_context = ac;

	pthread_mutex_lock(&a->mu);
	ac->prev = a->tail;
	if (a->tail != NULL)
		a->tail->next = ac;
	else
		a->head = ac;
	a->tail = ac;
	a->n_conns++;
	struct api_conn *same = NULL;
	unsigned n_same = 0;
	for (struct api_conn *d = a->head; d != NULL; d = d->next) {
		if (d->shed || memcmp(d->src, ac->src, 16) != 0)
			continue;
		n_same++;
		if (same == NULL && !d->busy && d != ac)
			same = d;
	}
	if (n_same > a->o.max_conns_per_source) {
		/* Its own source's oldest waiting one, or the newcomer when all are served. */
		api_shed(a, same != NULL ? same : ac);
		if (same != NULL)
			a->q.shed_src++;
		else
			a->q.refused++;
	} else if (a->n_conns > a->o.max_conns) {
		struct api_conn *v = api_victim(a, ac);

		api_shed(a, v != NULL ? v : ac);
		if (v != NULL)
			a->q.shed_total++;
		else
			a->q.refused++;
	}
	pthread_mutex_unlock(&a->mu);
}

/* A request's headers are in: its connection is being served. */
static void
api_mark_busy(struct api *a, struct MHD_Connection *c, bool busy)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct api_conn *ac = ci != NULL ? ci->socket_context : NULL;

	if (ac == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	ac->busy = busy;
	if (!busy)
		clock_gettime(CLOCK_MONOTONIC, &ac->since); /* the next request's headers: from now */
	pthread_mutex_unlock(&a->mu);
}

static void
api_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	api_mark_busy(cls, c, false);
}

/* Every 200 ms: shuts down connections whose request headers are late; every
 * API_SUMMARY_S at most, one line for what ended quietly. */
static void *
api_guard(void *arg)
{
	struct api *a = arg;
	struct timespec last, now, wake;
	double limit = a->o.header_timeout_ms / 1000.0;

	clock_gettime(CLOCK_MONOTONIC, &last);
	pthread_mutex_lock(&a->mu);
	while (!a->stopping) {
		clock_gettime(CLOCK_REALTIME, &wake);
		wake.tv_nsec += 200000000;
		if (wake.tv_nsec >= 1000000000) {
			wake.tv_sec++;
			wake.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&a->stop_cv, &a->mu, &wake);
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (struct api_conn *c = a->head; c != NULL; c = c->next) {
			if (!c->shed && !c->busy && api_elapsed(&c->since, &now) > limit) {
				api_shed(a, c);
				a->q.slow++;
			}
		}
		if (api_elapsed(&last, &now) >= API_SUMMARY_S || a->stopping) {
			if (a->q.slow || a->q.shed_src || a->q.shed_total || a->q.refused || a->q.quiet)
				log_warnx("api: in the last %.0f s: %" PRIu64
					  " connections closed without a complete request "
					  "within api.header_timeout, %" PRIu64
					  " shed for newer ones (%" PRIu64
					  " over api.max_connections_per_source, %" PRIu64
					  " over api.max_connections), %" PRIu64
					  " refused (every slot serving a request), %" PRIu64
					  " server messages not logged; %u open now",
					api_elapsed(&last, &now), a->q.slow, a->q.shed_src + a->q.shed_total,
					a->q.shed_src, a->q.shed_total, a->q.refused, a->q.quiet, a->n_conns);
			memset(&a->q, 0, sizeof(a->q));
			last = now;
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* Responses -------------------------------------------------------------------------- */

static enum MHD_Result api_text(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result
api_text(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;
	struct MHD_Response *r;
	enum MHD_Result ret;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	r = MHD_create_response_from_buffer((size_t)n, line, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* True when the request carries "Authorization: Bearer <token>"; both sides are hashed
 * first so that the comparison takes the same time whatever the lengths. */
static bool
api_authorized(const struct api *a, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	unsigned char sha[SHA256_DIGEST_LENGTH];
	bool ok;

	if (!a->has_token)
		return true;
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	SHA256((const unsigned char *)h, strlen(h), sha);
	ok = CRYPTO_memcmp(sha, a->token_sha, sizeof(sha)) == 0;
	OPENSSL_cleanse(sha, sizeof(sha));
	return ok;
}

/* The window [from, to) of a request, both required, as `pcapline export` takes them.
 * -1 with a message naming the parameter in err. */
static int
api_window(const char *from, const char *to, uint64_t *from_ns, uint64_t *to_ns, char *err, size_t errlen)
{
	uint64_t now = timearg_now();

	if (from == NULL || timearg_parse(from, now, from_ns) != 0) {
		snprintf(err, errlen, "from: %s (RFC 3339, Unix seconds, or now-5m)",
			from ? "not a time" : "required");
		return -1;
	}
	if (to == NULL || timearg_parse(to, now, to_ns) != 0) {
		snprintf(err, errlen, "to: %s (RFC 3339, Unix seconds, or now-5m)",
			to ? "not a time" : "required");
		return -1;
	}
	if (*from_ns >= *to_ns || *to_ns > (uint64_t)INT64_MAX) {
		snprintf(err, errlen, "to: must be after from (the window is [from, to)) and before 2262");
		return -1;
	}
	return 0;
}

/* Adds the sensor ids of one sensor= value (comma-separated) to v, once each, at most
 * max in all. Sets err (a 400's text) on a bad id, too many, or no memory. */
static void
api_add_sensors(const char *value, char **v, size_t *n, size_t max, char *err, size_t errlen)
{
	char *copy = strdup(value), *save = NULL, *tok;

	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		bool dup = false;

		if (!fsu_name_ok(tok)) {
			snprintf(err, errlen,
				"sensor: '%.64s' is not a sensor id (letters, digits, '.', '_', '-')", tok);
			break;
		}
		for (size_t i = 0; i < *n; i++)
			dup |= strcmp(v[i], tok) == 0;
		if (dup)
			continue;
		if (*n == max) {
			snprintf(err, errlen, "sensor: more than %zu", max);
			break;
		}
		if ((v[*n] = strdup(tok)) == NULL) {
			snprintf(err, errlen, "out of memory");
			break;
		}
		(*n)++;
	}
	free(copy);
}

/* Export ----------------------------------------------------------------------------- */

static enum MHD_Result
api_on_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct api_export_req *q = cls;

	if (q->err[0] != '\0')
		return MHD_NO;
	if (value == NULL)
		value = "";
	if (strcmp(key, "from") == 0 || strcmp(key, "to") == 0 || strcmp(key, "filter") == 0) {
		const char **slot = key[0] == 'f' && key[1] == 'r' ? &q->from
			: key[0] == 't'                            ? &q->to
								   : &q->filter;
		if (*slot != NULL)
			snprintf(q->err, sizeof(q->err), "%s: given twice", key);
		*slot = value;
	} else if (strcmp(key, "sensor") == 0) {
		api_add_sensors(value, q->sensors, &q->n_sensors, API_MAX_SENSORS, q->err, sizeof(q->err));
	} else {
		snprintf(q->err, sizeof(q->err), "%.64s: unknown parameter (from, to, sensor, filter)", key);
	}
	return q->err[0] == '\0' ? MHD_YES : MHD_NO;
}

/* Checks the filter's syntax up front (for Ethernet), so that a typo is a 400 rather
 * than an archive cut short; the export compiles it again for every link type. */
static int
api_check_filter(const char *filter, char *err, size_t errlen)
{
	pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
	struct bpf_program prog;
	int rc = 0;

	if (dead == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (pcap_compile(dead, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
		snprintf(err, errlen, "filter: %.200s", pcap_geterr(dead));
		rc = -1;
	} else {
		pcap_freecode(&prog);
	}
	pcap_close(dead);
	return rc;
}

static void
api_job_free(struct api_job *j)
{
	if (j == NULL)
		return;
	if (j->rfd >= 0)
		close(j->rfd);
	if (j->o.out_fd >= 0)
		close(j->o.out_fd);
	for (size_t i = 0; i < j->n; i++) {
		free((char *)j->bs[i].name);
		free((char *)j->bs[i].names_path);
		repo_seglist_free(&j->bs[i].segs);
	}
	free(j->bs);
	free(j->filter);
	free(j->dir);
	free(j);
}

static void
api_job_put(struct api_job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) == 1)
		api_job_free(j);
}

static void *
api_export_worker(void *arg)
{
	struct api_job *j = arg;
	char err[1024];

	if (bundle_export(&j->o, j->bs, j->n, err, sizeof(err)) == 0)
		atomic_store(&j->ok, true);
	else
		log_warnx("api: export of [%" PRIu64 ", %" PRIu64 ") cut off: %s", j->o.from_ns, j->o.to_ns,
			err);
	close(j->o.out_fd);
	j->o.out_fd = -1;
	api_job_put(j);
	return NULL;
}

/* The response body: what the worker wrote. The connection's thread may block here. */
static ssize_t
api_export_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct api_job *j = cls;
	ssize_t r;

	do
		r = read(j->rfd, buf, max);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return r;
	return r == 0 && atomic_load(&j->ok) ? MHD_CONTENT_READER_END_OF_STREAM
					     : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void
api_export_done(void *cls)
{
	struct api_job *j = cls;

	close(j->rfd);
	j->rfd = -1;
	api_job_put(j);
}

/* The sensors and segments of the window, into the job. 400 or 500 on failure. */
static unsigned int
api_collect(const struct api *a, struct api_export_req *q, struct api_job *j, char *err, size_t errlen)
{
	struct repo *r = repo_open(a->dir, err, errlen);
	char **names = NULL;
	size_t k = 0;
	unsigned int status = MHD_HTTP_INTERNAL_SERVER_ERROR;

	if (r == NULL)
		return status;
	if (q->n_sensors > 0) {
		for (size_t i = 0; i < q->n_sensors; i++) {
			if (!repo_has_sensor(r, q->sensors[i])) {
				snprintf(err, errlen, "sensor: no sensor '%s'", q->sensors[i]);
				status = MHD_HTTP_BAD_REQUEST;
				goto out;
			}
		}
		names = q->sensors;
		k = q->n_sensors;
	} else if (repo_sensors(r, j->o.from_ns, j->o.to_ns, &names, &k, err, errlen) != 0) {
		goto out;
	}
	if ((j->bs = calloc(k + 1, sizeof(*j->bs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (; j->n < k; j->n++) {
		struct bundle_sensor *s = &j->bs[j->n];

		s->name = strdup(names[j->n]);
		s->names_path = repo_names_path(r, names[j->n]);
		if (s->name == NULL || s->names_path == NULL) {
			j->n++;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (repo_segments(r, names[j->n], j->o.from_ns, j->o.to_ns, &s->segs, err, errlen) != 0) {
			j->n++;
			goto out;
		}
	}
	status = MHD_HTTP_OK;
out:
	if (names != NULL && names != q->sensors)
		repo_strv_free(names, k);
	repo_free(r);
	return status;
}

static enum MHD_Result
api_export(struct api *a, struct MHD_Connection *c)
{
	struct api_export_req q = { 0 };
	struct api_job *j = NULL;
	char err[1024];
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	int p[2];
	pthread_t tid;
	pthread_attr_t attr;
	struct MHD_Response *r;
	enum MHD_Result ret;

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, api_on_arg, &q);
	if (q.err[0] != '\0') {
		snprintf(err, sizeof(err), "%s", q.err);
		goto fail;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	j->rfd = j->o.out_fd = -1;
	if (api_window(q.from, q.to, &j->o.from_ns, &j->o.to_ns, err, sizeof(err)) != 0)
		goto fail;
	if (q.filter != NULL && q.filter[0] != '\0') {
		if (api_check_filter(q.filter, err, sizeof(err)) != 0)
			goto fail;
		if ((j->filter = strdup(q.filter)) == NULL) {
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
	}
	if ((j->dir = strdup(a->dir)) == NULL) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if ((status = api_collect(a, &q, j, err, sizeof(err))) != MHD_HTTP_OK)
		goto fail;
	j->o.filter = j->filter;
	j->o.output = NULL;
	j->o.gzip_level = 1;
	j->o.source_kind = "repository";
	j->o.source_name = j->dir;
	status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
		goto fail;
	}
	j->rfd = p[0];
	j->o.out_fd = p[1];
	atomic_init(&j->refs, 2);
	atomic_init(&j->ok, false);
	r = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, 64 * 1024, api_export_read, j, api_export_done);
	if (r == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, api_export_worker, j) != 0) {
		pthread_attr_destroy(&attr);
		close(j->o.out_fd); /* the response's reader sees a failed end */
		j->o.out_fd = -1;
		api_job_put(j);
		MHD_destroy_response(r);
		return api_text(c, status, "cannot start the export thread");
	}
	pthread_attr_destroy(&attr);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/gzip");
	MHD_add_response_header(
		r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, "attachment; filename=\"pcapline-export.tar.gz\"");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	for (size_t i = 0; i < q.n_sensors; i++)
		free(q.sensors[i]);
	return ret;
fail:
	api_job_free(j);
	for (size_t i = 0; i < q.n_sensors; i++)
		free(q.sensors[i]);
	if (status >= 500)
		log_warnx("api: export: %s", err);
	return api_text(c, status, "%s", err);
}

/* Connections and flows --------------------------------------------------------------- */

/* The parameters of one conns or flows request, as given. */
struct api_l4_req {
	bool flows; /* GET /api/v1/flows: no conn parameter */
	const char *sensor, *from, *to, *flow, *conn, *limit;
	char err[256];
};

static enum MHD_Result
api_on_l4_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct api_l4_req *q = cls;
	const char **slot = NULL;

	if (q->err[0] != '\0')
		return MHD_NO;
	if (strcmp(key, "sensor") == 0)
		slot = &q->sensor;
	else if (strcmp(key, "from") == 0)
		slot = &q->from;
	else if (strcmp(key, "to") == 0)
		slot = &q->to;
	else if (strcmp(key, "flow") == 0)
		slot = &q->flow;
	else if (strcmp(key, "conn") == 0 && !q->flows)
		slot = &q->conn;
	else if (strcmp(key, "limit") == 0)
		slot = &q->limit;
	if (slot == NULL) {
		snprintf(q->err, sizeof(q->err), "%.64s: unknown parameter (sensor, from, to, flow, %slimit)",
			key, q->flows ? "" : "conn, ");
		return MHD_NO;
	}
	if (*slot != NULL) {
		snprintf(q->err, sizeof(q->err), "%s: given twice", key);
		return MHD_NO;
	}
	*slot = value != NULL ? value : "";
	return MHD_YES;
}

/* A decimal integer in [1, max], digits only. */
static bool
api_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || s[0] == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return v >= 1;
}

/* A connection or flow id: 1 .. 2^63-1, like `pcapline pcap --conn/--flow`. */
static bool
api_parse_id(const char *s, uint64_t *out)
{
	return api_parse_uint(s, (uint64_t)INT64_MAX, out);
}

/* Sends v (consumed) as the JSON body of a 200. */
static enum MHD_Result
api_json(struct MHD_Connection *c, json_t *v)
{
	char *body = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER), *nl;
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t n;

	json_decref(v);
	if (body == NULL || (nl = realloc(body, (n = strlen(body)) + 2)) == NULL) {
		free(body);
		log_warnx("api: out of memory for a JSON answer");
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	body = nl;
	body[n++] = '\n';
	body[n] = '\0';
	r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* GET /api/v1/conns and /api/v1/flows: what `pcapline conns|flows --json` prints. */
static enum MHD_Result
api_l4_list(struct api *a, struct MHD_Connection *c, bool flows)
{
	struct api_l4_req q = { .flows = flows };
	struct l4q l = { 0 };
	char err[1024];
	uint64_t v;
	json_t *res;

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, api_on_l4_arg, &q);
	if (q.err[0] != '\0')
		return api_text(c, MHD_HTTP_BAD_REQUEST, "%s", q.err);
	if (q.sensor != NULL && !fsu_name_ok(q.sensor))
		return api_text(c, MHD_HTTP_BAD_REQUEST,
			"sensor: '%.64s' is not a sensor id (letters, digits, '.', '_', '-')", q.sensor);
	/* Both or neither: neither is any time. */
	if ((q.from != NULL || q.to != NULL) &&
		api_window(q.from, q.to, &l.from_ns, &l.to_ns, err, sizeof(err)) != 0)
		return api_text(c, MHD_HTTP_BAD_REQUEST, "%s", err);
	if (q.flow != NULL && !api_parse_id(q.flow, &l.flow_id))
		return api_text(
			c, MHD_HTTP_BAD_REQUEST, "flow: '%.64s' is not a flow id (1 .. 2^63-1)", q.flow);
	if (q.conn != NULL && !api_parse_id(q.conn, &l.conn_id))
		return api_text(c, MHD_HTTP_BAD_REQUEST, "conn: '%.64s' is not a connection id (1 .. 2^63-1)",
			q.conn);
	if (q.limit != NULL) {
		if (!api_parse_uint(q.limit, API_MAX_ROWS, &v))
			return api_text(c, MHD_HTTP_BAD_REQUEST, "limit: '%.64s' is not 1 .. %d", q.limit,
				API_MAX_ROWS);
		l.limit = (unsigned)v;
	}
	l.sensor = q.sensor;
	res = flows ? l4q_flows(a->dir, &l, err, sizeof(err)) : l4q_conns(a->dir, &l, err, sizeof(err));
	if (res == NULL) {
		log_warnx("api: %s: %s", flows ? "flows" : "conns", err);
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err);
	}
	return api_json(c, res);
}

/* The capture of one connection or flow, shared by its worker (the writer, through
 * l4q_pcap's sink) and its request (the reader); freed by whichever lets go last. */
struct api_pcap_job {
	atomic_int refs;
	atomic_bool started; /* the sink has been called: bytes are coming */
	atomic_bool done;    /* l4q_pcap returned rc, with err set on failure */
	atomic_int rc;
	int rfd, wfd; /* pipe: the request's end, the worker's end */
	bool flow;
	uint64_t id;
	char *dir;
	char err[1024];
};

static void
api_pcap_free(struct api_pcap_job *j)
{
	if (j->rfd >= 0)
		close(j->rfd);
	if (j->wfd >= 0)
		close(j->wfd);
	free(j->dir);
	free(j);
}

static void
api_pcap_put(struct api_pcap_job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) == 1)
		api_pcap_free(j);
}

/* l4q_pcap's sink: into the pipe, blocking while the client is slower. */
static int
api_pcap_sink(void *arg, const void *buf, size_t len)
{
	struct api_pcap_job *j = arg;

	atomic_store(&j->started, true);
	return fsu_write_all(j->wfd, buf, len); /* -EPIPE: the client went away */
}

static void *
api_pcap_worker(void *arg)
{
	struct api_pcap_job *j = arg;
	uint64_t packets;
	int rc;

	j->err[0] = '\0';
	rc = l4q_pcap(j->dir, j->flow, j->id, api_pcap_sink, j, &packets, j->err, sizeof(j->err));
	if (rc != 0 && j->err[0] == '\0')
		snprintf(j->err, sizeof(j->err), "%s", strerror(-rc));
	if (rc != 0 && rc != -ENOENT && atomic_load(&j->started))
		log_warnx("api: capture of %s %" PRIu64 " cut off: %s", j->flow ? "flow" : "connection",
			j->id, j->err);
	atomic_store(&j->rc, rc);
	atomic_store(&j->done, true);
	close(j->wfd); /* after done: the reader's end of file means done */
	j->wfd = -1;
	api_pcap_put(j);
	return NULL;
}

static ssize_t
api_pcap_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct api_pcap_job *j = cls;
	ssize_t r;

	do
		r = read(j->rfd, buf, max);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return r;
	return r == 0 && atomic_load(&j->done) && atomic_load(&j->rc) == 0
		? MHD_CONTENT_READER_END_OF_STREAM
		: MHD_CONTENT_READER_END_WITH_ERROR;
}

static void
api_pcap_done(void *cls)
{
	struct api_pcap_job *j = cls;

	close(j->rfd); /* a worker still writing gets EPIPE */
	j->rfd = -1;
	api_pcap_put(j);
}

/* The first query parameter of a request that takes none, as an error into cls. */
static enum MHD_Result
api_on_no_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	char *err = cls;

	snprintf(err, 128, "%.64s: unknown parameter (the capture takes none)", key);
	return MHD_NO;
}

/* GET /api/v1/conns/<id>/pcap and /api/v1/flows/<id>/pcap: what `pcapline pcap` writes. */
static enum MHD_Result
api_pcap(struct api *a, struct MHD_Connection *c, bool flow, const char *idstr)
{
	const char *what = flow ? "flow" : "connection";
	char bad[128] = "";
	struct api_pcap_job *j;
	struct pollfd pfd;
	struct MHD_Response *r;
	pthread_attr_t attr;
	pthread_t tid;
	char disp[96];
	uint64_t id;
	int p[2], rc;
	enum MHD_Result ret;

	if (!api_parse_id(idstr, &id))
		return api_text(
			c, MHD_HTTP_BAD_REQUEST, "id: '%.64s' is not a %s id (1 .. 2^63-1)", idstr, what);
	/* It takes no parameters: any is a mistake worth telling. */
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, api_on_no_arg, bad);
	if (bad[0] != '\0')
		return api_text(c, MHD_HTTP_BAD_REQUEST, "%s", bad);
	if ((j = calloc(1, sizeof(*j))) == NULL || (j->dir = strdup(a->dir)) == NULL) {
		free(j);
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	j->flow = flow;
	j->id = id;
	if (pipe2(p, O_CLOEXEC) != 0) {
		rc = errno;
		free(j->dir);
		free(j);
		log_warnx("api: pipe: %s", strerror(rc));
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "pipe: %s", strerror(rc));
	}
	j->rfd = p[0];
	j->wfd = p[1];
	atomic_init(&j->refs, 2);
	atomic_init(&j->started, false);
	atomic_init(&j->done, false);
	atomic_init(&j->rc, 0);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, api_pcap_worker, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		api_pcap_free(j);
		log_warnx("api: cannot start a capture thread: %s", strerror(rc));
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start the capture thread");
	}
	/* Until the first bytes or the end (the worker closes its end: POLLHUP). A worker
	 * slower than that to start is streamed anyway. */
	pfd.fd = j->rfd;
	pfd.events = POLLIN;
	while (poll(&pfd, 1, API_TIMEOUT_S * 1000) < 0 && errno == EINTR)
		;
	if (atomic_load(&j->done) && (rc = atomic_load(&j->rc)) != 0) {
		unsigned int status = rc == -ENOENT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_INTERNAL_SERVER_ERROR;

		if (status >= 500)
			log_warnx("api: capture of %s %" PRIu64 ": %s", what, id, j->err);
		ret = api_text(c, status, "%s", j->err);
		api_pcap_done(j);
		return ret;
	}
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, api_pcap_read, j, api_pcap_done);
	if (r == NULL) {
		api_pcap_done(j);
		return MHD_NO;
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%" PRIu64 ".pcap\"", flow ? "flow" : "conn",
		id);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/vnd.tcpdump.pcap");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disp);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Health and metrics ------------------------------------------------------------------ */

void
api_set_metrics(struct api *a, const struct metrics_src *src)
{
	struct metrics_src *copy = NULL;

	if (src != NULL && (copy = malloc(sizeof(*copy))) != NULL)
		*copy = *src;
	if (src != NULL && copy == NULL)
		log_warnx("api: out of memory: /metrics shows no counters");
	pthread_mutex_lock(&a->ready_mu);
	free(a->msrc);
	a->msrc = copy;
	pthread_mutex_unlock(&a->ready_mu);
}

void
api_set_ready(struct api *a, bool ready, const char *why)
{
	pthread_mutex_lock(&a->ready_mu);
	a->ready = ready;
	snprintf(a->why, sizeof(a->why), "%s", why != NULL ? why : "");
	pthread_cond_broadcast(&a->ready_cv);
	pthread_mutex_unlock(&a->ready_mu);
}

/* Waits until ready, for at most API_READY_WAIT_S. False with why when it is not. */
static bool
api_wait_ready(struct api *a, char *why, size_t whylen)
{
	struct timespec until;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += API_READY_WAIT_S;
	pthread_mutex_lock(&a->ready_mu);
	/* Shutting down is final: nothing to wait for then. */
	while (!a->ready && strcmp(a->why, "shutting down") != 0 &&
		pthread_cond_timedwait(&a->ready_cv, &a->ready_mu, &until) == 0)
		;
	ok = a->ready;
	snprintf(why, whylen, "%s", a->why);
	pthread_mutex_unlock(&a->ready_mu);
	return ok;
}

static enum MHD_Result
api_readyz(struct api *a, struct MHD_Connection *c)
{
	char why[64];
	bool ok;

	pthread_mutex_lock(&a->ready_mu);
	ok = a->ready;
	snprintf(why, sizeof(why), "%s", a->why);
	pthread_mutex_unlock(&a->ready_mu);
	if (ok)
		return api_text(c, MHD_HTTP_OK, "ready");
	return api_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s", why);
}

/* GET /metrics: the snapshot is copied under ready_mu (the parts' own locks are held
 * only for their copies), then rendered outside it. */
static enum MHD_Result
api_metrics(struct api *a, struct MHD_Connection *c)
{
	struct metrics_snap m;
	struct metrics_src src = { 0 };
	struct promtext b = { 0 };
	struct MHD_Response *r;
	enum MHD_Result ret;
	int rc;

	pthread_mutex_lock(&a->ready_mu);
	if (a->msrc != NULL)
		src = *a->msrc;
	rc = metrics_collect(&src, a->ready, &m);
	pthread_mutex_unlock(&a->ready_mu);
	if (rc == 0)
		rc = metrics_render(&m, &src, &b);
	metrics_snap_fini(&m);
	if (rc != 0) {
		promtext_fini(&b);
		log_warnx("api: out of memory for /metrics");
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		promtext_fini(&b);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, PROMTEXT_CONTENT_TYPE);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Live stream ------------------------------------------------------------------------- */

struct api_live_req {
	const char *filter, *format;
	char *sensors[LIVE_MAX_SENSORS];
	size_t n_sensors;
	char err[256];
};

static enum MHD_Result
api_on_live_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct api_live_req *q = cls;

	if (q->err[0] != '\0')
		return MHD_NO;
	if (value == NULL)
		value = "";
	if (strcmp(key, "filter") == 0 || strcmp(key, "format") == 0) {
		const char **slot = key[1] == 'i' ? &q->filter : &q->format;
		if (*slot != NULL)
			snprintf(q->err, sizeof(q->err), "%s: given twice", key);
		*slot = value;
	} else if (strcmp(key, "sensor") == 0) {
		api_add_sensors(value, q->sensors, &q->n_sensors, LIVE_MAX_SENSORS, q->err, sizeof(q->err));
	} else {
		snprintf(q->err, sizeof(q->err), "%.64s: unknown parameter (sensor, filter, format)", key);
	}
	return q->err[0] == '\0' ? MHD_YES : MHD_NO;
}

struct api_live {
	struct live_consumer *lc;
	int fd; /* the connection's, to notice a client that went away while nothing flows */
};

/* Waits for the next bytes of the stream; while none come, checks once a second that
 * the client is still there, so that one that left does not hold its slot until the
 * next packet. */
static ssize_t
api_live_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct api_live *l = cls;

	for (;;) {
		ssize_t n = live_consumer_read(l->lc, buf, max, 1000);
		struct pollfd pfd = { .fd = l->fd, .events = POLLRDHUP };

		if (n > 0)
			return n;
		if (n == -ESHUTDOWN)
			return MHD_CONTENT_READER_END_OF_STREAM; /* the receiver stops: a clean end */
		if (n < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR; /* cut off: a broken transfer */
		if (l->fd >= 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static void
api_live_done(void *cls)
{
	struct api_live *l = cls;

	live_consumer_free(l->lc);
	free(l);
}

/* GET /api/v1/live?sensor=ID&filter=BPF&format=pcap|pcapng: the live stream. */
static enum MHD_Result
api_live(struct api *a, struct MHD_Connection *c)
{
	struct api_live_req q = { 0 };
	const union MHD_ConnectionInfo *ci;
	struct live_consumer_opts lo = { 0 };
	struct MHD_Response *r;
	struct api_live *l = NULL;
	char err[512], peer[INET6_ADDRSTRLEN + 32] = "http";
	enum MHD_Result ret;

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, api_on_live_arg, &q);
	if (q.err[0] != '\0') {
		ret = api_text(c, MHD_HTTP_BAD_REQUEST, "%s", q.err);
		goto out;
	}
	if (q.format != NULL && strcmp(q.format, "pcap") != 0 && strcmp(q.format, "pcapng") != 0) {
		ret = api_text(c, MHD_HTTP_BAD_REQUEST, "format: '%.32s' is not pcap or pcapng", q.format);
		goto out;
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci != NULL && ci->client_addr != NULL) {
		char host[INET6_ADDRSTRLEN] = "?";
		const struct sockaddr *sa = ci->client_addr;
		unsigned port = 0;

		if (sa->sa_family == AF_INET) {
			const struct sockaddr_in *s4 = (const void *)sa;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
			port = ntohs(s4->sin_port);
		} else if (sa->sa_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const void *)sa;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			port = ntohs(s6->sin6_port);
		}
		snprintf(peer, sizeof(peer), "http %s:%u", host, port);
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		ret = api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		goto out;
	}
	l->fd = ci != NULL ? (int)ci->connect_fd : -1;
	lo.sensors = (const char *const *)q.sensors;
	lo.n_sensors = q.n_sensors;
	lo.filter = q.filter;
	lo.format = q.format != NULL && strcmp(q.format, "pcapng") == 0 ? LIVE_PCAPNG : LIVE_PCAP;
	lo.name = peer;
	lo.fd = l->fd;
	if ((l->lc = live_consumer_new(&lo, err, sizeof(err))) == NULL) {
		unsigned int status = errno == EINVAL ? MHD_HTTP_BAD_REQUEST
			: errno == ENOMEM             ? MHD_HTTP_INTERNAL_SERVER_ERROR
						      : MHD_HTTP_SERVICE_UNAVAILABLE;
		free(l);
		ret = api_text(c, status, "%s", err);
		goto out;
	}
	/* A slow reader is told from a stuck one by the bytes leaving its socket (live.c), so
	 * the block can be large: fewer calls and sends for a fast reader. */
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, api_live_read, l, api_live_done);
	if (r == NULL) {
		api_live_done(l);
		ret = MHD_NO;
		goto out;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
		lo.format == LIVE_PCAPNG ? "application/x-pcapng" : "application/vnd.tcpdump.pcap");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
out:
	for (size_t i = 0; i < q.n_sensors; i++)
		free(q.sensors[i]);
	return ret;
}

/* Dispatch ---------------------------------------------------------------------------- */

enum api_route {
	API_NONE,
	API_EXPORT,
	API_CONNS,
	API_FLOWS,
	API_CONN_PCAP,
	API_FLOW_PCAP,
	API_METRICS,
	API_HEALTHZ,
	API_READYZ,
	API_LIVE,
	API_SENSORS
};

/* GET /api/v1/sensors: the repository's sensors and their interfaces (sensors.h). */
static enum MHD_Result
api_sensors(struct api *a, struct MHD_Connection *c)
{
	char err[512];
	json_t *res = api_sensors_json(a->dir, err, sizeof(err));
	if (res == NULL) {
		log_warnx("api: sensors: %s", err);
		return api_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err);
	}
	return api_json(c, res);
}

/* The endpoint of url; for /api/v1/{conns,flows}/<id>/pcap, <id> as given into id (one
 * too long for idlen is cut and marked with "...", so that it is refused as an id). */
static enum api_route
api_route(const char *url, char *id, size_t idlen)
{
	static const char base[] = "/api/v1/";
	const char *rest, *slash;
	bool flows;

	if (strcmp(url, "/metrics") == 0)
		return API_METRICS;
	if (strcmp(url, "/healthz") == 0)
		return API_HEALTHZ;
	if (strcmp(url, "/readyz") == 0)
		return API_READYZ;
	if (strncmp(url, base, sizeof(base) - 1) != 0)
		return API_NONE;
	rest = url + sizeof(base) - 1;
	if (strcmp(rest, "export") == 0)
		return API_EXPORT;
	if (strcmp(rest, "conns") == 0)
		return API_CONNS;
	if (strcmp(rest, "flows") == 0)
		return API_FLOWS;
	if (strcmp(rest, "live") == 0)
		return API_LIVE;
	if (strcmp(rest, "sensors") == 0)
		return API_SENSORS;
	if (strncmp(rest, "conns/", 6) != 0 && strncmp(rest, "flows/", 6) != 0)
		return API_NONE;
	flows = rest[0] == 'f';
	rest += 6;
	slash = strchr(rest, '/');
	if (slash == NULL || slash == rest || strcmp(slash, "/pcap") != 0)
		return API_NONE;
	if ((size_t)(slash - rest) < idlen)
		snprintf(id, idlen, "%.*s", (int)(slash - rest), rest);
	else
		snprintf(id, idlen, "%.*s...", (int)idlen - 4, rest);
	return flows ? API_FLOW_PCAP : API_CONN_PCAP;
}

static enum MHD_Result
api_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
	const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct api *a = cls;

	enum api_route route;
	char id[32], why[64];

	api_mark_busy(a, c, true);
	route = api_route(url, id, sizeof(id));
	/* Probes carry no secret: liveness and readiness tell nothing else. */
	if (route == API_HEALTHZ || route == API_READYZ) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
			return api_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%.32s: only GET", method);
		return route == API_HEALTHZ ? api_text(c, MHD_HTTP_OK, "ok") : api_readyz(a, c);
	}
	if (!api_authorized(a, c))
		return api_text(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token");
	if (route == API_NONE)
		return api_text(c, MHD_HTTP_NOT_FOUND,
			"%.200s: not found (GET /api/v1/export, /api/v1/conns, /api/v1/flows, "
			"/api/v1/conns/ID/pcap, /api/v1/flows/ID/pcap, /api/v1/live, /api/v1/sensors, "
			"/metrics, "
			"/healthz, /readyz)",
			url);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return api_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%.32s: only GET", method);
	if (route == API_METRICS)
		return api_metrics(a, c);
	if (!api_wait_ready(a, why, sizeof(why)))
		return api_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s", why);
	switch (route) {
	case API_CONNS:
		return api_l4_list(a, c, false);
	case API_FLOWS:
		return api_l4_list(a, c, true);
	case API_CONN_PCAP:
		return api_pcap(a, c, false, id);
	case API_FLOW_PCAP:
		return api_pcap(a, c, true, id);
	case API_LIVE:
		return api_live(a, c);
	case API_SENSORS:
		return api_sensors(a, c);
	default:
		return api_export(a, c);
	}
}

static void
api_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	struct api *a = cls;
	bool ok;

	/* libmicrohttpd logs each refused or broken connection: a flood must not flood the log. */
	pthread_mutex_lock(&a->mu);
	if (!(ok = log_limit_ok(&a->mhd_lim, 5, 30)))
		a->q.quiet++;
	pthread_mutex_unlock(&a->mu);
	if (!ok)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_warnx("api: %s", line);
}

int
api_start(struct api *a, char *err, size_t errlen)
{
	int rc;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
		MHD_USE_ERROR_LOG;

	struct MHD_OptionItem tls[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, a->cert_pem },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, a->key_pem },
		{ MHD_OPTION_END, 0, NULL },
	};

	if (a->cert_pem != NULL)
		flags |= MHD_USE_TLS;
	else
		tls[0].option = MHD_OPTION_END;
	/* libmicrohttpd's own limits are a backstop twice ours: a shed connection holds its
	 * slot there until its thread has gone. */
	a->d = MHD_start_daemon(flags, 0, NULL, NULL, api_on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
		api_on_mhd_log, a, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)a->fd, MHD_OPTION_CONNECTION_LIMIT,
		2 * a->o.max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 2 * a->o.max_conns_per_source,
		MHD_OPTION_CONNECTION_TIMEOUT, a->o.idle_timeout_s, MHD_OPTION_NOTIFY_CONNECTION,
		api_on_connection, a, MHD_OPTION_NOTIFY_COMPLETED, api_on_completed, a, MHD_OPTION_ARRAY, tls,
		MHD_OPTION_END);
	if (a->d == NULL) {
		snprintf(err, errlen, "api.listen: cannot start the HTTP server (see above)");
		return -1;
	}
	if ((rc = pthread_create(&a->guard, NULL, api_guard, a)) != 0) {
		snprintf(err, errlen, "api: cannot start the connection guard: %s", strerror(rc));
		return -1;
	}
	a->guard_running = true;
	return 0;
}
