/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "shared/fsutil.h"
#include "shared/hash.h"
#include "receiver/repo/index.h"
#include "receiver/repo/segname.h"
#include "shared/lathist.h"
#include "shared/log.h"
#include "shared/pcapfile.h"
#include "receiver/store/retention.h"

/*
 * Crash safety. After the records of a batch are written (and synced, per policy),
 * the sensor's state file records the epoch, the next expected sequence number and
 * the committed length of every open segment; only then is the batch ACKed. On
 * restart, every hidden open segment is cut back to its committed length and renamed
 * into place, and one that the state does not list and whose first batch (named in
 * the file name) was never committed is removed. Storage thus holds every ACKed batch
 * exactly once, and a batch that was not committed is simply sent again by the sensor.
 * A segment that fails to close (sync, truncation or rename) keeps its fd and its
 * state entry until a retry succeeds (struct segment), so no later state write drops
 * it and no recovery mistakes it for uncommitted data.
 *
 * The state file has two fixed slots written alternately, each with a counter and a
 * checksum, so that a torn write leaves the previous slot intact.
 *
 * The index (index.db) gets a row whenever a segment is renamed into place: on close
 * (from the counts kept while writing), and on recovery or rollback (by reading the
 * file back). A crash between the rename and the row, or a row whose file retention
 * had just unlinked, is repaired by the reconcile at the next start.
 */
#define STATE_SLOT       16384
#define CFG_ERRLEN_STORE 512
#define STATE_MAGIC      0x504c5332u /* "PLS2" */
#define STATE_NAME_MAX   200
#define STATE_MAX_EPOCHS 16
#define STATE_COUNTERS   8
/* Batches remembered per sensor to tell a resend from a reused number (a power of 2). */
#define STORE_RECENT     256

/*
 * A segment is free (fd < 0), open for writing (fd >= 0, w set), or finished (fd >= 0,
 * w NULL): no longer written, but not yet cut to `committed`, synced and renamed into
 * place because that failed (a full or failing disk). A finished segment keeps its fd
 * and its entry in the state file until store_segment_finish() succeeds, so that no
 * state write and no recovery ever takes its committed (acknowledged) data for
 * uncommitted; the sensor is held (STORE_RETRY) while one is pending.
 */
struct segment {
	int fd;
	uint64_t committed;        /* bytes known to be in the file as of the last state write */
	char base[STATE_NAME_MAX]; /* basename of open_path */
	struct pcapw *w;
	bool adopted;       /* taken over by recovery: counts unknown, read back for the index */
	uint64_t synced;    /* bytes known on disk (fdatasync succeeded after they were written) */
	bool sync_lost;     /* a sync failed: bytes from `synced` on must be written again */
	uint64_t opened_ms; /* monotonic */
	uint64_t packets;
	int64_t min_ns, max_ns; /* packet timestamps, for the index */
	uint32_t linktype, snaplen;
	char ifname[PROTO_MAX_IFNAME + 1]; /* as the sensor reported it */
	char open_path[700];
	char final_path[700];
	bool touched; /* written by the batch being stored */
};

struct store_sensor {
	struct store_sensor *next;
	struct store *store;
	char id[PROTO_MAX_ID + 1];
	char seg_dir[400];
	uint64_t epoch, next_seq; /* the active epoch, mirrored in epochs[0] */
	bool have_epoch;
	/* Sequence state per epoch, most recent first (PROTOCOL.md 6.2): two runs of one
	 * sensor identity that alternate must not reset each other's numbering. */
	struct {
		uint64_t epoch, next_seq;
	} epochs[STATE_MAX_EPOCHS];
	unsigned n_epochs;
	int state_fd;
	uint64_t state_counter;
	bool unsynced;   /* interval policy: written and committed, not yet synced */
	bool state_lost; /* a sync of the state file failed: write it again before the next */
	uint64_t unsynced_bytes;
	uint16_t n_ifaces;
	struct proto_iface ifaces[PROTO_MAX_IFACES];
	struct segment seg[PROTO_MAX_IFACES];
	struct store_counters c;
	bool connected; /* between store_sensor_begin() and store_sensor_end() */
	/* Where the time of the group being stored goes (us), for the slow-storage warning. */
	struct {
		uint64_t write, seg_sync, state, rotate;
	} took;
	struct lathist ack_lat; /* under store.lat_mu */
	/* STATS values by id as the sensor last sent them (bit i of s_seen: id i came). */
	uint64_t s_stat[STORE_SENSOR_STATS], s_seen;
	struct store_pub pub; /* under store.pub_mu: what store_pub_read() copies */
	/* Digest of each recently stored batch, at seq % STORE_RECENT (in memory only:
	 * resends follow a reconnect within seconds). */
	struct {
		uint64_t epoch, seq, digest;
	} recent[STORE_RECENT];
};

struct store {
	struct store_opts o;
	char dir[300];
	struct store_sensor *sensors;
	struct index *ix; /* NULL without a repository */
	struct retention *ret;
	/* Single-file output. */
	int single_fd;
	bool single_owned;
	struct pcapw *single;
	uint32_t single_linktype;
	/* ACK latencies come from the loop thread while the worker writes stats.json: this
	 * lock guards only the histograms, never any I/O. */
	pthread_mutex_t lat_mu;
	struct lathist ack_lat;
	/* The published copies (store_pub_read()): the sensors list is only ever added to
	 * under this lock too, so a reader may walk it while holding it. */
	pthread_mutex_t pub_mu;
	struct store_pub_all pub_all; /* but ack_lat, which lat_mu guards */
};

static uint64_t
store_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
store_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int64_t
store_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Publishes one sensor's counters for store_pub_read(): a copy under pub_mu, nothing
 * slower, so that a metrics scrape never holds up storage. */
static void
store_publish(struct store_sensor *ss)
{
	struct store *s = ss->store;
	struct store_pub *p = &ss->pub;
	uint64_t segs = 0, bytes = 0;

	if (s->ret)
		retention_totals(s->ret, ss->id, &segs, &bytes);
	pthread_mutex_lock(&s->pub_mu);
	snprintf(p->id, sizeof(p->id), "%s", ss->id);
	p->connected = ss->connected;
	p->c = ss->c;
	p->seen = ss->s_seen;
	memcpy(p->s_stat, ss->s_stat, sizeof(p->s_stat));
	p->segments = segs;
	p->segment_bytes = bytes;
	pthread_mutex_unlock(&s->pub_mu);
}

/* Every sensor, and the receiver-wide values (each tick). */
static void
store_publish_all(struct store *s)
{
	struct index_wait iw = { 0 };
	uint64_t segs = 0;

	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next) {
		store_publish(ss);
		segs += ss->pub.segments; /* written by this thread only */
	}
	if (s->ix)
		index_wait_get(s->ix, &iw);
	pthread_mutex_lock(&s->pub_mu);
	s->pub_all.index_busy = iw.busy;
	s->pub_all.index_wait_max_us = iw.max_us;
	s->pub_all.repo_segments = segs;
	s->pub_all.repo_bytes = s->ret ? retention_bytes(s->ret, NULL) : 0;
	pthread_mutex_unlock(&s->pub_mu);
}

int
store_pub_read(struct store *s, struct store_pub **out, size_t *n, struct store_pub_all *all)
{
	size_t k = 0, i = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&s->pub_mu);
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		k++;
	if (k > 0 && (*out = malloc(k * sizeof(**out))) == NULL) {
		pthread_mutex_unlock(&s->pub_mu);
		return -ENOMEM;
	}
	/* Newest first in the list: reversed, so that sensors keep the order they came in. */
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		(*out)[k - 1 - i++] = ss->pub;
	if (all)
		*all = s->pub_all;
	pthread_mutex_unlock(&s->pub_mu);
	*n = k;
	if (all) {
		pthread_mutex_lock(&s->lat_mu);
		all->ack_lat = s->ack_lat;
		pthread_mutex_unlock(&s->lat_mu);
	}
	return 0;
}

static int
store_mkdirs(const char *path)
{
	return fsu_mkdirs(path, 0750);
}

/* Credits a sensor with a segment retention deleted. */
static void
store_on_retired(void *arg, const struct index_seg *g, const char *why)
{
	struct store *s = arg;
	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next) {
		if (strcmp(ss->id, g->sensor) == 0) {
			ss->c.retention_segments++;
			ss->c.retention_packets += g->packets;
			ss->c.retention_bytes += g->bytes;
			return;
		}
	}
}

static void
store_retention(struct store *s)
{
	if (s->ret)
		retention_run(s->ret, store_wall_ns(), store_on_retired, s);
}

static void
store_on_indexed(void *arg, const struct index_seg *g)
{
	struct store *s = arg;
	if (s->ret)
		retention_added(s->ret, g);
}

/* Indexes a segment just renamed into place. A failed insert is retried by the tick;
 * its bytes count toward the bounds once the row exists. */
static void
store_index_add(struct store *s, const struct index_seg *g)
{
	/* Rows deferred by a locked database go first, so that they keep their order. */
	if (s->ix && index_pending(s->ix))
		index_retry(s->ix, store_on_indexed, s);
	if (s->ix && index_insert(s->ix, g) == 0)
		store_on_indexed(s, g);
}

/* Indexes a segment renamed into place by recovery or rollback, reading it back. */
static void
store_index_scan(struct store_sensor *ss, const char *final_path)
{
	struct index_seg g;
	char rel[INDEX_MAX_PATH];
	const char *name = strrchr(final_path, '/');
	snprintf(rel, sizeof(rel), "sensors/%s/segments/%s", ss->id, name ? name + 1 : final_path);
	int rc = index_scan(ss->store->dir, rel, &g);
	if (rc != 0) {
		log_warnx(
			"store: %s: cannot read back %s for the index: %s", ss->id, rel, pcapf_strerror(rc));
		return;
	}
	g.closed_ns = store_wall_ns();
	store_index_add(ss->store, &g);
}

struct store *
store_new(const struct store_opts *o, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "store: out of memory");
		return NULL;
	}
	s->o = *o;
	s->single_fd = -1;
	pthread_mutex_init(&s->lat_mu, NULL);
	pthread_mutex_init(&s->pub_mu, NULL);
	_Static_assert(sizeof(((struct store *)0)->dir) > STORE_DIR_MAX &&
			sizeof(((struct store_sensor *)0)->seg_dir) >
				STORE_DIR_MAX + sizeof("/sensors//segments") - 1 + PROTO_MAX_ID,
		"STORE_DIR_MAX does not fit the store's path buffers");
	if (o->dir && strlen(o->dir) > STORE_DIR_MAX) {
		snprintf(err, errlen, "storage.dir: %zu characters, above the limit of %d: %.80s...",
			strlen(o->dir), STORE_DIR_MAX, o->dir);
		free(s);
		return NULL;
	}
	if (o->dir && *o->dir) {
		snprintf(s->dir, sizeof(s->dir), "%s", o->dir);
		int rc = store_mkdirs(s->dir);
		if (rc != 0 || access(s->dir, W_OK) != 0) {
			snprintf(err, errlen, "storage.dir: cannot create or write %s: %s", s->dir,
				strerror(rc ? -rc : errno));
			free(s);
			return NULL;
		}
	}
	if (*s->dir) {
		s->ix = index_open(s->dir, err, errlen);
		if (!s->ix) {
			free(s);
			return NULL;
		}
		/* Recover every sensor's open segments now, not when it reconnects. */
		char sd[400];
		snprintf(sd, sizeof(sd), "%s/sensors", s->dir);
		DIR *d = opendir(sd);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			char e2[CFG_ERRLEN_STORE];
			if (de->d_name[0] == '.' || de->d_type != DT_DIR)
				continue;
			if (!store_sensor_get(s, de->d_name, e2, sizeof(e2)))
				log_warnx("store: %s", e2);
		}
		if (d)
			closedir(d);
		/* Then make the index agree with whatever a crash left behind. */
		struct index_reconcile_report rep;
		index_reconcile(s->ix, &rep);
		struct retention_opts ro = {
			.max_bytes = o->max_bytes,
			.max_age_ms = o->max_age_ms,
			.sensor_max_bytes = o->sensor_max_bytes,
			.sensor_max_age_ms = o->sensor_max_age_ms,
		};
		s->ret = retention_new(s->ix, &ro, err, errlen);
		if (!s->ret) {
			store_free(s);
			return NULL;
		}
		store_retention(s);
		store_publish_all(s);
		/* Start-up is done: from now on no ingest write waits on another writer's
		 * transaction (the dissection path's): it is deferred instead. */
		index_set_nowait(s->ix);
	}
	if (o->single_file && *o->single_file) {
		if (strcmp(o->single_file, "-") == 0) {
			s->single_fd = STDOUT_FILENO;
		} else {
			s->single_fd = open(o->single_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
			s->single_owned = true;
		}
		if (s->single_fd < 0) {
			snprintf(err, errlen, "output.file: cannot open %s: %s", o->single_file,
				strerror(errno));
			store_free(s);
			return NULL;
		}
	}
	return s;
}

/* Renames without ever replacing a stored file: if the name is taken (a sensor that
 * reused an epoch), a numeric suffix is added, and `to` (of size tolen) updated. */
static int
store_rename(const char *from, char *to, size_t tolen)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	char alt[720];
	size_t n = strlen(to);
	if (n < 5)
		return -1;
	for (int i = 1; i < 1000; i++) {
		int m = snprintf(alt, sizeof(alt), "%.*s.%d.pcap", (int)(n - 5), to, i);
		if (m < 0 || (size_t)m >= tolen) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (renameat2(AT_FDCWD, from, AT_FDCWD, alt, RENAME_NOREPLACE) == 0) {
			memcpy(to, alt, (size_t)m + 1);
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/*
 * Syncs the first `upto` bytes of a segment. Linux reports a failed writeback (a full
 * thin disk: ENOSPC; a failing one: EIO) to one fdatasync() only and leaves the pages
 * clean, so the next fdatasync() succeeds without writing them. After a failure the
 * bytes not known synced are therefore written again, from the page cache that still
 * holds them, before the next try. Returns 0 or -errno.
 */
static int
store_seg_sync(struct segment *g, uint64_t upto)
{
	if (g->synced > upto)
		g->synced = upto;
	if (g->sync_lost) {
		static uint8_t buf[65536];
		for (uint64_t off = g->synced; off < upto;) {
			size_t want = upto - off < sizeof(buf) ? (size_t)(upto - off) : sizeof(buf);
			ssize_t r = pread(g->fd, buf, want, (off_t)off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				break; /* shorter than committed (see store_segment_finish()) */
			ssize_t w = pwrite(g->fd, buf, (size_t)r, (off_t)off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			off += (uint64_t)w;
		}
	}
	if (fdatasync(g->fd) != 0) {
		int rc = -errno;
		g->sync_lost = true;
		return rc;
	}
	g->sync_lost = false;
	g->synced = upto;
	return 0;
}

/* Failures to put a segment into place are retried every second: log a few. */
static struct log_limit store_finish_lim;

/*
 * Puts a finished segment (w NULL) into place: cut back to what the state file
 * committed (a failed batch may have written more, a failed flush part of a record),
 * synced unless fsync is "never" (under "interval" this is the only sync its last
 * batches get before their ACK), renamed. Until all of that succeeds the segment
 * keeps its fd and its state entry, and the caller retries later. A segment that
 * never had a batch committed is removed. Returns 0 or -errno.
 */
static int
store_segment_finish(struct store_sensor *ss, struct segment *g)
{
	struct store *s = ss->store;
	struct stat st;
	int rc = 0;
	if (g->fd < 0)
		return 0;
	if (g->committed <= 24) {
		if (unlink(g->open_path) != 0 && errno != ENOENT) {
			rc = -errno;
			if (log_limit_ok(&store_finish_lim, 10, 1))
				log_warnx("store: %s: cannot remove %s (nothing of it committed): %s", ss->id,
					g->open_path, strerror(-rc));
			return rc;
		}
		close(g->fd);
		g->fd = -1;
		return 0;
	}
	if (fstat(g->fd, &st) != 0)
		rc = -errno;
	/* Never longer: a state that claims more than the file holds is not made true
	 * with zeros (readers stop at a cut record). */
	else if ((uint64_t)st.st_size > g->committed && ftruncate(g->fd, (off_t)g->committed) != 0)
		rc = -errno;
	else if (s->o.fsync != STORE_FSYNC_NEVER && (rc = store_seg_sync(g, g->committed)) != 0)
		;
	else if (store_rename(g->open_path, g->final_path, sizeof(g->final_path)) != 0)
		rc = errno ? -errno : -EIO;
	if (rc != 0) {
		if (log_limit_ok(&store_finish_lim, 10, 1))
			log_warnx("store: %s: cannot put %s into place: %s; kept open with its %" PRIu64
				  " committed bytes, retrying",
				ss->id, g->open_path, strerror(-rc), g->committed);
		return rc;
	}
	close(g->fd);
	g->fd = -1;
	ss->c.segments_closed++;
	log_debug("store: %s: closed %s (%" PRIu64 " bytes)", ss->id, g->final_path, g->committed);
	if (g->adopted) {
		g->adopted = false;
		store_index_scan(ss, g->final_path);
	} else {
		struct index_seg row = {
			.linktype = g->linktype,
			.snaplen = g->snaplen,
			.min_ns = g->min_ns,
			.max_ns = g->max_ns,
			.packets = g->packets,
			.closed_ns = store_wall_ns(),
			.bytes = g->committed,
		};
		snprintf(row.sensor, sizeof(row.sensor), "%s", ss->id);
		snprintf(row.path, sizeof(row.path), "sensors/%s/segments/%s", ss->id,
			strrchr(g->final_path, '/') + 1);
		snprintf(row.iface, sizeof(row.iface), "%s", g->ifname);
		store_index_add(s, &row);
	}
	store_retention(s);
	return 0;
}

/* Retries every finished segment of the sensor. Returns 0 when none is left, else the
 * first error (with the segment's name in err). */
static int
store_finish_pending(struct store_sensor *ss, char *err, size_t errlen)
{
	int ret = 0;
	for (int i = 0; i < PROTO_MAX_IFACES; i++) {
		struct segment *g = &ss->seg[i];
		if (g->fd < 0 || g->w)
			continue;
		int rc = store_segment_finish(ss, g);
		if (rc != 0 && ret == 0) {
			ret = rc;
			if (err)
				snprintf(err, errlen, "cannot put segment %s into place: %s", g->open_path,
					strerror(-rc));
		}
	}
	return ret;
}

/* The state file's checksum is plain FNV-1a (no finalizer): files written by earlier
 * releases must still verify. */
static uint64_t
store_fnv64(const uint8_t *p, size_t n)
{
	return hash_add(HASH_INIT, p, n);
}

static void
put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}
static uint64_t
get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Slot layout (host byte order, local file):
 *   0 magic u32, 4 n u32, 8 counter u64, 16 checksum u64 of everything after it,
 *   24 n_epochs u64, 32 records dropped as unstorable u64 (timestamp beyond the pcap
 *   range; zero in slots written before it was counted), 40..48 reserved,
 *   48 epochs: STATE_MAX_EPOCHS x {epoch u64, next_seq u64}, most recent first,
 *   then STATE_COUNTERS stored counters u64 (they describe exactly what is committed),
 *   then n entries of {u64 committed, char name[STATE_NAME_MAX]}. */
#define STATE_EPOCHS_OFF   48
#define STATE_COUNTERS_OFF (STATE_EPOCHS_OFF + STATE_MAX_EPOCHS * 16)
#define STATE_HDR          (STATE_COUNTERS_OFF + STATE_COUNTERS * 8)
#define STATE_ENTRY        (8 + STATE_NAME_MAX)

static void
store_counters_io(struct store_sensor *ss, uint8_t *p, bool save)
{
	uint64_t *v[STATE_COUNTERS] = { &ss->c.batches, &ss->c.packets, &ss->c.bytes, &ss->c.segments_closed,
		&ss->c.duplicates, &ss->c.rejected_batches, &ss->c.missing_batches, &ss->c.storage_errors };
	for (int i = 0; i < STATE_COUNTERS; i++) {
		if (save)
			put64(p + 8 * i, *v[i]);
		else
			*v[i] = get64(p + 8 * i);
	}
}

static int
store_state_write(struct store_sensor *ss)
{
	static uint8_t slot[STATE_SLOT];
	uint32_t n = 0;
	memset(slot, 0, STATE_HDR);
	for (int i = 0; i < PROTO_MAX_IFACES; i++) {
		struct segment *g = &ss->seg[i];
		if (g->fd < 0)
			continue;
		if (STATE_HDR + (n + 1) * STATE_ENTRY > STATE_SLOT)
			return -ENOSPC;
		uint8_t *e = slot + STATE_HDR + n * STATE_ENTRY;
		put64(e, g->committed);
		memcpy(e + 8, g->base, STATE_NAME_MAX);
		n++;
	}
	uint32_t magic = STATE_MAGIC;
	ss->state_counter++;
	memcpy(slot, &magic, 4);
	memcpy(slot + 4, &n, 4);
	put64(slot + 8, ss->state_counter);
	if (ss->have_epoch)
		ss->epochs[0].next_seq = ss->next_seq;
	put64(slot + 24, ss->n_epochs);
	for (unsigned i = 0; i < ss->n_epochs; i++) {
		put64(slot + STATE_EPOCHS_OFF + 16 * i, ss->epochs[i].epoch);
		put64(slot + STATE_EPOCHS_OFF + 16 * i + 8, ss->epochs[i].next_seq);
	}
	store_counters_io(ss, slot + STATE_COUNTERS_OFF, true);
	/* Kept apart from the counters above so that earlier state files read the same. */
	put64(slot + 32, ss->c.unstorable[STORE_UNSTORABLE_TS]);
	/* Only the used part is hashed: the rest of the slot is zero and never read. */
	put64(slot + 16, store_fnv64(slot + 24, STATE_HDR + n * STATE_ENTRY - 24));
	off_t off = (off_t)(ss->state_counter % 2) * STATE_SLOT;
	ssize_t w = pwrite(ss->state_fd, slot, STATE_SLOT, off);
	if (w != STATE_SLOT)
		return w < 0 ? -errno : -EIO;
	if (ss->store->o.fsync == STORE_FSYNC_BATCH && fdatasync(ss->state_fd) != 0)
		return -errno;
	return 0;
}

/* Loads the newest valid slot into ss and returns it in slot (n entries), or -1. */
static int
store_state_read(struct store_sensor *ss, uint8_t *slot, uint32_t *n_out)
{
	static uint8_t buf[STATE_SLOT];
	int best = -1;
	uint64_t best_counter = 0;
	for (int i = 0; i < 2; i++) {
		if (pread(ss->state_fd, buf, STATE_SLOT, (off_t)i * STATE_SLOT) != STATE_SLOT)
			continue;
		uint32_t magic, n;
		memcpy(&magic, buf, 4);
		memcpy(&n, buf + 4, 4);
		if (magic != STATE_MAGIC || STATE_HDR + (uint64_t)n * STATE_ENTRY > STATE_SLOT ||
			get64(buf + 16) != store_fnv64(buf + 24, STATE_HDR + (size_t)n * STATE_ENTRY - 24))
			continue;
		if (best < 0 || get64(buf + 8) > best_counter) {
			best = i;
			best_counter = get64(buf + 8);
			memcpy(slot, buf, STATE_SLOT);
			*n_out = n;
		}
	}
	if (best < 0)
		return -1;
	ss->state_counter = best_counter;
	uint64_t ne = get64(slot + 24);
	ss->n_epochs = ne > STATE_MAX_EPOCHS ? STATE_MAX_EPOCHS : (unsigned)ne;
	for (unsigned i = 0; i < ss->n_epochs; i++) {
		ss->epochs[i].epoch = get64(slot + STATE_EPOCHS_OFF + 16 * i);
		ss->epochs[i].next_seq = get64(slot + STATE_EPOCHS_OFF + 16 * i + 8);
	}
	ss->have_epoch = ss->n_epochs > 0;
	ss->epoch = ss->have_epoch ? ss->epochs[0].epoch : 0;
	ss->next_seq = ss->have_epoch ? ss->epochs[0].next_seq : 1;
	store_counters_io(ss, slot + STATE_COUNTERS_OFF, false);
	ss->c.unstorable[STORE_UNSTORABLE_TS] = get64(slot + 32);
	return 0;
}

/* For an open segment the state file does not list: the length of its committed
 * data, or -1 when it holds none. It is unlisted because the batch that opened it was
 * never committed (then its name's epoch is not in the state, or its sequence number
 * not below the next expected one), or because the state was written without it while
 * it held committed data (a version that forgot a segment it failed to put into place,
 * or a rename the disk lost in a power cut): then everything in it was committed, as
 * segments are only ever closed at a commit, and every whole record is kept. */
static int64_t
store_recover_unlisted(struct store_sensor *ss, const char *name, const char *path)
{
	struct segname sn;
	if (!segname_parse(name + 6, &sn))
		return -1;
	unsigned i = 0;
	while (i < ss->n_epochs && ss->epochs[i].epoch != sn.epoch)
		i++;
	if (i == ss->n_epochs || sn.seq >= ss->epochs[i].next_seq)
		return -1;
	int err = 0;
	struct pcapr *r = pcapr_open(path, &err);
	if (!r)
		return -1; /* not even a whole header: no record to keep */
	struct pcapf_rec rec;
	uint64_t end = pcapr_offset(r);
	while (pcapr_next(r, &rec) == 1)
		end = pcapr_offset(r);
	pcapr_close(r);
	log_warnx("store: %s: %s is not in the state file but its first batch was committed: keeping its "
		  "%" PRIu64 " bytes of whole records",
		ss->id, name, end);
	return (int64_t)end;
}

/* Takes over an open segment found at start with `committed` bytes to keep: it is
 * tracked like one this process finished, and put into place now or, if the storage
 * fails, by store_tick(). Returns 0 when in place, 1 when held, -1 when not taken. */
static int
store_recover_adopt(
	struct store_sensor *ss, const char *base, const char *path, const char *final, uint64_t committed)
{
	struct segment *g = NULL;
	for (int i = 0; i < PROTO_MAX_IFACES && !g; i++)
		if (ss->seg[i].fd < 0)
			g = &ss->seg[i];
	int fd = g ? open(path, O_RDWR | O_CLOEXEC) : -1;
	if (fd < 0) {
		/* Left as it is (never removed): the next start tries again. */
		log_warnx(
			"store: %s: cannot take over %s: %s", ss->id, path, g ? strerror(errno) : "too many");
		return -1;
	}
	memset(g, 0, sizeof(*g));
	g->fd = fd;
	g->committed = committed;
	g->adopted = true;
	/* Whether its last sync failed in the process that wrote it is unknown (the
	 * failure was reported there): all of it is written again before the sync. */
	g->sync_lost = true;
	g->opened_ms = store_mono_ms();
	snprintf(g->base, sizeof(g->base), "%s", base);
	snprintf(g->open_path, sizeof(g->open_path), "%s", path);
	snprintf(g->final_path, sizeof(g->final_path), "%s", final);
	if (store_segment_finish(ss, g) != 0)
		return 1;
	log_info("store: %s: recovered %s (%" PRIu64 " committed bytes)", ss->id, final, committed);
	return 0;
}

/* Brings the sensor's segment folder back to its last committed state (see above).
 * Nothing that holds committed data is ever removed here. */
static void
store_recover(struct store_sensor *ss)
{
	static uint8_t slot[STATE_SLOT];
	uint32_t n = 0;
	bool have = store_state_read(ss, slot, &n) == 0;
	DIR *d = opendir(ss->seg_dir);
	if (!d)
		return;
	unsigned kept = 0, removed = 0, held = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".open-", 6) != 0 || strlen(de->d_name) >= STATE_NAME_MAX)
			continue;
		char path[700], final[700];
		snprintf(path, sizeof(path), "%s/%s", ss->seg_dir, de->d_name);
		snprintf(final, sizeof(final), "%s/%s", ss->seg_dir, de->d_name + 6);
		int64_t committed = -1;
		bool listed = false;
		for (uint32_t i = 0; have && i < n; i++) {
			const uint8_t *e = slot + STATE_HDR + i * STATE_ENTRY;
			if (strncmp((const char *)e + 8, de->d_name, STATE_NAME_MAX) == 0) {
				committed = (int64_t)get64(e);
				listed = true;
			}
		}
		if (!listed)
			committed = store_recover_unlisted(ss, de->d_name, path);
		if (committed <= 24) {
			unlink(path);
			removed++;
			continue;
		}
		int rc = store_recover_adopt(ss, de->d_name, path, final, (uint64_t)committed);
		if (rc == 0)
			kept++;
		else if (rc > 0)
			held++;
	}
	closedir(d);
	if (have || kept || removed || held)
		log_info("store: %s: state loaded (epoch %016" PRIx64 ", next batch %" PRIu64
			 "); %u open segment(s) recovered, %u holding only unacknowledged data removed",
			ss->id, ss->epoch, ss->next_seq, kept, removed);
	if (held) {
		/* Listed in the state from now on; the sensor is held until they are in place. */
		log_warnx("store: %s: %u open segment(s) with committed data cannot be put into place yet; "
			  "retrying",
			ss->id, held);
		if (store_state_write(ss) != 0)
			log_warnx("store: %s: cannot update state", ss->id);
	}
}

static void
store_sanitize(char *dst, size_t n, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < n; i++) {
		char ch = src[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			ch == '.' || ch == '_' || ch == '-';
		dst[i] = ok ? ch : '_';
	}
	dst[i] = '\0';
	if (i == 0 || dst[0] == '.')
		dst[0] = '_';
	if (i == 0 && n > 1)
		dst[1] = '\0';
}

bool
store_sensor_known(const struct store *s, const char *id)
{
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		if (strcmp(ss->id, id) == 0)
			return true;
	return false;
}

unsigned
store_sensor_count(const struct store *s)
{
	unsigned n = 0;
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		n++;
	return n;
}

struct store_sensor *
store_sensor_get(struct store *s, const char *id, char *err, size_t errlen)
{
	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		if (strcmp(ss->id, id) == 0)
			return ss;
	struct store_sensor *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		snprintf(err, errlen, "store: out of memory");
		return NULL;
	}
	ss->store = s;
	snprintf(ss->id, sizeof(ss->id), "%s", id);
	for (int i = 0; i < PROTO_MAX_IFACES; i++)
		ss->seg[i].fd = -1;
	if (*s->dir) {
		/* The id was validated against [A-Za-z0-9._-]; "." and ".." are refused here. */
		if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
			snprintf(err, errlen, "store: sensor id '%s' is not a valid directory name", id);
			free(ss);
			return NULL;
		}
		snprintf(ss->seg_dir, sizeof(ss->seg_dir), "%s/sensors/%s/segments", s->dir, id);
		int rc = store_mkdirs(ss->seg_dir);
		if (rc != 0) {
			snprintf(err, errlen, "store: cannot create %s: %s", ss->seg_dir, strerror(-rc));
			free(ss);
			return NULL;
		}
		char sp[512];
		snprintf(sp, sizeof(sp), "%s/sensors/%s/state", s->dir, id);
		ss->state_fd = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (ss->state_fd < 0) {
			snprintf(err, errlen, "store: cannot open %s: %s", sp, strerror(errno));
			free(ss);
			return NULL;
		}
		store_recover(ss);
		/* Retention totals are kept across restarts in the index. */
		if (s->ix)
			index_retention_get(s->ix, id, &ss->c.retention_segments, &ss->c.retention_packets,
				&ss->c.retention_bytes);
	} else {
		ss->state_fd = -1;
	}
	pthread_mutex_lock(&s->pub_mu);
	ss->next = s->sensors;
	s->sensors = ss;
	pthread_mutex_unlock(&s->pub_mu);
	store_publish(ss);
	return ss;
}

/* Stops writing a segment and puts it into place. Every close comes right after a
 * commit (or a rollback to one), so what the writer still holds is never needed: the
 * file is cut to `committed` anyway. On failure the segment stays finished and
 * tracked (store_segment_finish()). */
static int
store_segment_close(struct store_sensor *ss, struct segment *g)
{
	if (g->fd < 0)
		return 0;
	if (g->w) {
		pcapw_free(g->w);
		g->w = NULL;
	}
	return store_segment_finish(ss, g);
}

uint64_t
store_sensor_begin(
	struct store_sensor *ss, uint64_t epoch, const struct proto_iface *ifaces, uint16_t n_ifaces)
{
	store_sensor_end(ss);
	ss->n_ifaces = n_ifaces;
	memcpy(ss->ifaces, ifaces, n_ifaces * sizeof(*ifaces));
	if (ss->have_epoch)
		ss->epochs[0].next_seq = ss->next_seq;
	/* Bring this epoch to the front (or add it, forgetting the least recent one). */
	unsigned i = 0;
	while (i < ss->n_epochs && ss->epochs[i].epoch != epoch)
		i++;
	uint64_t next = i < ss->n_epochs ? ss->epochs[i].next_seq : 1;
	if (i == ss->n_epochs) {
		if (ss->n_epochs < STATE_MAX_EPOCHS)
			ss->n_epochs++;
		i = ss->n_epochs - 1;
	}
	memmove(&ss->epochs[1], &ss->epochs[0], i * sizeof(ss->epochs[0]));
	ss->epochs[0].epoch = epoch;
	ss->epochs[0].next_seq = next;
	ss->have_epoch = true;
	ss->epoch = epoch;
	ss->next_seq = next;
	ss->connected = true;
	store_publish(ss);
	return ss->next_seq;
}

void
store_sensor_end(struct store_sensor *ss)
{
	ss->connected = false;
	for (int i = 0; i < PROTO_MAX_IFACES; i++)
		store_segment_close(ss, &ss->seg[i]);
	store_publish(ss);
}

static int
store_segment_open(struct store_sensor *ss, uint16_t iface, uint64_t first_ns, uint64_t seq)
{
	struct segment *g = &ss->seg[iface];
	char ifname[PROTO_MAX_IFNAME + 1];
	store_sanitize(ifname, sizeof(ifname), ss->ifaces[iface].name);
	/* The epoch makes the name unique across sensor runs (sequence numbers restart),
	 * the interface index among interfaces of one name (`-i lo,lo`, or a replayed
	 * pcapng with two "eth0") whose first packets share a timestamp. */
	char base[STATE_NAME_MAX], name[STATE_NAME_MAX - 6];
	int len = segname_format(name, sizeof(name), first_ns, ss->epoch, seq, iface, ifname);
	if (len < 0)
		return len;
	g->committed = 0;
	g->fd = -1;
	/* Should the name still be taken (a file some failure left behind), a numeric
	 * suffix makes a free one, as store_rename() does: an exclusive create that fails
	 * the same way on every retry would stall the sensor for good. */
	for (int i = 0; g->fd < 0; i++) {
		if (i == 1000)
			return -EEXIST;
		int m = i == 0 ? snprintf(base, sizeof(base), ".open-%s", name)
			       : snprintf(base, sizeof(base), ".open-%.*s.%d.pcap", len - 5, name, i);
		if (m < 0 || (size_t)m >= sizeof(base))
			return -ENAMETOOLONG;
		snprintf(g->open_path, sizeof(g->open_path), "%s/%s", ss->seg_dir, base);
		g->fd = open(g->open_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		int e = g->fd < 0 ? errno : 0;
		/* The folder removed under a running receiver: make it again. */
		if (e == ENOENT && (e = -store_mkdirs(ss->seg_dir)) == 0) {
			g->fd = open(g->open_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
			e = g->fd < 0 ? errno : 0;
		}
		if (e != 0 && e != EEXIST)
			return -e;
	}
	memcpy(g->base, base, sizeof(base));
	snprintf(g->final_path, sizeof(g->final_path), "%s/%s", ss->seg_dir, base + 6);
	g->w = pcapw_new(g->fd, ss->ifaces[iface].linktype, ss->ifaces[iface].snaplen);
	int rc = g->w ? pcapw_header(g->w) : -ENOMEM;
	if (rc != 0) {
		pcapw_free(g->w);
		g->w = NULL;
		close(g->fd);
		g->fd = -1;
		unlink(g->open_path);
		return rc;
	}
	g->opened_ms = store_mono_ms();
	g->adopted = false;
	g->synced = 0;
	g->sync_lost = false;
	g->packets = 0;
	g->min_ns = INT64_MAX;
	g->max_ns = INT64_MIN;
	g->linktype = ss->ifaces[iface].linktype;
	g->snaplen = ss->ifaces[iface].snaplen;
	memcpy(g->ifname, ss->ifaces[iface].name, sizeof(g->ifname));
	g->ifname[sizeof(g->ifname) - 1] = '\0';
	return 0;
}

static int
store_single_write(struct store *s, struct store_sensor *ss, const struct proto_rec *r)
{
	uint32_t lt = ss->ifaces[r->iface].linktype;
	if (!s->single) {
		s->single = pcapw_new(s->single_fd, lt, PROTO_MAX_SNAPLEN);
		if (!s->single)
			return -ENOMEM;
		s->single_linktype = lt;
		int rc = pcapw_header(s->single);
		if (rc != 0)
			return rc;
	}
	if (lt != s->single_linktype) {
		ss->c.linktype_rejects++;
		return 0;
	}
	return pcapw_write(s->single, r->ts_ns, r->data, r->caplen, r->origlen);
}

/* Undoes a batch that failed half-way: every open segment is cut back to what the
 * last state write committed and put into place (or, if that fails too, kept
 * finished and tracked); the sensor will send the batch again. */
static void
store_rollback(struct store_sensor *ss)
{
	for (int i = 0; i < PROTO_MAX_IFACES; i++) {
		ss->seg[i].touched = false;
		store_segment_close(ss, &ss->seg[i]);
	}
	if (*ss->store->dir && store_state_write(ss) != 0)
		log_warnx("store: %s: cannot update state after a failed batch", ss->id);
}

enum store_result
store_errno_result(int neg_errno)
{
	switch (-neg_errno) {
	/* The storage is full, failing or unavailable for now; all of these can pass
	 * (space freed, a disk replaced, permissions or a mount repaired) while the
	 * sensor keeps the batch, so the batch is held and tried again. */
	case ENOSPC:
	case EDQUOT:
	case EIO:
	case ENOMEM:
	case ENOBUFS:
	case EAGAIN:
	case EINTR:
	case EMFILE:
	case ENFILE:
	case EBUSY:
	case ETIMEDOUT:
	case ESTALE:
	case EROFS:
	case EACCES:
	case EPERM:
	case ENOENT:
		return STORE_RETRY;
	/* Anything else (EOVERFLOW, EINVAL, EFBIG, ENAMETOOLONG, EEXIST, EPIPE ...) would
	 * fail the same way on every retry of the same batch. */
	default:
		return STORE_FAILED;
	}
}

const char *
store_unstorable_name(enum store_unstorable why, bool key)
{
	switch (why) {
	case STORE_UNSTORABLE_TS:
		return key ? "timestamp_beyond_pcap_range" : "timestamp beyond pcap range";
	default:
		return "other";
	}
}

/* stats.json, the state file and the periodic log name every reason: add it there too. */
_Static_assert(STORE_UNSTORABLE_N == 1, "a new unstorable reason needs its counter kept and shown");

/* Why the record can never be stored, or -1 when it can. The segments and the
 * single file are classic pcap: 32-bit unsigned seconds, so nothing after
 * 2106-02-07T06:28:15Z (pcapw_write() would refuse it with EOVERFLOW every time). */
static int
store_unstorable_why(const struct proto_rec *r)
{
	if (r->ts_ns / 1000000000u > UINT32_MAX)
		return STORE_UNSTORABLE_TS;
	return -1;
}

/* A digest of a batch's record bytes, eight at a time (every byte counts; the byte-wise
 * FNV of store_fnv64 would cost a millisecond per MiB on the ingest path). */
static uint64_t
store_batch_digest(const uint8_t *p, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x94d049bb133111ebull;
	return hash_end(h);
}

/* What store_batch_check() learnt about a batch that the later steps need. */
struct store_scan {
	uint32_t n;                       /* records */
	uint32_t n_bad, first_bad;        /* unstorable ones, and the first of them */
	uint32_t bad[STORE_UNSTORABLE_N]; /* by reason */
	uint64_t digest;                  /* of the record bytes, for the recent ring */
};

/*
 * Step 1: is this a batch to store? Checks the sequence number, tells a resend
 * (STORE_DUPLICATE) from a number reused with other bytes (STORE_SEQ_REUSED), and
 * validates every record before anything is written, so that a malformed batch
 * changes nothing (STORE_REJECTED). STORE_STORED means: go on and store it.
 */
static enum store_result
store_batch_check(struct store_sensor *ss, uint64_t seq, const uint8_t *raw, uint32_t raw_len,
	uint32_t n_records, struct store_scan *v, char *err, size_t errlen)
{
	struct proto_rec_iter it;
	struct proto_rec r;
	int rc;

	memset(v, 0, sizeof(*v));
	if (seq == 0 || seq == UINT64_MAX) {
		/* Sequence numbers start at 1 (PROTOCOL.md 6.3); the top value would wrap. */
		snprintf(err, errlen, "batch sequence number %" PRIu64 " is out of range", seq);
		ss->c.rejected_batches++;
		return STORE_REJECTED;
	}
	v->digest = store_batch_digest(raw, raw_len);
	if (seq < ss->next_seq) {
		/* A duplicate is a batch we have, not a new one under a number already used
		 * (PROTOCOL.md 6.3): dropping that would lose it silently. */
		if (ss->recent[seq % STORE_RECENT].seq == seq &&
			ss->recent[seq % STORE_RECENT].epoch == ss->epoch &&
			ss->recent[seq % STORE_RECENT].digest != v->digest) {
			ss->c.rejected_batches++;
			snprintf(err, errlen,
				"batch %" PRIu64 " of epoch %016" PRIx64
				" is not the batch stored under that "
				"number: the sensor reused it and must take a new epoch",
				seq, ss->epoch);
			return STORE_SEQ_REUSED;
		}
		ss->c.duplicates++;
		return STORE_DUPLICATE;
	}
	proto_rec_iter_init(&it, raw, raw_len, ss->n_ifaces, PROTO_MAX_SNAPLEN);
	while ((rc = proto_rec_next(&it, &r)) == 1) {
		if (r.caplen > ss->ifaces[r.iface].snaplen) {
			rc = PROTO_EINVAL;
			break;
		}
		int why = store_unstorable_why(&r);
		if (why >= 0) {
			if (v->n_bad++ == 0)
				v->first_bad = v->n;
			v->bad[why]++;
		}
		v->n++;
	}
	if (rc == 0 && v->n != n_records)
		rc = PROTO_EINVAL;
	if (rc != 0) {
		snprintf(err, errlen, "batch %" PRIu64 ": malformed record %u: %s", seq, v->n,
			proto_strerror(rc));
		ss->c.rejected_batches++;
		return STORE_REJECTED;
	}
	return STORE_STORED;
}

/* Step 2: writes every storable record to its interface's segment (opened on first
 * use) and to the single file. Returns 0 or -errno with err set; *bytes gets the
 * packet bytes written. */
static int
store_batch_write(struct store_sensor *ss, uint64_t seq, const uint8_t *raw, uint32_t raw_len,
	const struct store_scan *v, uint64_t *bytes, char *err, size_t errlen)
{
	struct store *s = ss->store;
	struct proto_rec_iter it;
	struct proto_rec r;
	int rc;

	*bytes = 0;
	proto_rec_iter_init(&it, raw, raw_len, ss->n_ifaces, PROTO_MAX_SNAPLEN);
	while (proto_rec_next(&it, &r) == 1) {
		if (v->n_bad && store_unstorable_why(&r) >= 0)
			continue;
		if (*s->dir) {
			struct segment *g = &ss->seg[r.iface];
			if (g->fd < 0 && (rc = store_segment_open(ss, r.iface, r.ts_ns, seq)) != 0) {
				snprintf(err, errlen, "cannot create segment %s: %s", g->open_path,
					strerror(-rc));
				return rc;
			}
			if ((rc = pcapw_write(g->w, r.ts_ns, r.data, r.caplen, r.origlen)) != 0) {
				snprintf(err, errlen, "cannot write %s: %s", g->open_path, strerror(-rc));
				return rc;
			}
			g->packets++;
			if ((int64_t)r.ts_ns < g->min_ns)
				g->min_ns = (int64_t)r.ts_ns;
			if ((int64_t)r.ts_ns > g->max_ns)
				g->max_ns = (int64_t)r.ts_ns;
			g->touched = true;
		}
		if (s->single_fd >= 0 && (rc = store_single_write(s, ss, &r)) != 0) {
			snprintf(err, errlen, "cannot write %s: %s", s->o.single_file, strerror(-rc));
			return rc;
		}
		*bytes += r.caplen;
	}
	return 0;
}

/* One batch of a run being stored (store_batches()). */
struct store_run_item {
	uint64_t seq;
	uint64_t bytes;
	struct store_scan v;
};

/* Step 3: makes a run of written batches durable (per the fsync policy: one flush and
 * one sync per segment for the whole run), then commits them, with the counters that
 * describe them, in one state write: after this they may be ACKed. Returns 0 or -errno
 * with err set and nothing committed. */
static int
store_batch_commit(
	struct store_sensor *ss, const struct store_run_item *run, unsigned n, char *err, size_t errlen)
{
	struct store *s = ss->store;
	int rc;

	uint64_t t0 = store_mono_us();
	for (int i = 0; i < ss->n_ifaces; i++) {
		struct segment *g = &ss->seg[i];
		if (!g->touched)
			continue;
		if ((rc = pcapw_flush(g->w)) != 0 ||
			(s->o.fsync == STORE_FSYNC_BATCH &&
				(rc = store_seg_sync(g, pcapw_durable_bytes(g->w))) != 0)) {
			snprintf(err, errlen, "cannot write %s: %s", g->open_path, strerror(-rc));
			return rc;
		}
	}
	uint64_t t1 = store_mono_us();
	ss->took.seg_sync += t1 - t0;
	if (s->single && (rc = pcapw_flush(s->single)) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", s->o.single_file, strerror(-rc));
		return rc;
	}
	/* The counters go into the same state write as the data they describe. */
	struct store_counters before = ss->c;
	uint64_t prev_next = ss->next_seq;
	for (unsigned k = 0; k < n; k++) {
		const struct store_run_item *it = &run[k];
		if (it->seq > ss->next_seq)
			ss->c.missing_batches += it->seq - ss->next_seq;
		ss->c.batches++;
		ss->c.packets += it->v.n - it->v.n_bad;
		for (int i = 0; i < STORE_UNSTORABLE_N; i++)
			ss->c.unstorable[i] += it->v.bad[i];
		ss->c.bytes += it->bytes;
		ss->next_seq = it->seq + 1;
	}
	if (*s->dir) {
		uint64_t was[PROTO_MAX_IFACES];
		for (int i = 0; i < PROTO_MAX_IFACES; i++) {
			was[i] = ss->seg[i].committed;
			if (ss->seg[i].fd >= 0 && ss->seg[i].w)
				ss->seg[i].committed = pcapw_bytes(ss->seg[i].w);
		}
		rc = store_state_write(ss);
		ss->took.state += store_mono_us() - t1;
		if (rc != 0) {
			/* Not committed: the rollback cuts back to what was. */
			for (int i = 0; i < PROTO_MAX_IFACES; i++)
				ss->seg[i].committed = was[i];
			ss->next_seq = prev_next;
			ss->c = before;
			snprintf(err, errlen, "cannot write the state of sensor %s: %s", ss->id,
				strerror(-rc));
			return rc;
		}
	}
	uint64_t next = prev_next;
	for (unsigned k = 0; k < n; k++) {
		const struct store_run_item *it = &run[k];
		if (it->seq > next)
			/* The sensor lost these batches (its spool overflowed) or they went to
			 * another receiver; either way they are not here, and that is counted. */
			log_warnx("store: %s: batches %" PRIu64 "..%" PRIu64 " never arrived", ss->id, next,
				it->seq - 1);
		next = it->seq + 1;
		if (it->v.n_bad) {
			/* Acknowledged like the rest of the batch: retrying could never store them. */
			static struct log_limit lim;
			for (int i = 0; i < STORE_UNSTORABLE_N; i++)
				if (it->v.bad[i] && log_limit_ok(&lim, 10, 1))
					log_warnx("sensor %s: batch %" PRIu64 ": %" PRIu32
						  " record(s) not stored: %s (first: record %" PRIu32
						  "); counted as unstorable, the rest of the batch stored",
						ss->id, it->seq, it->v.bad[i],
						store_unstorable_name(i, false), it->v.first_bad);
		}
	}
	return 0;
}

/* Step 4: closes the segments the run filled (renamed into place, indexed) and
 * remembers its batches for telling resends from reused numbers. */
static void
store_batch_rotate(struct store_sensor *ss, const struct store_run_item *run, unsigned n)
{
	struct store *s = ss->store;
	uint64_t t0 = store_mono_us();

	for (int i = 0; i < ss->n_ifaces; i++) {
		struct segment *g = &ss->seg[i];
		if (g->touched && pcapw_bytes(g->w) >= s->o.segment_bytes)
			store_segment_close(ss, g);
		g->touched = false;
	}
	ss->took.rotate += store_mono_us() - t0;
	for (unsigned k = 0; k < n; k++) {
		const struct store_run_item *it = &run[k];
		if (s->o.fsync == STORE_FSYNC_INTERVAL) {
			ss->unsynced = true;
			ss->unsynced_bytes += it->bytes;
		}
		ss->recent[it->seq % STORE_RECENT].epoch = ss->epoch;
		ss->recent[it->seq % STORE_RECENT].seq = it->seq;
		ss->recent[it->seq % STORE_RECENT].digest = it->v.digest;
	}
}

/* True when a segment the run wrote is full: the run is committed there, so that
 * segments end where they would if every batch were stored on its own. */
static bool
store_run_full(const struct store_sensor *ss)
{
	for (int i = 0; i < ss->n_ifaces; i++) {
		const struct segment *g = &ss->seg[i];
		if (g->touched && g->w && pcapw_bytes(g->w) >= ss->store->o.segment_bytes)
			return true;
	}
	return false;
}

static unsigned
store_batches_run(struct store_sensor *ss, struct store_batch_in *b, unsigned n, char *err, size_t errlen);

/* A group that takes longer than this is logged with where its time went. */
#define STORE_SLOW_US 500000

unsigned
store_batches(struct store_sensor *ss, struct store_batch_in *b, unsigned n, char *err, size_t errlen)
{
	memset(&ss->took, 0, sizeof(ss->took));
	uint64_t t0 = store_mono_us();
	unsigned r = store_batches_run(ss, b, n, err, errlen);
	store_publish(ss);
	uint64_t us = store_mono_us() - t0;
	if (us >= STORE_SLOW_US) {
		/* The sensor's window fills while its ACKs wait: say what the disk did. */
		static struct log_limit lim;
		uint64_t raw = 0;
		for (unsigned i = 0; i < n; i++)
			raw += b[i].raw_len;
		uint64_t other = us - (ss->took.seg_sync + ss->took.state + ss->took.rotate);
		if (log_limit_ok(&lim, 5, 60))
			log_warnx("store: %s: slow storage: %u batch(es), %" PRIu64 " KiB, took %" PRIu64
				  " ms (segment flush and sync %" PRIu64 " ms, state %" PRIu64
				  " ms, segment close %" PRIu64 " ms, checks and writes %" PRIu64 " ms)",
				ss->id, n, raw >> 10, us / 1000, ss->took.seg_sync / 1000,
				ss->took.state / 1000, ss->took.rotate / 1000, other / 1000);
	}
	return r;
}

static unsigned
store_batches_run(struct store_sensor *ss, struct store_batch_in *b, unsigned n, char *err, size_t errlen)
{
	struct store *s = ss->store;
	struct store_run_item run[STORE_BATCHES_MAX];
	unsigned idx[STORE_BATCHES_MAX], nrun = 0;
	bool checked_pending = false;
	int rc;

	if (n > STORE_BATCHES_MAX)
		n = STORE_BATCHES_MAX;
	for (unsigned i = 0; i < n; i++)
		b[i].sr = STORE_NOT_TRIED;
	for (unsigned i = 0; i <= n; i++) {
		enum store_result sr = STORE_STORED;
		if (i < n) {
			struct store_run_item *it = &run[nrun];
			sr = store_batch_check(
				ss, b[i].seq, b[i].raw, b[i].raw_len, b[i].n_records, &it->v, err, errlen);
			if (sr == STORE_DUPLICATE) {
				b[i].sr = sr;
				continue;
			}
			/* A segment that could not be put into place holds committed data: it goes
			 * first, and until it is in place nothing new is stored (the sensor keeps
			 * the batch). */
			if (sr == STORE_STORED && !checked_pending && *s->dir) {
				checked_pending = true;
				if ((rc = store_finish_pending(ss, err, errlen)) != 0) {
					ss->c.storage_errors++;
					sr = store_errno_result(rc);
				}
			}
			if (sr == STORE_STORED) {
				it->seq = b[i].seq;
				if ((rc = store_batch_write(ss, b[i].seq, b[i].raw, b[i].raw_len, &it->v,
					     &it->bytes, err, errlen)) != 0) {
					/* Undoes this batch and the uncommitted ones before it. */
					ss->c.storage_errors++;
					if (*s->dir)
						store_rollback(ss);
					sr = store_errno_result(rc < 0 ? rc : -EIO);
					for (unsigned k = 0; k < nrun; k++)
						b[idx[k]].sr = sr;
					b[i].sr = sr;
					return nrun ? idx[0] : i;
				}
				idx[nrun++] = i;
				b[i].sr = STORE_STORED; /* once committed */
				if (i + 1 < n && !store_run_full(ss))
					continue;
			}
		}
		/* Commit what was written before this point (the end, a full segment, or a
		 * batch that is not stored). */
		if (nrun) {
			char cerr[400];
			if ((rc = store_batch_commit(ss, run, nrun, cerr, sizeof(cerr))) != 0) {
				ss->c.storage_errors++;
				if (*s->dir)
					store_rollback(ss);
				enum store_result fr = store_errno_result(rc < 0 ? rc : -EIO);
				for (unsigned k = 0; k < nrun; k++)
					b[idx[k]].sr = fr;
				snprintf(err, errlen, "%s", cerr);
				return idx[0];
			}
			store_batch_rotate(ss, run, nrun);
			nrun = 0;
		}
		if (sr != STORE_STORED) {
			b[i].sr = sr;
			return i;
		}
	}
	return n;
}

enum store_result
store_batch(struct store_sensor *ss, uint64_t seq, const uint8_t *raw, uint32_t raw_len, uint32_t n_records,
	char *err, size_t errlen)
{
	struct store_batch_in b = { .seq = seq, .raw = raw, .raw_len = raw_len, .n_records = n_records };
	store_batches(ss, &b, 1, err, errlen);
	return b.sr;
}

void
store_sensor_stats(struct store_sensor *ss, const struct proto_stats *st)
{
	for (int i = 0; i < st->n; i++) {
		uint64_t v = st->s[i].value;
		if (st->s[i].id < STORE_SENSOR_STATS) {
			ss->s_stat[st->s[i].id] = v;
			ss->s_seen |= 1ull << st->s[i].id;
		}
		switch (st->s[i].id) {
		case PROTO_ST_CAPTURED:
			ss->c.s_captured = v;
			break;
		case PROTO_ST_KERNEL_DROPS:
			ss->c.s_kernel_drops = v;
			break;
		case PROTO_ST_IF_DROPS:
			ss->c.s_if_drops = v;
			break;
		case PROTO_ST_QUEUE_DROPS:
			ss->c.s_queue_drops = v;
			break;
		case PROTO_ST_SPOOL_DROPS:
			ss->c.s_spool_drops = v;
			break;
		default:
			break;
		}
	}
	store_publish(ss);
}

/* The ingest latency lines of stats.json, for one sensor's histogram or all. */
/* Adds the ACK latency (a histogram's count, P50, P99, max) and the index waits to a
 * stats.json object. Returns 0 or -1 (out of memory). */
static int
store_latency_add(struct store *s, const struct lathist *h, json_t *o)
{
	struct lathist copy;
	struct index_wait iw = { 0 };
	pthread_mutex_lock(&s->lat_mu);
	copy = *h;
	pthread_mutex_unlock(&s->lat_mu);
	if (s->ix)
		index_wait_get(s->ix, &iw);
	json_t *lat = json_pack("{s:I, s:I, s:I, s:I}", "count", (json_int_t)copy.count, "p50",
		(json_int_t)lathist_quantile(&copy, 0.50), "p99", (json_int_t)lathist_quantile(&copy, 0.99),
		"max", (json_int_t)copy.max);
	if (!lat || json_object_set_new(o, "ack_latency_us", lat) != 0 ||
		json_object_set_new(o, "index_wait_us_max", json_integer((json_int_t)iw.max_us)) != 0 ||
		json_object_set_new(o, "index_busy_deferred", json_integer((json_int_t)iw.busy)) != 0)
		return -1;
	return 0;
}

/* Writes o to path through path.tmp and a rename. Returns 0 or -errno. */
static int
store_json_write(const char *path, const char *tmp, json_t *o)
{
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	int rc = json_dumpf(o, f, JSON_INDENT(1)) != 0 || fputc('\n', f) == EOF || ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

void
store_ack_latency(struct store_sensor *ss, uint64_t us)
{
	struct store *s = ss->store;
	pthread_mutex_lock(&s->lat_mu);
	lathist_add(&ss->ack_lat, us);
	lathist_add(&s->ack_lat, us);
	pthread_mutex_unlock(&s->lat_mu);
}

bool
store_sensor_connected(const struct store_sensor *ss)
{
	return ss->connected;
}

int
store_write_stats(struct store *s)
{
	if (!*s->dir)
		return 0;
	char path[400], tmp[420];
	unsigned n = 0, up = 0;
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next) {
		n++;
		up += ss->connected;
	}
	snprintf(path, sizeof(path), "%s/stats.json", s->dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_t *o = json_pack("{s:I, s:I}", "sensors", (json_int_t)n, "connected", (json_int_t)up);
	int rc = !o || store_latency_add(s, &s->ack_lat, o) != 0 ? -ENOMEM : store_json_write(path, tmp, o);
	json_decref(o);
	return rc;
}

int
store_sensor_write_stats(struct store_sensor *ss, bool connected)
{
	struct store *s = ss->store;
	if (!*s->dir)
		return 0;
	const struct store_counters *c = &ss->c;
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/sensors/%s/stats.json", s->dir, ss->id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* The sensor's own counters say what it captured and lost before the wire; ours
	 * say what arrived and was stored. Together: captured / shipped / stored / lost. */
	json_t *o = json_pack("{s:s, s:b, s:I, s:I,"
			      " s:{s:I, s:I, s:I, s:I},"
			      " s:{s:I, s:I, s:I},"
			      " s:{s:I, s:I, s:I, s:I, s:I, s:{s:I}},"
			      " s:{s:I, s:I, s:I, s:I, s:I}}",
		"sensor", ss->id, "connected", connected, "epoch", (json_int_t)ss->epoch, "next_batch",
		(json_int_t)ss->next_seq, "stored", "batches", (json_int_t)c->batches, "packets",
		(json_int_t)c->packets, "bytes", (json_int_t)c->bytes, "segments_closed",
		(json_int_t)c->segments_closed, "retention", "segments", (json_int_t)c->retention_segments,
		"packets", (json_int_t)c->retention_packets, "bytes", (json_int_t)c->retention_bytes,
		"receiver", "duplicate_batches", (json_int_t)c->duplicates, "rejected_batches",
		(json_int_t)c->rejected_batches, "missing_batches", (json_int_t)c->missing_batches,
		"linktype_rejects", (json_int_t)c->linktype_rejects, "storage_errors",
		(json_int_t)c->storage_errors, "unstorable_records",
		store_unstorable_name(STORE_UNSTORABLE_TS, true),
		(json_int_t)c->unstorable[STORE_UNSTORABLE_TS], "sensor_reported", "captured",
		(json_int_t)c->s_captured, "kernel_drops", (json_int_t)c->s_kernel_drops, "interface_drops",
		(json_int_t)c->s_if_drops, "queue_drops", (json_int_t)c->s_queue_drops, "spool_drops",
		(json_int_t)c->s_spool_drops);
	if (!o || store_latency_add(s, &ss->ack_lat, o) != 0) {
		json_decref(o);
		return -ENOMEM;
	}
	int rc = store_json_write(path, tmp, o);
	json_decref(o);
	return rc;
}

const struct store_counters *
store_sensor_counters(const struct store_sensor *ss)
{
	return &ss->c;
}
const char *
store_sensor_id(const struct store_sensor *ss)
{
	return ss->id;
}

void
store_foreach(struct store *s, void (*fn)(void *arg, struct store_sensor *ss), void *arg)
{
	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		fn(arg, ss);
}

int
store_sensor_needs_sync(const struct store_sensor *ss)
{
	return ss->unsynced;
}

uint64_t
store_unsynced_bytes(const struct store *s)
{
	uint64_t n = 0;
	for (const struct store_sensor *ss = s->sensors; ss; ss = ss->next)
		n += ss->unsynced_bytes;
	return n;
}

int
store_sync(struct store *s)
{
	int ret = 0;
	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next) {
		if (!ss->unsynced)
			continue;
		/* A finished segment not yet in place counts as unsynced until it is (its
		 * last batches' ACKs wait for that sync). */
		int rc = store_finish_pending(ss, NULL, 0);
		for (int i = 0; i < PROTO_MAX_IFACES && rc == 0; i++)
			if (ss->seg[i].fd >= 0 && ss->seg[i].w)
				rc = store_seg_sync(&ss->seg[i], pcapw_durable_bytes(ss->seg[i].w));
		/* The state, like a segment, is written again after a failed sync. */
		if (rc == 0 && ss->state_fd >= 0 && ss->state_lost)
			rc = store_state_write(ss);
		if (rc == 0 && ss->state_fd >= 0 && fdatasync(ss->state_fd) != 0) {
			rc = -errno;
			ss->state_lost = true;
		}
		if (rc == 0)
			ss->state_lost = false;
		if (rc == 0) {
			ss->unsynced = false;
			ss->unsynced_bytes = 0;
		} else {
			ret = rc;
		}
	}
	return ret;
}

void
store_tick(struct store *s)
{
	uint64_t now = store_mono_ms();
	for (struct store_sensor *ss = s->sensors; ss; ss = ss->next) {
		for (int i = 0; i < PROTO_MAX_IFACES; i++) {
			struct segment *g = &ss->seg[i];
			/* Finished ones that failed to go into place are retried here too. */
			if (g->fd >= 0 && (!g->w || now - g->opened_ms >= s->o.segment_ms))
				store_segment_close(ss, g);
		}
	}
	if (s->ix && index_pending(s->ix))
		index_retry(s->ix, store_on_indexed, s);
	store_retention(s);
	store_publish_all(s);
}

void
store_free(struct store *s)
{
	if (!s)
		return;
	/* Shutdown: nothing waits for an ACK any more, so the last segment rows may wait
	 * for another writer's transaction (bounded) rather than be left to the next start. */
	if (s->ix)
		index_set_wait(s->ix, INDEX_SHUTDOWN_WAIT_MS);
	while (s->sensors) {
		struct store_sensor *ss = s->sensors;
		s->sensors = ss->next;
		store_sensor_end(ss);
		/* Segments that still could not be put into place stay listed in the state
		 * file: the next start takes them over. */
		for (int i = 0; i < PROTO_MAX_IFACES; i++)
			if (ss->seg[i].fd >= 0)
				close(ss->seg[i].fd);
		if (ss->state_fd >= 0)
			close(ss->state_fd);
		free(ss);
	}
	if (s->ix && index_pending(s->ix))
		index_retry(s->ix, store_on_indexed, s);
	retention_free(s->ret);
	index_close(s->ix);
	if (s->single)
		pcapw_free(s->single);
	if (s->single_owned && s->single_fd >= 0)
		close(s->single_fd);
	pthread_mutex_destroy(&s->lat_mu);
	pthread_mutex_destroy(&s->pub_mu);
	free(s);
}
