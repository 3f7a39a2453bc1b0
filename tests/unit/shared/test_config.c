/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for shared/config.c. Error cases are tables of input and the exact one-line
 * message, because the message is the user interface of a configuration loader. Run
 * under ASan/LSan: every test frees through cfg_free, so a leak anywhere fails the run.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/config.h"

/* One field of every type, plus a key exactly as deep as the loader allows. */
struct tcfg {
	char *name;
	char *filter;
	int64_t snaplen;
	bool promisc;
	uint64_t buffer;
	uint64_t timeout;
	struct cfg_strlist ifaces;
	uint64_t max_bytes;
	uint64_t linger;
	int mode;
	int64_t offset;
	char *deep;
};

static const char *const modes[] = { "fast", "safe", "auto", NULL };

#define F(m) offsetof(struct tcfg, m)
static const struct cfg_key schema[] = {
	{ "name", CFG_STR, F(name), 0, 0, NULL, "sensor name" },
	{ "capture.filter", CFG_STR, F(filter), 0, 0, NULL, "BPF filter" },
	{ "capture.snaplen", CFG_INT, F(snaplen), 1, 262144, NULL, "bytes kept per packet" },
	{ "capture.promisc", CFG_BOOL, F(promisc), 0, 0, NULL, "promiscuous mode" },
	{ "capture.buffer", CFG_SIZE, F(buffer), 4096, 1 << 30, NULL, "ring buffer size" },
	{ "capture.timeout", CFG_DURATION, F(timeout), 1, 3600000, NULL, "read timeout" },
	{ "capture.interfaces", CFG_STRLIST, F(ifaces), 0, 0, NULL, "interfaces" },
	{ "spool.max_bytes", CFG_SIZE, F(max_bytes), 0, 0, NULL, "spool size" },
	{ "spool.linger", CFG_DURATION, F(linger), 0, 0, NULL, "linger" },
	{ "spool.mode", CFG_ENUM, F(mode), 0, 0, modes, "spool mode" },
	{ "tune.offset", CFG_INT, F(offset), 0, 0, NULL, "any integer" },
	{ "a.b.c.d.e.f.g.h", CFG_STR, F(deep), 0, 0, NULL, "eight levels deep" },
	{ NULL, 0, 0, 0, 0, NULL, NULL },
};
#undef F

static char tmpdir[] = "/tmp/test_config.XXXXXX";

/* Defaults as a daemon sets them: heap strings, so that replacing them is exercised. */
static void
defaults(struct tcfg *c)
{
	memset(c, 0, sizeof(*c));
	c->name = strdup("default");
	c->snaplen = 65535;
	c->buffer = 2 << 20;
	c->timeout = 1000;
	c->ifaces.v = malloc(sizeof(char *));
	c->ifaces.v[0] = strdup("any");
	c->ifaces.n = 1;
	c->mode = 2;
}

/* Writes a file under the temporary directory and returns its path (static buffer). */
static const char *
write_file(const char *name, const char *data, size_t len)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* Returns the value part of "path = value" from cfg_dump, in a static buffer. */
static const char *
dumped(const struct tcfg *c, const char *path)
{
	static char line[1024];
	char *buf = NULL;
	size_t len = 0, plen = strlen(path);
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	cfg_dump(schema, c, f);
	assert_int_equal(fclose(f), 0);
	line[0] = '\0';
	for (char *p = buf; p != NULL && *p != '\0';) {
		char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n > plen + 3 && strncmp(p, path, plen) == 0 && strncmp(p + plen, " = ", 3) == 0) {
			snprintf(line, sizeof(line), "%.*s", (int)(n - plen - 3), p + plen + 3);
			break;
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	free(buf);
	return line;
}

/* Clears every PCAPLINE_* variable so that the caller's environment cannot leak in. */
static void
clear_env(void)
{
	for (;;) {
		char name[256] = "";
		for (char **e = environ; *e != NULL; e++) {
			if (strncmp(*e, "PCAPLINE_", 9) == 0) {
				size_t n = strcspn(*e, "=");
				snprintf(name, sizeof(name), "%.*s", (int)n, *e);
				break;
			}
		}
		if (name[0] == '\0')
			return;
		unsetenv(name);
	}
}

static int
setup(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

static int
group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

/* Removes what the tests created: plain files and empty subdirectories. */
static int
group_teardown(void **state)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char path[512];

	(void)state;
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		if (unlink(path) != 0)
			rmdir(path);
	}
	closedir(d);
	return rmdir(tmpdir);
}

/* ------------------------------------------------------------------------------- */

static void
test_valid_file(void **state)
{
	static const char yaml[] = "# A complete sensor configuration.\n"
				   "name: sensor-1\n"
				   "capture:\n"
				   "  filter: \"tcp port 80\"\n"
				   "  snaplen: 1500\n"
				   "  promisc: yes\n"
				   "  buffer: 16MiB\n"
				   "  timeout: 250ms\n"
				   "  interfaces:\n"
				   "    - eth0\n"
				   "    - 'eth1'\n"
				   "spool:\n"
				   "  max_bytes: 2GiB\n"
				   "  linger: 5s\n"
				   "  mode: safe\n"
				   "tune:\n"
				   "  offset: -42\n"
				   "a: {b: {c: {d: {e: {f: {g: {h: deep}}}}}}}\n";
	struct tcfg c;
	char err[CFG_ERRLEN] = "";

	(void)state;
	defaults(&c);
	const char *path = write_file("valid.yaml", yaml, sizeof(yaml) - 1);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.name, "sensor-1");
	assert_string_equal(c.filter, "tcp port 80");
	assert_int_equal(c.snaplen, 1500);
	assert_true(c.promisc);
	assert_int_equal(c.buffer, 16 << 20);
	assert_int_equal(c.timeout, 250);
	assert_int_equal(c.ifaces.n, 2);
	assert_string_equal(c.ifaces.v[0], "eth0");
	assert_string_equal(c.ifaces.v[1], "eth1");
	assert_int_equal(c.max_bytes, 2ULL << 30);
	assert_int_equal(c.linger, 5000);
	assert_int_equal(c.mode, 1);
	assert_int_equal(c.offset, -42);
	assert_string_equal(c.deep, "deep");
	cfg_free(schema, &c);
}

/* A file that sets nothing leaves every default alone. */
static void
test_defaults_kept(void **state)
{
	static const char *const empties[] = { "", "# only a comment\n", "---\n", "~\n", "---\n...\n",
		"capture:\n" };
	struct tcfg c;
	char err[CFG_ERRLEN] = "";

	(void)state;
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		defaults(&c);
		assert_int_equal(
			cfg_load_mem(schema, &c, "t.yaml", empties[i], strlen(empties[i]), err, sizeof(err)),
			0);
		assert_string_equal(c.name, "default");
		assert_null(c.filter);
		assert_int_equal(c.snaplen, 65535);
		assert_int_equal(c.ifaces.n, 1);
		assert_int_equal(c.mode, 2);
		cfg_free(schema, &c);
	}
}

struct file_case {
	const char *yaml;
	const char *path;   /* key to check with cfg_dump */
	const char *dumped; /* its expected rendering */
};

/* Valid documents, each checked through the cfg_dump rendering of one key. */
static const struct file_case valid_files[] = {
	{ "name: ~\n", "name", "\"\"" },
	{ "name:\n", "name", "\"\"" },
	{ "name: null\n", "name", "\"\"" },
	{ "name: 'null'\n", "name", "\"null\"" },
	{ "name: '~'\n", "name", "\"~\"" },
	{ "name: yes\n", "name", "\"yes\"" },
	{ "name: 010\n", "name", "\"010\"" },
	{ "name: \"say \\\"hi\\\"\"\n", "name", "\"say \\\"hi\\\"\"" },
	{ "name: \"bell\\a\"\n", "name", "\"bell\\x07\"" },
	{ "capture:\n  filter: |\n    tcp\n    port 80\n", "capture.filter", "\"tcp\\nport 80\\n\"" },
	{ "capture:\n  filter: >-\n    tcp\n    port 80\n", "capture.filter", "\"tcp port 80\"" },
	{ "{name: x, capture: {snaplen: 9}}\n", "capture.snaplen", "9" },
	{ "\xef\xbb\xbfname: bom\n", "name", "\"bom\"" },
	{ "capture:\n  snaplen: '77'\n", "capture.snaplen", "77" },
	{ "capture:\n  snaplen: 262144\n", "capture.snaplen", "262144" },
	{ "capture:\n  snaplen: 1\n", "capture.snaplen", "1" },
	{ "capture:\n  promisc: \"YES\"\n", "capture.promisc", "true" },
	{ "capture:\n  promisc: Off\n", "capture.promisc", "false" },
	{ "capture:\n  buffer: 4096\n", "capture.buffer", "4096" },
	{ "capture:\n  buffer: 1GiB\n", "capture.buffer", "1073741824" },
	{ "capture:\n  timeout: 1h\n", "capture.timeout", "3600000ms" },
	{ "capture:\n  interfaces: eth0, eth1\n", "capture.interfaces", "[eth0, eth1]" },
	{ "capture:\n  interfaces: ' eth0 ,, eth1 ,'\n", "capture.interfaces", "[eth0, eth1]" },
	{ "capture:\n  interfaces: [a, 'b,c', ' d']\n", "capture.interfaces", "[a, \"b,c\", \" d\"]" },
	{ "capture:\n  interfaces: []\n", "capture.interfaces", "[]" },
	{ "capture:\n  interfaces: ~\n", "capture.interfaces", "[]" },
	{ "capture:\n  interfaces: ''\n", "capture.interfaces", "[]" },
	{ "capture:\n  interfaces:\n  - x\n", "capture.interfaces", "[x]" },
	{ "spool:\n  max_bytes: 16777215T\n", "spool.max_bytes", "18446742974197923840" },
	{ "spool:\n  max_bytes: 18446744073709551615\n", "spool.max_bytes", "18446744073709551615" },
	{ "spool:\n  linger: 1500\n", "spool.linger", "1500ms" },
	{ "spool:\n  linger: 1d\n", "spool.linger", "86400000ms" },
	{ "spool:\n  mode: fast\n", "spool.mode", "fast" },
	{ "tune:\n  offset: -9223372036854775808\n", "tune.offset", "-9223372036854775808" },
	{ "tune:\n  offset: +7\n", "tune.offset", "7" },
	{ "a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h: x\n", "a.b.c.d.e.f.g.h", "\"x\"" },
};

static void
test_valid_table(void **state)
{
	struct tcfg c;
	char err[CFG_ERRLEN];

	(void)state;
	for (size_t i = 0; i < sizeof(valid_files) / sizeof(valid_files[0]); i++) {
		const struct file_case *t = &valid_files[i];
		defaults(&c);
		err[0] = '\0';
		if (cfg_load_mem(schema, &c, "t.yaml", t->yaml, strlen(t->yaml), err, sizeof(err)) != 0)
			fail_msg("case %zu (%s): unexpected error: %s", i, t->yaml, err);
		if (strcmp(dumped(&c, t->path), t->dumped) != 0)
			fail_msg("case %zu (%s): %s = %s, expected %s", i, t->yaml, t->path,
				dumped(&c, t->path), t->dumped);
		cfg_free(schema, &c);
	}
}

struct error_case {
	const char *yaml; /* NULL-free text; the length is strlen unless `len` is set */
	size_t len;
	const char *error; /* after the file name, starting with ':' */
};

/* Every kind of file error with its exact message. Loaded from disk with cfg_load. */
static const struct error_case file_errors[] = {
	/* Unknown keys, with and without a suggestion. */
	{ "capture:\n  filtr: x\n", 0, ":2: unknown key 'capture.filtr' (did you mean 'capture.filter'?)" },
	{ "capture:\n  snpalen: 5\n", 0,
		":2: unknown key 'capture.snpalen' (did you mean 'capture.snaplen'?)" },
	{ "captur:\n  filter: x\n", 0, ":1: unknown key 'captur' (did you mean 'capture'?)" },
	{ "bogus: 1\n", 0, ":1: unknown key 'bogus'" },
	{ "Capture:\n  snaplen: 1\n", 0, ":1: unknown key 'Capture' (did you mean 'capture'?)" },
	{ "x: 1\n", 0, ":1: unknown key 'x'" },
	{ "name: a\nspool:\n  modes: fast\n", 0,
		":3: unknown key 'spool.modes' (did you mean 'spool.mode'?)" },
	/* Wrong types and out-of-range values. */
	{ "capture:\n  snaplen: abc\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got 'abc'" },
	{ "capture:\n  snaplen: 12abc\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got '12abc'" },
	{ "capture:\n  snaplen: 0\n", 0, ":2: capture.snaplen: expected an integer in 1..262144, got '0'" },
	{ "capture:\n  snaplen: 262145\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got '262145'" },
	{ "capture:\n  snaplen:\n    12abc\n", 0,
		":3: capture.snaplen: expected an integer in 1..262144, got '12abc'" },
	{ "capture:\n  snaplen:\n", 0, ":2: capture.snaplen: expected an integer in 1..262144, got ''" },
	{ "tune:\n  offset: 9223372036854775808\n", 0,
		":2: tune.offset: expected an integer in -9223372036854775808..9223372036854775807, "
		"got '9223372036854775808'" },
	{ "tune:\n  offset: 1e3\n", 0, ":2: tune.offset: expected an integer, got '1e3'" },
	{ "capture:\n  buffer: 64X\n", 0,
		":2: capture.buffer: expected a size in 4KiB..1GiB (bytes, optionally with unit B, "
		"k/K/kB/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB), got '64X'" },
	{ "capture:\n  buffer: 1\n", 0, ":2: capture.buffer: expected a size in 4KiB..1GiB, got '1'" },
	{ "spool:\n  max_bytes: 16777216T\n", 0,
		":2: spool.max_bytes: expected a size below 16EiB, got '16777216T'" },
	{ "spool:\n  max_bytes: 1.5G\n", 0,
		":2: spool.max_bytes: expected a size (bytes, optionally with unit B, k/K/kB/KB/KiB, "
		"M/MB/MiB, G/GB/GiB, T/TB/TiB), got '1.5G'" },
	{ "capture:\n  timeout: 0\n", 0, ":2: capture.timeout: expected a duration in 1ms..1h, got '0'" },
	{ "spool:\n  linger: 5 s\n", 0,
		":2: spool.linger: expected a duration (milliseconds, or with unit ms, s, m, h, d), "
		"got '5 s'" },
	{ "capture:\n  promisc: maybe\n", 0,
		":2: capture.promisc: expected a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'" },
	{ "spool:\n  mode: turbo\n", 0, ":2: spool.mode: expected one of fast|safe|auto, got 'turbo'" },
	{ "spool:\n  mode: Fast\n", 0, ":2: spool.mode: expected one of fast|safe|auto, got 'Fast'" },
	/* A collection where a scalar belongs, and the other way round. */
	{ "capture:\n  snaplen:\n    x: 1\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got a mapping" },
	{ "name: [a]\n", 0, ":1: name: expected a string, got a sequence" },
	{ "name: {a: 1}\n", 0, ":1: name: expected a string, got a mapping" },
	{ "capture:\n  interfaces: {a: 1}\n", 0,
		":2: capture.interfaces: expected a list of strings, got a mapping" },
	{ "capture: 5\n", 0, ":1: capture: expected a mapping, got '5'" },
	{ "capture: [a]\n", 0, ":1: capture: expected a mapping, got a sequence" },
	{ "capture:\n  interfaces:\n    - eth0\n    - {x: 1}\n", 0,
		":4: capture.interfaces: expected a list of strings, got a mapping inside the list" },
	{ "capture:\n  interfaces: [a, [b]]\n", 0,
		":2: capture.interfaces: expected a list of strings, got a sequence inside the list" },
	{ "capture:\n  interfaces:\n    - eth0\n    -\n", 0,
		":4: capture.interfaces: expected a list of strings, got an empty item" },
	{ "- a\n", 0, ":1: expected a mapping at the top level, got a sequence" },
	{ "hello\n", 0, ":1: expected a mapping at the top level, got 'hello'" },
	/* Duplicates, at a leaf and at a mapping. */
	{ "name: a\nname: b\n", 0, ":2: duplicate key 'name' (first on line 1)" },
	{ "capture:\n  snaplen: 1\ncapture:\n  promisc: on\n", 0,
		":3: duplicate key 'capture' (first on line 1)" },
	{ "capture:\n  snaplen: 1\n  promisc: on\n  snaplen: 2\n", 0,
		":4: duplicate key 'capture.snaplen' (first on line 2)" },
	/* Hostile constructs: anchors, aliases (billion laughs), tags, depth. */
	{ "name: *x\n", 0, ":1: YAML alias '*x' is not allowed" },
	{ "name: &n x\n", 0, ":1: YAML anchor '&n' is not allowed" },
	{ "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n", 0,
		":1: YAML anchor '&a' is not allowed" },
	{ "name: !!str x\n", 0, ":1: YAML tag 'tag:yaml.org,2002:str' is not allowed" },
	{ "capture: !custom\n  snaplen: 1\n", 0, ":1: YAML tag '!custom' is not allowed" },
	{ "a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i: 1\n", 0,
		":9: nesting deeper than 8 levels" },
	{ "a: {b: {c: {d: {e: {f: {g: {h: [x]}}}}}}}\n", 0, ":1: nesting deeper than 8 levels" },
	{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n", 0,
		":1: nesting deeper than 8 levels" },
	/* Keys that are not plain scalars, and keys we do not split. */
	{ "\"name\": x\n", 0, ":1: key 'name' must be a plain scalar, without quotes" },
	{ "? [a]\n: x\n", 0, ":1: keys must be plain scalars, got a sequence" },
	{ "{? {a: 1} : x}\n", 0, ":1: keys must be plain scalars, got a mapping" },
	{ "? \n: x\n", 0, ":1: empty key" },
	{ "capture:\n  ? \n  : x\n", 0, ":2: empty key in 'capture'" },
	{ "capture.snaplen: 5\n", 0,
		":1: key 'capture.snaplen' contains a dot; write nested mappings instead" },
	/* Syntax errors name the line and libyaml's problem. */
	{ "name: x\ncapture:\n  snaplen: 1\n bad: 2\n", 0,
		":4: YAML syntax error: did not find expected key (while parsing a block mapping on "
		"line 1)" },
	{ "name: x\ncapture:\n\tsnaplen: 1\n", 0,
		":3: YAML syntax error: found character that cannot start any token (while scanning "
		"for the next token on line 3)" },
	{ "name: \"abc\n", 0,
		":2: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar "
		"on line 1)" },
	{ "name: ok\ncapture:\n  filter: \xff\n", 0,
		":3: YAML syntax error: invalid leading UTF-8 octet (byte 0xff)" },
	{ "name: a\x01\n", 0, ":1: YAML syntax error: control characters are not allowed (byte 0x01)" },
	{ "name: a\n---\nname: b\n", 0, ":2: only one YAML document is allowed" },
	/* Values that would be cut or would break the one-line rule. */
	{ "name: \"a\\0b\"\n", 0, ":1: name: expected a string, got 'a\\x00b'" },
	{ "capture:\n  snaplen: \"1\\n2\"\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got '1\\n2'" },
	{ "capture:\n  snaplen: \"\\t\\e\"\n", 0,
		":2: capture.snaplen: expected an integer in 1..262144, got '\\t\\x1b'" },
	{ "capture:\n  snaplen: "
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
		0,
		":2: capture.snaplen: expected an integer in 1..262144, got "
		"'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxx...'" },
	{ "name: x\ncapture:\n  filter: \"a\0b\"\n", 33,
		":3: YAML syntax error: control characters are not allowed (byte 0x00)" },
};

static void
test_file_errors(void **state)
{
	char err[CFG_ERRLEN], want[CFG_ERRLEN + 512];
	struct tcfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(file_errors) / sizeof(file_errors[0]); i++) {
		const struct error_case *t = &file_errors[i];
		size_t len = t->len ? t->len : strlen(t->yaml);
		const char *path = write_file("t.yaml", t->yaml, len);

		snprintf(want, sizeof(want), "%s%s", path, t->error);
		defaults(&c);
		err[0] = '\0';
		if (cfg_load(schema, &c, path, err, sizeof(err)) != -1)
			fail_msg("case %zu (%s): loaded without error", i, t->yaml);
		if (strcmp(err, want) != 0)
			fail_msg("case %zu:\n  got  %s\n  want %s", i, err, want);
		assert_null(strchr(err, '\n'));
		cfg_free(schema, &c);
	}
}

struct set_case {
	const char *path;
	const char *value;
	const char *dumped; /* NULL when an error is expected */
	const char *error;
};

/* cfg_set parses exactly like the file, with the origin in front of errors. */
static const struct set_case set_cases[] = {
	{ "capture.buffer", "65536", "65536", NULL },
	{ "capture.buffer", "64k", "65536", NULL },
	{ "capture.buffer", "64K", "65536", NULL },
	{ "capture.buffer", "64kB", "65536", NULL },
	{ "capture.buffer", "64KB", "65536", NULL },
	{ "capture.buffer", "64KiB", "65536", NULL },
	{ "capture.buffer", "4096B", "4096", NULL },
	{ "capture.buffer", "16M", "16777216", NULL },
	{ "capture.buffer", "16MB", "16777216", NULL },
	{ "capture.buffer", "16MiB", "16777216", NULL },
	{ "capture.buffer", "1G", "1073741824", NULL },
	{ "capture.buffer", "1GB", "1073741824", NULL },
	{ "spool.max_bytes", "2GiB", "2147483648", NULL },
	{ "spool.max_bytes", "1T", "1099511627776", NULL },
	{ "spool.max_bytes", "1TB", "1099511627776", NULL },
	{ "spool.max_bytes", "3TiB", "3298534883328", NULL },
	{ "spool.max_bytes", "0", "0", NULL },
	{ "spool.linger", "250ms", "250ms", NULL },
	{ "spool.linger", "5s", "5000ms", NULL },
	{ "spool.linger", "2m", "120000ms", NULL },
	{ "spool.linger", "1h", "3600000ms", NULL },
	{ "spool.linger", "1d", "86400000ms", NULL },
	{ "spool.linger", "1500", "1500ms", NULL },
	{ "spool.linger", "0", "0ms", NULL },
	{ "capture.promisc", "true", "true", NULL },
	{ "capture.promisc", "FALSE", "false", NULL },
	{ "capture.promisc", "Yes", "true", NULL },
	{ "capture.promisc", "no", "false", NULL },
	{ "capture.promisc", "ON", "true", NULL },
	{ "capture.promisc", "off", "false", NULL },
	{ "capture.promisc", "1", "true", NULL },
	{ "capture.promisc", "0", "false", NULL },
	{ "tune.offset", "-42", "-42", NULL },
	{ "tune.offset", "9223372036854775807", "9223372036854775807", NULL },
	{ "tune.offset", "-0", "0", NULL },
	{ "spool.mode", "auto", "auto", NULL },
	{ "capture.interfaces", " eth0 , ,eth1,, ", "[eth0, eth1]", NULL },
	{ "capture.interfaces", "", "[]", NULL },
	{ "capture.interfaces", " , ", "[]", NULL },
	{ "capture.interfaces", "a b", "[a b]", NULL },
	{ "name", "", "\"\"", NULL },
	{ "name", "tab\there", "\"tab\\there\"", NULL },
	{ "a.b.c.d.e.f.g.h", "deep", "\"deep\"", NULL },
	{ "capture.snaplen", "0", NULL,
		"flag --x: capture.snaplen: expected an integer in 1..262144, got '0'" },
	{ "capture.snaplen", "", NULL,
		"flag --x: capture.snaplen: expected an integer in 1..262144, got ''" },
	{ "capture.snaplen", "-", NULL,
		"flag --x: capture.snaplen: expected an integer in 1..262144, got '-'" },
	{ "capture.snaplen", "99999999999999999999", NULL,
		"flag --x: capture.snaplen: expected an integer in 1..262144, got '99999999999999999999'" },
	{ "tune.offset", "-9223372036854775809", NULL,
		"flag --x: tune.offset: expected an integer in -9223372036854775808..9223372036854775807, "
		"got '-9223372036854775809'" },
	{ "tune.offset", " 5", NULL, "flag --x: tune.offset: expected an integer, got ' 5'" },
	{ "tune.offset", "0x10", NULL, "flag --x: tune.offset: expected an integer, got '0x10'" },
	{ "capture.buffer", "2GiB", NULL,
		"flag --x: capture.buffer: expected a size in 4KiB..1GiB, got '2GiB'" },
	{ "capture.buffer", "-1", NULL,
		"flag --x: capture.buffer: expected a size in 4KiB..1GiB (bytes, optionally with unit B, "
		"k/K/kB/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB), got '-1'" },
	{ "capture.buffer", "64kib", NULL,
		"flag --x: capture.buffer: expected a size in 4KiB..1GiB (bytes, optionally with unit B, "
		"k/K/kB/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB), got '64kib'" },
	{ "capture.buffer", "99999999999999999999", NULL,
		"flag --x: capture.buffer: expected a size in 4KiB..1GiB, got '99999999999999999999'" },
	{ "spool.max_bytes", "18446744073709551616", NULL,
		"flag --x: spool.max_bytes: expected a size below 16EiB, got '18446744073709551616'" },
	{ "spool.max_bytes", "K", NULL,
		"flag --x: spool.max_bytes: expected a size (bytes, optionally with unit B, "
		"k/K/kB/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB), got 'K'" },
	{ "capture.timeout", "2h", NULL,
		"flag --x: capture.timeout: expected a duration in 1ms..1h, got '2h'" },
	{ "capture.timeout", "5x", NULL,
		"flag --x: capture.timeout: expected a duration in 1ms..1h (milliseconds, or with unit "
		"ms, s, m, h, d), got '5x'" },
	{ "spool.linger", "213503982335d", NULL,
		"flag --x: spool.linger: expected a duration of at most 18446744073709551615ms, got "
		"'213503982335d'" },
	{ "spool.linger", "1.5s", NULL,
		"flag --x: spool.linger: expected a duration (milliseconds, or with unit ms, s, m, h, d), "
		"got '1.5s'" },
	{ "capture.promisc", "enabled", NULL,
		"flag --x: capture.promisc: expected a boolean (true/false, yes/no, on/off, 1/0), got "
		"'enabled'" },
	{ "spool.mode", "", NULL, "flag --x: spool.mode: expected one of fast|safe|auto, got ''" },
	{ "capture.snaplenn", "1", NULL,
		"flag --x: unknown key 'capture.snaplenn' (did you mean 'capture.snaplen'?)" },
	{ "capture", "1", NULL, "flag --x: unknown key 'capture'" },
	{ "captur.filter", "1", NULL,
		"flag --x: unknown key 'captur.filter' (did you mean 'capture.filter'?)" },
	{ "nope", "1", NULL, "flag --x: unknown key 'nope' (did you mean 'name'?)" },
	{ "zzzzzz", "1", NULL, "flag --x: unknown key 'zzzzzz'" },
};

static void
test_set_table(void **state)
{
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
		const struct set_case *t = &set_cases[i];
		defaults(&c);
		err[0] = '\0';
		int rc = cfg_set(schema, &c, t->path, t->value, "flag --x", err, sizeof(err));
		if (t->dumped != NULL) {
			if (rc != 0)
				fail_msg("case %zu (%s=%s): unexpected error: %s", i, t->path, t->value, err);
			if (strcmp(dumped(&c, t->path), t->dumped) != 0)
				fail_msg("case %zu (%s=%s): got %s, want %s", i, t->path, t->value,
					dumped(&c, t->path), t->dumped);
		} else {
			if (rc != -1)
				fail_msg("case %zu (%s=%s): accepted", i, t->path, t->value);
			if (strcmp(err, t->error) != 0)
				fail_msg("case %zu:\n  got  %s\n  want %s", i, err, t->error);
		}
		cfg_free(schema, &c);
	}
}

/* A rejected value leaves the old one in place, including heap-owned ones. */
static void
test_set_error_keeps_value(void **state)
{
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	defaults(&c);
	assert_int_equal(cfg_set(schema, &c, "capture.snaplen", "x", NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "capture.snaplen: expected an integer in 1..262144, got 'x'");
	assert_int_equal(c.snaplen, 65535);
	assert_int_equal(cfg_set(schema, &c, "spool.mode", "nope", "", err, sizeof(err)), -1);
	assert_string_equal(err, "spool.mode: expected one of fast|safe|auto, got 'nope'");
	assert_int_equal(c.mode, 2);
	assert_int_equal(cfg_set(schema, &c, "name", NULL, "flag --name", err, sizeof(err)), -1);
	assert_string_equal(err, "flag --name: name: expected a string, got no value");
	assert_string_equal(c.name, "default");
	/* A file that fails half-way through its list keeps the old list. */
	static const char bad_list[] = "capture:\n  interfaces: [a, b, {c: d}]\n";
	assert_int_equal(
		cfg_load_mem(schema, &c, "t.yaml", bad_list, sizeof(bad_list) - 1, err, sizeof(err)), -1);
	assert_int_equal(c.ifaces.n, 1);
	assert_string_equal(c.ifaces.v[0], "any");
	cfg_free(schema, &c);
}

static void
test_env_overrides_file(void **state)
{
	static const char yaml[] = "name: file\n"
				   "capture:\n"
				   "  filter: from-file\n"
				   "  snaplen: 100\n"
				   "  interfaces: [f0, f1]\n";
	char err[CFG_ERRLEN] = "";
	struct tcfg c;

	(void)state;
	defaults(&c);
	const char *path = write_file("env.yaml", yaml, sizeof(yaml) - 1);
	setenv("PCAPLINE_CAPTURE_SNAPLEN", "200", 1);
	setenv("PCAPLINE_CAPTURE_FILTER", "from-env", 1);
	setenv("PCAPLINE_CAPTURE_INTERFACES", "e0, e1 ,e2", 1);
	setenv("PCAPLINE_SPOOL_LINGER", "2s", 1);
	setenv("PCAPLINE_A_B_C_D_E_F_G_H", "", 1);
	setenv("PCAPLINE_CONFIG", "/etc/pcapline/sensor.yaml", 1);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), 0);
	assert_string_equal(c.name, "file");
	assert_string_equal(c.filter, "from-env");
	assert_int_equal(c.snaplen, 200);
	assert_string_equal(dumped(&c, "capture.interfaces"), "[e0, e1, e2]");
	assert_int_equal(c.linger, 2000);
	assert_string_equal(c.deep, "");

	/* A flag applied after loading beats both. */
	assert_int_equal(
		cfg_set(schema, &c, "capture.snaplen", "300", "flag --snaplen", err, sizeof(err)), 0);
	assert_int_equal(
		cfg_set(schema, &c, "capture.filter", "from-flag", "flag --filter", err, sizeof(err)), 0);
	assert_int_equal(c.snaplen, 300);
	assert_string_equal(c.filter, "from-flag");
	cfg_free(schema, &c);
}

/* Without a file (NULL or ""), only the environment applies. */
static void
test_env_without_file(void **state)
{
	char err[CFG_ERRLEN] = "";
	struct tcfg c;

	(void)state;
	setenv("PCAPLINE_NAME", "env-only", 1);
	setenv("PCAPLINE_SPOOL_MODE", "fast", 1);
	defaults(&c);
	assert_int_equal(cfg_load(schema, &c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.name, "env-only");
	assert_int_equal(c.mode, 0);
	cfg_free(schema, &c);
	defaults(&c);
	assert_int_equal(cfg_load(schema, &c, "", err, sizeof(err)), 0);
	assert_string_equal(c.name, "env-only");
	cfg_free(schema, &c);
}

struct env_case {
	const char *name, *value;
	const char *error;
};

static const struct env_case env_errors[] = {
	{ "PCAPLINE_CAPTURE_SNAPLEN", "abc",
		"environment PCAPLINE_CAPTURE_SNAPLEN: capture.snaplen: expected an integer in 1..262144, "
		"got 'abc'" },
	{ "PCAPLINE_CAPTURE_BUFFER", "64X",
		"environment PCAPLINE_CAPTURE_BUFFER: capture.buffer: expected a size in 4KiB..1GiB "
		"(bytes, optionally with unit B, k/K/kB/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB), got '64X'" },
	{ "PCAPLINE_CAPTURE_PROMISC", "",
		"environment PCAPLINE_CAPTURE_PROMISC: capture.promisc: expected a boolean (true/false, "
		"yes/no, on/off, 1/0), got ''" },
	{ "PCAPLINE_SPOOL_MODE", "turbo",
		"environment PCAPLINE_SPOOL_MODE: spool.mode: expected one of fast|safe|auto, got 'turbo'" },
	{ "PCAPLINE_CAPTURE_SNAPLN", "1",
		"environment PCAPLINE_CAPTURE_SNAPLN: unknown setting (known: PCAPLINE_CAPTURE_SNAPLEN, "
		"PCAPLINE_CAPTURE_FILTER, PCAPLINE_CAPTURE_BUFFER, PCAPLINE_CAPTURE_PROMISC, ...)" },
	{ "PCAPLINE_capture_snaplen", "1",
		"environment PCAPLINE_capture_snaplen: unknown setting (known: PCAPLINE_CAPTURE_SNAPLEN, "
		"PCAPLINE_CAPTURE_FILTER, PCAPLINE_CAPTURE_BUFFER, PCAPLINE_CAPTURE_PROMISC, ...)" },
};

static void
test_env_errors(void **state)
{
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(env_errors) / sizeof(env_errors[0]); i++) {
		const struct env_case *t = &env_errors[i];
		clear_env();
		setenv(t->name, t->value, 1);
		defaults(&c);
		err[0] = '\0';
		if (cfg_load(schema, &c, NULL, err, sizeof(err)) != -1)
			fail_msg("case %zu (%s=%s): accepted", i, t->name, t->value);
		if (strcmp(err, t->error) != 0)
			fail_msg("case %zu:\n  got  %s\n  want %s", i, err, t->error);
		cfg_free(schema, &c);
	}
	clear_env();
}

/* A misspelt variable is refused even when a file loaded fine. */
static void
test_env_unknown_after_file(void **state)
{
	static const char yaml[] = "name: ok\n";
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	defaults(&c);
	const char *path = write_file("ok.yaml", yaml, sizeof(yaml) - 1);
	setenv("PCAPLINE_SPOOL_MODES", "fast", 1);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), -1);
	assert_string_equal(err,
		"environment PCAPLINE_SPOOL_MODES: unknown setting (known: "
		"PCAPLINE_SPOOL_MODE, PCAPLINE_SPOOL_LINGER, PCAPLINE_SPOOL_MAX_BYTES, "
		"PCAPLINE_NAME, ...)");
	cfg_free(schema, &c);
}

/* A variable far from every known name may belong to the other pcapline program
 * sharing this environment: it is ignored, and the known ones still apply. */
static void
test_env_foreign_ignored(void **state)
{
	static const char *const foreign[] = { "PCAPLINE_", "PCAPLINE_CAPTURE", "PCAPLINE_STORAGE_DIR",
		"PCAPLINE_TLS_CRL" };
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		clear_env();
		setenv(foreign[i], "x", 1);
		setenv("PCAPLINE_CAPTURE_SNAPLEN", "77", 1);
		defaults(&c);
		err[0] = '\0';
		if (cfg_load(schema, &c, NULL, err, sizeof(err)) != 0)
			fail_msg("%s refused: %s", foreign[i], err);
		assert_int_equal(c.snaplen, 77);
		cfg_free(schema, &c);
	}
	clear_env();
}

static void
test_open_errors(void **state)
{
	char err[CFG_ERRLEN], want[CFG_ERRLEN + 512], path[512];
	struct tcfg c;

	(void)state;
	defaults(&c);
	snprintf(path, sizeof(path), "%s/missing.yaml", tmpdir);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), -1);
	assert_string_equal(err, want);

	snprintf(path, sizeof(path), "%s/dir.yaml", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", path);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), -1);
	assert_string_equal(err, want);
	cfg_free(schema, &c);
}

/* 1 MiB is accepted, one byte more is not, from a file or from memory. */
static void
test_size_limit(void **state)
{
	enum {
		MIB = 1024 * 1024
	};
	char err[CFG_ERRLEN], want[CFG_ERRLEN + 512];
	char *buf = malloc(MIB + 1);
	struct tcfg c;

	(void)state;
	assert_non_null(buf);
	memset(buf, '#', MIB + 1);
	memcpy(buf, "name: big\n", 10);
	buf[MIB - 1] = '\n';
	defaults(&c);
	const char *path = write_file("max.yaml", buf, MIB);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), 0);
	assert_string_equal(c.name, "big");

	path = write_file("big.yaml", buf, MIB + 1);
	snprintf(want, sizeof(want), "%s: larger than the 1 MiB limit", path);
	assert_int_equal(cfg_load(schema, &c, path, err, sizeof(err)), -1);
	assert_string_equal(err, want);

	assert_int_equal(cfg_load_mem(schema, &c, "mem.yaml", buf, MIB + 1, err, sizeof(err)), -1);
	assert_string_equal(err, "mem.yaml: larger than the 1 MiB limit");
	assert_int_equal(cfg_load_mem(schema, &c, NULL, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(cfg_load_mem(schema, &c, NULL, "x: 1", 4, err, sizeof(err)), -1);
	assert_string_equal(err, "config:1: unknown key 'x'");
	free(buf);
	cfg_free(schema, &c);
}

/*
 * Pipes and /proc files report no size, so the limit must hold while reading. A child
 * writes `len` bytes of comments after a setting into a FIFO that cfg_load reads.
 */
static int
load_fifo(struct tcfg *c, size_t len, char *err, size_t errlen, char *path, size_t pathlen)
{
	pid_t pid;
	int status, rc;

	snprintf(path, pathlen, "%s/fifo.yaml", tmpdir);
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static char chunk[4096];
		FILE *f;

		/* The reader stops at the limit; a write after that must not kill us. */
		signal(SIGPIPE, SIG_IGN);
		if ((f = fopen(path, "w")) == NULL)
			_exit(1);
		fputs("name: piped\n", f);
		memset(chunk, '#', sizeof(chunk));
		chunk[sizeof(chunk) - 1] = '\n';
		for (size_t done = 12; done < len;) {
			size_t n = len - done < sizeof(chunk) ? len - done : sizeof(chunk);
			if (fwrite(chunk + sizeof(chunk) - n, 1, n, f) != n)
				_exit(0);
			done += n;
		}
		fclose(f);
		_exit(0);
	}
	rc = cfg_load(schema, c, path, err, errlen);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return rc;
}

static void
test_fifo(void **state)
{
	char err[CFG_ERRLEN], want[CFG_ERRLEN + 512], path[512];
	struct tcfg c;

	(void)state;
	defaults(&c);
	assert_int_equal(load_fifo(&c, 1024 * 1024, err, sizeof(err), path, sizeof(path)), 0);
	assert_string_equal(c.name, "piped");
	assert_int_equal(load_fifo(&c, 1024 * 1024 + 1, err, sizeof(err), path, sizeof(path)), -1);
	snprintf(want, sizeof(want), "%s: larger than the 1 MiB limit", path);
	assert_string_equal(err, want);
	cfg_free(schema, &c);
}

/* Every owned pointer is released and cleared; a second cfg_free is harmless. */
static void
test_cfg_free(void **state)
{
	static const char yaml[] = "name: n\ncapture:\n  filter: f\n  interfaces: [a, b, c]\n"
				   "a: {b: {c: {d: {e: {f: {g: {h: deep}}}}}}}\n";
	char err[CFG_ERRLEN];
	struct tcfg c;

	(void)state;
	defaults(&c);
	setenv("PCAPLINE_NAME", "replaced", 1);
	setenv("PCAPLINE_CAPTURE_INTERFACES", "x,y", 1);
	assert_int_equal(cfg_load_mem(schema, &c, "t.yaml", yaml, sizeof(yaml) - 1, err, sizeof(err)), 0);
	assert_int_equal(cfg_load(schema, &c, NULL, err, sizeof(err)), 0);
	assert_int_equal(cfg_set(schema, &c, "capture.filter", "g", NULL, err, sizeof(err)), 0);
	cfg_free(schema, &c);
	assert_null(c.name);
	assert_null(c.filter);
	assert_null(c.deep);
	assert_null(c.ifaces.v);
	assert_int_equal(c.ifaces.n, 0);
	cfg_free(schema, &c);
}

static void
test_dump(void **state)
{
	static const char want[] = "name = \"n \\\"q\\\"\"\n"
				   "capture.filter = (unset)\n"
				   "capture.snaplen = 65535\n"
				   "capture.promisc = false\n"
				   "capture.buffer = 2097152\n"
				   "capture.timeout = 1000ms\n"
				   "capture.interfaces = [eth0, \"a,b\", \"\"]\n"
				   "spool.max_bytes = 0\n"
				   "spool.linger = 0ms\n"
				   "spool.mode = auto\n"
				   "tune.offset = -1\n"
				   "a.b.c.d.e.f.g.h = \"line\\nbreak\"\n";
	static const char yaml[] =
		"name: 'n \"q\"'\ncapture:\n  interfaces: [eth0, 'a,b', '']\n"
		"tune: {offset: -1}\na: {b: {c: {d: {e: {f: {g: {h: \"line\\nbreak\"}}}}}}}\n";
	char err[CFG_ERRLEN], *buf = NULL;
	size_t len = 0;
	struct tcfg c;

	(void)state;
	defaults(&c);
	assert_int_equal(cfg_load_mem(schema, &c, "t.yaml", yaml, sizeof(yaml) - 1, err, sizeof(err)), 0);
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	cfg_dump(schema, &c, f);
	fclose(f);
	assert_string_equal(buf, want);
	free(buf);
	/* An enum index the schema does not know is shown as a number, not read past. */
	c.mode = 7;
	assert_string_equal(dumped(&c, "spool.mode"), "7");
	cfg_free(schema, &c);
}

/* Short or missing error buffers are truncated or skipped, never overrun. */
static void
test_small_err(void **state)
{
	char err[8];
	struct tcfg c;

	(void)state;
	defaults(&c);
	memset(err, 'Z', sizeof(err));
	assert_int_equal(cfg_set(schema, &c, "capture.snaplen", "x", "flag", err, sizeof(err)), -1);
	assert_string_equal(err, "flag: c");
	assert_int_equal(cfg_set(schema, &c, "capture.snaplen", "x", "flag", NULL, 0), -1);
	assert_int_equal(cfg_load_mem(schema, &c, "t", "x: [", 4, NULL, 0), -1);
	cfg_free(schema, &c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_valid_file, setup),
		cmocka_unit_test_setup(test_defaults_kept, setup),
		cmocka_unit_test_setup(test_valid_table, setup),
		cmocka_unit_test_setup(test_file_errors, setup),
		cmocka_unit_test_setup(test_set_table, setup),
		cmocka_unit_test_setup(test_set_error_keeps_value, setup),
		cmocka_unit_test_setup(test_env_overrides_file, setup),
		cmocka_unit_test_setup(test_env_without_file, setup),
		cmocka_unit_test_setup(test_env_errors, setup),
		cmocka_unit_test_setup(test_env_foreign_ignored, setup),
		cmocka_unit_test_setup(test_env_unknown_after_file, setup),
		cmocka_unit_test_setup(test_open_errors, setup),
		cmocka_unit_test_setup(test_size_limit, setup),
		cmocka_unit_test_setup(test_fifo, setup),
		cmocka_unit_test_setup(test_cfg_free, setup),
		cmocka_unit_test_setup(test_dump, setup),
		cmocka_unit_test_setup(test_small_err, setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
