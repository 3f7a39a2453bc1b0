/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/fsutil.c, the one home of mkdir -p, write-all loops, fsync by
 * name and names that are safe as a path component: real files in a fresh temporary
 * folder, short writes forced through a pipe whose reader drains it in pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shared/fsutil.h"

struct tmpdir {
	char path[PATH_MAX];
};

static int
setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));
	const char *base = getenv("TMPDIR");

	if (!t)
		return -1;
	snprintf(t->path, sizeof(t->path), "%s/test_fsutil.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(t->path))
		return -1;
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	struct tmpdir *t = *state;

	assert_int_equal(fsu_rmtree(t->path), 0);
	assert_int_equal(access(t->path, F_OK), -1);
	free(t);
	return 0;
}

static void
test_mkdirs(void **state)
{
	struct tmpdir *t = *state;
	char p[PATH_MAX], f[PATH_MAX];
	struct stat st;

	assert_int_equal(fsu_path(p, sizeof(p), "%s/a/b/c", t->path), 0);
	assert_int_equal(fsu_mkdirs(p, 0750), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Again: existing folders are not an error. A trailing '/' is fine too. */
	assert_int_equal(fsu_mkdirs(p, 0750), 0);
	assert_int_equal(fsu_path(f, sizeof(f), "%s/", p), 0);
	assert_int_equal(fsu_mkdirs(f, 0750), 0);
	/* A file in the way is reported, not replaced. */
	assert_int_equal(fsu_path(f, sizeof(f), "%s/file", p), 0);
	int fd = open(f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(fsu_mkdirs(f, 0750), -ENOTDIR);
	assert_int_equal(fsu_path(p, sizeof(p), "%s/sub", f), 0);
	assert_int_equal(fsu_mkdirs(p, 0750), -ENOTDIR);
	assert_int_equal(fsu_mkdirs("", 0750), -ENAMETOOLONG);
	assert_int_equal(fsu_fsync_path(t->path), 0);
	assert_int_equal(fsu_fsync_path(f), 0);
}

/* fsu_path never leaves a truncated path behind. */
static void
test_path(void **state)
{
	char small[8];

	assert_int_equal(fsu_path(small, sizeof(small), "%s", "1234567"), 0);
	assert_string_equal(small, "1234567");
	assert_int_equal(fsu_path(small, sizeof(small), "%s", "12345678"), -ENAMETOOLONG);
	assert_string_equal(small, "");
}

struct drain {
	int fd;
	size_t total;
	uint8_t *buf;
	size_t cap;
};

/* Reads the pipe in small pieces, so that the writer sees short writes. */
static void *
drain_run(void *arg)
{
	struct drain *d = arg;

	for (;;) {
		ssize_t n = read(d->fd, d->buf + d->total, d->cap - d->total < 777 ? d->cap - d->total : 777);
		if (n <= 0)
			break;
		d->total += (size_t)n;
		usleep(100);
	}
	return NULL;
}

static void
check_through_pipe(int vector)
{
	size_t len = 1u << 20;
	uint8_t *src = malloc(len);
	struct drain d = { .cap = len + 1 };
	pthread_t th;
	int pfd[2];

	assert_non_null(src);
	d.buf = malloc(d.cap);
	assert_non_null(d.buf);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	assert_int_equal(pipe(pfd), 0);
	/* The smallest pipe buffer: every write is cut short many times. */
	(void)fcntl(pfd[1], F_SETPIPE_SZ, 4096);
	d.fd = pfd[0];
	assert_int_equal(pthread_create(&th, NULL, drain_run, &d), 0);
	if (!vector) {
		assert_int_equal(fsu_write_all(pfd[1], src, len), 0);
	} else {
		struct iovec iov[3] = { { src, 1 }, { src + 1, len / 2 - 1 },
			{ src + len / 2, len - len / 2 } };
		size_t done = 0;

		assert_int_equal(fsu_writev_all(pfd[1], iov, 3, &done), 0);
		assert_int_equal(done, len);
	}
	close(pfd[1]);
	pthread_join(th, NULL);
	close(pfd[0]);
	assert_int_equal(d.total, len);
	assert_memory_equal(d.buf, src, len);
	free(d.buf);
	free(src);
}

static void
test_write_all_short_writes(void **state)
{
	check_through_pipe(0);
	check_through_pipe(1);
}

/* Errors come back as -errno, and *done says how much got through. */
static void
test_write_errors(void **state)
{
	int pfd[2];
	uint8_t b[16] = { 0 };
	struct iovec iov = { b, sizeof(b) };
	size_t done = 99;

	assert_int_equal(fsu_write_all(-1, b, sizeof(b)), -EBADF);
	assert_int_equal(fsu_writev_all(-1, &iov, 1, &done), -EBADF);
	assert_int_equal(done, 0);
	assert_int_equal(pipe(pfd), 0);
	close(pfd[0]);
	/* SIGPIPE is ignored by the daemons; here too, so the write returns EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(fsu_write_all(pfd[1], b, sizeof(b)), -EPIPE);
	close(pfd[1]);
	/* Nothing to write is no write at all. */
	assert_int_equal(fsu_write_all(-1, b, 0), 0);
}

static void
test_names(void **state)
{
	char out[FSU_NAME_MAX + 1], big[FSU_NAME_MAX + 2];

	assert_true(fsu_name_ok("sensor-1"));
	assert_false(fsu_name_ok(".hidden"));
	assert_false(fsu_name_ok("a/b"));
	assert_false(fsu_name_ok(""));
	assert_false(fsu_name_ok(NULL));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(fsu_name_ok(big));
	big[FSU_NAME_MAX] = '\0';
	assert_true(fsu_name_ok(big));
	fsu_sanitize(out, "node_fd00::1");
	assert_string_equal(out, "node_fd00__1");
	fsu_sanitize(out, ".x/y");
	assert_string_equal(out, "_x_y");
	fsu_sanitize(out, "");
	assert_string_equal(out, "_");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_write_all_short_writes),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
