/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_tag = "pcapline";
static enum log_level log_level = LOG_LVL_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_init(const char *tag, enum log_level level)
{
	log_tag = tag;
	log_level = level;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}
enum log_level
log_get_level(void)
{
	return log_level;
}
const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

size_t
log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (outlen == 0)
		return 0;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		/* C0 controls, DEL, and the C1 controls as UTF-8 (U+0080..U+009F): a terminal
		 * acts on them. */
		bool c1 = c == 0xc2 && i + 1 < inlen && (unsigned char)in[i + 1] >= 0x80 &&
			(unsigned char)in[i + 1] <= 0x9f;

		if (c < 0x20 || c == 0x7f || c1) {
			if (n + 4 >= outlen)
				break;
			if (c1)
				c = (unsigned char)in[++i];
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		} else {
			if (n + 1 >= outlen)
				break;
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
	return n;
}

/* One write(2) per line so that lines from several processes do not interleave. Control
 * characters in the message (an archive entry's name, an imported name) are escaped:
 * a log line must not drive the terminal or forge another line. */
static void
log_vemit(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char msg[2048], line[2048];
	int saved = errno;
	size_t n = (size_t)snprintf(
		line, sizeof(line), "%s[%d]: %s: ", log_tag, (int)getpid(), level_names[level]);
	if (n < sizeof(line)) {
		int m = vsnprintf(msg, sizeof(msg), fmt, ap);
		if (m > 0)
			n += log_escape(line + n, sizeof(line) - n, msg,
				(size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1);
	}
	if (with_errno && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s", strerror(saved));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
	errno = saved;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(level, 0, fmt, ap);
	va_end(ap);
}

#define LOG_BODY(level, with_errno)                    \
	do {                                           \
		if ((level) > log_level)               \
			return;                        \
		va_list ap;                            \
		va_start(ap, fmt);                     \
		log_vemit(level, with_errno, fmt, ap); \
		va_end(ap);                            \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_WARN, 1);
}
void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_WARN, 0);
}
void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_INFO, 0);
}
void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_DEBUG, 0);
}

void
fatal(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(code);
}

void
fatalx(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(code);
}

int
log_limit_ok(struct log_limit *l, double burst, double per_sec)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (l->last == 0) {
		l->tokens = burst;
		l->last = now;
	}
	l->tokens += (now - l->last) / per_sec;
	if (l->tokens > burst)
		l->tokens = burst;
	l->last = now;
	if (l->tokens >= 1) {
		l->tokens -= 1;
		return 1;
	}
	l->suppressed++;
	return 0;
}
