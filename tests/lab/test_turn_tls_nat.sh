#!/bin/bash
# Lab test of issue 16, TURN over TLS: `pinhole serve` with a tls: TURN
# listener ([tls] certificate made here by a test CA) and coturn's
# turnutils_uclient over TLS (-S) behind a symmetric NAT (uclient does not
# check the server's certificate, even with -E: test_turn_tls's client does):
#   a) long-term credentials, to a public peer (turnutils_peer): every
#      message back, 0 lost;
#   b) coturn's shared-secret scheme, client to client through two
#      allocations of this server;
#   c) the allocations were made over TLS (ctl allocations: tls:, from the
#      NAT's address), handshakes counted;
#   d) TURN in plain text to the tls: port: no answer, closed, counted.
# (uclient -S tries older TLS versions first: those count as protocol failures.)
# Needs root, iptables, openssl, jq, turnutils_uclient and turnutils_peer
# (Debian `coturn`; its server is never started) and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
N=${N:-20}  # messages per allocation
L=${L:-172} # bytes per message (a G.711 RTP packet)

lab_require jq openssl timeout turnutils_uclient turnutils_peer
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" serve --help-config | grep -A3 '^\[turn\] listen\|turn\.listen\|listen.*TURN' | grep -q 'tls:' ||
	lab_skip "no tls: TURN listeners in this build"

lab_setup tttls
lab_add_nat s sym 30
lab_add_host peer 198.18.0.20
PEER_IP=198.18.0.20
SRV=$LAB_SRV_IP
SECRET=labsecret$$
REALM=turn.lab

C=$LAB_TMP/certs
lab_test_certs "$C" "$SRV" turn

printf 'alicepw\n' | "$PINHOLE" user add "alice@$REALM" --db "$LAB_TMP/users.db" \
	--password-stdin >/dev/null || lab_fail "pinhole user add"
conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[turn]
	listen = udp:$SRV:3478, tls:$SRV:5349
	realm = $REALM
	static_auth_secret = $SECRET
	relay_address = $SRV
	relay_ports = 49152-49999
	[tls]
	certificate = $C/srv.pem
	private_key = $C/srv.key
	[store]
	path = $LAB_TMP/users.db
	[control]
	listen = 127.0.0.1:5080
	[log]
	level = debug
EOF2
lab_start_bg srv "$LAB_TMP/pinhole.log" "$PINHOLE" serve --config "$conf"
lab_wait_line "$LAB_TMP/pinhole.log" "listening on tls:$SRV:5349" 10 ||
	lab_fail "no tls: TURN listener: $(tail -n 5 "$LAB_TMP/pinhole.log")"
lab_start_bg peer "$LAB_TMP/peer.log" turnutils_peer -L "$PEER_IP" -p 3480
lab_wait_udp peer "$PEER_IP:3480" 5 || lab_fail "turnutils_peer did not start"

metric() { lab_metric 127.0.0.1:5080 "$1"; } # NAME_WITH_LABELS

# uclient NAME ARGS...: coturn's client over TLS on the phone behind the NAT;
# fails the test unless every message came back.
uclient() {
	local name=$1; shift
	lab_exec s-ph timeout 60 turnutils_uclient -S -t -n "$N" -l "$L" -p 5349 "$@" "$SRV" \
		>"$LAB_TMP/$name.out" 2>&1
	local sent recv lost
	sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' "$LAB_TMP/$name.out" | tail -n1)
	recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' "$LAB_TMP/$name.out" | tail -n1)
	lost=$(sed -n 's/.*Total lost packets \([0-9]*\) .*/\1/p' "$LAB_TMP/$name.out" | tail -n1)
	[ -n "$sent" ] && [ "$sent" -gt 0 ] ||
		lab_fail "$name: nothing sent: $(tail -n 5 "$LAB_TMP/$name.out")"
	[ "$recv" = "$sent" ] && [ "$lost" = 0 ] ||
		lab_fail "$name: sent $sent, received ${recv:-?}, lost ${lost:-?}"
	lab_log "$name: $sent messages of $L bytes sent over TLS, all came back, 0 lost"
}

hs0=$(metric turn_tls_handshakes_total)
uclient lt-tls -u alice -w alicepw -e "$PEER_IP" -r 3480
uclient c2c-tls -y -W "$SECRET" -u dave

# c) the allocations were TLS ones, from the NAT; check one while it lives
lab_start_bg s-ph "$LAB_TMP/hold.out" timeout 20 turnutils_uclient -S -t -h -c \
	-n 1 -l "$L" -p 5349 -u alice -w alicepw -e "$PEER_IP" -r 3480 "$SRV"
HPID=$LAB_LAST_PID
for i in $(seq 1 100); do
	a=$(lab_exec srv "$PINHOLE" ctl allocations --json --control 127.0.0.1:5080)
	[ "$(jq '.count' <<<"$a")" -ge 1 ] && break
	sleep 0.1
done
lab_log "allocation: $(jq -c '.allocations[0] | {client, relayed, user}' <<<"$a")"
jq -e --arg w "tls:$(lab_wan_ip s):" '.allocations[0].client | startswith($w)' <<<"$a" >/dev/null ||
	lab_fail "the allocation is not tls: from the NAT $(lab_wan_ip s): $a"
kill "$HPID" 2>/dev/null
lab_wait "$HPID" 10
hs1=$(metric turn_tls_handshakes_total)
[ "$hs1" -ge $((hs0 + 3)) ] || lab_fail "TLS handshakes counted $hs0 -> $hs1"
lab_log "TLS handshakes: $((hs1 - hs0))"

# d) plain text to the TLS port: closed unanswered, counted
bad0=$(metric 'turn_tls_handshake_failures_total{cause="protocol"}')
# a STUN Binding request in plain text over TCP (what a TURN client speaks on tcp:)
# shellcheck disable=SC2016 # expanded by the inner shell
out=$(lab_exec s-ph timeout 10 bash -c 'exec 3<>/dev/tcp/$0/5349 || exit 9
	printf "\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl" >&3
	cat <&3 | od -An -tx1' "$SRV")
rc=$?
[ "$rc" -ne 9 ] && [ "$rc" -ne 124 ] || lab_fail "plain text: connect failed or the server kept the connection open ($rc)"
[ -z "$out" ] || lab_fail "the server answered plain TURN on the TLS port: $out"
bad1=$(metric 'turn_tls_handshake_failures_total{cause="protocol"}')
[ "$bad1" -gt "$bad0" ] || lab_fail "plain text to the TLS port was not counted ($bad0 -> $bad1)"
lab_log "plain TURN to the tls: port: refused, counted ($((bad1 - bad0)))"
lab_log "PASS"
exit 0
