/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The repository's connections and flows (see l4query.h):
 *   pcapline conns    [--dir D] [--sensor S] [--from T] [--to T] [--flow ID] [--limit N] [--json]
 *   pcapline conns --stats [--dir D] [--json]     the dissection's counters
 *   pcapline flows    [--dir D] [--sensor S] [--from T] [--to T] [--limit N] [--json]
 *   pcapline pcap     (--conn ID | --flow ID) -o FILE [--dir D]
 *   pcapline reindex  --from T --to T [--sensor S] [--dir D]
 *   pcapline follow   --conn ID [--dir D]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "receiver/cli/cli.h"
#include "receiver/dissect/dissect.h"
#include "shared/fsutil.h"
#include "receiver/repo/l4query.h"
#include "shared/log.h"
#include "receiver/repo/timearg.h"

enum {
	OPT_FROM = 256,
	OPT_TO,
	OPT_FLOW,
	OPT_CONN,
	OPT_LIMIT,
	OPT_JSON,
	OPT_STATS
};

struct args {
	const char *dir, *sensor, *from, *to, *output;
	uint64_t flow, conn;
	unsigned limit;
	bool json, stats;
};

static int
parse_id(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || *out == 0 || *out > INT64_MAX) {
		log_warnx("'%s' is not a connection or flow id", s);
		return -1;
	}
	return 0;
}

static int
parse_args(const char *cmd, int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "sensor", required_argument, NULL, 's' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "flow", required_argument, NULL, OPT_FLOW },
		{ "conn", required_argument, NULL, OPT_CONN },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "output", required_argument, NULL, 'o' },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(a, 0, sizeof(*a));
	a->dir = cli_default_dir();
	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:s:o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			a->dir = optarg;
			break;
		case 's':
			a->sensor = optarg;
			break;
		case 'o':
			a->output = optarg;
			break;
		case OPT_FROM:
			a->from = optarg;
			break;
		case OPT_TO:
			a->to = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_STATS:
			a->stats = true;
			break;
		case OPT_FLOW:
			if (parse_id(optarg, &a->flow) != 0)
				return -1;
			break;
		case OPT_CONN:
			if (parse_id(optarg, &a->conn) != 0)
				return -1;
			break;
		case OPT_LIMIT:
			a->limit = (unsigned)atoi(optarg);
			if (a->limit == 0 || a->limit > 10000000) {
				log_warnx("--limit: 1 .. 10000000");
				return -1;
			}
			break;
		default:
			return -1;
		}
	}
	if (optind != argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	(void)cmd;
	return 0;
}

/* --from/--to: both or neither (any time). */
static int
window(const struct args *a, uint64_t *from, uint64_t *to)
{
	*from = *to = 0;
	if (a->from == NULL && a->to == NULL)
		return 0;
	return cli_window(a->from ? a->from : "0", a->to ? a->to : "now+1000d", from, to);
}

static int
print_json(json_t *v)
{
	int rc = json_dumpf(v, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0 && putchar('\n') != EOF
		? 0
		: EXIT_FAIL;

	json_decref(v);
	return rc;
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

static long long
jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void
fmt_time(json_t *o, const char *k, char buf[TIMEARG_LEN])
{
	timearg_format((uint64_t)jint(o, k), buf);
}

struct printer {
	bool json, flows;
	size_t n;
};

/* One row, as the rows come (a list may be longer than memory would hold at once). */
static int
print_row(void *arg, json_t *o)
{
	struct printer *p = arg;

	if (p->json) {
		fputs(p->n++ ? ",\n " : "[\n ", stdout);
		return json_dumpf(o, stdout, JSON_PRESERVE_ORDER | JSON_COMPACT) == 0 ? 0 : -1;
	}
	if (p->n++ == 0 && !p->flows)
		printf("%-19s %-19s %-10s %-4s %-45s %-45s %-11s %-30s %8s %10s %8s %10s %9s %s\n", "conn_id",
			"flow_id", "sensor", "prot", "client", "server", "state", "first", "c_pkts",
			"c_bytes", "s_pkts", "s_bytes", "rtt_ms", "ended");
	if (p->n == 1 && p->flows)
		printf("%-19s %-10s %-39s %-39s %6s %10s %12s %-30s %10s %12s\n", "flow_id", "sensor",
			"peer_a", "peer_b", "conns", "packets", "bytes", "first", "pps", "bps");
	char t[TIMEARG_LEN];

	fmt_time(o, "first_ns", t);
	if (p->flows) {
		printf("%-19lld %-10s %-39s %-39s %6lld %10lld %12lld %-30s %10.1f %12.1f\n",
			jint(o, "flow_id"), jstr(o, "sensor"), jstr(o, "peer_a"), jstr(o, "peer_b"),
			jint(o, "conns"), jint(o, "packets"), jint(o, "bytes"), t,
			json_real_value(json_object_get(o, "pps")),
			json_real_value(json_object_get(o, "bps")));
	} else {
		char c[64], s[64];

		snprintf(c, sizeof(c), "%s:%lld", jstr(o, "client"), jint(o, "client_port"));
		snprintf(s, sizeof(s), "%s:%lld", jstr(o, "server"), jint(o, "server_port"));
		printf("%-19lld %-19lld %-10s %-4s %-45s %-45s %-11s %-30s %8lld %10lld %8lld %10lld %9.3f "
		       "%s\n",
			jint(o, "conn_id"), jint(o, "flow_id"), jstr(o, "sensor"), jstr(o, "proto"), c, s,
			jstr(o, "state"), t, jint(o, "c_pkts"), jint(o, "c_bytes"), jint(o, "s_pkts"),
			jint(o, "s_bytes"), (double)jint(o, "rtt_ns") / 1e6,
			json_is_null(json_object_get(o, "ended")) ? "(open)" : jstr(o, "ended"));
	}
	return ferror(stdout) ? -1 : 0;
}

static int
keep_first(void *arg, json_t *row)
{
	*(uint64_t *)arg = (uint64_t)jint(row, "first_ns");
	return 0;
}

/*
 * An empty list is not an error (exit 0), but it says so on stderr, and for a window
 * that matched nothing, when the newest row outside it began: a capture replayed from a
 * file keeps its own timestamps, so a window around the time of the replay finds nothing.
 */
static void
say_empty(const struct args *a, bool flows, const struct l4q *q)
{
	const char *what = flows ? "flows" : "connections";
	struct l4q any = *q;
	uint64_t newest = 0;
	char err[256], t[TIMEARG_LEN], f[TIMEARG_LEN], e[TIMEARG_LEN];

	if (q->from_ns == 0 && q->to_ns == 0) {
		log_info("no %s%s in %s", what,
			q->sensor || q->flow_id || q->conn_id ? " match" : " dissected yet", a->dir);
		return;
	}
	any.from_ns = any.to_ns = 0;
	any.limit = 1;
	timearg_format(q->from_ns, f);
	timearg_format(q->to_ns, e);
	if (l4q_each(a->dir, flows, &any, keep_first, &newest, err, sizeof(err)) != 0 || newest == 0) {
		log_info("no %s in [%s, %s), nor at any other time", what, f, e);
		return;
	}
	timearg_format(newest, t);
	log_info("no %s in [%s, %s); the newest began at %s (packets keep their capture time, also "
		 "when replayed from a file: widen --from/--to to cover it)",
		what, f, e, t);
}

static int
list(const struct args *a, bool flows, const struct l4q *q)
{
	struct printer p = { a->json, flows, 0 };
	char err[1024] = "";
	int rc = l4q_each(a->dir, flows, q, print_row, &p, err, sizeof(err));

	if (rc == -1 && err[0] != '\0' && p.n == 0) {
		log_warnx("%s", err);
		return EXIT_FAIL;
	}
	if (a->json)
		fputs(p.n ? "\n]\n" : "[]\n", stdout);
	if (rc != 0 || fflush(stdout) != 0) {
		log_warnx("%s", err[0] ? err : "cannot write the list");
		return EXIT_FAIL;
	}
	if (p.n == 0)
		say_empty(a, flows, q);
	return 0;
}

int
cmd_conns(int argc, char **argv)
{
	struct args a;
	struct l4q q = { 0 };
	char err[1024];
	json_t *v, *o;

	if (parse_args("conns", argc, argv, &a) != 0 || window(&a, &q.from_ns, &q.to_ns) != 0)
		return cli_usage("conns");
	if (cli_repo_check(a.dir) != 0)
		return EXIT_FAIL;
	if (a.stats) {
		const char *k;

		if ((v = l4q_stats(a.dir, err, sizeof(err))) == NULL) {
			log_warnx("%s", err);
			return EXIT_FAIL;
		}
		if (a.json)
			return print_json(v);
		json_object_foreach(v, k, o) printf("%-26s %lld\n", k, (long long)json_integer_value(o));
		json_decref(v);
		return 0;
	}
	q.sensor = a.sensor;
	q.flow_id = a.flow;
	q.conn_id = a.conn;
	q.limit = a.limit;
	return list(&a, false, &q);
}

int
cmd_flows(int argc, char **argv)
{
	struct args a;
	struct l4q q = { 0 };

	if (parse_args("flows", argc, argv, &a) != 0 || window(&a, &q.from_ns, &q.to_ns) != 0)
		return cli_usage("flows");
	if (cli_repo_check(a.dir) != 0)
		return EXIT_FAIL;
	q.sensor = a.sensor;
	q.flow_id = a.flow;
	q.limit = a.limit;
	return list(&a, true, &q);
}

static int
fd_sink(void *arg, const void *buf, size_t len)
{
	return fsu_write_all(*(int *)arg, buf, len);
}

int
cmd_pcap(int argc, char **argv)
{
	struct args a;
	struct fsu_out out = { .fd = -1 };
	char err[1024] = "";
	uint64_t packets;
	int rc;

	if (parse_args("pcap", argc, argv, &a) != 0)
		return cli_usage("pcap");
	if ((a.conn == 0) == (a.flow == 0) || a.output == NULL) {
		log_warnx("one of --conn ID and --flow ID, and -o FILE, are required");
		return cli_usage("pcap");
	}
	if (cli_repo_check(a.dir) != 0)
		return EXIT_FAIL;
	/* Under no name until complete (fsutil.h): never half a capture under the name. */
	if ((rc = fsu_out_open(&out, a.output, 0644)) != 0) {
		log_warnx("%s: %s", a.output, strerror(-rc));
		return EXIT_FAIL;
	}
	rc = l4q_pcap(
		a.dir, a.flow != 0, a.flow ? a.flow : a.conn, fd_sink, &out.fd, &packets, err, sizeof(err));
	if (rc == 0 && (rc = fsu_out_commit(&out)) != 0)
		snprintf(err, sizeof(err), "%s: %s", a.output, strerror(-rc));
	if (rc != 0) {
		fsu_out_abort(&out);
		log_warnx("%s", err[0] ? err : strerror(-rc));
		return EXIT_FAIL;
	}
	log_info("%" PRIu64 " packets of %s %" PRIu64 " written to %s", packets,
		a.flow ? "flow" : "connection", a.flow ? a.flow : a.conn,
		strcmp(a.output, "-") == 0 ? "standard output" : a.output);
	return 0;
}

int
cmd_reindex(int argc, char **argv)
{
	struct args a;
	struct dissect *d;
	uint64_t from, to;
	char err[1024];
	int n;

	if (parse_args("reindex", argc, argv, &a) != 0)
		return cli_usage("reindex");
	if (a.from == NULL || a.to == NULL) {
		log_warnx("--from and --to are required");
		return cli_usage("reindex");
	}
	if (cli_window(a.from, a.to, &from, &to) != 0)
		return cli_usage("reindex");
	if (cli_repo_check(a.dir) != 0)
		return EXIT_FAIL;
	if ((d = dissect_open(a.dir, NULL, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return EXIT_FAIL;
	}
	n = dissect_reindex(d, a.sensor, (int64_t)from, (int64_t)to);
	if (n < 0) {
		dissect_close(d, false);
		log_warnx("reindex failed (see above)");
		return EXIT_FAIL;
	}
	/* Connections still open at the window's end end here. */
	dissect_close(d, true);
	log_info("re-dissected %d segment(s)", n);
	return 0;
}

/* The reassembled streams of one stored TCP connection: its capture (l4q_pcap) into an
 * unlinked temporary file, then what `pcapline l4 follow` prints for it. */
int
cmd_follow(int argc, char **argv)
{
	struct args a;
	char err[1024] = "", path[64];
	uint64_t packets;
	json_t *v;
	struct l4q q = { 0 };
	int fd, rc;

	if (parse_args("follow", argc, argv, &a) != 0 || a.conn == 0 || a.flow != 0) {
		if (a.conn == 0)
			log_warnx("--conn ID is required");
		return cli_usage("follow");
	}
	if (cli_repo_check(a.dir) != 0)
		return EXIT_FAIL;
	q.conn_id = a.conn;
	q.limit = 1;
	if ((v = l4q_conns(a.dir, &q, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return EXIT_FAIL;
	}
	const char *proto = json_string_value(json_object_get(json_array_get(v, 0), "proto"));

	if (json_array_size(v) == 0 || proto == NULL || strcmp(proto, "tcp") != 0) {
		log_warnx(json_array_size(v) ? "connection %" PRIu64 " is not TCP: see pcapline pcap"
					     : "no connection %" PRIu64 " in the index",
			a.conn);
		json_decref(v);
		return EXIT_FAIL;
	}
	json_decref(v);
	snprintf(path, sizeof(path), "/tmp/pcapline-follow-XXXXXX");
	if ((fd = mkstemp(path)) < 0) {
		log_warn("%s", path);
		return EXIT_FAIL;
	}
	unlink(path);
	rc = l4q_pcap(a.dir, false, a.conn, fd_sink, &fd, &packets, err, sizeof(err));
	if (rc != 0) {
		log_warnx("%s", err[0] ? err : strerror(-rc));
		close(fd);
		return EXIT_FAIL;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rc = cli_follow_file(path, 0);
	close(fd);
	return rc;
}
