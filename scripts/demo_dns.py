#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""A tiny authoritative DNS responder for demos and tests: answers every A query
with one fixed address (RFC 1035 message format). Usage: demo_dns.py ADDR PORT ANSWER [SECONDS]"""
import socket
import struct
import sys
import time


def answer(query, ip):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    if qd != 1 or flags & 0x8000:
        return None
    # Walk the question name to find where the question ends.
    i = 12
    while i < len(query) and query[i] != 0:
        i += query[i] + 1
    end = i + 5
    if end > len(query):
        return None
    question = query[12:end]
    header = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100), 1, 1, 0, 0)
    rr = struct.pack("!HHHLH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
    return header + question + rr


def main():
    addr, port, ip = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.5)
    deadline = time.time() + lifetime
    while time.time() < deadline:
        try:
            q, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        r = answer(q, ip)
        if r:
            s.sendto(r, peer)


if __name__ == "__main__":
    main()
