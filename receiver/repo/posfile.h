/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Position files, the one module that names, writes and reads them: for every dissected
 * segment sensors/<id>/segments/<name>, the file sensors/<id>/l4/<name>.pos names the
 * connection of each of its records (written by receiver/dissect, read by
 * `pcapline conns --pcap` and the HTTP API through receiver/repo/l4query):
 *
 *   offset 0   8 bytes  magic "PLPOS1\0\0"
 *   offset 8   u64 LE   number of records in the segment
 *   offset 16  u64 LE   per record, in file order: its connection's id, 0 for none
 *
 * Retention and the index's reconcile delete it with its segment (posfile_unlink()).
 */
#ifndef PCAPLINE_REPO_POSFILE_H
#define PCAPLINE_REPO_POSFILE_H

#include <stddef.h>
#include <stdint.h>

#define POSFILE_MAGIC  "PLPOS1\0\0"
#define POSFILE_HEADER 16

/* The position file of a segment: "sensors/<id>/l4/<name>.pos" for
 * "sensors/<id>/segments/<name>". Returns 0, or -1 for a path index_seg_path_ok()
 * refuses or that does not fit. */
int posfile_path(const char *seg_rel, char *out, size_t size);

/* Writes <dir>/<pos_rel> with the connection ids of n records: a hidden temporary file
 * renamed into place, its folder created when missing. Returns 0, or -errno with a
 * reason naming the file in err. */
int
posfile_write(const char *dir, const char *pos_rel, const uint64_t *ids, size_t n, char *err, size_t errlen);

/* Deletes the position file of segment seg_rel (relative to dir), if any; a failure other
 * than "not there" is logged. */
void posfile_unlink(const char *dir, const char *seg_rel);

/* A position file mapped for reading. */
struct posfile {
	const uint8_t *map;
	size_t len;
	uint64_t records;      /* ids the file holds */
	uint64_t header_count; /* what its header says the segment holds */
};

/* Maps the position file of segment seg_rel. Returns 0, or -1 with err set (missing,
 * damaged or not a position file: "re-index this window"). */
int posfile_open(const char *dir, const char *seg_rel, struct posfile *pf, char *err, size_t errlen);
/* The connection id of record i (i < pf->records). */
uint64_t posfile_get(const struct posfile *pf, uint64_t i);
void posfile_close(struct posfile *pf);

#endif
