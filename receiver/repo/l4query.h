/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Connections and flows of a repository (the L4 tables of index.db, filled by the
 * receiver's dissection path, see receiver/dissect/dissect.h), as JSON, and the exact
 * packets of one connection or one flow as a capture, read from the segments through
 * their position files. Shared by the pcapline CLI and the receiver's HTTP API.
 */
#ifndef PCAPLINE_CLI_L4QUERY_H
#define PCAPLINE_CLI_L4QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "shared/pcapfile.h"

struct l4q {
	const char *sensor;      /* NULL: every sensor */
	uint64_t from_ns, to_ns; /* connections active in [from, to); 0, 0: any time */
	uint64_t flow_id;        /* 0: any flow */
	uint64_t conn_id;        /* 0: any connection */
	unsigned limit;          /* rows at most, 0: 1000 */
};

/*
 * An array of connection objects (every conns column, ids as numbers; newest first),
 * or NULL with err set (no index, no L4 tables yet, SQLite failed).
 */
json_t *l4q_conns(const char *dir, const struct l4q *q, char *err, size_t errlen);
/* An array of flow objects (flows view, with pps and bps over the flow's life). */
json_t *l4q_flows(const char *dir, const struct l4q *q, char *err, size_t errlen);
/* The same rows one at a time (borrowed by fn, which returns 0 to go on): for lists too
 * long to hold. Returns 0, fn's non-zero code, or -1 with err set. */
int l4q_each(const char *dir, bool flows, const struct l4q *q, int (*fn)(void *arg, json_t *row), void *arg,
	char *err, size_t errlen);

/* An object with the dissection's counters (l4_stats) and pending_segments, the
 * segments not dissected yet; NULL with err set. */
json_t *l4q_stats(const char *dir, char *err, size_t errlen);

/*
 * Writes the packets of connection id (flow false) or of every connection of flow id
 * through sink, in capture order: classic pcap with nanosecond timestamps, or pcapng
 * when the segments differ in link type. Returns 0 with *packets set; -ENOENT for an
 * unknown id; another negative code with err set (a segment or position file missing
 * or damaged: re-index the window; the sink's code).
 */
int l4q_pcap(const char *dir, bool flow, uint64_t id, pcapw_sink sink, void *arg, uint64_t *packets,
	char *err, size_t errlen);

#endif
