#!/usr/bin/env bash
# The ua's own cost: CPU per call, per registration and per kept-alive flow,
# and memory per process. Not part of ctest; timing decides nothing.
#
#   sudo PINHOLE=build/pinhole bench/ua_load.sh
#
# A lab (tests/lab/lib.sh namespaces; no NAT: the NAT's cost is the kernel's,
# not the ua's): `pinhole serve` on 198.18.0.1 (UDP and TCP 5060, registrar
# open, relay, [echo] sized for the run), the uas on a host 198.18.0.50.
#   calls  UA_CALLS processes at once, each `ua call --no-register` to the
#          echo service for UA_CALL_SECS (G.711 20 ms both ways, RTCP every
#          5 s): CPU per call and per call-second; anonymous memory (RssAnon) sampled mid-call; how
#          many came out two-way
#   once   UA_REGS processes, each `ua register --once` over a UDP and a TCP
#          flow: register both (the registrar is open: no digest round) and
#          unregister them; the whole process, start-up included: CPU per run
#   flows  UA_REGS processes, each registering a UDP and a TCP flow with
#          `--keepalive UA_KA` (STUN on UDP, CRLF on TCP every 80-100 % of it),
#          held UA_FLOW_SECS, then SIGTERM (unregister): CPU per flow-minute,
#          minus the `once` run's cost
# CPU is the user + system time of each ua process, as its parent shell's
# `times` reports it for its waited-for child (ms resolution, the kernel's
# accounting). A `ua register`/`ua call` process holds at most 2 flows
# (UA_MAX_FLOWS) and one call at a time; concurrency there is processes.
#
# Session 9, `ua load` (one process, many flows and calls; its own summary
# gives CPU from getrusage, max RSS and the verdict counts):
#   load-echo   UA_CALLS echo calls of UA_CALL_SECS from one `ua load`, the same
#               job as `calls` above: CPU per call-second, one process against
#               UA_CALLS processes (the same-run ratio)
#   load-flows  UA_LOAD_FLOWS flows (AORs l1..lN, each its own UDP socket, from
#               UA_LOAD_SOURCES addresses added to the ua host), keepalive every
#               80-100 % of UA_KA, held UA_FLOW_SECS, unregistered: CPU per flow
#               for register + unregister (a run held 1 s) and per flow-minute of
#               keepalives (the difference), max RSS per flow
#   load-calls  for each C in UA_LOAD_CALLS: 2C flows in pairs, C calls placed
#               at C/4 per second, each UA_LOAD_SECS long (so C at once for most
#               of it), every call's RTP both ways checked: how many came out
#               two-way, loss and jitter percentiles, CPU per call-second per end
#               (both ends are in the process), RSS
# The server's per-source limits are off for these runs ([sip] rate_limit,
# [stun] rate, [outbound] max_flows_per_source, [relay] max_pairs_*): the
# load comes from a few addresses on purpose.
# UA_BENCH=procs runs only the process parts, UA_BENCH=load only the load ones.
set -u
LAB_DIR=$(cd "$(dirname "$0")/../tests/lab" && pwd)
# shellcheck source=../tests/lab/lib.sh
. "$LAB_DIR/lib.sh"
PINHOLE=${PINHOLE:-$(cd "$(dirname "$0")/.." && pwd)/build/pinhole}
UA_CALLS=${UA_CALLS:-10}
UA_CALL_SECS=${UA_CALL_SECS:-10}
UA_REGS=${UA_REGS:-10}
UA_KA=${UA_KA:-5}
UA_FLOW_SECS=${UA_FLOW_SECS:-30}
UA_BENCH=${UA_BENCH:-all}
UA_LOAD_FLOWS=${UA_LOAD_FLOWS:-10000}
UA_LOAD_SOURCES=${UA_LOAD_SOURCES:-100}
UA_LOAD_CALLS=${UA_LOAD_CALLS:-100 250 500 1000}
UA_LOAD_SECS=${UA_LOAD_SECS:-20}

lab_require jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
lab_setup bua
UAH=198.18.0.50
lab_add_host uah "$UAH"
SRV=$LAB_SRV_IP
conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF
	[sip]
	listen = udp:$SRV:5060, tcp:$SRV:5060
	rate_limit = 0
	[outbound]
	max_flows_per_source = 0
	[registrar]
	open = yes
	[store]
	path =
	[control]
	listen = 127.0.0.1:5080
	[relay]
	address = $SRV
	advertise = $SRV
	ports = 20000-39999
	max_pairs_per_source = 0
	max_pairs_per_aor = 0
	[stun]
	rate = 0
	[echo]
	max_calls = $(((UA_CALLS * 2) > 1000 ? 1000 : UA_CALLS * 2))
	max_calls_per_source = $(((UA_CALLS * 2) > 1000 ? 1000 : UA_CALLS * 2))
	max_duration = $((UA_CALL_SECS + 30))
EOF
lab_start_bg srv "$LAB_TMP/pinhole.log" "$PINHOLE" serve --config "$conf"
lab_wait_udp srv "$SRV:5060" 5 || lab_fail "pinhole did not start"
lab_wait_line "$LAB_TMP/pinhole.log" 'running with' 10 || lab_fail "pinhole did not come up"

# run_ua NAME ARGS...: one ua in the background under a shell that reports its
# CPU (`times`: the second line is the children's user and system time)
run_ua() {
	local name=$1; shift
	# shellcheck disable=SC2016 # expanded by the inner bash
	lab_start_bg uah "$LAB_TMP/$name.sh.log" bash -c \
		'n=$1; shift; "$@" >"$n.log" 2>"$n.err" </dev/null; echo $? >"$n.rc"; times >"$n.times"' \
		ua "$LAB_TMP/$name" "$PINHOLE" ua "$@"
}
# cpu_ms NAME: user + system ms of that ua
cpu_ms() {
	awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
		printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 + 0.5 }' "$LAB_TMP/$1.times"
}
# the ua processes' RSS (kB) in the uah namespace, one per line
rss_all() {
	local p
	for p in $(ip netns pids "$(lab_ns uah)"); do
		[ "$(cat /proc/"$p"/comm 2>/dev/null)" = pinhole ] && awk '/^RssAnon/ { print $2 }' /proc/"$p"/status
	done
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
wait_all() { local p; for p in "$@"; do lab_wait "$p" $((UA_FLOW_SECS + UA_CALL_SECS + 60)) >/dev/null; done; }

if [ "$UA_BENCH" != load ]; then
# --- calls ------------------------------------------------------------------------
pids=()
for i in $(seq 1 "$UA_CALLS"); do
	run_ua "call$i" call --json --no-register --state "$LAB_TMP/c$i.state" --proxy "udp:$SRV:5060" \
		--duration "$UA_CALL_SECS" "sip:echo@$SRV"
	pids+=("$LAB_LAST_PID")
done
sleep $((UA_CALL_SECS / 2))
rss=$(rss_all | median)
wait_all "${pids[@]}"
two=0 cpu=0
for i in $(seq 1 "$UA_CALLS"); do
	v=$(jq -r 'select(.event == "verdict") | .media.verdict' "$LAB_TMP/call$i.log")
	[ "$v" = two-way ] && two=$((two + 1))
	cpu=$((cpu + $(cpu_ms "call$i")))
done
echo "calls: $UA_CALLS at once, ${UA_CALL_SECS} s each: $two two-way; CPU $cpu ms in all," \
	"$((cpu / UA_CALLS)) ms per call, $(awk -v c="$cpu" -v n="$UA_CALLS" -v s="$UA_CALL_SECS" \
	'BEGIN { printf "%.2f", c / n / s }') ms per call-second" \
	"($(awk -v c="$cpu" -v n="$UA_CALLS" -v s="$UA_CALL_SECS" 'BEGIN { printf "%.3f", c / n / s / 10 }') % of a core);" \
	"anonymous memory (RssAnon) $rss kB per process (median)"

# --- once ---------------------------------------------------------------------------
pids=()
for i in $(seq 1 "$UA_REGS"); do
	run_ua "once$i" register --once --state "$LAB_TMP/r$i.state" \
		--proxy "udp:$SRV:5060" --proxy "tcp:$SRV:5060" "sip:u$i@$SRV"
	pids+=("$LAB_LAST_PID")
done
wait_all "${pids[@]}"
once=0 ok=0
for i in $(seq 1 "$UA_REGS"); do
	once=$((once + $(cpu_ms "once$i")))
	[ "$(cat "$LAB_TMP/once$i.rc")" = 0 ] && ok=$((ok + 1))
done
echo "once: $UA_REGS runs of register + unregister over 2 flows: $ok exit 0; CPU $((once / UA_REGS)) ms per run"

# --- flows -----------------------------------------------------------------------------
pids=()
for i in $(seq 1 "$UA_REGS"); do
	run_ua "flow$i" register --json --keepalive "$UA_KA" --state "$LAB_TMP/r$i.state" \
		--proxy "udp:$SRV:5060" --proxy "tcp:$SRV:5060" "sip:u$i@$SRV"
	pids+=("$LAB_LAST_PID")
done
sleep "$UA_FLOW_SECS"
rssf=$(rss_all | median)
for i in $(seq 1 "$UA_REGS"); do
	# the ua is bash's child: signal it, not the shell
	p=$(pgrep -P "${pids[$((i - 1))]}" -x pinhole) && kill -TERM "$p"
done
wait_all "${pids[@]}"
held=0
for i in $(seq 1 "$UA_REGS"); do held=$((held + $(cpu_ms "flow$i"))); done
kas=$(awk -v s="$UA_FLOW_SECS" -v k="$UA_KA" -v n="$UA_REGS" 'BEGIN { printf "%d", n * 2 * s / (k * 0.9) }')
per_min=$(awk -v h="$held" -v o="$once" -v n="$UA_REGS" -v s="$UA_FLOW_SECS" \
	'BEGIN { printf "%.2f", (h - o) / n / 2 / (s / 60) }')
echo "flows: $UA_REGS processes x 2 flows held ${UA_FLOW_SECS} s, keepalive every ~$((UA_KA * 9 / 10)) s (about $kas keepalives):" \
	"CPU $((held / UA_REGS)) ms per process, $per_min ms per flow-minute beyond register + unregister;" \
	"RssAnon $rssf kB per process (median)"
fi
[ "$UA_BENCH" = procs ] && exit 0

# --- ua load ---------------------------------------------------------------------
# source addresses for the flows, on the ua host's interface
for i in $(seq 0 $((UA_LOAD_SOURCES - 1))); do
	ip -n "$(lab_ns uah)" addr add "198.18.0.$((100 + i))/32" dev eth0
done
SRC="198.18.0.100-198.18.0.$((99 + UA_LOAD_SOURCES))"
# load NAME ARGS...: one `ua load --json` to completion; L = its summary
load() {
	local name=$1; shift
	lab_exec uah timeout 600 "$PINHOLE" ua load --json --state "$LAB_TMP/load.state" \
		--proxy "udp:$SRV:5060" "$@" >"$LAB_TMP/$name.log" 2>"$LAB_TMP/$name.err" </dev/null
	L=$(jq -c 'select(.event == "load")' "$LAB_TMP/$name.log")
	[ -n "$L" ] || { echo "$name: no summary: $(tail -n 3 "$LAB_TMP/$name.err")"; L='{}'; }
}
lv() { jq -r "$1" <<<"$L"; }
cpu_s() { jq -r '.cpu_user_s + .cpu_sys_s' <<<"$L"; }

# the same echo calls as `calls`, from one process
load load-echo --aor "sip:e%u@$SRV" --count "$UA_CALLS" --calls "$UA_CALLS" --rate 1000 \
	--duration "$UA_CALL_SECS" --call-to "sip:echo@$SRV"
lc=$(cpu_s) base_rss=$(lv .max_rss_kb)
echo "load-echo: $UA_CALLS echo calls of ${UA_CALL_SECS} s from one ua load: $(lv .calls.two_way) two-way;" \
	"CPU $(awk -v c="$lc" 'BEGIN { printf "%d", c * 1000 }') ms in all (registration included)," \
	"$(awk -v c="$lc" -v n="$UA_CALLS" -v s="$UA_CALL_SECS" 'BEGIN { printf "%.2f", c * 1000 / n / s }') ms per call-second;" \
	"max RSS $(lv .max_rss_kb) kB for the process"
[ "${UA_BENCH}" = all ] && [ "${cpu:-0}" -gt 0 ] &&
	echo "load-echo vs calls (same run): CPU per call $(awk -v c="$lc" -v p="$cpu" 'BEGIN { printf "%.2f", c * 1000 / p }')x" \
		"of one process per call"

# flows: register + unregister only, then held with keepalives
load load-flows1 --aor "sip:l%u@$SRV" --count "$UA_LOAD_FLOWS" --source "$SRC" --reg-rate 2000 \
	--keepalive "$UA_KA" --run 1
c1=$(cpu_s) r1=$(lv .flows.registered) ramp=$(lv .flows.ramp_s)
load load-flows --aor "sip:l%u@$SRV" --count "$UA_LOAD_FLOWS" --source "$SRC" --reg-rate 2000 \
	--keepalive "$UA_KA" --run "$UA_FLOW_SECS"
cf=$(cpu_s)
echo "load-flows: $UA_LOAD_FLOWS flows from $UA_LOAD_SOURCES addresses: $r1 registered in $ramp s (2000/s asked)," \
	"$(lv .flows.max_registered) held at once for ${UA_FLOW_SECS} s (keepalive every ~$((UA_KA * 9 / 10)) s)," \
	"$(lv .flows.failures) flow failures, $(lv .flows.unregistered) unregistered;" \
	"CPU $(awk -v c="$c1" -v n="$UA_LOAD_FLOWS" 'BEGIN { printf "%.3f", c * 1000 / n }') ms per flow register + unregister," \
	"$(awk -v c="$cf" -v b="$c1" -v n="$UA_LOAD_FLOWS" -v s="$UA_FLOW_SECS" 'BEGIN { printf "%.3f", (c - b) * 1000 / n / ((s - 1) / 60) }') ms per flow-minute of keepalives;" \
	"max RSS $(lv .max_rss_kb) kB ($(awk -v r="$(lv .max_rss_kb)" -v b="$base_rss" -v n="$UA_LOAD_FLOWS" -v e="$UA_CALLS" 'BEGIN { printf "%.1f", (r - b) / (n - e) }') kB per flow beyond load-echo's process)"

# calls: pairs, C at once
for C in $UA_LOAD_CALLS; do
	load "load-calls$C" --aor "sip:p%u@$SRV" --count $((2 * C)) --source "$SRC" --reg-rate 2000 \
		--calls "$C" --rate "$(awk -v c="$C" 'BEGIN { print c / 4 }')" --duration "$UA_LOAD_SECS"
	cc=$(cpu_s)
	echo "load-calls: $C calls at once (pairs, ${UA_LOAD_SECS} s each): $(lv .calls.two_way) of $(lv .calls.placed) two-way" \
		"(callee side $(lv .calls.answered_two_way) of $(lv .calls.answered_by_flows)), max $(lv .calls.max_active) at once;" \
		"loss in p99 $(lv .loss_in_pct.p99) % max $(lv .loss_in_pct.max) %, jitter p50 $(lv .jitter_ms.p50) p99 $(lv .jitter_ms.p99) ms;" \
		"CPU $(awk -v c="$cc" 'BEGIN { printf "%.2f", c }') s," \
		"$(awk -v c="$cc" -v n="$C" -v s="$UA_LOAD_SECS" 'BEGIN { printf "%.2f", c * 1000 / n / 2 / s }') ms per call-second per end;" \
		"max RSS $(lv .max_rss_kb) kB; exit $(lv .exit)"
done
exit 0
