#!/bin/bash
# Lab test of issue 15, TLS through real NAT: `pinhole serve` with a tls:
# listener and a certificate made here at run time by a test CA (openssl; no
# key is kept in the tree).
#   - bob, a `pinhole ua` behind a symmetric NAT, registers over TLS trusting
#     the test CA (--ca): ctl flows shows his flow as tls, its TLS version, from
#     the NAT's address;
#   - alice, behind another symmetric NAT, calls him over UDP: the INVITE
#     reaches bob over his TLS connection, the call has two-way audio, and the
#     server opened no connection of its own (net_tcp_connects_total stays 0:
#     no new connection toward the NAT, which could not have passed anyway);
#   - a ua that does not trust the server's certificate (no --ca: the system
#     store does not know the test CA) refuses it: exit 8, "certificate not
#     trusted", and the server counts a certificate failure;
#   - plain-text SIP to the TLS port: closed unanswered, counted;
#   - where baresip is installed: carol, a baresip behind a third symmetric
#     NAT, registers over TLS, and alice's call reaches her over her TLS
#     connection (answered, carol's audio reaches alice), again with no
#     connection opened by the server.
# Needs root, iptables, openssl, jq and $PINHOLE; baresip optional.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}
SECS=${SECS:-6} # more than one 5 s RTCP interval

lab_require jq openssl
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua --help 2>&1 | grep -q -- '--ca FILE' || lab_skip "pinhole ua has no tls: flows yet"

lab_setup ttls
lab_add_nat s1 sym "$NAT_T"
lab_add_nat s2 sym "$NAT_T"
lab_add_nat s3 sym "$NAT_T"
lab_add_host caller 198.18.0.50
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080

# --- the test CA and the server's certificate (for its address: RFC 5922) ----
C=$LAB_TMP/certs
lab_test_certs "$C" "$SRV"

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060, tls:$SRV:5061
	[tls]
	certificate = $C/srv.pem
	private_key = $C/srv.key
EOF2
lab_conf_tail "$LAB_TMP/pinhole.db" "$CTL" "$SRV" 30000-30039 auto >>"$conf"
log=$LAB_TMP/pinhole.log
lab_serve "$log" "$conf"
grep -q "sip listening on tls:$SRV:5061" "$log" || lab_fail "no tls: listener: $(cat "$log")"

counter() { lab_counter "$CTL" "$1"; }

# --- a ua that does not trust the certificate refuses it -----------------------
lab_exec s2-ph timeout 20 "$PINHOLE" ua register --once --state "$LAB_TMP/eve.state" \
	--proxy "tls:$SRV:5061" "sip:bob@$SRV" >"$LAB_TMP/untrusted.log" 2>&1 </dev/null
rc=$?
lab_log "untrusted: exit $rc: $(grep -m1 flow-down "$LAB_TMP/untrusted.log")"
[ "$rc" -eq 8 ] || lab_fail "a ua without the CA exited $rc, not 8: $(cat "$LAB_TMP/untrusted.log")"
grep -q 'certificate not trusted' "$LAB_TMP/untrusted.log" ||
	lab_fail "no clear message for an untrusted certificate: $(cat "$LAB_TMP/untrusted.log")"
i=0
until [ "$(counter 'tls_handshake_failures_total{cause=certificate}')" -ge 1 ]; do
	[ "$i" -ge 50 ] && lab_fail "the server did not count the refused handshake"
	sleep 0.1; i=$((i + 1))
done
[ "$(lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" | jq '.registrations | length')" -eq 0 ] ||
	lab_fail "a refused ua left a binding"

# --- plain text to the TLS port ------------------------------------------------
# shellcheck disable=SC2016 # expanded by the inner shell
out=$(lab_exec caller timeout 5 bash -c 'exec 3<>/dev/tcp/$0/5061 || exit 9
	printf "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.0.50:5070;branch=z9hG4bKp\r\nFrom: <sip:x@198.18.0.50>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: plain\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n" "$0" "$0" >&3
	cat <&3' "$SRV")
rc=$?
[ "$rc" -ne 9 ] && [ "$rc" -ne 124 ] || lab_fail "plain text: connect failed or the server kept the connection open ($rc)"
[ -z "$out" ] || lab_fail "the server answered plain text on the TLS port: $out"
[ "$(counter 'tls_handshake_failures_total{cause=plaintext}')" -eq 1 ] ||
	lab_fail "plain text to the TLS port was not counted"
lab_log "plain text to the TLS port: closed unanswered, counted"

# --- bob registers over TLS from behind his NAT --------------------------------
lab_start_bg s2-ph "$LAB_TMP/bob.log" "$PINHOLE" ua register --json --auto-answer \
	--state "$LAB_TMP/bob.state" --ca "$C/ca.pem" --proxy "tls:$SRV:5061" "sip:bob@$SRV"
BPID=$LAB_LAST_PID
for i in $(seq 1 100); do
	grep -q '"event":"registered"' "$LAB_TMP/bob.log" && break
	sleep 0.1
done
[ "$i" -lt 100 ] || lab_fail "bob did not register over TLS: $(cat "$LAB_TMP/bob.log")"
flows=$(lab_exec srv "$PINHOLE" ctl flows --json --control "$CTL")
f=$(jq -c '[.flows[] | select(.transport == "tls")]' <<<"$flows")
lab_log "bob's flow: $f"
[ "$(jq length <<<"$f")" -eq 1 ] || lab_fail "not one tls flow: $flows"
[ "$(jq -r '.[0].remote | split(":")[0]' <<<"$f")" = "$(lab_wan_ip s2)" ] ||
	lab_fail "bob's flow is not from his NAT $(lab_wan_ip s2): $f"
jq -e '.[0].tls_version | test("^TLSv1\\.[23]$")' <<<"$f" >/dev/null || lab_fail "no TLS version: $f"
b=$(lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
	jq -c '[.registrations[] | select(.aor == "bob@'"$SRV"'")]')
[ "$(jq -r '.[0].transport' <<<"$b")" = tls ] || lab_fail "bob's binding is not over tls: $b"

# --- alice calls him: the INVITE comes down his TLS connection -----------------
lab_call_down_flow "$CTL" "$SRV" "$SECS" tls "TLS connection" "$f"
lab_log "tls counters: $(lab_exec srv "$PINHOLE" ctl counters --control "$CTL" | jq -c 'with_entries(select(.key | startswith("tls_")))')"
# bob's connection left OpenSSL after its handshake ([tls] park): the call
# ran over pinhole's own TLS 1.3 record layer, nothing failed on it
[ "$(counter tls_parked_total)" -ge 1 ] || lab_fail "bob's TLS connection was not parked"
[ "$(counter 'tls_parked_closed_total{cause=decrypt}')" -eq 0 ] &&
	[ "$(counter 'tls_parked_closed_total{cause=protocol}')" -eq 0 ] ||
	lab_fail "a parked connection failed: $(lab_exec srv "$PINHOLE" ctl counters --control "$CTL")"

kill -TERM "$BPID"
lab_wait "$BPID" 10
rc=$?
[ "$rc" -eq 0 ] || lab_fail "bob exited $rc after SIGTERM"

# --- a real client: baresip over TLS ------------------------------------------
if command -v baresip >/dev/null; then
	bs=$LAB_TMP/baresip
	mkdir -p "$bs"
	# an 8 kHz tone for its audio source (ausine only does 48 kHz)
	python3 -c "
import math, struct, wave
w = wave.open('$bs/tone.wav', 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000 * 60)))" ||
		lab_fail "cannot write the tone"
	cat >"$bs/config" <<-EOF2
		poll_method	epoll
		sip_listen	$(lab_phone_ip s3):0
		sip_cafile	$C/ca.pem
		module_path	/usr/lib/baresip/modules
		module		g711.so
		module		aufile.so
		module_app	account.so
		module_app	menu.so
		audio_player	aufile,/dev/null
		audio_alert	aufile,/dev/null
		audio_source	aufile,$bs/tone.wav
	EOF2
	printf '<sip:carol@%s;transport=tls>;outbound="sip:%s:5061;transport=tls";regint=120;answermode=auto\n' \
		"$SRV" "$SRV" >"$bs/accounts"
	lab_start_bg s3-ph "$LAB_TMP/baresip.log" baresip -f "$bs"
	CPID=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/baresip.log" 'carol@.*200 OK' 10 ||
		lab_fail "baresip did not register over TLS: $(tail -n 5 "$LAB_TMP/baresip.log")"
	c=$(lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c '[.registrations[] | select(.aor == "carol@'"$SRV"'")]')
	lab_log "carol (baresip): $c"
	[ "$(jq -r '.[0].transport' <<<"$c")" = tls ] &&
		[ "$(jq -r '.[0].source | split(":")[0]' <<<"$c")" = "$(lab_wan_ip s3)" ] ||
		lab_fail "carol's binding is not tls from her NAT $(lab_wan_ip s3): $c"
	lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/alice.state" \
		--aor "sip:alice@$SRV" --proxy "udp:$SRV:5060" --duration "$SECS" "sip:carol@$SRV" \
		>"$LAB_TMP/alice-carol.log" 2>"$LAB_TMP/alice-carol.err" </dev/null
	RC=$?
	A=$(lab_ua_verdict "$LAB_TMP/alice-carol.log")
	lab_log "alice -> carol (baresip over TLS): exit $RC verdict $A"
	# answered, and carol's tone reached alice; baresip may send no RTCP, so
	# alice's verdict may stay "unconfirmed" (exit 6) rather than two-way
	[ "$RC" -eq 0 ] || { [ "$RC" -eq 6 ] && [ "$(jq -r .verdict <<<"$A")" = unconfirmed ]; } ||
		lab_fail "the call to baresip: alice exited $RC: $(cat "$LAB_TMP/alice-carol.err")"
	[ "$(jq '.in.packets' <<<"$A")" -ge $((SECS * 50 * 9 / 10)) ] ||
		lab_fail "too little of carol's audio reached alice: $A"
	grep -q 'Call established' "$LAB_TMP/baresip.log" || lab_fail "baresip did not see the call"
	[ "$(counter net_tcp_connects_total)" -eq 0 ] ||
		lab_fail "the server opened a connection for the call to baresip"
	# baresip's connection too was parked, and carried the call without a fault
	[ "$(counter tls_parked_total)" -ge 2 ] || lab_fail "baresip's TLS connection was not parked"
	[ "$(counter 'tls_parked_closed_total{cause=decrypt}')" -eq 0 ] &&
		[ "$(counter 'tls_parked_closed_total{cause=protocol}')" -eq 0 ] ||
		lab_fail "a parked connection failed with baresip"
	lab_kill "$CPID"
else
	lab_log "no baresip: its part skipped"
fi
lab_log "PASS"
exit 0
