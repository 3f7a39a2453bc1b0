/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/lathist.h"

#include <inttypes.h>

/* Values 0..3 have a bucket each; from 4 on, each power of two [2^e, 2^(e+1)) has
 * four buckets of width 2^(e-2). */
static unsigned
lathist_bucket(uint64_t v)
{
	if (v < 4)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	unsigned b = 4 + (e - 2) * 4 + (unsigned)((v >> (e - 2)) & 3);
	return b < LATHIST_BUCKETS ? b : LATHIST_BUCKETS - 1;
}

/* The largest value that falls into bucket b. */
static uint64_t
lathist_upper(unsigned b)
{
	if (b < 4)
		return b;
	unsigned e = (b - 4) / 4 + 2, sub = (b - 4) % 4;
	return ((uint64_t)(4 + sub + 1) << (e - 2)) - 1;
}

void
lathist_add(struct lathist *h, uint64_t v)
{
	h->n[lathist_bucket(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

uint64_t
lathist_quantile(const struct lathist *h, double q)
{
	if (!h->count)
		return 0;
	/* The rank of the quantile, 1-based, rounded up: P99 of 100 samples is the 99th. */
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < LATHIST_BUCKETS; b++) {
		seen += h->n[b];
		if (seen >= rank) {
			/* The last bucket also holds everything above its range. */
			uint64_t u = b == LATHIST_BUCKETS - 1 ? h->max : lathist_upper(b);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

uint64_t
lathist_count_le(const struct lathist *h, uint64_t v)
{
	uint64_t n = 0;

	/* The last bucket also holds everything above its range: counted only when v is
	 * past the largest value seen. */
	for (unsigned b = 0; b < LATHIST_BUCKETS - 1 && lathist_upper(b) <= v; b++)
		n += h->n[b];
	return v >= h->max ? h->count : n;
}

void
lathist_json(const struct lathist *h, FILE *f)
{
	fprintf(f,
		"{\"count\": %" PRIu64 ", \"p50\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"max\": %" PRIu64 "}",
		h->count, lathist_quantile(h, 0.50), lathist_quantile(h, 0.99), h->max);
}
