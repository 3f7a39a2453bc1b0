/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline-sensor: captures packets (live interfaces or a capture file), batches
 * and compresses them, and streams them over mutually authenticated TLS to a
 * receiver, keeping every batch until the receiver has stored it.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "sensor/batcher.h"
#include "sensor/capture.h"
#include "shared/config.h"
#include "shared/hostport.h"
#include "shared/log.h"
#include "sensor/names.h"
#include "sensor/promhttp.h"
#include "shared/privdrop.h"
#include "shared/sdnotify.h"
#include "shared/tls.h"
#include "sensor/spool.h"
#include "sensor/uplink.h"
#include "proto/wire.h"

struct sensor_conf {
	char *id;
	char *user;
	struct cfg_strlist interfaces;
	char *filter;
	int64_t snaplen;
	bool promisc;
	uint64_t buffer_size;
	char *file;
	bool exclude_uplink;
	struct cfg_strlist receivers;
	char *server_name;
	bool insecure;
	char *token;
	uint64_t window;
	uint64_t drain_timeout;
	char *spool_dir;
	uint64_t spool_max;
	char *ca, *cert, *key;
	int tls_min;
	uint64_t batch_bytes;
	uint64_t batch_delay;
	int log_level;
	uint64_t stats_interval;
	bool names_enabled;
	char *names_hosts;
	struct cfg_strlist names_static;
	struct cfg_strlist names_ports;
	char *metrics_listen;
};

/* In-flight bytes for file replay (see uplink_opts below). */
#define SENSOR_REPLAY_WINDOW (16u << 20)

static const char *const tls_versions[] = { "1.3", "1.2", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

#define K(path, type, field, ...)                                            \
	{                                                                    \
		path, type, offsetof(struct sensor_conf, field), __VA_ARGS__ \
	}
static const struct cfg_key sensor_schema[] = {
	K("sensor.id", CFG_STR, id, 0, 0, NULL, "sensor identity; default: the CN of tls.cert"),
	K("sensor.user", CFG_STR, user, 0, 0, NULL,
		"after opening the capture, run as this user; \"\" = stay"),
	K("capture.interfaces", CFG_STRLIST, interfaces, 0, 0, NULL,
		"interfaces to capture on (any, lo, eth0, ...)"),
	K("capture.filter", CFG_STR, filter, 0, 0, NULL, "BPF filter expression (pcap-filter(7))"),
	K("capture.snaplen", CFG_INT, snaplen, 1, PROTO_MAX_SNAPLEN, NULL, "bytes kept per packet"),
	K("capture.promiscuous", CFG_BOOL, promisc, 0, 0, NULL, "put interfaces in promiscuous mode"),
	K("capture.buffer_size", CFG_SIZE, buffer_size, 1 << 20, 1ll << 31, NULL,
		"kernel ring buffer per interface"),
	K("capture.file", CFG_STR, file, 0, 0, NULL,
		"replay this pcap/pcapng file instead of capturing live"),
	K("capture.exclude_uplink", CFG_BOOL, exclude_uplink, 0, 0, NULL,
		"leave the sensor's own uplink traffic out of the capture"),
	K("uplink.receivers", CFG_STRLIST, receivers, 0, 0, NULL, "receivers as host:port, tried in order"),
	K("uplink.server_name", CFG_STR, server_name, 0, 0, NULL,
		"name the receiver certificate must carry; default: the host"),
	K("uplink.insecure", CFG_BOOL, insecure, 0, 0, NULL, "plain TCP without TLS (testing only)"),
	K("uplink.token", CFG_STR, token, 0, 0, NULL, "optional bearer token sent in HELLO"),
	K("uplink.window", CFG_SIZE, window, 1 << 20, 1ll << 34, NULL,
		"bytes of un-acknowledged batches kept in memory"),
	K("uplink.drain_timeout", CFG_DURATION, drain_timeout, 0, 3600000, NULL,
		"on shutdown, wait this long for acknowledgements"),
	K("spool.dir", CFG_STR, spool_dir, 0, 0, NULL,
		"keep batches that overflow the window here until ACKed; \"\" = no spool"),
	K("spool.max_size", CFG_SIZE, spool_max, 1 << 20, 1ll << 50, NULL,
		"bytes of spool; when full the oldest batch is dropped and counted"),
	K("tls.ca", CFG_STR, ca, 0, 0, NULL, "CA certificate that signed the receiver's certificate"),
	K("tls.cert", CFG_STR, cert, 0, 0, NULL, "this sensor's certificate"),
	K("tls.key", CFG_STR, key, 0, 0, NULL, "this sensor's private key"),
	K("tls.min_version", CFG_ENUM, tls_min, 0, 0, tls_versions, "lowest TLS version accepted"),
	K("batch.max_bytes", CFG_SIZE, batch_bytes, 4096, 16 << 20, NULL,
		"record bytes per batch before compression"),
	K("batch.max_delay", CFG_DURATION, batch_delay, 1, 10000, NULL,
		"longest a packet waits in an open batch"),
	K("log.level", CFG_ENUM, log_level, 0, 0, log_levels, "error, warn, info or debug"),
	K("log.stats_interval", CFG_DURATION, stats_interval, 1000, 86400000, NULL,
		"how often counters are logged and sent"),
	K("names.enabled", CFG_BOOL, names_enabled, 0, 0, NULL,
		"learn names (DNS answers, hosts file, names.static) and send them to the receiver"),
	K("names.hosts_file", CFG_STR, names_hosts, 0, 0, NULL,
		"hosts file read at start and on SIGHUP; \"\" = none"),
	K("names.static", CFG_STRLIST, names_static, 0, 0, NULL,
		"fixed names: IP=NAME, IP:PORT=NAME, [IPv6]:PORT=NAME, each optionally @NAMESPACE"),
	K("names.dns_ports", CFG_STRLIST, names_ports, 0, 0, NULL,
		"UDP/TCP ports whose packets are read as DNS"),
	K("metrics.listen", CFG_STR, metrics_listen, 0, 0, NULL,
		"serve GET /metrics (Prometheus text, plain HTTP, no token) on host:port; \"\" = off"),
	{ NULL },
};
#undef K

struct sensor {
	struct sensor_conf conf;
	const char *config_path;
	struct ev_loop *loop;
	struct capture *cap;
	struct batcher *batcher;
	struct uplink *uplink;
	struct spool *spool;
	struct names *names;      /* NULL: names.enabled is false */
	struct promhttp *metrics; /* NULL: metrics.listen is empty */
	SSL_CTX *ssl_ctx;
	struct uplink_target *targets;
	struct proto_hello hello;
	ev_timer batch_timer, stats_timer, drain_timer;
	ev_signal sigint, sigterm, sighup;
	struct sdn_loop notify; /* systemd: READY=1, WATCHDOG=1, STATUS=, STOPPING=1 */
	bool stopping;
	bool paused_for_room;
	uint64_t queue_drops, queue_drop_batches;
	uint64_t raw_bytes, frame_bytes; /* batch records before and frames after compression */
	struct log_limit drop_lim;
	int exit_code;
	char id[PROTO_MAX_ID + 1];
	char *exclude; /* BPF excluding the uplink's own packets, or NULL */
};

static void
sensor_defaults(struct sensor_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->snaplen = PROTO_MAX_SNAPLEN;
	c->promisc = true;
	c->buffer_size = 32u << 20;
	c->exclude_uplink = true;
	c->window = 64u << 20;
	c->drain_timeout = 10000;
	c->spool_max = 1ull << 30;
	c->batch_bytes = 1u << 20;
	c->batch_delay = 200;
	c->log_level = LOG_LVL_INFO;
	c->stats_interval = 10000;
	c->names_enabled = true;
	c->names_hosts = strdup("/etc/hosts");
	c->names_ports.v = calloc(2, sizeof(char *));
	if (c->names_ports.v && (c->names_ports.v[0] = strdup("53")) != NULL)
		c->names_ports.n = 1;
}

static struct names_config
sensor_names_config(const struct sensor_conf *c)
{
	struct names_config nc = {
		.hosts_file = c->names_hosts,
		.statics = (const char *const *)c->names_static.v,
		.n_statics = c->names_static.n,
		.dns_ports = (const char *const *)c->names_ports.v,
		.n_dns_ports = c->names_ports.n,
	};
	return nc;
}

static int
sensor_names_send(void *arg, const uint8_t *payload, size_t len)
{
	struct sensor *s = arg;
	return uplink_send_names(s->uplink, payload, len);
}

static uint64_t
sensor_next_seq(void *arg)
{
	struct sensor *s = arg;
	return batcher_next_seq(s->batcher);
}

static void
sensor_renumbered(void *arg, uint64_t old, uint64_t seq)
{
	struct sensor *s = arg;
	if (s->spool)
		spool_renumber(s->spool, old, seq);
}

/* The receiver holds numbers of our epoch that we did not give to the batches it has
 * (PROTOCOL.md 6.3): continue in a new epoch, every kept batch renumbered from 1. */
static void
sensor_on_epoch_reused(void *arg)
{
	struct sensor *s = arg;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t old = s->hello.epoch, epoch = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	if (epoch == old)
		epoch++;
	/* The spool records the new epoch first, with every number in use above its
	 * reservation, so that a crash while renumbering reuses none. */
	if (s->spool) {
		spool_ack(s->spool, uplink_acked_seq(s->uplink));
		int rc = spool_set_epoch(s->spool, epoch, batcher_next_seq(s->batcher) - 1);
		if (rc != 0)
			log_warnx("spool: cannot record the new epoch: %s", strerror(-rc));
	}
	s->hello.epoch = epoch;
	uint64_t next = uplink_renumber(s->uplink, 1, sensor_renumbered, s);
	if (s->spool)
		next = spool_renumber_waiting(s->spool, next);
	batcher_set_next_seq(s->batcher, next);
	if (s->spool)
		spool_seq_use(s->spool, next - 1);
	log_warnx("epoch %" PRIu64 " replaced by %" PRIu64 ": %" PRIu64 " kept batches renumbered from 1",
		old, epoch, next - 1);
}

/* Refused before any session was welcomed, for a reason retrying cannot cure: a
 * start-up error, like a bad configuration. */
static void
sensor_on_refused(void *arg, const char *why)
{
	struct sensor *s = arg;
	log_msg(LOG_LVL_ERROR,
		"uplink refused: %s; retrying cannot help: check sensor.id, tls.cert, tls.key, "
		"tls.ca, uplink.server_name and uplink.token (exiting with status %d)",
		why, EXIT_CONFIG);
	s->exit_code = EXIT_CONFIG;
	ev_break(s->loop, EVBREAK_ALL);
}

/* NAMES frames are not acknowledged: every session starts with the full table. */
static void
sensor_on_session(void *arg)
{
	struct sensor *s = arg;
	if (s->names)
		names_resync(s->names);
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: pcapline-sensor [-c FILE] [options]\n"
		"  -c, --config FILE      YAML configuration (see config/sensor.yaml)\n"
		"  -i, --iface IF[,IF]    capture.interfaces\n"
		"  -f, --filter EXPR      capture.filter (BPF)\n"
		"  -r, --file PCAP        capture.file: replay a pcap/pcapng file\n"
		"  -s, --snaplen N        capture.snaplen\n"
		"  -t, --to HOST:PORT     uplink.receivers (comma-separated for failover)\n"
		"      --id ID            sensor.id\n"
		"      --ca FILE          tls.ca\n"
		"      --cert FILE        tls.cert\n"
		"      --key FILE         tls.key\n"
		"      --insecure         uplink.insecure: plain TCP, no TLS\n"
		"      --log-level LEVEL  log.level\n"
		"      --check-config     validate the configuration, print it, and exit\n"
		"  -V, --version          print the version\n"
		"Every setting can also come from PCAPLINE_<KEY> (e.g. PCAPLINE_CAPTURE_FILTER).\n");
}

static void
sensor_on_sealed(void *arg, struct batch *b)
{
	struct sensor *s = arg;
	s->raw_bytes += b->raw_len;
	s->frame_bytes += b->len;
	/* The number is on disk before the batch can reach a receiver, so that a restart
	 * never hands it to another batch (a failure is logged and disables the resume). */
	if (s->spool)
		spool_seq_use(s->spool, b->seq);
	/* Live capture with a spool: once anything waits on disk, new batches queue behind
	 * it there, so that batches reach the receiver in sequence order. */
	if (s->spool && !capture_is_file(s->cap) && !s->stopping &&
		(spool_has_waiting(s->spool) || !uplink_has_room(s->uplink, b->len))) {
		int rc = spool_put(s->spool, b);
		if (rc != 0) {
			s->queue_drops += b->n_records;
			s->queue_drop_batches++;
			if (log_limit_ok(&s->drop_lim, 3, 10))
				log_warnx("spool: cannot keep batch %" PRIu64 " (%u packets): %s", b->seq,
					b->n_records, strerror(-rc));
		}
		free(b);
		return;
	}
	if (uplink_has_room(s->uplink, b->len) || capture_is_file(s->cap) || s->stopping) {
		/* A file is read no faster than the receiver stores it: it never drops. */
		uplink_push(s->uplink, b);
		if (!s->stopping && !uplink_has_room(s->uplink, s->conf.batch_bytes)) {
			s->paused_for_room = true;
			if (capture_is_file(s->cap))
				capture_pause(s->cap);
		}
		return;
	}
	s->queue_drops += b->n_records;
	s->queue_drop_batches++;
	if (log_limit_ok(&s->drop_lim, 3, 10))
		log_warnx("send window full (%" PRIu64
			  " bytes un-acknowledged): dropped a batch of %u packets "
			  "(%" PRIu64 " dropped so far)",
			s->conf.window, b->n_records, s->queue_drops);
	free(b);
}

/* Moves spooled batches back into the send window while it has room. */
static void
sensor_refill(struct sensor *s)
{
	if (!s->spool)
		return;
	spool_ack(s->spool, uplink_acked_seq(s->uplink));
	while (spool_has_waiting(s->spool) && uplink_has_room(s->uplink, s->conf.batch_bytes)) {
		struct batch *b = spool_take(s->spool);
		if (!b)
			break;
		uplink_push(s->uplink, b);
	}
}

/* Stopping ends once every batch is acknowledged and, while a session is up to carry
 * them, every name event sent (without a session they could only be lost anyway). */
static bool
sensor_drained(const struct sensor *s)
{
	struct uplink_stats us;
	if (!uplink_idle(s->uplink))
		return false;
	uplink_stats(s->uplink, &us);
	return !s->names || names_idle(s->names) || !us.connected;
}

static void
sensor_on_room(void *arg)
{
	struct sensor *s = arg;
	sensor_refill(s);
	if (s->paused_for_room && uplink_has_room(s->uplink, s->conf.batch_bytes)) {
		s->paused_for_room = false;
		if (!s->stopping)
			capture_resume(s->cap);
	}
	if (s->stopping && sensor_drained(s))
		ev_break(s->loop, EVBREAK_ALL);
}

static void
sensor_on_packet(
	void *arg, uint16_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen, uint32_t origlen)
{
	struct sensor *s = arg;
	batcher_add(s->batcher, iface, ts_ns, data, caplen, origlen);
	if (s->names)
		names_packet(s->names, s->hello.ifaces[iface].linktype, ts_ns, data, caplen);
}

static void
sensor_collect(struct sensor *s, struct proto_stats *ps, struct capture_stats *cs, struct uplink_stats *us)
{
	struct names_stats ns = { 0 };
	capture_stats(s->cap, cs);
	uplink_stats(s->uplink, us);
	if (s->names)
		names_stats(s->names, &ns);
	struct proto_stat v[] = {
		{ PROTO_ST_CAPTURED, cs->captured },
		{ PROTO_ST_KERNEL_DROPS, cs->kernel_drops },
		{ PROTO_ST_IF_DROPS, cs->if_drops },
		{ PROTO_ST_QUEUE_DROPS, s->queue_drops },
		{ PROTO_ST_SPOOL_DROPS, s->spool ? spool_dropped_packets(s->spool) : 0 },
		{ PROTO_ST_BATCHES, batcher_next_seq(s->batcher) - 1 },
		{ PROTO_ST_BYTES_RAW, s->raw_bytes },
		{ PROTO_ST_BYTES_SENT, s->frame_bytes },
		{ PROTO_ST_PKT_BYTES, cs->bytes },
		{ PROTO_ST_NAMES_EVENTS, ns.events },
		{ PROTO_ST_NAMES_DROPS, ns.drops },
	};
	memset(ps, 0, sizeof(*ps));
	ps->ts_ns = (uint64_t)(ev_now(s->loop) * 1e9);
	ps->n = sizeof(v) / sizeof(v[0]);
	memcpy(ps->s, v, sizeof(v));
}

static void
sensor_log_stats(struct sensor *s, const char *when)
{
	struct proto_stats ps;
	struct capture_stats cs;
	struct uplink_stats us;
	sensor_collect(s, &ps, &cs, &us);
	if (s->names) {
		struct names_stats ns;
		names_stats(s->names, &ns);
		log_info("%s: names: %" PRIu64 " mappings held, %" PRIu64 " changes (%" PRIu64
			 " dropped: queue full), %" PRIu64 " events sent; DNS: %" PRIu64
			 " responses read, %" PRIu64 " malformed, %" PRIu64
			 " TCP segments without a whole message",
			when, ns.entries, ns.events, ns.drops, ns.sent, ns.dns_messages, ns.dns_errors,
			ns.dns_tcp_split);
	}
	log_info("%s: captured %" PRIu64 " packets (%" PRIu64 " bytes), kernel drops %" PRIu64
		 ", interface drops %" PRIu64 ", queue drops %" PRIu64 ", spool drops %" PRIu64
		 " (spool holds %" PRIu64 " batches); batches sent %" PRIu64 " (%" PRIu64
		 " resent), acknowledged %" PRIu64 " batches / %" PRIu64 " packets, pending %" PRIu64
		 "; batch bytes %" PRIu64 " -> %" PRIu64 " compressed (ratio %.2f); %s",
		when, cs.captured, cs.bytes, cs.kernel_drops, cs.if_drops, s->queue_drops,
		s->spool ? spool_dropped_packets(s->spool) : 0, s->spool ? spool_count(s->spool) : 0,
		us.batches_sent, us.resent, us.batches_acked, us.packets_acked, us.pending_batches,
		s->raw_bytes, s->frame_bytes,
		s->frame_bytes ? (double)s->raw_bytes / (double)s->frame_bytes : 0.0,
		us.connected ? "connected" : "disconnected");
	uplink_send_stats(s->uplink, &ps);
}

static void
sensor_spool_one(void *arg, const struct batch *b)
{
	struct sensor *s = arg;
	if (spool_contains(s->spool, b->seq))
		return;
	int rc = spool_put(s->spool, b);
	if (rc != 0)
		log_warnx("spool: cannot keep batch %" PRIu64 " at exit: %s", b->seq, strerror(-rc));
}

/* At exit, un-ACKed batches go to the spool so that the next run resends them. */
static void
sensor_spool_rest(struct sensor *s)
{
	if (!s->spool)
		return;
	spool_ack(s->spool, uplink_acked_seq(s->uplink));
	uplink_foreach_pending(s->uplink, sensor_spool_one, s);
	if (spool_count(s->spool))
		log_info("spool: %" PRIu64 " batches kept in %s for the next run", spool_count(s->spool),
			s->conf.spool_dir);
}

static void
sensor_on_stats(struct ev_loop *loop, ev_timer *w, int revents)
{
	sensor_log_stats(w->data, "stats");
}

/* STATUS= for systemctl status: the counters an operator checks first. */
static void
sensor_status(void *arg, char *buf, size_t len)
{
	struct sensor *s = arg;
	struct capture_stats cs;
	struct uplink_stats us;
	capture_stats(s->cap, &cs);
	uplink_stats(s->uplink, &us);
	uint64_t spool_drops = s->spool ? spool_dropped_packets(s->spool) : 0;
	snprintf(buf, len,
		"captured %" PRIu64 " packets, shipped %" PRIu64 " batches, acknowledged %" PRIu64
		" packets, dropped %" PRIu64 " (kernel %" PRIu64 ", interface %" PRIu64 ", queue %" PRIu64
		", spool %" PRIu64 "); %s",
		cs.captured, us.batches_sent, us.packets_acked,
		cs.kernel_drops + cs.if_drops + s->queue_drops + spool_drops, cs.kernel_drops, cs.if_drops,
		s->queue_drops, spool_drops, us.connected ? "connected" : "disconnected");
}

static void
sensor_begin_stop(struct sensor *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	sdn_loop_stopping(&s->notify, why);
	log_info("%s: flushing and waiting up to %.1f s for the receiver to acknowledge", why,
		(double)s->conf.drain_timeout / 1000.0);
	capture_drain(s->cap);
	capture_pause(s->cap);
	/* Names first: the frame then goes out ahead of the last batch, whose ACK proves it
	 * was read. */
	if (s->names)
		names_flush(s->names);
	batcher_flush(s->batcher);
	if (sensor_drained(s)) {
		ev_break(s->loop, EVBREAK_ALL);
		return;
	}
	ev_timer_set(&s->drain_timer, (double)s->conf.drain_timeout / 1000.0, 0.);
	ev_timer_start(s->loop, &s->drain_timer);
}

static void
sensor_on_batch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sensor *s = w->data;
	uint64_t since = batcher_open_since(s->batcher);
	if (since && mono_ns() - since >= s->conf.batch_delay * 1000000ull)
		batcher_flush(s->batcher);
	if (capture_done(s->cap) && !s->stopping)
		sensor_begin_stop(s, "end of capture file");
	else if (s->stopping && sensor_drained(s))
		ev_break(loop, EVBREAK_ALL); /* the last name events went out after the last ACK */
}

static void
sensor_on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sensor *s = w->data;
	struct uplink_stats us;
	uplink_stats(s->uplink, &us);
	if (uplink_idle(s->uplink) && s->names) {
		struct names_stats ns;
		names_stats(s->names, &ns);
		log_warnx("shutdown: %" PRIu64 " name events were not sent within %.1f s", ns.queued,
			(double)s->conf.drain_timeout / 1000.0);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (s->spool)
		log_warnx("shutdown: %" PRIu64 " batches not acknowledged within %.1f s stay in the spool",
			us.pending_batches, (double)s->conf.drain_timeout / 1000.0);
	else
		log_warnx("shutdown: %" PRIu64 " batches were not acknowledged within %.1f s and are lost",
			us.pending_batches, (double)s->conf.drain_timeout / 1000.0);
	s->exit_code = s->spool ? 0 : 1;
	ev_break(loop, EVBREAK_ALL);
}

static void
sensor_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct sensor *s = w->data;
	if (s->stopping) {
		/* A second signal: stop waiting for ACKs (the spool, if any, keeps the rest). */
		log_warnx("%s again: exiting without waiting for acknowledgements",
			w->signum == SIGINT ? "SIGINT" : "SIGTERM");
		s->exit_code = s->spool ? 0 : 1;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	sensor_begin_stop(s, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void
sensor_on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct sensor *s = w->data;
	struct sensor_conf nc;
	char err[CFG_ERRLEN];
	sensor_defaults(&nc);
	if (!s->config_path) {
		log_info("SIGHUP: no configuration file to reload");
		return;
	}
	if (cfg_load(sensor_schema, &nc, s->config_path, err, sizeof(err)) != 0) {
		log_warnx("SIGHUP: keeping the running configuration: %s", err);
		cfg_free(sensor_schema, &nc);
		return;
	}
	if (capture_set_filter(s->cap, nc.filter ? nc.filter : "", err, sizeof(err)) != 0) {
		log_warnx("SIGHUP: keeping the running filter: %s", err);
	} else {
		log_info("SIGHUP: filter is now '%s'", nc.filter ? nc.filter : "");
		free(s->conf.filter);
		s->conf.filter = nc.filter;
		nc.filter = NULL;
	}
	log_set_level((enum log_level)nc.log_level);
	if (s->names) {
		struct names_config cfg = sensor_names_config(&nc);
		if (names_load(s->names, &cfg, err, sizeof(err)) != 0)
			log_warnx("SIGHUP: keeping the running names: %s", err);
	}
	cfg_free(sensor_schema, &nc);
}

/* One receiver of uplink.receivers: "host:port" or "[v6]:port". */
static int
sensor_parse_target(const char *s, struct uplink_target *t, char *err, size_t errlen)
{
	struct hostport hp;

	memset(t, 0, sizeof(*t));
	if (hostport_parse(s, 0, "uplink.receivers", &hp, err, errlen) != 0)
		return -1;
	snprintf(t->host, sizeof(t->host), "%s", hp.host);
	snprintf(t->port, sizeof(t->port), "%s", hp.port);
	return 0;
}

/* BPF for the uplink's own packets: every address of every receiver on its port. */
static char *
sensor_exclusion(const struct uplink_target *t, size_t n)
{
	size_t cap = 64, len = 0;
	char *s = calloc(1, cap);
	for (size_t i = 0; s && i < n; i++) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *a;
		if (getaddrinfo(t[i].host, t[i].port, &hints, &ai) != 0)
			continue;
		for (a = ai; a; a = a->ai_next) {
			char host[NI_MAXHOST];
			if (getnameinfo(
				    a->ai_addr, a->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST))
				continue;
			char one[NI_MAXHOST + 64];
			int m = snprintf(one, sizeof(one), "%s(host %s and tcp port %s)", len ? " or " : "",
				host, t[i].port);
			if (len + (size_t)m + 1 > cap) {
				cap = (len + (size_t)m + 1) * 2;
				char *ns = realloc(s, cap);
				if (!ns) {
					free(s);
					freeaddrinfo(ai);
					return NULL;
				}
				s = ns;
			}
			memcpy(s + len, one, (size_t)m + 1);
			len += (size_t)m;
		}
		freeaddrinfo(ai);
	}
	return s;
}

static void
sensor_flag(struct sensor *s, const char *path, const char *value, const char *flag)
{
	char err[CFG_ERRLEN], origin[64];
	snprintf(origin, sizeof(origin), "flag %s", flag);
	if (cfg_set(sensor_schema, &s->conf, path, value, origin, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
}

/* Defaults, then the config file, then the command-line flags over it. */
static void
sensor_load_config(struct sensor *s, int argc, char **argv, bool *check)
{
	char err[CFG_ERRLEN];
	enum {
		O_ID = 256,
		O_CA,
		O_CERT,
		O_KEY,
		O_INSECURE,
		O_LOG,
		O_CHECK
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "iface", required_argument, NULL, 'i' },
		{ "filter", required_argument, NULL, 'f' },
		{ "file", required_argument, NULL, 'r' },
		{ "snaplen", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ "id", required_argument, NULL, O_ID },
		{ "ca", required_argument, NULL, O_CA },
		{ "cert", required_argument, NULL, O_CERT },
		{ "key", required_argument, NULL, O_KEY },
		{ "insecure", no_argument, NULL, O_INSECURE },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct {
		const char *path, *value, *flag;
	} flags[32];
	size_t n_flags = 0;

	sensor_defaults(&s->conf);
	s->config_path = getenv("PCAPLINE_CONFIG");
	int ch;
	while ((ch = getopt_long(argc, argv, "c:i:f:r:s:t:Vh", longopts, NULL)) != -1) {
		const char *path = NULL;
		switch (ch) {
		case 'c':
			s->config_path = optarg;
			continue;
		case 'i':
			path = "capture.interfaces";
			break;
		case 'f':
			path = "capture.filter";
			break;
		case 'r':
			path = "capture.file";
			break;
		case 's':
			path = "capture.snaplen";
			break;
		case 't':
			path = "uplink.receivers";
			break;
		case O_ID:
			path = "sensor.id";
			break;
		case O_CA:
			path = "tls.ca";
			break;
		case O_CERT:
			path = "tls.cert";
			break;
		case O_KEY:
			path = "tls.key";
			break;
		case O_INSECURE:
			path = "uplink.insecure";
			optarg = "true";
			break;
		case O_LOG:
			path = "log.level";
			break;
		case O_CHECK:
			*check = true;
			continue;
		case 'V':
			printf("pcapline-sensor %s\n", PCAPLINE_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(EXIT_CONFIG);
		}
		if (n_flags == sizeof(flags) / sizeof(flags[0]))
			fatalx(EXIT_CONFIG, "too many flags");
		flags[n_flags].path = path;
		flags[n_flags].value = optarg;
		flags[n_flags].flag = argv[optind - 1];
		n_flags++;
	}
	if (optind < argc)
		fatalx(EXIT_CONFIG, "unexpected argument '%s' (see --help)", argv[optind]);
	if (cfg_load(sensor_schema, &s->conf, s->config_path, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
	for (size_t i = 0; i < n_flags; i++)
		sensor_flag(s, flags[i].path, flags[i].value, flags[i].flag);
	log_set_level((enum log_level)s->conf.log_level);
}

/* Cross-key checks that the schema cannot express, and the receivers to connect to. */
static void
sensor_check_config(struct sensor *s)
{
	char err[CFG_ERRLEN];

	if (s->conf.receivers.n == 0)
		fatalx(EXIT_CONFIG, "uplink.receivers: at least one receiver (host:port) is required");
	if (s->conf.file && *s->conf.file && s->conf.interfaces.n > 0)
		log_warnx("capture.file is set: replaying %s, capture.interfaces is not used", s->conf.file);
	if ((!s->conf.file || !*s->conf.file) && s->conf.interfaces.n == 0)
		fatalx(EXIT_CONFIG, "capture.interfaces: no interface configured (or set capture.file)");
	/* Checked here too, so that --check-config finds a bad metrics.listen. */
	struct hostport mhp;
	if (s->conf.metrics_listen && *s->conf.metrics_listen &&
		hostport_parse(s->conf.metrics_listen, HOSTPORT_LISTEN, "metrics.listen", &mhp, err,
			sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
	s->targets = calloc(s->conf.receivers.n, sizeof(*s->targets));
	if (!s->targets)
		fatalx(1, "out of memory");
	for (size_t i = 0; i < s->conf.receivers.n; i++) {
		if (sensor_parse_target(s->conf.receivers.v[i], &s->targets[i], err, sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
		snprintf(s->targets[i].server_name, sizeof(s->targets[i].server_name), "%s",
			s->conf.server_name && *s->conf.server_name ? s->conf.server_name
								    : s->targets[i].host);
	}
}

/* The TLS client context, and the sensor id: sensor.id, or else the certificate's CN. */
static void
sensor_init_identity(struct sensor *s)
{
	char err[CFG_ERRLEN];

	if (!s->conf.insecure) {
		struct tls_opts to = { s->conf.ca, s->conf.cert, s->conf.key, NULL,
			s->conf.tls_min == 1 ? 12 : 13 };
		s->ssl_ctx = tls_ctx_client(&to, err, sizeof(err));
		if (!s->ssl_ctx)
			fatalx(EXIT_CONFIG, "%s", err);
	}
	const char *id = s->conf.id;
	char cn[PROTO_MAX_ID + 1];
	if (!id || !*id) {
		int idr = s->conf.insecure ? TLS_ID_NO_CERT : tls_cert_identity(s->conf.cert, cn, sizeof(cn));
		if (idr != 0)
			fatalx(EXIT_CONFIG,
				"sensor.id: not set and no identity in the certificate to take it from: %s",
				s->conf.insecure ? "uplink.insecure has none" : tls_identity_strerror(idr));
		id = cn;
	}
	if (!proto_sensor_id_ok(id, strlen(id)))
		fatalx(EXIT_CONFIG,
			"sensor.id: '%s' must be 1..%d characters of A-Z a-z 0-9 . _ -, not starting with "
			"'.'",
			id, PROTO_MAX_ID);
	snprintf(s->id, sizeof(s->id), "%s", id);
}

/* Opens the interfaces (or the file to replay) and reads the hosts file, while every
 * file is still readable. */
static void
sensor_open_capture(struct sensor *s)
{
	char err[CFG_ERRLEN];

	s->exclude = s->conf.exclude_uplink && !(s->conf.file && *s->conf.file)
		? sensor_exclusion(s->targets, s->conf.receivers.n)
		: NULL;
	struct capture_opts co = {
		.ifaces = (const char *const *)s->conf.interfaces.v,
		.n_ifaces = s->conf.interfaces.n,
		.file = s->conf.file,
		.filter = s->conf.filter ? s->conf.filter : "",
		.exclude = s->exclude ? s->exclude : "",
		.snaplen = (uint32_t)s->conf.snaplen,
		.promisc = s->conf.promisc,
		.buffer_bytes = s->conf.buffer_size,
		.cb = sensor_on_packet,
		.cb_arg = s,
	};
	s->cap = capture_open(&co, err, sizeof(err));
	if (!s->cap)
		fatalx(EXIT_CONFIG, "%s", err);
	if (s->conf.names_enabled) {
		struct names_config nc = sensor_names_config(&s->conf);
		if (names_check(&nc, err, sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
		if (!(s->names = names_new(sensor_names_send, s)))
			fatalx(1, "out of memory");
		if (names_load(s->names, &nc, err, sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
	}
}

static int
sensor_print_config(const struct sensor *s)
{
	cfg_dump(sensor_schema, &s->conf, stdout);
	printf("# sensor id: %s; uplink exclusion: %s\n", s->id,
		s->exclude && *s->exclude ? s->exclude : "(none)");
	printf("configuration OK\n");
	return 0;
}

/* The HELLO to send, and the spool, which may continue an earlier epoch. Returns the
 * first sequence number to assign. */
static uint64_t
sensor_init_session(struct sensor *s)
{
	char err[CFG_ERRLEN];

	snprintf(s->hello.sensor_id, sizeof(s->hello.sensor_id), "%s", s->id);
	snprintf(s->hello.version, sizeof(s->hello.version), "%s", PCAPLINE_VERSION);
	snprintf(s->hello.token, sizeof(s->hello.token), "%s", s->conf.token ? s->conf.token : "");
	s->hello.caps = PROTO_CAP_LZ4 | (s->names ? PROTO_CAP_NAMES : 0);
	/* A new sequence space per start: the start time in ns never repeats (PROTOCOL.md 6.2). */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	s->hello.epoch = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	uint64_t first_seq = 1;
	if (s->conf.spool_dir && *s->conf.spool_dir) {
		s->spool = spool_open(s->conf.spool_dir, s->conf.spool_max, s->hello.epoch, &s->hello.epoch,
			&first_seq, err, sizeof(err));
		if (!s->spool)
			fatalx(EXIT_CONFIG, "%s", err);
	}
	s->hello.n_ifaces = (uint16_t)capture_iface_count(s->cap);
	for (size_t i = 0; i < s->hello.n_ifaces; i++) {
		capture_iface(s->cap, i, &s->hello.ifaces[i]);
		log_info("interface %zu: %s, link type %u, snaplen %u", i, s->hello.ifaces[i].name,
			s->hello.ifaces[i].linktype, s->hello.ifaces[i].snaplen);
	}
	if (s->exclude && *s->exclude)
		log_info("excluding own uplink traffic: %s", s->exclude);
	return first_seq;
}

static void
sensor_drop_privileges(struct sensor *s)
{
	char err[CFG_ERRLEN];

	if (!s->conf.user || !*s->conf.user) {
		/* Started as an ordinary user with CAP_NET_RAW (systemd's AmbientCapabilities=,
		 * a container): the capture is open, so the capability goes too. */
		if (geteuid() != 0 && priv_drop_caps(err, sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
		return;
	}
	/* Capture sockets are open and the spool exists: nothing below needs root. */
	if (s->spool && priv_chown_tree(s->conf.spool_dir, s->conf.user, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "sensor.user: %s", err);
	if (priv_drop(s->conf.user, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "sensor.user: %s", err);
	log_info("running as user %s", s->conf.user);
}

/* metrics.listen: the counters of sensor_collect() and the uplink, in the names the
 * receiver's /metrics uses for what this sensor reports in STATS frames. On the loop. */
static void
sensor_render_metrics(void *arg, struct promtext *b)
{
	struct sensor *s = arg;
	struct proto_stats ps;
	struct capture_stats cs;
	struct uplink_stats us;
	struct promhttp_stats hs;
	static const struct {
		uint16_t id;
		const char *name, *help;
	} fam[] = {
		{ PROTO_ST_CAPTURED, "pcapline_sensor_captured_packets_total",
			"Packets the capture filter accepted." },
		{ PROTO_ST_PKT_BYTES, "pcapline_sensor_captured_bytes_total",
			"Captured packet bytes (caplen)." },
		{ PROTO_ST_BATCHES, "pcapline_sensor_shipped_batches_total", "Batches built and shipped." },
		{ PROTO_ST_BYTES_SENT, "pcapline_sensor_shipped_bytes_total",
			"Batch bytes after lz4 compression." },
		{ PROTO_ST_BYTES_RAW, "pcapline_sensor_shipped_raw_bytes_total",
			"Batch record bytes before compression." },
		{ PROTO_ST_NAMES_EVENTS, "pcapline_sensor_name_events_total",
			"Name-resolution events produced." },
		{ PROTO_ST_NAMES_DROPS, "pcapline_sensor_name_events_dropped_total",
			"Name-resolution events dropped: the queue was full." },
	};
	static const struct {
		uint16_t id;
		const char *reason;
	} loss[] = {
		{ PROTO_ST_KERNEL_DROPS, "kernel" },
		{ PROTO_ST_IF_DROPS, "interface" },
		{ PROTO_ST_QUEUE_DROPS, "sensor_queue" },
		{ PROTO_ST_SPOOL_DROPS, "spool" },
	};

	sensor_collect(s, &ps, &cs, &us);
	promhttp_stats(s->metrics, &hs);
	promtext_family(b, "pcapline_build_info", "gauge", "The sensor's version; always 1.");
	promtext_sample(b, "pcapline_build_info", 1, "version", PCAPLINE_VERSION, "sensor", s->id, NULL);
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		promtext_family(b, fam[f].name, "counter", fam[f].help);
		for (int i = 0; i < ps.n; i++)
			if (ps.s[i].id == fam[f].id)
				promtext_sample(b, fam[f].name, ps.s[i].value, "sensor", s->id, NULL);
	}
	promtext_family(b, "pcapline_lost_packets_total", "counter",
		"Packets lost, by reason: kernel, interface (capture drops), sensor_queue (send window "
		"full), spool (spool full).");
	for (size_t r = 0; r < sizeof(loss) / sizeof(loss[0]); r++)
		for (int i = 0; i < ps.n; i++)
			if (ps.s[i].id == loss[r].id)
				promtext_sample(b, "pcapline_lost_packets_total", ps.s[i].value, "sensor",
					s->id, "reason", loss[r].reason, NULL);
	promtext_family(b, "pcapline_sensor_uplink_connected", "gauge", "1 while a receiver session is up.");
	promtext_sample(b, "pcapline_sensor_uplink_connected", us.connected ? 1 : 0, "sensor", s->id, NULL);
	promtext_family(
		b, "pcapline_sensor_acked_batches_total", "counter", "Batches the receiver acknowledged.");
	promtext_sample(b, "pcapline_sensor_acked_batches_total", us.batches_acked, "sensor", s->id, NULL);
	promtext_family(b, "pcapline_sensor_acked_packets_total", "counter",
		"Packets in the batches the receiver acknowledged (stored).");
	promtext_sample(b, "pcapline_sensor_acked_packets_total", us.packets_acked, "sensor", s->id, NULL);
	promtext_family(b, "pcapline_sensor_resent_batches_total", "counter",
		"Batches sent again after a reconnect.");
	promtext_sample(b, "pcapline_sensor_resent_batches_total", us.resent, "sensor", s->id, NULL);
	promtext_family(b, "pcapline_sensor_pending_batches", "gauge",
		"Batches sent or queued, not acknowledged yet.");
	promtext_sample(b, "pcapline_sensor_pending_batches", us.pending_batches, "sensor", s->id, NULL);
	promtext_family(b, "pcapline_sensor_spool_batches", "gauge", "Batches held in the disk spool.");
	promtext_sample(b, "pcapline_sensor_spool_batches", s->spool ? spool_count(s->spool) : 0, "sensor",
		s->id, NULL);
	promtext_family(b, "pcapline_sensor_metrics_requests_total", "counter",
		"Requests to this endpoint: served, refused (too many at once), dropped (too large, too "
		"slow or broken).");
	promtext_sample(b, "pcapline_sensor_metrics_requests_total", hs.served, "result", "served", NULL);
	promtext_sample(b, "pcapline_sensor_metrics_requests_total", hs.refused, "result", "refused", NULL);
	promtext_sample(b, "pcapline_sensor_metrics_requests_total", hs.dropped, "result", "dropped", NULL);
}

/* metrics.listen: bound now, while the sensor may still be root; served from the loop. */
static void
sensor_open_metrics(struct sensor *s)
{
	char err[CFG_ERRLEN];

	if (!s->conf.metrics_listen || !*s->conf.metrics_listen)
		return;
	s->metrics = promhttp_new(s->conf.metrics_listen, sensor_render_metrics, s, err, sizeof(err));
	if (!s->metrics)
		fatalx(EXIT_CONFIG, "%s", err);
	if (!promhttp_is_loopback(s->metrics))
		log_warnx(
			"metrics.listen: %s is not a loopback address: the counters are served to anyone who "
			"can reach it (plain HTTP, no token)",
			s->conf.metrics_listen);
	log_info("metrics on http://%s/metrics", s->conf.metrics_listen);
}

/* The event loop, the batcher and the uplink. */
static void
sensor_start_pipeline(struct sensor *s, uint64_t first_seq)
{
	s->loop = ev_default_loop(EVFLAG_AUTO);
	s->batcher = batcher_new((uint32_t)s->conf.batch_bytes, first_seq, sensor_on_sealed, s);
	struct uplink_opts uo = {
		.targets = s->targets,
		.n_targets = s->conf.receivers.n,
		.ssl_ctx = s->ssl_ctx,
		.hello = &s->hello,
		/* A replay only pauses when the window is full, so it needs no more in flight
		 * than keeps the link busy; live capture needs the whole window to ride out
		 * receiver stalls. */
		.window_bytes = capture_is_file(s->cap) && s->conf.window > SENSOR_REPLAY_WINDOW
			? SENSOR_REPLAY_WINDOW
			: s->conf.window,
		/* A batch closes after the record that crosses max_bytes; sent raw if lz4 does not help. */
		.max_batch_frame = PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + s->conf.batch_bytes +
			PROTO_REC_HDR_LEN + PROTO_MAX_SNAPLEN,
		.on_room = sensor_on_room,
		.on_session = sensor_on_session,
		.next_seq = sensor_next_seq,
		.on_epoch_reused = sensor_on_epoch_reused,
		.on_refused = sensor_on_refused,
		.arg = s,
	};
	s->uplink = uplink_new(s->loop, &uo);
	if (!s->batcher || !s->uplink)
		fatalx(1, "out of memory");
	if (s->conf.insecure)
		log_warnx("uplink.insecure is set: packets travel UNENCRYPTED and the receiver is NOT "
			  "authenticated");
}

/* Batch and stats timers, and the signals that stop (INT, TERM) or reload (HUP). */
static void
sensor_init_timers(struct sensor *s)
{
	double tick = (double)s->conf.batch_delay / 4000.0;
	ev_timer_init(&s->batch_timer, sensor_on_batch_timer, tick < 0.005 ? 0.005 : tick,
		tick < 0.005 ? 0.005 : tick);
	s->batch_timer.data = s;
	ev_timer_start(s->loop, &s->batch_timer);
	double si = (double)s->conf.stats_interval / 1000.0;
	ev_timer_init(&s->stats_timer, sensor_on_stats, si, si);
	s->stats_timer.data = s;
	ev_timer_start(s->loop, &s->stats_timer);
	ev_timer_init(&s->drain_timer, sensor_on_drain_timeout, 1., 0.);
	s->drain_timer.data = s;
	ev_signal_init(&s->sigint, sensor_on_signal, SIGINT);
	ev_signal_init(&s->sigterm, sensor_on_signal, SIGTERM);
	ev_signal_init(&s->sighup, sensor_on_hup, SIGHUP);
	s->sigint.data = s->sigterm.data = s->sighup.data = s;
	ev_signal_start(s->loop, &s->sigint);
	ev_signal_start(s->loop, &s->sigterm);
	ev_signal_start(s->loop, &s->sighup);
	signal(SIGPIPE, SIG_IGN);
}

/* The systemd notify socket and watchdog, read from the environment (no thread runs
 * yet). A malformed one is reported and ignored: the sensor captures all the same. */
static void
sensor_init_notify(void)
{
	char err[CFG_ERRLEN];

	if (sdn_init(err, sizeof(err)) != 0)
		log_warnx("%s: systemd notification is off", err);
}

/* Runs until capture ends or a signal stops it, then spools what is still unsent. */
static void
sensor_run(struct sensor *s)
{
	log_info("sensor %s starting: %zu interface(s), %zu receiver(s), filter '%s'", s->id,
		(size_t)s->hello.n_ifaces, s->conf.receivers.n, s->conf.filter ? s->conf.filter : "");
	sensor_refill(s);
	if (s->names)
		names_start(s->names, s->loop);
	uplink_start(s->uplink);
	if (s->metrics)
		promhttp_start(s->metrics, s->loop);
	capture_start(s->cap, s->loop);
	/* Capturing now: READY=1, then STATUS= at most every 5 s (or log.stats_interval). */
	double status_s = (double)s->conf.stats_interval / 1000.0;
	sdn_loop_ready(&s->notify, s->loop, status_s < 5. ? status_s : 5., sensor_status, s);
	ev_run(s->loop, 0);
	sdn_loop_stopping(&s->notify, s->exit_code ? "error" : "exiting");
	sdn_loop_stop(&s->notify);
	sensor_spool_rest(s);
}

static void
sensor_shutdown(struct sensor *s)
{
	char err[CFG_ERRLEN];

	if (capture_file_error(s->cap, err, sizeof(err)) != 0)
		log_warnx("%s (every complete record before it was sent)", err);
	sensor_log_stats(s, "final");
	promhttp_free(s->metrics);
	uplink_free(s->uplink);
	names_free(s->names);
	batcher_free(s->batcher);
	capture_close(s->cap);
	spool_close(s->spool);
	if (s->ssl_ctx)
		SSL_CTX_free(s->ssl_ctx);
	free(s->targets);
	free(s->exclude);
	cfg_free(sensor_schema, &s->conf);
}

int
main(int argc, char **argv)
{
	static struct sensor s;
	bool check = false;

	log_init("pcapline-sensor", LOG_LVL_INFO);
	/* Batches of about a MiB come and go all the time: keep them on the heap for
	 * reuse instead of a fresh, page-faulting mmap per batch. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	sensor_init_notify();
	sensor_load_config(&s, argc, argv, &check);
	sensor_check_config(&s);
	sensor_init_identity(&s);
	sensor_open_capture(&s);
	if (check)
		return sensor_print_config(&s);
	uint64_t first_seq = sensor_init_session(&s);
	sensor_open_metrics(&s);
	sensor_drop_privileges(&s);
	sensor_start_pipeline(&s, first_seq);
	sensor_init_timers(&s);
	sensor_run(&s);
	sensor_shutdown(&s);
	return s.exit_code;
}
