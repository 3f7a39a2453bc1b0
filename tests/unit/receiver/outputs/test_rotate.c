/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/outputs/rotate.c: the names and mtimes a continuous directory reader
 * (Suricata's --pcap-file-continuous) relies on, and the whole output fed by the live hub:
 * size and time rotation, count bounds with deletions counted, numbering after a restart,
 * no partial file left under any name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/wire.h"
#include "receiver/outputs/live.h"
#include "receiver/outputs/rotate.h"
#include "shared/fsutil.h"
#include "tests/unit/testutil.h"

#define T0 1700000000000000000ull
#define MS 1000000ll

static void
test_names_parse_and_sort(void **state)
{
	char a[ROTATE_NAME_MAX], b[ROTATE_NAME_MAX], c[ROTATE_NAME_MAX];
	uint64_t seq = 0;
	assert_int_equal(rotate_name(a, sizeof(a), 9, 1700000000), 0);
	assert_string_equal(a, "pcapline-000000000009-20231114T221320Z.pcap");
	assert_int_equal(rotate_parse_name(a, &seq), 0);
	assert_int_equal(seq, 9);
	/* Order by name is order by number, whatever the clock said (here: a step back). */
	assert_int_equal(rotate_name(b, sizeof(b), 10, 1600000000), 0);
	assert_int_equal(rotate_name(c, sizeof(c), 999999999999ull, 0), 0);
	assert_true(strcmp(a, b) < 0 && strcmp(b, c) < 0);
	assert_int_equal(rotate_name(a, 10, 1, 0), -ENOSPC);
	/* Anything else is not ours: hidden partial files, other tools' files, near misses. */
	const char *bad[] = { ".pcapline-000000000009.pcap.part", "pcapline-9-20231114T221320Z.pcap",
		"pcapline-000000000009-20231114T221320Z.pcap.part",
		"pcapline-000000000009-20231114X221320Z.pcap", "pcapline-00000000000a-20231114T221320Z.pcap",
		"other.pcap", "pcapline-", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rotate_parse_name(bad[i], &seq), -EINVAL);
}

static void
test_mtimes_strictly_increase(void **state)
{
	int64_t now = 1700000000123456789ll;
	assert_int_equal(rotate_next_mtime(0, now), now - 456789);
	/* Two rotations in the same millisecond, then a clock that stepped back. */
	int64_t m1 = rotate_next_mtime(0, now), m2 = rotate_next_mtime(m1, now + 100);
	assert_int_equal(m2, m1 + MS);
	int64_t m3 = rotate_next_mtime(m2, now - 3600000 * MS);
	assert_int_equal(m3, m2 + MS);
	/* After a restart the previous mtime comes from the directory (any ns value). */
	assert_int_equal(rotate_next_mtime(now, now), now - 456789 + MS);
	assert_int_equal(rotate_next_mtime(now, now + 10 * MS), now - 456789 + 10 * MS);
}

/* n records of 200 bytes numbered from first. */
static uint32_t
batch(uint8_t *buf, uint32_t first, uint32_t n)
{
	size_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		proto_rec_hdr_encode(buf + off, T0 + (first + i) * 1000ull, 0, 200, 200);
		off += PROTO_REC_HDR_LEN;
		memset(buf + off, 0, 200);
		memcpy(buf + off, &(uint32_t){ first + i }, 4);
		off += 200;
	}
	return (uint32_t)off;
}

struct seen {
	char names[64][ROTATE_NAME_MAX];
	int64_t mtime[64];
	size_t n, hidden;
	uint32_t packets, next; /* records in order, numbered */
};

static void
scan(const char *dir, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	DIR *d = opendir(dir);
	struct dirent *e;
	assert_non_null(d);
	while ((e = readdir(d))) {
		uint64_t seq;
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			s->hidden++;
		if (rotate_parse_name(e->d_name, &seq) == 0 && s->n < 64 &&
			strlen(e->d_name) < ROTATE_NAME_MAX)
			memcpy(s->names[s->n++], e->d_name, strlen(e->d_name) + 1);
	}
	closedir(d);
	qsort(s->names, s->n, ROTATE_NAME_MAX, (int (*)(const void *, const void *))strcmp);
	for (size_t i = 0; i < s->n; i++) {
		char path[512];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, s->names[i]);
		assert_int_equal(stat(path, &sb), 0);
		s->mtime[i] = (int64_t)sb.st_mtim.tv_sec * 1000000000ll + sb.st_mtim.tv_nsec;
		if (i > 0)
			assert_true(s->mtime[i] > s->mtime[i - 1]); /* name order is mtime order */
		FILE *f = fopen(path, "rb");
		uint8_t hdr[24], rec[16 + 200];
		assert_non_null(f);
		assert_int_equal(fread(hdr, 1, 24, f), 24);
		size_t got;
		uint32_t in_file = 0;
		while ((got = fread(rec, 1, sizeof(rec), f)) == sizeof(rec)) {
			uint32_t num;
			memcpy(&num, rec + 16, 4);
			if (s->packets == 0)
				s->next = num;
			assert_int_equal(num, s->next); /* every packet once, in order */
			s->next++;
			s->packets++;
			in_file++;
		}
		assert_int_equal(got, 0); /* complete */
		assert_true(in_file > 0 && 24 + in_file * sizeof(rec) <= 4096);
		fclose(f);
	}
}

static void
run(const char *dir, uint32_t first, uint64_t max_files, struct rotate_stats *st)
{
	struct live_opts lo = { 0 };
	struct rotate_opts ro = { .dir = dir, .rotate_size = 4096, .rotate_ms = 50, .max_files = max_files };
	char err[256];
	uint8_t buf[100 * (PROTO_REC_HDR_LEN + 200)];
	struct proto_iface eth = { .linktype = 1, .snaplen = 65535, .name = "eth0" };
	assert_int_equal(live_init(&lo), 0);
	struct rotate *r = rotate_start(&ro, err, sizeof(err));
	assert_non_null(r);
	for (uint32_t b = 0; b < 3; b++)
		live_feed("s1", &eth, 1, buf, batch(buf, first + b * 100, 100), 100);
	for (int i = 0; i < 500; i++) {
		assert_true(rotate_stats_current(st));
		if (st->packets == 300)
			break;
		usleep(10000);
	}
	live_shutdown();
	rotate_stop(r);
	assert_false(rotate_stats_current(&(struct rotate_stats){ 0 }));
	live_fini();
	assert_int_equal(st->packets, 300);
	assert_int_equal(st->write_errors, 0);
	assert_int_equal(st->drops[LIVE_DROP_QUEUE], 0);
	assert_int_equal(st->files, 17); /* 18 records of 216 bytes fill 4096: 16 full, one by time */
}

static void
test_hub_to_files_bounds_and_restart(void **state)
{
	char dir[] = "/tmp/test_rotate.XXXXXX";
	struct rotate_stats st;
	struct seen s;
	assert_non_null(mkdtemp(dir));
	run(dir, 0, 0, &st);
	scan(dir, &s);
	assert_int_equal(s.n, 17);
	assert_int_equal(s.packets, 300);
	assert_int_equal(s.hidden, 0);
	assert_true(strncmp(s.names[0] + 9, "000000000001-", 13) == 0);
	/* A partial file of a receiver that died is removed at start. */
	char part[600];
	snprintf(part, sizeof(part), "%s/.pcapline-000000000018.pcap.part", dir);
	FILE *f = fopen(part, "w");
	assert_non_null(f);
	fclose(f);
	/* Restart with a bound of 20 files: numbering and mtimes go on; 14 oldest deleted. */
	int64_t last = s.mtime[16];
	run(dir, 300, 20, &st);
	assert_int_equal(st.deleted_files, 14);
	scan(dir, &s);
	assert_int_equal(s.n, 20);
	assert_int_equal(s.hidden, 0);
	assert_true(strncmp(s.names[0] + 9, "000000000015", 12) == 0);
	assert_true(strncmp(s.names[19] + 9, "000000000034", 12) == 0);
	assert_true(s.mtime[3] > last);                  /* the first file of the second run */
	assert_int_equal(s.packets, 18 + 18 + 12 + 300); /* files 15..17 and the new ones */
	assert_int_equal(s.next, 600);
	fsu_rmtree(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_parse_and_sort),
		cmocka_unit_test(test_mtimes_strictly_increase),
		cmocka_unit_test(test_hub_to_files_bounds_and_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
