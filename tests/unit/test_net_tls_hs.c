/* net: what a TLS server context accepts in a handshake, written as the attacks: a client that
 * offers only a finite-field group (ffdhe8192: about 120 ms of server CPU per handshake with
 * OpenSSL's defaults) or only a slow curve is refused; ordinary clients get X25519 and
 * TLS_AES_128_GCM_SHA256 whatever order they list the suites in; both lists are configurable
 * and a bad one is rejected at setup with the key's name. The server is pinhole's own context
 * (net_tls_server_alloc, as the listeners and the TURN role make it) over a socketpair; the
 * client is OpenSSL's. Certificates are made here at run time. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/net.h"
#include "certs.h"

static struct tc_files certs;

static int make_cert(void **state)
{
	(void)state;
	tc_temp_self_signed(&certs, "tlshs", "srv", 3600);
	return 0;
}

static int remove_cert(void **state)
{
	(void)state;
	tc_temp_remove(&certs);
	return 0;
}

/* What a handshake came to, seen from the client. */
struct outcome {
	int server_err; /* net_tls_sock_handshake's last answer */
	bool client_ok;
	char suite[64], group[32];
};

/* One handshake between pinhole's server context for conf and an OpenSSL
 * client offering groups (NULL: OpenSSL's default list) and suites (NULL:
 * OpenSSL's default order, AES-256 first). */
static struct outcome handshake(const struct net_tls_conf *conf, const char *groups,
				const char *suites)
{
	struct outcome o = {0};
	struct net_tls *srv;
	char err[512];
	assert_int_equal(net_tls_server_alloc(&srv, conf, err, sizeof err), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct net_tls_sock *ss;
	assert_int_equal(net_tls_sock_accept(&ss, srv, sv[0]), 0);
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	if (groups)
		assert_int_equal(SSL_CTX_set1_groups_list(cctx, groups), 1);
	if (suites)
		assert_int_equal(SSL_CTX_set_ciphersuites(cctx, suites), 1);
	SSL *cl = SSL_new(cctx);
	SSL_set_fd(cl, sv[1]);
	SSL_set_connect_state(cl);
	int rc = 0;
	o.server_err = EAGAIN;
	for (int i = 0; i < 50 && (rc != 1 || o.server_err == EAGAIN); i++) {
		if (rc != 1) {
			rc = SSL_do_handshake(cl);
			if (rc != 1 && SSL_get_error(cl, rc) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(cl, rc) != SSL_ERROR_WANT_WRITE)
				break;
		}
		if (o.server_err == EAGAIN) {
			uint32_t want;
			char why[200];
			o.server_err = net_tls_sock_handshake(ss, &want, why, sizeof why);
			if (o.server_err != 0 && o.server_err != EAGAIN) {
				/* the alert reaches the client: it fails too */
				rc = SSL_do_handshake(cl);
				break;
			}
		}
	}
	o.client_ok = rc == 1;
	if (o.client_ok) {
		snprintf(o.suite, sizeof o.suite, "%s", SSL_CIPHER_get_name(SSL_get_current_cipher(cl)));
		int g = SSL_get_negotiated_group(cl);
		snprintf(o.group, sizeof o.group, "%s", g ? OBJ_nid2sn(g) : "?");
	}
	SSL_free(cl);
	SSL_CTX_free(cctx);
	net_tls_sock_free(ss);
	close(sv[0]), close(sv[1]);
	net_tls_server_free(srv);
	ERR_clear_error();
	return o;
}

static struct net_tls_conf conf(void)
{
	return (struct net_tls_conf){.certificate = certs.cert, .private_key = certs.key};
}

/* The attacks: a ClientHello whose only group costs the server a
 * finite-field exponentiation or a slow curve is refused. */
static void expensive_groups_refused(void **state)
{
	(void)state;
	struct net_tls_conf c = conf();
	const char *costly[] = {"ffdhe8192", "ffdhe2048", "P-384", "P-521", "X448"};
	for (size_t i = 0; i < sizeof costly / sizeof costly[0]; i++) {
		struct outcome o = handshake(&c, costly[i], NULL);
		assert_false(o.client_ok);
		assert_int_equal(o.server_err, EPROTO);
	}
	/* and an ordinary client that lists them after X25519 is served */
	struct outcome o = handshake(&c, "ffdhe8192:P-384:X25519", NULL);
	assert_true(o.client_ok);
	assert_string_equal(o.group, "X25519");
	/* P-256 alone, as some phones offer it */
	o = handshake(&c, "P-256", NULL);
	assert_true(o.client_ok);
	assert_string_equal(o.group, "prime256v1");
}

/* The server's suite order decides: AES-128-GCM (SHA-256) by default, even
 * for a client that lists AES-256 first; AES-256 still serves a client
 * that offers nothing else; the order is the operator's to change. */
static void suites_in_our_order(void **state)
{
	(void)state;
	struct net_tls_conf c = conf();
	struct outcome o = handshake(&c, NULL, NULL);
	assert_true(o.client_ok);
	assert_string_equal(o.suite, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(o.group, "X25519");
	o = handshake(&c, NULL, "TLS_AES_256_GCM_SHA384");
	assert_true(o.client_ok);
	assert_string_equal(o.suite, "TLS_AES_256_GCM_SHA384");
	o = handshake(&c, NULL, "TLS_CHACHA20_POLY1305_SHA256");
	assert_true(o.client_ok);
	assert_string_equal(o.suite, "TLS_CHACHA20_POLY1305_SHA256");
	c.ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256";
	c.groups = "X25519:P-256:P-384";
	o = handshake(&c, NULL, NULL);
	assert_true(o.client_ok);
	assert_string_equal(o.suite, "TLS_AES_256_GCM_SHA384");
	o = handshake(&c, "P-384", NULL);
	assert_true(o.client_ok);
	assert_string_equal(o.group, "secp384r1");
}

/* A list OpenSSL does not take is an error at setup, naming the key. */
static void bad_lists_rejected(void **state)
{
	(void)state;
	struct net_tls *t;
	char err[512];
	struct net_tls_conf c = conf();
	c.ciphersuites = "TLS_NO_SUCH_SUITE";
	assert_int_equal(net_tls_server_alloc(&t, &c, err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "[tls] ciphersuites \"TLS_NO_SUCH_SUITE\""));
	c = conf();
	c.groups = "X25519:no-such-curve";
	assert_int_equal(net_tls_server_alloc(&t, &c, err, sizeof err), EINVAL);
	assert_non_null(strstr(err, "[tls] groups \"X25519:no-such-curve\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(expensive_groups_refused),
	    cmocka_unit_test(suites_in_our_order),
	    cmocka_unit_test(bad_lists_rejected),
	};
	return cmocka_run_group_tests(tests, make_cert, remove_cert);
}
