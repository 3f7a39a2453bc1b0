#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Small pcap helpers for tests/bench/bench.sh (no third-party modules).

  pcaputil.py linktype FILE...     print "LINKTYPE FILE" for each classic pcap (pcapng: "ng FILE")
  pcaputil.py final-ratio LOG      parse the sensor's "final:" line: "RAW COMPRESSED RATIO"
"""
import re
import struct
import sys


def linktype(path):
    with open(path, "rb") as f:
        h = f.read(24)
    if len(h) < 24:
        return "short"
    magic = h[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return str(struct.unpack("<I", h[20:24])[0])
    if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return str(struct.unpack(">I", h[20:24])[0])
    if magic == b"\x0a\x0d\x0d\x0a":
        return "ng"
    return "unknown"


def final_ratio(path):
    last = None
    with open(path, errors="replace") as f:
        for line in f:
            if "final:" in line:
                last = line
    if not last:
        print("- - -")
        return 1
    m = re.search(r"batch bytes (\d+) -> (\d+) compressed \(ratio ([0-9.]+)\)", last)
    if not m:
        print("- - -")
        return 1
    print(m.group(1), m.group(2), m.group(3))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "linktype":
        for p in argv[2:]:
            print(linktype(p), p)
        return 0
    if len(argv) == 3 and argv[1] == "final-ratio":
        return final_ratio(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
