# SPDX-License-Identifier: BSD-2-Clause
"""Dissection on a full disk: a segment whose position file or rows cannot be written
(ENOSPC) is retried with backoff while the receiver runs and after a restart (also after
kill -9 while full), stays visible in `pcapline conns --stats` until it succeeds, and
`pcapline reindex` after a failed or unfinished dissection gives, over any window and any
number of times, the rows of a clean dissection: every packet counted once.

The receiver stores on a tmpfs; the folder of the position files (sensors/s1/l4) is a
second, full tmpfs, so that every dissection fails from the first segment on while the
packets are stored; the repository's own tmpfs is then filled too, so that the index
(SQLite) cannot grow either; then both get room. A real sensor replays a capture of 500
TCP connections (82,582 packets, 7 segments: one per batch at a 64 KiB segment size) over
mutual TLS, and the
connection table is checked against tshark on the capture.
"""
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Proc, free_port, tls_args, wait_listening
from netns import wait_for
from test_dissect import PCAPLINE, TCP_CAP, cli, conns_json, read_records, syn_flood_pcap, tshark_conns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts tmpfs")

COLS = ("conn_id", "flow_id", "sensor", "iface", "proto", "client", "client_port", "server", "server_port",
        "state", "ended", "first_ns", "last_ns", "c_pkts", "c_bytes", "s_pkts", "s_bytes", "c_payload",
        "s_payload", "rtt_ns", "retrans", "out_of_order", "zero_windows", "resets", "gap_bytes", "midstream")


def run(*argv):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)


def fill(folder):
    """Writes a file into folder until its file system is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        f.close()
    except OSError:
        pass


def ts(ns):
    """A time argument for the CLI, to the nanosecond."""
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def stats(data):
    return json.loads(cli("conns", "--stats", "--dir", data, "--json").stdout)


def db_totals(data):
    """(segments, packets stored, segments done, packets dissected, failed rows)."""
    db = sqlite3.connect(f"file:{data}/index.db?mode=ro", uri=True)
    try:
        segs, pkts = db.execute("SELECT count(*), coalesce(sum(packets), 0) FROM segments").fetchone()
        done, dpk = db.execute("SELECT count(*), coalesce(sum(d.packets), 0) FROM l4_done d JOIN segments s "
                               "ON s.id = d.seg_id").fetchone()
        return segs, pkts, done, dpk
    finally:
        db.close()


def all_dissected(data):
    try:
        segs, pkts, done, dpk = db_totals(data)
    except sqlite3.Error:
        return False
    return segs > 0 and segs == done and pkts == dpk


def rows(data, cols=COLS):
    return sorted(tuple(c[k] for k in cols) for c in conns_json(data))


# The receiver keeps a connection tracked (ended NULL) after its last packet, where the
# CLI's reindex ends it ('end of input'): compared without it between the two.
NOT_ENDED = tuple(k for k in COLS if k != "ended")


def waiting_while_full(st):
    """While full: the failed segment counted, and every segment still waiting."""
    segs = db_totals(st["data"])[0]
    assert st.get("failed_segments", 0) >= 1 and st["pending_segments"] == segs, (st, segs)


def totals(data):
    return "(segments, packets, dissected segments, dissected packets) = {}".format(db_totals(data))


def assert_like_tshark(data):
    """Exactly tshark's connections, each with its frames and bytes per direction, and
    every stored packet in exactly one of them."""
    got = conns_json(data)
    want = tshark_conns()
    by_tuple = {(c["client"], c["client_port"], c["server"], c["server_port"]): c for c in got}
    assert len(got) == len(by_tuple) == len(want) == 500, (len(got), len(by_tuple), len(want))
    for t, w in want.items():
        assert {k: by_tuple[t][k] for k in w} == w, t
    npk = len(read_records(TCP_CAP))
    assert sum(c["c_pkts"] + c["s_pkts"] for c in got) == npk
    segs, pkts, done, dpk = db_totals(data)
    assert pkts == dpk == npk and segs == done, (segs, pkts, done, dpk, npk)
    return got


class Lab:
    """A repository on a tmpfs whose position-file folder is a second, full tmpfs."""

    def __init__(self, binaries, certs, tmp_path):
        self.binaries, self.certs, self.tmp = binaries, certs, tmp_path
        self.cap, self.env = TCP_CAP, {}
        self.mnt = tmp_path / "mnt"
        self.mnt.mkdir()
        run("mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "pcapline-test", self.mnt)
        self.mounts = [self.mnt]
        self.data = self.mnt / "data"
        self.l4 = self.data / "sensors" / "s1" / "l4"
        self.l4.mkdir(parents=True)
        run("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "pcapline-test-l4", self.l4)
        self.mounts.append(self.l4)
        fill(self.l4)
        self.rx = None
        self.runs = 0

    def start_receiver(self):
        self.port = free_port()
        self.runs += 1
        self.rx = Proc([self.binaries[1], "-l", f"127.0.0.1:{self.port}", "-d", self.data]
                       + tls_args(self.certs, "receiver"), self.tmp / f"receiver{self.runs}.log",
                       env=dict({"PCAPLINE_STORAGE_SEGMENT_SIZE": "64k", "PCAPLINE_LOG_STATS_INTERVAL": "1s"},
                                **self.env))
        wait_listening(self.port)
        return self.rx

    def replay(self):
        sx = Proc([self.binaries[0], "-r", self.cap, "-t", f"127.0.0.1:{self.port}"]
                  + tls_args(self.certs, "s1"), self.tmp / "sensor.log")
        assert sx.wait(timeout=120) == 0, sx.text()

    def wait_failing(self):
        """Until the dissection has failed on the full folder. Returns the counters then."""
        wait_for(lambda: re.search(r"dissect: .*No space left on device", self.rx.text()), 30, "a dissection failure")
        # Every packet in a closed, indexed segment (the last one closes as the session ends).
        want = len(read_records(self.cap))
        wait_for(lambda: db_totals(self.data)[1] == want, 15, "every packet indexed", lambda: totals(self.data))
        assert db_totals(self.data)[0] >= 2
        return dict(stats(self.data), data=self.data)

    def fill_repository(self):
        fill(self.mnt)

    def make_room(self):
        run("mount", "-o", "remount,size=64m", self.l4)
        (self.l4 / "filler").unlink()
        (self.mnt / "filler").unlink(missing_ok=True)

    def close(self):
        if self.rx is not None and self.rx.p.poll() is None:
            self.rx.stop(signal.SIGKILL)
        for m in reversed(self.mounts):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)


@pytest.fixture
def lab(binaries, certs, tmp_path):
    if not PCAPLINE.exists():
        pytest.fail(f"{PCAPLINE} is missing: run make first")
    lb = Lab(binaries, certs, tmp_path)
    try:
        yield lb
    finally:
        lb.close()


def test_failed_dissection_is_retried_while_running(lab):
    """Full disk while the segments come in: retried with backoff without a restart, then
    exactly tshark's connections; reindex over everything and over a window, twice each,
    rebuilds the same rows."""
    t0 = time.time()
    rx = lab.start_receiver()
    lab.replay()
    full = lab.wait_failing()
    # Then the position files get room but the index cannot grow (as far as SQLite
    # needs new pages), then everything gets room.
    lab.fill_repository()
    run("mount", "-o", "remount,size=64m", lab.l4)
    (lab.l4 / "filler").unlink()
    wait_for(lambda: "disk is full" in rx.text() or db_totals(lab.data)[2] > 0, 20, "a retry")
    (lab.mnt / "filler").unlink()
    wait_for(lambda: all_dissected(lab.data), 45, "every segment dissected after the disk got room",
         lambda: totals(lab.data))
    got = assert_like_tshark(lab.data)
    waiting_while_full(full)
    st = stats(lab.data)
    assert st["failed_segments"] == 0 and st["pending_segments"] == 0, st
    assert st["failed_attempts"] >= 1, st
    assert rx.p.poll() is None
    text = rx.text()
    assert re.search(r"dissect: .*dissected after \d+ failed attempt", text), text
    print(f"while full: {full['failed_segments']} failed, {full['pending_segments']} waiting; "
          f"{st['failed_attempts']} failed attempts; {len(got)} connections in {time.time() - t0:.1f} s")
    assert rx.stop() == 0, rx.text()

    # reindex: the same rows, whatever the window and however often.
    received = rows(lab.data, NOT_ENDED)
    db = sqlite3.connect(f"file:{lab.data}/index.db?mode=ro", uri=True)
    lo, hi = db.execute("SELECT min(min_ns), max(max_ns) FROM segments").fetchone()
    db.close()
    mid = (lo + hi) // 2
    cli("reindex", "--dir", lab.data, "--from", "0", "--to", "now")
    before = rows(lab.data)
    assert rows(lab.data, NOT_ENDED) == received
    cli("reindex", "--dir", lab.data, "--from", "0", "--to", "now")
    assert rows(lab.data) == before
    for _ in range(2):
        cli("reindex", "--dir", lab.data, "--sensor", "s1", "--from", ts(mid), "--to", ts(mid + 10**8))
        assert rows(lab.data) == before
    assert_like_tshark(lab.data)


def test_failed_dissection_is_retried_after_kill9(lab):
    """kill -9 while the disk is full; after it got room, the next start dissects every
    segment that failed."""
    rx = lab.start_receiver()
    lab.replay()
    full = lab.wait_failing()
    lab.fill_repository()
    rx.stop(signal.SIGKILL)
    assert rx.p.returncode == -signal.SIGKILL
    lab.make_room()
    rx = lab.start_receiver()
    wait_for(lambda: all_dissected(lab.data), 45, "every segment dissected after the restart",
         lambda: totals(lab.data))
    assert_like_tshark(lab.data)
    waiting_while_full(full)
    st = stats(lab.data)
    assert st["failed_segments"] == 0 and st["pending_segments"] == 0, st
    assert rx.stop() == 0, rx.text()


def test_reindex_after_failed_dissection(lab):
    """The receiver stops while a segment fails (the rest not dissected). reindex over a
    window in the middle, then over everything, twice each: exactly tshark's
    connections every time. Then the state an older receiver left after such a failure
    (segments marked done without their links, counts in the rows of the connections
    around them): reindex of a window over one of them gives the clean rows back."""
    rx = lab.start_receiver()
    lab.replay()
    lab.wait_failing()
    assert rx.stop() == 0, rx.text()
    lab.make_room()
    db = sqlite3.connect(f"file:{lab.data}/index.db?mode=ro", uri=True)
    segs = db.execute("SELECT id, min_ns, max_ns FROM segments ORDER BY min_ns, id").fetchall()
    db.close()
    k = segs[len(segs) // 2]
    window = ("--from", ts(k[1]), "--to", ts(k[1] + 10**6))
    cli("reindex", "--dir", lab.data, "--sensor", "s1", *window)
    clean = rows(lab.data)
    assert_like_tshark(lab.data)
    assert stats(lab.data)["failed_segments"] == 0
    for args in (window, window, ("--from", "0", "--to", "now"), ("--from", "0", "--to", "now")):
        cli("reindex", "--dir", lab.data, *args)
        assert rows(lab.data) == clean
    assert stats(lab.data)["failed_segments"] == 0

    # What an older receiver left: 4 segments marked done with no packets and no links.
    db = sqlite3.connect(lab.data / "index.db")
    bad = [s[0] for s in segs[len(segs) // 3:len(segs) // 3 + 4]]
    q = ",".join("?" * len(bad))
    db.execute(f"UPDATE l4_done SET packets = 0, in_conns = 0 WHERE seg_id IN ({q})", bad)
    db.execute(f"DELETE FROM conn_segs WHERE seg_id IN ({q})", bad)
    db.commit()
    db.close()
    k = next(s for s in segs if s[0] == bad[1])
    for _ in range(2):
        cli("reindex", "--dir", lab.data, "--sensor", "s1", "--from", ts(k[1]), "--to", ts(k[1] + 10**6))
        assert rows(lab.data) == clean
    assert_like_tshark(lab.data)


def test_restart_mends_a_segment_that_died_half_written(lab):
    """A flood of 30,000 SYNs with l4.max_conns 1000: the first segment's evicted
    connections are written in chunks while it is read, then its position file cannot
    be; kill -9. The next start dissects again the connections of the half-written
    segment: each SYN is one connection, counted once."""
    n, cap = 30_000, 1000
    lab.cap = lab.tmp / "flood.pcap"
    syn_flood_pcap(lab.cap, n)
    lab.env = {"PCAPLINE_L4_MAX_CONNS": str(cap)}
    rx = lab.start_receiver()
    lab.replay()
    lab.wait_failing()
    db = sqlite3.connect(f"file:{lab.data}/index.db?mode=ro", uri=True)
    early = db.execute("SELECT count(*) FROM conns").fetchone()[0]
    db.close()
    assert early >= 4096, f"no connection rows written before the segment's end: {early}"
    rx.stop(signal.SIGKILL)
    lab.make_room()
    rx = lab.start_receiver()
    wait_for(lambda: all_dissected(lab.data), 45, "every segment dissected after the restart",
         lambda: totals(lab.data))
    db = sqlite3.connect(f"file:{lab.data}/index.db?mode=ro", uri=True)
    conns, pkts = db.execute("SELECT count(*), sum(c_pkts + s_pkts) FROM conns").fetchone()
    evicted = db.execute("SELECT count(*) FROM conns WHERE ended = 'evicted'").fetchone()[0]
    linked = db.execute("SELECT sum(packets) FROM conn_segs").fetchone()[0]
    db.close()
    assert (conns, pkts, linked, evicted) == (n, n, n, n - cap)
    assert "the last run stopped in the middle of a segment" in rx.text()
    assert rx.stop() == 0, rx.text()


def test_segment_indexed_late_is_flagged_and_reindex_mends_it(binaries, certs, tmp_path):
    """A segment whose index row could not be written when it was closed (a full disk,
    then a crash) is added by the next start's reconcile, after later segments were
    dissected: it is dissected out of order, counted in failed_segments and named in
    the log, and a reindex of any window of its interface gives tshark's connections."""
    data = tmp_path / "data"

    def receiver_run(i, until):
        port = free_port()
        rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
                  tmp_path / f"receiver{i}.log", env={"PCAPLINE_STORAGE_SEGMENT_SIZE": "64k"})
        try:
            wait_listening(port)
            if i == 0:
                sx = Proc([binaries[0], "-r", TCP_CAP, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                          tmp_path / "sensor.log")
                assert sx.wait(timeout=120) == 0, sx.text()
            wait_for(until, 30, f"receiver run {i}", lambda: totals(data))
        finally:
            assert rx.stop() == 0, rx.text()
        return rx.text()

    receiver_run(0, lambda: all_dissected(data))
    # As if the row of the third segment had never been written: its file is away
    # while the rest is dissected from scratch.
    db = sqlite3.connect(data / "index.db")
    seg_id, path = db.execute("SELECT id, path FROM segments ORDER BY min_ns, id LIMIT 1 OFFSET 2").fetchone()
    db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
    db.executescript("DELETE FROM conns; DELETE FROM conn_segs; DELETE FROM l4_done; DELETE FROM l4_stats;")
    db.commit()
    db.close()
    for p in (data / "sensors" / "s1" / "l4").iterdir():
        p.unlink()
    away = tmp_path / "away.pcap"
    (data / path).rename(away)
    receiver_run(1, lambda: all_dissected(data))
    away.rename(data / path)
    # Read once the receiver has exited: the flag is written right after the segment.
    text = receiver_run(2, lambda: all_dissected(data))
    flagged = stats(data).get("failed_segments", 0)
    db = sqlite3.connect(f"file:{data}/index.db?mode=ro", uri=True)
    lo = db.execute("SELECT max(min_ns) FROM segments").fetchone()[0]
    db.close()
    # A window over the newest segment only: the interface is rebuilt whole.
    for _ in range(2):
        cli("reindex", "--dir", data, "--sensor", "s1", "--from", ts(lo), "--to", ts(lo + 10**6))
        assert_like_tshark(data)
        assert stats(data)["failed_segments"] == 0
    assert flagged == 1
    assert re.search(r"dissect: .*: dissected after later segments of its interface", text), text
