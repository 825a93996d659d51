#!/bin/bash
# Lab self-test of the sipp scenarios (tests/lab/scenarios/), through both NAT
# kinds, against sipp stand-ins for the server (mock_*.xml), so that when
# test_sip_nat.sh fails it is pinhole, not the phones.  Needs root, iproute2,
# iptables, conntrack, cc and sipp; not pinhole.
#
# The eim phone talks to a stand-in on 198.18.0.1:5060, the sym phone to one
# on 198.18.0.2:5060, at the same time.  Each must pass:
#   register, unregister                       vs mock_registrar
#   callee_gets_bye, callee_hangs_up           vs mock_proxy (REGISTER's flow)
#   caller_hangs_up, caller_gets_bye           vs mock_uas
# and one must fail the right way: the stand-in idles longer than the NAT's
# UDP timeout after the REGISTER, then its INVITE must not reach the callee.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

lab_require sipp ss
T=5   # NAT UDP timeout, seconds
lab_setup tss
lab_add_nat e1 eim "$T"
lab_add_nat s1 sym "$T"
declare -A SRV=([e1]=$LAB_SRV_IP [s1]=$LAB_SRV_IP2)
CID="lab-$$-alice-%u"

# run_case NAME MOCK MOCK_ARGS PHONE_SF PHONE_ARGS EXPECT(pass|fail) [SECS]
run_case() {
	local name=$1 mock=$2 margs=$3 psf=$4 pargs=$5 expect=$6 secs=${7:-10} nat
	local -A mpid ppid
	for nat in e1 s1; do
		# shellcheck disable=SC2086
		lab_sipp_bg srv "$name-$nat-mock" "$mock" -i "${SRV[$nat]}" -p 5060 \
			-timeout "$secs" -timeout_error $margs
		mpid[$nat]=$LAB_LAST_PID
		lab_wait_udp srv "${SRV[$nat]}:5060" 5 || lab_fail "$name: $mock did not start"
	done
	for nat in e1 s1; do
		# shellcheck disable=SC2086
		lab_sipp_bg "$nat-ph" "$name-$nat-phone" "$psf" -i "$(lab_phone_ip "$nat")" -p 5060 \
			"${SRV[$nat]}:5060" -timeout "$secs" -timeout_error $pargs
		ppid[$nat]=$LAB_LAST_PID
	done
	local prc mrc
	for nat in e1 s1; do
		lab_wait "${ppid[$nat]}" $((secs + 10)); prc=$?
		lab_wait "${mpid[$nat]}" $((secs + 10)); mrc=$?
		if [ "$expect" = pass ]; then
			[ "$prc" -eq 0 ] && [ "$mrc" -eq 0 ] &&
				lab_sipp_succeeded "$name-$nat-phone" && lab_sipp_succeeded "$name-$nat-mock" ||
				lab_fail "$name via $nat (${LAB_KIND[$nat]}): phone $psf exit $prc, stand-in $mock exit $mrc"
		else
			! lab_sipp_succeeded "$name-$nat-phone" ||
				lab_fail "$name via $nat: phone $psf passed, expected it to fail"
		fi
		lab_log "$name via $nat (${LAB_KIND[$nat]}): phone exit $prc, stand-in exit $mrc: as expected ($expect)"
	done
}

run_case register mock_registrar.xml "" register.xml "-s alice -key expires 60 -cid_str $CID" pass
for nat in e1 s1; do
	m=$(lab_nat_mapping "$nat" 5060 "${SRV[$nat]}" 5060) || lab_fail "$nat: no mapping after REGISTER"
	lab_log "$nat (${LAB_KIND[$nat]}): phone $(lab_phone_ip "$nat"):5060 is $m on the public side"
	if [ "${LAB_KIND[$nat]}" = eim ] && [ "$m" != "$(lab_wan_ip "$nat"):5060" ]; then
		lab_fail "$nat: eim mapping $m is not port preserving"
	fi
done
run_case unregister mock_registrar.xml "" unregister.xml "-s alice -cid_str $CID" pass
run_case callee-gets-bye mock_proxy.xml "-d 500" callee_gets_bye.xml \
	"-s alice -key expires 60 -cid_str $CID -aa" pass
run_case callee-hangs-up mock_proxy.xml "-d 500" callee_hangs_up.xml \
	"-s alice -key expires 60 -cid_str $CID -aa -d 200" pass
run_case caller-hangs-up mock_uas.xml "" caller_hangs_up.xml \
	"-s alice -key user bob -cid_str $CID -d 200" pass
run_case caller-gets-bye mock_uas.xml "" caller_gets_bye.xml \
	"-s alice -key user bob -cid_str $CID" pass

# The negative case: the binding expires in the NAT before the INVITE.
run_case expired mock_proxy.xml "-d $(((T + 3) * 1000))" callee_gets_bye.xml \
	"-s alice -key expires 60 -cid_str $CID -aa" fail $((T + 8))
for nat in e1 s1; do
	grep -q '^INVITE ' "$LAB_TMP/expired-$nat-mock.messages.log" ||
		lab_fail "expired via $nat: the stand-in never sent its INVITE"
	grep -q '^INVITE ' "$LAB_TMP/expired-$nat-phone.messages.log" &&
		lab_fail "expired via $nat: the INVITE reached the phone through an expired mapping"
	lab_log "expired via $nat: INVITE sent $(grep -c '^INVITE ' "$LAB_TMP/expired-$nat-mock.messages.log") times, none arrived"
done

lab_log "PASS"
exit 0
