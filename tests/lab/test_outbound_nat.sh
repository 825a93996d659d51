#!/bin/bash
# Lab test of issue 12 ("How it is shown", lab part): SIP Outbound (RFC 5626)
# through real NAT, first with edge and registrar in one pinhole, then as
# three processes on three hosts (two edge-only, one registrar-only).
# Needs root, iproute2, iptables (u32 and string matches), conntrack, cc,
# sipp, jq, ss and $PINHOLE; baresip (Debian baresip-core) for the last part.
#
# Topology (tests/lab/lib.sh):
#   198.18.0.1, .2   the co-located pinhole: edge 1 and edge 2 are its two
#                    addresses (UDP and TCP 5060 on each), one registrar
#   ph (sym)         the phone: two sipps (scenarios/outbound_callee.xml) with
#                    one +sip.instance and reg-ids 1 and 2, behind a symmetric
#                    NAT (MASQUERADE --random-fully): the UDP flow through
#                    edge 1 (port 5060), the TCP flow through edge 2 (5062)
#   198.18.0.30      the caller (sipp caller_hangs_up.xml), public side
#   198.18.0.66      the attacker
#   198.18.0.21..23  separate shape: edge 1, edge 2, the registrar
#   bs (sym)         baresip, a real outbound client (sipnat=outbound, two
#                    outbound proxies, the uuid module for its instance)
#
# Per shape:
#  1 register  the TCP flow registers first, then the UDP flow (so the UDP
#              flow is the most recent: the first INVITE takes it);
#              `ctl registrations --json` shows two bindings of one instance
#              with reg-ids 1 and 2; the 200s carry Require: outbound (and
#              Flow-Timer, once the registrar promises one)
#  2 keepalive sipp cannot send STUN or CRLF, so tests/lab/flow_ka.c borrows
#              its sockets (pidfd_getfd) and sends them on the very flows:
#              STUN answers come back through the NAT's mapping (counted by
#              an iptables rule in the phone's namespace, which drops them
#              before sipp sees them); keepalives_seen_total{kind=stun|crlf}
#              and `ctl flows` where the flow table exists. Then STUN every
#              Flow-Timer * 0.8 s on the UDP flow until it is cut.
#  3 call 1    the caller's INVITE reaches the phone over one flow only (the
#              UDP one; forking once per instance needs i12-fail), the
#              caller's BYE reaches it over the same flow
#  4 forged    a Route with a real flow token (from the Record-Route the
#              caller got) with one character changed, from the attacker: 403,
#              and nothing reaches the phone
#  5 cut       edge 1's path is cut (iptables DROP of 198.18.0.1 in the
#              phone's NAT; separate shape: edge 1's process killed); call 2
#              still reaches the phone, over the TCP flow, the caller gets
#              200, and the time from the caller's INVITE to the phone's
#              receipt of it is printed (not asserted on); the caller's BYE
#              reaches the phone over the dialog's flow (TCP)
#  6 tcp       over TCP behind the symmetric NAT, INVITE and BYE used the
#              phone's one connection: the NAT saw no SYN from outside, the
#              server holds the same connection (ss) before and after, and
#              net_tcp_connects_total did not grow (where it exists)
# Then baresip registers two flows (UDP via 198.18.0.1, TCP via .2) with the
# co-located pinhole, and the caller calls it.
# Timers: the whole test takes about 20 s. The NATs' UDP timeout ($NAT_T s)
# is longer, so the keepalives matter to the server's flow liveness, not to
# the NAT: a UDP flow silent for Flow-Timer + [outbound] flow_margin (25 + 10
# s by default) is failed; flow_ka keeps the UDP flow well inside that until
# it is cut. TCP flows (Flow-Timer 120 s) and baresip (its own keepalives
# at Flow-Timer) need nothing within the test.
# A part whose feature is not on this build is skipped with a message (the
# branch that adds it has not landed); the checks of what is there run.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-60} # conntrack UDP timeouts in the NATs, seconds
CALLER=198.18.0.30 ATT=198.18.0.66
E1=198.18.0.21 E2=198.18.0.22 REG=198.18.0.23
UUID=6c3a1f80-5d2e-4b7a-9f10-00000000$((1000 + $$ % 9000))
UUID2=6c3a1f80-5d2e-4b7a-9f10-00000001$((1000 + $$ % 9000))

lab_require sipp ss jq
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
"$PINHOLE" serve --help >/dev/null 2>&1 || lab_skip "pinhole serve is not there yet"

lab_setup tob
FLOW_KA=$LAB_TMP/flow_ka
cc -std=c17 -O2 -Wall -Wextra -o "$FLOW_KA" "$LAB_DIR/flow_ka.c" || lab_fail "cannot build flow_ka"
lab_add_nat ph sym "$NAT_T"
lab_add_host cal "$CALLER"
lab_add_host att "$ATT"
PH=$(lab_phone_ip ph) PHWAN=$(lab_wan_ip ph)
SKIPPED=

# --- what this build has ---------------------------------------------------------
HELPCONF=$("$PINHOLE" serve --help-config)
# has_key SECTION KEY: does serve --help-config list KEY in [SECTION]?
has_key() {
	awk -v s="[$1]" -v k="$2" '/^\[/ { in_s = ($1 == s) } in_s && $1 == k { f = 1 } END { exit !f }' \
		<<<"$HELPCONF"
}
# skip WHAT WHY: note a part skipped
skip() {
	lab_log "SKIP $1: $2"
	SKIPPED+="$1; "
}
HAVE_FAIL=0 HAVE_SPLIT=0 HAVE_FT=0
has_key outbound failover_timeout && HAVE_FAIL=1  # i12-fail: per-instance routing and failover
has_key proxy registrar && HAVE_SPLIT=1           # i12-edge: edge-only processes
# i12-reg: Flow-Timer in the registrar's 200 (the edge-only process adds it
# in the separate shape: i12-edge); [outbound] flow_timer_udp may come from
# either, so the registrar's own max_flows_per_source tells
awk '$1 == "max_flows_per_source" { f = 1 } END { exit !f }' <<<"$HELPCONF" && HAVE_FT=1
HAVE_KA=0 HAVE_FLOWS=0
has_key outbound flow_margin && HAVE_KA=1 # i12-ka: flow liveness (and Flow-Timer as first hop)
"$PINHOLE" ctl --help 2>&1 | grep -q '^ *flows' && HAVE_FLOWS=1 # i12-ka: ctl flows

# --- counting rules ----------------------------------------------------------------
# count NS CHAIN NAME RULE...: an iptables rule in NS, inserted first in CHAIN,
# that counts (and with -j DROP in RULE, drops) what matches; read with counted
count() {
	local ns=$1 chain=$2 name=$3; shift 3
	lab_exec "$ns" iptables -w -I "$chain" 1 "$@" -m comment --comment "$name" ||
		lab_fail "iptables rule $name in $ns"
}
# counted NS CHAIN NAME: packets rule NAME matched so far
counted() {
	lab_exec "$1" iptables -w -nvxL "$2" | awk -v n="/* $3 */" 'index($0, n) { print $1; exit }'
}
STUN_U32='0>>22&0x3C@12=0x2112A442' # a STUN magic cookie in a UDP payload
# phone_rules NAT PORT_UDP PORT_TCP PREFIX: counters in NAT's phone and NAT:
# PREFIX-stun: STUN answers to the UDP flow (dropped: sipp must not see them)
# PREFIX-inv-udp / -tcp, PREFIX-bye-udp / -tcp: requests reaching either flow
# PREFIX-syn: TCP SYNs arriving at the NAT from outside (a server that tries to
# open a connection toward the phone)
phone_rules() {
	local nat=$1 pu=$2 pt=$3 p=$4 m
	count "$nat-ph" INPUT "$p-stun" -p udp --dport "$pu" -m u32 --u32 "$STUN_U32" -j DROP
	for m in INVITE BYE; do
		count "$nat-ph" INPUT "$p-${m,,}-udp" -p udp --dport "$pu" -m string --algo bm --to 40 --string "$m sip:"
		count "$nat-ph" INPUT "$p-${m,,}-tcp" -p tcp --dport "$pt" -m string --algo bm --string "$m sip:"
	done
	# to the NAT's own address (INPUT: what a server dialling the phone's
	# public address:port sends) and through it (FORWARD)
	count "$nat" INPUT "$p-syn" -i wan -p tcp --syn
	count "$nat" FORWARD "$p-syn" -i wan -p tcp --syn
}
# syns NAT PREFIX: TCP SYNs from outside that reached NAT so far
syns() { echo $(( $(counted "$1" INPUT "$2-syn") + $(counted "$1" FORWARD "$2-syn") )); }
phone_rules ph 5060 5062 ob
phone_rules ph 5070 5072 sp
# the SYN counter sees a connection attempt toward the NAT (from the attacker)
lab_exec att timeout 0.5 bash -c "exec 3<>/dev/tcp/$PHWAN/5062" 2>/dev/null
[ "$(syns ph ob)" -ge 1 ] || lab_fail "the NAT's SYN counter missed a connection attempt from outside"

# --- helpers -------------------------------------------------------------------------
# sipp_bg NS NAME SCENARIO TRANSPORT SIPP_ARGS...: sipp in the background (as
# lab_sipp_bg, with the transport given: u1 or t1); PID in LAB_LAST_PID
sipp_bg() {
	local ns=$1 name=$2 sf=$3 tp=$4; shift 4
	pushd "$LAB_TMP" >/dev/null || return 1
	lab_start_bg "$ns" "$LAB_TMP/$name.out" sipp -sf "$LAB_DIR/scenarios/$sf" -t "$tp" -bind_local -m 1 -nostdin \
		-trace_err -error_file "$LAB_TMP/$name.errors.log" \
		-trace_msg -message_file "$LAB_TMP/$name.messages.log" \
		-trace_screen -screen_file "$LAB_TMP/$name.screen.log" "$@"
	popd >/dev/null || return 1
}
# phone_flow NAME TRANSPORT PORT EDGE DOMAIN UUID REGID: one flow of the phone
# registers (outbound_callee.xml) and waits for its call; PID in LAB_LAST_PID
phone_flow() {
	local name=$1 tp=$2 port=$3 edge=$4 dom=$5 uuid=$6 regid=$7
	sipp_bg ph-ph "$name" outbound_callee.xml "$tp" -i "$PH" -p "$port" "$edge:5060" \
		-s phone -key domain "$dom" -key instance "$uuid" -key regid "$regid" \
		-key expires 600 -cid_str "lab-$$-$name-%u" -aa -timeout 80 -timeout_error
	local pid=$LAB_LAST_PID
	lab_wait_line "$LAB_TMP/$name.messages.log" '^SIP/2.0 200' 10 ||
		lab_fail "$name: the REGISTER over $tp via $edge was not answered 200: $(tail -n 20 "$LAB_TMP/$name.messages.log" 2>/dev/null; tail -n 5 "$LAB_TMP/$name.errors.log" 2>/dev/null)"
	LAB_LAST_PID=$pid
}
# hdr NAME START_RE HEADER: the HEADER lines (compact forms not handled) of
# the last message sipp run NAME received whose start line matches START_RE
hdr() {
	awk -v re="$2" -v h="$3" '
		{ sub(/\r$/, "") }
		/^----------------------/ { rx = 0; next }
		/message received/ { rx = 1; start = ""; next }
		rx && start == "" && NF { start = $0; want = (start ~ re); if (want) n = 0; next }
		rx && want && !NF { rx = 0 }
		rx && want && tolower(substr($0, 1, length(h) + 1)) == tolower(h ":") { got[++n] = $0 }
		END { for (i = 1; i <= n; i++) print got[i] }' "$LAB_TMP/$1.messages.log"
}
# msg_time NAME DIR START_RE: the time of day (seconds) at which sipp run NAME
# last sent (DIR sent) or received (DIR received) a message whose start line
# matches START_RE; sipp stamps each message in its log (HH:MM:SS.us)
msg_time() {
	awk -v d="$2" -v re="$3" '
		{ sub(/\r$/, "") }
		/^----------------------/ { split($NF, h, ":"); t = h[1] * 3600 + h[2] * 60 + h[3]; next }
		$0 ~ ("message " d) { look = 1; next }
		look && NF { if ($0 ~ re) last = t; look = 0 }
		END { if (last != "") print last }' "$LAB_TMP/$1.messages.log"
}
# caller NAME EDGE CID_NAME: the caller calls sip:phone@EDGE (INVITE, 180,
# 200, ACK, BYE), with the Call-ID of the phone's flow CID_NAME; foreground
caller() {
	(cd "$LAB_TMP" && lab_exec cal sipp -sf "$LAB_DIR/scenarios/caller_hangs_up.xml" -t u1 -bind_local -m 1 \
		-nostdin -i "$CALLER" -p 5060 "$2:5060" -s phone -key user caller -cid_str "lab-$$-$3-%u" \
		-d 300 -timeout 20 -timeout_error \
		-trace_err -error_file "$LAB_TMP/$1.errors.log" -trace_msg -message_file "$LAB_TMP/$1.messages.log" \
		-trace_screen -screen_file "$LAB_TMP/$1.screen.log" >"$LAB_TMP/$1.out" 2>&1 </dev/null)
}
# start_pinhole NAME NS CONF_BODY: a pinhole serve in NS; waits for its control
# endpoint (127.0.0.1:5080 in NS) and its first SIP socket. PID in LAB_LAST_PID
start_pinhole() {
	local name=$1 ns=$2 conf=$LAB_TMP/$1.conf pid i
	printf '; generated by test_outbound_nat.sh\n%s\n[control]\nlisten = 127.0.0.1:5080\n[log]\nlevel = debug\n' \
		"$3" >"$conf"
	lab_start_bg "$ns" "$LAB_TMP/$name.log" "$PINHOLE" serve --config "$conf"
	pid=$LAB_LAST_PID
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || lab_fail "$name exited: $(tail -n 20 "$LAB_TMP/$name.log")"
		lab_exec "$ns" "$PINHOLE" ctl counters --control 127.0.0.1:5080 >/dev/null 2>&1 && break
		sleep 0.1
	done
	[ "$i" -lt 100 ] || lab_fail "$name did not come up: $(tail -n 20 "$LAB_TMP/$name.log")"
	LAB_LAST_PID=$pid
}
ctl() { local ns=$1; shift; lab_exec "$ns" "$PINHOLE" ctl "$@" --control 127.0.0.1:5080; }
# counter NS NAME: a counter of the pinhole in NS (0 when absent)
counter() { ctl "$1" counters | jq -r --arg k "$2" '.[$k] // 0'; }
has_counter() { ctl "$1" counters | jq -e --arg k "$2" 'has($k)' >/dev/null; }
# family NS NAME: a counter family's members as {"cause=x": n, ...} (labels
# as keys; "" for an unlabelled one)
family() {
	ctl "$1" counters | jq -c --arg k "$2" 'with_entries(select(.key == $k or (.key | startswith($k + "{"))))
		| with_entries(.key |= (ltrimstr($k) | ltrimstr("{") | rtrimstr("}")))'
}
# sum_family JSON: the sum of a family's members
sum_family() { jq '[.[]] | add // 0' <<<"$1"; }
# bindings NS USER: USER's bindings as a JSON array of {instance, reg_id,
# transport, source, path} sorted by reg-id (path: null where the build does
# not show it)
bindings() {
	ctl "$1" registrations --json |
		jq -c --arg u "$2" '[.registrations[] | select(.aor | test("^(sips?:)?" + $u + "@"))
			| {instance, reg_id, transport, source, path}] | sort_by(.reg_id)'
}
# check_bindings NS USER UUID LABEL HOP1 HOP2: two bindings of USER, one
# instance (urn:uuid:UUID, or any one instance when UUID is empty), reg-ids 1
# and 2; HOP1, HOP2: what reg-id 1 and 2 came over, "udp"/"tcp" (the
# registrar sees the phone's flows) or an edge's address (it sees the edge);
# a Path with ;ob in the separate shape (where the build shows it)
check_bindings() {
	local b n
	b=$(bindings "$1" "$2")
	lab_log "$4: $2's bindings: $b"
	# the Path is shown since i12-reg (max_flows_per_source)
	n=$(jq -r --arg i "$3" --arg h1 "$5" --arg h2 "$6" --argjson reg "$HAVE_FT" '
		def hop: if ($h1 | test("^[0-9]")) then (.source | split(":")[0]) else .transport end;
		[.[] | select(($i == "" and .instance != "") or (.instance | test($i)))] |
		if length == 2 and (map(.instance) | unique | length) == 1 and
		   (map(.reg_id) == [1, 2]) and (map(hop) == [$h1, $h2]) and
		   (($h1 | test("^[0-9]") | not) or
		    all((.path == null and $reg == 0) or ((.path // "") | test(";ob"))))
		then "ok" else "no" end' <<<"$b")
	[ "$n" = ok ] || lab_fail "$4: expected two bindings of one instance ($3), reg-id 1 over $5 and 2 over $6: $b"
}
# flow_tcp_conns NS PORT: the established TCP connections to PORT in NS, as
# "local peer" lines, sorted
flow_tcp_conns() {
	lab_exec "$1" ss -Htn state established "( sport = :$2 )" | awk '{ print $3, $4 }' | sort
}
# flip TOKEN: the token with one character changed (the middle one)
flip() {
	local t=$1 i c
	i=$((${#t} / 2)) c=${t:$i:1}
	[ "$c" = A ] && c=B || c=A
	printf '%s%s%s' "${t:0:$i}" "$c" "${t:$((i + 1))}"
}

# --- one shape ------------------------------------------------------------------------
# run_shape LABEL P NS_REG NS_E1 NS_E2 EDGE1 EDGE2 DOMAIN PORT_UDP PORT_TCP UUID
#   NS_REG, NS_E1, NS_E2: namespaces of the pinholes (registrar, edge 1, edge 2:
#   one namespace three times in the co-located shape); EDGE1, EDGE2: the edge
#   addresses the flows go through; DOMAIN: the AOR's host, where the caller
#   sends its INVITE; P: the prefix of the phone's counting rules
# Uses CUT (a command string, eval'd: cuts edge 1's path) set by the caller.
run_shape() {
	local s=$1 p=$2 nsr=$3 ns1=$4 ns2=$5 e1=$6 e2=$7 dom=$8 pu=$9 pt=${10} uuid=${11}
	local tcpn="$s-tcp" udpn="$s-udp" b ft kapid= keepalive=1

	# 1 register: TCP through edge 2 first, then UDP through edge 1
	phone_flow "$tcpn" t1 "$pt" "$e2" "$dom" "$uuid" 2
	local tcp_pid=$LAB_LAST_PID
	phone_flow "$udpn" u1 "$pu" "$e1" "$dom" "$uuid" 1
	local udp_pid=$LAB_LAST_PID
	if [ "$s" = split ]; then
		check_bindings "$nsr" phone "$uuid" "$s 1 register" "$e1" "$e2"
	else
		check_bindings "$nsr" phone "$uuid" "$s 1 register" udp tcp
	fi
	for b in "$udpn" "$tcpn"; do
		hdr "$b" '^SIP/2.0 200' Require | grep -qi outbound ||
			lab_fail "$s: the 200 to $b's REGISTER has no Require: outbound: $(hdr "$b" '^SIP/2.0 200' Require)"
	done
	ft=$(hdr "$udpn" '^SIP/2.0 200' Flow-Timer | head -n 1 | tr -dc 0-9)
	if [ -n "$ft" ]; then
		lab_log "$s 1 register: Flow-Timer $ft s (UDP), $(hdr "$tcpn" '^SIP/2.0 200' Flow-Timer | tr -d '\r') over TCP"
	elif [ "$HAVE_FT" = 1 ] || [ "$HAVE_KA" = 1 ] || [ "$s" = split ]; then
		lab_fail "$s: no Flow-Timer in the 200 to the UDP flow's REGISTER"
	else
		skip "$s Flow-Timer" "neither max_flows_per_source (i12-reg) nor flow_margin (i12-ka): the registrar promises no Flow-Timer; keepalives every 20 s"
		ft=25
	fi
	if [ "$s" = split ]; then
		b=$(hdr "$udpn" '^SIP/2.0 200' Path)
		lab_log "$s 1 register: the 200 names the Path $b"
		grep -q ';ob' <<<"$b" || lab_fail "$s: no Path with ;ob in the 200 to the UDP flow's REGISTER"
	fi

	# 2 keepalive: STUN on the UDP flow (to edge 1), CRLF on the TCP flow (to edge 2)
	local st0 ks0 kc0 stun
	st0=$(counted ph-ph INPUT "$p-stun")
	ks0=$(counter "$ns1" 'keepalives_seen_total{kind=stun}') kc0=$(counter "$ns2" 'keepalives_seen_total{kind=crlf}')
	"$FLOW_KA" -p "$udp_pid" -l "$PH:$pu" -t udp -d "$e1:5060" -n 2 -i 200 >"$LAB_TMP/$s-ka-udp.log" 2>&1
	case $? in
	0) ;;
	4) skip "$s keepalive" "this kernel does not let flow_ka borrow sipp's sockets (pidfd_getfd): $(cat "$LAB_TMP/$s-ka-udp.log")"
	   keepalive=0 ;;
	*) lab_fail "$s: flow_ka on the UDP flow: $(cat "$LAB_TMP/$s-ka-udp.log")" ;;
	esac
	[ "$keepalive" = 1 ] && { "$FLOW_KA" -p "$tcp_pid" -l "$PH:0" -t tcp -d "$e2:5060" -n 2 -i 200 >"$LAB_TMP/$s-ka-tcp.log" 2>&1 ||
		lab_fail "$s: flow_ka on the TCP flow: $(cat "$LAB_TMP/$s-ka-tcp.log")"; }
	sleep 0.3
	if [ "$keepalive" = 1 ]; then
		stun=$(( $(counted ph-ph INPUT "$p-stun") - st0 ))
		lab_log "$s 2 keepalive: 2 STUN Binding requests on the UDP flow, $stun answers came back through the NAT's mapping; 2 CRLF pings on the TCP flow"
		[ "$stun" -eq 2 ] || lab_fail "$s: $stun STUN answers reached the phone's UDP socket for 2 requests"
		if has_counter "$ns1" 'keepalives_seen_total{kind=stun}'; then
			local ks kc
			ks=$(( $(counter "$ns1" 'keepalives_seen_total{kind=stun}') - ks0 ))
			kc=$(( $(counter "$ns2" 'keepalives_seen_total{kind=crlf}') - kc0 ))
			lab_log "$s 2 keepalive: keepalives_seen_total stun +$ks (edge 1), crlf +$kc (edge 2)"
			[ "$ks" -ge 2 ] && [ "$kc" -ge 2 ] || lab_fail "$s: the edges did not count the keepalives (stun +$ks, crlf +$kc)"
		else
			skip "$s keepalive counters" "no keepalives_seen_total (i12-ka has not landed)"
		fi
		if [ "$HAVE_FLOWS" = 1 ]; then
			ctl "$ns1" flows --json >"$LAB_TMP/$s-flows1.json" || lab_fail "$s: ctl flows"
			ctl "$ns2" flows --json >"$LAB_TMP/$s-flows2.json" || lab_fail "$s: ctl flows"
			# the phone's flow at each edge: from the NAT's address, the
			# keepalive we sent last seen on it
			local f1 f2
			f1=$(jq -c --arg w "$PHWAN:" '[.flows[] | select(.transport == "udp" and (.remote | startswith($w)))]' \
				"$LAB_TMP/$s-flows1.json")
			f2=$(jq -c --arg w "$PHWAN:" '[.flows[] | select(.transport == "tcp" and (.remote | startswith($w)))]' \
				"$LAB_TMP/$s-flows2.json")
			lab_log "$s 2 keepalive: ctl flows: edge 1 $f1; edge 2 $f2"
			jq -e 'length == 1 and .[0].last_keepalive_kind == "stun"' <<<"$f1" >/dev/null ||
				lab_fail "$s: ctl flows on edge 1 does not show the phone's UDP flow with its STUN keepalive"
			jq -e 'length == 1 and .[0].last_keepalive_kind == "crlf"' <<<"$f2" >/dev/null ||
				lab_fail "$s: ctl flows on edge 2 does not show the phone's TCP flow with its CRLF keepalive"
		# the flow table knows each flow's owner and what was promised (in
		# the separate shape, the edge learns it as the registrar's 200 passes)
		jq -e --arg i "$uuid" --argjson ft "$ft" '.[0] | .reg_id == 1 and (.instance | test($i)) and
			.flow_timer == $ft and .state == "alive"' <<<"$f1" >/dev/null ||
			lab_fail "$s: ctl flows: the UDP flow is not reg-id 1 of the instance, alive, with Flow-Timer $ft"
		jq -e --arg i "$uuid" '.[0] | .reg_id == 2 and (.instance | test($i)) and .state == "alive"' \
			<<<"$f2" >/dev/null || lab_fail "$s: ctl flows: the TCP flow is not reg-id 2 of the instance, alive"
		else
			skip "$s ctl flows" "no 'pinhole ctl flows' (i12-ka has not landed)"
		fi
		# then every Flow-Timer * 0.8 s until the flow is cut
		lab_start_bg ph-ph "$LAB_TMP/$s-ka-bg.log" "$FLOW_KA" -p "$udp_pid" -l "$PH:$pu" -t udp -d "$e1:5060" \
			-n 100 -i $((ft * 800))
		kapid=$LAB_LAST_PID
	fi

	# 3 call 1: over the UDP flow only, BYE over it too
	local syn0 cx0 conns0 iu it bu bt
	syn0=$(syns ph "$p") cx0=$(counter "$ns2" net_tcp_connects_total)
	conns0=$(flow_tcp_conns "$ns2" 5060 | grep "$PHWAN")
	it=$(counted ph-ph INPUT "$p-invite-tcp")
	caller "$s-call1" "$dom" "$udpn"; rc=$?
	lab_wait "$udp_pid" 10; ru=$?
	iu=$(counted ph-ph INPUT "$p-invite-udp") bu=$(counted ph-ph INPUT "$p-bye-udp")
	it=$(( $(counted ph-ph INPUT "$p-invite-tcp") - it ))
	lab_log "$s 3 call 1: caller exit $rc, UDP flow's sipp exit $ru; INVITEs at the UDP flow $iu, at the TCP flow $it; BYEs at the UDP flow $bu"
	[ "$rc" -eq 0 ] && lab_sipp_succeeded "$s-call1" && [ "$ru" -eq 0 ] && lab_sipp_succeeded "$udpn" ||
		lab_fail "$s: call 1 over the UDP flow failed (caller $rc, phone $ru)"
	[ "$iu" -ge 1 ] && [ "$bu" -ge 1 ] || lab_fail "$s: INVITE ($iu) or BYE ($bu) did not arrive over the UDP flow"
	if [ "$HAVE_FAIL" = 1 ]; then
		[ "$it" -eq 0 ] || lab_fail "$s: call 1 was forked to the instance's second flow too ($it INVITEs over TCP)"
	else
		skip "$s one branch per instance" "no failover_timeout (i12-fail has not landed): this build forks to every binding ($it INVITEs over TCP)"
	fi

	# 4 forged token, from the attacker
	local rr tok bad inv0 n403
	rr=$(hdr "$s-call1" '^SIP/2.0 200' Record-Route | head -n 1)
	tok=$(sed -n 's/^[^<]*<sip:\([A-Za-z0-9_-]*\)@.*/\1/p' <<<"$rr")
	[ -n "$tok" ] || lab_fail "$s: no flow token in the Record-Route the caller got: $rr"
	bad=$(flip "$tok")
	local rhost
	rhost=$(sed -n 's/^[^<]*<sip:[A-Za-z0-9_-]*@\([^;>]*\).*/\1/p' <<<"$rr")
	inv0=$(( $(counted ph-ph INPUT "$p-invite-udp") + $(counted ph-ph INPUT "$p-invite-tcp") ))
	local req
	printf -v req 'INVITE sip:phone@%s:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:5070;branch=z9hG4bKforge%s%s;rport\r\nRoute: <sip:%s@%s;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:evil@%s>;tag=f%s\r\nTo: <sip:phone@%s>\r\nCall-ID: forge-%s-%s\r\nCSeq: 1 INVITE\r\nContact: <sip:evil@%s:5070>\r\nContent-Length: 0\r\n\r\n' \
		"$PH" "$pu" "$ATT" "$s" "$$" "$bad" "$rhost" "$ATT" "$$" "$dom" "$s" "$$" "$ATT"
	local dst=$rhost
	[[ $dst == *:* ]] || dst=$dst:5060
	lab_exec att "$LAB_PROBE" -b "$ATT:5070" send "$dst" "$req" recv 3 listen 0.5 >"$LAB_TMP/$s-forge.log" 2>&1
	n403=$(grep -ac '^recv [0-9.:]* SIP/2.0 403' "$LAB_TMP/$s-forge.log")
	local inv1
	inv1=$(( $(counted ph-ph INPUT "$p-invite-udp") + $(counted ph-ph INPUT "$p-invite-tcp") ))
	lab_log "$s 4 forged: token $tok -> $bad in a Route to $rhost: $(grep -a '^recv' "$LAB_TMP/$s-forge.log" | head -n 1 | cut -c1-80); INVITEs reaching the phone +$((inv1 - inv0))"
	[ "$n403" -ge 1 ] || lab_fail "$s: the forged token was not answered 403: $(head -c 400 "$LAB_TMP/$s-forge.log")"
	[ "$inv1" -eq "$inv0" ] || lab_fail "$s: the request with the forged token reached the phone"

	# 5 cut edge 1, call 2 over the TCP flow
	[ -z "$kapid" ] || lab_kill "$kapid"
	eval "$CUT"
	local fo0 fo1 t_inv t_rx rt
	fo0=$(family "$nsr" outbound_failovers_total)
	caller "$s-call2" "$dom" "$tcpn"; rc=$?
	lab_wait "$tcp_pid" 10; rt=$?
	t_inv=$(msg_time "$s-call2" sent '^INVITE ')
	t_rx=$(msg_time "$tcpn" received '^INVITE ')
	bt=$(counted ph-ph INPUT "$p-bye-tcp")
	lab_log "$s 5 cut: call 2: caller exit $rc, TCP flow's sipp exit $rt; caller's INVITE to the phone's receipt over TCP: $(awk -v a="$t_inv" -v b="$t_rx" 'BEGIN { if (a != "" && b != "") printf "%.1f ms", ((b - a + 86400) % 86400) * 1000; else print "n/a" }'); BYEs at the TCP flow $bt; $(cut_report)"
	if [ "$HAVE_FAIL" = 1 ]; then
		[ "$rc" -eq 0 ] && lab_sipp_succeeded "$s-call2" ||
			lab_fail "$s: call 2 after the cut did not get 200 and end (caller $rc)"
		[ "$rt" -eq 0 ] && lab_sipp_succeeded "$tcpn" || lab_fail "$s: call 2 did not reach the phone over TCP (phone $rt)"
		fo1=$(family "$nsr" outbound_failovers_total)
		local fo=$(( $(sum_family "$fo1") - $(sum_family "$fo0") ))
		lab_log "$s 5 cut: outbound_failovers_total +$fo (by cause, before $fo0, after $fo1)"
		[ "$fo" -ge 1 ] || lab_fail "$s: call 2 reached the phone without a failover counted"
	else
		skip "$s failover" "no failover_timeout (i12-fail has not landed); call 2 $( [ "$rc" -eq 0 ] && echo 'reached the TCP flow by forking to every binding' || echo failed)"
		[ "$rc" -eq 0 ] || { lab_kill "$tcp_pid"; return 0; }
	fi
	[ "$bt" -ge 1 ] || lab_fail "$s: the caller's BYE did not reach the phone over the TCP flow"

	# 6 tcp: the phone's own connection, nothing opened toward the NAT
	# the phone's sipp has closed its connection by now: the NAT's conntrack
	# table still lists every TCP connection it carried (TIME_WAIT and all)
	local syn conns1
	syn=$(( $(syns ph "$p") - syn0 ))
	conns1=$(lab_conntrack ph -p tcp --orig-src "$PH" --orig-dst "$e2" --orig-port-dst 5060 |
		awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^dport=/) p = substr($i, 7); print p }')
	lab_log "$s 6 tcp: the phone's connection at edge 2 before the calls: [$conns0]; connections the NAT carried to edge 2, by public port: [$(echo $conns1)]; SYNs from outside at the NAT: $syn"
	[ "$syn" -eq 0 ] || lab_fail "$s: $syn TCP SYNs from outside reached the phone's NAT"
	[ -n "$conns0" ] && [ "$conns1" = "${conns0##*:}" ] ||
		lab_fail "$s: the NAT carried other TCP connections to edge 2 than the phone's one"
	if has_counter "$ns2" net_tcp_connects_total; then
		local cx=$(( $(counter "$ns2" net_tcp_connects_total) - cx0 ))
		lab_log "$s 6 tcp: net_tcp_connects_total +$cx on edge 2"
		[ "$cx" -eq 0 ] || lab_fail "$s: edge 2 attempted $cx outgoing TCP connections"
	else
		skip "$s net_tcp_connects_total" "no such counter (i12-conn has not landed)"
	fi
}

# --- shape 1: edge and registrar in one pinhole, two addresses -----------------------
S1=$LAB_SRV_IP S2=$LAB_SRV_IP2
start_pinhole colo srv "[sip]
listen = udp:$S1:5060, tcp:$S1:5060, udp:$S2:5060, tcp:$S2:5060
workers = 2
[registrar]
open = yes
[store]
path ="
lab_wait_udp srv "$S2:5060" 5 || lab_fail "pinhole did not bind $S2:5060"
# the path between the phone's NAT and edge 1, cut in the NAT (not at the
# server, where a DROP would make the send itself fail)
CUT="count ph FORWARD cut-out -s $S1 -j DROP; count ph FORWARD cut-in -d $S1 -j DROP"
cut_report() { echo "dropped at the cut: $(counted ph FORWARD cut-out) from edge 1, $(counted ph FORWARD cut-in) to it"; }
run_shape colo ob srv srv srv "$S1" "$S2" "$S1" 5060 5062 "$UUID"

# --- shape 2: two edge-only processes and a registrar-only one, three hosts ------------
if [ "$HAVE_SPLIT" = 1 ]; then
	lab_add_host e1 "$E1"
	lab_add_host e2 "$E2"
	lab_add_host reg "$REG"
	# the configs of docs/outbound.md, shape 2 (the edges have one address:
	# phones and registrar reach the same one here)
	start_pinhole reg reg "[sip]
listen = udp:$REG:5060, tcp:$REG:5060
domains = $REG
rate_limit_exempt = $E1, $E2, 127.0.0.0/8
workers = 2
[proxy]
trusted = $E1, $E2
[registrar]
open = yes
[store]
path ="
	for e in 1 2; do
		ip=$E1; [ "$e" = 2 ] && ip=$E2
		start_pinhole "edge$e" "e$e" "[sip]
listen = udp:$ip:5060, tcp:$ip:5060
domains = $REG
flow_key = $(printf '%064x' "$e")
workers = 2
[proxy]
registrar = udp:$REG:5060"
		[ "$e" = 1 ] && EDGE1_PID=$LAB_LAST_PID
	done
	CUT='lab_kill $EDGE1_PID'
	cut_report() { echo "edge 1 (pid $EDGE1_PID) killed"; }
	run_shape split sp reg e1 e2 "$E1" "$E2" "$REG" 5070 5072 "$UUID2"
else
	skip "separate shape" "no [proxy] registrar (i12-edge has not landed: no edge-only process)"
fi

# --- baresip: a real outbound client with two flows --------------------------------------
if ! command -v baresip >/dev/null 2>&1; then
	skip baresip "baresip (Debian baresip-core) is not installed"
elif [ ! -f /usr/lib/baresip/modules/uuid.so ]; then
	skip baresip "baresip-core has no uuid module"
else
	lab_add_nat bs sym "$NAT_T"
	BS=$(lab_phone_ip bs) dir=$LAB_TMP/bob.baresip
	lab_baresip_config "$dir" "$BS:5060" 42000-42099 'module_tmp uuid.so' 'module_app account.so'
	echo "<sip:bob@$S1>;sipnat=outbound;outbound=\"sip:$S1;transport=udp\";outbound2=\"sip:$S2;transport=tcp\";regint=600;answermode=auto;audio_codecs=PCMU" \
		>"$dir/accounts"
	lab_start_bg bs-ph "$LAB_TMP/bob.baresip.log" /usr/bin/baresip -f "$dir" -s
	BOB_PID=$LAB_LAST_PID
	for i in $(seq 1 100); do
		[ "$(bindings srv bob | jq length)" -ge 2 ] && break
		kill -0 "$BOB_PID" 2>/dev/null || lab_fail "baresip exited: $(tail -n 20 "$LAB_TMP/bob.baresip.log")"
		sleep 0.1
	done
	buuid=$(cat "$dir/uuid" 2>/dev/null)
	check_bindings srv bob "$buuid" "baresip" udp tcp
fi
if [ -n "${BOB_PID-}" ] && [ "$HAVE_FAIL" = 0 ]; then
	skip "baresip call" "no failover_timeout (i12-fail has not landed): this build forks the INVITE to both of baresip's flows, and it answers both"
elif [ -n "${BOB_PID-}" ]; then
	(cd "$LAB_TMP" && lab_exec cal sipp -sf "$LAB_DIR/scenarios/caller_hangs_up.xml" -t u1 -bind_local -m 1 \
		-nostdin -i "$CALLER" -p 5064 "$S1:5060" -s bob -key user caller -cid_str "lab-$$-bob-%u" \
		-d 500 -timeout 15 -timeout_error -trace_msg -message_file "$LAB_TMP/bob-call.messages.log" \
		>"$LAB_TMP/bob-call.out" 2>&1 </dev/null); rc=$?
	lab_log "baresip: a call from the caller: sipp exit $rc"
	[ "$rc" -eq 0 ] && lab_sipp_succeeded bob-call || lab_fail "the call to baresip failed (sipp exit $rc)"
	lab_wait_line "$LAB_TMP/bob.baresip.log" '^BYE sip:' 5 || lab_fail "the caller's BYE did not reach baresip"
	# baresip traces what it receives (-s): one INVITE, over one of its flows
	# (a retransmission over UDP has the same request line)
	inv=$(grep -a '^INVITE sip:' "$LAB_TMP/bob.baresip.log" | sort -u)
	lab_log "baresip: the INVITEs it received: $(tr -d '\r' <<<"$inv" | tr '\n' ' ')"
	[ "$(grep -c . <<<"$inv")" -eq 1 ] || lab_fail "baresip received the call more than once (one INVITE per instance)"
fi

[ -z "$SKIPPED" ] || lab_log "skipped: $SKIPPED"
lab_log "PASS"
exit 0
