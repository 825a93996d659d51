#!/usr/bin/env bash
# SIP over TLS and WebSocket: pinhole against Kamailio 5.6 (tls + websocket
# modules) in one invocation. Not part of ctest; timing decides nothing.
#
#   bench/tls/run.sh            memory per idle connection, handshakes, REGISTERs
#   bench/tls/run.sh hs         handshakes and REGISTERs only
#   bench/tls/run.sh reg        REGISTERs only
#   bench/tls/run.sh hold N     N idle TLS flows held by pinhole alone (50,000;
#                               each side needs N + 100 descriptors)
#   bench/tls/run.sh park       parked TLS against OpenSSL throughout: memory
#                               per idle TLS connection and CPU per REGISTER of
#                               pinhole ([tls] park = yes), a second pinhole
#                               with park = no, and Kamailio, interleaved
#
# Both servers run at once on 127.0.0.1 (pinhole on TB_PORT, its ws: on +1;
# Kamailio 10 above), with the same ECDSA P-256 certificate and intermediate
# (certbot's default key since 2.0; TB_KEY=rsa: RSA-2048 throughout),
# pinhole with 2 workers, Kamailio with 1 TCP worker (with 2, Debian's 5.6.3
# on OpenSSL 3 crashes under handshake load: see kamailio.cfg), bindings in
# memory; for handshakes and REGISTERs a second pinhole with 1 worker (20
# above TB_PORT; "pinhole1") compares like for like. REGISTER
# without authentication (pinhole [registrar] open = yes; Kamailio save()).
# Kamailio: bench/tls/kamailio.cfg. The generator is bench/tls/tls_bench.c
# (built here with cc; OpenSSL client, epoll, connections from 127.3.0.1 up,
# TB_PER_SOURCE per source address).
#
# A third pinhole with [tls] park = no listens 30 above TB_PORT ("nopark":
# OpenSSL runs its connections throughout); the memory table has it too.
# 1. Memory per idle connection (first, on fresh servers): each server in
#    turn holds TB_IDLE TLS flows (each registered once, then silent; the
#    generator frees its SSL and keeps the socket), then TB_IDLE WebSocket
#    flows (ws: over TCP, upgrade + one REGISTER). Measured before and after:
#    - pinhole: the allocator's bytes in use (glibc malloc_stats() called in
#      the process by gdb: "in use bytes" of all arenas, mmap included)
#    - Kamailio: shared memory in use (kamcmd core.shmmem used; its TCP
#      connections and OpenSSL's allocations live there) plus private memory
#      in use of every process (kamcmd pkg.stats)
#    - both: the sum of Pss over all the server's processes (smaps_rollup),
#      which counts fragmentation and Kamailio's shared pages once
#    A warm-up of 200 flows each (opened and closed) goes before.
# 2. Handshakes: TB_REPEAT runs of TB_HS_SECS each per server, in turn (the
#    order rotated run by run), after TB_WARMUP_SECS unrecorded; TB_HS_CONC
#    handshakes in flight, each a full one (no session offered), counted when
#    the server answered a CRLF keepalive over it. Rate, and the server's CPU
#    per handshake (every thread of every process, /proc/*/task/*/schedstat).
#    The client is TB_HS_CLIENT: hsl (default), tls_bench's light TLS 1.3
#    client (hs_lite.c: the same server work, a fraction of OpenSSL's client
#    cost, so the rate is the server's and not the generator's), or hs,
#    OpenSSL's client (session 9's figures; it costs more per handshake than
#    the server, so it bounds the rate on a 2-core machine).
# 3. REGISTER over established TLS: TB_FLOWS flows, each registered once,
#    then refreshes at TB_RATE/s round them for TB_REG_SECS (TB_REPEAT runs,
#    alternating); server CPU per 200.
# The machine may be shared: every figure is a same-run ratio, run by run.
#
# Environment: PINHOLE (build/pinhole), KAMAILIO (kamailio), TB_PORT (27061),
# TB_IDLE (5000), TB_HS_CONC (256 with hsl, 32 with hs), TB_HS_SECS (5), TB_WARMUP_SECS (3),
# TB_HS_CLIENT (hsl),
# TB_FLOWS (500), TB_RATE (4000), TB_REG_SECS (5), TB_REPEAT (3), TB_KEY
# (ec), TB_KAM_DEFER (1: Kamailio's tcp_defer_accept on, as pinhole's tls:
# listeners defer accepting; 0 off, Kamailio's default), BENCH_OUT (a new
# /tmp/pinhole-tls.XXXXXX).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
KAMAILIO=${KAMAILIO:-kamailio}
PORT=${TB_PORT:-27061}
KPORT=$((PORT + 10))
IDLE=${TB_IDLE:-5000}
HS_CLIENT=${TB_HS_CLIENT:-hsl}
# in flight: enough to keep a server busy whatever the scheduler does with
# the other processes of a shared machine (the light client), as session 9
# for OpenSSL's client
[ "$HS_CLIENT" = hsl ] && HS_CONC=${TB_HS_CONC:-256} || HS_CONC=${TB_HS_CONC:-32}
HS_SECS=${TB_HS_SECS:-5}
WARMUP=${TB_WARMUP_SECS:-3}
FLOWS=${TB_FLOWS:-500}
RATE=${TB_RATE:-4000}
REG_SECS=${TB_REG_SECS:-5}
REPEAT=${TB_REPEAT:-3}
KEY=${TB_KEY:-ec}
KDEFER=
[ "${TB_KAM_DEFER:-1}" = 1 ] && KDEFER="-A DEFER_ACCEPT"
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-tls.XXXXXX)}
MODE=${1:-all}
HOLD_N=${2:-50000}
mkdir -p "$OUT"

# as many descriptors as the hard limit allows (raising it needs
# CAP_SYS_RESOURCE; it bounds the connections one process can hold)
ulimit -n "$(ulimit -Hn)"
. "$HERE/lib.sh"
tb_gen "$OUT" || exit 1
GEN=$OUT/tls_bench
tb_certs "$OUT" "$KEY" || exit 1
tb_registrar_conf "$OUT" "tls:127.0.0.1:$PORT, ws:127.0.0.1:$((PORT + 1))" 2 $((PORT + 2)) \
	>"$OUT/pinhole.conf"
sed -e "s/127.0.0.1:$PORT, ws:127.0.0.1:$((PORT + 1))/127.0.0.1:$((PORT + 30)), ws:127.0.0.1:$((PORT + 31))/" \
	-e "s/^listen = 127.0.0.1:$((PORT + 2))/listen = 127.0.0.1:$((PORT + 32))/" \
	-e "s/^\[tls\]/[tls]\npark = no/" "$OUT/pinhole.conf" >"$OUT/nopark.conf"

# like for like with Kamailio's single TCP worker: the same with 1 worker
sed -e 's/^workers = 2/workers = 1/' -e "s/127.0.0.1:$PORT, ws:127.0.0.1:$((PORT + 1))/127.0.0.1:$((PORT + 20))/" \
	-e "s/127.0.0.1:$((PORT + 2))/127.0.0.1:$((PORT + 22))/" "$OUT/pinhole.conf" >"$OUT/pinhole1.conf"

PPID_=
P1PID=
NPID=
KPID=
cleanup() {
	[ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null
	[ -n "$P1PID" ] && kill "$P1PID" 2>/dev/null
	[ -n "$NPID" ] && kill "$NPID" 2>/dev/null
	[ -n "$KPID" ] && kill "$KPID" 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT

"$PINHOLE" serve --config "$OUT/pinhole.conf" >"$OUT/pinhole.log" 2>&1 &
PPID_=$!
if [ "$MODE" != hold ]; then
	"$PINHOLE" serve --config "$OUT/pinhole1.conf" >"$OUT/pinhole1.log" 2>&1 &
	P1PID=$!
	"$PINHOLE" serve --config "$OUT/nopark.conf" >"$OUT/nopark.log" 2>&1 &
	NPID=$!
	tb_kamailio "$OUT" "$KPORT" $KDEFER
	KPID=$TB_KPID
fi
sleep 3
kill -0 "$PPID_" || {
	cat "$OUT/pinhole.log"
	exit 1
}
[ -z "$NPID" ] || kill -0 "$NPID" || {
	cat "$OUT/nopark.log"
	exit 1
}

pids() { # the server's processes
	case $1 in
	pinhole) echo "$PPID_" ;;
	pinhole1) echo "$P1PID" ;;
	nopark) echo "$NPID" ;;
	*) tb_pids "$KPID" ;;
	esac
}
pss_kb() { # sum of Pss over the processes
	local s=0 p v
	for p in $(pids "$1"); do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		s=$((s + ${v:-0}))
	done
	echo $s
}
heap_b() { # allocator bytes in use
	if [ "$1" = pinhole ] || [ "$1" = nopark ]; then
		gdb -p "$(pids "$1")" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1
		sleep 0.2
		# the last "in use bytes" of the log is malloc_stats' total
		grep 'in use bytes' "$OUT/$1.log" | tail -1 | awk '{print $NF}'
	else
		local shm pkg
		shm=$(kamcmd -s "unix:$OUT/kamailio.ctl" core.shmmem | awk '$1 == "used:" {print $2}')
		pkg=$(kamcmd -s "unix:$OUT/kamailio.ctl" pkg.stats | awk '$1 == "used:" {s += $2} END {print s}')
		echo $((shm + pkg))
	fi
}
port_of() { # server, kind
	local b=$PORT
	[ "$1" = kamailio ] && b=$KPORT
	[ "$1" = pinhole1 ] && b=$((PORT + 20))
	[ "$1" = nopark ] && b=$((PORT + 30))
	[ "$2" = ws ] && b=$((b + 1))
	echo $b
}

hold() { # server kind n: holds, measures, releases; prints bytes/conn heap and pss
	local srv=$1 kind=$2 n=$3 port h0 p0 h1 p1 fifo
	port=$(port_of "$srv" "$kind")
	h0=$(heap_b "$srv")
	p0=$(pss_kb "$srv")
	fifo=$OUT/hold.fifo
	rm -f "$fifo"
	mkfifo "$fifo"
	"$GEN" hold "$port" "$n" "$kind" <"$fifo" >"$OUT/hold.out" 2>&1 &
	local g=$!
	exec 9>"$fifo"
	while ! grep -q held "$OUT/hold.out" 2>/dev/null; do
		kill -0 $g 2>/dev/null || break
		sleep 0.5
	done
	sleep 2
	h1=$(heap_b "$srv")
	p1=$(pss_kb "$srv")
	if [ "$srv" = pinhole ]; then # what the server says it holds
		curl -s "http://127.0.0.1:$((PORT + 2))/metrics" |
			grep -E '^pinhole_(net_tcp_connections|registrar_bindings|tls_handshakes_total|tls_parked) ' >"$OUT/held_metrics.txt"
	fi
	local held
	held=$(awk '/held/ {print $2}' "$OUT/hold.out")
	exec 9>&-
	wait $g
	sleep 3 # the server closes them
	echo "$srv $kind $n held=${held:-0} heap $h0 $h1 pss_kb $p0 $p1" >>"$OUT/memory.txt"
	awk -v s="$srv" -v k="$kind" -v h="${held:-0}" -v a="$h0" -v b="$h1" -v c="$p0" -v d="$p1" \
		'BEGIN { if (h > 0) printf "%-8s %-3s %6d idle: %6.0f B/conn allocator, %6.0f B/conn Pss\n", s, k, h, (b - a) / h, (d - c) * 1024 / h; else printf "%s %s: none held\n", s, k }'
}

warm() { # server: 200 TLS and 200 ws flows opened and closed, before measuring
	TB_PER_SOURCE=100 "$GEN" hold "$(port_of "$1" tls)" 200 tls </dev/null >/dev/null 2>&1
	TB_PER_SOURCE=100 "$GEN" hold "$(port_of "$1" ws)" 200 ws </dev/null >/dev/null 2>&1
}

if [ "$MODE" = park ]; then
	# parked (pinhole) against OpenSSL throughout (nopark) and Kamailio: idle
	# memory, then CPU per REGISTER over established TLS, interleaved
	echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "pinhole: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)  openssl: $(openssl version)  key: $KEY"
	echo "== memory per idle TLS connection (TB_IDLE=$IDLE; park on, park off, kamailio)"
	for s in pinhole nopark kamailio; do warm "$s"; done
	sleep 2
	for r in $(seq 1 "$REPEAT"); do
		for s in pinhole nopark kamailio; do hold "$s" tls "$IDLE"; done
	done | tee "$OUT/park_memory.txt"
	curl -s "http://127.0.0.1:$((PORT + 2))/metrics" | grep -E '^pinhole_tls_(park|parked)' | tee "$OUT/park_metrics.txt"
	echo "== REGISTER over established TLS ($FLOWS flows, $RATE/s, ${REG_SECS}s runs)"
	for r in $(seq 1 "$REPEAT"); do
		order="pinhole nopark kamailio"
		[ $((r % 2)) = 0 ] && order="kamailio nopark pinhole"
		for s in $order; do
			echo "$s $r $(TB_PIDS="$(pids $s)" "$GEN" reg "$(port_of $s tls)" "$FLOWS" "$RATE" "$REG_SECS")"
		done
	done | tee "$OUT/park_reg.txt"
	awk '{ us[$1, $2] = $5 ? $9 / $5 / 1000 : 0; runs[$2] = 1 }
		END {
			printf "run | CPU us/REGISTER  pinhole  nopark kamailio | pinhole/nopark pinhole/kamailio\n"
			for (r in runs)
				printf "%3s | %8.1f %8.1f %8.1f | %5.2f %5.2f\n", r, us["pinhole", r], us["nopark", r], us["kamailio", r], us["pinhole", r] / (us["nopark", r] ? us["nopark", r] : 1), us["pinhole", r] / (us["kamailio", r] ? us["kamailio", r] : 1)
		}' "$OUT/park_reg.txt" | tee "$OUT/park_summary.txt"
	echo "files in $OUT"
	exit 0
fi

if [ "$MODE" = hold ]; then
	echo "pinhole: $HOLD_N idle TLS flows" | tee "$OUT/hold50k.txt"
	hold pinhole tls "$HOLD_N" | tee -a "$OUT/hold50k.txt"
	cat "$OUT/held_metrics.txt"
	echo "fd limit: $(ulimit -n) (hard $(ulimit -Hn))"
	echo "files in $OUT"
	exit 0
fi

{
	echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "pinhole: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)  kamailio: $("$KAMAILIO" -v | head -1)"
	echo "openssl: $(openssl version)  key: $KEY  kamailio tcp_defer_accept: ${TB_KAM_DEFER:-1}"
} | tee "$OUT/env.txt"

if [ "$MODE" = all ]; then
echo "== memory per idle connection (TB_IDLE=$IDLE)"
for s in pinhole nopark kamailio; do warm "$s"; done
sleep 2
for kind in tls ws; do
	for s in pinhole nopark kamailio; do
		[ "$kind" = ws ] && [ "$s" = nopark ] && continue # its ws: is no different
		hold "$s" "$kind" "$IDLE"
	done
done | tee "$OUT/memory_table.txt"
fi

# the servers in turn, the order rotated run by run
order_of() {
	case $(($1 % 3)) in
	1) echo "pinhole pinhole1 kamailio" ;;
	2) echo "kamailio pinhole pinhole1" ;;
	*) echo "pinhole1 kamailio pinhole" ;;
	esac
}
load1() { cut -d' ' -f1 /proc/loadavg; }

if [ "$MODE" = reg ]; then
	: >"$OUT/hs.txt"
else
echo "== handshakes (client $HS_CLIENT, conc $HS_CONC, ${HS_SECS}s runs)"
for s in pinhole pinhole1 kamailio; do
	TB_PIDS="$(pids $s)" "$GEN" "$HS_CLIENT" "$(port_of $s tls)" "$HS_CONC" "$WARMUP" >/dev/null
done
for r in $(seq 1 "$REPEAT"); do
	for s in $(order_of "$r"); do
		l=$(load1)
		echo "$s $r $(TB_PIDS="$(pids $s)" "$GEN" "$HS_CLIENT" "$(port_of $s tls)" "$HS_CONC" "$HS_SECS") load $l"
	done
done | tee "$OUT/hs.txt"

# a client that offers only the dearest group a server may accept (OpenSSL's
# client, 4 at a time, 3 s): pinhole refuses it (X25519 and P-256 only),
# the attempts count as failed; CPU per attempt either way
echo "== handshakes offering only ffdhe8192"
for s in pinhole kamailio; do
	echo "$s $(TB_GROUPS=ffdhe8192 TB_PIDS="$(pids $s)" "$GEN" hs "$(port_of $s tls)" 4 3)"
done | tee "$OUT/hs_ffdhe.txt" | awk '{ n = $3 + $5; printf "%-8s %s done %s refused: %.0f us of server CPU per attempt\n", $1, $3, $5, n ? $7 / n / 1000 : 0 }'

# pinhole's server context against OpenSSL's defaults, in one process over
# memory BIOs (no sockets, no generator): what the context's settings save
if [ -f "$ROOT/build/libpinhole_lib.a" ] && cc -O2 -I"$ROOT/src" -I"$ROOT/src/net" -o "$OUT/hs_cost" \
	"$HERE/hs_cost.c" "$ROOT/build/libpinhole_lib.a" $(pkg-config --libs inih sqlite3 libssl libcrypto \
	zlib libmicrohttpd libbpf 2>/dev/null) -lpthread -lm 2>/dev/null; then
	echo "== server CPU per handshake in process (hs_cost, 2000 each, full then resumed)"
	"$OUT/hs_cost" 2000 "$OUT/cert.pem" "$OUT/key.pem" | tee "$OUT/hs_cost.txt"
	"$OUT/hs_cost" 2000 "$OUT/cert.pem" "$OUT/key.pem" resume | tee -a "$OUT/hs_cost.txt"
fi

fi

echo "== REGISTER over established TLS ($FLOWS flows, $RATE/s, ${REG_SECS}s runs)"
for r in $(seq 1 "$REPEAT"); do
	for s in $(order_of "$r"); do
		l=$(load1)
		echo "$s $r $(TB_PIDS="$(pids $s)" "$GEN" reg "$(port_of $s tls)" "$FLOWS" "$RATE" "$REG_SECS") load $l"
	done
done | tee "$OUT/reg.txt"

# lines: srv run hs N failed F cpu_ns C load L / srv run reg SENT OK flows F cpu_ns C load L
awk -v secs="$HS_SECS" '
	function med(s,   n, a, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function q(a, b) { return b ? a / b : 0 }
	FILENAME ~ /hs.txt/ { rate[$1, $2] = $4 / secs; us[$1, $2] = $4 ? $8 / $4 / 1000 : 0; ld[$2] = ld[$2] " " $10; runs[$2] = 1 }
	FILENAME ~ /reg.txt/ { rus[$1, $2] = $5 ? $9 / $5 / 1000 : 0; rok[$1, $2] = $5 "/" $4; runs[$2] = 1; rld[$2] = rld[$2] " " $11 }
	END {
		printf "\nhandshakes/s (pinhole 2 workers, pinhole1 1 worker, kamailio 1 TCP worker), server CPU us per handshake, CPU us per REGISTER; ratios to kamailio\n"
		printf "run | hs/s p p1 k | p/k p1/k | us/hs p p1 k | p/k p1/k | us/REG p p1 k | p/k p1/k | load1 hs | load1 reg\n"
		for (r = 1; r in runs; r++) {
			a = q(rate["pinhole", r], rate["kamailio", r]); a1 = q(rate["pinhole1", r], rate["kamailio", r])
			b = q(us["pinhole", r], us["kamailio", r]); b1 = q(us["pinhole1", r], us["kamailio", r])
			c = q(rus["pinhole", r], rus["kamailio", r]); c1 = q(rus["pinhole1", r], rus["kamailio", r])
			printf "%3d | %5.0f %5.0f %5.0f | %4.2f %4.2f | %4.0f %4.0f %4.0f | %4.2f %4.2f | %5.1f %5.1f %5.1f | %4.2f %4.2f |%s\n", r, rate["pinhole", r], rate["pinhole1", r], rate["kamailio", r], a, a1, us["pinhole", r], us["pinhole1", r], us["kamailio", r], b, b1, rus["pinhole", r], rus["pinhole1", r], rus["kamailio", r], c, c1, ld[r] " |" rld[r]
			ra = ra " " a; ra1 = ra1 " " a1; rb = rb " " b; rb1 = rb1 " " b1; rc = rc " " c; rc1 = rc1 " " c1
		}
		printf "median ratios to kamailio: handshakes/s %.2f (1 worker: %.2f), CPU per handshake %.2f (%.2f), CPU per REGISTER %.2f (%.2f)\n", med(ra), med(ra1), med(rb), med(rb1), med(rc), med(rc1)
	}' "$OUT/hs.txt" "$OUT/reg.txt" | tee "$OUT/summary.txt"
echo "files in $OUT"
