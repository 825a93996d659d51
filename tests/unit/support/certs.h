/* Test support: keys and certificates made at run time, so that no key is
 * kept in the tree. */
#ifndef PINHOLE_TEST_CERTS_H
#define PINHOLE_TEST_CERTS_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* A new P-256 key. */
EVP_PKEY *tc_key(void);

/* A certificate for cn (subjectAltName san when not NULL, e.g. "IP:127.0.0.1"),
 * signed by ca/cak, or a self-signed CA when ca is NULL; valid from from_s to
 * to_s seconds from now. */
X509 *tc_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *ca, EVP_PKEY *cak,
	      long from_s, long to_s);

void tc_write_cert(const char *path, X509 *x);
void tc_write_key(const char *path, EVP_PKEY *k);

/* A self-signed certificate for cn without extensions, valid from a minute
 * ago for secs, in cert_path; its P-256 key in key_path. */
void tc_self_signed(const char *cert_path, const char *key_path, const char *cn, long secs);

/* A temporary folder (under /tmp, named after tag) holding a self-signed
 * certificate for cn (tc_self_signed) as cert.pem and its key as key.pem. */
struct tc_files {
	char dir[64], cert[128], key[128];
};
void tc_temp_self_signed(struct tc_files *tf, const char *tag, const char *cn, long secs);
/* Removes the files and the folder. */
void tc_temp_remove(struct tc_files *tf);

#endif
