#!/usr/bin/env bash
# Overload: REGISTER offered at OVERLOAD_FACTOR x pinhole's sustained rate for
# OVERLOAD_SECS, from loopback (exempt from the per-source limit, so what is
# measured is the overload path itself: the kernel's socket queue, then 503 +
# Retry-After for new requests that waited past [sip] overload_delay).
# Prints the goodput (200s per second during the flood) against the capacity,
# the server's RSS before, at its peak and after, and the recovery time: from
# the end of the flood until ten REGISTERs in a row are answered 200 within
# 100 ms each. Not part of ctest.
#
#   bench/overload.sh                    the flood
#   bench/overload.sh capacity R1 R2 ... OVERLOAD_SECS steps (fresh server
#                                        each) at these rates: answered 200 /
#                                        offered (the same length as the flood:
#                                        the store and transactions it fills
#                                        slow the server as it runs)
#
# The generator is bench/sip/reg_flood.c (built here with cc): sipp keeps a
# call and retransmits per REGISTER and cannot offer ten times the capacity.
# The machine has 2 cores: the server and the generator are pinned to one core
# each, and OVERLOAD_QUOTA (root, cgroup v1 cpu controller) can cap the
# server's core so that one generator core can offer ten times what it
# sustains (see docs/benchmarks.md, "Overload").
#
# Environment (all optional):
#   PINHOLE            pinhole binary               (build/pinhole)
#   OVERLOAD_CAPACITY  REGISTER/s pinhole sustains here, measured with the
#                      capacity mode and the same quota (15000: docs/benchmarks.md)
#   OVERLOAD_FACTOR    offered = capacity x this     (10)
#   OVERLOAD_SECS      length of the flood           (30)
#   OVERLOAD_WORKERS   pinhole [sip] workers         (2)
#   OVERLOAD_USERS     distinct AORs; 0 = every REGISTER a new user (200000:
#                      below [registrar] max_bindings for any run here)
#   OVERLOAD_QUOTA     % of one core the server may use; empty = no cap (30)
#   OVERLOAD_SRV_CPU   core for the server            (0)
#   OVERLOAD_GEN_CPU   core for the generator         (1)
#   OVERLOAD_PORT      server UDP port               (15160; control +10)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
CAP=${OVERLOAD_CAPACITY:-15000}
FACTOR=${OVERLOAD_FACTOR:-10}
SECS=${OVERLOAD_SECS:-30}
WORKERS=${OVERLOAD_WORKERS:-2}
USERS=${OVERLOAD_USERS:-200000}
QUOTA=${OVERLOAD_QUOTA-30}
SCPU=${OVERLOAD_SRV_CPU:-0}
GCPU=${OVERLOAD_GEN_CPU:-1}
PORT=${OVERLOAD_PORT:-15160}
CTL=127.0.0.1:$((PORT + 10))
OUT=$(mktemp -d /tmp/pinhole-overload.XXXXXX)
GEN=$OUT/reg_flood
cc -std=c17 -O2 -Wall -Wextra -o "$GEN" "$HERE/sip/reg_flood.c" || exit 1

CG=
if [ -n "$QUOTA" ]; then
	CG=/sys/fs/cgroup/cpu/pinhole-overload-$$
	mkdir "$CG" && echo 10000 >"$CG/cpu.cfs_period_us" &&
		echo $((QUOTA * 100)) >"$CG/cpu.cfs_quota_us" ||
		{ echo "OVERLOAD_QUOTA needs root and the cgroup v1 cpu controller (or set it empty)"; exit 1; }
fi

cat >"$OUT/pinhole.conf" <<CONF
[sip]
listen = udp:127.0.0.1:$PORT
workers = $WORKERS
[registrar]
[store]
path =
[control]
listen = $CTL
CONF

SRV=
start_server() {
	# the subshell joins the cgroup, then becomes the server
	sh -c "${CG:+echo \$\$ >$CG/cgroup.procs; }exec taskset -c $SCPU '$PINHOLE' serve --config '$OUT/pinhole.conf'" \
		2>"$OUT/server.log" &
	SRV=$!
	sleep 1
	kill -0 "$SRV" 2>/dev/null || { echo "server did not start: $OUT/server.log"; exit 1; }
}
stop_server() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
	SRV=
}
cleanup() {
	stop_server
	[ -n "$CG" ] && rmdir "$CG" 2>/dev/null
}
trap cleanup EXIT
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$SRV/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SRV/stat" 2>/dev/null || echo 0; }
counters() { "$PINHOLE" ctl --control "$CTL" metrics 2>/dev/null |
	grep -E '^pinhole_(sip_overload|sip_transactions_refused|sip_rate_limited|store_bindings_full|registrar_bindings)' |
	sed 's/^pinhole_//' | tr '\n' ' '; }

if [ "${1:-}" = capacity ]; then
	shift
	echo "rate     sent      200     503   other  answered%  server-cpu%"
	for r in "$@"; do
		start_server
		c0=$(cpu_ticks)
		t=$(taskset -c "$GCPU" "$GEN" "$PORT" "$r" "$SECS" 8 "$USERS" "c$r" | tail -1)
		c1=$(cpu_ticks)
		stop_server
		echo "$t" | awk -F';' -v r="$r" -v cpu=$(((c1 - c0) / SECS)) \
			'{ printf "%-7s %7d %8d %7d %7d %9.3f  %5d\n", r, $2, $4, $5, $6, $4 * 100 / ($2 + $3), cpu }'
	done
	exit 0
fi

start_server
RSS0=$(rss)
RATE=$((CAP * FACTOR))
C0=$(cpu_ticks)
taskset -c "$GCPU" "$GEN" "$PORT" "$RATE" "$SECS" 8 "$USERS" "o$$" >"$OUT/flood.csv" &
GPID=$!
PEAK=$RSS0
: >"$OUT/rss.txt"
while kill -0 $GPID 2>/dev/null; do
	r=$(rss)
	echo "$r" >>"$OUT/rss.txt"
	[ "$r" -gt "$PEAK" ] && PEAK=$r
	sleep 0.5
done
wait $GPID
END_NS=$(date +%s%N)
C1=$(cpu_ticks)
alive=yes
kill -0 "$SRV" 2>/dev/null || alive=no

# recovery: ten REGISTERs in a row answered 200 within 100 ms each (the
# generator's last second of answers was drained before END_NS)
RECOVERY=$(taskset -c "$GCPU" python3 - "$PORT" "$END_NS" <<'PY'
import socket, sys, time
port, end_ns = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
me = s.getsockname()[1]
ok, i, first_ok = 0, 0, None
deadline = time.time() + 60
while ok < 10 and time.time() < deadline:
    i += 1
    msg = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKrec{i}\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:rec{i}@127.0.0.1>;tag=r{i}\r\nTo: <sip:rec{i}@127.0.0.1>\r\n"
           f"Call-ID: rec-{i}-{time.time()}\r\nCSeq: 1 REGISTER\r\nContact: <sip:rec{i}@127.0.0.1:{me}>\r\n"
           "Expires: 60\r\nContent-Length: 0\r\n\r\n")
    t0 = time.time_ns()
    s.sendto(msg.encode(), ("127.0.0.1", port))
    s.settimeout(0.1)
    good = False
    try:
        while True:
            d = s.recv(65536).decode(errors="replace")
            if f"branch=z9hG4bKrec{i}" in d:
                good = d.startswith("SIP/2.0 200")
                break
    except socket.timeout:
        pass
    if good:
        if ok == 0:
            first_ok = t0
        ok += 1
    else:
        ok = 0
        time.sleep(0.02)
print(f"{max(0, first_ok - end_ns) / 1e9:.2f}" if ok == 10 else "never (60 s)")
PY
)
sleep 5
RSS1=$(rss)
CNT=$(counters)
stop_server
read -r SENT ERR OKS BUSY OTHER PINGS < <(awk -F';' '$1 == "total" { print $2, $3, $4, $5, $6, $7 }' "$OUT/flood.csv")
MIN=$(awk -F';' '$1 ~ /^[0-9]+$/ { if (min == "" || $4 < min) min = $4 } END { print min }' "$OUT/flood.csv")
echo "offered   $(((SENT + ERR) / SECS))/s (asked $RATE/s = ${FACTOR}x the capacity $CAP/s) for $SECS s; server core quota ${QUOTA:-none}%"
echo "goodput   $((OKS / SECS))/s = $((OKS * 100 / SECS / CAP)) % of capacity (slowest second $MIN); 503s $((BUSY / SECS))/s, other answers $OTHER, keepalive pings $PINGS"
echo "server    $(((C1 - C0) * 100 / (SECS * 100))) % of a core during the flood"
echo "rss       $((RSS0 / 1024)) MB before, $((PEAK / 1024)) MB peak, $((RSS1 / 1024)) MB 5 s after"
echo "recovery  $RECOVERY s after the flood; server alive: $alive"
echo "counters  $CNT"
echo "files     $OUT (flood.csv: per second; rss.txt: kB every 0.5 s)"
