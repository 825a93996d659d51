# Shared set-up of the TLS benchmarks (run.sh, reg_ab.sh, hold_edges.sh):
# sourced, not run. Each function writes into the bench's output folder.

# tb_gen OUT: builds the generator (tls_bench.c with the light client) as
# OUT/tls_bench.
tb_gen() {
	cc -O2 -Wall -o "$1/tls_bench" "$TB_HERE/tls_bench.c" "$TB_HERE/hs_lite.c" -lssl -lcrypto
}

# tb_certs OUT [ec|rsa]: a root, an intermediate and the server's
# certificate for 127.0.0.1 (ECDSA P-256, certbot's default key since 2.0, or
# RSA-2048 throughout); OUT/cert.pem is the leaf then the intermediate
# (certbot's fullchain.pem), OUT/key.pem its key.
tb_certs() {
	local newkey="-newkey ec -pkeyopt ec_paramgen_curve:P-256"
	[ "${2:-ec}" = rsa ] && newkey="-newkey rsa:2048"
	(
		cd "$1" || exit 1
		openssl req -x509 $newkey -nodes -keyout root.key -out root.pem -days 30 \
			-subj /CN=bench-root -addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=keyCertSign
		openssl req $newkey -nodes -keyout int.key -out int.csr -subj /CN=bench-intermediate
		printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n' >int.ext
		openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 \
			-extfile int.ext -out int.pem
		openssl req $newkey -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >leaf.ext
		openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 30 \
			-extfile leaf.ext -out leaf.pem
		cat leaf.pem int.pem >cert.pem
	) >/dev/null 2>&1 || {
		echo "certificates failed" >&2
		return 1
	}
}

# tb_registrar_conf OUT LISTEN WORKERS CONTROL_PORT: pinhole as the TLS
# registrar of the benches (bindings in memory, open registration, no
# per-address or per-source caps, no server pings, idle connections kept an
# hour), on stdout.
tb_registrar_conf() {
	cat <<EOF
[sip]
listen = $2
workers = $3
tcp_max_connections = 120000
tcp_max_connections_per_address = 0
tcp_idle_timeout = 3600
[tls]
certificate = $1/cert.pem
private_key = $1/key.pem
max_handshakes = 1024
[registrar]
open = yes
max_bindings = 1000000
[outbound]
max_flows_per_source = 0
[keepalive]
interval = 0
[store]
path =
[control]
listen = 127.0.0.1:$4
EOF
}

# tb_kamailio OUT PORT [ARGS...]: starts Kamailio with bench/tls/kamailio.cfg,
# tls: on PORT and tcp: (its WebSocket) on PORT + 1, the certificate of
# tb_certs; its PID in TB_KPID.
tb_kamailio() {
	local out=$1 port=$2
	shift 2
	cat >"$out/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $out/key.pem
certificate = $out/cert.pem
EOF
	"${KAMAILIO:-kamailio}" -f "$TB_HERE/kamailio.cfg" "$@" -A "TLSCFG=\"$out/tls.cfg\"" \
		-A "CTLSOCK=\"unix:$out/kamailio.ctl\"" -l "tls:127.0.0.1:$port" \
		-l "tcp:127.0.0.1:$((port + 1))" -m 4096 -M 64 -x tlsf --atexit=no -DD -E -Y "$out" \
		>"$out/kamailio.log" 2>&1 &
	TB_KPID=$!
}

# tb_pids PID: the process and its children (Kamailio's are all the server).
tb_pids() {
	echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"
}

TB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
