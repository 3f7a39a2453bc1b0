# SPDX-License-Identifier: BSD-2-Clause
"""Name histories and the receiver's configuration at their limits.

- `--names-at` shows a name an import brought in, control characters and all, without
  letting them reach the terminal raw.
- Retention, when it deletes a sensor's oldest segments, drops the names.jsonl lines
  older than the oldest packet still stored while every answer about a stored packet
  stays the same (judged against a reference computed here from the file as it was).
- storage.names_max_size is accepted and bounds the file.
- A storage.dir too long for the receiver's paths is a start-up error naming the key and
  the limit, and one at the limit stores its packets under the full path.
- A bad api.listen port is reported as a bad port, not as "not a loopback address".
"""
import io
import json
import re
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import BUILD, CERTS_TOOL, Proc, free_port, tls_args, wait_listening
from test_retention import closed_segments, index_rows, read_pcap, wait_for, write_pcap

PCAPLINE = BUILD / "pcapline"
KiB = 1024
NS = 10**9


def tar_gz(path, entries):
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def small_pcap(sec):
    rec = b"\x00" * 60
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + \
        struct.pack("<IIII", sec, 0, len(rec), len(rec)) + rec


# --------------------------------------------------------------------------------
# --names-at and control characters.

def test_names_at_escapes_control_characters(binaries, tmp_path):
    _, receiver = binaries
    evil = "pwn\u001b]0;owned\u0007\u001b[2J.\u009bx.default"
    hist = {"1700000000": {"198.18.9.1": {"FullAddress": evil, "Namespace": "default"}}}
    arch = tmp_path / "k.tar.gz"
    tar_gz(arch, [("s1/a.pcap", small_pcap(1700000000)),
                  ("s1/name_resolution_history.json", json.dumps(hist).encode())])
    view = tmp_path / "view"
    p = subprocess.run([PCAPLINE, "import", arch, "--dir", view], capture_output=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([receiver, "--names-at", "s1", "198.18.9.1", "1700000001.", "-d", view],
                       capture_output=True, env={"PCAPLINE_API_LISTEN": ""})
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"pwn\\x1b]0;owned\\x07\\x1b[2J.\\x9bx.default\n", p.stdout
    assert not re.search(rb"[\x00-\x1f\x7f]", p.stdout[:-1]) and b"\xc2\x9b" not in p.stdout


# --------------------------------------------------------------------------------
# Retention trims the name history.

def reference_at(lines, addr, t):
    """The name of addr at t by the documented rule (greatest t <= t, later line on ties)."""
    best = None
    for i, x in enumerate(lines):
        if x["addr"] == addr and x["t"] <= t and (best is None or x["t"] >= best[0]):
            best = (x["t"], x["name"])
    return best[1] if best and best[1] else None


def test_retention_trims_names_older_than_oldest_packet(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    t0 = 1_750_000_000 * NS
    ts = [t0 + i * NS for i in range(3000)]          # 3000 s of packets, 300 bytes each
    src = tmp_path / "in.pcap"
    write_pcap(src, ts, size=300)
    datadir = tmp_path / "data"
    names = datadir / "sensors" / "s1" / "names.jsonl"
    names.parent.mkdir(parents=True)
    seeded = []
    for k in range(40):                             # 40 addresses, renamed every 90 s
        for j in range(34):
            seeded.append({"t": t0 - 500 * NS + j * 90 * NS + k, "addr": f"198.18.4.{k}",
                           "name": f"h{k}-{j}.test" if (k + j) % 7 else "", "ns": "", "src": "dns"})
    seeded.sort(key=lambda x: x["t"])
    names.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in seeded))

    port = free_port()
    env = {"PCAPLINE_STORAGE_SEGMENT_SIZE": str(64 * KiB), "PCAPLINE_STORAGE_SENSOR_MAX_SIZE": str(300 * KiB),
           "PCAPLINE_LOG_STATS_INTERVAL": "1s", "PCAPLINE_API_LISTEN": ""}
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", datadir] + tls_args(certs, "receiver"),
              tmp_path / "rx.log", env=env)
    procs.append(rx)
    wait_listening(port)
    sx = Proc([sensor, "-r", src, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sx.log",
              env={"PCAPLINE_BATCH_MAX_BYTES": str(16 * KiB)})
    assert sx.wait(timeout=120) == 0, sx.text()
    wait_for(lambda: "older than the oldest stored packet dropped" in rx.text(), 30, "a names trim")
    assert rx.stop() == 0, rx.text()

    rows, _ = index_rows(datadir)
    oldest = min(r["min_ns"] for r in rows.values())
    stored = [r[0] for p in closed_segments(datadir) for r in read_pcap(p)[2]]
    assert oldest == min(stored) and oldest > t0 + 1000 * NS, (oldest - t0) // NS
    after = [json.loads(x) for x in names.read_text().splitlines()]
    mine = [x for x in after if x["addr"].startswith("198.18.4.")]
    # Every line older than the oldest packet is the one in effect then, with a name.
    for x in mine:
        if x["t"] < oldest:
            assert reference_at(seeded, x["addr"], oldest - 1) == x["name"] and x["name"], x
    # Every seeded line from the oldest packet on is still there, in order.
    assert [x for x in mine if x["t"] >= oldest] == [x for x in seeded if x["t"] >= oldest]
    print(f"\nnames.jsonl: {len(seeded)} seeded lines, {len(mine)} kept; oldest stored packet t0+{(oldest - t0) // NS} s")
    assert len(mine) < len(seeded) // 2, (len(mine), len(seeded))
    # Same answers for every stored packet's time (sampled) and every address.
    for t in [oldest, oldest + 1] + stored[::97] + [max(stored)]:
        for k in range(40):
            addr = f"198.18.4.{k}"
            assert reference_at(mine, addr, t) == reference_at(seeded, addr, t), (addr, t)
    m = re.findall(r"retention: s1: (\d+) name history lines older than the oldest stored packet dropped",
                   rx.text())
    assert sum(int(n) for n in m) == len(seeded) - len(mine), m


def test_names_max_size_is_a_setting(binaries, tmp_path):
    _, receiver = binaries
    base = [receiver, "--insecure", "-l", "127.0.0.1:0", "-d", tmp_path / "d", "--check-config"]
    p = subprocess.run(base, capture_output=True, text=True, env={"PCAPLINE_API_LISTEN": ""})
    assert p.returncode == 0 and "storage.names_max_size = 64MiB" in p.stdout.replace("67108864", "64MiB"), \
        p.stdout + p.stderr
    p = subprocess.run(base, capture_output=True, text=True,
                       env={"PCAPLINE_API_LISTEN": "", "PCAPLINE_STORAGE_NAMES_MAX_SIZE": "1k"})
    assert p.returncode == 2 and "storage.names_max_size" in p.stderr, p.stderr


# --------------------------------------------------------------------------------
# storage.dir length and api.listen.

def long_dir(base, n, ch):
    """A path of exactly n bytes below base, in components of at most 100 bytes."""
    d, left = Path(base), n - len(str(base))
    while left > 0:
        k = min(100, left - 1)
        if left - 1 - k == 1:
            k -= 1  # never leave room for only a '/'
        d, left = d / (ch * k), left - 1 - k
    assert len(str(d)) == n
    return d


def test_storage_dir_too_long_is_an_error(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    for n in (254, 300, 400):
        d = long_dir(tmp_path, n, "d")
        for extra in (["--check-config"], []):
            p = subprocess.run([receiver, "--insecure", "-l", "127.0.0.1:0", "-d", d] + extra,
                               capture_output=True, text=True, timeout=20, env={"PCAPLINE_API_LISTEN": ""})
            assert p.returncode == 2, p.stderr
            assert f"storage.dir: {n} characters, above the limit of 253" in p.stderr, p.stderr
            assert not d.exists()
    # At the limit everything lands under the full path, the longest sensor id too.
    d = long_dir(tmp_path, 253, "e")
    who = "s" * 64
    port = free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", d] + tls_args(certs, "receiver"), tmp_path / "rx.log",
              env={"PCAPLINE_API_LISTEN": ""})
    procs.append(rx)
    wait_listening(port)
    src = tmp_path / "in.pcap"
    write_pcap(src, [1_750_000_000 * NS + i for i in range(10)])
    # The longest id a certificate's CN holds (64): <dir>/sensors/<id>/segments/<segment>.
    subprocess.run([CERTS_TOOL, certs, "sensor", who], check=True, capture_output=True)
    sx = Proc([sensor, "-r", src, "-t", f"127.0.0.1:{port}"] + tls_args(certs, who), tmp_path / "sx.log")
    assert sx.wait(timeout=60) == 0, sx.text()
    assert rx.stop() == 0, rx.text()
    segs = list((d / "sensors" / who / "segments").glob("*.pcap"))
    assert sum(len(read_pcap(p)[2]) for p in segs) == 10, segs


@pytest.mark.parametrize("listen,msg", [
    ("127.0.0.1:99999", "port '99999' is not a number in 1..65535"),
    ("127.0.0.1:65536", "port '65536' is not a number in 1..65535"),
    ("127.0.0.1:abc", "port 'abc' is not a number in 1..65535"),
    ("127.0.0.1:-1", "port '-1' is not a number in 1..65535"),
    ("127.0.0.1:", "'127.0.0.1:' is not host:port"),
    ("127.0.0.1", "'127.0.0.1' is not host:port"),
])
def test_bad_api_port_is_reported_as_such(listen, msg, binaries, tmp_path):
    _, receiver = binaries
    p = subprocess.run([receiver, "--insecure", "-l", "127.0.0.1:0", "-d", tmp_path / "d", "--check-config"],
                       capture_output=True, text=True, env={"PCAPLINE_API_LISTEN": listen})
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr and "loopback" not in p.stderr, p.stderr
