# SPDX-License-Identifier: BSD-2-Clause
"""pcapline l4: connections and reassembled TCP streams against tshark.

For every capture with TCP, each stream's reassembled client and server bytes must
equal tshark's `-z follow,tcp,raw,N` (which also checks that the stream numbers
and endpoints agree), and each connection's frames and bytes per direction must
equal `-z conv,tcp` (exactly for frames; conv shows bytes above 9999 in kB).
For every capture with UDP, each conversation of `l4 conns --udp` must equal
`-z conv,udp` the same way, numbered as tshark's udp.stream. Captures where we differ
from tshark by design are listed in DIFFERS (TCP) and UDP_DIFFERS with the reason and the
behaviour tested instead.
"""
import concurrent.futures
import re
import subprocess

import pytest

from conftest import BUILD, DATA

CLI = BUILD / "pcapline"
PCAPS = sorted(p for p in (DATA / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
PCAPS += sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng") and
                not (DATA / "pcaps" / p.name).exists())

# Captures that differ from tshark by design, with what is tested instead.
DIFFERS = {
    # Overlapping IPv4 fragments with different bytes: we keep the first copy of each
    # 8-byte block, tshark the later one. Same length; the counts match exactly.
    "ipv4-frag-tcp-http.pcap": "fragments",
    # The server stream stops at a hole that is never filled before the RST. tshark
    # drops the out-of-order bytes buffered after it; we never stall: a gap marker
    # (tshark's own "[N bytes missing in capture file]" text) and then those bytes.
    # tshark's stream is therefore a prefix of ours.
    "tcp-ooo-retrans-rst-http.pcap": "prefix",
    # Retransmissions that rewrite bytes (inconsistent overlaps, counted in
    # bad_overlaps): we keep the first copy, tshark a later one. Same length, same gaps.
    "tcp-reassembly-gaps-retrans.pcap": "overlap",
    # Captured with a small snaplen: no payload byte is in the file. tshark follows
    # nothing; we report the bytes the sequence numbers (up to the FIN) say were sent
    # as gaps.
    "malformed-truncated-tcp-headers.pcap": "snaplen",
}


def tshark(*args):
    # tshark exits 2 on a capture cut mid-record, after printing what it read.
    return subprocess.run(["tshark", *args], capture_output=True).stdout.decode()


UNITS = {"bytes": 1, "kB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3}


def tshark_conv(path, proto="tcp"):
    """{(A, B): [[frames, bytes, unit], ...]} from -z conv,tcp (or conv,udp): A -> B first,
    then B -> A."""
    res = {}
    for line in tshark("-r", str(path), "-q", "-z", f"conv,{proto}").splitlines():
        m = re.match(r"(\S+)\s+<->\s+(\S+)\s+(\d+) (\d+) (\w+)\s+(\d+) (\d+) (\w+)", line)
        if m:
            g = m.groups()
            # Columns: "<-" (B to A) then "->" (A to B).
            res[(g[0], g[1])] = [[int(g[5]), int(g[6]), g[7]], [int(g[2]), int(g[3]), g[4]]]
    return res


def bytes_match(exact, shown, unit):
    """conv,tcp shows kB and above truncated to a whole number."""
    m = UNITS[unit]
    return shown * m <= exact < (shown + 1) * m


def parse_follow(text):
    """{stream: {endpoint: bytes}} from one or more follow,tcp,raw blocks."""
    res = {}
    for block in text.split("Follow: tcp,raw\n")[1:]:
        lines = block.splitlines()
        stream = int(re.match(r"Filter: tcp.stream eq (\d+)", lines[0]).group(1))
        nodes = [lines[1].split(": ", 1)[1], lines[2].split(": ", 1)[1]]
        data = {nodes[0]: bytearray(), nodes[1]: bytearray()}
        for line in lines[3:]:
            if line.startswith("====="):
                break
            side = 1 if line.startswith("\t") else 0
            data[nodes[side]] += bytes.fromhex(line.strip())
        res[stream] = {k: bytes(v) for k, v in data.items()}
    return res


def ours_conns(path, *opts):
    out = subprocess.run([CLI, "-q", "l4", "conns", *opts, path], capture_output=True, check=True,
                         text=True).stdout
    res = {}
    for line in out.splitlines()[1:]:
        f = line.split()
        res[int(f[0])] = {"client": f[1], "server": f[2], "c2s": [int(f[3]), int(f[4])],
                          "s2c": [int(f[5]), int(f[6])], "state": f[9], "retrans": int(f[10]),
                          "ooo": int(f[11]), "gap_bytes": int(f[12]), "bad_overlaps": int(f[13])}
    return res


def protos(path):
    """Which of tcp and udp tshark sees in the capture. tshark's -c counts packets read,
    not packets shown (`-Y tcp -c 1` looks at the first packet only), so the output is
    read until both were seen, and tshark stopped there."""
    seen = set()
    with subprocess.Popen(["tshark", "-r", str(path), "-Y", "tcp or udp", "-T", "fields", "-e", "tcp.srcport",
                           "-e", "udp.srcport"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        for line in p.stdout:
            f = line.rstrip("\n").split("\t")
            seen |= {n for n, v in zip(("tcp", "udp"), f) if v}
            if len(seen) == 2:
                p.kill()
                break
    return seen


with concurrent.futures.ThreadPoolExecutor(4) as pool:
    PROTOS = dict(zip(PCAPS, pool.map(protos, PCAPS)))
TCP_PCAPS = [p for p in PCAPS if "tcp" in PROTOS[p]]
UDP_PCAPS = [p for p in PCAPS if "udp" in PROTOS[p]]


@pytest.mark.parametrize("pcap", TCP_PCAPS, ids=lambda p: p.name)
def test_counts_match_tshark(pcap):
    want = tshark_conv(pcap)
    got = ours_conns(pcap)
    assert len(got) == len(want)
    for s, conn in got.items():
        c, srv = conn["client"], conn["server"]
        if (c, srv) in want:
            a2b, b2a = want[(c, srv)]
        else:
            b2a, a2b = want[(srv, c)]
        for ours, theirs in ((conn["c2s"], a2b), (conn["s2c"], b2a)):
            assert ours[0] == theirs[0], f"stream {s}: frames"
            assert bytes_match(ours[1], theirs[1], theirs[2]), f"stream {s}: {ours[1]} bytes, {theirs[1:]}"


@pytest.mark.parametrize("pcap", TCP_PCAPS, ids=lambda p: p.name)
def test_streams_match_tshark(pcap):
    conns = ours_conns(pcap)
    args = ["-r", str(pcap), "-q"]
    for s in conns:
        args += ["-z", f"follow,tcp,raw,{s}"]
    want = parse_follow(tshark(*args))
    for s in conns:
        out = subprocess.run([CLI, "-q", "l4", "follow", pcap, str(s)], capture_output=True, check=True,
                             text=True).stdout
        got = parse_follow(out)[s]
        assert got.keys() == want[s].keys(), f"stream {s}"
        kind = DIFFERS.get(pcap.name)
        for ep in got:
            g, w = got[ep], want[s][ep]
            if g == w:
                continue
            assert kind is not None, f"stream {s} {ep}: {len(g)} bytes, tshark {len(w)}"
            if kind == "prefix":
                assert g.startswith(w) and g[len(w):].startswith(b"["), f"stream {s} {ep}"
                assert conns[s]["gap_bytes"] > 0
            elif kind == "overlap":
                assert len(g) == len(w) and conns[s]["bad_overlaps"] > 0, f"stream {s} {ep}"
            elif kind == "snaplen":
                assert w == b"" and re.fullmatch(rb"\[\d+ bytes missing in capture file\]\0", g)
            elif kind == "fragments":
                assert len(g) == len(w)


# UDP captures that differ from tshark by design, with what is tested instead.
UDP_DIFFERS = {
    # 93 first fragments (offset 0, MF set) whose other fragments are not in the file;
    # 90 of them are also cut (IPv4 total length 1500, fewer bytes in the frame). tshark
    # cannot reassemble them either, but dissects the UDP header of an unreassembled
    # first fragment, so each makes a one-frame conversation. Our reassembler never passes
    # a fragment on alone: a cut one is dropped at once, the others when the file ends
    # (l4.h), and each is counted in fragments_dropped.
    "malformed-dns-ip-frags.pcap": "unreassembled",
}


def tshark_udp_streams(path):
    """{udp.stream: {"addr:port", "addr:port"}} from tshark's per-frame fields."""
    res = {}
    # Not ICMP errors: tshark gives the UDP header they quote a udp.stream (and both IP
    # headers' addresses) but leaves it out of conv,udp.
    out = tshark("-r", str(path), "-Y", "udp && !icmp && !icmpv6", "-T", "fields", "-e", "udp.stream",
                 "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
                 "-e", "udp.dstport")
    for line in out.splitlines():
        f = line.split("\t")
        if f[0]:
            eps = {f"{f[1] or f[2]}:{f[3]}", f"{f[4] or f[5]}:{f[6]}"}
            assert res.setdefault(int(f[0]), eps) == eps
    return res


def l4_stats(path, *opts):
    out = subprocess.run([CLI, "-q", "l4", "stats", *opts, path], capture_output=True, check=True, text=True).stdout
    return {k: float(v) if "." in v else int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("pcap", UDP_PCAPS, ids=lambda p: p.name)
def test_udp_counts_match_tshark(pcap):
    """`l4 conns --udp` against `-z conv,udp`: number of conversations, frames and bytes
    per direction, and the conversation numbers against tshark's udp.stream. A datagram
    reassembled from IP fragments counts once, on its last fragment, with that frame's
    length, in both (dns-ip-fragmented-v4-v6.pcap: IPv4 and IPv6). No capture here has a
    UDP 5-tuple idle for longer than the 120 s timeout, so the default timeouts are used
    (and must give what --no-timeouts gives)."""
    want = tshark_conv(pcap, "udp")
    got = ours_conns(pcap, "--udp")
    if UDP_DIFFERS.get(pcap.name) == "unreassembled":
        frames = tshark("-r", str(pcap), "-T", "fields", "-e", "ip.flags.mf", "-e", "ip.frag_offset").split("\n")
        frames = [f for f in frames if f]
        assert len(frames) == 93 and set(frames) == {"1\t0"}
        assert got == {}
        assert len(want) == 93
        assert all(sorted([a2b[0], b2a[0]]) == [0, 1] for a2b, b2a in want.values())
        st = l4_stats(pcap)
        assert (st["frames"], st["fragments"], st["fragments_reassembled"], st["fragments_dropped"],
                st["connections"]) == (93, 93, 0, 93, 0)
        return
    assert pcap.name not in UDP_DIFFERS
    assert got == ours_conns(pcap, "--udp", "--no-timeouts")
    assert len(got) == len(want) > 0
    for s, conn in got.items():
        c, srv = conn["client"], conn["server"]
        if (c, srv) in want:
            a2b, b2a = want.pop((c, srv))
        else:
            b2a, a2b = want.pop((srv, c))
        for ours, theirs in ((conn["c2s"], a2b), (conn["s2c"], b2a)):
            assert ours[0] == theirs[0], f"conversation {s}: frames"
            assert bytes_match(ours[1], theirs[1], theirs[2]), f"conversation {s}: {ours[1]} bytes, {theirs[1:]}"
        assert conn["state"] == "ESTABLISHED" and conn["retrans"] == conn["ooo"] == conn["gap_bytes"] == 0
    streams = tshark_udp_streams(pcap)
    assert {s: {c["client"], c["server"]} for s, c in got.items()} == streams


def test_udp_fragments_reassembled():
    """dns-ip-fragmented-v4-v6.pcap: the fragmented answers are rebuilt and counted once."""
    pcap = DATA / "pcaps" / "dns-ip-fragmented-v4-v6.pcap"
    frags = tshark("-r", str(pcap), "-Y", "ip.flags.mf == 1 || ip.frag_offset > 0 || ipv6.fraghdr",
                   "-T", "fields", "-e", "frame.number").split()
    reassembled = tshark("-r", str(pcap), "-Y", "ip.fragment.count || ipv6.fragment.count",
                         "-T", "fields", "-e", "frame.number").split()
    st = l4_stats(pcap)
    assert st["fragments"] == len(frags) == 14
    assert st["fragments_reassembled"] == len(reassembled) == 7
    assert st["fragments_dropped"] == 0


def test_follow_format_matches_tshark_exactly():
    """Same header, chunk layout and trailer as tshark for a clean HTTP stream."""
    pcap = DATA / "pcaps" / "http-ipv6.pcap"
    ours = subprocess.run([CLI, "-q", "l4", "follow", pcap, "0"], capture_output=True, check=True).stdout
    theirs = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "follow,tcp,raw,0"], capture_output=True,
                            check=True).stdout
    assert ours == theirs


def test_usage_errors():
    assert subprocess.run([CLI, "l4"], capture_output=True).returncode == 2
    assert subprocess.run([CLI, "l4", "follow", "x.pcap", "-1"], capture_output=True).returncode == 2
    assert subprocess.run([CLI, "l4", "conns", "/nonexistent.pcap"], capture_output=True).returncode == 1
