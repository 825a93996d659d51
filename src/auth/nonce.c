/* auth: stateless HMAC nonces (issue time, salt, source, realm) and the bounded nc replay table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth_int.h"

#define NONCE_RAW 32 /* issued 8 | salt 8 | mac 16 */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64u_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64u[v >> 18];
		out[o++] = b64u[(v >> 12) & 63];
		out[o++] = b64u[(v >> 6) & 63];
		out[o++] = b64u[v & 63];
	}
	if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64u[v >> 18];
		out[o++] = b64u[(v >> 12) & 63];
		out[o++] = b64u[(v >> 6) & 63];
	} else if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64u[v >> 18];
		out[o++] = b64u[(v >> 12) & 63];
	}
	out[o] = '\0';
}

static int b64u_val(char c)
{
	const char *p = c ? strchr(b64u, c) : NULL;
	return p ? (int)(p - b64u) : -1;
}

/* Exactly AUTH_NONCE_LEN characters into NONCE_RAW bytes: 0 or EPERM. */
static int b64u_decode(struct slice s, uint8_t *out)
{
	if (s.l != AUTH_NONCE_LEN)
		return EPERM;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < s.l; i++) {
		int v = b64u_val(s.p[i]);
		if (v < 0)
			return EPERM;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o < NONCE_RAW)
				out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the last character's spare bits must be zero: one nonce, one spelling */
	return o == NONCE_RAW && acc == 0 ? 0 : EPERM;
}

int auth_hmac_init(struct auth *a)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	a->mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA2-256", 0),
	    OSSL_PARAM_construct_end(),
	};
	if (!a->mac || !EVP_MAC_init(a->mac, a->key, AUTH_KEY_LEN, params))
		return ENOMEM;
	return 0;
}

void auth_hmac_fini(struct auth *a)
{
	EVP_MAC_CTX_free(a->mac);
}

void auth_hmac(struct auth *a, const void *p, size_t l, uint8_t *out)
{
	/* a copy of the keyed template: a third of what a one-shot HMAC() costs,
	 * which fetches the digest and keys it every time */
	EVP_MAC_CTX *c = EVP_MAC_CTX_dup(a->mac);
	size_t ol = 0;
	if (c && EVP_MAC_update(c, p, l) && EVP_MAC_final(c, out, &ol, 32) && ol == 32) {
		EVP_MAC_CTX_free(c);
		return;
	}
	EVP_MAC_CTX_free(c);
	unsigned ml = 0;
	HMAC(EVP_sha256(), a->key, AUTH_KEY_LEN, p, l, out, &ml);
}

/* The MAC binds the nonce to the source it was sent to (auth.h): only who
 * receives there can answer it, so a counted failure or a verified REGISTER
 * says something about the source, not just about the password. */
static void nonce_mac(struct auth *a, const uint8_t *head, const struct net_addr *src,
		      const char *realm, uint8_t *mac16)
{
	uint8_t buf[16 + 16 + STORE_CRED_REALM_MAX];
	size_t rl = strnlen(realm, STORE_CRED_REALM_MAX);
	struct net_src_key sk;
	net_addr_src_key(src, &sk);
	memcpy(buf, head, 16);
	for (int i = 0; i < 8; i++) {
		buf[16 + i] = (uint8_t)(sk.hi >> (56 - 8 * i));
		buf[24 + i] = (uint8_t)(sk.lo >> (56 - 8 * i));
	}
	/* the realm lowercased: it is compared case-insensitively everywhere else */
	for (size_t i = 0; i < rl; i++)
		buf[32 + i] =
		    (uint8_t)((realm[i] >= 'A' && realm[i] <= 'Z') ? realm[i] | 0x20 : realm[i]);
	uint8_t md[32];
	auth_hmac(a, buf, 32 + rl, md);
	memcpy(mac16, md, 16);
}

void auth_nonce_make(struct auth *a, const char *realm, const struct net_addr *src, int64_t now,
		     char *out)
{
	uint8_t raw[NONCE_RAW];
	uint64_t t = (uint64_t)now;
	for (int i = 0; i < 8; i++)
		raw[i] = (uint8_t)(t >> (56 - 8 * i));
	rand_bytes(raw + 8, 8);
	nonce_mac(a, raw, src, realm, raw + 16);
	b64u_encode(raw, NONCE_RAW, out);
}

int auth_nonce_check(struct auth *a, const char *realm, const struct net_addr *src,
		     struct slice nonce, int64_t now, int64_t *issued)
{
	uint8_t raw[NONCE_RAW], mac[16];
	if (b64u_decode(nonce, raw))
		return EPERM;
	nonce_mac(a, raw, src, realm, mac);
	if (CRYPTO_memcmp(mac, raw + 16, 16) != 0)
		return EPERM;
	uint64_t t = 0;
	for (int i = 0; i < 8; i++)
		t = t << 8 | raw[i];
	*issued = (int64_t)t;
	if (*issued > now + 5)
		return EPERM; /* from the future: a key shared with a host whose clock is off */
	return now - *issued > a->nonce_lifetime ? ETIMEDOUT : 0;
}

/* ---- nc table ---- */

int auth_nc_init(struct auth *a, size_t cap)
{
	a->nc_cap = cap;
	a->nc_hash_size = 1;
	while (a->nc_hash_size < cap * 2)
		a->nc_hash_size <<= 1;
	a->nc = calloc(cap, sizeof *a->nc);
	a->nc_hash = malloc(a->nc_hash_size * sizeof *a->nc_hash);
	if (!a->nc || !a->nc_hash)
		return ENOMEM;
	for (size_t i = 0; i < a->nc_hash_size; i++)
		a->nc_hash[i] = -1;
	pthread_mutex_init(&a->nc_lock, NULL);
	return 0;
}

void auth_nc_fini(struct auth *a)
{
	if (a->nc)
		pthread_mutex_destroy(&a->nc_lock);
	free(a->nc);
	free(a->nc_hash);
}

static size_t nc_bucket(const struct auth *a, const uint8_t *id)
{
	/* the id holds 8 random bytes: no keyed hash needed to spread it */
	uint64_t h;
	memcpy(&h, id + 8, 8);
	return (size_t)(h & (a->nc_hash_size - 1));
}

static void nc_unlink(struct auth *a, int32_t idx)
{
	int32_t *pp = &a->nc_hash[nc_bucket(a, a->nc[idx].id)];
	while (*pp != -1 && *pp != idx)
		pp = &a->nc[*pp].next;
	if (*pp == idx)
		*pp = a->nc[idx].next;
	a->nc[idx].used = false;
}

int auth_nc_use(struct auth *a, struct slice nonce, int64_t issued, uint32_t nc, int64_t now)
{
	uint8_t raw[NONCE_RAW];
	if (b64u_decode(nonce, raw))
		return EALREADY;
	int err = 0;
	pthread_mutex_lock(&a->nc_lock);
	size_t b = nc_bucket(a, raw);
	int32_t i = a->nc_hash[b];
	while (i != -1 && memcmp(a->nc[i].id, raw, 16) != 0)
		i = a->nc[i].next;
	if (i != -1) {
		if (nc > a->nc[i].nc)
			a->nc[i].nc = nc;
		else
			err = EALREADY;
		goto out;
	}
	if (issued <= a->nc_horizon) {
		err = ESTALE; /* perhaps one that gave way: make the phone take a fresh one */
		goto out;
	}
	/* a ring in first-use order: the oldest gives way; only a live one moves
	 * the horizon (an expired nonce is refused as stale anyway) */
	int32_t slot = (int32_t)((a->nc_head + a->nc_count) % a->nc_cap);
	if (a->nc_count == a->nc_cap) {
		slot = (int32_t)a->nc_head;
		struct nc_entry *old = &a->nc[slot];
		if (now - old->issued <= a->nonce_lifetime) {
			if (old->issued > a->nc_horizon)
				a->nc_horizon = old->issued;
			metric_inc(&auth_m_nc_evicted);
		}
		nc_unlink(a, slot);
		a->nc_head = (a->nc_head + 1) % a->nc_cap;
		a->nc_count--;
	}
	struct nc_entry *e = &a->nc[slot];
	memcpy(e->id, raw, 16);
	e->issued = issued;
	e->nc = nc;
	e->used = true;
	e->next = a->nc_hash[b];
	a->nc_hash[b] = slot;
	a->nc_count++;
out:
	pthread_mutex_unlock(&a->nc_lock);
	return err;
}
