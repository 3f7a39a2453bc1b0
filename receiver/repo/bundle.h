/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The export archive (.tar.gz, pax/ustar, gzip), shared by `pcapline export` and
 * `pcapline snapshot export`:
 *
 *   manifest.json                          first entry: window, filter, sensors, and for
 *                                          every file its size, packet count, first/last
 *                                          timestamp and SHA-256
 *   <sensor>/<sensor>.pcap                 the sensor's packets in [from, to), merged in
 *                                          timestamp order across segments and interfaces
 *   <sensor>/<sensor>.pcapng               instead, when its segments have several link
 *                                          types: one IDB per (interface, link type)
 *   <sensor>/name_resolution_history.json  Kubeshark's shape (see namehist.h)
 *
 * Streaming: a tar header must carry the entry's size, and the manifest its digest, before
 * the data. Pass 1 runs the whole merge (and BPF filter) into SHA-256 only, learning size,
 * count, first/last and digest of every pcap; pass 2 runs it again into the archive and
 * checks it produced the same bytes. Memory stays flat (no pcap is ever held, and no
 * temporary copy of the export is written next to the repository, whose disk the receiver
 * needs); the cost is reading the window twice, the second time mostly from the page
 * cache. The segments are opened once, before pass 1, and kept open until the end, so a
 * segment that retention deletes meanwhile is still read whole by both passes.
 */
#ifndef PCAPLINE_CLI_BUNDLE_H
#define PCAPLINE_CLI_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/repo/repo.h"

struct bundle_sensor {
	const char *name;
	struct repo_seglist segs; /* overlapping the window, sorted by (min_ns, rel) */
	const char *names_path;   /* names.jsonl (may not exist) */
};

struct bundle_opts {
	uint64_t from_ns, to_ns;
	const char *filter;      /* BPF expression, NULL or "" for none */
	const char *output;      /* file, or "-" for standard output, or NULL: out_fd */
	int out_fd;              /* with output NULL: write here (borrowed, not closed); the
				     * bytes are those a file would get (last block unpadded) */
	int gzip_level;          /* 1..9 */
	bool progress;           /* progress lines on stderr */
	const char *source_kind; /* "repository" or "snapshot", for the manifest */
	const char *source_name; /* the repository dir or the snapshot name */
};

/* Writes the archive. Returns 0, or -1 with a message in err; on failure nothing is
 * left under the output name. */
int
bundle_export(const struct bundle_opts *o, struct bundle_sensor *sensors, size_t n, char *err, size_t errlen);

/* The entry names of the archive, for its readers (`pcapline import`). */
#define BUNDLE_MANIFEST   "manifest.json"
#define BUNDLE_NAMES_FILE "name_resolution_history.json"

/* One file listed by a manifest (strings borrowed for the duration of the callback). */
struct bundle_listed {
	const char *path, *sha256;
	uint64_t bytes;
};

/*
 * Reads a manifest.json that bundle_export() wrote (the only reader of its format) and
 * calls fn for every file it lists, in order, until fn returns false. Returns 0; 1 when
 * the file is JSON but not a pcapline export manifest (nothing to check); 2 when fn
 * stopped; -1 with a reason in err (not valid JSON, no file list, a file without path,
 * sha256 or bytes).
 */
int bundle_manifest_read(const char *path, bool (*fn)(void *arg, size_t i, const struct bundle_listed *f),
	void *arg, char *err, size_t errlen);

#endif
