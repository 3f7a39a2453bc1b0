# SPDX-License-Identifier: BSD-2-Clause
"""Live capture in network namespaces, checked against tcpdump record by record.

Each test builds its own namespaces (plt-<6hex>-<suffix>, addresses in
198.18.0.0/15 only, IPv6 disabled, permanent neighbour entries so no ARP happens by
itself), runs pcapline-receiver, pcapline-sensor and tcpdump side by side on the
same interface, makes real HTTP and DNS traffic, stops everything cleanly and
compares what the receiver stored with tcpdump's file: same number of records, same
bytes, caplen, origlen and timestamps.

Timestamps. Two AF_PACKET sockets on the same interface are compared here, and
whether they see the same timestamp depends on where the kernel takes it:

* Sent packets: dev_queue_xmit_nit() (net/core/dev.c) clones the skb ONCE for all
  taps and stamps the clone with net_timestamp_set(), i.e. ktime_get_real() when
  netstamp_needed_key is on. libpcap turns that key on: it sets SO_TIMESTAMPNS on
  its packet socket (sock_enable_timestamp -> net_enable_timestamp), and both the
  sensor and tcpdump use libpcap. Every tap then gets the same skb->tstamp and
  tpacket_rcv() (net/packet/af_packet.c) copies it: identical timestamps.
* Received non-TCP packets (ARP, UDP): netif_rx() stamps the skb once
  (net_timestamp_check) before it is handed to every tap: identical timestamps.
* Received TCP packets: the peer's TCP stack put its earliest-departure time into
  skb->tstamp (a CLOCK_MONOTONIC delivery time, skb->tstamp_type != 0). Crossing
  into our namespace, skb_scrub_packet() -> skb_clear_tstamp() keeps delivery times,
  so net_timestamp_check() (which only stamps when skb->tstamp == 0) does nothing,
  and tpacket_get_timestamp() reads skb_tstamp(), which returns 0 for a delivery
  time. Each packet socket therefore falls back to its own ktime_get_real_ts64() in
  tpacket_rcv(): the sensor and tcpdump stamp the same packet microseconds apart.
  Measured on 6.18 (2 vCPUs): at most 8..45 us per run, and only 0..2 of ~280
  received TCP packets per run had equal stamps (final ACKs of the peer, which
  presumably left without a departure time, like TIME_WAIT replies sent through
  ip_send_unicast_reply()).

So the tests demand exact timestamps for every sent packet and every received
non-TCP packet, and |difference| <= TCP_INGRESS_BOUND_NS for received TCP packets.

Order. The taps of one packet run one after the other on one CPU, but two packets
handled at the same moment by two CPUs (veth_xmit -> netif_rx queues each to the
backlog of the CPU that sent it) can reach the two sockets in opposite orders; it
was observed here (two 64 KB segments of one HTTP response, swapped). Records are
therefore paired by content, and two records may only trade places when tcpdump
stamped them at most REORDER_BOUND_NS apart (and at most 32 positions apart).
The stored side is read in the order the receiver wrote it: per interface, the
segment files in name order (first timestamp, batch sequence), concatenated.
"""
import concurrent.futures
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import Proc, tls_args

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns as N  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: creates network namespaces and captures packets")

TCP_INGRESS_BOUND_NS = 1_000_000  # 1 ms; measured: at most 8..45 us per run
# Records may swap places only if tcpdump stamped them at most this far apart (see
# "Order" above).
REORDER_BOUND_NS = 1_000_000
RX_PORT = 24780                    # outside the ephemeral range, so no client can pick it
HTTP_PORT = 8080
DNS_PORT = 5353
DNS_ANSWER = "198.18.0.77"
# tcpdump's ring hands over a partly filled block after its 1 s timeout only; the
# sensor's after 50 ms. Wait longer than that after the last packet before stopping.
QUIET_S = 1.5


@pytest.fixture
def lab(procs):
    """Namespaces for one test; at the end every process of `procs` still running is
    killed by PID, then exactly the namespaces created here are deleted."""
    ns = N.Namespaces()
    try:
        yield ns
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop(signal.SIGKILL)
        errors = ns.cleanup()
        assert not errors, f"could not delete namespaces: {errors}"


# ---- building blocks -------------------------------------------------------------


def start(procs, argv, log, ns):
    p = Proc(argv, log, netns=ns)
    procs.append(p)
    return p


def wait_log(proc, text, timeout, what):
    def ok():
        if proc.p.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.p.returncode} before '{text}':\n{proc.text()}")
        return text in proc.text()
    try:
        N.wait_for(ok, timeout, f"{what}: '{text}'")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{proc.text()}") from None


def start_receiver(procs, binaries, certs, ns, listen, datadir, log, n_listen=1):
    rx = start(procs, [binaries[1], "-l", ",".join(listen), "-d", datadir, "--log-level", "debug"]
               + tls_args(certs, "receiver"), log, ns)
    port = int(listen[0].rsplit(":", 1)[1])
    N.wait_for(lambda: N.listening(ns, "tcp", port, n_listen) or rx.p.poll() is not None, 10,
               f"receiver listening on {listen}")
    assert rx.p.poll() is None, rx.text()
    return rx


def start_servers(procs, tmp_path, ns, bind, www, tag=""):
    http = start(procs, [N.PY, "-m", "http.server", HTTP_PORT, "--bind", bind, "--directory", www],
                 tmp_path / f"http{tag}.log", ns)
    dns = start(procs, [N.PY, N.DNS_RESPONDER, bind, DNS_PORT, DNS_ANSWER, 60], tmp_path / f"dns{tag}.log", ns)
    N.wait_for(lambda: N.listening(ns, "tcp", HTTP_PORT) and N.listening(ns, "udp", DNS_PORT), 10,
               "HTTP and DNS servers")
    return http, dns


def start_tcpdump(procs, ns, iface, rx_addr, out, log, extra=()):
    td = start(procs, ["tcpdump", "-i", iface, "--time-stamp-precision=nano", "-s", "262144", "-B", "8192",
                       *extra, "-w", out, f"not (host {rx_addr} and tcp port {RX_PORT})"], log, ns)
    wait_log(td, "listening on", 10, "tcpdump")
    return td


def start_sensor(procs, binaries, certs, ns, iface, rx_addr, sid, log):
    sx = start(procs, [binaries[0], "-i", iface, "-t", f"{rx_addr}:{RX_PORT}"] + tls_args(certs, sid),
               log, ns)
    wait_log(sx, "uplink: connected to", 15, f"sensor {sid}")
    assert f"excluding own uplink traffic: (host {rx_addr} and tcp port {RX_PORT})" in sx.text(), sx.text()
    return sx


def make_www(d, sizes):
    d.mkdir(parents=True, exist_ok=True)
    names = []
    for name, size in sizes.items():
        (d / name).write_bytes(os.urandom(size))
        names.append((name, size))
    return names


def http_traffic(ns, server, files, rounds):
    for _ in range(rounds):
        for name, size in files:
            r = N.nsrun(ns, ["curl", "-sS", "--max-time", "10", "-o", "/dev/null",
                             "-w", "%{http_code} %{size_download}", f"http://{server}:{HTTP_PORT}/{name}"],
                        timeout=15)
            assert r.stdout.strip() == f"200 {size}", f"curl {name}: {r.stdout} {r.stderr}"


def dns_traffic(ns, server, names):
    for name in names:
        r = N.nsrun(ns, ["dig", f"@{server}", "-p", DNS_PORT, "+tries=1", "+time=3", "+short", name, "A"], timeout=10)
        assert r.stdout.strip() == DNS_ANSWER, f"dig {name}: {r.stdout!r} {r.stderr!r}"


def arp_traffic(ns, iface, src, dst, count=3):
    N.nsrun(ns, [N.PY, N.HERE, "arp", iface, src, dst, count], timeout=10)


def stop_all(sensors, tcpdumps, receiver):
    """SIGTERM the sensors (each must flush, get its ACKs and exit 0), SIGINT
    tcpdump, SIGTERM the receiver (closes and renames every segment, exit 0)."""
    for sx in sensors:
        rc = sx.stop(signal.SIGTERM, timeout=20)
        assert rc == 0, f"sensor exited with {rc}:\n{sx.text()}"
    for td in tcpdumps:
        rc = td.stop(signal.SIGINT, timeout=10)
        assert rc == 0, f"tcpdump exited with {rc}:\n{td.text()}"
    rc = receiver.stop(signal.SIGTERM, timeout=20)
    assert rc == 0, f"receiver exited with {rc}:\n{receiver.text()}"


def tcpdump_check(td):
    """tcpdump's own counters: nothing dropped by the kernel. "received by filter" may
    exceed "captured" by packets that reached tcpdump's ring after its last read (it is
    stopped after the sensors, so a late ARP or neighbour probe lands there): those came
    after the sensors stopped too. A packet tcpdump left unread inside the sensors'
    window would show up in the exact comparison as a stored record the ground truth
    lacks, so the comparison, not this check, decides."""
    text = td.text()
    counts = {}
    for what in ("captured", "received by filter", "dropped by kernel"):
        m = re.search(rf"(\d+) packets? {what}", text)
        assert m, f"no '{what}' count in tcpdump's output:\n{text}"
        counts[what] = int(m.group(1))
    assert counts["dropped by kernel"] == 0, f"tcpdump dropped packets, the ground truth is incomplete:\n{text}"
    assert counts["captured"] <= counts["received by filter"], text
    if counts["captured"] < counts["received by filter"]:
        print(f"tcpdump: {counts['received by filter'] - counts['captured']} packet(s) reached its ring "
              f"after its last read")


def sensor_final(sx):
    m = re.search(r"final: captured (\d+) packets .*?kernel drops (\d+), interface drops (\d+), queue drops (\d+)",
                  sx.text())
    assert m, sx.text()
    return tuple(int(x) for x in m.groups())


def check_sensor_against_tcpdump(datadir, sid, gt_path, sx, td, own_mac, want_linktype, ifname):
    """The comparison every test makes; returns (stored records, timestamp stats)."""
    seg_dir, closed, opened = N.sensor_segments(datadir, sid)
    assert seg_dir.is_dir(), f"{seg_dir} was not created"
    assert not opened, f"segments left open after a clean stop: {[p.name for p in opened]}"
    assert closed, f"no segment in {seg_dir}"
    linktypes, stored = N.stored_records(closed)
    assert linktypes == {ifname: {want_linktype}}, f"stored link types per interface: {linktypes}"

    gt = N.read_pcap(gt_path)
    assert gt.nano and gt.linktype == want_linktype, (gt.nano, gt.linktype)
    # Independent counts from capinfos on both sides.
    assert N.capinfos_count(gt_path) == len(gt.records)
    assert sum(N.capinfos_count(p) for p in closed) == len(stored)

    tcpdump_check(td)
    captured, kdrops, ifdrops, qdrops = sensor_final(sx)
    assert (kdrops, ifdrops, qdrops) == (0, 0, 0), f"sensor drops (kernel, interface, queue): {sx.text()}"
    assert captured == len(stored), f"sensor captured {captured} packets, receiver stored {len(stored)}"
    assert len(gt.records) > 100, f"only {len(gt.records)} packets of traffic: the test proves little"

    stats = N.compare_records(stored, gt.records, want_linktype, own_mac, TCP_INGRESS_BOUND_NS,
                              REORDER_BOUND_NS, label=f"stored[{sid}]", truth="tcpdump")
    print(f"{sid}: {len(stored)} records equal to tcpdump; timestamps: {stats}")
    return stored, stats


# ---- tests -------------------------------------------------------------------------


def test_single_sensor_matches_tcpdump(binaries, certs, procs, lab, tmp_path):
    t0 = time.time()
    a, b = lab.add("a"), lab.add("b")
    mac_a, _ = lab.veth(a, "va", "198.18.0.1", b, "vb", "198.18.0.2")
    rx_addr = "198.18.0.2"
    datadir = tmp_path / "data"

    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx.log")
    files = make_www(tmp_path / "www", {"index.html": 120, "small.bin": 9_000, "medium.bin": 300_000,
                                         "big.bin": 2_000_000})
    start_servers(procs, tmp_path, b, rx_addr, tmp_path / "www")
    td = start_tcpdump(procs, a, "va", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
    sx = start_sensor(procs, binaries, certs, a, "va", rx_addr, "s1", tmp_path / "sx.log")

    arp_traffic(a, "va", "198.18.0.1", rx_addr)
    http_traffic(a, rx_addr, files, rounds=3)
    dns_traffic(a, rx_addr, [f"q{i}.example.test" for i in range(4)] + ["example.test"])
    arp_traffic(a, "va", "198.18.0.1", rx_addr)
    time.sleep(QUIET_S)

    stop_all([sx], [td], rx)
    stored, stats = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx, td, mac_a,
                                                 N.LINKTYPE_ETHERNET, "va")
    # The traffic really had every kind the timestamp rules are about.
    assert stats["out"] > 0 and stats["in_tcp"] > 0 and stats["in_other"] > 0, stats
    assert sorted(p.name for p in (datadir / "sensors").iterdir()) == ["s1"]
    assert time.time() - t0 < 40, f"test took {time.time() - t0:.1f} s"


def test_three_sensors_each_stored_under_own_identity(binaries, certs, procs, lab, tmp_path):
    t0 = time.time()
    r = lab.add("r")
    sensors = {}
    for i in (1, 2, 3):
        ns = lab.add(f"s{i}")
        mac, _ = lab.veth(ns, f"up{i}", f"198.18.{i}.1", r, f"rx{i}", f"198.18.{i}.2")
        sensors[f"s{i}"] = {"ns": ns, "mac": mac, "iface": f"up{i}", "rx": f"198.18.{i}.2", "net": f"198.18.{i}."}
    datadir = tmp_path / "data"
    rx = start_receiver(procs, binaries, certs, r, [f"{s['rx']}:{RX_PORT}" for s in sensors.values()], datadir,
                        tmp_path / "rx.log", n_listen=3)
    # One HTTP and one DNS server for all peer addresses; each sensor fetches
    # files of its own sizes so that the three captures differ.
    www = tmp_path / "www"
    files = {sid: make_www(www, {f"{sid}-a.bin": 1000 * k, f"{sid}-b.bin": 400_000 + 1000 * k})
             for k, sid in enumerate(sensors, 1)}
    start_servers(procs, tmp_path, r, "0.0.0.0", www)

    tds, sxs = {}, {}
    for sid, s in sensors.items():
        tds[sid] = start_tcpdump(procs, s["ns"], s["iface"], s["rx"], tmp_path / f"gt-{sid}.pcap",
                                 tmp_path / f"tcpdump-{sid}.log")
    for sid, s in sensors.items():
        sxs[sid] = start_sensor(procs, binaries, certs, s["ns"], s["iface"], s["rx"], sid, tmp_path / f"sx-{sid}.log")
    connected = rx.text()
    for sid in sensors:
        assert f"sensor {sid} connected from {sensors[sid]['net']}1:" in connected, connected

    def traffic(sid):
        s = sensors[sid]
        http_traffic(s["ns"], s["rx"], files[sid], rounds=3)
        dns_traffic(s["ns"], s["rx"], [f"{sid}-{j}.example.test" for j in range(3)])

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        for f in [ex.submit(traffic, sid) for sid in sensors]:
            f.result(timeout=30)
    time.sleep(QUIET_S)

    stop_all(sxs.values(), tds.values(), rx)
    assert sorted(p.name for p in (datadir / "sensors").iterdir()) == sorted(sensors)
    stored = {}
    for sid, s in sensors.items():
        stored[sid], _ = check_sensor_against_tcpdump(datadir, sid, tmp_path / f"gt-{sid}.pcap", sxs[sid], tds[sid],
                                                      s["mac"], N.LINKTYPE_ETHERNET, s["iface"])
        # Every IPv4 packet stored for this sensor is between its own two addresses.
        for idx, rec in enumerate(stored[sid]):
            info = N.ipv4_info(N.LINKTYPE_ETHERNET, rec.data)
            assert info is None or (info[1].startswith(s["net"]) and info[2].startswith(s["net"])), \
                f"{sid} record {idx} is not {sid}'s traffic: {N.describe(N.LINKTYPE_ETHERNET, rec)}"
    for sid in sensors:
        for other in sensors:
            if other != sid:
                common = {r.data for r in stored[sid]} & {r.data for r in stored[other]}
                assert not common, f"{len(common)} packets of {other} also stored under {sid}"
    assert time.time() - t0 < 40, f"test took {time.time() - t0:.1f} s"


def test_sensor_uses_sll_on_any(binaries, certs, procs, lab, tmp_path):
    t0 = time.time()
    a, b = lab.add("a"), lab.add("b")
    lab.veth(a, "va", "198.18.0.1", b, "vb", "198.18.0.2")
    rx_addr = "198.18.0.2"
    datadir = tmp_path / "data"
    rx = start_receiver(procs, binaries, certs, b, [f"{rx_addr}:{RX_PORT}"], datadir, tmp_path / "rx.log")
    files = make_www(tmp_path / "www", {"index.html": 300, "blob.bin": 700_000})
    start_servers(procs, tmp_path, b, rx_addr, tmp_path / "www")
    # The sensor first: its log says which cooked header it got, and tcpdump is told
    # to use the same one (tcpdump 4.99 would pick LINUX_SLL2 on its own).
    sx = start_sensor(procs, binaries, certs, a, "any", rx_addr, "s1", tmp_path / "sx.log")
    m = re.search(r"interface 0: any, link type (\d+)", sx.text())
    assert m, sx.text()
    linktype = int(m.group(1))
    assert linktype in (N.LINKTYPE_LINUX_SLL, N.LINKTYPE_LINUX_SLL2), f"link type on 'any': {linktype}"
    dlt = "LINUX_SLL" if linktype == N.LINKTYPE_LINUX_SLL else "LINUX_SLL2"
    td = start_tcpdump(procs, a, "any", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log", extra=("-y", dlt))

    http_traffic(a, rx_addr, files, rounds=3)
    dns_traffic(a, rx_addr, [f"any{i}.example.test" for i in range(3)])
    arp_traffic(a, "va", "198.18.0.1", rx_addr)
    time.sleep(QUIET_S)

    stop_all([sx], [td], rx)
    _, stats = check_sensor_against_tcpdump(datadir, "s1", tmp_path / "gt.pcap", sx, td, None, linktype, "any")
    assert stats["out"] > 0 and stats["in_tcp"] > 0 and stats["in_other"] > 0, stats
    assert time.time() - t0 < 40, f"test took {time.time() - t0:.1f} s"
