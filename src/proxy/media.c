/* Media relay engagement per call: offers and answers rewritten through relayctl, sessions ended with the call. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "proxy_int.h"
#include "sdp/sdp.h"

static struct metric m_relayed = {.name = "proxy_media_relayed_total",
				  .help = "offers sent through the media relay"};
static struct metric m_relay_errors = {.name = "proxy_media_errors_total",
				       .help = "offers or answers the relay refused"};
static struct metric m_too_many = {.name = "proxy_media_too_many_streams_total",
				   .help = "offers refused 488 for more m= lines than [relay] max_media"};

void proxy_media_register_metrics(void);
void proxy_media_register_metrics(void)
{
	metric_register(&m_relayed);
	metric_register(&m_relay_errors);
	metric_register(&m_too_many);
}

/* m= lines that would take relay ports (RFC 3264 6: port 0 takes none). */
static unsigned active_media(const struct sdp *s)
{
	unsigned n = 0;
	for (size_t i = 0; i < s->n_media; i++)
		n += s->media[i].port != 0;
	return n;
}

/* The message's SDP body, or an empty slice. */
static struct slice sdp_body(const struct sip_msg *m)
{
	if (m->body.l == 0)
		return SLICE_NULL;
	const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTENT_TYPE, 0);
	if (!ct)
		return SLICE_NULL;
	struct slice v = slice_trim(ct->value);
	size_t semi = slice_find(v, ';');
	v = slice_trim((struct slice){v.p, semi});
	return slice_eq_cstr_nocase(v, "application/sdp") ? m->body : SLICE_NULL;
}

static bool session_exists(struct proxy *p, struct slice call_id)
{
	struct relayctl_query *q = malloc(sizeof *q);
	bool found = q && relayctl_query(p->rc, call_id, SLICE_NULL, q) == 0;
	free(q);
	return found;
}

/* A request in a dialog touches its relay session only with the dialog's
 * own tags (the session's two parties), not with a Call-ID alone; and a
 * dialog that was relayed is relayed again when its session is gone (a
 * silent hold outlived it): the offer makes a new one. */
static bool dialog_engages(struct proxy *p, const struct sip_msg *m, bool dialog_relayed)
{
	if (proxy_media_dialog_matches(p, m))
		return true;
	return dialog_relayed && !session_exists(p, m->call_id);
}

static uint16_t status_of(int err)
{
	switch (err) {
	case EBADMSG:
	case ENOTSUP:
	case E2BIG:
		return 488;
	default:
		return 503; /* out of ports, relay down */
	}
}

/* RFC 3261 16.6 leaves the body to the proxy: the parties as decide.c sees
 * them (a registered callee reached through a Path, an edge of ours, is
 * behind it where we cannot see: not direct). */
static bool wants_relay(struct proxy *p, const struct edge_rx *rx, const struct sdp *s,
			const struct proxy_target *t, size_t n)
{
	struct proxy_media_party caller, callees[PROXY_MAX_TARGETS];
	proxy_media_caller(&p->mpol, rx->msg, &rx->flow, &caller);
	n = MIN(n, (size_t)PROXY_MAX_TARGETS);
	for (size_t i = 0; i < n; i++) {
		struct proxy_media_party *c = &callees[i];
		memset(c, 0, sizeof *c);
		c->src = t[i].flow.remote;
		c->claims_nat = t[i].behind_nat;
		c->direct = !t[i].path[0] && proxy_media_direct(&p->mpol, &c->src);
		c->local = edge_addr_is_local(p->edge, &c->src);
	}
	enum proxy_media_why why = proxy_media_decide(&p->mpol, s, &caller, callees, n);
	proxy_media_count(why);
	return proxy_why_relays(why);
}

uint16_t proxy_media_request(struct proxy *p, const struct edge_rx *rx,
			     const struct proxy_target *t, size_t n, bool dialog_relayed,
			     struct proxy_media *pm, struct buf *body)
{
	const struct sip_msg *m = rx->msg;
	memset(pm, 0, sizeof *pm);
	if (!p->rc || (m->method != SIP_INVITE && m->method != SIP_UPDATE))
		return 0;
	pm->initial = m->to_tag.l == 0;
	slice_to_cstr(m->call_id, pm->call_id, sizeof pm->call_id);
	slice_to_cstr(m->from_tag, pm->from_tag, sizeof pm->from_tag);
	struct slice sdp = sdp_body(m);
	struct sdp *parsed = NULL;
	if (sdp.l) {
		parsed = malloc(sizeof *parsed);
		if (!parsed)
			return 500;
		int err = sdp_parse(parsed, sdp);
		if (err) {
			free(parsed);
			metric_inc(&m_relay_errors);
			return 488; /* the call must not go on half-relayed */
		}
		if (sdp_has_nortpproxy(parsed)) {
			free(parsed); /* a proxy before us relays it already */
			return 0;
		}
	}
	bool engage = pm->initial ? wants_relay(p, rx, parsed, t, n)
				  : dialog_engages(p, m, dialog_relayed);
	/* every relayed m= line costs two port pairs: capped here too, for
	 * relays that do not cap it themselves (ng) */
	bool too_many = engage && parsed && active_media(parsed) > p->max_media;
	free(parsed);
	if (!engage)
		return 0;
	if (too_many) {
		metric_inc(&m_too_many);
		return 488;
	}
	pm->engaged = true;
	if (!sdp.l) {
		pm->late = true; /* RFC 3261 13.2.1: the offer comes in the 2xx */
		return 0;
	}
	struct relayctl_req req = {
		.call_id = m->call_id,
		.from_tag = m->from_tag,
		.to_tag = m->to_tag,
		.sdp = sdp,
	};
	req.opts.received_from = rx->flow.remote;
	/* the caller's AOR pays for the ports with the source (max_pairs_per_aor) */
	char owner[STORE_AOR_MAX];
	if (registrar_aor_of(&m->from.uri, owner) == 0)
		req.opts.owner = slice_cstr(owner);
	/* no private address left anywhere in what the callee sees */
	req.opts.replace_origin = true;
	req.opts.replace_session_conn = true;
	req.opts.ice = p->mpol.ice_candidate ? RELAYCTL_ICE_CANDIDATE : RELAYCTL_ICE_REMOVE;
	int err = relayctl_offer(p->rc, &req, body);
	if (err) {
		metric_inc(&m_relay_errors);
		LOG_W("proxy", "relay offer for %.*s: %s", (int)MIN(m->call_id.l, 80), m->call_id.p,
		      relayctl_strerror(err));
		pm->engaged = false;
		return status_of(err);
	}
	pm->offered = true;
	metric_inc(&m_relayed);
	return 0;
}

int proxy_media_response(struct proxy *p, const struct proxy_media *pm, const struct edge_rx *rx,
			 struct buf *body)
{
	const struct sip_msg *m = rx->msg;
	if (!p->rc || !pm->engaged || m->status < 101 || m->status >= 300)
		return ENOENT;
	struct slice sdp = sdp_body(m);
	if (!sdp.l || m->to_tag.l == 0)
		return ENOENT;
	struct relayctl_req req = {.call_id = m->call_id, .sdp = sdp};
	req.opts.received_from = rx->flow.remote;
	req.opts.replace_origin = true;
	req.opts.replace_session_conn = true;
	req.opts.ice = p->mpol.ice_candidate ? RELAYCTL_ICE_CANDIDATE : RELAYCTL_ICE_REMOVE;
	int err;
	char owner[STORE_AOR_MAX];
	if (pm->late && registrar_aor_of(&m->from.uri, owner) == 0)
		req.opts.owner = slice_cstr(owner);
	if (pm->late) {
		/* the callee offers: its tag names the offering leg */
		req.from_tag = m->to_tag;
		req.to_tag = m->from_tag;
		err = relayctl_offer(p->rc, &req, body);
	} else {
		req.from_tag = m->from_tag;
		req.to_tag = m->to_tag;
		err = relayctl_answer(p->rc, &req, body);
	}
	if (err) {
		metric_inc(&m_relay_errors);
		LOG_W("proxy", "relay %s for %.*s: %s", pm->late ? "late offer" : "answer",
		      (int)MIN(m->call_id.l, 80), m->call_id.p, relayctl_strerror(err));
	}
	return err;
}

int proxy_media_ack(struct proxy *p, const struct edge_rx *rx, struct buf *body)
{
	const struct sip_msg *m = rx->msg;
	if (!p->rc)
		return ENOENT;
	struct slice sdp = sdp_body(m);
	if (!sdp.l || !proxy_media_dialog_matches(p, m))
		return ENOENT; /* only the relayed dialog's own ACK may answer in it */
	/* the answer to the callee's late offer: the callee (To) offered */
	struct relayctl_req req = {
		.call_id = m->call_id, .from_tag = m->to_tag, .to_tag = m->from_tag, .sdp = sdp};
	req.opts.received_from = rx->flow.remote;
	req.opts.replace_origin = true;
	req.opts.replace_session_conn = true;
	req.opts.ice = p->mpol.ice_candidate ? RELAYCTL_ICE_CANDIDATE : RELAYCTL_ICE_REMOVE;
	int err = relayctl_answer(p->rc, &req, body);
	if (err)
		metric_inc(&m_relay_errors);
	return err;
}

static bool tag_is(const char *leg, struct slice tag)
{
	/* the query keeps RELAYCTL_TAG_MAX - 1 bytes of a tag */
	size_t l = MIN(tag.l, (size_t)RELAYCTL_TAG_MAX - 1);
	return tag.l && strlen(leg) == l && memcmp(leg, tag.p, l) == 0;
}

bool proxy_media_dialog_matches(struct proxy *p, const struct sip_msg *m)
{
	if (!p->rc || !m->from_tag.l || !m->to_tag.l)
		return false;
	struct relayctl_query *q = malloc(sizeof *q);
	bool match = q && relayctl_query(p->rc, m->call_id, SLICE_NULL, q) == 0 &&
		     ((tag_is(q->leg[0].tag, m->from_tag) && tag_is(q->leg[1].tag, m->to_tag)) ||
		      (tag_is(q->leg[1].tag, m->from_tag) && tag_is(q->leg[0].tag, m->to_tag)));
	free(q);
	return match;
}

void proxy_media_note(struct proxy *p, const struct proxy_media *pm)
{
	if (!p->rc || !p->reg || (!pm->aor_from[0] && !pm->aor_to[0]))
		return;
	struct relayctl_query *q = malloc(sizeof *q);
	if (!q || relayctl_query(p->rc, slice_cstr(pm->call_id), SLICE_NULL, q)) {
		free(q);
		return;
	}
	for (unsigned l = 0; l < 2; l++) {
		const struct relayctl_leg *L = &q->leg[l];
		/* the party's word: its most telling stream (the values go
		 * no-media < as-announced < other-port < other-ip) */
		unsigned ev = 0;
		for (size_t i = 0; i < L->n_media; i++)
			ev = MAX(ev, (unsigned)L->media[i].rtp.evidence);
		if (!ev || net_addr_family(&L->sig) == AF_UNSPEC)
			continue; /* not known (a relay over ng) */
		if (pm->aor_from[0])
			registrar_note_media(p->reg, pm->aor_from, &L->sig, ev);
		if (pm->aor_to[0])
			registrar_note_media(p->reg, pm->aor_to, &L->sig, ev);
	}
	free(q);
}

void proxy_media_end(struct proxy *p, struct slice call_id)
{
	if (p->rc)
		relayctl_delete(p->rc, call_id, SLICE_NULL, SLICE_NULL);
}
