#!/usr/bin/env bash
# TURN allocation benchmark: pinhole's [turn] against coturn, in one invocation.
#
#   bench/turn/alloc.sh
#
# Both servers run on 127.0.0.1 with UDP only, each as its operator would run
# it for WebRTC clients: coturn's REST-API credentials (use-auth-secret), a
# relay port range, logging to a file, no TLS/DTLS/CLI, loopback peers
# allowed (the bench's peer is on loopback); pinhole with the same secret and
# its defaults (request budgets per source on, logging at info) except
# allowed_peers (loopback, for the bench's peer), max_allocations and the
# per-user quota (each generator session is its own user anyway).
#   pinhole  `pinhole serve` with only [turn] on 127.0.0.1:$PORT_P, [turn]
#            threads = BENCH_PTHREADS (default: its own default, one per core)
#   coturn   `turnserver` on 127.0.0.1:$PORT_C with --relay-threads = cores
# bench/turn/alloc_bench.c (built here with cc -lcrypto) runs BENCH_SESSIONS
# clients at once, each cycling through what a new client does for one
# allocation: Allocate -> 401, Allocate with credentials, ChannelBind,
# Refresh, Refresh 0; every cycle from a new socket on the next of
# BENCH_SOURCES addresses in 127.1.0.0/16. Completed cycles per second =
# allocations per second; the server's CPU per allocation from /proc.
#
# Order: first memory (each server fresh: hold BENCH_HOLD allocations with a
# channel each, VmRSS before and after), then for each BENCH_SESSIONS count a
# warm-up run on each and BENCH_ROUNDS rounds of one run on each, alternating
# which goes first; every round prints both and the ratios pinhole / coturn;
# the last lines the medians per count. With BENCH_PIN (default) the
# generator has CPU 0 to itself and both servers share the others, so the
# rate measures what the servers do with the same CPUs; allocs/cpu_s is the
# rate per second of the server's own CPU time (1e6 / cpu_us/alloc). Logs under BENCH_OUT. Nothing here is part of ctest; processes are
# stopped by PID, never by name.
#
# Environment (all optional):
#   PINHOLE         pinhole binary (build/pinhole)
#   TURNSERVER      coturn's binary (turnserver; Debian: apt-get install coturn)
#   BENCH_SESSIONS  clients at once; a list runs the rounds at each ("64 256":
#                   64 leaves a fast server waiting on the generator's and
#                   the scheduler's latency, 256 keeps it busy)
#   BENCH_SOURCES   source addresses (8192)
#   BENCH_SECS      measured seconds per run (5)
#   BENCH_ROUNDS    rounds (5)
#   BENCH_HOLD      allocations held for the memory figure (5000)
#   BENCH_THREADS   coturn's --relay-threads (nproc)
#   BENCH_PTHREADS  pinhole's [turn] threads (0: its default, one per core)
#   BENCH_BATCH_WAIT pinhole's [turn] batch_wait (0, its default)
#   BENCH_GEN_PROCS generator processes sharing the sessions (1); more lets
#                   the generator use more than one CPU when not pinned
#   BENCH_OUT       where logs go (a new /tmp/pinhole-turn-alloc.XXXXXX)
#   BENCH_PIN       1 (default on 2+ cores): the generator on CPU 0, both
#                   servers on the same other CPUs (1..n-1) with taskset, so
#                   the generator does not compete with them and both get
#                   the same CPU set; 0: no pinning
# About 90 s with the defaults.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
[ -x "$PINHOLE" ] || { echo "no pinhole binary (set PINHOLE)" >&2; exit 1; }
TURNSERVER=${TURNSERVER:-$(command -v turnserver || true)}
[ -n "$TURNSERVER" ] || { echo "no turnserver: apt-get install coturn" >&2; exit 1; }
SESSIONS_LIST=${BENCH_SESSIONS:-64 256}
SOURCES=${BENCH_SOURCES:-8192}
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
HOLD=${BENCH_HOLD:-5000}
THREADS_SET=${BENCH_THREADS:-}
PTHREADS=${BENCH_PTHREADS:-0}
GEN_PROCS=${BENCH_GEN_PROCS:-1}
PIN=${BENCH_PIN:-1}
NCPU=$(nproc)
[ "$NCPU" -ge 2 ] || PIN=0
GEN_PIN=() SRV_PIN=()
if [ "$PIN" = 1 ]; then
	command -v taskset >/dev/null || { echo "no taskset (util-linux)" >&2; exit 1; }
	GEN_PIN=(taskset -c 0)
	SRV_PIN=(taskset -c "1-$((NCPU - 1))")
fi
# coturn's --relay-threads: its default, the machine's cores (pinned to one
# CPU, --relay-threads 1 made coturn slower here: about 1,190/s at 800 us of
# CPU per allocation, against about 2,900/s at 260 us with 2)
THREADS=${THREADS_SET:-$NCPU}
PORT_P=34780
PORT_C=34790
PEER=127.0.0.1:9 # ChannelBind's peer: nothing is sent to it
SECRET=bench$$secret
REALM=bench.test
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-turn-alloc.XXXXXX)}
mkdir -p "$OUT"

PIDS=()
stop_pid() {
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 1 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
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

GEN=$OUT/alloc_bench
cc -std=c17 -O2 -Wall -Wextra -o "$GEN" "$HERE/alloc_bench.c" -lcrypto || exit 1
ulimit -n $((HOLD + 1024)) 2>/dev/null

cat >"$OUT/pinhole.conf" <<-EOF
	; bench/turn/alloc.sh: the TURN role alone
	[turn]
	listen = udp:127.0.0.1:$PORT_P
	realm = $REALM
	static_auth_secret = $SECRET
	relay_address = 127.0.0.1
	relay_ports = 20000-39999
	allowed_peers = 127.0.0.1/32
	max_allocations = 100000
	threads = $PTHREADS
	batch_wait = ${BENCH_BATCH_WAIT:-0}
	[log]
	level = info
EOF

start_pinhole() {
	"${SRV_PIN[@]}" "$PINHOLE" serve --config "$OUT/pinhole.conf" >>"$OUT/pinhole.log" 2>&1 </dev/null &
	PID_P=$!
	PIDS+=("$PID_P")
	wait_udp "$PORT_P" || { echo "pinhole did not start:"; tail -5 "$OUT/pinhole.log"; exit 1; } >&2
}
start_coturn() {
	"${SRV_PIN[@]}" "$TURNSERVER" -n --listening-ip 127.0.0.1 --listening-port "$PORT_C" --relay-ip 127.0.0.1 \
		--min-port 40000 --max-port 59999 --use-auth-secret --static-auth-secret "$SECRET" \
		--realm "$REALM" --no-tls --no-dtls --no-cli --allow-loopback-peers \
		--no-multicast-peers --relay-threads "$THREADS" --log-file "$OUT/coturn.log" \
		--simple-log >>"$OUT/coturn.out" 2>&1 </dev/null &
	PID_C=$!
	PIDS+=("$PID_C")
	wait_udp "$PORT_C" || { echo "coturn did not start:"; tail -5 "$OUT/coturn.out"; exit 1; } >&2
}
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# --- memory per allocation: fresh servers ------------------------------------
start_pinhole
start_coturn
sleep 1
MP=$("$GEN" --server 127.0.0.1:$PORT_P --secret "$SECRET" --peer $PEER --sources "$SOURCES" \
	--hold "$HOLD" --rss-pid "$PID_P")
MC=$("$GEN" --server 127.0.0.1:$PORT_C --secret "$SECRET" --peer $PEER --sources "$SOURCES" \
	--hold "$HOLD" --rss-pid "$PID_C")
echo "memory pinhole: $MP"
echo "memory coturn:  $MC"

# --- allocation rate, interleaved -------------------------------------------
run() { # run pinhole|coturn: one measured run; prints the generator's line
	local port=$PORT_P pid=$PID_P
	[ "$1" = coturn ] && { port=$PORT_C; pid=$PID_C; }
	"${GEN_PIN[@]}" "$GEN" --server 127.0.0.1:"$port" --secret "$SECRET" --peer $PEER --sessions "$2" \
		--sources "$SOURCES" --duration "$SECS" --warmup 1 --cpu-pid "$pid" --procs "$GEN_PROCS"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
if [ "$PIN" = 1 ]; then
	echo "pinned: generator on CPU 0, both servers on CPUs 1-$((NCPU - 1));" \
		"coturn --relay-threads $THREADS, pinhole threads $PTHREADS (0: one per core)"
else
	echo "not pinned; coturn --relay-threads $THREADS," \
		"pinhole threads $PTHREADS (0: one per core)"
fi
SUMMARY=()
for SESSIONS in $SESSIONS_LIST; do
	echo "--- $SESSIONS clients at once"
	run pinhole "$SESSIONS" >/dev/null # warm-up
	run coturn "$SESSIONS" >/dev/null
	printf '%-6s %-10s %10s %14s %12s %8s %8s\n' round server allocs/s cpu_us/alloc allocs/cpu_s \
		p50_ms p99_ms
	RP=() RC=() CP=() CC=() RATIO=() CRATIO=()
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then order="pinhole coturn"; else order="coturn pinhole"; fi
		for s in $order; do
			line=$(run "$s" "$SESSIONS")
			echo "$SESSIONS $s $line" >>"$OUT/runs.txt"
			a=$(field allocs_s "$line") c=$(field cpu_us_per_alloc "$line")
			printf '%-6s %-10s %10s %14s %12s %8s %8s\n' "$r" "$s" "$a" "$c" \
				"$(awk -v c="$c" 'BEGIN { printf "%.0f", (c > 0 ? 1e6 / c : 0) }')" \
				"$(field p50_ms "$line")" "$(field p99_ms "$line")"
			if [ "$s" = pinhole ]; then RP+=("$a"); CP+=("$c"); else RC+=("$a"); CC+=("$c"); fi
		done
		ratio=$(awk -v p="${RP[-1]}" -v c="${RC[-1]}" 'BEGIN { printf "%.2f", (c > 0 ? p / c : 0) }')
		cratio=$(awk -v p="${CP[-1]}" -v c="${CC[-1]}" 'BEGIN { printf "%.2f", (c > 0 ? p / c : 0) }')
		RATIO+=("$ratio") CRATIO+=("$cratio")
		echo "       round $r: allocs/s pinhole/coturn = $ratio, CPU per allocation pinhole/coturn = $cratio"
	done
	SUMMARY+=("$SESSIONS clients: median allocs/s pinhole $(median "${RP[@]}"), coturn $(median "${RC[@]}"); median ratios allocs/s $(median "${RATIO[@]}") (rounds: ${RATIO[*]}), CPU per allocation $(median "${CRATIO[@]}") (rounds: ${CRATIO[*]})")
done
printf '%s\n' "${SUMMARY[@]}"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; logs in $OUT"
