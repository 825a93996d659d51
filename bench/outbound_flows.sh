#!/usr/bin/env bash
# Idle RFC 5626 outbound TCP flows: pinhole's memory per registered idle flow
# and its CPU per CRLF keepalive. Not part of ctest; timing decides nothing.
#
#   bench/outbound_flows.sh
#   OB_SHAPE=split OB_EDGES=6 bench/outbound_flows.sh   (edges apart, below)
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
# OB_SHAPE=split: edges apart from the registrar (docs/outbound.md, shape 2),
# so that more flows than one process's file limit allows are held on one
# host. OB_EDGES edge-only `pinhole serve` processes, edge e on
# tcp:127.0.0.(11+e):OB_PORT, each with [proxy] registrar = tcp:127.0.0.10:
# OB_PORT (one connection each, RFC 5923) and [proxy] trusted = the registrar,
# tcp_max_connections and [outbound] max_flows = its share + 1,000; one
# registrar-only process on 127.0.0.10 ([proxy] trusted = the edges,
# max_bindings = flows + 1,000, memory store, open). [sip] domains =
# 127.0.0.1 everywhere (the generator's AORs), control on OB_PORT+1 of each
# address. One generator per edge (ob_flows -d EDGE -b FIRST) holds that
# edge's share of the flows and of the warm-up, from its own source addresses;
# the generators are driven together (open and ping rates divided among them).
# Each flow's REGISTER crosses its edge (Path with the flow token and ;ob) to
# the registrar. Checked and printed after opening: the registrar's
# store_bindings and its bindings with reg-id and a ;ob Path (ctl
# registrations --json), the edges' flow-table entries and those with an
# owner (ctl flows --json); after the ping phase, the CRLF keepalives the
# edges counted beside the pongs the generators got. Memory per flow:
# RssAnon growth summed over the edges, the registrar's, and both together;
# CPU per keepalive: the edges' run time summed (the registrar's printed).
# The co-located mode is unchanged.
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
#   OB_SHAPE           colo (one process) or split (edges + registrar) (colo)
#   OB_EDGES           split: edge-only processes                 (6)
#   OB_LOCK            a file to flock around each CPU phase (idle + ping),
#                      e.g. a shared benchmark lock; empty = none  ()
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
SHAPE=${OB_SHAPE:-colo}
EDGES=${OB_EDGES:-6}
LOCK=${OB_LOCK:-}
case $SHAPE in
colo) ;;
split) [ "$EDGES" -ge 1 ] 2>/dev/null || {
	echo "OB_EDGES is a count of edges" >&2
	exit 2
} ;;
*)
	echo "OB_SHAPE is colo or split" >&2
	exit 2
	;;
esac
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

# the server and the generator each hold every connection, plus their own;
# split: each edge and its generator hold their share
held=$((FLOWS + WARM))
[ "$SHAPE" = split ] && held=$(((FLOWS + WARM + EDGES - 1) / EDGES))
need=$((held + 200))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	echo "bench: $held flows in one process need a file limit of at least $need;" >&2
	echo "       the hard limit here is $hard (raise it as root: ulimit -Hn $need)," >&2
	echo "       or set OB_FLOWS lower, or OB_SHAPE=split with more OB_EDGES" >&2
	exit 2
fi
ulimit -n "$need" 2>/dev/null || ulimit -n "$hard"

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

pinhole_key_section() { # KEY: the section of this binary's config key, if it has it
	"$PINHOLE" serve --help-config 2>/dev/null | awk -v k="$1" '
		/^\[/ { sec = substr($1, 2, length($1) - 2) } $1 == k && !f { print sec; f = 1 } END { exit !f }'
}

# ---- OB_SHAPE=split: EDGES edge-only processes in front of one registrar ----
# Edge e (0-based) listens on tcp:127.0.0.(11+e):PORT, control PORT+1 on the
# same address; the registrar on tcp:127.0.0.10:PORT, control PORT+1. One
# generator per edge, each holding its share of the flows from its own source
# addresses (ob_flows -b), its flows numbered apart from the others'.
REG_ADDR=127.0.0.10
edge_addr() { echo "127.0.0.$((11 + $1))"; }
lock_on() { [ -n "$LOCK" ] && { exec {LOCKFD}>"$LOCK" && flock "$LOCKFD"; }; return 0; }
lock_off() { [ -n "$LOCK" ] && [ -n "${LOCKFD:-}" ] && exec {LOCKFD}>&-; return 0; }
wait_tcp() { # ADDR PORT: until something listens there (5 s)
	for ((w = 0; w < 50; w++)); do
		ss -Hltn "src $1 and sport = :$2" | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

split_confs() {
	local trusted='' e
	for ((e = 0; e < EDGES; e++)); do trusted="$trusted${trusted:+, }$(edge_addr $e)"; done
	cat >"$OUT/registrar.conf" <<CONF
[sip]
listen = tcp:$REG_ADDR:$PORT
workers = $WORKERS
domains = 127.0.0.1
[store]
path =
[registrar]
open = yes
max_bindings = $((FLOWS + WARM + 1000))
[proxy]
trusted = $trusted
[control]
listen = $REG_ADDR:$((PORT + 1))
[log]
level = warn
CONF
	for ((e = 0; e < EDGES; e++)); do
		cat >"$OUT/edge-$e.conf" <<CONF
[sip]
listen = tcp:$(edge_addr $e):$PORT
workers = $WORKERS
domains = 127.0.0.1
tcp_max_connections = $((held + 1000))
tcp_max_connections_per_address = $PER_SOURCE
[proxy]
registrar = tcp:$REG_ADDR:$PORT
trusted = $REG_ADDR
[outbound]
max_flows = $((held + 1000))
[control]
listen = $(edge_addr $e):$((PORT + 1))
[log]
level = warn
CONF
	done
}

EPIDS=() GPIDS=() GIN=() GOUT=() W=() N=()
RPID=
split_stop() {
	local e
	for ((e = 0; e < ${#GPIDS[@]}; e++)); do
		{ echo quit >&"${GIN[e]}"; } 2>/dev/null
	done
	[ ${#GPIDS[@]} -gt 0 ] && sleep 1
	for ((e = 0; e < ${#GPIDS[@]}; e++)); do
		kill "${GPIDS[e]}" 2>/dev/null
		wait "${GPIDS[e]}" 2>/dev/null
		local fdi=${GIN[e]} fdo=${GOUT[e]}
		exec {fdi}>&- {fdo}<&-
	done
	for p in "${EPIDS[@]}" $RPID; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	EPIDS=() GPIDS=() GIN=() GOUT=()
	RPID=
	lock_off
}

gen_all() { # COMMAND: sent to every generator (@W, @N: its warm-up, measured flows), answers one a line
	local e line
	local c
	for ((e = 0; e < EDGES; e++)); do
		c=${1//@W/${W[e]}}
		echo "${c//@N/${N[e]}}" >&"${GIN[e]}"
	done
	for ((e = 0; e < EDGES; e++)); do
		if read -r -t 600 line <&"${GOUT[e]}"; then echo "$line"; else echo "error: no answer from generator $e"; fi
	done
}
sum_field() { # NAME LINES: the sum of NAME=.. over the lines
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
anon_of() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
sum_anon() { local s=0 p; for p in "$@"; do s=$((s + $(anon_of "$p"))); done; echo $s; }
sum_rss() { local s=0 p; for p in "$@"; do s=$((s + $(rss_of "$p"))); done; echo $s; }
ns_of() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
sum_ns() { local s=0 p; for p in "$@"; do s=$((s + $(ns_of "$p"))); done; echo $s; }
metric() { # FILE NAME: the value of an unlabelled metric line, or the sum of a labelled one
	awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2; f = 1 } END { printf "%.0f\n", f ? s : -1 }' "$1"
}

crlf_seen() { # CRLF keepalives the edges have counted, in all
	local e s=0 x
	for ((e = 0; e < EDGES; e++)); do
		x=$("$PINHOLE" ctl --control "$(edge_addr $e):$((PORT + 1))" metrics 2>/dev/null |
			awk '$1 == "pinhole_keepalives_seen_total{kind=\"crlf\"}" { print $2 }')
		s=$((s + ${x:-0}))
	done
	echo $s
}

split_run() { # RUN
	local run=$1 e a d share w0
	"$PINHOLE" serve --config "$OUT/registrar.conf" >"$OUT/registrar-$run.log" 2>&1 &
	RPID=$!
	wait_tcp $REG_ADDR "$PORT" || { log "the registrar did not start: $OUT/registrar-$run.log"; exit 1; }
	for ((e = 0; e < EDGES; e++)); do
		"$PINHOLE" serve --config "$OUT/edge-$e.conf" >"$OUT/edge-$e-$run.log" 2>&1 &
		EPIDS[e]=$!
	done
	for ((e = 0; e < EDGES; e++)); do
		wait_tcp "$(edge_addr $e)" "$PORT" || { log "edge $e did not start: $OUT/edge-$e-$run.log"; exit 1; }
	done
	# generators: flows [e*share, (e+1)*share) of FLOWS, warm-up flows after them
	share=$((FLOWS / EDGES)) w0=$((WARM / EDGES))
	for ((e = 0; e < EDGES; e++)); do
		local n=$share
		[ $e = $((EDGES - 1)) ] && n=$((FLOWS - share * (EDGES - 1)))
		W[e]=$w0
		[ $e = $((EDGES - 1)) ] && W[e]=$((WARM - w0 * (EDGES - 1)))
		N[e]=$n
		rm -f "$OUT/g$e.in" "$OUT/g$e.out"
		mkfifo "$OUT/g$e.in" "$OUT/g$e.out"
		# shellcheck disable=SC2086 # KIND_ARG is empty or one word
		"$GEN" -d "$(edge_addr $e)" -b $((e * (share + w0 + 100))) "$PORT" $((n + W[e])) "$PER_SOURCE" \
			"r$run" $KIND_ARG <"$OUT/g$e.in" >"$OUT/g$e.out" 2>"$OUT/gen-$e-$run.log" &
		GPIDS[e]=$!
		exec {a}>"$OUT/g$e.in" {d}<"$OUT/g$e.out"
		GIN[e]=$a GOUT[e]=$d
	done
	local rate_e ping_e
	rate_e=$(awk -v r="$OPEN_RATE" -v n="$EDGES" 'BEGIN { printf "%g", r / n }')
	ping_e=$(awk -v r="$PING_RATE" -v n="$EDGES" 'BEGIN { printf "%g", r / n }')
	# warm-up: every generator opens its warm-up flows (numbered first), pings each once
	a=$(gen_all "open @W $rate_e")
	log "run $run: warm-up: registered $(sum_field registered "$a") of $WARM"
	gen_all "ping @W 1" >/dev/null
	sleep "$SETTLE"
	local em0 rm0 er0 rr0 s0
	em0=$(sum_anon "${EPIDS[@]}") rm0=$(anon_of "$RPID") er0=$(sum_rss "${EPIDS[@]}") rr0=$(rss_of "$RPID")
	s0=$(awk '/^Slab:/ { print $2 }' /proc/meminfo)
	local o
	o=$(gen_all "open @N $rate_e")
	local reg
	reg=$(sum_field registered "$o")
	log "run $run: opened: registered $reg of $FLOWS, failed $(sum_field failed "$o"), Require: outbound in $(sum_field require_outbound "$o"); slowest generator $(sed -n 's/.* secs=\([^ ]*\).*/\1/p' <<<"$o" | sort -n | tail -1) s"
	[ "$reg" -lt "$FLOWS" ] && log "run $run: only $reg of $FLOWS flows registered; see $OUT/*-$run.log"
	sleep "$SETTLE"
	local em1 rm1 er1 rr1 s1
	em1=$(sum_anon "${EPIDS[@]}") rm1=$(anon_of "$RPID") er1=$(sum_rss "${EPIDS[@]}") rr1=$(rss_of "$RPID")
	s1=$(awk '/^Slab:/ { print $2 }' /proc/meminfo)
	# what the servers hold: the registrar's bindings, the edges' flow tables
	"$PINHOLE" ctl --control "$REG_ADDR:$((PORT + 1))" metrics >"$OUT/metrics-registrar-$run.txt" 2>&1
	local bindings eflows=0 ebound=0 x
	bindings=$(metric "$OUT/metrics-registrar-$run.txt" pinhole_store_bindings)
	for ((e = 0; e < EDGES; e++)); do
		"$PINHOLE" ctl --control "$(edge_addr $e):$((PORT + 1))" metrics >"$OUT/metrics-edge-$e-$run.txt" 2>&1
		x=$(metric "$OUT/metrics-edge-$e-$run.txt" pinhole_flows)
		eflows=$((eflows + x))
		# flows with an owner (a binding): the JSON of ctl flows, one object per flow
		x=$("$PINHOLE" ctl --control "$(edge_addr $e):$((PORT + 1))" --json flows 2>/dev/null |
			grep -o '"reg_id":[1-9][0-9]*,[^}]*"state":"alive"' | wc -l)
		ebound=$((ebound + x))
	done
	# the registrar's outbound bindings, each with the edge's Path (;ob)
	local rpath
	rpath=$("$PINHOLE" ctl --control "$REG_ADDR:$((PORT + 1))" --json registrations 2>/dev/null |
		grep -o '"reg_id":1,"path":"[^"]*;ob[^"]*"' | wc -l)
	log "run $run: registrar store_bindings=$bindings, with reg-id and a Path with ;ob (ctl registrations --json)=$rpath; edges: flows=$eflows, with an owner (ctl flows --json)=$ebound"
	# CPU: under the benchmark lock when OB_LOCK names one
	lock_on
	local c0 c1 c2 r0 r1 r2 i p k0 k1
	k0=$(crlf_seen)
	c0=$(sum_ns "${EPIDS[@]}") r0=$(ns_of "$RPID")
	i=$(gen_all "idle $PING_SECS")
	c1=$(sum_ns "${EPIDS[@]}") r1=$(ns_of "$RPID")
	p=$(gen_all "ping $ping_e $PING_SECS")
	c2=$(sum_ns "${EPIDS[@]}") r2=$(ns_of "$RPID")
	k1=$(crlf_seen)
	lock_off
	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	sleep "$SETTLE"
	local em2 rm2 cnt seen=$((k1 - k0))
	em2=$(sum_anon "${EPIDS[@]}") rm2=$(anon_of "$RPID")
	cnt=$(gen_all count)
	for ((e = 0; e < EDGES; e++)); do
		"$PINHOLE" ctl --control "$(edge_addr $e):$((PORT + 1))" metrics >"$OUT/metrics-edge-$e-$run-end.txt" 2>&1
	done
	"$PINHOLE" ctl --control "$REG_ADDR:$((PORT + 1))" metrics >"$OUT/metrics-registrar-$run-end.txt" 2>&1
	log "run $run: idle: closed $(sum_field closed "$i"); ping: sent $(sum_field sent "$p"), pongs $(sum_field pongs "$p"); the edges counted $seen CRLF keepalives in that phase; still open $(sum_field open "$cnt")"
	echo "run=$run flows=$FLOWS edges=$EDGES registered=$reg require_outbound=$(sum_field require_outbound "$o") bindings=$bindings rpath=$rpath eflows=$eflows ebound=$ebound eanon0=$em0 eanon1=$em1 eanon2=$em2 ranon0=$rm0 ranon1=$rm1 ranon2=$rm2 erss0=$er0 erss1=$er1 rrss0=$rr0 rrss1=$rr1 slab0=$s0 slab1=$s1 idle_ns=$((c1 - c0)) ping_ns=$((c2 - c1)) ridle_ns=$((r1 - r0)) rping_ns=$((r2 - r1)) sent=$(sum_field sent "$p") pongs=$(sum_field pongs "$p") seen=$seen closed=$(sum_field closed "$cnt") open=$(sum_field open "$cnt") load=${load// /,}" >>"$OUT/runs.txt"
	split_stop
}

split_report() {
	awk '
	function median(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		n++; f = v["flows"]
		ed[n] = (v["eanon1"] - v["eanon0"]) * 1024 / f
		rg[n] = (v["ranon1"] - v["ranon0"]) * 1024 / f
		tot[n] = ed[n] + rg[n]
		eda[n] = (v["eanon2"] - v["eanon0"]) * 1024 / f
		rga[n] = (v["ranon2"] - v["ranon0"]) * 1024 / f
		slab[n] = (v["slab1"] - v["slab0"]) * 1024 / f
		net[n] = v["pongs"] ? (v["ping_ns"] - v["idle_ns"]) / v["pongs"] : 0
		gross[n] = v["pongs"] ? v["ping_ns"] / v["pongs"] : 0
		rnet[n] = v["pongs"] ? (v["rping_ns"] - v["ridle_ns"]) / v["pongs"] : 0
		idle[n] = v["idle_ns"] / 1e9
		printf "run %d: %d edges; %d of %d flows registered (Require: outbound in %d); registrar store_bindings %d (%d with a Path with ;ob); edge flow tables %d entries, %d with an owner; anonymous memory per flow: edges (sum) +%.0f B, registrar +%.0f B, together +%.0f B (after the keepalives: %.0f + %.0f B); RSS edges +%.0f B, registrar +%.0f B; kernel slab +%.0f B per flow (machine-wide); edges CPU %.3f s idle, %.3f s with %d keepalives (%d pongs; the edges counted %d): %.2f us per keepalive net of idle, %.2f us gross; registrar CPU %.3f s idle, %.3f s in the ping phase; %s flows still open, %s closed; load %s\n",
			v["run"], v["edges"], v["registered"], f, v["require_outbound"], v["bindings"], v["rpath"], v["eflows"], v["ebound"],
			ed[n], rg[n], tot[n], eda[n], rga[n], (v["erss1"] - v["erss0"]) * 1024 / f, (v["rrss1"] - v["rrss0"]) * 1024 / f,
			slab[n], v["idle_ns"] / 1e9, v["ping_ns"] / 1e9, v["sent"], v["pongs"], v["seen"], net[n] / 1000, gross[n] / 1000,
			v["ridle_ns"] / 1e9, v["rping_ns"] / 1e9, v["open"], v["closed"], v["load"]
	}
	END {
		if (!n) exit
		printf "\nmedians of %d run(s), %d flows over %d edges and one registrar: pinhole anonymous memory per idle registered flow: edges %.0f B + registrar %.0f B = %.0f B (target 4096); after the keepalive phase %.0f + %.0f B; kernel slab %.0f B per flow; edges CPU per keepalive %.2f us net of the idle phase (%.2f us gross); edges CPU with the flows idle %.3f s per %s s\n",
			n, v["flows"], v["edges"], median(ed, n), median(rg, n), median(tot, n), median(eda, n), median(rga, n),
			median(slab, n), median(net, n) / 1000, median(gross, n) / 1000, median(idle, n), "'"$PING_SECS"'"
	}' "$OUT/runs.txt" | tee "$OUT/report.txt"
	log "files in $OUT"
}

split_main() {
	split_confs
	trap split_stop EXIT
	trap 'exit 130' INT TERM
	{
		echo "date: $(date -Is)"
		echo "host: $(uname -srm), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), memory $(free -m | awk '/^Mem:/ { print $2 " MiB, " $7 " available" }')"
		echo "pinhole: $PINHOLE, built $(date -r "$PINHOLE" -Is), source $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
		echo "shape: split, $EDGES edge-only processes on $(edge_addr 0)..$(edge_addr $((EDGES - 1))):$PORT, one registrar on $REG_ADDR:$PORT ($WORKERS workers each)"
		echo "kind: $KIND; flows: $FLOWS (+ $WARM warm-up) spread over the edges, $PER_SOURCE per source, opened at $OPEN_RATE/s in all; keepalives $PING_RATE/s in all for $PING_SECS s; file limit $(ulimit -n) per process"
	} | tee "$OUT/env.txt" >&2
	: >"$OUT/runs.txt"
	for ((run = 1; run <= REPEAT; run++)); do
		split_run "$run"
		sleep 2
	done
	split_report
}

if [ "$SHAPE" = split ]; then
	split_main
	exit
fi

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
	lock_off
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
	lock_on
	c0=$(run_ns)
	i=$(gen "idle $PING_SECS")
	c1=$(run_ns)
	p=$(gen "ping $PING_RATE $PING_SECS")
	c2=$(run_ns)
	lock_off
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
