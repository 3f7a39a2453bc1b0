/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/store/store.c: what store_batch() answers for each kind of
 * batch and failure (the caller ACKs, closes or retries on that answer alone), the
 * segment names of two interfaces with one name, and the name parser shared with the
 * CLI (index.c). Real files in a temporary repository; /dev/full for a full disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#include <cmocka.h>

#include "receiver/repo/index.h"
#include "receiver/repo/segname.h"
#include "shared/pcapfile.h"
#include "receiver/store/store.h"
#include "proto/wire.h"

#define NS         UINT64_C(1000000000)
#define T0         (UINT64_C(1700000000) * NS)
#define AFTER_2106 (UINT64_C(7258118400) * NS) /* 2200-01-01: seconds above UINT32_MAX */
#define EPOCH      UINT64_C(0x1122334455667788)

struct fixture {
	char dir[64];
	struct store *st;
	struct store_sensor *ss;
	uint8_t raw[4096];
	uint32_t len, n;
};

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static struct store *
open_store(struct fixture *f, const char *dir, const char *single)
{
	struct store_opts o = {
		.dir = dir,
		.single_file = single,
		.segment_bytes = 64u << 20,
		.segment_ms = 300000,
		.fsync = STORE_FSYNC_NEVER,
	};
	char err[512] = "";
	struct store *s = store_new(&o, err, sizeof(err));
	if (!s)
		fail_msg("store_new: %s", err);
	return s;
}

/* A sensor "s1" with two interfaces, both called eth0 (Ethernet, snaplen 65535). */
static void
begin(struct fixture *f, uint64_t next_seq)
{
	struct proto_iface ifs[2] = { { .linktype = 1, .snaplen = 65535 },
		{ .linktype = 1, .snaplen = 65535 } };
	char err[512] = "";
	snprintf(ifs[0].name, sizeof(ifs[0].name), "eth0");
	snprintf(ifs[1].name, sizeof(ifs[1].name), "eth0");
	f->ss = store_sensor_get(f->st, "s1", err, sizeof(err));
	assert_non_null(f->ss);
	assert_int_equal(store_sensor_begin(f->ss, EPOCH, ifs, 2), next_seq);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/pcapline-test-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->st = open_store(f, f->dir, "");
	begin(f, 1);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	store_free(f->st);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
add_rec(struct fixture *f, uint64_t ts, uint16_t iface, uint8_t fill)
{
	uint8_t data[60];
	memset(data, fill, sizeof(data));
	assert_true(f->len + PROTO_REC_HDR_LEN + sizeof(data) <= sizeof(f->raw));
	proto_rec_hdr_encode(f->raw + f->len, ts, iface, sizeof(data), sizeof(data));
	memcpy(f->raw + f->len + PROTO_REC_HDR_LEN, data, sizeof(data));
	f->len += PROTO_REC_HDR_LEN + sizeof(data);
	f->n++;
}

static enum store_result
store(struct fixture *f, uint64_t seq, char *err, size_t errlen)
{
	enum store_result r = store_batch(f->ss, seq, f->raw, f->len, f->n, err, errlen);
	f->len = f->n = 0;
	return r;
}

/* Records of <dir>/sensors/s1/segments/<name>, their first bytes in fills[]. */
static int
read_segment(const struct fixture *f, const char *name, uint64_t *ts, uint8_t *fills, int max)
{
	char path[512];
	int rc = 0, n = 0;
	struct pcapf_rec rec;
	snprintf(path, sizeof(path), "%s/sensors/s1/segments/%s", f->dir, name);
	struct pcapr *r = pcapr_open(path, &rc);
	if (!r)
		fail_msg("%s: %s", path, pcapf_strerror(rc));
	while ((rc = pcapr_next(r, &rec)) == 1 && n < max) {
		ts[n] = rec.ts_ns;
		fills[n++] = rec.data[0];
	}
	pcapr_close(r);
	assert_int_equal(rc, 0);
	return n;
}

static void
test_errno_classification(void **state)
{
	/* Transient: the same batch may be stored later. -EIO is numerically
	 * PROTO_ETOOBIG, -EPERM PROTO_EAGAIN and -ENOENT PROTO_EMAGIC: none of them is a
	 * protocol error. */
	static const int retry[] = { ENOSPC, EDQUOT, EIO, ENOMEM, EAGAIN, EINTR, EMFILE, ENFILE, EROFS,
		EACCES, EPERM, ENOENT };
	static const int fatal[] = { EOVERFLOW, EINVAL, EFBIG, ENAMETOOLONG, EEXIST, EPIPE, EBADF, ENOTDIR };
	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		assert_int_equal(store_errno_result(-retry[i]), STORE_RETRY);
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		assert_int_equal(store_errno_result(-fatal[i]), STORE_FAILED);
	assert_string_equal(store_unstorable_name(STORE_UNSTORABLE_TS, true), "timestamp_beyond_pcap_range");
	assert_string_equal(store_unstorable_name(STORE_UNSTORABLE_TS, false), "timestamp beyond pcap range");
}

static void
test_record_after_2106_counted_rest_stored(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	add_rec(f, T0, 0, 'a');
	add_rec(f, AFTER_2106, 0, 'b');
	add_rec(f, T0 + 1, 0, 'c');
	add_rec(f, AFTER_2106 + 5, 1, 'd'); /* the only record of interface 1: no file */
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_STORED);
	const struct store_counters *c = store_sensor_counters(f->ss);
	assert_int_equal(c->batches, 1);
	assert_int_equal(c->packets, 2);
	assert_int_equal(c->unstorable[STORE_UNSTORABLE_TS], 2);
	assert_int_equal(c->storage_errors, 0);

	/* The resend of an ACKed batch (the same bytes) is a duplicate; other bytes under
	 * its number are a reused number, refused; a malformed batch changes nothing. */
	add_rec(f, T0, 0, 'a');
	add_rec(f, AFTER_2106, 0, 'b');
	add_rec(f, T0 + 1, 0, 'c');
	add_rec(f, AFTER_2106 + 5, 1, 'd');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_DUPLICATE);
	add_rec(f, T0, 0, 'a');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_SEQ_REUSED);
	assert_int_equal(c->rejected_batches, 1);
	add_rec(f, T0 + 2, 0, 'x');
	f->n = 2; /* claims two records */
	assert_int_equal(store(f, 2, err, sizeof(err)), STORE_REJECTED);
	assert_non_null(strstr(err, "malformed record"));
	assert_int_equal(c->packets, 2);
	assert_int_equal(c->unstorable[STORE_UNSTORABLE_TS], 2);

	/* The count is committed with the batch: it survives a restart. */
	store_free(f->st);
	f->st = open_store(f, f->dir, "");
	begin(f, 2);
	c = store_sensor_counters(f->ss);
	assert_int_equal(c->unstorable[STORE_UNSTORABLE_TS], 2);
	assert_int_equal(c->packets, 2);

	char name[256];
	uint64_t ts[4];
	uint8_t fills[4];
	segname_format(name, sizeof(name), T0, EPOCH, 1, 0, "eth0");
	assert_int_equal(read_segment(f, name, ts, fills, 4), 2);
	assert_true(ts[0] == T0 && fills[0] == 'a' && ts[1] == T0 + 1 && fills[1] == 'c');
	segname_format(name, sizeof(name), AFTER_2106 + 5, EPOCH, 1, 1, "eth0");
	char path[512];
	snprintf(path, sizeof(path), "%s/sensors/s1/segments/%s", f->dir, name);
	assert_int_equal(access(path, F_OK), -1);
}

/* What the metrics endpoint copies (store_pub_read()) follows every batch, STATS frame,
 * begin and end at once, and the index totals after a segment closes and a tick. */
static void
test_published_copy(void **state)
{
	struct fixture *f = *state;
	struct store_pub *p;
	struct store_pub_all all;
	size_t n;
	char err[512] = "";
	struct proto_stats st = { .n = 2,
		.s = { { PROTO_ST_CAPTURED, 7 }, { 40, 99 } } }; /* 40: an id of a later sensor */

	assert_int_equal(store_pub_read(f->st, &p, &n, &all), 0);
	assert_int_equal(n, 1);
	assert_string_equal(p[0].id, "s1");
	assert_true(p[0].connected);
	assert_int_equal(p[0].c.packets, 0);
	assert_int_equal(p[0].seen, 0);
	free(p);

	add_rec(f, T0, 0, 'a');
	add_rec(f, T0 + 1, 1, 'b');
	add_rec(f, AFTER_2106, 0, 'c');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_STORED);
	store_sensor_stats(f->ss, &st);
	store_ack_latency(f->ss, 1000);
	assert_int_equal(store_pub_read(f->st, &p, &n, &all), 0);
	assert_int_equal(p[0].c.packets, 2);
	assert_int_equal(p[0].c.batches, 1);
	assert_int_equal(p[0].c.unstorable[STORE_UNSTORABLE_TS], 1);
	assert_int_equal(p[0].s_stat[PROTO_ST_CAPTURED], 7);
	assert_int_equal(p[0].s_stat[40], 99);
	assert_int_equal(p[0].seen, 1ull << PROTO_ST_CAPTURED | 1ull << 40);
	assert_int_equal(p[0].segments, 0); /* both segments still open */
	assert_int_equal(all.ack_lat.count, 1);
	assert_int_equal(all.ack_lat.sum, 1000);
	free(p);

	/* The end closes both segments into the index: two rows, their bytes. */
	store_sensor_end(f->ss);
	store_tick(f->st);
	assert_int_equal(store_pub_read(f->st, &p, &n, &all), 0);
	assert_false(p[0].connected);
	assert_int_equal(p[0].segments, 2);
	assert_int_equal(p[0].segment_bytes, 2 * (24 + 16 + 60));
	assert_int_equal(all.repo_segments, 2);
	assert_int_equal(all.repo_bytes, 2 * (24 + 16 + 60));
	free(p);
}

static void
test_same_name_same_timestamp(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", name[256], path[512];
	uint64_t ts[4];
	uint8_t fills[4];

	add_rec(f, T0, 0, 'a');
	add_rec(f, T0, 1, 'b');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_STORED);
	store_sensor_end(f->ss); /* closes both segments */

	/* A file a failure left under exactly the next open name: a suffix is taken. */
	segname_format(name, sizeof(name), T0 + 7, EPOCH, 2, 0, "eth0");
	snprintf(path, sizeof(path), "%s/sensors/s1/segments/.open-%s", f->dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
	assert_true(fd >= 0);
	close(fd);
	add_rec(f, T0 + 7, 0, 'c');
	assert_int_equal(store(f, 2, err, sizeof(err)), STORE_STORED);
	store_sensor_end(f->ss);
	unlink(path);

	segname_format(name, sizeof(name), T0, EPOCH, 1, 0, "eth0");
	assert_int_equal(read_segment(f, name, ts, fills, 4), 1);
	assert_int_equal(fills[0], 'a');
	segname_format(name, sizeof(name), T0, EPOCH, 1, 1, "eth0");
	assert_int_equal(read_segment(f, name, ts, fills, 4), 1);
	assert_int_equal(fills[0], 'b');
	snprintf(name, sizeof(name), "%020" PRIu64 "-%016" PRIx64 "-2.0-eth0.1.pcap", T0 + 7, EPOCH);
	assert_int_equal(read_segment(f, name, ts, fills, 4), 1);
	assert_int_equal(fills[0], 'c');
	assert_int_equal(store_sensor_counters(f->ss)->packets, 3);
}

static void
test_full_disk_is_retried(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	struct store *keep = f->st;
	/* No repository, a single output file on a device that is always full. */
	f->st = open_store(f, "", "/dev/full");
	begin(f, 1);
	add_rec(f, T0, 0, 'a');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_RETRY);
	assert_non_null(strstr(err, strerror(ENOSPC)));
	const struct store_counters *c = store_sensor_counters(f->ss);
	assert_int_equal(c->storage_errors, 1);
	assert_int_equal(c->batches, 0);
	/* Nothing was kept: the same batch is still expected. */
	add_rec(f, T0, 0, 'a');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_RETRY);
	store_free(f->st);
	f->st = keep;
}

/* Takes (make) or frees every name store_rename() may give <name>'s segment: the name
 * itself and its 999 numbered variants. */
static void
block_names(const struct fixture *f, const char *name, bool make)
{
	char path[600];
	size_t n = strlen(name);
	for (int i = 0; i < 1000; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s/sensors/s1/segments/%s", f->dir, name);
		else
			snprintf(path, sizeof(path), "%s/sensors/s1/segments/%.*s.%d.pcap", f->dir,
				(int)(n - 5), name, i);
		if (make) {
			int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
			assert_true(fd >= 0);
			close(fd);
		} else {
			assert_int_equal(unlink(path), 0);
		}
	}
}

/* A segment whose close fails holds committed (acknowledged) batches: it stays
 * tracked, nothing new is stored until it is in place, and the tick retries it. Before,
 * it was forgotten and the next start removed it as uncommitted. */
static void
test_failed_close_keeps_committed_data(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", name[256], path[600];
	uint64_t ts[4];
	uint8_t fills[4];

	segname_format(name, sizeof(name), T0, EPOCH, 1, 0, "eth0");
	block_names(f, name, true);
	add_rec(f, T0, 0, 'a');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_STORED);
	store_sensor_end(f->ss); /* the rename fails: every name is taken */
	snprintf(path, sizeof(path), "%s/sensors/s1/segments/.open-%s", f->dir, name);
	assert_int_equal(access(path, F_OK), 0);

	/* The next session stores nothing while it is not in place; a name clash does not
	 * pass by itself, so that is a failure, not a retry. */
	begin(f, 2);
	add_rec(f, T0 + 5, 0, 'b');
	assert_int_equal(store(f, 2, err, sizeof(err)), STORE_FAILED);
	assert_non_null(strstr(err, "into place"));
	assert_int_equal(store_sensor_counters(f->ss)->batches, 1);

	/* Names free again: the tick puts it into place, and the batch is stored. */
	block_names(f, name, false);
	store_tick(f->st);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(read_segment(f, name, ts, fills, 4), 1);
	assert_true(ts[0] == T0 && fills[0] == 'a');
	add_rec(f, T0 + 5, 0, 'b');
	assert_int_equal(store(f, 2, err, sizeof(err)), STORE_STORED);
	store_sensor_end(f->ss);
	segname_format(name, sizeof(name), T0 + 5, EPOCH, 2, 0, "eth0");
	assert_int_equal(read_segment(f, name, ts, fills, 4), 1);
	assert_int_equal(fills[0], 'b');
	assert_int_equal(store_sensor_counters(f->ss)->packets, 2);
}

static void
copy_file(const char *from, const char *to)
{
	uint8_t buf[4096];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0640);
	assert_true(in >= 0 && out >= 0);
	ssize_t n = read(in, buf, sizeof(buf));
	assert_true(n > 0 && n < (ssize_t)sizeof(buf));
	assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

/* The recovery removes an open segment only when it holds no committed batch: one that
 * the state file does not list but whose first batch was committed is kept (its whole
 * records), one opened by an uncommitted batch or an unknown epoch is removed. */
static void
test_recovery_keeps_unlisted_committed_segment(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", name1[256], name2[256], p1[600], f1[600], p3[600], px[600];
	uint64_t ts[4];
	uint8_t fills[4];

	add_rec(f, T0, 0, 'a');
	assert_int_equal(store(f, 1, err, sizeof(err)), STORE_STORED);
	store_sensor_end(f->ss);
	add_rec(f, T0 + 5, 0, 'b');
	assert_int_equal(store(f, 2, err, sizeof(err)), STORE_STORED); /* the state now lists only this one */
	store_free(f->st);

	/* Segment 1 as a version that forgot a segment it failed to close left it, with the
	 * start of a record its failed flush wrote. */
	segname_format(name1, sizeof(name1), T0, EPOCH, 1, 0, "eth0");
	snprintf(f1, sizeof(f1), "%s/sensors/s1/segments/%s", f->dir, name1);
	snprintf(p1, sizeof(p1), "%s/sensors/s1/segments/.open-%s", f->dir, name1);
	assert_int_equal(rename(f1, p1), 0);
	int fd = open(p1, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	/* What a crash leaves of batch 3 (never committed) and of a new epoch's first batch. */
	char n3[256], nx[256];
	segname_format(n3, sizeof(n3), T0 + 9, EPOCH, 3, 0, "eth0");
	segname_format(nx, sizeof(nx), T0 + 9, EPOCH + 1, 1, 0, "eth0");
	snprintf(p3, sizeof(p3), "%s/sensors/s1/segments/.open-%s", f->dir, n3);
	snprintf(px, sizeof(px), "%s/sensors/s1/segments/.open-%s", f->dir, nx);
	copy_file(p1, p3);
	copy_file(p1, px);

	f->st = open_store(f, f->dir, "");
	begin(f, 3);
	assert_int_equal(access(p1, F_OK), -1);
	assert_int_equal(access(p3, F_OK), -1);
	assert_int_equal(access(px, F_OK), -1);
	assert_int_equal(read_segment(f, name1, ts, fills, 4), 1); /* cut to its whole record */
	assert_true(ts[0] == T0 && fills[0] == 'a');
	segname_format(name2, sizeof(name2), T0 + 5, EPOCH, 2, 0, "eth0");
	assert_int_equal(read_segment(f, name2, ts, fills, 4), 1);
	assert_int_equal(fills[0], 'b');
}

/* A batch of `n` 60-byte records on interface 0 filled with `fill`, at T0 + seq * 10. */
static uint32_t
make_batch(uint8_t *raw, size_t cap, uint64_t seq, uint32_t n, uint8_t fill)
{
	uint32_t len = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t data[60];
		memset(data, fill, sizeof(data));
		assert_true(len + PROTO_REC_HDR_LEN + sizeof(data) <= cap);
		proto_rec_hdr_encode(raw + len, T0 + seq * 10 + i, 0, sizeof(data), sizeof(data));
		memcpy(raw + len + PROTO_REC_HDR_LEN, data, sizeof(data));
		len += PROTO_REC_HDR_LEN + sizeof(data);
	}
	return len;
}

/* A group commit answers batch by batch what store_batch() would have, stops at the
 * first batch it does not store, and commits everything before it. */
static void
test_group_commit(void **state)
{
	struct fixture *f = *state;
	static uint8_t raw[5][1024];
	char err[512] = "";
	struct store_batch_in b[5];
	for (int i = 0; i < 3; i++) {
		b[i] = (struct store_batch_in){ .seq = (uint64_t)i + 1, .raw = raw[i], .n_records = 2 };
		b[i].raw_len = make_batch(raw[i], sizeof(raw[i]), b[i].seq, 2, (uint8_t)('a' + i));
	}
	assert_int_equal(store_batches(f->ss, b, 3, err, sizeof(err)), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(b[i].sr, STORE_STORED);
	const struct store_counters *c = store_sensor_counters(f->ss);
	assert_int_equal(c->batches, 3);
	assert_int_equal(c->packets, 6);

	/* A resend of batch 2 (duplicate), batch 5 (4 never came), a malformed batch 6, and
	 * batch 7 that must not be touched. */
	b[0] = (struct store_batch_in){ .seq = 2, .raw = raw[1], .raw_len = b[1].raw_len, .n_records = 2 };
	b[1] = (struct store_batch_in){ .seq = 5, .raw = raw[3], .n_records = 1 };
	b[1].raw_len = make_batch(raw[3], sizeof(raw[3]), 5, 1, 'e');
	b[2] = (struct store_batch_in){ .seq = 6, .raw = raw[4], .n_records = 3 }; /* holds 2 */
	b[2].raw_len = make_batch(raw[4], sizeof(raw[4]), 6, 2, 'f');
	b[3] = (struct store_batch_in){ .seq = 7, .raw = raw[0], .raw_len = b[0].raw_len, .n_records = 2 };
	assert_int_equal(store_batches(f->ss, b, 4, err, sizeof(err)), 2);
	assert_int_equal(b[0].sr, STORE_DUPLICATE);
	assert_int_equal(b[1].sr, STORE_STORED);
	assert_int_equal(b[2].sr, STORE_REJECTED);
	assert_non_null(strstr(err, "malformed record"));
	assert_int_equal(b[3].sr, STORE_NOT_TRIED);
	assert_int_equal(c->batches, 4);
	assert_int_equal(c->packets, 7);
	assert_int_equal(c->duplicates, 1);
	assert_int_equal(c->missing_batches, 1);
	assert_int_equal(c->rejected_batches, 1);

	/* Committed: a restart resumes after batch 5, and the segment holds a a b b c c e. */
	store_free(f->st);
	f->st = open_store(f, f->dir, "");
	begin(f, 6);
	char name[256];
	uint64_t ts[8];
	uint8_t fills[8];
	segname_format(name, sizeof(name), T0 + 10, EPOCH, 1, 0, "eth0");
	assert_int_equal(read_segment(f, name, ts, fills, 8), 7);
	assert_memory_equal(fills, "aabbcce", 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errno_classification),
		cmocka_unit_test_setup_teardown(test_record_after_2106_counted_rest_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_name_same_timestamp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_disk_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_published_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_close_keeps_committed_data, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_recovery_keeps_unlisted_committed_segment, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
