/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target for the capture-file reader: open the input as pcap or pcapng,
 * walk every record and read every captured byte, so that any length the reader
 * trusted wrongly shows up as an ASan report rather than as a wrong sum.
 */
#include <stddef.h>
#include <stdint.h>

#include "shared/pcapfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Kept visible so that the compiler cannot drop the loads that feed it. */
volatile uint64_t fuzz_pcapfile_sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pcapf_rec rec;
	struct pcapr *r;
	uint64_t sum = 0;
	int err, rc;

	r = pcapr_open_mem(data, size, &err);
	if (r == NULL)
		return 0;
	for (size_t i = 0; i < pcapr_iface_count(r); i++) {
		const struct pcapf_iface *ifc = pcapr_iface(r, i);
		sum += ifc->linktype + ifc->snaplen;
		for (const char *c = ifc->name; *c != '\0'; c++)
			sum += (uint8_t)*c;
	}
	while ((rc = pcapr_next(r, &rec)) == 1) {
		if (rec.iface >= pcapr_iface_count(r) || rec.caplen > PCAPF_MAX_CAPLEN)
			__builtin_trap();
		sum += rec.ts_ns + rec.origlen;
		for (uint32_t i = 0; i < rec.caplen; i++)
			sum += rec.data[i];
	}
	/* An error, once returned, must stay. */
	if (rc < 0 && pcapr_next(r, &rec) != rc)
		__builtin_trap();
	if (pcapr_offset(r) > size)
		__builtin_trap();
	sum += pcapr_offset(r);
	fuzz_pcapfile_sink = sum;
	pcapr_close(r);
	return 0;
}
