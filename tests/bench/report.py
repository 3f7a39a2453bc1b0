#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Turns tests/bench/bench.sh's runs.tsv into the markdown results table (stdout + --out).

runs.tsv columns (space-separated, "-" = not applicable):
  variant rep wall_s s_cpu s_rss_max_kb s_rss_sum_kb r_cpu r_rss_max_kb r_rss_sum_kb
  raw_bytes comp_bytes stored_pkts stored_bytes ok
l4.tsv columns (the L4 pass, optional):
  input rep frames file_bytes cpu_s rss_kib wall_s tshark_cpu_s tshark_rss_kib tshark_wall_s
  tshark_startup_cpu_s ok
"""
import argparse
import os
import platform
import statistics
import sys
import time

COLS = ["variant", "rep", "wall", "s_cpu", "s_rss_max", "s_rss_sum", "r_cpu", "r_rss_max", "r_rss_sum",
        "raw", "comp", "pkts", "bytes", "ok"]
LABELS = {
    "tcpdump": "`tcpdump -r IN -w OUT` (no transfer)",
    "pipeline": "`tcpdump \\| lz4 -1 \\| openssl s_client` -> `s_server \\| lz4 -d` (mTLS)",
    "pcapline": "pcapline, `storage.fsync: batch` (default)",
    "pcapline-nofsync": "pcapline, `storage.fsync: never`",
    "pcapline-interval": "pcapline, `storage.fsync: interval`",
}
PCAPLINE = ("pcapline", "pcapline-nofsync", "pcapline-interval")
L4_COLS = ["input", "rep", "frames", "bytes", "cpu", "rss", "wall", "t_cpu", "t_rss", "t_wall", "t0_cpu", "ok"]


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def med(rows, key):
    vals = [num(r[key]) for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({model}), {mem} RAM, Linux {platform.release()}"


def l4_section(path, slice_pkts, w):
    """The L4 pass: `pcapline -q l4 stats` per input, with tshark's conv,tcp as the peer."""
    runs = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == len(L4_COLS):
                    r = dict(zip(L4_COLS, p))
                    runs.setdefault(r["input"], []).append(r)
    except OSError:
        return
    if not runs:
        return
    labels = {"all-pcaps": "every capture of the source directory, end to end (`mergecap -a`)",
              "input-slice": f"the input's first {slice_pkts:,} packets",
              "input": "the whole input"}
    w("## L4 pass")
    w("")
    w("`pcapline -q l4 stats FILE` (connections and TCP reassembly, no output) against "
      "`tshark -n -q -z conv,tcp -r FILE`. Per core = per CPU second: file bytes × 8 / CPU s, "
      "frames / CPU s. pcapline's CPU and peak RSS are its own figures (`cpu_seconds`: the pass; "
      "`max_rss_kib`: VmHWM; for pcapng it includes the file, which the reader validates when it opens "
      "it); tshark's are GNU time's (user+sys, %M) for the whole process. The "
      "ratio divides by tshark's CPU less its start-up (tshark on the file's first frame alone, "
      "shown in parentheses). Medians over the runs.")
    w("")
    w("| input | runs ok | frames | file MB | pcapline CPU s | Gbit/s per core | Mpkt/s per core | peak RSS MiB "
      "| tshark CPU s (start-up) | tshark Gbit/s per core | tshark Mpkt/s per core | tshark peak RSS MiB "
      "| pcapline / tshark per core |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in [n for n in labels if n in runs] + sorted(set(runs) - set(labels)):
        rows = runs[name]
        frames, nbytes = num(rows[0]["frames"]) or 0, num(rows[0]["bytes"]) or 0
        cpu, rss = med(rows, "cpu"), med(rows, "rss")
        t_cpu, t_rss, t0 = med(rows, "t_cpu"), med(rows, "t_rss"), med(rows, "t0_cpu")
        nok = sum(1 for r in rows if r["ok"] == "ok")

        def per_core(c):
            if not c or c <= 0:
                return None, None
            return nbytes * 8 / c / 1e9, frames / c / 1e6
        g, p = per_core(cpu)
        tg, tp = per_core(t_cpu)
        net = t_cpu - t0 if t_cpu is not None and t0 is not None else t_cpu
        ratio = net / cpu if net and cpu else None
        tcell = "—" if t_cpu is None else f"{t_cpu:.2f} ({fmt(t0)})"
        w(f"| {labels.get(name, name)} | {nok}/{len(rows)} | {int(frames):,} | {nbytes / 1e6:.1f} | {fmt(cpu, 3)} "
          f"| {fmt(g)} | {fmt(p)} | {fmt(rss / 1024 if rss is not None else None, 1)} | {tcell} | {fmt(tg)} "
          f"| {fmt(tp)} | {fmt(t_rss / 1024 if t_rss is not None else None, 1)} | {fmt(ratio, 1)} |")
    if "input" in runs and "input-slice" in runs:
        w("")
        w("tshark reads only the slice: it keeps ~0.5 KB per frame (the whole input would take GBs); "
          "BENCH_L4_SLICE=0 gives it the whole input.")
    w("")


def variants_section(a, runs, gb, w):
    """The file-replay variants: the table, the ratios and the notes."""
    w("| variant | runs ok | wall s | Mpkt/s | Gbit/s | sensor CPU s/GB | receiver CPU s/GB | total CPU s/GB "
      "| sensor RSS MiB max (sum) | receiver RSS MiB max (sum) | compression |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    summ = {}
    for v in list(LABELS) + sorted(set(runs) - set(LABELS)):
        rows = runs.get(v)
        if not rows:
            continue
        wall = med(rows, "wall")
        s_cpu, r_cpu = med(rows, "s_cpu"), med(rows, "r_cpu")
        tot = statistics.median([(num(r["s_cpu"]) or 0) + (num(r["r_cpu"]) or 0) for r in rows])
        pps = a.in_pkts / wall / 1e6 if wall else None
        gbps = a.in_bytes * 8 / wall / 1e9 if wall else None
        ratio = None
        if v != "tcpdump":
            rs = [num(r["raw"]) / num(r["comp"]) for r in rows if num(r["raw"]) and num(r["comp"])]
            ratio = statistics.median(rs) if rs else None
        nok = sum(1 for r in rows if r["ok"] == "ok")
        summ[v] = dict(wall=wall, pps=pps, s=s_cpu / gb if s_cpu is not None else None,
                       r=r_cpu / gb if r_cpu is not None else None, tot=tot / gb)

        def rss(kmax, ksum):
            m, s = med(rows, kmax), med(rows, ksum)
            if m is None:
                return "—"
            if s is not None and abs(s - m) > 1:
                return f"{m / 1024:.1f} ({s / 1024:.1f})"
            return f"{m / 1024:.1f}"
        w(f"| {LABELS.get(v, v)} | {nok}/{len(rows)} | {fmt(wall)} | {fmt(pps)} | {fmt(gbps)} "
          f"| {fmt(summ[v]['s'])} | {fmt(summ[v]['r'])} | {fmt(summ[v]['tot'])} "
          f"| {rss('s_rss_max', 's_rss_sum')} | {rss('r_rss_max', 'r_rss_sum')} | {fmt(ratio)} |")
    w("")

    def ratio_rows(base, label, sides):
        if base not in summ:
            return
        b = summ[base]
        for v in PCAPLINE:
            if v not in summ:
                continue
            p = summ[v]
            cells = [f"{v} / {label}", fmt(p["pps"] / b["pps"] if p["pps"] and b["pps"] else None)]
            for k in sides:
                cells.append(fmt(p[k] / b[k] if p[k] is not None and b[k] else None))
            w("| " + " | ".join(cells) + " |")

    if summ.keys() & set(PCAPLINE) and summ.keys() & {"pipeline", "tcpdump"}:
        w("Ratios (throughput: higher is better for pcapline; CPU per GB: lower is better):")
        w("")
        w("| ratio | throughput | sensor CPU/GB | receiver CPU/GB | total CPU/GB |")
        w("|---|---|---|---|---|")
        ratio_rows("pipeline", "pipeline", ["s", "r", "tot"])
        if "tcpdump" in summ:
            b = summ["tcpdump"]
            for v in PCAPLINE:
                if v in summ:
                    p = summ[v]
                    w(f"| {v} / tcpdump | {fmt(p['pps'] / b['pps'] if b['pps'] else None)} "
                      f"| {fmt(p['s'] / b['tot'] if b['tot'] else None)} | — "
                      f"| {fmt(p['tot'] / b['tot'] if b['tot'] else None)} |")
        w("")
    w("Notes: wall = from sensor start until the receiver side has stored everything (pcapline: the "
      "sensor exits only once every batch is acknowledged, i.e. written and, with fsync batch, "
      "fdatasync'ed; pipeline: until `s_server | lz4 -d` has exited). CPU = user+sys of every process "
      "of that side (GNU time). RSS max = GNU time %M of the largest process; (sum) = sum of the "
      "pipeline stages' %M. Compression = uncompressed / compressed: pcapline from the sensor's final "
      "log line (batch record bytes), pipeline = input file bytes / `lz4 -1 -B4` output. "
      "tcpdump's CPU is listed as sensor side; its ratio row compares it with pcapline's sensor and total CPU.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--in-pkts", type=int, required=True)
    ap.add_argument("--in-bytes", type=int, required=True)
    ap.add_argument("--in-file-bytes", type=int, required=True)
    ap.add_argument("--in-lz4-bytes", type=int, required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--load", default="")
    ap.add_argument("--l4-tsv", default="")
    ap.add_argument("--l4-slice", type=int, default=0)
    a = ap.parse_args()

    runs = {}
    with open(a.tsv) as f:
        for line in f:
            p = line.split()
            if len(p) != len(COLS):
                continue
            r = dict(zip(COLS, p))
            runs.setdefault(r["variant"], []).append(r)

    gb = a.in_bytes / 1e9
    out = []
    w = out.append
    w(f"# pcapline file-replay benchmark ({time.strftime('%Y-%m-%d %H:%M %Z')})")
    w("")
    w(f"- Machine: {machine()}; load average (1/5/15 min) {a.load}")
    w(f"- pcapline: commit {a.commit}")
    w(f"- Input: `{a.input}`: {a.in_pkts:,} packets, {a.in_bytes:,} packet bytes (caplen sum), "
      f"{a.in_file_bytes:,} file bytes (avg packet {a.in_bytes / max(a.in_pkts, 1):.0f} B); "
      f"`lz4 -1 -B4` of the file: {a.in_lz4_bytes:,} bytes")
    for var, who in (("BENCH_SENSOR_ENV", "pcapline-sensor"), ("BENCH_RECEIVER_ENV", "pcapline-receiver")):
        if os.environ.get(var, "").strip():
            w(f"- Extra settings for {who}: `{os.environ[var].strip()}`")
    w("- Each figure is the median over the runs (taken per column); GB = 10^9 packet bytes (caplen sum of the input).")
    w("")
    if runs:
        variants_section(a, runs, gb, w)
    if a.l4_tsv:
        if runs:
            w("")
        l4_section(a.l4_tsv, a.l4_slice, w)
    text = "\n".join(out) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
