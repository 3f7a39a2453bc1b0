/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline snapshot create | list | export | verify | delete.
 *
 * A snapshot is a small repository of its own, DIR/snapshots/NAME/:
 *   manifest.json                          window, sensors, every file with its SHA-256
 *   sensors/<id>/segments/<segment>.pcap   every segment overlapping the window, whole
 *   sensors/<id>/names.jsonl               the name lines the window needs
 * Segments are hard links when the snapshot is on the segments' file system (no copy,
 * and retention unlinking the original leaves the snapshot's link), copies otherwise.
 * Everything is built under a hidden name, renamed into place, then made read-only (a
 * hard link shares its inode, so the original segment, already closed, becomes
 * read-only too). Retention only ever looks at sensors/<id>/segments, never snapshots/.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "receiver/cli/cli.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "receiver/repo/namehist.h"
#include "receiver/repo/timearg.h"

#define SNAP_MANIFEST     "manifest.json"
#define SNAP_MAX_MANIFEST (256u << 20)

enum {
	OPT_FROM = 256,
	OPT_TO,
	OPT_FILTER,
	OPT_LEVEL
};

/* Which options a snapshot command takes (--dir always). */
enum {
	SO_WINDOW = 1 << 0, /* --from, --to */
	SO_SENSOR = 1 << 1,
	SO_OUTPUT = 1 << 2, /* -o, --filter, --gzip-level */
};

struct snap_args {
	const char *dir, *name, *from, *to, *filter, *output;
	struct cli_strv sensors;
	int level;
};

static int
snap_parse(int argc, char **argv, struct snap_args *a, unsigned allowed)
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
	int ch, idx;

	a->dir = cli_default_dir();
	a->level = 1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:s:o:h", opts, &idx)) != -1) {
		unsigned need = ch == OPT_FROM || ch == OPT_TO             ? SO_WINDOW
			: ch == 's'                                        ? SO_SENSOR
			: ch == 'o' || ch == OPT_FILTER || ch == OPT_LEVEL ? SO_OUTPUT
									   : 0;

		if (need != 0 && !(allowed & need)) {
			log_warnx("snapshot %s takes no %s%s", argv[0], ch == 's' || ch == 'o' ? "" : "--",
				ch == 's'           ? "--sensor"
					: ch == 'o' ? "-o"
						    : opts[idx].name);
			return -1;
		}
		switch (ch) {
		case 'd':
			a->dir = optarg;
			break;
		case OPT_FROM:
			a->from = optarg;
			break;
		case OPT_TO:
			a->to = optarg;
			break;
		case 's':
			if (cli_add_sensors(&a->sensors, optarg) != 0)
				return -1;
			break;
		case OPT_FILTER:
			a->filter = optarg;
			break;
		case 'o':
			a->output = optarg;
			break;
		case OPT_LEVEL:
			a->level = atoi(optarg);
			if (a->level < 1 || a->level > 9) {
				log_warnx("--gzip-level: 1 (fast) .. 9 (small)");
				return -1;
			}
			break;
		default:
			return -1;
		}
	}
	if (optind < argc)
		a->name = argv[optind++];
	if (optind < argc) {
		log_warnx("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
}

static char *
snap_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/snapshots/%s", dir, name) < 0)
		return NULL;
	return p;
}

static int
need_name(const struct snap_args *a)
{
	if (a->name == NULL) {
		log_warnx("a snapshot NAME is required");
		return -1;
	}
	if (!fsu_name_ok(a->name)) {
		log_warnx("'%s' is not a snapshot name (letters, digits, '.', '_', '-'; not starting "
			  "with '.')",
			a->name);
		return -1;
	}
	return 0;
}

/* Manifest reading ----------------------------------------------------------------------- */

struct snap_info {
	json_t *root;
	uint64_t from_ns, to_ns;
	struct repo_seglist segs;
	struct cli_strv sensors;
};

static void
snap_info_free(struct snap_info *si)
{
	json_decref(si->root);
	repo_seglist_free(&si->segs);
	cli_strv_free(&si->sensors);
}

static uint64_t
ju64(json_t *o, const char *key, bool *ok)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		*ok = false;
		return 0;
	}
	return (uint64_t)json_integer_value(v);
}

static const char *
jstr(json_t *o, const char *key, bool *ok)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v)) {
		*ok = false;
		return "";
	}
	return json_string_value(v);
}

/* Loads and checks DIR/snapshots/NAME/manifest.json. Returns 0 or -1 after logging. */
static int
snap_load(const char *snapdir, struct snap_info *si)
{
	char path[4096];
	json_error_t jerr;
	json_t *win, *files, *sensors, *f;
	size_t i;
	bool ok = true;

	memset(si, 0, sizeof(*si));
	fsu_path(path, sizeof(path), "%s/%s", snapdir, SNAP_MANIFEST);
	si->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (si->root == NULL) {
		log_warnx("%s: %s", path, jerr.text);
		return -1;
	}
	if (strcmp(jstr(si->root, "format", &ok), "pcapline-snapshot") != 0) {
		log_warnx("%s: not a pcapline snapshot manifest", path);
		goto fail;
	}
	win = json_object_get(si->root, "window");
	si->from_ns = ju64(win, "from_ns", &ok);
	si->to_ns = ju64(win, "to_ns", &ok);
	files = json_object_get(si->root, "files");
	sensors = json_object_get(si->root, "sensors");
	if (!ok || !json_is_array(files) || !json_is_array(sensors) || si->from_ns >= si->to_ns) {
		log_warnx("%s: window, sensors or files missing or malformed", path);
		goto fail;
	}
	json_array_foreach(sensors, i, f)
	{
		if (!json_is_string(f) || cli_add_sensors(&si->sensors, json_string_value(f)) != 0) {
			log_warnx("%s: bad sensor entry", path);
			goto fail;
		}
	}
	json_array_foreach(files, i, f)
	{
		char full[4096];
		struct repo_seg s = { 0 };

		if (strcmp(jstr(f, "type", &ok), "segment") != 0)
			continue;
		s.sensor = (char *)jstr(f, "sensor", &ok);
		s.rel = (char *)jstr(f, "path", &ok);
		s.iface = (char *)jstr(f, "iface", &ok);
		s.linktype = (uint32_t)ju64(f, "linktype", &ok);
		s.snaplen = (uint32_t)ju64(f, "snaplen", &ok);
		s.min_ns = ju64(f, "min_ns", &ok);
		s.max_ns = ju64(f, "max_ns", &ok);
		s.packets = ju64(f, "packets", &ok);
		s.bytes = ju64(f, "bytes", &ok);
		if (!ok || !fsu_relpath_ok(s.rel) || !fsu_name_ok(s.sensor)) {
			log_warnx("%s: malformed file entry %zu", path, i);
			goto fail;
		}
		fsu_path(full, sizeof(full), "%s/%s", snapdir, s.rel);
		s.path = full;
		if (repo_seglist_add(&si->segs, &s) != 0) {
			log_warnx("out of memory");
			goto fail;
		}
	}
	return 0;
fail:
	snap_info_free(si);
	return -1;
}

/* create ----------------------------------------------------------------------------- */

static json_t *
jtime(uint64_t ns)
{
	char t[TIMEARG_LEN];

	timearg_format(ns, t);
	return json_string(t);
}

static int
link_or_copy(const char *src, const char *dst, bool *linked)
{
	int rc;

	if (link(src, dst) == 0) {
		*linked = true;
		return 0;
	}
	rc = -errno;
	if (rc != -EXDEV && rc != -EPERM && rc != -EMLINK && rc != -EACCES)
		return rc;
	*linked = false;
	return fsu_copy(src, dst, 0444);
}

static int
snap_create(struct snap_args *a)
{
	struct repo *r = NULL;
	struct bundle_sensor *bs = NULL;
	size_t n = 0;
	char err[1024], *snaps = NULL, *final = NULL, *staging = NULL;
	json_t *root = NULL, *files = NULL, *sensors = NULL, *win;
	uint64_t from, to, packets = 0, bytes = 0, segments = 0, links = 0;
	int rc = EXIT_CONFIG;

	if (need_name(a) != 0 || cli_window(a->from, a->to, &from, &to) != 0)
		return EXIT_CONFIG;
	rc = EXIT_FAIL;
	if ((r = repo_open(a->dir, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return EXIT_FAIL;
	}
	if (cli_collect(r, from, to, &a->sensors, &bs, &n) != 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		segments += bs[i].segs.n;
	if (segments == 0) {
		log_warnx("no segment overlaps the window: nothing to keep");
		goto out;
	}
	if (asprintf(&snaps, "%s/snapshots", a->dir) < 0 || (final = snap_path(a->dir, a->name)) == NULL ||
		asprintf(&staging, "%s/.%s.tmp-XXXXXX", snaps, a->name) < 0) {
		log_warnx("out of memory");
		goto out;
	}
	if ((rc = fsu_mkdirs(snaps, 0755)) != 0) {
		log_warnx("%s: %s", snaps, strerror(-rc));
		rc = EXIT_FAIL;
		goto out;
	}
	rc = EXIT_FAIL;
	if (access(final, F_OK) == 0) {
		log_warnx("snapshot '%s' exists already", a->name);
		goto out;
	}
	if (mkdtemp(staging) == NULL) {
		log_warnx("%s: %s", staging, strerror(errno));
		free(staging);
		staging = NULL;
		goto out;
	}
	(void)chmod(staging, 0755); /* mkdtemp's 0700; read-only (0555) at the end */
	root = json_object();
	files = json_array();
	sensors = json_array();
	for (size_t i = 0; i < n; i++) {
		char dst[4096], segdir[4096], sha[FSU_SHA256_HEX];
		struct namehist *h;

		json_array_append_new(sensors, json_string(bs[i].name));
		fsu_path(segdir, sizeof(segdir), "%s/sensors/%s/segments", staging, bs[i].name);
		if ((rc = fsu_mkdirs(segdir, 0755)) != 0) {
			log_warnx("%s: %s", segdir, strerror(-rc));
			rc = EXIT_FAIL;
			goto fail;
		}
		for (size_t k = 0; k < bs[i].segs.n; k++) {
			const struct repo_seg *s = &bs[i].segs.v[k];
			const char *base = strrchr(s->rel, '/') ? strrchr(s->rel, '/') + 1 : s->rel;
			char rel[4096];
			uint64_t size;
			bool linked = false;
			json_t *f = json_object();

			snprintf(rel, sizeof(rel), "sensors/%s/segments/%s", bs[i].name, base);
			fsu_path(dst, sizeof(dst), "%s/%s", staging, rel);
			int e = link_or_copy(s->path, dst, &linked);
			if (e == 0)
				e = fsu_sha256_file(dst, sha, &size);
			if (e != 0) {
				log_warnx("%s: %s%s", s->path, strerror(-e),
					e == -ENOENT ? " (removed by retention meanwhile? try again)" : "");
				json_decref(f);
				goto fail;
			}
			links += linked;
			packets += s->packets;
			bytes += size;
			json_object_set_new(f, "path", json_string(rel));
			json_object_set_new(f, "type", json_string("segment"));
			json_object_set_new(f, "sensor", json_string(bs[i].name));
			json_object_set_new(f, "iface", json_string(s->iface));
			json_object_set_new(f, "linktype", json_integer(s->linktype));
			json_object_set_new(f, "snaplen", json_integer(s->snaplen));
			json_object_set_new(f, "min_ns", json_integer((json_int_t)s->min_ns));
			json_object_set_new(f, "max_ns", json_integer((json_int_t)s->max_ns));
			json_object_set_new(f, "packets", json_integer((json_int_t)s->packets));
			json_object_set_new(f, "bytes", json_integer((json_int_t)size));
			json_object_set_new(f, "sha256", json_string(sha));
			json_array_append_new(files, f);
		}
		/* The names the window needs: what is in effect at `from`, then the changes. */
		h = namehist_load(bs[i].names_path, from, to, err, sizeof(err));
		if (h == NULL) {
			log_warnx("%s", err);
			goto fail;
		}
		if (namehist_lines(h) > 0) {
			char rel[4096];
			size_t lines = 0;
			uint64_t size;
			FILE *nf;
			json_t *f;

			snprintf(rel, sizeof(rel), "sensors/%s/names.jsonl", bs[i].name);
			fsu_path(dst, sizeof(dst), "%s/%s", staging, rel);
			nf = fopen(dst, "wxe");
			int e = nf == NULL ? -errno : namehist_write_jsonl(h, nf, &lines);
			if (nf != NULL && (fflush(nf) != 0 || fsync(fileno(nf)) != 0) && e == 0)
				e = -errno;
			if (nf != NULL && fclose(nf) != 0 && e == 0)
				e = -errno;
			if (e == 0)
				e = fsu_sha256_file(dst, sha, &size);
			namehist_free(h);
			if (e != 0) {
				log_warnx("%s: %s", dst, strerror(-e));
				goto fail;
			}
			f = json_object();
			json_object_set_new(f, "path", json_string(rel));
			json_object_set_new(f, "type", json_string("names"));
			json_object_set_new(f, "sensor", json_string(bs[i].name));
			json_object_set_new(f, "lines", json_integer((json_int_t)lines));
			json_object_set_new(f, "bytes", json_integer((json_int_t)size));
			json_object_set_new(f, "sha256", json_string(sha));
			json_array_append_new(files, f);
		} else {
			namehist_free(h);
		}
		fsu_path(dst, sizeof(dst), "%s/sensors/%s", staging, bs[i].name);
		(void)fsu_fsync_path(segdir);
		(void)fsu_fsync_path(dst);
	}
	{
		char sw[64], path[4096];
		char *text;
		FILE *mf;
		int e;

		snprintf(sw, sizeof(sw), "pcapline %s", PCAPLINE_VERSION);
		json_object_set_new(root, "format", json_string("pcapline-snapshot"));
		json_object_set_new(root, "format_version", json_integer(1));
		json_object_set_new(root, "software", json_string(sw));
		json_object_set_new(root, "name", json_string(a->name));
		json_object_set_new(root, "created", jtime(timearg_now()));
		json_object_set_new(root, "source", json_string(a->dir));
		win = json_object();
		json_object_set_new(win, "from", jtime(from));
		json_object_set_new(win, "to", jtime(to));
		json_object_set_new(win, "from_ns", json_integer((json_int_t)from));
		json_object_set_new(win, "to_ns", json_integer((json_int_t)to));
		json_object_set_new(win, "interval", json_string("[from, to)"));
		json_object_set_new(root, "window", win);
		json_object_set_new(root, "sensors", sensors);
		sensors = NULL;
		json_object_set_new(root, "segments", json_integer((json_int_t)segments));
		json_object_set_new(root, "packets", json_integer((json_int_t)packets));
		json_object_set_new(root, "bytes", json_integer((json_int_t)bytes));
		json_object_set_new(root, "files", files);
		files = NULL;
		text = json_dumps(root, JSON_INDENT(2));
		fsu_path(path, sizeof(path), "%s/%s", staging, SNAP_MANIFEST);
		mf = fopen(path, "wxe");
		e = (text == NULL || mf == NULL) ? -EIO : 0;
		if (e == 0 &&
			(fputs(text, mf) < 0 || fputc('\n', mf) < 0 || fflush(mf) != 0 ||
				fsync(fileno(mf)) != 0))
			e = -errno;
		if (mf != NULL && fclose(mf) != 0 && e == 0)
			e = -errno;
		free(text);
		if (e != 0) {
			log_warnx("%s: cannot write", path);
			goto fail;
		}
		(void)fsu_fsync_path(staging);
	}
	if (renameat2(AT_FDCWD, staging, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
		log_warnx("%s: %s", final, errno == EEXIST ? "snapshot exists already" : strerror(errno));
		goto fail;
	}
	(void)fsu_fsync_path(snaps);
	free(staging);
	staging = NULL;
	if ((rc = fsu_make_readonly(final)) != 0)
		log_warnx("%s: cannot make read-only: %s", final, strerror(-rc));
	log_info("snapshot %s: %zu sensor%s, %" PRIu64 " segments (%" PRIu64 " hard links, %" PRIu64
		 " copies), %" PRIu64 " packets, %" PRIu64 " bytes",
		a->name, n, n == 1 ? "" : "s", segments, links, segments - links, packets, bytes);
	rc = 0;
	goto out;
fail:
	rc = EXIT_FAIL;
	if (staging != NULL)
		(void)fsu_rmtree(staging);
out:
	json_decref(root);
	json_decref(files);
	json_decref(sensors);
	free(staging);
	free(final);
	free(snaps);
	cli_sensors_free(bs, n);
	repo_free(r);
	return rc;
}

/* list ------------------------------------------------------------------------------- */

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
snap_list(struct snap_args *a)
{
	char *snaps = NULL;
	struct cli_strv names = { 0 };
	DIR *d;
	struct dirent *de;

	if (asprintf(&snaps, "%s/snapshots", a->dir) < 0)
		return EXIT_FAIL;
	d = opendir(snaps);
	if (d == NULL && errno != ENOENT) {
		log_warnx("%s: %s", snaps, strerror(errno));
		free(snaps);
		return EXIT_FAIL;
	}
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (fsu_name_ok(de->d_name))
			(void)cli_add_sensors(&names, de->d_name);
	}
	if (d != NULL)
		closedir(d);
	if (names.n > 1)
		qsort(names.v, names.n, sizeof(*names.v), cmp_name);
	printf("%-24s %-30s %-30s %8s %8s %12s %14s %s\n", "NAME", "FROM", "TO", "SENSORS", "SEGMENTS",
		"PACKETS", "BYTES", "CREATED");
	for (size_t i = 0; i < names.n; i++) {
		char dir[4096], f[TIMEARG_LEN], t[TIMEARG_LEN];
		struct snap_info si;
		bool ok = true;

		fsu_path(dir, sizeof(dir), "%s/%s", snaps, names.v[i]);
		if (snap_load(dir, &si) != 0) {
			printf("%-24s (unreadable manifest)\n", names.v[i]);
			continue;
		}
		timearg_format(si.from_ns, f);
		timearg_format(si.to_ns, t);
		printf("%-24s %-30s %-30s %8zu %8zu %12" PRIu64 " %14" PRIu64 " %s\n", names.v[i], f, t,
			si.sensors.n, si.segs.n, ju64(si.root, "packets", &ok), ju64(si.root, "bytes", &ok),
			jstr(si.root, "created", &ok));
		snap_info_free(&si);
	}
	cli_strv_free(&names);
	free(snaps);
	return 0;
}

/* export ------------------------------------------------------------------------------ */

static int
snap_export(struct snap_args *a)
{
	struct snap_info si;
	struct repo *r = NULL;
	struct bundle_sensor *bs = NULL;
	const struct cli_strv *want;
	char *dir, err[1024];
	size_t n = 0;
	int rc = EXIT_FAIL;

	if (need_name(a) != 0)
		return EXIT_CONFIG;
	if (a->output == NULL) {
		log_warnx("-o FILE is required");
		return EXIT_CONFIG;
	}
	if ((dir = snap_path(a->dir, a->name)) == NULL)
		return EXIT_FAIL;
	if (snap_load(dir, &si) != 0) {
		free(dir);
		return EXIT_FAIL;
	}
	struct bundle_opts o = { .from_ns = si.from_ns,
		.to_ns = si.to_ns,
		.filter = a->filter,
		.output = a->output,
		.gzip_level = a->level,
		.progress = cli_progress_wanted(),
		.source_kind = "snapshot",
		.source_name = a->name };
	r = repo_open_list(dir, &si.segs);
	if (r == NULL) {
		log_warnx("out of memory");
		goto out;
	}
	/* Every sensor of the snapshot by default, even one without packets. */
	want = a->sensors.n > 0 ? &a->sensors : &si.sensors;
	if (cli_collect(r, o.from_ns, o.to_ns, want, &bs, &n) != 0)
		goto out;
	if (bundle_export(&o, bs, n, err, sizeof(err)) != 0) {
		log_warnx("export of snapshot %s failed: %s", a->name, err);
		goto out;
	}
	log_info("exported snapshot %s (%zu sensor%s) to %s", a->name, n, n == 1 ? "" : "s",
		strcmp(a->output, "-") == 0 ? "standard output" : a->output);
	rc = 0;
out:
	cli_sensors_free(bs, n);
	repo_free(r);
	snap_info_free(&si);
	free(dir);
	return rc;
}

/* verify ------------------------------------------------------------------------------ */

static int
snap_verify(struct snap_args *a)
{
	struct snap_info si;
	json_t *files, *f;
	char *dir;
	size_t i, bad = 0, count = 0;

	if (need_name(a) != 0)
		return EXIT_CONFIG;
	if ((dir = snap_path(a->dir, a->name)) == NULL)
		return EXIT_FAIL;
	if (snap_load(dir, &si) != 0) {
		free(dir);
		return EXIT_FAIL;
	}
	files = json_object_get(si.root, "files");
	json_array_foreach(files, i, f)
	{
		char path[4096], sha[FSU_SHA256_HEX];
		bool ok = true;
		const char *rel = jstr(f, "path", &ok), *want = jstr(f, "sha256", &ok);
		uint64_t size = 0, want_size = ju64(f, "bytes", &ok);
		int e;

		count++;
		if (!ok || !fsu_relpath_ok(rel)) {
			log_warnx("%s: malformed entry %zu in the manifest", a->name, i);
			bad++;
			continue;
		}
		fsu_path(path, sizeof(path), "%s/%s", dir, rel);
		e = fsu_sha256_file(path, sha, &size);
		if (e != 0) {
			log_warnx("%s: %s", path, strerror(-e));
			bad++;
		} else if (size != want_size || strcmp(sha, want) != 0) {
			log_warnx("%s: content differs from the manifest (%" PRIu64 " bytes, sha256 %s)",
				path, size, sha);
			bad++;
		}
	}
	snap_info_free(&si);
	free(dir);
	if (bad > 0) {
		log_warnx("snapshot %s: %zu of %zu files damaged or missing", a->name, bad, count);
		return EXIT_FAIL;
	}
	log_info("snapshot %s: %zu files intact", a->name, count);
	return 0;
}

/* delete ------------------------------------------------------------------------------ */

static int
snap_delete(struct snap_args *a)
{
	char *dir, *gone = NULL;
	int rc;

	if (need_name(a) != 0)
		return EXIT_CONFIG;
	if ((dir = snap_path(a->dir, a->name)) == NULL ||
		asprintf(&gone, "%s/snapshots/.%s.deleting-%d", a->dir, a->name, (int)getpid()) < 0) {
		free(dir);
		return EXIT_FAIL;
	}
	/* The name disappears at once; the files go after. */
	if (rename(dir, gone) != 0) {
		log_warnx(
			"snapshot '%s': %s", a->name, errno == ENOENT ? "no such snapshot" : strerror(errno));
		free(dir);
		free(gone);
		return EXIT_FAIL;
	}
	rc = fsu_rmtree(gone);
	if (rc != 0)
		log_warnx("%s: %s (the snapshot is gone; remove this folder by hand)", gone, strerror(-rc));
	else
		log_info("snapshot %s deleted", a->name);
	free(dir);
	free(gone);
	return rc != 0 ? EXIT_FAIL : 0;
}

int
cmd_snapshot(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct snap_args *a);
		unsigned allowed;
	} subs[] = {
		{ "create", snap_create, SO_WINDOW | SO_SENSOR },
		{ "list", snap_list, 0 },
		{ "export", snap_export, SO_SENSOR | SO_OUTPUT },
		{ "verify", snap_verify, 0 },
		{ "delete", snap_delete, 0 },
	};
	struct snap_args a = { 0 };
	int rc = EXIT_CONFIG;

	if (argc < 2)
		return cli_usage("snapshot");
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) != 0)
			continue;
		if (snap_parse(argc - 1, argv + 1, &a, subs[i].allowed) != 0)
			rc = cli_usage("snapshot");
		else if (cli_repo_check(a.dir) != 0)
			rc = EXIT_FAIL;
		else
			rc = subs[i].run(&a);
		cli_strv_free(&a.sensors);
		return rc;
	}
	log_warnx("unknown snapshot command '%s'", argv[1]);
	return cli_usage("snapshot");
}
