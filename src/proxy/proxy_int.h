/* proxy internals: the request router and the response context share these. */
#ifndef PINHOLE_PROXY_INT_H
#define PINHOLE_PROXY_INT_H

#include <pthread.h>

#include "proxy.h"
#include "relayctl/relayctl.h"

#define PROXY_MAX_BRANCHES 8
/* Bindings a request looks at, grouped into at most max_branches branches. */
#define PROXY_MAX_TARGETS 32
/* Flows of one instance (RFC 5626: one per reg-id) a branch tries, each at
 * most once per request: what bounds a phone that registers many flows and
 * fails them all (a send each, no more). */
#define PROXY_MAX_FLOWS 4
#define PROXY_MAX_TRUSTED 64
#define PROXY_BRANCH_SIZE 40

enum media_policy { MEDIA_NAT_FACING, MEDIA_AUTO, MEDIA_ALWAYS, MEDIA_NEVER };

/* ---- decide.c: the relay decision ---- */

struct sdp;

#define PROXY_MAX_DIRECT 64

/* [relay] media, direct_networks, webrtc; RO after alloc. */
struct proxy_media_policy {
	enum media_policy mode;
	bool webrtc_pass;
	bool ice_candidate; /* [proxy] ice = candidate */
	struct net_cidr direct[PROXY_MAX_DIRECT];
	size_t n_direct;
	const struct net_cidr *trusted; /* [proxy] trusted, the proxy's own list */
	size_t n_trusted;
};

/* One party of a call as the decision sees it. */
struct proxy_media_party {
	struct net_addr src; /* where its packets come from */
	bool direct;	     /* src in direct_networks or [proxy] trusted (and, through a
				trusted proxy, the party behind it in direct_networks) */
	bool claims_nat;     /* what its messages say (auto only): Via or Contact unlike
				src, private addresses, the binding's NAT flag */
	bool local;	     /* a service on this host (the echo): direct */
};

/* The outcome of the decision and why: the counters' label. */
enum proxy_media_why {
	PROXY_WHY_NAT_FACING, /* relay: a party is not known direct (nat-facing) */
	PROXY_WHY_CLAIMS_NAT, /* relay: a message says NAT (auto) */
	PROXY_WHY_FAMILY,     /* relay: IPv4 and IPv6 parties */
	PROXY_WHY_ALWAYS,     /* relay: media = always */
	PROXY_WHY_ICE,	      /* relay as an ICE candidate: nat-facing or auto would relay,
				 the offer has ICE and [proxy] ice = candidate */
	PROXY_WHY_DIRECT,     /* not: every party direct (or, auto, nothing says NAT) */
	PROXY_WHY_WEBRTC,     /* not: ICE with a=fingerprint, webrtc = pass */
	PROXY_WHY_NEVER,      /* not: media = never */
	PROXY_WHY_N
};

/* Reads the policy (trusted: the proxy's list, borrowed): 0 or EINVAL (logged). */
int proxy_media_policy_init(struct proxy_media_policy *pol, const struct conf *c,
			    const struct net_cidr *trusted, size_t n_trusted);
/* Whether packets from src reach us directly: direct_networks or trusted. */
bool proxy_media_direct(const struct proxy_media_policy *pol, const struct net_addr *src);
/* The caller of request m, received over f. */
void proxy_media_caller(const struct proxy_media_policy *pol, const struct sip_msg *m,
			const struct flow *f, struct proxy_media_party *out);
/* Whether to relay a call whose initial offer is offer (NULL: none yet),
 * between caller and the n callees it may reach. Pure: no counters. */
enum proxy_media_why proxy_media_decide(const struct proxy_media_policy *pol,
					const struct sdp *offer,
					const struct proxy_media_party *caller,
					const struct proxy_media_party *callees, size_t n);
bool proxy_why_relays(enum proxy_media_why w);
const char *proxy_why_name(enum proxy_media_why w);
void proxy_media_count(enum proxy_media_why w);

struct proxy {
	struct edge *edge;
	struct registrar *reg;
	bool record_route;
	unsigned max_branches;
	struct relayctl *rc; /* NULL: no media relay; owned by the proxy */
	struct proxy_media_policy mpol;
	unsigned max_media; /* [relay] max_media: m= lines per relayed call */
	/* every live proxy_call, so that shutdown frees what is still pending */
	pthread_mutex_t calls_lock;
	struct proxy_call *calls;
	/* [proxy] trusted: sources that may reach beyond our domain; RO after alloc */
	struct net_cidr trusted[PROXY_MAX_TRUSTED];
	size_t n_trusted;
	struct log_burst relay_log;
	/* upstream.c: [proxy] registrar, the edge-only process; RO after alloc */
	bool up_on;
	struct flow up_flow; /* to the registrar, from the listener that faces it */
	unsigned flow_timer_udp, flow_timer_tcp; /* [outbound] */
	proxy_service_h *service_h; /* the echo; NULL = none; RO after start */
	void *service_arg;
	/* [outbound] failover_timeout: ms a UDP branch may go unanswered before
	 * the next flow of its instance is tried; RO after alloc */
	uint32_t failover_ms;
};

/* ---- policy.c ---- */

/* Reads [proxy] trusted: 0, or EINVAL (logged) on a bad entry. */
int proxy_policy_init(struct proxy *p, const struct conf *c);
bool proxy_source_trusted(const struct proxy *p, const struct net_addr *src);
struct proxy_target;
/* RFC 3261 26.2.2 / RFC 5630: a request for a sips: Request-URI goes over
 * TLS only: the targets whose flow is not TLS are dropped (counted); false
 * when none is left (the caller answers 480). Other requests: true, as is. */
bool proxy_sips_filter(const struct sip_msg *m, struct proxy_target *t, size_t *n);
/* RFC 5923: a request over a TCP connection a [proxy] trusted peer opened,
 * whose top Via carries ;alias and names the connection's source IP, makes
 * that connection the way to its sent-by (net_conn_alias). RFC 5923 asks for
 * TLS; until TLS exists only trusted peers are believed (docs/security.md).
 * Others are ignored and counted. */
void proxy_note_alias(struct proxy *p, const struct edge_rx *rx);
/* Whether rx may make us send to a target beyond our domain (a foreign
 * Request-URI, Route or maddr): an authenticated user, a trusted peer, or
 * the no-users LAN default; counts and logs (once per burst) a refusal. */
bool proxy_may_relay(struct proxy *p, const struct edge_rx *rx, bool authenticated);
/* A fresh branch for forwarding rx: unique part plus loop-detection hash. */
void proxy_new_branch(const struct edge_rx *rx, char out[PROXY_BRANCH_SIZE]);
/* RFC 3261 16.3 step 4: whether rx carries a Via of ours whose hash says it
 * came back unchanged (a loop; a spiral is not one). Counts it. */
bool proxy_looped(struct proxy *p, const struct edge_rx *rx);
/* Counts a loop found otherwise (a target that is one of our addresses). */
void proxy_count_loop(void);

/* Frees the calls still pending at shutdown (after the workers stopped). */
void proxy_calls_free_all(struct proxy *p);

/* Where one copy of a request goes. Targets of one group are one branch:
 * the flows of one instance (RFC 5626 5.3 / 7), in the order to try them;
 * every other target is a group of its own. */
struct proxy_target {
	struct flow flow;
	bool behind_nat; /* the binding's NAT flag (registered targets) */
	/* flow was a next hop by address (a URI or Route naming a TCP host),
	 * bound now to the connection it leaves on (RFC 5923): Record-Route
	 * names the address, and our Via offers ;alias to a trusted peer */
	bool next_hop;
	unsigned group;	 /* targets of a group are adjacent, groups count from 0 */
	uint64_t binding_id; /* the registered binding, 0 for other targets */
	struct store_ka ka;  /* its keepalive state at the lookup */
	char ruri[STORE_CONTACT_MAX]; /* new Request-URI, "" = unchanged */
	char path[STORE_PATH_MAX];    /* RFC 3327: the binding's Path, pushed as Route */
};

/* Builds the forwarded request for one target into out: our Via on top (with
 * branch), received/rport on the previous one, Max-Forwards decremented, the
 * popped Route values removed, Record-Route when asked. */
struct route_plan {
	/* edge-only: the registrar's request over a phone's flow (its token).
	 * RFC 5626 5.3: the flow failing under it (the connection closed, a
	 * send refused) is answered 430, so that the registrar tries another */
	bool flow_430;
	/* ... an INVITE over a UDP outbound flow: our 100 hides the phone's
	 * silence from the registrar, so silence for failover_timeout is 430 too */
	bool silence_430;
	/* Route values of ours at the top: how many to drop from each line */
	size_t pop_lines[16];
	size_t n_pop_lines;
	size_t partial_line; /* SIZE_MAX when none */
	struct slice partial_rest;
	bool record_route;
	/* Our Record-Route entries say the dialog's media is relayed (";mr"),
	 * so that a re-INVITE finds its relay again after the session was
	 * swept (a silent hold). relayed_mark: put it in the Record-Route;
	 * dialog_relayed: the Route of this request carried it. */
	bool relayed_mark;
	bool dialog_relayed;
	/* a rewritten SDP to put in place of the body */
	bool body_set;
	struct slice body;
	/* RFC 3261 22.3: our realm's Proxy-Authorization is consumed here, not
	 * handed to the callee (who could try its password offline); "" = none */
	char consumed_realm[128];
	/* edge-only REGISTER (upstream.c): our Path entry, put above the others
	 * ("" = none), and the Flow-Timer its 2xx gets (0 = none) */
	char path_entry[FLOW_TOKEN_LEN + NET_ADDR_STRLEN + 48];
	unsigned flow_timer;
	bool upstream; /* sent to the registrar for a phone: refusals go back once */
	/* digest-authenticated here, or from a [proxy] trusted peer: refusals
	 * forwarded back may carry Pinhole-Seen */
	bool authenticated;
};

int proxy_build_request(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
			const struct proxy_target *t, const char *branch, struct buf *out);

/* Media state of one INVITE/UPDATE transaction, kept by its proxy_call. */
struct proxy_media {
	bool engaged;	  /* the relay has (or will have) this call */
	bool offered;	  /* the request carried the offer */
	bool late;	  /* no SDP in the request: the offer comes in the response */
	bool initial;	  /* dialog-creating: a failure ends the relay session */
	/* a BYE whose tags are the relay session's two parties: its final
	 * answer (or its timeout) ends the session */
	bool bye_ends;
	char call_id[256];
	char from_tag[128];
	/* the BYE's From and To AORs: their bindings get the call's media
	 * evidence when it ends ("" = none) */
	char aor_from[STORE_AOR_MAX], aor_to[STORE_AOR_MAX];
};

/* Decides whether to relay a request's media and, if so, rewrites its offer
 * into body. Returns 0, or a SIP status to answer with (488, 503). */
uint16_t proxy_media_request(struct proxy *p, const struct edge_rx *rx,
			     const struct proxy_target *t, size_t n, bool dialog_relayed,
			     struct proxy_media *pm, struct buf *body);
/* Rewrites the SDP of a response (answer, or late offer) into body; returns
 * 0 when body holds a new SDP, ENOENT when nothing is to change, or an error. */
int proxy_media_response(struct proxy *p, const struct proxy_media *pm, const struct edge_rx *rx,
			 struct buf *body);
/* An ACK with the answer to a late offer: rewrites it into body (ENOENT: no change). */
int proxy_media_ack(struct proxy *p, const struct edge_rx *rx, struct buf *body);
/* Whether the request's From and To tags are the two parties of the relay
 * session of its Call-ID (in either order): it belongs to the relayed dialog. */
bool proxy_media_dialog_matches(struct proxy *p, const struct sip_msg *m);
/* A relayed call is ending by its BYE: each party's media evidence (the
 * relay's latch against its SDP) goes to the bindings of pm's AORs that
 * signalled from that party's address (registrar_note_media). */
void proxy_media_note(struct proxy *p, const struct proxy_media *pm);
/* The call ended (BYE, CANCEL, a failed initial INVITE): frees its relay session. */
void proxy_media_end(struct proxy *p, struct slice call_id);

/* ---- upstream.c: the edge-only process ([proxy] registrar) ---- */

/* Reads [proxy] registrar and [outbound]: 0, or an errno (logged). */
int proxy_upstream_init(struct proxy *p, const struct conf *c);
/* Whether rx is to go to the registrar: an edge-only process, and rx not
 * from the registrar itself (what it sends is routed by our tokens). */
bool proxy_upstream_applies(const struct proxy *p, const struct edge_rx *rx);
/* Fills t (the registrar) and plan (a REGISTER's Path entry and Flow-Timer)
 * for a request not routed by a token: 0, or an error with the status and
 * reason to refuse it with (a foreign domain's REGISTER, relaying). */
int proxy_upstream_route(struct proxy *p, const struct edge_rx *rx, struct slice next_route,
			 bool authenticated, struct route_plan *plan, struct proxy_target *t,
			 uint16_t *status, const char **reason);
/* Adds (or lowers) Flow-Timer in a 2xx to an outbound REGISTER being
 * forwarded to the phone; flow_timer 0 = leave the response alone. */
void proxy_flow_timer_edit(struct sip_editor *ed, const struct sip_msg *m, unsigned flow_timer);
/* The 2xx resp to the REGISTER req that came over the phone's flow f is on
 * its way to the phone (flow_timer: ours, for an outbound REGISTER; 0 =
 * none). One that keeps the binding of req's instance and reg-id (Require:
 * outbound, expires > 0) binds f in the edge's flow table for the To's AOR,
 * watched for the Flow-Timer the phone was told; one without it (expires 0,
 * the binding gone, outbound refused) unbinds it. Other statuses: nothing. */
void proxy_upstream_registered(struct proxy *p, const struct sip_msg *req, const struct flow *f,
			       const struct sip_msg *resp, unsigned flow_timer);

/* Forwards statefully to the targets (owning a proxy_call) or answers: one
 * branch per group, over its first target; the group's others are the
 * flows it fails over to (fwd.c). aor: the targets' AOR when they are
 * registered bindings (failed flows are marked there), else NULL. */
void proxy_fork(struct proxy *p, const struct edge_rx *rx, const struct route_plan *plan,
		struct proxy_target *targets, size_t n, const struct proxy_media *pm,
		const char *aor);
/* Registers the failover counters and reads [outbound] (fwd.c). */
void proxy_fwd_init(struct proxy *p, const struct conf *c);
extern struct metric proxy_m_stateless, proxy_m_unproven_responses, proxy_m_forwarded;

/* Forwards a response that matched no transaction along its Via, when it
 * answers something we sent (a client transaction's 2xx in RFC 6026
 * Accepted, or a signed stateless branch); drops and counts the rest. */
void proxy_response_stateless(struct proxy *p, const struct edge_rx *rx);

#endif
