/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/store/worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

struct worker {
	struct ev_loop *loop;
	ev_async wake; /* the worker's "done" signal to the loop */
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;                        /* new work, or stop */
	pthread_cond_t idle_cv;                   /* the queue ran empty */
	struct worker_job *head, *tail;           /* to run */
	struct worker_job *done_head, *done_tail; /* run, for the loop */
	bool running;                             /* a job is being run */
	bool stop;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->head)
			break;
		struct worker_job *j = w->head;
		w->head = j->next;
		if (!w->head)
			w->tail = NULL;
		w->running = true;
		pthread_mutex_unlock(&w->mu);
		j->run(j);
		pthread_mutex_lock(&w->mu);
		w->running = false;
		j->next = NULL;
		if (w->done_tail)
			w->done_tail->next = j;
		else
			w->done_head = j;
		w->done_tail = j;
		if (!w->head)
			pthread_cond_broadcast(&w->idle_cv);
		/* Thread-safe, and coalesced: one wake-up may hand back many jobs. */
		ev_async_send(w->loop, &w->wake);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Hands back every job that has run, in order. */
static void
worker_dispatch(struct worker *w)
{
	pthread_mutex_lock(&w->mu);
	struct worker_job *j = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->mu);
	while (j) {
		struct worker_job *next = j->next;
		j->done(j);
		j = next;
	}
}

static void
worker_on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
	worker_dispatch(a->data);
}

struct worker *
worker_new(struct ev_loop *loop)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->loop = loop;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	pthread_cond_init(&w->idle_cv, NULL);
	ev_async_init(&w->wake, worker_on_wake);
	w->wake.data = w;
	ev_async_start(loop, &w->wake);
	/* Signals are the loop's (ev_signal): the worker never takes one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&w->th, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		ev_async_stop(loop, &w->wake);
		free(w);
		return NULL;
	}
	return w;
}

void
worker_submit(struct worker *w, struct worker_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&w->mu);
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void
worker_drain(struct worker *w)
{
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->head || w->running)
			pthread_cond_wait(&w->idle_cv, &w->mu);
		bool more = w->done_head != NULL;
		pthread_mutex_unlock(&w->mu);
		if (!more)
			return;
		worker_dispatch(w);
	}
}

void
worker_free(struct worker *w)
{
	if (!w)
		return;
	worker_drain(w);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	ev_async_stop(w->loop, &w->wake);
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->idle_cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
