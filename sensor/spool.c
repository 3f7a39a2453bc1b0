/* SPDX-License-Identifier: BSD-2-Clause */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"

/* A spool file is a 16-byte header {u32 magic, u32 n_records, u32 raw_len, u32 frame
 * length} in host byte order (the spool never leaves this machine), then the frame. */
#define SPOOL_MAGIC 0x504c5350u /* "PLSP" */
#define SPOOL_HDR 16

struct spool_ent {
	uint64_t seq;
	uint32_t size; /* file bytes */
	uint32_t n_records;
	bool in_memory;
};

struct spool {
	char dir[400];
	uint64_t max_bytes, bytes;
	struct spool_ent *e; /* sorted by seq */
	size_t n, cap;
	size_t first_waiting; /* index of the first entry not in memory (all before are) */
	uint64_t dropped_packets, dropped_batches;
};

static void spool_path(const struct spool *sp, uint64_t seq, char *out, size_t n)
{
	snprintf(out, n, "%s/%020" PRIu64 ".batch", sp->dir, seq);
}

static int spool_cmp(const void *a, const void *b)
{
	const struct spool_ent *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int spool_append(struct spool *sp, uint64_t seq, uint32_t size, uint32_t n_records)
{
	if (sp->n == sp->cap) {
		size_t nc = sp->cap ? sp->cap * 2 : 64;
		struct spool_ent *ne = realloc(sp->e, nc * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		sp->e = ne;
		sp->cap = nc;
	}
	sp->e[sp->n++] = (struct spool_ent){seq, size, n_records, false};
	sp->bytes += size;
	return 0;
}

static void spool_remove_at(struct spool *sp, size_t i)
{
	char path[512];
	spool_path(sp, sp->e[i].seq, path, sizeof(path));
	unlink(path);
	sp->bytes -= sp->e[i].size;
	memmove(&sp->e[i], &sp->e[i + 1], (sp->n - i - 1) * sizeof(*sp->e));
	sp->n--;
	if (sp->first_waiting > i)
		sp->first_waiting--;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, uint64_t new_epoch, uint64_t *epoch,
			 uint64_t *next_seq, char *err, size_t errlen)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		snprintf(err, errlen, "spool: out of memory");
		return NULL;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	sp->max_bytes = max_bytes;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool.dir: cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "spool.dir: cannot open %s: %s", dir, strerror(errno));
		goto fail;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *end;
		uint64_t seq = strtoull(de->d_name, &end, 10);
		if (end == de->d_name || strcmp(end, ".batch") != 0)
			continue;
		char path[512];
		spool_path(sp, seq, path, sizeof(path));
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint32_t h[4];
		struct stat st;
		if (fd < 0 || read(fd, h, sizeof(h)) != (ssize_t)sizeof(h) || fstat(fd, &st) != 0 ||
		    h[0] != SPOOL_MAGIC || (uint64_t)st.st_size != SPOOL_HDR + (uint64_t)h[3]) {
			log_warnx("spool: %s is damaged, removed", path);
			if (fd >= 0)
				close(fd);
			unlink(path);
			continue;
		}
		close(fd);
		if (spool_append(sp, seq, (uint32_t)st.st_size, h[1]) != 0) {
			closedir(d);
			snprintf(err, errlen, "spool: out of memory");
			goto fail;
		}
	}
	closedir(d);
	if (sp->n > 1)
		qsort(sp->e, sp->n, sizeof(*sp->e), spool_cmp);

	char ep[512];
	snprintf(ep, sizeof(ep), "%s/epoch", dir);
	*epoch = new_epoch;
	if (sp->n > 0) {
		FILE *f = fopen(ep, "r");
		unsigned long long v;
		if (f && fscanf(f, "%llu", &v) == 1) {
			*epoch = v;
		} else {
			/* Batches without their epoch cannot be matched by the receiver. */
			log_warnx("spool: %s has no epoch: %zu spooled batches dropped", dir, sp->n);
			while (sp->n) {
				sp->dropped_packets += sp->e[0].n_records;
				sp->dropped_batches++;
				spool_remove_at(sp, 0);
			}
		}
		if (f)
			fclose(f);
	}
	*next_seq = sp->n ? sp->e[sp->n - 1].seq + 1 : 1;
	FILE *f = fopen(ep, "w");
	if (!f || fprintf(f, "%llu\n", (unsigned long long)*epoch) < 0 || fclose(f) != 0) {
		snprintf(err, errlen, "spool.dir: cannot write %s: %s", ep, strerror(errno));
		goto fail;
	}
	if (sp->n)
		log_info("spool: %zu batches (%" PRIu64 " bytes) pending from a previous run, epoch %" PRIu64, sp->n,
			 sp->bytes, *epoch);
	return sp;
fail:
	free(sp->e);
	free(sp);
	return NULL;
}

int spool_put(struct spool *sp, const struct batch *b)
{
	uint32_t size = SPOOL_HDR + (uint32_t)b->len;
	/* Make room: the oldest batches that are not in memory go first. */
	while (sp->bytes + size > sp->max_bytes && sp->first_waiting < sp->n) {
		sp->dropped_packets += sp->e[sp->first_waiting].n_records;
		sp->dropped_batches++;
		spool_remove_at(sp, sp->first_waiting);
	}
	if (sp->bytes + size > sp->max_bytes)
		return -ENOSPC;
	char path[512], tmp[520];
	spool_path(sp, b->seq, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	uint32_t h[4] = {SPOOL_MAGIC, b->n_records, b->raw_len, (uint32_t)b->len};
	int rc = 0;
	if (write(fd, h, sizeof(h)) != (ssize_t)sizeof(h) || write(fd, b->frame, b->len) != (ssize_t)b->len)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		return rc;
	}
	return spool_append(sp, b->seq, size, b->n_records);
}

bool spool_has_waiting(const struct spool *sp) { return sp->first_waiting < sp->n; }

struct batch *spool_take(struct spool *sp)
{
	while (sp->first_waiting < sp->n) {
		struct spool_ent *e = &sp->e[sp->first_waiting];
		char path[512];
		spool_path(sp, e->seq, path, sizeof(path));
		struct batch *b = malloc(sizeof(*b) + e->size);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint32_t h[4];
		bool ok = b && fd >= 0 && read(fd, h, sizeof(h)) == (ssize_t)sizeof(h) && h[0] == SPOOL_MAGIC &&
			  SPOOL_HDR + h[3] == e->size && read(fd, b->frame, h[3]) == (ssize_t)h[3];
		if (fd >= 0)
			close(fd);
		if (ok) {
			b->next = NULL;
			b->seq = e->seq;
			b->n_records = h[1];
			b->raw_len = h[2];
			b->len = h[3];
			b->first_ns = 0;
			e->in_memory = true;
			sp->first_waiting++;
			return b;
		}
		free(b);
		log_warnx("spool: %s is unreadable, dropped", path);
		sp->dropped_packets += e->n_records;
		sp->dropped_batches++;
		spool_remove_at(sp, sp->first_waiting);
	}
	return NULL;
}

void spool_ack(struct spool *sp, uint64_t seq)
{
	while (sp->n && sp->e[0].seq <= seq)
		spool_remove_at(sp, 0);
}

bool spool_contains(const struct spool *sp, uint64_t seq)
{
	size_t lo = 0, hi = sp->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (sp->e[mid].seq == seq)
			return true;
		if (sp->e[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

uint64_t spool_bytes(const struct spool *sp) { return sp->bytes; }
uint64_t spool_count(const struct spool *sp) { return sp->n; }
uint64_t spool_dropped_packets(const struct spool *sp) { return sp->dropped_packets; }
uint64_t spool_dropped_batches(const struct spool *sp) { return sp->dropped_batches; }

void spool_close(struct spool *sp)
{
	if (!sp)
		return;
	free(sp->e);
	free(sp);
}
