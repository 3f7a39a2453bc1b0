# SPDX-License-Identifier: BSD-2-Clause
"""Reference reading of DNS answers with tshark, independent of the product's parser.

    python3 dnsref.py CAPTURE [PORT ...]     prints "frame ts_ns addr name" lines

`mappings(path, ports)` asks tshark for every DNS response (-T json) and applies the rules
of shared/dns.h to tshark's own dissection: answer section only, A/AAAA whose owner is the
question name or reached from it through CNAMEs -> question name, PTR for a reverse
question name -> PTR target, owner names directly when there is no question; names in
lower case and only of host-name characters. What the sensor cannot see by design is left
out here too: IP fragments (the sensor does not reassemble) and DNS messages that tshark
had to reassemble from several TCP segments.
"""
import ipaddress
import json
import re
import subprocess
import sys

LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")


def _pairs(obj):
    return obj  # keep JSON objects as ordered lists of (key, value): tshark repeats keys


def _get(pairs, key):
    return [v for k, v in pairs if k == key]


def _first(pairs, key, default=None):
    vals = _get(pairs, key)
    return vals[0] if vals else default


def usable(name):
    if name is None:
        return None
    name = name.lower().rstrip(".") if name.endswith(".") and name != "." else name.lower()
    if not name or name == "<root>" or len(name) > 253:
        return None
    if not all(LABEL.match(label) for label in name.split(".")):
        return None
    return name


def reverse_addr(name):
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4:
            return None
        for p in parts:
            if not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == "0") or int(p) > 255:
                return None
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    if name.endswith(".ip6.arpa"):
        parts = name[: -len(".ip6.arpa")].split(".")
        if len(parts) != 32 or not all(re.fullmatch(r"[0-9a-f]", p) for p in parts):
            return None
        return str(ipaddress.IPv6Address(int("".join(reversed(parts)), 16)))
    return None


def _records(section):
    """Answer records of one dns layer, in order, as dicts of their fields."""
    out = []
    for _, rec in section:
        recs = rec if isinstance(rec, list) and rec and isinstance(rec[0], list) else [rec]
        for r in recs:
            out.append({k: v for k, v in r})
    return out


def _message(dns):
    """Mappings of one dissected DNS message: [(addr, name)]."""
    flags = {k: v for k, v in _first(dns, "dns.flags_tree", [])}
    if flags.get("dns.flags.response") != "1" or flags.get("dns.flags.opcode") != "0":
        return []
    if flags.get("dns.flags.rcode") != "0":
        return []
    qd = int(_first(dns, "dns.count.queries", "0"))
    an = int(_first(dns, "dns.count.answers", "0"))
    if qd > 1:
        return []
    answers = []
    for section in _get(dns, "Answers"):
        answers += _records(section)
    if len(answers) != an:
        return []  # tshark could not read the whole answer section
    qname = None
    if qd == 1:
        queries = []
        for section in _get(dns, "Queries"):
            queries += _records(section)
        if len(queries) != 1:
            return []
        q = queries[0]
        if int(q.get("dns.qry.class", "0x0001"), 16) & 0x7FFF != 1:
            return []
        qname = usable(q.get("dns.qry.name"))
        if qname is None:
            return []
    inn = [r for r in answers if int(r.get("dns.resp.class", "0x0001"), 16) & 0x7FFF == 1]
    chain = [qname] if qname else []
    if qname:
        grew = True
        while grew and len(chain) <= 16:
            grew = False
            for r in inn:
                if r.get("dns.resp.type") != "5" or len(chain) > 16:
                    continue
                owner, target = usable(r.get("dns.resp.name")), usable(r.get("dns.cname"))
                if owner in chain and target and target not in chain:
                    chain.append(target)
                    grew = True
    out = []
    for r in inn:
        owner = usable(r.get("dns.resp.name"))
        if owner is None or (qname and owner not in chain):
            continue
        rtype = r.get("dns.resp.type")
        if rtype == "1" and "dns.a" in r:
            out.append((r["dns.a"], qname or owner))
        elif rtype == "28" and "dns.aaaa" in r:
            out.append((str(ipaddress.IPv6Address(r["dns.aaaa"])), qname or owner))
        elif rtype == "12":
            target = usable(r.get("dns.ptr.domain_name"))
            addr = reverse_addr(qname if qname else owner)
            if target and addr:
                out.append((addr, target))
    return out


def mappings(path, ports=(53,)):
    """[(frame, ts_ns, addr, name)] for every mapping tshark shows, in capture order."""
    port_filter = " or ".join(f"udp.port == {p} or tcp.port == {p}" for p in ports)
    args = ["tshark", "-n", "-r", str(path), "-T", "json", "-Y", f"dns and ({port_filter})"]
    for p in ports:
        if p != 53:
            args[1:1] = ["-d", f"udp.port=={p},dns", "-d", f"tcp.port=={p},dns"]
    raw = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    frames = json.loads(raw or "[]", object_pairs_hook=_pairs)
    out = []
    for fr in frames:
        layers = dict(_first(fr, "_source"))["layers"]
        lay = {}
        for k, v in layers:
            lay.setdefault(k, []).append(v)
        frame = dict(lay["frame"][0])
        number = int(frame["frame.number"])
        ts = frame["frame.time_epoch"]
        sec, _, frac = ts.partition(".")
        ts_ns = int(sec) * 10**9 + int((frac + "000000000")[:9])
        ip = dict(lay["ip"][0]) if "ip" in lay else None
        if ip:
            flags = dict(ip.get("ip.flags_tree", []))
            if flags.get("ip.flags.mf") == "1" or ip.get("ip.frag_offset", "0") != "0":
                continue
        if "ipv6" in lay and any(k == "ipv6.fragment" or k == "ipv6.fraghdr" for k, _ in lay["ipv6"][0]):
            continue
        if "tcp" in lay and "tcp.segments" in lay:
            continue
        if "udp" in lay:
            udp = dict(lay["udp"][0])
            if int(udp["udp.srcport"]) not in ports and int(udp["udp.dstport"]) not in ports:
                continue
        for dns in lay.get("dns", []):
            for addr, name in _message(dns):
                out.append((number, ts_ns, addr, name))
    return out


def change_points(maps):
    """Keeps, per address, only the mappings that change its name: [(ts_ns, addr, name)]."""
    last = {}
    out = []
    for _, ts_ns, addr, name in maps:
        if last.get(addr) != name:
            last[addr] = name
            out.append((ts_ns, addr, name))
    return out


if __name__ == "__main__":
    ports = tuple(int(p) for p in sys.argv[2:]) or (53,)
    for number, ts_ns, addr, name in mappings(sys.argv[1], ports):
        print(number, ts_ns, addr, name)
