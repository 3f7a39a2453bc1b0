/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Tests for receiver/dissect/dissect.c: public captures copied as segments into a
 * temporary repository (index.db by index_reconcile()) and dissected; the connections
 * written to the index are compared with what tshark finds in the same captures
 * (`tshark -q -z conv,tcp|udp`, run by the test), including a capture split into two
 * segments so that its connections span both. Also: the position files (magic, record
 * count, one connection id per record), the counters, a second pass that finds nothing
 * to do, a reindex that gives back the same rows and ids, and errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "receiver/dissect/dissect.h"
#include "receiver/repo/index.h"
#include "receiver/repo/posfile.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "tests/unit/testutil.h"

#define PCAPS "tests/data/pcaps"
#define ECHO  "tcp-echo-500-conns.pcap"
#define MYSQL "mysql-6-conns-port20130.pcap"
#define DNS   "dns-udp-queries.pcap"

static char dir[] = "/tmp/pcapline-test-dissect-XXXXXX";
static char echo_a[512], echo_b[512]; /* the two halves of ECHO (relative paths) */
static uint64_t echo_a_n, echo_b_n;

static char *
at(const char *rel)
{
	return tu_path(dir, rel);
}

/* Conversations tshark finds (kind "tcp" or "udp"). */
static long
tshark_convs(const char *capture, const char *kind)
{
	return tu_cmd_number(
		"tshark -r %s/%s -q -z conv,%s 2>/dev/null | grep -c '<->'", PCAPS, capture, kind);
}

static long
tshark_packets(const char *capture, const char *filter)
{
	return tu_cmd_number("tshark -r %s/%s -Y %s 2>/dev/null | wc -l", PCAPS, capture, filter);
}

/* Names a segment of sensor/iface 0 after its first record; keeps the relative path in rel. */
struct segment_name {
	const char *sensor;
	uint64_t seq;
	char *rel;
	size_t rlen;
};

static const char *
segment_name(void *arg, uint64_t first_ns)
{
	struct segment_name *s = arg;

	snprintf(s->rel, s->rlen,
		"sensors/%s/segments/%020" PRIu64 "-0000000000000001-%" PRIu64 ".0-eth0.pcap", s->sensor,
		first_ns, s->seq);
	return at(s->rel);
}

/*
 * Copies records [skip, skip + max) of a capture into a segment of sensor/iface 0
 * (nanosecond pcap, as the receiver writes) named after its first record. Returns the
 * records written; the relative path goes to rel.
 */
static uint64_t
copy_segment(const char *sensor, const char *capture, uint64_t seq, uint64_t skip, uint64_t max, char *rel,
	size_t rlen)
{
	char p[512];
	struct segment_name s = { .sensor = sensor, .seq = seq, .rel = rel, .rlen = rlen };

	snprintf(p, sizeof(p), "sensors/%s/segments", sensor);
	assert_int_equal(fsu_mkdirs(at(p), 0755), 0);
	return tu_copy_capture(capture, skip, max, 262144, segment_name, &s);
}

/* s1: DNS (2005) then MySQL (2021) on eth0; s2: the echo capture cut in two segments. */
static int
setup(void **state)
{
	char rel[512];
	struct index_reconcile_report rep = { 0 };
	uint64_t total = (uint64_t)tu_cmd_number("capinfos -T -r -c %s/%s | cut -f2", PCAPS, ECHO);

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	copy_segment("s1", DNS, 1, 0, UINT64_MAX, rel, sizeof(rel));
	copy_segment("s1", MYSQL, 2, 0, UINT64_MAX, rel, sizeof(rel));
	echo_a_n = copy_segment("s2", ECHO, 1, 0, total / 2, echo_a, sizeof(echo_a));
	echo_b_n = copy_segment("s2", ECHO, 2, total / 2, UINT64_MAX, echo_b, sizeof(echo_b));
	assert_int_equal(echo_a_n + echo_b_n, total);
	tu_reconcile(dir, &rep);
	assert_int_equal(rep.added, 4);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return fsu_rmtree(dir);
}

static int64_t
q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t
q_intf(sqlite3 *db, const char *fmt, ...)
{
	char sql[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return q_int(db, sql);
}

static sqlite3 *
db_open(void)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open_v2(at("index.db"), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* Reads a position file: returns the record count, and the records with a
 * connection in *in_conns. */
static uint64_t
read_pos(const char *seg_rel, uint64_t *in_conns)
{
	char pos[1024];
	uint8_t *buf;
	struct stat st;
	uint64_t n, k = 0;
	int fd;

	assert_int_equal(posfile_path(seg_rel, pos, sizeof(pos)), 0);
	fd = open(at(pos), O_RDONLY);
	if (fd < 0)
		fail_msg("%s: %s", pos, strerror(errno));
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	assert_memory_equal(buf, POSFILE_MAGIC, 8);
	n = 0;
	for (int i = 0; i < 8; i++)
		n |= (uint64_t)buf[8 + i] << (8 * i);
	assert_int_equal((uint64_t)st.st_size, 16 + 8 * n);
	for (uint64_t r = 0; r < n; r++) {
		uint64_t id = 0;
		for (int i = 0; i < 8; i++)
			id |= (uint64_t)buf[16 + 8 * r + i] << (8 * i);
		k += id != 0;
	}
	free(buf);
	*in_conns = k;
	return n;
}

static void
test_dissect_matches_tshark(void **state)
{
	char err[256] = "";
	struct dissect *d = dissect_open(dir, NULL, err, sizeof(err));
	const struct dissect_stats *s;
	sqlite3 *db;
	uint64_t total_records, in_a, in_b;
	long echo_tcp = tshark_convs(ECHO, "tcp"), mysql_tcp = tshark_convs(MYSQL, "tcp");
	long dns_udp = tshark_convs(DNS, "udp"), echo_tcp_packets = tshark_packets(ECHO, "tcp");

	(void)state;
	if (d == NULL)
		fail_msg("dissect_open: %s", err);
	assert_int_equal(echo_tcp, 500);
	assert_int_equal(mysql_tcp, 6);
	assert_int_equal(dns_udp, 8);
	/* Two segments per call: everything in two calls, then nothing. */
	assert_int_equal(dissect_pending(d, 2), 2);
	assert_int_equal(dissect_pending(d, 2), 2);
	assert_int_equal(dissect_pending(d, 2), 0);
	s = dissect_stats(d);
	total_records = (uint64_t)tu_cmd_number(
		"capinfos -T -r -c %s/%s %s/%s %s/%s | awk '{s+=$2} END {print s}'", PCAPS, ECHO, PCAPS,
		MYSQL, PCAPS, DNS);
	assert_int_equal(s->segments, 4);
	assert_int_equal(s->packets, total_records);
	assert_int_equal(s->failed, 0);
	dissect_close(d, true);

	db = db_open();
	/* Connections per sensor and protocol: what tshark calls conversations. The echo
	 * connections cross the cut between s2's two segments and are still one each. */
	assert_int_equal(
		q_int(db, "SELECT count(*) FROM conns WHERE sensor = 's2' AND proto = 'tcp'"), echo_tcp);
	assert_int_equal(
		q_int(db, "SELECT count(*) FROM conns WHERE sensor = 's1' AND proto = 'tcp'"), mysql_tcp);
	/* UDP has no connection to end: a quiet flow may be cut by the timeout, so count
	 * the distinct endpoint pairs. */
	assert_int_equal(
		q_int(db,
			"SELECT count(*) FROM (SELECT DISTINCT client, client_port, server, server_port "
			"FROM conns WHERE sensor = 's1' AND proto = 'udp')"),
		dns_udp);
	/* Every TCP packet of the echo capture is in exactly one connection row. */
	assert_int_equal(
		q_int(db, "SELECT sum(c_pkts + s_pkts) FROM conns WHERE sensor = 's2'"), echo_tcp_packets);
	assert_int_equal(
		q_int(db, "SELECT sum(c_pkts + s_pkts) FROM conns WHERE sensor = 's1' AND proto = 'tcp'"),
		tshark_packets(MYSQL, "tcp"));
	assert_int_equal(
		q_int(db, "SELECT sum(c_pkts + s_pkts) FROM conns WHERE sensor = 's1' AND proto = 'udp'"),
		tshark_packets(DNS, "udp"));
	/* The MySQL capture starts mid-stream (no handshakes): all six are marked so. */
	assert_int_equal(
		q_int(db,
			"SELECT count(*) FROM conns WHERE sensor = 's1' AND proto = 'tcp' AND midstream = 1"),
		6);
	/* Segments: all done; connections that span the cut are linked to both halves. */
	assert_int_equal(q_int(db, "SELECT count(*) FROM l4_done"), 4);
	assert_int_equal(q_int(db, "SELECT count(*) FROM l4_failed"), 0);
	assert_true(q_int(db,
			    "SELECT count(*) FROM (SELECT conn_id FROM conn_segs GROUP BY conn_id "
			    "HAVING count(*) = 2)") > 0);
	assert_int_equal(q_int(db,
				 "SELECT count(*) FROM conns c WHERE NOT EXISTS "
				 "(SELECT 1 FROM conn_segs s WHERE s.conn_id = c.conn_id)"),
		0);
	/* Per segment, the packets linked to connections are the records its position file
	 * names a connection for, and l4_done says the same. */
	assert_int_equal(read_pos(echo_a, &in_a), echo_a_n);
	assert_int_equal(read_pos(echo_b, &in_b), echo_b_n);
	assert_int_equal(in_a + in_b, echo_tcp_packets);
	assert_int_equal(
		q_intf(db,
			"SELECT sum(cs.packets) FROM conn_segs cs JOIN segments g ON g.id = cs.seg_id "
			"WHERE g.path = '%s'",
			echo_a),
		in_a);
	assert_int_equal(
		q_intf(db,
			"SELECT in_conns FROM l4_done JOIN segments g ON g.id = seg_id WHERE g.path = '%s'",
			echo_b),
		in_b);
	/* Connection ids are unique and numbered from 1 in order of first sight. */
	assert_int_equal(q_int(db, "SELECT min(conn_id) FROM conns"), 1);
	assert_int_equal(q_int(db, "SELECT count(DISTINCT conn_id) FROM conns"),
		q_int(db, "SELECT count(*) FROM conns"));
	/* finish = true ended every connection still tracked. */
	assert_int_equal(q_int(db, "SELECT count(*) FROM conns WHERE ended IS NULL"), 0);
	sqlite3_close(db);
}

static void
test_reindex_same_rows(void **state)
{
	char err[256] = "";
	struct dissect *d;
	sqlite3 *db = db_open();
	int64_t before = q_int(db, "SELECT count(*) FROM conns");
	int64_t sum_before = q_int(db, "SELECT sum(conn_id * (c_pkts + 3 * s_pkts)) FROM conns");
	int64_t pkts_before = q_int(db, "SELECT sum(c_pkts + s_pkts) FROM conns");

	(void)state;
	sqlite3_close(db);
	d = dissect_open(dir, NULL, err, sizeof(err));
	assert_non_null(d);
	/* Nothing pending after a reopen. */
	assert_int_equal(dissect_pending(d, 10), 0);
	/* All of s2, then everything: the rows and their ids come back the same, never a
	 * packet counted twice. */
	assert_int_equal(dissect_reindex(d, "s2", 0, INT64_MAX), 2);
	assert_int_equal(dissect_reindex(d, NULL, 0, INT64_MAX), 4);
	dissect_close(d, true);
	db = db_open();
	assert_int_equal(q_int(db, "SELECT count(*) FROM conns"), before);
	assert_int_equal(q_int(db, "SELECT sum(c_pkts + s_pkts) FROM conns"), pkts_before);
	assert_int_equal(q_int(db, "SELECT sum(conn_id * (c_pkts + 3 * s_pkts)) FROM conns"), sum_before);
	sqlite3_close(db);
}

static void
test_restart_marks_open(void **state)
{
	char err[256] = "";
	struct dissect *d = dissect_open(dir, NULL, err, sizeof(err));
	sqlite3 *db;
	int64_t open_rows, total;

	(void)state;
	assert_non_null(d);
	/* Rebuilt, then closed as a receiver that stops does: connections still open stay
	 * open in the index. */
	assert_int_equal(dissect_reindex(d, NULL, 0, INT64_MAX), 4);
	dissect_close(d, false);
	db = db_open();
	open_rows = q_int(db, "SELECT count(*) FROM conns WHERE ended IS NULL");
	total = q_int(db, "SELECT count(*) FROM conns");
	sqlite3_close(db);
	/* The MySQL connections never end in their capture. */
	assert_true(open_rows >= 6);
	/* The next start marks them, and only them. */
	d = dissect_open(dir, NULL, err, sizeof(err));
	assert_non_null(d);
	assert_int_equal(dissect_mark_open_ended(d, "receiver stopped"), 0);
	dissect_close(d, false);
	db = db_open();
	assert_int_equal(q_int(db, "SELECT count(*) FROM conns WHERE ended IS NULL"), 0);
	assert_int_equal(q_int(db, "SELECT count(*) FROM conns WHERE ended = 'receiver stopped'"), open_rows);
	assert_int_equal(q_int(db, "SELECT count(*) FROM conns"), total);
	sqlite3_close(db);
}

static void
test_open_errors(void **state)
{
	char err[256] = "";

	(void)state;
	/* A repository that does not exist: an error naming it, nothing created. */
	assert_null(dissect_open(at("nope/deeper"), NULL, err, sizeof(err)));
	assert_true(err[0] != '\0');
	assert_int_equal(access(at("nope"), F_OK), -1);
	/* NULL is accepted by close. */
	dissect_close(NULL, true);
}

/* The CPU pressure text the worker decides on: the "some" line's total only. */
static void
test_psi_some_total(void **state)
{
	(void)state;
	assert_int_equal(dissect_psi_some_total("some avg10=48.72 avg60=26.83 avg300=8.59 total=4041037887\n"
						"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
		4041037887);
	assert_int_equal(dissect_psi_some_total("some avg10=0.00 avg60=0.00 avg300=0.00 total=0"), 0);
	/* No total on the "some" line: the "full" line's must not be taken. */
	assert_int_equal(dissect_psi_some_total("some avg10=0.00\nfull avg10=0.00 total=7\n"), -1);
	assert_int_equal(dissect_psi_some_total("full avg10=0.00 total=7\n"), -1);
	assert_int_equal(dissect_psi_some_total("some avg10=1 total=\n"), -1);
	assert_int_equal(dissect_psi_some_total("some avg10=1 total=-5\n"), -1);
	assert_int_equal(dissect_psi_some_total("some avg10=1 total=12x\n"), -1);
	assert_int_equal(dissect_psi_some_total("some avg10=1 total=99999999999999999999999\n"), -1);
	assert_int_equal(dissect_psi_some_total(""), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dissect_matches_tshark),
		cmocka_unit_test(test_reindex_same_rows),
		cmocka_unit_test(test_restart_marks_open),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_psi_some_total),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
