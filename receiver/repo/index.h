/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The repository index: <dir>/index.db, SQLite in WAL mode, one row per closed
 * segment. The receiver is the only writer; the pcapline CLI reads it concurrently
 * (busy_timeout 5000 ms on both sides). The schema is a contract with the CLI, and this
 * module is its only owner (the receiver, the dissection path and `pcapline import` all
 * create and migrate it through index_schema_apply()):
 *
 *   meta(key, value)                      ('schema', '<INDEX_SCHEMA_VERSION>')
 *   segments(id, sensor, path, iface, linktype, snaplen, min_ns, max_ns, packets,
 *            bytes, closed_ns)            path relative to <dir>, unique
 *   retention(sensor, segments, packets, bytes)   totals deleted by retention
 *
 * and the L4 tables the dissection path (receiver/dissect) fills, derived from the
 * segments and rebuilt by re-dissecting them:
 *   conns, conn_segs (which segments hold a connection's packets), l4_done (segments
 *   dissected), l4_failed (segments whose dissection failed and is retried, or that
 *   were marked done without their rows: `pcapline conns --stats` counts them until
 *   they succeed), l4_stats (the dissection's counters since the receiver started, see
 *   receiver/dissect/dissect.h), l4_seq (the next connection id), and the view flows
 *   (connections grouped by flow_id).
 * A deleted segment row takes its l4_done and conn_segs rows with it, and the
 * connections left without any segment (a trigger); one deleted before it was
 * dissected is counted in l4_stats as retired_before_dissection. Each dissected segment has a
 * position file sensors/<id>/l4/<name>.pcap.pos (receiver/repo/posfile.h) naming the
 * connection of every record; retention and reconcile delete it with the segment.
 *
 * Schema versions: every change to a table, index, trigger or view is a new version and
 * a forward migration in index.c, applied in place when the database is opened.
 *   1  meta, segments, retention, and (added later under the same number) the L4
 *      tables; `pcapline import` created only meta and segments.
 *   2  every table, index, trigger and view above, whatever shape of 1 it came from.
 * A database of a newer version than INDEX_SCHEMA_VERSION is refused with a message
 * naming the file, its version and the supported one (receivers of version 1 refuse a
 * version 2 database the same way: they compare meta's 'schema').
 *
 * Rows are written when a segment is closed and renamed into place, never per packet
 * or per batch. The index is derived data: index_reconcile() brings it back in line
 * with the files after any crash (a file without a row is scanned and added, a row
 * without a file is removed), so an insert that fails is only logged and retried.
 *
 * Only files named sensors/<id>/segments/<name>.pcap (no hidden name, no "..") are
 * ever indexed, and index_seg_path_ok() is what retention checks before unlinking.
 */
#ifndef PCAPLINE_RECEIVER_INDEX_H
#define PCAPLINE_RECEIVER_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The schema version this code writes and reads (meta key 'schema'); see index_schema_apply(). */
#define INDEX_SCHEMA_VERSION   2
#define INDEX_MAX_SENSOR       128 /* PROTO_MAX_ID */
#define INDEX_MAX_PATH         512
#define INDEX_MAX_IFACE        256
#define INDEX_SHUTDOWN_WAIT_MS 5000 /* longest wait for a lock at shutdown, in all */

struct sqlite3;

/*
 * Brings the schema of an open read-write connection to the database `path` up to
 * INDEX_SCHEMA_VERSION: creates it in an empty database, applies the forward migrations
 * to an older one in one transaction (its own BEGIN IMMEDIATE, or a savepoint inside the
 * caller's transaction), and refuses a newer one. A database already at this version is
 * only read. Returns 0; -EPROTONOSUPPORT for a newer or unreadable version, or -EIO when
 * SQLite failed; err names the file either way.
 */
int index_schema_apply(struct sqlite3 *db, const char *path, char *err, size_t errlen);
/*
 * For read-only readers (export, the HTTP API, conns): refuses a database whose version
 * is newer than INDEX_SCHEMA_VERSION (-EPROTONOSUPPORT, err set). An older one is read
 * as it is: versions only add to what readers use. Returns 0, or -EIO.
 */
int index_schema_check(struct sqlite3 *db, const char *path, char *err, size_t errlen);

/* One row of the segments table. */
struct index_seg {
	int64_t id; /* rowid; ignored by index_insert() */
	char sensor[INDEX_MAX_SENSOR + 1];
	char path[INDEX_MAX_PATH]; /* relative to the repository root */
	char iface[INDEX_MAX_IFACE];
	uint32_t linktype, snaplen;
	int64_t min_ns, max_ns;
	uint64_t packets;
	uint64_t bytes; /* file size */
	int64_t closed_ns;
};

struct index;

/*
 * Opens (creating if needed) <dir>/index.db and its schema. A file that is not a
 * database or is corrupt is moved aside to index.db.corrupt-<unix-time> and a new one
 * is created (index_reconcile() then rebuilds it from the files; the retention totals
 * of the old one are lost, which is logged). An older schema is migrated in place, a
 * newer one refused (index_schema_apply()). NULL with err set on failure.
 */
struct index *index_open(const char *dir, char *err, size_t errlen);
/* Closes the database. Rows still waiting for a retry are dropped (the next start's
 * reconcile adds them). Accepts NULL. */
void index_close(struct index *ix);

/*
 * Inserts (or, for a path already indexed, replaces) one row. Returns 0, or -1 when
 * the path is not one index_seg_path_ok() accepts (logged, dropped) or SQLite failed:
 * the row is then kept in memory (up to a bound) and retried by index_retry(); beyond
 * the bound only the next start's reconcile adds it.
 */
int index_insert(struct index *ix, const struct index_seg *seg);
/* Retries rows whose insert failed, calling fn (may be NULL) for each one that is now
 * in the index. Returns how many are still waiting. */
size_t index_retry(struct index *ix, void (*fn)(void *arg, const struct index_seg *seg), void *arg);
/* Rows waiting for index_retry(). */
size_t index_pending(const struct index *ix);
/*
 * From now on, a write that finds the database locked (another writer, such as the
 * dissection path or a reindex, is in a transaction) fails at once instead of waiting
 * up to 5 s: an insert is kept for index_retry(), a retention deletion is tried again
 * later. Storage then never waits on anyone else's transaction. Call after start-up.
 */
void index_set_nowait(struct index *ix);
/* Back to waiting for a lock, all waits together for at most ms from now (at shutdown:
 * the rows still kept are written before the end, so the index is complete once the
 * receiver has stopped, unless another writer holds it longer than that). */
void index_set_wait(struct index *ix, int ms);
struct index_wait {
	uint64_t max_us; /* longest time one ingest write spent on a locked database */
	uint64_t busy;   /* writes that found it locked (deferred, never lost) */
};
void index_wait_get(const struct index *ix, struct index_wait *out);

/*
 * Fills *seg from the file <dir>/<relpath> (read with shared/pcapfile.h): sensor and
 * interface from the path, link type and snaplen from the header, packet count and
 * smallest/largest timestamp from the records (a file cut in a record counts the
 * complete records before the cut), bytes from its size, closed_ns from its mtime.
 * Returns 0 or a PCAPF_* code / -errno (not a path index_seg_path_ok() accepts: -EINVAL).
 */
int index_scan(const char *dir, const char *relpath, struct index_seg *seg);

/* True for "sensors/<id>/segments/<name>.pcap" with no empty, hidden, "." or ".."
 * component: the only paths the index holds and retention unlinks. */
bool index_seg_path_ok(const char *relpath);

struct index_reconcile_report {
	unsigned added;   /* files without a row, scanned and inserted */
	unsigned removed; /* rows without a file, deleted */
	unsigned skipped; /* files that are not readable captures, left out (logged) */
};

/* Makes the rows agree with the files sensors/<id>/segments/<name>.pcap and logs each
 * fix (the first few by name, then a count). Call at start-up, before anything else
 * writes. Returns 0 or -1 (SQLite failed: logged; the index may still be incomplete). */
int index_reconcile(struct index *ix, struct index_reconcile_report *rep);

/* Per-sensor totals of the segments table. */
struct index_totals {
	char sensor[INDEX_MAX_SENSOR + 1];
	uint64_t segments, bytes;
	int64_t oldest_max_ns; /* smallest max_ns */
};

/* Calls fn once per sensor that has rows. Returns 0 or -1. */
int index_totals(struct index *ix, void (*fn)(void *arg, const struct index_totals *t), void *arg);
/* Totals of one sensor (zeros and oldest_max_ns = INT64_MAX when it has no rows).
 * Returns 0 or -1. */
int index_sensor_totals(struct index *ix, const char *sensor, struct index_totals *t);
/* The repository root the index was opened in. */
const char *index_dir(const struct index *ix);
/* The timestamp of the oldest packet in a sensor's indexed segments (INT64_MAX when it
 * has none). Returns 0 or -1 (logged). */
int index_sensor_min_ns(struct index *ix, const char *sensor, int64_t *min_ns);

/*
 * Fills out[0..n) with up to n rows, oldest first (ordered by max_ns, then id), of one
 * sensor or of all sensors (sensor NULL). Returns how many, or -1.
 */
int index_oldest(struct index *ix, const char *sensor, struct index_seg *out, int n);

/*
 * Retires one segment: in one transaction, deletes its row, adds it to the retention
 * table and unlinks <dir>/<path>. A file already gone still counts (the row was
 * stale). Returns 0; -EINVAL for a path index_seg_path_ok() refuses (the row is
 * deleted, no file is touched, nothing is counted); unlink's -errno (nothing changes);
 * or -EIO when SQLite failed (nothing changes, or the file is gone and the row stays
 * until the next reconcile).
 */
int index_retire(struct index *ix, const struct index_seg *seg);

/* Totals of the retention table for one sensor (zeros when none). Returns 0 or -1. */
int index_retention_get(
	struct index *ix, const char *sensor, uint64_t *segments, uint64_t *packets, uint64_t *bytes);

#endif
