/* ua: internals shared by the ua's files (flows, registration, orchestration). */
#ifndef PINHOLE_UA_INT_H
#define PINHOLE_UA_INT_H

#include "ua/ua.h"

/* RFC 3261 17.1.2: T1, T2, and Timer F = 64 * T1 */
#define UA_T1_MS 500
#define UA_T2_MS 4000
#define UA_TIMER_F_MS (64 * UA_T1_MS)
/* RFC 5626 4.4.1: no pong within 10 s of a CRLF ping fails the flow. A STUN
 * keepalive gets the same 10 s (sent at 0, 0.5, 1.5, 3.5 and 7.5 s) rather
 * than RFC 8489's 39.5 s: the other flow carries calls meanwhile, so a
 * failed flow is better replaced soon. */
#define UA_KA_WAIT_MS 10000
#define UA_KA_RTO_MS 500

enum uaf_state {
	UAF_IDLE,	   /* no socket: before start, or waiting to retry */
	UAF_CONNECTING,	   /* TCP connect in progress */
	UAF_REGISTERING,   /* REGISTER in flight (first or after a failure) */
	UAF_REGISTERED,	   /* a binding stands (refreshes happen in this state) */
	UAF_UNREGISTERING, /* REGISTER expires=0 in flight */
	UAF_DONE,	   /* closed for good (shutdown, or a final failure at start) */
};

/* The last challenge, copied: later REGISTERs answer it at once with a
 * higher nc instead of drawing a 401 each time. */
struct ua_auth {
	bool have, proxy;
	int alg;
	bool qop_auth;
	uint32_t nc;
	char realm[128], nonce[256], opaque[256];
	bool has_opaque;
};

/* One flow: one socket to one outbound proxy, one reg-id. Owned by struct ua
 * (an array in it); ua is a back-pointer. */
struct ua_flow {
	struct ua *ua;
	unsigned idx; /* reg-id = idx + 1 */
	const struct ua_proxy *px;
	char proxy_s[NET_ADDR_STRLEN + 8];
	enum uaf_state st;
	int fd; /* -1 when closed */
	bool connected;
	struct net_addr local;
	char local_s[NET_ADDR_STRLEN];
	struct buf rx; /* TCP bytes not framed yet; at most UA_MAX_MSG */
	struct buf tx; /* TCP bytes the kernel did not take yet */

	/* registration (reg.c) */
	char call_id[48], from_tag[24], branch[48];
	uint32_t cseq;
	uint32_t expires_req; /* Expires of the REGISTER in flight */
	struct buf req;	      /* the REGISTER in flight, for UDP retransmissions */
	bool in_flight;
	uint64_t rto_ms;
	struct timer t_retx, t_tsx, t_refresh;
	unsigned challenges; /* 401/407s in this attempt */
	bool creds_fresh;    /* the request in flight answers a challenge of this attempt */
	bool min_expires_tried;
	struct ua_auth auth;
	bool registered; /* a binding stands at the registrar */
	bool outbound;	 /* the last 200 carried Require: outbound */
	bool told_no_outbound;
	uint32_t flow_timer;
	bool ever_registered;
	bool was_down; /* failed since it last registered: the next 200 is a recovery */
	int sock_err;  /* last socket error seen on this flow, for messages */

	/* keepalive (flow.c) */
	struct timer t_ka, t_ka_wait;
	bool ka_pending;
	uint8_t tid[12];
	uint64_t ka_sent_ms, ka_next_rto_ms;
	struct net_addr mapped;
	bool has_mapped;
	bool ka_answered; /* one answer since the last registration: "successful" (4.5) */

	/* recovery (RFC 5626 4.5) */
	unsigned failures; /* consecutive */
	struct timer t_retry;
	int final_code; /* the exit code this flow's last failure stands for */
};

struct ua {
	struct loop *loop;
	struct ua_conf c;
	ua_event_h *h;
	void *arg;
	char aor_user[128], domain[256];
	uint16_t domain_port;
	char ruri[300];
	char auth_user[128];
	struct ua_flow f[UA_MAX_FLOWS];
	unsigned n;
	uint64_t t0;
	bool started, shutting_down, done, any_registered;
	int exit_code; /* what DONE reports */
	struct timer t_unreg;
	struct ua_stats stats;
};

/* ua.c */
void ua_emit(struct ua_flow *f, struct ua_event *ev);
/* A flow failed (cause in words): close it, and retry it by 4.5 or end. */
void ua_flow_failed(struct ua_flow *f, const char *cause, int code);
/* A flow's registration attempt succeeded (reg.c tells). */
void ua_flow_registered(struct ua_flow *f);
/* A flow's unregistration finished (ok or not). */
void ua_flow_unregistered(struct ua_flow *f, bool ok, const char *detail);
/* A whole SIP message arrived on f. */
void ua_on_sip(struct ua_flow *f, const char *data, size_t len, bool stream);
void ua_bad_message(struct ua_flow *f, const char *what);

/* flow.c */
int uaf_open(struct ua_flow *f);
void uaf_close(struct ua_flow *f);
int uaf_send(struct ua_flow *f, const void *p, size_t len);
void uaf_ka_start(struct ua_flow *f);
void uaf_ka_stop(struct ua_flow *f);

/* reg.c */
void ua_reg_start(struct ua_flow *f, uint32_t expires);
void ua_reg_on_response(struct ua_flow *f, const struct sip_msg *m);
void ua_reg_stop(struct ua_flow *f); /* cancels timers, forgets the transaction */
void ua_reg_init(struct ua_flow *f);
/* An ICMP error on a UDP flow (RFC 3261 18.4): fails the REGISTER in flight. */
void ua_reg_transport_error(struct ua_flow *f, int err);

#endif
