/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for shared/fsutil.c, the one home of mkdir -p, write-all loops, fsync by
 * name and names that are safe as a path component: real files in a fresh temporary
 * folder, short writes forced through a pipe whose reader drains it in pieces; also
 * relative-path checks, trees (made read-only, removed without following links),
 * copies, SHA-256 against known digests, and output files that appear under their
 * final name only when committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
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
#include "tests/unit/testutil.h"

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

/* Names, relative paths, trees, copies, digests and output files. */

/* The test's fresh folder (setup), for the helpers below. */
static char dir[PATH_MAX];

static void
use_dir(void **state)
{
	snprintf(dir, sizeof(dir), "%s", ((struct tmpdir *)*state)->path);
	umask(022);
}

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

static size_t
get(const char *path, void *buf, size_t max)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, max);
	close(fd);
	assert_true(n >= 0);
	return (size_t)n;
}

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Entries of a directory other than "." and "..". */
static int
count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
test_name_ok(void **state)
{
	char longest[FSU_NAME_MAX + 2];

	use_dir(state);
	assert_true(fsu_name_ok("s1"));
	assert_true(fsu_name_ok("sensor-01.dc_2"));
	assert_true(fsu_name_ok("a.."));
	assert_false(fsu_name_ok(NULL));
	assert_false(fsu_name_ok(""));
	assert_false(fsu_name_ok("."));
	assert_false(fsu_name_ok(".."));
	assert_false(fsu_name_ok(".hidden"));
	assert_false(fsu_name_ok("a/b"));
	assert_false(fsu_name_ok("a b"));
	assert_false(fsu_name_ok("caf\xc3\xa9"));
	assert_false(fsu_name_ok("tab\t"));
	/* Exactly FSU_NAME_MAX characters pass, one more does not. */
	memset(longest, 'x', FSU_NAME_MAX);
	longest[FSU_NAME_MAX] = '\0';
	assert_true(fsu_name_ok(longest));
	longest[FSU_NAME_MAX] = 'x';
	longest[FSU_NAME_MAX + 1] = '\0';
	assert_false(fsu_name_ok(longest));
}

static void
test_relpath_ok(void **state)
{
	use_dir(state);
	assert_true(fsu_relpath_ok("a"));
	assert_true(fsu_relpath_ok("sensors/s1/segments/x.pcap"));
	assert_true(fsu_relpath_ok("a/.hidden/..."));
	assert_false(fsu_relpath_ok(NULL));
	assert_false(fsu_relpath_ok(""));
	assert_false(fsu_relpath_ok("/etc/passwd"));
	assert_false(fsu_relpath_ok(".."));
	assert_false(fsu_relpath_ok("."));
	assert_false(fsu_relpath_ok("a/../b"));
	assert_false(fsu_relpath_ok("a/./b"));
	assert_false(fsu_relpath_ok("a/.."));
	assert_false(fsu_relpath_ok("../a"));
	assert_false(fsu_relpath_ok("a//b"));
	assert_false(fsu_relpath_ok("a/"));
}

static void
test_sanitize(void **state)
{
	char out[FSU_NAME_MAX + 1];
	char in[300];

	use_dir(state);
	fsu_sanitize(out, "eth0");
	assert_string_equal(out, "eth0");
	fsu_sanitize(out, "a/b c:d");
	assert_string_equal(out, "a_b_c_d");
	fsu_sanitize(out, "..");
	assert_string_equal(out, "_.");
	fsu_sanitize(out, ".x");
	assert_string_equal(out, "_x");
	fsu_sanitize(out, "");
	assert_string_equal(out, "_");
	/* Each byte of a multi-byte character becomes one '_'. */
	fsu_sanitize(out, "caf\xc3\xa9");
	assert_string_equal(out, "caf__");
	memset(in, 'y', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	fsu_sanitize(out, in);
	assert_int_equal(strlen(out), FSU_NAME_MAX);
	assert_true(fsu_name_ok(out));
}

static void
test_path_limits(void **state)
{
	char buf[8];

	use_dir(state);
	assert_int_equal(fsu_path(buf, sizeof(buf), "%s/%d", "ab", 12), 0);
	assert_string_equal(buf, "ab/12");
	/* 7 characters and the NUL fit exactly; 8 do not, and leave buf empty. */
	assert_int_equal(fsu_path(buf, sizeof(buf), "%s", "1234567"), 0);
	assert_string_equal(buf, "1234567");
	assert_int_equal(fsu_path(buf, sizeof(buf), "%s", "12345678"), -ENAMETOOLONG);
	assert_string_equal(buf, "");
	assert_int_equal(fsu_path(buf, 0, "%s", "x"), -ENAMETOOLONG);
}

static void
test_mkdirs_slashes_and_length(void **state)
{
	struct stat st;
	char longp[PATH_MAX + 10];

	use_dir(state);
	assert_int_equal(fsu_mkdirs(at("a/b/c"), 0750), 0);
	assert_int_equal(stat(at("a/b/c"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Existing directories, a trailing slash and repeated slashes are fine. */
	assert_int_equal(fsu_mkdirs(at("a/b/c"), 0750), 0);
	assert_int_equal(fsu_mkdirs(at("a/b/c/"), 0750), 0);
	assert_int_equal(fsu_mkdirs(at("a//b//d"), 0750), 0);
	assert_int_equal(stat(at("a/b/d"), &st), 0);
	/* A file in the way is an error, wherever it is in the path. */
	tu_put(at("file"), "x", 1);
	assert_int_equal(fsu_mkdirs(at("file/sub"), 0750), -ENOTDIR);
	assert_int_equal(fsu_mkdirs(at("file"), 0750), -ENOTDIR);
	/* Empty and over-long paths are refused before any mkdir. */
	assert_int_equal(fsu_mkdirs("", 0750), -ENAMETOOLONG);
	memset(longp, 'z', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(fsu_mkdirs(longp, 0750), -ENAMETOOLONG);
	assert_int_equal(fsu_rmtree(at("a")), 0);
	assert_int_equal(unlink(at("file")), 0);
}

static void
test_rmtree(void **state)
{
	use_dir(state);
	assert_int_equal(fsu_mkdirs(at("t/x/y"), 0755), 0);
	assert_int_equal(fsu_mkdirs(at("keep"), 0755), 0);
	tu_put(at("t/f1"), "1", 1);
	tu_put(at("t/x/y/f2"), "22", 2);
	tu_put(at("keep/precious"), "p", 1);
	/* A link to a directory outside: removed as a link, never followed. */
	assert_int_equal(symlink(at("keep"), at("t/x/link")), 0);
	/* A read-only snapshot tree is removed too. */
	assert_int_equal(fsu_make_readonly(at("t")), 0);
	assert_int_equal(fsu_rmtree(at("t")), 0);
	assert_false(exists(at("t")));
	assert_true(exists(at("keep/precious")));
	/* Missing: not an error. A plain file is unlinked. */
	assert_int_equal(fsu_rmtree(at("t")), 0);
	assert_int_equal(fsu_rmtree(at("keep/precious")), 0);
	assert_false(exists(at("keep/precious")));
	/* A symbolic link given as the root is removed itself, its target kept. */
	assert_int_equal(symlink(at("keep"), at("lnk")), 0);
	assert_int_equal(fsu_rmtree(at("lnk")), 0);
	assert_false(exists(at("lnk")));
	assert_true(exists(at("keep")));
	assert_int_equal(fsu_rmtree(at("keep")), 0);
	assert_int_equal(count_entries(dir), 0);
}

static void
test_make_readonly(void **state)
{
	struct stat st;

	use_dir(state);
	assert_int_equal(fsu_mkdirs(at("ro/sub"), 0755), 0);
	tu_put(at("ro/sub/f"), "data", 4);
	assert_int_equal(chmod(at("ro/sub/f"), 0640), 0);
	assert_int_equal(fsu_make_readonly(at("ro")), 0);
	/* Write bits cleared, the rest kept (root would ignore them, so look at modes). */
	assert_int_equal(stat(at("ro/sub/f"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0440);
	assert_int_equal(stat(at("ro/sub"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0555);
	assert_int_equal(stat(at("ro"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0555);
	/* Not a directory. */
	assert_int_equal(fsu_make_readonly(at("ro/sub/f")), -ENOTDIR);
	assert_int_equal(fsu_make_readonly(at("missing")), -ENOENT);
	assert_int_equal(fsu_rmtree(at("ro")), 0);
}

static void
test_write_all_and_copy(void **state)
{
	static uint8_t big[300000];
	static uint8_t back[sizeof(big) + 1];
	struct stat st;

	use_dir(state);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + (i >> 9));
	tu_put(at("src"), big, sizeof(big));
	assert_int_equal(fsu_copy(at("src"), at("dst"), 0600), 0);
	assert_int_equal(get(at("dst"), back, sizeof(back)), sizeof(big));
	assert_memory_equal(back, big, sizeof(big));
	assert_int_equal(stat(at("dst"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* The target must not exist; it is left untouched. */
	tu_put(at("other"), "old", 3);
	assert_int_equal(fsu_copy(at("src"), at("other"), 0600), -EEXIST);
	assert_int_equal(get(at("other"), back, sizeof(back)), 3);
	assert_memory_equal(back, "old", 3);
	/* A missing source creates nothing. */
	assert_int_equal(fsu_copy(at("nope"), at("dst2"), 0600), -ENOENT);
	assert_false(exists(at("dst2")));
	/* A symbolic link as source is refused (O_NOFOLLOW). */
	assert_int_equal(symlink(at("src"), at("lnk")), 0);
	assert_int_equal(fsu_copy(at("lnk"), at("dst3"), 0600), -ELOOP);
	assert_false(exists(at("dst3")));
	/* Empty file. */
	tu_put(at("empty"), "", 0);
	assert_int_equal(fsu_copy(at("empty"), at("empty2"), 0644), 0);
	assert_int_equal(stat(at("empty2"), &st), 0);
	assert_int_equal(st.st_size, 0);
	/* Writing to a bad descriptor reports the errno. */
	assert_int_equal(fsu_write_all(-1, "x", 1), -EBADF);
	assert_int_equal(fsu_fsync_path(at("dst")), 0);
	assert_int_equal(fsu_fsync_path(at("missing")), -ENOENT);
	for (const char *f = "src\0dst\0other\0lnk\0empty\0empty2\0"; *f; f += strlen(f) + 1)
		assert_int_equal(unlink(at(f)), 0);
}

static void
test_sha256(void **state)
{
	struct fsu_sha h;
	char hex[FSU_SHA256_HEX];
	uint64_t size = 99;

	use_dir(state);
	/* FIPS 180-2 test vectors. */
	assert_int_equal(fsu_sha_init(&h), 0);
	fsu_sha_update(&h, "a", 1);
	fsu_sha_update(&h, "bc", 2);
	fsu_sha_final(&h, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_null(h.ctx);
	tu_put(at("empty"), "", 0);
	assert_int_equal(fsu_sha256_file(at("empty"), hex, &size), 0);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(size, 0);
	/* A file longer than the read buffer (65536): 200000 times 'a' is not a published
	 * vector, so compare with the incremental digest of the same bytes. */
	{
		static char many[200000];
		char hex2[FSU_SHA256_HEX];

		memset(many, 'a', sizeof(many));
		tu_put(at("many"), many, sizeof(many));
		assert_int_equal(fsu_sha256_file(at("many"), hex, &size), 0);
		assert_int_equal(size, sizeof(many));
		assert_int_equal(fsu_sha_init(&h), 0);
		for (size_t i = 0; i < sizeof(many); i += 999)
			fsu_sha_update(&h, many + i, sizeof(many) - i < 999 ? sizeof(many) - i : 999);
		fsu_sha_final(&h, hex2);
		assert_string_equal(hex, hex2);
	}
	assert_int_equal(fsu_sha256_file(at("missing"), hex, &size), -ENOENT);
	/* Abort after init, and on a zeroed struct. */
	assert_int_equal(fsu_sha_init(&h), 0);
	fsu_sha_abort(&h);
	assert_null(h.ctx);
	memset(&h, 0, sizeof(h));
	fsu_sha_abort(&h);
	unlink(at("empty"));
	unlink(at("many"));
}

static void
test_out_commit_and_abort(void **state)
{
	struct fsu_out o;
	char buf[64];

	use_dir(state);
	tu_put(at("target"), "old contents", 12);
	assert_int_equal(fsu_out_open(&o, at("target"), 0644), 0);
	assert_true(o.fd >= 0);
	assert_int_equal(fsu_write_all(o.fd, "new", 3), 0);
	/* Until the commit, the target still holds the old file and nothing else is visible
	 * under a name other than a hidden one. */
	assert_int_equal(get(at("target"), buf, sizeof(buf)), 12);
	assert_int_equal(fsu_out_commit(&o), 0);
	assert_int_equal(o.fd, -1);
	assert_int_equal(get(at("target"), buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "new", 3);
	assert_int_equal(count_entries(dir), 1);

	/* Abort: nothing under the target name, no temporary left behind. */
	assert_int_equal(fsu_out_open(&o, at("aborted"), 0644), 0);
	assert_int_equal(fsu_write_all(o.fd, "partial", 7), 0);
	fsu_out_abort(&o);
	assert_false(exists(at("aborted")));
	assert_int_equal(count_entries(dir), 1);
	/* Abort twice is harmless. */
	fsu_out_abort(&o);

	/* A directory that does not exist: the error, and nothing to clean up. */
	assert_int_equal(fsu_out_open(&o, at("no/such/file"), 0644), -ENOENT);
	assert_int_equal(o.fd, -1);
	fsu_out_abort(&o);

	/* "-" is standard output: commit does nothing, abort does not close it. */
	assert_int_equal(fsu_out_open(&o, "-", 0644), 0);
	assert_true(o.is_stdout);
	assert_int_equal(o.fd, STDOUT_FILENO);
	assert_int_equal(fsu_out_commit(&o), 0);
	fsu_out_abort(&o);
	assert_true(fcntl(STDOUT_FILENO, F_GETFD) >= 0);
	assert_int_equal(unlink(at("target")), 0);
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
		cmocka_unit_test_setup_teardown(test_name_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relpath_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sanitize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkdirs_slashes_and_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rmtree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_make_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_all_and_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sha256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_commit_and_abort, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
