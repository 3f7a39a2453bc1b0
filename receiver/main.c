/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline-receiver: accepts sensors over mutually authenticated TLS and stores
 * their packets in per-sensor segment files.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>

#include <ev.h>

#include "receiver/api/api.h"
#include "receiver/api/metrics.h"
#include "receiver/outputs/live.h"
#include "receiver/outputs/outstats.h"
#include "receiver/outputs/pcapoip.h"
#include "receiver/outputs/rotate.h"
#include "shared/config.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "receiver/repo/names.h"
#include "shared/privdrop.h"
#include "shared/sdnotify.h"
#include "receiver/ingest/session.h"
#include "receiver/dissect/dissect.h"
#include "receiver/store/store.h"
#include "shared/tls.h"
#include "proto/wire.h"

struct receiver_conf {
	struct cfg_strlist listen;
	char *user;
	char *ca, *cert, *key, *crl;
	int tls_min;
	bool insecure;
	char *token;
	char *dir;
	uint64_t segment_size;
	uint64_t segment_time;
	int fsync;
	uint64_t fsync_interval;
	uint64_t max_size, max_age, sensor_max_size, sensor_max_age;
	uint64_t names_max_size;
	char *out;
	uint64_t max_frame;
	int64_t max_sessions;
	int64_t unauth_max, unauth_per_source;
	uint64_t handshake_timeout;
	int64_t max_sensors;
	uint64_t sensor_rate;
	uint64_t ingest_buffer;
	uint64_t heartbeat;
	int log_level;
	uint64_t stats_interval;
	char *api_listen, *api_token, *api_cert, *api_key;
	int64_t api_max_conns, api_max_conns_per_source;
	uint64_t api_header_timeout, api_idle_timeout;
	uint64_t live_queue_size, live_stall_timeout;
	int64_t live_max_consumers;
	char *pcapoip_listen;
	char *files_dir, *files_filter;
	struct cfg_strlist files_sensors;
	uint64_t files_rotate_size, files_rotate_time, files_max_size;
	int64_t files_max_files;
	bool files_fsync;
	bool l4_enabled;
	int64_t l4_max_conns;
	uint64_t l4_max_buffer;
	uint64_t l4_tcp_timeout, l4_short_timeout, l4_closed_timeout;
	uint64_t l4_defer_max;
};

static const char *const tls_versions[] = { "1.3", "1.2", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const fsync_modes[] = { "batch", "interval", "never", NULL };

#define K(path, type, field, ...)                                              \
	{                                                                      \
		path, type, offsetof(struct receiver_conf, field), __VA_ARGS__ \
	}
static const struct cfg_key receiver_schema[] = {
	K("listen", CFG_STRLIST, listen, 0, 0, NULL, "addresses to accept sensors on, host:port"),
	K("user", CFG_STR, user, 0, 0, NULL,
		"after binding, run as this user (storage.dir is given to it); \"\" = stay"),
	K("tls.ca", CFG_STR, ca, 0, 0, NULL, "CA that signed the sensors' certificates"),
	K("tls.cert", CFG_STR, cert, 0, 0, NULL, "this receiver's certificate"),
	K("tls.key", CFG_STR, key, 0, 0, NULL, "this receiver's private key"),
	K("tls.crl", CFG_STR, crl, 0, 0, NULL, "certificate revocation list (PEM), optional"),
	K("tls.min_version", CFG_ENUM, tls_min, 0, 0, tls_versions, "lowest TLS version accepted"),
	K("auth.insecure", CFG_BOOL, insecure, 0, 0, NULL, "plain TCP, identity from HELLO (testing only)"),
	K("auth.token", CFG_STR, token, 0, 0, NULL, "bearer token sensors must present, optional"),
	K("storage.dir", CFG_STR, dir, 0, 0, NULL, "repository root (segments under sensors/<id>/segments)"),
	K("storage.segment_size", CFG_SIZE, segment_size, 1 << 16, 1ll << 40, NULL,
		"rotate a segment at this size"),
	K("storage.segment_time", CFG_DURATION, segment_time, 1000, 86400000, NULL,
		"rotate a segment at this age"),
	K("storage.fsync", CFG_ENUM, fsync, 0, 0, fsync_modes,
		"batch: fdatasync before each ACK; interval: sync every storage.fsync_interval, ACK then; "
		"never: ACK once written"),
	K("storage.fsync_interval", CFG_DURATION, fsync_interval, 10, 60000, NULL,
		"sync period of the interval policy"),
	K("storage.max_size", CFG_SIZE, max_size, 0, 1ll << 60, NULL,
		"delete the oldest segments when all sensors' closed segments exceed this, 0 = unlimited"),
	K("storage.max_age", CFG_DURATION, max_age, 0, 315360000000ll, NULL,
		"delete segments whose newest packet is older than this, 0 = unlimited"),
	K("storage.sensor_max_size", CFG_SIZE, sensor_max_size, 0, 1ll << 60, NULL,
		"the same size bound for each sensor's closed segments, 0 = unlimited"),
	K("storage.sensor_max_age", CFG_DURATION, sensor_max_age, 0, 315360000000ll, NULL,
		"the same age bound for each sensor, 0 = unlimited"),
	K("storage.names_max_size", CFG_SIZE, names_max_size, 65536, 1ll << 40, NULL,
		"largest names.jsonl of a sensor; beyond it the oldest history goes, the names in effect "
		"stay"),
	K("output.file", CFG_STR, out, 0, 0, NULL,
		"also write every packet to this one pcap file (- for stdout)"),
	K("limits.max_frame", CFG_SIZE, max_frame, 262180, 16777216, NULL,
		"largest frame accepted; a decompressed batch may be 16 bytes less"),
	K("limits.max_sessions", CFG_INT, max_sessions, 1, 1000000, NULL, "connections open at once"),
	K("limits.unauth_max", CFG_INT, unauth_max, 1, 1000000, NULL,
		"connections not yet authenticated (TLS and HELLO), at most max_sessions; beyond, the oldest "
		"is shed"),
	K("limits.unauth_per_source", CFG_INT, unauth_per_source, 1, 1000000, NULL,
		"the same from one IPv4 address or IPv6 /64; beyond, its oldest is shed"),
	K("limits.handshake_timeout", CFG_DURATION, handshake_timeout, 1000, 600000, NULL,
		"TLS handshake and HELLO must be done within this"),
	K("limits.max_sensors", CFG_INT, max_sensors, 1, 1000000, NULL,
		"distinct sensors served (their folders count)"),
	K("limits.sensor_rate", CFG_SIZE, sensor_rate, 0, 1ll << 40, NULL,
		"bytes per second stored per sensor, 0 = unlimited; beyond it the receiver reads slower"),
	K("limits.ingest_buffer", CFG_SIZE, ingest_buffer, 1ll << 20, 1ll << 40, NULL,
		"bytes all sessions may hold read but not yet stored; beyond it sessions with a batch group "
		"being stored read no more than their share"),
	K("session.heartbeat", CFG_DURATION, heartbeat, 100, 600000, NULL,
		"heartbeat interval; silent peers are dropped after three"),
	K("log.level", CFG_ENUM, log_level, 0, 0, log_levels, "error, warn, info or debug"),
	K("log.stats_interval", CFG_DURATION, stats_interval, 1000, 86400000, NULL,
		"how often per-sensor counters are logged"),
	K("api.listen", CFG_STR, api_listen, 0, 0, NULL,
		"HTTP API (exports) on host:port; \"\" = no API; off loopback api.token, api.cert and "
		"api.key are required"),
	K("api.token", CFG_STR, api_token, 0, 0, NULL,
		"bearer token API clients must present, optional on loopback"),
	K("api.cert", CFG_STR, api_cert, 0, 0, NULL,
		"PEM certificate: serve the API over HTTPS (with api.key)"),
	K("api.key", CFG_STR, api_key, 0, 0, NULL, "PEM private key of api.cert"),
	K("api.max_connections", CFG_INT, api_max_conns, 1, 10000, NULL,
		"HTTP connections at once; beyond, the oldest one whose request is not complete yet is shed"),
	K("api.max_connections_per_source", CFG_INT, api_max_conns_per_source, 1, 10000, NULL,
		"the same from one IPv4 address or IPv6 /64"),
	K("api.header_timeout", CFG_DURATION, api_header_timeout, 1000, 600000, NULL,
		"a request's headers must be complete within this after the connection or the previous "
		"request"),
	K("api.idle_timeout", CFG_DURATION, api_idle_timeout, 1000, 86400000, NULL,
		"a connection that moves no byte for this long is closed (a slow download that moves is "
		"never cut)"),
	K("outputs.live.queue_size", CFG_SIZE, live_queue_size, LIVE_QUEUE_MIN, 1ll << 30, NULL,
		"bytes of live stream waiting for each live consumer; beyond, its packets are dropped "
		"and counted"),
	K("outputs.live.stall_timeout", CFG_DURATION, live_stall_timeout, 1000, 3600000, NULL,
		"a live consumer that reads nothing of its waiting bytes this long is cut off"),
	K("outputs.live.max_consumers", CFG_INT, live_max_consumers, 1, 1024, NULL,
		"live consumers at once (API clients and PCAP-over-IP clients together)"),
	K("outputs.pcap_over_ip.listen", CFG_STR, pcapoip_listen, 0, 0, NULL,
		"PCAP-over-IP listener, loopback host:port (e.g. 127.0.0.1:57012); \"\" = off"),
	K("outputs.files.dir", CFG_STR, files_dir, 0, 0, NULL,
		"directory of rotated pcap files for Suricata/Zeek (renamed into place when complete); "
		"\"\" = off"),
	K("outputs.files.sensors", CFG_STRLIST, files_sensors, 0, 0, NULL,
		"sensors whose packets go into the files; empty = all"),
	K("outputs.files.filter", CFG_STR, files_filter, 0, 0, NULL, "BPF filter of the files; \"\" = all"),
	K("outputs.files.rotate_size", CFG_SIZE, files_rotate_size, 0, 1ll << 40, NULL,
		"start a new file before this size; 0 = no size bound"),
	K("outputs.files.rotate_time", CFG_DURATION, files_rotate_time, 0, 86400000, NULL,
		"start a new file after this age; 0 = no time bound"),
	K("outputs.files.max_files", CFG_INT, files_max_files, 0, 100000000, NULL,
		"keep at most this many files, the oldest deleted first; 0 = unlimited"),
	K("outputs.files.max_size", CFG_SIZE, files_max_size, 0, 1ll << 60, NULL,
		"keep at most this many bytes of files, the oldest deleted first; 0 = unlimited"),
	K("outputs.files.fsync", CFG_BOOL, files_fsync, 0, 0, NULL,
		"fsync each file before its rename and the directory after"),
	K("l4.enabled", CFG_BOOL, l4_enabled, 0, 0, NULL,
		"dissect stored segments into connections and flows (index.db); off: raw storage only"),
	K("l4.max_conns", CFG_INT, l4_max_conns, 1000, 100000000, NULL,
		"connections tracked at once (<= 512 bytes each); beyond, the least recently active is "
		"evicted"),
	K("l4.max_buffer", CFG_SIZE, l4_max_buffer, 1 << 20, 1ll << 40, NULL,
		"out-of-order TCP bytes buffered in all connections"),
	K("l4.tcp_timeout", CFG_DURATION, l4_tcp_timeout, 1000, 86400000, NULL,
		"an established TCP connection ends after this idle time (capture time)"),
	K("l4.short_timeout", CFG_DURATION, l4_short_timeout, 1000, 86400000, NULL,
		"the same for half-open TCP and UDP"),
	K("l4.closed_timeout", CFG_DURATION, l4_closed_timeout, 1000, 86400000, NULL,
		"the same after FINs both ways or an RST"),
	K("l4.defer_max", CFG_DURATION, l4_defer_max, 0, 3600000, NULL,
		"while the CPUs are saturated, dissection waits up to this long in a row before it "
		"works its backlog off anyway; 0 = never wait"),
	{ NULL },
};
#undef K

static struct {
	struct receiver_conf conf;
	struct ev_loop *loop;
	struct store *store;
	struct server *srv;
	struct api *api;
	struct pcapoip *pcapoip;
	struct rotate *files;
	struct dissect_worker *dissect;
	SSL_CTX *ssl_ctx;
	struct names_store *names;
	ev_signal sigint, sigterm;
	ev_timer stats;
	struct sdn_loop notify; /* systemd: READY=1, WATCHDOG=1, STATUS=, STOPPING=1 */
	/* Totals over all sensors for STATUS=, summed on the store worker (which owns the
	 * counters) and read on the loop. */
	_Atomic uint64_t stored_packets, stored_bytes, stored_sensors;
	ev_timer ready; /* fires once the loop runs: /readyz says ready from then on */
} R;

static void
receiver_defaults(struct receiver_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->listen.v = calloc(2, sizeof(char *));
	if (c->listen.v) {
		c->listen.v[0] = strdup("0.0.0.0:47800");
		c->listen.n = c->listen.v[0] ? 1 : 0;
	}
	c->dir = strdup("/var/lib/pcapline");
	c->segment_size = 64u << 20;
	c->segment_time = 300000;
	c->fsync_interval = 1000;
	c->max_frame = 16u << 20;
	c->ingest_buffer = 64u << 20;
	c->names_max_size = 64u << 20;
	c->max_sessions = 1024;
	c->unauth_max = 256;
	c->unauth_per_source = 64;
	c->handshake_timeout = 10000;
	c->max_sensors = 10000;
	c->heartbeat = 5000;
	c->log_level = LOG_LVL_INFO;
	c->stats_interval = 30000;
	c->api_listen = strdup("127.0.0.1:47801");
	c->api_max_conns = API_MAX_CONNECTIONS;
	c->api_max_conns_per_source = 32;
	c->api_header_timeout = 10000;
	c->api_idle_timeout = 60000;
	c->live_queue_size = LIVE_QUEUE_DEFAULT;
	c->live_stall_timeout = LIVE_STALL_DEFAULT_MS;
	c->live_max_consumers = LIVE_MAX_CONSUMERS;
	c->pcapoip_listen = strdup("");
	c->files_dir = strdup("");
	c->files_filter = strdup("");
	c->files_rotate_size = 64u << 20;
	c->files_rotate_time = 60000;
	c->l4_enabled = true;
	c->l4_max_conns = L4_DEFAULT_MAX_CONNS;
	c->l4_max_buffer = L4_DEFAULT_MAX_BUF;
	c->l4_tcp_timeout = L4_DEFAULT_TIMEOUT_TCP_NS / 1000000;
	c->l4_short_timeout = L4_DEFAULT_TIMEOUT_SHORT_NS / 1000000;
	c->l4_closed_timeout = L4_DEFAULT_TIMEOUT_CLOSED_NS / 1000000;
	c->l4_defer_max = 10000;
}

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: pcapline-receiver [-c FILE] [options]\n"
		"  -c, --config FILE      YAML configuration (see config/receiver.yaml)\n"
		"  -l, --listen ADDR      listen (host:port, comma-separated)\n"
		"  -d, --dir DIR          storage.dir: repository root\n"
		"  -o, --out FILE         output.file: also write one pcap (- for stdout)\n"
		"      --ca FILE          tls.ca\n"
		"      --cert FILE        tls.cert\n"
		"      --key FILE         tls.key\n"
		"      --crl FILE         tls.crl\n"
		"      --insecure         auth.insecure: plain TCP, no TLS\n"
		"      --log-level LEVEL  log.level\n"
		"      --check-config     validate the configuration, print it, and exit\n"
		"      --names-at SENSOR ADDR TIME\n"
		"                         print the name ADDR (IP, IP:PORT, [IPv6]:PORT) had for SENSOR at\n"
		"                         TIME (ns since the epoch, or seconds with a '.') in storage.dir's\n"
		"                         names.jsonl, and exit (1: no name then)\n"
		"  -V, --version          print the version\n"
		"Every setting can also come from PCAPLINE_<KEY> (e.g. PCAPLINE_STORAGE_DIR).\n");
}

static void
receiver_log_sensor(void *arg, struct store_sensor *ss)
{
	const struct store_counters *c = store_sensor_counters(ss);
	store_sensor_write_stats(ss, store_sensor_connected(ss));
	log_info("sensor %s: stored %" PRIu64 " packets / %" PRIu64 " bytes in %" PRIu64 " batches, %" PRIu64
		 " segments closed; retention deleted %" PRIu64 " segments / %" PRIu64 " packets / %" PRIu64
		 " bytes; duplicates %" PRIu64 ", rejected batches %" PRIu64 ", missing batches %" PRIu64
		 ", storage errors %" PRIu64 ", unstorable records %" PRIu64 " (%s %" PRIu64
		 "); sensor reports captured %" PRIu64 ", kernel drops %" PRIu64 ", interface drops %" PRIu64
		 ", queue drops %" PRIu64 ", spool drops %" PRIu64,
		store_sensor_id(ss), c->packets, c->bytes, c->batches, c->segments_closed,
		c->retention_segments, c->retention_packets, c->retention_bytes, c->duplicates,
		c->rejected_batches, c->missing_batches, c->storage_errors,
		c->unstorable[STORE_UNSTORABLE_TS], store_unstorable_name(STORE_UNSTORABLE_TS, false),
		c->unstorable[STORE_UNSTORABLE_TS], c->s_captured, c->s_kernel_drops, c->s_if_drops,
		c->s_queue_drops, c->s_spool_drops);
}

/* On the store worker (stats.json files are written there, off the loop). */
static void
receiver_log_all(void *arg)
{
	store_foreach(R.store, receiver_log_sensor, NULL);
	store_write_stats(R.store);
}

static void
receiver_on_stats(struct ev_loop *loop, ev_timer *w, int revents)
{
	server_store_call(R.srv, receiver_log_all, NULL);
}

/* TIME for --names-at: nanoseconds since the Unix epoch ("1700000000123456789"), or
 * seconds with a fractional part ("1700000000.5", "1700000000."). */
static int
receiver_parse_time(const char *s, uint64_t *ns)
{
	uint64_t sec = 0, frac = 0, scale = 1000000000ull;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (sec > (UINT64_MAX - 9) / 10)
			return -1;
		sec = sec * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '\0') {
		*ns = sec;
		return 0;
	}
	if (*p++ != '.')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (scale > 1) {
			scale /= 10;
			frac += (uint64_t)(*p - '0') * scale;
		}
	}
	if (*p || sec > UINT64_MAX / 1000000000ull - 1)
		return -1;
	*ns = sec * 1000000000ull + frac;
	return 0;
}

/* --names-at: one lookup in the repository, no daemon. */
static int
receiver_names_at(const char *dir, const char *sensor, const char *addr, const char *when)
{
	char name[PROTO_MAX_NAME + 1], ns[PROTO_MAX_NS + 1];
	uint64_t t;
	int rc;

	if (receiver_parse_time(when, &t) != 0)
		fatalx(EXIT_CONFIG, "--names-at: '%s' is not a time (nanoseconds, or seconds with a '.')",
			when);
	rc = names_at(dir, sensor, addr, t, name, sizeof(name), ns, sizeof(ns));
	if (rc == -EINVAL)
		fatalx(EXIT_CONFIG, "--names-at: '%s' is not a sensor id or '%s' not an address", sensor,
			addr);
	if (rc < 0) {
		log_warnx("--names-at: %s/sensors/%s/names.jsonl: %s", dir, sensor, strerror(-rc));
		return 1;
	}
	if (rc == 0) {
		log_info("--names-at: %s had no name at %s", addr, when);
		return 1;
	}
	/* An imported name may hold anything; a terminal must not act on it. */
	char shown[4 * sizeof(name)];
	log_escape(shown, sizeof(shown), name, strlen(name));
	printf("%s\n", shown);
	return 0;
}

static void
receiver_sum_sensor(void *arg, struct store_sensor *ss)
{
	uint64_t *sum = arg;
	const struct store_counters *c = store_sensor_counters(ss);
	sum[0] += c->packets;
	sum[1] += c->bytes;
	sum[2]++;
}

/* On the store worker: the totals the next STATUS= shows. */
static void
receiver_sum_stored(void *arg)
{
	uint64_t sum[3] = { 0, 0, 0 };
	store_foreach(R.store, receiver_sum_sensor, sum);
	atomic_store(&R.stored_packets, sum[0]);
	atomic_store(&R.stored_bytes, sum[1]);
	atomic_store(&R.stored_sensors, sum[2]);
}

/* STATUS= for systemctl status; the stored totals lag by one refresh. */
static void
receiver_status(void *arg, char *buf, size_t len)
{
	snprintf(buf, len,
		"%u sessions; stored %" PRIu64 " packets (%" PRIu64 " bytes) from %" PRIu64 " sensors",
		server_session_count(R.srv), atomic_load(&R.stored_packets), atomic_load(&R.stored_bytes),
		atomic_load(&R.stored_sensors));
	server_store_call(R.srv, receiver_sum_stored, NULL);
}

static void
receiver_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	sdn_loop_stopping(&R.notify, w->signum == SIGINT ? "SIGINT" : "SIGTERM");
	log_info("%s: closing sessions and segments", w->signum == SIGINT ? "SIGINT" : "SIGTERM");
	if (R.api)
		api_set_ready(R.api, false, "shutting down");
	server_shutdown(R.srv);
	ev_break(loop, EVBREAK_ALL);
}

/* The systemd notify socket and watchdog, read from the environment before any
 * thread starts. A malformed one is reported and ignored. */
static void
receiver_init_notify(void)
{
	char err[CFG_ERRLEN];

	if (sdn_init(err, sizeof(err)) != 0)
		log_warnx("%s: systemd notification is off", err);
}

/* Defaults, then the config file, then the command-line flags over it. --names-at
 * SENSOR leaves the sensor id in *names_at_sensor (a query, not a daemon). */
static void
receiver_load_config(int argc, char **argv, bool *check, const char **names_at_sensor)
{
	char err[CFG_ERRLEN];
	const char *config_path = getenv("PCAPLINE_CONFIG");
	enum {
		O_CA = 256,
		O_CERT,
		O_KEY,
		O_CRL,
		O_INSECURE,
		O_LOG,
		O_CHECK,
		O_NAMES_AT
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "dir", required_argument, NULL, 'd' },
		{ "out", required_argument, NULL, 'o' },
		{ "ca", required_argument, NULL, O_CA },
		{ "cert", required_argument, NULL, O_CERT },
		{ "key", required_argument, NULL, O_KEY },
		{ "crl", required_argument, NULL, O_CRL },
		{ "insecure", no_argument, NULL, O_INSECURE },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "version", no_argument, NULL, 'V' },
		{ "names-at", required_argument, NULL, O_NAMES_AT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct {
		const char *path, *value, *flag;
	} flags[32];
	size_t n_flags = 0;

	receiver_defaults(&R.conf);
	int ch;
	while ((ch = getopt_long(argc, argv, "c:l:d:o:Vh", longopts, NULL)) != -1) {
		const char *path = NULL;
		switch (ch) {
		case 'c':
			config_path = optarg;
			continue;
		case 'l':
			path = "listen";
			break;
		case 'd':
			path = "storage.dir";
			break;
		case 'o':
			path = "output.file";
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
		case O_CRL:
			path = "tls.crl";
			break;
		case O_INSECURE:
			path = "auth.insecure";
			optarg = "true";
			break;
		case O_LOG:
			path = "log.level";
			break;
		case O_CHECK:
			*check = true;
			continue;
		case O_NAMES_AT:
			*names_at_sensor = optarg;
			continue;
		case 'V':
			printf("pcapline-receiver %s\n", PCAPLINE_VERSION);
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
	if (*names_at_sensor && argc - optind != 2)
		fatalx(EXIT_CONFIG,
			"--names-at SENSOR ADDR TIME: expected ADDR and TIME after the sensor id");
	if (!*names_at_sensor && optind < argc)
		fatalx(EXIT_CONFIG, "unexpected argument '%s' (see --help)", argv[optind]);
	if (cfg_load(receiver_schema, &R.conf, config_path, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
	for (size_t i = 0; i < n_flags; i++) {
		char origin[64];
		snprintf(origin, sizeof(origin), "flag %s", flags[i].flag);
		if (cfg_set(receiver_schema, &R.conf, flags[i].path, flags[i].value, origin, err,
			    sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
	}
	log_set_level((enum log_level)R.conf.log_level);
}

/* Cross-key checks that the schema cannot express, and the TLS server context. */
static void
receiver_check_config(void)
{
	char err[CFG_ERRLEN];

	if (R.conf.listen.n == 0)
		fatalx(EXIT_CONFIG, "listen: at least one address is required");
	if ((!R.conf.dir || !*R.conf.dir) && (!R.conf.out || !*R.conf.out))
		fatalx(EXIT_CONFIG, "storage.dir and output.file are both empty: packets would go nowhere");
	if (!R.conf.insecure) {
		struct tls_opts to = { R.conf.ca, R.conf.cert, R.conf.key, R.conf.crl,
			R.conf.tls_min == 1 ? 12 : 13 };
		R.ssl_ctx = tls_ctx_server(&to, err, sizeof(err));
		if (!R.ssl_ctx)
			fatalx(EXIT_CONFIG, "%s", err);
	}
	/* A bad port or host is reported as such, not as "not a loopback address". */
	if (R.conf.api_listen && *R.conf.api_listen &&
		api_listen_check(R.conf.api_listen, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
	if (R.conf.dir && strlen(R.conf.dir) > STORE_DIR_MAX)
		fatalx(EXIT_CONFIG, "storage.dir: %zu characters, above the limit of %d: %.80s...",
			strlen(R.conf.dir), STORE_DIR_MAX, R.conf.dir);
	if (R.conf.api_listen && *R.conf.api_listen && !api_listen_is_loopback(R.conf.api_listen) &&
		(!R.conf.api_token || !*R.conf.api_token || !R.conf.api_cert || !*R.conf.api_cert ||
			!R.conf.api_key || !*R.conf.api_key))
		fatalx(EXIT_CONFIG,
			"api.listen: %s is not a loopback address: api.token, api.cert and api.key are "
			"required",
			R.conf.api_listen);
}

static int
receiver_print_config(void)
{
	cfg_dump(receiver_schema, &R.conf, stdout);
	printf("configuration OK\n");
	return 0;
}

static struct store_opts
receiver_store_opts(void)
{
	struct store_opts so = {
		.dir = R.conf.dir ? R.conf.dir : "",
		.single_file = R.conf.out ? R.conf.out : "",
		.segment_bytes = R.conf.segment_size,
		.segment_ms = R.conf.segment_time,
		.fsync = (enum store_fsync)R.conf.fsync,
		.max_bytes = R.conf.max_size,
		.max_age_ms = R.conf.max_age,
		.sensor_max_bytes = R.conf.sensor_max_size,
		.sensor_max_age_ms = R.conf.sensor_max_age,
	};
	return so;
}

/* The event loop, the sensor listeners and the API's socket: everything that binds,
 * while we may still be root. */
static void
receiver_open_listeners(const struct store_opts *so)
{
	char err[CFG_ERRLEN];

	R.loop = ev_default_loop(EVFLAG_AUTO);
	/* INT and TERM are caught from here on: one that comes during the start-up work
	 * (index reconcile, recovery) is handled once the loop runs, a clean stop. */
	ev_signal_init(&R.sigint, receiver_on_signal, SIGINT);
	ev_signal_init(&R.sigterm, receiver_on_signal, SIGTERM);
	ev_signal_start(R.loop, &R.sigint);
	ev_signal_start(R.loop, &R.sigterm);
	struct server_opts sv = {
		.ssl_ctx = R.ssl_ctx,
		.token = R.conf.token ? R.conf.token : "",
		.max_frame = (uint32_t)R.conf.max_frame,
		.max_raw = (uint32_t)R.conf.max_frame - 16,
		.max_sessions = (uint32_t)R.conf.max_sessions,
		.unauth_max = (uint32_t)R.conf.unauth_max,
		.unauth_per_source = (uint32_t)R.conf.unauth_per_source,
		.setup_ms = (uint32_t)R.conf.handshake_timeout,
		.max_sensors = (uint32_t)R.conf.max_sensors,
		.sensor_rate = R.conf.sensor_rate,
		.ingest_buffer = R.conf.ingest_buffer,
		.heartbeat_ms = (uint32_t)R.conf.heartbeat,
		.sync_ms = R.conf.fsync == STORE_FSYNC_INTERVAL ? (uint32_t)R.conf.fsync_interval : 0,
		.store = R.store,
		/* Name histories sync with the packets: per frame, on the sync timer, or at the
		 * end of the session. */
		.names = names_store_new(so->dir,
			R.conf.fsync == STORE_FSYNC_BATCH              ? NAMES_SYNC_WRITE
				: R.conf.fsync == STORE_FSYNC_INTERVAL ? NAMES_SYNC_TIMER
								       : NAMES_SYNC_CLOSE),
	};
	if (!sv.names)
		fatalx(1, "out of memory");
	R.names = sv.names;
	names_store_set_max(sv.names, R.conf.names_max_size);
	R.srv = server_new(R.loop, &sv);
	if (!R.srv)
		fatalx(1, "out of memory");
	for (size_t i = 0; i < R.conf.listen.n; i++)
		if (server_listen(R.srv, R.conf.listen.v[i], err, sizeof(err)) != 0)
			fatalx(EXIT_CONFIG, "%s", err);
	if (R.conf.api_listen && *R.conf.api_listen && !so->dir[0])
		log_warnx("api.listen: no HTTP API, since there is no repository (storage.dir is empty)");
	if (R.conf.api_listen && *R.conf.api_listen && so->dir[0]) {
		/* Bound now, served once the store exists; the PEM files are read as root. */
		struct api_opts ao = {
			.listen = R.conf.api_listen,
			.token = R.conf.api_token ? R.conf.api_token : "",
			.cert = R.conf.api_cert ? R.conf.api_cert : "",
			.key = R.conf.api_key ? R.conf.api_key : "",
			.dir = so->dir,
			.max_conns = (unsigned)R.conf.api_max_conns,
			.max_conns_per_source = (unsigned)R.conf.api_max_conns_per_source,
			.header_timeout_ms = (unsigned)R.conf.api_header_timeout,
			.idle_timeout_s = (unsigned)((R.conf.api_idle_timeout + 999) / 1000),
		};
		R.api = api_new(&ao, err, sizeof(err));
		if (!R.api)
			fatalx(EXIT_CONFIG, "%s", err);
		/* Served from before the store is loaded (start-up may take a while): /healthz,
		 * /readyz and /metrics answer at once, the rest waits for ready. */
		api_set_ready(R.api, false, "loading the store");
	}
	if (R.conf.pcapoip_listen && *R.conf.pcapoip_listen &&
		!(R.pcapoip = pcapoip_new(R.conf.pcapoip_listen, err, sizeof(err))))
		fatalx(EXIT_CONFIG, "%s", err);
}

static void
receiver_drop_privileges(const struct store_opts *so)
{
	char err[CFG_ERRLEN];

	if (!R.conf.user || !*R.conf.user)
		return;
	/* Sockets are bound; the repository is the only thing left that needs access. */
	int mrc = so->dir[0] ? fsu_mkdirs(so->dir, 0750) : 0;
	if (mrc != 0)
		fatalx(EXIT_CONFIG, "storage.dir: cannot create %s: %s", so->dir, strerror(-mrc));
	if (so->dir[0] && priv_chown_tree(so->dir, R.conf.user, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "user: %s", err);
	if (priv_drop(R.conf.user, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "user: %s", err);
	log_info("running as user %s", R.conf.user);
}

/* The store (repository and/or single file), then the dissection worker on it. */
static void
receiver_open_store(const struct store_opts *so)
{
	char err[CFG_ERRLEN];

	if ((so->max_bytes && so->max_bytes < so->segment_bytes) ||
		(so->sensor_max_bytes && so->sensor_max_bytes < so->segment_bytes))
		log_warnx("storage.max_size or storage.sensor_max_size is below storage.segment_size: "
			  "segments will be deleted as soon as they are closed");
	R.store = store_new(so, err, sizeof(err));
	if (!R.store)
		fatalx(EXIT_CONFIG, "%s", err);
	server_set_store(R.srv, R.store);
	if (R.conf.l4_enabled && so->dir[0]) {
		/* After the store: the index exists and agrees with the files. */
		struct l4_limits lim = {
			.max_conns = (size_t)R.conf.l4_max_conns,
			.max_buf = (size_t)R.conf.l4_max_buffer,
			.timeout_tcp_ns = R.conf.l4_tcp_timeout * 1000000,
			.timeout_short_ns = R.conf.l4_short_timeout * 1000000,
			.timeout_closed_ns = R.conf.l4_closed_timeout * 1000000,
		};
		R.dissect = dissect_worker_start(so->dir, &lim,
			(unsigned)((R.conf.stats_interval + 999) / 1000), (unsigned)R.conf.l4_defer_max, err,
			sizeof(err));
		if (!R.dissect)
			fatalx(EXIT_CONFIG, "%s", err);
	}
}

/* What /metrics reads, once the store and the dissection worker exist. Live outputs
 * hook in through metrics_src.live (receiver/api/metrics.h). */
static void
receiver_set_metrics(void)
{
	struct metrics_src ms = { .store = R.store,
		.srv = R.srv,
		.dissect = R.dissect,
		.live = outstats_render,
		.live_arg = NULL };

	if (R.api)
		api_set_metrics(R.api, &ms);
}

static void
receiver_on_ready(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (R.api)
		api_set_ready(R.api, true, "");
}

static void
receiver_start_api(void)
{
	char err[CFG_ERRLEN];

	if (R.conf.insecure)
		log_warnx("auth.insecure is set: sensors are NOT authenticated and traffic is NOT encrypted");
	signal(SIGPIPE, SIG_IGN);
	struct live_opts lo = {
		.queue_bytes = R.conf.live_queue_size,
		.stall_ms = (uint32_t)R.conf.live_stall_timeout,
		.max_consumers = (unsigned)R.conf.live_max_consumers,
	};
	int lrc = live_init(&lo);
	if (lrc != 0)
		fatalx(1, "live outputs: cannot start: %s", strerror(-lrc));
	if (R.pcapoip && pcapoip_start(R.pcapoip, err, sizeof(err)) != 0)
		fatalx(1, "%s", err);
	if (R.conf.files_dir && *R.conf.files_dir) {
		struct rotate_opts fo = {
			.dir = R.conf.files_dir,
			.sensors = (const char *const *)R.conf.files_sensors.v,
			.n_sensors = R.conf.files_sensors.n,
			.filter = R.conf.files_filter,
			.rotate_size = R.conf.files_rotate_size,
			.rotate_ms = R.conf.files_rotate_time,
			.max_files = (uint64_t)R.conf.files_max_files,
			.max_size = R.conf.files_max_size,
			.fsync = R.conf.files_fsync,
		};
		if (!(R.files = rotate_start(&fo, err, sizeof(err))))
			fatalx(EXIT_CONFIG, "%s", err);
	}
	if (R.pcapoip)
		log_info("PCAP-over-IP on %s (port %u)", R.conf.pcapoip_listen, pcapoip_port(R.pcapoip));
	/* After SIGPIPE is ignored: an export worker writes into a pipe a client may close. */
	if (R.api && api_start(R.api, err, sizeof(err)) != 0)
		fatalx(EXIT_CONFIG, "%s", err);
	if (R.api)
		log_info("HTTP API on %s%s", R.conf.api_listen,
			R.conf.api_cert && *R.conf.api_cert ? " (HTTPS)" : "");
}

/* Descriptor limit and the stats timer; then serves until INT or TERM. */
static void
receiver_run(void)
{
	/* Each session holds one descriptor: allow as many as the hard limit permits. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	double si = (double)R.conf.stats_interval / 1000.0;
	ev_timer_init(&R.stats, receiver_on_stats, si, si);
	ev_timer_start(R.loop, &R.stats);
	/* Listening, the store open and the API served: READY=1, then STATUS= every
	 * 5 s (or log.stats_interval when shorter). */
	sdn_loop_ready(&R.notify, R.loop, si < 5. ? si : 5., receiver_status, NULL);
	ev_timer_init(&R.ready, receiver_on_ready, 0., 0.);
	ev_timer_start(R.loop, &R.ready);
	log_info("listening on %s%s; storing under %s%s%s", R.conf.listen.v[0],
		R.conf.listen.n > 1 ? " (and more)" : "",
		R.conf.dir && *R.conf.dir ? R.conf.dir : "(no repository)",
		R.conf.out && *R.conf.out ? ", single file " : "",
		R.conf.out && *R.conf.out ? R.conf.out : "");
	ev_run(R.loop, 0);
	sdn_loop_stop(&R.notify);
}

static void
receiver_shutdown(void)
{
	/* Live consumers' reads fail from here, so that their threads end at once. */
	live_shutdown();
	rotate_stop(R.files); /* completes and renames its current file */
	api_free(R.api);
	pcapoip_free(R.pcapoip);
	/* The store worker stops with the server: the store is this thread's again. */
	server_free(R.srv);
	live_fini(); /* after the server: no batch is fed any more */
	receiver_log_all(NULL);
	store_free(R.store);
	/* After the store closed its segments: they are dissected before the end. */
	dissect_worker_stop(R.dissect, 10000);
	names_store_free(R.names);
	if (R.ssl_ctx)
		SSL_CTX_free(R.ssl_ctx);
	cfg_free(receiver_schema, &R.conf);
}

/* Input buffers and batch arenas grow with a burst and shrink after it. Above glibc's
 * mmap threshold each of those is a fresh mapping whose pages are faulted in and
 * zeroed again (a tenth of the receiver's CPU at full speed): they come from the heap
 * instead, and up to the ingest budget of freed memory stays mapped for the next burst. */
static void
receiver_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int
main(int argc, char **argv)
{
	bool check = false;
	const char *names_at_sensor = NULL;

	log_init("pcapline-receiver", LOG_LVL_INFO);
	receiver_tune_malloc();
	receiver_init_notify();
	receiver_load_config(argc, argv, &check, &names_at_sensor);
	if (names_at_sensor)
		return receiver_names_at(
			R.conf.dir ? R.conf.dir : "", names_at_sensor, argv[optind], argv[optind + 1]);
	receiver_check_config();
	if (check)
		return receiver_print_config();
	struct store_opts so = receiver_store_opts();
	receiver_open_listeners(&so);
	receiver_drop_privileges(&so);
	receiver_start_api();
	receiver_open_store(&so);
	receiver_set_metrics();
	receiver_run();
	receiver_shutdown();
	return 0;
}
