# SPDX-License-Identifier: BSD-2-Clause
"""Helpers for the live-capture tests in network namespaces: namespaces and veth
pairs (198.18.0.0/15 only), a classic-pcap reader, the per-sensor segment reader,
a record-by-record comparison with readable failure messages, and a tiny traffic
tool that runs inside a namespace as `python3 netns.py arp ...` (the DNS responder is
scripts/demo_dns.py).

Nothing here kills processes or deletes namespaces it did not create.
"""
import heapq
import re
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

HERE = Path(__file__).resolve()
DNS_RESPONDER = HERE.parents[2] / "scripts" / "demo_dns.py"
PY = "/usr/bin/python3"

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

# ---- namespaces ----------------------------------------------------------------


def run(argv, check=True, timeout=20, **kw):
    """subprocess.run with text output, a time bound and a readable error."""
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def nsrun(ns, argv, **kw):
    return run(["ip", "netns", "exec", ns] + list(argv), **kw)


class Namespaces:
    """Creates uniquely named namespaces (plt-<6hex>-<suffix>) and deletes exactly
    those, whatever happened in between."""

    def __init__(self):
        self.tag = "plt-" + secrets.token_hex(3)
        self.created = []

    def add(self, suffix):
        name = f"{self.tag}-{suffix}"
        run(["ip", "netns", "add", name])
        self.created.append(name)
        # No IPv6 at all: no router/neighbour solicitations or MLD reports that
        # could land in one capture and not the other.
        nsrun(name, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def veth(self, ns_a, if_a, addr_a, ns_b, if_b, addr_b, prefix=30):
        """A veth pair created directly inside the namespaces (never in the root
        one), addressed, up, with permanent neighbour entries on both sides so that
        no ARP traffic happens by itself (a NUD probe could otherwise fall between
        the moments two captures stop and make them differ for no product reason)."""
        for a in (addr_a, addr_b):
            assert a.startswith("198.18.") or a.startswith("198.19."), a
        run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        run(["ip", "-n", ns_a, "addr", "add", f"{addr_a}/{prefix}", "dev", if_a])
        run(["ip", "-n", ns_b, "addr", "add", f"{addr_b}/{prefix}", "dev", if_b])
        run(["ip", "-n", ns_a, "link", "set", if_a, "up"])
        run(["ip", "-n", ns_b, "link", "set", if_b, "up"])
        mac_a, mac_b = link_mac(ns_a, if_a), link_mac(ns_b, if_b)
        run(["ip", "-n", ns_a, "neigh", "replace", addr_b, "lladdr", mac_b, "dev", if_a, "nud", "permanent"])
        run(["ip", "-n", ns_b, "neigh", "replace", addr_a, "lladdr", mac_a, "dev", if_b, "nud", "permanent"])
        return mac_a, mac_b

    def cleanup(self):
        errors = []
        for name in reversed(self.created):
            r = run(["ip", "netns", "del", name], check=False)
            if r.returncode != 0 and name in netns_list():
                errors.append(f"{name}: {r.stderr.strip()}")
        self.created = []
        return errors


def netns_list():
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_mac(ns, ifname):
    out = run(["ip", "-n", ns, "-o", "link", "show", ifname]).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    assert m, out
    return m.group(1)


def wait_for(pred, timeout, what, detail=lambda: "", interval=0.05):
    """pred()'s first true value, polled every interval for at most timeout seconds;
    else TimeoutError naming what, and detail() (the state that was waited on)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} {detail()}".rstrip())


def listening(ns, proto, port, count=1):
    """True when at least `count` sockets listen on `port` (tcp or udp) inside ns."""
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    out = nsrun(ns, ["ss", flag, f"sport = :{port}"], check=False).stdout
    return len([line for line in out.splitlines() if line.strip()]) >= count


def log_has(proc, text):
    return text in proc.text()


# ---- pcap ----------------------------------------------------------------------

Rec = namedtuple("Rec", "ts_ns caplen origlen data")
Pcap = namedtuple("Pcap", "path linktype snaplen nano records")


def read_pcap(path):
    """Reads a classic pcap file (either byte order, micro- or nanosecond magic).
    Timestamps come back in nanoseconds. A truncated trailing record is an error."""
    raw = Path(path).read_bytes()
    if len(raw) < 24:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than a pcap header")
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", raw[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {raw[:4].hex()})")
    nano = magic == 0xA1B23C4D
    _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", raw[4:24])
    linktype &= 0x0FFFFFFF
    recs = []
    off = 24
    hdr = struct.Struct(endian + "IIII")
    while off < len(raw):
        if off + 16 > len(raw):
            raise ValueError(f"{path}: truncated record header at offset {off} (record {len(recs)})")
        sec, frac, caplen, origlen = hdr.unpack_from(raw, off)
        off += 16
        if off + caplen > len(raw):
            raise ValueError(f"{path}: record {len(recs)} truncated: caplen {caplen}, {len(raw) - off} bytes left")
        ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        recs.append(Rec(ts, caplen, origlen, raw[off:off + caplen]))
        off += caplen
    return Pcap(str(path), linktype, snaplen, nano, recs)


def capinfos_count(path):
    out = run(["capinfos", "-c", "-M", path]).stdout
    m = re.search(r"Number of packets:\s*(\d+)", out)
    assert m, out
    return int(m.group(1))


# <first-ts-ns>-<epoch-hex>-<seq>.<ifindex>-<ifname>.pcap; also the earlier forms
# without the interface index, <first-ts-ns>-<epoch-hex>-<seq>-<ifname>.pcap, and
# without the epoch, <first-ts-ns>-<seq>-<ifname>.pcap. The first timestamp is 20
# digits wide and the epoch 16 hex digits, so they cannot be confused.
SEGMENT_RES = (
    re.compile(r"^(?P<ts>\d{20})-(?P<epoch>[0-9a-f]{16})-(?P<seq>\d+)(?:\.(?P<ifindex>\d+))?-(?P<ifname>.+)\.pcap$"),
    re.compile(r"^(?P<ts>\d{20})-(?P<seq>\d+)-(?P<ifname>.+)\.pcap$"),
)


def parse_segment_name(name):
    """(first timestamp, epoch or '', seq, ifname) of a closed segment name, else None."""
    for rx in SEGMENT_RES:
        m = rx.match(name)
        if m:
            d = m.groupdict()
            return int(d["ts"]), d.get("epoch") or "", int(d["seq"]), d["ifname"]
    return None


def sensor_segments(datadir, sensor_id):
    """The closed segment files of one sensor, plus any left open (hidden) ones."""
    seg_dir = Path(datadir) / "sensors" / sensor_id / "segments"
    if not seg_dir.is_dir():
        return seg_dir, [], []
    closed, opened = [], []
    for p in sorted(seg_dir.iterdir()):
        if p.name.startswith(".open-"):
            opened.append(p)
        elif p.name.endswith(".pcap"):
            closed.append(p)
    return seg_dir, closed, opened


def stored_records(files):
    """All records of a sensor's segment files in capture order: per interface,
    segments in (first timestamp, batch sequence) order, concatenated (each file
    keeps the order the kernel delivered packets in); interfaces merged by time."""
    per_if = {}
    linktypes = {}
    for p in files:
        parsed = parse_segment_name(p.name)
        assert parsed, f"unexpected segment file name {p.name}"
        first_ts, _epoch, seq, ifname = parsed
        pc = read_pcap(p)
        assert pc.nano, f"{p}: segment is not a nanosecond pcap"
        linktypes.setdefault(ifname, set()).add(pc.linktype)
        per_if.setdefault(ifname, []).append((first_ts, seq, pc.records))
    streams = []
    for ifname, segs in per_if.items():
        segs.sort(key=lambda s: (s[0], s[1]))
        streams.append([r for s in segs for r in s[2]])
    if len(streams) == 1:
        return linktypes, streams[0]
    return linktypes, list(heapq.merge(*streams, key=lambda r: r.ts_ns))


# ---- packet descriptions ---------------------------------------------------------


def l3_offset(linktype, data):
    """(ethertype, offset of the network header, direction) for the link types
    used here; direction is 'out', 'in' or None when the header does not say."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 14:
        return struct.unpack("!H", data[12:14])[0], 14, None
    if linktype == LINKTYPE_LINUX_SLL and len(data) >= 16:
        pkttype = struct.unpack("!H", data[0:2])[0]
        return struct.unpack("!H", data[14:16])[0], 16, "out" if pkttype == 4 else "in"
    if linktype == LINKTYPE_LINUX_SLL2 and len(data) >= 20:
        pkttype = data[10]
        return struct.unpack("!H", data[0:2])[0], 20, "out" if pkttype == 4 else "in"
    return None, None, None


def ipv4_info(linktype, data):
    """(proto, src, dst, sport, dport) of an IPv4 packet, else None."""
    etype, off, _ = l3_offset(linktype, data)
    if etype != 0x0800 or len(data) < off + 20:
        return None
    ihl = (data[off] & 0x0F) * 4
    proto = data[off + 9]
    src = socket.inet_ntoa(data[off + 12:off + 16])
    dst = socket.inet_ntoa(data[off + 16:off + 20])
    sport = dport = None
    if proto in (6, 17) and len(data) >= off + ihl + 4:
        sport, dport = struct.unpack("!HH", data[off + ihl:off + ihl + 4])
    return proto, src, dst, sport, dport


def describe(linktype, rec):
    if rec is None:
        return "(none)"
    etype, _, _ = l3_offset(linktype, rec.data)
    info = ipv4_info(linktype, rec.data)
    if info:
        proto, src, dst, sp, dp = info
        name = {1: "ICMP", 6: "TCP", 17: "UDP"}.get(proto, f"proto {proto}")
        what = f"{name} {src}:{sp} > {dst}:{dp}" if sp is not None else f"{name} {src} > {dst}"
    elif etype == 0x0806:
        what = "ARP"
    else:
        what = f"ethertype 0x{etype:04x}" if etype is not None else "?"
    return (f"ts={rec.ts_ns} caplen={rec.caplen} origlen={rec.origlen} {what} "
            f"bytes[:32]={rec.data[:32].hex()}")


# ---- comparison ------------------------------------------------------------------


def direction(linktype, rec, own_mac):
    """'out' for packets the capturing host sent, 'in' for packets it received."""
    etype, _, d = l3_offset(linktype, rec.data)
    if d is not None:
        return d
    src = rec.data[6:12]
    return "out" if src == bytes.fromhex(own_mac.replace(":", "")) else "in"


def compare_records(got, want, linktype, own_mac=None, tcp_ingress_bound_ns=0, reorder_bound_ns=0,
                    reorder_window=32, label="stored", truth="tcpdump"):
    """Asserts that `got` holds exactly the records of `want`: each record of `want`
    is paired with the first unpaired record of `got` that has the same bytes,
    caplen and origlen (identical records, e.g. repeated ARP requests, are
    interchangeable). Then:

    * nothing is left over on either side (same count, nothing missing or extra);
    * timestamps of paired records are identical, except for received TCP packets,
      which may differ by at most tcp_ingress_bound_ns;
    * the order is the same, except that two records may be swapped when `truth`
      stamped them at most reorder_bound_ns apart and they are at most
      reorder_window positions apart: two packet sockets may see packets that two
      CPUs deliver at the same moment in opposite orders.

    Failure messages name the first offending record on both sides. Returns
    statistics about timestamps and order."""
    stats = {"out": 0, "in_tcp": 0, "in_other": 0, "in_tcp_exact": 0, "in_tcp_max_abs_ns": 0,
             "reordered": 0, "max_displacement": 0}
    pending = {}
    for gi, g in enumerate(got):
        pending.setdefault((g.data, g.caplen, g.origlen), []).append(gi)
    for lst in pending.values():
        lst.reverse()  # pop() from the end gives the earliest unpaired index
    pair_of_got = [None] * len(got)

    def context(i):
        return f"{label}[{i}]: {describe(linktype, got[i])}" if i < len(got) else f"{label}[{i}]: (none)"

    for wi, w in enumerate(want):
        lst = pending.get((w.data, w.caplen, w.origlen))
        if not lst:
            # Say what differs from the record at the same position, if any.
            hint = ""
            if wi < len(got):
                g = got[wi]
                diffs = []
                if g.caplen != w.caplen:
                    diffs.append(f"caplen {g.caplen} != {w.caplen}")
                if g.origlen != w.origlen:
                    diffs.append(f"origlen {g.origlen} != {w.origlen}")
                if g.data != w.data:
                    j = next((k for k in range(min(len(g.data), len(w.data))) if g.data[k] != w.data[k]),
                             min(len(g.data), len(w.data)))
                    diffs.append(f"bytes differ from byte {j}")
                hint = f"; versus the record at the same index: {', '.join(diffs) or 'equal'}"
            raise AssertionError(
                f"{truth} record {wi} is missing from {label} (no record with the same bytes, caplen and "
                f"origlen){hint}:\n  {truth}[{wi}]: {describe(linktype, w)}\n  {context(wi)}\n"
                f"  ({label} has {len(got)} records, {truth} {len(want)})")
        gi = lst.pop()
        pair_of_got[gi] = wi
    extra = [gi for gi, wi in enumerate(pair_of_got) if wi is None]
    if extra:
        raise AssertionError(
            f"{label} has {len(extra)} record(s) that {truth} does not have; first at index {extra[0]}:\n"
            f"  {context(extra[0])}\n  ({label} has {len(got)} records, {truth} {len(want)})")

    # Timestamps of each pair.
    for gi, wi in enumerate(pair_of_got):
        g, w = got[gi], want[wi]
        d = direction(linktype, w, own_mac)
        info = ipv4_info(linktype, w.data)
        dt = g.ts_ns - w.ts_ns
        if d == "in" and info and info[0] == 6:
            stats["in_tcp"] += 1
            stats["in_tcp_exact"] += dt == 0
            stats["in_tcp_max_abs_ns"] = max(stats["in_tcp_max_abs_ns"], abs(dt))
            bad = abs(dt) > tcp_ingress_bound_ns
            rule = f"received TCP: |difference| must be <= {tcp_ingress_bound_ns} ns"
        else:
            stats["out" if d == "out" else "in_other"] += 1
            bad = dt != 0
            rule = f"{'sent' if d == 'out' else 'received non-TCP'} packet: must be identical"
        if bad:
            raise AssertionError(
                f"record {gi} of {label} (record {wi} of {truth}) has another timestamp: {g.ts_ns} != {w.ts_ns}, "
                f"off by {dt} ns ({rule}):\n  {context(gi)}\n  {truth}[{wi}]: {describe(linktype, w)}")

    # Order: only near-simultaneous records may swap.
    for gi, wi in enumerate(pair_of_got):
        disp = abs(gi - wi)
        stats["max_displacement"] = max(stats["max_displacement"], disp)
        stats["reordered"] += disp != 0
        if disp > reorder_window:
            raise AssertionError(
                f"record {gi} of {label} is record {wi} of {truth}: moved by {disp} positions "
                f"(at most {reorder_window} allowed):\n  {context(gi)}")
        for gj in range(gi + 1, min(gi + reorder_window + 1, len(got))):
            wj = pair_of_got[gj]
            if wj < wi and abs(want[wi].ts_ns - want[wj].ts_ns) > reorder_bound_ns:
                raise AssertionError(
                    f"order differs: {label}[{gi}] and {label}[{gj}] are {truth}[{wi}] and {truth}[{wj}] "
                    f"(the other way round), although {truth} stamped them "
                    f"{abs(want[wi].ts_ns - want[wj].ts_ns)} ns apart (> {reorder_bound_ns} ns):\n"
                    f"  {context(gi)}\n  {context(gj)}")
    return stats


# ---- traffic tools (run inside a namespace) --------------------------------------


def arp_main(ifname, src_ip, dst_ip, count):
    """Sends `count` ARP requests who-has dst_ip tell src_ip out of ifname."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((ifname, 0))
    mac = s.getsockname()[4]
    frame = (b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
             + mac + socket.inet_aton(src_ip) + b"\x00" * 6 + socket.inet_aton(dst_ip))
    for _ in range(int(count)):
        s.send(frame)
        time.sleep(0.05)
    s.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "arp":
        arp_main(*args)
    else:
        sys.exit(f"unknown command {cmd}")
