/* TLS under the stream transport (OpenSSL): contexts from the config, non-blocking
 * handshakes bounded in time and number, and the byte layer (read, write) of a TLS
 * connection. Framing, flows and everything above see plain bytes, as for TCP. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net_int.h"

#define TLS_SNI_MAX 16
/* sessions kept for resuming outgoing connections, one per target: next
 * hops are few (a registrar, trunks, trusted peers); routing can name more,
 * so the oldest gives way */
#define TLS_RESUME_MAX 64

/* A connection's TLS state. The SSL (once parked, the record layer) is used
 * from the owner's read path and from any thread's send path: every call
 * into it holds lock (after conn_lock and net_conn_io when those are held,
 * never the other way). */
struct tls_conn {
	SSL *ssl; /* NULL once parked */
	/* until parked, or found not to park (tls_park.c); owner-only */
	struct tls_park *park;
	/* parked: OpenSSL is done with it; the records are tls_rec.c's, and of
	 * the peer's certificate its subject is kept (NULL: none) */
	struct tls_rec *rec;
	char *subject;
	pthread_mutex_t lock;
	/* until the handshake is done; written by the owner, read by senders
	 * (who hold net_conn_io, as does the owner when it flushes after it) */
	_Atomic bool handshaking;
	bool server;
	bool counted;     /* in net_tls handshaking (server side) */
	bool peeked;      /* the first byte was checked for a TLS record */
	bool wblocked;    /* the last SSL_write left a record half written */
	/* the socket BIO's (sock_bio_*), under lock but for rx_ready */
	int fd;
	/* epoll said readable since a read found the socket drained: without
	 * it a read would only see EAGAIN (epoll is level-triggered, so bytes
	 * that come meanwhile are reported on the next wait) */
	_Atomic bool rx_ready;
	bool eof;	  /* the peer's FIN was read */
	bool plaintext;	  /* server: the first byte was no TLS handshake record */
	bool peer_gone;	  /* ECONNRESET or EPIPE: no close_notify to send */
	/* server handshake steps and what follows the last one in the same
	 * wake-up: writes wait in cork and leave in one send(2) at the end of
	 * it (the ticket and the answer to what came with the Finished) */
	bool corked;
	bool broken; /* a corked write could not be sent whole */
	char *cork;
	size_t cork_len;
};

/* what one wake-up corks at most: an ECDSA flight (1.2 KB), a ticket and a
 * SIP answer; a fresh connection's send buffer always takes that much, so
 * a flush that falls short means a broken connection. Beyond it (an RSA
 * chain, a long answer) the corked bytes leave and the write goes on its
 * own, with the usual retry when the kernel is full. */
#define TLS_CORK_MAX 4096

/* A session to offer the next time we connect to target. */
struct tls_resume {
	struct net_addr target;
	SSL_SESSION *sess; /* NULL: a free slot */
	uint64_t stored;   /* order of storing, for eviction */
};

/* One per net; RO after net_tls_setup but for the atomics and resume. */
struct net_tls {
	SSL_CTX *server;             /* default certificate; NULL: no tls: listener */
	SSL_CTX *sni[TLS_SNI_MAX];   /* more certificates, chosen by SNI */
	unsigned n_sni;
	SSL_CTX *client;             /* outgoing connections */
	bool verify_server;
	bool park; /* [tls] park, and libcrypto has what tls_rec.c needs */
	unsigned handshake_s, max_handshakes;
	int64_t expiry_s; /* soonest notAfter of our certificates, unix seconds; 0 none */
	_Atomic unsigned handshaking;
	/* outgoing sessions by target; any worker connects, its owner stores */
	pthread_mutex_t resume_lock;
	struct tls_resume resume[TLS_RESUME_MAX];
	uint64_t resume_seq;
	struct {
		_Atomic int64_t handshakes, resumed, plaintext, timeout, verify, proto, closed,
			limited, sessions_evicted, parked, parked_total, park_skipped, pc_decrypt,
			pc_proto, pc_alert;
	} st;
};

/* OpenSSL's reasons, the first (the cause: "no start line") and the last
 * (where it surfaced: "PEM lib") when they differ. */
static void ssl_reason(char *buf, size_t len)
{
	unsigned long first = ERR_peek_error(), last = ERR_peek_last_error();
	const char *f = first ? ERR_reason_error_string(first) : NULL;
	const char *l = last ? ERR_reason_error_string(last) : NULL;
	if (f && l && first != last)
		snprintf(buf, len, "%s (%s)", f, l);
	else if (l || f)
		snprintf(buf, len, "%s", l ? l : f);
	else if (last)
		ERR_error_string_n(last, buf, len);
	else
		snprintf(buf, len, "unknown reason");
	ERR_clear_error();
}

/* A file the process must read: a missing or unreadable one is named with
 * the system's reason, before OpenSSL's less telling "system lib". */
static int check_file(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "[tls] %s %s: %s", what, path, strerror(errno));
		return EINVAL;
	}
	fclose(f);
	return 0;
}

static int64_t cert_not_after(X509 *x)
{
	struct tm tm;
	if (!x || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* TLS 1.3 suites, ours first: the same three as OpenSSL's default, AES-128
 * before AES-256 (RFC 8446's must-implement suite; its SHA-256 key schedule
 * and transcript make a full handshake 10 % cheaper than SHA-384's) */
#define TLS_SUITES_DEFAULT                                                                         \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* key exchange groups a server accepts: OpenSSL's default also takes
 * finite-field groups and the slower curves, which a client that offers only
 * them can make the server compute: per handshake 120 ms for ffdhe8192,
 * 2.5 ms ffdhe2048, 1.8 ms P-384, against 0.2 ms for X25519 (hs_cost) */
#define TLS_GROUPS_DEFAULT "X25519:P-256"

static int ctx_common(SSL_CTX *ctx, const struct net_tls_conf *c, char *err, size_t errlen)
{
	const char *suites = c->ciphersuites && c->ciphersuites[0] ? c->ciphersuites
								     : TLS_SUITES_DEFAULT;
	if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
		char why[256];
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] ciphersuites \"%s\": %s", suites, why);
		return EINVAL;
	}
	SSL_CTX_set_min_proto_version(ctx, c->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
	/* idle connections hold no read or write buffer (~34 KiB each otherwise) */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* one read(2) takes what the kernel has, not a record header and then
	 * its body: a REGISTER costs one read instead of three */
	SSL_CTX_set_read_ahead(ctx, 1);
	return 0;
}

static int load_trust(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
	char why[256];
	if (ca_file && ca_file[0]) {
		if (check_file("ca_file", ca_file, err, errlen))
			return EINVAL;
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			ssl_reason(why, sizeof why);
			snprintf(err, errlen, "[tls] ca_file %s: %s", ca_file, why);
			return EINVAL;
		}
		return 0;
	}
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] the system trust store: %s", why);
		return EINVAL;
	}
	return 0;
}

/* A server context for one certificate and key. */
static int server_ctx(struct net_tls *t, const struct net_tls_conf *c, const char *cert,
		      const char *key, SSL_CTX **out, char *err, size_t errlen)
{
	char why[256];
	if (check_file("certificate", cert, err, errlen) ||
	    check_file("private_key", key, err, errlen))
		return EINVAL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] %s", why);
		return ENOMEM;
	}
	if (ctx_common(ctx, c, err, errlen))
		goto out_free;
	const char *groups = c->groups && c->groups[0] ? c->groups : TLS_GROUPS_DEFAULT;
	if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] groups \"%s\": %s", groups, why);
		goto out_free;
	}
	if (c->ciphers && c->ciphers[0] && SSL_CTX_set_cipher_list(ctx, c->ciphers) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] ciphers \"%s\": %s", c->ciphers, why);
		goto out_free;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] certificate %s: %s", cert, why);
		goto out_free;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] private_key %s%s%s: %s", key,
			 mismatch ? " does not match certificate " : "", mismatch ? cert : "", why);
		goto out_free;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] private_key %s does not match certificate %s: %s", key,
			 cert, why);
		goto out_free;
	}
	/* resumption by tickets (stateless: nothing kept per client); one per
	 * handshake is enough for a phone that reconnects */
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	static const unsigned char sid_ctx[] = "pinhole";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	if (c->verify_client) {
		if (load_trust(ctx, c->ca_file, err, errlen))
			goto out_free;
		if (c->ca_file && c->ca_file[0]) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->ca_file);
			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
		}
		SSL_CTX_set_verify(ctx,
				   SSL_VERIFY_PEER |
					   (c->verify_client == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
				   NULL);
	}
	int64_t na = cert_not_after(SSL_CTX_get0_certificate(ctx));
	if (na && (!t->expiry_s || na < t->expiry_s))
		t->expiry_s = na;
	if (na && na - (int64_t)time(NULL) < (int64_t)c->expiry_warn_days * 86400) {
		char when[32];
		time_t tt = (time_t)na;
		struct tm tm;
		strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&tt, &tm));
		LOG_W("tls", "certificate %s %s %s", cert, na < (int64_t)time(NULL) ? "expired" : "expires",
		      when);
	}
	*out = ctx;
	return 0;
out_free:
	SSL_CTX_free(ctx);
	return EINVAL;
}

/* Whether the certificate of ctx names host (SAN dNSName, else the CN;
 * X509_check_host does the wildcard rules). */
static bool ctx_names(SSL_CTX *ctx, const char *host)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	return x && X509_check_host(x, host, 0, 0, NULL) == 1;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	struct net_tls *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!name)
		return SSL_TLSEXT_ERR_OK;
	for (unsigned i = 0; i < t->n_sni; i++) {
		if (ctx_names(t->sni[i], name)) {
			SSL_set_SSL_CTX(ssl, t->sni[i]);
			/* the verify mode is the connection's own, kept from the default */
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* The session kept for target, taken out of the table (a TLS 1.3 ticket is
 * offered once; the resumed connection brings new ones); NULL if none. */
static SSL_SESSION *resume_take(struct net_tls *t, const struct net_addr *target)
{
	SSL_SESSION *s = NULL;
	pthread_mutex_lock(&t->resume_lock);
	for (unsigned i = 0; i < TLS_RESUME_MAX; i++) {
		if (t->resume[i].sess && net_addr_eq(&t->resume[i].target, target)) {
			s = t->resume[i].sess;
			t->resume[i].sess = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&t->resume_lock);
	return s;
}

/* OpenSSL's new-session callback on an outgoing connection (its app data is
 * the conn): keeps a copy of sess for the connection's target, in place of
 * the one before, else in a free slot, else in place of the oldest. A copy:
 * OpenSSL marks the connection's own session not resumable when the
 * connection ends without a close_notify (a next hop that restarted). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct conn *c = SSL_get_app_data(ssl);
	if (!c || !SSL_SESSION_is_resumable(sess))
		return 0;
	struct net_tls *t = c->owner->net->tls;
	sess = SSL_SESSION_dup(sess);
	if (!sess) {
		ERR_clear_error();
		return 0;
	}
	pthread_mutex_lock(&t->resume_lock);
	struct tls_resume *slot = NULL, *free_slot = NULL, *oldest = NULL;
	for (unsigned i = 0; i < TLS_RESUME_MAX; i++) {
		struct tls_resume *r = &t->resume[i];
		if (r->sess && net_addr_eq(&r->target, &c->flow.remote)) {
			slot = r;
			break;
		}
		if (!r->sess && !free_slot)
			free_slot = r;
		if (r->sess && (!oldest || r->stored < oldest->stored))
			oldest = r;
	}
	if (!slot && free_slot) {
		slot = free_slot;
	} else if (!slot) {
		slot = oldest;
		t->st.sessions_evicted++;
	}
	SSL_SESSION_free(slot->sess);
	slot->sess = sess;
	slot->target = c->flow.remote;
	slot->stored = ++t->resume_seq;
	pthread_mutex_unlock(&t->resume_lock);
	return 0; /* OpenSSL keeps or frees its own */
}

void net_tls_free(struct net_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->server);
	for (unsigned i = 0; i < t->n_sni; i++)
		SSL_CTX_free(t->sni[i]);
	SSL_CTX_free(t->client);
	for (unsigned i = 0; i < TLS_RESUME_MAX; i++)
		SSL_SESSION_free(t->resume[i].sess);
	pthread_mutex_destroy(&t->resume_lock);
	free(t);
}

/* The contexts of c, in a struct net_tls of their own. */
static int tls_build(struct net_tls **out, const struct net_tls_conf *c, char *err, size_t errlen)
{
	char why[256];
	/* OpenSSL writes with write(2): a peer that went away would raise
	 * SIGPIPE and end the process */
	signal(SIGPIPE, SIG_IGN);
	struct net_tls *t = calloc(1, sizeof *t);
	if (!t)
		return ENOMEM;
	pthread_mutex_init(&t->resume_lock, NULL);
	t->verify_server = c->verify_server;
	t->handshake_s = c->handshake_s ? c->handshake_s : 10;
	t->max_handshakes = c->max_handshakes ? c->max_handshakes : 256;
	int rc = EINVAL;
	if (c->certificate && c->certificate[0]) {
		if (!c->private_key || !c->private_key[0]) {
			snprintf(err, errlen, "[tls] certificate %s: private_key is not set",
				 c->certificate);
			goto out;
		}
		if (server_ctx(t, c, c->certificate, c->private_key, &t->server, err, errlen))
			goto out;
	}
	/* "CERT:KEY, CERT:KEY": more certificates, each for the names it holds */
	char list[2048];
	snprintf(list, sizeof list, "%s", c->sni ? c->sni : "");
	char *save = NULL;
	for (char *it = strtok_r(list, ", ", &save); it; it = strtok_r(NULL, ", ", &save)) {
		char *colon = strchr(it, ':');
		if (!colon) {
			snprintf(err, errlen, "[tls] sni_certificates: \"%s\" is not CERT:KEY", it);
			goto out;
		}
		if (t->n_sni == TLS_SNI_MAX) {
			snprintf(err, errlen, "[tls] sni_certificates: more than %d", TLS_SNI_MAX);
			goto out;
		}
		if (!t->server) {
			snprintf(err, errlen, "[tls] sni_certificates needs a default certificate");
			goto out;
		}
		*colon = '\0';
		if (server_ctx(t, c, it, colon + 1, &t->sni[t->n_sni], err, errlen))
			goto out;
		t->n_sni++;
	}
	if (t->server && t->n_sni)
		SSL_CTX_set_tlsext_servername_callback(t->server, on_servername),
			SSL_CTX_set_tlsext_servername_arg(t->server, t);
	t->client = SSL_CTX_new(TLS_client_method());
	if (!t->client) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] %s", why);
		goto out;
	}
	if (ctx_common(t->client, c, err, errlen))
		goto out;
	/* resumption toward next hops: OpenSSL hands each new session (TLS 1.3:
	 * each ticket, after the handshake) to on_new_session, which keeps one
	 * per target; OpenSSL's own client cache is not keyed by target */
	SSL_CTX_set_session_cache_mode(t->client,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->client, on_new_session);
	if (c->ciphers && c->ciphers[0] && SSL_CTX_set_cipher_list(t->client, c->ciphers) != 1) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] ciphers \"%s\": %s", c->ciphers, why);
		goto out;
	}
	if (t->verify_server) {
		if (load_trust(t->client, c->ca_file, err, errlen))
			goto out;
		SSL_CTX_set_verify(t->client, SSL_VERIFY_PEER, NULL);
	}
	/* mutual TLS toward a next hop that asks for it: our certificate */
	if (t->server && (SSL_CTX_use_certificate_chain_file(t->client, c->certificate) != 1 ||
			  SSL_CTX_use_PrivateKey_file(t->client, c->private_key, SSL_FILETYPE_PEM) != 1)) {
		ssl_reason(why, sizeof why);
		snprintf(err, errlen, "[tls] certificate %s as a client: %s", c->certificate, why);
		goto out;
	}
	*out = t;
	return 0;
out:
	net_tls_free(t);
	return rc;
}

int net_tls_setup(struct net *n, const struct net_tls_conf *c, char *err, size_t errlen)
{
	struct net_tls *t = NULL;
	int rc = tls_build(&t, c, err, errlen);
	if (rc)
		return rc;
	/* the key log hands each connection its traffic secrets for parking */
	t->park = c->park && tls_rec_available();
	if (t->park) {
		tls_park_ctx(t->server);
		for (unsigned i = 0; i < t->n_sni; i++)
			tls_park_ctx(t->sni[i]);
		tls_park_ctx(t->client);
	}
	net_tls_free(n->tls);
	n->tls = t;
	return 0;
}

/* ---- a server on sockets its caller owns (tls_sock.c: the TURN role) ---- */

int net_tls_server_alloc(struct net_tls **out, const struct net_tls_conf *c, char *err,
			 size_t errlen)
{
	if (!c->certificate || !c->certificate[0]) {
		snprintf(err, errlen, "[tls] certificate is not set");
		return EINVAL;
	}
	return tls_build(out, c, err, errlen);
}

void net_tls_server_free(struct net_tls *t)
{
	net_tls_free(t);
}

unsigned net_tls_server_handshake_s(const struct net_tls *t)
{
	return t->handshake_s;
}

void *net_tls_server_ssl_new(struct net_tls *t)
{
	/* the same bound on handshakes in progress as the SIP listeners',
	 * counted apart (each struct net_tls has its own) */
	unsigned now = atomic_fetch_add(&t->handshaking, 1);
	if (now >= t->max_handshakes) {
		atomic_fetch_sub(&t->handshaking, 1);
		errno = EAGAIN;
		return NULL;
	}
	SSL *ssl = SSL_new(t->server);
	if (!ssl) {
		atomic_fetch_sub(&t->handshaking, 1);
		ERR_clear_error();
		errno = ENOMEM;
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

void net_tls_server_handshake_done(struct net_tls *t)
{
	atomic_fetch_sub(&t->handshaking, 1);
}

bool net_tls_can_listen(const struct net *n)
{
	return n->tls && n->tls->server;
}

bool net_tls_can_connect(const struct net *n)
{
	return n->tls && n->tls->client;
}

/* ---- the socket BIO of a connection ----
 * OpenSSL's socket BIO reads whenever OpenSSL wants bytes: after sending its
 * flight a server reads at once and finds EAGAIN, and a first-byte check
 * for plain text would cost a recv(MSG_PEEK) of its own. This one reads
 * only when epoll said there may be bytes (rx_ready), checks the first byte
 * of a server connection as it reads it, sends without SIGPIPE, and notes
 * a peer that went away (no close_notify is written into a reset). */

static int sock_bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
	struct tls_conn *tc = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*got = 0;
	if (!tc->rx_ready) {
		BIO_set_retry_read(b);
		return 0;
	}
	ssize_t n = recv(tc->fd, buf, len, MSG_DONTWAIT);
	if (n > 0) {
		if (tc->server && !tc->peeked) {
			/* a TLS connection starts with a handshake record (0x16);
			 * SIP in clear starts with a letter: closed at once and
			 * counted, not left to OpenSSL's guesswork */
			if ((unsigned char)buf[0] != 0x16) {
				tc->plaintext = true;
				return 0;
			}
			tc->peeked = true;
		}
		/* a stream socket's short read took all the kernel had */
		if ((size_t)n < len)
			tc->rx_ready = false;
		*got = (size_t)n;
		return 1;
	}
	if (n == 0) {
		tc->eof = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		if (errno != EINTR)
			tc->rx_ready = false;
		BIO_set_retry_read(b);
		return 0;
	}
	if (errno == ECONNRESET || errno == EPIPE)
		tc->peer_gone = true;
	return 0;
}

/* Sends what is corked; false when the kernel did not take it all (the
 * connection is then broken: a record would be cut; see TLS_CORK_MAX).
 * Caller holds the TLS lock. */
static bool cork_flush(struct tls_conn *tc)
{
	size_t off = 0;
	while (off < tc->cork_len) {
		ssize_t n = send(tc->fd, tc->cork + off, tc->cork_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
				tc->peer_gone = true;
			tc->broken = true;
			break;
		}
		off += (size_t)n;
	}
	free(tc->cork);
	tc->cork = NULL;
	tc->cork_len = 0;
	return !tc->broken;
}

static int sock_bio_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct tls_conn *tc = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	*done = 0;
	if (tc->broken)
		return 0;
	if (tc->corked) {
		if (tc->cork_len + len <= TLS_CORK_MAX) {
			char *p = realloc(tc->cork, tc->cork_len + len);
			if (p) {
				memcpy(p + tc->cork_len, buf, len);
				tc->cork = p;
				tc->cork_len += len;
				*done = len;
				return 1;
			}
		}
		if (tc->cork_len && !cork_flush(tc))
			return 0;
	}
	ssize_t n = send(tc->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0) {
		*done = (size_t)n;
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		BIO_set_retry_write(b);
		return 0;
	}
	if (errno == ECONNRESET || errno == EPIPE)
		tc->peer_gone = true;
	return 0;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	struct tls_conn *tc = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH: /* nothing is buffered here */
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_EOF:
		return tc->eof;
	case BIO_C_GET_FD:
		if (ptr)
			*(int *)ptr = tc->fd;
		return tc->fd;
	default:
		return 0;
	}
}

static BIO_METHOD *sock_bio_method;
static pthread_once_t sock_bio_once = PTHREAD_ONCE_INIT;

/* once per process; kept to its end (OpenSSL's own methods are static) */
static void sock_bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
					     BIO_TYPE_DESCRIPTOR,
				     "pinhole socket");
	if (m && (!BIO_meth_set_read_ex(m, sock_bio_read) ||
		  !BIO_meth_set_write_ex(m, sock_bio_write) || !BIO_meth_set_ctrl(m, sock_bio_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	sock_bio_method = m;
}

/* ---- per connection ---- */

static struct tls_conn *tls_conn_new(SSL_CTX *ctx, int fd, bool server, bool park)
{
	pthread_once(&sock_bio_once, sock_bio_init);
	struct tls_conn *tc = calloc(1, sizeof *tc);
	if (!tc || !sock_bio_method) {
		free(tc);
		return NULL;
	}
	tc->fd = fd;
	tc->rx_ready = true; /* a server's ClientHello may be there already */
	tc->ssl = SSL_new(ctx);
	BIO *b = tc->ssl ? BIO_new(sock_bio_method) : NULL;
	if (!b) {
		SSL_free(tc->ssl);
		free(tc);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(b, tc);
	BIO_set_init(b, 1);
	SSL_set_bio(tc->ssl, b, b); /* the SSL owns it */
	pthread_mutex_init(&tc->lock, NULL);
	tc->server = server;
	tc->handshaking = true;
	if (server)
		SSL_set_accept_state(tc->ssl);
	else
		SSL_set_connect_state(tc->ssl);
	if (park && tls_park_watch(&tc->park, tc->ssl, server))
		tc->park = NULL; /* this one stays on OpenSSL */
	return tc;
}

int net_tls_accept(struct conn *c)
{
	struct net_tls *t = c->owner->net->tls;
	if (!t || !t->server)
		return ENOTSUP;
	/* a bound on handshakes in progress: each costs a private-key operation
	 * and an SSL object, and a stranger can start them for free */
	unsigned now = atomic_fetch_add(&t->handshaking, 1);
	if (now >= t->max_handshakes) {
		atomic_fetch_sub(&t->handshaking, 1);
		t->st.limited++;
		return EAGAIN;
	}
	c->tls = tls_conn_new(t->server, c->fd, true, t->park);
	if (!c->tls) {
		atomic_fetch_sub(&t->handshaking, 1);
		return ENOMEM;
	}
	c->tls->counted = true;
	return 0;
}

int net_tls_connect(struct conn *c)
{
	struct net_tls *t = c->owner->net->tls;
	if (!t || !t->client)
		return ENOTSUP;
	c->tls = tls_conn_new(t->client, c->fd, false, t->park);
	if (!c->tls)
		return ENOMEM;
	SSL_set_app_data(c->tls->ssl, c);
	SSL_SESSION *sess = resume_take(t, &c->flow.remote);
	if (sess) {
		SSL_set_session(c->tls->ssl, sess); /* takes its own reference */
		SSL_SESSION_free(sess);
	}
	/* RFC 5922: the peer's certificate must name the host we meant; pinhole
	 * routes to addresses, so that is the IP (an iPAddress entry) */
	char ip[INET6_ADDRSTRLEN];
	net_addr_ip_fmt(&c->flow.remote, ip, sizeof ip);
	if (t->verify_server) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->tls->ssl);
		X509_VERIFY_PARAM_set1_ip_asc(vp, ip);
	}
	return 0;
}

static void handshake_done(struct net_tls *t, struct tls_conn *tc)
{
	tc->handshaking = false;
	if (tc->counted) {
		atomic_fetch_sub(&t->handshaking, 1);
		tc->counted = false;
	}
}

static ssize_t sock_recv(void *arg, void *buf, size_t len)
{
	struct conn *c = arg;
	return recv(c->fd, buf, len, MSG_DONTWAIT);
}

static ssize_t sock_send(void *arg, const void *buf, size_t len)
{
	struct conn *c = arg;
	return send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void net_tls_conn_free(struct conn *c)
{
	struct tls_conn *tc = c->tls;
	if (!tc)
		return;
	struct net_tls *t = c->owner->net->tls;
	if (tc->cork_len)
		cork_flush(tc); /* an alert, or the last of a flight: best effort */
	tc->corked = false;
	if (tc->rec) {
		tls_rec_close_notify(tc->rec, sock_send, c); /* as SSL_shutdown: no wait */
		tls_rec_free(tc->rec);
		free(tc->rec);
		free(tc->subject);
		t->st.parked--;
	} else if (tc->handshaking) {
		handshake_done(t, tc);
	} else if (!tc->peer_gone) {
		SSL_shutdown(tc->ssl); /* a close_notify if the kernel takes it; no wait */
	}
	tls_park_free(tc->park, tc->ssl);
	SSL_free(tc->ssl);
	pthread_mutex_destroy(&tc->lock);
	free(tc);
	c->tls = NULL;
	ERR_clear_error();
}

int net_tls_uncork(struct conn *c)
{
	struct tls_conn *tc = c->tls;
	if (!tc || !tc->corked) /* the owner's own flag: no lock to read it */
		return 0;
	pthread_mutex_lock(&tc->lock);
	tc->corked = false;
	bool ok = !tc->cork_len || cork_flush(tc);
	pthread_mutex_unlock(&tc->lock);
	return ok ? 0 : EPIPE;
}

void net_tls_readable(struct conn *c)
{
	if (c->tls)
		c->tls->rx_ready = true;
}

int net_tls_defer_s(const struct net *n)
{
	return n->tls && n->tls->server ? (int)n->tls->handshake_s : 0;
}

bool net_tls_silent(const struct conn *c)
{
	return c->tls && c->tls->server && c->tls->handshaking && !c->tls->peeked;
}

bool net_tls_handshaking(const struct conn *c)
{
	return c->tls && c->tls->handshaking;
}

void net_tls_fail(struct conn *c, enum net_tls_cause cause)
{
	struct net_tls *t = c->owner->net->tls;
	switch (cause) {
	case NET_TLS_PLAINTEXT:
		t->st.plaintext++;
		break;
	case NET_TLS_TIMEOUT:
		t->st.timeout++;
		break;
	case NET_TLS_VERIFY:
		t->st.verify++;
		break;
	case NET_TLS_CLOSED:
		t->st.closed++;
		break;
	default:
		t->st.proto++;
		break;
	}
}

/* Why a handshake failed, from the SSL error and the verify result. */
static enum net_tls_cause fail_cause(struct tls_conn *tc, int sslerr)
{
	if (SSL_get_verify_result(tc->ssl) != X509_V_OK)
		return NET_TLS_VERIFY;
	unsigned long e = ERR_peek_error();
	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED ||
	     ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
	     ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
	     ERR_GET_REASON(e) == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
	     ERR_GET_REASON(e) == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN))
		return NET_TLS_VERIFY;
	if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
		return e ? NET_TLS_PROTO : NET_TLS_CLOSED;
	return NET_TLS_PROTO;
}

int net_tls_handshake(struct conn *c, uint32_t *want)
{
	struct tls_conn *tc = c->tls;
	struct net_tls *t = c->owner->net->tls;
	pthread_mutex_lock(&tc->lock);
	tc->corked = tc->server; /* until net_tls_uncork or the next line's wait */
	int r = SSL_do_handshake(tc->ssl);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
	/* waiting for the peer: the flight leaves now */
	if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && tc->corked) {
		tc->corked = false;
		if (tc->cork_len && !cork_flush(tc))
			e = SSL_ERROR_SYSCALL;
	}
	enum net_tls_cause cause = NET_TLS_PROTO;
	if (tc->plaintext) /* the socket BIO saw the first byte */
		cause = NET_TLS_PLAINTEXT, e = SSL_ERROR_SSL;
	else if (tc->server && !tc->peeked && (tc->eof || tc->peer_gone))
		cause = NET_TLS_CLOSED, e = SSL_ERROR_SYSCALL; /* went before a byte */
	else if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		cause = fail_cause(tc, e);
	bool resumed = r == 1 && SSL_session_reused(tc->ssl);
	pthread_mutex_unlock(&tc->lock);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLIN | EPOLLOUT;
		return EAGAIN;
	}
	if (e != SSL_ERROR_NONE) {
		if (log_get_level() >= LOG_DEBUG) {
			char why[256], a[NET_ADDR_STRLEN];
			ssl_reason(why, sizeof why);
			LOG_D("tls", "handshake with %s failed: %s",
			      net_addr_fmt(&c->flow.remote, a, sizeof a), why);
		}
		ERR_clear_error();
		net_tls_fail(c, cause);
		return EPROTO;
	}
	if (tc->park) {
		pthread_mutex_lock(&tc->lock);
		if (tls_park_handshake_done(tc->park, tc->ssl, loop_now_ms(c->owner->loop))) {
			tls_park_free(tc->park, tc->ssl); /* TLS 1.2, or a suite of its own */
			tc->park = NULL;
		}
		pthread_mutex_unlock(&tc->lock);
	}
	handshake_done(t, tc);
	t->st.handshakes++;
	if (resumed)
		t->st.resumed++;
	*want = EPOLLIN;
	return 0;
}

/* Parks c if OpenSSL holds nothing of it now: the record layer from the
 * traffic secrets and the sequence numbers found, the SSL object freed.
 * Once parked, never back. Caller holds the TLS lock; on the owner. */
static void try_park(struct conn *c, uint64_t now_ms)
{
	struct tls_conn *tc = c->tls;
	struct net_tls *t = c->owner->net->tls;
	struct tls_rec *r = NULL;
	/* the parked record layer writes to the socket itself: corked bytes first */
	if (tc->cork_len && !cork_flush(tc))
		return;
	tc->corked = false;
	int err = tls_park_try(tc->park, tc->ssl, tc->wblocked, now_ms, &r);
	if (err == EAGAIN)
		return;
	if (!err) {
		X509 *x = SSL_get0_peer_certificate(tc->ssl);
		if (x) {
			char sub[256]; /* ctl flows shows it: a bounded copy */
			X509_NAME_oneline(X509_get_subject_name(x), sub, sizeof sub);
			tc->subject = strdup(sub);
		}
	}
	tls_park_free(tc->park, tc->ssl);
	tc->park = NULL;
	if (err) {
		t->st.park_skipped++;
		return;
	}
	SSL_free(tc->ssl);
	tc->ssl = NULL;
	tc->rec = r;
	t->st.parked++;
	t->st.parked_total++;
	ERR_clear_error();
}

void net_tls_sweep(struct conn *c, uint64_t now_ms)
{
	struct tls_conn *tc = c->tls;
	if (!tc || !tc->park || tc->handshaking)
		return;
	pthread_mutex_lock(&tc->lock);
	try_park(c, now_ms);
	pthread_mutex_unlock(&tc->lock);
}

/* net_tls_read of a parked c; caller holds the TLS lock. */
static ssize_t parked_read(struct conn *c, void *buf, size_t len, bool *more)
{
	struct tls_conn *tc = c->tls;
	struct net_tls *t = c->owner->net->tls;
	ssize_t n = tls_rec_read(tc->rec, sock_recv, c, buf, len, more);
	int err = errno;
	if (n < 0 && err == EPROTO) {
		if (tc->rec->why == TLS_REC_DECRYPT)
			t->st.pc_decrypt++;
		else if (tc->rec->why == TLS_REC_ALERT)
			t->st.pc_alert++;
		else
			t->st.pc_proto++;
	}
	/* the peer asked for our KeyUpdate: now, unless a record waits half
	 * written (then it follows that record, on the next write) */
	if (tc->rec->ku_send && !tls_rec_write_pending(tc->rec))
		tls_rec_write(tc->rec, sock_send, c, NULL, 0);
	errno = err;
	return n;
}

ssize_t net_tls_read(struct conn *c, void *buf, size_t len, bool *more)
{
	struct tls_conn *tc = c->tls;
	size_t got = 0;
	pthread_mutex_lock(&tc->lock);
	if (tc->rec) {
		ssize_t n = parked_read(c, buf, len, more);
		int err = errno;
		pthread_mutex_unlock(&tc->lock);
		errno = err;
		return n;
	}
	int r = SSL_read_ex(tc->ssl, buf, len, &got);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
	/* read ahead: bytes OpenSSL read but has not decrypted count too */
	*more = r == 1 && SSL_has_pending(tc->ssl);
	/* a quiet read round: the moment to park (nothing is held then) */
	if (e == SSL_ERROR_WANT_READ && tc->park)
		try_park(c, loop_now_ms(c->owner->loop));
	pthread_mutex_unlock(&tc->lock);
	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_NONE:
		return (ssize_t)got;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		errno = EPROTO;
		return -1;
	}
}

ssize_t net_tls_write_locked(struct conn *c, const void *buf, size_t len)
{
	struct tls_conn *tc = c->tls;
	size_t done = 0;
	pthread_mutex_lock(&tc->lock);
	if (tc->rec) {
		ssize_t n = tls_rec_write(tc->rec, sock_send, c, buf, len);
		int err = errno;
		pthread_mutex_unlock(&tc->lock);
		errno = n < 0 && err != EAGAIN && err != EWOULDBLOCK ? EPIPE : err;
		return n;
	}
	int r = SSL_write_ex(tc->ssl, buf, len, &done);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
	tc->wblocked = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
	pthread_mutex_unlock(&tc->lock);
	ERR_clear_error();
	if (e == SSL_ERROR_NONE)
		return (ssize_t)done;
	errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
	return -1;
}

bool net_tls_timed_out(const struct conn *c, uint64_t now_ms)
{
	const struct net_tls *t = c->owner->net->tls;
	return c->tls && c->tls->handshaking && now_ms - c->opened_ms > t->handshake_s * 1000ull;
}

int net_conn_tls_info(struct net *n, uint64_t conn_id, char *version, size_t vlen, char *subject,
		      size_t slen)
{
	int err = 0;
	if (vlen)
		version[0] = '\0';
	if (slen)
		subject[0] = '\0';
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = net_conn_find_locked(n, conn_id);
	if (!c || !c->tls) {
		err = c ? ENOTSUP : ENOTCONN;
		goto out;
	}
	pthread_mutex_lock(&c->tls->lock);
	if (c->tls->rec) {
		snprintf(version, vlen, "TLSv1.3");
		snprintf(subject, slen, "%s", c->tls->subject ? c->tls->subject : "");
	} else if (!c->tls->handshaking) {
		snprintf(version, vlen, "%s", SSL_get_version(c->tls->ssl));
		X509 *x = SSL_get0_peer_certificate(c->tls->ssl);
		if (x && slen)
			X509_NAME_oneline(X509_get_subject_name(x), subject, (int)slen);
	}
	pthread_mutex_unlock(&c->tls->lock);
out:
	pthread_mutex_unlock(&n->conn_lock);
	return err;
}

void net_tls_stats_get(struct net *n, struct net_tls_stats *out)
{
	memset(out, 0, sizeof *out);
	struct net_tls *t = n->tls;
	if (!t)
		return;
	out->handshakes = t->st.handshakes;
	out->resumed = t->st.resumed;
	out->failed_plaintext = t->st.plaintext;
	out->failed_timeout = t->st.timeout;
	out->failed_verify = t->st.verify;
	out->failed_protocol = t->st.proto;
	out->failed_closed = t->st.closed;
	out->limited = t->st.limited;
	out->sessions_evicted = t->st.sessions_evicted;
	out->parked = t->st.parked;
	out->parked_total = t->st.parked_total;
	out->park_skipped = t->st.park_skipped;
	out->parked_closed_decrypt = t->st.pc_decrypt;
	out->parked_closed_protocol = t->st.pc_proto;
	out->parked_closed_alert = t->st.pc_alert;
	pthread_mutex_lock(&t->resume_lock);
	for (unsigned i = 0; i < TLS_RESUME_MAX; i++)
		out->sessions += t->resume[i].sess != NULL;
	pthread_mutex_unlock(&t->resume_lock);
	out->handshaking = t->handshaking;
	out->cert_expiry_s = t->expiry_s ? t->expiry_s - (int64_t)time(NULL) : 0;
	out->have_cert = t->expiry_s != 0;
}
