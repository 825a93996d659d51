/* relay: the parties' ICE connectivity checks across the relay when it is one of their candidates
 * ([proxy] ice = candidate, docs/ice.md).
 *
 * Between two ICE parties the relay is not an ICE agent (the MediaProxy 2
 * idea): it answers no check itself. Each party's SDP, which the relay
 * rewrites anyway, gives it that party's ufrag and password per m= line;
 * a STUN Binding request that arrives at party P's relay socket is passed on
 * to the other party Q (out of Q's socket of the same component) only when it
 * is a check P made for Q: USERNAME "Q-ufrag:P-ufrag" and MESSAGE-INTEGRITY
 * under Q's password (RFC 8445 7.2.2). Q's answer comes back at Q's socket
 * and goes to P only when it answers a request the relay passed to Q (its
 * transaction ID) and carries MESSAGE-INTEGRITY under Q's password (RFC 8445
 * 7.2.5, 7.3.1.1); its XOR-MAPPED-ADDRESS is made to say where the relay saw
 * P, and signed again with Q's password (remap()). So both agents see their
 * own checks succeed over the relay path, and the relay needs no ICE state
 * machine.
 *
 * For a party without ICE the relay stands in as an ICE-lite agent (RFC 8445
 * 2.5) with a ufrag and password of its own: the ICE party's SDP names the
 * relay as that lite agent's one host candidate, and the relay answers the
 * ICE party's checks with a Binding success (XOR-MAPPED-ADDRESS, integrity
 * under its own password, FINGERPRINT), smaller than the request. Lite
 * agents send no checks, so there is nothing else to it.
 *
 * Hostile network: nothing a stranger sends is passed on (it cannot sign with
 * a password it has not seen); what is passed on goes only where the relay
 * already sends that party's media (its latched source, the source of its
 * last authenticated check, or its SDP address), one datagram for one, and at
 * most RELAY_ICE_RATE checks a second per party and stream. An authenticated
 * check from an IP that may latch (relay.h) makes its source where the relay
 * sends to that party until RTP latches: the relay latches on checks too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_int.h"
#include "stun/stun.h"

/* RFC 8445 14.2: one check every Ta >= 50 ms per agent when pacing, plus
 * retransmissions and consent (RFC 7675): far below this per stream. */
#define RELAY_ICE_RATE 100
#define RELAY_ICE_TIDS 16
#define RELAY_ICE_MAX 256 /* RFC 8839 5.4: ufrag and pwd at most 256 characters */

/* One party's ICE credentials for one m= line, and the transactions the relay
 * passed to it. Owned by its struct relay_media; under the session lock. */
struct relay_ice {
	bool agent; /* the relay's own credentials, standing in for a party without ICE */
	bool comp2; /* the party lists component 2 candidates */
	char ufrag[RELAY_ICE_MAX];
	size_t ufrag_len;
	char pwd[RELAY_ICE_MAX];
	size_t pwd_len;
	uint8_t tid[RELAY_ICE_TIDS][STUN_TID_LEN]; /* requests passed to this party */
	unsigned tid_next;
	uint64_t win_ms; /* the current one-second window of its checks */
	unsigned win_n;
};

enum ice_verdict {
	ICE_FORWARDED = 0,
	ICE_UNAUTH,    /* not a check of this call's parties: username or integrity */
	ICE_NO_CREDS,  /* the other party's credentials are not known (yet) */
	ICE_UNMATCHED, /* a response to no request the relay passed on */
	ICE_OTHER,     /* not a Binding request or response, or malformed */
	ICE_SOURCE,    /* from an IP that may not latch (strict) */
	ICE_RATE,      /* over RELAY_ICE_RATE a second */
	ICE_NO_PEER,   /* nowhere to send it yet */
	ICE_ANSWERED,  /* answered by the relay as ICE-lite agent for a party without ICE */
	ICE_N
};

#define ICE_METRIC(v)                                                                              \
	{                                                                                          \
		.name = "relay_ice_checks_total",                                                  \
		.help = "STUN packets at relay ports of ICE calls ([proxy] ice = candidate), by "  \
			"what the relay did",                                                      \
		.labels = "verdict=\"" v "\""                                                      \
	}
static struct metric m_checks[ICE_N] = {
    ICE_METRIC("forwarded"), ICE_METRIC("unauthenticated"), ICE_METRIC("no-credentials"),
    ICE_METRIC("unmatched"), ICE_METRIC("other"),	    ICE_METRIC("source"),
    ICE_METRIC("rate"),	     ICE_METRIC("no-peer"),	    ICE_METRIC("answered"),
};
#define SESS_METRIC(v)                                                                             \
	{                                                                                          \
		.name = "relay_ice_sessions_total",                                                \
		.help =                                                                            \
		    "ended relay sessions whose SDP kept ICE with the relay as a candidate, by "   \
		    "whether media went through the relay",                                        \
		.labels = "media=\"" v "\""                                                        \
	}
static struct metric m_sessions[2] = {SESS_METRIC("relayed"), SESS_METRIC("not-relayed")};

void relay_ice_register_metrics(void)
{
	for (int i = 0; i < ICE_N; i++)
		metric_register(&m_checks[i]);
	metric_register(&m_sessions[0]);
	metric_register(&m_sessions[1]);
}

void relay_ice_free(struct relay_media *m)
{
	free(m->ice);
	m->ice = NULL;
}

/* RFC 8839 5.4: ufrag at least 24 bits, pwd at least 128 of randomness, in
 * ice-chars; 8 and 24 characters of 6 bits each */
static void make_creds(struct relay_ice *c)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t rnd[32];
	rand_bytes(rnd, sizeof rnd);
	c->ufrag_len = 8;
	c->pwd_len = 24;
	for (size_t i = 0; i < c->ufrag_len; i++)
		c->ufrag[i] = abc[rnd[i] & 63];
	for (size_t i = 0; i < c->pwd_len; i++)
		c->pwd[i] = abc[rnd[8 + i] & 63];
}

int relay_ice_set(struct relay_media *m, const struct sdp *sd, size_t i, bool on)
{
	struct slice ufrag, pwd;
	if (!on || !sd) {
		relay_ice_free(m);
		return 0;
	}
	bool party = sdp_media_ice_creds(sd, i, &ufrag, &pwd);
	/* out-of-range credentials: the party's ICE is stripped, as before */
	if (party && (ufrag.l > RELAY_ICE_MAX || pwd.l > RELAY_ICE_MAX)) {
		relay_ice_free(m);
		return 0;
	}
	if (!m->ice && !(m->ice = calloc(1, sizeof *m->ice)))
		return ENOMEM;
	struct relay_ice *c = m->ice;
	if (!party) {
		/* kept across re-offers: new ones would be an ICE restart */
		if (!c->agent) {
			memset(c, 0, sizeof *c);
			c->agent = true;
			make_creds(c);
		}
		return 0;
	}
	if (c->agent)
		memset(c, 0, sizeof *c);
	c->comp2 = sdp_media_ice_component(sd, i, 2);
	/* an ICE restart (new ufrag) forgets what was passed under the old one */
	if (c->ufrag_len != ufrag.l || memcmp(c->ufrag, ufrag.p, ufrag.l) != 0) {
		memset(c->tid, 0, sizeof c->tid);
		c->tid_next = 0;
	}
	memcpy(c->ufrag, ufrag.p, ufrag.l);
	c->ufrag_len = ufrag.l;
	memcpy(c->pwd, pwd.p, pwd.l);
	c->pwd_len = pwd.l;
	return 0;
}

void relay_ice_rw(const struct relay_media *from, const struct relay_media *to,
		  const struct sdp *sd, size_t i, bool mux, struct sdp_media_rw *mrw)
{
	/* nothing to say to a party known not to do ICE */
	if (!from || !from->ice || !to || (to->ice && to->ice->agent))
		return;
	if (!from->ice->agent) {
		/* the sender's own ICE, the relay its last candidate */
		mrw->ice_candidate = true;
		mrw->ice_rtcp_port = sdp_media_ice_component(sd, i, 2) ? to->rtcp.port : 0;
		return;
	}
	/* the relay as ICE-lite agent for a sender without ICE; component 2
	 * in an offer to a party not known yet (it may not mux: RFC 5761
	 * 5.1.3), else when it has one and RTCP is not muxed */
	mrw->lite_ufrag = (struct slice){from->ice->ufrag, from->ice->ufrag_len};
	mrw->lite_pwd = (struct slice){from->ice->pwd, from->ice->pwd_len};
	bool comp2 = !to->ice || (to->ice->comp2 && !mux);
	mrw->ice_rtcp_port = comp2 ? to->rtcp.port : 0;
}

static enum ice_verdict check_request(const struct stun_msg *msg, const struct relay_ice *own,
				      struct relay_ice *peer)
{
	/* RFC 8445 7.2.2: USERNAME = the receiver's ufrag ":" the sender's */
	const struct stun_attr *u = stun_msg_attr(msg, STUN_ATTR_USERNAME);
	if (!u || u->len != peer->ufrag_len + 1 + own->ufrag_len)
		return ICE_UNAUTH;
	if (memcmp(u->v, peer->ufrag, peer->ufrag_len) != 0 || u->v[peer->ufrag_len] != ':' ||
	    memcmp(u->v + peer->ufrag_len + 1, own->ufrag, own->ufrag_len) != 0)
		return ICE_UNAUTH;
	if (stun_msg_check_integrity(msg, peer->pwd, peer->pwd_len))
		return ICE_UNAUTH;
	if (!peer->agent) {
		memcpy(peer->tid[peer->tid_next], msg->tid, STUN_TID_LEN);
		peer->tid_next = (peer->tid_next + 1) % RELAY_ICE_TIDS;
	}
	return ICE_FORWARDED;
}

static enum ice_verdict check_response(const struct stun_msg *msg, const struct relay_ice *own)
{
	bool asked = false;
	for (unsigned i = 0; i < RELAY_ICE_TIDS && !asked; i++)
		asked = memcmp(own->tid[i], msg->tid, STUN_TID_LEN) == 0;
	if (!asked)
		return ICE_UNMATCHED;
	/* RFC 8445 7.3.1.1: the response is signed with the responder's password */
	if (stun_msg_check_integrity(msg, own->pwd, own->pwd_len))
		return ICE_UNAUTH;
	return ICE_FORWARDED;
}

/* RFC 8445 7.3.1 (lite): the success response, written over the request in
 * p (the response is the shorter). */
static int lite_answer(const struct stun_msg *req, const struct relay_ice *lite,
		       const struct net_addr *src, uint8_t *p, size_t *len)
{
	struct buf b;
	struct stun_enc e;
	buf_init(&b);
	stun_enc_begin_reply(&e, &b, req, STUN_CLASS_SUCCESS);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &src->u.sa);
	stun_enc_integrity(&e, lite->pwd, lite->pwd_len);
	stun_enc_fingerprint(&e);
	int err = stun_enc_end(&e);
	if (!err && b.len > *len)
		err = EMSGSIZE; /* never larger than what came */
	if (!err) {
		memcpy(p, b.data, b.len);
		*len = b.len;
	}
	buf_free(&b);
	return err;
}

/* A success response on its way to the checking party P: its
 * XOR-MAPPED-ADDRESS said where the responder saw the check come from (the
 * relay's other port), which P would take for an address of its own (a
 * peer-reflexive candidate at the relay). It is rewritten to where the relay
 * saw P (P's mapping towards the relay, RFC 8445 7.2.5.3.1) and signed again
 * with the responder's password, which the relay knows from its SDP; other
 * attributes are kept in order. Left as it was if the result would not fit
 * where the response was (another address family). */
static void remap(const struct stun_msg *msg, const struct relay_ice *responder,
		  const struct net_addr *to, uint8_t *p, size_t *len)
{
	if (stun_msg_attr(msg, STUN_ATTR_XOR_MAPPED_ADDRESS) == NULL)
		return;
	struct buf b;
	struct stun_enc e;
	buf_init(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_BINDING, STUN_CLASS_SUCCESS, msg->tid);
	for (size_t i = 0; i < msg->nattr; i++) {
		const struct stun_attr *a = &msg->attr[i];
		if (a->type == STUN_ATTR_MESSAGE_INTEGRITY ||
		    a->type == STUN_ATTR_MESSAGE_INTEGRITY_SHA256 || a->type == STUN_ATTR_FINGERPRINT)
			break; /* what follows is not covered by the integrity */
		if (a->type == STUN_ATTR_XOR_MAPPED_ADDRESS)
			stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &to->u.sa);
		else
			stun_enc_attr(&e, a->type, a->v, a->len);
	}
	stun_enc_integrity(&e, responder->pwd, responder->pwd_len);
	if (msg->fp >= 0)
		stun_enc_fingerprint(&e);
	if (stun_enc_end(&e) == 0 && b.len <= *len) {
		memcpy(p, b.data, b.len);
		*len = b.len;
	}
	buf_free(&b);
}

struct relay_sock *relay_ice_packet(struct relay *r, struct relay_sock *k, uint8_t *p, size_t *lenp,
				    const struct net_addr *src, uint64_t now,
				    const struct net_addr **dst)
{
	size_t len = *lenp;
	struct relay_media *m = k->m;
	struct relay_ice *own = m->ice;
	struct relay_media *om = m->s->leg[1 - m->leg].media[m->idx];
	struct relay_ice *peer = om ? om->ice : NULL;
	enum ice_verdict v;
	struct stun_msg msg;

	if (now - own->win_ms >= 1000) {
		own->win_ms = now;
		own->win_n = 0;
	}
	if (++own->win_n > RELAY_ICE_RATE) {
		v = ICE_RATE;
		goto out_drop;
	}
	if (stun_msg_decode(&msg, p, len) || msg.classic || msg.method != STUN_METHOD_BINDING ||
	    (msg.fp >= 0 && stun_msg_check_fingerprint(&msg))) {
		v = ICE_OTHER;
		goto out_drop;
	}
	if (!peer) {
		v = ICE_NO_CREDS;
		goto out_drop;
	}
	if (own->agent)
		v = ICE_OTHER; /* a party without ICE sends no checks */
	else if (msg.cls == STUN_CLASS_REQUEST)
		v = check_request(&msg, own, peer);
	else if (msg.cls == STUN_CLASS_SUCCESS || msg.cls == STUN_CLASS_ERROR)
		v = check_response(&msg, own); /* a lite agent asked nothing: unmatched */
	else
		v = ICE_OTHER; /* indications: keepalives, nothing to pass on */
	if (v != ICE_FORWARDED)
		goto out_drop;
	if (!relay_latch_check(&k->latch, &r->latch, src)) {
		v = ICE_SOURCE;
		goto out_drop;
	}
	if (peer->agent) {
		/* answered here, from the socket it came to, to its source */
		if (lite_answer(&msg, peer, src, p, lenp)) {
			v = ICE_OTHER;
			goto out_drop;
		}
		metric_inc(&m_checks[ICE_ANSWERED]);
		*dst = src;
		return k;
	}
	/* the same component on the other leg: RTP port to RTP port */
	struct relay_sock *out = k->rtcp ? &om->rtcp : &om->rtp;
	if (out->fd < 0 || !relay_latch_dest(&out->latch, dst)) {
		v = ICE_NO_PEER;
		goto out_drop;
	}
	if (msg.cls == STUN_CLASS_SUCCESS)
		remap(&msg, own, *dst, p, lenp);
	metric_inc(&m_checks[ICE_FORWARDED]);
	return out;
out_drop:
	metric_inc(&m_checks[v]);
	return NULL;
}

void relay_ice_session_end(const struct relay_session *s)
{
	bool ice = false, media = false;
	for (unsigned l = 0; l < 2; l++)
		for (unsigned i = 0; i < SDP_MAX_MEDIA; i++) {
			const struct relay_media *m = s->leg[l].media[i];
			if (!m)
				continue;
			ice |= m->ice != NULL;
			media |= m->rtp.latch.latched || m->rtcp.latch.latched;
		}
	if (ice)
		metric_inc(&m_sessions[media ? 0 : 1]);
}
