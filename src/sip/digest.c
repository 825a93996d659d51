/* sip: Digest credentials of Authorization/Proxy-Authorization (RFC 3261 25.1, RFC 7616 3.4). */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

static size_t skip_lws(struct slice s, size_t i)
{
	while (i < s.l && sip_lex_is_lws((unsigned char)s.p[i]))
		i++;
	return i;
}

/* Where a known parameter goes; NULL for one we do not use (kept legal, ignored). */
static struct slice *slot(struct sip_digest_cred *c, struct slice name, bool *quoted_only)
{
	static const struct {
		const char *name;
		size_t off;
		bool quoted; /* RFC 7616 3.4: these are quoted-strings */
	} tab[] = {
	    {"username", offsetof(struct sip_digest_cred, username), true},
	    {"realm", offsetof(struct sip_digest_cred, realm), true},
	    {"nonce", offsetof(struct sip_digest_cred, nonce), true},
	    {"uri", offsetof(struct sip_digest_cred, uri), true},
	    {"response", offsetof(struct sip_digest_cred, response), true},
	    {"algorithm", offsetof(struct sip_digest_cred, algorithm), false},
	    {"cnonce", offsetof(struct sip_digest_cred, cnonce), true},
	    {"opaque", offsetof(struct sip_digest_cred, opaque), true},
	    {"qop", offsetof(struct sip_digest_cred, qop), false},
	    {"nc", offsetof(struct sip_digest_cred, nc), false},
	    {"userhash", offsetof(struct sip_digest_cred, userhash), false},
	    {"stale", offsetof(struct sip_digest_cred, stale), false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(tab); i++) {
		if (slice_eq_cstr_nocase(name, tab[i].name)) {
			*quoted_only = tab[i].quoted;
			return (struct slice *)(void *)((char *)c + tab[i].off);
		}
	}
	return NULL;
}

int sip_digest_parse(struct slice v, struct sip_digest_cred *out)
{
	memset(out, 0, sizeof *out);
	size_t i = skip_lws(v, 0), start = i;
	while (i < v.l && sip_lex_is_token((unsigned char)v.p[i]))
		i++;
	struct slice scheme = {v.p + start, i - start};
	if (!scheme.l)
		return EBADMSG;
	if (!slice_eq_cstr_nocase(scheme, "Digest"))
		return ENOTSUP;
	if (i == v.l || !sip_lex_is_lws((unsigned char)v.p[i]))
		return EBADMSG;
	bool first = true;
	for (;;) {
		i = skip_lws(v, i);
		if (!first) {
			if (i == v.l)
				break;
			if (v.p[i] != ',')
				return EBADMSG;
			i = skip_lws(v, i + 1);
		}
		first = false;
		start = i;
		while (i < v.l && sip_lex_is_token((unsigned char)v.p[i]))
			i++;
		struct slice name = {v.p + start, i - start};
		if (!name.l)
			return EBADMSG;
		i = skip_lws(v, i);
		if (i == v.l || v.p[i] != '=')
			return EBADMSG;
		i = skip_lws(v, i + 1);
		struct slice val;
		bool quoted = i < v.l && v.p[i] == '"';
		if (quoted) {
			start = ++i;
			for (; i < v.l && v.p[i] != '"'; i++) {
				if (v.p[i] == '\\') {
					/* quoted-pair: kept escaped in the slice; callers compare
					 * raw and our user names never need one */
					if (++i == v.l)
						return EBADMSG;
					out->escaped = true;
				}
				if ((unsigned char)v.p[i] < 0x20 &&
				    !sip_lex_is_lws((unsigned char)v.p[i]))
					return EBADMSG;
			}
			if (i == v.l)
				return EBADMSG;
			val = (struct slice){v.p + start, i - start};
			i++;
		} else {
			start = i;
			while (i < v.l && sip_lex_is_token((unsigned char)v.p[i]))
				i++;
			val = (struct slice){v.p + start, i - start};
			if (!val.l)
				return EBADMSG;
		}
		bool must_quote = false;
		struct slice *dst = slot(out, name, &must_quote);
		if (!dst)
			continue; /* auth-param extension: legal, unused */
		if (dst->p)
			return EBADMSG; /* a parameter twice: which one would we check? */
		if (must_quote && !quoted)
			return EBADMSG;
		/* qop and algorithm are tokens, yet some clients quote them; accept that */
		*dst = val; /* p is never NULL here: a parameter seen is told by p */
	}
	return 0;
}
