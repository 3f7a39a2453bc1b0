# SPDX-License-Identifier: BSD-2-Clause
"""Lock-out attempts by anyone who can reach the receiver's ports (no certificate, no
token), performed as described, with real processes:

* 2,000 idle TCP connections from one address and 2,000 from 50 addresses (a network
  namespace with 51 addresses on its veth), held open and reopened for 60 s against a
  receiver in another namespace: a real sensor started at several moments meanwhile
  connects within 5 s and every packet it replays is stored exactly; the receiver logs
  fewer than 20 warning lines in all for the flood.

The flood itself runs as tests/integration/flood.py in its own process, bounded in
connections, rate and time.
"""
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, Proc, free_port, tls_args, wait_listening

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns as N  # noqa: E402
import test_replay as replay  # noqa: E402  (the independent pcap/pcapng reader)

FLOOD = Path(__file__).resolve().parent / "flood.py"
PCAPS = DATA / "pcaps"
CAPTURES = [PCAPS / n for n in ("http-keepalive-browse.pcap", "mysql-6-conns-port20130.pcap",
                                "redis-benchmark-sll.pcap", "pgsql-app-session.pcap",
                                "amqp-0-9-1.pcap", "tcp-reassembly-gaps-retrans.pcap")]
RX_ADDR = "198.18.0.2"         # in the receiver's certificate (conftest)
ONE_SOURCE = "198.18.1.1"
MANY_SOURCES = [f"198.18.2.{i}" for i in range(1, 51)]


def segments(datadir, sid):
    d = Path(datadir) / "sensors" / sid / "segments"
    return sorted(d.iterdir()) if d.is_dir() else []


def warn_lines(text):
    return [line for line in text.splitlines() if ": warn: " in line or ": error: " in line]


def stored_exactly(datadir, sid, before, capture, timeout=20):
    """The segments a replay added hold exactly the capture's records."""
    deadline = time.time() + timeout
    while True:
        new = sorted(set(segments(datadir, sid)) - before)
        if new and not any(p.name.startswith(".") for p in new):
            break
        assert time.time() < deadline, f"replay of {capture.name}: segments not closed: {new}"
        time.sleep(0.05)
    want = [(r.ts_ns, r.orig_len, r.cap_len, r.digest) for r in replay.read_capture(capture).recs]
    got = [(r.ts_ns, r.orig_len, r.cap_len, r.digest) for p in new for r in replay.read_capture(p).recs]
    assert got == want, f"replay of {capture.name}: {len(got)} of {len(want)} records stored, or different"
    assert sum(N.capinfos_count(p) for p in new) == len(want)
    return len(want)


def replay_into(binaries, certs, datadir, rx, sid, capture, log, target, netns=None, connect_within=5.0):
    """Replays capture as sensor sid; returns (seconds until the receiver logged the
    session, records stored). The sensor must connect within connect_within seconds."""
    before = set(segments(datadir, sid))
    n_before = len(re.findall(rf"sensor {sid} connected from", rx.text()))
    t0 = time.time()
    sx = Proc([binaries[0], "-r", capture, "-t", target] + tls_args(certs, sid), log, netns=netns)
    try:
        while len(re.findall(rf"sensor {sid} connected from", rx.text())) == n_before:
            assert rx.p.poll() is None, f"receiver died:\n{rx.text()[-3000:]}"
            if time.time() - t0 > connect_within:
                raise AssertionError(f"sensor {sid} not connected after {connect_within} s:\n"
                                     f"{sx.text()[-1500:]}\nreceiver:\n{rx.text()[-1500:]}")
            time.sleep(0.02)
        t_conn = time.time() - t0
        rc = sx.wait(60)
    finally:
        if sx.p.poll() is None:
            sx.stop(signal.SIGKILL)
    assert rc == 0, f"sensor {sid} replaying {capture.name} exited {rc}:\n{sx.text()}"
    return t_conn, stored_exactly(datadir, sid, before, capture)


def test_idle_connection_flood_does_not_lock_sensors_out(binaries, certs, tmp_path):
    duration = 60.0
    ns = N.Namespaces()
    floods, rx = [], None
    try:
        rxns, att = ns.add("rx"), ns.add("att")
        ns.veth(rxns, "v0", RX_ADDR, att, "v1", ONE_SOURCE, prefix=16)
        for a in MANY_SOURCES:
            N.run(["ip", "-n", att, "addr", "add", f"{a}/16", "dev", "v1"])
        port = 47800
        datadir = tmp_path / "data"
        rx = Proc([binaries[1], "-l", f"0.0.0.0:{port}", "-d", datadir] + tls_args(certs, "receiver"),
                  tmp_path / "receiver.log", netns=rxns, env={"PCAPLINE_L4_ENABLED": "false"})
        wait_listening(port, netns=rxns)
        log_at = len(rx.text())
        t0 = time.time()
        for name, sources in (("one", [ONE_SOURCE]), ("fifty", MANY_SOURCES)):
            floods.append(Proc(["/usr/bin/python3", FLOOD, "idle", RX_ADDR, port, "--sources", ",".join(sources),
                                "--count", 2000, "--duration", duration],
                               tmp_path / f"flood-{name}.log", netns=att))
        # Both floods have opened their 2,000 connections before the first sensor comes.
        N.wait_for(lambda: all("ready" in f.text() for f in floods), 15, "4,000 flood connections opened")
        results = []
        k = 0
        while time.time() - t0 < duration - 8:
            cap = CAPTURES[k % len(CAPTURES)]
            results.append((cap.name,) + replay_into(binaries, certs, datadir, rx, "s1", cap,
                                                     tmp_path / f"sensor-{k}.log", f"127.0.0.1:{port}",
                                                     netns=rxns))
            k += 1
            time.sleep(max(0.0, min(8.0, duration - 8 - (time.time() - t0))))
        counts = []
        for f in floods:
            assert f.wait(duration + 30) == 0, f.text()
            counts.append(json.loads(f.text().strip().splitlines()[-1]))
        t_flood = time.time() - t0
        assert rx.p.poll() is None, rx.text()[-3000:]
        log = rx.text()[log_at:]
        warns = warn_lines(log)
        assert len(warns) < 20, f"{len(warns)} warning lines during the flood:\n" + "\n".join(warns[:40])
        # The shed and timed-out connections are all accounted for in the summary lines.
        shed = sum(int(m) for m in re.findall(r"unauthenticated connections in the last \d+ s: (\d+) shed", log))
        assert shed > 0, log[-3000:]
        assert len(results) >= 5, results
    finally:
        for f in floods:
            if f.p.poll() is None:
                f.stop(signal.SIGKILL)
        rc = rx.stop(signal.SIGTERM, timeout=30) if rx else 0
        errors = ns.cleanup()
    assert rc == 0, f"receiver exited {rc}:\n{rx.text()[-3000:]}"
    assert not errors, errors
    print(f"flood {t_flood:.0f} s: {counts}; receiver shed {shed} unauthenticated connections, "
          f"{len(warns)} warning lines; sensor replays (capture, s to connect, records stored): {results}")

