/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * GET /metrics: the receiver's counters in the Prometheus text exposition format 0.0.4
 * (families with HELP and TYPE lines, counters named *_total, label values escaped).
 *
 * Two halves. metrics_collect() gathers a snapshot from the daemon's parts, each of
 * which publishes a copy of its counters under a lock it holds only to copy (the store
 * worker: store_pub_read(); the dissection worker: dissect_worker_metrics()) or keeps
 * them in atomics (the sessions' loop: server_metrics_get()), so a scrape never waits
 * on storage and storage never waits on a scrape. metrics_render() turns a snapshot
 * into text and touches nothing else: the unit tests render snapshots made by hand.
 *
 * It lives with the API because it is one of its endpoints; it reads the ingest side,
 * which knows nothing of it.
 */
#ifndef PCAPLINE_API_METRICS_H
#define PCAPLINE_API_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/dissect/dissect.h"
#include "receiver/ingest/session.h"
#include "receiver/store/store.h"
#include "shared/promtext.h"

/* The parts metrics_collect() reads; any may be NULL (that part is left out). */
struct metrics_src {
	struct store *store;
	struct server *srv;
	struct dissect_worker *dissect;
	/*
	 * Live-output consumers (pcapline live, PCAP-over-IP, rotated files): called on the
	 * API thread at the end of every scrape to append their own families with
	 * promtext_family() and promtext_sample(). It must only read, from counters that are
	 * safe to read from another thread, and must not block. NULL: no live outputs.
	 * Names to use: pcapline_live_consumers (gauge), and per consumer
	 * pcapline_live_sent_packets_total and pcapline_live_dropped_packets_total with
	 * labels consumer and reason.
	 */
	void (*live)(void *arg, struct promtext *b);
	void *live_arg;
};

/* One scrape's values. */
struct metrics_snap {
	int64_t now_ns; /* wall clock of the scrape (dissection lag) */
	bool ready;
	bool have_store, have_server, have_dissect;
	struct store_pub *sensors; /* n_sensors, in the order they were first seen */
	size_t n_sensors;
	struct store_pub_all all;
	struct server_metrics srv;
	struct dissect_metrics dis;
};

/* Fills m from src (ready as given). Returns 0 or -ENOMEM. metrics_snap_fini() frees. */
int metrics_collect(const struct metrics_src *src, bool ready, struct metrics_snap *m);
void metrics_snap_fini(struct metrics_snap *m);

/* The whole exposition of m, then src->live's families (src may be NULL), into b.
 * Returns 0 or -ENOMEM (b->oom). */
int metrics_render(const struct metrics_snap *m, const struct metrics_src *src, struct promtext *b);

#endif
