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
	struct net_tls_sock *tls; /* tls: flows, once TCP is connected; owned */
	bool tcp_up;		  /* tls: TCP connected, the handshake under way */
	struct uaws *ws;	  /* ws:, wss: flows: the WebSocket (ws.c); owned */
	char ws_host[40];	  /* ws:, wss: our Via and Contact host (RFC 7118 5) */
	bool ws_upgrading;	  /* ws:, wss: the upgrade sent, its answer awaited */

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

struct ua_media;
typedef void(uam_stun_h)(struct ua_media *m, void *arg);
struct uam_turn; /* --turn (turn.c) */

/* --stun: Binding requests from the RTP socket (0) and the RTCP one (1) to
 * the server, and from the RTP socket to the server's OTHER-ADDRESS (2,
 * RFC 5780) when it gives one: a mapping that differs there is symmetric. */
struct uam_stun {
	bool active, done;
	struct net_addr server, other;
	bool has_other;
	uint8_t tid[3][12];
	bool got[3];
	struct net_addr mapped[3];
	unsigned tries;
	struct timer t;
	uam_stun_h *h;
	void *arg;
};

/* One call's media (media.c): an RTP socket and an RTCP one (unused once
 * rtcp-mux is agreed), both sending from where they receive (RFC 4961). */
struct ua_media {
	struct loop *loop;
	int fd_rtp, fd_rtcp; /* -1 when closed */
	struct net_addr local; /* the RTP socket's address */
	char local_ip[NET_ADDR_STRLEN];
	uint16_t rtp_port, rtcp_port;
	bool running, mux;
	struct net_addr to_rtp, to_rtcp; /* from the far end's SDP */
	char remote_announced[64];
	bool remote_private;
	uint8_t pt;
	uint32_t ssrc;
	uint16_t seq, seq0;
	uint32_t ts;
	struct rtp_tone tone;
	const int16_t *wav; /* --wav samples (owned by the conf's owner), looped */
	size_t wav_n, wav_pos;
	struct timer t_send, t_rtcp;
	uint64_t start_us, frames;
	uint64_t sent_packets, sent_bytes;
	/* hold (RFC 3264 8.4): the clock and timestamps run on while we do not
	 * send, the sequence numbers do not (RFC 3550 5.1). send_rtp: the agreed
	 * direction lets us send; far_sends: ... and lets the far end send;
	 * sent_unanswered: sent while the far end was not to send (an echo
	 * returns none of them); held_ms: how long it was not to send. */
	bool send_rtp, far_sends;
	uint64_t sent_unanswered;
	uint64_t held_ms, held_since_us;
	/* --record: decoded samples as they arrive */
	FILE *rec;
	uint64_t rec_samples;
	/* --stun: what the SDP announces (the local address without it) */
	struct uam_stun stun;
	bool stun_ok;	  /* the RTP socket's mapping is what we announce */
	bool stun_varies; /* ... and the other STUN address saw another one */
	char sdp_ip[NET_ADDR_STRLEN];
	uint16_t sdp_rtp_port, sdp_rtcp_port;
	/* --turn: the sockets talk only to the TURN server; owned; NULL without */
	struct uam_turn *turn;
	/* what came in */
	struct rtp_recv rs;
	uint64_t recv_packets, recv_bytes, strays, bad;
	bool have_src;
	struct net_addr src; /* where the far end's RTP came from */
	/* its RTCP */
	bool far_rtcp, far_block;
	struct rtcp_block block; /* its last block about our SSRC */
	uint32_t their_lsr;	 /* mid-32 NTP of its last SR, 0 = none */
	uint64_t their_sr_us;	 /* when it arrived (monotonic) */
	uint64_t our_ntp_last;
	bool have_rtt;
	uint32_t rtt_ms;
};

int uam_open(struct ua_media *m, struct loop *l, const struct net_addr *local_ip);
/* Starts sending to the far end's SDP address with codec pt: conf's tone or
 * WAV samples; opens conf's record file (EIO, errno). */
int uam_start(struct ua_media *m, const struct ua_sdp_remote *r, const struct ua_conf *conf);
/* A new agreed SDP of the far end (re-INVITE either way): its address (unless
 * c=0.0.0.0) and whether each side sends; `ours` is the direction we wrote. */
void uam_update(struct ua_media *m, const struct ua_sdp_remote *r, enum sdp_dir ours);
/* Asks server for the sockets' mapped addresses; h is called once, when
 * they are known or after 3.5 s without an answer (then the SDP keeps the
 * local address). Anything but an answer to our own requests is ignored. */
void uam_stun_start(struct ua_media *m, const struct net_addr *server, uam_stun_h *h, void *arg);
/* A sentence about the STUN mappings for the call's events. */
void uam_stun_describe(const struct ua_media *m, char *out, size_t cap);
/* Stops sending: a last RTCP report with BYE (RFC 3550 6.6). */
void uam_stop(struct ua_media *m);
void uam_close(struct ua_media *m);
void uam_verdict(const struct ua_media *m, bool echo, struct rtp_verdict_in *in);

/* turn.c: --turn. Allocates for both media sockets; h is called once (from
 * the loop, never inside these calls) when both are allocated (the SDP
 * fields then name the relayed addresses) or one failed (uam_turn_ok says
 * which). 0 or ENOMEM/EINVAL. */
int uam_turn_start(struct ua_media *m, const struct ua_conf *conf, uam_stun_h *h, void *arg);
bool uam_turn_ok(const struct ua_media *m);
bool uam_turn_auth_refused(const struct ua_media *m);
/* A sentence for the call's events: the allocation, or why there is none. */
void uam_turn_describe(const struct ua_media *m, char *out, size_t cap);
/* The far end's SDP addresses are known or changed: channels to them. */
void uam_turn_peers(struct ua_media *m);
/* Sends p to `to` through fd's allocation. */
int uam_turn_send(struct ua_media *m, int fd, const void *p, size_t len, const struct net_addr *to);
/* A datagram on fd from `from`: 0 and peer/data when it carried media from a
 * peer; EPERM when it is not from the TURN server; else not media. */
int uam_turn_input(struct ua_media *m, int fd, const uint8_t *p, size_t len,
		   const struct net_addr *from, struct net_addr *peer, const uint8_t **data,
		   size_t *dlen);
/* The RTP allocation's relayed address, or NULL. */
const struct net_addr *uam_turn_relayed(const struct ua_media *m);
/* Releases the allocations (Refresh LIFETIME 0, sent once) and frees. */
void uam_turn_close(struct ua_media *m);

enum uac_state {
	UAC_IDLE,
	UAC_CALLING,	/* INVITE sent, nothing back yet */
	UAC_PROCEEDING, /* a provisional came */
	UAC_CANCELLING, /* CANCEL sent, waiting for the INVITE's final answer */
	UAC_ANSWERED,	/* UAS: 200 sent, waiting for the ACK */
	UAC_CONFIRMED,	/* the dialog stands; media flows */
	UAC_BYE_SENT,
	UAC_DONE,
};

#define UA_ROUTES_MAX 8

/* The one call of a ua (call.c): ours (uac) or one we answered. */
struct ua_call {
	struct ua *ua;
	struct ua_flow *f;
	enum uac_state st;
	bool uas;
	char call_id[64], local_tag[24], remote_tag[128];
	char local_uri[300], remote_uri[300]; /* From and To values without tags */
	char ruri[300];			      /* the INVITE's Request-URI */
	char target[300];		      /* the far end's Contact: in-dialog R-URI */
	char routes[UA_ROUTES_MAX][300];      /* route set, in the order to send */
	unsigned n_routes;
	uint32_t cseq, inv_cseq;
	char inv_branch[48];
	struct buf inv;	 /* the INVITE in flight (retransmissions, CANCEL) */
	struct buf ack;	 /* the ACK of the 200 (sent again per 200 retransmission) */
	struct buf req;	 /* the BYE or CANCEL in flight; the UAS's 200 until the ACK */
	uint64_t rto_ms; /* of req or inv */
	struct timer t_retx, t_tsx, t_answer, t_dur, t_req;
	unsigned challenges;
	bool creds_fresh;
	struct ua_auth auth;
	uint16_t status;
	int exit_code;
	bool counted; /* a final outcome was reported */
	struct ua_media media;
	struct ua_sdp_remote remote;

	/* re-INVITEs (hold and resume, RFC 3264 8.4, RFC 3261 14) */
	uint64_t sess_id, sdp_version;
	enum sdp_dir our_dir;	/* what our last SDP said */
	enum sdp_dir hold_wish; /* SDP_DIR_SENDONLY while we hold, else NONE */
	uint32_t remote_cseq;	/* the far end's last in-dialog CSeq */
	struct timer t_hold;	/* --hold-after, then --resume-after */
	bool holds_done, resume_done;
	/* the one we send */
	bool reinv_pending;
	enum sdp_dir reinv_dir;
	uint32_t reinv_cseq;
	char reinv_branch[48];
	struct buf reinv, reack;
	uint64_t reinv_rto;
	struct timer t_reinv_retx, t_reinv_tsx, t_reinv_retry;
	/* the one we answer: our 200 until its ACK */
	bool reok_pending, reok_offer; /* reok_offer: offerless re-INVITE, answer in ACK */
	uint32_t reok_cseq;
	struct buf reok;
	uint64_t reok_rto;
	struct timer t_reok_retx, t_reok_tsx;
};

/* What alg.c has told (once per flow and answer, once per INVITE). */
struct ua_alg {
	bool reg_told[UA_MAX_FLOWS];
	unsigned reg_mask[UA_MAX_FLOWS];
	bool inv_told;
	uint32_t inv_cseq;
	char inv_call_id[64];
};

/* A closed stream flow's socket, kept until its queue is sent (flow.c). */
struct ua_linger {
	struct ua *ua;
	int fd;
	struct net_tls_sock *tls;
	struct buf tx;
	struct timer t;
	struct ua_linger *next, **pprev;
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
	struct net_tls_client *tls; /* when a proxy is tls:; owned */
	uint64_t t0;
	bool started, shutting_down, done, any_registered;
	int exit_code; /* what DONE reports */
	struct timer t_unreg;
	struct ua_stats stats;
	struct ua_call call;
	bool call_started, shutdown_pending;
	int call_exit; /* the worst outcome of answered calls (auto-answer) */
	struct ua_alg alg;
	struct ua_linger *lingering; /* closed flows still sending their queue */
	bool freeing;		     /* ua_free: sockets close at once */
};

/* Stream flows (TCP, TLS) share framing, queues and CRLF keepalives. */
static inline bool ua_stream(const struct ua_proxy *px)
{
	return px->tp != NET_UDP;
}
/* WebSocket flows (ws.c) */
static inline bool ua_ws(const struct ua_proxy *px)
{
	return px->tp == NET_WS || px->tp == NET_WSS;
}
/* Flows with a TLS handshake first (tls:, wss:) */
static inline bool ua_tls(const struct ua_proxy *px)
{
	return px->tp == NET_TLS || px->tp == NET_WSS;
}
/* How a URI naming a flow's hop is written (RFC 5630): sips: over TLS
 * (never transport=tls), ";transport=tcp" over TCP, ";transport=ws" over
 * ws: and wss: (RFC 7118 5.2 has no "wss"; a sip: URI as browsers write it). */
static inline const char *ua_scheme(const struct ua_proxy *px)
{
	return px->tp == NET_TLS ? "sips" : "sip";
}
static inline const char *ua_tp_param(const struct ua_proxy *px)
{
	return px->tp == NET_TCP ? ";transport=tcp" : ua_ws(px) ? ";transport=ws" : "";
}

/* ua.c */
void ua_emit(struct ua_flow *f, struct ua_event *ev);
/* A flow failed (cause in words): close it, and retry it by 4.5 or end. */
void ua_flow_failed(struct ua_flow *f, const char *cause, int code);
/* A flow's registration attempt succeeded (reg.c tells). */
void ua_flow_registered(struct ua_flow *f);
/* A flow's unregistration finished (ok or not). */
void ua_flow_unregistered(struct ua_flow *f, bool ok, const char *detail);
/* A flow is up (UDP open, TCP connected): register it, or call (no_register). */
void ua_flow_ready(struct ua_flow *f);
/* A whole SIP message arrived on f. */
void ua_on_sip(struct ua_flow *f, const char *data, size_t len, bool stream);
void ua_bad_message(struct ua_flow *f, const char *what);

/* flow.c */
int uaf_open(struct ua_flow *f);
void uaf_close(struct ua_flow *f);
void uaf_linger_free_all(struct ua *ua); /* ua_free: closes the lingering sockets */
int uaf_send(struct ua_flow *f, const void *p, size_t len);
void uaf_ka_start(struct ua_flow *f);
void uaf_ka_stop(struct ua_flow *f);
/* for ws.c: bytes onto the stream as they are (no framing, before the flow
 * is up too); the flow is up (upgrade done); our ping was answered */
int uaf_send_raw(struct ua_flow *f, const void *p, size_t len);
void uaf_up(struct ua_flow *f);
void uaf_ka_answered(struct ua_flow *f);

/* ws.c: the client side of SIP over WebSocket (RFC 7118) on a stream flow */
/* The byte stream is up (TCP, or TLS's handshake done): send the upgrade. */
int uaws_start(struct ua_flow *f);
/* Takes what it can from f->rx: the server's 101, then frames; false when
 * the flow was closed. */
bool uaws_input(struct ua_flow *f);
/* One SIP message as one masked text frame. */
int uaws_send(struct ua_flow *f, const void *p, size_t len);
/* The keepalive: a WebSocket ping; its pong calls uaf_ka_answered. */
int uaws_ping(struct ua_flow *f);
/* The connection is closing: a close frame if it was open, state reset. */
void uaws_close(struct ua_flow *f);
void uaws_free(struct ua_flow *f);

/* call.c */
void ua_call_start(struct ua_flow *f);
bool ua_call_active(const struct ua *ua);
/* Ends the call: CANCEL or BYE; ua_shutdown follows when it is over. */
void ua_call_hangup(struct ua *ua);
void ua_call_on_response(struct ua_flow *f, const struct sip_msg *m);
/* true when the request belonged to the call layer (answered there). */
bool ua_call_on_request(struct ua_flow *f, const struct sip_msg *m);
void ua_call_free(struct ua *ua);
/* call.c, for reinvite.c: the pieces of a request or response in the dialog */
void uac_emit(struct ua_call *c, uint16_t status, const char *detail);
/* Request line, Via, Max-Forwards, Route (the route set when dialog), From,
 * To, Call-ID, CSeq. */
void uac_req_head(struct ua_call *c, struct buf *b, const char *method, const char *ruri,
		  const char *branch, uint32_t cseq, bool dialog);
void uac_contact(struct ua_call *c, struct buf *b);
/* User-Agent, then the SDP (or none) with its Content-Type and -Length. */
void uac_body(struct buf *b, const struct buf *sdp);
void uac_new_branch(char *out, size_t cap);
/* Our SDP's fields with direction dir (the o= version moves on when it changes). */
void uac_local_sdp(struct ua_call *c, struct ua_sdp_local *l, enum sdp_dir dir);
/* A response to m on f (extra: header lines; sdp: a body), kept in out. */
int uac_respond(struct ua_flow *f, const struct sip_msg *m, uint16_t status, const char *tag,
		const char *extra, const struct buf *sdp, struct buf *out);
void uac_respond_once(struct ua_flow *f, const struct sip_msg *m, uint16_t status, const char *tag);
/* Stops the media (its last RTCP) and sends BYE. */
void uac_send_bye(struct ua_call *c);

/* reinvite.c */
/* --hold-after and --resume-after come due (a timer callback, arg the call). */
void uac_hold_due(void *arg);
/* A response to our re-INVITE, a re-INVITE from the far end, its ACK. */
void uac_reinvite_response(struct ua_call *c, const struct sip_msg *m);
void uac_reinvite(struct ua_call *c, const struct sip_msg *m);
void uac_reinvite_ack(struct ua_call *c, const struct sip_msg *m);

/* alg.c: a response on f that may carry Pinhole-Seen (before it is handled) */
void ua_alg_on_response(struct ua_flow *f, const struct sip_msg *m);

/* reg.c */
void ua_contact_hostport(const struct ua_flow *f, char *out, size_t cap);
/* "Route: <sip:proxy;lr>\r\n" when the proxy is not the registrar, else nothing. */
void ua_outbound_route(const struct ua_flow *f, struct buf *b);
void ua_hex_rand(char *out, size_t bytes);
void ua_reg_start(struct ua_flow *f, uint32_t expires);
void ua_reg_on_response(struct ua_flow *f, const struct sip_msg *m);
void ua_reg_stop(struct ua_flow *f); /* cancels timers, forgets the transaction */
void ua_reg_init(struct ua_flow *f);
/* An ICMP error on a UDP flow (RFC 3261 18.4): fails the REGISTER in flight. */
void ua_reg_transport_error(struct ua_flow *f, int err);

#endif
