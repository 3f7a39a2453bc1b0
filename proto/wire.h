/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pcapline wire protocol v1: pure encode/decode, no I/O. See proto/PROTOCOL.md.
 *
 * Every frame is a 16-byte header followed by `len` payload bytes. All integers
 * are big-endian. Decoders never read past the bytes they are given and reject
 * anything malformed with a negative PROTO_E* code (see proto_strerror()).
 */
#ifndef PCAPLINE_PROTO_WIRE_H
#define PCAPLINE_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC         0x50434C4Eu /* "PCLN" */
#define PROTO_VERSION       1
#define PROTO_HDR_LEN       16
#define PROTO_REC_HDR_LEN   20
#define PROTO_BATCH_HDR_LEN 16

#define PROTO_MAX_ID        128 /* bytes of a sensor id, excluding the NUL */
#define PROTO_MAX_VERSION   32  /* bytes of a software version string */
#define PROTO_MAX_IFACES    64
#define PROTO_MAX_IFNAME    64
#define PROTO_MAX_STATS     64
#define PROTO_MAX_TEXT      256
#define PROTO_MAX_SNAPLEN   262144
#define PROTO_MAX_NAMES     256         /* events per NAMES frame */
#define PROTO_MAX_NAME      253         /* bytes of a host name, presentation form, no final dot */
#define PROTO_MAX_NS        63          /* bytes of a namespace */
#define PROTO_MAX_TTL       0x7fffffffu /* RFC 2181, section 8 */
/* Largest NAMES payload: 256 events of 8+1+1+16+2+4 fixed bytes and two full strings. */
#define PROTO_NAMES_MAX_LEN (2 + PROTO_MAX_NAMES * (32 + 2 + PROTO_MAX_NAME + 2 + PROTO_MAX_NS))

enum proto_type {
	PROTO_HELLO = 1,     /* sensor -> receiver, first frame */
	PROTO_WELCOME = 2,   /* receiver -> sensor, answer to HELLO */
	PROTO_BATCH = 3,     /* sensor -> receiver, packet records */
	PROTO_ACK = 4,       /* receiver -> sensor, cumulative */
	PROTO_STATS = 5,     /* sensor -> receiver, counters */
	PROTO_NAMES = 6,     /* sensor -> receiver, name-resolution events */
	PROTO_HEARTBEAT = 7, /* both directions */
	PROTO_CONTROL = 8,   /* receiver -> sensor */
	PROTO_ERROR = 9,     /* either side, just before closing */
	PROTO_TYPE_MAX = 9
};

/* Header flags. */
#define PROTO_F_LZ4 0x0001 /* BATCH payload data is one lz4 block */

enum proto_err {
	PROTO_OK = 0,
	PROTO_EAGAIN = -1,    /* not enough bytes yet (only from proto_hdr_decode) */
	PROTO_EMAGIC = -2,    /* bad magic */
	PROTO_EVERSION = -3,  /* unsupported protocol version */
	PROTO_ETYPE = -4,     /* unknown frame type */
	PROTO_ETOOBIG = -5,   /* length above the configured maximum */
	PROTO_ETRUNC = -6,    /* payload shorter than its contents claim */
	PROTO_EINVAL = -7,    /* a field holds an impossible value */
	PROTO_ENOSPC = -8,    /* output buffer too small (encoders) */
	PROTO_ELZ4 = -9,      /* lz4 block does not decode to exactly raw_len */
	PROTO_ETRAILING = -10 /* bytes left over after the last field */
};

const char *proto_strerror(int err);

/*
 * The one sensor id rule (PROTOCOL.md, section 1), for HELLO, certificates, configs,
 * requests and folder names alike: 1..PROTO_MAX_ID bytes among A-Z a-z 0-9 '.' '_' '-',
 * not starting with '.' (an id names a directory: never ".", ".." or hidden).
 * s need not be NUL-terminated.
 */
bool proto_sensor_id_ok(const char *s, size_t n);
/* One character of a sensor id (anywhere but first for '.'). */
bool proto_sensor_id_char(char c);

struct proto_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t len;
};

/* Writes the 16-byte header into out. */
void proto_hdr_encode(uint8_t out[PROTO_HDR_LEN], uint8_t type, uint16_t flags, uint32_t len);
/* Decodes a header from the first n bytes of p. Returns 0, PROTO_EAGAIN when n < 16,
 * or an error: magic, version, type, reserved bits, len > max_len. */
int proto_hdr_decode(const uint8_t *p, size_t n, uint32_t max_len, struct proto_hdr *h);

struct proto_iface {
	uint32_t linktype; /* DLT_/LINKTYPE_ value */
	uint32_t snaplen;
	char name[PROTO_MAX_IFNAME + 1];
};

/* Capability bits in HELLO. */
#define PROTO_CAP_LZ4   0x00000001u
#define PROTO_CAP_NAMES 0x00000002u

struct proto_hello {
	char sensor_id[PROTO_MAX_ID + 1];
	char version[PROTO_MAX_VERSION + 1];
	uint32_t caps;
	uint64_t epoch;                 /* identifies the sensor's sequence space */
	char token[PROTO_MAX_TEXT + 1]; /* optional bearer token, "" if none */
	uint16_t n_ifaces;
	struct proto_iface ifaces[PROTO_MAX_IFACES];
};

struct proto_welcome {
	uint64_t epoch;    /* echoes HELLO's epoch */
	uint64_t next_seq; /* first batch sequence number the receiver has not stored */
	uint32_t max_frame;
	uint32_t heartbeat_ms;
};

struct proto_batch {
	uint64_t seq;
	uint32_t n_records;
	uint32_t raw_len;    /* length of the record bytes once decompressed */
	const uint8_t *data; /* points into the decoded payload */
	uint32_t data_len;
};

struct proto_ack {
	uint64_t epoch;
	uint64_t seq; /* every batch with sequence number <= seq is stored */
};

struct proto_stat {
	uint16_t id;
	uint64_t value;
};

enum proto_stat_id {
	PROTO_ST_CAPTURED = 1,      /* packets accepted by the capture filter */
	PROTO_ST_KERNEL_DROPS = 2,  /* pcap_stats ps_drop */
	PROTO_ST_IF_DROPS = 3,      /* pcap_stats ps_ifdrop */
	PROTO_ST_QUEUE_DROPS = 4,   /* packets dropped because the send window was full */
	PROTO_ST_SPOOL_DROPS = 5,   /* packets dropped from a full spool */
	PROTO_ST_BATCHES = 6,       /* batches built */
	PROTO_ST_BYTES_RAW = 7,     /* record bytes before compression */
	PROTO_ST_BYTES_SENT = 8,    /* batch bytes after compression */
	PROTO_ST_PKT_BYTES = 9,     /* captured packet bytes (caplen sum) */
	PROTO_ST_NAMES_EVENTS = 10, /* name-resolution events produced (mapping changes) */
	PROTO_ST_NAMES_DROPS = 11   /* name-resolution events dropped: the queue was full */
};

struct proto_stats {
	uint64_t ts_ns;
	uint16_t n;
	struct proto_stat s[PROTO_MAX_STATS];
};

struct proto_error {
	uint16_t code;
	char text[PROTO_MAX_TEXT + 1];
};

enum proto_error_code {
	PROTO_ERR_PROTOCOL = 1, /* malformed frame */
	PROTO_ERR_VERSION = 2,
	PROTO_ERR_AUTH = 3,     /* identity or token refused */
	PROTO_ERR_LIMIT = 4,    /* a configured limit was exceeded */
	PROTO_ERR_STORAGE = 5,  /* receiver cannot store */
	PROTO_ERR_SHUTDOWN = 6, /* peer is shutting down */
	PROTO_ERR_SEQUENCE = 7  /* a batch number was reused for other bytes: take a new epoch */
};

/* Sources of a name-resolution event. Other values (4..255) are accepted and kept as
 * "other" so that sensors can add sources without a new version; 0 is invalid. */
enum proto_name_source {
	PROTO_NSRC_DNS = 1,   /* a DNS answer seen in the captured traffic */
	PROTO_NSRC_HOSTS = 2, /* the sensor's hosts file */
	PROTO_NSRC_STATIC = 3 /* the sensor's configuration */
};

/* One name-resolution event: from ts_ns on, addr (and port, if not 0) is called name. */
struct proto_name {
	uint64_t ts_ns;
	uint8_t source;                /* enum proto_name_source */
	uint8_t family;                /* 4 or 6 */
	uint8_t addr[16];              /* network byte order; the first 4 bytes for family 4 */
	uint16_t port;                 /* 0: the address as a whole */
	uint32_t ttl_s;                /* 0..PROTO_MAX_TTL; 0 = none (hosts file, configuration) */
	char name[PROTO_MAX_NAME + 1]; /* 1..253 bytes of [A-Za-z0-9_-] labels joined by '.' */
	char ns[PROTO_MAX_NS + 1];     /* 0..63 bytes, same characters; "" = none */
};

struct proto_names {
	uint16_t n; /* 1..PROTO_MAX_NAMES */
	struct proto_name ev[PROTO_MAX_NAMES];
};

/*
 * Payload encoders write the payload (not the header) into out and return its
 * length, or PROTO_ENOSPC. Payload decoders parse exactly n bytes and return 0
 * or an error; strings are NUL-terminated in the output struct.
 */
int proto_hello_encode(const struct proto_hello *m, uint8_t *out, size_t cap);
int proto_hello_decode(const uint8_t *p, size_t n, struct proto_hello *m);
int proto_welcome_encode(const struct proto_welcome *m, uint8_t *out, size_t cap);
int proto_welcome_decode(const uint8_t *p, size_t n, struct proto_welcome *m);
/* Writes only the 16-byte batch header; the caller places data_len bytes after it. */
int proto_batch_hdr_encode(uint64_t seq, uint32_t n_records, uint32_t raw_len, uint8_t *out, size_t cap);
/* data/data_len point into p. raw_len is checked against max_raw. */
int proto_batch_decode(const uint8_t *p, size_t n, uint32_t max_raw, struct proto_batch *m);
int proto_ack_encode(const struct proto_ack *m, uint8_t *out, size_t cap);
int proto_ack_decode(const uint8_t *p, size_t n, struct proto_ack *m);
int proto_stats_encode(const struct proto_stats *m, uint8_t *out, size_t cap);
int proto_stats_decode(const uint8_t *p, size_t n, struct proto_stats *m);
int proto_heartbeat_encode(uint64_t ts_ns, uint8_t *out, size_t cap);
int proto_heartbeat_decode(const uint8_t *p, size_t n, uint64_t *ts_ns);
int proto_error_encode(const struct proto_error *m, uint8_t *out, size_t cap);
/* NAMES: the encoder needs at most PROTO_NAMES_MAX_LEN bytes. */
int proto_names_encode(const struct proto_names *m, uint8_t *out, size_t cap);
int proto_names_decode(const uint8_t *p, size_t n, struct proto_names *m);
/* 1 if the len bytes at s, len <= max, are labels of [A-Za-z0-9_-] of 1..63 bytes joined
 * by single dots (no leading, trailing or double dot): the class of NAMES names
 * (max PROTO_MAX_NAME) and namespaces (max PROTO_MAX_NS). len 0 passes; a name also
 * needs at least one byte. */
int proto_name_valid(const char *s, size_t len, size_t max);
int proto_error_decode(const uint8_t *p, size_t n, struct proto_error *m);

/* One packet record inside a batch's (decompressed) record bytes. */
struct proto_rec {
	uint64_t ts_ns;
	uint16_t iface;
	uint32_t caplen;
	uint32_t origlen;
	const uint8_t *data; /* caplen bytes, borrowed from the batch buffer */
};

/* Writes a 20-byte record header; the caller appends caplen data bytes. */
void proto_rec_hdr_encode(
	uint8_t out[PROTO_REC_HDR_LEN], uint64_t ts_ns, uint16_t iface, uint32_t caplen, uint32_t origlen);

/* Walks the records of a decompressed batch. */
struct proto_rec_iter {
	const uint8_t *p, *end;
	uint16_t n_ifaces; /* records naming iface >= n_ifaces are rejected */
	uint32_t max_caplen;
};
void proto_rec_iter_init(
	struct proto_rec_iter *it, const uint8_t *p, size_t n, uint16_t n_ifaces, uint32_t max_caplen);
/* Returns 1 with *r filled, 0 at the clean end, or an error (PROTO_ETRUNC, PROTO_EINVAL:
 * caplen > origlen, caplen > max_caplen, iface out of range). */
int proto_rec_next(struct proto_rec_iter *it, struct proto_rec *r);

/* lz4 block helpers (pure computation). */
int proto_lz4_bound(uint32_t raw_len);
/* Returns compressed length (> 0) or PROTO_ENOSPC. */
int proto_lz4_compress(const uint8_t *src, uint32_t n, uint8_t *dst, uint32_t cap);
/* Decompresses into dst, which holds exactly raw_len bytes; the output must come
 * out at exactly raw_len, else PROTO_ELZ4. */
int proto_lz4_decompress(const uint8_t *src, uint32_t n, uint8_t *dst, uint32_t raw_len);

#endif
