# SPDX-License-Identifier: BSD-2-Clause
"""Name-resolution history end to end: sensor -> NAMES frames -> receiver names.jsonl.

Replays: the DNS answers in a capture must arrive in names.jsonl exactly as tshark reads
them (dnsref.py applies the sensor's rules to tshark's dissection), change points only,
in capture order, with the capture's timestamps to the nanosecond. Configured names: a
hosts file and names.static appear with src hosts/static, and win over DNS. Live: a DNS
responder on loopback (not port 53) re-assigns one address from one name to another;
the history shows both, and `pcapline-receiver --names-at` answers by time.
"""
import json
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, ROOT, Proc, free_port, tls_args, wait_listening
import dnsref

PCAPS = DATA / "pcaps"
DEMO_DNS = ROOT / "scripts" / "demo_dns.py"

REPLAYS = [
    ("dns-udp-queries.pcap", (53,)),
    ("dns-tcp-multi-request.pcap", (53,)),
    ("tls13-handshake-sni.pcap", (53,)),
    ("http-ipv6.pcap", (53, 5353)),
    ("malformed-dns-ip-frags.pcap", (53,)),
    ("pcapng-multi-interface-dns.pcapng", (53,)),
]


def read_jsonl(path):
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_receiver(receiver, certs, tmp_path, procs):
    port = free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)
    return rx, port


def names_env(hosts="", static=(), ports=(53,)):
    """Sensor settings through the environment (lists comma-separated)."""
    return {"PCAPLINE_NAMES_HOSTS_FILE": str(hosts), "PCAPLINE_NAMES_STATIC": ",".join(static),
            "PCAPLINE_NAMES_DNS_PORTS": ",".join(str(p) for p in ports)}


def names_at(receiver, data, addr, t, sensor="s1"):
    r = subprocess.run([receiver, "--names-at", sensor, addr, str(t), "--dir", data],
                       capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout.strip()


@pytest.mark.parametrize("capture,ports", REPLAYS, ids=[c for c, _ in REPLAYS])
def test_replay_matches_tshark(capture, ports, binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    path = PCAPS / capture
    want = [(t, addr, name) for t, addr, name in dnsref.change_points(dnsref.mappings(path, ports))]
    rx, port = start_receiver(receiver, certs, tmp_path, procs)
    sx = Proc([sensor, "-r", path, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sensor.log",
              env=names_env(ports=ports))
    procs.append(sx)
    assert sx.wait(60) == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    got = read_jsonl(tmp_path / "data/sensors/s1/names.jsonl")
    assert all(e["src"] == "dns" and e["ns"] == "" for e in got), got
    assert [(e["t"], e["addr"], e["name"]) for e in got] == want
    # Every answer in the capture was read as DNS, none of them failed.
    assert " 0 malformed" in sx.text(), sx.text()


def test_replay_twice_adds_nothing(binaries, certs, procs, tmp_path):
    """A sensor that starts again sends its mappings again; the receiver keeps the
    history free of repeats, in later sessions too."""
    sensor, receiver = binaries
    path = PCAPS / "dns-udp-queries.pcap"
    rx, port = start_receiver(receiver, certs, tmp_path, procs)
    for n in (1, 2):
        sx = Proc([sensor, "-r", path, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                  tmp_path / f"sensor{n}.log", env=names_env())
        procs.append(sx)
        assert sx.wait(60) == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    got = read_jsonl(tmp_path / "data/sensors/s1/names.jsonl")
    want = dnsref.change_points(dnsref.mappings(path))
    assert want and [(e["t"], e["addr"], e["name"]) for e in got] == want
    assert "repeats of the mapping in effect skipped" in rx.text()


def test_hosts_and_static(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n"
                     "198.18.7.7 Build-Box.lab build\n104.16.126.34 from-hosts.example\n")
    static = ["104.16.125.34=pinned.example@edge", "198.18.9.5:5432=db@prod", "[2001:db8::1]:443=api"]
    rx, port = start_receiver(receiver, certs, tmp_path, procs)
    sx = Proc([sensor, "-r", PCAPS / "tls13-handshake-sni.pcap", "-t", f"127.0.0.1:{port}"]
              + tls_args(certs, "s1"), tmp_path / "sensor.log", env=names_env(hosts, static))
    procs.append(sx)
    assert sx.wait(60) == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    got = read_jsonl(tmp_path / "data/sensors/s1/names.jsonl")
    by_addr = {e["addr"]: e for e in got}
    assert len(by_addr) == len(got), f"an address twice: {got}"
    conf = {(e["addr"], e["name"], e["ns"], e["src"]) for e in got if e["src"] != "dns"}
    assert conf == {
        ("104.16.125.34", "pinned.example", "edge", "static"),
        ("198.18.9.5:5432", "db", "prod", "static"),
        ("[2001:db8::1]:443", "api", "", "static"),
        ("127.0.0.1", "localhost", "", "hosts"),
        ("::1", "ip6-localhost", "", "hosts"),
        ("198.18.7.7", "build-box.lab", "", "hosts"),
        ("104.16.126.34", "from-hosts.example", "", "hosts"),
    }
    # The capture's answers for the configured addresses did not replace them; the others
    # are there.
    dns = {(e["addr"], e["name"]) for e in got if e["src"] == "dns"}
    assert dns == {("2606:4700::6810:7d22", "enabled.tls13.com"), ("2606:4700::6810:7e22", "enabled.tls13.com")}
    # Lookups by port fall back to the address.
    data = tmp_path / "data"
    t_conf = by_addr["198.18.9.5:5432"]["t"]
    assert names_at(receiver, data, "198.18.9.5:5432", t_conf) == (0, "db")
    assert names_at(receiver, data, "[2001:db8::1]:443", t_conf) == (0, "api")
    assert names_at(receiver, data, "127.0.0.1:8080", t_conf) == (0, "localhost")
    assert names_at(receiver, data, "198.18.9.5", t_conf)[0] == 1


def dns_query(port, name, timeout=2.0):
    """Asks 127.0.0.1:port for name's A record; returns the answer's address or None."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            r, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    return socket.inet_ntoa(r[-4:]) if len(r) >= len(q) + 16 else None


def test_live_address_reassigned(binaries, certs, procs, tmp_path):
    """On lo, a DNS responder on a port that is not 53 answers X -> 198.18.0.50; it is
    restarted answering Y -> 198.18.0.50. The history holds X then Y for that address,
    and --names-at answers X before the change and Y from it on."""
    sensor, receiver = binaries
    dns_port = free_port()
    rx, port = start_receiver(receiver, certs, tmp_path, procs)
    sx = Proc([sensor, "-i", "lo", "-f", f"udp port {dns_port}", "-t", f"127.0.0.1:{port}"]
              + tls_args(certs, "s1"), tmp_path / "sensor.log", env=names_env(ports=(dns_port,)))
    procs.append(sx)
    wait_for(lambda: "connected to" in sx.text(), 15, "the sensor to connect")
    jsonl = tmp_path / "data/sensors/s1/names.jsonl"
    data = tmp_path / "data"
    names = {}
    for step, qname in (("x", "x.reassign.test"), ("y", "y.reassign.test")):
        responder = Proc([sys.executable, DEMO_DNS, "127.0.0.1", str(dns_port), "198.18.0.50", "30"],
                         tmp_path / f"dns-{step}.log")
        procs.append(responder)
        # Asked until the responder is up; repeated answers are no changes.
        wait_for(lambda: dns_query(dns_port, qname, 0.2) == "198.18.0.50", 10, f"an answer for {qname}")
        wait_for(lambda: any(e["name"] == qname for e in read_jsonl(jsonl)), 10, f"{qname} in names.jsonl")
        responder.stop()
        names[step] = qname
    assert sx.stop() == 0, sx.text()
    assert rx.stop() == 0, rx.text()

    hist = [e for e in read_jsonl(jsonl) if e["addr"] == "198.18.0.50"]
    assert [e["name"] for e in hist] == [names["x"], names["y"]], hist
    assert all(e["src"] == "dns" and e["ns"] == "" for e in hist)
    t_x = next(e["t"] for e in hist if e["name"] == names["x"])
    t_y = next(e["t"] for e in hist if e["name"] == names["y"])
    assert t_x < t_y
    assert names_at(receiver, data, "198.18.0.50", t_x) == (0, names["x"])
    assert names_at(receiver, data, "198.18.0.50", t_y - 1) == (0, names["x"])
    assert names_at(receiver, data, "198.18.0.50", t_y) == (0, names["y"])
    assert names_at(receiver, data, "198.18.0.50", f"{t_y // 10**9 + 5}.0") == (0, names["y"])
    assert names_at(receiver, data, "198.18.0.50", t_x - 1) == (1, "")
    # The sensor counted what it learned.
    assert "0 dropped: queue full" in sx.text(), sx.text()


def test_sighup_reloads_hosts_and_static(binaries, certs, procs, tmp_path):
    """SIGHUP re-reads the hosts file and names.static: changed and new names become
    events, unchanged ones do not repeat."""
    sensor, receiver = binaries
    hosts = tmp_path / "hosts"
    hosts.write_text("198.18.9.1 one.lab\n198.18.9.2 two.lab\n")
    conf = tmp_path / "sensor.yaml"

    def write_conf(static):
        conf.write_text("capture:\n  filter: \"udp port 9\"\nnames:\n"
                        f"  hosts_file: {hosts}\n  static: [{', '.join(json.dumps(s) for s in static)}]\n")

    write_conf(["198.18.9.9=nine@lab"])
    rx, port = start_receiver(receiver, certs, tmp_path, procs)
    sx = Proc([sensor, "-c", conf, "-i", "lo", "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
              tmp_path / "sensor.log")
    procs.append(sx)
    jsonl = tmp_path / "data/sensors/s1/names.jsonl"
    wait_for(lambda: len(read_jsonl(jsonl)) == 3, 15, "the configured names")
    hosts.write_text("198.18.9.1 one.lab\n198.18.9.2 deux.lab\n198.18.9.3 three.lab\n")
    write_conf(["198.18.9.9=nine@lab", "198.18.9.10:80=ten"])
    sx.p.send_signal(signal.SIGHUP)
    wait_for(lambda: len(read_jsonl(jsonl)) == 6, 15, "the reloaded names")
    assert sx.stop() == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    got = [(e["addr"], e["name"], e["ns"], e["src"]) for e in read_jsonl(jsonl)]
    assert sorted(got[:3]) == [("198.18.9.1", "one.lab", "", "hosts"), ("198.18.9.2", "two.lab", "", "hosts"),
                               ("198.18.9.9", "nine", "lab", "static")]
    assert sorted(got[3:]) == [("198.18.9.10:80", "ten", "", "static"), ("198.18.9.2", "deux.lab", "", "hosts"),
                               ("198.18.9.3", "three.lab", "", "hosts")]
    assert "names: 2 static names, 3 from" in sx.text(), sx.text()
