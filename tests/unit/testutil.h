/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Helpers shared by the cmocka unit tests (prefix tu_): paths under a test's temporary
 * directory, writing and reading whole files, running a shell command for a number
 * (tshark, capinfos), copying a public capture and making TLS certificates with scripts/pcapline-certs.
 * Functions that can only fail through the test's environment fail the running cmocka
 * test themselves (cmocka asserts), so callers need not check them; those meant for
 * group setups, where an assert cannot be used, return 0 or -1 instead.
 * Tests run from the repository root (scripts/ and tests/data/pcaps are relative).
 */
#ifndef PCAPLINE_TESTS_UNIT_TESTUTIL_H
#define PCAPLINE_TESTS_UNIT_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
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

/*
 * cmocka group fixtures for tests that need one set of certificates: the setup makes a
 * temporary directory, tu_certs_dir, holding tu_certs(tu_certs_dir, "s1") (ca.crt,
 * receiver.crt/.key, s1.crt/.key); the teardown removes it. Return 0 or -1.
 */
extern char tu_certs_dir[];
int tu_certs_group_setup(void **state);
int tu_certs_group_teardown(void **state);

/* Names the file tu_copy_capture creates, from the timestamp of its first record. */
typedef const char *tu_name_fn(void *arg, uint64_t first_ns);

/*
 * Copies records skip .. skip+max-1 of tests/data/pcaps/<capture> into a new pcap file
 * (O_EXCL, mode 0644) at name(arg, first copied record's time), with the capture's link
 * type and snaplen (the capture's when 0). Returns the number of records copied; asserts
 * that the capture read without error and, when something was copied, that the file
 * was written whole. Nothing is created when no record is copied.
 */
uint64_t tu_copy_capture(
	const char *capture, uint64_t skip, uint64_t max, uint32_t snaplen, tu_name_fn *name, void *arg);

/*
 * The port of a listening IPv4 socket on 127.0.0.1 of this process (a server given port
 * 0), scanning descriptors 3..1023 upwards, or downwards when newest (the highest
 * descriptor is the socket created last). Fails the test when there is none.
 */
uint16_t tu_loopback_port(bool newest);

struct index_reconcile_report;

/*
 * Opens the index of the repository at dir (failing the test with index_open's message
 * when it cannot), reconciles it with the files, asserting that succeeds, into *rep,
 * and closes it.
 */
void tu_reconcile(const char *dir, struct index_reconcile_report *rep);

struct pcapf_rec;

/*
 * Reads every pcap file in dir whose name ends in ".pcap" (not hidden, as the shell
 * glob dir/\*.pcap), in no particular order, calling each(rec, arg) for every record;
 * asserts that each file reads without error. Returns the number of records.
 */
uint64_t tu_each_record(const char *dir, void (*each)(const struct pcapf_rec *rec, void *arg), void *arg);

#endif
