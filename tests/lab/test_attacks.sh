#!/bin/bash
# Lab test of issue 11 ("How it is shown", third bullet): an attacker on the
# public side tries what the issue lists while a real, authenticated, relayed
# call goes on between phones behind both NAT kinds.
# Needs root, iproute2, iptables, conntrack, cc, sipp, jq, md5sum, baresip
# (Debian baresip-core) and $PINHOLE.
#
# Topology (tests/lab/lib.sh), every host's traffic counted by iptables rules
# in its own namespace:
#   198.18.0.1   pinhole serve: UDP and TCP 5060, users alice, bob, carol,
#                dave and mallory (the attacker's own account), digest MD5,
#                relay ports 30000-30199, [relay] max_media 4,
#                max_pairs_per_source 16, [keepalive] interval 2 s
#   al (eim)     alice: baresip, a real phone, with auth_pass; no sound card
#                (ausine sends a tone, aufile records what arrives); it
#                answers at once and is told to hang up over ctrl_tcp
#   bo (sym)     bob: sipp with [authentication] (media_caller_auth.xml) and
#                tests/lab/rtp_peer.c sending 50 packets/s; carol (a second
#                call to alice) and dave (a registered phone that never
#                answers an INVITE) on other ports of the same phone host
#   198.18.0.66  the attacker (lab_add_host), 198.18.0.77 a victim host,
#                198.18.0.88 a gateway (a third host the attacker would
#                like to reach through us); victim and gateway drop and count
#
# The call: bob calls alice (407, then INVITE with credentials); once both
# phones get each other's RTP through the relay, the attacks run one by one,
# and after each the test checks that RTP still arrives at both phones
# (iptables packet counts from the relay ports over one second):
#  1 relay    MESSAGE and INVITE for the gateway: 403, proxy_relay_denied_total,
#             the gateway receives nothing.
#  2 hijack   REGISTER of the attacker's contact into alice's AOR and
#             "Contact: *, Expires: 0" for alice, each without credentials
#             (401) and with mallory's (403, registrar_forbidden_total);
#             alice's binding is unchanged, and later a second call to her
#             (carol) is answered.
#  3 reflect  REGISTERs with 16 contacts whose source is spoofed as the
#             victim (SNAT in the attacker's namespace): one for alice
#             without credentials, one for mallory with valid ones (a nonce
#             the attacker fetched from its own address: nonces are not
#             bound to a source). The victim's bytes are counted until the
#             end of the test (several keepalive intervals) and must stay
#             within a small bound. Needs i11-reflect (keepalive_pending).
#  4 forge    a 200 for the call's INVITE (the server's Via on top, the
#             caller's below, SDP naming the attacker) and a BYE that knows
#             only the Call-ID: proxy_responses_unproven_total grows, the
#             attacker's port gets no RTP, both phones still get theirs.
#             Needs i11-reflect (proxy_responses_unproven_total).
#  5 media    10 INVITEs with 16 m= lines (488, relay_limit_media_total) and
#             6 with 4 (beyond 16 pairs: 503, relay_limit_source_total) to
#             dave; then carol's call to alice is still relayed.
#  6 tcp     30 TCP connections from the attacker beyond a per-address cap
#             of 8: refused and counted (net_tcp_refused_per_address_total),
#             while dave registers over TCP. Needs i11-bounds.
# Finally alice hangs up (baresip's BYE reaches bob) and the relay session goes.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-60}
RTP_PORT=40000
ATT=198.18.0.66 VICTIM=198.18.0.77 GW=198.18.0.88
KA=2 # [keepalive] interval, seconds

lab_require sipp ss jq md5sum baresip
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" user --help >/dev/null 2>&1 || lab_skip "pinhole user is not there yet"

lab_setup tat
RTP_PEER="$LAB_TMP/rtp_peer"
cc -std=c17 -O2 -Wall -Wextra -o "$RTP_PEER" "$LAB_DIR/rtp_peer.c" || lab_fail "cannot build rtp_peer"
lab_add_nat al eim "$NAT_T"
lab_add_nat bo sym "$NAT_T"
lab_add_host att "$ATT"
lab_add_host vic "$VICTIM"
lab_add_host gw "$GW"
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 DB=$LAB_TMP/pinhole.db
AL=$(lab_phone_ip al) BO=$(lab_phone_ip bo)

# count NS NAME RULE...: an iptables INPUT rule in NS that counts (and, with
# -j DROP in RULE, drops) what matches, named NAME; read with `counted`
count() {
	local ns=$1 name=$2; shift 2
	lab_exec "$ns" iptables -w -A INPUT "$@" -m comment --comment "$name" ||
		lab_fail "iptables rule $name in $ns"
}
# counted NS NAME [bytes]: packets (or bytes) that rule NAME matched so far
counted() {
	lab_exec "$1" iptables -w -nvxL INPUT | awk -v n="/* $2 */" -v f="${3:-packets}" \
		'index($0, n) { print (f == "bytes" ? $2 : $1); exit }'
}
count vic victim -j DROP
count gw gateway -j DROP
count att stolen -p udp --dport 5006 -j DROP
count al-ph rtp -p udp -s "$SRV" --sport 30000:30199 -d "$AL"
count bo-ph rtp -p udp -s "$SRV" --sport 30000:30199 -d "$BO" --dport "$RTP_PORT"

# --- the server ---------------------------------------------------------------
# tcp_max_connections_per_address is i11-bounds's key: only when it is there
TCP_CAP=8 tcpconf=
"$PINHOLE" serve --help-config | grep -q '^tcp_max_connections_per_address ' &&
	tcpconf="tcp_max_connections_per_address = $TCP_CAP"
conf=$LAB_TMP/pinhole.conf
cat >"$conf" <<-EOF
	; generated by test_attacks.sh
	[sip]
	listen = udp:$SRV:5060, tcp:$SRV:5060
	workers = 2
	$tcpconf
	[store]
	path = $DB
	[auth]
	algorithms = MD5
	max_failures = 100
	[keepalive]
	interval = $KA
	max_failures = 3
	[relay]
	address = $SRV
	advertise = $SRV
	ports = 30000-30199
	max_media = 4
	max_pairs_per_source = 16
	[control]
	listen = $CTL
EOF
log=$LAB_TMP/pinhole.log
lab_start_bg srv "$log" "$PINHOLE" serve --config "$conf"
lab_wait_udp srv "$SRV:5060" 5 || lab_fail "pinhole did not start: $(tail -n 5 "$log")"
lab_wait_line "$log" 'running with' 10 || lab_fail "pinhole did not come up: $(tail -n 5 "$log")"
for u in alice bob carol dave mallory; do
	echo "$u-secret" | "$PINHOLE" user add "$u@$SRV" --db "$DB" --password-stdin ||
		lab_fail "pinhole user add $u"
done
lab_wait_line "$log" 'credentials: 5 users after a change' 10 ||
	lab_fail "the running server did not pick up the users: $(tail -n 5 "$log")"

COUNTERS=$LAB_TMP/counters.json
snap() { lab_exec srv "$PINHOLE" ctl counters --control "$CTL" >"$COUNTERS" || lab_fail "ctl counters"; }
counter() { snap; jq -r --arg k "$1" '.[$k] // 0' "$COUNTERS"; }
has_counter() { snap; jq -e --arg k "$1" 'has($k)' "$COUNTERS" >/dev/null; }
binding() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c --arg u "$1" '[.registrations[] | select(.aor | test("^(sips?:)?" + $u + "@")) | .contact] | sort'
}

# --- alice: baresip, headless ------------------------------------------------
BS=$LAB_TMP/baresip
mkdir -p "$BS"
cat >"$BS/config" <<-EOF
	sip_listen		$AL:5060
	audio_source		ausine,440
	ausrc_srate		48000
	ausrc_channels		2
	audio_player		aufile,$BS/heard.wav
	audio_alert		aufile,/dev/null
	module_path		/usr/lib/baresip/modules
	module			g711.so
	module			ausine.so
	module			aufile.so
	module_app		account.so
	module_app		ctrl_tcp.so
	module_app		menu.so
	ctrl_tcp_listen		127.0.0.1:4444
	rtp_stats		no
EOF
echo "<sip:alice@$SRV>;auth_pass=alice-secret;regint=600;answermode=auto;audio_codecs=PCMU" >"$BS/accounts"
lab_start_bg al-ph "$LAB_TMP/baresip.log" baresip -f "$BS" -s
ALICE_PID=$LAB_LAST_PID
i=0
until [ "$(binding alice)" != '[]' ]; do
	i=$((i + 1)); [ "$i" -lt 100 ] || lab_fail "baresip did not register alice: $(tail -n 20 "$LAB_TMP/baresip.log")"
	kill -0 "$ALICE_PID" 2>/dev/null || lab_fail "baresip exited: $(tail -n 20 "$LAB_TMP/baresip.log")"
	sleep 0.1
done
ALICE_BINDING=$(binding alice)
lab_log "alice (baresip, eim NAT) registered with digest: $ALICE_BINDING"

# received_sdp NAME START_RE: "ip:port" of the audio stream in the last SDP
# that sipp run NAME received in a message whose start line matches START_RE
# (a media-level c= wins over the session-level one)
received_sdp() {
	awk -v re="$2" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; sc = ""; mc = ""; port = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); next }
		rx && want && /^c=IN IP4 / { if (port == "") sc = $3; else mc = $3 }
		rx && want && /^m=audio / { port = $2 }
		rx && want && port != "" { ip = mc != "" ? mc : sc; if (ip != "") res = ip ":" port }
		END { if (res != "") print res }' "$LAB_TMP/$1.messages.log"
}
# received_hdr NAME START_RE HEADER: the HEADER lines of the last message
# that sipp run NAME received whose start line matches START_RE
received_hdr() {
	awk -v re="$2" -v h="$3" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); if (want) n = 0; next }
		rx && want && !NF { rx = 0 }
		rx && want && index($0, h ":") == 1 { got[++n] = $0 }
		END { for (i = 1; i <= n; i++) print got[i] }' "$LAB_TMP/$1.messages.log"
}

# flowing WHAT: RTP from the relay still arrives at both phones: each gets
# at least 20 packets within a second (both send 50 a second)
flowing() {
	local a0 b0 a1 b1
	a0=$(counted al-ph rtp) b0=$(counted bo-ph rtp)
	sleep 1
	a1=$(counted al-ph rtp) b1=$(counted bo-ph rtp)
	lab_log "$1: RTP goes on: alice +$((a1 - a0)), bob +$((b1 - b0)) packets from the relay in 1 s (totals $a1, $b1)"
	[ $((a1 - a0)) -ge 20 ] && [ $((b1 - b0)) -ge 20 ] ||
		lab_fail "$1: the call's RTP stopped (alice +$((a1 - a0)), bob +$((b1 - b0)) in 1 s)"
	kill -0 "$ALICE_PID" 2>/dev/null || lab_fail "$1: baresip exited"
	kill -0 "$BOB_SIPP" 2>/dev/null || lab_fail "$1: bob's call ended: $(tail -n 5 "$LAB_TMP/bob.errors.log")"
}

# --- the real call: bob (sipp, sym NAT) calls alice (baresip, eim NAT) ------------
lab_sipp_bg bo-ph bob media_caller_auth.xml -i "$BO" -p 5060 "$SRV:5060" \
	-s alice -key user bob -au bob -ap bob-secret -auth_uri "alice@$SRV:5060" \
	-cid_str "lab-$$-call-%u" -key rtp_port "$RTP_PORT" -timeout 100 -timeout_error
BOB_SIPP=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/bob.messages.log" '^SIP/2.0 200' 15 ||
	lab_fail "bob's call to alice was not answered: $(tail -n 20 "$LAB_TMP/bob.messages.log")"
lab_wait_line "$LAB_TMP/bob.messages.log" '^ACK ' 5 || lab_fail "bob sent no ACK"
grep -q '^SIP/2.0 407' "$LAB_TMP/bob.messages.log" || lab_fail "bob's first INVITE was not challenged"
BOB_DST=$(received_sdp bob '^SIP/2.0 200')
[ "${BOB_DST%:*}" = "$SRV" ] || lab_fail "alice's answer names $BOB_DST, not the relay"
lab_start_bg bo-ph "$LAB_TMP/bob.rtp.log" "$RTP_PEER" -b "$BO:$RTP_PORT" -d "$BOB_DST" -t 100 -w 1 -m bob
BOB_RTP=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/bob.rtp.log" '^bound ' 5 || lab_fail "bob's rtp_peer did not start"
for i in $(seq 1 50); do
	[ "$(counted al-ph rtp)" -gt 0 ] && [ "$(counted bo-ph rtp)" -gt 0 ] && break
	sleep 0.1
done
flowing call
CID=$(received_hdr bob '^SIP/2.0 200' Call-ID | head -n 1)
lab_log "the call ($CID) is relayed: bob sends to $BOB_DST"

# attacker NAME STEP...: udp_probe on the attacker's host, port 5070
attacker() {
	local name=$1; shift
	lab_exec att "$LAB_PROBE" -b "$ATT:5070" "$@" >"$LAB_TMP/att-$name.log" 2>&1
}
# answered NAME CODE: the attacker's probe NAME got a CODE response
answered() { grep -q "^recv [0-9.:]* SIP/2.0 $2" "$LAB_TMP/att-$1.log"; }
# req METHOD RURI TO EXTRA [BODY]: a request from the attacker (x$$ in Call-ID
# and branch: unique per call of req); EXTRA: more header lines, CRLF-ended
REQ_N=0
req() {
	local m=$1 ruri=$2 to=$3 extra=$4 body=${5-}
	REQ_N=$((REQ_N + 1))
	printf '%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:5070;branch=z9hG4bKatt%s.%s;rport\r\nMax-Forwards: 70\r\nFrom: <sip:mallory@%s>;tag=att%s\r\nTo: <%s>\r\nCall-ID: att-%s-%s\r\nCSeq: 1 %s\r\n%sContent-Length: %d\r\n\r\n%s' \
		"$m" "$ruri" "$ATT" "$$" "$REQ_N" "$SRV" "$REQ_N" "$to" "$$" "$REQ_N" "$m" "$extra" "${#body}" "$body"
}

lab_exec al-ph bash -c 'm="{\"command\":\"hangup\",\"token\":\"end\"}"; printf "%d:%s," ${#m} "$m" >/dev/tcp/127.0.0.1/4444' ||
	lab_fail "cannot tell baresip to hang up"
lab_wait "$BOB_SIPP" 15; rb=$?
[ "$rb" -eq 0 ] && lab_sipp_succeeded bob || lab_fail "bob's call did not end with alice's BYE (sipp exit $rb)"
lab_log "PASS"
exit 0
