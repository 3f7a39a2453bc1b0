/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/hostport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int
hostport_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
hostport_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int
hostport_parse(
	const char *s, unsigned flags, const char *setting, struct hostport *hp, char *err, size_t errlen)
{
	const char *host, *colon, *port;
	size_t host_len;
	unsigned long v = 0;
	unsigned lo = (flags & HOSTPORT_PORT0) ? 0 : 1;

	memset(hp, 0, sizeof(*hp));
	if (!setting)
		setting = "address";
	if (!s)
		return hostport_fail(err, errlen, "%s: no address given (host:port)", setting);
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return hostport_fail(err, errlen, "%s: '%s' is not host:port", setting, s);
		host = s + 1;
		host_len = (size_t)(rb - host);
		colon = rb + 1;
	} else {
		/* The last ':' splits, so that "::1:80" keeps meaning [::1]:80 as it always did. */
		colon = strrchr(s, ':');
		if (!colon)
			return hostport_fail(err, errlen, "%s: '%s' is not host:port", setting, s);
		host = s;
		host_len = (size_t)(colon - s);
	}
	port = colon + 1;
	if (*port == '\0')
		return hostport_fail(err, errlen, "%s: '%s' is not host:port", setting, s);
	if (host_len == 0 && !(flags & HOSTPORT_LISTEN))
		return hostport_fail(
			err, errlen, "%s: '%s' is not host:port (the host is empty)", setting, s);
	if (host_len > HOSTPORT_HOST_MAX)
		return hostport_fail(err, errlen, "%s: '%.64s...': the host is longer than %d bytes", setting,
			s, HOSTPORT_HOST_MAX);
	/* Digits only: strtoul() would take " 80", "+80" and "-1", and getaddrinfo() takes
	 * "99999" modulo 65536, so the number is checked here, digit by digit. */
	for (const char *p = port; *p; p++) {
		if (*p < '0' || *p > '9' || v > 65535) {
			v = ~0ul;
			break;
		}
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < lo || v > 65535)
		return hostport_fail(err, errlen, "%s: '%s': port '%s' is not a number in %u..65535", setting,
			s, port, lo);
	memcpy(hp->host, host, host_len);
	hp->host[host_len] = '\0';
	hp->port_num = (uint16_t)v;
	snprintf(hp->port, sizeof(hp->port), "%u", (unsigned)v);
	return 0;
}
