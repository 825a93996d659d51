#!/usr/bin/env bash
# SIP benchmarks: pinhole against Kamailio 5.6, in one invocation, driven by sipp.
#
#   bench/run.sh [register|calls|all|auth] (default: all = register and calls)
#   bench/run.sh report RESULTS-DIR        (the tables again from a run's files)
#
# register  REGISTER throughput, every REGISTER for a user not seen before:
#           pinhole with the in-memory store, pinhole with SQLite, Kamailio
#           (usrloc in memory, db_mode 0) as the reference.
# calls     call throughput through the proxy: INVITE/100/180/200, ACK and BYE
#           along the Record-Route path, 200 to the BYE; the callees are
#           registered from the UAS's own socket, so every INVITE is routed to
#           a binding's real source.
# auth      authenticated REGISTER: BENCH_AUTH_USERS users provisioned in
#           both servers (pinhole: `pinhole user add` into its SQLite file;
#           Kamailio: the same MD5 HA1 values in the subscriber table of an
#           SQLite file read by auth_db), sipp REGISTER -> 401 -> REGISTER with
#           Authorization (MD5, qop=auth) for the users in turn.  pinhole with
#           its memory store (users in their SQLite file, [store] users: the
#           like-for-like pair with Kamailio), and with its SQLite store,
#           sync=full and sync=normal (users in that file); Kamailio with usrloc in
#           memory, auth_db on SQLite, nonce_count, stateful
#           (bench/kamailio/kamailio.cfg with WITH_AUTH).  Not part of `all`.
#
# Each server is started in turn on the same address and port, gets a rate
# ramp (one sipp run per step, BENCH_STEP_SECS long, repeated BENCH_REPEAT
# times), and is stopped.  For each step the script records what sipp offered
# and achieved, the failures (calls sipp did not count as successful, out of
# all offered), and the server's CPU time (utime+stime from /proc/PID/stat of
# every server process, before and after the step) divided by the successful
# operations.  It prints one table per benchmark with both servers side by
# side and the ratios, and keeps every log under BENCH_OUT.
#
# Environment (all optional):
#   PINHOLE             pinhole binary         (build-bench/pinhole, then build/pinhole)
#   KAMAILIO            kamailio binary        (kamailio)
#   BENCH_SERVERS       which servers to run   ("pinhole kamailio")
#   BENCH_STEP_SECS     seconds per step       (10; auth: 4)
#   BENCH_WARMUP_SECS   unrecorded warm-up at the first rate (3)
#   BENCH_REPEAT        runs per step; the table shows their medians (1; auth: 3)
#   BENCH_REG_RATES     REGISTER/s ramp        ("5000 10000 20000 30000 40000 50000")
#   BENCH_CALL_RATES    calls/s ramp           ("1000 2000 4000 6000 8000 10000 12000")
#   BENCH_AUTH_RATES    authenticated REGISTER/s ramp ("2500 5000 7500 10000")
#   BENCH_AUTH_USERS    users provisioned for auth (10000)
#   BENCH_AUTH_SERVERS  auth runs   ("pinhole-mem-auth pinhole-sqlite-full pinhole-sqlite-normal kamailio-auth")
#   BENCH_USERS_CACHE   where the provisioned user files are kept between
#                       invocations (/tmp/pinhole-bench-users; adding 10,000
#                       users with `pinhole user add` takes a minute or two)
#   BENCH_CALLEES       registered callees     (1000)
#   BENCH_CALL_HOLD_MS  pause between ACK and BYE, sipp -d (0)
#   BENCH_SQLITE_SYNC   pinhole [store] sync for the SQLite run (full)
#   BENCH_STORES        pinhole stores in the REGISTER ramp ("mem sqlite")
#   BENCH_PINHOLE_WORKERS  pinhole [sip] workers (2, as Kamailio's 2 children)
#   BENCH_PINHOLE_ARGS  more pinhole serve arguments, e.g. "--set sip.steering=off"
#   BENCH_MIN_FREE_MB   a ramp stops when the machine has less memory left (4000)
#   BENCH_ADDR          server address         (127.0.0.1; loopback only)
#   BENCH_PORT          server UDP port        (15060); the UAS uses +10,
#                       the generator +30, pinhole's control endpoint +21
#   BENCH_OUT           where logs go          (a new /tmp/pinhole-bench.XXXXXX)
#
# A step counts as sustained when failures < 0.1 % and the achieved rate is at
# least 95 % of the offered one.  A server's ramp ends after two steps in a row
# that it did not keep up with, or one with more than 5 % failures (losses to
# messages overtaking each other inside the server are reported, and do not end
# the ramp).
#
# Nothing here is part of ctest: timing never decides whether a test passes.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MODE=${1:-all}
case $MODE in
register | calls | all | auth) ;;
report)
	# bench/run.sh report DIR: the tables again from a finished run's files
	[ -d "${2:-}" ] || {
		echo "usage: $0 report RESULTS-DIR" >&2
		exit 2
	}
	BENCH_OUT=$2
	;;
-h | --help | help)
	sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [register|calls|all|auth] | $0 report RESULTS-DIR" >&2
	exit 2
	;;
esac

if [ -z "${PINHOLE:-}" ]; then
	for p in "$ROOT/build-bench/pinhole" "$ROOT/build/pinhole"; do
		[ -x "$p" ] && PINHOLE=$p && break
	done
fi
KAMAILIO=${KAMAILIO:-kamailio}
SERVERS=${BENCH_SERVERS:-pinhole kamailio}
STEP_SECS=${BENCH_STEP_SECS:-10}
# auth: short steps, three runs each, so that a whole run (three servers) takes
# about five minutes
[ "$MODE" = auth ] && STEP_SECS=${BENCH_STEP_SECS:-4}
WARMUP_SECS=${BENCH_WARMUP_SECS:-3}
MIN_FREE_MB=${BENCH_MIN_FREE_MB:-4000}
REPEAT=${BENCH_REPEAT:-1}
[ "$MODE" = auth ] && REPEAT=${BENCH_REPEAT:-3}
REG_RATES=${BENCH_REG_RATES:-5000 10000 20000 30000 40000 50000}
CALL_RATES=${BENCH_CALL_RATES:-1000 2000 4000 6000 8000 10000 12000}
CALLEES=${BENCH_CALLEES:-1000}
AUTH_RATES=${BENCH_AUTH_RATES:-2500 5000 7500 10000}
AUTH_USERS=${BENCH_AUTH_USERS:-10000}
AUTH_SERVERS=${BENCH_AUTH_SERVERS:-pinhole-mem-auth pinhole-sqlite-full pinhole-sqlite-normal kamailio-auth}
USERS_CACHE=${BENCH_USERS_CACHE:-/tmp/pinhole-bench-users}
CALL_HOLD_MS=${BENCH_CALL_HOLD_MS:-0}
SQLITE_SYNC=${BENCH_SQLITE_SYNC:-full}
STORES=${BENCH_STORES:-mem sqlite}
ADDR=${BENCH_ADDR:-127.0.0.1}
PORT=${BENCH_PORT:-15060}
UAS_PORT=$((PORT + 10))
GEN_PORT=$((PORT + 30))
CTL_PORT=$((PORT + 21))
OUT=${BENCH_OUT:-$(mktemp -d /tmp/pinhole-bench.XXXXXX)}
mkdir -p "$OUT"
HZ=$(getconf CLK_TCK)
SIPP_DIR=$HERE/sipp
KAM_CFG=$HERE/kamailio/kamailio.cfg

case $ADDR in
127.* | ::1) ;;
*)
	echo "bench: BENCH_ADDR must be a loopback address" >&2
	exit 2
	;;
esac

need() { command -v "$1" >/dev/null 2>&1 || {
	echo "bench: $1 not found ($2)" >&2
	exit 2
}; }
for st in $STORES; do
	case $st in
	mem | sqlite) ;;
	*)
		echo "bench: unknown store '$st' in BENCH_STORES (mem, sqlite)" >&2
		exit 2
		;;
	esac
done
if [ "$MODE" != report ]; then
need sipp "apt-get install sip-tester"
need ss "apt-get install iproute2"
need awk "apt-get install gawk"
for s in $SERVERS; do
	case $s in
	pinhole) [ -n "${PINHOLE:-}" ] && [ -x "$PINHOLE" ] || {
		echo "bench: no pinhole binary; build it (see docs/benchmarks.md) or set PINHOLE" >&2
		exit 2
	} ;;
	kamailio) need "$KAMAILIO" "apt-get install kamailio" ;;
	*)
		echo "bench: unknown server '$s' in BENCH_SERVERS" >&2
		exit 2
		;;
	esac
done
if [ "$MODE" = auth ]; then
	need sqlite3 "apt-get install sqlite3"
	for s in $AUTH_SERVERS; do
		case $s in
		pinhole-mem-auth | pinhole-sqlite-full | pinhole-sqlite-normal) [ -n "${PINHOLE:-}" ] && [ -x "$PINHOLE" ] || {
			echo "bench: no pinhole binary; build it (see docs/benchmarks.md) or set PINHOLE" >&2
			exit 2
		} ;;
		kamailio-auth)
			need "$KAMAILIO" "apt-get install kamailio"
			[ -f /usr/share/kamailio/db_sqlite/auth_db-create.sql ] || {
				echo "bench: no Kamailio SQLite schema; apt-get install kamailio-sqlite-modules" >&2
				exit 2
			}
			;;
		*)
			echo "bench: unknown server '$s' in BENCH_AUTH_SERVERS" >&2
			exit 2
			;;
		esac
	done
fi
fi

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

# ---- processes we start, ended by PID only ------------------------------------

SERVER_PID=
SERVER_PIDS=
UAS_PID=

stop_pid() { # pid [seconds]: TERM, wait, then KILL; only that PID
	local pid=$1 wait=${2:-10} i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < wait * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not stop on TERM; killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

stop_server() {
	local p
	[ -n "$SERVER_PID" ] || return 0
	stop_pid "$SERVER_PID" 15
	# Kamailio's children leave with their parent; make sure of it, by PID
	for p in $SERVER_PIDS; do
		[ "$p" = "$SERVER_PID" ] && continue
		if kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null
		fi
	done
	SERVER_PID=
	SERVER_PIDS=
}

cleanup() {
	[ -n "$UAS_PID" ] && stop_pid "$UAS_PID" 3
	UAS_PID=
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

wait_port_free() {
	local i
	for ((i = 0; i < 100; i++)); do
		port_free "$1" && return 0
		sleep 0.1
	done
	return 1
}

# ---- servers -------------------------------------------------------------------

pinhole_conf() { # store-path sync [auth]
	cat <<EOF
[sip]
listen = udp:$ADDR:$PORT
workers = ${BENCH_PINHOLE_WORKERS:-2}
[store]
path = $1
sync = $2
[registrar]
; no users, and BENCH_ADDR may be any address
open = yes
; the unique-user ramp leaves millions of AORs; Kamailio's usrloc has no cap
max_bindings = 100000000
[keepalive]
interval = 0
[control]
listen = 127.0.0.1:$CTL_PORT
[log]
level = warn
EOF
	# sipp answers only the first challenge and only with MD5. Every REGISTER
	# of the benchmark comes from one address: the failure limiter (per
	# source) is set to its maximum so that a few lost packets cannot put the
	# whole load in backoff; Kamailio has no such limiter.
	[ "${3:-}" = auth ] && printf '[auth]\nalgorithms = MD5\nmax_failures = 1000\n'
	return 0
}

# start_server NAME DIR: NAME is pinhole-mem, pinhole-sqlite, kamailio, or for
# the auth benchmark pinhole-mem-auth, pinhole-sqlite-full, pinhole-sqlite-normal,
# kamailio-auth
start_server() {
	local name=$1 dir=$2 i
	if ! wait_port_free "$PORT"; then
		log "udp port $PORT is taken by something else; set BENCH_PORT"
		return 1
	fi
	case $name in
	pinhole-mem)
		pinhole_conf "" normal >"$dir/pinhole.conf"
		"$PINHOLE" serve --config "$dir/pinhole.conf" ${BENCH_PINHOLE_ARGS:-} >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	pinhole-sqlite)
		rm -f "$dir/bindings.db"*
		pinhole_conf "$dir/bindings.db" "$SQLITE_SYNC" >"$dir/pinhole.conf"
		"$PINHOLE" serve --config "$dir/pinhole.conf" ${BENCH_PINHOLE_ARGS:-} >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	pinhole-mem-auth)
		# bindings in memory, users read from their own SQLite file
		rm -f "$dir/users.db"*
		cp "$USERS_DB" "$dir/users.db" || return 1
		{
			pinhole_conf "" normal auth
			printf '[store]\nusers = %s\n' "$dir/users.db"
		} >"$dir/pinhole.conf"
		"$PINHOLE" serve --config "$dir/pinhole.conf" ${BENCH_PINHOLE_ARGS:-} >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	pinhole-sqlite-full | pinhole-sqlite-normal)
		rm -f "$dir/pinhole.db"*
		cp "$USERS_DB" "$dir/pinhole.db" || return 1
		pinhole_conf "$dir/pinhole.db" "${name#pinhole-sqlite-}" auth >"$dir/pinhole.conf"
		"$PINHOLE" serve --config "$dir/pinhole.conf" ${BENCH_PINHOLE_ARGS:-} >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	kamailio-auth)
		mkdir -p "$dir/run"
		cp "$KAM_DB" "$dir/kamailio.db" || return 1
		"$KAMAILIO" -f "$KAM_CFG" -A WITH_AUTH -A "DBURL=\"sqlite://$dir/kamailio.db\"" \
			-l "udp:$ADDR:$PORT" -x tlsf -m 4096 -M 32 \
			-DD -E -Y "$dir/run" >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	kamailio)
		mkdir -p "$dir/run"
		# -x tlsf: the fastest allocator; -m/-M: shared/private memory (MB)
		"$KAMAILIO" -f "$KAM_CFG" -l "udp:$ADDR:$PORT" -x tlsf -m 4096 -M 32 \
			-DD -E -Y "$dir/run" >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		;;
	esac
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			log "$name exited at start-up; see $dir/server.log:"
			tail -5 "$dir/server.log" >&2
			SERVER_PID=
			return 1
		fi
		port_free "$PORT" || break
		sleep 0.1
	done
	sleep 0.5 # let every worker reach its loop
	SERVER_PIDS="$SERVER_PID $(pgrep -P "$SERVER_PID" | tr '\n' ' ')"
	log "$name up (pids $SERVER_PIDS)"
}

cpu_ticks() { # utime+stime of every server process
	local t=0 p f
	for p in $SERVER_PIDS; do
		[ -r "/proc/$p/stat" ] || continue
		# fields after the ")" that closes comm: 12 = utime, 13 = stime
		f=$(sed 's/^.*) //' "/proc/$p/stat")
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

now() { date +%s.%N; }

proc_snapshot() { # FILE: "pid ticks" (utime+stime) of every process on the machine
	# (/proc/stat is no use here: on this kind of VM its tick sampling misses
	# most of the short bursts a packet server runs in; per-task times are exact)
	cat /proc/[0-9]*/stat 2>/dev/null | awk '{
		p = 0; while ((i = index(substr($0, p + 1), ") ")) > 0) p += i
		c = substr($0, index($0, "(") + 1, p - index($0, "(") - 1); gsub(/ /, "_", c)
		split(substr($0, p + 2), f, " ")   # f[1] = state, f[12] = utime, f[13] = stime
		print $1, f[12] + f[13], c }' >"$1"
}

other_ticks() { # BEFORE AFTER [TOPFILE]: CPU of processes other than the server's, alive at the end
	awk -v skip=" $SERVER_PIDS $$ " -v top="${3:-/dev/null}" 'FNR == NR { t0[$1] = $2; next }
		index(skip, " " $1 " ") == 0 { d = $2 - (($1 in t0) ? t0[$1] : 0); if (d > 0) { sum += d; if (d > 5) print d, $1, $3 > top } }
		END { print sum + 0 }' "$1" "$2"
}

gen_ticks() { # FILE: CPU of this shell's reaped children (the sipp runs), in ticks
	# `times` must run in this shell, not in a $(...) subshell: it writes FILE,
	# the value is read back from it
	times >"$1"
	GEN_TICKS=$(awk -v hz="$HZ" 'NR == 2 {
		split($1, u, "m"); split($2, s, "m")
		printf "%d\n", hz * (u[1] * 60 + u[2] + s[1] * 60 + s[2]) + 0.5 }' "$1")
}

# ---- sipp ----------------------------------------------------------------------

SIPP_COMMON=(-i "$ADDR" -nostdin -buff_size 4194304 -trace_stat -fd 1 -trace_err)

# sipp 3.6's own -timeout does not end a run that has calls left waiting (seen:
# a UAC waiting forever on 73 calls whose messages were lost), and SIGUSR1 (its
# graceful quit) waits for them too, so every sipp runs under timeout(1) with
# SIGINT, on which sipp quits at once and still writes its statistics.
sipp_bounded() { # seconds sipp-args...
	local t=$1
	shift
	timeout -s INT -k 10 "$t" sipp "$@"
}

# csv_ok_by FILE SECS: successful calls by SECS seconds into the run (the first
# per-second row at or after SECS, else the last one).  "Achieved" is this over
# the step's length: a few calls hanging until sipp's timeout do not make a
# step look slow, they count as failures.
csv_ok_by() {
	awk -F';' -v at="$2" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "ElapsedTime(C)") e = i; if ($i == "SuccessfulCall(C)") c = i }; next }
		{ split($e, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]; v = $c; if (s >= at) { print v; found = 1; exit } }
		END { if (!found) print (v != "" ? v : 0) }' "$1" 2>/dev/null || echo 0
}

# csv_last FILE COLUMN: the last row's value of a sipp -trace_stat column
csv_last() {
	awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
		{ v = $c } END { print (c && v != "" ? v : 0) }' "$1" 2>/dev/null || echo 0
}

register_callees() { # dir: register callee1..calleeN from the UAS port
	local dir=$1
	wait_port_free "$UAS_PORT" || log "udp port $UAS_PORT still taken"
	sipp_bounded 40 -sf "$SIPP_DIR/register.xml" -key upfx callee -r 2000 -m "$CALLEES" \
		-p "$UAS_PORT" "${SIPP_COMMON[@]}" -stf "$dir/callees.csv" \
		-error_file "$dir/callees.err" -timeout 30s "$ADDR:$PORT" >"$dir/callees.out" 2>&1
	local ok
	ok=$(csv_last "$dir/callees.csv" "SuccessfulCall(C)")
	if [ "$ok" != "$CALLEES" ]; then
		log "registering $CALLEES callees: only $ok succeeded (see $dir/callees.out)"
		return 1
	fi
	wait_port_free "$UAS_PORT"
}

# ---- users for the auth benchmark ---------------------------------------------

# provision_users: USERS_DB (pinhole's SQLite file with AUTH_USERS users b1..bN
# in realm ADDR, the To domain of the benchmark's REGISTERs), KAM_DB (Kamailio's
# subscriber table with the same MD5 HA1 values, copied from USERS_DB: both
# servers check the very same credentials) and OUT/users.csv for sipp.  The
# files are kept in USERS_CACHE and made again only when missing or short.
provision_users() {
	local base=$USERS_CACHE/users-$AUTH_USERS-$ADDR i n
	mkdir -p "$USERS_CACHE" || return 1
	USERS_DB=$base.db KAM_DB=$base.kamailio.db
	n=$(sqlite3 "$USERS_DB" 'SELECT count(*) FROM credential' 2>/dev/null)
	if [ "${n:-0}" != "$AUTH_USERS" ]; then
		rm -f "$USERS_DB" "$USERS_DB"-* "$KAM_DB"
		log "adding $AUTH_USERS users with \`pinhole user add\` (once: kept in $USERS_CACHE)"
		for ((i = 1; i <= AUTH_USERS; i++)); do
			printf 'bench-pw-%d\n' "$i" |
				"$PINHOLE" user add "b$i@$ADDR" --db "$USERS_DB" --password-stdin >/dev/null ||
				return 1
		done
		sqlite3 "$USERS_DB" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	fi
	if [ ! -s "$KAM_DB" ]; then
		local sql=/usr/share/kamailio/db_sqlite
		{ cat "$sql/standard-create.sql" "$sql/auth_db-create.sql" &&
			echo "ATTACH '$USERS_DB' AS p;
			INSERT INTO subscriber (username, domain, ha1)
				SELECT user, realm, ha1_md5 FROM p.credential;"; } | sqlite3 "$KAM_DB.tmp" &&
			mv "$KAM_DB.tmp" "$KAM_DB" || return 1
	fi
	# sipp 3.6 does not expand [fieldN] inside [authentication ...], but it
	# expands keywords in a field's text: the whole keyword is the field
	awk -v n="$AUTH_USERS" 'BEGIN { print "SEQUENTIAL"
		for (i = 1; i <= n; i++) printf "b%d;[authentication username=b%d password=bench-pw-%d]\n", i, i, i }' \
		>"$OUT/users.csv"
	printf 'SEQUENTIAL\nb1;[authentication username=b1 password=not-the-password]\n' >"$OUT/users-wrong.csv"
	log "users: $AUTH_USERS in $USERS_DB (pinhole) and $KAM_DB (Kamailio)"
}

# auth_verify DIR: one REGISTER with the right password is accepted and one
# with a wrong password is not (the server really checks what it is given)
auth_verify() {
	local dir=$1 f rc
	for f in users users-wrong; do
		sipp_bounded 15 -sf "$SIPP_DIR/register_auth.xml" -inf "$OUT/$f.csv" -m 1 \
			-p "$GEN_PORT" "${SIPP_COMMON[@]}" -stf "$dir/verify-$f.csv" \
			-error_file "$dir/verify-$f.err" -timeout 8s "$ADDR:$PORT" >"$dir/verify-$f.out" 2>&1
		rc=$?
		if [ "$f" = users ] && [ $rc -ne 0 ]; then
			log "auth check: the right password was not accepted (see $dir/verify-$f.*)"
			return 1
		fi
		if [ "$f" = users-wrong ] && [ $rc -eq 0 ]; then
			log "auth check: a wrong password was accepted (see $dir/verify-$f.*)"
			return 1
		fi
	done
	wait_port_free "$GEN_PORT"
}

# run_step KIND RATE REP DIR
#   -> writes DIR/result: "offered achieved fail% us/op cpu% ok failed retrans out-of-order%"
run_step() {
	local kind=$1 rate=$2 rep=$3 dir=$4
	# calls still unfinished 12 s after the last one was offered count as failed
	local n=$((rate * STEP_SECS)) timeout=$((STEP_SECS + 12))
	# an authenticated REGISTER has no call to wait for: a shorter tail keeps
	# a whole auth run within minutes
	[ "$kind" = auth ] && timeout=$((STEP_SECS + 6))
	mkdir -p "$dir"
	local c0 c1 t0 t1 rc b1 g0 g1
	gen_ticks "$dir/times"
	g0=$GEN_TICKS
	proc_snapshot "$dir/procs0"
	if [ "$kind" = calls ]; then
		wait_port_free "$UAS_PORT" || log "udp port $UAS_PORT still taken"
		# run directly (not under timeout(1)) so that UAS_PID is sipp's own
		sipp -sf "$SIPP_DIR/uas.xml" -p "$UAS_PORT" "${SIPP_COMMON[@]}" \
			-stf "$dir/uas.csv" -error_file "$dir/uas.err" -timeout "$((timeout + 5))s" "$ADDR:$PORT" \
			>"$dir/uas.out" 2>&1 &
		UAS_PID=$!
		sleep 0.3
	fi
	c0=$(cpu_ticks)
	t0=$(now)
	if [ "$kind" = register ]; then
		sipp_bounded $((timeout + 5)) -sf "$SIPP_DIR/register.xml" -key upfx "s${rate}r${rep}u" -r "$rate" -m "$n" \
			-p "$GEN_PORT" "${SIPP_COMMON[@]}" -stf "$dir/gen.csv" \
			-error_file "$dir/gen.err" -timeout "${timeout}s" "$ADDR:$PORT" \
			>"$dir/gen.out" 2>&1
		rc=$?
	elif [ "$kind" = auth ]; then
		sipp_bounded $((timeout + 5)) -sf "$SIPP_DIR/register_auth.xml" -inf "$OUT/users.csv" \
			-r "$rate" -m "$n" -p "$GEN_PORT" "${SIPP_COMMON[@]}" -stf "$dir/gen.csv" \
			-error_file "$dir/gen.err" -timeout "${timeout}s" "$ADDR:$PORT" \
			>"$dir/gen.out" 2>&1
		rc=$?
	else
		sipp_bounded $((timeout + 5)) -sf "$SIPP_DIR/uac.xml" -inf "$OUT/callees.csv" -r "$rate" -m "$n" \
			-d "$CALL_HOLD_MS" -p "$GEN_PORT" "${SIPP_COMMON[@]}" -stf "$dir/gen.csv" \
			-error_file "$dir/gen.err" -timeout "${timeout}s" "$ADDR:$PORT" \
			>"$dir/gen.out" 2>&1
		rc=$?
	fi
	t1=$(now)
	sleep 0.3 # the server's last sends and timers of this step
	c1=$(cpu_ticks)
	if [ -n "$UAS_PID" ]; then
		kill -USR1 "$UAS_PID" 2>/dev/null # sipp: quit once its calls are done
		local i
		for ((i = 0; i < 30; i++)); do
			kill -0 "$UAS_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -INT "$UAS_PID" 2>/dev/null # calls left hanging: quit now
		for ((i = 0; i < 30; i++)); do
			kill -0 "$UAS_PID" 2>/dev/null || break
			sleep 0.1
		done
		stop_pid "$UAS_PID" 3
		UAS_PID=
	fi
	proc_snapshot "$dir/procs1"
	b1=$(other_ticks "$dir/procs0" "$dir/procs1" "$dir/other-load.txt")
	rm -f "$dir/procs0" "$dir/procs1" "$dir/times"
	gen_ticks "$dir/times"
	g1=$GEN_TICKS
	# calls lost only because a message overtook another of the same call on
	# its way through the server (180 after 200 at the caller, BYE before ACK
	# at the callee): sipp aborts those as "unexpected message"
	local ooo=0 c
	if [ "$kind" = calls ]; then
		c=$(grep -c "Aborting call on unexpected message.*received 'SIP/2.0 18[0-9] " "$dir/gen.err" 2>/dev/null)
		ooo=$((ooo + ${c:-0}))
		c=$(grep -c "Aborting call on unexpected message.*while expecting 'ACK'.*received 'BYE " "$dir/uas.err" 2>/dev/null)
		ooo=$((ooo + ${c:-0}))
	fi
	# keep error logs bounded: a failing step can log every call
	local f
	for f in "$dir"/*.err; do
		[ -f "$f" ] || continue
		if [ "$(stat -c %s "$f")" -gt 1000000 ]; then
			head -c 1000000 "$f" >"$f.head" && mv "$f.head" "$f"
		fi
	done
	local ok failed retrans uas_failed elapsed ok_in
	ok=$(csv_last "$dir/gen.csv" "SuccessfulCall(C)")
	ok_in=$(csv_ok_by "$dir/gen.csv" $((STEP_SECS + 1)))
	failed=$(csv_last "$dir/gen.csv" "FailedCall(C)")
	retrans=$(csv_last "$dir/gen.csv" "Retransmissions(C)")
	uas_failed=0
	[ "$kind" = calls ] && uas_failed=$(csv_last "$dir/uas.csv" "FailedCall(C)")
	elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	# what sipp used (reaped children of this shell) and what the rest of the
	# machine used meanwhile (processes alive at the end of the step)
	# memory: the sum of PSS, so Kamailio's shared memory counts once
	local rss=0 p
	for p in $SERVER_PIDS; do
		rss=$((rss + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
	done
	echo "kind=$kind rate=$rate secs=$STEP_SECS hz=$HZ rc=$rc n=$n ok=$ok ok_by_step_end=$ok_in failed=$failed uas_failed=$uas_failed out_of_order=$ooo retrans=$retrans elapsed=$elapsed cpu_ticks=$((c1 - c0)) gen_ticks=$((g1 - g0)) other_ticks=$b1 server_pss_kb=$rss" >"$dir/step.txt"
	step_result "$dir"
}

# step_result DIR: DIR/result from DIR/step.txt and sipp's DIR/gen.csv:
#   "offered achieved fail% us/op cpu% ok failed retrans out-of-order% sipp-cpu% other-cpu%"
# achieved = successful calls done within a second of the step's end, over the
# step's length; CPU shares are over the time the load lasted: the step's
# length, or longer when the server fell behind and 99.9 % of the successful
# calls completed later (not counting calls left hanging until sipp's timeout)
step_result() {
	local dir=$1 rate
	rate=$(basename "$dir" | sed -n 's/^r\([0-9]*\)-.*/\1/p')
	awk -F';' -v rate_dir="$rate" -v hz_dflt="$HZ" 'FNR == NR {
			np = split($0, parts, " ")
			for (i = 1; i <= np; i++) { split(parts[i], kv, "="); v[kv[1]] = kv[2] }
			next
		}
		FNR == 1 { for (i = 1; i <= NF; i++) { if ($i == "ElapsedTime(C)") e = i; if ($i == "SuccessfulCall(C)") c = i }; next }
		{ split($e, t, ":"); row_s[++rows] = t[1] * 3600 + t[2] * 60 + t[3]; row_ok[rows] = $c + 0 }
		END {
			rate = ("rate" in v) ? v["rate"] : rate_dir
			hz = ("hz" in v) ? v["hz"] : hz_dflt
			n = v["n"]; ok = v["ok"]; secs = ("secs" in v) ? v["secs"] : n / rate
			done_at = 0   # when 99.9 % of the successful calls were done
			for (i = 1; i <= rows; i++) if (row_ok[i] >= 0.999 * ok) { done_at = row_s[i]; break }
			okin = ("ok_by_step_end" in v) ? v["ok_by_step_end"] : ok
			ooo = v["out_of_order"]; el = v["elapsed"]
			active = done_at; if (active > el) active = el; if (active < secs) active = secs
			bad = n - ok; if (bad < 0) bad = 0
			if (ooo > bad) ooo = bad
			cpu = v["cpu_ticks"] / hz
			printf "%d %.0f %.3f %.1f %.0f %d %d %d %.3f %.0f %.0f\n", rate, okin / secs, 100 * bad / n,
				ok ? 1e6 * cpu / ok : 0, 100 * cpu / active, ok, bad, v["retrans"], 100 * ooo / n,
				100 * v["gen_ticks"] / hz / active, 100 * v["other_ticks"] / hz / active
		}' "$dir/step.txt" "$dir/gen.csv" >"$dir/result"
}

median() { # numbers... -> median
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
		if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# median_row RAMPDIR RATE: "rate achieved fail% us/op cpu% ooo% oth% us/op-of-each-run",
# medians over the runs RAMPDIR/rRATE-*/result
median_row() {
	local dir=$1 rate=$2 f cols=() i
	local -a a=() b=() c=() d=() e=() g=()
	for f in "$dir"/r"$rate"-*/result; do
		[ -s "$f" ] || continue
		read -r -a cols <"$f"
		a+=("${cols[1]}") b+=("${cols[2]}") c+=("${cols[3]}") d+=("${cols[4]}") e+=("${cols[8]}") g+=("${cols[10]}")
	done
	[ ${#a[@]} -gt 0 ] || return 0
	printf '%s %s %s %s %s %s %s %s\n' "$rate" "$(median "${a[@]}")" "$(median "${b[@]}")" \
		"$(median "${c[@]}")" "$(median "${d[@]}")" "$(median "${e[@]}")" "$(median "${g[@]}")" \
		"$(printf '%s,' "${c[@]}" | sed 's/,$//')"
}

# rebuild_tsv RAMPDIR: KIND-NAME.tsv again from the step directories (report mode)
rebuild_tsv() {
	local dir=$1 res=$1.tsv rate f
	: >"$res"
	for f in "$dir"/r*-*/step.txt; do
		[ -f "$f" ] && step_result "$(dirname "$f")"
	done
	for rate in $(ls -d "$dir"/r*-* 2>/dev/null | sed -n 's/.*\/r\([0-9]*\)-[0-9]*$/\1/p' | sort -un); do
		median_row "$dir" "$rate" >>"$res"
	done
	[ -f "$dir/crashed-at" ] && echo "$(cat "$dir/crashed-at") crashed" >>"$res"
	return 0
}

# ramp KIND NAME RATES...: writes $OUT/KIND-NAME.tsv (median row per rate)
ramp() {
	local kind=$1 name=$2
	shift 2
	local dir=$OUT/$kind-$name res=$OUT/$kind-$name.tsv
	mkdir -p "$dir"
	: >"$res"
	start_server "$name" "$dir" || return 1
	if [ "$kind" = calls ]; then
		register_callees "$dir" || {
			stop_server
			return 1
		}
	fi
	if [ "$kind" = auth ]; then
		auth_verify "$dir" || {
			stop_server
			return 1
		}
	fi
	# warm-up, not recorded: first-touch page faults, sipp's start, caches;
	# for auth, long enough that every user has registered once (the steps
	# then refresh bindings that exist, and both servers' files are cached)
	local keep=$STEP_SECS warm=$WARMUP_SECS
	[ "$kind" = auth ] && [ $(((AUTH_USERS + $1 - 1) / $1)) -gt "$warm" ] &&
		warm=$(((AUTH_USERS + $1 - 1) / $1))
	log "$name: warm-up, ${warm}s at $1/s"
	STEP_SECS=$warm
	run_step "$kind" "$1" 0 "$dir/warmup"
	STEP_SECS=$keep
	sleep 1
	local rate rep bad_run=0
	for rate in "$@"; do
		local ach=() fail=() us=() cpu=() ooo=() oth=()
		for ((rep = 1; rep <= REPEAT; rep++)); do
			# every REGISTER leaves a binding for an hour: a long ramp fills the
			# machine (pinhole used about 6 KB per binding, 22 GB after 3.6
			# million), so stop before the kernel's OOM killer picks someone
			local avail
			avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
			if [ "${avail:-0}" -lt "$MIN_FREE_MB" ]; then
				log "$name: ramp stopped before $rate/s: only $avail MB of memory left (BENCH_MIN_FREE_MB=$MIN_FREE_MB)"
				echo "$rate" >"$dir/memory-stop-at"
				break 2
			fi
			if ! kill -0 "$SERVER_PID" 2>/dev/null; then
				log "$name is gone (crashed?) before the $rate/s step; see $dir/server.log"
				tail -20 "$dir/server.log" >&2
				echo "$rate crashed" >>"$res"
				echo "$rate" >"$dir/crashed-at"
				SERVER_PID=
				return 1
			fi
			local _r s_ach s_fail s_us s_cpu s_bad s_rt s_ooo s_gen s_oth
			run_step "$kind" "$rate" "$rep" "$dir/r$rate-$rep"
			read -r _r s_ach s_fail s_us s_cpu _ s_bad s_rt s_ooo s_gen s_oth <"$dir/r$rate-$rep/result"
			ach+=("$s_ach") fail+=("$s_fail") us+=("$s_us") cpu+=("$s_cpu") ooo+=("$s_ooo")
			oth+=("$s_oth")
			log "$kind $name offered $rate/s: achieved $s_ach/s, failed $s_fail % ($s_bad; out of order $s_ooo %), $s_us us/op, server cpu $s_cpu %, sipp cpu $s_gen %, other load $s_oth %, sipp retransmissions $s_rt, server pss $(($(sed -n 's/.*server_pss_kb=\([0-9]*\).*/\1/p' "$dir/r$rate-$rep/step.txt") / 1024)) MB"
			if [ "${name#pinhole}" != "$name" ]; then
				"$PINHOLE" ctl --control "127.0.0.1:$CTL_PORT" counters \
					>"$dir/r$rate-$rep/counters.json" 2>&1 || true
			fi
			sleep 1
		done
		local m_ach m_fail m_ooo
		m_ach=$(median "${ach[@]}")
		m_fail=$(median "${fail[@]}")
		m_ooo=$(median "${ooo[@]}")
		median_row "$dir" "$rate" >>"$res"
		# the ramp goes on while the server keeps up; losses to reordering alone
		# (Kamailio's, at any rate) do not stop it, they are reported
		if awk -v r="$rate" -v a="$m_ach" -v f="$m_fail" -v o="$m_ooo" 'BEGIN { exit !(f - o < 0.1 && a >= 0.95 * r) }'; then
			bad_run=0
		else
			bad_run=$((bad_run + 1))
			if [ $bad_run -ge 2 ] || awk -v f="$m_fail" -v o="$m_ooo" 'BEGIN { exit !(f - o > 5) }'; then
				log "$name: ramp ends at $rate/s (not sustained)"
				break
			fi
		fi
	done
	stop_server
}

# ---- report --------------------------------------------------------------------

# table TITLE UNIT KIND A B: A and B are result names (tsv files under $OUT)
table() {
	local title=$1 unit=$2 kind=$3 srv_a=$4 srv_b=$5
	local fa=$OUT/$kind-$srv_a.tsv fb=$OUT/$kind-$srv_b.tsv
	[ -f "$fa" ] || fa=/dev/null
	[ -f "$fb" ] || fb=/dev/null
	echo
	echo "== $title =="
	awk -v A="$srv_a" -v B="$srv_b" -v unit="$unit" -v steps="$STEP_SECS" -v rep="$REPEAT" -v kind="$kind" '
	function sus(r, ach, f) { return f != "" && f + 0 < 0.1 && ach + 0 >= 0.95 * r }
	function blk(r, x, f, o, u, c, h) {
		if (!(r in x)) return sprintf("%9s %7s %6s %8s %5s %5s", "-", "-", "-", "-", "-", "-")
		if (x[r] == "crashed") return sprintf("%-44s", "CRASHED")
		return sprintf("%9s %7s %6s %8s %5s %5s", x[r], f[r], o[r], u[r], c[r], h[r])
	}
	FNR == 1 { file++ }
	file == 1 { rates[$1] = 1; aa[$1] = $2; af[$1] = $3; au[$1] = $4; ac[$1] = $5; ao[$1] = $6; ah[$1] = $7; next }
	file == 2 { rates[$1] = 1; ba[$1] = $2; bf[$1] = $3; bu[$1] = $4; bc[$1] = $5; bo[$1] = $6; bh[$1] = $7; next }
	END {
		n = 0; for (r in rates) list[++n] = r + 0
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (list[j] < list[i]) { t = list[i]; list[i] = list[j]; list[j] = t }
		printf "%s/s offered, %d s per step, median of %d run(s). fail%% = offered %ss not\n", unit, steps, rep, unit
		printf "successful; ooo%% = the part of them lost to a message of the call overtaking another\n"
		printf "(180 after 200, BYE before ACK); us/op = server CPU (user+sys) per successful %s;\n", unit
		printf "cpu%% = server CPU in %% of one core over the step length; oth%% = CPU used meanwhile\n"
		printf "by neither the server nor sipp (other work on the machine), in %% of one core.\n\n"
		printf "%8s | %-44s | %-44s | %s\n", "", A, B, "ratio A/B"
		printf "%8s | %9s %7s %6s %8s %5s %5s | %9s %7s %6s %8s %5s %5s | %6s %6s\n", "offered", "achieved", "fail%", "ooo%", "us/op", "cpu%", "oth%", "achieved", "fail%", "ooo%", "us/op", "cpu%", "oth%", "rate", "us/op"
		bestA = bestB = both = 0; lbestA = lbestB = lboth = 0
		for (i = 1; i <= n; i++) {
			r = list[i]
			hA = (r in aa) && aa[r] != "crashed"; hB = (r in ba) && ba[r] != "crashed"
			okA = hA && sus(r, aa[r], af[r]); okB = hB && sus(r, ba[r], bf[r])
			lokA = hA && sus(r, aa[r], af[r] - ao[r]); lokB = hB && sus(r, ba[r], bf[r] - bo[r])
			rr = (hA && hB && ba[r] > 0) ? sprintf("%6.2f", aa[r] / ba[r]) : sprintf("%6s", "-")
			ru = (hA && hB && bu[r] > 0) ? sprintf("%6.2f", au[r] / bu[r]) : sprintf("%6s", "-")
			printf "%8d | %s%s| %s%s| %s %s\n", r, blk(r, aa, af, ao, au, ac, ah), okA ? " " : "*", blk(r, ba, bf, bo, bu, bc, bh), okB ? " " : "*", rr, ru
			if (okA && r > bestA) bestA = r
			if (okB && r > bestB) bestB = r
			if (okA && okB && r > both) both = r
			if (lokA && r > lbestA) lbestA = r
			if (lokB && r > lbestB) lbestB = r
			if (lokA && lokB && r > lboth) lboth = r
		}
		printf "\n* = not sustained: fail >= 0.1 %% or achieved < 95 %% of offered\n"
		printf "highest sustained offered rate: %s %d/s, %s %d/s", A, bestA, B, bestB
		if (bestB > 0) printf ", ratio %.2f", bestA / bestB
		printf "\n"
		if (both > 0)
			printf "CPU per %s at %d/s (highest load both sustained): %s %s us, %s %s us, ratio %.2f\n", unit, both, A, au[both], B, bu[both], (bu[both] > 0 ? au[both] / bu[both] : 0)
		if (kind == "calls") {
			printf "not counting out-of-order losses: highest sustained %s %d/s, %s %d/s", A, lbestA, B, lbestB
			if (lbestB > 0) printf ", ratio %.2f", lbestA / lbestB
			printf "\n"
			if (lboth > 0)
				printf "  CPU per %s at %d/s: %s %s us, %s %s us, ratio %.2f\n", unit, lboth, A, au[lboth], B, bu[lboth], (bu[lboth] > 0 ? au[lboth] / bu[lboth] : 0)
		}
	}' "$fa" "$fb"
}

# ---- main ----------------------------------------------------------------------

print_report() { # the tables, from the .tsv files under $OUT
	cat "$OUT/env.txt"
	[ -f "$OUT/load-after.txt" ] && cat "$OUT/load-after.txt"
	if [ -f "$OUT/register-pinhole-mem.tsv" ] || [ -f "$OUT/register-kamailio.tsv" ]; then
		table "REGISTER, unique users, pinhole in-memory store vs Kamailio usrloc db_mode 0" REGISTER register pinhole-mem kamailio
		# a run without the SQLite store (BENCH_STORES=mem) has no table for it
		if [ -f "$OUT/register-pinhole-sqlite.tsv" ] || [ ! -f "$OUT/register-pinhole-mem.tsv" ]; then
			table "REGISTER, unique users, pinhole SQLite store (sync=$SQLITE_SYNC) vs Kamailio usrloc db_mode 0" REGISTER register pinhole-sqlite kamailio
		fi
	fi
	if [ -f "$OUT/calls-pinhole-mem.tsv" ] || [ -f "$OUT/calls-kamailio.tsv" ]; then
		table "Calls (INVITE/100/180/200/ACK/BYE/200 through the proxy)" call calls pinhole-mem kamailio
	fi
	[ -f "$OUT/auth-pinhole-mem-auth.tsv" ] &&
		table "Authenticated REGISTER (REGISTER, 401, REGISTER with digest MD5, 200), pinhole memory store + users on SQLite vs Kamailio usrloc in memory + auth_db on SQLite (like for like)" "auth REGISTER" auth pinhole-mem-auth kamailio-auth
	local st
	for st in full normal; do
		[ -f "$OUT/auth-pinhole-sqlite-$st.tsv" ] || continue
		table "Authenticated REGISTER (REGISTER, 401, REGISTER with digest MD5, 200), pinhole SQLite store sync=$st vs Kamailio usrloc in memory + auth_db on SQLite" "auth REGISTER" auth "pinhole-sqlite-$st" kamailio-auth
	done
	if [ ! -f "$OUT/auth-pinhole-mem-auth.tsv" ] && [ ! -f "$OUT/auth-pinhole-sqlite-full.tsv" ] &&
		[ ! -f "$OUT/auth-pinhole-sqlite-normal.tsv" ] &&
		[ -f "$OUT/auth-kamailio-auth.tsv" ]; then
		table "Authenticated REGISTER, Kamailio usrloc in memory + auth_db on SQLite" "auth REGISTER" auth none kamailio-auth
	fi
}

if [ "$MODE" = report ]; then
	trap - EXIT
	STEP_SECS=$(sed -n 's/^steps: \([0-9]*\)s x \([0-9]*\).*/\1/p' "$OUT/env.txt")
	REPEAT=$(sed -n 's/^steps: \([0-9]*\)s x \([0-9]*\).*/\2/p' "$OUT/env.txt")
	SQLITE_SYNC=$(sed -n 's/^sqlite sync: //p' "$OUT/env.txt")
	SQLITE_SYNC=${SQLITE_SYNC:-full}
	for d in "$OUT"/register-* "$OUT"/calls-* "$OUT"/auth-*; do
		[ -d "$d" ] && rebuild_tsv "$d"
	done
	print_report | tee "$OUT/report.txt"
	exit 0
fi

log "results and logs in $OUT"
{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cpus, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	if [ -n "${PINHOLE:-}" ]; then
		echo "pinhole: $PINHOLE ($("$PINHOLE" version 2>/dev/null || true)), built $(date -r "$PINHOLE" -Is)"
		echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain -- src 2>/dev/null | grep -q . && echo ' + uncommitted changes under src/ (now)')"
	fi
	echo "kamailio: $("$KAMAILIO" -v 2>/dev/null | head -1)"
	echo "sipp: $(sipp -v 2>/dev/null | grep -m1 SIPp | sed 's/^ *//')"
	echo "steps: ${STEP_SECS}s x $REPEAT; register ramp: $REG_RATES; call ramp: $CALL_RATES"
	echo "sqlite sync: $SQLITE_SYNC"
	[ "$MODE" = auth ] && echo "auth: $AUTH_USERS users, ramp: $AUTH_RATES; servers: $AUTH_SERVERS"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

has() { case " $SERVERS " in *" $1 "*) return 0 ;; esac; return 1; }

if [ "$MODE" = register ] || [ "$MODE" = all ]; then
	# shellcheck disable=SC2086
	{
		for st in $STORES; do
			has pinhole && ramp register "pinhole-$st" $REG_RATES
		done
		has kamailio && ramp register kamailio $REG_RATES
	}
fi
if [ "$MODE" = calls ] || [ "$MODE" = all ]; then
	{
		echo SEQUENTIAL
		for ((i = 1; i <= CALLEES; i++)); do echo "callee$i"; done
	} >"$OUT/callees.csv"
	# shellcheck disable=SC2086
	{
		has pinhole && ramp calls pinhole-mem $CALL_RATES
		has kamailio && ramp calls kamailio $CALL_RATES
	}
fi

if [ "$MODE" = auth ]; then
	provision_users || {
		log "could not provision the users"
		exit 1
	}
	# shellcheck disable=SC2086
	for s in $AUTH_SERVERS; do
		ramp auth "$s" $AUTH_RATES
	done
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/load-after.txt"
print_report | tee "$OUT/report.txt"
log "report: $OUT/report.txt"
