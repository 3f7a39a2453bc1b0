/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/hostport.c, the one parser of uplink.receivers, listen and
 * api.listen: every form each of them accepted before still parses to the same host
 * and port, and every refusal names the setting and the reason (the integration tests
 * assert the same sentences on the daemons' stderr).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "shared/hostport.h"

static void
ok(const char *s, unsigned flags, const char *host, const char *port)
{
	struct hostport hp;
	char err[256] = "";

	if (hostport_parse(s, flags, "x", &hp, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", s, err);
	assert_string_equal(hp.host, host);
	assert_string_equal(hp.port, port);
}

static void
bad(const char *s, unsigned flags, const char *msg)
{
	struct hostport hp;
	char err[256] = "";

	assert_int_equal(hostport_parse(s, flags, "uplink.receivers", &hp, err, sizeof(err)), -EINVAL);
	if (strstr(err, msg) == NULL || strncmp(err, "uplink.receivers: ", 18) != 0)
		fail_msg("'%s': got '%s', want '%s'", s, err, msg);
}

static void
test_accepted(void **state)
{
	ok("127.0.0.1:47800", 0, "127.0.0.1", "47800");
	ok("receiver.example:1", 0, "receiver.example", "1");
	ok("[::1]:65535", 0, "::1", "65535");
	ok("[fe80::1%lo]:80", 0, "fe80::1%lo", "80");
	/* Unbracketed IPv6 splits at the last ':', as every parser did before. */
	ok("::1:80", 0, "::1", "80");
	ok("h:0080", 0, "h", "80");
	/* Listening: an empty host is every address, port 0 a free one when allowed. */
	ok(":8080", HOSTPORT_LISTEN, "", "8080");
	ok("[]:8080", HOSTPORT_LISTEN, "", "8080");
	ok("127.0.0.1:0", HOSTPORT_LISTEN | HOSTPORT_PORT0, "127.0.0.1", "0");
	ok("0.0.0.0:47800", HOSTPORT_LISTEN | HOSTPORT_PORT0, "0.0.0.0", "47800");
}

static void
test_refused(void **state)
{
	char longhost[400];

	bad("127.0.0.1", 0, "'127.0.0.1' is not host:port");
	bad("127.0.0.1:", 0, "'127.0.0.1:' is not host:port");
	bad("", 0, "'' is not host:port");
	bad("[::1]", 0, "'[::1]' is not host:port");
	bad("[::1]80", 0, "'[::1]80' is not host:port");
	bad("[::1:80", 0, "'[::1:80' is not host:port");
	bad(":80", 0, "the host is empty");
	bad("[]:80", 0, "the host is empty");
	bad("h:99999", 0, "'h:99999': port '99999' is not a number in 1..65535");
	bad("h:65536", 0, "port '65536' is not a number in 1..65535");
	bad("h:0", 0, "port '0' is not a number in 1..65535");
	bad("h:-1", 0, "port '-1' is not a number in 1..65535");
	bad("h:+80", 0, "port '+80' is not a number in 1..65535");
	bad("h: 80", 0, "port ' 80' is not a number in 1..65535");
	bad("h:abc", 0, "port 'abc' is not a number in 1..65535");
	bad("h:80x", 0, "port '80x' is not a number in 1..65535");
	bad("h:99999999999999999999999", 0, "is not a number in 1..65535");
	bad("h:65536", HOSTPORT_PORT0, "port '65536' is not a number in 0..65535");
	memset(longhost, 'a', 256);
	strcpy(longhost + 256, ":80");
	bad(longhost, 0, "the host is longer than 255 bytes");
	/* 255 bytes is the longest host name DNS allows: accepted. */
	char host255[256];
	memset(host255, 'a', 255);
	host255[255] = '\0';
	memcpy(longhost, host255, 255);
	strcpy(longhost + 255, ":80");
	ok(longhost, 0, host255, "80");
}

static void
test_null(void **state)
{
	struct hostport hp;
	char err[128];

	assert_int_equal(hostport_parse(NULL, 0, "api.listen", &hp, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "api.listen: "));
	/* err may be NULL: the caller only wants the verdict. */
	assert_int_equal(hostport_parse("x", 0, "api.listen", &hp, NULL, 0), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
