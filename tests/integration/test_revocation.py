# SPDX-License-Identifier: BSD-2-Clause
"""Revocation and the bearer token: a sensor whose certificate is in the receiver's CRL
is refused at the handshake, and with auth.token set, a sensor without the right token
is refused after HELLO. Both sides log why and nothing is stored. Refused at start, the
sensor stops at once with a start-up error (status 2) naming the reason; refused after
it had been welcomed once, it says so loudly and keeps retrying with backoff."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import CERTS_TOOL, DATA, Proc, free_port, tls_args, wait_listening

CAPTURE = DATA / "redis-benchmark-sll.pcap"


def make_crl(d, revoke):
    """Revokes d/<revoke>.crt with an `openssl ca` database and writes d/ca.crl."""
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    conf = d / "ca.cnf"
    conf.write_text(f"""[ ca ]
default_ca = CA_default
[ CA_default ]
database = {d}/index.txt
crlnumber = {d}/crlnumber
certificate = {d}/ca.crt
private_key = {d}/ca.key
default_md = sha256
default_crl_days = 7
""")
    subprocess.run(["openssl", "ca", "-config", conf, "-revoke", d / f"{revoke}.crt"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-config", conf, "-gencrl", "-out", d / "ca.crl"],
                   check=True, capture_output=True)
    return d / "ca.crl"


def segments(datadir, sid):
    return sorted((datadir / "sensors" / sid / "segments").glob("*.pcap"))


def test_revoked_certificate_is_refused(binaries, procs, tmp_path):
    sensor, receiver = binaries
    d = tmp_path / "pki"
    subprocess.run([CERTS_TOOL, d, "ca"], check=True, capture_output=True)
    subprocess.run([CERTS_TOOL, d, "receiver", "127.0.0.1"], check=True, capture_output=True)
    for s in ("good", "bad"):
        subprocess.run([CERTS_TOOL, d, "sensor", s], check=True, capture_output=True)
    crl = make_crl(d, "bad")
    port = free_port()
    data = tmp_path / "data"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data, "--crl", crl] + tls_args(d, "receiver"),
              tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(port)

    bad = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(d, "bad"), tmp_path / "bad.log")
    procs.append(bad)
    t0 = time.time()
    assert bad.wait(15) == 2, bad.text()
    assert time.time() - t0 < 5, f"a refused sensor must stop at once, took {time.time() - t0:.1f} s"
    assert "client certificate refused: certificate revoked" in rx.text(), rx.text()
    assert re.search(r"error: uplink refused: .*alert certificate revoked.*"
                     r"\(exiting with status 2\)", bad.text()), bad.text()
    assert "lost" not in bad.text() and "connected to" not in bad.text(), bad.text()
    assert segments(data, "bad") == []

    good = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(d, "good"), tmp_path / "good.log")
    procs.append(good)
    assert good.wait(30) == 0, good.text()
    assert rx.stop() == 0
    assert len(segments(data, "good")) == 1


def test_bearer_token_is_checked(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    port = free_port()
    data = tmp_path / "data"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              tmp_path / "rx.log", env={"PCAPLINE_AUTH_TOKEN": "s3cret-token"})
    procs.append(rx)
    wait_listening(port)

    wrong = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                 tmp_path / "wrong.log", env={"PCAPLINE_UPLINK_TOKEN": "guess"})
    procs.append(wrong)
    assert wrong.wait(15) == 2, wrong.text()
    assert "closed: bearer token refused" in rx.text(), rx.text()
    assert re.search(r"error: uplink refused: receiver refused the session \(code 3\): "
                     r"bearer token refused", wrong.text()), wrong.text()
    assert "lost" not in wrong.text(), wrong.text()
    assert "guess" not in rx.text(), "the token must never be logged"
    assert segments(data, "s1") == []

    right = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                 tmp_path / "right.log", env={"PCAPLINE_UPLINK_TOKEN": "s3cret-token"})
    procs.append(right)
    assert right.wait(30) == 0, right.text()
    assert rx.stop() == 0
    assert len(segments(data, "s1")) == 1


def test_wrong_sensor_id_is_a_startup_error(binaries, certs, procs, tmp_path):
    """sensor.id that is not the certificate's CN: refused after HELLO (ERROR code 3);
    the sensor exits with status 2 at once, naming the reason, instead of retrying
    and then reporting batches lost."""
    sensor, receiver = binaries
    port = free_port()
    data = tmp_path / "data"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"), tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(port)
    sx = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}", "--id", "s2"] + tls_args(certs, "s1"),
              tmp_path / "sx.log")
    procs.append(sx)
    t0 = time.time()
    assert sx.wait(15) == 2, sx.text()
    assert time.time() - t0 < 5, f"took {time.time() - t0:.1f} s"
    assert re.search(r"error: uplink refused: receiver refused the session \(code 3\): HELLO claims sensor "
                     r"id 's2' but the certificate says 's1'; retrying cannot help: check sensor\.id", sx.text()), \
        sx.text()
    assert "lost" not in sx.text(), sx.text()
    assert "HELLO claims sensor id 's2' but the certificate says 's1'" in rx.text(), rx.text()
    assert segments(data, "s1") == [] and segments(data, "s2") == []
    assert rx.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: captures on lo")
def test_refusal_after_a_welcome_is_retried(binaries, certs, procs, tmp_path):
    """A sensor that was welcomed once and is then refused (the receiver now wants
    another token) does not exit: it logs the refusal as an error on every attempt,
    retries with growing backoff, and delivers once the receiver takes it again."""
    sensor, receiver = binaries
    port, udp = free_port(), free_port()
    data = tmp_path / "data"

    def start_rx(token, name):
        rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
                  tmp_path / name, env={"PCAPLINE_AUTH_TOKEN": token})
        procs.append(rx)
        wait_listening(port)
        return rx

    def wait_text(p, pattern, count=1, timeout=15):
        deadline = time.time() + timeout
        while len(re.findall(pattern, p.text())) < count:
            assert time.time() < deadline, f"{pattern!r} x{count} not in {p.log_path.name}:\n{p.text()}"
            assert p.p.poll() is None, p.text()
            time.sleep(0.05)

    rx = start_rx("t0k3n-one", "rx1.log")
    sx = Proc([sensor, "-i", "lo", "-f", f"udp dst port {udp}", "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
              tmp_path / "sx.log", env={"PCAPLINE_UPLINK_TOKEN": "t0k3n-one", "PCAPLINE_NAMES_ENABLED": "false",
                                        "PCAPLINE_LOG_STATS_INTERVAL": "1s"})
    procs.append(sx)
    wait_text(sx, r"uplink: connected to")
    assert rx.stop() == 0
    rx = start_rx("t0k3n-two", "rx2.log")
    pat = r"error: uplink: 127\.0\.0\.1:\d+: REFUSED: receiver refused the session \(code 3\): bearer token refused"
    wait_text(sx, pat, count=3, timeout=20)
    assert sx.p.poll() is None, "a sensor refused after it had been welcomed must keep retrying"
    assert rx.stop() == 0
    assert len(re.findall(r"closed: bearer token refused", rx.text())) >= 3, rx.text()
    rx = start_rx("t0k3n-one", "rx3.log")
    wait_text(sx, r"uplink: connected to", count=2, timeout=40)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(20):
            u.sendto(b"after the refusal %d" % i, ("127.0.0.1", udp))
    wait_text(sx, r"stats: captured 20 packets .*acknowledged \d+ batches / 20 packets")
    assert sx.stop(signal.SIGTERM) == 0, sx.text()
    assert rx.stop() == 0
    assert "acknowledged" in sx.text() and re.search(r"final: captured 20 packets .*acknowledged \d+ batches / 20 "
                                                     r"packets, pending 0", sx.text()), sx.text()
