/* The edge-only process ([proxy] registrar): REGISTERs and out-of-dialog requests go to a registrar
 * elsewhere, with Path and Flow-Timer (RFC 5626 5, RFC 3327). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proxy_int.h"

const struct conf_key proxy_upstream_conf_keys[] = {
    {"proxy", "registrar", CONF_STR, "", 0, 0, NULL,
     "edge-only process: udp:, tcp: or tls:HOST:PORT (IP literal) of the "
     "registrar that REGISTERs (with a Path naming the phone's flow) and out-of-dialog "
     "requests from phones go to; this process then keeps no bindings (docs/outbound.md); "
     "empty = this process is the registrar"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static struct metric m_up_forwarded = {
    .name = "proxy_upstream_forwarded_total",
    .help = "edge-only process: REGISTERs and out-of-dialog requests forwarded to [proxy] "
	    "registrar"};
static struct metric m_up_paths = {
    .name = "proxy_path_added_total",
    .help = "edge-only process: REGISTERs given our Path entry (with ;ob: outbound)"};
static struct metric m_up_ob = {.name = "proxy_path_outbound_total",
				.help = "edge-only process: Path entries with ;ob (RFC 5626 5.1)"};
static struct metric m_up_foreign = {
    .name = "proxy_upstream_foreign_domain_total",
    .help = "edge-only process: REGISTERs for a domain not in [sip] domains, refused 403 at "
	    "the edge"};

/* The listener that faces dst: the one bound to the address the kernel
 * would send from, else a wildcard one, else the first of the family. Our
 * Via and Path toward the registrar carry its address, so it must be one
 * the registrar can reach (an edge's inside address, not its public one). */
static int listener_toward(struct edge *e, const struct net_addr *dst, enum net_transport tp)
{
	struct net *n = edge_net(e);
	int fam = dst->u.sa.sa_family;
	struct net_addr src;
	bool have_src = false;
	int fd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		socklen_t len = sizeof src.u.ss;
		have_src = connect(fd, &dst->u.sa, net_addr_len(dst)) == 0 &&
			   getsockname(fd, &src.u.sa, &len) == 0;
		close(fd);
	}
	int any = -1, first = -1;
	for (unsigned i = 0; i < net_listener_count(n); i++) {
		const struct net_addr *a = net_listener_addr(n, i);
		if (net_listener(n, i)->tp != tp || a->u.sa.sa_family != fam)
			continue;
		if (first < 0)
			first = (int)i;
		if (net_addr_is_any(a)) {
			if (any < 0)
				any = (int)i;
		} else if (have_src && net_addr_ip_eq(a, &src)) {
			return (int)i;
		}
	}
	return any >= 0 ? any : first;
}

/* What a failed flow means here: nothing to mark (the registrar keeps the
 * bindings); the entry stays failed and a token naming it gets 430
 * (route.c), which is how the registrar learns it. */
static size_t upstream_flow_failed(const struct flow *f, const char *aor,
				   enum edge_flow_cause cause, void *arg)
{
	(void)arg;
	char fs[NET_ADDR_STRLEN + 32];
	LOG_D("proxy", "%s: flow %s failed (%s): requests over it get 430", aor,
	      flow_fmt(f, fs, sizeof fs),
	      cause == EDGE_FLOW_KEEPALIVE ? "keepalives stopped"
	      : cause == EDGE_FLOW_CLOSED  ? "connection closed"
					   : "send failed");
	return 1;
}

int proxy_upstream_init(struct proxy *p, const struct conf *c)
{
	const char *spec = conf_str(c, "proxy", "registrar");
	/* what the edge promises and watches (a TCP one below its idle timeout) */
	p->flow_timer_udp = edge_flow_timer(p->edge, NET_UDP);
	p->flow_timer_tcp = edge_flow_timer(p->edge, NET_TCP);
	metric_register(&m_up_forwarded);
	metric_register(&m_up_paths);
	metric_register(&m_up_ob);
	metric_register(&m_up_foreign);
	if (!spec[0])
		return 0;
	const char *colon = strchr(spec, ':');
	enum net_transport tp;
	struct net_addr dst;
	if (!colon || net_transport_parse((struct slice){spec, (size_t)(colon - spec)}, &tp) ||
	    net_addr_parse(colon + 1, tp == NET_TLS ? 5061 : 5060, &dst)) {
		LOG_E(
		    "proxy",
		    "[proxy] registrar: cannot parse \"%s\" (want udp:, tcp: or tls:ADDR:PORT)",
		    spec);
		return EINVAL;
	}
	if (edge_addr_is_local(p->edge, &dst)) {
		LOG_E("proxy", "[proxy] registrar = %s is this process: leave it empty instead",
		      spec);
		return EINVAL;
	}
	if (tp != NET_UDP && tp != NET_TCP && tp != NET_TLS) {
		LOG_E("proxy", "[proxy] registrar = %s: only udp:, tcp: and tls:", spec);
		return ENOTSUP;
	}
	int li = listener_toward(p->edge, &dst, tp);
	if (li < 0) {
		LOG_E("proxy", "[proxy] registrar = %s: no %s listener of that address family", spec,
		      net_transport_name_upper(tp));
		return EINVAL;
	}
	/* the edge watches its phones' outbound flows itself: a failure stays
	 * in its table (430) instead of being marked on bindings kept here */
	edge_flows_set_handlers(edge_flows(p->edge), upstream_flow_failed, NULL, p);
	if (tp == NET_UDP)
		net_flow_udp(edge_net(p->edge), (unsigned)li, &dst, &p->up_flow);
	else /* a stream next hop: reused or opened when first sent on (RFC 5923) */
		net_flow_next_hop(edge_net(p->edge), (unsigned)li, &dst, &p->up_flow);
	p->up_on = true;
	char a[NET_ADDR_STRLEN];
	LOG_I("proxy",
	      "edge-only: REGISTERs and out-of-dialog requests go to the registrar at %s (from "
	      "%s); no bindings are kept here",
	      spec,
	      net_addr_fmt(net_listener_addr(edge_net(p->edge), p->up_flow.listener), a, sizeof a));
	return 0;
}

bool proxy_upstream_applies(const struct proxy *p, const struct edge_rx *rx)
{
	/* what the registrar sends us is routed by its Route (our tokens), never
	 * sent back to it */
	return p->up_on && !net_addr_ip_eq(&rx->flow.remote, &p->up_flow.remote);
}

/* RFC 5626 5.1: ;ob in our Path only when we are the phone's first hop (its
 * Via alone), it supports outbound, and a Contact names an instance and a
 * reg-id; otherwise the registrar must not treat the flow as outbound. */
static bool wants_outbound(const struct sip_msg *m)
{
	if (sip_msg_hdr(m, SIP_HDR_VIA, 1) ||
	    memchr(m->hdrs[m->via1_hdr].value.p, ',', m->hdrs[m->via1_hdr].value.l))
		return false;
	if (!sip_msg_has_option(m, SIP_HDR_SUPPORTED, "outbound") &&
	    !sip_msg_has_option(m, SIP_HDR_REQUIRE, "outbound"))
		return false;
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_CONTACT)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			struct sip_nameaddr na;
			if (sip_nameaddr_parse(v, &na) == 0 &&
			    sip_param_find(na.params, "+sip.instance", NULL) &&
			    sip_param_find(na.params, "reg-id", NULL))
				return true;
		}
	}
	return false;
}

int proxy_upstream_route(struct proxy *p, const struct edge_rx *rx, struct slice next_route,
			 bool authenticated, struct route_plan *plan, struct proxy_target *t,
			 uint16_t *status, const char **reason)
{
	const struct sip_msg *m = rx->msg;
	memset(t, 0, sizeof *t);
	t->flow = p->up_flow;
	plan->upstream = true;
	if (t->flow.may_connect) {
		/* tcp: the connection to the registrar, reused (ours, or the one
		 * it aliased, RFC 5923) or opened now: our Via and Path then name
		 * the address it leaves from */
		if (net_flow_connect(edge_net(p->edge), &t->flow)) {
			*status = 503;
			*reason = "Service Unavailable (Registrar Unreachable)";
			return ENOTCONN;
		}
		t->next_hop = true;
	}
	if (m->method == SIP_REGISTER) {
		/* the registrar answers for its domains; one not ours stops here,
		 * before it costs the registrar anything */
		if (!registrar_domain_is_local(p->reg, &m->ruri) ||
		    !registrar_domain_is_local(p->reg, &m->to.uri)) {
			metric_inc(&m_up_foreign);
			*status = 403;
			*reason = "Forbidden (Domain Not Served Here)";
			return EPERM;
		}
		/* RFC 3327 4 / RFC 5626 5.1: our entry names the phone's flow, at
		 * the address our Via toward the registrar carries */
		char token[FLOW_TOKEN_LEN + 1], host[NET_ADDR_STRLEN + 16];
		edge_flow_token_encode(p->edge, &rx->flow, token);
		edge_local_hostport(p->edge, &t->flow, host, sizeof host);
		bool ob = wants_outbound(m);
		snprintf(plan->path_entry, sizeof plan->path_entry, "<%s:%s@%s;%slr%s>",
			 edge_uri_scheme(t->flow.tp), token, host, edge_uri_tp_param(t->flow.tp),
			 ob ? ";ob" : "");
		metric_inc(&m_up_paths);
		if (ob) {
			metric_inc(&m_up_ob);
			plan->flow_timer =
			    rx->flow.tp == NET_UDP  ? p->flow_timer_udp
			    : rx->flow.tp == NET_WS || rx->flow.tp == NET_WSS ? 0 /* the server's ping */
						    : p->flow_timer_tcp;
		}
		metric_inc(&m_up_forwarded);
		return 0;
	}
	/* Beyond our domains the registrar trusts us ([proxy] trusted there),
	 * so the edge keeps its relay rule for it: the target is a local user,
	 * or the From is one of ours (the registrar demands digest for it), or
	 * the sender may relay by this process's own rule (trusted, LAN). */
	bool local_target = !next_route.l && !sip_param_find(m->ruri.params, "maddr", NULL) &&
			    registrar_domain_is_local(p->reg, &m->ruri);
	if (!local_target && !registrar_domain_is_local(p->reg, &m->from.uri) &&
	    !proxy_may_relay(p, rx, authenticated)) {
		*status = 403;
		*reason = "Forbidden (Relaying Denied)";
		return EPERM;
	}
	metric_inc(&m_up_forwarded);
	return 0;
}

/* Whether m is a 2xx in which the registrar accepted outbound (Require:
 * outbound), where our Flow-Timer belongs; *ft the header it wrote, if any. */
static bool outbound_2xx(const struct sip_msg *m, unsigned flow_timer, const struct sip_hdr **ft)
{
	*ft = NULL;
	if (!flow_timer || m->status < 200 || m->status >= 300 || m->cseq.method != SIP_REGISTER ||
	    !sip_msg_has_option(m, SIP_HDR_REQUIRE, "outbound"))
		return false;
	for (size_t i = 0; i < m->n_hdrs && !*ft; i++)
		if (m->hdrs[i].id == SIP_HDR_OTHER &&
		    slice_eq_cstr_nocase(m->hdrs[i].name, "Flow-Timer"))
			*ft = &m->hdrs[i];
	return true;
}

/* RFC 5626 5.4 / 6: tells the phone how often to ping, where the registrar
 * accepted outbound (Require: outbound in its 2xx); a value the registrar
 * wrote is kept when it asks no less often than ours. */
void proxy_flow_timer_edit(struct sip_editor *ed, const struct sip_msg *m, unsigned flow_timer)
{
	const struct sip_hdr *ft;
	if (!outbound_2xx(m, flow_timer, &ft))
		return;
	if (!ft) {
		sip_edit_insert_hdr_before(ed, m->n_hdrs, "Flow-Timer: %u", flow_timer);
		return;
	}
	uint32_t v;
	if (slice_to_u32(slice_trim(ft->value), UINT32_MAX, &v) == 0 && v <= flow_timer)
		return;
	sip_edit_replace(ed, ft->value, "%u", flow_timer);
}

/* The first Contact value of m with +sip.instance and reg-id whose instance
 * is inst (any, when inst is empty): its instance, reg-id and header
 * parameters. */
static bool outbound_contact(const struct sip_msg *m, struct slice inst, struct slice *inst_out,
			     uint32_t *reg_id, struct slice *params)
{
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_CONTACT)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			struct sip_nameaddr na;
			struct sip_param pi, pr;
			uint32_t id;
			if (sip_nameaddr_parse(v, &na) ||
			    !sip_param_find(na.params, "+sip.instance", &pi) ||
			    !sip_param_find(na.params, "reg-id", &pr) ||
			    slice_to_u32(pr.value, UINT32_MAX, &id) || !id)
				continue;
			/* RFC 5626 4.1: an instance URN compares without case */
			if (inst.l && !slice_eq_nocase(slice_trim(pi.value), inst))
				continue;
			if (*reg_id && id != *reg_id)
				continue;
			*inst_out = slice_trim(pi.value);
			*reg_id = id;
			*params = na.params;
			return true;
		}
	}
	return false;
}

/* The expiry of a Contact value of a 2xx to REGISTER (its params), seconds. */
static uint32_t contact_expires(const struct sip_msg *m, struct slice params)
{
	struct sip_param pe;
	uint32_t v;
	if (sip_param_find(params, "expires", &pe) && pe.has_value &&
	    slice_to_u32(pe.value, UINT32_MAX, &v) == 0)
		return v;
	const struct sip_hdr *eh = sip_msg_hdr(m, SIP_HDR_EXPIRES, 0);
	if (eh && slice_to_u32(slice_trim(eh->value), UINT32_MAX, &v) == 0)
		return v;
	return 3600; /* RFC 3261 10.2.1.1 */
}

void proxy_upstream_registered(struct proxy *p, const struct sip_msg *req, const struct flow *f,
			       const struct sip_msg *resp, unsigned flow_timer)
{
	char aor[STORE_AOR_MAX], inst[EDGE_FLOW_INSTANCE_MAX];
	struct slice ri, ci, params;
	uint32_t reg_id = 0;
	if (resp->status < 200 || resp->status >= 300 || registrar_aor_of(&req->to.uri, aor))
		return;
	struct edge_flows *fl = edge_flows(p->edge);
	const struct sip_hdr *ft;
	if (!flow_timer || !outbound_contact(req, SLICE_NULL, &ri, &reg_id, &params)) {
		/* no outbound binding asked for (Contact: *, a plain one):
		 * the one bound on f goes once the registrar no longer lists
		 * it (only what the table kept of the instance to compare) */
		struct edge_flow_info fi;
		if (edge_flows_get(fl, f, aor, &fi) || !fi.reg_id)
			return;
		reg_id = fi.reg_id;
		if (!outbound_contact(resp, slice_cstr(fi.instance), &ci, &reg_id, &params) ||
		    !contact_expires(resp, params))
			edge_flows_unbind(fl, f, aor);
		return;
	}
	/* the registrar answers with every binding of the AOR: ours is the
	 * one of this instance and reg-id; gone, or expires 0, it let go */
	uint32_t expires = 0;
	if (outbound_2xx(resp, flow_timer, &ft) &&
	    outbound_contact(resp, ri, &ci, &reg_id, &params))
		expires = contact_expires(resp, params);
	if (!expires) {
		edge_flows_unbind(fl, f, aor);
		return;
	}
	/* the interval the phone reads: ours, or the registrar's shorter one */
	uint32_t v = flow_timer;
	if (ft && (slice_to_u32(slice_trim(ft->value), UINT32_MAX, &v) || v > flow_timer))
		v = flow_timer;
	slice_to_cstr(ci, inst, sizeof inst);
	struct edge_flow_bind fb = {
	    .aor = aor, .instance = inst, .reg_id = reg_id, .check_s = v, .expires_s = expires};
	uint64_t now_ms = time_mono_ms();
	if (edge_flows_bind(fl, f, &fb, now_ms))
		return; /* full (counted) or no memory: the flow is not watched */
	/* a connection that closed before its 2xx came back: its close went
	 * by before the flow was bound */
	if (f->tp != NET_UDP && !net_conn_alive(edge_net(p->edge), f->conn_id))
		edge_flows_conn_closed(fl, f->conn_id, now_ms);
}

bool proxy_conf_edge_only(const struct conf *c)
{
	return conf_str(c, "proxy", "registrar")[0] != '\0';
}
