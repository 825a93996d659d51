#!/bin/bash
# Lab test of issue 15, `pinhole ua` over WebSocket (RFC 7118) through real
# NAT: `pinhole serve` with a wss: listener (certificate made here by a test
# CA), an Origin list, and a ws: listener.
#   - a ua that does not trust the certificate refuses it: exit 8;
#   - a ua whose Origin is not on the list is refused by the server (403,
#     counted): exit 4, no binding;
#   - bob, a ua behind a symmetric NAT, registers over wss: trusting the test
#     CA, with the allowed Origin: his binding is a wss flow from the NAT's
#     address with a .invalid Contact; alice, behind another symmetric NAT,
#     calls him over UDP: the INVITE reaches bob over his WebSocket, the call
#     has two-way audio (through the relay), and the server opened no
#     connection of its own;
#     bob's own keepalives (WebSocket pings) are answered;
#   - carol registers over plain ws: from behind a third NAT and answers the
#     server's pings (the server counts pings and no ping timeout; her flow
#     stays up).
# Needs root, iptables, openssl, jq and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}
SECS=${SECS:-6} # more than one 5 s RTCP interval

lab_require jq openssl
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" ua --help 2>&1 | grep -q -- '--ws-origin' || lab_skip "pinhole ua has no ws: flows yet"

lab_setup tuws
lab_add_nat s1 sym "$NAT_T"
lab_add_nat s2 sym "$NAT_T"
lab_add_nat s3 sym "$NAT_T"
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080
ORIGIN=https://phone.lab.example

# --- the test CA and the server's certificate (for its address: RFC 5922) ----
C=$LAB_TMP/certs
lab_test_certs "$C" "$SRV"

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF2
	[sip]
	listen = udp:$SRV:5060, wss:$SRV:8443, ws:$SRV:8080
	ws_origins = $ORIGIN
	ws_ping_interval = 2
	ws_pong_timeout = 3
	[tls]
	certificate = $C/srv.pem
	private_key = $C/srv.key
EOF2
lab_conf_tail "$LAB_TMP/pinhole.db" "$CTL" "$SRV" 30000-30039 auto >>"$conf"
log=$LAB_TMP/pinhole.log
lab_serve "$log" "$conf"
grep -q "sip listening on wss:$SRV:8443" "$log" || lab_fail "no wss: listener: $(cat "$log")"

counter() { lab_counter "$CTL" "$1"; }
bindings() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c --arg a "$1@$SRV" '[.registrations[] | select(.aor == $a)]'
}

# --- failure paths --------------------------------------------------------------
lab_exec s2-ph timeout 20 "$PINHOLE" ua register --once --state "$LAB_TMP/eve.state" \
	--ws-origin "$ORIGIN" --proxy "wss:$SRV:8443" "sip:eve@$SRV" >"$LAB_TMP/untrusted.log" 2>&1 </dev/null
rc=$?
lab_log "untrusted certificate: exit $rc: $(grep -m1 flow-down "$LAB_TMP/untrusted.log")"
[ "$rc" -eq 8 ] || lab_fail "a ua without the CA exited $rc, not 8: $(cat "$LAB_TMP/untrusted.log")"
grep -q 'certificate not trusted' "$LAB_TMP/untrusted.log" ||
	lab_fail "no clear message for an untrusted certificate: $(cat "$LAB_TMP/untrusted.log")"

lab_exec s2-ph timeout 20 "$PINHOLE" ua register --once --state "$LAB_TMP/eve.state" \
	--ca "$C/ca.pem" --ws-origin https://evil.example --proxy "wss:$SRV:8443" "sip:eve@$SRV" \
	>"$LAB_TMP/origin.log" 2>&1 </dev/null
rc=$?
lab_log "foreign Origin: exit $rc: $(grep -m1 flow-down "$LAB_TMP/origin.log")"
[ "$rc" -eq 4 ] || lab_fail "a ua with a foreign Origin exited $rc, not 4: $(cat "$LAB_TMP/origin.log")"
grep -q 'refused the WebSocket upgrade: HTTP 403' "$LAB_TMP/origin.log" ||
	lab_fail "no clear message for the refused Origin: $(cat "$LAB_TMP/origin.log")"
[ "$(counter 'ws_refused_total{status=403}')" -eq 1 ] || lab_fail "the server did not count the 403"
[ "$(bindings eve)" = "[]" ] || lab_fail "a refused ua left a binding: $(bindings eve)"

# --- bob registers over wss: from behind his NAT -------------------------------
lab_start_bg s2-ph "$LAB_TMP/bob.log" "$PINHOLE" ua register --json --auto-answer --keepalive 3 \
	--state "$LAB_TMP/bob.state" --ca "$C/ca.pem" --ws-origin "$ORIGIN" \
	--proxy "wss:$SRV:8443" "sip:bob@$SRV"
BPID=$LAB_LAST_PID
for i in $(seq 1 100); do
	grep -q '"event":"registered"' "$LAB_TMP/bob.log" && break
	sleep 0.1
done
[ "$i" -lt 100 ] || lab_fail "bob did not register over wss: $(cat "$LAB_TMP/bob.log")"
flows=$(lab_exec srv "$PINHOLE" ctl flows --json --control "$CTL")
f=$(jq -c '[.flows[] | select(.transport == "wss")]' <<<"$flows")
lab_log "bob's flow: $f"
[ "$(jq length <<<"$f")" -eq 1 ] || lab_fail "not one wss flow: $flows"
[ "$(jq -r '.[0].remote | split(":")[0]' <<<"$f")" = "$(lab_wan_ip s2)" ] ||
	lab_fail "bob's flow is not from his NAT $(lab_wan_ip s2): $f"
jq -e '.[0].tls_version | test("^TLSv1\\.[23]$")' <<<"$f" >/dev/null || lab_fail "no TLS version: $f"
b=$(bindings bob)
lab_log "bob's binding: $b"
[ "$(jq -r '.[0].transport' <<<"$b")" = wss ] || lab_fail "bob's binding is not over wss: $b"
jq -e '.[0].contact | test("\\.invalid.*transport=ws")' <<<"$b" >/dev/null ||
	lab_fail "bob's Contact is not RFC 7118's .invalid with transport=ws: $b"

# --- alice calls him: the INVITE comes down his WebSocket -----------------------
lab_call_down_flow "$CTL" "$SRV" "$SECS" wss "WebSocket" "$f"

# bob's own keepalives (WebSocket pings every 2.4-3 s) were answered meanwhile
grep -q '"event":"keepalive-ok"' "$LAB_TMP/bob.log" ||
	lab_fail "bob's WebSocket ping got no pong: $(cat "$LAB_TMP/bob.log")"
kill -TERM "$BPID"
lab_wait "$BPID" 10
rc=$?
[ "$rc" -eq 0 ] || lab_fail "bob exited $rc after SIGTERM"

# --- carol over plain ws: answers the server's pings ---------------------------
# her own keepalive is far off, so the server hears nothing from her but her
# pongs: after 2 s of silence it pings, and closes after 3 s without a frame
pings0=$(counter ws_pings_total)
lab_start_bg s3-ph "$LAB_TMP/carol.log" "$PINHOLE" ua register --json --keepalive 60 \
	--state "$LAB_TMP/carol.state" --proxy "ws:$SRV:8080" "sip:carol@$SRV"
CPID=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/carol.log" '"event":"registered"' 10 ||
	lab_fail "carol did not register over ws: $(cat "$LAB_TMP/carol.log")"
sleep 8
c=$(bindings carol)
lab_log "carol's binding: $c"
[ "$(jq -r '.[0].transport' <<<"$c")" = ws ] &&
	[ "$(jq -r '.[0].source | split(":")[0]' <<<"$c")" = "$(lab_wan_ip s3)" ] ||
	lab_fail "carol's binding is not ws from her NAT $(lab_wan_ip s3): $c"
[ "$(counter ws_pings_total)" -gt "$pings0" ] || lab_fail "the server sent carol no ping"
[ "$(counter ws_ping_timeouts_total)" -eq 0 ] || lab_fail "the server timed out a ping"
grep -q flow-down "$LAB_TMP/carol.log" && lab_fail "carol's flow went down: $(cat "$LAB_TMP/carol.log")"
kill -TERM "$CPID"
lab_wait "$CPID" 10
rc=$?
[ "$rc" -eq 0 ] || lab_fail "carol exited $rc after SIGTERM"
lab_log "ws counters: $(lab_exec srv "$PINHOLE" ctl counters --control "$CTL" | jq -c 'with_entries(select(.key | startswith("ws_")))')"
lab_log "PASS"
exit 0
