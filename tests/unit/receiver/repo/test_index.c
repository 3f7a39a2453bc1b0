/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/repo/index.c and receiver/store/retention.c: the schema the CLI reads, rows
 * read back from real pcap files (written with shared/pcapfile.h), the start-up
 * reconcile after every kind of disagreement, and which segments retention picks
 * under each bound. Rows are checked through a second, plain SQLite connection, as
 * the CLI would see them.
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
#include <sqlite3.h>

#include "receiver/repo/index.h"
#include "receiver/repo/posfile.h"
#include "shared/pcapfile.h"
#include "receiver/store/retention.h"

#define NS 1000000000ll
#define T0 (1700000000ll * NS) /* a fixed "now" for the age bounds */

struct fixture {
	char dir[64];
	struct index *ix;
};

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/pcapline-test-index-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	index_close(f->ix);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
mkdirs(const char *dir, const char *sensor)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/sensors", dir);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/sensors/%s", dir, sensor);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/sensors/%s/segments", dir, sensor);
	mkdir(p, 0750);
}

/* Writes <dir>/<rel>: n records of caplen bytes at timestamps ts[0..n). Returns its size. */
static uint64_t
write_pcap(const char *dir, const char *rel, uint32_t linktype, uint32_t snaplen, const int64_t *ts, int n,
	uint32_t caplen)
{
	char p[512];
	uint8_t data[2048];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	struct pcapw *w = pcapw_new(fd, linktype, snaplen);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (int i = 0; i < n; i++) {
		memset(data, i, sizeof(data));
		assert_int_equal(pcapw_write(w, (uint64_t)ts[i], data, caplen, caplen + 4), 0);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);
	return 24 + (uint64_t)n * (16 + caplen);
}

/* A segment of sensor `sensor` named after its first timestamp, holding one packet
 * per second from first_s to last_s (seconds after T0 - 1000 s). */
static uint64_t
make_seg(const char *dir, const char *sensor, int first_s, int last_s, uint32_t caplen, char *rel,
	size_t rellen)
{
	int64_t ts[64];
	int n = 0;
	for (int s = first_s; s <= last_s && n < 64; s++)
		ts[n++] = T0 - 1000 * NS + s * NS;
	mkdirs(dir, sensor);
	snprintf(rel, rellen, "sensors/%s/segments/%020lld-00000000000000aa-%d-eth0.pcap", sensor,
		(long long)ts[0], first_s);
	return write_pcap(dir, rel, 1, 65535, ts, n, caplen);
}

static bool
exists(const char *dir, const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return access(p, F_OK) == 0;
}

/* The rows as the CLI sees them, one line each, ordered by path. */
static char *
dump_rows(const char *dir, const char *sql)
{
	char p[512];
	sqlite3 *db;
	sqlite3_stmt *st;
	static char out[8192];
	size_t n = 0;
	snprintf(p, sizeof(p), "%s/index.db", dir);
	assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	out[0] = '\0';
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (int c = 0; c < sqlite3_column_count(st); c++) {
			const char *v = (const char *)sqlite3_column_text(st, c);
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", c ? "|" : "", v ? v : "NULL");
		}
		n += (size_t)snprintf(out + n, sizeof(out) - n, "\n");
		assert_true(n < sizeof(out));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static void
open_index(struct fixture *f)
{
	char err[512] = "";
	f->ix = index_open(f->dir, err, sizeof(err));
	if (!f->ix)
		fail_msg("index_open: %s", err);
}

/* ------------------------------------------------------------------------------ */

static void
test_schema(void **state)
{
	struct fixture *f = *state;
	open_index(f);
	index_close(f->ix);
	open_index(f); /* opening again changes nothing */
	assert_string_equal(dump_rows(f->dir, "SELECT key, value FROM meta"), "schema|2\n");
	assert_string_equal(dump_rows(f->dir, "PRAGMA journal_mode"), "wal\n");
	assert_string_equal(dump_rows(f->dir, "SELECT type, name FROM sqlite_master ORDER BY name"),
		"table|conn_segs\n"
		"index|conn_segs_seg\n"
		"table|conns\n"
		"index|conns_flow\n"
		"index|conns_time\n"
		"view|flows\n"
		"table|l4_done\n"
		"table|l4_failed\n"
		"table|l4_seq\n"
		"table|l4_stats\n"
		"table|meta\n"
		"table|retention\n"
		"table|segments\n"
		"index|segments_end\n"
		"trigger|segments_l4_delete\n"
		"trigger|segments_l4_failed_delete\n"
		"index|segments_sensor_time\n"
		"index|segments_time\n"
		"index|sqlite_autoindex_l4_stats_1\n"
		"index|sqlite_autoindex_meta_1\n"
		"index|sqlite_autoindex_retention_1\n"
		"index|sqlite_autoindex_segments_1\n");
	assert_string_equal(
		dump_rows(f->dir, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('segments')"),
		"id|INTEGER|0|1\n"
		"sensor|TEXT|1|0\n"
		"path|TEXT|1|0\n"
		"iface|TEXT|1|0\n"
		"linktype|INTEGER|1|0\n"
		"snaplen|INTEGER|1|0\n"
		"min_ns|INTEGER|1|0\n"
		"max_ns|INTEGER|1|0\n"
		"packets|INTEGER|1|0\n"
		"bytes|INTEGER|1|0\n"
		"closed_ns|INTEGER|1|0\n");
	assert_string_equal(
		dump_rows(f->dir, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('retention')"),
		"sensor|TEXT|0|1\n"
		"segments|INTEGER|1|0\n"
		"packets|INTEGER|1|0\n"
		"bytes|INTEGER|1|0\n");
}

static void
test_schema_mismatch_and_corrupt(void **state)
{
	struct fixture *f = *state;
	char p[512], err[512] = "";
	open_index(f);
	index_close(f->ix);
	f->ix = NULL;
	sqlite3 *db;
	snprintf(p, sizeof(p), "%s/index.db", f->dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE meta SET value = '3'", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	/* A newer version: refused, named, and left as it is (not set aside as damaged). */
	assert_null(index_open(f->dir, err, sizeof(err)));
	char want[700];
	snprintf(want, sizeof(want), "%s: schema version 3 is newer than this pcapline supports (2)", p);
	if (strstr(err, want) == NULL)
		fail_msg("%s", err);
	assert_string_equal(dump_rows(f->dir, "SELECT value FROM meta WHERE key = 'schema'"), "3\n");
	assert_string_equal(dump_rows(f->dir, "SELECT count(*) FROM sqlite_master"), "22\n");
	/* Readers refuse it too; they read an older one as it is. */
	assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	err[0] = '\0';
	assert_int_equal(index_schema_check(db, p, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "schema version 3 is newer"));
	sqlite3_close(db);
	/* Something that is no version at all. */
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE meta SET value = '1x'", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(index_open(f->dir, err, sizeof(err)));
	assert_non_null(strstr(err, "schema version '1x' is not one this pcapline knows (it supports 2)"));

	/* Not a database at all: set aside, a new one is made. */
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	for (int i = 0; i < 512; i++)
		fputs("garbage!", fp);
	fclose(fp);
	snprintf(p, sizeof(p), "%s/index.db-wal", f->dir);
	unlink(p);
	open_index(f);
	assert_string_equal(dump_rows(f->dir, "SELECT value FROM meta WHERE key = 'schema'"), "2\n");
}

/* The schema as SQLite holds it, in an order that does not depend on creation order.
 * The text of the segments table is left out: import's copy of version 1 wrote the same
 * columns and constraints on one line; SEGMENTS_SQL compares them column by column. */
#define SCHEMA_SQL                                                                                        \
	"SELECT type, name, tbl_name, CASE name WHEN 'segments' THEN '' ELSE sql END FROM sqlite_master " \
	"ORDER BY type, name"
#define SEGMENTS_SQL "SELECT * FROM pragma_table_info('segments') ORDER BY cid"

/* Loads a dump of an index.db written by the release before schemas were versioned
 * (tests/data/index-v1/README.md) into <dir>/index.db. */
static void
load_v1(const char *dir, const char *which)
{
	char p[512], *sql;
	sqlite3 *db;
	FILE *fp;
	long n;

	snprintf(p, sizeof(p), "%s/tests/data/index-v1/%s.sql",
		getenv("PLTEST_SRC") ? getenv("PLTEST_SRC") : ".", which);
	fp = fopen(p, "r");
	if (fp == NULL)
		fail_msg("%s: %s (run from the top of the tree)", p, strerror(errno));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	sql = calloc(1, (size_t)n + 1);
	assert_non_null(sql);
	assert_int_equal(fread(sql, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	snprintf(p, sizeof(p), "%s/index.db", dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	free(sql);
}

static void
test_migrate_v1(void **state, const char *which, const char *rows, const char *retention)
{
	struct fixture *f = *state;
	char fresh[64], *want;

	/* The schema a new index gets. */
	snprintf(fresh, sizeof(fresh), "/tmp/pcapline-test-index-XXXXXX");
	assert_non_null(mkdtemp(fresh));
	char err[512] = "";
	struct index *ix = index_open(fresh, err, sizeof(err));
	if (!ix)
		fail_msg("index_open: %s", err);
	index_close(ix);
	want = strdup(dump_rows(fresh, SCHEMA_SQL));
	char *want_seg = strdup(dump_rows(fresh, SEGMENTS_SQL));
	nftw(fresh, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	load_v1(f->dir, which);
	assert_string_equal(dump_rows(f->dir, "SELECT value FROM meta WHERE key = 'schema'"), "1\n");
	open_index(f);
	/* In place: the rows and totals are kept, the version is the current one, and the
	 * schema is exactly a new index's. */
	assert_string_equal(dump_rows(f->dir, "SELECT value FROM meta WHERE key = 'schema'"), "2\n");
	assert_string_equal(
		dump_rows(f->dir, "SELECT id, sensor, path, packets, bytes FROM segments ORDER BY id"), rows);
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM retention"), retention);
	assert_string_equal(dump_rows(f->dir, SCHEMA_SQL), want);
	assert_string_equal(dump_rows(f->dir, SEGMENTS_SQL), want_seg);
	free(want);
	free(want_seg);
	/* And the migrated index works: retention, the L4 trigger, a second open. */
	struct index_seg old[1];
	assert_int_equal(index_oldest(f->ix, "s1", old, 1), 1);
	assert_int_equal(index_retire(f->ix, &old[0]), 0);
	index_close(f->ix);
	open_index(f);
	assert_string_equal(
		dump_rows(f->dir, "SELECT value FROM l4_stats WHERE key = 'retired_before_dissection'"),
		strcmp(which, "receiver") == 0 ? "2\n" : "1\n");
}

static void
test_migrate_v1_receiver(void **state)
{
	test_migrate_v1(state, "receiver",
		"2|s1|sensors/s1/segments/01700000001000000000-00000000000000aa-2.0-eth0.pcap|11|1300\n"
		"3|s1|sensors/s1/segments/01700000002000000000-00000000000000aa-3.0-eth0.pcap|12|1416\n",
		"s1|1|10|1184\n");
}

static void
test_migrate_v1_import(void **state)
{
	test_migrate_v1(state, "import",
		"1|s1|sensors/s1/segments/01700000000000000000-2d34de0ba8f7143d-0-if0.pcap|6|480\n", "");
}

/* pcapline import opens the index inside its own transaction: the schema it gets is the
 * receiver's (the same function, through a savepoint). */
static void
test_schema_inside_transaction(void **state)
{
	struct fixture *f = *state;
	char p[512], err[512] = "", *want;
	sqlite3 *db;

	open_index(f);
	index_close(f->ix);
	f->ix = NULL;
	want = strdup(dump_rows(f->dir, SCHEMA_SQL));
	snprintf(p, sizeof(p), "%s/index.db", f->dir);
	unlink(p);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(index_schema_apply(db, p, err, sizeof(err)), 0);
	assert_int_equal(sqlite3_get_autocommit(db), 0); /* still the caller's transaction */
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_string_equal(dump_rows(f->dir, SCHEMA_SQL), want);
	assert_string_equal(dump_rows(f->dir, "SELECT value FROM meta WHERE key = 'schema'"), "2\n");
	free(want);
}

static void
test_path_ok(void **state)
{
	static const struct {
		const char *path;
		bool ok;
	} cases[] = {
		{ "sensors/s1/segments/0001-aa-1-eth0.pcap", true },
		{ "sensors/web-01.dc/segments/x.pcap", true },
		{ "sensors/s1/segments/.open-0001-aa-1-eth0.pcap", false },
		{ "sensors/s1/segments/.pcap", false },
		{ "sensors/s1/segments/x.pcapng", false },
		{ "sensors/s1/segments/x.pcap/y.pcap", false },
		{ "sensors/../segments/x.pcap", false },
		{ "sensors/./segments/x.pcap", false },
		{ "sensors//segments/x.pcap", false },
		{ "sensors/s1/segments/../../../etc/x.pcap", false },
		{ "sensors/s1/other/x.pcap", false },
		{ "snapshots/s1/segments/x.pcap", false },
		{ "/sensors/s1/segments/x.pcap", false },
		{ "sensors/s1/segments/", false },
		{ "", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (index_seg_path_ok(cases[i].path) != cases[i].ok)
			fail_msg("index_seg_path_ok(\"%s\") != %d", cases[i].path, cases[i].ok);
}

static void
test_scan(void **state)
{
	struct fixture *f = *state;
	struct index_seg g;
	/* Out-of-order timestamps: min and max are not simply the first and last. */
	int64_t ts[] = { T0 + 5, T0 + 2, T0 + 9, T0 + 7 };
	mkdirs(f->dir, "s1");
	const char *rel = "sensors/s1/segments/01700000000000000005-00000000000000aa-1-br-lan.1.pcap";
	uint64_t size = write_pcap(f->dir, rel, 113, 4096, ts, 4, 100);
	assert_int_equal(index_scan(f->dir, rel, &g), 0);
	assert_string_equal(g.sensor, "s1");
	assert_string_equal(g.path, rel);
	assert_string_equal(g.iface, "br-lan.1");
	assert_int_equal(g.linktype, 113);
	assert_int_equal(g.snaplen, 4096);
	assert_int_equal(g.min_ns, T0 + 2);
	assert_int_equal(g.max_ns, T0 + 9);
	assert_int_equal(g.packets, 4);
	assert_int_equal(g.bytes, size);
	assert_int_equal(size, 24 + 4 * 116);

	/* Cut in the middle of the last record: the complete ones count. */
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", f->dir, rel);
	assert_int_equal(truncate(p, (off_t)size - 10), 0);
	assert_int_equal(index_scan(f->dir, rel, &g), 0);
	assert_int_equal(g.packets, 3);
	assert_int_equal(g.max_ns, T0 + 9);
	assert_int_equal(g.bytes, size - 10);

	/* Header only. */
	assert_int_equal(truncate(p, 24), 0);
	assert_int_equal(index_scan(f->dir, rel, &g), 0);
	assert_int_equal(g.packets, 0);

	assert_int_equal(index_scan(f->dir, "sensors/s1/segments/none.pcap", &g), -ENOENT);
	assert_int_equal(index_scan(f->dir, "sensors/s1/segments/.open-x.pcap", &g), -EINVAL);
	assert_int_equal(truncate(p, 10), 0);
	assert_true(index_scan(f->dir, rel, &g) < 0);
}

static void
test_insert(void **state)
{
	struct fixture *f = *state;
	open_index(f);
	struct index_seg g = {
		.sensor = "s1",
		.path = "sensors/s1/segments/a.pcap",
		.iface = "eth0",
		.linktype = 1,
		.snaplen = 262144,
		.min_ns = T0,
		.max_ns = T0 + 5,
		.packets = 7,
		.bytes = 1000,
		.closed_ns = T0 + 6,
	};
	assert_int_equal(index_insert(f->ix, &g), 0);
	g.packets = 8; /* the same path again replaces the row, keeping its id */
	assert_int_equal(index_insert(f->ix, &g), 0);
	snprintf(g.path, sizeof(g.path), "snapshots/x/a.pcap");
	assert_int_equal(index_insert(f->ix, &g), -1);
	assert_int_equal(index_pending(f->ix), 0);
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM segments"),
		"1|s1|sensors/s1/segments/"
		"a.pcap|eth0|1|262144|1700000000000000000|1700000000000000005|8|1000|"
		"1700000000000000006\n");
}

static void
sql(const char *dir, const char *stmt)
{
	char p[512];
	sqlite3 *db;
	snprintf(p, sizeof(p), "%s/index.db", dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, stmt, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void
on_indexed(void *arg, const struct index_seg *g)
{
	int *n = arg;
	(*n)++;
}

static void
test_insert_retry(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256];
	struct index_seg ga, gb;
	int n = 0;
	make_seg(f->dir, "s1", 0, 1, 10, a, sizeof(a));
	make_seg(f->dir, "s1", 2, 3, 10, b, sizeof(b));
	assert_int_equal(index_scan(f->dir, a, &ga), 0);
	assert_int_equal(index_scan(f->dir, b, &gb), 0);
	open_index(f);
	/* Make every insert fail, as a full disk would. */
	sql(f->dir,
		"CREATE TRIGGER fail BEFORE INSERT ON segments BEGIN SELECT RAISE(ABORT, 'injected'); END");
	assert_int_equal(index_insert(f->ix, &ga), -1);
	assert_int_equal(index_insert(f->ix, &gb), -1);
	assert_int_equal(index_pending(f->ix), 2);
	assert_int_equal(index_retry(f->ix, on_indexed, &n), 2);
	assert_int_equal(n, 0);
	assert_string_equal(dump_rows(f->dir, "SELECT count(*) FROM segments"), "0\n");
	sql(f->dir, "DROP TRIGGER fail");
	assert_int_equal(index_retry(f->ix, on_indexed, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(index_pending(f->ix), 0);
	char want[1024];
	snprintf(want, sizeof(want), "%s\n%s\n", a, b);
	assert_string_equal(dump_rows(f->dir, "SELECT path FROM segments ORDER BY path"), want);
}

static void
test_reconcile(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], c[256], p[512];
	struct index_seg g;
	struct index_reconcile_report rep;
	uint64_t sa = make_seg(f->dir, "s1", 0, 9, 50, a, sizeof(a));
	uint64_t sb = make_seg(f->dir, "s1", 10, 14, 60, b, sizeof(b));
	uint64_t sc = make_seg(f->dir, "s2", 3, 4, 70, c, sizeof(c));
	open_index(f);
	/* a is indexed; b and c are not (a crash between rename and insert); a row points
	 * at a file that is gone (a crash between unlink and commit). */
	assert_int_equal(index_scan(f->dir, a, &g), 0);
	assert_int_equal(index_insert(f->ix, &g), 0);
	snprintf(g.path, sizeof(g.path), "sensors/s2/segments/gone.pcap");
	snprintf(g.sensor, sizeof(g.sensor), "s2");
	assert_int_equal(index_insert(f->ix, &g), 0);
	/* Never indexed: an open segment, a non-pcap file, a file outside segments/. */
	snprintf(p, sizeof(p), "%s/sensors/s1/segments/.open-99-aa-1-eth0.pcap", f->dir);
	fclose(fopen(p, "w"));
	snprintf(p, sizeof(p), "%s/sensors/s1/segments/notes.txt", f->dir);
	fclose(fopen(p, "w"));
	snprintf(p, sizeof(p), "%s/sensors/s1/stats.pcap", f->dir);
	fclose(fopen(p, "w"));
	/* Unreadable: skipped and reported, not indexed. */
	snprintf(p, sizeof(p), "%s/sensors/s2/segments/junk.pcap", f->dir);
	FILE *fp = fopen(p, "w");
	fputs("this is not a capture file at all", fp);
	fclose(fp);

	assert_int_equal(index_reconcile(f->ix, &rep), 0);
	assert_int_equal(rep.added, 2);
	assert_int_equal(rep.removed, 1);
	assert_int_equal(rep.skipped, 1);
	char want[2048];
	snprintf(want, sizeof(want),
		"%s|s1|eth0|1|65535|%lld|%lld|10|%llu\n"
		"%s|s1|eth0|1|65535|%lld|%lld|5|%llu\n"
		"%s|s2|eth0|1|65535|%lld|%lld|2|%llu\n",
		a, T0 - 1000 * NS, T0 - 991 * NS, (unsigned long long)sa, b, T0 - 990 * NS, T0 - 986 * NS,
		(unsigned long long)sb, c, T0 - 997 * NS, T0 - 996 * NS, (unsigned long long)sc);
	assert_string_equal(dump_rows(f->dir,
				    "SELECT path, sensor, iface, linktype, snaplen, min_ns, max_ns, packets, "
				    "bytes FROM segments ORDER BY path"),
		want);
	/* A second reconcile finds nothing to fix. */
	assert_int_equal(index_reconcile(f->ix, &rep), 0);
	assert_int_equal(rep.added + rep.removed, 0);
}

/* ------------------------------------------------------------------------------
 * Retention. */

struct deleted {
	int n;
	char path[16][INDEX_MAX_PATH];
	char why[16][16];
};

static void
on_deleted(void *arg, const struct index_seg *g, const char *why)
{
	struct deleted *d = arg;
	assert_true(d->n < 16);
	snprintf(d->path[d->n], sizeof(d->path[0]), "%s", g->path);
	snprintf(d->why[d->n], sizeof(d->why[0]), "%s", why);
	d->n++;
}

/* Indexes a fresh segment and tells retention, as the store does on close. */
static uint64_t
add_seg(struct fixture *f, struct retention *r, const char *sensor, int first_s, int last_s, char *rel)
{
	struct index_seg g;
	uint64_t size = make_seg(f->dir, sensor, first_s, last_s, 100, rel, 256);
	assert_int_equal(index_scan(f->dir, rel, &g), 0);
	assert_int_equal(index_insert(f->ix, &g), 0);
	if (r)
		retention_added(r, &g);
	return size;
}

static struct retention *
new_retention(struct fixture *f, uint64_t max_bytes, uint64_t max_age_ms, uint64_t sensor_max_bytes,
	uint64_t sensor_max_age_ms)
{
	char err[256];
	struct retention_opts o = { max_bytes, max_age_ms, sensor_max_bytes, sensor_max_age_ms };
	struct retention *r = retention_new(f->ix, &o, err, sizeof(err));
	if (!r)
		fail_msg("retention_new: %s", err);
	return r;
}

static void
test_retention_global_size(void **state)
{
	struct fixture *f = *state;
	char s1a[256], s1b[256], s2a[256], s2b[256], s1c[256];
	struct deleted d = { 0 };
	open_index(f);
	/* Sizes: 24 + n * 116. Oldest by max_ns: s2a (5), s1a (9), s2b (20), s1b (30). */
	uint64_t z1a = add_seg(f, NULL, "s1", 0, 9, s1a);   /* 10 packets, 1184 bytes */
	uint64_t z2a = add_seg(f, NULL, "s2", 1, 5, s2a);   /* 5 packets, 604 bytes */
	uint64_t z1b = add_seg(f, NULL, "s1", 21, 30, s1b); /* 10 packets */
	uint64_t z2b = add_seg(f, NULL, "s2", 11, 20, s2b); /* 10 packets */
	assert_int_equal(z1a, 1184);
	assert_int_equal(z2a, 604);
	/* The totals come from the index at creation. */
	struct retention *r = new_retention(f, z1b + z2b + z1a - 1, 0, 0, 0);
	assert_int_equal(retention_bytes(r, NULL), z1a + z2a + z1b + z2b);
	assert_int_equal(retention_bytes(r, "s1"), z1a + z1b);
	/* One byte over after dropping s2a: s1a goes too, and no more. */
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 2);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.path[0], s2a);
	assert_string_equal(d.path[1], s1a);
	assert_string_equal(d.why[0], "size bound");
	assert_string_equal(d.why[1], "size bound");
	assert_false(exists(f->dir, s2a));
	assert_false(exists(f->dir, s1a));
	assert_true(exists(f->dir, s1b));
	assert_true(exists(f->dir, s2b));
	assert_int_equal(retention_bytes(r, NULL), z1b + z2b);
	char want[1024];
	snprintf(want, sizeof(want), "%s\n%s\n", s1b, s2b);
	assert_string_equal(dump_rows(f->dir, "SELECT path FROM segments ORDER BY path"), want);
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM retention ORDER BY sensor"),
		"s1|1|10|1184\n"
		"s2|1|5|604\n");
	uint64_t segs, pkts, bytes;
	assert_int_equal(index_retention_get(f->ix, "s1", &segs, &pkts, &bytes), 0);
	assert_true(segs == 1 && pkts == 10 && bytes == 1184);
	assert_int_equal(index_retention_get(f->ix, "nobody", &segs, &pkts, &bytes), 0);
	assert_true(segs == 0 && pkts == 0 && bytes == 0);

	/* Within bounds: nothing to do, until a new segment crosses the bound again. */
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 0);
	add_seg(f, r, "s1", 31, 40, s1c);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[2], s2b);
	snprintf(want, sizeof(want), "s1|1|10|1184\ns2|2|15|%llu\n", (unsigned long long)(604 + z2b));
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM retention ORDER BY sensor"), want);
	retention_free(r);
}

static void
test_retention_age(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], c[256];
	struct deleted d = { 0 };
	open_index(f);
	/* max_ns: a = T0-991 s, b = T0-500 s (a long segment), c = T0-10 s. */
	add_seg(f, NULL, "s1", 0, 9, a);
	add_seg(f, NULL, "s1", 400, 500, b); /* 64 packets: 400..463 */
	add_seg(f, NULL, "s2", 980, 990, c);
	struct retention *r = new_retention(f, 0, 600 * 1000, 0, 0);
	/* At T0 everything older than 600 s goes: only a (b's newest packet is T0-537 s). */
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[0], a);
	assert_string_equal(d.why[0], "age bound");
	/* 64 s later b is over the bound too; c never is. */
	assert_int_equal(retention_run(r, T0 + 63 * NS, on_deleted, &d), 0);
	assert_int_equal(retention_run(r, T0 + 64 * NS, on_deleted, &d), 1);
	assert_string_equal(d.path[1], b);
	assert_int_equal(retention_run(r, T0 + 500 * NS, on_deleted, &d), 0);
	assert_true(exists(f->dir, c));
	retention_free(r);
}

static void
test_retention_per_sensor(void **state)
{
	struct fixture *f = *state;
	char a1[256], a2[256], a3[256], b1[256], b2[256];
	struct deleted d = { 0 };
	open_index(f);
	/* Sensor s1 has three segments of 1184 bytes, s2 two; s2's are older than all of s1's. */
	add_seg(f, NULL, "s1", 100, 109, a1);
	add_seg(f, NULL, "s1", 110, 119, a2);
	add_seg(f, NULL, "s1", 120, 129, a3);
	add_seg(f, NULL, "s2", 0, 9, b1);
	add_seg(f, NULL, "s2", 10, 19, b2);
	/* Each sensor may keep two segments: only s1 loses one, its own oldest, even
	 * though s2's segments are older. */
	struct retention *r = new_retention(f, 0, 0, 2 * 1184, 0);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[0], a1);
	assert_string_equal(d.why[0], "size bound");
	retention_free(r);
	/* Per-sensor age: s2's newest packet is T0-981 s. */
	r = new_retention(f, 0, 0, 0, 985 * 1000);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[1], b1);
	assert_string_equal(d.why[1], "age bound");
	retention_free(r);
	/* Both kinds set: the per-sensor bound holds, the global one deletes across sensors,
	 * oldest first. */
	r = new_retention(f, 1184, 0, 2 * 1184, 0);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 2);
	assert_string_equal(d.path[2], b2);
	assert_string_equal(d.path[3], a2);
	char want[512];
	snprintf(want, sizeof(want), "%s\n", a3);
	assert_string_equal(dump_rows(f->dir, "SELECT path FROM segments"), want);
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM retention ORDER BY sensor"),
		"s1|2|20|2368\n"
		"s2|2|20|2368\n");
	retention_free(r);
}

static void
test_retention_unbounded_and_guard(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], p[512];
	struct deleted d = { 0 };
	open_index(f);
	add_seg(f, NULL, "s1", 0, 9, a);
	add_seg(f, NULL, "s1", 10, 19, b);
	struct retention *r = new_retention(f, 0, 0, 0, 0);
	assert_false(retention_enabled(r));
	assert_int_equal(retention_run(r, INT64_MAX / 2, on_deleted, &d), 0);
	retention_free(r);

	/* A row that does not point into sensors/<id>/segments/ (as if index.db had been
	 * edited) is dropped without touching its file, and is not counted. */
	snprintf(p, sizeof(p), "%s/snapshots", f->dir);
	mkdir(p, 0750);
	int64_t ts[] = { T0 - 5000 * NS };
	write_pcap(f->dir, "snapshots/keep.pcap", 1, 65535, ts, 1, 10);
	sqlite3 *db;
	snprintf(p, sizeof(p), "%s/index.db", f->dir);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			"INSERT INTO segments(sensor, path, iface, linktype, snaplen, min_ns, max_ns, "
			"packets, bytes, closed_ns) VALUES('s1', 'snapshots/keep.pcap', 'eth0', 1, 65535, "
			"0, 0, 1, 50, 0)",
			NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	r = new_retention(f, 2400, 0, 0, 0); /* 1184 + 1184 + 50: 18 bytes over */
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 0);
	assert_true(exists(f->dir, "snapshots/keep.pcap"));
	assert_true(exists(f->dir, a));
	char want[1024];
	snprintf(want, sizeof(want), "%s\n%s\n", a, b);
	assert_string_equal(dump_rows(f->dir, "SELECT path FROM segments ORDER BY path"), want);
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM retention"), "");
	retention_free(r);
}

static void
test_retention_file_already_gone(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], p[512];
	struct deleted d = { 0 };
	open_index(f);
	add_seg(f, NULL, "s1", 0, 9, a);
	add_seg(f, NULL, "s1", 10, 19, b);
	snprintf(p, sizeof(p), "%s/%s", f->dir, a);
	unlink(p);
	struct retention *r = new_retention(f, 1184, 0, 0, 0);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[0], a);
	assert_true(exists(f->dir, b));
	retention_free(r);
}

/* Retiring a segment takes its L4 rows and position file along: a connection only in
 * that segment goes, one that also has packets in a kept segment stays. */
static void
test_retire_takes_l4_rows(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], pos[600], full[1024];
	open_index(f);
	add_seg(f, NULL, "s1", 0, 9, a);
	add_seg(f, NULL, "s1", 10, 19, b);
	assert_int_equal(posfile_path(a, pos, sizeof(pos)), 0);
	assert_non_null(strstr(pos, "/l4/"));
	snprintf(full, sizeof(full), "%s/sensors/s1/l4", f->dir);
	assert_int_equal(mkdir(full, 0750), 0);
	snprintf(full, sizeof(full), "%s/%s", f->dir, pos);
	FILE *pf = fopen(full, "w");
	assert_non_null(pf);
	fclose(pf);
	assert_int_equal(posfile_path("snapshots/x/a.pcap", pos, sizeof(pos)), -1);
	sql(f->dir,
		"INSERT INTO conns SELECT 1, 7, 's1', 'eth0', 'tcp', '198.18.0.1', 1, '198.18.0.2', 2, "
		"'CLOSED', "
		"NULL, 0, 1, 1, 60, 1, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0");
	sql(f->dir,
		"INSERT INTO conns SELECT 2, 7, 's1', 'eth0', 'tcp', '198.18.0.1', 3, '198.18.0.2', 2, "
		"'CLOSED', "
		"NULL, 0, 1, 1, 60, 1, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0");
	sql(f->dir, "INSERT INTO conn_segs SELECT 1, id, 2 FROM segments ORDER BY min_ns LIMIT 1");
	sql(f->dir, "INSERT INTO conn_segs SELECT 2, id, 1 FROM segments");
	sql(f->dir, "INSERT INTO l4_done SELECT id, 1, 3, 3 FROM segments");
	struct retention *r = new_retention(f, 1184, 0, 0, 0);
	struct deleted d = { 0 };
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[0], a);
	assert_false(access(full, F_OK) == 0);
	assert_string_equal(dump_rows(f->dir, "SELECT conn_id FROM conns"), "2\n");
	assert_string_equal(dump_rows(f->dir, "SELECT count(*) FROM conn_segs"), "1\n");
	assert_string_equal(dump_rows(f->dir, "SELECT count(*) FROM l4_done"), "1\n");
	assert_string_equal(dump_rows(f->dir, "SELECT flow_id, conns, packets FROM flows"), "7|1|2\n");
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM l4_stats"), "");
	/* A segment retired before it was dissected is counted. */
	sql(f->dir, "DELETE FROM l4_done");
	sql(f->dir, "DELETE FROM segments");
	assert_string_equal(dump_rows(f->dir, "SELECT * FROM l4_stats"), "retired_before_dissection|1\n");
	retention_free(r);
}

static void
put_names(const char *dir, const char *sensor, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/sensors/%s/names.jsonl", dir, sensor);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static char *
get_names(const char *dir, const char *sensor)
{
	static char buf[4096];
	char p[512];
	snprintf(p, sizeof(p), "%s/sensors/%s/names.jsonl", dir, sensor);
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

/* When retention deletes a sensor's segments, its name history loses the lines older
 * than the oldest packet left (in the index, and in segments still being written), the
 * mapping in effect then staying. */
static void
test_retention_trims_names(void **state)
{
	struct fixture *f = *state;
	char a[256], b[256], c[256], line[4096] = "";
	struct deleted d = { 0 };
	open_index(f);
	add_seg(f, NULL, "s1", 0, 9, a);
	add_seg(f, NULL, "s1", 100, 109, b);
	add_seg(f, NULL, "s1", 200, 209, c);
	/* Seconds after T0 - 1000 s: 5 and 50 (before b), 150 (inside), 205 (in c). */
	for (int i = 0; i < 4; i++) {
		static const int at[] = { 5, 50, 150, 205 };
		static const char *const nm[] = { "x1", "x2", "x3", "x4" };
		size_t n = strlen(line);
		snprintf(line + n, sizeof(line) - n,
			"{\"t\":%lld,\"addr\":\"198.18.0.1\",\"name\":\"%s\",\"ns\":\"\"}\n",
			(long long)(T0 - 1000 * NS + at[i] * NS), nm[i]);
	}
	put_names(f->dir, "s1", line);
	struct retention *r = new_retention(f, 0, 0, 2 * 1184, 0);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[0], a);
	/* Oldest packet left: second 100. x2 was in effect then and stays; x1 goes. */
	char want[4096];
	snprintf(want, sizeof(want),
		"{\"t\":%lld,\"addr\":\"198.18.0.1\",\"name\":\"x2\",\"ns\":\"\"}\n"
		"{\"t\":%lld,\"addr\":\"198.18.0.1\",\"name\":\"x3\",\"ns\":\"\"}\n"
		"{\"t\":%lld,\"addr\":\"198.18.0.1\",\"name\":\"x4\",\"ns\":\"\"}\n",
		(long long)(T0 - 950 * NS), (long long)(T0 - 850 * NS), (long long)(T0 - 795 * NS));
	assert_string_equal(get_names(f->dir, "s1"), want);
	/* A segment being written that starts before every stored one (an older capture
	 * replayed): its packets need their names, nothing before it is dropped. */
	char p[512];
	snprintf(p, sizeof(p), "%s/sensors/s1/segments/.open-%020lld-00000000000000aa-9-eth0.pcap", f->dir,
		(long long)(T0 - 1000 * NS + 60 * NS));
	int fd = open(p, O_WRONLY | O_CREAT, 0640);
	assert_true(fd >= 0);
	close(fd);
	char d2[256];
	add_seg(f, r, "s1", 300, 309, d2);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[1], b);
	assert_string_equal(get_names(f->dir, "s1"), want);
	/* Once it is gone, the trim goes on: second 300 is now the oldest, x4 in effect. */
	unlink(p);
	char e[256];
	add_seg(f, r, "s1", 400, 409, e);
	assert_int_equal(retention_run(r, T0, on_deleted, &d), 1);
	assert_string_equal(d.path[2], c);
	snprintf(want, sizeof(want), "{\"t\":%lld,\"addr\":\"198.18.0.1\",\"name\":\"x4\",\"ns\":\"\"}\n",
		(long long)(T0 - 795 * NS));
	assert_string_equal(get_names(f->dir, "s1"), want);
	retention_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_mismatch_and_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_v1_receiver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_v1_import, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_inside_transaction, setup, teardown),
		cmocka_unit_test(test_path_ok),
		cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_insert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_insert_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_global_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_per_sensor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_unbounded_and_guard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_file_already_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retire_takes_l4_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_trims_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
