# SPDX-License-Identifier: BSD-2-Clause
"""Start-up errors (exit code 2, exactly one line on stderr that names the problem),
--check-config on valid and documented configurations, and a hostile-input smoke
test: garbage on the receiver's port must not bring it down.
"""
import random
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

import test_replay as replay  # the test reader and tshark helpers
from conftest import DATA, RECEIVER, ROOT, SENSOR, Proc, free_port, tls_args, wait_listening

CONFIG = ROOT / "config"


def run(argv, env=None, timeout=15):
    """Runs a program that must stop by itself; returns (rc, stdout, stderr lines)."""
    import os
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PCAPLINE_")}
    full_env.update(env or {})
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=full_env, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.splitlines()


def assert_startup_error(argv, *needles, env=None):
    """Exit code 2 and one stderr line containing every needle (case-insensitive)."""
    rc, out, err = run(argv, env=env)
    assert rc == 2, f"exit {rc}, stderr: {err}"
    assert len(err) == 1, f"expected exactly one line on stderr, got {len(err)}: {err}"
    for n in needles:
        assert n.lower() in err[0].lower(), f"{n!r} not in {err[0]!r}"
    return err[0]


def sensor_live(certs, *extra):
    """A live-capture sensor command line whose only problem is in `extra`."""
    return [SENSOR, "-t", "127.0.0.1:9"] + tls_args(certs, "s1") + list(extra)


def receiver_cmd(certs, tmp_path, *extra):
    return [RECEIVER, "-l", "127.0.0.1:0", "-d", tmp_path / "data"] + tls_args(certs, "receiver") + list(extra)


# --------------------------------------------------------------------------------
# Start-up errors.

def test_invalid_bpf_filter(binaries, certs):
    line = assert_startup_error(sensor_live(certs, "-i", "lo", "-f", "tcp port"), "filter", "tcp port")
    assert "error" in line


def test_invalid_bpf_filter_from_environment(binaries, certs):
    assert_startup_error(sensor_live(certs, "-i", "lo"), "filter", "port tcp udp",
                         env={"PCAPLINE_CAPTURE_FILTER": "port tcp udp"})


def test_missing_interface(binaries, certs):
    assert_startup_error(sensor_live(certs, "-i", "nosuch0"), "interface", "nosuch0")


@pytest.mark.parametrize("who", ["sensor", "receiver"])
def test_config_unknown_key(binaries, certs, tmp_path, who):
    cfg = tmp_path / f"{who}.yaml"
    if who == "sensor":
        cfg.write_text("# comment\ncapture:\n  interfaces: [lo]\n  snaplenn: 100\n")
        argv = sensor_live(certs, "-c", cfg)
    else:
        cfg.write_text("storage:\n  segment_size: 1MiB\n\n  bogus_key: yes\n")
        argv = receiver_cmd(certs, tmp_path, "-c", cfg)
    line = assert_startup_error(argv, "unknown key", "snaplenn" if who == "sensor" else "bogus_key")
    # file and line: "FILE:LINE: unknown key 'section.key'"
    want_line = 4
    assert re.search(rf"{re.escape(str(cfg))}:{want_line}\b", line), line


@pytest.mark.parametrize("who,yaml,key,line_no", [
    ("sensor", "capture:\n  interfaces: [lo]\n  snaplen: lots\n", "capture.snaplen", 3),
    ("sensor", "capture:\n  interfaces: [lo]\n  promiscuous: sometimes\n", "capture.promiscuous", 3),
    ("sensor", "uplink:\n  window: [1, 2]\n", "uplink.window", 2),
    ("receiver", "storage:\n  segment_time: soon\n", "storage.segment_time", 2),
    ("receiver", "limits:\n  max_sessions: -5\n", "limits.max_sessions", 2),
])
def test_config_wrong_type(binaries, certs, tmp_path, who, yaml, key, line_no):
    cfg = tmp_path / f"{who}.yaml"
    cfg.write_text(yaml)
    argv = sensor_live(certs, "-c", cfg) if who == "sensor" else receiver_cmd(certs, tmp_path, "-c", cfg)
    line = assert_startup_error(argv, key)
    assert f"{cfg}:{line_no}" in line, line


# Sensor and receiver may share one environment, so a PCAPLINE_ variable is an error
# when it looks like a misspelling of one of the program's own settings (one edit
# away, see load_env() in shared/config.c); the other program's settings are not.
@pytest.mark.parametrize("who,var", [
    ("sensor", "PCAPLINE_CAPTUER_FILTER"),
    ("sensor", "PCAPLINE_TLS_CERTS"),
    ("receiver", "PCAPLINE_STORAGE_DIRR"),
    ("receiver", "PCAPLINE_LISTN"),
])
def test_unknown_environment_variable(binaries, certs, tmp_path, who, var):
    argv = sensor_live(certs, "-i", "lo") if who == "sensor" else receiver_cmd(certs, tmp_path)
    assert_startup_error(argv, var, "unknown", env={var: "x"})


@pytest.mark.parametrize("who,var,value", [
    ("sensor", "PCAPLINE_STORAGE_DIR", "/nonexistent"),
    ("receiver", "PCAPLINE_CAPTURE_FILTER", "tcp port"),
])
def test_other_programs_environment_is_not_an_error(binaries, certs, tmp_path, who, var, value):
    if who == "sensor":
        argv = sensor_live(certs, "-i", "lo", "--check-config")
    else:
        argv = receiver_cmd(certs, tmp_path, "--check-config")
    rc, out, err = run(argv, env={var: value})
    assert rc == 0, err
    assert "configuration OK" in out


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
@pytest.mark.parametrize("who", ["sensor", "receiver"])
def test_missing_tls_file(binaries, certs, tmp_path, who, which):
    missing = tmp_path / f"nosuch-{which}.pem"
    if who == "sensor":
        base = tls_args(certs, "s1")
        argv = [SENSOR, "-i", "lo", "-t", "127.0.0.1:9"]
    else:
        base = tls_args(certs, "receiver")
        argv = [RECEIVER, "-l", "127.0.0.1:0", "-d", tmp_path / "data"]
    i = base.index(f"--{which}")
    base[i + 1] = missing
    assert_startup_error(argv + base, str(missing))


def test_missing_capture_file(binaries, certs, tmp_path):
    missing = tmp_path / "nosuch.pcap"
    assert_startup_error([SENSOR, "-r", missing, "-t", "127.0.0.1:9"] + tls_args(certs, "s1"), str(missing))


def test_not_a_capture_file(binaries, certs):
    manifest = DATA / "pcaps" / "MANIFEST.md"
    assert_startup_error([SENSOR, "-r", manifest, "-t", "127.0.0.1:9"] + tls_args(certs, "s1"),
                         str(manifest), "pcap")


# One host:port parser for uplink.receivers, listen and api.listen: a port is digits in
# 1..65535 (0 for listen: any free port), never taken modulo 65536 as getaddrinfo() does.
@pytest.mark.parametrize("who,arg,needles", [
    ("receiver", "127.0.0.1:99999", ["listen: '127.0.0.1:99999'", "port '99999' is not a number in 0..65535"]),
    ("receiver", "127.0.0.1:-1", ["listen: '127.0.0.1:-1'", "port '-1' is not a number in 0..65535"]),
    ("receiver", "127.0.0.1", ["listen: '127.0.0.1' is not host:port"]),
    ("sensor", "127.0.0.1:+80", ["uplink.receivers: '127.0.0.1:+80'", "port '+80' is not a number in 1..65535"]),
    ("sensor", "[]:80", ["uplink.receivers: '[]:80' is not host:port (the host is empty)"]),
    ("sensor", "127.0.0.1", ["uplink.receivers: '127.0.0.1' is not host:port"]),
])
def test_bad_host_port(binaries, certs, tmp_path, who, arg, needles):
    if who == "receiver":
        argv = [RECEIVER, "-l", arg, "-d", tmp_path / "data"] + tls_args(certs, "receiver")
    else:
        argv = [SENSOR, "-r", DATA / "pcaps" / "amqp-0-9-1.pcap", "-t", arg, "--check-config"] + tls_args(certs, "s1")
    assert_startup_error(argv, *needles)


# One sensor id rule: a leading '.' (a hidden folder on the receiver) is refused at
# start-up, not only later in HELLO.
def test_sensor_id_leading_dot(binaries, certs):
    assert_startup_error([SENSOR, "-r", DATA / "pcaps" / "amqp-0-9-1.pcap", "-t", "127.0.0.1:9", "--id", ".hidden",
                          "--check-config"] + tls_args(certs, "s1"),
                         "sensor.id: '.hidden'", "not starting with '.'")


# --------------------------------------------------------------------------------
# --check-config.

def test_check_config_valid(binaries, certs, tmp_path):
    s = tmp_path / "sensor.yaml"
    s.write_text(f"""capture:
  interfaces: [lo]
  filter: "tcp port 80"
  snaplen: 1500
uplink:
  receivers: ["127.0.0.1:47800", "localhost:47801"]
  window: 4MiB
tls:
  ca: {certs / 'ca.crt'}
  cert: {certs / 's1.crt'}
  key: {certs / 's1.key'}
""")
    rc, out, err = run([SENSOR, "-c", s, "--check-config"])
    assert rc == 0, err
    assert "configuration OK" in out
    assert "capture.snaplen = 1500" in out and "uplink.window = 4194304" in out, out

    r = tmp_path / "receiver.yaml"
    r.write_text(f"""listen: ["127.0.0.1:47800"]
tls:
  ca: {certs / 'ca.crt'}
  cert: {certs / 'receiver.crt'}
  key: {certs / 'receiver.key'}
storage:
  dir: {tmp_path / 'data'}
  segment_size: 1MiB
""")
    rc, out, err = run([RECEIVER, "-c", r, "--check-config"])
    assert rc == 0, err
    assert "configuration OK" in out
    assert "storage.segment_size = 1048576" in out, out


def test_documented_sensor_config_parses(binaries, certs):
    rc, out, err = run([SENSOR, "-c", CONFIG / "sensor.yaml", "-i", "lo", "--check-config"]
                       + tls_args(certs, "s1"))
    assert rc == 0, err
    assert "configuration OK" in out
    assert "capture.interfaces = [lo]" in out, out


def test_documented_receiver_config_parses(binaries, certs):
    rc, out, err = run([RECEIVER, "-c", CONFIG / "receiver.yaml", "--check-config"]
                       + tls_args(certs, "receiver"))
    assert rc == 0, err
    assert "configuration OK" in out


# --------------------------------------------------------------------------------
# Hostile input.

def client_hello():
    """The bytes of a real TLS ClientHello (Python's ssl, never sent by it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[0] == 0x16  # handshake record
    return hello


def drain_until_closed(sock, timeout=10.0):
    """Reads until the peer closes; True if it did within timeout."""
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def send_raw(port, chunks):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for c in chunks:
            try:
                s.sendall(c)
            except (ConnectionResetError, BrokenPipeError):
                return True
        return drain_until_closed(s)


def send_authenticated(port, certs, payload):
    """A TLS session with the real sensor certificate that then speaks garbage."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs / "ca.crt")
    ctx.load_cert_chain(certs / "s2.crt", certs / "s2.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            try:
                s.sendall(payload)
                s.settimeout(10)
                while s.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                pass
            return True


def pcln(type_, length, flags=0, magic=0x50434C4E, version=1):
    return struct.pack(">IBBHII", magic, version, type_, flags, length, 0)


def test_receiver_survives_hostile_input(binaries, certs, procs, tmp_path):
    sensor, receiver = binaries
    port = free_port()
    data_dir = tmp_path / "data"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data_dir] + tls_args(certs, "receiver"),
              tmp_path / "receiver.log")
    procs.append(rx)
    wait_listening(port)

    rnd = random.Random(20240611)
    junk = bytes(rnd.getrandbits(8) for _ in range(64 * 1024))
    hello = client_hello()

    # Connections the receiver must keep serving around: idle and half-handshake.
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(hello[: len(hello) // 2])

    cases = {
        "plain garbage": [b"\x00\xffGARBAGE\r\n" * 1000],
        "random bytes": [junk],
        "http request": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        "pcln frame in clear": [pcln(1, 59) + b"\0" * 59],
        "client hello then garbage": [hello, b"\x17\x03\x03\x00\x20" + junk[:32], junk],
        "client hello twice": [hello, hello],
        "huge tls record header": [b"\x16\x03\x01\xff\xff" + junk[:1000]],
    }
    for name, chunks in cases.items():
        assert send_raw(port, chunks), f"{name}: receiver kept the connection open"
        assert rx.p.poll() is None, f"receiver died after {name}:\n{rx.text()}"

    # Authenticated (valid s2 certificate), then garbage at the protocol level.
    frames = {
        "random after handshake": junk[:4096],
        "bad magic": pcln(1, 0, magic=0xDEADBEEF),
        "frame far above max_frame": pcln(3, 0xFFFFFFF0) + junk[:4096],
        "batch before hello": pcln(3, 64, flags=1) + junk[:64],
        "hello with garbage payload": pcln(1, 59) + junk[:59],
        "unknown type": pcln(200, 0),
    }
    for name, payload in frames.items():
        assert send_authenticated(port, certs, payload), name
        assert rx.p.poll() is None, f"receiver died after {name}:\n{rx.text()}"

    # Still serving: a proper sensor's replay is stored completely, while the idle
    # and half-handshake connections are still open.
    capture = DATA / "pcaps" / "http-keepalive-browse.pcap"
    sx = Proc([sensor, "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
              tmp_path / "sensor.log")
    procs.append(sx)
    assert sx.wait(30) == 0, sx.text()
    stored = replay.wait_closed(data_dir / "sensors" / "s1" / "segments")
    assert len(stored) == 1, stored
    want = replay.read_capture(capture).recs
    got = replay.read_capture(stored[0]).recs
    assert [(r.ts_ns, r.orig_len, r.digest) for r in got] == [(r.ts_ns, r.orig_len, r.digest) for r in want]
    # Nothing was stored for the authenticated garbage sessions (sensor id s2).
    assert not (data_dir / "sensors" / "s2" / "segments").exists() or \
        not any((data_dir / "sensors" / "s2" / "segments").iterdir())

    idle.close()
    slow.close()
    log = rx.text()
    assert "sensor s1 connected from" in log, log
    assert rx.stop() == 0, log
