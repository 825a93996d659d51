#!/bin/sh
# Smoke test by hand of the edge-only shape (docs/outbound.md), on loopback:
# an edge-only pinhole on 127.0.0.2 in front of a registrar-only pinhole on
# 127.0.0.3; an outbound sipp phone (127.0.0.10) registers through the edge
# and a sipp caller (127.0.0.11) calls it through the edge. Not part of ctest
# (the NAT lab test of this shape is tests/lab's); it prints what it saw and
# exits non-zero when a sipp failed.
#
#   scripts/smoke/outbound.sh [build/pinhole]
set -u
PINHOLE=${1:-build/pinhole}
HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/../../tests/lab/scenarios
T=$(mktemp -d /tmp/pinhole-smoke.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT INT TERM HUP PIPE
# SO_REUSEPORT would let a second server share the port with a leftover one
if ss -Hlun | grep -qE '127\.0\.0\.[23]:5060 '; then
	echo "something listens on 127.0.0.2 or 127.0.0.3 port 5060 already:" >&2
	ss -Hlunp | grep -E '127\.0\.0\.[23]:5060 ' >&2
	exit 2
fi

cat >"$T/registrar.conf" <<EOF
[sip]
listen = udp:127.0.0.3:5060
domains = 127.0.0.2
[proxy]
trusted = 127.0.0.2
[store]
path =
[control]
listen = 127.0.0.3:5080
[log]
level = debug
EOF
cat >"$T/edge.conf" <<EOF
[sip]
listen = udp:127.0.0.2:5060
domains = 127.0.0.2
[proxy]
registrar = udp:127.0.0.3:5060
[control]
listen = 127.0.0.2:5080
[log]
level = debug
EOF
"$PINHOLE" serve --config "$T/registrar.conf" 2>"$T/registrar.log" & PIDS="$PIDS $!"
"$PINHOLE" serve --config "$T/edge.conf" 2>"$T/edge.log" & PIDS="$PIDS $!"
sleep 1

CID="smoke-$$-%u"
sipp -sf "$HERE/ob_callee.xml" -t u1 -i 127.0.0.10 -p 5070 127.0.0.2:5060 -m 1 \
	-s bob -key expires 300 -cid_str "$CID" -aa -d 500 -timeout 15 -timeout_error \
	-trace_msg -message_file "$T/callee.msg" -trace_logs -log_file "$T/callee.log" -trace_err -error_file "$T/callee.err" \
	>/dev/null 2>&1 &
CALLEE=$!
sleep 1
sipp -sf "$SCEN/caller_gets_bye.xml" -t u1 -i 127.0.0.11 -p 5071 127.0.0.2:5060 -m 1 \
	-s bob -key user alice -cid_str "$CID" -timeout 15 -timeout_error \
	-trace_msg -message_file "$T/caller.msg" >/dev/null 2>&1
caller=$?
wait "$CALLEE"
callee=$?
echo "caller sipp exit: $caller, callee sipp exit: $callee"
echo "callee: $(cat "$T/callee.log" 2>/dev/null)"
echo "registrar's bindings:"
"$PINHOLE" ctl --control 127.0.0.3:5080 registrations
echo "edge counters:"
curl -s http://127.0.0.2:5080/counters | tr ',' '\n' | grep -E 'proxy_(upstream|path)'
[ "$caller" = 0 ] && [ "$callee" = 0 ] && echo PASS && exit 0
echo "FAIL (logs in $T)"; KEEP=1
exit 1
