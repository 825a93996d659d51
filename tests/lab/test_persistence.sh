#!/bin/bash
# Lab test of the registrar's durability (issue 2): REGISTERs from behind a NAT
# stream in while the server is killed with SIGKILL; after a restart on the same
# database every binding the server had answered 200 for is there again, with
# the NAT's public address as its source.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
USERS=${USERS:-3000}

lab_require sipp jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"

lab_setup tps
lab_add_nat p1 eim 60

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$LAB_SRV_IP:5060
	[registrar]
	; no users, and the phones register from the NAT's public side
	open = yes
	[store]
	path = $LAB_TMP/bindings.db
	[control]
	listen = 127.0.0.1:5080
EOF2

start_server() {
	lab_start_bg srv "$LAB_TMP/pinhole-$1.log" "$PINHOLE" serve --config "$conf"
	SERVER_PID=$LAB_LAST_PID
	lab_wait_udp srv "$LAB_SRV_IP:5060" 5 || lab_fail "pinhole did not start: $(tail -n 5 "$LAB_TMP/pinhole-$1.log")"
	# the SIP socket is bound before the workers and the control endpoint run
	lab_wait_line "$LAB_TMP/pinhole-$1.log" 'running with' 10 ||
		lab_fail "pinhole did not come up: $(tail -n 5 "$LAB_TMP/pinhole-$1.log")"
}

{ echo SEQUENTIAL; for i in $(seq 1 "$USERS"); do echo "user$i;"; done; } >"$LAB_TMP/users.csv"
start_server 1
phone=$(lab_phone_ip p1)
lab_sipp_bg p1-ph many register_many.xml -i "$phone" -p 5060 "$LAB_SRV_IP:5060" \
	-inf "$LAB_TMP/users.csv" -r 400 -m "$USERS" -key expires 3600 -timeout 30 \
	-recv_timeout 2000
SIPP_PID=$LAB_LAST_PID
sleep 2
kill -KILL "$SERVER_PID"
lab_log "server killed with SIGKILL while REGISTERs were arriving"
sleep 1
lab_kill "$SIPP_PID"

# every 200 OK the phone side saw names one acknowledged AOR
awk '/^SIP\/2.0 200/ {ok=1} ok && /^To:/ {sub(/.*<sip:/, ""); sub(/@.*/, ""); print; ok=0}' \
	"$LAB_TMP/many.messages.log" | sort -u >"$LAB_TMP/acked.txt"
acked=$(wc -l <"$LAB_TMP/acked.txt")
[ "$acked" -gt 0 ] || lab_fail "no REGISTER was answered before the kill"
[ "$acked" -lt "$USERS" ] || lab_fail "all $USERS were answered before the kill: raise USERS"

start_server 2
lab_exec srv "$PINHOLE" ctl --control 127.0.0.1:5080 --json registrations >"$LAB_TMP/after.json" ||
	lab_fail "ctl registrations failed"
jq -r '.registrations[].aor' "$LAB_TMP/after.json" | sed 's/@.*//' | sort -u >"$LAB_TMP/stored.txt"
missing=$(comm -23 "$LAB_TMP/acked.txt" "$LAB_TMP/stored.txt" | wc -l)
stored=$(wc -l <"$LAB_TMP/stored.txt")
lab_log "acknowledged before the kill: $acked, bindings after restart: $stored, acknowledged but lost: $missing"
[ "$missing" -eq 0 ] || lab_fail "$missing acknowledged bindings were lost: $(comm -23 "$LAB_TMP/acked.txt" "$LAB_TMP/stored.txt" | head -5)"
wan=$(lab_wan_ip p1)
bad=$(jq -r --arg wan "$wan" '.registrations[] | select((.source | startswith($wan + ":")) | not) | .aor' \
	"$LAB_TMP/after.json" | head -3)
[ -z "$bad" ] || lab_fail "bindings reloaded without their NAT source: $bad"
jq -e '[.registrations[] | select(.behind_nat != true)] | length == 0' "$LAB_TMP/after.json" >/dev/null ||
	lab_fail "bindings reloaded without the behind-NAT flag"
lab_log "PASS: every acknowledged binding survived SIGKILL with its NAT source $wan"
exit 0
