/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Capture files: a reader for classic pcap (micro- and nanosecond magic, either byte
 * order) and pcapng (any number of sections and interfaces, per-interface if_tsresol
 * and if_tsoffset), and a writer for classic pcap or pcapng with nanosecond timestamps,
 * to a file descriptor or a callback sink.
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
	uint64_t ts_ns; /* nanoseconds since the Unix epoch */
	uint32_t caplen;
	uint32_t origlen;
	uint32_t iface;      /* index into the reader's interface table */
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
 * The one capture writer. Classic pcap (magic 0xa1b23c4d, nanosecond timestamps) or
 * pcapng (nanosecond interfaces, if_tsresol 9), both in host byte order, written to a
 * file descriptor or handed to a callback sink (exports, live outputs). Writes are
 * buffered; nothing is partially buffered: a record either fits the buffer or the
 * buffer is handed out first.
 *
 * Errors are sticky: after a failed write(2) or sink call every call returns the same
 * code. A write that fails part way (a full disk) may still have left the start of a
 * record in the file; the caller must then truncate the file back to where this
 * writer started plus pcapw_durable_bytes() to keep it readable.
 */

/* Receives buffered bytes; returns 0 or a negative code, which the writer returns too
 * (and keeps). */
typedef int (*pcapw_sink)(void *arg, const void *buf, size_t len);

/*
 * A classic pcap writer on fd, which the writer does not own and never closes.
 * snaplen must be 1..PCAPF_MAX_CAPLEN. Returns NULL with errno set.
 */
struct pcapw *pcapw_new(int fd, uint32_t linktype, uint32_t snaplen);
/*
 * A writer into sink; the format follows from the first call: pcapw_pcap_header() or
 * pcapw_ng_section(). Returns NULL with errno set.
 */
struct pcapw *pcapw_new_sink(pcapw_sink sink, void *arg);
/* Writes the 24-byte global header with pcapw_new()'s link type and snaplen.
 * Returns 0 or -errno; -EINVAL when anything was written before. */
int pcapw_header(struct pcapw *w);
/* Same with these values, which the writer takes on; records are then clipped to
 * snaplen (0: never). */
int pcapw_pcap_header(struct pcapw *w, uint32_t linktype, uint32_t snaplen);
/* pcapng Section Header Block (section length unknown); appl names the writing
 * program (shb_userappl). -EINVAL when anything was written before. */
int pcapw_ng_section(struct pcapw *w, const char *appl);
/* pcapng Interface Description Block (if_name, if_tsresol 9); interfaces are numbered
 * from 0 in the order of these calls. */
int pcapw_ng_iface(struct pcapw *w, uint32_t linktype, uint32_t snaplen, const char *name);
/* Appends one record; in classic pcap, caplen is clipped to the snaplen. Returns 0,
 * -EOVERFLOW for a timestamp that classic pcap cannot hold (after 2106), or -errno. */
int pcapw_write(struct pcapw *w, uint64_t ts_ns, const uint8_t *data, uint32_t caplen, uint32_t origlen);
/* Same for pcapng interface iface (ignored in classic pcap): an Enhanced Packet Block. */
int pcapw_write_if(struct pcapw *w, uint32_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen,
	uint32_t origlen);
/* Writes out buffered bytes (handles short writes and EINTR). Returns 0 or -errno. */
int pcapw_flush(struct pcapw *w);
/* Bytes written out so far, plus buffered bytes. */
uint64_t pcapw_bytes(const struct pcapw *w);
/* Bytes completely written out by successful flushes: always a record boundary. */
uint64_t pcapw_durable_bytes(const struct pcapw *w);
/* Flushes and frees (not the fd). Returns the flush result. Accepts NULL. */
int pcapw_free(struct pcapw *w);
/* Frees without writing out what is buffered (after an error). Accepts NULL. */
void pcapw_discard(struct pcapw *w);

#endif
