/* RFC 3261 17.1 client transactions (RFC 6026 Accepted too), ended at once when a connection closes. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

struct metric edge_m_tsx_timeouts = {.name = "sip_transaction_timeouts_total",
				     .help = "client transactions that timed out"};

enum ct_state { CT_CALLING, CT_PROCEEDING, CT_COMPLETED, CT_ACCEPTED, CT_DONE };

/* our branches (the proxy's: 38 characters), "|" and the longest method */
#define CT_KEY_MAX 64

struct ctsx {
	struct ctsx *hnext;
	char key[CT_KEY_MAX];
	uint64_t hash;
	struct edge_wk *wk;
	struct flow flow;
	struct buf req;
	struct sip_msg *msg; /* parsed over req when a CANCEL or ACK needs it (ct_msg) */
	bool invite;
	enum ct_state state;
	struct timer t_retx, t_timeout, t_end;
	uint32_t retx_ms;
	ctsx_resp_h *h;
	void *arg;
	bool cancel_wanted, cancel_sent;
	bool conn_linked; /* in wk->ct_conn (a connection flow, not yet final) */
	struct ctsx *cnext, *cprev;
	struct buf ack; /* ACK for a non-2xx final, resent on retransmissions */
};

static struct loop *wk_loop(struct edge_wk *wk)
{
	return worker_loop(wk->w);
}

/* ---- the table ---- */

int edge_ctsx_init(struct edge_wk *wk)
{
	pthread_mutex_init(&wk->closed_lock, NULL);
	return 0;
}

/* Client key: branch "|" method, NUL-terminated in key[CT_KEY_MAX]; its
 * length, or 0 when it does not fit (no branch of ours is that long). */
static size_t ct_key(char key[CT_KEY_MAX], struct slice branch, struct slice method)
{
	if (branch.l + 1 + method.l >= CT_KEY_MAX)
		return 0;
	memcpy(key, branch.p, branch.l);
	key[branch.l] = '|';
	memcpy(key + branch.l + 1, method.p, method.l);
	key[branch.l + 1 + method.l] = '\0';
	return branch.l + 1 + method.l;
}

static struct ctsx *ct_find(struct edge_wk *wk, struct slice branch, struct slice method)
{
	char key[CT_KEY_MAX];
	size_t n = ct_key(key, branch, method);
	if (!n)
		return NULL;
	uint64_t h = hash_bytes(key, n);
	for (struct ctsx *ct = wk->ct_hash[h % TSX_BUCKETS]; ct; ct = ct->hnext)
		if (ct->hash == h && strcmp(ct->key, key) == 0)
			return ct;
	return NULL;
}

/* ---- client transactions by connection ---- */

static void ct_conn_link(struct ctsx *ct)
{
	struct edge_wk *wk = ct->wk;
	struct ctsx **head = &wk->ct_conn[ct->flow.conn_id % CT_CONN_BUCKETS];
	ct->cprev = NULL;
	ct->cnext = *head;
	if (*head)
		(*head)->cprev = ct;
	*head = ct;
	ct->conn_linked = true;
	wk->n_ct_conn++;
}

static void ct_conn_unlink(struct ctsx *ct)
{
	if (!ct->conn_linked)
		return;
	struct edge_wk *wk = ct->wk;
	if (ct->cprev)
		ct->cprev->cnext = ct->cnext;
	else
		wk->ct_conn[ct->flow.conn_id % CT_CONN_BUCKETS] = ct->cnext;
	if (ct->cnext)
		ct->cnext->cprev = ct->cprev;
	ct->cnext = ct->cprev = NULL;
	ct->conn_linked = false;
	wk->n_ct_conn--;
}

static void ct_free(struct ctsx *ct)
{
	ct_conn_unlink(ct);
	timer_cancel(&ct->t_retx);
	timer_cancel(&ct->t_timeout);
	timer_cancel(&ct->t_end);
	struct ctsx **pp = &ct->wk->ct_hash[ct->hash % TSX_BUCKETS];
	while (*pp && *pp != ct)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = ct->hnext;
		ct->wk->n_ct--;
		ct->wk->edge->n_ct_all--;
	}
	buf_free(&ct->req);
	buf_free(&ct->ack);
	free(ct->msg);
	free(ct);
}

void edge_ctsx_free_all(struct edge_wk *wk)
{
	for (size_t i = 0; i < TSX_BUCKETS; i++)
		while (wk->ct_hash[i])
			ct_free(wk->ct_hash[i]);
	free(wk->closed_ids);
	wk->closed_ids = NULL;
	wk->n_closed = wk->cap_closed = 0;
	pthread_mutex_destroy(&wk->closed_lock);
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

void ctsx_give_up(struct ctsx *ct)
{
	timer_cancel(&ct->t_retx);
	ctsx_cancel(ct);
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
	ct_conn_unlink(ct);
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
	size_t n = ct_key(ct->key, slice_cstr(branch), method);
	if (!n)
		return EINVAL;
	ct->hash = hash_bytes(ct->key, n);
	size_t b = ct->hash % TSX_BUCKETS;
	ct->hnext = wk->ct_hash[b];
	wk->ct_hash[b] = ct;
	wk->n_ct++;
	wk->edge->n_ct_all++;
	return 0;
}

int ctsx_start(struct edge *e, struct worker *w, const struct flow *dst, struct buf *req,
	       const char *branch, ctsx_resp_h *h, void *arg, struct ctsx **out)
{
	struct edge_wk *wk = edge_wk_of(e, w);
	/* the hard cap: new dialogs were refused at max_ct already (edge_admit);
	 * what comes within dialogs, and CANCELs, may use an eighth more */
	if (e->n_ct_all >= e->max_ct + e->max_ct / 8) {
		metric_inc(&edge_m_ct_refused);
		return ENOSPC;
	}
	struct ctsx *ct = calloc(1, sizeof *ct);
	if (!ct)
		return ENOMEM;
	ct->wk = wk;
	ct->flow = *dst;
	/* a next hop by address: bound to the connection it goes over (reused,
	 * or being opened), so that its CANCEL and ACK follow it and that
	 * connection's end ends the transaction; a flow naming a connection
	 * stays as it is (never a connect) */
	int err = net_flow_connect(e->net, &ct->flow);
	if (err) {
		free(ct); /* req stays the caller's, as for ENOSPC above */
		return err;
	}
	ct->req = *req;
	buf_init(req);
	buf_init(&ct->ack);
	timer_init(&ct->t_retx);
	timer_init(&ct->t_timeout);
	timer_init(&ct->t_end);
	ct->h = h;
	ct->arg = arg;
	/* The request is ours and needs only its method here, which the parser
	 * holds equal to its CSeq method. An INVITE is parsed only if a CANCEL
	 * or the ACK of a failure is built from it (ct_msg), which most never
	 * need: a parse per call and its 8 KB block saved. */
	const char *sp = ct->req.len ? memchr(ct->req.data, ' ', ct->req.len) : NULL;
	struct slice method = {ct->req.data, sp ? (size_t)(sp - ct->req.data) : 0};
	ct->invite = slice_eq(method, SLICE_LIT("INVITE")); /* case-sensitive (3261 7.1) */
	err = method.l ? ct_insert(wk, ct, branch, method) : EINVAL;
	if (err) {
		buf_free(&ct->req);
		free(ct);
		return err;
	}
	/* linked before the send: a close that the send races with finds it
	 * (the closing worker reads n_ct_conn after the connection is gone) */
	if (ct->flow.tp != NET_UDP)
		ct_conn_link(ct);
	err = edge_send(e, &ct->flow, ct->req.data, ct->req.len);
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

/* The INVITE's parse, made on first use; NULL if it cannot be had. */
static const struct sip_msg *ct_msg(struct ctsx *ct)
{
	if (ct->msg || !ct->req.len)
		return ct->msg;
	struct sip_msg *m = malloc(sizeof *m);
	if (m && sip_msg_parse(m, ct->req.data, ct->req.len, ct->flow.tp != NET_UDP, NULL)) {
		free(m);
		m = NULL;
	}
	return ct->msg = m;
}

static void build_hop_request(struct buf *b, const struct sip_msg *m, const char *method,
			      struct slice to)
{
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
	const struct sip_msg *m = ct_msg(ct);
	if (!m)
		return;
	ct->cancel_sent = true;
	struct buf req;
	buf_init(&req);
	build_hop_request(&req, m, "CANCEL", m->to.whole);
	if (req.failed) {
		buf_free(&req);
		return;
	}
	char branch[64];
	slice_to_cstr(m->via1.branch, branch, sizeof branch);
	ctsx_start(ct->wk->edge, ct->wk->w, &ct->flow, &req, branch, NULL, NULL, NULL);
	buf_free(&req);
}

/* Whether a response came from where ct sent its request: over its
 * connection, or from the address it went to. */
static bool ct_from_hop(const struct ctsx *ct, const struct flow *f)
{
	if (ct->flow.tp != f->tp)
		return false;
	if (f->tp != NET_UDP)
		return ct->flow.conn_id == f->conn_id;
	return net_addr_eq(&ct->flow.remote, &f->remote);
}

bool edge_tsx_response(struct edge_wk *wk, struct edge_rx *rx)
{
	struct edge *e = wk->edge;
	const struct sip_msg *m = rx->msg;
	struct ctsx *ct = ct_find(wk, m->via1.branch, m->cseq.method_s);
	if (!ct)
		return true;
	uint16_t s = m->status;
	if (ct->state == CT_DONE)
		return false;
	if (s == 430 && !ct_from_hop(ct, &rx->flow)) {
		/* RFC 5626 11.5: a 430 says the hop we sent to lost its flow
		 * to the phone, and moves the request to another flow; from
		 * anyone else (who saw our branch) it says nothing */
		metric_inc(&edge_m_dropped);
		return false;
	}
	if (ct->state == CT_ACCEPTED) {
		/* RFC 6026 7.2: more 2xx (retransmitted, or forked below) go up
		 * statelessly, known as answers to what we sent */
		if (s >= 200 && s < 300) {
			rx->ct_matched = true;
			return true;
		}
		metric_inc(&edge_m_dropped);
		return false;
	}
	if (ct->state == CT_COMPLETED) {
		if (ct->invite && s >= 300 && ct->ack.len) /* a retransmitted final */
			edge_send(e, &ct->flow, ct->ack.data, ct->ack.len);
		return false;
	}
	if (s < 200) {
		if (ct->state == CT_CALLING) {
			ct->state = CT_PROCEEDING;
			if (ct->invite) {
				timer_cancel(&ct->t_retx);
				timer_start(wk_loop(wk), &ct->t_timeout, e->timer_c, ct_timeout, ct);
			}
		} else if (ct->invite && s > 100 && !ct->cancel_sent) {
			/* RFC 3261 16.7 step 2: a provisional above 100 restarts Timer C,
			 * so a phone that keeps ringing (180 every minute) is not cut off */
			timer_start(wk_loop(wk), &ct->t_timeout, e->timer_c, ct_timeout, ct);
		}
		if (ct->cancel_wanted)
			ctsx_cancel(ct);
		ct_report(ct, rx, s);
		return false;
	}
	timer_cancel(&ct->t_retx);
	timer_cancel(&ct->t_timeout);
	ct_conn_unlink(ct); /* answered: a close from now on changes nothing */
	bool reliable = ct->flow.tp != NET_UDP;
	if (ct->invite && s < 300) {
		/* the 2xx ends the owner's part; its ACK is end-to-end. The
		 * transaction stays Accepted for Timer M (RFC 6026 7.2, 64*T1), so
		 * that later 2xx of the same INVITE are known as ours. */
		ct->state = CT_ACCEPTED;
		ct_report(ct, rx, s);
		ct->h = NULL;
		ct->arg = NULL;
		buf_free(&ct->req);
		free(ct->msg);
		ct->msg = NULL;
		timer_start(wk_loop(wk), &ct->t_end, 64u * e->t1, ct_end_timer, ct);
		return false;
	}
	const struct sip_msg *im = ct->invite ? ct_msg(ct) : NULL;
	if (im) {
		build_hop_request(&ct->ack, im, "ACK", m->to.whole);
		edge_send(e, &ct->flow, ct->ack.data, ct->ack.len);
	}
	ct->state = CT_COMPLETED;
	buf_free(&ct->req); /* never resent again; the ACK is built */
	free(ct->msg);      /* it pointed into req */
	ct->msg = NULL;
	ct_report(ct, rx, s);
	/* Timer D (32 s) for INVITE, K (T4) otherwise; zero over streams */
	timer_start(wk_loop(wk), &ct->t_end, reliable ? 0 : (ct->invite ? 32000u : e->t4),
		    ct_end_timer, ct);
	return false;
}

/* ---- connections that closed ---- */

/* RFC 3261 17.1.1.2 / 17.1.2.2: a transport error ends a pending client
 * transaction and the owner hears of it as a 503. */
static void ct_transport_error(struct ctsx *ct)
{
	ct_conn_unlink(ct);
	timer_cancel(&ct->t_retx);
	timer_cancel(&ct->t_timeout);
	ct->state = CT_DONE;
	timer_start(wk_loop(ct->wk), &ct->t_end, 0, ct_end_timer, ct);
	ct_report(ct, NULL, 503);
}

/* Ends this worker's pending transactions over connection id. The owner's
 * callback may start or end others (a failover, a CANCEL): the bucket is
 * searched again from its head after each one (all in it are few). */
static void ct_conn_failed(struct edge_wk *wk, uint64_t id)
{
	for (;;) {
		struct ctsx *ct = wk->ct_conn[id % CT_CONN_BUCKETS];
		while (ct && ct->flow.conn_id != id)
			ct = ct->cnext;
		if (!ct)
			return;
		ct_transport_error(ct);
	}
}

/* Runs on a worker: its transactions hear of the connections closed since. */
static void closed_drain(void *arg)
{
	struct edge_wk *wk = arg;
	pthread_mutex_lock(&wk->closed_lock);
	uint64_t *ids = wk->closed_ids;
	size_t n = wk->n_closed;
	wk->closed_ids = NULL;
	wk->n_closed = wk->cap_closed = 0;
	wk->closed_posted = false;
	pthread_mutex_unlock(&wk->closed_lock);
	for (size_t i = 0; i < n; i++)
		ct_conn_failed(wk, ids[i]);
	free(ids);
}

void edge_tsx_conn_closed(struct edge *e, uint64_t conn_id)
{
	for (unsigned i = 0; i < e->n_wk; i++) {
		struct edge_wk *wk = &e->wk[i];
		/* a transaction over it was linked before its send, and the send
		 * came before the close (or it failed): none now, none to tell */
		if (!wk->n_ct_conn)
			continue;
		pthread_mutex_lock(&wk->closed_lock);
		if (wk->n_closed == wk->cap_closed) {
			size_t cap = wk->cap_closed ? 2 * wk->cap_closed : 16;
			uint64_t *p = realloc(wk->closed_ids, cap * sizeof *p);
			if (!p) { /* Timer B/F will end them instead */
				pthread_mutex_unlock(&wk->closed_lock);
				continue;
			}
			wk->closed_ids = p;
			wk->cap_closed = cap;
		}
		wk->closed_ids[wk->n_closed++] = conn_id;
		if (!wk->closed_posted)
			wk->closed_posted = loop_post(worker_loop(wk->w), closed_drain, wk) == 0;
		pthread_mutex_unlock(&wk->closed_lock);
	}
}
