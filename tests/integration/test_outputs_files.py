# SPDX-License-Identifier: BSD-2-Clause
"""outputs.files: rotated pcap files for Suricata and Zeek.

A real sensor replays captures into a receiver whose outputs.files is on with a small
rotate_size. A reader polls the directory the way Suricata's --pcap-file-continuous
does (list, skip hidden names, sort by mtime then name, take only files newer than the
last one taken) while the receiver writes, copying each file the moment it opens it.
Every copy must be a complete capture (our parser and capinfos agree), the reader must
never meet a file it would skip (an mtime not above the last one), and across all files
and a restart of the receiver it must see every packet of the replays exactly once, in
order, byte for byte, the same as the repository holds. Bounds: max_files / max_size
delete the oldest files, and the deletions are counted in the log.
"""
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import Proc, free_port, tls_args, wait_listening
from test_export import read_capture, stored_segments

PCAPS = Path(__file__).resolve().parent.parent / "data" / "pcaps"
CAP_A = PCAPS / "http-1000-requests-one-conn.pcap"
CAP_B = PCAPS / "mysql-6-conns-port20130.pcap"
NAME = re.compile(r"^pcapline-(\d{12})-\d{8}T\d{6}Z\.pcap$")


class ContinuousReader(threading.Thread):
    """Suricata's continuous directory mode, strictly: a file is taken when its mtime is
    above the last taken one; a later file with a lower or equal mtime would be skipped
    for ever, which is recorded as a failure."""

    def __init__(self, d, copies):
        super().__init__(daemon=True)
        self.d, self.copies = Path(d), Path(copies)
        self.seen, self.order, self.skipped, self.errors = set(), [], [], []
        self.last = -1
        self.stop = threading.Event()

    def poll(self):
        entries = []
        if not self.d.is_dir():
            return   # the receiver creates it once it has started
        for n in os.listdir(self.d):
            if n.startswith("."):
                continue
            try:
                st = os.stat(self.d / n)
            except FileNotFoundError:
                continue   # deleted by the bounds between list and stat
            entries.append((st.st_mtime_ns, n))
        for mt, n in sorted(entries):
            if n in self.seen:
                continue
            if mt <= self.last:
                self.skipped.append((n, mt, self.last))
                self.seen.add(n)
                continue
            try:
                b = (self.d / n).read_bytes()
            except FileNotFoundError:
                continue
            self.seen.add(n)
            self.last = mt
            (self.copies / n).write_bytes(b)
            self.order.append(n)

    def run(self):
        while not self.stop.is_set():
            try:
                self.poll()
            except Exception as e:   # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
            time.sleep(0.01)


def receiver(binaries, certs, work, data, files, tag, **opts):
    port = free_port()
    env = {"PCAPLINE_OUTPUTS_FILES_DIR": str(files)}
    env.update({f"PCAPLINE_OUTPUTS_FILES_{k.upper()}": str(v) for k, v in opts.items()})
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              work / f"receiver-{tag}.log", env=env)
    wait_listening(port)
    return rx, port


def replay(binaries, certs, port, cap, log):
    sx = Proc([binaries[0], "-r", cap, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), log)
    assert sx.wait(timeout=120) == 0, sx.text()


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def capinfos_count(path):
    p = subprocess.run(["capinfos", "-M", "-c", "-T", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, f"capinfos {path}: {p.stderr}"
    return int(p.stdout.strip().splitlines()[-1].split("\t")[-1])


def stop_counts(rx):
    assert rx.stop() == 0, rx.text()
    m = re.search(r"files: (\d+) files \((\d+) packets\) written, (\d+) deleted, (\d+) write errors", rx.text())
    assert m, rx.text()
    return tuple(int(x) for x in m.groups())


def test_continuous_reader_sees_every_packet_once_across_rotations_and_restart(binaries, certs, tmp_path):
    files, copies, data = tmp_path / "files", tmp_path / "copies", tmp_path / "data"
    copies.mkdir()
    want = read_capture(CAP_A).recs + read_capture(CAP_B).recs
    reader = ContinuousReader(files, copies)
    rx, port = receiver(binaries, certs, tmp_path, data, files, "1", rotate_size="64k", rotate_time="1s")
    reader.start()
    try:
        replay(binaries, certs, port, CAP_A, tmp_path / "s-a.log")
        n_a = len(read_capture(CAP_A).recs)
        got = lambda: sum(len(read_capture(copies / n).recs) for n in reader.order)  # noqa: E731
        wait_for(lambda: got() == n_a, what=f"{n_a} packets in the files")
        written1 = stop_counts(rx)
        # A restart: numbering and mtimes go on after what is there.
        rx, port = receiver(binaries, certs, tmp_path, data, files, "2", rotate_size="64k", rotate_time="1s")
        replay(binaries, certs, port, CAP_B, tmp_path / "s-b.log")
        wait_for(lambda: got() == len(want), what=f"{len(want)} packets in the files")
        written2 = stop_counts(rx)
        time.sleep(0.1)
    finally:
        reader.stop.set()
        reader.join(5)
        if rx.p.poll() is None:
            rx.stop()
    assert not reader.errors, reader.errors
    assert not reader.skipped, f"files a continuous reader would skip: {reader.skipped}"
    assert written1[0] > 10 and written1[3] == 0 and written2[3] == 0, (written1, written2)
    assert written1[1] + written2[1] == len(want)
    assert sorted(os.listdir(files)) == sorted(reader.order), "no hidden file left, nothing unseen"
    # Names: unique, numbered in mtime order, numbering goes on after the restart.
    seqs = [int(NAME.match(n).group(1)) for n in reader.order]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(reader.order) == written1[0] + written2[0]
    # Every file the reader opened was complete: our parser and capinfos agree.
    recs = []
    for n in reader.order:
        cap = read_capture(copies / n)
        assert not cap.truncated and cap.recs, n
        assert os.path.getsize(copies / n) <= 64 * 1024, n
        assert capinfos_count(copies / n) == len(cap.recs), n
        recs += cap.recs
    assert len(recs) == len(want)
    assert [(r.ts, r.caplen, r.origlen, r.digest) for r in recs] == [(r.ts, r.caplen, r.origlen, r.digest) for r in want]
    # The same packets as the repository holds.
    stored = sorted((r.ts, r.digest) for s in stored_segments(data, "s1") for r in s.recs)
    assert sorted((r.ts, r.digest) for r in recs) == stored


def test_bounds_delete_oldest_and_count(binaries, certs, tmp_path):
    files, data = tmp_path / "files", tmp_path / "data"
    n_a = len(read_capture(CAP_A).recs)
    rx, port = receiver(binaries, certs, tmp_path, data, files, "b", rotate_size="64k", max_files=4,
                        max_size="200k")
    try:
        replay(binaries, certs, port, CAP_A, tmp_path / "s-a.log")
        wait_for(lambda: "files:" in rx.text() and sum(
            1 for _ in files.iterdir()) > 0, what="files written")
        # Written files reach the directory within a rotation; the last one on stop.
        time.sleep(0.5)
    finally:
        written, packets, deleted, errors = stop_counts(rx)
    names = sorted(os.listdir(files))
    assert all(NAME.match(n) for n in names), names
    total = sum(os.path.getsize(files / n) for n in names)
    assert len(names) <= 4 and total <= 200 * 1024, (names, total)
    assert packets == n_a and errors == 0
    assert deleted == written - len(names) and deleted > 10
    # The newest files are the ones kept.
    seqs = [int(NAME.match(n).group(1)) for n in names]
    assert seqs == list(range(written - len(names) + 1, written + 1))
    # Each kept file is complete and holds the end of the replay.
    tail = []
    for n in names:
        assert capinfos_count(files / n) == len(read_capture(files / n).recs)
        tail += read_capture(files / n).recs
    want = read_capture(CAP_A).recs
    assert [r.digest for r in tail] == [r.digest for r in want[-len(tail):]]


def test_unwritable_directory_is_counted_and_leaves_no_partial(binaries, certs, tmp_path):
    """A full disk: a tmpfs too small for the replay. Write errors are counted, packets
    of the removed file counted lost, no .part file stays and the receiver stores all."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    files, data = tmp_path / "files", tmp_path / "data"
    files.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(files)], check=True)
    try:
        rx, port = receiver(binaries, certs, tmp_path, data, files, "full", rotate_size="64k")
        try:
            replay(binaries, certs, port, CAP_A, tmp_path / "s-a.log")
            wait_for(lambda: "cannot write" in rx.text(), what="a write error")
            time.sleep(0.3)
        finally:
            written, packets, deleted, errors = stop_counts(rx)
        m = re.search(r"write errors \((\d+) packets lost\)", rx.text())
        lost = int(m.group(1))
        assert errors >= 1 and lost > 0
        assert packets + lost == len(read_capture(CAP_A).recs)
        names = os.listdir(files)
        assert not [n for n in names if n.startswith(".")], names
        for n in names:
            assert capinfos_count(files / n) == len(read_capture(files / n).recs)
        # Storage itself lost nothing.
        stored = sum(len(s.recs) for s in stored_segments(data, "s1"))
        assert stored == len(read_capture(CAP_A).recs)
    finally:
        subprocess.run(["umount", str(files)], check=False)
