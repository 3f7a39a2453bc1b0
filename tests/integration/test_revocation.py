# SPDX-License-Identifier: BSD-2-Clause
"""Revocation and the bearer token: a sensor whose certificate is in the receiver's CRL
is refused at the handshake, and with auth.token set, a sensor without the right token
is refused after HELLO. Both sides log why and nothing is stored."""
import subprocess
import time

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
    deadline = time.time() + 10
    while time.time() < deadline and "certificate revoked" not in rx.text():
        time.sleep(0.1)
    bad.stop()
    assert "client certificate refused: certificate revoked" in rx.text(), rx.text()
    assert "alert certificate revoked" in bad.text(), bad.text()
    assert "connected to" not in bad.text(), bad.text()
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
    deadline = time.time() + 10
    while time.time() < deadline and "bearer token refused" not in wrong.text():
        time.sleep(0.1)
    wrong.stop()
    assert "closed: bearer token refused" in rx.text(), rx.text()
    assert "receiver refused the session (code 3): bearer token refused" in wrong.text(), wrong.text()
    assert "guess" not in rx.text(), "the token must never be logged"
    assert segments(data, "s1") == []

    right = Proc([sensor, "-r", CAPTURE, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
                 tmp_path / "right.log", env={"PCAPLINE_UPLINK_TOKEN": "s3cret-token"})
    procs.append(right)
    assert right.wait(30) == 0, right.text()
    assert rx.stop() == 0
    assert len(segments(data, "s1")) == 1
