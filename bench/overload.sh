#!/usr/bin/env bash
# Overload: REGISTER offered at OVERLOAD_FACTOR x pinhole's sustained rate for
# OVERLOAD_SECS, from loopback (exempt from the per-source limit, so what is
# measured is the overload shedding: 503 + Retry-After for new requests once a
# worker is behind). Prints the goodput (200s per second during the flood)
# against the capacity, the server's RSS before, at its peak and after, and
# the recovery time: from the end of the flood until ten REGISTERs in a row
# are answered 200 within 100 ms each. Not part of ctest.
#
#   bench/overload.sh
#
# Environment (all optional):
#   PINHOLE            pinhole binary               (build/pinhole)
#   OVERLOAD_CAPACITY  REGISTER/s pinhole sustains here (20000: docs/benchmarks.md)
#   OVERLOAD_FACTOR    offered = capacity x this     (10)
#   OVERLOAD_SECS      length of the flood           (30)
#   OVERLOAD_WORKERS   pinhole [sip] workers         (2)
#   OVERLOAD_PORT      server UDP port               (15160; sipp uses +30)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PINHOLE=${PINHOLE:-$ROOT/build/pinhole}
CAP=${OVERLOAD_CAPACITY:-20000}
FACTOR=${OVERLOAD_FACTOR:-10}
SECS=${OVERLOAD_SECS:-30}
WORKERS=${OVERLOAD_WORKERS:-2}
PORT=${OVERLOAD_PORT:-15160}
OUT=$(mktemp -d /tmp/pinhole-overload.XXXXXX)
command -v sipp >/dev/null || { echo "need sipp (apt-get install sip-tester)"; exit 1; }

cat >"$OUT/pinhole.conf" <<CONF
[sip]
listen = udp:127.0.0.1:$PORT
workers = $WORKERS
[registrar]
[store]
path =
CONF
"$PINHOLE" serve --config "$OUT/pinhole.conf" 2>"$OUT/server.log" &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null' EXIT
sleep 1
kill -0 $SRV 2>/dev/null || { echo "server did not start: $OUT/server.log"; exit 1; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$SRV/status" 2>/dev/null || echo 0; }

RSS0=$(rss)
RATE=$((CAP * FACTOR))
( cd "$OUT" && timeout -s INT -k 10 "$SECS" sipp -sf "$HERE/sipp/register.xml" -key upfx "ovl" \
	-r "$RATE" -m $((RATE * SECS)) -i 127.0.0.1 -p $((PORT + 30)) -nostdin -buff_size 4194304 \
	-trace_stat -fd 1 -stf flood.csv "127.0.0.1:$PORT" >flood.out 2>&1 ) &
GEN=$!
PEAK=$RSS0
while kill -0 $GEN 2>/dev/null; do
	r=$(rss)
	[ "$r" -gt "$PEAK" ] && PEAK=$r
	sleep 0.5
done
wait $GEN
END_NS=$(date +%s%N)
alive=yes
kill -0 $SRV 2>/dev/null || alive=no

# recovery: ten REGISTERs in a row answered 200 within 100 ms each
RECOVERY=$(python3 - "$PORT" "$END_NS" <<'PY'
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
            first_ok = time.time_ns()
        ok += 1
    else:
        ok = 0
        time.sleep(0.02)
print(f"{(first_ok - end_ns) / 1e9:.2f}" if ok == 10 else "never (60 s)")
PY
)
sleep 5
RSS1=$(rss)
csv=$OUT/flood.csv
[ -f "$csv" ] || csv=$(ls "$OUT"/*_.csv 2>/dev/null | head -1)
col() { awk -F';' -v col="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next } { v = $c } END { print (c && v != "" ? v : 0) }' "$csv" 2>/dev/null || echo 0; }
OKS=$(col "SuccessfulCall(C)")
MADE=$(col "TotalCallCreated")
echo "offered   $((MADE / SECS))/s asked $RATE/s (${FACTOR}x the capacity $CAP/s) for $SECS s"
echo "goodput   $((OKS / SECS))/s = $((OKS * 100 / SECS / CAP)) % of capacity"
echo "rss       $((RSS0 / 1024)) MB before, $((PEAK / 1024)) MB peak, $((RSS1 / 1024)) MB 5 s after"
echo "recovery  $RECOVERY s after the flood; server alive: $alive"
echo "logs      $OUT"
grep -h -E "sip_overload|sip_transactions_refused|sip_rate_limited" "$OUT/server.log" 2>/dev/null | tail -3
