# SPDX-License-Identifier: BSD-2-Clause
"""The first minutes of a user: every command answers --help on standard output with
exit 0 and describes its own options only; a command that finds no repository says
where it looked and how to point elsewhere; a time window that matches nothing says so
(a replayed capture keeps its own timestamps); the example sensor configuration names
the files pcapline-certs writes."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, CERTS_TOOL, DATA, ROOT, Proc, free_port, tls_args, wait_listening

PCAPLINE = BUILD / "pcapline"
REPLAY = DATA / "pcaps" / "dns-udp-queries.pcap"  # 38 records, 2005-03-30, one interface

# Each command's long options, as its usage lists them.
OPTIONS = {
    "export": {"--from", "--to", "--dir", "--sensor", "--filter", "--gzip-level"},
    "snapshot": {"--from", "--to", "--dir", "--sensor", "--filter", "--gzip-level"},
    "import": {"--dir", "--max-entry-size", "--max-entries", "--segment-size"},
    "conns": {"--dir", "--sensor", "--from", "--to", "--flow", "--conn", "--limit", "--json", "--stats"},
    "flows": {"--dir", "--sensor", "--from", "--to", "--flow", "--limit", "--json"},
    "pcap": {"--conn", "--flow", "--dir"},
    "follow": {"--conn", "--dir"},
    "reindex": {"--from", "--to", "--sensor", "--dir"},
    "l4": {"--udp", "--max-conns", "--no-timeouts"},
}
ALL = set().union(*OPTIONS.values())
DAEMONS = {
    "pcapline-sensor": ({"--config", "--iface", "--filter", "--file", "--snaplen", "--to", "--id", "--ca", "--cert",
                         "--key", "--insecure", "--log-level", "--check-config", "--version"},
                        {"--listen", "--dir", "--out", "--crl", "--names-at"}),
    "pcapline-receiver": ({"--config", "--listen", "--dir", "--out", "--ca", "--cert", "--key", "--crl", "--insecure",
                           "--log-level", "--check-config", "--names-at", "--version"},
                          {"--iface", "--filter", "--file", "--snaplen", "--to", "--id"}),
}


def has_opt(text, opt):
    return re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text) is not None


def run(argv, env=None, timeout=60):
    full = dict(os.environ)
    full.pop("PCAPLINE_STORAGE_DIR", None)
    full.update(env or {})
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=full, timeout=timeout)


@pytest.fixture(scope="module")
def cli():
    if not PCAPLINE.exists():
        pytest.fail(f"{PCAPLINE} is missing: run make first")
    return PCAPLINE


@pytest.mark.parametrize("cmd", sorted(OPTIONS))
def test_every_command_answers_help(cli, cmd):
    # The help flag wins over anything else on the line, even a missing repository.
    for argv in ([cmd, "--help"], [cmd, "-h"], ["help", cmd], [cmd, "--dir", "/nonexistent/x", "--help"]):
        r = run([cli] + argv)
        assert r.returncode == 0, (argv, r.returncode, r.stderr)
        assert r.stderr == "", (argv, r.stderr)
        assert r.stdout.startswith(f"usage: pcapline {cmd} "), (argv, r.stdout)
        for opt in OPTIONS[cmd]:
            assert has_opt(r.stdout, opt), (argv, opt, r.stdout)
        for opt in ALL - OPTIONS[cmd]:
            assert not has_opt(r.stdout, opt), (argv, f"{opt} is another command's", r.stdout)
        # The notes on times and on DIR only where the command takes them.
        assert ("Times (T):" in r.stdout) == ("--from" in OPTIONS[cmd]), r.stdout
        assert ("DIR (the receiver's storage.dir) defaults to" in r.stdout) == \
            bool(re.search(r"--dir DIR\b", r.stdout)), r.stdout


def test_global_help_lists_every_command(cli):
    for flag in ("--help", "-h", "help"):
        r = run([cli, flag])
        assert r.returncode == 0 and r.stderr == "", (flag, r)
        for cmd in OPTIONS:
            assert f"  pcapline {cmd} " in r.stdout, (flag, cmd)
    r = run([cli, "help", "nosuch"])
    assert r.returncode == 2 and "unknown command 'nosuch'" in r.stderr, r


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_daemons_answer_help(binaries, daemon):
    own, others = DAEMONS[daemon]
    for flag in ("--help", "-h"):
        r = run([BUILD / daemon, flag])
        assert r.returncode == 0, (flag, r.stderr)
        assert r.stderr == "", r.stderr
        assert r.stdout.startswith(f"usage: {daemon} "), r.stdout
        for opt in own:
            assert has_opt(r.stdout, opt), (opt, r.stdout)
        for opt in others:
            assert not has_opt(r.stdout, opt), (opt, r.stdout)


REPO_COMMANDS = [
    ["export", "--from", "now-1h", "--to", "now", "-o", "{tmp}/out.tar.gz"],
    ["snapshot", "list"],
    ["snapshot", "create", "s", "--from", "now-1h", "--to", "now"],
    ["conns"],
    ["conns", "--stats"],
    ["flows"],
    ["pcap", "--conn", "1", "-o", "{tmp}/out.pcap"],
    ["follow", "--conn", "1"],
    ["reindex", "--from", "now-1h", "--to", "now"],
]
HOW = "point to the receiver's storage.dir with --dir DIR or PCAPLINE_STORAGE_DIR"


@pytest.mark.parametrize("argv", REPO_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_repository_says_where_it_looked(cli, tmp_path, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    missing = tmp_path / "nothing-here"
    r = run([cli] + argv + ["--dir", missing])
    assert r.returncode == 1, r
    assert f"no repository in {missing} (given with --dir): No such file or directory; {HOW}" in r.stderr, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run([cli] + argv, env={"PCAPLINE_STORAGE_DIR": str(empty)})
    assert r.returncode == 1, r
    assert f"no repository in {empty} (from PCAPLINE_STORAGE_DIR): it has no index.db, sensors/ or snapshots/; " \
           f"{HOW}" in r.stderr, r.stderr
    if not Path("/var/lib/pcapline").exists():
        r = run([cli] + argv)
        assert r.returncode == 1, r
        assert "no repository in /var/lib/pcapline (the default: no --dir, PCAPLINE_STORAGE_DIR not set): " \
               f"No such file or directory; {HOW}" in r.stderr, r.stderr
    assert not (tmp_path / "out.tar.gz").exists() and not (tmp_path / "out.pcap").exists()
    assert list(empty.iterdir()) == []  # nothing was created where nothing was found


def test_empty_window_says_so(cli, binaries, certs, procs, tmp_path):
    """A capture from 2005 replayed now is stored with its 2005 timestamps: a window
    around now finds nothing, and the CLI says so and when the newest connection began."""
    sensor, receiver = binaries
    port = free_port()
    data = tmp_path / "data"
    rx = Proc([receiver, "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"), tmp_path / "rx.log")
    procs.append(rx)
    wait_listening(port)
    sx = Proc([sensor, "-r", REPLAY, "-t", f"127.0.0.1:{port}"] + tls_args(certs, "s1"), tmp_path / "sensor.log")
    procs.append(sx)
    assert sx.wait(60) == 0, sx.text()
    # The receiver dissects the segments it closes on the way out.
    assert rx.stop() == 0, rx.text()

    every = run([cli, "conns", "--dir", data, "--json", "--limit", "1000"])
    assert every.returncode == 0, every.stderr
    rows = json.loads(every.stdout)
    first_ns = min(c["first_ns"] for c in rows)
    newest_ns = max(c["first_ns"] for c in rows)
    # The capture's own time span, from capinfos: every connection lies in it.
    cap = run(["capinfos", "-Sae", REPLAY]).stdout
    t0, t1 = (float(re.search(rf"{k} packet time:\s+([\d.]+)", cap).group(1)) for k in ("First", "Last"))
    assert t0 - 1e-6 <= first_ns / 1e9 and newest_ns / 1e9 <= t1 + 1e-6, (t0, t1, first_ns, newest_ns)
    assert len(rows) > 0

    for cmd, what in (("conns", "connections"), ("flows", "flows")):
        r = run([cli, cmd, "--dir", data, "--from", "now-1h", "--to", "now"])
        assert r.returncode == 0, r.stderr
        assert r.stdout == "", r.stdout
        m = re.search(rf"info: no {what} in \[(\S+), (\S+)\); the newest began at (\S+) \(packets keep their "
                      r"capture time, also when replayed from a file: widen --from/--to to cover it\)", r.stderr)
        assert m, r.stderr
        assert m.group(3).startswith("2005-03-30T"), m.group(3)
        j = run([cli, cmd, "--dir", data, "--from", "now-1h", "--to", "now", "--json"])
        assert j.returncode == 0 and json.loads(j.stdout) == [], j
        q = run([cli, "-q", cmd, "--dir", data, "--from", "now-1h", "--to", "now"])
        assert q.returncode == 0 and q.stdout == "" and q.stderr == "", q

    newest = run([cli, "conns", "--dir", data, "--from", "now-1h", "--to", "now"]).stderr
    iso = re.search(r"the newest began at (\S+)", newest).group(1)
    # The window the message points at finds the connections: the capture's own time.
    r = run([cli, "conns", "--dir", data, "--json", "--limit", "1000", "--from", str(int(t0)),
             "--to", str(int(t1) + 1)])
    assert r.returncode == 0 and len(json.loads(r.stdout)) == len(rows), r
    r = run([cli, "conns", "--dir", data, "--json", "--from", iso, "--to", str(int(t1) + 1)])
    assert r.returncode == 0 and any(c["first_ns"] == newest_ns for c in json.loads(r.stdout)), (iso, r)

    r = run([cli, "conns", "--dir", data, "--sensor", "nosuch"])
    assert r.returncode == 0 and r.stdout == "" and f"no connections match in {data}" in r.stderr, r


def test_example_sensor_config_names_the_files_pcapline_certs_writes(binaries, tmp_path):
    """pcapline-certs DIR sensor web-01 writes web-01.crt/.key; config/sensor.yaml must
    name those, and start (with only the interface and paths changed) once they exist."""
    sensor, _ = binaries
    d = tmp_path / "etc"
    for what in (["ca"], ["sensor", "web-01"]):
        subprocess.run([CERTS_TOOL, d] + what, check=True, capture_output=True)
    # Where the example looks for its certificate: the sensor names the file it cannot read.
    r = run([sensor, "-c", ROOT / "config" / "sensor.yaml", "-i", "lo", "--ca", d / "ca.crt", "--check-config"])
    cert = Path(re.search(r"cannot read certificate (\S+): No such file", r.stderr).group(1))
    r = run([sensor, "-c", ROOT / "config" / "sensor.yaml", "-i", "lo", "--ca", d / "ca.crt",
             "--cert", d / cert.name, "--check-config"])
    m = re.search(r"cannot read (?:private )?key (\S+): No such file", r.stderr)
    key = Path(m.group(1)) if m else None
    assert cert == Path("/etc/pcapline/web-01.crt") and key == Path("/etc/pcapline/web-01.key"), (cert, r.stderr)
    assert (d / cert.name).is_file() and (d / key.name).is_file(), sorted(os.listdir(d))
    # With the files where the example says (here: under the test's directory).
    r = run([sensor, "-c", ROOT / "config" / "sensor.yaml", "-i", "lo", "--ca", d / "ca.crt",
             "--cert", d / cert.name, "--key", d / key.name, "--check-config"])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    readme = (ROOT / "README.md").read_text()
    for key_name in ("capture.interfaces", "uplink.receivers", "tls.cert"):
        assert key_name in readme
