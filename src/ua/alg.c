/* ua: the SIP ALG verdict: compare what the server says it saw (Pinhole-Seen) with what we sent.
 *
 * A router's SIP helper (an "ALG") rewrites the addresses in Via, Contact and
 * the SDP on their way out, so the server cannot tell a rewritten message
 * from an honest one. Pinhole answers a REGISTER it accepted, and an INVITE
 * it forwards, with Pinhole-Seen: base64 of "key=value" lines (src, via,
 * contact, sdp-c, sdp-m) as the message arrived; base64, so the ALG finds no
 * address in it to rewrite. We hold the request we sent, so the comparison
 * is certain: any difference was made on the path. A plain NAT rewrites the
 * packet's header, never its text, and leaves no difference.
 *
 * Who can send this: only the proxy of a flow (the flow's socket takes
 * nothing else), and a server that lies hurts only our verdict. Cost: one
 * bounded decode (UA_SEEN_MAX bytes) per response that carries the header.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ua_int.h"

#define UA_SEEN_MAX 2048 /* decoded bytes; the server sends five values of <= 256 */

static void put(char *dst, size_t cap, bool *has, struct slice v)
{
	if (v.l >= cap) /* longer than the server sends: not what it saw */
		return;
	memcpy(dst, v.p, v.l);
	dst[v.l] = '\0';
	*has = true;
}

int ua_seen_decode(struct slice value, struct ua_seen *out)
{
	memset(out, 0, sizeof *out);
	unsigned char raw[UA_SEEN_MAX];
	size_t n = 0;
	if (base64_decode(slice_trim(value), raw, sizeof raw, &n) || n == 0)
		return EBADMSG;
	const char *p = (const char *)raw, *end = p + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *eq = memchr(p, '=', (size_t)(le - p));
		if (eq) {
			struct slice k = {p, (size_t)(eq - p)};
			struct slice v = slice_trim((struct slice){eq + 1, (size_t)(le - eq - 1)});
			uint32_t port;
			if (slice_eq_cstr_nocase(k, "src"))
				put(out->src, sizeof out->src, &out->has_src, v);
			else if (slice_eq_cstr_nocase(k, "via"))
				put(out->via, sizeof out->via, &out->has_via, v);
			else if (slice_eq_cstr_nocase(k, "contact"))
				put(out->contact, sizeof out->contact, &out->has_contact, v);
			else if (slice_eq_cstr_nocase(k, "sdp-c"))
				put(out->sdp_c, sizeof out->sdp_c, &out->has_sdp_c, v);
			else if (slice_eq_cstr_nocase(k, "sdp-m") &&
				 !slice_to_u32(v, 65535, &port)) {
				out->sdp_m = (uint16_t)port;
				out->has_sdp_m = true;
			}
		}
		p = le + 1;
	}
	return out->has_via || out->has_contact || out->has_sdp_c || out->has_sdp_m ? 0 : EBADMSG;
}

/* host and port of a sent-by or URI: equal when both are, in any case */
static bool hostport_eq(struct slice ha, uint16_t pa, struct slice hb, uint16_t pb)
{
	return pa == pb && slice_eq_nocase(ha, hb);
}

static bool via_rewritten(const struct sip_msg *sent, const char *seen)
{
	struct sip_via v;
	if (!sent->via1.host.l || sip_via_parse(slice_cstr(seen), &v))
		return false; /* nothing to compare: no claim */
	/* another branch is another hop's Via (a proxy before the one that
	 * answered): not ours to compare; an ALG leaves the branch alone */
	if (!slice_eq(sent->via1.branch, v.branch))
		return false;
	return !hostport_eq(sent->via1.host, sent->via1.port, v.host, v.port) ||
	       !slice_eq_nocase(sent->via1.transport, v.transport);
}

static bool contact_rewritten(const struct sip_msg *sent, const char *seen)
{
	const struct sip_hdr *h = sip_msg_hdr(sent, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr a, b;
	size_t pos = 0;
	struct slice v;
	if (!h || !sip_hdr_next_value(h->value, &pos, &v) ||
	    sip_nameaddr_parse(slice_trim(v), &a) || sip_nameaddr_parse(slice_cstr(seen), &b) ||
	    a.star || b.star)
		return false;
	return !hostport_eq(a.uri.host, a.uri.port, b.uri.host, b.uri.port);
}

unsigned ua_alg_compare(struct slice sent_req, const struct ua_seen *seen)
{
	struct sip_msg *m = malloc(sizeof *m);
	if (!m)
		return 0;
	unsigned r = 0;
	if (sip_msg_parse(m, sent_req.p, sent_req.l, false, NULL) == 0 && m->request) {
		if (seen->has_via && via_rewritten(m, seen->via))
			r |= UA_ALG_VIA;
		if (seen->has_contact && contact_rewritten(m, seen->contact))
			r |= UA_ALG_CONTACT;
		struct ua_sdp_remote ours;
		if (m->body.l && ua_sdp_read(m->body, &ours) == 0) {
			if (seen->has_sdp_c && strcasecmp(seen->sdp_c, ours.addr) != 0)
				r |= UA_ALG_SDP;
			if (seen->has_sdp_m && seen->sdp_m != ours.port)
				r |= UA_ALG_SDP;
		}
	}
	free(m);
	return r;
}

void ua_alg_words(unsigned rewritten, struct buf *out)
{
	if (!rewritten) {
		buf_append_cstr(out, "the server saw what the ua sent: no SIP ALG on the path");
		return;
	}
	const char *part[3];
	unsigned n = 0;
	if (rewritten & UA_ALG_VIA)
		part[n++] = "Via";
	if (rewritten & UA_ALG_CONTACT)
		part[n++] = "Contact";
	if (rewritten & UA_ALG_SDP)
		part[n++] = "SDP";
	buf_append_cstr(out, "a SIP ALG on your router rewrote ");
	for (unsigned i = 0; i < n; i++)
		buf_printf(out, "%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", part[i]);
	buf_append_cstr(out, ": switch it off");
}

/* ---- the hook: a response arrived on f ---- */

static void tell(struct ua_flow *f, const char *method, unsigned rewritten)
{
	struct buf w;
	buf_init(&w);
	ua_alg_words(rewritten, &w);
	buf_append(&w, "", 1); /* detail is a C string */
	struct ua_event ev = {.kind = UA_EV_SIP_ALG,
			      .method = method,
			      .rewritten = rewritten,
			      .detail = w.failed ? NULL : w.data};
	ua_emit(f, &ev);
	buf_free(&w);
}

void ua_alg_on_response(struct ua_flow *f, const struct sip_msg *m)
{
	const struct sip_hdr *h = sip_msg_hdr_named(m, "Pinhole-Seen");
	if (!h)
		return;
	struct ua *ua = f->ua;
	struct ua_alg *a = &ua->alg;
	struct ua_seen seen;
	if (m->cseq.method == SIP_REGISTER) {
		/* the 200 to the REGISTER in flight on this flow, the bytes still in f->req */
		if (m->status < 200 || m->status >= 300 || !f->in_flight ||
		    m->cseq.num != f->cseq || !slice_eq(m->via1.branch, slice_cstr(f->branch)) ||
		    !f->req.len)
			return;
		if (ua_seen_decode(h->value, &seen))
			return;
		unsigned r = ua_alg_compare((struct slice){f->req.data, f->req.len}, &seen);
		/* once per flow, and again when the answer changes */
		if (a->reg_told[f->idx] && a->reg_mask[f->idx] == r)
			return;
		a->reg_told[f->idx] = true;
		a->reg_mask[f->idx] = r;
		tell(f, "REGISTER", r);
	} else if (m->cseq.method == SIP_INVITE) {
		const struct ua_call *c = &ua->call;
		if (c->uas || m->cseq.num != c->inv_cseq || !c->inv.len ||
		    !slice_eq(m->call_id, slice_cstr(c->call_id)))
			return;
		if (a->inv_told && a->inv_cseq == c->inv_cseq &&
		    !strcmp(a->inv_call_id, c->call_id))
			return; /* once per INVITE */
		if (ua_seen_decode(h->value, &seen))
			return;
		a->inv_told = true;
		a->inv_cseq = c->inv_cseq;
		snprintf(a->inv_call_id, sizeof a->inv_call_id, "%s", c->call_id);
		tell(f, "INVITE", ua_alg_compare((struct slice){c->inv.data, c->inv.len}, &seen));
	}
}
