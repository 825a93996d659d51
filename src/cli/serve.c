/* pinhole serve: builds the roles its config enables and runs them until SIGINT/SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ctl/ctl.h"
#include "echo/echo.h"
#include "edge/edge.h"
#include "proxy/proxy.h"
#include "relay/relay.h"
#include "auth/auth.h"
#include "registrar/registrar.h"
#include "store/store.h"
#include "stund/stund.h"
#include "turn/turn.h"

static const struct conf_key log_conf_keys[] = {
	{"log", "level", CONF_ENUM, "info", 0, 0, "error|warn|info|debug", "least severe level logged"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

const struct conf_key *const cli_conf_tables[] = {
    edge_conf_keys,	   edge_tls_conf_keys,
    proxy_conf_keys,	   proxy_upstream_conf_keys,
    registrar_conf_keys,   auth_conf_keys,
    relay_conf_keys,	   stund_conf_keys,
    turn_conf_keys,	   ctl_conf_keys,
    echo_conf_keys,	   log_conf_keys,
    cli_process_conf_keys, NULL,
};

struct server {
	struct conf *conf;
	struct store *store;
	struct store_cred *creds;
	struct net *net;
	struct edge *edge;
	struct registrar *reg;
	struct proxy *proxy;
	struct stund *stund;
	struct turn *turn;
	struct stund_limiter stun_lim; /* the SIP ports' and 3478's, shared */
	struct relay *relay;
	struct echo *echo;
	struct ctl *ctl;
};

static int route_registrations(const char *query, struct buf *out, const char **ctype, void *arg)
{
	struct server *s = arg;
	if (strstr(query, "format=text")) {
		*ctype = "text/plain";
		return registrar_dump_text(s->reg, out) ? 500 : 200;
	}
	return registrar_dump_json(s->reg, out) ? 500 : 200;
}

static int route_flows(const char *query, struct buf *out, const char **ctype, void *arg)
{
	struct server *s = arg;
	struct edge_flows *fl = edge_flows(s->edge);
	if (strstr(query, "format=text")) {
		*ctype = "text/plain";
		return edge_flows_dump_text(fl, time_mono_ms(), out) ? 500 : 200;
	}
	return edge_flows_dump_json(fl, time_mono_ms(), out) ? 500 : 200;
}

/* The in-process relay's live calls with their media evidence (ctl calls). */
static int route_calls(const char *query, struct buf *out, const char **ctype, void *arg)
{
	struct server *s = arg;
	bool text = strstr(query, "format=text") != NULL;
	if (text)
		*ctype = "text/plain";
	return relay_dump(s->relay, !text, 1000, out) ? 500 : 200;
}

static int route_allocations(const char *query, struct buf *out, const char **ctype, void *arg)
{
	struct server *s = arg;
	if (strstr(query, "format=text")) {
		*ctype = "text/plain";
		return turn_dump_text(s->turn, out) ? 500 : 200;
	}
	return turn_dump_json(s->turn, out) ? 500 : 200;
}

static void refresh_gauges(struct server *s);

static int route_counters(const char *query, struct buf *out, const char **ctype, void *arg)
{
	(void)query;
	(void)ctype;
	refresh_gauges(arg);
	metrics_write_json(out);
	buf_append_cstr(out, "\n");
	return 200;
}

static int route_metrics(const char *query, struct buf *out, const char **ctype, void *arg)
{
	(void)query;
	*ctype = "text/plain; version=0.0.4";
	refresh_gauges(arg);
	metrics_write_prometheus(out);
	return 200;
}

static struct metric m_udp_oversize = {.name = "net_udp_oversize_total",
				       .help = "datagrams over [sip] max_message, dropped"};
static struct metric m_udp_tx_errors = {
    .name = "net_udp_send_errors_total",
    .help = "datagrams the kernel refused when a worker's queue was sent (no route, full buffer)"};
static struct metric m_steered = {
    .name = "sip_steered_total",
    .help = "UDP datagrams the kernel gave to their Call-ID's worker ([sip] steering)"};
static struct metric m_steer_left = {
    .name = "sip_steer_default_total",
    .help = "UDP datagrams without a Call-ID the steering program could find"};
static struct metric m_tcp_open = {.name = "net_tcp_connections", .help = "open TCP connections",
				   .gauge = true};
static struct metric m_tcp_refused = {.name = "net_tcp_refused_total",
				      .help = "TCP connections refused at tcp_max_connections"};
static struct metric m_tcp_closed = {.name = "net_tcp_timeout_closed_total",
				     .help = "TCP connections closed idle or without a message"};
static struct metric m_tcp_refused_addr = {
    .name = "net_tcp_refused_per_address_total",
    .help = "TCP connections refused at tcp_max_connections_per_address"};
static struct metric m_tcp_slow = {.name = "net_tcp_slow_reader_closed_total",
				   .help = "TCP connections closed with more than tcp_max_queue unsent"};
static struct metric m_tcp_buffered = {.name = "net_tcp_buffered_bytes",
				       .help = "bytes of TCP input and output buffers held",
				       .gauge = true};
static struct metric m_rl_evictions = {
    .name = "sip_rate_limit_evictions_total",
    .help = "sources whose unfull bucket gave way to a new source ([sip] rate_limit_sources too small)"};
static struct metric m_st_open = {.name = "sip_transactions", .help = "transactions held",
				   .labels = "table=\"server\"", .gauge = true};
static struct metric m_ct_open = {.name = "sip_transactions", .help = "transactions held",
				   .labels = "table=\"client\"", .gauge = true};
static struct metric m_tcp_broken = {.name = "net_tcp_broken_total",
				     .help = "TCP connections closed for bad framing or size"};
static struct metric m_tcp_connects = {
    .name = "net_tcp_connects_total",
    .help = "outgoing TCP connection attempts (to next hops; never toward a phone)"};
static struct metric m_tcp_connect_failed = {
    .name = "net_tcp_connect_failures_total",
    .help = "outgoing TCP connects refused, unreachable or timed out (tcp_connect_timeout)"};
static struct metric m_tcp_connect_limited = {
    .name = "net_tcp_connects_limited_total",
    .help = "outgoing TCP connects not attempted: tcp_max_connecting, tcp_max_connections or "
	    "tcp_max_connections_per_address reached"};
#define TLS_FAIL(c, h) {.name = "tls_handshake_failures_total", .help = h, .labels = "cause=\"" c "\""}
static struct metric m_tls_fail[5] = {
    TLS_FAIL("plaintext", "failed TLS handshakes, by cause"),
    TLS_FAIL("timeout", "failed TLS handshakes, by cause"),
    TLS_FAIL("certificate", "failed TLS handshakes, by cause"),
    TLS_FAIL("protocol", "failed TLS handshakes, by cause"),
    TLS_FAIL("closed", "failed TLS handshakes, by cause"),
};
static struct metric m_tls_ok = {.name = "tls_handshakes_total",
				 .help = "TLS handshakes completed (both directions)"};
static struct metric m_tls_resumed = {.name = "tls_handshakes_resumed_total",
				      .help = "of those: sessions resumed (tickets)"};
static struct metric m_tls_limited = {
    .name = "tls_handshakes_limited_total",
    .help = "TLS connections closed at accept: [tls] max_handshakes in progress"};
static struct metric m_tls_sessions = {
    .name = "tls_client_sessions",
    .help = "sessions kept to resume outgoing TLS connections (one per next hop, at most 64)",
    .gauge = true};
static struct metric m_tls_sessions_evicted = {
    .name = "tls_client_sessions_evicted_total",
    .help = "kept sessions that gave way to another next hop's (the oldest goes)"};
static struct metric m_tls_handshaking = {.name = "tls_handshakes_in_progress",
					  .help = "incoming TLS handshakes now", .gauge = true};
static struct metric m_tls_expiry = {
    .name = "tls_certificate_expiry_seconds",
    .help = "seconds until the first of the [tls] certificates expires (negative: expired)",
    .gauge = true};
static struct metric m_tls_parked = {
    .name = "tls_parked",
    .help = "TLS 1.3 connections parked now: OpenSSL's state freed, pinhole's record layer "
	    "runs them ([tls] park)",
    .gauge = true};
static struct metric m_tls_parked_total = {.name = "tls_parked_total",
					   .help = "TLS connections parked"};
static struct metric m_tls_park_skipped = {
    .name = "tls_park_skipped_total",
    .help = "TLS 1.3 connections left on OpenSSL: a KeyUpdate before parking, or their "
	    "sequence numbers not found within the bound"};
#define TLS_PARKED_CLOSED(c)                                                                       \
	{.name = "tls_parked_closed_total",                                                        \
	 .help = "parked TLS connections closed on bad input, by cause",                           \
	 .labels = "cause=\"" c "\""}
static struct metric m_tls_parked_closed[3] = {
    TLS_PARKED_CLOSED("decrypt"),
    TLS_PARKED_CLOSED("protocol"),
    TLS_PARKED_CLOSED("alert"),
};
static struct metric m_tcp_connecting = {.name = "net_tcp_connecting",
					 .help = "outgoing TCP connects in progress",
					 .gauge = true};

static void refresh_gauges(struct server *s)
{
	if (!s->net)
		return;
	struct net_stats st;
	net_stats_get(s->net, &st);
	m_udp_oversize.value = st.udp_oversize;
	m_udp_tx_errors.value = st.udp_tx_errors;
	if (s->edge) {
		int64_t steered, left;
		edge_steer_counts(s->edge, &steered, &left);
		m_steered.value = steered;
		m_steer_left.value = left;
		int64_t limited, evictions;
		edge_limit_counts(s->edge, &limited, &evictions);
		m_rl_evictions.value = evictions;
		int64_t n_st, n_ct;
		edge_tsx_counts(s->edge, &n_st, &n_ct);
		m_st_open.value = n_st;
		m_ct_open.value = n_ct;
	}
	m_tcp_open.value = st.tcp_open;
	m_tcp_refused.value = st.tcp_refused;
	m_tcp_closed.value = st.tcp_idle_closed;
	m_tcp_broken.value = st.tcp_broken + st.tcp_oversize;
	m_tcp_refused_addr.value = st.tcp_refused_addr;
	m_tcp_slow.value = st.tcp_slow_closed;
	m_tcp_buffered.value = st.tcp_buffered;
	m_tcp_connects.value = st.tcp_connects;
	m_tcp_connect_failed.value = st.tcp_connect_failed;
	m_tcp_connect_limited.value = st.tcp_connect_limited;
	m_tcp_connecting.value = st.tcp_connecting;
	struct net_tls_stats ts;
	net_tls_stats_get(s->net, &ts);
	m_tls_fail[0].value = ts.failed_plaintext;
	m_tls_fail[1].value = ts.failed_timeout;
	m_tls_fail[2].value = ts.failed_verify;
	m_tls_fail[3].value = ts.failed_protocol;
	m_tls_fail[4].value = ts.failed_closed;
	m_tls_ok.value = ts.handshakes;
	m_tls_resumed.value = ts.resumed;
	m_tls_limited.value = ts.limited;
	m_tls_handshaking.value = ts.handshaking;
	m_tls_sessions.value = ts.sessions;
	m_tls_sessions_evicted.value = ts.sessions_evicted;
	m_tls_expiry.value = ts.cert_expiry_s;
	m_tls_parked.value = ts.parked;
	m_tls_parked_total.value = ts.parked_total;
	m_tls_park_skipped.value = ts.park_skipped;
	m_tls_parked_closed[0].value = ts.parked_closed_decrypt;
	m_tls_parked_closed[1].value = ts.parked_closed_protocol;
	m_tls_parked_closed[2].value = ts.parked_closed_alert;
}

/* [process] user: root given up now that every role has started. */
static int drop_privileges(const struct cli_privs *p)
{
	char err[256];
	int e = cli_privs_drop(p, err, sizeof err);
	if (e)
		LOG_E("serve", "%s: stopping", err);
	else if (p->on)
		LOG_I("serve", "running as user %s (uid %u, gid %u), no capabilities", p->user,
		      (unsigned)p->uid, (unsigned)p->gid);
	return e;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pinhole serve [--config FILE] [--set section.key=value]... [--help-config]\n\n"
		   "With no config every role runs on its defaults: SIP edge, registrar and proxy\n"
		   "on udp/tcp 5060, STUN on 3478, bindings in ./pinhole.db, control on\n"
		   "127.0.0.1:5080. A config file turns on only the roles whose section it has.\n");
}

static int apply_set(struct conf *c, const char *arg)
{
	char sec[64], key[64];
	const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
	if (!dot || !eq || dot > eq || (size_t)(dot - arg) >= sizeof sec ||
	    (size_t)(eq - dot - 1) >= sizeof key) {
		fprintf(stderr, "pinhole serve: --set wants section.key=value, got \"%s\"\n", arg);
		return EINVAL;
	}
	snprintf(sec, sizeof sec, "%.*s", (int)(dot - arg), arg);
	snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
	char err[256];
	if (conf_set(c, sec, key, eq + 1, err, sizeof err)) {
		fprintf(stderr, "pinhole serve: %s\n", err);
		return EINVAL;
	}
	conf_section_enable(c, sec);
	return 0;
}

static void server_free(struct server *s)
{
	ctl_free(s->ctl);
	if (s->net)
		net_stop(s->net);
	stund_free(s->stund);
	turn_free(s->turn);
	echo_free(s->echo);
	proxy_free(s->proxy); /* its relayctl before the relay */
	relay_free(s->relay);
	registrar_free(s->reg);
	edge_free(s->edge);
	stund_limiter_free(&s->stun_lim);
	net_free(s->net);
	store_free(s->store);
	store_cred_free(s->creds);
	conf_free(s->conf);
}

static void kick_store(void *arg)
{
	store_kick(arg);
}

static int start_sip(struct server *s)
{
	struct conf *c = s->conf;
	/* an edge in front of a registrar elsewhere keeps no bindings and no
	 * users: an empty store in memory, [store] unread */
	bool edge_only = proxy_conf_edge_only(c);
	const char *path = edge_only ? "" : conf_str(c, "store", "path");
	struct store_conf sc = {
		.path = path[0] ? path : NULL,
		.sync = strcmp(conf_str(c, "store", "sync"), "normal") == 0 ? STORE_SYNC_NORMAL
									   : STORE_SYNC_FULL,
		.max_per_aor = (unsigned)conf_int(c, "registrar", "max_contacts"),
		.max_bindings = (size_t)conf_int(c, "registrar", "max_bindings"),
		.kick_explicit = true,
	};
	int err = store_alloc(&s->store, &sc);
	if (err) {
		LOG_E("serve", "store %s: %s", path, strerror(err));
		return err;
	}
	/* users live in [store] users, else the same file; `pinhole user`
	 * changes show within a second */
	const char *users = edge_only ? "" : conf_str(c, "store", "users");
	if (!users[0])
		users = path;
	err = users[0] ? store_cred_open(&s->creds, users, 1000) : store_cred_alloc(&s->creds);
	if (err) {
		LOG_E("serve", "credentials in %s: %s", users, strerror(err));
		return err;
	}
	struct net_conf nc = {
		.workers = (unsigned)conf_int(c, "sip", "workers"),
		.max_msg = (size_t)conf_int(c, "sip", "max_message"),
		.tcp_max_conns = (unsigned)conf_int(c, "sip", "tcp_max_connections"),
		.tcp_max_conns_per_addr =
		    (unsigned)conf_int(c, "sip", "tcp_max_connections_per_address"),
		.tcp_max_queue = (size_t)conf_int(c, "sip", "tcp_max_queue"),
		.tcp_stall_s = (unsigned)conf_int(c, "sip", "tcp_write_timeout"),
		.tcp_idle_s = (unsigned)conf_int(c, "sip", "tcp_idle_timeout"),
		.tcp_handshake_s = (unsigned)conf_int(c, "sip", "tcp_first_message_timeout"),
		.tcp_connect_s = (unsigned)conf_int(c, "sip", "tcp_connect_timeout"),
		.tcp_max_connecting = (unsigned)conf_int(c, "sip", "tcp_max_connecting"),
		.ws_ping_s = (unsigned)conf_int(c, "sip", "ws_ping_interval"),
		.ws_pong_s = (unsigned)conf_int(c, "sip", "ws_pong_timeout"),
	};
	if ((err = net_alloc(&s->net, &nc)))
		return err;
	if ((err = edge_alloc(&s->edge, s->net, c)))
		return err;
	/* STUN on the SIP ports spends the same per-source budget as 3478 */
	if ((err = stund_limiter_init_conf(&s->stun_lim, c)))
		return err;
	edge_set_stun(s->edge, stund_flow_answer, &s->stun_lim);
	if ((err = registrar_alloc(&s->reg, s->edge, s->store, s->creds, c)))
		return err;
	if (conf_section_present(c, "relay") && (err = relay_start(&s->relay, s->net, c)))
		return err;
	if ((err = proxy_alloc(&s->proxy, s->edge, s->reg, s->relay, c)))
		return err;
	/* [echo]: off unless the config has the section (an open echo is a call
	 * anyone may place, costing ports and CPU) */
	if (conf_section_present(c, "echo") && !edge_only) {
		if ((err = echo_start(&s->echo, s->net, c)))
			return err;
		proxy_set_service(s->proxy, echo_route, s->echo);
	} else if (conf_section_present(c, "echo")) {
		LOG_W("serve", "[echo] is ignored in an edge-only process: run it on the registrar");
	}
	/* group commit: the REGISTERs of one loop turn share one transaction */
	for (unsigned i = 0; i < net_worker_count(s->net); i++)
		loop_on_turn_end(worker_loop(net_worker(s->net, i)), kick_store, s->store);
	metric_register(&m_udp_oversize);
	metric_register(&m_udp_tx_errors);
	metric_register(&m_steered);
	metric_register(&m_steer_left);
	metric_register(&m_tcp_open);
	metric_register(&m_tcp_refused);
	metric_register(&m_tcp_closed);
	metric_register(&m_tcp_broken);
	metric_register(&m_tcp_refused_addr);
	metric_register(&m_tcp_slow);
	metric_register(&m_tcp_buffered);
	metric_register(&m_tcp_connects);
	metric_register(&m_tcp_connect_failed);
	metric_register(&m_tcp_connect_limited);
	metric_register(&m_tcp_connecting);
	for (size_t i = 0; i < ARRAY_SIZE(m_tls_fail); i++)
		metric_register(&m_tls_fail[i]);
	metric_register(&m_tls_ok);
	metric_register(&m_tls_resumed);
	metric_register(&m_tls_limited);
	metric_register(&m_tls_handshaking);
	metric_register(&m_tls_sessions);
	metric_register(&m_tls_sessions_evicted);
	metric_register(&m_tls_parked);
	metric_register(&m_tls_parked_total);
	metric_register(&m_tls_park_skipped);
	for (size_t i = 0; i < ARRAY_SIZE(m_tls_parked_closed); i++)
		metric_register(&m_tls_parked_closed[i]);
	if (net_tls_can_listen(s->net))
		metric_register(&m_tls_expiry);
	metric_register(&m_rl_evictions);
	metric_register(&m_st_open);
	metric_register(&m_ct_open);
	return 0;
}

int cli_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"help-config", no_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct server s;
	memset(&s, 0, sizeof s);
	if (conf_alloc(&s.conf, cli_conf_tables)) {
		fprintf(stderr, "pinhole serve: out of memory\n");
		return 1;
	}
	const char *config = NULL;
	const char *sets[32];
	size_t n_sets = 0;
	int o;
	while ((o = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 's':
			if (n_sets < ARRAY_SIZE(sets))
				sets[n_sets++] = optarg;
			break;
		case 'H': {
			struct buf b;
			buf_init(&b);
			conf_write_help(cli_conf_tables, &b);
			fwrite(b.data, 1, b.len, stdout);
			buf_free(&b);
			conf_free(s.conf);
			return 0;
		}
		case 'h':
			usage(stdout);
			conf_free(s.conf);
			return 0;
		default:
			usage(stderr);
			conf_free(s.conf);
			return 2;
		}
	}
	char err[512];
	if (config && conf_load_file(s.conf, config, err, sizeof err)) {
		fprintf(stderr, "pinhole serve: %s\n", err);
		conf_free(s.conf);
		return 2;
	}
	for (size_t i = 0; i < n_sets; i++) {
		if (apply_set(s.conf, sets[i])) {
			conf_free(s.conf);
			return 2;
		}
	}
	if (!config) { /* the embedded default: every role on */
		conf_section_enable(s.conf, "sip");
		conf_section_enable(s.conf, "stun");
		conf_section_enable(s.conf, "relay");
		conf_section_enable(s.conf, "control");
	}
	enum log_level lvl = LOG_INFO;
	log_level_parse(conf_str(s.conf, "log", "level"), &lvl);
	log_set_level(lvl);
	struct cli_privs privs;
	if (cli_privs_resolve(s.conf, &privs, err, sizeof err)) {
		fprintf(stderr, "pinhole serve: %s\n", err);
		conf_free(s.conf);
		return 2;
	}

	/* signals are taken by sigwait below; threads inherit the mask */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	bool sip = conf_section_present(s.conf, "sip");
	if (sip && start_sip(&s))
		goto out;
	if (!sip && (conf_section_present(s.conf, "stun") || conf_section_present(s.conf, "relay"))) {
		struct net_conf nc = {.workers = (unsigned)conf_int(s.conf, "sip", "workers")};
		if (net_alloc(&s.net, &nc))
			goto out;
	}
	if (conf_section_present(s.conf, "stun") && stund_start(&s.stund, s.net, s.conf,
							    s.edge ? &s.stun_lim : NULL))
		goto out;
	if (!sip && conf_section_present(s.conf, "relay") && relay_start(&s.relay, s.net, s.conf))
		goto out; /* a relay-only host, driven over ng */
	/* [turn]: off unless the config has the section; users from the store
	 * (the SIP side's, else [store] users or path opened here) */
	if (conf_section_present(s.conf, "turn")) {
		if (!s.creds) {
			const char *users = conf_str(s.conf, "store", "users");
			if (!users[0])
				users = conf_str(s.conf, "store", "path");
			if (users[0] ? store_cred_open(&s.creds, users, 1000)
				     : store_cred_alloc(&s.creds)) {
				LOG_E("serve", "credentials in %s: cannot open", users);
				goto out;
			}
		}
		if (turn_start(&s.turn, s.conf, s.creds))
			goto out;
	}
	const char *cl = conf_str(s.conf, "control", "listen");
	if (conf_section_present(s.conf, "control") && cl[0]) {
		if (ctl_alloc(&s.ctl, s.conf))
			goto out;
		if (s.reg)
			ctl_route(s.ctl, "/registrations", route_registrations, &s);
		if (s.edge)
			ctl_route(s.ctl, "/flows", route_flows, &s);
		if (s.relay)
			ctl_route(s.ctl, "/calls", route_calls, &s);
		if (s.turn)
			ctl_route(s.ctl, "/allocations", route_allocations, &s);
		ctl_route(s.ctl, "/counters", route_counters, &s);
		ctl_route(s.ctl, "/metrics", route_metrics, &s);
	}
	if (!s.net && s.turn) {
		/* a TURN-only host: the control endpoint and signals need no workers */
		if (s.ctl)
			ctl_start(s.ctl);
		if (drop_privileges(&privs))
			goto out;
		LOG_I("serve", "running TURN only%s%s", s.ctl ? ", control on " : "",
		      s.ctl ? cl : "");
		int sig = 0;
		sigwait(&sigs, &sig);
		LOG_I("serve", "signal %d: stopping", sig);
		rc = 0;
		goto out;
	}
	if (!s.net) {
		LOG_E("serve", "no role enabled: the config has none of [sip] [stun] [relay] [turn]");
		goto out;
	}
	if (s.reg)
		registrar_start(s.reg); /* before the workers: see registrar.h */
	if (net_start(s.net)) {
		LOG_E("serve", "cannot start workers");
		goto out;
	}
	if (s.reg) {
		if (!proxy_conf_edge_only(s.conf)) /* an edge's registrar rules are elsewhere */
			registrar_log_rule(s.reg);
	}
	if (s.ctl)
		ctl_start(s.ctl);
	if (drop_privileges(&privs))
		goto out;
	for (unsigned i = 0; s.edge && i < net_listener_count(s.net); i++) {
		char a[NET_ADDR_STRLEN];
		LOG_I("serve", "sip listening on %s:%s",
		      net_transport_name(net_listener(s.net, i)->tp),
		      net_addr_fmt(net_listener_addr(s.net, i), a, sizeof a));
	}
	LOG_I("serve", "running with %u workers%s%s", net_worker_count(s.net),
	      s.ctl ? ", control on " : "", s.ctl ? cl : "");
	int sig = 0;
	sigwait(&sigs, &sig);
	LOG_I("serve", "signal %d: stopping", sig);
	rc = 0;
out:
	server_free(&s);
	return rc;
}
