#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# make demo: a throwaway CA, a receiver and a sensor on loopback, real HTTP and DNS
# traffic, a clean stop, and a summary of what was captured and stored.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "$BUILD" && pwd)
DEMO=$BIN/demo
PORT_RX=47850 PORT_HTTP=18080 PORT_DNS=15353
rm -rf "$DEMO"
mkdir -p "$DEMO/www" "$DEMO/data"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "== 1. certificates: a throwaway CA, a receiver and a sensor ('demo-sensor')"
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" ca >/dev/null
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" receiver localhost 127.0.0.1 >/dev/null
"$ROOT/scripts/pcapline-certs" "$DEMO/certs" sensor demo-sensor >/dev/null
C=$DEMO/certs

echo "== 2. receiver on 127.0.0.1:$PORT_RX storing under $DEMO/data"
"$BIN/pcapline-receiver" -l 127.0.0.1:$PORT_RX -d "$DEMO/data" \
	--ca "$C/ca.crt" --cert "$C/receiver.crt" --key "$C/receiver.key" 2>"$DEMO/receiver.log" &
RX=$!; PIDS+=($RX)
for _ in $(seq 50); do ss -Hltn "sport = :$PORT_RX" | grep -q . && break; sleep 0.1; done

echo "== 3. sensor capturing on lo: HTTP (port $PORT_HTTP) and DNS (port $PORT_DNS)"
# The demo's DNS server is not on port 53: tell the sensor where to learn names from.
PCAPLINE_NAMES_DNS_PORTS=$PORT_DNS \
"$BIN/pcapline-sensor" -i lo -f "tcp port $PORT_HTTP or udp port $PORT_DNS" -t 127.0.0.1:$PORT_RX \
	--ca "$C/ca.crt" --cert "$C/demo-sensor.crt" --key "$C/demo-sensor.key" 2>"$DEMO/sensor.log" &
SX=$!; PIDS+=($SX)
for _ in $(seq 50); do grep -q "connected to" "$DEMO/sensor.log" && break; sleep 0.1; done

echo "== 4. traffic: an HTTP server, curl, a DNS responder, dig"
head -c 300000 /dev/urandom > "$DEMO/www/blob.bin"
echo "<html><body>pcapline demo</body></html>" > "$DEMO/www/index.html"
python3 -m http.server $PORT_HTTP --bind 127.0.0.1 --directory "$DEMO/www" >/dev/null 2>&1 &
PIDS+=($!)
python3 "$ROOT/scripts/demo_dns.py" 127.0.0.1 $PORT_DNS 198.18.0.80 30 &
PIDS+=($!)
sleep 0.5
for i in 1 2 3 4 5; do
	curl -s -o /dev/null "http://127.0.0.1:$PORT_HTTP/index.html"
	curl -s -o /dev/null "http://127.0.0.1:$PORT_HTTP/blob.bin"
	dig +short +tries=1 +time=1 @127.0.0.1 -p $PORT_DNS "host$i.demo.test" A >/dev/null
done
sleep 0.5

echo "== 5. stopping the sensor (it flushes and waits for acknowledgements), then the receiver"
kill -TERM $SX; wait $SX || true
kill -TERM $RX; wait $RX || true

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
