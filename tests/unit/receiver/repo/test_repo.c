/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/repo/repo.c: which sensors and segments overlap a window, from each
 * of its three sources (the SQLite index, a scan of the segment folders, a given list),
 * with the exact fields of every segment, the window edges ([from, to) against each
 * segment's [min, max]), what a scan leaves out (hidden, foreign, empty and unreadable
 * files), an index row whose path leaves the repository, and an unreadable index.
 * Real segment files in a temporary repository, the index built by index_reconcile().
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "receiver/repo/index.h"
#include "receiver/repo/repo.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "tests/unit/testutil.h"

#define NS    UINT64_C(1000000000)
#define T0    (UINT64_C(1700000000) * NS)
/* The end of every window the command accepts (cli_window: --to before 2262). */
#define END   ((uint64_t)INT64_MAX)
#define EPOCH UINT64_C(0x00000000000000ab)

static char dir[] = "/tmp/pcapline-test-repo-XXXXXX";

struct segdef {
	const char *sensor;
	unsigned ifindex;
	const char *ifname;
	uint32_t linktype, snaplen;
	uint64_t seq;
	size_t n;
	uint64_t ts[4]; /* offsets from T0 */
};

/* s1: two segments of two interfaces; s2: one segment of one packet; s3: a folder only. */
static const struct segdef defs[] = {
	{ "s1", 0, "eth0", 1, 65535, 1, 3, { 0, 5 * NS, 10 * NS } },
	{ "s1", 1, "wlan0", 113, 1500, 2, 2, { 20 * NS, 30 * NS } },
	{ "s2", 0, "eth0", 1, 65535, 1, 1, { 15 * NS } },
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

static char rels[NDEFS][256];
static uint64_t sizes[NDEFS];

static void
write_pcap(const char *path, uint32_t linktype, uint32_t snaplen, const uint64_t *ts, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct pcapw *w;
	uint8_t data[100];

	assert_true(fd >= 0);
	w = pcapw_new(fd, linktype, snaplen);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (size_t i = 0; i < n; i++) {
		memset(data, (int)i, sizeof(data));
		assert_int_equal(pcapw_write(w, ts[i], data, sizeof(data), sizeof(data)), 0);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);
}

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

/* The repository of defs[], without an index. */
static void
build(void)
{
	struct stat st;

	for (size_t i = 0; i < NDEFS; i++) {
		const struct segdef *d = &defs[i];
		uint64_t ts[4];
		char segdir[512];

		for (size_t k = 0; k < d->n; k++)
			ts[k] = T0 + d->ts[k];
		snprintf(rels[i], sizeof(rels[i]),
			"sensors/%s/segments/%020" PRIu64 "-%016" PRIx64 "-%" PRIu64 ".%u-%s.pcap", d->sensor,
			ts[0], EPOCH, d->seq, d->ifindex, d->ifname);
		snprintf(segdir, sizeof(segdir), "sensors/%s/segments", d->sensor);
		assert_int_equal(fsu_mkdirs(at(segdir), 0755), 0);
		write_pcap(at(rels[i]), d->linktype, d->snaplen, ts, d->n);
		assert_int_equal(stat(at(rels[i]), &st), 0);
		sizes[i] = (uint64_t)st.st_size;
		assert_int_equal(sizes[i], 24 + d->n * (16 + 100));
	}
	assert_int_equal(fsu_mkdirs(at("sensors/s3/segments"), 0755), 0);
}

static void
make_index(void)
{
	struct index_reconcile_report rep = { 0 };

	tu_reconcile(dir, &rep);
	assert_int_equal(rep.added, NDEFS);
	assert_int_equal(rep.skipped, 0);
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	build();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return fsu_rmtree(dir);
}

static int
drop_index(void **state)
{
	(void)state;
	unlink(at("index.db"));
	unlink(at("index.db-wal"));
	unlink(at("index.db-shm"));
	return 0;
}

static int
with_index(void **state)
{
	drop_index(state);
	make_index();
	return 0;
}

/* Asserts the window's sensors, given as "s1,s2" ("" for none). */
static void
check_sensors(struct repo *r, uint64_t from, uint64_t to, const char *want)
{
	char **v = NULL, err[256] = "", got[256] = "";
	size_t n = 99;

	assert_int_equal(repo_sensors(r, from, to, &v, &n, err, sizeof(err)), 0);
	for (size_t i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "", v[i]);
	assert_string_equal(got, want);
	repo_strv_free(v, n);
}

/* Asserts the window's segments of one sensor, as indexes into defs[] (-1 ends). */
static void
check_segments(struct repo *r, const char *sensor, uint64_t from, uint64_t to, const int *want)
{
	struct repo_seglist l = { 0 };
	char err[256] = "";
	size_t n = 0;

	assert_int_equal(repo_segments(r, sensor, from, to, &l, err, sizeof(err)), 0);
	for (; want[n] >= 0; n++) {
		const struct segdef *d = &defs[want[n]];
		const struct repo_seg *s = &l.v[n];

		assert_true(n < l.n);
		assert_string_equal(s->sensor, sensor);
		assert_string_equal(s->rel, rels[want[n]]);
		assert_string_equal(s->path, at(rels[want[n]]));
		assert_string_equal(s->iface, d->ifname);
		assert_int_equal(s->linktype, d->linktype);
		assert_int_equal(s->snaplen, d->snaplen);
		assert_int_equal(s->min_ns, T0 + d->ts[0]);
		assert_int_equal(s->max_ns, T0 + d->ts[d->n - 1]);
		assert_int_equal(s->packets, d->n);
		assert_int_equal(s->bytes, sizes[want[n]]);
	}
	assert_int_equal(l.n, n);
	repo_seglist_free(&l);
	assert_null(l.v);
}

/* The same answers, whichever source the repository is read from. */
static void
check_windows(struct repo *r)
{
	static const int s1_all[] = { 0, 1, -1 }, s1_first[] = { 0, -1 }, s1_second[] = { 1, -1 };
	static const int s2_all[] = { 2, -1 }, none[] = { -1 };

	check_sensors(r, 0, END, "s1,s2");
	check_segments(r, "s1", 0, END, s1_all);
	check_segments(r, "s2", 0, END, s2_all);
	check_segments(r, "s3", 0, END, none);
	check_segments(r, "nobody", 0, END, none);
	/* to is exclusive: a segment starting at to is out; from is inclusive: a segment
	 * whose last packet is at from is in. */
	check_sensors(r, T0 + 11 * NS, T0 + 15 * NS, "");
	check_sensors(r, T0 + 10 * NS, T0 + 15 * NS, "s1");
	check_sensors(r, T0 + 10 * NS + 1, T0 + 15 * NS + 1, "s2");
	check_sensors(r, T0 + 30 * NS, T0 + 30 * NS + 1, "s1");
	check_sensors(r, T0 + 30 * NS + 1, END, "");
	check_sensors(r, 0, T0, "");
	check_sensors(r, 0, T0 + 1, "s1");
	check_segments(r, "s1", T0 + 10 * NS, T0 + 20 * NS, s1_first);
	check_segments(r, "s1", T0 + 10 * NS, T0 + 20 * NS + 1, s1_all);
	check_segments(r, "s1", T0 + 12 * NS, T0 + 13 * NS, none);
	check_segments(r, "s1", T0 + 25 * NS, T0 + 26 * NS, s1_second);
}

static void
test_index_source(void **state)
{
	char err[256] = "";
	struct repo *r = repo_open(dir, err, sizeof(err));

	(void)state;
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_INDEX);
	assert_string_equal(repo_dir(r), dir);
	check_windows(r);
	repo_free(r);
}

static void
test_scan_source(void **state)
{
	char err[256] = "";
	struct repo *r;
	static const uint64_t ts[] = { T0 + 100 * NS };

	(void)state;
	/* What a scan must leave out: a segment still being written, a file that is not a
	 * pcap, one that ends before its first record, one of another extension, a
	 * directory named like a segment, and a sensor folder starting with '.'. */
	write_pcap(at("sensors/s1/segments/.open-00000000000000000001-00000000000000ab-9.0-eth0.pcap"), 1,
		65535, ts, 1);
	write_pcap(at("sensors/s1/segments/x.pcap.tmp"), 1, 65535, ts, 1);
	assert_int_equal(fsu_mkdirs(at("sensors/s1/segments/d.pcap"), 0755), 0);
	{
		int fd = open(at("sensors/s2/segments/garbage.pcap"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(fsu_write_all(fd, "this is not a capture file at all", 33), 0);
		close(fd);
	}
	write_pcap(at("sensors/s2/segments/empty.pcap"), 1, 65535, ts, 0);
	assert_int_equal(fsu_mkdirs(at("sensors/.hidden/segments"), 0755), 0);
	write_pcap(at("sensors/.hidden/segments/a.pcap"), 1, 65535, ts, 1);

	r = repo_open(dir, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_SCAN);
	check_windows(r);
	/* A scanned repository knows sensors by their folders too. */
	assert_true(repo_has_sensor(r, "s3"));
	assert_false(repo_has_sensor(r, ".hidden"));
	repo_free(r);

	assert_int_equal(fsu_rmtree(at("sensors/.hidden")), 0);
	assert_int_equal(fsu_rmtree(at("sensors/s1/segments/d.pcap")), 0);
	unlink(at("sensors/s1/segments/.open-00000000000000000001-00000000000000ab-9.0-eth0.pcap"));
	unlink(at("sensors/s1/segments/x.pcap.tmp"));
	unlink(at("sensors/s2/segments/garbage.pcap"));
	unlink(at("sensors/s2/segments/empty.pcap"));
}

static void
test_unreadable_index_falls_back_to_scan(void **state)
{
	char err[256] = "";
	struct repo *r;
	int fd = open(at("index.db"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	(void)state;
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(fsu_write_all(fd, "not a database, ", 16), 0);
	close(fd);
	r = repo_open(dir, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_SCAN);
	check_windows(r);
	repo_free(r);
}

static void
test_list_source(void **state)
{
	struct repo_seglist l = { 0 };
	struct repo *r;
	static const int s1_all[] = { 0, 1, -1 }, s2_all[] = { 2, -1 };
	char err[256] = "";

	(void)state;
	/* Given out of order: the repository sorts them by sensor, then time. */
	for (int i = (int)NDEFS - 1; i >= 0; i--) {
		const struct segdef *d = &defs[i];
		struct repo_seg s = {
			.sensor = (char *)d->sensor,
			.rel = rels[i],
			.path = at(rels[i]),
			.iface = (char *)d->ifname,
			.linktype = d->linktype,
			.snaplen = d->snaplen,
			.min_ns = T0 + d->ts[0],
			.max_ns = T0 + d->ts[d->n - 1],
			.packets = d->n,
			.bytes = sizes[i],
		};
		assert_int_equal(repo_seglist_add(&l, &s), 0);
	}
	assert_int_equal(l.n, NDEFS);
	/* repo_seglist_add copies: the list does not point into our arrays. */
	assert_ptr_not_equal(l.v[0].rel, rels[NDEFS - 1]);
	r = repo_open_list(dir, &l);
	assert_non_null(r);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	assert_int_equal(repo_source(r), REPO_LIST);
	check_sensors(r, 0, END, "s1,s2");
	check_segments(r, "s1", 0, END, s1_all);
	check_segments(r, "s2", 0, END, s2_all);
	check_sensors(r, T0 + 10 * NS + 1, T0 + 15 * NS + 1, "s2");
	/* A list knows only the sensors it lists, folders or not. */
	assert_true(repo_has_sensor(r, "s1"));
	assert_false(repo_has_sensor(r, "s3"));
	assert_int_equal(repo_segments(r, "s3", 0, END, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	repo_free(r);
}

static void
test_has_sensor_and_names_path(void **state)
{
	char err[256] = "", *p;
	struct repo *r = repo_open(dir, err, sizeof(err));

	(void)state;
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_INDEX);
	assert_true(repo_has_sensor(r, "s1"));
	assert_true(repo_has_sensor(r, "s2"));
	assert_true(repo_has_sensor(r, "s3")); /* a folder without segments */
	assert_false(repo_has_sensor(r, "s4"));
	assert_false(repo_has_sensor(r, ".."));
	assert_false(repo_has_sensor(r, "s1/segments"));
	p = repo_names_path(r, "s1");
	assert_non_null(p);
	assert_string_equal(p, at("sensors/s1/names.jsonl"));
	free(p);
	repo_free(r);
}

static void
test_index_path_outside_repository(void **state)
{
	char err[256] = "";
	struct repo *r;
	struct repo_seglist l = { 0 };
	sqlite3 *db;

	(void)state;
	/* An index edited by hand (or by anything but the receiver) must not make the
	 * command read files outside the repository. */
	assert_int_equal(sqlite3_open(at("index.db"), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE segments SET path = '../../etc/passwd' WHERE sensor = 's2'",
				 NULL, NULL, NULL),
		SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_close(db);
	r = repo_open(dir, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_INDEX);
	assert_int_equal(repo_segments(r, "s2", 0, END, &l, err, sizeof(err)), -1);
	assert_string_equal(err, "index: segment path '../../etc/passwd' leaves the repository");
	assert_int_equal(l.n, 0);
	repo_seglist_free(&l);
	repo_free(r);
}

static void
test_open_errors(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(repo_open(at("missing"), err, sizeof(err)));
	assert_non_null(strstr(err, "No such file or directory"));
	assert_non_null(strstr(err, at("missing")));
	err[0] = '\0';
	/* A file: the message says so, whatever errno an earlier call left behind. */
	errno = EAGAIN;
	assert_null(repo_open(at(rels[0]), err, sizeof(err)));
	assert_non_null(strstr(err, at(rels[0])));
	assert_non_null(strstr(err, ": not a directory"));
}

static void
test_parse_segment_name(void **state)
{
	char ifname[256];
	uint64_t first = 0;

	(void)state;
	assert_true(repo_parse_segment_name(
		"01700000000000000000-00000000000000ab-7.3-eth0.pcap", &first, ifname));
	assert_int_equal(first, T0);
	assert_string_equal(ifname, "eth0");
	/* The older form, without the interface index; a name with dots and dashes. */
	assert_true(repo_parse_segment_name(
		"01700000000000000001-00000000000000ab-7-br-lan.1.pcap", &first, ifname));
	assert_int_equal(first, T0 + 1);
	assert_string_equal(ifname, "br-lan.1");
	assert_false(repo_parse_segment_name("garbage.pcap", &first, ifname));
	assert_false(repo_parse_segment_name("", &first, ifname));
	assert_false(repo_parse_segment_name(
		"01700000000000000000-00000000000000ab-7.3-eth0.pcapng", &first, ifname));
	assert_false(repo_parse_segment_name(
		"99999999999999999999-00000000000000ab-7.3-eth0.pcap", &first, ifname));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_index_source, with_index),
		cmocka_unit_test_setup(test_has_sensor_and_names_path, with_index),
		cmocka_unit_test_setup(test_index_path_outside_repository, with_index),
		cmocka_unit_test_setup(test_scan_source, drop_index),
		cmocka_unit_test_setup(test_unreadable_index_falls_back_to_scan, drop_index),
		cmocka_unit_test(test_list_source),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_parse_segment_name),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
