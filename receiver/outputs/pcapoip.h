/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * PCAP-over-IP: a TCP listener that sends every client the live stream of all sensors
 * as classic pcap (live.h), as Arkime, NetworkMiner and `tshark -i TCP@host:port` read
 * it. Each client is one live consumer served by a thread of its own; the ingest loop
 * never touches a client (live_feed() only fills the hub's backlog).
 *
 * The protocol has no authentication and no TLS: the listener is refused off loopback
 * (the API's rule wants a token and TLS there, which no PCAP-over-IP reader sends).
 */
#ifndef PCAPLINE_RECEIVER_OUTPUTS_PCAPOIP_H
#define PCAPLINE_RECEIVER_OUTPUTS_PCAPOIP_H

#include <stddef.h>

#define PCAPOIP_DEFAULT_PORT 57012

struct pcapoip;

/* Binds listen (host:port; port 0: any free port) so that this can run before
 * privileges are dropped; refuses a non-loopback address. NULL with err set. */
struct pcapoip *pcapoip_new(const char *listen, char *err, size_t errlen);
/* Starts the accept thread. 0 or -1 with err set. */
int pcapoip_start(struct pcapoip *p, char *err, size_t errlen);
/* The port bound (for port 0). */
unsigned pcapoip_port(const struct pcapoip *p);
/* Stops accepting, ends every client and frees. Accepts NULL. Call live_shutdown()
 * first, so that clients waiting for packets end at once. */
void pcapoip_free(struct pcapoip *p);

#endif
