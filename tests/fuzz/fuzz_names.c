/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the names.jsonl readers (receiver/repo/names.c, namehist.c):
 *
 *   - the input as one line: names_line_parse(); a line it accepts (and did not cut) is
 *     written back with names_line_format() and must read back to the same fields, and
 *     a line written must parse to exactly what was given;
 *   - the input as a whole history file: namehist_load() (what an export reads), then
 *     both of its writers, and names_at() (what the receiver's lookup reads).
 *
 * Besides memory errors it checks the reader's promises: counts add up, nothing read
 * is longer than its limit, and hostile input never crashes. Seeds (corpus/names) are
 * lines the receiver writes and each kind of malformed line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/repo/namehist.h"
#include "receiver/repo/names.h"
#include "shared/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_names: %s\n", what);
		abort();
	}
}

static char dir[64];
static FILE *devnull;

static void
setup(void)
{
	char p[128];

	if (dir[0])
		return;
	log_set_level(LOG_LVL_ERROR);
	snprintf(dir, sizeof(dir), "/tmp/fuzz-names-XXXXXX");
	must(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(p, sizeof(p), "%s/sensors", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/sensors/s1", dir);
	mkdir(p, 0700);
	devnull = fopen("/dev/null", "w");
	must(devnull != NULL, "/dev/null");
}

static void
one_line(const uint8_t *data, size_t size)
{
	static struct names_line l, back;
	static char buf[6 * 5 * (NAMES_FIELD_MAX + 1) + 128];
	int n;

	if (!names_line_parse((const char *)data, size, &l))
		return;
	must(l.addr[0] != '\0', "an empty addr accepted");
	must(strlen(l.addr) <= NAMES_FIELD_MAX && strlen(l.name) <= NAMES_FIELD_MAX &&
			strlen(l.ns) <= NAMES_FIELD_MAX && strlen(l.src) <= NAMES_FIELD_MAX,
		"a string beyond NAMES_FIELD_MAX");
	must(l.t <= INT64_MAX, "t above 2^63-1");
	if (l.cut)
		return; /* a cut string may end inside a UTF-8 sequence */
	n = names_line_format(l.t, l.addr, l.name, l.ns, l.src, buf, sizeof(buf));
	must(n > 0 && (size_t)n < sizeof(buf), "a line read cannot be written back");
	must(buf[n - 1] == '\n', "no newline");
	must(names_line_parse(buf, (size_t)n - 1, &back), "a line written does not read back");
	must(back.t == l.t && strcmp(back.addr, l.addr) == 0 && strcmp(back.name, l.name) == 0 &&
			strcmp(back.ns, l.ns) == 0 && strcmp(back.src, l.src) == 0 && !back.cut,
		"a line written reads back different");
}

static void
history(const uint8_t *data, size_t size)
{
	char path[160], err[256], name[64], ns[64];
	struct namehist *h;
	size_t lines = 0, keys = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/sensors/s1/names.jsonl", dir);
	f = fopen(path, "w");
	must(f != NULL, "cannot write the history");
	must(fwrite(data, 1, size, f) == size, "short write");
	fclose(f);
	h = namehist_load(path, 1000, 5000000000ull, err, sizeof(err));
	must(h != NULL, "namehist_load failed on a readable file");
	must(namehist_bad_lines(h) <= namehist_lines(h), "more bad lines than lines");
	must(namehist_write_jsonl(h, devnull, &lines) == 0, "write_jsonl failed");
	must(lines <= namehist_lines(h), "more lines written than read");
	must(namehist_write_kubeshark(h, devnull, &keys) == 0, "write_kubeshark failed");
	namehist_free(h);
	int rc = names_at(dir, "s1", "198.18.0.1:53", 3000000000ull, name, sizeof(name), ns, sizeof(ns));
	must(rc == 0 || rc == 1, "names_at failed on a readable file");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	one_line(data, size);
	history(data, size);
	return 0;
}
