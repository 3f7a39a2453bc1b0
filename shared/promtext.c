/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Prometheus text exposition format 0.0.4 (see promtext.h).
 */
#include "shared/promtext.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Labels one sample may carry (key and value each). */
#define PROMTEXT_MAX_LABELS 4

static void
promtext_reserve(struct promtext *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 16384;
	while (cap < b->len + more + 1)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void
promtext_put(struct promtext *b, const char *s, size_t n)
{
	promtext_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
promtext_puts(struct promtext *b, const char *s)
{
	promtext_put(b, s, strlen(s));
}

void
promtext_fini(struct promtext *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Escapes backslash and newline, and the double quote too when quote is set (label
 * values; HELP text leaves it alone). */
static void
promtext_escape(struct promtext *b, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			promtext_put(b, "\\\\", 2);
		else if (*s == '\n')
			promtext_put(b, "\\n", 2);
		else if (*s == '"' && quote)
			promtext_put(b, "\\\"", 2);
		else
			promtext_put(b, s, 1);
	}
}

void
promtext_escape_label(struct promtext *b, const char *s)
{
	promtext_escape(b, s, true);
}

void
promtext_family(struct promtext *b, const char *name, const char *type, const char *help)
{
	promtext_puts(b, "# HELP ");
	promtext_puts(b, name);
	promtext_puts(b, " ");
	promtext_escape(b, help, false);
	promtext_puts(b, "\n# TYPE ");
	promtext_puts(b, name);
	promtext_puts(b, " ");
	promtext_puts(b, type);
	promtext_puts(b, "\n");
}

/* name{k="v",...} followed by a space; the pairs come from ap up to a NULL key. */
static void
promtext_head(struct promtext *b, const char *name, va_list ap)
{
	const char *k;
	int n = 0;

	promtext_puts(b, name);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		if (n++ == PROMTEXT_MAX_LABELS)
			break; /* a caller's mistake: the rest would not be read right anyway */
		promtext_puts(b, n == 1 ? "{" : ",");
		promtext_puts(b, k);
		promtext_puts(b, "=\"");
		promtext_escape(b, v != NULL ? v : "", true);
		promtext_puts(b, "\"");
	}
	promtext_puts(b, n > 0 ? "} " : " ");
}

void
promtext_sample(struct promtext *b, const char *name, uint64_t value, ...)
{
	char num[24];
	va_list ap;

	va_start(ap, value);
	promtext_head(b, name, ap);
	va_end(ap);
	snprintf(num, sizeof(num), "%" PRIu64 "\n", value);
	promtext_puts(b, num);
}

void
promtext_sample_f(struct promtext *b, const char *name, double value, ...)
{
	char num[48];
	va_list ap;

	va_start(ap, value);
	promtext_head(b, name, ap);
	va_end(ap);
	snprintf(num, sizeof(num), "%.9g\n", value);
	promtext_puts(b, num);
}

void
promtext_single(struct promtext *b, const char *name, const char *type, const char *help, uint64_t value)
{
	promtext_family(b, name, type, help);
	promtext_sample(b, name, value, NULL);
}
