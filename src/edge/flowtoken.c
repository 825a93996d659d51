/* Flow tokens: a flow packed into a URI user part and authenticated with HMAC (RFC 5626 5.2). */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

#define TOKEN_RAW 39
#define TOKEN_MAC EDGE_MAC_LEN
_Static_assert(sizeof((struct edge_mac_memo *)0)->mac == TOKEN_MAC, "memo holds a MAC");
#define TOKEN_VERSION 2
#define TOKEN_DATA 29 /* what the MAC covers */

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void edge_b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = b64url[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[o++] = b64url[(acc << (6 - bits)) & 63];
	out[o] = '\0';
}

/* the inverse of b64url[], -1 for other bytes: a token is decoded for every
 * in-dialog request, and a strchr per character was most of that */
static int8_t b64url_inv[256];

__attribute__((constructor)) static void b64url_inv_init(void)
{
	memset(b64url_inv, -1, sizeof b64url_inv);
	for (int i = 0; i < 64; i++)
		b64url_inv[(unsigned char)b64url[i]] = (int8_t)i;
}

static int b64url_decode(struct slice in, unsigned char *out, size_t cap, size_t *n)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < in.l; i++) {
		int v = b64url_inv[(unsigned char)in.p[i]];
		if (v < 0)
			return EBADMSG;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return EBADMSG;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*n = o;
	return 0;
}

int edge_mac_init(struct edge *e)
{
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!m)
		return ENOMEM;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0),
	    OSSL_PARAM_construct_end(),
	};
	e->mac = EVP_MAC_CTX_new(m);
	EVP_MAC_free(m); /* the context holds its own reference */
	if (!e->mac || !EVP_MAC_init(e->mac, e->flow_key, sizeof e->flow_key, params))
		return ENOMEM;
	/* the key's id: a MAC of a fixed string, so it says nothing of the key */
	static const char label[] = "pinhole flow-token key id";
	unsigned char id[EVP_MAX_MD_SIZE];
	size_t idlen = 0;
	EVP_MAC_CTX *c = EVP_MAC_CTX_dup(e->mac);
	bool ok = c && EVP_MAC_update(c, (const unsigned char *)label, sizeof label - 1) &&
		  EVP_MAC_final(c, id, &idlen, sizeof id) && idlen;
	EVP_MAC_CTX_free(c);
	if (!ok)
		return ENOMEM;
	e->token_key_id = id[0];
	do
		rand_bytes(e->token_boot, sizeof e->token_boot);
	while (!e->token_boot[0] && !e->token_boot[1] && !e->token_boot[2]);
	for (unsigned i = 0; i < e->n_wk; i++) {
		e->wk[i].mac = EVP_MAC_CTX_dup(e->mac);
		e->wk[i].mac_memo = calloc(EDGE_MAC_MEMO, sizeof *e->wk[i].mac_memo);
		if (!e->wk[i].mac || !e->wk[i].mac_memo)
			return ENOMEM;
	}
	return 0;
}

void edge_mac_free(struct edge *e)
{
	for (unsigned i = 0; e->wk && i < e->n_wk; i++) {
		EVP_MAC_CTX_free(e->wk[i].mac);
		e->wk[i].mac = NULL;
		free(e->wk[i].mac_memo);
		e->wk[i].mac_memo = NULL;
	}
	EVP_MAC_CTX_free(e->mac);
	e->mac = NULL;
}

/* HMAC-SHA1 over p (a token's 29 bytes, or what stateless.c signs),
 * truncated. On one of the edge's workers from its memo of recent MACs
 * (29-byte inputs), else with the worker's keyed context restarted
 * with its key; elsewhere with a copy of the edge's template. A memo entry
 * holds a MAC this process computed with its key, so a token that matches
 * it is as authentic as one checked afresh (the caller still compares in
 * constant time). */
void edge_mac(const struct edge *e, const unsigned char *p, size_t n,
	      unsigned char out[EDGE_MAC_LEN])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	size_t len = 0;
	struct worker *w = worker_current();
	unsigned id = w ? worker_id(w) : 0;
	struct edge_wk *wk = w && id < e->n_wk && e->wk[id].w == w ? &e->wk[id] : NULL;
	struct edge_mac_memo *memo = NULL;
	if (wk && n == sizeof memo->in) {
		memo = &wk->mac_memo[hash_bytes(p, n) % EDGE_MAC_MEMO];
		if (memo->used && memcmp(memo->in, p, n) == 0) {
			memcpy(out, memo->mac, TOKEN_MAC);
			return;
		}
	}
	EVP_MAC_CTX *c = wk ? wk->mac : NULL;
	EVP_MAC_CTX *own = NULL;
	bool ok;
	if (c) {
		ok = EVP_MAC_init(c, NULL, 0, NULL); /* NULL key: the one set at alloc */
	} else {
		own = c = EVP_MAC_CTX_dup(e->mac);
		ok = c != NULL;
	}
	ok = ok && EVP_MAC_update(c, p, n) && EVP_MAC_final(c, full, &len, sizeof full) &&
	     len >= TOKEN_MAC;
	EVP_MAC_CTX_free(own);
	if (!ok) {
		/* no MAC (out of memory): a token no one can forge or verify */
		rand_bytes(out, TOKEN_MAC);
		return;
	}
	memcpy(out, full, TOKEN_MAC);
	if (memo) {
		memcpy(memo->in, p, n);
		memcpy(memo->mac, full, TOKEN_MAC);
		memo->used = true;
	}
}

void edge_flow_token_encode(const struct edge *e, const struct flow *f,
			    char out[FLOW_TOKEN_LEN + 1])
{
	unsigned char raw[TOKEN_RAW] = {0};
	bool v6 = net_addr_family(&f->remote) == AF_INET6;
	raw[0] = (unsigned char)(TOKEN_VERSION << 4 | (v6 ? 8 : 0) | (f->tp & 7));
	bool hop = f->may_connect && f->tp != NET_UDP && !f->conn_id;
	raw[1] = (unsigned char)((f->listener & 0x7f) | (hop ? 0x80 : 0));
	raw[2] = e->token_key_id;
	if (f->tp != NET_UDP && !hop) /* connection ids are this run's */
		memcpy(raw + 3, e->token_boot, 3);
	for (int i = 0; i < 5; i++)
		raw[6 + i] = (unsigned char)(f->conn_id >> (32 - 8 * i));
	if (v6)
		memcpy(raw + 11, &f->remote.u.in6.sin6_addr, 16);
	else
		memcpy(raw + 11, &f->remote.u.in.sin_addr, 4);
	uint16_t port = net_addr_port(&f->remote);
	raw[27] = (unsigned char)(port >> 8);
	raw[28] = (unsigned char)port;
	edge_mac(e, raw, TOKEN_DATA, raw + TOKEN_DATA);
	edge_b64url_encode(raw, TOKEN_RAW, out);
}

int edge_flow_token_decode(const struct edge *e, struct slice token, struct flow *out)
{
	unsigned char raw[TOKEN_RAW + 1];
	size_t n;
	if (token.l != FLOW_TOKEN_LEN || b64url_decode(token, raw, sizeof raw, &n) ||
	    n != TOKEN_RAW)
		return EBADMSG;
	if (raw[0] >> 4 != TOKEN_VERSION)
		return raw[0] >> 4 == 1 ? ESTALE : EBADMSG; /* the format before epochs */
	unsigned char expect[TOKEN_MAC];
	edge_mac(e, raw, TOKEN_DATA, expect);
	bool authentic = CRYPTO_memcmp(expect, raw + TOKEN_DATA, TOKEN_MAC) == 0;
	enum net_transport tp = (enum net_transport)(raw[0] & 7);
	/* another key's: stale, not forged (its MAC cannot be checked). One
	 * forged token in 256 names our key id and fails as EPERM below. */
	if (!authentic && raw[2] != e->token_key_id)
		return ESTALE;
	if (!authentic)
		return EPERM;
	/* ours, but naming a connection of an earlier run (a fixed flow_key); a
	 * next hop by address is no run's */
	static const unsigned char none[3];
	bool hop = raw[1] & 0x80;
	if (memcmp(raw + 3, tp != NET_UDP && !hop ? e->token_boot : none, 3) != 0)
		return ESTALE;
	unsigned listener = raw[1] & 0x7f;
	if (listener >= net_listener_count(e->net))
		return EBADMSG;
	memset(out, 0, sizeof *out);
	out->tp = tp;
	out->listener = (uint16_t)listener;
	out->may_connect = hop;
	for (int i = 0; i < 5; i++)
		out->conn_id = out->conn_id << 8 | raw[6 + i];
	if (hop && (tp == NET_UDP || out->conn_id))
		return EBADMSG; /* we never make one */
	uint16_t port = (uint16_t)(raw[27] << 8 | raw[28]);
	if (raw[0] & 8) {
		out->remote.u.in6.sin6_family = AF_INET6;
		memcpy(&out->remote.u.in6.sin6_addr, raw + 11, 16);
	} else {
		out->remote.u.in.sin_family = AF_INET;
		memcpy(&out->remote.u.in.sin_addr, raw + 11, 4);
	}
	net_addr_set_port(&out->remote, port);
	out->local = *net_listener_addr(e->net, listener);
	return 0;
}

void edge_new_branch(char out[32])
{
	unsigned char r[16];
	rand_bytes(r, sizeof r);
	memcpy(out, SIP_BRANCH_MAGIC, 7);
	edge_b64url_encode(r, 16, out + 7); /* 22 chars */
}

void edge_new_tag(char out[24])
{
	unsigned char r[12];
	rand_bytes(r, sizeof r);
	edge_b64url_encode(r, sizeof r, out); /* 16 chars */
}
