# SPDX-License-Identifier: BSD-2-Clause
"""pcapline-extcap: the receiver's sensors as Wireshark capture interfaces.

The extcap is installed by `make install` (DESTDIR, EXTCAP_DIR) into a temporary folder
that tshark 4.0 is pointed at with WIRESHARK_EXTCAP_DIR (honoured only for an
unprivileged user, so tshark runs as nobody). `tshark -D` lists one interface per sensor
of GET /api/v1/sensors plus "all"; --extcap-config and --extcap-dlts are parsed;
`tshark -i pcapline-s1 -a packets:N -w out` captures exactly the packets a sensor sends
in the window, byte for byte the same as the replayed capture and the repository.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, Proc, free_port, tls_args, wait_listening
from test_export import read_capture, stored_segments

PCAPS = ROOT / "tests" / "data" / "pcaps"
CAP = PCAPS / "dns-tcp-multi-request.pcap"
TOKEN = "extcap-test-token-0123456789"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def replay(binaries, certs, port, sensor, cap, log):
    sx = Proc([binaries[0], "-r", cap, "-t", f"127.0.0.1:{port}"] + tls_args(certs, sensor), log)
    assert sx.wait(timeout=120) == 0, sx.text()


@pytest.fixture
def setup(binaries, certs, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("tshark runs as nobody, which needs root to switch to")
    # tshark runs as nobody: its folders are outside pytest's private tmp_path.
    pub = Path(tempfile.mkdtemp(prefix="pcapline-extcap-"))
    os.chmod(pub, 0o777)
    dest = pub / "dest"
    san = ["SAN=1"] if BUILD.name == "san" else []
    p = subprocess.run(["make", "-s", "-C", ROOT, *san, f"BUILD={BUILD}", f"DESTDIR={dest}",
                        "EXTCAP_DIR=/extcap", "PREFIX=/usr", "install"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    extcap_dir = dest / "extcap"
    assert os.access(extcap_dir / "pcapline-extcap", os.X_OK)
    for d in (dest, extcap_dir):
        os.chmod(d, 0o755)
    # Without EXTCAP_DIR, make install targets Wireshark's global folder on Debian.
    n = subprocess.run(["make", "-s", "-n", "-C", ROOT, f"BUILD={BUILD}", "DESTDIR=/D", "install"],
                       capture_output=True, text=True).stdout
    assert "/D/usr/lib/x86_64-linux-gnu/wireshark/extcap" in n, n
    port, api = free_port(), free_port()
    data = tmp_path / "data"
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api}", "PCAPLINE_API_TOKEN": TOKEN})
    wait_listening(port)
    wait_listening(api)
    replay(binaries, certs, port, "s1", CAP, tmp_path / "s1.log")
    replay(binaries, certs, port, "s2", PCAPS / "redis-benchmark-sll.pcap", tmp_path / "s2.log")
    env = {"PATH": os.environ["PATH"], "HOME": str(pub), "WIRESHARK_EXTCAP_DIR": str(extcap_dir),
           "PCAPLINE_API_LISTEN": f"127.0.0.1:{api}", "PCAPLINE_API_TOKEN": TOKEN}
    try:
        yield extcap_dir / "pcapline-extcap", env, rx, port, data, pub
    finally:
        shutil.rmtree(pub, ignore_errors=True)
        assert rx.stop() == 0, rx.text()


def test_sensors_endpoint(setup):
    extcap, env, rx, port, data, tmp = setup
    api = env["PCAPLINE_API_LISTEN"]
    p = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {TOKEN}", f"http://{api}/api/v1/sensors"],
                       capture_output=True, text=True, timeout=30)
    assert json.loads(p.stdout) == {"sensors": [
        {"id": "s1", "interfaces": [{"index": 0, "name": "if0", "linktype": 1}]},
        {"id": "s2", "interfaces": [{"index": 0, "name": "if0", "linktype": 113}]},
    ]}, p.stdout
    code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{api}/api/v1/sensors"],
                          capture_output=True, text=True, timeout=30).stdout
    assert code == "401"


def test_tshark_lists_sensors_and_config(setup):
    extcap, env, rx, port, data, tmp = setup
    p = subprocess.run(NOBODY + ["tshark", "-D"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    names = re.findall(r"^\d+\. (pcapline-\S+)", p.stdout, re.M)
    assert names == ["pcapline-all", "pcapline-s1", "pcapline-s2"], p.stdout
    out = subprocess.run([extcap, "--extcap-interfaces", "--extcap-version=4.0"], env=env,
                         capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert re.fullmatch(r"extcap \{version=[0-9.]+\}\{display=.*\}", out[0]), out
    assert all(re.fullmatch(r"interface \{value=pcapline-[\w.-]+\}\{display=[^{}]+\}", line) for line in out[1:])
    cfg = subprocess.run([extcap, "--extcap-config", "--extcap-interface", "pcapline-s1"], env=env,
                         capture_output=True, text=True, timeout=30).stdout.splitlines()
    args = {}
    for line in cfg:
        m = re.fullmatch(r"arg ((?:\{[a-z]+=[^{}]*\})+)", line)
        assert m, line
        f = dict(re.findall(r"\{([a-z]+)=([^{}]*)\}", m.group(1)))
        assert int(f["number"]) == len(args)
        args[f["call"]] = f
    assert list(args) == ["--api", "--token", "--ca", "--cert", "--key", "--filter"]
    assert args["--api"]["default"] == env["PCAPLINE_API_LISTEN"]
    assert args["--token"]["type"] == "password" and args["--ca"]["type"] == "fileselect"
    dlts = subprocess.run([extcap, "--extcap-dlts", "--extcap-interface", "pcapline-s2"], env=env,
                          capture_output=True, text=True, timeout=30).stdout.strip()
    assert dlts == "dlt {number=113}{name=LINUX_SLL}{display=Linux cooked v1}", dlts


def test_tshark_captures_exactly_what_the_sensor_sent(setup, binaries, certs):
    extcap, env, rx, port, data, tmp = setup
    want = read_capture(CAP).recs
    out = tmp / "out.pcapng"
    joined = rx.text().count("consumer")
    ts = subprocess.Popen(NOBODY + ["tshark", "-i", "pcapline-s1", "-a", f"packets:{len(want)}", "-w", out],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while rx.text().count("consumer") == joined and time.time() < deadline:
            time.sleep(0.05)
        assert "joined" in rx.text()[-2000:], rx.text()
        # Another sensor's packets in the same window are not in s1's interface.
        replay(binaries, certs, port, "s2", PCAPS / "redis-benchmark-sll.pcap", tmp / "s2b.log")
        replay(binaries, certs, port, "s1", CAP, tmp / "s1b.log")
        _, err = ts.communicate(timeout=60)
    finally:
        if ts.poll() is None:
            ts.kill()
            ts.wait()
    assert ts.returncode == 0, err
    got = read_capture(out).recs
    assert [(r.ts, r.caplen, r.origlen, r.digest) for r in got] == \
        [(r.ts, r.caplen, r.origlen, r.digest) for r in want]
    p = subprocess.run(["capinfos", "-M", "-c", "-T", str(out)], capture_output=True, text=True)
    assert int(p.stdout.strip().splitlines()[-1].split("\t")[-1]) == len(want)
    # The repository holds the same packets twice (both replays of s1).
    stored = sorted(r.digest for s in stored_segments(data, "s1") for r in s.recs)
    assert stored == sorted([r.digest for r in want] * 2)
    # The extcap ended with tshark (no process of it is left) and, at the next packet
    # the receiver sends to its closed connection, its consumer leaves the hub.
    def cmdline(pid):
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""   # ended meanwhile
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(extcap) in cmdline(pid)]
    replay(binaries, certs, port, "s1", CAP, tmp / "s1c.log")
    deadline = time.time() + 20
    while not re.search(r"live .*consumer \d+ ended", rx.text()) and time.time() < deadline:
        time.sleep(0.05)
    assert re.search(r"live .*consumer \d+ ended", rx.text()), rx.text()[-2000:]


def test_all_interface_merges_link_types(setup, binaries, certs):
    """pcapline-all carries every sensor, Ethernet and Linux SLL alike (pcapng)."""
    extcap, env, rx, port, data, tmp = setup
    a, b = read_capture(CAP).recs, read_capture(PCAPS / "redis-benchmark-sll.pcap").recs
    out = tmp / "all.pcapng"
    joined = rx.text().count("joined")
    ts = subprocess.Popen(NOBODY + ["tshark", "-i", "pcapline-all", "-a", f"packets:{len(a) + len(b)}", "-w", out],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while rx.text().count("joined") == joined and time.time() < deadline:
            time.sleep(0.05)
        replay(binaries, certs, port, "s1", CAP, tmp / "s1d.log")
        replay(binaries, certs, port, "s2", PCAPS / "redis-benchmark-sll.pcap", tmp / "s2d.log")
        _, err = ts.communicate(timeout=60)
    finally:
        if ts.poll() is None:
            ts.kill()
            ts.wait()
    assert ts.returncode == 0, err
    cap = read_capture(out)
    assert sorted(lt for lt, _, _ in cap.ifaces) == [1, 113], cap.ifaces
    assert [r.digest for r in cap.recs] == [r.digest for r in a + b]


def test_capture_filter_and_dialog_filter(setup, binaries, certs):
    """Wireshark's capture filter (--extcap-capture-filter) and the dialog's --filter are
    both applied at the receiver: exactly the packets tcpdump selects with both."""
    extcap, env, rx, port, data, tmp = setup
    f_capture, f_dialog = "tcp[tcpflags] & tcp-syn != 0", "tcp port 53"
    sel = tmp / "sel.pcap"
    subprocess.run(["tcpdump", "-r", str(CAP), "-w", str(sel), f"({f_capture}) and ({f_dialog})"],
                   check=True, capture_output=True)
    want = read_capture(sel).recs
    assert 0 < len(want) < len(read_capture(CAP).recs)
    out = tmp / "f.pcapng"
    joined = rx.text().count("joined")
    ts = subprocess.Popen(NOBODY + ["tshark", "-i", "pcapline-s1", "-f", f_capture,
                                    "-o", f"extcap.pcapline_s1.filter:{f_dialog}",
                                    "-a", f"packets:{len(want)}", "-w", out],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while rx.text().count("joined") == joined and time.time() < deadline:
            time.sleep(0.05)
        assert f"filter ({f_dialog}) and ({f_capture})" in rx.text(), rx.text()[-1500:]
        replay(binaries, certs, port, "s1", CAP, tmp / "s1f.log")
        _, err = ts.communicate(timeout=60)
    finally:
        if ts.poll() is None:
            ts.kill()
            ts.wait()
    assert ts.returncode == 0, err
    assert [r.digest for r in read_capture(out).recs] == [r.digest for r in want]
