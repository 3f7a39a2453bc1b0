#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Writes the seed corpora of the protocol fuzz targets.

    tests/fuzz/make_seeds.py [OUTDIR]      (default: tests/fuzz/corpus)

Messages are built here from proto/PROTOCOL.md alone, not with proto/wire.c, so the seeds
double as a second, independent reading of the specification: fuzz_frame aborts when a
payload that decodes does not re-encode to the same bytes. Output is deterministic, so
re-running it leaves the checked-in corpora unchanged.
"""

import os
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
        "heartbeat": frame(HEARTBEAT, heartbeat(TS)),
        "error": frame(ERROR, error(3, "bad token")),
    }
    seeds["session"] = b"".join(seeds[k] for k in (
        "hello", "welcome", "batch-raw", "batch-lz4", "ack", "stats", "heartbeat", "error"))
    # Malformed frames, one fault each.
    seeds.update({
        "bad-magic": frame(ACK, ack(), magic=0x50434C4F),
        "bad-version": frame(ACK, ack(), version=2),
        "bad-type-names": frame(NAMES, b"\0\0"),
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


def write(outdir, name, seeds):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for fname, data in sorted(seeds.items()):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    write(outdir, "frame", frame_seeds())
    write(outdir, "batch", batch_seeds())


if __name__ == "__main__":
    main()
