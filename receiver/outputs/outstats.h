/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The live outputs' families for GET /metrics: the live hub's consumers (GET
 * /api/v1/live, PCAP-over-IP, the rotated files) and the rotated files' own counters.
 * Plugged into the metrics endpoint as its live hook (receiver/api/metrics.h).
 */
#ifndef PCAPLINE_RECEIVER_OUTPUTS_OUTSTATS_H
#define PCAPLINE_RECEIVER_OUTPUTS_OUTSTATS_H

#include "shared/promtext.h"

/* Appends the families to b; arg is unused. Reads only counters that are safe to read
 * from any thread (live_stats_get(), rotate_stats_current()); never blocks on I/O. */
void outstats_render(void *arg, struct promtext *b);

#endif
