# SPDX-License-Identifier: BSD-2-Clause
"""Connection life: failover across receivers, a dead peer noticed by heartbeats,
and SIGHUP changing the filter without losing packets."""
import os
import signal
import socket
import subprocess
import time

from conftest import DATA, Proc, free_port, tls_args, wait_listening


def stored_count(seg_dir):
    total = 0
    for p in sorted(seg_dir.glob("*.pcap")):
        out = subprocess.run(["capinfos", "-Mc", p], capture_output=True, text=True, check=True).stdout
        total += int(out.split("Number of packets:")[1].split()[0])
    return total


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_failover_to_second_receiver(binaries, certs, procs, tmp_path):
    """The first receiver in the list is down: the sensor moves on to the second."""
    sensor, receiver = binaries
    dead, live = free_port(), free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{live}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(live)
    src = DATA / "redis-benchmark-sll.pcap"
    sx = Proc([sensor, "-r", src, "-t", f"127.0.0.1:{dead},127.0.0.1:{live}"] + tls_args(certs, "s1"),
              tmp_path / "sx.log")
    procs.append(sx)
    assert sx.wait(30) == 0, sx.text()
    log = sx.text()
    assert f"127.0.0.1:{dead}: connect: Connection refused" in log, log
    assert f"connected to 127.0.0.1:{live}" in log, log
    assert "acknowledged 1 batches / 150 packets" in log, log
    assert rx.stop() == 0
    assert stored_count(tmp_path / "data/sensors/s1/segments") == 150


def test_dead_receiver_noticed_by_heartbeat(binaries, certs, procs, tmp_path):
    """A receiver that stops answering (SIGSTOP) is declared dead after three
    heartbeat intervals; the sensor reconnects once it answers again."""
    sensor, receiver = binaries
    port = free_port()
    env = {"PCAPLINE_SESSION_HEARTBEAT": "300ms"}
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "rx.log", env=env)
    procs.append(rx)
    wait_listening(port)
    sx = Proc([sensor, "-i", "lo", "-f", "udp port 9", "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
              tmp_path / "sx.log")
    procs.append(sx)
    wait_for(lambda: "connected to" in sx.text(), 10, "the sensor to connect")
    os.kill(rx.p.pid, signal.SIGSTOP)
    t0 = time.time()
    try:
        wait_for(lambda: "receiver silent for" in sx.text(), 5, "the sensor to notice the silence")
        noticed = time.time() - t0
    finally:
        os.kill(rx.p.pid, signal.SIGCONT)
    assert noticed < 3.0, f"took {noticed:.1f} s with a 0.3 s heartbeat"
    wait_for(lambda: sx.text().count("connected to") >= 2, 15, "the sensor to reconnect")
    assert sx.stop() == 0
    assert rx.stop() == 0


def test_sighup_changes_filter_without_loss(binaries, certs, procs, tmp_path):
    """Packets to port A are captured, then SIGHUP switches the filter to port B:
    every packet sent to B after the reload is stored, none sent to A."""
    sensor, receiver = binaries
    port = free_port()
    pa, pb = free_port(), free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(port)
    conf = tmp_path / "sensor.yaml"
    conf.write_text(f"capture:\n  interfaces: [lo]\n  filter: udp dst port {pa}\n")
    sx = Proc([sensor, "-c", conf, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sx.log")
    procs.append(sx)
    wait_for(lambda: "connected to" in sx.text(), 10, "the sensor to connect")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(20):
        s.sendto(b"a%03d" % i, ("127.0.0.1", pa))
    conf.write_text(f"capture:\n  interfaces: [lo]\n  filter: udp dst port {pb}\n")
    time.sleep(0.3)
    os.kill(sx.p.pid, signal.SIGHUP)
    wait_for(lambda: f"filter is now 'udp dst port {pb}'" in sx.text(), 5, "the reload")
    for i in range(30):
        s.sendto(b"b%03d" % i, ("127.0.0.1", pb))
        s.sendto(b"x%03d" % i, ("127.0.0.1", pa))
    time.sleep(0.5)
    assert sx.stop() == 0, sx.text()
    assert rx.stop() == 0
    segs = sorted((tmp_path / "data/sensors/s1/segments").glob("*.pcap"))
    payloads = []
    for p in segs:
        out = subprocess.run(["tshark", "-r", p, "-T", "fields", "-e", "udp.dstport", "-e", "data.data"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
        payloads += [line.split("\t") for line in out if line]
    got = [(int(d), bytes.fromhex(h).decode()) for d, h in payloads]
    want = [(pa, "a%03d" % i) for i in range(20)] + [(pb, "b%03d" % i) for i in range(30)]
    assert got == want, got
