#!/usr/bin/env bash
# STUN benchmark: pinhole's STUN role against coturn, in one invocation.
#
#   bench/stun/run.sh
#
# Both servers run standalone on 127.0.0.1 with STUN only and no rate limits:
#   pinhole  `pinhole serve` with only [stun] (listen udp:127.0.0.1:$PORT_P,
#            rate = 0), one net worker per core
#   coturn   `turnserver -n --stun-only` on 127.0.0.1:$PORT_C with
#            --relay-threads = cores (Debian: apt-get install coturn)
# bench/stun/stun_bench.c (built here with cc) offers Binding requests at each
# rate of BENCH_STUN_RATES (0 = as fast as the generator can), from
# BENCH_STUN_SOCKETS sockets, each request with its own transaction id; it
# counts the success responses and reads the server's utime+stime (all
# threads, /proc/PID/stat) at the start and end of the measured phase.
# For every step: offered requests/s, responses/s, loss, latency p50/p99,
# the server's CPU as cores and as ns per response (and its user-space part:
# the rest is the kernel's socket and loopback work); then both servers side
# by side with the ratios pinhole / coturn. Logs under BENCH_OUT.
#
# Environment (all optional):
#   PINHOLE             pinhole binary (build/pinhole, then build-bench/pinhole)
#   TURNSERVER          coturn's binary (turnserver)
#   BENCH_STUN_RATES    offered requests/s per step ("20000 50000 100000 150000 0")
#   BENCH_STUN_SECS     measured seconds per step (4); warm-up 1 s before
#   BENCH_STUN_SOCKETS  generator sockets (8)
#   BENCH_THREADS       coturn's --relay-threads (nproc). pinhole runs one
#                       worker per core: its worker count is [sip] workers,
#                       and setting that would turn the SIP role on too
#   BENCH_OUT           where logs go (a new /tmp/pinhole-stun-bench.XXXXXX)
# About 55 s with the defaults. Nothing here is part of ctest; processes are
# stopped by PID, never by name.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

PINHOLE=${PINHOLE:-}
if [ -z "$PINHOLE" ]; then
	for c in "$ROOT/build/pinhole" "$ROOT/build-bench/pinhole"; do
		[ -x "$c" ] && { PINHOLE=$c; break; }
	done
fi
[ -n "$PINHOLE" ] && [ -x "$PINHOLE" ] || { echo "no pinhole binary (set PINHOLE)" >&2; exit 1; }
TURNSERVER=${TURNSERVER:-$(command -v turnserver || true)}
[ -n "$TURNSERVER" ] || { echo "no turnserver: apt-get install coturn" >&2; exit 1; }
RATES=${BENCH_STUN_RATES:-20000 50000 100000 150000 0}
SECS=${BENCH_STUN_SECS:-4}
SOCKS=${BENCH_STUN_SOCKETS:-8}
THREADS=${BENCH_THREADS:-$(nproc)}
PORT_P=34780
PORT_C=34790
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-stun-bench.XXXXXX)}
mkdir -p "$OUT"

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_udp() { # PORT: wait until something is bound to 127.0.0.1:PORT
	for _ in $(seq 1 100); do
		ss -Hunl "sport = :$1" | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

GEN=$OUT/stun_bench
cc -std=c17 -O2 -Wall -Wextra -o "$GEN" "$HERE/stun_bench.c" || exit 1

# pinhole twice: with the eBPF fast path (plain requests answered in the
# kernel) and with user space only (fastpath = off), on PORT_P and PORT_P + 1
PORT_U=$((PORT_P + 1))
for v in pinhole:$PORT_P:auto pinhole-user:$PORT_U:off; do
	IFS=: read -r name port fast <<<"$v"
	cat >"$OUT/$name.conf" <<-EOF
		; bench/stun/run.sh: the STUN role alone
		[stun]
		listen = udp:127.0.0.1:$port
		rate = 0
		fastpath = $fast
		[log]
		level = info
	EOF
	"$PINHOLE" serve --config "$OUT/$name.conf" >"$OUT/$name.log" 2>&1 </dev/null &
	PIDS+=("$!")
	if [ "$name" = pinhole ]; then PID_P=$!; else PID_U=$!; fi
done
"$TURNSERVER" -n --listening-ip 127.0.0.1 --listening-port "$PORT_C" --stun-only --no-cli \
	--no-tls --no-dtls --relay-threads "$THREADS" --log-file stdout --simple-log \
	>"$OUT/coturn.log" 2>&1 </dev/null &
PID_C=$!
PIDS+=("$PID_C")
wait_udp "$PORT_P" || { echo "pinhole did not start:"; tail -5 "$OUT/pinhole.log"; exit 1; } >&2
wait_udp "$PORT_U" || { echo "pinhole did not start:"; tail -5 "$OUT/pinhole-user.log"; exit 1; } >&2
# the kernel's run time of the fast path program (bpf_stats; root only): the
# CPU its answers cost, which no process is charged for
for _ in $(seq 1 40); do # the program loads after the sockets are bound
	BPF_PROG=$(sed -n 's/.*fast path: .*bpf prog id \([0-9]*\).*/\1/p' "$OUT/pinhole.log" | head -n 1)
	[ -z "$BPF_PROG" ] && ! grep -q 'fast path unavailable' "$OUT/pinhole.log" || break
	sleep 0.05
done
BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo '')
if [ -n "$BPF_PROG" ] && [ "$BPF_STATS_WAS" = 0 ]; then
	sysctl -qw kernel.bpf_stats_enabled=1 || BPF_STATS_WAS=''
	trap 'cleanup; sysctl -qw kernel.bpf_stats_enabled=0' EXIT
fi
bpf_ns() {
	[ -n "$BPF_PROG" ] || { echo 0; return; }
	bpftool prog show id "$BPF_PROG" -j 2>/dev/null | jq -r '.run_time_ns // 0' 2>/dev/null || echo 0
}
wait_udp "$PORT_C" || { echo "coturn did not start:"; tail -5 "$OUT/coturn.log"; exit 1; } >&2
sleep 0.5

echo "pinhole: $("$PINHOLE" version 2>/dev/null | head -1) ($PINHOLE), coturn: $("$TURNSERVER" --version 2>/dev/null | head -1)"
echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)); coturn relay threads $THREADS," \
	"pinhole $(nproc) workers, generator: 1 thread, $SOCKS sockets, $SECS s per step after 1 s warm-up; logs in $OUT"

# measure NAME PID PORT RATE: one step; the generator's key=value line in $OUT
# For pinhole with the fast path, bpf_ns_per_resp: the program's run time over
# the whole step (warm-up included: an upper bound) per measured response.
kv() { sed -n "s/.*\<$2=\([^ ]*\).*/\1/p" "$OUT/$1.txt" | head -n 1; }
measure() {
	local b0 b1
	b0=$(bpf_ns)
	"$GEN" --server "127.0.0.1:$3" --rate "$4" --duration "$SECS" --warmup 1 \
		--sockets "$SOCKS" --cpu-pid "$2" >"$OUT/$1-$4.txt" 2>&1
	b1=$(bpf_ns)
	kill -0 "$2" 2>/dev/null || { echo "$1 died during the step at rate $4" >&2; exit 1; }
	[ "$1" = pinhole ] || { b0=0; b1=0; }
	awk -v d=$((b1 - b0)) -v x="$(kv "$1-$4" rps)" -v secs="$SECS" \
		'BEGIN { printf " bpf_ns_per_resp=%.0f\n", (x > 0 ? d / (x * secs) : 0) }' >>"$OUT/$1-$4.txt"
}
for r in $RATES; do
	measure pinhole "$PID_P" "$PORT_P" "$r"
	measure pinhole-user "$PID_U" "$PORT_U" "$r"
	measure coturn "$PID_C" "$PORT_C" "$r"
done

echo
echo "| offered target | server | offered/s | responses/s | loss | p50 µs | p99 µs | process cores | process ns / response | of which user | kernel program ns / response | total ns / response |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in $RATES; do
	for s in pinhole pinhole-user coturn; do
		f=$s-$r
		awk -v t="$([ "$r" = 0 ] && echo max || echo "$r")" -v s="$s" -v secs="$SECS" \
			-v o="$(kv "$f" offered)" -v x="$(kv "$f" rps)" -v l="$(kv "$f" loss)" \
			-v a="$(kv "$f" p50_us)" -v b="$(kv "$f" p99_us)" -v c="$(kv "$f" cpu_s)" \
			-v n="$(kv "$f" cpu_ns_per_resp)" -v u="$(kv "$f" user_ns_per_resp)" \
			-v k="$(kv "$f" bpf_ns_per_resp)" 'BEGIN {
			printf "| %s | %s | %d | %d | %.2f %% | %d | %d | %.2f | %d | %d | %d | %d |\n",
				t, s, o, x, l * 100, a, b, c / secs, n, u, k, n + k }'
	done
done
echo
for r in $RATES; do
	awk -v t="$([ "$r" = 0 ] && echo "max rate" || echo "$r/s offered")" \
		-v xp="$(kv "pinhole-$r" rps)" -v xc="$(kv "coturn-$r" rps)" \
		-v np="$(kv "pinhole-$r" cpu_ns_per_resp)" -v nc="$(kv "coturn-$r" cpu_ns_per_resp)" \
		-v kp="$(kv "pinhole-$r" bpf_ns_per_resp)" -v nu="$(kv "pinhole-user-$r" cpu_ns_per_resp)" 'BEGIN {
		printf "- %s: pinhole / coturn responses/s **%.2f**, CPU per response (process + kernel program) **%.2f**; user space only (fastpath off) %.2f\n",
			t, (xc > 0 ? xp / xc : 0), (nc > 0 ? (np + kp) / nc : 0), (nc > 0 ? nu / nc : 0) }'
done
