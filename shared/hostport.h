/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The one parser of "host:port" settings (uplink.receivers, listen, api.listen):
 * "host:port", "[v6]:port" (and, as before, an unbracketed "v6:port" split at its last
 * ':'), a decimal port in 1..65535. Errors are sentences that name the setting, for
 * the operator to read: "api.listen: 'x:99999': port '99999' is not a number in 1..65535".
 * Pure (no name resolution): the caller resolves host and port with getaddrinfo().
 */
#ifndef PCAPLINE_SHARED_HOSTPORT_H
#define PCAPLINE_SHARED_HOSTPORT_H

#include <stddef.h>
#include <stdint.h>

#define HOSTPORT_HOST_MAX 255

enum hostport_flags {
	HOSTPORT_LISTEN = 1 << 0, /* an empty host ("[]:p" or ":p") means every address */
	HOSTPORT_PORT0 = 1 << 1   /* port 0 allowed: the kernel picks a free port */
};

struct hostport {
	char host[HOSTPORT_HOST_MAX + 1]; /* without brackets; "" only with HOSTPORT_LISTEN */
	char port[6];                     /* decimal, without leading zeros */
	uint16_t port_num;
};

/*
 * Parses s into *hp. Returns 0, or -EINVAL with err set to a message that starts with
 * "<setting>: '<s>'" (err may be NULL).
 */
int hostport_parse(
	const char *s, unsigned flags, const char *setting, struct hostport *hp, char *err, size_t errlen);

#endif
