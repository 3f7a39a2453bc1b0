/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/repo.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "shared/fsutil.h"
#include "receiver/repo/index.h"
#include "receiver/repo/segname.h"
#include "shared/log.h"
#include "shared/pcapfile.h"

struct repo {
	char *dir;
	enum repo_source source;
	sqlite3 *db;
	sqlite3_stmt *q_sensors, *q_segments, *q_has;
	bool loaded;             /* scan: done */
	struct repo_seglist all; /* scan and list sources */
};

const char *
repo_dir(const struct repo *r)
{
	return r->dir;
}

enum repo_source
repo_source(const struct repo *r)
{
	return r->source;
}

static char *
xstrdup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static void
seg_free(struct repo_seg *s)
{
	free(s->sensor);
	free(s->rel);
	free(s->path);
	free(s->iface);
}

int
repo_seglist_add(struct repo_seglist *l, const struct repo_seg *s)
{
	struct repo_seg c = *s;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct repo_seg *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	c.sensor = xstrdup(s->sensor);
	c.rel = xstrdup(s->rel);
	c.path = xstrdup(s->path);
	c.iface = xstrdup(s->iface);
	if (c.sensor == NULL || c.rel == NULL || c.path == NULL || c.iface == NULL) {
		seg_free(&c);
		return -ENOMEM;
	}
	l->v[l->n++] = c;
	return 0;
}

void
repo_seglist_free(struct repo_seglist *l)
{
	for (size_t i = 0; i < l->n; i++)
		seg_free(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void
repo_strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

bool
repo_parse_segment_name(const char *name, uint64_t *first_ns, char ifname[256])
{
	struct segname sn;

	/* One parser for the receiver's names, both forms (segname.h). */
	if (!segname_parse(name, &sn))
		return false;
	snprintf(ifname, 256, "%s", sn.ifname);
	*first_ns = sn.first_ns;
	return true;
}

static int
cmp_seg(const void *a, const void *b)
{
	const struct repo_seg *x = a, *y = b;
	int c = strcmp(x->sensor, y->sensor);

	if (c != 0)
		return c;
	if (x->min_ns != y->min_ns)
		return x->min_ns < y->min_ns ? -1 : 1;
	return strcmp(x->rel, y->rel);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads one segment to learn its interface and time range. */
static int
scan_file(struct repo *r, const char *sensor, const char *name)
{
	struct repo_seg s = { 0 };
	struct pcapf_rec rec;
	struct pcapr *rd;
	struct stat st;
	char rel[4096], path[4096], ifname[256];
	uint64_t first;
	int rc;

	snprintf(rel, sizeof(rel), "sensors/%s/segments/%s", sensor, name);
	fsu_path(path, sizeof(path), "%s/%s", r->dir, rel);
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	if (!repo_parse_segment_name(name, &first, ifname))
		snprintf(ifname, sizeof(ifname), "if0");
	rd = pcapr_open(path, &rc);
	if (rd == NULL) {
		log_warnx("scan: %s: %s; skipped", path, pcapf_strerror(rc));
		return 0;
	}
	if (pcapr_iface_count(rd) != 1) {
		log_warnx(
			"scan: %s: %zu interfaces, a segment has one; skipped", path, pcapr_iface_count(rd));
		pcapr_close(rd);
		return 0;
	}
	s.linktype = pcapr_iface(rd, 0)->linktype;
	s.snaplen = pcapr_iface(rd, 0)->snaplen;
	s.min_ns = UINT64_MAX;
	while ((rc = pcapr_next(rd, &rec)) == 1) {
		s.packets++;
		if (rec.ts_ns < s.min_ns)
			s.min_ns = rec.ts_ns;
		if (rec.ts_ns > s.max_ns)
			s.max_ns = rec.ts_ns;
	}
	pcapr_close(rd);
	if (rc < 0) {
		log_warnx("scan: %s: %s after %llu records; skipped", path, pcapf_strerror(rc),
			(unsigned long long)s.packets);
		return 0;
	}
	if (s.packets == 0)
		return 0;
	s.sensor = (char *)sensor;
	s.rel = rel;
	s.path = path;
	s.iface = ifname;
	s.bytes = (uint64_t)st.st_size;
	return repo_seglist_add(&r->all, &s);
}

static int
scan_all(struct repo *r, char *err, size_t errlen)
{
	char path[4096];
	DIR *sd;
	struct dirent *de;
	size_t files = 0;
	int rc = 0;

	if (r->loaded)
		return 0;
	r->loaded = true;
	fsu_path(path, sizeof(path), "%s/sensors", r->dir);
	sd = opendir(path);
	if (sd == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && (de = readdir(sd)) != NULL) {
		DIR *gd;
		struct dirent *ge;
		char gpath[4096];

		if (de->d_name[0] == '.')
			continue;
		fsu_path(gpath, sizeof(gpath), "%s/%s/segments", path, de->d_name);
		if ((gd = opendir(gpath)) == NULL)
			continue;
		while (rc == 0 && (ge = readdir(gd)) != NULL) {
			size_t n = strlen(ge->d_name);
			if (ge->d_name[0] == '.' || n < 6 || strcmp(ge->d_name + n - 5, ".pcap") != 0)
				continue;
			rc = scan_file(r, de->d_name, ge->d_name);
			files++;
		}
		closedir(gd);
	}
	closedir(sd);
	if (rc != 0) {
		snprintf(err, errlen, "scan: %s", strerror(-rc));
		return -1;
	}
	if (r->all.n > 1)
		qsort(r->all.v, r->all.n, sizeof(*r->all.v), cmp_seg);
	log_debug("scan: %zu segment files, %zu usable", files, r->all.n);
	return 0;
}

static int
open_index(struct repo *r, const char *path, char *err, size_t errlen)
{
	static const char *const q_sensors =
		"SELECT DISTINCT sensor FROM segments WHERE min_ns < ?1 AND max_ns >= ?2 ORDER BY sensor";
	static const char *const q_segments =
		"SELECT path, iface, linktype, snaplen, min_ns, max_ns, packets, bytes FROM segments "
		"WHERE sensor = ?1 AND min_ns < ?2 AND max_ns >= ?3 ORDER BY min_ns, path";
	static const char *const q_has = "SELECT 1 FROM segments WHERE sensor = ?1 LIMIT 1";
	int rc = -1;

	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		log_warnx("%s: %s; scanning the segment folders instead", path,
			r->db ? sqlite3_errmsg(r->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(r->db, 5000);
	/* A newer schema is refused (index.h); an older one holds what is read here. */
	rc = index_schema_check(r->db, path, err, errlen);
	if (rc == -EPROTONOSUPPORT)
		goto fail;
	if (sqlite3_prepare_v2(r->db, q_sensors, -1, &r->q_sensors, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(r->db, q_segments, -1, &r->q_segments, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(r->db, q_has, -1, &r->q_has, NULL) != SQLITE_OK) {
		log_warnx("%s: %s; scanning the segment folders instead", path, sqlite3_errmsg(r->db));
		goto fail;
	}
	r->source = REPO_INDEX;
	return 0;
fail:
	if (rc != -EPROTONOSUPPORT)
		rc = -1;
	sqlite3_finalize(r->q_sensors);
	sqlite3_finalize(r->q_segments);
	sqlite3_finalize(r->q_has);
	r->q_sensors = r->q_segments = r->q_has = NULL;
	sqlite3_close(r->db);
	r->db = NULL;
	return rc;
}

struct repo *
repo_open(const char *dir, char *err, size_t errlen)
{
	struct repo *r;
	struct stat st;
	char path[4096];

	/* errno means something only when stat failed: a file is reported as such. */
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", dir);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->dir = strdup(dir)) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->source = REPO_SCAN;
	fsu_path(path, sizeof(path), "%s/index.db", dir);
	if (stat(path, &st) == 0) {
		if (open_index(r, path, err, errlen) == -EPROTONOSUPPORT) {
			repo_free(r);
			return NULL;
		}
	} else
		log_warnx("%s: no index.db; scanning the segment folders (every segment is read once)", dir);
	return r;
}

struct repo *
repo_open_list(const char *dir, struct repo_seglist *segs)
{
	struct repo *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->dir = strdup(dir)) == NULL) {
		free(r);
		errno = ENOMEM;
		return NULL;
	}
	r->source = REPO_LIST;
	r->loaded = true;
	r->all = *segs;
	memset(segs, 0, sizeof(*segs));
	if (r->all.n > 1)
		qsort(r->all.v, r->all.n, sizeof(*r->all.v), cmp_seg);
	return r;
}

static int
strv_add(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (nv == NULL)
		return -ENOMEM;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

int
repo_sensors(struct repo *r, uint64_t from, uint64_t to, char ***out, size_t *n, char *err, size_t errlen)
{
	char **v = NULL;
	size_t k = 0;
	int rc;

	if (r->source == REPO_INDEX) {
		sqlite3_stmt *q = r->q_sensors;
		sqlite3_reset(q);
		sqlite3_bind_int64(q, 1, (sqlite3_int64)to);
		sqlite3_bind_int64(q, 2, (sqlite3_int64)from);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			const char *s = (const char *)sqlite3_column_text(q, 0);
			if (s != NULL && strv_add(&v, &k, s) != 0) {
				rc = SQLITE_NOMEM;
				break;
			}
		}
		sqlite3_reset(q);
		if (rc != SQLITE_DONE) {
			snprintf(err, errlen, "index: %s", sqlite3_errstr(rc));
			repo_strv_free(v, k);
			return -1;
		}
	} else {
		if (scan_all(r, err, errlen) != 0)
			return -1;
		for (size_t i = 0; i < r->all.n; i++) {
			const struct repo_seg *s = &r->all.v[i];
			if (s->min_ns >= to || s->max_ns < from)
				continue;
			if (k > 0 && strcmp(v[k - 1], s->sensor) == 0)
				continue;
			if (strv_add(&v, &k, s->sensor) != 0) {
				snprintf(err, errlen, "out of memory");
				repo_strv_free(v, k);
				return -1;
			}
		}
		if (k > 1)
			qsort(v, k, sizeof(*v), cmp_str);
	}
	*out = v;
	*n = k;
	return 0;
}

bool
repo_has_sensor(struct repo *r, const char *sensor)
{
	char path[4096];
	struct stat st;

	if (r->source != REPO_LIST) {
		fsu_path(path, sizeof(path), "%s/sensors/%s", r->dir, sensor);
		if (fsu_name_ok(sensor) && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return true;
	}
	if (r->source == REPO_INDEX) {
		bool found;
		sqlite3_reset(r->q_has);
		sqlite3_bind_text(r->q_has, 1, sensor, -1, SQLITE_TRANSIENT);
		found = sqlite3_step(r->q_has) == SQLITE_ROW;
		sqlite3_reset(r->q_has);
		return found;
	}
	for (size_t i = 0; i < r->all.n; i++)
		if (strcmp(r->all.v[i].sensor, sensor) == 0)
			return true;
	return false;
}

static int
add_checked(struct repo *r, struct repo_seglist *out, struct repo_seg *s, char *err, size_t errlen)
{
	char path[4096];

	if (!fsu_relpath_ok(s->rel)) {
		snprintf(err, errlen, "index: segment path '%s' leaves the repository", s->rel);
		return -1;
	}
	fsu_path(path, sizeof(path), "%s/%s", r->dir, s->rel);
	s->path = path;
	if (repo_seglist_add(out, s) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
repo_segments(struct repo *r, const char *sensor, uint64_t from, uint64_t to, struct repo_seglist *out,
	char *err, size_t errlen)
{
	if (r->source == REPO_INDEX) {
		sqlite3_stmt *q = r->q_segments;
		int rc;

		sqlite3_reset(q);
		sqlite3_bind_text(q, 1, sensor, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 2, (sqlite3_int64)to);
		sqlite3_bind_int64(q, 3, (sqlite3_int64)from);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			struct repo_seg s = {
				.sensor = (char *)sensor,
				.rel = (char *)sqlite3_column_text(q, 0),
				.iface = (char *)sqlite3_column_text(q, 1),
				.linktype = (uint32_t)sqlite3_column_int64(q, 2),
				.snaplen = (uint32_t)sqlite3_column_int64(q, 3),
				.min_ns = (uint64_t)sqlite3_column_int64(q, 4),
				.max_ns = (uint64_t)sqlite3_column_int64(q, 5),
				.packets = (uint64_t)sqlite3_column_int64(q, 6),
				.bytes = (uint64_t)sqlite3_column_int64(q, 7),
			};
			if (s.rel == NULL || add_checked(r, out, &s, err, errlen) != 0) {
				if (s.rel == NULL)
					snprintf(err, errlen, "index: segment row without a path");
				sqlite3_reset(q);
				return -1;
			}
		}
		sqlite3_reset(q);
		if (rc != SQLITE_DONE) {
			snprintf(err, errlen, "index: %s", sqlite3_errstr(rc));
			return -1;
		}
		return 0;
	}
	if (scan_all(r, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < r->all.n; i++) {
		struct repo_seg s = r->all.v[i];
		if (strcmp(s.sensor, sensor) != 0 || s.min_ns >= to || s.max_ns < from)
			continue;
		if (add_checked(r, out, &s, err, errlen) != 0)
			return -1;
	}
	return 0;
}

char *
repo_names_path(const struct repo *r, const char *sensor)
{
	char *p;

	if (asprintf(&p, "%s/sensors/%s/names.jsonl", r->dir, sensor) < 0)
		return NULL;
	return p;
}

void
repo_free(struct repo *r)
{
	if (r == NULL)
		return;
	sqlite3_finalize(r->q_sensors);
	sqlite3_finalize(r->q_segments);
	sqlite3_finalize(r->q_has);
	sqlite3_close(r->db);
	repo_seglist_free(&r->all);
	free(r->dir);
	free(r);
}
