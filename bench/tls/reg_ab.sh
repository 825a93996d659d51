#!/usr/bin/env bash
# CPU per REGISTER over established TLS: two builds of pinhole (A, B), each
# with 1 and 2 workers, and Kamailio 5.6 (tls module, 1 TCP worker,
# bench/tls/kamailio.cfg), all up at once on 127.0.0.1, the runs in turn with
# the order rotated run by run. For a before/after in one invocation, with
# Kamailio as the common reference. Not part of ctest; timing decides nothing.
#
#   PINHOLE_A=old/pinhole PINHOLE_B=build/pinhole bench/tls/reg_ab.sh
#
# Same setup as run.sh's REGISTER part: the same ECDSA P-256 certificate and
# intermediate for all, [registrar] open = yes (Kamailio save()), bindings in
# memory; the generator is tls_bench.c (TB_FLOWS flows, each registered once,
# then refreshes at TB_RATE/s round them for TB_REG_SECS), with TB_DETAIL:
# besides CPU per 200 (schedstat, every thread), user and system CPU (ticks),
# the server's sleeps (voluntary context switches: wake-ups) and preemptions
# per 200. Prints a line per server and run, then medians of the ratios to
# Kamailio run by run.
#
# Environment: PINHOLE_A, PINHOLE_B (build/pinhole), KAMAILIO (kamailio),
# TB_PORT (28661), TB_FLOWS (500), TB_RATE (4000), TB_REG_SECS (5),
# TB_REPEAT (5), BENCH_OUT (a new /tmp/pinhole-regab.XXXXXX).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
A=${PINHOLE_A:-$ROOT/build/pinhole}
B=${PINHOLE_B:-$ROOT/build/pinhole}
KAMAILIO=${KAMAILIO:-kamailio}
PORT=${TB_PORT:-28661}
FLOWS=${TB_FLOWS:-500}
RATE=${TB_RATE:-4000}
SECS=${TB_REG_SECS:-5}
REPEAT=${TB_REPEAT:-5}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-regab.XXXXXX)}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
. "$HERE/lib.sh"
tb_gen "$OUT" || exit 1
GEN=$OUT/tls_bench
tb_certs "$OUT" || exit 1

# server name, its build, workers, port offset
SERVERS="a1 a2 b1 b2"
bin_of() { case $1 in a*) echo "$A" ;; *) echo "$B" ;; esac; }
port_of() {
	case $1 in
	a1) echo $PORT ;; a2) echo $((PORT + 10)) ;; b1) echo $((PORT + 20)) ;;
	b2) echo $((PORT + 30)) ;; kamailio) echo $((PORT + 40)) ;;
	esac
}
for s in $SERVERS; do
	tb_registrar_conf "$OUT" "tls:127.0.0.1:$(port_of "$s")" "${s#?}" $(($(port_of "$s") + 2)) \
		>"$OUT/$s.conf"
done

declare -A PID
cleanup() {
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT
for s in $SERVERS; do
	"$(bin_of "$s")" serve --config "$OUT/$s.conf" >"$OUT/$s.log" 2>&1 &
	PID[$s]=$!
done
KP=$(port_of kamailio)
tb_kamailio "$OUT" "$KP"
PID[kamailio]=$TB_KPID
sleep 3
for s in $SERVERS kamailio; do
	kill -0 "${PID[$s]}" 2>/dev/null || {
		cat "$OUT/$s.log"
		exit 1
	}
done
pids() {
	if [ "$1" = kamailio ]; then tb_pids "${PID[kamailio]}"; else echo "${PID[$1]}"; fi
}

echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: $A  B: $B  kamailio: $("$KAMAILIO" -v | head -1)"
echo "== REGISTER over established TLS ($FLOWS flows, $RATE/s, ${SECS}s runs; a/b = build A/B, 1/2 = workers)"
arr=(a1 a2 b1 b2 kamailio)
for r in $(seq 1 "$REPEAT"); do
	k=$(((r - 1) % 5)) # the order rotated run by run
	for s in "${arr[@]:k}" "${arr[@]:0:k}"; do
		l=$(cut -d' ' -f1 /proc/loadavg)
		out=$(TB_DETAIL=1 TB_PIDS="$(pids "$s")" "$GEN" reg "$(port_of "$s")" "$FLOWS" "$RATE" "$SECS" | tr '\n' ' ')
		echo "$s $r $out load $l"
	done
done | tee "$OUT/reg_ab.txt"
# lines: srv run reg SENT OK flows F cpu_ns C detail user_us U sys_us S wakeups W preempted P per 200 load L
awk '
	function med(s,   n, a, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{ us[$1, $2] = $5 ? $9 / $5 / 1000 : 0; wk[$1, $2] = $16; runs[$2] = 1; usl[$1] = usl[$1] " " us[$1, $2]; wkl[$1] = wkl[$1] " " $16; ld[$2] = ld[$2] " " $22 }
	END {
		printf "\nrun | CPU us/REGISTER a1 a2 b1 b2 kamailio | ratio to kamailio a1 a2 b1 b2 | b/a 1w 2w | load\n"
		for (r = 1; r in runs; r++) {
			k = us["kamailio", r]
			printf "%3d | %5.1f %5.1f %5.1f %5.1f %5.1f | %4.2f %4.2f %4.2f %4.2f | %4.2f %4.2f |%s\n", r, us["a1", r], us["a2", r], us["b1", r], us["b2", r], k, us["a1", r] / k, us["a2", r] / k, us["b1", r] / k, us["b2", r] / k, us["b1", r] / us["a1", r], us["b2", r] / us["a2", r], ld[r]
			ra1 = ra1 " " us["a1", r] / k; ra2 = ra2 " " us["a2", r] / k; rb1 = rb1 " " us["b1", r] / k; rb2 = rb2 " " us["b2", r] / k
			q1 = q1 " " us["b1", r] / us["a1", r]; q2 = q2 " " us["b2", r] / us["a2", r]
		}
		printf "medians: to kamailio a1 %.2f a2 %.2f b1 %.2f b2 %.2f; b/a 1 worker %.2f, 2 workers %.2f\n", med(ra1), med(ra2), med(rb1), med(rb2), med(q1), med(q2)
		printf "wake-ups per REGISTER (medians): a1 %.2f a2 %.2f b1 %.2f b2 %.2f kamailio %.2f\n", med(wkl["a1"]), med(wkl["a2"]), med(wkl["b1"]), med(wkl["b2"]), med(wkl["kamailio"])
	}' "$OUT/reg_ab.txt" | tee "$OUT/summary.txt"
echo "files in $OUT"
