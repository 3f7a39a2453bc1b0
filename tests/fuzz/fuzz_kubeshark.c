/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the Kubeshark history reader (namehist_from_kubeshark() in
 * receiver/repo/namehist.c, which `pcapline import` runs on every
 * name_resolution_history.json of an archive): the input is that file.
 *
 * Besides memory errors it checks what import relies on: a file refused says why, one
 * accepted converts into names.jsonl lines that the names reader takes back one for one,
 * in time order, each with a canonical address and src "static", and the number of
 * lines reported is the number written. Seeds (corpus/kubeshark) are Kubeshark's shape,
 * empty maps, and each kind of wrong shape.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "receiver/repo/namehist.h"
#include "receiver/repo/names.h"
#include "shared/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_kubeshark: %s\n", what);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static struct names_line l;
	char err[256] = "", *out = NULL, canon[NAMES_ADDR_LEN];
	size_t outlen = 0, lines = 0, seen = 0;
	uint64_t last_t = 0;
	FILE *f, *o;

	if (path[0] == '\0') {
		log_set_level(LOG_LVL_ERROR);
		snprintf(path, sizeof(path), "/tmp/fuzz-kubeshark-%ld.json", (long)getpid());
	}
	f = fopen(path, "w");
	must(f != NULL, "cannot write the input");
	must(fwrite(data, 1, size, f) == size, "short write");
	fclose(f);
	/* The size bound is part of the reader: one byte below the file refuses it. */
	if (size > 0) {
		o = open_memstream(&out, &outlen);
		must(o != NULL, "open_memstream");
		must(namehist_from_kubeshark(path, size - 1, o, &lines, err, sizeof(err)) != 0 &&
				strstr(err, "larger than") != NULL,
			"a file above the bound accepted");
		fclose(o);
		must(outlen == 0, "a file above the bound converted");
		free(out);
		out = NULL;
		err[0] = '\0';
	}
	o = open_memstream(&out, &outlen);
	must(o != NULL, "open_memstream");
	int rc = namehist_from_kubeshark(path, size, o, &lines, err, sizeof(err));
	fclose(o);
	if (rc != 0) {
		must(err[0] != '\0', "refused without a reason");
		free(out);
		return 0;
	}
	for (char *p = out, *nl; p < out + outlen; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(out + outlen - p));
		must(nl != NULL, "a line without its newline");
		must(names_line_parse(p, (size_t)(nl - p), &l) && !l.cut,
			"a line written does not read back");
		must(l.t % 1000000000ull == 0 && l.t >= last_t, "lines not in time order of whole seconds");
		must(names_addr_parse(l.addr, canon) == 0 && strcmp(canon, l.addr) == 0,
			"an address not canonical");
		must(strcmp(l.src, "static") == 0, "src is not static");
		last_t = l.t;
		seen++;
	}
	must(seen == lines, "lines reported differ from lines written");
	free(out);
	return 0;
}
