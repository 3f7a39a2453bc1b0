/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/wire.h"

/* Snapshot and folder names follow the sensor id rule, which the protocol owns. */
_Static_assert(FSU_NAME_MAX == PROTO_MAX_ID, "names and sensor ids have one length limit");

bool
fsu_name_ok(const char *s)
{
	return s != NULL && proto_sensor_id_ok(s, strnlen(s, FSU_NAME_MAX + 1));
}

bool
fsu_relpath_ok(const char *s)
{
	const char *p = s;

	if (s == NULL || *s == '\0' || *s == '/')
		return false;
	while (*p != '\0') {
		const char *e = strchr(p, '/');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
		if (e != NULL && *p == '\0')
			return false;
	}
	return true;
}

void
fsu_sanitize(char *dst, const char *src)
{
	size_t n = 0;

	for (; src[n] != '\0' && n < FSU_NAME_MAX; n++)
		dst[n] = proto_sensor_id_char(src[n]) ? src[n] : '_';
	dst[n] = '\0';
	if (n == 0)
		strcpy(dst, "_");
	else if (dst[0] == '.')
		dst[0] = '_';
}

int
fsu_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		if (len > 0)
			buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

int
fsu_mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0) {
		struct stat st;

		if (errno != EEXIST)
			return -errno;
		/* A file in the way is not the folder the caller asked for. */
		if (stat(tmp, &st) != 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
	}
	return 0;
}

/* Removes the contents of the directory open at dfd, then closes dfd. */
static int
rmtree_fd(int dfd)
{
	DIR *d;
	struct dirent *de;
	int rc = 0;

	/* Read-only (snapshot) directories must be writable to lose their entries. */
	(void)fchmod(dfd, 0700);
	d = fdopendir(dfd);
	if (d == NULL) {
		rc = -errno;
		close(dfd);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT && rc == 0)
				rc = -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(
				dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int r = sub < 0 ? -errno : rmtree_fd(sub);
			if (r == 0 && unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0)
				r = -errno;
			if (r != 0 && rc == 0)
				rc = r;
		} else if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT && rc == 0) {
			rc = -errno;
		}
	}
	closedir(d);
	return rc;
}

int
fsu_rmtree(const char *path)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) == 0 ? 0 : -errno;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = rmtree_fd(fd);
	if (rc == 0 && rmdir(path) != 0)
		rc = -errno;
	return rc;
}

int
fsu_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* No progress and no error: do not spin. */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fsu_writev_all(int fd, struct iovec *iov, int iovcnt, size_t *done)
{
	*done = 0;
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		*done += (size_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int
fsu_copy(const char *src, const char *dst, mode_t mode)
{
	int in = -1, out = -1, rc = 0;
	char buf[1 << 16];

	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		/* copy_file_range lets the kernel (or a reflinking file system) do the work. */
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n > 0)
			continue;
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
			rc = -errno;
			goto out;
		}
		/* Plain read/write from wherever copy_file_range stopped. */
		for (;;) {
			ssize_t r = read(in, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				rc = -errno;
				goto out;
			}
			if (r == 0)
				break;
			if ((rc = fsu_write_all(out, buf, (size_t)r)) != 0)
				goto out;
		}
		break;
	}
	if (fsync(out) != 0)
		rc = -errno;
out:
	if (out >= 0 && close(out) != 0 && rc == 0)
		rc = -errno;
	if (in >= 0)
		close(in);
	if (rc != 0 && out >= 0)
		unlink(dst);
	return rc;
}

int
fsu_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int
readonly_fd(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (d == NULL) {
		rc = -errno;
		close(dfd);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(
				dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int r = sub < 0 ? -errno : readonly_fd(sub);
			if (r != 0)
				rc = r;
		} else if (S_ISREG(st.st_mode) &&
			fchmodat(dirfd(d), de->d_name, st.st_mode & 07555, 0) != 0) {
			rc = -errno;
		}
	}
	struct stat st;
	if (fstat(dirfd(d), &st) == 0 && fchmod(dirfd(d), st.st_mode & 07555) != 0)
		rc = -errno;
	closedir(d);
	return rc;
}

int
fsu_make_readonly(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return readonly_fd(fd);
}

int
fsu_sha_init(struct fsu_sha *h)
{
	h->ctx = EVP_MD_CTX_new();
	if (h->ctx == NULL)
		return -ENOMEM;
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->ctx);
		h->ctx = NULL;
		return -EIO;
	}
	return 0;
}

void
fsu_sha_update(struct fsu_sha *h, const void *p, size_t n)
{
	(void)EVP_DigestUpdate(h->ctx, p, n);
}

void
fsu_sha_final(struct fsu_sha *h, char hex[FSU_SHA256_HEX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	(void)EVP_DigestFinal_ex(h->ctx, md, &len);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", i < len ? md[i] : 0);
	hex[64] = '\0';
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void
fsu_sha_abort(struct fsu_sha *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int
fsu_sha256_file(const char *path, char hex[FSU_SHA256_HEX], uint64_t *size)
{
	struct fsu_sha h;
	char buf[1 << 16];
	uint64_t total = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if ((rc = fsu_sha_init(&h)) != 0) {
		close(fd);
		return rc;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		fsu_sha_update(&h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	close(fd);
	if (rc != 0) {
		fsu_sha_abort(&h);
		return rc;
	}
	fsu_sha_final(&h, hex);
	if (size != NULL)
		*size = total;
	return 0;
}

/* The directory part of path, "." when there is none. Caller frees. */
static char *
dir_of(const char *path)
{
	char *copy = strdup(path), *d;

	if (copy == NULL)
		return NULL;
	d = strdup(dirname(copy));
	free(copy);
	return d;
}

/* "<dir>/.<base>.tmp-<random>" next to path. Caller frees. */
static char *
hidden_name(const char *path)
{
	char *copy = strdup(path), *res = NULL;
	char *dir = dir_of(path);
	uint64_t rnd = 0;

	if (copy != NULL && dir != NULL) {
		if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			rnd = (uint64_t)getpid() * 2654435761u ^ (uint64_t)(uintptr_t)&rnd;
		if (asprintf(&res, "%s/.%s.tmp-%016llx", dir, basename(copy), (unsigned long long)rnd) < 0)
			res = NULL;
	}
	free(copy);
	free(dir);
	return res;
}

int
fsu_out_open(struct fsu_out *o, const char *path, mode_t mode)
{
	char *dir;
	int rc;

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	if (strcmp(path, "-") == 0) {
		o->is_stdout = true;
		o->fd = STDOUT_FILENO;
		return 0;
	}
	o->path = strdup(path);
	dir = dir_of(path);
	if (o->path == NULL || dir == NULL) {
		free(dir);
		fsu_out_abort(o);
		return -ENOMEM;
	}
	o->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
	free(dir);
	if (o->fd >= 0) {
		o->anon = true;
		return 0;
	}
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		rc = -errno;
		fsu_out_abort(o);
		return rc;
	}
	for (int tries = 0; tries < 16; tries++) {
		free(o->tmp);
		o->tmp = hidden_name(path);
		if (o->tmp == NULL) {
			fsu_out_abort(o);
			return -ENOMEM;
		}
		o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (o->fd >= 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	rc = -errno;
	free(o->tmp);
	o->tmp = NULL;
	fsu_out_abort(o);
	return rc;
}

int
fsu_out_commit(struct fsu_out *o)
{
	char proc[64];
	char *dir;
	int rc = 0;

	if (o->is_stdout)
		return 0;
	if (fsync(o->fd) != 0)
		return -errno;
	if (o->anon) {
		/* Give the anonymous file a hidden name, then rename it over the target. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
		for (int tries = 0; tries < 16; tries++) {
			free(o->tmp);
			o->tmp = hidden_name(o->path);
			if (o->tmp == NULL)
				return -ENOMEM;
			if (linkat(AT_FDCWD, proc, AT_FDCWD, o->tmp, AT_SYMLINK_FOLLOW) == 0)
				break;
			rc = -errno;
			free(o->tmp);
			o->tmp = NULL;
			if (rc != -EEXIST)
				return rc;
		}
		if (o->tmp == NULL)
			return rc;
	}
	if (rename(o->tmp, o->path) != 0)
		return -errno;
	free(o->tmp);
	o->tmp = NULL;
	if (close(o->fd) != 0)
		rc = -errno;
	o->fd = -1;
	if ((dir = dir_of(o->path)) != NULL) {
		(void)fsu_fsync_path(dir);
		free(dir);
	}
	free(o->path);
	o->path = NULL;
	return rc;
}

void
fsu_out_abort(struct fsu_out *o)
{
	if (o->is_stdout) {
		o->is_stdout = false;
		o->fd = -1;
		return;
	}
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp != NULL)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	o->tmp = NULL;
	o->path = NULL;
}
