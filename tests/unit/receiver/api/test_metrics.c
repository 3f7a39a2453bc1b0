/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/api/metrics.c: the exact text of the exposition for snapshots made
 * by hand (HELP and TYPE once per family, a family's samples together, counters named
 * *_total), label values and HELP text escaped as the text format 0.0.4 requires, the
 * sensor's STATS counters shown only once it sent them (unknown ids kept by id), the
 * ACK latency histogram's cumulative buckets, and the live-output hook.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "receiver/api/metrics.h"

/* The rendering of m (and src), as a string the caller frees. */
static char *
render(const struct metrics_snap *m, const struct metrics_src *src)
{
	struct promtext b = { 0 };

	assert_int_equal(metrics_render(m, src, &b), 0);
	assert_non_null(b.p);
	assert_int_equal(strlen(b.p), b.len);
	return b.p;
}

/* True when text holds line as a whole line. */
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* Every family's HELP comes once, followed by its TYPE; every sample line belongs to the
 * family announced last (its name, or name_bucket/_sum/_count of a histogram). */
static void
assert_grouped(const char *text)
{
	char fam[128] = "", seen[64][128];
	size_t n_seen = 0;
	const char *p = text;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		char line[1024];

		assert_non_null(nl);
		assert_true((size_t)(nl - p) < sizeof(line));
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", fam);
			for (size_t i = 0; i < n_seen; i++)
				assert_string_not_equal(seen[i], fam);
			assert_true(n_seen < 64);
			snprintf(seen[n_seen++], sizeof(seen[0]), "%s", fam);
			/* Then its TYPE. */
			assert_memory_equal(nl + 1, "# TYPE ", 7);
			assert_memory_equal(nl + 8, fam, strlen(fam));
		} else if (strncmp(line, "# TYPE ", 7) != 0) {
			size_t k = strlen(fam);

			assert_true(k > 0);
			assert_memory_equal(line, fam, k);
			assert_true(line[k] == '{' || line[k] == ' ' || line[k] == '_');
		}
		p = nl + 1;
	}
}

static void
test_nothing_but_the_process(void **state)
{
	struct metrics_snap m = { .ready = false };
	char *t = render(&m, NULL);

	assert_string_equal(t,
		"# HELP pcapline_build_info The receiver's version; always 1.\n"
		"# TYPE pcapline_build_info gauge\n"
		"pcapline_build_info{version=\"" PCAPLINE_VERSION "\"} 1\n"
		"# HELP pcapline_ready 1 once the store is loaded and the listeners are up, 0 before "
		"and while shutting down.\n"
		"# TYPE pcapline_ready gauge\n"
		"pcapline_ready 0\n");
	free(t);
}

static void
test_label_and_help_escaping(void **state)
{
	struct promtext b = { 0 };

	promtext_family(&b, "x_total", "counter", "a \\ back\nslash \"quoted\"");
	promtext_sample(&b, "x_total", 7, "consumer", "say \"hi\"\\n\nnext", "reason", "", NULL);
	promtext_sample(&b, "x_total", UINT64_MAX, NULL);
	promtext_sample_f(&b, "x_seconds", 0.25, "le", "+Inf", NULL);
	assert_false(b.oom);
	/* HELP: backslash and newline escaped, the double quote left alone; label values:
	 * all three escaped. */
	assert_string_equal(b.p,
		"# HELP x_total a \\\\ back\\nslash \"quoted\"\n"
		"# TYPE x_total counter\n"
		"x_total{consumer=\"say \\\"hi\\\"\\\\n\\nnext\",reason=\"\"} 7\n"
		"x_total 18446744073709551615\n"
		"x_seconds{le=\"+Inf\"} 0.25\n");
	promtext_fini(&b);

	promtext_escape_label(&b, "\\\"\n");
	assert_string_equal(b.p, "\\\\\\\"\\n");
	promtext_fini(&b);
}

static void
sensor(struct store_pub *p, const char *id, uint64_t packets)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->c.packets = packets;
	p->c.bytes = packets * 100;
	p->c.batches = 3;
	p->segments = 2;
	p->segment_bytes = 4096;
}

static void
test_sensors(void **state)
{
	struct store_pub s[2];
	struct metrics_snap m = { .ready = true, .have_store = true, .sensors = s, .n_sensors = 2 };
	char *t;

	sensor(&s[0], "s1", 4102);
	s[0].connected = true;
	s[0].c.unstorable[STORE_UNSTORABLE_TS] = 1;
	s[0].c.retention_segments = 5;
	/* s1 sent STATS: captured, kernel and queue drops, and an id this receiver does not
	 * know; s2 never did. */
	s[0].seen = 1ull << PROTO_ST_CAPTURED | 1ull << PROTO_ST_KERNEL_DROPS | 1ull << PROTO_ST_QUEUE_DROPS |
		1ull << 40;
	s[0].s_stat[PROTO_ST_CAPTURED] = 4110;
	s[0].s_stat[PROTO_ST_KERNEL_DROPS] = 3;
	s[0].s_stat[PROTO_ST_QUEUE_DROPS] = 4;
	s[0].s_stat[40] = 99;
	sensor(&s[1], "s2", 0);
	t = render(&m, NULL);
	assert_grouped(t);
	assert_true(has_line(t, "pcapline_ready 1"));
	assert_true(has_line(t, "pcapline_sensor_connected{sensor=\"s1\"} 1"));
	assert_true(has_line(t, "pcapline_sensor_connected{sensor=\"s2\"} 0"));
	assert_true(has_line(t, "# TYPE pcapline_stored_packets_total counter"));
	assert_true(has_line(t, "pcapline_stored_packets_total{sensor=\"s1\"} 4102"));
	assert_true(has_line(t, "pcapline_stored_packets_total{sensor=\"s2\"} 0"));
	assert_true(has_line(t, "pcapline_stored_bytes_total{sensor=\"s1\"} 410200"));
	assert_true(has_line(t, "pcapline_segments{sensor=\"s1\"} 2"));
	assert_true(has_line(t, "pcapline_repository_bytes{sensor=\"s2\"} 4096"));
	assert_true(has_line(t, "pcapline_retention_deleted_segments_total{sensor=\"s1\"} 5"));
	assert_true(has_line(t, "pcapline_sensor_captured_packets_total{sensor=\"s1\"} 4110"));
	/* Counters the sensor never sent have no sample, rather than a false 0. */
	assert_null(strstr(t, "pcapline_sensor_captured_packets_total{sensor=\"s2\"}"));
	assert_null(strstr(t, "pcapline_sensor_shipped_batches_total{"));
	assert_true(has_line(t, "pcapline_lost_packets_total{sensor=\"s1\",reason=\"kernel\"} 3"));
	assert_true(has_line(t, "pcapline_lost_packets_total{sensor=\"s1\",reason=\"sensor_queue\"} 4"));
	assert_null(strstr(t, "reason=\"interface\""));
	assert_true(has_line(t, "pcapline_lost_packets_total{sensor=\"s1\",reason=\"timestamp_range\"} 1"));
	assert_true(has_line(t, "pcapline_lost_packets_total{sensor=\"s2\",reason=\"timestamp_range\"} 0"));
	assert_true(has_line(t, "# TYPE pcapline_sensor_stat untyped"));
	assert_true(has_line(t, "pcapline_sensor_stat{sensor=\"s1\",id=\"40\"} 99"));
	free(t);
}

static void
test_latency_histogram(void **state)
{
	struct metrics_snap m = { .have_store = true };
	char *t;

	/* 63 us is the first edge (inclusive); 64 us falls in the next; 20 s above all. */
	lathist_add(&m.all.ack_lat, 10);
	lathist_add(&m.all.ack_lat, 63);
	lathist_add(&m.all.ack_lat, 64);
	lathist_add(&m.all.ack_lat, 1000);
	lathist_add(&m.all.ack_lat, 20000000);
	m.all.index_busy = 2;
	m.all.index_wait_max_us = 1500;
	t = render(&m, NULL);
	assert_grouped(t);
	assert_true(has_line(t, "# TYPE pcapline_ack_latency_seconds histogram"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_bucket{le=\"0.000063\"} 2"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_bucket{le=\"0.000127\"} 3"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_bucket{le=\"0.001023\"} 4"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_bucket{le=\"16.777215\"} 4"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_bucket{le=\"+Inf\"} 5"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_sum 20.001137"));
	assert_true(has_line(t, "pcapline_ack_latency_seconds_count 5"));
	assert_true(has_line(t, "pcapline_index_busy_total 2"));
	assert_true(has_line(t, "pcapline_index_wait_max_seconds 0.0015"));
	free(t);
}

static void
test_server_and_dissect(void **state)
{
	struct metrics_snap m = {
		.have_server = true,
		.have_dissect = true,
		.now_ns = 1700000010000000000,
		.srv = { .accepted = 9,
			.refused = 1,
			.shed = 2,
			.timed_out = 3,
			.failed = 4,
			.sessions = 5,
			.unauth = 2,
			.held_bytes = 77 },
		.dis = { .segments = 4,
			.packets = 400,
			.backlog_known = true,
			.backlog_segments = 2,
			.backlog_packets = 30,
			.oldest_closed_ns = 1700000007500000000,
			.deferred_ms = 10300,
			.forced = 1 },
	};
	char *t = render(&m, NULL);

	assert_grouped(t);
	assert_true(has_line(t, "pcapline_sessions{state=\"sensor\"} 3"));
	assert_true(has_line(t, "pcapline_sessions{state=\"unauthenticated\"} 2"));
	assert_true(has_line(t, "pcapline_connections_refused_total{reason=\"max_sessions\"} 1"));
	assert_true(has_line(t, "pcapline_connections_refused_total{reason=\"auth_failed\"} 4"));
	assert_true(has_line(t, "pcapline_ingest_held_bytes 77"));
	assert_true(has_line(t, "pcapline_dissect_backlog_segments 2"));
	assert_true(has_line(t, "pcapline_dissect_backlog_packets 30"));
	assert_true(has_line(t, "pcapline_dissect_lag_seconds 2.5"));
	assert_true(has_line(t, "pcapline_dissect_deferred_seconds_total 10.3"));
	assert_true(has_line(t, "pcapline_dissect_deferral_bound_total 1"));
	free(t);

	/* Nothing waiting: no lag, whatever the oldest time says. */
	m.dis.backlog_segments = 0;
	t = render(&m, NULL);
	assert_true(has_line(t, "pcapline_dissect_lag_seconds 0"));
	free(t);
	/* Not counted yet (the worker repairs at start): no backlog families at all. */
	m.dis.backlog_known = false;
	t = render(&m, NULL);
	assert_null(strstr(t, "pcapline_dissect_backlog"));
	assert_true(has_line(t, "pcapline_dissect_segments_total 4"));
	free(t);
}

static void
live_hook(void *arg, struct promtext *b)
{
	promtext_family(b, "pcapline_live_dropped_packets_total", "counter", "Dropped for a slow consumer.");
	promtext_sample(b, "pcapline_live_dropped_packets_total", *(uint64_t *)arg, "consumer",
		"tshark \"1\"", "reason", "queue_full", NULL);
}

static void
test_live_hook(void **state)
{
	uint64_t drops = 12;
	struct metrics_src src = { .live = live_hook, .live_arg = &drops };
	struct metrics_snap m = { 0 };
	char *t = render(&m, &src);

	assert_grouped(t);
	assert_true(has_line(t,
		"pcapline_live_dropped_packets_total{consumer=\"tshark \\\"1\\\"\",reason=\"queue_full\"} "
		"12"));
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_but_the_process),
		cmocka_unit_test(test_label_and_help_escaping),
		cmocka_unit_test(test_sensors),
		cmocka_unit_test(test_latency_histogram),
		cmocka_unit_test(test_server_and_dissect),
		cmocka_unit_test(test_live_hook),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
