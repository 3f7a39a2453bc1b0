/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for shared/lathist.c: bucket edges, quantiles against the exact ones of known
 * distributions (never below, at most 25 % above), and the JSON the receiver's
 * stats.json carries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shared/lathist.h"

static void
test_empty(void **state)
{
	struct lathist h = { 0 };
	assert_int_equal(lathist_quantile(&h, 0.5), 0);
	assert_int_equal(lathist_quantile(&h, 0.99), 0);
}

static void
test_small_values_exact(void **state)
{
	struct lathist h = { 0 };
	for (uint64_t v = 0; v < 4; v++)
		lathist_add(&h, v);
	assert_int_equal(h.count, 4);
	assert_int_equal(h.max, 3);
	assert_int_equal(lathist_quantile(&h, 0.25), 0);
	assert_int_equal(lathist_quantile(&h, 0.5), 1);
	assert_int_equal(lathist_quantile(&h, 1.0), 3);
}

/* 1..100000 once each: the exact quantile q is ceil(q * n). */
static void
test_uniform_bounded_error(void **state)
{
	static struct lathist h;
	memset(&h, 0, sizeof(h));
	const uint64_t n = 100000;
	for (uint64_t v = 1; v <= n; v++)
		lathist_add(&h, v);
	static const double qs[] = { 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0 };
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t exact = (uint64_t)(qs[i] * (double)n + 0.999999);
		uint64_t got = lathist_quantile(&h, qs[i]);
		assert_true(got >= exact);
		assert_true((double)got <= (double)exact * 1.25 + 1);
	}
	assert_int_equal(lathist_quantile(&h, 1.0), n);
}

/* One slow outlier among fast samples: P50 stays fast, P99 too, max shows it. */
static void
test_outlier(void **state)
{
	struct lathist h = { 0 };
	for (int i = 0; i < 999; i++)
		lathist_add(&h, 100);
	lathist_add(&h, 5000000);
	assert_true(lathist_quantile(&h, 0.5) >= 100 && lathist_quantile(&h, 0.5) <= 125);
	assert_true(lathist_quantile(&h, 0.99) <= 125);
	assert_int_equal(lathist_quantile(&h, 1.0), 5000000);
	assert_int_equal(h.max, 5000000);
}

/* Values beyond the last bucket are kept (in it) and the maximum is exact. */
static void
test_huge(void **state)
{
	struct lathist h = { 0 };
	lathist_add(&h, UINT64_MAX);
	assert_int_equal(h.count, 1);
	assert_true(lathist_quantile(&h, 0.5) == UINT64_MAX);
}

static void
test_json(void **state)
{
	struct lathist h = { 0 };
	lathist_add(&h, 10);
	lathist_add(&h, 20);
	char buf[256] = { 0 };
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
	assert_non_null(f);
	lathist_json(&h, f);
	fclose(f);
	assert_string_equal(buf, "{\"count\": 2, \"p50\": 11, \"p99\": 20, \"max\": 20}");
}

/* Cumulative counts at the 2^k - 1 edges are exact, whatever lies next to them; the sum
 * is kept. */
static void
test_count_le(void **state)
{
	struct lathist h = { 0 };
	uint64_t vals[] = { 0, 3, 4, 7, 8, 1023, 1024, 1025, 65535, 65536, UINT64_C(1) << 50 };
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		lathist_add(&h, vals[i]);
	assert_int_equal(lathist_count_le(&h, 3), 2);
	assert_int_equal(lathist_count_le(&h, 7), 4);
	assert_int_equal(lathist_count_le(&h, 1023), 6);
	assert_int_equal(lathist_count_le(&h, 65535), 9);
	assert_int_equal(lathist_count_le(&h, (UINT64_C(1) << 40) - 1), 10);
	/* Past the largest value seen: everything, the overflow bucket included. */
	assert_int_equal(lathist_count_le(&h, UINT64_MAX), 11);
	assert_int_equal(h.sum, 0 + 3 + 4 + 7 + 8 + 1023 + 1024 + 1025 + 65535 + 65536 + (UINT64_C(1) << 50));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_small_values_exact),
		cmocka_unit_test(test_uniform_bounded_error),
		cmocka_unit_test(test_outlier),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_count_le),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
