/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Writing the Prometheus text exposition format 0.0.4: a family's HELP and TYPE lines,
 * then its samples, with label values and HELP text escaped as the format requires.
 * Used by the receiver's GET /metrics and the sensor's own metrics endpoint.
 */
#ifndef PCAPLINE_PROMTEXT_H
#define PCAPLINE_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Content-Type of the text format. */
#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A growing text buffer, NUL-terminated. Once an allocation failed, oom is set and
 * nothing more is added. Zero-initialise; promtext_fini() frees. */
struct promtext {
	char *p;
	size_t len, cap;
	bool oom;
};

void promtext_fini(struct promtext *b);
/* The HELP and TYPE lines of a family (type: counter, gauge, histogram, untyped). The
 * help text is escaped (backslash, newline). */
void promtext_family(struct promtext *b, const char *name, const char *type, const char *help);
/* One sample line: name, then label pairs (key, value, ..., NULL; at most 4 pairs), then
 * the value. Label values are escaped (backslash, double quote, newline). */
void promtext_sample(struct promtext *b, const char *name, uint64_t value, ...) __attribute__((sentinel));
/* The same with a floating-point value. */
void promtext_sample_f(struct promtext *b, const char *name, double value, ...) __attribute__((sentinel));
/* A family of one sample without labels: its HELP and TYPE lines, then the sample. */
void
promtext_single(struct promtext *b, const char *name, const char *type, const char *help, uint64_t value);
/* Appends s escaped as a label value (without the quotes). */
void promtext_escape_label(struct promtext *b, const char *s);

#endif
