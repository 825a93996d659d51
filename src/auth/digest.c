/* auth: digest arithmetic over OpenSSL EVP (MD5, SHA-256, SHA-512/256), RFC 7616 3.4.1-3.4.2. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth/auth.h"

static const char *const alg_names[STORE_CRED_ALGS] = {
    [STORE_CRED_MD5] = "MD5",
    [STORE_CRED_SHA256] = "SHA-256",
    [STORE_CRED_SHA512_256] = "SHA-512-256",
};

const char *auth_alg_name(enum store_cred_alg a)
{
	return (unsigned)a < STORE_CRED_ALGS ? alg_names[a] : "?";
}

int auth_alg_parse(struct slice s, enum store_cred_alg *out)
{
	if (!s.p) {
		*out = STORE_CRED_MD5; /* RFC 7616 3.4: absent means MD5 */
		return 0;
	}
	for (int a = 0; a < STORE_CRED_ALGS; a++) {
		if (slice_eq_cstr_nocase(s, alg_names[a])) {
			*out = (enum store_cred_alg)a;
			return 0;
		}
	}
	return ENOTSUP; /* -sess variants need state per session; we offer none */
}

size_t auth_alg_hexlen(enum store_cred_alg a)
{
	return a == STORE_CRED_MD5 ? 32 : 64;
}

/* Fetched once: OpenSSL 3 looks an implicit EVP_md5() up again at every
 * DigestInit, which cost three times the hash itself here. Process lifetime. */
static EVP_MD *mds[STORE_CRED_ALGS];
static pthread_once_t mds_once = PTHREAD_ONCE_INIT;

static void mds_fetch(void)
{
	mds[STORE_CRED_MD5] = EVP_MD_fetch(NULL, "MD5", NULL);
	mds[STORE_CRED_SHA256] = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	mds[STORE_CRED_SHA512_256] = EVP_MD_fetch(NULL, "SHA2-512/256", NULL);
}

static const EVP_MD *alg_md(enum store_cred_alg a)
{
	pthread_once(&mds_once, mds_fetch);
	return (unsigned)a < STORE_CRED_ALGS ? mds[a] : NULL;
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* H over the parts joined by ':' (the shape of every digest input). */
static int hash_parts(enum store_cred_alg a, const struct slice *parts, size_t n, char *out)
{
	const EVP_MD *md = alg_md(a);
	EVP_MD_CTX *ctx = md ? EVP_MD_CTX_new() : NULL;
	if (!ctx)
		return EIO;
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;
	int ok = EVP_DigestInit_ex(ctx, md, NULL);
	for (size_t i = 0; ok && i < n; i++) {
		if (i)
			ok = EVP_DigestUpdate(ctx, ":", 1);
		if (ok && parts[i].l)
			ok = EVP_DigestUpdate(ctx, parts[i].p, parts[i].l);
	}
	ok = ok && EVP_DigestFinal_ex(ctx, d, &dl);
	EVP_MD_CTX_free(ctx);
	if (!ok || dl * 2 + 1 > STORE_CRED_HA1_MAX)
		return EIO;
	to_hex(d, dl, out);
	return 0;
}

int auth_hash_hex(enum store_cred_alg a, const void *p, size_t l, char *out)
{
	struct slice s = {p, l};
	return hash_parts(a, &s, 1, out);
}

int auth_ha1(enum store_cred_alg a, struct slice user, struct slice realm, struct slice password,
	     char *out)
{
	struct slice parts[3] = {user, realm, password};
	return hash_parts(a, parts, 3, out);
}

int auth_ha1_all(struct slice user, struct slice realm, struct slice password,
		 struct store_cred_entry *e)
{
	memset(e, 0, sizeof *e);
	for (int a = 0; a < STORE_CRED_ALGS; a++) {
		int err = auth_ha1((enum store_cred_alg)a, user, realm, password, e->ha1[a]);
		if (err)
			return err;
	}
	return 0;
}

int auth_response(enum store_cred_alg a, const char *ha1, struct slice nonce, struct slice nc,
		  struct slice cnonce, struct slice qop, struct slice method, struct slice uri,
		  char *out)
{
	char ha2[STORE_CRED_HA1_MAX];
	struct slice p2[2] = {method, uri};
	int err = hash_parts(a, p2, 2, ha2);
	if (err)
		return err;
	struct slice parts[6] = {slice_cstr(ha1), nonce, nc, cnonce, qop, slice_cstr(ha2)};
	return hash_parts(a, parts, 6, out);
}
