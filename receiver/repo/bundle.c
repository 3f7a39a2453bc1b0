/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <pcap/pcap.h>

#include "shared/fsutil.h"
#include "shared/log.h"
#include "receiver/repo/merge.h"
#include "receiver/repo/namehist.h"
#include "shared/pcapfile.h"
#include "receiver/repo/timearg.h"

#define NS_PER_SEC         1000000000ull
#define BUNDLE_MAX_FILTERS 32

struct bundle_idb {
	const char *iface;
	uint32_t linktype;
	uint32_t snaplen;
};

struct bundle_filter {
	uint32_t linktype;
	struct bpf_program prog;
};

/* What one pass learns about a byte stream. */
struct bundle_digest {
	uint64_t bytes;
	char sha[FSU_SHA256_HEX];
};

struct bundle_state {
	struct bundle_sensor *in;
	int *fds;
	char (*fdpath)[40];
	struct merge_input *mi;
	bool ng;
	uint32_t linktype, snaplen; /* classic pcap */
	struct bundle_idb *idb;     /* pcapng */
	size_t n_idb;
	uint32_t *seg_idb; /* segment -> IDB */
	char pcap_name[FSU_NAME_MAX + 16];
	/* Pass 1 results. */
	struct bundle_digest pcap;
	uint64_t packets, first_ns, last_ns, disorder;
	FILE *names; /* the JSON, in a temporary file */
	struct bundle_digest names_dig;
	size_t names_keys, names_lines;
};

struct bundle {
	const struct bundle_opts *o;
	struct bundle_filter filters[BUNDLE_MAX_FILTERS];
	size_t n_filters;
	char *err;
	size_t errlen;
	/* Progress. */
	uint64_t total_bytes, done_bytes;
	int pass;
	struct timespec last_tick;
	bool progress_shown;
	/* Output. */
	struct archive *ar;
	time_t created;
};

/* Progress -------------------------------------------------------------------------- */

static void
progress(struct bundle *b, const char *sensor, uint64_t sensor_bytes, uint64_t packets, bool force)
{
	struct timespec now;

	if (!b->o->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!force &&
		(now.tv_sec - b->last_tick.tv_sec) * 1000000000L + (now.tv_nsec - b->last_tick.tv_nsec) <
			200000000L)
		return;
	b->last_tick = now;
	uint64_t done = b->done_bytes + sensor_bytes;
	unsigned pct = b->total_bytes ? (unsigned)(done * 100 / b->total_bytes) : 100;
	if (pct > 100)
		pct = 100;
	fprintf(stderr, "\rpcapline export: %s %3u%%  %s: %" PRIu64 " packets   ",
		b->pass == 1 ? "reading" : "writing", pct, sensor, packets);
	b->progress_shown = true;
}

static void
progress_end(struct bundle *b)
{
	if (b->progress_shown)
		fputc('\n', stderr);
	b->progress_shown = false;
}

/* BPF ------------------------------------------------------------------------------- */

static struct bpf_program *
filter_for(struct bundle *b, uint32_t linktype, const char *sensor)
{
	char perr[PCAP_ERRBUF_SIZE];
	pcap_t *dead;
	struct bundle_filter *f;

	for (size_t i = 0; i < b->n_filters; i++)
		if (b->filters[i].linktype == linktype)
			return &b->filters[i].prog;
	if (b->n_filters == BUNDLE_MAX_FILTERS) {
		snprintf(b->err, b->errlen, "more than %d link types", BUNDLE_MAX_FILTERS);
		return NULL;
	}
	dead = pcap_open_dead((int)linktype, PCAPF_MAX_CAPLEN);
	if (dead == NULL) {
		snprintf(b->err, b->errlen, "libpcap: cannot open a handle for link type %u", linktype);
		return NULL;
	}
	f = &b->filters[b->n_filters];
	if (pcap_compile(dead, &f->prog, b->o->filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
		const char *name = pcap_datalink_val_to_name((int)linktype);
		snprintf(perr, sizeof(perr), "%s", pcap_geterr(dead));
		pcap_close(dead);
		snprintf(b->err, b->errlen, "filter '%s' on sensor %s, link type %u (%s): %s", b->o->filter,
			sensor, linktype, name ? name : "unknown", perr);
		return NULL;
	}
	pcap_close(dead);
	f->linktype = linktype;
	b->n_filters++;
	return &f->prog;
}

/* Per-sensor set-up --------------------------------------------------------------------- */

static int
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			return -errno;
	}
	return 0;
}

static void
state_free(struct bundle_state *st)
{
	if (st->fds != NULL) {
		for (size_t i = 0; i < st->in->segs.n; i++)
			if (st->fds[i] >= 0)
				close(st->fds[i]);
	}
	free(st->fds);
	free(st->fdpath);
	free(st->mi);
	free(st->idb);
	free(st->seg_idb);
	if (st->names != NULL)
		fclose(st->names);
}

/*
 * Opens every segment now (the descriptor keeps a file that retention unlinks later) and
 * chooses the format: classic pcap when all segments share a link type, else pcapng with
 * one IDB per (interface, link type) in order of first appearance.
 */
static int
state_init(struct bundle *b, struct bundle_state *st, struct bundle_sensor *in)
{
	size_t n = in->segs.n;

	memset(st, 0, sizeof(*st));
	st->in = in;
	if (!fsu_name_ok(in->name)) {
		snprintf(b->err, b->errlen, "sensor id '%s' cannot name a folder in the archive", in->name);
		return -1;
	}
	st->fds = malloc((n + 1) * sizeof(*st->fds));
	st->fdpath = calloc(n + 1, sizeof(*st->fdpath));
	st->mi = calloc(n + 1, sizeof(*st->mi));
	st->idb = calloc(n + 1, sizeof(*st->idb));
	st->seg_idb = calloc(n + 1, sizeof(*st->seg_idb));
	if (st->fds == NULL || st->fdpath == NULL || st->mi == NULL || st->idb == NULL ||
		st->seg_idb == NULL) {
		snprintf(b->err, b->errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		st->fds[i] = -1;
	st->linktype = n > 0 ? in->segs.v[0].linktype : 1 /* LINKTYPE_ETHERNET for an empty file */;
	st->snaplen = 0;
	for (size_t i = 0; i < n; i++) {
		const struct repo_seg *s = &in->segs.v[i];
		size_t k;

		st->fds[i] = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (st->fds[i] < 0) {
			if (errno == EMFILE || errno == ENFILE)
				snprintf(b->err, b->errlen,
					"%s: too many open files: the window spans more "
					"segments than the descriptor limit (ulimit -n)",
					s->path);
			else
				snprintf(b->err, b->errlen, "%s: %s%s", s->path, strerror(errno),
					errno == ENOENT ? " (deleted by retention since the index was read? "
							  "export again, or snapshot the window first)"
							: "");
			return -1;
		}
		snprintf(st->fdpath[i], sizeof(st->fdpath[i]), "/proc/self/fd/%d", st->fds[i]);
		st->mi[i].path = st->fdpath[i];
		st->mi[i].min_ns = s->min_ns;
		if (s->linktype != st->linktype)
			st->ng = true;
		if (s->snaplen > st->snaplen)
			st->snaplen = s->snaplen;
		for (k = 0; k < st->n_idb; k++)
			if (st->idb[k].linktype == s->linktype && strcmp(st->idb[k].iface, s->iface) == 0)
				break;
		if (k == st->n_idb)
			st->idb[st->n_idb++] = (struct bundle_idb){ s->iface, s->linktype, 0 };
		if (s->snaplen > st->idb[k].snaplen)
			st->idb[k].snaplen = s->snaplen;
		st->seg_idb[i] = (uint32_t)k;
	}
	if (st->snaplen == 0)
		st->snaplen = PCAPF_MAX_CAPLEN;
	/* Compile the filter for every link type now: a bad one fails before any work. */
	if (b->o->filter != NULL && b->o->filter[0] != '\0') {
		if (filter_for(b, st->linktype, in->name) == NULL)
			return -1;
		for (size_t k = 0; k < st->n_idb; k++)
			if (filter_for(b, st->idb[k].linktype, in->name) == NULL)
				return -1;
	}
	snprintf(st->pcap_name, sizeof(st->pcap_name), "%s.%s", in->name, st->ng ? "pcapng" : "pcap");
	return 0;
}

/* The pcap stream ------------------------------------------------------------------------ */

struct sink_ctx {
	struct bundle *b;
	struct fsu_sha sha;
	uint64_t bytes;
	uint64_t limit; /* pass 2: the size announced in the tar header */
};

static int
sink_hash(void *arg, const void *buf, size_t len)
{
	struct sink_ctx *c = arg;

	fsu_sha_update(&c->sha, buf, len);
	c->bytes += len;
	return 0;
}

static int
sink_archive(void *arg, const void *buf, size_t len)
{
	struct sink_ctx *c = arg;
	const char *p = buf;

	if (len > c->limit - c->bytes)
		return -EBADE; /* the data changed between the passes */
	fsu_sha_update(&c->sha, buf, len);
	c->bytes += len;
	while (len > 0) {
		la_ssize_t w = archive_write_data(c->b->ar, p, len);
		if (w <= 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Describes a negative code from the output side (the sink or the serializer). */
static void
output_error(struct bundle *b, const struct bundle_sensor *in, int rc)
{
	if (rc == -EBADE)
		snprintf(b->err, b->errlen,
			"sensor %s: the data changed between the two passes "
			"(a segment was modified); nothing written",
			in->name);
	else if (b->ar != NULL && archive_error_string(b->ar) != NULL)
		snprintf(b->err, b->errlen, "writing the archive: %s", archive_error_string(b->ar));
	else
		snprintf(b->err, b->errlen, "writing the archive: %s", strerror(-rc));
}

/* Runs the merge of one sensor into sink. Returns 0 or -1 with b->err set. */
static int
run_pcap(struct bundle *b, struct bundle_state *st, pcapw_sink sink, void *arg)
{
	const struct bundle_sensor *in = st->in;
	const bool filtering = b->o->filter != NULL && b->o->filter[0] != '\0';
	struct pcapw *out = NULL;
	struct merge *m = NULL;
	struct merge_rec mr;
	char appl[64];
	uint64_t packets = 0, first = 0, last = 0;
	int rc = -1, orc, mrc;

	out = pcapw_new_sink(sink, arg);
	m = merge_new(st->mi, in->segs.n, b->o->from_ns, b->o->to_ns);
	if (out == NULL || m == NULL) {
		snprintf(b->err, b->errlen, "out of memory");
		goto out;
	}
	if (st->ng) {
		snprintf(appl, sizeof(appl), "pcapline %s", PCAPLINE_VERSION);
		orc = pcapw_ng_section(out, appl);
		for (size_t i = 0; orc == 0 && i < st->n_idb; i++)
			orc = pcapw_ng_iface(out, st->idb[i].linktype, st->idb[i].snaplen, st->idb[i].iface);
	} else {
		orc = pcapw_pcap_header(out, st->linktype, st->snaplen);
	}
	if (orc != 0) {
		output_error(b, in, orc);
		goto out;
	}
	while ((mrc = merge_next(m, &mr)) == 1) {
		const struct repo_seg *s = &in->segs.v[mr.input];

		if (mr.rec.iface != 0 || mr.ifc == NULL || mr.ifc->linktype != s->linktype) {
			snprintf(b->err, b->errlen,
				"%s: link type %u on interface %u, the index says "
				"link type %u on one interface",
				s->path, mr.ifc ? mr.ifc->linktype : 0, mr.rec.iface, s->linktype);
			goto out;
		}
		if (filtering) {
			struct bpf_program *prog = filter_for(b, s->linktype, in->name);
			struct pcap_pkthdr h = { .caplen = mr.rec.caplen, .len = mr.rec.origlen };

			if (prog == NULL)
				goto out;
			if (pcap_offline_filter(prog, &h, mr.rec.data) == 0)
				continue;
		}
		orc = pcapw_write_if(
			out, st->seg_idb[mr.input], mr.rec.ts_ns, mr.rec.data, mr.rec.caplen, mr.rec.origlen);
		if (orc == -EOVERFLOW) {
			snprintf(b->err, b->errlen,
				"%s: timestamp %" PRIu64 " ns is after 2106, beyond "
				"classic pcap",
				s->path, mr.rec.ts_ns);
			goto out;
		}
		if (orc != 0) {
			output_error(b, in, orc);
			goto out;
		}
		if (packets++ == 0)
			first = mr.rec.ts_ns;
		last = mr.rec.ts_ns;
		if ((packets & 8191) == 0)
			progress(b, in->name, merge_bytes_read(m), packets, false);
	}
	if (mrc < 0) {
		snprintf(b->err, b->errlen, "%s: %s", in->segs.v[merge_failed(m)].path, pcapf_strerror(mrc));
		goto out;
	}
	if ((orc = pcapw_flush(out)) != 0) {
		output_error(b, in, orc);
		goto out;
	}
	st->packets = packets;
	st->first_ns = first;
	st->last_ns = last;
	st->disorder = merge_disorder(m);
	log_debug("export: %s: %" PRIu64 " packets, at most %zu segments open at once", in->name, packets,
		merge_max_open(m));
	rc = 0;
out:
	merge_free(m);
	pcapw_discard(out);
	return rc;
}

static uint64_t
segs_bytes(const struct bundle_state *st)
{
	uint64_t t = 0;

	for (size_t i = 0; i < st->in->segs.n; i++)
		t += st->in->segs.v[i].bytes;
	return t;
}

static int
pass1(struct bundle *b, struct bundle_state *st)
{
	struct sink_ctx c = { .b = b };
	struct namehist *h;
	char buf[1 << 16];
	size_t n;
	int rc;

	if (fsu_sha_init(&c.sha) != 0) {
		snprintf(b->err, b->errlen, "SHA-256 unavailable");
		return -1;
	}
	rc = run_pcap(b, st, sink_hash, &c);
	if (rc != 0) {
		fsu_sha_abort(&c.sha);
		return -1;
	}
	fsu_sha_final(&c.sha, st->pcap.sha);
	st->pcap.bytes = c.bytes;
	b->done_bytes += segs_bytes(st);
	progress(b, st->in->name, 0, st->packets, true);

	/* The name history goes to an unnamed temporary file: it can be large (the full map at
	 * every change) and its size must be known before its tar header. */
	h = namehist_load(st->in->names_path, b->o->from_ns, b->o->to_ns, b->err, b->errlen);
	if (h == NULL)
		return -1;
	st->names = tmpfile();
	if (st->names == NULL) {
		snprintf(b->err, b->errlen, "temporary file: %s", strerror(errno));
		namehist_free(h);
		return -1;
	}
	rc = namehist_write_kubeshark(h, st->names, &st->names_keys);
	st->names_lines = namehist_lines(h);
	namehist_free(h);
	if (rc != 0 || fflush(st->names) != 0) {
		snprintf(b->err, b->errlen, "temporary file: %s", strerror(rc ? -rc : errno));
		return -1;
	}
	rewind(st->names);
	if (fsu_sha_init(&c.sha) != 0) {
		snprintf(b->err, b->errlen, "SHA-256 unavailable");
		return -1;
	}
	st->names_dig.bytes = 0;
	while ((n = fread(buf, 1, sizeof(buf), st->names)) > 0) {
		fsu_sha_update(&c.sha, buf, n);
		st->names_dig.bytes += n;
	}
	fsu_sha_final(&c.sha, st->names_dig.sha);
	if (ferror(st->names)) {
		snprintf(b->err, b->errlen, "temporary file: read error");
		return -1;
	}
	return 0;
}

/* Manifest ----------------------------------------------------------------------------- */

#define BUNDLE_FORMAT "pcapline-export"

static json_t *
jtime(uint64_t ns)
{
	char t[TIMEARG_LEN];

	timearg_format(ns, t);
	return json_string(t);
}

static char *
manifest(struct bundle *b, struct bundle_state *st, size_t n)
{
	const struct bundle_opts *o = b->o;
	json_t *root = json_object(), *win = json_object(), *sensors = json_array(), *files = json_array(),
	       *src = json_object();
	char sw[64], *text;

	snprintf(sw, sizeof(sw), "pcapline %s", PCAPLINE_VERSION);
	json_object_set_new(root, "format", json_string(BUNDLE_FORMAT));
	json_object_set_new(root, "format_version", json_integer(1));
	json_object_set_new(root, "software", json_string(sw));
	json_object_set_new(root, "created", jtime((uint64_t)b->created * NS_PER_SEC));
	json_object_set_new(src, "kind", json_string(o->source_kind));
	json_object_set_new(src, "name", json_string(o->source_name));
	json_object_set_new(root, "source", src);
	json_object_set_new(win, "from", jtime(o->from_ns));
	json_object_set_new(win, "to", jtime(o->to_ns));
	json_object_set_new(win, "from_ns", json_integer((json_int_t)o->from_ns));
	json_object_set_new(win, "to_ns", json_integer((json_int_t)o->to_ns));
	json_object_set_new(win, "interval", json_string("[from, to)"));
	json_object_set_new(root, "window", win);
	json_object_set_new(root, "filter", o->filter && o->filter[0] ? json_string(o->filter) : json_null());
	json_object_set_new(root, "name_resolution_history_unit", json_string("seconds"));
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_object(), *f = json_object(), *g = json_object(), *lt = json_array();
		char path[2 * FSU_NAME_MAX + 64];

		json_object_set_new(s, "id", json_string(st[i].in->name));
		json_object_set_new(s, "segments", json_integer((json_int_t)st[i].in->segs.n));
		json_object_set_new(s, "packets", json_integer((json_int_t)st[i].packets));
		json_object_set_new(s, "out_of_order", json_integer((json_int_t)st[i].disorder));
		json_array_append_new(sensors, s);

		fsu_path(path, sizeof(path), "%s/%s", st[i].in->name, st[i].pcap_name);
		json_object_set_new(f, "path", json_string(path));
		json_object_set_new(f, "sensor", json_string(st[i].in->name));
		json_object_set_new(f, "type", json_string(st[i].ng ? "pcapng" : "pcap"));
		json_object_set_new(f, "bytes", json_integer((json_int_t)st[i].pcap.bytes));
		json_object_set_new(f, "sha256", json_string(st[i].pcap.sha));
		json_object_set_new(f, "packets", json_integer((json_int_t)st[i].packets));
		if (st[i].packets > 0) {
			json_object_set_new(f, "first", jtime(st[i].first_ns));
			json_object_set_new(f, "last", jtime(st[i].last_ns));
			json_object_set_new(f, "first_ns", json_integer((json_int_t)st[i].first_ns));
			json_object_set_new(f, "last_ns", json_integer((json_int_t)st[i].last_ns));
		} else {
			json_object_set_new(f, "first", json_null());
			json_object_set_new(f, "last", json_null());
		}
		if (st[i].ng) {
			for (size_t k = 0; k < st[i].n_idb; k++)
				json_array_append_new(lt, json_integer(st[i].idb[k].linktype));
		} else {
			json_array_append_new(lt, json_integer(st[i].linktype));
		}
		json_object_set_new(f, "linktypes", lt);
		json_array_append_new(files, f);

		fsu_path(path, sizeof(path), "%s/%s", st[i].in->name, BUNDLE_NAMES_FILE);
		json_object_set_new(g, "path", json_string(path));
		json_object_set_new(g, "sensor", json_string(st[i].in->name));
		json_object_set_new(g, "type", json_string("name_resolution_history"));
		json_object_set_new(g, "bytes", json_integer((json_int_t)st[i].names_dig.bytes));
		json_object_set_new(g, "sha256", json_string(st[i].names_dig.sha));
		json_object_set_new(g, "keys", json_integer((json_int_t)st[i].names_keys));
		json_array_append_new(files, g);
	}
	json_object_set_new(root, "sensors", sensors);
	json_object_set_new(root, "files", files);
	text = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	return text;
}

int
bundle_manifest_read(const char *path, bool (*fn)(void *arg, size_t i, const struct bundle_listed *f),
	void *arg, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *files, *f, *fmt;
	size_t i;
	int rc = 0;

	if (root == NULL) {
		snprintf(err, errlen, "not valid JSON: %s", jerr.text);
		return -1;
	}
	fmt = json_object_get(root, "format");
	if (!json_is_string(fmt) || strcmp(json_string_value(fmt), BUNDLE_FORMAT) != 0) {
		json_decref(root);
		return 1;
	}
	files = json_object_get(root, "files");
	if (!json_is_array(files)) {
		snprintf(err, errlen, "no file list");
		json_decref(root);
		return -1;
	}
	json_array_foreach(files, i, f)
	{
		json_t *p = json_object_get(f, "path"), *sha = json_object_get(f, "sha256"),
		       *bytes = json_object_get(f, "bytes");

		if (!json_is_string(p) || !json_is_string(sha) || !json_is_integer(bytes)) {
			snprintf(err, errlen, "file %zu: path, sha256 or bytes missing", i);
			rc = -1;
			break;
		}
		struct bundle_listed l = { json_string_value(p), json_string_value(sha),
			(uint64_t)json_integer_value(bytes) };
		if (!fn(arg, i, &l)) {
			rc = 2;
			break;
		}
	}
	json_decref(root);
	return rc;
}

/* Archive ----------------------------------------------------------------------------- */

static int
entry_header(struct bundle *b, const char *path, bool dir, uint64_t size)
{
	struct archive_entry *e = archive_entry_new();
	int rc;

	if (e == NULL) {
		snprintf(b->err, b->errlen, "out of memory");
		return -1;
	}
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
	archive_entry_set_perm(e, dir ? 0755 : 0644);
	archive_entry_set_size(e, dir ? 0 : (la_int64_t)size);
	archive_entry_set_mtime(e, b->created, 0);
	rc = archive_write_header(b->ar, e);
	archive_entry_free(e);
	if (rc != ARCHIVE_OK) {
		snprintf(b->err, b->errlen, "writing the archive: %s", archive_error_string(b->ar));
		return -1;
	}
	return 0;
}

static int
entry_data(struct bundle *b, const void *p, size_t len)
{
	const char *c = p;

	while (len > 0) {
		la_ssize_t w = archive_write_data(b->ar, c, len);
		if (w <= 0) {
			snprintf(b->err, b->errlen, "writing the archive: %s",
				archive_error_string(b->ar) ? archive_error_string(b->ar) : "short write");
			return -1;
		}
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

static int
pass2(struct bundle *b, struct bundle_state *st)
{
	struct sink_ctx c = { .b = b, .limit = st->pcap.bytes };
	char path[2 * FSU_NAME_MAX + 64], sha[FSU_SHA256_HEX], buf[1 << 16];
	uint64_t names = 0;
	size_t n;
	int rc;

	fsu_path(path, sizeof(path), "%s/", st->in->name);
	if (entry_header(b, path, true, 0) != 0)
		return -1;
	fsu_path(path, sizeof(path), "%s/%s", st->in->name, st->pcap_name);
	if (entry_header(b, path, false, st->pcap.bytes) != 0)
		return -1;
	if (fsu_sha_init(&c.sha) != 0) {
		snprintf(b->err, b->errlen, "SHA-256 unavailable");
		return -1;
	}
	rc = run_pcap(b, st, sink_archive, &c);
	if (rc != 0) {
		fsu_sha_abort(&c.sha);
		return -1;
	}
	fsu_sha_final(&c.sha, sha);
	if (c.bytes != st->pcap.bytes || strcmp(sha, st->pcap.sha) != 0) {
		snprintf(b->err, b->errlen,
			"sensor %s: the data changed between the two passes "
			"(a segment was modified); nothing written",
			st->in->name);
		return -1;
	}
	b->done_bytes += segs_bytes(st);
	progress(b, st->in->name, 0, st->packets, true);

	fsu_path(path, sizeof(path), "%s/%s", st->in->name, BUNDLE_NAMES_FILE);
	if (entry_header(b, path, false, st->names_dig.bytes) != 0)
		return -1;
	rewind(st->names);
	while ((n = fread(buf, 1, sizeof(buf), st->names)) > 0) {
		if (names + n > st->names_dig.bytes)
			n = (size_t)(st->names_dig.bytes - names);
		if (entry_data(b, buf, n) != 0)
			return -1;
		names += n;
	}
	if (names != st->names_dig.bytes) {
		snprintf(b->err, b->errlen, "temporary file shrank");
		return -1;
	}
	return 0;
}

int
bundle_export(const struct bundle_opts *o, struct bundle_sensor *sensors, size_t n, char *err, size_t errlen)
{
	struct bundle b = { .o = o, .err = err, .errlen = errlen };
	struct bundle_state *st = calloc(n + 1, sizeof(*st));
	struct fsu_out out = { .fd = -1 };
	char level[8], *man = NULL;
	size_t inited = 0;
	int rc = -1;

	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *label = o->output != NULL ? o->output : "output";

	if (o->output != NULL && strcmp(o->output, "-") == 0 && isatty(STDOUT_FILENO)) {
		snprintf(err, errlen, "-o -: standard output is a terminal; redirect it or name a file");
		free(st);
		return -1;
	}
	b.created = time(NULL);
	(void)raise_fd_limit();
	/* The output exists (unnamed) from the start, so that an unwritable target fails
	 * before the long work, and nothing ever appears under its name half-written. */
	if (o->output == NULL)
		out.fd = o->out_fd;
	else if ((rc = fsu_out_open(&out, o->output, 0644)) != 0) {
		snprintf(err, errlen, "%s: %s", label, strerror(-rc));
		rc = -1;
		goto out;
	}
	rc = -1;
	for (size_t i = 0; i < n; i++) {
		if (state_init(&b, &st[i], &sensors[i]) != 0) {
			inited = i + 1;
			goto out;
		}
		inited = i + 1;
		b.total_bytes += segs_bytes(&st[i]);
	}
	b.pass = 1;
	for (size_t i = 0; i < n; i++)
		if (pass1(&b, &st[i]) != 0)
			goto out;
	progress_end(&b);

	man = manifest(&b, st, n);
	b.ar = archive_write_new();
	if (man == NULL || b.ar == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(level, sizeof(level), "%d", o->gzip_level);
	if (archive_write_add_filter_gzip(b.ar) != ARCHIVE_OK ||
		archive_write_set_filter_option(b.ar, "gzip", "compression-level", level) != ARCHIVE_OK ||
		archive_write_set_format_pax_restricted(b.ar) != ARCHIVE_OK ||
		/* libarchive pads the last block of a pipe; a file is not padded. */
		archive_write_set_bytes_in_last_block(b.ar, o->output == NULL ? 1 : -1) != ARCHIVE_OK ||
		archive_write_open_fd(b.ar, out.fd) != ARCHIVE_OK) {
		snprintf(err, errlen, "libarchive: %s", archive_error_string(b.ar));
		goto out;
	}
	if (entry_header(&b, BUNDLE_MANIFEST, false, strlen(man)) != 0 ||
		entry_data(&b, man, strlen(man)) != 0)
		goto out;
	b.pass = 2;
	b.done_bytes = 0;
	for (size_t i = 0; i < n; i++)
		if (pass2(&b, &st[i]) != 0)
			goto out;
	progress_end(&b);
	if (archive_write_close(b.ar) != ARCHIVE_OK) {
		snprintf(err, errlen, "writing the archive: %s", archive_error_string(b.ar));
		goto out;
	}
	if (o->output != NULL && (rc = fsu_out_commit(&out)) != 0) {
		snprintf(err, errlen, "%s: %s", label, strerror(-rc));
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	progress_end(&b);
	if (b.ar != NULL)
		archive_write_free(b.ar);
	if (rc != 0 && o->output != NULL)
		fsu_out_abort(&out);
	free(man);
	for (size_t i = 0; i < inited; i++)
		state_free(&st[i]);
	for (size_t i = 0; i < b.n_filters; i++)
		pcap_freecode(&b.filters[i].prog);
	free(st);
	return rc;
}
