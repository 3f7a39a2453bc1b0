/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A fixed latency histogram: four linear steps per power of two (at most 25 % above
 * the true value), from 1 to 2^40 units, so that P50/P99 cost nothing to keep and
 * their error is bounded whatever the distribution. Not thread-safe: callers lock.
 */
#ifndef PCAPLINE_LATHIST_H
#define PCAPLINE_LATHIST_H

#include <stdint.h>
#include <stdio.h>

#define LATHIST_BUCKETS 164

struct lathist {
	uint64_t count, max;
	uint64_t sum; /* of every value added (a Prometheus histogram's _sum) */
	uint64_t n[LATHIST_BUCKETS];
};

void lathist_add(struct lathist *h, uint64_t v);
/* The value at quantile q (0..1): the upper edge of its bucket, never above the
 * maximum seen; 0 when empty. */
uint64_t lathist_quantile(const struct lathist *h, double q);
/* How many values added were at most v: exact when v is 2^k - 1 (k >= 2), where bucket
 * edges fall (a Prometheus histogram's cumulative bucket "le"). */
uint64_t lathist_count_le(const struct lathist *h, uint64_t v);
/* Writes {"count":N,"p50":..,"p99":..,"max":..}. */
void lathist_json(const struct lathist *h, FILE *f);

#endif
