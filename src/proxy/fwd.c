/* Stateful forwarding (RFC 3261 16.6-16.7): branches, the best final response, CANCEL; and stateless responses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

struct proxy_call;

struct branch {
	struct proxy_call *pc;
	struct ctsx *ct;
	uint16_t status; /* last status seen; 0 = none */
	bool done;
};

struct proxy_call {
	struct proxy *p;
	struct stsx *st; /* NULL once the server transaction ended */
	struct branch br[PROXY_MAX_BRANCHES];
	size_t n_br, pending;
	uint16_t best_status;
	struct buf best; /* best final so far, ready to send; empty = synthesise */
	bool final_sent;
	struct proxy_media media;
	unsigned flow_timer; /* edge-only REGISTER: Flow-Timer for its 2xx (upstream.c) */
	/* edge-only: sent to the registrar for a phone (upstream.c); until
	 * something rings, a refusal goes back once, bounded (no reflection) */
	bool upstream, rang;
	struct proxy_call *prev, *next; /* proxy->calls; guarded by calls_lock */
};

static void call_link(struct proxy_call *pc)
{
	struct proxy *p = pc->p;
	pthread_mutex_lock(&p->calls_lock);
	pc->next = p->calls;
	if (p->calls)
		p->calls->prev = pc;
	p->calls = pc;
	pthread_mutex_unlock(&p->calls_lock);
}

static void call_free(struct proxy_call *pc)
{
	struct proxy *p = pc->p;
	pthread_mutex_lock(&p->calls_lock);
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		p->calls = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	pthread_mutex_unlock(&p->calls_lock);
	buf_free(&pc->best);
	free(pc);
}

static void call_maybe_free(struct proxy_call *pc)
{
	if (pc->st || pc->pending)
		return;
	call_free(pc);
}

void proxy_calls_free_all(struct proxy *p)
{
	while (p->calls) {
		struct proxy_call *pc = p->calls;
		/* its transactions are freed by the edge without callbacks */
		if (pc->st)
			stsx_set_owner(pc->st, NULL, NULL, NULL);
		for (size_t i = 0; i < pc->n_br; i++)
			if (pc->br[i].ct)
				ctsx_detach(pc->br[i].ct);
		call_free(pc);
	}
}

static void cancel_pending(struct proxy_call *pc)
{
	for (size_t i = 0; i < pc->n_br; i++)
		if (!pc->br[i].done && pc->br[i].ct)
			ctsx_cancel(pc->br[i].ct);
}

/* RFC 3261 16.7 step 6: 6xx first, then the lowest class; 503 becomes 500. */
static bool better(uint16_t cand, uint16_t best)
{
	if (!best)
		return true;
	if (best >= 600)
		return false;
	if (cand >= 600)
		return true;
	return cand / 100 < best / 100;
}

static void send_best(struct proxy_call *pc)
{
	if (!pc->st || pc->final_sent)
		return;
	pc->final_sent = true;
	/* a failed (or cancelled) initial INVITE: the call never was */
	if (pc->media.engaged && pc->media.initial)
		proxy_media_end(pc->p, slice_cstr(pc->media.call_id));
	uint16_t s = pc->best_status ? pc->best_status : 408;
	/* The registrar behind this edge refused it (nothing rang): as if it
	 * was refused here, one bounded answer, since whoever sent it may have
	 * used someone else's address; Timer G would resend it a dozen times */
	bool once = pc->upstream && !pc->rang;
	if (pc->best.len && s != 503 && once)
		stsx_pass_refusal(pc->st, s, pc->best.data, pc->best.len);
	else if (pc->best.len && s != 503)
		stsx_send_response(pc->st, s, pc->best.data, pc->best.len);
	else if (once)
		stsx_reject(pc->st, s == 503 ? 500 : s,
			    s == 503 ? "Next Hop Unavailable" : sip_reason_phrase(s), NULL);
	else if (s == 503)
		stsx_reply(pc->st, 500, "Next Hop Unavailable", NULL);
	else
		stsx_reply(pc->st, s, sip_reason_phrase(s), NULL);
}

/* The response without our Via (and with a new body when given, and the
 * edge's Flow-Timer when not 0), ready to go upstream. */
static int strip_via(const struct sip_msg *m, const struct buf *body, unsigned flow_timer,
		     struct buf *out)
{
	struct sip_editor ed;
	sip_editor_init(&ed, m);
	sip_edit_remove_first_value(&ed, m->via1_hdr);
	proxy_flow_timer_edit(&ed, m, flow_timer);
	if (body && body->len)
		sip_edit_set_body(&ed, buf_slice(body));
	int err = sip_edit_apply(&ed, out);
	sip_editor_free(&ed);
	return err;
}

/* Parses the Via value after the top one (the previous hop), if any; raw
 * (may be NULL) gets its text. */
static bool second_via(const struct sip_msg *m, struct sip_via *out, struct slice *raw)
{
	bool seen_first = false;
	for (size_t i = m->via1_hdr; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_VIA)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			if (!seen_first) {
				seen_first = true;
				continue;
			}
			if (raw)
				*raw = v;
			return sip_via_parse(v, out) == 0;
		}
	}
	return false;
}

/* Where a response goes without a server transaction (16.11 / 18.2.2): only
 * one to what we sent, along the next Via or the flow in our Via's token. */
static bool upstream_flow(struct proxy *p, const struct sip_msg *m, struct flow *f)
{
	if (!edge_is_local(p->edge, m->via1.host, m->via1.port))
		return false;
	struct sip_param ft;
	if (sip_param_find(m->via1.params, "ft", &ft) && ft.has_value)
		return edge_flow_token_decode(p->edge, ft.value, f) == 0;
	struct sip_via v;
	if (!second_via(m, &v, NULL))
		return false;
	struct slice host = v.received.l ? v.received : v.host;
	uint32_t port = v.port ? v.port : 5060;
	if (v.rport_value.l)
		slice_to_u32(v.rport_value, 65535, &port);
	struct net_addr dst;
	if (net_addr_from_host(host, (uint16_t)port, &dst))
		return false;
	int li = net_listener_find(edge_net(p->edge), NET_UDP, net_addr_family(&dst));
	if (li < 0)
		return false;
	net_flow_udp(edge_net(p->edge), (unsigned)li, &dst, f);
	return true;
}

static void on_branch(struct ctsx *ct, const struct edge_rx *rx, uint16_t status, void *arg)
{
	(void)ct;
	struct branch *b = arg;
	struct proxy_call *pc = b->pc;
	if (status == 100)
		return;
	b->status = status;
	/* the BYE of the relayed dialog was answered (481: no such dialog there
	 * any more) or timed out: the call is over */
	if (pc->media.bye_ends && status >= 200 && (status < 300 || status == 481 || !rx)) {
		pc->media.bye_ends = false;
		proxy_media_end(pc->p, slice_cstr(pc->media.call_id));
	}
	struct buf out, sdp;
	buf_init(&out);
	buf_init(&sdp);
	int merr = rx ? proxy_media_response(pc->p, &pc->media, rx, &sdp) : ENOENT;
	if (merr && merr != ENOENT) {
		buf_free(&sdp);
		if (status < 200)
			return; /* a provisional whose SDP the relay refused: not passed on */
		if (status < 300) {
			/* the answer cannot be relayed: the call must not go on half-relayed */
			b->done = true;
			pc->pending--;
			if (pc->st && !pc->final_sent) {
				pc->final_sent = true;
				stsx_reply(pc->st, 500, "Media Relay Failed", NULL);
			}
			proxy_media_end(pc->p, slice_cstr(pc->media.call_id));
			cancel_pending(pc);
			b->ct = NULL;
			call_maybe_free(pc);
			return;
		}
	}
	if (rx && strip_via(rx->msg, &sdp, pc->flow_timer, &out)) {
		buf_free(&out);
		buf_free(&sdp);
		return;
	}
	buf_free(&sdp);
	if (status < 200) {
		pc->rang = true;
		if (pc->st && !pc->final_sent)
			stsx_send_response(pc->st, status, out.data, out.len);
		buf_free(&out);
		return;
	}
	b->done = true;
	pc->pending--;
	if (status < 300) {
		/* 16.7 step 5: every 2xx goes up at once; the rest is cancelled.
		 * After the first, the server transaction is Accepted, a record
		 * that no longer sends: later ones go up statelessly (RFC 6026). */
		struct flow up;
		if (pc->st)
			stsx_send_response(pc->st, status, out.data, out.len);
		else if (rx && upstream_flow(pc->p, rx->msg, &up))
			edge_send(pc->p->edge, &up, out.data, out.len);
		pc->final_sent = true;
		cancel_pending(pc);
	} else if (!pc->final_sent) {
		if (better(status, pc->best_status)) {
			pc->best_status = status;
			buf_reset(&pc->best);
			if (rx)
				buf_append(&pc->best, out.data, out.len);
		}
		if (status >= 600)
			cancel_pending(pc);
		if (!pc->pending)
			send_best(pc);
	}
	buf_free(&out);
	b->ct = NULL;
	call_maybe_free(pc);
}

static void on_cancel(struct stsx *st, void *arg)
{
	(void)st;
	cancel_pending(arg);
}

static void on_end(struct stsx *st, void *arg)
{
	(void)st;
	struct proxy_call *pc = arg;
	pc->st = NULL;
	/* branches still running keep the call until they end */
	call_maybe_free(pc);
}

void proxy_fork(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
		struct proxy_target *targets, size_t n, const struct proxy_media *pm)
{
	struct proxy_call *pc = calloc(1, sizeof *pc);
	if (!pc) {
		stsx_reply(rx->st, 500, "Server Internal Error", NULL);
		return;
	}
	pc->p = p;
	pc->st = rx->st;
	pc->media = *pm;
	pc->flow_timer = plan->flow_timer;
	pc->upstream = plan->upstream;
	buf_init(&pc->best);
	call_link(pc);
	stsx_set_owner(rx->st, pc, on_cancel, on_end);
	/* RFC 3261 16.2: now that it goes on, stop the caller's retransmissions */
	if (rx->msg->method == SIP_INVITE)
		stsx_reply(rx->st, 100, "Trying", NULL);
	for (size_t i = 0; i < n && i < PROXY_MAX_BRANCHES; i++) {
		char branch[PROXY_BRANCH_SIZE];
		proxy_new_branch(rx, branch);
		struct buf req;
		buf_init(&req);
		if (proxy_build_request(p, rx, plan, &targets[i], branch, &req)) {
			buf_free(&req);
			continue;
		}
		struct branch *b = &pc->br[pc->n_br];
		b->pc = pc;
		pc->pending++;
		pc->n_br++;
		int err = ctsx_start(p->edge, rx->w, &targets[i].flow, &req, branch, on_branch, b,
				     &b->ct);
		buf_free(&req);
		if (err) {
			char f[96];
			LOG_D("proxy", "branch to %s: %s", flow_fmt(&targets[i].flow, f, sizeof f),
			      strerror(err));
			b->done = true;
			b->ct = NULL;
			pc->pending--;
			if (better(503, pc->best_status))
				pc->best_status = 503;
		}
	}
	if (!pc->pending) {
		send_best(pc);
		/* the server transaction still points at pc; on_end frees it */
	}
}

/* Whether we sent the request that m answers: it matched a client
 * transaction of ours (matched), or its top Via's branch is one that we
 * signed over the Via below it (every request we forward has one). Anything else names us in its Via
 * only to be sent on to whoever its second Via names: a reflector. */
static bool response_ours(struct proxy *p, const struct edge_rx *rx)
{
	if (rx->ct_matched)
		return true;
	struct sip_via v;
	struct slice raw;
	return second_via(rx->msg, &v, &raw) &&
	       edge_branch_verify(p->edge, rx->msg->via1.branch, raw, rx->msg->call_id);
}

void proxy_response_stateless(struct proxy *p, const struct edge_rx *rx)
{
	const struct sip_msg *m = rx->msg;
	struct flow f;
	if (!response_ours(p, rx)) {
		metric_inc(&proxy_m_unproven_responses);
		return;
	}
	if (!upstream_flow(p, m, &f))
		return;
	metric_inc(&proxy_m_stateless);
	/* A 2xx of an INVITE that our client transaction took (a retransmission,
	 * or another fork's) has its answer relayed too, or the caller would see
	 * the callee's own addresses. Only such a one may touch the relay: a
	 * verified branch proves where we sent, not who answers. */
	struct proxy_media pm = {.engaged = true};
	struct buf out, sdp;
	buf_init(&out);
	buf_init(&sdp);
	if (rx->ct_matched && m->cseq.method == SIP_INVITE &&
	    proxy_media_response(p, &pm, rx, &sdp))
		buf_reset(&sdp);
	if (strip_via(m, &sdp, 0, &out) == 0)
		edge_send(p->edge, &f, out.data, out.len);
	buf_free(&out);
	buf_free(&sdp);
}
