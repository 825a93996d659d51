/* edge: SIP over flows — symmetric response, keepalive answers, flow tokens, and RFC 3261 transactions.
 *
 * The edge owns the net's receive path for SIP. Every message is parsed on the
 * worker that received it and then handled by the worker that owns its Call-ID
 * (hash of Call-ID), so all messages of one call are handled, and leave, in the
 * order they arrived, whichever socket they came in on. REGISTER, which belongs
 * to no call, is handled where it arrived when a registrar answers it
 * (edge_set_register_local; its retransmissions arrive there too).
 * Transactions live in per-worker tables and are touched only by their worker.
 *
 * Ownership: struct edge is owned by the serve command. A server transaction
 * (struct stsx) is owned by the edge; the role that handles a request may attach
 * itself (stsx_set_owner) and is told when the transaction ends. A client
 * transaction (struct ctsx) is owned by the edge; its owner gets responses through
 * the callback until it calls ctsx_detach() or the transaction ends.
 */
#ifndef PINHOLE_EDGE_H
#define PINHOLE_EDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"
#include "sip/sip.h"

struct edge;
struct stsx;
struct ctsx;

extern const struct conf_key edge_conf_keys[]; /* [sip], [outbound] */
extern const struct conf_key edge_tls_conf_keys[]; /* [tls] */

/* What a role sees of one received message, valid during the handler call. */
struct edge_rx {
	struct edge *edge;
	struct worker *w;
	struct flow flow;
	const struct sip_msg *msg;
	/* top Via value with received/rport added (RFC 3581), what responses and
	 * forwarded requests must carry */
	struct slice via1_fixed;
	struct stsx *st; /* requests other than ACK; NULL for ACK */
	/* responses: it matched a client transaction of ours (one that took a
	 * 2xx, RFC 6026 Accepted, when it reaches the response handler) */
	bool ct_matched;
};

/* A new request (not a retransmission). st is in Proceeding/Trying; the handler
 * answers through stsx_reply() now or later. CANCEL is handled by the edge. */
typedef void(edge_request_h)(const struct edge_rx *rx, void *arg);
/* A response that matched no client transaction (forward statelessly or drop). */
typedef void(edge_response_h)(const struct edge_rx *rx, void *arg);

int edge_alloc(struct edge **ep, struct net *n, const struct conf *c);
void edge_free(struct edge *e);
void edge_set_handlers(struct edge *e, edge_request_h *req, edge_response_h *resp, void *arg);
/* Says that the request handler answers every REGISTER itself (a registrar)
 * and never forwards one through a client transaction. REGISTERs are then
 * handled on the worker that received them, without the hand-off to their
 * Call-ID's owner: nothing else of their Call-ID has to keep order with them,
 * and their retransmissions arrive on that same worker. (A forwarded
 * REGISTER has to stay with the owner, where its responses go to meet its
 * client transaction.) Off by default; set before net_start. */
void edge_set_register_local(struct edge *e, bool on);
/* Hook for STUN datagrams arriving on a SIP UDP socket (RFC 5626 keepalives):
 * returns 0 with the response in out, or an error to drop. */
typedef int(edge_stun_h)(const struct flow *f, const uint8_t *p, size_t len, struct buf *out,
			 void *arg);
void edge_set_stun(struct edge *e, edge_stun_h *h, void *arg);
/* The edge owns the net's connection-closed hook (net_set_conn_closed): it
 * ends the client transactions over the connection as transport errors at
 * once (ctsx_resp_h with 503), then calls h, on the connection's worker,
 * with the flow it carried. One handler; before net_start. */
void edge_set_conn_closed(struct edge *e, net_conn_closed_h *h, void *arg);

struct net *edge_net(struct edge *e);
unsigned edge_worker_of_callid(const struct edge *e, struct slice call_id);
/* Messages the per-source limiter refused, and sources whose unfull bucket
 * gave way to a new source (a table too small for the load), since start. */
void edge_limit_counts(const struct edge *e, int64_t *limited, int64_t *evictions);
/* Server and client transactions held now (the caps' counts). */
void edge_tsx_counts(const struct edge *e, int64_t *server, int64_t *client);
/* Datagrams the kernel steered to their Call-ID's worker, and ones it left to
 * its default choice (no Call-ID found), since start; 0 without steering. */
void edge_steer_counts(const struct edge *e, int64_t *steered, int64_t *left);

/* "host:port" that a peer reaching us on listener idx should put in a Route:
 * [sip] advertise when set, else the listener's bound address, else (wildcard)
 * the address the flow's packets were sent to. Writes into buf; returns buf. */
const char *edge_local_hostport(const struct edge *e, const struct flow *f, char *buf,
				size_t len);
/* Whether host:port (port 0 = default 5060) names this server. */
bool edge_is_local(const struct edge *e, struct slice host, uint16_t port);
/* The same for an address already parsed (a flow's remote end). Both know
 * the host's addresses as they are now (netlink keeps them current), and a
 * loopback interface's whole prefix (127.0.0.2 is us). */
bool edge_addr_is_local(const struct edge *e, const struct net_addr *a);
/* Whether an IP (any port) is this server's: [sip] advertise, a listener's
 * address, or one of the host's. */
bool edge_ip_is_local(const struct edge *e, const struct net_addr *a);
/* The [sip] advertise value, "" when unset. */
const char *edge_advertise(const struct edge *e);

/* Sends raw bytes on a flow and counts it. */
int edge_send(struct edge *e, const struct flow *f, const void *p, size_t len);
/* Resolves a SIP URI's host:port (IP literals only) and transport into a flow
 * from our matching listener: a UDP flow, or for transport=tcp a next hop by
 * address (net_flow_next_hop: it reuses a connection there, ours or one the
 * peer aliased, or opens one when first sent on; nothing is opened now).
 * ENOENT when it names a host we cannot resolve or a transport we have no
 * listener for, ENOTSUP for a transport we do not know. */
int edge_flow_for_uri(struct edge *e, const struct sip_uri *uri, struct flow *out);
/* How a URI naming one of our hops over tp is written (RFC 5630): "sips"
 * for TLS, else "sip"; and the transport parameter with its ';' after it
 * ("transport=tcp;" for TCP, "" for UDP and for a sips: URI). */
const char *edge_uri_scheme(enum net_transport tp);
const char *edge_uri_tp_param(enum net_transport tp);
/* Sends a stateless response to a request built from rx (To tag added for >100),
 * bounded like stsx_reject. */
int edge_reply_stateless(const struct edge_rx *rx, uint16_t status, const char *reason,
			 const char *extra_hdrs);

/* ---- no reflection, no amplification ----
 *
 * Whoever sends a datagram may put someone else's address on it, so what the
 * edge sends back to an unproven source is one answer per received request,
 * at most EDGE_REPLY_FACTOR times the request's size: 3 leaves room for an
 * answer's own lines (received/rport, a To tag) and a few extra headers such
 * as Allow or three digest challenges on a usual request, and gives a
 * spoofer's shortest requests no lever. Over streams (a completed handshake)
 * there is no bound. */
#define EDGE_REPLY_FACTOR 3

/* Refuses a request before routing: one response, sent now and never again
 * (no Timer G over UDP, no record for Timer J), with a To tag derived from the
 * request so that its retransmissions, answered anew, get the same one and
 * the ACK is recognised and dropped. The transaction ends at once (its owner
 * hears on_end on the next loop turn); st must not be used after the call.
 * Extra headers are left out, and then the response, when it would exceed the
 * bound above; both are counted. 0, EALREADY (a final went out already),
 * EMSGSIZE (dropped) or a send error. */
int stsx_reject(struct stsx *st, uint16_t status, const char *reason, const char *extra_hdrs);
/* The same for a refusal prepared elsewhere (a registrar behind this edge
 * refused a request we forwarded, before anything rang): sent once, or
 * dropped and counted when over the bound (its headers cannot be left out
 * here); the transaction ends. Status is its final status (>= 300). */
int stsx_pass_refusal(struct stsx *st, uint16_t status, const char *p, size_t len);

/* A branch for a request forwarded without a transaction (RFC 3261 16.11),
 * HMAC-signed over the Via below ours and the Call-ID: the same input gives
 * the same branch, and a response naming it can be checked with
 * edge_branch_verify against its own second Via and Call-ID. */
void edge_branch_sign(const struct edge *e, struct slice via_up, struct slice call_id,
		      char out[32]);
/* A fresh branch for a request forwarded with a client transaction (one per
 * fork branch: a random nonce, then the same MAC over it, the Via below ours
 * and the Call-ID), so that a response arriving after its transaction ended
 * can still be forwarded statelessly (RFC 3261 16.7) as one to what we sent.
 * EDGE_SIGNED_BRANCH_LEN characters and a NUL; the caller may append "." and
 * anything (the proxy's loop-detection hash): the check ignores it. */
#define EDGE_SIGNED_BRANCH_LEN 29
void edge_branch_new_signed(const struct edge *e, struct slice via_up, struct slice call_id,
			    char out[32]);
/* Whether branch is one of the two forms above for this Via and Call-ID. */
bool edge_branch_verify(const struct edge *e, struct slice branch, struct slice via_up,
			struct slice call_id);

/* ---- flow tokens (RFC 5626 5.2): a flow named in a URI user part ----
 *
 *   0      1        2     3          6               11                27     29          39
 *  +------+--------+-----+----------+---------------+-----------------+------+-----------+
 *  | ver/ | listen | key | boot     | conn id       | remote IP (16)  | port | HMAC-SHA1 |
 *  | v6/tp| index  | id  | (BE 24)  | (BE 40)       | v4: first 4     | BE   | first 10  |
 *  +------+--------+-----+----------+---------------+-----------------+------+-----------+
 *  byte 0: version (4 bits, 2), IPv6 (1 bit), transport (3 bits).
 *  byte 1: listener index (7 bits); top bit: a next hop by address (a stream
 *  flow with may_connect, conn id 0: "reuse or open a connection there").
 *  then base64url without padding (52 chars): unreserved in a SIP user part.
 *
 * The epoch (key id, boot) bounds a token's life: the key id is derived from
 * flow_key, so a token from before a key rotation, or from before a restart
 * with a random key, is recognised as stale, not forged; boot is random per
 * start and set only for flows naming a connection, whose ids restart with the process:
 * a token naming connection 7 of an earlier run must not reach whoever holds
 * connection 7 now. UDP tokens under a fixed flow_key survive a restart.
 * Connection ids are a per-process counter from 1: 40 bits never wrap.
 */
#define FLOW_TOKEN_LEN 52

/* Writes the token (FLOW_TOKEN_LEN chars + NUL) into out. */
void edge_flow_token_encode(const struct edge *e, const struct flow *f,
			    char out[FLOW_TOKEN_LEN + 1]);
/* 0 and the flow, or EBADMSG (not a token), ESTALE (an authentic-looking token
 * of another epoch: an earlier key, an earlier run's connection, an older
 * format; RFC 5626 5.3: the flow is gone, 430) or EPERM (HMAC mismatch:
 * forged). */
int edge_flow_token_decode(const struct edge *e, struct slice token, struct flow *out);

/* ---- server transactions (RFC 3261 17.2) ---- */

typedef void(stsx_cancel_h)(struct stsx *st, void *arg); /* a CANCEL matched it */
typedef void(stsx_end_h)(struct stsx *st, void *arg);    /* it is being freed */

/* The request (a copy); NULL once the final response has been sent. */
const struct sip_msg *stsx_msg(const struct stsx *st);
const struct flow *stsx_flow(const struct stsx *st);
struct slice stsx_via1_fixed(const struct stsx *st);
struct worker *stsx_worker(const struct stsx *st);
bool stsx_final_sent(const struct stsx *st);
void stsx_set_owner(struct stsx *st, void *owner, stsx_cancel_h *on_cancel, stsx_end_h *on_end);
void *stsx_owner(const struct stsx *st);
/* Builds and sends a response (the To tag is the transaction's own for >100). */
int stsx_reply(struct stsx *st, uint16_t status, const char *reason, const char *extra_hdrs);
/* Sends a response prepared by the caller (a proxied one): status decides the
 * transaction's state; bytes are kept for retransmission when final. */
int stsx_send_response(struct stsx *st, uint16_t status, const char *p, size_t len);
/* The To tag the transaction uses in its own responses. */
const char *stsx_to_tag(struct stsx *st);

/* ---- client transactions (RFC 3261 17.1) ---- */

/* resp is NULL on timeout (Timer B/F, status 408) or transport error (the
 * connection it went over closed: status 503, on the next turn after the
 * close, not at Timer B/F); the owner then acts as if that status was
 * received. Called on the transaction's worker. */
typedef void(ctsx_resp_h)(struct ctsx *ct, const struct edge_rx *rx, uint16_t status,
			  void *arg);

/* Sends req (taken over: *req is reset) to dst and keeps retransmitting it over
 * UDP. branch is the value of our top Via's branch parameter in req. */
int ctsx_start(struct edge *e, struct worker *w, const struct flow *dst, struct buf *req,
	       const char *branch, ctsx_resp_h *h, void *arg, struct ctsx **out);
/* Sends a CANCEL for a pending INVITE (once a provisional has arrived, as RFC
 * 3261 9.1 asks; immediately schedules it otherwise). */
void ctsx_cancel(struct ctsx *ct);
/* The owner goes away: no more callbacks; the transaction runs out on its own. */
void ctsx_detach(struct ctsx *ct);
/* The owner takes the flow for failed and moves on (RFC 5626 failover):
 * no more retransmissions, and an INVITE is cancelled once it is known to
 * have arrived after all (its first provisional, RFC 3261 9.1). The owner
 * still hears its responses and its end (a 2xx may come yet), as before. */
void ctsx_give_up(struct ctsx *ct);
const struct flow *ctsx_flow(const struct ctsx *ct);

/* Generates a fresh branch ("z9hG4bK" + 22 random base64url chars). */
void edge_new_branch(char out[32]);
/* Generates a fresh tag. */
void edge_new_tag(char out[24]);

/* ---- the flow table (flows.c): the flows that bindings use, and their liveness ----
 *
 * One entry per (flow, owner AOR): UDP flows by listener and remote address,
 * streams by connection id. It records when the entry was made, the last
 * keepalive seen on the flow (STUN Binding on a SIP UDP port, CRLF on any),
 * and what its owner asked for when it bound the flow (a registrar, after a
 * REGISTER over it was committed; an edge-only proxy, as the registrar's 2xx
 * to an outbound REGISTER passes): a promised keepalive interval (RFC 5626
 * Flow-Timer), server pings every so often, an expiry. One wheel per shard,
 * one slot a second, holds each entry at its next deadline: a flow whose
 * keepalives stop for longer than its interval plus [outbound] flow_margin,
 * whose connection closes or on which a send fails, is failed and its owner
 * hears it (edge_flow_fail_h); a flow due a server ping has it sent
 * (edge_flow_ping_h). A keepalive only writes the entry's time: a live flow
 * is looked at by the wheel once per interval, never per keepalive or tick.
 *
 * Who can grow it: anyone who sends a STUN Binding to a SIP UDP port (within
 * its source's STUN budget, spoofed sources included) or a CRLF over a TCP
 * connection makes an entry that belongs to no binding.
 * Those are bounded apart (1/16 of [outbound] max_flows) and give way oldest
 * first, to each other and to bound flows; a bound entry never gives way.
 * The bound counts the whole table; at it, an unbound entry of the flow's
 * shard gives way, and with none there a bind is refused and counted (the
 * binding still works; its flow is not watched). Counters:
 * flows_evicted_total, flows_refused_total.
 *
 * Threads: any. Entries live in shards, each behind a mutex: the hot path (a
 * keepalive) is a hash, a lock and a store. Not per worker: a flow's
 * keepalives arrive on the worker its 4-tuple hashes to, its REGISTER is
 * handled on its Call-ID's, its close on its connection's, and the wheel
 * runs on worker 0. The handlers run with the entry's
 * shard locked, on the thread that detected the event (the wheel's tick on
 * worker 0, a connection's worker, a sender): they may use the store and
 * send, and must not call edge_flows_* back.
 */
struct edge_flows;

#define EDGE_FLOW_AOR_MAX 128
#define EDGE_FLOW_INSTANCE_MAX 80

enum edge_ka_kind { EDGE_KA_STUN = 1, EDGE_KA_CRLF = 2 };
enum edge_flow_cause { EDGE_FLOW_KEEPALIVE = 0, EDGE_FLOW_CLOSED = 1, EDGE_FLOW_SEND = 2 };

/* What an owner asks for when it binds a flow. */
struct edge_flow_bind {
	const char *aor;      /* the owner; required */
	const char *instance; /* +sip.instance, or NULL */
	uint32_t reg_id;      /* 0 = none */
	/* keepalives promised every check_s seconds (the Flow-Timer the 200
	 * gave): fail when none came for check_s + flow_margin; 0 = the flow is
	 * not failed for silence (a phone without outbound) */
	unsigned check_s;
	unsigned ping_s;      /* call the ping handler every ping_s seconds; 0 = never */
	unsigned expires_s;   /* the entry goes when not bound again within this; 0 = never */
};

/* The flow failed for cause; the owner marks what used it. Returns how many
 * bindings used the flow: 0 says the owner had let go of it (not a failure;
 * the entry goes). */
typedef size_t(edge_flow_fail_h)(const struct flow *f, const char *aor, enum edge_flow_cause cause,
				 void *arg);
/* A server ping is due on f for aor: send it; false stops this entry's pings
 * (until the next bind). */
typedef bool(edge_flow_ping_h)(const struct flow *f, const char *aor, void *arg);

struct edge_flows_conf {
	size_t max_flows;    /* entries in all; 0 = 1,000,000 */
	unsigned margin_s;   /* [outbound] flow_margin */
	unsigned idle_udp_s; /* an unbound entry with no keepalive this long goes */
	unsigned idle_tcp_s;
	struct net *net; /* for a TLS flow's version and peer in dumps; may be NULL */
};

int edge_flows_alloc(struct edge_flows **fp, const struct edge_flows_conf *c);
void edge_flows_free(struct edge_flows *fl);
void edge_flows_set_handlers(struct edge_flows *fl, edge_flow_fail_h *fail, edge_flow_ping_h *ping,
			     void *arg);
/* A keepalive arrived on f (the exact flow: same listener and remote
 * address, or the same connection). Makes an unbound entry when none has f,
 * for a STUN request or a CRLF over a connection (not a CRLF datagram). */
void edge_flows_keepalive(struct edge_flows *fl, const struct flow *f, enum edge_ka_kind kind,
			  uint64_t now_ms);
/* (Re)binds f for b->aor: the entry is alive again, its keepalive clock and
 * ping schedule start now. 0, EINVAL, ENOMEM, or ENOSPC (table full of bound
 * flows; counted). */
int edge_flows_bind(struct edge_flows *fl, const struct flow *f, const struct edge_flow_bind *b,
		    uint64_t now_ms);
/* aor no longer uses f: its entry goes. */
void edge_flows_unbind(struct edge_flows *fl, const struct flow *f, const char *aor);
/* Fails every bound entry of connection conn_id at once (cause closed);
 * unbound ones go. The edge calls it from the net's connection-closed hook. */
void edge_flows_conn_closed(struct edge_flows *fl, uint64_t conn_id, uint64_t now_ms);
/* A send on stream f was refused: fails its bound entries (cause send). */
void edge_flows_send_failed(struct edge_flows *fl, const struct flow *f, uint64_t now_ms);
/* Whether f is known to have failed (RFC 5626 5.3: a request routed over it
 * by its token gets 430): a bound entry of it failed and none of it is
 * alive. A flow the table does not know is not failed. */
bool edge_flows_failed(struct edge_flows *fl, const struct flow *f);
/* Runs the wheel up to now: deadlines, pings, expiries. */
void edge_flows_tick(struct edge_flows *fl, uint64_t now_ms);

/* One entry as the dump and tests see it. */
struct edge_flow_info {
	struct flow flow;
	uint64_t opened_ms, last_ka_ms; /* last_ka_ms 0 = none yet (a bind is not one) */
	enum edge_ka_kind last_kind;    /* 0 = none */
	bool owned, failed;
	enum edge_flow_cause cause;     /* when failed */
	char aor[EDGE_FLOW_AOR_MAX];
	char instance[EDGE_FLOW_INSTANCE_MAX];
	uint32_t reg_id;
	unsigned check_s, ping_s;
};
/* Copies the entry of (f, aor) (aor NULL or "": the flow's first entry). 0 or ENOENT. */
int edge_flows_get(struct edge_flows *fl, const struct flow *f, const char *aor,
		   struct edge_flow_info *out);
/* Every entry as {"flows":[...]} JSON, or as a table with a header line. */
int edge_flows_dump_json(struct edge_flows *fl, uint64_t now_ms, struct buf *out);
int edge_flows_dump_text(struct edge_flows *fl, uint64_t now_ms, struct buf *out);
struct edge_flows_stats {
	size_t flows, unowned;
	int64_t evicted, refused;
};
void edge_flows_stats_get(struct edge_flows *fl, struct edge_flows_stats *out);

/* The Flow-Timer (RFC 5626 5.4) this edge promises for flows of transport
 * tp: [outbound] flow_timer_udp or flow_timer_tcp, seconds. */
unsigned edge_flow_timer(const struct edge *e, enum net_transport tp);
/* The edge's own table (made by edge_alloc from [outbound]; the edge records
 * keepalives and sends' failures in it and runs its wheel on worker 0). */
struct edge_flows *edge_flows(struct edge *e);

struct edge_stats {
	int64_t requests, responses, parse_errors, retransmissions, stun, crlf_pings;
};

/* ---- Pinhole-Seen (seen.c, docs/nat-evidence.md) ----
 * A response header of ours: base64 (RFC 4648) of "key=value" lines joined
 * by "\n" saying what a request looked like when it arrived: src (ip:port it
 * came from), via (its top Via value), contact (its first Contact value),
 * and with_sdp also sdp-c (the session's c= address, else the first audio
 * section's) and sdp-m (the first audio m= port). A value longer than
 * EDGE_SEEN_VALUE_MAX is left out. Only on answers that accept a request
 * (a REGISTER's 200, responses forwarded to an INVITE's caller), never on a
 * refusal to an unauthenticated request: no larger answers to strangers. */
#define EDGE_SEEN_HDR "Pinhole-Seen"
#define EDGE_SEEN_VALUE_MAX 256
/* Appends the header line (with its CRLF) for m received from src. 0 or ENOMEM. */
int edge_seen_append(struct buf *out, const struct sip_msg *m, const struct net_addr *src,
		     bool with_sdp);
/* Whether a STUN Binding from src (address and port) on our SIP port was
 * answered within the last within_ms (of now_ms, loop time): the phone may
 * have learnt its public address from it (a NAT verdict's evidence). */
bool edge_stun_seen(struct edge *e, const struct net_addr *src, uint64_t now_ms,
		    uint64_t within_ms);
/* Removes m's own Pinhole-Seen lines in ed (a hop beyond us wrote them:
 * what the phone wants is what reached us). */
void edge_seen_strip(struct sip_editor *ed, const struct sip_msg *m);

#endif
