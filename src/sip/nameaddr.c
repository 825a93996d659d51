/* sip: name-addr / addr-spec values with header parameters (From, To, Contact, Route). */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Index of the '<' that starts a name-addr whose display name is *(token LWS),
 * or s.l when the value is an addr-spec. Bytes >= 0x80 are tolerated in the
 * display name: some phones send UTF-8 names unquoted. */
static size_t token_display_end(struct slice s)
{
	for (size_t i = 0; i < s.l; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c == '<')
			return i;
		if (!sip_lex_is_token(c) && !sip_lex_is_lws(c) && c < 0x80)
			return s.l;
	}
	return s.l;
}

static int parse_params(struct slice s, size_t i, struct sip_nameaddr *out)
{
	i = sip_lex_skip_lws(s, i);
	if (i >= s.l)
		return 0;
	if (s.p[i] != ';')
		return EBADMSG;
	out->params = sip_lex_sub(s, i, s.l);
	/* checked one parameter at a time, the tag picked up on the way: every
	 * From and To is parsed, and a second scan for the tag cost as much */
	size_t pos = 0;
	struct sip_param p;
	int r;
	while ((r = sip_lex_params_next(out->params, &pos, &p)) == 1) {
		if (!out->has_tag && p.name.l == 3 && slice_eq_cstr_nocase(p.name, "tag")) {
			out->has_tag = true;
			out->tag = p.value;
		}
	}
	return r;
}

int sip_nameaddr_parse(struct slice s, struct sip_nameaddr *out)
{
	memset(out, 0, sizeof *out);
	s = slice_trim(s);
	out->whole = s;
	if (s.l == 0)
		return EBADMSG;
	if (s.l == 1 && s.p[0] == '*') {
		out->star = true; /* Contact: * (RFC 3261 10.2.2) */
		return 0;
	}
	size_t i, lt;
	if (s.p[0] == '"') {
		size_t e = sip_lex_skip_quoted(s, 0);
		if (e == 0)
			return EBADMSG;
		out->display = sip_lex_sub(s, 0, e);
		lt = sip_lex_skip_lws(s, e);
		if (lt >= s.l || s.p[lt] != '<')
			return EBADMSG;
	} else {
		lt = token_display_end(s);
		if (lt < s.l)
			out->display = slice_trim(sip_lex_sub(s, 0, lt));
	}
	if (lt < s.l) {
		size_t gt = lt + 1 + slice_find(sip_lex_sub(s, lt + 1, s.l), '>');
		if (gt >= s.l)
			return EBADMSG;
		out->uri_s = sip_lex_sub(s, lt + 1, gt);
		i = gt + 1;
	} else {
		/* RFC 3261 20.10: without <>, ';' starts header parameters and the
		 * URI cannot carry ',', '?' or ';' of its own */
		i = 0;
		while (i < s.l && s.p[i] != ';' && !sip_lex_is_lws((unsigned char)s.p[i])) {
			if (s.p[i] == ',' || s.p[i] == '?')
				return EBADMSG;
			i++;
		}
		out->uri_s = sip_lex_sub(s, 0, i);
	}
	int err = sip_uri_parse(out->uri_s, &out->uri);
	if (err && err != ENOTSUP)
		return EBADMSG;
	return parse_params(s, i, out);
}
