#!/bin/bash
# Lab test of issue 15, browser to browser: two headless Chromiums running the
# JsSIP page (tests/lab/browser), each behind its own endpoint-independent NAT,
# register to `pinhole serve` over ws:, and alice calls bob with audio (fake
# capture devices). Shows what docs/websocket.md says is covered for browser
# media:
#   - bob's page gets the offer with ICE and a=fingerprint as alice's browser
#     wrote it (the SDP passes the proxy untouched);
#   - the relay is not engaged: the proxy's decision counts why="webrtc"
#     ([relay] webrtc = pass, the default), proxy_media_relayed_total stays 0;
#   - ICE connects the browsers through both NATs with pinhole's STUN server
#     (server-reflexive candidates), and each page reports inbound audio packets
#     over a candidate pair whose remote end is the other NAT's address, not
#     the server's;
#   - alice hangs up, both pages see the end; screenshots of both pages are
#     kept (test_browser_call-alice.png, -bob.png in the working directory).
# Needs root, iptables, node, chromium, the npm packages of tests/lab/browser
# and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
BROWSER_DIR=$LAB_DIR/browser
SHOTS=${BROWSER_SHOTS:-$PWD}
NAT_T=${NAT_T:-60}

lab_require node chromium
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
[ -d "$BROWSER_DIR/node_modules/jssip" ] && [ -d "$BROWSER_DIR/node_modules/ws" ] ||
	lab_skip "npm packages missing in $BROWSER_DIR (scripts/deps.sh runs npm ci there)"
(cd "$BROWSER_DIR" && npm run --silent bundle) >/dev/null 2>&1 ||
	lab_fail "cannot bundle JsSIP for the page (npm run bundle in $BROWSER_DIR)"

lab_setup tbc
lab_add_nat e1 eim "$NAT_T" # alice's browser
lab_add_nat e2 eim "$NAT_T" # bob's
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 PAGE_PORT=8088

conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<EOF2
[sip]
listen = udp:$SRV:5060, ws:$SRV:8080
ws_origins = http://127.0.0.1:$PAGE_PORT
[registrar]
open = yes
[store]
path = $LAB_TMP/pinhole.db
[control]
listen = $CTL
[stun]
listen = udp:$SRV:3478
[relay]
address = $SRV
ports = 30000-30019
EOF2
lab_serve "$LAB_TMP/pinhole.log" "$conf" "$SRV:5060"

# counter NAME [LABELS]: a counter from the server's metrics
counter() { lab_metric "$CTL" "$@"; }
webrtc0=$(counter relay_decisions_total 'why="webrtc"')

# page NAME NS MODE [ARGS...]: a browser page in namespace NS
page() {
	local name=$1 ns=$2 mode=$3
	shift 3
	lab_start_bg "$ns" "$LAB_TMP/$name.log" node "$BROWSER_DIR/run.js" --name "$name" \
		--ws "ws://$SRV:8080" --uri "sip:$name@$SRV" --out "$LAB_TMP" --port "$PAGE_PORT" \
		--mode "$mode" --stun "stun:$SRV:3478" --secs 4 "$@"
}
page bob e2-ph answer
BOB=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/bob.log" '^page: registered 200' 60 ||
	lab_fail "bob's page did not register: $(tail -n 20 "$LAB_TMP/bob.log")"
page alice e1-ph call --target "sip:bob@$SRV"
ALICE=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/alice.log" '^page: (media|ended)' 90 ||
	lab_fail "alice's call did not come up: $(grep -E '^(page|exception)' "$LAB_TMP/alice.log")"
lab_wait_line "$LAB_TMP/bob.log" '^page: (media|ended)' 30 ||
	lab_fail "bob's side did not come up: $(grep -E '^(page|exception)' "$LAB_TMP/bob.log")"
for who in alice bob; do
	grep -E '^page: (calling|incoming|remote-sdp|confirmed|media|ended)' "$LAB_TMP/$who.log" |
		sed "s/^/$who /" >&2
done

# the offer reached bob as alice's browser wrote it: ICE and DTLS
offer=$(grep -m1 '^page: remote-sdp offer' "$LAB_TMP/bob.log")
[[ $offer == *"ice=true fingerprint=true"* ]] || lab_fail "bob's offer lost ICE or DTLS: $offer"
# the relay was not engaged, and said why
[ "$(counter relay_decisions_total 'why="webrtc"')" -gt "$webrtc0" ] ||
	lab_fail "no relay decision why=\"webrtc\" counted"
[ "$(counter proxy_media_relayed_total)" -eq 0 ] || lab_fail "the relay was engaged for a WebRTC call"
# audio both ways, peer to peer through the NATs
for who in alice bob; do
	other=$([ "$who" = alice ] && echo e2 || echo e1)
	m=$(grep -m1 '^page: media' "$LAB_TMP/$who.log")
	[ -n "$m" ] || lab_fail "$who: no media report: $(grep '^page' "$LAB_TMP/$who.log")"
	pk=$(sed -n 's/.*inbound_packets=\([0-9]*\).*/\1/p' <<<"$m")
	[ "${pk:-0}" -ge 50 ] || lab_fail "$who: only ${pk:-0} audio packets came in: $m"
	[[ $m == *":$(lab_wan_ip "$other"):"* ]] ||
		lab_fail "$who: media not from the other NAT ($(lab_wan_ip "$other")): $m"
done
lab_wait_line "$LAB_TMP/bob.log" '^page: ended' 15 || lab_fail "bob's page did not see the hang-up"
lab_kill "$ALICE"
lab_kill "$BOB"
for who in alice bob; do
	[ -s "$LAB_TMP/$who.png" ] || lab_fail "no screenshot of $who's page"
	cp "$LAB_TMP/$who.png" "$SHOTS/test_browser_call-$who.png"
done
lab_log "screenshots kept: $SHOTS/test_browser_call-{alice,bob}.png"
lab_log "PASS"
