/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline export: a time window of the repository as a .tar.gz (see bundle.h).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver/cli/cli.h"
#include "shared/log.h"

enum {
	OPT_FROM = 256,
	OPT_TO,
	OPT_FILTER,
	OPT_LEVEL
};

int
cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "sensor", required_argument, NULL, 's' },
		{ "filter", required_argument, NULL, OPT_FILTER },
		{ "output", required_argument, NULL, 'o' },
		{ "gzip-level", required_argument, NULL, OPT_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = cli_default_dir(), *from = NULL, *to = NULL, *filter = NULL, *output = NULL;
	struct cli_strv sensors = { 0 };
	struct bundle_sensor *bs = NULL;
	struct repo *r = NULL;
	size_t n = 0;
	char err[1024];
	int ch, level = 1, rc = EXIT_CONFIG;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:s:o:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case OPT_FROM:
			from = optarg;
			break;
		case OPT_TO:
			to = optarg;
			break;
		case 's':
			if (cli_add_sensors(&sensors, optarg) != 0)
				goto out;
			break;
		case OPT_FILTER:
			filter = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case OPT_LEVEL:
			level = atoi(optarg);
			if (level < 1 || level > 9) {
				log_warnx("--gzip-level: 1 (fast) .. 9 (small)");
				goto out;
			}
			break;
		case 'h':
			cli_usage("export");
			rc = 0;
			goto out;
		default:
			rc = cli_usage("export");
			goto out;
		}
	}
	if (optind != argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		rc = cli_usage("export");
		goto out;
	}
	if (output == NULL) {
		log_warnx("-o FILE is required");
		rc = cli_usage("export");
		goto out;
	}

	struct bundle_opts o = { .filter = filter,
		.output = output,
		.gzip_level = level,
		.progress = cli_progress_wanted(),
		.source_kind = "repository",
		.source_name = dir };
	if (cli_window(from, to, &o.from_ns, &o.to_ns) != 0)
		goto out;
	rc = EXIT_FAIL;
	if (cli_repo_check(dir) != 0)
		goto out;
	r = repo_open(dir, err, sizeof(err));
	if (r == NULL) {
		log_warnx("%s", err);
		goto out;
	}
	if (cli_collect(r, o.from_ns, o.to_ns, &sensors, &bs, &n) != 0)
		goto out;
	if (n == 0)
		log_warnx("no sensor has packets in the window; the archive holds only its manifest");
	if (bundle_export(&o, bs, n, err, sizeof(err)) != 0) {
		log_warnx("export failed: %s", err);
		goto out;
	}
	uint64_t segs = 0;
	for (size_t i = 0; i < n; i++)
		segs += bs[i].segs.n;
	log_info("exported %zu sensor%s (%" PRIu64 " segments read) to %s", n, n == 1 ? "" : "s", segs,
		strcmp(output, "-") == 0 ? "standard output" : output);
	rc = 0;
out:
	cli_sensors_free(bs, n);
	repo_free(r);
	cli_strv_free(&sensors);
	return rc;
}
