# SPDX-License-Identifier: BSD-2-Clause
"""Lock-out attempts by anyone who can reach the receiver's ports (no certificate, no
token), performed as described, with real processes:

* 2,000 idle TCP connections from one address and 2,000 from 50 addresses (a network
  namespace with 51 addresses on its veth), held open and reopened for 60 s against a
  receiver in another namespace: a real sensor started at several moments meanwhile
  connects within 5 s and every packet it replays is stored exactly; the receiver logs
  fewer than 20 warning lines in all for the flood.
* 100 slowloris clients on the HTTP API (request headers one byte per second per
  connection, never finished): a well-behaved client's requests keep being answered
  in under 2 s each, and a sensor replaying meanwhile is stored exactly.

The flood itself runs as tests/integration/flood.py in its own process, bounded in
connections, rate and time.
"""
import http.client
import io
import json
import re
import signal
import socket
import tarfile
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


TOKEN = "dos-test-token-0123456789"


def export_members(body):
    """The members of an export archive but its manifest (which carries its creation time)."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()
                if m.isfile() and m.name != "manifest.json"}


def api_get(api_port, path, timeout=5.0):
    """(status, body, seconds) of one GET on a new connection, as a well-behaved client."""
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", api_port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        r = c.getresponse()
        body = r.read()
        return r.status, body, time.time() - t0
    finally:
        c.close()


def test_slowloris_does_not_stop_the_api(binaries, certs, tmp_path):
    duration = 20.0
    port, api_port = free_port(), free_port()
    datadir = tmp_path / "data"
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN,
                   "PCAPLINE_L4_ENABLED": "false"})
    flood, sx = None, None
    try:
        wait_listening(port)
        wait_listening(api_port)
        replay_into(binaries, certs, datadir, rx, "s2", CAPTURES[0], tmp_path / "sensor-s2.log",
                    f"127.0.0.1:{port}")
        path = "/api/v1/export?from=0&to=4102444800&sensor=s2"
        status, body, _ = api_get(api_port, path)
        assert status == 200, (status, body[:200])
        want_export = export_members(body)
        assert any(name.startswith("s2/") for name in want_export), list(want_export)

        log_at = len(rx.text())
        t0 = time.time()
        flood = Proc(["/usr/bin/python3", FLOOD, "slowloris", "127.0.0.1", api_port, "--count", 100,
                      "--duration", duration, "--rate", 200], tmp_path / "flood.log")
        N.wait_for(lambda: "ready" in flood.text(), 10, "100 slowloris connections opened")
        time.sleep(0.5)   # their request lines are in: now they only trickle
        latencies, replays, k = [], [], 0
        sx_log = None
        while time.time() - t0 < duration - 2:
            # Ingest meanwhile: back-to-back replays by sensor s1, each checked exactly.
            if sx is None or sx.p.poll() is not None:
                if sx is not None:
                    assert sx.wait(1) == 0, sx.text()
                    replays.append(stored_exactly(datadir, "s1", before, cap))
                cap = CAPTURES[k % len(CAPTURES)]
                before = set(segments(datadir, "s1"))
                sx_log = tmp_path / f"sensor-s1-{k}.log"
                sx = Proc([binaries[0], "-r", cap, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), sx_log)
                k += 1
            try:
                status, body, took = api_get(api_port, path)
            except (OSError, http.client.HTTPException) as e:
                raise AssertionError(f"request {len(latencies) + 1} under slowloris failed after "
                                     f"{time.time() - t0:.1f} s: {e!r}\nreceiver:\n{rx.text()[-2000:]}")
            assert status == 200 and export_members(body) == want_export, (status, body[:200])
            assert took < 2.0, f"request {len(latencies) + 1} took {took:.2f} s under slowloris"
            latencies.append(took)
            time.sleep(0.2)
        assert sx.wait(60) == 0, sx.text()
        replays.append(stored_exactly(datadir, "s1", before, cap))
        assert flood.wait(duration + 20) == 0, flood.text()
        counts = json.loads(flood.text().strip().splitlines()[-1])
        assert rx.p.poll() is None, rx.text()[-3000:]
        log = rx.text()[log_at:]
        warns = warn_lines(log)
        assert len(warns) < 20, f"{len(warns)} warning lines during the slowloris:\n" + "\n".join(warns[:40])
        assert re.search(r"api: in the last \d+ s: \d+ connections closed without a complete request", log), log
    finally:
        for p in (flood, sx):
            if p is not None and p.p.poll() is None:
                p.stop(signal.SIGKILL)
        rc = rx.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, f"receiver exited {rc}:\n{rx.text()[-3000:]}"
    print(f"slowloris {counts}: {len(latencies)} API requests answered, max {max(latencies):.2f} s, "
          f"median {sorted(latencies)[len(latencies) // 2]:.3f} s; {len(replays)} replays stored exactly "
          f"({sum(replays)} records); {len(warns)} warning lines")


def test_api_request_headers_have_a_deadline(binaries, certs, tmp_path):
    """A client that trickles its request headers (one byte every 0.3 s, so the idle
    timeout never fires) is closed at api.header_timeout; one that sends its request at
    once and then reads slowly is not cut (tests/integration/test_api.py streams a
    large export to a 1 MB/s reader for longer than this timeout)."""
    port, api_port = free_port(), free_port()
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN,
                   "PCAPLINE_API_HEADER_TIMEOUT": "2s", "PCAPLINE_L4_ENABLED": "false"})
    try:
        wait_listening(port)
        wait_listening(api_port)
        with socket.create_connection(("127.0.0.1", api_port), timeout=0.3) as s:
            t0 = time.time()
            s.sendall(b"GET /api/v1/conns HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            closed_at = None
            while time.time() - t0 < 15:
                try:
                    s.sendall(b"a")
                    if s.recv(4096) == b"":
                        closed_at = time.time() - t0
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed_at = time.time() - t0
                    break
        assert closed_at is not None, "a trickling client kept its connection for 15 s"
        assert 1.8 <= closed_at <= 4.5, f"closed after {closed_at:.1f} s (api.header_timeout is 2 s)"
        N.wait_for(lambda: re.search(r"api: in the last \d+ s: 1 connections closed without a complete request",
                                     rx.text()), 15, "the summary line")
    finally:
        rc = rx.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, rx.text()[-3000:]
    print(f"a trickling client was closed after {closed_at:.1f} s")
