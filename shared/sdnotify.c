/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
	struct sockaddr_un addr;
	socklen_t addrlen; /* 0: notification off */
	uint64_t watchdog_usec;
	bool stopping;
} sdn;

/* A decimal number that fills the whole string, within max. */
static int
sdn_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s)
		return -1;
	*out = v;
	return 0;
}

static int
sdn_set_address(const char *name, char *err, size_t errlen)
{
	size_t len = strlen(name);
	memset(&sdn.addr, 0, sizeof(sdn.addr));
	sdn.addr.sun_family = AF_UNIX;
	/* An abstract name has no terminating NUL: its length is the address length. */
	if (name[0] != '/' && name[0] != '@') {
		snprintf(err, errlen,
			"NOTIFY_SOCKET: '%.64s' is neither a path nor an abstract name ('@...')", name);
		return -1;
	}
	if (len < 2 || len > sizeof(sdn.addr.sun_path) - (name[0] == '/')) {
		snprintf(err, errlen, "NOTIFY_SOCKET: %zu characters: not 2..%zu", len,
			sizeof(sdn.addr.sun_path) - 1);
		return -1;
	}
	memcpy(sdn.addr.sun_path, name, len);
	if (name[0] == '@')
		sdn.addr.sun_path[0] = '\0';
	sdn.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/'));
	return 0;
}

int
sdn_init(char *err, size_t errlen)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	int rc = 0;

	memset(&sdn, 0, sizeof(sdn));
	if (sock && *sock && sdn_set_address(sock, err, errlen) != 0) {
		sdn.addrlen = 0;
		rc = -1;
	}
	if (usec && *usec) {
		uint64_t us, p;
		if (sdn_parse_u64(usec, UINT64_MAX, &us) != 0 || us == 0) {
			if (rc == 0)
				snprintf(
					err, errlen, "WATCHDOG_USEC: '%.32s' is not a positive number", usec);
			rc = -1;
		} else if (pid && *pid &&
			(sdn_parse_u64(pid, INT32_MAX, &p) != 0 || p != (uint64_t)getpid())) {
			/* Meant for another process (we were started by the supervised one). */
		} else {
			sdn.watchdog_usec = us;
		}
	}
	return rc;
}

bool
sdn_enabled(void)
{
	return sdn.addrlen != 0;
}

uint64_t
sdn_watchdog_usec(void)
{
	return sdn.addrlen ? sdn.watchdog_usec : 0;
}

int
sdn_send(const char *state)
{
	if (!sdn.addrlen)
		return 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A datagram is all or nothing; a full receive queue should not stall the loop. */
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
		(const struct sockaddr *)&sdn.addr, sdn.addrlen);
	int rc = n < 0 ? -errno : 1;
	close(fd);
	return rc;
}

int
sdn_sendf(const char *fmt, ...)
{
	char buf[SDN_MAX_MSG];
	va_list ap;

	if (!sdn.addrlen)
		return 0;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sdn_send(buf);
}

/* Sends prefix + the status text (prefix ends in "STATUS="). */
static void
sdn_send_status(struct sdn_loop *l, const char *prefix)
{
	char status[SDN_MAX_MSG - 128];
	status[0] = '\0';
	if (l->status_fn)
		l->status_fn(l->arg, status, sizeof(status));
	/* One line: a newline would start another KEY= assignment. */
	for (char *p = status; *p; p++)
		if (*p == '\n')
			*p = ' ';
	sdn_sendf("%s%s", prefix, status);
}

static void
sdn_on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	sdn_send("WATCHDOG=1");
}

static void
sdn_on_status(struct ev_loop *loop, ev_timer *w, int revents)
{
	sdn_send_status(w->data, "STATUS=");
}

void
sdn_loop_ready(struct sdn_loop *l, struct ev_loop *loop, double status_s, sdn_status_fn fn, void *arg)
{
	memset(l, 0, sizeof(*l));
	l->loop = loop;
	l->status_fn = fn;
	l->arg = arg;
	ev_timer_init(&l->watchdog, sdn_on_watchdog, 0., 0.);
	ev_timer_init(&l->status, sdn_on_status, status_s, status_s);
	l->watchdog.data = l->status.data = l;
	if (!sdn.addrlen)
		return;
	sdn_send_status(l, "READY=1\nSTATUS=");
	if (sdn.watchdog_usec) {
		double half = (double)sdn.watchdog_usec / 2e6;
		ev_timer_set(&l->watchdog, half, half);
		ev_timer_start(loop, &l->watchdog);
		sdn_send("WATCHDOG=1");
	}
	ev_timer_start(loop, &l->status);
}

void
sdn_loop_stopping(struct sdn_loop *l, const char *why)
{
	if (!sdn.addrlen || sdn.stopping)
		return;
	sdn.stopping = true;
	if (l->loop)
		ev_timer_stop(l->loop, &l->status);
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "STOPPING=1\nSTATUS=stopping (%.64s): ", why);
	sdn_send_status(l, prefix);
}

void
sdn_loop_stop(struct sdn_loop *l)
{
	if (!l->loop)
		return;
	ev_timer_stop(l->loop, &l->watchdog);
	ev_timer_stop(l->loop, &l->status);
	l->loop = NULL;
}
