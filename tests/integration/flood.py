# SPDX-License-Identifier: BSD-2-Clause
"""Connection floods for the denial-of-service tests, run as a separate process (often
inside a network namespace: `ip netns exec NS python3 flood.py ...`):

  flood.py idle HOST PORT --sources A,B,... --count N --duration S [--rate R]
      holds N TCP connections (spread over the source addresses) that never send a
      byte; each one the server closes is opened again, at most R new connections a
      second in all.
  flood.py slowloris HOST PORT --count N --duration S [--rate R]
      holds N HTTP connections that send a request line and then one header byte per
      second per connection, never ending the headers; reopened like the above.

Both stop after S seconds (closing everything) and print one JSON line of counts:
opened, closed by the server, refused/failed connects, most open at once. A line
"ready" tells when N connections have been opened. Every loop
is bounded in time and in connections.
"""
import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("idle", "slowloris"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--sources", default="")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--rate", type=float, default=2000.0)
    a = ap.parse_args()
    assert 0 < a.count <= 5000 and 0 < a.duration <= 120 and 0 < a.rate <= 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.count + 256), hard))
    sources = [s for s in a.sources.split(",") if s] or [None]
    sel = selectors.DefaultSelector()
    st = {"opened": 0, "closed_by_server": 0, "connect_failed": 0, "max_open": 0, "sent_bytes": 0}
    conns = {}      # socket -> [slot, next byte time, bytes sent]
    want = list(range(a.count))   # slots without a connection
    tokens, t_tok = float(a.count), time.monotonic()
    t_end = time.monotonic() + a.duration
    ready = False
    request = b"GET /api/v1/export?from=0&to=1 HTTP/1.1\r\nHost: x\r\n"

    def open_one(slot):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        src = sources[slot % len(sources)]
        try:
            if src:
                s.bind((src, 0))
            rc = s.connect_ex((a.host, a.port))
        except OSError:
            rc = -1
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            st["connect_failed"] += 1
            want.append(slot)
            return
        st["opened"] += 1
        conns[s] = [slot, time.monotonic(), 0]
        sel.register(s, selectors.EVENT_READ)

    def drop(s, by_server):
        sel.unregister(s)
        slot = conns.pop(s)[0]
        s.close()
        if by_server:
            st["closed_by_server"] += 1
        want.append(slot)

    while time.monotonic() < t_end:
        now = time.monotonic()
        tokens = min(float(a.count), tokens + (now - t_tok) * a.rate)
        t_tok = now
        while want and tokens >= 1 and len(conns) < a.count:
            tokens -= 1
            open_one(want.pop())
        st["max_open"] = max(st["max_open"], len(conns))
        if st["opened"] >= a.count and not ready:
            ready = True
            print("ready", flush=True)
        for key, _ in sel.select(0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(s, True)
        if a.mode == "slowloris":
            now = time.monotonic()
            for s, c in list(conns.items()):
                if c[1] > now:
                    continue
                chunk = request if c[2] == 0 else b"X-Slow-%d: " % c[2] if c[2] % 16 == 1 else b"a"
                try:
                    c[2] += s.send(chunk) and 1
                    st["sent_bytes"] += len(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    drop(s, True)
                    continue
                c[1] = now + 1.0
    for s in list(conns):
        sel.unregister(s)
        s.close()
    print(json.dumps(st), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
