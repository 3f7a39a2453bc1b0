/* SPDX-License-Identifier: BSD-2-Clause */
/* The live outputs' metric families: see outstats.h. */
#include "receiver/outputs/outstats.h"

#include <inttypes.h>
#include <stdio.h>

#include "receiver/outputs/live.h"
#include "receiver/outputs/rotate.h"

/* One counter family with a sample per drop reason. */
static void
drops_family(struct promtext *b, const char *name, const char *help, const uint64_t *drops)
{
	promtext_family(b, name, "counter", help);
	for (int r = 0; r < LIVE_DROP_N; r++)
		promtext_sample(b, name, drops[r], "reason", live_drop_name(r), NULL);
}

void
outstats_render(void *arg, struct promtext *b)
{
	struct live_consumer_stats each[LIVE_MAX_CONSUMERS];
	struct live_stats st = { .each = each, .max = LIVE_MAX_CONSUMERS };
	struct rotate_stats rs;
	char id[24];

	(void)arg;
	live_stats_get(&st);
	promtext_single(b, "pcapline_live_consumers", "gauge",
		"Live-stream consumers now (GET /api/v1/live, PCAP-over-IP, rotated files).", st.consumers);
	promtext_single(b, "pcapline_live_consumers_total", "counter", "Live-stream consumers since start.",
		st.consumers_total);
	promtext_single(b, "pcapline_live_cut_off_total", "counter",
		"Consumers cut off for reading nothing for outputs.live.stall_timeout.", st.cut_off);
	promtext_single(b, "pcapline_live_refused_total", "counter",
		"Consumers refused over outputs.live.max_consumers.", st.refused);
	promtext_single(b, "pcapline_live_packets_total", "counter",
		"Packets delivered into consumers' queues, all consumers since start.", st.packets);
	drops_family(b, "pcapline_live_dropped_total",
		"Packets a consumer did not get, all consumers since start (gone ones included), by reason.",
		st.drops);

	/* Per consumer of now: the id tells two consumers of the same peer apart. */
	promtext_family(
		b, "pcapline_live_sent_packets_total", "counter", "Packets delivered to this consumer.");
	for (size_t i = 0; i < st.n; i++) {
		snprintf(id, sizeof(id), "%" PRIu64, each[i].id);
		promtext_sample(b, "pcapline_live_sent_packets_total", each[i].packets, "consumer", id,
			"peer", each[i].name, NULL);
	}
	promtext_family(b, "pcapline_live_dropped_packets_total", "counter",
		"Packets this consumer did not get, by reason.");
	for (size_t i = 0; i < st.n; i++) {
		snprintf(id, sizeof(id), "%" PRIu64, each[i].id);
		for (int r = 0; r < LIVE_DROP_N; r++)
			promtext_sample(b, "pcapline_live_dropped_packets_total", each[i].drops[r],
				"consumer", id, "peer", each[i].name, "reason", live_drop_name(r), NULL);
	}

	if (!rotate_stats_current(&rs))
		return;
	promtext_single(b, "pcapline_files_written_total", "counter",
		"Rotated pcap files renamed into place (outputs.files).", rs.files);
	promtext_single(b, "pcapline_files_packets_total", "counter", "Packets in those files.", rs.packets);
	promtext_single(b, "pcapline_files_deleted_total", "counter",
		"Files deleted by outputs.files.max_files / max_size.", rs.deleted_files);
	promtext_single(b, "pcapline_files_write_errors_total", "counter",
		"Failed writes, fsyncs or renames of a file (it is removed).", rs.write_errors);
	promtext_single(b, "pcapline_files_lost_packets_total", "counter",
		"Packets lost with files removed after a write error.", rs.lost_packets);
	drops_family(b, "pcapline_files_dropped_packets_total",
		"Packets the live hub could not queue for the files, by reason.", rs.drops);
}
