# SPDX-License-Identifier: BSD-2-Clause
"""pcapline import against hostile archives that the first round of checks let through,
and classic pcap files of versions before 2.3.

Every archive is built here with Python's tarfile/gzip/zlib and imported by the real
`pcapline`; what was stored is judged by exporting it again and reading the export with
the reader of test_export.py, capinfos, tshark or tcpdump. Refused archives must leave the
view exactly as it was (tree and index rows) and no staging folder behind.
"""
import hashlib
import io
import json
import os
import struct
import subprocess
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import pytest

from conftest import BUILD, sanitized
from test_export import (PCAPLINE, pcapline, read_capture, read_export, small_pcap, tar_gz,
                         tree_state)

MIB = 1 << 20


def pcap_bytes(recs, minor=4, magic=0xA1B2C3D4, snaplen=65535):
    """recs: (sec, usec, caplen_field, origlen_field, data) written as given."""
    out = [struct.pack("<IHHiIII", magic, 2, minor, 0, 0, snaplen, 1)]
    for sec, usec, f1, f2, data in recs:
        out.append(struct.pack("<IIII", sec, usec, f1, f2) + data)
    return b"".join(out)


def measure(argv, timeout=300):
    """(returncode, stderr, seconds, max RSS KiB, bytes written) of one process.
    The peak RSS comes from /usr/bin/time: a child forked from this (large) pytest
    process would report this process's RSS as its own peak."""
    t0 = time.monotonic()
    rss_file = tempfile.NamedTemporaryFile(prefix="rss-", delete=False)
    rss_file.close()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + [str(a) for a in argv],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = b""
    deadline = t0 + timeout
    os.set_blocking(p.stderr.fileno(), False)
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        chunk = p.stderr.read()
        if chunk:
            err += chunk
        if pid != 0:
            break
        if time.monotonic() > deadline:
            p.kill()
            os.wait4(p.pid, 0)
            raise TimeoutError(f"{argv} still running after {timeout} s")
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    rest = p.stderr.read()
    if rest:
        err += rest
    p.stderr.close()
    rss = Path(rss_file.name).read_text().split()
    os.unlink(rss_file.name)
    return (p.returncode, err.decode(errors="replace"), time.monotonic() - t0, int(rss[-1]),
            ru.ru_oublock * 512)


def export_all(view, out):
    pcapline("export", "--dir", view, "--from", "0", "--to", "now", "-o", out)
    return read_export(out)


def genuine_view_and_export(tmp_path):
    """A view holding one small capture for sensor s1, and a genuine export of it."""
    src = tmp_path / "src.tar.gz"
    tar_gz(src, [("s1/a.pcap", small_pcap())])
    view = tmp_path / "seed"
    pcapline("import", src, "--dir", view)
    good = tmp_path / "good.tar.gz"
    export_all(view, good)
    return good


def assert_refused(archive, view, pattern, *extra):
    before = tree_state(view) if (Path(view) / "index.db").exists() else None
    p = pcapline("import", archive, "--dir", view, *extra, check=False)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert "import refused, nothing changed" in err, err
    assert pattern in err, err
    if before is not None:
        assert tree_state(view) == before
    assert not [n for n in os.listdir(view) if n.startswith(".import-")], os.listdir(view)
    return err


# --------------------------------------------------------------------------------
# (a) Many tiny entries: linear time, bounded memory.

def test_import_100000_tiny_entries_fast_and_small(tmp_path):
    n = 100_000
    rec = bytes(range(60))
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as t:
        for i in range(n):
            data = pcap_bytes([(1700000000 + i // 1000, i % 1000, 60, 60, rec)])
            ti = tarfile.TarInfo(f"s1/{i}.pcap")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    view = tmp_path / "view"
    rc, err, secs, rss_kib, _ = measure([PCAPLINE, "import", archive, "--dir", view], timeout=600)
    assert rc == 0, err
    print(f"\nimport of {n} entries ({archive.stat().st_size} bytes): {secs:.2f} s, "
          f"peak RSS {rss_kib / 1024:.1f} MiB")
    assert secs < (60 if sanitized(PCAPLINE) else 20), secs
    if not sanitized(PCAPLINE):
        assert rss_kib < 200 * 1024, rss_kib
    out = tmp_path / "x.tar.gz"
    man, files = export_all(view, out)
    recs = read_capture(files["s1/s1.pcap"]).recs
    assert len(recs) == n
    assert man["files"][0]["packets"] == n
    assert recs[0].ts == 1700000000 * 10**9 and recs[-1].ts == (1700000099 * 10**9 + 999_000)
    assert {r.digest for r in recs} == {hashlib.sha256(rec).hexdigest()}
    cap = tmp_path / "s1.pcap"
    cap.write_bytes(files["s1/s1.pcap"])
    info = subprocess.run(["capinfos", "-M", "-c", str(cap)], capture_output=True, text=True)
    assert f"Number of packets:   {n}" in info.stdout, info.stdout


# --------------------------------------------------------------------------------
# (b) Gzip bombs: refused before the data is written.

def gzip_tar(path, members):
    """members: (name, size, chunk generator) streamed through zlib, never held whole."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for name, size, chunks in members:
            ti = tarfile.TarInfo(name)
            ti.size = size
            f.write(z.compress(ti.tobuf(tarfile.USTAR_FORMAT)))
            for c in chunks:
                f.write(z.compress(c))
            if size % 512:
                f.write(z.compress(b"\0" * (512 - size % 512)))
        f.write(z.compress(b"\0" * 1024))
        f.write(z.flush())


def zeros_after_header(size):
    yield pcap_bytes([])
    left = size - 24
    block = b"\0" * MIB
    while left > 0:
        yield block[:min(left, MIB)]
        left -= min(left, MIB)


@pytest.mark.parametrize("shape", ["one-entry", "many-entries"])
def test_import_gzip_bomb_refused_before_writing(shape, tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    if shape == "one-entry":
        members = [("s1/bomb.pcap", 1 << 30, zeros_after_header(1 << 30))]
    else:
        members = [(f"s1/b{i}.pcap", 8 * MIB, zeros_after_header(8 * MIB)) for i in range(64)]
    gzip_tar(archive, members)
    size = archive.stat().st_size
    assert size < 2 * MIB, size
    view = tmp_path / "view"
    view.mkdir()
    rc, err, secs, _, written = measure([PCAPLINE, "import", archive, "--dir", view], timeout=300)
    print(f"\n{shape}: {size} bytes of archive, {secs:.2f} s, {written} bytes written")
    assert rc == 1, err
    assert "import refused, nothing changed" in err and "would expand to more than" in err, err
    limit = 100 * size + 16 * MIB
    assert f"more than {limit} bytes" in err, err
    assert written <= limit + 4 * MIB, written
    assert os.listdir(view) == [], os.listdir(view)


def test_import_expansion_limit_options(tmp_path):
    """--max-ratio and --max-total-size move the bound; a genuine archive within it loads."""
    archive = tmp_path / "z.tar.gz"
    gzip_tar(archive, [("s1/z.pcap", 24, iter([pcap_bytes([])]))])
    view = tmp_path / "view"
    pcapline("import", archive, "--dir", view)
    big = tmp_path / "big.tar.gz"
    gzip_tar(big, [("s1/a.pcap", 4 * MIB, zeros_after_header(4 * MIB))])
    err = assert_refused(big, view, "--max-total-size", "--max-total-size", "1M")
    assert "more than 1048576 bytes" in err, err


# --------------------------------------------------------------------------------
# (c) The manifest of a pcapline export is checked both ways.

def test_import_refuses_capture_not_in_manifest(tmp_path):
    good = genuine_view_and_export(tmp_path)
    _, files = read_export(good)
    extra = pcap_bytes([(1700000500, 0, 60, 60, b"\x42" * 60)])
    view = tmp_path / "view"
    pcapline("import", good, "--dir", view)
    for name, data, msg in (
            ("s1/extra.pcap", extra, "in the archive but not listed in manifest.json"),
            ("s2/extra.pcap", extra, "in the archive but not listed in manifest.json"),
            ("s1/notes.txt", b"hello", "in the archive but not listed in manifest.json")):
        bad = tmp_path / "bad.tar.gz"
        tar_gz(bad, [(n, files[n]) for n in files] + [(name, data)])
        err = assert_refused(bad, view, msg)
        assert f"entry '{name}'" in err, err
    # A listed file that is missing is refused as before.
    bad = tmp_path / "missing.tar.gz"
    tar_gz(bad, [(n, files[n]) for n in files if not n.endswith(".pcap")])
    assert_refused(bad, view, "listed in manifest.json but not in the archive")
    # Nothing of the extra capture is ever exported.
    man, out = export_all(view, tmp_path / "after.tar.gz")
    assert [s["id"] for s in man["sensors"]] == ["s1"]
    assert len(read_capture(out["s1/s1.pcap"]).recs) == 1


# --------------------------------------------------------------------------------
# (d) Malformed content: captured > original length, history keys that are not addresses.

def test_import_refuses_caplen_above_origlen(tmp_path):
    view = tmp_path / "view"
    bad = tmp_path / "bad.tar.gz"
    tar_gz(bad, [("s1/a.pcap", pcap_bytes([(1700000000, 0, 60, 60, b"\0" * 60),
                                           (1700000001, 0, 60, 50, b"\1" * 60)]))])
    view.mkdir()
    assert_refused(bad, view, "record 2: captured length 60 exceeds original length 50")
    assert os.listdir(view) == []


@pytest.mark.parametrize("key", ["not-an-address", "198.18.9.1:0", "198.18.9.300",
                                 "evil\u001b[31m", "fd00::1::2", ""])
def test_import_refuses_history_key_not_an_address(key, tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    hist = {"1700000000": {"198.18.9.1": {"FullAddress": "a.default", "Namespace": "default"},
                           key: {"FullAddress": "x.default", "Namespace": "default"}}}
    bad = tmp_path / "bad.tar.gz"
    tar_gz(bad, [("s1/a.pcap", small_pcap()),
                 ("s1/name_resolution_history.json", json.dumps(hist).encode())])
    err = assert_refused(bad, view, "is not an address")
    assert "\x1b" not in err
    assert os.listdir(view) == []


def test_import_history_addresses_are_canonical(tmp_path):
    view = tmp_path / "view"
    hist = {"1700000000": {"FD00:0::5": {"FullAddress": "v6.default", "Namespace": "default"},
                           "[fd00::6]:443": {"FullAddress": "tls.default", "Namespace": "default"}}}
    arch = tmp_path / "ok.tar.gz"
    tar_gz(arch, [("s1/a.pcap", small_pcap()),
                  ("s1/name_resolution_history.json", json.dumps(hist).encode())])
    pcapline("import", arch, "--dir", view)
    lines = [json.loads(x) for x in (view / "sensors/s1/names.jsonl").read_text().splitlines()]
    assert sorted(x["addr"] for x in lines) == ["[fd00::6]:443", "fd00::5"]


# --------------------------------------------------------------------------------
# (e) Folders become sensor ids ('_' for characters an id cannot hold); two never
# merge into one.

def test_import_folders_never_merge_into_one_sensor(tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    a = pcap_bytes([(1700000000, 0, 60, 60, b"\xaa" * 60)])
    b = pcap_bytes([(1700000001, 0, 60, 60, b"\xbb" * 60)])
    for pair in (("web 01", "web_01"), ("web 01", "web:01"), ("node_fd00::1", "node_fd00__1")):
        bad = tmp_path / "bad.tar.gz"
        tar_gz(bad, [(f"{pair[0]}/a.pcap", a), (f"{pair[1]}/b.pcap", b)])
        err = assert_refused(bad, view, "would both become sensor")
        assert f"'{pair[0]}'" in err and f"'{pair[1]}'" in err, err
        assert os.listdir(view) == []
    arch = tmp_path / "f.tar.gz"
    tar_gz(arch, [("x" * 129 + "/a.pcap", a)])
    assert_refused(arch, view, "folder name longer than 128 characters")
    # Kubeshark names its folders <node>_<ip>: an IPv6 node imports under '_'s, and
    # says so.
    ok = tmp_path / "ok.tar.gz"
    tar_gz(ok, [("web_01/b.pcap", b), ("web-01/a.pcap", a), ("node_fd00::1/a.pcap", a),
                (".hidden/b.pcap", b)])
    p = pcapline("import", ok, "--dir", view)
    err = p.stderr.decode(errors="replace")
    assert "folder 'node_fd00::1' is not a valid sensor id; imported as sensor 'node_fd00__1'" in err, err
    assert "imported as sensor '_hidden'" in err, err
    assert sorted(os.listdir(view / "sensors")) == ["_hidden", "node_fd00__1", "web-01", "web_01"]


# --------------------------------------------------------------------------------
# Item 9: pcap 2.0-2.2 (and 2.3) records with the two lengths exchanged.

def tool_records(path):
    """(caplen, origlen, sha256) per record as libpcap reads it: tcpdump rewrites the
    file in the current format, which the independent reader then reads."""
    out = Path(str(path) + ".tcpdump.pcap")
    p = subprocess.run(["tcpdump", "-r", str(path), "-w", str(out)], capture_output=True)
    assert p.returncode == 0, p.stderr
    return [(r.caplen, r.origlen, r.digest) for r in read_capture(out).recs]


def tshark_lengths(path):
    p = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.cap_len",
                        "-e", "frame.len", "-e", "frame.time_epoch"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [tuple(line.split("\t")) for line in p.stdout.splitlines()]


@pytest.mark.parametrize("minor", [0, 1, 2, 3])
def test_import_old_pcap_with_swapped_lengths_reads_like_libpcap(minor, tmp_path):
    recs = []
    for i in range(40):
        data = bytes((i + k) & 0xff for k in range(30 + i))
        # Before 2.3 every record has the original length first; in a 2.3 file only
        # records whose "captured" length exceeds the original are taken as exchanged.
        if minor < 3 or i % 2:
            recs.append((1700000000 + i, 7 * i, 1500 + i, len(data), data))
        else:
            recs.append((1700000000 + i, 7 * i, len(data), 1500 + i, data))
    crafted = tmp_path / f"v2{minor}.pcap"
    crafted.write_bytes(pcap_bytes(recs, minor=minor))
    want = tool_records(crafted)
    assert len(want) == 40
    assert all(c < o for c, o, _ in want)
    ts = tshark_lengths(crafted)
    assert [(int(c), int(o)) for c, o, _ in ts] == [(c, o) for c, o, _ in want]

    view = tmp_path / "view"
    arch = tmp_path / "old.tar.gz"
    tar_gz(arch, [("s1/old.pcap", crafted.read_bytes())])
    p = pcapline("import", arch, "--dir", view)
    assert b"40 packets" in p.stderr, p.stderr
    _, files = export_all(view, tmp_path / "x.tar.gz")
    exported = tmp_path / "exported.pcap"
    exported.write_bytes(files["s1/s1.pcap"])
    got = read_capture(exported).recs
    assert [(r.caplen, r.origlen, r.digest) for r in got] == want
    assert [r.ts for r in got] == [(1700000000 + i) * 10**9 + 7 * i * 1000 for i in range(40)]
    assert [(int(c), int(o)) for c, o, _ in tshark_lengths(exported)] == \
        [(c, o) for c, o, _ in want]


def test_import_names_only_the_first_skipped_entries(tmp_path):
    arch = tmp_path / "skip.tar.gz"
    tar_gz(arch, [("s1/a.pcap", small_pcap())] + [(f"s1/r{i}\u001b[2J.txt", b"x") for i in range(5000)])
    p = pcapline("import", arch, "--dir", tmp_path / "view")
    err = p.stderr.decode()
    assert err.count("is not a capture or name history; skipped") == 10, err
    assert "4990 more entries that are not a capture or name history skipped" in err, err
    assert "\x1b" not in err and "r0\\x1b[2J.txt" in err, err
