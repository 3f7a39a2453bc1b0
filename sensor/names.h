/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Name-resolution sources of the sensor: DNS answers seen in the captured packets
 * (passive DNS, shared/dns.h), the hosts file, and static names from the configuration.
 *
 * The module keeps the current mapping "address[:port] -> name [@ namespace]" and queues
 * an event only when a mapping changes (an address seen for the first time, or another
 * name or namespace for it). Every NAMES_FLUSH_MS the queue goes out as NAMES frames
 * (PROTOCOL.md, section 5.9) through the send callback; at the start of each session
 * (names_resync) every current mapping is sent again, since NAMES frames are not
 * acknowledged. The queue is bounded: an event that does not fit is dropped and counted.
 *
 * Precedence: configured names win over learned ones. A static name is never replaced by
 * the hosts file or DNS, a hosts-file name never by DNS. Names are kept in lower case.
 * DNS-learned mappings are bounded (least recently seen evicted first); configured ones
 * are kept as long as they are configured.
 */
#ifndef PCAPLINE_SENSOR_NAMES_H
#define PCAPLINE_SENSOR_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define NAMES_FLUSH_MS    200   /* NAMES frames go out at most this often */
#define NAMES_QUEUE_MAX   2048  /* events waiting to be sent */
#define NAMES_MAX_ENTRIES 65536 /* mappings kept (configured and learned) */

struct names_config {
	const char *hosts_file;     /* read at load; NULL or "" = none */
	const char *const *statics; /* "IP=NAME[@NS]", "IP:PORT=NAME[@NS]", "[IPv6]:PORT=..." */
	size_t n_statics;
	const char *const *dns_ports; /* decimal UDP/TCP ports whose packets are parsed as DNS */
	size_t n_dns_ports;
};

/* Hands one encoded NAMES payload to the uplink: 0 when it was queued for sending,
 * negative when it cannot be now (not connected, buffer full); the events are then
 * offered again at the next flush. */
typedef int (*names_send_fn)(void *arg, const uint8_t *payload, size_t len);

struct names_stats {
	uint64_t events;        /* mapping changes queued (PROTO_ST_NAMES_EVENTS) */
	uint64_t drops;         /* events dropped: queue full (PROTO_ST_NAMES_DROPS) */
	uint64_t sent;          /* events handed to the uplink, resyncs included */
	uint64_t dns_messages;  /* DNS responses parsed */
	uint64_t dns_errors;    /* malformed DNS messages on a DNS port */
	uint64_t dns_tcp_split; /* DNS-over-TCP segments not starting with a whole message */
	uint64_t evictions;     /* learned mappings forgotten to make room */
	uint64_t entries;       /* mappings held now */
	uint64_t queued;        /* events waiting now */
};

struct names;

/* Checks the configuration (static entries, ports) without loading anything. Returns 0
 * or -1 with a one-line reason in err. */
int names_check(const struct names_config *c, char *err, size_t errlen);
/* Creates the module with nothing loaded. NULL (errno set) when out of memory. */
struct names *names_new(names_send_fn send, void *arg);
/*
 * (Re)loads the configured sources: DNS ports, static names, the hosts file. Called at
 * start and on SIGHUP. Mappings that are new or changed are queued as events; configured
 * mappings that disappeared become ordinary learned ones (a later DNS answer may replace
 * them). On error (a bad static entry, an unreadable hosts file) nothing changes and -1
 * is returned with err set.
 */
int names_load(struct names *n, const struct names_config *c, char *err, size_t errlen);
/* Starts the flush timer. */
void names_start(struct names *n, struct ev_loop *loop);
/* Looks at one captured packet: cheap unless it is UDP or TCP on a DNS port. */
void names_packet(struct names *n, uint32_t linktype, uint64_t ts_ns, const uint8_t *data, uint32_t caplen);
/* A new session began: send every current mapping again (after the queued events). */
void names_resync(struct names *n);
/* Sends what is queued now (also done by the timer). */
void names_flush(struct names *n);
/* True when nothing waits to be sent (queue empty, no resync under way). */
bool names_idle(const struct names *n);
void names_stats(const struct names *n, struct names_stats *out);
/* Stops the timer and frees everything. Accepts NULL. */
void names_free(struct names *n);

#endif
