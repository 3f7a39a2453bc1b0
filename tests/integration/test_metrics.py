# SPDX-License-Identifier: BSD-2-Clause
"""Metrics and health of the receiver's API: GET /metrics, /healthz, /readyz.

- A real Prometheus (the distribution's `prometheus`, its own config, TSDB and port in
  the test's tmp) scrapes the receiver every second while two sensors replay captures;
  a PromQL query through its HTTP API returns exactly the stored packet count the
  receiver writes in stats.json, which capinfos confirms on the stored segments and on
  the source files. `promtool check metrics` passes on the endpoint's output.
- /readyz is 503 with its reason while the store loads (the index held locked by
  another writer), /healthz 200 and /metrics served meanwhile (pcapline_ready 0); an
  /api/v1 request made then waits and is answered once ready; with api.token, /metrics
  needs the token and the probes do not.
- Hostile scrapers (parallel scrapes in a loop, slowloris connections that never finish
  their headers) do not stall ingest: a replay stores every packet while they run.
"""
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import netns as N
from conftest import DATA, Proc, free_port, tls_args, wait_listening
from test_export import big_capture

PCAPS = DATA / "pcaps"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
TOKEN = "metrics-test-token-0123456789"


def http_get(port, path, token=None, timeout=10):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError) as e:
        return 0, repr(e)  # not listening (yet)


def capinfos_packets(paths):
    """Packets in the capture files, as capinfos counts them."""
    out = subprocess.run(["capinfos", "-c", "-M", "-T", "-r"] + [str(p) for p in paths],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(line.split("\t")[1]) for line in out.splitlines() if line.strip())


def segments(data, sensor):
    d = Path(data) / "sensors" / sensor / "segments"
    files = sorted(d.glob("*.pcap"))
    assert not list(d.glob(".open-*")), "segments left open"
    return files


def stored_packets(data, sensor):
    return json.loads((Path(data) / "sensors" / sensor / "stats.json").read_text())["stored"]["packets"]


def start_receiver(binaries, certs, tmp_path, procs, data, env=None, log="receiver.log", wait=True):
    port, api_port = free_port(), free_port()
    full = {"PCAPLINE_API_LISTEN": f"127.0.0.1:{api_port}"}
    full.update(env or {})
    rx = Proc([binaries[1], "-l", f"127.0.0.1:{port}", "-d", data] + tls_args(certs, "receiver"),
              tmp_path / log, env=full)
    procs.append(rx)
    if wait:
        wait_listening(port, timeout=30)
        N.wait_for(lambda: http_get(api_port, "/readyz")[0] == 200, 30, "the receiver to be ready", rx.text)
    return rx, port, api_port


def replay(binaries, certs, tmp_path, procs, port, sensor, capture):
    sx = Proc([binaries[0], "-r", capture, "-t", f"127.0.0.1:{port}"] + tls_args(certs, sensor),
              tmp_path / f"sensor-{sensor}.log")
    procs.append(sx)
    return sx


def check_metrics(text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, f"promtool check metrics:\n{r.stdout}{r.stderr}\n{text[:3000]}"


def sample(text, line_start):
    """The value of the sample line that starts with line_start (name{labels})."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split(" ")[-1])
    raise AssertionError(f"no sample {line_start} in:\n{text[:4000]}")


def sample_or_none(text, line_start):
    try:
        return sample(text, line_start)
    except AssertionError:
        return None


def prom_query(port, q):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=10) as r:
        res = json.loads(r.read())
    assert res["status"] == "success", res
    return res["data"]["result"]


def test_prometheus_sees_the_stored_count(binaries, certs, procs, tmp_path):
    if not (os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL)):
        pytest.fail("prometheus and promtool are missing: run make deps")
    data = tmp_path / "data"
    rx, port, api_port = start_receiver(binaries, certs, tmp_path, procs, data)
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pcapline-receiver
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['127.0.0.1:{api_port}']
""")
    prom = Proc([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
    procs.append(prom)
    N.wait_for(lambda: prom.p.poll() is None and http_get(prom_port, "/-/ready", timeout=2)[0] == 200, 60,
               "Prometheus to be ready", prom.text)

    caps = {"s1": PCAPS / "http-1000-requests-one-conn.pcap", "s2": PCAPS / "tcp-echo-500-conns.pcap"}
    sx = [replay(binaries, certs, tmp_path, procs, port, s, c) for s, c in caps.items()]
    for s in sx:
        assert s.wait(timeout=120) == 0, s.text()
    # stats.json is written when a session ends: the receiver's own report.
    N.wait_for(lambda: all((data / "sensors" / s / "stats.json").exists() for s in caps), 20, "stats.json")
    want = {s: stored_packets(data, s) for s in caps}
    for s, c in caps.items():
        # What was stored is what the source holds, packet for packet (capinfos on both).
        assert want[s] == capinfos_packets([c]) == capinfos_packets(segments(data, s)), (s, want)

    def prom_values():
        res = prom_query(prom_port, "pcapline_stored_packets_total")
        return {r["metric"]["sensor"]: int(float(r["value"][1])) for r in res}

    N.wait_for(lambda: prom_values() == want, 30, f"Prometheus to report {want}",
               lambda: f"{prom_values()}\n{prom.text()[-2000:]}")
    # The same through PromQL arithmetic, and no loss for any reason.
    total = prom_query(prom_port, "sum(pcapline_stored_packets_total)")
    assert int(float(total[0]["value"][1])) == sum(want.values())
    lost = prom_query(prom_port, "sum(pcapline_lost_packets_total)")
    assert int(float(lost[0]["value"][1])) == 0
    up = prom_query(prom_port, 'up{job="pcapline-receiver"}')
    assert up and up[0]["value"][1] == "1", up

    status, text = http_get(api_port, "/metrics")
    assert status == 200
    check_metrics(text)
    for s in caps:
        assert sample(text, f'pcapline_stored_packets_total{{sensor="{s}"}}') == want[s]
        # The sensor's own count came through its STATS frames.
        assert sample(text, f'pcapline_sensor_captured_packets_total{{sensor="{s}"}}') == want[s]
        assert sample(text, f'pcapline_segments{{sensor="{s}"}}') == len(segments(data, s))
        assert sample(text, f'pcapline_repository_bytes{{sensor="{s}"}}') == \
            sum(p.stat().st_size for p in segments(data, s))
        assert sample(text, f'pcapline_sensor_connected{{sensor="{s}"}}') == 0
    assert sample(text, "pcapline_ready") == 1
    assert sample(text, "pcapline_ack_latency_seconds_count") >= 2
    N.wait_for(lambda: sample(http_get(api_port, "/metrics")[1], "pcapline_dissect_backlog_segments") == 0,
               60, "the dissection to catch up")
    assert prom.stop() == 0, prom.text()[-2000:]
    assert rx.stop() == 0, rx.text()


def test_readyz_while_the_store_loads(binaries, certs, procs, tmp_path):
    data = tmp_path / "data"
    env = {"PCAPLINE_API_TOKEN": TOKEN}
    rx, port, api_port = start_receiver(binaries, certs, tmp_path, procs, data, env=env)
    sx = replay(binaries, certs, tmp_path, procs, port, "s1", PCAPS / "dns-udp-queries.pcap")
    assert sx.wait(timeout=60) == 0, sx.text()
    # The token: /metrics and the API need it, the probes do not.
    assert http_get(api_port, "/metrics")[0] == 401
    assert http_get(api_port, "/metrics", token=TOKEN)[0] == 200
    assert http_get(api_port, "/healthz") == (200, "ok\n")
    assert http_get(api_port, "/readyz") == (200, "ready\n")
    assert rx.stop() == 0, rx.text()

    # Another writer holds the index: the start-up work waits for it.
    db = sqlite3.connect(data / "index.db", isolation_level=None, timeout=0)
    db.execute("BEGIN EXCLUSIVE")
    try:
        rx, port, api_port = start_receiver(binaries, certs, tmp_path, procs, data, env=env,
                                            log="receiver2.log", wait=False)
        wait_listening(api_port)
        N.wait_for(lambda: http_get(api_port, "/healthz")[0] == 200, 10, "/healthz", rx.text)
        status, body = http_get(api_port, "/readyz")
        assert (status, body) == (503, "not ready: loading the store\n"), rx.text()
        status, text = http_get(api_port, "/metrics", token=TOKEN)
        assert status == 200
        check_metrics(text)
        assert sample(text, "pcapline_ready") == 0
        # A request to the API made now waits for the store rather than failing.
        answer = {}

        def conns():
            answer["r"] = http_get(api_port, "/api/v1/conns?limit=1", token=TOKEN, timeout=60)
            answer["t"] = time.monotonic()

        t = threading.Thread(target=conns)
        t.start()
        time.sleep(0.5)
        assert not answer, answer
        assert http_get(api_port, "/readyz")[0] == 503
    finally:
        released = time.monotonic()
        db.execute("ROLLBACK")
        db.close()
    N.wait_for(lambda: http_get(api_port, "/readyz")[0] == 200, 30, "ready after the lock", rx.text)
    t.join(60)
    assert answer["r"][0] == 200 and answer["t"] >= released, answer
    assert json.loads(answer["r"][1]) is not None
    text = http_get(api_port, "/metrics", token=TOKEN)[1]
    assert sample(text, "pcapline_ready") == 1
    assert sample(text, 'pcapline_stored_packets_total{sensor="s1"}') == stored_packets(data, "s1")
    assert rx.stop() == 0, rx.text()


def test_hostile_scrapers_do_not_stall_ingest(binaries, certs, procs, tmp_path):
    data = tmp_path / "data"
    n_big, _ = big_capture(tmp_path / "big.pcap", 60 * 10**6)
    rx, port, api_port = start_receiver(binaries, certs, tmp_path, procs, data)

    # Without scrapers first: how long this machine takes for the replay now.
    t0 = time.monotonic()
    sx = replay(binaries, certs, tmp_path, procs, port, "s1", tmp_path / "big.pcap")
    assert sx.wait(timeout=120) == 0, sx.text()
    alone = time.monotonic() - t0

    stop = threading.Event()
    scrapes, errors = [0], []

    def scraper():
        while not stop.is_set():
            try:
                status, text = http_get(api_port, "/metrics", timeout=10)
                assert status == 200 and "pcapline_ready 1" in text, status
                scrapes[0] += 1
            except Exception as e:  # counted, reported below
                errors.append(repr(e))

    def slowloris(stop_at):
        socks = []
        try:
            for _ in range(24):
                s = socket.create_connection(("127.0.0.1", api_port), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
                socks.append(s)
            while not stop.is_set() and time.monotonic() < stop_at:
                for s in socks:
                    try:
                        s.sendall(b"X")  # one header byte a second, never done
                    except OSError:
                        pass
                time.sleep(1)
        finally:
            for s in socks:
                s.close()

    threads = [threading.Thread(target=scraper) for _ in range(8)]
    threads.append(threading.Thread(target=slowloris, args=(time.monotonic() + 120,)))
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        t0 = time.monotonic()
        sx = replay(binaries, certs, tmp_path, procs, port, "s2", tmp_path / "big.pcap")
        assert sx.wait(timeout=120) == 0, sx.text()
        hostile = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(f"replay of {n_big} packets: {alone:.2f} s alone, {hostile:.2f} s with {scrapes[0]} scrapes "
          f"and 24 slowloris connections")
    assert not errors, errors[:5]
    assert scrapes[0] >= 8, scrapes
    N.wait_for(lambda: (data / "sensors" / "s2" / "stats.json").exists(), 20, "stats.json")
    for s in ("s1", "s2"):
        assert stored_packets(data, s) == n_big == capinfos_packets(segments(data, s))
    # Slower with the scrapers on two cores, never stalled.
    assert hostile < max(4 * alone, alone + 20), (alone, hostile)
    assert rx.stop() == 0, rx.text()


# The hostile client of the sensor's endpoint, run inside the namespace: holds 8 idle
# connections (every slot), opens a 9th (refused: closed at once), sends a request
# larger than the 4 KiB bound (closed unanswered), then holds the slots for hold seconds.
HOSTILE = """
import socket, sys, time
port, hold = int(sys.argv[1]), float(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
for s in idle:
    s.sendall(b"GET /metr")
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
print("refused" if extra.recv(100) == b"" else "answered", flush=True)
time.sleep(hold)
for s in idle:
    s.close()
time.sleep(0.3)
big = socket.create_connection(("127.0.0.1", port))
big.settimeout(5)
try:
    big.sendall(b"GET /metrics HTTP/1.1\\r\\nX: " + b"a" * 8000)
    print("big:", big.recv(100), flush=True)
except OSError as e:
    print("big: closed", e, flush=True)
"""


def ns_get(ns, port, path):
    """(status, body) of GET http://127.0.0.1:port/path inside ns, with curl."""
    r = N.nsrun(ns, ["curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}",
                     f"http://127.0.0.1:{port}{path}"], check=False)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def test_sensor_counters_through_the_receiver_and_its_own_endpoint(binaries, certs, procs, tmp_path):
    """A live sensor on lo in a namespace of its own with metrics.listen: its endpoint
    and the receiver's /metrics (through STATS frames) both show exactly the packets
    sent; a client holding every slot of the sensor's endpoint and one sending an
    oversized request do not stop capture."""
    sensor_bin, receiver_bin = binaries
    nss = N.Namespaces()
    ns = nss.add("metrics")
    sent = 300
    send = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for i in range(int(sys.argv[1])):\n"
            "    s.sendto(i.to_bytes(4,'big')*32,('198.18.7.1',5999))\n")
    try:
        N.run(["ip", "-n", ns, "addr", "add", "198.18.7.1/32", "dev", "lo"])
        data = tmp_path / "data"
        rx = Proc([receiver_bin, "-l", "127.0.0.1:47800", "-d", data] + tls_args(certs, "receiver"),
                  tmp_path / "receiver.log", netns=ns, env={"PCAPLINE_API_LISTEN": "127.0.0.1:47801"})
        procs.append(rx)
        N.wait_for(lambda: N.listening(ns, "tcp", 47800) and N.listening(ns, "tcp", 47801), 20, "receiver")
        sx = Proc([sensor_bin, "-i", "lo", "-f", "udp and dst port 5999", "-t", "127.0.0.1:47800"]
                  + tls_args(certs, "s1"), tmp_path / "sensor.log", netns=ns,
                  env={"PCAPLINE_METRICS_LISTEN": "127.0.0.1:9101", "PCAPLINE_LOG_STATS_INTERVAL": "1s"})
        procs.append(sx)
        N.wait_for(lambda: "uplink: connected to" in sx.text() and N.listening(ns, "tcp", 9101), 15,
                   "sensor connected", sx.text)
        assert ns_get(ns, 9101, "/healthz") == (200, "ok\n")
        assert ns_get(ns, 9101, "/nothing")[0] == 404
        N.nsrun(ns, [N.PY, "-c", send, str(sent)], timeout=60)

        def sensor_says(name, want):
            status, text = ns_get(ns, 9101, "/metrics")
            return status == 200 and sample_or_none(text, f'{name}{{sensor="s1"}}') == want

        N.wait_for(lambda: sensor_says("pcapline_sensor_captured_packets_total", sent), 15,
                   "the sensor's endpoint to count every packet", lambda: ns_get(ns, 9101, "/metrics")[1])
        N.wait_for(lambda: sensor_says("pcapline_sensor_acked_packets_total", sent), 15, "every packet acked")
        text = ns_get(ns, 9101, "/metrics")[1]
        check_metrics(text)
        for reason in ("kernel", "interface", "sensor_queue", "spool"):
            assert sample(text, f'pcapline_lost_packets_total{{sensor="s1",reason="{reason}"}}') == 0

        def receiver_says(want):
            status, t = ns_get(ns, 47801, "/metrics")
            return (status == 200
                    and sample_or_none(t, 'pcapline_sensor_captured_packets_total{sensor="s1"}') == want
                    and sample_or_none(t, 'pcapline_stored_packets_total{sensor="s1"}') == want)

        # The sensor's own count reaches the receiver in its STATS frames (every second).
        N.wait_for(lambda: receiver_says(sent), 15, "the receiver to show the sensor's count",
                   lambda: ns_get(ns, 47801, "/metrics")[1][:3000])

        hostile = Proc(["ip", "netns", "exec", ns, N.PY, "-c", HOSTILE, "9101", "3"], tmp_path / "hostile.log")
        procs.append(hostile)
        N.wait_for(lambda: "refused" in hostile.text() or "answered" in hostile.text(), 10, "the 9th connection",
                   hostile.text)
        assert "refused" in hostile.text(), hostile.text()
        # Every slot is held: capture goes on regardless.
        N.nsrun(ns, [N.PY, "-c", send, str(sent)], timeout=60)
        N.wait_for(lambda: receiver_says(2 * sent), 20, "the second burst stored",
                   lambda: ns_get(ns, 47801, "/metrics")[1][:3000])
        assert hostile.wait(timeout=30) == 0, hostile.text()
        assert "big: closed" in hostile.text() or "big: b''" in hostile.text(), hostile.text()
        N.wait_for(lambda: ns_get(ns, 9101, "/metrics")[0] == 200, 10, "the endpoint to serve again")
        text = ns_get(ns, 9101, "/metrics")[1]
        assert sample(text, 'pcapline_sensor_metrics_requests_total{result="refused"}') >= 1
        assert sample(text, 'pcapline_sensor_metrics_requests_total{result="dropped"}') >= 9
        assert sample(text, 'pcapline_sensor_captured_packets_total{sensor="s1"}') == 2 * sent
        assert sx.stop() == 0, sx.text()
        assert rx.stop() == 0, rx.text()
        assert capinfos_packets(segments(data, "s1")) == 2 * sent
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.stop()
        assert not nss.cleanup()
