#!/usr/bin/env bash
# TURN relaying benchmark: relayed ChannelData packets per second and CPU per relayed packet,
# pinhole in user space, pinhole with its eBPF fast path, and coturn, interleaved in one
# invocation; and 1,000 concurrent G.711 streams, lost packets counted.
#
#   bench/turn/relay.sh
#
# Network namespaces: tbr<PID>-gen runs the generator (bench/turn/chan_bench.c, built
# here against the same build): clients on 198.18.1.1-250 (many sources, as from many
# NATs), the peer on 198.18.2.1; each server runs in a namespace of its own,
# tbr<PID>-s<N> (198.18.0.N), joined to the generator's by a veth pair of its own, so
# that no server's packets pass another server's program and each namespace's receive
# work is one server's. Transmit checksum offload is off on the generator's veths so
# that its datagrams reach the servers with their checksums filled in, as from a wire
# (a datagram whose checksum the kernel left for a NIC stays in pinhole's user space
# path).
#
# Per round (BENCH_ROUNDS, default 3), for each server in turn (pinhole-user,
# pinhole-fast, coturn): a fresh set of allocations (coturn's shared-secret
# credentials, one channel each), one second of warm-up, BENCH_SECS (5) measured:
#   rate  BENCH_RATE_ALLOCS (100) allocations, BENCH_RATE (40000) packets/s offered
#         in all, half each way (client -> peer as ChannelData, peer -> client)
#   g711  BENCH_G711_ALLOCS (500) allocations, 50 packets/s each way: 1,000 streams
#         of 172-byte packets at 20 ms, 50,000 packets/s in all
# BENCH_TESTS ("rate g711") and BENCH_SERVERS ("pinhole-user pinhole-fast coturn")
# pick a part (a server named NAME+twin is NAME measured with a second copy of the
# receive-time probes attached: its all/pkt less NAME's in the same round is what the
# probes cost each server per packet, printed as "probes ... adds");
# BENCH_BPF_STATS (unset: left as it is) sets kernel.bpf_stats_enabled for the run
# (1: the bpf_s and probe columns are filled in, and every BPF program run pays two
# clock reads more; 0 for figures without that cost). The switch is global: other
# benchmarks on the machine may flip it, so each run prints it at the start and end
# of its window (column st: 00, 11, or a change); BENCH_PTHREADS sets pinhole's [turn] threads (0, the default: its
# own default, one per core, as coturn's relay threads), BENCH_BATCH_WAIT its
# [turn] batch_wait (0). PINHOLE_BASE: another pinhole binary (only the binary:
# the generator is built from PINHOLE's build) run as a fourth server,
# pinhole-fast-base, with its fast path: the program before and after a change,
# in the same invocation. PINHOLE_USER_BASE: the same for user space, a server
# pinhole-user-base (`fastpath = off`); BENCH_BASE_PTHREADS and BENCH_BASE_BATCH_WAIT
# set its threads and batch_wait (default: as pinhole's), so that one binary may be
# run against itself with another setting (PINHOLE_USER_BASE=$PINHOLE).
# Figures per run: relayed packets/s, lost, and two accountings of CPU per relayed
# packet:
#   ns/pkt   (the old one) the server's CPU (utime + stime of every thread,
#            /proc/PID/stat) plus, for the fast path, its tc program's run time
#            (bpf_stats). The kernel's work around the program (the redirect, the
#            transmit onto the veth) and every server's receive path up to its
#            socket are charged to no one.
#   all/pkt  (BENCH_RXTIME=1, the default) the same process CPU, less the packet
#            receive work that ran while the process was current (this kernel's
#            tick accounting charges softirq work to whatever task it interrupts),
#            plus all packet receive work in the server's namespace, timed per
#            packet from the net:netif_receive_skb tracepoint to the next packet's
#            or the end of the poll (bench/turn/rx_time.bpf.c; probe = that probe's
#            own run time per packet, bpf_stats, inside every server's figure
#            alike): each server pays for its packets' way in
#            (up to the socket, or through the tc program, its redirect and the
#            transmit onto the veth) and, in user space, for its sendto; the
#            delivery in the generator's namespace (the clients' and the peer's
#            machines, in life) is charged to no server (rx_gen_s shows it).
#            The probes' own work is left out (each packet's time starts when
#            its probe is done; the tracepoint's call into it stays in):
#            all+pr is the figure with it, as before session 13, pbody that
#            work per packet in the server's namespace.
# Ratios are per round (pinhole / coturn in the same round). Where
# packets were lost: srv_drops and gen_drops are the UDP receive-buffer drops of the
# server's and the generator's namespace over the run (a starved generator, or a
# server that did not read in time).
#
# The machine may be shared: figures move with its load; compare within a round.
# Needs root (namespaces, tc), coturn (turnserver), ethtool, bpftool, jq.
# Nothing here is part of ctest. Processes are stopped by PID.

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
for t in turnserver ethtool bpftool jq ip; do
	command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
RATE=${BENCH_RATE:-40000}
RATE_ALLOCS=${BENCH_RATE_ALLOCS:-100}
TESTS=${BENCH_TESTS:-rate g711}
PINHOLE_BASE=${PINHOLE_BASE:-}
PINHOLE_USER_BASE=${PINHOLE_USER_BASE:-}
if [ -n "$PINHOLE_USER_BASE" ]; then
	SERVERS=${BENCH_SERVERS:-pinhole-user pinhole-user-base coturn}
elif [ -n "$PINHOLE_BASE" ]; then
	SERVERS=${BENCH_SERVERS:-pinhole-user pinhole-fast pinhole-fast-base coturn}
else
	SERVERS=${BENCH_SERVERS:-pinhole-user pinhole-fast coturn}
fi
RXTIME=${BENCH_RXTIME:-1}
BPF_STATS=${BENCH_BPF_STATS:-}
G711_ALLOCS=${BENCH_G711_ALLOCS:-500}
PTHREADS=${BENCH_PTHREADS:-0}
BATCH_WAIT=${BENCH_BATCH_WAIT:-0}
SECRET=benchsecret
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-turn-bench.XXXXXX)}
mkdir -p "$OUT"
NS=tbr$$
GEN=$NS-gen
PIDS=()
NSLIST=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for n in "${NSLIST[@]}"; do ip netns del "$n" 2>/dev/null; done
	ip netns del "$GEN" 2>/dev/null
	[ -n "${BPF_STATS_WAS:-}" ] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BPF_STATS_WAS=
if [ -n "$BPF_STATS" ]; then
	BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo '')
	sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS"
fi

# --- the generator ------------------------------------------------------------------
GENBIN="$OUT/chan_bench"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Wall -Wextra -I "$ROOT/src" -o "$GENBIN" "$HERE/chan_bench.c" "$LIB" \
	$(pkg-config --libs inih sqlite3 libssl libcrypto zlib libmicrohttpd) $(pkg-config --libs libbpf) -lpthread -lm ||
	{ echo "cannot build chan_bench" >&2; exit 1; }
RXOBJ=
if [ "$RXTIME" = 1 ]; then
	bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$OUT/vmlinux.h" &&
		clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I "$OUT" -c "$HERE/rx_time.bpf.c" \
			-o "$OUT/rx_time.bpf.o" && RXOBJ="$OUT/rx_time.bpf.o" ||
		{ echo "cannot build rx_time.bpf.o (BENCH_RXTIME=0 runs without it)" >&2; exit 1; }
fi

# --- the namespaces -------------------------------------------------------------------
# The generator's namespace holds the clients' and the peer's addresses (on lo); each
# server gets a namespace and a veth pair of its own (SRVNS, SRVIP below), so that no
# server's packets pass another's program, and what runs in a server's namespace is
# that server's work alone.
ip netns add "$GEN" || exit 1
ip -n "$GEN" link set lo up
{
	for i in $(seq 1 250); do echo "addr add 198.18.1.$i/32 dev lo"; done
	echo "addr add 198.18.2.1/32 dev lo"
} | ip -n "$GEN" -batch -
declare -A SRVNS SRVIP
NSRV=0
add_server_ns() { # NAME: a namespace and a veth pair to the generator, 198.18.0.N
	NSRV=$((NSRV + 1))
	local ns=$NS-s$NSRV ip=198.18.0.$NSRV
	ip netns add "$ns" || exit 1
	NSLIST+=("$ns")
	ip link add tb0 netns "$ns" type veth peer name tg$NSRV netns "$GEN"
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add $ip/16 dev tb0
	ip -n "$ns" link set tb0 up
	ip -n "$GEN" link set tg$NSRV up
	ip -n "$GEN" route add $ip/32 dev tg$NSRV
	ip netns exec "$GEN" ethtool -K tg$NSRV tx off >/dev/null
	SRVNS[$1]=$ns SRVIP[$1]=$ip
}
sleep 1

# --- the servers ----------------------------------------------------------------------
declare -A PORT PID PROG
start_pinhole() { # NAME PORT RELAY_PORTS FASTPATH [BINARY [THREADS BATCH_WAIT]]
	add_server_ns "$1"
	local ip=${SRVIP[$1]}
	cat >"$OUT/$1.conf" <<-EOF
		[turn]
		listen = udp:$ip:$2
		realm = bench
		static_auth_secret = $SECRET
		relay_address = $ip
		relay_ports = $3
		max_allocations_per_user = 10
		threads = ${6:-$PTHREADS}
		batch_wait = ${7:-$BATCH_WAIT}
		fastpath = $4
		[store]
		path = $OUT/$1.db
		[control]
		listen = 127.0.0.1:0
	EOF
	ip netns exec "${SRVNS[$1]}" "${5:-$PINHOLE}" serve -c "$OUT/$1.conf" >"$OUT/$1.log" 2>&1 &
	PID[$1]=$!
	PIDS+=($!)
	PORT[$1]=$2
}
start_pinhole pinhole-user 3478 40000-44999 off
start_pinhole pinhole-fast 3479 45000-49999 on
STARTED="pinhole-user pinhole-fast coturn"
if [ -n "$PINHOLE_BASE" ]; then
	start_pinhole pinhole-fast-base 3481 60000-64999 on "$PINHOLE_BASE"
	STARTED="$STARTED pinhole-fast-base"
fi
if [ -n "$PINHOLE_USER_BASE" ]; then
	start_pinhole pinhole-user-base 3482 35000-39999 off "$PINHOLE_USER_BASE" \
		"${BENCH_BASE_PTHREADS:-$PTHREADS}" "${BENCH_BASE_BATCH_WAIT:-$BATCH_WAIT}"
	STARTED="$STARTED pinhole-user-base"
	PROG[pinhole-user-base]=0
fi
add_server_ns coturn
ip netns exec "${SRVNS[coturn]}" turnserver -n --listening-ip=${SRVIP[coturn]} --listening-port=3480 \
	--relay-ip=${SRVIP[coturn]} --min-port=50000 --max-port=59999 --realm=bench \
	--use-auth-secret --static-auth-secret="$SECRET" --no-tls --no-dtls --no-tcp --no-cli \
	--no-software-attribute --fingerprint --log-file=stdout --simple-log \
	>"$OUT/coturn.log" 2>&1 &
PID[coturn]=$!
PIDS+=($!)
PORT[coturn]=3480
sleep 2
for s in $STARTED; do
	kill -0 "${PID[$s]}" 2>/dev/null || { echo "$s did not start:" >&2; tail "$OUT/$s.log" >&2; exit 1; }
done
PROG[pinhole-fast]=$(sed -n 's/.*turn: fast path:.*bpf prog id \([0-9]*\).*/\1/p' "$OUT/pinhole-fast.log" | head -1)
PROG[pinhole-user]=0
PROG[coturn]=0
[ -n "${PROG[pinhole-fast]}" ] || { echo "pinhole-fast has no fast path:" >&2; cat "$OUT/pinhole-fast.log" >&2; exit 1; }
if [ -n "$PINHOLE_BASE" ]; then
	PROG[pinhole-fast-base]=$(sed -n 's/.*turn: fast path:.*bpf prog id \([0-9]*\).*/\1/p' "$OUT/pinhole-fast-base.log" | head -1)
	[ -n "${PROG[pinhole-fast-base]}" ] || { echo "pinhole-fast-base has no fast path" >&2; exit 1; }
fi

# UDP datagrams a namespace's sockets dropped for a full receive buffer
rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
run() { # SERVER[+twin] ALLOCS PPS_PER_ALLOC: the generator's line + srv_drops= gen_drops=
	local s0 g0 line s=${1%+twin} twin=0
	[ "$s" != "$1" ] && twin=1
	s0=$(rcvbuf_errors "${SRVNS[$s]}")
	g0=$(rcvbuf_errors "$GEN")
	line=$(BENCH_RXTIME_OBJ=$RXOBJ BENCH_SRV_NETNS=/run/netns/${SRVNS[$s]} BENCH_RXTIME_TWIN=$twin \
		ip netns exec "$GEN" "$GENBIN" "${SRVIP[$s]}:${PORT[$s]}" "$SECRET" 198.18.2.1 198.18.1 \
		"$2" "$3" "$SECS" "${PID[$s]}" "${PROG[$s]}" 2>>"$OUT/gen.err") || return
	echo "$line srv_drops=$(($(rcvbuf_errors "${SRVNS[$s]}") - s0)) gen_drops=$(($(rcvbuf_errors "$GEN") - g0))"
}
field() { sed -n "s/.*\b$1=\([-0-9.]*\).*/\1/p" <<<"$2"; }

# warm-up: every server relays for a while before anything is measured
for s in $STARTED; do run "$s" 50 100 >/dev/null; done

echo "# TURN relaying, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# rate: $RATE_ALLOCS allocations, $RATE pps offered; g711: $G711_ALLOCS allocations x 2 directions x 50 pps"
FMT='%-5s %-5s %-17s %9s %9s %6s %4s %7s %7s %7s %7s %8s %8s %8s %5s %6s %9s %9s %3s\n'
# shellcheck disable=SC2059
printf "$FMT" round test server offered relayed lost bad cpu_s bpf_s rx_srv rx_gen ns/pkt \
	all/pkt all+pr pbody probe srv_drops gen_drops st
declare -A NSPP ALLPP INCLPP
for r in $(seq 1 "$ROUNDS"); do
	for t in $TESTS; do
		if [ $t = rate ]; then a=$RATE_ALLOCS; p=$((RATE / 2 / RATE_ALLOCS)); else a=$G711_ALLOCS; p=50; fi
		for s in $SERVERS; do
			line=$(run "$s" "$a" "$p")
			[ -n "$line" ] || { echo "run failed: $s $t (see $OUT/gen.err)" >&2; continue; }
			echo "$r $t $s $line" >>"$OUT/results.txt"
			# shellcheck disable=SC2059
			printf "$FMT" "$r" $t "$s" \
				"$(field offered_pps "$line")" "$(field relayed_pps "$line")" \
				"$(field lost "$line")" "$(field bad "$line")" "$(field cpu_s "$line")" \
				"$(field bpf_s "$line")" "$(field rx_srv_s "$line")" "$(field rx_gen_s "$line")" \
				"$(field ns_per_pkt "$line")" "$(field ns_all_per_pkt "$line")" \
				"$(field ns_all_incl_per_pkt "$line")" "$(field probe_body_ns "$line")" \
				"$(field probe_ns "$line")" "$(field srv_drops "$line")" "$(field gen_drops "$line")" \
				"$(field bpf_stats "$line")"
			# shellcheck disable=SC2034 # both read through a nameref (ratios)
			NSPP[$r,$t,$s]=$(field ns_per_pkt "$line") ALLPP[$r,$t,$s]=$(field ns_all_per_pkt "$line")
			INCLPP[$r,$t,$s]=$(field ns_all_incl_per_pkt "$line")
		done
		ratios() { # ARRAY-NAME
			local -n a=$1
			local out="" k
			for k in pinhole-user pinhole-user-base pinhole-fast pinhole-fast-base; do
				[[ " $SERVERS " == *" $k "* ]] || continue
				out+=" ${k#pinhole-} $(awk -v a="${a[$r,$t,$k]:-0}" -v b="${a[$r,$t,coturn]:-0}" \
					'BEGIN{ if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }')"
			done
			echo "$out"
		}
		printf '      ratio CPU/pkt vs coturn (round %s, %s): old accounting:%s; all:%s; all+pr:%s\n' \
			"$r" $t "$(ratios NSPP)" "$(ratios ALLPP)" "$(ratios INCLPP)"
		for s in $SERVERS; do # what a second copy of the probes added: one copy's cost
			[ "${s%+twin}" != "$s" ] && [ -n "${ALLPP[$r,$t,${s%+twin}]:-}" ] &&
				printf '      probes (round %s, %s, %s): one copy adds %s ns/pkt\n' "$r" $t \
					"${s%+twin}" $((ALLPP[$r,$t,$s] - ALLPP[$r,$t,${s%+twin}]))
		done
	done
done
echo "# logs and raw lines in $OUT"
