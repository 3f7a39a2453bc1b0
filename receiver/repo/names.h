/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Name-resolution history of each sensor, as sent in NAMES frames (PROTOCOL.md 5.9):
 *
 *   <dir>/sensors/<sensor-id>/names.jsonl
 *
 * one JSON object per line, appended in arrival order:
 *
 *   {"t":<ns>,"addr":"<ip>|<ip>:<port>|[<ipv6>]:<port>","name":"...","ns":"...","src":"dns|hosts|static|other"}
 *
 * From time t (nanoseconds since the Unix epoch) on, addr is called name, until a line for
 * the same addr with a greater t (equal t: the later line). An empty name ends a mapping
 * (lines written by an import may hold one; NAMES frames never do). Addresses are in the
 * forms of inet_ntop(3) (RFC 5952 for IPv6).
 *
 * This module is the only one that writes and parses these lines (names_line_format(),
 * names_line_parse(), both through jansson); receiver/repo/namehist.c builds on them.
 *
 * One write(2) per NAMES frame, with O_APPEND; a torn last line (a crash during that
 * write) is cut off when the file is next opened. An event that repeats the mapping in
 * effect for its address is not written: a sensor sends every mapping again at the start
 * of each session. To know the mapping in effect, the last NAMES_LOAD_MAX bytes of the
 * file are read when a session sends its first NAMES frame.
 */
#ifndef PCAPLINE_RECEIVER_NAMES_H
#define PCAPLINE_RECEIVER_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

#define NAMES_LOAD_MAX  (64u << 20) /* bytes of history read back to find repeats */
#define NAMES_LINE_MAX  65536       /* longest line read; a longer one is malformed */
#define NAMES_FIELD_MAX 1024        /* longest string kept whole; a longer one is cut */
#define NAMES_DEDUP_MAX 65536       /* addresses whose mapping in effect is remembered */
#define NAMES_ADDR_LEN  64          /* "[" IPv6 "]:" port, NUL */

enum names_sync {
	NAMES_SYNC_WRITE, /* fdatasync after every frame (storage.fsync: batch) */
	NAMES_SYNC_TIMER, /* when names_log_sync() is called (interval) */
	NAMES_SYNC_CLOSE  /* when the session ends (never) */
};

struct names_store;
struct names_log;

/* dir is the repository root; "" or NULL keeps no history (frames are read and dropped).
 * NULL (errno set) when out of memory. */
struct names_store *names_store_new(const char *dir, enum names_sync sync);
void names_store_free(struct names_store *st);
/* storage.names_max_size: a history about to grow past max_bytes (0 = no bound) first
 * loses its oldest lines, keeping the mapping in effect for every address, down to half
 * of it; events that still do not fit are lost and counted. */
void names_store_set_max(struct names_store *st, uint64_t max_bytes);

/*
 * Retention: rewrites <dir>/sensors/<sensor_id>/names.jsonl without the history older
 * than before_ns (the oldest packet still stored), keeping for every address the line
 * in effect at before_ns, so that every question about a stored packet gets the same
 * answer. Crash-safe (a new file synced, then renamed over the old one); a session
 * appending to the file follows the new one. Returns 0 with *dropped lines, or -errno
 * (-ENOENT: no history).
 */
int names_trim(const char *dir, const char *sensor_id, uint64_t before_ns, uint64_t *dropped);

/* The history of one sensor for one session; nothing is opened before the first append.
 * NULL when st keeps no history or memory is short. */
struct names_log *names_log_open(struct names_store *st, const char *sensor_id);
/* Appends the events of one frame (repeats left out) with one write. Returns the number
 * of lines written, or -errno with a reason in err (the frame's events are then lost and
 * counted). */
int names_log_append(struct names_log *l, const struct proto_names *m, char *err, size_t errlen);
/* fdatasync if anything was written since the last sync. Returns 0 or -errno. */
int names_log_sync(struct names_log *l);
struct names_log_counters {
	uint64_t written; /* lines appended */
	uint64_t repeats; /* events that repeated the mapping in effect */
	uint64_t lost;    /* events not written: storage failed */
};
const struct names_log_counters *names_log_counters(const struct names_log *l);
/* Syncs (every policy syncs here), closes and frees. Accepts NULL. */
void names_log_close(struct names_log *l);

/* One line of names.jsonl as read. */
struct names_line {
	const char *raw; /* the line as read (no newline), for rewriting */
	size_t raw_len;
	uint64_t t;
	char addr[NAMES_FIELD_MAX + 1];
	char name[NAMES_FIELD_MAX + 1];
	char ns[NAMES_FIELD_MAX + 1];  /* "" when absent */
	char src[NAMES_FIELD_MAX + 1]; /* "" when absent */
	bool cut;                      /* a string was longer than NAMES_FIELD_MAX and is kept cut */
};

/*
 * Parses one line (n bytes, no newline): a JSON object with "t" (an integer from 0 to
 * 2^63-1), "addr" (a non-empty string) and "name" (a string), optionally "ns" and "src"
 * (strings); other keys are ignored. A key twice, a string holding a NUL, text that is not
 * UTF-8 or not JSON, or a line longer than NAMES_LINE_MAX make it malformed. Returns true
 * when it is well-formed. Never reads beyond s + n.
 */
bool names_line_parse(const char *s, size_t n, struct names_line *l);
/*
 * Writes one line, newline included, into buf (at most cap bytes, NUL-terminated when it
 * fits), compact and in the key order above. Returns its length (like snprintf: a
 * length >= cap means it did not fit), or -EINVAL for a string that is not UTF-8, or
 * -ERANGE for t above 2^63-1, which no reader could take back.
 */
int names_line_format(uint64_t t, const char *addr, const char *name, const char *ns, const char *src,
	char *buf, size_t cap);

/* What names_file_read() saw. */
struct names_counts {
	size_t lines;     /* complete, non-empty lines */
	size_t bad;       /* malformed ones among them (longer than NAMES_LINE_MAX included) */
	size_t first_bad; /* line number of the first malformed one, 0 when none */
};

/*
 * Reads a history file, the one reader of the file's lines: calls fn with every
 * well-formed line and its number (1 for the first line), until fn returns non-zero.
 * A last line without its newline is being written and is left out; empty lines are no
 * lines. Memory stays bounded (one line of NAMES_LINE_MAX) whatever the file holds.
 * Returns 0, fn's code, or -errno (-ENOENT: no history). n is filled either way.
 */
int names_file_read(const char *path, int (*fn)(void *arg, const struct names_line *l, size_t lineno),
	void *arg, struct names_counts *n);

/* The canonical addr string of an event. */
void names_addr_format(uint8_t family, const uint8_t *addr, uint16_t port, char out[NAMES_ADDR_LEN]);
/* Canonicalises a user's address ("10.0.0.1", "10.0.0.1:80", "2001:DB8::1",
 * "[2001:db8::1]:443"). Returns 0, or -1 when it is not an address. */
int names_addr_parse(const char *in, char out[NAMES_ADDR_LEN]);

/*
 * The name of addr at time t_ns in <dir>/sensors/<sensor_id>/names.jsonl: the line for
 * addr with the greatest t <= t_ns (equal t: the later line). For an address with a port,
 * the address without the port is asked when the port has no name of its own.
 * Returns 1 with name and ns (NUL-terminated, cut to their sizes) filled, 0 when addr
 * has no name at t_ns, or -errno (-ENOENT: no history for that sensor; -EINVAL: a bad
 * sensor id or address).
 */
int names_at(const char *dir, const char *sensor_id, const char *addr, uint64_t t_ns, char *name,
	size_t namelen, char *ns, size_t nslen);

#endif
