/* ua: the client's half of digest: choosing a challenge and answering it (RFC 7616, RFC 8760). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "ua/ua.h"

/* Higher is better: RFC 8760 2.4 leaves the choice to the client, and the
 * SHA-2 family is the reason RFC 8760 exists. */
static int alg_rank(int alg)
{
	switch (alg) {
	case STORE_CRED_SHA512_256:
		return 3;
	case STORE_CRED_SHA256:
		return 2;
	case STORE_CRED_MD5:
		return 1;
	default:
		return 0;
	}
}

/* qop is a quoted list in a challenge: "auth,auth-int". */
static bool lists_auth(struct slice qop)
{
	struct slice rest = qop, item;
	while (slice_next_item(&rest, ',', &item))
		if (slice_eq_cstr_nocase(item, "auth"))
			return true;
	return false;
}

int ua_challenge_pick(const struct sip_msg *resp, bool proxy, struct ua_challenge *out)
{
	enum sip_hdr_id id = proxy ? SIP_HDR_PROXY_AUTHENTICATE : SIP_HDR_WWW_AUTHENTICATE;
	const struct sip_hdr *h = sip_msg_hdr(resp, id, 0);
	if (!h)
		return ENOENT;
	int best = 0;
	for (size_t i = 0; (h = sip_msg_hdr(resp, id, i)) != NULL; i++) {
		struct sip_digest_cred c;
		if (sip_digest_parse(h->value, &c))
			continue; /* another scheme, or malformed: look at the next */
		enum store_cred_alg alg;
		if (!c.realm.p || !c.nonce.p || auth_alg_parse(c.algorithm, &alg))
			continue; /* -sess and unknown algorithms need what we do not do */
		bool qop = c.qop.p != NULL;
		bool auth = qop && lists_auth(c.qop);
		if (qop && !auth)
			continue; /* auth-int only: we would have to hash a body */
		/* qop=auth beats none at the same algorithm (nc/cnonce protect
		 * the answer from replay) */
		int rank = alg_rank(alg) * 2 + (auth ? 1 : 0);
		if (rank <= best)
			continue;
		best = rank;
		*out = (struct ua_challenge){
		    .alg = alg,
		    .realm = c.realm,
		    .nonce = c.nonce,
		    .opaque = c.opaque,
		    .qop_auth = auth,
		    .stale = c.stale.p && slice_eq_cstr_nocase(c.stale, "true"),
		};
	}
	return best ? 0 : ENOTSUP;
}

/* A quoted-string value without escapes: user names, URIs and server
 * nonces with a quote or backslash in them are refused, not escaped (the
 * server would have to unescape them the same way to compute the same hash). */
static bool quotable(struct slice s)
{
	for (size_t i = 0; i < s.l; i++)
		if (s.p[i] == '"' || s.p[i] == '\\' || (unsigned char)s.p[i] < 0x20)
			return false;
	return true;
}

int ua_digest_credentials(const struct ua_challenge *ch, const char *user, const char *password,
			  const char *method, const char *uri, uint32_t nc, const char *cnonce,
			  struct buf *out)
{
	enum store_cred_alg alg = (enum store_cred_alg)ch->alg;
	if (!quotable(slice_cstr(user)) || !quotable(slice_cstr(uri)) || !quotable(ch->realm) ||
	    !quotable(ch->nonce) || !quotable(ch->opaque))
		return EINVAL;
	char ha1[STORE_CRED_HA1_MAX], resp[STORE_CRED_HA1_MAX], cn[33], ncs[9];
	int err = auth_ha1(alg, slice_cstr(user), ch->realm, slice_cstr(password), ha1);
	if (err)
		return err;
	if (!cnonce) {
		/* RFC 7616 3.4: an opaque client nonce; 128 random bits in hex */
		static const char hx[] = "0123456789abcdef";
		uint8_t r[16];
		rand_bytes(r, sizeof r);
		for (size_t i = 0; i < sizeof r; i++) {
			cn[2 * i] = hx[r[i] >> 4];
			cn[2 * i + 1] = hx[r[i] & 15];
		}
		cn[32] = '\0';
		cnonce = cn;
	}
	snprintf(ncs, sizeof ncs, "%08x", nc);
	if (ch->qop_auth) {
		err = auth_response(alg, ha1, ch->nonce, slice_cstr(ncs), slice_cstr(cnonce),
				    SLICE_LIT("auth"), slice_cstr(method), slice_cstr(uri), resp);
	} else {
		/* RFC 2069 compatibility (RFC 7616 3.4.1 without qop):
		 * H(HA1 ":" nonce ":" H(method ":" uri)) */
		char ha2[STORE_CRED_HA1_MAX], in[STORE_CRED_HA1_MAX * 2 + 512];
		int n = snprintf(in, sizeof in, "%s:%s", method, uri);
		if (n < 0 || (size_t)n >= sizeof in)
			return ENAMETOOLONG;
		err = auth_hash_hex(alg, in, (size_t)n, ha2);
		if (err)
			return err;
		n = snprintf(in, sizeof in, "%s:%.*s:%s", ha1, (int)ch->nonce.l, ch->nonce.p, ha2);
		if (n < 0 || (size_t)n >= sizeof in)
			return ENAMETOOLONG;
		err = auth_hash_hex(alg, in, (size_t)n, resp);
	}
	if (err)
		return err;
	buf_printf(out,
		   "Digest username=\"%s\", realm=\"%.*s\", nonce=\"%.*s\", uri=\"%s\", "
		   "response=\"%s\", algorithm=%s",
		   user, (int)ch->realm.l, ch->realm.p, (int)ch->nonce.l, ch->nonce.p, uri, resp,
		   auth_alg_name(alg));
	if (ch->opaque.p)
		buf_printf(out, ", opaque=\"%.*s\"", (int)ch->opaque.l, ch->opaque.p);
	if (ch->qop_auth)
		buf_printf(out, ", qop=auth, nc=%s, cnonce=\"%s\"", ncs, cnonce);
	return out->failed ? ENOMEM : 0;
}
