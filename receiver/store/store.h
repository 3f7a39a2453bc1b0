/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Raw packet storage: per-sensor segment files (classic pcap, nanosecond
 * timestamps, one file per interface at a time) rotated by size and age, written
 * under a hidden name and renamed into place when complete; optionally also one
 * single pcap file for all sensors (a tcpdump -w style output).
 *
 *   <dir>/sensors/<sensor-id>/segments/<first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap
 *   <dir>/sensors/<sensor-id>/segments/.open-<first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap
 *   (receiver/repo/segname.h)
 *   <dir>/index.db      one row per closed segment (index.h), reconciled at start
 *
 * Closed segments beyond the size and age bounds are deleted oldest-first
 * (retention.h) after each segment close and on every store_tick().
 *
 * Not thread-safe: the receiver calls all of this from its store worker thread
 * (worker.h), never from the event loop; store_ack_latency() alone may be called from
 * another thread.
 */
#ifndef PCAPLINE_RECEIVER_STORE_H
#define PCAPLINE_RECEIVER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"
#include "shared/lathist.h"

/* Longest storage.dir, in bytes: the deepest path the store builds,
 * <dir>/sensors/<id of PROTO_MAX_ID bytes>/segments, must fit its 400-byte buffer. A longer
 * one is a configuration error, never cut. */
#define STORE_DIR_MAX 253

enum store_fsync {
	STORE_FSYNC_BATCH,
	STORE_FSYNC_INTERVAL,
	STORE_FSYNC_NEVER
};

struct store_opts {
	const char *dir;         /* repository root, "" for none */
	const char *single_file; /* one pcap for everything, "" for none ("-" is stdout) */
	uint64_t segment_bytes;
	uint64_t segment_ms;
	enum store_fsync fsync;
	/* Retention bounds (0 = unlimited): all sensors together, and each sensor. */
	uint64_t max_bytes, max_age_ms;
	uint64_t sensor_max_bytes, sensor_max_age_ms;
};

/* What store_batch() did with a batch: the caller's next step depends only on this. */
enum store_result {
	STORE_STORED,     /* stored and durable per the fsync policy (records the pcap format
			  * cannot hold counted as unstorable, not stored): ACK it */
	STORE_DUPLICATE,  /* stored before (a resend): ACK it again */
	STORE_REJECTED,   /* malformed: nothing changed; a protocol error, close the session */
	STORE_RETRY,      /* transient storage failure (disk full, I/O error): nothing kept;
			  * hold the batch, ACK nothing and try again later */
	STORE_FAILED,     /* storage failure that retrying the batch cannot cure: nothing
			  * kept; close the session with the error */
	STORE_SEQ_REUSED, /* a number recently stored with other bytes: nothing kept, counted
			   * as rejected; the sensor must take a new epoch (ERROR SEQUENCE) */
	STORE_NOT_TRIED,  /* store_batches(): after a batch that was not stored; untouched */
};

/* Why a well-formed record can never be stored (counted per sensor, never retried). */
enum store_unstorable {
	STORE_UNSTORABLE_TS, /* timestamp past the classic pcap range (2106-02-07) */
	STORE_UNSTORABLE_N
};

struct store_counters {
	uint64_t batches, packets, bytes;        /* stored */
	uint64_t duplicates;                     /* batches received again, dropped */
	uint64_t missing_batches;                /* sequence numbers skipped by the sensor */
	uint64_t rejected_batches;               /* malformed */
	uint64_t storage_errors;                 /* attempts that failed to write (and were retried) */
	uint64_t unstorable[STORE_UNSTORABLE_N]; /* well-formed records dropped, by reason; ACKed */
	uint64_t linktype_rejects;               /* single-file output: other link type */
	uint64_t segments_closed;
	/* Deleted by retention, all time: loaded from the index, not reset by a restart. */
	uint64_t retention_segments, retention_packets, retention_bytes;
	/* As last reported by the sensor. */
	uint64_t s_captured, s_kernel_drops, s_if_drops, s_queue_drops, s_spool_drops;
};

/* STATS counter ids below this are kept as the sensor last sent them (store_pub). */
#define STORE_SENSOR_STATS 64

/* What the metrics endpoint shows of one sensor: a copy the store worker publishes
 * after every change it makes (a batch group, a STATS frame, begin and end, and each
 * store_tick() for retention and the index totals), so that another thread reads it
 * without ever waiting on storage. */
struct store_pub {
	char id[PROTO_MAX_ID + 1];
	bool connected;
	struct store_counters c;
	uint64_t seen;                       /* bit i: STATS id i was received */
	uint64_t s_stat[STORE_SENSOR_STATS]; /* STATS values by id, as last sent */
	uint64_t segments, segment_bytes;    /* closed segments in the index, their bytes */
};

/* Receiver-wide values for the metrics endpoint. */
struct store_pub_all {
	struct lathist ack_lat;             /* frame read whole -> ACK queued, microseconds */
	uint64_t index_busy;                /* index writes deferred: another writer held the lock */
	uint64_t index_wait_max_us;         /* longest an ingest write waited on the index */
	uint64_t repo_segments, repo_bytes; /* all closed segments in the index */
};

struct store;
struct store_sensor;

/* Creates the repository root if needed. NULL with err set on failure. */
struct store *store_new(const struct store_opts *o, char *err, size_t errlen);
/* Finds or creates the state of one sensor (identity already validated). */
struct store_sensor *store_sensor_get(struct store *s, const char *id, char *err, size_t errlen);
bool store_sensor_known(const struct store *s, const char *id);
unsigned store_sensor_count(const struct store *s);
/* Starts a session: remembers its interface table and returns the first sequence
 * number not yet stored for `epoch` (0 for a new epoch). */
uint64_t store_sensor_begin(
	struct store_sensor *ss, uint64_t epoch, const struct proto_iface *ifaces, uint16_t n_ifaces);
/* Ends a session: closes (and renames into place) the sensor's open segments. */
void store_sensor_end(struct store_sensor *ss);
/*
 * Stores one decompressed batch. Every record is validated before anything is
 * written, so a malformed batch changes nothing; a record the pcap format cannot
 * hold (store_unstorable) is left out, counted and logged, and the rest stored. On
 * anything but STORE_STORED and STORE_DUPLICATE err says what went wrong.
 */
enum store_result store_batch(struct store_sensor *ss, uint64_t seq, const uint8_t *raw, uint32_t raw_len,
	uint32_t n_records, char *err, size_t errlen);
/* Most batches store_batches() takes at once. */
#define STORE_BATCHES_MAX 16
struct store_batch_in {
	uint64_t seq;
	const uint8_t *raw;
	uint32_t raw_len, n_records;
	enum store_result sr; /* out */
};
/*
 * Stores consecutive batches of one sensor (a group commit): each is checked and
 * written as store_batch() does, but the writes are made durable and committed with
 * one sync per segment and one state write for as many batches as possible (a run
 * ends where a segment fills up, so segments end where they would batch by batch).
 * Each b[i].sr says what happened to batch i, as store_batch() would have; batches
 * after the first that was neither stored nor a duplicate are STORE_NOT_TRIED (a
 * failed write also undoes the uncommitted batches before it, which then carry the
 * failure). Returns the index of the first such batch (err says why), n if none.
 */
unsigned
store_batches(struct store_sensor *ss, struct store_batch_in *b, unsigned n, char *err, size_t errlen);
/* How a storage failure (-errno) is handled: STORE_RETRY when the same batch may be
 * stored later without any change to it (disk full, I/O error, a storage.dir an
 * operator can repair), else STORE_FAILED. */
enum store_result store_errno_result(int neg_errno);
/* "timestamp beyond pcap range", or "timestamp_beyond_pcap_range" for stats.json. */
const char *store_unstorable_name(enum store_unstorable why, bool key);
void store_sensor_stats(struct store_sensor *ss, const struct proto_stats *st);
/* Writes <dir>/sensors/<id>/stats.json (atomically). Returns 0 or -errno. */
int store_sensor_write_stats(struct store_sensor *ss, bool connected);
/* Writes <dir>/stats.json: receiver-wide ACK latency and index lock waits. 0 or -errno. */
int store_write_stats(struct store *s);
/* Records the time from a batch frame read whole to its ACK queued (microseconds).
 * The only store call that is safe from another thread than the store's: it takes
 * a lock that guards the histograms alone. */
void store_ack_latency(struct store_sensor *ss, uint64_t us);
/*
 * Copies what the store published (see struct store_pub): *out gets a malloc'd array of
 * *n sensors (free() it; NULL when there are none) and all, when not NULL, the
 * receiver-wide values. Safe from any thread: it takes a lock that the store worker
 * holds only to copy counters, never across I/O. Returns 0 or -ENOMEM.
 */
int store_pub_read(struct store *s, struct store_pub **out, size_t *n, struct store_pub_all *all);
/* Between store_sensor_begin() and store_sensor_end(). */
bool store_sensor_connected(const struct store_sensor *ss);
const struct store_counters *store_sensor_counters(const struct store_sensor *ss);
const char *store_sensor_id(const struct store_sensor *ss);
/* Calls fn for every sensor known since start. */
void store_foreach(struct store *s, void (*fn)(void *arg, struct store_sensor *ss), void *arg);
/* Returns 1 if the batch stored last still needs store_sync() before its ACK
 * (fsync policy "interval"), else 0. */
int store_sensor_needs_sync(const struct store_sensor *ss);
/* Syncs every sensor with written but unsynced data (fsync policy "interval").
 * Returns 0 or -errno (sensors whose sync failed stay unsynced). */
int store_sync(struct store *s);
/* Bytes stored since the last store_sync() (interval policy). */
uint64_t store_unsynced_bytes(const struct store *s);
/* Closes segments older than the rotation age, retries index rows that could not be
 * written, and enforces the retention bounds. Call every second. */
void store_tick(struct store *s);
/* Closes everything (segments renamed into place, single file flushed). */
void store_free(struct store *s);

#endif
