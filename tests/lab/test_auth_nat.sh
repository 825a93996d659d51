#!/bin/bash
# Lab test of issue 11 (users and digest authentication) through real NAT:
# `pinhole serve` runs with no users; `pinhole user add --password-stdin` adds
# alice and bob to its SQLite file while it runs (no restart). Then alice,
# behind an endpoint-independent NAT, and bob, behind a symmetric one, register
# with digest (sipp's [authentication] answering the 401) and call each other
# (the INVITE answered 407 first, then sent with Proxy-Authorization). From a
# third NAT, eve tries alice's AOR: without credentials, with a wrong password,
# and as an unknown user; alice's binding stays hers and the refusals count.
# Needs root, iproute2, iptables, conntrack, cc, sipp, jq and $PINHOLE.
#
# sipp (3.6) answers only the first challenge of a 401 and only with MD5, so
# the server offers MD5 alone here ([auth] algorithms); the three-algorithm
# challenge is covered by tests/unit/test_auth*.c. sipp's digest uri is the
# server's address unless -auth_uri says the Request-URI, which the server
# requires (RFC 7616 3.4.6).
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-60}

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" user --help >/dev/null 2>&1 || lab_skip "pinhole user is not there yet"

lab_setup tau
lab_add_nat al eim "$NAT_T"
lab_add_nat bo sym "$NAT_T"
lab_add_nat ev eim "$NAT_T"
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 DB=$LAB_TMP/pinhole.db

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060
	[store]
	path = $DB
	[auth]
	algorithms = MD5
	max_failures = 100
	[control]
	listen = $CTL
EOF2
log=$LAB_TMP/pinhole.log
lab_serve "$log" "$conf" "$SRV:5060"
grep -q 'no users configured' "$log" || lab_fail "the start-up log does not say that no user exists"

# users are added to the running server's file; it reloads them by itself
echo 'alice-secret' | "$PINHOLE" user add "alice@$SRV" --config "$conf" --password-stdin ||
	lab_fail "pinhole user add alice"
echo 'bob-secret' | "$PINHOLE" user add "bob@$SRV" --db "$DB" --password-stdin ||
	lab_fail "pinhole user add bob"
"$PINHOLE" user list --db "$DB" | grep -q "^bob	$SRV	MD5,SHA-256,SHA-512-256$" ||
	lab_fail "user list: $("$PINHOLE" user list --db "$DB")"
! grep -q 'secret' "$DB" || lab_fail "a password is in the database"
lab_wait_line "$log" 'credentials: 2 users after a change' 10 ||
	lab_fail "the running server did not pick up the users: $(tail -n 5 "$log")"

counter() { lab_counter "$CTL" "$1"; }
binding() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c --arg u "$1" '[.registrations[] | select(.aor | test("^(sips?:)?" + $u + "@"))]'
}
callee_bg() { # NAT USER PASSWORD NAME SECS
	lab_sipp_bg "$1-ph" "$4" callee_auth_gets_bye.xml -i "$(lab_phone_ip "$1")" -p 5060 "$SRV:5060" \
		-s "$2" -au "$2" -ap "$3" -key expires 300 -cid_str "lab-$$-$4-%u" -aa \
		-timeout "$5" -timeout_error
	lab_wait_line "$LAB_TMP/$4.messages.log" '^SIP/2.0 200' 10 ||
		lab_fail "$4: the digest REGISTER of $2 via $1 was not answered 200"
}
caller() { # NAT CALLEE USER PASSWORD CALLEE_NAME NAME
	lab_sipp "$1-ph" "$6" caller_auth_hangs_up.xml -i "$(lab_phone_ip "$1")" -p 5060 "$SRV:5060" \
		-s "$2" -key user "$3" -au "$3" -ap "$4" -auth_uri "$2@$SRV:5060" \
		-cid_str "lab-$$-$5-%u" -d 200 \
		-timeout 15 -timeout_error
}

# --- both ways through both NAT kinds ----------------------------------------
for dir in "al alice alice-secret bo bob bob-secret" "bo bob bob-secret al alice alice-secret"; do
	read -r cn cu cp rn ru rp <<<"$dir"
	name="$ru-calls-$cu"
	callee_bg "$cn" "$cu" "$cp" "$name-callee" 25
	pa=$LAB_LAST_PID
	caller "$rn" "$cu" "$ru" "$rp" "$name-callee" "$name-caller"; rb=$?
	lab_wait "$pa" 30; ra=$?
	lab_log "$name: caller exit $rb, callee exit $ra"
	[ "$rb" -eq 0 ] && [ "$ra" -eq 0 ] && lab_sipp_succeeded "$name-caller" &&
		lab_sipp_succeeded "$name-callee" || lab_fail "$name: the authenticated call failed"
	grep -q '^SIP/2.0 407' "$LAB_TMP/$name-caller.messages.log" ||
		lab_fail "$name: the first INVITE was not challenged"
done
b=$(binding alice)
[ "$(jq length <<<"$b")" -eq 1 ] || lab_fail "alice has not one binding: $b"
mapped=$(lab_nat_mapping al 5060 "$SRV" 5060) || lab_fail "no NAT mapping for alice"
[ "$(jq -r '.[0].source' <<<"$b")" = "$mapped" ] || lab_fail "alice's binding is not her NAT's $mapped: $b"

# --- eve, from another NAT, tries alice's AOR ------------------------------------
fails0=$(counter auth_failures_total)
lab_sipp ev-ph eve-plain unregister.xml -i "$(lab_phone_ip ev)" -p 5060 "$SRV:5060" \
	-s alice -timeout 5 -timeout_error
! lab_sipp_succeeded eve-plain || lab_fail "an unauthenticated unREGISTER of alice got 200"
grep -q '^SIP/2.0 401' "$LAB_TMP/eve-plain.messages.log" || lab_fail "eve's REGISTER was not challenged"
lab_sipp ev-ph eve-guess register_auth.xml -i "$(lab_phone_ip ev)" -p 5060 "$SRV:5060" \
	-s alice -au alice -ap guess -key expires 300 -timeout 5 -timeout_error
! lab_sipp_succeeded eve-guess || lab_fail "a wrong password registered alice"
lab_sipp ev-ph eve-nobody register_auth.xml -i "$(lab_phone_ip ev)" -p 5060 "$SRV:5060" \
	-s alice -au mallory -ap guess -key expires 300 -timeout 5 -timeout_error
! lab_sipp_succeeded eve-nobody || lab_fail "an unknown user registered alice"
fails=$(( $(counter auth_failures_total) - fails0 ))
[ "$fails" -ge 2 ] || lab_fail "auth_failures_total rose by $fails, not 2"
b2=$(binding alice)
[ "$(jq -c '[.[].source]' <<<"$b2")" = "[\"$mapped\"]" ] || lab_fail "alice's binding changed: $b2"
lab_log "eve: refused (auth_failures_total +$fails); alice's binding is still $mapped"

lab_log "PASS"
exit 0
