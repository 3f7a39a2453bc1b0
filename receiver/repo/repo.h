/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Read access to a PCAP repository: which sensors and which closed segments overlap a
 * time window. Three sources, one API:
 *   - <dir>/index.db, the receiver's SQLite index, opened read-only (busy_timeout 5 s);
 *   - a scan of <dir>/sensors/<id>/segments/ when there is no usable index (slow: every
 *     segment is read once to learn its time range; a warning says so);
 *   - a list given by the caller (a snapshot's manifest).
 * Hidden files (".open-*", temporaries) are never segments.
 */
#ifndef PCAPLINE_CLI_REPO_H
#define PCAPLINE_CLI_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct repo_seg {
	char *sensor;
	char *rel;  /* path relative to the repository root */
	char *path; /* root + "/" + rel */
	char *iface;
	uint32_t linktype;
	uint32_t snaplen;
	uint64_t min_ns, max_ns, packets, bytes;
};

struct repo_seglist {
	struct repo_seg *v;
	size_t n, cap;
};

enum repo_source {
	REPO_INDEX,
	REPO_SCAN,
	REPO_LIST
};

struct repo;

/* Opens dir (index or scan). NULL with a message in err. */
struct repo *repo_open(const char *dir, char *err, size_t errlen);
/* A repository at dir whose segments are exactly *segs (moved into it; segs is
 * emptied). rel paths are relative to dir. NULL with errno set. */
struct repo *repo_open_list(const char *dir, struct repo_seglist *segs);
const char *repo_dir(const struct repo *r);
enum repo_source repo_source(const struct repo *r);

/* Sensors (sorted, unique) with a segment overlapping [from, to). The caller frees the
 * array with repo_strv_free(). Returns 0 or -1 with err set. */
int
repo_sensors(struct repo *r, uint64_t from, uint64_t to, char ***out, size_t *n, char *err, size_t errlen);
/* True when the repository knows the sensor (a folder or an index row). */
bool repo_has_sensor(struct repo *r, const char *sensor);
/* Segments of one sensor overlapping [from, to), sorted by (min_ns, rel). Appends to
 * *out. Returns 0 or -1 with err set. */
int repo_segments(struct repo *r, const char *sensor, uint64_t from, uint64_t to, struct repo_seglist *out,
	char *err, size_t errlen);
/* <dir>/sensors/<sensor>/names.jsonl (which may not exist). Caller frees. */
char *repo_names_path(const struct repo *r, const char *sensor);
void repo_free(struct repo *r);

/* Appends a copy of *s. Returns 0 or -ENOMEM. */
int repo_seglist_add(struct repo_seglist *l, const struct repo_seg *s);
void repo_seglist_free(struct repo_seglist *l);
void repo_strv_free(char **v, size_t n);

/* Parses a receiver's segment name, "<first-ts-ns>-<epoch-hex16>-<seq>.<ifindex>-<ifname>.pcap"
 * or the older "<first-ts-ns>-<epoch-hex16>-<seq>-<ifname>.pcap" (index.h). Returns true
 * and the interface name (ifname holds 256 bytes). */
bool repo_parse_segment_name(const char *name, uint64_t *first_ns, char ifname[256]);

#endif
