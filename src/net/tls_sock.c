/* TLS client on a socket its caller owns (pinhole ua): one context, one SSL per socket, no locks
 * (one thread), and the sessions to resume by target. The server side's connections live in
 * tls.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net_int.h"

/* sessions kept to resume, one per target: a ua has a few proxies, so the
 * oldest target gives way past this */
#define TLS_CLIENT_SESSIONS 8

/* A target: the name asked for (SNI and the certificate check) and the
 * address connected to. A session is offered only to the same pair, so a
 * ticket never goes to a server of another name, nor to another address
 * that happens to carry the name. */
struct tls_target {
	char *host;
	struct net_addr addr;
};

struct client_session {
	struct tls_target to;
	SSL_SESSION *sess; /* NULL: a free slot */
	uint64_t stored;   /* order of storing, for eviction */
};

struct net_tls_client {
	SSL_CTX *ctx;
	bool verify;
	struct client_session sessions[TLS_CLIENT_SESSIONS];
	uint64_t seq;
};

struct net_tls_sock {
	SSL *ssl;
	struct net_tls_client *cl;
	struct net_tls *srv; /* server side: counted among srv's handshakes until done */
	bool counted;
	bool has_target; /* client side, the peer's address known */
	struct tls_target to;
};

static int peer_addr(int fd, struct net_addr *out)
{
	socklen_t len = sizeof out->u.ss;
	memset(out, 0, sizeof *out);
	return getpeername(fd, &out->u.sa, &len) < 0 ? errno : 0;
}

static bool target_eq(const struct tls_target *a, const struct tls_target *b)
{
	return a->host && b->host && !strcmp(a->host, b->host) && net_addr_eq(&a->addr, &b->addr);
}

/* The session kept for to, taken out of the table: a TLS 1.3 ticket is
 * offered once (RFC 8446 C.4: reuse would link the connections), and the
 * resumed connection brings a new one. NULL if none. */
static SSL_SESSION *session_take(struct net_tls_client *c, const struct tls_target *to)
{
	for (unsigned i = 0; i < TLS_CLIENT_SESSIONS; i++) {
		struct client_session *cs = &c->sessions[i];
		if (cs->sess && target_eq(&cs->to, to)) {
			SSL_SESSION *s = cs->sess;
			cs->sess = NULL;
			return s;
		}
	}
	return NULL;
}

/* OpenSSL's new-session callback (TLS 1.3: each ticket, read after the
 * handshake): the latest session of the target is kept, in place of the one
 * before, else in a free slot, else in place of the oldest. A copy is kept:
 * OpenSSL marks the connection's own session not resumable when the
 * connection ends without a close_notify, as a dropped flow does, and that
 * is when the ua reconnects. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct net_tls_sock *s = SSL_get_app_data(ssl);
	if (!s || !s->has_target || !SSL_SESSION_is_resumable(sess))
		return 0;
	struct net_tls_client *c = s->cl;
	struct client_session *slot = NULL, *free_slot = NULL, *oldest = NULL;
	for (unsigned i = 0; i < TLS_CLIENT_SESSIONS; i++) {
		struct client_session *cs = &c->sessions[i];
		if (cs->to.host && target_eq(&cs->to, &s->to)) {
			slot = cs;
			break;
		}
		if (!cs->sess && !free_slot)
			free_slot = cs;
		if (cs->sess && (!oldest || cs->stored < oldest->stored))
			oldest = cs;
	}
	if (!slot)
		slot = free_slot ? free_slot : oldest;
	SSL_SESSION *copy = SSL_SESSION_dup(sess);
	if (!copy) {
		ERR_clear_error();
		return 0;
	}
	if (!slot->to.host || strcmp(slot->to.host, s->to.host)) {
		char *h = strdup(s->to.host);
		if (!h) {
			SSL_SESSION_free(copy);
			return 0;
		}
		free(slot->to.host);
		slot->to.host = h;
	}
	slot->to.addr = s->to.addr;
	SSL_SESSION_free(slot->sess);
	slot->sess = copy;
	slot->stored = ++c->seq;
	return 0; /* OpenSSL keeps its own reference as it likes */
}

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
	/* resumption: every new session goes to on_new_session, which keeps it
	 * by target; OpenSSL's own client cache is not keyed by target */
	SSL_CTX_set_session_cache_mode(c->ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
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
	for (unsigned i = 0; i < TLS_CLIENT_SESSIONS; i++) {
		SSL_SESSION_free(c->sessions[i].sess);
		free(c->sessions[i].to.host);
	}
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
	SSL_set_app_data(s->ssl, s);
	/* the target a session is kept for and offered to: the name and the
	 * address (fd is connected, or connecting: then no resumption) */
	if (peer_addr(fd, &s->to.addr) == 0 && (s->to.host = strdup(host))) {
		s->has_target = true;
		SSL_SESSION *sess = session_take(c, &s->to);
		if (sess) {
			SSL_set_session(s->ssl, sess); /* takes its own reference */
			SSL_SESSION_free(sess);
		}
	}
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
	free(s->to.host);
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

bool net_tls_sock_resumed(const struct net_tls_sock *s)
{
	return SSL_session_reused(s->ssl) == 1;
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
