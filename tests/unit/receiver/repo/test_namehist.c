/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/repo/namehist.c: loading the part of a names.jsonl that a window
 * needs (the state at `from`, then the changes in (from, to)), the counts of lines read
 * and malformed, the names.jsonl and Kubeshark history written for the window, the
 * conversion of a Kubeshark history back into names.jsonl (and every shape it must
 * refuse, naming the problem), and the merge of several histories. Real files in a
 * temporary directory; the Kubeshark JSON is checked by parsing it back with jansson.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "receiver/repo/namehist.h"
#include "receiver/repo/names.h"
#include "shared/fsutil.h"
#include "tests/unit/testutil.h"

#define NS UINT64_C(1000000000)

static char dir[] = "/tmp/pcapline-test-namehist-XXXXXX";

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

static void
put(const char *rel, const char *text)
{
	tu_put(at(rel), text, strlen(text));
}

/* Runs fn into a memory stream and returns what it wrote (caller frees). */
struct sink {
	char *buf;
	size_t len;
	FILE *f;
};

static void
sink_open(struct sink *s)
{
	s->buf = NULL;
	s->len = 0;
	s->f = open_memstream(&s->buf, &s->len);
	assert_non_null(s->f);
}

static char *
sink_close(struct sink *s)
{
	assert_int_equal(fclose(s->f), 0);
	return s->buf;
}

/*
 * A history of two addresses around a window [100 s, 200 s):
 *   198.18.0.1 is a.example at 50 s, b.example at 90 s (in effect at from), c.example at
 *   150 s, and ends (empty name) at 170 s; 198.18.0.2 appears at 100 s exactly (in effect
 *   at from) and changes namespace at 150.5 s; 198.18.0.3 appears at 200 s (= to: out).
 * Plus two malformed lines, an empty line, and a last line without its newline.
 */
static const char history[] =
	"{\"t\":50000000000,\"addr\":\"198.18.0.1\",\"name\":\"a.example\",\"ns\":\"\",\"src\":\"dns\"}\n"
	"{\"t\":150000000000,\"addr\":\"198.18.0.1\",\"name\":\"c.example\",\"ns\":\"\",\"src\":\"dns\"}\n"
	"{\"t\":90000000000,\"addr\":\"198.18.0.1\",\"name\":\"b.example\",\"ns\":\"\",\"src\":\"dns\"}\n"
	"not json at all\n"
	"\n"
	"{\"t\":100000000000,\"addr\":\"198.18.0.2\",\"name\":\"svc\",\"ns\":\"prod\",\"src\":\"static\"}\n"
	"{\"t\":-1,\"addr\":\"198.18.0.9\",\"name\":\"neg\"}\n"
	"{\"t\":150500000000,\"addr\":\"198.18.0.2\",\"name\":\"svc\",\"ns\":\"dev\",\"src\":\"static\"}\n"
	"{\"t\":170000000000,\"addr\":\"198.18.0.1\",\"name\":\"\",\"ns\":\"\",\"src\":\"dns\"}\n"
	"{\"t\":200000000000,\"addr\":\"198.18.0.3\",\"name\":\"late\",\"ns\":\"\",\"src\":\"dns\"}\n"
	"{\"t\":120000000000,\"addr\":\"198.18.0.4\",\"name\":\"being-writ";

static void
test_load_and_jsonl(void **state)
{
	char err[256] = "", *out;
	struct namehist *h;
	struct sink s;
	size_t lines = 0;

	(void)state;
	put("names.jsonl", history);
	h = namehist_load(at("names.jsonl"), 100 * NS, 200 * NS, err, sizeof(err));
	assert_non_null(h);
	/* Nine complete non-empty lines, two of them malformed; the cut last line is not read. */
	assert_int_equal(namehist_lines(h), 9);
	assert_int_equal(namehist_bad_lines(h), 2);
	sink_open(&s);
	assert_int_equal(namehist_write_jsonl(h, s.f, &lines), 0);
	out = sink_close(&s);
	/* The state at from (by time), then the changes inside the window by time. The
	 * optional fields come out as given; b.example replaced a.example. */
	assert_int_equal(lines, 5);
	assert_string_equal(out,
		"{\"t\":90000000000,\"addr\":\"198.18.0.1\",\"name\":\"b.example\",\"ns\":\"\",\"src\":"
		"\"dns\"}"
		"\n"
		"{\"t\":100000000000,\"addr\":\"198.18.0.2\",\"name\":\"svc\",\"ns\":\"prod\",\"src\":"
		"\"static\"}\n"
		"{\"t\":150000000000,\"addr\":\"198.18.0.1\",\"name\":\"c.example\",\"ns\":\"\",\"src\":"
		"\"dns\"}\n"
		"{\"t\":150500000000,\"addr\":\"198.18.0.2\",\"name\":\"svc\",\"ns\":\"dev\",\"src\":"
		"\"static\"}\n"
		"{\"t\":170000000000,\"addr\":\"198.18.0.1\",\"name\":\"\",\"ns\":\"\",\"src\":\"dns\"}\n");
	free(out);
	namehist_free(h);
}

/* The Kubeshark file as a jansson object (caller decrefs). */
static json_t *
kubeshark_of(const struct namehist *h, size_t *keys)
{
	struct sink s;
	json_error_t jerr;
	json_t *root;
	char *out;

	sink_open(&s);
	assert_int_equal(namehist_write_kubeshark(h, s.f, keys), 0);
	out = sink_close(&s);
	root = json_loads(out, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		fail_msg("not JSON (%s): %s", jerr.text, out);
	free(out);
	assert_true(json_is_object(root));
	return root;
}

static void
expect_entry(json_t *root, const char *key, const char *addr, const char *name, const char *ns)
{
	json_t *m = json_object_get(root, key), *e;

	if (m == NULL)
		fail_msg("no key %s", key);
	e = json_object_get(m, addr);
	if (e == NULL)
		fail_msg("key %s: no %s", key, addr);
	assert_int_equal(json_object_size(e), 2);
	assert_string_equal(json_string_value(json_object_get(e, "FullAddress")), name);
	assert_string_equal(json_string_value(json_object_get(e, "Namespace")), ns);
}

static void
test_kubeshark_window(void **state)
{
	char err[256] = "";
	struct namehist *h;
	json_t *root;
	size_t keys = 0;

	(void)state;
	put("names.jsonl", history);
	h = namehist_load(at("names.jsonl"), 100 * NS, 200 * NS, err, sizeof(err));
	assert_non_null(h);
	root = kubeshark_of(h, &keys);
	/* Key 100: the state at from. Key 150: both changes of that second collapsed into the
	 * state at its end. Key 170: 198.18.0.1 gone. Every key holds the full map. */
	assert_int_equal(keys, 3);
	assert_int_equal(json_object_size(root), 3);
	assert_int_equal(json_object_size(json_object_get(root, "100")), 2);
	expect_entry(root, "100", "198.18.0.1", "b.example", "");
	expect_entry(root, "100", "198.18.0.2", "svc", "prod");
	assert_int_equal(json_object_size(json_object_get(root, "150")), 2);
	expect_entry(root, "150", "198.18.0.1", "c.example", "");
	expect_entry(root, "150", "198.18.0.2", "svc", "dev");
	assert_int_equal(json_object_size(json_object_get(root, "170")), 1);
	expect_entry(root, "170", "198.18.0.2", "svc", "dev");
	json_decref(root);
	namehist_free(h);

	/* A window before everything: an empty object, no keys. */
	h = namehist_load(at("names.jsonl"), 0, 10 * NS, err, sizeof(err));
	assert_non_null(h);
	root = kubeshark_of(h, &keys);
	assert_int_equal(keys, 0);
	assert_int_equal(json_object_size(root), 0);
	json_decref(root);
	namehist_free(h);
}

static void
test_load_missing_and_unreadable(void **state)
{
	char err[256] = "";
	struct namehist *h;
	struct sink s;
	size_t lines = 9;
	char *out;

	(void)state;
	/* A sensor without a history: empty, not an error. */
	h = namehist_load(at("none.jsonl"), 0, 100 * NS, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(namehist_lines(h), 0);
	assert_int_equal(namehist_bad_lines(h), 0);
	sink_open(&s);
	assert_int_equal(namehist_write_jsonl(h, s.f, &lines), 0);
	out = sink_close(&s);
	assert_int_equal(lines, 0);
	assert_string_equal(out, "");
	free(out);
	namehist_free(h);
	/* A directory where the file should be is an error that names the path. */
	assert_int_equal(fsu_mkdirs(at("isdir.jsonl"), 0755), 0);
	h = namehist_load(at("isdir.jsonl"), 0, 100 * NS, err, sizeof(err));
	assert_null(h);
	assert_non_null(strstr(err, at("isdir.jsonl")));
	assert_int_equal(rmdir(at("isdir.jsonl")), 0);
}

static void
test_malformed_lines(void **state)
{
	char err[256] = "";
	struct namehist *h;
	char *big;
	size_t n = NAMES_LINE_MAX + 10;
	FILE *f;

	(void)state;
	/* Each of these lines is malformed for one reason. */
	put("bad.jsonl",
		"[1,2]\n"
		"{\"addr\":\"198.18.0.1\",\"name\":\"x\"}\n"                        /* no t */
		"{\"t\":\"5\",\"addr\":\"198.18.0.1\",\"name\":\"x\"}\n"            /* t a string */
		"{\"t\":5,\"addr\":\"\",\"name\":\"x\"}\n"                          /* empty addr */
		"{\"t\":5,\"addr\":\"198.18.0.1\"}\n"                               /* no name */
		"{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":7}\n"                    /* name a number */
		"{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":\"a\\u0000b\"}\n"        /* embedded NUL */
		"{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":\"x\",\"name\":\"y\"}\n" /* duplicate key */
		"{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":\"x\",\"ns\":1}\n"       /* ns a number */
		"{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":\"ok\"}\n");             /* the good one */
	h = namehist_load(at("bad.jsonl"), 10, 20, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(namehist_lines(h), 10);
	assert_int_equal(namehist_bad_lines(h), 9);
	namehist_free(h);

	/* A line longer than NAMES_LINE_MAX is malformed, whatever it holds. */
	big = malloc(n + 1);
	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"t\":5,\"addr\":\"198.18.0.1\",\"name\":\"x\"", 35);
	big[n - 2] = '}';
	big[n - 1] = '\n';
	big[n] = '\0';
	f = fopen(at("long.jsonl"), "w");
	assert_non_null(f);
	assert_int_equal(fputs(big, f) >= 0, 1);
	fclose(f);
	free(big);
	h = namehist_load(at("long.jsonl"), 10, 20, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(namehist_lines(h), 1);
	assert_int_equal(namehist_bad_lines(h), 1);
	namehist_free(h);
}

static void
test_from_kubeshark(void **state)
{
	char err[256] = "", *out;
	struct sink s;
	size_t lines = 0;

	(void)state;
	/* Keys out of order; the entry for 198.18.0.2 is the same at 200 (no line), the one of
	 * 198.18.0.1 goes away at 300 (an empty name), an IPv6 address is canonicalised. */
	put("ks.json",
		"{\"300\": {\"198.18.0.2:80\": {\"FullAddress\": \"web\", \"Namespace\": \"prod\"}},\n"
		" \"100\": {\"198.18.0.1\": {\"FullAddress\": \"db\", \"Namespace\": \"prod\"},\n"
		"           \"[2001:DB8::1]:443\": {\"FullAddress\": \"v6\"}},\n"
		" \"200\": {\"198.18.0.1\": {\"FullAddress\": \"db\", \"Namespace\": \"prod\"},\n"
		"           \"198.18.0.2:80\": {\"FullAddress\": \"web\", \"Namespace\": \"prod\"}}}\n");
	sink_open(&s);
	assert_int_equal(namehist_from_kubeshark(at("ks.json"), 1 << 20, s.f, &lines, err, sizeof(err)), 0);
	out = sink_close(&s);
	assert_int_equal(lines, 5);
	assert_string_equal(out,
		"{\"t\":100000000000,\"addr\":\"198.18.0.1\",\"name\":\"db\",\"ns\":\"prod\",\"src\":"
		"\"static\"}\n"
		"{\"t\":100000000000,\"addr\":\"[2001:db8::1]:443\",\"name\":\"v6\",\"ns\":\"\",\"src\":"
		"\"static\"}\n"
		"{\"t\":200000000000,\"addr\":\"198.18.0.2:80\",\"name\":\"web\",\"ns\":\"prod\",\"src\":"
		"\"static\"}\n"
		"{\"t\":200000000000,\"addr\":\"[2001:db8::1]:443\",\"name\":\"\",\"ns\":\"\",\"src\":"
		"\"static\"}\n"
		"{\"t\":300000000000,\"addr\":\"198.18.0.1\",\"name\":\"\",\"ns\":\"\",\"src\":\"static\"}"
		"\n");
	free(out);

	/* What the conversion writes reads back as a history with the same state. */
	{
		struct namehist *h;
		json_t *root;
		size_t keys;

		sink_open(&s);
		assert_int_equal(
			namehist_from_kubeshark(at("ks.json"), 1 << 20, s.f, NULL, err, sizeof(err)), 0);
		out = sink_close(&s);
		put("conv.jsonl", out);
		free(out);
		h = namehist_load(at("conv.jsonl"), 100 * NS, 1000 * NS, err, sizeof(err));
		assert_non_null(h);
		assert_int_equal(namehist_bad_lines(h), 0);
		root = kubeshark_of(h, &keys);
		assert_int_equal(keys, 3);
		assert_int_equal(json_object_size(json_object_get(root, "100")), 2);
		expect_entry(root, "100", "[2001:db8::1]:443", "v6", "");
		assert_int_equal(json_object_size(json_object_get(root, "200")), 2);
		expect_entry(root, "200", "198.18.0.2:80", "web", "prod");
		assert_int_equal(json_object_size(json_object_get(root, "300")), 1);
		json_decref(root);
		namehist_free(h);
	}
}

/* Converts text and expects failure with msg in err. */
static void
ks_refused(const char *text, size_t max, const char *msg)
{
	char err[256] = "";
	struct sink s;
	size_t lines = 77;
	char *out;

	put("bad.json", text);
	sink_open(&s);
	assert_int_equal(namehist_from_kubeshark(at("bad.json"), max, s.f, &lines, err, sizeof(err)), -1);
	out = sink_close(&s);
	free(out);
	if (strstr(err, msg) == NULL)
		fail_msg("for %s: got '%s', want '%s'", text, err, msg);
	assert_int_equal(lines, 77);
}

static void
test_from_kubeshark_refused(void **state)
{
	(void)state;
	ks_refused("{\"100\": {}", 1024, "not valid JSON");
	ks_refused("[1]", 1024, "not a JSON object");
	ks_refused("{\"abc\": {}}", 1024, "key 'abc' is not Unix seconds");
	ks_refused("{\"\": {}}", 1024, "is not Unix seconds");
	ks_refused("{\"-5\": {}}", 1024, "is not Unix seconds");
	ks_refused("{\"123456789012\": {}}", 1024, "is not Unix seconds");
	ks_refused("{\"100\": []}", 1024, "value of key 100 is not an object");
	ks_refused("{\"100\": {\"host.example\": {\"FullAddress\": \"x\"}}}", 1024,
		"key 100: 'host.example' is not an address");
	ks_refused("{\"100\": {\"198.18.0.1\": {\"Namespace\": \"x\"}}}", 1024,
		"key 100: entry '198.18.0.1' is not {\"FullAddress\": string");
	ks_refused("{\"100\": {\"198.18.0.1\": {\"FullAddress\": 5}}}", 1024, "entry '198.18.0.1'");
	ks_refused("{\"100\": {\"198.18.0.1\": {\"FullAddress\": \"a\", \"Namespace\": []}}}", 1024,
		"entry '198.18.0.1'");
	ks_refused("{\"100\": {}, \"0100\": {}}", 1024, "are the same second");
	ks_refused("{\"100\": {}, \"100\": {}}", 1024, "not valid JSON");
	ks_refused("{\"100\": {}}", 5, "larger than 5 bytes");
}

static void
test_from_kubeshark_beyond_2262(void **state)
{
	char err[256] = "";
	struct sink s;
	char *out;
	int rc;

	(void)state;
	/* names.jsonl holds t as a JSON integer, read back as a signed 64-bit number: a key
	 * whose nanoseconds do not fit (after 2262-04-11) must be refused here, not written
	 * as a line that every later reader counts as malformed (or, beyond 2^64 ns, as a
	 * wrapped-around time). */
	ks_refused(
		"{\"9223372037\": {\"198.18.0.1\": {\"FullAddress\": \"x\"}}}", 1024, "is not Unix seconds");
	ks_refused(
		"{\"99999999999\": {\"198.18.0.1\": {\"FullAddress\": \"x\"}}}", 1024, "is not Unix seconds");
	/* The last second that fits is fine. */
	put("edge.json", "{\"9223372036\": {\"198.18.0.1\": {\"FullAddress\": \"x\"}}}");
	sink_open(&s);
	rc = namehist_from_kubeshark(at("edge.json"), 1024, s.f, NULL, err, sizeof(err));
	out = sink_close(&s);
	assert_int_equal(rc, 0);
	assert_string_equal(out,
		"{\"t\":9223372036000000000,\"addr\":\"198.18.0.1\",\"name\":\"x\",\"ns\":\"\",\"src\":"
		"\"static\"}\n");
	free(out);
}

static void
test_from_kubeshark_missing_file(void **state)
{
	char err[256] = "";
	struct sink s;

	(void)state;
	sink_open(&s);
	assert_int_equal(namehist_from_kubeshark(at("nope.json"), 1024, s.f, NULL, err, sizeof(err)), -1);
	free(sink_close(&s));
	/* The problem is the missing file, not its size. */
	assert_non_null(strstr(err, "No such file or directory"));
}

static void
test_merge(void **state)
{
	char err[256] = "", *out;
	struct sink s;
	const char *paths[3];

	(void)state;
	put("m1.jsonl",
		"{\"t\":20,\"addr\":\"198.18.0.1\",\"name\":\"b\",\"ns\":\"\",\"src\":\"dns\"}\n"
		"{\"t\":10,\"addr\":\"198.18.0.1\",\"name\":\"a\",\"ns\":\"\",\"src\":\"dns\"}\n"
		"garbage\n"
		"{\"t\":30,\"addr\":\"198.18.0.2\",\"name\":\"x\",\"ns\":\"\",\"src\":\"dns\"}\n");
	/* An exact repeat (t, addr, name, ns) of m1's line at 20 is dropped; the one at 30
	 * for 198.18.0.2 follows m1's line for it at 30 with another name, so it stays, and
	 * after it m1's value is not repeated. */
	put("m2.jsonl",
		"{\"t\":20,\"addr\":\"198.18.0.1\",\"name\":\"b\",\"ns\":\"\",\"src\":\"static\"}\n"
		"{\"t\":30,\"addr\":\"198.18.0.2\",\"name\":\"y\",\"ns\":\"\",\"src\":\"static\"}\n"
		"{\"t\":5,\"addr\":\"198.18.0.3\",\"name\":\"z\",\"ns\":\"\",\"src\":\"static\"}\n");
	paths[0] = at("m1.jsonl");
	paths[1] = at("missing.jsonl");
	paths[2] = at("m2.jsonl");
	sink_open(&s);
	assert_int_equal(namehist_merge_jsonl(paths, 3, s.f, err, sizeof(err)), 0);
	out = sink_close(&s);
	assert_string_equal(out,
		"{\"t\":5,\"addr\":\"198.18.0.3\",\"name\":\"z\",\"ns\":\"\",\"src\":\"static\"}\n"
		"{\"t\":10,\"addr\":\"198.18.0.1\",\"name\":\"a\",\"ns\":\"\",\"src\":\"dns\"}\n"
		"{\"t\":20,\"addr\":\"198.18.0.1\",\"name\":\"b\",\"ns\":\"\",\"src\":\"dns\"}\n"
		"{\"t\":30,\"addr\":\"198.18.0.2\",\"name\":\"x\",\"ns\":\"\",\"src\":\"dns\"}\n"
		"{\"t\":30,\"addr\":\"198.18.0.2\",\"name\":\"y\",\"ns\":\"\",\"src\":\"static\"}\n");
	free(out);
	/* No files at all: nothing written. */
	sink_open(&s);
	assert_int_equal(namehist_merge_jsonl(paths, 0, s.f, err, sizeof(err)), 0);
	out = sink_close(&s);
	assert_string_equal(out, "");
	free(out);
	/* An unreadable input is an error naming it. */
	assert_int_equal(fsu_mkdirs(at("d.jsonl"), 0755), 0);
	paths[1] = at("d.jsonl");
	sink_open(&s);
	assert_int_equal(namehist_merge_jsonl(paths, 3, s.f, err, sizeof(err)), -1);
	free(sink_close(&s));
	assert_non_null(strstr(err, at("d.jsonl")));
	assert_int_equal(rmdir(at("d.jsonl")), 0);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	return fsu_rmtree(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_and_jsonl),
		cmocka_unit_test(test_kubeshark_window),
		cmocka_unit_test(test_load_missing_and_unreadable),
		cmocka_unit_test(test_malformed_lines),
		cmocka_unit_test(test_from_kubeshark),
		cmocka_unit_test(test_from_kubeshark_refused),
		cmocka_unit_test(test_from_kubeshark_beyond_2262),
		cmocka_unit_test(test_from_kubeshark_missing_file),
		cmocka_unit_test(test_merge),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
