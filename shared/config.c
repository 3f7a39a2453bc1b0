/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Schema-driven configuration loader; the contract is in config.h.
 *
 * A document is parsed twice with libyaml's event API. The first pass (check_shape)
 * looks only at the shape of the document: syntax, anchors, aliases, tags, nesting
 * depth and whether keys are plain scalars. It keeps nothing but a fixed stack of
 * CFG_DEPTH_MAX frames, so a hostile file costs one linear scan and is refused before
 * any of it reaches the caller's struct. The second pass (load_mapping) walks the same
 * events against the schema and stores values. Parsing twice is cheap for a file
 * capped at 1 MiB, and unlike buffering events its memory does not grow with the input.
 */
#include "shared/config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* A configuration file is a few kilobytes; anything near this limit is a mistake or
 * an attack, and the limit bounds the work both parsing passes can be made to do. */
#define CFG_FILE_MAX       (1024 * 1024)
/* Nesting levels (mappings and sequences) allowed in a document, the top level included. */
#define CFG_DEPTH_MAX      8
/* Longest dotted path we build; a longer one cannot be in any sane schema. */
#define CFG_PATH_MAX       256
#define CFG_ENV_PREFIX     "PCAPLINE_"
#define CFG_ENV_PREFIX_LEN (sizeof(CFG_ENV_PREFIX) - 1)
#define CFG_ENV_NAME_MAX   (CFG_ENV_PREFIX_LEN + CFG_PATH_MAX)
/* The one PCAPLINE_* variable that names the file to load rather than a setting. */
#define CFG_ENV_CONFIG     "PCAPLINE_CONFIG"
/* How far a typo may be from a real key before we stop guessing what was meant. */
#define CFG_SUGGEST_DIST   2
/* How many known variables an unknown-variable message lists. */
#define CFG_ENV_SHOWN      4
/* User text quoted in a message is cut to this many bytes so the message stays short. */
#define CFG_SHOW_MAX       100
/* Room for CFG_SHOW_MAX bytes escaped as \xNN, the "..." marker and the NUL. */
#define CFG_SHOW_BUF       (CFG_SHOW_MAX * 4 + 4)
/* Room for a "what was expected" phrase; ENUM choices are cut to fit. */
#define CFG_WANT_BUF       256

/* -------------------------------------------------------------------------------- */
/* Messages                                                                          */
/* -------------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Every error path returns through here so that a NULL or zero-sized err is safe. */
static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * Renders user text for a one-line message: control characters become escapes so that
 * a value with a newline cannot split the message, and long text is cut (at a UTF-8
 * character boundary) so that a megabyte scalar cannot flood the log.
 */
static const char *
show(char buf[CFG_SHOW_BUF], const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = len, o = 0;
	bool cut = false;

	if (n > CFG_SHOW_MAX) {
		n = CFG_SHOW_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		cut = true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n' || c == '\t' || c == '\r') {
			buf[o++] = '\\';
			buf[o++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
		} else if (c < 0x20 || c == 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 0xf];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (cut) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* The "where" of a message is optional for cfg_set callers that pass no origin. */
static const char *
where_str(const char *where)
{
	return where != NULL ? where : "";
}
static const char *
where_sep(const char *where)
{
	return where != NULL && where[0] != '\0' ? ": " : "";
}

/* "WHERE: PATH: expected WANT, got 'VALUE'" */
static int
fail_value(char *err, size_t errlen, const char *where, const char *path, const char *want, const char *value,
	size_t len)
{
	char sv[CFG_SHOW_BUF];

	return fail(err, errlen, "%s%s%s: expected %s, got '%s'", where_str(where), where_sep(where), path,
		want, show(sv, value, len));
}

/* "WHERE: PATH: expected WANT, got KIND" for values that are not text at all. */
static int
fail_kind(char *err, size_t errlen, const char *where, const char *path, const char *want, const char *kind)
{
	return fail(err, errlen, "%s%s%s: expected %s, got %s", where_str(where), where_sep(where), path,
		want, kind);
}

/* -------------------------------------------------------------------------------- */
/* Small helpers                                                                     */
/* -------------------------------------------------------------------------------- */

/* ASCII-only so that a daemon's locale cannot change what "YES" means. */
static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}
static char
ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}
static bool
ascii_digit(char c)
{
	return c >= '0' && c <= '9';
}
static bool
ascii_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool
ascii_caseeq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
	return *a == *b;
}

static char *
dup_mem(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p != NULL) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

static void *
field(void *dst, const struct cfg_key *k)
{
	return (char *)dst + k->offset;
}
static const void *
cfield(const void *dst, const struct cfg_key *k)
{
	return (const char *)dst + k->offset;
}

/* The range in a schema entry applies unless both ends are zero (see config.h). */
static bool
has_range(const struct cfg_key *k)
{
	return k->min != 0 || k->max != 0;
}

/*
 * Optimal-string-alignment distance (Levenshtein plus adjacent transpositions, the
 * commonest typo), giving up early: anything over `cap` is reported as cap + 1, and
 * strings whose lengths alone differ by more than cap are never compared. Letters are
 * compared without case, so "Capture" or a lower-case variable name still finds its
 * key, but a difference in case alone counts as one edit rather than none.
 */
static size_t osa(const char *a, size_t an, const char *b, size_t bn, size_t cap);

static size_t
edit_distance(const char *a, size_t an, const char *b, size_t bn, size_t cap)
{
	size_t d = osa(a, an, b, bn, cap);

	return d == 0 && memcmp(a, b, an) != 0 ? 1 : d;
}

static size_t
osa(const char *a, size_t an, const char *b, size_t bn, size_t cap)
{
	size_t rows[3][CFG_ENV_NAME_MAX + 1];
	size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

	if (an > bn + cap || bn > an + cap || bn > CFG_ENV_NAME_MAX)
		return cap + 1;
	for (size_t j = 0; j <= bn; j++)
		prev[j] = j;
	for (size_t i = 1; i <= an; i++) {
		size_t best = cur[0] = i;

		for (size_t j = 1; j <= bn; j++) {
			size_t cost = ascii_lower(a[i - 1]) != ascii_lower(b[j - 1]);
			size_t v = prev[j - 1] + cost;

			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
				ascii_lower(a[i - 2]) == ascii_lower(b[j - 1]) && pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			cur[j] = v;
			if (v < best)
				best = v;
		}
		if (best > cap)
			return cap + 1;
		size_t *t = pp;
		pp = prev;
		prev = cur;
		cur = t;
	}
	return prev[bn] > cap ? cap + 1 : prev[bn];
}

/*
 * Finds the schema path or path prefix ("capture") nearest to an unknown path, for a
 * "did you mean" hint; `leaves` limits it to full paths, for cfg_set, which cannot set
 * a mapping. Returns the length of the match in *len, or NULL if nothing is close
 * enough to be a plausible typo (or is the unknown path itself, a prefix).
 */
static const char *
suggest(const struct cfg_key *schema, const char *path, size_t plen, bool leaves, size_t *len)
{
	const char *best = NULL;
	size_t best_d = CFG_SUGGEST_DIST + 1;

	for (const struct cfg_key *k = schema; k->path != NULL; k++) {
		for (size_t i = 0;; i++) {
			if (k->path[i] != '\0' && (leaves || k->path[i] != '.'))
				continue;
			size_t d = edit_distance(path, plen, k->path, i, CFG_SUGGEST_DIST);
			if (d > 0 && d < best_d && d < plen) {
				best = k->path;
				best_d = d;
				*len = i;
			}
			if (k->path[i] == '\0')
				break;
		}
	}
	return best;
}

/* "WHERE: unknown key 'PATH'" plus a hint when a schema key is within a typo or two. */
static int
fail_unknown(char *err, size_t errlen, const struct cfg_key *schema, const char *where, const char *path,
	size_t plen, bool leaves)
{
	char sp[CFG_SHOW_BUF], hint[CFG_PATH_MAX + 32] = "";
	size_t slen = 0;
	const char *s = suggest(schema, path, plen, leaves, &slen);

	if (s != NULL)
		snprintf(hint, sizeof(hint), " (did you mean '%.*s'?)", (int)slen, s);
	return fail(err, errlen, "%s%sunknown key '%s'%s", where_str(where), where_sep(where),
		show(sp, path, plen), hint);
}

static const struct cfg_key *
find_key(const struct cfg_key *schema, const char *path)
{
	for (const struct cfg_key *k = schema; k->path != NULL; k++)
		if (strcmp(k->path, path) == 0)
			return k;
	return NULL;
}

/* True if `path` names a mapping in the schema, i.e. some key starts with "path.". */
static bool
is_prefix(const struct cfg_key *schema, const char *path, size_t plen)
{
	for (const struct cfg_key *k = schema; k->path != NULL; k++)
		if (strncmp(k->path, path, plen) == 0 && k->path[plen] == '.')
			return true;
	return false;
}

/* -------------------------------------------------------------------------------- */
/* Values                                                                            */
/* -------------------------------------------------------------------------------- */

struct unit {
	const char *name;
	uint64_t mult;
};

/* K and KB are binary on purpose, see config.h; "" is plain bytes. */
static const struct unit size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "k", 1ULL << 10 },
	{ "K", 1ULL << 10 },
	{ "kB", 1ULL << 10 },
	{ "KB", 1ULL << 10 },
	{ "KiB", 1ULL << 10 },
	{ "M", 1ULL << 20 },
	{ "MB", 1ULL << 20 },
	{ "MiB", 1ULL << 20 },
	{ "G", 1ULL << 30 },
	{ "GB", 1ULL << 30 },
	{ "GiB", 1ULL << 30 },
	{ "T", 1ULL << 40 },
	{ "TB", 1ULL << 40 },
	{ "TiB", 1ULL << 40 },
	{ NULL, 0 },
};

/* A bare number is milliseconds, the unit everything is stored in. */
static const struct unit duration_units[] = {
	{ "", 1 },
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ "d", 24 * 60 * 60 * 1000 },
	{ NULL, 0 },
};

/* Largest units first, so that a range prints as "4KiB..1GiB" rather than in bytes. */
static const struct unit size_shown[] = {
	{ "EiB", 1ULL << 60 },
	{ "PiB", 1ULL << 50 },
	{ "TiB", 1ULL << 40 },
	{ "GiB", 1ULL << 30 },
	{ "MiB", 1ULL << 20 },
	{ "KiB", 1ULL << 10 },
	{ "", 1 },
	{ NULL, 0 },
};

static const struct unit duration_shown[] = {
	{ "d", 24 * 60 * 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ "m", 60 * 1000 },
	{ "s", 1000 },
	{ "ms", 1 },
	{ NULL, 0 },
};

/* Prints v in the largest unit that divides it exactly. */
static void
fmt_unit(char *buf, size_t len, uint64_t v, const struct unit *u)
{
	for (; u->name != NULL; u++) {
		if (v % u->mult == 0 && (v != 0 || u->mult == 1)) {
			snprintf(buf, len, "%" PRIu64 "%s", v / u->mult, u->name);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64, v);
}

/* Schema ranges are int64_t; unsigned types treat a negative bound as zero. */
static uint64_t
umin(const struct cfg_key *k)
{
	return k->min < 0 ? 0 : (uint64_t)k->min;
}
static uint64_t
umax(const struct cfg_key *k)
{
	return k->max < 0 ? 0 : (uint64_t)k->max;
}

static void
fmt_range(char *buf, size_t len, const struct cfg_key *k, const struct unit *u)
{
	char lo[32], hi[32];

	fmt_unit(lo, sizeof(lo), umin(k), u);
	fmt_unit(hi, sizeof(hi), umax(k), u);
	snprintf(buf, len, " in %s..%s", lo, hi);
}

/*
 * The "what was expected" phrase of a key. `syntax` asks for the long form that spells
 * out accepted units, for values that are not even well-formed.
 */
static const char *
want(char buf[CFG_WANT_BUF], const struct cfg_key *k, bool syntax)
{
	char range[80] = "";
	size_t o;

	switch (k->type) {
	case CFG_STR:
		return "a string";
	case CFG_INT:
		if (has_range(k))
			snprintf(buf, CFG_WANT_BUF, "an integer in %" PRId64 "..%" PRId64, k->min, k->max);
		else
			snprintf(buf, CFG_WANT_BUF, "an integer");
		return buf;
	case CFG_BOOL:
		return "a boolean (true/false, yes/no, on/off, 1/0)";
	case CFG_SIZE:
		if (has_range(k))
			fmt_range(range, sizeof(range), k, size_shown);
		snprintf(buf, CFG_WANT_BUF, "a size%s%s", range,
			syntax ? " (bytes, optionally with unit B, k/K/kB/KB/KiB, M/MB/MiB, "
				 "G/GB/GiB, T/TB/TiB)"
			       : "");
		return buf;
	case CFG_DURATION:
		if (has_range(k))
			fmt_range(range, sizeof(range), k, duration_shown);
		snprintf(buf, CFG_WANT_BUF, "a duration%s%s", range,
			syntax ? " (milliseconds, or with unit ms, s, m, h, d)" : "");
		return buf;
	case CFG_STRLIST:
		return "a list of strings";
	case CFG_ENUM:
		o = (size_t)snprintf(buf, CFG_WANT_BUF, "one of ");
		for (size_t i = 0; k->choices != NULL && k->choices[i] != NULL; i++) {
			int n = snprintf(buf + o, CFG_WANT_BUF - o, "%s%s", i > 0 ? "|" : "", k->choices[i]);
			if (n < 0 || (size_t)n >= CFG_WANT_BUF - o)
				break;
			o += (size_t)n;
		}
		return buf;
	}
	return "a value";
}

/* Reads decimal digits; fails on no digits or on overflow of uint64_t. */
static int
parse_digits(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (!ascii_digit(*s))
		return -1;
	for (; ascii_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return 0;
}

static int
parse_int(const struct cfg_key *k, const char *s, size_t len, int64_t *out, const char *where, char *err,
	size_t errlen)
{
	char wb[CFG_WANT_BUF];
	const char *p = s;
	bool neg = false;
	uint64_t mag = 0;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	const char *digits = p;
	/* parse_digits leaves p alone on failure; digits there mean an overflow. */
	bool over = parse_digits(&p, &mag) != 0 && ascii_digit(*p);
	while (over && ascii_digit(*p))
		p++;
	if (p == digits || *p != '\0')
		return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
	if (over || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) {
		/* Without a schema range the only range is int64_t's, so name it. */
		return fail_value(err, errlen, where, k->path,
			has_range(k) ? want(wb, k, false)
				     : "an integer in -9223372036854775808.."
				       "9223372036854775807",
			s, len);
	}
	/* -INT64_MIN does not exist, so that one value is spelt out. */
	int64_t v = !neg ? (int64_t)mag : mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
	if (has_range(k) && (v < k->min || v > k->max))
		return fail_value(err, errlen, where, k->path, want(wb, k, false), s, len);
	*out = v;
	return 0;
}

/* Parses a number with an optional unit from `units` (CFG_SIZE, CFG_DURATION). */
static int
parse_scaled(const struct cfg_key *k, const char *s, size_t len, const struct unit *units, uint64_t *out,
	const char *where, char *err, size_t errlen)
{
	char wb[CFG_WANT_BUF];
	const char *p = s;
	uint64_t v = 0;
	const struct unit *u;

	if (!ascii_digit(*p))
		return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
	/* An overflow in the digits themselves is a range problem, not a syntax one. */
	int big = parse_digits(&p, &v);
	if (big != 0)
		while (ascii_digit(*p))
			p++;
	for (u = units; u->name != NULL; u++)
		if (strcmp(p, u->name) == 0)
			break;
	if (u->name == NULL)
		return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
	if (big != 0 || v > UINT64_MAX / u->mult) {
		if (!has_range(k))
			return fail_value(err, errlen, where, k->path,
				k->type == CFG_SIZE ? "a size below 16EiB"
						    : "a duration of at most 18446744073709551615ms",
				s, len);
		return fail_value(err, errlen, where, k->path, want(wb, k, false), s, len);
	}
	v *= u->mult;
	if (has_range(k) && (v < umin(k) || v > umax(k)))
		return fail_value(err, errlen, where, k->path, want(wb, k, false), s, len);
	*out = v;
	return 0;
}

static int
parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };

	for (size_t i = 0; yes[i] != NULL; i++) {
		if (ascii_caseeq(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (ascii_caseeq(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static void
strlist_clear(struct cfg_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Appends a copy of s[0..len). The array grows by doubling; n is bounded by the input. */
static int
strlist_add(struct cfg_strlist *l, size_t *cap, const char *s, size_t len)
{
	if (l->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		char **nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return -1;
		l->v = nv;
		*cap = ncap;
	}
	if ((l->v[l->n] = dup_mem(s, len)) == NULL)
		return -1;
	l->n++;
	return 0;
}

/* Splits on commas, trims blanks around each item and drops the empty ones. */
static int
strlist_split(struct cfg_strlist *l, const char *s)
{
	size_t cap = 0;

	for (;;) {
		const char *end = strchr(s, ',');
		const char *e = end != NULL ? end : s + strlen(s);
		const char *b = s;

		while (b < e && ascii_space(*b))
			b++;
		while (e > b && ascii_space(e[-1]))
			e--;
		if (e > b && strlist_add(l, &cap, b, (size_t)(e - b)) != 0)
			return -1;
		if (end == NULL)
			return 0;
		s = end + 1;
	}
}

/* Replaces a list in dst; the old one is freed only once the new one is complete. */
static void
strlist_replace(struct cfg_strlist *dstl, struct cfg_strlist *nl)
{
	strlist_clear(dstl);
	*dstl = *nl;
	nl->v = NULL;
	nl->n = 0;
}

/*
 * Parses `s` (NUL-terminated, `len` bytes) into k's field. `null` marks a YAML null,
 * which empties strings and lists. On error the field keeps its previous value.
 */
static int
apply(const struct cfg_key *k, void *dst, const char *s, size_t len, bool null, const char *where, char *err,
	size_t errlen)
{
	char wb[CFG_WANT_BUF];
	void *f = field(dst, k);

	/* C strings would silently cut the value at an embedded NUL ("\0" in YAML). */
	if (memchr(s, '\0', len) != NULL)
		return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
	switch (k->type) {
	case CFG_STR: {
		char *v = dup_mem(null ? "" : s, null ? 0 : len);
		if (v == NULL)
			return fail(err, errlen, "%s%s%s: out of memory", where_str(where), where_sep(where),
				k->path);
		free(*(char **)f);
		*(char **)f = v;
		return 0;
	}
	case CFG_INT: {
		int64_t v = 0;
		if (parse_int(k, s, len, &v, where, err, errlen) != 0)
			return -1;
		*(int64_t *)f = v;
		return 0;
	}
	case CFG_BOOL: {
		bool v;
		if (parse_bool(s, &v) != 0)
			return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
		*(bool *)f = v;
		return 0;
	}
	case CFG_SIZE:
	case CFG_DURATION: {
		uint64_t v = 0;
		if (parse_scaled(k, s, len, k->type == CFG_SIZE ? size_units : duration_units, &v, where, err,
			    errlen) != 0)
			return -1;
		*(uint64_t *)f = v;
		return 0;
	}
	case CFG_STRLIST: {
		struct cfg_strlist nl = { NULL, 0 };
		if (!null && strlist_split(&nl, s) != 0) {
			strlist_clear(&nl);
			return fail(err, errlen, "%s%s%s: out of memory", where_str(where), where_sep(where),
				k->path);
		}
		strlist_replace(f, &nl);
		return 0;
	}
	case CFG_ENUM:
		for (int i = 0; k->choices != NULL && k->choices[i] != NULL; i++) {
			if (strcmp(s, k->choices[i]) == 0) {
				*(int *)f = i;
				return 0;
			}
		}
		return fail_value(err, errlen, where, k->path, want(wb, k, true), s, len);
	}
	return fail(err, errlen, "%s%s%s: unsupported type %d in schema", where_str(where), where_sep(where),
		k->path, (int)k->type);
}

/* -------------------------------------------------------------------------------- */
/* YAML                                                                              */
/* -------------------------------------------------------------------------------- */

/* 1-based line of a libyaml mark, which counts from zero. */
static size_t
mark_line(yaml_mark_t m)
{
	return m.line + 1;
}

/*
 * Turns a libyaml failure into "NAME:LINE: YAML syntax error: PROBLEM (CONTEXT on line
 * N)". Reader errors (bad encoding) carry a byte offset instead of a mark, so their
 * line is counted from the buffer.
 */
static int
fail_syntax(const yaml_parser_t *p, const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	char ctx[128] = "";
	size_t line;

	if (p->error == YAML_MEMORY_ERROR)
		return fail(err, errlen, "%s: out of memory while parsing", name);
	if (p->error == YAML_READER_ERROR) {
		size_t end = p->problem_offset < len ? p->problem_offset : len;
		line = 1;
		for (size_t i = 0; i < end; i++)
			line += buf[i] == '\n';
		if (p->problem_value != -1)
			snprintf(ctx, sizeof(ctx), " (byte 0x%02x)", (unsigned)p->problem_value & 0xffu);
	} else {
		line = mark_line(p->problem_mark);
		if (p->context != NULL)
			snprintf(ctx, sizeof(ctx), " (%s on line %zu)", p->context,
				mark_line(p->context_mark));
	}
	return fail(err, errlen, "%s:%zu: YAML syntax error: %s%s", name, line,
		p->problem != NULL ? p->problem : "unknown problem", ctx);
}

struct frame {
	bool mapping;
	bool want_key;
};

/*
 * Checks one node event of the first pass: no anchors or tags, keys are plain scalars,
 * and collections do not nest deeper than CFG_DEPTH_MAX.
 */
static int
check_node(const yaml_event_t *ev, struct frame *st, int *depth, const char *name, char *err, size_t errlen)
{
	size_t line = mark_line(ev->start_mark);
	const yaml_char_t *anchor = NULL, *tag = NULL;
	char sv[CFG_SHOW_BUF];

	if (ev->type == YAML_SCALAR_EVENT) {
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
	} else {
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
	}
	if (anchor != NULL)
		return fail(err, errlen, "%s:%zu: YAML anchor '&%s' is not allowed", name, line,
			show(sv, (const char *)anchor, strlen((const char *)anchor)));
	if (tag != NULL)
		return fail(err, errlen, "%s:%zu: YAML tag '%s' is not allowed", name, line,
			show(sv, (const char *)tag, strlen((const char *)tag)));
	if (*depth > 0 && st[*depth - 1].mapping) {
		struct frame *f = &st[*depth - 1];
		if (f->want_key) {
			if (ev->type != YAML_SCALAR_EVENT)
				return fail(err, errlen, "%s:%zu: keys must be plain scalars, got a %s", name,
					line, ev->type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence");
			if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
				return fail(err, errlen,
					"%s:%zu: key '%s' must be a plain scalar, without quotes", name, line,
					show(sv, (const char *)ev->data.scalar.value,
						ev->data.scalar.length));
		}
		f->want_key = !f->want_key;
	}
	if (ev->type != YAML_SCALAR_EVENT) {
		if (*depth == CFG_DEPTH_MAX)
			return fail(err, errlen, "%s:%zu: nesting deeper than %d levels", name, line,
				CFG_DEPTH_MAX);
		st[*depth].mapping = ev->type == YAML_MAPPING_START_EVENT;
		st[*depth].want_key = true;
		(*depth)++;
	}
	return 0;
}

/* First pass: refuses syntax errors and hostile constructs without touching dst. */
static int
check_shape(const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct frame st[CFG_DEPTH_MAX];
	int depth = 0, docs = 0, rc = -1;
	char sv[CFG_SHOW_BUF];

	if (!yaml_parser_initialize(&p))
		return fail(err, errlen, "%s: out of memory while parsing", name);
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			fail_syntax(&p, name, buf, len, err, errlen);
			break;
		}
		size_t line = mark_line(ev.start_mark);
		yaml_event_type_t type = ev.type;
		int bad = 0;

		switch (type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				bad = fail(
					err, errlen, "%s:%zu: only one YAML document is allowed", name, line);
			break;
		case YAML_ALIAS_EVENT:
			bad = fail(err, errlen, "%s:%zu: YAML alias '*%s' is not allowed", name, line,
				show(sv, (const char *)ev.data.alias.anchor,
					strlen((const char *)ev.data.alias.anchor)));
			break;
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			bad = check_node(&ev, st, &depth, name, err, errlen);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (bad != 0)
			break;
		if (type == YAML_STREAM_END_EVENT) {
			rc = 0;
			break;
		}
	}
	yaml_parser_delete(&p);
	return rc;
}

/* State of the second pass. `ev` is the current event, owned until the next call. */
struct loader {
	const struct cfg_key *schema;
	void *dst;
	const char *name;
	const char *buf;
	size_t len;
	yaml_parser_t parser;
	yaml_event_t ev;
	bool have_ev;
	char *err;
	size_t errlen;
};

static int
ld_next(struct loader *l)
{
	if (l->have_ev) {
		yaml_event_delete(&l->ev);
		l->have_ev = false;
	}
	if (!yaml_parser_parse(&l->parser, &l->ev))
		return fail_syntax(&l->parser, l->name, l->buf, l->len, l->err, l->errlen);
	l->have_ev = true;
	return 0;
}

/* A plain ~, null or empty scalar is YAML's null; quoting makes it a string again. */
static bool
is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;

	return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		(v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
			strcmp(v, "NULL") == 0);
}

static const char *
kind_of(const yaml_event_t *ev)
{
	return ev->type == YAML_MAPPING_START_EVENT ? "a mapping" : "a sequence";
}

/* Reads a YAML sequence of scalars into a list, which replaces the old one. */
static int
load_seq(struct loader *l, const struct cfg_key *k)
{
	struct cfg_strlist nl = { NULL, 0 };
	size_t cap = 0;
	char where[CFG_ERRLEN];

	for (;;) {
		if (ld_next(l) != 0)
			goto fail;
		if (l->ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		snprintf(where, sizeof(where), "%s:%zu", l->name, mark_line(l->ev.start_mark));
		if (l->ev.type != YAML_SCALAR_EVENT) {
			fail_kind(l->err, l->errlen, where, k->path, "a list of strings",
				l->ev.type == YAML_MAPPING_START_EVENT ? "a mapping inside the list"
								       : "a sequence inside the list");
			goto fail;
		}
		const char *v = (const char *)l->ev.data.scalar.value;
		size_t vlen = l->ev.data.scalar.length;
		/* An empty item is almost always a stray "-", so say so rather than drop it. */
		if (is_null(&l->ev)) {
			fail_kind(l->err, l->errlen, where, k->path, "a list of strings", "an empty item");
			goto fail;
		}
		if (memchr(v, '\0', vlen) != NULL) {
			fail_value(l->err, l->errlen, where, k->path, "a list of strings", v, vlen);
			goto fail;
		}
		if (strlist_add(&nl, &cap, v, vlen) != 0) {
			fail(l->err, l->errlen, "%s: %s: out of memory", where, k->path);
			goto fail;
		}
	}
	strlist_replace(field(l->dst, k), &nl);
	return 0;
fail:
	strlist_clear(&nl);
	return -1;
}

/* Stores the value event of key k; `kline` is the key's line for collection errors. */
static int
load_value(struct loader *l, const struct cfg_key *k, size_t kline)
{
	char where[CFG_ERRLEN], wb[CFG_WANT_BUF];

	if (l->ev.type == YAML_SCALAR_EVENT) {
		snprintf(where, sizeof(where), "%s:%zu", l->name, mark_line(l->ev.start_mark));
		return apply(k, l->dst, (const char *)l->ev.data.scalar.value, l->ev.data.scalar.length,
			is_null(&l->ev), where, l->err, l->errlen);
	}
	if (l->ev.type == YAML_SEQUENCE_START_EVENT && k->type == CFG_STRLIST)
		return load_seq(l, k);
	snprintf(where, sizeof(where), "%s:%zu", l->name, kline);
	return fail_kind(l->err, l->errlen, where, k->path, want(wb, k, false), kind_of(&l->ev));
}

struct seen {
	char *key;
	size_t line;
};

static void
seen_free(struct seen *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i].key);
	free(s);
}

/*
 * Second pass over one mapping whose MAPPING-START was just read; `prefix` is its
 * dotted path ("" at the top). Every key is checked against the schema before its
 * value is read, so the keys remembered for duplicate detection are all known ones
 * and their number is bounded by the schema, not by the input. Recursion depth is
 * bounded by CFG_DEPTH_MAX, which the first pass enforced.
 */
static int
load_mapping(struct loader *l, const char *prefix)
{
	struct seen *seen = NULL;
	size_t nseen = 0, plen = strlen(prefix);
	char path[CFG_PATH_MAX], where[CFG_ERRLEN], sv[CFG_SHOW_BUF];
	int rc = -1;

	for (;;) {
		if (ld_next(l) != 0)
			goto out;
		if (l->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (l->ev.type != YAML_SCALAR_EVENT) {
			/* The first pass refuses non-scalar keys, so this is a broken invariant. */
			fail(l->err, l->errlen, "%s:%zu: keys must be plain scalars", l->name,
				mark_line(l->ev.start_mark));
			goto out;
		}
		const char *key = (const char *)l->ev.data.scalar.value;
		size_t klen = l->ev.data.scalar.length, kline = mark_line(l->ev.start_mark);

		snprintf(where, sizeof(where), "%s:%zu", l->name, kline);
		if (klen == 0) {
			fail(l->err, l->errlen, "%s: empty key%s%s%s", where, plen ? " in '" : "", prefix,
				plen ? "'" : "");
			goto out;
		}
		if (memchr(key, '.', klen) != NULL) {
			fail(l->err, l->errlen, "%s: key '%s' contains a dot; write nested mappings instead",
				where, show(sv, key, klen));
			goto out;
		}
		if (plen + 1 + klen >= sizeof(path)) {
			/* Too long for any schema key; show() cuts what we pass it. */
			char longp[CFG_PATH_MAX + CFG_SHOW_MAX + 3];
			snprintf(longp, sizeof(longp), "%s%s%.*s", prefix, plen ? "." : "",
				klen > CFG_SHOW_MAX ? CFG_SHOW_MAX + 1 : (int)klen, key);
			fail_unknown(l->err, l->errlen, l->schema, where, longp, strlen(longp), false);
			goto out;
		}
		snprintf(path, sizeof(path), "%s%s%s", prefix, plen ? "." : "", key);
		size_t pathlen = strlen(path);
		const struct cfg_key *k = find_key(l->schema, path);
		if (k == NULL && !is_prefix(l->schema, path, pathlen)) {
			fail_unknown(l->err, l->errlen, l->schema, where, path, pathlen, false);
			goto out;
		}
		for (size_t i = 0; i < nseen; i++) {
			if (strcmp(seen[i].key, key) == 0) {
				fail(l->err, l->errlen, "%s: duplicate key '%s' (first on line %zu)", where,
					path, seen[i].line);
				goto out;
			}
		}
		struct seen *ns = realloc(seen, (nseen + 1) * sizeof(*ns));
		if (ns == NULL) {
			fail(l->err, l->errlen, "%s: out of memory", where);
			goto out;
		}
		seen = ns;
		if ((seen[nseen].key = dup_mem(key, klen)) == NULL) {
			fail(l->err, l->errlen, "%s: out of memory", where);
			goto out;
		}
		seen[nseen++].line = kline;

		if (ld_next(l) != 0)
			goto out;
		if (k != NULL) {
			if (load_value(l, k, kline) != 0)
				goto out;
		} else if (l->ev.type == YAML_MAPPING_START_EVENT) {
			if (load_mapping(l, path) != 0)
				goto out;
		} else if (l->ev.type == YAML_SCALAR_EVENT) {
			/* "capture:" with every setting commented out is a null; accept it. */
			if (!is_null(&l->ev)) {
				snprintf(
					where, sizeof(where), "%s:%zu", l->name, mark_line(l->ev.start_mark));
				fail_value(l->err, l->errlen, where, path, "a mapping",
					(const char *)l->ev.data.scalar.value, l->ev.data.scalar.length);
				goto out;
			}
		} else {
			fail_kind(l->err, l->errlen, where, path, "a mapping", kind_of(&l->ev));
			goto out;
		}
	}
	rc = 0;
out:
	seen_free(seen, nseen);
	return rc;
}

/* Second pass: the document is known to be well-formed, so only meaning is checked. */
static int
load_doc(struct loader *l)
{
	char sv[CFG_SHOW_BUF];

	if (ld_next(l) != 0 || ld_next(l) != 0) /* STREAM-START, then a document or the end */
		return -1;
	if (l->ev.type == YAML_STREAM_END_EVENT)
		return 0; /* Nothing but comments: an empty configuration. */
	if (ld_next(l) != 0)
		return -1;
	size_t line = mark_line(l->ev.start_mark);
	switch (l->ev.type) {
	case YAML_MAPPING_START_EVENT:
		return load_mapping(l, "");
	case YAML_SCALAR_EVENT:
		if (is_null(&l->ev))
			return 0;
		return fail(l->err, l->errlen, "%s:%zu: expected a mapping at the top level, got '%s'",
			l->name, line,
			show(sv, (const char *)l->ev.data.scalar.value, l->ev.data.scalar.length));
	default:
		return fail(l->err, l->errlen, "%s:%zu: expected a mapping at the top level, got %s", l->name,
			line, kind_of(&l->ev));
	}
}

int
cfg_load_mem(const struct cfg_key *schema, void *dst, const char *name, const char *buf, size_t len,
	char *err, size_t errlen)
{
	struct loader l;
	int rc;

	if (name == NULL)
		name = "config";
	if (len > CFG_FILE_MAX)
		return fail(err, errlen, "%s: larger than the 1 MiB limit", name);
	if (buf == NULL)
		buf = ""; /* libyaml asserts on a NULL input even when it is empty. */
	if (check_shape(name, buf, len, err, errlen) != 0)
		return -1;

	memset(&l, 0, sizeof(l));
	l.schema = schema;
	l.dst = dst;
	l.name = name;
	l.buf = buf;
	l.len = len;
	l.err = err;
	l.errlen = errlen;
	if (!yaml_parser_initialize(&l.parser))
		return fail(err, errlen, "%s: out of memory while parsing", name);
	yaml_parser_set_input_string(&l.parser, (const unsigned char *)buf, len);
	rc = load_doc(&l);
	if (l.have_ev)
		yaml_event_delete(&l.ev);
	yaml_parser_delete(&l.parser);
	return rc;
}

/* -------------------------------------------------------------------------------- */
/* Files and the environment                                                         */
/* -------------------------------------------------------------------------------- */

/*
 * Reads a whole file of at most CFG_FILE_MAX bytes. The size is checked while reading,
 * not only with fstat, because pipes and /proc files report no useful size.
 */
static int
read_file(const char *file, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap;
	int fd, e;

	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return fail(err, errlen, "%s: cannot open: %s", file, strerror(errno));
	if (fstat(fd, &st) != 0) {
		e = errno;
		close(fd);
		return fail(err, errlen, "%s: cannot read: %s", file, strerror(e));
	}
	if (S_ISREG(st.st_mode) && st.st_size > CFG_FILE_MAX) {
		close(fd);
		return fail(err, errlen, "%s: larger than the 1 MiB limit", file);
	}
	/* One byte over the limit is enough to tell that a file is too large. */
	cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
	for (;;) {
		if (len == cap) {
			size_t ncap = cap * 2 > CFG_FILE_MAX + 1 ? CFG_FILE_MAX + 1 : cap * 2;
			char *nb;
			if (ncap == cap) {
				free(buf);
				close(fd);
				return fail(err, errlen, "%s: larger than the 1 MiB limit", file);
			}
			if ((nb = realloc(buf, ncap)) == NULL)
				goto oom;
			buf = nb;
			cap = ncap;
		} else if (buf == NULL && (buf = malloc(cap)) == NULL) {
			goto oom;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			free(buf);
			close(fd);
			return fail(err, errlen, "%s: cannot read: %s", file, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > CFG_FILE_MAX) {
		free(buf);
		return fail(err, errlen, "%s: larger than the 1 MiB limit", file);
	}
	*out = buf;
	*outlen = len;
	return 0;
oom:
	free(buf);
	close(fd);
	return fail(err, errlen, "%s: out of memory", file);
}

/* PCAPLINE_ + the path in upper case, with anything but letters and digits as '_'. */
static int
env_name(const struct cfg_key *k, char buf[CFG_ENV_NAME_MAX + 1])
{
	size_t n = strlen(k->path);

	if (n > CFG_PATH_MAX)
		return -1;
	memcpy(buf, CFG_ENV_PREFIX, CFG_ENV_PREFIX_LEN);
	for (size_t i = 0; i < n; i++) {
		char c = ascii_upper(k->path[i]);
		buf[CFG_ENV_PREFIX_LEN + i] = (c >= 'A' && c <= 'Z') || ascii_digit(c) ? c : '_';
	}
	buf[CFG_ENV_PREFIX_LEN + n] = '\0';
	return 0;
}

/*
 * "environment PCAPLINE_X: unknown setting (known: ...)". A misspelt variable must not
 * be ignored, so this is an error; the list shows the known names nearest to it first.
 */
static int
fail_env_unknown(const struct cfg_key *schema, const char *var, size_t vlen, char *err, size_t errlen)
{
	enum {
		CAP = 64
	};
	const struct cfg_key *pick[CFG_ENV_SHOWN];
	size_t dist[CFG_ENV_SHOWN], npick = 0, nkeys = 0, o = 0;
	char name[CFG_ENV_NAME_MAX + 1], list[CFG_ERRLEN] = "", sv[CFG_SHOW_BUF];

	/* Insertion into a tiny sorted array; ties keep schema order. */
	for (const struct cfg_key *k = schema; k->path != NULL; k++) {
		if (env_name(k, name) != 0)
			continue;
		nkeys++;
		size_t d = edit_distance(var, vlen, name, strlen(name), CAP);
		size_t at = npick;
		while (at > 0 && dist[at - 1] > d)
			at--;
		if (at >= CFG_ENV_SHOWN)
			continue;
		size_t last = npick < CFG_ENV_SHOWN ? npick : CFG_ENV_SHOWN - 1;
		memmove(&pick[at + 1], &pick[at], (last - at) * sizeof(pick[0]));
		memmove(&dist[at + 1], &dist[at], (last - at) * sizeof(dist[0]));
		pick[at] = k;
		dist[at] = d;
		if (npick < CFG_ENV_SHOWN)
			npick++;
	}
	for (size_t i = 0; i < npick; i++) {
		env_name(pick[i], name);
		int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", name);
		if (n < 0 || (size_t)n >= sizeof(list) - o)
			break;
		o += (size_t)n;
	}
	return fail(err, errlen, "environment %s: unknown setting (known: %s%s)", show(sv, var, vlen),
		npick ? list : "none", nkeys > npick ? ", ..." : "");
}

/*
 * The sensor and the receiver may share one environment (a container spec, an
 * EnvironmentFile), so a PCAPLINE_ variable this program does not know may belong to
 * the other one. It is an error only when it is one edit (or only letter case) away
 * from one of this program's names, which is what a misspelling looks like.
 */
static bool
env_near_known(const struct cfg_key *schema, const char *var, size_t vlen)
{
	char name[CFG_ENV_NAME_MAX + 1];
	for (const struct cfg_key *k = schema; k->path != NULL; k++)
		if (env_name(k, name) == 0 && edit_distance(var, vlen, name, strlen(name), 2) <= 1)
			return true;
	return false;
}

static int
load_env(const struct cfg_key *schema, void *dst, char *err, size_t errlen)
{
	char name[CFG_ENV_NAME_MAX + 1], origin[CFG_ENV_NAME_MAX + 16];

	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		size_t n = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
		bool known = false;

		if (strncmp(*e, CFG_ENV_PREFIX, CFG_ENV_PREFIX_LEN) != 0)
			continue;
		if (n == strlen(CFG_ENV_CONFIG) && memcmp(*e, CFG_ENV_CONFIG, n) == 0)
			continue;
		for (const struct cfg_key *k = schema; k->path != NULL && !known; k++)
			known = env_name(k, name) == 0 && strlen(name) == n && memcmp(name, *e, n) == 0;
		if (!known && env_near_known(schema, *e, n))
			return fail_env_unknown(schema, *e, n, err, errlen);
	}
	for (const struct cfg_key *k = schema; k->path != NULL; k++) {
		const char *v;

		if (env_name(k, name) != 0 || (v = getenv(name)) == NULL)
			continue;
		snprintf(origin, sizeof(origin), "environment %s", name);
		if (cfg_set(schema, dst, k->path, v, origin, err, errlen) != 0)
			return -1;
	}
	return 0;
}

int
cfg_load(const struct cfg_key *schema, void *dst, const char *file, char *err, size_t errlen)
{
	if (file != NULL && file[0] != '\0') {
		char *buf = NULL;
		size_t len = 0;
		int rc;

		if (read_file(file, &buf, &len, err, errlen) != 0)
			return -1;
		rc = cfg_load_mem(schema, dst, file, buf, len, err, errlen);
		free(buf);
		if (rc != 0)
			return -1;
	}
	return load_env(schema, dst, err, errlen);
}

int
cfg_set(const struct cfg_key *schema, void *dst, const char *path, const char *value, const char *origin,
	char *err, size_t errlen)
{
	const struct cfg_key *k = find_key(schema, path);
	char wb[CFG_WANT_BUF];

	if (k == NULL)
		return fail_unknown(err, errlen, schema, origin, path, strlen(path), true);
	if (value == NULL)
		return fail_kind(err, errlen, origin, k->path, want(wb, k, true), "no value");
	return apply(k, dst, value, strlen(value), false, origin, err, errlen);
}

void
cfg_free(const struct cfg_key *schema, void *dst)
{
	for (const struct cfg_key *k = schema; k->path != NULL; k++) {
		if (k->type == CFG_STR) {
			char **p = field(dst, k);
			free(*p);
			*p = NULL;
		} else if (k->type == CFG_STRLIST) {
			strlist_clear(field(dst, k));
		}
	}
}

/* -------------------------------------------------------------------------------- */
/* Dump                                                                              */
/* -------------------------------------------------------------------------------- */

static void
dump_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* List items print bare, as in "[eth0, eth1]", unless that would be ambiguous. */
static bool
needs_quotes(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || ascii_space(s[0]) || ascii_space(s[n - 1]))
		return true;
	for (; *s != '\0'; s++)
		if (strchr(",[]\"\\", *s) != NULL || (unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

void
cfg_dump(const struct cfg_key *schema, const void *dst, FILE *out)
{
	for (const struct cfg_key *k = schema; k->path != NULL; k++) {
		const void *f = cfield(dst, k);

		fprintf(out, "%s = ", k->path);
		switch (k->type) {
		case CFG_STR:
			if (*(char *const *)f == NULL)
				fputs("(unset)", out);
			else if (strncmp(*(char *const *)f, "-----BEGIN ", 11) == 0)
				/* A certificate or key given as text (tls.*): it may be a secret. */
				fprintf(out, "(PEM text, %zu bytes)", strlen(*(char *const *)f));
			else
				dump_quoted(out, *(char *const *)f);
			break;
		case CFG_INT:
			fprintf(out, "%" PRId64, *(const int64_t *)f);
			break;
		case CFG_BOOL:
			fputs(*(const bool *)f ? "true" : "false", out);
			break;
		case CFG_SIZE:
			fprintf(out, "%" PRIu64, *(const uint64_t *)f);
			break;
		case CFG_DURATION:
			fprintf(out, "%" PRIu64 "ms", *(const uint64_t *)f);
			break;
		case CFG_STRLIST: {
			const struct cfg_strlist *l = f;
			fputc('[', out);
			for (size_t i = 0; i < l->n; i++) {
				if (i > 0)
					fputs(", ", out);
				if (needs_quotes(l->v[i]))
					dump_quoted(out, l->v[i]);
				else
					fputs(l->v[i], out);
			}
			fputc(']', out);
			break;
		}
		case CFG_ENUM: {
			int v = *(const int *)f;
			size_t n = 0;
			while (k->choices != NULL && k->choices[n] != NULL)
				n++;
			if (v >= 0 && (size_t)v < n)
				fputs(k->choices[v], out);
			else
				fprintf(out, "%d", v);
			break;
		}
		}
		fputc('\n', out);
	}
}
