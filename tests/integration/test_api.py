# SPDX-License-Identifier: BSD-2-Clause
"""The receiver's HTTP API (api.listen): GET /api/v1/export against `pcapline export`.

A repository is filled by a real receiver from `pcapline-sensor -r` replays (the helpers
of test_export.py), then a receiver with the API on a free loopback port serves it. The
archive from curl must hold exactly the members `pcapline export` writes for the same
window (the manifest compared without its creation time); a token is enforced; bad
parameters are a 400 naming the parameter; the receiver keeps storing a replay while a
large export streams; a non-loopback api.listen without a token is a start-up error.
"""
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, Proc, free_port, tls_args, wait_listening
from test_export import PCAPLINE, PCAPS, big_capture, capture_member, fill_repository, read_capture, read_export

TOKEN = "api-test-token-0123456789"
T1, T2 = "0", "4102444800"   # 1970 .. 2100: every packet, and the same window for both


@pytest.fixture(scope="module")
def served(binaries, certs, tmp_path_factory):
    """(data dir, API base URL, receiver port, receiver Proc, big packet count)."""
    if not PCAPLINE.exists():
        pytest.fail(f"{PCAPLINE} is missing: run make first")
    work = tmp_path_factory.mktemp("api")
    n_big, _ = big_capture(work / "big.pcap", 40 * 10**6)
    data = fill_repository(binaries, certs, work,
                           [("s1", PCAPS / "http-1000-requests-one-conn.pcap"),
                            ("s1", PCAPS / "redis-benchmark-sll.pcap"),
                            ("s2", PCAPS / "dns-udp-queries.pcap"),
                            ("s3", work / "big.pcap")],
                           env={"PCAPLINE_STORAGE_SEGMENT_SIZE": "4M"})
    (work / "big.pcap").unlink()
    port, api_port = free_port(), free_port()
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              work / "api-receiver.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN})
    try:
        wait_listening(port)
        wait_listening(api_port)
        yield data, f"http://127.0.0.1:{api_port}", port, rx, n_big
    finally:
        assert rx.stop() == 0, rx.text()


def curl(url, out=None, token=TOKEN, extra=()):
    """(HTTP status, body bytes, or None when the body went to the file out)."""
    argv = ["curl", "-sS", "-o", str(out) if out else "-", "-w", "\n%{http_code}", *extra]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    p = subprocess.run(argv + [url], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code), None if out else body


def same_export(api_path, cli_path):
    """Both archives: same members in the same order, same bytes, manifests equal but
    for their creation time."""
    man_a, files_a = read_export(api_path)
    man_c, files_c = read_export(cli_path)
    assert list(files_a) == list(files_c)
    for name in files_a:
        if name != "manifest.json":
            assert files_a[name] == files_c[name], name
    del man_a["created"], man_c["created"]
    assert man_a == man_c
    return man_a, files_a


@pytest.mark.parametrize("query,cli_args", [
    ("", []),
    ("&sensor=s1", ["--sensor", "s1"]),
    ("&sensor=s2&sensor=s1&filter=udp", ["--sensor", "s2", "--sensor", "s1", "--filter", "udp"]),
])
def test_export_is_the_cli_archive(served, tmp_path, query, cli_args):
    data, base, _, _, _ = served
    code, _ = curl(f"{base}/api/v1/export?from={T1}&to={T2}{query}", out=tmp_path / "api.tar.gz")
    assert code == 200
    p = subprocess.run([PCAPLINE, "-q", "export", "--dir", data, "--from", T1, "--to", T2, *cli_args,
                        "-o", tmp_path / "cli.tar.gz"], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    _, files = same_export(tmp_path / "api.tar.gz", tmp_path / "cli.tar.gz")
    sensors = {name.split("/")[0] for name in files if "/" in name}
    assert sensors == ({"s1", "s2", "s3"} if not cli_args else {"s1"} if len(cli_args) == 2 else {"s1", "s2"})
    for s in sensors - ({"s1"} if "udp" in query else set()):   # s1 holds no UDP
        assert read_capture(capture_member(files, s)).recs, s


def test_headers(served, tmp_path):
    _, base, _, _, _ = served
    p = subprocess.run(["curl", "-sS", "-D", "-", "-o", tmp_path / "x.tar.gz", "-H",
                        f"Authorization: Bearer {TOKEN}",
                        f"{base}/api/v1/export?from={T1}&to={T2}&sensor=s2"],
                       capture_output=True, text=True, timeout=60)
    head = p.stdout.lower()
    assert "200" in head.splitlines()[0]
    assert "content-type: application/gzip" in head
    assert "content-disposition: attachment" in head


def test_token_is_required(served):
    _, base, _, _, _ = served
    url = f"{base}/api/v1/export?from={T1}&to={T2}"
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        code, body = curl(url, token=token)
        assert code == 401, (token, body)
    code, body = curl(f"{base}/api/v1/nope", token=None)
    assert code == 401


@pytest.mark.parametrize("query,param", [
    ("from=yesterday&to=now", "from"),
    ("from=now-1h&to=soon", "to"),
    ("to=now", "from"),
    ("from=now", "to"),
    ("from=now&to=now-1h", "to"),
    ("from=0&to=now&sensor=../etc", "sensor"),
    ("from=0&to=now&sensor=nosuch", "sensor"),
    ("from=0&to=now&filter=tcp%20portx", "filter"),
    ("from=0&to=now&bogus=1", "bogus"),
])
def test_bad_parameters(served, query, param):
    _, base, _, _, _ = served
    code, body = curl(f"{base}/api/v1/export?{query}")
    assert code == 400, body
    text = body.decode()
    assert text.count("\n") == 1 and text.startswith(param), text


def test_unknown_path_and_method(served):
    _, base, _, _, _ = served
    assert curl(f"{base}/api/v1/exports")[0] == 404
    assert curl(f"{base}/")[0] == 404
    assert curl(f"{base}/api/v1/export?from=0&to=now", extra=["-X", "POST"])[0] == 405
    assert curl(f"{base}/api/v1/export?from=0&to=now", extra=["-X", "DELETE"])[0] == 405


def test_receiver_keeps_storing_during_an_export(served, binaries, certs, tmp_path):
    data, base, port, rx, n_big = served
    # A slow client: the export of the 40 MB sensor streams for several seconds.
    out = tmp_path / "big.tar.gz"
    dl = subprocess.Popen(["curl", "-sS", "--limit-rate", "1M", "-o", out, "-w", "%{http_code}",
                           "-H", f"Authorization: Bearer {TOKEN}",
                           f"{base}/api/v1/export?from={T1}&to={T2}&sensor=s3"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert dl.poll() is None, f"the export finished before the replay started: {dl.communicate()}"
        src = PCAPS / "http-1000-requests-one-conn.pcap"
        sx = Proc([binaries[0], "-r", src, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s2"),
                  tmp_path / "sensor.log")
        assert sx.wait(timeout=60) == 0, sx.text()
        assert dl.poll() is None, "the replay was not stored while the export streamed"
        stdout, stderr = dl.communicate(timeout=300)
    finally:
        if dl.poll() is None:
            dl.kill()
            dl.wait()
    assert dl.returncode == 0 and stdout == b"200", stderr.decode()
    _, files = read_export(out)
    assert len(read_capture(capture_member(files, "s3")).recs) == n_big
    # Everything the sensor sent is on disk (closed or still open segments).
    stored = 0
    for f in (data / "sensors" / "s2" / "segments").iterdir():
        stored += len(read_capture(f).recs)
    dns = len(read_capture(PCAPS / "dns-udp-queries.pcap").recs)
    assert stored == dns + len(read_capture(src).recs)
    assert ": error:" not in rx.text() and "api: " not in rx.text(), rx.text()


def test_non_loopback_listen_needs_token_and_tls(binaries, tmp_path):
    base = [binaries[1], "--insecure", "-l", f"127.0.0.1:{free_port()}", "-d", tmp_path / "d"]
    cases = [
        {"PCAPLINE_API_LISTEN": "0.0.0.0:1"},
        {"PCAPLINE_API_LISTEN": "0.0.0.0:1", "PCAPLINE_API_TOKEN": "t"},
        {"PCAPLINE_API_LISTEN": "[::]:1", "PCAPLINE_API_TOKEN": "t", "PCAPLINE_API_CERT": "/x"},
    ]
    for env in cases:
        p = subprocess.run([str(a) for a in base], capture_output=True, text=True, timeout=20,
                           env={**os.environ, **env})
        assert p.returncode == 2, (env, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "api.listen" in p.stderr, p.stderr


def test_https_api(binaries, certs, served, tmp_path):
    """api.cert/api.key serve the same export over HTTPS, checked against the CA."""
    data = served[0]
    api_port = free_port()
    rx = Proc([binaries[1], "--insecure", "-l", f"127.0.0.1:{free_port()}", "-d", data],
              tmp_path / "rx.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN,
                   "PCAPLINE_API_CERT": str(certs / "receiver.crt"),
                   "PCAPLINE_API_KEY": str(certs / "receiver.key")})
    try:
        wait_listening(api_port)
        code, _ = curl(f"https://127.0.0.1:{api_port}/api/v1/export?from={T1}&to={T2}&sensor=s2",
                       out=tmp_path / "tls.tar.gz", extra=["--cacert", str(certs / "ca.crt")])
        assert code == 200
        p = subprocess.run([PCAPLINE, "-q", "export", "--dir", data, "--from", T1, "--to", T2,
                            "--sensor", "s2", "-o", tmp_path / "cli.tar.gz"], capture_output=True)
        assert p.returncode == 0
        same_export(tmp_path / "tls.tar.gz", tmp_path / "cli.tar.gz")
    finally:
        assert rx.stop() == 0, rx.text()


# Connections and flows ----------------------------------------------------------------
#
# A receiver with the API and 1 s segments stores a replay of a TCP capture (s1) and of a
# UDP one (s2), closes its segments while it runs and dissects them on its thread; once
# every packet is in a closed, dissected segment, the API's lists must equal
# `pcapline conns|flows --json` for the same query and its captures `pcapline pcap -o -`
# byte for byte.

TCP_CAP = PCAPS / "tcp-echo-500-conns.pcap"
UDP_CAP = PCAPS / "dns-udp-queries.pcap"


def wait_all_dissected(data, packets, timeout=90):
    """Waits until the index's closed segments hold all `packets` and every one of them is
    dissected (l4_done), so that index.db no longer changes while the receiver idles."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            db = sqlite3.connect(f"file:{data}/index.db?mode=ro", uri=True)
            try:
                segs, pkts = db.execute("SELECT count(*), coalesce(sum(packets), 0) FROM segments").fetchone()
                done = db.execute("SELECT count(*) FROM l4_done").fetchone()[0]
            finally:
                db.close()
            last = (segs, pkts, done)
            if pkts == packets and segs == done:
                return segs
        except sqlite3.Error as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"not dissected in {timeout} s: (segments, packets, done) {last}, want {packets} packets")


@pytest.fixture(scope="module")
def l4_served(binaries, certs, tmp_path_factory):
    """(data dir, API base URL) of a running receiver whose repository is dissected."""
    if not PCAPLINE.exists():
        pytest.fail(f"{PCAPLINE} is missing: run make first")
    sensor_bin, receiver_bin = binaries
    work = tmp_path_factory.mktemp("api-l4")
    data = work / "data"
    port, api_port = free_port(), free_port()
    rx = Proc([receiver_bin, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              work / "receiver.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN,
                   "PCAPLINE_STORAGE_SEGMENT_TIME": "1s", "PCAPLINE_STORAGE_SEGMENT_SIZE": "1M"})
    try:
        wait_listening(port)
        wait_listening(api_port)
        for i, (sensor, cap) in enumerate([("s1", TCP_CAP), ("s2", UDP_CAP)]):
            sx = Proc([sensor_bin, "-r", cap, "-t", f"127.0.0.1:{port}"] + tls_args(certs, sensor),
                      work / f"sensor{i}.log")
            assert sx.wait(timeout=120) == 0, sx.text()
        total = len(read_capture(TCP_CAP).recs) + len(read_capture(UDP_CAP).recs)
        segs = wait_all_dissected(data, total)
        assert segs >= 3, "the TCP capture should span several segments"
        yield data, f"http://127.0.0.1:{api_port}", rx
    finally:
        assert rx.stop() == 0, rx.text()


def cli_json(data, cmd, *args):
    p = subprocess.run([PCAPLINE, "-q", cmd, "--dir", data, "--json", *map(str, args)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def cli_pcap(data, what, ident):
    p = subprocess.run([PCAPLINE, "-q", "pcap", "--dir", data, f"--{what}", str(ident), "-o", "-"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def api_json(base, path):
    code, body = curl(f"{base}{path}")
    assert code == 200, body
    return json.loads(body)


def unix_ns(ns):
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def rfc3339_ns(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def busiest_flow(data, sensor):
    """The id of the sensor's flow with the most connections."""
    flows = cli_json(data, "flows", "--sensor", sensor, "--limit", 100000)
    assert flows, sensor
    return max(flows, key=lambda f: (f["conns"], f["flow_id"]))["flow_id"]


def test_conns_is_the_cli_list(l4_served):
    data, base, _ = l4_served
    everything = cli_json(data, "conns", "--limit", 100000)
    assert {c["sensor"] for c in everything} == {"s1", "s2"}
    tcp = [c for c in everything if c["sensor"] == "s1"]
    assert len(tcp) >= 500 and all(c["proto"] == "tcp" for c in tcp)
    flow = busiest_flow(data, "s1")
    conn = tcp[len(tcp) // 2]
    first = min(tcp, key=lambda c: (c["first_ns"], c["conn_id"]))
    # A window around the middle connection and the first nanosecond of the first one,
    # in Unix seconds with nanoseconds and in RFC 3339.
    t1, t2 = unix_ns(conn["first_ns"]), unix_ns(conn["last_ns"] + 1)
    t3, t4 = rfc3339_ns(first["first_ns"]), rfc3339_ns(first["first_ns"] + 1)
    cases = [
        ("", []),
        ("?limit=10000", ["--limit", 10000]),
        ("?sensor=s1&limit=10000", ["--sensor", "s1", "--limit", 10000]),
        ("?sensor=s2", ["--sensor", "s2"]),
        (f"?flow={flow}&limit=10000", ["--flow", flow, "--limit", 10000]),
        (f"?conn={conn['conn_id']}", ["--conn", conn["conn_id"]]),
        (f"?sensor=s1&from={t1}&to={t2}", ["--sensor", "s1", "--from", t1, "--to", t2]),
        (f"?from={t3}&to={t4}", ["--from", t3, "--to", t4]),
        ("?limit=7", ["--limit", 7]),
        ("?sensor=nosuch", ["--sensor", "nosuch"]),
    ]
    for query, args in cases:
        got = api_json(base, f"/api/v1/conns{query}".replace("+", "%2B"))
        assert got == cli_json(data, "conns", *args), query
    # The queries select what they say.
    assert len(api_json(base, "/api/v1/conns?limit=10000")) == len(everything)
    assert api_json(base, f"/api/v1/conns?conn={conn['conn_id']}") == [conn]
    by_flow = api_json(base, f"/api/v1/conns?flow={flow}&limit=10000")
    assert len(by_flow) > 1 and {c["flow_id"] for c in by_flow} == {flow}
    window = api_json(base, f"/api/v1/conns?sensor=s1&from={t1}&to={t2}")
    assert conn in window
    assert window == [c for c in tcp if c["last_ns"] >= conn["first_ns"] and c["first_ns"] <= conn["last_ns"]]
    assert api_json(base, f"/api/v1/conns?from={t3}&to={t4}") == [first]
    assert len(api_json(base, "/api/v1/conns?limit=7")) == 7
    assert api_json(base, "/api/v1/conns?sensor=nosuch") == []


def test_flows_is_the_cli_list(l4_served):
    data, base, _ = l4_served
    flow = busiest_flow(data, "s1")
    cases = [
        ("", []),
        ("?sensor=s1", ["--sensor", "s1"]),
        ("?sensor=s2&limit=3", ["--sensor", "s2", "--limit", 3]),
        (f"?flow={flow}", ["--flow", flow]),
        ("?from=0&to=now", ["--from", "0", "--to", "now"]),
    ]
    for query, args in cases:
        got = api_json(base, f"/api/v1/flows{query}")
        assert got == cli_json(data, "flows", *args), query
    assert {f["sensor"] for f in api_json(base, "/api/v1/flows")} == {"s1", "s2"}
    one = api_json(base, f"/api/v1/flows?flow={flow}")
    assert len(one) == 1 and one[0]["flow_id"] == flow and one[0]["conns"] > 1
    assert "pps" in one[0] and "bps" in one[0]


def test_list_headers(l4_served):
    _, base, _ = l4_served
    p = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", f"Authorization: Bearer {TOKEN}",
                        f"{base}/api/v1/conns?limit=1"], capture_output=True, text=True, timeout=60)
    head = p.stdout.lower()
    assert "200" in head.splitlines()[0]
    assert "content-type: application/json" in head


def pcap_head(base, path, out):
    """(status, lower-cased response head) of a download into out."""
    p = subprocess.run(["curl", "-sS", "-D", "-", "-o", out, "-H", f"Authorization: Bearer {TOKEN}",
                        f"{base}{path}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    head = p.stdout.lower()
    return int(head.split()[1]), head


def test_conn_and_flow_pcap_are_the_cli_captures(l4_served, tmp_path):
    data, base, _ = l4_served
    tcp = cli_json(data, "conns", "--sensor", "s1", "--limit", 100000)
    udp = cli_json(data, "conns", "--sensor", "s2", "--limit", 100000)
    # The longest TCP connection (it spans segments), another, a UDP conversation.
    longest = max(tcp, key=lambda c: (c["c_pkts"] + c["s_pkts"], c["conn_id"]))
    for n, c in enumerate([longest, tcp[0], udp[-1]]):
        ident = c["conn_id"]
        code, head = pcap_head(base, f"/api/v1/conns/{ident}/pcap", tmp_path / f"c{n}.pcap")
        assert code == 200, (tmp_path / f"c{n}.pcap").read_bytes()
        assert "content-type: application/vnd.tcpdump.pcap" in head
        assert f'content-disposition: attachment; filename="conn-{ident}.pcap"' in head
        got = (tmp_path / f"c{n}.pcap").read_bytes()
        assert got == cli_pcap(data, "conn", ident), ident
        assert len(read_capture(got).recs) == c["c_pkts"] + c["s_pkts"], ident
    for sensor in ("s1", "s2"):
        flow = busiest_flow(data, sensor)
        out = tmp_path / f"flow-{sensor}.pcap"
        code, head = pcap_head(base, f"/api/v1/flows/{flow}/pcap", out)
        assert code == 200, out.read_bytes()
        assert "content-type: application/vnd.tcpdump.pcap" in head
        assert f'content-disposition: attachment; filename="flow-{flow}.pcap"' in head
        got = out.read_bytes()
        assert got == cli_pcap(data, "flow", flow), flow
        want = sum(c["c_pkts"] + c["s_pkts"] for c in (tcp + udp) if c["flow_id"] == flow)
        assert len(read_capture(got).recs) == want
    # The TCP flow is larger than the pipe and the capture writer's buffer: it streamed.
    assert (tmp_path / "flow-s1.pcap").stat().st_size > 1 << 20


def test_parallel_captures_and_lists(l4_served, tmp_path):
    """Eight captures and lists at once (a worker each): every answer complete and right."""
    data, base, _ = l4_served
    flow = busiest_flow(data, "s1")
    want = cli_pcap(data, "flow", flow)
    want_list = cli_json(data, "conns", "--sensor", "s1")
    auth = ["-H", f"Authorization: Bearer {TOKEN}"]
    jobs = []
    try:
        for i in range(8):
            jobs.append(subprocess.Popen(["curl", "-sS", "-f", "-o", tmp_path / f"p{i}", *auth,
                                          f"{base}/api/v1/flows/{flow}/pcap"], stderr=subprocess.PIPE))
            jobs.append(subprocess.Popen(["curl", "-sS", "-f", "-o", tmp_path / f"l{i}", *auth,
                                          f"{base}/api/v1/conns?sensor=s1"], stderr=subprocess.PIPE))
        for j in jobs:
            _, err = j.communicate(timeout=120)
            assert j.returncode == 0, err.decode()
    finally:
        for j in jobs:
            if j.poll() is None:
                j.kill()
                j.wait()
    for i in range(8):
        assert (tmp_path / f"p{i}").read_bytes() == want, i
        assert json.loads((tmp_path / f"l{i}").read_bytes()) == want_list, i


def test_client_going_away_ends_the_capture(l4_served, tmp_path):
    """A client that leaves mid-capture ends the worker (EPIPE, logged); the API goes on.
    The client reads only the head, with a small receive buffer, so that the 6 MB capture
    cannot all be in the kernel's buffers before it resets the connection."""
    data, base, rx = l4_served
    flow = busiest_flow(data, "s1")
    path = f"/api/v1/flows/{flow}/pcap"
    host, port = base.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect((host, int(port)))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = s.recv(1024)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close = reset
    deadline = time.time() + 20
    while f"capture of flow {flow} cut off" not in rx.text() and time.time() < deadline:
        time.sleep(0.1)
    assert f"capture of flow {flow} cut off" in rx.text(), rx.text()
    code, _ = curl(f"{base}{path}", out=tmp_path / "full.pcap")
    assert code == 200
    assert (tmp_path / "full.pcap").read_bytes() == cli_pcap(data, "flow", flow)


def test_pcap_of_an_unknown_id_is_404(l4_served):
    data, base, _ = l4_served
    known = {"conns": {c["conn_id"] for c in cli_json(data, "conns", "--limit", 100000)},
             "flows": {f["flow_id"] for f in cli_json(data, "flows", "--limit", 100000)}}
    for what, kind in (("conns", "connection"), ("flows", "flow")):
        ids = known[what]
        assert ids
        smallest_free = min(set(range(1, len(ids) + 2)) - ids)
        for ident in {smallest_free, 2**63 - 1} - ids:
            code, body = curl(f"{base}/api/v1/{what}/{ident}/pcap")
            assert code == 404, body
            assert body.decode() == f"no {kind} {ident} in the index\n"


@pytest.mark.parametrize("path,param", [
    ("/api/v1/conns?from=0", "to"),
    ("/api/v1/conns?to=now", "from"),
    ("/api/v1/flows?from=now-1h", "to"),
    ("/api/v1/conns?from=yesterday&to=now", "from"),
    ("/api/v1/conns?from=now&to=now-1h", "to"),
    ("/api/v1/conns?flow=abc", "flow"),
    ("/api/v1/flows?flow=abc", "flow"),
    ("/api/v1/conns?flow=0", "flow"),
    ("/api/v1/conns?flow=-5", "flow"),
    ("/api/v1/conns?flow=9223372036854775808", "flow"),
    ("/api/v1/conns?conn=1x", "conn"),
    ("/api/v1/conns?limit=0", "limit"),
    ("/api/v1/flows?limit=0", "limit"),
    ("/api/v1/conns?limit=", "limit"),
    ("/api/v1/conns?limit=10001", "limit"),
    ("/api/v1/conns?sensor=../etc", "sensor"),
    ("/api/v1/conns?sensor=s1,s2", "sensor"),
    ("/api/v1/conns?sensor=s1&sensor=s2", "sensor"),
    ("/api/v1/conns?bogus=1", "bogus"),
    ("/api/v1/flows?conn=1", "conn"),
    ("/api/v1/conns/abc/pcap", "id"),
    ("/api/v1/flows/0/pcap", "id"),
    ("/api/v1/conns/000000000000000000000000000000000000000000007/pcap", "id"),
    ("/api/v1/conns/1/pcap?limit=1", "limit"),
])
def test_l4_bad_parameters(l4_served, path, param):
    _, base, _ = l4_served
    code, body = curl(f"{base}{path}")
    assert code == 400, body
    text = body.decode()
    assert text.count("\n") == 1 and text.startswith(param + ":"), text


def test_l4_token_paths_and_methods(l4_served):
    data, base, _ = l4_served
    conn = cli_json(data, "conns", "--limit", 1)[0]
    paths = ["/api/v1/conns", "/api/v1/flows?limit=1", f"/api/v1/conns/{conn['conn_id']}/pcap",
             f"/api/v1/flows/{conn['flow_id']}/pcap"]
    for path in paths:
        for token in (None, "wrong"):
            code, body = curl(f"{base}{path}", token=token)
            assert code == 401, (path, token, body)
        for method in ("POST", "DELETE"):
            assert curl(f"{base}{path}", extra=["-X", method])[0] == 405, (path, method)
    for path in ("/api/v1/conns/", "/api/v1/connsx", "/api/v1/conns/1", "/api/v1/conns//pcap",
                 f"/api/v1/conns/{conn['conn_id']}/pcap/", f"/api/v1/conns/{conn['conn_id']}/pcapx",
                 "/api/v1/flow/1/pcap", "/api/v1/flows/1/2/pcap", "/api/v2/conns"):
        assert curl(f"{base}{path}")[0] == 404, path
        assert curl(f"{base}{path}", token=None)[0] == 401, path


def test_https_and_a_failure_before_the_first_byte(l4_served, binaries, certs, tmp_path):
    """Over HTTPS (api.cert/api.key, checked against the CA) the lists and captures are the
    CLI's and the token is enforced. With a position file gone (the index names a segment
    whose .pos is missing) the capture is a 500 with the reason, not a 200 cut short."""
    data = l4_served[0]
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    conns = cli_json(copy, "conns", "--sensor", "s1", "--limit", 100000)
    db = sqlite3.connect(f"file:{copy}/index.db?mode=ro", uri=True)
    try:
        # The last segment of s1 loses its position file: a connection with packets in it
        # fails (its few KiB are still in the capture writer's buffer), one without works.
        seg_id, last = db.execute("SELECT id, path FROM segments WHERE sensor = 's1' "
                                  "ORDER BY min_ns DESC, id DESC LIMIT 1").fetchone()
        inside = {r[0] for r in db.execute("SELECT conn_id FROM conn_segs WHERE seg_id = ?", (seg_id,))}
    finally:
        db.close()
    conn = max((c for c in conns if c["conn_id"] in inside), key=lambda c: (c["c_pkts"] + c["s_pkts"], c["conn_id"]))
    other = next(c["conn_id"] for c in conns if c["conn_id"] not in inside)
    good = cli_pcap(copy, "conn", other)
    seg = Path(last)
    pos = copy / seg.parent.parent / "l4" / (seg.name + ".pos")
    assert pos.exists(), sorted(p.name for p in pos.parent.iterdir())
    pos.unlink()
    api_port = free_port()
    rx = Proc([binaries[1], "--insecure", "-l", f"127.0.0.1:{free_port()}", "-d", copy],
              tmp_path / "rx.log",
              env={"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}", "PCAPLINE_API_TOKEN": TOKEN,
                   "PCAPLINE_API_CERT": str(certs / "receiver.crt"),
                   "PCAPLINE_API_KEY": str(certs / "receiver.key"),
                   "PCAPLINE_L4_ENABLED": "false"})
    tls = ["--cacert", str(certs / "ca.crt")]
    try:
        wait_listening(api_port)
        base = f"https://127.0.0.1:{api_port}"
        code, body = curl(f"{base}/api/v1/conns?sensor=s1&limit=10000", extra=tls)
        assert code == 200 and json.loads(body) == conns
        code, body = curl(f"{base}/api/v1/flows", extra=tls)
        assert code == 200 and json.loads(body) == cli_json(copy, "flows")
        code, _ = curl(f"{base}/api/v1/conns/{other}/pcap", out=tmp_path / "other.pcap", extra=tls)
        assert code == 200 and (tmp_path / "other.pcap").read_bytes() == good
        assert curl(f"{base}/api/v1/conns", token=None, extra=tls)[0] == 401
        assert curl(f"{base}/api/v1/conns/{other}/pcap", token=None, extra=tls)[0] == 401
        code, body = curl(f"{base}/api/v1/conns/{conn['conn_id']}/pcap", extra=tls)
        assert code == 500, body
        text = body.decode()
        assert text.count("\n") == 1 and "position file" in text, text
        code, body = curl(f"{base}/api/v1/conns?conn={conn['conn_id']}", extra=tls)
        assert code == 200 and json.loads(body) == [conn]
    finally:
        assert rx.stop() == 0, rx.text()
    assert "position file" in rx.text()
