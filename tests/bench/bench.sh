#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# File-replay benchmark: pcapline vs `tcpdump -r -w` vs a tcpdump|lz4|openssl shell pipeline
# over loopback mutual TLS. See tests/bench/README.md.
#
#   tests/bench/bench.sh BUILD          (make bench)
#
# Env (all optional):
#   BENCH_SIZE_MB=1000   size of the replayed capture (built once, cached in BUILD/bench/in.pcap)
#   BENCH_REPS=3         runs per variant; the table shows the median of each figure
#   BENCH_VARIANTS="tcpdump pipeline pcapline pcapline-nofsync"   (also: pcapline-interval,
#                        the receiver with storage.fsync: interval)
#   BENCH_PCAPS=DIR      source captures (default tests/data/pcaps)
#   BENCH_KEEP=0         1 = keep the last run's outputs (BUILD/bench/run, BUILD/bench/repo)
#   BENCH_SENSOR_ENV="PCAPLINE_K=V ..."    extra settings for pcapline-sensor (listed in the results)
#   BENCH_RECEIVER_ENV="PCAPLINE_K=V ..."  extra settings for pcapline-receiver
#   BENCH_L4=1           the L4 pass (`pcapline -q l4 stats`, with `tshark -q -z conv,tcp` as the
#                        peer) after the variants; 0 = skip it, only = nothing else (no variants)
#   BENCH_L4_SLICE=500000  packets of the input given to both pcapline and tshark (tshark holds
#                        ~0.5 KB per frame: ~4 GB for the whole input); 0 = the whole input
#   BENCH_FANIN=1        the fan-in scenario (BENCH_FANIN_SENSORS sensors into one receiver, dissection
#                        off and on, BENCH_REPS times each) after the L4 pass; 0 = skip it, only =
#                        nothing else
#   BENCH_FANIN_SENSORS=50  sensors (each its own certificate, CN fan01..)
#   BENCH_FANIN_PKTS=100000 packets each sensor replays (the first ones of the input)
#   BENCH_LIVE=1         the live-stream scenario (tests/bench/live.py: storage throughput with no
#                        live consumer and with 4, one stuck, alternating, BENCH_REPS times each;
#                        bar 0.95x) at the end of a full run; 0 = skip it
# PCAPLINE_* variables inherited from the caller are removed, so that the figures do not
# depend on a stray setting; the pcapline-nofsync variant runs the receiver with
# PCAPLINE_STORAGE_FSYNC=never.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_ARG=${1:?usage: tests/bench/bench.sh BUILD}
mkdir -p "$BUILD_ARG" || exit 1
BUILD=$(cd "$BUILD_ARG" && pwd)
B=$BUILD/bench
SENSOR=$BUILD/pcapline-sensor
RECEIVER=$BUILD/pcapline-receiver
CLI=$BUILD/pcapline
SIZE_MB=${BENCH_SIZE_MB:-1000}
REPS=${BENCH_REPS:-3}
VARIANTS=${BENCH_VARIANTS:-"tcpdump pipeline pcapline pcapline-nofsync"}
KEEP=${BENCH_KEEP:-0}
L4=${BENCH_L4:-1}
L4_SLICE=${BENCH_L4_SLICE:-500000}
FANIN=${BENCH_FANIN:-1}
FANIN_SENSORS=${BENCH_FANIN_SENSORS:-50}
FANIN_PKTS=${BENCH_FANIN_PKTS:-100000}
IN=$B/in.pcap
RUN=$B/run
REPO=$B/repo
CERTS=$B/certs
TSV=$B/runs.tsv
L4TSV=$B/l4.tsv
FANIN_TSV=$B/fanin.tsv
FANIN_IN=$B/fanin.pcap
FREPO=$B/fanin-repo
RESULTS=$B/results.md
TIMEFMT='%e %U %S %M'
TIMEOUT_S=${BENCH_TIMEOUT_S:-240}   # per transfer

for v in $(compgen -e | grep '^PCAPLINE_'); do unset "$v"; done
read -r -a SENSOR_ENV <<< "${BENCH_SENSOR_ENV:-}"
read -r -a RECEIVER_ENV <<< "${BENCH_RECEIVER_ENV:-}"
export BENCH_SENSOR_ENV BENCH_RECEIVER_ENV   # for report.py

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

case $L4 in 0|1|only) ;; *) die "BENCH_L4 must be 0, 1 or only" ;; esac
case $FANIN in 0|1|only) ;; *) die "BENCH_FANIN must be 0, 1 or only" ;; esac
[ "$L4" = only ] && [ "$FANIN" = only ] && die "BENCH_L4=only and BENCH_FANIN=only exclude each other"
# BENCH_L4=only runs the L4 pass alone, BENCH_FANIN=only the fan-in alone
[ "$L4" = only ] && FANIN=0
[ "$FANIN" = only ] && L4=0
case $FANIN_SENSORS in ''|*[!0-9]*|0) die "BENCH_FANIN_SENSORS must be 1..99" ;; esac
[ "$FANIN_SENSORS" -le 99 ] || die "BENCH_FANIN_SENSORS must be 1..99"
case $FANIN_PKTS in ''|*[!0-9]*|0) die "BENCH_FANIN_PKTS must be a positive number" ;; esac
for t in tcpdump editcap mergecap capinfos lz4 openssl python3 ss /usr/bin/time mkfifo; do
	command -v "$t" >/dev/null || die "missing tool: $t"
done
if [ "$L4" != only ]; then
	for b in "$SENSOR" "$RECEIVER"; do [ -x "$b" ] || die "$b is missing: run make all first"; done
fi
if [ "$L4" != 0 ]; then
	[ -x "$CLI" ] || die "$CLI is missing: run make all first"
	command -v tshark >/dev/null || die "missing tool: tshark (the L4 pass's peer; BENCH_L4=0 skips it)"
fi
mkdir -p "$B" || exit 1

# ---------- process bookkeeping: every process is started with setsid, so that its PID is
# also its process group (GNU time and what it runs, or a whole pipeline); cleanup kills
# those groups by that PID, never anything by name ----------
PIDS=()
cleanup() {
	local p= i
	for p in "${PIDS[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	done
	# a pcapline-sensor drains for up to uplink.drain_timeout after SIGTERM: give it 1 s
	for i in $(seq 10); do
		for p in "${PIDS[@]}"; do kill -0 -- "-$p" 2>/dev/null && break; p=; done
		[ -z "$p" ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	rm -f "$RUN/srv.stdin"
	rm -rf "$B/build.tmp" "$B/l4"
	if [ "$KEEP" != 1 ]; then rm -rf "$RUN" "$REPO" "$FREPO"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_listen() {  # wait_listen PORT PID
	local i
	for i in $(seq 200); do
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# wait_pid PID SECONDS: wait for a background child; 124 on timeout (then it is killed)
wait_pid() {
	local pid=$1 t=$(($2 * 10))
	while kill -0 "$pid" 2>/dev/null && [ $t -gt 0 ]; do sleep 0.1; t=$((t - 1)); done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid"
}
# count_pcaps FILE...: "PACKETS CAPLEN_BYTES" summed over classic pcap files
# (caplen bytes = file size - 24-byte header - 16 bytes per record header)
count_pcaps() {
	local f n tn=0 tb=0 sz
	for f in "$@"; do
		[ -e "$f" ] || continue
		n=$(capinfos -c -M -T -r "$f" 2>/dev/null | awk -F'\t' '{print $2}')
		[ -n "$n" ] || { echo "- -"; return 1; }
		sz=$(stat -c %s "$f")
		tn=$((tn + n)); tb=$((tb + sz - 24 - 16 * n))
	done
	echo "$tn $tb"
}
# time_fields FILE: "USER+SYS MAXRSS_KB" from a GNU time -f '%e %U %S %M' file
time_fields() { awk 'NF>=4 && $1 ~ /^[0-9.]+$/ {print $2+$3, $4; exit}' "$1" 2>/dev/null; }
# sum_times FILE...: "CPU_SUM RSS_MAX RSS_SUM" over pipeline stages
sum_times() {
	cat "$@" 2>/dev/null | awk 'NF>=4 && $1 ~ /^[0-9.]+$/ {c+=$2+$3; if ($4>m) m=$4; s+=$4; n++}
		END {if (n) print c, m, s; else print "- - -"}'
}

# ---------- input capture ----------
pick_source() {
	local d
	for d in ${BENCH_PCAPS:-} "$ROOT/tests/data/pcaps"; do
		[ -d "$d" ] || continue
		if python3 "$HERE/pcaputil.py" linktype "$d"/*.pcap 2>/dev/null | grep -q '^1 '; then
			echo "$d"; return 0
		fi
	done
	return 1
}

build_input() {
	local src files manifest tmp f i n start end delta cursor span unit_sz reps k
	src=$(pick_source) || die "no Ethernet (linktype 1) pcaps in ${BENCH_PCAPS:+$BENCH_PCAPS or }tests/data/pcaps"
	mapfile -t files < <(python3 "$HERE/pcaputil.py" linktype "$src"/*.pcap | awk '$1 == 1 {print $2}' | sort)
	[ ${#files[@]} -gt 0 ] || die "no linktype-1 pcaps in $src"
	manifest=$( { echo "builder v1 size_mb=$SIZE_MB"; for f in "${files[@]}"; do echo "$(basename "$f") $(stat -c %s "$f")"; done; } )
	if [ -s "$IN" ] && [ -s "$IN.manifest" ] && [ "$(cat "$IN.manifest")" = "$manifest" ]; then
		log "input: cached $IN"
		return 0
	fi
	log "input: building $IN (~$SIZE_MB MB) from ${#files[@]} Ethernet pcaps in $src"
	rm -f "$IN" "$IN.manifest" "$IN.info"
	tmp=$B/build.tmp; rm -rf "$tmp"; mkdir -p "$tmp"
	# 1. each capture as microsecond pcap (editcap keeps the records of a file cut mid-record),
	#    shifted so that it starts 1 ms after the previous one ends: one "unit" whose
	#    timestamps increase from file to file.
	cursor=1700000000.000000 i=0
	for f in "${files[@]}"; do
		i=$((i + 1))
		editcap -F pcap "$f" "$tmp/a$i.pcap" 2>/dev/null
		read -r start end < <(capinfos -a -e -S -T -r -M "$tmp/a$i.pcap" 2>/dev/null | awk -F'\t' '{print $2, $3}')
		[ -n "${start:-}" ] && [ "$start" != n/a ] || { rm -f "$tmp/a$i.pcap"; continue; }
		delta=$(awk -v c="$cursor" -v s="$start" 'BEGIN {printf "%.6f", c - s}')
		editcap -F pcap -t "$delta" "$tmp/a$i.pcap" "$tmp/u$(printf %03d $i).pcap" 2>/dev/null || die "editcap -t failed on $f"
		cursor=$(awk -v e="$end" -v d="$delta" 'BEGIN {printf "%.6f", e + d + 0.001}')
		rm -f "$tmp/a$i.pcap"
	done
	mergecap -a -F pcap -w "$tmp/one.pcap" "$tmp"/u*.pcap || die "mergecap failed"
	rm -f "$tmp"/u*.pcap
	span=$(awk -v c="$cursor" 'BEGIN {printf "%.6f", c - 1700000000}')
	unit_sz=$(stat -c %s "$tmp/one.pcap")
	reps=$(( (SIZE_MB * 1000000 + unit_sz - 1) / unit_sz ))
	[ "$reps" -ge 1 ] || reps=1
	# 2. repeat the unit, each copy shifted by the unit's time span
	for k in $(seq 0 $((reps - 1))); do
		editcap -F pcap -t "$(awk -v k="$k" -v s="$span" 'BEGIN {printf "%.6f", k * s}')" \
			"$tmp/one.pcap" "$tmp/r$(printf %05d "$k").pcap" 2>/dev/null || die "editcap failed"
	done
	mergecap -a -F pcap -w "$IN.tmp" "$tmp"/r*.pcap || die "mergecap failed"
	mv "$IN.tmp" "$IN"
	rm -rf "$tmp"
	echo "$manifest" > "$IN.manifest"
	log "input: $reps copies of a ${unit_sz}-byte unit"
}

input_info() {  # caches "PACKETS CAPLEN_BYTES FILE_BYTES LZ4_BYTES" in $IN.info
	local key
	key="$(stat -c '%s %Y' "$IN")"
	if [ -s "$IN.info" ] && [ "$(head -1 "$IN.info")" = "$key" ]; then
		sed -n 2p "$IN.info"; return
	fi
	log "input: counting packets and measuring lz4 -1 -B4 size"
	local c l
	c=$(count_pcaps "$IN")
	l=$(lz4 -q -1 -B4 -c "$IN" | wc -c)
	printf '%s\n%s %s %s\n' "$key" "$c" "$(stat -c %s "$IN")" "$l" > "$IN.info"
	sed -n 2p "$IN.info"
}

# ---------- variants ----------
# Every run_* writes one line to $TSV:
# variant rep wall_s s_cpu s_rss_max s_rss_sum r_cpu r_rss_max r_rss_sum raw_bytes comp_bytes stored_pkts stored_bytes ok
result() { printf '%s\n' "$*" >> "$TSV"; }
verdict() {  # verdict PKTS BYTES -> ok|FAIL
	if [ "$1" = "$IN_PKTS" ] && [ "$2" = "$IN_BYTES" ]; then echo ok; else echo FAIL; fi
}

run_tcpdump() {
	local rep=$1 t0 t1 rc cnt s
	t0=$(now)
	setsid /usr/bin/time -o "$RUN/s.time" -f "$TIMEFMT" tcpdump -r "$IN" -w "$RUN/out.pcap" 2>"$RUN/s.err" &
	PIDS+=("$!")
	wait_pid $! "$TIMEOUT_S"; rc=$?
	t1=$(now)
	[ $rc -eq 0 ] || log "tcpdump exited $rc"
	cnt=$(count_pcaps "$RUN/out.pcap")
	s=$(time_fields "$RUN/s.time")
	result "tcpdump $rep $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') ${s% *} ${s#* } ${s#* } - - - $IN_FILE_BYTES $IN_FILE_BYTES $cnt $(verdict $cnt)"
	rm -f "$RUN/out.pcap"
}

run_pipeline() {
	local rep=$1 port t0 t1 rpid spid rc_s rc_r cnt s r
	port=$(free_port)
	rm -f "$RUN/srv.stdin"; mkfifo "$RUN/srv.stdin"
	# Receiver: s_server reads its stdin from a FIFO opened read-write (with EOF on stdin it
	# drops the session's data); -naccept 1 makes it exit when the client closes.
	setsid env R="$RUN" C="$CERTS" P="$port" F="$TIMEFMT" bash -c '
		/usr/bin/time -o "$R/r1.time" -f "$F" openssl s_server -quiet -naccept 1 -accept "127.0.0.1:$P" \
			-cert "$C/receiver.crt" -key "$C/receiver.key" -CAfile "$C/ca.crt" -Verify 1 -verify_return_error \
			0<>"$R/srv.stdin" 2>"$R/r1.err" |
		/usr/bin/time -o "$R/r2.time" -f "$F" lz4 -d -q -c > "$R/out.pcap" 2>"$R/r2.err"' </dev/null &
	rpid=$!; PIDS+=("$rpid")
	wait_listen "$port" "$rpid" || { log "pipeline: s_server did not listen"; }
	t0=$(now)
	# Sensor: -no_ign_eof closes at EOF; -nocommands stops s_client from reading data that
	# starts with Q/R/k as commands.
	setsid env R="$RUN" C="$CERTS" P="$port" F="$TIMEFMT" IN="$IN" bash -c '
		/usr/bin/time -o "$R/s1.time" -f "$F" tcpdump -r "$IN" -w - 2>"$R/s1.err" |
		/usr/bin/time -o "$R/s2.time" -f "$F" lz4 -1 -B4 -q -c 2>"$R/s2.err" |
		/usr/bin/time -o "$R/s3.time" -f "$F" openssl s_client -quiet -no_ign_eof -nocommands \
			-connect "127.0.0.1:$P" -cert "$C/sensor1.crt" -key "$C/sensor1.key" -CAfile "$C/ca.crt" \
			-verify_return_error >/dev/null 2>"$R/s3.err"' </dev/null &
	spid=$!; PIDS+=("$spid")
	wait_pid "$spid" "$TIMEOUT_S"; rc_s=$?
	wait_pid "$rpid" 60; rc_r=$?
	t1=$(now)
	[ $rc_s -eq 0 ] && [ $rc_r -eq 0 ] || log "pipeline: sensor side exited $rc_s, receiver side $rc_r"
	rm -f "$RUN/srv.stdin"
	cnt=$(count_pcaps "$RUN/out.pcap")
	s=$(sum_times "$RUN"/s[123].time)
	r=$(sum_times "$RUN"/r[12].time)
	result "pipeline $rep $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $s $r $IN_FILE_BYTES $IN_LZ4_BYTES $cnt $(verdict $cnt)"
	rm -f "$RUN/out.pcap"
}

# run_pcapline VARIANT REP [ENV=VALUE...]   (extra environment for the receiver only: the
# sensor refuses PCAPLINE_* settings it does not know)
run_pcapline() {
	local variant=$1 rep=$2 port t0 t1 tpid rpid rc_s rc_r cnt s r fr segs
	shift 2
	port=$(free_port)
	rm -rf "$REPO"
	# Raw storage: the dissection path is measured on its own (run_dissect).
	setsid env PCAPLINE_L4_ENABLED=false "${RECEIVER_ENV[@]}" "$@" /usr/bin/time -o "$RUN/r.time" -f "$TIMEFMT" "$RECEIVER" -l "127.0.0.1:$port" -d "$REPO" \
		--ca "$CERTS/ca.crt" --cert "$CERTS/receiver.crt" --key "$CERTS/receiver.key" \
		</dev/null >"$RUN/r.out" 2>"$RUN/r.err" &
	tpid=$!; PIDS+=("$tpid")
	wait_listen "$port" "$tpid" || log "$variant: receiver did not listen (see $RUN/r.err)"
	rpid=$(ps -o pid= --ppid "$tpid" | tr -d ' ')   # the receiver itself, child of GNU time
	[ -n "$rpid" ] && PIDS+=("$rpid")
	t0=$(now)
	setsid env "${SENSOR_ENV[@]}" /usr/bin/time -o "$RUN/s.time" -f "$TIMEFMT" "$SENSOR" -r "$IN" -t "127.0.0.1:$port" \
		--ca "$CERTS/ca.crt" --cert "$CERTS/sensor1.crt" --key "$CERTS/sensor1.key" \
		</dev/null >"$RUN/s.out" 2>"$RUN/s.err" &
	PIDS+=("$!")
	# The sensor exits once the receiver has acknowledged (stored) every batch.
	wait_pid $! "$TIMEOUT_S"; rc_s=$?
	t1=$(now)
	# stop the receiver (GNU time itself would die on SIGTERM without reporting)
	[ -n "$rpid" ] && kill -TERM "$rpid" 2>/dev/null
	wait_pid "$tpid" 30; rc_r=$?
	[ $rc_s -eq 0 ] && [ $rc_r -eq 0 ] || log "$variant: sensor exited $rc_s, receiver $rc_r"
	segs=("$REPO"/sensors/*/segments/*.pcap "$REPO"/sensors/*/segments/.open-*.pcap)
	cnt=$(count_pcaps "${segs[@]}")
	s=$(time_fields "$RUN/s.time")
	r=$(time_fields "$RUN/r.time")
	fr=$(python3 "$HERE/pcaputil.py" final-ratio "$RUN/s.err")
	result "$variant $rep $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') ${s% *} ${s#* } ${s#* } ${r% *} ${r#* } ${r#* } ${fr% *} $cnt $(verdict $cnt)"
	cp "$RUN/s.err" "$B/last-$variant-sensor.log"; cp "$RUN/r.err" "$B/last-$variant-receiver.log"
	[ "$variant" = pcapline ] && [ "$rep" = 1 ] && run_export && run_dissect
	[ "$KEEP" = 1 ] || rm -rf "$REPO"
}

# run_export: `pcapline export` of the whole repository just filled (every packet of the
# input, one sensor), measured like the rest: its memory must stay flat however large
# the window.
run_export() {
	local t0 t1 f rss cpu n
	t0=$(now)
	/usr/bin/time -o "$RUN/x.time" -f "$TIMEFMT" "$CLI" -q export --dir "$REPO" --from 0 --to 9000000000 \
		-o "$RUN/export.tar.gz" >"$RUN/x.out" 2>"$RUN/x.err" || { log "export failed (see $RUN/x.err)"; return; }
	t1=$(now)
	f=$(time_fields "$RUN/x.time")
	n=$(tar -xzOf "$RUN/export.tar.gz" manifest.json |
		python3 -c 'import json, sys; print(sum(s["packets"] for s in json.load(sys.stdin)["sensors"]))')
	printf '| `pcapline export` of the whole repository (%s packets, %s MB archive) | %s s | %s CPU s | %s MiB peak RSS | %s |\n' \
		"$n" "$(($(stat -c %s "$RUN/export.tar.gz") / 1000000))" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')" "${f% *}" \
		"$(awk -v k="${f#* }" 'BEGIN {printf "%.1f", k / 1024}')" \
		"$([ "$n" = "$IN_PKTS" ] && echo ok || echo FAIL)" >"$B/export.md"
	rm -f "$RUN/export.tar.gz"
}

# run_dissect: the receiver's dissection path over the repository just filled, as
# `pcapline reindex` runs it (L4, position files, index.db rows): what the receiver's
# dissection thread does per segment, timed apart from storing.
run_dissect() {
	local t0 t1 f pk cn
	t0=$(now)
	/usr/bin/time -o "$RUN/d.time" -f "$TIMEFMT" "$CLI" -q reindex --dir "$REPO" --from 0 --to 9000000000 \
		>"$RUN/d.out" 2>"$RUN/d.err" || { log "reindex failed (see $RUN/d.err)"; return; }
	t1=$(now)
	f=$(time_fields "$RUN/d.time")
	read -r pk cn < <("$CLI" -q conns --stats --dir "$REPO" | awk '{v[$1] = $2} END {print v["packets"] + 0, v["connections"] + 0}')
	printf '| dissection (`pcapline reindex` of the whole repository: %s packets, %s connections) | %s s | %s CPU s | %s Gbit/s, %s Mpkt/s per CPU s | %s MiB peak RSS | %s |\n' \
		"$pk" "$cn" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')" "${f% *}" \
		"$(awk -v b="$IN_BYTES" -v c="${f% *}" 'BEGIN {printf "%.2f", b * 8 / c / 1e9}')" \
		"$(awk -v p="$pk" -v c="${f% *}" 'BEGIN {printf "%.2f", p / c / 1e6}')" \
		"$(awk -v k="${f#* }" 'BEGIN {printf "%.1f", k / 1024}')" \
		"$([ "$pk" = "$IN_PKTS" ] && echo ok || echo FAIL)" >"$B/dissect.md"
}

# ---------- L4 pass ----------
# run_l4 NAME FILE PACKETS REP PEER: `pcapline -q l4 stats FILE` (its own counters: CPU of the
# pass, peak RSS) and, with PEER=1, `tshark -n -q -z conv,tcp -r FILE` (GNU time: user+sys and
# %M of the whole process) plus tshark on the file's first frame alone (its start-up cost).
# One line to $L4TSV:
#   name rep frames file_bytes cpu rss_kib wall t_cpu t_rss_kib t_wall t0_cpu ok
# ok: pcapline counted every frame of FILE (PACKETS, from capinfos) and tshark printed its table.
run_l4() {
	local name=$1 f=$2 n=$3 rep=$4 peer=$5 rc ok=ok fr fb cpu rss w t t0 tw
	PIDS=()
	setsid /usr/bin/time -o "$RUN/l4.time" -f "$TIMEFMT" "$CLI" -q l4 stats "$f" >"$RUN/l4.out" 2>"$RUN/l4.err" </dev/null &
	PIDS+=("$!")
	wait_pid $! "$TIMEOUT_S"; rc=$?
	[ $rc -eq 0 ] || { log "l4 stats on $f exited $rc: $(head -c 300 "$RUN/l4.err")"; ok=FAIL; }
	read -r fr fb cpu rss < <(awk '{v[$1] = $2} END {print v["frames"] + 0, v["file_bytes"] + 0, v["cpu_seconds"] + 0, v["max_rss_kib"] + 0}' "$RUN/l4.out")
	[ "$fr" = "$n" ] || { log "l4 stats on $f: $fr frames, the file has $n"; ok=FAIL; }
	w=$(awk 'NF>=4 && $1 ~ /^[0-9.]+$/ {print $1; exit}' "$RUN/l4.time")
	t="- -" t0=- tw=-
	if [ "$peer" = 1 ]; then
		setsid /usr/bin/time -o "$RUN/t.time" -f "$TIMEFMT" tshark -n -q -z conv,tcp -r "$f" >"$RUN/t.out" 2>"$RUN/t.err" </dev/null &
		PIDS+=("$!")
		wait_pid $! "$TIMEOUT_S"; rc=$?
		grep -q '^TCP Conversations' "$RUN/t.out" ||
			{ log "tshark on $f exited $rc without its table: $(grep -v '^Running as' "$RUN/t.err" | head -c 300)"; ok=FAIL; }
		t=$(time_fields "$RUN/t.time")
		tw=$(awk 'NF>=4 && $1 ~ /^[0-9.]+$/ {print $1; exit}' "$RUN/t.time")
		editcap -r "$f" "$B/l4/first.pcapng" 1 2>/dev/null
		/usr/bin/time -o "$RUN/t0.time" -f "$TIMEFMT" tshark -n -q -z conv,tcp -r "$B/l4/first.pcapng" >/dev/null 2>&1 </dev/null
		t0=$(time_fields "$RUN/t0.time"); t0=${t0% *}
	fi
	printf '%s\n' "$name $rep $fr $fb $cpu $rss ${w:--} ${t:-- -} ${tw:--} ${t0:--} $ok" >> "$L4TSV"
	log "l4: $(tail -1 "$L4TSV")"
}

# The L4 inputs: every capture of the source directory end to end (`mergecap -a`, pcapng: the
# link types differ; the pcapng reader validates the whole file when it opens it, so the peak
# RSS includes the file's size); the first BENCH_L4_SLICE packets of the input, classic pcap like
# the input (for tshark, whose memory grows with every frame); the whole input (pcapline only,
# unless the slice is the input).
run_l4_all() {
	local src all slice n_all n_slice rep f files=()
	rm -rf "$B/l4"; mkdir -p "$B/l4"
	src=$(pick_source) || die "no source captures"
	for f in "$src"/*.pcap "$src"/*.pcapng; do [ -e "$f" ] && files+=("$f"); done
	all=$B/l4/all-pcaps.pcapng
	# mergecap exits 2 when a source is cut mid-record; the records before the cut are kept.
	mergecap -a -F pcapng -w "$all" "${files[@]}" 2>/dev/null
	[ -s "$all" ] || die "mergecap of $src failed"
	n_all=$(capinfos -c -M -T -r "$all" | awk -F'\t' '{print $2}')
	slice=$IN n_slice=$IN_PKTS
	if [ "$L4_SLICE" -gt 0 ] && [ "$L4_SLICE" -lt "$IN_PKTS" ]; then
		slice=$B/l4/slice.pcap n_slice=$L4_SLICE
		editcap -F pcap -r "$IN" "$slice" "1-$L4_SLICE" || die "editcap of the L4 slice failed"
	fi
	log "l4: $n_all packets of $src merged; slice $n_slice packets of $IN"
	for rep in $(seq "$REPS"); do
		run_l4 all-pcaps "$all" "$n_all" "$rep" 1
		if [ "$slice" != "$IN" ]; then
			run_l4 input-slice "$slice" "$n_slice" "$rep" 1
			run_l4 input "$IN" "$IN_PKTS" "$rep" 0
		else
			run_l4 input "$IN" "$IN_PKTS" "$rep" 1
		fi
	done
	rm -rf "$B/l4"
}

# ---------- fan-in ----------
# FANIN_SENSORS sensors, each with its own certificate, replay the same FANIN_PKTS packets
# (the first of the input) into one receiver at once: once with l4.enabled false, once
# true, 4 MiB segments in both (so that segments close, and are dissected, while the sensors
# send). Storage throughput is stored packets (bytes) / the time from the receiver's resume
# to the last sensor's exit (a sensor exits once every batch of it is acknowledged, i.e.
# stored). ACK latency and the index wait come from the receiver's stats.json (fanin.py).

# fanin_input: BUILD/bench/fanin.pcap, the first FANIN_PKTS packets of the input (cached)
fanin_input() {
	local key
	key="$(stat -c '%s %Y' "$IN") $FANIN_PKTS"
	if ! [ -s "$FANIN_IN" ] || [ "$(cat "$FANIN_IN.key" 2>/dev/null)" != "$key" ]; then
		rm -f "$FANIN_IN" "$FANIN_IN.key"
		editcap -F pcap -r "$IN" "$FANIN_IN.tmp" "1-$FANIN_PKTS" || die "editcap of the fan-in input failed"
		mv "$FANIN_IN.tmp" "$FANIN_IN"
		echo "$key" > "$FANIN_IN.key"
	fi
	read -r FIN_PKTS FIN_BYTES < <(count_pcaps "$FANIN_IN")
	[ -n "${FIN_BYTES:-}" ] && [ "$FIN_BYTES" != - ] || die "cannot read $FANIN_IN"
}

# run_fanin off|on REP: one line to $FANIN_TSV (columns: see fanin.py)
run_fanin() {
	local mode=$1 rep=$2 l4=false port t0 t1 tpid rpid i p sid rc=0 r alive left cnt st dis rt spread catch dd ds pids=()
	local -A fin=()
	[ "$mode" = on ] && l4=true
	port=$(free_port)
	rm -rf "$FREPO"
	# No HTTP API: its fixed default port may be taken by another receiver on this machine.
	setsid env PCAPLINE_L4_ENABLED=$l4 PCAPLINE_STORAGE_SEGMENT_SIZE=4MiB PCAPLINE_API_LISTEN= "${RECEIVER_ENV[@]}" \
		/usr/bin/time -o "$RUN/fr.time" -f "$TIMEFMT" "$RECEIVER" -l "127.0.0.1:$port" -d "$FREPO" \
		--ca "$CERTS/ca.crt" --cert "$CERTS/receiver.crt" --key "$CERTS/receiver.key" \
		</dev/null >"$RUN/fr.out" 2>"$RUN/fr.err" &
	tpid=$!; PIDS+=("$tpid")
	wait_listen "$port" "$tpid" || log "fanin $mode: receiver did not listen (see $RUN/fr.err)"
	rpid=$(ps -o pid= --ppid "$tpid" | tr -d ' ')   # the receiver itself, child of GNU time
	[ -n "$rpid" ] && PIDS+=("$rpid")
	# The receiver is paused while the sensors start and connect, so that every session
	# starts at once when it resumes.
	[ -n "$rpid" ] && kill -STOP "$rpid"
	# A replaying sensor waits uplink.drain_timeout (10 s) at the end of its file for its
	# ACKs, then gives up (exit 1, batches lost): here it waits as long as the run may take,
	# so that a slow receiver shows as time, not as a failed run.
	for i in $(seq "$FANIN_SENSORS"); do
		sid=$(printf 'fan%02d' "$i")
		setsid env PCAPLINE_UPLINK_DRAIN_TIMEOUT="${TIMEOUT_S}s" "${SENSOR_ENV[@]}" "$SENSOR" -r "$FANIN_IN" -t "127.0.0.1:$port" \
			--ca "$CERTS/ca.crt" --cert "$CERTS/$sid.crt" --key "$CERTS/$sid.key" \
			</dev/null >/dev/null 2>"$RUN/fs-$sid.err" &
		pids+=("$!"); PIDS+=("$!")
	done
	for i in $(seq 200); do   # at most 10 s
		[ "$(ss -Htn state established "dport = :$port" 2>/dev/null | wc -l)" -ge "$FANIN_SENSORS" ] && break
		sleep 0.05
	done
	[ -n "$rpid" ] && kill -CONT "$rpid"
	t0=$(now)
	# Every sensor exits once all its batches are acknowledged: poll every 20 ms, bounded;
	# when each one exited tells how evenly the receiver served them.
	left=$((TIMEOUT_S * 50))
	while [ $left -gt 0 ]; do
		alive=0
		for p in "${pids[@]}"; do
			[ -n "${fin[$p]:-}" ] && continue
			if kill -0 "$p" 2>/dev/null; then alive=1; else fin[$p]=${EPOCHREALTIME:-$(now)}; fi
		done
		[ $alive = 0 ] && break
		sleep 0.02
		left=$((left - 1))
	done
	t1=$(now)
	# "FIRST MEDIAN" seconds from the resume to a sensor's exit
	spread=$(printf '%s\n' "${fin[@]}" | sort -n | awk -v t0="$t0" '{v[NR] = $1 - t0}
		END {if (NR) printf "%.3f %.3f", v[1], v[int((NR + 1) / 2)]; else print "- -"}')
	dis=$(python3 "$HERE/fanin.py" dissected "$FREPO")
	# Dissection may have waited while the CPUs were saturated (l4.defer_max): how long
	# after the last sensor's exit every segment was dissected (at most 120 s).
	catch=-
	if [ "$mode" = on ]; then
		for i in $(seq 600); do
			read -r dd ds < <(python3 "$HERE/fanin.py" dissected "$FREPO")
			if [ "$dd" != - ] && [ "$dd" = "$ds" ]; then
				catch=$(awk -v a="$t1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')
				break
			fi
			sleep 0.2
		done
	fi
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null && { kill -KILL -- "-$p" 2>/dev/null; rc=124; }
		wait "$p"; r=$?
		[ $r -eq 0 ] || [ $rc -ne 0 ] || rc=$r
	done
	[ $rc -eq 0 ] || log "fanin $mode: a sensor exited $rc (see $RUN/fs-*.err)"
	[ -n "$rpid" ] && kill -TERM "$rpid" 2>/dev/null
	wait_pid "$tpid" 60 || log "fanin $mode: receiver exited $? (see $B/last-fanin-$mode-receiver.log)"
	cnt=$(python3 "$HERE/fanin.py" count "$FREPO" "$FANIN_SENSORS" "$FIN_PKTS" "$FIN_BYTES")
	st=$(python3 "$HERE/fanin.py" stats "$FREPO")
	rt=$(time_fields "$RUN/fr.time")
	read -r -a cnt <<< "$cnt"
	[ "${cnt[2]:-}" = ok ] && [ $rc -eq 0 ] || { log "fanin $mode: ${cnt[*]}"; cnt[2]=FAIL; }
	printf '%s\n' "$mode $rep $FANIN_SENSORS $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $spread ${cnt[0]:--} ${cnt[1]:--} ${rt:-- -} $st $dis $catch ${cnt[2]}" >> "$FANIN_TSV"
	cp "$RUN/fr.err" "$B/last-fanin-$mode-receiver.log"
	cp "$RUN/fs-fan01.err" "$B/last-fanin-$mode-sensor.log"
	rm -f "$RUN"/fs-*.err
	[ "$KEEP" = 1 ] || rm -rf "$FREPO"
}

run_fanin_all() {
	local i rep m order
	fanin_input
	for i in $(seq "$FANIN_SENSORS"); do
		"$ROOT/scripts/pcapline-certs" "$CERTS" sensor "$(printf 'fan%02d' "$i")" >/dev/null || die "pcapline-certs failed"
	done
	log "fanin: $FANIN_SENSORS sensors x $FIN_PKTS packets ($FIN_BYTES packet bytes) each"
	: > "$FANIN_TSV"
	for rep in $(seq "$REPS"); do
		# the order alternates, so that a drift of the machine's load hits both alike
		if [ $((rep % 2)) = 1 ]; then order="off on"; else order="on off"; fi
		for m in $order; do
			PIDS=()
			sync
			run_fanin "$m" "$rep"
			log "fanin: $(tail -1 "$FANIN_TSV")"
		done
	done
}

# ---------- main ----------
build_input
read -r IN_PKTS IN_BYTES IN_FILE_BYTES IN_LZ4_BYTES < <(input_info)
[ -n "${IN_LZ4_BYTES:-}" ] || die "cannot read $IN"
log "input: $IN_PKTS packets, $IN_BYTES caplen bytes, $IN_FILE_BYTES file bytes, lz4 -1 -B4: $IN_LZ4_BYTES bytes"
[ "$L4" = only ] || "$ROOT/scripts/pcapline-certs" "$CERTS" all >/dev/null || die "pcapline-certs failed"
ONLY=
[ "${BENCH_L4:-1}" = only ] && ONLY=l4
[ "$FANIN" = only ] && ONLY=fanin

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
awk '{exit !($1 > 0.5)}' /proc/loadavg && log "warning: load average $LOAD0 before the runs: other work on this machine skews the figures"
rm -rf "$RUN"; mkdir -p "$RUN"
if [ "$ONLY" = l4 ]; then
	# the last full run's results stay; this one's go to l4-results.md
	VARIANTS= TSV=/dev/null RESULTS=$B/l4-results.md
elif [ "$ONLY" = fanin ]; then
	# the same: this one's go to fanin-results.md
	VARIANTS= TSV=/dev/null L4TSV=/dev/null RESULTS=$B/fanin-results.md
else
	: > "$TSV"
	rm -f "$B/export.md" "$B/dissect.md"
fi
: > "$L4TSV"
for rep in $(seq "$REPS"); do
	for v in $VARIANTS; do
		rm -f "$RUN"/*.time
		PIDS=()   # the previous run's processes have all been waited for
		sync   # start each run without the previous run's dirty pages pending
		case $v in
		tcpdump) run_tcpdump "$rep" ;;
		pipeline) run_pipeline "$rep" ;;
		pcapline) run_pcapline pcapline "$rep" ;;
		pcapline-nofsync) run_pcapline pcapline-nofsync "$rep" PCAPLINE_STORAGE_FSYNC=never ;;
		pcapline-interval) run_pcapline pcapline-interval "$rep" PCAPLINE_STORAGE_FSYNC=interval ;;
		*) die "unknown variant $v" ;;
		esac
		log "$(tail -1 "$TSV")"
	done
done

[ "$L4" = 0 ] || run_l4_all
[ "$FANIN" = 0 ] || run_fanin_all

rc=0
if [ "$ONLY" = fanin ]; then
	printf '# pcapline fan-in benchmark\n\ncommit %s, %s, load average %s before, %s after\n' \
		"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$(date -u '+%F %T UTC')" \
		"$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee "$RESULTS"
else
python3 "$HERE/report.py" --tsv "$TSV" --l4-tsv "$L4TSV" --l4-slice "$L4_SLICE" --out "$RESULTS" --input "$IN" \
	--commit "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
	--load "$LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after" \
	--in-pkts "$IN_PKTS" --in-bytes "$IN_BYTES" --in-file-bytes "$IN_FILE_BYTES" --in-lz4-bytes "$IN_LZ4_BYTES"
rc=$?
fi
if [ -z "$ONLY" ] && [ -s "$B/export.md" ]; then
	{ echo; echo "| export | wall | CPU | memory | packets |"; echo "|---|---|---|---|---|"; cat "$B/export.md"; } | tee -a "$RESULTS"
	grep -q 'FAIL |$' "$B/export.md" && rc=1
fi
if [ -z "$ONLY" ] && [ -s "$B/dissect.md" ]; then
	{ echo; echo "| dissection | wall | CPU | per CPU second | memory | packets |"; echo "|---|---|---|---|---|---|"; cat "$B/dissect.md"; } | tee -a "$RESULTS"
	grep -q 'FAIL |$' "$B/dissect.md" && rc=1
fi
grep -q ' FAIL$' "$TSV" && { log "some runs did not store every packet (see $TSV)"; rc=1; }
grep -q ' FAIL$' "$L4TSV" && { log "some L4 runs failed (see $L4TSV)"; rc=1; }
if [ "$FANIN" != 0 ]; then
	python3 "$HERE/fanin.py" report "$FANIN_TSV" "$RESULTS" || { log "fan-in: a run or a bar failed (see $FANIN_TSV)"; rc=1; }
fi
if [ -z "$ONLY" ] && [ "${BENCH_LIVE:-1}" != 0 ]; then
	python3 "$HERE/live.py" "$BUILD" "$IN" "$CERTS" "$B/live.md" || { log "live: a run lost packets or the bar failed"; rc=1; }
	[ -s "$B/live.md" ] && { echo; cat "$B/live.md"; } >> "$RESULTS"
fi
exit $rc
