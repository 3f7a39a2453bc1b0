/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The sensor's own metrics endpoint (metrics.listen): a small plain-HTTP server on the
 * sensor's libev loop that answers GET /metrics with the text the owner's render
 * callback writes (shared/promtext.h), and GET /healthz with "ok".
 *
 * It can never hold up capture: every socket is non-blocking; a request may be at most
 * PROMHTTP_MAX_REQUEST bytes and must be complete within PROMHTTP_TIMEOUT_MS, or the
 * connection is closed; one answer per connection (Connection: close); at most
 * PROMHTTP_MAX_CONNS connections at once (a newcomer beyond that is closed at once,
 * counted). The render callback runs on the loop, so it may read the sensor's counters
 * directly.
 */
#ifndef PCAPLINE_SENSOR_PROMHTTP_H
#define PCAPLINE_SENSOR_PROMHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "shared/promtext.h"

#define PROMHTTP_MAX_REQUEST 4096
#define PROMHTTP_TIMEOUT_MS  5000
#define PROMHTTP_MAX_CONNS   8

struct promhttp_stats {
	uint64_t served;  /* answers sent (any status) */
	uint64_t refused; /* closed at once: PROMHTTP_MAX_CONNS were open */
	uint64_t dropped; /* closed without an answer: too large, too slow, or broken */
};

typedef void promhttp_render_fn(void *arg, struct promtext *b);

struct promhttp;

/* Binds and listens on addr (host:port) now, so that it can be done before
 * privileges are dropped. NULL with a one-line message naming metrics.listen in err. */
struct promhttp *
promhttp_new(const char *addr, promhttp_render_fn *render, void *arg, char *err, size_t errlen);
/* True when the socket is bound to a loopback address (127.0.0.0/8, ::1). */
bool promhttp_is_loopback(const struct promhttp *h);
/* Starts serving on loop. */
void promhttp_start(struct promhttp *h, struct ev_loop *loop);
void promhttp_stats(const struct promhttp *h, struct promhttp_stats *out);
/* Stops, closes every connection and frees. Accepts NULL. */
void promhttp_free(struct promhttp *h);

#endif
