/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The receiver's HTTP API (see api.h). A request is answered on its connection's thread;
 * an export runs on a worker thread of its own writing the archive into a pipe whose read
 * end libmicrohttpd streams to the client (chunked), so memory stays flat and a client
 * that goes away ends the export with EPIPE. An export that fails after the 200 went out
 * ends the connection without the closing chunk, so the client sees a broken transfer
 * rather than a short archive.
 */
#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
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

#include "bundle.h"
#include "fsutil.h"
#include "log.h"
#include "repo.h"
#include "timearg.h"

#define API_MAX_PEM (1 << 20)
#define API_MAX_SENSORS 1024
#define API_TIMEOUT_S 60

struct api {
	int fd;                       /* bound listening socket until the daemon owns it */
	struct MHD_Daemon *d;
	char *dir;
	unsigned char token_sha[SHA256_DIGEST_LENGTH];
	bool has_token;
	char *cert_pem, *key_pem;
};

/* The parameters of one export request. */
struct api_export_req {
	const char *from, *to, *filter;
	char *sensors[API_MAX_SENSORS];
	size_t n_sensors;
	char err[256];                /* the first problem, naming the parameter */
};

/* One export, shared by its worker (the writer) and its response (the reader); freed by
 * whichever lets go last. */
struct api_job {
	atomic_int refs;
	atomic_bool ok;               /* the worker finished the archive */
	int rfd;                      /* pipe read end, the response's */
	struct bundle_opts o;         /* o.out_fd: the write end, the worker's */
	struct bundle_sensor *bs;
	size_t n;
	char *filter;
	char *dir;
};

static int api_split(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;

	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');
		if (!rb || rb[1] != ':')
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(rb - addr - 1), addr + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
	}
	if (colon[1] == '\0')
		return -1;
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

static struct addrinfo *api_resolve(const char *listen, char *err, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai;
	int rc;

	if (api_split(listen, host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(err, errlen, "api.listen: '%s' is not host:port", listen);
		return NULL;
	}
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "api.listen: %s: %s", listen, gai_strerror(rc));
		return NULL;
	}
	return ai;
}

bool api_listen_is_loopback(const char *listen)
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
static char *api_read_pem(const char *key, const char *path, char *err, size_t errlen)
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
			snprintf(err, errlen, "%s: %s: %s", key, path, r < 0 ? strerror(errno) : "short read");
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

static void api_wipe_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void api_free(struct api *a)
{
	if (a == NULL)
		return;
	if (a->d != NULL)
		MHD_stop_daemon(a->d);     /* closes the listening socket too */
	else if (a->fd >= 0)
		close(a->fd);
	api_wipe_free(a->key_pem);
	free(a->cert_pem);
	free(a->dir);
	OPENSSL_cleanse(a->token_sha, sizeof(a->token_sha));
	free(a);
}

struct api *api_new(const struct api_opts *o, char *err, size_t errlen)
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
	if ((o->cert[0] == '\0') != (o->key[0] == '\0')) {
		snprintf(err, errlen, "api.cert and api.key: give both or neither");
		goto fail;
	}
	if (!api_listen_is_loopback(o->listen) && (o->token[0] == '\0' || !tls)) {
		snprintf(err, errlen, "api.listen: %s is not a loopback address: api.token, api.cert and "
			 "api.key are required", o->listen);
		goto fail;
	}
	if (tls && !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
		snprintf(err, errlen, "api.cert: this libmicrohttpd has no TLS support");
		goto fail;
	}
	if (tls && ((a->cert_pem = api_read_pem("api.cert", o->cert, err, errlen)) == NULL ||
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

/* Responses -------------------------------------------------------------------------- */

static enum MHD_Result api_text(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result api_text(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
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
static bool api_authorized(const struct api *a, struct MHD_Connection *c)
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

/* Export ----------------------------------------------------------------------------- */

static enum MHD_Result api_on_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct api_export_req *q = cls;

	if (q->err[0] != '\0')
		return MHD_NO;
	if (value == NULL)
		value = "";
	if (strcmp(key, "from") == 0 || strcmp(key, "to") == 0 || strcmp(key, "filter") == 0) {
		const char **slot = key[0] == 'f' && key[1] == 'r' ? &q->from : key[0] == 't' ? &q->to : &q->filter;
		if (*slot != NULL)
			snprintf(q->err, sizeof(q->err), "%s: given twice", key);
		*slot = value;
	} else if (strcmp(key, "sensor") == 0) {
		char *copy = strdup(value), *save = NULL, *tok;

		if (copy == NULL) {
			snprintf(q->err, sizeof(q->err), "out of memory");
			return MHD_NO;
		}
		for (tok = strtok_r(copy, ",", &save); tok != NULL && q->err[0] == '\0'; tok = strtok_r(NULL, ",", &save)) {
			bool dup = false;

			if (!fsu_name_ok(tok)) {
				snprintf(q->err, sizeof(q->err), "sensor: '%.64s' is not a sensor id (letters, digits, '.', '_', '-')", tok);
				break;
			}
			for (size_t i = 0; i < q->n_sensors; i++)
				dup |= strcmp(q->sensors[i], tok) == 0;
			if (dup)
				continue;
			if (q->n_sensors == API_MAX_SENSORS) {
				snprintf(q->err, sizeof(q->err), "sensor: more than %d", API_MAX_SENSORS);
				break;
			}
			if ((q->sensors[q->n_sensors] = strdup(tok)) == NULL) {
				snprintf(q->err, sizeof(q->err), "out of memory");
				break;
			}
			q->n_sensors++;
		}
		free(copy);
	} else {
		snprintf(q->err, sizeof(q->err), "%.64s: unknown parameter (from, to, sensor, filter)", key);
	}
	return q->err[0] == '\0' ? MHD_YES : MHD_NO;
}

/* Checks the filter's syntax up front (for Ethernet), so that a typo is a 400 rather
 * than an archive cut short; the export compiles it again for every link type. */
static int api_check_filter(const char *filter, char *err, size_t errlen)
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

static void api_job_free(struct api_job *j)
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

static void api_job_put(struct api_job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) == 1)
		api_job_free(j);
}

static void *api_export_worker(void *arg)
{
	struct api_job *j = arg;
	char err[1024];

	if (bundle_export(&j->o, j->bs, j->n, err, sizeof(err)) == 0)
		atomic_store(&j->ok, true);
	else
		log_warnx("api: export of [%" PRIu64 ", %" PRIu64 ") cut off: %s", j->o.from_ns, j->o.to_ns, err);
	close(j->o.out_fd);
	j->o.out_fd = -1;
	api_job_put(j);
	return NULL;
}

/* The response body: what the worker wrote. The connection's thread may block here. */
static ssize_t api_export_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct api_job *j = cls;
	ssize_t r;

	do
		r = read(j->rfd, buf, max);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return r;
	return r == 0 && atomic_load(&j->ok) ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void api_export_done(void *cls)
{
	struct api_job *j = cls;

	close(j->rfd);
	j->rfd = -1;
	api_job_put(j);
}

/* The sensors and segments of the window, into the job. 400 or 500 on failure. */
static unsigned int api_collect(const struct api *a, struct api_export_req *q, struct api_job *j, char *err,
				size_t errlen)
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

static enum MHD_Result api_export(struct api *a, struct MHD_Connection *c)
{
	struct api_export_req q = {0};
	struct api_job *j = NULL;
	char err[1024];
	uint64_t now = timearg_now();
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
	if (q.from == NULL || timearg_parse(q.from, now, &j->o.from_ns) != 0) {
		snprintf(err, sizeof(err), "from: %s (RFC 3339, Unix seconds, or now-5m)", q.from ? "not a time" : "required");
		goto fail;
	}
	if (q.to == NULL || timearg_parse(q.to, now, &j->o.to_ns) != 0) {
		snprintf(err, sizeof(err), "to: %s (RFC 3339, Unix seconds, or now-5m)", q.to ? "not a time" : "required");
		goto fail;
	}
	if (j->o.from_ns >= j->o.to_ns || j->o.to_ns > (uint64_t)INT64_MAX) {
		snprintf(err, sizeof(err), "to: must be after from (the window is [from, to)) and before 2262");
		goto fail;
	}
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
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, api_export_read, j, api_export_done);
	if (r == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, api_export_worker, j) != 0) {
		pthread_attr_destroy(&attr);
		close(j->o.out_fd);          /* the response's reader sees a failed end */
		j->o.out_fd = -1;
		api_job_put(j);
		MHD_destroy_response(r);
		return api_text(c, status, "cannot start the export thread");
	}
	pthread_attr_destroy(&attr);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/gzip");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
				"attachment; filename=\"pcapline-export.tar.gz\"");
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

/* Dispatch ---------------------------------------------------------------------------- */

static enum MHD_Result api_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				      const char *version, const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct api *a = cls;

	if (!api_authorized(a, c))
		return api_text(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token");
	if (strcmp(url, "/api/v1/export") != 0)
		return api_text(c, MHD_HTTP_NOT_FOUND, "%.200s: not found (GET /api/v1/export)", url);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return api_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%.32s: only GET", method);
	return api_export(a, c);
}

static void api_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_warnx("api: %s", line);
}

int api_start(struct api *a, char *err, size_t errlen)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
			     MHD_USE_ERROR_LOG;

	struct MHD_OptionItem tls[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, a->cert_pem},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, a->key_pem},
		{MHD_OPTION_END, 0, NULL},
	};

	if (a->cert_pem != NULL)
		flags |= MHD_USE_TLS;
	else
		tls[0].option = MHD_OPTION_END;
	a->d = MHD_start_daemon(flags, 0, NULL, NULL, api_on_request, a,
				MHD_OPTION_EXTERNAL_LOGGER, api_on_mhd_log, NULL,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)a->fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_MAX_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_TIMEOUT_S,
				MHD_OPTION_ARRAY, tls,
				MHD_OPTION_END);
	if (a->d == NULL) {
		snprintf(err, errlen, "api.listen: cannot start the HTTP server (see above)");
		return -1;
	}
	return 0;
}
