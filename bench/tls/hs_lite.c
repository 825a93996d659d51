/* A TLS 1.3 client that costs less than the server it loads, for tls_bench's "hsl" mode: a full
 * handshake as the server sees it (a fresh ClientHello, an X25519 key share, the server's
 * certificate, signature and Finished, our Finished, tickets after), without what makes
 * OpenSSL's own client dearer than the server: no certificate parsing, no signature check
 * (the server's Finished MAC is checked), one X25519 key of ours for every connection (the
 * server still makes its own per handshake), hashes and HMAC with the low-level SHA functions
 * instead of OpenSSL 3's fetched EVP objects. A benchmark tool, not a TLS client to trust.
 * Suites TLS_AES_256_GCM_SHA384 and TLS_AES_128_GCM_SHA256, offered in OpenSSL's client
 * order (AES-256 first): the server's preference decides, as with OpenSSL's client. */
#define _GNU_SOURCE /* memmem */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co.: no fetch per use */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hs_lite.h"

#define REC_MAX (16384 + 256 + 5)

struct hash {
	bool sha384;
	union {
		SHA256_CTX s256;
		SHA512_CTX s512;
	} u;
};

struct lite {
	enum { L_START, L_SH, L_ENC, L_PONG } st;
	uint8_t in[2 * REC_MAX];
	size_t inlen;
	uint8_t hs[65536]; /* decrypted handshake bytes not yet taken as messages */
	size_t hslen;
	struct hash tr; /* the transcript */
	bool sha384;
	size_t hl, kl; /* hash and key lengths */
	uint8_t hs_secret[48], s_hs[48], c_hs[48], s_ap[48], c_ap[48];
	uint8_t key[32], iv[12]; /* the server's current read key */
	uint64_t seq;
	uint8_t ch[512];
	size_t chlen;
};

static EVP_PKEY *our_key;
static EVP_PKEY_CTX *derive_ctx;
static uint8_t our_pub[32];
static EVP_CIPHER_CTX *aead;
static uint8_t empty256[32], empty384[48]; /* H("") */

static void h_init(struct hash *h, bool sha384)
{
	h->sha384 = sha384;
	if (sha384)
		SHA384_Init(&h->u.s512);
	else
		SHA256_Init(&h->u.s256);
}

static void h_update(struct hash *h, const void *p, size_t n)
{
	if (h->sha384)
		SHA384_Update(&h->u.s512, p, n);
	else
		SHA256_Update(&h->u.s256, p, n);
}

/* The hash so far, h left as it was. */
static void h_peek(const struct hash *h, uint8_t *out)
{
	struct hash c = *h;
	if (c.sha384)
		SHA384_Final(out, &c.u.s512);
	else
		SHA256_Final(out, &c.u.s256);
}

static void hmac(bool sha384, const uint8_t *key, size_t kl, const uint8_t *d1, size_t n1,
		 const uint8_t *d2, size_t n2, uint8_t *out)
{
	size_t block = sha384 ? 128 : 64, hl = sha384 ? 48 : 32;
	uint8_t k[128] = {0}, pad[128], inner[48];
	memcpy(k, key, kl); /* keys here are never longer than a block */
	struct hash h;
	for (size_t i = 0; i < block; i++)
		pad[i] = k[i] ^ 0x36;
	h_init(&h, sha384);
	h_update(&h, pad, block);
	h_update(&h, d1, n1);
	if (n2)
		h_update(&h, d2, n2);
	h_peek(&h, inner);
	for (size_t i = 0; i < block; i++)
		pad[i] = k[i] ^ 0x5c;
	h_init(&h, sha384);
	h_update(&h, pad, block);
	h_update(&h, inner, hl);
	h_peek(&h, out);
}

/* RFC 8446 7.1: HKDF-Expand-Label; out_len at most one hash long (all uses here). */
static void expand_label(bool sha384, const uint8_t *secret, const char *label,
			 const uint8_t *ctx, size_t cl, uint8_t *out, size_t out_len)
{
	size_t hl = sha384 ? 48 : 32, ll = strlen(label);
	uint8_t info[2 + 1 + 6 + 32 + 1 + 48 + 1], t[48];
	size_t n = 0;
	info[n++] = (uint8_t)(out_len >> 8);
	info[n++] = (uint8_t)out_len;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = (uint8_t)cl;
	memcpy(info + n, ctx, cl);
	n += cl;
	info[n++] = 1; /* T(1) */
	hmac(sha384, secret, hl, info, n, NULL, 0, t);
	memcpy(out, t, out_len);
}

int lite_init(void)
{
	our_key = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	size_t pl = sizeof our_pub;
	if (!our_key || EVP_PKEY_get_raw_public_key(our_key, our_pub, &pl) != 1)
		return -1;
	derive_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, our_key, NULL);
	aead = EVP_CIPHER_CTX_new();
	if (!derive_ctx || EVP_PKEY_derive_init(derive_ctx) != 1 || !aead)
		return -1;
	SHA256((const uint8_t *)"", 0, empty256);
	SHA384((const uint8_t *)"", 0, empty384);
	return 0;
}

struct lite *lite_new(void)
{
	return calloc(1, sizeof(struct lite));
}

void lite_reset(struct lite *l)
{
	l->st = L_START;
	l->inlen = l->hslen = 0;
}

/* The ClientHello, in its record. */
static void client_hello(struct lite *l)
{
	uint8_t *p = l->ch;
	size_t n = 0;
	static const uint8_t head[] = {0x16, 0x03, 0x01, 0, 0, 0x01, 0, 0, 0, 0x03, 0x03};
	memcpy(p, head, sizeof head);
	n = sizeof head;
	RAND_bytes(p + n, 32);
	n += 32;
	static const uint8_t rest[] = {
	    0x00,				     /* no legacy session id: no CCS */
	    0x00, 0x04, 0x13, 0x02, 0x13, 0x01,	     /* AES-256-GCM, AES-128-GCM */
	    0x01, 0x00,				     /* no compression */
	    0x00, 0x00,				     /* extensions' length, below */
	    0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04, /* supported_versions: 1.3 */
	    0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, /* supported_groups: x25519 */
	    0x00, 0x0d, 0x00, 0x0c, 0x00, 0x0a, 0x04, 0x03, 0x05, 0x03, 0x08, 0x04, 0x08, 0x05,
	    0x08, 0x06,				     /* signature_algorithms */
	    0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,	     /* psk_key_exchange_modes: psk_dhe_ke */
	    0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, /* key_share: x25519 */
	};
	memcpy(p + n, rest, sizeof rest);
	size_t ext_at = n + 9;
	n += sizeof rest;
	memcpy(p + n, our_pub, 32);
	n += 32;
	size_t ext_len = n - ext_at - 2, body = n - 9, rec = n - 5;
	p[ext_at] = (uint8_t)(ext_len >> 8), p[ext_at + 1] = (uint8_t)ext_len;
	p[6] = (uint8_t)(body >> 16), p[7] = (uint8_t)(body >> 8), p[8] = (uint8_t)body;
	p[3] = (uint8_t)(rec >> 8), p[4] = (uint8_t)rec;
	l->chlen = n;
}

static void set_read_key(struct lite *l, const uint8_t *secret)
{
	expand_label(l->sha384, secret, "key", NULL, 0, l->key, l->kl);
	expand_label(l->sha384, secret, "iv", NULL, 0, l->iv, 12);
	l->seq = 0;
}

/* AES-GCM of one record with the key derived from secret at seq; the
 * plaintext (content then its type) into out. Returns its length, -1. */
static ssize_t seal_or_open(bool seal, bool sha384, size_t kl, const uint8_t *key,
			    const uint8_t *iv, uint64_t seq, const uint8_t *hdr, const uint8_t *in,
			    size_t n, uint8_t *out)
{
	uint8_t nonce[12];
	memcpy(nonce, iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(seq >> (8 * i));
	const EVP_CIPHER *c = kl == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
	(void)sha384;
	int ol = 0, fl = 0;
	if (seal) {
		if (EVP_EncryptInit_ex(aead, c, NULL, key, nonce) != 1 ||
		    EVP_EncryptUpdate(aead, NULL, &ol, hdr, 5) != 1 ||
		    EVP_EncryptUpdate(aead, out, &ol, in, (int)n) != 1 ||
		    EVP_EncryptFinal_ex(aead, out + ol, &fl) != 1 ||
		    EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_GCM_GET_TAG, 16, out + n) != 1)
			return -1;
		return (ssize_t)n + 16;
	}
	if (n < 17)
		return -1;
	if (EVP_DecryptInit_ex(aead, c, NULL, key, nonce) != 1 ||
	    EVP_DecryptUpdate(aead, NULL, &ol, hdr, 5) != 1 ||
	    EVP_DecryptUpdate(aead, out, &ol, in, (int)n - 16) != 1 ||
	    EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + n - 16)) != 1 ||
	    EVP_DecryptFinal_ex(aead, out + ol, &fl) != 1)
		return -1;
	return (ssize_t)n - 16;
}

/* One record of inner type type, sealed with secret's key at seq 0, sent. */
static int send_sealed(struct lite *l, int fd, const uint8_t *secret, uint8_t type,
		       const void *p, size_t n, uint8_t *buf, size_t *at)
{
	uint8_t key[32], iv[12], plain[128];
	expand_label(l->sha384, secret, "key", NULL, 0, key, l->kl);
	expand_label(l->sha384, secret, "iv", NULL, 0, iv, 12);
	memcpy(plain, p, n);
	plain[n] = type;
	size_t len = n + 1 + 16;
	uint8_t *hdr = buf + *at;
	hdr[0] = 23, hdr[1] = 3, hdr[2] = 3, hdr[3] = (uint8_t)(len >> 8), hdr[4] = (uint8_t)len;
	if (seal_or_open(true, l->sha384, l->kl, key, iv, 0, hdr, plain, n + 1, hdr + 5) < 0)
		return -1;
	*at += 5 + len;
	(void)fd;
	return 0;
}

static int on_server_hello(struct lite *l, const uint8_t *m, size_t n)
{
	static const uint8_t hrr[32] = {0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11,
					0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
					0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
					0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};
	if (n < 4 + 2 + 32 + 1 || m[0] != 2 || !memcmp(m + 6, hrr, 32))
		return -1;
	size_t at = 4 + 2 + 32;
	at += 1 + m[at]; /* session id */
	if (at + 5 > n)
		return -1;
	unsigned suite = (unsigned)m[at] << 8 | m[at + 1];
	if (suite != 0x1301 && suite != 0x1302)
		return -1;
	l->sha384 = suite == 0x1302;
	l->hl = l->sha384 ? 48 : 32;
	l->kl = l->sha384 ? 32 : 16;
	at += 3;
	size_t end = at + 2 + ((size_t)m[at] << 8 | m[at + 1]);
	const uint8_t *share = NULL;
	for (at += 2; at + 4 <= end && end <= n;) {
		unsigned type = (unsigned)m[at] << 8 | m[at + 1];
		size_t len = (size_t)m[at + 2] << 8 | m[at + 3];
		if (type == 0x0033 && len == 36 && m[at + 4] == 0 && m[at + 5] == 0x1d)
			share = m + at + 8;
		at += 4 + len;
	}
	if (!share)
		return -1;
	/* the transcript: ClientHello (without its record header), ServerHello */
	h_init(&l->tr, l->sha384);
	h_update(&l->tr, l->ch + 5, l->chlen - 5);
	h_update(&l->tr, m, n);
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, share, 32);
	uint8_t shared[32];
	size_t sl = sizeof shared;
	int ok = peer && EVP_PKEY_derive_set_peer(derive_ctx, peer) == 1 &&
		 EVP_PKEY_derive(derive_ctx, shared, &sl) == 1;
	EVP_PKEY_free(peer);
	if (!ok)
		return -1;
	/* RFC 8446 7.1 */
	uint8_t zeros[48] = {0}, early[48], derived[48], th[48];
	const uint8_t *empty = l->sha384 ? empty384 : empty256;
	hmac(l->sha384, zeros, l->hl, zeros, l->hl, NULL, 0, early);
	expand_label(l->sha384, early, "derived", empty, l->hl, derived, l->hl);
	hmac(l->sha384, derived, l->hl, shared, sl, NULL, 0, l->hs_secret);
	h_peek(&l->tr, th);
	expand_label(l->sha384, l->hs_secret, "c hs traffic", th, l->hl, l->c_hs, l->hl);
	expand_label(l->sha384, l->hs_secret, "s hs traffic", th, l->hl, l->s_hs, l->hl);
	set_read_key(l, l->s_hs);
	return 0;
}

/* The server's encrypted handshake messages; on its Finished, ours and the
 * first application data (a CRLF keepalive) go out. */
static int on_handshake(struct lite *l, int fd)
{
	size_t at = 0;
	while (at + 4 <= l->hslen) {
		const uint8_t *m = l->hs + at;
		size_t len = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
		if (at + 4 + len > l->hslen)
			break;
		if (m[0] == 13) /* CertificateRequest: not for this client */
			return -1;
		if (m[0] == 20) {
			uint8_t th[48], fk[48], want[48];
			h_peek(&l->tr, th);
			expand_label(l->sha384, l->s_hs, "finished", NULL, 0, fk, l->hl);
			hmac(l->sha384, fk, l->hl, th, l->hl, NULL, 0, want);
			if (len != l->hl || memcmp(want, m + 4, l->hl))
				return -1;
			h_update(&l->tr, m, 4 + len);
			h_peek(&l->tr, th);
			uint8_t zeros[48] = {0}, derived[48], master[48];
			const uint8_t *empty = l->sha384 ? empty384 : empty256;
			expand_label(l->sha384, l->hs_secret, "derived", empty, l->hl, derived, l->hl);
			hmac(l->sha384, derived, l->hl, zeros, l->hl, NULL, 0, master);
			expand_label(l->sha384, master, "c ap traffic", th, l->hl, l->c_ap, l->hl);
			expand_label(l->sha384, master, "s ap traffic", th, l->hl, l->s_ap, l->hl);
			/* our Finished over the transcript through the server's */
			uint8_t fin[4 + 48];
			expand_label(l->sha384, l->c_hs, "finished", NULL, 0, fk, l->hl);
			fin[0] = 20, fin[1] = 0, fin[2] = 0, fin[3] = (uint8_t)l->hl;
			hmac(l->sha384, fk, l->hl, th, l->hl, NULL, 0, fin + 4);
			uint8_t out[256];
			size_t n = 0;
			if (send_sealed(l, fd, l->c_hs, 22, fin, 4 + l->hl, out, &n) ||
			    send_sealed(l, fd, l->c_ap, 23, "\r\n\r\n", 4, out, &n))
				return -1;
			if (send(fd, out, n, MSG_NOSIGNAL) != (ssize_t)n)
				return -1;
			set_read_key(l, l->s_ap);
			l->st = L_PONG;
			l->hslen = 0;
			return 0;
		}
		h_update(&l->tr, m, 4 + len);
		at += 4 + len;
	}
	memmove(l->hs, l->hs + at, l->hslen - at);
	l->hslen -= at;
	return 0;
}

/* One record: 1 when the pong came, 0 to go on, -1 on failure. */
static int on_record(struct lite *l, int fd, const uint8_t *r, size_t n)
{
	uint8_t type = r[0];
	if (type == 21)
		return -1; /* an alert: refused */
	if (type == 20)
		return 0; /* change_cipher_spec: compatibility noise */
	if (l->st == L_SH) {
		if (type != 22 || on_server_hello(l, r + 5, n - 5))
			return -1;
		l->st = L_ENC;
		return 0;
	}
	if (type != 23)
		return -1;
	static uint8_t plain[REC_MAX];
	ssize_t k = seal_or_open(false, l->sha384, l->kl, l->key, l->iv, l->seq++, r, r + 5,
				 n - 5, plain);
	while (k > 0 && plain[k - 1] == 0)
		k--;
	if (k <= 0)
		return -1;
	uint8_t inner = plain[--k];
	if (l->st == L_ENC) {
		if (inner != 22 || l->hslen + (size_t)k > sizeof l->hs)
			return -1;
		memcpy(l->hs + l->hslen, plain, (size_t)k);
		l->hslen += (size_t)k;
		return on_handshake(l, fd);
	}
	/* after the handshake: tickets (handshake), then the pong */
	if (inner == 23)
		return memmem(plain, (size_t)k, "\r\n", 2) ? 1 : 0;
	return inner == 22 ? 0 : -1;
}

int lite_step(struct lite *l, int fd)
{
	if (l->st == L_START) {
		client_hello(l);
		if (send(fd, l->ch, l->chlen, MSG_NOSIGNAL) != (ssize_t)l->chlen)
			return -1;
		l->st = L_SH;
		return 0;
	}
	for (;;) {
		ssize_t k = recv(fd, l->in + l->inlen, sizeof l->in - l->inlen, 0);
		if (k == 0)
			return -1;
		if (k < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		l->inlen += (size_t)k;
		size_t at = 0;
		while (at + 5 <= l->inlen) {
			size_t len = (size_t)l->in[at + 3] << 8 | l->in[at + 4];
			if (len > REC_MAX - 5)
				return -1;
			if (at + 5 + len > l->inlen)
				break;
			int r = on_record(l, fd, l->in + at, 5 + len);
			if (r)
				return r;
			at += 5 + len;
		}
		memmove(l->in, l->in + at, l->inlen - at);
		l->inlen -= at;
	}
}
