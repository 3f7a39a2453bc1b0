/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * K-way merge of capture files by timestamp, restricted to a window [from, to).
 *
 * Order: by timestamp; equal timestamps by input (the index in the array given to
 * merge_new), then by position in that input. Each input is read in file order and is
 * expected to be in timestamp order already (a receiver segment is, unless the sensor's
 * clock stepped back): like mergecap, a record that goes back in time inside one input
 * is not moved ahead of that input's earlier records. merge_disorder() counts them.
 *
 * Memory stays flat: an input is opened only when the merge reaches its min_ns (the
 * earliest timestamp it can hold), is read through pcapfile's mapping (which hands back
 * pages already read), and is closed at its end. At most the inputs whose time ranges
 * overlap the current position are open at once.
 */
#ifndef PCAPLINE_CLI_MERGE_H
#define PCAPLINE_CLI_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "shared/pcapfile.h"

struct merge_input {
	const char *path; /* borrowed until merge_free() */
	uint64_t min_ns;  /* no record in the file is earlier; 0 when unknown */
};

struct merge_rec {
	struct pcapf_rec rec;          /* rec.data borrowed until the next merge_next() */
	size_t input;                  /* index into the inputs */
	const struct pcapf_iface *ifc; /* the record's interface in that input (borrowed) */
};

struct merge;

/* Copies the array (not the paths). Opens nothing yet. NULL with errno set. */
struct merge *merge_new(const struct merge_input *in, size_t n, uint64_t from_ns, uint64_t to_ns);
/*
 * Returns 1 with the next record in *out, 0 when every input is done, or a negative
 * PCAPF_* code / -errno when an input cannot be opened or is corrupt; merge_failed()
 * then names that input, and every later call returns the same code.
 */
int merge_next(struct merge *m, struct merge_rec *out);
/* Index of the input that caused the error returned by merge_next(). */
size_t merge_failed(const struct merge *m);
/* Bytes of input consumed so far (finished inputs count whole), for progress. */
uint64_t merge_bytes_read(const struct merge *m);
/* Records that were earlier than the record before them in the same input. */
uint64_t merge_disorder(const struct merge *m);
/* Most inputs that were open at the same time. */
size_t merge_max_open(const struct merge *m);
/* Accepts NULL. */
void merge_free(struct merge *m);

#endif
