/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The receiver's HTTP API (libmicrohttpd): GET /api/v1/export streams the .tar.gz that
 * `pcapline export` writes for the same window (receiver/repo/bundle.h); GET
 * /api/v1/conns and /api/v1/flows answer what `pcapline conns|flows --json` prints, and
 * GET /api/v1/conns/<id>/pcap and /api/v1/flows/<id>/pcap stream what `pcapline pcap`
 * writes (receiver/repo/l4query.h). GET /api/v1/live streams the live stream (one live
 * consumer per request, receiver/outputs/live.h).
 *
 * It runs on libmicrohttpd's own threads (one per connection, api.max_connections at
 * once, plus one worker per running export or capture, plus a guard that ends slow
 * requests), never on the libev loop that stores
 * packets, and it only reads the repository: its own read-only SQLite connection per
 * request and the segment files. It shares no structure with the store.
 */
#ifndef PCAPLINE_API_H
#define PCAPLINE_API_H

#include <stdbool.h>
#include <stddef.h>

/* The default of api.max_connections. */
#define API_MAX_CONNECTIONS 64

struct api_opts {
	const char *listen; /* host:port */
	const char *token;  /* bearer token, "" = none */
	const char *cert;   /* PEM file, "" = plain HTTP */
	const char *key;    /* PEM file, with cert */
	const char *dir;    /* storage.dir */
	/* Connections (0 = the defaults below). Beyond max_conns_per_source from one IPv4
	 * address or IPv6 /64, or max_conns in all, the oldest connection whose request
	 * headers are not complete yet is shed; one being served never is. */
	unsigned max_conns;            /* API_MAX_CONNECTIONS */
	unsigned max_conns_per_source; /* max_conns */
	unsigned header_timeout_ms;    /* request headers complete within this, 10 s */
	unsigned idle_timeout_s;       /* a connection silent this long is closed, 60 s */
};

struct api;

/* Checks that listen is host:port with a port in 1..65535 and a host that resolves.
 * Returns 0, or -1 with the problem, naming api.listen, in err. */
int api_listen_check(const char *listen, char *err, size_t errlen);
/* True when every address host (of host:port) resolves to is a loopback address. */
bool api_listen_is_loopback(const char *listen);

/* Checks the options (a token and TLS are required off loopback), reads the PEM files
 * and binds the socket, so that this can run before privileges are dropped. Serves
 * nothing until api_start(). NULL with a one-line message in err. */
struct api *api_new(const struct api_opts *o, char *err, size_t errlen);
/*
 * Health and metrics. GET /healthz answers 200 while the process serves HTTP at all;
 * GET /readyz 200 once api_set_ready(a, true, ..) was called, else 503 with the reason;
 * both without the bearer token (they tell nothing but that), so that probes need no
 * secret. GET /metrics (receiver/api/metrics.h) needs the token like every other
 * endpoint. Requests to /api/v1/ that arrive before the receiver is ready wait for it
 * (up to API_READY_WAIT_S, then 503), as they would have waited in the listen queue.
 */
#define API_READY_WAIT_S 60
struct metrics_src;
/* The parts /metrics reads (copied; NULL: none yet). The objects it names must stay
 * alive until api_free() or the next call. Any thread. */
void api_set_metrics(struct api *a, const struct metrics_src *src);
/* Ready or not, with why ("loading the store", "shutting down"; copied). Any thread.
 * A new API is ready. */
void api_set_ready(struct api *a, bool ready, const char *why);
/* Starts the daemon's threads. Returns 0 or -1 with a message in err. */
int api_start(struct api *a, char *err, size_t errlen);
/* Stops the daemon (running exports are cut off) and frees. Accepts NULL. */
void api_free(struct api *a);

#endif
