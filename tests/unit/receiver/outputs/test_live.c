/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/outputs/live.c, the live hub: batches fed as the ingest loop feeds
 * them come out of each consumer's queue as a pcap (or pcapng) stream read back with the
 * project's reader, record for record; sensor choice and BPF filters; a full queue drops
 * exactly the records that did not fit and counts them; a consumer that stops reading is
 * cut off; link types that a pcap stream cannot carry are counted; bounds on consumers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/wire.h"
#include "receiver/outputs/live.h"
#include "shared/pcapfile.h"

#define T0 1700000000000000000ull

static const struct proto_iface eth = { .linktype = 1, .snaplen = 65535, .name = "eth0" };
static const struct proto_iface ifs2[2] = {
	{ .linktype = 1, .snaplen = 65535, .name = "eth0" },
	{ .linktype = 101, .snaplen = 65535, .name = "tun0" }, /* raw IP */
};

/* An Ethernet/IPv4/UDP frame (198.18.0.1 -> 198.18.0.2, dport) of len bytes carrying i. */
static size_t
frame(uint8_t *p, uint32_t i, uint16_t dport, size_t len)
{
	static const uint8_t hdr[] = { 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0 };
	size_t ip_len = len - 14;
	memset(p, 0, len);
	memcpy(p, hdr, 14);
	uint8_t *ip = p + 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(ip_len >> 8);
	ip[3] = (uint8_t)ip_len;
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, (uint8_t[]){ 198, 18, 0, 1 }, 4);
	memcpy(ip + 16, (uint8_t[]){ 198, 18, 0, 2 }, 4);
	uint8_t *udp = ip + 20;
	udp[0] = 0x30;
	udp[1] = 0x39;
	udp[2] = (uint8_t)(dport >> 8);
	udp[3] = (uint8_t)dport;
	udp[4] = (uint8_t)((ip_len - 20) >> 8);
	udp[5] = (uint8_t)(ip_len - 20);
	memcpy(udp + 8, &i, 4);
	return len;
}

/* A batch of n records of len bytes, numbered from first, ports alternating 53/80,
 * on interface iface. Returns the raw length; buf must hold it. */
static uint32_t
batch(uint8_t *buf, uint32_t first, uint32_t n, size_t len, uint16_t iface)
{
	size_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		proto_rec_hdr_encode(
			buf + off, T0 + (first + i) * 1000ull, iface, (uint32_t)len, (uint32_t)len);
		off += PROTO_REC_HDR_LEN;
		if (iface == 1) { /* raw IP: the frame without its Ethernet header */
			uint8_t tmp[2048];
			frame(tmp, first + i, (first + i) % 2 ? 80 : 53, len + 14);
			memcpy(buf + off, tmp + 14, len);
		} else {
			frame(buf + off, first + i, (first + i) % 2 ? 80 : 53, len);
		}
		off += len;
	}
	return (uint32_t)off;
}

static void
start(uint64_t queue, uint32_t stall_ms, unsigned max)
{
	struct live_opts o = { .queue_bytes = queue, .stall_ms = stall_ms, .max_consumers = max };
	assert_int_equal(live_init(&o), 0);
}

static struct live_consumer *
consumer(const char *const *sensors, size_t n, const char *filter, enum live_format fmt)
{
	struct live_consumer_opts o = {
		.sensors = sensors, .n_sensors = n, .filter = filter, .format = fmt, .name = "test", .fd = -1
	};
	char err[256] = "";
	struct live_consumer *c = live_consumer_new(&o, err, sizeof(err));
	if (!c)
		fail_msg("consumer refused: %s", err);
	return c;
}

/* Waits until the hub has handled `records` records for all its consumers together
 * (delivered, dropped or filtered out: delivered + drops >= want). */
static void
wait_handled(uint64_t want_delivered_plus_dropped)
{
	for (int i = 0; i < 500; i++) {
		struct live_stats st = { 0 };
		live_stats_get(&st);
		uint64_t d = st.packets;
		for (int k = 0; k < LIVE_DROP_N; k++)
			d += st.drops[k];
		if (d >= want_delivered_plus_dropped)
			return;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	fail_msg("the hub did not handle %llu records in 5 s",
		(unsigned long long)want_delivered_plus_dropped);
}

/* Reads the consumer's stream until `min` bytes came and 200 ms pass with no more. */
static uint8_t *
drain(struct live_consumer *c, size_t *len, size_t min)
{
	size_t cap = 1 << 20, n = 0;
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	for (int idle = 0; idle < 2 || n < min;) {
		if (n == cap) {
			cap *= 2;
			assert_non_null(buf = realloc(buf, cap));
		}
		ssize_t r = live_consumer_read(c, buf + n, cap - n, 100);
		assert_true(r >= 0);
		if (r == 0 && ++idle > 50)
			break;
		if (r > 0)
			idle = 0;
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

/* The numbers (the uint32 after the UDP header) of the records of a stream. */
static size_t
numbers(const uint8_t *buf, size_t len, uint32_t *out, size_t max, uint32_t *linktype, bool *ng)
{
	int err = 0;
	struct pcapr *r = pcapr_open_mem(buf, len, &err);
	struct pcapf_rec rec;
	size_t n = 0;
	if (!r)
		fail_msg("stream unreadable: %s", pcapf_strerror(err));
	if (linktype)
		*linktype = pcapr_iface(r, 0)->linktype;
	if (ng)
		*ng = pcapr_is_pcapng(r);
	assert_true(pcapr_is_pcapng(r) || pcapr_is_nano(r));
	while ((err = pcapr_next(r, &rec)) == 1) {
		uint32_t off = pcapr_iface(r, rec.iface)->linktype == 101 ? 28 : 42;
		assert_true(n < max);
		assert_true(rec.caplen >= off + 4);
		memcpy(&out[n++], rec.data + off, 4);
	}
	assert_int_equal(err, 0);
	pcapr_close(r);
	return n;
}

static void
test_no_consumer_no_cost(void **state)
{
	static uint8_t buf[1 << 16];
	start(0, 0, 0);
	assert_false(live_active());
	uint32_t raw = batch(buf, 0, 10, 100, 0);
	live_feed("s1", &eth, 1, buf, raw, 10);
	struct live_stats st = { 0 };
	live_stats_get(&st);
	assert_int_equal(st.consumers, 0);
	assert_int_equal(st.packets, 0);
	live_fini();
}

static void
test_stream_is_exact(void **state)
{
	static uint8_t buf[1 << 20];
	uint32_t got[4000], lt = 0;
	start(0, 0, 0);
	struct live_consumer *c = consumer(NULL, 0, NULL, LIVE_PCAP);
	assert_true(live_active());
	for (uint32_t b = 0; b < 10; b++) {
		uint32_t raw = batch(buf, b * 300, 300, 60 + b, 0);
		live_feed("s1", &eth, 1, buf, raw, 300);
	}
	size_t len;
	uint8_t *s = drain(c, &len, 24);
	size_t n = numbers(s, len, got, 4000, &lt, NULL);
	assert_int_equal(n, 3000);
	assert_int_equal(lt, 1);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(got[i], i);
	/* The classic nanosecond magic, in host order, at the start. */
	uint32_t magic;
	memcpy(&magic, s, 4);
	assert_int_equal(magic, 0xa1b23c4d);
	free(s);
	live_consumer_free(c);
	assert_false(live_active());
	live_fini();
}

static void
test_sensors_and_filter(void **state)
{
	static uint8_t buf[1 << 20];
	uint32_t got[1000];
	const char *only_b[] = { "b" }, *ab[] = { "a", "b" };
	char err[256] = "";
	start(0, 0, 0);
	struct live_consumer_opts bad = { .filter = "udp port (", .fd = -1 };
	errno = 0;
	assert_null(live_consumer_new(&bad, err, sizeof(err)));
	assert_int_equal(errno, EINVAL);
	if (strncmp(err, "filter: ", 8) != 0 || !strstr(err, "syntax error"))
		fail_msg("got '%s'", err);
	struct live_consumer_opts badid = {
		.sensors = (const char *const[]){ "../x" }, .n_sensors = 1, .fd = -1
	};
	assert_null(live_consumer_new(&badid, err, sizeof(err)));
	assert_non_null(strstr(err, "not a sensor id"));

	struct live_consumer *cb = consumer(only_b, 1, NULL, LIVE_PCAP);
	struct live_consumer *cf = consumer(ab, 2, "udp dst port 53", LIVE_PCAP);
	struct live_consumer *call = consumer(NULL, 0, NULL, LIVE_PCAP);
	uint32_t raw = batch(buf, 0, 100, 80, 0);
	live_feed("a", &eth, 1, buf, raw, 100);
	raw = batch(buf, 100, 100, 80, 0);
	live_feed("b", &eth, 1, buf, raw, 100);
	raw = batch(buf, 200, 100, 80, 0);
	live_feed("c", &eth, 1, buf, raw, 100);
	size_t len, n;
	uint8_t *s = drain(cb, &len, 24);
	n = numbers(s, len, got, 1000, NULL, NULL);
	assert_int_equal(n, 100);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(got[i], 100 + i);
	free(s);
	s = drain(cf, &len, 24);
	n = numbers(s, len, got, 1000, NULL, NULL);
	assert_int_equal(n, 100); /* the even numbers of a and b: port 53 */
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(got[i], 2 * i);
	free(s);
	s = drain(call, &len, 24);
	assert_int_equal(numbers(s, len, got, 1000, NULL, NULL), 300);
	free(s);
	live_consumer_free(cb);
	live_consumer_free(cf);
	live_consumer_free(call);
	live_fini();
}

static void
test_full_queue_drops_are_counted(void **state)
{
	static uint8_t buf[1 << 20];
	static uint32_t got[20000];
	start(LIVE_QUEUE_MIN, 60000, 0);
	struct live_consumer *slow = consumer(NULL, 0, NULL, LIVE_PCAP);
	struct live_consumer *fast = consumer(NULL, 0, NULL, LIVE_PCAP);
	/* 16 batches of 1000 records of 200 bytes: 3.5 MB of pcap, the queue holds 1 MiB. */
	size_t fast_len = 0, cap = 8 << 20;
	uint8_t *fast_buf = malloc(cap);
	for (uint32_t b = 0; b < 16; b++) {
		uint32_t raw = batch(buf, b * 1000, 1000, 200, 0);
		live_feed("s1", &eth, 1, buf, raw, 1000);
		/* The fast one keeps up. */
		for (;;) {
			ssize_t r = live_consumer_read(fast, fast_buf + fast_len, cap - fast_len, 50);
			if (r <= 0)
				break;
			fast_len += (size_t)r;
		}
	}
	wait_handled(2 * 16000);
	size_t len;
	uint8_t *s = drain(slow, &len, 24);
	size_t n = numbers(s, len, got, 20000, NULL, NULL);
	struct live_stats st = { 0 };
	struct live_consumer_stats each[4];
	st.each = each;
	st.max = 4;
	live_stats_get(&st);
	assert_int_equal(st.consumers, 2);
	assert_int_equal(st.n, 2);
	/* Exactly what fit: the queue's bytes over 216 bytes a record (after the header). */
	assert_int_equal(n, (LIVE_QUEUE_MIN - 24) / 216);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(got[i], i); /* the first ones, in order, none torn */
	uint64_t slow_drops = 0, fast_drops = 0;
	for (size_t i = 0; i < st.n; i++) {
		bool is_slow = each[i].packets == n;
		*(is_slow ? &slow_drops : &fast_drops) = each[i].drops[LIVE_DROP_QUEUE];
		assert_int_equal(each[i].packets + each[i].drops[LIVE_DROP_QUEUE], 16000);
		assert_false(each[i].cut_off);
	}
	assert_int_equal(slow_drops, 16000 - n);
	free(s);
	size_t fn = numbers(fast_buf, fast_len, got, 20000, NULL, NULL);
	assert_int_equal(fn + fast_drops, 16000);
	assert_int_equal(st.drops[LIVE_DROP_QUEUE], slow_drops + fast_drops);
	free(fast_buf);
	live_consumer_free(slow);
	live_consumer_free(fast);
	live_stats_get(&st);
	assert_int_equal(st.consumers, 0);
	assert_int_equal(st.drops[LIVE_DROP_QUEUE], slow_drops + fast_drops); /* kept after they left */
	live_fini();
}

/* A consumer whose queue is full takes no copy of later batches: they are counted as
 * queue_full drops (merged into one gap, counted at the hub's next look), exactly; once
 * it has read its queue it gets records again. */
static void
test_full_consumer_batches_are_counted_not_copied(void **state)
{
	static uint8_t buf[1 << 20];
	start(LIVE_QUEUE_MIN, 60000, 0);
	struct live_consumer *c = consumer(NULL, 0, NULL, LIVE_PCAP);
	for (uint32_t b = 0; b < 40; b++) {
		uint32_t raw = batch(buf, b * 1000, 1000, 200, 0);
		live_feed("s1", &eth, 1, buf, raw, 1000);
	}
	wait_handled(40000);
	struct live_consumer_stats each[2];
	struct live_stats st = { .each = each, .max = 2 };
	live_stats_get(&st);
	assert_int_equal(st.n, 1);
	uint64_t fit = (LIVE_QUEUE_MIN - 24) / 216;
	assert_int_equal(each[0].packets, fit);
	assert_int_equal(each[0].drops[LIVE_DROP_QUEUE], 40000 - fit);
	assert_int_equal(each[0].drops[LIVE_DROP_BACKLOG], 0);
	/* Read: room again, and the next batch arrives whole. */
	size_t len;
	uint8_t *s = drain(c, &len, 24 + fit * 216);
	assert_int_equal(len, 24 + fit * 216);
	free(s);
	uint32_t raw = batch(buf, 40000, 1000, 200, 0);
	live_feed("s1", &eth, 1, buf, raw, 1000);
	wait_handled(41000);
	live_stats_get(&st);
	assert_int_equal(each[0].packets, fit + 1000);
	assert_int_equal(each[0].drops[LIVE_DROP_QUEUE], 40000 - fit);
	live_consumer_free(c);
	live_fini();
}

static void
test_stalled_consumer_is_cut_off(void **state)
{
	static uint8_t buf[1 << 16];
	uint8_t out[4096];
	start(0, 300, 0);
	struct live_consumer *stuck = consumer(NULL, 0, NULL, LIVE_PCAP);
	struct live_consumer *idle = consumer(NULL, 0, "udp port 9", LIVE_PCAP); /* nothing waits */
	uint32_t raw = batch(buf, 0, 10, 100, 0);
	live_feed("s1", &eth, 1, buf, raw, 10);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ssize_t r;
	do {
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
		struct live_stats st = { 0 };
		live_stats_get(&st);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (st.cut_off)
			break;
	} while (t1.tv_sec - t0.tv_sec < 5);
	r = live_consumer_read(stuck, out, sizeof(out), 0);
	assert_int_equal(r, -ECONNABORTED);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took >= 0.25 && took < 3);
	/* One with nothing waiting is never stalled. */
	assert_int_equal(live_consumer_read(idle, out, sizeof(out), 100), 0);
	struct live_stats st = { 0 };
	live_stats_get(&st);
	assert_int_equal(st.cut_off, 1);
	live_consumer_free(stuck);
	live_consumer_free(idle);
	live_fini();
}

static void
test_link_types(void **state)
{
	static uint8_t buf[1 << 16];
	uint32_t got[100];
	bool ng = false;
	start(0, 0, 0);
	struct live_consumer *pc = consumer(NULL, 0, NULL, LIVE_PCAP);
	struct live_consumer *ngc = consumer(NULL, 0, NULL, LIVE_PCAPNG);
	struct live_consumer *eth_only = consumer(NULL, 0, "ether host 02:00:00:00:00:01", LIVE_PCAPNG);
	/* LINKTYPE_RAW (101) is DLT_RAW to libpcap: an IP filter applies to both. */
	struct live_consumer *dns = consumer(NULL, 0, "udp dst port 53", LIVE_PCAPNG);
	uint32_t raw = batch(buf, 0, 5, 100, 0);
	live_feed("s1", ifs2, 2, buf, raw, 5);
	raw = batch(buf, 5, 5, 100, 1);
	live_feed("s1", ifs2, 2, buf, raw, 5);
	size_t len;
	uint8_t *s = drain(pc, &len, 24);
	assert_int_equal(numbers(s, len, got, 100, NULL, NULL), 5);
	free(s);
	s = drain(ngc, &len, 100);
	assert_int_equal(numbers(s, len, got, 100, NULL, &ng), 10);
	assert_true(ng);
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(got[i], i);
	free(s);
	s = drain(eth_only, &len, 100);
	assert_int_equal(numbers(s, len, got, 100, NULL, NULL), 5);
	free(s);
	s = drain(dns, &len, 100);
	assert_int_equal(numbers(s, len, got, 100, NULL, NULL), 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(got[i], 2 * i);
	free(s);
	live_consumer_free(dns);
	struct live_stats st = { 0 };
	struct live_consumer_stats each[4];
	st.each = each;
	st.max = 4;
	live_stats_get(&st);
	assert_int_equal(st.drops[LIVE_DROP_LINKTYPE], 5);
	assert_int_equal(st.drops[LIVE_DROP_FILTER], 5); /* "ether" on raw IP */
	live_consumer_free(pc);
	live_consumer_free(ngc);
	live_consumer_free(eth_only);
	live_fini();
}

static void
test_bounds_and_shutdown(void **state)
{
	char err[256] = "";
	uint8_t out[64];
	start(0, 0, 2);
	struct live_consumer *a = consumer(NULL, 0, NULL, LIVE_PCAP);
	struct live_consumer *b = consumer(NULL, 0, NULL, LIVE_PCAP);
	struct live_consumer_opts o = { .fd = -1 };
	errno = 0;
	assert_null(live_consumer_new(&o, err, sizeof(err)));
	assert_int_equal(errno, EBUSY);
	assert_non_null(strstr(err, "max_consumers"));
	live_shutdown();
	assert_int_equal(live_consumer_read(a, out, sizeof(out), 1000), -ESHUTDOWN);
	assert_null(live_consumer_new(&o, err, sizeof(err)));
	assert_int_equal(errno, ESHUTDOWN);
	live_consumer_free(a);
	live_consumer_free(b);
	struct live_stats st = { 0 };
	live_stats_get(&st);
	assert_int_equal(st.refused, 1);
	live_fini();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_consumer_no_cost),
		cmocka_unit_test(test_stream_is_exact),
		cmocka_unit_test(test_sensors_and_filter),
		cmocka_unit_test(test_full_queue_drops_are_counted),
		cmocka_unit_test(test_full_consumer_batches_are_counted_not_copied),
		cmocka_unit_test(test_stalled_consumer_is_cut_off),
		cmocka_unit_test(test_link_types),
		cmocka_unit_test(test_bounds_and_shutdown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
