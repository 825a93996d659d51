/* ua: the REGISTER client transaction of one flow: build, retransmit, authenticate, read the 200.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ua_int.h"

void ua_hex_rand(char *out, size_t bytes)
{
	static const char hx[] = "0123456789abcdef";
	uint8_t r[32];
	bytes = MIN(bytes, sizeof r);
	rand_bytes(r, bytes);
	for (size_t i = 0; i < bytes; i++) {
		out[2 * i] = hx[r[i] >> 4];
		out[2 * i + 1] = hx[r[i] & 15];
	}
	out[2 * bytes] = '\0';
}

void ua_reg_init(struct ua_flow *f)
{
	/* RFC 3261 10.2: one Call-ID for every REGISTER of this flow's
	 * registration, CSeq rising; a new flow (4.5) keeps them too, as it
	 * replaces the same reg-id's binding */
	char id[33];
	ua_hex_rand(id, 16);
	snprintf(f->call_id, sizeof f->call_id, "%s", id);
	ua_hex_rand(f->from_tag, 8);
	f->cseq = rand_u32() % 10000 + 1;
}

void ua_reg_stop(struct ua_flow *f)
{
	timer_cancel(&f->t_retx);
	timer_cancel(&f->t_tsx);
	timer_cancel(&f->t_refresh);
	f->in_flight = false;
}

/* The Contact's host: our socket's address (what a peer behind no NAT would
 * reach; the registrar stores the flow anyway). */
void ua_contact_hostport(const struct ua_flow *f, char *out, size_t cap)
{
	if (ua_ws(f->px) && f->ws_host[0]) {
		/* RFC 7118 5.2: a WebSocket client is reached over its flow only */
		snprintf(out, cap, "%s", f->ws_host);
		return;
	}
	char ip[NET_ADDR_STRLEN];
	net_addr_ip_fmt(&f->local, ip, sizeof ip);
	if (net_addr_family(&f->local) == AF_INET6)
		snprintf(out, cap, "[%s]:%u", ip, net_addr_port(&f->local));
	else
		snprintf(out, cap, "%s:%u", ip, net_addr_port(&f->local));
}

/* Our Contact URI, as the REGISTER writes it. */
static void contact_uri(const struct ua_flow *f, char *out, size_t cap)
{
	char hp[NET_ADDR_STRLEN + 8];
	ua_contact_hostport(f, hp, sizeof hp);
	snprintf(out, cap, "%s:%s@%s%s", ua_scheme(f->px), f->ua->aor_user, hp,
		 ua_tp_param(f->px));
}

static bool proxy_is_registrar(const struct ua *ua, const struct ua_proxy *px)
{
	return strcasecmp(px->host, ua->domain) == 0 &&
	       (px->port == ua->domain_port || (!ua->domain_port && px->port == 5060));
}

void ua_outbound_route(const struct ua_flow *f, struct buf *b)
{
	if (proxy_is_registrar(f->ua, f->px))
		return;
	/* RFC 5626 4.2.1: through the outbound proxy, loose-routed */
	const char *h = f->px->host;
	bool v6 = strchr(h, ':') != NULL && h[0] != '[';
	buf_printf(b, "Route: <%s:%s%s%s:%u%s;lr>\r\n", ua_scheme(f->px), v6 ? "[" : "", h,
		   v6 ? "]" : "", f->px->port, ua_tp_param(f->px));
}

static int build(struct ua_flow *f, struct buf *b)
{
	struct ua *ua = f->ua;
	char hp[NET_ADDR_STRLEN + 8];
	ua_contact_hostport(f, hp, sizeof hp);
	const char *tp = net_transport_name_upper(f->px->tp);
	buf_printf(b, "REGISTER %s SIP/2.0\r\n", ua->ruri);
	/* RFC 3581: rport in every Via, so answers come back to the NAT's port */
	buf_printf(b, "Via: SIP/2.0/%s %s;rport;branch=%s\r\n", tp, hp, f->branch);
	buf_append_cstr(b, "Max-Forwards: 70\r\n");
	ua_outbound_route(f, b);
	buf_printf(b, "From: <%s>;tag=%s\r\n", ua->c.aor, f->from_tag);
	buf_printf(b, "To: <%s>\r\n", ua->c.aor);
	buf_printf(b, "Call-ID: %s\r\n", f->call_id);
	buf_printf(b, "CSeq: %u REGISTER\r\n", f->cseq);
	/* RFC 5626 4.2: reg-id names the flow, +sip.instance the installation */
	char curi[NET_ADDR_STRLEN + 160];
	contact_uri(f, curi, sizeof curi);
	buf_printf(b, "Contact: <%s>;reg-id=%u;+sip.instance=\"<%s>\";expires=%u\r\n", curi,
		   f->idx + 1, ua->c.instance, f->expires_req);
	buf_printf(b, "Expires: %u\r\n", f->expires_req);
	buf_append_cstr(b, "Supported: outbound, path\r\n");
	buf_append_cstr(b, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n");
	if (f->auth.have) {
		struct ua_challenge ch = {
		    .alg = f->auth.alg,
		    .realm = slice_cstr(f->auth.realm),
		    .nonce = slice_cstr(f->auth.nonce),
		    .opaque = f->auth.has_opaque ? slice_cstr(f->auth.opaque) : SLICE_NULL,
		    .qop_auth = f->auth.qop_auth,
		};
		buf_append_cstr(b, f->auth.proxy ? "Proxy-Authorization: " : "Authorization: ");
		int err = ua_digest_credentials(&ch, ua->auth_user, ua->c.password, "REGISTER",
						ua->ruri, ++f->auth.nc, NULL, b);
		if (err)
			return err;
		buf_append_cstr(b, "\r\n");
	}
	buf_append_cstr(b, "User-Agent: pinhole-ua/0.1.0\r\n");
	buf_append_cstr(b, "Content-Length: 0\r\n\r\n");
	return b->failed ? ENOMEM : 0;
}

static void on_retx(void *arg);
static void on_timeout(void *arg);

static void attempt_failed(struct ua_flow *f, uint16_t status, const char *why, int code)
{
	ua_reg_stop(f);
	if (f->st == UAF_UNREGISTERING) {
		ua_flow_unregistered(f, false, why);
		return;
	}
	struct ua_event ev = {.kind = code == UA_EXIT_AUTH ? UA_EV_AUTH_FAILED : UA_EV_REG_FAILED,
			      .status = status,
			      .detail = why};
	ua_emit(f, &ev);
	ua_flow_failed(f, why, code);
}

static void send_request(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	char br[33];
	ua_hex_rand(br, 12);
	snprintf(f->branch, sizeof f->branch, SIP_BRANCH_MAGIC "%s", br);
	f->cseq++;
	buf_reset(&f->req);
	int err = build(f, &f->req);
	if (err) {
		attempt_failed(f, 0, "cannot build the REGISTER (credentials with a quote?)",
			       UA_EXIT_ERROR);
		return;
	}
	f->in_flight = true;
	ua->stats.registers_sent++;
	uaf_send(f, f->req.data, f->req.len);
	if (f->px->tp == NET_UDP) {
		f->rto_ms = UA_T1_MS;
		timer_start(ua->loop, &f->t_retx, f->rto_ms, on_retx, f);
	}
	timer_start(ua->loop, &f->t_tsx, UA_TIMER_F_MS, on_timeout, f);
}

void ua_reg_start(struct ua_flow *f, uint32_t expires)
{
	timer_cancel(&f->t_refresh);
	f->expires_req = expires;
	f->challenges = 0;
	f->creds_fresh = false;
	f->min_expires_tried = false;
	if (expires == 0)
		f->st = UAF_UNREGISTERING;
	else if (f->st != UAF_REGISTERED)
		f->st = UAF_REGISTERING;
	send_request(f);
}

/* RFC 3261 17.1.2.2: retransmit over UDP, doubling up to T2. */
static void on_retx(void *arg)
{
	struct ua_flow *f = arg;
	if (!f->in_flight)
		return;
	f->ua->stats.retransmits++;
	uaf_send(f, f->req.data, f->req.len);
	f->rto_ms = MIN(f->rto_ms * 2, (uint64_t)UA_T2_MS);
	timer_start(f->ua->loop, &f->t_retx, f->rto_ms, on_retx, f);
}

static void on_timeout(void *arg)
{
	struct ua_flow *f = arg;
	char why[128];
	if (f->sock_err)
		snprintf(why, sizeof why, "no answer to REGISTER in 32 s (%s)",
			 strerror(f->sock_err));
	else
		snprintf(why, sizeof why, "no answer to REGISTER in 32 s");
	attempt_failed(f, 0, why, UA_EXIT_TIMEOUT);
}

void ua_reg_transport_error(struct ua_flow *f, int err)
{
	if (!f->in_flight)
		return; /* a keepalive's: its own timer decides */
	char why[128];
	snprintf(why, sizeof why, "%s: %s", f->px->tp == NET_UDP ? "ICMP error" : "transport error",
		 strerror(err));
	/* RFC 3261 8.1.3.1: a transport error counts as a 503 from the hop */
	attempt_failed(f, 0, why, UA_EXIT_TIMEOUT);
}

static void refresh_due(void *arg)
{
	struct ua_flow *f = arg;
	ua_reg_start(f, f->ua->c.expires);
}

/* Keeps a challenge for this and later REGISTERs. false when it cannot be kept. */
static bool keep_challenge(struct ua_flow *f, const struct ua_challenge *ch, bool proxy)
{
	struct ua_auth *a = &f->auth;
	if (ch->realm.l >= sizeof a->realm || ch->nonce.l >= sizeof a->nonce ||
	    ch->opaque.l >= sizeof a->opaque)
		return false;
	slice_to_cstr(ch->realm, a->realm, sizeof a->realm);
	slice_to_cstr(ch->nonce, a->nonce, sizeof a->nonce);
	a->has_opaque = ch->opaque.p != NULL;
	slice_to_cstr(ch->opaque, a->opaque, sizeof a->opaque);
	a->alg = ch->alg;
	a->qop_auth = ch->qop_auth;
	a->proxy = proxy;
	a->nc = 0;
	a->have = true;
	return true;
}

static void on_challenge(struct ua_flow *f, const struct sip_msg *m)
{
	bool proxy = m->status == 407;
	struct ua_challenge ch;
	int err = ua_challenge_pick(m, proxy, &ch);
	if (err) {
		attempt_failed(f, m->status,
			       err == ENOENT ? "challenge without a Digest header"
					     : "no challenge we can answer (algorithm or qop)",
			       UA_EXIT_REFUSED);
		return;
	}
	f->ua->stats.challenges++;
	/* Credentials answering this attempt's own challenge were refused, and
	 * the server does not say the nonce merely expired: the password or the
	 * user name is wrong. (Credentials reused from an earlier REGISTER may
	 * just carry a nonce the server no longer takes: one more try.) */
	if ((f->creds_fresh && !ch.stale) || ++f->challenges > 3) {
		f->auth.have = false;
		attempt_failed(f, m->status, "credentials refused: wrong user name or password",
			       UA_EXIT_AUTH);
		return;
	}
	if (!keep_challenge(f, &ch, proxy)) {
		attempt_failed(f, m->status, "challenge too large to answer", UA_EXIT_REFUSED);
		return;
	}
	f->creds_fresh = true;
	send_request(f);
}

/* The expires the registrar granted our binding: the Contact that is ours
 * (same instance and reg-id; or, from a registrar that does not know
 * outbound, the same URI), else the Expires header, else what we asked. */
static uint32_t granted_expires(const struct ua_flow *f, const struct sip_msg *m)
{
	char curi[NET_ADDR_STRLEN + 160];
	contact_uri(f, curi, sizeof curi);
	const struct sip_hdr *h;
	for (size_t i = 0; (h = sip_msg_hdr(m, SIP_HDR_CONTACT, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(h->value, &pos, &v)) {
			struct sip_nameaddr na;
			if (sip_nameaddr_parse(slice_trim(v), &na))
				continue;
			struct sip_param inst, rid, exp;
			uint32_t reg_id = 0, e = 0;
			if (!sip_param_find(na.params, "+sip.instance", &inst) &&
			    sip_uri_text_eq(na.uri_s, slice_cstr(curi))) {
				if (sip_param_find(na.params, "expires", &exp) &&
				    !slice_to_u32(exp.value, UINT32_MAX, &e))
					return e;
				continue;
			}
			if (!sip_param_find(na.params, "+sip.instance", &inst) ||
			    !sip_param_find(na.params, "reg-id", &rid) ||
			    slice_to_u32(rid.value, UINT32_MAX, &reg_id) || reg_id != f->idx + 1)
				continue;
			/* the value is "<urn:uuid:...>" with its quotes */
			struct slice iv = inst.value;
			if (iv.l >= 4 && iv.p[0] == '"')
				iv = (struct slice){iv.p + 2, iv.l - 4};
			if (!slice_eq_nocase(iv, slice_cstr(f->ua->c.instance)))
				continue;
			if (sip_param_find(na.params, "expires", &exp) &&
			    !slice_to_u32(exp.value, UINT32_MAX, &e))
				return e;
		}
	}
	uint32_t e = 0;
	h = sip_msg_hdr(m, SIP_HDR_EXPIRES, 0);
	if (h && !slice_to_u32(slice_trim(h->value), UINT32_MAX, &e))
		return e;
	return f->expires_req;
}

static void on_ok(struct ua_flow *f, const struct sip_msg *m)
{
	struct ua *ua = f->ua;
	ua_reg_stop(f);
	if (f->st == UAF_UNREGISTERING) {
		ua_flow_unregistered(f, true, NULL);
		return;
	}
	uint32_t exp = granted_expires(f, m);
	if (exp == 0) {
		attempt_failed(f, m->status, "200 without our binding in it", UA_EXIT_REFUSED);
		return;
	}
	bool was_registered = f->registered && !f->was_down;
	f->outbound = sip_msg_has_option(m, SIP_HDR_REQUIRE, "outbound");
	f->flow_timer = 0;
	const struct sip_hdr *ft = sip_msg_hdr_named(m, "Flow-Timer");
	uint32_t v;
	if (ft && !slice_to_u32(slice_trim(ft->value), 86400, &v))
		f->flow_timer = v;
	/* re-register before expiry: a minute ahead, or halfway for short ones */
	uint64_t refresh_ms = (exp > 120 ? exp - 60 : MAX(exp / 2, 1u)) * 1000ull;
	uint64_t interval = 0;
	if (f->outbound) {
		uint32_t per = ua->c.keepalive_s ? ua->c.keepalive_s : f->flow_timer;
		interval = ua_keepalive_ms(per, f->px->tp, 0.5);
	} else {
		/* no outbound: no keepalives the registrar has agreed to; the
		 * REGISTER refresh itself keeps the NAT binding open */
		unsigned nat =
		    ua->c.nat_refresh_s ? ua->c.nat_refresh_s : (f->px->tp == NET_UDP ? 25 : 110);
		refresh_ms = MIN(refresh_ms, (uint64_t)nat * 1000);
		interval = refresh_ms;
	}
	struct ua_event ev = {.kind = UA_EV_REGISTERED,
			      .status = m->status,
			      .expires = exp,
			      .flow_timer = f->flow_timer,
			      .interval_ms = interval,
			      .outbound = f->outbound,
			      .recovered = f->was_down,
			      .refresh = was_registered};
	f->st = UAF_REGISTERED;
	f->registered = true;
	timer_start(ua->loop, &f->t_refresh, refresh_ms, refresh_due, f);
	ua_emit(f, &ev);
	if (!f->outbound && !f->told_no_outbound) {
		f->told_no_outbound = true;
		struct ua_event no = {.kind = UA_EV_NO_OUTBOUND, .interval_ms = refresh_ms};
		ua_emit(f, &no);
	} else if (f->outbound) {
		f->told_no_outbound = false;
		uaf_ka_start(f);
	}
	if (!f->outbound)
		uaf_ka_stop(f); /* the registrar no longer takes outbound */
	ua_flow_registered(f);
}

void ua_reg_on_response(struct ua_flow *f, const struct sip_msg *m)
{
	if (!f->in_flight || m->cseq.method != SIP_REGISTER || m->cseq.num != f->cseq ||
	    !slice_eq(m->call_id, slice_cstr(f->call_id)) ||
	    !slice_eq(m->via1.branch, slice_cstr(f->branch)))
		return; /* a retransmitted answer to an earlier REGISTER: not news */
	if (m->status < 200) {
		f->rto_ms = UA_T2_MS; /* 17.1.2.2: Proceeding retransmits at T2 */
		return;
	}
	if (m->status < 300) {
		on_ok(f, m);
		return;
	}
	if (m->status == 401 || m->status == 407) {
		on_challenge(f, m);
		return;
	}
	const struct sip_hdr *me;
	uint32_t min = 0;
	if (m->status == 423 && !f->min_expires_tried && f->expires_req &&
	    (me = sip_msg_hdr(m, SIP_HDR_MIN_EXPIRES, 0)) &&
	    !slice_to_u32(slice_trim(me->value), 86400 * 7, &min) && min > f->expires_req) {
		/* RFC 3261 10.2.8: ask again with the registrar's minimum */
		f->min_expires_tried = true;
		f->expires_req = min;
		f->ua->c.expires = min; /* and for the refreshes */
		send_request(f);
		return;
	}
	char why[128];
	snprintf(why, sizeof why, "%u %.*s", m->status, (int)MIN(m->reason.l, 100), m->reason.p);
	attempt_failed(f, m->status, why, UA_EXIT_REFUSED);
}
