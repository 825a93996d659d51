# shellcheck shell=bash
# tests/lab/lib.sh: a NAT lab in network namespaces, for pinhole's lab tests.
#
# Topology (one lab per test process; every name carries the test's PID):
#
#              "public internet" 198.18.0.0/24, a bridge in namespace <id>-pub
#     +-------------------------+---------------------------+---------- ...
#     | 198.18.0.1, 198.18.0.2  | 198.18.0.11 (wan)         | 198.18.0.12 (wan)
#   <id>-srv                  <id>-<nat1>                 <id>-<nat2>      NAT routers
#   (the server host)           | 100.64.1.1 (lan)          | 100.64.2.1
#                               |                           |
#                             <id>-<nat1>-ph              <id>-<nat2>-ph   phones
#                               100.64.1.2                  100.64.2.2
#
# Nothing in the lab is connected to the host's own namespace: veth pairs are
# created directly inside the lab's namespaces, no route leads out, and the
# server has no route to the LANs (it only ever sees the NATs' addresses).
#
# NAT kinds (lab_add_nat NAME KIND TIMEOUT):
#   eim  endpoint-independent mapping, port preserving: MASQUERADE
#   sym  symmetric (a new random port per destination): MASQUERADE --random-fully
#   full endpoint-independent mapping and filtering ("full cone"): eim, plus a
#        DNAT of any inbound UDP to the phone on the same port
#   addr endpoint-independent mapping, address-dependent filtering ("restricted
#        cone"): eim, plus that DNAT only from an IP the phone's port has sent to
#        (an nftables set the phone's outbound packets fill)
# eim and sym filter inbound traffic like mainline netfilter always does (address-and-
# port dependent), drop unsolicited inbound packets silently (no ICMP: a
# rejected packet would otherwise leave a conntrack entry that makes the NAT
# pick a new port for the phone's next packet), and have both conntrack UDP
# timeouts (nf_conntrack_udp_timeout, nf_conntrack_udp_timeout_stream) set to
# TIMEOUT seconds inside the NAT's namespace (they are per namespace).
#
# Usage:
#   . "$LAB_DIR/lib.sh"
#   lab_require sipp            # exit 77 unless root with the tools (and these)
#   lab_setup tnt               # namespaces tnt<PID>-*, cleanup trap installed
#   lab_add_nat n1 eim 20       # NAT n1 + phone n1-ph behind it
#   lab_exec n1-ph "$LAB_PROBE" -b 100.64.1.2:4000 send 198.18.0.1:7000 hi
#   lab_start_bg srv "$LAB_TMP/x.log" some-daemon --flag   # PID in LAB_LAST_PID
#   lab_verify_nat n1           # asserts the NAT behaves as its kind says
#   ... lab_cleanup runs on EXIT/INT/TERM.
#
# More helpers: lab_add_host NAME IP (a host on the public segment),
# lab_wait PID [SECS], lab_kill PID, lab_wait_line FILE RE [SECS],
# lab_wait_udp NS ADDR:PORT [SECS], lab_probe_bg NS LOG ADDR:PORT STEP...,
# lab_recv_src LOG [MSG], lab_conntrack NAT [ARGS], lab_nat_mapping NAT PORT
# DST_IP DST_PORT, lab_sipp / lab_sipp_bg NS NAME SCENARIO ARGS...,
# lab_sipp_succeeded NAME, lab_on_cleanup CMD, lab_dump_logs.  Functions that
# start processes or fail the test must run in the test's own shell, not in
# $(...) or a pipeline (PIDs are recorded, and lab_fail exits, in that shell).
# LAB_KEEP=1 keeps $LAB_TMP (logs) after a passing run; a failing run always
# keeps it and prints the logs.
#
# Logical namespace names for lab_exec/lab_start_bg: pub, srv, <nat>, <nat>-ph.
# Addresses: $LAB_SRV_IP, $LAB_SRV_IP2, lab_wan_ip NAT, lab_phone_ip NAT.
# A UDP test peer, $LAB_PROBE (tests/lab/udp_probe.c, built by lab_setup).

LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
LAB_SRV_IP=198.18.0.1
LAB_SRV_IP2=198.18.0.2
LAB_ID=
LAB_TMP=
LAB_PROBE=
LAB_LAST_PID=
LAB_PIDS=()
LAB_NSES=()
LAB_NAT_COUNT=0
LAB_CLEANUP_HOOKS=()
declare -gA LAB_KIND=() LAB_IDX=() LAB_TIMEOUT=() LAB_WAN=() LAB_ALG=()

lab_log()  { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }
lab_fail() { printf '[lab %s] FAIL: %s\n' "$(date +%T)" "$*" >&2; exit 1; }
lab_skip() { printf '[lab] SKIP: %s\n' "$*" >&2; exit 77; }

# lab_require [TOOL...]: exit 77 (ctest SKIP_RETURN_CODE) unless we are root,
# the base tools and the given ones exist, and namespaces can be made here.
lab_require() {
	[ "$(id -u)" -eq 0 ] || lab_skip "lab tests need root"
	local t
	for t in ip iptables sysctl conntrack cc awk "$@"; do
		command -v "$t" >/dev/null 2>&1 || lab_skip "missing tool: $t"
	done
	local probe="labchk$$"
	ip netns add "$probe" 2>/dev/null || lab_skip "cannot create network namespaces here"
	if ! ip netns exec "$probe" iptables -t nat -L -n >/dev/null 2>&1; then
		ip netns del "$probe"
		lab_skip "iptables nat does not work inside a namespace here"
	fi
	ip netns del "$probe"
}

# lab_ns LOGICAL: the real namespace name.
lab_ns() { printf '%s-%s' "$LAB_ID" "$1"; }

# lab_exec LOGICAL CMD...: run CMD inside a lab namespace.
lab_exec() {
	local ns; ns=$(lab_ns "$1"); shift
	ip netns exec "$ns" "$@"
}

# lab_start_bg LOGICAL LOGFILE CMD...: start CMD in the background inside a
# lab namespace, stdout+stderr to LOGFILE.  Its PID is recorded for cleanup
# and left in LAB_LAST_PID (ip netns exec execs CMD, so it is CMD's own PID).
lab_start_bg() {
	local ns log; ns=$(lab_ns "$1"); log=$2; shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
	LAB_LAST_PID=$!
	LAB_PIDS+=("$LAB_LAST_PID")
}

# lab_wait PID [SECS]: wait for a process started by lab_start_bg, at most SECS
# (default 60); returns its exit status, or 124 after killing it on timeout.
lab_wait() {
	local pid=$1 secs=${2:-60} i=0
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$i" -ge $((secs * 10)) ]; then
			kill -TERM "$pid" 2>/dev/null; sleep 0.2; kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return 124
		fi
		sleep 0.1; i=$((i + 1))
	done
	wait "$pid"
}

# lab_kill PID: stop one process we started (TERM, then KILL).
lab_kill() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# lab_wait_line FILE REGEX [SECS]: wait until a line of FILE matches (grep -E).
lab_wait_line() {
	local file=$1 re=$2 secs=${3:-10} i=0
	until grep -Eq -- "$re" "$file" 2>/dev/null; do
		[ "$i" -ge $((secs * 20)) ] && return 1
		sleep 0.05; i=$((i + 1))
	done
}

# lab_wait_udp LOGICAL ADDR:PORT [SECS]: wait until a UDP socket is bound to
# ADDR:PORT (or *:PORT) in a lab namespace.
lab_wait_udp() {
	local ns=$1 addr=$2 secs=${3:-10} i=0
	until lab_exec "$ns" ss -Hunl 2>/dev/null |
		awk -v a="$addr" -v w="*:${addr##*:}" -v z="0.0.0.0:${addr##*:}" \
			'$4 == a || $4 == w || $4 == z { f = 1 } END { exit !f }'; do
		[ "$i" -ge $((secs * 20)) ] && return 1
		sleep 0.05; i=$((i + 1))
	done
}

# lab_on_cleanup CMD: run CMD (a string, eval'd) at cleanup, before namespaces go.
lab_on_cleanup() { LAB_CLEANUP_HOOKS+=("$1"); }

# lab_add_ns LOGICAL: create one namespace of the lab, loopback up, no IPv6.
lab_add_ns() {
	local ns; ns=$(lab_ns "$1")
	ip netns add "$ns" || lab_fail "ip netns add $ns"
	LAB_NSES+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null
	return 0
}

# lab_reap_stale PREFIX: remove namespaces PREFIX<pid>-* left behind by a test
# process that no longer exists (e.g. killed by a ctest timeout with SIGKILL).
lab_reap_stale() {
	local prefix=$1 ns pid p
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		[[ $ns =~ ^${prefix}([0-9]+)- ]] || continue
		pid=${BASH_REMATCH[1]}
		kill -0 "$pid" 2>/dev/null && continue
		lab_log "removing stale namespace $ns (test PID $pid is gone)"
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		ip netns del "$ns" 2>/dev/null
	done
	return 0
}

# lab_setup [PREFIX]: make the public segment and the server host, build the
# UDP probe, install the cleanup trap.  PREFIX: a few letters naming the test
# (namespaces are PREFIX<PID>-pub, -srv, ...).  Sets LAB_ID, LAB_TMP, LAB_PROBE.
lab_setup() {
	local prefix=${1:-lab}
	[[ $prefix =~ ^[a-z]{1,6}$ ]] || lab_fail "lab_setup: prefix must be 1-6 lowercase letters"
	LAB_ID="$prefix$$"
	lab_reap_stale "$prefix"
	LAB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$LAB_ID.XXXXXX") || lab_fail "mktemp"
	trap 'lab_cleanup' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	LAB_PROBE="$LAB_TMP/udp_probe"
	cc -std=c17 -O2 -Wall -Wextra -o "$LAB_PROBE" "$LAB_DIR/udp_probe.c" ||
		lab_fail "cannot build udp_probe"

	local pub srv
	lab_add_ns pub; pub=$(lab_ns pub)
	lab_add_ns srv; srv=$(lab_ns srv)
	# The public segment: a bridge, not routed anywhere, not filtered.
	ip netns exec "$pub" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null
	ip -n "$pub" link add br0 type bridge || lab_fail "bridge"
	ip -n "$pub" link set br0 up
	ip link add eth0 netns "$srv" type veth peer name p-srv netns "$pub" || lab_fail "veth srv"
	ip -n "$pub" link set p-srv master br0 up
	ip -n "$srv" addr add "$LAB_SRV_IP/24" dev eth0
	ip -n "$srv" addr add "$LAB_SRV_IP2/24" dev eth0
	ip -n "$srv" link set eth0 up
	lab_log "lab $LAB_ID: server $LAB_SRV_IP (and $LAB_SRV_IP2), logs in $LAB_TMP"
}

lab_wan_ip()   { if [ -n "${LAB_WAN[$1]-}" ]; then printf '%s' "${LAB_WAN[$1]}"; else printf '198.18.0.%d' $((10 + LAB_IDX[$1])); fi; }
lab_lan_ip()   { printf '100.64.%d.1' "${LAB_IDX[$1]}"; }
lab_phone_ip() { printf '100.64.%d.2' "${LAB_IDX[$1]}"; }

# lab_add_nat NAME KIND TIMEOUT: a NAT router <id>-NAME (wan 198.18.0.(10+N),
# lan 100.64.N.1/24) and a phone <id>-NAME-ph (100.64.N.2) behind it.
# KIND: eim | sym.  TIMEOUT: seconds, both conntrack UDP timeouts.
lab_add_nat() {
	local name=$1 kind=$2 timeout=$3
	[[ $name =~ ^[a-z0-9]{1,10}$ ]] || lab_fail "lab_add_nat: NAME must be 1-10 of [a-z0-9]"
	[[ $timeout =~ ^[0-9]+$ ]] || lab_fail "lab_add_nat: TIMEOUT must be seconds"
	[[ $kind =~ ^(eim|sym|full|addr)$ ]] || lab_fail "lab_add_nat: KIND must be eim, sym, full or addr"
	[ -z "${LAB_IDX[$name]+x}" ] || lab_fail "lab_add_nat: $name exists"
	LAB_NAT_COUNT=$((LAB_NAT_COUNT + 1))
	LAB_IDX[$name]=$LAB_NAT_COUNT
	LAB_KIND[$name]=$kind
	# shellcheck disable=SC2034 # for tests: the NAT's conntrack UDP timeout
	LAB_TIMEOUT[$name]=$timeout
	local pub nat ph
	pub=$(lab_ns pub)
	lab_add_ns "$name"; nat=$(lab_ns "$name")
	lab_add_ns "$name-ph"; ph=$(lab_ns "$name-ph")

	ip link add wan netns "$nat" type veth peer name "p-$name" netns "$pub" || lab_fail "veth wan"
	ip -n "$pub" link set "p-$name" master br0 up
	ip link add lan netns "$nat" type veth peer name eth0 netns "$ph" || lab_fail "veth lan"
	ip -n "$nat" addr add "$(lab_wan_ip "$name")/24" dev wan
	ip -n "$nat" addr add "$(lab_lan_ip "$name")/24" dev lan
	ip -n "$nat" link set wan up
	ip -n "$nat" link set lan up
	ip -n "$ph" addr add "$(lab_phone_ip "$name")/24" dev eth0
	ip -n "$ph" link set eth0 up
	ip -n "$ph" route add default via "$(lab_lan_ip "$name")"

	lab_nat_rules "$name" "$kind" "$timeout"
	lab_log "nat $name ($kind, udp timeout ${timeout}s): wan $(lab_wan_ip "$name"), phone $(lab_phone_ip "$name")"
}

# lab_nat_rules LOGICAL KIND TIMEOUT: make namespace LOGICAL (interfaces wan
# and lan...) a NAT router of KIND with both conntrack UDP timeouts TIMEOUT.
lab_nat_rules() {
	local name=$1 kind=$2 timeout=$3 nat masq
	nat=$(lab_ns "$name")
	case $kind in
	eim) masq=(-j MASQUERADE) ;;
	sym) masq=(-j MASQUERADE --random-fully) ;;
	full | addr) masq=(-j MASQUERADE) ;;
	*) lab_fail "lab_nat_rules: KIND must be eim, sym, full or addr" ;;
	esac
	local ipt=(ip netns exec "$nat" iptables -w)
	# Rules first: they make conntrack and NAT live in this namespace.
	"${ipt[@]}" -t nat -A POSTROUTING -o wan "${masq[@]}" || lab_fail "iptables masquerade ($kind)"
	"${ipt[@]}" -A FORWARD -m conntrack --ctstate INVALID -j DROP
	case $kind in
	full | addr) lab_nat_cone "$name" "$kind" "$timeout" ;;
	esac
	"${ipt[@]}" -A FORWARD -i wan -m conntrack --ctstate NEW -j DROP
	"${ipt[@]}" -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	"${ipt[@]}" -A INPUT -i wan -j DROP
	"${ipt[@]}" -A OUTPUT -o wan -p icmp -j DROP
	ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1
	local key got
	for key in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream; do
		ip netns exec "$nat" sysctl -qw "net.netfilter.$key=$timeout" ||
			lab_fail "cannot set $key in $nat"
		got=$(ip netns exec "$nat" sysctl -n "net.netfilter.$key")
		[ "$got" = "$timeout" ] || lab_fail "$key in $nat reads $got, not $timeout"
	done
	# Old kernels assigned conntrack helpers (the SIP ALG) automatically.
	if ip netns exec "$nat" test -e /proc/sys/net/netfilter/nf_conntrack_helper; then
		ip netns exec "$nat" sysctl -qw net.netfilter.nf_conntrack_helper=0
	fi
}

# lab_nat_alg NAT: attach the kernel's SIP ALG (nf_conntrack_sip with
# nf_nat_sip, as many home routers ship it) to SIP over UDP to port 5060 that
# enters NAT from its LAN side(s): it rewrites Via, Contact and the SDP's c=
# and m= to the NAT's public address and opens expectations for the media.
# Skips the test (77) when the kernel has no SIP helper.
lab_nat_alg() {
	local nat=$1
	if [ ! -d /sys/module/nf_conntrack_sip ]; then
		command -v modprobe >/dev/null 2>&1 && modprobe nf_conntrack_sip 2>/dev/null
		[ -d /sys/module/nf_conntrack_sip ] || lab_skip "no nf_conntrack_sip in this kernel (built in or module)"
	fi
	lab_exec "$nat" iptables -w -t raw -A PREROUTING ! -i wan -p udp --dport 5060 -j CT --helper sip ||
		lab_skip "iptables cannot attach the sip helper (CT --helper sip) here"
	# shellcheck disable=SC2034 # for tests: which NATs have the ALG
	LAB_ALG[$nat]=1
	lab_log "nat $nat: SIP ALG attached (nf_conntrack_sip, CT --helper sip)"
}

# lab_add_nat_behind NAME KIND TIMEOUT OUTER: a second-level NAT router
# <id>-NAME whose wan sits on a link of its own to the NAT OUTER (a carrier-
# grade NAT, say): OUTER side 100.64.(100+N).1, NAME's wan 100.64.(100+N).2;
# its lan 100.64.N.1/24 and a phone <id>-NAME-ph at 100.64.N.2 behind it.
# OUTER masquerades NAME's traffic like its own phone's.
lab_add_nat_behind() {
	local name=$1 kind=$2 timeout=$3 outer=$4 nat ph onat n
	[[ $name =~ ^[a-z0-9]{1,10}$ ]] || lab_fail "lab_add_nat_behind: NAME must be 1-10 of [a-z0-9]"
	[ -n "${LAB_IDX[$outer]+x}" ] || lab_fail "lab_add_nat_behind: no NAT $outer"
	[ -z "${LAB_IDX[$name]+x}" ] || lab_fail "lab_add_nat_behind: $name exists"
	LAB_NAT_COUNT=$((LAB_NAT_COUNT + 1)); n=$LAB_NAT_COUNT
	LAB_IDX[$name]=$n
	LAB_KIND[$name]=$kind
	# shellcheck disable=SC2034 # for tests: the NAT's conntrack UDP timeout
	LAB_TIMEOUT[$name]=$timeout
	LAB_WAN[$name]=100.64.$((100 + n)).2
	onat=$(lab_ns "$outer")
	lab_add_ns "$name"; nat=$(lab_ns "$name")
	lab_add_ns "$name-ph"; ph=$(lab_ns "$name-ph")
	ip link add wan netns "$nat" type veth peer name "d-$name" netns "$onat" || lab_fail "veth $name wan"
	ip link add lan netns "$nat" type veth peer name eth0 netns "$ph" || lab_fail "veth $name lan"
	ip -n "$onat" addr add "100.64.$((100 + n)).1/24" dev "d-$name"
	ip -n "$onat" link set "d-$name" up
	ip -n "$nat" addr add "${LAB_WAN[$name]}/24" dev wan
	ip -n "$nat" addr add "$(lab_lan_ip "$name")/24" dev lan
	ip -n "$nat" link set wan up
	ip -n "$nat" link set lan up
	ip -n "$nat" route add default via "100.64.$((100 + n)).1"
	ip -n "$ph" addr add "$(lab_phone_ip "$name")/24" dev eth0
	ip -n "$ph" link set eth0 up
	ip -n "$ph" route add default via "$(lab_lan_ip "$name")"
	lab_nat_rules "$name" "$kind" "$timeout"
	lab_log "nat $name ($kind, udp timeout ${timeout}s) behind $outer: wan ${LAB_WAN[$name]}, phone $(lab_phone_ip "$name")"
}

# lab_nat_cone NAME full|addr TIMEOUT: the inbound half of a cone NAT. New
# inbound UDP to the WAN address goes to the phone on the same port (the
# MASQUERADE keeps ports, so that is the mapping's owner): from anyone (full),
# or from an IP that phone port sent to within TIMEOUT seconds (addr).
lab_nat_cone() {
	local name=$1 kind=$2 timeout=$3 nat ph
	nat=$(lab_ns "$name"); ph=$(lab_phone_ip "$name")
	local nft=(ip netns exec "$nat" nft)
	"${nft[@]}" add table ip labcone || lab_fail "nft table in $name"
	"${nft[@]}" add chain ip labcone pre '{ type nat hook prerouting priority -110; }'
	if [ "$kind" = full ]; then
		"${nft[@]}" add rule ip labcone pre iifname wan meta l4proto udp dnat to "$ph" ||
			lab_fail "nft dnat in $name"
	else
		"${nft[@]}" add set ip labcone seen "{ type inet_service . ipv4_addr; flags dynamic,timeout; timeout ${timeout}s; }" ||
			lab_fail "nft set in $name"
		"${nft[@]}" add chain ip labcone seenfwd '{ type filter hook forward priority -10; }'
		"${nft[@]}" add rule ip labcone seenfwd iifname lan meta l4proto udp \
			update @seen '{ udp sport . ip daddr }' || lab_fail "nft set update in $name"
		"${nft[@]}" add rule ip labcone pre iifname wan udp dport . ip saddr @seen dnat to "$ph" ||
			lab_fail "nft dnat in $name"
	fi
	ip netns exec "$nat" iptables -w -A FORWARD -i wan -m conntrack --ctstate DNAT -j ACCEPT
}

# lab_add_host NAME IP: a host <id>-NAME on the public segment with address
# IP/24 (198.18.0.x) and no route beyond it: an attacker, a victim, a gateway.
lab_add_host() {
	local name=$1 ip=$2 pub ns
	[[ $name =~ ^[a-z0-9]{1,10}$ ]] || lab_fail "lab_add_host: NAME must be 1-10 of [a-z0-9]"
	[[ $ip =~ ^198\.18\.0\.[0-9]+$ ]] || lab_fail "lab_add_host: IP must be on 198.18.0.0/24"
	pub=$(lab_ns pub)
	lab_add_ns "$name"; ns=$(lab_ns "$name")
	ip link add eth0 netns "$ns" type veth peer name "h-$name" netns "$pub" || lab_fail "veth $name"
	ip -n "$pub" link set "h-$name" master br0 up
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set eth0 up
	lab_log "host $name: $ip on the public segment"
}

# lab_conntrack NAT [ARGS...]: the NAT's conntrack table (conntrack -L ARGS).
lab_conntrack() {
	local nat=$1; shift
	lab_exec "$nat" conntrack -L "$@" 2>/dev/null
}

# lab_nat_mapping NAT PHONE_PORT DST_IP DST_PORT: print the public WANIP:PORT
# that the NAT's conntrack table holds for phone:PHONE_PORT -> DST (UDP);
# nothing (status 1) when there is no live mapping.
lab_nat_mapping() {
	local nat=$1 sport=$2 dip=$3 dport=$4 line
	line=$(lab_conntrack "$nat" -p udp --orig-src "$(lab_phone_ip "$nat")" \
		--orig-port-src "$sport" --orig-dst "$dip" --orig-port-dst "$dport" | head -n1)
	[ -n "$line" ] || return 1
	# second src=/dst=/sport=/dport= group is the reply direction
	awk '{ n = 0; for (i = 1; i <= NF; i++) {
		if ($i ~ /^dst=/)   { n++; if (n == 2) ip = substr($i, 5) }
		if ($i ~ /^dport=/) { m++; if (m == 2) port = substr($i, 7) } }
		print ip ":" port }' <<<"$line"
}

# lab_probe_bg LOGICAL LOGFILE ADDR:PORT STEP...: run udp_probe in the background
# and wait until its socket is bound.  PID in LAB_LAST_PID.
lab_probe_bg() {
	local ns=$1 log=$2 bind=$3; shift 3
	lab_start_bg "$ns" "$log" "$LAB_PROBE" -b "$bind" "$@"
	lab_wait_line "$log" '^bound ' 5 || lab_fail "udp_probe in $ns did not start: $(cat "$log")"
}

# lab_recv_src LOGFILE [MSG]: the source ADDR:PORT of the first datagram (with
# payload MSG, if given) that a udp_probe log reports.
lab_recv_src() {
	awk -v m="${2-}" '$1 == "recv" && (m == "" || $3 == m) { print $2; exit }' "$1"
}

# lab_nat_ports NAT LPORT: from the phone's LPORT, send one datagram to each of
# three public destinations: SRV_IP:P, SRV_IP2:P (other address) and SRV_IP:P+1
# (other port).  Sets LAB_NAT_SRCS to the three source ADDR:PORTs the server saw.
LAB_NAT_SRCS=()
lab_nat_ports() {
	local nat=$1 lport=$2 p=$((7000 + 10 * LAB_IDX[$1])) i pids=()
	LAB_NAT_SRCS=()
	local dst=("$LAB_SRV_IP:$p" "$LAB_SRV_IP2:$p" "$LAB_SRV_IP:$((p + 1))")
	for i in 0 1 2; do
		lab_probe_bg srv "$LAB_TMP/nat-$nat-$lport-rx$i.log" "${dst[$i]}" recv 5
		pids+=("$LAB_LAST_PID")
	done
	lab_exec "$nat-ph" "$LAB_PROBE" -b "$(lab_phone_ip "$nat"):$lport" \
		send "${dst[0]}" m0 send "${dst[1]}" m1 send "${dst[2]}" m2 \
		>"$LAB_TMP/nat-$nat-$lport-tx.log" 2>&1 || lab_fail "probe send from $nat-ph"
	for i in 0 1 2; do
		lab_wait "${pids[$i]}" 10 || lab_fail "$nat: nothing arrived at ${dst[$i]}"
		LAB_NAT_SRCS+=("$(lab_recv_src "$LAB_TMP/nat-$nat-$lport-rx$i.log")")
	done
}

# lab_verify_nat NAT [LPORT]: check that NAT maps as its kind says.
#   eim: all three destinations see the NAT's address and the phone's own port
#   sym: all three see the NAT's address and three different ports
lab_verify_nat() {
	local nat=$1 lport=${2:-$((40000 + LAB_IDX[$1]))} wan kind srcs s ports=()
	wan=$(lab_wan_ip "$nat"); kind=${LAB_KIND[$nat]}
	lab_nat_ports "$nat" "$lport"
	srcs=("${LAB_NAT_SRCS[@]}")
	[ "${#srcs[@]}" -eq 3 ] || lab_fail "$nat: expected 3 sources, got '${srcs[*]}'"
	for s in "${srcs[@]}"; do
		[ "${s%:*}" = "$wan" ] || lab_fail "$nat: source address $s is not the NAT's $wan"
		ports+=("${s##*:}")
	done
	lab_log "nat $nat ($kind): phone port $lport seen as ports ${ports[*]} at 3 destinations"
	case $kind in
	eim | full | addr)
		[ "${ports[0]}" = "$lport" ] && [ "${ports[1]}" = "$lport" ] && [ "${ports[2]}" = "$lport" ] ||
			lab_fail "$nat: eim NAT did not keep port $lport for every destination: ${ports[*]}"
		;;
	sym)
		[ "${ports[0]}" != "${ports[1]}" ] && [ "${ports[0]}" != "${ports[2]}" ] &&
			[ "${ports[1]}" != "${ports[2]}" ] ||
			lab_fail "$nat: sym NAT reused a port across destinations: ${ports[*]}"
		;;
	esac
}

# lab_sipp LOGICAL NAME SCENARIO [SIPP ARGS...]: run sipp (tests/lab/scenarios/
# SCENARIO) in the foreground in a lab namespace with the lab's usual options:
# one UDP socket (-t u1), bound to the -i address (-bind_local), one call (-m 1),
# unexpected messages, all messages and the final screen in
# $LAB_TMP/NAME.errors.log, .messages.log, .screen.log, stdout in $LAB_TMP/NAME.out.
# Returns sipp's exit status (0: every call succeeded).  Give -i, -p, the
# remote host, -s, -key, -cid_str, -timeout SECS -timeout_error in SIPP ARGS.
lab_sipp() {
	local ns=$1 name=$2 sf=$3; shift 3
	(cd "$LAB_TMP" && lab_exec "$ns" sipp -sf "$LAB_DIR/scenarios/$sf" -t u1 -bind_local -m 1 -nostdin \
		-trace_err -error_file "$LAB_TMP/$name.errors.log" \
		-trace_msg -message_file "$LAB_TMP/$name.messages.log" \
		-trace_screen -screen_file "$LAB_TMP/$name.screen.log" \
		"$@" >"$LAB_TMP/$name.out" 2>&1 </dev/null)
}

# lab_sipp_bg: as lab_sipp, in the background; PID in LAB_LAST_PID.
lab_sipp_bg() {
	local ns=$1 name=$2 sf=$3; shift 3
	pushd "$LAB_TMP" >/dev/null || return 1
	lab_start_bg "$ns" "$LAB_TMP/$name.out" sipp -sf "$LAB_DIR/scenarios/$sf" -t u1 -bind_local -m 1 -nostdin \
		-trace_err -error_file "$LAB_TMP/$name.errors.log" \
		-trace_msg -message_file "$LAB_TMP/$name.messages.log" \
		-trace_screen -screen_file "$LAB_TMP/$name.screen.log" "$@"
	popd >/dev/null || return 1
}

# lab_sipp_succeeded NAME: did the sipp run NAME (lab_sipp/lab_sipp_bg) finish
# its call successfully?  Checks sipp's own final statistics (cumulative
# "Successful call" >= 1, "Failed call" 0), not only its exit status: a sipp
# that is stopped by a signal exits 0 with no call done.
lab_sipp_succeeded() {
	sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$LAB_TMP/$1.out" 2>/dev/null | awk -F'|' '
		/Successful call/ { s = $3 + 0 } /Failed call/ { f = $3 + 0 }
		END { exit !(s >= 1 && f == 0) }'
}

# lab_received_sdp NAME START_RE: "ip:port" of the audio stream in the last SDP
# that sipp run NAME received in a message whose start line matches START_RE
# (a media-level c= wins over the session-level one).
lab_received_sdp() {
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

# lab_serve LOG CONF [UDP_ADDR:PORT...]: `$PINHOLE serve --config CONF` in the srv
# namespace, its output in LOG; waits until each UDP address is bound and the log
# says it runs (workers and control endpoint up), fails the test otherwise.
# Its PID is left in LAB_LAST_PID.
lab_serve() {
	local log=$1 conf=$2 pid a
	shift 2
	lab_start_bg srv "$log" "$PINHOLE" serve --config "$conf"
	pid=$LAB_LAST_PID
	for a in "$@"; do
		lab_wait_udp srv "$a" 5 || lab_fail "pinhole is not on $a: $(tail -n 20 "$log")"
	done
	lab_wait_line "$log" 'running with' 10 || lab_fail "pinhole did not come up: $(tail -n 20 "$log")"
	kill -0 "$pid" 2>/dev/null || lab_fail "pinhole exited: $(tail -n 20 "$log")"
	LAB_LAST_PID=$pid
}

# lab_conf_tail DB CONTROL ADDR PORTS MEDIA: the sections that most lab servers'
# configs end with, printed: an open registrar, the store at DB ("" for none), the
# control endpoint on CONTROL, and the relay on ADDR (advertised as is) with PORTS
# and media = MEDIA.
lab_conf_tail() {
	printf '[registrar]\nopen = yes\n[store]\npath =%s\n[control]\nlisten = %s\n' \
		"${1:+ $1}" "$2"
	printf '[relay]\naddress = %s\nadvertise = %s\nports = %s\nmedia = %s\n' "$3" "$3" "$4" "$5"
}

# lab_counter CONTROL NAME: one value of the srv's `pinhole ctl counters` (0 when absent).
lab_counter() {
	lab_exec srv "$PINHOLE" ctl counters --control "$1" | jq -r --arg k "$2" '.[$k] // 0'
}

# lab_metric CONTROL NAME [LABELS]: one value of the srv's metrics (0 when absent);
# LABELS as written inside the braces, e.g. 'status="403"'.
lab_metric() {
	local n="pinhole_$2"
	[ -n "${3:-}" ] && n="$n{$3}"
	lab_exec srv "$PINHOLE" ctl metrics --control "$1" 2>/dev/null |
		awk -v n="$n" '$1 == n { v = $2 } END { print v + 0 }'
}

# lab_test_certs DIR IP [NAME]: a throwaway P-256 CA (DIR/ca.pem, ca.key) and a
# server certificate for IP (subjectAltName, as RFC 5922 wants for an address)
# signed by it (DIR/srv.pem, srv.key), valid two days; nothing is kept in the tree.
lab_test_certs() {
	local c=$1 ip=$2 name=${3:-server}
	mkdir -p "$c"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=pinhole lab CA" -keyout "$c/ca.key" -out "$c/ca.pem" 2>/dev/null ||
		lab_fail "openssl: the CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=pinhole lab $name" \
		-keyout "$c/srv.key" -out "$c/srv.csr" 2>/dev/null || lab_fail "openssl: the request"
	printf 'subjectAltName=IP:%s\n' "$ip" >"$c/ext"
	openssl x509 -req -in "$c/srv.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
		-days 2 -extfile "$c/ext" -out "$c/srv.pem" 2>/dev/null || lab_fail "openssl: signing"
}

# lab_ua_verdict LOG: the media verdict ({"verdict": ...}) of a `pinhole ua --json`
# log, or nothing while there is none.
lab_ua_verdict() { jq -c -s '[.[] | select(.event == "verdict")][0].media // empty' "$1"; }

# lab_call_down_flow CTL SRV SECS TRANSPORT WHAT FLOW_JSON: alice (in s1-ph, state
# $LAB_TMP/alice.state) calls bob@SRV through udp:SRV:5060 for SECS; bob is a
# `pinhole ua --json` answering into $LAB_TMP/bob.log over his TRANSPORT flow
# (FLOW_JSON: that flow as `ctl flows --json` listed it; WHAT names it in
# messages). Both verdicts must be two-way, the server must have opened no
# connection (net_tcp_connects_total 0 before and after) and bob's flow must be
# the same connection after the call.
lab_call_down_flow() {
	local ctl=$1 srv=$2 secs=$3 tp=$4 what=$5 f=$6 c0 c1 rc a b f2 i
	c0=$(lab_counter "$ctl" net_tcp_connects_total)
	lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --state "$LAB_TMP/alice.state" \
		--aor "sip:alice@$srv" --proxy "udp:$srv:5060" --duration "$secs" "sip:bob@$srv" \
		>"$LAB_TMP/alice.log" 2>"$LAB_TMP/alice.err" </dev/null
	rc=$?
	a=$(lab_ua_verdict "$LAB_TMP/alice.log")
	lab_log "alice: exit $rc verdict $a"
	[ "$rc" -eq 0 ] || lab_fail "the call to bob over $what: alice exited $rc: $(cat "$LAB_TMP/alice.err")"
	[ "$(jq -r .verdict <<<"$a")" = two-way ] || lab_fail "alice's verdict: $a"
	for i in $(seq 1 50); do
		[ -n "$(lab_ua_verdict "$LAB_TMP/bob.log")" ] && break
		sleep 0.1
	done
	b=$(lab_ua_verdict "$LAB_TMP/bob.log")
	lab_log "bob: verdict $b"
	[ "$(jq -r .verdict <<<"$b")" = two-way ] || lab_fail "bob's verdict: $b"
	c1=$(lab_counter "$ctl" net_tcp_connects_total)
	[ "$c0" -eq 0 ] && [ "$c1" -eq 0 ] ||
		lab_fail "the server opened connections ($c0 before the call, $c1 after)"
	f2=$(lab_exec srv "$PINHOLE" ctl flows --json --control "$ctl" |
		jq -c --arg t "$tp" '[.flows[] | select(.transport == $t)]')
	[ "$(jq -r '.[0].conn_id' <<<"$f2")" = "$(jq -r '.[0].conn_id' <<<"$f")" ] ||
		lab_fail "bob's $what changed during the call: $f -> $f2"
	lab_log "the call reached bob over his $what; no connection opened by the server"
}

# lab_baresip_config DIR LISTEN RTP_PORTS [LINE...]: DIR/config for a headless
# baresip on LISTEN (addr:port) that plays a 440 Hz tone and writes what it
# hears to DIR/heard.wav, with G.711; each LINE ("key value", e.g. "module_app
# menu.so") is added at the end.
lab_baresip_config() {
	local dir=$1 listen=$2 rtp=$3 l
	shift 3
	mkdir -p "$dir"
	{
		printf 'sip_listen\t\t%s\nrtp_ports\t\t%s\n' "$listen" "$rtp"
		printf 'audio_source\t\tausine,440\nausrc_srate\t\t48000\nausrc_channels\t\t2\n'
		printf 'audio_player\t\taufile,%s/heard.wav\naudio_alert\t\taufile,/dev/null\n' "$dir"
		printf 'module_path\t\t/usr/lib/baresip/modules\n'
		printf 'module\t\t\t%s\n' g711.so ausine.so aufile.so
		for l in "$@"; do printf '%s\t\t%s\n' "${l%% *}" "${l#* }"; done
	} >"$dir/config"
}

# lab_dump_logs: print the lab's logs to stderr (ctest shows them on failure).
lab_dump_logs() {
	local f
	[ -n "$LAB_TMP" ] && [ -d "$LAB_TMP" ] || return 0
	for f in "$LAB_TMP"/*.log "$LAB_TMP"/*.out; do
		[ -f "$f" ] || continue
		printf '\n===== %s (last 60 lines)\n' "${f##*/}" >&2
		tail -n 60 "$f" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2
	done
}

# lab_cleanup: run hooks, stop our processes by PID, kill whatever is still in
# our namespaces (by PID), remove the namespaces.  Logs are kept when the test
# failed (or LAB_KEEP=1) and printed to stderr.  Idempotent.
lab_cleanup() {
	local rc=$? i pid ns
	set +e
	trap - EXIT INT TERM
	for ((i = ${#LAB_CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do eval "${LAB_CLEANUP_HOOKS[$i]}"; done
	LAB_CLEANUP_HOOKS=()
	for pid in "${LAB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for i in $(seq 1 20); do
		local alive=0
		for pid in "${LAB_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${LAB_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	LAB_PIDS=()
	for ((i = ${#LAB_NSES[@]} - 1; i >= 0; i--)); do
		ns=${LAB_NSES[$i]}
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		ip netns del "$ns" 2>/dev/null
	done
	LAB_NSES=()
	if [ -n "$LAB_TMP" ] && [ -d "$LAB_TMP" ]; then
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] || [ "${LAB_KEEP:-0}" = 1 ]; then
			[ "$rc" -ne 0 ] && lab_dump_logs
			lab_log "logs kept in $LAB_TMP"
		else
			rm -rf "$LAB_TMP"
		fi
	fi
	return "$rc"
}
