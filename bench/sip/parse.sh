#!/usr/bin/env bash
# SIP parser micro-benchmark: sip_msg_parse() on the messages of the call
# benchmark (the caller's INVITE, the callee's 200, the caller's BYE) and a
# REGISTER.
#
#   bench/sip/parse.sh            (about 20 s; valgrind for the instruction counts)
#
# For each message: nanoseconds per parse (the median of 5 runs of 200,000
# parses; wall time, so it moves with whatever else the machine runs) and
# instructions per parse from callgrind (exact and repeatable for the same
# binary: the figure to compare when changing the parser). It has no
# reference in the same run: no other SIP stack's parser is a library here.
# Built against PINHOLE_LIB (build-bench/libpinhole_lib.a, then build/).
set -eu -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${PINHOLE_LIB:-}
if [ -z "$LIB" ]; then
	for l in "$ROOT/build-bench/libpinhole_lib.a" "$ROOT/build/libpinhole_lib.a"; do
		[ -f "$l" ] && LIB=$l && break
	done
fi
[ -n "$LIB" ] && [ -f "$LIB" ] || {
	echo "no libpinhole_lib.a: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench" >&2
	exit 1
}
OUT=$(mktemp -d /tmp/pinhole-parse.XXXXXX)
BIN="$OUT/parse_bench"
cc -std=gnu17 -O2 -Wall -Wextra -I "$ROOT/src" -o "$BIN" "$HERE/parse_bench.c" "$LIB"

echo "library: $LIB"
printf '%-9s %12s %14s\n' message ns/parse instructions
for kind in invite ok bye register; do
	ns=$(for _ in 1 2 3 4 5; do "$BIN" "$kind" 200000; done | awk '{print $2}' | sort -n | sed -n 3p)
	ins=-
	if command -v valgrind >/dev/null; then
		# the difference between 2,000 and 1,000 parses: start-up cancels out
		count() {
			valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$BIN" "$kind" "$1" 2>&1 |
				awk '/Collected/ {gsub(",", "", $NF); print $NF}'
		}
		a=$(count 1000)
		b=$(count 2000)
		ins=$(((b - a) / 1000))
	fi
	printf '%-9s %12s %14s\n' "$kind" "$ns" "$ins"
done
rm -rf "$OUT"
