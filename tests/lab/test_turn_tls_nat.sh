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
#   d) TURN in plain text to the tls: port: no answer, closed, counted;
#   e) `pinhole probe --turn-over udp,tcp,tls` from behind the NAT: all three
#      work, TLS with the certificate checked against the lab's CA;
#   f) the NAT's firewall lets only TLS out (UDP and TCP 3478 dropped): the
#      probe says TURN works over tls only, within its bound;
#   g) the probe without the lab's CA refuses the server's certificate (exit 7)
#      and allocates nothing.
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
	listen = udp:$SRV:3478, tcp:$SRV:3478, tls:$SRV:5349
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

# e) the probe over each transport from behind the NAT
# probe NAME ARGS...: `pinhole probe --turn --json` from the phone; its status in $prc
probe() {
	local name=$1; shift
	lab_exec s-ph timeout 60 env PINHOLE_TURN_PASSWORD=alicepw "$PINHOLE" probe --turn \
		--turn-user alice --json "$@" "$SRV" >"$LAB_TMP/$name.json" 2>"$LAB_TMP/$name.err"
	prc=$?
	jq -e . "$LAB_TMP/$name.json" >/dev/null ||
		lab_fail "$name: no JSON (exit $prc): $(cat "$LAB_TMP/$name.json" "$LAB_TMP/$name.err")"
}
probe probe-all --turn-over udp,tcp,tls --ca "$C/ca.pem"
[ "$prc" = 0 ] || lab_fail "probe over udp,tcp,tls: exit $prc: $(cat "$LAB_TMP/probe-all.json")"
works=$(jq -c '.works_over' "$LAB_TMP/probe-all.json")
[ "$works" = '["udp:3478","tcp:3478","tls:5349"]' ] || lab_fail "probe works over $works"
jq -e --arg m "$(lab_wan_ip s)" '[.turn_checks[] | select(.peer_to_client and .client_to_peer
	and (.mapped | startswith($m + ":")))] | length == 3' "$LAB_TMP/probe-all.json" >/dev/null ||
	lab_fail "probe: not every check went both ways from the NAT: $(cat "$LAB_TMP/probe-all.json")"
jq -e '.turn_checks[2].tls_version == "TLSv1.3"' "$LAB_TMP/probe-all.json" >/dev/null ||
	lab_fail "probe: tls check without TLS 1.3: $(jq -c '.turn_checks[2]' "$LAB_TMP/probe-all.json")"
lab_log "probe from behind the NAT: TURN works over $works"

# f) a firewall on the NAT that only lets TLS out: UDP and TCP 3478 dropped
lab_exec s iptables -w -I FORWARD -d "$SRV" -p udp --dport 3478 -j DROP
lab_exec s iptables -w -I FORWARD -d "$SRV" -p tcp --dport 3478 -j DROP
t0=$(date +%s)
probe probe-fw --turn-over udp,tcp,tls --ca "$C/ca.pem" --timeout 400
t1=$(date +%s)
lab_exec s iptables -w -D FORWARD -d "$SRV" -p udp --dport 3478 -j DROP
lab_exec s iptables -w -D FORWARD -d "$SRV" -p tcp --dport 3478 -j DROP
works=$(jq -c '.works_over' "$LAB_TMP/probe-fw.json")
[ "$works" = '["tls:5349"]' ] || lab_fail "behind the firewall the probe says TURN works over $works"
[ "$prc" = 1 ] || lab_fail "behind the firewall: exit $prc, not 1 (no answer over udp)"
jq -e '.turn_checks[0].answered == false and .turn_checks[1].reached == false' \
	"$LAB_TMP/probe-fw.json" >/dev/null ||
	lab_fail "behind the firewall: udp/tcp not reported dead: $(cat "$LAB_TMP/probe-fw.json")"
# 2 s per check (5 x --timeout); a dropped SYN must not cost the kernel's minutes
[ $((t1 - t0)) -le 15 ] || lab_fail "behind the firewall the probe took $((t1 - t0)) s"
lab_log "firewall letting only TLS out: the probe says tls only ($((t1 - t0)) s, exit $prc)"

# g) a certificate the probe has no reason to trust: refused, nothing allocated
n0=$(metric turn_allocations_total)
probe probe-untrusted --turn-tls
[ "$prc" = 7 ] || lab_fail "untrusted certificate: exit $prc, not 7: $(cat "$LAB_TMP/probe-untrusted.json")"
jq -e '.turn.certificate_refused and (.turn.allocated | not)' \
	"$LAB_TMP/probe-untrusted.json" >/dev/null ||
	lab_fail "untrusted certificate not reported: $(cat "$LAB_TMP/probe-untrusted.json")"
[ "$(metric turn_allocations_total)" = "$n0" ] || lab_fail "an allocation was made without trust"
lab_log "untrusted certificate: refused by the probe ($(jq -r .turn.error "$LAB_TMP/probe-untrusted.json"))"
lab_log "PASS"
exit 0
