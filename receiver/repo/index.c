/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "shared/log.h"
#include "shared/pcapfile.h"
#include "receiver/repo/posfile.h"
#include "receiver/repo/segname.h"

/*
 * The schema, the one copy of it: the tables of version 1 as the receiver shipped them
 * (meta, segments and its indexes, retention) and the L4 tables. Every statement is
 * "IF NOT EXISTS", so that a migration can complete any shape an older version left.
 * SQLite stores the statements without that clause: a migrated database and a new one
 * hold the same schema text.
 */
#define INDEX_BASE_SQL                                                                                                                    \
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"                                                   \
	"CREATE TABLE IF NOT EXISTS segments(\n"                                                                                          \
	"  id INTEGER PRIMARY KEY,\n"                                                                                                     \
	"  sensor TEXT NOT NULL,\n"                                                                                                       \
	"  path TEXT NOT NULL UNIQUE,     -- relative to storage.dir: 'sensors/<id>/segments/<file>.pcap'\n"                              \
	"  iface TEXT NOT NULL,           -- interface name as the sensor reported it\n"                                                  \
	"  linktype INTEGER NOT NULL,\n"                                                                                                  \
	"  snaplen INTEGER NOT NULL,\n"                                                                                                   \
	"  min_ns INTEGER NOT NULL,       -- smallest packet timestamp in the file (ns since epoch)\n"                                    \
	"  max_ns INTEGER NOT NULL,       -- largest packet timestamp\n"                                                                  \
	"  packets INTEGER NOT NULL,\n"                                                                                                   \
	"  bytes INTEGER NOT NULL,        -- file size in bytes\n"                                                                        \
	"  closed_ns INTEGER NOT NULL     -- wall clock when the segment was closed\n"                                                    \
	");\n"                                                                                                                            \
	"CREATE INDEX IF NOT EXISTS segments_sensor_time ON segments(sensor, min_ns);\n"                                                  \
	"CREATE INDEX IF NOT EXISTS segments_time ON segments(min_ns);\n" /* Retention picks the segments whose last packet is oldest. */ \
	"CREATE INDEX IF NOT EXISTS segments_end ON segments(max_ns);\n"                                                                  \
	"CREATE TABLE IF NOT EXISTS retention(sensor TEXT PRIMARY KEY, segments INTEGER NOT NULL, "                                       \
	"packets INTEGER NOT NULL, bytes INTEGER NOT NULL);\n"

/* The L4 tables (index.h), filled by receiver/dissect. */
#define INDEX_L4_SQL                                                                                         \
	"CREATE TABLE IF NOT EXISTS conns(\n"                                                                \
	"  conn_id INTEGER PRIMARY KEY,  -- numbered in order of dissection, from l4_seq\n"                  \
	"  flow_id INTEGER NOT NULL,     -- 63-bit hash of sensor, iface and the address pair\n"             \
	"  sensor TEXT NOT NULL, iface TEXT NOT NULL,\n"                                                     \
	"  proto TEXT NOT NULL,          -- 'tcp' or 'udp'\n"                                                \
	"  client TEXT NOT NULL, client_port INTEGER NOT NULL,\n"                                            \
	"  server TEXT NOT NULL, server_port INTEGER NOT NULL,\n"                                            \
	"  state TEXT NOT NULL,          -- SYN_SENT ESTABLISHED CLOSING CLOSED RESET\n"                     \
	"  ended TEXT,                   -- NULL while tracked, else why it ended\n"                         \
	"  first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,\n"                                           \
	"  c_pkts INTEGER NOT NULL, c_bytes INTEGER NOT NULL, s_pkts INTEGER NOT NULL, s_bytes INTEGER NOT " \
	"NULL,\n"                                                                                            \
	"  c_payload INTEGER NOT NULL, s_payload INTEGER NOT NULL,  -- stream bytes reassembled\n"           \
	"  rtt_ns INTEGER NOT NULL,      -- handshake RTT, 0 when not seen\n"                                \
	"  retrans INTEGER NOT NULL, out_of_order INTEGER NOT NULL, zero_windows INTEGER NOT NULL,\n"        \
	"  resets INTEGER NOT NULL, gap_bytes INTEGER NOT NULL, bad_overlaps INTEGER NOT NULL,\n"            \
	"  midstream INTEGER NOT NULL\n"                                                                     \
	");\n"                                                                                               \
	"CREATE INDEX IF NOT EXISTS conns_flow ON conns(flow_id);\n"                                         \
	"CREATE INDEX IF NOT EXISTS conns_time ON conns(sensor, first_ns);\n"                                \
	"CREATE TABLE IF NOT EXISTS conn_segs(conn_id INTEGER NOT NULL, seg_id INTEGER NOT NULL,\n"          \
	"  packets INTEGER NOT NULL, PRIMARY KEY(conn_id, seg_id)) WITHOUT ROWID;\n"                         \
	"CREATE INDEX IF NOT EXISTS conn_segs_seg ON conn_segs(seg_id);\n"                                   \
	"CREATE TABLE IF NOT EXISTS l4_done(seg_id INTEGER PRIMARY KEY, done_ns INTEGER NOT NULL,\n"         \
	"  packets INTEGER NOT NULL, in_conns INTEGER NOT NULL);\n"                                          \
	"CREATE TABLE IF NOT EXISTS l4_stats(key TEXT PRIMARY KEY, value INTEGER NOT NULL);\n"               \
	"CREATE TABLE IF NOT EXISTS l4_failed(seg_id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,\n"      \
	"  last_ns INTEGER NOT NULL, error TEXT NOT NULL,\n"                                                 \
	"  permanent INTEGER NOT NULL);  -- 0: retried, 1: marked done without its rows\n"                   \
	"CREATE TABLE IF NOT EXISTS l4_seq(id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);\n" \
	"INSERT OR IGNORE INTO l4_seq(id, next) VALUES(0, 1);\n"                                             \
	"CREATE TRIGGER IF NOT EXISTS segments_l4_delete AFTER DELETE ON segments BEGIN\n"                   \
	"  INSERT INTO l4_stats(key, value) SELECT 'retired_before_dissection', 1\n"                         \
	"    WHERE NOT EXISTS (SELECT 1 FROM l4_done WHERE seg_id = old.id)\n"                               \
	"    ON CONFLICT(key) DO UPDATE SET value = value + 1;\n"                                            \
	"  DELETE FROM conns WHERE conn_id IN (SELECT conn_id FROM conn_segs WHERE seg_id = old.id)\n"       \
	"    AND NOT EXISTS (SELECT 1 FROM conn_segs c WHERE c.conn_id = conns.conn_id AND c.seg_id <> "     \
	"old.id);\n"                                                                                         \
	"  DELETE FROM conn_segs WHERE seg_id = old.id;\n"                                                   \
	"  DELETE FROM l4_done WHERE seg_id = old.id;\n"                                                     \
	"END;\n"                                                                                             \
	"CREATE TRIGGER IF NOT EXISTS segments_l4_failed_delete AFTER DELETE ON segments BEGIN\n"            \
	"  DELETE FROM l4_failed WHERE seg_id = old.id;\n"                                                   \
	"END;\n"                                                                                             \
	"CREATE VIEW IF NOT EXISTS flows AS SELECT flow_id, sensor, iface,\n"                                \
	"  min(min(client, server)) AS peer_a, max(max(client, server)) AS peer_b, count(*) AS conns,\n"     \
	"  min(first_ns) AS first_ns, max(last_ns) AS last_ns, sum(c_pkts + s_pkts) AS packets,\n"           \
	"  sum(c_bytes + s_bytes) AS bytes FROM conns GROUP BY flow_id;\n"

/*
 * The forward migrations: index_migrations[v] takes a database from version v - 1 to v.
 * A change to the schema adds a step here and raises INDEX_SCHEMA_VERSION; it never edits
 * a step that shipped, nor INDEX_BASE_SQL or INDEX_L4_SQL (they are the tables of version
 * 2: a new database runs every step, so they must stay what step 3 expects to find).
 * index_schema_apply() runs every step above a database's version, in one transaction,
 * and writes the new version last.
 */
static const char *const index_migrations[INDEX_SCHEMA_VERSION + 1] = {
	/* 0 -> 1: an empty database (or one without meta) gets the tables of version 1. */
	[1] = INDEX_BASE_SQL,
	/* 1 -> 2: version 1 came in several shapes (the L4 tables were added without a new
	 * number, pcapline import wrote only meta and segments): complete every one. */
	[2] = INDEX_BASE_SQL INDEX_L4_SQL,
};

#define SEG_COLS "id, sensor, path, iface, linktype, snaplen, min_ns, max_ns, packets, bytes, closed_ns"

enum {
	ST_INSERT,
	ST_HAS_PATH,
	ST_ALL_PATHS,
	ST_DELETE_ID,
	ST_OLDEST_ALL,
	ST_OLDEST_SENSOR,
	ST_TOTALS_ALL,
	ST_TOTALS_SENSOR,
	ST_RETENTION_ADD,
	ST_RETENTION_GET,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNT
};

static const char *const index_sql[ST_COUNT] = {
	[ST_INSERT] =
		"INSERT INTO segments(sensor, path, iface, linktype, snaplen, min_ns, max_ns, packets, "
		"bytes, "
		"closed_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(path) DO UPDATE SET "
		"sensor = ?1, iface = ?3, linktype = ?4, snaplen = ?5, min_ns = ?6, max_ns = ?7, packets = "
		"?8, "
		"bytes = ?9, closed_ns = ?10",
	[ST_HAS_PATH] = "SELECT 1 FROM segments WHERE path = ?1",
	[ST_ALL_PATHS] = "SELECT id, path FROM segments",
	[ST_DELETE_ID] = "DELETE FROM segments WHERE id = ?1",
	[ST_OLDEST_ALL] = "SELECT " SEG_COLS " FROM segments ORDER BY max_ns, id LIMIT ?1",
	[ST_OLDEST_SENSOR] = "SELECT " SEG_COLS
			     " FROM segments WHERE sensor = ?1 ORDER BY max_ns, id LIMIT ?2",
	[ST_TOTALS_ALL] = "SELECT sensor, count(*), sum(bytes), min(max_ns) FROM segments GROUP BY sensor",
	[ST_TOTALS_SENSOR] =
		"SELECT count(*), coalesce(sum(bytes), 0), min(max_ns) FROM segments WHERE sensor = ?1",
	[ST_RETENTION_ADD] =
		"INSERT INTO retention(sensor, segments, packets, bytes) VALUES(?1, 1, ?2, ?3) "
		"ON CONFLICT(sensor) DO UPDATE SET segments = segments + 1, packets = packets + ?2, "
		"bytes = bytes + ?3",
	[ST_RETENTION_GET] = "SELECT segments, packets, bytes FROM retention WHERE sensor = ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

/* Rows whose insert failed, kept for index_retry(); beyond this the next start's
 * reconcile is what adds them. */
#define INDEX_PENDING_MAX 4096
/* Fixes named one by one in the log by index_reconcile(); the rest are counted. */
#define INDEX_LOG_FIXES   10

struct index {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	char dir[INDEX_MAX_PATH];
	struct index_seg *pending;
	size_t n_pending;
	struct log_limit warn_lim;
	bool nowait;            /* index_set_nowait() */
	uint64_t wait_until_us; /* index_set_wait(): the one deadline of every later wait */
	bool hit_busy;          /* the statement being stepped found the database locked */
	struct index_wait wait;
};

static uint64_t
index_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* No-wait mode: give up at the first sign of a lock (the caller defers the write). */
static int
index_on_busy(void *arg, int tries)
{
	struct index *ix = arg;
	ix->hit_busy = true;
	return 0;
}

void
index_set_nowait(struct index *ix)
{
	ix->nowait = true;
	sqlite3_busy_handler(ix->db, index_on_busy, ix);
}

/* Waits for a lock in 10 ms steps until the deadline of index_set_wait(). */
static int
index_on_busy_until(void *arg, int tries)
{
	struct index *ix = arg;
	struct timespec step = { 0, 10 * 1000 * 1000 };

	(void)tries;
	if (index_mono_us() >= ix->wait_until_us)
		return 0;
	nanosleep(&step, NULL);
	return 1;
}

void
index_set_wait(struct index *ix, int ms)
{
	ix->nowait = false;
	ix->wait_until_us = index_mono_us() + (uint64_t)ms * 1000;
	sqlite3_busy_handler(ix->db, index_on_busy_until, ix);
}

void
index_wait_get(const struct index *ix, struct index_wait *out)
{
	*out = ix->wait;
}

/* Starts timing one ingest write, for index_wait_us_max. */
static uint64_t
index_wait_start(struct index *ix)
{
	ix->hit_busy = false;
	return index_mono_us();
}

/* Ends it: the whole call counts as waiting when it met a lock. */
static void
index_wait_end(struct index *ix, uint64_t t0)
{
	if (!ix->hit_busy)
		return;
	uint64_t us = index_mono_us() - t0;
	ix->wait.busy++;
	if (us > ix->wait.max_us)
		ix->wait.max_us = us;
	ix->hit_busy = false;
}

static void
index_warn(struct index *ix, const char *what)
{
	/* A locked database in no-wait mode is expected (counted in index_wait): the write
	 * is simply tried again. */
	if (ix->nowait &&
		(sqlite3_errcode(ix->db) == SQLITE_BUSY || sqlite3_errcode(ix->db) == SQLITE_LOCKED))
		return;
	if (log_limit_ok(&ix->warn_lim, 5, 10))
		log_warnx("index: %s: %s", what, sqlite3_errmsg(ix->db));
}

/* Steps a statement that returns no row (or whose rows are ignored) and resets it. */
static int
index_exec(struct index *ix, int which, const char *what)
{
	sqlite3_stmt *st = ix->st[which];
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		index_warn(ix, what);
		return -1;
	}
	return 0;
}

static int
index_begin(struct index *ix)
{
	return index_exec(ix, ST_BEGIN, "BEGIN");
}
static int
index_commit(struct index *ix)
{
	return index_exec(ix, ST_COMMIT, "COMMIT");
}
static void
index_rollback(struct index *ix)
{
	if (!sqlite3_get_autocommit(ix->db))
		index_exec(ix, ST_ROLLBACK, "ROLLBACK");
}

static void
index_finalize(struct index *ix)
{
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_finalize(ix->st[i]);
		ix->st[i] = NULL;
	}
	sqlite3_close(ix->db);
	ix->db = NULL;
}

/* Reads the schema version: 0 for a database without meta or without its 'schema' key.
 * Returns SQLITE_OK, SQLITE_MISMATCH for a value that is not a version (err set), or the
 * SQLite code that failed. */
static int
index_schema_version(sqlite3 *db, const char *path, long *v, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*v = 0;
	rc = sqlite3_prepare_v2(db,
		"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = sqlite3_column_int(st, 0) ? SQLITE_DONE : SQLITE_OK;
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE) {
		rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &st, NULL);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			const char *t = (const char *)sqlite3_column_text(st, 0);
			size_t n = t ? strlen(t) : 0;

			/* A version is a number from 1 on; anything else is no version we know. */
			if (n == 0 || n > 9 || strspn(t, "0123456789") != n || t[0] == '0') {
				snprintf(err, errlen,
					"%s: schema version '%.32s' is not one this pcapline knows (it "
					"supports %d)",
					path, t ? t : "", INDEX_SCHEMA_VERSION);
				rc = SQLITE_MISMATCH;
			} else {
				*v = strtol(t, NULL, 10);
				rc = SQLITE_OK;
			}
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_OK;
		}
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_OK && rc != SQLITE_MISMATCH)
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
	return rc;
}

static int
index_schema_newer(const char *path, long v, char *err, size_t errlen)
{
	snprintf(err, errlen,
		"%s: schema version %ld is newer than this pcapline supports (%d): refused, nothing changed; "
		"use the pcapline that wrote it, or a newer one",
		path, v, INDEX_SCHEMA_VERSION);
	return SQLITE_MISMATCH;
}

/* index_schema_apply() with SQLite codes: SQLITE_MISMATCH for a version refused. */
static int
index_schema_update(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	bool own = sqlite3_get_autocommit(db) != 0;
	char *msg = NULL, setv[160];
	long v = 0, was;
	int rc = index_schema_version(db, path, &v, err, errlen);

	if (rc != SQLITE_OK || v == INDEX_SCHEMA_VERSION)
		return rc;
	if (v > INDEX_SCHEMA_VERSION)
		return index_schema_newer(path, v, err, errlen);
	/* Inside the caller's transaction (pcapline import) a savepoint; else a write lock
	 * first, and the version read again under it: another process may have migrated
	 * the file meanwhile. */
	rc = sqlite3_exec(db, own ? "BEGIN IMMEDIATE" : "SAVEPOINT index_schema", NULL, NULL, &msg);
	if (rc == SQLITE_OK && own && (rc = index_schema_version(db, path, &v, err, errlen)) != SQLITE_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	if (rc == SQLITE_OK && v > INDEX_SCHEMA_VERSION) {
		sqlite3_exec(db, own ? "ROLLBACK" : "ROLLBACK TO index_schema; RELEASE index_schema", NULL,
			NULL, NULL);
		return index_schema_newer(path, v, err, errlen);
	}
	was = v;
	for (long k = v + 1; rc == SQLITE_OK && k <= INDEX_SCHEMA_VERSION; k++)
		rc = sqlite3_exec(db, index_migrations[k], NULL, NULL, &msg);
	snprintf(setv, sizeof(setv),
		"INSERT INTO meta(key, value) VALUES('schema', '%d') ON CONFLICT(key) DO UPDATE SET value = "
		"excluded.value",
		INDEX_SCHEMA_VERSION);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, setv, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, own ? "COMMIT" : "RELEASE index_schema", NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: schema version %ld -> %d: %s", path, was, INDEX_SCHEMA_VERSION,
			msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		if (!sqlite3_get_autocommit(db))
			sqlite3_exec(db, own ? "ROLLBACK" : "ROLLBACK TO index_schema; RELEASE index_schema",
				NULL, NULL, NULL);
		return rc;
	}
	if (was > 0)
		log_info("index: %s: schema migrated in place from version %ld to %d", path, was,
			INDEX_SCHEMA_VERSION);
	return SQLITE_OK;
}

int
index_schema_apply(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	int rc = index_schema_update(db, path, err, errlen);

	return rc == SQLITE_OK ? 0 : rc == SQLITE_MISMATCH ? -EPROTONOSUPPORT : -EIO;
}

int
index_schema_check(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	long v = 0;
	int rc = index_schema_version(db, path, &v, err, errlen);

	if (rc == SQLITE_OK && v > INDEX_SCHEMA_VERSION)
		rc = index_schema_newer(path, v, err, errlen);
	return rc == SQLITE_OK ? 0 : rc == SQLITE_MISMATCH ? -EPROTONOSUPPORT : -EIO;
}

/* Opens the database and prepares everything. Returns SQLITE_OK or the failing
 * SQLite code, with err set. */
static int
index_try_open(struct index *ix, const char *path, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc = sqlite3_open_v2(path, &ix->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(ix->db, 5000);
	/* WAL lets the CLI read while we write; NORMAL syncs at checkpoints only, which
	 * cannot corrupt the database, and a commit lost to a power cut is what the
	 * start-up reconcile repairs anyway. */
	rc = sqlite3_exec(
		ix->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		goto fail;
	/* A damaged file fails here with SQLITE_NOTADB or SQLITE_CORRUPT: index_open() sets
	 * it aside. A newer version is SQLITE_MISMATCH and is left alone. */
	if ((rc = index_schema_update(ix->db, path, err, errlen)) != SQLITE_OK) {
		index_finalize(ix);
		return rc;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(
			ix->db, index_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ix->st[i], NULL);
		if (rc != SQLITE_OK)
			goto fail;
	}
	return SQLITE_OK;
fail:
	snprintf(err, errlen, "%s: %s", path,
		msg              ? msg
			: ix->db ? sqlite3_errmsg(ix->db)
				 : sqlite3_errstr(rc));
	sqlite3_free(msg);
	index_finalize(ix);
	return rc;
}

struct index *
index_open(const char *dir, char *err, size_t errlen)
{
	struct index *ix = calloc(1, sizeof(*ix));
	char path[INDEX_MAX_PATH + 16];
	if (!ix) {
		snprintf(err, errlen, "index: out of memory");
		return NULL;
	}
	if (strlen(dir) >= sizeof(ix->dir)) {
		snprintf(err, errlen, "index: %s: path too long", dir);
		free(ix);
		return NULL;
	}
	snprintf(ix->dir, sizeof(ix->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/index.db", dir);
	int rc = index_try_open(ix, path, err, errlen);
	if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
		/* The index is derived from the files: set the damaged one aside, start over. */
		char aside[INDEX_MAX_PATH + 64], side[INDEX_MAX_PATH + 80];
		snprintf(aside, sizeof(aside), "%s.corrupt-%lld", path, (long long)time(NULL));
		log_warnx("index: %s; moved to %s and rebuilt from the segment files (retention totals "
			  "restart at 0)",
			err, aside);
		if (rename(path, aside) != 0) {
			snprintf(err, errlen, "index: cannot move %s aside: %s", path, strerror(errno));
			free(ix);
			return NULL;
		}
		static const char *const sfx[] = { "-wal", "-shm" };
		for (int i = 0; i < 2; i++) {
			char from[INDEX_MAX_PATH + 24];
			snprintf(from, sizeof(from), "%s%s", path, sfx[i]);
			snprintf(side, sizeof(side), "%s%s", aside, sfx[i]);
			if (rename(from, side) != 0 && errno != ENOENT)
				unlink(from);
		}
		rc = index_try_open(ix, path, err, errlen);
	}
	if (rc != SQLITE_OK) {
		free(ix);
		return NULL;
	}
	return ix;
}

void
index_close(struct index *ix)
{
	if (!ix)
		return;
	if (ix->n_pending)
		log_warnx("index: %zu segment(s) not indexed yet; the next start adds them", ix->n_pending);
	index_finalize(ix);
	free(ix->pending);
	free(ix);
}

static int
index_insert_now(struct index *ix, const struct index_seg *g)
{
	sqlite3_stmt *st = ix->st[ST_INSERT];
	sqlite3_bind_text(st, 1, g->sensor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, g->path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, g->iface, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, g->linktype);
	sqlite3_bind_int64(st, 5, g->snaplen);
	sqlite3_bind_int64(st, 6, g->min_ns);
	sqlite3_bind_int64(st, 7, g->max_ns);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)g->packets);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)g->bytes);
	sqlite3_bind_int64(st, 10, g->closed_ns);
	return index_exec(ix, ST_INSERT, g->path);
}

int
index_insert(struct index *ix, const struct index_seg *seg)
{
	if (!index_seg_path_ok(seg->path)) {
		log_warnx("index: '%s' is not a segment path: not indexed", seg->path);
		return -1;
	}
	uint64_t t0 = index_wait_start(ix);
	int rc = index_insert_now(ix, seg);
	index_wait_end(ix, t0);
	if (rc == 0)
		return 0;
	if (ix->n_pending < INDEX_PENDING_MAX) {
		struct index_seg *p = realloc(ix->pending, (ix->n_pending + 1) * sizeof(*p));
		if (p) {
			ix->pending = p;
			p[ix->n_pending++] = *seg;
		}
	}
	return -1;
}

size_t
index_retry(struct index *ix, void (*fn)(void *arg, const struct index_seg *seg), void *arg)
{
	size_t k = 0;
	for (size_t i = 0; i < ix->n_pending; i++) {
		uint64_t t0 = index_wait_start(ix);
		int rc = index_insert_now(ix, &ix->pending[i]);
		index_wait_end(ix, t0);
		if (rc == 0) {
			if (fn)
				fn(arg, &ix->pending[i]);
		} else {
			ix->pending[k++] = ix->pending[i];
		}
	}
	if (k < ix->n_pending)
		log_info(
			"index: %zu delayed segment row(s) written, %zu still waiting", ix->n_pending - k, k);
	ix->n_pending = k;
	return k;
}

size_t
index_pending(const struct index *ix)
{
	return ix->n_pending;
}

/* A path component: not empty, not hidden (".", "..", ".open-*"), no '/'. */
static bool
index_component_ok(const char *s, size_t n)
{
	return n > 0 && s[0] != '.' && memchr(s, '/', n) == NULL;
}

bool
index_seg_path_ok(const char *p)
{
	static const char pre[] = "sensors/", mid[] = "/segments/";
	size_t n = strlen(p);
	if (n >= INDEX_MAX_PATH || strncmp(p, pre, sizeof(pre) - 1) != 0)
		return false;
	const char *id = p + sizeof(pre) - 1;
	const char *slash = strchr(id, '/');
	if (!slash || !index_component_ok(id, (size_t)(slash - id)) ||
		strncmp(slash, mid, sizeof(mid) - 1) != 0)
		return false;
	const char *name = slash + sizeof(mid) - 1;
	size_t nl = strlen(name);
	return nl > 5 && index_component_ok(name, nl) && strcmp(name + nl - 5, ".pcap") == 0;
}

int
index_scan(const char *dir, const char *relpath, struct index_seg *g)
{
	char full[2 * INDEX_MAX_PATH + 2];
	struct stat st;
	memset(g, 0, sizeof(*g));
	if (!index_seg_path_ok(relpath))
		return -EINVAL;
	snprintf(full, sizeof(full), "%s/%s", dir, relpath);
	snprintf(g->path, sizeof(g->path), "%s", relpath);
	const char *id = relpath + strlen("sensors/");
	const char *slash = strchr(id, '/');
	if ((size_t)(slash - id) > INDEX_MAX_SENSOR)
		return -EINVAL;
	memcpy(g->sensor, id, (size_t)(slash - id));
	g->sensor[slash - id] = '\0';
	/* The interface name as sanitised for the file name (the name the sensor reported
	 * is not stored anywhere else); another name keeps what follows its third '-'. */
	const char *name = strrchr(relpath, '/') + 1, *ifn = name;
	struct segname sn;
	if (segname_parse(name, &sn)) {
		snprintf(g->iface, sizeof(g->iface), "%s", sn.ifname);
	} else {
		for (int dashes = 0; dashes < 3 && ifn; dashes++) {
			ifn = strchr(ifn, '-');
			if (ifn)
				ifn++;
		}
		if (ifn)
			snprintf(g->iface, sizeof(g->iface), "%.*s", (int)(strlen(ifn) - 5), ifn);
	}
	if (stat(full, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	int rc = 0;
	struct pcapr *r = pcapr_open(full, &rc);
	if (!r)
		return rc;
	if (pcapr_is_pcapng(r) || pcapr_iface_count(r) != 1) {
		pcapr_close(r);
		return PCAPF_EFORMAT;
	}
	const struct pcapf_iface *fi = pcapr_iface(r, 0);
	g->linktype = fi->linktype;
	g->snaplen = fi->snaplen;
	struct pcapf_rec rec;
	while ((rc = pcapr_next(r, &rec)) == 1) {
		int64_t ts = (int64_t)rec.ts_ns;
		if (g->packets == 0 || ts < g->min_ns)
			g->min_ns = ts;
		if (g->packets == 0 || ts > g->max_ns)
			g->max_ns = ts;
		g->packets++;
	}
	pcapr_close(r);
	if (rc != 0 && rc != PCAPF_ETRUNC)
		return rc;
	g->bytes = (uint64_t)st.st_size;
	g->closed_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return 0;
}

/* Adds a row for every segment file that has none. */
static int
index_reconcile_files(struct index *ix, struct index_reconcile_report *rep)
{
	char sd[INDEX_MAX_PATH + 16];
	snprintf(sd, sizeof(sd), "%s/sensors", ix->dir);
	DIR *d = opendir(sd);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	int ret = 0;
	struct dirent *de;
	while (ret == 0 && (de = readdir(d)) != NULL) {
		char segdir[2 * INDEX_MAX_PATH];
		if (de->d_name[0] == '.')
			continue;
		snprintf(segdir, sizeof(segdir), "%s/%s/segments", sd, de->d_name);
		DIR *sg = opendir(segdir);
		if (!sg)
			continue;
		struct dirent *fe;
		while (ret == 0 && (fe = readdir(sg)) != NULL) {
			char rel[3 * INDEX_MAX_PATH];
			snprintf(rel, sizeof(rel), "sensors/%s/segments/%s", de->d_name, fe->d_name);
			if (!index_seg_path_ok(rel))
				continue; /* hidden open segments, other files */
			sqlite3_stmt *st = ix->st[ST_HAS_PATH];
			sqlite3_bind_text(st, 1, rel, -1, SQLITE_STATIC);
			int rc = sqlite3_step(st);
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			if (rc == SQLITE_ROW)
				continue;
			if (rc != SQLITE_DONE) {
				index_warn(ix, "reconcile");
				ret = -1;
				break;
			}
			struct index_seg g;
			rc = index_scan(ix->dir, rel, &g);
			if (rc == -ENOENT || rc == -EINVAL)
				continue; /* gone meanwhile, or not a regular file */
			if (rc != 0) {
				log_warnx("index: %s: %s; left out of the index", rel, pcapf_strerror(rc));
				rep->skipped++;
				continue;
			}
			if (index_insert_now(ix, &g) != 0) {
				ret = -1;
				break;
			}
			if (rep->added++ < INDEX_LOG_FIXES)
				log_info("index: %s had no row: added (%" PRIu64 " packets)", rel, g.packets);
		}
		closedir(sg);
	}
	closedir(d);
	return ret;
}

/* Deletes every row whose file is gone (or whose path could never be a segment). */
static int
index_reconcile_rows(struct index *ix, struct index_reconcile_report *rep)
{
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = 0;
	sqlite3_stmt *st = ix->st[ST_ALL_PATHS];
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *rel = (const char *)sqlite3_column_text(st, 1);
		char full[2 * INDEX_MAX_PATH + 2];
		struct stat sb;
		if (rel && index_seg_path_ok(rel)) {
			snprintf(full, sizeof(full), "%s/%s", ix->dir, rel);
			if (stat(full, &sb) == 0 || errno != ENOENT)
				continue;
		}
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 64;
			int64_t *p = realloc(ids, nc * sizeof(*p));
			if (!p) {
				ret = -1;
				break;
			}
			ids = p;
			cap = nc;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
		if (rel && index_seg_path_ok(rel))
			posfile_unlink(ix->dir, rel);
		if (rep->removed++ < INDEX_LOG_FIXES)
			log_info("index: %s is gone: row removed", rel ? rel : "(null path)");
	}
	sqlite3_reset(st);
	if (ret == 0 && rc != SQLITE_DONE) {
		index_warn(ix, "reconcile");
		ret = -1;
	}
	for (size_t i = 0; ret == 0 && i < n; i++) {
		sqlite3_bind_int64(ix->st[ST_DELETE_ID], 1, ids[i]);
		ret = index_exec(ix, ST_DELETE_ID, "reconcile");
	}
	free(ids);
	return ret;
}

int
index_reconcile(struct index *ix, struct index_reconcile_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	if (index_begin(ix) != 0)
		return -1;
	if (index_reconcile_files(ix, rep) != 0 || index_reconcile_rows(ix, rep) != 0 ||
		index_commit(ix) != 0) {
		index_rollback(ix);
		log_warnx("index: reconcile failed; the index may miss segments until the next start");
		return -1;
	}
	if (rep->added || rep->removed || rep->skipped)
		log_info("index: reconciled with the files: %u segment(s) added, %u row(s) of missing files "
			 "removed, "
			 "%u unreadable file(s) left out",
			rep->added, rep->removed, rep->skipped);
	return 0;
}

static void
index_row(sqlite3_stmt *st, struct index_seg *g)
{
	const char *s;
	memset(g, 0, sizeof(*g));
	g->id = sqlite3_column_int64(st, 0);
	s = (const char *)sqlite3_column_text(st, 1);
	snprintf(g->sensor, sizeof(g->sensor), "%s", s ? s : "");
	s = (const char *)sqlite3_column_text(st, 2);
	snprintf(g->path, sizeof(g->path), "%s", s ? s : "");
	s = (const char *)sqlite3_column_text(st, 3);
	snprintf(g->iface, sizeof(g->iface), "%s", s ? s : "");
	g->linktype = (uint32_t)sqlite3_column_int64(st, 4);
	g->snaplen = (uint32_t)sqlite3_column_int64(st, 5);
	g->min_ns = sqlite3_column_int64(st, 6);
	g->max_ns = sqlite3_column_int64(st, 7);
	g->packets = (uint64_t)sqlite3_column_int64(st, 8);
	g->bytes = (uint64_t)sqlite3_column_int64(st, 9);
	g->closed_ns = sqlite3_column_int64(st, 10);
}

int
index_oldest(struct index *ix, const char *sensor, struct index_seg *out, int n)
{
	sqlite3_stmt *st = ix->st[sensor ? ST_OLDEST_SENSOR : ST_OLDEST_ALL];
	if (sensor) {
		sqlite3_bind_text(st, 1, sensor, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, n);
	} else {
		sqlite3_bind_int(st, 1, n);
	}
	int k = 0, rc;
	while (k < n && (rc = sqlite3_step(st)) == SQLITE_ROW)
		index_row(st, &out[k++]);
	if (k < n && rc != SQLITE_DONE) {
		index_warn(ix, "oldest segments");
		k = -1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return k;
}

int
index_totals(struct index *ix, void (*fn)(void *arg, const struct index_totals *t), void *arg)
{
	sqlite3_stmt *st = ix->st[ST_TOTALS_ALL];
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct index_totals t;
		const char *s = (const char *)sqlite3_column_text(st, 0);
		snprintf(t.sensor, sizeof(t.sensor), "%s", s ? s : "");
		t.segments = (uint64_t)sqlite3_column_int64(st, 1);
		t.bytes = (uint64_t)sqlite3_column_int64(st, 2);
		t.oldest_max_ns = sqlite3_column_int64(st, 3);
		fn(arg, &t);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		index_warn(ix, "totals");
		return -1;
	}
	return 0;
}

int
index_sensor_totals(struct index *ix, const char *sensor, struct index_totals *t)
{
	sqlite3_stmt *st = ix->st[ST_TOTALS_SENSOR];
	memset(t, 0, sizeof(*t));
	snprintf(t->sensor, sizeof(t->sensor), "%s", sensor);
	t->oldest_max_ns = INT64_MAX;
	sqlite3_bind_text(st, 1, sensor, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		t->segments = (uint64_t)sqlite3_column_int64(st, 0);
		t->bytes = (uint64_t)sqlite3_column_int64(st, 1);
		if (sqlite3_column_type(st, 2) != SQLITE_NULL)
			t->oldest_max_ns = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW) {
		index_warn(ix, "totals");
		return -1;
	}
	return 0;
}

const char *
index_dir(const struct index *ix)
{
	return ix->dir;
}

int
index_sensor_min_ns(struct index *ix, const char *sensor, int64_t *min_ns)
{
	sqlite3_stmt *st = NULL;
	int rc;

	/* Rare (after retention deleted something): prepared on the spot. */
	if (sqlite3_prepare_v2(ix->db, "SELECT MIN(min_ns) FROM segments WHERE sensor = ?", -1, &st, NULL) !=
		SQLITE_OK) {
		index_warn(ix, "oldest packet");
		return -1;
	}
	sqlite3_bind_text(st, 1, sensor, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*min_ns = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL ? sqlite3_column_int64(st, 0)
										: INT64_MAX;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		index_warn(ix, "oldest packet");
		return -1;
	}
	return 0;
}

static int index_retire_now(struct index *ix, const struct index_seg *g);

int
index_retire(struct index *ix, const struct index_seg *g)
{
	uint64_t t0 = index_wait_start(ix);
	int rc = index_retire_now(ix, g);
	index_wait_end(ix, t0);
	return rc;
}

static int
index_retire_now(struct index *ix, const struct index_seg *g)
{
	bool ok = index_seg_path_ok(g->path);
	if (index_begin(ix) != 0)
		return -EIO;
	sqlite3_bind_int64(ix->st[ST_DELETE_ID], 1, g->id);
	if (index_exec(ix, ST_DELETE_ID, "delete") != 0)
		goto fail;
	if (ok) {
		sqlite3_stmt *st = ix->st[ST_RETENTION_ADD];
		sqlite3_bind_text(st, 1, g->sensor, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)g->packets);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)g->bytes);
		if (index_exec(ix, ST_RETENTION_ADD, "retention") != 0)
			goto fail;
		char full[2 * INDEX_MAX_PATH + 2];
		snprintf(full, sizeof(full), "%s/%s", ix->dir, g->path);
		if (unlink(full) != 0 && errno != ENOENT) {
			int e = errno;
			index_rollback(ix);
			return -e;
		}
	}
	if (index_commit(ix) != 0)
		goto fail;
	if (ok)
		posfile_unlink(ix->dir, g->path);
	return ok ? 0 : -EINVAL;
fail:
	index_rollback(ix);
	return -EIO;
}

int
index_retention_get(
	struct index *ix, const char *sensor, uint64_t *segments, uint64_t *packets, uint64_t *bytes)
{
	sqlite3_stmt *st = ix->st[ST_RETENTION_GET];
	*segments = *packets = *bytes = 0;
	sqlite3_bind_text(st, 1, sensor, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*segments = (uint64_t)sqlite3_column_int64(st, 0);
		*packets = (uint64_t)sqlite3_column_int64(st, 1);
		*bytes = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		index_warn(ix, "retention totals");
		return -1;
	}
	return 0;
}
