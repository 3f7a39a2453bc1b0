/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A 64-bit hash for table keys and ids: FNV-1a over the bytes (incremental), then the
 * splitmix64 finalizer so that every output bit depends on every input bit (FNV-1a
 * alone leaves the low bits, which a power-of-two table uses, poorly mixed).
 */
#ifndef PCAPLINE_SHARED_HASH_H
#define PCAPLINE_SHARED_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_INIT 1469598103934665603ull

static inline uint64_t
hash_add(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static inline uint64_t
hash_end(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

#endif
