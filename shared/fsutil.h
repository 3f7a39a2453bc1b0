/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * File-system helpers for every program: names that are safe as one path component,
 * directory trees (mkdir -p), write-all loops, fsync by name, copies, SHA-256 of files,
 * and output files that appear under their final name only when complete.
 * Functions returning int return 0 or -errno.
 */
#ifndef PCAPLINE_SHARED_FSUTIL_H
#define PCAPLINE_SHARED_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/evp.h>

#define FSU_NAME_MAX   128
#define FSU_SHA256_HEX 65

/*
 * True for a sensor id or snapshot name: 1..FSU_NAME_MAX characters among letters,
 * digits, '.', '_', '-', not starting with '.' (so never ".", ".." or hidden).
 */
bool fsu_name_ok(const char *s);
/* True when a relative path stays below its root: no leading '/', no "." or ".."
 * component, no empty component. */
bool fsu_relpath_ok(const char *s);
/* Replaces every character fsu_name_ok() refuses by '_' (a leading '.' too), truncating
 * to FSU_NAME_MAX; an empty result becomes "_". dst holds FSU_NAME_MAX + 1 bytes. */
void fsu_sanitize(char *dst, const char *src);

/* snprintf for paths: returns 0, or -ENAMETOOLONG when the result does not fit, and
 * then leaves buf empty so that no call ever works on a truncated path. */
int fsu_path(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* mkdir -p with mode for the directories it creates. */
int fsu_mkdirs(const char *path, mode_t mode);
/* rm -r of a tree: never follows symbolic links, makes read-only directories
 * writable first. A missing path is not an error. */
int fsu_rmtree(const char *path);
/* Writes all len bytes (a short write or EINTR goes on; a write of 0 bytes is -EIO).
 * Returns 0 or -errno. */
int fsu_write_all(int fd, const void *buf, size_t len);
/* Same for an iovec array, which it consumes (iov is modified). *done counts the bytes
 * that reached fd either way, so that a caller can cut a partial record. */
int fsu_writev_all(int fd, struct iovec *iov, int iovcnt, size_t *done);
/* Copies src to the new file dst (O_EXCL, mode), data synced. */
int fsu_copy(const char *src, const char *dst, mode_t mode);
/* fsync of a file or directory by name (a directory: to make renames and creations
 * in it durable). */
int fsu_fsync_path(const char *path);
/* chmod a-w of every file and directory below and including path (bottom up). */
int fsu_make_readonly(const char *path);

/* Incremental SHA-256 (OpenSSL EVP). */
struct fsu_sha {
	EVP_MD_CTX *ctx;
};
int fsu_sha_init(struct fsu_sha *h);
void fsu_sha_update(struct fsu_sha *h, const void *p, size_t n);
/* Writes 64 hex digits and a NUL; frees the context. */
void fsu_sha_final(struct fsu_sha *h, char hex[FSU_SHA256_HEX]);
/* Frees the context without a result. Accepts a never-initialised zeroed struct. */
void fsu_sha_abort(struct fsu_sha *h);
/* SHA-256 and size of a whole file. */
int fsu_sha256_file(const char *path, char hex[FSU_SHA256_HEX], uint64_t *size);

/*
 * An output file written under no name (O_TMPFILE) or a hidden temporary name in the
 * target's directory, and linked/renamed to the target by fsu_out_commit(): a crash or
 * kill -9 never leaves a partial file under the target name. "-" is standard output
 * (written directly).
 */
struct fsu_out {
	int fd;
	char *path; /* target */
	char *tmp;  /* hidden temporary name, when O_TMPFILE is not available */
	bool anon;  /* O_TMPFILE */
	bool is_stdout;
};
int fsu_out_open(struct fsu_out *o, const char *path, mode_t mode);
/* Syncs, puts the file in place (replacing an older one) and closes it. */
int fsu_out_commit(struct fsu_out *o);
/* Closes and removes whatever was written. Safe after a failed open or a commit. */
void fsu_out_abort(struct fsu_out *o);

#endif
