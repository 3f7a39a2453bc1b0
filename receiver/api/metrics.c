/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Prometheus exposition of the receiver (see metrics.h). Every family's lines come
 * together (HELP, TYPE, then its samples for every sensor), as the format requires.
 */
#include "receiver/api/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/wire.h"
#include "shared/promtext.h"

/* ACK latency histogram edges: 2^k - 1 microseconds, where the histogram's buckets end
 * exactly (shared/lathist.h), from 63 us to about 16.8 s. */
#define METRICS_LAT_K_MIN 6
#define METRICS_LAT_K_MAX 24

/* Per-sensor families -------------------------------------------------------------- */

/* A per-sensor family read from struct store_pub at off; stat: the STATS id it comes
 * from (only sensors that sent it have a sample), 0 for the receiver's own counts. */
struct metrics_pub_family {
	const char *name, *type, *help;
	size_t off;
	uint16_t stat;
};

#define PUB(f)   offsetof(struct store_pub, f)
#define STAT(id) (PUB(s_stat) + (id) * sizeof(uint64_t)), (id)

static const struct metrics_pub_family metrics_sensor_families[] = {
	{ "pcapline_sensor_captured_packets_total", "counter",
		"Packets the sensor's capture filter accepted (the sensor's count since it started).",
		STAT(PROTO_ST_CAPTURED) },
	{ "pcapline_sensor_captured_bytes_total", "counter",
		"Captured packet bytes, sum of caplen (the sensor's count since it started).",
		STAT(PROTO_ST_PKT_BYTES) },
	{ "pcapline_sensor_shipped_batches_total", "counter",
		"Batches the sensor built and shipped (the sensor's count since it started).",
		STAT(PROTO_ST_BATCHES) },
	{ "pcapline_sensor_shipped_bytes_total", "counter",
		"Batch bytes after lz4 compression, as shipped (the sensor's count since it started).",
		STAT(PROTO_ST_BYTES_SENT) },
	{ "pcapline_sensor_shipped_raw_bytes_total", "counter",
		"Batch record bytes before compression (the sensor's count since it started).",
		STAT(PROTO_ST_BYTES_RAW) },
	{ "pcapline_sensor_name_events_total", "counter",
		"Name-resolution events the sensor produced (the sensor's count since it started).",
		STAT(PROTO_ST_NAMES_EVENTS) },
	{ "pcapline_sensor_name_events_dropped_total", "counter",
		"Name-resolution events the sensor dropped: its queue was full.",
		STAT(PROTO_ST_NAMES_DROPS) },
	{ "pcapline_stored_packets_total", "counter", "Packets stored in the repository.", PUB(c.packets),
		0 },
	{ "pcapline_stored_bytes_total", "counter", "Packet bytes (caplen) stored in the repository.",
		PUB(c.bytes), 0 },
	{ "pcapline_stored_batches_total", "counter", "Batches stored and acknowledged.", PUB(c.batches), 0 },
	{ "pcapline_duplicate_batches_total", "counter",
		"Batches received again after a reconnect, dropped as duplicates and acknowledged (not a "
		"loss).",
		PUB(c.duplicates), 0 },
	{ "pcapline_missing_batches_total", "counter",
		"Batch sequence numbers the sensor skipped: batches lost before the receiver.",
		PUB(c.missing_batches), 0 },
	{ "pcapline_rejected_batches_total", "counter",
		"Malformed batches, or a sequence number reused with other bytes; the session was closed.",
		PUB(c.rejected_batches), 0 },
	{ "pcapline_storage_errors_total", "counter",
		"Attempts to store a batch that failed and were retried (disk full, I/O error).",
		PUB(c.storage_errors), 0 },
	{ "pcapline_output_file_rejected_packets_total", "counter",
		"Packets left out of output.file because of a link type other than its first.",
		PUB(c.linktype_rejects), 0 },
	{ "pcapline_segments_closed_total", "counter", "Segments closed and renamed into place.",
		PUB(c.segments_closed), 0 },
	{ "pcapline_segments", "gauge", "Closed segments of the sensor in the repository's index.",
		PUB(segments), 0 },
	{ "pcapline_repository_bytes", "gauge",
		"Bytes of the sensor's closed segments in the repository's index.", PUB(segment_bytes), 0 },
	{ "pcapline_retention_deleted_segments_total", "counter",
		"Segments retention deleted (storage.max_size, max_age and the per-sensor bounds).",
		PUB(c.retention_segments), 0 },
	{ "pcapline_retention_deleted_packets_total", "counter", "Packets in the segments retention deleted.",
		PUB(c.retention_packets), 0 },
	{ "pcapline_retention_deleted_bytes_total", "counter", "Bytes of the segments retention deleted.",
		PUB(c.retention_bytes), 0 },
};

#undef STAT
#undef PUB

/* Why packets were lost, as the label reason says it; stat: the STATS id (the sensor's
 * count), 0 for the receiver's own. */
static const struct {
	const char *reason;
	uint16_t stat;
} metrics_loss[] = {
	{ "kernel", PROTO_ST_KERNEL_DROPS },
	{ "interface", PROTO_ST_IF_DROPS },
	{ "sensor_queue", PROTO_ST_QUEUE_DROPS },
	{ "spool", PROTO_ST_SPOOL_DROPS },
	{ "timestamp_range", 0 },
};

static uint64_t
metrics_pub_u64(const struct store_pub *p, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)p + off, sizeof(v));
	return v;
}

static bool
metrics_seen(const struct store_pub *p, uint16_t stat)
{
	return stat < STORE_SENSOR_STATS && (p->seen >> stat & 1) != 0;
}

/* The STATS ids this receiver has no name for, kept as the sensor sent them. */
static bool
metrics_known_stat(unsigned id)
{
	return id >= PROTO_ST_CAPTURED && id <= PROTO_ST_NAMES_DROPS;
}

static void
metrics_sensors(const struct metrics_snap *m, struct promtext *b)
{
	char id[8];
	bool any;

	promtext_family(b, "pcapline_sensor_connected", "gauge",
		"1 while the sensor has a streaming session with this receiver.");
	for (size_t i = 0; i < m->n_sensors; i++)
		promtext_sample(b, "pcapline_sensor_connected", m->sensors[i].connected ? 1 : 0, "sensor",
			m->sensors[i].id, NULL);
	for (size_t f = 0; f < sizeof(metrics_sensor_families) / sizeof(metrics_sensor_families[0]); f++) {
		const struct metrics_pub_family *mf = &metrics_sensor_families[f];

		promtext_family(b, mf->name, mf->type, mf->help);
		for (size_t i = 0; i < m->n_sensors; i++) {
			const struct store_pub *p = &m->sensors[i];

			if (mf->stat == 0 || metrics_seen(p, mf->stat))
				promtext_sample(
					b, mf->name, metrics_pub_u64(p, mf->off), "sensor", p->id, NULL);
		}
	}
	promtext_family(b, "pcapline_lost_packets_total", "counter",
		"Packets lost, by reason: kernel, interface (counted by the sensor's capture), "
		"sensor_queue (its send window was full), spool (its disk spool was full), "
		"timestamp_range (stored records the pcap format cannot date, counted by the receiver).");
	for (size_t i = 0; i < m->n_sensors; i++) {
		const struct store_pub *p = &m->sensors[i];

		for (size_t r = 0; r < sizeof(metrics_loss) / sizeof(metrics_loss[0]); r++) {
			uint64_t v;

			if (metrics_loss[r].stat != 0 && !metrics_seen(p, metrics_loss[r].stat))
				continue;
			v = metrics_loss[r].stat != 0 ? p->s_stat[metrics_loss[r].stat]
						      : p->c.unstorable[STORE_UNSTORABLE_TS];
			promtext_sample(b, "pcapline_lost_packets_total", v, "sensor", p->id, "reason",
				metrics_loss[r].reason, NULL);
		}
	}
	/* Counters of later sensors, not named here yet: kept, as PROTOCOL.md asks. */
	any = false;
	for (size_t i = 0; i < m->n_sensors; i++) {
		const struct store_pub *p = &m->sensors[i];

		for (unsigned s = 1; s < STORE_SENSOR_STATS; s++) {
			if (metrics_known_stat(s) || !metrics_seen(p, (uint16_t)s))
				continue;
			if (!any)
				promtext_family(b, "pcapline_sensor_stat", "untyped",
					"A STATS counter this receiver has no name for, by its id, as the "
					"sensor "
					"last sent it.");
			any = true;
			snprintf(id, sizeof(id), "%u", s);
			promtext_sample(
				b, "pcapline_sensor_stat", p->s_stat[s], "sensor", p->id, "id", id, NULL);
		}
	}
}

/* Receiver-wide families --------------------------------------------------------------- */

static void
metrics_latency(const struct store_pub_all *a, struct promtext *b)
{
	static const char name[] = "pcapline_ack_latency_seconds";
	char le[32];

	promtext_family(b, name, "histogram",
		"Time from a batch frame read whole to its ACK queued (storage and its sync included).");
	for (unsigned k = METRICS_LAT_K_MIN; k <= METRICS_LAT_K_MAX; k++) {
		uint64_t us = (UINT64_C(1) << k) - 1;

		snprintf(le, sizeof(le), "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
		promtext_sample(b, "pcapline_ack_latency_seconds_bucket", lathist_count_le(&a->ack_lat, us),
			"le", le, NULL);
	}
	promtext_sample(b, "pcapline_ack_latency_seconds_bucket", a->ack_lat.count, "le", "+Inf", NULL);
	promtext_sample_f(b, "pcapline_ack_latency_seconds_sum", (double)a->ack_lat.sum / 1e6, NULL);
	promtext_sample(b, "pcapline_ack_latency_seconds_count", a->ack_lat.count, NULL);
}

static void
metrics_store_all(const struct store_pub_all *a, struct promtext *b)
{
	metrics_latency(a, b);
	promtext_single(b, "pcapline_index_busy_total", "counter",
		"Segment index writes of the ingest path that found the database locked by another "
		"writer and were deferred (never lost).",
		a->index_busy);
	promtext_family(b, "pcapline_index_wait_max_seconds", "gauge",
		"Longest time one ingest write spent on a locked index since the start.");
	promtext_sample_f(b, "pcapline_index_wait_max_seconds", (double)a->index_wait_max_us / 1e6, NULL);
}

static void
metrics_server(const struct server_metrics *s, struct promtext *b)
{
	promtext_family(b, "pcapline_sessions", "gauge",
		"Connections open: state=sensor once TLS and HELLO are done, else unauthenticated.");
	promtext_sample(b, "pcapline_sessions",
		s->sessions - (s->unauth < s->sessions ? s->unauth : s->sessions), "state", "sensor", NULL);
	promtext_sample(b, "pcapline_sessions", s->unauth, "state", "unauthenticated", NULL);
	promtext_single(b, "pcapline_connections_accepted_total", "counter", "Sensor connections accepted.",
		s->accepted);
	promtext_family(b, "pcapline_connections_refused_total", "counter",
		"Connections closed at once, by reason: max_sessions (every slot held by a sensor), "
		"shed (unauthenticated, for a newer one: limits.unauth_*), handshake_timeout, "
		"auth_failed (TLS, certificate, token or HELLO refused), peer_closed (before HELLO).");
	promtext_sample(b, "pcapline_connections_refused_total", s->refused, "reason", "max_sessions", NULL);
	promtext_sample(b, "pcapline_connections_refused_total", s->shed, "reason", "shed", NULL);
	promtext_sample(
		b, "pcapline_connections_refused_total", s->timed_out, "reason", "handshake_timeout", NULL);
	promtext_sample(b, "pcapline_connections_refused_total", s->failed, "reason", "auth_failed", NULL);
	promtext_sample(
		b, "pcapline_connections_refused_total", s->peer_closed, "reason", "peer_closed", NULL);
	promtext_single(b, "pcapline_rate_limit_pauses_total", "counter",
		"Times a session stopped reading for limits.sensor_rate (TCP pushes back; nothing is lost).",
		s->throttled);
	promtext_single(b, "pcapline_ingest_held_bytes", "gauge",
		"Bytes read from sensors and not yet stored (bounded by limits.ingest_buffer).",
		s->held_bytes);
}

static void
metrics_dissect(const struct metrics_snap *m, struct promtext *b)
{
	const struct dissect_metrics *d = &m->dis;
	double lag = 0;

	promtext_single(b, "pcapline_dissect_segments_total", "counter",
		"Segments dissected into connections.", d->segments);
	promtext_single(b, "pcapline_dissect_packets_total", "counter", "Packets the dissection path read.",
		d->packets);
	promtext_single(b, "pcapline_dissect_failed_total", "counter",
		"Failed dissection attempts (retried, or recorded for pcapline reindex).", d->failed);
	promtext_family(b, "pcapline_dissect_deferred_seconds_total", "counter",
		"Time dissection let closed segments wait while the CPUs were saturated (l4.defer_max).");
	promtext_sample_f(
		b, "pcapline_dissect_deferred_seconds_total", (double)d->deferred_ms / 1000.0, NULL);
	promtext_single(b, "pcapline_dissect_deferral_bound_total", "counter",
		"Times a wait reached l4.defer_max and the backlog was worked off on saturated CPUs.",
		d->forced);
	if (!d->backlog_known)
		return; /* not counted yet (the worker is still repairing at start) */
	promtext_single(b, "pcapline_dissect_backlog_segments", "gauge", "Closed segments not dissected yet.",
		d->backlog_segments);
	promtext_single(b, "pcapline_dissect_backlog_packets", "gauge", "Packets in those segments.",
		d->backlog_packets);
	if (d->backlog_segments > 0 && d->oldest_closed_ns > 0 && m->now_ns > d->oldest_closed_ns)
		lag = (double)(m->now_ns - d->oldest_closed_ns) / 1e9;
	promtext_family(b, "pcapline_dissect_lag_seconds", "gauge",
		"How long the oldest segment not dissected yet has been closed; 0 when none waits.");
	promtext_sample_f(b, "pcapline_dissect_lag_seconds", lag, NULL);
}

int
metrics_render(const struct metrics_snap *m, const struct metrics_src *src, struct promtext *b)
{
	promtext_family(b, "pcapline_build_info", "gauge", "The receiver's version; always 1.");
	promtext_sample(b, "pcapline_build_info", 1, "version", PCAPLINE_VERSION, NULL);
	promtext_single(b, "pcapline_ready", "gauge",
		"1 once the store is loaded and the listeners are up, 0 before and while shutting down.",
		m->ready ? 1 : 0);
	if (m->have_store) {
		metrics_sensors(m, b);
		metrics_store_all(&m->all, b);
	}
	if (m->have_server)
		metrics_server(&m->srv, b);
	if (m->have_dissect)
		metrics_dissect(m, b);
	if (src != NULL && src->live != NULL)
		src->live(src->live_arg, b);
	return b->oom ? -ENOMEM : 0;
}

int
metrics_collect(const struct metrics_src *src, bool ready, struct metrics_snap *m)
{
	struct timespec ts;

	memset(m, 0, sizeof(*m));
	clock_gettime(CLOCK_REALTIME, &ts);
	m->now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	m->ready = ready;
	if (src->store != NULL) {
		if (store_pub_read(src->store, &m->sensors, &m->n_sensors, &m->all) != 0)
			return -ENOMEM;
		m->have_store = true;
	}
	if (src->srv != NULL) {
		server_metrics_get(src->srv, &m->srv);
		m->have_server = true;
	}
	if (src->dissect != NULL) {
		dissect_worker_metrics(src->dissect, &m->dis);
		m->have_dissect = true;
	}
	return 0;
}

void
metrics_snap_fini(struct metrics_snap *m)
{
	free(m->sensors);
	m->sensors = NULL;
	m->n_sensors = 0;
}
