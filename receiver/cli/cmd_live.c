/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline live: the receiver's live stream (GET /api/v1/live) to standard output, a
 * file or a FIFO, for `| wireshark -k -i -`, `| tshark -r -` and the like. Each chunk
 * the receiver sends is written out at once. Ends cleanly (status 0) when the reader
 * closes its end (EPIPE: Wireshark closed) and on SIGINT or SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "receiver/cli/cli.h"
#include "shared/httpc.h"
#include "shared/log.h"

#define LIVE_DEFAULT_API "127.0.0.1:47801" /* the receiver's api.listen default */

enum {
	OPT_API = 256,
	OPT_FILTER,
	OPT_FORMAT,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_TOKEN
};

static volatile sig_atomic_t live_stop;

static void
live_on_signal(int sig)
{
	live_stop = sig;
}

/* The API address: --api, else the receiver's api.listen from PCAPLINE_API_LISTEN (the
 * variable the receiver reads too), else its default. "https://" asks for TLS. */
static const char *
live_api(const char *arg, bool *tls)
{
	const char *a = arg;
	if (!a || !*a)
		a = getenv("PCAPLINE_API_LISTEN");
	if (!a || !*a)
		a = LIVE_DEFAULT_API;
	if (strncmp(a, "https://", 8) == 0) {
		*tls = true;
		a += 8;
	} else if (strncmp(a, "http://", 7) == 0) {
		a += 7;
	}
	return a;
}

/* Writes everything, unless a stop signal interrupts a write that waits on a stuck
 * reader (fsu_write_all() would retry it for ever). 0 or -errno. */
static int
live_write(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR && !live_stop)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
cmd_live(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, OPT_API },
		{ "sensor", required_argument, NULL, 's' },
		{ "filter", required_argument, NULL, OPT_FILTER },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "write", required_argument, NULL, 'w' },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *api = NULL, *filter = NULL, *format = NULL, *out = "-", *ca = NULL, *cert = NULL,
		   *key = NULL, *token = getenv("PCAPLINE_API_TOKEN");
	struct cli_strv sensors = { 0 };
	struct httpc *h = NULL;
	char path[8192] = "/api/v1/live", err[512];
	uint8_t *buf = NULL;
	int ch, rc = EXIT_CONFIG, fd = -1, status = 0;
	bool tls = false, first = true;
	uint64_t bytes = 0;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "s:w:h", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_API:
			api = optarg;
			break;
		case 's':
			if (cli_add_sensors(&sensors, optarg) != 0)
				goto out;
			break;
		case OPT_FILTER:
			filter = optarg;
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "pcap") != 0 && strcmp(optarg, "pcapng") != 0) {
				log_warnx("--format: pcap or pcapng");
				goto out;
			}
			format = optarg;
			break;
		case 'w':
			out = optarg;
			break;
		case OPT_CA:
			ca = optarg;
			tls = true;
			break;
		case OPT_CERT:
			cert = optarg;
			break;
		case OPT_KEY:
			key = optarg;
			break;
		case OPT_TOKEN:
			token = optarg;
			break;
		case 'h':
			cli_usage("live");
			rc = 0;
			goto out;
		default:
			rc = cli_usage("live");
			goto out;
		}
	}
	if (optind != argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		rc = cli_usage("live");
		goto out;
	}
	struct httpc_opts ho = { .ca = ca, .cert = cert, .key = key, .token = token };
	ho.hostport = live_api(api, &tls);
	ho.tls = tls;
	char sep = '?';
	for (size_t i = 0; i < sensors.n; i++) {
		size_t n = strlen(path);
		if (n + 9 >= sizeof(path))
			break;
		snprintf(path + n, sizeof(path) - n, "%csensor=", sep);
		sep = '&';
		if (httpc_query_escape(path, sizeof(path), sensors.v[i]) != 0)
			break;
	}
	if (filter && *filter) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "%cfilter=", sep);
		sep = '&';
		if (httpc_query_escape(path, sizeof(path), filter) != 0) {
			log_warnx("--filter: longer than the request allows");
			goto out;
		}
	}
	if (format) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "%cformat=%s", sep, format);
	}

	/* No SA_RESTART: a read waiting for a quiet stream returns at once with EINTR. */
	struct sigaction sa = { .sa_handler = live_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = EXIT_FAIL;
	if (!(h = httpc_get(&ho, path, &status, err, sizeof(err)))) {
		log_warnx("%s%s: %s", tls ? "https://" : "http://", ho.hostport, err);
		goto out;
	}
	if (status != 200) {
		char msg[1024];
		ssize_t n, got = 0;
		while (got < (ssize_t)sizeof(msg) - 1 &&
			(n = httpc_read(h, msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
			got += n;
		msg[got] = '\0';
		while (got > 0 && (msg[got - 1] == '\n' || msg[got - 1] == '\r'))
			msg[--got] = '\0';
		log_warnx("the receiver refused the live stream: HTTP %d: %s", status, msg);
		rc = status == 400 ? EXIT_CONFIG : EXIT_FAIL;
		goto out;
	}
	if (!(buf = malloc(64 * 1024))) {
		log_warnx("out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = httpc_read(h, buf, 64 * 1024);
		if (live_stop || n == -EINTR) {
			if (!live_stop)
				continue;
			log_info("live: %s: stopped after %llu bytes",
				live_stop == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)bytes);
			rc = 0;
			break;
		}
		if (n == 0) {
			log_info("live: the receiver ended the stream after %llu bytes",
				(unsigned long long)bytes);
			rc = 0;
			break;
		}
		if (n < 0) {
			log_warnx("live: the stream broke off after %llu bytes: %s (a consumer that reads "
				  "nothing for outputs.live.stall_timeout is cut off)",
				(unsigned long long)bytes,
				httpc_error(h)[0] ? httpc_error(h) : strerror((int)-n));
			break;
		}
		if (first) {
			/* Opened with the first bytes: a FIFO's reader is not kept waiting for a
			 * refused request, and a refused one leaves no empty file behind. */
			first = false;
			if (strcmp(out, "-") == 0) {
				fd = STDOUT_FILENO;
			} else if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
				if (errno == EINTR && live_stop) {
					rc = 0;
					break;
				}
				log_warnx("-w %s: %s", out, strerror(errno));
				break;
			}
		}
		int wr = live_write(fd, buf, (size_t)n);
		if (wr == -EPIPE) {
			log_info("live: the reader closed its end after %llu bytes",
				(unsigned long long)bytes);
			rc = 0;
			break;
		}
		if (wr != 0) {
			if (wr == -EINTR && live_stop) {
				rc = 0;
				break;
			}
			log_warnx("-w %s: %s", out, strerror(-wr));
			break;
		}
		bytes += (uint64_t)n;
	}
out:
	if (fd > STDOUT_FILENO)
		close(fd);
	free(buf);
	httpc_free(h);
	cli_strv_free(&sensors);
	return rc;
}
