/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/outputs/rotate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shared/fsutil.h"
#include "shared/log.h"

#define ROT_PCAP_HDR   24
#define ROT_REC_HDR    16
#define ROT_MAX_CAPLEN 262144
/* Stream bytes held while a record is incomplete: the largest record and one read. */
#define ROT_READ       (256u << 10)
#define ROT_BUF        (ROT_READ + ROT_REC_HDR + ROT_MAX_CAPLEN)
#define ROT_TICK_MS    200
#define ROT_RETRY_NS   1000000000LL
#define ROT_DROPLOG_NS 10000000000LL

struct rot_file {
	uint64_t seq, size;
	char name[ROTATE_NAME_MAX];
};

struct rotate {
	struct rotate_opts o;
	char *dir, *filter, **sensors;
	char name[96];
	pthread_t th;
	atomic_bool stop;
	struct live_consumer *lc;
	/* The stream. */
	uint8_t *buf;
	size_t used;
	bool have_hdr;
	uint8_t hdr[ROT_PCAP_HDR];
	/* The file being written. */
	int fd;
	char tmp[ROTATE_NAME_MAX + 16];
	uint64_t seq, fsize, fpackets;
	int64_t opened_ns, retry_ns, last_mtime_ns, droplog_ns;
	/* Final files, oldest first. */
	struct rot_file *files;
	size_t n_files, cap_files;
	uint64_t total;
	/* Counters, under mu; drops of consumers cut off are added to gone_drops. */
	pthread_mutex_t mu;
	struct rotate_stats st;
	uint64_t gone_drops[LIVE_DROP_N], logged_drops;
};

/* The running output, for rotate_stats_current(). */
static pthread_mutex_t rot_cur_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rotate *rot_cur;

/* Naming --------------------------------------------------------------------------------- */

int
rotate_name(char *buf, size_t len, uint64_t seq, int64_t wall_s)
{
	struct tm tm;
	time_t t = (time_t)wall_s;
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	int n = snprintf(buf, len, ROTATE_PREFIX "%0*" PRIu64 "-%04d%02d%02dT%02d%02d%02dZ.pcap",
		ROTATE_SEQ_DIGITS, seq, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		tm.tm_sec);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int
rotate_parse_name(const char *name, uint64_t *seq)
{
	static const char pfx[] = ROTATE_PREFIX;
	if (strncmp(name, pfx, sizeof(pfx) - 1) != 0)
		return -EINVAL;
	const char *p = name + sizeof(pfx) - 1;
	uint64_t v = 0;
	for (int i = 0; i < ROTATE_SEQ_DIGITS; i++, p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p++ != '-')
		return -EINVAL;
	for (int i = 0; i < 15; i++, p++) {
		bool digit = *p >= '0' && *p <= '9';
		if (i == 8 ? *p != 'T' : !digit)
			return -EINVAL;
	}
	if (strcmp(p, "Z.pcap") != 0)
		return -EINVAL;
	*seq = v;
	return 0;
}

int64_t
rotate_next_mtime(int64_t prev_ns, int64_t now_ns)
{
	int64_t t = now_ns - now_ns % 1000000;
	if (prev_ns > 0 && t < prev_ns - prev_ns % 1000000 + 1000000)
		t = prev_ns - prev_ns % 1000000 + 1000000;
	return t;
}

/* Files ---------------------------------------------------------------------------------- */

static int64_t
rot_now(clockid_t clk)
{
	struct timespec t;
	clock_gettime(clk, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void
rot_count(struct rotate *r, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&r->mu);
	*field += n;
	pthread_mutex_unlock(&r->mu);
}

static int
rot_add_file(struct rotate *r, const char *name, uint64_t seq, uint64_t size)
{
	if (r->n_files == r->cap_files) {
		size_t cap = r->cap_files ? r->cap_files * 2 : 64;
		struct rot_file *f = realloc(r->files, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		r->files = f;
		r->cap_files = cap;
	}
	struct rot_file *f = &r->files[r->n_files++];
	f->seq = seq;
	f->size = size;
	snprintf(f->name, sizeof(f->name), "%s", name);
	r->total += size;
	return 0;
}

static int
rot_file_cmp(const void *a, const void *b)
{
	const struct rot_file *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Deletes the oldest final files beyond max_files / max_size (never the newest one). */
static void
rot_bound(struct rotate *r)
{
	size_t del = 0;
	while (r->n_files - del > 1 &&
		((r->o.max_files && r->n_files - del > r->o.max_files) ||
			(r->o.max_size && r->total > r->o.max_size))) {
		char path[PATH_MAX];
		struct rot_file *f = &r->files[del++];
		r->total -= f->size;
		if (fsu_path(path, sizeof(path), "%s/%s", r->dir, f->name) != 0)
			continue;
		if (unlink(path) != 0) {
			if (errno == ENOENT)
				continue; /* removed by someone else: nothing to count */
			log_warnx("files: cannot delete %s: %s", path, strerror(errno));
			continue;
		}
		pthread_mutex_lock(&r->mu);
		r->st.deleted_files++;
		r->st.deleted_bytes += f->size;
		pthread_mutex_unlock(&r->mu);
		log_debug("files: deleted %s (%" PRIu64 " bytes; outputs.files bounds)", path, f->size);
	}
	if (del) {
		memmove(r->files, r->files + del, (r->n_files - del) * sizeof(*r->files));
		r->n_files -= del;
	}
}

/* Start: the next sequence number and mtime after the files already there; leftover
 * partial files of a receiver that died are removed. */
static int
rot_scan(struct rotate *r, char *err, size_t errlen)
{
	DIR *d = opendir(r->dir);
	if (!d) {
		snprintf(err, errlen, "outputs.files.dir: %s: %s", r->dir, strerror(errno));
		return -1;
	}
	struct dirent *e;
	uint64_t max_seq = 0;
	bool any = false;
	while ((e = readdir(d))) {
		char path[PATH_MAX];
		struct stat sb;
		uint64_t seq;
		if (fsu_path(path, sizeof(path), "%s/%s", r->dir, e->d_name) != 0)
			continue;
		size_t n = strlen(e->d_name);
		if (strncmp(e->d_name, "." ROTATE_PREFIX, strlen("." ROTATE_PREFIX)) == 0 && n > 5 &&
			strcmp(e->d_name + n - 5, ".part") == 0) {
			if (unlink(path) == 0)
				log_warnx("files: removed %s, a partial file of an earlier run", path);
			continue;
		}
		if (rotate_parse_name(e->d_name, &seq) != 0 || lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
		if (mt > r->last_mtime_ns)
			r->last_mtime_ns = mt;
		if (!any || seq > max_seq)
			max_seq = seq;
		any = true;
		if (rot_add_file(r, e->d_name, seq, (uint64_t)sb.st_size) != 0) {
			closedir(d);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	closedir(d);
	if (r->n_files > 1)
		qsort(r->files, r->n_files, sizeof(*r->files), rot_file_cmp);
	r->seq = any ? max_seq + 1 : 1;
	if (r->n_files)
		log_info("files: %zu file(s) already in %s; the next is number %" PRIu64, r->n_files, r->dir,
			r->seq);
	rot_bound(r);
	return 0;
}

/* Removes the file being written after a failure; its packets are counted lost. */
static void
rot_fail(struct rotate *r, const char *what, int e)
{
	log_warnx("files: %s %s/%s: %s; the file is removed (%" PRIu64 " packets lost), the next is "
		  "tried in a second",
		what, r->dir, r->tmp, strerror(e), r->fpackets);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	char path[PATH_MAX];
	if (fsu_path(path, sizeof(path), "%s/%s", r->dir, r->tmp) == 0)
		unlink(path);
	pthread_mutex_lock(&r->mu);
	r->st.write_errors++;
	r->st.lost_packets += r->fpackets;
	pthread_mutex_unlock(&r->mu);
	r->fpackets = 0;
	r->retry_ns = rot_now(CLOCK_MONOTONIC) + ROT_RETRY_NS;
}

/* Completes the current file: fsync, mtime, rename into place, bounds. */
static void
rot_finish(struct rotate *r)
{
	if (r->fd < 0)
		return;
	char tmp[PATH_MAX], fin[PATH_MAX], name[ROTATE_NAME_MAX];
	int64_t now = rot_now(CLOCK_REALTIME), mt = rotate_next_mtime(r->last_mtime_ns, now);
	struct timespec ts[2] = { { .tv_sec = now / 1000000000LL, .tv_nsec = now % 1000000000LL },
		{ .tv_sec = mt / 1000000000LL, .tv_nsec = mt % 1000000000LL } };
	if (r->o.fsync && fsync(r->fd) != 0) {
		rot_fail(r, "cannot fsync", errno);
		return;
	}
	if (futimens(r->fd, ts) != 0) {
		rot_fail(r, "cannot set the time of", errno);
		return;
	}
	if (close(r->fd) != 0) {
		r->fd = -1;
		rot_fail(r, "cannot close", errno);
		return;
	}
	r->fd = -1;
	rotate_name(name, sizeof(name), r->seq, now / 1000000000LL);
	if (fsu_path(tmp, sizeof(tmp), "%s/%s", r->dir, r->tmp) != 0 ||
		fsu_path(fin, sizeof(fin), "%s/%s", r->dir, name) != 0 || rename(tmp, fin) != 0) {
		rot_fail(r, "cannot rename", errno ? errno : ENAMETOOLONG);
		return;
	}
	if (r->o.fsync)
		fsu_fsync_path(r->dir); /* the rename itself survives a crash */
	r->last_mtime_ns = mt;
	pthread_mutex_lock(&r->mu);
	r->st.files++;
	r->st.packets += r->fpackets;
	r->st.bytes += r->fsize;
	pthread_mutex_unlock(&r->mu);
	log_debug("files: %s complete (%" PRIu64 " packets, %" PRIu64 " bytes)", fin, r->fpackets, r->fsize);
	if (rot_add_file(r, name, r->seq, r->fsize) != 0)
		log_warnx("files: out of memory: %s is not counted against the bounds", fin);
	r->seq++;
	r->fpackets = 0;
	rot_bound(r);
}

static int
rot_write(struct rotate *r, const void *p, size_t len)
{
	int rc = fsu_write_all(r->fd, p, len);
	if (rc != 0) {
		rot_fail(r, "cannot write", -rc);
		return -1;
	}
	r->fsize += len;
	return 0;
}

/* One complete record: into the current file, opening or rotating as needed. */
static void
rot_record(struct rotate *r, const uint8_t *rec, size_t len)
{
	int64_t mono = rot_now(CLOCK_MONOTONIC);
	if (r->fd >= 0 && r->o.rotate_size && r->fsize + len > r->o.rotate_size)
		rot_finish(r);
	if (r->fd < 0) {
		if (mono < r->retry_ns) {
			rot_count(r, &r->st.lost_packets, 1);
			return;
		}
		char path[PATH_MAX];
		snprintf(r->tmp, sizeof(r->tmp), "." ROTATE_PREFIX "%0*" PRIu64 ".pcap.part",
			ROTATE_SEQ_DIGITS, r->seq);
		if (fsu_path(path, sizeof(path), "%s/%s", r->dir, r->tmp) != 0 ||
			(r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
			r->fpackets = 1; /* this record */
			rot_fail(r, "cannot create", errno ? errno : ENAMETOOLONG);
			return;
		}
		r->fsize = 0;
		r->fpackets = 1; /* this record: lost with the file if the header cannot be written */
		r->opened_ns = mono;
		if (rot_write(r, r->hdr, sizeof(r->hdr)) == 0)
			rot_write(r, rec, len);
		return;
	}
	r->fpackets++;
	rot_write(r, rec, len);
}

/* Takes the complete records out of the stream buffer. */
static void
rot_parse(struct rotate *r)
{
	size_t off = 0;
	if (!r->have_hdr) {
		if (r->used < ROT_PCAP_HDR)
			return;
		memcpy(r->hdr, r->buf, ROT_PCAP_HDR);
		r->have_hdr = true;
		off = ROT_PCAP_HDR;
	}
	while (r->used - off >= ROT_REC_HDR) {
		uint32_t caplen;
		memcpy(&caplen, r->buf + off + 8, 4); /* the hub writes host order */
		if (caplen > ROT_MAX_CAPLEN) {
			/* Cannot happen with the hub's stream; resynchronising is impossible. */
			log_warnx("files: malformed live stream (caplen %u); joining again", caplen);
			r->used = 0;
			r->have_hdr = false;
			return;
		}
		if (r->used - off < ROT_REC_HDR + (size_t)caplen)
			break;
		rot_record(r, r->buf + off, ROT_REC_HDR + (size_t)caplen);
		off += ROT_REC_HDR + caplen;
	}
	memmove(r->buf, r->buf + off, r->used - off);
	r->used -= off;
}

/* The hub's drops of the current consumer, plus those of consumers before it. Room for
 * every consumer the hub allows (outputs.live.max_consumers is at most 1024): this one
 * joined early and is listed last. */
#define ROT_STATS_MAX 1024
static void
rot_drops(struct rotate *r, uint64_t out[LIVE_DROP_N])
{
	struct live_consumer_stats *each = calloc(ROT_STATS_MAX, sizeof(*each));
	struct live_stats ls = { .each = each, .max = each ? ROT_STATS_MAX : 0 };
	pthread_mutex_lock(&r->mu);
	memcpy(out, r->gone_drops, sizeof(r->gone_drops));
	pthread_mutex_unlock(&r->mu);
	live_stats_get(&ls);
	for (size_t i = 0; i < ls.n; i++)
		if (strcmp(each[i].name, r->name) == 0)
			for (int k = 0; k < LIVE_DROP_N; k++)
				out[k] += each[i].drops[k];
	free(each);
}

static void
rot_log_drops(struct rotate *r, bool force)
{
	int64_t mono = rot_now(CLOCK_MONOTONIC);
	if (!force && mono < r->droplog_ns)
		return;
	r->droplog_ns = mono + ROT_DROPLOG_NS;
	uint64_t d[LIVE_DROP_N], total = 0;
	rot_drops(r, d);
	for (int k = 0; k < LIVE_DROP_N; k++)
		total += d[k];
	if (total == r->logged_drops)
		return;
	log_warnx("files: %" PRIu64 " packets dropped before reaching %s since start (queue_full %" PRIu64
		  ", backlog %" PRIu64 ", linktype %" PRIu64 ", filter_linktype %" PRIu64 ", format %" PRIu64
		  ")",
		total, r->dir, d[LIVE_DROP_QUEUE], d[LIVE_DROP_BACKLOG], d[LIVE_DROP_LINKTYPE],
		d[LIVE_DROP_FILTER], d[LIVE_DROP_FORMAT]);
	r->logged_drops = total;
}

static int
rot_join(struct rotate *r, char *err, size_t errlen)
{
	struct live_consumer_opts co = {
		.sensors = (const char *const *)r->sensors,
		.n_sensors = r->o.n_sensors,
		.filter = r->filter,
		.format = LIVE_PCAP,
		.name = r->name,
		.fd = -1,
	};
	r->lc = live_consumer_new(&co, err, errlen);
	r->used = 0;
	r->have_hdr = false;
	return r->lc ? 0 : -1;
}

/* The consumer ends: its drops are kept. */
static void
rot_leave(struct rotate *r)
{
	uint64_t d[LIVE_DROP_N];
	rot_drops(r, d);
	live_consumer_free(r->lc);
	r->lc = NULL;
	pthread_mutex_lock(&r->mu);
	memcpy(r->gone_drops, d, sizeof(d));
	pthread_mutex_unlock(&r->mu);
}

static void *
rot_main(void *arg)
{
	struct rotate *r = arg;
	char err[256];
	while (!atomic_load(&r->stop)) {
		if (!r->lc) {
			if (rot_join(r, err, sizeof(err)) != 0) {
				if (errno == ESHUTDOWN)
					break;
				log_warnx("files: cannot join the live stream: %s; trying again", err);
				for (int i = 0; i < 5 && !atomic_load(&r->stop); i++)
					usleep(200000);
				continue;
			}
			rot_count(r, &r->st.restarts, 1);
		}
		ssize_t n = live_consumer_read(r->lc, r->buf + r->used, ROT_BUF - r->used, ROT_TICK_MS);
		if (n > 0) {
			r->used += (size_t)n;
			rot_parse(r);
		} else if (n == -ECONNABORTED) {
			/* Cut off (this thread was stuck on a slow disk): what it had is kept, the
			 * stream starts again with a header of its own. */
			rot_finish(r);
			rot_leave(r);
			continue;
		} else if (n < 0) {
			break; /* ESHUTDOWN */
		}
		if (r->fd >= 0 && r->o.rotate_ms &&
			rot_now(CLOCK_MONOTONIC) - r->opened_ns >= (int64_t)r->o.rotate_ms * 1000000LL)
			rot_finish(r);
		rot_log_drops(r, false);
	}
	rot_finish(r);
	rot_log_drops(r, true);
	if (r->lc)
		rot_leave(r);
	return NULL;
}

/* Life ----------------------------------------------------------------------------------- */

static void
rot_free(struct rotate *r)
{
	for (size_t i = 0; i < r->o.n_sensors; i++)
		free(r->sensors ? r->sensors[i] : NULL);
	free(r->sensors);
	free(r->dir);
	free(r->filter);
	free(r->files);
	free(r->buf);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

struct rotate *
rotate_start(const struct rotate_opts *o, char *err, size_t errlen)
{
	struct rotate *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->o = *o;
	r->fd = -1;
	r->o.n_sensors = 0;
	if (!(r->dir = strdup(o->dir)) || !(r->buf = malloc(ROT_BUF)) ||
		(o->filter && *o->filter && !(r->filter = strdup(o->filter))) ||
		(o->n_sensors && !(r->sensors = calloc(o->n_sensors, sizeof(char *)))))
		goto nomem;
	for (; r->o.n_sensors < o->n_sensors; r->o.n_sensors++)
		if (!(r->sensors[r->o.n_sensors] = strdup(o->sensors[r->o.n_sensors])))
			goto nomem;
	r->o.dir = r->dir;
	r->o.filter = r->filter;
	r->o.sensors = NULL;
	snprintf(r->name, sizeof(r->name), "files %.80s", r->dir);
	int mrc = fsu_mkdirs(r->dir, 0755);
	if (mrc != 0) {
		snprintf(err, errlen, "outputs.files.dir: cannot create %s: %s", r->dir, strerror(-mrc));
		goto fail;
	}
	if (rot_scan(r, err, errlen) != 0)
		goto fail;
	/* Joined here so that a bad filter or sensor id stops the start with its message. */
	if (rot_join(r, err, errlen) != 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "outputs.files: %s", err);
		snprintf(err, errlen, "%s", msg);
		goto fail;
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&r->th, NULL, rot_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		live_consumer_free(r->lc);
		snprintf(err, errlen, "outputs.files: cannot start a thread: %s", strerror(rc));
		goto fail;
	}
	pthread_mutex_lock(&rot_cur_mu);
	rot_cur = r;
	pthread_mutex_unlock(&rot_cur_mu);
	log_info("files: pcap files into %s (rotate at %" PRIu64 " bytes / %" PRIu64 " ms, keep %" PRIu64
		 " files / %" PRIu64 " bytes, 0 = no bound)",
		r->dir, o->rotate_size, o->rotate_ms, o->max_files, o->max_size);
	return r;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	rot_free(r);
	return NULL;
}

void
rotate_stop(struct rotate *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&rot_cur_mu);
	if (rot_cur == r)
		rot_cur = NULL;
	pthread_mutex_unlock(&rot_cur_mu);
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	struct rotate_stats st;
	rotate_stats_get(r, &st);
	log_info("files: %" PRIu64 " files (%" PRIu64 " packets) written, %" PRIu64 " deleted, %" PRIu64
		 " write errors (%" PRIu64 " packets lost)",
		st.files, st.packets, st.deleted_files, st.write_errors, st.lost_packets);
	rot_free(r);
}

void
rotate_stats_get(struct rotate *r, struct rotate_stats *st)
{
	uint64_t d[LIVE_DROP_N];
	rot_drops(r, d);
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	pthread_mutex_unlock(&r->mu);
	memcpy(st->drops, d, sizeof(d));
}

bool
rotate_stats_current(struct rotate_stats *st)
{
	pthread_mutex_lock(&rot_cur_mu);
	bool on = rot_cur != NULL;
	if (on)
		rotate_stats_get(rot_cur, st);
	pthread_mutex_unlock(&rot_cur_mu);
	return on;
}
