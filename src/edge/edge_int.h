/* edge internals shared by its files: per-worker state, transaction tables, metrics. */
#ifndef PINHOLE_EDGE_INT_H
#define PINHOLE_EDGE_INT_H

#include "edge.h"

/* per worker; UDP transactions linger 32 s after their answer (Timer J),
 * so a worker at 20k requests/s holds ~640k: chains stay short at 64k */
#define TSX_BUCKETS 65536

struct edge_wk {
	struct edge *edge;
	struct worker *w;
	struct stsx *st_hash[TSX_BUCKETS]; /* worker-local */
	struct ctsx *ct_hash[TSX_BUCKETS]; /* worker-local */
	size_t n_st, n_ct;
};

struct edge {
	struct net *net;
	struct edge_wk *wk; /* one per worker */
	unsigned n_wk;
	edge_request_h *on_request;
	edge_response_h *on_response;
	void *handler_arg;
	edge_stun_h *on_stun;
	void *stun_arg;
	bool force_rport;
	char advertise[128]; /* "host" or "" */
	struct net_addr advertise_addr; /* when advertise is an IP literal */
	bool advertise_is_ip;
	unsigned char flow_key[32];
	uint32_t t1, t2, t4; /* ms */
	/* the host's addresses, for listeners bound to a wildcard; RO after alloc */
	struct net_addr host_addrs[64];
	size_t n_host_addrs;
};

/* One received message: a copy of its bytes and its parse, in one allocation,
 * so that it moves between workers and into a server transaction without
 * being parsed again. Owned by whoever holds it last (process, or a stsx). */
struct edge_msg {
	struct sip_msg msg; /* slices point into data */
	struct edge *edge;
	struct flow flow;
	size_t len;
	char data[];
};

struct edge_wk *edge_wk_of(struct edge *e, struct worker *w);
/* Handles a request on its owning worker: transaction matching, then the role.
 * Takes em when it returns true (a new server transaction keeps it). */
bool edge_tsx_request(struct edge_wk *wk, struct edge_rx *rx, struct edge_msg *em);
/* Handles a response on its owning worker: client transaction matching. */
void edge_tsx_response(struct edge_wk *wk, struct edge_rx *rx);
void edge_tsx_free_all(struct edge_wk *wk);

extern struct metric edge_m_requests, edge_m_responses[6], edge_m_parse_errors,
	edge_m_retransmissions, edge_m_stun, edge_m_crlf, edge_m_dropped,
	edge_m_tsx_timeouts;

#endif
