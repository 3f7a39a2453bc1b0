# SPDX-License-Identifier: BSD-2-Clause
"""A sensor killed with SIGKILL and restarted on the same spool never reuses a batch
sequence number, so the receiver never takes a new batch for a duplicate.

The receiver syncs every 8 s (storage.fsync: interval), so ACKs lag; the sensor has a
1 MiB window and a spool. Burst A overflows into the spool; the spool drains back into
memory (its files stay until ACKed); burst B goes from memory and is stored; the sensor
is killed with -9 and restarted on the same spool; burst C follows. Every packet of
every burst must be stored exactly once, checked against what the sender sent (each
payload names its burst and number).

The sensor captures on loopback with a filter for the test's own UDP port.
"""
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Proc, free_port, tls_args, wait_listening
from netns import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: captures packets on lo")

MAGIC = b"PLRESTRT"
SIZE = 400  # UDP payload bytes

# Sends `count` datagrams at `pps`: MAGIC, burst tag, number, then bytes derived from
# both (incompressible, so that batches keep their size, and reproducible).
PACER = r"""
import hashlib, socket, struct, sys, time
port, tag, count, pps, size = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic()
n = 0
while n < count:
    due = min(int((time.monotonic() - t0) * pps) + 1, count)
    while n < due:
        head = b"PLRESTRT" + tag + struct.pack("!I", n)
        fill = b""
        i = 0
        while len(head) + len(fill) < size:
            fill += hashlib.sha256(head + struct.pack("!I", i)).digest()
            i += 1
        s.sendto((head + fill)[:size], ("127.0.0.1", port))
        n += 1
    time.sleep(0.001)
print(n)
"""


def payload(tag, n):
    """The datagram PACER sends as number n of burst tag."""
    head = MAGIC + tag.encode() + struct.pack("!I", n)
    fill = b""
    i = 0
    while len(head) + len(fill) < SIZE:
        fill += hashlib.sha256(head + struct.pack("!I", i)).digest()
        i += 1
    return (head + fill)[:SIZE]


def send_burst(port, tag, count, pps):
    r = subprocess.run([sys.executable, "-c", PACER, str(port), tag, str(count), str(pps), str(SIZE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and int(r.stdout) == count, (r.stdout, r.stderr)


def stored_keys(datadir, check_bytes=False):
    """(burst, n) of every test datagram in every segment file, open ones included
    (the receiver flushes each batch into them), with repetitions. With check_bytes,
    every datagram must be byte for byte what the sender sent under that name."""
    keys = []
    seg = Path(datadir) / "sensors" / "s1" / "segments"
    for p in sorted(seg.iterdir()) if seg.is_dir() else []:
        b = p.read_bytes()
        assert len(b) >= 24 and b[:4] in (b"\x4d\x3c\xb2\xa1", b"\xd4\xc3\xb2\xa1"), p
        off = 24
        while off + 16 <= len(b):
            caplen = struct.unpack_from("<I", b, off + 8)[0]
            if off + 16 + caplen > len(b):
                break  # a record still being written
            data = b[off + 16:off + 16 + caplen]
            i = data.find(MAGIC)
            if i >= 0:
                key = (data[i + 8:i + 9].decode(), struct.unpack("!I", data[i + 9:i + 13])[0])
                if check_bytes:
                    assert data[i:] == payload(*key), f"{p.name}: datagram {key} differs from what was sent"
                keys.append(key)
            off += 16 + caplen
    return keys


def stats_lines(sx):
    return [tuple(int(x) for x in m) for m in
            re.findall(r"stats: captured .*?spool holds (\d+) batches\); batches sent (\d+) \(\d+ resent\), "
                       r"acknowledged (\d+) batches", sx.text())]


def acked(sx):
    lines = stats_lines(sx)
    return lines[-1][2] if lines else 0


def test_killed_sensor_restarted_on_its_spool_loses_nothing(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    port, udp = free_port(), free_port()
    datadir, spool = tmp_path / "data", tmp_path / "spool"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"),
              tmp_path / "rx.log", env={"PCAPLINE_STORAGE_FSYNC": "interval",
                                        "PCAPLINE_STORAGE_FSYNC_INTERVAL": "8s"})
    procs.append(rx)
    wait_listening(port)
    env = {"PCAPLINE_SPOOL_DIR": str(spool), "PCAPLINE_UPLINK_WINDOW": "1MiB",
           "PCAPLINE_BATCH_MAX_BYTES": "64KiB", "PCAPLINE_BATCH_MAX_DELAY": "50ms",
           "PCAPLINE_CAPTURE_FILTER": f"udp dst port {udp}", "PCAPLINE_NAMES_ENABLED": "false",
           "PCAPLINE_LOG_STATS_INTERVAL": "1s"}
    argv = [sensor, "-i", "lo", "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1")

    def start_sensor(name):
        sx = Proc(argv, tmp_path / name, env=env)
        procs.append(sx)
        wait_for(lambda: "uplink: connected to" in sx.text() or sx.p.poll() is not None, 15, "sensor connected")
        assert sx.p.poll() is None, sx.text()
        return sx

    sx1 = start_sensor("sx1.log")
    # Warm-up: its ACK marks a sync of the receiver; the next one is 8 s later.
    send_burst(udp, "W", 50, 1000)
    wait_for(lambda: acked(sx1) > 0, 15, "the first ACK")
    t_sync = time.time()
    # A: ~1.6 MB, more than the 1 MiB window: the rest goes to the spool.
    send_burst(udp, "A", 3500, 5000)
    wait_for(lambda: stats_lines(sx1) and stats_lines(sx1)[-1][0] > 0, 5, "burst A reaching the spool")
    # The next sync ACKs the window; the spooled batches come back into memory and are
    # sent (their files stay until ACKed).
    before = acked(sx1)
    wait_for(lambda: acked(sx1) > before, 15, "the second ACK")
    assert time.time() - t_sync > 5, "ACKs did not lag: the receiver did not sync every 8 s"
    t_sync = time.time()
    # B: small, sent from memory and stored, not yet ACKed.
    send_burst(udp, "B", 300, 2000)
    wait_for(lambda: sum(1 for k in stored_keys(datadir) if k[0] == "B") == 300, 5, "burst B stored")
    sx1.stop(signal.SIGKILL)
    held = sorted(spool.glob("*.batch"))
    assert held, f"nothing left in the spool at the kill ({time.time() - t_sync:.1f} s after the last ACK): " \
                 "the next sync came first, the scenario did not happen"

    sx2 = start_sensor("sx2.log")
    send_burst(udp, "C", 600, 2000)
    counts = {}

    def all_stored():
        counts.clear()
        for k in stored_keys(datadir):
            counts[k[0]] = counts.get(k[0], 0) + 1
        return counts.get("C", 0) >= 600

    try:
        wait_for(all_stored, 25, "burst C stored")
    finally:
        print(f"stored per burst: {counts}; {len(held)} spool files at the kill")
    assert sx2.stop(signal.SIGTERM, timeout=30) == 0, sx2.text()
    assert rx.stop(signal.SIGTERM, timeout=20) == 0, rx.text()

    keys = stored_keys(datadir, check_bytes=True)
    expected = {("W", n) for n in range(50)} | {("A", n) for n in range(3500)} | \
               {("B", n) for n in range(300)} | {("C", n) for n in range(600)}
    dup = len(keys) - len(set(keys))
    missing = expected - set(keys)
    assert not missing and dup == 0 and len(keys) == len(expected), \
        f"{len(missing)} missing (e.g. {sorted(missing)[:5]}), {dup} stored twice\n{rx.text()[-3000:]}"
    st = json.loads((datadir / "sensors" / "s1" / "stats.json").read_text())
    assert st["receiver"]["duplicate_batches"] == 0, st
    assert st["receiver"]["missing_batches"] == 0, st


@pytest.mark.parametrize("damage", ["older-state", "state-lost"])
def test_spool_with_unreliable_sequence_state(binaries, certs, procs, tmp_path, damage):
    """The receiver stored burst P; burst Q waits in the spool of a stopped sensor. Then
    the spool's sequence state goes wrong: either it is an older copy (the spool put back
    from a backup: Q's files renamed to the numbers 1.., the state saying so), so that
    the receiver holds numbers of the epoch the sensor does not know it used (PROTOCOL.md
    6.3: the WELCOME's next_seq is above the sensor's), or the state file is lost. Either
    way the sensor must move to a new epoch and resend Q renumbered from 1: every packet
    of P and Q stored exactly once, none dropped as a duplicate."""
    sensor, receiver = binaries
    port, udp = free_port(), free_port()
    datadir, spool = tmp_path / "data", tmp_path / "spool"
    env = {"PCAPLINE_SPOOL_DIR": str(spool), "PCAPLINE_BATCH_MAX_BYTES": "64KiB",
           "PCAPLINE_BATCH_MAX_DELAY": "50ms", "PCAPLINE_CAPTURE_FILTER": f"udp dst port {udp}",
           "PCAPLINE_NAMES_ENABLED": "false", "PCAPLINE_LOG_STATS_INTERVAL": "1s",
           "PCAPLINE_UPLINK_DRAIN_TIMEOUT": "1s"}
    argv = [sensor, "-i", "lo", "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1")

    def start_rx(name):
        rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"),
                  tmp_path / name)
        procs.append(rx)
        wait_listening(port)
        return rx

    def start_sensor(name, connected=True):
        sx = Proc(argv, tmp_path / name, env=env)
        procs.append(sx)
        what = "uplink: connected to" if connected else "sensor s1 starting"
        wait_for(lambda: what in sx.text() or sx.p.poll() is not None, 15, what)
        assert sx.p.poll() is None, sx.text()
        return sx

    rx = start_rx("rx1.log")
    sx = start_sensor("sx1.log")
    send_burst(udp, "P", 1500, 5000)
    wait_for(lambda: re.search(r"acknowledged \d+ batches / 1500 packets, pending 0", sx.text()), 15,
             "burst P acknowledged")
    assert rx.stop() == 0
    send_burst(udp, "Q", 100, 2000)
    wait_for(lambda: re.search(r"stats: captured 1600 packets", sx.text()), 10, "burst Q captured")
    assert sx.stop(signal.SIGTERM) == 0, sx.text()
    held = sorted(spool.glob("*.batch"))
    assert held, sx.text()
    k = int(re.search(r"acknowledged (\d+) batches / 1500 packets", sx.text()).group(1))
    state = (spool / "sequence").read_text()
    if damage == "older-state":
        for i, p in enumerate(held, 1):
            p.rename(spool / f"{i:020d}.batch")
        m = len(held)
        assert k > m + 1, (k, m)
        state = re.sub(r"reserved \d+", f"reserved {m + 1:020d}", state)
        (spool / "sequence").write_text(re.sub(r"last \d+", f"last {m:020d}", state))
    else:
        (spool / "sequence").unlink()

    rx = start_rx("rx2.log")
    sx = start_sensor("sx2.log", connected=False)
    wait_for(lambda: re.search(r"acknowledged \d+ batches / 100 packets, pending 0", sx.text()) or
             sx.p.poll() is not None, 20, "burst Q acknowledged")
    assert sx.stop(signal.SIGTERM) == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    if damage == "older-state":
        assert re.search(rf"warn: uplink: 127\.0\.0\.1:{port}: epoch reused: receiver holds batches up to {k}, "
                         rf"this sensor numbered only up to {m}; moving to a new epoch", sx.text()), sx.text()
        assert f"{m} kept batches renumbered from 1" in sx.text(), sx.text()
    else:
        assert f"has no usable sequence state: its {len(held)} batches are sent again under a new epoch" \
            in sx.text(), sx.text()
    keys = stored_keys(datadir, check_bytes=True)
    expected = {("P", n) for n in range(1500)} | {("Q", n) for n in range(100)}
    dup = len(keys) - len(set(keys))
    assert set(keys) == expected and dup == 0, \
        f"{len(expected - set(keys))} missing, {dup} stored twice\n{rx.text()[-3000:]}"
    st = json.loads((datadir / "sensors" / "s1" / "stats.json").read_text())
    assert st["receiver"]["duplicate_batches"] == 0 and st["receiver"]["missing_batches"] == 0, st
    assert st["stored"]["packets"] == 1600, st
