/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * K-way merge with a binary min-heap of input indices keyed by (timestamp, input).
 * The record at the top of the heap is handed out and its input advanced only on the
 * next call, because pcapr_next() invalidates the data of the record before it.
 */
#include "receiver/repo/merge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct merge_src {
	struct pcapr *r;
	struct pcapf_rec cur; /* head record, valid while the input is in the heap */
	uint64_t last_ts;     /* previous in-window record, for merge_disorder() */
	bool seen;            /* last_ts is set */
};

struct merge {
	struct merge_input *in;
	struct merge_src *src;
	size_t n;
	size_t *order;    /* inputs by (min_ns, index): the order they are opened in */
	size_t next_open; /* position in order[] of the next input to open */
	size_t *heap;
	size_t heap_n;
	bool top_pending; /* heap[0] was handed out and must be advanced first */
	uint64_t from, to;
	int err;
	size_t failed;
	uint64_t bytes_done; /* of closed inputs */
	uint64_t disorder;
	size_t open_now, max_open;
};

static bool
less(const struct merge *m, size_t a, size_t b)
{
	uint64_t ta = m->src[a].cur.ts_ns, tb = m->src[b].cur.ts_ns;

	return ta < tb || (ta == tb && a < b);
}

static void
sift_down(struct merge *m, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;

		if (l < m->heap_n && less(m, m->heap[l], m->heap[min]))
			min = l;
		if (r < m->heap_n && less(m, m->heap[r], m->heap[min]))
			min = r;
		if (min == i)
			return;
		size_t t = m->heap[i];
		m->heap[i] = m->heap[min];
		m->heap[min] = t;
		i = min;
	}
}

static void
push(struct merge *m, size_t idx)
{
	size_t i = m->heap_n++;

	m->heap[i] = idx;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!less(m, m->heap[i], m->heap[p]))
			break;
		size_t t = m->heap[i];
		m->heap[i] = m->heap[p];
		m->heap[p] = t;
		i = p;
	}
}

static void
close_src(struct merge *m, size_t idx)
{
	struct merge_src *s = &m->src[idx];

	if (s->r == NULL)
		return;
	m->bytes_done += pcapr_offset(s->r);
	pcapr_close(s->r);
	s->r = NULL;
	m->open_now--;
}

/* Reads the input's next record inside the window. Returns 1, 0 at its end (the input
 * is then closed), or a negative code. */
static int
advance(struct merge *m, size_t idx)
{
	struct merge_src *s = &m->src[idx];
	int rc;

	while ((rc = pcapr_next(s->r, &s->cur)) == 1) {
		if (s->cur.ts_ns < m->from || s->cur.ts_ns >= m->to)
			continue;
		if (s->seen && s->cur.ts_ns < s->last_ts)
			m->disorder++;
		s->last_ts = s->cur.ts_ns;
		s->seen = true;
		return 1;
	}
	if (rc == 0)
		close_src(m, idx);
	return rc;
}

static int
fail(struct merge *m, size_t idx, int rc)
{
	m->err = rc;
	m->failed = idx;
	return rc;
}

static int
cmp_order(const void *a, const void *b, void *arg)
{
	const struct merge *m = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	uint64_t mx = m->in[x].min_ns, my = m->in[y].min_ns;

	if (mx != my)
		return mx < my ? -1 : 1;
	return x < y ? -1 : x > y;
}

struct merge *
merge_new(const struct merge_input *in, size_t n, uint64_t from_ns, uint64_t to_ns)
{
	struct merge *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->n = n;
	m->from = from_ns;
	m->to = to_ns;
	/* One extra element so that n == 0 never asks calloc for nothing. */
	m->in = calloc(n + 1, sizeof(*m->in));
	m->src = calloc(n + 1, sizeof(*m->src));
	m->order = calloc(n + 1, sizeof(*m->order));
	m->heap = calloc(n + 1, sizeof(*m->heap));
	if (m->in == NULL || m->src == NULL || m->order == NULL || m->heap == NULL) {
		merge_free(m);
		errno = ENOMEM;
		return NULL;
	}
	if (n > 0)
		memcpy(m->in, in, n * sizeof(*in));
	for (size_t i = 0; i < n; i++)
		m->order[i] = i;
	qsort_r(m->order, n, sizeof(*m->order), cmp_order, m);
	return m;
}

int
merge_next(struct merge *m, struct merge_rec *out)
{
	int rc;

	if (m->err != 0)
		return m->err;
	if (m->top_pending) {
		size_t idx = m->heap[0];

		m->top_pending = false;
		rc = advance(m, idx);
		if (rc < 0)
			return fail(m, idx, rc);
		if (rc == 0)
			m->heap[0] = m->heap[--m->heap_n];
		if (m->heap_n > 0)
			sift_down(m, 0);
	}
	/*
	 * Open every input that could hold a record at or before the current head: one whose
	 * min_ns is above the head cannot contribute anything earlier, so it may wait.
	 */
	while (m->next_open < m->n) {
		size_t idx = m->order[m->next_open];
		struct merge_src *s = &m->src[idx];

		if (m->heap_n > 0 && m->in[idx].min_ns > m->src[m->heap[0]].cur.ts_ns)
			break;
		m->next_open++;
		s->r = pcapr_open(m->in[idx].path, &rc);
		if (s->r == NULL)
			return fail(m, idx, rc != 0 ? rc : -EIO);
		if (++m->open_now > m->max_open)
			m->max_open = m->open_now;
		rc = advance(m, idx);
		if (rc < 0)
			return fail(m, idx, rc);
		if (rc == 1)
			push(m, idx);
	}
	if (m->heap_n == 0)
		return 0;
	out->input = m->heap[0];
	out->rec = m->src[out->input].cur;
	out->ifc = pcapr_iface(m->src[out->input].r, out->rec.iface);
	m->top_pending = true;
	return 1;
}

size_t
merge_failed(const struct merge *m)
{
	return m->failed;
}

uint64_t
merge_bytes_read(const struct merge *m)
{
	uint64_t b = m->bytes_done;

	for (size_t i = 0; i < m->heap_n; i++)
		b += pcapr_offset(m->src[m->heap[i]].r);
	return b;
}

uint64_t
merge_disorder(const struct merge *m)
{
	return m->disorder;
}

size_t
merge_max_open(const struct merge *m)
{
	return m->max_open;
}

void
merge_free(struct merge *m)
{
	if (m == NULL)
		return;
	if (m->src != NULL) {
		for (size_t i = 0; i < m->n; i++)
			if (m->src[i].r != NULL)
				pcapr_close(m->src[i].r);
	}
	free(m->heap);
	free(m->order);
	free(m->src);
	free(m->in);
	free(m);
}
