/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The systemd notify protocol (sd_notify(3)) spoken directly: one datagram of
 * "KEY=VALUE\n..." lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
 * abstract name written with a leading '@'). Without $NOTIFY_SOCKET every call is a
 * no-op, so the daemons run the same under systemd, in a container or by hand.
 *
 * The watchdog: $WATCHDOG_USEC is the interval systemd expects WATCHDOG=1 within;
 * when $WATCHDOG_PID is set it must be this process, else the watchdog is someone
 * else's (a shell that started us) and stays off. sdn_loop pings at half the interval
 * from a libev timer, so a loop that stops turning stops the pings and systemd
 * restarts the service.
 *
 * State is per process (there is one $NOTIFY_SOCKET): call sdn_init at start-up,
 * before any thread, since it reads the environment. Sending is thread-safe.
 */
#ifndef PCAPLINE_SHARED_SDNOTIFY_H
#define PCAPLINE_SHARED_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

/* Longest datagram sent: STATUS= lines are cut to fit. */
#define SDN_MAX_MSG 1024

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID. Returns 0, or -1 with err
 * set when one is malformed (notification is then off, or the watchdog, and the
 * daemon goes on: systemd will say the service never became ready). */
int sdn_init(char *err, size_t errlen);

/* True when $NOTIFY_SOCKET named a usable address. */
bool sdn_enabled(void);

/* The watchdog interval in microseconds, 0 when there is no watchdog for us. */
uint64_t sdn_watchdog_usec(void);

/* Sends `state` (e.g. "READY=1\nSTATUS=listening"). Returns 1 when sent, 0 when
 * notification is off, -errno when sending failed. */
int sdn_send(const char *state);
int sdn_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The periodic part, on a daemon's loop: WATCHDOG=1 at half the watchdog interval
 * (when there is one) and STATUS=<status_fn's text> every status_s seconds. The
 * caller owns the storage; watchers are stopped by sdn_loop_stop.
 */
typedef void (*sdn_status_fn)(void *arg, char *buf, size_t len);
struct sdn_loop {
	struct ev_loop *loop;
	ev_timer watchdog, status;
	sdn_status_fn status_fn;
	void *arg;
};

/* Sends READY=1 with the first STATUS= and starts the timers. */
void sdn_loop_ready(struct sdn_loop *l, struct ev_loop *loop, double status_s, sdn_status_fn fn, void *arg);
/* Sends STOPPING=1 (with a final STATUS=) once; the watchdog keeps pinging while the
 * daemon drains, the status refreshes stop. */
void sdn_loop_stopping(struct sdn_loop *l, const char *why);
/* Stops both timers (before the loop is destroyed). */
void sdn_loop_stop(struct sdn_loop *l);

#endif
