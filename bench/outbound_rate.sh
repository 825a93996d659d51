#!/usr/bin/env bash
# RFC 5626 outbound REGISTERs over UDP flows: pinhole against Kamailio 5.6
# with outbound + path + stun + registrar, in one invocation. Not part of
# ctest; timing decides nothing.
#
#   bench/outbound_rate.sh                 the ramp, both servers, then the table
#   bench/outbound_rate.sh report DIR      the table again from a run's files
#
# The generator is bench/sip/ob_reg.c (built here with cc), not sipp: sipp
# with a socket per call (-t un, a flow per REGISTER) offered at most about
# 12,000 REGISTERs/s here, below what either server sustains. ob_reg sends
# each flow's datagrams from its own (address, port) but through
# OBR_PER_SOURCE sockets (IP_PKTINFO picks the address), a batch per
# sendmmsg, and prints its own CPU time: the report gives it per REGISTER
# next to the servers', since it shares the machine with them. OBR_PIN=1
# pins the generator to CPU 0 and the servers to the others (taskset), so
# that the generator's own work does not come out of a server's share.
#
# OBR_FLOWS UDP flows (OBR_PER_SOURCE per source address, 127.2.1.1 and up)
# are OBR_FLOWS phones, each with its own AOR, +sip.instance and reg-id 1
# over its own flow. First every phone registers once (unrecorded), then
# OBR_WARMUP_SECS of unrecorded load at the first rate, then each step sends
# refreshes at RATE per second for OBR_STEP_SECS, the phones in turn (same
# Call-ID, CSeq up by one: a refresh of the binding over the same flow).
# OBR_USERS=0 instead makes every REGISTER a new AOR (a new binding each time,
# over the flows in turn). Nothing is retransmitted: a REGISTER without a 200
# (carrying Require: outbound, else it does not count) is lost.
#
# Each step records the REGISTERs sent, the 200s with Require: outbound, and
# the server's CPU: the run time of every thread of every server process
# (/proc/PID/task/*/schedstat, ns) over the step, divided by the 200s, and
# its user/system split (utime/stime ticks of the same threads). A step
# is sustained when at least 99.9 % of what was sent got its 200 and the
# generator sent at least 95 % of the offered rate. The ramp of a server ends
# after two steps in a row (medians of OBR_REPEAT runs) not sustained.
#
# Both servers run at once, each on its own ports (Kamailio 10 above
# pinhole), idle but for the run in progress; each run of each step goes to
# them in turn, the order rotating with the run number. On a machine shared
# with other work the load drifts over minutes, and ramps run one after the
# other compared two different machines. The report adds the ratio run by
# run (each pinhole run against the Kamailio run of the same step and
# number, next to it in time) and its median.
#
# Servers, both in memory (bindings lost on restart, on both sides):
# - pinhole: `pinhole serve`, UDP on 127.0.0.1, [sip] workers = 2, edge and
#   registrar in one process (the registrar is the first hop: no Path, the
#   200 carries Require: outbound and Flow-Timer), memory store,
#   [registrar] open = yes, max_bindings 100,000,000, [keepalive] interval = 0;
#   with OBR_USERS=0 also max_flows_per_source = 0 (every binding adds to its
#   source's count; Kamailio has no such bound), otherwise its default.
# - Kamailio 5.6: bench/kamailio/kamailio.cfg with WITH_OUTBOUND, 2 UDP
#   children, -x tlsf -m 4096 -M 32: outbound (flow tokens), path, stun
#   (keepalives on the SIP port), registrar with outbound_mode 1, use_path 1,
#   path_mode 1, flow_timer 25; usrloc db_mode 0; nathelper's
#   fix_nated_register on every REGISTER (the binding keyed to its source).
#   Co-located like pinhole: save() sees one Via, so it is the first hop and
#   answers Require: outbound and Flow-Timer; the path module is loaded, as
#   in an edge, but finds no Path to store.
#
# OBR_SHAPE=split: edge and registrar as two processes each, on one host (the
# REGISTER crosses the edge, gets a Path with the flow token and ;ob, and is
# stored with it; the CPU is both processes'):
# - pinhole: an edge-only `pinhole serve` ([proxy] registrar = the other,
#   2 workers, no store) and a registrar-only one ([proxy] trusted =
#   127.0.0.1, whose Paths it honours; max_flows_per_source = 0, as every
#   binding arrives from the edge's address; 2 workers, memory store).
# - Kamailio: bench/kamailio/edge.cfg (outbound + path + stun + tm: add_path()
#   and t_relay to the registrar) and kamailio.cfg with WITH_OUTBOUND and
#   SPLIT (save() with use_path; no fix_nated_register), 2 children each.
#
# Environment (all optional):
#   PINHOLE           pinhole binary                    (build/pinhole)
#   KAMAILIO          kamailio binary                   (kamailio)
#   OBR_SERVERS       which servers                      ("pinhole kamailio")
#   OBR_RATES         REGISTER/s ramp                    ("10000 20000 30000 40000 50000 60000")
#   OBR_STEP_SECS     seconds per step                   (10)
#   OBR_REPEAT        runs per step (medians)            (3)
#   OBR_WARMUP_SECS   unrecorded load before the ramp     (3)
#   OBR_FLOWS         phones, one UDP flow each          (10000)
#   OBR_PER_SOURCE    flows per source address           (10)
#   OBR_USERS         AORs (= OBR_FLOWS: refreshes; 0: a new AOR per REGISTER)
#   OBR_SHAPE         colo (one process) or split (edge + registrar)  (colo)
#   OBR_PIN           1: generator on CPU 0, servers on the rest      (0)
#   OBR_PORT          server UDP port                    (15360; control +1;
#                     split: the registrar +2, its control +3; the second
#                     server the same 10 above)
#   BENCH_OUT         where logs go                      (a new /tmp/pinhole-obrate.XXXXXX)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
KAMAILIO=${KAMAILIO:-kamailio}
SERVERS=${OBR_SERVERS:-pinhole kamailio}
RATES=${OBR_RATES:-10000 20000 30000 40000 50000 60000 80000 100000}
STEP_SECS=${OBR_STEP_SECS:-10}
REPEAT=${OBR_REPEAT:-3}
WARMUP=${OBR_WARMUP_SECS:-3}
FLOWS=${OBR_FLOWS:-10000}
PER_SOURCE=${OBR_PER_SOURCE:-10}
USERS=${OBR_USERS:-$FLOWS}
PORT=${OBR_PORT:-15360}
RPORT=$((PORT + 2)) # the registrar behind the edge (split)
CTL=127.0.0.1:$((PORT + 1))
SHAPE=${OBR_SHAPE:-colo}
GEN_CPU='' SRV_CPU=''
if [ "${OBR_PIN:-0}" = 1 ]; then
	ncpu=$(nproc)
	if [ "$ncpu" -lt 2 ]; then
		echo "OBR_PIN=1 needs two CPUs" >&2
		exit 2
	fi
	GEN_CPU="taskset -c 0" SRV_CPU="taskset -c 1-$((ncpu - 1))"
fi
case $SHAPE in
colo | split) ;;
*)
	echo "OBR_SHAPE is colo or split" >&2
	exit 2
	;;
esac

report() { # DIR: the table from DIR/*.steps
	local dir=$1
	cat "$dir/env.txt"
	awk -v secs="$(sed -n 's/^step: \([0-9]*\)s.*/\1/p' "$dir/env.txt")" '
	function med(s,   n, a, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	# lines: server rate rep sent errors ok ok_ob other cpu_ns
	{
		k = $1 SUBSEP $2; rates[$2] = 1; srv[$1] = 1
		ach[k] = ach[k] " " $7 / secs
		loss[k] = loss[k] " " ($4 ? 100 * ($4 - $7) / $4 : 100)
		us[k] = us[k] " " ($7 ? $9 / $7 / 1000 : 0)
		cpu[k] = cpu[k] " " $9 / 1e9 / secs * 100
		sent[k] = sent[k] " " $4 / secs
	}
	END {
		n = 0; for (r in rates) list[++n] = r + 0
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (list[j] < list[i]) { t = list[i]; list[i] = list[j]; list[j] = t }
		A = "pinhole"; B = "kamailio"
		printf "\noutbound REGISTER/s offered; achieved = 200s with Require: outbound per second; loss%% = sent\n"
		printf "without that 200; us/op = server CPU (all threads, user+sys) per 200; cpu%% = of one core.\n"
		printf "Medians of the runs of each step.\n\n"
		printf "%8s | %-34s | %-34s | %s\n", "", A, B, "ratio A/B"
		printf "%8s | %9s %7s %8s %6s | %9s %7s %8s %6s | %6s %6s\n", "offered", "achieved", "loss%", "us/op", "cpu%", "achieved", "loss%", "us/op", "cpu%", "rate", "us/op"
		for (i = 1; i <= n; i++) {
			r = list[i]
			line = sprintf("%8d", r)
			for (s = 1; s <= 2; s++) {
				x = (s == 1 ? A : B); k = x SUBSEP r
				if (!(k in ach)) { line = line sprintf(" | %9s %7s %8s %6s ", "-", "-", "-", "-"); continue }
				a[s] = med(ach[k]); l[s] = med(loss[k]); u[s] = med(us[k]); c = med(cpu[k]); se = med(sent[k])
				ok[s] = l[s] < 0.1 && se >= 0.95 * r
				line = line sprintf(" | %9.0f %7.3f %8.2f %6.0f%s", a[s], l[s], u[s], c, ok[s] ? " " : "*")
				if (ok[s] && r > best[s]) best[s] = r
				has[s] = 1
			}
			if ((A SUBSEP r) in ach && (B SUBSEP r) in ach) {
				line = line sprintf("| %6.2f %6.2f", a[2] ? a[1] / a[2] : 0, u[2] ? u[1] / u[2] : 0)
				if (ok[1] && ok[2]) { both = r; ub[1] = u[1]; ub[2] = u[2] }
			}
			print line
			delete a; delete u; delete ok
		}
		printf "\n* = not sustained (loss >= 0.1 %% or the generator sent < 95 %% of offered)\n"
		printf "highest sustained: %s %d/s, %s %d/s", A, best[1], B, best[2]
		if (best[2]) printf ", ratio %.2f", best[1] / best[2]
		printf "\n"
		if (both) printf "CPU per REGISTER at %d/s (highest rate both sustained): %s %.2f us, %s %.2f us, ratio %.2f\n", both, A, ub[1], B, ub[2], ub[1] / ub[2]
	}' "$dir"/*.steps
	# run by run: each run of A against B's run of the same step and number
	# (interleaved, so next to it in time); the user/system split of the CPU
	awk '
	function med(s,   n, a, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{
		k = $1 SUBSEP $2 SUBSEP $3; rates[$2] = 1
		us[k] = $7 ? $9 / $7 / 1000 : 0; ok[k] = $4 && ($4 - $7) / $4 < 0.001
		if (NF >= 11 && $10 + $11 > 0) { u = us[k] * $10 / ($10 + $11); su[$1 SUBSEP $2] = su[$1 SUBSEP $2] " " u; ss[$1 SUBSEP $2] = ss[$1 SUBSEP $2] " " us[k] - u }
		if (NF >= 12 && $4) gen[$1 SUBSEP $2] = gen[$1 SUBSEP $2] " " $12 / $4
		reps[$2] = reps[$2] > $3 ? reps[$2] : $3
	}
	END {
		A = "pinhole"; B = "kamailio"
		n = 0; for (r in rates) list[++n] = r + 0
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (list[j] < list[i]) { t = list[i]; list[i] = list[j]; list[j] = t }
		printf "\nRun by run (interleaved): us/op of %s / us/op of %s for the same run, * = a run\n", A, B
		printf "that was not sustained (either side); user / system us/op, medians; gen = the\n"
		printf "generator'"'"'s own CPU per REGISTER it sent (user+sys) in the runs against each.\n\n"
		printf "%8s | %-30s %6s | %-15s | %-15s | %s\n", "offered", "ratio per run", "median", A " user/sys", B " user/sys", "gen us/op " A "/" B
		for (i = 1; i <= n; i++) {
			r = list[i]; line = ""; all = ""
			for (p = 1; p <= reps[r]; p++) {
				a = A SUBSEP r SUBSEP p; b = B SUBSEP r SUBSEP p
				if (!(a in us) || !(b in us) || !us[b]) continue
				line = line sprintf(" %.2f%s", us[a] / us[b], ok[a] && ok[b] ? "" : "*")
				all = all " " us[a] / us[b]
			}
			sa = (A SUBSEP r) in su ? sprintf("%.1f / %.1f", med(su[A SUBSEP r]), med(ss[A SUBSEP r])) : "-"
			sb = (B SUBSEP r) in su ? sprintf("%.1f / %.1f", med(su[B SUBSEP r]), med(ss[B SUBSEP r])) : "-"
			ga = (A SUBSEP r) in gen ? sprintf("%.1f", med(gen[A SUBSEP r])) : "-"
			gb = (B SUBSEP r) in gen ? sprintf("%.1f", med(gen[B SUBSEP r])) : "-"
			printf "%8d | %-30s %6s | %-15s | %-15s | %s / %s\n", r, line, all != "" ? sprintf("%.2f", med(all)) : "-", sa, sb, ga, gb
		}
	}' "$dir"/*.steps
}

if [ "${1:-}" = report ]; then
	report "$2"
	exit 0
fi

OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-obrate.XXXXXX)}
mkdir -p "$OUT"
GEN=$OUT/ob_reg
cc -std=c17 -O2 -Wall -Wextra -o "$GEN" "$HERE/sip/ob_reg.c" || exit 1
ulimit -n "$(ulimit -Hn)"

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
pinhole_key_section() { # KEY: the section of this binary's config key, if it has it
	"$PINHOLE" serve --help-config 2>/dev/null | awk -v k="$1" '
		/^\[/ { sec = substr($1, 2, length($1) - 2) } $1 == k && !f { print sec; f = 1 } END { exit !f }'
}

SRVS=     # the processes we started (masters), stopped by PID
PIDS=     # those and their children (Kamailio's), for the CPU count
stop_server() {
	local p i
	for p in $SRVS; do kill "$p" 2>/dev/null; done
	for p in $SRVS; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for p in $PIDS; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
	SRVS='' PIDS=''
}
trap stop_server EXIT
trap 'exit 130' INT TERM

alive() { # every process we started is still there
	local p
	for p in $SRVS; do kill -0 "$p" 2>/dev/null || return 1; done
	[ -n "$SRVS" ]
}

wait_udp() { # PORT: until something listens there (5 s at most)
	local i
	for ((i = 0; i < 50; i++)); do
		ss -Hlun "sport = :$1" | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

pinhole_registrar_conf() { # PORT CONTROL-PORT [split]
	cat <<CONF
[sip]
listen = udp:127.0.0.1:$1
workers = 2
[store]
path =
[registrar]
open = yes
max_bindings = 100000000
[keepalive]
interval = 0
[control]
listen = 127.0.0.1:$2
[log]
level = warn
CONF
	local sec
	# split: every binding comes through the edge, from one address; with
	# OBR_USERS=0 every binding adds to its source's count. Kamailio has no
	# such bound.
	if { [ "${3:-}" = split ] || [ "$USERS" = 0 ]; } && sec=$(pinhole_key_section max_flows_per_source); then
		printf '[%s]\nmax_flows_per_source = 0\n' "$sec"
	fi
	if [ "$USERS" = 0 ] && sec=$(pinhole_key_section max_flows); then
		printf '[%s]\nmax_flows = 100000000\n' "$sec"
	fi
	# split: the edge's Path is honoured only from a trusted hop
	[ "${3:-}" = split ] && printf '[proxy]\ntrusted = 127.0.0.1\n'
	return 0
}

start_server() { # NAME DIR
	local name=$1 dir=$2 p
	SRVS=
	case $name-$SHAPE in
	pinhole-colo)
		pinhole_registrar_conf "$PORT" $((PORT + 1)) >"$dir/pinhole.conf"
		$SRV_CPU "$PINHOLE" serve --config "$dir/pinhole.conf" >"$dir/server.log" 2>&1 &
		SRVS=$!
		;;
	pinhole-split)
		pinhole_registrar_conf "$RPORT" $((PORT + 3)) split >"$dir/registrar.conf"
		cat >"$dir/edge.conf" <<CONF
[sip]
listen = udp:127.0.0.1:$PORT
workers = 2
[proxy]
registrar = udp:127.0.0.1:$RPORT
[control]
listen = $CTL
[log]
level = warn
CONF
		$SRV_CPU "$PINHOLE" serve --config "$dir/registrar.conf" >"$dir/registrar.log" 2>&1 &
		SRVS=$!
		wait_udp "$RPORT"
		$SRV_CPU "$PINHOLE" serve --config "$dir/edge.conf" >"$dir/server.log" 2>&1 &
		SRVS="$SRVS $!"
		;;
	kamailio-colo)
		mkdir -p "$dir/run"
		$SRV_CPU "$KAMAILIO" -f "$HERE/kamailio/kamailio.cfg" -A WITH_OUTBOUND -l "udp:127.0.0.1:$PORT" \
			-x tlsf -m 4096 -M 32 -DD -E -Y "$dir/run" >"$dir/server.log" 2>&1 &
		SRVS=$!
		;;
	kamailio-split)
		mkdir -p "$dir/run" "$dir/run-edge"
		$SRV_CPU "$KAMAILIO" -f "$HERE/kamailio/kamailio.cfg" -A WITH_OUTBOUND -A SPLIT -l "udp:127.0.0.1:$RPORT" \
			-x tlsf -m 4096 -M 32 -DD -E -Y "$dir/run" >"$dir/registrar.log" 2>&1 &
		SRVS=$!
		wait_udp "$RPORT"
		$SRV_CPU "$KAMAILIO" -f "$HERE/kamailio/edge.cfg" -A "REGISTRAR=\"sip:127.0.0.1:$RPORT\"" \
			-l "udp:127.0.0.1:$PORT" -x tlsf -m 4096 -M 32 -DD -E -Y "$dir/run-edge" \
			>"$dir/server.log" 2>&1 &
		SRVS="$SRVS $!"
		;;
	esac
	wait_udp "$PORT"
	sleep 0.5
	alive || {
		log "$name did not start: $dir/*.log"
		stop_server
		return 1
	}
	PIDS=
	for p in $SRVS; do PIDS="$PIDS $p $(pgrep -P "$p" | tr '\n' ' ')"; done
	return 0
}

cpu_ns() { # PIDS: run time of every thread of every server process
	local p
	for p in $1; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

cpu_ticks() { # PIDS: "user system" clock ticks of every thread (the split of cpu_ns)
	local p
	for p in $1; do cat /proc/"$p"/task/*/stat 2>/dev/null; done |
		awk '{ sub(/^.*\) /, ""); u += $12; s += $13 } END { printf "%d %d\n", u, s }'
}

{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "pinhole: $PINHOLE, built $(date -r "$PINHOLE" -Is), source $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
	echo "kamailio: $("$KAMAILIO" -v 2>/dev/null | head -1)"
	echo "step: ${STEP_SECS}s x $REPEAT; ramp: $RATES; flows $FLOWS ($PER_SOURCE per source), users $USERS (0: a new AOR each); shape $SHAPE; pinned: ${OBR_PIN:-0}"
} | tee "$OUT/env.txt" >&2

# Every server is started first, each on its own ports (the next one 10
# above), and then each run of each step goes to the servers in turn, the
# order rotating with the run: the load that other work puts on the
# machine drifts over minutes, and two ramps one after the other saw
# different machines. Ratios are also taken run by run (each pinhole run
# against the Kamailio run next to it).
BASE_PORT=$PORT
declare -A PORT_OF SRVS_OF PIDS_OF N_OF BAD_OF
off=0
for s in $SERVERS; do
	PORT_OF[$s]=$((BASE_PORT + off))
	off=$((off + 10))
done
use_server() { # NAME: the globals start_server and the steps use
	PORT=${PORT_OF[$1]}
	RPORT=$((PORT + 2))
	CTL=127.0.0.1:$((PORT + 1))
	SRVS=${SRVS_OF[$1]:-}
	PIDS=${PIDS_OF[$1]:-}
}
stop_all() {
	local s
	for s in "${!PORT_OF[@]}"; do
		use_server "$s"
		stop_server
		SRVS_OF[$s]='' PIDS_OF[$s]=''
	done
}
trap stop_all EXIT

UP=
for s in $SERVERS; do
	dir=$OUT/$s
	mkdir -p "$dir"
	: >"$OUT/$s.steps"
	use_server "$s"
	if ss -Hlun "sport = :$PORT" | grep -q . || ss -Hlun "sport = :$RPORT" | grep -q .; then
		log "udp port $PORT or $RPORT is taken by something else; set OBR_PORT"
		continue
	fi
	start_server "$s" "$dir" || continue
	SRVS_OF[$s]=$SRVS PIDS_OF[$s]=$PIDS
	N=0 # REGISTERs so far (the next one's number: refreshes go on in turn)
	# every phone registers once, then the warm-up
	# (again while answers are missing: a split edge answers 503 until it
	# has seen its registrar answer)
	for ((try = 0; try < 5 && USERS != 0; try++)); do
		$GEN_CPU "$GEN" "$PORT" 5000 $(((FLOWS + 4999) / 5000)) "$FLOWS" "$PER_SOURCE" "$USERS" obr "$N" >"$dir/register-all.csv"
		N=$((N + (FLOWS + 4999) / 5000 * 5000))
		IFS=';' read -r _ _ _ _ ok_ob _ < <(tail -1 "$dir/register-all.csv")
		[ "${ok_ob:-0}" -ge "$FLOWS" ] && break
		sleep 1
	done
	first=${RATES%% *}
	$GEN_CPU "$GEN" "$PORT" "$first" "$WARMUP" "$FLOWS" "$PER_SOURCE" "$USERS" obr "$N" >"$dir/warmup.csv"
	N=$((N + first * WARMUP))
	N_OF[$s]=$N BAD_OF[$s]=0
	UP="$UP $s"
	log "$s up on port $PORT (pids $PIDS); $(tail -1 "$dir/register-all.csv" 2>/dev/null) $(tail -1 "$dir/warmup.csv")"
done

for rate in $RATES; do
	[ -n "${UP// /}" ] || break
	for ((rep = 1; rep <= REPEAT; rep++)); do
		# the order rotates with the run
		set -- $UP
		for ((k = 1; k < rep; k++)); do set -- "${@:2}" "$1"; done
		for s in "$@"; do
			use_server "$s"
			dir=$OUT/$s
			alive || {
				log "$s is gone before $rate/s: $dir/server.log"
				UP=${UP/ $s/}
				continue
			}
			N=${N_OF[$s]}
			c0=$(cpu_ns "$PIDS")
			read -r u0 k0 < <(cpu_ticks "$PIDS")
			$GEN_CPU "$GEN" "$PORT" "$rate" "$STEP_SECS" "$FLOWS" "$PER_SOURCE" "$USERS" obr "$N" >"$dir/r$rate-$rep.csv"
			c1=$(cpu_ns "$PIDS")
			read -r u1 k1 < <(cpu_ticks "$PIDS")
			N_OF[$s]=$((N + rate * STEP_SECS))
			IFS=';' read -r _ sent err ok ok_ob other < <(tail -1 "$dir/r$rate-$rep.csv")
			IFS=';' read -r _ gu gs < <(grep '^cpu;' "$dir/r$rate-$rep.csv")
			echo "$s $rate $rep $sent $err $ok $ok_ob $other $((c1 - c0)) $((u1 - u0)) $((k1 - k0)) $((${gu:-0} + ${gs:-0}))" >>"$OUT/$s.steps"
			log "$s $rate/s run $rep: sent $sent, 200 $ok (Require: outbound $ok_ob), other $other, $(awk -v c=$((c1 - c0)) -v o="$ok_ob" 'BEGIN { printf "%.2f", o ? c / o / 1000 : 0 }') us per 200 (user:system ticks $((u1 - u0)):$((k1 - k0))), generator $(awk -v g=$((${gu:-0} + ${gs:-0})) -v o="$sent" 'BEGIN { printf "%.2f", o ? g / o : 0 }') us per REGISTER sent, load $(cut -d' ' -f1 /proc/loadavg)"
			sleep 1
		done
	done
	# sustained? the median run of this step; a server's ramp ends after two
	# steps in a row that were not
	for s in $UP; do
		if awk -v r="$rate" -v secs="$STEP_SECS" '$2 == r { l[++n] = $4 ? ($4 - $7) / $4 : 1; s[n] = $4 / secs }
			END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) { if (l[j] < l[i]) { t = l[i]; l[i] = l[j]; l[j] = t } if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t } }
				m = int((n + 1) / 2); exit !(l[m] < 0.001 && s[m] >= 0.95 * r) }' "$OUT/$s.steps"; then
			BAD_OF[$s]=0
		else
			BAD_OF[$s]=$((BAD_OF[$s] + 1))
			if [ "${BAD_OF[$s]}" -ge 2 ]; then
				log "$s: ramp ends at $rate/s"
				UP=${UP/ $s/}
			fi
		fi
	done
done
if [ -n "${SRVS_OF[pinhole]:-}" ]; then
	use_server pinhole
	"$PINHOLE" ctl --control "$CTL" metrics >"$OUT/pinhole/metrics.txt" 2>&1
	[ "$SHAPE" = split ] && "$PINHOLE" ctl --control "127.0.0.1:$((PORT + 3))" metrics >"$OUT/pinhole/metrics-registrar.txt" 2>&1
fi
stop_all
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
report "$OUT" | tee "$OUT/report.txt"
log "files in $OUT"
