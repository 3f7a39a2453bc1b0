# SPDX-License-Identifier: BSD-2-Clause
"""Fifty sensors at once: 50 certificates (CN s01..s50, one CA), 50 pcapline-sensor
processes started together on loopback, each replaying one of the small captures of
tests/data/pcaps (cycling through them), into one receiver. Every sensor must end up
in its own folder with exactly the packets of its capture: counted by capinfos over
its segment files, matched record by record (timestamp, lengths, SHA-256 of the bytes)
with the independent reader of test_replay, and counted again in its stats.json.
"""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import CERTS_TOOL, DATA, Proc, free_port, tls_args, wait_listening

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns as N  # noqa: E402
import test_replay as replay  # noqa: E402

N_SENSORS = 50
TRUNCATED = "truncated-file-cut-mid-packet.pcap"
SMALL = sorted(p for p in (DATA / "pcaps").iterdir()
               if p.suffix in (".pcap", ".pcapng") and p.stat().st_size <= 512 * 1024 and p.name != TRUNCATED)


def count_established(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"dport = :{port}"], capture_output=True,
                         text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_fifty_sensors_at_once(binaries, certs, tmp_path):
    t0 = time.time()
    sensor_bin, receiver_bin = binaries
    assert len(SMALL) >= 30, SMALL

    # One CA (the session's), 50 sensor certificates issued by the documented tool.
    cd = tmp_path / "certs"
    cd.mkdir()
    for f in ("ca.crt", "ca.key", "receiver.crt", "receiver.key"):
        shutil.copy(certs / f, cd / f)
    ids = [f"s{i:02d}" for i in range(1, N_SENSORS + 1)]
    for sid in ids:
        subprocess.run([CERTS_TOOL, cd, "sensor", sid], check=True, capture_output=True, timeout=30)
    t_certs = time.time() - t0

    inputs = {sid: SMALL[i % len(SMALL)] for i, sid in enumerate(ids)}
    want = {}
    for sid, cap in inputs.items():
        c = replay.read_capture(cap)
        assert not c.truncated, cap
        want[sid] = sorted((r.ts_ns, r.orig_len, r.cap_len, r.digest) for r in c.recs)

    port = free_port()
    datadir = tmp_path / "data"
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(cd, "receiver"),
              tmp_path / "receiver.log")
    sxs = {}
    try:
        wait_listening(port)
        # The receiver is paused while the 50 sensors start, so that all of them are
        # connected (in the kernel's backlog) when it resumes: their sessions really
        # overlap instead of each small replay finishing before the next one starts.
        rx.p.send_signal(signal.SIGSTOP)
        try:
            t_start = time.time()
            for sid in ids:
                sxs[sid] = Proc([sensor_bin, "-r", inputs[sid], "-t", f"127.0.0.1:{port}"] + tls_args(cd, sid),
                                tmp_path / f"sensor-{sid}.log")
            N.wait_for(lambda: count_established(port) >= N_SENSORS, 5, "50 sensor connections")
        finally:
            rx.p.send_signal(signal.SIGCONT)
        for sid, sx in sxs.items():
            left = max(1.0, 90 - (time.time() - t_start))
            rc = sx.wait(left)
            assert rc == 0, f"sensor {sid} ({inputs[sid].name}) exited {rc}:\n{sx.text()}"
        t_streamed = time.time() - t_start
        # Every sensor was acknowledged for its whole capture.
        for sid, sx in sxs.items():
            m = re.search(r"final: captured (\d+) packets .*acknowledged \d+ batches / (\d+) packets, pending 0",
                          sx.text())
            assert m and int(m.group(1)) == int(m.group(2)) == len(want[sid]), \
                f"{sid} ({inputs[sid].name}): {len(want[sid])} records in the file:\n{sx.text()}"
        assert rx.p.poll() is None, rx.text()
        log = rx.text()
        assert "refused" not in log, log
    finally:
        for sx in sxs.values():
            if sx.p.poll() is None:
                sx.stop(signal.SIGKILL)
        rc = rx.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, f"receiver exited {rc}:\n{rx.text()[-3000:]}"

    log = rx.text()
    assert sorted(p.name for p in (datadir / "sensors").iterdir()) == ids
    for sid in ids:
        assert re.search(rf"sensor {sid} connected from 127\.0\.0\.1:", log), f"{sid} never connected"
        seg_dir = datadir / "sensors" / sid / "segments"
        files = sorted(seg_dir.iterdir())
        assert files and not [p for p in files if p.name.startswith(".")], f"{sid}: {[p.name for p in files]}"
        counted = sum(N.capinfos_count(p) for p in files)
        assert counted == len(want[sid]), \
            f"{sid} replayed {inputs[sid].name} ({len(want[sid])} packets), capinfos counts {counted} stored"
        got = sorted((r.ts_ns, r.orig_len, r.cap_len, r.digest) for p in files for r in replay.read_capture(p).recs)
        assert got == want[sid], f"{sid} ({inputs[sid].name}): stored records differ from the capture"
        st = json.loads((datadir / "sensors" / sid / "stats.json").read_text())
        assert st["sensor"] == sid and st["stored"]["packets"] == len(want[sid]), (sid, st)
        r = st["receiver"]
        assert r["duplicate_batches"] == r["rejected_batches"] == r["missing_batches"] == r["storage_errors"] == 0, st
    # How many sessions were open at once, from the order of the receiver's log lines.
    open_now = peak = 0
    for line in log.splitlines():
        if re.search(r"sensor s\d\d connected from", line):
            open_now += 1
            peak = max(peak, open_now)
        elif re.search(r"sensor s\d\d: session from .* ended", line):
            open_now -= 1
    assert peak >= N_SENSORS // 5, f"at most {peak} sessions were open at once"
    total = sum(len(v) for v in want.values())
    print(f"{N_SENSORS} sensors, {len(SMALL)} distinct captures, {total} packets: certificates {t_certs:.1f} s, "
          f"streaming {t_streamed:.1f} s, {peak} sessions open at once, whole test {time.time() - t0:.1f} s")
    assert time.time() - t0 < 120
