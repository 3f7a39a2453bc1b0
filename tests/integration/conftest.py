# SPDX-License-Identifier: BSD-2-Clause
"""Shared fixtures for the integration tests: binaries, certificates, processes.

Every test runs real processes (pcapline-receiver, pcapline-sensor, tcpdump,
tshark, curl ...) on loopback or in network namespaces it creates itself with
addresses in 198.18.0.0/15, and stops only the processes it started.
"""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("PLTEST_BUILD", ROOT / "build"))
SENSOR = BUILD / "pcapline-sensor"
RECEIVER = BUILD / "pcapline-receiver"
CERTS_TOOL = ROOT / "scripts" / "pcapline-certs"
DATA = ROOT / "tests" / "data"

# The receiver's HTTP API listens on a fixed port by default; tests that run several
# receivers at once would collide on it, so it is off unless a test turns it on
# (test_api.py).
os.environ.setdefault("PCAPLINE_API_LISTEN", "")
# Dissection waits while the CPUs are saturated (l4.defer_max), which on a test machine
# they often are: the tests that wait for dissection would wait on the machine's load.
# test_dissect.py::test_dissection_defers_to_saturated_cpus turns it on and tests it.
os.environ.setdefault("PCAPLINE_L4_DEFER_MAX", "0")


def sanitized(binary):
    """True for a binary built with ASan (make SAN=1): its memory figures are not judged."""
    return b"__asan_init" in Path(binary).read_bytes()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, host="127.0.0.1", timeout=10.0, netns=None):
    """Waits until something accepts on host:port (inside netns if given)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        cmd = ["ss", "-Hltn", "sport", "=", f":{port}"]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


class Proc:
    """A started process with its log file; stop() ends it by PID only."""

    def __init__(self, argv, log_path, netns=None, env=None):
        self.log_path = Path(log_path)
        if netns:
            argv = ["ip", "netns", "exec", netns] + [str(a) for a in argv]
        self.argv = [str(a) for a in argv]
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def wait(self, timeout=60):
        rc = self.p.wait(timeout)
        self.log.close()
        return rc

    def text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def binaries():
    for b in (SENSOR, RECEIVER):
        if not b.exists():
            pytest.fail(f"{b} is missing: run make first")
    return SENSOR, RECEIVER


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A throwaway CA, a receiver certificate valid for 127.0.0.1, localhost and the
    namespace addresses used by the tests, and sensor certificates s1..s3."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([CERTS_TOOL, d, "ca"], check=True, capture_output=True)
    subprocess.run([CERTS_TOOL, d, "receiver", "localhost", "127.0.0.1"]
                   + [f"198.18.{i}.2" for i in range(0, 8)], check=True, capture_output=True)
    for s in ("s1", "s2", "s3"):
        subprocess.run([CERTS_TOOL, d, "sensor", s], check=True, capture_output=True)
    return d


def tls_args(certs, who):
    """Command-line TLS flags for 'receiver' or a sensor id."""
    return ["--ca", certs / "ca.crt", "--cert", certs / f"{who}.crt", "--key", certs / f"{who}.key"]


@pytest.fixture
def procs():
    """Collects processes a test starts and stops whatever is left at the end."""
    started = []
    yield started
    for p in started:
        if p.p.poll() is None:
            p.stop(signal.SIGKILL)
