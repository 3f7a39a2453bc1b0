#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Writes the seed corpora of the protocol and DNS fuzz targets.

    tests/fuzz/make_seeds.py [OUTDIR]      (default: tests/fuzz/corpus)

Messages are built here from proto/PROTOCOL.md alone, not with proto/wire.c, so the seeds
double as a second, independent reading of the specification: fuzz_frame aborts when a
payload that decodes does not re-encode to the same bytes. The DNS seeds (fuzz_dns) are
the DNS packets of the shared captures in tests/data/pcaps, whole frames and bare
messages, plus hand-made messages for each rule of shared/dns.h. The L4 seeds (fuzz_l4)
are the first frames of the TCP captures with reassembly anomalies, their private IPv4
addresses (in the headers and as text, such as an HTTP Host line) moved into the test
range 198.18.0.0/15 with the header checksums made right again. Output is deterministic,
so re-running it leaves the checked-in corpora unchanged.
"""

import os
import re
import struct
import sys

MAGIC = 0x50434C4E
HELLO, WELCOME, BATCH, ACK, STATS, NAMES, HEARTBEAT, CONTROL, ERROR = range(1, 10)
F_LZ4 = 0x0001


def frame(ftype, payload, flags=0, version=1, magic=MAGIC, reserved=0):
    return struct.pack(">IBBHII", magic, version, ftype, flags, len(payload), reserved) + payload


def lstr(s):
    b = s if isinstance(s, bytes) else s.encode("ascii")
    return struct.pack(">H", len(b)) + b


def hello(sensor_id="s1", version="0.1.0", caps=1, epoch=0x0102030405060708, token="",
          ifaces=((1, 65535, "eth0"),), n_ifaces=None):
    out = lstr(sensor_id) + lstr(version) + struct.pack(">IQ", caps, epoch) + lstr(token)
    out += struct.pack(">H", len(ifaces) if n_ifaces is None else n_ifaces)
    for linktype, snaplen, name in ifaces:
        out += struct.pack(">II", linktype, snaplen) + lstr(name)
    return out


def welcome(epoch=0x0102030405060708, next_seq=1, max_frame=1 << 20, heartbeat_ms=5000):
    return struct.pack(">QQII", epoch, next_seq, max_frame, heartbeat_ms)


def record(ts_ns, iface, data, origlen=None, reserved=0):
    return struct.pack(">QHHII", ts_ns, iface, reserved, len(data),
                       len(data) if origlen is None else origlen) + data


def batch(seq, records, compress=False, n_records=None, raw_len=None):
    """Returns (flags, payload) for a batch of already encoded records."""
    raw = b"".join(records)
    hdr = struct.pack(">QII", seq, len(records) if n_records is None else n_records,
                      len(raw) if raw_len is None else raw_len)
    if compress:
        return F_LZ4, hdr + lz4_block(raw)
    return 0, hdr + raw


def ack(epoch=0x0102030405060708, seq=1):
    return struct.pack(">QQ", epoch, seq)


def stats(ts_ns, counters):
    out = struct.pack(">QH", ts_ns, len(counters))
    for cid, value in counters:
        out += struct.pack(">HQ", cid, value)
    return out


def names(events, n=None):
    """events: (ts_ns, source, family, addr bytes, port, ttl_s, name, ns) tuples."""
    out = struct.pack(">H", len(events) if n is None else n)
    for ts_ns, source, family, addr, port, ttl, name, ns in events:
        out += struct.pack(">QBB", ts_ns, source, family) + addr
        out += struct.pack(">HI", port, ttl) + lstr(name) + lstr(ns)
    return out


def heartbeat(ts_ns):
    return struct.pack(">Q", ts_ns)


def error(code, text):
    return struct.pack(">H", code) + lstr(text)


def _lz4_len(out, value):
    # Lengths of 15 and more continue in bytes of 255 and end with a byte below 255.
    while value >= 255:
        out.append(255)
        value -= 255
    out.append(value)


def _lz4_sequence(out, literals, match_len=0, offset=1):
    lit = len(literals)
    token = min(lit, 15) << 4
    if match_len:
        token |= min(match_len - 4, 15)
    out.append(token)
    if lit >= 15:
        _lz4_len(out, lit - 15)
    out += literals
    if match_len:
        out += struct.pack("<H", offset)
        if match_len - 4 >= 15:
            _lz4_len(out, match_len - 4 - 15)


def lz4_block(raw):
    """Encodes raw as one lz4 block (lz4_Block_format.md).

    Only runs of one repeated byte become matches (offset 1); everything else stays
    literal. A poor compressor, but a valid one, and small enough to check by eye. The
    format wants the last match to start at least 12 bytes before the end and the last
    5 bytes to be literals.
    """
    out = bytearray()
    n = len(raw)
    lit_start = 0
    i = 1
    while i <= n - 12:
        run = 0
        while i + run < n - 5 and raw[i + run] == raw[i - 1]:
            run += 1
        if run >= 4:
            _lz4_sequence(out, raw[lit_start:i], run)
            i += run
            lit_start = i
        else:
            i += 1
    _lz4_sequence(out, raw[lit_start:])
    return bytes(out)


TS = 1700000000123456789


def frame_seeds():
    h1 = hello(token="t0k3n", ifaces=((1, 65535, "eth0"), (276, 262144, "any")))
    recs = [record(TS, 0, bytes.fromhex("deadbeef"), origlen=60),
            record(TS + 1000, 1, bytes.fromhex("0102"))]
    packet = bytes(range(64)) * 4 + bytes(200)
    big = [record(TS + k, k % 2, packet, origlen=1514) for k in range(8)]
    v4 = bytes([198, 18, 0, 50])
    v6 = bytes.fromhex("20010db8000000000000000000000001")
    ev_dns = (TS, 1, 4, v4, 0, 60, "www.example.com", "")
    ev_static = (TS + 1000, 3, 6, v6, 443, 0, "api", "prod")
    label63 = "a" * 63
    ev_max = (2**64 - 1, 255, 6, bytes(range(16)), 65535, 0x7FFFFFFF,
              ".".join([label63] * 3 + ["b" * 61]), "_" * 63)
    b_raw = batch(42, recs)
    b_lz4 = batch(43, big, compress=True)
    seeds = {
        "hello": frame(HELLO, h1),
        "hello-min": frame(HELLO, hello(sensor_id="a", version="", caps=0, ifaces=((0, 1, ""),))),
        "hello-max": frame(HELLO, hello(sensor_id="s" * 128, version="v" * 32, caps=0xFFFFFFFF,
                                        token="t" * 256,
                                        ifaces=[(i, 262144, "i" * 64) for i in range(64)])),
        "welcome": frame(WELCOME, welcome(next_seq=42)),
        "batch-raw": frame(BATCH, b_raw[1], b_raw[0]),
        "batch-lz4": frame(BATCH, b_lz4[1], b_lz4[0]),
        "ack": frame(ACK, ack(seq=41)),
        "stats": frame(STATS, stats(TS, [(1, 1000), (2, 3), (0x1234, 7)])),
        "names": frame(NAMES, names([ev_dns, ev_static])),
        "names-max": frame(NAMES, names([ev_max] * 256)),
        "names-hosts": frame(NAMES, names([(TS, 2, 4, bytes([127, 0, 0, 1]), 0, 0, "localhost", ""),
                                           (TS, 2, 6, bytes(15) + b"\x01", 0, 0, "ip6-localhost", "")])),
        "heartbeat": frame(HEARTBEAT, heartbeat(TS)),
        "error": frame(ERROR, error(3, "bad token")),
    }
    seeds["session"] = b"".join(seeds[k] for k in (
        "hello", "welcome", "batch-raw", "batch-lz4", "ack", "stats", "names", "heartbeat",
        "error"))
    # Malformed frames, one fault each.
    seeds.update({
        "bad-magic": frame(ACK, ack(), magic=0x50434C4F),
        "bad-version": frame(ACK, ack(), version=2),
        "bad-names-count": frame(NAMES, b"\0\0"),
        "bad-names-family": frame(NAMES, names([(TS, 1, 5, v4, 0, 60, "x", "")])),
        "bad-names-source": frame(NAMES, names([(TS, 0, 4, v4, 0, 60, "x", "")])),
        "bad-names-ttl": frame(NAMES, names([(TS, 1, 4, v4, 0, 0x80000000, "x", "")])),
        "bad-names-dots": frame(NAMES, names([(TS, 1, 4, v4, 0, 60, "www..example.com", "")])),
        "bad-names-char": frame(NAMES, names([(TS, 1, 4, v4, 0, 60, "www.exa*mple.com", "")])),
        "bad-names-ns": frame(NAMES, names([(TS, 1, 4, v4, 0, 60, "x", "n" * 64)])),
        "bad-names-cut": frame(NAMES, names([ev_dns, ev_static])[:-1]),
        "bad-names-trailing": frame(NAMES, names([ev_dns]) + b"\0"),
        "bad-type-control": frame(CONTROL, b"\0\0"),
        "bad-type-10": frame(10, b""),
        "bad-reserved": frame(ACK, ack(), reserved=1),
        "bad-flags": frame(ACK, ack(), flags=F_LZ4),
        "bad-len": frame(ACK, ack())[:8] + struct.pack(">I", (1 << 20) + 1) + bytes(4),
        "bad-hello-id": frame(HELLO, hello(sensor_id="../x")),
        "bad-hello-ifaces": frame(HELLO, hello(ifaces=(), n_ifaces=0)),
        "bad-hello-cut": frame(HELLO, h1[:30]),
        "bad-hello-trailing": frame(HELLO, h1 + b"\0"),
        "bad-batch-caplen": frame(BATCH, batch(1, [record(TS, 0, b"abcd", origlen=3)])[1]),
        "bad-batch-iface": frame(BATCH, batch(1, [record(TS, 64, b"abcd")])[1]),
        "bad-batch-lz4-len": frame(BATCH, b_lz4[1][:12] + struct.pack(">I", 1 + len(
            b"".join(big))) + b_lz4[1][16:], F_LZ4),
        "bad-batch-lz4-garbage": frame(BATCH, b_lz4[1][:16] + b"\xff" * 32, F_LZ4),
        "bad-stats-dup": frame(STATS, stats(TS, [(1, 1), (1, 2)])),
        "bad-error-text": frame(ERROR, error(1, "a\nb")),
    })
    return seeds


def batch_seeds():
    recs = [record(TS, 0, bytes.fromhex("deadbeef"), origlen=60),
            record(TS + 1000, 1, bytes.fromhex("0102"))]
    zeros = [record(0, 0, bytes(32))]
    many = [record(TS + k, k % 4, bytes([k & 0xFF]) * (k % 97), origlen=1514) for k in range(200)]
    seeds = {
        "raw": batch(1, recs)[1],
        "raw-zero-caplen": batch(2, [record(TS, 0, b"", origlen=64)])[1],
        "lz4-one": batch(7, zeros, compress=True)[1],
        "lz4-many": batch(3, many, compress=True)[1],
        "raw-many": batch(3, many)[1],
        # Malformed: one fault each.
        "bad-caplen": batch(1, [record(TS, 0, b"abcd", origlen=3)])[1],
        "bad-reserved": batch(1, [record(TS, 0, b"abcd", reserved=1)])[1],
        "bad-count": batch(1, recs, n_records=1)[1],
        "bad-rec-cut": batch(1, recs, raw_len=45)[1][:-1],
        "bad-lz4-len": batch(7, zeros, compress=True, raw_len=53)[1],
        "bad-lz4-garbage": batch(7, zeros)[1][:16] + b"\xf0" + b"\xff" * 8,
    }
    return seeds


# ---- DNS seeds (fuzz_dns) -------------------------------------------------------------

# fuzz_dns's first byte: 0 a DNS message, 1 DNS over TCP, 2.. a frame of this link type.
DNS_RAW, DNS_TCP = 0, 1
LINK_MODE = {0: 2, 1: 3, 101: 4, 12: 5, 228: 6, 229: 7, 108: 8, 113: 9, 276: 10}
PCAPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "pcaps")
DNS_SEEDS_PER_CAPTURE = 24  # DNS packets taken from each capture
DNS_CAPTURES = ("dns-udp-queries.pcap", "dns-tcp-multi-request.pcap", "tls13-handshake-sni.pcap",
                "http-ipv6.pcap", "malformed-dns-ip-frags.pcap", "dns-ip-fragmented-v4-v6.pcap")


def read_pcap(path):
    """(linktype, [frame bytes]) of a classic pcap file, either byte order."""
    with open(path, "rb") as f:
        b = f.read()
    magic = b[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(order + "I", b[20:24])[0] & 0x0FFFFFFF
    frames, off = [], 24
    while off + 16 <= len(b):
        caplen = struct.unpack(order + "I", b[off + 8:off + 12])[0]
        frames.append(b[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return linktype, frames


def l4_of_ethernet(frame):
    """(proto, sport, dport, payload) of an Ethernet frame, or None. Fragments included:
    the fuzz target sees them refused, and the bare message seeds still get their bytes."""
    off, etype = 14, struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0
    while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        etype = struct.unpack(">H", frame[off + 2:off + 4])[0]
        off += 4
    if etype == 0x0800 and len(frame) >= off + 20:
        proto, start = frame[off + 9], off + (frame[off] & 0x0F) * 4
    elif etype == 0x86DD and len(frame) >= off + 40:
        proto, start = frame[off + 6], off + 40
    else:
        return None
    if proto == 17 and len(frame) >= start + 8:
        sport, dport = struct.unpack(">HH", frame[start:start + 4])
        return 17, sport, dport, frame[start + 8:]
    if proto == 6 and len(frame) >= start + 20:
        sport, dport = struct.unpack(">HH", frame[start:start + 4])
        return 6, sport, dport, frame[start + (frame[start + 12] >> 4) * 4:]
    return None


def dns_name(name):
    out = b""
    for label in name.split(".") if name else []:
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def dns_msg(question, answers, flags=0x8180):
    """question: (name, type) or None; answers: (owner bytes, type, rdata bytes)."""
    out = struct.pack(">HHHHHH", 0x1234, flags, 1 if question else 0, len(answers), 0, 0)
    if question:
        out += dns_name(question[0]) + struct.pack(">HH", question[1], 1)
    for owner, rtype, rdata in answers:
        out += owner + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata
    return out


def wrap_ipv4_udp(payload, sport=53, dport=40000):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       bytes([192, 0, 2, 53]), bytes([192, 0, 2, 1])) + udp


def dns_seeds():
    seeds = {}
    for fname in DNS_CAPTURES:
        linktype, frames = read_pcap(os.path.join(PCAPS, fname))
        stem = fname.rsplit(".", 1)[0]
        taken = 0
        for i, frame in enumerate(frames, 1):
            l4 = l4_of_ethernet(frame) if linktype == 1 else None
            if not l4 or not ({l4[1], l4[2]} & {53, 5353}) or not l4[3]:
                continue
            taken += 1
            if taken > DNS_SEEDS_PER_CAPTURE:
                break
            seeds[f"{stem}-{i:03d}-frame"] = bytes([LINK_MODE[linktype]]) + frame
            seeds[f"{stem}-{i:03d}-msg"] = bytes([DNS_TCP if l4[0] == 6 else DNS_RAW]) + l4[3]
    def ptr(off):
        return struct.pack(">H", 0xC000 | off)

    a1, v6 = bytes([192, 0, 2, 1]), bytes.fromhex("20010db8000000000000000000000001")
    www = dns_msg(("www.example.com", 1), [(ptr(12), 5, dns_name("cdn.example.net")),
                                           (dns_name("cdn.example.net"), 1, a1)])
    hand = {
        "cname-chain": www,
        "cname-reversed": dns_msg(("a.test", 1), [(dns_name("c.test"), 28, v6),
                                                  (dns_name("b.test"), 5, dns_name("c.test")),
                                                  (dns_name("a.test"), 5, dns_name("b.test"))]),
        "ptr-v4": dns_msg(("4.3.2.10.in-addr.arpa", 12), [(ptr(12), 12, dns_name("host.test"))]),
        "ptr-v6": dns_msg((".".join("1" + "0" * 23 + "8bd01002") + ".ip6.arpa", 12),
                          [(ptr(12), 12, dns_name("v6.test"))]),
        "ptr-rfc2317": dns_msg(("70.2.6.216.in-addr.arpa", 12),
                               [(ptr(12), 5, dns_name("70.64.2.6.216.in-addr.arpa")),
                                (dns_name("70.64.2.6.216.in-addr.arpa"), 12, dns_name("up2.com"))]),
        "mdns-announce": dns_msg(None, [(dns_name("host.local"), 1, a1),
                                        (dns_name("1.2.0.192.in-addr.arpa"), 12, dns_name("host.local"))],
                                 flags=0x8400),
        "bad-pointer-self": dns_msg(("a.test", 1), []) + ptr(24) + struct.pack(">HHIH", 1, 1, 1, 4) + a1,
        "bad-pointer-loop": dns_msg(None, [])[:5] + b"\x01" + dns_msg(None, [])[6:] + b"\x01a" + ptr(12)
                            + struct.pack(">HH", 1, 1),
        "bad-label-type": dns_msg(None, [])[:5] + b"\x01" + dns_msg(None, [])[6:] + b"\x41\x00\x00\x01\x00\x01",
        "bad-long-name": dns_msg(("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62, 1), []),
        "nxdomain": dns_msg(("x.test", 1), [], flags=0x8183),
        "query": dns_msg(("x.test", 1), [], flags=0x0100),
    }
    for name, msg in hand.items():
        seeds["hand-" + name] = bytes([DNS_RAW]) + msg
    seeds["hand-tcp-two"] = bytes([DNS_TCP]) + (struct.pack(">H", len(www)) + www) * 2 + b"\x00"
    # The same response behind every link layer the decoder knows.
    ip = wrap_ipv4_udp(www)
    ip6 = struct.pack(">IHBB16s16s", 0x60000000, 8 + len(www), 17, 64, v6, v6) + \
        struct.pack(">HHHH", 53, 40000, 8 + len(www), 0) + www
    eth = bytes(12)
    seeds["link-null"] = bytes([LINK_MODE[0]]) + struct.pack("<I", 2) + ip
    seeds["link-loop-v6"] = bytes([LINK_MODE[108]]) + struct.pack(">I", 30) + ip6
    seeds["link-ethernet-qinq"] = bytes([LINK_MODE[1]]) + eth + b"\x88\xa8\x00\x01\x81\x00\x00\x02\x08\x00" + ip
    seeds["link-raw"] = bytes([LINK_MODE[101]]) + ip
    seeds["link-dlt-raw"] = bytes([LINK_MODE[12]]) + ip6
    seeds["link-ipv4"] = bytes([LINK_MODE[228]]) + ip
    seeds["link-ipv6"] = bytes([LINK_MODE[229]]) + ip6
    seeds["link-sll"] = bytes([LINK_MODE[113]]) + bytes(14) + b"\x08\x00" + ip
    seeds["link-sll2"] = bytes([LINK_MODE[276]]) + b"\x86\xdd" + bytes(18) + ip6
    return seeds


def write(outdir, name, seeds):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for fname, data in sorted(seeds.items()):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


# fuzz_l4: TCP captures with reassembly anomalies, as frames of the target's format.
L4_CAPTURES = ("tcp-ooo-retrans-rst-http.pcap", "tcp-reassembly-gaps-retrans.pcap",
               "tcp-overlap-partial-vlan.pcap", "tcp-rst-inject.pcap", "tcp-fin-retransmission-rst.pcap",
               "http-ipv6.pcap", "redis-benchmark-sll.pcap", "ipv4-frag-tcp-http.pcap",
               "http-sll2-large-segments.pcap", "redis-large-bulk-loopback.pcap")
L4_MAX_BYTES = 48 << 10  # per seed: the first frames up to this size
L4_LINKS = {1: 0, 0: 1, 101: 2, 113: 3, 276: 4, 228: 5, 229: 6, 108: 7}
L4_MAX_FRAMES = 120


# Private IPv4 addresses of the shared captures, moved into 198.18.0.0/15 (the low two
# bytes kept); the seeds are only parsed, but no test names an address outside it.
PRIVATE_TEXT = re.compile(rb"(?<![0-9.])(10|172|192)\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")


def test_addr(a):
    """The 198.18.0.0/15 address for a private one (4 bytes), else a itself."""
    if a[0] == 192 and a[1] == 168:
        return bytes([198, 18, a[2], a[3]])
    if a[0] == 10 or (a[0] == 172 and 16 <= a[1] <= 31):
        return bytes([198, 19, a[2], a[3]])
    return a


def test_addr_text(m):
    """A private dotted quad in text, as its test address padded with spaces to the same
    length (the packet's length and the TCP sequence numbers stay as they were)."""
    a = bytes(int(x) for x in m.groups()) if all(int(x) < 256 for x in m.groups()) else None
    if a is None or test_addr(a) == a:
        return m.group(0)
    t = ".".join(str(x) for x in test_addr(a)).encode()
    assert len(t) <= len(m.group(0)), m.group(0)
    return t + b" " * (len(m.group(0)) - len(t))


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(">%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_offset(linktype, f):
    """Where an IPv4 header starts in a frame of this link type, or None."""
    if linktype == 1:
        off, etype = 14, struct.unpack(">H", f[12:14])[0] if len(f) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(f) >= off + 4:
            etype = struct.unpack(">H", f[off + 2:off + 4])[0]
            off += 4
        return off if etype == 0x0800 else None
    if linktype == 113:
        return 16 if f[14:16] == b"\x08\x00" else None
    if linktype == 276:
        return 20 if f[0:2] == b"\x08\x00" else None
    if linktype in (0, 108):
        return 4 if len(f) >= 4 and 2 in (f[0], f[3]) else None
    if linktype in (101, 228):
        return 0 if f[:1] and f[0] >> 4 == 4 else None
    return None


def test_addresses(linktype, f):
    """The frame with its private IPv4 addresses moved into 198.18.0.0/15: in the IPv4
    header (its checksum recomputed; the TCP/UDP checksum too when the segment is whole)
    and wherever they stand as text."""
    f = bytearray(PRIVATE_TEXT.sub(test_addr_text, bytes(f)))
    off = ipv4_offset(linktype, f)
    if off is None or len(f) < off + 20:
        return bytes(f)
    ihl = (f[off] & 0x0F) * 4
    f[off + 12:off + 16] = test_addr(bytes(f[off + 12:off + 16]))
    f[off + 16:off + 20] = test_addr(bytes(f[off + 16:off + 20]))
    if len(f) >= off + ihl:
        f[off + 10:off + 12] = b"\0\0"
        f[off + 10:off + 12] = struct.pack(">H", csum(bytes(f[off:off + ihl])))
    total, proto = struct.unpack(">H", f[off + 2:off + 4])[0], f[off + 9]
    whole = len(f) >= off + total and struct.unpack(">H", f[off + 6:off + 8])[0] & 0x3FFF == 0
    ck = {6: 16, 17: 6}.get(proto)
    if whole and ck is not None and total >= ihl + ck + 2:
        seg = bytearray(f[off + ihl:off + total])
        if proto == 17 and seg[6:8] == b"\0\0":
            return bytes(f)  # UDP without a checksum
        seg[ck:ck + 2] = b"\0\0"
        pseudo = bytes(f[off + 12:off + 20]) + struct.pack(">BBH", 0, proto, len(seg))
        c = csum(pseudo + bytes(seg))
        f[off + ihl + ck:off + ihl + ck + 2] = struct.pack(">H", c if c or proto == 6 else 0xFFFF)
    return bytes(f)


def l4_seeds():
    seeds = {}
    for fname in L4_CAPTURES:
        path = os.path.join(PCAPS, fname)
        if not os.path.exists(path):
            path = os.path.join(PCAPS, "..", fname)
        linktype, frames = read_pcap(path)
        body = b""
        for f in frames[:L4_MAX_FRAMES]:
            f = test_addresses(linktype, f[:0xFFFF])
            if len(body) + 3 + len(f) > L4_MAX_BYTES:
                break
            body += bytes([L4_LINKS[linktype]]) + struct.pack(">H", len(f)) + f
        stem = fname.rsplit(".", 1)[0]
        seeds[stem] = b"\x00" + body
        # Tiny buffers, tables and fragment limits: the limit paths.
        seeds[stem + "-limits"] = b"\x1f" + body
    return seeds


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    write(outdir, "frame", frame_seeds())
    write(outdir, "batch", batch_seeds())
    write(outdir, "dns", dns_seeds())
    write(outdir, "l4", l4_seeds())


if __name__ == "__main__":
    main()
