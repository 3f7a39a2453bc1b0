/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Receiver sessions: one per connected sensor. Accepts TCP connections, runs the
 * TLS handshake, binds the session to the identity in the client certificate,
 * decodes frames, hands batches to the store and ACKs them once stored. A
 * malformed frame closes that session only, with the reason logged. Every store call
 * runs on the store worker thread (store/worker.h), never on the loop.
 */
#ifndef PCAPLINE_RECEIVER_SESSION_H
#define PCAPLINE_RECEIVER_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "receiver/repo/names.h"
#include "receiver/store/store.h"

struct server_opts {
	SSL_CTX *ssl_ctx;   /* NULL: plain TCP, identity taken from HELLO (insecure) */
	const char *token;  /* required bearer token, "" for none */
	uint32_t max_frame; /* bytes of one frame's payload */
	uint32_t max_raw;   /* bytes of one decompressed batch */
	uint32_t max_sessions;
	/* Connections before TLS and HELLO are done, bounded apart (at most max_sessions):
	 * beyond either bound the oldest is shed, never an authenticated session. */
	uint32_t unauth_max;        /* in all */
	uint32_t unauth_per_source; /* from one IPv4 address or IPv6 /64 */
	uint32_t setup_ms;          /* TLS handshake and HELLO must be done within this */
	uint32_t heartbeat_ms;
	uint32_t sync_ms;     /* fsync policy "interval": period; 0 = ACK at once */
	uint32_t max_sensors; /* distinct sensor ids served since start */
	uint64_t sensor_rate; /* stored packet bytes per second per sensor, 0 = unlimited */
	/* Bytes all sensors' sessions may hold in input buffers and batch groups not yet
	 * stored before those with a group at the worker wait for it (0 = 64 MiB). */
	uint64_t ingest_buffer;
	struct store *store;
	struct names_store *names; /* name-resolution histories; NULL = NAMES frames are dropped */
};

struct server;

struct server *server_new(struct ev_loop *loop, const struct server_opts *o);
/* Sets the store (after privileges are dropped, before the loop runs). */
void server_set_store(struct server *srv, struct store *store);
/* Listens on "host:port" (or "[v6]:port"). Returns 0 or -1 with err set. */
int server_listen(struct server *srv, const char *addr, char *err, size_t errlen);
/* Stops accepting and closes every session (sending ERROR shutdown). */
void server_shutdown(struct server *srv);
/* True if sensor `id` has a streaming session now. */
bool server_sensor_connected(const struct server *srv, const char *id);
unsigned server_session_count(const struct server *srv);
/* Runs fn(arg) on the store worker, after everything submitted so far: the one place
 * where the store may be used from outside the sessions while the loop runs (for
 * stats). Returns 0 or -ENOMEM. */
int server_store_call(struct server *srv, void (*fn)(void *arg), void *arg);
/* Connection counts for the metrics endpoint: totals since start, and gauges as of the
 * last second. */
struct server_metrics {
	uint64_t accepted;         /* connections accepted */
	uint64_t refused;          /* closed at once: limits.max_sessions, all held by sensors */
	uint64_t shed;             /* unauthenticated, shed for newer ones (limits.unauth_*) */
	uint64_t timed_out;        /* no TLS handshake or HELLO within limits.handshake_timeout */
	uint64_t failed;           /* TLS, certificate, token or HELLO refused */
	uint64_t peer_closed;      /* unauthenticated, closed by the peer */
	uint64_t throttled;        /* times a session stopped reading for limits.sensor_rate */
	uint64_t sessions, unauth; /* open now: all, and those not authenticated yet */
	uint64_t held_bytes;       /* input held, not yet stored (limits.ingest_buffer) */
};
/* Safe from any thread (relaxed atomic loads; the loop never waits for a reader). */
void server_metrics_get(const struct server *srv, struct server_metrics *out);
void server_free(struct server *srv);

#endif
