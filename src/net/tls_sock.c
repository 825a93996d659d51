/* TLS client on a socket its caller owns (pinhole ua): one context, one SSL per socket, no locks
 * (one thread). The server side's connections live in tls.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net_int.h"

struct net_tls_client {
	SSL_CTX *ctx;
	bool verify;
};

struct net_tls_sock {
	SSL *ssl;
	struct net_tls_client *cl;
	struct net_tls *srv; /* server side: counted among srv's handshakes until done */
	bool counted;
};

int net_tls_client_alloc(struct net_tls_client **cp, const char *ca_file, bool verify, char *err,
			 size_t errlen)
{
	signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2) */
	struct net_tls_client *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	c->verify = verify;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx)
		goto out_ssl;
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (ca_file && ca_file[0]) {
		FILE *f = fopen(ca_file, "r");
		if (!f) {
			snprintf(err, errlen, "%s: %s", ca_file, strerror(errno));
			net_tls_client_free(c);
			return EINVAL;
		}
		fclose(f);
		if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
			goto out_ssl;
	} else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
		goto out_ssl;
	}
	SSL_CTX_set_verify(c->ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	*cp = c;
	return 0;
out_ssl:;
	unsigned long e = ERR_peek_last_error();
	char why[256] = "unknown reason";
	if (e)
		ERR_error_string_n(e, why, sizeof why);
	ERR_clear_error();
	snprintf(err, errlen, "%s%s%s", ca_file && ca_file[0] ? ca_file : "", ca_file && ca_file[0] ? ": " : "", why);
	net_tls_client_free(c);
	return EINVAL;
}

void net_tls_client_free(struct net_tls_client *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	free(c);
}

int net_tls_sock_alloc(struct net_tls_sock **sp, struct net_tls_client *c, int fd, const char *host)
{
	struct net_tls_sock *s = calloc(1, sizeof *s);
	if (!s)
		return ENOMEM;
	s->cl = c;
	s->ssl = SSL_new(c->ctx);
	if (!s->ssl || SSL_set_fd(s->ssl, fd) != 1) {
		net_tls_sock_free(s);
		ERR_clear_error();
		return ENOMEM;
	}
	SSL_set_connect_state(s->ssl);
	/* RFC 5922: the certificate must name the host we were told to reach;
	 * SNI only for a name (RFC 6066: never an address) */
	unsigned char bin[16];
	bool ip = inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
	if (!ip)
		SSL_set_tlsext_host_name(s->ssl, host);
	if (c->verify) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
		if (ip)
			X509_VERIFY_PARAM_set1_ip_asc(vp, host);
		else
			X509_VERIFY_PARAM_set1_host(vp, host, 0);
	}
	*sp = s;
	return 0;
}

int net_tls_sock_accept(struct net_tls_sock **sp, struct net_tls *srv, int fd)
{
	struct net_tls_sock *s = calloc(1, sizeof *s);
	if (!s)
		return ENOMEM;
	s->ssl = net_tls_server_ssl_new(srv);
	if (!s->ssl) {
		int err = errno;
		free(s);
		return err;
	}
	s->srv = srv;
	s->counted = true;
	if (SSL_set_fd(s->ssl, fd) != 1) {
		net_tls_sock_free(s);
		ERR_clear_error();
		return ENOMEM;
	}
	*sp = s;
	return 0;
}

static void uncount(struct net_tls_sock *s)
{
	if (s->counted) {
		net_tls_server_handshake_done(s->srv);
		s->counted = false;
	}
}

void net_tls_sock_free(struct net_tls_sock *s)
{
	if (!s)
		return;
	uncount(s);
	if (s->ssl && SSL_is_init_finished(s->ssl))
		SSL_shutdown(s->ssl);
	SSL_free(s->ssl);
	free(s);
	ERR_clear_error();
}

int net_tls_sock_handshake(struct net_tls_sock *s, uint32_t *want, char *why, size_t whylen)
{
	int r = SSL_do_handshake(s->ssl);
	if (r == 1) {
		uncount(s);
		*want = EPOLLIN;
		return 0;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLIN | EPOLLOUT;
		return EAGAIN;
	}
	long v = SSL_get_verify_result(s->ssl);
	if (v != X509_V_OK) {
		snprintf(why, whylen, "certificate not trusted: %s", X509_verify_cert_error_string(v));
		ERR_clear_error();
		return EPERM;
	}
	unsigned long ee = ERR_peek_last_error();
	if (ee) {
		char r2[200];
		ERR_error_string_n(ee, r2, sizeof r2);
		snprintf(why, whylen, "%s", r2);
	} else {
		snprintf(why, whylen, "connection closed during the handshake");
	}
	ERR_clear_error();
	return EPROTO;
}

const char *net_tls_sock_version(const struct net_tls_sock *s)
{
	return SSL_get_version(s->ssl);
}

ssize_t net_tls_sock_read(struct net_tls_sock *s, void *buf, size_t len, bool *more)
{
	size_t got = 0;
	int r = SSL_read_ex(s->ssl, buf, len, &got);
	*more = r == 1 && SSL_pending(s->ssl) > 0;
	if (r == 1)
		return (ssize_t)got;
	int e = SSL_get_error(s->ssl, r);
	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
	return -1;
}

ssize_t net_tls_sock_write(struct net_tls_sock *s, const void *buf, size_t len)
{
	size_t done = 0;
	int r = SSL_write_ex(s->ssl, buf, len, &done);
	if (r == 1)
		return (ssize_t)done;
	int e = SSL_get_error(s->ssl, r);
	ERR_clear_error();
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
	return -1;
}
