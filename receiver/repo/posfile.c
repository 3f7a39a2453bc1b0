/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/repo/posfile.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/repo/index.h"
#include "shared/fsutil.h"
#include "shared/log.h"

int
posfile_path(const char *seg_rel, char *out, size_t size)
{
	const char *seg = strstr(seg_rel, "/segments/");
	int n;

	if (!index_seg_path_ok(seg_rel) || seg == NULL)
		return -1;
	n = snprintf(out, size, "%.*s/l4/%s.pos", (int)(seg - seg_rel), seg_rel, seg + strlen("/segments/"));
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

int
posfile_write(const char *dir, const char *pos_rel, const uint64_t *ids, size_t n, char *err, size_t errlen)
{
	char full[4096 + INDEX_MAX_PATH], tmp[4096 + INDEX_MAX_PATH + 16], *slash;
	uint64_t buf[512];
	FILE *f;
	int ok, closed, e;

	if ((size_t)snprintf(full, sizeof(full), "%s/%s", dir, pos_rel) >= sizeof(full) ||
		(slash = strrchr(full, '/')) == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", pos_rel, strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	*slash = '\0';
	if ((e = fsu_mkdirs(full, 0750)) != 0) {
		snprintf(err, errlen, "cannot create the folder of %s: %s", pos_rel, strerror(-e));
		return e;
	}
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", full, slash + 1);
	*slash = '/';
	if ((f = fopen(tmp, "wbe")) == NULL) {
		e = errno;
		snprintf(err, errlen, "cannot write %s: %s", pos_rel, strerror(e));
		return -e;
	}
	memcpy(buf, POSFILE_MAGIC, 8);
	buf[1] = htole64((uint64_t)n);
	errno = 0;
	ok = fwrite(buf, 8, 2, f) == 2;
	/* Little-endian in chunks: the caller's array stays as it is. */
	for (size_t i = 0; ok && i < n;) {
		size_t k = n - i < sizeof(buf) / sizeof(buf[0]) ? n - i : sizeof(buf) / sizeof(buf[0]);

		for (size_t j = 0; j < k; j++)
			buf[j] = htole64(ids[i + j]);
		ok = fwrite(buf, 8, k, f) == k;
		i += k;
	}
	e = errno;
	closed = fclose(f);
	if (closed != 0 || !ok || rename(tmp, full) != 0) {
		e = e ? e : errno ? errno : EIO;
		snprintf(err, errlen, "cannot write %s: %s", pos_rel, strerror(e));
		unlink(tmp);
		return -e;
	}
	return 0;
}

void
posfile_unlink(const char *dir, const char *seg_rel)
{
	char pos[INDEX_MAX_PATH + 16], full[4096 + INDEX_MAX_PATH + 32];

	if (posfile_path(seg_rel, pos, sizeof(pos)) != 0)
		return;
	snprintf(full, sizeof(full), "%s/%s", dir, pos);
	if (unlink(full) != 0 && errno != ENOENT)
		log_warn("index: cannot delete %s", full);
}

int
posfile_open(const char *dir, const char *seg_rel, struct posfile *pf, char *err, size_t errlen)
{
	char pos[INDEX_MAX_PATH + 16], full[4096 + INDEX_MAX_PATH];
	struct stat sb;
	void *m;
	int fd;

	memset(pf, 0, sizeof(*pf));
	if (posfile_path(seg_rel, pos, sizeof(pos)) != 0) {
		snprintf(err, errlen, "%s: not a segment path", seg_rel);
		return -1;
	}
	snprintf(full, sizeof(full), "%s/%s", dir, pos);
	if ((fd = open(full, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0 ||
		sb.st_size < POSFILE_HEADER || (sb.st_size - POSFILE_HEADER) % 8 != 0) {
		snprintf(err, errlen,
			"%s: missing or damaged position file (re-index this window: pcapline reindex)", pos);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED || memcmp(m, POSFILE_MAGIC, 8) != 0) {
		if (m != MAP_FAILED)
			munmap(m, (size_t)sb.st_size);
		snprintf(
			err, errlen, "%s: not a position file (re-index this window: pcapline reindex)", pos);
		return -1;
	}
	pf->map = m;
	pf->len = (size_t)sb.st_size;
	pf->records = (pf->len - POSFILE_HEADER) / 8;
	memcpy(&pf->header_count, pf->map + 8, 8);
	pf->header_count = le64toh(pf->header_count);
	return 0;
}

uint64_t
posfile_get(const struct posfile *pf, uint64_t i)
{
	uint64_t v;

	memcpy(&v, pf->map + POSFILE_HEADER + 8 * i, 8);
	return le64toh(v);
}

void
posfile_close(struct posfile *pf)
{
	if (pf->map != NULL)
		munmap((void *)pf->map, pf->len);
	pf->map = NULL;
}
