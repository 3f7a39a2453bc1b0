/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline import: loads an export archive into a view repository, so that
 * `pcapline export --dir VIEWDIR` works on it.
 *
 * Accepted layouts (gzip'd or plain tar):
 *   pcapline:   manifest.json, <sensor>/<sensor>.pcap|.pcapng,
 *               <sensor>/name_resolution_history.json
 *   Kubeshark:  <node>_<ip>/<unix>.pcap, <node>_<ip>/name_resolution_history.json,
 *               optional content.json (top level or per node; ignored)
 * Every folder is a sensor (its name with anything outside [A-Za-z0-9._-] replaced by
 * '_'); every pcap/pcapng in it becomes segments, one per interface, split at
 * --segment-size, named like the receiver's; the JSON becomes names.jsonl.
 *
 * The archive is untrusted. An absolute path, a ".." component, a link, a device or
 * other special file, an entry above --max-entry-size, more than --max-entries entries,
 * a pcap the reader rejects, a file whose SHA-256 differs from manifest.json, or JSON
 * of the wrong shape refuses the whole archive with an error naming the entry. Entry
 * names are never used as paths: data is written to files this program names, in a
 * hidden staging folder inside VIEWDIR, and only renamed into place once everything
 * has been validated and converted. A refusal or failure removes the staging folder and
 * leaves VIEWDIR as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <sqlite3.h>

#include "cli.h"
#include "fsutil.h"
#include "log.h"
#include "namehist.h"
#include "pcapfile.h"
#include "timearg.h"

#define IMPORT_MAX_PATH 1024

enum { OPT_MAX_ENTRY = 256, OPT_MAX_ENTRIES, OPT_MAX_JSON, OPT_SEGMENT };

enum item_kind { ITEM_PCAP, ITEM_NAMES, ITEM_MANIFEST };

struct item {
	enum item_kind kind;
	char *entry;                /* name in the archive (normalized) */
	char *sensor;               /* ITEM_PCAP, ITEM_NAMES */
	char raw[4096];             /* extracted data in the staging folder */
	char sha[FSU_SHA256_HEX];
	uint64_t size;
};

struct import_seg {
	char *sensor;
	char *rel;                  /* final path relative to VIEWDIR */
	char staged[4096];
	char *iface;
	uint32_t linktype, snaplen;
	uint64_t min_ns, max_ns, packets, bytes;
	bool placed;                /* renamed into VIEWDIR */
};

struct import {
	const char *archive;
	const char *view;
	uint64_t max_entry, max_entries, max_json, segment_size;
	char *staging;
	struct item *items;
	size_t n_items;
	struct import_seg *segs;
	size_t n_segs;
	struct cli_strv sensors;
	uint64_t epoch, seq;
	char err[1024];
};

static int
refuse(struct import *im, const char *entry, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
refuse(struct import *im, const char *entry, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (entry != NULL)
		snprintf(im->err, sizeof(im->err), "entry '%.200s': %s", entry, msg);
	else
		snprintf(im->err, sizeof(im->err), "%s", msg);
	return -1;
}

/* Entry names ----------------------------------------------------------------------------- */

/*
 * Normalizes an entry name into out ("./" prefixes and one trailing '/' dropped) and
 * splits it. Returns the number of components (1 or 2) or -1 for a name that is absolute,
 * climbs (".."), has empty or "." components, or is deeper than <folder>/<file>.
 */
static int
split_entry(const char *name, char *out, size_t outlen, char **dir, char **file)
{
	size_t n;
	char *slash;

	while (name[0] == '.' && name[1] == '/')
		name += 2;
	n = strlen(name);
	if (n == 0 || n >= outlen || name[0] == '/')
		return -1;
	memcpy(out, name, n + 1);
	if (out[n - 1] == '/')
		out[--n] = '\0';
	if (n == 0 || !fsu_relpath_ok(out))
		return -1;
	slash = strchr(out, '/');
	if (slash == NULL) {
		*dir = NULL;
		*file = out;
		return 1;
	}
	if (strchr(slash + 1, '/') != NULL)
		return -1;
	*slash = '\0';
	*dir = out;
	*file = slash + 1;
	return 2;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int
add_item(struct import *im, const struct item *it)
{
	struct item *v = realloc(im->items, (im->n_items + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	im->items = v;
	im->items[im->n_items++] = *it;
	return 0;
}

/* Copies the entry's data into a new staging file, hashing it. */
static int
extract(struct import *im, struct archive *a, const char *entry, uint64_t size, struct item *it)
{
	struct fsu_sha h;
	struct statvfs vfs;
	char buf[1 << 16];
	uint64_t total = 0;
	int fd, rc = 0;

	if (statvfs(im->staging, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < size + (64u << 20))
		return refuse(im, entry, "%" PRIu64 " bytes do not fit on the file system of %s", size,
			      im->view);
	fsu_path(it->raw, sizeof(it->raw), "%s/raw-%zu", im->staging, im->n_items);
	fd = open(it->raw, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return refuse(im, entry, "%s: %s", it->raw, strerror(errno));
	if (fsu_sha_init(&h) != 0) {
		close(fd);
		return refuse(im, entry, "SHA-256 unavailable");
	}
	for (;;) {
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			rc = refuse(im, entry, "cannot read: %s", archive_error_string(a));
			break;
		}
		total += (uint64_t)n;
		if (total > size) {
			rc = refuse(im, entry, "holds more data than its header says");
			break;
		}
		fsu_sha_update(&h, buf, (size_t)n);
		for (la_ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = refuse(im, entry, "%s: %s", it->raw, strerror(errno));
				break;
			}
			off += w;
		}
		if (rc != 0)
			break;
	}
	if (close(fd) != 0 && rc == 0)
		rc = refuse(im, entry, "%s: %s", it->raw, strerror(errno));
	if (rc == 0 && total != size)
		rc = refuse(im, entry, "archive ends inside the entry (%" PRIu64 " of %" PRIu64 " bytes)",
			    total, size);
	if (rc != 0) {
		fsu_sha_abort(&h);
		return rc;
	}
	fsu_sha_final(&h, it->sha);
	it->size = size;
	return 0;
}

/* Reads the archive into the staging folder, refusing anything hostile. */
static int
read_archive(struct import *im)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	uint64_t count = 0;
	int rc = 0, r;

	if (a == NULL)
		return refuse(im, NULL, "out of memory");
	/* gzip or none only: "all" would include filters that run external programs. */
	archive_read_support_filter_gzip(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, im->archive, 1 << 16) != ARCHIVE_OK) {
		rc = refuse(im, NULL, "%s: not a tar archive, or unreadable: %s", im->archive,
			    archive_error_string(a));
		goto out;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		char norm[IMPORT_MAX_PATH], *dir, *file;
		struct item it = {0};
		mode_t type = archive_entry_filetype(e);
		int depth;

		if (name == NULL)
			name = "(unnamed)";
		if (++count > im->max_entries) {
			rc = refuse(im, name, "more than %" PRIu64 " entries (--max-entries)", im->max_entries);
			goto out;
		}
		if (archive_entry_hardlink(e) != NULL) {
			rc = refuse(im, name, "hard link to '%.200s' refused", archive_entry_hardlink(e));
			goto out;
		}
		if (type == AE_IFLNK || archive_entry_symlink(e) != NULL) {
			rc = refuse(im, name, "symbolic link refused");
			goto out;
		}
		if (type != AE_IFREG && type != AE_IFDIR) {
			rc = refuse(im, name, "%s refused",
				    type == AE_IFCHR || type == AE_IFBLK ? "device file" :
				    type == AE_IFIFO ? "FIFO" : type == AE_IFSOCK ? "socket" : "special file");
			goto out;
		}
		depth = split_entry(name, norm, sizeof(norm), &dir, &file);
		if (depth < 0) {
			rc = refuse(im, name, "%s", name[0] == '/' ? "absolute path refused" :
				    strstr(name, "..") ? "path with '..' refused" :
				    "unexpected path (expected <folder>/<file> or a top-level JSON file)");
			goto out;
		}
		if (type == AE_IFDIR) {
			if (depth != 1) {
				rc = refuse(im, name, "unexpected folder below a sensor folder");
				goto out;
			}
			continue;
		}
		if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0) {
			rc = refuse(im, name, "no size in its header");
			goto out;
		}
		uint64_t size = (uint64_t)archive_entry_size(e);
		if (size > im->max_entry) {
			rc = refuse(im, name, "%" PRIu64 " bytes, above the limit of %" PRIu64
				    " (--max-entry-size)", size, im->max_entry);
			goto out;
		}
		if (depth == 1 && strcmp(file, "manifest.json") == 0) {
			it.kind = ITEM_MANIFEST;
		} else if (depth == 2 && (ends_with(file, ".pcap") || ends_with(file, ".pcapng") ||
					  ends_with(file, ".cap"))) {
			it.kind = ITEM_PCAP;
		} else if (depth == 2 && strcmp(file, "name_resolution_history.json") == 0) {
			it.kind = ITEM_NAMES;
		} else {
			if (strcmp(file, "content.json") != 0)
				log_warnx("import: entry '%s' is not a capture or name history; skipped", name);
			continue;
		}
		if (it.kind != ITEM_PCAP && size > im->max_json) {
			rc = refuse(im, name, "%" PRIu64 " bytes of JSON, above the limit of %" PRIu64
				    " (--max-json-size)", size, im->max_json);
			goto out;
		}
		for (size_t k = 0; k < im->n_items; k++) {
			char other[IMPORT_MAX_PATH], *od, *of;
			if (split_entry(im->items[k].entry, other, sizeof(other), &od, &of) > 0 &&
			    strcmp(other, norm) == 0 && (od == NULL) == (dir == NULL) &&
			    (dir == NULL || strcmp(file, of) == 0)) {
				rc = refuse(im, name, "appears twice in the archive");
				goto out;
			}
		}
		it.entry = strdup(name);
		if (dir != NULL) {
			char id[FSU_NAME_MAX + 1];
			fsu_sanitize(id, dir);
			it.sensor = strdup(id);
		}
		if (it.entry == NULL || (dir != NULL && it.sensor == NULL) ||
		    extract(im, a, name, size, &it) != 0 || add_item(im, &it) != 0) {
			if (im->err[0] == '\0')
				refuse(im, name, "out of memory");
			free(it.entry);
			free(it.sensor);
			rc = -1;
			goto out;
		}
	}
	if (r != ARCHIVE_EOF)
		rc = refuse(im, NULL, "%s: corrupt, truncated or not a tar archive: %s", im->archive,
			    archive_error_string(a) ? archive_error_string(a) : "read error");
out:
	archive_read_free(a);
	return rc;
}

/* Checks every file listed in a pcapline manifest.json against what was extracted. */
static int
check_manifest(struct import *im, const struct item *m)
{
	json_error_t jerr;
	json_t *root = json_load_file(m->raw, JSON_REJECT_DUPLICATES, &jerr), *files, *f, *fmt;
	size_t i;
	int rc = 0;

	if (root == NULL)
		return refuse(im, m->entry, "not valid JSON: %s", jerr.text);
	fmt = json_object_get(root, "format");
	if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "pcapline-export") != 0) {
		log_warnx("import: %s is not a pcapline export manifest; not checked", m->entry);
		json_decref(root);
		return 0;
	}
	files = json_object_get(root, "files");
	if (!json_is_array(files)) {
		json_decref(root);
		return refuse(im, m->entry, "no file list");
	}
	json_array_foreach(files, i, f) {
		json_t *p = json_object_get(f, "path"), *sha = json_object_get(f, "sha256"),
		       *bytes = json_object_get(f, "bytes");
		const struct item *it = NULL;

		if (!json_is_string(p) || !json_is_string(sha) || !json_is_integer(bytes)) {
			rc = refuse(im, m->entry, "file %zu: path, sha256 or bytes missing", i);
			break;
		}
		for (size_t k = 0; k < im->n_items && it == NULL; k++) {
			const char *en = im->items[k].entry;
			while (en[0] == '.' && en[1] == '/')
				en += 2;
			if (strcmp(en, json_string_value(p)) == 0)
				it = &im->items[k];
		}
		if (it == NULL) {
			rc = refuse(im, json_string_value(p), "listed in manifest.json but not in the archive");
			break;
		}
		if (strcmp(it->sha, json_string_value(sha)) != 0 ||
		    it->size != (uint64_t)json_integer_value(bytes)) {
			rc = refuse(im, it->entry, "SHA-256 or size differs from manifest.json");
			break;
		}
	}
	json_decref(root);
	return rc;
}

/* Conversion into segments ------------------------------------------------------------ */

struct conv_iface {
	uint64_t packets;
	uint32_t max_caplen;
	uint32_t snaplen;
	/* Open output. */
	int fd;
	struct pcapw *w;
	size_t seg;             /* index into im->segs (which realloc moves) */
};

static int
add_sensor(struct import *im, const char *sensor)
{
	for (size_t i = 0; i < im->sensors.n; i++)
		if (strcmp(im->sensors.v[i], sensor) == 0)
			return 0;
	return cli_add_sensors(&im->sensors, sensor);
}

static int
close_out(struct import *im, struct conv_iface *ci, const char *entry)
{
	struct stat st;
	int rc = 0;

	if (ci->w == NULL)
		return 0;
	rc = pcapw_free(ci->w);
	ci->w = NULL;
	if (rc == 0 && fsync(ci->fd) != 0)
		rc = -errno;
	if (rc == 0 && fstat(ci->fd, &st) == 0)
		im->segs[ci->seg].bytes = (uint64_t)st.st_size;
	if (close(ci->fd) != 0 && rc == 0)
		rc = -errno;
	ci->fd = -1;
	if (rc != 0)
		return refuse(im, entry, "writing %s: %s", im->segs[ci->seg].staged, strerror(-rc));
	return 0;
}

static int
open_out(struct import *im, struct conv_iface *ci, const struct item *it, const struct pcapf_iface *ifc,
	 uint64_t first_ns)
{
	struct import_seg *v = realloc(im->segs, (im->n_segs + 1) * sizeof(*v)), *s;
	char ifname[FSU_NAME_MAX + 1], base[512], dir[4096];
	int rc;

	if (v == NULL)
		return refuse(im, it->entry, "out of memory");
	im->segs = v;
	s = &im->segs[im->n_segs];
	memset(s, 0, sizeof(*s));
	fsu_sanitize(ifname, ifc->name);
	snprintf(base, sizeof(base), "%020" PRIu64 "-%016" PRIx64 "-%" PRIu64 "-%s.pcap", first_ns,
		 im->epoch, im->seq++, ifname);
	fsu_path(dir, sizeof(dir), "%s/sensors/%s/segments", im->staging, it->sensor);
	if ((rc = fsu_mkdirs(dir, 0755)) != 0)
		return refuse(im, it->entry, "%s: %s", dir, strerror(-rc));
	fsu_path(s->staged, sizeof(s->staged), "%s/%s", dir, base);
	if (asprintf(&s->rel, "sensors/%s/segments/%s", it->sensor, base) < 0) {
		s->rel = NULL;
		return refuse(im, it->entry, "out of memory");
	}
	s->sensor = strdup(it->sensor);
	s->iface = strdup(ifname);
	im->n_segs++;
	if (s->sensor == NULL || s->iface == NULL)
		return refuse(im, it->entry, "out of memory");
	s->linktype = ifc->linktype;
	s->snaplen = ci->snaplen;
	s->min_ns = UINT64_MAX;
	ci->seg = im->n_segs - 1;
	ci->fd = open(s->staged, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (ci->fd < 0)
		return refuse(im, it->entry, "%s: %s", s->staged, strerror(errno));
	ci->w = pcapw_new(ci->fd, ifc->linktype, ci->snaplen);
	if (ci->w == NULL || (rc = pcapw_header(ci->w)) != 0) {
		rc = ci->w == NULL ? -errno : rc;
		return refuse(im, it->entry, "%s: %s", s->staged, strerror(-rc));
	}
	return 0;
}

/* Validates one capture completely, then rewrites it as segments. */
static int
convert(struct import *im, const struct item *it)
{
	struct conv_iface ci[PCAPF_MAX_IFACES];
	struct pcapf_rec rec;
	struct pcapr *r;
	uint64_t total = 0;
	size_t n_if;
	int rc;

	memset(ci, 0, sizeof(ci));
	for (size_t i = 0; i < PCAPF_MAX_IFACES; i++)
		ci[i].fd = -1;
	r = pcapr_open(it->raw, &rc);
	if (r == NULL)
		return refuse(im, it->entry, "not a valid capture: %s", pcapf_strerror(rc));
	n_if = pcapr_iface_count(r);
	while ((rc = pcapr_next(r, &rec)) == 1) {
		if (rec.ts_ns / 1000000000ull > UINT32_MAX) {
			pcapr_close(r);
			return refuse(im, it->entry, "record %" PRIu64 ": timestamp after 2106", total + 1);
		}
		ci[rec.iface].packets++;
		if (rec.caplen > ci[rec.iface].max_caplen)
			ci[rec.iface].max_caplen = rec.caplen;
		total++;
	}
	pcapr_close(r);
	if (rc < 0)
		return refuse(im, it->entry, "corrupt capture after %" PRIu64 " records: %s", total,
			      pcapf_strerror(rc));
	if (add_sensor(im, it->sensor) != 0)
		return refuse(im, it->entry, "out of memory");
	if (total == 0)
		return 0;

	/* Second reading, now known to be sound: write the segments. */
	r = pcapr_open(it->raw, &rc);
	if (r == NULL)
		return refuse(im, it->entry, "not a valid capture: %s", pcapf_strerror(rc));
	for (size_t i = 0; i < n_if; i++) {
		uint32_t snap = pcapr_iface(r, i)->snaplen;
		if (snap == 0 || snap > PCAPF_MAX_CAPLEN)
			snap = PCAPF_MAX_CAPLEN;
		if (snap < ci[i].max_caplen)
			snap = ci[i].max_caplen;
		ci[i].snaplen = snap;
	}
	rc = 0;
	while (rc == 0 && pcapr_next(r, &rec) == 1) {
		struct conv_iface *c = &ci[rec.iface];
		struct import_seg *s;

		if (c->w != NULL && pcapw_bytes(c->w) >= im->segment_size)
			rc = close_out(im, c, it->entry);
		if (rc == 0 && c->w == NULL)
			rc = open_out(im, c, it, pcapr_iface(r, rec.iface), rec.ts_ns);
		if (rc != 0)
			break;
		s = &im->segs[c->seg];
		int w = pcapw_write(c->w, rec.ts_ns, rec.data, rec.caplen, rec.origlen);
		if (w != 0) {
			rc = refuse(im, it->entry, "writing %s: %s", s->staged, strerror(-w));
			break;
		}
		s->packets++;
		if (rec.ts_ns < s->min_ns)
			s->min_ns = rec.ts_ns;
		if (rec.ts_ns > s->max_ns)
			s->max_ns = rec.ts_ns;
	}
	pcapr_close(r);
	for (size_t i = 0; i < n_if; i++) {
		if (rc == 0)
			rc = close_out(im, &ci[i], it->entry);
		else if (ci[i].w != NULL) {
			pcapw_free(ci[i].w);
			close(ci[i].fd);
		}
	}
	if (rc == 0)
		unlink(it->raw);
	return rc;
}

/* Commit ---------------------------------------------------------------------------------- */

static const char *const index_schema =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '1');"
	"CREATE TABLE IF NOT EXISTS segments(id INTEGER PRIMARY KEY, sensor TEXT NOT NULL,"
	" path TEXT NOT NULL UNIQUE, iface TEXT NOT NULL, linktype INTEGER NOT NULL,"
	" snaplen INTEGER NOT NULL, min_ns INTEGER NOT NULL, max_ns INTEGER NOT NULL,"
	" packets INTEGER NOT NULL, bytes INTEGER NOT NULL, closed_ns INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS segments_sensor_time ON segments(sensor, min_ns);";

/* True when VIEWDIR holds segments but no index: creating one would hide them. */
static bool
has_unindexed_segments(const char *view)
{
	char path[4096];
	DIR *sd;
	struct dirent *de;
	bool any = false;

	fsu_path(path, sizeof(path), "%s/index.db", view);
	if (access(path, F_OK) == 0)
		return false;
	fsu_path(path, sizeof(path), "%s/sensors", view);
	sd = opendir(path);
	while (sd != NULL && !any && (de = readdir(sd)) != NULL) {
		char seg[4096];
		DIR *gd;
		struct dirent *ge;

		if (de->d_name[0] == '.')
			continue;
		fsu_path(seg, sizeof(seg), "%s/%s/segments", path, de->d_name);
		if ((gd = opendir(seg)) == NULL)
			continue;
		while (!any && (ge = readdir(gd)) != NULL)
			any = ge->d_name[0] != '.';
		closedir(gd);
	}
	if (sd != NULL)
		closedir(sd);
	return any;
}

static int
index_open(struct import *im, sqlite3 **db)
{
	char path[4096];
	char *msg = NULL;

	*db = NULL;
	if (has_unindexed_segments(im->view)) {
		log_warnx("import: %s has segments but no index.db; not creating one (export scans)",
			  im->view);
		return 0;
	}
	fsu_path(path, sizeof(path), "%s/index.db", im->view);
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(*db, 5000);
	if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(*db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(*db, index_schema, NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	return 0;
fail:
	refuse(im, NULL, "%s: %s", path, msg ? msg : (*db ? sqlite3_errmsg(*db) : "cannot open"));
	sqlite3_free(msg);
	sqlite3_close(*db);
	*db = NULL;
	return -1;
}

static int
index_add(struct import *im, sqlite3 *db, uint64_t now)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (db == NULL)
		return 0;
	if (sqlite3_prepare_v2(db, "INSERT INTO segments(sensor, path, iface, linktype, snaplen, min_ns,"
			       " max_ns, packets, bytes, closed_ns) VALUES(?,?,?,?,?,?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK)
		return refuse(im, NULL, "index: %s", sqlite3_errmsg(db));
	for (size_t i = 0; i < im->n_segs && rc == 0; i++) {
		const struct import_seg *s = &im->segs[i];

		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, s->sensor, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, s->rel, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, s->iface, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, s->linktype);
		sqlite3_bind_int64(st, 5, s->snaplen);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)s->min_ns);
		sqlite3_bind_int64(st, 7, (sqlite3_int64)s->max_ns);
		sqlite3_bind_int64(st, 8, (sqlite3_int64)s->packets);
		sqlite3_bind_int64(st, 9, (sqlite3_int64)s->bytes);
		sqlite3_bind_int64(st, 10, (sqlite3_int64)now);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = refuse(im, NULL, "index: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	return rc;
}

/* Builds each sensor's new names.jsonl (existing lines merged with the imported ones)
 * in the staging folder. */
static int
stage_names(struct import *im)
{
	for (size_t i = 0; i < im->sensors.n; i++) {
		const char *sensor = im->sensors.v[i];
		char conv[4096], merged[4096], existing[4096], err[512];
		const char *paths[2] = {existing, conv};
		bool any = false;
		FILE *f;

		fsu_path(existing, sizeof(existing), "%s/sensors/%s/names.jsonl", im->view, sensor);
		fsu_path(conv, sizeof(conv), "%s/names-%zu.jsonl", im->staging, i);
		fsu_path(merged, sizeof(merged), "%s/sensors/%s/names.jsonl", im->staging, sensor);
		f = fopen(conv, "wxe");
		if (f == NULL)
			return refuse(im, NULL, "%s: %s", conv, strerror(errno));
		for (size_t k = 0; k < im->n_items; k++) {
			const struct item *it = &im->items[k];
			size_t lines;

			if (it->kind != ITEM_NAMES || strcmp(it->sensor, sensor) != 0)
				continue;
			if (namehist_from_kubeshark(it->raw, im->max_json, f, &lines, err, sizeof(err)) != 0) {
				fclose(f);
				return refuse(im, it->entry, "%s", err);
			}
			any = true;
		}
		if (fclose(f) != 0)
			return refuse(im, NULL, "%s: %s", conv, strerror(errno));
		if (!any && access(existing, F_OK) != 0)
			continue;
		char dir[4096];
		fsu_path(dir, sizeof(dir), "%s/sensors/%s", im->staging, sensor);
		if (fsu_mkdirs(dir, 0755) != 0)
			return refuse(im, NULL, "%s: %s", dir, strerror(errno));
		f = fopen(merged, "wxe");
		if (f == NULL)
			return refuse(im, NULL, "%s: %s", merged, strerror(errno));
		if (namehist_merge_jsonl(paths, 2, f, err, sizeof(err)) != 0) {
			fclose(f);
			return refuse(im, NULL, "names of %s: %s", sensor, err);
		}
		if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
			return refuse(im, NULL, "%s: %s", merged, strerror(errno));
	}
	return 0;
}

/* Renames everything into place; on failure puts back what was moved. */
static int
commit(struct import *im)
{
	sqlite3 *db = NULL;
	struct cli_strv names_done = {0};
	int rc = 0;

	if (index_open(im, &db) != 0)
		return -1;
	rc = index_add(im, db, timearg_now());
	for (size_t i = 0; rc == 0 && i < im->n_segs; i++) {
		struct import_seg *s = &im->segs[i];
		char dst[4096], dir[4096];
		int e;

		fsu_path(dir, sizeof(dir), "%s/sensors/%s/segments", im->view, s->sensor);
		fsu_path(dst, sizeof(dst), "%s/%s", im->view, s->rel);
		if ((e = fsu_mkdirs(dir, 0755)) != 0) {
			rc = refuse(im, NULL, "%s: %s", dir, strerror(-e));
			break;
		}
		if (renameat2(AT_FDCWD, s->staged, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) {
			rc = refuse(im, NULL, "%s: %s", dst, strerror(errno));
			break;
		}
		s->placed = true;
	}
	for (size_t i = 0; rc == 0 && i < im->sensors.n; i++) {
		char staged[4096], dst[4096], backup[4096];

		fsu_path(staged, sizeof(staged), "%s/sensors/%s/names.jsonl", im->staging, im->sensors.v[i]);
		fsu_path(dst, sizeof(dst), "%s/sensors/%s/names.jsonl", im->view, im->sensors.v[i]);
		fsu_path(backup, sizeof(backup), "%s/names-old-%zu.jsonl", im->staging, i);
		if (access(staged, F_OK) != 0)
			continue;
		if (link(dst, backup) != 0 && errno != ENOENT) {
			rc = refuse(im, NULL, "%s: %s", dst, strerror(errno));
			break;
		}
		if (rename(staged, dst) != 0) {
			rc = refuse(im, NULL, "%s: %s", dst, strerror(errno));
			break;
		}
		(void)cli_add_sensors(&names_done, im->sensors.v[i]);
	}
	if (rc == 0 && db != NULL) {
		char *msg = NULL;
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
			rc = refuse(im, NULL, "index: %s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
	}
	if (rc != 0) {
		/* Undo: segments back to staging, names back to their old version. */
		for (size_t i = 0; i < im->n_segs; i++) {
			char dst[4096];
			if (!im->segs[i].placed)
				continue;
			fsu_path(dst, sizeof(dst), "%s/%s", im->view, im->segs[i].rel);
			(void)rename(dst, im->segs[i].staged);
		}
		for (size_t i = 0; i < names_done.n; i++) {
			char dst[4096], backup[4096];
			size_t k;
			for (k = 0; k < im->sensors.n && strcmp(im->sensors.v[k], names_done.v[i]) != 0; k++)
				;
			fsu_path(dst, sizeof(dst), "%s/sensors/%s/names.jsonl", im->view, names_done.v[i]);
			fsu_path(backup, sizeof(backup), "%s/names-old-%zu.jsonl", im->staging, k);
			if (rename(backup, dst) != 0)
				(void)unlink(dst);
		}
		if (db != NULL)
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	sqlite3_close(db);
	cli_strv_free(&names_done);
	for (size_t i = 0; rc == 0 && i < im->sensors.n; i++) {
		char dir[4096];
		fsu_path(dir, sizeof(dir), "%s/sensors/%s/segments", im->view, im->sensors.v[i]);
		(void)fsu_fsync_path(dir);
	}
	return rc;
}

static void
import_free(struct import *im)
{
	for (size_t i = 0; i < im->n_items; i++) {
		free(im->items[i].entry);
		free(im->items[i].sensor);
	}
	free(im->items);
	for (size_t i = 0; i < im->n_segs; i++) {
		free(im->segs[i].sensor);
		free(im->segs[i].rel);
		free(im->segs[i].iface);
	}
	free(im->segs);
	cli_strv_free(&im->sensors);
	free(im->staging);
}

int
cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"max-entry-size", required_argument, NULL, OPT_MAX_ENTRY},
		{"max-entries", required_argument, NULL, OPT_MAX_ENTRIES},
		{"max-json-size", required_argument, NULL, OPT_MAX_JSON},
		{"segment-size", required_argument, NULL, OPT_SEGMENT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct import im = {
		.max_entry = 64ull << 30, .max_entries = 100000, .max_json = 256u << 20,
		.segment_size = 64u << 20,
	};
	uint64_t packets = 0;
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		uint64_t *dst = NULL;

		switch (ch) {
		case 'd':
			im.view = optarg;
			break;
		case OPT_MAX_ENTRY:
			dst = &im.max_entry;
			break;
		case OPT_MAX_ENTRIES:
			dst = &im.max_entries;
			break;
		case OPT_MAX_JSON:
			dst = &im.max_json;
			break;
		case OPT_SEGMENT:
			dst = &im.segment_size;
			break;
		case 'h':
			cli_usage("import");
			return 0;
		default:
			return cli_usage("import");
		}
		if (dst != NULL && (cli_parse_size(optarg, dst) != 0 || *dst == 0)) {
			log_warnx("'%s' is not a size (e.g. 1048576, 64M, 2G)", optarg);
			return EXIT_CONFIG;
		}
	}
	if (optind + 1 != argc || im.view == NULL) {
		log_warnx("usage: one ARCHIVE and --dir VIEWDIR");
		return cli_usage("import");
	}
	im.archive = argv[optind];
	if (getrandom(&im.epoch, sizeof(im.epoch), 0) != (ssize_t)sizeof(im.epoch))
		im.epoch = timearg_now();
	if ((rc = fsu_mkdirs(im.view, 0755)) != 0) {
		log_warnx("%s: %s", im.view, strerror(-rc));
		return EXIT_FAIL;
	}
	if (asprintf(&im.staging, "%s/.import-XXXXXX", im.view) < 0 || mkdtemp(im.staging) == NULL) {
		log_warnx("%s: cannot create a staging folder: %s", im.view, strerror(errno));
		free(im.staging);
		return EXIT_FAIL;
	}
	rc = read_archive(&im);
	for (size_t i = 0; rc == 0 && i < im.n_items; i++)
		if (im.items[i].kind == ITEM_MANIFEST)
			rc = check_manifest(&im, &im.items[i]);
	for (size_t i = 0; rc == 0 && i < im.n_items; i++) {
		if (im.items[i].kind == ITEM_PCAP)
			rc = convert(&im, &im.items[i]);
		else if (im.items[i].kind == ITEM_NAMES && add_sensor(&im, im.items[i].sensor) != 0)
			rc = refuse(&im, im.items[i].entry, "out of memory");
	}
	if (rc == 0 && im.sensors.n == 0)
		rc = refuse(&im, NULL, "%s: no sensor folder with a capture or a name history", im.archive);
	if (rc == 0)
		rc = stage_names(&im);
	if (rc == 0)
		rc = commit(&im);
	(void)fsu_rmtree(im.staging);
	if (rc != 0) {
		log_warnx("import refused, nothing changed in %s: %s", im.view, im.err);
		import_free(&im);
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < im.n_segs; i++)
		packets += im.segs[i].packets;
	log_info("imported %s into %s: %zu sensor%s, %zu segments, %" PRIu64 " packets", im.archive,
		 im.view, im.sensors.n, im.sensors.n == 1 ? "" : "s", im.n_segs, packets);
	import_free(&im);
	return 0;
}
