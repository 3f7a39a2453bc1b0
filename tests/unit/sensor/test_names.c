/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for sensor/names.c: configured names (names.static, the hosts file), DNS
 * answers in captured packets, change detection, precedence, the bounded event queue
 * and the resync at the start of a session. The uplink is a function that decodes what
 * it is given, as the receiver would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sensor/names.h"
#include "proto/wire.h"

/* ---- A receiving end ---------------------------------------------------------------- */

#define MAX_SEEN 8192

static struct {
	bool refuse; /* not connected */
	unsigned frames;
	size_t n;
	char lines[MAX_SEEN][320];
} rx;

static int
rx_send(void *arg, const uint8_t *payload, size_t len)
{
	static struct proto_names m;

	(void)arg;
	if (rx.refuse)
		return -1;
	assert_int_equal(proto_names_decode(payload, len, &m), 0);
	rx.frames++;
	for (unsigned i = 0; i < m.n; i++) {
		const struct proto_name *e = &m.ev[i];
		char a[INET6_ADDRSTRLEN];

		assert_true(rx.n < MAX_SEEN);
		inet_ntop(e->family == 4 ? AF_INET : AF_INET6, e->addr, a, sizeof(a));
		snprintf(rx.lines[rx.n++], sizeof(rx.lines[0]), "%u %s:%u %s@%s ttl=%u", e->source, a,
			e->port, e->name, e->ns, e->ttl_s);
	}
	return 0;
}

static void
rx_reset(void)
{
	memset(&rx, 0, sizeof(rx));
}

static bool
rx_has(const char *line)
{
	for (size_t i = 0; i < rx.n; i++)
		if (strcmp(rx.lines[i], line) == 0)
			return true;
	return false;
}

/* Sends everything queued, whatever the frame count per flush. */
static void
flush_all(struct names *n)
{
	struct names_stats st;

	for (int i = 0; i < 1000; i++) {
		names_flush(n);
		names_stats(n, &st);
		if (st.queued == 0)
			break;
	}
	/* A resync may still walk on: a few more flushes finish it. */
	for (int i = 0; i < 100; i++)
		names_flush(n);
}

/* ---- Packets ------------------------------------------------------------------------ */

struct buf {
	uint8_t b[2048];
	size_t n;
};

static void
b_u8(struct buf *b, unsigned v)
{
	b->b[b->n++] = (uint8_t)v;
}
static void
b_u16(struct buf *b, unsigned v)
{
	b_u8(b, v >> 8);
	b_u8(b, v & 0xff);
}
static void
b_bytes(struct buf *b, const void *p, size_t n)
{
	memcpy(b->b + b->n, p, n);
	b->n += n;
}
static void
b_name(struct buf *b, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);

		b_u8(b, (unsigned)len);
		b_bytes(b, name, len);
		name += len + (dot ? 1 : 0);
	}
	b_u8(b, 0);
}

/* A DNS response: name A addr (TTL 60). */
static void
dns_answer(struct buf *d, const char *name, const char *addr4)
{
	uint8_t a[4];

	inet_pton(AF_INET, addr4, a);
	d->n = 0;
	b_u16(d, 0x1234);
	b_u16(d, 0x8180);
	b_u16(d, 1);
	b_u16(d, 1);
	b_u16(d, 0);
	b_u16(d, 0);
	b_name(d, name);
	b_u16(d, 1);
	b_u16(d, 1);
	b_u16(d, 0xc00c);
	b_u16(d, 1);
	b_u16(d, 1);
	b_u16(d, 0);
	b_u16(d, 60);
	b_u16(d, 4);
	b_bytes(d, a, 4);
}

/* Ethernet + IPv4 + UDP (or TCP with the 2-byte length prefix) from sport to dport. */
static void
frame(struct buf *f, const struct buf *dns, int tcp, unsigned sport, unsigned dport)
{
	size_t l4 = tcp ? 20 + 2 + dns->n : 8 + dns->n;

	f->n = 0;
	b_bytes(f, "\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x01\x08\x00", 14);
	b_u8(f, 0x45);
	b_u8(f, 0);
	b_u16(f, (unsigned)(20 + l4));
	b_u16(f, 0);
	b_u16(f, 0x4000); /* DF */
	b_u8(f, 64);
	b_u8(f, tcp ? 6 : 17);
	b_u16(f, 0);
	b_bytes(f, "\xc0\x00\x02\x35\xc0\x00\x02\x01", 8);
	b_u16(f, sport);
	b_u16(f, dport);
	if (tcp) {
		b_bytes(f, "\0\0\0\1\0\0\0\1\x50\x18\x01\x00\0\0\0\0", 16);
		b_u16(f, (unsigned)dns->n);
	} else {
		b_u16(f, (unsigned)l4);
		b_u16(f, 0);
	}
	b_bytes(f, dns->b, dns->n);
}

static void
answer(struct names *n, uint64_t ts, const char *name, const char *addr, int tcp, unsigned sport)
{
	struct buf d, f;
	uint8_t *copy;

	dns_answer(&d, name, addr);
	frame(&f, &d, tcp, sport, 40000);
	copy = malloc(f.n);
	memcpy(copy, f.b, f.n);
	names_packet(n, 1, ts, copy, (uint32_t)f.n);
	free(copy);
}

/* ---- Tests -------------------------------------------------------------------------- */

static const char *const port53[] = { "53" };

static void
test_check(void **state)
{
	char err[512];
	static const char *const bad_static[] = {
		"198.18.0.1",
		"x=y",
		"198.18.0.1=",
		"198.18.0.1=a..b",
		"198.18.0.1:0=a",
		"[::1]:70000=a",
		"198.18.0.1=a@",
		"198.18.0.1=a@b@c",
		"198.18.0.1=a b",
		"[::1=a",
		"198.18.0.1:80:80=a",
		"1.2.3=a",
		"=a",
		"[198.18.0.1]:80=a",
		"198.18.0.1=-x.",
	};
	static const char *const good_static[] = {
		"198.18.0.1=a",
		"198.18.0.1:80=Web.Example@Prod",
		"2001:db8::1=v6",
		"[2001:db8::1]:443=api@ns-1",
		"[2001:db8::2]=x",
		"192.0.2.1=_svc._tcp.local",
	};
	static const char *const bad_ports[] = { "0", "65536", "x", "", "53x", "-1" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad_static) / sizeof(bad_static[0]); i++) {
		struct names_config c = {
			.statics = &bad_static[i], .n_statics = 1, .dns_ports = port53, .n_dns_ports = 1
		};

		if (names_check(&c, err, sizeof(err)) == 0)
			fail_msg("'%s' accepted", bad_static[i]);
		assert_non_null(strstr(err, "names.static"));
	}
	{
		struct names_config c = {
			.statics = good_static, .n_statics = 6, .dns_ports = port53, .n_dns_ports = 1
		};

		if (names_check(&c, err, sizeof(err)) != 0)
			fail_msg("refused: %s", err);
	}
	for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
		struct names_config c = { .dns_ports = &bad_ports[i], .n_dns_ports = 1 };

		assert_int_equal(names_check(&c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "names.dns_ports"));
	}
}

static void
test_configured(void **state)
{
	char hosts[] = "/tmp/pcapline-test-hosts-XXXXXX", err[512];
	static const char *const statics[] = { "198.18.0.1:80=Web.Example@Prod", "[2001:db8::1]:443=api@ns-1",
		"198.18.0.9=static9" };
	int fd = mkstemp(hosts);
	FILE *f = fdopen(fd, "w");
	struct names *n = names_new(rx_send, NULL);
	struct names_stats st;

	(void)state;
	rx_reset();
	fputs("# comment\n127.0.0.1\tlocalhost LOCALHOST.localdomain\n::1 ip6-localhost ip6-loopback\n"
	      "198.18.0.9 hosts9\n198.18.0.7 First\n198.18.0.7 second\nfe80::1%eth0 zoned\n198.18.0.8 "
	      "bad*name\n"
	      "not-an-ip x\n198.18.0.10\n   \n",
		f);
	fclose(f);
	{
		struct names_config c = { .hosts_file = hosts,
			.statics = statics,
			.n_statics = 3,
			.dns_ports = port53,
			.n_dns_ports = 1 };

		assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
	}
	flush_all(n);
	/* The static name wins over the hosts file for 198.18.0.9; the first hosts line for
	 * 198.18.0.7 wins; names are lower case; unusable lines are skipped. */
	assert_int_equal(rx.n, 6);
	assert_true(rx_has("3 198.18.0.1:80 web.example@prod ttl=0"));
	assert_true(rx_has("3 2001:db8::1:443 api@ns-1 ttl=0"));
	assert_true(rx_has("3 198.18.0.9:0 static9@ ttl=0"));
	assert_true(rx_has("2 127.0.0.1:0 localhost@ ttl=0"));
	assert_true(rx_has("2 ::1:0 ip6-localhost@ ttl=0"));
	assert_true(rx_has("2 198.18.0.7:0 first@ ttl=0"));

	/* DNS does not override configured names. */
	rx_reset();
	answer(n, 1000, "dns9.test", "198.18.0.9", 0, 53);
	answer(n, 1000, "dns7.test", "198.18.0.7", 0, 53);
	flush_all(n);
	assert_int_equal(rx.n, 0);

	/* Reloading the same configuration changes nothing; dropping the static name leaves
	 * its mapping to be replaced by DNS, and the hosts file's name for that address comes
	 * back as a change. */
	{
		struct names_config c = { .hosts_file = hosts,
			.statics = statics,
			.n_statics = 3,
			.dns_ports = port53,
			.n_dns_ports = 1 };

		assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
		flush_all(n);
		assert_int_equal(rx.n, 0);
		c.n_statics = 2;
		assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
		flush_all(n);
		assert_int_equal(rx.n, 1);
		assert_true(rx_has("2 198.18.0.9:0 hosts9@ ttl=0"));
		/* Without the hosts file, 198.18.0.7 is only learned: DNS replaces it. */
		c.hosts_file = "";
		assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
		rx_reset();
		answer(n, 2000, "dns7.test", "198.18.0.7", 0, 53);
		flush_all(n);
		assert_int_equal(rx.n, 1);
		assert_true(rx_has("1 198.18.0.7:0 dns7.test@ ttl=60"));
		/* A missing hosts file and a bad static entry: refused, nothing changes. */
		c.hosts_file = "/nonexistent/hosts";
		assert_int_equal(names_load(n, &c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "/nonexistent/hosts"));
	}
	names_stats(n, &st);
	assert_int_equal(st.drops, 0);
	names_free(n);
	unlink(hosts);
}

static void
test_dns_changes(void **state)
{
	static const char *const ports[] = { "53", "15353" };
	struct names_config c = { .dns_ports = ports, .n_dns_ports = 2 };
	struct names *n = names_new(rx_send, NULL);
	struct names_stats st;
	char err[256];

	(void)state;
	rx_reset();
	assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
	answer(n, 100, "X.Test", "198.18.0.50", 0, 53);
	answer(n, 200, "x.test", "198.18.0.50", 0, 53);    /* same mapping: no event */
	answer(n, 300, "y.test", "198.18.0.50", 0, 15353); /* another configured port */
	answer(n, 400, "z.test", "198.18.0.50", 0, 5353);  /* not a DNS port here */
	answer(n, 500, "x.test", "198.18.0.50", 1, 53);    /* over TCP: back to x */
	answer(n, 600, "api.prod.svc.cluster.local", "198.18.96.10", 0, 53);
	flush_all(n);
	assert_int_equal(rx.n, 4);
	assert_string_equal(rx.lines[0], "1 198.18.0.50:0 x.test@ ttl=60");
	assert_string_equal(rx.lines[1], "1 198.18.0.50:0 y.test@ ttl=60");
	assert_string_equal(rx.lines[2], "1 198.18.0.50:0 x.test@ ttl=60");
	/* Kubernetes service names carry their namespace. */
	assert_string_equal(rx.lines[3], "1 198.18.96.10:0 api.prod.svc.cluster.local@prod ttl=60");
	names_stats(n, &st);
	assert_int_equal(st.events, 4);
	assert_int_equal(st.dns_messages, 5);
	assert_int_equal(st.entries, 2);

	/* A new session: every mapping again. */
	rx_reset();
	names_resync(n);
	flush_all(n);
	assert_int_equal(rx.n, 2);
	assert_true(rx_has("1 198.18.0.50:0 x.test@ ttl=60"));

	/* Garbage on a DNS port is counted, not fatal. */
	{
		struct buf d = { .n = 0 }, f;

		b_bytes(&d, "\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x0c", 14);
		frame(&f, &d, 0, 53, 40000);
		names_packet(n, 1, 1, f.b, (uint32_t)f.n);
		frame(&f, &d, 1, 53, 40000);
		names_packet(n, 1, 1, f.b, 60); /* the TCP message is cut */
		names_packet(n, 1, 1, f.b, 10); /* not even IP */
		names_stats(n, &st);
		assert_int_equal(st.dns_errors, 1);
		assert_int_equal(st.dns_tcp_split, 1);
	}
	names_free(n);
}

static void
test_queue_bound(void **state)
{
	struct names_config c = { .dns_ports = port53, .n_dns_ports = 1 };
	struct names *n = names_new(rx_send, NULL);
	struct names_stats st;
	char err[256], addr[32];

	(void)state;
	rx_reset();
	assert_int_equal(names_load(n, &c, err, sizeof(err)), 0);
	/* Disconnected: events wait; beyond the queue they are dropped and counted. */
	rx.refuse = true;
	for (unsigned i = 0; i < NAMES_QUEUE_MAX + 100; i++) {
		snprintf(addr, sizeof(addr), "198.19.%u.%u", i / 256, i % 256);
		answer(n, i, "many.test", addr, 0, 53);
	}
	names_flush(n);
	names_stats(n, &st);
	assert_int_equal(st.events, NAMES_QUEUE_MAX + 100);
	assert_int_equal(st.drops, 100);
	assert_int_equal(st.queued, NAMES_QUEUE_MAX);
	assert_int_equal(st.entries, NAMES_QUEUE_MAX + 100);
	/* Connected again: the queue, then (after the session's resync) every mapping, the
	 * dropped ones included. */
	rx.refuse = false;
	names_resync(n);
	flush_all(n);
	assert_int_equal(rx.n, NAMES_QUEUE_MAX + NAMES_QUEUE_MAX + 100);
	assert_true(rx.frames >= (NAMES_QUEUE_MAX * 2 + 100) / PROTO_MAX_NAMES);
	assert_true(rx_has("1 198.19.8.99:0 many.test@ ttl=60")); /* the last one, dropped from the queue */
	names_stats(n, &st);
	assert_int_equal(st.queued, 0);
	names_free(n);
	names_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_configured),
		cmocka_unit_test(test_dns_changes),
		cmocka_unit_test(test_queue_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
