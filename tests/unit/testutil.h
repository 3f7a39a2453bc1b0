/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Helpers shared by the cmocka unit tests (prefix tu_): paths under a test's temporary
 * directory, writing and reading whole files, running a shell command for a number
 * (tshark, capinfos) and making TLS certificates with scripts/pcapline-certs.
 * Functions that can only fail through the test's environment fail the running cmocka
 * test themselves (cmocka asserts), so callers need not check them; those meant for
 * group setups, where an assert cannot be used, return 0 or -1 instead.
 * Tests run from the repository root (scripts/ and tests/data/pcaps are relative).
 */
#ifndef PCAPLINE_TESTS_UNIT_TESTUTIL_H
#define PCAPLINE_TESTS_UNIT_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/*
 * "dir/rel" in one of TU_PATH_SLOTS static buffers used in turn, so up to that many
 * results may be alive at once (e.g. both arguments of a rename). Not thread-safe.
 */
#define TU_PATH_SLOTS 8
char *tu_path(const char *dir, const char *rel);

/* Creates or truncates path (mode 0644) and writes the len bytes of data to it. */
void tu_put(const char *path, const void *data, size_t len);

/*
 * The whole content of path in a malloc'ed buffer with one spare byte after the data
 * (not set: callers add their own terminator), its size in *len. The caller frees.
 */
uint8_t *tu_slurp(const char *path, size_t *len);

/*
 * Runs the shell command printf(fmt, ...) and returns the first number it prints
 * (asserting there is one). The command's exit status is not checked.
 */
long tu_cmd_number(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* As tu_cmd_number, storing the pclose() status in *status when status is not NULL. */
long tu_vcmd_number(int *status, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * Makes in the existing directory dir, with scripts/pcapline-certs, a CA, a receiver
 * certificate for 127.0.0.1 and, unless sensor is NULL, a sensor certificate with that
 * name. Returns 0, or -1 when a step failed (its output is discarded).
 */
int tu_certs(const char *dir, const char *sensor);

#endif
