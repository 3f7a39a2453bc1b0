/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for receiver/repo/names.c: the names.jsonl history a receiver keeps per
 * sensor (appending NAMES frames, leaving out repeats, cutting a torn last line) and
 * the names_at() lookup behind `pcapline-receiver --names-at`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/repo/names.h"

static char root[256];

static int setup(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(root, sizeof(root), "/tmp/pcapline-test-namelog-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/sensors", root);
	mkdir(cmd, 0750);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *sensor)
{
	static char buf[65536];
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/sensors/%s/names.jsonl", root, sensor);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void put_file(const char *sensor, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/sensors/%s", root, sensor);
	mkdir(path, 0750);
	snprintf(path, sizeof(path), "%s/sensors/%s/names.jsonl", root, sensor);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void ev(struct proto_name *e, uint64_t t, uint8_t src, const char *addr4, uint16_t port, const char *name,
	       const char *ns)
{
	memset(e, 0, sizeof(*e));
	e->ts_ns = t;
	e->source = src;
	e->family = 4;
	sscanf(addr4, "%hhu.%hhu.%hhu.%hhu", &e->addr[0], &e->addr[1], &e->addr[2], &e->addr[3]);
	e->port = port;
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->ns, sizeof(e->ns), "%s", ns);
}

static void test_addresses(void **state)
{
	char out[NAMES_ADDR_LEN];
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	static const struct {
		const char *in, *out;
	} ok[] = {
		{"198.18.0.1", "198.18.0.1"},
		{"198.18.0.1:80", "198.18.0.1:80"},
		{"2001:DB8:0:0::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"::ffff:198.18.0.1", "::ffff:198.18.0.1"},
		{"::", "::"},
	};
	static const char *const bad[] = {"", "x", "198.18.0", "198.18.0.1:", "198.18.0.1:0", "198.18.0.1:65536",
					  "198.18.0.1:8a", "[2001:db8::1", "[2001:db8::1]x", "[198.18.0.1]:80",
					  "2001:db8::1:80x", "198.18.0.1:80:80"};

	(void)state;
	names_addr_format(4, (const uint8_t *)"\xc6\x12\x00\x01", 0, out);
	assert_string_equal(out, "198.18.0.1");
	names_addr_format(6, v6, 53, out);
	assert_string_equal(out, "[2001:db8::1]:53");
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (names_addr_parse(ok[i].in, out) != 0)
			fail_msg("'%s' refused", ok[i].in);
		assert_string_equal(out, ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (names_addr_parse(bad[i], out) == 0)
			fail_msg("'%s' accepted as '%s'", bad[i], out);
}

static void test_append_and_repeats(void **state)
{
	static struct proto_names m;
	struct names_store *st = names_store_new(root, NAMES_SYNC_WRITE);
	struct names_log *l;
	char err[512];

	(void)state;
	assert_non_null(st);
	l = names_log_open(st, "s1");
	assert_non_null(l);
	m.n = 4;
	ev(&m.ev[0], 1000, PROTO_NSRC_DNS, "198.18.0.50", 0, "x.test", "");
	ev(&m.ev[1], 2000, PROTO_NSRC_DNS, "198.18.0.50", 0, "x.test", ""); /* repeat */
	ev(&m.ev[2], 3000, PROTO_NSRC_STATIC, "198.18.0.5", 5432, "db", "prod");
	ev(&m.ev[3], 4000, 9, "198.18.0.50", 0, "y.test", ""); /* an unknown source */
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 3);
	assert_string_equal(slurp("s1"),
			    "{\"t\":1000,\"addr\":\"198.18.0.50\",\"name\":\"x.test\",\"ns\":\"\",\"src\":\"dns\"}\n"
			    "{\"t\":3000,\"addr\":\"198.18.0.5:5432\",\"name\":\"db\",\"ns\":\"prod\",\"src\":\"static\"}\n"
			    "{\"t\":4000,\"addr\":\"198.18.0.50\",\"name\":\"y.test\",\"ns\":\"\",\"src\":\"other\"}\n");
	assert_int_equal(names_log_counters(l)->written, 3);
	assert_int_equal(names_log_counters(l)->repeats, 1);
	names_log_close(l);

	/* A new session re-announces its table: the mappings in effect are repeats, read back
	 * from the file; a namespace change is not. */
	l = names_log_open(st, "s1");
	m.n = 3;
	ev(&m.ev[0], 3000, PROTO_NSRC_STATIC, "198.18.0.5", 5432, "db", "prod");
	ev(&m.ev[1], 4000, PROTO_NSRC_DNS, "198.18.0.50", 0, "y.test", "");
	ev(&m.ev[2], 5000, PROTO_NSRC_STATIC, "198.18.0.5", 5432, "db", "staging");
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);
	assert_int_equal(names_log_counters(l)->repeats, 2);
	/* An old mapping coming back (X again) is a change. */
	m.n = 1;
	ev(&m.ev[0], 6000, PROTO_NSRC_DNS, "198.18.0.50", 0, "x.test", "");
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);
	assert_int_equal(names_log_sync(l), 0);
	names_log_close(l);
	names_store_free(st);

	/* No repository: no history. */
	st = names_store_new("", NAMES_SYNC_CLOSE);
	assert_null(names_log_open(st, "s1"));
	names_store_free(st);
	st = names_store_new(root, NAMES_SYNC_CLOSE);
	assert_null(names_log_open(st, "../s1"));
	assert_null(names_log_open(st, ".hidden"));
	names_store_free(st);
	names_log_close(NULL);
}

static void test_torn_tail(void **state)
{
	static struct proto_names m;
	struct names_store *st = names_store_new(root, NAMES_SYNC_TIMER);
	struct names_log *l;
	char err[512];

	(void)state;
	put_file("s2", "{\"t\":1,\"addr\":\"198.18.0.1\",\"name\":\"a\",\"ns\":\"\",\"src\":\"dns\"}\n"
		       "{\"t\":2,\"addr\":\"198.18.0.2\",\"name\":\"b\",\"ns\":\"\",\"sr");
	l = names_log_open(st, "s2");
	m.n = 2;
	ev(&m.ev[0], 3, PROTO_NSRC_DNS, "198.18.0.1", 0, "a", ""); /* a repeat of line 1 */
	ev(&m.ev[1], 4, PROTO_NSRC_DNS, "198.18.0.2", 0, "b", ""); /* the torn line did not count */
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);
	assert_string_equal(slurp("s2"), "{\"t\":1,\"addr\":\"198.18.0.1\",\"name\":\"a\",\"ns\":\"\",\"src\":\"dns\"}\n"
					 "{\"t\":4,\"addr\":\"198.18.0.2\",\"name\":\"b\",\"ns\":\"\",\"src\":\"dns\"}\n");
	names_log_close(l);
	/* A file that is one torn line. */
	put_file("s3", "{\"t\":1,\"addr\"");
	l = names_log_open(st, "s3");
	m.n = 1;
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);
	assert_string_equal(slurp("s3"), "{\"t\":3,\"addr\":\"198.18.0.1\",\"name\":\"a\",\"ns\":\"\",\"src\":\"dns\"}\n");
	names_log_close(l);
	names_store_free(st);
}

static int at(const char *sensor, const char *addr, uint64_t t, char *name)
{
	char ns[64];

	name[0] = '\0';
	return names_at(root, sensor, addr, t, name, 256, ns, sizeof(ns));
}

static void test_names_at(void **state)
{
	char name[256], ns[8], big[70000];

	(void)state;
	put_file("q",
		 "{\"t\":100,\"addr\":\"198.18.0.50\",\"name\":\"x.test\",\"ns\":\"\",\"src\":\"dns\"}\n"
		 "{\"t\":300,\"addr\":\"198.18.0.50\",\"name\":\"y.test\",\"ns\":\"\",\"src\":\"dns\"}\n"
		 "{\"t\":200,\"addr\":\"198.18.0.50\",\"name\":\"late.test\",\"ns\":\"\",\"src\":\"dns\"}\n"
		 "{\"t\":300,\"addr\":\"198.18.0.5:5432\",\"name\":\"db\",\"ns\":\"prod\",\"src\":\"static\"}\n"
		 "{\"t\":100,\"addr\":\"198.18.0.5\",\"name\":\"host5\",\"ns\":\"\",\"src\":\"hosts\"}\n"
		 "{\"t\":500,\"addr\":\"198.18.0.5:5432\",\"name\":\"\",\"ns\":\"\",\"src\":\"static\"}\n"
		 "not json\n"
		 "{\"t\":-1,\"addr\":\"198.18.9.9\",\"name\":\"neg\"}\n"
		 "{\"t\":1.5,\"addr\":\"198.18.9.9\",\"name\":\"frac\"}\n"
		 "{\"t\":1,\"t\":2,\"addr\":\"198.18.9.9\",\"name\":\"dup\"}\n"
		 "{\"t\":1,\"addr\":\"198.18.9.9\"}\n"
		 "{\"t\":1,\"addr\":\"\",\"name\":\"noaddr\"}\n"
		 "  { \"x\" : [1, {\"y\": null}, true, \"s\\\"\"] , \"t\" : 1 , \"addr\" : \"2001:DB8::1\" ,"
		 " \"name\" : \"v6\\u002etest\" }  \n"
		 "{\"t\":400,\"addr\":\"198.18.0.50\",\"name\":\"z.test\",\"ns\":\"n\",\"src\":\"dns\"}\n"
		 "{\"t\":400,\"addr\":\"198.18.0.50\",\"name\":\"w.test\",\"ns\":\"n\",\"src\":\"dns\"}\n"
		 "{\"t\":900,\"addr\":\"198.18.0.50\",\"name\":\"torn\"");
	assert_int_equal(at("q", "198.18.0.50", 99, name), 0);
	assert_int_equal(at("q", "198.18.0.50", 100, name), 1);
	assert_string_equal(name, "x.test");
	assert_int_equal(at("q", "198.18.0.50", 199, name), 1);
	assert_string_equal(name, "x.test");
	assert_int_equal(at("q", "198.18.0.50", 250, name), 1); /* time order, not file order */
	assert_string_equal(name, "late.test");
	assert_int_equal(at("q", "198.18.0.50", 300, name), 1);
	assert_string_equal(name, "y.test");
	assert_int_equal(at("q", "198.18.0.50", 400, name), 1); /* equal t: the later line */
	assert_string_equal(name, "w.test");
	assert_int_equal(at("q", "198.18.0.50", UINT64_MAX, name), 1); /* a torn last line is not read */
	assert_string_equal(name, "w.test");
	/* A port falls back to the address; an ended mapping (empty name) too. */
	assert_int_equal(at("q", "198.18.0.5:5432", 350, name), 1);
	assert_string_equal(name, "db");
	assert_int_equal(names_at(root, "q", "198.18.0.5:5432", 350, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(ns, "prod");
	assert_int_equal(at("q", "198.18.0.5:5432", 600, name), 1);
	assert_string_equal(name, "host5");
	assert_int_equal(at("q", "198.18.0.5:80", 150, name), 1);
	assert_string_equal(name, "host5");
	assert_int_equal(at("q", "198.18.0.5", 350, name), 1);
	assert_string_equal(name, "host5");
	/* Malformed lines are skipped; whitespace, unknown fields and escapes are fine. */
	assert_int_equal(at("q", "198.18.9.9", 10, name), 0);
	assert_int_equal(at("q", "2001:db8::1", 10, name), 1);
	assert_string_equal(name, "v6.test");
	assert_int_equal(at("q", "[2001:db8:0::1]:99", 10, name), 1);
	assert_string_equal(name, "v6.test");
	/* Cut to the caller's buffer. */
	assert_int_equal(names_at(root, "q", "198.18.0.50", 100, name, 3, ns, sizeof(ns)), 1);
	assert_string_equal(name, "x.");
	/* Errors. */
	assert_int_equal(at("none", "198.18.0.1", 1, name), -ENOENT);
	assert_int_equal(at("../q", "198.18.0.1", 1, name), -EINVAL);
	assert_int_equal(at("q", "not-an-ip", 1, name), -EINVAL);

	/* A line longer than any we read, then a good one. */
	memset(big, 'x', sizeof(big));
	static const char head[] = "{\"t\":1,\"addr\":\"198.19.1.1\",\"name\":\"";
	memcpy(big, head, sizeof(head) - 1);
	strcpy(big + sizeof(big) - 64, "\"}\n{\"t\":2,\"addr\":\"198.19.1.1\",\"name\":\"ok\"}\n");
	put_file("long", big);
	assert_int_equal(at("long", "198.19.1.1", 5, name), 1);
	assert_string_equal(name, "ok");
	assert_int_equal(at("long", "198.19.1.1", 1, name), 0);
}

/* Retention's trim: history older than the oldest stored packet goes, the mapping in
 * effect at that time stays for every address, and every answer from then on is the
 * same; a session writing to the file goes on writing to the new one. */
static void test_trim(void **state)
{
	static struct proto_names m;
	struct names_store *st = names_store_new(root, NAMES_SYNC_WRITE);
	struct names_log *l;
	char err[512], name[256], ns[64];
	uint64_t dropped = 99;
	static const uint64_t asks[] = {5000, 5001, 6000, 6999, 7000, 9000, 100000};
	char before[sizeof(asks) / sizeof(asks[0])][3][256];
	static const char *const addrs[] = {"198.18.0.1", "198.18.0.2", "198.18.0.3"};

	(void)state;
	put_file("s3", "{\"t\":1000,\"addr\":\"198.18.0.1\",\"name\":\"a1\",\"ns\":\"\"}\n"
		       "{\"t\":2000,\"addr\":\"198.18.0.1\",\"name\":\"a2\",\"ns\":\"\"}\n"
		       "{\"t\":3000,\"addr\":\"198.18.0.2\",\"name\":\"b1\",\"ns\":\"\"}\n"
		       "{\"t\":3500,\"addr\":\"198.18.0.3\",\"name\":\"c1\",\"ns\":\"\"}\n"
		       "{\"t\":4000,\"addr\":\"198.18.0.3\",\"name\":\"\",\"ns\":\"\"}\n"
		       "{\"t\":4500,\"addr\":\"198.18.0.1\",\"name\":\"a3\",\"ns\":\"\"}\n"
		       "{\"t\":4500,\"addr\":\"198.18.0.1\",\"name\":\"a4\",\"ns\":\"\"}\n"
		       "not json\n"
		       "{\"t\":5000,\"addr\":\"198.18.0.2\",\"name\":\"b2\",\"ns\":\"\"}\n"
		       "{\"t\":7000,\"addr\":\"198.18.0.1\",\"name\":\"a5\",\"ns\":\"\"}\n");
	for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++)
		for (size_t k = 0; k < 3; k++)
			if (names_at(root, "s3", addrs[k], asks[i], before[i][k], 256, ns, sizeof(ns)) != 1)
				strcpy(before[i][k], "-");
	/* A live session holds the file open. */
	l = names_log_open(st, "s3");
	m.n = 1;
	ev(&m.ev[0], 8000, PROTO_NSRC_DNS, "198.18.0.9", 0, "z.test", "");
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);

	assert_int_equal(names_trim(root, "s3", 5000, &dropped), 0);
	assert_int_equal(dropped, 5); /* and the malformed line, never counted */
	assert_string_equal(slurp("s3"),
			    "{\"t\":3000,\"addr\":\"198.18.0.2\",\"name\":\"b1\",\"ns\":\"\"}\n"
			    "{\"t\":4500,\"addr\":\"198.18.0.1\",\"name\":\"a4\",\"ns\":\"\"}\n"
			    "{\"t\":5000,\"addr\":\"198.18.0.2\",\"name\":\"b2\",\"ns\":\"\"}\n"
			    "{\"t\":7000,\"addr\":\"198.18.0.1\",\"name\":\"a5\",\"ns\":\"\"}\n"
			    "{\"t\":8000,\"addr\":\"198.18.0.9\",\"name\":\"z.test\",\"ns\":\"\",\"src\":\"dns\"}\n");
	for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++)
		for (size_t k = 0; k < 3; k++) {
			int rc = names_at(root, "s3", addrs[k], asks[i], name, sizeof(name), ns, sizeof(ns));
			assert_string_equal(rc == 1 ? name : "-", before[i][k]);
		}
	/* The session follows the new file, and its mappings in effect are still known. */
	m.n = 2;
	ev(&m.ev[0], 9000, PROTO_NSRC_DNS, "198.18.0.9", 0, "z.test", ""); /* repeat */
	ev(&m.ev[1], 9500, PROTO_NSRC_DNS, "198.18.0.4", 0, "d.test", "");
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), 1);
	assert_non_null(strstr(slurp("s3"), "\"t\":9500,\"addr\":\"198.18.0.4\""));
	assert_int_equal(names_at(root, "s3", "198.18.0.4", 9600, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(name, "d.test");
	names_log_close(l);
	/* Again: nothing more to drop, and the file is left as it is. A missing history, a
	 * bad id. */
	struct stat s1, s2;
	char path[512];
	snprintf(path, sizeof(path), "%s/sensors/s3/names.jsonl", root);
	assert_int_equal(stat(path, &s1), 0);
	assert_int_equal(names_trim(root, "s3", 5000, &dropped), 0);
	assert_int_equal(dropped, 0);
	assert_int_equal(stat(path, &s2), 0);
	assert_true(s1.st_ino == s2.st_ino);
	assert_int_equal(names_trim(root, "nobody", 5000, &dropped), -ENOENT);
	assert_int_equal(names_trim(root, "../s3", 5000, &dropped), -EINVAL);
	names_store_free(st);
}

/* storage.names_max_size: the file never grows past the bound; the oldest history goes
 * first, the mapping in effect for every address stays. */
static void test_size_bound(void **state)
{
	static struct proto_names m;
	struct names_store *st = names_store_new(root, NAMES_SYNC_CLOSE);
	struct names_log *l;
	char err[512], name[256], ns[64], path[512], addr[32];
	struct stat sb;
	const uint64_t max = 64 * 1024;
	uint64_t written = 0;

	(void)state;
	names_store_set_max(st, max);
	l = names_log_open(st, "s4");
	snprintf(path, sizeof(path), "%s/sensors/s4/names.jsonl", root);
	/* 4000 changes of 20 addresses: about 300 KB unbounded. */
	for (unsigned i = 0; i < 4000; i++) {
		char n[64];

		m.n = 1;
		snprintf(addr, sizeof(addr), "198.18.1.%u", i % 20);
		snprintf(n, sizeof(n), "host-%u.example.test", i);
		ev(&m.ev[0], 1000000 + i, PROTO_NSRC_DNS, addr, 0, n, "default");
		int rc = names_log_append(l, &m, err, sizeof(err));
		if (rc != 1)
			fail_msg("event %u: %d %s", i, rc, err);
		written++;
		assert_int_equal(stat(path, &sb), 0);
		assert_true((uint64_t)sb.st_size <= max);
	}
	assert_int_equal(names_log_counters(l)->written, written);
	assert_int_equal(names_log_counters(l)->lost, 0);
	names_log_close(l);
	/* The newest mapping of every address is still there, and recent history too. */
	for (unsigned k = 0; k < 20; k++) {
		char want[64];

		snprintf(addr, sizeof(addr), "198.18.1.%u", k);
		snprintf(want, sizeof(want), "host-%u.example.test", 3980 + k);
		assert_int_equal(names_at(root, "s4", addr, 2000000, name, sizeof(name), ns, sizeof(ns)), 1);
		assert_string_equal(name, want);
	}
	assert_int_equal(names_at(root, "s4", "198.18.1.5", 1000000 + 3965, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(name, "host-3965.example.test");
	assert_int_equal(names_at(root, "s4", "198.18.1.5", 1000000 + 5, name, sizeof(name), ns, sizeof(ns)), 0);

	/* Mappings in effect alone above the bound: new events are lost, counted, said. */
	names_store_set_max(st, 300);
	l = names_log_open(st, "s4");
	m.n = 1;
	ev(&m.ev[0], 3000000, PROTO_NSRC_DNS, "198.18.2.1", 0, "new.test", "");
	assert_int_equal(names_log_append(l, &m, err, sizeof(err)), -ENOSPC);
	assert_non_null(strstr(err, "storage.names_max_size"));
	assert_int_equal(names_log_counters(l)->lost, 1);
	names_log_close(l);
	names_store_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_append_and_repeats),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_names_at),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_size_bound),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
