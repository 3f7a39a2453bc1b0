# SPDX-License-Identifier: BSD-2-Clause
"""pcapline l4 on crafted captures: one TCP/IP edge case each, written with scapy.

Every case states the exact bytes `pcapline l4 follow FILE N` must deliver and the exact
`l4 conns` columns, and checks them against tshark: the whole follow output byte for
byte (`-z follow,tcp,raw,N`), the frames and bytes of `-z conv,tcp|udp`, and the
tcp.analysis fields where one exists. Where tshark differs by design (l4.h's policy), the
test says how and asserts tshark's bytes too. Hosts are 198.18.0.1 (client) and
198.18.0.2 (server); IPv6 ones are in 2001:db8::/32. Last, 1,000,000 half-open
connections check the table limit, the eviction count and the memory bound.
"""
import re
import struct
import subprocess
from decimal import Decimal

import pytest

from conftest import BUILD, sanitized

from scapy.all import IP, TCP, UDP, Ether, IPv6, IPv6ExtHdrFragment, Raw, fragment, fragment6, wrpcap

CLI = BUILD / "pcapline"
C, S = "198.18.0.1", "198.18.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"
# Explicit MAC addresses: scapy would otherwise look them up (and maybe send ARP requests).
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
T0 = 1_700_000_000_000_000  # capture time of the first packet, in microseconds
COLS = ["stream", "client", "server", "c2s_pkts", "c2s_bytes", "s2c_pkts", "s2c_bytes", "rel_start", "duration",
        "state", "retrans", "ooo", "gap_bytes", "bad_overlaps", "rtt_us", "zero_win", "resets", "midstream"]


# ---------- running pcapline and tshark ----------

def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, check=True).stdout


def tshark(*args):
    return subprocess.run(["tshark", *map(str, args)], capture_output=True).stdout.decode()


def conns(path, *opts):
    """`l4 conns` as a list of dicts, one per line, columns named as in COLS."""
    lines = run(CLI, "-q", "l4", "conns", *opts, path).decode().splitlines()
    assert lines[0].split()[:3] == ["stream", "client", "server"]
    res = []
    for line in lines[1:]:
        f = line.split()
        assert len(f) == len(COLS)
        d = dict(zip(COLS, f))
        for k in COLS:
            if k in ("rel_start", "duration", "rtt_us"):
                d[k] = float(d[k])
            elif k not in ("client", "server", "state"):
                d[k] = int(d[k])
        res.append(d)
    return res


def l4_stats(path, *opts):
    out = run(CLI, "-q", "l4", "stats", *opts, path).decode()
    return {k: float(v) if "." in v else int(v) for k, v in (line.split() for line in out.splitlines())}


def parse_follow(text):
    """(node0, node1, node0 bytes, node1 bytes) of one follow,tcp,raw block."""
    lines = text.decode().split("\n")
    i = lines.index("Follow: tcp,raw")
    nodes = [lines[i + 2].split(": ", 1)[1], lines[i + 3].split(": ", 1)[1]]
    data = [bytearray(), bytearray()]
    for line in lines[i + 4:]:
        if line.startswith("====="):
            break
        data[line.startswith("\t")] += bytes.fromhex(line.strip())
    return nodes[0], nodes[1], bytes(data[0]), bytes(data[1])


def follow(path, n):
    return run(CLI, "-q", "l4", "follow", path, n)


def tshark_follow(path, n):
    return subprocess.run(["tshark", "-r", str(path), "-q", "-z", f"follow,tcp,raw,{n}"], capture_output=True,
                          check=True).stdout


def tshark_conv(path, proto):
    """{frozenset of the two endpoints: {endpoint: (frames, bytes) it sent}} from -z conv."""
    res = {}
    for line in tshark("-r", path, "-q", "-z", f"conv,{proto}").splitlines():
        m = re.match(r"(\S+)\s+<->\s+(\S+)\s+(\d+) (\d+) bytes\s+(\d+) (\d+) bytes", line)
        if m:
            a, b, ba_f, ba_b, ab_f, ab_b = m.groups()
            res[frozenset((a, b))] = {a: (int(ab_f), int(ab_b)), b: (int(ba_f), int(ba_b))}
    return res


def tshark_fields(path, *fields, filt=None):
    args = ["-r", path, "-T", "fields"] + (["-Y", filt] if filt else [])
    for f in fields:
        args += ["-e", f]
    return [line.split("\t") for line in tshark(*args).splitlines()]


def check_conv_streams(path, got):
    """Frames per connection equal tshark's per tcp.stream (conv,tcp merges a reused
    5-tuple into one line)."""
    streams = [int(f[0]) for f in tshark_fields(path, "tcp.stream")]
    assert sorted(set(streams)) == [c["stream"] for c in got]
    for c in got:
        assert streams.count(c["stream"]) == c["c2s_pkts"] + c["s2c_pkts"]


def check_conv(path, got, proto="tcp"):
    """Our conversations' frames and bytes per direction equal -z conv's, and as many."""
    want = tshark_conv(path, proto)
    assert len(got) == len(want)
    for c in got:
        w = want[frozenset((c["client"], c["server"]))]
        assert w[c["client"]] == (c["c2s_pkts"], c["c2s_bytes"])
        assert w[c["server"]] == (c["s2c_pkts"], c["s2c_bytes"])


# ---------- building captures ----------

class Capture:
    """Packets of one or more TCP connections between C:cport and S:sport, 1 ms apart
    unless told otherwise; times are integer microseconds, written exactly."""

    def __init__(self, cport=40000, sport=80):
        self.cport, self.sport, self.t, self.pkts = cport, sport, T0, []

    def add(self, pkt, dt=1000):
        self.t += dt
        pkt.time = Decimal(self.t) / 1_000_000
        self.pkts.append(pkt)

    def tcp(self, src, sport, dst, dport, flags, seq, ack, data, dt, win):
        p = Ether(**MACS) / IP(src=src, dst=dst) / \
            TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=win)
        if data:
            p = p / Raw(data)
        self.add(p, dt)

    def c(self, flags, seq, ack=0, data=b"", dt=1000, win=65535):
        self.tcp(C, self.cport, S, self.sport, flags, seq, ack, data, dt, win)

    def s(self, flags, seq, ack=0, data=b"", dt=1000, win=65535):
        self.tcp(S, self.sport, C, self.cport, flags, seq, ack, data, dt, win)

    def handshake(self, ci, si, dt_synack=1000, dt_ack=1000):
        self.c("S", ci)
        self.s("SA", si, ci + 1, dt=dt_synack)
        self.c("A", ci + 1, si + 1, dt=dt_ack)

    def write(self, tmp_path, name):
        path = tmp_path / name
        wrpcap(str(path), self.pkts)
        return path


def check_follow(path, n, client_bytes, server_bytes, tshark_same=True):
    """Our follow of stream n carries exactly these bytes; with tshark_same, tshark's
    output is the same to the byte (header, chunks, trailer)."""
    ours = follow(path, n)
    c, s, cb, sb = parse_follow(ours)
    assert (cb, sb) == (client_bytes, server_bytes)
    if tshark_same:
        assert ours == tshark_follow(path, n)
    return c, s


# ---------- (a) out-of-order segments ----------

def test_out_of_order(tmp_path):
    """The client's second segment arrives before its first: buffered, then delivered
    in order; counted once in ooo (the segment that arrived ahead)."""
    k = Capture()
    ci, si = 1000, 5000
    k.handshake(ci, si)
    k.c("PA", ci + 6, si + 1, b"WORLD")
    k.c("PA", ci + 1, si + 1, b"HELLO")
    k.c("PA", ci + 11, si + 1, b"!")
    k.s("PA", si + 1, ci + 12, b"OK")
    k.s("PA", si + 3, ci + 12, b"!!")
    k.c("FA", ci + 12, si + 5)
    k.s("FA", si + 5, ci + 13)
    k.c("A", ci + 13, si + 6)
    path = k.write(tmp_path, "ooo.pcap")
    assert check_follow(path, 0, b"HELLOWORLD!", b"OK!!") == (f"{C}:40000", f"{S}:80")
    [c] = conns(path)
    assert (c["state"], c["ooo"], c["retrans"], c["gap_bytes"], c["bad_overlaps"], c["midstream"]) == \
        ("CLOSED", 1, 0, 0, 0, 0)
    assert (c["c2s_pkts"], c["s2c_pkts"]) == (7, 4)
    check_conv(path, [c])
    # tshark flags the late segment (HELLO, frame 5) as out of order instead: also one.
    assert tshark_fields(path, "frame.number", filt="tcp.analysis.out_of_order") == [["5"]]


# ---------- (b) duplicate segments ----------

def test_duplicates(tmp_path):
    """Exact copies of segments already delivered are dropped and counted as
    retransmissions, in both directions; tshark counts the same retransmissions."""
    k = Capture()
    ci, si = 7000, 9000
    k.handshake(ci, si)
    k.c("PA", ci + 1, si + 1, b"GET /")
    k.c("PA", ci + 1, si + 1, b"GET /", dt=200_000)
    k.s("PA", si + 1, ci + 6, b"200 OK")
    k.s("PA", si + 1, ci + 6, b"200 OK", dt=200_000)
    k.s("PA", si + 1, ci + 6, b"200 OK", dt=200_000)
    k.c("FA", ci + 6, si + 7)
    k.s("FA", si + 7, ci + 7)
    k.c("A", ci + 7, si + 8)
    path = k.write(tmp_path, "dup.pcap")
    check_follow(path, 0, b"GET /", b"200 OK")
    [c] = conns(path)
    assert (c["state"], c["retrans"], c["ooo"], c["gap_bytes"], c["bad_overlaps"]) == ("CLOSED", 3, 0, 0, 0)
    assert (c["c2s_pkts"], c["s2c_pkts"]) == (6, 5)
    check_conv(path, [c])
    assert len(tshark_fields(path, "frame.number", filt="tcp.analysis.retransmission")) == 3


# ---------- (c) overlapping segments with different bytes ----------

def test_overlap_first_copy_wins(tmp_path):
    """An out-of-order segment [11, 21) is buffered; then [1, 21) arrives with other bytes
    for [11, 21). First copy wins (l4.h): we deliver 0123456789 then the buffered XXXXXXXXXX
    and count one inconsistent overlap. tshark's follow keeps the later copy instead:
    0123456789abcdefghij. Then a retransmission rewriting delivered bytes ([1, 6) as
    ZZZZZ) changes nothing in either and is a retransmission only (no bad overlap: those
    bytes are no longer kept)."""
    k = Capture()
    ci, si = 1000, 5000
    k.handshake(ci, si)
    k.c("PA", ci + 11, si + 1, b"XXXXXXXXXX")
    k.c("PA", ci + 1, si + 1, b"0123456789abcdefghij")
    k.c("PA", ci + 1, si + 1, b"ZZZZZ")
    k.s("PA", si + 1, ci + 21, b"OK")
    k.c("FA", ci + 21, si + 3)
    k.s("FA", si + 3, ci + 22)
    k.c("A", ci + 22, si + 4)
    path = k.write(tmp_path, "overlap.pcap")
    check_follow(path, 0, b"0123456789XXXXXXXXXX", b"OK", tshark_same=False)
    _, _, tc, ts = parse_follow(tshark_follow(path, 0))
    assert (tc, ts) == (b"0123456789abcdefghij", b"OK")
    [c] = conns(path)
    assert (c["bad_overlaps"], c["ooo"], c["retrans"], c["gap_bytes"], c["state"]) == (1, 1, 1, 0, "CLOSED")
    check_conv(path, [c])


# ---------- (d) sequence number wraparound ----------

def test_sequence_wraparound(tmp_path):
    """Both ISNs a few bytes below 2^32: the streams cross zero, one segment out of order
    across the wrap, the FINs after it; nothing is lost, reordered or taken for old."""
    k = Capture()
    ci, si = 2**32 - 6, 2**32 - 2
    k.handshake(ci, si)
    k.c("PA", ci + 1, si + 1, b"aaaa")        # 2^32 - 5 .. 2^32 - 2: next is 2^32 - 1
    k.c("PA", ci + 13, si + 1, b"cccccccc")   # 7 .. 14: ahead of next across the wrap
    k.c("PA", ci + 5, si + 1, b"bbbbbbbb")    # 2^32 - 1 .. 6: crosses 2^32, fills the hole
    k.s("PA", si + 1, ci + 21, b"12345678")   # 2^32 - 1 .. 6
    k.s("PA", si + 9, ci + 21, b"9")
    k.c("FA", ci + 21, si + 10)
    k.s("FA", si + 10, ci + 22)
    k.c("A", ci + 22, si + 11)
    path = k.write(tmp_path, "wrap.pcap")
    check_follow(path, 0, b"aaaabbbbbbbbcccccccc", b"123456789")
    [c] = conns(path)
    assert (c["state"], c["ooo"], c["retrans"], c["gap_bytes"], c["bad_overlaps"]) == ("CLOSED", 1, 0, 0, 0)
    check_conv(path, [c])


# ---------- (e) no SYN: picked up mid-stream ----------

def test_midstream_pickup(tmp_path):
    """No handshake in the capture: the sender of the first packet is the client (as
    tshark's node 0), the streams start at the first sequence numbers seen, midstream is
    1 and no RTT is measured."""
    k = Capture(cport=51000, sport=6379)
    ci, si = 123456789, 987654321
    k.c("PA", ci, si, b"PING\r\n")
    k.s("PA", si, ci + 6, b"+PONG\r\n")
    k.c("PA", ci + 6, si + 7, b"QUIT\r\n")
    k.s("PA", si + 7, ci + 12, b"+OK\r\n")
    k.s("FA", si + 12, ci + 12)
    k.c("FA", ci + 12, si + 13)
    k.s("A", si + 13, ci + 13)
    path = k.write(tmp_path, "midstream.pcap")
    assert check_follow(path, 0, b"PING\r\nQUIT\r\n", b"+PONG\r\n+OK\r\n") == (f"{C}:51000", f"{S}:6379")
    [c] = conns(path)
    assert (c["midstream"], c["state"], c["rtt_us"], c["gap_bytes"], c["ooo"]) == (1, "CLOSED", 0.0, 0, 0)
    check_conv(path, [c])


# ---------- (f) RST mid-stream ----------

def test_rst_midstream(tmp_path):
    """The server resets the connection in the middle: the data before the RST is
    delivered, the state is RESET with one reset. The RST carries diagnostic text
    (RFC 9293 3.10.7.4), which is not stream data: we leave it out; tshark's follow puts
    it in the server stream."""
    k = Capture()
    ci, si = 3000, 8000
    k.handshake(ci, si)
    k.c("PA", ci + 1, si + 1, b"GET /big HTTP/1.1\r\n\r\n")
    k.s("A", si + 1, ci + 22)
    k.s("PA", si + 1, ci + 22, b"HTTP/1.1 200 OK\r\n")
    k.s("RA", si + 18, ci + 22, b"reset: no buffer")
    path = k.write(tmp_path, "rst.pcap")
    check_follow(path, 0, b"GET /big HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n", tshark_same=False)
    _, _, tc, ts = parse_follow(tshark_follow(path, 0))
    assert (tc, ts) == (b"GET /big HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nreset: no buffer")
    [c] = conns(path)
    assert (c["state"], c["resets"], c["gap_bytes"], c["retrans"], c["midstream"]) == ("RESET", 1, 0, 0, 0)
    assert (c["c2s_pkts"], c["s2c_pkts"]) == (3, 4)
    check_conv(path, [c])
    # The same without the text: tshark's bytes are ours to the byte.
    k.pkts[-1][TCP].remove_payload()
    del k.pkts[-1][IP].len, k.pkts[-1][IP].chksum, k.pkts[-1][TCP].chksum
    path = k.write(tmp_path, "rst-empty.pcap")
    check_follow(path, 0, b"GET /big HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n")
    assert conns(path)[0]["state"] == "RESET"


# ---------- (g) port reuse ----------

def test_port_reuse(tmp_path):
    """One 5-tuple, three connections: FIN/FIN then a SYN with a new ISN, an RST then a
    SYN with yet another ISN. Numbered as tshark's tcp.stream, with its frame counts per
    stream and its bytes; port_reuse counts the two new SYNs."""
    k = Capture(cport=45678, sport=443)
    ci, si = 100, 200
    k.handshake(ci, si)
    k.c("PA", ci + 1, si + 1, b"one")
    k.s("PA", si + 1, ci + 4, b"1")
    k.c("FA", ci + 4, si + 2)
    k.s("FA", si + 2, ci + 5)
    k.c("A", ci + 5, si + 3)
    ci, si = 50000, 60000
    k.handshake(ci, si, dt_synack=2000)
    k.c("PA", ci + 1, si + 1, b"two", dt=500_000)
    k.s("PA", si + 1, ci + 4, b"22")
    k.s("RA", si + 3, ci + 4)
    ci, si = 70000, 80000
    k.handshake(ci, si)
    k.c("PA", ci + 1, si + 1, b"three")
    k.s("PA", si + 1, ci + 6, b"333")
    path = k.write(tmp_path, "reuse.pcap")
    got = conns(path)
    assert [c["stream"] for c in got] == [0, 1, 2]
    assert [c["state"] for c in got] == ["CLOSED", "RESET", "ESTABLISHED"]
    assert [(c["c2s_pkts"], c["s2c_pkts"]) for c in got] == [(5, 3), (3, 3), (3, 2)]
    assert [c["rtt_us"] for c in got] == [2000.0, 3000.0, 2000.0]
    check_conv_streams(path, got)
    assert [int(f[0]) for f in tshark_fields(path, "tcp.stream")] == [0] * 8 + [1] * 6 + [2] * 5
    for n, (cb, sb) in enumerate([(b"one", b"1"), (b"two", b"22"), (b"three", b"333")]):
        check_follow(path, n, cb, sb)
    st = l4_stats(path)
    assert (st["connections"], st["port_reuse"], st["ended_idle"]) == (3, 2, 0)


def test_port_reuse_same_isn_after_fin(tmp_path):
    """A SYN with the same ISN as the first connection's, after FIN/FIN: a new connection
    for us (l4.h: after a FIN or RST, whatever the ISN). tshark 4.0 compares the ISN only
    and keeps every frame in stream 0, where "ONE" is a retransmission of "one" (so its
    follow shows "one" alone); a tshark that splits there too must agree with us to the
    byte."""
    k = Capture(cport=45679, sport=443)
    ci, si = 100, 200
    for data in (b"one", b"ONE"):
        k.handshake(ci, si)
        k.c("PA", ci + 1, si + 1, data)
        k.c("FA", ci + 4, si + 1)
        k.s("FA", si + 1, ci + 5)
        k.c("A", ci + 5, si + 2)
    path = k.write(tmp_path, "reuse-same-isn.pcap")
    got = conns(path)
    assert [(c["stream"], c["state"], c["c2s_pkts"], c["s2c_pkts"], c["retrans"]) for c in got] == \
        [(0, "CLOSED", 5, 2, 0), (1, "CLOSED", 5, 2, 0)]
    assert l4_stats(path)["port_reuse"] == 1
    check_follow(path, 0, b"one", b"", tshark_same=False)
    check_follow(path, 1, b"ONE", b"", tshark_same=False)
    streams = [int(f[0]) for f in tshark_fields(path, "tcp.stream")]
    if streams == [0] * 7 + [1] * 7:
        check_conv_streams(path, got)
        check_follow(path, 0, b"one", b"")
        check_follow(path, 1, b"ONE", b"")
    else:
        assert streams == [0] * 14
        _, _, tc, ts = parse_follow(tshark_follow(path, 0))
        assert (tc, ts) == (b"one", b"")


# ---------- (h) fragmented UDP, IPv4 and IPv6 ----------

def test_fragmented_udp(tmp_path):
    """A 3000-byte UDP datagram over IPv4 in three fragments, the last one first (it
    completes on the middle one), and one over IPv6 in three fragments, in order; an
    unfragmented answer to each. Each datagram counts once, with the frame length of the
    fragment that completes it, as in tshark's conv,udp."""
    k = Capture()
    payload = bytes(range(256)) * 11 + b"end" * 61 + b"!"
    d4 = Ether(**MACS) / IP(src=C, dst=S, id=0x1234) / UDP(sport=5353, dport=53) / Raw(payload)
    f4 = fragment(d4[IP], fragsize=1480)
    assert len(f4) == 3
    for f in (f4[2], f4[0], f4[1]):
        k.add(Ether(**MACS) / f)
    k.add(Ether(**MACS) / IP(src=S, dst=C) / UDP(sport=53, dport=5353) / Raw(b"answer"))
    d6 = Ether(**MACS) / IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(id=0xabcd) / UDP(sport=5000, dport=6000) / \
        Raw(payload)
    f6 = fragment6(d6, 1280)
    assert len(f6) == 3
    for f in f6:
        k.add(f)
    k.add(Ether(**MACS) / IPv6(src=S6, dst=C6) / UDP(sport=6000, dport=5000) / Raw(b"v6 answer"))
    path = k.write(tmp_path, "frag.pcap")
    got = conns(path, "--udp")
    assert [(c["client"], c["server"]) for c in got] == [(f"{C}:5353", f"{S}:53"), (f"{C6}:5000", f"{S6}:6000")]
    lens = [len(p) for p in k.pkts]
    assert [(c["c2s_pkts"], c["c2s_bytes"], c["s2c_pkts"], c["s2c_bytes"]) for c in got] == \
        [(1, lens[2], 1, lens[3]), (1, lens[6], 1, lens[7])]
    check_conv(path, got, "udp")
    # tshark shows the rebuilt datagrams in the completing frames, with the whole payload.
    rows = tshark_fields(path, "frame.number", "udp.length", "udp.payload", filt="udp")
    assert [(r[0], int(r[1])) for r in rows] == [("3", 3008), ("4", 14), ("7", 3008), ("8", 17)]
    assert bytes.fromhex(rows[0][2]) == bytes.fromhex(rows[2][2]) == payload
    st = l4_stats(path)
    assert (st["frames"], st["fragments"], st["fragments_reassembled"], st["fragments_dropped"],
            st["connections"]) == (8, 6, 2, 0, 2)


def test_fragmented_tcp_payload(tmp_path):
    """The bytes a reassembled datagram carries, seen through follow: a 3000-byte TCP
    segment in three IPv4 fragments (middle one first), and one in three IPv6 fragments,
    each on its own connection; both streams equal tshark's to the byte."""
    payload = bytes(range(251)) * 11 + b"tail" * 59 + b"!!!"
    assert len(payload) == 3000
    k = Capture()

    def seg(ip, a, b, sp, dp, flags, seq, ack=0, data=b""):
        p = Ether(**MACS) / ip(src=a, dst=b) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        return p / Raw(data) if data else p

    for ip, src, dst, cport in ((IP, C, S, 40001), (IPv6, C6, S6, 40002)):
        k.add(seg(ip, src, dst, cport, 80, "S", 10))
        k.add(seg(ip, dst, src, 80, cport, "SA", 20, 11))
        k.add(seg(ip, src, dst, cport, 80, "A", 11, 21))
        big = seg(ip, src, dst, cport, 80, "PA", 11, 21, payload)
        if ip is IP:
            frags = [Ether(**MACS) / f for f in fragment(big[IP], fragsize=1480)]
            frags = [frags[1], frags[0], frags[2]]
        else:
            big = Ether(**MACS) / IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=77) / big[TCP]
            frags = fragment6(big, 1280)
        assert len(frags) == 3
        for f in frags:
            k.add(f)
        k.add(seg(ip, dst, src, 80, cport, "PA", 21, 3011, b"thanks"))
    path = k.write(tmp_path, "frag-tcp.pcap")
    check_follow(path, 0, payload, b"thanks")
    check_follow(path, 1, payload, b"thanks")
    got = conns(path)
    assert [(c["c2s_pkts"], c["s2c_pkts"], c["gap_bytes"], c["ooo"]) for c in got] == [(3, 2, 0, 0)] * 2
    check_conv(path, got)
    st = l4_stats(path)
    assert (st["fragments"], st["fragments_reassembled"], st["fragments_dropped"]) == (6, 2, 0)


# ---------- (i) zero windows and the handshake RTT ----------

def test_zero_window_and_rtt(tmp_path):
    """SYN, SYN+ACK 12.345 ms later, ACK 7.655 ms after that: RTT 20 ms, as tshark's
    tcp.analysis.initial_rtt. The server advertises a zero window three times (one of them
    on its FIN, which neither tshark nor we count) and the client once."""
    k = Capture()
    ci, si = 11, 22
    k.handshake(ci, si, dt_synack=12_345, dt_ack=7_655)
    k.c("PA", ci + 1, si + 1, b"x" * 100)
    k.s("A", si + 1, ci + 101, win=0)
    k.s("A", si + 1, ci + 101, win=0, dt=100_000)
    k.c("A", ci + 101, si + 1, win=0)
    k.s("A", si + 1, ci + 101, win=8192)
    k.c("PA", ci + 101, si + 1, b"y" * 50)
    k.s("FA", si + 1, ci + 151, win=0)
    k.c("FA", ci + 151, si + 2)
    k.s("A", si + 2, ci + 152)
    path = k.write(tmp_path, "zwin.pcap")
    check_follow(path, 0, b"x" * 100 + b"y" * 50, b"")
    [c] = conns(path)
    assert (c["zero_win"], c["rtt_us"], c["state"]) == (3, 20000.0, "CLOSED")
    zw = tshark_fields(path, "frame.number", filt="tcp.analysis.zero_window")
    assert len(zw) == c["zero_win"]
    rtts = {f[0] for f in tshark_fields(path, "tcp.analysis.initial_rtt", filt="tcp.analysis.initial_rtt")}
    assert len(rtts) == 1 and round(float(rtts.pop()) * 1e6, 3) == c["rtt_us"]
    check_conv(path, [c])


# ---------- (j) 1,000,000 half-open connections ----------

def syn_flood(path, indices):
    """SYN number i for each i of indices, from distinct 5-tuples, raw IPv4 (link type
    101), 1 us apart: source 198.18.0.0 + i % 2^17 (the whole /15), port 1024 + i / 2^17, to
    198.19.255.254:80. Checksums are right (IP and TCP), though the reader does not check
    them. Written in one go."""
    rec = struct.Struct("<IIII")
    ip = struct.Struct("!BBHHHBBH4s4s")
    tcp = struct.Struct("!HHIIBBHHH")
    dst = bytes([198, 19, 255, 254])
    dst_sum = (198 << 8 | 19) + (255 << 8 | 254)

    def fold(x):
        while x >> 16:
            x = (x & 0xFFFF) + (x >> 16)
        return x

    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    base = 198 << 24 | 18 << 16
    ip_const = (0x4500 + 40 + 0x4006) + dst_sum   # version/ihl/tos, total length, ttl/proto
    tcp_const = dst_sum + 6 + 20 + 80 + (5 << 12 | 0x02) + 65535   # pseudo header, dport, flags, window
    sec, usec = 1_700_000_000, 0
    for i in indices:
        src = base + (i & 0x1FFFF)
        sport = 1024 + (i >> 17)
        seq = (i * 2654435761) & 0xFFFFFFFF
        s_sum = (src >> 16) + (src & 0xFFFF)
        ipck = 0xFFFF - fold(ip_const + (i & 0xFFFF) + s_sum)
        tck = 0xFFFF - fold(tcp_const + s_sum + sport + (seq >> 16) + (seq & 0xFFFF))
        out += rec.pack(sec, usec, 40, 40)
        out += ip.pack(0x45, 0, 40, i & 0xFFFF, 0, 64, 6, ipck, src.to_bytes(4, "big"), dst)
        out += tcp.pack(sport, 80, seq, 0, 5 << 4, 0x02, 65535, tck, 0)
        usec += 1
        if usec == 1_000_000:
            sec, usec = sec + 1, 0
    path.write_bytes(out)


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    path = tmp_path_factory.mktemp("flood") / "syn-1m.pcap"
    syn_flood(path, range(1_000_000))
    yield path
    path.unlink()


def test_syn_flood_packets(tmp_path):
    """The generator's packets are what tshark calls SYNs with good checksums, from the
    addresses and ports intended (first ones, and where the source port moves on)."""
    path = tmp_path / "syn-sample.pcap"
    syn_flood(path, [0, 1, 131071, 131072, 999_999])
    out = subprocess.run(["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                          "-T", "fields", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                          "-e", "tcp.flags", "-e", "ip.checksum.status", "-e", "tcp.checksum.status"],
                         capture_output=True, text=True).stdout
    good = "1"  # tshark's checksum status: 0 bad, 1 good, 2 unverified
    assert [line.split("\t") for line in out.splitlines()] == [
        [src, port, "198.19.255.254", "80", "0x0002", good, good] for src, port in
        [("198.18.0.0", "1024"), ("198.18.0.1", "1024"), ("198.19.255.255", "1024"), ("198.18.0.0", "1025"),
         ("198.19.66.63", "1031")]]
    st = l4_stats(path)
    assert (st["frames"], st["connections"], st["not_decoded"]) == (5, 5, 0)


# Peak memory bound. l4.h: at most L4_CONN_BYTES (512) per tracked connection, table slot
# included (today a connection is a 416-byte calloc, ~432 with malloc's header, plus 32-64
# bytes of hash table at its 25-50% load). On top of cap * 512: the baseline of `pcapline l4
# stats` (~7 MiB measured on a tiny capture), up to 8 MiB of input pages mapped and not yet
# released (the reader drops them in 4 MiB steps), and the hash table's old copy while it
# doubles. 32 MiB covers these with margin. Measured on this machine: 58.3 MiB peak for
# 100,000 (bound 80.8 MiB) and 129.2 MiB for 262,144 (bound 160 MiB).
BASE_KIB = 32 * 1024


@pytest.mark.parametrize("cap", [100_000, 262_144])
def test_one_million_half_open(flood, cap):
    """1,000,000 SYNs of distinct 5-tuples within 1 s (no idle timeout applies): every one
    starts a connection, all but the last cap are evicted, and memory stays within the
    bound for cap connections. 262,144 is the default limit."""
    opts = ["--max-conns", str(cap)] if cap != 262_144 else []
    st = l4_stats(flood, *opts)
    assert st["frames"] == 1_000_000 and st["not_decoded"] == 0
    assert st["connections"] == 1_000_000
    assert st["evicted"] == 1_000_000 - cap
    assert st["ended_idle"] == st["port_reuse"] == st["fragments"] == 0
    # and the connections were really held: at least their 272-byte l4_conn_info each
    assert st["max_rss_kib"] > cap * 272 // 1024, st
    if sanitized(CLI):
        pytest.skip(f"peak RSS {st['max_rss_kib']} KiB not judged under ASan (its quarantine holds freed memory)")
    assert st["max_rss_kib"] < cap * 512 // 1024 + BASE_KIB, st


def test_stats_memory_is_its_own(tmp_path):
    """max_rss_kib is the peak of `l4 stats` itself, not of the process that started it
    (ru_maxrss would carry this test's 256 MiB peak across fork and exec)."""
    k = Capture()
    k.handshake(1, 2)
    path = k.write(tmp_path, "tiny.pcap")
    ballast = bytearray(256 << 20)
    ballast[::4096] = b"x" * len(range(0, len(ballast), 4096))
    st = l4_stats(path)
    del ballast
    assert (st["frames"], st["connections"]) == (3, 1)
    assert 0 < st["max_rss_kib"] < 32 * 1024, st
