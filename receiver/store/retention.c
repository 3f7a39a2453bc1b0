/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/store/retention.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "receiver/repo/names.h"
#include "receiver/repo/segname.h"

/* Candidates fetched from the index per query while a bound is exceeded. */
#define RETENTION_BATCH 32

struct rsensor {
	struct index_totals t;
	bool dirty; /* rows deleted: oldest_max_ns must be read again */
	bool trim;  /* rows deleted: its name history may hold lines no packet needs */
};

struct retention {
	struct index *ix;
	struct retention_opts o;
	struct rsensor *s; /* sorted by id */
	size_t n, cap;
	uint64_t total_bytes;
	struct index_seg cand[RETENTION_BATCH];
	struct log_limit warn_lim;
};

static int
retention_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct rsensor *)elem)->t.sensor);
}

/* Finds a sensor's totals, adding an empty entry when create is set. */
static struct rsensor *
retention_sensor(struct retention *r, const char *id, bool create)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = retention_cmp(id, &r->s[mid]);
		if (c == 0)
			return &r->s[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (!create)
		return NULL;
	if (r->n == r->cap) {
		size_t nc = r->cap ? 2 * r->cap : 16;
		struct rsensor *p = realloc(r->s, nc * sizeof(*p));
		if (!p)
			return NULL;
		r->s = p;
		r->cap = nc;
	}
	memmove(&r->s[lo + 1], &r->s[lo], (r->n - lo) * sizeof(*r->s));
	r->n++;
	struct rsensor *e = &r->s[lo];
	memset(e, 0, sizeof(*e));
	snprintf(e->t.sensor, sizeof(e->t.sensor), "%s", id);
	e->t.oldest_max_ns = INT64_MAX;
	return e;
}

static void
retention_on_totals(void *arg, const struct index_totals *t)
{
	struct retention *r = arg;
	struct rsensor *e = retention_sensor(r, t->sensor, true);
	if (!e)
		return;
	e->t = *t;
	r->total_bytes += t->bytes;
}

struct retention *
retention_new(struct index *ix, const struct retention_opts *o, char *err, size_t errlen)
{
	struct retention *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "retention: out of memory");
		return NULL;
	}
	r->ix = ix;
	r->o = *o;
	if (index_totals(ix, retention_on_totals, r) != 0) {
		snprintf(err, errlen, "retention: cannot read the totals of the index");
		retention_free(r);
		return NULL;
	}
	return r;
}

void
retention_free(struct retention *r)
{
	if (!r)
		return;
	free(r->s);
	free(r);
}

bool
retention_enabled(const struct retention *r)
{
	return r->o.max_bytes || r->o.max_age_ms || r->o.sensor_max_bytes || r->o.sensor_max_age_ms;
}

void
retention_added(struct retention *r, const struct index_seg *seg)
{
	struct rsensor *e = retention_sensor(r, seg->sensor, true);
	if (!e)
		return; /* out of memory: the sensor's bound waits for the next start */
	e->t.segments++;
	e->t.bytes += seg->bytes;
	if (seg->max_ns < e->t.oldest_max_ns)
		e->t.oldest_max_ns = seg->max_ns;
	r->total_bytes += seg->bytes;
}

void
retention_totals(const struct retention *r, const char *sensor, uint64_t *segments, uint64_t *bytes)
{
	const struct rsensor *e = retention_sensor((struct retention *)r, sensor, false);
	*segments = e ? e->t.segments : 0;
	*bytes = e ? e->t.bytes : 0;
}

uint64_t
retention_bytes(const struct retention *r, const char *sensor)
{
	if (!sensor)
		return r->total_bytes;
	const struct rsensor *e = retention_sensor((struct retention *)r, sensor, false);
	return e ? e->t.bytes : 0;
}

/* Reads a sensor's totals from the index again (after deletions). */
static void
retention_resync(struct retention *r, struct rsensor *e)
{
	struct index_totals t;
	if (index_sensor_totals(r->ix, e->t.sensor, &t) != 0)
		return;
	r->total_bytes = r->total_bytes - e->t.bytes + t.bytes;
	e->t = t;
	e->dirty = false;
}

/* Why a segment whose newest packet is max_ns must go under the bounds of scope (one
 * sensor, or NULL for all), or NULL when the bounds hold. */
static const char *
retention_why(const struct retention *r, const struct rsensor *scope, int64_t max_ns, int64_t now_ns)
{
	uint64_t bytes = scope ? scope->t.bytes : r->total_bytes;
	uint64_t max_bytes = scope ? r->o.sensor_max_bytes : r->o.max_bytes;
	uint64_t max_age_ms = scope ? r->o.sensor_max_age_ms : r->o.max_age_ms;
	if (max_bytes && bytes > max_bytes)
		return "size bound";
	if (max_age_ms && max_ns != INT64_MAX && max_ns < now_ns - (int64_t)(max_age_ms * 1000000))
		return "age bound";
	return NULL;
}

static int64_t
retention_oldest(const struct retention *r, const struct rsensor *scope)
{
	if (scope)
		return scope->t.oldest_max_ns;
	int64_t o = INT64_MAX;
	for (size_t i = 0; i < r->n; i++)
		if (r->s[i].t.oldest_max_ns < o)
			o = r->s[i].t.oldest_max_ns;
	return o;
}

/* Deletes oldest-first within scope until its bounds hold. Returns how many were
 * deleted; *failed is set when a deletion failed. */
static unsigned
retention_pass(
	struct retention *r, struct rsensor *scope, int64_t now_ns, retention_fn *fn, void *arg, bool *failed)
{
	unsigned deleted = 0;
	while (!*failed && retention_why(r, scope, retention_oldest(r, scope), now_ns)) {
		int n = index_oldest(r->ix, scope ? scope->t.sensor : NULL, r->cand, RETENTION_BATCH);
		unsigned before = deleted;
		for (int k = 0; k < n; k++) {
			const struct index_seg *g = &r->cand[k];
			const char *why = retention_why(r, scope, g->max_ns, now_ns);
			if (!why)
				break;
			struct rsensor *e = retention_sensor(r, g->sensor, false);
			int rc = index_retire(r->ix, g);
			if (rc != 0 && rc != -EINVAL) {
				if (log_limit_ok(&r->warn_lim, 3, 60))
					log_warnx("retention: %s: cannot delete %s: %s; retrying later",
						g->sensor, g->path,
						rc == -EIO ? "index update failed" : strerror(-rc));
				*failed = true;
				break;
			}
			if (e) {
				e->t.bytes -= e->t.bytes < g->bytes ? e->t.bytes : g->bytes;
				e->t.segments -= e->t.segments ? 1 : 0;
				e->dirty = true;
				e->trim = true;
			}
			r->total_bytes -= r->total_bytes < g->bytes ? r->total_bytes : g->bytes;
			if (rc == -EINVAL) {
				log_warnx("retention: %s: index row '%s' is not a segment path: row dropped, "
					  "no file touched",
					g->sensor, g->path);
				continue;
			}
			log_info("retention: %s: deleted %s (%" PRIu64 " packets, %" PRIu64 " bytes): %s",
				g->sensor, g->path, g->packets, g->bytes, why);
			deleted++;
			if (fn)
				fn(arg, g, why);
		}
		/* Read the touched sensors' totals (and so their oldest segment) again. */
		for (size_t i = 0; i < r->n; i++)
			if (r->s[i].dirty || n <= 0)
				retention_resync(r, &r->s[i]);
		if (n <= 0 || deleted == before)
			break; /* the index has nothing (more) to give: the totals were stale */
	}
	return deleted;
}

/* The name history of a sensor whose segments were deleted loses the lines older than
 * its oldest stored packet (the mapping in effect then stays): it is kept as long as
 * the packets it names, not for ever. */
/*
 * Lowers *oldest to the first packet of every segment file of the sensor, open ones and
 * those not indexed yet included, whose names start with it ("[.open-]<segment name>").
 * Returns false when a file's name cannot be read that way: then nothing is trimmed.
 */
static bool
retention_files_oldest(struct retention *r, const char *sensor, int64_t *oldest)
{
	char path[1024];
	struct dirent *de;
	DIR *d;
	bool ok = true;

	if ((size_t)snprintf(path, sizeof(path), "%s/sensors/%s/segments", index_dir(r->ix), sensor) >=
		sizeof(path))
		return false;
	if (!(d = opendir(path)))
		return false;
	while (ok && (de = readdir(d)) != NULL) {
		const char *p = de->d_name;
		struct segname sn;

		if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0 || strstr(p, ".pcap") == NULL)
			continue;
		if (strncmp(p, ".open-", 6) == 0)
			p += 6;
		/* The one parser of segment names (receiver/repo/segname.h). */
		if (!segname_parse(p, &sn) || sn.first_ns > INT64_MAX)
			ok = false;
		else if ((int64_t)sn.first_ns < *oldest)
			*oldest = (int64_t)sn.first_ns;
	}
	closedir(d);
	return ok;
}

static void
retention_trim_names(struct retention *r, struct rsensor *e)
{
	int64_t oldest;
	uint64_t dropped = 0;
	int rc;

	e->trim = false;
	/* The oldest packet of the index, and of the segments being written: a replay of
	 * an older capture may be under way. */
	if (index_sensor_min_ns(r->ix, e->t.sensor, &oldest) != 0 ||
		!retention_files_oldest(r, e->t.sensor, &oldest) || oldest == INT64_MAX || oldest <= 0)
		return;
	rc = names_trim(index_dir(r->ix), e->t.sensor, (uint64_t)oldest, &dropped);
	if (rc == 0 && dropped > 0)
		log_info("retention: %s: %" PRIu64 " name history lines older than the oldest stored packet "
			 "dropped",
			e->t.sensor, dropped);
	else if (rc != 0 && rc != -ENOENT && log_limit_ok(&r->warn_lim, 3, 60))
		log_warnx("retention: %s: cannot trim the name history: %s; retrying after the next deletion",
			e->t.sensor, strerror(-rc));
	if (rc != 0 && rc != -ENOENT)
		e->trim = true;
}

unsigned
retention_run(struct retention *r, int64_t now_ns, retention_fn *fn, void *arg)
{
	unsigned deleted = 0;
	bool failed = false;
	if (!retention_enabled(r))
		return 0;
	if (r->o.sensor_max_bytes || r->o.sensor_max_age_ms)
		for (size_t i = 0; i < r->n && !failed; i++)
			deleted += retention_pass(r, &r->s[i], now_ns, fn, arg, &failed);
	if ((r->o.max_bytes || r->o.max_age_ms) && !failed)
		deleted += retention_pass(r, NULL, now_ns, fn, arg, &failed);
	for (size_t i = 0; deleted > 0 && i < r->n; i++)
		if (r->s[i].trim)
			retention_trim_names(r, &r->s[i]);
	return deleted;
}
