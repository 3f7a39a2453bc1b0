# SPDX-License-Identifier: BSD-2-Clause
"""Storage corner cases that must never stall a sensor or lose a record silently.

- Two interfaces with the same name (a pcapng with two IDBs both called eth0, and a
  live sensor on `-i lo,lo`) whose first packets share a timestamp: their open segments
  must not collide; every record is stored exactly once, under its own interface.
- A record dated after 2106 (past the classic pcap format's 32-bit seconds) among good
  ones: the good records are stored, the bad one is counted with its reason, the batch
  is acknowledged and the sensor finishes.

The captures are written here by a tiny pcapng writer; stored records are compared,
hash by hash, with the source (the test reader of test_replay.py, and tshark).
"""
import hashlib
import json
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import netns as N
import test_replay as replay
from conftest import Proc, free_port, tls_args, wait_listening

# <first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap
SEGMENT_RE = re.compile(r"^(\d{20})-([0-9a-f]{16})-(\d+)\.(\d+)-(.+)\.pcap$")
T0 = 1_700_000_000 * 10**9  # 2023-11-14, nanoseconds
AFTER_2106 = 7_258_118_400 * 10**9  # 2200-01-01T00:00:00Z: seconds above 2^32 - 1


# ---- a minimal pcapng writer ------------------------------------------------------

def _block(btype, body):
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def _opt(code, val):
    return struct.pack("<HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def write_pcapng(path, ifaces, records):
    """ifaces: [(linktype, name)], nanosecond resolution; records: [(iface, ts_ns, data)]."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, name in ifaces:
        opts = _opt(2, name.encode()) + _opt(9, b"\x09") + _opt(0, b"")
        out.append(_block(1, struct.pack("<HHI", linktype, 0, 65535) + opts))
    for iface, ts, data in records:
        out.append(_block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data))
    Path(path).write_bytes(b"".join(out))


def ether_frame(i, size):
    """An Ethernet/IPv4 frame (198.18.0.1 -> 198.18.0.2) whose payload carries i."""
    payload = struct.pack("!I", i) * (size // 4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), i & 0xFFFF, 0, 64, 253, 0,
                     bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + payload


# ---- helpers -------------------------------------------------------------------------

def start_receiver(procs, certs, receiver_bin, data_dir, log, netns=None, env=None):
    port = free_port() if netns is None else 47800
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data_dir] + tls_args(certs, "receiver"), log,
              netns=netns, env=env)
    procs.append(rx)
    wait_listening(port, netns=netns)
    return rx, port


def replay_file(procs, certs, sensor_bin, port, capture, log, timeout=30, env=None):
    sx = Proc([sensor_bin, "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), log, env=env)
    procs.append(sx)
    try:
        rc = sx.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"sensor still running after {timeout} s (stalled):\n{sx.text()[-3000:]}")
    assert rc == 0, f"sensor exited {rc}:\n{sx.text()}"
    return sx


def stored_by_ifindex(seg_dir):
    """{ifindex: [Rec, ...]} in storage order, from the closed segments (none left open)."""
    files = sorted(seg_dir.iterdir())
    assert not [p.name for p in files if p.name.startswith(".open-")], [p.name for p in files]
    per_if = {}
    for p in files:
        m = SEGMENT_RE.match(p.name)
        assert m, f"unexpected segment name {p.name}"
        cap = replay.read_capture(p)
        assert cap.fmt == "pcap" and not cap.truncated and cap.recs, p.name
        assert cap.recs[0].ts_ns == int(m.group(1)), f"{p.name}: name does not carry the first timestamp"
        per_if.setdefault(int(m.group(4)), []).append((int(m.group(1)), int(m.group(3)), cap.recs))
    return {i: [r for s in sorted(segs, key=lambda s: (s[1], s[0])) for r in s[2]] for i, segs in per_if.items()}


def key(r):
    return (r.ts_ns, r.orig_len, r.cap_len, r.digest)


def stats(data_dir):
    return json.loads((Path(data_dir) / "sensors" / "s1" / "stats.json").read_text())


# ---- item: two interfaces with one name ---------------------------------------------

def test_two_interfaces_named_eth0_sharing_timestamps(binaries, certs, procs, tmp_path):
    """Every batch starts with both interfaces at the same nanosecond: before the fix
    the second open segment collided with the first ('File exists') and the receiver
    retried that batch for ever."""
    sensor_bin, receiver_bin = binaries
    capture = tmp_path / "two-eth0.pcapng"
    recs = []
    for i in range(3000):  # ~3.7 MB: 64 KiB batches, a new pair of segments after each
        ts = T0 + (i // 2) * 1000
        recs.append((i % 2, ts, ether_frame(i, 1200)))
    write_pcapng(capture, [(1, "eth0"), (1, "eth0")], recs)
    src = replay.read_capture(capture)
    assert [ifc.name for ifc in src.ifaces] == ["eth0", "eth0"] and len(src.recs) == 3000

    data_dir = tmp_path / "data"
    rx, port = start_receiver(procs, certs, receiver_bin, data_dir, tmp_path / "receiver.log",
                              env={"PCAPLINE_STORAGE_SEGMENT_SIZE": "65536"})
    sx = replay_file(procs, certs, sensor_bin, port, capture, tmp_path / "sensor.log",
                     env={"PCAPLINE_BATCH_MAX_BYTES": "65536"})
    assert re.search(r"acknowledged (\d+) batches / 3000 packets, pending 0", sx.text()), sx.text()
    assert rx.stop() == 0, rx.text()
    log = rx.text()
    assert "File exists" not in log and "storage failed" not in log, log

    got = stored_by_ifindex(data_dir / "sensors" / "s1" / "segments")
    assert sorted(got) == [0, 1], sorted(got)
    for i in (0, 1):
        want = [key(r) for r in src.recs if r.iface == i]
        assert [key(r) for r in got[i]] == want, f"interface {i}: {len(got[i])} stored, {len(want)} in the source"
    st = stats(data_dir)
    assert st["stored"]["packets"] == 3000, st
    assert st["receiver"]["storage_errors"] == 0, st

    # Many batches opened both segments with one timestamp; capinfos counts the same.
    seg_dir = data_dir / "sensors" / "s1" / "segments"
    firsts = [SEGMENT_RE.match(p.name) for p in seg_dir.iterdir()]
    shared = {(m.group(1), m.group(3)) for m in firsts if m.group(4) == "0"} & \
        {(m.group(1), m.group(3)) for m in firsts if m.group(4) == "1"}
    assert len(shared) >= 10, sorted(p.name for p in seg_dir.iterdir())
    total = 0
    for p in seg_dir.iterdir():
        out = subprocess.run(["capinfos", "-c", "-M", str(p)], capture_output=True, text=True, timeout=30).stdout
        total += int(re.search(r"Number of packets:\s*(\d+)", out).group(1))
    assert total == 3000


def test_live_sensor_on_lo_twice(binaries, certs, procs, tmp_path):
    """A live sensor on `-i lo,lo` in a namespace of its own: the kernel stamps a packet
    once, so both captures see it at the same nanosecond and the first packet of each
    batch collided. Every packet must be stored once per interface, as tcpdump saw it."""
    sensor_bin, receiver_bin = binaries
    nss = N.Namespaces()
    ns = nss.add("lolo")
    try:
        N.run(["ip", "-n", ns, "addr", "add", "198.18.7.1/32", "dev", "lo"])
        data_dir = tmp_path / "data"
        rx, port = start_receiver(procs, certs, receiver_bin, data_dir, tmp_path / "receiver.log", netns=ns)
        pcap = tmp_path / "tcpdump.pcap"
        td = Proc(["tcpdump", "-i", "lo", "-n", "-U", "--time-stamp-precision=nano", "-w", pcap,
                   "udp and dst port 5999"], tmp_path / "tcpdump.log", netns=ns)
        procs.append(td)
        sx = Proc([sensor_bin, "-i", "lo,lo", "-f", "udp and dst port 5999", "-t", f"127.0.0.1:{port}"]
                  + tls_args(certs, "s1"), tmp_path / "sensor.log", netns=ns)
        procs.append(sx)
        N.wait_for(lambda: "uplink: connected to" in sx.text() and "listening on" in td.text(), 15,
                   "sensor and tcpdump ready")
        sent = 400
        # Bursts with pauses, so that many batches (each closed by its 200 ms age) start
        # with a packet both captures share.
        send = ("import socket,sys,time\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "for i in range(int(sys.argv[1])):\n"
                "    s.sendto(i.to_bytes(4,'big')*64,('198.18.7.1',5999))\n"
                "    if i % 40 == 39: time.sleep(0.25)\n")
        N.nsrun(ns, [N.PY, "-c", send, str(sent)], timeout=60)

        def stored():
            try:
                return stats(data_dir)["stored"]["packets"]
            except (OSError, ValueError, KeyError):
                return -1
        N.wait_for(lambda: replay.read_capture(pcap).recs and len(replay.read_capture(pcap).recs) >= sent, 15,
                   "tcpdump to see every packet")
        assert sx.stop() == 0, sx.text()
        assert td.stop() == 0, td.text()
        N.wait_for(lambda: stored() == 2 * sent, 20, f"{2 * sent} packets stored (stats.json: {stored()})")
        assert rx.stop() == 0, rx.text()
        log = rx.text()
        assert "File exists" not in log and "storage failed" not in log, log

        want = [key(r) for r in replay.read_capture(pcap).recs]
        assert len(want) == sent
        got = stored_by_ifindex(data_dir / "sensors" / "s1" / "segments")
        assert sorted(got) == [0, 1], sorted(got)
        for i in (0, 1):
            assert [key(r) for r in got[i]] == want, f"interface {i}: {len(got[i])} stored, tcpdump saw {sent}"
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop()
        assert not nss.cleanup()


# ---- item: a record the pcap format cannot hold -----------------------------------

def test_record_after_2106_is_counted_not_retried(binaries, certs, procs, tmp_path):
    """Before the fix the writer's EOVERFLOW was taken for a storage failure: the batch
    was never acknowledged and retried every second, for ever."""
    sensor_bin, receiver_bin = binaries
    capture = tmp_path / "after-2106.pcapng"
    recs = [(0, T0 + i * 1000, ether_frame(i, 200)) for i in range(100)]
    recs.insert(50, (0, AFTER_2106, ether_frame(9999, 200)))
    write_pcapng(capture, [(1, "eth0")], recs)
    src = replay.read_capture(capture)
    assert len(src.recs) == 101 and src.recs[50].ts_ns == AFTER_2106

    data_dir = tmp_path / "data"
    rx, port = start_receiver(procs, certs, receiver_bin, data_dir, tmp_path / "receiver.log")
    sx = replay_file(procs, certs, sensor_bin, port, capture, tmp_path / "sensor.log")
    assert re.search(r"acknowledged \d+ batches / 101 packets, pending 0", sx.text()), sx.text()
    assert rx.stop() == 0, rx.text()
    log = rx.text()
    assert "storage failed" not in log, log
    assert re.search(r"sensor s1: batch \d+: 1 record\(s\) not stored: timestamp beyond pcap range", log), log

    got = stored_by_ifindex(data_dir / "sensors" / "s1" / "segments")
    want = [key(r) for k, r in enumerate(src.recs) if k != 50]
    assert [key(r) for r in got[0]] == want
    st = stats(data_dir)
    assert st["stored"]["packets"] == 100, st
    assert st["receiver"]["unstorable_records"] == {"timestamp_beyond_pcap_range": 1}, st
    assert st["receiver"]["storage_errors"] == 0, st
    assert re.search(r"unstorable records 1 \(timestamp beyond pcap range 1\)", log), log
