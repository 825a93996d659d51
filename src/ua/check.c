/* ua check: register + NAT probe + a call to the server's echo service, and one summary
 * of what they found (NAT type, binding lifetime, keepalive interval, registration per
 * flow, audio both ways, loss, jitter, RTT), in words or as one JSON object.
 *
 * The collector only reads the ua's events and a probe result: it never
 * sends anything itself, so everything here but ua_check_probe is pure and
 * tested as such (tests/unit/test_ua_check.c). ua_check_probe runs
 * src/probe's client, which blocks: it runs before the ua starts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "ua/ua.h"

void ua_check_init(struct ua_check *c, const struct ua_conf *conf)
{
	memset(c, 0, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "%s", conf->aor);
	snprintf(c->call_uri, sizeof c->call_uri, "%s", conf->call_uri);
	c->registering = !conf->no_register;
	c->n_flows = conf->n_proxy;
	for (unsigned i = 0; i < c->n_flows && i < UA_MAX_FLOWS; i++) {
		char a[NET_ADDR_STRLEN];
		snprintf(c->flow[i].proxy, sizeof c->flow[i].proxy, "%s:%s",
			 net_transport_name(conf->proxy[i].tp),
			 net_addr_fmt(&conf->proxy[i].addr, a, sizeof a));
	}
}

void ua_check_set_probe(struct ua_check *c, const struct probe_result *r)
{
	c->probed = true;
	c->pr = *r;
	probe_verdict(&c->pr, &c->pv);
}

static void set_detail(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s ? s : "");
}

void ua_check_event(struct ua_check *c, const struct ua_event *ev)
{
	struct ua_check_flow *f =
	    ev->flow >= 1 && ev->flow <= c->n_flows ? &c->flow[ev->flow - 1] : NULL;
	switch (ev->kind) {
	case UA_EV_REGISTERED:
		if (!f || f->registered)
			break; /* the first 200 is what the check is about */
		f->registered = true;
		f->outbound = ev->outbound;
		f->flow_timer = ev->flow_timer;
		f->expires = ev->expires;
		f->interval_ms = ev->interval_ms;
		snprintf(f->local, sizeof f->local, "%s", ev->local ? ev->local : "");
		break;
	case UA_EV_REG_FAILED:
	case UA_EV_AUTH_FAILED:
		if (!f || f->registered || f->code)
			break;
		f->status = ev->status;
		f->code = ev->kind == UA_EV_AUTH_FAILED ? UA_EXIT_AUTH
			  : ev->status			? UA_EXIT_REFUSED
							: UA_EXIT_TIMEOUT;
		set_detail(f->detail, sizeof f->detail, ev->detail);
		break;
	case UA_EV_CALL:
		c->call_tried = true;
		if (ev->status >= 200 && !c->call_status)
			c->call_status = ev->status;
		if (ev->detail && !c->call_status_final) {
			set_detail(c->call_detail, sizeof c->call_detail, ev->detail);
			c->call_status_final = ev->status >= 200;
		}
		break;
	case UA_EV_VERDICT:
		if (ev->verdict_in && ev->verdict_out && !c->have_verdict) {
			c->have_verdict = true;
			c->vin = *ev->verdict_in;
			c->vout = *ev->verdict_out;
		}
		break;
	case UA_EV_SIP_ALG:
		if (ev->method && !strcmp(ev->method, "INVITE")) {
			c->alg_inv_seen = true;
			c->alg_inv |= ev->rewritten;
		} else {
			c->alg_reg_seen = true;
			c->alg_reg |= ev->rewritten;
		}
		break;
	case UA_EV_DONE:
		c->done = true;
		c->ua_exit = ev->exit_code;
		break;
	default:
		break;
	}
}

/* The RFC 4787 behaviours in the old words support desks still use (RFC 3489's
 * cone names), since that is how people ask. */
const char *ua_check_nat_type(const struct probe_result *r)
{
	if (!r->answered)
		return "unknown";
	if (!r->nat)
		return "no-nat";
	switch (r->mapping) {
	case PROBE_AD:
	case PROBE_APD:
		return "symmetric";
	case PROBE_EI:
		switch (r->filtering) {
		case PROBE_EI:
			return "endpoint-independent";
		case PROBE_AD:
			return "address-restricted";
		case PROBE_APD:
			return "port-restricted";
		default:
			return "endpoint-independent-mapping";
		}
	default:
		return "nat";
	}
}

/* The interval to keep a flow's NAT binding open, and what it rests on. */
static unsigned keepalive(const struct ua_check *c, const char **basis)
{
	if (c->probed && c->pr.answered && !c->pr.nat) {
		*basis = "none needed, no NAT";
		return 0;
	}
	if (c->probed && c->pv.keepalive_measured) {
		*basis = "measured binding lifetime";
		return c->pv.keepalive_s;
	}
	for (unsigned i = 0; i < c->n_flows; i++)
		if (c->flow[i].registered && c->flow[i].outbound && c->flow[i].flow_timer) {
			*basis = "server's Flow-Timer";
			return c->flow[i].flow_timer * 4 / 5;
		}
	*basis = "default, lifetime not measured";
	return c->probed && c->pr.answered ? c->pv.keepalive_s : 25;
}

int ua_check_exit(const struct ua_check *c)
{
	static const int order[] = {UA_EXIT_AUTH, UA_EXIT_REFUSED, UA_EXIT_TIMEOUT, UA_EXIT_ERROR};
	if (c->registering)
		for (size_t k = 0; k < ARRAY_SIZE(order); k++)
			for (unsigned i = 0; i < c->n_flows; i++)
				if (!c->flow[i].registered && c->flow[i].code == order[k])
					return order[k];
	if (c->ua_exit)
		return c->ua_exit;
	/* a flow still trying when the call ended (the call was quick) */
	for (unsigned i = 0; i < c->n_flows && c->registering; i++)
		if (!c->flow[i].registered)
			return UA_EXIT_TIMEOUT;
	if (!c->have_verdict || c->vout.verdict != RTP_VERDICT_TWO_WAY)
		return c->call_tried && c->call_status >= 300 ? UA_EXIT_REFUSED : UA_EXIT_NO_AUDIO;
	return UA_EXIT_OK;
}

static double pct(int64_t lost, uint64_t got)
{
	double all = (double)got + (double)(lost > 0 ? lost : 0);
	return all > 0 && lost > 0 ? 100.0 * (double)lost / all : 0.0;
}

static const char *fmt_ss(const struct sockaddr_storage *ss, char *b, size_t l)
{
	struct net_addr a;
	memset(&a, 0, sizeof a);
	memcpy(&a.u.ss, ss, sizeof *ss);
	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
		return "-";
	return net_addr_fmt(&a, b, l);
}

/* One sentence: what the whole check says. */
static const char *conclusion(const struct ua_check *c, int code)
{
	switch (code) {
	case UA_EXIT_OK:
		return "calls work from this network: registered, and audio went both ways";
	case UA_EXIT_AUTH:
		return "the server refused the credentials";
	case UA_EXIT_REFUSED:
		return c->call_status >= 300 ? "the server refused the echo call"
					     : "the server refused a registration";
	case UA_EXIT_TIMEOUT:
		return "the server did not answer (a flow or the echo call)";
	case UA_EXIT_NO_AUDIO:
		return "the call was answered but audio did not go both ways";
	case UA_EXIT_CANCELLED:
		return "the echo call was not answered";
	default:
		return "local trouble (see the errors above)";
	}
}

/* Which parts a request had rewritten, "via, contact", or "nothing". */
static void alg_parts(unsigned m, struct buf *o)
{
	static const char *const name[] = {"via", "contact", "sdp"};
	bool any = false;
	for (unsigned i = 0; i < 3; i++)
		if (m & (1u << i)) {
			buf_printf(o, "%s%s", any ? ", " : "", name[i]);
			any = true;
		}
	if (!any)
		buf_append_cstr(o, "nothing");
}

/* The SIP ALG line: the verdict in words and what each request had rewritten. */
static void alg_text(const struct ua_check *c, struct buf *o)
{
	buf_append_cstr(o, "  sip alg:          ");
	if (!c->alg_reg_seen && !c->alg_inv_seen) {
		buf_append_cstr(o, "unknown: the server did not say what it received "
				   "(no Pinhole-Seen)\n");
		return;
	}
	ua_alg_words(c->alg_reg | c->alg_inv, o);
	buf_append_cstr(o, " (");
	if (c->alg_reg_seen) {
		buf_append_cstr(o, "REGISTER: ");
		alg_parts(c->alg_reg, o);
	}
	if (c->alg_inv_seen) {
		buf_append_cstr(o, c->alg_reg_seen ? "; INVITE: " : "INVITE: ");
		alg_parts(c->alg_inv, o);
	}
	buf_append_cstr(o, " rewritten)\n");
}

static void alg_json_list(struct buf *o, const char *key, bool seen, unsigned m)
{
	static const char *const name[] = {"via", "contact", "sdp"};
	buf_printf(o, ",\"%s\":", key);
	if (!seen) {
		buf_append_cstr(o, "null");
		return;
	}
	buf_append_cstr(o, "[");
	bool any = false;
	for (unsigned i = 0; i < 3; i++)
		if (m & (1u << i)) {
			buf_printf(o, "%s\"%s\"", any ? "," : "", name[i]);
			any = true;
		}
	buf_append_cstr(o, "]");
}

static void alg_json(const struct ua_check *c, struct buf *o)
{
	buf_append_cstr(o, ",\"sip_alg\":");
	if (!c->alg_reg_seen && !c->alg_inv_seen) {
		buf_append_cstr(o, "null");
		return;
	}
	unsigned all = c->alg_reg | c->alg_inv;
	buf_printf(o, "{\"rewritten\":%s", all ? "true" : "false");
	alg_json_list(o, "register", c->alg_reg_seen, c->alg_reg);
	alg_json_list(o, "invite", c->alg_inv_seen, c->alg_inv);
	struct buf w;
	buf_init(&w);
	ua_alg_words(all, &w);
	buf_append(&w, "", 1);
	buf_append_cstr(o, ",\"words\":");
	buf_append_json_str(o, w.failed ? "" : w.data);
	buf_free(&w);
	buf_append_cstr(o, "}");
}

int ua_check_text(const struct ua_check *c, struct buf *o)
{
	char a[NET_ADDR_STRLEN + 8], b[NET_ADDR_STRLEN + 8];
	int code = ua_check_exit(c);
	buf_printf(o, "check %s\n", c->aor);
	if (!c->probed) {
		buf_printf(o, "  nat:              not probed\n");
	} else if (!c->pr.answered) {
		buf_printf(o, "  nat:              unknown: %s\n", c->pr.error);
	} else {
		buf_printf(o, "  nat:              %s (mapping %s, filtering %s)\n",
			   ua_check_nat_type(&c->pr), probe_behaviour_name(c->pr.mapping),
			   c->pr.filtering ? probe_behaviour_name(c->pr.filtering) : "unknown");
		buf_printf(o, "  mapped address:   %s from %s (STUN %s%s)\n",
			   fmt_ss(&c->pr.mapped, a, sizeof a), fmt_ss(&c->pr.local, b, sizeof b),
			   c->stun_server, c->pr.rfc5780 ? ", RFC 5780" : ", no RFC 5780");
		if (!c->pr.lifetime_tested)
			buf_printf(o, "  binding lifetime: not measured%s\n",
				   c->pr.rfc5780 ? " (--lifetime S measures it)" : "");
		else if (c->pr.lifetime_hi_s)
			buf_printf(o, "  binding lifetime: %u s (alive at %u s, gone at %u s)\n",
				   c->pr.lifetime_lo_s, c->pr.lifetime_lo_s, c->pr.lifetime_hi_s);
		else
			buf_printf(o, "  binding lifetime: more than %u s\n", c->pr.lifetime_lo_s);
		buf_printf(o, "  media relay:      %s\n", c->pv.media_relay);
	}
	const char *basis;
	unsigned ka = keepalive(c, &basis);
	if (ka)
		buf_printf(o, "  keepalive:        every %u s (%s)\n", ka, basis);
	else
		buf_printf(o, "  keepalive:        %s\n", basis);
	for (unsigned i = 0; i < c->n_flows && c->registering; i++) {
		const struct ua_check_flow *f = &c->flow[i];
		buf_printf(o, "  flow %u:           %s ", i + 1, f->proxy);
		if (f->registered && f->outbound)
			buf_printf(o, "registered, outbound, Flow-Timer %u s, keepalive %.1f s\n",
				   f->flow_timer, (double)f->interval_ms / 1000);
		else if (f->registered)
			buf_printf(o, "registered, no outbound: refresh every %.0f s\n",
				   (double)f->interval_ms / 1000);
		else
			buf_printf(o, "not registered: %s\n",
				   f->detail[0] ? f->detail : "no answer before the end");
	}
	alg_text(c, o);
	buf_printf(o, "  echo call:        %s: %s\n", c->call_uri,
		   c->call_detail[0] ? c->call_detail : "not placed");
	if (c->have_verdict) {
		const struct rtp_verdict_in *v = &c->vin;
		buf_printf(o, "  audio:            %s\n", rtp_verdict_name(c->vout.verdict));
		if (c->vout.verdict != RTP_VERDICT_TWO_WAY)
			buf_printf(o, "  cause:            %s\n", c->vout.cause);
		buf_printf(o, "  sent:             %llu packets",
			   (unsigned long long)v->sent_packets);
		if (v->far_block)
			buf_printf(o, ", the echo got %llu, lost %lld (%.1f %%), jitter %.1f ms\n",
				   (unsigned long long)v->far_received, (long long)v->far_lost,
				   pct(v->far_lost, v->far_received), v->far_jitter_ms);
		else
			buf_printf(o, ", no report from the echo\n");
		buf_printf(
		    o, "  received:         %llu packets, lost %lld (%.1f %%), jitter %.1f ms\n",
		    (unsigned long long)v->recv_packets, (long long)v->lost,
		    pct(v->lost, v->recv_packets), v->jitter_ms);
		if (v->have_rtt)
			buf_printf(o, "  rtt:              %u ms\n", v->rtt_ms);
		else
			buf_printf(o, "  rtt:              not measured (no RTCP answer)\n");
	}
	buf_printf(o, "  result:           %s (exit %d)\n", conclusion(c, code), code);
	return o->failed ? ENOMEM : 0;
}

static void jstr(struct buf *o, const char *k, const char *v)
{
	buf_printf(o, ",\"%s\":", k);
	buf_append_json_str(o, v);
}

int ua_check_json(const struct ua_check *c, struct buf *o)
{
	char a[NET_ADDR_STRLEN + 8];
	int code = ua_check_exit(c);
	buf_append_cstr(o, "{\"event\":\"check\"");
	jstr(o, "aor", c->aor);
	buf_append_cstr(o, ",\"nat\":");
	if (!c->probed) {
		buf_append_cstr(o, "null");
	} else {
		buf_printf(o, "{\"answered\":%s", c->pr.answered ? "true" : "false");
		jstr(o, "stun_server", c->stun_server);
		if (c->pr.answered) {
			jstr(o, "type", ua_check_nat_type(&c->pr));
			buf_printf(o, ",\"nat\":%s", c->pr.nat ? "true" : "false");
			jstr(o, "mapping", probe_behaviour_name(c->pr.mapping));
			jstr(o, "filtering", probe_behaviour_name(c->pr.filtering));
			jstr(o, "local", fmt_ss(&c->pr.local, a, sizeof a));
			jstr(o, "mapped", fmt_ss(&c->pr.mapped, a, sizeof a));
			buf_printf(o, ",\"rfc5780\":%s", c->pr.rfc5780 ? "true" : "false");
			if (c->pr.lifetime_tested)
				buf_printf(o, ",\"lifetime\":{\"alive_s\":%u,\"gone_s\":%u}",
					   c->pr.lifetime_lo_s, c->pr.lifetime_hi_s);
			else
				buf_append_cstr(o, ",\"lifetime\":null");
			jstr(o, "media_relay", c->pv.media_relay);
		}
		if (c->pr.error[0])
			jstr(o, "error", c->pr.error);
		buf_append_cstr(o, "}");
	}
	const char *basis;
	unsigned ka = keepalive(c, &basis);
	buf_printf(o, ",\"keepalive\":{\"interval_s\":%u", ka);
	jstr(o, "basis", basis);
	buf_append_cstr(o, "},\"flows\":[");
	for (unsigned i = 0; i < c->n_flows && c->registering; i++) {
		const struct ua_check_flow *f = &c->flow[i];
		buf_printf(o, "%s{\"flow\":%u", i ? "," : "", i + 1);
		jstr(o, "proxy", f->proxy);
		buf_printf(o, ",\"registered\":%s", f->registered ? "true" : "false");
		if (f->registered) {
			jstr(o, "local", f->local);
			buf_printf(o,
				   ",\"outbound\":%s,\"flow_timer\":%u,\"expires\":%u,"
				   "\"interval_ms\":%llu",
				   f->outbound ? "true" : "false", f->flow_timer, f->expires,
				   (unsigned long long)f->interval_ms);
		} else {
			buf_printf(o, ",\"status\":%u", f->status);
			jstr(o, "detail", f->detail[0] ? f->detail : "no answer before the end");
		}
		buf_append_cstr(o, "}");
	}
	buf_append_cstr(o, "]");
	alg_json(c, o);
	buf_append_cstr(o, ",\"call\":{");
	buf_append_cstr(o, "\"uri\":");
	buf_append_json_str(o, c->call_uri);
	buf_printf(o, ",\"status\":%u", c->call_status);
	jstr(o, "detail", c->call_detail);
	buf_append_cstr(o, "}");
	if (c->have_verdict) {
		const struct rtp_verdict_in *v = &c->vin;
		jstr(o, "audio", rtp_verdict_name(c->vout.verdict));
		buf_printf(o, ",\"loss_out_pct\":");
		if (v->far_block)
			buf_printf(o, "%.1f,\"jitter_out_ms\":%.1f",
				   pct(v->far_lost, v->far_received), v->far_jitter_ms);
		else
			buf_append_cstr(o, "null,\"jitter_out_ms\":null");
		if (v->recv_packets)
			buf_printf(o, ",\"loss_in_pct\":%.1f,\"jitter_in_ms\":%.1f",
				   pct(v->lost, v->recv_packets), v->jitter_ms);
		else
			buf_append_cstr(o, ",\"loss_in_pct\":null,\"jitter_in_ms\":null");
		if (v->have_rtt)
			buf_printf(o, ",\"rtt_ms\":%u", v->rtt_ms);
		else
			buf_append_cstr(o, ",\"rtt_ms\":null");
		buf_append_cstr(o, ",\"media\":");
		rtp_verdict_json(v, &c->vout, o);
	} else {
		buf_append_cstr(o, ",\"audio\":null,\"media\":null");
	}
	jstr(o, "result", conclusion(c, code));
	buf_printf(o, ",\"exit\":%d}", code);
	return o->failed ? ENOMEM : 0;
}

/* "host", "host:port", "[v6]:port" to an address; port defport when absent. */
static int resolve(const char *s, uint16_t defport, struct sockaddr_storage *out)
{
	char host[256], port[8];
	snprintf(port, sizeof port, "%u", defport);
	const char *colon = strrchr(s, ':');
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || (size_t)(end - s - 1) >= sizeof host)
			return EINVAL;
		snprintf(host, sizeof host, "%.*s", (int)(end - s - 1), s + 1);
		if (end[1] == ':')
			snprintf(port, sizeof port, "%s", end + 2);
	} else if (colon && strchr(s, ':') == colon) {
		snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
		snprintf(port, sizeof port, "%s", colon + 1);
	} else {
		snprintf(host, sizeof host, "%s", s);
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) || !res)
		return EINVAL;
	memset(out, 0, sizeof *out);
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void run_one(struct ua_check *c, const struct sockaddr_storage *srv, unsigned lifetime_s)
{
	struct probe_opts o = {.server = *srv,
			       .timeout_ms = 2000,
			       .max_wait_s = lifetime_s,
			       .lifetime = lifetime_s > 0};
	o.local.ss_family = srv->ss_family;
	struct probe_result r;
	probe_run(&o, &r);
	struct net_addr na;
	memset(&na, 0, sizeof na);
	memcpy(&na.u.ss, srv, sizeof *srv);
	net_addr_fmt(&na, c->stun_server, sizeof c->stun_server);
	ua_check_set_probe(c, &r);
}

int ua_check_probe(struct ua_check *c, const struct ua_conf *conf, const char *spec,
		   unsigned lifetime_s)
{
	struct sockaddr_storage srv;
	if (spec) {
		if (resolve(spec, 3478, &srv))
			return EINVAL;
		run_one(c, &srv, lifetime_s);
		return 0;
	}
	/* the first proxy's host: its [stun] port first (RFC 5780 when the
	 * server runs it), then its SIP port, where a SIP Outbound server
	 * answers Binding requests (RFC 5626 8) with the mapped address only */
	memset(&srv, 0, sizeof srv);
	memcpy(&srv, &conf->proxy[0].addr.u.ss, sizeof srv);
	uint16_t sip_port = conf->proxy[0].port;
	if (srv.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&srv)->sin6_port = htons(3478);
	else
		((struct sockaddr_in *)&srv)->sin_port = htons(3478);
	run_one(c, &srv, lifetime_s);
	if (c->pr.answered || conf->proxy[0].tp != NET_UDP || sip_port == 3478)
		return 0;
	if (srv.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&srv)->sin6_port = htons(sip_port);
	else
		((struct sockaddr_in *)&srv)->sin_port = htons(sip_port);
	run_one(c, &srv, 0);
	return 0;
}
