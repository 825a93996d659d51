#!/bin/bash
# Lab test of issue 3 ("How it is shown"): media through real NAT, with
# `pinhole serve` as registrar, proxy and (in the same process) media relay.
# Needs root, iproute2, iptables, conntrack, cc, sipp, jq and $PINHOLE.
#
# Topology (tests/lab/lib.sh): the server namespace runs two pinholes:
#   198.18.0.1:5060  [relay] media = nat-facing (the default), relay on 198.18.0.1 (advertise
#                    198.18.0.1) ports 30000-30039, control 127.0.0.1:5080
#   198.18.0.2:5060  [relay] media = never,                    control :5081
# NATs (conntrack UDP timeout $NAT_T s) with one phone each: s1, s2 symmetric,
# e1 endpoint-independent. An attacker host at 198.18.0.66 on the public
# segment (an address on the public bridge itself).
#
# A call: the callee's sipp (scenarios/media_callee.xml) registers and waits;
# the caller's (media_caller.xml) calls it and holds the call. Both SDPs
# carry the phone's private address and port $RTP_PORT, where the test runs
# tests/lab/rtp_peer.c (one socket that sends and receives: symmetric RTP).
# Once the callee has the ACK, the test reads from each sipp's message log
# the SDP that phone received (INVITE for the callee, 200 for the caller)
# and starts both RTP peers; once both are up, it lets them go at the same
# instant (SIGUSR1), each sending 50 packets/s
# of 172 bytes for $RTP_SECS s to the address:port its SDP names, from
# $RTP_PORT. Then the caller hangs up.
#
# Cases:
#   sym-sym   s2 calls s1 through server 1: each phone's SDP names the relay
#             (198.18.0.1, a relay port, a=nortpproxy:yes); each side gets
#             >= $MIN_PCT % of the other's packets, all of them from exactly
#             the relay address:port its SDP named, with the other's tag.
#   sym-eim   s2 calls e1 through server 1: the same.
#   bleed     s2 calls s1 through server 1 while the attacker sprays RTP (its
#             own SSRC and tag) at every relay port, from before the INVITE
#             until after the call: the attacker receives nothing; the phones
#             get >= $MIN_PCT % of each other's packets and not one of the
#             attacker's; relay_dropped_total{reason=source} grew.
#   forge     s2 calls s1 through server 1; once RTP flows, the attacker, who
#             knows the Call-ID and the caller's From tag (here: read from
#             the callee's INVITE), sends a 200 with the server's Via on top
#             and the caller's below whose SDP names its own port, and a BYE
#             with nothing of the dialog but its Call-ID: both phones still
#             get >= $MIN_PCT % of each other's packets, all from the relay;
#             the attacker's port gets no RTP; the 200 reaches no one
#             (proxy_responses_unproven_total grew); the relay session
#             survives until the real BYE is answered.
#   counters  after each relayed call (its session deleted by the BYE), the
#             relay's relay_media_evidence_total{kind=media-other-ip} grew by 2
#             (each phone's private c=, its media from the NAT's address) and
#             relay_forwarded_packets_total grew by at least what the
#             two phones received from it. RELAY_FASTPATH (auto, the default,
#             on or off) is server 1's [relay] fastpath: with the eBPF fast
#             path loaded ("fast path:" in its log; `on` requires it), the
#             kernel forwarded at least 80 % of them
#             (relay_fastpath_packets_total), counted exactly once; with it
#             off, none. ctest runs the test with `on` and with `off`.
#             With the fast path, [sip] steering is on too: sip_steered_total
#             grew (the calls' datagrams reached their Call-ID's worker).
#   never     s2 calls s1 through server 2 (media never): the SDPs keep the
#             phones' private addresses, and at least one direction loses
#             (nearly) all packets. This is what the relay is for, and what
#             makes the test able to fail.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}        # conntrack UDP timeouts in the NATs, seconds
RTP_SECS=${RTP_SECS:-4}   # how long each phone sends RTP
RTP_PORT=${RTP_PORT:-40000}
MIN_PCT=${MIN_PCT:-90}    # share of the peer's packets that must arrive
ATTACKER=198.18.0.66
PORTS_LO=30000 PORTS_HI=30039
RELAY_FASTPATH=${RELAY_FASTPATH:-auto}

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" serve --help >/dev/null 2>&1 || lab_skip "pinhole serve is not there yet"

lab_setup tmn

RTP_PEER="$LAB_TMP/rtp_peer"
cc -std=c17 -O2 -Wall -Wextra -o "$RTP_PEER" "$LAB_DIR/rtp_peer.c" || lab_fail "cannot build rtp_peer"

lab_add_nat s1 sym "$NAT_T"
lab_add_nat s2 sym "$NAT_T"
lab_add_nat e1 eim "$NAT_T"
ip -n "$(lab_ns pub)" addr add "$ATTACKER/24" dev br0 || lab_fail "attacker address"

SRV1=$LAB_SRV_IP  CTL1=127.0.0.1:5080
SRV2=$LAB_SRV_IP2 CTL2=127.0.0.1:5081

# --- the servers ------------------------------------------------------------
# start_pinhole N ADDR CONTROL MEDIA PORTS [FASTPATH]
start_pinhole() {
	local n=$1 addr=$2 ctl=$3 media=$4 ports=$5 fast=${6:-off} conf=$LAB_TMP/pinhole-$1.conf
	cat >"$conf" <<-EOF
		; generated by test_media_nat.sh
		[sip]
		listen = udp:$addr:5060
		workers = 2
		[registrar]
		; no users, and the phones register from the NATs' public side
		open = yes
		[keepalive]
		interval = 10
		method = options
		[store]
		path = $LAB_TMP/pinhole-$n.db
		[control]
		listen = $ctl
		[relay]
		address = $addr
		advertise = $addr
		ports = $ports
		media = $media
		fastpath = $fast
		[log]
		level = debug
	EOF
	lab_serve "$LAB_TMP/pinhole-$n.log" "$conf" "$addr:5060"
	local pid=$LAB_LAST_PID
	lab_log "pinhole $n on $addr:5060, media $media, relay ports $ports, control $ctl, pid $pid"
}
start_pinhole 1 "$SRV1" "$CTL1" nat-facing "$PORTS_LO-$PORTS_HI" "$RELAY_FASTPATH"
start_pinhole 2 "$SRV2" "$CTL2" never 30100-30139
FAST=0
grep -q 'fast path: latched IPv4 RTP forwarded in the kernel' "$LAB_TMP/pinhole-1.log" && FAST=1
[ "$RELAY_FASTPATH" != on ] || [ "$FAST" = 1 ] || lab_fail "fastpath = on, but no fast path in the log"
lab_log "relay fast path (fastpath = $RELAY_FASTPATH): $([ "$FAST" = 1 ] && echo loaded || echo not loaded)"

# sdp_has NAME START_RE TEXT: that SDP contains a line starting with TEXT
sdp_has() {
	awk -v re="$2" -v t="$3" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); next }
		rx && want && index($0, t) == 1 { f = 1 }
		END { exit !f }' "$LAB_TMP/$1.messages.log"
}
# clen NAME START_RE: the Content-Length of every message that sipp run NAME
# received whose start line matches START_RE, one per line
clen() {
	awk -v re="$2" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); next }
		rx && want && tolower($1) ~ /^(content-length|l):$/ { print $2 }' "$LAB_TMP/$1.messages.log"
}
# A bodiless in-dialog request must arrive bodiless (the callers send ACK and
# BYE with Content-Length: 0). Checked for every call, reported at the end so
# that the media results are shown first.
BODY_ERRORS=
check_bodiless() {
	local name=$1 m l
	for m in ACK BYE; do
		for l in $(clen "$name" "^$m "); do
			[ "$l" = 0 ] || BODY_ERRORS+="$name: $m forwarded with Content-Length $l (sent with 0); "
		done
	done
}
# field LOG WORD: the number after WORD on rtp_peer's summary line
field() { awk -v w="$2" '$1 == "summary" { for (i = 1; i < NF; i++) if ($i == w) print $(i + 1) }' "$1"; }
# from_tag LOG TAG: packets received with sender tag TAG
from_tag() { awk -v t="$2" '$1 == "from" && $10 == t { n += $4 } END { print n + 0 }' "$1"; }

# invite_hdr LABEL NAME: the NAME header lines (all of them) of the INVITE the
# callee received, in order
invite_hdr() {
	awk -v h="$2" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ /^INVITE /); next }
		rx && want && !NF { rx = 0 }
		rx && want && index($0, h ":") == 1 { print }' "$LAB_TMP/$1-callee.messages.log"
}

# forge LABEL SERVER: in the background, once the RTP has started, the
# attacker sends a forged 200 and a Call-ID-only BYE; its udp_probe log is
# $LAB_TMP/LABEL-forger.log, and an RTP listener on $ATTACKER:5006 (the port
# its SDP names) logs to $LAB_TMP/LABEL-stolen.rtp.log. The listener runs
# until stolen_count stops it (PID in STOLEN_PID), so that it covers the
# whole call however long that took.
STOLEN_PID=
forge() {
	local label=$1 srv=$2 via2 from to cid cseq sdp ok bye
	via2=$(invite_hdr "$label" Via | sed -n 2p)
	from=$(invite_hdr "$label" From | head -n 1)
	to=$(invite_hdr "$label" To | head -n 1)
	cid=$(invite_hdr "$label" Call-ID | head -n 1)
	cseq=$(invite_hdr "$label" CSeq | head -n 1)
	[ -n "$via2" ] && [ -n "$cid" ] || lab_fail "$label: cannot read the callee's INVITE"
	sdp=$'v=0\r\no=evil 1 1 IN IP4 '"$ATTACKER"$'\r\ns=-\r\nc=IN IP4 '"$ATTACKER"$'\r\nt=0 0\r\nm=audio 5006 RTP/AVP 0\r\n'
	ok="SIP/2.0 200 OK"$'\r\n'"Via: SIP/2.0/UDP $srv:5060;branch=z9hG4bKforged"$'\r\n'"$via2"$'\r\n'
	ok+="$from"$'\r\n'"$to;tag=forged"$'\r\n'"$cid"$'\r\n'"$cseq"$'\r\n'
	ok+="Contact: <sip:evil@$ATTACKER:5070>"$'\r\nContent-Type: application/sdp\r\n'
	ok+="Content-Length: ${#sdp}"$'\r\n\r\n'"$sdp"
	# a BYE that knows nothing of the dialog but its Call-ID, for a target
	# that routes (the attacker's own address), so that it reaches the proxy
	bye="BYE sip:x@$ATTACKER:5070 SIP/2.0"$'\r\n'"Via: SIP/2.0/UDP $ATTACKER:5070;branch=z9hG4bKevilbye"$'\r\n'
	bye+=$'Max-Forwards: 70\r\nFrom: <sip:x@'"$ATTACKER"$'>;tag=x\r\nTo: <sip:x@'"$ATTACKER"$'>\r\n'
	bye+="$cid"$'\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n'
	# -w: only a bound in case the test dies; stolen_count stops it
	lab_start_bg pub "$LAB_TMP/$label-stolen.rtp.log" "$RTP_PEER" -b "$ATTACKER:5006" -t 0 \
		-w 300 -m stolen
	STOLEN_PID=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-stolen.rtp.log" '^bound ' 5 || lab_fail "$label: RTP listener did not start"
	lab_probe_bg pub "$LAB_TMP/$label-forger.log" "$ATTACKER:5070" listen 1.5 \
		send "$srv:5060" "$ok" send "$srv:5060" "$bye" listen 3
}

# stolen_count LABEL: stop the attacker's RTP listener (the call is over: the
# phones stopped sending, the BYE was answered) and set STOLEN to how many
# datagrams reached it; fails if the listener wrote no summary, which is not
# the same as 0.
STOLEN=
stolen_count() {
	local log=$LAB_TMP/$1-stolen.rtp.log
	kill -0 "$STOLEN_PID" 2>/dev/null ||
		lab_fail "$1: the attacker's RTP listener ended early: $(cat "$log")"
	kill -TERM "$STOLEN_PID"
	lab_wait "$STOLEN_PID" 10 || lab_fail "$1: the attacker's RTP listener failed: $(cat "$log")"
	STOLEN=$(field "$log" received)
	[ -n "$STOLEN" ] ||
		lab_fail "$1: the attacker's RTP listener wrote no summary: $(cat "$log")"
}

# --- one call -----------------------------------------------------------------
# call LABEL CALLEE_NAT CALLER_NAT SERVER CONTROL [attack]
# Leaves the RTP peers' logs in $LAB_TMP/LABEL-{callee,caller}.rtp.log and
# the SDP destinations in CALLEE_DST / CALLER_DST.
CALLEE_DST='' CALLER_DST=''
call() {
	local label=$1 cnat=$2 rnat=$3 srv=$4 ctl=$5 attack=${6:-}
	local callee=alice$label caller=bob$label hold=$(((RTP_SECS + 4) * 1000)) apid=
	if [ "$attack" = attack ]; then
		# before the INVITE: the ports are not allocated yet; it keeps going
		# through the whole call, racing the phones for the latch
		lab_start_bg pub "$LAB_TMP/$label-attacker.rtp.log" "$RTP_PEER" -b "$ATTACKER:5004" \
			-d "$srv:$PORTS_LO-$PORTS_HI" -t $((RTP_SECS + 12)) -w 1 -s 0xbad0bad0 -m attacker
		apid=$LAB_LAST_PID
		lab_wait_line "$LAB_TMP/$label-attacker.rtp.log" '^bound ' 5 || lab_fail "$label: attacker did not start"
		sleep 1
	fi
	lab_sipp_bg "$cnat-ph" "$label-callee" media_callee.xml -i "$(lab_phone_ip "$cnat")" -p 5060 \
		"$srv:5060" -s "$callee" -key expires 300 -cid_str "lab-$$-$label-%u" -aa \
		-key rtp_port "$RTP_PORT" -timeout 40 -timeout_error
	local pa=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-callee.messages.log" '^SIP/2.0 200' 10 ||
		lab_fail "$label: REGISTER of $callee via $cnat not answered 200"
	lab_sipp_bg "$rnat-ph" "$label-caller" media_caller.xml -i "$(lab_phone_ip "$rnat")" -p 5060 \
		"$srv:5060" -s "$callee" -key user "$caller" -cid_str "lab-$$-$label-%u" -d "$hold" \
		-key rtp_port "$RTP_PORT" -timeout 40 -timeout_error
	local pb=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-callee.messages.log" '^ACK ' 10 ||
		lab_fail "$label: the call was not set up (no ACK at the callee)"
	lab_wait_line "$LAB_TMP/$label-caller.messages.log" '^m=audio ' 5 ||
		lab_fail "$label: no SDP in the caller's 200"
	CALLEE_DST=$(lab_received_sdp "$label-callee" '^INVITE ')
	CALLER_DST=$(lab_received_sdp "$label-caller" '^SIP/2.0 200')
	[ -n "$CALLEE_DST" ] && [ -n "$CALLER_DST" ] ||
		lab_fail "$label: cannot read the SDPs (callee '$CALLEE_DST', caller '$CALLER_DST')"
	lab_log "$label: callee ($cnat) sends RTP to $CALLEE_DST, caller ($rnat) to $CALLER_DST"

	local pc pr
	[ "$attack" = forge ] && forge "$label" "$srv"
	# the phones start sending together: what one sends before the other's
	# first packet latched its leg is lost. So not at an instant fixed before
	# they were started (starting a process can take seconds under load):
	# each waits for SIGUSR1 once bound
	lab_start_bg "$cnat-ph" "$LAB_TMP/$label-callee.rtp.log" "$RTP_PEER" \
		-b "$(lab_phone_ip "$cnat"):$RTP_PORT" -d "$CALLEE_DST" -t "$RTP_SECS" -w 1 -G -m callee
	pc=$LAB_LAST_PID
	lab_start_bg "$rnat-ph" "$LAB_TMP/$label-caller.rtp.log" "$RTP_PEER" \
		-b "$(lab_phone_ip "$rnat"):$RTP_PORT" -d "$CALLER_DST" -t "$RTP_SECS" -w 1 -G -m caller
	pr=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$label-callee.rtp.log" '^bound ' 10 ||
		lab_fail "$label: callee rtp_peer did not start"
	lab_wait_line "$LAB_TMP/$label-caller.rtp.log" '^bound ' 10 ||
		lab_fail "$label: caller rtp_peer did not start"
	kill -USR1 "$pc" "$pr"
	lab_wait "$pc" $((RTP_SECS + 10)) || lab_fail "$label: callee rtp_peer failed"
	lab_wait "$pr" $((RTP_SECS + 10)) || lab_fail "$label: caller rtp_peer failed"
	lab_wait "$pb" 30; local rb=$?
	lab_wait "$pa" 30; local ra=$?
	[ -n "$apid" ] && { lab_wait "$apid" 30 || lab_fail "$label: attacker rtp_peer failed"; }
	lab_log "$label: callee $(grep '^summary' "$LAB_TMP/$label-callee.rtp.log")"
	lab_log "$label: caller $(grep '^summary' "$LAB_TMP/$label-caller.rtp.log")"
	[ "$rb" -eq 0 ] && [ "$ra" -eq 0 ] && lab_sipp_succeeded "$label-caller" &&
		lab_sipp_succeeded "$label-callee" || lab_fail "$label: the SIP call failed (caller $rb, callee $ra)"
	check_bodiless "$label-callee"
}

# check_relayed LABEL: both directions arrived through the relay.
check_relayed() {
	local label=$1 side other dst log sent got from n
	for side in callee caller; do
		[ "$side" = callee ] && other=caller dst=$CALLEE_DST || other=callee dst=$CALLER_DST
		[ "$side" = callee ] && re='^INVITE ' || re='^SIP/2.0 200'
		[ "${dst%:*}" = "$SRV1" ] || lab_fail "$label: $side's SDP names $dst, not the relay $SRV1"
		port=${dst##*:}
		[ "$port" -ge "$PORTS_LO" ] && [ "$port" -le "$PORTS_HI" ] ||
			lab_fail "$label: $side's SDP port $port is outside the relay range"
		sdp_has "$label-$side" "$re" 'a=nortpproxy:yes' ||
			lab_fail "$label: $side's SDP lacks a=nortpproxy:yes"
		log=$LAB_TMP/$label-$side.rtp.log
		sent=$(field "$LAB_TMP/$label-$other.rtp.log" sent)
		got=$(from_tag "$log" "$other")
		from=$(field "$log" from)
		n=$(field "$log" received)
		[ "$sent" -ge $((RTP_SECS * 45)) ] || lab_fail "$label: $other sent only $sent packets"
		[ $((got * 100)) -ge $((sent * MIN_PCT)) ] ||
			lab_fail "$label: $side got $got of $other's $sent packets (< $MIN_PCT %)"
		# everything that arrived came from the relay socket its SDP named
		[ "$from" = "$dst" ] || lab_fail "$label: $side received from '$from', not only from the relay's $dst"
		[ "$n" -eq "$got" ] || lab_fail "$label: $side received $n datagrams, $got of them $other's"
		[ "$(from_tag "$log" attacker)" -eq 0 ] || lab_fail "$label: the attacker's RTP reached $side"
		lab_log "$label: $side got $got/$sent of $other's packets, all from $from"
	done
}

# counters_before / check_counters LABEL: the relay's forwarded packets grew
# by at least what the phones got, and the fast path carried its share.
FWD0=0 FASTP0=0 EVIP0=0
EVIP='relay_media_evidence_total{kind=media-other-ip}'
counters_before() {
	FWD0=$(lab_counter "$CTL1" relay_forwarded_packets_total)
	FASTP0=$(lab_counter "$CTL1" relay_fastpath_packets_total)
	EVIP0=$(lab_counter "$CTL1" "$EVIP")
}
check_counters() {
	local label=$1 i got fwd fastp evip
	# the BYE deleted the session; its worker folds the kernel's counters in
	for i in $(seq 1 50); do
		[ "$(lab_counter "$CTL1" relay_sessions)" -eq 0 ] && break
		sleep 0.1
	done
	[ "$i" -lt 50 ] || lab_fail "$label: the relay session outlived the BYE"
	got=$(($(field "$LAB_TMP/$label-callee.rtp.log" received) + $(field "$LAB_TMP/$label-caller.rtp.log" received)))
	fwd=$(($(lab_counter "$CTL1" relay_forwarded_packets_total) - FWD0))
	fastp=$(($(lab_counter "$CTL1" relay_fastpath_packets_total) - FASTP0))
	lab_log "$label: relay forwarded $fwd packets ($fastp by the kernel), phones received $got"
	[ "$fwd" -ge "$got" ] || lab_fail "$label: relay_forwarded_packets_total grew by $fwd, phones got $got"
	[ "$fwd" -le $((got + got / 10 + 50)) ] || lab_fail "$label: relay counted $fwd packets, phones got $got"
	# both phones announced their private address; their media came from
	# their NAT's (docs/nat-evidence.md): one stream each
	evip=$(($(lab_counter "$CTL1" "$EVIP") - EVIP0))
	[ "$evip" -eq 2 ] || lab_fail "$label: $EVIP grew by $evip, not 2"
	if [ "$FAST" = 1 ]; then
		[ $((fastp * 100)) -ge $((fwd * 80)) ] ||
			lab_fail "$label: the kernel forwarded $fastp of $fwd packets (< 80 %)"
	else
		[ "$fastp" -eq 0 ] || lab_fail "$label: fast path off, yet relay_fastpath_packets_total grew by $fastp"
	fi
}

# --- the cases ----------------------------------------------------------------
counters_before
call sym-sym s1 s2 "$SRV1" "$CTL1"
check_relayed sym-sym
check_counters sym-sym

counters_before
call sym-eim e1 s2 "$SRV1" "$CTL1"
check_relayed sym-eim
check_counters sym-eim

src0=$(lab_counter "$CTL1" 'relay_dropped_total{reason=source}')
counters_before
call bleed s1 s2 "$SRV1" "$CTL1" attack
check_relayed bleed
check_counters bleed
alog=$LAB_TMP/bleed-attacker.rtp.log
asent=$(field "$alog" sent) arecv=$(field "$alog" received)
src1=$(lab_counter "$CTL1" 'relay_dropped_total{reason=source}')
lab_log "bleed: attacker $(grep '^summary' "$alog"); relay_dropped_total{reason=source} $src0 -> $src1"
[ "$asent" -gt 1000 ] || lab_fail "bleed: the attacker sent only $asent packets"
[ "$arecv" -eq 0 ] || lab_fail "bleed: the attacker received $arecv datagrams: $(grep '^from' "$alog")"
[ "$src1" -gt "$src0" ] || lab_fail "bleed: relay_dropped_total{reason=source} did not grow ($src0 -> $src1)"

unp0=$(lab_counter "$CTL1" proxy_responses_unproven_total)
counters_before
call forge s1 s2 "$SRV1" "$CTL1" forge
# the phones have stopped sending and the call is over: all the RTP that
# could have gone to the attacker has
stolen_count forge
grep -q '^sent .*SIP/2.0 200 OK' "$LAB_TMP/forge-forger.log" || lab_fail "forge: the forged 200 was not sent"
grep -q '^sent .*BYE sip:' "$LAB_TMP/forge-forger.log" || lab_fail "forge: the forged BYE was not sent"
unp1=$(lab_counter "$CTL1" proxy_responses_unproven_total)
lab_log "forge: the attacker's RTP port got $STOLEN datagrams;" \
	"proxy_responses_unproven_total $unp0 -> $unp1"
[ "$STOLEN" = 0 ] || lab_fail "forge: the forged 200 moved RTP to the attacker ($STOLEN datagrams)"
[ "$unp1" -gt "$unp0" ] || lab_fail "forge: proxy_responses_unproven_total did not grow ($unp0 -> $unp1)"
check_relayed forge
check_counters forge

# with eBPF (the fast path loaded), [sip] steering = auto is on as well: the
# calls' datagrams, through both NATs, went to their Call-ID's worker
if [ "$FAST" = 1 ]; then
	steered=$(lab_counter "$CTL1" sip_steered_total)
	lab_log "steering: the kernel gave $steered datagrams to their Call-ID's worker;" \
		"$(lab_counter "$CTL1" sip_worker_handoffs_total) were handed on in user space"
	[ "$steered" -gt 0 ] || lab_fail "steering: eBPF works here, yet sip_steered_total is 0"
fi

call never s1 s2 "$SRV2" "$CTL2"
for side in callee caller; do
	[ "$side" = callee ] && dst=$CALLEE_DST re='^INVITE ' || dst=$CALLER_DST re='^SIP/2.0 200'
	case ${dst%:*} in 100.64.*) ;; *) lab_fail "never: $side's SDP names $dst, not the peer's private address" ;; esac
	! sdp_has "never-$side" "$re" 'a=nortpproxy' || lab_fail "never: $side's SDP was relayed"
done
lost=0
for side in callee caller; do
	[ "$side" = callee ] && other=caller || other=callee
	sent=$(field "$LAB_TMP/never-$other.rtp.log" sent)
	got=$(field "$LAB_TMP/never-$side.rtp.log" received)
	lab_log "never: $side got $got of $other's $sent packets"
	[ $((got * 100)) -lt $((sent * 10)) ] && lost=$((lost + 1))
done
[ "$lost" -ge 1 ] || lab_fail "never: audio arrived both ways without the relay: the NATs do not do their job"
lab_log "never: audio lost in $lost direction(s) without the relay"
[ "$(lab_counter "$CTL2" relay_sessions)" -eq 0 ] || lab_fail "never: server 2 has relay sessions"

# --- no open relay: a MESSAGE for a third host (a gateway at ATTACKER:5099,
# as in toll fraud), from the attacker on the public side and from a phone
# behind a NAT (private inside, public as the server sees it; no users, so
# neither is authenticated): each refused 403 and counted, nothing reaches
# the gateway
relay_msg() { # FROM_ADDR:PORT: the request, and an x that $(...) keeps the CRLFs before
	printf 'MESSAGE sip:+442079460000@%s:5099 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrelay%s;rport\r\nMax-Forwards: 70\r\nFrom: <sip:x@%s>;tag=r\r\nTo: <sip:+442079460000@%s>\r\nCall-ID: relay-%s-%s\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\nx' \
		"$ATTACKER" "$1" "$$" "$SRV1" "$ATTACKER" "$$" "$1"
}
den0=$(lab_counter "$CTL1" proxy_relay_denied_total)
lab_probe_bg pub "$LAB_TMP/relay-gateway.log" "$ATTACKER:5099" listen 4
gw_pid=$LAB_LAST_PID
for who in pub:"$ATTACKER":5098 s1-ph:"$(lab_phone_ip s1)":5097; do
	ns=${who%%:*} from=${who#*:} msg=$(relay_msg "${who#*:}")
	lab_exec "$ns" "$LAB_PROBE" -b "$from" send "$SRV1:5060" "${msg%x}" recv 3 \
		>"$LAB_TMP/relay-$ns.log" || lab_fail "relay: no answer to $ns's MESSAGE: $(cat "$LAB_TMP/relay-$ns.log")"
	grep -q '^recv [0-9.:]* SIP/2.0 403' "$LAB_TMP/relay-$ns.log" ||
		lab_fail "relay: $ns's MESSAGE for a third host was not refused 403: $(head -n 3 "$LAB_TMP/relay-$ns.log")"
done
lab_wait "$gw_pid" 10 || true
! grep -q '^recv' "$LAB_TMP/relay-gateway.log" ||
	lab_fail "relay: the gateway received: $(grep '^recv' "$LAB_TMP/relay-gateway.log" | head -n 3)"
den1=$(lab_counter "$CTL1" proxy_relay_denied_total)
lab_log "relay: both MESSAGEs for a third host refused 403; proxy_relay_denied_total $den0 -> $den1"
[ "$den1" -eq $((den0 + 2)) ] || lab_fail "relay: proxy_relay_denied_total $den0 -> $den1, want +2"

[ -z "$BODY_ERRORS" ] || lab_fail "the proxy put a body into bodiless requests (stale memory): $BODY_ERRORS"
lab_log "PASS"
exit 0
