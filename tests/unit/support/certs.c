/* Test support: keys and certificates made at run time (see certs.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "core/core.h"

EVP_PKEY *tc_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	assert_non_null(k);
	return k;
}

static X509 *cert_base(EVP_PKEY *key, const char *cn, long from_s, long to_s)
{
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)rand_u32() & 0x7fffffff);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_set_pubkey(x, key);
	X509_NAME *nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	return x;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
}

X509 *tc_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *ca, EVP_PKEY *cak,
	      long from_s, long to_s)
{
	X509 *x = cert_base(key, cn, from_s, to_s);
	X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : X509_get_subject_name(x));
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, ca ? ca : x, x, NULL, NULL, 0);
	add_ext(x, &v3, NID_basic_constraints, ca ? "CA:FALSE" : "critical,CA:TRUE");
	if (san)
		add_ext(x, &v3, NID_subject_alt_name, san);
	assert_true(X509_sign(x, cak ? cak : key, EVP_sha256()) > 0);
	return x;
}

void tc_write_cert(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	fclose(f);
}

void tc_write_key(const char *path, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

void tc_self_signed(const char *cert_path, const char *key_path, const char *cn, long secs)
{
	EVP_PKEY *k = tc_key();
	X509 *x = cert_base(k, cn, -60, secs);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	tc_write_cert(cert_path, x);
	tc_write_key(key_path, k);
	X509_free(x);
	EVP_PKEY_free(k);
}

void tc_temp_self_signed(struct tc_files *tf, const char *tag, const char *cn, long secs)
{
	snprintf(tf->dir, sizeof tf->dir, "/tmp/pinhole-%s-XXXXXX", tag);
	assert_non_null(mkdtemp(tf->dir));
	snprintf(tf->cert, sizeof tf->cert, "%s/cert.pem", tf->dir);
	snprintf(tf->key, sizeof tf->key, "%s/key.pem", tf->dir);
	tc_self_signed(tf->cert, tf->key, cn, secs);
}

void tc_temp_remove(struct tc_files *tf)
{
	unlink(tf->cert);
	unlink(tf->key);
	rmdir(tf->dir);
}
