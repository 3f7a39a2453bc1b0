/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the time arguments of the pcapline command (--from, --to:
 * receiver/repo/timearg.c). The input is the argument itself (a NUL-terminated copy; an
 * embedded NUL ends it as it would on a command line).
 *
 * Besides memory errors and undefined behaviour in the calendar and overflow arithmetic,
 * it checks what the export window relies on: a parse either fails with -EINVAL and
 * leaves the result alone, or gives a time that timearg_format() writes as RFC 3339 and
 * that parses back to the same nanosecond; "now" relative times move with now exactly;
 * and a parse never depends on anything but its input and now.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver/repo/timearg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW UINT64_C(1795558496123456789)

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_timearg: %s\n", what);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;
	uint64_t out = 0x5a5a5a5a5a5a5a5a, again = 0, later = 0;
	int rc;

	if (size > 256)
		return 0;
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	rc = timearg_parse(s, NOW, &out);
	must(rc == 0 || rc == -EINVAL, "result is neither 0 nor -EINVAL");
	if (rc != 0) {
		must(out == 0x5a5a5a5a5a5a5a5a, "a failed parse wrote its result");
	} else {
		char buf[TIMEARG_LEN];

		/* Same input, same now: same answer. */
		must(timearg_parse(s, NOW, &again) == 0 && again == out, "parse not repeatable");
		timearg_format(out, buf);
		must(strlen(buf) == 30 && buf[4] == '-' && buf[10] == 'T' && buf[29] == 'Z',
			"formatted time is not RFC 3339 with nine fraction digits");
		must(timearg_parse(buf, 0, &again) == 0, "formatted time does not parse");
		must(again == out, "formatted time parses to another time");
		/* A relative time follows now by exactly the change in now; an absolute one
		 * does not move. */
		if (strncmp(s, "now", 3) == 0) {
			if (out <= UINT64_MAX - 1000 && timearg_parse(s, NOW + 1000, &later) == 0)
				must(later == out + 1000, "relative time does not follow now");
		} else {
			must(timearg_parse(s, NOW + 1000, &later) == 0 && later == out,
				"absolute time depends on now");
		}
	}
	free(s);
	return 0;
}
