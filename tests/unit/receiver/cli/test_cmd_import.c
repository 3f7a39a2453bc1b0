/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/cli/cmd_import.c (`pcapline import`): an archive written by
 * bundle_export() loads into a view repository that answers with the same sensors,
 * packets, bytes and name history (exported again, the captures are identical); the
 * Kubeshark layout loads too; and every kind of hostile or broken archive is refused
 * with a message naming the entry and the problem, leaving the view exactly as it was
 * (no staging folder, no partial sensor). Real files and SQLite in a temporary directory;
 * archives written with libarchive.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "receiver/cli/cli.h"
#include "receiver/repo/bundle.h"
#include "receiver/repo/index.h"
#include "receiver/repo/repo.h"
#include "shared/fsutil.h"
#include "shared/log.h"
#include "shared/pcapfile.h"
#include "tests/unit/testutil.h"

#define NS    UINT64_C(1000000000)
#define T0    (UINT64_C(1700000000) * NS)
#define END   ((uint64_t)INT64_MAX)
#define PCAPS "tests/data/pcaps"

static char dir[] = "/tmp/pcapline-test-import-XXXXXX";
static char src[1100], view[1100], archive[1100];
static uint64_t dns_packets;

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

/* A pcap file of n Ethernet records of 80 bytes at ts[i], first byte i. */
static void
write_pcap(const char *path, const uint64_t *ts, size_t n, uint32_t origlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct pcapw *w;

	assert_true(fd >= 0);
	w = pcapw_new(fd, 1, 65535);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t data[80];
		memset(data, 0x5a, sizeof(data));
		data[0] = (uint8_t)i;
		assert_int_equal(pcapw_write(w, ts[i], data, sizeof(data), origlen), 0);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);
}

/* Exports [0, END) of the repository at root into out. */
static void
export_repo(const char *root, const char *out)
{
	char err[512] = "", **names = NULL;
	size_t n = 0;
	struct repo *r = repo_open(root, err, sizeof(err));
	struct bundle_sensor s[8];
	struct bundle_opts o = { .from_ns = 0,
		.to_ns = END,
		.output = out,
		.gzip_level = 1,
		.source_kind = "repository",
		.source_name = root };

	assert_non_null(r);
	assert_int_equal(repo_sensors(r, 0, END, &names, &n, err, sizeof(err)), 0);
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		s[i].name = names[i];
		assert_int_equal(repo_segments(r, names[i], 0, END, &s[i].segs, err, sizeof(err)), 0);
		s[i].names_path = repo_names_path(r, names[i]);
	}
	if (bundle_export(&o, s, n, err, sizeof(err)) != 0)
		fail_msg("bundle_export: %s", err);
	for (size_t i = 0; i < n; i++) {
		repo_seglist_free(&s[i].segs);
		free((char *)s[i].names_path);
	}
	repo_strv_free(names, n);
	repo_free(r);
}

/* The source repository: s1 with nine generated records, s2 with dns-udp-queries.pcap. */
static int
setup(void **state)
{
	static const uint64_t ts[] = { T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5, T0 + 6, T0 + 7, T0 + 8,
		T0 + 9 };
	char p[1200];
	struct index_reconcile_report rep = { 0 };
	struct pcapr *r;
	struct pcapf_rec rec;
	struct pcapw *w;
	int fd, rc = 0;
	FILE *f;

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(view, sizeof(view), "%s/view", dir);
	snprintf(archive, sizeof(archive), "%s/export.tar.gz", dir);
	assert_int_equal(fsu_mkdirs(at("src/sensors/s1/segments"), 0755), 0);
	assert_int_equal(fsu_mkdirs(at("src/sensors/s2/segments"), 0755), 0);
	write_pcap(
		at("src/sensors/s1/segments/01700000000000000001-0000000000000001-1.0-eth0.pcap"), ts, 9, 80);
	r = pcapr_open(PCAPS "/dns-udp-queries.pcap", &rc);
	assert_non_null(r);
	snprintf(p, sizeof(p), "%s/sensors/s2/segments/01112172466496046000-0000000000000001-1.0-eth0.pcap",
		src);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	w = pcapw_new(fd, 1, 65535);
	assert_int_equal(pcapw_header(w), 0);
	while ((rc = pcapr_next(r, &rec)) == 1) {
		assert_int_equal(pcapw_write(w, rec.ts_ns, rec.data, rec.caplen, rec.origlen), 0);
		dns_packets++;
	}
	assert_int_equal(rc, 0);
	pcapw_free(w);
	close(fd);
	pcapr_close(r);
	f = fopen(at("src/sensors/s1/names.jsonl"), "w");
	assert_non_null(f);
	fprintf(f,
		"{\"t\":%" PRIu64
		",\"addr\":\"198.18.0.1\",\"name\":\"db\",\"ns\":\"prod\",\"src\":\"dns\"}\n",
		T0 + 2 * NS);
	fclose(f);
	tu_reconcile(src, &rep);
	assert_int_equal(rep.added, 2);
	export_repo(src, archive);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return fsu_rmtree(dir);
}

static int
clean_view(void **state)
{
	(void)state;
	return fsu_rmtree(view);
}

/* Runs `pcapline import ARGS...`, capturing what it logs into msg. */
static int
run_import(char *msg, size_t msglen, ...)
{
	char *argv[16];
	int argc = 0, rc, saved, fd;
	va_list ap;
	ssize_t n;

	va_start(ap, msglen);
	argv[argc++] = "import";
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(at("stderr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	rc = cmd_import(argc, argv);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, msg, msglen - 1, 0);
	msg[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(at("stderr.txt"));
	return rc;
}

/* Names in a directory (not "." or ".."), sorted, joined by ','. */
static void
listing(const char *path, char *out, size_t len)
{
	struct dirent **v;
	int n = scandir(path, &v, NULL, alphasort);

	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i]->d_name, ".") != 0 && strcmp(v[i]->d_name, "..") != 0)
			snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "",
				v[i]->d_name);
		free(v[i]);
	}
	if (n >= 0)
		free(v);
}

static void
test_roundtrip(void **state)
{
	char msg[4096], err[256] = "", **names = NULL, *a;
	size_t n = 0, la;
	struct repo *r;
	struct repo_seglist l = { 0 };

	(void)state;
	if (run_import(msg, sizeof(msg), "--dir", view, archive, NULL) != 0)
		fail_msg("import failed: %s", msg);
	assert_non_null(strstr(msg, "2 sensors"));
	/* No staging folder is left, and the index is closed (no WAL files). */
	listing(view, msg, sizeof(msg));
	assert_string_equal(msg, "index.db,sensors");
	/* The view is a repository with an index: same sensors, packets and times. */
	r = repo_open(view, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_INDEX);
	assert_int_equal(repo_sensors(r, 0, END, &names, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "s1");
	assert_string_equal(names[1], "s2");
	repo_strv_free(names, n);
	assert_int_equal(repo_segments(r, "s1", 0, END, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].packets, 9);
	assert_int_equal(l.v[0].min_ns, T0 + 1);
	assert_int_equal(l.v[0].max_ns, T0 + 9);
	assert_int_equal(l.v[0].linktype, 1);
	assert_true(index_seg_path_ok(l.v[0].rel));
	repo_seglist_free(&l);
	assert_int_equal(repo_segments(r, "s2", 0, END, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].packets, dns_packets);
	repo_seglist_free(&l);
	repo_free(r);
	/* The history came back as names.jsonl. */
	a = (char *)tu_slurp(at("view/sensors/s1/names.jsonl"), &la);
	a[la] = '\0';
	assert_string_equal(a,
		"{\"t\":1700000002000000000,\"addr\":\"198.18.0.1\",\"name\":\"db\",\"ns\":\"prod\","
		"\"src\":\"static\"}\n");
	free(a);

	/* Exported again, the view gives the same captures, byte for byte. */
	export_repo(view, at("again.tar.gz"));
	{
		char cmd[4096];

		snprintf(cmd, sizeof(cmd),
			"set -e; cd %s; mkdir -p x1 x2; tar -xzf export.tar.gz -C x1; tar -xzf again.tar.gz "
			"-C x2; "
			"cmp x1/s1/s1.pcap x2/s1/s1.pcap; cmp x1/s2/s2.pcap x2/s2/s2.pcap; "
			"cmp x1/s1/name_resolution_history.json x2/s1/name_resolution_history.json",
			dir);
		assert_int_equal(system(cmd), 0);
	}
	/* The same records as the public capture it came from (which has microsecond
	 * timestamps: compared as nanoseconds). */
	{
		int e1 = 0, e2 = 0, r1, r2;
		struct pcapr *x = pcapr_open(at("x1/s2/s2.pcap"), &e1),
			     *y = pcapr_open(PCAPS "/dns-udp-queries.pcap", &e2);
		struct pcapf_rec p1, p2;
		uint64_t k = 0;

		assert_non_null(x);
		assert_non_null(y);
		while ((r1 = pcapr_next(x, &p1)) == 1 && (r2 = pcapr_next(y, &p2)) == 1) {
			assert_int_equal(p1.ts_ns, p2.ts_ns);
			assert_int_equal(p1.caplen, p2.caplen);
			assert_int_equal(p1.origlen, p2.origlen);
			assert_memory_equal(p1.data, p2.data, p1.caplen);
			k++;
		}
		assert_int_equal(r1, 0);
		assert_int_equal(pcapr_next(y, &p2), 0);
		assert_int_equal(k, dns_packets);
		pcapr_close(x);
		pcapr_close(y);
	}
	unlink(at("again.tar.gz"));
	assert_int_equal(fsu_rmtree(at("x1")), 0);
	assert_int_equal(fsu_rmtree(at("x2")), 0);
}

/* Writes a tar (gzip'd when gz) of the given entries: name, type ('f' file, 'd' folder,
 * 'l' symbolic link to data, 'h' hard link to data, 'c' character device), data. */
struct tent {
	const char *name;
	char type;
	const void *data;
	size_t len;
};

static void
write_tar(const char *path, bool gz, const struct tent *e, size_t n)
{
	struct archive *a = archive_write_new();

	if (gz)
		archive_write_add_filter_gzip(a);
	archive_write_set_format_pax_restricted(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();

		archive_entry_set_pathname(ae, e[i].name);
		archive_entry_set_perm(ae, 0644);
		switch (e[i].type) {
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_symlink(ae, e[i].data);
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e[i].data);
			break;
		case 'c':
			archive_entry_set_filetype(ae, AE_IFCHR);
			break;
		default:
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_size(ae, (la_int64_t)e[i].len);
		}
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (e[i].type == 'f' && e[i].len > 0)
			assert_int_equal(archive_write_data(a, e[i].data, e[i].len), (la_ssize_t)e[i].len);
		archive_entry_free(ae);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* Imports path and expects a refusal whose message holds every string in want[]; the
 * view (which holds a marker file) must be left exactly as it was. */
static void
refused(const char *path, const char *const *want)
{
	char msg[4096], before[1024], after[1024];
	int fd;

	assert_int_equal(fsu_mkdirs(view, 0755), 0);
	fd = open(at("view/marker"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	close(fd);
	listing(view, before, sizeof(before));
	assert_int_equal(run_import(msg, sizeof(msg), "--dir", view, path, NULL), EXIT_FAIL);
	for (; *want != NULL; want++)
		if (strstr(msg, *want) == NULL)
			fail_msg("'%s' not in: %s", *want, msg);
	assert_non_null(strstr(msg, "import refused, nothing changed"));
	listing(view, after, sizeof(after));
	assert_string_equal(after, before);
	assert_string_equal(after, "marker");
	assert_int_equal(fsu_rmtree(view), 0);
}

static void
test_refused_archives(void **state)
{
	static const char junk[] = "this is not an archive, not even close to one.........";
	uint8_t *good, *bad;
	size_t glen, blen;
	char p[1200];

	(void)state;
	/* Not an archive at all. */
	{
		int fd = open(at("junk.tar"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_int_equal(fsu_write_all(fd, junk, sizeof(junk)), 0);
		close(fd);
		refused(at("junk.tar"), (const char *const[]){ "junk.tar", "not a tar archive", NULL });
	}
	/* A missing file. */
	refused(at("missing.tar"), (const char *const[]){ "missing.tar", NULL });

	/* A capture to put into hand-made archives. */
	write_pcap(at("one.pcap"), (const uint64_t[]){ T0 }, 1, 80);
	good = tu_slurp(at("one.pcap"), &glen);

	/* Paths that leave the view, links, special files. */
	write_tar(at("a.tar"), false, (const struct tent[]){ { "../evil/x.pcap", 'f', good, glen } }, 1);
	refused(at("a.tar"), (const char *const[]){ "../evil/x.pcap", NULL });
	write_tar(at("a.tar"), true, (const struct tent[]){ { "/abs/x.pcap", 'f', good, glen } }, 1);
	refused(at("a.tar"), (const char *const[]){ "/abs/x.pcap", "absolute path refused", NULL });
	write_tar(at("a.tar"), false,
		(const struct tent[]){
			{ "s1/x.pcap", 'f', good, glen }, { "s1/y.pcap", 'l', "/etc/passwd", 0 } },
		2);
	refused(at("a.tar"), (const char *const[]){ "s1/y.pcap", "symbolic link refused", NULL });
	write_tar(at("a.tar"), false,
		(const struct tent[]){
			{ "s1/x.pcap", 'f', good, glen }, { "s1/y.pcap", 'h', "s1/x.pcap", 0 } },
		2);
	refused(at("a.tar"), (const char *const[]){ "s1/y.pcap", "hard link", NULL });
	write_tar(at("a.tar"), false, (const struct tent[]){ { "s1/dev", 'c', NULL, 0 } }, 1);
	refused(at("a.tar"), (const char *const[]){ "s1/dev", "refused", NULL });
	/* The same entry twice. */
	write_tar(at("a.tar"), false,
		(const struct tent[]){ { "s1/x.pcap", 'f', good, glen }, { "s1/x.pcap", 'f', good, glen } },
		2);
	refused(at("a.tar"), (const char *const[]){ "s1/x.pcap", "appears twice", NULL });
	/* Two folders that would become one sensor. */
	write_tar(at("a.tar"), false,
		(const struct tent[]){
			{ "web 01/x.pcap", 'f', good, glen }, { "web_01/x.pcap", 'f', good, glen } },
		2);
	refused(at("a.tar"), (const char *const[]){ "would both become sensor 'web_01'", NULL });

	/* A capture whose record claims more captured than original bytes. */
	write_pcap(at("lie.pcap"), (const uint64_t[]){ T0, T0 + 1 }, 2, 40);
	bad = tu_slurp(at("lie.pcap"), &blen);
	write_tar(at("a.tar"), false, (const struct tent[]){ { "s1/lie.pcap", 'f', bad, blen } }, 1);
	refused(at("a.tar"), (const char *const[]){ "s1/lie.pcap", "record 1", NULL });
	free(bad);
	/* A capture cut in its first record; a file that is no capture. */
	write_tar(at("a.tar"), false, (const struct tent[]){ { "s1/cut.pcap", 'f', good, 24 + 10 } }, 1);
	refused(at("a.tar"), (const char *const[]){ "s1/cut.pcap", NULL });
	write_tar(at("a.tar"), false, (const struct tent[]){ { "s1/j.pcap", 'f', junk, sizeof(junk) } }, 1);
	refused(at("a.tar"), (const char *const[]){ "s1/j.pcap", "not a valid capture", NULL });
	/* A global header alone is a capture without records; nothing else: no sensor. */
	write_tar(at("a.tar"), false, (const struct tent[]){ { "readme.txt", 'f', "hi", 2 } }, 1);
	refused(at("a.tar"), (const char *const[]){ "no sensor folder", NULL });

	/* A name history of the wrong shape. */
	write_tar(at("a.tar"), false,
		(const struct tent[]){ { "s1/x.pcap", 'f', good, glen },
			{ "s1/name_resolution_history.json", 'f', "{\"1\": {\"not-an-ip\": {}}}", 24 } },
		2);
	refused(at("a.tar"),
		(const char *const[]){ "s1/name_resolution_history.json", "not an address", NULL });

	/* Limits. */
	write_tar(at("a.tar"), false,
		(const struct tent[]){ { "s1/a.pcap", 'f', good, glen }, { "s1/b.pcap", 'f', good, glen },
			{ "s1/c.pcap", 'f', good, glen } },
		3);
	{
		char msg[4096];

		assert_int_equal(
			run_import(msg, sizeof(msg), "--max-entries", "2", "--dir", view, at("a.tar"), NULL),
			EXIT_FAIL);
		assert_non_null(strstr(msg, "more than 2 entries (--max-entries)"));
		assert_int_equal(fsu_rmtree(view), 0);
		assert_int_equal(run_import(msg, sizeof(msg), "--max-entry-size", "100", "--dir", view,
					 at("a.tar"), NULL),
			EXIT_FAIL);
		assert_non_null(strstr(msg, "above the limit of 100"));
		assert_int_equal(fsu_rmtree(view), 0);
		/* Within the limits the same archive loads: three captures of one sensor. */
		if (run_import(msg, sizeof(msg), "--max-entries", "3", "--dir", view, at("a.tar"), NULL) != 0)
			fail_msg("%s", msg);
		assert_non_null(strstr(msg, "1 sensor,"));
		assert_non_null(strstr(msg, "3 packets"));
		assert_int_equal(fsu_rmtree(view), 0);
	}
	free(good);
	snprintf(p, sizeof(p), "%s", at("a.tar"));
	unlink(p);
	unlink(at("junk.tar"));
	unlink(at("one.pcap"));
	unlink(at("lie.pcap"));
}

/* The pcapline archive with one byte of s1's capture changed (the manifest then lies),
 * or with an extra file the manifest does not list. */
static void
test_manifest_checked(void **state)
{
	struct archive *a = archive_read_new();
	struct archive_entry *ae;
	struct tent e[16];
	uint8_t *data[16];
	size_t n = 0;

	(void)state;
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	assert_int_equal(archive_read_open_filename(a, archive, 65536), ARCHIVE_OK);
	while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
		size_t len = (size_t)archive_entry_size(ae);

		data[n] = malloc(len + 1);
		assert_int_equal(archive_read_data(a, data[n], len), (la_ssize_t)len);
		e[n] = (struct tent){ strdup(archive_entry_pathname(ae)),
			archive_entry_filetype(ae) == AE_IFDIR ? 'd' : 'f', data[n], len };
		n++;
	}
	archive_read_free(a);
	assert_int_equal(n, 7);
	assert_string_equal(e[2].name, "s1/s1.pcap");

	/* As read: loads. */
	write_tar(at("m.tar"), true, e, n);
	{
		char msg[4096];
		if (run_import(msg, sizeof(msg), "--dir", view, at("m.tar"), NULL) != 0)
			fail_msg("%s", msg);
		assert_int_equal(fsu_rmtree(view), 0);
	}
	/* One byte of a packet changed. */
	data[2][e[2].len - 1] ^= 0xff;
	write_tar(at("m.tar"), true, e, n);
	refused(at("m.tar"), (const char *const[]){ "s1/s1.pcap", NULL });
	data[2][e[2].len - 1] ^= 0xff;
	/* A file the manifest does not list. */
	e[n] = (struct tent){ "s1/extra.pcap", 'f', data[2], e[2].len };
	write_tar(at("m.tar"), true, e, n + 1);
	refused(at("m.tar"), (const char *const[]){ "s1/extra.pcap", "not listed in manifest.json", NULL });
	/* A listed file missing. */
	write_tar(at("m.tar"), true, e, n - 1);
	refused(at("m.tar"),
		(const char *const[]){ "s2/name_resolution_history.json",
			"listed in manifest.json but not in the archive", NULL });
	/* A manifest that is not JSON. */
	e[0].data = "{";
	e[0].len = 1;
	write_tar(at("m.tar"), true, e, n);
	refused(at("m.tar"), (const char *const[]){ "manifest.json", "not valid JSON", NULL });
	for (size_t i = 0; i < n; i++) {
		free((char *)e[i].name);
		free(data[i]);
	}
	unlink(at("m.tar"));
}

static void
test_kubeshark_layout(void **state)
{
	char msg[4096], err[256] = "", **names = NULL, *t;
	uint8_t *cap;
	size_t clen, n = 0, tl;
	struct repo *r;
	struct repo_seglist l = { 0 };
	static const char hist[] = "{\"1700000000\": {\"198.18.2.3\": {\"FullAddress\": \"api.default\", "
				   "\"Namespace\": \"default\"}}}";

	(void)state;
	write_pcap(at("k.pcap"), (const uint64_t[]){ T0, T0 + 5, T0 + 9 }, 3, 100);
	cap = tu_slurp(at("k.pcap"), &clen);
	write_tar(at("ks.tar.gz"), true,
		(const struct tent[]){ { "worker-1_10.0.0.7/", 'd', NULL, 0 },
			{ "worker-1_10.0.0.7/1700000000.pcap", 'f', cap, clen },
			{ "worker-1_10.0.0.7/name_resolution_history.json", 'f', hist, sizeof(hist) - 1 },
			{ "content.json", 'f', "{}", 2 } },
		4);
	if (run_import(msg, sizeof(msg), "--dir", view, at("ks.tar.gz"), NULL) != 0)
		fail_msg("%s", msg);
	r = repo_open(view, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(repo_sensors(r, 0, END, &names, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "worker-1_10.0.0.7");
	assert_int_equal(repo_segments(r, names[0], 0, END, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].packets, 3);
	assert_int_equal(l.v[0].min_ns, T0);
	assert_int_equal(l.v[0].max_ns, T0 + 9);
	repo_seglist_free(&l);
	repo_strv_free(names, n);
	repo_free(r);
	t = (char *)tu_slurp(at("view/sensors/worker-1_10.0.0.7/names.jsonl"), &tl);
	t[tl] = '\0';
	assert_string_equal(t,
		"{\"t\":1700000000000000000,\"addr\":\"198.18.2.3\",\"name\":\"api.default\",\"ns\":"
		"\"default\",\"src\":\"static\"}\n");
	free(t);
	free(cap);
	unlink(at("k.pcap"));
	unlink(at("ks.tar.gz"));
}

static void
test_expansion_bomb(void **state)
{
	/* 40 MiB of zero bytes (a pcap header, then zeros) gzip to a few tens of KiB: far
	 * above --max-ratio 100 times the archive plus the 16 MiB floor. Refused from the
	 * declared sizes, before any of it is written. */
	size_t len = 40u << 20;
	uint8_t *zeros = calloc(1, len);
	struct stat st;

	(void)state;
	assert_non_null(zeros);
	memcpy(zeros, (const uint8_t[]){ 0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0 }, 8);
	write_tar(at("bomb.tar.gz"), true, (const struct tent[]){ { "s1/big.pcap", 'f', zeros, len } }, 1);
	free(zeros);
	assert_int_equal(stat(at("bomb.tar.gz"), &st), 0);
	assert_true(st.st_size < (1 << 20));
	refused(at("bomb.tar.gz"), (const char *const[]){ "s1/big.pcap", "would expand to more than", NULL });
	/* --max-total-size bounds it too, whatever the ratio. */
	{
		char msg[4096];

		assert_int_equal(run_import(msg, sizeof(msg), "--max-ratio", "100000", "--max-total-size",
					 "1M", "--dir", view, at("bomb.tar.gz"), NULL),
			EXIT_FAIL);
		assert_non_null(strstr(msg, "would expand to more than 1048576 bytes"));
		assert_int_equal(fsu_rmtree(view), 0);
	}
	unlink(at("bomb.tar.gz"));
}

static void
test_usage(void **state)
{
	char msg[4096];

	(void)state;
	assert_int_equal(run_import(msg, sizeof(msg), archive, NULL), EXIT_CONFIG);
	assert_non_null(strstr(msg, "--dir"));
	assert_int_equal(run_import(msg, sizeof(msg), "--dir", view, NULL), EXIT_CONFIG);
	assert_int_equal(run_import(msg, sizeof(msg), "--dir", view, "--max-entries", "lots", archive, NULL),
		EXIT_CONFIG);
	assert_non_null(strstr(msg, "'lots' is not a size"));
	assert_int_equal(run_import(msg, sizeof(msg), "--dir", view, "--max-entries", "0", archive, NULL),
		EXIT_CONFIG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_roundtrip, clean_view),
		cmocka_unit_test_teardown(test_refused_archives, clean_view),
		cmocka_unit_test_teardown(test_manifest_checked, clean_view),
		cmocka_unit_test_teardown(test_kubeshark_layout, clean_view),
		cmocka_unit_test_teardown(test_expansion_bomb, clean_view),
		cmocka_unit_test_teardown(test_usage, clean_view),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
