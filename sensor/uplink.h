/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Uplink: the sensor's connection to a receiver. Keeps every batch until the
 * receiver ACKs it (bounded window), reconnects with exponential backoff and
 * jitter across an ordered list of receivers, and resends what was not ACKed.
 */
#ifndef PCAPLINE_SENSOR_UPLINK_H
#define PCAPLINE_SENSOR_UPLINK_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "sensor/batcher.h"
#include "proto/wire.h"

struct uplink_target {
	char host[256];
	char port[16];
	char server_name[256]; /* name the receiver's certificate must carry */
};

struct uplink_opts {
	const struct uplink_target *targets;
	size_t n_targets;
	SSL_CTX *ssl_ctx; /* NULL: plain TCP (insecure) */
	const struct proto_hello *hello;
	uint64_t window_bytes;         /* bytes of un-ACKed batches held in memory */
	uint64_t max_batch_frame;      /* largest BATCH frame we may send */
	void (*on_room)(void *arg);    /* called when the window has room again */
	void (*on_session)(void *arg); /* called after each WELCOME: a new session began; may be NULL */
	/* The first sequence number not yet assigned in the epoch (PROTOCOL.md 6.3). */
	uint64_t (*next_seq)(void *arg);
	/* The receiver holds numbers of this epoch the sensor never assigned, or found a
	 * number reused for other bytes: the callee moves to a new epoch (hello->epoch) and
	 * renumbers, with uplink_renumber() among others, before the next connection. */
	void (*on_epoch_reused)(void *arg);
	/* Every receiver refused this sensor for a reason retrying cannot cure (identity,
	 * certificate, token, version) before any session was ever welcomed. why names
	 * the reason. NULL: keep retrying. */
	void (*on_refused)(void *arg, const char *why);
	void *arg;
};

struct uplink_stats {
	uint64_t batches_sent, bytes_sent, batches_acked, packets_acked, resent;
	uint64_t connects, disconnects;
	uint64_t pending_batches, pending_bytes;
	bool connected;
};

struct uplink;

struct uplink *uplink_new(struct ev_loop *loop, const struct uplink_opts *o);
void uplink_start(struct uplink *u);
/* True if a batch of len bytes fits the window now. */
bool uplink_has_room(const struct uplink *u, size_t len);
/* Queues a sealed batch (ownership moves to the uplink). The caller checks room first. */
void uplink_push(struct uplink *u, struct batch *b);
/* Queues a STATS frame (dropped if not connected: the next one supersedes it). */
void uplink_send_stats(struct uplink *u, const struct proto_stats *st);
/* Queues one NAMES payload (at most PROTO_NAMES_MAX_LEN bytes). Returns 0 when queued,
 * -ENOTCONN when no session is streaming, -ENOBUFS when earlier control frames still
 * fill the buffer: the caller keeps the events and offers them again later. Frames
 * queued but not written when a connection breaks are lost; on_session tells the
 * caller to send its state again. */
int uplink_send_names(struct uplink *u, const uint8_t *payload, size_t len);
void uplink_stats(const struct uplink *u, struct uplink_stats *out);
/* Highest sequence number ACKed (or known stored) so far, 0 if none. */
uint64_t uplink_acked_seq(const struct uplink *u);
/* Calls fn for every batch not yet ACKed, in sequence order. */
void uplink_foreach_pending(const struct uplink *u, void (*fn)(void *arg, const struct batch *b), void *arg);
/* Renumbers every kept batch from first on, in order, for a new epoch (only while
 * no session is up, i.e. from on_epoch_reused); calls moved(arg, old, new) for each.
 * Forgets what was ACKed in the old epoch. Returns the next free number. */
uint64_t uplink_renumber(
	struct uplink *u, uint64_t first, void (*moved)(void *arg, uint64_t old, uint64_t seq), void *arg);
/* True when every queued batch has been ACKed. */
bool uplink_idle(const struct uplink *u);
void uplink_free(struct uplink *u);

#endif
