#!/usr/bin/env bash
# What relaying every subscriber call costs (issue 14): pinhole as registrar,
# proxy and relay (fast path on when it loads) carries BENCH_CALLS concurrent
# calls with real RTP in both directions, once per [relay] media mode, runs of
# the modes interleaved, and reports how many calls the relay took, the
# server's CPU and the media's loss.
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
# A run: sipp (bench/sipp/uac_rtp.xml) places BENCH_CALLS calls at
# BENCH_RATE/s to registered callees answered by bench/sipp/uas_rtp.xml; each
# call has RTP ports of its own (caller 198.18.0.3:20000+2i, callee
# 198.18.0.2:24000+2i) and is held until the run ends. Once every call is up,
# the streams are read from what each party's SDP received: for a relayed
# call `pinhole ctl calls --json` names each party's SDP address and the relay
# port it sends to; a call missing there was not relayed and its parties send
# to each other. rtp_bench --streams (bench/relay/rtp_bench.c) then sends
# 172-byte PCMU packets at 50/s on every stream (2 per call) for
# BENCH_WARMUP_SECS (latching) + BENCH_MEASURE_SECS, and counts what arrives.
# Measured over that window: the server's CPU (utime+stime of the pinhole
# process, all threads, during the measured seconds) and the kernel's run time
# of pinhole's fast path program (that time is charged to no process; the
# kernel counts it while rtp_bench holds BPF_ENABLE_STATS, a reference of its
# own, so the global kernel.bpf_stats_enabled other benchmarks on the machine
# switch is left alone), the concurrent
# relay sessions, the share of forwarded RTP the kernel carried, and the loss.
# Medians of BENCH_REPEAT runs per mode.
#
# Environment (all optional):
#   PINHOLE             pinhole binary (build-bench/pinhole, then build/pinhole);
#                       libpinhole_lib.a beside it builds rtp_bench
#   BENCH_MODES         [relay] media values ("auto nat-facing")
#   BENCH_CALLS         concurrent calls (1000; at most 1000: ctl calls shows that many)
#   BENCH_RATE          new calls per second while calls are set up (100)
#   BENCH_WARMUP_SECS   RTP before the measured window (2)
#   BENCH_MEASURE_SECS  measured window (10)
#   BENCH_REPEAT        runs per mode (3)
#   BENCH_FASTPATH      [relay] fastpath (auto)
#   BENCH_OUT           logs (a new /tmp/pinhole-natfacing.XXXXXX)
# Ports (in the namespace natfb<PID>): SIP 5060, uas 5062, uac 5064, control
# 127.0.0.1:5080, relay 40000-49999, parties 20000-25999. Processes are
# stopped by PID, never by name; the namespace is removed at exit. Not part of
# ctest: timing never decides whether a test passes.

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
LIB=$(dirname "$PINHOLE")/libpinhole_lib.a
[ -f "$LIB" ] || { echo "no $LIB beside $PINHOLE" >&2; exit 1; }
command -v sipp >/dev/null || { echo "sipp is needed" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (a network namespace, the fast path)" >&2; exit 1; }

MODES=${BENCH_MODES:-"auto nat-facing"}
CALLS=${BENCH_CALLS:-1000}
RATE=${BENCH_RATE:-100}
WARMUP=${BENCH_WARMUP_SECS:-2}
MEASURE=${BENCH_MEASURE_SECS:-10}
REPEAT=${BENCH_REPEAT:-3}
FASTPATH=${BENCH_FASTPATH:-auto}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-natfacing.XXXXXX)}
mkdir -p "$OUT"
[ "$CALLS" -ge 1 ] && [ "$CALLS" -le 1000 ] || { echo "BENCH_CALLS: 1..1000" >&2; exit 2; }
NS=natfb$$
ADDR=198.18.0.1 UAS_IP=198.18.0.2 GEN_IP=198.18.0.3 PORT=5060 UAS_PORT=5062 GEN_PORT=5064
CALLER_RTP=20000 CALLEE_RTP=24000
CTL=127.0.0.1:5080
RAMP=$(((CALLS + RATE - 1) / RATE))
HOLD=$((RAMP + 20 + WARMUP + MEASURE + 30)) # seconds: outlives the run, which stops it
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
# the generator, against the same build as the server
BENCH="$OUT/rtp_bench"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Wall -Wextra -I "$ROOT/src" -o "$BENCH" "$HERE/rtp_bench.c" "$LIB" \
	$(pkg-config --libs inih sqlite3 libssl libcrypto zlib) $(pkg-config --libs libbpf 2>/dev/null) -lpthread -lm ||
	{ echo "cannot build rtp_bench" >&2; exit 1; }

cpu_ticks() { # PID: utime+stime
	local f
	f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# shellcheck disable=SC2086 # the fields, split
	set -- $f
	echo $((${12} + ${13}))
}
counter() { in_ns "$PINHOLE" ctl counters --control "$CTL" 2>/dev/null | jq -r --arg k "$1" '.[$k] // 0'; }
bpf_ns() { # PROG_ID: run_time_ns of the program (0 when unknown)
	[ -n "$1" ] && command -v bpftool >/dev/null || { echo 0; return; }
	bpftool prog show id "$1" -j 2>/dev/null | jq -r '.run_time_ns // 0' 2>/dev/null || echo 0
}
stop() { # PID: TERM, then KILL
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}
# current_calls STATFILE: sipp's CurrentCall from its last statistics line
current_calls() {
	awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "CurrentCall") c = i; next }
		{ v = $c } END { print v + 0 }' "$1" 2>/dev/null
}

# run MODE N: one run; prints "relayed cores bpf_cores loss_pct fast_share sent
# received_pps bpf_ns_per_packet"
run() {
	local mode=$1 n=$2 dir=$OUT/$1-$2 spid upid gpid i up prog c0 c1 b0 b1 t0 t1 sess f0 f1 k0 k1
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
		[ -n "$(counter relay_sessions)" ] && break
		kill -0 "$spid" 2>/dev/null || { log "$mode: pinhole exited: $(tail -n 3 "$dir/server.log")"; return 1; }
		sleep 0.1
	done
	prog=$(sed -n 's/.*fast path: .*bpf prog id \([0-9]*\).*/\1/p' "$dir/server.log" | head -n 1)
	# the callees, registered from the socket the uas answers on
	in_ns timeout -s INT -k 5 40 sipp -sf "$SIPP_DIR/register.xml" -key upfx callee -r 2000 -m "$CALLS" \
		-i "$UAS_IP" -p "$UAS_PORT" "${SIPP_COMMON[@]}" -stf "$dir/callees.csv" -error_file "$dir/callees.err" \
		-timeout 30s "$ADDR:$PORT" >"$dir/callees.out" 2>&1
	# call i: callee i, the caller's RTP port, the callee's
	awk -v n="$CALLS" -v a="$CALLER_RTP" -v b="$CALLEE_RTP" 'BEGIN { print "SEQUENTIAL"
		for (i = 0; i < n; i++) printf "callee%d;%d;%d\n", i + 1, a + 2 * i, b + 2 * i }' >"$dir/calls.csv"
	ip netns exec "$NS" sipp -sf "$SIPP_DIR/uas_rtp.xml" -i "$UAS_IP" -p "$UAS_PORT" "${SIPP_COMMON[@]}" \
		-stf "$dir/uas.csv" -error_file "$dir/uas.err" "$ADDR:$PORT" >"$dir/uas.out" 2>&1 &
	upid=$!
	PIDS+=("$upid")
	sleep 0.3
	ip netns exec "$NS" sipp -sf "$SIPP_DIR/uac_rtp.xml" -inf "$dir/calls.csv" -r "$RATE" -m "$CALLS" \
		-d $((HOLD * 1000)) -i "$GEN_IP" -p "$GEN_PORT" "${SIPP_COMMON[@]}" -stf "$dir/gen.csv" \
		-error_file "$dir/gen.err" "$ADDR:$PORT" >"$dir/gen.out" 2>&1 &
	gpid=$!
	PIDS+=("$gpid")
	for i in $(seq 1 $((RAMP + 20))); do
		sleep 1
		up=$(current_calls "$dir/gen.csv")
		[ "${up:-0}" -ge "$CALLS" ] && break
	done
	sleep 1 # the last ACKs
	up=$(current_calls "$dir/gen.csv")
	[ "${up:-0}" -ge "$CALLS" ] || log "$mode run $n: only ${up:-0} of $CALLS calls up (see $dir)"
	# the streams: relayed calls from the relay, the others party to party
	in_ns "$PINHOLE" ctl calls --json --control "$CTL" >"$dir/calls.json" 2>"$dir/calls.err"
	jq -r '.calls[]?.legs[].streams[] | "\(.announced) \(.relay)"' "$dir/calls.json" >"$dir/streams"
	awk -v n="$CALLS" -v a="$CALLER_RTP" -v b="$CALLEE_RTP" -v g="$GEN_IP" -v u="$UAS_IP" '
		NR == FNR { relayed[$1] = 1; next }
		END { for (i = 0; i < n; i++) {
			c = g ":" (a + 2 * i); e = u ":" (b + 2 * i)
			if (!(c in relayed) && !(e in relayed)) { print c, e; print e, c } } }' \
		"$dir/streams" /dev/null >>"$dir/streams"
	sess=$(counter relay_sessions)
	f0=$(counter relay_forwarded_packets_total) k0=$(counter relay_fastpath_packets_total)
	b0=$(bpf_ns "$prog") t0=$(date +%s.%N)
	in_ns "$BENCH" --streams "$dir/streams" --relay "$mode" --pid "$spid" --bpf-stats --warmup "$WARMUP" \
		--secs "$MEASURE" >"$dir/rtp.out" 2>"$dir/rtp.err" || log "$mode run $n: rtp_bench failed: $(cat "$dir/rtp.err")"
	b1=$(bpf_ns "$prog") t1=$(date +%s.%N)
	f1=$(counter relay_forwarded_packets_total) k1=$(counter relay_fastpath_packets_total)
	stop "$gpid"
	stop "$upid"
	stop "$spid"
	PIDS=()
	local res
	res=$(grep '^result' "$dir/rtp.out")
	[ -n "$res" ] || return 1
	[[ $res == *bpf_stats=1* ]] || log "$mode run $n: BPF_ENABLE_STATS refused: the fast path's run time is not counted"
	[ -n "$prog" ] || [ "$FASTPATH" = off ] || log "$mode run $n: no fast path program id in the log (not loaded?)"
	kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$res"; }
	awk -v s="$sess" -v c="$(kv cores)" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" \
		-v l="$(kv loss_pct)" -v f0="$f0" -v f1="$f1" -v k0="$k0" -v k1="$k1" -v sent="$(kv sent)" \
		-v pps="$(kv forwarded_pps)" \
		'BEGIN { f = f1 - f0; b = (b1 - b0) / 1e9 / (t1 - t0)
			printf "%d %.3f %.3f %.3f %.3f %d %d %d\n", s, c, b, l, (f > 0 ? (k1 - k0) / f : 0), sent,
				pps, (pps > 0 ? b * 1e9 / pps : 0) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

ip netns add "$NS" || { echo "cannot make namespace $NS" >&2; exit 1; }
ip -n "$NS" link set lo up
for a in "$ADDR" "$UAS_IP" "$GEN_IP"; do ip -n "$NS" addr add "$a/32" dev lo; done
log "$CALLS concurrent calls with RTP both ways (50 pps per stream), set up at $RATE/s, ${WARMUP}s + ${MEASURE}s of RTP, $REPEAT runs per mode, modes interleaved; logs in $OUT"
declare -A RES=()
for n in $(seq 1 "$REPEAT"); do
	for mode in $MODES; do
		r=$(run "$mode" "$n") || { log "$mode run $n failed"; continue; }
		log "$mode run $n: relayed $(cut -d' ' -f1 <<<"$r"), $(cut -d' ' -f7 <<<"$r") RTP/s, cores $(cut -d' ' -f2 <<<"$r") + fast path $(cut -d' ' -f3 <<<"$r"), loss $(cut -d' ' -f4 <<<"$r") %, kernel share $(cut -d' ' -f5 <<<"$r")"
		RES[$mode]+="$r"$'\n'
	done
done
printf '| [relay] media | concurrent calls | relayed calls | RTP packets/s received | server process cores | fast path cores (BPF run time) | BPF ns per packet | RTP loss %% | relayed RTP carried by the kernel | runs (relayed/process/BPF cores) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for mode in $MODES; do
	[ -n "${RES[$mode]:-}" ] || continue
	col() { printf '%s' "${RES[$mode]}" | sed '/^$/d' | cut -d' ' -f"$1" | median; }
	runs=$(printf '%s' "${RES[$mode]}" | sed '/^$/d' | awk '{ printf "%s%s/%s/%s", (NR > 1 ? ", " : ""), $1, $2, $3 }')
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$CALLS" "$(col 1)" "$(col 7)" \
		"$(col 2)" "$(col 3)" "$(col 8)" "$(col 4)" "$(col 5)" "$runs"
done
