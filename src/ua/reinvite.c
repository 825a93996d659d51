/* ua: re-INVITEs in a call, both ways: hold (a=sendonly) and resume (a=sendrecv) by RFC 3264
 * 8.4, glare and its retry (RFC 3261 14), an offerless re-INVITE, and the media following the
 * agreed direction. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ua_int.h"

/* ---- re-INVITEs: hold and resume (RFC 3264 8.4, RFC 3261 14) ----
 *
 * Holding is an offer with a=sendonly: we go on sending (as music on hold
 * would) and the far end, answering recvonly, stops; resuming is a=sendrecv.
 * A re-INVITE from the far end gets the mirrored direction, and our RTP
 * stops or restarts with it. RTCP goes on throughout. A re-INVITE that fails
 * leaves the session as it was (14.1), except 408 and 481, and no answer in
 * 32 s, which end the call. */

/* Who sends now, and the packets so far (a test reads them per phase). */
static const char *dir_words(const struct ua_media *md)
{
	static char w[128];
	snprintf(w, sizeof w, "%s; so far in=%llu out=%llu",
		 md->send_rtp && md->far_sends ? "both send"
		 : md->send_rtp		       ? "we send, the far end does not"
		 : md->far_sends	       ? "the far end sends, we do not"
					       : "neither sends",
		 (unsigned long long)md->recv_packets, (unsigned long long)md->sent_packets);
	return w;
}

static void reinv_retx(void *arg)
{
	struct ua_call *c = arg;
	uaf_send(c->f, c->reinv.data, c->reinv.len);
	c->reinv_rto *= 2;
	timer_start(c->ua->loop, &c->t_reinv_retx, c->reinv_rto, reinv_retx, c);
}

static void reinv_timeout(void *arg)
{
	struct ua_call *c = arg;
	timer_cancel(&c->t_reinv_retx);
	c->reinv_pending = false;
	uac_emit(c, 0, "no answer to our re-INVITE in 32 s: hanging up (RFC 3261 14.1)");
	if (!c->exit_code)
		c->exit_code = UA_EXIT_TIMEOUT;
	uac_send_bye(c);
}

static void send_reinvite(struct ua_call *c, enum sdp_dir dir)
{
	if (c->st != UAC_CONFIRMED || c->reinv_pending || c->reok_pending)
		return; /* uac_hold_due waits its turn: one offer at a time (14.1) */
	uac_new_branch(c->reinv_branch, sizeof c->reinv_branch);
	c->reinv_cseq = ++c->cseq;
	c->reinv_dir = dir;
	buf_reset(&c->reinv);
	buf_reset(&c->reack);
	uac_req_head(c, &c->reinv, "INVITE", c->target, c->reinv_branch, c->reinv_cseq, true);
	uac_contact(c, &c->reinv);
	buf_append_cstr(&c->reinv, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n");
	struct buf sdp;
	buf_init(&sdp);
	struct ua_sdp_local l;
	uac_local_sdp(c, &l, dir);
	ua_sdp_offer(&l, &sdp);
	uac_body(&c->reinv, &sdp);
	buf_free(&sdp);
	if (c->reinv.failed)
		return;
	c->reinv_pending = true;
	uaf_send(c->f, c->reinv.data, c->reinv.len);
	if (c->f->px->tp == NET_UDP) {
		c->reinv_rto = UA_T1_MS;
		timer_start(c->ua->loop, &c->t_reinv_retx, c->reinv_rto, reinv_retx, c);
	}
	timer_start(c->ua->loop, &c->t_reinv_tsx, UA_TIMER_F_MS, reinv_timeout, c);
	uac_emit(c, 0,
		 dir == SDP_DIR_SENDONLY ? "holding: re-INVITE with a=sendonly"
					 : "resuming: re-INVITE with a=sendrecv");
}

/* --hold-after, then --resume-after; also a re-INVITE that waited its turn */
void uac_hold_due(void *arg)
{
	struct ua_call *c = arg;
	if (c->reinv_pending || c->reok_pending) {
		timer_start(c->ua->loop, &c->t_reinv_retry, 1000, uac_hold_due, c);
		return;
	}
	if (!c->holds_done) {
		c->holds_done = true;
		c->hold_wish = SDP_DIR_SENDONLY;
		send_reinvite(c, SDP_DIR_SENDONLY);
	} else if (!c->resume_done) {
		c->resume_done = true;
		c->hold_wish = SDP_DIR_NONE;
		send_reinvite(c, SDP_DIR_SENDRECV);
	}
}

void uac_reinvite_response(struct ua_call *c, const struct sip_msg *m)
{
	timer_cancel(&c->t_reinv_retx);
	if (m->status < 200)
		return;
	timer_cancel(&c->t_reinv_tsx);
	c->reinv_pending = false;
	char what[300], r[64];
	slice_to_cstr(m->reason, r, sizeof r);
	if (m->status >= 300) {
		/* the transaction's own ACK (17.1.1.3) */
		struct buf b;
		buf_init(&b);
		uac_req_head(c, &b, "ACK", c->target, c->reinv_branch, c->reinv_cseq, true);
		uac_body(&b, NULL);
		uaf_send(c->f, b.data, b.len);
		buf_free(&b);
		/* what we wished did not happen: our_dir stays, the version is spent */
		c->hold_wish = c->our_dir == SDP_DIR_SENDONLY ? SDP_DIR_SENDONLY : SDP_DIR_NONE;
		c->sdp_version++;
		if (m->status == 408 || m->status == 481) {
			snprintf(what, sizeof what, "re-INVITE answered %u %s: hanging up",
				 m->status, r);
			uac_emit(c, m->status, what);
			uac_send_bye(c);
			return;
		}
		if (m->status == 491) {
			/* glare: 0-2 s when the far end owns the Call-ID, else 2.1-4 s */
			uint64_t ms = c->uas ? rand_u32() % 2000 : 2100 + rand_u32() % 1900;
			timer_start(c->ua->loop, &c->t_reinv_retry, ms, uac_hold_due, c);
			if (c->reinv_dir == SDP_DIR_SENDONLY)
				c->holds_done = false;
			else
				c->resume_done = false;
		}
		snprintf(what, sizeof what, "re-INVITE answered %u %s: the session stays as it was",
			 m->status, r);
		uac_emit(c, m->status, what);
		return;
	}
	/* 2xx: ACK it (kept for its retransmissions), take the answer */
	char br[48];
	uac_new_branch(br, sizeof br);
	buf_reset(&c->reack);
	uac_req_head(c, &c->reack, "ACK", c->target, br, c->reinv_cseq, true);
	uac_body(&c->reack, NULL);
	uaf_send(c->f, c->reack.data, c->reack.len);
	struct ua_sdp_remote ans;
	if (ua_sdp_read(m->body, &ans)) {
		uac_emit(c, m->status, "re-INVITE answered without an SDP we can use: hanging up");
		uac_send_bye(c);
		return;
	}
	c->remote = ans;
	c->our_dir = c->reinv_dir;
	uam_update(&c->media, &ans, c->reinv_dir);
	snprintf(what, sizeof what, "%s: the far end answered a=%s (%s)",
		 c->reinv_dir == SDP_DIR_SENDONLY ? "held" : "resumed",
		 sdp_dir_name(ans.dir ? ans.dir : SDP_DIR_SENDRECV), dir_words(&c->media));
	uac_emit(c, m->status, what);
	if (c->reinv_dir == SDP_DIR_SENDONLY && c->ua->c.resume_s && !c->resume_done)
		timer_start(c->ua->loop, &c->t_hold, (uint64_t)c->ua->c.resume_s * 1000,
			    uac_hold_due, c);
}

static void reok_retx(void *arg)
{
	struct ua_call *c = arg;
	uaf_send(c->f, c->reok.data, c->reok.len);
	c->reok_rto = MIN(c->reok_rto * 2, (uint64_t)UA_T2_MS);
	timer_start(c->ua->loop, &c->t_reok_retx, c->reok_rto, reok_retx, c);
}

static void reok_timeout(void *arg)
{
	struct ua_call *c = arg;
	timer_cancel(&c->t_reok_retx);
	c->reok_pending = false;
	uac_emit(c, 0, "no ACK to our 200 for the re-INVITE in 32 s: hanging up");
	uac_send_bye(c);
}

void uac_reinvite(struct ua_call *c, const struct sip_msg *m)
{
	struct ua_flow *f = c->f;
	if (m->cseq.num <= c->remote_cseq) {
		if (c->reok_pending && m->cseq.num == c->reok_cseq)
			uaf_send(f, c->reok.data, c->reok.len); /* our 200 was lost */
		else if (!(c->uas && m->cseq.num == c->inv_cseq))
			uac_respond_once(f, m, 500, c->local_tag); /* out of order (12.2.2) */
		return;
	}
	c->remote_cseq = m->cseq.num;
	if (c->st != UAC_CONFIRMED || c->reinv_pending) {
		/* 14.2: ours is in flight (glare), or the last one is not ACKed */
		uac_respond_once(f, m, c->reinv_pending ? 491 : 500, c->local_tag);
		return;
	}
	if (c->reok_pending) {
		struct buf b;
		buf_init(&b);
		uac_respond(f, m, 500, c->local_tag, "Retry-After: 1\r\n", NULL, &b);
		buf_free(&b);
		return;
	}
	struct ua_sdp_remote offer;
	bool offerless = m->body.l == 0;
	if (!offerless && ua_sdp_read(m->body, &offer)) {
		uac_respond_once(f, m, 488, c->local_tag); /* 14.2: the session stays */
		uac_emit(c, 488,
			 "re-INVITE without an SDP we can use: answered 488, the call stands");
		return;
	}
	/* a new Contact refreshes the remote target (12.2.2) */
	const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	if (ct && sip_nameaddr_parse(ct->value, &na) == 0 && na.uri_s.l &&
	    na.uri_s.l < sizeof c->target)
		slice_to_cstr(na.uri_s, c->target, sizeof c->target);
	struct buf extra, sdp;
	buf_init(&extra);
	buf_init(&sdp);
	uac_contact(c, &extra);
	buf_append_cstr(&extra, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n");
	buf_append(&extra, "", 1);
	struct ua_sdp_local l;
	enum sdp_dir ours;
	if (offerless) {
		/* RFC 3261 14.2: we offer in the 200, the answer comes in the ACK */
		ours = c->hold_wish ? c->hold_wish : SDP_DIR_SENDRECV;
		uac_local_sdp(c, &l, ours);
		ua_sdp_offer(&l, &sdp);
	} else {
		ours = ua_sdp_answer_dir(offer.dir, c->hold_wish);
		uac_local_sdp(c, &l, ours);
		ua_sdp_answer(&l, &offer, &sdp);
	}
	c->our_dir = ours;
	c->reok_cseq = m->cseq.num;
	c->reok_offer = offerless;
	int err =
	    extra.failed || sdp.failed
		? ENOMEM
		: uac_respond(f, m, 200, c->local_tag, (const char *)extra.data, &sdp, &c->reok);
	buf_free(&extra);
	buf_free(&sdp);
	if (err)
		return;
	c->reok_pending = true;
	if (f->px->tp == NET_UDP) {
		c->reok_rto = UA_T1_MS;
		timer_start(c->ua->loop, &c->t_reok_retx, c->reok_rto, reok_retx, c);
	}
	timer_start(c->ua->loop, &c->t_reok_tsx, UA_TIMER_F_MS, reok_timeout, c);
	char what[300];
	if (offerless) {
		snprintf(what, sizeof what, "re-INVITE without an offer: we offered a=%s",
			 sdp_dir_name(ours));
	} else {
		c->remote = offer;
		uam_update(&c->media, &offer, ours);
		snprintf(
		    what, sizeof what, "%s by the far end: it offered a=%s, we answered a=%s (%s)",
		    ua_sdp_dir_they_send(offer.dir) && ua_sdp_dir_we_send(offer.dir) ? "resumed"
										     : "held",
		    sdp_dir_name(offer.dir ? offer.dir : SDP_DIR_SENDRECV), sdp_dir_name(ours),
		    dir_words(&c->media));
	}
	uac_emit(c, 200, what);
}

void uac_reinvite_ack(struct ua_call *c, const struct sip_msg *m)
{
	timer_cancel(&c->t_reok_retx);
	timer_cancel(&c->t_reok_tsx);
	c->reok_pending = false;
	if (!c->reok_offer)
		return;
	struct ua_sdp_remote ans;
	if (ua_sdp_read(m->body, &ans)) {
		uac_emit(c, 0, "the ACK carried no SDP answer we can use: hanging up");
		uac_send_bye(c);
		return;
	}
	c->remote = ans;
	uam_update(&c->media, &ans, c->our_dir);
	char what[160];
	snprintf(what, sizeof what, "the far end answered a=%s in the ACK (%s)",
		 sdp_dir_name(ans.dir ? ans.dir : SDP_DIR_SENDRECV), dir_words(&c->media));
	uac_emit(c, 0, what);
}
