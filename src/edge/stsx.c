/* RFC 3261 17.2 server transactions (RFC 6026 Accepted too) and the records completed ones leave. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

struct metric edge_m_retransmissions = {.name = "sip_retransmissions_total",
					.help = "retransmitted requests absorbed"};

enum st_state { ST_PROCEEDING, ST_COMPLETED, ST_CONFIRMED, ST_ACCEPTED, ST_DONE };

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

static struct loop *wk_loop(struct edge_wk *wk)
{
	return worker_loop(wk->w);
}

/* ---- the table ---- */

int edge_stsx_init(struct edge_wk *wk)
{
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

void edge_stsx_free_all(struct edge_wk *wk)
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
	free(wk->slab_cur);
	free(wk->slab_spare);
	wk->slab_cur = wk->slab_spare = NULL;
	free(wk->st_hash);
	wk->st_hash = NULL;
	wk->st_buckets = 0;
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
