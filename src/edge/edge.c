/* The SIP receive path: STUN and CRLF keepalives, parsing, symmetric response, Call-ID ownership. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

const struct conf_key edge_conf_keys[] = {
	{"sip", "listen", CONF_STR, "udp:0.0.0.0:5060, tcp:0.0.0.0:5060", 0, 0, NULL,
	 "transport:address:port list, transports udp, tcp, tls (port 5061 by default; needs "
	 "[tls] certificate), ws and wss (SIP over WebSocket, RFC 7118; wss needs [tls] "
	 "certificate); IPv6 as udp:[::]:5060"},
	{"sip", "ws_origins", CONF_STR, "", 0, 0, NULL,
	 "Origins a browser may open a ws: connection from, comma-separated and exact "
	 "(\"https://phone.example.org\") or a wildcard for the hosts under a domain, same "
	 "scheme and port (\"https://*.example.org\"), \"*\" = any; empty = any; others get "
	 "403; a client that sends no Origin (not a browser) passes"},
	{"sip", "ws_ping_interval", CONF_INT, "30", 0, 3600, NULL,
	 "seconds of silence on a WebSocket before the server pings it (the flow's keepalive); "
	 "0 = never"},
	{"sip", "ws_pong_timeout", CONF_INT, "10", 1, 600, NULL,
	 "seconds a WebSocket ping may go unanswered before the connection is closed and its "
	 "flow fails"},
	{"sip", "advertise", CONF_STR, "", 0, 0, NULL,
	 "host to put in Via/Record-Route instead of the bound address (1:1 NAT)"},
	{"sip", "domains", CONF_STR, "", 0, 0, NULL,
	 "(read by the registrar and proxy) domains this server is responsible for: host names "
	 "or addresses, comma-separated; empty = its own addresses, host name and advertise"},
	{"sip", "force_rport", CONF_BOOL, "yes", 0, 0, NULL,
	 "answer UDP requests to their source port even without ;rport (RFC 3581)"},
	{"sip", "workers", CONF_INT, "0", 0, 256, NULL, "worker threads; 0 = one per core"},
	{"sip", "max_message", CONF_INT, "65535", 1024, 1048576, NULL,
	 "largest SIP message in bytes; larger ones are dropped and counted"},
	{"sip", "tcp_max_connections", CONF_INT, "10000", 1, 1000000, NULL,
	 "open TCP connections; more are refused and counted"},
	{"sip", "tcp_max_connections_per_address", CONF_INT, "128", 0, 1000000, NULL,
	 "open TCP connections per source (IPv4 address, IPv6 /64); more are refused and "
	 "counted; 0 = no bound but tcp_max_connections"},
	{"sip", "tcp_max_queue", CONF_INT, "131072", 4096, 67108864, NULL,
	 "bytes a TCP connection may have waiting to be sent (at least 2 x max_message); a "
	 "peer that lets more pile up is closed as a slow reader and counted"},
	{"sip", "tcp_write_timeout", CONF_INT, "32", 1, 3600, NULL,
	 "seconds a TCP peer may take none of what waits for it before it is closed as a slow "
	 "reader and counted"},
	{"sip", "tcp_idle_timeout", CONF_INT, "600", 0, 86400, NULL,
	 "seconds before a silent TCP connection is closed; 0 = never"},
	{"sip", "tcp_first_message_timeout", CONF_INT, "10", 0, 3600, NULL,
	 "seconds a new TCP connection has to send a whole message (half-open bound)"},
	{"sip", "tcp_connect_timeout", CONF_INT, "10", 1, 600, NULL,
	 "seconds an outgoing TCP connection (to a transport=tcp next hop) may take to be "
	 "accepted; then it fails, counted, and so does what waited for it"},
	{"sip", "tcp_max_connecting", CONF_INT, "64", 1, 100000, NULL,
	 "outgoing TCP connects in progress at once (they count in tcp_max_connections too); "
	 "a request needing another gets 503, counted"},
	{"sip", "max_server_transactions", CONF_INT, "4000000", 16, 100000000, NULL,
	 "server transactions held (a UDP one lingers 32 s after its answer); new dialogs "
	 "beyond get 503 and are counted, in-dialog requests may use 1/8 more"},
	{"sip", "max_client_transactions", CONF_INT, "200000", 16, 100000000, NULL,
	 "client transactions held (an INVITE may ring 3 minutes); new dialogs beyond get 503, "
	 "in-dialog requests may use 1/8 more"},
	{"sip", "rate_limit", CONF_INT, "100", 0, 1000000, NULL,
	 "SIP messages per second per source (IPv4 address, IPv6 /64), shared by all workers; "
	 "more are dropped silently and counted; 0 = off"},
	{"sip", "rate_limit_burst", CONF_INT, "200", 1, 10000000, NULL,
	 "messages a source may send at once before rate_limit applies"},
	{"sip", "rate_limit_sources", CONF_INT, "65536", 64, 16777216, NULL,
	 "sources the rate limiter tracks at once (~40 bytes each); a new one replaces the "
	 "one with the most tokens left"},
	{"sip", "rate_limit_exempt", CONF_STR, "127.0.0.0/8, ::1/128", 0, 0, NULL,
	 "sources never rate-limited: address/prefix list (trusted peers, gateways)"},
	{"sip", "overload_delay", CONF_INT, "500", 0, 60000, NULL,
	 "ms a request may wait before a worker handles it (kernel receipt to handling); a "
	 "dialog-creating one older than this gets 503, in-dialog ones are still served; 0 = off"},
	{"sip", "overload_queue", CONF_INT, "2048", 16, 1000000, NULL,
	 "messages waiting for one worker from the others; past it dialog-creating requests "
	 "get 503 where they arrive, past 4 times it every message is dropped and counted"},
	{"sip", "retry_after", CONF_INT, "5", 1, 3600, NULL,
	 "seconds in the Retry-After of the 503s that the limits above send"},
	{"sip", "t1", CONF_INT, "500", 50, 10000, NULL, "RFC 3261 T1 in ms (RTT estimate)"},
	{"sip", "timer_c", CONF_INT, "180", 1, 3600, NULL,
	 "RFC 3261 Timer C in seconds: a forwarded INVITE that gets no provisional above 100 "
	 "for this long is cancelled; each one restarts it (16.7 step 2); the RFC wants over 180"},
	{"sip", "flow_key", CONF_STR, "", 0, 0, NULL,
	 "64 hex chars keying flow-token HMACs; empty = random per start"},
	{"sip", "steering", CONF_ENUM, "auto", 0, 0, "auto|on|off",
	 "give each UDP datagram to its Call-ID's worker in the kernel (eBPF sk_reuseport "
	 "program; needs CAP_BPF): auto = when it loads, else workers hand messages on; on = "
	 "fail to start without it"},
	{"outbound", "flow_timer_udp", CONF_INT, "25", 5, 3600, NULL,
	 "Flow-Timer in seconds promised in the 2xx to an outbound REGISTER over UDP: how often "
	 "the phone sends keepalives; below common NAT UDP lifetimes (30 s)"},
	{"outbound", "flow_timer_tcp", CONF_INT, "120", 5, 3600, NULL,
	 "Flow-Timer in seconds promised in the 2xx to an outbound REGISTER over TCP; at most "
	 "4/5 of [sip] tcp_idle_timeout, which would close the connection first"},
	{"outbound", "flow_margin", CONF_INT, "10", 0, 3600, NULL,
	 "seconds a flow's keepalives may be late beyond the Flow-Timer it was promised before "
	 "the flow is failed and its bindings are marked unreachable"},
	{"outbound", "max_flows", CONF_INT, "1000000", 64, 100000000, NULL,
	 "flows watched (about 500 bytes each with its owner, 400 without); a 16th of them may "
	 "belong to no "
	 "binding (keepalives from strangers) and give way oldest first; bound flows never give "
	 "way: past the bound a new one is not watched, and counted"},
	/* read by the proxy (fwd.c); here so that [outbound] prints as one section */
	{"outbound", "failover_timeout", CONF_INT, "2000", 100, 16000, NULL,
	 "ms a request sent over a UDP flow of a phone's instance may go without any answer "
	 "before it is sent over the instance's next flow (RFC 5626 flow failure; only when the "
	 "instance has another flow); kept below half of Timer B (32 x [sip] t1)"},
	/* read by the registrar (flows.c); here so that [outbound] prints as one section */
	{"outbound", "max_flows_per_source", CONF_INT, "64", 0, 1000000, NULL,
	 "outbound bindings (RFC 5626 flows) that phones at one source (IPv4 address, IPv6 "
	 "/64) may hold when this process is their first hop, without digest (no users, open "
	 "mode); a new one beyond gets 403 and is counted, refreshes pass; [proxy] trusted "
	 "sources and authenticated users (bounded by max_contacts) are exempt; 0 = no limit"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct metric edge_m_requests = {.name = "sip_requests_total", .help = "SIP requests received"};
struct metric edge_m_responses[6] = {
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"1xx\""},
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"2xx\""},
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"3xx\""},
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"4xx\""},
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"5xx\""},
	{.name = "sip_responses_total", .help = "SIP responses received", .labels = "class=\"6xx\""},
};
struct metric edge_m_parse_errors = {.name = "sip_parse_errors_total",
				     .help = "malformed SIP messages (answered 4xx or dropped)"};
struct metric edge_m_stun = {.name = "sip_stun_keepalives_total",
			     .help = "STUN requests answered on SIP ports"};
struct metric edge_m_crlf = {.name = "sip_crlf_keepalives_total",
			     .help = "CRLF keepalives received (double-CRLF pings answered)"};
static struct metric m_handoffs = {.name = "sip_worker_handoffs_total",
				   .help = "messages passed on to the worker that owns their Call-ID"};

static int parse_hex_key(const char *s, unsigned char out[32])
{
	if (strlen(s) != 64)
		return EINVAL;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return EINVAL;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* Parses "udp:1.2.3.4:5060, tcp:[::]:5060" and opens each listener. */
static int open_listeners(struct edge *e, const char *spec)
{
	char copy[1024];
	snprintf(copy, sizeof copy, "%s", spec);
	char *save = NULL;
	for (char *item = strtok_r(copy, ", ", &save); item; item = strtok_r(NULL, ", ", &save)) {
		char *colon = strchr(item, ':');
		struct net_listener_conf lc;
		if (!colon || net_transport_parse((struct slice){item, (size_t)(colon - item)},
						  &lc.tp) ||
		    net_addr_parse(colon + 1, lc.tp == NET_TLS ? 5061 : 5060, &lc.addr)) {
			LOG_E("edge", "[sip] listen: cannot parse \"%s\" (want udp:ADDR:PORT)", item);
			return EINVAL;
		}
		int err = net_listen(e->net, &lc, NULL);
		if (err) {
			LOG_E("edge", "[sip] listen %s: %s%s", item, strerror(err),
			      err == EADDRINUSE ? " (another process, or another role of this "
						  "one, holds the port)"
						: "");
			return err;
		}
	}
	return 0;
}

static void edge_recv(struct worker *w, const struct flow *f, const char *data, size_t len,
		      void *arg);

/* The SIP codec's stream framing, handed to the transport: net keeps the
 * state per connection in its own terms, the codec in its own. */
static int edge_frame(struct net_frame_state *nfs, const char *p, size_t l, size_t max,
		      size_t *msglen)
{
	struct sip_frame_state fs = {.scanned = nfs->scanned, .hend = nfs->mark, .cl = nfs->value};
	int err = sip_frame_resume(&fs, p, l, max, msglen);
	nfs->scanned = fs.scanned;
	nfs->mark = fs.hend;
	nfs->value = fs.cl;
	nfs->filler = fs.keepalive;
	return err;
}

static bool is_host_addr(const struct edge *e, const struct net_addr *a)
{
	return e->hostaddrs && net_hostaddrs_has(e->hostaddrs, a);
}

/* The net's connection-closed hook, on the connection's worker. */
static void edge_conn_closed(struct worker *w, const struct flow *f, void *arg)
{
	struct edge *e = arg;
	edge_tsx_conn_closed(e, f->conn_id);
	/* the bindings on it fail now, not at their keepalive deadline */
	edge_flows_conn_closed(e->flows, f->conn_id, loop_now_ms(worker_loop(w)));
	if (e->on_closed)
		e->on_closed(w, f, e->closed_arg);
}

void edge_set_conn_closed(struct edge *e, net_conn_closed_h *h, void *arg)
{
	e->on_closed = h;
	e->closed_arg = arg;
}

int edge_alloc(struct edge **ep, struct net *n, const struct conf *c)
{
	struct edge *e = calloc(1, sizeof *e);
	if (!e)
		return ENOMEM;
	e->net = n;
	e->n_wk = net_worker_count(n);
	e->wk = calloc(e->n_wk, sizeof *e->wk);
	if (!e->wk) {
		free(e);
		return ENOMEM;
	}
	for (unsigned i = 0; i < e->n_wk; i++) {
		e->wk[i].edge = e;
		e->wk[i].w = net_worker(n, i);
		if (edge_ctsx_init(&e->wk[i]) || edge_stsx_init(&e->wk[i])) {
			edge_free(e);
			return ENOMEM;
		}
	}
	e->force_rport = conf_bool(c, "sip", "force_rport");
	snprintf(e->advertise, sizeof e->advertise, "%s", conf_str(c, "sip", "advertise"));
	e->advertise_is_ip = net_addr_parse(e->advertise, 0, &e->advertise_addr) == 0;
	e->t1 = (uint32_t)conf_int(c, "sip", "t1");
	e->t2 = 4000;
	e->t4 = 5000;
	e->timer_c = (uint32_t)conf_int(c, "sip", "timer_c") * 1000;
	const char *key = conf_str(c, "sip", "flow_key");
	if (key[0]) {
		if (parse_hex_key(key, e->flow_key)) {
			LOG_E("edge", "[sip] flow_key: expected 64 hex characters");
			edge_free(e);
			return EINVAL;
		}
	} else {
		rand_bytes(e->flow_key, sizeof e->flow_key);
	}
	if (edge_mac_init(e)) {
		LOG_E("edge", "cannot key the flow-token HMAC");
		edge_free(e);
		return ENOMEM;
	}
	/* a wildcard listener answers on every address of the host, and the
	 * host's addresses change under us (DHCP, VPNs, an operator's ip addr) */
	int err = net_hostaddrs_alloc(&e->hostaddrs);
	if (!err && net_hostaddrs_watch(e->hostaddrs, worker_loop(net_worker(n, 0))))
		LOG_W("edge", "no netlink address events: this host's addresses are read once");
	if (err) {
		LOG_E("edge", "cannot read this host's addresses: %s", strerror(err));
		edge_free(e);
		return err;
	}
	err = edge_limits_init(e, c);
	if (!err)
		err = edge_tls_setup(n, c);
	if (!err)
		err = open_listeners(e, conf_str(c, "sip", "listen"));
	if (!err)
		err = edge_steer_start(e, conf_str(c, "sip", "steering"));
	if (!err)
		err = edge_ws_setup(e, c);
	if (err) {
		edge_free(e);
		return err;
	}
	struct edge_flows_conf fc = {
		.max_flows = (size_t)conf_int(c, "outbound", "max_flows"),
		.margin_s = (unsigned)conf_int(c, "outbound", "flow_margin"),
	};
	e->flow_timer_udp = (unsigned)conf_int(c, "outbound", "flow_timer_udp");
	e->flow_timer_tcp = (unsigned)conf_int(c, "outbound", "flow_timer_tcp");
	/* A Flow-Timer we cannot keep is not promised: a phone pings at 80-100 %
	 * of it (RFC 5626 4.4.1), and a TCP connection silent for
	 * tcp_idle_timeout is closed; a fifth to spare for the way there. */
	unsigned idle = (unsigned)conf_int(c, "sip", "tcp_idle_timeout");
	if (idle && e->flow_timer_tcp > idle - idle / 5) {
		LOG_W("edge",
		      "[outbound] flow_timer_tcp = %u is not below [sip] tcp_idle_timeout = %u "
		      "(less a fifth): promising %u s instead",
		      e->flow_timer_tcp, idle, idle - idle / 5);
		e->flow_timer_tcp = idle - idle / 5;
	}
	/* a flow no binding owns goes after a Flow-Timer and the margin */
	fc.idle_udp_s = e->flow_timer_udp + fc.margin_s;
	fc.idle_tcp_s = e->flow_timer_tcp + fc.margin_s;
	fc.net = n;
	if ((err = edge_flows_alloc(&e->flows, &fc))) {
		edge_free(e);
		return err;
	}
	timer_init(&e->flows_timer);
	edge_flows_start(e);
	metric_register(&edge_m_requests);
	for (int i = 0; i < 6; i++)
		metric_register(&edge_m_responses[i]);
	metric_register(&edge_m_parse_errors);
	metric_register(&edge_m_retransmissions);
	metric_register(&edge_m_stun);
	edge_seen_register_metrics();
	metric_register(&edge_m_crlf);
	metric_register(&edge_m_dropped);
	metric_register(&edge_m_tsx_timeouts);
	metric_register(&edge_m_rejected);
	metric_register(&edge_m_reply_trimmed);
	metric_register(&edge_m_reply_oversize);
	metric_register(&edge_m_acks_absorbed);
	metric_register(&edge_m_tx);
	metric_register(&edge_m_send_errors);
	metric_register(&m_handoffs);
	net_set_recv(n, edge_recv, edge_frame, e);
	net_set_conn_closed(n, edge_conn_closed, e);
	*ep = e;
	return 0;
}

void edge_free(struct edge *e)
{
	if (!e)
		return;
	for (unsigned i = 0; e->wk && i < e->n_wk; i++) {
		edge_stsx_free_all(&e->wk[i]);
		edge_ctsx_free_all(&e->wk[i]);
		edge_msg_pool_free(&e->wk[i]);
	}
	/* the loops are stopped but still exist: unlink our timer from them */
	timer_cancel(&e->flows_timer);
	edge_flows_free(e->flows);
	edge_mac_free(e);
	free(e->ws_origins);
	edge_limits_free(e);
	edge_steer_free(e->steer);
	net_hostaddrs_free(e->hostaddrs);
	free(e->wk);
	free(e);
}

void edge_set_handlers(struct edge *e, edge_request_h *req, edge_response_h *resp, void *arg)
{
	e->on_request = req;
	e->on_response = resp;
	e->handler_arg = arg;
}

void edge_set_stun(struct edge *e, edge_stun_h *h, void *arg)
{
	e->on_stun = h;
	e->stun_arg = arg;
}

struct net *edge_net(struct edge *e)
{
	return e->net;
}

unsigned edge_worker_of_callid(const struct edge *e, struct slice call_id)
{
	return (unsigned)(hash_fnv1a(call_id.p, call_id.l) % e->n_wk);
}

const char *edge_local_hostport(const struct edge *e, const struct flow *f, char *buf,
				size_t len)
{
	const struct net_addr *bound = net_listener_addr(e->net, f->listener);
	struct net_addr a = bound ? *bound : f->local;
	if (net_addr_is_any(&a) && !net_addr_is_any(&f->local))
		a = f->local;
	struct edge_wk *wk = edge_wk_current(e);
	if (wk && net_addr_eq(&wk->host_memo_addr, &a) &&
	    (net_addr_family(&a) != AF_INET6 ||
	     wk->host_memo_addr.u.in6.sin6_scope_id == a.u.in6.sin6_scope_id) &&
	    strlen(wk->host_memo) < len) {
		memcpy(buf, wk->host_memo, strlen(wk->host_memo) + 1);
		return buf;
	}
	if (e->advertise[0])
		snprintf(buf, len, "%s:%u", e->advertise, net_addr_port(&a));
	else
		net_addr_fmt(&a, buf, len);
	if (wk && strlen(buf) < sizeof wk->host_memo) {
		memcpy(wk->host_memo, buf, strlen(buf) + 1);
		wk->host_memo_addr = a;
	}
	return buf;
}

static bool listens_on_port(const struct edge *e, uint16_t port)
{
	for (unsigned i = 0; i < net_listener_count(e->net); i++)
		if (net_addr_port(net_listener_addr(e->net, i)) == port)
			return true;
	return false;
}

bool edge_addr_is_local(const struct edge *e, const struct net_addr *a)
{
	uint16_t port = net_addr_port(a);
	if (e->advertise_is_ip && net_addr_ip_eq(&e->advertise_addr, a) && listens_on_port(e, port))
		return true;
	for (unsigned i = 0; i < net_listener_count(e->net); i++) {
		const struct net_addr *l = net_listener_addr(e->net, i);
		if (net_addr_port(l) != port || net_addr_family(l) != net_addr_family(a))
			continue;
		if (net_addr_ip_eq(l, a) || (net_addr_is_any(l) && is_host_addr(e, a)))
			return true;
	}
	return false;
}

bool edge_ip_is_local(const struct edge *e, const struct net_addr *a)
{
	if (e->advertise_is_ip && net_addr_ip_eq(&e->advertise_addr, a))
		return true;
	for (unsigned i = 0; i < net_listener_count(e->net); i++)
		if (net_addr_ip_eq(net_listener_addr(e->net, i), a))
			return true;
	return is_host_addr(e, a);
}

bool edge_is_local(const struct edge *e, struct slice host, uint16_t port)
{
	if (!port)
		port = 5060;
	if (e->advertise[0] && slice_eq_cstr_nocase(host, e->advertise) &&
	    listens_on_port(e, port))
		return true;
	struct net_addr a;
	if (net_addr_from_host(host, port, &a))
		return false;
	return edge_addr_is_local(e, &a);
}

int edge_flow_for_uri(struct edge *e, const struct sip_uri *uri, struct flow *out)
{
	struct sip_param tp;
	/* RFC 5630: a sips: URI is reached over TLS on every hop; its
	 * transport=tcp means TLS over TCP, and nothing else will do; a sip: URI
	 * with transport=tls (deprecated, still sent) means TLS too */
	bool sips = slice_eq_cstr_nocase(uri->scheme, "sips");
	enum net_transport want = sips ? NET_TLS : NET_UDP;
	if (sip_param_find(uri->params, "transport", &tp) && tp.has_value) {
		if (net_transport_parse(tp.value, &want))
			return ENOTSUP;
		if (sips && want == NET_TCP)
			want = NET_TLS;
		if (sips && want != NET_TLS)
			return EPROTO; /* sips: over UDP (or WebSocket without TLS) */
	}
	if (want != NET_UDP && want != NET_TCP && want != NET_TLS)
		return ENOENT; /* WebSocket: never a next hop by address */
	struct sip_param maddr;
	struct slice host = uri->host;
	if (sip_param_find(uri->params, "maddr", &maddr) && maddr.has_value)
		host = maddr.value;
	struct net_addr dst;
	if (net_addr_from_host(host, uri->port ? uri->port : want == NET_TLS ? 5061 : 5060, &dst))
		return ENOENT;
	int li = net_listener_find(e->net, want, net_addr_family(&dst));
	if (li < 0)
		return ENOENT;
	if (want == NET_UDP)
		net_flow_udp(e->net, (unsigned)li, &dst, out);
	else
		net_flow_next_hop(e->net, (unsigned)li, &dst, out); /* RFC 5923 reuse or connect */
	return 0;
}

const char *edge_uri_scheme(enum net_transport tp)
{
	return tp == NET_TLS || tp == NET_WSS ? "sips" : "sip";
}

const char *edge_uri_tp_param(enum net_transport tp)
{
	/* RFC 7118 5.2: "ws" for WebSocket, secure or not */
	return tp == NET_TCP ? "transport=tcp;" : tp == NET_WS || tp == NET_WSS ? "transport=ws;" : "";
}

/* RFC 3581 4 and 3261 18.2.1: note where the request really came from in the top
 * Via, so that responses retrace the path through the NAT. */
static void fix_via(struct edge *e, const struct flow *f, const struct sip_via *v,
		    struct buf *out)
{
	char ip[INET6_ADDRSTRLEN];
	net_addr_ip_fmt(&f->remote, ip, sizeof ip);
	struct net_addr sent_by;
	bool same_ip = net_addr_from_host(v->host, 0, &sent_by) == 0 &&
		       net_addr_ip_eq(&sent_by, &f->remote);
	bool add_rport = v->rport || (e->force_rport && f->tp == NET_UDP);
	/* rebuild the params without old received/rport, then append ours */
	size_t head = v->params.p ? (size_t)(v->params.p - v->whole.p) : v->whole.l;
	buf_append(out, v->whole.p, head);
	struct slice params = v->params;
	size_t pos = 0;
	while (pos < params.l) {
		size_t start = pos + 1; /* skip ';' */
		size_t end = start;
		while (end < params.l && params.p[end] != ';')
			end++;
		struct slice one = slice_trim((struct slice){params.p + start, end - start});
		size_t eq = slice_find(one, '=');
		struct slice name = slice_trim((struct slice){one.p, eq});
		bool ours = slice_eq_cstr_nocase(name, "received") ||
			    (add_rport && slice_eq_cstr_nocase(name, "rport"));
		if (!ours && one.l) {
			buf_append_cstr(out, ";");
			buf_append_slice(out, one);
		}
		pos = end;
	}
	if (!same_ip || add_rport) {
		buf_append(out, ";received=", 10);
		buf_append_cstr(out, ip);
	}
	if (add_rport) {
		char port[5];
		size_t n = 0;
		for (unsigned p = net_addr_port(&f->remote); n == 0 || p; p /= 10)
			port[sizeof port - ++n] = (char)('0' + p % 10);
		buf_append(out, ";rport=", 7);
		buf_append(out, port + sizeof port - n, n);
	}
}

static void process(struct edge *e, struct worker *w, struct edge_msg *em);

void edge_set_register_local(struct edge *e, bool on)
{
	e->register_local = on;
}

/* Runs on the Call-ID's owner worker, with the message parsed by the receiver. */
static void handoff_run(void *arg)
{
	struct edge_msg *em = arg;
	struct worker *w = worker_current();
	if (w)
		process(em->edge, w, em);
	else
		edge_msg_free(em);
}

static void answer_parse_error(struct edge *e, const struct flow *f, struct sip_msg *msg,
			       size_t len, const struct sip_parse_error *perr)
{
	metric_inc(&edge_m_parse_errors);
	if (!msg->request || perr->status == 0 || msg->method == SIP_ACK)
		return; /* responses and ACKs are never answered */
	/* Enough of the message for a response? Via must be there to route it;
	 * symmetric response sends it to the source anyway. */
	if (!sip_msg_hdr(msg, SIP_HDR_VIA, 0)) {
		metric_inc(&edge_m_dropped);
		return;
	}
	struct buf via;
	buf_init(&via);
	fix_via(e, f, &msg->via1, &via);
	if (edge_reply_bounded(e, f, msg, len, perr->status, perr->reason, buf_slice(&via), NULL,
			       NULL))
		metric_inc(&edge_m_dropped);
	buf_free(&via);
}

/* The owner's hand-off queue is past overload_queue: it is behind. A new
 * dialog is refused here (503), sparing the owner; past 4 times the bound
 * every message is dropped, which bounds the queue's memory. True when em
 * was dealt with. (A retransmission of a request the owner already has is
 * refused as well: this worker cannot see the owner's transactions.) */
static bool shed_here(struct edge *e, struct worker *w, struct edge_msg *em, size_t queued)
{
	if (queued >= 4 * e->overload_queue) {
		metric_inc(&edge_m_overload_dropped);
		return true;
	}
	if (!edge_creates_dialog(&em->msg))
		return false;
	metric_inc(&edge_m_overload_503);
	struct buf via;
	buf_init(&via);
	fix_via(e, &em->flow, &em->msg.via1, &via);
	struct edge_rx rx = {.edge = e, .w = w, .flow = em->flow, .msg = &em->msg,
			     .via1_fixed = buf_slice(&via)};
	edge_reply_stateless(&rx, 503, "Service Unavailable", e->retry_after_hdr);
	buf_free(&via);
	return true;
}

static bool only_crlf(const char *p, size_t l)
{
	for (size_t i = 0; i < l; i++)
		if (p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

static void edge_recv(struct worker *w, const struct flow *f, const char *data, size_t len,
		      void *arg)
{
	struct edge *e = arg;
	if (len == 0)
		return;
	/* RFC 5626 4.4.1 / 3.5.1: keepalives share the SIP port */
	if (f->tp == NET_UDP && e->on_stun && ((const unsigned char *)data)[0] < 2) {
		struct buf out;
		buf_init(&out);
		if (e->on_stun(f, (const uint8_t *)data, len, &out, e->stun_arg) == 0 && out.len) {
			metric_inc(&edge_m_stun);
			/* answered (a Binding request within its source's budget):
			 * it keeps this exact flow alive, no other */
			edge_flows_keepalive(e->flows, f, EDGE_KA_STUN, loop_now_ms(worker_loop(w)));
			edge_stun_seen_note(e, f, time_mono_ms());
			edge_send(e, f, out.data, out.len);
		} else {
			metric_inc(&edge_m_dropped);
		}
		buf_free(&out);
		return;
	}
	if (only_crlf(data, len)) {
		metric_inc(&edge_m_crlf);
		edge_flows_keepalive(e->flows, f, EDGE_KA_CRLF, loop_now_ms(worker_loop(w)));
		if (f->tp != NET_UDP && len >= 4)
			edge_send(e, f, "\r\n", 2); /* pong */
		return;
	}
	/* over its rate a source is dropped unanswered, before any parse: an
	 * answer would make the limiter a reflector */
	if (!edge_rate_ok(e, w, f))
		return;
	/* the one copy and the one parse of this message */
	struct edge_msg *em = edge_msg_alloc(e, len);
	if (!em) {
		metric_inc(&edge_m_dropped);
		return;
	}
	memcpy(em->data, data, len);
	em->flow = *f;
	uint64_t now = loop_now_ms(worker_loop(w));
	em->rx_ms = now - MIN(now, worker_rx_age_ms(w));
	struct sip_parse_error perr = {0, NULL};
	/* a WebSocket message is one SIP message (RFC 7118 5): framed as a datagram */
	bool stream = f->tp != NET_UDP && f->tp != NET_WS && f->tp != NET_WSS;
	if (sip_msg_parse(&em->msg, em->data, len, stream, &perr)) {
		answer_parse_error(e, f, &em->msg, len, &perr);
		edge_msg_free(em);
		return;
	}
	unsigned owner = edge_worker_of_callid(e, em->msg.call_id);
	if (owner == worker_id(w) || edge_handled_where_received(e, &em->msg)) {
		process(e, w, em);
		return;
	}
	struct loop *ol = worker_loop(net_worker(e->net, owner));
	size_t queued = loop_post_pending(ol);
	if (queued >= e->overload_queue && shed_here(e, w, em, queued)) {
		edge_msg_free(em);
		return;
	}
	if (loop_post(ol, handoff_run, em)) {
		metric_inc(&edge_m_dropped);
		edge_msg_free(em);
		return;
	}
	metric_inc(&m_handoffs);
}

/* A request the transaction layer passes up, to the role; without one, what
 * a transaction needs is an answer. */
static void request_up(struct edge *e, const struct edge_rx *rx)
{
	if (e->on_request)
		e->on_request(rx, e->handler_arg);
	else if (rx->st)
		stsx_reply(rx->st, 501, "Not Implemented", NULL);
	else if (rx->msg->method == SIP_CANCEL)
		edge_reply_stateless(rx, 481, "Call/Transaction Does Not Exist", NULL);
}

/* Handles a parsed message on the worker that owns its Call-ID; frees em
 * unless a server transaction took it. */
static void process(struct edge *e, struct worker *w, struct edge_msg *em)
{
	struct edge_wk *wk = edge_wk_of(e, w);
	struct sip_msg *msg = &em->msg;
	struct edge_rx rx = {.edge = e, .w = w, .flow = em->flow, .msg = msg};
	bool kept = false;
	if (msg->request) {
		metric_inc(&edge_m_requests);
		struct buf via;
		buf_init(&via);
		fix_via(e, &em->flow, &msg->via1, &via);
		rx.via1_fixed = buf_slice(&via);
		if (edge_tsx_request(wk, &rx, em)) {
			kept = rx.st != NULL; /* the transaction took em */
			request_up(e, &rx);
		}
		buf_free(&via);
	} else {
		if (msg->status >= 100 && msg->status < 700)
			metric_inc(&edge_m_responses[msg->status / 100 - 1]);
		rx.via1_fixed = msg->via1.whole;
		if (edge_tsx_response(wk, &rx)) {
			if (e->on_response)
				e->on_response(&rx, e->handler_arg);
			else if (rx.ct_matched)
				metric_inc(&edge_m_dropped); /* a 2xx of ours, no one to take it */
		}
	}
	if (!kept)
		edge_msg_free(em);
}

const char *edge_advertise(const struct edge *e)
{
	return e->advertise;
}

struct edge_flows *edge_flows(struct edge *e)
{
	return e->flows;
}

unsigned edge_flow_timer(const struct edge *e, enum net_transport tp)
{
	/* a WebSocket's keepalive is the server's ping ([sip] ws_ping_interval):
	 * browsers send no CRLF, so no Flow-Timer is promised or checked */
	if (tp == NET_WS || tp == NET_WSS)
		return 0;
	return tp == NET_UDP ? e->flow_timer_udp : e->flow_timer_tcp;
}
