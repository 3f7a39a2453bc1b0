/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Packet sources of the sensor: live interfaces through libpcap (TPACKET_V3 ring)
 * and capture files (pcap, pcapng) for replay. Both deliver records through one
 * callback and apply the same BPF filter.
 */
#ifndef PCAPLINE_SENSOR_CAPTURE_H
#define PCAPLINE_SENSOR_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "proto/wire.h"

/* Called once per packet that passed the filter. data is borrowed for the call only. */
typedef void (*capture_cb)(
	void *arg, uint16_t iface, uint64_t ts_ns, const uint8_t *data, uint32_t caplen, uint32_t origlen);

struct capture_opts {
	const char *const *ifaces; /* live interfaces (ignored with file) */
	size_t n_ifaces;
	const char *file;    /* replay this file instead of live capture */
	const char *filter;  /* user BPF expression, "" for none */
	const char *exclude; /* BPF expression for the uplink's own traffic, "" for none */
	uint32_t snaplen;
	bool promisc;
	uint64_t buffer_bytes; /* kernel ring per interface */
	capture_cb cb;
	void *cb_arg;
};

struct capture_stats {
	uint64_t captured;     /* packets delivered to the callback */
	uint64_t bytes;        /* caplen sum */
	uint64_t kernel_drops; /* ps_drop over all interfaces */
	uint64_t if_drops;     /* ps_ifdrop over all interfaces */
	uint64_t filtered_out; /* file input: records the filter rejected */
};

struct capture;

/* Opens every source and compiles the filter. On failure returns NULL with a one-line
 * reason in err (bad filter, missing interface, unreadable file, no permission). */
struct capture *capture_open(const struct capture_opts *o, char *err, size_t errlen);
/* Starts delivering packets from the loop. */
void capture_start(struct capture *c, struct ev_loop *loop);
/* Live: stop watching the sockets. File: stop reading. Resumable with capture_resume. */
void capture_pause(struct capture *c);
void capture_resume(struct capture *c);
/* True once a file source has delivered its last record (never for live capture). */
bool capture_done(const struct capture *c);
/* Drains what the kernel has buffered right now (used before shutdown). */
void capture_drain(struct capture *c);
size_t capture_iface_count(const struct capture *c);
void capture_iface(const struct capture *c, size_t i, struct proto_iface *out);
void capture_stats(struct capture *c, struct capture_stats *out);
/* Replaces the user filter (SIGHUP); on error the old one stays. Returns 0 or -1. */
int capture_set_filter(struct capture *c, const char *filter, char *err, size_t errlen);
bool capture_is_file(const struct capture *c);
/* Non-zero exit code for the file source: 0 after a clean end, else the read error. */
int capture_file_error(const struct capture *c, char *err, size_t errlen);
void capture_close(struct capture *c);

#endif
