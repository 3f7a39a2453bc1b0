/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline-extcap: the receiver's sensors as Wireshark capture interfaces (the extcap
 * protocol, extcap(4)). Wireshark runs it with
 *   --extcap-interfaces              one interface per sensor of GET /api/v1/sensors,
 *                                    and "pcapline-all"
 *   --extcap-interface I --extcap-dlts    the link type of I
 *   --extcap-interface I --extcap-config  its options (API address, token, CA, client
 *                                    certificate and key, BPF filter)
 *   --extcap-interface I --capture --fifo PATH [options] [--extcap-capture-filter F]
 *                                    GET /api/v1/live for that sensor into the FIFO,
 *                                    written chunk by chunk as the receiver sends it;
 *                                    ends with status 0 on SIGTERM/SIGINT or when
 *                                    Wireshark closes the FIFO (EPIPE).
 * Listing happens before any option is set in Wireshark's dialog, so the API address,
 * token and TLS files also come from PCAPLINE_API_LISTEN, PCAPLINE_API_TOKEN,
 * PCAPLINE_API_CA, PCAPLINE_API_CERT and PCAPLINE_API_KEY (the dialog's defaults too).
 * An API address "https://host:port" means TLS.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <pcap/pcap.h>

#include "shared/httpc.h"

#define XC_PREFIX      "pcapline-"
#define XC_ALL         XC_PREFIX "all"
#define XC_DEFAULT_API "127.0.0.1:47801"
#define XC_MAX_BODY    (4u << 20)

enum {
	OPT_INTERFACES = 256,
	OPT_INTERFACE,
	OPT_DLTS,
	OPT_CONFIG,
	OPT_CAPTURE,
	OPT_FIFO,
	OPT_CFILTER,
	OPT_VERSION,
	OPT_API,
	OPT_TOKEN,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_FILTER,
	OPT_HELP
};

static volatile sig_atomic_t xc_stop;

static void
xc_on_signal(int sig)
{
	xc_stop = sig;
}

struct xc {
	const char *iface, *fifo, *cfilter, *api, *token, *ca, *cert, *key, *filter;
};

static const char *
xc_env(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

static void
xc_httpc_opts(const struct xc *x, struct httpc_opts *ho)
{
	memset(ho, 0, sizeof(*ho));
	const char *a = x->api;
	if (strncmp(a, "https://", 8) == 0) {
		ho->tls = true;
		a += 8;
	} else if (strncmp(a, "http://", 7) == 0) {
		a += 7;
	}
	ho->hostport = a;
	ho->ca = x->ca && *x->ca ? x->ca : NULL;
	ho->tls = ho->tls || ho->ca;
	ho->cert = x->cert && *x->cert ? x->cert : NULL;
	ho->key = x->key && *x->key ? x->key : NULL;
	ho->token = x->token;
}

/* GET path into a NUL-terminated body (caller frees); NULL with a message on stderr. */
static char *
xc_get(const struct xc *x, const char *path)
{
	struct httpc_opts ho;
	char err[512], *body = NULL;
	int status = 0;
	size_t len = 0;
	xc_httpc_opts(x, &ho);
	struct httpc *h = httpc_get(&ho, path, &status, err, sizeof(err));
	if (!h) {
		fprintf(stderr, "pcapline-extcap: %s: %s\n", x->api, err);
		return NULL;
	}
	if (!(body = malloc(XC_MAX_BODY + 1)))
		goto fail;
	for (ssize_t n; len < XC_MAX_BODY && (n = httpc_read(h, body + len, XC_MAX_BODY - len)) != 0;) {
		if (n < 0) {
			fprintf(stderr, "pcapline-extcap: %s%s: %s\n", x->api, path, httpc_error(h));
			goto fail;
		}
		len += (size_t)n;
	}
	body[len] = '\0';
	if (status != 200) {
		fprintf(stderr, "pcapline-extcap: %s%s: HTTP %d: %.300s\n", x->api, path, status, body);
		goto fail;
	}
	httpc_free(h);
	return body;
fail:
	free(body);
	httpc_free(h);
	return NULL;
}

/* The receiver's sensors; NULL (after a message) when it cannot be asked. */
static json_t *
xc_sensors(const struct xc *x)
{
	char *body = xc_get(x, "/api/v1/sensors");
	json_error_t je;
	if (!body)
		return NULL;
	json_t *v = json_loads(body, 0, &je);
	free(body);
	json_t *list = json_incref(json_object_get(v, "sensors"));
	json_decref(v);
	if (!json_is_array(list)) {
		fprintf(stderr, "pcapline-extcap: %s/api/v1/sensors: not the expected JSON\n", x->api);
		json_decref(list);
		return NULL;
	}
	return list;
}

static int
xc_interfaces(const struct xc *x)
{
	printf("extcap {version=%s}{display=pcapline receiver}\n", PCAPLINE_VERSION);
	printf("interface {value=" XC_ALL "}{display=pcapline: all sensors (%s)}\n", x->api);
	json_t *list = xc_sensors(x), *s;
	size_t i;
	json_array_foreach(list, i, s)
	{
		const char *id = json_string_value(json_object_get(s, "id"));
		json_t *ifs = json_object_get(s, "interfaces"), *f;
		size_t k;
		char desc[512] = "";
		if (!id)
			continue;
		json_array_foreach(ifs, k, f)
		{
			size_t n = strlen(desc);
			const char *name = json_string_value(json_object_get(f, "name"));
			snprintf(desc + n, sizeof(desc) - n, "%s%s", n ? ", " : "", name ? name : "?");
		}
		printf("interface {value=" XC_PREFIX "%s}{display=pcapline sensor %s%s%s%s}\n", id, id,
			desc[0] ? " (" : "", desc, desc[0] ? ")" : "");
	}
	json_decref(list);
	return 0;
}

/* The link type of the interface: its sensor's first interface, else Ethernet. */
static int
xc_dlts(const struct xc *x)
{
	int lt = 1;
	if (strncmp(x->iface, XC_PREFIX, strlen(XC_PREFIX)) != 0) {
		fprintf(stderr, "pcapline-extcap: %s: not an interface of pcapline\n", x->iface);
		return 1;
	}
	if (strcmp(x->iface, XC_ALL) != 0) {
		json_t *list = xc_sensors(x), *s;
		size_t i;
		json_array_foreach(list, i, s)
		{
			if (strcmp(json_string_value(json_object_get(s, "id")) ?: "",
				    x->iface + strlen(XC_PREFIX)) == 0) {
				json_t *f = json_array_get(json_object_get(s, "interfaces"), 0);
				if (f && json_integer_value(json_object_get(f, "linktype")) > 0)
					lt = (int)json_integer_value(json_object_get(f, "linktype"));
			}
		}
		json_decref(list);
	}
	int dlt = lt == 101 ? DLT_RAW : lt;
	const char *name = pcap_datalink_val_to_name(dlt), *desc = pcap_datalink_val_to_description(dlt);
	printf("dlt {number=%d}{name=%s}{display=%s}\n", lt, name ? name : "USER", desc ? desc : "link type");
	return 0;
}

static int
xc_config(const struct xc *x)
{
	printf("arg {number=0}{call=--api}{display=Receiver API}{type=string}{default=%s}"
	       "{tooltip=host:port of the receiver's api.listen; https://host:port for HTTPS}\n",
		x->api);
	printf("arg {number=1}{call=--token}{display=API token}{type=password}"
	       "{tooltip=the receiver's api.token (PCAPLINE_API_TOKEN)}\n");
	printf("arg {number=2}{call=--ca}{display=CA file}{type=fileselect}{mustexist=true}"
	       "{tooltip=PEM CA of the API's certificate (HTTPS)}\n");
	printf("arg {number=3}{call=--cert}{display=Client certificate}{type=fileselect}{mustexist=true}"
	       "{tooltip=PEM client certificate, if the API asks for one}\n");
	printf("arg {number=4}{call=--key}{display=Client key}{type=fileselect}{mustexist=true}"
	       "{tooltip=PEM key of the client certificate}\n");
	printf("arg {number=5}{call=--filter}{display=Receiver-side BPF filter}{type=string}"
	       "{tooltip=applied by the receiver before the packets leave it}\n");
	return 0;
}

static int
xc_write(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR && !xc_stop)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
xc_capture(const struct xc *x)
{
	char path[8192] = "/api/v1/live", err[512], filter[4096] = "";
	struct httpc_opts ho;
	int status = 0, rc = 1, fd = -1;
	struct httpc *h = NULL;
	char *buf = NULL;

	if (!x->fifo || strncmp(x->iface, XC_PREFIX, strlen(XC_PREFIX)) != 0) {
		fprintf(stderr, "pcapline-extcap: --capture needs --fifo and a pcapline interface\n");
		return 1;
	}
	/* Both filters apply: the dialog's (receiver side) and Wireshark's capture filter. */
	const char *f1 = x->filter && *x->filter ? x->filter : NULL,
		   *f2 = x->cfilter && *x->cfilter ? x->cfilter : NULL;
	if (f1 && f2)
		snprintf(filter, sizeof(filter), "(%s) and (%s)", f1, f2);
	else if (f1 || f2)
		snprintf(filter, sizeof(filter), "%s", f1 ? f1 : f2);
	char sep;
	if (strcmp(x->iface, XC_ALL) != 0) {
		strcat(path, "?sensor=");
		if (httpc_query_escape(path, sizeof(path), x->iface + strlen(XC_PREFIX)) != 0)
			return 1;
	} else {
		/* Sensors may differ in link type: pcapng keeps every packet, one interface
		 * per sensor interface named "<sensor>/<interface>". */
		strcat(path, "?format=pcapng");
	}
	sep = '&';
	if (filter[0]) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "%cfilter=", sep);
		if (httpc_query_escape(path, sizeof(path), filter) != 0) {
			fprintf(stderr, "pcapline-extcap: filter too long\n");
			return 1;
		}
	}
	struct sigaction sa = { .sa_handler = xc_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	xc_httpc_opts(x, &ho);
	if (!(h = httpc_get(&ho, path, &status, err, sizeof(err)))) {
		fprintf(stderr, "pcapline-extcap: %s: %s\n", x->api, err);
		goto out;
	}
	if (!(buf = malloc(64 * 1024)))
		goto out;
	if (status != 200) {
		ssize_t n = httpc_read(h, buf, 1023);
		buf[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "pcapline-extcap: the receiver refused the live stream: HTTP %d: %s", status,
			buf);
		goto out;
	}
	/* Opened once the receiver accepted: Wireshark waits for its FIFO to be opened. */
	if ((fd = open(x->fifo, O_WRONLY | O_CLOEXEC)) < 0) {
		rc = xc_stop ? 0 : 1;
		if (!xc_stop)
			fprintf(stderr, "pcapline-extcap: %s: %s\n", x->fifo, strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t n = httpc_read(h, buf, 64 * 1024);
		if (xc_stop) {
			rc = 0;
			break;
		}
		if (n == -EINTR)
			continue;
		if (n == 0) {
			fprintf(stderr, "pcapline-extcap: the receiver ended the stream\n");
			rc = 0;
			break;
		}
		if (n < 0) {
			fprintf(stderr, "pcapline-extcap: the stream broke off: %s\n", httpc_error(h));
			break;
		}
		int w = xc_write(fd, buf, (size_t)n);
		if (w == -EPIPE || (w != 0 && xc_stop)) {
			rc = 0; /* Wireshark stopped the capture */
			break;
		}
		if (w != 0) {
			fprintf(stderr, "pcapline-extcap: %s: %s\n", x->fifo, strerror(-w));
			break;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	httpc_free(h);
	return rc;
}

static void
xc_usage(FILE *out)
{
	fprintf(out,
		"usage: pcapline-extcap --extcap-interfaces\n"
		"       pcapline-extcap --extcap-interface IFACE --extcap-dlts | --extcap-config\n"
		"       pcapline-extcap --extcap-interface IFACE --capture --fifo PATH [--api HOST:PORT]\n"
		"                       [--token T] [--ca FILE] [--cert FILE --key FILE] [--filter BPF]\n"
		"                       [--extcap-capture-filter BPF]\n"
		"Wireshark runs it from its extcap folder; see the README (Wireshark).\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "extcap-interfaces", no_argument, NULL, OPT_INTERFACES },
		{ "extcap-interface", required_argument, NULL, OPT_INTERFACE },
		{ "extcap-dlts", no_argument, NULL, OPT_DLTS },
		{ "extcap-config", no_argument, NULL, OPT_CONFIG },
		{ "capture", no_argument, NULL, OPT_CAPTURE },
		{ "fifo", required_argument, NULL, OPT_FIFO },
		{ "extcap-capture-filter", required_argument, NULL, OPT_CFILTER },
		{ "extcap-version", optional_argument, NULL, OPT_VERSION },
		{ "api", required_argument, NULL, OPT_API },
		{ "token", required_argument, NULL, OPT_TOKEN },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "filter", required_argument, NULL, OPT_FILTER },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct xc x = {
		.api = xc_env("PCAPLINE_API_LISTEN", XC_DEFAULT_API),
		.token = xc_env("PCAPLINE_API_TOKEN", NULL),
		.ca = xc_env("PCAPLINE_API_CA", NULL),
		.cert = xc_env("PCAPLINE_API_CERT", NULL),
		.key = xc_env("PCAPLINE_API_KEY", NULL),
	};
	bool interfaces = false, dlts = false, config = false, capture = false, version = false;
	int ch;

	opterr = 0; /* options of newer Wireshark versions are ignored, not fatal */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_INTERFACES:
			interfaces = true;
			break;
		case OPT_INTERFACE:
			x.iface = optarg;
			break;
		case OPT_DLTS:
			dlts = true;
			break;
		case OPT_CONFIG:
			config = true;
			break;
		case OPT_CAPTURE:
			capture = true;
			break;
		case OPT_FIFO:
			x.fifo = optarg;
			break;
		case OPT_CFILTER:
			x.cfilter = optarg;
			break;
		case OPT_VERSION:
			version = true;
			break;
		case OPT_API:
			if (*optarg)
				x.api = optarg;
			break;
		case OPT_TOKEN:
			x.token = optarg;
			break;
		case OPT_CA:
			x.ca = optarg;
			break;
		case OPT_CERT:
			x.cert = optarg;
			break;
		case OPT_KEY:
			x.key = optarg;
			break;
		case OPT_FILTER:
			x.filter = optarg;
			break;
		case OPT_HELP:
			xc_usage(stdout);
			return 0;
		default:
			break;
		}
	}
	if (interfaces)
		return xc_interfaces(&x);
	if (version) {
		printf("pcapline-extcap %s\n", PCAPLINE_VERSION);
		return 0;
	}
	if ((dlts || config || capture) && !x.iface) {
		fprintf(stderr, "pcapline-extcap: --extcap-interface is required\n");
		return 1;
	}
	if (dlts)
		return xc_dlts(&x);
	if (config)
		return xc_config(&x);
	if (capture)
		return xc_capture(&x);
	xc_usage(stderr);
	return 1;
}
