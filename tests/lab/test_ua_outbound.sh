#!/bin/bash
# Lab test of issue 13, registration: `pinhole ua register` behind an
# endpoint-independent NAT registers alice (digest, the server offering MD5,
# SHA-256 and SHA-512-256) to `pinhole serve` over two flows, UDP and TCP.
# The server holds one +sip.instance with reg-id 1 and 2, both from the NAT's
# address, and reaches the ua through them (OPTIONS 200, INVITE 480). Then:
#   - the server's end of the TCP connection is killed (ss -K): the ua sees
#     the flow close and replaces it at once (RFC 5626 4.5, a flow that worked);
#     the server still holds two bindings, the TCP one from a new port;
#   - the NAT drops the UDP flow (iptables DROP): the STUN keepalive goes
#     unanswered, the flow fails, the new flow's REGISTER times out, and the ua
#     waits within the 4.5 bounds (base 2 s while TCP works: 2-4 s after the
#     first failure) before it re-registers once the drop is lifted; meanwhile
#     alice stays reachable over TCP;
#   - SIGTERM: the ua unregisters both flows and exits 0.
# And the errors: a wrong password exits 3, a closed UDP port and a refused
# TCP connection exit 5, a bad AOR exits 2.
# Needs root, iproute2 (ss -K), iptables, conntrack, cc, sipp, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua --help >/dev/null 2>&1 || lab_skip "pinhole ua is not there yet"

lab_setup tua
lab_add_nat al eim "$NAT_T"
lab_add_host caller 198.18.0.50
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 DB=$LAB_TMP/pinhole.db
PH=$(lab_phone_ip al) WAN=$(lab_wan_ip al)

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060, tcp:$SRV:5060
	[store]
	path = $DB
	[auth]
	algorithms = MD5, SHA-256, SHA-512-256
	max_failures = 100
	[control]
	listen = $CTL
EOF2
echo 'alice-secret' | "$PINHOLE" user add "alice@$SRV" --db "$DB" --password-stdin ||
	lab_fail "pinhole user add alice"
log=$LAB_TMP/pinhole.log
lab_serve "$log" "$conf" "$SRV:5060"

printf 'alice-secret\n' >"$LAB_TMP/pw"
printf 'guess\n' >"$LAB_TMP/badpw"
UA=("$PINHOLE" ua register --state "$LAB_TMP/ua.state")

bindings() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c '[.registrations[] | select(.aor == "alice@'"$SRV"'")] | sort_by(.reg_id)'
}
# ev N KIND [JQ-FILTER]: wait up to N s for an event line of the ua's log
ev() {
	local secs=$1 kind=$2 filter=${3:-true} i=0
	until jq -e -s --arg k "$kind" "[.[] | select(.event == \$k) | select($filter)] | length > 0" \
		"$LAB_TMP/ua.log" >/dev/null 2>&1; do
		[ "$i" -ge $((secs * 10)) ] && return 1
		sleep 0.1; i=$((i + 1))
	done
}
evs() { jq -c -s --arg k "$1" "[.[] | select(.event == \$k) | select(${2:-true})]" "$LAB_TMP/ua.log"; }

# --- the errors first (each one run to its end) ------------------------------
lab_exec al-ph "${UA[@]}" --once --password-file "$LAB_TMP/badpw" --proxy "udp:$SRV:5060" \
	"sip:alice@$SRV" >"$LAB_TMP/ua-badpw.log" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 3 ] || lab_fail "a wrong password exited $rc, not 3: $(cat "$LAB_TMP/ua-badpw.log")"
grep -q 'wrong user name or password' "$LAB_TMP/ua-badpw.log" || lab_fail "no clear message for a wrong password"
lab_exec al-ph "${UA[@]}" --once --password-file "$LAB_TMP/pw" --proxy "udp:$SRV:5999" \
	"sip:alice@$SRV" >"$LAB_TMP/ua-closed.log" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 5 ] || lab_fail "a closed UDP port exited $rc, not 5: $(cat "$LAB_TMP/ua-closed.log")"
lab_exec al-ph "${UA[@]}" --once --password-file "$LAB_TMP/pw" --proxy "tcp:$SRV:5999" \
	"sip:alice@$SRV" >"$LAB_TMP/ua-refused.log" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 5 ] || lab_fail "a refused TCP connection exited $rc, not 5: $(cat "$LAB_TMP/ua-refused.log")"
"${UA[@]}" --once "alice@$SRV" >"$LAB_TMP/ua-badaor.log" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 2 ] || lab_fail "a bad AOR exited $rc, not 2"
lab_log "errors: wrong password 3, closed UDP port 5, refused TCP 5, bad AOR 2"
[ "$(bindings)" = "[]" ] || lab_fail "a failed run left bindings: $(bindings)"

# --- two flows, one instance ------------------------------------------------
lab_start_bg al-ph "$LAB_TMP/ua.log" "${UA[@]}" --json --password-file "$LAB_TMP/pw" \
	--proxy "udp:$SRV:5060" --proxy "tcp:$SRV:5060" --keepalive 2 \
	--backoff-ok 2 --backoff-all 2 "sip:alice@$SRV"
UAPID=$LAB_LAST_PID
ev 10 registered '.flow == 1' && ev 10 registered '.flow == 2' ||
	lab_fail "the ua did not register both flows"
b=$(bindings)
lab_log "bindings: $b"
[ "$(jq length <<<"$b")" -eq 2 ] || lab_fail "alice has not two bindings: $b"
inst=$(sed -n 's/^instance = //p' "$LAB_TMP/ua.state")
[ -n "$inst" ] || lab_fail "no instance in the state file"
[ "$(jq -r '[.[].instance] | unique | .[]' <<<"$b")" = "\"<$inst>\"" ] ||
	lab_fail "the bindings do not share the state file's instance $inst: $b"
[ "$(jq -c '[.[].reg_id]' <<<"$b")" = "[1,2]" ] || lab_fail "reg-ids are not 1 and 2: $b"
[ "$(jq -c '[.[].transport]' <<<"$b")" = '["udp","tcp"]' ] || lab_fail "transports: $b"
[ "$(jq -r '[.[].source | split(":")[0]] | unique | .[]' <<<"$b")" = "$WAN" ] ||
	lab_fail "the sources are not the NAT's $WAN: $b"
[ "$(evs registered '.outbound == true' | jq length)" -eq 2 ] ||
	lab_fail "the server's Require: outbound was not seen on both flows"
# the server's Flow-Timer ([outbound] flow_timer_udp/tcp), where it has one
if [ "$(evs registered '.flow_timer > 0' | jq length)" -gt 0 ]; then
	[ "$(evs registered '.flow == 1 and .flow_timer == 25' | jq length)" -eq 1 ] &&
		[ "$(evs registered '.flow == 2 and .flow_timer == 120' | jq length)" -eq 1 ] ||
		lab_fail "Flow-Timer is not 25 (udp) and 120 (tcp): $(evs registered)"
	lab_log "Flow-Timer: 25 s udp, 120 s tcp"
fi
tcp_src=$(jq -r '.[1].source' <<<"$b")

# the server reaches alice through her flows
lab_sipp caller opt1 options.xml -i 198.18.0.50 -p 5070 "$SRV:5060" -s alice \
	-timeout 10 -timeout_error
lab_sipp_succeeded opt1 || lab_fail "an OPTIONS to alice was not answered 200"
lab_sipp caller inv1 invite_480.xml -i 198.18.0.50 -p 5070 "$SRV:5060" -s alice \
	-timeout 10 -timeout_error
lab_sipp_succeeded inv1 || lab_fail "an INVITE to alice was not answered 480"
ev 5 request '.method == "OPTIONS" and .status == 200' || lab_fail "no OPTIONS event"
ev 5 request '.method == "INVITE" and .status == 480' || lab_fail "no INVITE event"
lab_log "OPTIONS 200 and INVITE 480 through the server"

# --- the TCP connection dies --------------------------------------------------
# a flow counts as working once registered and a keepalive was answered (4.5)
ev 10 keepalive-ok '.flow == 1' || lab_fail "no keepalive answered on the UDP flow"
ev 10 keepalive-ok '.flow == 2' || lab_fail "no keepalive answered on the TCP flow"
# the server counted them by kind, where it counts them
kas=$(lab_exec srv "$PINHOLE" ctl counters --control "$CTL" |
	jq -c '[.["keepalives_seen_total{kind=stun}"], .["keepalives_seen_total{kind=crlf}"]]')
lab_log "server keepalives seen [stun, crlf]: $kas"
[ "$kas" = "[null,null]" ] || jq -e 'all(. > 0)' <<<"$kas" >/dev/null ||
	lab_fail "the server saw no STUN or no CRLF keepalive: $kas"
t0=$(evs registered | jq length)
lab_exec srv ss -K -tn state established "( sport = :5060 )" >/dev/null ||
	lab_fail "ss -K failed (no CONFIG_INET_DIAG_DESTROY?)"
ev 10 flow-down '.flow == 2' || lab_fail "the ua did not see its TCP flow close"
ev 10 registered '.flow == 2 and .recovered == true' ||
	lab_fail "the ua did not re-register its TCP flow"
[ "$(evs retry '.flow == 2' | jq length)" -eq 0 ] ||
	lab_fail "a TCP flow that worked waited before it was replaced"
b=$(bindings)
[ "$(jq length <<<"$b")" -eq 2 ] || lab_fail "after the TCP reconnect alice has not two bindings: $b"
[ "$(jq -r '.[1].source' <<<"$b")" != "$tcp_src" ] || lab_fail "the TCP binding still names the dead connection: $b"
lab_log "tcp: closed, replaced at once: $(jq -r '.[1].source' <<<"$b") (was $tcp_src)"
[ "$(evs registered | jq length)" -gt "$t0" ] || lab_fail "no new registration counted"

# --- the NAT drops the UDP flow -----------------------------------------------
lab_exec al iptables -w -I FORWARD 1 -i lan -p udp -d "$SRV" --dport 5060 -j DROP ||
	lab_fail "iptables DROP"
ev 20 keepalive-failed '.flow == 1' || lab_fail "the ua did not notice its UDP flow die"
lab_log "udp: $(evs keepalive-failed '.flow == 1' | jq -r '.[0].detail')"
# reachable meanwhile through the TCP flow
lab_sipp caller opt2 options.xml -i 198.18.0.50 -p 5070 "$SRV:5060" -s alice \
	-timeout 15 -timeout_error
lab_sipp_succeeded opt2 || lab_fail "alice was not reachable over TCP while UDP was down"
ev 45 register-failed '.flow == 1' || lab_fail "the new UDP flow's REGISTER did not time out"
lab_exec al iptables -w -D FORWARD -i lan -p udp -d "$SRV" --dport 5060 -j DROP
ev 10 retry '.flow == 1' || lab_fail "no retry event for the UDP flow"
r=$(evs retry '.flow == 1' | jq -c '.[0]')
lab_log "udp: retry $r"
ms=$(jq -r .retry_ms <<<"$r")
# RFC 5626 4.5: one failure, another flow works, base 2 s: [50 %, 100 %] of 2*2^1 s
[ "$(jq -r .failures <<<"$r")" -eq 1 ] && [ "$ms" -ge 2000 ] && [ "$ms" -le 4000 ] ||
	lab_fail "the retry is outside the 4.5 bounds (2000-4000 ms): $r"
ev 15 registered '.flow == 1 and .recovered == true' || lab_fail "the UDP flow was not re-registered"
failed_t=$(evs register-failed '.flow == 1' | jq -r '.[0].t')
back_t=$(evs registered '.flow == 1 and .recovered == true' | jq -r '.[0].t')
lab_log "udp: register failed at ${failed_t}s, re-registered at ${back_t}s"
b=$(bindings)
[ "$(jq length <<<"$b")" -eq 2 ] && [ "$(jq -c '[.[].reg_id]' <<<"$b")" = "[1,2]" ] ||
	lab_fail "after recovery alice has not her two bindings: $b"

# --- exit: unregister -----------------------------------------------------------
kill -TERM "$UAPID"
lab_wait "$UAPID" 10
rc=$?
[ "$rc" -eq 0 ] || lab_fail "the ua exited $rc after SIGTERM"
[ "$(evs unregistered | jq length)" -eq 2 ] || lab_fail "not both flows unregistered"
[ "$(bindings)" = "[]" ] || lab_fail "bindings left after the ua unregistered: $(bindings)"
[ "$(evs bad-message | jq length)" -eq 0 ] || lab_fail "bad messages: $(evs bad-message)"
lab_log "PASS"
exit 0
