# SPDX-License-Identifier: BSD-2-Clause
"""Mutual TLS between sensor and receiver: every wrong certificate is refused, both
ends say why in their logs, and nothing from a refused peer is stored. A sensor refused
at start (no session ever welcomed) stops at once with status 2, naming the reason.

Each test starts its own receiver on loopback with its own data directory.
"""
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CERTS_TOOL, DATA, Proc, free_port, tls_args, wait_listening

REPLAY = DATA / "pcaps" / "dns-udp-queries.pcap"  # 38 records, one interface


def wait_log(proc, pattern, count=1, timeout=10.0):
    """Waits until pattern (regex) occurs count times in proc's log; returns the log."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        text = proc.text()
        if len(rx.findall(text)) >= count:
            return text
        if time.time() > deadline:
            raise AssertionError(f"{pattern!r} x{count} not in {proc.log_path.name} within {timeout}s:\n{text}")
        time.sleep(0.05)


def stored_files(data_dir):
    """Every segment file (open or closed) of any sensor under the repository root."""
    root = Path(data_dir) / "sensors"
    return sorted(p for p in root.glob("*/segments/*") if p.is_file()) if root.exists() else []


def start_receiver(binary, tmp_path, procs, tls):
    port = free_port()
    data_dir = tmp_path / "data"
    rx = Proc([binary, "-l", f"127.0.0.1:{port}", "-d", data_dir] + tls, tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)
    return rx, port, data_dir


def start_sensor(binary, tmp_path, procs, port, tls, name="sensor.log"):
    # A long drain timeout: a refused replay must stop because it was refused, not
    # because the file ended and the drain gave up.
    s = Proc([binary, "-r", REPLAY, "-t", f"127.0.0.1:{port}"] + tls, tmp_path / name,
             env={"PCAPLINE_UPLINK_DRAIN_TIMEOUT": "60s"})
    procs.append(s)
    return s


def refused_at_start(sx, reason):
    """The sensor exits with status 2 within seconds, its last error naming reason."""
    t0 = time.time()
    assert sx.wait(15) == 2, sx.text()
    assert time.time() - t0 < 10, f"a refused sensor must stop at once, took {time.time() - t0:.1f} s"
    slog = sx.text()
    assert re.search(r"error: uplink refused: " + reason + r"; retrying cannot help: check .*"
                     r"\(exiting with status 2\)", slog), slog
    assert "connected to" not in slog and "lost" not in slog, slog
    return slog


# --------------------------------------------------------------------------------
# Certificates the session's `certs` fixture does not provide.

@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A second, unrelated CA with its own sensor 's1' (same CN as the real one)."""
    d = tmp_path_factory.mktemp("other-ca")
    subprocess.run([CERTS_TOOL, d, "ca"], check=True, capture_output=True)
    subprocess.run([CERTS_TOOL, d, "sensor", "s1"], check=True, capture_output=True)
    return d


CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ sensor_ext ]
extendedKeyUsage = clientAuth
keyUsage = digitalSignature
"""


@pytest.fixture(scope="module")
def expired(certs, tmp_path_factory):
    """Sensor 'old1', signed by the right CA, valid only during 2020."""
    d = tmp_path_factory.mktemp("expired")
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(CA_CNF.format(dir=d))
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=old1", "-keyout", d / "old1.key", "-out", d / "old1.csr"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-notext", "-config", d / "ca.cnf",
                    "-cert", certs / "ca.crt", "-keyfile", certs / "ca.key",
                    "-startdate", "20200101000000Z", "-enddate", "20210101000000Z",
                    "-extensions", "sensor_ext", "-in", d / "old1.csr", "-out", d / "old1.crt"],
                   check=True, capture_output=True)
    out = subprocess.run(["openssl", "verify", "-CAfile", certs / "ca.crt", d / "old1.crt"],
                         capture_output=True, text=True)
    assert "expired" in out.stdout + out.stderr, out  # right CA, only the dates are wrong
    return d


@pytest.fixture(scope="module")
def wrong_name(certs, tmp_path_factory):
    """A receiver certificate from the right CA, valid only for other.example."""
    d = tmp_path_factory.mktemp("wrong-name")
    for f in ("ca.crt", "ca.key"):
        (d / f).write_bytes((certs / f).read_bytes())
    subprocess.run([CERTS_TOOL, d, "receiver", "other.example"], check=True, capture_output=True)
    return d


# --------------------------------------------------------------------------------

def test_client_without_certificate_is_refused(binaries, certs, procs, tmp_path):
    _, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(certs, "receiver"))
    # -ign_eof: keep reading until the server ends the connection, so the alert is seen.
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", certs / "ca.crt",
                        "-ign_eof"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    client = r.stdout + r.stderr
    assert r.returncode != 0, client
    assert re.search(r"alert certificate required", client), client
    log = wait_log(rx, r"TLS handshake failed: peer did not return a certificate")
    assert "connected from" not in log
    assert stored_files(data_dir) == []
    assert rx.p.poll() is None


def test_sensor_from_other_ca_is_refused_at_start(binaries, certs, other_ca, procs, tmp_path):
    sensor, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(certs, "receiver"))
    # Trusts the right CA for the receiver, but presents a certificate of another CA.
    tls = ["--ca", certs / "ca.crt", "--cert", other_ca / "s1.crt", "--key", other_ca / "s1.key"]
    sx = start_sensor(sensor, tmp_path, procs, port, tls)
    refused_at_start(sx, r".*unknown ca")
    rlog = wait_log(rx, r"TLS handshake failed: client certificate refused: unable to get local issuer certificate")
    assert "connected from" not in rlog, rlog
    assert stored_files(data_dir) == []
    assert rx.p.poll() is None


def test_expired_sensor_certificate_is_refused(binaries, certs, expired, procs, tmp_path):
    sensor, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(certs, "receiver"))
    tls = ["--ca", certs / "ca.crt", "--cert", expired / "old1.crt", "--key", expired / "old1.key"]
    sx = start_sensor(sensor, tmp_path, procs, port, tls)
    refused_at_start(sx, r".*certificate expired")
    rlog = wait_log(rx, r"TLS handshake failed: client certificate refused: certificate has expired")
    assert "connected from" not in rlog, rlog
    assert stored_files(data_dir) == []
    assert rx.p.poll() is None


def test_receiver_certificate_for_another_name_is_refused(binaries, certs, wrong_name, procs, tmp_path):
    sensor, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(wrong_name, "receiver"))
    sx = start_sensor(sensor, tmp_path, procs, port, tls_args(certs, "s1"))
    # The sensor connects to 127.0.0.1; the certificate names only other.example.
    refused_at_start(sx, r"TLS handshake failed: receiver certificate: IP address mismatch")
    rlog = wait_log(rx, r"TLS handshake failed: .*bad certificate")
    assert "connected from" not in rlog, rlog
    assert stored_files(data_dir) == []
    assert rx.p.poll() is None


def test_right_certificate_connects(binaries, certs, procs, tmp_path):
    """Positive control for the refusals above: same set-up, right certificates."""
    sensor, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(certs, "receiver"))
    sx = Proc([sensor, "-r", REPLAY, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sensor.log")
    procs.append(sx)
    assert sx.wait(30) == 0, sx.text()
    assert re.search(rf"uplink: connected to 127\.0\.0\.1:{port} \(TLS\)", sx.text()), sx.text()
    wait_log(rx, r"info: sensor s1 connected from 127\.0\.0\.1:\d+")
    deadline = time.time() + 10
    while time.time() < deadline:
        files = stored_files(data_dir)
        if files and not any(p.name.startswith(".open-") for p in files):
            break
        time.sleep(0.05)
    assert [p.parent for p in files] == [data_dir / "sensors" / "s1" / "segments"], files
    assert files[0].name.endswith("-if0.pcap")
    assert rx.stop() == 0, rx.text()


# --------------------------------------------------------------------------------
# Certificates from the right CA whose subject does not name exactly one usable sensor id.

SENSOR_EXT = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n"


def sign_csr(certs, d, name, req_args, cnf=None):
    """Key + CSR with openssl req (req_args give the subject), signed by the test CA the
    way pcapline-certs signs: openssl x509 -req keeps the subject exactly as requested."""
    (d / "sensor.ext").write_text(SENSOR_EXT)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr"] + (["-config", cnf] if cnf else [])
                   + req_args, check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", d / f"{name}.csr", "-CA", certs / "ca.crt",
                    "-CAkey", certs / "ca.key", "-CAcreateserial", "-CAserial", d / "ca.srl", "-days", "2",
                    "-extfile", d / "sensor.ext", "-out", d / f"{name}.crt"], check=True, capture_output=True)


def sign_with_cryptography(certs, d, name, cn):
    """A certificate whose CN openssl req cannot write (an embedded NUL)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    (d / f"{name}.crt").write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))


@pytest.fixture(scope="module")
def odd_cns(certs, tmp_path_factory):
    d = tmp_path_factory.mktemp("odd-cn")
    # Two RDNs, each a CN: "CN = s1, CN = evil2" (s1 is a real sensor of this CA).
    sign_csr(certs, d, "two_cn", ["-subj", "/CN=s1/CN=evil2"])
    # One multi-valued RDN holding two CNs: "CN = s1 + CN = evil2".
    sign_csr(certs, d, "multi_rdn", ["-multivalue-rdn", "-subj", "/CN=s1+CN=evil2"])
    # Raw byte 0xff in a T61String (string_mask nombstr keeps the bytes as given): not UTF-8.
    (d / "nombstr.cnf").write_text("[req]\ndistinguished_name = dn\nstring_mask = nombstr\n[dn]\n")
    sign_csr(certs, d, "not_utf8", ["-subj", "/CN=s1\xff"], cnf=d / "nombstr.cnf")
    sign_with_cryptography(certs, d, "nul_cn", "s1\x00evil2")
    for name in ("two_cn", "multi_rdn", "not_utf8", "nul_cn"):
        v = subprocess.run(["openssl", "verify", "-CAfile", certs / "ca.crt", d / f"{name}.crt"],
                           capture_output=True, text=True)
        assert v.returncode == 0, (name, v.stdout, v.stderr)  # right CA: only the subject is odd
    return d


@pytest.mark.parametrize("name, reason", [
    ("two_cn", "certificate subject has more than one CN"),
    ("multi_rdn", "certificate subject has more than one CN"),
    ("not_utf8", "certificate CN is empty, too long, not a text string, or has bytes outside printable ASCII"),
    ("nul_cn", "certificate CN is empty, too long, not a text string, or has bytes outside printable ASCII"),
])
def test_certificate_without_one_clear_cn_is_refused(binaries, certs, odd_cns, procs, tmp_path, name, reason):
    """A certificate of the right CA whose subject holds CN=s1 and a second CN (or a CN
    that is not clean text) identifies no sensor: the receiver must refuse it with the
    reason, not take the first CN and store the packets as s1's."""
    sensor, receiver = binaries
    rx, port, data_dir = start_receiver(receiver, tmp_path, procs, tls_args(certs, "receiver"))
    # --id s1: the sensor would otherwise refuse to start without a clear CN (tested below).
    tls = ["--ca", certs / "ca.crt", "--cert", odd_cns / f"{name}.crt", "--key", odd_cns / f"{name}.key",
           "--id", "s1"]
    sx = start_sensor(sensor, tmp_path, procs, port, tls)
    rlog = wait_log(rx, r"client certificate refused: " + re.escape(reason), count=2, timeout=20)
    sx.stop(signal.SIGKILL)
    assert "connected from" not in rlog, rlog
    assert "sensor s1" not in rlog, rlog
    assert stored_files(data_dir) == []
    assert rx.p.poll() is None
    assert rx.stop() == 0, rx.text()
    assert stored_files(data_dir) == []


def test_sensor_without_one_clear_cn_and_no_id_does_not_start(binaries, certs, odd_cns, procs, tmp_path):
    """The sensor takes its id from the CN only when there is exactly one."""
    sensor, _ = binaries
    tls = ["--ca", certs / "ca.crt", "--cert", odd_cns / "two_cn.crt", "--key", odd_cns / "two_cn.key"]
    sx = Proc([sensor, "-r", REPLAY, "-t", "127.0.0.1:9"] + tls, tmp_path / "sensor.log")
    procs.append(sx)
    assert sx.wait(20) == 2, sx.text()
    assert "sensor.id: not set and no identity in the certificate to take it from: " \
           "certificate subject has more than one CN (ambiguous identity)" in sx.text(), sx.text()
