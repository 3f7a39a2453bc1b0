/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The store worker: one thread that does everything that touches the disk for the
 * ingest path (segment writes, fdatasync, the state file, index rows, retention, name
 * histories), so that the libev loop that serves every sensor never waits on storage.
 *
 * Jobs run one at a time in the order they were submitted (so everything about one
 * sensor stays in order: begin, its batches, end), and come back to the loop in that
 * same order: the loop is woken (ev_async) and calls each job's done() there. A job is
 * owned by its submitter; run() sees it on the worker thread only, done() on the loop
 * thread only, and nothing else touches it in between.
 */
#ifndef PCAPLINE_RECEIVER_STORE_WORKER_H
#define PCAPLINE_RECEIVER_STORE_WORKER_H

#include <ev.h>

struct worker_job {
	struct worker_job *next;
	void (*run)(struct worker_job *j);  /* on the worker thread */
	void (*done)(struct worker_job *j); /* back on the loop thread; may free the job */
};

struct worker;

/* Starts the thread. NULL on failure (out of memory, no thread). */
struct worker *worker_new(struct ev_loop *loop);
/* Queues a job. Never blocks on storage (only on the queue's own short lock). */
void worker_submit(struct worker *w, struct worker_job *j);
/* Waits until every submitted job has run and calls their done() here, again until no
 * done() submitted more. For shutdown only: this waits on storage. */
void worker_drain(struct worker *w);
/* Drains, stops the thread and frees. Accepts NULL. */
void worker_free(struct worker *w);

#endif
