/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/repo/bundle.c, the export archive: the exact entries and their
 * order, a manifest whose sizes, SHA-256, counts and times match the files it lists,
 * segments of several interfaces merged in time order into one pcap (or a pcapng with
 * one IDB per link type), the window's edges, a BPF filter (counts cross-checked with
 * tcpdump on the public captures the segments were made from), the name history, and
 * failures that leave nothing under the output name. A real repository built in a
 * temporary directory (segments, index.db by index_reconcile(), names.jsonl); the
 * archive is read back with libarchive.
 */
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
#include <jansson.h>

#include "receiver/repo/bundle.h"
#include "receiver/repo/index.h"
#include "receiver/repo/repo.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "tests/unit/testutil.h"

#define NS    UINT64_C(1000000000)
#define T0    (UINT64_C(1700000000) * NS)
#define END   ((uint64_t)INT64_MAX)
#define EPOCH UINT64_C(0x00000000000000cd)
#define PCAPS "tests/data/pcaps"

static char dir[] = "/tmp/pcapline-test-bundle-XXXXXX";

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

static char *
seg_rel(const char *sensor, uint64_t first, uint64_t seq, unsigned ifindex, const char *ifname)
{
	static char buf[4][512];
	static int k;
	char *p = buf[k++ % 4];

	snprintf(p, 512, "sensors/%s/segments/%020" PRIu64 "-%016" PRIx64 "-%" PRIu64 ".%u-%s.pcap", sensor,
		first, EPOCH, seq, ifindex, ifname);
	return p;
}

/* A generated segment: records of 80 bytes whose first byte is tag[i]. */
static void
gen_segment(const char *sensor, unsigned ifindex, const char *ifname, const uint64_t *ts, const uint8_t *tag,
	size_t n)
{
	char d[256];
	int fd;
	struct pcapw *w;

	snprintf(d, sizeof(d), "sensors/%s/segments", sensor);
	assert_int_equal(fsu_mkdirs(at(d), 0755), 0);
	fd = open(
		at(seg_rel(sensor, ts[0], ifindex + 1, ifindex, ifname)), O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	w = pcapw_new(fd, 1, 65535);
	assert_non_null(w);
	assert_int_equal(pcapw_header(w), 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t data[80];
		memset(data, 0xa5, sizeof(data));
		data[0] = tag[i];
		assert_int_equal(pcapw_write(w, ts[i], data, sizeof(data), 200), 0);
	}
	assert_int_equal(pcapw_free(w), 0);
	close(fd);
}

/* Names a segment of a copied capture after its first record. */
struct segment_name {
	const char *sensor;
	unsigned ifindex;
	const char *ifname;
};

static const char *
segment_name(void *arg, uint64_t first_ns)
{
	struct segment_name *s = arg;

	return at(seg_rel(s->sensor, first_ns, s->ifindex + 1, s->ifindex, s->ifname));
}

/* A segment holding a public capture, rewritten as the receiver writes (nanoseconds). */
static uint64_t
capture_segment(const char *sensor, unsigned ifindex, const char *ifname, const char *capture)
{
	char d[256];
	struct segment_name s = { .sensor = sensor, .ifindex = ifindex, .ifname = ifname };

	snprintf(d, sizeof(d), "sensors/%s/segments", sensor);
	assert_int_equal(fsu_mkdirs(at(d), 0755), 0);
	return tu_copy_capture(capture, 0, UINT64_MAX, 0, segment_name, &s);
}

/* Runs a shell command and reads one number from its output; the command must succeed. */
static long
cmd_number(const char *fmt, ...)
{
	va_list ap;
	long v;
	int status;

	va_start(ap, fmt);
	v = tu_vcmd_number(&status, fmt, ap);
	va_end(ap);
	assert_int_equal(status, 0);
	return v;
}

/*
 * s1: two Ethernet interfaces, records interleaved in time (tags 1..9 in time order);
 * s2: dns-udp-queries.pcap on eth0 (Ethernet) and redis-benchmark-sll.pcap on any
 * (Linux cooked): two link types, so a pcapng.
 */
static const uint64_t s1_a_ts[] = { T0 + 1 * NS, T0 + 3 * NS, T0 + 5 * NS, T0 + 7 * NS, T0 + 9 * NS };
static const uint8_t s1_a_tag[] = { 1, 3, 5, 7, 9 };
static const uint64_t s1_b_ts[] = { T0 + 2 * NS, T0 + 4 * NS, T0 + 6 * NS, T0 + 8 * NS };
static const uint8_t s1_b_tag[] = { 2, 4, 6, 8 };
static uint64_t s2_dns, s2_redis;

static int
setup(void **state)
{
	struct index_reconcile_report rep = { 0 };
	FILE *f;

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	gen_segment("s1", 0, "eth0", s1_a_ts, s1_a_tag, 5);
	gen_segment("s1", 1, "eth1", s1_b_ts, s1_b_tag, 4);
	s2_dns = capture_segment("s2", 0, "eth0", "dns-udp-queries.pcap");
	s2_redis = capture_segment("s2", 1, "any", "redis-benchmark-sll.pcap");
	assert_int_equal(s2_dns, cmd_number("capinfos -T -r -c %s/dns-udp-queries.pcap | cut -f2", PCAPS));
	assert_int_equal(
		s2_redis, cmd_number("capinfos -T -r -c %s/redis-benchmark-sll.pcap | cut -f2", PCAPS));
	f = fopen(at("sensors/s1/names.jsonl"), "w");
	assert_non_null(f);
	fprintf(f,
		"{\"t\":%" PRIu64
		",\"addr\":\"198.18.0.1\",\"name\":\"db\",\"ns\":\"prod\",\"src\":\"dns\"}\n",
		T0);
	fprintf(f,
		"{\"t\":%" PRIu64
		",\"addr\":\"198.18.0.1\",\"name\":\"db2\",\"ns\":\"prod\",\"src\":\"dns\"}\n",
		T0 + 4 * NS);
	fclose(f);
	tu_reconcile(dir, &rep);
	assert_int_equal(rep.added, 4);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return fsu_rmtree(dir);
}

/* The bundle_sensor list of the window, from the repository's index. */
static size_t
collect(struct repo **rp, uint64_t from, uint64_t to, struct bundle_sensor *out)
{
	char err[256] = "", **names = NULL;
	size_t n = 0;
	struct repo *r = repo_open(dir, err, sizeof(err));

	assert_non_null(r);
	assert_int_equal(repo_source(r), REPO_INDEX);
	assert_int_equal(repo_sensors(r, from, to, &names, &n, err, sizeof(err)), 0);
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].name = strdup(names[i]);
		assert_int_equal(repo_segments(r, names[i], from, to, &out[i].segs, err, sizeof(err)), 0);
		out[i].names_path = repo_names_path(r, names[i]);
	}
	repo_strv_free(names, n);
	*rp = r;
	return n;
}

static void
collect_free(struct repo *r, struct bundle_sensor *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)s[i].name);
		free((char *)s[i].names_path);
		repo_seglist_free(&s[i].segs);
	}
	repo_free(r);
}

struct entry {
	char name[256];
	bool dir;
	size_t size;
	uint8_t *data;
};

/* Reads every entry of an archive file. */
static size_t
read_archive(const char *path, struct entry *e, size_t max)
{
	struct archive *a = archive_read_new();
	struct archive_entry *ae;
	size_t n = 0;

	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	assert_int_equal(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
	while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
		assert_true(n < max);
		snprintf(e[n].name, sizeof(e[n].name), "%s", archive_entry_pathname(ae));
		e[n].dir = archive_entry_filetype(ae) == AE_IFDIR;
		e[n].size = (size_t)archive_entry_size(ae);
		e[n].data = malloc(e[n].size + 1);
		assert_non_null(e[n].data);
		assert_int_equal(archive_read_data(a, e[n].data, e[n].size), (la_ssize_t)e[n].size);
		e[n].data[e[n].size] = 0;
		n++;
	}
	assert_int_equal(archive_read_free(a), ARCHIVE_OK);
	return n;
}

static void
entries_free(struct entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
}

static const struct entry *
find(const struct entry *e, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].name, name) == 0)
			return &e[i];
	fail_msg("no entry %s", name);
	return NULL;
}

static void
sha_of(const void *p, size_t n, char hex[FSU_SHA256_HEX])
{
	struct fsu_sha h;

	assert_int_equal(fsu_sha_init(&h), 0);
	fsu_sha_update(&h, p, n);
	fsu_sha_final(&h, hex);
}

/* The manifest's entry for path; checks its size and digest against the archive's. */
static json_t *
manifest_file(json_t *man, const struct entry *e, size_t n, const char *path)
{
	json_t *files = json_object_get(man, "files"), *f;
	size_t i;
	char hex[FSU_SHA256_HEX];
	const struct entry *x = find(e, n, path);

	json_array_foreach(files, i, f)
	{
		if (strcmp(json_string_value(json_object_get(f, "path")), path) != 0)
			continue;
		assert_int_equal(json_integer_value(json_object_get(f, "bytes")), x->size);
		sha_of(x->data, x->size, hex);
		assert_string_equal(json_string_value(json_object_get(f, "sha256")), hex);
		return f;
	}
	fail_msg("manifest does not list %s", path);
	return NULL;
}

static int export(
	uint64_t from, uint64_t to, const char *filter, const char *output, char *err, size_t errlen)
{
	struct bundle_sensor s[4];
	struct repo *r;
	size_t n = collect(&r, from, to, s);
	struct bundle_opts o = {
		.from_ns = from,
		.to_ns = to,
		.filter = filter,
		.output = output,
		.gzip_level = 1,
		.source_kind = "repository",
		.source_name = dir,
	};
	int rc = bundle_export(&o, s, n, err, errlen);

	collect_free(r, s, n);
	return rc;
}

static void
test_full_export(void **state)
{
	char err[256] = "", out[1100];
	struct entry e[16];
	size_t n;
	json_t *man, *f, *lt;
	json_error_t jerr;
	struct pcapr *r;
	struct pcapf_rec rec;
	int rc = 0, k = 0;
	FILE *fp;

	(void)state;
	snprintf(out, sizeof(out), "%s/out.tar.gz", dir);
	if (export(0, END, NULL, out, err, sizeof(err)) != 0)
		fail_msg("bundle_export: %s", err);
	n = read_archive(out, e, 16);
	/* The manifest first, then per sensor (in id order) its folder, pcap, history. */
	assert_int_equal(n, 7);
	assert_string_equal(e[0].name, "manifest.json");
	assert_string_equal(e[1].name, "s1/");
	assert_true(e[1].dir);
	assert_string_equal(e[2].name, "s1/s1.pcap");
	assert_string_equal(e[3].name, "s1/name_resolution_history.json");
	assert_string_equal(e[4].name, "s2/");
	assert_string_equal(e[5].name, "s2/s2.pcapng");
	assert_string_equal(e[6].name, "s2/name_resolution_history.json");

	man = json_loads((const char *)e[0].data, 0, &jerr);
	assert_non_null(man);
	assert_string_equal(json_string_value(json_object_get(man, "format")), "pcapline-export");
	assert_int_equal(json_integer_value(json_object_get(man, "format_version")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(man, "window"), "from_ns")), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(man, "window"), "to_ns")), END);
	assert_true(json_is_null(json_object_get(man, "filter")));
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(man, "source"), "kind")), "repository");
	assert_int_equal(json_array_size(json_object_get(man, "files")), 4);
	assert_int_equal(json_array_size(json_object_get(man, "sensors")), 2);

	/* s1: one classic pcap (one link type), the nine records merged in time order. */
	f = manifest_file(man, e, n, "s1/s1.pcap");
	assert_string_equal(json_string_value(json_object_get(f, "type")), "pcap");
	assert_int_equal(json_integer_value(json_object_get(f, "packets")), 9);
	assert_int_equal(json_integer_value(json_object_get(f, "first_ns")), T0 + NS);
	assert_int_equal(json_integer_value(json_object_get(f, "last_ns")), T0 + 9 * NS);
	assert_int_equal(e[2].size, 24 + 9 * (16 + 80));
	r = pcapr_open_mem(e[2].data, e[2].size, &rc);
	assert_non_null(r);
	assert_true(pcapr_is_nano(r));
	while ((rc = pcapr_next(r, &rec)) == 1) {
		k++;
		assert_int_equal(rec.ts_ns, T0 + (uint64_t)k * NS);
		assert_int_equal(rec.data[0], k);
		assert_int_equal(rec.caplen, 80);
		assert_int_equal(rec.origlen, 200);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(k, 9);
	pcapr_close(r);

	/* s2: a pcapng with one interface per (interface, link type); every packet of both
	 * captures, as capinfos counts them in the exported file too. */
	f = manifest_file(man, e, n, "s2/s2.pcapng");
	assert_string_equal(json_string_value(json_object_get(f, "type")), "pcapng");
	assert_int_equal(json_integer_value(json_object_get(f, "packets")), s2_dns + s2_redis);
	lt = json_object_get(f, "linktypes");
	assert_int_equal(json_array_size(lt), 2);
	fp = fopen(at("s2.pcapng"), "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(e[5].data, 1, e[5].size, fp), e[5].size);
	fclose(fp);
	assert_int_equal(cmd_number("capinfos -T -r -c %s | cut -f2", at("s2.pcapng")), s2_dns + s2_redis);
	unlink(at("s2.pcapng"));

	/* Histories: s1's state at from (none: from is 0) and its two changes; s2 has none. */
	manifest_file(man, e, n, "s1/name_resolution_history.json");
	manifest_file(man, e, n, "s2/name_resolution_history.json");
	{
		json_t *h = json_loads((const char *)e[3].data, 0, &jerr), *m;
		char key[32];

		assert_non_null(h);
		assert_int_equal(json_object_size(h), 2);
		snprintf(key, sizeof(key), "%" PRIu64, T0 / NS + 4);
		m = json_object_get(json_object_get(h, key), "198.18.0.1");
		assert_string_equal(json_string_value(json_object_get(m, "FullAddress")), "db2");
		json_decref(h);
		h = json_loads((const char *)e[6].data, 0, &jerr);
		assert_non_null(h);
		assert_int_equal(json_object_size(h), 0);
		json_decref(h);
	}
	json_decref(man);
	entries_free(e, n);
	unlink(out);
}

static void
test_window_edges(void **state)
{
	char err[256] = "", out[1100];
	struct entry e[16];
	size_t n;
	struct pcapr *r;
	struct pcapf_rec rec;
	int rc = 0, k = 0;
	const struct entry *p;

	(void)state;
	/* [T0 + 3 s, T0 + 7 s): the records at 3 s (from) to 6 s; the one at 7 s (to) is out,
	 * and s2 (years earlier) is not in the window at all. */
	snprintf(out, sizeof(out), "%s/win.tar.gz", dir);
	if (export(T0 + 3 * NS, T0 + 7 * NS, "", out, err, sizeof(err)) != 0)
		fail_msg("bundle_export: %s", err);
	n = read_archive(out, e, 16);
	assert_int_equal(n, 4);
	p = find(e, n, "s1/s1.pcap");
	r = pcapr_open_mem(p->data, p->size, &rc);
	assert_non_null(r);
	while ((rc = pcapr_next(r, &rec)) == 1) {
		assert_int_equal(rec.data[0], 3 + k);
		k++;
	}
	pcapr_close(r);
	assert_int_equal(k, 4);
	/* The history holds the state at from (db, from T0) and db2 from 4 s. */
	p = find(e, n, "s1/name_resolution_history.json");
	{
		json_error_t jerr;
		json_t *h = json_loads((const char *)p->data, 0, &jerr);
		char key[32];

		assert_non_null(h);
		assert_int_equal(json_object_size(h), 2);
		snprintf(key, sizeof(key), "%" PRIu64, T0 / NS + 3);
		assert_string_equal(
			json_string_value(json_object_get(
				json_object_get(json_object_get(h, key), "198.18.0.1"), "FullAddress")),
			"db");
		json_decref(h);
	}
	entries_free(e, n);
	unlink(out);
}

static void
test_filter(void **state)
{
	char err[256] = "", out[1100];
	struct entry e[16];
	size_t n;
	json_t *man, *f;
	json_error_t jerr;
	long udp;

	(void)state;
	/* "udp": s1's generated frames are no IP at all (ethertype 0xa5a5); s2 keeps the
	 * UDP packets of both captures, as many as tcpdump finds in them. */
	udp = cmd_number("tcpdump -nr %s/dns-udp-queries.pcap udp 2>/dev/null | wc -l", PCAPS) +
		cmd_number("tcpdump -nr %s/redis-benchmark-sll.pcap udp 2>/dev/null | wc -l", PCAPS);
	assert_true(udp > 0);
	snprintf(out, sizeof(out), "%s/udp.tar.gz", dir);
	if (export(0, END, "udp", out, err, sizeof(err)) != 0)
		fail_msg("bundle_export: %s", err);
	n = read_archive(out, e, 16);
	man = json_loads((const char *)e[0].data, 0, &jerr);
	assert_non_null(man);
	assert_string_equal(json_string_value(json_object_get(man, "filter")), "udp");
	f = manifest_file(man, e, n, "s1/s1.pcap");
	assert_int_equal(json_integer_value(json_object_get(f, "packets")), 0);
	assert_true(json_is_null(json_object_get(f, "first")));
	assert_int_equal(find(e, n, "s1/s1.pcap")->size, 24);
	f = manifest_file(man, e, n, "s2/s2.pcapng");
	assert_int_equal(json_integer_value(json_object_get(f, "packets")), udp);
	json_decref(man);
	entries_free(e, n);
	unlink(out);
}

static void
test_failures_leave_nothing(void **state)
{
	char err[256] = "", out[1100];
	struct stat st;

	(void)state;
	/* A filter that does not compile: refused, no archive. */
	snprintf(out, sizeof(out), "%s/bad.tar.gz", dir);
	assert_int_equal(export(0, END, "port ((", out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "port (("));
	assert_int_equal(stat(out, &st), -1);
	assert_int_equal(errno, ENOENT);
	/* An output folder that does not exist. */
	snprintf(out, sizeof(out), "%s/no/such/dir/x.tar.gz", dir);
	err[0] = '\0';
	assert_int_equal(export(0, END, NULL, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file or directory"));
	/* A segment removed between listing and export. */
	{
		struct bundle_sensor s[4];
		struct repo *r;
		size_t n = collect(&r, 0, END, s);
		struct bundle_opts o = { .from_ns = 0,
			.to_ns = END,
			.output = NULL,
			.gzip_level = 1,
			.source_kind = "repository",
			.source_name = dir };
		char moved[1100];
		int fd = open(at("sink"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

		assert_true(fd >= 0);
		o.out_fd = fd;
		snprintf(moved, sizeof(moved), "%s.away", s[0].segs.v[0].path);
		assert_int_equal(rename(s[0].segs.v[0].path, moved), 0);
		err[0] = '\0';
		assert_int_equal(bundle_export(&o, s, n, err, sizeof(err)), -1);
		assert_non_null(strstr(err, s[0].segs.v[0].path));
		assert_int_equal(rename(moved, s[0].segs.v[0].path), 0);
		close(fd);
		unlink(at("sink"));
		collect_free(r, s, n);
	}
}

static void
test_to_descriptor(void **state)
{
	char err[256] = "";
	struct entry e[16];
	size_t n;
	int fd = open(at("fd.tar.gz"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct bundle_sensor s[4];
	struct repo *r;
	size_t ns = collect(&r, T0, END, s);
	struct bundle_opts o = { .from_ns = T0,
		.to_ns = END,
		.output = NULL,
		.out_fd = fd,
		.gzip_level = 9,
		.source_kind = "snapshot",
		.source_name = "snap1" };
	json_t *man;
	json_error_t jerr;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ns, 1);
	if (bundle_export(&o, s, ns, err, sizeof(err)) != 0)
		fail_msg("bundle_export: %s", err);
	/* The descriptor is borrowed: still open. */
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	collect_free(r, s, ns);
	n = read_archive(at("fd.tar.gz"), e, 16);
	assert_int_equal(n, 4);
	man = json_loads((const char *)e[0].data, 0, &jerr);
	assert_non_null(man);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(man, "source"), "kind")), "snapshot");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(man, "source"), "name")), "snap1");
	assert_int_equal(
		json_integer_value(json_object_get(manifest_file(man, e, n, "s1/s1.pcap"), "packets")), 9);
	json_decref(man);
	entries_free(e, n);
	unlink(at("fd.tar.gz"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_export),
		cmocka_unit_test(test_window_edges),
		cmocka_unit_test(test_filter),
		cmocka_unit_test(test_failures_leave_nothing),
		cmocka_unit_test(test_to_descriptor),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
