/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Logging to stderr (journald collects it) with levels and a per-process tag.
 * The _warn/fatal forms append strerror(errno); the x forms do not.
 */
#ifndef PCAPLINE_SHARED_LOG_H
#define PCAPLINE_SHARED_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdnoreturn.h>

enum log_level {
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG
};

/* Exit status for start-up errors the user can fix (bad config, filter, interface). */
#define EXIT_CONFIG 2

void log_init(const char *tag, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs and exits with `code`. */
noreturn void fatal(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
noreturn void fatalx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies inlen bytes of in to out (NUL-terminated, cut to outlen) with control
 * characters written as \xNN, so that text from peers and files can be shown on a
 * terminal. Returns the length written. */
size_t log_escape(char *out, size_t outlen, const char *in, size_t inlen);

/* A token bucket for per-peer or per-packet warnings: returns 1 when a message may be
 * logged now (at most `burst` then one per `per_sec` seconds), else counts it as
 * suppressed. */
struct log_limit {
	double tokens;
	double last;
	unsigned long suppressed;
};
int log_limit_ok(struct log_limit *l, double burst, double per_sec);

#endif
