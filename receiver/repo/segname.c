/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/segname.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int
segname_format(
	char *buf, size_t n, uint64_t first_ns, uint64_t epoch, uint64_t seq, int ifindex, const char *ifname)
{
	int m = ifindex < 0 ? snprintf(buf, n, "%020" PRIu64 "-%016" PRIx64 "-%" PRIu64 "-%s.pcap", first_ns,
				      epoch, seq, ifname)
			    : snprintf(buf, n, "%020" PRIu64 "-%016" PRIx64 "-%" PRIu64 ".%d-%s.pcap",
				      first_ns, epoch, seq, ifindex, ifname);
	return m < 0 || (size_t)m >= n ? -ENAMETOOLONG : m;
}

/* Reads decimal (or hex) digits into *v; returns the end, or NULL when there are none
 * or the value does not fit in 64 bits. */
static const char *
segname_num(const char *p, bool hex, uint64_t *v)
{
	const char *start = p;
	*v = 0;
	for (;; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (hex && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else
			break;
		if (*v > (UINT64_MAX - d) / (hex ? 16 : 10))
			return NULL;
		*v = *v * (hex ? 16 : 10) + d;
	}
	return p == start ? NULL : p;
}

bool
segname_parse(const char *name, struct segname *out)
{
	size_t n = strlen(name);
	uint64_t idx = 0;
	const char *p = name;

	if (n < 6 || name[0] == '.' || strcmp(name + n - 5, ".pcap") != 0)
		return false;
	if (!(p = segname_num(p, false, &out->first_ns)) || *p++ != '-' ||
		!(p = segname_num(p, true, &out->epoch)) || *p++ != '-' ||
		!(p = segname_num(p, false, &out->seq)))
		return false;
	out->ifindex = -1;
	if (*p == '.') {
		if (!(p = segname_num(p + 1, false, &idx)) || idx > INT32_MAX)
			return false;
		out->ifindex = (int)idx;
	}
	if (*p++ != '-')
		return false;
	size_t iflen = (size_t)(name + n - 5 - p);
	if (p > name + n - 5 || iflen == 0 || iflen >= sizeof(out->ifname))
		return false;
	memcpy(out->ifname, p, iflen);
	out->ifname[iflen] = '\0';
	return true;
}
