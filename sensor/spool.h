/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Disk spool: sealed batches that do not fit the in-memory send window wait here
 * (one file per batch, named by sequence number) until the receiver ACKs them.
 * Bounded in bytes; when full, the oldest batch not yet back in memory is dropped
 * and counted. The spool also keeps the sequence state (the epoch and the sequence
 * numbers used in it), so that a restarted sensor resends what was pending under the
 * same sequence space and numbers its new batches above every number it ever used.
 */
#ifndef PCAPLINE_SENSOR_SPOOL_H
#define PCAPLINE_SENSOR_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "sensor/batcher.h"

struct spool;

/* Opens (creating) dir. *epoch receives the stored epoch if the spool holds batches,
 * else new_epoch, which is then stored. *next_seq is the first sequence number that
 * was never used in that epoch (1 for a new one): above every spooled batch and
 * every batch numbered before a crash. Spooled batches whose sequence state is lost
 * are renumbered from 1 under new_epoch. NULL with err set on failure. */
struct spool *spool_open(const char *dir, uint64_t max_bytes, uint64_t new_epoch, uint64_t *epoch,
	uint64_t *next_seq, char *err, size_t errlen);
/* Records that batch seq, numbered in this spool's epoch, is about to leave the
 * process (sent or spooled); reserves the next block of numbers on disk first when
 * seq reaches the end of the reservation. Returns 0 or -errno (logged, rate-limited):
 * then the state is removed, so that a restart takes a new epoch. */
int spool_seq_use(struct spool *sp, uint64_t seq);
/* Moves to a new epoch (PROTOCOL.md 6.3, epoch reused): records it durably with
 * every number up to in_use and every spooled number as used, so that a crash while
 * renumbering never reuses one. Returns 0 or -errno. */
int spool_set_epoch(struct spool *sp, uint64_t epoch, uint64_t in_use);
/* Renumbers spooled batch old as seq (seq <= old, called in ascending order). On
 * failure the batch is dropped and counted. Returns 0, -ENOENT if old is not
 * spooled, or -errno. */
int spool_renumber(struct spool *sp, uint64_t old, uint64_t seq);
/* Renumbers the batches not in memory from first on; returns the next free number. */
uint64_t spool_renumber_waiting(struct spool *sp, uint64_t first);
/* Writes a batch (the caller keeps ownership). Drops the oldest batches not in
 * memory if needed. Returns 0 or -errno. */
int spool_put(struct spool *sp, const struct batch *b);
/* True if some spooled batch is not in memory yet. */
bool spool_has_waiting(const struct spool *sp);
/* Reads the oldest waiting batch back into memory (its file stays until ACKed).
 * NULL if none or unreadable (then it is dropped and counted). */
struct batch *spool_take(struct spool *sp);
/* Deletes every spooled batch with seq <= seq. */
void spool_ack(struct spool *sp, uint64_t seq);
/* True if batch seq has a file in the spool. */
bool spool_contains(const struct spool *sp, uint64_t seq);
uint64_t spool_bytes(const struct spool *sp);
uint64_t spool_count(const struct spool *sp);
uint64_t spool_dropped_packets(const struct spool *sp);
uint64_t spool_dropped_batches(const struct spool *sp);
void spool_close(struct spool *sp);

#endif
