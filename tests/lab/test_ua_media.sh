#!/bin/bash
# Lab test of issue 13, the call features: hold and resume, --wav and --record,
# --stun, --config, through real NAT against `pinhole serve`.
#   - alice (symmetric NAT) calls bob (symmetric NAT) through server 1's relay,
#     holds the call (re-INVITE a=sendonly) after 3 s and resumes it 3 s later;
#     each sends a WAV file of its own noise and records what it gets. Audio
#     goes both ways before the hold and after the resume (packet counts per
#     phase from the events), bob sends nothing while held, both verdicts stay
#     two-way with no loss, and each recording correlates with the other's
#     WAV (and not with its own);
#   - --stun behind two endpoint-independent NATs, with server 2 relaying
#     nothing: the SDPs carry the STUN-mapped addresses and audio goes both
#     ways directly;
#   - --stun behind the two symmetric NATs, server 2: not two-way, and the
#     verdict says STUN was not enough (the other STUN address saw another
#     mapping) -- the detector can fail.
# Options come from --config files here, so that path is exercised too.
# Needs root, iptables, jq, python3 and $PINHOLE.
set -u
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=lib.sh
. "$LAB_DIR/lib.sh"

PINHOLE=${PINHOLE:-$LAB_DIR/../../build/pinhole}
NAT_T=${NAT_T:-30}

lab_require jq python3
[ -x "$PINHOLE" ] || lab_skip "no pinhole binary at $PINHOLE"

lab_setup tum
lab_add_nat s1 sym "$NAT_T"
lab_add_nat s2 sym "$NAT_T"
lab_add_nat e1 eim "$NAT_T"
lab_add_nat e2 eim "$NAT_T"
SRV1=$LAB_SRV_IP SRV2=$LAB_SRV_IP2

# start_pinhole N ADDR MEDIA PORTS [STUN]
start_pinhole() {
	local n=$1 addr=$2 media=$3 ports=$4 conf=$LAB_TMP/pinhole-$1.conf
	cat >"$conf" <<-EOF2
		[sip]
		listen = udp:$addr:5060
	EOF2
	lab_conf_tail "$LAB_TMP/pinhole-$n.db" "127.0.0.1:$((5080 + n))" "$addr" "$ports" \
		"$media" >>"$conf"
	[ -n "${5:-}" ] && printf '[stun]\nlisten = udp:%s:3478\nother = %s:3479\n[echo]\nmax_duration = 30\n' \
		"$addr" "$SRV2" >>"$conf"
	lab_serve "$LAB_TMP/pinhole-$n.log" "$conf" "$addr:5060"
}
start_pinhole 1 "$SRV1" auto 30000-30039 stun
start_pinhole 2 "$SRV2" never 30100-30139
lab_wait_udp srv "$SRV2:3479" 5 || lab_fail "no STUN on $SRV2:3479"

# Two WAV files of seeded noise, 12 s each (longer than any call: no loop)
python3 - "$LAB_TMP" <<'EOF'
import random, struct, sys
for name, seed in (("a", 1), ("b", 2)):
    r = random.Random(seed)
    n = 8000 * 12
    data = struct.pack("<%dh" % n, *[int(r.gauss(0, 4000)) for _ in range(n)])
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + \
        struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(data))
    open(f"{sys.argv[1]}/{name}.wav", "wb").write(hdr + data)
EOF

# corr REC SRC: the best normalized correlation of 4,000 samples of REC (from
# its second second) against SRC at any whole-packet offset within 8 s
corr() {
	python3 - "$1" "$2" <<'EOF'
import struct, sys
def samples(p):
    b = open(p, "rb").read()
    assert b[:4] == b"RIFF" and b[8:12] == b"WAVE", p
    n = struct.unpack("<I", b[40:44])[0] // 2
    return struct.unpack("<%dh" % n, b[44:44 + 2 * n])
rec, src = samples(sys.argv[1]), samples(sys.argv[2])
if len(rec) < 8000 + 4000:
    print("0 short"); sys.exit(0)
w = rec[8000:12000]
ew = sum(x * x for x in w) ** 0.5 or 1
best, lag = 0.0, 0
for k in range(0, 400):
    # the recording's sample 8000 is the source's sample 8000 + d, d a multiple of 160
    for sgn in (1, -1):
        s0 = 8000 + sgn * k * 160
        if s0 < 0 or s0 + 4000 > len(src):
            continue
        v = src[s0:s0 + 4000]
        ev = sum(x * x for x in v) ** 0.5 or 1
        c = sum(a * b for a, b in zip(w, v)) / (ew * ev)
        if c > best:
            best, lag = c, s0 - 8000
rms = (sum(x * x for x in rec) / len(rec)) ** 0.5
print("%.3f %d %.0f" % (best, lag, rms))
EOF
}

# verdict LOG: the first verdict of a ua's JSON log
# count LOG REGEX FIELD: the in= or out= figure of the first call event matching REGEX
count() {
	jq -r -s --arg re "$2" '[.[] | select(.event == "call" and ((.detail // "") | test($re)))][0].detail // ""' "$1" |
		sed -n "s/.* $3=\([0-9]*\).*/\1/p"
}

# call NAME SRV ALICE-NAT BOB-NAT ALICE-CONF-LINES BOB-CONF-LINES: bob registers at SRV
# and answers; alice calls him; sets RC, BRC (exits), A, B (verdicts)
call() {
	local name=$1 srv=$2 an=$3 bn=$4 i
	printf '[ua]\nproxy = udp:%s:5060\njson = yes\nstate = %s\nauto-answer = yes\n%b\n' \
		"$srv" "$LAB_TMP/bob.state" "$6" >"$LAB_TMP/bob-$name.ini"
	printf '; alice\nproxy = udp:%s:5060\njson = true\nstate = %s\naor = sip:alice@%s\n%b\n' \
		"$srv" "$LAB_TMP/alice.state" "$srv" "$5" >"$LAB_TMP/alice-$name.ini"
	lab_start_bg "$bn-ph" "$LAB_TMP/bob-$name.log" "$PINHOLE" ua register \
		--config "$LAB_TMP/bob-$name.ini" "sip:bob@$srv"
	local bpid=$LAB_LAST_PID
	for i in $(seq 1 50); do
		grep -q '"event":"registered"' "$LAB_TMP/bob-$name.log" && break
		sleep 0.1
	done
	[ "$i" -lt 50 ] || lab_fail "$name: bob did not register at $srv: $(cat "$LAB_TMP/bob-$name.log")"
	lab_exec "$an-ph" timeout 60 "$PINHOLE" ua call --config "$LAB_TMP/alice-$name.ini" \
		"sip:bob@$srv" >"$LAB_TMP/alice-$name.log" 2>"$LAB_TMP/alice-$name.err" </dev/null
	RC=$?
	sleep 0.5
	kill -TERM "$bpid" 2>/dev/null
	for i in $(seq 1 50); do
		kill -0 "$bpid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$bpid" 2>/dev/null
	BRC=$?
	A=$(lab_ua_verdict "$LAB_TMP/alice-$name.log") B=$(lab_ua_verdict "$LAB_TMP/bob-$name.log")
	lab_log "$name: alice exit $RC verdict $A"
	lab_log "$name: bob exit $BRC verdict $B"
}

# --- hold and resume through the relay, WAV both ways -------------------------
call hold "$SRV1" s1 s2 \
	"duration = 10\nhold-after = 3\nresume-after = 3\nwav = $LAB_TMP/a.wav\nrecord = $LAB_TMP/alice-rec.wav" \
	"wav = $LAB_TMP/b.wav\nrecord = $LAB_TMP/bob-rec.wav"
AL=$LAB_TMP/alice-hold.log BL=$LAB_TMP/bob-hold.log
[ "$RC" -eq 0 ] || lab_fail "hold: alice exited $RC: $(cat "$LAB_TMP/alice-hold.err")"
[ "$BRC" -eq 0 ] || lab_fail "hold: bob exited $BRC"
[ "$(jq -r .verdict <<<"$A")" = two-way ] || lab_fail "hold: alice's verdict $A"
[ "$(jq -r .verdict <<<"$B")" = two-way ] || lab_fail "hold: bob's verdict $B"
[ "$(jq '.in.lost' <<<"$A")" -eq 0 ] && [ "$(jq '.in.lost' <<<"$B")" -eq 0 ] ||
	lab_fail "hold: packets lost: $A / $B"
grep -q 'held: the far end answered a=recvonly' "$AL" || lab_fail "hold: alice's hold not answered recvonly"
grep -q 'resumed: the far end answered a=sendrecv' "$AL" || lab_fail "hold: alice's resume not answered sendrecv"
grep -q 'held by the far end: it offered a=sendonly, we answered a=recvonly' "$BL" ||
	lab_fail "hold: bob did not take the hold"
grep -q 'resumed by the far end: it offered a=sendrecv, we answered a=sendrecv' "$BL" ||
	lab_fail "hold: bob did not take the resume"
# per phase, from each side's counts at the hold and the resume
ah=$(count "$AL" '^held:' in) ar=$(count "$AL" '^resumed:' in) ae=$(jq '.in.packets' <<<"$A")
bh=$(count "$BL" '^held by' in) br=$(count "$BL" '^resumed by' in) be=$(jq '.in.packets' <<<"$B")
bho=$(count "$BL" '^held by' out) bro=$(count "$BL" '^resumed by' out)
lab_log "hold: alice in: $ah at hold, $ar at resume, $ae at the end; bob in: $bh, $br, $be; bob out: $bho at hold, $bro at resume"
[ -n "$ah" ] && [ -n "$ar" ] && [ -n "$bh" ] && [ -n "$br" ] && [ -n "$bho" ] && [ -n "$bro" ] ||
	lab_fail "hold: the events lack their packet counts"
[ "$ah" -ge 100 ] || lab_fail "hold: alice got $ah packets before the hold"
[ "$bh" -ge 100 ] || lab_fail "hold: bob got $bh packets before the hold"
[ $((ar - ah)) -le 10 ] || lab_fail "hold: bob kept sending while held ($((ar - ah)) packets reached alice)"
[ $((bro - bho)) -eq 0 ] || lab_fail "hold: bob sent $((bro - bho)) packets while held"
[ $((br - bh)) -ge 100 ] || lab_fail "hold: alice's RTP did not reach bob during the hold ($((br - bh)))"
[ $((ae - ar)) -ge 100 ] || lab_fail "hold: bob's RTP did not come back after the resume ($((ae - ar)))"
[ $((be - br)) -ge 100 ] || lab_fail "hold: alice's RTP did not reach bob after the resume ($((be - br)))"
# the recordings hold the other side's WAV
read -r cba lba rba <<<"$(corr "$LAB_TMP/bob-rec.wav" "$LAB_TMP/a.wav")"
read -r cbb _ _ <<<"$(corr "$LAB_TMP/bob-rec.wav" "$LAB_TMP/b.wav")"
read -r cab lab_ rab <<<"$(corr "$LAB_TMP/alice-rec.wav" "$LAB_TMP/b.wav")"
read -r caa _ _ <<<"$(corr "$LAB_TMP/alice-rec.wav" "$LAB_TMP/a.wav")"
lab_log "wav: bob's recording vs a.wav $cba (offset $lba, rms $rba), vs b.wav $cbb; alice's vs b.wav $cab (offset $lab_, rms $rab), vs a.wav $caa"
python3 -c "import sys; c=list(map(float, sys.argv[1:])); sys.exit(not (c[0] > 0.9 and c[2] > 0.9 and c[1] < 0.3 and c[3] < 0.3))" \
	"$cba" "$cbb" "$cab" "$caa" || lab_fail "wav: the recordings do not hold the far end's audio"

# --- holding the echo service: it sends nothing back while held, and the
# verdict does not count that as loss ------------------------------------------
lab_exec s1-ph timeout 60 "$PINHOLE" ua call --json --no-register --state "$LAB_TMP/alice.state" \
	--proxy "udp:$SRV1:5060" --duration 9 --hold-after 1 --resume-after 5 "sip:echo@$SRV1" \
	>"$LAB_TMP/alice-echo.log" 2>"$LAB_TMP/alice-echo.err" </dev/null
rc=$?
E=$(lab_ua_verdict "$LAB_TMP/alice-echo.log")
lab_log "echo hold: alice exit $rc verdict $E"
[ "$rc" -eq 0 ] || lab_fail "echo hold: exit $rc: $(cat "$LAB_TMP/alice-echo.err")"
[ "$(jq -r .verdict <<<"$E")" = two-way ] || lab_fail "echo hold: verdict $E"
grep -q 'held: the far end answered a=recvonly' "$LAB_TMP/alice-echo.log" || lab_fail "echo hold: not held"
eh=$(count "$LAB_TMP/alice-echo.log" '^held:' in) er=$(count "$LAB_TMP/alice-echo.log" '^resumed:' in)
[ $((er - eh)) -le 10 ] || lab_fail "echo hold: the echo sent $((er - eh)) packets back while held"
[ $(($(jq '.in.packets' <<<"$E") - er)) -ge 100 ] || lab_fail "echo hold: nothing came back after the resume"

# --- STUN behind endpoint-independent NATs, no relay: direct media ----------
call stun-eim "$SRV2" e1 e2 "duration = 6\nstun = $SRV1" "stun = $SRV1"
[ "$RC" -eq 0 ] || lab_fail "stun-eim: alice exited $RC: $(cat "$LAB_TMP/alice-stun-eim.err")"
[ "$(jq -r .verdict <<<"$A")" = two-way ] || lab_fail "stun-eim: alice's verdict $A"
[ "$(jq -r .verdict <<<"$B")" = two-way ] || lab_fail "stun-eim: bob's verdict $B"
[ "$(jq -r '.local_announced | split(":")[0]' <<<"$A")" = "$(lab_wan_ip e1)" ] ||
	lab_fail "stun-eim: alice did not announce her NAT's address: $A"
[ "$(jq -r '.remote_announced | split(":")[0]' <<<"$A")" = "$(lab_wan_ip e2)" ] ||
	lab_fail "stun-eim: bob did not announce his NAT's address: $A"
grep -q 'the same to the other address' "$LAB_TMP/alice-stun-eim.log" ||
	lab_fail "stun-eim: alice's STUN events: $(grep stun "$LAB_TMP/alice-stun-eim.log")"

# --- STUN behind symmetric NATs, no relay: the verdict says why not ----------
call stun-sym "$SRV2" s1 s2 "duration = 6\nstun = $SRV1" "stun = $SRV1"
[ "$RC" -eq 6 ] || lab_fail "stun-sym: alice exited $RC, not 6"
[ "$(jq -r .verdict <<<"$A")" != two-way ] || lab_fail "stun-sym: alice's verdict $A"
grep -q 'a symmetric NAT' "$LAB_TMP/alice-stun-sym.log" || lab_fail "stun-sym: no symmetric NAT seen by STUN"
jq -r .cause <<<"$A" | grep -q 'STUN was not enough' || lab_fail "stun-sym: the cause does not say STUN was not enough: $A"
[ "$(jq -r .local_announced <<<"$A" | cut -d: -f1)" = "$(lab_wan_ip s1)" ] ||
	lab_fail "stun-sym: alice did not announce her mapping: $A"

# --- a bad line in a config file names its line -----------------------------
printf '[ua]\nduration = 10\nhold-after = soon\n' >"$LAB_TMP/bad.ini"
"$PINHOLE" ua call --config "$LAB_TMP/bad.ini" --no-register "sip:x@$SRV1" 2>"$LAB_TMP/bad.err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "bad.ini:3: --hold-after wants" "$LAB_TMP/bad.err" ||
	lab_fail "a bad config line: exit $rc, $(cat "$LAB_TMP/bad.err")"
lab_log "hold/resume two-way with audio each phase, WAV recorded both ways, STUN direct on EIM, STUN not enough on symmetric NAT named"
