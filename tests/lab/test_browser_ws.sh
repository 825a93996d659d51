#!/bin/bash
# Lab test of issue 15, a real browser: headless Chromium runs a JsSIP page
# (tests/lab/browser, JsSIP from npm) behind a symmetric NAT; it registers to
# `pinhole serve` over ws: (SIP over WebSocket, RFC 7118), and a `pinhole ua`
# behind another symmetric NAT calls it:
#   - a WebSocket upgrade from a page of another Origin gets 403 and is closed;
#   - the page reports "registered 200"; the server's binding is over ws from
#     the NAT's public address, and its Contact has a .invalid host;
#   - the INVITE reaches the page over its WebSocket (our Via says WS, the
#     Record-Route names the flow with transport=ws), the page refuses it with
#     486, and the caller hears 486 (exit 4);
#   - then carol, a second page behind a third NAT, registers over wss:
#     (WebSocket over TLS, a certificate made here by a test CA; Chromium
#     accepts exactly that key, --ignore-certificate-errors-spki-list); her
#     binding is over wss, and bob's call reaches her with our Via
#     SIP/2.0/WSS and a sips: Record-Route with transport=ws;
#   - a screenshot of each page is kept (test_browser_ws.png and
#     test_browser_ws-wss.png in the working directory, ctest's build/tests).
# Media is not part of it: the browser would need DTLS-SRTP and ICE, which a
# plain RTP phone does not offer (docs/websocket.md).
# Needs root, iptables, jq, node, chromium, openssl, the npm packages of
# tests/lab/browser (scripts/deps.sh runs npm ci there) and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
BROWSER_DIR=$LAB_DIR/browser
SHOT=${BROWSER_SHOT:-$PWD/test_browser_ws.png}
NAT_T=${NAT_T:-30}

lab_require jq node chromium openssl
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
[ -d "$BROWSER_DIR/node_modules/jssip" ] && [ -d "$BROWSER_DIR/node_modules/ws" ] ||
	lab_skip "npm packages missing in $BROWSER_DIR (scripts/deps.sh runs npm ci there)"
(cd "$BROWSER_DIR" && npm run --silent bundle) >/dev/null 2>&1 ||
	lab_fail "cannot bundle JsSIP for the page (npm run bundle in $BROWSER_DIR)"

lab_setup tbw
lab_add_nat b1 sym "$NAT_T" # the browser's
lab_add_nat p1 sym "$NAT_T" # the caller's
lab_add_nat b2 sym "$NAT_T" # carol's browser (wss:)
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 PAGE_PORT=8088

# a test CA and the server's certificate for wss: (no key is kept in the tree)
C=$LAB_TMP/certs
lab_test_certs "$C" "$SRV"
SPKI=$(openssl x509 -in "$C/srv.pem" -pubkey -noout | openssl pkey -pubin -outform der |
	openssl dgst -sha256 -binary | base64)

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<EOF
[sip]
listen = udp:$SRV:5060, ws:$SRV:8080, wss:$SRV:8443
ws_origins = http://127.0.0.1:$PAGE_PORT
[tls]
certificate = $C/srv.pem
private_key = $C/srv.key
[registrar]
open = yes
[store]
path = $LAB_TMP/pinhole.db
[control]
listen = $CTL
EOF
lab_serve "$LAB_TMP/pinhole.log" "$conf" "$SRV:5060"

# counter NAME [LABELS]: a counter from the server's metrics
counter() { lab_metric "$CTL" "$@"; }

# --- another page's Origin: 403, once, closed ---------------------------------
refused0=$(counter ws_refused_total 'status="403"')
ans=$(lab_exec b1-ph timeout 5 bash -c '
	exec 3<>/dev/tcp/'"$SRV"'/8080 || exit 1
	printf "GET / HTTP/1.1\r\nHost: '"$SRV"'\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n\r\n" >&3
	cat <&3' | head -c 400)
[[ $ans == "HTTP/1.1 403 "* ]] || lab_fail "evil Origin: expected 403, got: $ans"
[ "$(counter ws_refused_total 'status="403"')" -eq $((refused0 + 1)) ] ||
	lab_fail "evil Origin: ws_refused_total{status=\"403\"} did not count it"
lab_log "evil Origin: $(head -n 1 <<<"$ans" | tr -d '\r'), closed, counted"

# --- the browser registers ----------------------------------------------------
lab_start_bg b1-ph "$LAB_TMP/browser.log" node "$BROWSER_DIR/run.js" \
	--ws "ws://$SRV:8080" --uri "sip:alice@$SRV" --out "$LAB_TMP" --port "$PAGE_PORT"
BPID=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/browser.log" '^page: (registered|registration-failed)' 60 ||
	lab_fail "the page did not register: $(tail -n 20 "$LAB_TMP/browser.log")"
grep -q '^page: registered 200' "$LAB_TMP/browser.log" ||
	lab_fail "registration failed: $(grep '^page:' "$LAB_TMP/browser.log")"
lab_log "$(grep -m1 '^page: registered' "$LAB_TMP/browser.log")"

lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" >"$LAB_TMP/regs.json"
b=$(jq -c '.registrations[] | select(.aor | test("^(sip:)?alice@"))' "$LAB_TMP/regs.json" | head -n 1)
[ -n "$b" ] || lab_fail "no binding for alice: $(cat "$LAB_TMP/regs.json")"
lab_log "binding: $b"
[ "$(jq -r .transport <<<"$b")" = ws ] || lab_fail "alice's binding is not over ws"
src=$(jq -r .source <<<"$b")
[ "${src%:*}" = "$(lab_wan_ip b1)" ] || lab_fail "binding source $src is not the NAT's $(lab_wan_ip b1)"
jq -r .contact <<<"$b" | grep -q '\.invalid' || lab_fail "the browser's Contact has no .invalid host"

# --- a call from a phone behind NAT -------------------------------------------
lab_exec p1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/bob.state" \
	--aor "sip:bob@$SRV" --proxy "udp:$SRV:5060" --duration 3 "sip:alice@$SRV" \
	>"$LAB_TMP/bob.log" 2>&1
rc=$?
lab_wait_line "$LAB_TMP/browser.log" '^page: incoming' 10 ||
	lab_fail "the INVITE did not reach the page: $(tail -n 20 "$LAB_TMP/browser.log")"
inc=$(grep -m1 '^page: incoming' "$LAB_TMP/browser.log")
lab_log "$inc"
[[ $inc == *"from=sip:bob@$SRV"* ]] || lab_fail "the page saw another caller: $inc"
[[ $inc == *"via=SIP/2.0/WS $SRV:8080;"* ]] || lab_fail "our Via is not WS $SRV:8080: $inc"
[[ $inc == *"transport=ws;"* ]] || lab_fail "no Record-Route over ws: $inc"
[[ $inc == *"ruri=sip:"*".invalid"* ]] || lab_fail "the INVITE is not for the .invalid Contact: $inc"
[ "$rc" -eq 4 ] || lab_fail "the caller exited $rc, not 4 (a 4xx): $(tail -n 5 "$LAB_TMP/bob.log")"
grep -q '486' "$LAB_TMP/bob.log" || lab_fail "the caller did not hear 486: $(tail -n 5 "$LAB_TMP/bob.log")"
lab_wait_line "$LAB_TMP/browser.log" '^page: ended' 10 || lab_fail "the page saw no end of the call"
lab_log "$(grep -m1 '^page: ended' "$LAB_TMP/browser.log"); the caller got 486, exit $rc"

lab_kill "$BPID" # SIGTERM: a last screenshot, then it exits
[ -s "$LAB_TMP/browser.png" ] || lab_fail "no screenshot: $(tail -n 5 "$LAB_TMP/browser.log")"
cp "$LAB_TMP/browser.png" "$SHOT" && lab_log "screenshot kept: $SHOT"

# --- carol over wss: ------------------------------------------------------------
lab_start_bg b2-ph "$LAB_TMP/carol.log" node "$BROWSER_DIR/run.js" --name carol \
	--ws "wss://$SRV:8443" --uri "sip:carol@$SRV" --out "$LAB_TMP" --port "$PAGE_PORT" \
	--spki "$SPKI"
CPID=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/carol.log" '^page: (registered|registration-failed)' 60 ||
	lab_fail "carol's page did not register over wss: $(tail -n 20 "$LAB_TMP/carol.log")"
grep -q '^page: registered 200' "$LAB_TMP/carol.log" ||
	lab_fail "carol: registration failed: $(grep '^page:' "$LAB_TMP/carol.log")"
lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" >"$LAB_TMP/regs2.json"
b=$(jq -c '.registrations[] | select(.aor | test("^(sip:)?carol@"))' "$LAB_TMP/regs2.json" | head -n 1)
[ "$(jq -r .transport <<<"$b")" = wss ] || lab_fail "carol's binding is not over wss: $b"
lab_exec p1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/bob.state" \
	--aor "sip:bob@$SRV" --proxy "udp:$SRV:5060" --duration 3 "sip:carol@$SRV" \
	>"$LAB_TMP/bob2.log" 2>&1
rc=$?
lab_wait_line "$LAB_TMP/carol.log" '^page: incoming' 10 ||
	lab_fail "the INVITE did not reach carol: $(tail -n 20 "$LAB_TMP/carol.log")"
inc=$(grep -m1 '^page: incoming' "$LAB_TMP/carol.log")
lab_log "wss: $inc"
[[ $inc == *"via=SIP/2.0/WSS $SRV:8443;"* ]] || lab_fail "our Via is not WSS $SRV:8443: $inc"
[[ $inc == *"record-route=<sips:"*"transport=ws;"* ]] || lab_fail "no sips: Record-Route over ws: $inc"
[ "$rc" -eq 4 ] || lab_fail "the caller exited $rc, not 4: $(tail -n 5 "$LAB_TMP/bob2.log")"
lab_wait_line "$LAB_TMP/carol.log" '^page: ended' 10 || lab_fail "carol's page saw no end of the call"
# carol's wss: connection (Chromium's TLS) is parked ([tls] park) while it is
# open, and carried her registration and the call without a fault. Parked
# once OpenSSL holds nothing, by the sweep (each second; reads stop before
# the one that would find it quiet): so asked before her page closes it,
# which would leave it unparked for good
i=0
until [ "$(counter tls_parked_total)" -ge 1 ] || [ "$i" -ge 50 ]; do
	sleep 0.1; i=$((i + 1))
done
lab_kill "$CPID"
[ -s "$LAB_TMP/carol.png" ] || lab_fail "no screenshot of carol's page"
cp "$LAB_TMP/carol.png" "${SHOT%.png}-wss.png" && lab_log "screenshot kept: ${SHOT%.png}-wss.png"
lab_log "ws counters: upgrades $(counter ws_upgrades_total), messages $(counter ws_messages_total)"
lab_log "tls: parked $(counter tls_parked_total), closed on bad input $(counter tls_parked_closed_total 'cause="decrypt"')/$(counter tls_parked_closed_total 'cause="protocol"')"
[ "$(counter tls_parked_total)" -ge 1 ] ||
	lab_fail "carol's wss: connection was not parked: $(lab_exec srv "$PINHOLE" ctl metrics \
		--control "$CTL" | grep -E "pinhole_(tls|ws)")"
[ "$(counter tls_parked_closed_total 'cause="decrypt"')" -eq 0 ] &&
	[ "$(counter tls_parked_closed_total 'cause="protocol"')" -eq 0 ] ||
	lab_fail "a parked wss: connection failed"
lab_log "PASS"
