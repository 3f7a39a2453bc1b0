# SPDX-License-Identifier: BSD-2-Clause
"""pcapline export, snapshot and import against repositories filled by a real receiver
from `pcapline-sensor -r` replays.

Every exported capture is judged against the stored segments read independently: by the
small reader below (timestamps, lengths, SHA-256 of every packet) merged with Python's
heapq.merge (which breaks timestamp ties by input order, the documented rule), and by
tshark run on the segments and on the export. Then: export -> import -> export gives the
same bytes; name histories (a names.jsonl fixture with a re-assigned IP) become the
Kubeshark JSON expected here by hand; hostile archives change nothing; snapshots outlive
the segments they copied; a ~200 MB window stays under a fixed peak RSS; kill -9 leaves
no partial file under the target name.
"""
import hashlib
import heapq
import io
import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BUILD, DATA, Proc, free_port, sanitized, tls_args, wait_listening

PCAPLINE = BUILD / "pcapline"
PCAPS = DATA / "pcaps"
# <first-ts-ns>-<epoch>-<seq>[.<ifindex>]-<ifname>.pcap: import writes no index
SEGMENT_RE = re.compile(r"^(\d+)-([0-9a-f]{16})-(\d+)(?:\.\d+)?-(.+)\.pcap$")
NS = 10**9
RSS_LIMIT_KIB = 32 * 1024
INDEX_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments(id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, path TEXT NOT NULL UNIQUE,
  iface TEXT NOT NULL, linktype INTEGER NOT NULL, snaplen INTEGER NOT NULL, min_ns INTEGER NOT NULL,
  max_ns INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, closed_ns INTEGER NOT NULL);
CREATE INDEX segments_sensor_time ON segments(sensor, min_ns);
INSERT INTO meta VALUES('schema', '1');
"""


# --------------------------------------------------------------------------------
# An independent capture reader (no product code).

@dataclass(frozen=True)
class Rec:
    ts: int
    caplen: int
    origlen: int
    digest: str
    iface: int = 0


@dataclass
class Capture:
    fmt: str
    ifaces: list  # [(linktype, snaplen, name)]
    recs: list
    truncated: bool = False


def read_capture(path_or_bytes):
    b = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    if b[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(b)
    for e in "<>":
        (magic,) = struct.unpack(e + "I", b[:4])
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError("not a capture")
    nano = magic == 0xA1B23C4D
    snaplen, link = struct.unpack(e + "II", b[16:24])
    cap = Capture("pcap", [(link & 0xFFFF, snaplen, "")], [])
    off = 24
    while off < len(b):
        if off + 16 > len(b):
            cap.truncated = True
            break
        sec, frac, incl, orig = struct.unpack(e + "IIII", b[off:off + 16])
        if off + 16 + incl > len(b):
            cap.truncated = True
            break
        data = b[off + 16:off + 16 + incl]
        cap.recs.append(Rec(sec * NS + (frac if nano else frac * 1000), incl, orig,
                            hashlib.sha256(data).hexdigest()))
        off += 16 + incl
    return cap


def _read_pcapng(b):
    cap = Capture("pcapng", [], [])
    resol = []
    off, e = 0, "<"
    while off + 12 <= len(b):
        if b[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            e = "<" if b[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack(e + "II", b[off:off + 8])
        body = b[off + 8:off + blen - 4]
        if btype == 1:
            link, _, snap = struct.unpack(e + "HHI", body[:8])
            name, res, o = "", 6, 8
            while o + 4 <= len(body):
                code, ln = struct.unpack(e + "HH", body[o:o + 4])
                if code == 0:
                    break
                val = body[o + 4:o + 4 + ln]
                if code == 2:
                    name = val.rstrip(b"\0").decode()
                elif code == 9:
                    res = val[0]
                o += 4 + ((ln + 3) & ~3)
            cap.ifaces.append((link, snap, name))
            resol.append(res)
        elif btype == 6:
            iid, hi, lo, incl, orig = struct.unpack(e + "IIIII", body[:20])
            ticks = (hi << 32) | lo
            ts = ticks * 10 ** (9 - resol[iid]) if resol[iid] <= 9 else ticks // 10 ** (resol[iid] - 9)
            cap.recs.append(Rec(ts, incl, orig, hashlib.sha256(body[20:20 + incl]).hexdigest(), iid))
        off += blen
    return cap


# --------------------------------------------------------------------------------
# The repository side.

@dataclass
class Segment:
    sensor: str
    rel: str
    iface: str
    linktype: int
    snaplen: int
    recs: list

    @property
    def min_ns(self):
        return min(r.ts for r in self.recs)


def stored_segments(data, sensor):
    """A sensor's closed segments in the merge's input order: (min_ns, relative path)."""
    segs = []
    d = Path(data) / "sensors" / sensor / "segments"
    for p in sorted(d.iterdir()):
        m = SEGMENT_RE.match(p.name)
        if not m:
            continue
        cap = read_capture(p)
        assert cap.fmt == "pcap" and not cap.truncated and cap.recs, p
        segs.append(Segment(sensor, str(p.relative_to(data)), m.group(4), cap.ifaces[0][0],
                            cap.ifaces[0][1], cap.recs))
    segs.sort(key=lambda s: (s.min_ns, s.rel))
    return segs


def expected(data, sensor, t1, t2):
    """[(Rec, segment)] in [t1, t2), merged: by timestamp, ties by segment order."""
    streams = [[(r, s) for r in s.recs if t1 <= r.ts < t2] for s in stored_segments(data, sensor)]
    return list(heapq.merge(*streams, key=lambda x: x[0].ts))


def ensure_index(data):
    """The receiver writes index.db; should it not (yet), build it from the files."""
    db = Path(data) / "index.db"
    if db.exists():
        with sqlite3.connect(db) as c:
            if c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'segments'").fetchone()[0]:
                return
        db.unlink()
    c = sqlite3.connect(db)
    c.executescript(INDEX_SCHEMA)
    for sd in sorted((Path(data) / "sensors").iterdir()):
        for s in stored_segments(data, sd.name):
            c.execute("INSERT INTO segments(sensor, path, iface, linktype, snaplen, min_ns, max_ns,"
                      " packets, bytes, closed_ns) VALUES(?,?,?,?,?,?,?,?,?,?)",
                      (s.sensor, s.rel, s.iface, s.linktype, s.snaplen, s.min_ns,
                       max(r.ts for r in s.recs), len(s.recs), (Path(data) / s.rel).stat().st_size, 0))
    c.commit()
    c.close()


def pcapline(*args, check=True, timeout=300, **kw):
    p = subprocess.run([str(PCAPLINE)] + [str(a) for a in args], capture_output=True,
                       timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, f"pcapline {args}: rc {p.returncode}\n{p.stderr.decode()}"
    return p


def read_export(path):
    """{member name: bytes} in archive order, checked against manifest.json."""
    with tarfile.open(path, "r:gz") as t:
        members = t.getmembers()
        files = {m.name: t.extractfile(m).read() for m in members if m.isfile()}
    assert members[0].name == "manifest.json", [m.name for m in members]
    man = json.loads(files["manifest.json"])
    assert man["format"] == "pcapline-export"
    listed = {f["path"]: f for f in man["files"]}
    assert sorted(listed) == sorted(n for n in files if n != "manifest.json")
    for name, f in listed.items():
        assert f["bytes"] == len(files[name]), name
        assert f["sha256"] == hashlib.sha256(files[name]).hexdigest(), name
    return man, files


def capture_member(files, sensor):
    """The bytes of the sensor's .pcap or .pcapng in an export."""
    names = [n for n in files if n in (f"{sensor}/{sensor}.pcap", f"{sensor}/{sensor}.pcapng")]
    assert len(names) == 1, sorted(files)
    return files[names[0]]


def ns_str(ns):
    return f"{ns // NS}.{ns % NS:09d}"


# --------------------------------------------------------------------------------
# Fixtures: a repository from a real receiver.

REPLAYS = [
    ("s1", "http-1000-requests-one-conn.pcap"),
    ("s1", "http-1000-requests-one-conn.pcap"),  # again: every timestamp twice, ties
    ("s1", "kafka-multi-interface.pcapng"),       # two interfaces at once
    ("s1", "redis-benchmark-sll.pcap"),           # another link type: s1 goes pcapng
    ("s2", "tcp-echo-500-conns.pcap"),
    ("s2", "dns-udp-queries.pcap"),
    ("s3", "nanosecond-multi-proto.pcap"),
]


def fill_repository(binaries, certs, work, replays, env=None):
    sensor_bin, receiver_bin = binaries
    data = work / "data"
    port = free_port()
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              work / "receiver.log", env=env)
    try:
        wait_listening(port)
        for i, (sensor, cap) in enumerate(replays):
            sx = Proc([sensor_bin, "-r", cap, "-t", f"127.0.0.1:{port}"] + tls_args(certs, sensor),
                      work / f"sensor{i}.log")
            rc = sx.wait(timeout=120)
            assert rc == 0, f"sensor {sensor} {cap}: rc {rc}\n{sx.text()}"
    finally:
        assert rx.stop() == 0, rx.text()
    ensure_index(data)
    return data


@pytest.fixture(scope="module")
def repo(binaries, certs, tmp_path_factory):
    if not PCAPLINE.exists():
        pytest.fail(f"{PCAPLINE} is missing: run make first")
    work = tmp_path_factory.mktemp("export")
    return fill_repository(binaries, certs, work, [(s, PCAPS / c) for s, c in REPLAYS],
                           env={"PCAPLINE_STORAGE_SEGMENT_SIZE": "512k"})


def check_sensor_export(data, sensor, t1, t2, man, files):
    """The sensor's capture in the archive is exactly its packets in [t1, t2), merged."""
    want = expected(data, sensor, t1, t2)
    linktypes = {s.linktype for s in stored_segments(data, sensor)
                 if s.min_ns < t2 and max(r.ts for r in s.recs) >= t1}
    ng = len(linktypes) > 1
    name = f"{sensor}/{sensor}.{'pcapng' if ng else 'pcap'}"
    assert name in files, sorted(files)
    cap = read_capture(files[name])
    assert cap.fmt == ("pcapng" if ng else "pcap")
    assert not cap.truncated
    assert len(cap.recs) == len(want), f"{sensor}: {len(cap.recs)} packets exported, {len(want)} in the window"
    for k, (got, (w, seg)) in enumerate(zip(cap.recs, want)):
        assert (got.ts, got.caplen, got.origlen, got.digest) == (w.ts, w.caplen, w.origlen, w.digest), \
            f"{sensor} packet {k}: {got} != {w} from {seg.rel}"
        link, _, ifname = cap.ifaces[got.iface]
        assert link == seg.linktype
        if ng:
            assert ifname == seg.iface
    entry = next(f for f in man["files"] if f["path"] == name)
    assert entry["packets"] == len(want)
    if want:
        assert entry["first_ns"] == want[0][0].ts and entry["last_ns"] == want[-1][0].ts
    # Out of order only where a segment itself goes back in time (mergecap's rule).
    inside = 0
    for s in stored_segments(data, sensor):
        ts = [r.ts for r in s.recs if t1 <= r.ts < t2]
        inside += sum(1 for a, b in zip(ts, ts[1:]) if b < a)
    sensor_entry = next(s for s in man["sensors"] if s["id"] == sensor)
    assert sensor_entry["out_of_order"] == inside
    if inside == 0:
        assert all(a.ts <= b.ts for a, b in zip(cap.recs, cap.recs[1:]))
    return cap


# --------------------------------------------------------------------------------
# tshark: the export against the stored segments.

def tshark_rows(path):
    out = subprocess.run(["tshark", "-n", "-r", str(path), "--disable-protocol", "ALL", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        t, ln, cl = line.split("\t")
        s, f = t.split(".")
        rows.append((int(s) * NS + int(f.ljust(9, "0")), int(ln), int(cl)))
    return rows


def test_export_window_matches_segments_and_tshark(repo, tmp_path):
    s1 = stored_segments(repo, "s1")
    http = sorted(r.ts for s in s1 if s.linktype == 1 for r in s.recs)
    # A window that cuts into the middle of the replays, edges on duplicated timestamps.
    t1, t2 = http[1500], http[5000]
    out = tmp_path / "w.tar.gz"
    pcapline("export", "--dir", repo, "--from", ns_str(t1), "--to", ns_str(t2), "-o", out)
    man, files = read_export(out)
    assert [s["id"] for s in man["sensors"]] == ["s1"], "only s1 has packets in the window"
    assert man["window"]["from_ns"] == t1 and man["window"]["to_ns"] == t2
    cap = check_sensor_export(repo, "s1", t1, t2, man, files)
    assert cap.recs[0].ts == t1, "from is inclusive"
    assert all(r.ts < t2 for r in cap.recs), "to is exclusive"
    # Both copies of every packet: the replays were identical.
    assert len(cap.recs) % 2 == 0

    # Everything, every sensor; tshark reads the stored segments and the exports.
    t1, t2 = 0, 2_000_000_000 * NS
    out = tmp_path / "all.tar.gz"
    pcapline("export", "--dir", repo, "--from", "0", "--to", "2033-05-18T03:33:20Z", "-o", out)
    man, files = read_export(out)
    assert [s["id"] for s in man["sensors"]] == ["s1", "s2", "s3"]
    ex = tmp_path / "all"
    ex.mkdir()
    for sensor in ("s1", "s2", "s3"):
        check_sensor_export(repo, sensor, t1, t2, man, files)
        segs = stored_segments(repo, sensor)
        name = next(n for n in files if n.startswith(f"{sensor}/{sensor}.pcap"))
        (ex / Path(name).name).write_bytes(capture_member(files, sensor))
        with ThreadPoolExecutor(4) as pool:
            seg_rows = list(pool.map(tshark_rows, [repo / s.rel for s in segs]))
        want = list(heapq.merge(*seg_rows, key=lambda r: r[0]))
        got = tshark_rows(ex / Path(name).name)
        assert got == want, f"{sensor}: tshark sees another sequence in the export"


def test_export_filter_and_sensor_selection(repo, tmp_path):
    out = tmp_path / "f.tar.gz"
    pcapline("export", "--dir", repo, "--from", "0", "--to", "now", "--sensor", "s2",
             "--filter", "udp port 53", "-o", out)
    man, files = read_export(out)
    assert man["filter"] == "udp port 53"
    assert [s["id"] for s in man["sensors"]] == ["s2"]
    got = read_capture(files["s2/s2.pcap"])
    # tcpdump applies the same BPF to each stored segment, independently of pcapline.
    streams = []
    for s in stored_segments(repo, "s2"):
        f = tmp_path / "seg.pcap"
        subprocess.run(["tcpdump", "-r", repo / s.rel, "-w", f, "udp port 53"], check=True,
                       capture_output=True)
        streams.append(read_capture(f).recs)
    want = list(heapq.merge(*streams, key=lambda r: r.ts))
    assert len(want) > 0
    assert [(r.ts, r.digest) for r in got.recs] == [(r.ts, r.digest) for r in want]
    assert next(f for f in man["files"] if f["path"] == "s2/s2.pcap")["packets"] == len(want)


def test_scan_without_index_gives_the_same_export(repo, tmp_path):
    copy = tmp_path / "noindex"
    shutil.copytree(repo / "sensors", copy / "sensors")
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    pcapline("export", "--dir", repo, "--from", "0", "--to", "1900000000", "-o", a)
    p = pcapline("export", "--dir", copy, "--from", "0", "--to", "1900000000", "-o", b)
    assert b"no index.db" in p.stderr
    ma, fa = read_export(a)
    mb, fb = read_export(b)
    assert {k: v for k, v in fa.items() if k != "manifest.json"} == \
           {k: v for k, v in fb.items() if k != "manifest.json"}
    assert ma["files"] == mb["files"]


def test_export_errors(repo, tmp_path):
    out = tmp_path / "e.tar.gz"
    for args, rc, msg in [
        (["--from", "yesterday", "--to", "now"], 2, b"--from 'yesterday'"),
        (["--from", "now", "--to", "now-1h"], 2, b"before --to"),
        (["--from", "0", "--to", "now", "--sensor", "nope"], 1, b"no sensor 'nope'"),
        (["--from", "0", "--to", "now", "--sensor", "../etc"], 2, b"not a sensor id"),
        (["--from", "0", "--to", "now", "--filter", "tcp port"], 1, b"filter 'tcp port'"),
        (["--from", "0", "--to", "now", "--gzip-level", "0"], 2, b"gzip-level"),
    ]:
        p = pcapline("export", "--dir", repo, *args, "-o", out, check=False)
        assert p.returncode == rc, (args, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
        assert not out.exists()
        assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
    assert pcapline(check=False).returncode == 2
    p = pcapline("frobnicate", check=False)
    assert p.returncode == 2 and b"unknown command" in p.stderr and b"pcapline export" in p.stderr
    # Standard output.
    p = pcapline("export", "--dir", repo, "--from", "0", "--to", "now", "--sensor", "s3", "-o", "-")
    with tarfile.open(fileobj=io.BytesIO(p.stdout), mode="r:gz") as t:
        assert t.getnames()[0] == "manifest.json"
        assert "s3/s3.pcap" in t.getnames()


def test_progress_only_on_a_terminal(repo, tmp_path):
    args = [str(PCAPLINE), "export", "--dir", str(repo), "--from", "0", "--to", "now",
            "-o", str(tmp_path / "p.tar.gz")]
    p = subprocess.run(args, capture_output=True, timeout=120)
    assert p.returncode == 0 and b"\r" not in p.stderr and b"%" not in p.stderr, p.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            c = os.read(master, 4096)
        except OSError:
            break
        if not c:
            break
        chunks.append(c)
    os.close(master)
    assert proc.wait(60) == 0
    text = b"".join(chunks)
    assert re.search(rb"\rpcapline export: reading +\d+%", text), text
    assert re.search(rb"\rpcapline export: writing 100%", text), text


# --------------------------------------------------------------------------------
# Export -> import -> export.

def test_export_import_export_is_identical(repo, tmp_path):
    t1, t2 = "1000000000", "1900000000.5"
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    view = tmp_path / "view"
    pcapline("export", "--dir", repo, "--from", t1, "--to", t2, "-o", first)
    p = pcapline("import", first, "--dir", view)
    assert b"imported" in p.stderr
    assert not [n for n in os.listdir(view) if n.startswith(".import-")]
    # The view is a repository: segments named like the receiver's, an index.
    for sd in (view / "sensors").iterdir():
        for f in (sd / "segments").iterdir():
            assert SEGMENT_RE.match(f.name), f.name
            assert read_capture(f).fmt == "pcap"
    with sqlite3.connect(view / "index.db") as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    pcapline("export", "--dir", view, "--from", t1, "--to", t2, "-o", second)
    m1, f1 = read_export(first)
    m2, f2 = read_export(second)
    assert sorted(f1) == sorted(f2)
    for name in f1:
        if name != "manifest.json":
            assert f1[name] == f2[name], f"{name} differs after export -> import -> export"
    assert m1["files"] == m2["files"]
    assert [(s["id"], s["packets"]) for s in m1["sensors"]] == [(s["id"], s["packets"]) for s in m2["sensors"]]
    # A sub-window of the view is the same sub-window of the original.
    http = sorted(r.ts for s in stored_segments(repo, "s1") for r in s.recs)
    a, b = ns_str(http[100]), ns_str(http[3000])
    sub1, sub2 = tmp_path / "s1.tar.gz", tmp_path / "s2.tar.gz"
    pcapline("export", "--dir", repo, "--from", a, "--to", b, "--sensor", "s1", "-o", sub1)
    pcapline("export", "--dir", view, "--from", a, "--to", b, "--sensor", "s1", "-o", sub2)
    got1, got2 = (read_capture(capture_member(read_export(x)[1], "s1")) for x in (sub1, sub2))
    assert len(got1.recs) == 2900 and got1.recs == got2.recs and got1.ifaces == got2.ifaces
    # Importing the same archive again adds a second copy, never overwrites.
    pcapline("import", first, "--dir", view)
    third = tmp_path / "3.tar.gz"
    pcapline("export", "--dir", view, "--from", t1, "--to", t2, "--sensor", "s3", "-o", third)
    assert read_export(third)[0]["files"][0]["packets"] == 2 * next(
        f["packets"] for f in m1["files"] if f["path"] == "s3/s3.pcap")


# --------------------------------------------------------------------------------
# Name-resolution history.

def names_fixture(base):
    s = NS
    lines = [
        {"t": base + 20 * s, "addr": "198.18.9.2", "name": "cache.prod.svc", "ns": "prod", "src": "dns"},
        {"t": base + 1 * s, "addr": "198.18.9.1", "name": "a.default.svc", "ns": "default", "src": "dns"},
        {"t": base + 2 * s, "addr": "198.18.9.2", "name": "db.prod.svc", "ns": "prod", "src": "dns"},
        {"t": base + 5 * s, "addr": "198.18.9.3:8080", "name": "api.prod.svc", "ns": "prod", "src": "static"},
        {"t": base + 10 * s + s // 2, "addr": "198.18.9.4", "name": "at-from.example", "ns": "", "src": "hosts"},
        # The same second as `from`, after it: collapses into that second's key.
        {"t": base + 10 * s + 7 * s // 10, "addr": "198.18.9.1", "name": "b.default.svc", "ns": "default", "src": "dns"},
        {"t": base + 20 * s + s // 2, "addr": "fd00::5", "name": "w\u00e9ird \"q\".ns2", "ns": "ns2", "src": "dns"},
        {"t": base + 30 * s, "addr": "198.18.9.3:8080", "name": "", "ns": "", "src": "static"},  # ends
        {"t": base + 40 * s, "addr": "198.18.9.2", "name": "cache.prod.svc", "ns": "prod", "src": "dns"},  # repeat
        {"t": base + 100 * s, "addr": "198.18.9.1", "name": "at-to.default.svc", "ns": "default", "src": "dns"},
        {"t": base + 200 * s, "addr": "198.18.9.9", "name": "later.svc", "ns": "", "src": "dns"},
    ]
    text = "".join(json.dumps(l) + "\n" for l in lines)
    text += "{not json\n" + json.dumps({"t": base, "name": "no-addr"}) + "\n"
    text += json.dumps({"t": base + 50 * s, "addr": "198.18.9.7", "name": "torn", "ns": ""})  # no newline
    return text


def names_expected(base):
    k = base // NS
    a1b = {"FullAddress": "b.default.svc", "Namespace": "default"}
    db = {"FullAddress": "db.prod.svc", "Namespace": "prod"}
    cache = {"FullAddress": "cache.prod.svc", "Namespace": "prod"}
    api = {"FullAddress": "api.prod.svc", "Namespace": "prod"}
    at = {"FullAddress": "at-from.example", "Namespace": ""}
    w = {"FullAddress": "w\u00e9ird \"q\".ns2", "Namespace": "ns2"}
    return {
        str(k + 10): {"198.18.9.1": a1b, "198.18.9.2": db, "198.18.9.3:8080": api, "198.18.9.4": at},
        str(k + 20): {"198.18.9.1": a1b, "198.18.9.2": cache, "198.18.9.3:8080": api, "198.18.9.4": at, "fd00::5": w},
        str(k + 30): {"198.18.9.1": a1b, "198.18.9.2": cache, "198.18.9.4": at, "fd00::5": w},
    }


def test_name_history_json_and_round_trip(repo, tmp_path):
    # A sensor 'web' with s3's segments and a hand-written names.jsonl; no index (scan).
    names_repo = tmp_path / "names"
    segdir = names_repo / "sensors" / "web" / "segments"
    segdir.mkdir(parents=True)
    for s in stored_segments(repo, "s3"):
        shutil.copy(repo / s.rel, segdir)
    # `from` = base + 10.5 s falls on or before the first packet, so the window holds some.
    base = ((min(s.min_ns for s in stored_segments(repo, "s3")) - 10 * NS - NS // 2) // NS) * NS
    (names_repo / "sensors" / "web" / "names.jsonl").write_text(names_fixture(base))
    t1, t2 = base + 10 * NS + NS // 2, base + 100 * NS
    out = tmp_path / "n.tar.gz"
    p = pcapline("export", "--dir", names_repo, "--from", ns_str(t1), "--to", ns_str(t2), "-o", out)
    assert b"2 of 13 lines malformed" in p.stderr, p.stderr
    man, files = read_export(out)
    got = json.loads(files["web/name_resolution_history.json"])
    assert got == names_expected(base)
    assert list(got) == sorted(got, key=int), "keys in time order"
    assert next(f for f in man["files"] if f["path"] == "web/name_resolution_history.json")["keys"] == 3
    assert man["name_resolution_history_unit"] == "seconds"

    # Import rebuilds names.jsonl; the same window exports the same JSON again.
    view = tmp_path / "view"
    pcapline("import", out, "--dir", view)
    lines = [json.loads(l) for l in (view / "sensors" / "web" / "names.jsonl").read_text().splitlines()]
    assert all(l["t"] % NS == 0 for l in lines), "keys are seconds"
    out2 = tmp_path / "n2.tar.gz"
    pcapline("export", "--dir", view, "--from", ns_str(t1), "--to", ns_str(t2), "-o", out2)
    assert read_export(out2)[1]["web/name_resolution_history.json"] == files["web/name_resolution_history.json"]
    # A later window, from both: the state at its start, then the end of 198.18.9.3:8080.
    a, b = base + 25 * NS, base + 35 * NS
    for d in (names_repo, view):
        o = tmp_path / "late.tar.gz"
        pcapline("export", "--dir", d, "--from", ns_str(a), "--to", ns_str(b), "--sensor", "web", "-o", o)
        got = json.loads(read_export(o)[1]["web/name_resolution_history.json"])
        exp = names_expected(base)
        assert got == {str(a // NS): exp[str(base // NS + 20)], str(base // NS + 30): exp[str(base // NS + 30)]}
        o.unlink()
    # A sensor without names.jsonl has an empty history; one asked for by --sensor with
    # no packet in the window has an empty capture.
    (names_repo / "sensors" / "web" / "names.jsonl").unlink()
    pcapline("export", "--dir", names_repo, "--from", ns_str(t1), "--to", ns_str(t2), "-o", out2)
    assert json.loads(read_export(out2)[1]["web/name_resolution_history.json"]) == {}
    pcapline("export", "--dir", names_repo, "--from", "1", "--to", "2", "--sensor", "web", "-o", out2)
    man, files = read_export(out2)
    empty = read_capture(files["web/web.pcap"])
    assert empty.recs == [] and man["files"][0]["packets"] == 0 and man["files"][0]["first"] is None


def test_name_history_overlong_line_read_in_bounded_memory(repo, tmp_path):
    """A names.jsonl line of 128 MiB (a damaged or hostile file) is one malformed line,
    named, and never held in memory: the export's peak RSS stays that of any export."""
    names_repo = tmp_path / "names"
    segdir = names_repo / "sensors" / "web" / "segments"
    segdir.mkdir(parents=True)
    for s in stored_segments(repo, "s3"):
        shutil.copy(repo / s.rel, segdir)
    first = min(s.min_ns for s in stored_segments(repo, "s3"))
    with open(names_repo / "sensors" / "web" / "names.jsonl", "wb") as f:
        f.write(json.dumps({"t": first - NS, "addr": "198.18.9.1", "name": "a.svc", "ns": ""}).encode() + b"\n")
        f.write(b'{"t":1,"addr":"198.18.9.1","name":"')
        chunk = b"x" * (1 << 20)
        for _ in range(128):
            f.write(chunk)
        f.write(b'"}\n')
        f.write(json.dumps({"t": first + NS, "addr": "198.18.9.2", "name": "b.svc", "ns": ""}).encode() + b"\n")
    out = tmp_path / "n.tar.gz"
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", str(PCAPLINE), "export", "--dir", str(names_repo),
                        "--from", ns_str(first), "--to", ns_str(first + 10 * NS), "-o", str(out)],
                       capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert b"1 of 3 lines malformed, skipped (the first: line 2)" in p.stderr, p.stderr
    _, files = read_export(out)
    got = json.loads(files["web/name_resolution_history.json"])
    k = first // NS
    assert got == {str(k): {"198.18.9.1": {"FullAddress": "a.svc", "Namespace": ""}},
                   str(k + 1): {"198.18.9.1": {"FullAddress": "a.svc", "Namespace": ""},
                                "198.18.9.2": {"FullAddress": "b.svc", "Namespace": ""}}}
    rss = int(re.search(rb"maxrss_kib=(\d+)", p.stderr).group(1))
    if sanitized(PCAPLINE):
        pytest.skip(f"peak RSS {rss} KiB not judged under ASan")
    assert rss < RSS_LIMIT_KIB, f"peak RSS {rss} KiB with a 128 MiB history line"


# --------------------------------------------------------------------------------
# Kubeshark archives and hostile archives.

def tar_gz(path, entries):
    """entries: (TarInfo or name, bytes or None)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            if isinstance(ti, str):
                ti = tarfile.TarInfo(ti)
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)


def test_import_kubeshark_archive(tmp_path):
    dns = (PCAPS / "dns-udp-queries.pcap").read_bytes()
    http = (PCAPS / "http-ipv6.pcap").read_bytes()
    k0 = read_capture(dns).recs[0].ts // NS
    history = {
        str(k0): {"198.18.9.1": {"FullAddress": "a.svc.default", "Namespace": "default"},
                  "198.18.9.2:53": {"FullAddress": "dns.kube-system", "Namespace": "kube-system"}},
        str(k0 + 60): {"198.18.9.1": {"FullAddress": "b.svc.default", "Namespace": "default"}},
    }
    archive = tmp_path / "kubeshark_1700000000.tar.gz"
    tar_gz(archive, [
        ("node-a_10.1.2.3/1700000000.pcap", dns),
        ("node-a_10.1.2.3/name_resolution_history.json", json.dumps(history).encode()),
        ("node-b_198.18.7.2/1700000000.pcap", http),
        ("content.json", json.dumps({"kfl_index": 0, "kfl_query": "dns", "l4_streams": [],
                                     "pcap_file_name": "x", "time": 1}).encode()),
    ])
    view = tmp_path / "view"
    pcapline("import", archive, "--dir", view)
    assert sorted(os.listdir(view / "sensors")) == ["node-a_10.1.2.3", "node-b_198.18.7.2"]
    out = tmp_path / "x.tar.gz"
    pcapline("export", "--dir", view, "--from", "0", "--to", "now", "-o", out)
    man, files = read_export(out)
    for sensor, raw in (("node-a_10.1.2.3", dns), ("node-b_198.18.7.2", http)):
        got = read_capture(files[f"{sensor}/{sensor}.pcap"]).recs
        want = read_capture(raw).recs  # one segment: its order is kept
        assert [(r.ts, r.caplen, r.origlen, r.digest) for r in got] == \
            [(r.ts, r.caplen, r.origlen, r.digest) for r in want]
    # Each key was a full map: the same maps come back, the dropped address stays dropped.
    assert json.loads(files["node-a_10.1.2.3/name_resolution_history.json"]) == history
    assert json.loads(files["node-b_198.18.7.2/name_resolution_history.json"]) == {}


def small_pcap():
    rec = b"\x00" * 60
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + \
        struct.pack("<IIII", 1700000000, 5, len(rec), len(rec)) + rec


def dev_entry(name, kind):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.devmajor, ti.devminor = 1, 3
    return ti


def link_entry(name, kind, target):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    return ti


def tampered_manifest(path):
    good = path.parent / "good-export.tar.gz"
    man, files = read_export(good)
    man["files"][0]["sha256"] = "0" * 64
    files["manifest.json"] = json.dumps(man).encode()
    tar_gz(path, [(n, files[n]) for n in ["manifest.json"] + [n for n in files if n != "manifest.json"]])


HOSTILE = {
    "absolute": (lambda p: tar_gz(p, [("/tmp/evil/x.pcap", small_pcap())]), [], "absolute path"),
    "dotdot": (lambda p: tar_gz(p, [("s1/../../evil.pcap", small_pcap())]), [], "with '[.][.]' refused"),
    "symlink": (lambda p: tar_gz(p, [(link_entry("s1/x.pcap", tarfile.SYMTYPE, "/etc/passwd"), None)]),
                [], "symbolic link"),
    "hardlink": (lambda p: tar_gz(p, [("s1/a.pcap", small_pcap()),
                                      (link_entry("s1/b.pcap", tarfile.LNKTYPE, "s1/a.pcap"), None)]),
                 [], "hard link"),
    "device": (lambda p: tar_gz(p, [(dev_entry("s1/null.pcap", tarfile.CHRTYPE), None)]), [], "device"),
    "fifo": (lambda p: tar_gz(p, [(dev_entry("s1/fifo.pcap", tarfile.FIFOTYPE), None)]), [], "FIFO"),
    "too-big": (lambda p: tar_gz(p, [("s1/big.pcap", small_pcap() * 30)]),
                ["--max-entry-size", "1000"], "above the limit"),
    "too-many": (lambda p: tar_gz(p, [(f"s1/{i}.pcap", small_pcap()) for i in range(12)]),
                 ["--max-entries", "10"], "more than 10 entries"),
    "not-a-pcap": (lambda p: tar_gz(p, [("s1/ok.pcap", small_pcap()), ("s1/bad.pcap", b"GET / HTTP/1.1\r\n" * 8)]),
                   [], "not a valid capture"),
    "truncated-pcap": (lambda p: tar_gz(p, [("s1/cut.pcap", (PCAPS / "truncated-file-cut-mid-packet.pcap").read_bytes())]),
                       [], "corrupt capture after 2696 records"),
    "bad-json": (lambda p: tar_gz(p, [("s1/x.pcap", small_pcap()),
                                      ("s1/name_resolution_history.json", b'{"yesterday": {}}')]),
                 [], "not Unix seconds"),
    "bad-json-shape": (lambda p: tar_gz(p, [("s1/name_resolution_history.json",
                                             b'{"1700000000": {"198.18.9.1": "x"}}')]), [], "FullAddress"),
    "deep": (lambda p: tar_gz(p, [("a/b/c.pcap", small_pcap())]), [], "unexpected path"),
    "manifest-hash": (tampered_manifest, [], "differs from manifest.json"),
    "not-gzip": (lambda p: p.write_bytes(os.urandom(4096)), [], "not a tar archive"),
    "cut-gzip": (lambda p: p.write_bytes((p.parent / "good-export.tar.gz").read_bytes()[:3000]), [],
                 "(?i)truncat|ends inside"),
    "empty": (lambda p: tar_gz(p, [("README", b"hello")]), [], "no sensor folder"),
    "duplicate": (lambda p: tar_gz(p, [("s1/a.pcap", small_pcap()), ("./s1/a.pcap", small_pcap())]),
                  [], "appears twice"),
}


def tree_state(d):
    """Every path, type, size and mtime under d, plus the index rows."""
    state = []
    for root, dirs, files in os.walk(d):
        for n in sorted(dirs + files):
            if n.startswith("index.db-"):
                continue  # SQLite's WAL side files come and go with readers
            st = os.lstat(os.path.join(root, n))
            state.append((os.path.relpath(os.path.join(root, n), d), stat.S_IFMT(st.st_mode),
                          st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime_ns))
    with sqlite3.connect(Path(d) / "index.db") as c:
        rows = c.execute("SELECT * FROM segments ORDER BY id").fetchall()
    return sorted(state), rows


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_import_refuses_hostile_archive(case, repo, tmp_path):
    build, extra, msg = HOSTILE[case]
    view = tmp_path / "view"
    good = tmp_path / "good-export.tar.gz"
    pcapline("export", "--dir", repo, "--from", "0", "--to", "now", "--sensor", "s3", "-o", good)
    pcapline("import", good, "--dir", view)
    before = tree_state(view)
    bad = tmp_path / f"{case}.tar.gz"
    build(bad)
    p = pcapline("import", bad, "--dir", view, *extra, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "import refused, nothing changed" in err and re.search(msg, err), err
    assert tree_state(view) == before
    assert not [n for n in os.listdir(view) if n.startswith(".")], os.listdir(view)
    assert not Path("/tmp/evil").exists() and not (tmp_path / "evil.pcap").exists()


# --------------------------------------------------------------------------------
# Snapshots.

def test_snapshot_lifecycle(repo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(repo, data)
    s2 = stored_segments(data, "s2")
    ts = sorted(r.ts for s in s2 for r in s.recs)
    t1, t2 = ns_str(ts[len(ts) // 3]), ns_str(ts[2 * len(ts) // 3])
    pcapline("snapshot", "create", "mid", "--dir", data, "--from", t1, "--to", t2)
    snap = data / "snapshots" / "mid"
    # Read-only, hard links of whole segments, a manifest with their digests.
    for root, dirs, files in os.walk(snap):
        for n in dirs + files:
            assert os.lstat(os.path.join(root, n)).st_mode & 0o222 == 0, n
    assert os.stat(snap).st_mode & 0o777 == 0o555
    man = json.loads((snap / "manifest.json").read_text())
    assert man["format"] == "pcapline-snapshot" and man["sensors"] == ["s2"]
    segs = [f for f in man["files"] if f["type"] == "segment"]
    overlapping = [s for s in s2 if s.min_ns < int(t2.replace(".", "")) and
                   max(r.ts for r in s.recs) >= int(t1.replace(".", ""))]
    assert [f["path"] for f in segs] == [s.rel for s in overlapping]
    for f in man["files"]:
        assert hashlib.sha256((snap / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    for f in segs:
        assert (snap / f["path"]).stat().st_nlink == 2
        assert f["packets"] == len(read_capture(snap / f["path"]).recs)

    p = pcapline("snapshot", "list", "--dir", data)
    rows = p.stdout.decode().splitlines()
    assert rows[0].split()[:3] == ["NAME", "FROM", "TO"]
    assert rows[1].split()[0] == "mid" and rows[1].split()[4] == str(len(segs))
    pcapline("snapshot", "verify", "mid", "--dir", data)

    # The snapshot's export is the repository's export of the same window.
    a, b = tmp_path / "repo.tar.gz", tmp_path / "snap.tar.gz"
    pcapline("export", "--dir", data, "--from", t1, "--to", t2, "-o", a)
    pcapline("snapshot", "export", "mid", "--dir", data, "-o", b)
    ma, fa = read_export(a)
    mb, fb = read_export(b)
    assert mb["source"] == {"kind": "snapshot", "name": "mid"}
    assert {k: v for k, v in fa.items() if k != "manifest.json"} == \
           {k: v for k, v in fb.items() if k != "manifest.json"}

    # Retention deletes the originals: the snapshot still exports the same.
    with sqlite3.connect(data / "index.db") as c:
        for s in overlapping:
            (data / s.rel).unlink()
            c.execute("DELETE FROM segments WHERE path = ?", (s.rel,))
    c.close()
    c2 = tmp_path / "after.tar.gz"
    pcapline("snapshot", "export", "mid", "--dir", data, "-o", c2)
    assert {k: v for k, v in read_export(c2)[1].items() if k != "manifest.json"} == \
           {k: v for k, v in fb.items() if k != "manifest.json"}
    pcapline("snapshot", "verify", "mid", "--dir", data)

    # Names: existing one refused, bad names refused, unknown ones reported.
    p = pcapline("snapshot", "create", "mid", "--dir", data, "--from", "0", "--to", "now", check=False)
    assert p.returncode == 1 and b"exists" in p.stderr
    p = pcapline("snapshot", "create", "../up", "--dir", data, "--from", "0", "--to", "now", check=False)
    assert p.returncode == 2
    p = pcapline("snapshot", "export", "nope", "--dir", data, "-o", tmp_path / "n.tar.gz", check=False)
    assert p.returncode == 1
    p = pcapline("snapshot", "create", "empty", "--dir", data, "--from", "0", "--to", "1", check=False)
    assert p.returncode == 1 and b"no segment" in p.stderr
    assert sorted(os.listdir(data / "snapshots")) == ["mid"]

    # Damage is found.
    victim = snap / segs[0]["path"]
    os.chmod(victim, 0o644)
    with open(victim, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\xff")
    p = pcapline("snapshot", "verify", "mid", "--dir", data, check=False)
    assert p.returncode == 1 and segs[0]["path"].encode() in p.stderr

    pcapline("snapshot", "delete", "mid", "--dir", data)
    assert os.listdir(data / "snapshots") == []
    assert pcapline("snapshot", "list", "--dir", data).stdout.decode().count("\n") == 1
    assert pcapline("snapshot", "delete", "mid", "--dir", data, check=False).returncode == 1


# --------------------------------------------------------------------------------
# A large window: memory stays flat; kill -9 leaves nothing under the target name.

def big_capture(path, target_bytes):
    """One ns pcap of test captures repeated with shifted timestamps until target_bytes."""
    caps = [read_raw(PCAPS / n) for n in ("tcp-echo-500-conns.pcap", "http-1000-requests-one-conn.pcap",
                                           "mqtt5-large-publish-jpeg.pcap")]
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        size, n, t = 24, 0, 1_700_000_000 * NS
        while size < target_bytes:
            for recs in caps:
                base = recs[0][0]
                for ts, orig, data in recs:
                    nt = t + max(ts - base, 0)
                    out.write(struct.pack("<IIII", nt // NS, nt % NS, len(data), orig))
                    out.write(data)
                    size += 16 + len(data)
                    n += 1
                t = nt + 1000
    return n, size


def read_raw(p):
    cap = read_capture(p)
    assert cap.ifaces[0][0] == 1
    b = Path(p).read_bytes()
    nano = b[:4] == b"\x4d\x3c\xb2\xa1"
    out, off = [], 24
    while off + 16 <= len(b):
        s, f, i, o = struct.unpack("<IIII", b[off:off + 16])
        out.append((s * NS + (f if nano else f * 1000), o, b[off + 16:off + 16 + i]))
        off += 16 + i
    return out


@pytest.fixture(scope="module")
def big_repo(binaries, certs, tmp_path_factory):
    work = tmp_path_factory.mktemp("bigexport")
    n, size = big_capture(work / "big.pcap", 200 * 10**6)
    data = fill_repository(binaries, certs, work, [("s1", work / "big.pcap")],
                           env={"PCAPLINE_STORAGE_SEGMENT_SIZE": "16M"})
    (work / "big.pcap").unlink()
    return data, n, size


def test_large_export_keeps_memory_flat(big_repo, tmp_path):
    data, n, size = big_repo
    stored = sum(f.stat().st_size for f in (data / "sensors" / "s1" / "segments").iterdir())
    assert stored > 190 * 10**6
    out = tmp_path / "big.tar.gz"
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", str(PCAPLINE), "export", "--dir", str(data),
                        "--from", "0", "--to", "now", "-o", str(out)], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rss = int(re.search(rb"maxrss_kib=(\d+)", p.stderr).group(1))
    with tarfile.open(out, "r:gz") as t:
        man = json.load(t.extractfile("manifest.json"))
        member = t.getmember("s1/s1.pcap")
        h = hashlib.sha256()
        f = t.extractfile(member)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    entry = man["files"][0]
    assert entry["packets"] == n
    assert entry["bytes"] == member.size == size
    assert entry["sha256"] == h.hexdigest()
    if sanitized(PCAPLINE):
        pytest.skip(f"peak RSS {rss} KiB not judged under ASan")
    assert rss < RSS_LIMIT_KIB, f"peak RSS {rss} KiB for a {stored} byte window"


def test_kill_during_export_leaves_no_partial_output(big_repo, tmp_path):
    data, _, _ = big_repo
    out = tmp_path / "out.tar.gz"
    for old in (b"the previous export", None):
        if old is not None:
            out.write_bytes(old)
        p = subprocess.Popen([str(PCAPLINE), "export", "--dir", str(data), "--from", "0", "--to", "now",
                              "-o", str(out)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        assert p.poll() is None, "export finished before it could be killed"
        p.send_signal(signal.SIGKILL)
        p.wait()
        names = os.listdir(tmp_path)
        if old is None:
            assert names == [], names
        else:
            assert names == ["out.tar.gz"], names
            assert out.read_bytes() == old
            out.unlink()
