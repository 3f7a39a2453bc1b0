/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Name-resolution history of one sensor, between the repository's names.jsonl and
 * Kubeshark's name_resolution_history.json.
 *
 * names.jsonl: one object per line, {"t": <ns>, "addr": "<ip or ip:port>", "name":
 * "<fqdn>", "ns": "<namespace>", "src": "dns|hosts|static"}: from time t on, addr
 * resolves to name, until a line for the same addr with a later t (equal t: the later
 * line). An empty name ends the mapping (addr resolves to nothing from t on). A last
 * line without its newline is being written and is ignored; malformed lines (and here
 * also lines with a string longer than NAMES_FIELD_MAX) are counted, reported once with
 * the number of the first, and skipped. The file is read, and lines are parsed and
 * written, by the module that owns the format (receiver/repo/names.h: lines up to
 * NAMES_LINE_MAX, memory bounded); the Kubeshark file is written with jansson.
 *
 * name_resolution_history.json (Kubeshark's shape):
 *   {"<unix seconds>": {"<addr>": {"FullAddress": "<name>", "Namespace": "<ns>"}}}
 * Each key holds the FULL map in effect from that second on; a reader resolves a packet
 * at time t with the newest key <= t, keys in SECONDS (Kubeshark itself looks up with
 * milliseconds, a bug we do not copy). For a window [from, to) the file holds the state
 * at `from` under floor(from) and the state after every change inside the window under
 * floor(change time). Changes within one second collapse into the state at the end of
 * that second, which is the unit's resolution.
 */
#ifndef PCAPLINE_CLI_NAMEHIST_H
#define PCAPLINE_CLI_NAMEHIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct namehist;

/*
 * Reads names.jsonl (a missing file is an empty history) keeping only what the window
 * [from, to) needs: the line in effect at `from` for every address, and every line with
 * from < t < to. Memory is proportional to that, not to the file.
 * NULL with a message in err.
 */
struct namehist *namehist_load(const char *path, uint64_t from_ns, uint64_t to_ns, char *err, size_t errlen);
/* Writes the Kubeshark JSON. *keys receives the number of top-level keys. Returns 0 or
 * -errno. */
int namehist_write_kubeshark(const struct namehist *h, FILE *out, size_t *keys);
/* Writes the window's names.jsonl: the lines in effect at `from`, then the changes, in
 * time order. Returns 0 or -errno. */
int namehist_write_jsonl(const struct namehist *h, FILE *out, size_t *lines);
/* Lines read, malformed lines skipped. */
size_t namehist_lines(const struct namehist *h);
size_t namehist_bad_lines(const struct namehist *h);
void namehist_free(struct namehist *h);

/*
 * Converts a Kubeshark name_resolution_history.json (at most max_bytes) into names.jsonl
 * lines written to out: for every key in time order, one line per address whose name
 * or namespace differs from the previous key's map (an address that disappeared gets an
 * empty name), with t = key * 10^9 and src "static". Anything that is not that shape
 * is an error. Returns 0 or -1 with err set.
 */
int namehist_from_kubeshark(
	const char *path, size_t max_bytes, FILE *out, size_t *lines, char *err, size_t errlen);
/*
 * Merges names.jsonl files (missing ones are empty) into out, sorted by t (stable: file
 * order, then line order), dropping exact repeats. Used when an import adds to a sensor
 * that already has a history. Returns 0 or -1 with err set.
 */
int namehist_merge_jsonl(const char *const *paths, size_t n, FILE *out, char *err, size_t errlen);

#endif
