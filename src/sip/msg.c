/* sip: message parser: start line, header index, eager decoding of routing headers, body. */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

struct parse_ctx {
	struct sip_msg *m;
	struct sip_parse_error *err;
	bool failed;
};

/* The first error wins; parsing goes on so that a response can still be
 * built from what was decoded (a 505 needs Via, From, To, Call-ID, CSeq). */
static void fail(struct parse_ctx *c, uint16_t status, const char *reason)
{
	if (c->failed)
		return;
	c->failed = true;
	if (c->err) {
		/* RFC 3261 18.1.2 / 18.2.2: a malformed response is dropped */
		c->err->status = c->m->request ? status : 0;
		c->err->reason = reason;
	}
}

/* Finds the line starting at pos: *cend is where its content ends (before CR
 * LF or LF), *next the first byte after its terminator. Returns false when the
 * line has no LF before len. */
static bool line_at(const char *p, size_t len, size_t pos, size_t *cend, size_t *next)
{
	const char *lf = pos < len ? memchr(p + pos, '\n', len - pos) : NULL;
	if (!lf) {
		*cend = len;
		*next = len;
		return false;
	}
	size_t e = (size_t)(lf - p);
	*next = e + 1;
	*cend = (e > pos && p[e - 1] == '\r') ? e - 1 : e;
	return true;
}

/* "SIP/" 1*DIGIT "." 1*DIGIT */
static bool is_sip_version(struct slice v)
{
	if (v.l < 7 || !slice_eq_cstr_nocase(sip_lex_sub(v, 0, 4), "SIP/"))
		return false;
	size_t i = 4, d = 0, dots = 0;
	for (; i < v.l; i++) {
		if (v.p[i] == '.') {
			if (d == 0 || dots++)
				return false;
			d = 0;
		} else if (sip_lex_is_digit((unsigned char)v.p[i])) {
			d++;
		} else {
			return false;
		}
	}
	return dots == 1 && d > 0;
}

static void parse_status_line(struct parse_ctx *c, struct slice sl)
{
	struct sip_msg *m = c->m;
	m->request = false;
	size_t sp = slice_find(sl, ' ');
	m->version = sip_lex_sub(sl, 0, sp);
	if (!is_sip_version(m->version) || sp + 4 > sl.l) {
		fail(c, 0, "Bad Status-Line");
		return;
	}
	if (!slice_eq_cstr_nocase(m->version, "SIP/2.0")) {
		fail(c, 0, "Version Not Supported");
		return;
	}
	struct slice code = sip_lex_sub(sl, sp + 1, sp + 4);
	uint32_t st;
	if (slice_to_u32(code, 699, &st) || st < 100 ||
	    (sp + 4 < sl.l && sl.p[sp + 4] != ' ')) {
		fail(c, 0, "Bad Status-Line");
		return;
	}
	m->status = (uint16_t)st;
	/* RFC 4475 3.1.1.13: the reason may be empty; the SP before it is
	 * tolerated when missing */
	m->reason = sp + 5 <= sl.l ? sip_lex_sub(sl, sp + 5, sl.l) : sip_lex_sub(sl, sl.l, sl.l);
}

static void parse_request_line(struct parse_ctx *c, struct slice sl)
{
	struct sip_msg *m = c->m;
	m->request = true;
	/* RFC 3261 25.1: Method SP Request-URI SP SIP-Version, single spaces */
	size_t a = slice_find(sl, ' ');
	size_t b = sl.l;
	while (b > 0 && sl.p[b - 1] != ' ')
		b--;
	if (a >= sl.l || b == 0 || b - 1 <= a) {
		fail(c, 400, "Bad Request-Line");
		return;
	}
	b--;
	m->method_s = sip_lex_sub(sl, 0, a);
	m->ruri_s = sip_lex_sub(sl, a + 1, b);
	m->version = sip_lex_sub(sl, b + 1, sl.l);
	m->method = sip_method_from(m->method_s);
	if (!sip_lex_all_token(m->method_s)) {
		fail(c, 400, "Bad Request-Line");
		return;
	}
	for (size_t i = 0; i < m->ruri_s.l; i++) {
		if (sip_lex_is_lws((unsigned char)m->ruri_s.p[i])) {
			fail(c, 400, "Bad Request-Line");
			return;
		}
	}
	if (!is_sip_version(m->version)) {
		fail(c, 400, "Bad Request-Line");
		return;
	}
	if (!slice_eq_cstr_nocase(m->version, "SIP/2.0"))
		fail(c, 505, "Version Not Supported");
	int err = sip_uri_parse(m->ruri_s, &m->ruri);
	if (err == ENOTSUP)
		fail(c, 416, "Unsupported URI Scheme");
	else if (err)
		fail(c, 400, "Bad Request-URI");
	else if (m->ruri.headers.l)
		fail(c, 400, "Bad Request-URI"); /* RFC 3261 19.1.1: no headers in an R-URI */
}

/* Indexes header lines from pos; returns the offset after the empty line, or
 * 0 when the header section is not terminated. */
static size_t index_headers(struct parse_ctx *c, struct slice raw, size_t pos)
{
	struct sip_msg *m = c->m;
	const char *p = raw.p;
	size_t len = raw.l;
	for (;;) {
		size_t cend, next;
		if (!line_at(p, len, pos, &cend, &next))
			return 0;
		if (cend == pos)
			return next; /* the empty line */
		size_t start = pos;
		struct slice first = {p + pos, cend - pos};
		size_t n = sip_lex_skip_token(first, 0);
		size_t colon = n;
		while (colon < first.l && (first.p[colon] == ' ' || first.p[colon] == '\t'))
			colon++;
		/* folded continuation lines belong to this header */
		size_t vend = cend;
		while (next < len && (p[next] == ' ' || p[next] == '\t')) {
			if (!line_at(p, len, next, &vend, &next))
				return 0;
		}
		if (n == 0 || colon >= first.l || first.p[colon] != ':') {
			fail(c, 400, "Bad header line");
			pos = next;
			continue;
		}
		if (m->n_hdrs >= SIP_MAX_HEADERS) {
			fail(c, 400, "Too many headers");
			pos = next;
			continue;
		}
		struct sip_hdr *h = &m->hdrs[m->n_hdrs];
		h->name = sip_lex_sub(first, 0, n);
		h->id = sip_hdr_id_from(h->name);
		h->value = slice_trim((struct slice){p + start + colon + 1, vend - start - colon - 1});
		h->line = (struct slice){p + start, next - start};
		if (m->first_idx[h->id] == SIP_MAX_HEADERS)
			m->first_idx[h->id] = m->n_hdrs;
		m->n_hdrs++;
		pos = next;
	}
}

/* The one header of a single-instance kind; NULL (and a failure naming it)
 * when it is missing or repeated. */
static const struct sip_hdr *single(struct parse_ctx *c, enum sip_hdr_id id,
				    const char *missing, const char *bad)
{
	size_t n = sip_msg_hdr_count(c->m, id);
	if (n == 0) {
		if (missing)
			fail(c, 400, missing);
		return NULL;
	}
	if (n > 1) {
		fail(c, 400, bad);
		return NULL;
	}
	return sip_msg_hdr(c->m, id, 0);
}

static void decode_cseq(struct parse_ctx *c)
{
	struct sip_msg *m = c->m;
	const struct sip_hdr *h = single(c, SIP_HDR_CSEQ, "Missing CSeq", "Bad CSeq");
	if (!h)
		return;
	struct slice v = h->value;
	size_t i = 0;
	while (i < v.l && sip_lex_is_digit((unsigned char)v.p[i]))
		i++;
	size_t ms = sip_lex_skip_lws(v, i);
	uint32_t num;
	/* RFC 3261 8.1.1.5: the number is below 2**31 */
	if (i == 0 || ms == i || slice_to_u32(sip_lex_sub(v, 0, i), 0x7fffffff, &num) ||
	    !sip_lex_all_token(sip_lex_sub(v, ms, v.l))) {
		fail(c, 400, "Bad CSeq");
		return;
	}
	m->cseq.num = num;
	m->cseq.method_s = sip_lex_sub(v, ms, v.l);
	m->cseq.method = sip_method_from(m->cseq.method_s);
	if (m->request && m->method_s.l && !slice_eq(m->cseq.method_s, m->method_s))
		fail(c, 400, "CSeq method does not match");
}

static void decode_fromto(struct parse_ctx *c, enum sip_hdr_id id)
{
	struct sip_msg *m = c->m;
	bool from = id == SIP_HDR_FROM;
	const struct sip_hdr *h = single(c, id, from ? "Missing From" : "Missing To",
					 from ? "Bad From" : "Bad To");
	if (!h)
		return;
	struct sip_nameaddr *na = from ? &m->from : &m->to;
	if (sip_nameaddr_parse(h->value, na) || na->star) {
		fail(c, 400, from ? "Bad From" : "Bad To");
		return;
	}
	if (na->has_tag) {
		if (na->tag.l == 0) {
			fail(c, 400, from ? "Bad From" : "Bad To");
			return;
		}
		*(from ? &m->from_tag : &m->to_tag) = na->tag;
	}
}

static void decode_call_id(struct parse_ctx *c)
{
	const struct sip_hdr *h = single(c, SIP_HDR_CALL_ID, "Missing Call-ID", "Bad Call-ID");
	if (!h)
		return;
	struct slice v = h->value;
	/* RFC 3261 25.1: callid = word ["@" word]; words have no LWS or commas */
	for (size_t i = 0; i < v.l; i++) {
		unsigned char ch = (unsigned char)v.p[i];
		if (ch <= ' ' || ch >= 0x7f || ch == ',') {
			fail(c, 400, "Bad Call-ID");
			return;
		}
	}
	if (v.l == 0) {
		fail(c, 400, "Bad Call-ID");
		return;
	}
	c->m->call_id = v;
}

static void decode_via(struct parse_ctx *c)
{
	struct sip_msg *m = c->m;
	const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_VIA, 0);
	if (!h) {
		fail(c, 400, "Missing Via");
		return;
	}
	m->via1_hdr = (size_t)(h - m->hdrs);
	size_t pos = 0;
	struct slice v1;
	if (!sip_hdr_next_value(h->value, &pos, &v1) || sip_via_parse(v1, &m->via1))
		fail(c, 400, "Bad Via");
}

static void decode_max_forwards(struct parse_ctx *c)
{
	const struct sip_hdr *h = single(c, SIP_HDR_MAX_FORWARDS, NULL, "Bad Max-Forwards");
	uint32_t v;
	if (!h)
		return;
	/* RFC 3261 20.22 gives no upper bound; 255 is the common limit and
	 * RFC 4475 3.1.2.4 expects 300 to be refused */
	if (slice_to_u32(h->value, 255, &v)) {
		fail(c, 400, "Bad Max-Forwards");
		return;
	}
	c->m->max_forwards = (int)v;
}

static void decode_content_length(struct parse_ctx *c)
{
	struct sip_msg *m = c->m;
	size_t n = sip_msg_hdr_count(m, SIP_HDR_CONTENT_LENGTH);
	for (size_t i = 0; i < n; i++) {
		const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_CONTENT_LENGTH, i);
		uint32_t v;
		if (slice_to_u32(h->value, 0x7fffffff, &v) ||
		    (m->content_length >= 0 && m->content_length != (long)v)) {
			fail(c, 400, "Bad Content-Length");
			m->content_length = -1;
			return;
		}
		m->content_length = (long)v;
	}
}

int sip_msg_parse(struct sip_msg *msg, const char *data, size_t len, bool stream,
		  struct sip_parse_error *err)
{
	struct parse_ctx c = {msg, err, false};
	memset(msg, 0, offsetof(struct sip_msg, hdrs));
	msg->n_hdrs = 0;
	for (size_t i = 0; i < SIP_HDR_COUNT_; i++)
		msg->first_idx[i] = SIP_MAX_HEADERS;
	memset(&msg->via1, 0, sizeof *msg - offsetof(struct sip_msg, via1));
	msg->max_forwards = -1;
	msg->content_length = -1;
	if (err) {
		err->status = 0;
		err->reason = NULL;
	}

	/* RFC 3261 7.5: CRLFs before the start line are ignored */
	size_t skip = 0;
	while (skip < len && (data[skip] == '\r' || data[skip] == '\n'))
		skip++;
	struct slice raw = {data + skip, len - skip};
	msg->raw = raw;
	size_t cend, next;
	if (raw.l == 0 || !line_at(raw.p, raw.l, 0, &cend, &next)) {
		fail(&c, 0, "Truncated message");
		return EBADMSG;
	}
	msg->start_line = (struct slice){raw.p, cend};
	msg->request = !(cend >= 4 && slice_eq_cstr_nocase((struct slice){raw.p, 4}, "SIP/"));
	if (msg->request)
		parse_request_line(&c, msg->start_line);
	else
		parse_status_line(&c, msg->start_line);

	size_t body = index_headers(&c, raw, next);
	if (body == 0) {
		fail(&c, 400, "Truncated headers");
		msg->hdr_end = raw.l;
		msg->body = (struct slice){raw.p + raw.l, 0};
	} else {
		msg->hdr_end = body;
	}

	decode_via(&c);
	decode_fromto(&c, SIP_HDR_FROM);
	decode_fromto(&c, SIP_HDR_TO);
	decode_call_id(&c);
	decode_cseq(&c);
	decode_max_forwards(&c);
	decode_content_length(&c);

	if (body) {
		size_t rest = raw.l - body;
		size_t blen = rest;
		if (msg->content_length >= 0) {
			/* RFC 3261 18.3: extra datagram bytes are ignored, a
			 * shortfall is an error */
			if ((size_t)msg->content_length > rest)
				fail(&c, 400, "Content-Length larger than body");
			else
				blen = (size_t)msg->content_length;
		} else if (stream) {
			fail(&c, 400, "Missing Content-Length");
		}
		msg->body = (struct slice){raw.p + body, MIN(blen, rest)};
	}
	return c.failed ? EBADMSG : 0;
}

const struct sip_hdr *sip_msg_hdr(const struct sip_msg *msg, enum sip_hdr_id id, size_t i)
{
	if ((unsigned)id >= SIP_HDR_COUNT_)
		return NULL;
	size_t k = msg->first_idx[id];
	for (; k < msg->n_hdrs; k++) {
		if (msg->hdrs[k].id != id)
			continue;
		if (i-- == 0)
			return &msg->hdrs[k];
	}
	return NULL;
}

bool sip_msg_via2(const struct sip_msg *msg, struct sip_via *out, struct slice *raw)
{
	bool first = true;
	for (size_t i = msg->via1_hdr; i < msg->n_hdrs; i++) {
		if (msg->hdrs[i].id != SIP_HDR_VIA)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(msg->hdrs[i].value, &pos, &v)) {
			if (first) {
				first = false;
				continue;
			}
			if (raw)
				*raw = v;
			return sip_via_parse(v, out) == 0;
		}
	}
	return false;
}

const struct sip_hdr *sip_msg_hdr_named(const struct sip_msg *msg, const char *name)
{
	struct slice n = slice_cstr(name);
	enum sip_hdr_id id = sip_hdr_id_from(n);
	if (id != SIP_HDR_OTHER)
		return sip_msg_hdr(msg, id, 0);
	for (size_t k = 0; k < msg->n_hdrs; k++)
		if (msg->hdrs[k].id == SIP_HDR_OTHER && slice_eq_nocase(msg->hdrs[k].name, n))
			return &msg->hdrs[k];
	return NULL;
}

size_t sip_msg_hdr_count(const struct sip_msg *msg, enum sip_hdr_id id)
{
	if ((unsigned)id >= SIP_HDR_COUNT_)
		return 0;
	size_t n = 0;
	for (size_t k = msg->first_idx[id]; k < msg->n_hdrs; k++)
		if (msg->hdrs[k].id == id)
			n++;
	return n;
}

bool sip_msg_has_option(const struct sip_msg *msg, enum sip_hdr_id id, const char *tag)
{
	struct slice want = slice_cstr(tag);
	const struct sip_hdr *h;
	for (size_t i = 0; (h = sip_msg_hdr(msg, id, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(h->value, &pos, &v))
			if (slice_eq_nocase(v, want))
				return true;
	}
	return false;
}
