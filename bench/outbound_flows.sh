#!/usr/bin/env bash
# Idle RFC 5626 outbound TCP flows: pinhole's memory per registered idle flow
# and its CPU per CRLF keepalive. Not part of ctest; timing decides nothing.
#
#   bench/outbound_flows.sh
#
# The generator is bench/sip/ob_flows.c (built here with cc): FLOWS TCP
# connections to pinhole on 127.0.0.1, PER_SOURCE from each source address
# in 127.1.0.0/16 and up, each registering once with an outbound REGISTER
# (Supported: outbound, +sip.instance, reg-id=1, Expires 3600) and then
# sending only double-CRLF keepalives, each answered with a CRLF pong.
#
# Each run starts a fresh server and:
#   1. warm-up: OB_WARM flows registered and pinged once (not measured; they
#      stay open, so the measured flows add to a server that has run every path)
#   2. baseline: after OB_SETTLE_SECS, the server's anonymous memory (RssAnon
#      of /proc/PID/status: heap, thread arenas, anonymous maps; code and
#      other file pages left out) and the machine's kernel slab (Slab of
#      /proc/meminfo)
#   3. OB_FLOWS more flows opened and registered at OB_OPEN_RATE per second
#   4. after OB_SETTLE_SECS: the same again; per flow = the growth / OB_FLOWS
#      (TCP server transactions end with their answer, so nothing of the
#      REGISTERs is left but the binding and the flow)
#   5. CPU: OB_PING_SECS with the flows idle, then OB_PING_SECS with keepalives
#      at OB_PING_RATE per second over all flows; the server's CPU is the sum
#      of its threads' run time (/proc/PID/task/*/schedstat, nanoseconds);
#      per keepalive = (ping phase - idle phase) / pongs, and the gross figure
#   6. memory once more after the keepalives
# OB_REPEAT runs; the report gives each run and the medians.
#
# File descriptors: the server holds OB_FLOWS + OB_WARM connections and the
# generator as many sockets; each process needs a file limit above that. The
# script raises its soft limit (`ulimit -n`) as far as the hard limit allows
# (the server inherits it; the generator raises its own), and stops if that is
# too low. Raising the hard limit takes root with CAP_SYS_RESOURCE
# (`ulimit -Hn 300000` before running, or LimitNOFILE=), which some
# containers do not give.
#
# Server configuration for the benchmark (and why; every other key is the
# default): TCP only on 127.0.0.1, [sip] workers = OB_WORKERS,
# tcp_max_connections = flows + 1000 (default 10,000),
# tcp_max_connections_per_address = OB_PER_SOURCE (default 128),
# [registrar] open = yes (no users), [outbound] max_flows_per_source =
# OB_PER_SOURCE and max_flows = flows + 1000 where the binary has them,
# memory store, [log] level = warn. Loopback
# is exempt from the per-source rate limit by default.
#
# Environment (all optional):
#   PINHOLE            pinhole binary                        (build/pinhole)
#   OB_FLOWS           measured flows                         (100000)
#   OB_WARM            warm-up flows                          (500)
#   OB_PER_SOURCE      flows per source address               (100)
#   OB_OPEN_RATE       new flows per second                   (5000)
#   OB_SETTLE_SECS     wait before reading memory             (5)
#   OB_PING_RATE       keepalives per second, all flows        (10000)
#   OB_PING_SECS       length of the idle and the ping phase  (20)
#   OB_REPEAT          runs                                   (3)
#   OB_KIND            register, or options: each connection sends an
#                      OPTIONS instead of the REGISTER (a bare connection,
#                      no binding and no flow entry: the connection's share)
#   OB_WORKERS         pinhole [sip] workers                  (2)
#   OB_PORT            server TCP port                        (15180; control +1)
#   BENCH_OUT          where logs go                          (a new /tmp/pinhole-obflows.XXXXXX)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
FLOWS=${OB_FLOWS:-100000}
WARM=${OB_WARM:-500}
PER_SOURCE=${OB_PER_SOURCE:-100}
OPEN_RATE=${OB_OPEN_RATE:-5000}
SETTLE=${OB_SETTLE_SECS:-5}
PING_RATE=${OB_PING_RATE:-10000}
PING_SECS=${OB_PING_SECS:-20}
REPEAT=${OB_REPEAT:-3}
KIND=${OB_KIND:-register}
case $KIND in
register) KIND_ARG= ;;
options) KIND_ARG=options ;;
*)
	echo "OB_KIND is register or options" >&2
	exit 2
	;;
esac
WORKERS=${OB_WORKERS:-2}
PORT=${OB_PORT:-15180}
CTL=127.0.0.1:$((PORT + 1))
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-obflows.XXXXXX)}
mkdir -p "$OUT"
GEN=$OUT/ob_flows

[ -x "$PINHOLE" ] || {
	echo "no pinhole binary at $PINHOLE (cmake --preset release && cmake --build build)" >&2
	exit 2
}
cc -std=c17 -O2 -Wall -Wextra -o "$GEN" "$HERE/sip/ob_flows.c" || exit 1

# the server and the generator each hold every connection, plus their own
need=$((FLOWS + WARM + 200))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	echo "bench: $((FLOWS + WARM)) flows need a file limit of at least $need in both processes;" >&2
	echo "       the hard limit here is $hard (raise it as root: ulimit -Hn $need), or set OB_FLOWS below $((hard - WARM - 200))" >&2
	exit 2
fi
ulimit -n "$need" 2>/dev/null || ulimit -n "$hard"

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

pinhole_key_section() { # KEY: the section of this binary's config key, if it has it
	"$PINHOLE" serve --help-config 2>/dev/null | awk -v k="$1" '
		/^\[/ { sec = substr($1, 2, length($1) - 2) } $1 == k && !f { print sec; f = 1 } END { exit !f }'
}

{
	cat <<CONF
[sip]
listen = tcp:127.0.0.1:$PORT
workers = $WORKERS
tcp_max_connections = $((FLOWS + WARM + 1000))
tcp_max_connections_per_address = $PER_SOURCE
[store]
path =
[registrar]
open = yes
CONF
	# keys of work in progress, set where the binary has them
	sec=$(pinhole_key_section max_flows_per_source) &&
		printf '[%s]\nmax_flows_per_source = %s\n' "$sec" "$PER_SOURCE"
	sec=$(pinhole_key_section max_flows) &&
		printf '[%s]\nmax_flows = %s\n' "$sec" "$((FLOWS + WARM + 1000))"
	cat <<CONF
[control]
listen = $CTL
[log]
level = warn
CONF
} >"$OUT/pinhole.conf"

SRV=
GPID=
stop_all() {
	if [ -n "$GPID" ] && kill -0 "$GPID" 2>/dev/null; then
		{ echo quit >&"${G[1]}"; } 2>/dev/null
		sleep 1
		kill "$GPID" 2>/dev/null
		wait "$GPID" 2>/dev/null
	fi
	GPID=
	if [ -n "$SRV" ]; then
		kill "$SRV" 2>/dev/null
		wait "$SRV" 2>/dev/null
	fi
	SRV=
}
trap stop_all EXIT
trap 'exit 130' INT TERM

anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$SRV/status"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SRV/status"; }
slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
run_ns() { cat /proc/"$SRV"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

gen() { # COMMAND: send it to the generator, print its answer
	echo "$1" >&"${G[1]}"
	local line
	if ! read -r -t 600 line <&"${G[0]}"; then
		echo "error: no answer from the generator"
		return 1
	fi
	echo "$line"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "pinhole: $PINHOLE, built $(date -r "$PINHOLE" -Is), source $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
	echo "kind: $KIND; flows: $FLOWS (+ $WARM warm-up), $PER_SOURCE per source, opened at $OPEN_RATE/s; keepalives $PING_RATE/s for $PING_SECS s; file limit $(ulimit -n)"
} | tee "$OUT/env.txt" >&2

: >"$OUT/runs.txt"
for ((run = 1; run <= REPEAT; run++)); do
	"$PINHOLE" serve --config "$OUT/pinhole.conf" >"$OUT/server-$run.log" 2>&1 &
	SRV=$!
	sleep 1
	kill -0 "$SRV" 2>/dev/null || {
		log "the server did not start: $OUT/server-$run.log"
		exit 1
	}
	# shellcheck disable=SC2086 # KIND_ARG is empty or one word
	coproc G { exec "$GEN" "$PORT" "$((FLOWS + WARM))" "$PER_SOURCE" "r$run" $KIND_ARG; }
	GPID=$G_PID
	a=$(gen "open $WARM $OPEN_RATE")
	b=$(gen "ping $WARM 1")
	log "run $run: warm-up: $a; $b"
	sleep "$SETTLE"
	m0=$(anon_kb) r0=$(rss_kb) s0=$(slab_kb)
	o=$(gen "open $FLOWS $OPEN_RATE")
	log "run $run: $o"
	reg=$(field registered "$o")
	if [ "${reg:-0}" -lt "$FLOWS" ]; then
		log "run $run: only ${reg:-0} of $FLOWS flows registered; see $OUT/server-$run.log"
	fi
	sleep "$SETTLE"
	m1=$(anon_kb) r1=$(rss_kb) s1=$(slab_kb)
	c0=$(run_ns)
	i=$(gen "idle $PING_SECS")
	c1=$(run_ns)
	p=$(gen "ping $PING_RATE $PING_SECS")
	c2=$(run_ns)
	sleep "$SETTLE"
	m2=$(anon_kb)
	cnt=$(gen count)
	log "run $run: idle: $i; ping: $p; $cnt"
	"$PINHOLE" ctl --control "$CTL" metrics >"$OUT/metrics-$run.txt" 2>&1 || true
	pongs=$(field pongs "$p")
	echo "run=$run flows=$FLOWS registered=$reg require_outbound=$(field require_outbound "$o") flow_timer=$(field flow_timer "$o") anon0=$m0 anon1=$m1 anon2=$m2 rss0=$r0 rss1=$r1 slab0=$s0 slab1=$s1 idle_ns=$((c1 - c0)) ping_ns=$((c2 - c1)) sent=$(field sent "$p") pongs=$pongs closed=$(field closed "$cnt") open=$(field open "$cnt")" >>"$OUT/runs.txt"
	stop_all
	sleep 2
done

# the report: every run, then medians
awk '
	function median(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		n++
		anon[n] = (v["anon1"] - v["anon0"]) * 1024 / v["flows"]
		rss[n] = (v["rss1"] - v["rss0"]) * 1024 / v["flows"]
		after[n] = (v["anon2"] - v["anon0"]) * 1024 / v["flows"]
		slab[n] = (v["slab1"] - v["slab0"]) * 1024 / v["flows"]
		net[n] = v["pongs"] ? (v["ping_ns"] - v["idle_ns"]) / v["pongs"] : 0
		gross[n] = v["pongs"] ? v["ping_ns"] / v["pongs"] : 0
		idle[n] = v["idle_ns"] / 1e9
		printf "run %d: %d of %d flows registered (Require: outbound in %d, Flow-Timer %s); anonymous memory +%.0f B per flow (RSS +%.0f B; +%.0f B after the keepalives); kernel slab +%.0f B per flow (machine-wide, both ends); server CPU %.3f s idle, %.3f s with %d keepalives (%d pongs): %.2f us per keepalive net of idle, %.2f us gross; %s flows still open, %s closed by the server\n",
			v["run"], v["registered"], v["flows"], v["require_outbound"], v["flow_timer"], anon[n], rss[n], after[n], slab[n],
			v["idle_ns"] / 1e9, v["ping_ns"] / 1e9, v["sent"], v["pongs"], net[n] / 1000, gross[n] / 1000, v["open"], v["closed"]
	}
	END {
		if (!n) exit
		printf "\nmedians of %d run(s): pinhole anonymous memory per idle registered flow %.0f B (target 4096), %.0f B after the keepalive phase; kernel slab %.0f B per flow (both sockets of the loopback pair and the epoll items); CPU per keepalive %.2f us net of the idle phase (%.2f us gross); server CPU with the flows idle %.3f s per %s s\n",
			n, median(anon, n), median(after, n), median(slab, n), median(net, n) / 1000, median(gross, n) / 1000, median(idle, n), "'"$PING_SECS"'"
	}' "$OUT/runs.txt" | tee "$OUT/report.txt"
log "files in $OUT"
