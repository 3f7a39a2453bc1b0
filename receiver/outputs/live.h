/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The live hub: the packets of every batch the store has just stored, handed to live
 * consumers (GET /api/v1/live, PCAP-over-IP) as a pcap or pcapng byte stream.
 *
 * Threads. live_feed() runs on the ingest loop once a batch is stored: with no consumer
 * it returns at once (an atomic load); otherwise it copies the batch (one allocation,
 * one memcpy) into the hub's backlog and returns; it never waits for a consumer. The
 * hub's own thread takes batches from the backlog, filters each record per consumer
 * (sensors, BPF) and writes it into that consumer's queue, a ring of at most
 * live.queue_size bytes allocated when the consumer joins. Consumers read their ring
 * from their own threads (live_consumer_read()).
 *
 * Nothing is dropped silently: a record a consumer cannot get is counted for that
 * consumer by reason (enum live_drop), in live_stats_get(), and in one log line when
 * the consumer ends. A consumer whose queue holds bytes it has not read for
 * live.stall_timeout is cut off (counted; its reads then fail).
 *
 * Stream format. pcap: the classic nanosecond format (magic a1b23c4d); the header is
 * written with the first record delivered, with that record's link type; records of
 * another link type are then dropped (LIVE_DROP_LINKTYPE). pcapng: one section, one
 * interface description per (sensor, interface) as it first appears, named
 * "<sensor>/<interface>", so every link type is kept. Bytes are flushed to the queue
 * once per batch.
 */
#ifndef PCAPLINE_RECEIVER_OUTPUTS_LIVE_H
#define PCAPLINE_RECEIVER_OUTPUTS_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/wire.h"

#define LIVE_QUEUE_DEFAULT    (8u << 20)
#define LIVE_QUEUE_MIN        (1u << 20) /* holds the largest record (262144 bytes) */
#define LIVE_STALL_DEFAULT_MS 30000
#define LIVE_MAX_CONSUMERS    16
/* Bytes of stored batches waiting for the hub thread; beyond, a batch is counted as
 * dropped (LIVE_DROP_BACKLOG) for every consumer that wanted it. */
#define LIVE_BACKLOG_BYTES    (64u << 20)
/* Sensors one consumer may name. */
#define LIVE_MAX_SENSORS      64
/* pcapng interfaces of one stream (one per sensor interface seen). */
#define LIVE_MAX_NG_IFACES    256

struct live_opts {
	uint64_t queue_bytes;   /* each consumer's queue (0: LIVE_QUEUE_DEFAULT) */
	uint32_t stall_ms;      /* cut off after this long with unread bytes (0: default) */
	unsigned max_consumers; /* at once (0: LIVE_MAX_CONSUMERS) */
};

/* Why a record did not reach a consumer. */
enum live_drop {
	LIVE_DROP_QUEUE,    /* its queue was full: it reads slower than packets arrive */
	LIVE_DROP_BACKLOG,  /* the hub thread was behind (LIVE_BACKLOG_BYTES) */
	LIVE_DROP_LINKTYPE, /* pcap stream: a link type other than the stream header's */
	LIVE_DROP_FILTER,   /* its filter does not compile for the record's link type */
	LIVE_DROP_FORMAT,   /* the stream cannot hold it: a time after 2106 (which the
			     * repository cannot store either), too many pcapng interfaces */
	LIVE_DROP_N
};
/* "queue_full", "backlog", "linktype", "filter_linktype", "format": metric labels. */
const char *live_drop_name(enum live_drop d);

enum live_format {
	LIVE_PCAP,
	LIVE_PCAPNG
};

/* Starts the hub thread. 0 or -errno. */
int live_init(const struct live_opts *o);
/* Makes every consumer's read fail (-ESHUTDOWN) and refuses new ones: call before
 * stopping the threads that serve consumers. */
void live_shutdown(void);
/* Stops the hub thread and frees the backlog; consumers must be freed before. */
void live_fini(void);

/* True while at least one consumer exists: the ingest path's only cost otherwise. */
bool live_active(void);
/*
 * One stored batch of sensor `sensor` (raw records, PROTOCOL.md 5.4, already checked by
 * the store) with its interface table. Copies what it needs; never blocks on consumers.
 */
void live_feed(const char *sensor, const struct proto_iface *ifaces, uint16_t n_ifaces, const uint8_t *raw,
	uint32_t raw_len, uint32_t n_records);

struct live_consumer_opts {
	const char *const *sensors; /* sensor ids; n_sensors 0 = every sensor */
	size_t n_sensors;
	const char *filter; /* BPF, NULL or "" = everything */
	enum live_format format;
	const char *name; /* for log lines: "http 127.0.0.1:5555", "pcap-over-ip ..." */
	int fd;           /* shut down when the consumer is cut off, -1 for none */
};

/*
 * A new consumer. NULL with errno and a one-line message in err: EINVAL (a bad filter,
 * naming the problem; a bad sensor id), EBUSY (max consumers), ESHUTDOWN, ENOMEM.
 */
struct live_consumer *live_consumer_new(const struct live_consumer_opts *o, char *err, size_t errlen);
/*
 * Takes up to max bytes of the consumer's stream, waiting up to timeout_ms for some.
 * Returns the count, 0 after the timeout, -ECONNABORTED once cut off (stalled),
 * -ESHUTDOWN once the hub stops and the queue is empty. Call from one thread at a time.
 */
ssize_t live_consumer_read(struct live_consumer *c, void *buf, size_t max, unsigned timeout_ms);
/* Drops the consumer (logging what it got and lost). Accepts NULL. */
void live_consumer_free(struct live_consumer *c);

struct live_consumer_stats {
	uint64_t id;
	char name[96];
	uint64_t packets, bytes; /* delivered into its queue */
	uint64_t drops[LIVE_DROP_N];
	bool cut_off;
};

struct live_stats {
	unsigned consumers;       /* now */
	uint64_t consumers_total; /* since start */
	uint64_t cut_off;         /* consumers cut off for stalling, since start */
	uint64_t refused;         /* consumers refused (max_consumers), since start */
	/* Drops of every consumer since start, those gone included. */
	uint64_t drops[LIVE_DROP_N];
	uint64_t packets; /* records delivered to consumers, since start */
	/* The consumers of now (at most max, n set to how many are filled). */
	struct live_consumer_stats *each;
	size_t max, n;
};
/* Fills st (safe from any thread). each/max are the caller's. */
void live_stats_get(struct live_stats *st);

#endif
