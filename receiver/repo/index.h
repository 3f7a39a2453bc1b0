/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The repository index: <dir>/index.db, SQLite in WAL mode, one row per closed
 * segment. The receiver is the only writer; the pcapline CLI reads it concurrently
 * (busy_timeout 5000 ms on both sides). The schema is a contract with the CLI:
 *
 *   meta(key, value)                      ('schema', '1')
 *   segments(id, sensor, path, iface, linktype, snaplen, min_ns, max_ns, packets,
 *            bytes, closed_ns)            path relative to <dir>, unique
 *   retention(sensor, segments, packets, bytes)   totals deleted by retention
 *
 * and the L4 tables the dissection path (receiver/dissect) fills, derived from the
 * segments and rebuilt by re-dissecting them (INDEX_L4_SQL below):
 *   conns, conn_segs (which segments hold a connection's packets), l4_done (segments
 *   dissected), l4_failed (segments whose dissection failed and is retried, or that
 *   were marked done without their rows: `pcapline conns --stats` counts them until
 *   they succeed), l4_stats (the dissection's counters since the receiver started, see
 *   receiver/dissect/dissect.h), l4_seq (the next connection id), and the view flows
 *   (connections grouped by flow_id).
 * A deleted segment row takes its l4_done and conn_segs rows with it, and the
 * connections left without any segment (a trigger); one deleted before it was
 * dissected is counted in l4_stats as retired_before_dissection. Each dissected segment has a
 * position file sensors/<id>/l4/<name>.pcap.pos (index_pos_path()) naming the
 * connection of every record; retention and reconcile delete it with the segment.
 * These tables came after schema 1 and only add to it, so the version stays "1".
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

#define INDEX_SCHEMA "1"
#define INDEX_MAX_SENSOR 128 /* PROTO_MAX_ID */
#define INDEX_MAX_PATH 512
#define INDEX_MAX_IFACE 256

/* The L4 tables (see above); run on every open, by the receiver and the pcapline CLI. */
#define INDEX_L4_SQL                                                                                       \
	"CREATE TABLE IF NOT EXISTS conns(\n"                                                             \
	"  conn_id INTEGER PRIMARY KEY,  -- numbered in order of dissection, from l4_seq\n"                   \
	"  flow_id INTEGER NOT NULL,     -- 63-bit hash of sensor, iface and the address pair\n"              \
	"  sensor TEXT NOT NULL, iface TEXT NOT NULL,\n"                                                  \
	"  proto TEXT NOT NULL,          -- 'tcp' or 'udp'\n"                                               \
	"  client TEXT NOT NULL, client_port INTEGER NOT NULL,\n"                                          \
	"  server TEXT NOT NULL, server_port INTEGER NOT NULL,\n"                                          \
	"  state TEXT NOT NULL,          -- SYN_SENT ESTABLISHED CLOSING CLOSED RESET\n"                    \
	"  ended TEXT,                   -- NULL while tracked, else why it ended\n"                        \
	"  first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,\n"                                         \
	"  c_pkts INTEGER NOT NULL, c_bytes INTEGER NOT NULL, s_pkts INTEGER NOT NULL, s_bytes INTEGER NOT NULL,\n" \
	"  c_payload INTEGER NOT NULL, s_payload INTEGER NOT NULL,  -- stream bytes reassembled\n"          \
	"  rtt_ns INTEGER NOT NULL,      -- handshake RTT, 0 when not seen\n"                               \
	"  retrans INTEGER NOT NULL, out_of_order INTEGER NOT NULL, zero_windows INTEGER NOT NULL,\n"       \
	"  resets INTEGER NOT NULL, gap_bytes INTEGER NOT NULL, bad_overlaps INTEGER NOT NULL,\n"           \
	"  midstream INTEGER NOT NULL\n"                                                                   \
	");\n"                                                                                             \
	"CREATE INDEX IF NOT EXISTS conns_flow ON conns(flow_id);\n"                                       \
	"CREATE INDEX IF NOT EXISTS conns_time ON conns(sensor, first_ns);\n"                              \
	"CREATE TABLE IF NOT EXISTS conn_segs(conn_id INTEGER NOT NULL, seg_id INTEGER NOT NULL,\n"        \
	"  packets INTEGER NOT NULL, PRIMARY KEY(conn_id, seg_id)) WITHOUT ROWID;\n"                        \
	"CREATE INDEX IF NOT EXISTS conn_segs_seg ON conn_segs(seg_id);\n"                                 \
	"CREATE TABLE IF NOT EXISTS l4_done(seg_id INTEGER PRIMARY KEY, done_ns INTEGER NOT NULL,\n"       \
	"  packets INTEGER NOT NULL, in_conns INTEGER NOT NULL);\n"                                        \
	"CREATE TABLE IF NOT EXISTS l4_stats(key TEXT PRIMARY KEY, value INTEGER NOT NULL);\n"           \
	"CREATE TABLE IF NOT EXISTS l4_failed(seg_id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,\n"   \
	"  last_ns INTEGER NOT NULL, error TEXT NOT NULL,\n"                                                \
	"  permanent INTEGER NOT NULL);  -- 0: retried, 1: marked done without its rows\n"                  \
	"CREATE TABLE IF NOT EXISTS l4_seq(id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);\n" \
	"INSERT OR IGNORE INTO l4_seq(id, next) VALUES(0, 1);\n"                                           \
	"CREATE TRIGGER IF NOT EXISTS segments_l4_delete AFTER DELETE ON segments BEGIN\n"                 \
	"  INSERT INTO l4_stats(key, value) SELECT 'retired_before_dissection', 1\n"                        \
	"    WHERE NOT EXISTS (SELECT 1 FROM l4_done WHERE seg_id = old.id)\n"                              \
	"    ON CONFLICT(key) DO UPDATE SET value = value + 1;\n"                                           \
	"  DELETE FROM conns WHERE conn_id IN (SELECT conn_id FROM conn_segs WHERE seg_id = old.id)\n"     \
	"    AND NOT EXISTS (SELECT 1 FROM conn_segs c WHERE c.conn_id = conns.conn_id AND c.seg_id <> old.id);\n" \
	"  DELETE FROM conn_segs WHERE seg_id = old.id;\n"                                                 \
	"  DELETE FROM l4_done WHERE seg_id = old.id;\n"                                                   \
	"END;\n"                                                                                           \
	"CREATE TRIGGER IF NOT EXISTS segments_l4_failed_delete AFTER DELETE ON segments BEGIN\n"          \
	"  DELETE FROM l4_failed WHERE seg_id = old.id;\n"                                                 \
	"END;\n"                                                                                           \
	"CREATE VIEW IF NOT EXISTS flows AS SELECT flow_id, sensor, iface,\n"                              \
	"  min(min(client, server)) AS peer_a, max(max(client, server)) AS peer_b, count(*) AS conns,\n"  \
	"  min(first_ns) AS first_ns, max(last_ns) AS last_ns, sum(c_pkts + s_pkts) AS packets,\n"        \
	"  sum(c_bytes + s_bytes) AS bytes FROM conns GROUP BY flow_id;\n"

/* The position file of a segment: "sensors/<id>/l4/<name>.pos" for
 * "sensors/<id>/segments/<name>". Returns 0, or -1 for a path index_seg_path_ok()
 * refuses or that does not fit. */
int index_pos_path(const char *relpath, char *out, size_t size);

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
 * of the old one are lost, which is logged). A database with another schema version
 * is refused. NULL with err set on failure.
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
struct index_wait {
	uint64_t max_us;   /* longest time one ingest write spent on a locked database */
	uint64_t busy;     /* writes that found it locked (deferred, never lost) */
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

/*
 * Segment file names: <first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap, the
 * first timestamp 20 digits, the epoch 16 hex digits, the interface index that of the
 * sensor's HELLO and the interface name made path-safe. Two interfaces of one sensor
 * may have the same name and the same first timestamp; the index keeps them apart.
 * Repositories written before the index was part of the name hold
 * <first-ts-ns>-<epoch-hex>-<seq>-<ifname>.pcap: a '.' right after the sequence number
 * tells the two forms apart without doubt, whatever the interface is called.
 */
struct index_segname {
	uint64_t first_ns, epoch, seq;
	int ifindex; /* -1 in the older form */
	char ifname[INDEX_MAX_IFACE];
};

/* Writes the name (no directory) into buf. Returns its length, or -ENAMETOOLONG. */
int index_segname_format(char *buf, size_t n, uint64_t first_ns, uint64_t epoch, uint64_t seq, unsigned ifindex,
			 const char *ifname);
/* Parses a closed segment's name (either form). Returns true when it is one. */
bool index_segname_parse(const char *name, struct index_segname *out);

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
int index_retention_get(struct index *ix, const char *sensor, uint64_t *segments, uint64_t *packets,
			uint64_t *bytes);

#endif
