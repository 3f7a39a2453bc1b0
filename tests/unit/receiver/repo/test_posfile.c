/* SPDX-License-Identifier: BSD-2-Clause */
/* Tests for receiver/repo/posfile.c: the path of a segment's position file, a write read
 * back, and the files a reader must refuse. */
#include <errno.h>
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
#include "receiver/repo/posfile.h"

#define SEG "sensors/s1/segments/01700000000000000000-00000000000000aa-1.0-eth0.pcap"
#define POS "sensors/s1/l4/01700000000000000000-00000000000000aa-1.0-eth0.pcap.pos"

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
test_path(void **state)
{
	char out[512];

	assert_int_equal(posfile_path(SEG, out, sizeof(out)), 0);
	assert_string_equal(out, POS);
	assert_int_equal(posfile_path("sensors/s1/segments/../x.pcap", out, sizeof(out)), -1);
	assert_int_equal(posfile_path("snapshots/a/segments/x.pcap", out, sizeof(out)), -1);
	assert_int_equal(posfile_path(SEG, out, 20), -1);
}

static void
write_raw(const char *dir, const void *p, size_t n)
{
	char full[512];

	snprintf(full, sizeof(full), "%s/%s", dir, POS);
	FILE *f = fopen(full, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void
test_round_trip_and_damage(void **state)
{
	char dir[] = "/tmp/pcapline-test-posfile-XXXXXX", p[512], err[256] = "";
	uint64_t ids[1500];
	struct posfile pf;

	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/sensors", dir);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/sensors/s1", dir);
	mkdir(p, 0750);
	for (size_t i = 0; i < 1500; i++)
		ids[i] = i % 3 ? 0x0102030405060708ull + i : 0;
	/* More ids than one write chunk; the folder l4/ is made. */
	assert_int_equal(posfile_write(dir, POS, ids, 1500, err, sizeof(err)), 0);
	assert_int_equal(ids[1], 0x0102030405060709ull); /* the caller's array is untouched */
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), 0);
	assert_int_equal(pf.records, 1500);
	assert_int_equal(pf.header_count, 1500);
	assert_int_equal(pf.len, 16 + 8 * 1500);
	assert_memory_equal(pf.map, "PLPOS1\0\0", 8);
	assert_int_equal(pf.map[16 + 8 + 0], 0x09); /* little-endian on disk */
	for (size_t i = 0; i < 1500; i++)
		assert_int_equal(posfile_get(&pf, i), ids[i]);
	posfile_close(&pf);

	/* No records at all is a valid file. */
	assert_int_equal(posfile_write(dir, POS, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), 0);
	assert_int_equal(pf.records, 0);
	posfile_close(&pf);

	/* Too short, not a multiple of 8, another magic, missing: refused, named. */
	write_raw(dir, "PLPOS1\0\0\1", 9);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), -1);
	assert_string_equal(
		err, POS ": missing or damaged position file (re-index this window: pcapline reindex)");
	write_raw(dir, "PLPOS1\0\0\1\0\0\0\0\0\0\0\1\2\3", 19);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), -1);
	write_raw(dir, "PLPOS2\0\0\0\0\0\0\0\0\0\0", 16);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), -1);
	assert_string_equal(err, POS ": not a position file (re-index this window: pcapline reindex)");
	/* A header that disagrees with the size is reported to the reader. */
	write_raw(dir, "PLPOS1\0\0\5\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), 0);
	assert_true(pf.records == 1 && pf.header_count == 5);
	posfile_close(&pf);
	posfile_unlink(dir, SEG);
	assert_int_equal(posfile_open(dir, SEG, &pf, err, sizeof(err)), -1);
	posfile_unlink(dir, SEG); /* already gone: nothing to say */

	/* A folder that cannot be made: a file holds its name. */
	snprintf(p, sizeof(p), "%s/sensors/s2", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(posfile_write(dir, "sensors/s2/l4/x.pos", ids, 1, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "cannot create the folder of sensors/s2/l4/x.pos"));
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	assert_int_equal(fsu_rmtree(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_round_trip_and_damage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
