#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Helpers of the fan-in scenario of tests/bench/bench.sh (no third-party modules).

  fanin.py count REPO SENSORS PKTS BYTES
      every sensor folder of REPO must hold PKTS packets and BYTES packet bytes (capinfos,
      one run over all segment files, open ones included); prints
      "STORED_PKTS STORED_BYTES ok|FAIL [detail]"
  fanin.py dissected REPO
      "DISSECTED SEGMENTS" from REPO/index.db (segments in l4_done / in segments), "- -"
      when there is no such table (dissection off)
  fanin.py stats REPO
      the receiver's ACK latency and index wait from stats.json: "COUNT P50 P99 MAX WAIT_MAX"
      in microseconds, "-" for a figure the receiver does not write. REPO/stats.json is
      used when it has them (figures over every ACK), else every sensors/*/stats.json:
      COUNT summed, P50/P99/MAX the largest of the sensors' (the P50 and P99 over all ACKs
      are at most that), WAIT_MAX the largest.
  fanin.py report TSV OUT
      the markdown table and the issue's bars (PASS/FAIL) from the runs; exit 1 when a run
      did not store every packet or a bar fails.

TSV columns (space-separated, "-" = not available):
  mode rep sensors wall_s first_done_s median_done_s stored_pkts stored_bytes r_cpu_s r_rss_kb ack_count ack_p50_us
  ack_p99_us ack_max_us index_wait_max_us dissected segments caught_up_s ok
"""
import glob
import json
import os
import statistics
import subprocess
import sys

COLS = ["mode", "rep", "sensors", "wall", "first", "median", "pkts", "bytes", "r_cpu", "r_rss", "ack_n", "ack_p50", "ack_p99",
        "ack_max", "wait_max", "dissected", "segments", "caught_up", "ok"]
THROUGHPUT_BAR = 0.95   # dissection on stores at least this share of dissection off
ACK_P99_BAR = 1.5       # and its ACK P99 is at most this multiple


def find_key(obj, key):
    """The value of key anywhere in a JSON document (depth first), else None."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stats(repo):
    top = load(os.path.join(repo, "stats.json"))
    if top is not None and find_key(top, "ack_latency_us") is not None:
        docs = [top]
    else:
        docs = [d for d in (load(p) for p in sorted(glob.glob(os.path.join(repo, "sensors", "*", "stats.json"))))
                if d is not None]
    lat = [v for v in (find_key(d, "ack_latency_us") for d in docs) if isinstance(v, dict)]
    waits = [v for v in (find_key(d, "index_wait_us_max") for d in docs) if isinstance(v, (int, float))]
    out = ["-"] * 5
    if lat:
        out[0] = str(sum(int(v.get("count", 0)) for v in lat))
        for i, k in enumerate(("p50", "p99", "max"), 1):
            vals = [v[k] for v in lat if isinstance(v.get(k), (int, float)) and int(v.get("count", 1)) > 0]
            if vals:
                out[i] = str(max(vals))
    if waits:
        out[4] = str(max(waits))
    print(" ".join(out))
    return 0


def count(repo, sensors, pkts, nbytes):
    folders = sorted(glob.glob(os.path.join(repo, "sensors", "*")))
    files = {f: sorted(glob.glob(os.path.join(f, "segments", "*.pcap")) +
                       glob.glob(os.path.join(f, "segments", ".open-*.pcap"))) for f in folders}
    every = [p for fs in files.values() for p in fs]
    got = {}
    if every:
        p = subprocess.run(["capinfos", "-c", "-M", "-T", "-r", *every], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"- - FAIL capinfos: {p.stderr.strip()[:300]}")
            return 1
        for line in p.stdout.splitlines():
            if "\t" in line:
                name, n = line.rsplit("\t", 1)
                got[name] = int(n)
    bad = []
    tp = tb = 0
    for f, fs in files.items():
        n = sum(got.get(p, 0) for p in fs)
        b = sum(os.path.getsize(p) - 24 - 16 * got.get(p, 0) for p in fs)
        tp, tb = tp + n, tb + b
        if n != pkts or b != nbytes:
            bad.append(f"{os.path.basename(f)}:{n}/{b}")
    if len(folders) != sensors:
        bad.insert(0, f"{len(folders)}-folders")
    print(tp, tb, "ok" if not bad else "FAIL " + ",".join(bad[:5]))
    return 0


def dissected(repo):
    import sqlite3
    try:
        db = sqlite3.connect(f"file:{repo}/index.db?mode=ro", uri=True)
        try:
            segs = db.execute("SELECT count(*) FROM segments").fetchone()[0]
            done = db.execute("SELECT count(*) FROM l4_done").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        print("- -")
        return 0
    print(done, segs)
    return 0


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(rows, key):
    vals = [v for v in (num(r[key]) for r in rows) if v is not None]
    return statistics.median(vals) if vals else None


def top(rows, key):
    vals = [v for v in (num(r[key]) for r in rows) if v is not None]
    return max(vals) if vals else None


def f(v, nd=2, unit=""):
    return "n/a" if v is None else f"{v:.{nd}f}{unit}"


def ms(us):
    return None if us is None else us / 1000.0


def report(tsv, out):
    rows = []
    with open(tsv) as fh:
        for line in fh:
            p = line.split()
            if len(p) == len(COLS):
                rows.append(dict(zip(COLS, p)))
    by = {m: [r for r in rows if r["mode"] == m] for m in ("off", "on")}
    lines = ["", "### Fan-in: %s sensors into one receiver, dissection off and on" %
             (rows[0]["sensors"] if rows else "?"), ""]
    lines.append("| dissection | runs | wall s | sensors done s (first / median) | stored Mpkt/s | stored Gbit/s | receiver CPU s/GB | receiver RSS MiB "
                 "| ACKs | ACK P50 ms | ACK P99 ms | ACK max ms | index wait max ms | dissected when sent | all dissected s after | stored |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    fig = {}
    for m, rs in by.items():
        if not rs:
            continue
        for r in rs:
            w = num(r["wall"])
            r["pps"] = str(int(r["pkts"]) / w) if w else "-"
            r["gbps"] = str(int(r["bytes"]) * 8 / w / 1e9) if w else "-"
            c = num(r["r_cpu"])
            r["cpu_gb"] = str(c / (int(r["bytes"]) / 1e9)) if c is not None and int(r["bytes"]) else "-"
        fig[m] = {"pps": med(rs, "pps"), "p99": med(rs, "ack_p99"), "max": top(rs, "ack_max"),
                  "wait": top(rs, "wait_max")}
        ok = all(r["ok"] == "ok" for r in rs)
        dis = "; ".join(f"{r['dissected']}/{r['segments']}" for r in rs) if m == "on" else "—"
        caught = "; ".join(r["caught_up"] for r in rs) if m == "on" else "—"
        rss = med(rs, "r_rss")
        lines.append(f"| {m} | {len(rs)} | {f(med(rs, 'wall'))} | {f(med(rs, 'first'))} / {f(med(rs, 'median'))} | {f(fig[m]['pps'] / 1e6 if fig[m]['pps'] else None)} "
                     f"| {f(med(rs, 'gbps'))} | {f(med(rs, 'cpu_gb'))} | {f(rss / 1024 if rss else None, 1)} "
                     f"| {f(med(rs, 'ack_n'), 0)} | {f(ms(med(rs, 'ack_p50')))} | {f(ms(fig[m]['p99']))} "
                     f"| {f(ms(fig[m]['max']))} | {f(ms(fig[m]['wait']))} | {dis} | {caught} | {'ok' if ok else 'FAIL'} |")
    lines.append("")
    lines.append("Wall: from the receiver's resume (every sensor connected) to the last sensor's exit (all its "
                 "batches acknowledged); a sensor done much earlier than the rest was served ahead of them. "
                 "Medians over the runs; ACK max and index wait max are the largest of any run. ACK figures are "
                 "the receiver's (stats.json `ack_latency_us`; per sensor, the largest sensor's percentile), "
                 "`n/a` when it does not write them. \"dissected when sent\": segments dissected / indexed when "
                 "the last sensor was acknowledged; while the CPUs are saturated dissection waits (`l4.defer_max`), and "
                 "\"all dissected s after\" says how long after the last sensor's exit every segment was dissected.")
    lines.append("")
    rc = 0
    if any(r["ok"] != "ok" for r in rows):
        lines.append("- **FAIL** stored packets: a run did not store every packet of every sensor (fanin.tsv)")
        rc = 1
    off, on = fig.get("off"), fig.get("on")
    if off and on and off["pps"] and on["pps"]:
        ratio = on["pps"] / off["pps"]
        verdict = "PASS" if ratio >= THROUGHPUT_BAR else "FAIL"
        rc |= verdict == "FAIL"
        lines.append(f"- **{verdict}** throughput with dissection on ≥ {THROUGHPUT_BAR}x off: "
                     f"{ratio:.3f}x ({on['pps'] / 1e6:.3f} vs {off['pps'] / 1e6:.3f} Mpkt/s)")
    else:
        lines.append("- **n/a** throughput bar: runs missing")
        rc = 1
    if off and on and off["p99"] is not None and on["p99"] is not None:
        ratio = on["p99"] / off["p99"] if off["p99"] > 0 else float("inf") if on["p99"] > 0 else 1.0
        verdict = "PASS" if ratio <= ACK_P99_BAR else "FAIL"
        rc |= verdict == "FAIL"
        lines.append(f"- **{verdict}** ACK P99 with dissection on ≤ {ACK_P99_BAR}x off: {ratio:.2f}x "
                     f"({ms(on['p99']):.2f} vs {ms(off['p99']):.2f} ms)")
    else:
        lines.append("- **n/a** ACK P99 bar: the receiver writes no `ack_latency_us` in stats.json")
    for m in ("off", "on"):
        if m in fig:
            lines.append(f"- dissection {m}: ACK max {f(ms(fig[m]['max']), 2, ' ms')}, "
                         f"index write lock wait max {f(ms(fig[m]['wait']), 3, ' ms')}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out, "a") as fh:
        fh.write(text)
    return rc


def main(argv):
    if len(argv) == 6 and argv[1] == "count":
        return count(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    if len(argv) == 3 and argv[1] == "dissected":
        return dissected(argv[2])
    if len(argv) == 3 and argv[1] == "stats":
        return stats(argv[2])
    if len(argv) == 4 and argv[1] == "report":
        return report(argv[2], argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
