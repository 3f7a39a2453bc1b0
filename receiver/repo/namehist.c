/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/namehist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "shared/hash.h"
#include "shared/log.h"
#include "receiver/repo/names.h"

#define NS_PER_SEC         1000000000ull
#define NAMEHIST_MAX_FIELD 1024

struct nh_line {
	uint64_t t;
	uint64_t seq; /* position in the input, for stable ordering */
	char *addr;
	char *name;
	char *ns;
	char *src;
};

struct namehist {
	uint64_t from, to;
	struct nh_line **initial; /* the line in effect at `from`, one per address */
	size_t n_initial;
	struct nh_line **changes; /* from < t < to, sorted by (t, seq) */
	size_t n_changes, cap_changes;
	size_t lines, bad;
};

static void
line_free(struct nh_line *l)
{
	if (l == NULL)
		return;
	free(l->addr);
	free(l->name);
	free(l->ns);
	free(l->src);
	free(l);
}

/* A copy of one line read by names.c, at input position seq. NULL when out of memory. */
static struct nh_line *
line_copy(const struct names_line *nl, uint64_t seq)
{
	struct nh_line *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->t = nl->t;
	l->seq = seq;
	l->addr = strdup(nl->addr);
	l->name = strdup(nl->name);
	l->ns = strdup(nl->ns);
	l->src = strdup(nl->src);
	if (l->addr == NULL || l->name == NULL || l->ns == NULL || l->src == NULL) {
		line_free(l);
		return NULL;
	}
	return l;
}

/* Open-addressing table of the line in effect per address. */
struct nh_table {
	struct nh_line **slot;
	size_t cap, n;
};

static uint64_t
hash_str(const char *s)
{
	return hash_end(hash_add(HASH_INIT, s, strlen(s)));
}

static int
table_grow(struct nh_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 1024;
	struct nh_line **slot = calloc(cap, sizeof(*slot));

	if (slot == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slot[i] == NULL)
			continue;
		size_t j = hash_str(t->slot[i]->addr) & (cap - 1);
		while (slot[j] != NULL)
			j = (j + 1) & (cap - 1);
		slot[j] = t->slot[i];
	}
	free(t->slot);
	t->slot = slot;
	t->cap = cap;
	return 0;
}

/* Keeps l if it is newer than the address's current line (takes ownership either way). */
static int
table_put(struct nh_table *t, struct nh_line *l)
{
	if (2 * (t->n + 1) > t->cap && table_grow(t) != 0) {
		line_free(l);
		return -ENOMEM;
	}
	size_t j = hash_str(l->addr) & (t->cap - 1);
	while (t->slot[j] != NULL && strcmp(t->slot[j]->addr, l->addr) != 0)
		j = (j + 1) & (t->cap - 1);
	if (t->slot[j] == NULL) {
		t->slot[j] = l;
		t->n++;
	} else if (l->t >= t->slot[j]->t) {
		/* Input order breaks ties: a later line with the same t wins. */
		line_free(t->slot[j]);
		t->slot[j] = l;
	} else {
		line_free(l);
	}
	return 0;
}

static int
cmp_time(const void *a, const void *b)
{
	const struct nh_line *x = *(struct nh_line *const *)a, *y = *(struct nh_line *const *)b;

	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
cmp_addr(const void *a, const void *b)
{
	const struct nh_line *x = *(struct nh_line *const *)a, *y = *(struct nh_line *const *)b;

	return strcmp(x->addr, y->addr);
}

/*
 * Calls fn for every complete, well-formed line of a names.jsonl file. Returns 0, -1 with
 * err set, or fn's negative code. A missing file has no lines.
 */
struct each_ctx {
	int (*fn)(void *arg, struct nh_line *l);
	void *arg;
	size_t cut, first_cut;
};

static int
each_one(void *arg, const struct names_line *nl, size_t lineno)
{
	struct each_ctx *c = arg;
	struct nh_line *l;

	/* names.c keeps an overlong string cut; here it is a malformed line. */
	if (nl->cut) {
		if (c->cut++ == 0)
			c->first_cut = lineno;
		return 0;
	}
	if ((l = line_copy(nl, lineno)) == NULL)
		return -ENOMEM;
	return c->fn(c->arg, l);
}

/* Calls fn with every well-formed line of path (read by names.c: a missing file is an
 * empty history, a torn last line is left out, memory stays bounded), adding to the
 * counts. Returns 0, fn's -ENOMEM, or -1 with err set. */
static int
each_line(const char *path, size_t *lines, size_t *bad, size_t *first_bad,
	int (*fn)(void *arg, struct nh_line *l), void *arg, char *err, size_t errlen)
{
	struct each_ctx c = { fn, arg, 0, 0 };
	struct names_counts n;
	int rc = names_file_read(path, each_one, &c, &n);

	*lines += n.lines;
	*bad += n.bad + c.cut;
	if (n.bad && c.cut)
		*first_bad = n.first_bad < c.first_cut ? n.first_bad : c.first_cut;
	else if (n.bad || c.cut)
		*first_bad = n.bad ? n.first_bad : c.first_cut;
	if (rc == -ENOENT)
		return 0;
	if (rc != 0 && rc != -ENOMEM) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return -1;
	}
	return rc;
}

struct load_ctx {
	struct namehist *h;
	struct nh_table table;
};

static int
load_one(void *arg, struct nh_line *l)
{
	struct load_ctx *c = arg;
	struct namehist *h = c->h;

	if (l->t <= h->from)
		return table_put(&c->table, l);
	if (l->t >= h->to) {
		line_free(l);
		return 0;
	}
	if (h->n_changes == h->cap_changes) {
		size_t cap = h->cap_changes ? h->cap_changes * 2 : 256;
		struct nh_line **v = realloc(h->changes, cap * sizeof(*v));
		if (v == NULL) {
			line_free(l);
			return -ENOMEM;
		}
		h->changes = v;
		h->cap_changes = cap;
	}
	h->changes[h->n_changes++] = l;
	return 0;
}

struct namehist *
namehist_load(const char *path, uint64_t from_ns, uint64_t to_ns, char *err, size_t errlen)
{
	struct load_ctx c = { 0 };
	size_t first_bad = 0;
	int rc;

	c.h = calloc(1, sizeof(*c.h));
	if (c.h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c.h->from = from_ns;
	c.h->to = to_ns;
	rc = each_line(path, &c.h->lines, &c.h->bad, &first_bad, load_one, &c, err, errlen);
	if (rc == 0 && c.table.n > 0) {
		c.h->initial = malloc(c.table.n * sizeof(*c.h->initial));
		if (c.h->initial == NULL)
			rc = -ENOMEM;
	}
	for (size_t i = 0; i < c.table.cap; i++) {
		if (c.table.slot[i] == NULL)
			continue;
		if (rc == 0)
			c.h->initial[c.h->n_initial++] = c.table.slot[i];
		else
			line_free(c.table.slot[i]);
	}
	free(c.table.slot);
	if (rc != 0) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", path);
		namehist_free(c.h);
		return NULL;
	}
	if (c.h->n_initial > 1)
		qsort(c.h->initial, c.h->n_initial, sizeof(*c.h->initial), cmp_addr);
	if (c.h->n_changes > 1)
		qsort(c.h->changes, c.h->n_changes, sizeof(*c.h->changes), cmp_time);
	if (c.h->bad > 0)
		log_warnx("%s: %zu of %zu lines malformed, skipped (the first: line %zu)", path, c.h->bad,
			c.h->lines, first_bad);
	return c.h;
}

void
namehist_free(struct namehist *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n_initial; i++)
		line_free(h->initial[i]);
	for (size_t i = 0; i < h->n_changes; i++)
		line_free(h->changes[i]);
	free(h->initial);
	free(h->changes);
	free(h);
}

size_t
namehist_lines(const struct namehist *h)
{
	return h->lines;
}

size_t
namehist_bad_lines(const struct namehist *h)
{
	return h->bad;
}

/* The map in effect: lines with a non-empty name, sorted by address. */
struct nh_state {
	const struct nh_line **v;
	size_t n;
};

static size_t
state_find(const struct nh_state *s, const char *addr, bool *found)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->v[mid]->addr, addr);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Applies one line. Returns 1 when the map changed, 0 when not. */
static int
state_apply(struct nh_state *s, const struct nh_line *l)
{
	bool found;
	size_t i = state_find(s, l->addr, &found);

	if (l->name[0] == '\0') {
		if (!found)
			return 0;
		memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
		s->n--;
		return 1;
	}
	if (found) {
		int same = strcmp(s->v[i]->name, l->name) == 0 && strcmp(s->v[i]->ns, l->ns) == 0;
		s->v[i] = l;
		return !same;
	}
	memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
	s->v[i] = l;
	s->n++;
	return 1;
}

/* One key of the Kubeshark file: "<key>":{"<addr>":{"FullAddress":...,"Namespace":...},...}
 * (the strings were read by jansson, so they are UTF-8). The top-level object is streamed
 * key by key, so that memory holds one map at a time; each map is written by jansson.
 * Returns 0 or -errno. */
static int
put_map(FILE *f, uint64_t key, const struct nh_state *s, bool first)
{
	json_t *map = json_object();
	int rc = map == NULL ? -ENOMEM : 0;

	for (size_t i = 0; rc == 0 && i < s->n; i++) {
		json_t *e = json_pack("{s:s,s:s}", "FullAddress", s->v[i]->name, "Namespace", s->v[i]->ns);

		if (e == NULL || json_object_set_new(map, s->v[i]->addr, e) != 0)
			rc = -EINVAL;
	}
	if (rc == 0) {
		fprintf(f, "%s\"%" PRIu64 "\":", first ? "\n" : ",\n", key);
		if (json_dumpf(map, f, JSON_COMPACT) != 0)
			rc = -EIO;
	}
	json_decref(map);
	return rc;
}

int
namehist_write_kubeshark(const struct namehist *h, FILE *out, size_t *keys)
{
	struct nh_state s = { 0 };
	uint64_t key = h->from / NS_PER_SEC;
	bool pending = false;
	size_t n_keys = 0;
	int rc = 0;

	s.v = malloc((h->n_initial + h->n_changes + 1) * sizeof(*s.v));
	if (s.v == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_initial; i++)
		if (h->initial[i]->name[0] != '\0')
			s.v[s.n++] = h->initial[i];
	pending = s.n > 0;
	fputc('{', out);
	for (size_t i = 0; i < h->n_changes; i++) {
		const struct nh_line *l = h->changes[i];
		uint64_t k = l->t / NS_PER_SEC;

		/* A later second starts: the map of the previous one is final. */
		if (k != key && pending) {
			if ((rc = put_map(out, key, &s, n_keys++ == 0)) != 0)
				break;
			pending = false;
		}
		if (state_apply(&s, l))
			pending = true;
		key = k;
	}
	if (rc == 0 && pending)
		rc = put_map(out, key, &s, n_keys++ == 0);
	fputs(n_keys > 0 ? "\n}\n" : "}\n", out);
	free(s.v);
	if (keys != NULL)
		*keys = n_keys;
	return rc != 0 ? rc : ferror(out) ? -EIO : 0;
}

/* One names.jsonl line, written by the module that owns the format. Returns 0 or -errno
 * (-EINVAL, -ERANGE: a line no reader could take back, not written). */
static int
put_line(FILE *f, const struct nh_line *l)
{
	char small[512], *buf = small;
	int n = names_line_format(l->t, l->addr, l->name, l->ns, l->src, small, sizeof(small));

	if (n < 0)
		return n;
	if ((size_t)n >= sizeof(small)) {
		if ((buf = malloc((size_t)n + 1)) == NULL)
			return -ENOMEM;
		n = names_line_format(l->t, l->addr, l->name, l->ns, l->src, buf, (size_t)n + 1);
	}
	if (n > 0 && fwrite(buf, 1, (size_t)n, f) != (size_t)n)
		n = -EIO;
	if (buf != small)
		free(buf);
	return n < 0 ? n : 0;
}

int
namehist_write_jsonl(const struct namehist *h, FILE *out, size_t *lines)
{
	struct nh_line **v = malloc((h->n_initial + 1) * sizeof(*v));

	if (v == NULL)
		return -ENOMEM;
	if (h->n_initial > 0) {
		memcpy(v, h->initial, h->n_initial * sizeof(*v));
		qsort(v, h->n_initial, sizeof(*v), cmp_time);
	}
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < h->n_initial; i++)
		rc = put_line(out, v[i]);
	for (size_t i = 0; rc == 0 && i < h->n_changes; i++)
		rc = put_line(out, h->changes[i]);
	free(v);
	if (lines != NULL)
		*lines = h->n_initial + h->n_changes;
	return rc != 0 ? rc : ferror(out) ? -EIO : 0;
}

/* Kubeshark import ------------------------------------------------------------------ */

struct ks_key {
	uint64_t sec;
	const char *text;
	json_t *map;
};

static int
cmp_key(const void *a, const void *b)
{
	const struct ks_key *x = a, *y = b;

	return x->sec < y->sec ? -1 : x->sec > y->sec;
}

static bool
ks_entry(json_t *v, const char **name, const char **ns)
{
	json_t *fa, *nsv;

	if (!json_is_object(v))
		return false;
	fa = json_object_get(v, "FullAddress");
	nsv = json_object_get(v, "Namespace");
	if (!json_is_string(fa) || json_string_length(fa) > NAMEHIST_MAX_FIELD ||
		strlen(json_string_value(fa)) != json_string_length(fa))
		return false;
	if (nsv != NULL &&
		(!json_is_string(nsv) || json_string_length(nsv) > NAMEHIST_MAX_FIELD ||
			strlen(json_string_value(nsv)) != json_string_length(nsv)))
		return false;
	*name = json_string_value(fa);
	*ns = nsv != NULL ? json_string_value(nsv) : "";
	return true;
}

int
namehist_from_kubeshark(
	const char *path, size_t max_bytes, FILE *out, size_t *lines, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = NULL, *val;
	struct ks_key *keys = NULL;
	struct stat st;
	const char *k;
	size_t n = 0, count = 0;
	int rc = -1, e;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		snprintf(err, errlen, "larger than %zu bytes", max_bytes);
		return -1;
	}
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	keys = calloc(json_object_size(root) + 1, sizeof(*keys));
	if (keys == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	json_object_foreach(root, k, val)
	{
		uint64_t sec = 0;
		const char *p = k;

		if (*p == '\0' || strlen(p) > 11) {
			snprintf(err, errlen, "key '%.40s' is not Unix seconds", k);
			goto out;
		}
		/* Below, sec * 10^9 must be a time names.jsonl holds (at most 2^63-1 ns). */
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9') {
				snprintf(err, errlen, "key '%.40s' is not Unix seconds", k);
				goto out;
			}
			sec = sec * 10 + (uint64_t)(*p - '0');
		}
		if (sec > (uint64_t)INT64_MAX / NS_PER_SEC) {
			snprintf(err, errlen, "key '%.40s' is not Unix seconds (after the year 2262)", k);
			goto out;
		}
		if (!json_is_object(val)) {
			snprintf(err, errlen, "value of key %s is not an object", k);
			goto out;
		}
		keys[n++] = (struct ks_key){ sec, k, val };
	}
	if (n > 1)
		qsort(keys, n, sizeof(*keys), cmp_key);
	for (size_t i = 0; i < n; i++) {
		json_t *prev = i > 0 ? keys[i - 1].map : NULL;
		const char *addr, *name, *ns, *pname, *pns;
		json_t *v;

		if (i > 0 && keys[i].sec == keys[i - 1].sec) {
			snprintf(err, errlen, "keys %s and %s are the same second", keys[i - 1].text,
				keys[i].text);
			goto out;
		}
		json_object_foreach(keys[i].map, addr, v)
		{
			json_t *pv = prev != NULL ? json_object_get(prev, addr) : NULL;
			char canon[NAMES_ADDR_LEN];

			/* The history names addresses; anything else (a host name, free text with
			 * control characters) is malformed, like a wrong shape. */
			if (names_addr_parse(addr, canon) != 0) {
				snprintf(err, errlen,
					"key %s: '%.60s' is not an address (IP, IP:PORT or "
					"[IPv6]:PORT)",
					keys[i].text, addr);
				goto out;
			}
			if (!ks_entry(v, &name, &ns)) {
				snprintf(err, errlen,
					"key %s: entry '%.60s' is not {\"FullAddress\": string, "
					"\"Namespace\": string}",
					keys[i].text, addr);
				goto out;
			}
			if (pv != NULL && ks_entry(pv, &pname, &pns) && strcmp(name, pname) == 0 &&
				strcmp(ns, pns) == 0)
				continue;
			struct nh_line l = { keys[i].sec * NS_PER_SEC, 0, canon, (char *)name, (char *)ns,
				(char *)"static" };
			if ((e = put_line(out, &l)) != 0) {
				snprintf(
					err, errlen, "key %s: '%.60s': %s", keys[i].text, addr, strerror(-e));
				goto out;
			}
			count++;
		}
		if (prev == NULL)
			continue;
		json_object_foreach(prev, addr, v)
		{
			char canon[NAMES_ADDR_LEN];

			if (json_object_get(keys[i].map, addr) != NULL || names_addr_parse(addr, canon) != 0)
				continue; /* the second: checked with the key before, cannot happen */
			struct nh_line l = { keys[i].sec * NS_PER_SEC, 0, canon, (char *)"", (char *)"",
				(char *)"static" };
			if ((e = put_line(out, &l)) != 0) {
				snprintf(
					err, errlen, "key %s: '%.60s': %s", keys[i].text, addr, strerror(-e));
				goto out;
			}
			count++;
		}
	}
	if (ferror(out)) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		goto out;
	}
	if (lines != NULL)
		*lines = count;
	rc = 0;
out:
	free(keys);
	json_decref(root);
	return rc;
}

/* Merge --------------------------------------------------------------------------- */

struct merge_ctx {
	struct nh_line **v;
	size_t n, cap;
	uint64_t base; /* sequence offset of the current file */
};

static int
collect(void *arg, struct nh_line *l)
{
	struct merge_ctx *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct nh_line **v = realloc(c->v, cap * sizeof(*v));
		if (v == NULL) {
			line_free(l);
			return -ENOMEM;
		}
		c->v = v;
		c->cap = cap;
	}
	l->seq += c->base;
	c->v[c->n++] = l;
	return 0;
}

static bool
same_line(const struct nh_line *a, const struct nh_line *b)
{
	return a->t == b->t && strcmp(a->addr, b->addr) == 0 && strcmp(a->name, b->name) == 0 &&
		strcmp(a->ns, b->ns) == 0;
}

int
namehist_merge_jsonl(const char *const *paths, size_t n, FILE *out, char *err, size_t errlen)
{
	struct merge_ctx c = { 0 };
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t lines = 0, bad = 0, first_bad = 0;

		c.base = (uint64_t)i << 40;
		rc = each_line(paths[i], &lines, &bad, &first_bad, collect, &c, err, errlen);
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		if (bad > 0)
			log_warnx("%s: %zu malformed lines dropped (the first: line %zu)", paths[i], bad,
				first_bad);
	}
	if (rc == 0) {
		if (c.n > 1)
			qsort(c.v, c.n, sizeof(*c.v), cmp_time);
		for (size_t i = 0; i < c.n; i++) {
			bool dup = false;
			/* A repeat of the address's previous line at the same t changes nothing;
			 * one after a different line for that address does, and stays. */
			for (size_t j = i; j-- > 0 && c.v[j]->t == c.v[i]->t;) {
				if (strcmp(c.v[j]->addr, c.v[i]->addr) == 0) {
					dup = same_line(c.v[j], c.v[i]);
					break;
				}
			}
			if (!dup && (rc = put_line(out, c.v[i])) != 0) {
				snprintf(err, errlen, "write: %s", strerror(-rc));
				break;
			}
		}
		if (rc == 0 && ferror(out)) {
			snprintf(err, errlen, "write: %s", strerror(errno));
			rc = -1;
		}
	}
	for (size_t i = 0; i < c.n; i++)
		line_free(c.v[i]);
	free(c.v);
	return rc != 0 ? -1 : 0;
}
