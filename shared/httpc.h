/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A small HTTP/1.1 GET client for streaming responses (`pcapline live` reading GET
 * /api/v1/live): plain HTTP or HTTPS (server verified against a CA file, or the system's
 * CAs, and its name; optional client certificate), an optional bearer token, a body
 * framed by chunked transfer coding, Content-Length or the end of the connection.
 *
 * Limits: a response head of at most HTTPC_MAX_HEAD bytes; a chunk-size line of at most
 * 64 bytes. Anything else about the response is a protocol error (-EPROTO) naming the
 * problem in httpc_error().
 */
#ifndef PCAPLINE_SHARED_HTTPC_H
#define PCAPLINE_SHARED_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTPC_MAX_HEAD (16 * 1024)

struct httpc_opts {
	const char *hostport; /* "host:port" or "[v6]:port" */
	bool tls;             /* https */
	const char *ca;       /* PEM CA file for the server's certificate, NULL: the system's */
	const char *cert;     /* PEM client certificate, NULL: none */
	const char *key;      /* its key */
	const char *token;    /* "Authorization: Bearer <token>", NULL or "": none */
	unsigned timeout_ms;  /* connecting and reading the response head (0: 10 s) */
};

struct httpc;

/*
 * Connects, sends "GET path" and reads the response head. Returns the connection with
 * *status set (whatever it is: the caller reads the body of an error too), or NULL with
 * a one-line message in err.
 */
struct httpc *httpc_get(const struct httpc_opts *o, const char *path, int *status, char *err, size_t errlen);
/* A header of the response (case-insensitive name), NULL if absent. Borrowed. */
const char *httpc_header(const struct httpc *h, const char *name);
/*
 * Reads up to max body bytes, blocking without a time limit (a live stream may be quiet
 * for long). Returns the count, 0 at the end of the body, or -errno (-EINTR when a
 * signal came, -EPROTO for a malformed response, see httpc_error()).
 */
ssize_t httpc_read(struct httpc *h, void *buf, size_t max);
/* Why the last call failed. */
const char *httpc_error(const struct httpc *h);
void httpc_free(struct httpc *h);

/* Appends s to out percent-encoded for a query value (RFC 3986 unreserved kept).
 * Returns 0 or -ENOSPC. */
int httpc_query_escape(char *out, size_t outlen, const char *s);

#endif
