/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/api/api.c: the HTTP API started on 127.0.0.1 over a real repository
 * (public captures as segments, index.db, dissected) and queried with a plain socket:
 * the bearer token, routes, methods, parameters and their errors; the connections JSON
 * against tshark's conversations; one connection's packets as a pcap; an export archive
 * read back with libarchive. Also the listen-address checks and what api_new() refuses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <jansson.h>

#include "receiver/api/api.h"
#include "receiver/dissect/dissect.h"
#include "receiver/repo/index.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "shared/tls.h"
#include "tests/unit/testutil.h"

#define PCAPS "tests/data/pcaps"
#define MYSQL "mysql-6-conns-port20130.pcap"
#define RST   "tcp-rst-inject.pcap"
#define TOKEN "s3cret-token"

static char dir[] = "/tmp/pcapline-test-api-XXXXXX";
static char certs[1100];
static char listen_addr[64];
static uint16_t port;
static struct api *api;
static uint64_t total_packets;

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

/* Names a copied segment of sensor s1 on eth0; arg points to its sequence number. */
static const char *
segment_name(void *arg, uint64_t first_ns)
{
	char rel[512];

	snprintf(rel, sizeof(rel),
		"sensors/s1/segments/%020" PRIu64 "-0000000000000001-%" PRIu64 ".0-eth0.pcap", first_ns,
		*(const uint64_t *)arg);
	return at(rel);
}

static void
copy_segment(const char *capture, uint64_t seq)
{
	total_packets += tu_copy_capture(capture, 0, UINT64_MAX, 65535, segment_name, &seq);
}

/* A port free on 127.0.0.1 now (api.listen takes 1..65535, not 0). */
static uint16_t
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int
setup(void **state)
{
	char err[512] = "";
	struct index_reconcile_report rep = { 0 };
	struct dissect *d;

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	assert_int_equal(fsu_mkdirs(at("sensors/s1/segments"), 0755), 0);
	copy_segment(RST, 1);
	copy_segment(MYSQL, 2);
	tu_reconcile(dir, &rep);
	d = dissect_open(dir, NULL, err, sizeof(err));
	assert_non_null(d);
	assert_int_equal(dissect_pending(d, 10), 2);
	dissect_close(d, true);

	snprintf(certs, sizeof(certs), "%s/certs", dir);
	assert_int_equal(tu_certs(certs, NULL), 0);
	/* Bind can lose a race for the port with another process: try a few. */
	for (int tries = 0; tries < 20 && api == NULL; tries++) {
		struct api_opts o = {
			.listen = listen_addr, .token = TOKEN, .cert = "", .key = "", .dir = dir
		};

		port = free_port();
		snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%u", port);
		api = api_new(&o, err, sizeof(err));
	}
	if (api == NULL)
		fail_msg("api_new: %s", err);
	if (api_start(api, err, sizeof(err)) != 0)
		fail_msg("api_start: %s", err);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	api_free(api);
	return fsu_rmtree(dir);
}

struct reply {
	int status;
	char headers[4096];
	uint8_t *body;
	size_t len;
};

/* Sends one raw HTTP/1.0 request and reads the whole answer (the server closes). */
static void
http_raw(const char *request, struct reply *r)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)
	};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	char *end;
	time_t deadline = time(NULL) + 30;

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		assert_true(time(NULL) < deadline);
		if (poll(&p, 1, 1000) <= 0)
			continue;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	buf = realloc(buf, n + 1);
	buf[n] = 0;
	end = strstr((char *)buf, "\r\n\r\n");
	if (end == NULL)
		fail_msg("no HTTP answer: %.200s", buf);
	assert_int_equal(sscanf((char *)buf, "HTTP/1.%*d %d", &r->status), 1);
	snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(end - (char *)buf), buf);
	r->len = n - (size_t)(end + 4 - (char *)buf);
	r->body = malloc(r->len + 1);
	memcpy(r->body, end + 4, r->len);
	r->body[r->len] = 0;
	free(buf);
}

static void
get(const char *path, const char *token, struct reply *r)
{
	char req[2048];

	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
		token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
	http_raw(req, r);
}

static void
expect(const char *path, int status, const char *body_part)
{
	struct reply r;

	get(path, TOKEN, &r);
	if (r.status != status || (body_part && strstr((char *)r.body, body_part) == NULL))
		fail_msg("GET %s: %d %s (want %d, '%s')", path, r.status, r.body, status, body_part);
	free(r.body);
}

static void
test_token(void **state)
{
	struct reply r;

	(void)state;
	get("/api/v1/conns", NULL, &r);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
	assert_string_equal((char *)r.body, "missing or wrong bearer token\n");
	free(r.body);
	get("/api/v1/conns", "s3cret-toke", &r);
	assert_int_equal(r.status, 401);
	free(r.body);
	get("/api/v1/conns", TOKEN "x", &r);
	assert_int_equal(r.status, 401);
	free(r.body);
	/* Nothing is told about routes before the token is right. */
	get("/nowhere", NULL, &r);
	assert_int_equal(r.status, 401);
	free(r.body);
	get("/api/v1/conns", TOKEN, &r);
	assert_int_equal(r.status, 200);
	free(r.body);
}

static void
test_routes_and_methods(void **state)
{
	struct reply r;

	(void)state;
	expect("/", 404, "not found (GET /api/v1/export");
	expect("/api/v1/", 404, "not found");
	expect("/api/v1/conns/", 404, "not found");
	expect("/api/v1/conns/1/pcap/x", 404, "not found");
	expect("/api/v1/connsx", 404, "not found");
	http_raw("POST /api/v1/conns HTTP/1.0\r\nAuthorization: Bearer " TOKEN
		 "\r\nContent-Length: 0\r\n\r\n",
		&r);
	assert_int_equal(r.status, 405);
	assert_non_null(strstr(r.headers, "Allow: GET"));
	free(r.body);
	http_raw("DELETE /api/v1/export HTTP/1.0\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", &r);
	assert_int_equal(r.status, 405);
	free(r.body);
}

static void
test_parameters_refused(void **state)
{
	(void)state;
	expect("/api/v1/conns?limit=0", 400, "limit: '0' is not 1 .. ");
	expect("/api/v1/conns?limit=abc", 400, "limit: 'abc'");
	expect("/api/v1/conns?limit=99999999999999999999999", 400, "limit:");
	expect("/api/v1/conns?bogus=1", 400,
		"bogus: unknown parameter (sensor, from, to, flow, conn, limit)");
	expect("/api/v1/flows?conn=1", 400, "conn: unknown parameter (sensor, from, to, flow, limit)");
	expect("/api/v1/conns?sensor=..", 400, "sensor: '..' is not a sensor id");
	expect("/api/v1/conns?sensor=s1&sensor=s1", 400, "sensor: given twice");
	expect("/api/v1/conns?conn=0", 400, "conn: '0' is not a connection id");
	expect("/api/v1/conns?conn=9223372036854775808", 400, "is not a connection id");
	expect("/api/v1/flows?flow=-1", 400, "flow: '-1' is not a flow id");
	expect("/api/v1/conns?from=0", 400, "to: required");
	expect("/api/v1/conns?from=yesterday&to=now", 400, "from: not a time");
	expect("/api/v1/conns?from=now&to=now-1h", 400, "must be after from");
	expect("/api/v1/conns/abc/pcap", 400, "id: 'abc' is not a connection id");
	expect("/api/v1/conns/123456789012345678901234567890123456789/pcap", 400, "is not a connection id");
	expect("/api/v1/conns/999999/pcap", 404, NULL);
	expect("/api/v1/export", 400, "from: required");
	expect("/api/v1/export?from=0&to=10&from=1", 400, "from: given twice");
	expect("/api/v1/export?from=0&to=now&sensor=a/b", 400, "sensor: 'a/b' is not a sensor id");
	expect("/api/v1/export?from=0&to=now&sensor=nobody", 400, "sensor: no sensor 'nobody'");
}

static json_t *
get_json(const char *path)
{
	struct reply r;
	json_error_t jerr;
	json_t *j;

	get(path, TOKEN, &r);
	if (r.status != 200)
		fail_msg("GET %s: %d %s", path, r.status, r.body);
	assert_non_null(strstr(r.headers, "Content-Type: application/json"));
	j = json_loadb((char *)r.body, r.len, 0, &jerr);
	if (j == NULL)
		fail_msg("GET %s: not JSON: %s", path, jerr.text);
	free(r.body);
	return j;
}

static void
test_conns_and_pcap(void **state)
{
	json_t *all = get_json("/api/v1/conns"), *row, *two, *flows;
	long tcp = tu_cmd_number("tshark -r %s/%s -q -z conv,tcp 2>/dev/null | grep -c '<->'", PCAPS, MYSQL) +
		tu_cmd_number("tshark -r %s/%s -q -z conv,tcp 2>/dev/null | grep -c '<->'", PCAPS, RST);
	uint64_t sum = 0;
	size_t i;

	(void)state;
	assert_true(json_is_array(all));
	assert_int_equal(json_array_size(all), tcp);
	json_array_foreach(all, i, row)
	{
		assert_string_equal(json_string_value(json_object_get(row, "sensor")), "s1");
		assert_string_equal(json_string_value(json_object_get(row, "proto")), "tcp");
		sum += (uint64_t)(json_integer_value(json_object_get(row, "c_pkts")) +
			json_integer_value(json_object_get(row, "s_pkts")));
	}
	/* Every packet of both captures is TCP and in a connection. */
	assert_int_equal(sum, total_packets);
	two = get_json("/api/v1/conns?limit=2&sensor=s1");
	assert_int_equal(json_array_size(two), 2);
	json_decref(two);
	two = get_json("/api/v1/conns?sensor=other");
	assert_int_equal(json_array_size(two), 0);
	json_decref(two);
	flows = get_json("/api/v1/flows");
	assert_true(json_array_size(flows) >= 1);
	json_decref(flows);

	/* One connection's packets: a pcap with exactly its packet count. */
	row = json_array_get(all, 0);
	{
		char path[128];
		struct reply r;
		struct pcapr *p;
		struct pcapf_rec rec;
		int rc = 0;
		uint64_t n = 0,
			 want = (uint64_t)(json_integer_value(json_object_get(row, "c_pkts")) +
				 json_integer_value(json_object_get(row, "s_pkts")));

		snprintf(path, sizeof(path), "/api/v1/conns/%" JSON_INTEGER_FORMAT "/pcap",
			json_integer_value(json_object_get(row, "conn_id")));
		get(path, TOKEN, &r);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.headers, "application/vnd.tcpdump.pcap"));
		p = pcapr_open_mem(r.body, r.len, &rc);
		assert_non_null(p);
		while ((rc = pcapr_next(p, &rec)) == 1)
			n++;
		assert_int_equal(rc, 0);
		assert_int_equal(n, want);
		pcapr_close(p);
		free(r.body);
		/* Same connection by the conn parameter. */
		snprintf(path, sizeof(path), "/api/v1/conns?conn=%" JSON_INTEGER_FORMAT,
			json_integer_value(json_object_get(row, "conn_id")));
		two = get_json(path);
		assert_int_equal(json_array_size(two), 1);
		assert_true(json_equal(json_array_get(two, 0), row));
		json_decref(two);
	}
	json_decref(all);
}

static void
test_export(void **state)
{
	struct reply r;
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	bool seen = false;

	(void)state;
	get("/api/v1/export?from=0&to=now", TOKEN, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "application/gzip"));
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	assert_int_equal(archive_read_open_memory(a, r.body, r.len), ARCHIVE_OK);
	assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_OK);
	assert_string_equal(archive_entry_pathname(e), "manifest.json");
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		if (strcmp(archive_entry_pathname(e), "s1/s1.pcap") == 0) {
			size_t len = (size_t)archive_entry_size(e);
			uint8_t *buf = malloc(len);
			struct pcapr *p;
			struct pcapf_rec rec;
			int rc = 0;
			uint64_t n = 0;

			assert_int_equal(archive_read_data(a, buf, len), (la_ssize_t)len);
			p = pcapr_open_mem(buf, len, &rc);
			assert_non_null(p);
			while ((rc = pcapr_next(p, &rec)) == 1)
				n++;
			assert_int_equal(n, total_packets);
			pcapr_close(p);
			free(buf);
			seen = true;
		}
	}
	assert_true(seen);
	archive_read_free(a);
	free(r.body);
}

static void
test_listen_checks(void **state)
{
	char err[256] = "";
	struct api_opts o = { .token = "", .cert = "", .key = "", .dir = "/tmp" };

	(void)state;
	assert_int_equal(api_listen_check("127.0.0.1:8080", err, sizeof(err)), 0);
	assert_int_equal(api_listen_check("[::1]:443", err, sizeof(err)), 0);
	assert_int_equal(api_listen_check("127.0.0.1:0", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "api.listen"));
	assert_int_equal(api_listen_check("127.0.0.1:65536", err, sizeof(err)), -1);
	assert_int_equal(api_listen_check("127.0.0.1", err, sizeof(err)), -1);
	assert_int_equal(api_listen_check("127.0.0.1:http", err, sizeof(err)), -1);
	assert_int_equal(api_listen_check("host.invalid:80", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "api.listen"));
	assert_true(api_listen_is_loopback("127.0.0.1:1"));
	assert_true(api_listen_is_loopback("[::1]:1"));
	assert_false(api_listen_is_loopback("0.0.0.0:1"));
	assert_false(api_listen_is_loopback("198.18.0.1:1"));
	/* Off loopback, a token and TLS are required. */
	o.listen = "0.0.0.0:1";
	err[0] = '\0';
	assert_null(api_new(&o, err, sizeof(err)));
	assert_true(err[0] != '\0');
	/* The port in use by the running API: refused with a message, not a crash. */
	o.listen = listen_addr;
	o.token = "x";
	err[0] = '\0';
	assert_null(api_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "api.listen"));
	api_free(NULL);
}

static void
test_tls(void **state)
{
	char err[512] = "", crt[1200], key[1200], ca[1200], lis[64], req[256], buf[65536];
	struct api *t = NULL;
	uint16_t tport = 0;
	SSL_CTX *ctx;
	SSL *ssl;
	int fd, n, got = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	json_t *j;
	json_error_t jerr;
	char *body;

	(void)state;
	snprintf(crt, sizeof(crt), "%s/receiver.crt", certs);
	snprintf(key, sizeof(key), "%s/receiver.key", certs);
	snprintf(ca, sizeof(ca), "%s/ca.crt", certs);
	/* Half a TLS configuration, or a file that is not there: refused, naming it. */
	{
		struct api_opts o = {
			.listen = "127.0.0.1:1", .token = "", .cert = crt, .key = "", .dir = dir
		};

		assert_null(api_new(&o, err, sizeof(err)));
		assert_non_null(strstr(err, "api.cert and api.key: give both or neither"));
		o.key = "/nonexistent/receiver.key";
		assert_null(api_new(&o, err, sizeof(err)));
		assert_non_null(strstr(err, "api.key"));
	}
	for (int tries = 0; tries < 20 && t == NULL; tries++) {
		struct api_opts o = { .listen = lis, .token = TOKEN, .cert = crt, .key = key, .dir = dir };

		tport = free_port();
		snprintf(lis, sizeof(lis), "127.0.0.1:%u", tport);
		t = api_new(&o, err, sizeof(err));
	}
	if (t == NULL)
		fail_msg("api_new: %s", err);
	if (api_start(t, err, sizeof(err)) != 0)
		fail_msg("api_start: %s", err);
	ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons(tport);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(tls_client_expect(ssl, "127.0.0.1"), 0);
	assert_int_equal(SSL_connect(ssl), 1);
	snprintf(req, sizeof(req), "GET /api/v1/conns HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n", TOKEN);
	assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
	while (got < (int)sizeof(buf) - 1 && (n = SSL_read(ssl, buf + got, (int)sizeof(buf) - 1 - got)) > 0)
		got += n;
	buf[got] = '\0';
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	assert_int_equal(strncmp(buf, "HTTP/1.0 200", 12) == 0 || strncmp(buf, "HTTP/1.1 200", 12) == 0, 1);
	body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	j = json_loads(body + 4, 0, &jerr);
	assert_non_null(j);
	assert_int_equal(json_array_size(j), 7);
	json_decref(j);
	/* Plain HTTP to the TLS port gets no answer. */
	{
		int pfd = socket(AF_INET, SOCK_STREAM, 0);
		struct timeval tv = { .tv_sec = 15 };
		ssize_t k;

		setsockopt(pfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		assert_int_equal(connect(pfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		snprintf(req, sizeof(req), "GET /api/v1/conns HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n",
			TOKEN);
		assert_int_equal(write(pfd, req, strlen(req)), (ssize_t)strlen(req));
		k = read(pfd, buf, sizeof(buf) - 1);
		if (k > 0) {
			buf[k] = '\0';
			assert_null(strstr(buf, "200"));
		}
		close(pfd);
	}
	api_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token),
		cmocka_unit_test(test_routes_and_methods),
		cmocka_unit_test(test_parameters_refused),
		cmocka_unit_test(test_conns_and_pcap),
		cmocka_unit_test(test_export),
		cmocka_unit_test(test_listen_checks),
		cmocka_unit_test(test_tls),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
