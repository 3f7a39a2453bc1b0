/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Schema-driven configuration: YAML file (libyaml), then PCAPLINE_* environment
 * variables, then command-line flags, each overriding the one before.
 *
 * A schema is an array of struct cfg_key ending with a {NULL} entry. Each key has a
 * dotted path ("capture.filter") mapping to nested YAML mappings, and an offset into
 * the caller's struct where the parsed value is stored. Defaults are whatever the
 * caller put in the struct before loading. The environment variable for a key is
 * PCAPLINE_ + path in upper case with '.' replaced by '_' (PCAPLINE_CAPTURE_FILTER).
 *
 * Ownership: every char * and struct cfg_strlist in dst is owned by dst. Defaults for
 * them must be NULL or malloc'd (strdup), because loading a new value frees the old one
 * and cfg_free frees whatever is left. Size units are binary: k, K, KB and KiB all mean
 * 1024 (likewise M/MB/MiB, G/GB/GiB, T/TB/TiB), since nobody sizes a buffer in 1000s.
 * A YAML null (~, null or an empty value) sets a CFG_STR to "" and a CFG_STRLIST to an
 * empty list. Loading reads getenv/environ, so call it at start-up before any thread.
 *
 * Errors are one line, naming file, line, key and what was expected, e.g.
 *   "sensor.yaml:12: capture.snaplen: expected an integer in 1..262144, got 'abc'"
 *   "sensor.yaml:5: unknown key 'capture.filtr'"
 *   "environment PCAPLINE_CAPTURE_SNAPLEN: capture.snaplen: expected ..."
 */
#ifndef PCAPLINE_SHARED_CONFIG_H
#define PCAPLINE_SHARED_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_STR,      /* char *, malloc'd; "" allowed */
	CFG_INT,      /* int64_t within [min, max] */
	CFG_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
	CFG_SIZE,     /* uint64_t bytes: "65536", "64k", "64KiB", "16MiB", "2GiB", "1G" */
	CFG_DURATION, /* uint64_t milliseconds: "250ms", "5s", "2m", "1h", "1d"; bare number = ms */
	CFG_STRLIST,  /* struct cfg_strlist; YAML sequence of scalars, or a scalar with
			 comma-separated items (environment, flags, and YAML scalars) */
	CFG_ENUM      /* int: index into the NULL-terminated `choices` array */
};

struct cfg_strlist {
	char **v;
	size_t n;
};

struct cfg_key {
	const char *path;
	enum cfg_type type;
	size_t offset;
	int64_t min, max;           /* CFG_INT, CFG_SIZE, CFG_DURATION; ignored when min == max == 0 */
	const char *const *choices; /* CFG_ENUM */
	const char *help;           /* one line, for --help and documentation */
};

#define CFG_ERRLEN 512

/*
 * Loads `file` (NULL or "" = no file) then the environment into dst.
 * Returns 0, or -1 with a one-line message in err. On error dst may be partly
 * updated; the caller should exit. Files over 1 MiB, YAML aliases/anchors, tags,
 * nesting deeper than 8, duplicate keys, unknown keys and wrong types are errors.
 * An unknown PCAPLINE_* variable is an error when it is one edit (or letter case) away
 * from a known name; other unknown ones are ignored (they may be another program's).
 */
int cfg_load(const struct cfg_key *schema, void *dst, const char *file, char *err, size_t errlen);

/*
 * Parses `len` bytes of YAML at `buf` into dst with the same rules as cfg_load, but
 * without the environment step (cfg_load uses it; so does the fuzz target). `name`
 * only labels error messages ("sensor.yaml:12: ..."). Returns 0, or -1 with err set.
 */
int cfg_load_mem(const struct cfg_key *schema, void *dst, const char *name, const char *buf, size_t len,
	char *err, size_t errlen);

/* Sets one key from a string (used for flags; the env path uses it too). `origin`
 * prefixes error messages ("flag --snaplen"). Returns 0 or -1 with err set. */
int cfg_set(const struct cfg_key *schema, void *dst, const char *path, const char *value, const char *origin,
	char *err, size_t errlen);

/* Frees every CFG_STR and CFG_STRLIST value in dst. */
void cfg_free(const struct cfg_key *schema, void *dst);

/* Prints "path = value" for every key (--check-config prints this). */
void cfg_dump(const struct cfg_key *schema, const void *dst, FILE *out);

#endif
