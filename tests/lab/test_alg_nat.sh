#!/bin/bash
# Lab test of issue 14 ("How it is shown", the lab part): audio that survives
# what the path claims. Phones behind routers whose SIP ALG is on (the
# kernel's nf_conntrack_sip + nf_nat_sip, attached with CT --helper sip), behind
# two levels of NAT (a home NAT in 100.64.x behind a carrier-grade NAT), and
# one that announces STUN-discovered addresses behind a symmetric NAT. Every
# call must carry RTP both ways through the relay. Needs root, iproute2,
# iptables, conntrack, cc, sipp, jq, a kernel with nf_conntrack_sip, $PINHOLE.
#
# One pinhole on 198.18.0.1:5060 with its default [relay] media (ALG_MEDIA
# sets it; on the code before issue 14 the default was `auto`, which trusts
# the SDP the ALG rewrote and fails here: that is this test's proof), relay
# ports 30000-30079, server keepalive OPTIONS every $KA s, a STUN server on
# 198.18.0.2:3478 (another address, as a phone's STUN server would be).
# NATs (conntrack UDP timeouts $NAT_T s):
#   as1, as2  symmetric, ALG on          ae1, ae2  endpoint-independent, ALG on
#   ps1       symmetric                  pe1       endpoint-independent
#   st1       symmetric: its phone announces what STUN told it
#   cg0, cga  carrier-grade NATs (symmetric; cga with the ALG on), each with
#             two home NATs (endpoint-independent) behind it:
#             d00 (no ALG) and d10 (ALG) behind cg0, d01 (no ALG) and
#             d11 (ALG) behind cga: every combination of ALG at either level.
#
# A call (as test_media_nat.sh): the callee's sipp registers and waits, the
# caller's calls it; both SDPs name the phone's private port $RTP_PORT, where
# rtp_peer (one socket, symmetric RTP) sends 50 packets/s for $RTP_SECS s to
# what the SDP it received names and counts what comes back. Both phones
# start sending at the same moment, as two phones in a call may: with an ALG
# the phone's first packet and the relay's first packet toward the port the
# ALG announced can then cross in the NAT (see the cross case).
# Cases, each must pass:
#   alg-sym   as2 calls as1; the ALG rewrote the callee's Contact to its NAT's
#             public address (checked: else the ALG is not at work and the
#             test proves nothing); each side gets >= $MIN_PCT % of the other's
#             packets, all from the relay port its SDP names.
#   alg-eim   ae2 calls ae1: the same.
#   plain     pe1 calls ps1 (no ALG): the same (the baseline).
#   stun      st1 learns its SIP and RTP mappings from the STUN server (the
#             symmetric NAT gives the relay other ports), registers and
#             answers with them in Via/Contact/SDP; pe1 calls it: the same.
#   dbl-*     d00 registers, stays idle beyond the NATs' timeouts (the
#             server's keepalives hold both NAT levels open: answered, no
#             failures), then is called by d10; d11 is called by d00; d01 by
#             d11; d10 by d01: each double-NATed phone calls and is called,
#             audio both ways each time.
#   cross     what the relay sees when a phone's first packet and the relay's
#             first packet cross in an ALG'd NAT and the phone's packet loses
#             the NAT's race (a conntrack clash: its packet leaves through a
#             mapping of its own, every later one through the port the ALG
#             announced; seen once in a loaded run at ALG-at-both-levels,
#             microseconds wide, so the test makes the outcome itself): the
#             phone behind xe1 (endpoint-independent) announces its public
#             mapping (port 40000, as an ALG or STUN would) and sends its
#             first packet from port 40002, the rest from 40000. ps1 calls
#             it: the same >= $MIN_PCT % both ways. Before the relay followed
#             such a move at once, it dropped the phone's packets for relatch
#             (2 s) and sent to the first mapping: about a third arrived.
#   ua        `pinhole ua` behind as1 (ALG) registers and calls a ua behind
#             ps1 (no ALG) for 6 s: both media verdicts two-way; the ALG
#             side's JSON verdict (sip-alg events) says
#             the REGISTER's Contact and the INVITE's SDP were rewritten, the
#             other side's says nothing was; `ua register --once` says "a SIP
#             ALG on your router rewrote ...: switch it off" behind the ALG
#             and nothing of the kind behind the plain NAT.
#   verdict   `pinhole ctl registrations` gives nat-alg-suspected for the
#             callees whose Contact an ALG rewrote to the public address
#             (as1, ae1, d11) and not for ps1, st1 and d00.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-10}        # conntrack UDP timeouts in the NATs, seconds
KA=${KA:-3}               # the server's keepalive interval, seconds
RTP_SECS=${RTP_SECS:-3}   # how long each phone sends RTP
RTP_PORT=${RTP_PORT:-40000}
MIN_PCT=${MIN_PCT:-90}    # share of the peer's packets that must arrive
ALG_MEDIA=${ALG_MEDIA:-}  # [relay] media; empty: the server's default
PORTS_LO=30000 PORTS_HI=30079
SRV=$LAB_SRV_IP CTL=127.0.0.1:5080 STUN=$LAB_SRV_IP2:3478

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" serve --help >/dev/null 2>&1 || lab_skip "pinhole serve is not there yet"

lab_setup talg

RTP_PEER="$LAB_TMP/rtp_peer" STUN_PING="$LAB_TMP/stun_ping"
cc -std=c17 -O2 -Wall -Wextra -o "$RTP_PEER" "$LAB_DIR/rtp_peer.c" || lab_fail "cannot build rtp_peer"
cc -std=c17 -O2 -Wall -Wextra -o "$STUN_PING" "$LAB_DIR/stun_ping.c" || lab_fail "cannot build stun_ping"

for n in as1 as2 ps1 st1 cg0 cga; do lab_add_nat "$n" sym "$NAT_T"; done
for n in ae1 ae2 pe1 xe1; do lab_add_nat "$n" eim "$NAT_T"; done
lab_add_nat_behind d00 eim "$NAT_T" cg0
lab_add_nat_behind d10 eim "$NAT_T" cg0
lab_add_nat_behind d01 eim "$NAT_T" cga
lab_add_nat_behind d11 eim "$NAT_T" cga
for n in as1 as2 ae1 ae2 cga d10 d11; do lab_nat_alg "$n"; done
lab_verify_nat as1
lab_verify_nat ae1
lab_verify_nat cg0

# --- the server -----------------------------------------------------------------
conf=$LAB_TMP/pinhole.conf
{
	printf '; generated by test_alg_nat.sh\n[sip]\nlisten = udp:%s:5060\nworkers = 2\n' "$SRV"
	printf '[registrar]\nopen = yes\n[keepalive]\ninterval = %s\nmethod = options\n' "$KA"
	printf '[stun]\nlisten = udp:%s\n[store]\npath = %s\n[control]\nlisten = %s\n' \
		"$STUN" "$LAB_TMP/pinhole.db" "$CTL"
	printf '[relay]\naddress = %s\nadvertise = %s\nports = %s-%s\n' "$SRV" "$SRV" "$PORTS_LO" "$PORTS_HI"
	[ -n "$ALG_MEDIA" ] && printf 'media = %s\n' "$ALG_MEDIA"
	printf '[log]\nlevel = debug\n'
} >"$conf"
lab_serve "$LAB_TMP/pinhole.log" "$conf" "$SRV:5060" "$STUN"
SERVER_PID=$LAB_LAST_PID
lab_log "pinhole on $SRV:5060, [relay] media ${ALG_MEDIA:-(default)}, STUN on $STUN, pid $SERVER_PID"

# --- reading what the phones got ------------------------------------------------
# received_hdr NAME START_RE HEADER: the first HEADER line of the last message
# sipp run NAME received whose start line matches START_RE
received_hdr() {
	awk -v re="$2" -v h="$3" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; got = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); next }
		rx && want && !NF { rx = 0 }
		rx && want && got == "" && index($0, h ":") == 1 { got = $0; res = $0 }
		END { print res }' "$LAB_TMP/$1.messages.log"
}
# field LOG WORD: the number after WORD on rtp_peer's summary line
field() { awk -v w="$2" '$1 == "summary" { for (i = 1; i < NF; i++) if ($i == w) print $(i + 1) }' "$1"; }
# from_tag LOG TAG: packets received with sender tag TAG
from_tag() { awk -v t="$2" '$1 == "from" && $10 == t { n += $4 } END { print n + 0 }' "$1"; }
# binding USER: the registration of USER as one line of JSON ("" when none)
binding() {
	lab_exec srv "$PINHOLE" ctl registrations --json --control "$CTL" |
		jq -c --arg u "$1@" '.registrations[] | select(.aor | startswith($u))' | head -n 1
}

# --- one call -------------------------------------------------------------------
# register_callee LABEL NAT USER [announce]: the callee's sipp in the
# background (PID in CALLEE_PID), registered. With "announce" it announces the
# addresses in ANN_SIG (Via/Contact) and ANN_RTP (SDP) instead of its own.
CALLEE_PID='' ANN_SIG='' ANN_RTP=''
register_callee() {
	local label=$1 nat=$2 user=$3 mode=${4:-} sf=media_callee.xml extra=()
	if [ "$mode" = announce ]; then
		sf=announce_callee.xml
		extra=(-key sig_host "${ANN_SIG%:*}" -key sig_port "${ANN_SIG##*:}"
			-key rtp_ip "${ANN_RTP%:*}")
	fi
	lab_sipp_bg "$nat-ph" "$label-callee" "$sf" -i "$(lab_phone_ip "$nat")" -p 5060 \
		"$SRV:5060" -s "$user" -key expires 300 -cid_str "lab-$$-$label-%u" -aa \
		-key rtp_port "$RTP_PORT" "${extra[@]}" -timeout 60 -timeout_error
	CALLEE_PID=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-callee.messages.log" '^SIP/2.0 200' 10 ||
		lab_fail "$label: REGISTER of $user via $nat not answered 200"
}

# call LABEL CALLER_NAT USER: the caller behind CALLER_NAT calls USER, whose
# callee sipp register_callee started; RTP both ways; then hang up and check
# that the call went through the relay with audio both ways. CALLEE_FIRST_FROM:
# a port the callee's first packet leaves from (rtp_peer -f), else empty.
CALLEE_FIRST_FROM=''
call() {
	local label=$1 rnat=$2 callee=$3 cnat=$4 hold=$(((RTP_SECS + 4) * 1000))
	local pa=$CALLEE_PID pb pc pr start cdst rdst
	lab_sipp_bg "$rnat-ph" "$label-caller" media_caller.xml -i "$(lab_phone_ip "$rnat")" -p 5060 \
		"$SRV:5060" -s "$callee" -key user "bob$label" -cid_str "lab-$$-$label-%u" -d "$hold" \
		-key rtp_port "$RTP_PORT" -timeout 40 -timeout_error
	pb=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-callee.messages.log" '^ACK ' 10 ||
		lab_fail "$label: the call was not set up (no ACK at the callee)"
	lab_wait_line "$LAB_TMP/$label-caller.messages.log" '^m=audio ' 5 ||
		lab_fail "$label: no SDP in the caller's 200"
	cdst=$(lab_received_sdp "$label-callee" '^INVITE ')
	rdst=$(lab_received_sdp "$label-caller" '^SIP/2.0 200')
	[ -n "$cdst" ] && [ -n "$rdst" ] ||
		lab_fail "$label: cannot read the SDPs (callee '$cdst', caller '$rdst')"
	lab_log "$label: callee ($cnat) sends RTP to $cdst, caller ($rnat) to $rdst"
	# both start at the same moment: the relay must not lose a start that
	# crossed in a NAT (the cross case)
	start=$(date +%s.%N | awk '{ printf "%.3f", $1 + 0.5 }')
	lab_start_bg "$cnat-ph" "$LAB_TMP/$label-callee.rtp.log" "$RTP_PEER" \
		-b "$(lab_phone_ip "$cnat"):$RTP_PORT" -d "$cdst" -t "$RTP_SECS" -w 1 -S "$start" -m callee \
		${CALLEE_FIRST_FROM:+-f "$CALLEE_FIRST_FROM"}
	pc=$LAB_LAST_PID
	lab_start_bg "$rnat-ph" "$LAB_TMP/$label-caller.rtp.log" "$RTP_PEER" \
		-b "$(lab_phone_ip "$rnat"):$RTP_PORT" -d "$rdst" -t "$RTP_SECS" -w 1 -S "$start" -m caller
	pr=$LAB_LAST_PID
	lab_wait "$pc" $((RTP_SECS + 10)) || lab_fail "$label: callee rtp_peer failed"
	lab_wait "$pr" $((RTP_SECS + 10)) || lab_fail "$label: caller rtp_peer failed"
	lab_wait "$pb" 30; local rb=$?
	lab_wait "$pa" 30; local ra=$?
	lab_log "$label: callee $(grep '^summary' "$LAB_TMP/$label-callee.rtp.log")"
	lab_log "$label: caller $(grep '^summary' "$LAB_TMP/$label-caller.rtp.log")"
	# the media first: a lost direction is what this test is about
	local side other dst log sent got from
	for side in callee caller; do
		[ "$side" = callee ] && other=caller dst=$cdst || other=callee dst=$rdst
		log=$LAB_TMP/$label-$side.rtp.log
		sent=$(field "$LAB_TMP/$label-$other.rtp.log" sent)
		got=$(from_tag "$log" "$other")
		from=$(field "$log" from)
		[ "$sent" -ge $((RTP_SECS * 45)) ] || lab_fail "$label: $other sent only $sent packets"
		[ $((got * 100)) -ge $((sent * MIN_PCT)) ] ||
			lab_fail "$label: $side got $got of $other's $sent packets (< $MIN_PCT %): no audio $other -> $side"
		[ "${dst%:*}" = "$SRV" ] || lab_fail "$label: $side's SDP names $dst, not the relay $SRV"
		[ "${dst##*:}" -ge "$PORTS_LO" ] && [ "${dst##*:}" -le "$PORTS_HI" ] ||
			lab_fail "$label: $side's SDP port ${dst##*:} is outside the relay range"
		[ "$from" = "$dst" ] || lab_fail "$label: $side received from '$from', not only from the relay's $dst"
		lab_log "$label: $side got $got of $other's $sent packets (>= $MIN_PCT %), all from the relay's $from"
	done
	[ "$rb" -eq 0 ] && [ "$ra" -eq 0 ] && lab_sipp_succeeded "$label-caller" &&
		lab_sipp_succeeded "$label-callee" || lab_fail "$label: the SIP call failed (caller $rb, callee $ra)"
}

# alg_rewrote LABEL PUBLIC_NAT: the callee's Contact in the caller's 200 names
# the public address of PUBLIC_NAT (its own NAT, or the outer one): the ALG(s)
# rewrote what the phone wrote.
alg_rewrote() {
	local c wan; wan=$(lab_wan_ip "$2")
	c=$(received_hdr "$1-caller" '^SIP/2.0 200' Contact)
	[[ $c == *"@$wan:"* ]] || lab_fail "$1: the ALG at $2 did not rewrite the Contact ($c): the lab's ALG is not at work"
	lab_log "$1: the ALG at $2 rewrote the callee's Contact: $c"
}

# --- the cases -------------------------------------------------------------------
register_callee alg-sym as1 alice1
call alg-sym as2 alice1 as1
alg_rewrote alg-sym as1
lab_conntrack as1 -p udp --dport 5060 | grep -q 'helper=sip' || lab_fail "as1: no SIP helper on the SIP flow"

register_callee alg-eim ae1 alice2
call alg-eim ae2 alice2 ae1
alg_rewrote alg-eim ae1

register_callee plain ps1 alice3
call plain pe1 alice3 ps1

# STUN: what the phone's two sockets look like from the STUN server; behind
# the symmetric NAT neither is what the SIP server and the relay will see
ANN_SIG=$(lab_exec st1-ph "$STUN_PING" -b "$(lab_phone_ip st1):5060" -d "$STUN" | awk '$1 == "mapped" { print $2; exit }')
ANN_RTP=$(lab_exec st1-ph "$STUN_PING" -b "$(lab_phone_ip st1):$RTP_PORT" -d "$STUN" | awk '$1 == "mapped" { print $2; exit }')
[ -n "$ANN_SIG" ] && [ -n "$ANN_RTP" ] || lab_fail "stun: the STUN server did not answer st1"
lab_log "stun: st1 learnt $ANN_SIG (SIP) and $ANN_RTP (RTP) from STUN and announces them"
register_callee stun st1 alice4 announce
call stun pe1 alice4 st1
[ "$(lab_received_sdp stun-caller '^SIP/2.0 200')" != "$ANN_RTP" ] || lab_fail "stun: the relay passed the STUN address on"

# the crossing's outcome: first packet from another port, then the announced one
ANN_SIG="$(lab_wan_ip xe1):5060" ANN_RTP="$(lab_wan_ip xe1):$RTP_PORT"
register_callee cross xe1 alice5 announce
CALLEE_FIRST_FROM=$((RTP_PORT + 2))
call cross ps1 alice5 xe1
CALLEE_FIRST_FROM=''

# double NAT: d00 stays idle beyond the NAT timeouts while the server's
# keepalives hold both levels open; then every phone calls and is called
register_callee dbl-a d00 carol0
sleep $((NAT_T + 2))
b=$(binding carol0)
lab_log "dbl: after $((NAT_T + 2)) s idle, carol0's binding: $b"
[ -n "$b" ] || lab_fail "dbl: carol0's binding is gone"
[ "$(jq -r '.keepalive.last_answer' <<<"$b")" -gt 0 ] || lab_fail "dbl: no keepalive answered through two NATs"
[ "$(jq -r '.keepalive.failures' <<<"$b")" -eq 0 ] || lab_fail "dbl: keepalives failed through two NATs"
call dbl-a d10 carol0 d00
register_callee dbl-b d11 carol11
call dbl-b d00 carol11 d11
register_callee dbl-c d01 carol01
call dbl-c d11 carol01 d01
register_callee dbl-d d10 carol10
call dbl-d d01 carol10 d10
alg_rewrote dbl-b cga

# --- the ua's own ALG verdict -----------------------------------------------------
# uabob behind ps1 (no ALG) registers and answers; uaalice behind as1 (ALG)
# registers and calls him. Each compares what it sent with what the server
# says it saw (Pinhole-Seen).
lab_start_bg ps1-ph "$LAB_TMP/ua-bob.log" "$PINHOLE" ua register --json --auto-answer \
	--state "$LAB_TMP/uabob.state" --proxy "udp:$SRV:5060" "sip:uabob@$SRV"
bpid=$LAB_LAST_PID
lab_wait_line "$LAB_TMP/ua-bob.log" '"event":"registered"' 10 ||
	lab_fail "ua: uabob did not register: $(cat "$LAB_TMP/ua-bob.log")"
lab_exec as1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/uaalice.state" \
	--aor "sip:uaalice@$SRV" --proxy "udp:$SRV:5060" --duration 6 "sip:uabob@$SRV" \
	>"$LAB_TMP/ua-alice.log" 2>"$LAB_TMP/ua-alice.err" </dev/null
arc=$?
lab_kill "$bpid"
va=$(jq -r 'select(.event == "verdict") | .media.verdict' "$LAB_TMP/ua-alice.log")
vb=$(jq -r 'select(.event == "verdict") | .media.verdict' "$LAB_TMP/ua-bob.log")
lab_log "ua: uaalice's call exited $arc, media verdicts: alice $va, bob $vb"
# the call lasts more than one 5 s RTCP interval: each side learns the other got its RTP
[ "$arc" -eq 0 ] && [ "$va" = two-way ] && [ "$vb" = two-way ] ||
	lab_fail "ua: the call from behind the ALG did not carry audio both ways (exit $arc, $va / $vb)"
# alg_event LOG REQUEST: the ua's first sip-alg event about REQUEST
alg_event() { jq -c -s --arg r "$2" '[.[] | select(.event == "sip-alg" and .request == $r)][0] // empty' "$1"; }
ar=$(alg_event "$LAB_TMP/ua-alice.log" REGISTER) ai=$(alg_event "$LAB_TMP/ua-alice.log" INVITE)
br=$(alg_event "$LAB_TMP/ua-bob.log" REGISTER)
lab_log "ua: behind the ALG, REGISTER: ${ar:-(none)}"
lab_log "ua: behind the ALG, INVITE: ${ai:-(none)}"
lab_log "ua: behind a plain NAT, REGISTER: ${br:-(none)}"
jq -e '.alg == true and (.rewritten | index("contact") != null)' <<<"${ar:-null}" >/dev/null ||
	lab_fail "ua: behind the ALG, the REGISTER's verdict does not name the rewritten Contact: ${ar:-none}"
jq -e '.alg == true and (.rewritten | index("sdp") != null)' <<<"${ai:-null}" >/dev/null ||
	lab_fail "ua: behind the ALG, the INVITE's verdict does not name the rewritten SDP: ${ai:-none}"
jq -e '.alg == false and .rewritten == []' <<<"${br:-null}" >/dev/null ||
	lab_fail "ua: behind a plain NAT, the verdict is not 'no ALG': ${br:-none}"
# the same in words, for a person
lab_exec as1-ph timeout 30 "$PINHOLE" ua register --once --state "$LAB_TMP/uaalice.state" \
	--proxy "udp:$SRV:5060" "sip:uaalice@$SRV" >"$LAB_TMP/ua-alice-once.log" 2>&1 </dev/null
lab_exec ps1-ph timeout 30 "$PINHOLE" ua register --once --state "$LAB_TMP/uabob.state" \
	--proxy "udp:$SRV:5060" "sip:uabob@$SRV" >"$LAB_TMP/ua-bob-once.log" 2>&1 </dev/null
lab_log "ua: behind the ALG it says: $(grep sip-alg "$LAB_TMP/ua-alice-once.log" | head -n 1)"
lab_log "ua: behind a plain NAT it says: $(grep sip-alg "$LAB_TMP/ua-bob-once.log" | head -n 1)"
grep -q 'a SIP ALG on your router rewrote .*Contact.*: switch it off' "$LAB_TMP/ua-alice-once.log" ||
	lab_fail "ua: behind the ALG, no words about the ALG: $(cat "$LAB_TMP/ua-alice-once.log")"
! grep -q 'SIP ALG on your router' "$LAB_TMP/ua-bob-once.log" ||
	lab_fail "ua: behind a plain NAT, the ua blames an ALG: $(cat "$LAB_TMP/ua-bob-once.log")"

# --- the verdicts ---------------------------------------------------------------
verdict_fail=
for u in alice1 alice2 carol11 alice3 alice4 carol0 carol01 carol10; do
	b=$(binding "$u")
	[ -n "$b" ] || lab_fail "verdict: no binding for $u"
	words=$(grep -owE 'nat-alg-suspected|stun-announced|no-nat|nat' <<<"$b" | sort -u | tr '\n' ' ')
	lab_log "verdict: $u: ${words:-(no verdict word)}"
	case $u in
	alice1 | alice2 | carol11)
		grep -qw 'nat-alg-suspected' <<<"$b" || verdict_fail+="$u (behind an ALG) not nat-alg-suspected; " ;;
	alice3 | alice4 | carol0)
		! grep -qw 'nat-alg-suspected' <<<"$b" || verdict_fail+="$u (no ALG) nat-alg-suspected; " ;;
	esac
done
[ -z "$verdict_fail" ] || lab_fail "verdict: $verdict_fail"
lab_log "PASS"
exit 0
