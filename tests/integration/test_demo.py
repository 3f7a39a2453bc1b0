# SPDX-License-Identifier: BSD-2-Clause
"""`make demo` (scripts/demo.sh) on a machine where the receiver's usual API port 47801
is taken: the demo picks free ports for everything it starts, waits for each server to
listen, and still stores every packet the sensor captured. When something does fail,
it says what, with the end of the logs."""
import os
import re
import socket
import subprocess

import pytest

from conftest import BUILD, ROOT

DEMO = ROOT / "scripts" / "demo.sh"


def hold_port(addr, port):
    """A listener on addr:port, or None when someone else already holds the port (it is
    taken either way, which is all the test needs)."""
    s = socket.socket()
    try:
        s.bind((addr, port))
        s.listen(8)
        return s
    except OSError:
        s.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return None


def run_demo(tmp_path, env=None):
    full = dict(os.environ, PCAPLINE_DEMO_DIR=str(tmp_path / "demo"))
    full.pop("PCAPLINE_API_LISTEN", None)  # the demo's receiver would use 47801 by default
    full.update(env or {})
    return subprocess.run(["bash", DEMO, BUILD], capture_output=True, text=True, env=full, timeout=180)


@pytest.mark.parametrize("addr", ["127.0.0.1", "0.0.0.0"])
def test_demo_with_api_port_taken(binaries, tmp_path, addr):
    holder = hold_port(addr, 47801)
    try:
        r = run_demo(tmp_path)
    finally:
        if holder:
            holder.close()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "FAILED" not in out, out
    rx_log = (tmp_path / "demo" / "receiver.log").read_text()
    api = re.search(r"HTTP API on 127\.0\.0\.1:(\d+)", rx_log)
    assert api and int(api.group(1)) != 47801, rx_log
    # Every packet the sensor captured was acknowledged, stored, and is in the one file.
    cap = re.search(r"sensor: +captured (\d+) packets .*acknowledged \d+ batches / (\d+) packets, pending 0", out)
    stored = re.search(r"receiver: sensor demo-sensor: stored (\d+) packets", out)
    files = re.findall(r"^  \S+\.pcap: (\d+) packets$", out, re.M)
    assert cap and stored, out
    n = int(cap.group(1))
    assert n > 0 and int(cap.group(2)) == n and int(stored.group(1)) == n, out
    assert "files written: 1\n" in out and files == [str(n)], out
    assert "names learned from DNS: 5 " in out, out


def test_demo_failure_shows_the_cause(binaries, tmp_path):
    """A receiver that cannot start ends the demo at once, with the receiver's own
    explanation printed, not only left in a log file."""
    r = run_demo(tmp_path, {"PCAPLINE_LOG_LEVEL": "bogus"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"demo: the receiver exited before listening on tcp port \d+", r.stderr), r.stderr
    assert "demo FAILED (exit 1); the end of each log:" in r.stderr
    assert "log.level: expected one of error|warn|info|debug, got 'bogus'" in r.stderr, r.stderr
