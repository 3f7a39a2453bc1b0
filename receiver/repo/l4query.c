/* SPDX-License-Identifier: BSD-2-Clause */
/* Connections, flows and per-connection captures: see l4query.h. */
#include "receiver/repo/l4query.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "receiver/dissect/dissect.h"
#include "receiver/repo/index.h"
#include "receiver/repo/posfile.h"
#include "shared/pcapfile.h"

static sqlite3 *
open_ro(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	sqlite3 *db = NULL;

	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	if (index_schema_check(db, path, err, errlen) == -EPROTONOSUPPORT) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* Calls fn with every row of st as an object keyed by column name (borrowed). Returns
 * 0, fn's non-zero code, or -1 with err set. */
static int
rows_each(sqlite3 *db, sqlite3_stmt *st, bool rates, int (*fn)(void *arg, json_t *row), void *arg, char *err,
	size_t errlen)
{
	int rc, ret = 0;

	while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();

		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const char *name = sqlite3_column_name(st, i);

			switch (sqlite3_column_type(st, i)) {
			case SQLITE_INTEGER:
				json_object_set_new(o, name, json_integer(sqlite3_column_int64(st, i)));
				break;
			case SQLITE_FLOAT:
				json_object_set_new(o, name, json_real(sqlite3_column_double(st, i)));
				break;
			case SQLITE_TEXT:
				json_object_set_new(
					o, name, json_string((const char *)sqlite3_column_text(st, i)));
				break;
			default:
				json_object_set_new(o, name, json_null());
			}
		}
		if (rates) {
			double secs = (double)(json_integer_value(json_object_get(o, "last_ns")) -
					      json_integer_value(json_object_get(o, "first_ns"))) /
				1e9;
			double pk = (double)json_integer_value(json_object_get(o, "packets"));
			double by = (double)json_integer_value(json_object_get(o, "bytes"));

			/* Over the flow's life; a flow of one instant counts as one second. */
			if (secs <= 0)
				secs = 1;
			json_object_set_new(o, "pps", json_real(pk / secs));
			json_object_set_new(o, "bps", json_real(by * 8 / secs));
		}
		ret = fn(arg, o);
		json_decref(o);
	}
	if (ret == 0 && rc != SQLITE_DONE) {
		snprintf(err, errlen, "index: %s", sqlite3_errmsg(db));
		return -1;
	}
	return ret;
}

static const char conns_sql[] =
	"SELECT * FROM conns WHERE (?1 IS NULL OR sensor = ?1) AND (?2 = 0 OR last_ns >= ?2) "
	"AND (?3 = 0 OR first_ns < ?3) AND (?4 = 0 OR flow_id = ?4) AND (?5 = 0 OR conn_id = ?5) "
	"ORDER BY first_ns DESC, conn_id LIMIT ?6";
static const char flows_sql[] =
	"SELECT * FROM flows WHERE (?1 IS NULL OR sensor = ?1) AND (?2 = 0 OR last_ns >= ?2) "
	"AND (?3 = 0 OR first_ns < ?3) AND (?4 = 0 OR flow_id = ?4) AND ?5 = ?5 "
	"ORDER BY first_ns DESC, flow_id LIMIT ?6";

int
l4q_each(const char *dir, bool flows, const struct l4q *q, int (*fn)(void *arg, json_t *row), void *arg,
	char *err, size_t errlen)
{
	sqlite3 *db = open_ro(dir, err, errlen);
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (db == NULL)
		return -1;
	if (sqlite3_prepare_v2(db, flows ? flows_sql : conns_sql, -1, &st, NULL) != SQLITE_OK) {
		/* No L4 tables: a repository no receiver with l4 enabled has dissected. */
		snprintf(err, errlen, "index: %s (has the repository been dissected? see pcapline reindex)",
			sqlite3_errmsg(db));
		goto out;
	}
	if (q->sensor != NULL)
		sqlite3_bind_text(st, 1, q->sensor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)q->from_ns);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)q->to_ns);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)q->flow_id);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)q->conn_id);
	sqlite3_bind_int64(st, 6, q->limit ? q->limit : 1000);
	rc = rows_each(db, st, flows, fn, arg, err, errlen);
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static int
append(void *arg, json_t *row)
{
	return json_array_append(arg, row) == 0 ? 0 : -1;
}

static json_t *
collect(const char *dir, bool flows, const struct l4q *q, char *err, size_t errlen)
{
	json_t *arr = json_array();

	if (arr != NULL && l4q_each(dir, flows, q, append, arr, err, errlen) != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

json_t *
l4q_conns(const char *dir, const struct l4q *q, char *err, size_t errlen)
{
	return collect(dir, false, q, err, errlen);
}

json_t *
l4q_flows(const char *dir, const struct l4q *q, char *err, size_t errlen)
{
	return collect(dir, true, q, err, errlen);
}

json_t *
l4q_stats(const char *dir, char *err, size_t errlen)
{
	sqlite3 *db = open_ro(dir, err, errlen);
	sqlite3_stmt *st = NULL;
	json_t *o = NULL;
	int rc;

	if (db == NULL)
		return NULL;
	/* failed_segments: those in l4_failed now, retried or waiting for a reindex, so that
	 * a failure stays visible until it is mended (a repository no receiver of this
	 * version has opened yet has no l4_failed: none is known). */
	if (sqlite3_prepare_v2(db,
		    "SELECT key, value FROM l4_stats WHERE key <> 'failed_segments' UNION ALL SELECT "
		    "'pending_segments', count(*) FROM segments s WHERE NOT EXISTS (SELECT 1 FROM l4_done d "
		    "WHERE d.seg_id = s.id) UNION ALL SELECT 'failed_segments', count(*) FROM l4_failed",
		    -1, &st, NULL) != SQLITE_OK &&
		sqlite3_prepare_v2(db,
			"SELECT key, value FROM l4_stats WHERE key <> 'failed_segments' UNION ALL SELECT "
			"'pending_segments', count(*) FROM segments s WHERE NOT EXISTS (SELECT 1 FROM "
			"l4_done d "
			"WHERE d.seg_id = s.id) UNION ALL SELECT 'failed_segments', 0",
			-1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "index: %s (has the repository been dissected? see pcapline reindex)",
			sqlite3_errmsg(db));
		goto out;
	}
	o = json_object();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		json_object_set_new(o, (const char *)sqlite3_column_text(st, 0),
			json_integer(sqlite3_column_int64(st, 1)));
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "index: %s", sqlite3_errmsg(db));
		json_decref(o);
		o = NULL;
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return o;
}

struct xseg {
	char path[INDEX_MAX_PATH];
	uint32_t linktype, snaplen;
};

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
l4q_pcap(const char *dir, bool flow, uint64_t id, pcapw_sink sink, void *arg, uint64_t *packets, char *err,
	size_t errlen)
{
	sqlite3 *db = open_ro(dir, err, errlen);
	sqlite3_stmt *st = NULL;
	uint64_t *ids = NULL;
	struct xseg *segs = NULL;
	size_t nids = 0, nsegs = 0, cap = 0;
	struct pcapw *out = NULL;
	bool ng = false;
	uint32_t snaplen = 0;
	int rc = -EIO;

	*packets = 0;
	if (db == NULL)
		return -EIO;
	/* The connections. */
	if (sqlite3_prepare_v2(db,
		    flow ? "SELECT conn_id FROM conns WHERE flow_id = ?1 ORDER BY conn_id"
			 : "SELECT conn_id FROM conns WHERE conn_id = ?1",
		    -1, &st, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (nids == cap) {
			size_t nc = cap ? cap * 2 : 16;
			uint64_t *v = realloc(ids, nc * sizeof(*v));

			if (v == NULL)
				goto nomem;
			ids = v;
			cap = nc;
		}
		ids[nids++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (nids == 0) {
		snprintf(err, errlen, "no %s %llu in the index", flow ? "flow" : "connection",
			(unsigned long long)id);
		rc = -ENOENT;
		goto out;
	}
	qsort(ids, nids, sizeof(*ids), cmp_u64);
	/* Their segments, in time order (one sensor interface: they follow each other). */
	if (sqlite3_prepare_v2(db,
		    flow ? "SELECT DISTINCT s.path, s.linktype, s.snaplen, s.min_ns, s.id FROM conns c JOIN "
			   "conn_segs cs ON cs.conn_id = c.conn_id JOIN segments s ON s.id = cs.seg_id "
			   "WHERE c.flow_id = ?1 ORDER BY s.min_ns, s.id"
			 : "SELECT s.path, s.linktype, s.snaplen, s.min_ns, s.id FROM conn_segs cs JOIN "
			   "segments s "
			   "ON s.id = cs.seg_id WHERE cs.conn_id = ?1 ORDER BY s.min_ns, s.id",
		    -1, &st, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	cap = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (nsegs == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct xseg *v = realloc(segs, nc * sizeof(*v));

			if (v == NULL)
				goto nomem;
			segs = v;
			cap = nc;
		}
		snprintf(
			segs[nsegs].path, sizeof(segs->path), "%s", (const char *)sqlite3_column_text(st, 0));
		segs[nsegs].linktype = (uint32_t)sqlite3_column_int64(st, 1);
		segs[nsegs].snaplen = (uint32_t)sqlite3_column_int64(st, 2);
		if (segs[nsegs].snaplen > snaplen)
			snaplen = segs[nsegs].snaplen;
		if (segs[nsegs].linktype != segs[0].linktype)
			ng = true;
		nsegs++;
	}
	sqlite3_finalize(st);
	st = NULL;
	sqlite3_close(db);
	db = NULL;
	if ((out = pcapw_new_sink(sink, arg)) == NULL)
		goto nomem;
	if (ng)
		rc = pcapw_ng_section(out, "pcapline");
	else
		rc = pcapw_pcap_header(out, nsegs ? segs[0].linktype : 1, snaplen ? snaplen : 262144);
	if (rc != 0)
		goto out;
	for (size_t i = 0; i < nsegs; i++) {
		char full[4096 + INDEX_MAX_PATH];
		struct posfile pf;
		struct pcapf_rec rec;
		struct pcapr *r;
		uint64_t n = 0;
		int e;

		if (posfile_open(dir, segs[i].path, &pf, err, errlen) != 0) {
			rc = -EIO;
			goto out;
		}
		snprintf(full, sizeof(full), "%s/%s", dir, segs[i].path);
		if ((r = pcapr_open(full, &e)) == NULL) {
			snprintf(err, errlen, "%s: %s (deleted by retention meanwhile?)", segs[i].path,
				pcapf_strerror(e));
			posfile_close(&pf);
			rc = -EIO;
			goto out;
		}
		if (ng && (rc = pcapw_ng_iface(out, segs[i].linktype, segs[i].snaplen, segs[i].path)) != 0) {
			pcapr_close(r);
			posfile_close(&pf);
			goto out;
		}
		rc = 0;
		while (rc == 0 && (e = pcapr_next(r, &rec)) == 1) {
			uint64_t cid;

			if (n >= pf.records || pf.header_count != pf.records) {
				snprintf(err, errlen,
					"%s: the position file does not match the segment (re-index)",
					segs[i].path);
				rc = -EIO;
				break;
			}
			cid = posfile_get(&pf, n++);
			if (cid == 0 || bsearch(&cid, ids, nids, sizeof(*ids), cmp_u64) == NULL)
				continue;
			rc = pcapw_write_if(
				out, ng ? (uint32_t)i : 0, rec.ts_ns, rec.data, rec.caplen, rec.origlen);
			(*packets)++;
		}
		pcapr_close(r);
		posfile_close(&pf);
		if (rc != 0)
			goto out;
	}
	rc = pcapw_flush(out);
	goto out;
dberr:
	snprintf(err, errlen, "index: %s (has the repository been dissected? see pcapline reindex)",
		sqlite3_errmsg(db));
	rc = -EIO;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	rc = -ENOMEM;
out:
	pcapw_discard(out);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(ids);
	free(segs);
	return rc;
}
