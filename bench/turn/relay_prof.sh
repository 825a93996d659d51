#!/usr/bin/env bash
# Where pinhole's user-space TURN relay spends its time per relayed packet: one pinhole
# (`fastpath = off`) under the load of bench/turn/relay.sh, and during the measured
# window one of
#
#   PROF=syscalls  (default) perf stat of the process's system calls by kind and of
#                  its context switches: counts per relayed packet
#   PROF=record    perf record -g of the process (cpu-clock samples; this VM has no
#                  hardware counters), report in $OUT/perf.txt
#   PROF=callgrind the server under valgrind's callgrind (user-space instructions only;
#                  run it at a low rate, e.g. ALLOCS=100 PPS=20): its counters are zeroed
#                  at the window's start and dumped at its end; Ir per relayed packet
#
#   sudo PINHOLE=build/pinhole bench/turn/relay_prof.sh
#
# Knobs: ALLOCS (500), PPS per allocation and direction (50: the g711 load), SECS (8),
# PTHREADS ([turn] threads, 0 = pinhole's default), BATCH_WAIT ([turn] batch_wait), OUT.
# Same two namespaces as relay.sh (prefix tbp<PID>); removed, and the processes stopped
# by PID, on exit. Not part of ctest.
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
LIB=$(dirname "$PINHOLE")/libpinhole_lib.a
PROF=${PROF:-syscalls}
ALLOCS=${ALLOCS:-500}
PPS=${PPS:-50}
SECS=${SECS:-8}
PTHREADS=${PTHREADS:-0}
BATCH_WAIT=${BATCH_WAIT:-0}
OUT=${OUT:-$(mktemp -d /tmp/pinhole-turn-prof.XXXXXX)}
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
NS=tbp$$
SRV=$NS-srv
GEN=$NS-gen
SPID=

cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
	ip netns del "$SRV" 2>/dev/null
	ip netns del "$GEN" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GENBIN="$OUT/chan_bench"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Wall -Wextra -I "$ROOT/src" -o "$GENBIN" "$HERE/chan_bench.c" "$LIB" \
	$(pkg-config --libs inih sqlite3 libssl libcrypto zlib libmicrohttpd libbpf) -lpthread -lm ||
	exit 1

ip netns add "$SRV" && ip netns add "$GEN" || exit 1
ip link add tb0 netns "$SRV" type veth peer name tb1 netns "$GEN"
ip -n "$SRV" link set lo up
ip -n "$GEN" link set lo up
ip -n "$SRV" addr add 198.18.0.1/16 dev tb0
ip -n "$SRV" link set tb0 up
{
	for i in $(seq 1 250); do echo "addr add 198.18.1.$i/16 dev tb1"; done
	echo "addr add 198.18.2.1/16 dev tb1"
} | ip -n "$GEN" -batch -
ip -n "$GEN" link set tb1 up
ip netns exec "$GEN" ethtool -K tb1 tx off >/dev/null
sleep 1

cat >"$OUT/pinhole.conf" <<-EOF
	[turn]
	listen = udp:198.18.0.1:3478
	realm = bench
	static_auth_secret = benchsecret
	relay_address = 198.18.0.1
	relay_ports = 40000-44999
	max_allocations_per_user = 10
	threads = $PTHREADS
	batch_wait = $BATCH_WAIT
	fastpath = off
	[store]
	path = $OUT/pinhole.db
	[control]
	listen = 127.0.0.1:0
EOF
WRAP=()
[ "$PROF" = callgrind ] && WRAP=(valgrind --tool=callgrind --collect-atstart=yes
	--callgrind-out-file="$OUT/callgrind.out.%p")
ip netns exec "$SRV" "${WRAP[@]}" "$PINHOLE" serve -c "$OUT/pinhole.conf" >"$OUT/pinhole.log" 2>&1 &
SPID=$!
sleep "$([ "$PROF" = callgrind ] && echo 6 || echo 2)"
kill -0 $SPID || { cat "$OUT/pinhole.log" >&2; exit 1; }
# the process itself (ip netns exec execs it; valgrind's pid is the server's)
PID=$SPID

# the measured window starts after the generator's set-up and its 1 s warm-up
ip netns exec "$GEN" "$GENBIN" 198.18.0.1:3478 benchsecret 198.18.2.1 198.18.1 \
	"$ALLOCS" "$PPS" "$SECS" >"$OUT/gen.txt" 2>>"$OUT/gen.err" &
GPID=$!
# wait for every allocation: the server logs each one
want=$ALLOCS
for _ in $(seq 1 600); do
	got=$(grep -c 'turn: allocation' "$OUT/pinhole.log")
	[ "$got" -ge "$want" ] && break
	sleep 0.1
done
sleep 1.5
WIN=$((SECS - 2))
case $PROF in
syscalls)
	perf stat -x, -o "$OUT/stat.txt" -p "$PID" -e 'raw_syscalls:sys_enter' \
		-e 'syscalls:sys_enter_recvmmsg,syscalls:sys_enter_recvmsg' \
		-e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto' \
		-e 'syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg' \
		-e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait' \
		-e 'syscalls:sys_enter_io_uring_enter' \
		-e 'context-switches,task-clock' -- sleep "$WIN"
	;;
record)
	perf record -g -F 4999 -o "$OUT/perf.data" -p "$PID" -- sleep "$WIN" 2>/dev/null
	;;
callgrind)
	callgrind_control -z "$PID" >/dev/null
	sleep "$WIN"
	callgrind_control -d "$PID" >/dev/null
	;;
esac
wait $GPID
cat "$OUT/gen.txt"
pps=$(sed -n 's/.*relayed_pps=\([0-9.]*\).*/\1/p' "$OUT/gen.txt")
pkts=$(awk -v p="$pps" -v w="$WIN" 'BEGIN { printf "%.0f", p * w }')
echo "# window ${WIN}s, about $pkts packets relayed in it (relayed_pps x window)," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
case $PROF in
syscalls)
	awk -F, -v n="$pkts" '$1 ~ /^[0-9.]+$/ && n > 0 {
		printf "%-40s %12s  %.3f per packet\n", $3, $1, $1 / n }' "$OUT/stat.txt"
	;;
record)
	perf report -i "$OUT/perf.data" --no-children --percent-limit 0.7 --stdio 2>/dev/null |
		grep -v '^$' >"$OUT/perf.txt"
	perf report -i "$OUT/perf.data" --no-children --sort sym --percent-limit 0.7 --stdio \
		-g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -40
	;;
callgrind)
	f=$(ls "$OUT"/callgrind.out.*.1 | head -1) # the dump of the window (part 1)
	ir=$(callgrind_annotate "$f" 2>/dev/null |
		awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
	echo "Ir in the window: $ir, per relayed packet:" \
		"$(awk -v a="$ir" -v n="$pkts" 'BEGIN { printf "%.0f", a / n }')"
	callgrind_annotate "$f" 2>/dev/null | head -45 >"$OUT/callgrind.txt"
	sed -n 1,45p "$OUT/callgrind.txt"
	;;
esac
echo "# output in $OUT"
