/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The pcapline command: one file per subcommand (cmd_*.c), dispatched from the table in
 * cli.c, which also prints the usage. A subcommand gets argv starting at its own name
 * and returns the process exit status: 0, 1 for a failure, EXIT_CONFIG (2) for a usage
 * error.
 */
#ifndef PCAPLINE_CLI_CLI_H
#define PCAPLINE_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "receiver/repo/bundle.h"
#include "receiver/repo/repo.h"

#define EXIT_FAIL 1

/* The whole command line: global options, then one command. Returns the exit status. */
int cli_main(int argc, char **argv);

int cmd_export(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_l4(int argc, char **argv);
int cmd_conns(int argc, char **argv);
int cmd_flows(int argc, char **argv);
int cmd_pcap(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_follow(int argc, char **argv);
int cmd_live(int argc, char **argv);

/* `pcapline l4 follow --no-timeouts PATH INDEX`: for cmd_follow. Returns an exit code. */
int cli_follow_file(const char *path, uint64_t index);

/* Prints the usage of one command (or of all when name is NULL) to stderr, returns
 * EXIT_CONFIG: `return cli_usage("export");` after a bad argument. */
int cli_usage(const char *name);

/* The repository when --dir is not given: $PCAPLINE_STORAGE_DIR, else the receiver's
 * default CLI_DEFAULT_DIR. */
#define CLI_DEFAULT_DIR "/var/lib/pcapline"
const char *cli_default_dir(void);

/* 0 when dir holds a repository (index.db, sensors/ or snapshots/); else -1 after
 * saying which directory was looked at, where that came from (--dir, the environment or
 * the default), and how to point elsewhere. */
int cli_repo_check(const char *dir);

/* A growable list of strings (owned). */
struct cli_strv {
	char **v;
	size_t n;
};
/* Adds the comma-separated sensor ids of arg, each checked with fsu_name_ok().
 * Returns 0 or -1 after printing the problem. */
int cli_add_sensors(struct cli_strv *l, const char *arg);
void cli_strv_free(struct cli_strv *l);

/* Parses --from/--to (timearg.h) into a window with from < to. Returns 0 or -1 after
 * printing the problem. */
int cli_window(const char *from, const char *to, uint64_t *from_ns, uint64_t *to_ns);

/*
 * The sensors of a window and their segments: the listed ones (each must exist), or
 * every sensor with a segment overlapping the window. The caller frees with
 * cli_sensors_free(). Returns 0 or -1 after logging the problem.
 */
int cli_collect(struct repo *r, uint64_t from, uint64_t to, const struct cli_strv *want,
	struct bundle_sensor **out, size_t *n);
void cli_sensors_free(struct bundle_sensor *s, size_t n);

/* Parses a size such as "64M", "2G", "1048576". Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);

/* True when progress lines should be drawn (stderr is a terminal, not --quiet). */
bool cli_progress_wanted(void);
extern bool cli_quiet;

#endif
