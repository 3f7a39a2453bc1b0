# SPDX-License-Identifier: BSD-2-Clause
"""The repository under its bounds: FIFO retention and the SQLite index.

The repository is filled to several times its size bound by replaying real
captures (tests/data/pcaps, in the chronological order of their timestamps, so that
"oldest by newest packet" is also "first sent"); what remains must be exactly the
newest packets, the index must describe exactly the files on disk (row by row,
against an independent pcap reader), and every deletion must be logged and counted
in stats.json and in the index's retention table. Then the same after SIGKILL of
the receiver mid-stream, with the two crash windows the index has (a segment renamed
but not indexed, a file unlinked but its row not yet deleted) forced by hand; then
the age bound, global and per sensor, enforced at segment close and by the 1 s tick;
then the per-sensor size bound with two sensors.
"""
import hashlib
import json
import re
import signal
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest

from conftest import DATA, Proc, free_port, tls_args, wait_listening

KiB, MiB = 1024, 1024 * 1024
SEGMENT = 256 * KiB  # storage.segment_size
BOUND = 1 * MiB      # storage.max_size
BATCH = 64 * KiB     # the sensor's batch.max_bytes: how far a segment can grow past SEGMENT

# Oldest first by their packet timestamps (each file is in time order, and their time
# ranges do not overlap), 4.6 MiB together: more than three times BOUND.
RUNS = [
    "http2-h2c-prior-knowledge-ipv6.pcap",  # 2014
    "mysql-6-conns-port20130.pcap",         # 2021
    "http-1000-requests-one-conn.pcap",     # 2023
    "http-sll2-large-segments.pcap",        # 2025, Linux SLL2, 16 KiB packets
    "redis-large-bulk-loopback.pcap",       # 2026, BSD loopback
]
RETENTION_RE = re.compile(r"retention: (\S+): deleted (\S+) \((\d+) packets, (\d+) bytes\): (size|age) bound")


# --------------------------------------------------------------------------------
# A minimal classic pcap reader and writer (no product code involved).

def read_pcap(path):
    """Returns (linktype, snaplen, [(ts_ns, caplen, origlen, sha256)]); complete records only."""
    b = Path(path).read_bytes()
    magic = b[:4]
    endian, nano = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\x4d\x3c\xb2\xa1": ("<", True),
                    b"\xa1\xb2\xc3\xd4": (">", False), b"\xa1\xb2\x3c\x4d": (">", True)}[magic]
    snaplen, linktype = struct.unpack(endian + "II", b[16:24])
    recs, off = [], 24
    while off + 16 <= len(b):
        sec, frac, cap, orig = struct.unpack(endian + "IIII", b[off:off + 16])
        if off + 16 + cap > len(b):
            break
        data = b[off + 16:off + 16 + cap]
        recs.append((sec * 10**9 + (frac if nano else frac * 1000), cap, orig, hashlib.sha256(data).hexdigest()))
        off += 16 + cap
    return linktype, snaplen, recs


def write_pcap(path, timestamps_ns, size=300, tag=b""):
    """A nanosecond Ethernet pcap with one unique packet per timestamp."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for i, ts in enumerate(timestamps_ns):
        body = (tag + b"%08d" % i).ljust(size, b"x")
        out.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(body), len(body)) + body)
    Path(path).write_bytes(b"".join(out))


# --------------------------------------------------------------------------------
# Helpers.

def start_receiver(receiver, certs, port, datadir, log, env):
    env = {"PCAPLINE_STORAGE_SEGMENT_SIZE": str(SEGMENT), "PCAPLINE_LOG_STATS_INTERVAL": "1s", **env}
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"), log, env=env)
    wait_listening(port)
    return rx


def start_sensor(sensor, certs, port, src, log, who="s1"):
    return Proc([sensor, "-r", src, "-t", f"127.0.0.1:{port}"] + tls_args(certs, who), log,
                env={"PCAPLINE_BATCH_MAX_BYTES": str(BATCH)})


def seg_dir(datadir, who="s1"):
    return Path(datadir) / "sensors" / who / "segments"


def closed_segments(datadir, who="s1"):
    """Closed segment files in time order (their names start with the first timestamp)."""
    return sorted(p for p in seg_dir(datadir, who).glob("*.pcap") if not p.name.startswith("."))


def index_rows(datadir):
    db = sqlite3.connect(f"file:{Path(datadir) / 'index.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return {r["path"]: dict(r) for r in db.execute("SELECT * FROM segments")}, \
            {r["sensor"]: dict(r) for r in db.execute("SELECT * FROM retention")}
    finally:
        db.close()


def check_index_matches_files(datadir):
    """Every closed segment has exactly one row and every row a file, and each row
    says what the file holds. Returns the rows."""
    rows, _ = index_rows(datadir)
    files = {str(p.relative_to(datadir)): p for p in Path(datadir).glob("sensors/*/segments/*.pcap")}
    assert set(rows) == set(files), (sorted(set(rows) - set(files)), sorted(set(files) - set(rows)))
    for rel, p in files.items():
        linktype, snaplen, recs = read_pcap(p)
        r = rows[rel]
        ts = [x[0] for x in recs]
        want = {"sensor": rel.split("/")[1], "linktype": linktype, "snaplen": snaplen, "packets": len(recs),
                "min_ns": min(ts), "max_ns": max(ts), "bytes": p.stat().st_size}
        assert {k: r[k] for k in want} == want, (rel, r, want)
    return rows


def stored_records(datadir, who="s1"):
    recs = []
    for p in closed_segments(datadir, who):
        recs += read_pcap(p)[2]
    return recs


def deletions(*logs):
    """(sensor, path, packets, bytes, why) of every 'retention: ... deleted' line."""
    out = []
    for text in logs:
        out += [(m[1], m[2], int(m[3]), int(m[4]), m[5] + " bound") for m in RETENTION_RE.finditer(text)]
    return out


def stats(datadir, who="s1"):
    return json.loads((Path(datadir) / "sensors" / who / "stats.json").read_text())


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Sampler(threading.Thread):
    """Sums the closed segment files every 20 ms while the receiver works."""

    def __init__(self, datadir):
        super().__init__(daemon=True)
        self.datadir, self.peak, self.samples = datadir, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            total = 0
            for p in Path(self.datadir).glob("sensors/*/segments/*.pcap"):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    pass  # deleted by retention meanwhile
            self.peak = max(self.peak, total)
            self.samples += 1
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.join()


# --------------------------------------------------------------------------------
# Tests.

def test_size_bound_keeps_the_newest(binaries, certs, procs, tmp_path):
    """Fill the repository to more than three times its size bound: only the newest
    data remains, the index matches the files, and the deletions are counted."""
    sensor, receiver = binaries
    inputs = []
    for name in RUNS:
        inputs += read_pcap(DATA / "pcaps" / name)[2]
    in_bytes = sum((DATA / "pcaps" / name).stat().st_size for name in RUNS)
    assert in_bytes > 3 * BOUND
    assert [r[0] for r in inputs] == sorted(r[0] for r in inputs), "inputs must be in time order"

    datadir, port = tmp_path / "data", free_port()
    # Dissection off: while it holds index.db, the ingest path's index rows and retention
    # wait for the next try (up to a second; ingest never waits on dissection), so the
    # peak seen while running would depend on the machine's load. The bound at rest with
    # dissection on is the other tests'.
    rx = start_receiver(receiver, certs, port, datadir, tmp_path / "rx.log",
                        {"PCAPLINE_STORAGE_MAX_SIZE": str(BOUND), "PCAPLINE_L4_ENABLED": "false"})
    procs.append(rx)
    sampler = Sampler(datadir)
    sampler.start()
    for i, name in enumerate(RUNS):
        sx = start_sensor(sensor, certs, port, DATA / "pcaps" / name, tmp_path / f"sx{i}.log")
        procs.append(sx)
        assert sx.wait(60) == 0, sx.text()
    sampler.stop()
    assert rx.stop() == 0, rx.text()
    log = rx.text()

    # Within the bound. At rest every segment is closed and retention has run after
    # the last close, so the bound holds exactly. While running, an observer can catch
    # the instant between a segment's rename into place and retention deleting the
    # oldest one (the same event-loop callback): then the newest segment is on top of
    # the bound, and a segment is at most SEGMENT plus one batch.
    files = closed_segments(datadir)
    total = sum(p.stat().st_size for p in files)
    assert total <= BOUND, total
    assert sampler.samples > 10
    assert sampler.peak <= BOUND + SEGMENT + BATCH, sampler.peak
    assert not [p for p in seg_dir(datadir).iterdir() if p.name.startswith(".open-")]

    # The index describes exactly the files.
    rows = check_index_matches_files(datadir)
    assert len(rows) == len(files) > 1

    # Only the newest packets remain, all of them, each once.
    stored = stored_records(datadir)
    assert 0 < len(stored) < len(inputs)
    assert stored == inputs[-len(stored):]

    # Deleted oldest first, each logged once, and no more than needed: the last
    # segment deleted would not have fitted.
    dels = deletions(log)
    assert dels and all(d[0] == "s1" and d[4] == "size bound" for d in dels), dels
    assert len({d[1] for d in dels}) == len(dels)
    assert not any((datadir / d[1]).exists() for d in dels)
    first_ts = [int(Path(d[1]).name.split("-")[0]) for d in dels]
    assert first_ts == sorted(first_ts), "not deleted oldest first"
    assert total + dels[-1][3] > BOUND

    # Counted: stats.json, the retention table and the log agree with the loss.
    st = stats(datadir)
    _, retention = index_rows(datadir)
    want = {"segments": len(dels), "packets": sum(d[2] for d in dels), "bytes": sum(d[3] for d in dels)}
    assert st["retention"] == want, (st["retention"], want)
    assert want["packets"] == len(inputs) - len(stored)
    assert retention == {"s1": {"sensor": "s1", **want}}
    assert st["stored"]["packets"] == len(inputs)
    assert st["stored"]["segments_closed"] == len(dels) + len(files)
    m = re.findall(r"sensor s1: stored .*retention deleted (\d+) segments / (\d+) packets / (\d+) bytes", log)
    assert m and tuple(map(int, m[-1])) == (want["segments"], want["packets"], want["bytes"]), m


def test_kill9_mid_stream_index_and_files_agree(binaries, certs, procs, tmp_path):
    """SIGKILL the receiver while retention is deleting; force both crash windows of
    the index by hand; restart: the reconcile repairs the index, logs it, and at the
    end the files, the index and the counters all agree and hold exactly the newest
    packets, each once."""
    sensor, receiver = binaries
    runs = ["http-1000-requests-one-conn.pcap", "http-sll2-large-segments.pcap"]  # the second across the crash
    inputs = []
    for name in runs:
        inputs += read_pcap(DATA / "pcaps" / name)[2]
    datadir, port = tmp_path / "data", free_port()
    # 1 MiB/s stored: the 2.6 MB capture takes a few seconds, time to kill mid-stream.
    env = {"PCAPLINE_STORAGE_MAX_SIZE": str(BOUND), "PCAPLINE_LIMITS_SENSOR_RATE": "1M"}
    rx = start_receiver(receiver, certs, port, datadir, tmp_path / "rx1.log", env)
    procs.append(rx)
    sx = start_sensor(sensor, certs, port, DATA / "pcaps" / runs[0], tmp_path / "sx0.log")
    procs.append(sx)
    assert sx.wait(60) == 0, sx.text()
    before = len(deletions(rx.text()))
    sx = start_sensor(sensor, certs, port, DATA / "pcaps" / runs[1], tmp_path / "sx1.log")
    procs.append(sx)
    # Kill once segments of the second run were closed and older ones deleted for
    # them, while the next segment is being written.
    wait_for(lambda: len(deletions(rx.text())) >= before + 2 and any(
        p.name.startswith(".open-") for p in seg_dir(datadir).iterdir()), 30, "retention at work")
    rx.stop(signal.SIGKILL)
    assert rx.p.returncode == -signal.SIGKILL
    log1 = rx.text()

    # Crash window 1: renamed into place, not indexed yet (the newest closed segment).
    # Crash window 2: unlinked by retention, row not yet deleted (the oldest one).
    rows, _ = index_rows(datadir)
    files = closed_segments(datadir)
    assert len(files) >= 2, files
    unindexed, vanished = files[-1], files[0]
    vanished_packets = rows[str(vanished.relative_to(datadir))]["packets"]
    db = sqlite3.connect(datadir / "index.db")
    db.execute("DELETE FROM segments WHERE path = ?", (str(unindexed.relative_to(datadir)),))
    db.commit()
    db.close()
    vanished.unlink()

    rx = start_receiver(receiver, certs, port, datadir, tmp_path / "rx2.log", env)
    procs.append(rx)
    wait_for(lambda: "listening on" in rx.text(), 10, "the receiver to start")
    log2 = rx.text()
    assert f"index: {unindexed.relative_to(datadir)} had no row: added" in log2, log2
    assert f"index: {vanished.relative_to(datadir)} is gone: row removed" in log2, log2
    assert re.search(r"index: reconciled with the files: 1 segment\(s\) added, 1 row\(s\) of missing files "
                     r"removed", log2), log2
    assert sx.wait(90) == 0, sx.text()
    assert sx.text().count("uplink: connected to") >= 2, sx.text()
    assert rx.stop() == 0, rx.text()
    log2 = rx.text()

    check_index_matches_files(datadir)
    assert sum(p.stat().st_size for p in closed_segments(datadir)) <= BOUND
    stored = stored_records(datadir)
    assert 0 < len(stored) < len(inputs)
    assert stored == inputs[-len(stored):], "not exactly the newest packets, each once"
    dels = deletions(log1, log2)
    _, retention = index_rows(datadir)
    want = {"segments": len(dels), "packets": sum(d[2] for d in dels), "bytes": sum(d[3] for d in dels)}
    # The retention table survives the crash (committed with each deletion), and
    # stats.json starts from it after the restart.
    assert retention["s1"] == {"sensor": "s1", **want}, (retention, want)
    assert stats(datadir)["retention"] == want
    assert want["packets"] + vanished_packets + len(stored) == len(inputs)


@pytest.mark.parametrize("key", ["PCAPLINE_STORAGE_MAX_AGE", "PCAPLINE_STORAGE_SENSOR_MAX_AGE"])
def test_age_bound(binaries, certs, procs, tmp_path, key):
    """max_age 3 s: segments whose newest packet is older go when they are closed;
    the others stay until the 1 s tick finds them too old, with no traffic at all."""
    sensor, receiver = binaries
    now = time.time_ns()
    # 600 packets 10 s old, then 600 from now + 1 s on: 2 x ~190 KB.
    ts = [now - 10 * 10**9 + i * 1000 for i in range(600)] + [now + 10**9 + i * 1000 for i in range(600)]
    src = tmp_path / "in.pcap"
    write_pcap(src, ts)
    datadir, port = tmp_path / "data", free_port()
    rx = start_receiver(receiver, certs, port, datadir, tmp_path / "rx.log",
                        {"PCAPLINE_STORAGE_SEGMENT_SIZE": "64k", key: "3s"})
    procs.append(rx)
    sx = start_sensor(sensor, certs, port, src, tmp_path / "sx.log")
    procs.append(sx)
    assert sx.wait(30) == 0, sx.text()
    wait_for(lambda: "session from" in rx.text() and "ended" in rx.text(), 10, "the session to end")
    elapsed = time.time_ns() - now
    assert elapsed < 3 * 10**9, f"too slow to see the fresh segments: {elapsed / 1e9:.1f} s"

    # The old packets' segments went at close; the fresh ones are still there.
    rows = check_index_matches_files(datadir)
    assert rows and all(r["max_ns"] > now for r in rows.values()), rows
    dels = deletions(rx.text())
    assert dels and all(d[4] == "age bound" for d in dels)
    assert sum(d[2] for d in dels) + sum(r["packets"] for r in rows.values()) == 1200
    assert all(d[2] for d in dels)

    # No traffic any more: the tick deletes the rest once they are 3 s old.
    wait_for(lambda: not closed_segments(datadir), 4 + (now + 10**9 + 600_000 + 3 * 10**9 - time.time_ns()) / 1e9,
             "the tick to delete the aged segments")
    assert time.time_ns() >= now + 10**9 + 3 * 10**9, "deleted before it was 3 s old"
    assert rx.stop() == 0
    assert not check_index_matches_files(datadir)
    dels = deletions(rx.text())
    st = stats(datadir)
    assert st["retention"]["packets"] == sum(d[2] for d in dels) == 1200
    assert st["retention"]["segments"] == len(dels) == st["stored"]["segments_closed"]


def test_per_sensor_size_bound(binaries, certs, procs, tmp_path):
    """storage.sensor_max_size: each sensor keeps its own newest 512 KiB, whatever
    the other one does; with no global bound the total may exceed it."""
    sensor, receiver = binaries
    datadir, port = tmp_path / "data", free_port()
    rx = start_receiver(receiver, certs, port, datadir, tmp_path / "rx.log",
                        {"PCAPLINE_STORAGE_SEGMENT_SIZE": "64k", "PCAPLINE_STORAGE_SENSOR_MAX_SIZE": "512k"})
    procs.append(rx)
    base = time.time_ns() - 3600 * 10**9
    inputs = {}
    for k, who in enumerate(("s1", "s2")):
        ts = [base + k * 10**9 + i * 1000 for i in range(4000)]  # 4000 x 316 bytes each
        src = tmp_path / f"{who}.pcap"
        write_pcap(src, ts, tag=who.encode())
        inputs[who] = read_pcap(src)[2]
        sx = start_sensor(sensor, certs, port, src, tmp_path / f"sx-{who}.log", who=who)
        procs.append(sx)
    for p in procs[1:]:
        assert p.wait(30) == 0, p.text()
    assert rx.stop() == 0
    check_index_matches_files(datadir)
    dels = deletions(rx.text())
    for who in ("s1", "s2"):
        total = sum(p.stat().st_size for p in closed_segments(datadir, who))
        assert 512 * KiB - 64 * KiB - BATCH < total <= 512 * KiB, (who, total)
        stored = stored_records(datadir, who)
        assert stored == inputs[who][-len(stored):]
        mine = [d for d in dels if d[0] == who]
        assert mine and all(d[4] == "size bound" for d in mine)
        assert stats(datadir, who)["retention"]["packets"] == sum(d[2] for d in mine) == 4000 - len(stored)
