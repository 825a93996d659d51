/* Stateful forwarding (RFC 3261 16.6-16.7, RFC 5626 7): branches and their flows, the best final response, CANCEL; stateless responses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

struct proxy_call;

/* Why a branch left a flow for the next one of its instance. */
enum fo_cause { FO_430, FO_CLOSED, FO_SEND, FO_TIMEOUT, FO_CAUSES };

#define FO_HELP                                                                                    \
	"requests sent again over another flow of the same instance (RFC 5626), by what failed "   \
	"the flow before"
static struct metric m_silent_430 = {
    .name = "outbound_silent_flows_total",
    .help =
	"edge-only: INVITEs from the registrar that a phone's UDP outbound flow left unanswered "
	"for failover_timeout, answered 430 so that the registrar tries another flow"};
static struct metric m_failovers[FO_CAUSES] = {
	{.name = "outbound_failovers_total", .help = FO_HELP, .labels = "cause=\"430\""},
	{.name = "outbound_failovers_total", .help = FO_HELP, .labels = "cause=\"closed\""},
	{.name = "outbound_failovers_total", .help = FO_HELP, .labels = "cause=\"send\""},
	{.name = "outbound_failovers_total", .help = FO_HELP, .labels = "cause=\"timeout\""},
};

/* One branch: an instance (or a single target) and the flow being tried.
 * Its flows are the call's targets [cur, end); each is tried at most once,
 * in order, so a request costs at most PROXY_MAX_FLOWS sends per branch. */
struct branch {
	struct proxy_call *pc;
	struct ctsx *ct;
	uint16_t status; /* last status seen; 0 = none */
	bool done;
	/* the current attempt drew a response (even 100): the hop has the
	 * request, and another flow would only bring it a second copy */
	bool heard;
	/* ... beyond a 100: the far end has it. Only this holds back a failover
	 * on 430, which an edge may send after its own 100 */
	bool heard_far;
	bool registered; /* a registered binding's flows, not some other target */
	size_t first, cur, end;
	struct timer t_fo; /* UDP: no answer within failover_timeout */
};

struct proxy_call {
	struct proxy *p;
	struct stsx *st; /* NULL once the server transaction ended */
	struct branch br[PROXY_MAX_BRANCHES];
	size_t n_br, pending;
	uint16_t best_status;
	struct buf best; /* best final so far, ready to send; empty = synthesise */
	bool final_sent;
	bool cancelling; /* CANCEL, a 2xx or 6xx: no branch moves on to another flow */
	size_t given_up; /* attempts left for another flow, until they end */
	struct proxy_media media;
	unsigned flow_timer; /* edge-only REGISTER: Flow-Timer for its 2xx (upstream.c) */
	/* edge-only: sent to the registrar for a phone (upstream.c); until
	 * something rings, a refusal goes back once, bounded (no reflection) */
	bool upstream, rang;
	bool flow_430, silence_430; /* route_plan's */
	/* Only when a branch has flows to fail over to: the targets, and what
	 * it takes to build the request again for another one (the request
	 * itself is the server transaction's, kept until its final answer). */
	struct proxy_target *tg;
	size_t n_tg;
	struct route_plan plan; /* its slices point into stsx_msg(st) */
	struct buf body;	/* plan.body's bytes */
	char aor[STORE_AOR_MAX];
	/* Pinhole-Seen line for the answers to the caller (edge.h): an INVITE's
	 * responses (finals above 2xx only when the caller authenticated), an
	 * edge-only REGISTER's 2xx; empty = none */
	struct buf seen;
	bool seen_refusals, seen_register;
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
	for (size_t i = 0; i < pc->n_br; i++)
		timer_cancel(&pc->br[i].t_fo);
	buf_free(&pc->best);
	buf_free(&pc->body);
	buf_free(&pc->seen);
	free(pc->tg);
	free(pc);
}

static void call_maybe_free(struct proxy_call *pc)
{
	if (pc->st || pc->pending || pc->given_up)
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
	pc->cancelling = true;
	for (size_t i = 0; i < pc->n_br; i++) {
		timer_cancel(&pc->br[i].t_fo);
		if (!pc->br[i].done && pc->br[i].ct)
			ctsx_cancel(pc->br[i].ct);
	}
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
	if (s == 480 && !pc->best.len && !once)
		stsx_reply(pc->st, 480, "Temporarily Unavailable (Flow Failed)", NULL);
	else if (pc->best.len && s != 503 && once)
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

/* Whether the response with status to pc's request carries Pinhole-Seen. */
static bool seen_applies(const struct proxy_call *pc, uint16_t status)
{
	if (!pc->seen.len || status <= 100)
		return false;
	if (status < 200)
		return !pc->seen_register;
	return status < 300 || pc->seen_refusals;
}

/* The response without our Via and without any Pinhole-Seen (with a new
 * body when given, the edge's Flow-Timer when not 0, and our Pinhole-Seen
 * when seen is given), ready to go upstream. */
static int strip_via(const struct sip_msg *m, const struct buf *body, unsigned flow_timer,
		     const struct buf *seen, struct buf *out)
{
	struct sip_editor ed;
	sip_editor_init(&ed, m);
	sip_edit_remove_first_value(&ed, m->via1_hdr);
	proxy_flow_timer_edit(&ed, m, flow_timer);
	/* what a hop beyond us saw is not what the phone sent: never passed on */
	edge_seen_strip(&ed, m);
	if (seen)
		sip_edit_insert_hdr_before(&ed, m->n_hdrs, "%.*s", (int)(seen->len - 2),
					   seen->data); /* without its CRLF */
	if (body && body->len)
		sip_edit_set_body(&ed, buf_slice(body));
	int err = sip_edit_apply(&ed, out);
	sip_editor_free(&ed);
	return err;
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
	if (!sip_msg_via2(m, &v, NULL))
		return false;
	struct slice host;
	uint16_t port;
	sip_via_sender(&v, &host, &port);
	struct net_addr dst;
	if (net_addr_from_host(host, port, &dst))
		return false;
	int li = net_listener_find(edge_net(p->edge), NET_UDP, net_addr_family(&dst));
	if (li < 0)
		return false;
	net_flow_udp(edge_net(p->edge), (unsigned)li, &dst, f);
	return true;
}

/* ---- failover between the flows of an instance ---- */

static void on_branch(struct ctsx *ct, const struct edge_rx *rx, uint16_t status, void *arg);
static void failover_timer(void *arg);

/* The request as the server transaction holds it, for building it again. */
static bool call_rx(struct proxy_call *pc, struct edge_rx *rx)
{
	memset(rx, 0, sizeof *rx);
	if (!pc->st || !stsx_msg(pc->st))
		return false;
	rx->edge = pc->p->edge;
	rx->w = stsx_worker(pc->st);
	rx->flow = *stsx_flow(pc->st);
	rx->msg = stsx_msg(pc->st);
	rx->via1_fixed = stsx_via1_fixed(pc->st);
	rx->st = pc->st;
	return true;
}

/* Sends the request to target t as b's current attempt: a fresh branch
 * and client transaction. 0, or the error of the build or the send. */
static int attempt(struct branch *b, const struct edge_rx *rx, const struct route_plan *plan,
		   const struct proxy_target *t)
{
	struct proxy_call *pc = b->pc;
	struct proxy *p = pc->p;
	char branch[PROXY_BRANCH_SIZE];
	proxy_new_branch(rx, branch);
	struct buf req;
	buf_init(&req);
	int err = proxy_build_request(p, rx, plan, t, branch, &req);
	if (!err)
		err = ctsx_start(p->edge, rx->w, &t->flow, &req, branch, on_branch, b, &b->ct);
	buf_free(&req);
	if (err) {
		char f[96];
		LOG_D("proxy", "branch to %s: %s", flow_fmt(&t->flow, f, sizeof f), strerror(err));
		b->ct = NULL;
		return err;
	}
	metric_inc(&proxy_m_forwarded);
	b->heard = b->heard_far = false;
	/* RFC 5626 5.3: a UDP flow fails silently; with another flow to go
	 * to (here, or at the registrar behind us), silence for
	 * failover_timeout is taken for a failed flow */
	if (t->flow.tp == NET_UDP && (b->cur + 1 < b->end || pc->silence_430))
		timer_start(worker_loop(rx->w), &b->t_fo, p->failover_ms, failover_timer, b);
	return 0;
}

/* Marks the flow of b's current attempt failed, where the next request
 * should try the instance's others first. */
static void mark_failed(struct branch *b)
{
	struct proxy_call *pc = b->pc;
	if (pc->tg && pc->aor[0] && pc->tg[b->cur].binding_id)
		registrar_binding_failed(pc->p->reg, pc->aor, pc->tg[b->cur].binding_id);
}

/* The flow of b's current attempt failed (cause). Marks it, and sends the
 * request over the instance's next flows until one takes it; the attempt
 * given up is told so (an INVITE that arrives late after all is cancelled
 * on its first provisional). Returns true when a new attempt is under way;
 * false when the branch is out of flows, or must not move on: it heard
 * from its hop already, or the call is answered or cancelled. Only the
 * branch's own client transaction reports a failure here, and a 430 only
 * from the hop it went to (ctsx.c): no stranger moves a call between flows. */
static bool failover(struct branch *b, enum fo_cause cause)
{
	struct proxy_call *pc = b->pc;
	timer_cancel(&b->t_fo);
	mark_failed(b);
	struct edge_rx rx;
	if (!pc->tg || (cause == FO_430 ? b->heard_far : b->heard) || pc->cancelling ||
	    pc->final_sent || b->cur + 1 >= b->end || !call_rx(pc, &rx))
		return false;
	if (b->ct) {
		ctsx_give_up(b->ct); /* it still reports its end here */
		pc->given_up++;
		b->ct = NULL;
	}
	while (++b->cur < b->end) {
		metric_inc(&m_failovers[cause]);
		if (attempt(b, &rx, &pc->plan, &pc->tg[b->cur]) == 0)
			return true;
		mark_failed(b);
		cause = FO_SEND;
	}
	b->cur = b->end - 1;
	return false;
}

/* Ends a branch that has no transaction left (every flow failed to take
 * the request) with status; may free the call. */
static void branch_end_failed(struct branch *b, uint16_t status)
{
	struct proxy_call *pc = b->pc;
	b->done = true;
	b->status = status;
	pc->pending--;
	if (!pc->final_sent && better(status, pc->best_status)) {
		pc->best_status = status;
		buf_reset(&pc->best);
	}
	if (!pc->pending)
		send_best(pc);
	call_maybe_free(pc);
}

static void failover_timer(void *arg)
{
	struct branch *b = arg;
	if (b->done || b->heard || !b->ct)
		return;
	if (b->pc->silence_430) {
		metric_inc(&m_silent_430);
		ctsx_give_up(b->ct); /* a late provisional is cancelled, a 2xx goes up */
		b->pc->given_up++;
		b->ct = NULL;
		branch_end_failed(b, 430);
		return;
	}
	if (failover(b, FO_TIMEOUT))
		return;
	/* given up, and no other flow took it: the branch failed; else no
	 * other flow could be tried and this one keeps its chance */
	if (!b->ct)
		branch_end_failed(b, 480);
}

static void on_branch(struct ctsx *ct, const struct edge_rx *rx, uint16_t status, void *arg)
{
	struct branch *b = arg;
	struct proxy_call *pc = b->pc;
	bool stale = ct != b->ct;
	if (stale) {
		/* an attempt given up for another flow: only its end matters,
		 * and a 2xx (the phone answered it after all) goes up as every
		 * 2xx does (16.7 step 5) and ends the call's other attempts */
		if (status < 200)
			return;
		pc->given_up--;
		if (status >= 300 || !rx) {
			call_maybe_free(pc);
			return;
		}
	}
	if (status < 200) {
		b->heard = true;
		b->heard_far |= status > 100;
		timer_cancel(&b->t_fo);
	}
	if (status == 100)
		return;
	if (status >= 200) {
		timer_cancel(&b->t_fo);
		/* RFC 5626 7: the flow failed when its edge says so (430), the
		 * connection closed (a transport error), or it went unanswered
		 * to Timer B/F; any other final answer is the hop's word */
		int cause = -1;
		if (status == 430 && rx)
			cause = FO_430;
		else if (!rx && status == 503)
			cause = FO_CLOSED;
		else if (!rx && status == 408 && !b->heard)
			cause = FO_TIMEOUT;
		if (cause >= 0) {
			b->ct = NULL; /* this transaction has ended */
			if (failover(b, (enum fo_cause)cause))
				return;
			/* out of flows: an instance none of whose flows
			 * works, or a phone whose connection closed, is
			 * unavailable; and a 430 is never for the caller (RFC
			 * 5626 11.5: an endpoint takes it for a 400), but
			 * it is for the registrar behind an edge-only us */
			if (pc->flow_430 && cause == FO_CLOSED) {
				status = 430;
				rx = NULL;
			} else if (status == 430 || b->end - b->first > 1 ||
				   (b->registered && cause == FO_CLOSED)) {
				status = 480;
				rx = NULL;
			}
		}
	}
	b->status = status;
	/* the BYE of the relayed dialog was answered (481: no such dialog there
	 * any more) or timed out: the call is over */
	if (pc->media.bye_ends && status >= 200 && (status < 300 || status == 481 || !rx)) {
		pc->media.bye_ends = false;
		proxy_media_note(pc->p, &pc->media);
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
			if (!stale) {
				b->done = true;
				pc->pending--;
			}
			if (pc->st && !pc->final_sent) {
				pc->final_sent = true;
				stsx_reply(pc->st, 500, "Media Relay Failed", NULL);
			}
			proxy_media_end(pc->p, slice_cstr(pc->media.call_id));
			cancel_pending(pc);
			if (!stale)
				b->ct = NULL;
			call_maybe_free(pc);
			return;
		}
	}
	if (rx && strip_via(rx->msg, &sdp, pc->flow_timer,
			    pc->st && seen_applies(pc, status) ? &pc->seen : NULL, &out)) {
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
	if (!stale) {
		b->done = true;
		pc->pending--;
	}
	if (status < 300) {
		/* 16.7 step 5: every 2xx goes up at once; the rest is cancelled.
		 * After the first, the server transaction is Accepted, a record
		 * that no longer sends: later ones go up statelessly (RFC 6026). */
		struct flow up;
		/* edge-only: the phone's flow is watched (or let go) as its
		 * REGISTER's 2xx goes by, before the phone can read it */
		if (pc->upstream && rx && pc->st && stsx_msg(pc->st) &&
		    rx->msg->cseq.method == SIP_REGISTER)
			proxy_upstream_registered(pc->p, stsx_msg(pc->st), stsx_flow(pc->st),
						  rx->msg, pc->flow_timer);
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
	if (!stale)
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

/* Keeps what failover needs when some branch has flows to fall back on. */
static int call_keep_targets(struct proxy_call *pc, const struct route_plan *plan,
			     const struct proxy_target *t, size_t n, const char *aor)
{
	pc->tg = malloc(n * sizeof *pc->tg);
	if (!pc->tg)
		return ENOMEM;
	memcpy(pc->tg, t, n * sizeof *t);
	pc->n_tg = n;
	pc->plan = *plan;
	if (plan->body_set) {
		buf_append(&pc->body, plan->body.p, plan->body.l);
		if (pc->body.failed)
			return ENOMEM;
		pc->plan.body = buf_slice(&pc->body);
	}
	if (aor)
		snprintf(pc->aor, sizeof pc->aor, "%s", aor);
	return 0;
}

void proxy_fork(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
		struct proxy_target *targets, size_t n, const struct proxy_media *pm,
		const char *aor)
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
	pc->flow_430 = plan->flow_430;
	pc->silence_430 = plan->silence_430;
	buf_init(&pc->best);
	buf_init(&pc->body);
	buf_init(&pc->seen);
	const struct sip_msg *m = rx->msg;
	if (m->method == SIP_INVITE || (plan->upstream && m->method == SIP_REGISTER)) {
		/* what reached us, for the caller to compare (edge.h); a
		 * refusal to a stranger carries none (no larger answers) */
		if (edge_seen_append(&pc->seen, m, &rx->flow.remote, m->method == SIP_INVITE))
			buf_reset(&pc->seen);
		pc->seen_refusals = m->method == SIP_INVITE && plan->authenticated;
		pc->seen_register = m->method == SIP_REGISTER;
	}
	call_link(pc);
	stsx_set_owner(rx->st, pc, on_cancel, on_end);
	/* RFC 3261 16.2: now that it goes on, stop the caller's retransmissions */
	if (rx->msg->method == SIP_INVITE)
		stsx_reply(rx->st, 100, "Trying", NULL);
	bool alternatives = false;
	for (size_t i = 1; i < n; i++)
		alternatives |= targets[i].group == targets[i - 1].group;
	/* without a copy there is no failover, only the first flow of each */
	if (alternatives && call_keep_targets(pc, plan, targets, n, aor)) {
		free(pc->tg);
		pc->tg = NULL;
	}
	for (size_t i = 0, end; i < n && pc->n_br < PROXY_MAX_BRANCHES; i = end) {
		for (end = i + 1; end < n && targets[end].group == targets[i].group; end++)
			;
		struct branch *b = &pc->br[pc->n_br++];
		b->pc = pc;
		b->first = b->cur = i;
		b->end = end;
		b->registered = targets[i].binding_id != 0;
		timer_init(&b->t_fo);
		pc->pending++;
		if (attempt(b, rx, plan, &targets[i]) == 0)
			continue;
		if (failover(b, FO_SEND))
			continue;
		b->done = true;
		pc->pending--;
		uint16_t s = pc->flow_430 ? 430 : end - i > 1 ? 480 : 503;
		if (better(s, pc->best_status))
			pc->best_status = s;
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
	return sip_msg_via2(rx->msg, &v, &raw) &&
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
	if (strip_via(m, &sdp, 0, NULL, &out) == 0)
		edge_send(p->edge, &f, out.data, out.len);
	buf_free(&out);
	buf_free(&sdp);
}

void proxy_fwd_init(struct proxy *p, const struct conf *c)
{
	p->failover_ms = (uint32_t)conf_int(c, "outbound", "failover_timeout");
	/* RFC 5626 wants it well below Timer B (64 x T1), or the caller's own
	 * transaction gives up before the next flow is tried */
	uint32_t half_b = 32u * (uint32_t)conf_int(c, "sip", "t1");
	if (p->failover_ms > half_b) {
		LOG_W("proxy", "[outbound] failover_timeout = %u ms is above half of Timer B: %u",
		      p->failover_ms, half_b);
		p->failover_ms = half_b;
	}
	for (size_t i = 0; i < FO_CAUSES; i++)
		metric_register(&m_failovers[i]);
	metric_register(&m_silent_430);
}
