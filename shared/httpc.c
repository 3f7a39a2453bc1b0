/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/httpc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "shared/hostport.h"
#include "shared/tls.h"

#define HTTPC_TIMEOUT_MS 10000
#define HTTPC_BUF        (64 * 1024)
#define HTTPC_MAX_LINE   64 /* a chunk-size line (with extensions, which are skipped) */

enum httpc_framing {
	HTTPC_CLOSE,   /* the body ends with the connection */
	HTTPC_LENGTH,  /* Content-Length */
	HTTPC_CHUNKED, /* Transfer-Encoding: chunked (RFC 9112 7.1) */
};

struct httpc {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char head[HTTPC_MAX_HEAD + 1]; /* the response head, headers split at NULs */
	size_t head_len;
	enum httpc_framing framing;
	uint64_t left; /* body bytes left (LENGTH) or of this chunk (CHUNKED) */
	bool in_chunk, done;
	/* Bytes read past what was consumed. */
	uint8_t buf[HTTPC_BUF];
	size_t off, len;
	char err[256];
};

const char *
httpc_error(const struct httpc *h)
{
	return h->err;
}

static int httpc_fail(struct httpc *h, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
httpc_fail(struct httpc *h, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->err, sizeof(h->err), fmt, ap);
	va_end(ap);
	return rc;
}

/* Reads more bytes into buf (which the caller emptied). >0, 0 at the end, -errno. */
static ssize_t
httpc_fill(struct httpc *h, int timeout_ms)
{
	if (timeout_ms >= 0 && (!h->ssl || SSL_pending(h->ssl) == 0)) {
		struct pollfd p = { .fd = h->fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r < 0)
			return -errno;
		if (r == 0)
			return httpc_fail(h, -ETIMEDOUT, "%s", "no response in time");
	}
	ssize_t n;
	if (h->ssl) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_read(h->ssl, h->buf + h->len, (int)(sizeof(h->buf) - h->len));
		if (r > 0) {
			n = r;
		} else {
			int e = SSL_get_error(h->ssl, r);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_SYSCALL && errno == EINTR)
				return -EINTR;
			if (e == SSL_ERROR_SYSCALL && errno == 0)
				return 0; /* closed without close_notify: the end, as far as framing says */
			char tmp[200];
			return httpc_fail(h, -EIO, "TLS: %s", tls_errors(tmp, sizeof(tmp)));
		}
	} else {
		n = read(h->fd, h->buf + h->len, sizeof(h->buf) - h->len);
		if (n < 0)
			return -errno;
	}
	h->len += (size_t)n;
	return n;
}

static int
httpc_send(struct httpc *h, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;
		if (h->ssl) {
			int r = SSL_write(h->ssl, p, (int)n);
			if (r <= 0) {
				char tmp[200];
				return httpc_fail(h, -EIO, "TLS: %s", tls_errors(tmp, sizeof(tmp)));
			}
			w = r;
		} else {
			w = send(h->fd, p, n, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return httpc_fail(h, -errno, "send: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
httpc_connect(struct httpc *h, const struct httpc_opts *o, const struct hostport *hp, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai, *a;
	int rc = getaddrinfo(hp->host, hp->port, &hints, &ai), last = ECONNREFUSED;
	if (rc != 0) {
		snprintf(h->err, sizeof(h->err), "%s: %s", o->hostport, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	for (a = ai; a && h->fd < 0; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		int cr = connect(fd, a->ai_addr, a->ai_addrlen);
		if (cr != 0 && errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			socklen_t sl = sizeof(last);
			if (poll(&p, 1, timeout_ms) == 1 &&
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &last, &sl) == 0 && last == 0)
				h->fd = fd;
			else if (last == 0)
				last = ETIMEDOUT;
		} else if (cr == 0) {
			h->fd = fd;
		} else {
			last = errno;
		}
		if (h->fd != fd)
			close(fd);
	}
	freeaddrinfo(ai);
	if (h->fd < 0) {
		snprintf(h->err, sizeof(h->err), "connect to %s: %s", o->hostport, strerror(last));
		return -last;
	}
	/* Blocking from here: reads of a quiet stream wait, SIGINT interrupts them. */
	int fl = fcntl(h->fd, F_GETFL);
	fcntl(h->fd, F_SETFL, fl & ~O_NONBLOCK);
	return 0;
}

static int
httpc_tls(struct httpc *h, const struct httpc_opts *o, const char *host)
{
	char tmp[200];
	if (!(h->ctx = SSL_CTX_new(TLS_client_method())))
		return httpc_fail(h, -ENOMEM, "TLS: %s", tls_errors(tmp, sizeof(tmp)));
	SSL_CTX_set_min_proto_version(h->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(h->ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca && *o->ca ? SSL_CTX_load_verify_locations(h->ctx, o->ca, NULL) != 1
			    : SSL_CTX_set_default_verify_paths(h->ctx) != 1) {
		snprintf(h->err, sizeof(h->err), "CA %s: %s", o->ca && *o->ca ? o->ca : "(system)",
			tls_errors(tmp, sizeof(tmp)));
		return -EINVAL;
	}
	if (o->cert && *o->cert &&
		(SSL_CTX_use_certificate_chain_file(h->ctx, o->cert) != 1 ||
			SSL_CTX_use_PrivateKey_file(
				h->ctx, o->key && *o->key ? o->key : o->cert, SSL_FILETYPE_PEM) != 1)) {
		snprintf(h->err, sizeof(h->err), "client certificate %s: %s", o->cert,
			tls_errors(tmp, sizeof(tmp)));
		return -EINVAL;
	}
	if (!(h->ssl = SSL_new(h->ctx)) || SSL_set_fd(h->ssl, h->fd) != 1 ||
		tls_client_expect(h->ssl, host) != 0)
		return httpc_fail(h, -ENOMEM, "TLS: %s", tls_errors(tmp, sizeof(tmp)));
	if (SSL_connect(h->ssl) != 1) {
		const char *why = SSL_get_verify_result(h->ssl) != X509_V_OK ? tls_verify_reason(h->ssl)
									     : tls_errors(tmp, sizeof(tmp));
		return httpc_fail(h, -ECONNREFUSED, "TLS handshake: %s", why);
	}
	return 0;
}

/* Reads the response head into h->head; leaves body bytes in buf. */
static int
httpc_read_head(struct httpc *h, int timeout_ms)
{
	for (;;) {
		void *end = memmem(h->buf, h->len, "\r\n\r\n", 4);
		if (end) {
			size_t n = (size_t)((uint8_t *)end - h->buf) + 4;
			if (n > HTTPC_MAX_HEAD)
				break;
			memcpy(h->head, h->buf, n);
			h->head[n] = '\0';
			h->head_len = n;
			h->off = n;
			return 0;
		}
		if (h->len >= HTTPC_MAX_HEAD)
			break;
		ssize_t r = httpc_fill(h, timeout_ms);
		if (r < 0)
			return r == -ETIMEDOUT
				? r
				: httpc_fail(h, (int)r, "reading the response: %s", strerror((int)-r));
		if (r == 0)
			return httpc_fail(
				h, -EPROTO, "%s", "connection closed before a complete response head");
	}
	return httpc_fail(h, -EPROTO, "response head larger than %d bytes", HTTPC_MAX_HEAD);
}

const char *
httpc_header(const struct httpc *h, const char *name)
{
	size_t nl = strlen(name);
	const char *p = strstr(h->head, "\r\n");
	while (p && p[2] != '\r') {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			static __thread char val[512];
			const char *v = p + nl + 1, *e = strstr(v, "\r\n");
			while (*v == ' ' || *v == '\t')
				v++;
			size_t n = e ? (size_t)(e - v) : strlen(v);
			while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
				n--;
			snprintf(val, sizeof(val), "%.*s", (int)n, v);
			return val;
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

static int
httpc_parse_head(struct httpc *h, int *status)
{
	int maj, min, st;
	if (sscanf(h->head, "HTTP/%d.%d %3d", &maj, &min, &st) != 3 || maj != 1 || st < 100 || st > 599)
		return httpc_fail(h, -EPROTO, "not an HTTP/1.x response: '%.40s'", h->head);
	*status = st;
	const char *te = httpc_header(h, "Transfer-Encoding");
	const char *cl = httpc_header(h, "Content-Length");
	if (te && strcasecmp(te, "chunked") == 0) {
		h->framing = HTTPC_CHUNKED;
	} else if (te) {
		return httpc_fail(h, -EPROTO, "unsupported Transfer-Encoding '%.60s'", te);
	} else if (cl) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(cl, &end, 10);
		if (errno || end == cl || *end || !isdigit((unsigned char)cl[0]))
			return httpc_fail(h, -EPROTO, "bad Content-Length '%.60s'", cl);
		h->framing = HTTPC_LENGTH;
		h->left = v;
		h->done = v == 0;
	} else {
		h->framing = HTTPC_CLOSE;
	}
	return 0;
}

struct httpc *
httpc_get(const struct httpc_opts *o, const char *path, int *status, char *err, size_t errlen)
{
	struct hostport hp;
	struct httpc *h;
	int timeout = o->timeout_ms ? (int)o->timeout_ms : HTTPC_TIMEOUT_MS, rc;
	char req[8192];

	if (hostport_parse(o->hostport, 0, "--api", &hp, err, errlen) != 0)
		return NULL;
	if (!(h = calloc(1, sizeof(*h)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fd = -1;
	bool v6 = strchr(hp.host, ':') != NULL;
	int n = snprintf(req, sizeof(req),
		"GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: pcapline/%s\r\nAccept: */*\r\n%s%s%s"
		"Connection: close\r\n\r\n",
		path, v6 ? "[" : "", hp.host, v6 ? "]" : "", hp.port, PCAPLINE_VERSION,
		o->token && *o->token ? "Authorization: Bearer " : "", o->token && *o->token ? o->token : "",
		o->token && *o->token ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(req)) {
		snprintf(err, errlen, "request longer than %zu bytes (a filter that long?)", sizeof(req));
		goto fail;
	}
	if ((rc = httpc_connect(h, o, &hp, timeout)) != 0 ||
		(o->tls && (rc = httpc_tls(h, o, hp.host)) != 0) ||
		(rc = httpc_send(h, req, (size_t)n)) != 0 || (rc = httpc_read_head(h, timeout)) != 0 ||
		(rc = httpc_parse_head(h, status)) != 0) {
		snprintf(err, errlen, "%s", h->err);
		goto fail;
	}
	return h;
fail:
	httpc_free(h);
	return NULL;
}

/* The next chunk's size line (RFC 9112 7.1): hex digits, extensions skipped. */
static int
httpc_chunk_line(struct httpc *h)
{
	for (;;) {
		uint8_t *p = h->buf + h->off, *nl = memchr(p, '\n', h->len - h->off);
		if (nl) {
			uint64_t v = 0;
			int digits = 0;
			for (uint8_t *q = p; q < nl && isxdigit(*q); q++, digits++) {
				if (digits == 15)
					return httpc_fail(h, -EPROTO, "%s", "chunk size too large");
				v = v * 16 + (uint64_t)(isdigit(*q) ? *q - '0' : (tolower(*q) - 'a' + 10));
			}
			if (digits == 0)
				return httpc_fail(h, -EPROTO, "%s", "malformed chunk size line");
			h->off = (size_t)(nl - h->buf) + 1;
			h->left = v;
			return 0;
		}
		if (h->len - h->off > HTTPC_MAX_LINE)
			return httpc_fail(h, -EPROTO, "%s", "chunk size line too long");
		memmove(h->buf, h->buf + h->off, h->len - h->off);
		h->len -= h->off;
		h->off = 0;
		ssize_t r = httpc_fill(h, -1);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return httpc_fail(h, -EPROTO, "%s", "connection closed inside the chunked body");
	}
}

/* Drops n bytes that must be there (a chunk's CRLF); reads them if needed. */
static int
httpc_skip_crlf(struct httpc *h)
{
	while (h->len - h->off < 2) {
		memmove(h->buf, h->buf + h->off, h->len - h->off);
		h->len -= h->off;
		h->off = 0;
		ssize_t r = httpc_fill(h, -1);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return httpc_fail(h, -EPROTO, "%s", "connection closed inside the chunked body");
	}
	if (h->buf[h->off] != '\r' || h->buf[h->off + 1] != '\n')
		return httpc_fail(h, -EPROTO, "%s", "chunk not followed by CRLF");
	h->off += 2;
	return 0;
}

ssize_t
httpc_read(struct httpc *h, void *out, size_t max)
{
	int rc;
	if (h->done || max == 0)
		return 0;
	if (h->framing == HTTPC_CHUNKED && !h->in_chunk) {
		if ((rc = httpc_chunk_line(h)) != 0)
			return rc;
		if (h->left == 0) {
			h->done = true; /* trailers, if any, are not read: the connection closes */
			return 0;
		}
		h->in_chunk = true;
	}
	if (h->off == h->len) {
		h->off = h->len = 0;
		ssize_t r = httpc_fill(h, -1);
		if (r < 0)
			return r;
		if (r == 0) {
			if (h->framing == HTTPC_CLOSE) {
				h->done = true;
				return 0;
			}
			return httpc_fail(h, -EPROTO, "%s", "connection closed before the end of the body");
		}
	}
	size_t n = h->len - h->off;
	if (n > max)
		n = max;
	if (h->framing != HTTPC_CLOSE && n > h->left)
		n = (size_t)h->left;
	memcpy(out, h->buf + h->off, n);
	h->off += n;
	if (h->framing != HTTPC_CLOSE) {
		h->left -= n;
		if (h->left == 0) {
			if (h->framing == HTTPC_LENGTH) {
				h->done = true;
			} else {
				h->in_chunk = false;
				if ((rc = httpc_skip_crlf(h)) != 0)
					return rc;
			}
		}
	}
	return (ssize_t)n;
}

void
httpc_free(struct httpc *h)
{
	if (!h)
		return;
	if (h->ssl)
		SSL_free(h->ssl);
	if (h->ctx)
		SSL_CTX_free(h->ctx);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

int
httpc_query_escape(char *out, size_t outlen, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool keep = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
		if (n + (keep ? 1 : 3) >= outlen)
			return -ENOSPC;
		if (keep) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	return 0;
}
