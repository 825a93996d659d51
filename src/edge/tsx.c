/* RFC 3261 section 17 transactions for a proxy: server side (with RFC 6026 Accepted) and client side. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

enum st_state { ST_PROCEEDING, ST_COMPLETED, ST_CONFIRMED, ST_ACCEPTED, ST_DONE };
enum ct_state { CT_CALLING, CT_PROCEEDING, CT_COMPLETED, CT_DONE };

#define TIMER_C_MS 180000u /* RFC 3261 16.6 step 11: more than 3 minutes */

struct stsx {
	struct stsx *hnext;
	char *key;
	uint64_t hash;
	struct edge_wk *wk;
	struct edge_msg *em; /* the request as received; NULL once answered */
	const struct sip_msg *msg; /* &em->msg, or NULL */
	struct flow flow;
	char *via1;
	size_t via1_len;
	bool invite;
	enum st_state state;
	uint16_t status;
	struct buf resp; /* last response, for retransmissions */
	struct timer t_retx, t_end;
	uint32_t retx_ms;
	char to_tag[24];
	void *owner;
	stsx_cancel_h *on_cancel;
	stsx_end_h *on_end;
};

struct ctsx {
	struct ctsx *hnext;
	char key[48];
	uint64_t hash;
	struct edge_wk *wk;
	struct flow flow;
	struct buf req;
	struct sip_msg *msg; /* parsed over req */
	bool invite;
	enum ct_state state;
	struct timer t_retx, t_timeout, t_end;
	uint32_t retx_ms;
	ctsx_resp_h *h;
	void *arg;
	bool cancel_wanted, cancel_sent;
	struct buf ack; /* ACK for a non-2xx final, resent on retransmissions */
};

/* ---- keys and tables ---- */

static int method_class(enum sip_method m, struct slice name, char *out, size_t len)
{
	if (m == SIP_ACK || m == SIP_INVITE)
		return snprintf(out, len, "INVITE");
	return snprintf(out, len, "%.*s", (int)name.l, name.p);
}

/* Server key: RFC 3261 17.2.3 (branch, sent-by, method), else the RFC 2543 fields. */
static char *st_key(const struct sip_msg *m, enum sip_method as, struct slice as_name)
{
	char cls[32];
	method_class(as, as_name, cls, sizeof cls);
	const struct sip_via *v = &m->via1;
	struct buf k;
	buf_init(&k);
	if (v->branch.l > 7 && strncmp(v->branch.p, SIP_BRANCH_MAGIC, 7) == 0)
		buf_printf(&k, "%.*s|%.*s:%u|%s", (int)v->branch.l, v->branch.p, (int)v->host.l,
			   v->host.p, v->port, cls);
	else
		buf_printf(&k, "2543|%.*s|%u|%.*s|%.*s|%s", (int)m->call_id.l, m->call_id.p,
			   m->cseq.num, (int)m->from_tag.l, m->from_tag.p, (int)v->whole.l,
			   v->whole.p, cls);
	buf_append(&k, "", 1);
	if (k.failed) {
		buf_free(&k);
		return NULL;
	}
	return k.data;
}

static struct stsx *st_find(struct edge_wk *wk, const char *key)
{
	uint64_t h = hash_bytes(key, strlen(key));
	for (struct stsx *st = wk->st_hash[h % TSX_BUCKETS]; st; st = st->hnext)
		if (st->hash == h && strcmp(st->key, key) == 0)
			return st;
	return NULL;
}

static void st_unlink(struct stsx *st)
{
	struct stsx **pp = &st->wk->st_hash[st->hash % TSX_BUCKETS];
	while (*pp && *pp != st)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = st->hnext;
		st->wk->n_st--;
	}
}

static void st_free(struct stsx *st)
{
	timer_cancel(&st->t_retx);
	timer_cancel(&st->t_end);
	st_unlink(st);
	if (st->on_end) {
		stsx_end_h *h = st->on_end;
		st->on_end = NULL;
		h(st, st->owner);
	}
	buf_free(&st->resp);
	free(st->key);
	free(st->em);
	free(st->via1);
	free(st);
}

static struct ctsx *ct_find(struct edge_wk *wk, struct slice branch, struct slice method)
{
	char key[48];
	int n = snprintf(key, sizeof key, "%.*s|%.*s", (int)branch.l, branch.p, (int)method.l,
			 method.p);
	if (n < 0 || (size_t)n >= sizeof key)
		return NULL;
	uint64_t h = hash_bytes(key, (size_t)n);
	for (struct ctsx *ct = wk->ct_hash[h % TSX_BUCKETS]; ct; ct = ct->hnext)
		if (ct->hash == h && strcmp(ct->key, key) == 0)
			return ct;
	return NULL;
}

static void ct_free(struct ctsx *ct)
{
	timer_cancel(&ct->t_retx);
	timer_cancel(&ct->t_timeout);
	timer_cancel(&ct->t_end);
	struct ctsx **pp = &ct->wk->ct_hash[ct->hash % TSX_BUCKETS];
	while (*pp && *pp != ct)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = ct->hnext;
		ct->wk->n_ct--;
	}
	buf_free(&ct->req);
	buf_free(&ct->ack);
	free(ct->msg);
	free(ct);
}

void edge_tsx_free_all(struct edge_wk *wk)
{
	for (size_t i = 0; i < TSX_BUCKETS; i++) {
		while (wk->st_hash[i]) {
			struct stsx *st = wk->st_hash[i];
			st->on_end = NULL;
			st_free(st);
		}
		while (wk->ct_hash[i])
			ct_free(wk->ct_hash[i]);
	}
}

/* ---- server transactions ---- */

/* NULL once the final response has been sent. */
const struct sip_msg *stsx_msg(const struct stsx *st) { return st->msg; }
const struct flow *stsx_flow(const struct stsx *st) { return &st->flow; }
struct worker *stsx_worker(const struct stsx *st) { return st->wk->w; }
bool stsx_final_sent(const struct stsx *st) { return st->status >= 200; }
void *stsx_owner(const struct stsx *st) { return st->owner; }
const char *stsx_to_tag(const struct stsx *st) { return st->to_tag; }

struct slice stsx_via1_fixed(const struct stsx *st)
{
	return (struct slice){st->via1, st->via1_len};
}

void stsx_set_owner(struct stsx *st, void *owner, stsx_cancel_h *on_cancel, stsx_end_h *on_end)
{
	st->owner = owner;
	st->on_cancel = on_cancel;
	st->on_end = on_end;
}

static void st_end_timer(void *arg)
{
	st_free(arg);
}

static struct loop *wk_loop(struct edge_wk *wk)
{
	return worker_loop(wk->w);
}

/* Timer G: retransmit a non-2xx final response to an INVITE until the ACK. */
static void st_timer_g(void *arg)
{
	struct stsx *st = arg;
	if (st->state != ST_COMPLETED)
		return;
	edge_send(st->wk->edge, &st->flow, st->resp.data, st->resp.len);
	st->retx_ms = MIN(st->retx_ms * 2, st->wk->edge->t2);
	timer_start(wk_loop(st->wk), &st->t_retx, st->retx_ms, st_timer_g, st);
}

int stsx_send_response(struct stsx *st, uint16_t status, const char *p, size_t len)
{
	struct edge *e = st->wk->edge;
	if (st->state == ST_DONE || st->state == ST_CONFIRMED ||
	    (st->state == ST_COMPLETED && status >= 200))
		return EALREADY;
	if (st->state == ST_ACCEPTED && (status < 200 || status >= 300))
		return EALREADY; /* after a 2xx only more 2xx pass (forked answers) */
	int err = edge_send(e, &st->flow, p, len);
	bool reliable = st->flow.tp != NET_UDP;
	if (status >= 200 || !st->resp.len) {
		buf_reset(&st->resp);
		buf_append(&st->resp, p, len);
	}
	if (status < 200) {
		if (st->status < 200)
			st->status = status;
		return err;
	}
	if (st->state == ST_ACCEPTED)
		return err;
	st->status = status;
	/* from here on only the response is resent: drop the request's copy,
	 * the bulk of a lingering transaction's memory */
	free(st->em);
	st->em = NULL;
	st->msg = NULL;
	free(st->via1);
	st->via1 = NULL;
	st->via1_len = 0;
	if (st->invite && status < 300) {
		/* RFC 6026 7.1: Accepted, absorbing INVITE retransmissions for 64*T1 */
		st->state = ST_ACCEPTED;
		timer_start(wk_loop(st->wk), &st->t_end, 64u * e->t1, st_end_timer, st);
	} else if (st->invite) {
		st->state = ST_COMPLETED;
		if (!reliable) {
			st->retx_ms = e->t1;
			timer_start(wk_loop(st->wk), &st->t_retx, st->retx_ms, st_timer_g, st);
		}
		timer_start(wk_loop(st->wk), &st->t_end, 64u * e->t1, st_end_timer, st); /* H */
	} else {
		st->state = ST_COMPLETED;
		timer_start(wk_loop(st->wk), &st->t_end, reliable ? 0 : 64u * e->t1, st_end_timer,
			    st); /* J */
	}
	return err;
}

int stsx_reply(struct stsx *st, uint16_t status, const char *reason, const char *extra_hdrs)
{
	if (!st->msg)
		return EALREADY; /* a final response went out already */
	struct buf out;
	buf_init(&out);
	struct slice tag = status > 100 && st->msg->to_tag.l == 0 ? slice_cstr(st->to_tag)
								 : SLICE_NULL;
	int err = sip_build_response(&out, st->msg, status, reason, stsx_via1_fixed(st), tag,
				     extra_hdrs);
	if (!err)
		err = stsx_send_response(st, status, out.data, out.len);
	buf_free(&out);
	return err;
}

/* Creates the server transaction; it takes em (the request) and key. */
static struct stsx *st_create(struct edge_wk *wk, const struct edge_rx *rx, char *key,
			      struct edge_msg *em)
{
	struct stsx *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	st->via1 = malloc(rx->via1_fixed.l ? rx->via1_fixed.l : 1);
	if (!st->via1) {
		free(st);
		return NULL;
	}
	st->key = key;
	st->hash = hash_bytes(key, strlen(key));
	st->wk = wk;
	st->flow = rx->flow;
	st->invite = rx->msg->method == SIP_INVITE;
	st->em = em;
	st->msg = &em->msg;
	buf_init(&st->resp);
	timer_init(&st->t_retx);
	timer_init(&st->t_end);
	memcpy(st->via1, rx->via1_fixed.p, rx->via1_fixed.l);
	st->via1_len = rx->via1_fixed.l;
	edge_new_tag(st->to_tag);
	size_t b = st->hash % TSX_BUCKETS;
	st->hnext = wk->st_hash[b];
	wk->st_hash[b] = st;
	wk->n_st++;
	return st;
}

static void handle_cancel(struct edge_wk *wk, struct edge_rx *rx)
{
	/* RFC 3261 9.2: the CANCEL is answered by its own transaction; the INVITE
	 * it names is found by the same branch */
	char *ikey = st_key(rx->msg, SIP_INVITE, SLICE_LIT("INVITE"));
	struct stsx *inv = ikey ? st_find(wk, ikey) : NULL;
	free(ikey);
	if (!inv) {
		edge_reply_stateless(rx, 481, "Call/Transaction Does Not Exist", NULL);
		return;
	}
	edge_reply_stateless(rx, 200, "OK", NULL);
	if (inv->status < 200 && inv->on_cancel)
		inv->on_cancel(inv, inv->owner);
	else if (inv->status < 200)
		stsx_reply(inv, 487, "Request Terminated", NULL);
}

bool edge_tsx_request(struct edge_wk *wk, struct edge_rx *rx, struct edge_msg *em)
{
	struct edge *e = wk->edge;
	const struct sip_msg *m = rx->msg;
	if (m->method == SIP_CANCEL) {
		handle_cancel(wk, rx);
		return false;
	}
	char *key = st_key(m, m->method, m->method_s);
	if (!key)
		return false;
	struct stsx *st = st_find(wk, key);
	if (st) {
		free(key);
		if (m->method == SIP_ACK) {
			if (st->state == ST_COMPLETED) {
				/* the ACK of our non-2xx final: stop Timer G, wait Timer I */
				st->state = ST_CONFIRMED;
				timer_cancel(&st->t_retx);
				timer_start(wk_loop(wk), &st->t_end,
					    st->flow.tp == NET_UDP ? e->t4 : 0, st_end_timer, st);
				return false;
			}
			if (st->state == ST_CONFIRMED)
				return false;
			/* an ACK for a 2xx: end-to-end, the proxy forwards it */
		} else {
			metric_inc(&edge_m_retransmissions);
			if (st->resp.len && st->state != ST_ACCEPTED)
				edge_send(e, &st->flow, st->resp.data, st->resp.len);
			return false;
		}
	} else if (m->method == SIP_ACK) {
		free(key);
	}
	if (m->method == SIP_ACK) {
		rx->st = NULL;
		if (e->on_request)
			e->on_request(rx, e->handler_arg);
		return false;
	}
	st = st_create(wk, rx, key, em);
	if (!st) {
		free(key);
		edge_reply_stateless(rx, 500, "Server Internal Error", NULL);
		return false;
	}
	rx->st = st;
	if (st->invite)
		stsx_reply(st, 100, "Trying", NULL); /* RFC 3261 16.2: stop retransmissions */
	if (e->on_request)
		e->on_request(rx, e->handler_arg);
	else
		stsx_reply(st, 501, "Not Implemented", NULL);
	return true;
}

/* ---- client transactions ---- */

const struct flow *ctsx_flow(const struct ctsx *ct)
{
	return &ct->flow;
}

void ctsx_detach(struct ctsx *ct)
{
	ct->h = NULL;
	ct->arg = NULL;
}

static void ct_end_timer(void *arg)
{
	ct_free(arg);
}

static void ct_report(struct ctsx *ct, const struct edge_rx *rx, uint16_t status)
{
	ctsx_resp_h *h = ct->h;
	if (h)
		h(ct, rx, status, ct->arg);
}

static void ct_timeout(void *arg)
{
	struct ctsx *ct = arg;
	metric_inc(&edge_m_tsx_timeouts);
	if (ct->invite && ct->state == CT_PROCEEDING && !ct->cancel_sent)
		ctsx_cancel(ct); /* Timer C: give up on the branch */
	ct->state = CT_DONE;
	ct_report(ct, NULL, 408);
	timer_cancel(&ct->t_retx);
	timer_start(wk_loop(ct->wk), &ct->t_end, 0, ct_end_timer, ct);
}

/* Timers A and E. */
static void ct_retx(void *arg)
{
	struct ctsx *ct = arg;
	if (ct->state != CT_CALLING && !(ct->state == CT_PROCEEDING && !ct->invite))
		return;
	edge_send(ct->wk->edge, &ct->flow, ct->req.data, ct->req.len);
	struct edge *e = ct->wk->edge;
	if (ct->invite)
		ct->retx_ms *= 2;
	else
		ct->retx_ms = ct->state == CT_PROCEEDING ? e->t2 : MIN(ct->retx_ms * 2, e->t2);
	timer_start(wk_loop(ct->wk), &ct->t_retx, ct->retx_ms, ct_retx, ct);
}

static int ct_insert(struct edge_wk *wk, struct ctsx *ct, const char *branch, struct slice method)
{
	int n = snprintf(ct->key, sizeof ct->key, "%s|%.*s", branch, (int)method.l, method.p);
	if (n < 0 || (size_t)n >= sizeof ct->key)
		return EINVAL;
	ct->hash = hash_bytes(ct->key, (size_t)n);
	size_t b = ct->hash % TSX_BUCKETS;
	ct->hnext = wk->ct_hash[b];
	wk->ct_hash[b] = ct;
	wk->n_ct++;
	return 0;
}

int ctsx_start(struct edge *e, struct worker *w, const struct flow *dst, struct buf *req,
	       const char *branch, ctsx_resp_h *h, void *arg, struct ctsx **out)
{
	struct edge_wk *wk = edge_wk_of(e, w);
	struct ctsx *ct = calloc(1, sizeof *ct);
	if (!ct)
		return ENOMEM;
	ct->wk = wk;
	ct->flow = *dst;
	ct->req = *req;
	buf_init(req);
	buf_init(&ct->ack);
	timer_init(&ct->t_retx);
	timer_init(&ct->t_timeout);
	timer_init(&ct->t_end);
	ct->h = h;
	ct->arg = arg;
	ct->msg = malloc(sizeof *ct->msg);
	struct sip_parse_error perr;
	if (!ct->msg ||
	    sip_msg_parse(ct->msg, ct->req.data, ct->req.len, dst->tp != NET_UDP, &perr) ||
	    ct_insert(wk, ct, branch, ct->msg->cseq.method_s)) {
		buf_free(&ct->req);
		free(ct->msg);
		free(ct);
		return EINVAL;
	}
	ct->invite = ct->msg->method == SIP_INVITE;
	int err = edge_send(e, dst, ct->req.data, ct->req.len);
	if (err) {
		ct_free(ct);
		return err;
	}
	if (dst->tp == NET_UDP) {
		ct->retx_ms = e->t1;
		timer_start(worker_loop(w), &ct->t_retx, ct->retx_ms, ct_retx, ct);
	}
	timer_start(worker_loop(w), &ct->t_timeout, 64u * e->t1, ct_timeout, ct); /* B, F */
	if (out)
		*out = ct;
	return 0;
}

/* Copies the Route lines of the request into b (CANCEL and ACK carry them, 3261 9.1). */
static void copy_routes(struct buf *b, const struct sip_msg *m)
{
	for (size_t i = 0; i < m->n_hdrs; i++)
		if (m->hdrs[i].id == SIP_HDR_ROUTE)
			buf_append_slice(b, m->hdrs[i].line);
}

static void build_hop_request(struct buf *b, const struct ctsx *ct, const char *method,
			      struct slice to)
{
	const struct sip_msg *m = ct->msg;
	buf_printf(b, "%s %.*s SIP/2.0\r\nVia: %.*s\r\n", method, (int)m->ruri_s.l, m->ruri_s.p,
		   (int)m->via1.whole.l, m->via1.whole.p);
	copy_routes(b, m);
	buf_printf(b, "From: %.*s\r\nTo: %.*s\r\nCall-ID: %.*s\r\nCSeq: %u %s\r\n"
		      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		   (int)m->from.whole.l, m->from.whole.p, (int)to.l, to.p, (int)m->call_id.l,
		   m->call_id.p, m->cseq.num, method);
}

void ctsx_cancel(struct ctsx *ct)
{
	if (!ct->invite || ct->cancel_sent || ct->state >= CT_COMPLETED)
		return;
	if (ct->state == CT_CALLING) {
		ct->cancel_wanted = true; /* RFC 3261 9.1: wait for a provisional */
		return;
	}
	ct->cancel_sent = true;
	struct buf req;
	buf_init(&req);
	build_hop_request(&req, ct, "CANCEL", ct->msg->to.whole);
	if (req.failed) {
		buf_free(&req);
		return;
	}
	char branch[64];
	slice_to_cstr(ct->msg->via1.branch, branch, sizeof branch);
	ctsx_start(ct->wk->edge, ct->wk->w, &ct->flow, &req, branch, NULL, NULL, NULL);
	buf_free(&req);
}

void edge_tsx_response(struct edge_wk *wk, struct edge_rx *rx)
{
	struct edge *e = wk->edge;
	const struct sip_msg *m = rx->msg;
	struct ctsx *ct = ct_find(wk, m->via1.branch, m->cseq.method_s);
	if (!ct) {
		if (e->on_response)
			e->on_response(rx, e->handler_arg);
		return;
	}
	uint16_t s = m->status;
	if (ct->state == CT_DONE)
		return;
	if (ct->state == CT_COMPLETED) {
		if (ct->invite && s >= 300 && ct->ack.len) /* a retransmitted final */
			edge_send(e, &ct->flow, ct->ack.data, ct->ack.len);
		return;
	}
	if (s < 200) {
		if (ct->state == CT_CALLING) {
			ct->state = CT_PROCEEDING;
			if (ct->invite) {
				timer_cancel(&ct->t_retx);
				timer_start(wk_loop(wk), &ct->t_timeout, TIMER_C_MS, ct_timeout, ct);
			}
		}
		if (ct->cancel_wanted)
			ctsx_cancel(ct);
		ct_report(ct, rx, s);
		return;
	}
	timer_cancel(&ct->t_retx);
	timer_cancel(&ct->t_timeout);
	bool reliable = ct->flow.tp != NET_UDP;
	if (ct->invite && s < 300) {
		/* the 2xx ends the client transaction; its ACK is end-to-end */
		ct->state = CT_DONE;
		ct_report(ct, rx, s);
		timer_start(wk_loop(wk), &ct->t_end, 0, ct_end_timer, ct);
		return;
	}
	if (ct->invite) {
		build_hop_request(&ct->ack, ct, "ACK", m->to.whole);
		edge_send(e, &ct->flow, ct->ack.data, ct->ack.len);
	}
	ct->state = CT_COMPLETED;
	buf_free(&ct->req); /* never resent again; the ACK is built */
	ct_report(ct, rx, s);
	/* Timer D (32 s) for INVITE, K (T4) otherwise; zero over streams */
	timer_start(wk_loop(wk), &ct->t_end, reliable ? 0 : (ct->invite ? 32000u : e->t4),
		    ct_end_timer, ct);
}
