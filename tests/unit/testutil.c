/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers shared by the cmocka unit tests; contracts in testutil.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "receiver/repo/index.h"
#include "shared/fsutil.h"
#include "shared/pcapfile.h"
#include "tests/unit/testutil.h"

char *
tu_path(const char *dir, const char *rel)
{
	static char buf[TU_PATH_SLOTS][2 * PATH_MAX];
	static unsigned k;
	char *p = buf[k++ % TU_PATH_SLOTS];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, rel);
	return p;
}

void
tu_put(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(fsu_write_all(fd, data, len), 0);
	close(fd);
}

uint8_t *
tu_slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

long
tu_vcmd_number(int *status, const char *fmt, va_list ap)
{
	char cmd[2048];
	FILE *p;
	long v = -1;
	int st;

	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%ld", &v), 1);
	st = pclose(p);
	if (status != NULL)
		*status = st;
	return v;
}

long
tu_cmd_number(const char *fmt, ...)
{
	va_list ap;
	long v;

	va_start(ap, fmt);
	v = tu_vcmd_number(NULL, fmt, ap);
	va_end(ap);
	return v;
}

int
tu_certs(const char *dir, const char *sensor)
{
	char cmd[4096];
	int n;

	n = snprintf(cmd, sizeof(cmd),
		"scripts/pcapline-certs %s ca >/dev/null && "
		"scripts/pcapline-certs %s receiver 127.0.0.1 >/dev/null",
		dir, dir);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	if (sensor != NULL) {
		int m = snprintf(cmd + n, sizeof(cmd) - (size_t)n,
			" && scripts/pcapline-certs %s sensor %s >/dev/null", dir, sensor);

		if (m < 0 || (size_t)m >= sizeof(cmd) - (size_t)n)
			return -1;
	}
	return system(cmd) == 0 ? 0 : -1;
}

char tu_certs_dir[] = "/tmp/pcapline-test-certs-XXXXXX";

int
tu_certs_group_setup(void **state)
{
	(void)state;
	if (mkdtemp(tu_certs_dir) == NULL)
		return -1;
	return tu_certs(tu_certs_dir, "s1");
}

int
tu_certs_group_teardown(void **state)
{
	(void)state;
	return fsu_rmtree(tu_certs_dir);
}

uint64_t
tu_copy_capture(
	const char *capture, uint64_t skip, uint64_t max, uint32_t snaplen, tu_name_fn *name, void *arg)
{
	char p[1024];
	struct pcapr *r;
	struct pcapf_rec rec;
	struct pcapw *w = NULL;
	uint64_t i = 0, n = 0;
	int rc = 0, fd = -1;

	snprintf(p, sizeof(p), "tests/data/pcaps/%s", capture);
	r = pcapr_open(p, &rc);
	assert_non_null(r);
	while (n < max && (rc = pcapr_next(r, &rec)) == 1) {
		if (i++ < skip)
			continue;
		if (w == NULL) {
			fd = open(name(arg, rec.ts_ns), O_WRONLY | O_CREAT | O_EXCL, 0644);
			assert_true(fd >= 0);
			w = pcapw_new(fd, pcapr_iface(r, 0)->linktype,
				snaplen != 0 ? snaplen : pcapr_iface(r, 0)->snaplen);
			assert_non_null(w);
			assert_int_equal(pcapw_header(w), 0);
		}
		assert_int_equal(pcapw_write(w, rec.ts_ns, rec.data, rec.caplen, rec.origlen), 0);
		n++;
	}
	/* Stopping at max leaves rc at 1 (a record was read); only a negative rc is an error. */
	assert_true(rc >= 0);
	if (w != NULL) {
		assert_int_equal(pcapw_free(w), 0);
		close(fd);
	}
	pcapr_close(r);
	return n;
}

uint64_t
tu_each_record(const char *dir, void (*each)(const struct pcapf_rec *rec, void *arg), void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t n = 0;

	/* A receiver that stored nothing may not have made the directory: no records. */
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		struct pcapr *rd;
		struct pcapf_rec rec;
		int rc = 0;

		if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 5, ".pcap") != 0)
			continue;
		rd = pcapr_open(tu_path(dir, e->d_name), &rc);
		assert_non_null(rd);
		while ((rc = pcapr_next(rd, &rec)) == 1) {
			each(&rec, arg);
			n++;
		}
		assert_int_equal(rc, 0);
		pcapr_close(rd);
	}
	closedir(d);
	return n;
}

uint16_t
tu_loopback_port(bool newest)
{
	for (int i = 3; i < 1024; i++) {
		int fd = newest ? 1026 - i : i;
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		int acc = 0;
		socklen_t alen = sizeof(acc);

		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) != 0 || !acc)
			continue;
		if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
			sa.sin_addr.s_addr == htonl(INADDR_LOOPBACK))
			return ntohs(sa.sin_port);
	}
	fail_msg("no listening socket on 127.0.0.1");
	return 0;
}

void
tu_reconcile(const char *dir, struct index_reconcile_report *rep)
{
	char err[256] = "";
	struct index *ix = index_open(dir, err, sizeof(err));

	if (ix == NULL)
		fail_msg("index_open: %s", err);
	assert_int_equal(index_reconcile(ix, rep), 0);
	index_close(ix);
}
