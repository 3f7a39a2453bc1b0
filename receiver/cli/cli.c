/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline: the PCAP repository client. Exports a time window as a .tar.gz (one merged
 * pcap per sensor, its name-resolution history and a manifest), keeps immutable
 * snapshots, and imports archives into a separate view repository.
 *
 * This file is the command table, the dispatch (cli_main) and the helpers every
 * cmd_*.c shares; main.c only calls cli_main(), so the commands link into tests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/cli/cli.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "receiver/repo/timearg.h"

bool cli_quiet;

static const struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *args;
	const char *help;
} cli_cmds[] = {
	{ "export", cmd_export,
		"--from T --to T -o FILE.tar.gz [--dir DIR] [--sensor S]... [--filter BPF] [--gzip-level N]",
		"write the packets of [from, to) as a .tar.gz: one time-merged pcap per sensor, its\n"
		"name_resolution_history.json, and manifest.json; -o - writes to standard output" },
	{ "snapshot", cmd_snapshot,
		"create NAME --from T --to T [--dir DIR] [--sensor S]...\n"
		"                  | list [--dir DIR]\n"
		"                  | export NAME -o FILE.tar.gz [--dir DIR] [--sensor S]... [--filter BPF] "
		"[--gzip-level N]\n"
		"                  | verify NAME [--dir DIR] | delete NAME [--dir DIR]",
		"keep the segments of a window in DIR/snapshots/NAME (read-only, hard-linked when\n"
		"possible, manifest with SHA-256); retention never touches snapshots" },
	{ "import", cmd_import,
		"ARCHIVE.tar.gz --dir VIEWDIR [--max-entry-size SIZE] [--max-entries N] [--max-json-size "
		"SIZE]\n"
		"                  [--max-ratio N] [--max-total-size SIZE] [--segment-size SIZE]",
		"load an export (or a Kubeshark export) into a separate view repository that\n"
		"`pcapline export --dir VIEWDIR` reads; hostile or corrupt archives change nothing" },
	{ "conns", cmd_conns,
		"[--dir DIR] [--sensor S] [--from T --to T] [--flow ID] [--conn ID] [--limit N] [--json]\n"
		"                  | --stats [--dir DIR] [--json]",
		"the connections the receiver dissected from the stored packets, newest first: ids,\n"
		"endpoints, state, packets and bytes per side, handshake RTT, why they ended;\n"
		"--stats: the dissection's counters (evictions, gaps, fragments...) and backlog" },
	{ "flows", cmd_flows, "[--dir DIR] [--sensor S] [--from T --to T] [--flow ID] [--limit N] [--json]",
		"the flows (all connections between two peers on one sensor interface), with totals\n"
		"and packets/s and bits/s over each flow's life" },
	{ "pcap", cmd_pcap, "--conn ID | --flow ID  -o FILE [--dir DIR]",
		"the exact packets of one connection or of one flow, as a pcap (-o - for stdout),\n"
		"read from the segments through their position files" },
	{ "follow", cmd_follow, "--conn ID [--dir DIR]",
		"the reassembled client and server bytes of one stored TCP connection, in the format\n"
		"of `tshark -q -z follow,tcp,raw` (gaps marked as tshark marks them)" },
	{ "live", cmd_live,
		"[--api [https://]HOST:PORT] [--sensor S]... [--filter BPF] [--format pcap|pcapng]\n"
		"                  [-w FILE|-] [--ca FILE] [--cert FILE --key FILE] [--token T]",
		"the receiver's live stream (GET /api/v1/live: packets as they are stored) to standard\n"
		"output or FILE (a FIFO too), flushed per chunk; e.g. `pcapline live | wireshark -k -i -`.\n"
		"--api defaults to $PCAPLINE_API_LISTEN, else 127.0.0.1:47801; --ca means HTTPS; the\n"
		"token defaults to $PCAPLINE_API_TOKEN. Ends with status 0 on SIGINT or when the reader\n"
		"closes its end" },
	{ "reindex", cmd_reindex, "--from T --to T [--sensor S] [--dir DIR]",
		"rebuild the connections and flows of a window (widened to whole connections) from\n"
		"the stored segments" },
	{ "l4", cmd_l4,
		"conns [--udp] [OPTS] FILE | follow [OPTS] FILE N | stats [OPTS] FILE\n"
		"                  OPTS: --max-conns N, --no-timeouts",
		"TCP connections (UDP conversations with --udp) of a pcap/pcapng file (N = Wireshark's\n"
		"tcp.stream), the reassembled byte streams of connection N in the format of\n"
		"`tshark -q -z follow,tcp,raw,N`, and the L4 pass's counters, CPU time and memory" },
};

#define N_CMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

/*
 * The usage of one command (name) or of all (NULL) on f. A command's usage explains
 * only what its own arguments take: times for those with --from/--to, the repository
 * for those with --dir DIR.
 */
static void
cli_usage_to(FILE *f, const char *name)
{
	bool times = name == NULL, dir = name == NULL;

	if (name == NULL)
		fprintf(f,
			"usage: pcapline [-v | -q] COMMAND ARGS...   (pcapline COMMAND --help: one "
			"command)\n\n");
	for (size_t i = 0; i < N_CMDS; i++) {
		if (name != NULL && strcmp(name, cli_cmds[i].name) != 0)
			continue;
		fprintf(f, "%spcapline %s %s\n", name ? "usage: " : "  ", cli_cmds[i].name, cli_cmds[i].args);
		fprintf(f, "%s\n\n", cli_cmds[i].help);
		times |= strstr(cli_cmds[i].args, "--from T") != NULL;
		dir |= strstr(cli_cmds[i].args, "--dir DIR") != NULL;
	}
	if (times)
		fprintf(f,
			"Times (T): RFC 3339 (2026-11-24T22:00:00Z, 2026-11-24T22:00:00.123456789Z,\n"
			"+01:00 offsets), Unix seconds with an optional fraction (1795558496.5), or "
			"relative\n"
			"to now (now, now-5m, now-1h30m; units ns us ms s m h d w). The window is [from, "
			"to).\n"
			"Packets keep the time they were captured at, replayed files included: a window\n"
			"must cover a replayed capture's own time, not the time it was replayed.\n");
	if (dir)
		fprintf(f, "DIR (the receiver's storage.dir) defaults to $PCAPLINE_STORAGE_DIR, else %s.\n",
			CLI_DEFAULT_DIR);
	if (name == NULL)
		fprintf(f,
			"Global options: -v (debug messages), -q (warnings only), -V (version), -h (this "
			"help).\n");
}

int
cli_usage(const char *name)
{
	cli_usage_to(stderr, name);
	return EXIT_CONFIG;
}

/* True when the command's arguments ask for help (before a "--", which ends options). */
static bool
cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return true;
	return false;
}

int
cli_repo_check(const char *dir)
{
	static const char *const marks[] = { "index.db", "sensors", "snapshots" };
	const char *env = getenv("PCAPLINE_STORAGE_DIR"), *from, *why = NULL;
	char path[4096];
	struct stat st;

	if (env != NULL && env[0] != '\0')
		from = strcmp(dir, env) == 0 ? "from PCAPLINE_STORAGE_DIR" : "given with --dir";
	else
		from = strcmp(dir, CLI_DEFAULT_DIR) == 0
			? "the default: no --dir, PCAPLINE_STORAGE_DIR not set"
			: "given with --dir";
	if (stat(dir, &st) != 0)
		why = strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	for (size_t i = 0; why == NULL && i < sizeof(marks) / sizeof(marks[0]); i++)
		if (fsu_path(path, sizeof(path), "%s/%s", dir, marks[i]) == 0 && stat(path, &st) == 0)
			return 0;
	log_warnx("no repository in %s (%s): %s; point to the receiver's storage.dir with --dir DIR "
		  "or PCAPLINE_STORAGE_DIR",
		dir, from, why ? why : "it has no index.db, sensors/ or snapshots/");
	return -1;
}

const char *
cli_default_dir(void)
{
	const char *d = getenv("PCAPLINE_STORAGE_DIR");

	return d != NULL && d[0] != '\0' ? d : CLI_DEFAULT_DIR;
}

bool
cli_progress_wanted(void)
{
	return !cli_quiet && isatty(STDERR_FILENO);
}

void
cli_strv_free(struct cli_strv *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int
cli_add_sensors(struct cli_strv *l, const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int rc = 0;

	if (copy == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char **v;
		bool dup = false;

		if (!fsu_name_ok(tok)) {
			log_warnx("'%s' is not a sensor id (letters, digits, '.', '_', '-')", tok);
			rc = -1;
			break;
		}
		for (size_t i = 0; i < l->n; i++)
			dup |= strcmp(l->v[i], tok) == 0;
		if (dup)
			continue;
		v = realloc(l->v, (l->n + 1) * sizeof(*v));
		if (v == NULL || (v[l->n] = strdup(tok)) == NULL) {
			if (v != NULL)
				l->v = v;
			rc = -1;
			break;
		}
		l->v = v;
		l->n++;
	}
	free(copy);
	return rc;
}

int
cli_window(const char *from, const char *to, uint64_t *from_ns, uint64_t *to_ns)
{
	uint64_t now = timearg_now();

	if (from == NULL || to == NULL) {
		log_warnx("--from and --to are required");
		return -1;
	}
	if (timearg_parse(from, now, from_ns) != 0) {
		log_warnx("--from '%s': not a time (RFC 3339, Unix seconds, or now-5m)", from);
		return -1;
	}
	if (timearg_parse(to, now, to_ns) != 0) {
		log_warnx("--to '%s': not a time (RFC 3339, Unix seconds, or now-5m)", to);
		return -1;
	}
	if (*from_ns >= *to_ns) {
		log_warnx("--from must be before --to (the window is [from, to))");
		return -1;
	}
	if (*to_ns > (uint64_t)INT64_MAX) {
		log_warnx("--to is beyond the year 2262");
		return -1;
	}
	return 0;
}

void
cli_sensors_free(struct bundle_sensor *s, size_t n)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((char *)s[i].name);
		free((char *)s[i].names_path);
		repo_seglist_free(&s[i].segs);
	}
	free(s);
}

int
cli_collect(struct repo *r, uint64_t from, uint64_t to, const struct cli_strv *want,
	struct bundle_sensor **out, size_t *n)
{
	struct bundle_sensor *s = NULL;
	char **names = NULL, err[512];
	size_t k = 0, done = 0;

	if (want != NULL && want->n > 0) {
		if ((names = calloc(want->n, sizeof(*names))) == NULL)
			goto nomem;
		for (; k < want->n; k++) {
			if (!repo_has_sensor(r, want->v[k])) {
				log_warnx("%s: no sensor '%s'", repo_dir(r), want->v[k]);
				goto fail;
			}
			if ((names[k] = strdup(want->v[k])) == NULL)
				goto nomem;
		}
	} else if (repo_sensors(r, from, to, &names, &k, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		return -1;
	}
	if ((s = calloc(k + 1, sizeof(*s))) == NULL)
		goto nomem;
	for (; done < k; done++) {
		s[done].name = strdup(names[done]);
		s[done].names_path = repo_names_path(r, names[done]);
		if (s[done].name == NULL || s[done].names_path == NULL) {
			done++;
			goto nomem;
		}
		if (repo_segments(r, names[done], from, to, &s[done].segs, err, sizeof(err)) != 0) {
			log_warnx("%s", err);
			done++;
			goto fail;
		}
	}
	repo_strv_free(names, k);
	*out = s;
	*n = k;
	return 0;
nomem:
	log_warnx("out of memory");
fail:
	cli_sensors_free(s, done);
	repo_strv_free(names, k);
	return -1;
}

int
cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1ull << 10;
	else if (*end == 'M')
		mul = 1ull << 20;
	else if (*end == 'G')
		mul = 1ull << 30;
	else if (*end == 'T')
		mul = 1ull << 40;
	else if (*end != '\0')
		return -1;
	if (*end != '\0' && end[1] != '\0' && strcmp(end + 1, "B") != 0 && strcmp(end + 1, "iB") != 0)
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

int
cli_main(int argc, char **argv)
{
	int i = 1;

	log_init("pcapline", LOG_LVL_INFO);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			log_set_level(LOG_LVL_DEBUG);
		} else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
			log_set_level(LOG_LVL_WARN);
			cli_quiet = true;
		} else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
			printf("pcapline %s\n", PCAPLINE_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			cli_usage_to(stdout, NULL);
			return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
		} else {
			log_warnx("unknown option %s", argv[i]);
			return cli_usage(NULL);
		}
	}
	if (i >= argc)
		return cli_usage(NULL);
	if (strcmp(argv[i], "help") == 0) {
		const char *name = i + 1 < argc ? argv[i + 1] : NULL;
		bool known = name == NULL;

		for (size_t c = 0; c < N_CMDS; c++)
			known |= name != NULL && strcmp(name, cli_cmds[c].name) == 0;
		if (!known) {
			log_warnx("unknown command '%s'", name);
			return cli_usage(NULL);
		}
		cli_usage_to(stdout, name);
		return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
	}
	for (size_t c = 0; c < N_CMDS; c++) {
		if (strcmp(argv[i], cli_cmds[c].name) != 0)
			continue;
		/* Help is asked the same way of every command, whatever else is on the line. */
		if (cli_wants_help(argc - i, argv + i)) {
			cli_usage_to(stdout, cli_cmds[c].name);
			return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
		}
		return cli_cmds[c].run(argc - i, argv + i);
	}
	log_warnx("unknown command '%s'", argv[i]);
	return cli_usage(NULL);
}
