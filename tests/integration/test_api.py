# SPDX-License-Identifier: BSD-2-Clause
"""The receiver's HTTP API (api.listen): GET /api/v1/export against `pcapline export`.

A repository is filled by a real receiver from `pcapline-sensor -r` replays (the helpers
of test_export.py), then a receiver with the API on a free loopback port serves it. The
archive from curl must hold exactly the members `pcapline export` writes for the same
window (the manifest compared without its creation time); a token is enforced; bad
parameters are a 400 naming the parameter; the receiver keeps storing a replay while a
large export streams; a non-loopback api.listen without a token is a start-up error.
"""
import os
import subprocess
import time

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
