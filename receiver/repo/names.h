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
 * One write(2) per NAMES frame, with O_APPEND; a torn last line (a crash during that
 * write) is cut off when the file is next opened. An event that repeats the mapping in
 * effect for its address is not written: a sensor sends every mapping again at the start
 * of each session. To know the mapping in effect, the last NAMES_LOAD_MAX bytes of the
 * file are read when a session sends its first NAMES frame.
 */
#ifndef PCAPLINE_RECEIVER_NAMES_H
#define PCAPLINE_RECEIVER_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

#define NAMES_LOAD_MAX (64u << 20) /* bytes of history read back to find repeats */
#define NAMES_DEDUP_MAX 65536      /* addresses whose mapping in effect is remembered */
#define NAMES_ADDR_LEN 64          /* "[" IPv6 "]:" port, NUL */

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
	uint64_t written;  /* lines appended */
	uint64_t repeats;  /* events that repeated the mapping in effect */
	uint64_t lost;     /* events not written: storage failed */
};
const struct names_log_counters *names_log_counters(const struct names_log *l);
/* Syncs (every policy syncs here), closes and frees. Accepts NULL. */
void names_log_close(struct names_log *l);

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
int names_at(const char *dir, const char *sensor_id, const char *addr, uint64_t t_ns, char *name, size_t namelen,
	     char *ns, size_t nslen);

#endif
