#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The live-stream scenario of tests/bench/bench.sh (BENCH_LIVE): storage throughput of
one receiver with no live consumer and with four (curl reading as fast as it can, curl
--limit-rate 10k, curl stopped with SIGSTOP, a PCAP-over-IP client that never reads),
in the same run, alternating, BENCH_REPS times each.

  live.py BUILD INPUT.pcap CERTS OUT.md

Throughput is the packet bytes the repository holds after a replay (capinfos over its
segments: every packet must be there) over the sensor's wall time (`pcapline-sensor -r`
ends once the receiver has acknowledged, i.e. stored, everything). The bar: the median
with consumers is at least 0.95 of the median without. Exit 1 when a run lost a packet
or the bar fails.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BAR = 0.95


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"live bench: nothing listening on {port}")


def capinfos(files):
    """(packets, packet bytes) over files."""
    pk = by = 0
    for i in range(0, len(files), 200):
        out = subprocess.run(["capinfos", "-c", "-d", "-M", "-T", "-r", *files[i:i + 200]], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            f = line.split("\t")
            if len(f) >= 3 and f[1].isdigit():
                pk += int(f[1])
                by += int(f[2])
    return pk, by


def run(build, inp, certs, with_consumers, work):
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    port, api, poip = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCAPLINE_")}
    env.update(PCAPLINE_API_LISTEN=f"127.0.0.1:{api}", PCAPLINE_OUTPUTS_PCAP_OVER_IP_LISTEN=f"127.0.0.1:{poip}",
               PCAPLINE_STORAGE_FSYNC="never", PCAPLINE_L4_ENABLED="false")
    def tls(who):
        if who != "receiver":   # bench.sh's certificates name the sensor sensor1, the tests' s1
            who = "sensor1" if (certs / "sensor1.crt").exists() else "s1"
        return ["--ca", certs / "ca.crt", "--cert", certs / f"{who}.crt", "--key", certs / f"{who}.key"]
    rlog = open(work / "receiver.log", "wb")
    rx = subprocess.Popen([build / "pcapline-receiver", "-l", f"127.0.0.1:{port}", "-d", repo] + tls("receiver"),
                          stdout=rlog, stderr=subprocess.STDOUT, env=env)
    helpers, sock = [], None
    try:
        wait_listening(port)
        wait_listening(api)
        if with_consumers:
            url = f"http://127.0.0.1:{api}/api/v1/live"
            dn = subprocess.DEVNULL
            helpers.append(subprocess.Popen(["curl", "-sN", "-o", "/dev/null", url], stderr=dn))
            helpers.append(subprocess.Popen(["curl", "-sN", "--limit-rate", "10k", "-o", "/dev/null", url], stderr=dn))
            stuck = subprocess.Popen(["curl", "-sN", "-o", "/dev/null", url], stderr=dn)
            helpers.append(stuck)
            sock = socket.create_connection(("127.0.0.1", poip))
            deadline = time.time() + 15
            while len(re.findall(rb"consumer \d+ joined", (work / "receiver.log").read_bytes())) < 4:
                if time.time() > deadline:
                    sys.exit("live bench: consumers did not join")
                time.sleep(0.05)
            stuck.send_signal(signal.SIGSTOP)
        t0 = time.time()
        sx = subprocess.run([build / "pcapline-sensor", "-r", inp, "-t", f"127.0.0.1:{port}"] + tls("s1"),
                            capture_output=True, env=env)
        wall = time.time() - t0
        if sx.returncode != 0:
            sys.exit(f"live bench: sensor exited {sx.returncode}: {sx.stderr.decode()[-2000:]}")
    finally:
        for h in helpers:
            h.send_signal(signal.SIGCONT)
            h.terminate()
            h.wait()
        if sock:
            sock.close()
        rx.terminate()
        rx.wait()
        rlog.close()
    sid = "sensor1" if (certs / "sensor1.crt").exists() else "s1"   # the certificate's CN, as tls() picks it
    segs = [str(p) for p in (repo / "sensors" / sid / "segments").iterdir()]
    pk, by = capinfos(segs)
    drops = sum(int(m) for m in re.findall(rb"(\d+) dropped \(queue_full", (work / "receiver.log").read_bytes()))
    return wall, pk, by, drops


def main():
    build, inp, certs, out = (Path(a) for a in sys.argv[1:5])
    reps = int(os.environ.get("BENCH_REPS", "3"))
    work = build / "bench" / "live"
    work.mkdir(parents=True, exist_ok=True)
    want = capinfos([str(inp)])
    rows, ok = [], True
    for rep in range(1, reps + 1):
        for mode in (False, True):
            wall, pk, by, drops = run(build, inp, certs, mode, work)
            good = (pk, by) == want
            ok &= good
            rows.append((mode, rep, wall, pk, by, drops, good))
            print(f"live: {'4 consumers' if mode else 'no consumer'} rep {rep}: {wall:.2f} s, "
                  f"{by / wall / 1e6:.1f} MB/s stored, {pk}/{want[0]} packets, {drops} live drops"
                  f"{'' if good else ' LOST PACKETS'}", flush=True)
    med = {m: statistics.median(r[4] / r[2] for r in rows if r[0] == m) for m in (False, True)}
    ratio = med[True] / med[False]
    ok &= ratio >= BAR
    lines = ["## Live stream: storage throughput with and without live consumers", "",
             f"Input: {want[0]} packets, {want[1]} packet bytes; storage.fsync never, l4 off; "
             f"{reps} runs each, alternating. Consumers: curl (as fast as it reads), curl --limit-rate 10k, "
             "curl stopped (SIGSTOP), a PCAP-over-IP client that never reads.", "",
             "| consumers | run | wall s | stored MB/s | packets stored | live drops |", "|---|---|---|---|---|---|"]
    for mode, rep, wall, pk, by, drops, good in rows:
        lines.append(f"| {4 if mode else 0} | {rep} | {wall:.2f} | {by / wall / 1e6:.1f} | {pk}{'' if good else ' LOST'} "
                     f"| {drops if mode else '-'} |")
    lines += ["", f"Median stored MB/s: {med[False] / 1e6:.1f} without, {med[True] / 1e6:.1f} with 4 consumers: "
              f"{ratio:.3f}x (bar >= {BAR}): {'PASS' if ratio >= BAR else 'FAIL'}", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
