# SPDX-License-Identifier: BSD-2-Clause
"""The shortest end-to-end path: replay a capture file through sensor -> TLS ->
receiver and check the stored segment with capinfos."""
import subprocess

from conftest import DATA, Proc, free_port, tls_args, wait_listening


def test_replay_one_file_over_tls(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    port = free_port()
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
              tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(port)
    src = DATA / "redis-benchmark-sll.pcap"
    sx = Proc([sensor, "-r", src, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sx.log")
    procs.append(sx)
    assert sx.wait(30) == 0, sx.text()
    assert rx.stop() == 0
    segs = sorted((tmp_path / "data/sensors/s1/segments").glob("*.pcap"))
    assert len(segs) == 1, rx.text()
    out = subprocess.run(["capinfos", "-TrcE", segs[0]], capture_output=True, text=True, check=True).stdout
    assert out.split("\t")[1:] == ["linux-sll", "150\n"], out
    assert "acknowledged 1 batches / 150 packets" in sx.text(), sx.text()
