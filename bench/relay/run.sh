#!/usr/bin/env bash
# Media relay benchmark: pinhole's relay against rtpengine (user space), in one invocation.
#
#   bench/relay/run.sh [calls|blast|latency|all]      (default: all)
#
# Both relays run standalone on 127.0.0.1 and are driven the same way over
# the ng protocol by bench/relay/rtp_bench.c (pinhole's ng client: offer with
# party A's SDP, answer with party B's), which then plays both parties of
# every call: one UDP socket per party, sending to the relay port the other
# side's rewritten SDP names and receiving on its own (symmetric RTP).
#
# calls  N concurrent G.711 calls (172-byte packets, 50 packets/s per
#        direction, so 100 N packets/s through the relay), for each N in
#        BENCH_RELAY_CALLS; and the same sockets talking directly without a
#        relay, the generator's and sink's own latency ("direct").
# blast  BENCH_BLAST_CALLS calls, offered a total rate that climbs through
#        BENCH_BLAST_RATES (sendmmsg batches); a relay's ramp ends at the
#        first step with loss over 0.01 %, or after a lossless step that the
#        generator could not offer in full (< 95 % of the target: the
#        generator, not the relay, is the limit). The best lossless step is
#        reported.
# latency  the relay's added latency, read within one run: N relayed calls
#        and N direct calls (no relay) interleaved in the same 1 ms send
#        slots, each with its own histogram, so both see the same load and
#        the same scheduling of the generator and the sink. Added latency =
#        relayed minus direct (p50, p99), BENCH_LAT_RUNS runs per relay and
#        N in BENCH_LAT_CALLS, and the median of the runs. The "calls" table
#        compares separate runs, whose p99 moves by hundreds of us on 2 shared
#        cores; this is the figure to quote.
#
# For every step: offered and forwarded packets/s, loss, the relay's CPU
# (utime+stime from /proc/PID/stat, all threads) as cores and as ns per
# forwarded packet; for pinhole, the run time of its fast path program as the
# kernel counts it (bpf_stats, root only; over the whole run, warm-up
# included, per measured packet: an upper bound), which no process is
# charged for; and the latency from send to receive (p50, p99, max;
# a timestamp in the payload). Tables with both relays side by side and the
# ratios (pinhole / rtpengine) go to stdout; logs under BENCH_OUT.
#
# Environment (all optional):
#   PINHOLE            pinhole binary; its build dir must hold libpinhole_lib.a
#                      (build-bench/pinhole, then build/pinhole)
#   RTPENGINE          rtpengine binary (rtpengine; Debian: apt-get install rtpengine-daemon)
#   BENCH_RELAYS       which relays ("pinhole rtpengine"; "pinhole-user" is pinhole
#                      with fastpath = off)
#   BENCH_RELAY_CALLS  concurrent calls per step ("100 500 1000")
#   BENCH_RELAY_SECS   measured seconds per step (5); warm-up 1 s before
#   BENCH_BLAST_CALLS  calls in the blast (100: rtpengine discards a socket's queue
#                      when it holds many packets, "UDP receive queue exceeded",
#                      so a few very fast streams measure that, not forwarding)
#   BENCH_BLAST_RATES  offered packets/s ("50000 100000 150000 200000 250000 300000")
#   BENCH_LAT_CALLS    relayed calls in the latency runs ("100 1000"; as many direct again)
#   BENCH_LAT_RUNS     runs per relay and N (5)
#   BENCH_THREADS      rtpengine's worker threads (nproc); pinhole's relay-only
#                      host runs one worker per core
#   BENCH_OUT          where logs go (a new /tmp/pinhole-relay-bench.XXXXXX)
# Ports on 127.0.0.1: ng 22230 (pinhole), 22231 (rtpengine), 22232 (pinhole-user);
# relay ports 22300-31999 (pinhole), 32000-39999 (pinhole-user) and 40000-49999
# (rtpengine, --delete-delay=0 so that
# a step's deleted calls free their ports for the next); the parties
# 10000-13999 (fixed, so no ephemeral socket of ours lands in a relay range).
#
# Nothing here is part of ctest: timing never decides whether a test passes.
# Processes are stopped by PID, never by name (lab tests may run alongside).

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=${1:-all}
case $MODE in calls | blast | latency | all) ;; *) echo "usage: $0 [calls|blast|latency|all]" >&2; exit 2 ;; esac

PINHOLE=${PINHOLE:-}
if [ -z "$PINHOLE" ]; then
	for c in "$ROOT/build-bench/pinhole" "$ROOT/build/pinhole"; do
		[ -x "$c" ] && { PINHOLE=$c; break; }
	done
fi
[ -x "${PINHOLE:-}" ] || { echo "no pinhole binary (set PINHOLE)" >&2; exit 1; }
LIB=$(dirname "$PINHOLE")/libpinhole_lib.a
[ -f "$LIB" ] || { echo "no $LIB beside $PINHOLE" >&2; exit 1; }
RTPENGINE=${RTPENGINE:-rtpengine}
RELAYS=${BENCH_RELAYS:-pinhole rtpengine}
CALLS=${BENCH_RELAY_CALLS:-100 500 1000}
SECS=${BENCH_RELAY_SECS:-5}
BLAST_CALLS=${BENCH_BLAST_CALLS:-100}
BLAST_RATES=${BENCH_BLAST_RATES:-50000 100000 150000 200000 250000 300000}
LAT_CALLS=${BENCH_LAT_CALLS:-100 1000}
LAT_RUNS=${BENCH_LAT_RUNS:-5}
THREADS=${BENCH_THREADS:-$(nproc)}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-relay-bench.XXXXXX)}
mkdir -p "$OUT"
NG_PH=127.0.0.1:22230 NG_RE=127.0.0.1:22231 NG_PU=127.0.0.1:22232 PARTY_PORTS=10000

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
# the kernel's run time of pinhole's fast path program (root only): exact
# nanoseconds the tc program spent, which no process is charged for
BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo '')
if [ "$BPF_STATS_WAS" = 0 ] && command -v bpftool >/dev/null; then
	sysctl -qw kernel.bpf_stats_enabled=1 2>/dev/null || BPF_STATS_WAS=''
fi
# bpf_ns: "run_time_ns run_cnt" of the bench pinhole's program (its id from its log)
BPF_PROG=''
bpf_ns() {
	[ -n "$BPF_PROG" ] || { echo "0 0"; return; }
	bpftool prog show id "$BPF_PROG" -j 2>/dev/null |
		jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"' 2>/dev/null || echo "0 0"
}
trap 'cleanup; [ "$BPF_STATS_WAS" = 0 ] && sysctl -qw kernel.bpf_stats_enabled=0' EXIT
trap 'exit 130' INT TERM

# --- build the generator against the same build as the relay --------------------
BENCH="$OUT/rtp_bench"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Wall -Wextra -I "$ROOT/src" -o "$BENCH" "$HERE/rtp_bench.c" "$LIB" \
	$(pkg-config --libs inih sqlite3 libssl libcrypto zlib) $(pkg-config --libs libbpf 2>/dev/null) -lpthread -lm ||
	{ echo "cannot build rtp_bench" >&2; exit 1; }

# --- the relays -------------------------------------------------------------------
declare -A PID NG
# start_pinhole_as NAME PORTS NG FASTPATH
start_pinhole_as() {
	# relay only: no [sip], so workers = one per core ([sip] workers would
	# enable SIP; a relay-only host cannot set its worker count yet)
	cat >"$OUT/$1.conf" <<-EOF
		; bench/relay/run.sh: a relay-only pinhole
		[relay]
		address = 127.0.0.1
		ports = $2
		ng = udp:$3
		fastpath = $4
		batch_wait = ${BENCH_BATCH_WAIT:-0}
		[log]
		level = info
	EOF
	"$PINHOLE" serve --config "$OUT/$1.conf" >"$OUT/$1.log" 2>&1 &
	PID[$1]=$!
	PIDS+=("${PID[$1]}")
	NG[$1]=$3
}
start_pinhole() { start_pinhole_as pinhole 22300-31999 "$NG_PH" auto; }
# pinhole's user-space path alone (what carries IPv6, RTCP, and everything
# on a host without eBPF); pinhole's program, if loaded, lets its packets by
start_pinhole-user() { start_pinhole_as pinhole-user 32000-39999 "$NG_PU" off; }
start_rtpengine() {
	command -v "$RTPENGINE" >/dev/null || { echo "no rtpengine (apt-get install rtpengine-daemon)" >&2; exit 1; }
	"$RTPENGINE" --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng="$NG_RE" \
		--port-min=40000 --port-max=49999 --delete-delay=0 --foreground --log-stderr --log-level=4 \
		--num-threads="$THREADS" >"$OUT/rtpengine.log" 2>&1 &
	PID[rtpengine]=$!
	PIDS+=("${PID[rtpengine]}")
	NG[rtpengine]=$NG_RE
}
for r in $RELAYS; do "start_$r"; done
sleep 1
for r in $RELAYS; do
	kill -0 "${PID[$r]}" 2>/dev/null || { echo "$r did not start: $(tail -n 5 "$OUT/$r.log")" >&2; exit 1; }
done
BPF_PROG=$(sed -n 's/.*fast path: .*bpf prog id \([0-9]*\).*/\1/p' "$OUT/pinhole.log" 2>/dev/null | head -n 1)

# run NAME ARGS...: one rtp_bench run; its result line to $OUT/results
run() {
	local name=$1; shift
	local line b0 b1
	b0=$(bpf_ns)
	line=$("$BENCH" --port-base "$PARTY_PORTS" "$@" 2>>"$OUT/rtp_bench.err" | grep '^result ') ||
		{ echo "rtp_bench $name failed: $(tail -n 3 "$OUT/rtp_bench.err")" >&2; return 1; }
	b1=$(bpf_ns)
	# the program's time over the whole run (setup and warm-up included), per
	# forwarded packet of the measured part: an upper bound
	line+=$(awk -v a="$b0" -v b="$b1" -v l="$line" 'BEGIN {
		split(a, x, " "); split(b, y, " "); n = split(l, f, " ")
		for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
		pk = v["forwarded_pps"] * v["secs"]
		printf " bpf_ns_per_pkt=%.0f bpf_runs=%d", (pk > 0 ? (y[1] - x[1]) / pk : 0), y[2] - x[2] }')
	echo "$line step=$name" >>"$OUT/results"
	echo "$line"
}
# get LINE KEY
get() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
# median_col K: the median of column K of the lines on stdin
median_col() { awk -v k="$1" 'NF { print $k }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "# relay bench $(date -u +%FT%TZ) on $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# pinhole $PINHOLE; $("$RTPENGINE" --version 2>&1 | head -n 1); $THREADS worker threads each; logs in $OUT"

if [ "$MODE" = calls ] || [ "$MODE" = all ]; then
	echo
	echo "## calls: N concurrent G.711 calls, 50 pps per direction, ${SECS}s measured"
	printf '%-6s %-10s %9s %9s %8s %6s %9s %7s %9s %8s %8s\n' calls relay offered forwarded loss% \
		cores ns/pkt bpf-ns total-ns p50us p99us
	declare -A R
	for n in $CALLS; do
		R[direct]=$(run "calls-$n-direct" --direct --calls "$n" --secs "$SECS") || exit 1
		for r in $RELAYS; do
			R[$r]=$(run "calls-$n-$r" --relay "$r" --ng "udp:${NG[$r]}" --pid "${PID[$r]}" \
				--calls "$n" --secs "$SECS") || exit 1
		done
		declare -A TOT
		for r in direct $RELAYS; do
			l=${R[$r]}
			# pinhole's program also runs (and exits at once) on the other
			# relays' packets on loopback: it is pinhole's cost only
			k=$(get "$l" bpf_ns_per_pkt)
			[ "$r" = pinhole ] || k=0
			TOT[$r]=$(($(get "$l" ns_per_pkt) + k))
			printf '%-6s %-10s %9s %9s %8s %6s %9s %7s %9s %8s %8s\n' "$n" "$r" "$(get "$l" offered_pps)" \
				"$(get "$l" forwarded_pps)" "$(get "$l" loss_pct)" "$(get "$l" cores)" \
				"$(get "$l" ns_per_pkt)" "$k" "${TOT[$r]}" \
				"$(get "$l" lat_p50_us)" "$(get "$l" lat_p99_us)"
		done
		if [ -n "${R[pinhole]:-}" ] && [ -n "${R[rtpengine]:-}" ]; then
			awk -v a="$(get "${R[pinhole]}" ns_per_pkt)" -v b="$(get "${R[rtpengine]}" ns_per_pkt)" \
				-v ma="${TOT[pinhole]}" -v mb="${TOT[rtpengine]}" \
				-v pa="$(get "${R[pinhole]}" lat_p99_us)" -v pb="$(get "${R[rtpengine]}" lat_p99_us)" \
				-v d="$(get "${R[direct]}" lat_p99_us)" -v n="$n" 'BEGIN {
				printf "%-6s ratio pinhole/rtpengine: CPU per packet (process + kernel program) %.2f; process only %.2f; p99 latency %.2f; added p99 over direct: pinhole %d us, rtpengine %d us\n",
					n, (mb > 0 ? ma / mb : 0), (b > 0 ? a / b : 0), (pb > 0 ? pa / pb : 0), pa - d, pb - d }'
		fi
	done
fi

if [ "$MODE" = blast ] || [ "$MODE" = all ]; then
	echo
	echo "## blast: $BLAST_CALLS calls ($((2 * BLAST_CALLS)) streams), offered rate ramp, ${SECS}s per step"
	printf '%-10s %9s %9s %9s %8s %6s %9s %7s %8s\n' relay target offered forwarded loss% \
		cores ns/pkt bpf-ns p99us
	declare -A BEST
	for r in $RELAYS; do
		BEST[$r]=
		for rate in $BLAST_RATES; do
			l=$(run "blast-$rate-$r" --relay "$r" --ng "udp:${NG[$r]}" --pid "${PID[$r]}" \
				--calls "$BLAST_CALLS" --blast --rate "$rate" --secs "$SECS") || exit 1
			printf '%-10s %9s %9s %9s %8s %6s %9s %7s %8s\n' "$r" "$rate" "$(get "$l" offered_pps)" \
				"$(get "$l" forwarded_pps)" "$(get "$l" loss_pct)" "$(get "$l" cores)" \
				"$(get "$l" ns_per_pkt)" "$([ "$r" = pinhole ] && get "$l" bpf_ns_per_pkt || echo 0)" "$(get "$l" lat_p99_us)"
			lossless=$(awk -v loss="$(get "$l" loss_pct)" 'BEGIN { print (loss <= 0.01) ? 1 : 0 }')
			[ "$lossless" = 1 ] || break
			BEST[$r]=$l
			# the generator is saturated when it cannot offer 95 % of the target
			full=$(awk -v o="$(get "$l" offered_pps)" -v t="$rate" 'BEGIN { print (o >= 0.95 * t) ? 1 : 0 }')
			[ "$full" = 1 ] || { echo "$r: generator saturated at $(get "$l" offered_pps) pps"; break; }
		done
	done
	for r in $RELAYS; do
		l=${BEST[$r]}
		if [ -n "$l" ]; then
			k=$(get "$l" bpf_ns_per_pkt)
			[ "$r" = pinhole ] || k=0
			echo "best lossless $r: $(get "$l" forwarded_pps) pps forwarded, $(get "$l" cores) cores, $(get "$l" ns_per_pkt) ns/pkt (process) + $k ns/pkt (kernel program)"
		else
			echo "best lossless $r: none (loss at the first step)"
		fi
	done
	if [ -n "${BEST[pinhole]:-}" ] && [ -n "${BEST[rtpengine]:-}" ]; then
		awk -v a="$(get "${BEST[pinhole]}" forwarded_pps)" -v b="$(get "${BEST[rtpengine]}" forwarded_pps)" \
			'BEGIN { printf "ratio pinhole/rtpengine: max lossless pps %.2f (bounded by the ramp and the generator)\n", (b > 0 ? a / b : 0) }'
	fi
fi
if [ "$MODE" = latency ] || [ "$MODE" = all ]; then
	echo
	echo "## latency: N relayed + N direct calls interleaved in one run, ${SECS}s measured, $LAT_RUNS runs"
	printf '%-6s %-10s %4s %9s %8s %8s %8s %8s %8s %8s\n' calls relay run loss% \
		p50us base-p50 p99us base-p99 +p50us +p99us
	for n in $LAT_CALLS; do
		for r in $RELAYS; do
			adds=''
			for i in $(seq 1 "$LAT_RUNS"); do
				l=$(run "latency-$n-$r-$i" --relay "$r" --ng "udp:${NG[$r]}" --pid "${PID[$r]}" \
					--calls "$n" --baseline --secs "$SECS") || exit 1
				a50=$(($(get "$l" lat_p50_us) - $(get "$l" base_p50_us)))
				a99=$(($(get "$l" lat_p99_us) - $(get "$l" base_p99_us)))
				adds+="$a50 $a99"$'\n'
				printf '%-6s %-10s %4s %9s %8s %8s %8s %8s %8s %8s\n' "$n" "$r" "$i" "$(get "$l" loss_pct)" \
					"$(get "$l" lat_p50_us)" "$(get "$l" base_p50_us)" \
					"$(get "$l" lat_p99_us)" "$(get "$l" base_p99_us)" "$a50" "$a99"
			done
			m50=$(median_col 1 <<<"$adds") m99=$(median_col 2 <<<"$adds")
			max99=$(awk 'NF { print $2 }' <<<"$adds" | sort -n | tail -n 1)
			echo "$n calls, $r: added latency over direct, median of $LAT_RUNS runs: p50 $m50 us, p99 $m99 us (worst run p99 $max99 us)"
		done
	done
fi
echo
echo "# raw results: $OUT/results"
