# SPDX-License-Identifier: BSD-2-Clause
"""Fan-in with dissection and an export at once.

Fifty sensors (50 certificates, CN f01..f50, one CA), each a pcapline-sensor replaying one
capture of tests/data/pcaps with -r, stream into one receiver that dissects every closed
segment (l4.enabled, 1 s / 1 MiB segments, so that segments close and are dissected while
the sensors still send) and serves its HTTP API, from which exports of the whole
repository are streamed again and again while the sensors send (each once more segments
are indexed). The repository already holds one sensor's capture (s1) and the first export
is requested, and streamed slowly, while the receiver is paused with all 50 sensors
connected: on any machine it streams while they send, and holds packets.

Judged:
- every sensor exits 0, acknowledged for its whole capture;
- every sensor's folder holds exactly its capture's packets: capinfos over its segment
  files equals capinfos of the input, its stats.json counts the same with no duplicate,
  rejected or missing batch (and, where the receiver times its ACKs, one ACK latency
  sample per batch the sensor saw acknowledged);
- every packet is stored exactly once: the sensor's capture in a final `pcapline export`
  equals the input record by record (timestamp, lengths, SHA-256 of the bytes, as a
  multiset: the export is merged by time) and capinfos reads it whole;
- every export taken while the sensors sent is a valid archive (manifest digests hold,
  capinfos reads every capture in it whole, with the manifest's counts) and holds only
  packets of the sensor it names, none twice;
- the dissection saw every stored packet (every segment in l4_done, `conns --stats`
  counts all packets) and the receiver logged no error.
"""
import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import CERTS_TOOL, DATA, Proc, free_port, sanitized, tls_args, wait_listening

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns as N  # noqa: E402
from test_export import PCAPLINE, read_capture, read_export  # noqa: E402

N_SENSORS = 50
TRUNCATED = "truncated-file-cut-mid-packet.pcap"
# Largest first: with 40 captures for 50 sensors, the ten largest are replayed twice.
CAPTURES = sorted((p for p in (DATA / "pcaps").iterdir()
                   if p.suffix in (".pcap", ".pcapng") and p.name != TRUNCATED),
                  key=lambda p: (-p.stat().st_size, p.name))
T1, T2 = "0", "4102444800"   # 1970 .. 2100: every packet
MAX_EXPORTS = 12             # exports taken while the sensors send (bounded)
BUDGET_S = 90                # the sensors' whole replay, on a loaded 2-core machine
PRELOAD = DATA / "pcaps" / "http-1000-requests-one-conn.pcap"   # s1's, stored before the fan-in
FIRST_EXPORT_RATE = "256k"   # bytes/s: the first export streams over the fan-in's start


def recs_of(data):
    """The records of a capture (path or bytes) as a multiset of (ts ns, caplen, origlen,
    SHA-256): the interface ids of a pcapng may be numbered differently in an export."""
    c = read_capture(data)
    assert not c.truncated
    return collections.Counter((r.ts, r.caplen, r.origlen, r.digest) for r in c.recs)


def capinfos_counts(files):
    """{path as given: packets} from one capinfos run over all files; it must read each
    whole (a file cut mid-record makes capinfos exit non-zero)."""
    files = [str(f) for f in files]
    if not files:
        return {}
    p = subprocess.run(["capinfos", "-c", "-M", "-T", "-r", *files], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    rows = dict(line.rsplit("\t", 1) for line in p.stdout.splitlines() if line.strip())
    assert sorted(rows) == sorted(files), p.stdout
    return {k: int(v) for k, v in rows.items()}


def count_established(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"dport = :{port}"], capture_output=True,
                         text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


class Exporter(threading.Thread):
    """Streams exports of the whole repository from the API, one after the other, until
    told to stop (the current one is finished) or MAX_EXPORTS were taken."""

    def __init__(self, base, outdir, data):
        super().__init__(daemon=True)
        self.base, self.outdir, self.data = base, outdir, data
        self.stop_after = threading.Event()
        self.done = []   # (path, t_start, t_end, curl rc, http status, stderr)
        self.current = None

    def segments(self):
        try:
            return index_state(self.data)[0]
        except sqlite3.Error:
            return 0

    def run(self):
        seen = -1   # the first export at once
        for i in range(MAX_EXPORTS):
            # The next export once more segments are indexed (at most 5 s later): each
            # one then carries more than the one before.
            deadline = time.time() + 5
            while self.segments() == seen and time.time() < deadline and not self.stop_after.is_set():
                time.sleep(0.05)
            if self.stop_after.is_set():
                break
            seen = self.segments()
            out = self.outdir / f"live-{i:02d}.tar.gz"
            t0 = time.time()
            slow = ["--limit-rate", FIRST_EXPORT_RATE] if i == 0 else []
            self.current = subprocess.Popen(["curl", "-sS", *slow, "-o", out, "-w", "%{http_code}",
                                             f"{self.base}/api/v1/export?from={T1}&to={T2}"],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                stdout, stderr = self.current.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.current.kill()
                stdout, stderr = self.current.communicate()
            self.done.append((out, t0, time.time(), self.current.returncode, stdout.decode(), stderr.decode()))


def check_archive(path, work, want):
    """A valid export: the manifest's digests and sizes hold, capinfos reads every capture
    whole with the manifest's packet count, and every capture holds only packets of the
    sensor it names, none more often than in its input. Returns the packets in it."""
    man, files = read_export(path)
    counts = {f["path"]: f["packets"] for f in man["files"] if f["path"] != "manifest.json" and "packets" in f}
    caps = sorted(n for n in files if n.endswith((".pcap", ".pcapng")))
    assert sorted(counts) == caps or not caps, (sorted(counts), caps)
    d = work / path.name.replace(".tar.gz", "")
    d.mkdir()
    written = []
    for n in caps:
        sid = n.split("/", 1)[0]
        assert n in (f"{sid}/{sid}.pcap", f"{sid}/{sid}.pcapng") and sid in want, n
        f = d / Path(n).name
        f.write_bytes(files[n])
        written.append((n, sid, f))
    got = capinfos_counts([f for _, _, f in written])
    total = 0
    for n, sid, f in written:
        assert got[str(f)] == counts[n], f"{path.name}: {n}: capinfos {got[str(f)]}, manifest {counts[n]}"
        extra = recs_of(f) - want[sid]
        assert not extra, f"{path.name}: {n} holds {sum(extra.values())} packets not in {sid}'s input (or twice)"
        total += counts[n]
    return total


def index_state(data):
    db = sqlite3.connect(f"file:{data}/index.db?mode=ro", uri=True)
    try:
        segs, pkts = db.execute("SELECT count(*), coalesce(sum(packets), 0) FROM segments").fetchone()
        done = db.execute("SELECT count(*) FROM l4_done").fetchone()[0]
    finally:
        db.close()
    return segs, pkts, done


def test_fifty_sensors_dissection_and_export_at_once(binaries, certs, tmp_path):
    t_begin = time.time()
    sensor_bin, receiver_bin = binaries
    assert PCAPLINE.exists(), f"{PCAPLINE} is missing: run make first"
    assert len(CAPTURES) >= 30, CAPTURES

    # One CA (the session's), 50 sensor certificates issued by the documented tool.
    cd = tmp_path / "certs"
    cd.mkdir()
    for f in ("ca.crt", "ca.key", "receiver.crt", "receiver.key", "s1.crt", "s1.key"):
        (cd / f).write_bytes((certs / f).read_bytes())
    ids = [f"f{i:02d}" for i in range(1, N_SENSORS + 1)]
    for sid in ids:
        subprocess.run([CERTS_TOOL, cd, "sensor", sid], check=True, capture_output=True, timeout=30)
    t_certs = time.time() - t_begin

    inputs = {sid: CAPTURES[i % len(CAPTURES)] for i, sid in enumerate(ids)}
    inputs["s1"] = PRELOAD
    all_ids = sorted(inputs)
    in_counts = {Path(k).name: v for k, v in capinfos_counts(sorted(set(inputs.values()))).items()}
    want = {sid: recs_of(cap) for sid, cap in inputs.items()}
    for sid, cap in inputs.items():
        assert sum(want[sid].values()) == in_counts[cap.name], (cap, in_counts[cap.name])
    total = sum(sum(w.values()) for w in want.values())

    port, api_port = free_port(), free_port()
    data = tmp_path / "data"
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(cd, "receiver"),
              tmp_path / "receiver.log",
              env={"PCAPLINE_L4_ENABLED": "true", "PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}",
                   "PCAPLINE_STORAGE_SEGMENT_TIME": "1s", "PCAPLINE_STORAGE_SEGMENT_SIZE": "1M"})
    live = tmp_path / "live"
    live.mkdir()
    exporter = Exporter(f"http://127.0.0.1:{api_port}", live, data)
    sxs = {}
    try:
        wait_listening(port)
        wait_listening(api_port)
        sxs["s1"] = Proc([sensor_bin, "-r", PRELOAD, "-t", f"127.0.0.1:{port}"] + tls_args(cd, "s1"),
                         tmp_path / "sensor-s1.log")
        assert sxs["s1"].wait(60) == 0, sxs["s1"].text()
        n_pre = sum(want["s1"].values())
        N.wait_for(lambda: index_state(data)[1] == n_pre, 20, f"s1's {n_pre} packets indexed",
                   lambda: f"(segments, packets, dissected) {index_state(data)}")
        # The receiver is paused while the 50 sensors start, so that all of them are
        # connected when it resumes: their sessions really overlap. The first export is
        # requested meanwhile: it is served, slowly, while they send.
        rx.p.send_signal(signal.SIGSTOP)
        try:
            for sid in ids:
                sxs[sid] = Proc([sensor_bin, "-r", inputs[sid], "-t", f"127.0.0.1:{port}"] + tls_args(cd, sid),
                                tmp_path / f"sensor-{sid}.log")
            N.wait_for(lambda: count_established(port) >= N_SENSORS, 10, "50 sensor connections")
            exporter.start()
            N.wait_for(lambda: count_established(api_port) >= 1, 10, "the first export's connection")
        finally:
            rx.p.send_signal(signal.SIGCONT)
        t_start = time.time()
        for sid, sx in sxs.items():
            rc = sx.wait(max(1.0, BUDGET_S - (time.time() - t_start)))
            assert rc == 0, f"sensor {sid} ({inputs[sid].name}) exited {rc}:\n{sx.text()}"
        t_sent = time.time()
        exporter.stop_after.set()
        exporter.join(90)
        assert not exporter.is_alive(), "an export did not finish in 90 s"
        acked = {}
        for sid, sx in sxs.items():
            m = re.search(r"final: captured (\d+) packets .*acknowledged (\d+) batches / (\d+) packets, pending 0",
                          sx.text())
            n = sum(want[sid].values())
            assert m and int(m.group(1)) == int(m.group(3)) == n, \
                f"{sid} ({inputs[sid].name}): {n} records in the file:\n{sx.text()}"
            acked[sid] = int(m.group(2))
        assert rx.p.poll() is None, rx.text()

        # Every export taken while the sensors sent is whole and holds only their packets.
        assert exporter.done, "no export was taken"
        during = []
        for out, t0, t1, rc, code, err in exporter.done:
            assert rc == 0 and code == "200", f"{out.name}: curl {rc}, HTTP {code}: {err}"
            n = check_archive(out, live, want)
            if t0 < t_sent:
                during.append(n)
        assert during[0] >= n_pre and exporter.done[0][2] > t_start, (during, exporter.done[0])

        # Every segment closed, indexed and dissected.
        N.wait_for(lambda: (lambda s: s[1] == total and s[0] == s[2])(index_state(data)), 60,
                   f"every segment of the {total} packets indexed and dissected",
                   lambda: f"(segments, packets, dissected) {index_state(data)}", interval=0.2)
        final = tmp_path / "final.tar.gz"
        p = subprocess.run([PCAPLINE, "-q", "export", "--dir", data, "--from", T1, "--to", T2, "-o", final],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        st = subprocess.run([PCAPLINE, "-q", "conns", "--stats", "--dir", data, "--json"],
                            capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr
    finally:
        exporter.stop_after.set()
        for sx in sxs.values():
            if sx.p.poll() is None:
                sx.stop(signal.SIGKILL)
        if exporter.current is not None and exporter.current.poll() is None:
            exporter.current.kill()
        rc = rx.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, f"receiver exited {rc}:\n{rx.text()[-3000:]}"
    log = rx.text()
    assert not re.search(r": (error|warn(ing)?):", log) and "refused" not in log, log[-5000:]

    # The final export: each sensor's capture is its input, record by record, once.
    assert check_archive(final, tmp_path, want) == total
    _, files = read_export(final)
    for sid in all_ids:
        names = [n for n in files if n in (f"{sid}/{sid}.pcap", f"{sid}/{sid}.pcapng")]
        assert len(names) == 1, (sid, sorted(files))
        assert recs_of(files[names[0]]) == want[sid], f"{sid} ({inputs[sid].name}): export differs from the input"

    # The repository, read directly: capinfos per sensor and stats.json.
    assert sorted(p.name for p in (data / "sensors").iterdir()) == all_ids
    segs = {sid: sorted((data / "sensors" / sid / "segments").iterdir()) for sid in all_ids}
    for sid in all_ids:
        assert segs[sid] and not [p for p in segs[sid] if p.name.startswith(".")], (sid, segs[sid])
    counted = capinfos_counts([f for sid in all_ids for f in segs[sid]])
    for sid in all_ids:
        n = sum(counted[str(f)] for f in segs[sid])
        assert n == in_counts[inputs[sid].name], \
            f"{sid} replayed {inputs[sid].name} ({in_counts[inputs[sid].name]} packets), capinfos counts {n} stored"
        s = json.loads((data / "sensors" / sid / "stats.json").read_text())
        assert s["sensor"] == sid and s["stored"]["packets"] == n, (sid, s)
        r = s["receiver"]
        assert r["duplicate_batches"] == r["rejected_batches"] == r["missing_batches"] == r["storage_errors"] == 0, s
        # A receiver that times its ACKs counts one sample per ACK the sensor saw.
        lat = s.get("ack_latency_us")
        if lat is not None:
            assert lat["count"] == acked[sid] and 0 <= lat["p50"] <= lat["p99"] <= lat["max"], (sid, acked[sid], lat)

    # The dissection counted every stored packet.
    l4 = json.loads(st.stdout)
    assert l4.get("packets") == total, l4
    elapsed = time.time() - t_begin
    print(f"{N_SENSORS} sensors, {len(set(inputs.values()))} captures, {total} packets: certificates {t_certs:.1f} s, "
          f"streaming {t_sent - t_start:.1f} s, {len(exporter.done)} exports ({len(during)} started while sending, "
          f"up to {max(during)} packets), whole test {elapsed:.1f} s")
    assert elapsed < 150, f"the test took {elapsed:.0f} s"


MEM_CAPTURE = DATA / "pcaps" / "tcp-echo-500-conns.pcap"   # 6.8 MB, 82582 packets
MAX_RSS_KIB = 256 * 1024   # the receiver's peak RSS: 123-171 MiB measured; without the bound 466 MiB


# The default budget, and the smallest one: then every session is over its share all the
# time and must still make progress, none starved.
@pytest.mark.parametrize("ingest_buffer", [None, "1MiB"])
def test_fifty_sensors_read_ahead_memory_bounded(binaries, certs, tmp_path, ingest_buffer):
    """Fifty sensors (started while the receiver is stopped, so that all of them send at
    once) replay the same 6.8 MB capture as fast as they can. What the receiver reads
    ahead of its store worker, in input buffers and decompressed batch groups, is bounded
    server-wide: its peak resident memory, measured by /usr/bin/time around it (its own
    ru_maxrss; this process's would be inherited by a child's), stays under MAX_RSS_KIB,
    and every sensor still has its whole capture stored and acknowledged (within
    BUDGET_S: a sensor the budget starved would time out)."""
    sensor_bin, receiver_bin = binaries
    cd = tmp_path / "certs"
    cd.mkdir()
    for f in ("ca.crt", "ca.key", "receiver.crt", "receiver.key"):
        (cd / f).write_bytes((certs / f).read_bytes())
    ids = [f"m{i:02d}" for i in range(1, N_SENSORS + 1)]
    for sid in ids:
        subprocess.run([CERTS_TOOL, cd, "sensor", sid], check=True, capture_output=True, timeout=30)
    n_pkts = capinfos_counts([MEM_CAPTURE])[str(MEM_CAPTURE)]

    port = free_port()
    data = tmp_path / "data"
    rss_file = tmp_path / "receiver.maxrss"
    rx = Proc(["/usr/bin/time", "-f", "%M", "-o", rss_file, receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data]
              + tls_args(cd, "receiver"), tmp_path / "receiver.log",
              env={"PCAPLINE_LIMITS_INGEST_BUFFER": ingest_buffer} if ingest_buffer else None)
    sxs = {}
    rx_pid = None

    def receiver_pid():
        """The receiver itself, the child of /usr/bin/time: signals go to it."""
        try:
            kids = Path(f"/proc/{rx.p.pid}/task/{rx.p.pid}/children").read_text().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    try:
        N.wait_for(lambda: receiver_pid() is not None, 10, "the receiver started under /usr/bin/time")
        rx_pid = receiver_pid()
        wait_listening(port)
        os.kill(rx_pid, signal.SIGSTOP)
        try:
            for sid in ids:
                sxs[sid] = Proc([sensor_bin, "-r", MEM_CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(cd, sid),
                                tmp_path / f"sensor-{sid}.log")
            N.wait_for(lambda: count_established(port) >= N_SENSORS, 10, "50 sensor connections")
        finally:
            os.kill(rx_pid, signal.SIGCONT)
        t_start = time.time()
        for sid, sx in sxs.items():
            rc = sx.wait(max(1.0, BUDGET_S - (time.time() - t_start)))
            assert rc == 0, f"sensor {sid} exited {rc}:\n{sx.text()}"
            m = re.search(r"final: captured (\d+) packets .*acknowledged (\d+) batches / (\d+) packets, pending 0",
                          sx.text())
            assert m and int(m.group(1)) == int(m.group(3)) == n_pkts, f"{sid}: {n_pkts} records:\n{sx.text()}"
        t_sent = time.time()
        assert rx.p.poll() is None, rx.text()
    finally:
        for sx in sxs.values():
            if sx.p.poll() is None:
                sx.stop(signal.SIGKILL)
        if rx_pid is not None and rx.p.poll() is None:
            os.kill(rx_pid, signal.SIGTERM)
            try:
                rx.p.wait(30)   # /usr/bin/time exits with the receiver's status
            except subprocess.TimeoutExpired:
                os.kill(rx_pid, signal.SIGKILL)
        rc = rx.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, f"receiver exited {rc}:\n{rx.text()[-3000:]}"
    log = rx.text()
    assert not re.search(r": (error|warn(ing)?):", log), log[-5000:]
    for sid in ids:
        s = json.loads((data / "sensors" / sid / "stats.json").read_text())
        assert s["stored"]["packets"] == n_pkts, (sid, s)
        r = s["receiver"]
        assert r["duplicate_batches"] == r["rejected_batches"] == r["missing_batches"] == r["storage_errors"] == 0, s
    max_rss = int(rss_file.read_text().split()[-1])
    print(f"limits.ingest_buffer {ingest_buffer or 'default'}: {N_SENSORS} sensors x {n_pkts} packets streamed in "
          f"{t_sent - t_start:.1f} s, "
          f"receiver peak RSS {max_rss // 1024} MiB")
    if sanitized(receiver_bin):
        pytest.skip(f"peak RSS {max_rss} KiB not judged under ASan (its quarantine holds freed memory)")
    assert max_rss < MAX_RSS_KIB, f"receiver peak RSS {max_rss // 1024} MiB, bound {MAX_RSS_KIB // 1024} MiB"
