/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/names.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "shared/fsutil.h"
#include "shared/hash.h"
#include "shared/log.h"

/* One line of a NAMES event: the fixed text, a 20-digit t, an address, and a name and a
 * namespace that need no escaping (their class is a subset of printable ASCII). */
#define NAMES_LINE_BYTES (64 + 20 + NAMES_ADDR_LEN + PROTO_MAX_NAME + PROTO_MAX_NS + 8)

struct names_store {
	char *dir;
	enum names_sync sync;
	uint64_t max_bytes; /* storage.names_max_size, 0 = unbounded */
};

/* The mapping in effect for one address, as far as this session knows. */
struct names_cur {
	char *addr;
	uint64_t t;
	char *name;
	char *ns;
};

struct names_log {
	struct names_store *st;
	char path[4096];
	int fd;                /* -1 until the first append */
	bool failed_open;      /* retried at the next frame */
	off_t size;            /* bytes in the file that are whole lines */
	bool dirty;            /* written since the last sync */
	struct names_cur *cur; /* open addressing on addr */
	size_t cur_cap, cur_n;
	char *buf; /* NAMES_LINE_BYTES per event of one frame */
	struct names_log_counters c;
	struct log_limit warn_lim;
};

/* ---- One line ------------------------------------------------------------------- */

/* A string field into out (cut, and *cut set, when longer than NAMES_FIELD_MAX). Absent
 * and optional: "". */
static bool
names_str_field(json_t *o, const char *key, bool required, char *out, bool *cut)
{
	json_t *v = json_object_get(o, key);
	size_t n;

	out[0] = '\0';
	if (v == NULL)
		return !required;
	if (!json_is_string(v))
		return false;
	n = json_string_length(v);
	if (n > NAMES_FIELD_MAX) {
		n = NAMES_FIELD_MAX;
		*cut = true;
	}
	memcpy(out, json_string_value(v), n);
	out[n] = '\0';
	return true;
}

bool
names_line_parse(const char *s, size_t n, struct names_line *l)
{
	json_error_t jerr;
	json_t *o, *t;
	bool ok = false;

	l->raw = s;
	l->raw_len = n;
	l->t = 0;
	l->cut = false;
	l->addr[0] = l->name[0] = l->ns[0] = l->src[0] = '\0';
	/* Without JSON_ALLOW_NUL a string holding a NUL is an error: it would cut the C string. */
	if (n > NAMES_LINE_MAX || (o = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return false;
	t = json_object_get(o, "t");
	if (json_is_object(o) && json_is_integer(t) && json_integer_value(t) >= 0) {
		l->t = (uint64_t)json_integer_value(t);
		ok = names_str_field(o, "addr", true, l->addr, &l->cut) && l->addr[0] != '\0' &&
			names_str_field(o, "name", true, l->name, &l->cut) &&
			names_str_field(o, "ns", false, l->ns, &l->cut) &&
			names_str_field(o, "src", false, l->src, &l->cut);
	}
	json_decref(o);
	return ok;
}

int
names_line_format(uint64_t t, const char *addr, const char *name, const char *ns, const char *src, char *buf,
	size_t cap)
{
	json_t *o;
	size_t n;

	if (t > INT64_MAX)
		return -ERANGE;
	/* json_pack checks that every string is UTF-8; the keys keep this order. */
	o = json_pack("{s:I,s:s,s:s,s:s,s:s}", "t", (json_int_t)t, "addr", addr, "name", name, "ns", ns,
		"src", src);
	if (o == NULL)
		return -EINVAL;
	n = json_dumpb(o, buf, cap, JSON_COMPACT);
	json_decref(o);
	if (n == 0)
		return -EINVAL;
	if (n < cap)
		buf[n] = '\n';
	if (n + 1 < cap)
		buf[n + 1] = '\0';
	return (int)(n + 1);
}

/* ---- Addresses -------------------------------------------------------------------- */

void
names_addr_format(uint8_t family, const uint8_t *addr, uint16_t port, char out[NAMES_ADDR_LEN])
{
	char ip[INET6_ADDRSTRLEN];

	if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, ip, sizeof(ip)))
		snprintf(ip, sizeof(ip), "?");
	if (port == 0)
		snprintf(out, NAMES_ADDR_LEN, "%s", ip);
	else if (family == 4)
		snprintf(out, NAMES_ADDR_LEN, "%s:%u", ip, (unsigned)port);
	else
		snprintf(out, NAMES_ADDR_LEN, "[%s]:%u", ip, (unsigned)port);
}

int
names_addr_parse(const char *in, char out[NAMES_ADDR_LEN])
{
	char buf[NAMES_ADDR_LEN + 16];
	uint8_t a[16];
	const char *host = buf, *port = NULL;
	uint8_t family;
	long p = 0;

	if (strlen(in) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", in);
	if (buf[0] == '[') {
		char *rb = strchr(buf, ']');

		if (!rb || (rb[1] != '\0' && rb[1] != ':'))
			return -1;
		*rb = '\0';
		host = buf + 1;
		port = rb[1] == ':' ? rb + 2 : NULL;
		family = 6;
	} else if (strchr(buf, ':') == strrchr(buf, ':') && strchr(buf, ':')) {
		char *colon = strchr(buf, ':');

		*colon = '\0';
		port = colon + 1;
		family = 4;
	} else {
		family = strchr(buf, ':') ? 6 : 4;
	}
	if (inet_pton(family == 4 ? AF_INET : AF_INET6, host, a) != 1)
		return -1;
	if (port) {
		char *end;

		p = strtol(port, &end, 10);
		if (*port < '0' || *port > '9' || *end || p < 1 || p > 65535)
			return -1;
	}
	names_addr_format(family, a, (uint16_t)p, out);
	return 0;
}

/* The address of a history line in canonical form, or as written if it is not one. */
static void
names_line_addr(const char *addr, char out[NAMES_FIELD_MAX + 1])
{
	char canon[NAMES_ADDR_LEN];

	if (names_addr_parse(addr, canon) == 0)
		snprintf(out, NAMES_FIELD_MAX + 1, "%s", canon);
	else
		snprintf(out, NAMES_FIELD_MAX + 1, "%s", addr);
}

static bool
names_sensor_id_ok(const char *id)
{
	return id && proto_sensor_id_ok(id, strlen(id));
}

/* ---- Reading a history file ------------------------------------------------------- */

/* A malformed line: counted as a line, and the first one's number kept. */
static void
names_count_bad(struct names_counts *n)
{
	if (!n)
		return;
	n->lines++;
	if (n->bad++ == 0)
		n->first_bad = n->lines;
}

/* Calls fn for every well-formed line of fd from byte `from` (a line start, or the
 * first line start after it) to the end; lines longer than NAMES_LINE_MAX and a last
 * line without its newline are skipped. With n, counts the lines (empty ones are none)
 * and the malformed ones, and fn gets line numbers (from=0 only). Returns 0 or -errno. */
static int
names_scan_n(int fd, off_t from, bool (*fn)(void *arg, const struct names_line *l, size_t lineno), void *arg,
	struct names_counts *n)
{
	char *buf = malloc(NAMES_LINE_MAX);
	struct names_line *line = malloc(sizeof(*line)); /* about 4 KiB: not on a thread's stack */
	size_t have = 0;
	bool skip_first = from > 0, overlong = false;
	off_t off = from > 0 ? from - 1 : 0; /* a newline just before `from` means it starts a line */
	int rc = 0;

	if (!buf || !line) {
		free(buf);
		free(line);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = pread(fd, buf + have, NAMES_LINE_MAX - have, off);
		size_t start = 0;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		off += r;
		have += (size_t)r;
		for (size_t i = 0; i < have; i++) {
			if (buf[i] != '\n')
				continue;
			if (skip_first) {
				skip_first = false;
			} else if (overlong) {
				overlong = false;
				names_count_bad(n);
			} else if (i > start) { /* an empty line is none */
				if (!names_line_parse(buf + start, i - start, line)) {
					names_count_bad(n);
				} else {
					if (n)
						n->lines++;
					if (!fn(arg, line, n ? n->lines : 0)) {
						free(buf);
						free(line);
						return 0;
					}
				}
			}
			start = i + 1;
		}
		if (start == 0 && have == NAMES_LINE_MAX) {
			overlong = !skip_first; /* drop it and go on to its newline */
			have = 0;
			continue;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
	}
	free(buf);
	free(line);
	return rc;
}

struct names_scan_plain {
	bool (*fn)(void *arg, const struct names_line *l);
	void *arg;
};

static bool
names_scan_plain_one(void *arg, const struct names_line *l, size_t lineno)
{
	struct names_scan_plain *p = arg;

	return p->fn(p->arg, l);
}

static int
names_scan(int fd, off_t from, bool (*fn)(void *arg, const struct names_line *l), void *arg)
{
	struct names_scan_plain p = { fn, arg };

	return names_scan_n(fd, from, names_scan_plain_one, &p, NULL);
}

struct names_read_ctx {
	int (*fn)(void *arg, const struct names_line *l, size_t lineno);
	void *arg;
	int rc;
};

static bool
names_read_one(void *arg, const struct names_line *l, size_t lineno)
{
	struct names_read_ctx *c = arg;

	return (c->rc = c->fn(c->arg, l, lineno)) == 0;
}

int
names_file_read(const char *path, int (*fn)(void *arg, const struct names_line *l, size_t lineno), void *arg,
	struct names_counts *n)
{
	struct names_read_ctx c = { fn, arg, 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	memset(n, 0, sizeof(*n));
	if (fd < 0)
		return -errno;
	rc = names_scan_n(fd, 0, names_read_one, &c, n);
	close(fd);
	return rc != 0 ? rc : c.rc;
}

/* ---- Trimming --------------------------------------------------------------------- */

/* The line in effect at the cut for one address: the newest with t <= cut (equal t: the
 * later line), by its ordinal among the file's well-formed lines. */
struct names_win {
	char *addr;
	uint64_t t;
	uint64_t idx;
	bool empty; /* an empty name: no mapping, nothing to keep */
};

struct names_trim {
	uint64_t cut;
	uint64_t idx;        /* ordinal of the current line */
	uint64_t upto_cut;   /* lines with t <= cut */
	struct names_win *w; /* open addressing on addr */
	size_t cap, n;
	bool oom;
	/* Choosing the cut for a size budget. */
	uint64_t *t;   /* t of every line */
	uint32_t *len; /* bytes of every line, newline included */
	size_t lines, lines_cap;
	/* Writing. */
	FILE *out;
	uint64_t kept_bytes, dropped;
	int werr;
};

static uint64_t names_str_hash(const char *s);

static struct names_win *
names_win_find(struct names_trim *tr, const char *addr)
{
	size_t i = names_str_hash(addr) & (tr->cap - 1);

	while (tr->w[i].addr && strcmp(tr->w[i].addr, addr) != 0)
		i = (i + 1) & (tr->cap - 1);
	return &tr->w[i];
}

static bool
names_trim_grow(struct names_trim *tr)
{
	struct names_win *old = tr->w;
	size_t ocap = tr->cap, cap = ocap ? ocap * 2 : 1024;

	if (!(tr->w = calloc(cap, sizeof(*tr->w)))) {
		tr->w = old;
		return false;
	}
	tr->cap = cap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].addr)
			*names_win_find(tr, old[i].addr) = old[i];
	free(old);
	return true;
}

static bool
names_on_measure(void *arg, const struct names_line *jl)
{
	struct names_trim *tr = arg;

	if (tr->lines == tr->lines_cap) {
		size_t cap = tr->lines_cap ? tr->lines_cap * 2 : 4096;
		uint64_t *t = realloc(tr->t, cap * sizeof(*t));
		uint32_t *len = t ? realloc(tr->len, cap * sizeof(*len)) : NULL;

		if (t)
			tr->t = t;
		if (!t || !len) {
			tr->oom = true;
			return false;
		}
		tr->len = len;
		tr->lines_cap = cap;
	}
	tr->t[tr->lines] = jl->t;
	tr->len[tr->lines++] = (uint32_t)jl->raw_len + 1;
	return true;
}

static bool
names_on_winner(void *arg, const struct names_line *jl)
{
	struct names_trim *tr = arg;
	char addr[NAMES_FIELD_MAX + 1];
	struct names_win *w;
	uint64_t idx = tr->idx++;

	if (jl->t > tr->cut)
		return true;
	tr->upto_cut++;
	if ((tr->n + 1) * 2 > tr->cap && !names_trim_grow(tr)) {
		tr->oom = true;
		return false;
	}
	names_line_addr(jl->addr, addr);
	w = names_win_find(tr, addr);
	if (!w->addr) {
		if (!(w->addr = strdup(addr))) {
			tr->oom = true;
			return false;
		}
		tr->n++;
	} else if (jl->t < w->t) {
		return true;
	}
	w->t = jl->t;
	w->idx = idx;
	w->empty = jl->name[0] == '\0' && !jl->cut;
	return true;
}

static bool
names_on_keep(void *arg, const struct names_line *jl)
{
	struct names_trim *tr = arg;
	uint64_t idx = tr->idx++;

	if (jl->t <= tr->cut) {
		char addr[NAMES_FIELD_MAX + 1];
		const struct names_win *w;

		names_line_addr(jl->addr, addr);
		w = names_win_find(tr, addr);
		if (!w->addr || w->idx != idx || w->empty) {
			tr->dropped++;
			return true;
		}
	}
	if (fwrite(jl->raw, 1, jl->raw_len, tr->out) != jl->raw_len || putc('\n', tr->out) == EOF) {
		tr->werr = errno ? -errno : -EIO;
		return false;
	}
	tr->kept_bytes += jl->raw_len + 1;
	return true;
}

static int
names_cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Rewrites the history at path without what no query from the cut on needs: lines with
 * t <= cut other than the one in effect at the cut for each address (and that one too
 * when it holds an empty name). With budget set, the cut is chosen instead: the newest
 * lines that fit in budget bytes stay whole. The new file is written beside the old one,
 * synced and renamed over it, so a crash leaves one or the other, never a mix. Returns 0
 * (*kept: bytes of the new file, *dropped: lines left out) or -errno; -ENOENT when there
 * is no history.
 */
static int
names_rewrite(const char *path, uint64_t cut, uint64_t budget, uint64_t *kept, uint64_t *dropped)
{
	struct names_trim tr = { .cut = cut };
	char tmp[4096], dir[4096];
	int fd, ofd = -1, rc;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.trim", path) >= sizeof(tmp) ||
		(size_t)snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path) >=
			sizeof(dir))
		return -ENAMETOOLONG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (budget) {
		uint64_t *ts, sum = 0;

		rc = names_scan(fd, 0, names_on_measure, &tr);
		if (rc == 0 && tr.oom)
			rc = -ENOMEM;
		if (rc != 0)
			goto out;
		/* The cut: the t at which the newest lines stop fitting the budget. */
		tr.cut = 0;
		if ((ts = malloc((tr.lines + 1) * sizeof(*ts))) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(ts, tr.t, tr.lines * sizeof(*ts));
		qsort(ts, tr.lines, sizeof(*ts), names_cmp_desc);
		/* Lengths by t as well: sort pairs by sorting indices would cost more memory;
		 * the mean line length is close enough to choose a cut. */
		for (size_t i = 0; i < tr.lines; i++)
			sum += tr.len[i];
		uint64_t mean = tr.lines ? sum / tr.lines + 1 : 1;
		size_t fit = (size_t)(budget / mean);
		if (fit < tr.lines)
			tr.cut = ts[fit];
		free(ts);
		if (fit >= tr.lines) {
			*kept = sum;
			*dropped = 0;
			rc = 0;
			goto out; /* everything fits */
		}
	}
	tr.idx = 0;
	rc = names_scan(fd, 0, names_on_winner, &tr);
	if (rc == 0 && tr.oom)
		rc = -ENOMEM;
	if (rc != 0)
		goto out;
	/* Nothing to drop (every line up to the cut is the one in effect there): the file
	 * stays as it is, unwritten. */
	size_t keep = 0;
	for (size_t i = 0; i < tr.cap; i++)
		keep += tr.w[i].addr && !tr.w[i].empty;
	if (tr.upto_cut == keep) {
		struct stat sb;
		*kept = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
		*dropped = 0;
		goto out;
	}
	ofd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (ofd < 0 || !(tr.out = fdopen(ofd, "w"))) {
		rc = -errno;
		if (ofd >= 0)
			close(ofd);
		goto out;
	}
	tr.idx = 0;
	rc = names_scan(fd, 0, names_on_keep, &tr);
	if (rc == 0)
		rc = tr.werr;
	if (fflush(tr.out) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && fsync(fileno(tr.out)) != 0)
		rc = -errno;
	if (fclose(tr.out) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		goto out;
	}
	(void)fsu_fsync_path(dir); /* the rename itself; the data was synced before it */
	*kept = tr.kept_bytes;
	*dropped = tr.dropped;
out:
	close(fd);
	for (size_t i = 0; i < tr.cap; i++)
		free(tr.w[i].addr);
	free(tr.w);
	free(tr.t);
	free(tr.len);
	return rc;
}

int
names_trim(const char *dir, const char *sensor_id, uint64_t before_ns, uint64_t *dropped)
{
	char path[4096];
	uint64_t kept = 0, d = 0;
	int rc;

	*dropped = 0;
	if (!dir || !*dir || !names_sensor_id_ok(sensor_id) || before_ns == 0)
		return -EINVAL;
	if ((size_t)snprintf(path, sizeof(path), "%s/sensors/%s/names.jsonl", dir, sensor_id) >= sizeof(path))
		return -ENAMETOOLONG;
	/* Lines at before_ns - 1 and earlier: the mapping in effect at the oldest packet
	 * is the newest line up to it, and lines at before_ns itself stay whole. */
	rc = names_rewrite(path, before_ns - 1, 0, &kept, &d);
	if (rc == 0)
		*dropped = d;
	return rc;
}

/* ---- Appending -------------------------------------------------------------------- */

static uint64_t
names_str_hash(const char *s)
{
	return hash_end(hash_add(HASH_INIT, s, strlen(s)));
}

static struct names_cur *
names_cur_find(struct names_log *l, const char *addr, bool *found)
{
	size_t i;

	*found = false;
	if (!l->cur_cap)
		return NULL;
	for (i = names_str_hash(addr) & (l->cur_cap - 1); l->cur[i].addr; i = (i + 1) & (l->cur_cap - 1)) {
		if (strcmp(l->cur[i].addr, addr) == 0) {
			*found = true;
			return &l->cur[i];
		}
	}
	return &l->cur[i];
}

static bool
names_cur_grow(struct names_log *l)
{
	size_t cap = l->cur_cap ? l->cur_cap * 2 : 256;
	struct names_cur *old = l->cur, *nc = calloc(cap, sizeof(*nc));
	size_t ocap = l->cur_cap;

	if (!nc)
		return false;
	l->cur = nc;
	l->cur_cap = cap;
	for (size_t i = 0; i < ocap; i++) {
		bool found;

		if (old[i].addr)
			*names_cur_find(l, old[i].addr, &found) = old[i];
	}
	free(old);
	return true;
}

/* Remembers the line if it is the newest for its address (t ties: the later one). */
static void
names_cur_note(struct names_log *l, const char *addr, uint64_t t, const char *name, const char *ns)
{
	bool found;
	struct names_cur *c = names_cur_find(l, addr, &found);
	char *nn, *nns;

	if (found && t < c->t)
		return;
	if (!found) {
		if (l->cur_n >= NAMES_DEDUP_MAX)
			return; /* unknown addresses are then simply written */
		if (l->cur_n + 1 > l->cur_cap / 2) {
			if (!names_cur_grow(l))
				return;
			c = names_cur_find(l, addr, &found);
		}
		if (!(c->addr = strdup(addr)))
			return;
		l->cur_n++;
		c->name = c->ns = NULL;
	}
	nn = strdup(name);
	nns = strdup(ns);
	if (!nn || !nns) {
		free(nn);
		free(nns);
		nn = nns = NULL; /* forgets the name: the next event is written */
	}
	free(c->name);
	free(c->ns);
	c->name = nn;
	c->ns = nns;
	c->t = t;
}

static bool
names_on_loaded(void *arg, const struct names_line *jl)
{
	struct names_log *l = arg;
	char addr[NAMES_FIELD_MAX + 1];

	names_line_addr(jl->addr, addr);
	names_cur_note(l, addr, jl->t, jl->cut ? "" : jl->name, jl->ns);
	return true;
}

/* Cuts a torn last line, then reads the mapping in effect from the file's tail. */
static int
names_log_prepare(struct names_log *l)
{
	struct stat sb;
	char ch;

	if (fstat(l->fd, &sb) != 0)
		return -errno;
	l->size = sb.st_size;
	if (l->size > 0 && pread(l->fd, &ch, 1, l->size - 1) == 1 && ch != '\n') {
		/* Back to the last newline: what follows it is half a line from a crash. */
		char buf[4096];
		off_t end = l->size, cut = 0;

		while (end > 0 && cut == 0) {
			off_t start = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
			ssize_t r = pread(l->fd, buf, (size_t)(end - start), start);

			if (r <= 0)
				return r < 0 ? -errno : -EIO;
			for (ssize_t i = r - 1; i >= 0; i--) {
				if (buf[i] == '\n') {
					cut = start + i + 1;
					break;
				}
			}
			end = start;
		}
		if (ftruncate(l->fd, cut) != 0)
			return -errno;
		l->size = cut;
	}
	return names_scan(l->fd, l->size > (off_t)NAMES_LOAD_MAX ? l->size - (off_t)NAMES_LOAD_MAX : 0,
		names_on_loaded, l);
}

static int
names_log_ensure_open(struct names_log *l)
{
	char dir[4096];
	struct stat a, b;
	int rc;

	/* Retention may have rewritten the file (names_trim, a rename over it): writes to
	 * the old one would be lost, so follow the name. */
	if (l->fd >= 0 &&
		(stat(l->path, &a) != 0 || fstat(l->fd, &b) != 0 || a.st_ino != b.st_ino ||
			a.st_dev != b.st_dev)) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->fd >= 0)
		return 0;
	/* The store creates the sensor's folder; make sure of it anyway. */
	if ((size_t)snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(l->path, '/') - l->path), l->path) >=
		sizeof(dir))
		return -ENAMETOOLONG;
	if ((rc = fsu_mkdirs(dir, 0750)) != 0)
		return rc;
	l->fd = open(l->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (l->fd < 0)
		return -errno;
	if (!l->buf && !(l->buf = malloc((size_t)PROTO_MAX_NAMES * NAMES_LINE_BYTES)))
		rc = -ENOMEM;
	else
		rc = names_log_prepare(l);
	if (rc != 0) {
		close(l->fd);
		l->fd = -1;
	}
	return rc;
}

/* Forgets the mappings remembered as in effect (they may be ahead of the file) and
 * closes the file: the next frame opens it again and reads them back from it. */
static void
names_cur_forget(struct names_log *l)
{
	for (size_t i = 0; i < l->cur_cap; i++) {
		free(l->cur[i].addr);
		free(l->cur[i].name);
		free(l->cur[i].ns);
	}
	if (l->cur)
		memset(l->cur, 0, l->cur_cap * sizeof(*l->cur));
	l->cur_n = 0;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static const char *
names_src(uint8_t source)
{
	switch (source) {
	case PROTO_NSRC_DNS:
		return "dns";
	case PROTO_NSRC_HOSTS:
		return "hosts";
	case PROTO_NSRC_STATIC:
		return "static";
	}
	return "other";
}

int
names_log_append(struct names_log *l, const struct proto_names *m, char *err, size_t errlen)
{
	size_t len = 0;
	int rc, lines = 0;

	if ((rc = names_log_ensure_open(l)) != 0) {
		l->c.lost += m->n;
		snprintf(err, errlen, "%s: %s", l->path, strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < m->n; i++) {
		const struct proto_name *e = &m->ev[i];
		char addr[NAMES_ADDR_LEN];
		bool found;
		struct names_cur *c;
		char *line = l->buf + len;

		names_addr_format(e->family, e->addr, e->port, addr);
		c = names_cur_find(l, addr, &found);
		if (found && c->name && strcmp(c->name, e->name) == 0 && strcmp(c->ns, e->ns) == 0) {
			l->c.repeats++;
			continue;
		}
		/* Every piece is bounded (names and namespaces by the decoder, to a class that
		 * needs no escape; addresses are inet_ntop output), so the line fits its
		 * NAMES_LINE_BYTES. A time no reader could take back (after 2262) is lost and
		 * counted, never written. */
		int n = names_line_format(
			e->ts_ns, addr, e->name, e->ns, names_src(e->source), line, NAMES_LINE_BYTES);
		if (n < 0 || n >= NAMES_LINE_BYTES) {
			l->c.lost++;
			if (log_limit_ok(&l->warn_lim, 5, 60))
				log_warnx("%s: NAMES event for %s at t=%llu not stored: %s", l->path, addr,
					(unsigned long long)e->ts_ns,
					n == -ERANGE ? "time after 2262" : "name or namespace not UTF-8");
			continue;
		}
		len += (size_t)n;
		names_cur_note(l, addr, e->ts_ns, e->name, e->ns);
		lines++;
	}
	if (len == 0)
		return 0;
	/* storage.names_max_size: first drop the oldest history (the mapping in effect for
	 * every address stays), down to half the bound so that this is rare; what still
	 * does not fit is lost and counted. */
	if (l->st->max_bytes && (uint64_t)l->size + len > l->st->max_bytes) {
		uint64_t kept = 0, dropped = 0, max = l->st->max_bytes;
		/* Half the bound, and room for this frame whatever its size. */
		uint64_t budget = max / 2 < max - (len < max ? len : max) ? max / 2
			: len < max                                       ? max - len
									  : 1;

		close(l->fd);
		l->fd = -1;
		rc = names_rewrite(l->path, 0, budget, &kept, &dropped);
		if (rc == 0 && dropped > 0)
			log_info("%s: storage.names_max_size (%llu bytes) reached: %llu older lines "
				 "dropped, %llu bytes kept",
				l->path, (unsigned long long)l->st->max_bytes, (unsigned long long)dropped,
				(unsigned long long)kept);
		if (rc == 0)
			rc = names_log_ensure_open(l);
		if (rc == 0 && (uint64_t)l->size + len > max) {
			/* The cut is chosen from the mean line length: if that was not enough,
			 * keep only the mappings in effect. */
			close(l->fd);
			l->fd = -1;
			rc = names_rewrite(l->path, 0, 1, &kept, &dropped);
			if (rc == 0)
				rc = names_log_ensure_open(l);
		}
		if (rc == 0 && (uint64_t)l->size + len > max)
			rc = -ENOSPC;
		if (rc != 0) {
			l->c.lost += (uint64_t)lines;
			snprintf(err, errlen, "%s: %s", l->path,
				rc == -ENOSPC
					? "storage.names_max_size reached by the mappings in effect alone"
					: strerror(-rc));
			names_cur_forget(l);
			return rc;
		}
	}
	if ((rc = fsu_write_all(l->fd, l->buf, len)) != 0) {
		/* A partial line left behind is cut when the file is opened again, which
		 * the next frame does (re-reading the mappings in effect, since the
		 * ones remembered here may be ahead of the file). */
		l->c.lost += (uint64_t)lines;
		snprintf(err, errlen, "%s: %s", l->path, strerror(-rc));
		names_cur_forget(l);
		return rc;
	}
	l->size += (off_t)len;
	l->c.written += (uint64_t)lines;
	l->dirty = true;
	if (l->st->sync == NAMES_SYNC_WRITE && (rc = names_log_sync(l)) != 0) {
		snprintf(err, errlen, "%s: fdatasync: %s", l->path, strerror(-rc));
		return rc;
	}
	return lines;
}

int
names_log_sync(struct names_log *l)
{
	if (!l || l->fd < 0 || !l->dirty)
		return 0;
	if (fdatasync(l->fd) != 0)
		return -errno;
	l->dirty = false;
	return 0;
}

const struct names_log_counters *
names_log_counters(const struct names_log *l)
{
	return &l->c;
}

struct names_log *
names_log_open(struct names_store *st, const char *sensor_id)
{
	struct names_log *l;

	if (!st || !st->dir || !*st->dir || !names_sensor_id_ok(sensor_id))
		return NULL;
	if (!(l = calloc(1, sizeof(*l))))
		return NULL;
	l->st = st;
	l->fd = -1;
	if ((size_t)snprintf(l->path, sizeof(l->path), "%s/sensors/%s/names.jsonl", st->dir, sensor_id) >=
		sizeof(l->path)) {
		free(l);
		errno = ENAMETOOLONG;
		return NULL;
	}
	return l;
}

void
names_log_close(struct names_log *l)
{
	if (!l)
		return;
	if (l->fd >= 0) {
		names_log_sync(l);
		close(l->fd);
	}
	for (size_t i = 0; i < l->cur_cap; i++) {
		free(l->cur[i].addr);
		free(l->cur[i].name);
		free(l->cur[i].ns);
	}
	free(l->cur);
	free(l->buf);
	free(l);
}

struct names_store *
names_store_new(const char *dir, enum names_sync sync)
{
	struct names_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->sync = sync;
	if (!(st->dir = strdup(dir ? dir : ""))) {
		free(st);
		return NULL;
	}
	return st;
}

void
names_store_set_max(struct names_store *st, uint64_t max_bytes)
{
	if (st)
		st->max_bytes = max_bytes;
}

void
names_store_free(struct names_store *st)
{
	if (!st)
		return;
	free(st->dir);
	free(st);
}

/* ---- Queries ---------------------------------------------------------------------- */

struct names_query {
	const char *addr, *bare; /* bare: the address without its port, or NULL */
	uint64_t t;
	bool have[2]; /* [0] addr, [1] bare */
	uint64_t best_t[2];
	char name[2][NAMES_FIELD_MAX + 1];
	char ns[2][NAMES_FIELD_MAX + 1];
};

static bool
names_on_query(void *arg, const struct names_line *jl)
{
	struct names_query *q = arg;
	char addr[NAMES_FIELD_MAX + 1];

	if (jl->t > q->t)
		return true;
	names_line_addr(jl->addr, addr);
	for (int i = 0; i < 2; i++) {
		const char *want = i ? q->bare : q->addr;

		if (!want || strcmp(addr, want) != 0 || (q->have[i] && jl->t < q->best_t[i]))
			continue;
		q->have[i] = true;
		q->best_t[i] = jl->t;
		snprintf(q->name[i], sizeof(q->name[i]), "%s", jl->name);
		snprintf(q->ns[i], sizeof(q->ns[i]), "%s", jl->ns);
	}
	return true;
}

int
names_at(const char *dir, const char *sensor_id, const char *addr, uint64_t t_ns, char *name, size_t namelen,
	char *ns, size_t nslen)
{
	static struct names_query q;
	char canon[NAMES_ADDR_LEN], bare[NAMES_ADDR_LEN], path[4096];
	int fd, rc;

	if (!names_sensor_id_ok(sensor_id) || names_addr_parse(addr, canon) != 0)
		return -EINVAL;
	memset(&q, 0, sizeof(q));
	q.addr = canon;
	q.t = t_ns;
	/* With a port, the address alone is the fallback: "1.2.3.4:80" -> "1.2.3.4",
	 * "[2001:db8::1]:443" -> "2001:db8::1". Only IPv4 with a port has one colon. */
	if (canon[0] == '[') {
		snprintf(bare, sizeof(bare), "%.*s", (int)(strchr(canon, ']') - canon - 1), canon + 1);
		q.bare = bare;
	} else if (strchr(canon, ':') && strchr(canon, ':') == strrchr(canon, ':')) {
		snprintf(bare, sizeof(bare), "%.*s", (int)(strchr(canon, ':') - canon), canon);
		q.bare = bare;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/sensors/%s/names.jsonl", dir, sensor_id) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = names_scan(fd, 0, names_on_query, &q);
	close(fd);
	if (rc != 0)
		return rc;
	for (int i = 0; i < 2; i++) {
		if (q.have[i] && q.name[i][0]) {
			snprintf(name, namelen, "%s", q.name[i]);
			snprintf(ns, nslen, "%s", q.ns[i]);
			return 1;
		}
	}
	return 0;
}
