/* STUN MESSAGE-INTEGRITY (HMAC-SHA1/SHA256), FINGERPRINT (CRC-32) and key derivation. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "stun.h"

/* OpenSSL 3 looks an algorithm up by name (locks, string compares) on every
 * one-shot call; a TURN server makes five MACs and digests per authenticated
 * request, so the lookups are done once per process and each thread keeps
 * its own HMAC contexts, re-keyed per message (freed when the thread ends). */
static EVP_MAC *hmac_impl; /* RO after fetch_once; OpenSSL objects are thread-safe to share */
static EVP_MD *md_md5, *md_sha256;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

struct mac_ctxs {
	EVP_MAC_CTX *sha1, *sha256;
};

static void ctxs_free(void *p)
{
	struct mac_ctxs *c = p;
	EVP_MAC_CTX_free(c->sha1);
	EVP_MAC_CTX_free(c->sha256);
	free(c);
}

static void fetch_once(void)
{
	hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
	md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	pthread_key_create(&ctx_key, ctxs_free);
}

/* This thread's HMAC context for digest ("SHA1" or "SHA256"), made on first use. */
static EVP_MAC_CTX *mac_ctx(bool sha256)
{
	pthread_once(&hmac_once, fetch_once);
	if (!hmac_impl)
		return NULL;
	struct mac_ctxs *c = pthread_getspecific(ctx_key);
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c || pthread_setspecific(ctx_key, c)) {
			free(c);
			return NULL;
		}
	}
	EVP_MAC_CTX **slot = sha256 ? &c->sha256 : &c->sha1;
	if (!*slot) {
		EVP_MAC_CTX *x = EVP_MAC_CTX_new(hmac_impl);
		OSSL_PARAM params[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     sha256 ? "SHA256" : "SHA1", 0),
		    OSSL_PARAM_construct_end(),
		};
		if (!x || !EVP_MAC_CTX_set_params(x, params)) {
			EVP_MAC_CTX_free(x);
			return NULL;
		}
		*slot = x;
	}
	return *slot;
}

/* HMAC over up to three pieces with this thread's context. */
static int hmac3(bool sha256, const void *key, size_t keylen, const void *a, size_t al,
		 const void *b, size_t bl, const void *c, size_t cl, uint8_t *out, size_t outcap)
{
	EVP_MAC_CTX *ctx = mac_ctx(sha256);
	if (!ctx)
		return ENOTSUP;
	static const uint8_t empty_key[1];
	size_t outl = 0;
	int ok = EVP_MAC_init(ctx, keylen ? key : empty_key, keylen, NULL) &&
		 EVP_MAC_update(ctx, a, al) && (!bl || EVP_MAC_update(ctx, b, bl)) &&
		 (!cl || EVP_MAC_update(ctx, c, cl)) && EVP_MAC_final(ctx, out, &outl, outcap);
	return ok ? 0 : ENOTSUP;
}

int stun_hmac_sha1(const void *key, size_t keylen, const void *msg, size_t len, uint8_t out[20])
{
	return hmac3(false, key, keylen, msg, len, NULL, 0, NULL, 0, out, 20);
}

int stun_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len, uint8_t out[32])
{
	return hmac3(true, key, keylen, msg, len, NULL, 0, NULL, 0, out, 32);
}

/* RFC 8489 14.5: the MAC covers the header, with the length field set as if the
 * message ended right after the integrity attribute, and every attribute before
 * it. len_field is that length; upto is the offset of the integrity attribute. */
static int hmac(const char *digest, const void *key, size_t keylen, const uint8_t *msg, size_t upto,
		uint16_t len_field, uint8_t *out, size_t outcap)
{
	uint8_t lf[2] = {(uint8_t)(len_field >> 8), (uint8_t)len_field};
	return hmac3(strcmp(digest, "SHA256") == 0, key, keylen, msg, 2, lf, 2, msg + 4, upto - 4,
		     out, outcap);
}

static uint32_t fingerprint(const uint8_t *msg, size_t upto, uint16_t len_field)
{
	uint8_t lf[2] = {(uint8_t)(len_field >> 8), (uint8_t)len_field};
	uLong crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, msg, 2);
	crc = crc32(crc, lf, 2);
	crc = crc32(crc, msg + 4, (uInt)(upto - 4));
	return (uint32_t)crc ^ STUN_FINGERPRINT_XOR;
}

static int check_mac(const struct stun_msg *m, int idx, const char *digest, const void *key,
		     size_t keylen)
{
	if (idx < 0)
		return ENOENT;
	const struct stun_attr *a = &m->attr[idx];
	uint8_t mac[EVP_MAX_MD_SIZE];
	size_t end = a->off + 4 + a->len;
	int err = hmac(digest, key, keylen, m->p, a->off, (uint16_t)(end - STUN_HDR_LEN), mac,
		       sizeof mac);
	if (err)
		return err;
	/* constant time: the comparison must not tell an attacker how close it got */
	return CRYPTO_memcmp(mac, a->v, a->len) == 0 ? 0 : EACCES;
}

int stun_msg_check_integrity(const struct stun_msg *m, const void *key, size_t keylen)
{
	return check_mac(m, m->mi, "SHA1", key, keylen);
}

int stun_msg_check_integrity_sha256(const struct stun_msg *m, const void *key, size_t keylen)
{
	return check_mac(m, m->mi256, "SHA256", key, keylen);
}

int stun_msg_check_fingerprint(const struct stun_msg *m)
{
	if (m->fp < 0)
		return ENOENT;
	const struct stun_attr *a = &m->attr[m->fp];
	uint32_t want = fingerprint(m->p, a->off, (uint16_t)(a->off + 8 - STUN_HDR_LEN));
	uint32_t got =
	    (uint32_t)a->v[0] << 24 | (uint32_t)a->v[1] << 16 | (uint32_t)a->v[2] << 8 | a->v[3];
	return got == want ? 0 : EACCES;
}

static void enc_mac(struct stun_enc *e, uint16_t type, const char *digest, size_t maclen,
		    const void *key, size_t keylen)
{
	if (e->err)
		return;
	size_t off = e->b->len - e->start;
	/* append a zeroed attribute first: the header length then covers it */
	uint8_t zero[32] = {0};
	stun_enc_attr(e, type, zero, maclen);
	if (e->err)
		return;
	uint8_t *msg = (uint8_t *)e->b->data + e->start;
	uint8_t mac[EVP_MAX_MD_SIZE];
	int err = hmac(digest, key, keylen, msg, off, (uint16_t)(off + 4 + maclen - STUN_HDR_LEN),
		       mac, sizeof mac);
	if (err) {
		e->err = err;
		return;
	}
	memcpy(msg + off + 4, mac, maclen);
}

void stun_enc_integrity(struct stun_enc *e, const void *key, size_t keylen)
{
	enc_mac(e, STUN_ATTR_MESSAGE_INTEGRITY, "SHA1", 20, key, keylen);
}

void stun_enc_integrity_sha256(struct stun_enc *e, const void *key, size_t keylen)
{
	enc_mac(e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, "SHA256", 32, key, keylen);
}

/* RFC 8489 14.7: CRC-32 of the message up to the attribute, XOR 0x5354554e. */
void stun_enc_fingerprint(struct stun_enc *e)
{
	if (e->err)
		return;
	size_t off = e->b->len - e->start;
	stun_enc_u32(e, STUN_ATTR_FINGERPRINT, 0);
	if (e->err)
		return;
	uint8_t *msg = (uint8_t *)e->b->data + e->start;
	uint32_t crc = fingerprint(msg, off, (uint16_t)(off + 8 - STUN_HDR_LEN));
	msg[off + 4] = (uint8_t)(crc >> 24);
	msg[off + 5] = (uint8_t)(crc >> 16);
	msg[off + 6] = (uint8_t)(crc >> 8);
	msg[off + 7] = (uint8_t)crc;
}

static int digest3(const EVP_MD *md, struct slice a, struct slice b, struct slice c, uint8_t *out,
		   size_t *outlen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return ENOMEM;
	unsigned int ol = 0;
	int ok = EVP_DigestInit_ex(ctx, md, NULL) && EVP_DigestUpdate(ctx, a.p, a.l) &&
		 EVP_DigestUpdate(ctx, ":", 1) && EVP_DigestUpdate(ctx, b.p, b.l);
	if (ok && c.p)
		ok = EVP_DigestUpdate(ctx, ":", 1) && EVP_DigestUpdate(ctx, c.p, c.l);
	ok = ok && EVP_DigestFinal_ex(ctx, out, &ol);
	EVP_MD_CTX_free(ctx);
	if (outlen)
		*outlen = ol;
	return ok ? 0 : ENOTSUP;
}

/* RFC 8489 9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
 * or SHA-256 of the same with PASSWORD-ALGORITHM SHA-256. */
int stun_key_long_term(enum stun_pwalg alg, struct slice user, struct slice realm,
		       struct slice pass, uint8_t key[32], size_t *keylen)
{
	const EVP_MD *md;
	pthread_once(&hmac_once, fetch_once);
	switch (alg) {
	case STUN_PWALG_MD5:
		md = md_md5;
		break;
	case STUN_PWALG_SHA256:
		md = md_sha256;
		break;
	default:
		return ENOTSUP;
	}
	if (!md)
		return ENOTSUP;
	if (!pass.p)
		pass = SLICE_LIT("");
	return digest3(md, user, realm, pass, key, keylen);
}

void stun_userhash(struct slice user, struct slice realm, uint8_t out[32])
{
	pthread_once(&hmac_once, fetch_once);
	if (!md_sha256 || digest3(md_sha256, user, realm, SLICE_NULL, out, NULL))
		memset(out, 0, 32);
}
