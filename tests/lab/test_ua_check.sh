#!/bin/bash
# Lab test of issue 13, `pinhole ua check`: from behind each NAT kind the lab
# makes, one `pinhole ua check --json` against `pinhole serve` (registrar, relay,
# echo service, and [stun] with an other address for RFC 5780) registers two
# flows (UDP and TCP), probes the NAT, calls the echo service, and its summary
# says:
#   - the right NAT type: full -> endpoint-independent, addr -> address-restricted,
#     eim -> port-restricted, sym -> symmetric; the mapped IP is the NAT's;
#   - both flows registered, outbound, with the server's Flow-Timer;
#   - audio two-way, no loss either way, an RTT measured; exit 0.
# Then the check fails where it must:
#   - a wrong password: exit 3, the flow reported "not registered";
#   - a callee that is not there (--echo-uri naming an unknown user): the call is
#     refused (404), exit 4;
#   - a firewall in the eim NAT that drops UDP to the relay's ports: the call
#     is answered, audio is not two-way, the cause is named, exit 6 (the
#     check's audio verdict can fail).
# And the binding lifetime: behind eim with --lifetime, the measured lifetime
# lies within the NAT's conntrack timeout +-5 s and the keepalive interval to
# use is below it.
# Needs root, iptables, nft, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-20}     # conntrack UDP timeout of the NATs
MAX_WAIT=${MAX_WAIT:-30} # --lifetime: longest lifetime tested

lab_require jq nft
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua --help 2>/dev/null | grep -q 'ua check' || lab_skip "pinhole ua check is not there yet"

lab_setup tuk
lab_add_nat full full "$NAT_T"
lab_add_nat addr addr "$NAT_T"
lab_add_nat eim eim "$NAT_T"
lab_add_nat sym sym "$NAT_T"
for n in full addr eim sym; do lab_verify_nat "$n"; done
SRV=$LAB_SRV_IP SRV2=$LAB_SRV_IP2

# start_pinhole N ADDR MEDIA ECHO(yes|no) PORTS: a server on ADDR:5060 (UDP, TCP)
# with STUN on ADDR:3478 (other address SRV2 or SRV on 3479)
start_pinhole() {
	local n=$1 addr=$2 media=$3 echo=$4 ports=$5 conf=$LAB_TMP/pinhole-$1.conf db=$LAB_TMP/pinhole-$1.db
	local other=$SRV2
	[ "$addr" = "$SRV2" ] && other=$SRV
	cat >"$conf" <<-EOF2
		[sip]
		listen = udp:$addr:5060, tcp:$addr:5060
		[stun]
		listen = udp:$addr:3478
		other = $other:3479
		[store]
		path = $db
		[auth]
		max_failures = 100
		[control]
		listen = 127.0.0.1:$((5080 + n))
		[relay]
		address = $addr
		advertise = $addr
		ports = $ports
		media = $media
	EOF2
	[ "$echo" = yes ] && printf '[echo]\nmax_duration = 30\n' >>"$conf"
	echo 'alice-secret' | "$PINHOLE" user add "alice@$addr" --db "$db" --password-stdin >/dev/null ||
		lab_fail "pinhole user add alice@$addr"
	lab_serve "$LAB_TMP/pinhole-$n.log" "$conf" "$addr:5060"
	SERVER_PID=$LAB_LAST_PID
}
start_pinhole 1 "$SRV" auto yes 30000-30099

printf 'alice-secret\n' >"$LAB_TMP/pw"
printf 'guess\n' >"$LAB_TMP/badpw"

# check NAT NAME SRV [ARGS...]: `pinhole ua check --json` on NAT's phone; the
# summary in $LAB_TMP/NAME.json, every line in NAME.log; sets RC and S.
check() {
	local nat=$1 name=$2 srv=$3; shift 3
	lab_exec "$nat-ph" timeout 90 "$PINHOLE" ua check --json --state "$LAB_TMP/$nat.state" \
		--password-file "$LAB_TMP/pw" --proxy "udp:$srv:5060" --proxy "tcp:$srv:5060" "$@" \
		"sip:alice@$srv" >"$LAB_TMP/$name.log" 2>"$LAB_TMP/$name.err" </dev/null
	RC=$?
	jq -c 'select(.event == "check")' "$LAB_TMP/$name.log" >"$LAB_TMP/$name.json" 2>/dev/null
	S=$(cat "$LAB_TMP/$name.json")
	lab_log "$name: exit $RC: $(jq -c '{nat: .nat.type, mapped: .nat.mapped, keepalive, flows: [.flows[] | .registered], audio, loss_in_pct, loss_out_pct, rtt_ms, result}' <<<"$S" 2>/dev/null)"
	[ -n "$S" ] || lab_fail "$name: no check summary (exit $RC): $(cat "$LAB_TMP/$name.err" "$LAB_TMP/$name.log")"
}
jv() { jq -r "$1" <<<"$S"; }

# --- behind each NAT kind: two-way, the right type -----------------------------
declare -A want=([full]=endpoint-independent [addr]=address-restricted [eim]=port-restricted [sym]=symmetric)
for nat in full addr eim sym; do
	check "$nat" "ok-$nat" "$SRV"
	[ "$RC" -eq 0 ] || lab_fail "$nat: check exited $RC: $S $(cat "$LAB_TMP/ok-$nat.err")"
	[ "$(jv .nat.type)" = "${want[$nat]}" ] ||
		lab_fail "$nat: NAT type '$(jv .nat.type)', want ${want[$nat]}"
	[ "$(jv .nat.rfc5780)" = true ] || lab_fail "$nat: the [stun] server was not used"
	[ "$(jv '.nat.mapped | split(":")[0]')" = "$(lab_wan_ip "$nat")" ] ||
		lab_fail "$nat: mapped $(jv .nat.mapped), not the NAT's $(lab_wan_ip "$nat")"
	[ "$(jv '[.flows[] | select(.registered and .outbound)] | length')" = 2 ] ||
		lab_fail "$nat: not both flows registered with outbound: $(jv -c .flows)"
	[ "$(jv .audio)" = two-way ] || lab_fail "$nat: audio $(jv .audio): $(jv .media.cause)"
	[ "$(jv .loss_in_pct)" = 0 ] && [ "$(jv .loss_out_pct)" = 0 ] ||
		lab_fail "$nat: loss in $(jv .loss_in_pct) % out $(jv .loss_out_pct) %"
	[ "$(jv '.media.in.packets')" -ge 270 ] || lab_fail "$nat: only $(jv .media.in.packets) packets back"
	[ "$(jv '.rtt_ms != null')" = true ] || lab_fail "$nat: no RTT"
	[ "$(jv .exit)" = 0 ] || lab_fail "$nat: summary exit $(jv .exit)"
	# no ALG behind these NATs: pinhole's Pinhole-Seen says both REGISTERs and
	# the INVITE arrived as sent
	[ "$(jq -c .sip_alg <<<"$S")" = '{"rewritten":false,"register":[],"invite":[],"words":"the server saw what the ua sent: no SIP ALG on the path"}' ] ||
		lab_fail "$nat: sip_alg $(jq -c .sip_alg <<<"$S")"
	# the text form says the same
done
lab_exec sym-ph timeout 90 "$PINHOLE" ua check --state "$LAB_TMP/sym.state" --no-register --password-file "$LAB_TMP/pw" \
	--proxy "udp:$SRV:5060" --duration 2 "sip:alice@$SRV" >"$LAB_TMP/text.log" 2>&1 </dev/null ||
	lab_fail "text check exited $?: $(cat "$LAB_TMP/text.log")"
grep -Eq '^  nat: +symmetric' "$LAB_TMP/text.log" && grep -Eq '^  audio: +two-way' "$LAB_TMP/text.log" ||
	lab_fail "the text summary does not say symmetric and two-way: $(cat "$LAB_TMP/text.log")"

# --- failures the check must name ---------------------------------------------
lab_exec eim-ph timeout 90 "$PINHOLE" ua check --json --state "$LAB_TMP/eim.state" \
	--password-file "$LAB_TMP/badpw" --no-probe --proxy "udp:$SRV:5060" "sip:alice@$SRV" \
	>"$LAB_TMP/badpw.log" 2>"$LAB_TMP/badpw.err" </dev/null
RC=$?
S=$(jq -c 'select(.event == "check")' "$LAB_TMP/badpw.log")
[ "$RC" -eq 3 ] && [ "$(jv .exit)" = 3 ] || lab_fail "a wrong password: exit $RC: $S"
[ "$(jv '.flows[0].registered')" = false ] || lab_fail "a wrong password: flow reported registered"
[ "$(jv .nat)" = null ] || lab_fail "--no-probe probed"

check eim noecho "$SRV" --no-probe --echo-uri "sip:nobody@$SRV"
[ "$RC" -eq 4 ] || lab_fail "a refused echo call exited $RC, not 4: $S"
[ "$(jv .call.status)" -ge 400 ] || lab_fail "the refused call has no status: $S"
[ "$(jv .audio)" = null ] || lab_fail "a refused call has audio: $S"

lab_exec eim iptables -w -I FORWARD -p udp --dport 30000:30099 -j DROP || lab_fail "firewall rule"
check eim blocked "$SRV" --no-probe --duration 2
lab_exec eim iptables -w -D FORWARD -p udp --dport 30000:30099 -j DROP
[ "$RC" -eq 6 ] || lab_fail "an echo call with RTP blocked exited $RC, not 6: $S"
[ "$(jv .audio)" != two-way ] && [ "$(jv .audio)" != null ] || lab_fail "blocked RTP: audio $(jv .audio)"
[ -n "$(jv .media.cause)" ] || lab_fail "no cause for the failed audio"
[ "$(jv '[.flows[] | select(.registered)] | length')" = 2 ] || lab_fail "blocked RTP: flows did not register"

# --- the binding lifetime ---------------------------------------------------------
check eim lifetime "$SRV" --lifetime "$MAX_WAIT" --duration 2
[ "$RC" -eq 0 ] || lab_fail "lifetime check exited $RC: $S"
alive=$(jv .nat.lifetime.alive_s) gone=$(jv .nat.lifetime.gone_s) ka=$(jv .keepalive.interval_s)
[ "$alive" -ge $((NAT_T - 5)) ] && [ "$gone" -gt 0 ] && [ "$gone" -le $((NAT_T + 5)) ] ||
	lab_fail "lifetime alive $alive s, gone $gone s: not within the NAT's $NAT_T +-5 s"
[ "$ka" -gt 0 ] && [ "$ka" -lt "$alive" ] && [ "$(jv .keepalive.basis)" = "measured binding lifetime" ] ||
	lab_fail "keepalive $ka s ($(jv .keepalive.basis)) is not below the lifetime $alive s"

kill -0 "$SERVER_PID" 2>/dev/null || lab_fail "pinhole died during the test"
lab_log "PASS: ua check names each NAT kind and reports two-way audio; wrong password 3, refused 4, RTP blocked 6; lifetime $alive..$gone s, keepalive $ka s"
exit 0
