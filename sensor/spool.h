/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Disk spool: sealed batches that do not fit the in-memory send window wait here
 * (one file per batch, named by sequence number) until the receiver ACKs them.
 * Bounded in bytes; when full, the oldest batch not yet back in memory is dropped
 * and counted. The spool also keeps the epoch, so that a restarted sensor resends
 * what was pending under the same sequence space.
 */
#ifndef PCAPLINE_SENSOR_SPOOL_H
#define PCAPLINE_SENSOR_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "batcher.h"

struct spool;

/* Opens (creating) dir. *epoch receives the stored epoch if the spool holds batches,
 * else new_epoch, which is then stored. *next_seq is one past the highest spooled
 * sequence number (1 if empty). NULL with err set on failure. */
struct spool *spool_open(const char *dir, uint64_t max_bytes, uint64_t new_epoch, uint64_t *epoch,
			 uint64_t *next_seq, char *err, size_t errlen);
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
