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
 * Every folder is a sensor whose id is the folder's name (letters, digits, '.', '_',
 * '-'; any other character becomes '_', and two folders that would become one sensor,
 * such as "web 01/" and "web_01/", are refused); every pcap/pcapng in it becomes segments, one
 * per interface, split at --segment-size, named like the receiver's; the JSON becomes
 * names.jsonl.
 *
 * The archive is untrusted. An absolute path, a ".." component, a link, a device or
 * other special file, an entry above --max-entry-size, more than --max-entries entries,
 * entries whose data add up to more than the archive may expand to (--max-ratio times
 * its size plus IMPORT_RATIO_FLOOR, at most --max-total-size and the free space of
 * VIEWDIR less IMPORT_RESERVE), a pcap the reader rejects or with a record whose
 * captured length exceeds its original length, a pcapline manifest.json that does not
 * list exactly the files present with their SHA-256 and size, or JSON of the wrong
 * shape (a name-history key that is not an address) refuses the whole archive with an
 * error naming the entry. Entry names are never used as paths: data is written to
 * files this program names, in a hidden staging folder inside VIEWDIR (the captures one
 * after the other in one file), and only renamed into place once everything has been
 * validated, converted and synced. A refusal or failure removes the staging folder and
 * leaves VIEWDIR as it was. Time and memory grow linearly with the entries (a hash
 * table of their names; captures of a sensor that follow one another in time share
 * segments).
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
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <sqlite3.h>

#include "receiver/cli/cli.h"
#include "shared/fsutil.h"
#include "shared/hash.h"
#include "shared/log.h"
#include "receiver/repo/bundle.h"
#include "receiver/repo/index.h"
#include "receiver/repo/namehist.h"
#include "receiver/repo/segname.h"
#include "shared/pcapfile.h"
#include "receiver/repo/timearg.h"

#define IMPORT_MAX_PATH    1024
/* Expansion allowed to any archive however small, so that a short capture of very
 * compressible packets still loads; a gzip bomb gets this far and no further. */
#define IMPORT_RATIO_FLOOR (16ull << 20)
/* Left free on the file system of VIEWDIR: a receiver or the index may share it. */
#define IMPORT_RESERVE     (64ull << 20)

enum {
	OPT_MAX_ENTRY = 256,
	OPT_MAX_ENTRIES,
	OPT_MAX_JSON,
	OPT_SEGMENT,
	OPT_MAX_RATIO,
	OPT_MAX_TOTAL
};

/* ITEM_OTHER: a file that is neither read nor imported, kept so that a manifest can be
 * checked against every file of the archive. */
enum item_kind {
	ITEM_PCAP,
	ITEM_NAMES,
	ITEM_MANIFEST,
	ITEM_OTHER
};

struct item {
	enum item_kind kind;
	char *norm;   /* normalized name: the key of the name table */
	char *entry;  /* the same string, the name errors show (not owned) */
	char *sensor; /* ITEM_PCAP, ITEM_NAMES */
	char *raw;    /* JSON: extracted into this file of the staging folder */
	uint64_t off; /* ITEM_PCAP: where its data starts in the blob */
	char sha[FSU_SHA256_HEX];
	uint64_t size;
	bool listed; /* named by manifest.json */
};

struct import_seg {
	char *sensor;
	char *rel; /* final path relative to VIEWDIR */
	char *staged;
	char *iface;
	uint32_t linktype, snaplen;
	uint64_t min_ns, max_ns, packets, bytes;
	bool placed; /* renamed into VIEWDIR */
};

struct import {
	const char *archive;
	const char *view;
	uint64_t max_entry, max_entries, max_json, segment_size, max_ratio, max_total;
	char *staging;
	struct item *items;
	size_t n_items, cap_items;
	/* Normalized entry name -> item index + 1 (0: free), open addressing, so that
	 * duplicates and manifest paths are found in constant time whatever the count. */
	size_t *names;
	size_t names_cap;
	/* Bytes of entry data the archive may expand to, what limits it, and how many
	 * bytes its entries have declared so far (a header's size is checked before its
	 * data is read, and the data read is held to it). */
	uint64_t expand_limit, declared;
	char expand_why[160];
	uint64_t skipped; /* entries neither a capture nor a name history */
	/* Every capture's data, one after the other, in one staging file: one file per entry
	 * made an archive of many small captures cost a file creation each. */
	int blob_fd;
	uint64_t blob_size;
	struct import_seg *segs;
	size_t n_segs, cap_segs;
	/* Segments being written, all of one sensor: captures that follow one another in
	 * time go on filling them instead of opening a segment each. */
	struct conv_out *outs; /* PCAPF_MAX_IFACES of them */
	size_t n_outs;
	char *outs_sensor;
	uint64_t conv_gen; /* the capture being written, see conv_out.gen */
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

/* The slot of norm in the name table: its item's, or the free slot it would take. */
static size_t *
name_slot(struct import *im, const char *norm)
{
	size_t mask = im->names_cap - 1;
	size_t i = (size_t)hash_end(hash_add(HASH_INIT, norm, strlen(norm))) & mask;

	while (im->names[i] != 0 && strcmp(im->items[im->names[i] - 1].norm, norm) != 0)
		i = (i + 1) & mask;
	return &im->names[i];
}

static const struct item *
find_item(struct import *im, const char *norm)
{
	size_t idx;

	if (im->names_cap == 0)
		return NULL;
	idx = *name_slot(im, norm);
	return idx != 0 ? &im->items[idx - 1] : NULL;
}

/* Keeps the table at most half full. */
static int
names_grow(struct import *im)
{
	size_t cap = im->names_cap ? im->names_cap * 2 : 1024;
	size_t *old = im->names, ocap = im->names_cap;

	if ((im->names = calloc(cap, sizeof(*im->names))) == NULL) {
		im->names = old;
		return -1;
	}
	im->names_cap = cap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i] != 0)
			*name_slot(im, im->items[old[i] - 1].norm) = old[i];
	free(old);
	return 0;
}

/* Appends an item (taking its strings) unless its normalized name is already taken:
 * returns 0, 1 for a duplicate (nothing taken), or -1 when memory is short. */
static int
add_item(struct import *im, const struct item *it)
{
	size_t *slot;

	if ((im->n_items + 1) * 2 > im->names_cap && names_grow(im) != 0)
		return -1;
	slot = name_slot(im, it->norm);
	if (*slot != 0)
		return 1;
	if (im->n_items == im->cap_items) {
		size_t cap = im->cap_items ? im->cap_items * 2 : 64;
		struct item *v = realloc(im->items, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		im->items = v;
		im->cap_items = cap;
	}
	im->items[im->n_items++] = *it;
	*slot = im->n_items;
	return 0;
}

static void
item_free(struct item *it)
{
	free(it->norm);
	free(it->sensor);
	free(it->raw);
}

/*
 * What the archive may expand to: --max-ratio times its size (plus a floor), at most
 * --max-total-size and the free space of VIEWDIR less a reserve. Returns 0 or -1.
 */
static int
expand_limit(struct import *im)
{
	struct stat st;
	struct statvfs vfs;
	uint64_t ratio, free_bytes;

	if (stat(im->archive, &st) != 0)
		return refuse(im, NULL, "%s: %s", im->archive, strerror(errno));
	ratio = (uint64_t)st.st_size > (UINT64_MAX - IMPORT_RATIO_FLOOR) / im->max_ratio
		? UINT64_MAX
		: (uint64_t)st.st_size * im->max_ratio + IMPORT_RATIO_FLOOR;
	im->expand_limit = ratio;
	snprintf(im->expand_why, sizeof(im->expand_why),
		"%" PRIu64 " times its %" PRIu64 " bytes plus %llu MiB (--max-ratio)", im->max_ratio,
		(uint64_t)st.st_size, IMPORT_RATIO_FLOOR >> 20);
	if (im->max_total < im->expand_limit) {
		im->expand_limit = im->max_total;
		snprintf(im->expand_why, sizeof(im->expand_why), "--max-total-size");
	}
	if (statvfs(im->staging, &vfs) == 0) {
		free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		free_bytes = free_bytes > IMPORT_RESERVE ? free_bytes - IMPORT_RESERVE : 0;
		if (free_bytes < im->expand_limit) {
			im->expand_limit = free_bytes;
			snprintf(im->expand_why, sizeof(im->expand_why),
				"the free space of %.100s less "
				"%llu MiB",
				im->view, IMPORT_RESERVE >> 20);
		}
	}
	return 0;
}

/* Accounts for an entry's declared size before any of its data is read. */
static int
declare(struct import *im, const char *entry, uint64_t size)
{
	if (size > im->expand_limit - im->declared)
		return refuse(im, entry,
			"the archive's entries would expand to more than %" PRIu64
			" bytes, the limit for this archive (%s); refused before writing them",
			im->expand_limit, im->expand_why);
	im->declared += size;
	return 0;
}

/* Copies the entry's data into a new staging file, hashing it. */
static int
extract(struct import *im, struct archive *a, const char *entry, uint64_t size, struct item *it)
{
	struct fsu_sha h;
	char buf[1 << 16];
	const char *dst;
	uint64_t total = 0;
	int fd, rc = 0;

	if (it->kind == ITEM_PCAP) {
		if (im->blob_fd < 0) {
			if (asprintf(&it->raw, "%s/captures", im->staging) < 0) {
				it->raw = NULL;
				return refuse(im, entry, "out of memory");
			}
			im->blob_fd = open(it->raw, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (im->blob_fd < 0)
				return refuse(im, entry, "%s: %s", it->raw, strerror(errno));
			free(it->raw);
			it->raw = NULL;
		}
		fd = im->blob_fd;
		it->off = im->blob_size;
		dst = "the staging file";
	} else {
		if (asprintf(&it->raw, "%s/raw-%zu", im->staging, im->n_items) < 0) {
			it->raw = NULL;
			return refuse(im, entry, "out of memory");
		}
		fd = open(it->raw, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return refuse(im, entry, "%s: %s", it->raw, strerror(errno));
		dst = it->raw;
	}
	if (fsu_sha_init(&h) != 0) {
		if (fd != im->blob_fd)
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
		/* The header's size was accounted against the expansion limit: data beyond it
		 * stops here, before it is written. */
		if (total > size) {
			rc = refuse(im, entry, "holds more data than its header says");
			break;
		}
		fsu_sha_update(&h, buf, (size_t)n);
		if ((rc = fsu_write_all(fd, buf, (size_t)n)) != 0) {
			rc = refuse(im, entry, "%s: %s", dst, strerror(-rc));
			break;
		}
	}
	if (fd == im->blob_fd)
		im->blob_size += total;
	else if (close(fd) != 0 && rc == 0)
		rc = refuse(im, entry, "%s: %s", dst, strerror(errno));
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

/* The folder of an item's normalized name ("web 01/x.pcap" -> "web 01"), its length. */
static size_t
item_folder_len(const struct item *it)
{
	const char *slash = strchr(it->norm, '/');

	return slash != NULL ? (size_t)(slash - it->norm) : strlen(it->norm);
}

static int
cmp_item_sensor(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a, *y = *(const struct item *const *)b;
	int c = strcmp(x->sensor, y->sensor);
	size_t lx = item_folder_len(x), ly = item_folder_len(y);

	if (c != 0)
		return c;
	c = memcmp(x->norm, y->norm, lx < ly ? lx : ly);
	return c != 0 ? c : (lx > ly) - (lx < ly);
}

/*
 * Two folders must never become one sensor: a folder whose name is not a valid id
 * is imported under its name with '_' for every other character, unless another
 * folder already has (or maps to) that id. Sorting by id makes it O(n log n).
 * Returns 0, or -1 after refusing.
 */
static int
check_sensor_ids(struct import *im)
{
	const struct item **v;
	size_t n = 0;
	int rc = 0;

	v = malloc((im->n_items ? im->n_items : 1) * sizeof(*v));
	if (v == NULL)
		return refuse(im, NULL, "out of memory");
	for (size_t i = 0; i < im->n_items; i++)
		if (im->items[i].sensor != NULL)
			v[n++] = &im->items[i];
	qsort(v, n, sizeof(*v), cmp_item_sensor);
	for (size_t i = 0; i < n; i++) {
		size_t l = item_folder_len(v[i]);
		bool first = i == 0 || cmp_item_sensor(&v[i - 1], &v[i]) != 0;

		if (i > 0 && strcmp(v[i - 1]->sensor, v[i]->sensor) == 0 && first) {
			size_t lp = item_folder_len(v[i - 1]);

			rc = refuse(im, NULL,
				"folders '%.*s' and '%.*s' would both become sensor '%s'; "
				"rename one of them",
				(int)(lp > 200 ? 200 : lp), v[i - 1]->norm, (int)(l > 200 ? 200 : l),
				v[i]->norm, v[i]->sensor);
			break;
		}
		if (first && (l != strlen(v[i]->sensor) || memcmp(v[i]->norm, v[i]->sensor, l) != 0))
			log_warnx("import: folder '%.*s' is not a valid sensor id; imported as sensor '%s'",
				(int)(l > 200 ? 200 : l), v[i]->norm, v[i]->sensor);
	}
	free(v);
	return rc;
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
		struct item it = { 0 };
		mode_t type = archive_entry_filetype(e);
		int depth;

		if (name == NULL)
			name = "(unnamed)";
		if (++count > im->max_entries) {
			rc = refuse(
				im, name, "more than %" PRIu64 " entries (--max-entries)", im->max_entries);
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
				type == AE_IFCHR || type == AE_IFBLK ? "device file"
					: type == AE_IFIFO           ? "FIFO"
					: type == AE_IFSOCK          ? "socket"
								     : "special file");
			goto out;
		}
		depth = split_entry(name, norm, sizeof(norm), &dir, &file);
		if (depth < 0) {
			rc = refuse(im, name, "%s",
				name[0] == '/'               ? "absolute path refused"
					: strstr(name, "..") ? "path with '..' refused"
							     : "unexpected path (expected <folder>/<file> or "
							       "a top-level JSON file)");
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
			rc = refuse(im, name,
				"%" PRIu64 " bytes, above the limit of %" PRIu64 " (--max-entry-size)", size,
				im->max_entry);
			goto out;
		}
		/* Skipped data is decompressed all the same: it counts against the limit too. */
		if (declare(im, name, size) != 0) {
			rc = -1;
			goto out;
		}
		if (depth == 1 && strcmp(file, BUNDLE_MANIFEST) == 0) {
			it.kind = ITEM_MANIFEST;
		} else if (depth == 2 &&
			(ends_with(file, ".pcap") || ends_with(file, ".pcapng") || ends_with(file, ".cap"))) {
			it.kind = ITEM_PCAP;
		} else if (depth == 2 && strcmp(file, BUNDLE_NAMES_FILE) == 0) {
			it.kind = ITEM_NAMES;
		} else {
			/* Named for the first few only: an archive of many such entries must
			 * not flood the terminal. */
			if (strcmp(file, "content.json") != 0 && ++im->skipped <= 10)
				log_warnx(
					"import: entry '%s' is not a capture or name history; skipped", name);
			it.kind = ITEM_OTHER;
		}
		if ((it.kind == ITEM_NAMES || it.kind == ITEM_MANIFEST) && size > im->max_json) {
			rc = refuse(im, name,
				"%" PRIu64 " bytes of JSON, above the limit of %" PRIu64 " (--max-json-size)",
				size, im->max_json);
			goto out;
		}
		/* The normalized name, folder and file joined again. */
		if (dir != NULL)
			file[-1] = '/';
		it.entry = it.norm = strdup(norm);
		/* A folder that is not a valid sensor id (Kubeshark's "<node>_<ipv6>") becomes
		 * one with '_' for each other character; check_sensor_ids() refuses two
		 * folders that would become the same sensor ("web 01/" and "web_01/"). */
		if (dir != NULL && it.kind != ITEM_OTHER) {
			char id[FSU_NAME_MAX + 1], folder[FSU_NAME_MAX + 1];
			size_t fl = (size_t)(file - 1 - norm);

			if (fl > FSU_NAME_MAX) {
				item_free(&it);
				rc = refuse(im, name,
					"folder name longer than %d characters, the longest "
					"sensor id; rename the folder",
					FSU_NAME_MAX);
				goto out;
			}
			snprintf(folder, sizeof(folder), "%.*s", (int)(fl < FSU_NAME_MAX ? fl : FSU_NAME_MAX),
				norm);
			fsu_sanitize(id, folder);
			it.sensor = strdup(id);
		}
		if (it.norm == NULL || (dir != NULL && it.kind != ITEM_OTHER && it.sensor == NULL)) {
			item_free(&it);
			rc = refuse(im, name, "out of memory");
			goto out;
		}
		if (find_item(im, it.norm) != NULL) {
			item_free(&it);
			rc = refuse(im, name, "appears twice in the archive");
			goto out;
		}
		if ((it.kind != ITEM_OTHER && extract(im, a, name, size, &it) != 0) ||
			add_item(im, &it) != 0) {
			if (im->err[0] == '\0')
				refuse(im, name, "out of memory");
			if (it.raw != NULL)
				(void)unlink(it.raw);
			item_free(&it);
			rc = -1;
			goto out;
		}
	}
	if (im->skipped > 10)
		log_warnx("import: %" PRIu64 " more entries that are not a capture or name history skipped",
			im->skipped - 10);
	if (rc == 0 && r == ARCHIVE_EOF)
		rc = check_sensor_ids(im);
	if (r != ARCHIVE_EOF)
		rc = refuse(im, NULL, "%s: corrupt, truncated or not a tar archive: %s", im->archive,
			archive_error_string(a) ? archive_error_string(a) : "read error");
out:
	archive_read_free(a);
	return rc;
}

/*
 * Checks a pcapline manifest.json against the archive both ways: every file it lists is
 * present once with its SHA-256 and size, and every file present is listed (an extra
 * capture slipped into a genuine export would otherwise be imported as part of it).
 */
struct manifest_ctx {
	struct import *im;
	const struct item *m;
	int rc;
};

static bool
check_listed(void *arg, size_t i, const struct bundle_listed *l)
{
	struct manifest_ctx *c = arg;
	struct import *im = c->im;
	struct item *it = (struct item *)find_item(im, l->path);

	if (it == NULL || it->kind == ITEM_MANIFEST) {
		c->rc = refuse(im, l->path, "listed in manifest.json but not in the archive");
		return false;
	}
	if (it->listed) {
		c->rc = refuse(im, it->entry, "listed twice in manifest.json");
		return false;
	}
	it->listed = true;
	if (it->kind == ITEM_OTHER || strcmp(it->sha, l->sha256) != 0 || it->size != l->bytes) {
		c->rc = refuse(im, it->entry, "%s",
			it->kind == ITEM_OTHER ? "listed in manifest.json but not a capture or name history"
					       : "SHA-256 or size differs from manifest.json");
		return false;
	}
	return true;
}

static int
check_manifest(struct import *im, const struct item *m)
{
	struct manifest_ctx c = { im, m, 0 };
	char err[512];
	int rc = bundle_manifest_read(m->raw, check_listed, &c, err, sizeof(err));

	if (rc == 1) {
		log_warnx("import: %s is not a pcapline export manifest; not checked", m->entry);
		return 0;
	}
	if (rc < 0)
		return refuse(im, m->entry, "%s", err);
	if (rc == 2)
		return c.rc;
	for (size_t k = 0; k < im->n_items; k++)
		if (im->items[k].kind != ITEM_MANIFEST && !im->items[k].listed)
			return refuse(
				im, im->items[k].entry, "in the archive but not listed in manifest.json");
	return 0;
}

/* Conversion into segments ------------------------------------------------------------ */

/* A segment being written: the open output for one (interface, link type) of the
 * current sensor. */
struct conv_out {
	char iface[FSU_NAME_MAX + 1];
	uint32_t linktype, snaplen;
	int fd;
	struct pcapw *w;
	size_t seg;   /* index into im->segs (which realloc moves) */
	uint64_t gen; /* taken by this capture: two of its interfaces never share */
};

/* What the validating pass learns about one interface of a capture. */
struct conv_iface {
	uint64_t packets;
	uint64_t min_ns;
	uint32_t max_caplen;
	uint32_t snaplen;
	struct conv_out *out; /* during the writing pass */
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
close_out(struct import *im, struct conv_out *o, const char *entry)
{
	struct stat st;
	int rc = 0;

	if (o->w == NULL)
		return 0;
	/* Synced all at once by commit(): one fsync per segment made an archive of many
	 * small captures take minutes. */
	rc = pcapw_free(o->w);
	o->w = NULL;
	if (rc == 0 && fstat(o->fd, &st) == 0)
		im->segs[o->seg].bytes = (uint64_t)st.st_size;
	if (close(o->fd) != 0 && rc == 0)
		rc = -errno;
	o->fd = -1;
	if (rc != 0)
		return refuse(im, entry, "writing %s: %s", im->segs[o->seg].staged, strerror(-rc));
	return 0;
}

/* Closes every open segment (entry names the capture for an error; NULL after a
 * failure, when nothing is reported). */
static int
close_outs(struct import *im, const char *entry)
{
	int rc = 0;

	for (size_t i = 0; i < im->n_outs; i++) {
		if (rc == 0 && entry != NULL)
			rc = close_out(im, &im->outs[i], entry);
		else if (im->outs[i].w != NULL) {
			pcapw_free(im->outs[i].w);
			close(im->outs[i].fd);
			im->outs[i].w = NULL;
		}
	}
	im->n_outs = 0;
	free(im->outs_sensor);
	im->outs_sensor = NULL;
	return rc;
}

static int
open_out(struct import *im, struct conv_out *o, const struct item *it, uint64_t first_ns)
{
	struct import_seg *s;
	char base[512], dir[4096];
	int rc;

	if (im->n_segs == im->cap_segs) {
		size_t cap = im->cap_segs ? im->cap_segs * 2 : 64;
		struct import_seg *v = realloc(im->segs, cap * sizeof(*v));

		if (v == NULL)
			return refuse(im, it->entry, "out of memory");
		im->segs = v;
		im->cap_segs = cap;
	}
	s = &im->segs[im->n_segs];
	memset(s, 0, sizeof(*s));
	/* The older form: an imported capture has no sensor interface index (segname.h). */
	if ((rc = segname_format(base, sizeof(base), first_ns, im->epoch, im->seq++, -1, o->iface)) < 0)
		return refuse(im, it->entry, "segment name for %s: %s", o->iface, strerror(-rc));
	if ((rc = fsu_path(dir, sizeof(dir), "%s/sensors/%s/segments", im->staging, it->sensor)) != 0 ||
		(rc = fsu_mkdirs(dir, 0755)) != 0)
		return refuse(
			im, it->entry, "%s/sensors/%s/segments: %s", im->staging, it->sensor, strerror(-rc));
	if (asprintf(&s->staged, "%s/%s", dir, base) < 0)
		s->staged = NULL;
	if (asprintf(&s->rel, "sensors/%s/segments/%s", it->sensor, base) < 0)
		s->rel = NULL;
	s->sensor = strdup(it->sensor);
	s->iface = strdup(o->iface);
	im->n_segs++;
	if (s->staged == NULL || s->rel == NULL || s->sensor == NULL || s->iface == NULL)
		return refuse(im, it->entry, "out of memory");
	s->linktype = o->linktype;
	s->snaplen = o->snaplen;
	s->min_ns = UINT64_MAX;
	o->seg = im->n_segs - 1;
	o->fd = open(s->staged, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (o->fd < 0)
		return refuse(im, it->entry, "%s: %s", s->staged, strerror(errno));
	o->w = pcapw_new(o->fd, o->linktype, o->snaplen);
	if (o->w == NULL || (rc = pcapw_header(o->w)) != 0) {
		rc = o->w == NULL ? -errno : rc;
		if (o->w == NULL)
			close(o->fd);
		return refuse(im, it->entry, "%s: %s", s->staged, strerror(-rc));
	}
	return 0;
}

/*
 * The output for interface ifc of the capture: the current sensor's open segment for the
 * same interface name and link type when this capture's packets may follow its own
 * (snapshot length not larger, no packet older than the segment's newest, so that the
 * segment stays in time order as far as the captures are), else a new one, opened at
 * the first packet.
 */
static int
pick_out(struct import *im, const struct item *it, const struct pcapf_iface *ifc, struct conv_iface *c)
{
	char ifname[FSU_NAME_MAX + 1];
	struct conv_out *o = NULL;

	fsu_sanitize(ifname, ifc->name);
	for (size_t i = 0; i < im->n_outs && o == NULL; i++)
		if (im->outs[i].gen != im->conv_gen && im->outs[i].linktype == ifc->linktype &&
			strcmp(im->outs[i].iface, ifname) == 0)
			o = &im->outs[i];
	if (o == NULL) {
		/* Room was made by convert(): at most PCAPF_MAX_IFACES per capture. */
		o = &im->outs[im->n_outs++];
		memset(o, 0, sizeof(*o));
		o->fd = -1;
		snprintf(o->iface, sizeof(o->iface), "%s", ifname);
		o->linktype = ifc->linktype;
	}
	o->gen = im->conv_gen;
	if (o->w != NULL && (c->snaplen > o->snaplen || c->min_ns < im->segs[o->seg].max_ns)) {
		if (close_out(im, o, it->entry) != 0)
			return -1;
	}
	if (o->w == NULL)
		o->snaplen = c->snaplen;
	c->out = o;
	return 0;
}

/* Validates one capture completely, then writes it into segments. */
static int
convert(struct import *im, const struct item *it)
{
	struct conv_iface ci[PCAPF_MAX_IFACES];
	struct pcapf_rec rec;
	struct pcapr *r;
	uint64_t total = 0, delta = it->off % (uint64_t)sysconf(_SC_PAGESIZE);
	size_t n_if, map_len = (size_t)(it->size + delta);
	void *map = NULL;
	const uint8_t *data = (const uint8_t *)"";
	int rc;

	memset(ci, 0, sizeof(ci));
	for (size_t i = 0; i < PCAPF_MAX_IFACES; i++)
		ci[i].min_ns = UINT64_MAX;
	if (it->size > 0) {
		map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, im->blob_fd, (off_t)(it->off - delta));
		if (map == MAP_FAILED)
			return refuse(im, it->entry, "reading the staging file: %s", strerror(errno));
		data = (const uint8_t *)map + delta;
	}
	r = pcapr_open_mem(data, (size_t)it->size, &rc);
	if (r == NULL) {
		rc = refuse(im, it->entry, "not a valid capture: %s", pcapf_strerror(rc));
		goto out;
	}
	n_if = pcapr_iface_count(r);
	while ((rc = pcapr_next(r, &rec)) == 1) {
		if (rec.ts_ns / 1000000000ull > UINT32_MAX) {
			pcapr_close(r);
			rc = refuse(im, it->entry, "record %" PRIu64 ": timestamp after 2106", total + 1);
			goto out;
		}
		/* No capture holds more of a packet than the packet had: such a record is
		 * corrupt, and would be stored with a length that every reader distrusts. */
		if (rec.caplen > rec.origlen) {
			pcapr_close(r);
			rc = refuse(im, it->entry,
				"record %" PRIu64 ": captured length %" PRIu32
				" exceeds original length %" PRIu32,
				total + 1, rec.caplen, rec.origlen);
			goto out;
		}
		ci[rec.iface].packets++;
		if (rec.caplen > ci[rec.iface].max_caplen)
			ci[rec.iface].max_caplen = rec.caplen;
		if (rec.ts_ns < ci[rec.iface].min_ns)
			ci[rec.iface].min_ns = rec.ts_ns;
		total++;
	}
	pcapr_close(r);
	if (rc < 0) {
		rc = refuse(im, it->entry, "corrupt capture after %" PRIu64 " records: %s", total,
			pcapf_strerror(rc));
		goto out;
	}
	if (add_sensor(im, it->sensor) != 0) {
		rc = refuse(im, it->entry, "out of memory");
		goto out;
	}
	rc = 0;
	if (total == 0)
		goto out;

	/* Second reading, now known to be sound: write the segments. */
	r = pcapr_open_mem(data, (size_t)it->size, &rc);
	if (r == NULL) {
		rc = refuse(im, it->entry, "not a valid capture: %s", pcapf_strerror(rc));
		goto out;
	}
	rc = 0;
	if (im->outs == NULL && (im->outs = calloc(PCAPF_MAX_IFACES, sizeof(*im->outs))) == NULL)
		rc = refuse(im, it->entry, "out of memory");
	if (rc == 0 &&
		(im->outs_sensor == NULL || strcmp(im->outs_sensor, it->sensor) != 0 ||
			im->n_outs + n_if > PCAPF_MAX_IFACES)) {
		rc = close_outs(im, it->entry);
		if (rc == 0 && (im->outs_sensor = strdup(it->sensor)) == NULL)
			rc = refuse(im, it->entry, "out of memory");
	}
	im->conv_gen++;
	for (size_t i = 0; rc == 0 && i < n_if; i++) {
		uint32_t snap = pcapr_iface(r, i)->snaplen;
		if (snap == 0 || snap > PCAPF_MAX_CAPLEN)
			snap = PCAPF_MAX_CAPLEN;
		if (snap < ci[i].max_caplen)
			snap = ci[i].max_caplen;
		ci[i].snaplen = snap;
		if (ci[i].packets > 0)
			rc = pick_out(im, it, pcapr_iface(r, i), &ci[i]);
	}
	while (rc == 0 && pcapr_next(r, &rec) == 1) {
		struct conv_out *o = ci[rec.iface].out;
		struct import_seg *s;

		if (o->w != NULL && pcapw_bytes(o->w) >= im->segment_size)
			rc = close_out(im, o, it->entry);
		if (rc == 0 && o->w == NULL)
			rc = open_out(im, o, it, rec.ts_ns);
		if (rc != 0)
			break;
		s = &im->segs[o->seg];
		int w = pcapw_write(o->w, rec.ts_ns, rec.data, rec.caplen, rec.origlen);
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
out:
	if (map != NULL)
		munmap(map, map_len);
	/* Converted: its staging space can go back (best effort). */
	if (rc == 0 && it->size > 0)
		(void)fallocate(im->blob_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)it->off,
			(off_t)it->size);
	return rc;
}

/* Commit ---------------------------------------------------------------------------------- */

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
import_index_open(struct import *im, sqlite3 **db)
{
	char path[4096], err[1024] = "";
	char *msg = NULL;

	*db = NULL;
	if (has_unindexed_segments(im->view)) {
		log_warnx(
			"import: %s has segments but no index.db; not creating one (export scans)", im->view);
		return 0;
	}
	fsu_path(path, sizeof(path), "%s/index.db", im->view);
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(*db, 5000);
	if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg) != SQLITE_OK ||
		sqlite3_exec(*db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	/* The receiver's schema code: a new index is the one the receiver creates, an older
	 * one is migrated (within this transaction), a newer one refused. */
	if (index_schema_apply(*db, path, err, sizeof(err)) != 0) {
		refuse(im, NULL, "%s", err);
		sqlite3_close(*db);
		*db = NULL;
		return -1;
	}
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
	if (sqlite3_prepare_v2(db,
		    "INSERT INTO segments(sensor, path, iface, linktype, snaplen, min_ns,"
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
		const char *paths[2] = { existing, conv };
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
			if (namehist_from_kubeshark(it->raw, im->max_json, f, &lines, err, sizeof(err)) !=
				0) {
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
	struct cli_strv names_done = { 0 };
	int rc = 0;

	/* Every staged file reaches the disk before any of them is renamed into place. */
	int sfd = open(im->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0 || syncfs(sfd) != 0) {
		rc = refuse(im, NULL, "%s: sync: %s", im->staging, strerror(errno));
		if (sfd >= 0)
			close(sfd);
		return rc;
	}
	close(sfd);
	if (import_index_open(im, &db) != 0)
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
	for (size_t i = 0; i < im->n_items; i++)
		item_free(&im->items[i]);
	free(im->items);
	free(im->names);
	free(im->outs);
	free(im->outs_sensor);
	for (size_t i = 0; i < im->n_segs; i++) {
		free(im->segs[i].sensor);
		free(im->segs[i].rel);
		free(im->segs[i].staged);
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
		{ "dir", required_argument, NULL, 'd' },
		{ "max-entry-size", required_argument, NULL, OPT_MAX_ENTRY },
		{ "max-entries", required_argument, NULL, OPT_MAX_ENTRIES },
		{ "max-json-size", required_argument, NULL, OPT_MAX_JSON },
		{ "segment-size", required_argument, NULL, OPT_SEGMENT },
		{ "max-ratio", required_argument, NULL, OPT_MAX_RATIO },
		{ "max-total-size", required_argument, NULL, OPT_MAX_TOTAL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct import im = {
		.blob_fd = -1,
		.max_entry = 64ull << 30,
		.max_entries = 100000,
		.max_json = 256u << 20,
		.segment_size = 64u << 20,
		.max_ratio = 100,
		.max_total = 64ull << 30,
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
		case OPT_MAX_TOTAL:
			dst = &im.max_total;
			break;
		case OPT_MAX_RATIO:
			dst = &im.max_ratio;
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
	rc = expand_limit(&im);
	if (rc == 0)
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
	if (rc == 0)
		rc = close_outs(&im, im.archive);
	else
		(void)close_outs(&im, NULL);
	if (rc == 0 && im.sensors.n == 0)
		rc = refuse(&im, NULL, "%s: no sensor folder with a capture or a name history", im.archive);
	if (rc == 0)
		rc = stage_names(&im);
	if (rc == 0)
		rc = commit(&im);
	if (im.blob_fd >= 0)
		close(im.blob_fd);
	(void)fsu_rmtree(im.staging);
	if (rc != 0) {
		log_warnx("import refused, nothing changed in %s: %s", im.view, im.err);
		import_free(&im);
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < im.n_segs; i++)
		packets += im.segs[i].packets;
	log_info("imported %s into %s: %zu sensor%s, %zu segments, %" PRIu64 " packets", im.archive, im.view,
		im.sensors.n, im.sensors.n == 1 ? "" : "s", im.n_segs, packets);
	import_free(&im);
	return 0;
}
