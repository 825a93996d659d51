/* sip: Via header value (via-parm) parsing. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Reads "token SWS / SWS" steps of sent-protocol; returns the index after the
 * token (and its slash when want_slash), or 0 when malformed. */
static size_t proto_part(struct slice s, size_t i, bool want_slash, struct slice *tok)
{
	i = sip_lex_skip_lws(s, i);
	size_t t = sip_lex_skip_token(s, i);
	if (t == i)
		return 0;
	*tok = sip_lex_sub(s, i, t);
	if (!want_slash)
		return t;
	i = sip_lex_skip_lws(s, t);
	if (i >= s.l || s.p[i] != '/')
		return 0;
	return i + 1;
}

static bool all_digits(struct slice s, size_t maxlen)
{
	if (s.l == 0 || s.l > maxlen)
		return false;
	for (size_t i = 0; i < s.l; i++)
		if (!sip_lex_is_digit((unsigned char)s.p[i]))
			return false;
	return true;
}

/* name_is(n, "lit"): the parameter name n is lit, case-insensitively */
#define name_is(n, lit) ((n).l == sizeof(lit) - 1 && strncasecmp((n).p, lit, sizeof(lit) - 1) == 0)

int sip_via_parse(struct slice s, struct sip_via *out)
{
	memset(out, 0, sizeof *out);
	s = slice_trim(s);
	out->whole = s;
	struct slice name, version;
	size_t i = proto_part(s, 0, true, &name);
	if (i)
		i = proto_part(s, i, true, &version);
	if (i)
		i = proto_part(s, i, false, &out->transport);
	if (!i)
		return EBADMSG;
	/* RFC 3261 20.42: sent-protocol LWS sent-by */
	size_t h = sip_lex_skip_lws(s, i);
	if (h == i || h >= s.l)
		return EBADMSG;
	size_t end;
	if (sip_lex_hostport(sip_lex_sub(s, h, s.l), &end, &out->host, &out->port, true))
		return EBADMSG;
	i = sip_lex_skip_lws(s, h + end);
	if (i < s.l) {
		if (s.p[i] != ';')
			return EBADMSG;
		out->params = sip_lex_sub(s, i, s.l);
	}
	/* one pass over the parameters, checking each; the first of each name
	 * counts, as sip_param_find() would find it: a field already set is
	 * not set again (every field set here points into the text) */
	size_t pos = 0;
	struct sip_param p;
	int r;
	while ((r = sip_lex_params_next(out->params, &pos, &p)) == 1) {
		uint32_t num;
		if (name_is(p.name, "rport")) {
			/* RFC 3581: empty in requests, the source port in responses */
			if (out->rport)
				continue;
			if (p.has_value &&
			    (!all_digits(p.value, 5) || slice_to_u32(p.value, 65535, &num)))
				return EBADMSG;
			out->rport = true;
			out->rport_value = p.value;
		} else if (name_is(p.name, "ttl")) {
			if (out->ttl.p)
				continue;
			if (slice_to_u32(p.value, 255, &num))
				return EBADMSG;
			out->ttl = p.value;
		} else {
			/* these three must have a value */
			struct slice *f = name_is(p.name, "branch")	? &out->branch
					  : name_is(p.name, "received") ? &out->received
					  : name_is(p.name, "maddr")	? &out->maddr
									: NULL;
			if (!f || f->p)
				continue;
			if (p.value.l == 0)
				return EBADMSG;
			*f = p.value;
		}
	}
	return r; /* 0 at the end, or EBADMSG for a malformed parameter */
}

void sip_via_sender(const struct sip_via *v, struct slice *host, uint16_t *port)
{
	*host = v->received.l ? v->received : v->host;
	uint32_t p = v->port ? v->port : 5060;
	if (v->rport_value.l)
		slice_to_u32(v->rport_value, 65535, &p);
	*port = (uint16_t)p;
}
