/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Time arguments of the pcapline command (--from, --to), always in nanoseconds since
 * the Unix epoch (UTC):
 *   RFC 3339:       2026-11-24T22:00:00Z, 2026-11-24T22:00:00.123456789Z,
 *                   2026-11-24T23:00:00+01:00 (a space may replace the T)
 *   Unix seconds:   1795558496 or 1795558496.123456789 (up to 9 fraction digits)
 *   relative:       now, now-5m, now-1h30m, now+10s (units ns us ms s m h d w)
 */
#ifndef PCAPLINE_CLI_TIMEARG_H
#define PCAPLINE_CLI_TIMEARG_H

#include <stddef.h>
#include <stdint.h>

/* RFC 3339 with nine fraction digits, "2026-11-24T22:00:00.000000000Z". */
#define TIMEARG_LEN 48

/* Parses s; now_ns is what "now" means. Returns 0, or -EINVAL for a malformed or
 * out-of-range time (before 1970, or beyond 2^64 ns). */
int timearg_parse(const char *s, uint64_t now_ns, uint64_t *out);
/* Formats ns as RFC 3339 UTC with nine fraction digits into buf (TIMEARG_LEN bytes). */
void timearg_format(uint64_t ns, char buf[TIMEARG_LEN]);
/* The current time (CLOCK_REALTIME) in ns. */
uint64_t timearg_now(void);

#endif
