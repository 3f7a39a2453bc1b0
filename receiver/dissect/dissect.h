/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The dissection path: stored segments -> L4 (receiver/l4) -> connections in index.db
 * and a position file per segment. It reads closed segments only, after the store has
 * indexed them, so it never slows raw storage down; it may lag, and everything it
 * writes can be rebuilt from the segments (dissect_reindex()).
 *
 * Each sensor interface is one L4 domain. Connection ids are numbered in the order
 * connections are first seen, unique in the repository (each process reserves blocks
 * of them in l4_seq, so the receiver and a pcapline reindex never hand out the same);
 * a re-dissected connection keeps its id (same sensor, interface, protocol, endpoints
 * and first packet time). A flow's id is a 63-bit hash of sensor, interface and the
 * address pair: the same whenever the same peers are seen. Numbered ids keep the
 * inserts at the end of the conns table, which a flood of short connections needs.
 *
 * After a segment is read, one transaction writes the rows of every connection it
 * touched or that ended (the L4 tables of receiver/repo/index.h), which segments hold each
 * connection, and l4_done; the position file sensors/<id>/l4/<name>.pos
 * (receiver/repo/posfile.h) is in place before it.
 *
 * Connections still open when a receiver stops are marked ended = 'receiver stopped'
 * at the next start; their packets after it form new connections (picked up
 * mid-stream).
 *
 * Invariant that reindex relies on: every packet counted in a connection's row lies in
 * a segment that conn_segs links to it. A write that fails therefore never lets the
 * tracker move past the segment (dissect_pending() holds it), connections that ended
 * mid-segment are written with links to it (dissect_repair() mends them after a crash),
 * and what breaks the invariant anyway (a segment given up, an older receiver's
 * failures) is found by dissect_reindex(), which then rebuilds the whole interface.
 */
#ifndef PCAPLINE_DISSECT_H
#define PCAPLINE_DISSECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/l4/l4.h"

struct dissect_stats {
	uint64_t segments; /* dissected */
	uint64_t packets;  /* records read */
	uint64_t in_conns; /* records that belong to a connection */
	uint64_t rows;     /* connection rows written */
	uint64_t failed;   /* failed attempts (logged): retried, or given up (l4_failed) */
	/* The worker's waits while the CPUs were saturated (dissect_worker_start()), and
	 * how often a wait reached its bound and the backlog was worked off anyway. */
	uint64_t deferred_ms;
	uint64_t forced;
};

struct dissect;

/* Opens <dir>/index.db (adding the L4 tables when missing). limits may be NULL.
 * NULL with err set on failure. */
struct dissect *dissect_open(const char *dir, const struct l4_limits *limits, char *err, size_t errlen);
/* Ends every connection still tracked (rows written with ended = 'end of input' or
 * the reason given to dissect_mark_open_ended()), then closes. Accepts NULL. */
void dissect_close(struct dissect *d, bool finish);

/* Marks rows still open from an earlier run as ended with why. Returns 0 or -1. */
int dissect_mark_open_ended(struct dissect *d, const char *why);
/*
 * Dissects up to max segments that are not yet, oldest first. A segment that fails for a
 * reason that may pass (a full disk: its position file or its rows cannot be written) is
 * held and tried again with backoff (0.5 s doubling to 15 s), and no later segment is
 * dissected before it, so that the rows end up as a dissection without the failure
 * would have written them; it is in l4_failed (`pcapline conns --stats`:
 * failed_segments) until it succeeds, and not marked done, so that a restart dissects it
 * too. One that cannot succeed (out of memory in the middle, too many interfaces) is
 * marked done without its rows and stays in l4_failed until a reindex rebuilds it, as
 * does a segment dissected after a later one of its interface (indexed late: its row
 * was added by the reconcile of a later start).
 * Returns how many were handled (failures included), 0 while a held segment waits for its
 * retry, or -1 when the index cannot be read.
 */
int dissect_pending(struct dissect *d, int max);
/*
 * Rebuilds the connections of the segments of [from_ns, to_ns) (of one sensor, or all
 * for NULL): the window widens to every segment of the connections found in it, their
 * rows are deleted, and those segments are dissected again in time order. A sensor
 * interface whose dissection failed or has gaps (l4_failed rows, segments done with
 * fewer packets than they hold or not done before a done one, connections linked to no
 * segment) is rebuilt whole, so that running it over any window, any number of times,
 * gives the rows of a clean dissection and never counts a packet twice. Returns the
 * number of segments dissected, or -1 (the segments left without rows are recorded in
 * l4_failed, and the next run rebuilds them).
 */
int dissect_reindex(struct dissect *d, const char *sensor, int64_t from_ns, int64_t to_ns);
/*
 * Mends what a process that died in the middle of a segment left (connections that
 * ended in it were written, with links to it, before the segment was done): their
 * segments are dissected again as dissect_reindex() does, and the tracker goes on from
 * there. The receiver runs it when it starts. Returns the segments dissected, or -1.
 */
int dissect_repair(struct dissect *d);
const struct dissect_stats *dissect_stats(const struct dissect *d);

/* Whether a segment may wait for dissection (a cheap look: the newest segment id
 * against the mark below which all were done; a held one counts). */
bool dissect_has_pending(struct dissect *d);

/* The "some" total (microseconds) of /proc/pressure/cpu text, -1 when absent. */
int64_t dissect_psi_some_total(const char *text);

/*
 * A thread that runs dissect_pending() on dir until dissect_worker_stop(), logging the
 * counters every log_s seconds when they changed.
 *
 * Dissection never takes CPU from storage: the thread runs at nice 19 and, while the
 * kernel's CPU pressure figures (PSI) say runnable tasks wait for a CPU more than a
 * tenth of the time, it lets segments wait, up to defer_max_ms in a row (0: never);
 * when a wait reaches that bound it works the backlog off before it waits again, so
 * that the lag stays bounded under a load that never ends.
 */
struct dissect_worker;
struct dissect_worker *dissect_worker_start(const char *dir, const struct l4_limits *limits, unsigned log_s,
	unsigned defer_max_ms, char *err, size_t errlen);
/* The dissection worker's counters for the metrics endpoint, as of the last second. */
struct dissect_metrics {
	uint64_t segments, packets, in_conns, rows, failed; /* struct dissect_stats */
	uint64_t deferred_ms, forced;                       /* likewise */
	bool backlog_known;                                 /* the backlog below was read */
	uint64_t backlog_segments, backlog_packets;         /* indexed, not dissected yet */
	int64_t oldest_closed_ns; /* closed_ns of the oldest of them (ns since epoch), 0 = none */
	bool holding;             /* a segment that failed waits for its retry */
};
/* Safe from any thread: a copy under a lock the worker holds only to publish. */
void dissect_worker_metrics(struct dissect_worker *w, struct dissect_metrics *out);
/* Stops and joins the thread, after dissecting what is pending for up to drain_ms (the
 * segments the store closed on its way out); open connections stay open in the index
 * (the next start marks them). Accepts NULL. */
void dissect_worker_stop(struct dissect_worker *w, unsigned drain_ms);

#endif
