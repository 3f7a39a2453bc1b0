/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for the names.jsonl format (receiver/repo/names.c) and its readers: the exact
 * bytes of a line, what the parser accepts and refuses (limits, hostile input), and a
 * history with malformed, overlong and torn lines read by names_at() and namehist_load().
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/fsutil.h"
#include "receiver/repo/namehist.h"
#include "receiver/repo/names.h"

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static bool
parse(const char *s, struct names_line *l)
{
	return names_line_parse(s, strlen(s), l);
}

static void
test_format_bytes(void **state)
{
	char buf[256];

	/* The bytes the receiver wrote before jansson did it, key order included. */
	assert_int_equal(names_line_format(1700000000123456789ull, "198.18.0.1:53", "db.example", "prod",
				 "dns", buf, sizeof(buf)),
		93);
	assert_string_equal(buf,
		"{\"t\":1700000000123456789,\"addr\":\"198.18.0.1:53\",\"name\":\"db.example\",\"ns\":"
		"\"prod\","
		"\"src\":\"dns\"}\n");
	assert_int_equal(names_line_format(0, "::1", "", "", "", buf, sizeof(buf)), 48);
	assert_string_equal(buf, "{\"t\":0,\"addr\":\"::1\",\"name\":\"\",\"ns\":\"\",\"src\":\"\"}\n");
	/* Escapes that read back as written. */
	assert_true(
		names_line_format(5, "1.2.3.4", "a\"b\\c\x01", "n\xc3\xa9", "static", buf, sizeof(buf)) > 0);
	assert_string_equal(buf,
		"{\"t\":5,\"addr\":\"1.2.3.4\",\"name\":\"a\\\"b\\\\c\\u0001\",\"ns\":\"n\xc3\xa9\","
		"\"src\":\"static\"}\n");
	struct names_line l;
	assert_true(names_line_parse(buf, strlen(buf) - 1, &l));
	assert_string_equal(l.name, "a\"b\\c\x01");
	assert_string_equal(l.ns, "n\xc3\xa9");
	/* Like snprintf: the length needed when it does not fit, never beyond cap. */
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(names_line_format(1, "1.2.3.4", "a", "", "dns", buf, 10), 56);
	assert_int_equal(buf[10], 'x');
	/* What no reader could take back is refused. */
	assert_int_equal(
		names_line_format((uint64_t)INT64_MAX + 1, "1.2.3.4", "a", "", "dns", buf, sizeof(buf)),
		-ERANGE);
	assert_true(names_line_format(INT64_MAX, "1.2.3.4", "a", "", "dns", buf, sizeof(buf)) > 0);
	assert_int_equal(names_line_format(1, "1.2.3.4", "\xff", "", "dns", buf, sizeof(buf)), -EINVAL);
}

static void
test_parse_limits(void **state)
{
	struct names_line l;

	assert_true(parse("{\"t\":7,\"addr\":\"198.18.0.1\",\"name\":\"x\"}", &l));
	assert_true(l.t == 7 && !l.cut);
	assert_string_equal(l.ns, "");
	assert_string_equal(l.src, "");
	/* Unknown keys, nested as deep as they like, are skipped. */
	assert_true(parse(
		"{\"x\":[[[[{\"y\":[1,2,{}]}]]]],\"t\":1,\"addr\":\"a\",\"name\":\"\",\"ns\":\"n\"}", &l));
	assert_true(parse(" {\"t\":9223372036854775807,\"addr\":\"a\",\"name\":\"b\"} ", &l));
	assert_true(l.t == INT64_MAX);

	static const char *bad[] = {
		"",
		"[]",
		"{}",
		"null",
		"{\"addr\":\"a\",\"name\":\"b\"}",        /* no t */
		"{\"t\":1,\"name\":\"b\"}",               /* no addr */
		"{\"t\":1,\"addr\":\"a\"}",               /* no name */
		"{\"t\":1,\"addr\":\"\",\"name\":\"b\"}", /* empty addr */
		"{\"t\":-1,\"addr\":\"a\",\"name\":\"b\"}",
		"{\"t\":1.5,\"addr\":\"a\",\"name\":\"b\"}",
		"{\"t\":\"1\",\"addr\":\"a\",\"name\":\"b\"}",
		"{\"t\":9223372036854775808,\"addr\":\"a\",\"name\":\"b\"}", /* above 2^63-1 */
		"{\"t\":1,\"t\":2,\"addr\":\"a\",\"name\":\"b\"}",           /* a key twice */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"b\\u0000c\"}",           /* a NUL */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"\xff\"}",                /* not UTF-8 */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"\\ud800\"}",             /* a lone surrogate */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"b\"} x",                 /* trailing text */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"b\"",                    /* cut short */
		"{\"t\":1,\"addr\":\"a\",\"name\":\"b\",\"src\":5}",         /* src not a string */
		"{\"t\":1,\"addr\":\"a\",\"name\":null}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], &l))
			fail_msg("accepted: %s", bad[i]);
	/* Never reads beyond n: the same text cut before its closing brace is refused. */
	const char *s = "{\"t\":1,\"addr\":\"a\",\"name\":\"b\"}";
	assert_false(names_line_parse(s, strlen(s) - 1, &l));

	/* Strings: NAMES_FIELD_MAX bytes kept whole, longer ones cut (and flagged). */
	char *line = malloc(NAMES_LINE_MAX + 64), *p;
	assert_non_null(line);
	p = line + sprintf(line, "{\"t\":1,\"addr\":\"a\",\"name\":\"");
	memset(p, 'n', NAMES_FIELD_MAX);
	strcpy(p + NAMES_FIELD_MAX, "\"}");
	assert_true(parse(line, &l));
	assert_false(l.cut);
	assert_int_equal(strlen(l.name), NAMES_FIELD_MAX);
	memset(p, 'n', NAMES_FIELD_MAX + 1);
	strcpy(p + NAMES_FIELD_MAX + 1, "\"}");
	assert_true(parse(line, &l));
	assert_true(l.cut);
	assert_int_equal(strlen(l.name), NAMES_FIELD_MAX);
	/* A line longer than NAMES_LINE_MAX is malformed, whatever it holds. */
	memset(p, 'n', NAMES_LINE_MAX);
	strcpy(p + NAMES_LINE_MAX, "\"}");
	assert_false(parse(line, &l));
	free(line);
}

static void
write_file(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, n, f), n);
	fclose(f);
}

/* A history with every kind of bad line: names_at() and namehist_load() skip them,
 * count them where they report, and answer from the good ones. */
static void
test_history_with_bad_lines(void **state)
{
	char dir[] = "/tmp/pcapline-test-names-XXXXXX", p[256], name[64], ns[64], err[256];
	size_t big = NAMES_LINE_MAX + 10;
	char *text = malloc(big + 1024), *w = text;

	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/sensors", dir);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/sensors/s1", dir);
	mkdir(p, 0750);
	w += sprintf(
		w, "{\"t\":100,\"addr\":\"198.18.0.1\",\"name\":\"one\",\"ns\":\"a\",\"src\":\"dns\"}\n");
	w += sprintf(w, "not json\n");
	/* An overlong line that would otherwise rename the address. */
	w += sprintf(w, "{\"t\":150,\"addr\":\"198.18.0.1\",\"name\":\"");
	memset(w, 'x', big);
	w += big;
	w += sprintf(w, "\"}\n");
	w += sprintf(w, "{\"t\":200,\"addr\":\"198.18.0.1\",\"name\":\"two\",\"t\":1}\n"); /* a key twice */
	w += sprintf(w, "\n");
	w += sprintf(
		w, "{\"t\":300,\"addr\":\"198.18.0.1\",\"name\":\"three\",\"ns\":\"c\",\"src\":\"hosts\"}\n");
	w += sprintf(w, "{\"t\":400,\"addr\":\"198.18.0.1\",\"name\":\"torn"); /* being appended */
	snprintf(p, sizeof(p), "%s/sensors/s1/names.jsonl", dir);
	write_file(p, text, (size_t)(w - text));

	assert_int_equal(names_at(dir, "s1", "198.18.0.1", 160, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(name, "one");
	assert_int_equal(names_at(dir, "s1", "198.18.0.1", 250, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(name, "one");
	assert_int_equal(names_at(dir, "s1", "198.18.0.1:80", 500, name, sizeof(name), ns, sizeof(ns)), 1);
	assert_string_equal(name, "three");
	assert_string_equal(ns, "c");
	assert_int_equal(names_at(dir, "s1", "198.18.0.1", 99, name, sizeof(name), ns, sizeof(ns)), 0);
	assert_int_equal(names_at(dir, "s2", "198.18.0.1", 99, name, sizeof(name), ns, sizeof(ns)), -ENOENT);
	assert_int_equal(
		names_at(dir, "../s1", "198.18.0.1", 99, name, sizeof(name), ns, sizeof(ns)), -EINVAL);

	/* The export's reader: 5 lines (the empty one and the torn one are not lines), 3 bad. */
	struct namehist *h = namehist_load(p, 0, 1000, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(namehist_lines(h), 5);
	assert_int_equal(namehist_bad_lines(h), 3);
	FILE *out = tmpfile();
	size_t lines = 0;
	assert_int_equal(namehist_write_jsonl(h, out, &lines), 0);
	assert_int_equal(lines, 2);
	rewind(out);
	char got[512] = "";
	assert_true(fread(got, 1, sizeof(got) - 1, out) > 0);
	assert_string_equal(got,
		"{\"t\":100,\"addr\":\"198.18.0.1\",\"name\":\"one\",\"ns\":\"a\",\"src\":\"dns\"}\n"
		"{\"t\":300,\"addr\":\"198.18.0.1\",\"name\":\"three\",\"ns\":\"c\",\"src\":\"hosts\"}\n");
	fclose(out);
	out = tmpfile();
	size_t keys = 0;
	assert_int_equal(namehist_write_kubeshark(h, out, &keys), 0);
	assert_int_equal(keys, 1); /* both changes fall in second 0: its state at the end */
	rewind(out);
	memset(got, 0, sizeof(got));
	assert_true(fread(got, 1, sizeof(got) - 1, out) > 0);
	assert_string_equal(
		got, "{\n\"0\":{\"198.18.0.1\":{\"FullAddress\":\"three\",\"Namespace\":\"c\"}}\n}\n");
	fclose(out);
	namehist_free(h);
	free(text);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(fsu_rmtree(dir), 0);
}

/* Kubeshark keys are seconds; one whose nanoseconds do not fit a names.jsonl time is
 * refused instead of wrapping around into another time. */
static void
test_kubeshark_key_range(void **state)
{
	char path[] = "/tmp/pcapline-test-ks-XXXXXX", err[256] = "", *out = NULL;
	size_t outlen = 0, lines = 0;
	int fd = mkstemp(path);
	FILE *o;

	assert_true(fd >= 0);
	static const char far[] = "{\"99999999999\":{\"198.18.0.1\":{\"FullAddress\":\"far\"}}}";
	assert_int_equal(write(fd, far, sizeof(far) - 1), (ssize_t)sizeof(far) - 1);
	close(fd);
	o = open_memstream(&out, &outlen);
	assert_int_equal(namehist_from_kubeshark(path, 1 << 20, o, &lines, err, sizeof(err)), -1);
	fclose(o);
	assert_string_equal(err, "key '99999999999' is not Unix seconds (after the year 2262)");
	assert_int_equal(outlen, 0);
	free(out);

	static const char last[] = "{\"9223372036\":{\"198.18.0.1\":{\"FullAddress\":\"last\"}}}";
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, last, sizeof(last) - 1), (ssize_t)sizeof(last) - 1);
	close(fd);
	o = open_memstream(&out, &outlen);
	assert_int_equal(namehist_from_kubeshark(path, 1 << 20, o, &lines, err, sizeof(err)), 0);
	fclose(o);
	assert_string_equal(out,
		"{\"t\":9223372036000000000,\"addr\":\"198.18.0.1\",\"name\":\"last\",\"ns\":\"\","
		"\"src\":\"static\"}\n");
	free(out);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_history_with_bad_lines),
		cmocka_unit_test(test_kubeshark_key_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
