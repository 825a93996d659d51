/* RFC 3261 section 17 transactions for a proxy: server side (with RFC 6026 Accepted) and client side. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

enum st_state { ST_PROCEEDING, ST_COMPLETED, ST_CONFIRMED, ST_ACCEPTED, ST_DONE };
enum ct_state { CT_CALLING, CT_PROCEEDING, CT_COMPLETED, CT_ACCEPTED, CT_DONE };

/* our branches (the proxy's: 38 characters), "|" and the longest method */
#define CT_KEY_MAX 64

/* What a worker's server table holds: a transaction (struct stsx), or the
 * compact record (struct st_done) that a completed non-INVITE transaction
 * over UDP leaves for Timer J, or an accepted INVITE for Timer L. */
struct st_node {
	struct st_node *hnext;
	uint64_t hash;
	const char *key; /* inline in the record that starts with the node */
	uint32_t key_len;
	bool done; /* a struct st_done */
};

struct stsx {
	struct st_node node; /* first */
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
	uint64_t final_ms; /* loop time the final response went out */
	char to_tag[24];
	void *owner;
	stsx_cancel_h *on_cancel;
	stsx_end_h *on_end;
	char key[]; /* see edge_st_key; not NUL-terminated */
};

/* A completed non-INVITE transaction over UDP (RFC 3261 17.2.2, Completed):
 * all it does until Timer J is answer retransmissions of its request with
 * its final response, so it keeps only its key, where to send and the bytes,
 * in one block of about 100 bytes plus the response. A struct stsx is some
 * 600 bytes plus the response's buffer, and at 20,000 requests/s a worker
 * holds 640,000 of them for Timer J's 32 s. Owned by the worker's table.
 *
 * An INVITE answered 2xx (RFC 6026 7.1, Accepted) leaves one too, with no
 * response: until Timer L it only absorbs retransmissions of the INVITE and
 * lets an ACK that reuses its branch through to the proxy. Every call holds
 * one for 32 s; the proxy forwards later 2xx of other branches statelessly. */
struct st_done {
	struct st_node node; /* first */
	struct edge_wk *wk;
	struct st_slab *slab; /* NULL: its own heap block */
	struct timer t_end;   /* Timer J, or L when accepted */
	uint16_t listener;
	bool accepted; /* an INVITE's Accepted state: nothing to resend */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} remote;
	uint32_t resp_len;
	char data[]; /* key, then the response */
};

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

/* ---- keys and tables ---- */

int edge_tsx_init(struct edge_wk *wk)
{
	pthread_mutex_init(&wk->closed_lock, NULL);
	wk->st_hash = calloc(ST_BUCKETS_MIN, sizeof *wk->st_hash);
	if (!wk->st_hash)
		return ENOMEM;
	wk->st_buckets = ST_BUCKETS_MIN;
	return 0;
}

static struct st_node **st_bucket(struct edge_wk *wk, uint64_t hash)
{
	return &wk->st_hash[hash & (wk->st_buckets - 1)];
}

static struct st_node *st_find(struct edge_wk *wk, const struct edge_tkey *k)
{
	uint64_t h = hash_bytes(k->p, k->len);
	for (struct st_node *n = *st_bucket(wk, h); n; n = n->hnext)
		if (n->hash == h && n->key_len == k->len && memcmp(n->key, k->p, k->len) == 0)
			return n;
	return NULL;
}

/* Doubles the table; a failed grow only makes chains longer. */
static void st_grow(struct edge_wk *wk)
{
	size_t size = wk->st_buckets * 2;
	struct st_node **tab = calloc(size, sizeof *tab);
	if (!tab)
		return;
	for (size_t i = 0; i < wk->st_buckets; i++) {
		struct st_node *n = wk->st_hash[i], *next;
		for (; n; n = next) {
			next = n->hnext;
			n->hnext = tab[n->hash & (size - 1)];
			tab[n->hash & (size - 1)] = n;
		}
	}
	free(wk->st_hash);
	wk->st_hash = tab;
	wk->st_buckets = size;
}

static void st_link(struct edge_wk *wk, struct st_node *n)
{
	if (wk->n_st >= wk->st_buckets && wk->st_buckets < ST_BUCKETS_MAX)
		st_grow(wk);
	struct st_node **head = st_bucket(wk, n->hash);
	n->hnext = *head;
	*head = n;
	wk->n_st++;
	wk->edge->n_st_all++;
}

static void st_unlink(struct edge_wk *wk, struct st_node *n)
{
	struct st_node **pp = st_bucket(wk, n->hash);
	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = n->hnext;
		wk->n_st--;
		wk->edge->n_st_all--;
	}
}

/* ---- slabs for st_done records ----
 *
 * The records all live Timer J and go in the order they came, so they are
 * carved one after the other from 1 MB slabs, and a slab is reused (one
 * spare per worker) or freed when its last record goes. From the heap, each
 * record grew the worker's arena by its size, a page at a time, with an
 * mprotect() system call each time under a steady stream of new ones. */

#define ST_SLAB_SIZE (1u << 20)
#define ST_SLAB_ALIGN 16u

struct st_slab {
	size_t used, live; /* bytes carved; records not yet freed */
	_Alignas(ST_SLAB_ALIGN) char data[];
};

static struct st_done *st_done_alloc(struct edge_wk *wk, size_t size)
{
	size = (size + ST_SLAB_ALIGN - 1) & ~(size_t)(ST_SLAB_ALIGN - 1);
	if (size > ST_SLAB_SIZE / 16) {
		struct st_done *d = malloc(size); /* a large response: its own block */
		if (d)
			d->slab = NULL;
		return d;
	}
	struct st_slab *sl = wk->slab_cur;
	if (sl && sl->used + size > ST_SLAB_SIZE && sl->live == 0)
		sl->used = 0; /* all of it came back already: start it over */
	if (!sl || sl->used + size > ST_SLAB_SIZE) {
		/* the full one stays until its last record goes (st_done_free) */
		sl = wk->slab_spare ? wk->slab_spare : malloc(sizeof *sl + ST_SLAB_SIZE);
		if (!sl)
			return NULL;
		wk->slab_spare = NULL;
		sl->used = sl->live = 0;
		wk->slab_cur = sl;
	}
	struct st_done *d = (struct st_done *)(sl->data + sl->used);
	sl->used += size;
	sl->live++;
	d->slab = sl;
	return d;
}

static void st_done_release(struct edge_wk *wk, struct st_done *d)
{
	struct st_slab *sl = d->slab;
	if (!sl) {
		free(d);
		return;
	}
	if (--sl->live || sl == wk->slab_cur)
		return;
	if (!wk->slab_spare)
		wk->slab_spare = sl;
	else
		free(sl);
}

static void st_done_free(struct st_done *d)
{
	timer_cancel(&d->t_end);
	st_unlink(d->wk, &d->node);
	st_done_release(d->wk, d);
}

static void st_done_timer(void *arg)
{
	st_done_free(arg); /* Timer J */
}

static void st_done_resend(struct st_done *d)
{
	struct flow f;
	memset(&f, 0, sizeof f);
	f.tp = NET_UDP;
	f.listener = d->listener;
	memcpy(&f.remote.u, &d->remote, sizeof d->remote);
	edge_send(d->wk->edge, &f, d->data + d->node.key_len, d->resp_len);
}

static void st_free(struct stsx *st)
{
	timer_cancel(&st->t_retx);
	timer_cancel(&st->t_end);
	st_unlink(st->wk, &st->node);
	if (st->on_end) {
		stsx_end_h *h = st->on_end;
		st->on_end = NULL;
		h(st, st->owner);
	}
	buf_free(&st->resp);
	edge_msg_free(st->em);
	free(st->via1);
	free(st);
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

void edge_tsx_free_all(struct edge_wk *wk)
{
	for (size_t i = 0; wk->st_hash && i < wk->st_buckets; i++) {
		while (wk->st_hash[i]) {
			struct st_node *n = wk->st_hash[i];
			if (n->done) {
				st_done_free((struct st_done *)n);
				continue;
			}
			struct stsx *st = (struct stsx *)n;
			st->on_end = NULL;
			st_free(st);
		}
	}
	for (size_t i = 0; i < TSX_BUCKETS; i++)
		while (wk->ct_hash[i])
			ct_free(wk->ct_hash[i]);
	free(wk->slab_cur);
	free(wk->slab_spare);
	wk->slab_cur = wk->slab_spare = NULL;
	free(wk->st_hash);
	wk->st_hash = NULL;
	wk->st_buckets = 0;
	free(wk->closed_ids);
	wk->closed_ids = NULL;
	wk->n_closed = wk->cap_closed = 0;
	pthread_mutex_destroy(&wk->closed_lock);
}

/* ---- server transactions ---- */

/* NULL once the final response has been sent. */
const struct sip_msg *stsx_msg(const struct stsx *st) { return st->msg; }
const struct flow *stsx_flow(const struct stsx *st) { return &st->flow; }
struct worker *stsx_worker(const struct stsx *st) { return st->wk->w; }
bool stsx_final_sent(const struct stsx *st) { return st->status >= 200; }
void *stsx_owner(const struct stsx *st) { return st->owner; }
/* Made on first use: most transactions forward answers that carry their own tag. */
const char *stsx_to_tag(struct stsx *st)
{
	if (!st->to_tag[0])
		edge_new_tag(st->to_tag);
	return st->to_tag;
}

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

/* Replaces a completed non-INVITE UDP transaction by its st_done record for
 * the rest of Timer J, or an accepted INVITE by one for the rest of Timer L.
 * Runs from a timer, never inside a caller that still holds st; the owner
 * learns of the end (on_end) as if the timer had fired. */
static void st_compact_timer(void *arg)
{
	struct stsx *st = arg;
	struct edge_wk *wk = st->wk;
	uint64_t j = 64u * wk->edge->t1;
	uint64_t now = loop_now_ms(worker_loop(wk->w));
	uint64_t left = now - st->final_ms < j ? j - (now - st->final_ms) : 0;
	size_t klen = st->node.key_len;
	size_t rlen = st->state == ST_ACCEPTED ? 0 : st->resp.len;
	struct st_done *d = left ? st_done_alloc(wk, sizeof *d + klen + rlen) : NULL;
	if (!d) {
		/* keep the transaction itself to the end (or end it now) */
		timer_start(worker_loop(wk->w), &st->t_end, left, st_end_timer, st);
		return;
	}
	struct st_slab *slab = d->slab;
	memset(d, 0, sizeof *d);
	d->slab = slab;
	memcpy(d->data, st->key, klen);
	if (rlen)
		memcpy(d->data + klen, st->resp.data, rlen);
	d->node.hash = st->node.hash;
	d->node.key = d->data;
	d->node.key_len = (uint32_t)klen;
	d->node.done = true;
	d->wk = wk;
	d->listener = st->flow.listener;
	d->accepted = st->state == ST_ACCEPTED;
	memcpy(&d->remote, &st->flow.remote.u, sizeof d->remote);
	d->resp_len = d->accepted ? 0 : (uint32_t)st->resp.len;
	timer_init(&d->t_end);
	st_free(st); /* unlinks it: the record takes its place */
	st_link(wk, &d->node);
	timer_start(worker_loop(wk->w), &d->t_end, left, st_done_timer, d);
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
	/* kept for retransmissions of the request; never a 2xx to an INVITE,
	 * which Accepted does not resend (RFC 6026 7.1) */
	bool accepting = st->invite && status >= 200 && status < 300;
	if ((status >= 200 || !st->resp.len) && !accepting) {
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
	edge_msg_free(st->em);
	st->em = NULL;
	st->msg = NULL;
	free(st->via1);
	st->via1 = NULL;
	st->via1_len = 0;
	if (st->invite && status < 300) {
		/* RFC 6026 7.1: Accepted, absorbing INVITE retransmissions for 64*T1
		 * (Timer L), as a compact record from the next turn on */
		st->state = ST_ACCEPTED;
		buf_free(&st->resp); /* a provisional; nothing is resent from here on */
		st->final_ms = loop_now_ms(wk_loop(st->wk));
		timer_start(wk_loop(st->wk), &st->t_end, 0, st_compact_timer, st);
	} else if (st->invite) {
		st->state = ST_COMPLETED;
		if (!reliable) {
			st->retx_ms = e->t1;
			timer_start(wk_loop(st->wk), &st->t_retx, st->retx_ms, st_timer_g, st);
		}
		timer_start(wk_loop(st->wk), &st->t_end, 64u * e->t1, st_end_timer, st); /* H */
	} else {
		st->state = ST_COMPLETED;
		/* J: zero over streams; over UDP 64*T1, most of it as a compact record */
		st->final_ms = loop_now_ms(wk_loop(st->wk));
		if (reliable || !st->resp.len || st->resp.len > UINT32_MAX)
			timer_start(wk_loop(st->wk), &st->t_end, reliable ? 0 : 64u * e->t1,
				    st_end_timer, st);
		else
			timer_start(wk_loop(st->wk), &st->t_end, 0, st_compact_timer, st);
	}
	return err;
}

int stsx_reply(struct stsx *st, uint16_t status, const char *reason, const char *extra_hdrs)
{
	if (!st->msg)
		return EALREADY; /* a final response went out already */
	struct buf out;
	buf_init(&out);
	struct slice tag = status > 100 && st->msg->to_tag.l == 0 ? slice_cstr(stsx_to_tag(st))
								 : SLICE_NULL;
	int err = sip_build_response(&out, st->msg, status, reason, stsx_via1_fixed(st), tag,
				     extra_hdrs);
	if (!err)
		err = stsx_send_response(st, status, out.data, out.len);
	buf_free(&out);
	return err;
}

int stsx_reject(struct stsx *st, uint16_t status, const char *reason, const char *extra_hdrs)
{
	if (!st->msg || st->state != ST_PROCEEDING || st->status >= 200)
		return EALREADY;
	struct edge_wk *wk = st->wk;
	metric_inc(&edge_m_rejected);
	int err = edge_reply_bounded(wk->edge, &st->flow, st->msg, st->em->len, status, reason,
				     stsx_via1_fixed(st), NULL, extra_hdrs);
	/* Nothing is kept to resend: a retransmission is a new request and is
	 * answered (once) again. The request's copy lives until the free on the
	 * next turn, since the handler that called us may still read it. */
	st->status = status;
	st->state = ST_DONE;
	st->msg = NULL;
	timer_cancel(&st->t_retx);
	timer_start(wk_loop(wk), &st->t_end, 0, st_end_timer, st);
	return err;
}

int stsx_pass_refusal(struct stsx *st, uint16_t status, const char *p, size_t len)
{
	if (!st->msg || st->state != ST_PROCEEDING || st->status >= 200)
		return EALREADY;
	struct edge_wk *wk = st->wk;
	int err = EMSGSIZE;
	metric_inc(&edge_m_rejected);
	if (st->flow.tp != NET_UDP || len <= EDGE_REPLY_FACTOR * st->em->len)
		err = edge_send(wk->edge, &st->flow, p, len);
	else
		metric_inc(&edge_m_reply_oversize);
	/* as stsx_reject: nothing kept, no Timer G; the transaction ends */
	st->status = status;
	st->state = ST_DONE;
	st->msg = NULL;
	timer_cancel(&st->t_retx);
	timer_start(wk_loop(wk), &st->t_end, 0, st_end_timer, st);
	return err;
}

/* Creates the server transaction with a copy of key; it takes em (the request). */
static struct stsx *st_create(struct edge_wk *wk, const struct edge_rx *rx,
			      const struct edge_tkey *key,
			      struct edge_msg *em)
{
	struct stsx *st = calloc(1, sizeof *st + key->len);
	if (!st)
		return NULL;
	st->via1 = malloc(rx->via1_fixed.l ? rx->via1_fixed.l : 1);
	if (!st->via1) {
		free(st);
		return NULL;
	}
	memcpy(st->key, key->p, key->len);
	st->node.key = st->key;
	st->node.key_len = (uint32_t)key->len;
	st->node.hash = hash_bytes(key->p, key->len);
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
	st_link(wk, &st->node);
	return st;
}

/* True when the CANCEL goes up to the role, statelessly. */
static bool handle_cancel(struct edge_wk *wk, struct edge_rx *rx)
{
	/* RFC 3261 9.2: the CANCEL is answered by its own transaction; the INVITE
	 * it names is found by the same branch */
	struct edge_tkey ikey;
	struct st_node *found = NULL;
	if (edge_st_key(&ikey, rx->msg, SIP_INVITE, SLICE_LIT("INVITE")) == 0) {
		found = st_find(wk, &ikey);
		edge_tkey_free(&ikey);
	}
	if (found && found->done) {
		/* an INVITE answered 2xx already (Accepted): matched, nothing to stop */
		edge_reply_stateless(rx, 200, "OK", NULL);
		return false;
	}
	struct stsx *inv = (struct stsx *)found;
	if (!inv) {
		/* RFC 3261 16.10: no response context (the INVITE went elsewhere,
		 * or before a restart): forwarded statelessly where the INVITE
		 * would go; the proxy answers only what it cannot route */
		rx->st = NULL;
		return true;
	}
	edge_reply_stateless(rx, 200, "OK", NULL);
	if (inv->status < 200 && inv->on_cancel)
		inv->on_cancel(inv, inv->owner);
	else if (inv->status < 200)
		stsx_reply(inv, 487, "Request Terminated", NULL);
	return false;
}

bool edge_tsx_request(struct edge_wk *wk, struct edge_rx *rx, struct edge_msg *em)
{
	struct edge *e = wk->edge;
	const struct sip_msg *m = rx->msg;
	if (m->method == SIP_CANCEL)
		return handle_cancel(wk, rx);
	struct edge_tkey key;
	if (edge_st_key(&key, m, m->method, m->method_s))
		return false;
	struct st_node *found = st_find(wk, &key);
	if (found && found->done) {
		struct st_done *d = (struct st_done *)found;
		edge_tkey_free(&key);
		if (d->accepted && m->method == SIP_ACK) {
			/* an ACK reusing the 2xx'd INVITE's branch: end-to-end, forwarded */
			rx->st = NULL;
			return true;
		}
		if (m->method != SIP_ACK) {
			/* a completed non-INVITE's request again, or an accepted
			 * INVITE's: the one is answered, the other absorbed */
			metric_inc(&edge_m_retransmissions);
			if (!d->accepted)
				st_done_resend(d);
		}
		return false;
	}
	struct stsx *st = (struct stsx *)found;
	if (st) {
		edge_tkey_free(&key);
		if (m->method == SIP_ACK) {
			if (st->state == ST_COMPLETED) {
				/* the ACK of our non-2xx final: stop Timer G, wait Timer I */
				st->state = ST_CONFIRMED;
				timer_cancel(&st->t_retx);
				timer_start(wk_loop(wk), &st->t_end,
					    st->flow.tp == NET_UDP ? e->t4 : 0, st_end_timer, st);
				return false;
			}
			if (st->state == ST_CONFIRMED || st->state == ST_DONE)
				return false; /* ST_DONE: rejected (stsx_reject), ends this turn */
			/* an ACK for a 2xx: end-to-end, the proxy forwards it */
		} else {
			metric_inc(&edge_m_retransmissions);
			if (st->resp.len && st->state != ST_ACCEPTED)
				edge_send(e, &st->flow, st->resp.data, st->resp.len);
			return false;
		}
	} else if (m->method == SIP_ACK) {
		edge_tkey_free(&key);
		if (edge_stateless_tag_ours(e, m)) {
			/* the ACK of a stateless rejection: hop by hop, it ends here */
			metric_inc(&edge_m_acks_absorbed);
			return false;
		}
	}
	if (m->method == SIP_ACK) {
		rx->st = NULL;
		return true;
	}
	if (!edge_admit(wk, m, em->rx_ms)) {
		edge_tkey_free(&key);
		edge_reply_stateless(rx, 503, "Service Unavailable", e->retry_after_hdr);
		return false;
	}
	st = st_create(wk, rx, &key, em);
	edge_tkey_free(&key);
	if (!st) {
		edge_reply_stateless(rx, 500, "Server Internal Error", NULL);
		return false;
	}
	/* no 100 Trying here: the proxy sends it once it forwards (RFC 3261
	 * 16.2), so that a refused INVITE draws one answer and nothing else */
	rx->st = st;
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
