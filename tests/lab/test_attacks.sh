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
#                answers at once and takes dial/hangup over ctrl_tcp
#   bo (sym)     bob: sipp with [authentication] (media_caller_auth.xml) and
#                tests/lab/rtp_peer.c sending 50 packets/s from port 40000;
#                carol: a second baresip on port 5068; dave: sipp on 5062, a
#                registered phone that never answers an INVITE
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
#             (from bob's phone) is answered.
#  3 reflect  REGISTERs with 16 contacts whose source is spoofed as the
#             victim (SNAT in the attacker's namespace): one for alice
#             without credentials, one for mallory with valid ones (a nonce
#             the attacker fetched from its own address: nonces are bound to
#             the source challenged, so both get a 401 at the victim and
#             nothing more). The victim's datagrams are counted until the
#             end of the test (several keepalive intervals): the two answers
#             only (skipped on a build without keepalive_pending).
#  4 forge    a 200 for the call's INVITE (the server's Via on top, the
#             caller's below, SDP naming the attacker) and a BYE that knows
#             only the Call-ID: proxy_responses_unproven_total grows, the
#             attacker's port gets no RTP, both phones still get theirs.
#             (Skipped on a build without that counter.)
#  5 media    10 INVITEs with 16 m= lines (488, counted by the proxy as
#             proxy_media_too_many_streams_total) and
#             6 with 4 (beyond 16 pairs: 503, relay_limit_source_total) to
#             dave; then the second call to alice is still relayed.
#  6 tcp      30 TCP connections from the attacker beyond a per-address cap
#             of 8: refused and counted (net_tcp_refused_per_address_total),
#             while dave registers over TCP (tcp_max_connections_per_address
#             is set only when the binary has it).
# Finally alice hangs up (baresip's BYE reaches bob), then calls carol: two
# real clients, the INVITE challenged 407, relayed RTP both ways, BYE.
# Bounded: about 150 SIP datagrams and 30 TCP connections from the attacker.
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
count bo-ph carol -p udp -s "$SRV" --sport 30000:30199 -d "$BO" --dport 41000:41099
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
lab_serve "$log" "$conf" "$SRV:5060"
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

# --- alice and carol: baresip, headless ------------------------------------------
# baresip NAME NS ADDR:PORT RTP_PORTS: a baresip for user NAME (password
# NAME-secret) in NS, config in $LAB_TMP/NAME.baresip, SIP trace in
# $LAB_TMP/NAME.baresip.log; ausine sends a tone (48 kHz stereo, resampled
# for PCMU), aufile records what arrives; it answers calls at once
# (answermode=auto) and takes commands on ctrl_tcp (127.0.0.1:4444 in NS,
# see bs_cmd). Its PID in LAB_LAST_PID once NAME is registered.
baresip() {
	local name=$1 ns=$2 listen=$3 rtp=$4 dir=$LAB_TMP/$1.baresip i=0 pid
	lab_baresip_config "$dir" "$listen" "$rtp" 'module_app account.so' 'module_app ctrl_tcp.so' \
		'module_app menu.so' 'ctrl_tcp_listen 127.0.0.1:4444' 'rtp_stats no'
	echo "<sip:$name@$SRV>;auth_pass=$name-secret;regint=600;answermode=auto;audio_codecs=PCMU" >"$dir/accounts"
	lab_start_bg "$ns" "$LAB_TMP/$name.baresip.log" /usr/bin/baresip -f "$dir" -s
	pid=$LAB_LAST_PID
	until [ "$(binding "$name")" != '[]' ]; do
		i=$((i + 1)); [ "$i" -lt 100 ] || lab_fail "baresip did not register $name: $(tail -n 20 "$LAB_TMP/$name.baresip.log")"
		kill -0 "$pid" 2>/dev/null || lab_fail "baresip ($name) exited: $(tail -n 20 "$LAB_TMP/$name.baresip.log")"
		sleep 0.1
	done
	LAB_LAST_PID=$pid
}
# bs_cmd NS COMMAND [PARAMS]: a command to the baresip in NS (ctrl_tcp: a
# netstring holding JSON)
bs_cmd() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	lab_exec "$1" bash -c 'm="{\"command\":\"$1\",\"params\":\"$2\",\"token\":\"t\"}"
		printf "%d:%s," ${#m} "$m" >/dev/tcp/127.0.0.1/4444' bs_cmd "$2" "${3-}" ||
		lab_fail "cannot send '$2' to baresip in $1"
}
baresip alice al-ph "$AL:5060" 42000-42099
ALICE_PID=$LAB_LAST_PID
ALICE_BINDING=$(binding alice)
lab_log "alice (baresip, eim NAT) registered with digest: $ALICE_BINDING"
baresip carol bo-ph "$BO:5068" 41000-41099
CAROL_PID=$LAB_LAST_PID
lab_log "carol (baresip, sym NAT) registered with digest: $(binding carol)"

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
BOB_DST=$(lab_received_sdp bob '^SIP/2.0 200')
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

# --- the attacker's tools -------------------------------------------------------
# attacker NAME [-p PORT] STEP...: udp_probe on the attacker's host (port
# 5070 unless -p), log in $LAB_TMP/att-NAME.log
attacker() {
	local name=$1 port=5070; shift
	[ "$1" = -p ] && { port=$2; shift 2; }
	lab_exec att "$LAB_PROBE" -b "$ATT:$port" "$@" >"$LAB_TMP/att-$name.log" 2>&1
}
# answered NAME CODE: the attacker's probe NAME received a CODE response to
# the last request that req made (its Call-ID: answers to earlier requests
# may be retransmitted meanwhile)
answered() {
	grep -a "^recv [0-9.:]* SIP/2.0 $2" "$LAB_TMP/att-$1.log" | grep -aq "Call-ID: att-$$-$REQ_N "
}
# codes NAME CODE: how many requests (distinct Call-IDs) probe NAME saw answered CODE
codes() {
	grep -a "^recv [0-9.:]* SIP/2.0 $2" "$LAB_TMP/att-$1.log" | grep -ao "Call-ID: att-$$-[0-9]*" | sort -u | wc -l
}
# req METHOD RURI FROM TO [EXTRA [BODY]]: sets REQ to a request from the
# attacker (Via the attacker's 5070, unless VIA is set); EXTRA: more header
# lines, each CRLF-ended. Call-ID and branch are new for every request.
REQ_N=0 REQ='' VIA=''
req() {
	local m=$1 ruri=$2 from=$3 to=$4 extra=${5-} body=${6-}
	REQ_N=$((REQ_N + 1))
	printf -v REQ '%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKatt%s.%s;rport\r\nMax-Forwards: 70\r\nFrom: <%s>;tag=att%s\r\nTo: <%s>\r\nCall-ID: att-%s-%s\r\nCSeq: 1 %s\r\n%sContent-Length: %d\r\n\r\n%s' \
		"$m" "$ruri" "${VIA:-$ATT:5070}" "$$" "$REQ_N" "$from" "$REQ_N" "$to" "$$" "$REQ_N" "$m" "$extra" "${#body}" "$body"
}
# sdp PORT MLINES: an offer from the attacker with MLINES audio streams
sdp() {
	local i s
	s=$'v=0\r\no=evil 1 1 IN IP4 '"$ATT"$'\r\ns=-\r\nc=IN IP4 '"$ATT"$'\r\nt=0 0\r\n'
	for ((i = 0; i < $2; i++)); do s+="m=audio $(($1 + 2 * i)) RTP/AVP 0"$'\r\n'; done
	printf '%s' "$s"
}
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
# nonce_of NAME: realm and nonce of the challenge the attacker's probe NAME got
nonce_of() {
	local n r
	r=$(grep -ao 'realm="[^"]*"' "$LAB_TMP/att-$1.log" | head -n 1)
	n=$(grep -ao 'nonce="[^"]*"' "$LAB_TMP/att-$1.log" | head -n 1)
	r=${r#realm=\"} n=${n#nonce=\"}
	[ -n "$n" ] && [ -n "$r" ] || lab_fail "$1: no challenge in $(head -c 300 "$LAB_TMP/att-$1.log")"
	printf '%s %s' "${r%\"}" "${n%\"}"
}
# authz HEADER USER PASSWORD METHOD URI REALM NONCE: sets AUTHZ to a digest
# credentials line (CRLF-ended)
AUTHZ=
authz() {
	local ha1 ha2
	ha1=$(md5 "$2:$6:$3") ha2=$(md5 "$4:$5")
	printf -v AUTHZ '%s: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"\r\n' \
		"$1" "$2" "$6" "$7" "$5" "$(md5 "$ha1:$7:00000001:0a4f113b:auth:$ha2")"
}
# mallory_nonce NAME: a fresh nonce for mallory's REGISTER, fetched by the
# attacker from its own address: sets REALM and NONCE
REALM='' NONCE=''
mallory_nonce() {
	req REGISTER "sip:$SRV:5060" "sip:mallory@$SRV" "sip:mallory@$SRV" $'Contact: <sip:mallory@'"$ATT"$':5070>\r\n'
	attacker "$1" send "$SRV:5060" "$REQ" recv 3 listen 0.5 || lab_fail "$1: no answer to mallory's REGISTER"
	answered "$1" 401 || lab_fail "$1: mallory's REGISTER was not challenged"
	read -r REALM NONCE <<<"$(nonce_of "$1")"
}
# with_counter NAME WHAT: is the feature there whose counter NAME is listed?
with_counter() {
	has_counter "$1" && return 0
	lab_log "SKIP $2: this build has no $1 (the branch that adds it has not landed)"
	SKIPPED+="$2; "
	return 1
}
SKIPPED=

# --- 1: relaying to a third host (a toll gateway) ---------------------------------
den0=$(counter proxy_relay_denied_total)
req MESSAGE "sip:+442079460000@$GW:5060" "sip:evil@$ATT" "sip:+442079460000@$GW"
attacker relay-msg send "$SRV:5060" "$REQ" recv 3 listen 0.5
answered relay-msg 403 || lab_fail "relay: the MESSAGE for $GW was not refused 403 (the gateway received $(counted gw gateway) packets)"
req INVITE "sip:+442079460000@$GW:5060" "sip:evil@$ATT" "sip:+442079460000@$GW" \
	$'Contact: <sip:evil@'"$ATT"$':5070>\r\nContent-Type: application/sdp\r\n' "$(sdp 5006 1)"
attacker relay-inv send "$SRV:5060" "$REQ" recv 3 listen 0.5
answered relay-inv 403 || lab_fail "relay: the INVITE for $GW was not refused 403 (the gateway received $(counted gw gateway) packets)"
# as a local user (From alice) without her password: challenged, not relayed
req INVITE "sip:+442079460000@$GW:5060" "sip:alice@$SRV" "sip:+442079460000@$GW" \
	$'Contact: <sip:evil@'"$ATT"$':5070>\r\nContent-Type: application/sdp\r\n' "$(sdp 5006 1)"
attacker relay-asalice send "$SRV:5060" "$REQ" recv 3 listen 0.5 || lab_fail "relay: no answer to the INVITE as alice"
answered relay-asalice 407 || lab_fail "relay: the INVITE as alice was not challenged 407"
sleep 0.5
den=$(( $(counter proxy_relay_denied_total) - den0 )) gwp=$(counted gw gateway)
lab_log "1 relay: MESSAGE and INVITE for the gateway refused 403 (proxy_relay_denied_total +$den), as alice 407; the gateway received $gwp packets"
[ "$den" -eq 2 ] || lab_fail "relay: proxy_relay_denied_total grew by $den, not 2"
[ "$gwp" -eq 0 ] || lab_fail "relay: the gateway received $gwp packets"
flowing "1 relay"

# --- 2: registering over alice, unregistering alice -------------------------------
forb0=$(counter registrar_forbidden_total) ch0=$(counter auth_challenges_total)
for what in evil star; do
	case $what in
	evil) hdr=$'Contact: <sip:evil@'"$ATT"$':5070>\r\nExpires: 3600\r\n' ;;
	star) hdr=$'Contact: *\r\nExpires: 0\r\n' ;;
	esac
	req REGISTER "sip:$SRV:5060" "sip:alice@$SRV" "sip:alice@$SRV" "$hdr"
	attacker "hijack-$what" send "$SRV:5060" "$REQ" recv 3 listen 0.5 || lab_fail "hijack: no answer ($what)"
	answered "hijack-$what" 401 || lab_fail "hijack: alice's REGISTER ($what) without credentials was not challenged"
	# with credentials: mallory's own, valid, for alice's AOR
	read -r realm nonce <<<"$(nonce_of "hijack-$what")"
	authz Authorization mallory mallory-secret REGISTER "sip:$SRV:5060" "$realm" "$nonce"
	req REGISTER "sip:$SRV:5060" "sip:alice@$SRV" "sip:alice@$SRV" "$hdr$AUTHZ"
	attacker "hijack-$what-auth" send "$SRV:5060" "$REQ" recv 3 listen 0.5 || lab_fail "hijack: no answer ($what, mallory)"
	answered "hijack-$what-auth" 403 ||
		lab_fail "hijack: mallory's REGISTER of alice ($what) was not refused 403: $(head -c 300 "$LAB_TMP/att-hijack-$what-auth.log")"
done
forb=$(( $(counter registrar_forbidden_total) - forb0 )) ch=$(( $(counter auth_challenges_total) - ch0 ))
b=$(binding alice)
lab_log "2 hijack: alice's AOR: a contact of the attacker's and Contact: * refused (401 x2, auth_challenges_total +$ch; with mallory's password 403 x2, registrar_forbidden_total +$forb); alice's bindings $b"
[ "$forb" -eq 2 ] || lab_fail "hijack: registrar_forbidden_total grew by $forb, not 2"
[ "$ch" -ge 2 ] || lab_fail "hijack: auth_challenges_total grew by $ch"
[ "$b" = "$ALICE_BINDING" ] || lab_fail "hijack: alice's bindings changed: $b (were $ALICE_BINDING)"
flowing "2 hijack"

# --- 3: a spoofed REGISTER aimed at a victim host ----------------------------------
# The attacker's packets from port 5071 leave with the victim's address and
# port 5060 (SNAT in its own namespace): the server's answers and pings go
# to the victim, which counts and drops them.
REFLECT=0
if with_counter keepalive_pending "3 reflect (spoofed REGISTER at a victim)"; then
	REFLECT=1
	lab_exec att iptables -w -t nat -A POSTROUTING -p udp -s "$ATT" --sport 5071 \
		-j SNAT --to-source "$VICTIM:5060" || lab_fail "reflect: SNAT rule"
	contacts=
	for i in $(seq 1 16); do contacts+="Contact: <sip:v$i@$VICTIM:$((6000 + i))>"$'\r\n'; done
	mallory_nonce reflect-nonce
	ka0=$(counter keepalives_sent_total) un0=$(counter keepalive_unreachable_total)
	v0=$(counted vic victim) vb0=$(counted vic victim bytes)
	VIA="$VICTIM:5080" req REGISTER "sip:$SRV:5060" "sip:alice@$SRV" "sip:alice@$SRV" "${contacts}Expires: 3600"$'\r\n'
	spoof1=$REQ
	authz Authorization mallory mallory-secret REGISTER "sip:$SRV:5060" "$REALM" "$NONCE"
	VIA="$VICTIM:5080" req REGISTER "sip:$SRV:5060" "sip:mallory@$SRV" "sip:mallory@$SRV" \
		"${contacts}Expires: 3600"$'\r\n'"$AUTHZ"
	spoof2=$REQ
	SPOOF_BYTES=$(( ${#spoof1} + ${#spoof2} + 56 ))
	attacker reflect -p 5071 send "$SRV:5060" "$spoof1" send "$SRV:5060" "$spoof2" ||
		lab_fail "reflect: cannot send"
	SPOOF_AT=$(date +%s)
	lab_log "3 reflect: two spoofed REGISTERs with 16 contacts each ($SPOOF_BYTES bytes) sent as $VICTIM:5060; counting at the victim"
fi
flowing "3 reflect"

# --- 4: a forged 2xx and a Call-ID-only BYE against the live call ------------------
if with_counter proxy_responses_unproven_total "4 forge (forged 200, Call-ID-only BYE)"; then
	unp0=$(counter proxy_responses_unproven_total)
	via2=$(received_hdr bob '^SIP/2.0 200' Via | head -n 1)
	from=$(received_hdr bob '^SIP/2.0 200' From | head -n 1)
	to=$(received_hdr bob '^SIP/2.0 200' To | head -n 1)
	cseq=$(received_hdr bob '^SIP/2.0 200' CSeq | head -n 1)
	[ -n "$via2" ] && [ -n "$from" ] || lab_fail "forge: cannot read the call's 200"
	body=$(sdp 5006 1)
	ok="SIP/2.0 200 OK"$'\r\n'"Via: SIP/2.0/UDP $SRV:5060;branch=z9hG4bKforged"$'\r\n'"$via2"$'\r\n'
	ok+="$from"$'\r\n'"${to%%;tag=*};tag=forged"$'\r\n'"$CID"$'\r\n'"$cseq"$'\r\n'
	ok+="Contact: <sip:evil@$ATT:5070>"$'\r\nContent-Type: application/sdp\r\n'
	ok+="Content-Length: ${#body}"$'\r\n\r\n'"$body"
	# a BYE that knows the Call-ID and nothing else of the dialog, to alice
	bye="BYE sip:alice@$SRV:5060 SIP/2.0"$'\r\n'"Via: SIP/2.0/UDP $ATT:5070;branch=z9hG4bKevilbye$$;rport"$'\r\n'
	bye+=$'Max-Forwards: 70\r\nFrom: <sip:x@'"$ATT"$'>;tag=x\r\nTo: <sip:alice@'"$SRV"$'>\r\n'
	bye+="$CID"$'\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n'
	st0=$(counted att stolen)
	attacker forge send "$SRV:5060" "$ok" send "$SRV:5060" "$bye" listen 2 || lab_fail "forge: cannot send"
	sleep 2
	stolen=$(( $(counted att stolen) - st0 )) unp=$(( $(counter proxy_responses_unproven_total) - unp0 ))
	sess=$(counter relay_sessions)
	lab_log "4 forge: forged 200 and Call-ID-only BYE: proxy_responses_unproven_total +$unp, the attacker's RTP port got $stolen packets, relay_sessions $sess"
	# the theft first: where it succeeds, the phones' RTP stops too
	[ "$stolen" -eq 0 ] || lab_fail "forge: the forged 200 moved RTP to the attacker ($stolen packets)"
	[ "$unp" -ge 1 ] || lab_fail "forge: proxy_responses_unproven_total did not grow"
	[ "$sess" -ge 1 ] || lab_fail "forge: the call's relay session is gone"
	flowing "4 forge"
fi

# --- 5: an m= line flood ------------------------------------------------------------
# dave, a phone that registers and then answers no INVITE (his sipp waits for
# an INVITE with its own Call-ID), so that the flood's INVITEs hold their
# ports until they time out
lab_sipp_bg bo-ph dave callee_auth_gets_bye.xml -i "$BO" -p 5062 "$SRV:5060" \
	-s dave -au dave -ap dave-secret -key expires 300 -cid_str "lab-$$-dave-%u" -aa \
	-timeout 90 -timeout_error
lab_wait_line "$LAB_TMP/dave.messages.log" '^SIP/2.0 200' 10 || lab_fail "dave did not register"
# the proxy refuses a SIP offer with too many m= lines before the relay sees
# it (proxy_media_too_many_streams_total); relay_limit_media_total counts the
# relay's own refusals (ng offers): either may count this attack
media_refused() { echo $(( $(counter proxy_media_too_many_streams_total) + $(counter relay_limit_media_total) )); }
med0=$(media_refused) src0=$(counter relay_limit_source_total)
steps=()
for i in $(seq 1 10); do
	req INVITE "sip:dave@$SRV:5060" "sip:evil@$ATT" "sip:dave@$SRV" \
		$'Contact: <sip:evil@'"$ATT"$':5070>\r\nContent-Type: application/sdp\r\n' "$(sdp 7000 16)"
	steps+=(send "$SRV:5060" "$REQ")
done
for i in $(seq 1 6); do
	req INVITE "sip:dave@$SRV:5060" "sip:evil@$ATT" "sip:dave@$SRV" \
		$'Contact: <sip:evil@'"$ATT"$':5070>\r\nContent-Type: application/sdp\r\n' "$(sdp 7000 4)"
	steps+=(send "$SRV:5060" "$REQ")
done
attacker mflood "${steps[@]}" listen 3 || lab_fail "mflood: cannot send"
n488=$(codes mflood 488) n503=$(codes mflood 503)
med=$(( $(media_refused) - med0 )) src=$(( $(counter relay_limit_source_total) - src0 ))
sess=$(counter relay_sessions)
lab_log "5 mflood: 10 INVITEs with 16 m= lines, 6 with 4: $n488 x 488 (proxy_media_too_many_streams_total + relay_limit_media_total: +$med), $n503 x 503 (relay_limit_source_total +$src); relay_sessions $sess"
[ "$med" -eq 10 ] && [ "$n488" -ge 10 ] || lab_fail "mflood: 16 m= lines not refused 488 ten times (488 x $n488, counter +$med)"
[ "$src" -ge 4 ] && [ "$n503" -ge 4 ] || lab_fail "mflood: the per-source pair limit did not answer 503 (503 x $n503, counter +$src)"
flowing "5 mflood"

# alice is still reachable and a new call is still relayed: carol calls her
lab_sipp bo-ph second caller_auth_hangs_up.xml -i "$BO" -p 5064 "$SRV:5060" \
	-s alice -key user bob -au bob -ap bob-secret -auth_uri "alice@$SRV:5060" \
	-cid_str "lab-$$-second-%u" -d 500 -timeout 15 -timeout_error; rc=$?
[ "$rc" -eq 0 ] && lab_sipp_succeeded second || lab_fail "a second call to alice failed (sipp exit $rc)"
cdst=$(lab_received_sdp second '^SIP/2.0 200')
[ "${cdst%:*}" = "$SRV" ] || lab_fail "the second call is not relayed: alice's answer names $cdst"
lab_log "2+5: a second call to alice (from bob's phone) rang and was answered, relayed via $cdst"
flowing "second call"

# --- 6: a TCP connection flood ------------------------------------------------------
if with_counter net_tcp_refused_per_address_total "6 tcp (connection flood beyond the per-address cap)"; then
	ref0=$(counter net_tcp_refused_per_address_total)
	# 30 connections held open for 4 s from one bash in the attacker's host
	# shellcheck disable=SC2016 # expanded by the inner bash
	lab_start_bg att "$LAB_TMP/att-tcpflood.log" bash -c '
		ok=0; for i in $(seq 1 30); do exec {fd}<>"/dev/tcp/$1/5060" && ok=$((ok + 1)); done
		echo "opened $ok"; sleep 4' tcpflood "$SRV"
	tpid=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/att-tcpflood.log" '^opened' 10 || lab_fail "tcp: the flood did not run"
	sleep 0.5
	ref=$(( $(counter net_tcp_refused_per_address_total) - ref0 ))
	# meanwhile, a phone registers over TCP
	(cd "$LAB_TMP" && lab_exec bo-ph sipp -sf "$LAB_DIR/scenarios/register_auth.xml" -t t1 -m 1 -nostdin \
		-i "$BO" -p 5066 "$SRV:5060" -s dave -au dave -ap dave-secret -key expires 300 \
		-trace_msg -message_file "$LAB_TMP/dave-tcp.messages.log" -timeout 10 -timeout_error \
		>"$LAB_TMP/dave-tcp.out" 2>&1 </dev/null); rc=$?
	lab_wait "$tpid" 10
	lab_log "6 tcp: $(head -n 1 "$LAB_TMP/att-tcpflood.log") connections from the attacker, net_tcp_refused_per_address_total +$ref; dave's TCP REGISTER: sipp exit $rc"
	[ "$ref" -ge $((30 - TCP_CAP)) ] || lab_fail "tcp: only $ref connections refused beyond the cap of $TCP_CAP"
	[ "$rc" -eq 0 ] && lab_sipp_succeeded dave-tcp || lab_fail "tcp: dave's TCP REGISTER failed during the flood"
	flowing "6 tcp"
fi

# --- 3, the result: what reached the victim over several keepalive intervals ---------
if [ "$REFLECT" = 1 ]; then
	w=$(( SPOOF_AT + 5 * KA + 1 - $(date +%s) ))
	[ "$w" -gt 0 ] && sleep "$w"
	vp=$(( $(counted vic victim) - v0 )) vb=$(( $(counted vic victim bytes) - vb0 ))
	ka=$(( $(counter keepalives_sent_total) - ka0 )) un=$(( $(counter keepalive_unreachable_total) - un0 ))
	lab_log "3 reflect: over $(( $(date +%s) - SPOOF_AT )) s ($KA s keepalive interval) the victim got $vp datagrams, $vb bytes for the attacker's $SPOOF_BYTES (keepalives_sent_total +$ka, keepalive_unreachable_total +$un)"
	# the two 401s and nothing else: mallory's credentials were over a
	# nonce sent to the attacker's address, so they do not verify from the
	# victim's, and no binding (nor ping) is made there
	[ "$vp" -le 2 ] || lab_fail "reflect: the victim got $vp datagrams"
	[ "$vb" -le $((3 * SPOOF_BYTES)) ] || lab_fail "reflect: the victim got $vb bytes for $SPOOF_BYTES sent"
	flowing "3 reflect, after"
fi

bs_cmd al-ph hangup
lab_wait "$BOB_SIPP" 15; rb=$?
[ "$rb" -eq 0 ] && lab_sipp_succeeded bob || lab_fail "bob's call did not end with alice's BYE (sipp exit $rb)"
lab_kill "$BOB_RTP"
lab_log "alice hung up: bob's sipp got her BYE"

# --- the real clients the other way: alice (baresip) calls carol (baresip) ----------
c0=$(counted bo-ph carol)
bs_cmd al-ph dial "sip:carol@$SRV"
for i in $(seq 1 100); do
	[ "$(counted bo-ph carol)" -gt "$c0" ] && break
	sleep 0.1
done
a0=$(counted al-ph rtp) c0=$(counted bo-ph carol)
sleep 1
a1=$(counted al-ph rtp) c1=$(counted bo-ph carol)
lab_log "alice (baresip) calls carol (baresip, sym NAT): alice +$((a1 - a0)), carol +$((c1 - c0)) RTP packets from the relay in 1 s"
[ $((a1 - a0)) -ge 20 ] && [ $((c1 - c0)) -ge 20 ] || lab_fail "alice's call to carol: no relayed RTP both ways"
grep -aq '^SIP/2.0 407' "$LAB_TMP/alice.baresip.log" || lab_fail "alice's INVITE was not challenged"
bs_cmd al-ph hangup
# carol's baresip traces the BYE it receives
lab_wait_line "$LAB_TMP/carol.baresip.log" '^BYE sip:carol' 10 || lab_fail "alice's BYE did not reach carol"
kill -0 "$ALICE_PID" && kill -0 "$CAROL_PID" || lab_fail "a baresip exited"
[ -z "$SKIPPED" ] || lab_log "skipped: $SKIPPED"
lab_log "PASS"
exit 0
