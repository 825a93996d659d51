#!/bin/bash
# Lab self-test: the NATs that lib.sh builds behave as the other lab tests
# assume.  Needs root, iproute2, iptables, conntrack and cc; not pinhole.
#
#  1. eim keeps the phone's port for every destination; sym maps each
#     destination (other address, or only other port) to a different port.
#  2. The conntrack UDP timeouts are per namespace: set in the NATs, the
#     host's stay as they were.
#  3. Binding expiry, for both kinds, three flows at once (timeout T):
#     U  unreplied: phone -> server, then silence; the server's packet T+3 s
#        later does not arrive (nf_conntrack_udp_timeout works);
#     I  two-way then idle: hello, ack, hello2 after 3 s (an ASSURED "stream"
#        entry, whose conntrack timeout must read <= T, not 120), then silence;
#        the server's packet T+3 s later does not arrive
#        (nf_conntrack_udp_timeout_stream works), the NAT answers it with no
#        ICMP, and the phone's next packet from the same port gets (eim) the
#        same public port again;
#     K  kept alive: the server sends to the mapping every 2 s for T+5 s; its
#        packet after that arrives.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

lab_require
T=5   # conntrack UDP timeouts in this test, seconds

host_udp=$(sysctl -n net.netfilter.nf_conntrack_udp_timeout 2>/dev/null)
host_stream=$(sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream 2>/dev/null)

lab_setup tnt
lab_add_nat e1 eim "$T"
lab_add_nat s1 sym "$T"

# --- 1. mapping behaviour -------------------------------------------------
lab_verify_nat e1
lab_verify_nat s1
# the same check from the SIP port, as sipp will use it
lab_verify_nat e1 5060
lab_verify_nat s1 5060

# --- 2. timeouts are per namespace ------------------------------------------
[ "$(sysctl -n net.netfilter.nf_conntrack_udp_timeout)" = "$host_udp" ] &&
	[ "$(sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream)" = "$host_stream" ] ||
	lab_fail "setting the NATs' conntrack timeouts changed the host's"
lab_log "host conntrack udp timeouts unchanged ($host_udp/$host_stream s), NATs at $T s"

# --- 3. binding expiry ----------------------------------------------------
declare -A srv_pid ph_pid
for nat in e1 s1; do
	base=$((7100 + 10 * LAB_IDX[$nat]))
	ph=$(lab_phone_ip "$nat")
	# U: unreplied, then silence
	lab_probe_bg srv "$LAB_TMP/exp-$nat-U-srv.log" "$LAB_SRV_IP:$((base + 1))" \
		recv 5 listen $((T + 3)) send peer late listen 1
	srv_pid[$nat-U]=$LAB_LAST_PID
	# I: two-way (ASSURED), then silence, then the phone speaks again
	lab_probe_bg srv "$LAB_TMP/exp-$nat-I-srv.log" "$LAB_SRV_IP:$((base + 2))" \
		recv 5 send peer ack recv 6 listen $((T + 3)) send peer late recv $((T + 8))
	srv_pid[$nat-I]=$LAB_LAST_PID
	# K: the server keeps the mapping alive
	lab_probe_bg srv "$LAB_TMP/exp-$nat-K-srv.log" "$LAB_SRV_IP:$((base + 3))" \
		recv 5 ping peer ka 2 $((T + 5)) send peer late listen 1
	srv_pid[$nat-K]=$LAB_LAST_PID

	lab_probe_bg "$nat-ph" "$LAB_TMP/exp-$nat-U-ph.log" "$ph:4101" \
		send "$LAB_SRV_IP:$((base + 1))" hello listen $((T + 8))
	ph_pid[$nat-U]=$LAB_LAST_PID
	lab_probe_bg "$nat-ph" "$LAB_TMP/exp-$nat-I-ph.log" "$ph:4102" \
		send "$LAB_SRV_IP:$((base + 2))" hello recv 5 listen 3 \
		send "$LAB_SRV_IP:$((base + 2))" hello2 listen $((T + 8)) \
		send "$LAB_SRV_IP:$((base + 2))" again
	ph_pid[$nat-I]=$LAB_LAST_PID
	lab_probe_bg "$nat-ph" "$LAB_TMP/exp-$nat-K-ph.log" "$ph:4103" \
		send "$LAB_SRV_IP:$((base + 3))" hello listen $((T + 8))
	ph_pid[$nat-K]=$LAB_LAST_PID
done

# After hello2 (t ~ 3 s) flow I is an ASSURED stream; its timeout must be <= T.
sleep 4
for nat in e1 s1; do
	base=$((7100 + 10 * LAB_IDX[$nat]))
	line=$(lab_conntrack "$nat" -p udp --orig-port-src 4102 --orig-port-dst $((base + 2)))
	lab_log "conntrack $nat flow I: $line"
	[[ $line == *ASSURED* ]] || lab_fail "$nat: flow I is not ASSURED after two-way traffic"
	left=$(awk '{print $3}' <<<"$line")
	[ "$left" -le "$T" ] || lab_fail "$nat: ASSURED entry has timeout $left s > $T s (stream timeout not set?)"
done

for k in "${!ph_pid[@]}"; do lab_wait "${ph_pid[$k]}" 60 || lab_fail "phone probe $k failed"; done
for k in "${!srv_pid[@]}"; do lab_wait "${srv_pid[$k]}" 60 || lab_fail "server probe $k failed"; done

for nat in e1 s1; do
	kind=${LAB_KIND[$nat]}
	L=$LAB_TMP/exp-$nat
	grep -q ' late$' "$L-U-ph.log" && lab_fail "$nat U: packet to an expired unreplied mapping arrived"
	grep -q ' ack$' "$L-I-ph.log" || lab_fail "$nat I: the server's ack did not arrive"
	grep -q ' late$' "$L-I-ph.log" && lab_fail "$nat I: packet to an expired assured mapping arrived"
	grep -q ' late$' "$L-K-ph.log" || lab_fail "$nat K: packet to a kept-alive mapping did not arrive"
	nka=$(grep -c ' ka$' "$L-K-ph.log")
	grep -h '^icmp' "$L"-?-srv.log && lab_fail "$nat: the server received ICMP errors"
	first=$(lab_recv_src "$L-I-srv.log" hello)
	again=$(lab_recv_src "$L-I-srv.log" again)
	[ -n "$again" ] || lab_fail "$nat I: the phone's packet after expiry did not arrive"
	lab_log "nat $nat ($kind): U and I expired after ${T}s idle, K kept alive by $nka pings;" \
		"flow I mapped to $first, after expiry to $again"
	if [ "$kind" = eim ] && [ "$first" != "$again" ]; then
		lab_fail "$nat: eim NAT did not reuse port ${first##*:} after expiry (got $again)"
	fi
	# The dropped inbound packets must not have left conntrack entries.
	stray=$(lab_conntrack "$nat" -p udp --orig-src "$LAB_SRV_IP")
	[ -z "$stray" ] || lab_fail "$nat: inbound packets created conntrack entries: $stray"
done

lab_log "PASS"
exit 0
