/* ua: one call at a time: the INVITE we send (digest, provisionals, CANCEL, ACK, BYE) or
 * the one we answer (--auto-answer), re-INVITEs for hold and resume both ways, and its
 * media and verdict at the end.
 *
 * Every request goes out on the flow the call uses (symmetric signaling);
 * the server routes the far end's requests back on it. Every wait is
 * bounded: Timer B/F (32 s) for an answer to a request, answer_s for a call
 * that rings, duration_s for a call that stands.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ua_int.h"

static void call_end(struct ua_call *c, int code, const char *why);

void uac_emit(struct ua_call *c, uint16_t status, const char *detail)
{
	struct ua_event ev = {.kind = UA_EV_CALL, .status = status, .detail = detail};
	ua_emit(c->f, &ev);
}

bool ua_call_active(const struct ua *ua)
{
	return ua->call.st != UAC_IDLE && ua->call.st != UAC_DONE;
}

static void stop_timers(struct ua_call *c)
{
	timer_cancel(&c->t_retx);
	timer_cancel(&c->t_tsx);
	timer_cancel(&c->t_answer);
	timer_cancel(&c->t_dur);
	timer_cancel(&c->t_req);
	timer_cancel(&c->t_hold);
	timer_cancel(&c->t_reinv_retx);
	timer_cancel(&c->t_reinv_tsx);
	timer_cancel(&c->t_reinv_retry);
	timer_cancel(&c->t_reok_retx);
	timer_cancel(&c->t_reok_tsx);
}

/* Request line, Via, Max-Forwards, Route, From, To, Call-ID, CSeq. */
void uac_req_head(struct ua_call *c, struct buf *b, const char *method, const char *ruri,
		  const char *branch, uint32_t cseq, bool dialog)
{
	char hp[NET_ADDR_STRLEN + 8];
	ua_contact_hostport(c->f, hp, sizeof hp);
	buf_printf(b, "%s %s SIP/2.0\r\n", method, ruri);
	buf_printf(b, "Via: SIP/2.0/%s %s;rport;branch=%s\r\n",
		   net_transport_name_upper(c->f->px->tp), hp, branch);
	buf_append_cstr(b, "Max-Forwards: 70\r\n");
	if (dialog)
		for (unsigned i = 0; i < c->n_routes; i++)
			buf_printf(b, "Route: %s\r\n", c->routes[i]);
	else
		ua_outbound_route(c->f, b);
	buf_printf(b, "From: <%s>;tag=%s\r\n", c->local_uri, c->local_tag);
	if (c->remote_tag[0])
		buf_printf(b, "To: <%s>;tag=%s\r\n", c->remote_uri, c->remote_tag);
	else
		buf_printf(b, "To: <%s>\r\n", c->remote_uri);
	buf_printf(b, "Call-ID: %s\r\nCSeq: %u %s\r\n", c->call_id, cseq, method);
}

void uac_contact(struct ua_call *c, struct buf *b)
{
	char hp[NET_ADDR_STRLEN + 8];
	ua_contact_hostport(c->f, hp, sizeof hp);
	/* RFC 5626 5.3: ;ob asks in-dialog requests to come back on this flow */
	buf_printf(b, "Contact: <%s:%s@%s;ob%s>\r\n", ua_scheme(c->f->px), c->ua->aor_user, hp,
		   ua_tp_param(c->f->px));
}

void uac_body(struct buf *b, const struct buf *sdp)
{
	buf_append_cstr(b, "User-Agent: pinhole-ua/0.1.0\r\n");
	if (sdp && sdp->len) {
		buf_printf(b, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n",
			   sdp->len);
		buf_append(b, sdp->data, sdp->len);
	} else {
		buf_append_cstr(b, "Content-Length: 0\r\n\r\n");
	}
}

/* Our SDP with direction dir; the o= version moves on only when what we say
 * changes (RFC 3264 8: a repeated SDP keeps its version). */
void uac_local_sdp(struct ua_call *c, struct ua_sdp_local *l, enum sdp_dir dir)
{
	if (!c->sess_id) {
		c->sess_id = rand_u32() % 1000000000u + 1;
		c->sdp_version = 1;
		c->our_dir = dir;
	} else if (dir != c->our_dir) {
		c->sdp_version++;
	}
	*l = (struct ua_sdp_local){.ip = c->media.sdp_ip,
				   .ip6 = net_addr_family(&c->media.local) == AF_INET6,
				   .rtp_port = c->media.sdp_rtp_port,
				   .rtcp_port = c->media.sdp_rtcp_port,
				   .sess_id = c->sess_id,
				   .version = c->sdp_version,
				   .dir = dir};
}

void uac_new_branch(char *out, size_t cap)
{
	char br[25];
	ua_hex_rand(br, 12);
	snprintf(out, cap, SIP_BRANCH_MAGIC "%s", br);
}

/* ---- the INVITE we send ---- */

static void inv_retx(void *arg)
{
	struct ua_call *c = arg;
	uaf_send(c->f, c->inv.data, c->inv.len);
	c->rto_ms *= 2; /* RFC 3261 17.1.1.2: Timer A doubles without a cap */
	timer_start(c->ua->loop, &c->t_retx, c->rto_ms, inv_retx, c);
}

static void inv_timeout(void *arg)
{
	struct ua_call *c = arg;
	if (c->st == UAC_CANCELLING)
		call_end(c, UA_EXIT_CANCELLED, "no final answer after CANCEL in 32 s");
	else
		call_end(c, UA_EXIT_TIMEOUT, "no answer to INVITE in 32 s");
}

static int send_invite(struct ua_call *c)
{
	struct ua *ua = c->ua;
	uac_new_branch(c->inv_branch, sizeof c->inv_branch);
	c->inv_cseq = ++c->cseq;
	buf_reset(&c->inv);
	uac_req_head(c, &c->inv, "INVITE", c->ruri, c->inv_branch, c->inv_cseq, false);
	uac_contact(c, &c->inv);
	buf_append_cstr(&c->inv, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
				 "Supported: outbound\r\n");
	if (c->auth.have) {
		struct ua_challenge ch = {
		    .alg = c->auth.alg,
		    .realm = slice_cstr(c->auth.realm),
		    .nonce = slice_cstr(c->auth.nonce),
		    .opaque = c->auth.has_opaque ? slice_cstr(c->auth.opaque) : SLICE_NULL,
		    .qop_auth = c->auth.qop_auth,
		};
		buf_append_cstr(&c->inv,
				c->auth.proxy ? "Proxy-Authorization: " : "Authorization: ");
		if (ua_digest_credentials(&ch, ua->auth_user, ua->c.password, "INVITE", c->ruri,
					  ++c->auth.nc, NULL, &c->inv))
			return EINVAL;
		buf_append_cstr(&c->inv, "\r\n");
	}
	struct buf sdp;
	buf_init(&sdp);
	struct ua_sdp_local l;
	uac_local_sdp(c, &l, SDP_DIR_SENDRECV);
	ua_sdp_offer(&l, &sdp);
	uac_body(&c->inv, &sdp);
	buf_free(&sdp);
	if (c->inv.failed)
		return ENOMEM;
	c->st = UAC_CALLING;
	uaf_send(c->f, c->inv.data, c->inv.len);
	if (c->f->px->tp == NET_UDP) {
		c->rto_ms = UA_T1_MS;
		timer_start(ua->loop, &c->t_retx, c->rto_ms, inv_retx, c);
	}
	timer_start(ua->loop, &c->t_tsx, UA_TIMER_F_MS, inv_timeout, c);
	return 0;
}

static void stun_told(struct ua_call *c)
{
	char what[400];
	if (c->ua->c.has_turn) {
		uam_turn_describe(&c->media, what, sizeof what);
		uac_emit(c, 0, what);
		return;
	}
	if (!c->ua->c.has_stun)
		return;
	uam_stun_describe(&c->media, what, sizeof what);
	uac_emit(c, 0, what);
}

/* --turn: the call cannot go on without an allocation (exit 9). */
static bool turn_failed(struct ua_call *c)
{
	if (!c->ua->c.has_turn || uam_turn_ok(&c->media))
		return false;
	char what[400];
	uam_turn_describe(&c->media, what, sizeof what);
	call_end(c, UA_EXIT_TURN, what);
	return true;
}

/* Starts what must come before our SDP: the TURN allocations (--turn) or
 * the STUN mappings (--stun); false when there is nothing to wait for. */
static bool media_prepare(struct ua_call *c, uam_stun_h *h)
{
	struct ua *ua = c->ua;
	if (ua->c.has_turn) {
		if (uam_turn_start(&c->media, &ua->c, h, c)) {
			h(&c->media, c); /* no allocation: h ends the call */
		}
		return true;
	}
	if (ua->c.has_stun) {
		uam_stun_start(&c->media, &ua->c.stun, h, c);
		return true;
	}
	return false;
}

static void stun_then_invite(struct ua_media *md, void *arg)
{
	(void)md;
	struct ua_call *c = arg;
	stun_told(c);
	if (turn_failed(c))
		return;
	char what[512];
	snprintf(what, sizeof what, "calling %s, media at %s:%u (rtcp %u)", c->ruri,
		 c->media.sdp_ip, c->media.sdp_rtp_port, c->media.sdp_rtcp_port);
	uac_emit(c, 0, what);
	if (send_invite(c))
		call_end(c, UA_EXIT_ERROR, "cannot build the INVITE");
}

void ua_call_start(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	struct ua_call *c = &ua->call;
	if (ua->call_started)
		return;
	ua->call_started = true;
	c->ua = ua;
	c->f = f;
	c->uas = false;
	char id[33];
	ua_hex_rand(id, 16);
	snprintf(c->call_id, sizeof c->call_id, "%s", id);
	ua_hex_rand(c->local_tag, 8);
	c->cseq = rand_u32() % 10000;
	snprintf(c->local_uri, sizeof c->local_uri, "%s", ua->c.aor);
	snprintf(c->remote_uri, sizeof c->remote_uri, "%s", ua->c.call_uri);
	snprintf(c->ruri, sizeof c->ruri, "%s", ua->c.call_uri);
	int err = uam_open(&c->media, ua->loop, &f->local);
	if (err) {
		c->st = UAC_CALLING;
		call_end(c, UA_EXIT_ERROR, "cannot open the RTP sockets");
		return;
	}
	if (ua->c.has_stun || ua->c.has_turn) {
		c->st = UAC_CALLING; /* a signal meanwhile ends it at once */
		media_prepare(c, stun_then_invite);
		return;
	}
	stun_then_invite(&c->media, c);
}

/* The ACK of a non-2xx final answer: part of the INVITE transaction (17.1.1.3). */
static void ack_failure(struct ua_call *c, const struct sip_msg *m)
{
	struct buf b;
	buf_init(&b);
	char saved[128];
	snprintf(saved, sizeof saved, "%s", c->remote_tag);
	slice_to_cstr(m->to_tag, c->remote_tag, sizeof c->remote_tag);
	uac_req_head(c, &b, "ACK", c->ruri, c->inv_branch, c->inv_cseq, false);
	uac_body(&b, NULL);
	uaf_send(c->f, b.data, b.len);
	buf_free(&b);
	snprintf(c->remote_tag, sizeof c->remote_tag, "%s", saved);
}

/* Record-Route and Contact of a message: the dialog's route set (reversed
 * for the caller, RFC 3261 12.1.2) and remote target. */
static void take_dialog(struct ua_call *c, const struct sip_msg *m, bool reverse)
{
	char rr[UA_ROUTES_MAX][300];
	unsigned n = 0;
	size_t count = sip_msg_hdr_count(m, SIP_HDR_RECORD_ROUTE);
	for (size_t i = 0; i < count; i++) {
		const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_RECORD_ROUTE, i);
		size_t pos = 0;
		struct slice v;
		while (h && sip_hdr_next_value(h->value, &pos, &v) && n < UA_ROUTES_MAX)
			if (v.l < sizeof rr[0])
				slice_to_cstr(v, rr[n++], sizeof rr[0]);
	}
	c->n_routes = n;
	for (unsigned i = 0; i < n; i++)
		memcpy(c->routes[i], rr[reverse ? n - 1 - i : i], sizeof rr[0]);
	const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	c->target[0] = '\0';
	if (ct && sip_nameaddr_parse(ct->value, &na) == 0 && na.uri_s.l < sizeof c->target)
		slice_to_cstr(na.uri_s, c->target, sizeof c->target);
	if (!c->target[0])
		snprintf(c->target, sizeof c->target, "%s", c->remote_uri);
}

static void dur_due(void *arg);

static void ack_2xx(struct ua_call *c)
{
	char br[48];
	uac_new_branch(br, sizeof br);
	buf_reset(&c->ack);
	uac_req_head(c, &c->ack, "ACK", c->target, br, c->inv_cseq, true);
	uac_body(&c->ack, NULL);
	uaf_send(c->f, c->ack.data, c->ack.len);
}

static void on_invite_2xx(struct ua_call *c, const struct sip_msg *m)
{
	if (c->st == UAC_CONFIRMED || c->st == UAC_BYE_SENT) {
		/* a retransmitted 200: our ACK was lost */
		if (c->ack.len)
			uaf_send(c->f, c->ack.data, c->ack.len);
		return;
	}
	bool cancelled = c->st == UAC_CANCELLING;
	timer_cancel(&c->t_retx);
	timer_cancel(&c->t_tsx);
	timer_cancel(&c->t_answer);
	slice_to_cstr(m->to_tag, c->remote_tag, sizeof c->remote_tag);
	take_dialog(c, m, true);
	ack_2xx(c);
	c->st = UAC_CONFIRMED;
	c->status = m->status;
	int err = ua_sdp_read(m->body, &c->remote);
	if (err) {
		uac_emit(c, m->status,
			 err == ENOTSUP ? "answered, but no PCMU/PCMA audio in the SDP"
					: "answered with an SDP we cannot read");
		c->exit_code = UA_EXIT_REFUSED;
		ua_call_hangup(c->ua);
		return;
	}
	char what[300];
	snprintf(what, sizeof what, "answered: %s to %s:%u%s", rtp_g711_name(c->remote.pt),
		 c->remote.addr, c->remote.port, c->remote.rtcp_mux ? " rtcp-mux" : "");
	uac_emit(c, m->status, what);
	c->our_dir = SDP_DIR_SENDRECV;
	if (uam_start(&c->media, &c->remote, &c->ua->c)) {
		c->exit_code = UA_EXIT_ERROR;
		uac_emit(c, 0, "cannot start the media (the --record file?)");
		ua_call_hangup(c->ua);
		return;
	}
	if (cancelled) {
		/* the CANCEL lost the race: the call stands, so end it now */
		c->exit_code = UA_EXIT_CANCELLED;
		ua_call_hangup(c->ua);
		return;
	}
	timer_start(c->ua->loop, &c->t_dur,
		    (uint64_t)(c->ua->c.duration_s ? c->ua->c.duration_s : 10) * 1000, dur_due, c);
	if (c->ua->c.hold_s)
		timer_start(c->ua->loop, &c->t_hold, (uint64_t)c->ua->c.hold_s * 1000, uac_hold_due,
			    c);
}

static void keep_auth(struct ua_call *c, const struct ua_challenge *ch, bool proxy)
{
	struct ua_auth *a = &c->auth;
	slice_to_cstr(ch->realm, a->realm, sizeof a->realm);
	slice_to_cstr(ch->nonce, a->nonce, sizeof a->nonce);
	a->has_opaque = ch->opaque.p != NULL;
	slice_to_cstr(ch->opaque, a->opaque, sizeof a->opaque);
	a->alg = ch->alg;
	a->qop_auth = ch->qop_auth;
	a->proxy = proxy;
	a->nc = 0;
	a->have = true;
}

static void answer_due(void *arg);

static void on_invite_response(struct ua_call *c, const struct sip_msg *m)
{
	if (m->status < 200) {
		timer_cancel(&c->t_retx);
		if (c->st == UAC_CALLING) {
			c->st = UAC_PROCEEDING;
			/* a proceeding INVITE waits for its answer as long as answer_s */
			timer_cancel(&c->t_tsx);
			timer_start(c->ua->loop, &c->t_answer,
				    (uint64_t)(c->ua->c.answer_s ? c->ua->c.answer_s : 60) * 1000,
				    answer_due, c);
		}
		if (m->status > 100) {
			char r[64];
			slice_to_cstr(m->reason, r, sizeof r);
			uac_emit(c, m->status, r);
		}
		return;
	}
	if (m->status < 300) {
		on_invite_2xx(c, m);
		return;
	}
	if (c->st != UAC_CALLING && c->st != UAC_PROCEEDING && c->st != UAC_CANCELLING)
		return; /* a retransmission of a final answer already handled */
	ack_failure(c, m);
	timer_cancel(&c->t_retx);
	timer_cancel(&c->t_tsx);
	timer_cancel(&c->t_answer);
	c->status = m->status;
	if ((m->status == 401 || m->status == 407) && c->st != UAC_CANCELLING) {
		struct ua_challenge ch;
		if (ua_challenge_pick(m, m->status == 407, &ch) == 0 &&
		    !(c->creds_fresh && !ch.stale) && ++c->challenges <= 3 &&
		    ch.realm.l < sizeof c->auth.realm && ch.nonce.l < sizeof c->auth.nonce &&
		    ch.opaque.l < sizeof c->auth.opaque) {
			keep_auth(c, &ch, m->status == 407);
			c->creds_fresh = true;
			if (send_invite(c))
				call_end(c, UA_EXIT_ERROR, "cannot build the INVITE");
			return;
		}
		call_end(c, UA_EXIT_AUTH, "credentials refused for the INVITE");
		return;
	}
	char why[160], r[64];
	slice_to_cstr(m->reason, r, sizeof r);
	snprintf(why, sizeof why, "%u %s", m->status, r);
	if (c->st == UAC_CANCELLING)
		call_end(c, UA_EXIT_CANCELLED, why);
	else
		call_end(c, UA_EXIT_REFUSED, why);
}

/* ---- CANCEL and BYE ---- */

static void req_retx(void *arg)
{
	struct ua_call *c = arg;
	uaf_send(c->f, c->req.data, c->req.len);
	c->rto_ms = MIN(c->rto_ms * 2, (uint64_t)UA_T2_MS);
	timer_start(c->ua->loop, &c->t_retx, c->rto_ms, req_retx, c);
}

static void bye_timeout(void *arg)
{
	struct ua_call *c = arg;
	call_end(c, c->exit_code, "no answer to BYE in 32 s");
}

static void send_req(struct ua_call *c)
{
	uaf_send(c->f, c->req.data, c->req.len);
	if (c->f->px->tp == NET_UDP) {
		c->rto_ms = UA_T1_MS;
		timer_start(c->ua->loop, &c->t_retx, c->rto_ms, req_retx, c);
	}
}

static void send_cancel(struct ua_call *c)
{
	/* RFC 3261 9.1: the INVITE's Request-URI, Via branch, Call-ID, From,
	 * To and CSeq number, and its Route */
	buf_reset(&c->req);
	uac_req_head(c, &c->req, "CANCEL", c->ruri, c->inv_branch, c->inv_cseq, false);
	uac_body(&c->req, NULL);
	c->st = UAC_CANCELLING;
	send_req(c);
	timer_start(c->ua->loop, &c->t_tsx, UA_TIMER_F_MS, inv_timeout, c);
	uac_emit(c, 0, "cancelling");
}

void uac_send_bye(struct ua_call *c)
{
	uam_stop(&c->media); /* its last RTCP goes before the BYE */
	timer_cancel(&c->t_hold);
	timer_cancel(&c->t_reinv_retx);
	timer_cancel(&c->t_reinv_tsx);
	timer_cancel(&c->t_reinv_retry);
	timer_cancel(&c->t_reok_retx);
	timer_cancel(&c->t_reok_tsx);
	c->reinv_pending = c->reok_pending = false;
	char br[48];
	uac_new_branch(br, sizeof br);
	buf_reset(&c->req);
	uac_req_head(c, &c->req, "BYE", c->target, br, ++c->cseq, true);
	uac_body(&c->req, NULL);
	c->st = UAC_BYE_SENT;
	timer_cancel(&c->t_retx);
	send_req(c);
	timer_start(c->ua->loop, &c->t_req, UA_TIMER_F_MS, bye_timeout, c);
	uac_emit(c, 0, "hanging up");
}

static void dur_due(void *arg)
{
	struct ua_call *c = arg;
	if (c->st == UAC_CONFIRMED || c->st == UAC_ANSWERED)
		uac_send_bye(c);
}

static void answer_due(void *arg)
{
	struct ua_call *c = arg;
	if (!c->exit_code)
		c->exit_code = UA_EXIT_CANCELLED;
	uac_emit(c, 0, "no answer in time");
	send_cancel(c);
}

void ua_call_hangup(struct ua *ua)
{
	struct ua_call *c = &ua->call;
	switch (c->st) {
	case UAC_CALLING:
		/* RFC 3261 9.1: no CANCEL before a provisional; nothing is ringing
		 * yet that we know of, so end here */
		call_end(c, UA_EXIT_CANCELLED, "cancelled before any answer");
		break;
	case UAC_PROCEEDING:
		if (!c->exit_code)
			c->exit_code = UA_EXIT_CANCELLED;
		timer_cancel(&c->t_answer);
		send_cancel(c);
		break;
	case UAC_ANSWERED:
		if (!c->req.len) {
			/* still asking STUN, nothing sent: the INVITE's transaction
			 * times out at the far end */
			call_end(c, c->exit_code, "stopped before answering");
			break;
		}
		/* fall through */
	case UAC_CONFIRMED:
		timer_cancel(&c->t_dur);
		uac_send_bye(c);
		break;
	default:
		break;
	}
}

/* ---- the end: verdict ---- */

static void call_end(struct ua_call *c, int code, const char *why)
{
	struct ua *ua = c->ua;
	if (c->st == UAC_DONE || c->st == UAC_IDLE)
		return;
	bool had_media = c->media.start_us != 0;
	stop_timers(c);
	uam_stop(&c->media);
	if (why)
		uac_emit(c, c->status, why);
	int rc = code;
	if (had_media) {
		struct rtp_verdict_in in;
		struct rtp_verdict_out out;
		uam_verdict(&c->media, ua->c.echo, &in);
		rtp_verdict_decide(&in, &out);
		if (c->media.held_ms) {
			/* said so, since the counts leave those seconds out */
			size_t n = strlen(out.cause);
			snprintf(out.cause + n, sizeof out.cause - n,
				 " The far end was not to send for %.1f s (hold): no RTP was "
				 "expected from it then.",
				 (double)c->media.held_ms / 1000.0);
		}
		if (c->media.stun_varies) {
			size_t n = strlen(out.cause);
			char a[NET_ADDR_STRLEN], b[NET_ADDR_STRLEN];
			snprintf(out.cause + n, sizeof out.cause - n,
				 " STUN was not enough: our NAT maps each destination to its own "
				 "port (%s to the STUN server, %s to its other address).",
				 net_addr_fmt(&c->media.stun.mapped[0], a, sizeof a),
				 net_addr_fmt(&c->media.stun.mapped[2], b, sizeof b));
		}
		struct ua_event ev = {
		    .kind = UA_EV_VERDICT, .verdict_in = &in, .verdict_out = &out};
		ua_emit(c->f, &ev);
		if (!rc && out.verdict != RTP_VERDICT_TWO_WAY)
			rc = UA_EXIT_NO_AUDIO;
	}
	uam_close(&c->media);
	c->st = UAC_DONE;
	if (ua->c.load) {
		/* ua load: the ua stays registered for the next call */
		struct ua_event ev = {.kind = UA_EV_CALL,
				      .status = c->status,
				      .call_end = true,
				      .uas = c->uas,
				      .exit_code = rc};
		ua_emit(c->f, &ev);
		c->st = UAC_IDLE;
		ua->call_started = false;
		if (ua->shutdown_pending)
			ua_shutdown(ua);
		return;
	}
	if (c->uas) {
		if (rc && (!ua->call_exit || rc == UA_EXIT_NO_AUDIO))
			ua->call_exit = rc;
		c->st = UAC_IDLE; /* ready for the next call */
		if (ua->shutdown_pending)
			ua_shutdown(ua);
		return;
	}
	ua->exit_code = rc;
	ua_shutdown(ua);
}

static bool same_call(const struct ua_call *c, const struct sip_msg *m)
{
	return ua_call_active(c->ua) && slice_eq(m->call_id, slice_cstr(c->call_id));
}

void ua_call_on_response(struct ua_flow *f, const struct sip_msg *m)
{
	struct ua_call *c = &f->ua->call;
	if (!same_call(c, m)) {
		ua_bad_message(f, "a response to no request of ours");
		return;
	}
	switch (m->cseq.method) {
	case SIP_INVITE:
		if (c->reinv_pending && m->cseq.num == c->reinv_cseq)
			uac_reinvite_response(c, m);
		else if (!c->uas && m->cseq.num == c->inv_cseq)
			on_invite_response(c, m);
		else if (c->reack.len && m->status < 300 && m->status >= 200 &&
			 m->cseq.num == c->reinv_cseq)
			/* the re-INVITE's 200 again: our ACK was lost */
			uaf_send(c->f, c->reack.data, c->reack.len);
		break;
	case SIP_BYE:
		if (m->status >= 200 && c->st == UAC_BYE_SENT) {
			char r[64], why[96];
			slice_to_cstr(m->reason, r, sizeof r);
			snprintf(why, sizeof why, "ended (BYE answered %u %s)", m->status, r);
			c->status = m->status;
			call_end(c, c->exit_code, why);
		}
		break;
	case SIP_CANCEL:
		if (m->status >= 200)
			timer_cancel(&c->t_retx); /* the INVITE's 487 ends it */
		break;
	default:
		break;
	}
}

/* ---- the INVITE we answer (--auto-answer) ---- */

/* A response to m on f, with an SDP body when sdp is given (the builder
 * writes Content-Length: 0 last; a body replaces that line). */
int uac_respond(struct ua_flow *f, const struct sip_msg *m, uint16_t status, const char *tag,
		const char *extra, const struct buf *sdp, struct buf *out)
{
	buf_reset(out);
	int err = sip_build_response(out, m, status, NULL, SLICE_NULL,
				     tag ? slice_cstr(tag) : SLICE_NULL, extra);
	static const char cl0[] = "Content-Length: 0\r\n\r\n";
	if (!err && sdp && out->len >= sizeof cl0 - 1 &&
	    memcmp(out->data + out->len - (sizeof cl0 - 1), cl0, sizeof cl0 - 1) == 0) {
		out->len -= sizeof cl0 - 1;
		uac_body(out, sdp);
	}
	if (err || out->failed)
		return err ? err : ENOMEM;
	f->ua->stats.requests_answered++;
	uaf_send(f, out->data, out->len);
	return 0;
}

void uac_respond_once(struct ua_flow *f, const struct sip_msg *m, uint16_t status, const char *tag)
{
	struct buf b;
	buf_init(&b);
	uac_respond(f, m, status, tag, NULL, NULL, &b);
	buf_free(&b);
}

static void ok_retx(void *arg)
{
	struct ua_call *c = arg;
	uaf_send(c->f, c->req.data, c->req.len);
	c->rto_ms = MIN(c->rto_ms * 2, (uint64_t)UA_T2_MS);
	timer_start(c->ua->loop, &c->t_retx, c->rto_ms, ok_retx, c);
}

/* RFC 3261 13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE. */
static void ok_timeout(void *arg)
{
	struct ua_call *c = arg;
	timer_cancel(&c->t_retx);
	uac_emit(c, 0, "no ACK to our 200 in 32 s");
	c->exit_code = UA_EXIT_TIMEOUT;
	uac_send_bye(c);
}

static void answer_invite(struct ua_call *c, const struct sip_msg *m);

static void stun_then_answer(struct ua_media *md, void *arg)
{
	(void)md;
	struct ua_call *c = arg;
	stun_told(c);
	struct sip_msg *m = malloc(sizeof *m); /* ~10 kB: not on the stack */
	struct sip_parse_error pe;
	if (!m || sip_msg_parse(m, (const char *)c->inv.data, c->inv.len, false, &pe)) {
		free(m);
		call_end(c, UA_EXIT_ERROR, "cannot read the kept INVITE again");
		return;
	}
	if (c->ua->c.has_turn && !uam_turn_ok(&c->media)) {
		uac_respond_once(c->f, m, 500, c->local_tag);
		free(m);
		buf_free(&c->inv);
		turn_failed(c);
		return;
	}
	answer_invite(c, m);
	free(m);
	buf_free(&c->inv);
}

/* A call's state made new for the next one (the last one is over). */
static void call_reset(struct ua_call *c)
{
	struct ua *ua = c->ua;
	buf_free(&c->inv);
	buf_free(&c->ack);
	buf_free(&c->req);
	buf_free(&c->reinv);
	buf_free(&c->reack);
	buf_free(&c->reok);
	memset(c, 0, sizeof *c);
	c->ua = ua;
	buf_init(&c->inv);
	buf_init(&c->ack);
	buf_init(&c->req);
}

static void incoming(struct ua_flow *f, const struct sip_msg *m)
{
	struct ua *ua = f->ua;
	struct ua_call *c = &ua->call;
	call_reset(c);
	c->f = f;
	c->uas = true;
	int err = ua_sdp_read(m->body, &c->remote);
	if (err || m->call_id.l >= sizeof c->call_id || m->from_tag.l >= sizeof c->remote_tag ||
	    m->from.uri_s.l >= sizeof c->remote_uri || m->to.uri_s.l >= sizeof c->local_uri) {
		uac_respond_once(f, m, 488, NULL);
		struct ua_event ev = {.kind = UA_EV_REQUEST,
				      .status = 488,
				      .method = "INVITE",
				      .detail = "no PCMU/PCMA audio offer we can use"};
		ua_emit(f, &ev);
		return;
	}
	slice_to_cstr(m->call_id, c->call_id, sizeof c->call_id);
	slice_to_cstr(m->from_tag, c->remote_tag, sizeof c->remote_tag);
	slice_to_cstr(m->from.uri_s, c->remote_uri, sizeof c->remote_uri);
	slice_to_cstr(m->to.uri_s, c->local_uri, sizeof c->local_uri);
	ua_hex_rand(c->local_tag, 8);
	c->inv_cseq = c->remote_cseq = m->cseq.num;
	c->cseq = rand_u32() % 10000;
	take_dialog(c, m, false);
	if (uam_open(&c->media, ua->loop, &f->local)) {
		uac_respond_once(f, m, 500, c->local_tag);
		return;
	}
	c->st = UAC_ANSWERED;
	if (ua->c.has_stun || ua->c.has_turn) {
		/* the 200 waits (at most 3.5 s for STUN; TURN's own timeouts) for
		 * the mapping or the allocation; the INVITE is kept to answer it
		 * then, and its retransmissions meanwhile get nothing */
		buf_reset(&c->inv);
		buf_append(&c->inv, m->raw.p, m->raw.l);
		media_prepare(c, stun_then_answer);
		return;
	}
	answer_invite(c, m);
}

static void answer_invite(struct ua_call *c, const struct sip_msg *m)
{
	struct ua *ua = c->ua;
	struct ua_flow *f = c->f;
	int err;
	char from[512];
	snprintf(from, sizeof from, "incoming from %s, answering: %s to %s:%u%s", c->remote_uri,
		 rtp_g711_name(c->remote.pt), c->remote.addr, c->remote.port,
		 c->remote.rtcp_mux ? " rtcp-mux" : "");
	uac_emit(c, 0, from);
	/* the 200 carries the Record-Route (12.1.1) and our Contact */
	struct buf extra, sdp;
	buf_init(&extra);
	buf_init(&sdp);
	size_t n = sip_msg_hdr_count(m, SIP_HDR_RECORD_ROUTE);
	for (size_t i = 0; i < n; i++) {
		const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_RECORD_ROUTE, i);
		buf_printf(&extra, "Record-Route: %.*s\r\n", (int)h->value.l, h->value.p);
	}
	uac_contact(c, &extra);
	buf_append_cstr(&extra, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n");
	buf_append(&extra, "", 1); /* the builder takes a C string */
	struct ua_sdp_local l;
	uac_local_sdp(c, &l, ua_sdp_answer_dir(c->remote.dir, SDP_DIR_NONE));
	ua_sdp_answer(&l, &c->remote, &sdp);
	if (c->remote.rtcp_mux)
		c->media.mux = true;
	err = extra.failed
		  ? ENOMEM
		  : uac_respond(f, m, 200, c->local_tag, (const char *)extra.data, &sdp, &c->req);
	buf_free(&extra);
	buf_free(&sdp);
	if (err) {
		call_end(c, UA_EXIT_ERROR, "cannot build the 200");
		return;
	}
	if (f->px->tp == NET_UDP) {
		c->rto_ms = UA_T1_MS;
		timer_start(ua->loop, &c->t_retx, c->rto_ms, ok_retx, c);
	}
	timer_start(ua->loop, &c->t_tsx, UA_TIMER_F_MS, ok_timeout, c);
	/* media starts now: a latching relay learns our address from our first
	 * packets, and the caller's may come before its ACK */
	if (uam_start(&c->media, &c->remote, &ua->c))
		uac_emit(c, 0, "cannot start the media (the --record file?)");
	timer_start(ua->loop, &c->t_dur,
		    (uint64_t)(ua->c.duration_s ? ua->c.duration_s : 3600) * 1000, dur_due, c);
}

bool ua_call_on_request(struct ua_flow *f, const struct sip_msg *m)
{
	struct ua *ua = f->ua;
	struct ua_call *c = &ua->call;
	bool mine = same_call(c, m);
	switch (m->method) {
	case SIP_INVITE:
		if (mine && c->uas && m->cseq.num == c->inv_cseq) {
			if (c->st == UAC_ANSWERED && c->req.len)
				uaf_send(f, c->req.data, c->req.len); /* our 200 was lost */
			return true;
		}
		if (mine) {
			uac_reinvite(c, m);
			return true;
		}
		if (!ua->c.auto_answer)
			return false;
		if (ua_call_active(ua) || ua->shutting_down || ua->shutdown_pending) {
			uac_respond_once(f, m, 486, NULL);
			return true;
		}
		incoming(f, m);
		return true;
	case SIP_ACK:
		if (mine && c->uas && c->st == UAC_ANSWERED && m->cseq.num == c->inv_cseq) {
			timer_cancel(&c->t_retx);
			timer_cancel(&c->t_tsx);
			c->st = UAC_CONFIRMED;
			uac_emit(c, 0, "confirmed (ACK)");
			if (ua->c.hold_s)
				timer_start(ua->loop, &c->t_hold, (uint64_t)ua->c.hold_s * 1000,
					    uac_hold_due, c);
		} else if (mine && c->reok_pending && m->cseq.num == c->reok_cseq) {
			uac_reinvite_ack(c, m);
		}
		return mine;
	case SIP_BYE:
		if (!mine)
			return false;
		uac_respond_once(f, m, 200, NULL);
		call_end(c, c->exit_code, "ended by the far end (BYE)");
		return true;
	case SIP_CANCEL:
		if (!mine)
			return false;
		uac_respond_once(f, m, 200, NULL); /* the INVITE is answered already */
		return true;
	default:
		return false;
	}
}

bool ua_in_call(const struct ua *ua)
{
	return ua_call_active(ua);
}

int ua_call_place(struct ua *ua, const char *uri)
{
	if (ua->shutting_down || ua->shutdown_pending || ua->done)
		return ESHUTDOWN;
	if (ua_call_active(ua) || ua->call_started)
		return EBUSY;
	if (strlen(uri) >= sizeof ua->c.call_uri)
		return EINVAL;
	struct ua_flow *f = NULL;
	for (unsigned i = 0; i < ua->n && !f; i++)
		if (ua->f[i].st == UAF_REGISTERED)
			f = &ua->f[i];
	if (!f)
		return ENOTCONN;
	snprintf(ua->c.call_uri, sizeof ua->c.call_uri, "%s", uri);
	call_reset(&ua->call);
	ua_call_start(f);
	return 0;
}

void ua_call_free(struct ua *ua)
{
	struct ua_call *c = &ua->call;
	stop_timers(c);
	uam_close(&c->media);
	buf_free(&c->inv);
	buf_free(&c->ack);
	buf_free(&c->req);
	buf_free(&c->reinv);
	buf_free(&c->reack);
	buf_free(&c->reok);
}
