/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Capture files: a reader for classic pcap (micro- and nanosecond magic, either byte
 * order) and pcapng (any number of sections and interfaces, per-interface if_tsresol
 * and if_tsoffset), and a writer for classic pcap with nanosecond timestamps.
 */
#ifndef PCAPLINE_SHARED_PCAPFILE_H
#define PCAPLINE_SHARED_PCAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCAPF_MAX_IFACES 64
#define PCAPF_MAX_CAPLEN 262144

struct pcapf_iface {
	uint32_t linktype;
	uint32_t snaplen;
	char name[65]; /* from if_name, or "if<N>" */
};

struct pcapf_rec {
	uint64_t ts_ns;   /* nanoseconds since the Unix epoch */
	uint32_t caplen;
	uint32_t origlen;
	uint32_t iface;   /* index into the reader's interface table */
	const uint8_t *data; /* borrowed until the next pcapr_next() or pcapr_close() */
};

enum pcapf_err {
	PCAPF_EFORMAT = -1000, /* not a pcap/pcapng file, or a malformed header/block */
	PCAPF_ETRUNC = -1001,  /* file ends in the middle of a record or block */
	PCAPF_ETOOBIG = -1002, /* a record or block above the size limits */
	PCAPF_EIFACES = -1003  /* more than PCAPF_MAX_IFACES interfaces */
};

/* Returns a message for a PCAPF_* code or a -errno. */
const char *pcapf_strerror(int err);

struct pcapr;

/*
 * Opens a capture file for reading (regular files only; the file is mmap'd).
 * For pcapng, every Interface Description Block in the file (all sections) is
 * found at open time so that the interface table is complete before the first
 * record; (section, local interface id) pairs map to one global index.
 * Returns NULL with *err set to a PCAPF_* code or -errno: an empty file or a cut
 * header is PCAPF_ETRUNC, more than PCAPF_MAX_IFACES interfaces PCAPF_EIFACES. A bad
 * or cut block further on is reported by pcapr_next() after the records before it.
 * The file must not shrink while it is open: the mapping would raise SIGBUS.
 */
struct pcapr *pcapr_open(const char *path, int *err);
/*
 * Same as pcapr_open() on a capture already in memory. The reader borrows buf: it must
 * stay valid and unchanged until pcapr_close(), and record data points into it.
 * An empty buffer, like an empty file, gives PCAPF_ETRUNC.
 */
struct pcapr *pcapr_open_mem(const void *buf, size_t len, int *err);
/* Returns 1 and fills *rec, 0 at end of file, or a negative code (PCAPF_ETRUNC for a
 * file cut in the middle of a record: every complete record before it was returned). */
int pcapr_next(struct pcapr *r, struct pcapf_rec *rec);
size_t pcapr_iface_count(const struct pcapr *r);
const struct pcapf_iface *pcapr_iface(const struct pcapr *r, size_t idx);
bool pcapr_is_pcapng(const struct pcapr *r);
/* Nanosecond (true) or microsecond (false) resolution of a classic pcap file
 * (false for pcapng, whose resolution is per interface). */
bool pcapr_is_nano(const struct pcapr *r);
/* Byte offset in the file of the next record to be read. */
uint64_t pcapr_offset(const struct pcapr *r);
void pcapr_close(struct pcapr *r);

struct pcapw;

/*
 * Writes classic pcap (magic 0xa1b23c4d, nanosecond timestamps, host byte order) to
 * fd, which the writer does not own and never closes. Writes are buffered; nothing
 * is partially written: a record either fits the buffer or the buffer is flushed
 * first. snaplen must be 1..PCAPF_MAX_CAPLEN. Returns NULL with errno set.
 *
 * Errors are sticky: after a failed write(2) every call returns the same -errno.
 * A write that fails part way (a full disk) may still have left the start of a
 * record in the file; the caller must then truncate the file back to where this
 * writer started plus pcapw_durable_bytes() to keep it readable.
 */
struct pcapw *pcapw_new(int fd, uint32_t linktype, uint32_t snaplen);
/* Writes the 24-byte global header. Returns 0 or -errno. */
int pcapw_header(struct pcapw *w);
/* Appends one record; caplen is clipped to the writer's snaplen. Returns 0 or -errno. */
int pcapw_write(struct pcapw *w, uint64_t ts_ns, const uint8_t *data, uint32_t caplen, uint32_t origlen);
/* Writes out buffered bytes (handles short writes and EINTR). Returns 0 or -errno. */
int pcapw_flush(struct pcapw *w);
/* Bytes written to fd so far, plus buffered bytes. */
uint64_t pcapw_bytes(const struct pcapw *w);
/* Bytes completely written to fd by successful flushes: always a record boundary. */
uint64_t pcapw_durable_bytes(const struct pcapw *w);
/* Flushes and frees (not the fd). Returns the flush result. Accepts NULL. */
int pcapw_free(struct pcapw *w);

#endif
