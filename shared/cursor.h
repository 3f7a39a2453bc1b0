/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A bounds-checked read cursor over untrusted bytes (packets, DNS messages): every
 * reader fails on truncation and consumes nothing then, so that no length taken from
 * the input can form a pointer past its end (the discipline of tcpdump's GET_BE_U_2).
 * Header only: the readers are small enough to inline into every parser. Pure (no I/O,
 * no allocation), so proto/ may use it: this is the one read cursor of the project.
 */
#ifndef PCAPLINE_SHARED_CURSOR_H
#define PCAPLINE_SHARED_CURSOR_H

#include <byteswap.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct cursor {
	const uint8_t *p;
	const uint8_t *end;
};

static inline void
cursor_init(struct cursor *c, const uint8_t *p, size_t n)
{
	/* Adding 0 to a null pointer is undefined in C11, and empty inputs may be NULL. */
	c->p = p;
	c->end = n ? p + n : p;
}

static inline size_t
cursor_left(const struct cursor *c)
{
	return c->p == c->end ? 0 : (size_t)(c->end - c->p);
}

/* Skips n bytes; false (nothing consumed) if fewer are left. */
static inline bool
cursor_skip(struct cursor *c, size_t n)
{
	if (cursor_left(c) < n)
		return false;
	if (n)
		c->p += n;
	return true;
}

/* Points *out at the next n bytes and consumes them. */
static inline bool
cursor_bytes(struct cursor *c, size_t n, const uint8_t **out)
{
	if (cursor_left(c) < n)
		return false;
	*out = c->p;
	if (n)
		c->p += n;
	return true;
}

static inline bool
cursor_u8(struct cursor *c, uint8_t *v)
{
	if (cursor_left(c) < 1)
		return false;
	*v = c->p[0];
	c->p++;
	return true;
}

static inline bool
cursor_u16be(struct cursor *c, uint16_t *v)
{
	if (cursor_left(c) < 2)
		return false;
	*v = (uint16_t)((unsigned)c->p[0] << 8 | c->p[1]);
	c->p += 2;
	return true;
}

static inline bool
cursor_u16le(struct cursor *c, uint16_t *v)
{
	if (cursor_left(c) < 2)
		return false;
	*v = (uint16_t)((unsigned)c->p[1] << 8 | c->p[0]);
	c->p += 2;
	return true;
}

static inline bool
cursor_u32be(struct cursor *c, uint32_t *v)
{
	if (cursor_left(c) < 4)
		return false;
	*v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4;
	return true;
}

static inline bool
cursor_u64be(struct cursor *c, uint64_t *v)
{
	uint64_t x = 0;

	if (cursor_left(c) < 8)
		return false;
	for (int i = 0; i < 8; i++)
		x = x << 8 | c->p[i];
	*v = x;
	c->p += 8;
	return true;
}

/*
 * Readers for formats whose byte order is announced by the file (pcap, pcapng): host
 * order, byte-swapped when swap is set. memcpy keeps unaligned reads defined.
 */
static inline bool
cursor_u16x(struct cursor *c, bool swap, uint16_t *v)
{
	uint16_t x;

	if (cursor_left(c) < 2)
		return false;
	memcpy(&x, c->p, sizeof(x));
	*v = swap ? bswap_16(x) : x;
	c->p += 2;
	return true;
}

static inline bool
cursor_u32x(struct cursor *c, bool swap, uint32_t *v)
{
	uint32_t x;

	if (cursor_left(c) < 4)
		return false;
	memcpy(&x, c->p, sizeof(x));
	*v = swap ? bswap_32(x) : x;
	c->p += 4;
	return true;
}

/* Limits the cursor to its next n bytes (fewer if fewer are left). */
static inline void
cursor_limit(struct cursor *c, size_t n)
{
	if (cursor_left(c) > n)
		c->end = c->p + n;
}

#endif
