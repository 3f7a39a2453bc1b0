/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Capture byte streams. Formats: draft-ietf-opsawg-pcap (classic pcap) and
 * draft-ietf-opsawg-pcapng (section 4.1 SHB, 4.2 IDB, 4.3 EPB).
 */
#include "receiver/repo/pcapout.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PCAPOUT_BUF (256u * 1024)
#define NS_PER_SEC 1000000000ull

struct pcapout {
	pcapout_sink sink;
	void *arg;
	bool ng;
	int err;        /* sticky */
	size_t used;
	uint64_t total;
	uint8_t *buf;
};

struct pcapout *
pcapout_new(pcapout_sink sink, void *arg)
{
	struct pcapout *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	o->buf = malloc(PCAPOUT_BUF);
	if (o->buf == NULL) {
		free(o);
		errno = ENOMEM;
		return NULL;
	}
	o->sink = sink;
	o->arg = arg;
	return o;
}

void
pcapout_free(struct pcapout *o)
{
	if (o == NULL)
		return;
	free(o->buf);
	free(o);
}

int
pcapout_flush(struct pcapout *o)
{
	if (o->err != 0)
		return o->err;
	if (o->used > 0) {
		int rc = o->sink(o->arg, o->buf, o->used);
		if (rc != 0)
			return o->err = rc;
		o->used = 0;
	}
	return 0;
}

/* Appends n bytes, through the buffer or, when larger than it, straight to the sink. */
static int
put(struct pcapout *o, const void *p, size_t n)
{
	int rc;

	if (o->err != 0)
		return o->err;
	if (n > PCAPOUT_BUF - o->used && (rc = pcapout_flush(o)) != 0)
		return rc;
	o->total += n;
	if (n > PCAPOUT_BUF) {
		rc = o->sink(o->arg, p, n);
		return rc != 0 ? (o->err = rc) : 0;
	}
	memcpy(o->buf + o->used, p, n);
	o->used += n;
	return 0;
}

static void
w16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void
w32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

int
pcapout_pcap_header(struct pcapout *o, uint32_t linktype, uint32_t snaplen)
{
	uint8_t h[24];

	o->ng = false;
	w32(h, 0xa1b23c4du);
	w16(h + 4, 2);
	w16(h + 6, 4);
	w32(h + 8, 0);
	w32(h + 12, 0);
	w32(h + 16, snaplen);
	w32(h + 20, linktype);
	return put(o, h, sizeof(h));
}

/* An option: code, length, value padded to 4 bytes. Returns bytes used. */
static size_t
opt(uint8_t *p, uint16_t code, const void *val, uint16_t len)
{
	w16(p, code);
	w16(p + 2, len);
	memcpy(p + 4, val, len);
	size_t padded = ((size_t)len + 3) & ~(size_t)3;
	memset(p + 4 + len, 0, padded - len);
	return 4 + padded;
}

int
pcapout_ng_section(struct pcapout *o, const char *appl)
{
	uint8_t b[512];
	size_t n = 8, alen = appl != NULL ? strnlen(appl, 256) : 0;
	uint64_t section_len = UINT64_MAX; /* unknown: the stream is written once */

	o->ng = true;
	w32(b, 0x0a0d0d0au);
	w32(b + n, 0x1a2b3c4du);
	w16(b + n + 4, 1);
	w16(b + n + 6, 0);
	memcpy(b + n + 8, &section_len, 8);
	n += 16;
	if (alen > 0)
		n += opt(b + n, 4 /* shb_userappl */, appl, (uint16_t)alen);
	n += opt(b + n, 0, "", 0);
	n += 4;
	w32(b + 4, (uint32_t)n);
	w32(b + n - 4, (uint32_t)n);
	return put(o, b, n);
}

int
pcapout_ng_iface(struct pcapout *o, uint32_t linktype, uint32_t snaplen, const char *name)
{
	uint8_t b[512];
	size_t n = 8, nlen = name != NULL ? strnlen(name, 256) : 0;
	uint8_t resol = 9;

	if (linktype > 0xffff)
		return -EINVAL;
	w32(b, 1);
	w16(b + n, (uint16_t)linktype);
	w16(b + n + 2, 0);
	w32(b + n + 4, snaplen);
	n += 8;
	if (nlen > 0)
		n += opt(b + n, 2 /* if_name */, name, (uint16_t)nlen);
	n += opt(b + n, 9 /* if_tsresol */, &resol, 1);
	n += opt(b + n, 0, "", 0);
	n += 4;
	w32(b + 4, (uint32_t)n);
	w32(b + n - 4, (uint32_t)n);
	return put(o, b, n);
}

int
pcapout_record(struct pcapout *o, uint32_t iface, uint64_t ts_ns, const uint8_t *data,
	       uint32_t caplen, uint32_t origlen)
{
	static const uint8_t zero[4];
	uint8_t h[28];
	int rc;

	if (o->err != 0)
		return o->err;
	if (!o->ng) {
		uint64_t sec = ts_ns / NS_PER_SEC;
		if (sec > UINT32_MAX)
			return -EOVERFLOW;
		w32(h, (uint32_t)sec);
		w32(h + 4, (uint32_t)(ts_ns % NS_PER_SEC));
		w32(h + 8, caplen);
		w32(h + 12, origlen);
		if ((rc = put(o, h, 16)) != 0)
			return rc;
		return caplen > 0 ? put(o, data, caplen) : 0;
	}
	size_t pad = (4 - (caplen & 3)) & 3;
	uint32_t total = (uint32_t)(28 + caplen + pad + 4);
	w32(h, 6);
	w32(h + 4, total);
	w32(h + 8, iface);
	w32(h + 12, (uint32_t)(ts_ns >> 32));
	w32(h + 16, (uint32_t)ts_ns);
	w32(h + 20, caplen);
	w32(h + 24, origlen);
	if ((rc = put(o, h, 28)) != 0 || (caplen > 0 && (rc = put(o, data, caplen)) != 0) ||
	    (pad > 0 && (rc = put(o, zero, pad)) != 0))
		return rc;
	return put(o, &total, 4);
}

uint64_t
pcapout_bytes(const struct pcapout *o)
{
	return o->total;
}
