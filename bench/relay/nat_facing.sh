#!/usr/bin/env bash
# What relaying every subscriber call costs (issue 14): pinhole as registrar,
# proxy and relay (fast path on when it loads) carries BENCH_CALLS concurrent
# calls to registered callees, once per [relay] media mode, and reports how
# many calls the relay took and the server's CPU.
#
#   bench/relay/nat_facing.sh            (about 1 min per run; 2 modes x BENCH_REPEAT runs)
#
# Everything runs in a network namespace of its own (root: the fast path
# needs it anyway) whose loopback holds public-looking addresses: the server
# 198.18.0.1, the callees 198.18.0.2 (registered from the UAS's own socket),
# the caller 198.18.0.3. Every Via, Contact and SDP names the address the
# packets come from, so to content-based detection (`auto`) every party looks
# direct, as a phone behind a SIP ALG or announcing a STUN address does, so
# `auto` relays none of these calls and the new default (`nat-facing`: a
# registered party is NAT-facing unless its network is listed as direct)
# relays all of them. This is the worst case of the change: every call
# relayed that was not before.
#
# A run: sipp's uac (bench/sipp/uac.xml) places BENCH_RATE calls/s, each held
# BENCH_CALLS / BENCH_RATE s, so BENCH_CALLS are up at once after the ramp;
# then BENCH_MEASURE_SECS s are measured: the server's CPU (utime+stime from
# /proc/PID/stat, all threads) and the relay's concurrent sessions
# (`relay_sessions`, read in the middle of the window). The calls carry no
# RTP: the media's own cost with the fast path is section (a) of "Media
# relay" in docs/benchmarks.md (rtp_bench, 1,000 calls). Medians of
# BENCH_REPEAT runs per mode.
#
# Environment (all optional):
#   PINHOLE             pinhole binary (build-bench/pinhole, then build/pinhole)
#   BENCH_MODES         [relay] media values ("auto nat-facing")
#   BENCH_CALLS         concurrent calls (1000)
#   BENCH_RATE          new calls per second (50)
#   BENCH_MEASURE_SECS  measured window (10)
#   BENCH_REPEAT        runs per mode (3)
#   BENCH_FASTPATH      [relay] fastpath (auto)
#   BENCH_OUT           logs (a new /tmp/pinhole-natfacing.XXXXXX)
# Ports (in the namespace natfb<PID>): SIP 5060, uas 5062, uac 5064, control
# 127.0.0.1:5080, relay 40000-49999. Processes are stopped by PID, never by
# name; the namespace is removed at exit. Not part of ctest.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PINHOLE=${PINHOLE:-}
if [ -z "$PINHOLE" ]; then
	for c in "$ROOT/build-bench/pinhole" "$ROOT/build/pinhole"; do
		[ -x "$c" ] && { PINHOLE=$c; break; }
	done
fi
[ -x "${PINHOLE:-}" ] || { echo "no pinhole binary (set PINHOLE)" >&2; exit 1; }
command -v sipp >/dev/null || { echo "sipp is needed" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (a network namespace, the fast path)" >&2; exit 1; }

MODES=${BENCH_MODES:-"auto nat-facing"}
CALLS=${BENCH_CALLS:-1000}
RATE=${BENCH_RATE:-50}
MEASURE=${BENCH_MEASURE_SECS:-10}
REPEAT=${BENCH_REPEAT:-3}
FASTPATH=${BENCH_FASTPATH:-auto}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-natfacing.XXXXXX)}
mkdir -p "$OUT"
NS=natfb$$
ADDR=198.18.0.1 UAS_IP=198.18.0.2 GEN_IP=198.18.0.3 PORT=5060 UAS_PORT=5062 GEN_PORT=5064
CTL=127.0.0.1:5080
HOLD=$((CALLS / RATE))          # seconds each call is held
TOTAL=$((RATE * (HOLD + MEASURE + 2)))
HZ=$(getconf CLK_TCK)
SIPP_DIR=$ROOT/bench/sipp
SIPP_COMMON=(-nostdin -buff_size 4194304 -trace_stat -fd 1 -trace_err)
in_ns() { ip netns exec "$NS" "$@"; }

log() { printf '[natfacing %s] %s\n' "$(date +%T)" "$*" >&2; }

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	PIDS=()
	ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cpu_ticks() { # PID: utime+stime
	local f
	f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# shellcheck disable=SC2086 # the fields, split
	set -- $f
	echo $((${12} + ${13}))
}
counter() { in_ns "$PINHOLE" ctl counters --control "$CTL" 2>/dev/null | jq -r --arg k "$1" '.[$k] // 0'; }
stop() { # PID: TERM, then KILL
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# run MODE N: one run; prints "relayed cores fast" (concurrent relay sessions,
# server cores over the window, 1 when the fast path loaded)
run() {
	local mode=$1 n=$2 dir=$OUT/$1-$2 spid upid gpid c0 c1 t0 t1 sess fast=0
	mkdir -p "$dir"
	cat >"$dir/pinhole.conf" <<-EOF
		[sip]
		listen = udp:$ADDR:$PORT
		workers = 2
		; every call comes from one caller address and goes to one callee address
		rate_limit = 0
		[registrar]
		open = yes
		[keepalive]
		interval = 0
		[store]
		path =
		[control]
		listen = $CTL
		[relay]
		address = $ADDR
		advertise = $ADDR
		ports = 40000-49999
		media = $mode
		fastpath = $FASTPATH
		; one caller and one address place every call: no per-source or per-AOR cap
		max_pairs_per_source = 0
		max_pairs_per_aor = 0
		[log]
		level = info
	EOF
	ip netns exec "$NS" "$PINHOLE" serve --config "$dir/pinhole.conf" >"$dir/server.log" 2>&1 &
	spid=$!
	PIDS+=("$spid")
	for _ in $(seq 1 100); do
		counter relay_sessions >/dev/null 2>&1 && [ -n "$(counter relay_sessions)" ] && break
		kill -0 "$spid" 2>/dev/null || { log "$mode: pinhole exited: $(tail -n 3 "$dir/server.log")"; return 1; }
		sleep 0.1
	done
	# the callees, registered from the socket the uas answers on
	in_ns timeout -s INT -k 5 40 sipp -sf "$SIPP_DIR/register.xml" -key upfx callee -r 2000 -m "$CALLS" \
		-i "$UAS_IP" -p "$UAS_PORT" "${SIPP_COMMON[@]}" -stf "$dir/callees.csv" -error_file "$dir/callees.err" \
		-timeout 30s "$ADDR:$PORT" >"$dir/callees.out" 2>&1
	awk -v n="$CALLS" 'BEGIN { for (i = 1; i <= n; i++) print "callee" i }' |
		sed '1i SEQUENTIAL' >"$dir/callees.csv.in"
	ip netns exec "$NS" sipp -sf "$SIPP_DIR/uas.xml" -i "$UAS_IP" -p "$UAS_PORT" "${SIPP_COMMON[@]}" -stf "$dir/uas.csv" \
		-error_file "$dir/uas.err" "$ADDR:$PORT" >"$dir/uas.out" 2>&1 &
	upid=$!
	PIDS+=("$upid")
	sleep 0.3
	ip netns exec "$NS" timeout -s INT -k 5 $((HOLD + MEASURE + 60)) sipp -sf "$SIPP_DIR/uac.xml" -inf "$dir/callees.csv.in" \
		-r "$RATE" -m "$TOTAL" -d $((HOLD * 1000)) -i "$GEN_IP" -p "$GEN_PORT" "${SIPP_COMMON[@]}" \
		-stf "$dir/gen.csv" -error_file "$dir/gen.err" "$ADDR:$PORT" >"$dir/gen.out" 2>&1 &
	gpid=$!
	PIDS+=("$gpid")
	sleep $((HOLD + 1)) # the ramp: CALLS up at once from here on
	c0=$(cpu_ticks "$spid"); t0=$(date +%s.%N)
	sleep $((MEASURE / 2))
	sess=$(counter relay_sessions)
	sleep $((MEASURE - MEASURE / 2))
	c1=$(cpu_ticks "$spid"); t1=$(date +%s.%N)
	grep -q 'fast path: latched IPv4 RTP forwarded in the kernel' "$dir/server.log" && fast=1
	wait "$gpid" 2>/dev/null
	stop "$upid"
	stop "$spid"
	PIDS=()
	local failed
	failed=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "FailedCall(C)") c = i; next } { v = $c } END { print v + 0 }' "$dir/gen.csv" 2>/dev/null)
	[ "${failed:-0}" -eq 0 ] || log "$mode run $n: $failed calls failed (see $dir)"
	awk -v s="$sess" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v f="$fast" \
		'BEGIN { printf "%d %.3f %d\n", s, (c1 - c0) / hz / (t1 - t0), f }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

ip netns add "$NS" || { echo "cannot make namespace $NS" >&2; exit 1; }
ip -n "$NS" link set lo up
for a in "$ADDR" "$UAS_IP" "$GEN_IP"; do ip -n "$NS" addr add "$a/32" dev lo; done
log "$CALLS concurrent calls ($RATE/s, held ${HOLD}s), ${MEASURE}s measured, $REPEAT runs per mode; logs in $OUT"
printf '| [relay] media | concurrent calls | relayed calls (median) | server cores (median) | runs (relayed, cores) | fast path |\n'
printf '|---|---|---|---|---|---|\n'
for mode in $MODES; do
	res=()
	for n in $(seq 1 "$REPEAT"); do
		r=$(run "$mode" "$n") || { log "$mode run $n failed"; continue; }
		log "$mode run $n: relayed $(cut -d' ' -f1 <<<"$r"), cores $(cut -d' ' -f2 <<<"$r")"
		res+=("$r")
	done
	[ "${#res[@]}" -gt 0 ] || continue
	rel=$(printf '%s\n' "${res[@]}" | cut -d' ' -f1 | median)
	cores=$(printf '%s\n' "${res[@]}" | cut -d' ' -f2 | median)
	runs=$(printf '%s\n' "${res[@]}" | awk '{ printf "%s%s/%s", (NR > 1 ? ", " : ""), $1, $2 }')
	fast=$(printf '%s\n' "${res[@]}" | cut -d' ' -f3 | sort -u | tr '\n' ' ')
	printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$CALLS" "$rel" "$cores" "$runs" \
		"$([ "$fast" = '1 ' ] && echo loaded || echo "not loaded")"
done
