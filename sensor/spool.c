/* SPDX-License-Identifier: BSD-2-Clause */
#include "sensor/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/fsutil.h"
#include "shared/log.h"
#include "proto/wire.h"

/* A spool file is a 16-byte header {u32 magic, u32 n_records, u32 raw_len, u32 frame
 * length} in host byte order (the spool never leaves this machine), then the frame. */
#define SPOOL_MAGIC 0x504c5350u /* "PLSP" */
#define SPOOL_HDR   16

/*
 * Sequence state (the file "sequence"): the epoch, the end of the block of sequence
 * numbers reserved so far, the last number assigned and the boot it was assigned in.
 * A number is never used before its block is reserved on disk (written and synced),
 * and the last assigned number is rewritten (not synced) before each batch leaves the
 * process. A restart after kill -9 (same boot: the page cache survived) thus resumes
 * right after the last number used; a restart after a power loss resumes at the end of
 * the reservation, possibly leaving a gap, but never reusing a number the receiver
 * may already hold for this epoch (PROTOCOL.md 6.2, 6.3).
 */
#define SPOOL_SEQ_FILE  "sequence"
/* One fdatasync of a 125-byte file per 4096 batches (gigabytes of packets at full
 * batches) is cheap enough to run in the event loop; a bigger block would only widen
 * the gap a power loss leaves. */
#define SPOOL_SEQ_BLOCK 4096
#define SPOOL_BOOT_LEN  36
/* Fixed width, so that every rewrite covers the previous content exactly. */
#define SPOOL_SEQ_FMT   "epoch %020" PRIu64 "\nreserved %020" PRIu64 "\nlast %020" PRIu64 "\nboot %-36.36s\n"
#define SPOOL_SEQ_LEN   (6 + 20 + 1 + 9 + 20 + 1 + 5 + 20 + 1 + 5 + SPOOL_BOOT_LEN + 1)

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
	/* Sequence state (see SPOOL_SEQ_FILE); seq_fd < 0 while it could not be written. */
	int seq_fd;
	uint64_t epoch, reserved, last;
	char boot[SPOOL_BOOT_LEN + 1];
	struct log_limit seq_lim;
};

static void
spool_path(const struct spool *sp, uint64_t seq, char *out, size_t n)
{
	snprintf(out, n, "%s/%020" PRIu64 ".batch", sp->dir, seq);
}

static int
spool_cmp(const void *a, const void *b)
{
	const struct spool_ent *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
spool_append(struct spool *sp, uint64_t seq, uint32_t size, uint32_t n_records)
{
	if (sp->n == sp->cap) {
		size_t nc = sp->cap ? sp->cap * 2 : 64;
		struct spool_ent *ne = realloc(sp->e, nc * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		sp->e = ne;
		sp->cap = nc;
	}
	sp->e[sp->n++] = (struct spool_ent){ seq, size, n_records, false };
	sp->bytes += size;
	return 0;
}

static void
spool_remove_at(struct spool *sp, size_t i)
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

/* The kernel's id of this boot: numbers written but not synced survive a process
 * crash, not a reboot. "" if unknown (then nothing unsynced is trusted). */
static void
spool_boot_id(char *out)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f)
		return;
	if (!fgets(out, SPOOL_BOOT_LEN + 1, f) || strlen(out) != SPOOL_BOOT_LEN ||
		strspn(out, "0123456789abcdef-") != SPOOL_BOOT_LEN)
		out[0] = '\0';
	fclose(f);
}

static int
spool_sync_dir(const struct spool *sp)
{
	return fsu_fsync_path(sp->dir);
}

/* Reads "<key> <20 digits>\n" at *p and advances it. Returns 0 or -1. */
static int
spool_seq_field(const char **p, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);
	if (strncmp(*p, key, kl) != 0 || strspn(*p + kl, "0123456789") != 20 || (*p)[kl + 20] != '\n')
		return -1;
	*v = strtoull(*p + kl, NULL, 10);
	*p += kl + 21;
	return 0;
}

/* Reads the sequence state into sp (boot: the boot it was last written in).
 * Returns 0, or -1 if it is missing or damaged. */
static int
spool_seq_read(struct spool *sp, char *boot)
{
	char path[512], buf[SPOOL_SEQ_LEN + 2];
	snprintf(path, sizeof(path), "%s/%s", sp->dir, SPOOL_SEQ_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n != SPOOL_SEQ_LEN)
		return -1;
	buf[n] = '\0';
	const char *p = buf;
	if (spool_seq_field(&p, "epoch ", &sp->epoch) != 0 ||
		spool_seq_field(&p, "reserved ", &sp->reserved) != 0 ||
		spool_seq_field(&p, "last ", &sp->last) != 0 || strncmp(p, "boot ", 5) != 0 ||
		p[5 + SPOOL_BOOT_LEN] != '\n' || sp->last >= sp->reserved)
		return -1;
	memcpy(boot, p + 5, SPOOL_BOOT_LEN);
	boot[SPOOL_BOOT_LEN] = '\0';
	boot[strcspn(boot, " ")] = '\0';
	return 0;
}

/* Writes the sequence state; with sync, durably (file and directory). A failure
 * removes the file, so that the next start does not trust a reservation this run
 * has outgrown. Returns 0 or -errno. */
static int
spool_seq_write(struct spool *sp, bool sync)
{
	char buf[SPOOL_SEQ_LEN + 1];
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", sp->dir, SPOOL_SEQ_FILE);
	int n = snprintf(buf, sizeof(buf), SPOOL_SEQ_FMT, sp->epoch, sp->reserved, sp->last, sp->boot);
	int rc = 0;
	bool created = false;
	if (sp->seq_fd < 0) {
		/* Not truncated: rewriting the blocks a file already has needs no free space,
		 * so a full spool disk does not stop a restart. */
		sp->seq_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (sp->seq_fd < 0)
			rc = -errno;
		created = sync = true;
	}
	if (rc == 0 && n != SPOOL_SEQ_LEN)
		rc = -EINVAL;
	if (rc == 0) {
		ssize_t w = pwrite(sp->seq_fd, buf, SPOOL_SEQ_LEN, 0);
		if (w != SPOOL_SEQ_LEN)
			rc = w < 0 ? -errno : -ENOSPC;
		else if (created && ftruncate(sp->seq_fd, SPOOL_SEQ_LEN) != 0)
			rc = -errno;
	}
	if (rc == 0 && sync && fdatasync(sp->seq_fd) != 0)
		rc = -errno;
	if (rc == 0 && created)
		rc = spool_sync_dir(sp);
	if (rc != 0) {
		if (sp->seq_fd >= 0)
			close(sp->seq_fd);
		sp->seq_fd = -1;
		unlink(path);
		spool_sync_dir(sp);
	}
	return rc;
}

/* Sets the batch header's sequence number in spool file path (after a rename). */
static int
spool_file_set_seq(const char *path, uint64_t seq)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint32_t h[4];
	uint8_t bh[PROTO_BATCH_HDR_LEN];
	int rc = 0;
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || h[0] != SPOOL_MAGIC ||
		proto_batch_hdr_encode(seq, h[1], h[2], bh, sizeof(bh)) != PROTO_BATCH_HDR_LEN ||
		pwrite(fd, bh, sizeof(bh), SPOOL_HDR + PROTO_HDR_LEN) != (ssize_t)sizeof(bh))
		rc = errno ? -errno : -EIO;
	close(fd);
	return rc;
}

/* The sequence number in the batch header of spool file fd, 0 if unreadable. */
static uint64_t
spool_file_seq(int fd)
{
	uint8_t b[8];
	if (pread(fd, b, sizeof(b), SPOOL_HDR + PROTO_HDR_LEN) != (ssize_t)sizeof(b))
		return 0;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

/* Gives entry i the sequence number seq (not above its own, so that ascending
 * renumbering never meets a file still to be moved): renames its file, then rewrites
 * the batch header; spool_open() repairs a header left behind by a crash in between.
 * On failure the batch is dropped and counted. Returns 0 or -errno. */
static int
spool_move(struct spool *sp, size_t i, uint64_t seq)
{
	char from[512], to[512];
	spool_path(sp, sp->e[i].seq, from, sizeof(from));
	spool_path(sp, seq, to, sizeof(to));
	int rc = 0;
	/* Never over another batch's file, whatever order the caller got wrong. */
	if (seq != sp->e[i].seq && renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0)
		rc = -errno;
	else if ((rc = spool_file_set_seq(to, seq)) != 0)
		sp->e[i].seq = seq; /* renamed: removed under its new name below */
	if (rc != 0) {
		log_warnx("spool: cannot renumber %s as batch %" PRIu64 ": %s; dropped", from, seq,
			strerror(-rc));
		sp->dropped_packets += sp->e[i].n_records;
		sp->dropped_batches++;
		spool_remove_at(sp, i);
		return rc;
	}
	sp->e[i].seq = seq;
	return 0;
}

struct spool *
spool_open(const char *dir, uint64_t max_bytes, uint64_t new_epoch, uint64_t *epoch, uint64_t *next_seq,
	char *err, size_t errlen)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		snprintf(err, errlen, "spool: out of memory");
		return NULL;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	sp->max_bytes = max_bytes;
	sp->seq_fd = -1;
	spool_boot_id(sp->boot);
	int mrc = fsu_mkdirs(dir, 0700);
	if (mrc != 0) {
		snprintf(err, errlen, "spool.dir: cannot create %s: %s", dir, strerror(-mrc));
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
			h[0] != SPOOL_MAGIC || (uint64_t)st.st_size != SPOOL_HDR + (uint64_t)h[3] ||
			seq == 0 || h[3] < PROTO_HDR_LEN + PROTO_BATCH_HDR_LEN) {
			log_warnx("spool: %s is damaged, removed", path);
			if (fd >= 0)
				close(fd);
			unlink(path);
			continue;
		}
		/* The name is authoritative: a renumbering may have stopped between the
		 * rename and the header rewrite. */
		bool stale = spool_file_seq(fd) != seq;
		close(fd);
		if (stale && spool_file_set_seq(path, seq) != 0) {
			log_warnx("spool: %s cannot be repaired, removed", path);
			unlink(path);
			continue;
		}
		if (spool_append(sp, seq, (uint32_t)st.st_size, h[1]) != 0) {
			closedir(d);
			snprintf(err, errlen, "spool: out of memory");
			goto fail;
		}
	}
	closedir(d);
	if (sp->n > 1)
		qsort(sp->e, sp->n, sizeof(*sp->e), spool_cmp);

	char boot[SPOOL_BOOT_LEN + 1] = "";
	bool have = spool_seq_read(sp, boot) == 0;
	uint64_t next = 1;
	if (sp->n == 0) {
		/* Nothing to resend: a new sequence space (PROTOCOL.md 6.2). */
		sp->epoch = new_epoch;
		sp->reserved = 0;
	} else if (have) {
		/* Numbers up to the last one assigned may be stored by the receiver although
		 * their batches never reached the spool (sent from memory before a crash):
		 * new batches start above them. Unsynced state is trusted only within the
		 * boot that wrote it. */
		next = sp->e[sp->n - 1].seq + 1;
		uint64_t after = boot[0] && strcmp(boot, sp->boot) == 0 ? sp->last + 1 : sp->reserved;
		if (after > next)
			next = after;
	} else {
		/* Without the sequence state the numbers this epoch used are unknown: resend the
		 * batches under a new epoch, numbered from 1. The receiver may then store
		 * some twice, which is better than taking new batches for duplicates. */
		log_warnx(
			"spool: %s has no usable sequence state: its %zu batches are sent again under a new "
			"epoch (any the receiver already stored are stored twice)",
			dir, sp->n);
		sp->epoch = new_epoch;
		sp->last = sp->e[sp->n - 1].seq;
		sp->reserved = sp->last + 1 + SPOOL_SEQ_BLOCK;
		/* Durable first, so that a crash while moving leaves every number above it. */
		int rc = spool_seq_write(sp, true);
		if (rc != 0) {
			snprintf(err, errlen, "spool.dir: cannot write %s/%s: %s", dir, SPOOL_SEQ_FILE,
				strerror(-rc));
			goto fail;
		}
		for (size_t i = 0; i < sp->n;)
			if (spool_move(sp, i, next) == 0) {
				i++;
				next++;
			}
	}
	*epoch = sp->epoch;
	*next_seq = next;
	sp->last = next - 1;
	if (sp->reserved < next + SPOOL_SEQ_BLOCK)
		sp->reserved = next + SPOOL_SEQ_BLOCK;
	int rc = spool_seq_write(sp, true);
	if (rc != 0) {
		snprintf(
			err, errlen, "spool.dir: cannot write %s/%s: %s", dir, SPOOL_SEQ_FILE, strerror(-rc));
		goto fail;
	}
	/* The epoch alone, as earlier versions kept it, is not enough to resume safely. */
	char legacy[512];
	snprintf(legacy, sizeof(legacy), "%s/epoch", dir);
	unlink(legacy);
	if (sp->n)
		log_info("spool: %zu batches (%" PRIu64 " bytes) pending from a previous run, epoch %" PRIu64
			 ", new batches from %" PRIu64,
			sp->n, sp->bytes, *epoch, next);
	return sp;
fail:
	if (sp->seq_fd >= 0)
		close(sp->seq_fd);
	free(sp->e);
	free(sp);
	return NULL;
}

int
spool_seq_use(struct spool *sp, uint64_t seq)
{
	bool extend = seq >= sp->reserved;
	sp->last = seq;
	if (extend)
		sp->reserved = seq + SPOOL_SEQ_BLOCK;
	/* Only the reservation is synced; the last number is a hint for a restart within
	 * this boot (see SPOOL_SEQ_FILE). */
	int rc = spool_seq_write(sp, extend);
	if (rc != 0 && log_limit_ok(&sp->seq_lim, 3, 60))
		log_warnx("spool: cannot record sequence number %" PRIu64
			  " in %s/%s: %s; if the sensor restarts now, "
			  "its spooled batches are sent under a new epoch",
			seq, sp->dir, SPOOL_SEQ_FILE, strerror(-rc));
	return rc;
}

int
spool_set_epoch(struct spool *sp, uint64_t epoch, uint64_t in_use)
{
	uint64_t top = sp->n && sp->e[sp->n - 1].seq > in_use ? sp->e[sp->n - 1].seq : in_use;
	sp->epoch = epoch;
	sp->last = top;
	sp->reserved = top + 1 + SPOOL_SEQ_BLOCK;
	return spool_seq_write(sp, true);
}

int
spool_renumber(struct spool *sp, uint64_t old, uint64_t seq)
{
	size_t lo = 0, hi = sp->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (sp->e[mid].seq == old)
			return spool_move(sp, mid, seq);
		if (sp->e[mid].seq < old)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

uint64_t
spool_renumber_waiting(struct spool *sp, uint64_t first)
{
	for (size_t i = sp->first_waiting; i < sp->n;)
		if (spool_move(sp, i, first) == 0) {
			i++;
			first++;
		}
	return first;
}

int
spool_put(struct spool *sp, const struct batch *b)
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
	uint32_t h[4] = { SPOOL_MAGIC, b->n_records, b->raw_len, (uint32_t)b->len };
	/* A short write goes on, so a full disk shows as ENOSPC from the next write. */
	int rc = fsu_write_all(fd, h, sizeof(h));
	if (rc == 0)
		rc = fsu_write_all(fd, b->frame, b->len);
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		return rc;
	}
	return spool_append(sp, b->seq, size, b->n_records);
}

bool
spool_has_waiting(const struct spool *sp)
{
	return sp->first_waiting < sp->n;
}

struct batch *
spool_take(struct spool *sp)
{
	while (sp->first_waiting < sp->n) {
		struct spool_ent *e = &sp->e[sp->first_waiting];
		char path[512];
		spool_path(sp, e->seq, path, sizeof(path));
		struct batch *b = malloc(sizeof(*b) + e->size);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint32_t h[4];
		bool ok = b && fd >= 0 && read(fd, h, sizeof(h)) == (ssize_t)sizeof(h) &&
			h[0] == SPOOL_MAGIC && SPOOL_HDR + h[3] == e->size &&
			read(fd, b->frame, h[3]) == (ssize_t)h[3];
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

void
spool_ack(struct spool *sp, uint64_t seq)
{
	while (sp->n && sp->e[0].seq <= seq)
		spool_remove_at(sp, 0);
}

bool
spool_contains(const struct spool *sp, uint64_t seq)
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

uint64_t
spool_bytes(const struct spool *sp)
{
	return sp->bytes;
}
uint64_t
spool_count(const struct spool *sp)
{
	return sp->n;
}
uint64_t
spool_dropped_packets(const struct spool *sp)
{
	return sp->dropped_packets;
}
uint64_t
spool_dropped_batches(const struct spool *sp)
{
	return sp->dropped_batches;
}

void
spool_close(struct spool *sp)
{
	if (!sp)
		return;
	if (sp->seq_fd >= 0)
		close(sp->seq_fd);
	free(sp->e);
	free(sp);
}
