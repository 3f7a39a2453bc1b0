/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers shared by the cmocka unit tests; contracts in testutil.h. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/fsutil.h"
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
