/* sip: SIP, SIPS and tel URI parsing and RFC 3261 19.1.4 comparison. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Checks that every byte is unreserved, in the class extra (SIP_CC_URI_*),
 * or a valid %HH escape. */
static bool chars_ok(struct slice s, unsigned extra)
{
	extra |= SIP_CC_UNRESERVED;
	for (size_t i = 0; i < s.l; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c == '%') {
			if (i + 2 >= s.l)
				return false;
			if (!sip_lex_is_hex((unsigned char)s.p[i + 1]) ||
			    !sip_lex_is_hex((unsigned char)s.p[i + 2]))
				return false;
			i += 2;
			continue;
		}
		if (!(sip_lex_class[c] & extra))
			return false;
	}
	return true;
}

/* ";name[=value]" items, none empty. */
static bool params_ok(struct slice s)
{
	if (!chars_ok(s, SIP_CC_URI_PARAMS))
		return false;
	for (size_t i = 0; i < s.l; i++) {
		if (s.p[i] != ';')
			continue;
		if (i + 1 >= s.l || s.p[i + 1] == ';' || s.p[i + 1] == '=')
			return false;
	}
	return true;
}

static int parse_tel(struct slice rest, struct sip_uri *out)
{
	size_t semi = slice_find(rest, ';');
	struct slice num = sip_lex_sub(rest, 0, semi);
	if (num.l == 0)
		return EBADMSG;
	for (size_t i = 0; i < num.l; i++) {
		unsigned char c = (unsigned char)num.p[i];
		/* RFC 3966: digits (hex for local numbers), visual separators, * # + */
		if (!sip_lex_is_hex(c) && !strchr("+-.()*#", c))
			return EBADMSG;
	}
	out->user = num;
	out->params = sip_lex_sub(rest, semi, rest.l);
	if (out->params.l && !params_ok(out->params))
		return EBADMSG;
	return 0;
}

static int parse_sip(struct slice rest, struct sip_uri *out)
{
	/* '@' cannot appear unescaped after the userinfo, so the first one ends it */
	size_t at = slice_find(rest, '@');
	size_t i = 0;
	if (at < rest.l) {
		struct slice ui = sip_lex_sub(rest, 0, at);
		size_t colon = slice_find(ui, ':');
		out->user = sip_lex_sub(ui, 0, colon);
		if (colon < ui.l)
			out->password = sip_lex_sub(ui, colon + 1, ui.l);
		if (out->user.l == 0 || !chars_ok(out->user, SIP_CC_URI_USER) ||
		    !chars_ok(out->password, SIP_CC_URI_PASSWORD))
			return EBADMSG;
		i = at + 1;
	}
	struct slice hp = sip_lex_sub(rest, i, rest.l);
	size_t end;
	if (sip_lex_hostport(hp, &end, &out->host, &out->port, false))
		return EBADMSG;
	i += end;
	if (i < rest.l && rest.p[i] == ';') {
		size_t q = i + slice_find(sip_lex_sub(rest, i, rest.l), '?');
		out->params = sip_lex_sub(rest, i, q);
		if (!params_ok(out->params))
			return EBADMSG;
		i = q;
	}
	if (i < rest.l && rest.p[i] == '?') {
		out->headers = sip_lex_sub(rest, i + 1, rest.l);
		if (out->headers.l == 0 || !chars_ok(out->headers, SIP_CC_URI_HEADERS))
			return EBADMSG;
		i = rest.l;
	}
	return i == rest.l ? 0 : EBADMSG;
}

/* Returns ENOTSUP (scheme and whole filled) for a well-formed absoluteURI of
 * another scheme, so callers can tell "416 Unsupported URI Scheme" from 400. */
int sip_uri_parse(struct slice s, struct sip_uri *out)
{
	memset(out, 0, sizeof *out);
	out->whole = s;
	size_t colon = slice_find(s, ':');
	if (colon == 0 || colon >= s.l)
		return EBADMSG;
	struct slice scheme = sip_lex_sub(s, 0, colon);
	struct slice rest = sip_lex_sub(s, colon + 1, s.l);
	/* RFC 3986 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
	for (size_t i = 0; i < scheme.l; i++) {
		unsigned char c = (unsigned char)scheme.p[i];
		if (!sip_lex_is_alnum(c) && c != '+' && c != '-' && c != '.')
			return EBADMSG;
	}
	if (!sip_lex_is_alnum((unsigned char)scheme.p[0]) ||
	    sip_lex_is_digit((unsigned char)scheme.p[0]))
		return EBADMSG;
	out->scheme = scheme;
	if (slice_eq_cstr_nocase(scheme, "sip") || slice_eq_cstr_nocase(scheme, "sips"))
		return parse_sip(rest, out);
	if (slice_eq_cstr_nocase(scheme, "tel"))
		return parse_tel(rest, out);
	if (rest.l == 0)
		return EBADMSG;
	for (size_t i = 0; i < rest.l; i++) {
		unsigned char c = (unsigned char)rest.p[i];
		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"')
			return EBADMSG;
	}
	return ENOTSUP;
}

/* Next character of s at *i with %HH escapes decoded (19.1.4: "%41" == "A"). */
static int next_unescaped(struct slice s, size_t *i)
{
	unsigned char c = (unsigned char)s.p[*i];
	if (c == '%' && *i + 2 < s.l &&
	    sip_lex_is_hex((unsigned char)s.p[*i + 1]) &&
	    sip_lex_is_hex((unsigned char)s.p[*i + 2])) {
		char h[3] = {s.p[*i + 1], s.p[*i + 2], 0};
		*i += 3;
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char x = h[k];
			v = v * 16 + (x <= '9' ? x - '0' : (x | 0x20) - 'a' + 10);
		}
		return v;
	}
	*i += 1;
	return c;
}

static bool unescaped_eq(struct slice a, struct slice b, bool nocase)
{
	size_t i = 0, j = 0;
	while (i < a.l && j < b.l) {
		int x = next_unescaped(a, &i), y = next_unescaped(b, &j);
		if (nocase) {
			if (x >= 'A' && x <= 'Z')
				x += 'a' - 'A';
			if (y >= 'A' && y <= 'Z')
				y += 'a' - 'A';
		}
		if (x != y)
			return false;
	}
	return i == a.l && j == b.l;
}

/* One "name[=value]" item of a list split by sep (';' for parameters, '&'
 * for headers), from *pos; false at the end. Empty items are skipped. */
static bool next_item(struct slice list, char sep, size_t *pos, struct slice *name,
		      struct slice *value, bool *has_value)
{
	size_t i = *pos;
	while (i < list.l && list.p[i] == sep)
		i++;
	if (i >= list.l)
		return false;
	size_t e = i;
	while (e < list.l && list.p[e] != sep)
		e++;
	struct slice item = sip_lex_sub(list, i, e);
	size_t eq = slice_find(item, '=');
	*name = slice_trim(sip_lex_sub(item, 0, eq));
	*has_value = eq < item.l;
	*value = *has_value ? slice_trim(sip_lex_sub(item, eq + 1, item.l)) : SLICE_NULL;
	*pos = e;
	return true;
}

/* The first item of list named name (names compared unescaped, any case). */
static bool find_item(struct slice list, char sep, struct slice name, struct slice *value,
		      bool *has_value)
{
	size_t pos = 0;
	struct slice n, v;
	bool hv;
	while (next_item(list, sep, &pos, &n, &v, &hv)) {
		if (unescaped_eq(n, name, true)) {
			*value = v;
			*has_value = hv;
			return true;
		}
	}
	return false;
}

/* Whether the item at offset `at` of list is the first one of its name: a
 * repeated name is judged by its first occurrence, as sip_param_find()
 * reads it, so that equality stays symmetric. */
static bool first_of_name(struct slice list, char sep, struct slice name)
{
	size_t pos = 0;
	struct slice n, v;
	bool hv;
	while (next_item(list, sep, &pos, &n, &v, &hv))
		if (unescaped_eq(n, name, true))
			return n.p == name.p;
	return false;
}

/* Parameters whose presence on one side only makes URIs differ (19.1.4; its
 * examples count transport among them: "can resolve to different transports"). */
static const char *const must_match[] = {"user", "ttl", "method", "maddr", "transport"};

static bool is_must_match(struct slice name)
{
	for (size_t k = 0; k < ARRAY_SIZE(must_match); k++)
		if (unescaped_eq(name, slice_cstr(must_match[k]), true))
			return true;
	return false;
}

/* 19.1.4: a parameter on both sides must have equal values (any case,
 * escapes decoded); user, ttl, method, maddr and transport must also be on
 * both sides or on neither; any other parameter on one side only is
 * ignored. Looks from a's side; the caller runs it both ways. */
static bool params_match(struct slice a, struct slice b)
{
	size_t pos = 0;
	struct slice name, va, vb;
	bool ha, hb;
	while (next_item(a, ';', &pos, &name, &va, &ha)) {
		if (!first_of_name(a, ';', name))
			continue;
		if (!find_item(b, ';', name, &vb, &hb)) {
			if (is_must_match(name))
				return false;
			continue;
		}
		if (ha != hb || !unescaped_eq(va, vb, true))
			return false;
	}
	return true;
}

/* 19.1.4: headers are never ignored: each on one side is on the other with
 * an equal value. Names and values any case, escapes decoded. */
static bool headers_match(struct slice a, struct slice b)
{
	size_t pos = 0;
	struct slice name, va, vb;
	bool ha, hb;
	while (next_item(a, '&', &pos, &name, &va, &ha)) {
		if (!first_of_name(a, '&', name))
			continue;
		if (!find_item(b, '&', name, &vb, &hb) || !unescaped_eq(va, vb, true))
			return false;
	}
	return true;
}

/* Hosts: any case; IPv6 references by their address ("[2001:DB8::1]" is
 * "[2001:db8:0::1]"). */
static bool host_eq(struct slice a, struct slice b)
{
	if (slice_eq_nocase(a, b))
		return true;
	if (a.l < 3 || b.l < 3 || a.p[0] != '[' || b.p[0] != '[' || a.l > 47 || b.l > 47)
		return false;
	char ta[48], tb[48];
	unsigned char ba[16], bb[16];
	memcpy(ta, a.p + 1, a.l - 2);
	ta[a.l - 2] = '\0';
	memcpy(tb, b.p + 1, b.l - 2);
	tb[b.l - 2] = '\0';
	return inet_pton(AF_INET6, ta, ba) == 1 && inet_pton(AF_INET6, tb, bb) == 1 &&
	       memcmp(ba, bb, sizeof ba) == 0;
}

bool sip_uri_eq(const struct sip_uri *a, const struct sip_uri *b)
{
	if (!slice_eq_nocase(a->scheme, b->scheme))
		return false;
	/* userinfo is case-sensitive in SIP and SIPS URIs; a tel number's
	 * letters are hex digits */
	if (!unescaped_eq(a->user, b->user, slice_eq_cstr_nocase(a->scheme, "tel")))
		return false;
	if (!unescaped_eq(a->password, b->password, false))
		return false;
	/* an absent port is not 5060: it may resolve elsewhere (SRV) */
	if (!host_eq(a->host, b->host) || a->port != b->port)
		return false;
	return params_match(a->params, b->params) && params_match(b->params, a->params) &&
	       headers_match(a->headers, b->headers) && headers_match(b->headers, a->headers);
}

bool sip_uri_text_eq(struct slice a, struct slice b)
{
	if (slice_eq(a, b))
		return true;
	struct sip_uri ua, ub;
	if (sip_uri_parse(a, &ua) || sip_uri_parse(b, &ub))
		return false; /* not comparable by the rules: only the same bytes are equal */
	return sip_uri_eq(&ua, &ub);
}
