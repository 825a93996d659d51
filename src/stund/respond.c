/* The Binding responder: request bytes in, response bytes and a destination out. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "stun/stun.h"
#include "stund.h"

#define MAX_UNKNOWN 16 /* listed in a 420; more are not worth the bytes */

static size_t addr_attr_size(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? 24 : 12;
}

static socklen_t sa_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* An error response, held to the same budget as a success (RFC 8489 allows
 * an empty reason phrase; UNKNOWN-ATTRIBUTES lists as many as fit). */
static int error_reply(const struct stun_msg *m, uint16_t code, const char *reason,
		       const uint16_t *unk, size_t nunk, bool fp, size_t budget, struct buf *resp,
		       struct stund_reply *out)
{
	if (!reason)
		reason = stun_error_reason(code);
	size_t fixed = 20 + 8 + (fp ? 8 : 0);
	size_t rl = (strlen(reason) + 3) & ~(size_t)3;
	if (fixed + rl + (nunk ? 4 + ((2 * nunk + 3) & ~(size_t)3) : 0) > budget) {
		reason = "";
		size_t room = budget > fixed + 4 ? (budget - fixed - 4) / 2 : 0;
		nunk = MIN(nunk, room & ~(size_t)1);
	}
	struct stun_enc e;
	stun_enc_begin_reply(&e, resp, m, STUN_CLASS_ERROR);
	stun_enc_error(&e, code, reason);
	if (nunk)
		stun_enc_unknown(&e, unk, nunk);
	if (fp)
		stun_enc_fingerprint(&e);
	out->code = code;
	return stun_enc_end(&e) ? ENOMEM : 0;
}

/* Adds an optional attribute only if the response stays within budget. */
static void optional_addr(struct stun_enc *e, uint16_t type, const struct sockaddr_storage *ss,
			  size_t budget)
{
	const struct sockaddr *sa = (const struct sockaddr *)ss;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return;
	if (stun_enc_len(e) + addr_attr_size(sa) <= budget)
		stun_enc_addr(e, type, sa);
}

int stund_respond(const struct stund_view *v, unsigned in, const struct sockaddr *src,
		  const void *req, size_t len, struct buf *resp, struct stund_reply *out)
{
	static const struct stund_view single; /* one address, nothing optional */
	if (!v)
		v = &single;
	if (in > 3 || !v->rfc5780)
		in = 0;
	/* RFC 8489 6.3: a broken header is discarded without an answer */
	if (!stun_is_message_classic(req, len))
		return EBADMSG;

	/* Amplification: what goes back stays within this (success or error) */
	size_t budget = MAX(len, (size_t)STUND_RESP_FLOOR);
	struct stun_msg m;
	int err = stun_msg_decode(&m, req, len);
	memset(out, 0, sizeof *out);
	out->from = in;
	memcpy(&out->to, src, sa_len(src));

	if (err) {
		/* header fine, attributes broken: a request gets 400 (RFC 8489 6.3.1) */
		if (m.cls != STUN_CLASS_REQUEST)
			return EBADMSG;
		return error_reply(&m, STUN_ERR_BAD_REQUEST, NULL, NULL, 0, false, budget, resp,
				   out);
	}
	if (m.cls != STUN_CLASS_REQUEST)
		return ENOTSUP;
	/* RFC 8489 7.3: a FINGERPRINT that does not match means "not STUN": drop */
	if (m.fp >= 0 && stun_msg_check_fingerprint(&m) != 0)
		return EACCES;
	/* RFC 5389 12.2: an RFC 3489 client gets no FINGERPRINT it cannot read */
	bool fp = m.fp >= 0 && !m.classic;

	if (m.method != STUN_METHOD_BINDING)
		return error_reply(&m, STUN_ERR_BAD_REQUEST, "Unsupported Method", NULL, 0, fp,
				   budget, resp, out);

	uint16_t unk[MAX_UNKNOWN];
	size_t nunk = stun_msg_unknown(&m, NULL, 0, unk, MAX_UNKNOWN - 2);

	uint32_t change = 0;
	const struct stun_attr *a = stun_msg_attr(&m, STUN_ATTR_CHANGE_REQUEST);
	if (a && stun_attr_change(a, &change) != 0)
		return error_reply(&m, STUN_ERR_BAD_REQUEST, NULL, NULL, 0, fp, budget, resp, out);
	/* RFC 5780 6.1: without an alternate address CHANGE-REQUEST is "unknown".
	 * An all-zero one asks for nothing, and RFC 3489 phones send it in their
	 * keepalives, so it is answered rather than refused. */
	if (change && !v->rfc5780)
		unk[nunk++] = STUN_ATTR_CHANGE_REQUEST;

	uint16_t rport = 0;
	a = stun_msg_attr(&m, STUN_ATTR_RESPONSE_PORT);
	if (a && !v->rfc5780) {
		unk[nunk++] = STUN_ATTR_RESPONSE_PORT;
	} else if (a && (stun_attr_response_port(a, &rport) != 0 || rport == 0)) {
		return error_reply(&m, STUN_ERR_BAD_REQUEST, NULL, NULL, 0, fp, budget, resp, out);
	}
	if (nunk)
		return error_reply(&m, STUN_ERR_UNKNOWN_ATTRIBUTE, NULL, unk, nunk, fp, budget,
				   resp, out);

	/* RFC 5780 6.1: answer from the address and port CHANGE-REQUEST names */
	unsigned from =
	    in ^ ((change & STUN_CHANGE_PORT) ? 1u : 0u) ^ ((change & STUN_CHANGE_IP) ? 2u : 0u);
	out->from = from;
	/* RFC 5780 7.5: RESPONSE-PORT redirects to another port of the same IP only */
	if (rport) {
		if (out->to.ss_family == AF_INET)
			((struct sockaddr_in *)&out->to)->sin_port = htons(rport);
		else if (out->to.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&out->to)->sin6_port = htons(rport);
	}

	/* Only what the client needs is unconditional; the rest goes in while
	 * the response stays within budget. */
	budget -= fp ? 8 : 0;
	struct stun_enc e;
	stun_enc_begin_reply(&e, resp, &m, STUN_CLASS_SUCCESS);
	/* RFC 5389 12.2: RFC 3489 clients read MAPPED-ADDRESS, not the XOR form */
	stun_enc_addr(&e, m.classic ? STUN_ATTR_MAPPED_ADDRESS : STUN_ATTR_XOR_MAPPED_ADDRESS, src);
	if (v->rfc5780) {
		/* RFC 5780 7.3, 7.4 (RFC 3489 11.2.3, 11.2.4 for classic clients) */
		optional_addr(&e, m.classic ? STUN_ATTR_SOURCE_ADDRESS : STUN_ATTR_RESPONSE_ORIGIN,
			      &v->addr[from], budget);
		optional_addr(&e, m.classic ? STUN_ATTR_CHANGED_ADDRESS : STUN_ATTR_OTHER_ADDRESS,
			      &v->addr[in ^ 3u], budget);
	}
	if (v->software && !m.classic) {
		size_t sl = strlen(v->software);
		if (sl < 128 && stun_enc_len(&e) + 4 + ((sl + 3) & ~(size_t)3) <= budget)
			stun_enc_str(&e, STUN_ATTR_SOFTWARE, slice_cstr(v->software));
	}
	/* RFC 5780 7.6: a padded request gets a response padded to its size, which
	 * is how a client tests fragmentation; never beyond the request */
	if (stun_msg_attr(&m, STUN_ATTR_PADDING) && !m.classic) {
		size_t target = len - (fp ? 8 : 0), cur = stun_enc_len(&e);
		if (target >= cur + 4)
			stun_enc_padding(&e, (target - cur - 4) & ~(size_t)3);
	}
	if (fp)
		stun_enc_fingerprint(&e);
	if (stun_enc_end(&e))
		return ENOMEM;
	return 0;
}

int stund_answer(const struct sockaddr *src, const void *req, size_t len, struct buf *resp)
{
	struct stund_reply r;
	return stund_respond(NULL, 0, src, req, len, resp, &r);
}
