/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The sensor's metrics endpoint (see promhttp.h). A connection reads its request into a
 * fixed buffer until the blank line that ends the headers, answers from one buffer
 * written as the socket takes it, and closes. Requests have no body here, so anything
 * after the headers is ignored.
 */
#include "sensor/promhttp.h"

#include <errno.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/hostport.h"
#include "shared/log.h"

struct promhttp_conn {
	struct promhttp *h;
	int fd;
	ev_io io;
	ev_timer timer;
	char req[PROMHTTP_MAX_REQUEST];
	size_t req_len;
	struct promtext out; /* the answer, headers included, once the request is in */
	size_t out_off;
	bool in_use;
};

struct promhttp {
	int fd;
	struct ev_loop *loop;
	ev_io lio;
	promhttp_render_fn *render;
	void *arg;
	struct promhttp_conn conns[PROMHTTP_MAX_CONNS];
	struct promhttp_stats st;
};

struct promhttp *
promhttp_new(const char *addr, promhttp_render_fn *render, void *arg, char *err, size_t errlen)
{
	struct hostport hp;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
	struct promhttp *h;
	int rc, one = 1;

	if (hostport_parse(addr, HOSTPORT_LISTEN, "metrics.listen", &hp, err, errlen) != 0)
		return NULL;
	if ((rc = getaddrinfo(*hp.host ? hp.host : NULL, hp.port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "metrics.listen: %s: %s", addr, gai_strerror(rc));
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->render = render;
	h->arg = arg;
	h->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd >= 0)
		setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (h->fd < 0 || bind(h->fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(h->fd, 16) != 0) {
		snprintf(err, errlen, "metrics.listen: %s: %s", addr, strerror(errno));
		freeaddrinfo(ai);
		if (h->fd >= 0)
			close(h->fd);
		free(h);
		return NULL;
	}
	freeaddrinfo(ai);
	return h;
}

static void
promhttp_close(struct promhttp_conn *c)
{
	ev_io_stop(c->h->loop, &c->io);
	ev_timer_stop(c->h->loop, &c->timer);
	close(c->fd);
	promtext_fini(&c->out);
	c->in_use = false;
}

/* Writes what the socket takes; closes when all went out or the peer is gone. */
static void
promhttp_write(struct promhttp_conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* the io watcher waits for EV_WRITE */
		if (n <= 0) {
			c->h->st.dropped++;
			promhttp_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	c->h->st.served++;
	promhttp_close(c);
}

/* Builds the answer for the request line in c->req and starts writing it. */
static void
promhttp_answer(struct promhttp_conn *c)
{
	struct promtext body = { 0 };
	bool get = strncmp(c->req, "GET ", 4) == 0, head_only = strncmp(c->req, "HEAD ", 5) == 0;
	const char *path = c->req + (get ? 4 : head_only ? 5 : 0);
	size_t plen = strcspn(path, " \r\n");
	const char *status = "200 OK", *text = NULL, *allow = "";
	char head[256];
	int n;

	if (!get && !head_only) {
		status = "405 Method Not Allowed";
		allow = "Allow: GET\r\n";
		text = "only GET\n";
	} else if (plen == 8 && memcmp(path, "/metrics", 8) == 0) {
		c->h->render(c->h->arg, &body);
		if (body.oom) {
			status = "500 Internal Server Error";
			text = "out of memory\n";
		}
	} else if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
		text = "ok\n";
	} else {
		status = "404 Not Found";
		text = "not found (GET /metrics, /healthz)\n";
	}
	size_t blen = text != NULL ? strlen(text) : body.len;
	n = snprintf(head, sizeof(head),
		"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
		status, text != NULL ? "text/plain; charset=utf-8" : PROMTEXT_CONTENT_TYPE, blen, allow);
	/* The answer, headers and body, in one buffer written as the socket takes it. */
	c->out.p = malloc((size_t)n + blen + 1);
	if (c->out.p == NULL) {
		promtext_fini(&body);
		c->h->st.dropped++;
		promhttp_close(c);
		return;
	}
	memcpy(c->out.p, head, (size_t)n);
	c->out.len = (size_t)n;
	if (!head_only && blen > 0) {
		memcpy(c->out.p + c->out.len, text != NULL ? text : body.p, blen);
		c->out.len += blen;
	}
	c->out.cap = c->out.len + 1;
	promtext_fini(&body);
	c->out_off = 0;
	ev_io_stop(c->h->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->h->loop, &c->io);
	promhttp_write(c);
}

static void
promhttp_on_conn(struct ev_loop *loop, ev_io *w, int revents)
{
	struct promhttp_conn *c = w->data;

	if (c->out.p != NULL) {
		promhttp_write(c);
		return;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - 1 - c->req_len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			c->h->st.dropped++;
			promhttp_close(c);
			return;
		}
		c->req_len += (size_t)n;
		c->req[c->req_len] = '\0';
		if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
			promhttp_answer(c);
			return;
		}
		if (c->req_len == sizeof(c->req) - 1) {
			/* Headers larger than any scraper sends: not worth an answer. */
			c->h->st.dropped++;
			promhttp_close(c);
			return;
		}
	}
}

static void
promhttp_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct promhttp_conn *c = w->data;

	c->h->st.dropped++;
	promhttp_close(c);
}

static void
promhttp_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct promhttp *h = w->data;

	/* A few at a time: the loop has capture to serve. */
	for (int k = 0; k < PROMHTTP_MAX_CONNS; k++) {
		struct promhttp_conn *c = NULL;
		int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or out of descriptors: tried again at the next event */
		for (int i = 0; i < PROMHTTP_MAX_CONNS && c == NULL; i++)
			if (!h->conns[i].in_use)
				c = &h->conns[i];
		if (c == NULL) {
			h->st.refused++;
			close(fd);
			continue;
		}
		memset(c, 0, sizeof(*c));
		c->h = h;
		c->fd = fd;
		c->in_use = true;
		ev_io_init(&c->io, promhttp_on_conn, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, promhttp_on_timeout, PROMHTTP_TIMEOUT_MS / 1000.0, 0.);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
	}
}

bool
promhttp_is_loopback(const struct promhttp *h)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(h->fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	return ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
}

void
promhttp_start(struct promhttp *h, struct ev_loop *loop)
{
	h->loop = loop;
	ev_io_init(&h->lio, promhttp_on_accept, h->fd, EV_READ);
	h->lio.data = h;
	ev_io_start(loop, &h->lio);
}

void
promhttp_stats(const struct promhttp *h, struct promhttp_stats *out)
{
	*out = h->st;
}

void
promhttp_free(struct promhttp *h)
{
	if (h == NULL)
		return;
	if (h->loop != NULL) {
		ev_io_stop(h->loop, &h->lio);
		for (int i = 0; i < PROMHTTP_MAX_CONNS; i++)
			if (h->conns[i].in_use)
				promhttp_close(&h->conns[i]);
	}
	close(h->fd);
	free(h);
}
