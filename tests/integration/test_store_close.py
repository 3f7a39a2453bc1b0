# SPDX-License-Identifier: BSD-2-Clause
"""A segment that cannot be put into place must never lose its committed data.

The receiver's repository is on an ext2 file system whose disk (a loop device over a
sparse image on a small tmpfs, like a thin-provisioned volume) runs out of room under
it: write(2) still succeeds, but fdatasync(2) fails with ENOSPC, so rotations fail to
close their segments. The receiver is then killed with SIGKILL while the disk is still
full, restarted on it while still full, and only then is the disk grown. Every record
of the replayed capture must end up stored exactly once (record hashes against the
source), no segment left open, and the sensor must end with everything acknowledged.

Before the fix a segment whose close failed was dropped from the sensor's state file,
and the recovery at the next start removed it as uncommitted, while the sensor's
resends of its batches were taken for duplicates: those records were lost.
"""
import os
import re
import signal
import subprocess

import pytest

import netns as N
import test_replay as replay
from conftest import Proc, free_port, tls_args, wait_listening
from test_store import T0, ether_frame, key, stats, stored_by_ifindex, write_pcapng

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts tmpfs and a loop device")

N_RECS = 12000          # ~14.6 MB of 1200-byte frames
BACKING = "6m"          # the tmpfs under the loop device: fills after ~5 MB of data
SEG_SIZE = "131072"     # a rotation every ~100 records: many closes while full


class ThinDisk:
    """ext2 on a loop device over a sparse 256 MiB image on a small tmpfs."""

    def __init__(self, base):
        self.back, self.mnt = base / "back", base / "mnt"
        self.back.mkdir()
        self.mnt.mkdir()
        self.loop = None
        N.run(["mount", "-t", "tmpfs", "-o", f"size={BACKING},mode=0755", "pcapline-thin", self.back])
        img = self.back / "disk.img"
        with open(img, "wb") as f:
            f.truncate(256 << 20)
        self.loop = N.run(["losetup", "-f", "--show", img]).stdout.strip()
        N.run(["mkfs.ext2", "-q", "-m", "0", "-N", "256", "-b", "4096", self.loop])
        N.run(["mount", "-o", "errors=continue", self.loop, self.mnt])

    def grow(self):
        N.run(["mount", "-o", "remount,size=512m", self.back])

    def close(self):
        for argv in (["umount", self.mnt], ["losetup", "-d", self.loop] if self.loop else None,
                     ["umount", self.back]):
            if argv and N.run(argv, check=False).returncode != 0 and argv[0] == "umount":
                N.run(["umount", "-l", argv[1]], check=False)


def start_rx(procs, certs, receiver_bin, port, data_dir, log, fsync):
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data_dir, "--log-level", "debug"]
              + tls_args(certs, "receiver"), log,
              env={"PCAPLINE_STORAGE_FSYNC": fsync, "PCAPLINE_STORAGE_SEGMENT_SIZE": SEG_SIZE})
    procs.append(rx)
    wait_listening(port)
    return rx


@pytest.mark.parametrize("fsync", ["interval", "batch"])
def test_failed_close_on_full_disk_kill9_restart(binaries, certs, procs, tmp_path, fsync):
    sensor_bin, receiver_bin = binaries
    capture = tmp_path / "src.pcapng"
    write_pcapng(capture, [(1, "eth0")], [(0, T0 + i * 1000, ether_frame(i, 1200)) for i in range(N_RECS)])
    src = replay.read_capture(capture)
    assert len(src.recs) == N_RECS

    disk = ThinDisk(tmp_path)
    try:
        data_dir = disk.mnt / "data"
        port = free_port()
        rx = start_rx(procs, certs, receiver_bin, port, data_dir, tmp_path / "rx1.log", fsync)
        sx = Proc([sensor_bin, "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                  tmp_path / "sx.log", env={"PCAPLINE_BATCH_MAX_BYTES": "65536"})
        procs.append(sx)
        # The disk fills: syncs fail, and so do the closes of the rotations.
        # Under "interval" the first sync of a rotated segment is its close's, which
        # fails; under "batch" the batch's own sync fails first and is rolled back.
        fails = r"segment left as|cannot put .* into place" if fsync == "interval" else r"storage failed"
        N.wait_for(lambda: re.search(fails, rx.text()) or rx.p.poll() is not None, 60,
                   "storage failing on the full disk")
        assert sx.p.poll() is None, f"the sensor finished before the disk filled:\n{sx.text()}"
        rx.stop(signal.SIGKILL)
        left_open = [p.name for p in (data_dir / "sensors" / "s1" / "segments").iterdir()
                     if p.name.startswith(".open-")]
        # (Under "batch" the failing batch may have been the first of a new segment,
        # which its rollback removes: then nothing is left open.)
        assert left_open or fsync == "batch", "the kill left no open segment"

        # Restarted on the still full disk: what holds committed data is kept.
        rx = start_rx(procs, certs, receiver_bin, port, data_dir, tmp_path / "rx2.log", fsync)
        N.wait_for(lambda: "state loaded" in rx.text(), 10, "the recovery")
        recovery_log = rx.text()
        disk.grow()
        try:
            rc = sx.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sensor still running 90 s after the disk grew:\n{sx.text()[-3000:]}"
                                 f"\n{rx.text()[-3000:]}")
        assert rc == 0, sx.text()
        m = re.search(r"acknowledged (\d+) batches / (\d+) packets, pending (\d+)", sx.text())
        assert m and int(m.group(3)) == 0, sx.text()
        assert rx.stop() == 0, rx.text()

        got = stored_by_ifindex(data_dir / "sensors" / "s1" / "segments")
        stored = got.get(0, [])
        want = [key(r) for r in src.recs]
        have = [key(r) for r in stored]
        missing = len(set(want) - set(have))
        assert len(have) == len(set(have)), f"{len(have) - len(set(have))} records stored twice"
        assert have == want, f"{len(have)} stored of {len(want)}; {missing} missing"
        # The segment whose close failed held committed data: the recovery kept it, put
        # into place at once or (when the disk is still full for its sync) held for the
        # tick to retry.
        m = re.search(r"; (\d+) open segment\(s\) recovered", recovery_log)
        h = re.search(r"(\d+) open segment\(s\) with committed data cannot be put into place yet", recovery_log)
        kept = (int(m.group(1)) if m else 0) + (int(h.group(1)) if h else 0)
        assert kept >= 1 or fsync == "batch", recovery_log
        st = stats(data_dir)
        assert st["stored"]["packets"] == N_RECS, st
        total = 0
        for p in (data_dir / "sensors" / "s1" / "segments").iterdir():
            out = subprocess.run(["capinfos", "-c", "-M", str(p)], capture_output=True, text=True,
                                 timeout=30).stdout
            total += int(re.search(r"Number of packets:\s*(\d+)", out).group(1))
        assert total == N_RECS
        print(f"fsync {fsync}: {len(left_open)} open segment(s) at the kill, {kept} kept by the recovery "
              f"({'held while full' if h else 'put into place'}), {len(have)} of {N_RECS} records stored exactly once")
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop(signal.SIGKILL)
        disk.close()
