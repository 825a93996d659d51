/* Request routing: validation, loose routing with flow tokens, registrar lookup, and the forwarded message. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "proxy_int.h"

const struct conf_key proxy_conf_keys[] = {
	{"proxy", "record_route", CONF_BOOL, "yes", 0, 0, NULL,
	 "Record-Route dialog-forming requests so in-dialog requests cross the NAT's flow"},
	{"proxy", "max_branches", CONF_INT, "8", 1, PROXY_MAX_BRANCHES, NULL,
	 "branches an INVITE is forked to in parallel: one per instance (its flows tried in turn), "
	 "one per binding without an instance"},
	{"proxy", "trusted", CONF_STR, "", 0, 0, NULL,
	 "peers (addresses or CIDR prefixes, comma-separated) whose requests may go beyond our "
	 "domains without authentication, e.g. a trunk: 192.0.2.10, 198.51.100.0/24; (read by "
	 "the registrar too) the only sources whose REGISTER may carry a Path: list the edge "
	 "proxies in front of a registrar-only process"},
	{"proxy", "relay", CONF_STR, "local", 0, 0, NULL,
	 "media relay to engage: local (this process's [relay]), an ng address "
	 "(udp:10.0.0.5:2223), or none"},
	{"proxy", "ice", CONF_ENUM, "remove", 0, 0, "remove|candidate",
	 "ICE in relayed SDP (docs/ice.md): remove = strip it, media always through the relay; "
	 "candidate = keep the parties' ICE and add the relay as their lowest candidate (and as "
	 "c=), passing their checks on, so ICE may pick a direct path (local relay only)"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct metric proxy_m_forwarded = {.name = "proxy_forwarded_total",
				    .help = "requests forwarded (per branch)"};
struct metric proxy_m_stateless = {
	.name = "proxy_stateless_total",
	.help = "ACKs, CANCELs and responses forwarded without a transaction"};
struct metric proxy_m_unproven_responses = {
	.name = "proxy_responses_unproven_total",
	.help = "responses dropped: no transaction of ours and no branch we signed"};

/* Answers a request that is not forwarded: once, statelessly and bounded
 * (stsx_reject), since whoever sent it may have used someone else's address. */
static void reply(const struct edge_rx *rx, uint16_t status, const char *reason, const char *extra)
{
	if (rx->st)
		stsx_reject(rx->st, status, reason, extra);
	else if (rx->msg->method == SIP_CANCEL)
		edge_reply_stateless(rx, status, reason, extra); /* one answer, no state */
	/* ACK is never answered */
}

static bool is_dialog_forming(const struct sip_msg *m)
{
	if (m->to_tag.l)
		return false;
	return m->method == SIP_INVITE || m->method == SIP_SUBSCRIBE || m->method == SIP_REFER ||
	       m->method == SIP_NOTIFY;
}

/* Walks the leading Route values that name us (RFC 3261 16.4) and collects
 * what to remove; our flow tokens among them name the way out (RFC 5626
 * 5.3). Our Record-Route is a pair, the callee's side then the caller's, and
 * a route set keeps the sender's side first (the callee's in order, the
 * caller's reversed): the far side is the later token. The flow comparison
 * is only a check, that skips a token naming the very flow the request came
 * on; it cannot be the rule, since a sender that comes back on a new flow
 * (NAT rebinding, TCP reconnect, a trunk sending from another port) matches
 * neither token. When every token names the sender's flow (a hairpin: the
 * same trunk or phone on both sides) the far side is that flow too. */
static void plan_routes(struct proxy *p, const struct edge_rx *rx, struct route_plan *plan,
			bool *have_flow, struct flow *flow, struct slice *next_route, int *token_err)
{
	*token_err = 0;
	memset(plan, 0, sizeof *plan);
	const struct sip_msg *m = rx->msg;
	plan->partial_line = SIZE_MAX;
	*have_flow = false;
	*next_route = SLICE_NULL;
	struct flow last; /* the far side by position, whatever the check says */
	bool have_last = false;
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_ROUTE)
			continue;
		size_t pos = 0, popped = 0;
		struct slice v;
		bool stop = false;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			struct sip_nameaddr na;
			if (sip_nameaddr_parse(v, &na) ||
			    !edge_is_local(p->edge, na.uri.host, na.uri.port)) {
				*next_route = v;
				stop = true;
				break;
			}
			popped++;
			if (sip_param_find(na.uri.params, "mr", NULL))
				plan->dialog_relayed = true;
			struct flow f;
			int terr = na.uri.user.l ? edge_flow_token_decode(p->edge, na.uri.user, &f)
						 : EBADMSG;
			if (terr == EPERM || (terr == ESTALE && *token_err != EPERM))
				*token_err = terr;
			if (terr == 0) {
				last = f;
				have_last = true;
			}
			if (terr == 0 && !flow_eq(&f, &rx->flow)) {
				*flow = f;
				*have_flow = true;
			}
		}
		if (stop) {
			if (popped) {
				plan->partial_line = i;
				plan->partial_rest = (struct slice){
					v.p, (size_t)(m->hdrs[i].value.p + m->hdrs[i].value.l - v.p)};
			}
			break;
		}
		if (popped && plan->n_pop_lines < ARRAY_SIZE(plan->pop_lines))
			plan->pop_lines[plan->n_pop_lines++] = i;
	}
	if (!*have_flow && have_last) {
		*flow = last;
		*have_flow = true;
	}
	/* 5.3: a flow the flow table saw fail (keepalives stopped, its
	 * connection closed) is gone as well: 430, as for an old epoch */
	if (*have_flow && !*token_err && edge_flows_failed(edge_flows(p->edge), flow))
		*token_err = ESTALE;
}

int proxy_build_request(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
			const struct proxy_target *t, const char *branch, struct buf *out)
{
	const struct sip_msg *m = rx->msg;
	struct sip_editor ed;
	sip_editor_init(&ed, m);
	char host[NET_ADDR_STRLEN + 16];
	edge_local_hostport(p->edge, &t->flow, host, sizeof host);
	const char *tp = net_transport_name_upper(t->flow.tp);
	/* RFC 5923: over a connection we opened to a trusted peer, offer it
	 * for the peer's requests back to us */
	const char *alias =
		t->next_hop && t->flow.tp != NET_UDP && proxy_source_trusted(p, &t->flow.remote)
			? ";alias"
			: "";
	/* the way back to the sender, needed in our Via over a stream and in a
	 * Record-Route */
	char token_in[FLOW_TOKEN_LEN + 1] = "";
	if (rx->flow.tp != NET_UDP || plan->record_route)
		edge_flow_token_encode(p->edge, &rx->flow, token_in);
	/* over a stream, the way back is not in the next Via: carry it in ours */
	if (rx->flow.tp != NET_UDP)
		sip_edit_insert_hdr_before(&ed, m->via1_hdr, "Via: SIP/2.0/%s %s;branch=%s;ft=%s%s",
					   tp, host, branch, token_in, alias);
	else
		sip_edit_insert_hdr_before(&ed, m->via1_hdr, "Via: SIP/2.0/%s %s;branch=%s%s", tp,
					   host, branch, alias);
	sip_edit_replace(&ed, m->via1.whole, "%.*s", (int)rx->via1_fixed.l, rx->via1_fixed.p);
	if (t->ruri[0])
		sip_edit_set_ruri(&ed, "%s", t->ruri);
	if (t->path[0]) /* RFC 3327 5.3: the way to the phone leads through its Path */
		sip_edit_insert_hdr_before(&ed, m->via1_hdr, "Route: %s", t->path);
	if (plan->path_entry[0]) {
		/* RFC 3327 4: an edge-only REGISTER; ours goes above any Path there */
		const struct sip_hdr *ph = sip_msg_hdr(m, SIP_HDR_PATH, 0);
		size_t at = ph ? (size_t)(ph - m->hdrs) : m->via1_hdr;
		sip_edit_insert_hdr_before(&ed, at, "Path: %s", plan->path_entry);
	}
	const struct sip_hdr *mf = sip_msg_hdr(m, SIP_HDR_MAX_FORWARDS, 0);
	if (mf)
		sip_edit_replace(&ed, mf->value, "%d", m->max_forwards > 0 ? m->max_forwards - 1 : 0);
	else
		sip_edit_insert_hdr_before(&ed, m->n_hdrs, "Max-Forwards: 70");
	for (size_t i = 0; i < plan->n_pop_lines; i++)
		sip_edit_remove_hdr(&ed, plan->pop_lines[i]);
	if (plan->partial_line != SIZE_MAX)
		sip_edit_replace(&ed, m->hdrs[plan->partial_line].value, "%.*s",
				 (int)plan->partial_rest.l, plan->partial_rest.p);
	if (plan->record_route) {
		/* Two entries, RFC 5626 5.1 style: the callee side (top) and the caller
		 * side, each naming its flow; whoever sends in the dialog later, the
		 * entry that is not its own flow says where to go. */
		char token_out[FLOW_TOKEN_LEN + 1], host_in[NET_ADDR_STRLEN + 16];
		char token_rr_in[FLOW_TOKEN_LEN + 1];
		/* the sender's side: a next hop's connection (ours, or a trusted
		 * peer's aliased one) by its address, so that a request after it
		 * closed opens another; a phone's by its connection */
		struct flow in_flow = rx->flow;
		if (net_conn_next_hop(edge_net(p->edge), &in_flow))
			edge_flow_token_encode(p->edge, &in_flow, token_rr_in);
		else
			memcpy(token_rr_in, token_in, sizeof token_rr_in);
		/* a next hop is named by its address, not this connection: a
		 * BYE an hour later reuses or opens one (a phone's flow is
		 * never a next hop: it names its connection) */
		struct flow out_flow = t->flow;
		if (t->next_hop) {
			out_flow.conn_id = 0;
			out_flow.may_connect = true;
		}
		edge_flow_token_encode(p->edge, &out_flow, token_out);
		edge_local_hostport(p->edge, &rx->flow, host_in, sizeof host_in);
		const struct sip_hdr *rr = sip_msg_hdr(m, SIP_HDR_RECORD_ROUTE, 0);
		size_t at = m->n_hdrs;
		for (size_t i = 0; rr && i < m->n_hdrs; i++)
			if (&m->hdrs[i] == rr)
				at = i;
		const char *mr = plan->relayed_mark ? "mr;" : "";
		/* a TLS side is a sips: URI (RFC 5630 3.1.3: not transport=tls) */
		sip_edit_insert_hdr_before(
			&ed, at, "Record-Route: <%s:%s@%s;%s%slr>, <%s:%s@%s;%s%slr>",
			edge_uri_scheme(t->flow.tp), token_out, host, edge_uri_tp_param(t->flow.tp),
			mr, edge_uri_scheme(rx->flow.tp), token_rr_in, host_in,
			edge_uri_tp_param(rx->flow.tp), mr);
	}
	for (size_t i = 0; plan->consumed_realm[0] && i < m->n_hdrs; i++) {
		struct sip_digest_cred dc;
		if (m->hdrs[i].id == SIP_HDR_PROXY_AUTHORIZATION &&
		    sip_digest_parse(m->hdrs[i].value, &dc) == 0 && dc.realm.p &&
		    slice_eq_nocase(dc.realm, slice_cstr(plan->consumed_realm)))
			sip_edit_remove_hdr(&ed, i);
	}
	if (plan->body_set)
		sip_edit_set_body(&ed, plan->body);
	int err = sip_edit_apply(&ed, out);
	sip_editor_free(&ed);
	return err;
}

/* RFC 3327 5.3: the way to a phone registered through a Path is its first
 * Path hop (an edge of ours), not the connection the REGISTER happened to
 * come over: that one while it lasts, else the hop by the address its URI
 * names (transport=tcp: a connection there, reused or opened; else UDP). A
 * Path is followed so only from a [proxy] trusted source, the registrar's
 * rule for accepting one, checked again here since a stored binding may
 * predate the list; a stranger's Path never makes us send elsewhere, and a
 * phone's own flow (no Path) never dials. false: the stored flow it is. */
static bool path_hop(struct proxy *p, const struct store_binding *b, struct flow *out)
{
	if (!b->path[0] || !proxy_source_trusted(p, &b->flow.remote))
		return false;
	if (b->flow.tp != NET_UDP && net_conn_alive(edge_net(p->edge), b->flow.conn_id))
		return false;
	size_t pos = 0;
	struct slice v;
	struct sip_nameaddr na;
	if (!sip_hdr_next_value(slice_cstr(b->path), &pos, &v) || sip_nameaddr_parse(v, &na) ||
	    edge_flow_for_uri(p->edge, &na.uri, out))
		return false; /* a name we cannot send to (numeric only) */
	/* from the listener the REGISTER came to, as before, if it still is
	 * one of that transport and family (the store outlives a restart) */
	struct net *n = edge_net(p->edge);
	struct net_addr to = out->remote;
	unsigned li = b->flow.listener;
	if (out->tp == NET_UDP && li < net_listener_count(n) &&
	    net_listener(n, li)->tp == NET_UDP &&
	    net_addr_family(net_listener_addr(n, li)) == net_addr_family(&to))
		net_flow_udp(n, li, &to, out);
	return true;
}

/* A registered binding's flow is known dead when it is a connection that
 * closed: its id is never used again. A Path binding's is only the way it
 * came: the way to it is its edge (path_hop), so it is only failed. */
static bool binding_dead(struct proxy *p, const struct store_binding *b)
{
	return b->flow.tp != NET_UDP && !b->path[0] &&
	       !net_conn_alive(edge_net(p->edge), b->flow.conn_id);
}

/* Order within an instance: working flows first, then the most recently
 * registered (RFC 5626 7: the most recent flow is the likeliest to work). */
static bool flow_before(const struct store_binding *a, bool a_failed,
			const struct store_binding *b, bool b_failed)
{
	if (a_failed != b_failed)
		return !a_failed;
	return a->registered_at > b->registered_at;
}

static void target_of(struct proxy *p, struct proxy_target *t, const struct store_binding *b,
		      unsigned group)
{
	t->flow = b->flow;
	t->flow.may_connect = false; /* a phone's flow never dials */
	path_hop(p, b, &t->flow);    /* an edge's may (on_request connects it) */
	t->next_hop = false;
	t->behind_nat = b->behind_nat;
	t->group = group;
	t->binding_id = b->id;
	t->ka = b->ka;
	/* same sizes, NUL-terminated by the store */
	_Static_assert(sizeof t->path == sizeof b->path, "path fits");
	_Static_assert(sizeof t->ruri == sizeof b->contact, "contact fits");
	memcpy(t->path, b->path, strlen(b->path) + 1);
	memcpy(t->ruri, b->contact, strlen(b->contact) + 1);
}

/*
 * A local user's targets (RFC 5626 5.3 / 7): one branch per instance (the
 * bindings that share a +sip.instance, outbound ones told apart by reg-id),
 * over its flows in flow_before order, at most PROXY_MAX_FLOWS of them; and
 * one branch per binding without an instance. A flow marked failed
 * (ka.unreachable: unanswered keepalives, a 430, a close) of an instance is
 * tried last, not skipped: the mark may be stale, and the instance may have
 * nothing else. A binding without an instance has nothing to fall back on:
 * failed, it is skipped as before (a dead connection fails at once, a UDP
 * flow whose pings go unanswered would hold the caller to Timer B for a
 * 408; 480 says the truth at once). A closed connection (no Path) is skipped
 * in either case: no request can ever cross it again.
 */
static void group_bindings(struct proxy *p, const struct store_binding *b, size_t nb,
			   struct proxy_target *t, size_t *n, size_t *unreachable)
{
	struct {
		const char *instance; /* NULL: a binding of its own */
		size_t idx[PROXY_MAX_FLOWS];
		bool failed[PROXY_MAX_FLOWS];
		size_t n;
	} g[PROXY_MAX_BRANCHES];
	size_t ng = 0;
	for (size_t i = 0; i < nb; i++) {
		bool dead = binding_dead(p, &b[i]);
		bool failed = dead || b[i].ka.unreachable;
		if (dead || (failed && !b[i].instance[0])) {
			(*unreachable)++;
			continue;
		}
		size_t k = ng;
		for (size_t j = 0; b[i].instance[0] && j < ng; j++)
			if (g[j].instance && strcmp(g[j].instance, b[i].instance) == 0)
				k = j;
		if (k == ng) {
			if (ng == p->max_branches)
				continue; /* the best max_branches instances ring */
			g[ng].instance = b[i].instance[0] ? b[i].instance : NULL;
			g[ng].n = 0;
			ng++;
		}
		if (g[k].n == PROXY_MAX_FLOWS)
			continue;
		/* insertion in flow_before order: a handful of flows */
		size_t at = g[k].n;
		while (at > 0 && flow_before(&b[i], failed, &b[g[k].idx[at - 1]], g[k].failed[at - 1])) {
			g[k].idx[at] = g[k].idx[at - 1];
			g[k].failed[at] = g[k].failed[at - 1];
			at--;
		}
		g[k].idx[at] = i;
		g[k].failed[at] = failed;
		g[k].n++;
	}
	*n = 0;
	for (size_t k = 0; k < ng; k++)
		for (size_t j = 0; j < g[k].n; j++)
			target_of(p, &t[(*n)++], &b[g[k].idx[j]], (unsigned)k);
}

/* Targets for a Request-URI that is not routed by Route: a local user's
 * bindings (aor set), or (beyond our domains, for those allowed to go there)
 * the host the URI names. */
static int lookup_targets(struct proxy *p, const struct edge_rx *rx, bool authenticated,
			  struct proxy_target *t, size_t *n, char aor[STORE_AOR_MAX],
			  uint16_t *status, const char **reason)
{
	const struct sip_msg *m = rx->msg;
	*n = 0;
	aor[0] = '\0';
	if (registrar_domain_is_local(p->reg, &m->ruri)) {
		*status = 404;
		*reason = "Not Found";
		if (registrar_aor_of(&m->ruri, aor))
			return ENOENT;
		/* 40 KB: on the worker's stack, once per request */
		struct store_binding b[PROXY_MAX_TARGETS];
		size_t nb = 0, unreachable = 0;
		registrar_lookup(p->reg, aor, b, PROXY_MAX_TARGETS, &nb);
		group_bindings(p, b, nb, t, n, &unreachable);
		if (*n)
			return 0;
		/* a user with no binding at all is answered like one that does not
		 * exist (404 below): a scan of INVITEs must not tell which exist */
		if (nb) {
			*status = 480;
			*reason = unreachable ? "Temporarily Unavailable (Unreachable)"
					      : "Temporarily Unavailable";
		}
		return ENOENT;
	}
	/* beyond our domains: the Request-URI's host (or maddr) is the target */
	if (!proxy_may_relay(p, rx, authenticated)) {
		*status = 403;
		*reason = "Forbidden (Relaying Denied)";
		return EPERM;
	}
	if (m->ruri.user.l == 0 || edge_flow_for_uri(p->edge, &m->ruri, &t[0].flow)) {
		*status = 404;
		*reason = "Not Found";
		return ENOENT;
	}
	t[0].ruri[0] = '\0';
	t[0].path[0] = '\0';
	t[0].behind_nat = false;
	t[0].next_hop = false;
	*n = 1;
	return 0;
}

/* Whether the From names one of our domains. One small function so that the
 * [sip] domains policy (issue 11, another branch) replaces it at merge. */
static bool from_is_local(struct proxy *p, const struct sip_msg *m)
{
	return registrar_domain_is_local(p->reg, &m->from.uri);
}

static struct metric m_from_forbidden = {
    .name = "proxy_from_forbidden_total",
    .help = "authenticated requests refused for a From that is not the user (403)"};

/*
 * RFC 3261 22.3: a request whose From is one of our users must prove it with
 * Proxy-Authorization. Returns 0 when the request may go on (*authenticated
 * says whether it proved it), or a non-zero value once it has been answered.
 * Unknown users and wrong passwords get the same 407 with a fresh challenge.
 */
static int check_sender(struct proxy *p, const struct edge_rx *rx, struct route_plan *plan,
			bool in_dialog, bool *authenticated)
{
	const struct sip_msg *m = rx->msg;
	struct auth *a = registrar_auth(p->reg);
	*authenticated = false;
	/* ACK has no response to carry a challenge; CANCEL is the edge's; an
	 * in-dialog request follows the flow tokens of its Route set (a To tag
	 * alone proves nothing: anyone can write one) */
	if (!rx->st || m->method == SIP_ACK || m->method == SIP_CANCEL || in_dialog)
		return 0;
	if (!auth_active(a) || !from_is_local(p, m))
		return 0;
	char realm[STORE_CRED_REALM_MAX];
	if (auth_realm(a, &m->from.uri, realm)) {
		reply(rx, 403, "Forbidden", NULL);
		return EPERM;
	}
	struct auth_result ar;
	struct net_addr src;
	registrar_auth_source(p->reg, &rx->flow, m, &src);
	auth_check(a, m, &src, true, realm, &ar);
	char extra[1024];
	const char *reason;
	uint16_t status = auth_answer(a, &ar, realm, &src, true, &reason, extra, sizeof extra);
	if (status) {
		reply(rx, status, reason, extra[0] ? extra : NULL);
		return status == 400 ? EBADMSG : EACCES;
	}
	/* no calling as someone else: the From user is the one who authenticated */
	if (!slice_eq(m->from.uri.user, slice_cstr(ar.user))) {
		metric_inc(&m_from_forbidden);
		reply(rx, 403, "Forbidden (From Is Not You)", NULL);
		return EPERM;
	}
	*authenticated = true;
	_Static_assert(sizeof plan->consumed_realm >= sizeof realm, "realm fits");
	memcpy(plan->consumed_realm, realm, strlen(realm) + 1);
	return 0;
}

/* RFC 3261 16.11: the same input gives the same branch; signed, so that a
 * response to it can be told from a forged one (proxy_response_stateless). */
static void stateless_branch(struct proxy *p, const struct edge_rx *rx, char branch[32])
{
	edge_branch_sign(p->edge, rx->via1_fixed, rx->msg->call_id, branch);
}

static void on_request(const struct edge_rx *rx, void *arg)
{
	struct proxy *p = arg;
	const struct sip_msg *m = rx->msg;
	if (rx->flow.tp == NET_TCP || rx->flow.tp == NET_TLS)
		proxy_note_alias(p, rx); /* RFC 5923, also for an edge's REGISTERs */
	if (m->method == SIP_REGISTER && !p->up_on) {
		registrar_handle(p->reg, rx);
		return;
	}
	/* edge-only: the registrar elsewhere decides (upstream.c) */
	bool upstream = proxy_upstream_applies(p, rx);
	/* 16.3 step 6: Proxy-Require lists what every proxy must support; we support none */
	const struct sip_hdr *pr = sip_msg_hdr(m, SIP_HDR_PROXY_REQUIRE, 0);
	if (pr) {
		char extra[200];
		snprintf(extra, sizeof extra, "Unsupported: %.*s\r\n", (int)MIN(pr->value.l, 150),
			 pr->value.p);
		reply(rx, 420, "Bad Extension", extra);
		return;
	}
	struct route_plan plan;
	struct flow tflow;
	bool have_flow;
	struct slice next_route;
	int token_err;
	plan_routes(p, rx, &plan, &have_flow, &tflow, &next_route, &token_err);
	if (token_err == EPERM) {
		/* RFC 5626 5.3: a tampered flow token routes nowhere */
		reply(rx, 403, "Forbidden (Bad Flow Token)", NULL);
		return;
	}
	if (token_err == ESTALE || (have_flow && tflow.tp != NET_UDP && !tflow.may_connect &&
				    !net_conn_alive(edge_net(p->edge), tflow.conn_id))) {
		/* 5.3: ours, of an earlier epoch (key rotated, restarted), or
		 * naming a connection that has closed (not a next hop by
		 * address, which may be dialled): the flow is gone, and the
		 * proxy that sent it may try another flow of the phone */
		reply(rx, 430, "Flow Failed", NULL);
		return;
	}
	/* addressed to this server: one of our domains, or our own address
	 * (a phone's OPTIONS ping) whatever [sip] domains says */
	bool to_us = !have_flow && !next_route.l && m->ruri.user.l == 0 &&
		     !(upstream && m->method == SIP_REGISTER) &&
		     (registrar_domain_is_local(p->reg, &m->ruri) ||
		      edge_is_local(p->edge, m->ruri.host, m->ruri.port));
	if (to_us) {
		if (m->method == SIP_OPTIONS)
			reply(rx, 200, "OK",
			      "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, "
			      "PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE\r\nAccept: application/sdp\r\n");
		else if (m->method == SIP_CANCEL)
			reply(rx, 481, "Call/Transaction Does Not Exist", NULL); /* 9.2 */
		else if (m->method != SIP_ACK)
			reply(rx, 404, "Not Found", NULL);
		return;
	}
	/* true once the sender proved with digest that it is the local user in its
	 * From; the relay policy below reads it (targets beyond our domains only
	 * for authenticated users, trusted peers and the no-users LAN rule) */
	bool authenticated = false;
	/* in a dialog we Record-Routed: a To tag and a valid flow token of ours */
	bool in_dialog = m->to_tag.l && have_flow;
	if (check_sender(p, rx, &plan, in_dialog, &authenticated))
		return;
	/* 16.3 step 3 */
	if (m->max_forwards == 0) {
		reply(rx, 483, "Too Many Hops", NULL);
		return;
	}
	/* 16.3 step 4 */
	if (proxy_looped(p, rx)) {
		reply(rx, 482, "Loop Detected", NULL);
		return;
	}
	plan.record_route = p->record_route && is_dialog_forming(m) && rx->st;
	struct proxy_target targets[PROXY_MAX_TARGETS];
	char aor[STORE_AOR_MAX] = "";
	size_t n = 0;
	bool service = false;
	memset(targets, 0, sizeof targets[0]);
	if (upstream && (m->method == SIP_REGISTER || !have_flow)) {
		uint16_t status = 403;
		const char *reason = "Forbidden";
		if (proxy_upstream_route(p, rx, next_route, authenticated, &plan, &targets[0],
					 &status, &reason)) {
			reply(rx, status, reason, NULL);
			return;
		}
		n = 1;
	} else if (have_flow) {
		targets[0].flow = tflow;
		targets[0].ruri[0] = '\0';
		n = 1;
		/* edge-only: the registrar's request over a phone's flow; an
		 * INVITE to a phone's UDP outbound flow */
		struct edge_flow_info fi;
		plan.flow_430 = p->up_on && !upstream;
		plan.silence_430 = plan.flow_430 && m->method == SIP_INVITE && !m->to_tag.l &&
				   tflow.tp == NET_UDP &&
				   edge_flows_get(edge_flows(p->edge), &tflow, NULL, &fi) == 0 &&
				   fi.reg_id;
	} else if (next_route.l) {
		/* a Route beyond us: loose routing for whoever may go there */
		if (!proxy_may_relay(p, rx, authenticated)) {
			reply(rx, 403, "Forbidden (Relaying Denied)", NULL);
			return;
		}
		struct sip_nameaddr na;
		if (sip_nameaddr_parse(next_route, &na) ||
		    edge_flow_for_uri(p->edge, &na.uri, &targets[0].flow)) {
			reply(rx, 404, "Next Hop Not Reachable", NULL);
			return;
		}
		targets[0].ruri[0] = '\0';
		n = 1;
	} else if (p->service_h && registrar_domain_is_local(p->reg, &m->ruri) &&
		   p->service_h(&m->ruri, &targets[0].flow, p->service_arg)) {
		n = 1; /* the echo service: a callee on this host */
		service = true;
	} else {
		uint16_t status = 404;
		const char *reason = "Not Found";
		if (lookup_targets(p, rx, authenticated, targets, &n, aor, &status, &reason)) {
			reply(rx, status, reason, NULL);
			return;
		}
	}
	/* RFC 5630 / 3261 26.2.2: a sips: request leaves over TLS or not at all */
	if (!proxy_sips_filter(m, targets, &n)) {
		reply(rx, 480, "Temporarily Unavailable (No TLS Flow)", NULL);
		return;
	}
	for (size_t i = 0; i < n && !service; i++) {
		/* one of our own addresses, now or since (netlink keeps them current) */
		if (edge_addr_is_local(p->edge, &targets[i].flow.remote)) {
			proxy_count_loop();
			reply(rx, 482, "Loop Detected", NULL);
			return;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!targets[i].flow.may_connect)
			continue; /* a phone's or peer's connection: as it is, never dialled */
		/* a TCP next hop (who may name one was decided above: of a local
		 * user's bindings, only a trusted edge's Path hop): its
		 * connection, reused or opened now, so that our Via names the
		 * address it leaves from */
		int err = net_flow_connect(edge_net(p->edge), &targets[i].flow);
		if (err && targets[i].binding_id)
			continue; /* its branch fails (over) on its own (fwd.c) */
		if (err) {
			reply(rx, 503, "Service Unavailable (Next Hop Unreachable)", NULL);
			return;
		}
		targets[i].next_hop = true;
	}
	if (!rx->st) {
		/* ACK for a 2xx, or a CANCEL without a transaction (16.10): forward
		 * without state, to one target (16.11), with a branch that is the
		 * same for the same input so the next hop can match it */
		char branch[32];
		stateless_branch(p, rx, branch);
		struct buf out, sdp;
		buf_init(&out);
		buf_init(&sdp);
		if (m->method == SIP_ACK && proxy_media_ack(p, rx, &sdp) == 0) {
			plan.body_set = true;
			plan.body = buf_slice(&sdp);
		}
		if (proxy_build_request(p, rx, &plan, &targets[0], branch, &out) == 0) {
			edge_send(p->edge, &targets[0].flow, out.data, out.len);
			metric_inc(&proxy_m_stateless);
		}
		buf_free(&out);
		buf_free(&sdp);
		return;
	}
	struct proxy_media pm;
	struct buf sdp;
	buf_init(&sdp);
	uint16_t status = proxy_media_request(p, rx, targets, n, plan.dialog_relayed, &pm, &sdp);
	if (status) {
		buf_free(&sdp);
		reply(rx, status, status == 488 ? "Not Acceptable Here" : "Media Relay Unavailable",
		      NULL);
		return;
	}
	if (m->method == SIP_BYE && proxy_media_dialog_matches(p, m)) {
		/* either side hangs up: the ports go once the BYE is answered
		 * through its transaction (fwd.c), not on a stranger's say-so */
		pm.bye_ends = true;
		slice_to_cstr(m->call_id, pm.call_id, sizeof pm.call_id);
		if (registrar_aor_of(&m->from.uri, pm.aor_from))
			pm.aor_from[0] = '\0';
		if (registrar_aor_of(&m->to.uri, pm.aor_to))
			pm.aor_to[0] = '\0';
	}
	if (pm.offered) {
		plan.body_set = true;
		plan.body = buf_slice(&sdp);
	}
	plan.relayed_mark = pm.engaged;
	plan.authenticated = authenticated || proxy_source_trusted(p, &rx->flow.remote);
	proxy_fork(p, rx, &plan, targets, n, &pm, aor[0] ? aor : NULL);
	buf_free(&sdp);
}

static void on_response(const struct edge_rx *rx, void *arg)
{
	struct proxy *p = arg;
	if (registrar_keepalive_response(p->reg, rx))
		return;
	proxy_response_stateless(p, rx);
}

void proxy_media_register_metrics(void);

int proxy_alloc(struct proxy **pp, struct edge *e, struct registrar *r, struct relay *relay,
		const struct conf *c)
{
	struct proxy *p = calloc(1, sizeof *p);
	if (!p)
		return ENOMEM;
	p->edge = e;
	p->reg = r;
	p->record_route = conf_bool(c, "proxy", "record_route");
	p->max_branches = (unsigned)conf_int(c, "proxy", "max_branches");
	p->max_media = (unsigned)conf_int(c, "relay", "max_media");
	const char *which = conf_str(c, "proxy", "relay");
	int err = proxy_policy_init(p, c);
	if (!err)
		err = proxy_media_policy_init(&p->mpol, c, p->trusted, p->n_trusted);
	if (!err)
		err = proxy_upstream_init(p, c);
	if (err) {
		free(p);
		return err;
	}
	if (strcmp(which, "local") == 0) {
		if (relay)
			err = relayctl_local(&p->rc, relay);
		else if (!p->up_on) /* an edge leaves media to its registrar */
			LOG_W("proxy", "no [relay] role in this process: media is not relayed");
	} else if (strcmp(which, "none") != 0 && which[0]) {
		err = relayctl_ng_alloc(&p->rc, which, 1000);
		if (err)
			LOG_E("proxy", "[proxy] relay = %s: %s", which, strerror(err));
		/* ng has no way to ask for a candidate that passes checks on */
		if (!err && p->mpol.ice_candidate) {
			LOG_W("proxy", "[proxy] ice = candidate needs the local relay: ICE is "
				       "removed on relays driven over ng");
			p->mpol.ice_candidate = false;
		}
	}
	if (err) {
		free(p);
		return err;
	}
	proxy_media_register_metrics();
	pthread_mutex_init(&p->calls_lock, NULL);
	metric_register(&proxy_m_forwarded);
	proxy_fwd_init(p, c);
	metric_register(&proxy_m_stateless);
	metric_register(&proxy_m_unproven_responses);
	metric_register(&m_from_forbidden);
	edge_set_handlers(e, on_request, on_response, p);
	/* on_request gives every REGISTER to the registrar, unless it forwards
	 * them to one elsewhere through client transactions (edge-only) */
	edge_set_register_local(e, !p->up_on);
	*pp = p;
	return 0;
}

void proxy_set_service(struct proxy *p, proxy_service_h *h, void *arg)
{
	p->service_h = h;
	p->service_arg = arg;
}

void proxy_free(struct proxy *p)
{
	if (!p)
		return;
	proxy_calls_free_all(p);
	if (p->up_on) /* its flow handler (upstream.c) names p */
		edge_flows_set_handlers(edge_flows(p->edge), NULL, NULL, NULL);
	pthread_mutex_destroy(&p->calls_lock);
	relayctl_free(p->rc);
	free(p);
}
