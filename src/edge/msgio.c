/* The edge's message plumbing: received-message blocks (pooled per worker) and edge_send. */
#include <stdlib.h>

#include "edge_int.h"

struct metric edge_m_tx = {.name = "sip_sent_total", .help = "SIP messages sent"};
struct metric edge_m_send_errors = {.name = "sip_send_errors_total",
				    .help =
					"sends refused at once (dead TCP connection, full queue); "
					"UDP refused later: net_udp_send_errors_total"};
struct metric edge_m_dropped = {.name = "sip_dropped_total",
				.help = "messages dropped (no route back, unmatched, overload)"};

struct edge_wk *edge_wk_of(struct edge *e, struct worker *w)
{
	return &e->wk[worker_id(w)];
}

/* The current thread's worker state in e, or NULL off e's workers. */
struct edge_wk *edge_wk_current(const struct edge *e)
{
	struct worker *w = worker_current();
	unsigned id = w ? worker_id(w) : 0;
	return w && id < e->n_wk && e->wk[id].w == w ? &e->wk[id] : NULL;
}

struct edge_msg *edge_msg_alloc(struct edge *e, size_t len)
{
	struct edge_wk *wk = len <= EDGE_MSG_DATA ? edge_wk_current(e) : NULL;
	struct edge_msg *em = NULL;
	if (wk && wk->msg_pool) {
		em = wk->msg_pool;
		wk->msg_pool = em->next_free;
		wk->n_msg_pool--;
	} else if (len <= EDGE_MSG_DATA) {
		em = malloc(sizeof *em + EDGE_MSG_DATA);
	} else {
		em = malloc(sizeof *em + len);
	}
	if (!em)
		return NULL;
	em->edge = e;
	em->pooled = len <= EDGE_MSG_DATA;
	em->next_free = NULL;
	em->len = len;
	return em;
}

void edge_msg_free(struct edge_msg *em)
{
	if (!em)
		return;
	struct edge_wk *wk = em->pooled ? edge_wk_current(em->edge) : NULL;
	if (!wk || wk->n_msg_pool >= EDGE_MSG_POOL) {
		free(em);
		return;
	}
	em->next_free = wk->msg_pool;
	wk->msg_pool = em;
	wk->n_msg_pool++;
}

void edge_msg_pool_free(struct edge_wk *wk)
{
	while (wk->msg_pool) {
		struct edge_msg *em = wk->msg_pool;
		wk->msg_pool = em->next_free;
		free(em);
	}
	wk->n_msg_pool = 0;
}

int edge_send(struct edge *e, const struct flow *f, const void *p, size_t len)
{
	int err = net_send(e->net, f, p, len);
	if (err) {
		metric_inc(&edge_m_send_errors);
		/* a stream that refuses a send is gone for the bindings on it */
		if (f->tp != NET_UDP && e->flows)
			edge_flows_send_failed(e->flows, f, time_mono_ms());
	} else
		metric_inc(&edge_m_tx);
	return err;
}
