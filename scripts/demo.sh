#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# make demo: a throwaway CA, a receiver and a sensor on loopback, real HTTP and DNS
# traffic, a clean stop, and a summary of what was captured and stored.
set -eEuo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "$BUILD" && pwd)
DEMO=${PCAPLINE_DEMO_DIR:-$BIN/demo}
rm -rf "$DEMO"
mkdir -p "$DEMO/www" "$DEMO/data"
DEMO=$(cd "$DEMO" && pwd)
PIDS=()
LOGS=("$DEMO/receiver.log" "$DEMO/sensor.log" "$DEMO/http.log" "$DEMO/dns.log")
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
# On any failure: which command failed, then the end of every log, where the cause is.
trap 'echo "demo: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
on_exit() {
	local rc=$?
	cleanup
	if [ "$rc" -ne 0 ]; then
		echo "demo FAILED (exit $rc); the end of each log:" >&2
		for l in "${LOGS[@]}"; do
			[ -s "$l" ] && { echo "--- $l" >&2; tail -n 15 "$l" >&2; }
		done
	fi
	exit "$rc"
}
trap on_exit EXIT
fail() { echo "demo: $*" >&2; exit 1; }

# Ports for everything the demo starts, each free (TCP and UDP, on any address)
# when picked, and taken below the kernel's ephemeral range so that no outgoing
# connection takes one in between. A port someone else holds (the API's usual 47801, say)
# is simply not picked.
read -r PORT_RX PORT_API PORT_HTTP PORT_DNS < <(python3 - <<'PY'
import random, socket
lo, hi = 20000, 32767
try:
    lo_eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    hi = min(hi, lo_eph - 1)
except (OSError, ValueError, IndexError):
    pass
held, ports = [], []
for port in random.sample(range(lo, hi + 1), hi - lo + 1):
    try:
        # The any address conflicts with every holder of the port, loopback ones included.
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            held.append(s)
            s.bind(("0.0.0.0", port))
    except OSError:
        continue
    ports.append(port)
    if len(ports) == 4:
        break
print(*ports)
PY
)
[ -n "$PORT_DNS" ] || fail "found no four free ports between 20000 and 32767"

# wait_listening PID PORT tcp|udp WHAT LOG: until PID itself listens on PORT (bounded);
# fails with WHAT's log when the process exits or the time is up.
wait_listening() {
	local pid=$1 port=$2 proto=$3 what=$4 log=$5 flag=t
	[ "$proto" = udp ] && flag=u
	for _ in $(seq 300); do
		ss -Hl${flag}np "sport = :$port" 2>/dev/null | grep -q "pid=$pid," && return 0
		kill -0 "$pid" 2>/dev/null || fail "$what exited before listening on $proto port $port (see $log)"
		sleep 0.1
	done
	fail "$what not listening on $proto port $port after 30 s (see $log)"
}

echo "== 1. certificates: a throwaway CA, a receiver and a sensor ('demo-sensor')"
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" ca >/dev/null
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" receiver localhost 127.0.0.1 >/dev/null
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" sensor demo-sensor >/dev/null
C=$DEMO/certs

echo "== 2. receiver on 127.0.0.1:$PORT_RX (HTTP API on 127.0.0.1:$PORT_API) storing under $DEMO/data"
PCAPLINE_API_LISTEN=127.0.0.1:$PORT_API \
"$BIN/pcapline-receiver" -l 127.0.0.1:$PORT_RX -d "$DEMO/data" \
	--ca "$C/ca.crt" --cert "$C/receiver.crt" --key "$C/receiver.key" 2>"$DEMO/receiver.log" &
RX=$!; PIDS+=($RX)
wait_listening $RX $PORT_RX tcp "the receiver" "$DEMO/receiver.log"
wait_listening $RX $PORT_API tcp "the receiver's HTTP API" "$DEMO/receiver.log"

echo "== 3. sensor capturing on lo: HTTP (port $PORT_HTTP) and DNS (port $PORT_DNS)"
# The demo's DNS server is not on port 53: tell the sensor where to learn names from.
PCAPLINE_NAMES_DNS_PORTS=$PORT_DNS \
"$BIN/pcapline-sensor" -i lo -f "tcp port $PORT_HTTP or udp port $PORT_DNS" -t 127.0.0.1:$PORT_RX \
	--ca "$C/ca.crt" --cert "$C/demo-sensor.crt" --key "$C/demo-sensor.key" 2>"$DEMO/sensor.log" &
SX=$!; PIDS+=($SX)
for i in $(seq 301); do
	grep -q "connected to" "$DEMO/sensor.log" && break
	kill -0 $SX 2>/dev/null || fail "the sensor exited (see $DEMO/sensor.log)"
	[ "$i" -le 300 ] || fail "the sensor did not connect within 30 s (see $DEMO/sensor.log)"
	sleep 0.1
done

echo "== 4. traffic: an HTTP server, curl, a DNS responder, dig"
head -c 300000 /dev/urandom > "$DEMO/www/blob.bin"
echo "<html><body>pcapline demo</body></html>" > "$DEMO/www/index.html"
python3 -m http.server $PORT_HTTP --bind 127.0.0.1 --directory "$DEMO/www" >"$DEMO/http.log" 2>&1 &
HTTP=$!; PIDS+=($HTTP)
python3 "$ROOT/scripts/demo_dns.py" 127.0.0.1 $PORT_DNS 198.18.0.80 120 >"$DEMO/dns.log" 2>&1 &
DNS=$!; PIDS+=($DNS)
wait_listening $HTTP $PORT_HTTP tcp "the HTTP server" "$DEMO/http.log"
wait_listening $DNS $PORT_DNS udp "the DNS responder" "$DEMO/dns.log"
for i in 1 2 3 4 5; do
	curl -fsS --max-time 30 -o /dev/null "http://127.0.0.1:$PORT_HTTP/index.html"
	curl -fsS --max-time 30 -o /dev/null "http://127.0.0.1:$PORT_HTTP/blob.bin"
	dig +short +tries=3 +time=2 @127.0.0.1 -p $PORT_DNS "host$i.demo.test" A >/dev/null
done
# Give the sensor a moment to read the last packets from the kernel before it is stopped.
sleep 0.5

echo "== 5. stopping the sensor (it flushes and waits for acknowledgements), then the receiver"
kill -TERM $SX 2>/dev/null || fail "the sensor is no longer running (see $DEMO/sensor.log)"
wait $SX || fail "the sensor exited with status $? (see $DEMO/sensor.log)"
kill -TERM $RX 2>/dev/null || fail "the receiver is no longer running (see $DEMO/receiver.log)"
wait $RX || fail "the receiver exited with status $? (see $DEMO/receiver.log)"

echo
echo "== summary"
grep "final:" "$DEMO/sensor.log" | sed "s/^.*final: /sensor:   /"
grep "stored" "$DEMO/receiver.log" | tail -1 | sed "s/^.*info: /receiver: /"
files=$(find "$DEMO/data" -name '*.pcap' | sort)
echo "files written: $(echo "$files" | grep -c .)"
for f in $files; do
	printf '  %s: %s packets\n' "$f" "$(capinfos -Mc "$f" 2>/dev/null | awk '/Number of packets/ {print $NF}')"
done
names=$(find "$DEMO/data" -name names.jsonl | head -1)
if [ -n "$names" ]; then
	echo "names learned from DNS: $(grep -c '"src": *"dns"' "$names") (in $names)"
fi
"$BIN/pcapline" -q export --dir "$DEMO/data" --from now-10m --to now -o "$DEMO/export.tar.gz" &&
	echo "export of the last 10 minutes: $DEMO/export.tar.gz ($(tar -tzf "$DEMO/export.tar.gz" | tr '\n' ' '))"
echo "connections the receiver dissected (pcapline conns):"
"$BIN/pcapline" -q conns --dir "$DEMO/data" --limit 8 |
	awk '{printf "  %-8s %-5s %-24s %-3s %-24s %-12s %s\n", $1, $4, $5, (NR == 1 ? "" : "->"), $6, $7, (NR == 1 ? "packets" : $9 + $11)}'
conn=$("$BIN/pcapline" -q conns --dir "$DEMO/data" --json --limit 1000 |
	python3 -c 'import json, sys; c = [x for x in json.load(sys.stdin) if x["proto"] == "tcp"]; print(c[0]["conn_id"] if c else "")')
if [ -n "$conn" ]; then
	"$BIN/pcapline" -q pcap --dir "$DEMO/data" --conn "$conn" -o "$DEMO/conn-$conn.pcap" &&
		echo "packets of TCP connection $conn: $DEMO/conn-$conn.pcap ($(capinfos -Mc "$DEMO/conn-$conn.pcap" | awk '/Number of packets/ {print $NF}') packets)"
fi
echo
echo "Open them in Wireshark:   wireshark $(echo "$files" | head -1)"
echo "or read them with tshark: tshark -r $(echo "$files" | head -1) | head"
echo "Logs: $DEMO/sensor.log, $DEMO/receiver.log"
