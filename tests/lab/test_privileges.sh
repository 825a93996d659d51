#!/bin/bash
# Lab test of [process] user: `pinhole serve` started as root with the SIP
# side, the media relay (its eBPF fast path where the kernel allows), a
# SQLite store and the control endpoint, then running as `nobody`.
#   a) every thread of the process runs as nobody, real, effective and saved
#      ids alike (root cannot be taken back), with no capability left;
#   b) it still does its job: two `pinhole ua` behind symmetric NATs register
#      and call each other through the relay, two-way audio both sides; where
#      the fast path loaded, the kernel forwarded the call's RTP (its maps
#      updated after the switch); the store kept committing, without errors;
#   c) a user that does not exist stops the start with a clear message, before
#      any port is bound;
#   d) the TURN role started with it (user space: its threads' sockets and
#      loops set up before the switch) relays after it: tests/lab/turn_check
#      from behind a NAT through an echo peer, every payload intact both ways.
# Needs root, iptables, jq, the user `nobody`, turnutils_peer and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
SECS=${SECS:-4}

lab_require jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" serve --help-config | grep -q '^\[process\]' || lab_skip "no [process] section in this build"
NOBODY_UID=$(id -u nobody 2>/dev/null) || lab_skip "no user nobody"
NOBODY_GID=$(id -g nobody)

lab_require turnutils_peer
lab_setup tpv
lab_add_nat s1 sym 30
lab_add_nat s2 sym 30
lab_add_host peer 198.18.0.20
SRV=$LAB_SRV_IP
CTL=127.0.0.1:5080
PEER_IP=198.18.0.20
# TURN with shared-secret credentials: a user in the store would end the
# registrar's open mode
TURN_USER="$(($(date +%s) + 3600)):alice"
TURN_PASS=$(printf '%s' "$TURN_USER" | openssl dgst -sha1 -hmac turnsecret -binary | base64)
lab_start_bg peer "$LAB_TMP/peer.log" turnutils_peer -L "$PEER_IP" -p 3480
lab_wait_udp peer "$PEER_IP:3480" 5 || lab_fail "turnutils_peer did not start"
cc -std=c17 -O2 -Wall -Wextra -o "$LAB_TMP/turn_check" "$LAB_DIR/turn_check.c" -lcrypto ||
	lab_fail "cannot build turn_check"

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060
	[registrar]
	open = yes
	[store]
	path = $LAB_TMP/pinhole.db
	[control]
	listen = $CTL
	[relay]
	address = $SRV
	advertise = $SRV
	ports = 30000-30039
	[turn]
	listen = udp:$SRV:3478
	realm = turn.lab
	static_auth_secret = turnsecret
	relay_address = $SRV
	relay_ports = 49152-49199
	fastpath = off
	[process]
	user = nobody
EOF2
lab_serve "$LAB_TMP/pinhole.log" "$conf" "$SRV:5060"
PID=$LAB_LAST_PID
grep -q "running as user nobody (uid $NOBODY_UID, gid $NOBODY_GID), no capabilities" \
	"$LAB_TMP/pinhole.log" || lab_fail "no switch logged: $(tail -n 5 "$LAB_TMP/pinhole.log")"

# a) every thread, all four ids, no capability
n=0
for st in /proc/"$PID"/task/*/status; do
	u=$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' "$st")
	g=$(awk '$1 == "Gid:" { print $2, $3, $4, $5 }' "$st")
	ce=$(awk '$1 == "CapEff:" { print $2 }' "$st")
	cp=$(awk '$1 == "CapPrm:" { print $2 }' "$st")
	[ "$u" = "$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID" ] ||
		lab_fail "$st: Uid $u (saved or effective root left?)"
	[ "$g" = "$NOBODY_GID $NOBODY_GID $NOBODY_GID $NOBODY_GID" ] || lab_fail "$st: Gid $g"
	[ "$ce" = 0000000000000000 ] && [ "$cp" = 0000000000000000 ] ||
		lab_fail "$st: capabilities left: effective $ce, permitted $cp"
	n=$((n + 1))
done
[ "$n" -ge 2 ] || lab_fail "only $n threads seen"
lab_log "a) all $n threads run as nobody ($NOBODY_UID/$NOBODY_GID), saved ids too, no capabilities"

# b) the job: register, call through the relay, two-way both sides
FAST=no
grep -q 'fast path: latched IPv4 RTP forwarded in the kernel' "$LAB_TMP/pinhole.log" && FAST=yes
c0=$(lab_counter "$CTL" store_commits_total)
lab_start_bg s2-ph "$LAB_TMP/bob.log" "$PINHOLE" ua register --json --auto-answer \
	--state "$LAB_TMP/bob.state" --proxy "udp:$SRV:5060" "sip:bob@$SRV"
BPID=$LAB_LAST_PID
for i in $(seq 1 50); do
	grep -q '"event":"registered"' "$LAB_TMP/bob.log" && break
	sleep 0.1
done
[ "$i" -lt 50 ] || lab_fail "bob did not register: $(cat "$LAB_TMP/bob.log")"
lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/alice.state" \
	--aor "sip:alice@$SRV" --proxy "udp:$SRV:5060" --duration "$SECS" "sip:bob@$SRV" \
	>"$LAB_TMP/alice.log" 2>"$LAB_TMP/alice.err" </dev/null
RC=$?
sleep 0.5
kill -TERM "$BPID" 2>/dev/null
lab_wait "$BPID" 10
A=$(lab_ua_verdict "$LAB_TMP/alice.log") B=$(lab_ua_verdict "$LAB_TMP/bob.log")
lab_log "b) alice exit $RC verdict $A"
lab_log "b) bob verdict $B"
[ "$RC" -eq 0 ] || lab_fail "the call failed ($RC): $(cat "$LAB_TMP/alice.err")"
[ "$(jq -r .verdict <<<"$A")" = two-way ] || lab_fail "alice's verdict $A"
[ "$(jq -r .verdict <<<"$B")" = two-way ] || lab_fail "bob's verdict $B"
[ "$(jq -r '.remote_announced | split(":")[0]' <<<"$A")" = "$SRV" ] ||
	lab_fail "the call did not go through the relay: $A"
fp=$(lab_counter "$CTL" relay_fastpath_packets_total)
if [ "$FAST" = yes ]; then
	[ "$fp" -gt 0 ] || lab_fail "the fast path loaded but forwarded nothing after the switch"
	lab_log "b) the kernel forwarded $fp of the call's packets (maps updated as nobody)"
else
	lab_log "b) the relay's fast path did not load here: user space relayed the call"
fi
for i in $(seq 1 30); do
	[ "$(lab_counter "$CTL" store_commits_total)" -gt "$c0" ] && break
	sleep 0.1
done
c1=$(lab_counter "$CTL" store_commits_total)
[ "$c1" -gt "$c0" ] || lab_fail "the store committed nothing after the switch"
[ "$(lab_counter "$CTL" store_commit_errors_total)" = 0 ] || lab_fail "store commit errors as nobody"
lab_log "b) store: $((c1 - c0)) commits as nobody, no errors"
kill -0 "$PID" 2>/dev/null || lab_fail "pinhole exited: $(tail -n 5 "$LAB_TMP/pinhole.log")"

# d) TURN relays after the switch
grep -q 'turn: listening on udp:' "$LAB_TMP/pinhole.log" ||
	lab_fail "no TURN start logged: $(grep turn "$LAB_TMP/pinhole.log" | tail -n 3)"
lab_exec s1-ph timeout 60 "$LAB_TMP/turn_check" -s "$SRV:3478" -u "$TURN_USER" -w "$TURN_PASS" \
	-n 40 -l 160 echo "$PEER_IP:3480" >"$LAB_TMP/turn.out" 2>&1 ||
	lab_fail "TURN as nobody: $(tail -n 3 "$LAB_TMP/turn.out")"
lab_log "d) TURN as nobody: $(tail -n 1 "$LAB_TMP/turn.out") payloads unchanged"
kill -0 "$PID" 2>/dev/null || lab_fail "pinhole exited: $(tail -n 5 "$LAB_TMP/pinhole.log")"

# c) an unknown user: refused at once, nothing bound
sed 's/^\(\s*\)user = nobody/\1user = no-such-user-here/' "$conf" >"$LAB_TMP/bad.conf"
out=$(lab_exec srv timeout 10 "$PINHOLE" serve --config "$LAB_TMP/bad.conf" 2>&1)
rc=$?
[ "$rc" = 2 ] || lab_fail "an unknown user: exit $rc, not 2: $out"
grep -q 'user = no-such-user-here: no such user' <<<"$out" || lab_fail "an unknown user: $out"
lab_log "c) unknown user: exit 2, \"$out\""
lab_log "PASS"
exit 0
