/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Rotated pcap files for Suricata and Zeek (outputs.files): one live consumer (live.h)
 * whose thread writes the classic pcap stream it reads into a directory of complete
 * files, for `suricata -r DIR --pcap-file-continuous` and `zeek -r FILE`.
 *
 * The reader's contract (Suricata's continuous mode lists the directory, takes the files
 * in modification-time order and skips those not newer than the last one it read):
 *   - a file is written as DIR/.pcapline-<seq>.pcap.part (hidden) and renamed to its final
 *     name DIR/pcapline-<seq>-<UTC yyyymmddThhmmss>.pcap only when complete (after fsync
 *     with outputs.files.fsync), so no reader ever opens a partial file under a final name;
 *   - <seq> is 12 zero-padded digits, one more than the largest in the directory when the
 *     receiver starts: names are unique and sort in writing order, also across restarts;
 *   - each file's mtime is set before the rename to max(now, previous file's mtime + 1 ms)
 *     (the previous file's mtime read back from the directory at start), so mtimes grow
 *     strictly even for two rotations in the same millisecond or a clock step back.
 * Rotation by size (a file holds at least one packet) and/or by age. The directory is
 * bounded by file count and/or bytes of final files: the oldest go first, each deletion
 * counted. Leftover .part files of a receiver that died are deleted at start.
 *
 * Nothing is lost silently: packets the hub could not queue are the hub's drops of this
 * consumer (rotate_stats().drops, logged); a failed write or rename (a full disk) counts
 * a write error and the packets of that file as lost, removes the partial file, and the
 * next file is tried a second later. The ingest path never waits for this thread.
 */
#ifndef PCAPLINE_RECEIVER_OUTPUTS_ROTATE_H
#define PCAPLINE_RECEIVER_OUTPUTS_ROTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/outputs/live.h"

#define ROTATE_PREFIX     "pcapline-"
#define ROTATE_SEQ_DIGITS 12
/* "pcapline-" 12 digits "-" 15 ("yyyymmddThhmmss") "Z.pcap" */
#define ROTATE_NAME_MAX   64

struct rotate_opts {
	const char *dir;
	const char *const *sensors; /* n_sensors 0: every sensor */
	size_t n_sensors;
	const char *filter;   /* BPF, NULL or "": everything */
	uint64_t rotate_size; /* bytes, 0: no size bound */
	uint64_t rotate_ms;   /* age of a file, 0: no time bound */
	uint64_t max_files;   /* final files kept, 0: unlimited */
	uint64_t max_size;    /* bytes of final files kept, 0: unlimited */
	bool fsync;           /* fsync each file and the directory before/after its rename */
};

struct rotate_stats {
	uint64_t files;          /* renamed into place since start */
	uint64_t packets, bytes; /* in those files (bytes: whole file sizes) */
	uint64_t deleted_files;  /* by max_files/max_size */
	uint64_t deleted_bytes;
	uint64_t write_errors;       /* failed write, fsync or rename */
	uint64_t lost_packets;       /* in files removed after a write error */
	uint64_t drops[LIVE_DROP_N]; /* the hub's drops for this consumer */
	uint64_t restarts;           /* consumer cut off by the hub and joined again */
};

struct rotate;

/* Creates the directory if needed, scans it (sequence, mtime, bounds), joins the live
 * hub (live_init() first) and starts the thread. NULL with err set. */
struct rotate *rotate_start(const struct rotate_opts *o, char *err, size_t errlen);
/* Ends the thread (after live_shutdown(): the current file is completed and renamed) and
 * frees. Accepts NULL. */
void rotate_stop(struct rotate *r);
/* Safe from any thread (for /metrics). */
void rotate_stats_get(struct rotate *r, struct rotate_stats *st);
/* The same for the running output (the receiver has at most one), for code that does
 * not hold it (the metrics endpoint). False, st untouched, when outputs.files is off. */
bool rotate_stats_current(struct rotate_stats *st);

/* The naming rules, exposed for tests. */
/* "pcapline-<seq>-<yyyymmddThhmmss>Z.pcap" for a wall time in seconds. 0 or -ENOSPC. */
int rotate_name(char *buf, size_t len, uint64_t seq, int64_t wall_s);
/* The sequence number of a final name, or -EINVAL for any other name. */
int rotate_parse_name(const char *name, uint64_t *seq);
/* The mtime (ns) of the next file: now truncated to the millisecond, but at least
 * 1 ms after prev_ns (0: none). */
int64_t rotate_next_mtime(int64_t prev_ns, int64_t now_ns);

#endif
