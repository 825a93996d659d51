#!/usr/bin/env bash
# Lab test of issue 16 (TURN fast path): ChannelData relayed in the kernel through real NAT.
#
#   srv   pinhole, [turn] on udp 198.18.0.1:3478, fastpath = on
#   s     a symmetric NAT with a phone behind it: tests/lab/turn_check (a TURN
#         client written from the RFCs) allocates, binds a channel to the peer
#         and sends random payloads, half as ChannelData, half in Send
#         indications; every one must come back unchanged, as ChannelData
#   peer  198.18.0.20, turnutils_peer (echoes what it gets) on 3480
#
# Transmit checksum offload is off on the phone's and the peer's links, so their
# datagrams reach the server with checksums filled in, as from a wire (one whose
# checksum the kernel left for a NIC stays in user space; see src/turn/bpf).
#
# Checks:
#   a) fastpath = on: every payload intact both ways; the kernel carried every
#      ChannelData to the peer and every echo back (turn_fast_relayed_packets_total),
#      user space only the Send indications; the totals are exact (relayed
#      packets and bytes each way = what turn_check sent); the counters were
#      in the kernel's map (bpftool) while the allocation lived
#   a2) lengths 1 to 1,400, odd and even, both ways through the kernel: intact, and
#      no UDP checksum errors at the phone's and the peer's kernels (InCsumErrors)
#   b) the program cannot load (no CAP_BPF / CAP_NET_ADMIN / CAP_SYS_ADMIN):
#      fastpath = auto starts with a warning and relays everything in user
#      space, intact; fastpath = on refuses to start
set -u -o pipefail
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
N=${N:-200} # payloads: N/2 ChannelData, N/2 Send
L=171       # bytes each

lab_require jq timeout turnutils_peer ethtool bpftool setpriv
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"
# (grep without -q reads to the end: with pipefail an early exit would be
# sed's SIGPIPE once the section passes its 4 KB buffer, and a silent skip)
"$PINHOLE" serve --help-config | sed -n '/^\[turn\]/,/^\[/p' | grep '^fastpath' >/dev/null ||
	lab_skip "no [turn] fastpath in this build"

lab_setup tfp
lab_add_nat s sym 30
lab_add_host peer 198.18.0.20
PEER_IP=198.18.0.20
REALM=turn.lab
for ns in s-ph peer; do
	for dev in $(lab_exec "$ns" ip -o link show | awk -F': ' '$2 != "lo" { sub(/@.*/, "", $2); print $2 }'); do
		lab_exec "$ns" ethtool -K "$dev" tx off >/dev/null || lab_fail "ethtool -K $dev tx off in $ns"
	done
done
printf 'alicepw\n' | "$PINHOLE" user add "alice@$REALM" --db "$LAB_TMP/users.db" \
	--password-stdin >/dev/null || lab_fail "pinhole user add"
lab_start_bg peer "$LAB_TMP/peer.log" turnutils_peer -L "$PEER_IP" -p 3480
lab_wait_udp peer "$PEER_IP:3480" 5 || lab_fail "turnutils_peer did not start"
cc -std=c17 -O2 -Wall -Wextra -o "$LAB_TMP/turn_check" "$LAB_DIR/turn_check.c" -lcrypto ||
	lab_fail "cannot build turn_check"

# serve NAME FASTPATH [PREFIX...]: pinhole with [turn] on 3478 (PREFIX: e.g.
# setpriv without the capabilities the program needs); PID in SRV_PID
serve() {
	local name=$1 fp=$2
	shift 2
	cat >"$LAB_TMP/$name.conf" <<-EOF
		[turn]
		listen = udp:$LAB_SRV_IP:3478
		realm = $REALM
		relay_address = $LAB_SRV_IP
		relay_ports = 49152-49999
		fastpath = $fp
		[store]
		path = $LAB_TMP/users.db
		[control]
		listen = 127.0.0.1:5080
	EOF
	lab_start_bg srv "$LAB_TMP/$name.log" "$@" "$PINHOLE" serve --config "$LAB_TMP/$name.conf"
	SRV_PID=$LAB_LAST_PID
}
metric() { # metric NAME_WITH_LABELS: its value from the server's /metrics
	lab_exec srv "$PINHOLE" ctl --control 127.0.0.1:5080 metrics |
		awk -v m="pinhole_$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}
declare -A M0
snap() {
	for k in relayed_packets_total relayed_bytes_total fast_relayed_packets_total; do
		for d in to_peer to_client; do M0[$k,$d]=$(metric "turn_$k{direction=\"$d\"}"); done
	done
}
delta() { echo $(( $(metric "turn_$1{direction=\"$2\"}") - ${M0[$1,$2]} )); }
check() { # NAME [ARGS]: turn_check on the phone through the echo peer; every payload intact
	local name=$1
	shift
	lab_exec s-ph timeout 60 "$LAB_TMP/turn_check" -s "$LAB_SRV_IP:3478" -u alice -w alicepw \
		-n "$N" -l "$L" "$@" echo "$PEER_IP:3480" >"$LAB_TMP/$name.out" 2>&1 ||
		lab_fail "$name: $(tail -n 3 "$LAB_TMP/$name.out")"
	lab_log "$name: $(tail -n 1 "$LAB_TMP/$name.out") payloads unchanged"
}
settle() { # the sweep pulls the kernel's counts each second; the allocation may live on
	sleep 2
	lab_exec srv "$PINHOLE" ctl --control 127.0.0.1:5080 --json allocations >"$LAB_TMP/alloc.json"
}

# a) the kernel path
serve fast on
lab_wait_udp srv "$LAB_SRV_IP:3478" 5 || lab_fail "no TURN listener: $(tail -n 5 "$LAB_TMP/fast.log")"
lab_wait_line "$LAB_TMP/fast.log" 'turn: fast path: ChannelData' 5 || lab_fail "no fast path: $(cat "$LAB_TMP/fast.log")"
PROG=$(sed -n 's/.*turn: fast path:.*bpf prog id \([0-9]*\).*/\1/p' "$LAB_TMP/fast.log")
MAP=$(bpftool prog show id "$PROG" -j | jq -r '.map_ids[]' | while read -r id; do
	bpftool map show id "$id" -j | jq -r 'select(.name == "turn_port") | .id'
done)
[ -n "$MAP" ] || lab_fail "no turn_port map on prog $PROG"
PEERMAP=$(bpftool prog show id "$PROG" -j | jq -r '.map_ids[]' | while read -r id; do
	bpftool map show id "$id" -j | jq -r 'select(.name == "turn_peer") | .id'
done)
SLOTMAP=$(bpftool prog show id "$PROG" -j | jq -r '.map_ids[]' | while read -r id; do
	bpftool map show id "$id" -j | jq -r 'select(.name == "turn_chan_slot") | .id'
done)
snap
# turn_check holds its allocation 3 s after the last payload: the kernel's
# map is read then
check fast -H 3 &
CHECK=$!
for _ in $(seq 100); do
	grep -q 'so far' "$LAB_TMP/fast.out" 2>/dev/null && break
	sleep 0.1
done
bpftool map dump id "$MAP" -j >"$LAB_TMP/map.json"
bpftool map dump id "$PEERMAP" -j >"$LAB_TMP/peer.json"
bpftool map dump id "$SLOTMAP" -j >"$LAB_TMP/slot.json"
wait "$CHECK" || exit 1
settle
half=$((N / 2))
[ "$(delta fast_relayed_packets_total to_peer)" = "$half" ] ||
	lab_fail "kernel to peers: $(delta fast_relayed_packets_total to_peer), want $half (the ChannelData)"
[ "$(delta fast_relayed_packets_total to_client)" = "$N" ] ||
	lab_fail "kernel to the client: $(delta fast_relayed_packets_total to_client), want $N (every echo)"
[ "$(delta relayed_packets_total to_peer)" = "$N" ] && [ "$(delta relayed_packets_total to_client)" = "$N" ] ||
	lab_fail "relayed packets: $(delta relayed_packets_total to_peer) to peers, $(delta relayed_packets_total to_client) to clients, want $N each"
[ "$(delta relayed_bytes_total to_peer)" = $((N * L)) ] && [ "$(delta relayed_bytes_total to_client)" = $((N * L)) ] ||
	lab_fail "relayed bytes: $(delta relayed_bytes_total to_peer) / $(delta relayed_bytes_total to_client), want $((N * L)) each"
# an array by relayed port: the allocation's entry is the one with counts;
# toward the peer the channel counts in its slot; a count word holds the
# packets from bit 35, the bytes below (generation 0 here: exact in jq's
# doubles below 2^53)
seen=$(jq -r '[.[] | .formatted.value | select(.to_peer_pkts + .to_client_count > 0) |
	"\(.to_peer_pkts)/\((.to_client_count / 34359738368 | floor) % 16777216)"] | join(",")' \
	"$LAB_TMP/map.json")
slot=$(jq -r '[.[] | .formatted.value | select(.count > 0) |
	"\((.count / 34359738368 | floor) % 16777216)/\(.count % 34359738368)"] | join(",")' \
	"$LAB_TMP/slot.json")
[ "$seen" = "0/$N" ] && [ "$slot" = "$half/$((half * L))" ] ||
	lab_fail "the kernel's maps: port $seen, want 0/$N; slot $slot, want $half/$((half * L))"
lab_log "kernel: $half ChannelData to the peer (its slot: $slot), $N echoes to the client (its port: $seen); user space: $half Send indications; totals exact"
# the next hop toward the client (its NAT, on the server's link here) is in the
# entry, as the routing table says: the redirect skips a route lookup per packet
hop=$(jq -r '[.[] | .formatted.value | "\(.dst_addr)/\(.hop)"] | join(",")' "$LAB_TMP/peer.json")
nat=$(jq -r '.[0].formatted.value.dst_addr' "$LAB_TMP/peer.json")
[ "$hop" = "$nat/$nat" ] && [ "$nat" != 0 ] || lab_fail "the entry's next hop: $hop, want the NAT's address (on-link)"
lab_log "the entry toward the client holds its next hop (the NAT, on-link)"
# and the Ethernet header it leaves with: the NAT's MAC (from the neighbour
# table), then the server's; the program then hands the packet to the
# interface itself (bpf_redirect, no neighbour lookup per packet)
mac_hex() { lab_exec "$1" cat "/sys/class/net/$2/address" | tr -d ':'; }
want="$(mac_hex s wan)$(mac_hex srv eth0)"
# bpftool prints the bytes as numbers
got=$(printf '%02x' $(jq -r '.[0].formatted.value.l2[]' "$LAB_TMP/peer.json"))
flags=$(jq -r '.[0].formatted.value.flags' "$LAB_TMP/peer.json")
[ $((flags & 4)) = 4 ] && [ "$got" = "$want" ] ||
	lab_fail "the entry's Ethernet header: flags $flags, l2 $got, want flag 4 and $want"
lab_log "the entry toward the client holds the NAT's MAC and the server's ($want): no neighbour lookup per packet"
# the same way in the relayed port's entry (the allocation's first channel):
# the peer's datagrams find it without a hash lookup; live (flag 16), even seq
port=$(jq -r '[.[] | .formatted.value | select(.to_client.flags >= 16) |
	"\(.seq % 2)/\(.peer_addr)/\(.to_client.dst_addr)/\(.to_client.hop)/\(.to_client.flags)"] |
	join(",")' "$LAB_TMP/map.json")
pflags=$(jq -r '.[0].formatted.value.flags' "$LAB_TMP/peer.json")
peer_be=$(jq -r '.[0].formatted.key.peer_addr' "$LAB_TMP/peer.json")
[ "$port" = "0/$peer_be/$nat/$nat/$((pflags | 16))" ] ||
	lab_fail "the relayed port's entry: $port, want 0/$peer_be/$nat/$nat/$((pflags | 16))"
lab_log "the relayed port's entry holds the same way to the client, for the peer"

# a2) the checksums the kernel writes (updated from the old, RFC 1624): odd and even
# lengths, 1 byte to the largest the kernel takes, both ways; the receivers'
# kernels check every UDP checksum and drop a wrong one, counted in InCsumErrors
csum_errors() { lab_exec "$1" awk '/^Udp:/ { if (h) { print $8; exit } h = 1 }' /proc/net/snmp; }
e_ph=$(csum_errors s-ph)
e_peer=$(csum_errors peer)
snap
k=0
for len in 1 2 3 4 171 1024 1399 1400; do
	L=$len check "len$len" -n 20
	k=$((k + 20))
done
settle
[ "$(delta fast_relayed_packets_total to_peer)" = $((k / 2)) ] &&
	[ "$(delta fast_relayed_packets_total to_client)" = "$k" ] ||
	lab_fail "lengths: kernel $(delta fast_relayed_packets_total to_peer) to peers, $(delta fast_relayed_packets_total to_client) to the client, want $((k / 2)) and $k"
[ "$(csum_errors s-ph)" = "$e_ph" ] && [ "$(csum_errors peer)" = "$e_peer" ] ||
	lab_fail "UDP checksum errors at the receivers: phone $e_ph -> $(csum_errors s-ph), peer $e_peer -> $(csum_errors peer)"
lab_log "lengths 1-1400: $k payloads intact both ways through the kernel, no checksum errors at the phone or the peer"
lab_kill "$SRV_PID"

# b) no capabilities for the program: auto falls back, on refuses
NOCAP=(setpriv --bounding-set=-bpf,-net_admin,-sys_admin,-perfmon)
serve auto auto "${NOCAP[@]}"
lab_wait_udp srv "$LAB_SRV_IP:3478" 5 || lab_fail "auto did not start without the capabilities: $(tail -n 5 "$LAB_TMP/auto.log")"
lab_wait_line "$LAB_TMP/auto.log" 'fast path unavailable' 5 || lab_fail "no fallback warning: $(cat "$LAB_TMP/auto.log")"
snap
check fallback
settle
[ "$(delta fast_relayed_packets_total to_peer)" = 0 ] && [ "$(delta relayed_packets_total to_peer)" = "$N" ] &&
	[ "$(delta relayed_packets_total to_client)" = "$N" ] ||
	lab_fail "fallback: fast $(delta fast_relayed_packets_total to_peer), relayed $(delta relayed_packets_total to_peer)/$(delta relayed_packets_total to_client)"
lab_log "fallback: the program did not load, user space relayed all $N each way, intact"
lab_kill "$SRV_PID"
serve on on "${NOCAP[@]}"
lab_wait "$SRV_PID" 10 && rc=0 || rc=$?
grep -q 'fast path: cannot load' "$LAB_TMP/on.log" ||
	lab_fail "fastpath = on without the capabilities: $(tail -n 3 "$LAB_TMP/on.log")"
lab_log "fastpath = on without the capabilities: refused to start"
lab_log "PASS"
