/* SPDX-License-Identifier: BSD-2-Clause */
/* Tests for receiver/repo/segname.c: both forms of segment file names, written and read
 * back, and names that are not segments. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "receiver/repo/segname.h"

#define T0_NS   1700000000000000000ull
#define EPOCH_X 0x1122334455667788ull

static void
test_segment_names(void **state)
{
	struct segname sn;
	char name[256];

	assert_true(segname_format(name, sizeof(name), T0_NS, EPOCH_X, 42, 3, "eth0.100") > 0);
	assert_string_equal(name, "01700000000000000000-1122334455667788-42.3-eth0.100.pcap");
	assert_true(segname_parse(name, &sn));
	assert_true(sn.first_ns == T0_NS && sn.epoch == EPOCH_X && sn.seq == 42 && sn.ifindex == 3);
	assert_string_equal(sn.ifname, "eth0.100");

	/* The form without the index: an interface name that starts like one stays whole. */
	assert_true(segname_parse("01700000000000000000-1122334455667788-42-1-x.pcap", &sn));
	assert_true(sn.ifindex == -1 && sn.seq == 42);
	assert_string_equal(sn.ifname, "1-x");
	assert_true(segname_parse("01700000000000000000-1122334455667788-42-eth0.pcap", &sn));
	assert_string_equal(sn.ifname, "eth0");

	static const char *bad[] = {
		".open-01700000000000000000-1122334455667788-42.0-eth0.pcap",
		"01700000000000000000-1122334455667788-42.0-.pcap",
		"01700000000000000000-1122334455667788-42.-eth0.pcap",
		"01700000000000000000-1122334455667788-42.0-eth0.pcapng",
		"x-1122334455667788-42.0-eth0.pcap",
		"99999999999999999999-1122334455667788-42.0-eth0.pcap", /* above 2^64 */
		"01700000000000000000-1122334455667788-42",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(segname_parse(bad[i], &sn));
	char small[20];
	assert_int_equal(segname_format(small, sizeof(small), T0_NS, EPOCH_X, 1, 0, "eth0"), -ENAMETOOLONG);
}

static void
test_older_form_round_trip(void **state)
{
	struct segname sn;
	char name[256];

	/* What `pcapline import` writes: no interface index. */
	assert_int_equal(segname_format(name, sizeof(name), T0_NS, EPOCH_X, 7, -1, "1-x"), 48);
	assert_string_equal(name, "01700000000000000000-1122334455667788-7-1-x.pcap");
	assert_true(segname_parse(name, &sn));
	assert_true(sn.first_ns == T0_NS && sn.epoch == EPOCH_X && sn.seq == 7 && sn.ifindex == -1);
	assert_string_equal(sn.ifname, "1-x");
	/* The largest values both fields hold. */
	assert_true(
		segname_format(name, sizeof(name), UINT64_MAX, UINT64_MAX, UINT64_MAX, INT32_MAX, "e") > 0);
	assert_true(segname_parse(name, &sn));
	assert_true(sn.first_ns == UINT64_MAX && sn.epoch == UINT64_MAX && sn.seq == UINT64_MAX &&
		sn.ifindex == INT32_MAX);
	/* An interface index above INT32_MAX, an interface name that does not fit. */
	assert_false(segname_parse("01700000000000000000-1122334455667788-1.2147483648-e.pcap", &sn));
	char longname[300 + 60], ifname[301];
	memset(ifname, 'a', 300);
	ifname[300] = '\0';
	assert_true(segname_format(longname, sizeof(longname), T0_NS, EPOCH_X, 1, 0, ifname) > 0);
	assert_false(segname_parse(longname, &sn));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segment_names),
		cmocka_unit_test(test_older_form_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
