# SPDX-License-Identifier: BSD-2-Clause
"""The live stream (GET /api/v1/live, `pcapline live`, PCAP-over-IP) against the
repository the same receiver wrote.

Public captures are replayed through real sensors (`pcapline-sensor -r`) into a real
receiver with its API and PCAP-over-IP listener on free loopback ports. Consumers read
the live stream the ways users do: `pcapline live | tshark -i -`, `pcapline live -w FIFO`
read by tshark, curl over HTTP, and `tshark -i TCP@127.0.0.1:PORT`. Each must see exactly
the records the receiver stored (timestamp, lengths, SHA-256 of the bytes, in order),
compared once the receiver has closed its segments.

Slow and stuck consumers (curl --limit-rate 10k, curl under SIGSTOP) must not slow
ingest nor cost storage a packet; their drops are counted per consumer and reason and
logged when they end, a stuck one is cut off. Bad requests are a 400 naming the
problem; hostile clients (never reading, many at once, garbage) stall nothing.
"""
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BUILD, Proc, free_port, tls_args, wait_listening
from test_export import PCAPS, big_capture, read_capture

PCAPLINE = BUILD / "pcapline"
HTTP_CAP = PCAPS / "http-1000-requests-one-conn.pcap"   # Ethernet, 4102 packets
DNS_CAP = PCAPS / "dns-udp-queries.pcap"                # Ethernet
SLL_CAP = PCAPS / "redis-benchmark-sll.pcap"            # Linux cooked (SLL)
TOKEN = "live-test-token-0123456789"


def key(r):
    return (r.ts, r.caplen, r.origlen, r.digest)


def n_records(path):
    return len(read_capture(path).recs)


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """A receiver with its API (and optionally PCAP-over-IP) on free loopback ports."""

    def __init__(self, procs, binaries, certs, tmp_path, env=None, pcapoip=True, api_tls=False):
        self.data = tmp_path / "data"
        self.port, self.api_port = free_port(), free_port()
        self.poip_port = free_port() if pcapoip else None
        e = {"PCAPLINE_API_LISTEN": f"127.0.0.1:{self.api_port}"}
        if pcapoip:
            e["PCAPLINE_OUTPUTS_PCAP_OVER_IP_LISTEN"] = f"127.0.0.1:{self.poip_port}"
        if api_tls:
            e.update({"PCAPLINE_API_TOKEN": TOKEN, "PCAPLINE_API_CERT": str(certs / "receiver.crt"),
                      "PCAPLINE_API_KEY": str(certs / "receiver.key")})
        e.update(env or {})
        self.proc = Proc([binaries[1], "-l", f"127.0.0.1:{self.port}", "-d", self.data]
                         + tls_args(certs, "receiver"), tmp_path / "rx.log", env=e)
        procs.append(self.proc)
        self.certs, self.binaries, self.procs, self.tmp = certs, binaries, procs, tmp_path
        wait_listening(self.port)
        wait_listening(self.api_port)
        if pcapoip:
            wait_listening(self.poip_port)
        self.url = f"{'https' if api_tls else 'http'}://127.0.0.1:{self.api_port}/api/v1/live"

    def log(self):
        return self.proc.text()

    def joined(self, n):
        """Waits until n consumers have joined (since start)."""
        wait_for(lambda: len(re.findall(r"consumer \d+ joined", self.log())) >= n, 15, f"{n} live consumers")

    def replay(self, capture, sid="s1", timeout=60):
        """Replays a capture through a real sensor; returns the seconds it took."""
        t0 = time.time()
        sx = Proc([self.binaries[0], "-r", capture, "-t", f"127.0.0.1:{self.port}"] + tls_args(self.certs, sid),
                  self.tmp / f"sx-{sid}-{Path(capture).stem}.log")
        self.procs.append(sx)
        rc = sx.wait(timeout=timeout)
        assert rc == 0, f"sensor exited {rc}:\n{sx.text()}"
        return time.time() - t0

    def stop(self):
        rc = self.proc.stop(signal.SIGTERM, timeout=30)
        assert rc == 0, f"receiver exited {rc}:\n{self.log()[-4000:]}"

    def segments(self, sid):
        """Closed segments of one sensor in the order they were written: each replay is a
        session of its own whose segments are closed when it ends, before the next one
        starts (so by modification time), then by first timestamp and batch sequence."""
        seg = self.data / "sensors" / sid / "segments"
        files = [p for p in seg.iterdir() if not p.name.startswith(".")]
        assert files, f"nothing stored for {sid}"
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name.split("-")[0],
                                            int(p.name.split("-")[2].split(".")[0])))

    def stored(self, sid):
        return [r for p in self.segments(sid) for r in read_capture(p).recs]


def curl_live(rx, out, query="", extra=(), token=None):
    argv = ["curl", "-sS", "-N", "-o", str(out), *extra]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.Popen(argv + [rx.url + query], stderr=subprocess.PIPE)


class SteadyReader:
    """An HTTP client that reads 1 KiB every 100 ms (10 KB/s) from a small receive
    buffer, so the server sees its bytes leave at that pace (curl --limit-rate reads
    100 buffers in a burst, then sleeps until its average is down again)."""

    def __init__(self, rx, query):
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.connect(("127.0.0.1", rx.api_port))
        self.port = self.sock.getsockname()[1]
        self.sock.sendall(f"GET /api/v1/live{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.got, self.stop = 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                b = self.sock.recv(1024)
            except OSError:
                return
            if not b:
                return
            self.got += len(b)
            time.sleep(0.1)

    def close(self):
        self.stop = True
        self.t.join(timeout=5)
        self.sock.close()


def http_get(rx, query, token=None):
    """(status, body) of a GET that is expected to end (an error)."""
    argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    p = subprocess.run(argv + [rx.url + query], capture_output=True, timeout=20)
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code), body.decode(errors="replace")


# ---- every way of reading the stream sees exactly what was stored ------------------


def test_every_reader_sees_exactly_the_stored_packets(binaries, certs, procs, tmp_path):
    rx = Receiver(procs, binaries, certs, tmp_path)
    n_http = n_records(HTTP_CAP)
    env = dict(os.environ, PCAPLINE_API_LISTEN=f"127.0.0.1:{rx.api_port}")

    # 1. pcapline live | tshark -i - (stdin), stopping after exactly the packets of s1.
    live1 = subprocess.Popen([PCAPLINE, "live", "--sensor", "s1"], stdout=subprocess.PIPE,
                             stderr=open(tmp_path / "live1.err", "wb"), env=env)
    ts1 = subprocess.Popen(["tshark", "-i", "-", "-a", f"packets:{n_http}", "-w", tmp_path / "stdin.pcapng"],
                           stdin=live1.stdout, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ts1.err", "wb"))
    live1.stdout.close()
    # 2. pcapline live -w FIFO, tshark reading the FIFO.
    fifo = tmp_path / "live.fifo"
    os.mkfifo(fifo)
    ts2 = subprocess.Popen(["tshark", "-i", fifo, "-a", f"packets:{n_http}", "-w", tmp_path / "fifo.pcapng"],
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ts2.err", "wb"))
    live2 = subprocess.Popen([PCAPLINE, "live", "--sensor", "s1", "-w", fifo],
                             stderr=open(tmp_path / "live2.err", "wb"), env=env)
    # 3. curl over HTTP, to a file: everything (both sensors), and a filtered pcapng.
    c_all = curl_live(rx, tmp_path / "http-all.pcap")
    c_ng = curl_live(rx, tmp_path / "http-dns.pcapng", "?filter=udp%20port%2053&format=pcapng")
    # 4. PCAP-over-IP.
    ts4 = subprocess.Popen(["tshark", "-i", f"TCP@127.0.0.1:{rx.poip_port}", "-a", f"packets:{n_http}",
                            "-w", tmp_path / "poip.pcapng"],
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ts4.err", "wb"))
    rx.joined(5)

    rx.replay(HTTP_CAP, "s1")
    for p, name in ((ts1, "tshark -i -"), (ts2, "tshark -i FIFO"), (ts4, "tshark -i TCP@")):
        try:
            assert p.wait(timeout=30) == 0, f"{name} failed"
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not get {n_http} packets in 30 s") from None
    # tshark has gone: the next packets make `pcapline live` meet EPIPE, a clean end.
    rx.replay(DNS_CAP, "s1")
    assert live1.wait(timeout=30) == 0, (tmp_path / "live1.err").read_text()
    assert "the reader closed its end" in (tmp_path / "live1.err").read_text()
    assert live2.wait(timeout=30) == 0, (tmp_path / "live2.err").read_text()
    rx.replay(SLL_CAP, "s2")   # another sensor, another link type
    n_dns, n_sll = n_records(DNS_CAP), n_records(SLL_CAP)
    wait_for(lambda: n_records(tmp_path / "http-all.pcap") == n_http + n_dns, 20, "curl's file complete")
    c_all.terminate()
    c_ng.terminate()
    c_all.wait(timeout=10)
    c_ng.wait(timeout=10)
    rx.stop()

    s1, s2 = rx.stored("s1"), rx.stored("s2")
    assert len(s1) == n_http + n_dns and len(s2) == n_sll
    want_http = [key(r) for r in s1[:n_http]]
    for f in ("stdin.pcapng", "fifo.pcapng", "poip.pcapng"):
        got = read_capture(tmp_path / f)
        assert [key(r) for r in got.recs] == want_http, f
        assert got.ifaces[0][0] == 1, f
    # The pcap stream over HTTP: s1's packets of both replays, exact, nanosecond magic;
    # s2's Linux cooked packets cannot share its Ethernet header: counted, not sent.
    raw = (tmp_path / "http-all.pcap").read_bytes()
    assert raw[:4] == b"\x4d\x3c\xb2\xa1"
    assert [key(r) for r in read_capture(raw).recs] == [key(r) for r in s1]
    assert re.search(rf"live http 127\.0\.0\.1:\d+: consumer \d+ ended: {n_http + n_dns} packets .* "
                     rf"{n_sll} dropped \(queue_full 0, backlog 0, linktype {n_sll},", rx.log()), rx.log()[-3000:]
    # pcapng with a filter: the packets libpcap's BPF takes from what each sensor stored
    # (tcpdump on the segments), each sensor on an interface of its own.
    ng = read_capture(tmp_path / "http-dns.pcapng")
    for sid in ("s1", "s2"):
        want = []
        for seg in rx.segments(sid):
            out = tmp_path / f"bpf-{seg.name}"
            subprocess.run(["tcpdump", "-r", seg, "-w", out, "udp port 53"], check=True, capture_output=True)
            want += [key(r) for r in read_capture(out).recs]
        got = [key(r) for r in ng.recs if ng.ifaces[r.iface][2].startswith(sid + "/")]
        assert got == want, sid
    assert len(ng.recs) == n_dns > 0
    tsh = subprocess.run(["tshark", "-r", tmp_path / "http-dns.pcapng", "-T", "fields", "-e", "frame.interface_name"],
                         capture_output=True, text=True, timeout=60)
    assert tsh.returncode == 0 and len(tsh.stdout.split()) == n_dns, tsh.stderr


# ---- slow and stuck consumers never slow ingest nor cost storage a packet -----------


def consumer_end(log, name_re):
    """(delivered, {reason: dropped}, cut off) from a consumer's end line."""
    m = re.search(name_re + r": consumer \d+ ended( \(cut off\))?: (\d+) packets \(\d+ bytes\) delivered, (\d+) "
                  r"dropped \(queue_full (\d+), backlog (\d+), linktype (\d+), filter_linktype (\d+), "
                  r"format (\d+)\)", log)
    assert m, f"no end line for {name_re}:\n{log[-4000:]}"
    drops = dict(zip(("queue_full", "backlog", "linktype", "filter_linktype", "format"),
                     (int(x) for x in m.groups()[3:])))
    assert sum(drops.values()) == int(m.group(3))
    return int(m.group(2)), drops, m.group(1) is not None


def test_slow_and_stuck_consumers_cost_ingest_nothing(binaries, certs, procs, tmp_path):
    n_big, _ = big_capture(tmp_path / "big.pcap", 40 * 10**6)
    rx = Receiver(procs, binaries, certs, tmp_path,
                  env={"PCAPLINE_OUTPUTS_LIVE_QUEUE_SIZE": "1MiB", "PCAPLINE_OUTPUTS_LIVE_STALL_TIMEOUT": "5s",
                       "PCAPLINE_STORAGE_FSYNC": "never"})
    # The same replay without any consumer first: the speed to keep.
    t_alone = rx.replay(tmp_path / "big.pcap", "s1")

    # Each curl on a local port of its own, so that the receiver's lines name it.
    ports = {w: free_port() for w in ("fast", "slow", "stuck")}
    fast = curl_live(rx, tmp_path / "fast.pcap", "?sensor=s2", extra=("--local-port", str(ports["fast"])))
    slow = curl_live(rx, tmp_path / "slow.pcap", "?sensor=s2",
                     extra=("--limit-rate", "10k", "--local-port", str(ports["slow"])))
    stuck = curl_live(rx, tmp_path / "stuck.pcap", "?sensor=s2", extra=("--local-port", str(ports["stuck"])))
    steady = SteadyReader(rx, "?sensor=s2")
    rx.joined(4)
    stuck.send_signal(signal.SIGSTOP)
    # A PCAP-over-IP client that never reads.
    never = socket.create_connection(("127.0.0.1", rx.poip_port))
    never.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rx.joined(5)
    t_live = rx.replay(tmp_path / "big.pcap", "s2")
    print(f"replay of {n_big} packets: {t_alone:.2f} s alone, {t_live:.2f} s with 5 live consumers "
          f"(one fast, two at 10 KB/s, two stuck)")
    assert t_live < 1.5 * t_alone + 2.0, (t_alone, t_live)

    # The stuck ones are cut off after outputs.live.stall_timeout; the steady 10 KB/s
    # reader never is: bytes leave its socket all the time.
    cut_re = r": read nothing of its queue for 5\.0 s \(live\.stall_timeout\): cut off"
    stuck_re = re.escape(f"live http 127.0.0.1:{ports['stuck']}") + cut_re
    poip_re = r"live pcap-over-ip 127\.0\.0\.1:\d+" + cut_re
    wait_for(lambda: re.search(stuck_re, rx.log()) and re.search(poip_re, rx.log()), 20, "stuck ones cut off")
    stuck.send_signal(signal.SIGCONT)
    assert stuck.wait(timeout=15) != 0   # a broken transfer, not a short clean one
    never.close()
    _, drops, cut = consumer_end(rx.log(), r"live pcap-over-ip 127\.0\.0\.1:\d+")
    assert cut and drops["queue_full"] > 0
    # /metrics shows each consumer's drops while it is connected.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{rx.api_port}/metrics", timeout=10).read().decode()
    m = re.search(r'^pcapline_live_dropped_packets_total\{consumer="\d+",peer="http 127\.0\.0\.1:%d",'
                  r'reason="queue_full"\} (\d+)$' % steady.port, metrics, re.M)
    assert m and int(m.group(1)) > 0, metrics[-3000:]
    # Every packet of s2 either delivered to the queue of a consumer that was not cut off,
    # or counted as a queue_full drop.
    steady.close()
    slow.terminate()
    slow.wait(timeout=15)
    fast.terminate()
    fast.wait(timeout=15)
    wait_for(lambda: len(re.findall(r"consumer \d+ ended", rx.log())) >= 5, 15, "all consumers ended")
    for who, port in (("fast", ports["fast"]), ("steady", steady.port), ("curl --limit-rate", ports["slow"])):
        delivered, drops, cut = consumer_end(rx.log(), re.escape(f"live http 127.0.0.1:{port}"))
        print(f"{who}: delivered {delivered}, dropped {drops}, cut off {cut}")
        if who == "curl --limit-rate" and cut:
            continue   # it may sleep longer than the timeout after a burst: then it is stuck
        assert not cut, who
        assert delivered + drops["queue_full"] == n_big, (who, delivered, drops)
        if who != "fast":
            assert drops["queue_full"] > n_big // 2, who   # 10 KB/s of 40 MB: nearly all dropped
    # The totals in /metrics keep the drops of consumers that are gone: exactly the sum
    # of the five end lines.
    ends = [consumer_end(rx.log(), re.escape(f"live http 127.0.0.1:{p}"))
            for p in (ports["fast"], ports["slow"], ports["stuck"], steady.port)]
    ends.append(consumer_end(rx.log(), r"live pcap-over-ip 127\.0\.0\.1:\d+"))
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{rx.api_port}/metrics", timeout=10).read().decode()
    m = re.search(r'^pcapline_live_dropped_total\{reason="queue_full"\} (\d+)$', metrics, re.M)
    assert m and int(m.group(1)) == sum(e[1]["queue_full"] for e in ends), (m and m.group(0), ends)
    m = re.search(r'^pcapline_live_cut_off_total (\d+)$', metrics, re.M)
    assert m and int(m.group(1)) == sum(e[2] for e in ends), (m and m.group(0), ends)
    rx.stop()
    # Storage lost nothing: both replays stored whole, the live one too.
    assert len(rx.stored("s1")) == n_big
    stored = [key(r) for r in rx.stored("s2")]
    assert len(stored) == n_big
    # What the fast reader got is the stored stream with holes only where it dropped.
    got = read_capture(tmp_path / "fast.pcap")
    it = iter(stored)
    assert all(any(k == s for s in it) for k in (key(r) for r in got.recs)), "fast reader: not a subsequence"
    print(f"fast reader got {len(got.recs)} of {n_big}")


# ---- bad requests and hostile clients ------------------------------------------------


def test_bad_requests_and_hostile_clients_stall_nothing(binaries, certs, procs, tmp_path):
    rx = Receiver(procs, binaries, certs, tmp_path, env={"PCAPLINE_OUTPUTS_LIVE_MAX_CONSUMERS": "4"})
    for query, status, msg in (
            ("?filter=tcp%20port%20(", 400, "filter: can't parse filter expression: syntax error"),
            ("?filter=ether%20proto%20nonsense", 400, "filter: "),
            ("?bogus=1", 400, "bogus: unknown parameter (sensor, filter, format)"),
            ("?format=json", 400, "format: 'json' is not pcap or pcapng"),
            ("?sensor=..%2Fetc", 400, "sensor: '../etc' is not a sensor id"),
            ("?filter=a&filter=b", 400, "filter: given twice"),
            ("?" + "&".join(f"sensor=s{i}" for i in range(65)), 400, "sensor: more than 64")):
        got = http_get(rx, query)
        assert got[0] == status and msg in got[1], (query, got)
    # `pcapline live` says the same and exits 2.
    p = subprocess.run([PCAPLINE, "live", "--api", f"127.0.0.1:{rx.api_port}", "--filter", "tcp port ("],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "HTTP 400: filter: can't parse filter expression: syntax error" in p.stderr, p

    # Hostile clients: requests that never read their stream, garbage, connection floods.
    hostile = []
    for _ in range(3):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", rx.api_port))
        s.sendall(b"GET /api/v1/live HTTP/1.1\r\nHost: x\r\n\r\n")
        hostile.append(s)
    for _ in range(3):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", rx.poip_port))
        s.sendall(os.urandom(4096))   # PCAP-over-IP clients send nothing; this one sends junk
        hostile.append(s)
    for _ in range(50):               # open and close at once
        socket.create_connection(("127.0.0.1", rx.poip_port)).close()
    junk = socket.create_connection(("127.0.0.1", rx.api_port))
    junk.sendall(b"\x16\x03\x01garbage\r\n\r\n" + os.urandom(2000))
    hostile.append(junk)
    rx.joined(4)
    # Beyond outputs.live.max_consumers: 503 saying so (PCAP-over-IP ones are closed).
    got = http_get(rx, "")
    assert got[0] == 503 and "4 live consumers already (live.max_consumers)" in got[1], got

    n_big, _ = big_capture(tmp_path / "big.pcap", 20 * 10**6)
    took = rx.replay(tmp_path / "big.pcap", "s1", timeout=60)
    print(f"{n_big} packets replayed in {took:.2f} s with 4 hostile consumers")
    for s in hostile:
        s.close()
    # Their slots come back: a normal consumer joins and gets the next replay.
    wait_for(lambda: len(re.findall(r"consumer \d+ ended", rx.log())) >= 4, 40, "hostile consumers ended")
    c = curl_live(rx, tmp_path / "after.pcap")
    rx.joined(5)
    rx.replay(HTTP_CAP, "s1")
    wait_for(lambda: (tmp_path / "after.pcap").exists() and n_records(tmp_path / "after.pcap") == n_records(HTTP_CAP),
             20, "the stream after the hostile clients")
    c.terminate()
    c.wait(timeout=10)
    rx.stop()
    assert len(rx.stored("s1")) == n_big + n_records(HTTP_CAP)


# ---- HTTPS and a token; PCAP-over-IP off loopback; SIGINT -------------------------------


def test_https_token_and_sigint(binaries, certs, procs, tmp_path):
    rx = Receiver(procs, binaries, certs, tmp_path, api_tls=True, pcapoip=False)
    api = f"https://127.0.0.1:{rx.api_port}"
    base = [PCAPLINE, "live", "--api", api, "--ca", certs / "ca.crt"]
    env = dict(os.environ)
    env.pop("PCAPLINE_API_TOKEN", None)
    p = subprocess.run(base + ["--token", "wrong"], capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode == 1 and "HTTP 401: missing or wrong bearer token" in p.stderr, p
    p = subprocess.run([PCAPLINE, "live", "--api", api, "--token", TOKEN], capture_output=True, text=True,
                       timeout=20, env=env)   # the system's CAs do not know this one
    assert p.returncode == 1 and "TLS handshake" in p.stderr, p
    out = tmp_path / "tls.pcap"
    live = subprocess.Popen(base + ["-w", out], stderr=open(tmp_path / "live.err", "wb"),
                            env=dict(env, PCAPLINE_API_TOKEN=TOKEN))
    rx.joined(1)
    rx.replay(HTTP_CAP, "s1")
    wait_for(lambda: out.exists() and n_records(out) == n_records(HTTP_CAP), 20, "the stream over HTTPS")
    live.send_signal(signal.SIGINT)
    assert live.wait(timeout=10) == 0, (tmp_path / "live.err").read_text()
    assert "SIGINT: stopped after" in (tmp_path / "live.err").read_text()
    rx.stop()
    assert [key(r) for r in read_capture(out).recs] == [key(r) for r in rx.stored("s1")]

    # PCAP-over-IP has no token and no TLS: refused off loopback at start-up.
    p = subprocess.run([binaries[1], "-l", f"127.0.0.1:{free_port()}", "-d", tmp_path / "d2", "--insecure"],
                       capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, PCAPLINE_OUTPUTS_PCAP_OVER_IP_LISTEN="0.0.0.0:57012"))
    assert p.returncode == 2 and "outputs.pcap_over_ip.listen: 0.0.0.0:57012 is not a loopback address" in p.stderr, p


# ---- a real sensor on a real interface, against tcpdump --------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces and captures packets")
def test_live_stream_matches_tcpdump_in_netns(binaries, certs, procs, tmp_path):
    """A sensor captures real HTTP and DNS traffic on a veth in a namespace; tcpdump
    captures the same interface. `pcapline live -w FILE` and `tshark -i TCP@` (PCAP-over-IP)
    in the receiver's namespace must hold exactly tcpdump's packets (the timestamp rules
    of test_live_netns: exact but for received TCP, whose stamps two sockets take)."""
    import netns as N
    import test_live_netns as L
    lab = N.Namespaces()
    try:
        a, b = lab.add("a"), lab.add("b")
        mac_a, _ = lab.veth(a, "va", "198.18.0.1", b, "vb", "198.18.0.2")
        rx_addr, api, poip = "198.18.0.2", "127.0.0.1:47801", "127.0.0.1:57012"
        rx = Proc([binaries[1], "-l", f"{rx_addr}:{L.RX_PORT}", "-d", tmp_path / "data"] + tls_args(certs, "receiver"),
                  tmp_path / "rx.log", netns=b,
                  env={"PCAPLINE_API_LISTEN": api, "PCAPLINE_OUTPUTS_PCAP_OVER_IP_LISTEN": poip})
        procs.append(rx)
        N.wait_for(lambda: N.listening(b, "tcp", L.RX_PORT) and N.listening(b, "tcp", 47801)
                   and N.listening(b, "tcp", 57012), 10, "receiver, API and PCAP-over-IP")
        live = Proc([PCAPLINE, "live", "--api", api, "-w", tmp_path / "live.pcap"], tmp_path / "live.log", netns=b)
        ts = Proc(["tshark", "-i", f"TCP@{poip}", "-w", tmp_path / "poip.pcapng"], tmp_path / "tshark.log", netns=b)
        procs += [live, ts]
        N.wait_for(lambda: len(re.findall(r"consumer \d+ joined", rx.text())) >= 2, 15, "two live consumers")
        files = L.make_www(tmp_path / "www", {"index.html": 120, "medium.bin": 300_000, "big.bin": 1_500_000})
        L.start_servers(procs, tmp_path, b, rx_addr, tmp_path / "www")
        td = L.start_tcpdump(procs, a, "va", rx_addr, tmp_path / "gt.pcap", tmp_path / "tcpdump.log")
        sx = L.start_sensor(procs, binaries, certs, a, "va", rx_addr, "s1", tmp_path / "sx.log")
        L.http_traffic(a, rx_addr, files, rounds=2)
        L.dns_traffic(a, rx_addr, [f"live{i}.example.test" for i in range(4)])
        time.sleep(L.QUIET_S)
        assert sx.stop(signal.SIGTERM, timeout=20) == 0, sx.text()
        assert td.stop(signal.SIGINT, timeout=10) == 0, td.text()
        captured = L.sensor_final(sx)[0]
        # Both readers have everything the sensor captured (every batch was stored).
        wait_for(lambda: (tmp_path / "live.pcap").exists() and n_records(tmp_path / "live.pcap") == captured, 20,
                 "pcapline live's file")
        wait_for(lambda: (tmp_path / "poip.pcapng").exists() and N.capinfos_count(tmp_path / "poip.pcapng")
                 == captured, 20, "tshark's PCAP-over-IP capture")
        assert live.stop(signal.SIGINT, timeout=10) == 0, live.text()
        assert ts.stop(signal.SIGINT, timeout=10) == 0, ts.text()
        assert rx.stop(signal.SIGTERM, timeout=20) == 0, rx.text()
        gt = N.read_pcap(tmp_path / "gt.pcap")
        N.run(["editcap", "-F", "nsecpcap", tmp_path / "poip.pcapng", tmp_path / "poip.pcap"])
        for name in ("live.pcap", "poip.pcap"):
            got = N.read_pcap(tmp_path / name)
            assert got.nano and got.linktype == N.LINKTYPE_ETHERNET, name
            stats = N.compare_records(got.records, gt.records, N.LINKTYPE_ETHERNET, mac_a, L.TCP_INGRESS_BOUND_NS,
                                      L.REORDER_BOUND_NS, label=name, truth="tcpdump")
            print(f"{name}: {len(got.records)} records equal to tcpdump's; timestamps {stats}")
        assert len(gt.records) == captured > 100
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop(signal.SIGKILL)
        assert not lab.cleanup()
