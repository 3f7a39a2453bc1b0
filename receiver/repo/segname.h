/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Segment file names, the one module that writes and parses them (pure: no I/O):
 *
 *   <first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap
 *
 * the first timestamp 20 digits, the epoch 16 hex digits, the interface index that of
 * the sensor's HELLO and the interface name made path-safe. Two interfaces of one sensor
 * may have the same name and the same first timestamp; the index keeps them apart.
 * Repositories written before the index was part of the name, and `pcapline import`
 * (which has no sensor interface index), hold the older form
 *
 *   <first-ts-ns>-<epoch-hex>-<seq>-<ifname>.pcap
 *
 * A '.' right after the sequence number tells the two forms apart without doubt,
 * whatever the interface is called.
 */
#ifndef PCAPLINE_REPO_SEGNAME_H
#define PCAPLINE_REPO_SEGNAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEGNAME_MAX_IFNAME 256

struct segname {
	uint64_t first_ns, epoch, seq;
	int ifindex; /* -1: the older form */
	char ifname[SEGNAME_MAX_IFNAME];
};

/* Writes the name (no directory) into buf: the older form when ifindex < 0. ifname must
 * be path-safe already. Returns its length, or -ENAMETOOLONG. */
int segname_format(char *buf, size_t n, uint64_t first_ns, uint64_t epoch, uint64_t seq, int ifindex,
	const char *ifname);
/* Parses a closed segment's name (either form). Returns true when it is one. */
bool segname_parse(const char *name, struct segname *out);

#endif
