#!/usr/bin/env bash
# N idle TLS flows held on this machine by pinhole in its edge + registrar
# shape: EDGES edge-only processes (`pinhole serve` with a tls: listener and
# [proxy] registrar) in front of one registrar, all on 127.0.0.1. Not part of
# ctest; nothing here is timed.
#
#   bench/tls/hold_edges.sh [N] [EDGES]        (50000, 3)
#
# Why several processes: a process holds at most its file limit of
# connections, and here the hard limit is 20,000 (raising it needs
# CAP_SYS_RESOURCE, which this machine's root lacks). An operator with more
# phones per machine than one process may hold runs more edges, the shape
# RFC 5626 and pinhole's edge-only mode are for; a TLS client picks an edge
# by DNS (SRV or A records), here by port.
#
# Each edge gets N / EDGES flows from its own generator (bench/tls/tls_bench.c
# `hold`, TB_FIRST apart so every flow has its own AOR, 100 flows per source
# address from 127.3.0.1 up): a full TLS handshake, one REGISTER (which the
# edge forwards to the registrar with its Path), its 200, then silence; the
# generator frees its SSL and keeps only the socket. Measured per edge before
# and after: the allocator's bytes in use (glibc malloc_stats() called in the
# process by gdb) and Pss; what the edge says it holds (net_tcp_connections,
# tls_ metrics); at the registrar, the bindings and its bytes in use per
# binding. The edges' figure is pinhole's memory per idle TLS connection
# beyond the kernel's (socket buffers are the kernel's and not counted).
#
# Environment: PINHOLE (build/pinhole), HE_PORT (28061: edge e on
# HE_PORT + 10 e, its control on + 2; the registrar on HE_PORT), BENCH_OUT (a
# new /tmp/pinhole-hold.XXXXXX), HE_PARK (empty: the build's default; on/off
# sets [tls] park where the build has it). Needs gdb and curl.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
N=${1:-50000}
EDGES=${2:-3}
PORT=${HE_PORT:-28061}
PARK=${HE_PARK:-}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-hold.XXXXXX)}
PER=$(((N + EDGES - 1) / EDGES))
mkdir -p "$OUT"
for t in gdb curl openssl cc; do
	command -v "$t" >/dev/null || { echo "hold_edges: needs $t" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((PER + 200)) ]; then
	echo "hold_edges: $PER flows per edge need $((PER + 200)) files, the limit is $(ulimit -n):" \
		"use more edges" >&2
	exit 1
fi
. "$HERE/lib.sh"
tb_gen "$OUT" || exit 1
tb_certs "$OUT" || exit 1
KEY=$(openssl rand -hex 32)

PIDS=()
GENS=()
cleanup() {
	local p
	for p in "${GENS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

serve() { # name conf
	"$PINHOLE" serve --config "$2" >"$OUT/$1.log" 2>&1 &
	PIDS+=($!)
	local i
	for i in $(seq 1 100); do
		grep -q 'running with' "$OUT/$1.log" && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "hold_edges: $1 did not start:" >&2
	tail -n 20 "$OUT/$1.log" >&2
	exit 1
}

cat >"$OUT/registrar.conf" <<EOF
[sip]
listen = udp:127.0.0.1:$PORT
domains = 127.0.0.1
flow_key = $KEY
rate_limit_exempt = 127.0.0.1
[proxy]
trusted = 127.0.0.1
[registrar]
open = yes
max_bindings = 1000000
[keepalive]
interval = 0
[store]
path =
[control]
listen = 127.0.0.1:$((PORT + 2))
EOF
serve registrar "$OUT/registrar.conf"

for e in $(seq 1 "$EDGES"); do
	p=$((PORT + 10 * e))
	cat >"$OUT/edge$e.conf" <<EOF
[sip]
listen = tls:127.0.0.1:$p, udp:127.0.0.1:$p
domains = 127.0.0.1
flow_key = $KEY
workers = 2
tcp_max_connections = 120000
tcp_max_connections_per_address = 0
tcp_idle_timeout = 3600
[tls]
certificate = $OUT/cert.pem
private_key = $OUT/key.pem
max_handshakes = 256
$([ -n "$PARK" ] && echo "park = $PARK")
[proxy]
registrar = udp:127.0.0.1:$PORT
[outbound]
max_flows_per_source = 0
[keepalive]
interval = 0
[control]
listen = 127.0.0.1:$((p + 2))
EOF
	serve "edge$e" "$OUT/edge$e.conf"
done

heap_b() { # name pid: the allocator's bytes in use (malloc_stats' total, in the log)
	gdb -p "$2" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1
	sleep 0.2
	grep 'in use bytes' "$OUT/$1.log" | tail -1 | awk '{print $NF}'
}
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
metric() { # control-port name
	curl -s "http://127.0.0.1:$1/metrics" | awk -v n="pinhole_$2" '$1 == n { v = $2 } END { print v + 0 }'
}

declare -A H0 P0
for e in $(seq 0 "$EDGES"); do
	name=$([ "$e" = 0 ] && echo registrar || echo "edge$e")
	H0[$e]=$(heap_b "$name" "${PIDS[$e]}")
	P0[$e]=$(pss_kb "${PIDS[$e]}")
done

# the generators: each holds its share until its stdin closes
for e in $(seq 1 "$EDGES"); do
	n=$PER
	[ $((PER * e)) -gt "$N" ] && n=$((N - PER * (e - 1)))
	rm -f "$OUT/g$e.fifo"
	mkfifo "$OUT/g$e.fifo"
	TB_FIRST=$((PER * (e - 1))) "$OUT/tls_bench" hold $((PORT + 10 * e)) "$n" tls \
		<"$OUT/g$e.fifo" >"$OUT/g$e.out" 2>&1 &
	GENS+=($!)
	eval "exec $((20 + e))>\"$OUT/g$e.fifo\""
done
for e in $(seq 1 "$EDGES"); do
	while ! grep -q '^held' "$OUT/g$e.out" 2>/dev/null; do
		kill -0 "${GENS[$((e - 1))]}" 2>/dev/null || break
		sleep 0.5
	done
done
sleep 3

total=0 heap=0 pss=0
printf '%-9s %7s %8s %8s %11s %11s\n' process held tcp_conn bindings "B/conn heap" "B/conn Pss"
for e in $(seq 1 "$EDGES"); do
	h1=$(heap_b "edge$e" "${PIDS[$e]}")
	p1=$(pss_kb "${PIDS[$e]}")
	held=$(awk '/^held/ {print $2}' "$OUT/g$e.out")
	held=${held:-0}
	conns=$(metric $((PORT + 10 * e + 2)) net_tcp_connections)
	curl -s "http://127.0.0.1:$((PORT + 10 * e + 2))/metrics" | grep -E '^pinhole_tls_' \
		>"$OUT/edge$e.tls_metrics"
	total=$((total + held))
	heap=$((heap + h1 - H0[$e]))
	pss=$((pss + (p1 - P0[$e]) * 1024))
	awk -v n="edge$e" -v h="$held" -v c="$conns" -v a="${H0[$e]}" -v b="$h1" -v x="${P0[$e]}" \
		-v y="$p1" 'BEGIN { printf "%-9s %7d %8d %8s %11.0f %11.0f\n", n, h, c, "-",
			h ? (b - a) / h : 0, h ? (y - x) * 1024 / h : 0 }'
done
h1=$(heap_b registrar "${PIDS[0]}")
p1=$(pss_kb "${PIDS[0]}")
bind=$(metric $((PORT + 2)) registrar_bindings)
awk -v h="$bind" -v a="${H0[0]}" -v b="$h1" -v x="${P0[0]}" -v y="$p1" \
	'BEGIN { printf "%-9s %7s %8s %8d %11.0f %11.0f   (per binding)\n", "registrar", "-", "-", h,
		h ? (b - a) / h : 0, h ? (y - x) * 1024 / h : 0 }'
awk -v t="$total" -v n="$N" -v h="$heap" -v p="$pss" -v e="$EDGES" \
	'BEGIN { printf "held %d of %d idle TLS flows on %d edges: %.0f B/conn heap, %.0f B/conn Pss (edges)\n",
		t, n, e, t ? h / t : 0, t ? p / t : 0 }' | tee "$OUT/summary.txt"
grep -h 'failed' "$OUT"/g*.out >&2
echo "logs in $OUT" >&2
[ "$total" -eq "$N" ]
