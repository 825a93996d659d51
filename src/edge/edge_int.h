/* edge internals shared by its files: per-worker state, transaction tables, metrics. */
#ifndef PINHOLE_EDGE_INT_H
#define PINHOLE_EDGE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "edge.h"

/* Client transactions per worker: a non-INVITE lingers T4 (5 s) after its
 * answer and an INVITE's ends at its 2xx, so chains stay short at 64k. */
#define TSX_BUCKETS 65536
/* Server transactions per worker: UDP ones linger 32 s after their answer
 * (Timer J), so a worker at 20k requests/s holds ~640k. The table doubles
 * whenever it holds more transactions than buckets (up to the max), so that
 * chains stay about one long whatever the rate. */
#define ST_BUCKETS_MIN 1024
#define ST_BUCKETS_MAX (1u << 23)
/* Client transactions over connections per worker, by connection id, so
 * that a closed connection finds its own at once (ctsx.c). */
#define CT_CONN_BUCKETS 4096

struct st_node; /* stsx.c: a server transaction or what a completed one leaves */
struct st_slab; /* stsx.c: where the records of completed ones are carved */

struct edge_wk {
	struct edge *edge;
	struct worker *w;
	struct st_node **st_hash; /* st_buckets chains, a power of two; worker-local */
	size_t st_buckets;
	struct ctsx *ct_hash[TSX_BUCKETS]; /* worker-local */
	size_t n_st, n_ct;
	/* the pending ones over connections, by conn id; worker-local but the
	 * count, which the closing worker reads to skip a worker with none */
	struct ctsx *ct_conn[CT_CONN_BUCKETS];
	_Atomic size_t n_ct_conn;
	/* connections closed (ids) that this worker's transactions have not
	 * heard of yet; guarded by closed_lock, drained on the worker */
	pthread_mutex_t closed_lock;
	uint64_t *closed_ids;
	size_t n_closed, cap_closed;
	bool closed_posted;
	/* flow-token HMAC keyed once (a copy of edge.mac); worker-local */
	struct evp_mac_ctx_st *mac;
	/* flow-token epoch (flowtoken.c): an id of flow_key, and a random value
	 * of this run for connection flows; RO after alloc */
	unsigned char token_key_id;
	unsigned char token_boot[3];
	struct edge_mac_memo *mac_memo; /* EDGE_MAC_MEMO entries; worker-local */
	/* free struct edge_msg blocks of the pooled size; worker-local */
	struct edge_msg *msg_pool;
	unsigned n_msg_pool;
	/* slabs of completed-transaction records (stsx.c); worker-local */
	struct st_slab *slab_cur, *slab_spare;
	/* edge_local_hostport's last answer and its address, formatted once
	 * instead of for every Via and Record-Route; worker-local */
	struct net_addr host_memo_addr;
	char host_memo[128 + 8]; /* edge.advertise and ":port" */
};

/* Received messages up to this size get a block of one size, and a worker
 * keeps up to EDGE_MSG_POOL freed blocks for its next messages: a block is
 * some 12 KB (most of it the parse's header index), and a malloc and free of
 * one per message was most of the allocator's time under a call load. A
 * block freed on another worker (the Call-ID's owner) joins that worker's
 * pool. */
#define EDGE_MSG_DATA 4096
#define EDGE_MSG_POOL 64

/* The MACs a worker computed last, by their input (a token's first 29
 * bytes): the tokens of a dialog's Record-Route and Route come back with
 * every request of the dialog, and a flow's token is the same each time. */
#define EDGE_MAC_MEMO 256
struct edge_mac_memo {
	unsigned char in[29];
	unsigned char mac[10];
	bool used;
};

/* Sources that sent a STUN Binding to our SIP port lately (seen.c): a
 * direct-mapped table, a slot per hash of the source address and port; a
 * new source takes its slot's place (edge_stun_seen_replaced_total). The
 * answer is a hint for a NAT verdict, so a lost race between workers costs
 * at most a wrong word in ctl. */
#define EDGE_STUN_SEEN_SLOTS 4096
struct edge_stun_seen {
	_Atomic uint64_t key; /* net_addr_hash | 1; 0 = empty */
	_Atomic uint64_t ms;  /* loop time of the last one */
};

struct edge {
	struct net *net;
	struct edge_stun_seen stun_seen[EDGE_STUN_SEEN_SLOTS];
	struct edge_wk *wk; /* one per worker */
	unsigned n_wk;
	edge_request_h *on_request;
	edge_response_h *on_response;
	void *handler_arg;
	edge_stun_h *on_stun;
	void *stun_arg;
	net_conn_closed_h *on_closed; /* edge_set_conn_closed; RO after setup */
	void *closed_arg;
	bool force_rport;
	bool register_local; /* edge_set_register_local; RO after setup */
	char advertise[128]; /* "host" or "" */
	struct net_addr advertise_addr; /* when advertise is an IP literal */
	bool advertise_is_ip;
	unsigned char flow_key[32];
	/* HMAC-SHA1 keyed with flow_key: the template that threads other than
	 * the workers copy for each token (a one-shot HMAC() looks the digest up
	 * and keys it again every time); RO after alloc */
	struct evp_mac_ctx_st *mac;
	/* flow-token epoch (flowtoken.c): an id of flow_key, and a random value
	 * of this run for connection flows; RO after alloc */
	unsigned char token_key_id;
	unsigned char token_boot[3];
	uint32_t t1, t2, t4; /* ms */
	uint32_t timer_c;    /* ms, RFC 3261 16.6 step 11 */
	/* the host's addresses, for listeners bound to a wildcard, kept
	 * current from netlink on worker 0; owned by the edge */
	struct net_hostaddrs *hostaddrs;
	struct edge_steer *steer; /* kernel steering by Call-ID (steer.c), or NULL */
	char *ws_origins; /* [sip] ws_origins; owned; RO after alloc */
	/* limits (limit.c); RO after alloc but the counters */
	struct net_ratelimit *rl; /* per-source rates, shared by the workers; or NULL */
	_Atomic uint64_t rl_logged_ms; /* when a drop was last logged; atomic */
	struct net_cidr exempt[16];
	size_t n_exempt;
	size_t max_st, max_ct;
	_Atomic size_t n_st_all, n_ct_all; /* over all workers; atomic */
	unsigned overload_delay_ms;
	size_t overload_queue;
	char retry_after_hdr[32]; /* "Retry-After: N\r\n" */
	/* the flow table (flows.c) and its wheel's tick on worker 0; owned */
	struct edge_flows *flows;
	struct timer flows_timer; /* worker 0 */
	unsigned flow_timer_udp, flow_timer_tcp; /* [outbound], s; RO after alloc */
};

/* flows.c: the wheel ticks every quarter second on worker 0 (edge_flows_start). */
void edge_flows_start(struct edge *e);

/* steer.c: [sip] steering = auto|on|off. Without it (off, one worker, no
 * eBPF, auto without privileges) workers hand messages to the owner. */
int edge_steer_start(struct edge *e, const char *mode);
void edge_steer_free(struct edge_steer *s);

/* One received message: a copy of its bytes and its parse, in one allocation,
 * so that it moves between workers and into a server transaction without
 * being parsed again. Owned by whoever holds it last (process, or a stsx). */
struct edge_msg {
	struct sip_msg msg; /* slices point into data */
	struct edge *edge;
	struct flow flow;
	struct edge_msg *next_free; /* in a worker's pool */
	uint64_t rx_ms; /* the receiving worker's clock when the kernel got it */
	bool pooled;		    /* of the pooled size (EDGE_MSG_DATA bytes of data) */
	size_t len;
	char data[];
};

/* A block for a message of len bytes, from the current worker's pool when it
 * fits; NULL when out of memory. */
struct edge_msg *edge_msg_alloc(struct edge *e, size_t len);
/* Frees em (NULL is fine): into the current worker's pool, or to the heap. */
void edge_msg_free(struct edge_msg *em);
/* Frees the worker's pool (at shutdown). */
void edge_msg_pool_free(struct edge_wk *wk);

/* HMAC-SHA1 keyed with flow_key over p, truncated to EDGE_MAC_LEN bytes: flow
 * tokens, signed branches and stateless To tags (flowtoken.c). */
#define EDGE_MAC_LEN 10
void edge_mac(const struct edge *e, const unsigned char *p, size_t n,
	      unsigned char out[EDGE_MAC_LEN]);
/* base64url without padding of n bytes into out (4n/3 rounded up, plus NUL). */
/* A STUN Binding from f's source was answered on our SIP port at now_ms. */
void edge_stun_seen_note(struct edge *e, const struct flow *f, uint64_t now_ms);
void edge_seen_register_metrics(void);
void edge_b64url_encode(const unsigned char *in, size_t n, char *out);

/* reject.c: a response built from a request, sent once and bounded to
 * EDGE_REPLY_FACTOR times the request's size over datagrams (the extra
 * headers are left out first, then the response is dropped; both counted).
 * to_tag "" makes the stateless tag of the request (edge_stateless_tag). */
int edge_reply_bounded(struct edge *e, const struct flow *f, const struct sip_msg *req,
		       size_t req_len, uint16_t status, const char *reason, struct slice via1,
		       const char *to_tag, const char *extra_hdrs);
/* The To tag of a stateless answer to req: the same for its retransmissions
 * and for the ACK of a non-2xx, and recognisable (edge_stateless_tag_ours). */
void edge_stateless_tag(const struct edge *e, const struct sip_msg *req, char out[24]);
bool edge_stateless_tag_ours(const struct edge *e, const struct sip_msg *req);

/* msgio.c: w's state in e; the current thread's, or NULL off e's workers. */
struct edge_wk *edge_wk_of(struct edge *e, struct worker *w);
struct edge_wk *edge_wk_current(const struct edge *e);
/* Keys the flow-token HMAC contexts (edge and workers): 0 or ENOMEM. */
int edge_mac_init(struct edge *e);
void edge_mac_free(struct edge *e);
/* Whether a message is handled on the worker that received it rather than on
 * its Call-ID's owner: a REGISTER with edge_set_register_local. Read by the
 * receive path and by admission (limit.c), so it lives here. A REGISTER that
 * a registrar answers is no call: no other message of its Call-ID has to
 * leave after it, and the registrar orders REGISTERs of one AOR by Call-ID
 * and CSeq under the store's lock whichever worker runs them. Its
 * retransmissions come from the same socket (UDP: the same 4-tuple, which
 * SO_REUSEPORT always steers to the same worker; streams: the same
 * connection, read by one worker), so they meet its server transaction on
 * the worker that received it. That saves the cross-thread post and wake-up
 * of half the REGISTERs. */
static inline bool edge_handled_where_received(const struct edge *e, const struct sip_msg *m)
{
	return e->register_local && m->request && m->method == SIP_REGISTER;
}
/* The transaction layer (stsx.c, ctsx.c) under the receive path (edge.c),
 * on the worker that owns the message: matching, retransmissions, and
 * whether the message goes up to the role, which the caller then calls.
 *
 * A request: true when it goes up, with rx->st its new server transaction
 * (which took em) or NULL (an ACK, or a CANCEL that matched nothing: passed
 * on statelessly); false when the layer dealt with it (em stays the
 * caller's). */
bool edge_tsx_request(struct edge_wk *wk, struct edge_rx *rx, struct edge_msg *em);
/* A response: true when it goes up, matching no client transaction, or a 2xx
 * of an Accepted INVITE one (rx->ct_matched); false when the layer took it. */
bool edge_tsx_response(struct edge_wk *wk, struct edge_rx *rx);
/* tsxkey.c: a server transaction key being built, on the stack unless it is
 * unusually long. */
struct edge_tkey {
	char *p; /* stack or heap */
	size_t len, cap;
	bool failed;
	char stack[256];
};
/* The key of m's server transaction, matching as method as (named as_name;
 * ACK and INVITE share INVITE's): 0 with the key in k (the caller frees it
 * with edge_tkey_free), or ENOMEM. */
int edge_st_key(struct edge_tkey *k, const struct sip_msg *m, enum sip_method as,
		struct slice as_name);
void edge_tkey_free(struct edge_tkey *k);

/* A connection closed (called on its worker): every worker's client
 * transactions over it end as a transport error on their own worker's next
 * turn (RFC 3261 17.1.4), not at Timer B/F. */
void edge_tsx_conn_closed(struct edge *e, uint64_t conn_id);

/* Sets up the worker's server (stsx.c) and client (ctsx.c) transaction
 * tables: 0 or ENOMEM. */
int edge_stsx_init(struct edge_wk *wk);
int edge_ctsx_init(struct edge_wk *wk);
/* Frees every transaction of the worker, without callbacks, and the table. */
void edge_stsx_free_all(struct edge_wk *wk);
void edge_ctsx_free_all(struct edge_wk *wk);

/* limit.c: reads [sip]'s limit keys and makes the rate limiter: 0 or errno. */
int edge_limits_init(struct edge *e, const struct conf *c);
void edge_limits_free(struct edge *e);
/* Whether a message from f's source is within [sip] rate_limit (takes a
 * token); counts what is not. Any worker. */
bool edge_rate_ok(struct edge *e, struct worker *w, const struct flow *f);
bool edge_rate_exempt(const struct edge *e, const struct net_addr *a);
/* A request that would start something new: no To tag, not ACK or CANCEL. */
bool edge_creates_dialog(const struct sip_msg *m);
/* Whether a request that matched no transaction may have one: false (and
 * counted) at a transaction cap, or when it waited past overload_delay and
 * creates a dialog. The caller answers 503 with e->retry_after_hdr. */
bool edge_admit(struct edge_wk *wk, const struct sip_msg *m, uint64_t rx_ms);

extern struct metric edge_m_rate_limited, edge_m_st_refused, edge_m_ct_refused,
	edge_m_overload_503, edge_m_overload_dropped;

extern struct metric edge_m_rejected, edge_m_reply_trimmed, edge_m_reply_oversize,
	edge_m_acks_absorbed, edge_m_requests, edge_m_responses[6], edge_m_parse_errors,
	edge_m_retransmissions, edge_m_stun, edge_m_crlf, edge_m_dropped,
	edge_m_tsx_timeouts, edge_m_tx, edge_m_send_errors;

/* tls.c: [tls] into net's TLS layer (before the listeners open); logs why not. */
int edge_tls_setup(struct net *n, const struct conf *c);
/* websocket.c: hands the net the ws codec and [sip] ws_origins. */
int edge_ws_setup(struct edge *e, const struct conf *c);

#endif
