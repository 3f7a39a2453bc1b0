/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/sdnotify.c: the datagrams reach a socket of the test's own,
 * named by a path or by an abstract name ('@'); malformed variables are refused with
 * a message; the watchdog is ours only when WATCHDOG_PID is unset or our pid; the
 * loop part sends READY=1 with a STATUS=, WATCHDOG=1 at half the interval, STATUS=
 * refreshes and STOPPING=1 once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "shared/sdnotify.h"

static char sock_path[108];

/* A datagram socket bound to `name` ('@' = abstract), as systemd's notify socket. */
static int
bind_notify(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_true(len < sizeof(a.sun_path));
	memcpy(a.sun_path, name, len);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (name[0] == '@')
		a.sun_path[0] = '\0';
	else
		alen++;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, alen), 0);
	return fd;
}

/* The next datagram, or "" when none is waiting. */
static const char *
next_msg(int fd)
{
	static char buf[SDN_MAX_MSG + 1];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void
env(const char *sock, const char *usec, const char *pid)
{
	char err[256] = "";
	sock ? setenv("NOTIFY_SOCKET", sock, 1) : unsetenv("NOTIFY_SOCKET");
	usec ? setenv("WATCHDOG_USEC", usec, 1) : unsetenv("WATCHDOG_USEC");
	pid ? setenv("WATCHDOG_PID", pid, 1) : unsetenv("WATCHDOG_PID");
	if (sdn_init(err, sizeof(err)) != 0)
		fail_msg("sdn_init refused: %s", err);
}

static void
test_path_socket(void **state)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/pl-sdn-%d.sock", (int)getpid());
	unlink(sock_path);
	int fd = bind_notify(sock_path);
	env(sock_path, NULL, NULL);
	assert_true(sdn_enabled());
	assert_int_equal(sdn_send("READY=1"), 1);
	assert_string_equal(next_msg(fd), "READY=1");
	assert_int_equal(sdn_sendf("STATUS=%d sessions", 3), 1);
	assert_string_equal(next_msg(fd), "STATUS=3 sessions");
	close(fd);
	unlink(sock_path);
	/* Nobody listens any more: an error, not a crash or a hang. */
	assert_true(sdn_send("WATCHDOG=1") < 0);
}

static void
test_abstract_socket(void **state)
{
	char name[64];
	snprintf(name, sizeof(name), "@pl-sdn-test-%d", (int)getpid());
	int fd = bind_notify(name);
	env(name, NULL, NULL);
	assert_int_equal(sdn_send("READY=1\nSTATUS=up"), 1);
	assert_string_equal(next_msg(fd), "READY=1\nSTATUS=up");
	close(fd);
}

static void
test_off(void **state)
{
	env(NULL, "1000000", NULL);
	assert_false(sdn_enabled());
	assert_int_equal(sdn_send("READY=1"), 0);
	/* No socket to ping: no watchdog either. */
	assert_int_equal(sdn_watchdog_usec(), 0);
	env("", NULL, NULL);
	assert_false(sdn_enabled());
}

static void
test_malformed(void **state)
{
	char err[256], longname[200];
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	assert_int_equal(sdn_init(err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFY_SOCKET: 'relative/path' is neither a path"));
	assert_false(sdn_enabled());

	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	assert_int_equal(sdn_init(err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFY_SOCKET: 199 characters"));
	assert_false(sdn_enabled());

	setenv("NOTIFY_SOCKET", "@x", 1);
	setenv("WATCHDOG_USEC", "12ab", 1);
	assert_int_equal(sdn_init(err, sizeof(err)), -1);
	assert_non_null(strstr(err, "WATCHDOG_USEC: '12ab' is not a positive number"));
	assert_true(sdn_enabled());
	assert_int_equal(sdn_watchdog_usec(), 0);
}

static void
test_watchdog_pid(void **state)
{
	char me[32];
	snprintf(me, sizeof(me), "%d", (int)getpid());
	env("@pl-sdn-unused", "3000000", NULL);
	assert_int_equal(sdn_watchdog_usec(), 3000000);
	env("@pl-sdn-unused", "3000000", me);
	assert_int_equal(sdn_watchdog_usec(), 3000000);
	/* Another process's watchdog (our parent's): not ours to ping. */
	env("@pl-sdn-unused", "3000000", "1");
	assert_int_equal(sdn_watchdog_usec(), 0);
}

static int status_calls;

static void
status_text(void *arg, char *buf, size_t len)
{
	status_calls++;
	snprintf(buf, len, "%s %d\nsecond line", (const char *)arg, status_calls);
}

static void
on_end(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void
test_loop(void **state)
{
	char name[64];
	snprintf(name, sizeof(name), "@pl-sdn-loop-%d", (int)getpid());
	int fd = bind_notify(name);
	/* 100 ms watchdog: pings every 50 ms; status every 120 ms; run 0.5 s. */
	env(name, "100000", NULL);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sdn_loop l;
	ev_timer end;
	status_calls = 0;
	sdn_loop_ready(&l, loop, 0.12, status_text, "captured");
	assert_string_equal(next_msg(fd), "READY=1\nSTATUS=captured 1 second line");
	assert_string_equal(next_msg(fd), "WATCHDOG=1");
	ev_timer_init(&end, on_end, 0.5, 0.);
	ev_timer_start(loop, &end);
	ev_now_update(loop);
	ev_tstamp t0 = ev_now(loop);
	ev_run(loop, 0);
	ev_tstamp took = ev_now(loop) - t0;
	int pings = 0, statuses = 0, other = 0;
	for (const char *m = next_msg(fd); *m; m = next_msg(fd)) {
		if (strcmp(m, "WATCHDOG=1") == 0)
			pings++;
		else if (strncmp(m, "STATUS=captured ", 16) == 0)
			statuses++;
		else
			other++;
	}
	assert_int_equal(other, 0);
	/* One ping per 50 ms that passed (the loop may run late, never early). */
	int want = (int)(took / 0.05 + 1e-9);
	if (pings < 5 || pings > want)
		fail_msg("%d WATCHDOG=1 in %.3f s, want 5..%d", pings, took, want);
	if (statuses < 2 || statuses > (int)(took / 0.12 + 1e-9))
		fail_msg("%d STATUS= in %.3f s", statuses, took);

	sdn_loop_stopping(&l, "SIGTERM");
	const char *m = next_msg(fd);
	if (!strstr(m, "STOPPING=1\nSTATUS=stopping (SIGTERM): captured "))
		fail_msg("got \"%s\"", m);
	/* Once only. */
	sdn_loop_stopping(&l, "SIGTERM");
	assert_string_equal(next_msg(fd), "");
	sdn_loop_stop(&l);
	ev_loop_destroy(loop);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_socket),
		cmocka_unit_test(test_abstract_socket),
		cmocka_unit_test(test_off),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_watchdog_pid),
		cmocka_unit_test(test_loop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
