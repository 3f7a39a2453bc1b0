/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Time arguments. Calendar arithmetic is done by hand (days from the civil date, as in
 * Howard Hinnant's algorithm) rather than with mktime/timegm, so that the result never
 * depends on TZ and every step can be checked for overflow.
 */
#include "receiver/repo/timearg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NS_PER_SEC 1000000000ull

static bool
digits(const char **p, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + (unsigned)((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned
days_in_month(unsigned y, unsigned m)
{
	static const unsigned dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

/* Up to nine digits after a '.', scaled to nanoseconds. */
static bool
fraction(const char **p, uint64_t *ns)
{
	uint64_t v = 0;
	int n = 0;

	*ns = 0;
	if (**p != '.')
		return true;
	(*p)++;
	while (**p >= '0' && **p <= '9') {
		if (++n > 9)
			return false;
		v = v * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	if (n == 0)
		return false;
	while (n++ < 9)
		v *= 10;
	*ns = v;
	return true;
}

static int
parse_rfc3339(const char *s, uint64_t *out)
{
	const char *p = s;
	unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
	uint64_t frac;
	int sign = 0;

	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &sec) ||
		!fraction(&p, &frac))
		return -EINVAL;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	/* A leap second (60) counts as the first second of the next minute. */
	if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
		mi > 59 || sec > 60)
		return -EINVAL;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	t -= sign * (int64_t)(oh * 3600 + om * 60);
	if (t < 0 || (uint64_t)t > (UINT64_MAX - frac) / NS_PER_SEC)
		return -EINVAL;
	*out = (uint64_t)t * NS_PER_SEC + frac;
	return 0;
}

static int
parse_unix(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t sec = 0, frac;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		if (sec > (UINT64_MAX / NS_PER_SEC))
			return -EINVAL;
		sec = sec * 10 + (uint64_t)(*p++ - '0');
	}
	if (!fraction(&p, &frac) || *p != '\0')
		return -EINVAL;
	if (sec > (UINT64_MAX - frac) / NS_PER_SEC)
		return -EINVAL;
	*out = sec * NS_PER_SEC + frac;
	return 0;
}

/* A duration such as "5m", "1h30m" or "250ms"; every number needs a unit. */
static int
parse_duration(const char *p, uint64_t *out)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 },
		{ "us", 1000 },
		{ "ms", 1000000 },
		{ "s", NS_PER_SEC },
		{ "m", 60 * NS_PER_SEC },
		{ "h", 3600 * NS_PER_SEC },
		{ "d", 86400 * NS_PER_SEC },
		{ "w", 7 * 86400 * NS_PER_SEC },
	};
	uint64_t total = 0;

	if (*p == '\0')
		return -EINVAL;
	while (*p != '\0') {
		uint64_t v = 0;
		size_t u, best = sizeof(units) / sizeof(units[0]);

		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9') {
			if (v > UINT64_MAX / 10)
				return -EINVAL;
			v = v * 10 + (uint64_t)(*p++ - '0');
		}
		/* Longest unit name that matches ("ms" before "m"). */
		for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
			size_t n = strlen(units[u].name);
			if (strncmp(p, units[u].name, n) == 0 &&
				(best == sizeof(units) / sizeof(units[0]) || n > strlen(units[best].name)))
				best = u;
		}
		if (best == sizeof(units) / sizeof(units[0]))
			return -EINVAL;
		p += strlen(units[best].name);
		if (v != 0 && units[best].ns > UINT64_MAX / v)
			return -EINVAL;
		v *= units[best].ns;
		if (total > UINT64_MAX - v)
			return -EINVAL;
		total += v;
	}
	*out = total;
	return 0;
}

int
timearg_parse(const char *s, uint64_t now_ns, uint64_t *out)
{
	uint64_t d;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (strncmp(s, "now", 3) == 0) {
		if (s[3] == '\0') {
			*out = now_ns;
			return 0;
		}
		if ((s[3] != '-' && s[3] != '+') || parse_duration(s + 4, &d) != 0)
			return -EINVAL;
		if (s[3] == '-') {
			if (d > now_ns)
				return -EINVAL;
			*out = now_ns - d;
		} else {
			if (d > UINT64_MAX - now_ns)
				return -EINVAL;
			*out = now_ns + d;
		}
		return 0;
	}
	if (strchr(s, '-') != NULL)
		return parse_rfc3339(s, out);
	return parse_unix(s, out);
}

void
timearg_format(uint64_t ns, char buf[TIMEARG_LEN])
{
	int64_t y;
	unsigned m, d;
	uint64_t sec = ns / NS_PER_SEC;
	uint64_t days = sec / 86400, rem = sec % 86400;

	civil_from_days((int64_t)days, &y, &m, &d);
	snprintf(buf, TIMEARG_LEN, "%04lld-%02u-%02uT%02u:%02u:%02u.%09uZ", (long long)y, m, d,
		(unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60),
		(unsigned)(ns % NS_PER_SEC));
}

uint64_t
timearg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}
