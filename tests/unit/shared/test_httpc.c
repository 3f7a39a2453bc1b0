/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/httpc.c against a real loopback server thread that answers one
 * canned response, written in small pieces so that every framing boundary (head, chunk
 * size line, chunk data, CRLF) falls between two reads: chunked, Content-Length and
 * close-delimited bodies come out byte-exact, an error status keeps its body, and a
 * broken or hostile response is an error naming the problem, never a hang or a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/httpc.h"

struct server {
	int lfd;
	unsigned port;
	const char *resp;
	size_t resp_len;
	size_t piece; /* bytes per write */
	char req[4096];
	pthread_t th;
};

static void *
server_main(void *arg)
{
	struct server *s = arg;
	int fd = accept(s->lfd, NULL, NULL), one = 1;
	size_t got = 0;

	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (got < sizeof(s->req) - 1 && !strstr(s->req, "\r\n\r\n")) {
		ssize_t n = read(fd, s->req + got, sizeof(s->req) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		s->req[got] = '\0';
	}
	for (size_t off = 0; off < s->resp_len;) {
		size_t n = s->resp_len - off < s->piece ? s->resp_len - off : s->piece;
		if (write(fd, s->resp + off, n) != (ssize_t)n)
			break;
		off += n;
		usleep(200); /* separate segments: each piece a read of its own */
	}
	close(fd);
	return NULL;
}

static void
server_start(struct server *s, const char *resp, size_t len, size_t piece)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->resp = resp;
	s->resp_len = len;
	s->piece = piece;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 1), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void
server_stop(struct server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
}

/* GETs /x from s with a token; the body (up to cap bytes) into out. Returns the last
 * httpc_read() result (0 at a clean end) and the status in *status. */
static ssize_t
fetch(struct server *s, int *status, char *out, size_t cap, size_t *got, char *err)
{
	char hp[32];
	struct httpc_opts o = { .hostport = hp, .token = "t0k", .timeout_ms = 5000 };
	struct httpc *h;
	ssize_t n = 0;

	snprintf(hp, sizeof(hp), "127.0.0.1:%u", s->port);
	*got = 0;
	h = httpc_get(&o, "/x?y=1", status, err, 256);
	if (!h)
		return -1;
	while (*got < cap && (n = httpc_read(h, out + *got, cap - *got)) > 0)
		*got += (size_t)n;
	if (n < 0)
		snprintf(err, 256, "%s", httpc_error(h));
	httpc_free(h);
	return n;
}

static void
test_chunked(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"
				   "5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n"
				   "3\r\n\r\n\r\r\n0\r\n\r\n";
	struct server s;
	char out[256], err[256] = "";
	size_t got;
	int status;

	for (size_t piece = 1; piece <= 7; piece += 3) {
		server_start(&s, resp, sizeof(resp) - 1, piece);
		assert_int_equal(fetch(&s, &status, out, sizeof(out), &got, err), 0);
		server_stop(&s);
		assert_int_equal(status, 200);
		assert_int_equal(got, 5 + 26 + 3);
		assert_memory_equal(out, "helloabcdefghijklmnopqrstuvwxyz\r\n\r", got);
		assert_non_null(strstr(s.req, "GET /x?y=1 HTTP/1.1\r\n"));
		assert_non_null(strstr(s.req, "\r\nAuthorization: Bearer t0k\r\n"));
		assert_non_null(strstr(s.req, "\r\nHost: 127.0.0.1:"));
	}
}

static void
test_length_and_close(void **state)
{
	static const char len_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA";
	static const char close_resp[] = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
	struct server s;
	char out[64], err[256] = "";
	size_t got;
	int status;

	server_start(&s, len_resp, sizeof(len_resp) - 1, 3);
	assert_int_equal(fetch(&s, &status, out, sizeof(out), &got, err), 0);
	server_stop(&s);
	assert_int_equal(got, 4);
	assert_memory_equal(out, "abcd", 4);

	server_start(&s, close_resp, sizeof(close_resp) - 1, 2);
	assert_int_equal(fetch(&s, &status, out, sizeof(out), &got, err), 0);
	server_stop(&s);
	assert_int_equal(got, 13);
	assert_memory_equal(out, "until the end", 13);
}

static void
test_error_status_keeps_body(void **state)
{
	static const char resp[] = "HTTP/1.1 400 Bad Request\r\ncontent-length: 44\r\n\r\n"
				   "filter: can't parse filter expression: x\r\n\r\n";
	struct server s;
	char out[64], err[256] = "";
	size_t got;
	int status;

	server_start(&s, resp, sizeof(resp) - 1, 1000);
	assert_int_equal(fetch(&s, &status, out, sizeof(out), &got, err), 0);
	server_stop(&s);
	assert_int_equal(status, 400);
	assert_int_equal(got, 44);
	assert_memory_equal(out, "filter: can't parse", 19);
}

static void
expect_error(const char *resp, size_t len, bool at_head, const char *msg)
{
	struct server s;
	char out[64], err[256] = "";
	size_t got;
	int status = 0;
	ssize_t rc;

	server_start(&s, resp, len, 5);
	rc = fetch(&s, &status, out, sizeof(out), &got, err);
	server_stop(&s);
	if (at_head)
		assert_int_equal(rc, -1);
	else
		assert_int_equal(rc, -EPROTO);
	if (!strstr(err, msg))
		fail_msg("got '%s', want '%s'", err, msg);
}

static void
test_broken_responses(void **state)
{
	static const char cut[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
	static const char cut2[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
	static const char badsize[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
	static const char hugesize[] =
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
	static const char nocrlf[] =
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n";
	static const char shortlen[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
	static const char notttp[] = "SSH-2.0-OpenSSH\r\n\r\n";
	static const char gzip[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
	static const char badlen[] = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
	static const char nohead[] = "HTTP/1.1 200 OK\r\n";

	expect_error(cut, sizeof(cut) - 1, false, "closed before the end of the body");
	expect_error(cut2, sizeof(cut2) - 1, false, "closed inside the chunked body");
	expect_error(badsize, sizeof(badsize) - 1, false, "malformed chunk size");
	expect_error(hugesize, sizeof(hugesize) - 1, false, "chunk size too large");
	expect_error(nocrlf, sizeof(nocrlf) - 1, false, "not followed by CRLF");
	expect_error(shortlen, sizeof(shortlen) - 1, false, "before the end of the body");
	expect_error(notttp, sizeof(notttp) - 1, true, "not an HTTP/1.x response");
	expect_error(gzip, sizeof(gzip) - 1, true, "unsupported Transfer-Encoding");
	expect_error(badlen, sizeof(badlen) - 1, true, "bad Content-Length");
	expect_error(nohead, sizeof(nohead) - 1, true, "before a complete response head");
}

static void
test_huge_head(void **state)
{
	size_t n = HTTPC_MAX_HEAD + 4096;
	char *resp = malloc(n);

	assert_non_null(resp);
	memcpy(resp, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(resp + 20, 'a', n - 20);
	expect_error(resp, n, true, "response head larger than 16384 bytes");
	free(resp);
}

static void
test_connect_refused_and_bad_address(void **state)
{
	struct server s;
	char hp[32], err[256] = "";
	int status;

	server_start(&s, "", 0, 1);
	close(s.lfd); /* nobody listens there now */
	s.lfd = -1;
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", s.port);
	struct httpc_opts o = { .hostport = hp, .timeout_ms = 2000 };
	assert_null(httpc_get(&o, "/", &status, err, sizeof(err)));
	if (!strstr(err, "connect to 127.0.0.1:") || !strstr(err, "refused"))
		fail_msg("got '%s'", err);
	pthread_cancel(s.th);
	pthread_join(s.th, NULL);
	o.hostport = "127.0.0.1:99999";
	assert_null(httpc_get(&o, "/", &status, err, sizeof(err)));
	assert_non_null(strstr(err, "--api"));
}

static void
test_query_escape(void **state)
{
	char out[64] = "filter=";

	assert_int_equal(httpc_query_escape(out, sizeof(out), "tcp port 80 && host 198.18.0.1/x"), 0);
	assert_string_equal(out, "filter=tcp%20port%2080%20%26%26%20host%20198.18.0.1%2Fx");
	char small[8] = "";
	assert_int_equal(httpc_query_escape(small, sizeof(small), "a b c"), -ENOSPC);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_length_and_close),
		cmocka_unit_test(test_error_status_keeps_body),
		cmocka_unit_test(test_broken_responses),
		cmocka_unit_test(test_huge_head),
		cmocka_unit_test(test_connect_refused_and_bad_address),
		cmocka_unit_test(test_query_escape),
	};
	/* The client may close before the server wrote everything (a body it has ended). */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
