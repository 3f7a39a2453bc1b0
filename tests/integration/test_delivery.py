# SPDX-License-Identifier: BSD-2-Clause
"""Delivery under failure, live, in network namespaces, checked against tcpdump.

Each test runs a live sensor in namespace a, the receiver in namespace b and tcpdump
next to the sensor as ground truth, makes steady real traffic (a paced UDP sender at a
few thousand packets per second, every packet unique, plus echo replies for one in
ten so that received packets are there too), breaks something in the middle, and then
demands what test_live_netns demands of a quiet run: every packet tcpdump saw is
stored exactly once (same multiset of bytes, caplen and origlen; identical
timestamps; same order up to near-simultaneous swaps), nothing is left open, and the
counters on both sides say that nothing was lost.

  * the receiver is killed with SIGKILL mid-stream and restarted on the same data dir;
  * the uplink veth goes down for 15 s while the capture (on a second veth pair)
    keeps seeing traffic; the sensor has a disk spool and a 1 MiB window;
  * the receiver's disk (a 3 MiB tmpfs) fills up mid-stream, then is enlarged;
  * the sensor is stopped with a full spool while the receiver is down, and a new
    sensor process started later on the same spool delivers it.

The comparison, the namespace lab and the process helpers are test_live_netns's and
netns.py's, reused as they are.
"""
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Proc, tls_args

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns as N  # noqa: E402
from test_live_netns import (QUIET_S, RX_PORT, check_sensor_against_tcpdump, lab,  # noqa: E402,F401
                             start, start_receiver, start_tcpdump, stop_all, wait_log)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: creates network namespaces, captures packets, mounts tmpfs")

UDP_PORT = 9999
SIZE = 400  # UDP payload bytes per packet

# A paced UDP sender: `pps` packets per second for `dur` seconds, each payload a
# unique sequence number and random bytes (so that lz4 cannot shrink the stream and
# the window and spool fill as they would with real traffic). Prints how many it sent.
PACER = r"""
import os, socket, struct, sys, time
dst, port, pps, dur, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
total = int(dur * pps)
t0 = time.monotonic()
n = 0
errors = 0
while n < total:
    due = min(int((time.monotonic() - t0) * pps) + 1, total)
    while n < due:
        try:
            s.sendto(struct.pack("!Q", n) + os.urandom(size - 8), (dst, port))
        except OSError:
            errors += 1
        n += 1
    time.sleep(0.0005)
print(n, errors)
"""

# The peer: answers one packet in ten with a short datagram naming it.
SINK = r"""
import socket, struct, sys, time
addr, port, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((addr, port))
s.settimeout(0.2)
end = time.time() + life
while time.time() < end:
    try:
        d, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    if len(d) >= 8 and struct.unpack("!Q", d[:8])[0] % 10 == 0:
        s.sendto(b"echo" + d[:40], peer)
"""


# ---- building blocks -------------------------------------------------------------


def start_sink(procs, tmp_path, ns, addr, life=120):
    p = start(procs, [N.PY, "-c", SINK, addr, UDP_PORT, life], tmp_path / f"sink-{ns}.log", ns)
    N.wait_for(lambda: N.listening(ns, "udp", UDP_PORT) or p.p.poll() is not None, 10, "UDP sink")
    assert p.p.poll() is None, p.text()
    return p


class Traffic:
    """The pacer, run inside a namespace in a thread; join() returns packets sent."""

    def __init__(self, ns, dst, pps, dur):
        self.dur = dur
        self.result = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(ns, dst, pps, dur), daemon=True)
        self.t.start()

    def _run(self, ns, dst, pps, dur):
        try:
            r = N.nsrun(ns, [N.PY, "-c", PACER, dst, UDP_PORT, pps, dur, SIZE], timeout=dur + 30)
            self.result = tuple(int(x) for x in r.stdout.split())
        except Exception as e:  # reported by join()
            self.error = e

    def join(self):
        self.t.join(self.dur + 40)
        assert not self.t.is_alive(), "traffic generator did not finish"
        if self.error:
            raise self.error
        return self.result


def start_live_sensor(procs, binaries, certs, ns, ifaces, rx_addr, log, env=None, wait_connected=True):
    sx = Proc([binaries[0], "-i", ifaces, "-t", f"{rx_addr}:{RX_PORT}"] + tls_args(certs, "s1"), log,
              netns=ns, env=env)
    procs.append(sx)
    if wait_connected:
        wait_log(sx, "uplink: connected to", 15, "sensor s1")
    else:
        wait_log(sx, "sensor s1 starting", 15, "sensor s1")
    assert f"excluding own uplink traffic: (host {rx_addr} and tcp port {RX_PORT})" in sx.text(), sx.text()
    return sx


def final_line(sx):
    m = re.search(r"final: captured (\d+) packets .*?queue drops (\d+), spool drops (\d+) \(spool holds (\d+) "
                  r"batches\); batches sent (\d+) \((\d+) resent\), acknowledged (\d+) batches / (\d+) packets, "
                  r"pending (\d+)", sx.text())
    assert m, f"no final line in the sensor's log:\n{sx.text()}"
    keys = ("captured", "queue_drops", "spool_drops", "spool_holds", "sent", "resent", "acked_batches",
            "acked_packets", "pending")
    return dict(zip(keys, (int(x) for x in m.groups())))


def stats_json(datadir, sid="s1"):
    return json.loads((Path(datadir) / "sensors" / sid / "stats.json").read_text())


def spooled(spool):
    return sorted(spool.glob("*.batch")) if spool.is_dir() else []


def assert_counters(datadir, sx):
    """The sensor's final line and the receiver's stats.json agree that nothing was
    lost: no drops anywhere, everything acknowledged, stored == captured."""
    f = final_line(sx)
    assert f["queue_drops"] == 0 and f["spool_drops"] == 0, f"sensor drops: {f}\n{sx.text()}"
    assert f["pending"] == 0 and f["spool_holds"] == 0, f"sensor ended with un-ACKed batches: {f}"
    assert f["acked_packets"] == f["captured"], f"acknowledged {f['acked_packets']} of {f['captured']} packets"
    st = stats_json(datadir)
    assert st["stored"]["packets"] == f["captured"], f"stats.json {st} vs sensor {f}"
    assert st["receiver"]["missing_batches"] == 0 and st["receiver"]["rejected_batches"] == 0, st
    rep = st["sensor_reported"]
    assert rep["queue_drops"] == 0 and rep["spool_drops"] == 0 and rep["kernel_drops"] == 0, st
    return f, st


def lab_ab(lab):
    a, b = lab.add("a"), lab.add("b")
    mac_a, _ = lab.veth(a, "va", "198.18.0.1", b, "vb", "198.18.0.2")
    return a, b, mac_a, "198.18.0.2"


def seg_names(datadir):
    d = Path(datadir) / "sensors" / "s1" / "segments"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# ---- tests -------------------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["batch", "interval", "never"])
def test_receiver_killed_and_restarted_mid_stream(binaries, certs, procs, lab, tmp_path, monkeypatch, fsync):
    """SIGKILL the receiver while 3000 packets/s stream in, restart it on the same
    data dir 2 s later: it recovers its open segment to the last commit, the sensor
    resends what was not acknowledged, and every packet is stored exactly once, with
    every storage.fsync policy (a process crash keeps the page cache, so even `never`
    must hold)."""
    t0 = time.time()
    monkeypatch.setenv("PCAPLINE_STORAGE_FSYNC", fsync)  # inherited by both receivers
    a, b, mac_a, rx_addr = lab_ab(lab)
    datadir = tmp_path / "data"
    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx1.log")
    start_sink(procs, tmp_path, b, rx_addr)
    td = start_tcpdump(procs, a, "va", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
    sx = start_live_sensor(procs, binaries, certs, a, "va", rx_addr, tmp_path / "sx.log")

    traffic = Traffic(a, rx_addr, pps=3000, dur=10)
    time.sleep(4)
    assert any(n.startswith(".open-") for n in seg_names(datadir)), \
        f"no segment open after 4 s of traffic: {seg_names(datadir)}\n{rx.text()}"
    rx.stop(signal.SIGKILL)
    assert rx.p.returncode == -signal.SIGKILL, rx.p.returncode
    left_open = [n for n in seg_names(datadir) if n.startswith(".open-")]
    assert left_open, "SIGKILL left no open segment: the crash did not hit a segment being written"
    time.sleep(2)
    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx2.log")
    # The port opens while the store worker still recovers: the recovery's line follows.
    log2 = N.wait_for(lambda: "state loaded" in rx.text() and rx.text(), 20, "the recovery", rx.text)
    # The open segment is recovered up to its last commit, or removed if the crash came
    # before its first commit (it then held only unacknowledged data, sent again).
    m = re.search(r"store: s1: state loaded .*; (\d+) open segment\(s\) recovered, (\d+) holding only "
                  r"unacknowledged data removed", log2)
    assert m and int(m.group(1)) + int(m.group(2)) == len(left_open), log2
    sent, errors = traffic.join()
    assert errors == 0 and sent == 30000, (sent, errors)
    wait_log(sx, "resuming at batch", 15, "sensor s1 reconnecting")
    time.sleep(QUIET_S)

    stop_all([sx], [td], rx)
    text = sx.text()
    assert text.count("uplink: connected to") >= 2, text
    assert re.search(r"disconnected: .*will resend", text), text
    stored, _ = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx, td, mac_a,
                                             N.LINKTYPE_ETHERNET, "va")
    assert len(stored) >= 30000, len(stored)
    assert not [n for n in seg_names(datadir) if n.startswith(".open-")]
    print(f"receiver crash: {len(stored)} packets stored exactly once in {time.time() - t0:.1f} s")
    # The stored counters are committed with the data they count, so they survive
    # the crash and still add up with the sensor's cumulative counters.
    st = stats_json(datadir)
    assert st["stored"]["packets"] == len(stored), st
    assert_counters(datadir, sx)


def test_uplink_down_15s_spools_and_delivers_everything(binaries, certs, procs, lab, tmp_path):
    """The uplink veth is down for 15 s while the sensor keeps capturing 2000
    packets/s on a second veth pair: batches beyond the 1 MiB window go to the spool,
    the sensor reconnects when the link is back, and nothing is lost."""
    t0 = time.time()
    a, b, c = lab.add("a"), lab.add("b"), lab.add("c")
    _, mac_b = lab.veth(a, "va", "198.18.0.1", b, "vb", "198.18.0.2")      # uplink
    mac_c, _ = lab.veth(a, "vc", "198.18.1.1", c, "vt", "198.18.1.2")      # captured
    rx_addr, peer = "198.18.0.2", "198.18.1.2"
    datadir, spool = tmp_path / "data", tmp_path / "spool"
    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx.log")
    start_sink(procs, tmp_path, c, peer)
    td = start_tcpdump(procs, a, "vc", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
    env = {"PCAPLINE_SPOOL_DIR": str(spool), "PCAPLINE_UPLINK_WINDOW": "1MiB"}
    sx = start_live_sensor(procs, binaries, certs, a, "vc", rx_addr, tmp_path / "sx.log", env=env)

    traffic = Traffic(a, peer, pps=2000, dur=22)
    time.sleep(3)
    N.run(["ip", "-n", a, "link", "set", "va", "down"])
    try:
        time.sleep(14)
        held = spooled(spool)
        assert held, f"after 14 s without uplink nothing is spooled:\n{sx.text()}"
        time.sleep(1)
    finally:
        N.run(["ip", "-n", a, "link", "set", "va", "up"])
        # Going down flushed the permanent neighbour entry; put it back (no ARP).
        N.run(["ip", "-n", a, "neigh", "replace", rx_addr, "lladdr", mac_b, "dev", "va", "nud", "permanent"])
    sent, errors = traffic.join()
    assert errors == 0, errors
    N.wait_for(lambda: not spooled(spool), 40, "the spool to drain after the link came back")
    time.sleep(QUIET_S)

    stop_all([sx], [td], rx)
    stored, _ = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx, td, mac_c,
                                             N.LINKTYPE_ETHERNET, "vc")
    assert len(stored) >= sent, (len(stored), sent)
    f, st = assert_counters(datadir, sx)
    print(f"uplink down 15 s: {len(held)} batches spooled at the worst, {len(stored)} packets stored exactly "
          f"once; sensor {f}; in {time.time() - t0:.1f} s")


def test_receiver_disk_full_then_grown(binaries, certs, procs, lab, tmp_path):
    """The receiver stores on a 3 MiB tmpfs and gets ~12 MB: it reports the failure,
    keeps what it stored as valid pcap files, holds the sensor back, and once the
    tmpfs is grown to 64 MiB it catches up: every packet stored exactly once."""
    t0 = time.time()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    N.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "pcapline-test", mnt])
    try:
        a, b, mac_a, rx_addr = lab_ab(lab)
        datadir = mnt / "data"
        rx = Proc([binaries[1], "-l", f"{rx_addr}:{RX_PORT}", "-d", datadir, "--log-level", "debug"]
                  + tls_args(certs, "receiver"), tmp_path / "rx.log", netns=b,
                  env={"PCAPLINE_LOG_STATS_INTERVAL": "1s"})
        procs.append(rx)
        N.wait_for(lambda: N.listening(b, "tcp", RX_PORT) or rx.p.poll() is not None, 10, "receiver")
        assert rx.p.poll() is None, rx.text()
        start_sink(procs, tmp_path, b, rx_addr)
        td = start_tcpdump(procs, a, "va", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
        sx = start_live_sensor(procs, binaries, certs, a, "va", rx_addr, tmp_path / "sx.log")

        traffic = Traffic(a, rx_addr, pps=3000, dur=10)
        wait_log(rx, "storage failed", 15, "receiver")
        seg_dir = datadir / "sensors" / "s1" / "segments"
        closed = sorted(p for p in seg_dir.iterdir() if not p.name.startswith("."))
        assert closed, f"storage failed but no segment was kept: {seg_names(datadir)}"
        for p in closed:
            r = N.run(["capinfos", "-c", "-M", p], check=False)
            assert r.returncode == 0 and not r.stderr.strip(), f"{p.name} is not a valid pcap: {r.stderr}"
            assert N.capinfos_count(p) == len(N.read_pcap(p).records) > 0
        # Still failing a moment later: the session is held, not dropped.
        time.sleep(2)
        text = rx.text()
        assert "storage works again" not in text, text
        assert "sensor s1: closed" not in text.split("storage failed", 1)[1], \
            f"the session was closed instead of held:\n{text}"
        N.run(["mount", "-o", "remount,size=64m", mnt])
        wait_log(rx, "storage works again", 15, "receiver")
        sent, errors = traffic.join()
        assert errors == 0 and sent == 30000, (sent, errors)
        time.sleep(QUIET_S)

        stop_all([sx], [td], rx)
        stored, _ = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx, td, mac_a,
                                                 N.LINKTYPE_ETHERNET, "va")
        assert len(stored) >= 30000
        f, st = assert_counters(datadir, sx)
        assert st["receiver"]["storage_errors"] > 0, st
        print(f"disk full: {st['receiver']['storage_errors']} failed attempts, {len(closed)} segment(s) kept "
              f"while full, {len(stored)} packets stored exactly once; {time.time() - t0:.1f} s")
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop(signal.SIGKILL)
        r = N.run(["umount", mnt], check=False)
        if r.returncode != 0:
            N.run(["umount", "-l", mnt], check=False)


def test_restarted_sensor_delivers_its_spool(binaries, certs, procs, lab, tmp_path):
    """The receiver is down; a sensor with a spool and a 1 MiB window captures ~6 MB,
    is stopped (drain timeout 1 s) and leaves its batches in the spool. The receiver
    comes up, a new sensor process on the same spool sends them: everything tcpdump
    saw during the first run is stored exactly once."""
    t0 = time.time()
    a, b, mac_a, rx_addr = lab_ab(lab)
    datadir, spool = tmp_path / "data", tmp_path / "spool"
    start_sink(procs, tmp_path, b, rx_addr)
    td = start_tcpdump(procs, a, "va", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
    env = {"PCAPLINE_SPOOL_DIR": str(spool), "PCAPLINE_UPLINK_WINDOW": "1MiB",
           "PCAPLINE_UPLINK_DRAIN_TIMEOUT": "1s"}
    sx1 = start_live_sensor(procs, binaries, certs, a, "va", rx_addr, tmp_path / "sx1.log", env=env,
                            wait_connected=False)
    sent, errors = Traffic(a, rx_addr, pps=3000, dur=5).join()
    assert errors == 0 and sent == 15000, (sent, errors)
    time.sleep(QUIET_S)
    assert sx1.stop(signal.SIGTERM, timeout=20) == 0, sx1.text()
    assert td.stop(signal.SIGINT, timeout=10) == 0, td.text()
    f1 = final_line(sx1)
    assert f1["acked_batches"] == 0 and f1["captured"] >= sent, f1
    assert f1["queue_drops"] == 0 and f1["spool_drops"] == 0, f1
    held = spooled(spool)
    assert f1["spool_holds"] == len(held) > 0, (f1, [p.name for p in held])
    assert f"spool: {len(held)} batches kept in {spool}" in sx1.text(), sx1.text()

    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx.log")
    sx2 = start_live_sensor(procs, binaries, certs, a, "va", rx_addr, tmp_path / "sx2.log", env=env)
    assert f"spool: {len(held)} batches" in sx2.text() and "pending from a previous run" in sx2.text(), sx2.text()
    N.wait_for(lambda: not spooled(spool), 30, "the spool to drain")
    time.sleep(0.5)
    assert sx2.stop(signal.SIGTERM, timeout=20) == 0, sx2.text()
    f2 = final_line(sx2)
    assert f2["pending"] == 0 and f2["spool_holds"] == 0 and f2["acked_batches"] == len(held), f2
    assert rx.stop(signal.SIGTERM, timeout=20) == 0, rx.text()

    # sx1 is the run whose capture is judged (its final line: captured, drops).
    stored, _ = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx1, td, mac_a,
                                             N.LINKTYPE_ETHERNET, "va")
    st = stats_json(datadir)
    assert st["stored"]["packets"] == f1["captured"] == f2["acked_packets"], (st, f1, f2)
    assert st["receiver"]["missing_batches"] == 0 and st["receiver"]["duplicate_batches"] == 0, st
    print(f"spool across restart: {len(held)} batches, {len(stored)} packets stored exactly once; "
          f"{time.time() - t0:.1f} s")
