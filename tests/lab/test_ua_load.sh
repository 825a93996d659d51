#!/bin/bash
# Lab test of issue 13, `pinhole ua load`: many flows and calls in one ua process, each
# call's audio checked, against `pinhole serve`, through a real symmetric NAT.
#   - callees: one `ua load --auto-answer` process behind a symmetric NAT holds
#     COUNT registered flows (b1..bN); callers: one `ua load` process on a public
#     host registers a1..aN and places CALLS calls to them at RATE per second;
#   - server 1 relays media (nat-facing, the default): every call two-way with no
#     loss, both processes exit 0 and their summaries say so;
#   - server 2 does not ([relay] media = never): the callees announce their
#     private address, the callers' RTP never reaches them while theirs arrives
#     through the NAT: every call counted one-way, the caller exits 6 and names
#     the cause, the callees count their answered calls as not two-way, exit 6
#     (the load mode's verdict can fail);
#   - pairs in one process behind the NAT (the first half call the second):
#     two-way through the relay.
# Needs root, iptables, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
COUNT=${COUNT:-6}
CALLS=${CALLS:-12}
RATE=${RATE:-6}
SECS=${SECS:-3}

lab_require jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua load --help >/dev/null 2>&1 || lab_skip "pinhole ua load is not there yet"

lab_setup tul
lab_add_nat n1 sym 30
lab_add_host pubh 198.18.0.50
SRV1=$LAB_SRV_IP SRV2=$LAB_SRV_IP2

# start_pinhole N ADDR MEDIA PORTS
start_pinhole() {
	local n=$1 addr=$2 media=$3 ports=$4 conf=$LAB_TMP/pinhole-$1.conf
	cat >"$conf" <<-EOF2
		[sip]
		listen = udp:$addr:5060
	EOF2
	lab_conf_tail "" "127.0.0.1:$((5080 + n))" "$addr" "$ports" "$media" >>"$conf"
	lab_serve "$LAB_TMP/pinhole-$n.log" "$conf" "$addr:5060"
}
start_pinhole 1 "$SRV1" nat-facing 30000-30199
start_pinhole 2 "$SRV2" never 30200-30399

# summary LOG: the load summary of a JSON log
summary() { jq -c 'select(.event == "load")' "$1"; }

# run SRV NAME: callees behind n1, callers on pubh; sets RC/S (callers) and
# CRC/CS (callees)
run() {
	local srv=$1 name=$2 i
	lab_start_bg n1-ph "$LAB_TMP/callees-$name.log" "$PINHOLE" ua load --json --auto-answer \
		--state "$LAB_TMP/b.state" --proxy "udp:$srv:5060" --aor "sip:b%u@$srv" --count "$COUNT"
	local cpid=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/callees-$name.log" "ramp done: $COUNT of $COUNT flows registered" 20 ||
		lab_fail "$name: the callees did not register: $(cat "$LAB_TMP/callees-$name.log")"
	lab_exec pubh timeout 90 "$PINHOLE" ua load --json --state "$LAB_TMP/a.state" \
		--proxy "udp:$srv:5060" --aor "sip:a%u@$srv" --count "$COUNT" --calls "$CALLS" \
		--rate "$RATE" --duration "$SECS" --call-to "sip:b%u@$srv" --callee-count "$COUNT" \
		>"$LAB_TMP/callers-$name.log" 2>"$LAB_TMP/callers-$name.err" </dev/null
	RC=$?
	kill -TERM "$cpid"
	lab_wait "$cpid" 20
	CRC=$?
	S=$(summary "$LAB_TMP/callers-$name.log")
	CS=$(summary "$LAB_TMP/callees-$name.log")
	lab_log "$name: callers exit $RC: $(jq -c '{flows: .flows.registered, calls}' <<<"$S")"
	lab_log "$name: callees exit $CRC: $(jq -c '{flows: .flows.registered, answered: .calls.answered_by_flows, two_way: .calls.answered_two_way}' <<<"$CS")"
	[ -n "$S" ] || lab_fail "$name: no caller summary: $(cat "$LAB_TMP/callers-$name.err" "$LAB_TMP/callers-$name.log")"
	[ -n "$CS" ] || lab_fail "$name: no callee summary: $(cat "$LAB_TMP/callees-$name.log")"
}
jv() { jq -r "$1" <<<"$S"; }
cv() { jq -r "$1" <<<"$CS"; }
jc() { jq -c "$1" <<<"$S"; }
cc() { jq -c "$1" <<<"$CS"; }

# --- relayed: every call two-way --------------------------------------------------
run "$SRV1" relayed
[ "$RC" -eq 0 ] || lab_fail "relayed: callers exited $RC: $S"
[ "$(jv .flows.registered)" = "$COUNT" ] && [ "$(jv .flows.unregistered)" = "$COUNT" ] ||
	lab_fail "relayed: callers' flows $(jc .flows)"
[ "$(jv .calls.placed)" = "$CALLS" ] && [ "$(jv .calls.two_way)" = "$CALLS" ] ||
	lab_fail "relayed: calls $(jc .calls)"
[ "$(jv .loss_in_pct.max)" = 0 ] && [ "$(jv .loss_out_pct.max)" = 0 ] ||
	lab_fail "relayed: loss in $(jc .loss_in_pct) out $(jc .loss_out_pct)"
[ "$(jv .loss_in_pct.n)" = "$CALLS" ] || lab_fail "relayed: loss measured for $(jv .loss_in_pct.n) calls"
[ "$(jv .rtp_received)" -ge $((CALLS * SECS * 50 * 9 / 10)) ] ||
	lab_fail "relayed: only $(jv .rtp_received) RTP packets received"
[ "$CRC" -eq 0 ] || lab_fail "relayed: callees exited $CRC: $CS"
[ "$(cv .calls.answered_by_flows)" = "$CALLS" ] && [ "$(cv .calls.answered_two_way)" = "$CALLS" ] ||
	lab_fail "relayed: callees answered $(cc .calls)"
[ "$(cv .flows.max_registered)" = "$COUNT" ] || lab_fail "relayed: callees held $(cv .flows.max_registered) flows"

# --- not relayed: every call one-way, and it says why ------------------------------
run "$SRV2" direct
[ "$RC" -eq 6 ] || lab_fail "direct: callers exited $RC, want 6: $S"
[ "$(jv .calls.answered)" = "$CALLS" ] && [ "$(jv .calls.one_way)" = "$CALLS" ] &&
	[ "$(jv .calls.two_way)" = 0 ] || lab_fail "direct: calls $(jc .calls)"
jv .calls.example_cause | grep -q "not from the announced 100.64.1.2" ||
	lab_fail "direct: cause '$(jv .calls.example_cause)'"
[ "$CRC" -eq 6 ] || lab_fail "direct: callees exited $CRC, want 6: $CS"
[ "$(cv .calls.answered_by_flows)" = "$CALLS" ] && [ "$(cv .calls.answered_two_way)" = 0 ] ||
	lab_fail "direct: callees answered $(cc .calls)"

# --- pairs in one process behind the NAT, relayed ----------------------------------
lab_exec n1-ph timeout 90 "$PINHOLE" ua load --state "$LAB_TMP/p.state" --proxy "udp:$SRV1:5060" \
	--aor "sip:p%u@$SRV1" --count 4 --calls 4 --rate 4 --duration "$SECS" \
	>"$LAB_TMP/pairs.log" 2>&1 </dev/null
PRC=$?
lab_log "pairs: exit $PRC: $(grep -E '^(calls|answered|load):' "$LAB_TMP/pairs.log" | tr '\n' ' ')"
[ "$PRC" -eq 0 ] || lab_fail "pairs: exit $PRC: $(cat "$LAB_TMP/pairs.log")"
grep -q '^calls: 4 of 4 placed, 4 answered: 4 two-way, 0 one-way' "$LAB_TMP/pairs.log" &&
	grep -q '^answered: 4 calls, 4 two-way' "$LAB_TMP/pairs.log" &&
	grep -q '^load: all ok (exit 0)' "$LAB_TMP/pairs.log" ||
	lab_fail "pairs: the text summary: $(cat "$LAB_TMP/pairs.log")"

lab_log "PASS: ua load: $CALLS calls between $COUNT + $COUNT flows two-way through the relay; one-way (exit 6, cause named) without it; pairs in one process two-way"
