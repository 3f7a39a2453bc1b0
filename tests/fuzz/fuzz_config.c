/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the YAML configuration loader (shared/config.c). It needs only
 * config.c and libyaml. Besides the sanitizers, it checks the loader's promises that
 * an error is exactly one non-empty line and that cfg_dump and cfg_free work on
 * whatever a failed or successful load left behind.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/config.h"

struct fcfg {
	char *name;
	char *filter;
	int64_t snaplen;
	int64_t offset;
	bool promisc;
	uint64_t buffer;
	uint64_t max_bytes;
	uint64_t timeout;
	uint64_t linger;
	struct cfg_strlist ifaces;
	int mode;
	char *deep;
};

static const char *const modes[] = { "fast", "safe", "auto", NULL };

#define F(m) offsetof(struct fcfg, m)
static const struct cfg_key schema[] = {
	{ "name", CFG_STR, F(name), 0, 0, NULL, "name" },
	{ "capture.filter", CFG_STR, F(filter), 0, 0, NULL, "filter" },
	{ "capture.snaplen", CFG_INT, F(snaplen), 1, 262144, NULL, "snaplen" },
	{ "capture.promisc", CFG_BOOL, F(promisc), 0, 0, NULL, "promisc" },
	{ "capture.buffer", CFG_SIZE, F(buffer), 4096, 1 << 30, NULL, "buffer" },
	{ "capture.timeout", CFG_DURATION, F(timeout), 1, 3600000, NULL, "timeout" },
	{ "capture.interfaces", CFG_STRLIST, F(ifaces), 0, 0, NULL, "interfaces" },
	{ "spool.max_bytes", CFG_SIZE, F(max_bytes), 0, 0, NULL, "max bytes" },
	{ "spool.linger", CFG_DURATION, F(linger), 0, 0, NULL, "linger" },
	{ "spool.mode", CFG_ENUM, F(mode), 0, 0, modes, "mode" },
	{ "tune.offset", CFG_INT, F(offset), 0, 0, NULL, "offset" },
	{ "a.b.c.d.e.f.g.h", CFG_STR, F(deep), 0, 0, NULL, "deep" },
	{ NULL, 0, 0, 0, 0, NULL, NULL },
};
#undef F

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct fcfg c;
	char err[CFG_ERRLEN];

	if (sink == NULL && (sink = fopen("/dev/null", "w")) == NULL)
		abort();
	/* Heap defaults, as the daemons use, so that replacing them is exercised too. */
	memset(&c, 0, sizeof(c));
	c.name = strdup("default");
	c.ifaces.v = malloc(sizeof(char *));
	c.ifaces.v[0] = strdup("any");
	c.ifaces.n = 1;
	err[0] = '\0';
	if (cfg_load_mem(schema, &c, "fuzz.yaml", (const char *)data, size, err, sizeof(err)) != 0) {
		if (err[0] == '\0' || strchr(err, '\n') != NULL)
			abort();
	} else if (err[0] != '\0') {
		abort();
	}
	cfg_dump(schema, &c, sink);
	cfg_free(schema, &c);
	return 0;
}
