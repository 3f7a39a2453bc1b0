# SPDX-License-Identifier: BSD-2-Clause
"""File replay end to end: every capture in tests/data/pcaps goes sensor -> receiver
over loopback mutual TLS, and what the receiver stored must be, interface by
interface and record by record, what the capture holds: timestamps to the
nanosecond, original and captured lengths, packet bytes, link type and snaplen.

Both sides are read twice, independently: with tshark (interface id, epoch time
with 9 decimals, frame.len, frame.cap_len) and with the small pcap/pcapng reader
below (same fields plus a SHA-256 of every record's bytes); the two readings of
the original must agree with each other before the stored files are judged.
"""
import hashlib
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import DATA, Proc, free_port, tls_args, wait_listening

PCAPS = DATA / "pcaps"
CAPTURES = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
TRUNCATED = "truncated-file-cut-mid-packet.pcap"
# Complete records in the truncated file: `capinfos` reports "An error occurred
# after reading 2696 packets ... cut short in the middle of a packet".
TRUNCATED_COMPLETE = 2696

PCAP_NS_MAGIC_LE = b"\x4d\x3c\xb2\xa1"  # 0xa1b23c4d written little-endian
# <first-ts-ns>-<epoch>-<seq>.<ifindex>-<ifname>.pcap (groups: ts, seq, ifname)
SEGMENT_RE = re.compile(r"^(\d+)-[0-9a-f]{16}-(\d+)\.\d+-(.+)\.pcap$")


# --------------------------------------------------------------------------------
# A minimal, independent pcap/pcapng reader (no product code involved).

@dataclass
class Iface:
    linktype: int
    snaplen: int
    name: str = ""
    tsresol: int = 6  # pcapng default: microseconds
    tsoffset: int = 0


@dataclass
class Rec:
    iface: int
    ts_ns: int
    orig_len: int
    cap_len: int
    digest: str


@dataclass
class Capture:
    fmt: str  # "pcap" or "pcapng"
    ifaces: list = field(default_factory=list)
    recs: list = field(default_factory=list)
    truncated: bool = False
    magic: bytes = b""


def _units_to_ns(ts, tsresol):
    if tsresol & 0x80:
        return (ts * 10**9) >> (tsresol & 0x7F)
    exp = tsresol
    return ts * 10 ** (9 - exp) if exp <= 9 else ts // 10 ** (exp - 9)


def read_capture(path):
    b = Path(path).read_bytes()
    magic = b[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(b)
    return _read_pcap(b)


def _read_pcap(b):
    m = b[:4]
    for endian in ("<", ">"):
        (v,) = struct.unpack(endian + "I", m)
        if v in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError(f"not a pcap file (magic {m.hex()})")
    nano = v == 0xA1B23C4D
    _, _, _, _, snaplen, link = struct.unpack(endian + "HHiIII", b[4:24])
    cap = Capture("pcap", [Iface(link & 0xFFFF, snaplen, tsresol=9 if nano else 6)], magic=m)
    off = 24
    while off < len(b):
        if off + 16 > len(b):
            cap.truncated = True
            break
        sec, frac, incl, orig = struct.unpack(endian + "IIII", b[off:off + 16])
        if off + 16 + incl > len(b):
            cap.truncated = True
            break
        data = b[off + 16:off + 16 + incl]
        ts = sec * 10**9 + (frac if nano else frac * 1000)
        cap.recs.append(Rec(0, ts, orig, incl, hashlib.sha256(data).hexdigest()))
        off += 16 + incl
    return cap


def _options(body, endian):
    off = 0
    while off + 4 <= len(body):
        code, ln = struct.unpack(endian + "HH", body[off:off + 4])
        if code == 0:
            return
        yield code, body[off + 4:off + 4 + ln]
        off += 4 + ((ln + 3) & ~3)


def _read_pcapng(b):
    cap = Capture("pcapng", magic=b[:4])
    off = 0
    endian = "<"
    base = 0  # interface ids restart in every section; tshark numbers them globally
    while off < len(b):
        if off + 12 > len(b):
            cap.truncated = True
            break
        if b[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if b[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            base = len(cap.ifaces)
        btype, blen = struct.unpack(endian + "II", b[off:off + 8])
        if blen < 12 or off + blen > len(b):
            cap.truncated = True
            break
        body = b[off + 8:off + blen - 4]
        if btype == 1:  # IDB
            link, _, snaplen = struct.unpack(endian + "HHI", body[:8])
            ifc = Iface(link, snaplen)
            for code, val in _options(body[8:], endian):
                if code == 2:
                    ifc.name = val.split(b"\0")[0].decode("utf-8", "replace")
                elif code == 9:
                    ifc.tsresol = val[0]
                elif code == 14:
                    (ifc.tsoffset,) = struct.unpack(endian + "q", val[:8])
            cap.ifaces.append(ifc)
        elif btype in (6, 2):  # EPB, obsolete Packet Block
            if btype == 6:
                iid, hi, lo, incl, orig = struct.unpack(endian + "IIIII", body[:20])
            else:
                iid, _, hi, lo, incl, orig = struct.unpack(endian + "HHIIII", body[:20])
            ifc = cap.ifaces[base + iid]
            ts = _units_to_ns((hi << 32) | lo, ifc.tsresol) + ifc.tsoffset * 10**9
            data = body[20:20 + incl]
            cap.recs.append(Rec(base + iid, ts, orig, incl, hashlib.sha256(data).hexdigest()))
        elif btype == 3:  # SPB: interface 0 of the section, no timestamp
            (orig,) = struct.unpack(endian + "I", body[:4])
            ifc = cap.ifaces[base]
            incl = min(orig, ifc.snaplen) if ifc.snaplen else orig
            data = body[4:4 + incl]
            cap.recs.append(Rec(base, 0, orig, incl, hashlib.sha256(data).hexdigest()))
        off += blen
    return cap


# --------------------------------------------------------------------------------
# tshark side.

TSHARK_FIELDS = ["frame.interface_id", "frame.time_epoch", "frame.len", "frame.cap_len"]


def tshark_start(path):
    argv = ["tshark", "-n", "-r", str(path), "--disable-protocol", "ALL", "-T", "fields"]
    for f in TSHARK_FIELDS:
        argv += ["-e", f]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tshark_finish(p):
    """Returns [(iface, epoch-string, len, cap_len)] and tshark's stderr."""
    out, err = p.communicate(timeout=120)
    err = "\n".join(l for l in err.splitlines() if not l.startswith("Running as user"))
    rows = []
    for line in out.splitlines():
        iid, t, ln, cl = line.split("\t")
        assert re.fullmatch(r"\d+\.\d{9}", t), f"tshark did not print ns precision: {t!r}"
        rows.append((int(iid or 0), t, int(ln), int(cl)))
    return rows, err


def ns_to_epoch(ns):
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def sanitize(name):
    """How a stored segment's file name carries an interface name (path-safe)."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
    return "_" + s[1:] if s[0] == "." else s


# --------------------------------------------------------------------------------

def wait_closed(seg_dir, timeout=15.0):
    """Waits until the receiver has closed and renamed every segment (no .open-*)."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [p.name for p in seg_dir.iterdir()] if seg_dir.is_dir() else []
        if names and not any(n.startswith(".open-") for n in names):
            return sorted(seg_dir.iterdir())
        time.sleep(0.05)
    names = sorted(p.name for p in seg_dir.iterdir()) if seg_dir.is_dir() else None
    raise AssertionError(f"segments not closed within {timeout}s: {names}")


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_replay_stores_every_record(capture, binaries, certs, procs, tmp_path):
    sensor_bin, receiver_bin = binaries
    orig_ts = tshark_start(capture)
    orig = read_capture(capture)

    port = free_port()
    data_dir = tmp_path / "data"
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data_dir] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)
    sx = Proc([sensor_bin, "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
              tmp_path / "sensor.log")
    procs.append(sx)
    rc = sx.wait(timeout=90)
    slog = sx.text()
    assert rc == 0, f"sensor exited {rc}:\n{slog}"

    seg_dir = data_dir / "sensors" / "s1" / "segments"
    stored = wait_closed(seg_dir)
    assert rx.p.poll() is None, "receiver died:\n" + rx.text()

    # -- The original, read two ways, must agree with itself and with the manifest.
    orig_rows, orig_err = tshark_finish(orig_ts)
    assert [(r.iface, ns_to_epoch(r.ts_ns), r.orig_len, r.cap_len) for r in orig.recs] == orig_rows, \
        "test reader and tshark disagree about the original"
    if capture.name == TRUNCATED:
        assert orig.truncated and len(orig.recs) == TRUNCATED_COMPLETE
        assert "cut short" in orig_err
        assert re.search(r"warn.*(middle of a record|cut|truncat)", slog), slog
    else:
        assert not orig.truncated, f"{capture.name} unexpectedly truncated"
    assert re.search(rf"captured {len(orig.recs)} packets", slog), slog

    # -- Stored segments: one file per interface that has packets, named after it.
    by_name = {}
    for p in stored:
        m = SEGMENT_RE.match(p.name)
        assert m, f"unexpected file in segment dir: {p.name}"
        by_name.setdefault(m.group(3), []).append((int(m.group(2)), int(m.group(1)), p))
    expected = {}
    for i, ifc in enumerate(orig.ifaces):
        recs = [r for r in orig.recs if r.iface == i]
        if recs:
            expected[sanitize(ifc.name) if ifc.name else f"if{i}"] = (i, recs)
    assert sorted(by_name) == sorted(expected), \
        f"stored files {[p.name for p in stored]} do not match interfaces {list(expected)}"

    readers = {}
    for name, segs in by_name.items():
        segs.sort()
        readers[name] = [(first_ns, p, tshark_start(p)) for _, first_ns, p in segs]

    for name, (iid, want) in expected.items():
        ifc = orig.ifaces[iid]
        got_recs, got_rows = [], []
        for first_ns, p, ts_proc in readers[name]:
            hdr = p.read_bytes()[:24]
            assert hdr[:4] == PCAP_NS_MAGIC_LE, f"{p.name}: magic {hdr[:4].hex()} is not a1b23c4d (LE)"
            seg = read_capture(p)
            assert seg.fmt == "pcap" and not seg.truncated, p.name
            assert seg.ifaces[0].linktype == ifc.linktype, \
                f"{p.name}: link type {seg.ifaces[0].linktype}, original interface {iid} has {ifc.linktype}"
            assert seg.ifaces[0].snaplen == ifc.snaplen, \
                f"{p.name}: snaplen {seg.ifaces[0].snaplen}, original interface {iid} has {ifc.snaplen}"
            assert seg.recs, f"{p.name}: empty segment"
            assert seg.recs[0].ts_ns == first_ns, f"{p.name}: name does not carry the first timestamp"
            rows, err = tshark_finish(ts_proc)
            assert not err.strip(), f"tshark on {p.name}: {err}"
            got_recs += seg.recs
            got_rows += rows
        assert len(got_recs) == len(want), \
            f"interface {iid} ({name}): stored {len(got_recs)} records, original has {len(want)}"
        # tshark view: epoch ns string, len, cap_len (stored files are single-interface).
        assert [r[1:] for r in got_rows] == [(ns_to_epoch(r.ts_ns), r.orig_len, r.cap_len) for r in want]
        for k, (g, w) in enumerate(zip(got_recs, want)):
            assert (g.ts_ns, g.orig_len, g.cap_len, g.digest) == (w.ts_ns, w.orig_len, w.cap_len, w.digest), \
                f"interface {iid} ({name}) record {k}: stored {g} != original {w}"

    assert rx.stop() == 0, rx.text()


def test_replaying_same_file_twice_keeps_both_copies(binaries, certs, procs, tmp_path):
    sensor_bin, receiver_bin = binaries
    capture = PCAPS / "dns-udp-queries.pcap"
    port = free_port()
    data_dir = tmp_path / "data"
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data_dir] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)
    seg_dir = data_dir / "sensors" / "s1" / "segments"
    for n in (1, 2):
        sx = Proc([sensor_bin, "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                  tmp_path / f"sensor{n}.log")
        procs.append(sx)
        assert sx.wait(30) == 0, sx.text()
        wait_closed(seg_dir)
    assert rx.stop() == 0, rx.text()
    want = read_capture(capture).recs
    stored = [r for p in sorted(seg_dir.iterdir()) for r in read_capture(p).recs]
    # Both sessions were acknowledged, so both copies must be on disk.
    assert len(stored) == 2 * len(want), \
        f"{len(stored)} records on disk ({[p.name for p in seg_dir.iterdir()]}), expected {2 * len(want)}"
