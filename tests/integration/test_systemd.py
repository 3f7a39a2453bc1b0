# SPDX-License-Identifier: BSD-2-Clause
"""Running under systemd: `make install` (DESTDIR, PREFIX, modes), the unit files
(`systemd-analyze verify`, `systemd-analyze security --offline=true`), the notify
protocol of both daemons against a datagram socket of the test's own (READY=1 once
listening or capturing, WATCHDOG=1 at half of WATCHDOG_USEC, STATUS= with the
counters, STOPPING=1 on SIGTERM), and the sensor started the way the unit starts it:
an ordinary user holding only CAP_NET_RAW (ambient), which it gives up once capturing.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import tempfile
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, DATA, RECEIVER, ROOT, SENSOR, Proc, free_port, sanitized, tls_args, wait_listening
from netns import capinfos_count, read_pcap, wait_for

UNITS = ("pcapline-sensor.service", "pcapline-receiver.service")
# systemd-analyze security's levels, best first.
LEVELS = ["SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS"]
REPLAY = DATA / "pcaps" / "dns-udp-queries.pcap"
WATCHDOG_USEC = 400000  # pings expected every 0.2 s


def make_install(*targets, **variables):
    """Runs `make TARGETS` on the tree with the build under test."""
    argv = ["make", "-s", "--no-print-directory", "-C", ROOT, *targets, f"BUILD={BUILD}"]
    if sanitized(SENSOR):
        argv.append("SAN=1")
    argv += [f"{k}={v}" for k, v in variables.items()]
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed: {r.stdout}{r.stderr}"
    return r


def tree(root):
    """{relative path: octal mode} of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = oct(p.lstat().st_mode & 0o7777)
    return out


# ---- make install --------------------------------------------------------------


def test_install_destdir(binaries, tmp_path):
    dest = tmp_path / "root"
    make_install("install", DESTDIR=dest, PREFIX="/usr")
    got = tree(dest)
    want = {
        "etc": "0o755", "etc/pcapline": "0o750",
        "etc/pcapline/sensor.yaml": "0o640", "etc/pcapline/receiver.yaml": "0o640",
        "usr": "0o755", "usr/bin": "0o755",
        "usr/bin/pcapline-sensor": "0o755", "usr/bin/pcapline-receiver": "0o755",
        "usr/bin/pcapline": "0o755", "usr/bin/pcapline-certs": "0o755",
        "usr/lib": "0o755", "usr/lib/systemd": "0o755", "usr/lib/systemd/system": "0o755",
        "usr/lib/systemd/system/pcapline-sensor.service": "0o644",
        "usr/lib/systemd/system/pcapline-receiver.service": "0o644",
        "usr/lib/sysusers.d": "0o755", "usr/lib/sysusers.d/pcapline.conf": "0o644",
        "usr/lib/tmpfiles.d": "0o755", "usr/lib/tmpfiles.d/pcapline.conf": "0o644",
        "usr/share": "0o755", "usr/share/doc": "0o755", "usr/share/doc/pcapline": "0o755",
        "usr/share/doc/pcapline/examples": "0o755",
        "usr/share/doc/pcapline/examples/sensor.yaml": "0o644",
        "usr/share/doc/pcapline/examples/receiver.yaml": "0o644",
    }
    # Other parts of the project may install more (e.g. a Wireshark extcap program);
    # everything named here must be exactly so.
    assert {k: got.get(k) for k in want} == want
    assert (dest / "usr/bin/pcapline-sensor").read_bytes() == SENSOR.read_bytes()
    unit = (dest / "usr/lib/systemd/system/pcapline-sensor.service").read_text()
    assert "ExecStart=/usr/bin/pcapline-sensor --config /etc/pcapline/sensor.yaml\n" in unit
    assert "/usr/local" not in unit
    assert (dest / "usr/lib/sysusers.d/pcapline.conf").read_text() == (ROOT / "systemd/pcapline.sysusers").read_text()

    # An edited configuration survives a second install; uninstall keeps it too.
    conf = dest / "etc/pcapline/sensor.yaml"
    conf.write_text("# mine\n")
    make_install("install", DESTDIR=dest, PREFIX="/usr")
    assert conf.read_text() == "# mine\n"
    make_install("uninstall", DESTDIR=dest, PREFIX="/usr")
    files = sorted(k for k, v in tree(dest).items() if (dest / k).is_file())
    assert files == ["etc/pcapline/receiver.yaml", "etc/pcapline/sensor.yaml"], files


# ---- the unit files ------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory, binaries):
    """make install with PREFIX and SYSCONFDIR in a temporary directory (no DESTDIR),
    so that every path the units name exists on this machine as written."""
    d = tmp_path_factory.mktemp("prefix")
    make_install("install", PREFIX=d / "usr", SYSCONFDIR=d / "etc")
    return d


def test_units_verify(installed):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    for u in UNITS:
        path = installed / "usr/lib/systemd/system" / u
        assert f"ExecStart={installed}/usr/bin/" in path.read_text()
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0, f"{u}: {out}"
        # Warnings (unknown keys, bad values) come with status 0: none allowed either.
        assert out == "", f"{u}: {out}"


def exposure(unit_path):
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", unit_path],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), m.group(2)


def test_units_security(installed):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    d = installed / "usr/lib/systemd/system"
    rcv = exposure(d / "pcapline-receiver.service")
    sen = exposure(d / "pcapline-sensor.service")
    print(f"\nexposure: receiver {rcv[0]} {rcv[1]}, sensor {sen[0]} {sen[1]}")
    assert LEVELS.index(rcv[1]) <= LEVELS.index("OK"), rcv
    assert LEVELS.index(sen[1]) <= LEVELS.index("MEDIUM"), sen
    # The figures the README gives.
    readme = (ROOT / "README.md").read_text()
    assert f"| pcapline-receiver.service | {rcv[0]} {rcv[1]} |" in readme, rcv
    assert f"| pcapline-sensor.service | {sen[0]} {sen[1]} |" in readme, sen


# ---- the notify protocol --------------------------------------------------------


class NotifySocket:
    """A datagram socket as systemd's notify socket: every message with its arrival
    time."""

    def __init__(self, path):
        """path: a file, or '@name' for an abstract name (no file permissions: any
        user may send to it)."""
        self.path = str(path)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind("\0" + self.path[1:] if self.path.startswith("@") else self.path)
        self.msgs = []

    def poll(self, timeout=0.05):
        self.s.settimeout(timeout)
        try:
            while True:
                data = self.s.recv(4096)
                self.msgs.append((time.monotonic(), data.decode()))
                self.s.settimeout(0)
        except (BlockingIOError, socket.timeout):
            pass

    def wait(self, pred, timeout, what):
        """The first message (time, text) for which pred(text) holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for t, m in self.msgs[seen:]:
                if pred(m):
                    return t, m
            seen = len(self.msgs)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s; got {[m for _, m in self.msgs][-8:]}")
            self.poll()

    def pings_after(self, t0):
        return [t for t, m in self.msgs if t >= t0 and "WATCHDOG=1" in m.split("\n")]

    def close(self):
        self.s.close()


def notify_env(ns):
    return {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "PCAPLINE_LOG_STATS_INTERVAL": "1s"}


def check_watchdog(ns, t_ready):
    """At least 6 pings after READY=1, spaced by half of WATCHDOG_USEC."""
    wait_for(lambda: (ns.poll(), len(ns.pings_after(t_ready)) >= 7)[1], 20, "7 WATCHDOG=1 pings")
    pings = ns.pings_after(t_ready)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    half = WATCHDOG_USEC / 2e6
    med = statistics.median(gaps)
    assert 0.75 * half <= med <= 1.5 * half, f"median gap {med:.3f} s, want {half} s: {gaps}"
    # Never as late as the whole interval systemd would act on (a loaded machine may
    # delay one ping, not skip two).
    assert max(gaps) < 2 * WATCHDOG_USEC / 1e6, gaps
    return med


def receiver_cmd(certs, port, repo):
    return [RECEIVER, "-l", f"127.0.0.1:{port}", "-d", repo] + tls_args(certs, "receiver")


def test_receiver_notify(binaries, certs, tmp_path, procs):
    ns = NotifySocket(tmp_path / "notify")
    port = free_port()
    rcv = Proc(receiver_cmd(certs, port, tmp_path / "repo"), tmp_path / "receiver.log", env=notify_env(ns))
    procs.append(rcv)
    t_ready, m = ns.wait(lambda m: "READY=1" in m.split("\n"), 30, "READY=1")
    # Ready means listening: the port accepts now, without waiting.
    wait_listening(port, timeout=0.5)
    assert "STATUS=0 sessions; stored 0 packets (0 bytes) from 0 sensors" in m, m
    med = check_watchdog(ns, t_ready)

    want = capinfos_count(REPLAY)
    sen = Proc([SENSOR, "-r", REPLAY, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"),
               tmp_path / "sensor.log")
    procs.append(sen)
    assert sen.wait(60) == 0, sen.text()
    ns.wait(lambda m: f"stored {want} packets" in m, 20, f"STATUS= with stored {want} packets")

    rcv.p.send_signal(signal.SIGTERM)
    _, m = ns.wait(lambda m: "STOPPING=1" in m.split("\n"), 20, "STOPPING=1")
    assert "STATUS=stopping (SIGTERM): " in m, m
    assert rcv.wait(30) == 0, rcv.text()
    ns.close()
    print(f"\nreceiver: watchdog median gap {med:.3f} s; {want} packets in STATUS=")


def udp_burst(port, n):
    """n datagrams to 127.0.0.1:port, which a socket of ours receives (no ICMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", port))
        for i in range(n):
            tx.sendto(b"pcapline-notify-%03d" % i, ("127.0.0.1", port))
        rx.settimeout(5)
        for _ in range(n):
            rx.recv(100)


def test_sensor_notify(binaries, certs, tmp_path, procs):
    ns = NotifySocket(tmp_path / "notify")
    port, udp = free_port(), free_port()
    rcv = Proc(receiver_cmd(certs, port, tmp_path / "repo"), tmp_path / "receiver.log")
    procs.append(rcv)
    wait_listening(port)
    sen = Proc([SENSOR, "-i", "lo", "-f", f"udp port {udp}", "-t", f"127.0.0.1:{port}"]
               + tls_args(certs, "s1"), tmp_path / "sensor.log", env=notify_env(ns))
    procs.append(sen)
    t_ready, m = ns.wait(lambda m: "READY=1" in m.split("\n"), 30, "READY=1")
    assert "STATUS=captured 0 packets" in m, m
    # Ready means capturing: what is sent right after READY=1 is captured, all of it.
    udp_burst(udp, 20)
    med = check_watchdog(ns, t_ready)
    ns.wait(lambda m: m.startswith("STATUS=captured 20 packets") and "acknowledged 20 packets" in m
            and "dropped 0 " in m, 20, "STATUS= with 20 packets captured and acknowledged")

    sen.p.send_signal(signal.SIGTERM)
    _, m = ns.wait(lambda m: "STOPPING=1" in m.split("\n"), 20, "STOPPING=1")
    assert "STATUS=stopping (SIGTERM): captured 20 packets" in m, m
    assert sen.wait(30) == 0, sen.text()
    ns.close()
    print(f"\nsensor: watchdog median gap {med:.3f} s")


def test_notify_socket_malformed(binaries, certs, tmp_path, procs):
    """A NOTIFY_SOCKET that is no address is said and ignored: the receiver runs."""
    port = free_port()
    rcv = Proc(receiver_cmd(certs, port, tmp_path / "repo"), tmp_path / "receiver.log",
               env={"NOTIFY_SOCKET": "not-a-socket"})
    procs.append(rcv)
    wait_listening(port)
    assert "NOTIFY_SOCKET: 'not-a-socket' is neither a path nor an abstract name" in rcv.text()
    assert rcv.stop() == 0


# ---- the unit's way of starting the sensor: ordinary user, CAP_NET_RAW only ------


def caps_of(pid):
    st = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap(?:Inh|Prm|Eff|Bnd|Amb)):\s+([0-9a-f]+)$", st, re.M)}


@pytest.fixture
def public_certs(certs):
    """A copy of the test certificates that user nobody can read (pytest's temporary
    directories are root's alone)."""
    dst = Path(tempfile.mkdtemp(prefix="pl-certs-"))
    os.chmod(dst, 0o755)
    for f in certs.iterdir():
        shutil.copy(f, dst / f.name)
        os.chmod(dst / f.name, 0o644)
    yield dst
    shutil.rmtree(dst)


CAP_NET_RAW = 1 << 13


@pytest.mark.parametrize("user", ["nobody", ""])
def test_sensor_ambient_net_raw(binaries, certs, public_certs, tmp_path, procs, user):
    """As under User=pcapline + AmbientCapabilities=CAP_NET_RAW: with sensor.user naming
    that same user (no switch needed, none possible) or unset, the sensor captures and
    then holds no capability at all."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    c = public_certs
    port, udp = free_port(), free_port()
    rcv = Proc(receiver_cmd(certs, port, tmp_path / "repo"), tmp_path / "receiver.log")
    procs.append(rcv)
    wait_listening(port)
    ns = NotifySocket(f"@pl-test-notify-{os.getpid()}-{udp}")
    env = {"PCAPLINE_SENSOR_USER": user, "NOTIFY_SOCKET": ns.path, "PCAPLINE_LOG_STATS_INTERVAL": "1s"}
    sen = Proc(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+net_raw",
                "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw", "--",
                SENSOR, "-i", "lo", "-f", f"udp port {udp}", "-t", f"127.0.0.1:{port}",
                "--ca", c / "ca.crt", "--cert", c / "s2.crt", "--key", c / "s2.key"],
               tmp_path / "sensor.log", env=env)
    procs.append(sen)
    try:
        ns.wait(lambda m: "READY=1" in m.split("\n"), 30, "READY=1")
    except TimeoutError:
        raise AssertionError(f"sensor did not start: rc={sen.p.poll()}\n{sen.text()}")
    caps = caps_of(sen.p.pid)
    assert caps["CapBnd"] == CAP_NET_RAW, caps
    assert (caps["CapInh"], caps["CapPrm"], caps["CapEff"], caps["CapAmb"]) == (0, 0, 0, 0), caps
    udp_burst(udp, 10)
    ns.wait(lambda m: m.startswith("STATUS=captured 10 packets") and "acknowledged 10 packets" in m, 20,
            "10 packets captured and acknowledged")
    assert sen.stop() == 0, sen.text()
    ns.close()


# ---- both units for real, in a booted Debian (systemd-nspawn) ----------------------

NSPAWN_ROOT = Path(os.environ.get("PLTEST_NSPAWN_ROOT", "/var/tmp/pcapline-nspawn/root"))
NSPAWN_SCRIPT = ROOT / "tests" / "integration" / "nspawn-image.sh"


def nspawn_skip_reason():
    if not shutil.which("systemd-nspawn"):
        return "systemd-nspawn is not installed (package systemd-container)"
    if not (NSPAWN_ROOT / "lib/systemd/systemd").exists():
        return f"no Debian tree to boot at {NSPAWN_ROOT}: make one with {NSPAWN_SCRIPT}"
    if sanitized(SENSOR):
        return "the binaries are built with ASan, whose runtime the Debian tree does not have"
    return None


class Machine:
    """A Debian tree booted with systemd-nspawn: own network namespace (only lo), a
    throwaway overlay over the tree, this build's `make install` bound on /usr/local
    and a configuration directory bound on /etc/pcapline."""

    def __init__(self, stage, log_path):
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(
            ["systemd-nspawn", "-D", NSPAWN_ROOT, "--volatile=overlay", "--private-network", "-b",
             "--register=no", "--keep-unit", "--console=passive", "-q",
             f"--bind-ro={stage}/usr/local:/usr/local", f"--bind={stage}/etc/pcapline:/etc/pcapline"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.init = None

    def run(self, *argv, check=True, timeout=60):
        """Runs argv inside the machine (its mount, PID and network namespaces)."""
        r = subprocess.run(["nsenter", "-t", str(self.init), "-m", "-u", "-i", "-n", "-p", "--", *map(str, argv)],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, argv))}: {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def read_bytes(self, path):
        return subprocess.run(["nsenter", "-t", str(self.init), "-m", "--", "cat", path],
                              capture_output=True, timeout=60, check=True).stdout

    def net(self, *argv, timeout=60):
        """Runs a program of this host in the machine's network namespace only."""
        return subprocess.run(["nsenter", "-t", str(self.init), "-n", "--", *map(str, argv)],
                              capture_output=True, text=True, timeout=timeout, check=True)

    def boot(self):
        def init_pid():
            if self.p.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.p.returncode}")
            r = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True)
            return r.stdout.split()[0] if r.stdout.strip() else None
        self.init = wait_for(init_pid, 30, "the machine's init")
        wait_for(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip()
                 in ("running", "degraded"), 90, "the machine to boot",
                 lambda: self.run("systemctl", "list-jobs", "--no-pager", check=False).stdout)

    def show(self, unit, *props):
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)  # the machine powers off
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def test_units_in_nspawn(binaries, certs, tmp_path):
    why = nspawn_skip_reason()
    if why:
        pytest.skip(why)
    stage = tmp_path / "stage"
    make_install("install", DESTDIR=stage, PREFIX="/usr/local")
    etc = stage / "etc/pcapline"
    for f in ("ca.crt", "receiver.crt", "receiver.key", "s1.crt", "s1.key"):
        shutil.copy(certs / f, etc / f)
    (etc / "receiver.yaml").write_text(
        "listen: ['127.0.0.1:47800']\n"
        "tls: {ca: /etc/pcapline/ca.crt, cert: /etc/pcapline/receiver.crt, key: /etc/pcapline/receiver.key}\n"
        "storage: {dir: /var/lib/pcapline}\napi: {listen: ''}\nlog: {stats_interval: 1s}\n")
    # sensor.user names the unit's own user: nothing to switch, capabilities to shed.
    (etc / "sensor.yaml").write_text(
        "sensor: {user: pcapline}\n"
        "capture: {interfaces: [lo], filter: 'udp port 5555'}\n"
        "uplink: {receivers: ['127.0.0.1:47800']}\n"
        "tls: {ca: /etc/pcapline/ca.crt, cert: /etc/pcapline/s1.crt, key: /etc/pcapline/s1.key}\n"
        "log: {stats_interval: 1s}\n")
    m = Machine(stage, tmp_path / "machine.log")
    try:
        m.boot()
        # What the README says to do after `make install`.
        m.run("systemd-sysusers")
        m.run("systemd-tmpfiles", "--create")
        m.run("systemctl", "daemon-reload")
        assert m.run("id", "pcapline").stdout.startswith("uid=")
        # Type=notify: start returns once the daemon said READY=1, or fails.
        for u in ("pcapline-receiver", "pcapline-sensor"):
            r = m.run("systemctl", "start", u, check=False, timeout=90)
            assert r.returncode == 0, (r.stderr + m.run("journalctl", "-u", u, "--no-pager", check=False).stdout
                                       + m.run("ls", "-la", "/etc/pcapline", check=False).stdout)
        for u in ("pcapline-receiver", "pcapline-sensor"):
            st = m.show(u, "ActiveState", "SubState", "WatchdogUSec", "User", "MainPID")
            assert (st["ActiveState"], st["SubState"]) == ("active", "running"), (u, st)
            assert st["WatchdogUSec"] == "30s", st
        pid = m.show("pcapline-sensor", "MainPID")["MainPID"]
        caps = {k: int(v, 16) for k, v in re.findall(
            r"^(Cap(?:Inh|Prm|Eff|Amb)):\s+([0-9a-f]+)$", m.run("cat", f"/proc/{pid}/status").stdout, re.M)}
        assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}, caps
        # 30 datagrams on the machine's loopback, which the sensor captures and ships.
        m.net("/usr/bin/python3", "-c",
              "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 5555))\n"
              "[s.sendto(b'nspawn %d' % i, ('127.0.0.1', 5555)) for i in range(30)]\n"
              "[r.recv(64) for i in range(30)]\n")
        wait_for(lambda: "captured 30 packets" in m.show("pcapline-sensor", "StatusText")["StatusText"]
                 and "acknowledged 30 packets" in m.show("pcapline-sensor", "StatusText")["StatusText"], 30,
                 "the sensor's STATUS= to show 30 packets acknowledged",
                 lambda: m.show("pcapline-sensor", "StatusText")["StatusText"])
        wait_for(lambda: "stored 30 packets" in m.show("pcapline-receiver", "StatusText")["StatusText"], 30,
                 "the receiver's STATUS= to show 30 packets stored",
                 lambda: m.show("pcapline-receiver", "StatusText")["StatusText"])
        for u in ("pcapline-sensor", "pcapline-receiver"):
            m.run("systemctl", "stop", u, timeout=90)
            st = m.show(u, "Result", "ExecMainStatus", "ActiveState")
            assert st == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, (u, st)
        # The closed segments hold exactly the 30 datagrams.
        segdir = "/var/lib/pcapline/sensors/s1/segments"
        segs = m.run("ls", segdir).stdout.split()
        assert segs and all(n.endswith(".pcap") for n in segs), segs
        n = 0
        for name in segs:
            local = tmp_path / name
            local.write_bytes(m.read_bytes(f"{segdir}/{name}"))
            recs = read_pcap(local).records
            assert all(b"nspawn " in r.data for r in recs), name
            n += len(recs)
            assert capinfos_count(local) == len(recs)
        assert n == 30, segs
        journal = m.run("journalctl", "-u", "pcapline-sensor", "--no-pager").stdout
        assert "running as user pcapline" in journal or "captured 30 packets" in journal, journal
    finally:
        m.stop()
