/* sdp: ICE candidate lines (RFC 8839 5.1) and the credentials in force per media section. */
#include <errno.h>
#include <string.h>

#include "sdp/sdp.h"

static struct slice next_field(struct slice *s)
{
	size_t i = 0;
	while (i < s->l && s->p[i] == ' ')
		i++;
	size_t start = i;
	while (i < s->l && s->p[i] != ' ' && s->p[i] != '\t')
		i++;
	struct slice tok = {s->p + start, i - start};
	s->p += i;
	s->l -= i;
	return tok;
}

/* RFC 8839 5.1: ice-char = ALPHA / DIGIT / "+" / "/" */
static bool ice_chars(struct slice s, size_t max)
{
	if (s.l == 0 || s.l > max)
		return false;
	for (size_t i = 0; i < s.l; i++) {
		char c = s.p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '+' || c == '/'))
			return false;
	}
	return true;
}

static bool all_digits(struct slice s, size_t max)
{
	if (s.l == 0 || s.l > max)
		return false;
	for (size_t i = 0; i < s.l; i++)
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
	return true;
}

/*
 *  candidate-attribute = "candidate" ":" foundation SP component-id SP
 *                        transport SP priority SP connection-address SP
 *                        port SP cand-type [SP rel-addr] [SP rel-port]
 *                        *(SP cand-extension)
 *  cand-type           = "typ" SP candidate-types
 */
int sdp_candidate_parse(struct slice v, struct sdp_candidate *c)
{
	memset(c, 0, sizeof *c);
	struct slice rest = v, tok;
	uint32_t n;
	c->foundation = next_field(&rest);
	if (!ice_chars(c->foundation, 32))
		return EBADMSG;
	tok = next_field(&rest);
	if (!all_digits(tok, 3) || slice_to_u32(tok, 256, &n) || n == 0)
		return EBADMSG;
	c->component = n;
	c->transport = next_field(&rest);
	if (c->transport.l == 0)
		return EBADMSG;
	tok = next_field(&rest);
	/* RFC 8445 5.1.2: a positive integer between 1 and 2^31 - 1 */
	if (!all_digits(tok, 10) || slice_to_u32(tok, 0x7fffffffu, &n) || n == 0)
		return EBADMSG;
	c->priority = n;
	c->addr = next_field(&rest);
	if (c->addr.l == 0)
		return EBADMSG;
	tok = next_field(&rest);
	if (!all_digits(tok, 5) || slice_to_u32(tok, 65535, &n))
		return EBADMSG;
	c->port = (uint16_t)n;
	tok = next_field(&rest);
	if (!slice_eq_cstr_nocase(tok, "typ"))
		return EBADMSG;
	c->type = next_field(&rest);
	if (c->type.l == 0)
		return EBADMSG;
	return 0;
}

bool sdp_media_ice_creds(const struct sdp *s, size_t i, struct slice *ufrag, struct slice *pwd)
{
	if (i >= s->n_media)
		return false;
	const struct sdp_ice *m = &s->media[i].ice;
	/* RFC 8839 5.4: a media-level value overrides the session-level one */
	*ufrag = m->ufrag.l ? m->ufrag : s->ice.ufrag;
	*pwd = m->pwd.l ? m->pwd : s->ice.pwd;
	return ufrag->l && pwd->l;
}

bool sdp_media_ice_component(const struct sdp *s, size_t i, unsigned comp)
{
	if (i >= s->n_media)
		return false;
	const struct sdp_ice *ice = &s->media[i].ice;
	size_t n = MIN(ice->n_candidates, (size_t)SDP_MAX_CANDIDATES);
	for (size_t k = 0; k < n; k++) {
		struct sdp_candidate c;
		if (sdp_candidate_parse(ice->candidates[k], &c) == 0 && c.component == comp)
			return true;
	}
	return false;
}
