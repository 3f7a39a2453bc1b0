/* SPDX-License-Identifier: BSD-2-Clause */
/* The dissection path: see dissect.h. */
#include "receiver/dissect/dissect.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "shared/hash.h"
#include "receiver/repo/index.h"
#include "receiver/repo/posfile.h"
#include "shared/log.h"
#include "shared/pcapfile.h"

enum {
	Q_PENDING,
	Q_MAX_ID,
	Q_SEG_EXISTS,
	Q_CONN,
	Q_CONN_SEG,
	Q_DONE,
	Q_STAT,
	Q_RESERVE,
	Q_FAILED,
	Q_UNFAIL,
	Q_SEG_CLEAN,
	Q_LATER,
	Q_BACKLOG,
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_COUNT
};

static const char *const dissect_sql[Q_COUNT] = {
	/* Segments above ?2 only: those below were all done at the last look (see
	 * dissect_pending()), so a poll does not walk a large index. */
	[Q_PENDING] = "SELECT s.id, s.sensor, s.iface, s.path, s.packets, s.min_ns FROM segments s WHERE "
		      "s.id > ?2 AND NOT EXISTS "
		      "(SELECT 1 FROM l4_done d WHERE d.seg_id = s.id) ORDER BY s.min_ns, s.id LIMIT ?1",
	[Q_MAX_ID] = "SELECT coalesce(max(id), 0) FROM segments",
	[Q_SEG_EXISTS] = "SELECT 1 FROM segments WHERE id = ?1",
	[Q_CONN] = "INSERT OR REPLACE INTO conns(conn_id, flow_id, sensor, iface, proto, client, "
		   "client_port, server, "
		   "server_port, state, ended, first_ns, last_ns, c_pkts, c_bytes, s_pkts, s_bytes, "
		   "c_payload, s_payload, "
		   "rtt_ns, retrans, out_of_order, zero_windows, resets, gap_bytes, bad_overlaps, midstream) "
		   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
		   "?19, ?20, ?21, "
		   "?22, ?23, ?24, ?25, ?26, ?27)",
	[Q_CONN_SEG] = "INSERT INTO conn_segs(conn_id, seg_id, packets) VALUES(?1, ?2, ?3) ON "
		       "CONFLICT(conn_id, seg_id) "
		       "DO UPDATE SET packets = excluded.packets",
	/* Only for a segment that still exists: a deleted one's id may be given again. */
	[Q_DONE] = "INSERT OR REPLACE INTO l4_done(seg_id, done_ns, packets, in_conns) SELECT ?1, ?2, ?3, ?4 "
		   "WHERE EXISTS (SELECT 1 FROM segments WHERE id = ?1)",
	[Q_STAT] = "INSERT OR REPLACE INTO l4_stats(key, value) VALUES(?1, ?2)",
	[Q_RESERVE] = "UPDATE l4_seq SET next = next + ?1 WHERE id = 0 RETURNING next - ?1",
	/* Best effort: on a full disk this fails too, and the segment is still retried. */
	[Q_FAILED] =
		"INSERT INTO l4_failed(seg_id, attempts, last_ns, error, permanent) SELECT ?1, 1, ?2, ?3, ?4 "
		"WHERE EXISTS (SELECT 1 FROM segments WHERE id = ?1) ON CONFLICT(seg_id) DO UPDATE SET "
		"attempts = attempts + 1, last_ns = ?2, error = ?3, permanent = ?4",
	[Q_UNFAIL] = "DELETE FROM l4_failed WHERE seg_id = ?1",
	/* Links written for connections that ended before the segment was complete (see
	 * flush_ended()), without a packet of it. */
	[Q_SEG_CLEAN] = "DELETE FROM conn_segs WHERE seg_id = ?1 AND packets = 0",
	/* The newest dissected segment of an interface (see seg_is_late()). */
	[Q_LATER] = "SELECT max(s.min_ns) FROM segments s WHERE s.sensor = ?1 AND s.iface = ?2 AND EXISTS "
		    "(SELECT 1 FROM l4_done d WHERE d.seg_id = s.id)",
	/* The backlog for the metrics endpoint: like Q_PENDING, from the same mark. */
	[Q_BACKLOG] =
		"SELECT count(*), coalesce(sum(s.packets), 0), coalesce(min(s.closed_ns), 0) FROM "
		"segments s WHERE s.id > ?1 AND NOT EXISTS (SELECT 1 FROM l4_done d WHERE d.seg_id = s.id)",
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
};

/* A sensor interface: one L4 domain. */
struct dom {
	char sensor[INDEX_MAX_SENSOR + 1];
	char iface[INDEX_MAX_IFACE];
	bool newest_known;
	int64_t newest; /* min_ns of its newest dissected segment (see seg_is_late()) */
};

/* A connection that ended, kept until the segment's transaction writes it. */
struct ended {
	struct l4_conn_info info;
	enum l4_end why;
};

/* Connection key (hash of sensor, interface, tuple, first packet time) -> the id it had
 * before a reindex; open addressing, k 0: empty. */
struct idmap {
	uint64_t *k, *v;
	size_t cap, n;
};

/* A segment to dissect, as the segments table has it. */
struct seg_ref {
	int64_t id;
	char sensor[INDEX_MAX_SENSOR + 1];
	char iface[INDEX_MAX_IFACE];
	char path[INDEX_MAX_PATH];
	uint64_t packets;
	int64_t min_ns;
};

/* Retries of a segment whose dissection failed for a reason that may pass (full disk,
 * I/O error, locked database): after 0.5 s, doubling up to 15 s. */
#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS   15000

/* Connections that ended are written in chunks of this many (see flush_ended()). */
#define ENDED_CHUNK 4096

/* Ids reserved at a time from l4_seq. */
#define ID_BLOCK 65536

struct dissect {
	char dir[INDEX_MAX_PATH];
	uint64_t id_next, id_end; /* the reserved block [next, end) */
	int64_t done_below;       /* every segment id <= this was dissected at the last look */
	time_t full_look;         /* when the next look from id 0 is due */
	struct idmap old;
	sqlite3 *db;
	sqlite3_stmt *st[Q_COUNT];
	struct l4 *l4;
	struct dom *doms;
	size_t ndoms;
	struct ended *ended;
	size_t nended, capended;
	bool oom;
	const char *finish_why;
	size_t max_conns;
	/* The segment being read: position of every record, then its distinct ids. */
	uint64_t *pos;
	size_t npos, cappos;
	int64_t cur_seg;     /* the segment being read */
	uint64_t seg_min_ns; /* its smallest timestamp so far */
	size_t flush_at;     /* ended connections written when this many are waiting */
	/* A segment whose dissection failed for a reason that may pass. fed: its records
	 * are in the tracker and only its writes are retried (d->pos and d->ended hold what
	 * they write); else it is read again. Later segments wait for it, so that every
	 * connection sees its packets once and in order, as a dissection without the
	 * failure would. */
	bool holding, held_fed, held_late;
	struct seg_ref held;
	uint64_t held_in_conns;
	unsigned attempts;
	struct timespec retry_at; /* CLOCK_MONOTONIC */
	char why[1024];           /* what the last failure was */
	struct dissect_stats stats;
	struct log_limit warn_lim;
};

static void
db_warn(struct dissect *d, const char *what)
{
	snprintf(d->why, sizeof(d->why), "%s: %s", what, sqlite3_errmsg(d->db));
	if (log_limit_ok(&d->warn_lim, 5, 10))
		log_warnx("dissect: %s: %s", what, sqlite3_errmsg(d->db));
}

static int
step_done(struct dissect *d, int q, const char *what)
{
	int rc;

	while ((rc = sqlite3_step(d->st[q])) == SQLITE_ROW)
		;
	sqlite3_reset(d->st[q]);
	sqlite3_clear_bindings(d->st[q]);
	if (rc != SQLITE_DONE) {
		db_warn(d, what);
		return -1;
	}
	return 0;
}

static void
rollback(struct dissect *d)
{
	if (!sqlite3_get_autocommit(d->db))
		step_done(d, Q_ROLLBACK, "ROLLBACK");
}

/* Ids from shared/hash.h, cut to 63 bits so that SQLite and JSON readers see a positive
 * integer, and never 0. */
static uint64_t
id63(uint64_t h)
{
	h = hash_end(h) & INT64_MAX;
	return h ? h : 1;
}

static uint64_t
hash_dom(const struct dom *m)
{
	uint64_t h = hash_add(HASH_INIT, m->sensor, strlen(m->sensor) + 1);

	return hash_add(h, m->iface, strlen(m->iface) + 1);
}

static uint64_t
conn_hash(const struct dom *m, const struct l4_conn_info *c)
{
	uint64_t h = hash_add(hash_dom(m), &c->proto, 1);
	size_t al = c->family == 4 ? 4 : 16;
	uint8_t t[8];

	for (int s = 0; s < 2; s++) {
		uint8_t port[2] = { (uint8_t)(c->ep[s].port >> 8), (uint8_t)c->ep[s].port };

		h = hash_add(h, &c->family, 1);
		h = hash_add(h, c->ep[s].addr, al);
		h = hash_add(h, port, 2);
	}
	for (int i = 0; i < 8; i++)
		t[i] = (uint8_t)(c->first_ns >> (8 * i));
	return id63(hash_add(h, t, 8));
}

static uint64_t
flow_hash(const struct dom *m, const struct l4_conn_info *c)
{
	size_t al = c->family == 4 ? 4 : 16;
	int lo = memcmp(c->ep[0].addr, c->ep[1].addr, al) > 0;
	uint64_t h = hash_add(hash_dom(m), &c->family, 1);

	h = hash_add(h, c->ep[lo].addr, al);
	return id63(hash_add(h, c->ep[!lo].addr, al));
}

static uint64_t *
idmap_slot(const struct idmap *m, uint64_t k)
{
	size_t i = (size_t)k & (m->cap - 1);

	while (m->k[i] != 0 && m->k[i] != k)
		i = (i + 1) & (m->cap - 1);
	return &m->k[i];
}

static int
idmap_put(struct idmap *m, uint64_t k, uint64_t v)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct idmap n = { NULL, NULL, m->cap ? m->cap * 2 : 4096, 0 };

		n.k = calloc(n.cap, sizeof(uint64_t));
		n.v = calloc(n.cap, sizeof(uint64_t));
		if (n.k == NULL || n.v == NULL) {
			free(n.k);
			free(n.v);
			return -1;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->k[i] != 0) {
				uint64_t *s = idmap_slot(&n, m->k[i]);

				*s = m->k[i];
				n.v[s - n.k] = m->v[i];
				n.n++;
			}
		free(m->k);
		free(m->v);
		*m = n;
	}
	uint64_t *s = idmap_slot(m, k);
	if (*s == 0)
		m->n++;
	*s = k;
	m->v[s - m->k] = v;
	return 0;
}

static void
idmap_clear(struct idmap *m)
{
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* Makes sure that at least need ids are reserved. Before a segment is read, with its
 * record count: a write that fails (a full disk) then fails before the tracker has seen
 * any of its records, and the segment can simply be read again. Returns 0 or -1 (logged). */
static int
reserve_ids(struct dissect *d, uint64_t need)
{
	sqlite3_stmt *s = d->st[Q_RESERVE];
	uint64_t n = need > ID_BLOCK ? need : ID_BLOCK;

	if (d->id_end - d->id_next >= need)
		return 0;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)n);
	if (sqlite3_step(s) != SQLITE_ROW) {
		db_warn(d, "reserving connection ids");
		sqlite3_reset(s);
		return -1;
	}
	d->id_next = (uint64_t)sqlite3_column_int64(s, 0);
	d->id_end = d->id_next + n;
	while (sqlite3_step(s) == SQLITE_ROW)
		;
	sqlite3_reset(s);
	return 0;
}

/* The id of a connection seen for the first time: the one it had before a reindex, or
 * the next of the reserved block. 0 when l4_seq cannot be updated (logged). */
static uint64_t
assign_id(struct dissect *d, const struct dom *m, const struct l4_conn_info *c)
{
	if (d->old.n > 0) {
		uint64_t *k = idmap_slot(&d->old, conn_hash(m, c));

		if (*k != 0)
			return d->old.v[k - d->old.k];
	}
	if (reserve_ids(d, 1) != 0)
		return 0;
	return d->id_next++;
}

static void
on_end(void *arg, const struct l4_conn_info *c, enum l4_end why)
{
	struct dissect *d = arg;

	if (c->user == 0)
		return;
	if (d->nended == d->capended) {
		size_t cap = d->capended ? d->capended * 2 : 256;
		struct ended *v = realloc(d->ended, cap * sizeof(*v));

		if (v == NULL) {
			d->oom = true;
			return;
		}
		d->ended = v;
		d->capended = cap;
	}
	d->ended[d->nended].info = *c;
	d->ended[d->nended].why = why;
	d->nended++;
}

struct dissect *
dissect_open(const char *dir, const struct l4_limits *limits, char *err, size_t errlen)
{
	struct dissect *d = calloc(1, sizeof(*d));
	struct l4_callbacks cb = { .on_end = on_end };
	char path[INDEX_MAX_PATH + 16], *msg = NULL;
	int rc;

	if (d == NULL) {
		snprintf(err, errlen, "dissect: out of memory");
		return NULL;
	}
	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/index.db", dir);
	cb.arg = d;
	d->finish_why = "end of input";
	d->flush_at = ENDED_CHUNK;
	d->max_conns = limits && limits->max_conns ? limits->max_conns : L4_DEFAULT_MAX_CONNS;
	if ((d->l4 = l4_new(limits, &cb)) == NULL) {
		snprintf(err, errlen, "dissect: out of memory");
		free(d);
		return NULL;
	}
	rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(d->db, 5000);
		rc = sqlite3_exec(d->db,
			"PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768;",
			NULL, NULL, &msg);
	}
	/* The L4 tables are part of the index schema (receiver/repo/index.c owns it). */
	if (rc == SQLITE_OK && index_schema_apply(d->db, path, err, errlen) != 0) {
		dissect_close(d, false);
		return NULL;
	}
	for (int i = 0; rc == SQLITE_OK && i < Q_COUNT; i++)
		rc = sqlite3_prepare_v3(
			d->db, dissect_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &d->st[i], NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			msg             ? msg
				: d->db ? sqlite3_errmsg(d->db)
					: sqlite3_errstr(rc));
		sqlite3_free(msg);
		dissect_close(d, false);
		return NULL;
	}
	return d;
}

static int
dom_get(struct dissect *d, const char *sensor, const char *iface, uint32_t *out)
{
	for (size_t i = 0; i < d->ndoms; i++)
		if (strcmp(d->doms[i].sensor, sensor) == 0 && strcmp(d->doms[i].iface, iface) == 0) {
			*out = (uint32_t)i;
			return 0;
		}
	if (d->ndoms >= L4_MAX_DOMAINS)
		return -1;
	struct dom *v = realloc(d->doms, (d->ndoms + 1) * sizeof(*v));
	if (v == NULL)
		return -1;
	d->doms = v;
	snprintf(v[d->ndoms].sensor, sizeof(v->sensor), "%s", sensor);
	snprintf(v[d->ndoms].iface, sizeof(v->iface), "%s", iface);
	v[d->ndoms].newest_known = false;
	*out = (uint32_t)d->ndoms++;
	return 0;
}

static int
bind_conn(struct dissect *d, const struct l4_conn_info *c, const char *ended)
{
	sqlite3_stmt *s = d->st[Q_CONN];
	const struct dom *m = &d->doms[c->domain];
	const struct l4_side *cs = &c->side[L4_CLIENT], *ss = &c->side[L4_SERVER];
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	int af = c->family == 4 ? AF_INET : AF_INET6;

	inet_ntop(af, c->ep[L4_CLIENT].addr, a, sizeof(a));
	inet_ntop(af, c->ep[L4_SERVER].addr, b, sizeof(b));
	sqlite3_bind_int64(s, 1, (sqlite3_int64)c->user);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)flow_hash(m, c));
	sqlite3_bind_text(s, 3, m->sensor, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, m->iface, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, c->proto == 6 ? "tcp" : "udp", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 7, c->ep[L4_CLIENT].port);
	sqlite3_bind_text(s, 8, b, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 9, c->ep[L4_SERVER].port);
	sqlite3_bind_text(s, 10, c->proto == 6 ? l4_state_name(c->state) : "UDP", -1, SQLITE_STATIC);
	if (ended != NULL)
		sqlite3_bind_text(s, 11, ended, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 11);
	sqlite3_bind_int64(s, 12, (sqlite3_int64)c->first_ns);
	sqlite3_bind_int64(s, 13, (sqlite3_int64)c->last_ns);
	sqlite3_bind_int64(s, 14, (sqlite3_int64)cs->pkts);
	sqlite3_bind_int64(s, 15, (sqlite3_int64)cs->bytes);
	sqlite3_bind_int64(s, 16, (sqlite3_int64)ss->pkts);
	sqlite3_bind_int64(s, 17, (sqlite3_int64)ss->bytes);
	sqlite3_bind_int64(s, 18, (sqlite3_int64)cs->delivered);
	sqlite3_bind_int64(s, 19, (sqlite3_int64)ss->delivered);
	sqlite3_bind_int64(s, 20, (sqlite3_int64)c->rtt_ns);
	sqlite3_bind_int64(s, 21, (sqlite3_int64)(cs->retrans + ss->retrans));
	sqlite3_bind_int64(s, 22, (sqlite3_int64)(cs->out_of_order + ss->out_of_order));
	sqlite3_bind_int64(s, 23, (sqlite3_int64)(cs->zero_windows + ss->zero_windows));
	sqlite3_bind_int64(s, 24, (sqlite3_int64)(cs->resets + ss->resets));
	sqlite3_bind_int64(s, 25, (sqlite3_int64)(cs->gap_bytes + ss->gap_bytes));
	sqlite3_bind_int64(s, 26, (sqlite3_int64)(cs->bad_overlaps + ss->bad_overlaps));
	sqlite3_bind_int(s, 27, c->midstream);
	if (step_done(d, Q_CONN, "connection row") != 0)
		return -1;
	d->stats.rows++;
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The distinct ids of the segment (sorted) with their packet counts. */
struct touched {
	uint64_t *id, *n;
	size_t len;
	int rc;
	struct dissect *d;
};

static void
write_live(void *arg, const struct l4_conn_info *c)
{
	struct touched *t = arg;

	if (t->rc == 0 && c->user != 0 && bsearch(&c->user, t->id, t->len, sizeof(uint64_t), cmp_u64) != NULL)
		t->rc = bind_conn(t->d, c, NULL);
}

/* Binds the connections waiting in d->ended. They are forgotten (nended = 0) only once
 * the transaction that writes them has committed. */
static int
write_ended(struct dissect *d)
{
	for (size_t i = 0; i < d->nended; i++) {
		enum l4_end why = d->ended[i].why;

		if (bind_conn(d, &d->ended[i].info,
			    why == L4_END_FINISH ? d->finish_why : l4_end_name(why)) != 0)
			return -1;
	}
	return 0;
}

/*
 * Writes the connections that ended so far in the segment being read, so that a flood
 * of short ones does not pile up in memory until the segment's end. Each that may have
 * packets in that segment (its last one is not older than the segment's oldest so far)
 * is linked to it by a conn_segs row without packets (the segment's own transaction
 * writes the counts and drops the links of those that had none): should the process
 * die before it, the links still name the connections whose rows count packets of the
 * unfinished segment.
 * A failure (a full disk) is not fatal: they are kept and written with the segment.
 */
static void
flush_ended(struct dissect *d)
{
	if (step_done(d, Q_BEGIN, "BEGIN") != 0 || write_ended(d) != 0)
		goto fail;
	for (size_t i = 0; i < d->nended; i++) {
		if (d->ended[i].info.last_ns < d->seg_min_ns)
			continue;
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 1, (sqlite3_int64)d->ended[i].info.user);
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 2, d->cur_seg);
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 3, 0);
		if (step_done(d, Q_CONN_SEG, "conn_segs row") != 0)
			goto fail;
	}
	if (step_done(d, Q_COMMIT, "COMMIT") != 0)
		goto fail;
	d->nended = 0;
	d->flush_at = ENDED_CHUNK;
	return;
fail:
	rollback(d);
	d->flush_at = d->nended + ENDED_CHUNK;
}

/* Writes <dir>/<pos> from d->pos, through a hidden file renamed into place. Returns 0
 * or -1 (d->why says why). */
static int
pos_push(struct dissect *d, uint64_t id)
{
	if (d->npos == d->cappos) {
		size_t cap = d->cappos ? d->cappos * 2 : 4096;
		uint64_t *v = realloc(d->pos, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		d->pos = v;
		d->cappos = cap;
	}
	d->pos[d->npos++] = id;
	return 0;
}

/* The counters, in the transaction of each segment: what `pcapline conns --stats`
 * shows while the receiver runs (with failed_segments, counted from l4_failed). */
static int
write_stats(struct dissect *d)
{
	const struct l4_stats *l = l4_stats(d->l4);
	const struct {
		const char *key;
		uint64_t v;
	} kv[] = {
		{ "segments", d->stats.segments + 1 }, /* this one included */
		{ "packets", d->stats.packets + d->npos },
		{ "failed_attempts", d->stats.failed },
		{ "rows_written", d->stats.rows },
		{ "frames_not_decoded", l->decode_errs },
		{ "ip_fragments", l->frag_pkts },
		{ "ip_datagrams_reassembled", l->frag_reassembled },
		{ "ip_fragments_dropped", l->frag_dropped },
		{ "ip_fragment_bad_overlaps", l->frag_bad_overlaps },
		{ "connections", l->conns },
		{ "connections_tracked", l->live },
		{ "ended_idle", l->ended_idle },
		{ "evicted", l->evicted },
		{ "port_reuse", l->reused },
		{ "buffer_limit_gaps", l->buf_flushes },
		{ "gap_bytes", l->gap_bytes },
		{ "buffered_bytes", l->buffered },
		{ "max_conns", d->max_conns },
	};

	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		sqlite3_bind_text(d->st[Q_STAT], 1, kv[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(d->st[Q_STAT], 2, (sqlite3_int64)kv[i].v);
		if (step_done(d, Q_STAT, "l4_stats row") != 0)
			return -1;
	}
	return 0;
}

/* Commits what one segment produced. 1: done, 0: the segment is gone meanwhile, -1. */
static int
commit_segment(
	struct dissect *d, int64_t seg_id, uint64_t *ids, size_t n_ids, uint64_t *counts, uint64_t in_conns)
{
	struct touched t = { ids, counts, n_ids, 0, d };
	struct timespec now;
	int rc;

	if (step_done(d, Q_BEGIN, "BEGIN") != 0)
		return -1;
	sqlite3_bind_int64(d->st[Q_SEG_EXISTS], 1, seg_id);
	rc = sqlite3_step(d->st[Q_SEG_EXISTS]);
	sqlite3_reset(d->st[Q_SEG_EXISTS]);
	if (rc == SQLITE_DONE) {
		rollback(d);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		db_warn(d, "segment row");
		goto fail;
	}
	l4_each(d->l4, write_live, &t);
	if (t.rc != 0 || write_ended(d) != 0)
		goto fail;
	sqlite3_bind_int64(d->st[Q_SEG_CLEAN], 1, seg_id);
	if (step_done(d, Q_SEG_CLEAN, "conn_segs links") != 0)
		goto fail;
	for (size_t i = 0; i < n_ids; i++) {
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 1, (sqlite3_int64)ids[i]);
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 2, seg_id);
		sqlite3_bind_int64(d->st[Q_CONN_SEG], 3, (sqlite3_int64)counts[i]);
		if (step_done(d, Q_CONN_SEG, "conn_segs row") != 0)
			goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	sqlite3_bind_int64(d->st[Q_DONE], 1, seg_id);
	sqlite3_bind_int64(d->st[Q_DONE], 2, (sqlite3_int64)now.tv_sec * 1000000000 + now.tv_nsec);
	sqlite3_bind_int64(d->st[Q_DONE], 3, (sqlite3_int64)d->npos);
	sqlite3_bind_int64(d->st[Q_DONE], 4, (sqlite3_int64)in_conns);
	if (step_done(d, Q_DONE, "l4_done row") != 0)
		goto fail;
	sqlite3_bind_int64(d->st[Q_UNFAIL], 1, seg_id);
	if (step_done(d, Q_UNFAIL, "l4_failed row") != 0 || write_stats(d) != 0 ||
		step_done(d, Q_COMMIT, "COMMIT") != 0)
		goto fail;
	d->nended = 0;
	return 1;
fail:
	rollback(d);
	return -1;
}

/*
 * Reads segment g into the tracker; d->pos gets the connection of each record. Returns
 * 0; 1 when it could not be read and the tracker has not seen any of it (d->why: read
 * again later); 2 when the file is gone (retention took it); -1 when the tracker has
 * seen part of it or it can never be read (d->why).
 */
static int
seg_read(struct dissect *d, const struct seg_ref *g, uint64_t *in_conns)
{
	char full[2 * INDEX_MAX_PATH + 32], pos_rel[INDEX_MAX_PATH + 16];
	struct pcapf_rec rec;
	struct pcapr *r;
	uint32_t dom;
	int err, rc;

	d->npos = 0;
	d->oom = false;
	d->cur_seg = g->id;
	d->seg_min_ns = UINT64_MAX;
	*in_conns = 0;
	if (posfile_path(g->path, pos_rel, sizeof(pos_rel)) != 0 ||
		dom_get(d, g->sensor, g->iface, &dom) != 0) {
		snprintf(d->why, sizeof(d->why), "not a segment path, or too many interfaces");
		return -1;
	}
	snprintf(full, sizeof(full), "%s/%s", d->dir, g->path);
	if ((r = pcapr_open(full, &err)) == NULL) {
		if (err == -ENOENT)
			return 2;
		snprintf(d->why, sizeof(d->why), "%s", pcapf_strerror(err));
		return 1;
	}
	/* Ids for every record at most: no write between the first record and the end. */
	if (reserve_ids(d, g->packets + 1) != 0) {
		pcapr_close(r);
		return 1;
	}
	while ((rc = pcapr_next(r, &rec)) == 1) {
		struct l4_conn_info *c;
		uint64_t id = 0;

		if (rec.ts_ns < d->seg_min_ns)
			d->seg_min_ns = rec.ts_ns;
		if (l4_frame(d->l4, dom, rec.ts_ns, pcapr_iface(r, rec.iface)->linktype, rec.data, rec.caplen,
			    rec.origlen) == -ENOMEM)
			goto oom;
		if ((c = l4_frame_conn(d->l4)) != NULL) {
			if (c->user == 0 && (c->user = assign_id(d, &d->doms[dom], c)) == 0) {
				pcapr_close(r);
				return -1;
			}
			id = c->user;
			(*in_conns)++;
		}
		if (pos_push(d, id) != 0)
			goto oom;
		if (d->nended >= d->flush_at)
			flush_ended(d);
	}
	if (rc < 0)
		log_warnx("dissect: %s: %s (records before it were dissected)", g->path, pcapf_strerror(rc));
	pcapr_close(r);
	return 0;
oom:
	snprintf(d->why, sizeof(d->why), "out of memory");
	pcapr_close(r);
	return -1;
}

/* Writes what reading segment g produced: its position file, then one transaction.
 * Returns 0 (done, or the segment is gone meanwhile) or -1 (d->why; can be retried). */
static int
seg_commit(struct dissect *d, const struct seg_ref *g, uint64_t in_conns)
{
	char pos_rel[INDEX_MAX_PATH + 16];
	uint64_t *ids = NULL, *counts = NULL;
	size_t n_ids = 0;
	int rc, ret = -1;

	if (posfile_path(g->path, pos_rel, sizeof(pos_rel)) != 0)
		return -1;
	/* The distinct connections of this segment and their packet counts. */
	if ((ids = malloc((d->npos + 1) * sizeof(*ids))) == NULL ||
		(counts = malloc((d->npos + 1) * sizeof(*counts))) == NULL) {
		snprintf(d->why, sizeof(d->why), "out of memory");
		goto done;
	}
	if (d->npos > 0)
		memcpy(ids, d->pos, d->npos * sizeof(*ids));
	qsort(ids, d->npos, sizeof(*ids), cmp_u64);
	for (size_t i = 0; i < d->npos; i++) {
		if (ids[i] == 0)
			continue;
		if (n_ids > 0 && ids[n_ids - 1] == ids[i]) {
			counts[n_ids - 1]++;
		} else {
			ids[n_ids] = ids[i];
			counts[n_ids++] = 1;
		}
	}
	if (d->oom)
		log_warnx("dissect: out of memory: some ended connections were not written");
	if (posfile_write(d->dir, pos_rel, d->pos, d->npos, d->why, sizeof(d->why)) != 0)
		goto done;
	rc = commit_segment(d, g->id, ids, n_ids, counts, in_conns);
	if (rc == 0) {
		/* Retention took the segment meanwhile: drop its position file too. */
		posfile_unlink(d->dir, g->path);
		ret = 0;
	} else if (rc == 1) {
		d->stats.segments++;
		d->stats.packets += d->npos;
		d->stats.in_conns += in_conns;
		ret = 0;
	}
done:
	free(ids);
	free(counts);
	return ret;
}

/* Records a failure of segment seg_id in l4_failed (d->why), best effort: on a full disk
 * this fails too, and the segment is still retried. */
static void
record_failure(struct dissect *d, int64_t seg_id, bool permanent)
{
	struct timespec now;
	char why[sizeof(d->why)];

	memcpy(why, d->why, sizeof(why));
	clock_gettime(CLOCK_REALTIME, &now);
	sqlite3_bind_int64(d->st[Q_FAILED], 1, seg_id);
	sqlite3_bind_int64(d->st[Q_FAILED], 2, (sqlite3_int64)now.tv_sec * 1000000000 + now.tv_nsec);
	sqlite3_bind_text(d->st[Q_FAILED], 3, why, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(d->st[Q_FAILED], 4, permanent);
	step_done(d, Q_FAILED, "l4_failed row");
}

static void
ts_add_ms(struct timespec *t, unsigned ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (long)(ms % 1000) * 1000000;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

static bool
before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Holds segment g for a retry with backoff after a failure that may pass (d->why).
 * fed: the tracker has seen its records, only the writes are retried. */
static void
hold(struct dissect *d, const struct seg_ref *g, bool fed, uint64_t in_conns)
{
	unsigned ms;

	if (!d->holding || d->held.id != g->id)
		d->attempts = 0;
	if (g != &d->held)
		d->held = *g;
	d->holding = true;
	d->held_fed = fed;
	d->held_in_conns = in_conns;
	d->attempts++;
	d->stats.failed++;
	ms = d->attempts > 5 ? RETRY_MAX_MS : RETRY_FIRST_MS << (d->attempts - 1);
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	clock_gettime(CLOCK_MONOTONIC, &d->retry_at);
	ts_add_ms(&d->retry_at, ms);
	if (log_limit_ok(&d->warn_lim, 5, 10))
		log_warnx("dissect: %s: %s; retried in %.1f s (attempt %u), later segments wait for it",
			g->path, d->why, ms / 1000.0, d->attempts);
	record_failure(d, g->id, false);
}

/* Marks segment g done without its rows after a failure that a retry cannot mend (the
 * tracker has seen part of it, or it can never be read), and records it in l4_failed:
 * counted until `pcapline reindex` rebuilds it. */
static void
give_up(struct dissect *d, const struct seg_ref *g)
{
	int64_t id = g->id;

	d->stats.failed++;
	log_warnx("dissect: %s: %s; marked failed until a reindex rebuilds it", g->path, d->why);
	if (d->holding && d->held.id == id)
		d->holding = false;
	if (step_done(d, Q_BEGIN, "BEGIN") != 0)
		return;
	sqlite3_bind_int64(d->st[Q_DONE], 1, id);
	sqlite3_bind_int64(d->st[Q_DONE], 2, 0);
	sqlite3_bind_int64(d->st[Q_DONE], 3, 0);
	sqlite3_bind_int64(d->st[Q_DONE], 4, 0);
	if (step_done(d, Q_DONE, "l4_done row") != 0 || write_ended(d) != 0) {
		rollback(d);
		return;
	}
	record_failure(d, id, true);
	if (step_done(d, Q_COMMIT, "COMMIT") != 0)
		rollback(d);
	else
		d->nended = 0;
}

/* Dissects segment g. Returns 0 (done, or gone), 1 (failed for a reason that may pass:
 * held for a retry) or -1 (given up, see give_up()). */
static int
dissect_segment(struct dissect *d, const struct seg_ref *g)
{
	uint64_t in_conns = 0;
	int rc = seg_read(d, g, &in_conns);

	if (rc == 2)
		rc = 0;
	else if (rc == 1)
		hold(d, g, false, 0);
	else if (rc < 0)
		give_up(d, g);
	else if (seg_commit(d, g, in_conns) != 0) {
		hold(d, g, true, in_conns);
		rc = 1;
	}
	if (rc == 0 && d->holding && d->held.id == g->id) {
		log_info("dissect: %s: dissected after %u failed attempt(s)", g->path, d->attempts);
		d->holding = false;
	}
	return rc;
}

/* True when a later segment of g's interface was dissected already: g was indexed late
 * (the index could not be written when it was closed, and the next start's reconcile
 * added it), so the tracker sees its packets after newer ones. The newest is looked up
 * once per interface and process, then followed in memory: a backlog of many segments
 * costs no query each. */
static bool
seg_is_late(struct dissect *d, const struct seg_ref *g)
{
	sqlite3_stmt *s = d->st[Q_LATER];
	struct dom *m;
	uint32_t i;

	if (dom_get(d, g->sensor, g->iface, &i) != 0)
		return false;
	m = &d->doms[i];
	if (!m->newest_known) {
		sqlite3_bind_text(s, 1, g->sensor, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, g->iface, -1, SQLITE_STATIC);
		m->newest = INT64_MIN;
		if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
			m->newest = sqlite3_column_int64(s, 0);
		m->newest_known = true;
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	return g->min_ns < m->newest;
}

/* After segment g is done. */
static void
seg_done(struct dissect *d, const struct seg_ref *g)
{
	uint32_t i;

	if (dom_get(d, g->sensor, g->iface, &i) == 0 && d->doms[i].newest_known &&
		g->min_ns > d->doms[i].newest)
		d->doms[i].newest = g->min_ns;
}

/* A segment dissected after later ones: its connections may be cut or picked up
 * mid-stream. Kept in l4_failed (counted, and reindex rebuilds its interface). */
static void
flag_late(struct dissect *d, const struct seg_ref *g)
{
	snprintf(d->why, sizeof(d->why), "dissected after later segments of its interface (indexed late)");
	log_warnx("dissect: %s: %s: its connections may be cut; pcapline reindex over its time rebuilds them",
		g->path, d->why);
	d->stats.failed++;
	record_failure(d, g->id, true);
}

/* Tries the held segment again once its time has come. Returns 1 when it is done (or
 * given up) now, 0 when it is still held. */
static int
retry_held(struct dissect *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (before(&now, &d->retry_at))
		return 0;
	if (!d->held_fed) {
		struct seg_ref g = d->held;
		int rc = dissect_segment(d, &g);

		if (rc == 0)
			seg_done(d, &g);
		if (rc == 0 && d->held_late)
			flag_late(d, &g);
		return rc != 1;
	}
	if (seg_commit(d, &d->held, d->held_in_conns) != 0) {
		hold(d, &d->held, true, d->held_in_conns);
		return 0;
	}
	log_info("dissect: %s: dissected after %u failed attempt(s)", d->held.path, d->attempts);
	d->holding = false;
	seg_done(d, &d->held);
	if (d->held_late)
		flag_late(d, &d->held);
	return 1;
}

static void
seg_ref_fill(struct seg_ref *g, sqlite3_stmt *s)
{
	const char *v;

	g->id = sqlite3_column_int64(s, 0);
	v = (const char *)sqlite3_column_text(s, 1);
	snprintf(g->sensor, sizeof(g->sensor), "%s", v ? v : "");
	v = (const char *)sqlite3_column_text(s, 2);
	snprintf(g->iface, sizeof(g->iface), "%s", v ? v : "");
	v = (const char *)sqlite3_column_text(s, 3);
	snprintf(g->path, sizeof(g->path), "%s", v ? v : "");
	g->packets = (uint64_t)sqlite3_column_int64(s, 4);
	g->min_ns = sqlite3_column_int64(s, 5);
}

/* The newest segment's id, 0 when there is none (or the query fails). */
static int64_t
max_segment_id(struct dissect *d)
{
	int64_t top = 0;

	if (sqlite3_step(d->st[Q_MAX_ID]) == SQLITE_ROW)
		top = sqlite3_column_int64(d->st[Q_MAX_ID], 0);
	sqlite3_reset(d->st[Q_MAX_ID]);
	return top;
}

int
dissect_pending(struct dissect *d, int max)
{
	struct seg_ref *v;
	sqlite3_stmt *s = d->st[Q_PENDING];
	int n = 0, rc = SQLITE_DONE;
	bool held = false;
	int64_t top = 0;
	time_t now = time(NULL);

	/* A held segment first: nothing after it is dissected before it. */
	if (d->holding)
		return retry_held(d);
	if ((v = calloc((size_t)max, sizeof(*v))) == NULL)
		return -1;
	/* Every minute from the start: a segment row can come back below the mark (a
	 * reconcile, an id SQLite gives again). */
	if (now >= d->full_look) {
		d->done_below = 0;
		d->full_look = now + 60;
	}
	top = max_segment_id(d);
	sqlite3_bind_int(s, 1, max);
	sqlite3_bind_int64(s, 2, d->done_below);
	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
		seg_ref_fill(&v[n++], s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (n == 0 && rc != SQLITE_DONE) {
		db_warn(d, "pending segments");
		free(v);
		return -1;
	}
	for (int i = 0; i < n && !held; i++) {
		bool late = seg_is_late(d, &v[i]);
		int r = dissect_segment(d, &v[i]);

		held = r == 1;
		if (r == 0)
			seg_done(d, &v[i]);
		if (r == 0 && late)
			flag_late(d, &v[i]);
		d->held_late = held && late;
	}
	/* All pending ones fitted and are done: nothing up to top is left. */
	if (n < max && !held)
		d->done_below = top;
	free(v);
	return n;
}

bool
dissect_has_pending(struct dissect *d)
{
	return d->holding || max_segment_id(d) > d->done_below;
}

int
dissect_mark_open_ended(struct dissect *d, const char *why)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(d->db, "UPDATE conns SET ended = ?1 WHERE ended IS NULL", -1, &s, NULL) !=
		SQLITE_OK) {
		db_warn(d, "mark");
		return -1;
	}
	sqlite3_bind_text(s, 1, why, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		db_warn(d, "mark");
		return -1;
	}
	if (sqlite3_changes(d->db) > 0)
		log_info("dissect: %d connection(s) open when the receiver stopped marked '%s'",
			sqlite3_changes(d->db), why);
	return 0;
}

static int
exec_sql(struct dissect *d, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		if (log_limit_ok(&d->warn_lim, 5, 10))
			log_warnx("dissect: %s", msg ? msg : sqlite3_errmsg(d->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* The ids of the connections about to be rebuilt, by what identifies them. */
static int
remember_ids(struct dissect *d)
{
	sqlite3_stmt *s;
	int rc;

	idmap_clear(&d->old);
	if (sqlite3_prepare_v2(d->db,
		    "SELECT conn_id, sensor, iface, proto, client, client_port, server, server_port, "
		    "first_ns "
		    "FROM conns WHERE conn_id IN (SELECT conn_id FROM conn_segs WHERE seg_id IN "
		    "(SELECT seg_id FROM rx)) OR EXISTS (SELECT 1 FROM rxd WHERE rxd.sensor = conns.sensor "
		    "AND rxd.iface = conns.iface)",
		    -1, &s, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct l4_conn_info c = { 0 };
		struct dom m;
		const char *t;

		snprintf(m.sensor, sizeof(m.sensor), "%s", (const char *)sqlite3_column_text(s, 1));
		snprintf(m.iface, sizeof(m.iface), "%s", (const char *)sqlite3_column_text(s, 2));
		t = (const char *)sqlite3_column_text(s, 3);
		c.proto = t && strcmp(t, "udp") == 0 ? 17 : 6;
		for (int side = 0; side < 2; side++) {
			t = (const char *)sqlite3_column_text(s, 4 + 2 * side);
			if (t && inet_pton(AF_INET, t, c.ep[side].addr) == 1)
				c.family = 4;
			else if (t && inet_pton(AF_INET6, t, c.ep[side].addr) == 1)
				c.family = 6;
			c.ep[side].port = (uint16_t)sqlite3_column_int(s, 5 + 2 * side);
		}
		c.first_ns = (uint64_t)sqlite3_column_int64(s, 8);
		if (idmap_put(&d->old, conn_hash(&m, &c), (uint64_t)sqlite3_column_int64(s, 0)) != 0) {
			sqlite3_finalize(s);
			return -1;
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Segments of a sensor interface whose rows cannot say where their connections' packets
 * are: marked done without their rows (l4_failed, permanent), done with fewer packets
 * than they hold, not dissected (yet, and no connection linked to them: see
 * flush_ended()) while a segment after them is to be rebuilt, or connections without any
 * segment (left by a failed dissection of an older receiver). ?1 sensor, ?2 interface. */
#define DAMAGED_DOMAIN                                                                                     \
	"(EXISTS (SELECT 1 FROM l4_failed f JOIN segments x ON x.id = f.seg_id WHERE x.sensor = ?1 AND "   \
	"x.iface = ?2 AND f.permanent = 1) OR EXISTS (SELECT 1 FROM l4_done dn JOIN segments x ON x.id = " \
	"dn.seg_id WHERE "                                                                                 \
	"x.sensor = ?1 AND x.iface = ?2 AND dn.packets <> x.packets) OR EXISTS (SELECT 1 FROM segments x " \
	"WHERE x.sensor = ?1 AND x.iface = ?2 AND NOT EXISTS (SELECT 1 FROM l4_done dn WHERE dn.seg_id = " \
	"x.id) "                                                                                           \
	"AND NOT EXISTS (SELECT 1 FROM conn_segs cs WHERE cs.seg_id = x.id) AND x.min_ns <= (SELECT "      \
	"max(y.min_ns) FROM segments y JOIN rx ON rx.seg_id = y.id WHERE y.sensor = ?1 "                   \
	"AND y.iface = ?2)) OR EXISTS (SELECT 1 FROM conns c WHERE c.sensor = ?1 AND c.iface = ?2 AND "    \
	"NOT EXISTS (SELECT 1 FROM conn_segs cs WHERE cs.conn_id = c.conn_id)))"

/* Marks the domains of rx that DAMAGED_DOMAIN finds in rxd. Returns 0 or -1. */
static int
find_damaged(struct dissect *d)
{
	sqlite3_stmt *q = NULL, *ins = NULL;
	int rc;

	if (sqlite3_prepare_v2(d->db,
		    "SELECT DISTINCT s.sensor, s.iface FROM segments s JOIN rx ON rx.seg_id = s.id", -1, &q,
		    NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(d->db,
			"INSERT OR IGNORE INTO rxd(sensor, iface) SELECT ?1, ?2 WHERE " DAMAGED_DOMAIN, -1,
			&ins, NULL) != SQLITE_OK) {
		sqlite3_finalize(q);
		return -1;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		sqlite3_bind_value(ins, 1, sqlite3_column_value(q, 0));
		sqlite3_bind_value(ins, 2, sqlite3_column_value(q, 1));
		if (sqlite3_step(ins) != SQLITE_DONE)
			break;
		sqlite3_reset(ins);
		if (sqlite3_changes(d->db) > 0)
			log_warnx("dissect: sensor %s interface %s: the dissection of some segments failed "
				  "or is not "
				  "complete; all of its segments are dissected again",
				sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
	}
	sqlite3_finalize(q);
	sqlite3_finalize(ins);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Gives the held segment its retries here and now (the CLI has no later). Returns 0 when
 * it is done, 1 when it is still failing. */
static int
retry_now(struct dissect *d)
{
	while (d->holding && d->attempts < 4) {
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d->retry_at, NULL) == EINTR)
			;
		retry_held(d);
	}
	return d->holding ? 1 : 0;
}

/* The segments of a window (?1 sensor or NULL, [?2, ?3)). */
#define SEED_WINDOW                                                                                         \
	"INSERT OR IGNORE INTO rx SELECT id FROM segments WHERE (?1 IS NULL OR sensor = ?1) AND max_ns >= " \
	"?2 "                                                                                               \
	"AND min_ns < ?3"
/* Segments not dissected to the end that connections are linked to already: a process
 * that died after flush_ended() wrote some of their rows. */
#define SEED_UNFINISHED                                                                                    \
	"INSERT OR IGNORE INTO rx SELECT s.id FROM segments s WHERE NOT EXISTS (SELECT 1 FROM l4_done dn " \
	"WHERE dn.seg_id = s.id) AND EXISTS (SELECT 1 FROM conn_segs cs WHERE cs.seg_id = s.id)"

/* dissect_reindex() of the segments seed (SEED_*) finds. own: the receiver's own
 * dissection (dissect_repair()), which no other process runs beside: the segments are
 * also marked not done, in one transaction with their rows, so that what a failure
 * leaves is simply dissected (held, retried) in order by dissect_pending(). */
static int
reindex(struct dissect *d, const char *seed, bool own, const char *sensor, int64_t from_ns, int64_t to_ns)
{
	sqlite3_stmt *s = NULL;
	struct seg_ref *v = NULL;
	size_t n = 0, cap = 0, i;
	int rc, done = 0;

	/* The window is worked out in a read transaction (rx is a temporary table), so the
	 * receiver writing meanwhile is not held up. */
	if (exec_sql(d,
		    "CREATE TEMP TABLE IF NOT EXISTS rx(seg_id INTEGER PRIMARY KEY); DELETE FROM rx; "
		    "CREATE TEMP TABLE IF NOT EXISTS rxd(sensor TEXT, iface TEXT, PRIMARY KEY(sensor, "
		    "iface)); "
		    "DELETE FROM rxd;") != 0 ||
		exec_sql(d, "BEGIN") != 0)
		return -1;
	if (sqlite3_prepare_v2(d->db, seed, -1, &s, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_bind_parameter_count(s) == 3) {
		sqlite3_bind_text(s, 1, sensor, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, from_ns);
		sqlite3_bind_int64(s, 3, to_ns);
	}
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	s = NULL;
	if (rc != SQLITE_DONE)
		goto fail;
	/* Widen to every segment of the connections found, until nothing is added. */
	for (int round = 0; round < 1000; round++) {
		if (exec_sql(d,
			    "INSERT OR IGNORE INTO rx SELECT b.seg_id FROM conn_segs a JOIN conn_segs b "
			    "ON a.conn_id = b.conn_id WHERE a.seg_id IN (SELECT seg_id FROM rx)") != 0)
			goto fail;
		if (sqlite3_changes(d->db) == 0)
			break;
	}
	/* Where the links cannot be trusted, the whole interface: rebuilding only part of
	 * it would count again the packets that rows outside the window already hold. */
	if (find_damaged(d) != 0 ||
		exec_sql(d,
			"INSERT OR IGNORE INTO rx SELECT s.id FROM segments s JOIN rxd ON rxd.sensor = "
			"s.sensor "
			"AND rxd.iface = s.iface") != 0)
		goto fail;
	if (remember_ids(d) != 0)
		goto fail;
	if (sqlite3_prepare_v2(d->db,
		    "SELECT s.id, s.sensor, s.iface, s.path, s.packets, s.min_ns FROM segments s JOIN rx ON "
		    "rx.seg_id = s.id ORDER BY s.min_ns, s.id",
		    -1, &s, NULL) != SQLITE_OK)
		goto fail;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct seg_ref *nv = realloc(v, nc * sizeof(*nv));

			if (nv == NULL)
				goto fail;
			v = nv;
			cap = nc;
		}
		seg_ref_fill(&v[n++], s);
	}
	sqlite3_finalize(s);
	s = NULL;
	if (rc != SQLITE_DONE || exec_sql(d, "COMMIT") != 0)
		goto fail;
	/* Every row of a damaged interface goes (those without any segment too), then the
	 * old rows one segment per transaction: short write locks, whatever the window's
	 * size. */
	if (exec_sql(d,
		    own ? "BEGIN IMMEDIATE"
			: "BEGIN IMMEDIATE; DELETE FROM conns WHERE EXISTS (SELECT 1 FROM "
			  "rxd WHERE rxd.sensor = conns.sensor AND rxd.iface = conns.iface); COMMIT;") != 0)
		goto fail;
	if (own &&
		exec_sql(d,
			"DELETE FROM conns WHERE EXISTS (SELECT 1 FROM rxd WHERE rxd.sensor = conns.sensor "
			"AND rxd.iface = conns.iface)") != 0)
		goto fail;
	for (i = 0; i < n; i++) {
		char sql[320];

		snprintf(sql, sizeof(sql),
			"%sDELETE FROM conns WHERE conn_id IN (SELECT conn_id FROM conn_segs WHERE seg_id = "
			"%lld); "
			"DELETE FROM conn_segs WHERE seg_id = %lld; %s",
			own ? "" : "BEGIN IMMEDIATE; ", (long long)v[i].id, (long long)v[i].id,
			own ? "DELETE FROM l4_done WHERE seg_id = " : "COMMIT;");
		if (own)
			snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), "%lld", (long long)v[i].id);
		if (exec_sql(d, sql) != 0)
			goto fail;
	}
	if (own && exec_sql(d, "COMMIT") != 0)
		goto fail;
	for (i = 0; i < n; i++) {
		rc = dissect_segment(d, &v[i]);
		if (rc == 1 && (own || (rc = retry_now(d)) != 0))
			break;
		if (rc == 0)
			done++;
	}
	if (i < n && own) {
		log_warnx("dissect: repair stopped at %s: %s; it and the %zu segment(s) after it are "
			  "dissected as "
			  "pending ones",
			v[i].path, d->why, n - i - 1);
		free(v);
		return -1;
	}
	if (i < n) {
		/* Their rows are gone: kept in l4_failed, so that the next reindex rebuilds the
		 * interfaces and conns --stats counts them meanwhile. */
		log_warnx(
			"dissect: reindex stopped at %s: %s; %zu segment(s) left without rows: run it again",
			v[i].path, d->why, n - i);
		d->holding = false;
		for (; i < n; i++)
			record_failure(d, v[i].id, true);
		free(v);
		return -1;
	}
	free(v);
	return done;
fail:
	db_warn(d, "reindex");
	sqlite3_finalize(s);
	rollback(d);
	free(v);
	return -1;
}

int
dissect_reindex(struct dissect *d, const char *sensor, int64_t from_ns, int64_t to_ns)
{
	return reindex(d, SEED_WINDOW, false, sensor, from_ns, to_ns);
}

int
dissect_repair(struct dissect *d)
{
	int n = reindex(d, SEED_UNFINISHED, true, NULL, 0, 0);

	if (n > 0)
		log_info("dissect: the last run stopped in the middle of a segment: %d segment(s) of the "
			 "connections "
			 "it had written dissected again",
			n);
	return n;
}

const struct dissect_stats *
dissect_stats(const struct dissect *d)
{
	return &d->stats;
}

void
dissect_close(struct dissect *d, bool finish)
{
	if (d == NULL)
		return;
	if (finish && d->l4 != NULL && d->db != NULL) {
		l4_finish(d->l4);
		if (step_done(d, Q_BEGIN, "BEGIN") == 0) {
			if (write_ended(d) != 0 || step_done(d, Q_COMMIT, "COMMIT") != 0)
				rollback(d);
			else
				d->nended = 0;
		}
	}
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(d->st[i]);
	sqlite3_close(d->db);
	l4_free(d->l4);
	free(d->doms);
	free(d->ended);
	free(d->pos);
	idmap_clear(&d->old);
	free(d);
}

/* How long one wait for the CPUs lasts. */
#define DEFER_NAP_MS 100

struct dissect_worker {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct dissect_metrics pub; /* under mu: what dissect_worker_metrics() copies */
	time_t pub_at;
	struct timespec drain_until; /* when stopping: pending segments until then */
	unsigned log_s;              /* counters logged this often (when they changed) */
	unsigned defer_max_ms;       /* 0: never defer to CPU pressure */
	/* CPU pressure (PSI): /proc/pressure/cpu, its "some" total at the last look. */
	int psi_fd;
	uint64_t psi_total_us;
	uint64_t psi_at_us;
	struct dissect *d;
};

static uint64_t
mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* The "some" stall total (microseconds) from PSI text ("some avg10=.. total=N\n..."),
 * or -1 when the text does not hold one. */
int64_t
dissect_psi_some_total(const char *text)
{
	const char *t;
	char *end;
	unsigned long long v;

	if (strncmp(text, "some ", 5) != 0 || (t = strstr(text, " total=")) == NULL)
		return -1;
	if (memchr(text, '\n', (size_t)(t - text)) != NULL)
		return -1; /* the total of another line */
	t += 7;
	if (*t < '0' || *t > '9')
		return -1;
	errno = 0;
	v = strtoull(t, &end, 10);
	if (errno != 0 || (*end != '\n' && *end != '\0') || v > INT64_MAX)
		return -1;
	return (int64_t)v;
}

/* Whether the CPU was saturated since the last look: some runnable task waited for a
 * CPU for more than a tenth of the time. False when the kernel does not report
 * pressure (no PSI: dissection then runs at its low priority only). */
static bool
cpu_saturated(struct dissect_worker *w)
{
	char buf[256];
	ssize_t n;
	int64_t total;
	uint64_t now = mono_us(), stalled, span;
	bool sat = false;

	if (w->psi_fd < 0)
		return false;
	if ((n = pread(w->psi_fd, buf, sizeof(buf) - 1, 0)) <= 0) {
		close(w->psi_fd);
		w->psi_fd = -1;
		return false;
	}
	buf[n] = '\0';
	if ((total = dissect_psi_some_total(buf)) < 0)
		return false;
	if (w->psi_at_us != 0 && now > w->psi_at_us && (uint64_t)total >= w->psi_total_us) {
		stalled = (uint64_t)total - w->psi_total_us;
		span = now - w->psi_at_us;
		sat = stalled * 10 > span;
	}
	w->psi_total_us = (uint64_t)total;
	w->psi_at_us = now;
	return sat;
}

/* Sleeps up to ms unless stopped; true when stopped. */
static bool
worker_nap(struct dissect_worker *w, unsigned ms)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &until);
	ts_add_ms(&until, ms);
	pthread_mutex_lock(&w->mu);
	if (!w->stop)
		pthread_cond_timedwait(&w->cv, &w->mu, &until);
	stop = w->stop;
	pthread_mutex_unlock(&w->mu);
	return stop;
}

/* The counters, logged every stats interval when they changed. */
static void
log_counters(struct dissect *d, uint64_t *last_packets)
{
	const struct l4_stats *l = l4_stats(d->l4);

	if (d->stats.packets == *last_packets)
		return;
	*last_packets = d->stats.packets;
	log_info("dissect: %" PRIu64 " segments, %" PRIu64 " packets (%" PRIu64 " in connections), %" PRIu64
		 " connections (%" PRIu64 " tracked, %" PRIu64 " evicted at the table limit, %" PRIu64
		 " ended idle), %" PRIu64 " frames not decoded, %" PRIu64 " IP fragments dropped, %" PRIu64
		 " buffer-limit gaps, %" PRIu64 " failed attempts, %" PRIu64 ".%01" PRIu64
		 " s deferred to saturated CPUs (%" PRIu64 " times for too long)%s",
		d->stats.segments, d->stats.packets, d->stats.in_conns, l->conns, l->live, l->evicted,
		l->ended_idle, l->decode_errs, l->frag_dropped, l->buf_flushes, d->stats.failed,
		d->stats.deferred_ms / 1000, d->stats.deferred_ms % 1000 / 100, d->stats.forced,
		d->holding ? " (a segment waits for a retry)" : "");
}

/* Counts the segments not dissected yet and publishes the counters, at most once a
 * second: one query from the mark below which everything was done (dissect_pending()). */
static void
worker_publish(struct dissect_worker *w, bool force)
{
	struct dissect *d = w->d;
	sqlite3_stmt *s = d->st[Q_BACKLOG];
	struct dissect_metrics m = { 0 };
	time_t now = time(NULL);

	if (!force && now == w->pub_at)
		return;
	w->pub_at = now;
	m.segments = d->stats.segments;
	m.packets = d->stats.packets;
	m.in_conns = d->stats.in_conns;
	m.rows = d->stats.rows;
	m.failed = d->stats.failed;
	m.deferred_ms = d->stats.deferred_ms;
	m.forced = d->stats.forced;
	m.holding = d->holding;
	sqlite3_bind_int64(s, 1, d->done_below);
	if (sqlite3_step(s) == SQLITE_ROW) {
		m.backlog_segments = (uint64_t)sqlite3_column_int64(s, 0);
		m.backlog_packets = (uint64_t)sqlite3_column_int64(s, 1);
		m.oldest_closed_ns = sqlite3_column_int64(s, 2);
		m.backlog_known = true;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	pthread_mutex_lock(&w->mu);
	w->pub = m;
	pthread_mutex_unlock(&w->mu);
}

void
dissect_worker_metrics(struct dissect_worker *w, struct dissect_metrics *out)
{
	pthread_mutex_lock(&w->mu);
	*out = w->pub;
	pthread_mutex_unlock(&w->mu);
}

static void *
worker_main(void *arg)
{
	struct dissect_worker *w = arg;
	uint64_t logged = 0;
	time_t next_log = time(NULL) + w->log_s;
	uint64_t defer_from = 0;
	bool catching_up = false;

	/* Dissection is derived data and can catch up later: at the lowest priority (nice
	 * 19, for this thread only on Linux) it never takes CPU from the loop and the store
	 * worker, which the sensors' ACKs wait for. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 19) != 0)
		log_debug("dissect: cannot lower the thread's priority: %s", strerror(errno));
	/* In the thread: it may read many segments, and the receiver does not wait. */
	dissect_repair(w->d);
	cpu_saturated(w); /* the first figures: the next look measures from here */

	for (;;) {
		int n;

		pthread_mutex_lock(&w->mu);
		bool stop = w->stop;
		struct timespec drain = w->drain_until;
		pthread_mutex_unlock(&w->mu);
		if (stop) {
			/* The segments the store closed on its way out, within the time given. */
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (!before(&now, &drain) || dissect_pending(w->d, 4) <= 0)
				break;
			continue;
		}
		/* While the CPUs are saturated, whatever dissection takes is taken from the
		 * sensors and the ingest path (a nice 19 thread still gets the receiver's
		 * share when the loop waits): segments wait, up to defer_max_ms in a row;
		 * then the backlog is worked off whole, and the clock starts again. Looked
		 * at every round, so that a decision rests on the last fraction of a second,
		 * not on the time since segments were last pending. */
		bool sat = w->defer_max_ms && cpu_saturated(w);
		if (!catching_up && sat && dissect_has_pending(w->d)) {
			uint64_t now = mono_us();

			if (defer_from == 0)
				defer_from = now;
			if (now - defer_from < (uint64_t)w->defer_max_ms * 1000u) {
				w->d->stats.deferred_ms += DEFER_NAP_MS;
				worker_publish(w, false); /* the backlog grows meanwhile */
				worker_nap(w, DEFER_NAP_MS);
				continue;
			}
			w->d->stats.forced++;
			catching_up = true;
		}
		n = dissect_pending(w->d, 4);
		worker_publish(w, false);
		if (time(NULL) >= next_log) {
			log_counters(w->d, &logged);
			next_log = time(NULL) + w->log_s;
		}
		if (n >= 4)
			continue;
		catching_up = false;
		defer_from = 0;
		if (n > 0)
			continue;
		/* Nothing pending: look again in a quarter of a second. */
		worker_nap(w, 250);
	}
	return NULL;
}

struct dissect_worker *
dissect_worker_start(const char *dir, const struct l4_limits *limits, unsigned log_s, unsigned defer_max_ms,
	char *err, size_t errlen)
{
	struct dissect_worker *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		snprintf(err, errlen, "dissect: out of memory");
		return NULL;
	}
	if ((w->d = dissect_open(dir, limits, err, errlen)) == NULL) {
		free(w);
		return NULL;
	}
	dissect_mark_open_ended(w->d, "receiver stopped");
	w->log_s = log_s ? log_s : 30;
	w->defer_max_ms = defer_max_ms;
	w->psi_fd = defer_max_ms ? open("/proc/pressure/cpu", O_RDONLY | O_CLOEXEC) : -1;
	if (defer_max_ms && w->psi_fd < 0)
		log_info("dissect: no CPU pressure figures (/proc/pressure/cpu: %s): dissection does not "
			 "defer to saturated CPUs",
			strerror(errno));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if ((errno = pthread_create(&w->th, NULL, worker_main, w)) != 0) {
		snprintf(err, errlen, "dissect: cannot start a thread: %s", strerror(errno));
		dissect_close(w->d, false);
		free(w);
		return NULL;
	}
	return w;
}

void
dissect_worker_stop(struct dissect_worker *w, unsigned drain_ms)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	clock_gettime(CLOCK_MONOTONIC, &w->drain_until);
	ts_add_ms(&w->drain_until, drain_ms);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	uint64_t never = UINT64_MAX;

	log_counters(w->d, &never); /* once more, changed or not */
	dissect_close(w->d, false);
	if (w->psi_fd >= 0)
		close(w->psi_fd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
