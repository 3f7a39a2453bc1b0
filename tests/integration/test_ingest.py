# SPDX-License-Identifier: BSD-2-Clause
"""The ingest loop never waits on another writer of index.db.

While a sensor replays a capture that fills some 30 segments, another process (here the
test, standing in for the dissection path or a `pcapline reindex`) holds a write
transaction on index.db (BEGIN IMMEDIATE). Raw storage and ACKs must go on at full
speed: the sensor gets every batch acknowledged and exits while the lock is still held,
the segments are in place, and the index rows that could not be written meanwhile are
written once the lock is gone, none lost. stats.json shows it: `index_wait_us_max`
stays near zero (the write is deferred, not waited for), `index_busy_deferred` counts
the deferrals, and `ack_latency_us` has one sample per ACK.

Before the fix every segment close waited up to 5 s for the lock inside the event loop
that serves every sensor: 30 closes meant minutes without an ACK.
"""
import json
import re
import sqlite3
import time
from pathlib import Path

import netns as N
import test_replay as replay
from test_store import T0, ether_frame, key, replay_file, start_receiver, stored_by_ifindex, write_pcapng

N_RECS = 3000          # ~3.7 MB of 1200-byte frames: about 30 segments
SEG_SIZE = "65536"     # a segment close (and an index row) every ~50 records
REPLAY_TIMEOUT = 30    # s: the old code needed 5 s per close: 150 s


def test_index_locked_by_another_writer_does_not_stall_storage(binaries, certs, procs, tmp_path):
    sensor_bin, receiver_bin = binaries
    capture = tmp_path / "src.pcapng"
    write_pcapng(capture, [(1, "eth0")], [(0, T0 + i * 1000, ether_frame(i, 1200)) for i in range(N_RECS)])
    src = replay.read_capture(capture)
    assert len(src.recs) == N_RECS

    data_dir = tmp_path / "data"
    rx, port = start_receiver(procs, certs, receiver_bin, data_dir, tmp_path / "receiver.log",
                              env={"PCAPLINE_STORAGE_SEGMENT_SIZE": SEG_SIZE, "PCAPLINE_STORAGE_FSYNC": "batch",
                                   "PCAPLINE_L4_ENABLED": "false"})
    N.wait_for(lambda: (data_dir / "index.db").exists(), 10, "index.db created")
    db = sqlite3.connect(data_dir / "index.db", timeout=10, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    locked_at = time.monotonic()
    try:
        sx = replay_file(procs, certs, sensor_bin, port, capture, tmp_path / "sensor.log", timeout=REPLAY_TIMEOUT,
                         env={"PCAPLINE_BATCH_MAX_BYTES": SEG_SIZE})
        took = time.monotonic() - locked_at
        assert re.search(rf"acknowledged (\d+) batches / {N_RECS} packets, pending 0", sx.text()), sx.text()
        seg_dir = data_dir / "sensors" / "s1" / "segments"
        # The session's end (segments closed, stats.json written) is the worker's too.
        N.wait_for(lambda: not any(p.name.startswith(".open-") for p in seg_dir.iterdir()), 10,
                   "segments closed after the session")
        closed = sorted(p.name for p in seg_dir.iterdir())
        assert len(closed) >= 25, closed
        # Still locked: nothing of the above waited for the index.
        assert db.in_transaction
        st = json.loads((data_dir / "sensors" / "s1" / "stats.json").read_text())
        assert st["stored"]["packets"] == N_RECS, st
        assert st["index_busy_deferred"] >= len(closed) - 1, st
        assert st["index_wait_us_max"] < 200_000, st
        lat = st["ack_latency_us"]
        assert lat["count"] == st["stored"]["batches"] and lat["p50"] <= lat["p99"] <= lat["max"], st
        assert lat["max"] < 3_000_000, st  # the old loop stalled 5 s per segment close
        glob = json.loads((data_dir / "stats.json").read_text())
        assert glob["ack_latency_us"]["count"] == lat["count"] and glob["index_wait_us_max"] < 200_000, glob
        print(f"replay of {N_RECS} records, {len(closed)} segments, under the lock: {took:.1f} s; "
              f"ack latency {lat}; deferred index writes {st['index_busy_deferred']}")
    finally:
        db.execute("ROLLBACK")
        db.close()

    # Deferred rows are written once the lock is gone (the receiver retries every second).
    def indexed():
        with sqlite3.connect(data_dir / "index.db", timeout=10) as c:
            return c.execute("SELECT count(*), coalesce(sum(packets), 0) FROM segments WHERE sensor = 's1'").fetchone()
    N.wait_for(lambda: indexed() == (len(closed), N_RECS), 15, "every segment indexed after the lock")
    assert rx.stop() == 0, rx.text()
    log = rx.text()
    assert "database is locked" not in log, log
    got = stored_by_ifindex(seg_dir)
    assert [key(r) for r in got[0]] == [key(r) for r in src.recs], f"{len(got[0])} stored of {N_RECS}"
