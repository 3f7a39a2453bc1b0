/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A capture byte stream written to a callback instead of a file descriptor: classic
 * pcap with nanosecond timestamps (magic 0xa1b23c4d), or pcapng with nanosecond
 * interfaces (if_tsresol 9), both in host byte order like shared/pcapfile's writer.
 * Export runs it twice over the same records: once into SHA-256 to learn the size and
 * digest of an archive entry before its header is written, once into the archive.
 */
#ifndef PCAPLINE_CLI_PCAPOUT_H
#define PCAPLINE_CLI_PCAPOUT_H

#include <stdint.h>
#include <stddef.h>

/* Receives buffered bytes; returns 0 or a negative code, which pcapout returns too. */
typedef int (*pcapout_sink)(void *arg, const void *buf, size_t len);

struct pcapout;

/* NULL with errno set. */
struct pcapout *pcapout_new(pcapout_sink sink, void *arg);
/* Classic pcap global header. Returns 0 or a negative code. */
int pcapout_pcap_header(struct pcapout *o, uint32_t linktype, uint32_t snaplen);
/* pcapng Section Header Block; appl names the writing program. */
int pcapout_ng_section(struct pcapout *o, const char *appl);
/* pcapng Interface Description Block (if_name, if_tsresol 9). */
int pcapout_ng_iface(struct pcapout *o, uint32_t linktype, uint32_t snaplen, const char *name);
/*
 * One record: a pcap record, or a pcapng Enhanced Packet Block for interface iface
 * (ignored for classic pcap). Returns 0, -EOVERFLOW for a timestamp that classic pcap
 * cannot hold (after 2106), or the sink's code.
 */
int pcapout_record(struct pcapout *o, uint32_t iface, uint64_t ts_ns, const uint8_t *data,
		   uint32_t caplen, uint32_t origlen);
/* Hands every buffered byte to the sink. Returns 0 or the sink's code. */
int pcapout_flush(struct pcapout *o);
/* Bytes produced so far (flushed or not). */
uint64_t pcapout_bytes(const struct pcapout *o);
/* Frees without flushing. Accepts NULL. */
void pcapout_free(struct pcapout *o);

#endif
