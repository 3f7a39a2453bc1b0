/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * FIFO retention of closed segments: a size and an age bound for the whole
 * repository and for each sensor, enforced by deleting the oldest segments first
 * (ordered by their newest packet, max_ns; for the global bound across all sensors).
 *
 * Per-sensor totals (bytes, segments, oldest max_ns) are kept in memory, loaded from
 * the index at start and updated on every insert, so that checking the bounds costs
 * no SQLite access; the index is asked for candidates only when a bound is exceeded.
 * Only rows of the index are ever deleted, and the index only ever holds closed
 * segments under sensors/<id>/segments/: open segments, snapshots and anything else
 * in the repository are out of reach.
 */
#ifndef PCAPLINE_RECEIVER_RETENTION_H
#define PCAPLINE_RECEIVER_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/repo/index.h"

struct retention_opts {
	uint64_t max_bytes;         /* storage.max_size: all sensors together, 0 = unlimited */
	uint64_t max_age_ms;        /* storage.max_age */
	uint64_t sensor_max_bytes;  /* storage.sensor_max_size: each sensor */
	uint64_t sensor_max_age_ms; /* storage.sensor_max_age */
};

struct retention;

/* Called once per deleted segment; why is "size bound" or "age bound". seg is
 * borrowed for the call. */
typedef void retention_fn(void *arg, const struct index_seg *seg, const char *why);

/* Borrows ix (it must outlive the retention) and loads the totals from it. NULL with
 * err set on failure. */
struct retention *retention_new(struct index *ix, const struct retention_opts *o, char *err, size_t errlen);
/* Accepts NULL. */
void retention_free(struct retention *r);
/* True when at least one bound is set. */
bool retention_enabled(const struct retention *r);
/* Accounts for a row just inserted into the index. */
void retention_added(struct retention *r, const struct index_seg *seg);
/*
 * Deletes oldest-first until every bound holds, at wall-clock time now_ns: first each
 * sensor against the per-sensor bounds, then everything against the global ones. Each
 * deletion is logged (one info line) and reported to fn (may be NULL). A deletion that
 * fails ends the run (logged; the next run tries again). Returns how many segments
 * were deleted.
 */
unsigned retention_run(struct retention *r, int64_t now_ns, retention_fn *fn, void *arg);
/* Closed segments in the index and their bytes, of one sensor (zeros when it has none). */
void retention_totals(const struct retention *r, const char *sensor, uint64_t *segments, uint64_t *bytes);
/* Bytes of closed segments in the index, all sensors (sensor NULL) or one. */
uint64_t retention_bytes(const struct retention *r, const char *sensor);

#endif
