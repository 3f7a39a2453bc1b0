/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for sensor/spool.c: the sequence state that keeps a restarted sensor from
 * giving a used batch number to a new batch (PROTOCOL.md 6.2, 6.3). Each case is a
 * restart: the spool is closed without cleanup (as after kill -9) and opened again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sensor/batcher.h"
#include "sensor/spool.h"
#include "proto/wire.h"

#define EPOCH1 1000
#define EPOCH2 2000

static char dir[256];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/pcapline-test-spool-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[600];
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

/* A sealed batch with seq and one 4-byte record, as the batcher makes it. */
static struct batch *
mkbatch(uint64_t seq)
{
	size_t raw = PROTO_REC_HDR_LEN + 4, len = PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN + raw;
	struct batch *b = calloc(1, sizeof(*b) + len);
	assert_non_null(b);
	b->seq = seq;
	b->n_records = 1;
	b->raw_len = (uint32_t)raw;
	b->len = len;
	proto_hdr_encode(b->frame, PROTO_BATCH, 0, (uint32_t)(PROTO_BATCH_HDR_LEN + raw));
	proto_batch_hdr_encode(seq, 1, (uint32_t)raw, b->frame + PROTO_HDR_LEN, PROTO_BATCH_HDR_LEN);
	proto_rec_hdr_encode(b->frame + PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN, 1, 0, 4, 4);
	return b;
}

static struct spool *
open_spool(uint64_t new_epoch, uint64_t *epoch, uint64_t *next)
{
	char err[256] = "";
	struct spool *sp = spool_open(dir, 1 << 20, new_epoch, epoch, next, err, sizeof(err));
	if (!sp)
		fail_msg("spool_open: %s", err);
	return sp;
}

/* Uses seqs first..last: each numbered, the ones in `spooled` also written. */
static void
use(struct spool *sp, uint64_t first, uint64_t last, uint64_t spooled_from)
{
	for (uint64_t s = first; s <= last; s++) {
		assert_int_equal(spool_seq_use(sp, s), 0);
		if (s >= spooled_from) {
			struct batch *b = mkbatch(s);
			assert_int_equal(spool_put(sp, b), 0);
			free(b);
		}
	}
}

static void
set_field(const char *key, const char *value)
{
	char path[300], buf[256];
	snprintf(path, sizeof(path), "%s/sequence", dir);
	FILE *f = fopen(path, "r+");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	char *p = strstr(buf, key);
	assert_non_null(p);
	memcpy(p + strlen(key) + 1, value, strlen(value));
	rewind(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	fclose(f);
}

static uint64_t
frame_seq(uint64_t seq)
{
	char path[300];
	uint8_t b[8];
	snprintf(path, sizeof(path), "%s/%020llu.batch", dir, (unsigned long long)seq);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fseek(f, 16 + PROTO_HDR_LEN, SEEK_SET), 0);
	assert_int_equal(fread(b, 1, 8, f), 8);
	fclose(f);
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

/* Empty spool at start: a new epoch from 1 (nothing to resume). */
static void
test_empty_spool_takes_new_epoch(void **state)
{
	uint64_t epoch, next;
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	assert_int_equal(epoch, EPOCH1);
	assert_int_equal(next, 1);
	use(sp, 1, 5, 99);
	spool_close(sp);
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH2);
	assert_int_equal(next, 1);
	spool_close(sp);
}

/* The case: 1..3 spooled, 4..9 sent from memory, then kill -9. The restart
 * keeps the epoch and goes on at 10, not at 4. */
static void
test_restart_resumes_after_last_used(void **state)
{
	uint64_t epoch, next;
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	use(sp, 1, 3, 1);
	use(sp, 4, 9, 99);
	spool_close(sp);
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH1);
	assert_int_equal(next, 10);
	assert_int_equal(spool_count(sp), 3);
	spool_close(sp);
}

/* After a reboot the unsynced last number is not trusted: the restart goes on at the
 * end of the synced reservation, above anything used. */
static void
test_other_boot_resumes_after_reservation(void **state)
{
	uint64_t epoch, next;
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	use(sp, 1, 2, 1);
	use(sp, 3, 7, 99);
	spool_close(sp);
	set_field("boot", "00000000-0000-0000-0000-000000000000");
	set_field("last", "00000000000000000002"); /* as if the last rewrites never hit the disk */
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH1);
	assert_true(next > 7);
	/* The new reservation is synced before the restart hands out a number. */
	use(sp, next, next, 99);
	spool_close(sp);
}

/* Reaching the end of a reservation reserves the next block first: a restart in
 * another boot is still above every number used. */
static void
test_reservation_grows_before_use(void **state)
{
	uint64_t epoch, next, first;
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &first);
	use(sp, 1, 1, 1);
	spool_close(sp);
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(next, 2);
	/* Use far past one block (4096). */
	use(sp, 2, 9000, 9000);
	spool_close(sp);
	set_field("boot", "00000000-0000-0000-0000-000000000000");
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH1);
	assert_true(next > 9000);
	spool_close(sp);
}

/* Without the sequence state, spooled batches go out under a new epoch, renumbered
 * from 1 in their order, names and batch headers alike. */
static void
test_lost_state_renumbers_under_new_epoch(void **state)
{
	uint64_t epoch, next;
	char path[300];
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	use(sp, 1, 4, 99);
	use(sp, 5, 7, 5);
	spool_close(sp);
	snprintf(path, sizeof(path), "%s/sequence", dir);
	assert_int_equal(unlink(path), 0);
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH2);
	assert_int_equal(next, 4);
	assert_int_equal(spool_count(sp), 3);
	for (uint64_t s = 1; s <= 3; s++) {
		assert_true(spool_contains(sp, s));
		assert_int_equal(frame_seq(s), s);
	}
	struct batch *b = spool_take(sp);
	assert_non_null(b);
	assert_int_equal(b->seq, 1);
	free(b);
	spool_close(sp);
}

/* A renumbering cut short between the rename and the header rewrite: the file name
 * wins, the header is repaired at open. */
static void
test_header_repaired_from_name(void **state)
{
	uint64_t epoch, next;
	char from[300], to[300];
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	use(sp, 1, 6, 6);
	spool_close(sp);
	snprintf(from, sizeof(from), "%s/%020d.batch", dir, 6);
	snprintf(to, sizeof(to), "%s/%020d.batch", dir, 2);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(frame_seq(2), 6);
	sp = open_spool(EPOCH2, &epoch, &next);
	assert_int_equal(epoch, EPOCH1);
	assert_int_equal(next, 7);
	assert_int_equal(frame_seq(2), 2);
	spool_close(sp);
}

/* Moving to a new epoch (6.3): kept batches renumbered from 1, the state says so. */
static void
test_new_epoch_renumbers_waiting(void **state)
{
	uint64_t epoch, next;
	(void)state;
	struct spool *sp = open_spool(EPOCH1, &epoch, &next);
	use(sp, 1, 10, 8);
	assert_int_equal(spool_set_epoch(sp, EPOCH2, 10), 0);
	assert_int_equal(spool_renumber_waiting(sp, 1), 4);
	assert_int_equal(spool_seq_use(sp, 3), 0);
	spool_close(sp);
	sp = open_spool(3000, &epoch, &next);
	assert_int_equal(epoch, EPOCH2);
	assert_int_equal(next, 4);
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_equal(frame_seq(s), s);
	spool_close(sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_spool_takes_new_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_resumes_after_last_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_boot_resumes_after_reservation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reservation_grows_before_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_state_renumbers_under_new_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_repaired_from_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_epoch_renumbers_waiting, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
