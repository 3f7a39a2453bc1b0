/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/cursor.h, the one read cursor of the project (proto/wire.c,
 * shared/pcapfile.c, shared/pkt.c and shared/dns.c read through it): every reader
 * decodes its byte order exactly, fails at the end of the input and then consumes
 * nothing. Inputs live in heap buffers of their exact size, so that AddressSanitizer
 * turns any read past the end into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "shared/cursor.h"

static const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09 };

static uint8_t *
dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	assert_non_null(b);
	memcpy(b, p, n);
	return b;
}

static void
test_byte_orders(void **state)
{
	uint8_t *b = dup_exact(bytes, sizeof(bytes));
	struct cursor c;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	cursor_init(&c, b, sizeof(bytes));
	assert_true(cursor_u8(&c, &u8));
	assert_int_equal(u8, 0x01);
	assert_true(cursor_u16be(&c, &u16));
	assert_int_equal(u16, 0x0203);
	assert_true(cursor_u16le(&c, &u16));
	assert_int_equal(u16, 0x0504);
	assert_true(cursor_u32be(&c, &u32));
	assert_int_equal(u32, 0x06070809);
	assert_int_equal(cursor_left(&c), 0);

	cursor_init(&c, b + 1, 8);
	assert_true(cursor_u64be(&c, &u64));
	assert_true(u64 == 0x0203040506070809ull);
	assert_int_equal(cursor_left(&c), 0);

	/* File byte order: host order, swapped on request. */
	uint16_t h16;
	uint32_t h32;
	memcpy(&h16, b, 2);
	memcpy(&h32, b + 2, 4);
	cursor_init(&c, b, 6);
	assert_true(cursor_u16x(&c, false, &u16));
	assert_int_equal(u16, h16);
	assert_true(cursor_u32x(&c, false, &u32));
	assert_int_equal(u32, h32);
	cursor_init(&c, b, 6);
	assert_true(cursor_u16x(&c, true, &u16));
	assert_int_equal(u16, (uint16_t)(h16 >> 8 | h16 << 8));
	assert_true(cursor_u32x(&c, true, &u32));
	assert_int_equal(u32, __builtin_bswap32(h32));
	free(b);
}

/* At every length short of what a reader needs, it fails and the cursor stays put. */
static void
test_truncation_consumes_nothing(void **state)
{
	for (size_t n = 0; n < 8; n++) {
		uint8_t *b = dup_exact(bytes, n);
		struct cursor c;
		uint16_t u16 = 0xdead;
		uint32_t u32 = 0xdeadbeef;
		uint64_t u64 = 42;
		const uint8_t *out = NULL;

		cursor_init(&c, b, n);
		assert_false(cursor_u64be(&c, &u64));
		assert_true(u64 == 42);
		if (n < 4) {
			assert_false(cursor_u32be(&c, &u32));
			assert_false(cursor_u32x(&c, true, &u32));
			assert_int_equal(u32, 0xdeadbeef);
		}
		if (n < 2) {
			assert_false(cursor_u16be(&c, &u16));
			assert_false(cursor_u16le(&c, &u16));
			assert_false(cursor_u16x(&c, false, &u16));
			assert_int_equal(u16, 0xdead);
		}
		assert_false(cursor_skip(&c, n + 1));
		assert_false(cursor_bytes(&c, n + 1, &out));
		assert_null(out);
		assert_int_equal(cursor_left(&c), n);
		assert_true(c.p == b);
		assert_true(cursor_bytes(&c, n, &out));
		assert_true(out == b);
		assert_int_equal(cursor_left(&c), 0);
		free(b);
	}
}

/* An empty input may be a null pointer: no arithmetic on it, every reader fails. */
static void
test_null_empty(void **state)
{
	struct cursor c;
	uint8_t u8;
	const uint8_t *out;

	cursor_init(&c, NULL, 0);
	assert_int_equal(cursor_left(&c), 0);
	assert_false(cursor_u8(&c, &u8));
	assert_true(cursor_skip(&c, 0));
	assert_true(cursor_bytes(&c, 0, &out));
	assert_false(cursor_skip(&c, 1));
}

static void
test_limit(void **state)
{
	uint8_t *b = dup_exact(bytes, sizeof(bytes));
	struct cursor c;
	uint32_t u32;

	cursor_init(&c, b, sizeof(bytes));
	assert_true(cursor_skip(&c, 1));
	cursor_limit(&c, 3);
	assert_int_equal(cursor_left(&c), 3);
	assert_false(cursor_u32be(&c, &u32));
	/* A limit beyond the end changes nothing. */
	cursor_init(&c, b, 2);
	cursor_limit(&c, 100);
	assert_int_equal(cursor_left(&c), 2);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_orders),
		cmocka_unit_test(test_truncation_consumes_nothing),
		cmocka_unit_test(test_null_empty),
		cmocka_unit_test(test_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
