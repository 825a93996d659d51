#!/bin/bash
# Lab test of issue 13, calls and the verdict: two `pinhole ua` behind two
# symmetric NATs register to `pinhole serve`; bob answers (--auto-answer),
# alice calls him for a few seconds; each prints the media verdict.
#   - server 1 relays media ([relay] media = nat-facing, the default): both report two-way audio,
#     no loss, and both exit 0;
#   - server 2 does not ([relay] media = never): the SDPs name the phones'
#     private addresses, so no RTP crosses the NATs: alice's verdict is not
#     two-way, names a cause, and she exits 6 (the detector can fail);
#   - alice calls server 1's echo service (sip:echo@..., --no-register) from
#     behind her NAT: two-way audio, exit 0; with the relay's eBPF fast path
#     as configured by default (auto: loaded where the kernel allows), whose
#     streams toward the echo on the relay's own host stay in user space;
#   - alice calls bob at server 1 while bob only registers (no --auto-answer):
#     the 480 ends the call with exit 4.
# Needs root, iptables, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}
SECS=${SECS:-6} # call length: more than one 5 s RTCP interval

lab_require jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua call --help >/dev/null 2>&1 || lab_skip "pinhole ua call is not there yet"

lab_setup tuc
lab_add_nat s1 sym "$NAT_T"
lab_add_nat s2 sym "$NAT_T"
SRV1=$LAB_SRV_IP SRV2=$LAB_SRV_IP2

# start_pinhole N ADDR MEDIA PORTS [ECHO]
start_pinhole() {
	local n=$1 addr=$2 media=$3 ports=$4 conf=$LAB_TMP/pinhole-$1.conf
	cat >"$conf" <<-EOF2
		[sip]
		listen = udp:$addr:5060
	EOF2
	lab_conf_tail "$LAB_TMP/pinhole-$n.db" "127.0.0.1:$((5080 + n))" "$addr" "$ports" \
		"$media" >>"$conf"
	[ -n "${5:-}" ] && printf '[echo]\nmax_duration = 30\n' >>"$conf"
	lab_serve "$LAB_TMP/pinhole-$n.log" "$conf" "$addr:5060"
}
start_pinhole 1 "$SRV1" nat-facing 30000-30039 echo
start_pinhole 2 "$SRV2" never 30100-30139
lab_log "relay 1 fast path: $(grep -q 'fast path: latched IPv4 RTP forwarded in the kernel' \
	"$LAB_TMP/pinhole-1.log" && echo loaded || echo not loaded)"

# verdict LOG: the first verdict of a ua's JSON log

# call SRV NAME [BOB-OPTS]: bob (s2) registers at SRV and answers; alice (s1)
# calls him; sets RC (alice's exit), A and B (their verdicts), BRC (bob's exit)
call() {
	local srv=$1 name=$2 bobopts=${3:---auto-answer} i
	lab_start_bg s2-ph "$LAB_TMP/bob-$name.log" "$PINHOLE" ua register --json $bobopts \
		--state "$LAB_TMP/bob.state" --proxy "udp:$srv:5060" "sip:bob@$srv"
	local bpid=$LAB_LAST_PID
	for i in $(seq 1 50); do
		grep -q '"event":"registered"' "$LAB_TMP/bob-$name.log" && break
		sleep 0.1
	done
	[ "$i" -lt 50 ] || lab_fail "bob did not register at $srv: $(cat "$LAB_TMP/bob-$name.log")"
	lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/alice.state" \
		--aor "sip:alice@$srv" --proxy "udp:$srv:5060" --duration "$SECS" "sip:bob@$srv" \
		>"$LAB_TMP/alice-$name.log" 2>"$LAB_TMP/alice-$name.err" </dev/null
	RC=$?
	sleep 0.5
	kill -TERM "$bpid" 2>/dev/null
	BRC=
	for i in $(seq 1 50); do
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$bpid" 2>/dev/null
	BRC=$?
	A=$(lab_ua_verdict "$LAB_TMP/alice-$name.log") B=$(lab_ua_verdict "$LAB_TMP/bob-$name.log")
	lab_log "$name: alice exit $RC verdict $A"
	lab_log "$name: bob exit $BRC verdict $B"
}

# --- through the relay: two-way both sides -----------------------------------
call "$SRV1" relay
[ "$RC" -eq 0 ] || lab_fail "relayed call: alice exited $RC: $(cat "$LAB_TMP/alice-relay.err")"
[ "$(jq -r .verdict <<<"$A")" = two-way ] || lab_fail "relayed call: alice's verdict $A"
[ "$(jq -r .verdict <<<"$B")" = two-way ] || lab_fail "relayed call: bob's verdict $B"
[ "$BRC" -eq 0 ] || lab_fail "relayed call: bob exited $BRC"
# no loss either way, and the far end's RTCP confirmed it
[ "$(jq '.in.lost' <<<"$A")" -eq 0 ] && [ "$(jq '.in.lost' <<<"$B")" -eq 0 ] ||
	lab_fail "relayed call lost packets: $A / $B"
[ "$(jq '.in.packets' <<<"$A")" -ge $((SECS * 50 * 9 / 10)) ] ||
	lab_fail "alice got too few packets: $A"
[ "$(jq '.out.far_rtcp' <<<"$A")" = true ] || lab_fail "alice saw no RTCP from bob: $A"
# the relay is what the SDP named, and where media came from
[ "$(jq -r '.remote_announced | split(":")[0]' <<<"$A")" = "$SRV1" ] ||
	lab_fail "alice's far end is not the relay: $A"

# --- no relay: the detector fails --------------------------------------------
call "$SRV2" norelay
[ "$RC" -eq 6 ] || lab_fail "unrelayed call: alice exited $RC, not 6: $(cat "$LAB_TMP/alice-norelay.err")"
v=$(jq -r .verdict <<<"$A")
[ -n "$v" ] && [ "$v" != two-way ] || lab_fail "unrelayed call: alice's verdict $A"
[ -n "$(jq -r .cause <<<"$A")" ] || lab_fail "unrelayed call: no cause"
[ "$(jq -r .verdict <<<"$B")" != two-way ] || lab_fail "unrelayed call: bob's verdict $B"
[ "$BRC" -eq 6 ] || lab_fail "unrelayed call: bob exited $BRC, not 6"

# --- the echo service from behind a NAT ---------------------------------------
lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --no-register --state "$LAB_TMP/alice.state" \
	--proxy "udp:$SRV1:5060" --duration "$SECS" "sip:echo@$SRV1" \
	>"$LAB_TMP/alice-echo.log" 2>"$LAB_TMP/alice-echo.err" </dev/null
rc=$?
E=$(lab_ua_verdict "$LAB_TMP/alice-echo.log")
lab_log "echo: alice exit $rc verdict $E"
ctr=$(lab_exec srv "$PINHOLE" ctl counters --control 127.0.0.1:5081 | tr ',' '\n' | grep -E 'echo|relay' | grep -v ':0$' | tr '\n' ' ')
lab_log "echo: server counters: $ctr"
[ "$rc" -eq 0 ] || lab_fail "echo call exited $rc: $(cat "$LAB_TMP/alice-echo.err")"
[ "$(jq -r .verdict <<<"$E")" = two-way ] || lab_fail "echo call verdict $E"
[ "$(jq '.in.packets' <<<"$E")" -ge $((SECS * 50 * 9 / 10)) ] ||
	lab_fail "too few of alice's packets came back from the echo: $E"

# --- a refused call -----------------------------------------------------------
call "$SRV1" refused "--expires 600"
[ "$RC" -eq 4 ] || lab_fail "a call refused 480 exited $RC, not 4"
grep -q '480' "$LAB_TMP/alice-refused.log" || lab_fail "the 480 is not in alice's events"
[ -z "$A" ] || lab_fail "a refused call has a verdict: $A"
lab_log "relayed two-way, unrelayed detected, echo two-way, 480 exit 4"
