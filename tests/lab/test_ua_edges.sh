#!/bin/bash
# Lab test of issue 13, "with two edges, one is cut": `pinhole ua register`
# behind an endpoint-independent NAT registers alice through two edge-only
# pinhole processes (edge A on 198.18.0.21 over UDP, edge B on 198.18.0.22
# over TCP) in front of a registrar (198.18.0.1): one instance, reg-id 1 and
# 2, each 200 with the edge's Flow-Timer (25 s UDP, 120 s TCP). Edge A is
# stopped: the ua's STUN keepalive goes unanswered and the flow fails; every
# new attempt meets a closed port (ICMP), and the waits between attempts are
# those of RFC 5626 4.5 (with --backoff-ok 2 --backoff-max 8: 2-4 s after the
# first failure, 4-8 s after each later one). Meanwhile alice stays reachable
# through edge B. Edge A comes back: the next attempt re-registers flow 1.
# SIGTERM unregisters both flows.
# Needs root, iproute2, iptables, conntrack, cc, sipp, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua --help >/dev/null 2>&1 || lab_skip "pinhole ua is not there yet"
"$PINHOLE" serve --help-config 2>&1 | grep -q '^registrar ' ||
	lab_skip "no edge-only process ([proxy] registrar) in this build"

lab_setup tue
lab_add_nat al eim 30
lab_add_host edgea 198.18.0.21
lab_add_host edgeb 198.18.0.22
lab_add_host caller 198.18.0.50
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 DB=$LAB_TMP/pinhole.db

cat >"$LAB_TMP/registrar.conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060
	domains = $SRV
	rate_limit_exempt = 198.18.0.21, 198.18.0.22
	[proxy]
	trusted = 198.18.0.21, 198.18.0.22
	[store]
	path = $DB
	[auth]
	algorithms = SHA-256, MD5
	[control]
	listen = $CTL
EOF2
for e in a b; do
	ip=198.18.0.2$([ $e = a ] && echo 1 || echo 2)
	cat >"$LAB_TMP/edge$e.conf" <<-EOF2
		[sip]
		listen = udp:$ip:5060, tcp:$ip:5060
		domains = $SRV
		[proxy]
		registrar = udp:$SRV:5060
		[control]
		listen = 127.0.0.1:5080
	EOF2
done
echo 'alice-secret' | "$PINHOLE" user add "alice@$SRV" --db "$DB" --password-stdin ||
	lab_fail "pinhole user add alice"
lab_start_bg srv "$LAB_TMP/registrar.log" "$PINHOLE" serve --config "$LAB_TMP/registrar.conf"
lab_wait_line "$LAB_TMP/registrar.log" 'running with' 10 || lab_fail "the registrar did not start"
start_edge() { # a|b
	lab_start_bg "edge$1" "$LAB_TMP/edge$1.log" "$PINHOLE" serve --config "$LAB_TMP/edge$1.conf"
	lab_wait_line "$LAB_TMP/edge$1.log" 'running with' 10 || lab_fail "edge $1 did not start"
}
start_edge a
EDGEA=$LAB_LAST_PID
start_edge b

printf 'alice-secret\n' >"$LAB_TMP/pw"
ev() {
	local secs=$1 kind=$2 filter=${3:-true} i=0
	until jq -e -s --arg k "$kind" "[.[] | select(.event == \$k) | select($filter)] | length > 0" \
		"$LAB_TMP/ua.log" >/dev/null 2>&1; do
		[ "$i" -ge $((secs * 10)) ] && return 1
		sleep 0.1; i=$((i + 1))
	done
}
evs() { jq -c -s --arg k "$1" "[.[] | select(.event == \$k) | select(${2:-true})]" "$LAB_TMP/ua.log"; }
bindings() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c '[.registrations[] | select(.aor == "alice@'"$SRV"'")] | sort_by(.reg_id)'
}
reachable() { # NAME
	lab_sipp caller "$1" options.xml -i 198.18.0.50 -p 5070 "$SRV:5060" -s alice \
		-timeout 15 -timeout_error
	lab_sipp_succeeded "$1"
}

lab_start_bg al-ph "$LAB_TMP/ua.log" "$PINHOLE" ua register --json --state "$LAB_TMP/ua.state" \
	--password-file "$LAB_TMP/pw" --proxy udp:198.18.0.21:5060 --proxy tcp:198.18.0.22:5060 \
	--keepalive 2 --backoff-ok 2 --backoff-all 2 --backoff-max 8 "sip:alice@$SRV"
UAPID=$LAB_LAST_PID
ev 10 registered '.flow == 1' && ev 10 registered '.flow == 2' ||
	lab_fail "the ua did not register through both edges"
[ "$(evs registered '.flow == 1 and .outbound and .flow_timer == 25' | jq length)" -eq 1 ] &&
	[ "$(evs registered '.flow == 2 and .outbound and .flow_timer == 120' | jq length)" -eq 1 ] ||
	lab_fail "no Require: outbound with the edges' Flow-Timer (25 udp, 120 tcp): $(evs registered)"
b=$(bindings)
lab_log "bindings: $(jq -c '[.[] | {reg_id, source, instance}]' <<<"$b")"
[ "$(jq -c '[.[].reg_id]' <<<"$b")" = "[1,2]" ] || lab_fail "reg-ids are not 1 and 2: $b"
[ "$(jq -r '[.[].instance] | unique | length' <<<"$b")" -eq 1 ] || lab_fail "two instances: $b"
reachable opt1 || lab_fail "alice not reachable through the edges"

# --- edge A goes away -------------------------------------------------------
ev 10 keepalive-ok '.flow == 1' || lab_fail "no keepalive answered through edge A"
lab_kill "$EDGEA"
lab_log "edge A stopped"
ev 20 keepalive-failed '.flow == 1' || lab_fail "the ua did not notice edge A was gone"
ev 10 retry '.flow == 1 and .failures == 2' || lab_fail "no second retry toward edge A"
reachable opt2 || lab_fail "alice was not reachable through edge B while edge A was down"
start_edge a
lab_log "edge A back"
ev 30 registered '.flow == 1 and .recovered' || lab_fail "flow 1 was not re-registered through edge A"
# every wait was within the 4.5 bounds: [50 %, 100 %] of min(8, 2 * 2^n) s
bad=$(evs retry '.flow == 1' | jq -c '[.[] | select(
	(if .failures >= 2 then 8000 else 2000 * pow(2; .failures) end) as $b |
	.retry_ms < $b / 2 or .retry_ms > $b)]')
[ "$bad" = "[]" ] || lab_fail "waits outside the 4.5 bounds: $bad"
lab_log "flow 1 retries: $(evs retry '.flow == 1' | jq -c '[.[] | {failures, retry_ms}]')"
[ "$(evs retry '.flow == 2' | jq length)" -eq 0 ] || lab_fail "flow 2 (edge B) was disturbed"
[ "$(evs flow-down '.flow == 2' | jq length)" -eq 0 ] || lab_fail "flow 2 went down"
b=$(bindings)
[ "$(jq -c '[.[].reg_id]' <<<"$b")" = "[1,2]" ] || lab_fail "after recovery: $b"
reachable opt3 || lab_fail "alice not reachable after recovery"

kill -TERM "$UAPID"
lab_wait "$UAPID" 10
rc=$?
[ "$rc" -eq 0 ] || lab_fail "the ua exited $rc after SIGTERM"
[ "$(evs unregistered | jq length)" -eq 2 ] || lab_fail "not both flows unregistered: $(evs unregistered)"
[ "$(bindings)" = "[]" ] || lab_fail "bindings left: $(bindings)"
lab_log "PASS"
exit 0
