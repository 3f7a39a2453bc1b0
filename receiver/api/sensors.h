/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * GET /api/v1/sensors: the sensors the repository holds, connected or not, with the
 * interfaces and link types of their segments, from the files themselves (the names
 * sensors/<id>/segments/[.open-]<ts>-<epoch>-<seq>.<ifindex>-<ifname>.pcap, the link
 * type from each interface's first file header). For clients that must list sensors
 * before streaming one (the Wireshark extcap).
 *
 *   {"sensors":[{"id":"s1","interfaces":[{"index":0,"name":"eth0","linktype":1}]}]}
 *
 * Sorted by sensor id, then interface index.
 */
#ifndef PCAPLINE_RECEIVER_API_SENSORS_H
#define PCAPLINE_RECEIVER_API_SENSORS_H

#include <stddef.h>

#include <jansson.h>

/* The answer for repository dir, or NULL with err set. */
json_t *api_sensors_json(const char *dir, char *err, size_t errlen);

#endif
