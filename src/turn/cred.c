/* TURN credentials: stateless nonces and coturn's shared-secret (REST API) passwords. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "stun/stun.h"
#include "turn_int.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Padded base64 (RFC 4648 4) with alphabet abc; returns the length written. */
static size_t b64(const char *abc, const uint8_t *in, size_t n, char *out, bool pad)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = abc[(v >> 6) & 63];
		out[o++] = abc[v & 63];
	}
	if (n - i) {
		uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		if (n - i == 2)
			out[o++] = abc[(v >> 6) & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

int turn_secret_password(struct slice secret, struct slice username, char out[29])
{
	return stun_secret_password(secret, username, out); /* the client computes it too */
}

int turn_secret_expiry(struct slice u, int64_t *expiry)
{
	/* "1700000000" or "1700000000:alice" (coturn's default separator) */
	size_t n = slice_find(u, ':');
	if (n == 0 || n > 12)
		return EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (u.p[i] < '0' || u.p[i] > '9')
			return EINVAL;
		v = v * 10 + (u.p[i] - '0');
	}
	*expiry = v;
	return 0;
}

#define NONCE_COOKIE "obMatJos2"
/* RFC 8489 9.2.1: 24 feature bits, base64; bit 0 password algorithms, bit 1
 * username anonymity, counted from the least significant end as in the
 * RFC's own test vector. */
#define NONCE_FEATURES "AAAD"
#define NONCE_HEAD 13 /* cookie + features */
#define NONCE_RAW 24  /* issued 8 | mac 16 -> 32 base64url characters */

static void nonce_mac(const uint8_t key[32], const uint8_t issued[8], const char *realm,
		      const struct net_addr *src, uint8_t mac16[16])
{
	uint8_t buf[8 + 16 + STORE_CRED_REALM_MAX];
	struct net_src_key sk;
	net_addr_src_key(src, &sk);
	memcpy(buf, issued, 8);
	for (int i = 0; i < 8; i++) {
		buf[8 + i] = (uint8_t)(sk.hi >> (56 - 8 * i));
		buf[16 + i] = (uint8_t)(sk.lo >> (56 - 8 * i));
	}
	size_t rl = strnlen(realm, STORE_CRED_REALM_MAX);
	memcpy(buf + 24, realm, rl);
	uint8_t md[32];
	if (stun_hmac_sha256(key, 32, buf, 24 + rl, md))
		rand_bytes(md, sizeof md); /* a MAC that never verifies */
	memcpy(mac16, md, 16);
}

void turn_nonce_make(const uint8_t key[32], const char *realm, const struct net_addr *src,
		     int64_t now, char out[TURN_NONCE_LEN + 1])
{
	uint8_t raw[NONCE_RAW];
	for (int i = 0; i < 8; i++)
		raw[i] = (uint8_t)((uint64_t)now >> (56 - 8 * i));
	nonce_mac(key, raw, realm, src, raw + 8);
	memcpy(out, NONCE_COOKIE NONCE_FEATURES, NONCE_HEAD);
	b64(b64url, raw, NONCE_RAW, out + NONCE_HEAD, false);
}

/* nonce -> its raw bytes (issued | mac): 0 or EPERM. */
static int nonce_decode(struct slice nonce, uint8_t raw[NONCE_RAW])
{
	if (nonce.l != TURN_NONCE_LEN || memcmp(nonce.p, NONCE_COOKIE NONCE_FEATURES, NONCE_HEAD))
		return EPERM;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = NONCE_HEAD; i < nonce.l; i++) {
		const char *p = nonce.p[i] ? strchr(b64url, nonce.p[i]) : NULL;
		if (!p)
			return EPERM;
		acc = acc << 6 | (uint32_t)(p - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return o == NONCE_RAW ? 0 : EPERM;
}

static int64_t nonce_time(const uint8_t raw[NONCE_RAW])
{
	int64_t issued = 0;
	for (int i = 0; i < 8; i++)
		issued = (int64_t)((uint64_t)issued << 8 | raw[i]);
	return issued;
}

int turn_nonce_issued(struct slice nonce, int64_t *issued)
{
	uint8_t raw[NONCE_RAW];
	if (nonce_decode(nonce, raw))
		return EPERM;
	*issued = nonce_time(raw);
	return 0;
}

int turn_nonce_check(const uint8_t key[32], const char *realm, const struct net_addr *src,
		     struct slice nonce, int64_t now, int64_t lifetime)
{
	uint8_t raw[NONCE_RAW];
	if (nonce_decode(nonce, raw))
		return EPERM;
	uint8_t mac[16];
	nonce_mac(key, raw, realm, src, mac);
	if (CRYPTO_memcmp(mac, raw + 8, 16) != 0)
		return EPERM;
	int64_t issued = nonce_time(raw);
	if (issued > now + 5)
		return EPERM;
	return now - issued > lifetime ? ETIMEDOUT : 0;
}
