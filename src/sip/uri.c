/* sip: SIP, SIPS and tel URI parsing and RFC 3261 19.1.4 comparison. */
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

/* Parameters whose presence on one side only makes URIs differ (19.1.4; its
 * examples count transport among them: "can resolve to different transports"). */
static const char *const must_match[] = {"user", "ttl", "method", "maddr", "transport"};

bool sip_uri_eq(const struct sip_uri *a, const struct sip_uri *b)
{
	if (!slice_eq_nocase(a->scheme, b->scheme))
		return false;
	if (!unescaped_eq(a->user, b->user, slice_eq_cstr_nocase(a->scheme, "tel")))
		return false;
	if (!unescaped_eq(a->password, b->password, false))
		return false;
	if (!slice_eq_nocase(a->host, b->host) || a->port != b->port)
		return false;
	/* any parameter present in both must match */
	struct slice ps = a->params;
	size_t i = 0;
	while (i < ps.l) {
		if (ps.p[i] == ';') {
			i++;
			continue;
		}
		size_t e = i;
		while (e < ps.l && ps.p[e] != ';')
			e++;
		struct slice item = sip_lex_sub(ps, i, e);
		size_t eq = slice_find(item, '=');
		struct slice name = slice_trim(sip_lex_sub(item, 0, eq));
		struct sip_param first, other;
		/* a repeated parameter is judged by its first occurrence, as
		 * sip_param_find() reads it, so that equality stays reflexive */
		if (sip_lex_param_find(a->params, name, &first) && first.name.p != name.p) {
			i = e;
			continue;
		}
		if (sip_lex_param_find(b->params, name, &other)) {
			struct slice v = eq < item.l ? sip_lex_sub(item, eq + 1, item.l)
						     : SLICE_NULL;
			if (!unescaped_eq(v, other.value, true))
				return false;
		}
		i = e;
	}
	for (size_t k = 0; k < ARRAY_SIZE(must_match); k++) {
		bool pa = sip_param_find(a->params, must_match[k], NULL);
		bool pb = sip_param_find(b->params, must_match[k], NULL);
		if (pa != pb)
			return false;
	}
	return true;
}
