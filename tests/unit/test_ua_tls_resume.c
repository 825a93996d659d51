/* ua and its TLS client: session resumption. A ua whose tls: flow drops reconnects with the
 * ticket of the connection before and resumes; a ticket is offered only to the target (server
 * name and address) that gave it. The server is OpenSSL's own (a blocking one on this thread,
 * checking what each ClientHello offers), so nothing of pinhole's server side is assumed. The
 * certificates are made here at run time. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sip/sip.h"
#include "ua/ua.h"
#include "certs.h"

#define WAIT_MS 20000 /* a bound on waits for things that must happen, not a measure */

static char dir[64], ca_pem[128], srv_pem[128], srv_key[128];

static int make_certs(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pinhole-uatls-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
	snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", dir);
	snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
	EVP_PKEY *cak = tc_key(), *sk = tc_key();
	X509 *ca = tc_cert(cak, "pinhole test CA", NULL, NULL, NULL, -60, 3600);
	/* one server, two names and its address */
	X509 *srv = tc_cert(sk, "srv", "IP:127.0.0.1, DNS:sip.test, DNS:other.test", ca, cak, -60,
			    3600);
	tc_write_cert(ca_pem, ca);
	tc_write_cert(srv_pem, srv);
	tc_write_key(srv_key, sk);
	X509_free(ca), X509_free(srv);
	EVP_PKEY_free(cak), EVP_PKEY_free(sk);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	unlink(ca_pem), unlink(srv_pem), unlink(srv_key);
	rmdir(dir);
	return 0;
}

/* ---- a TLS server: OpenSSL's defaults (TLS 1.3, stateless tickets) ---- */

struct srv {
	int lfd;
	struct net_addr addr;
	SSL_CTX *ctx;
	bool psk_offered; /* the last ClientHello carried a pre_shared_key */
};

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	struct srv *s = arg;
	const unsigned char *p;
	size_t len;
	s->psk_offered = SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &p, &len) == 1;
	return SSL_CLIENT_HELLO_SUCCESS;
}

static void srv_start(struct srv *s)
{
	memset(s, 0, sizeof *s);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	net_addr_parse("127.0.0.1:0", 0, &s->addr);
	assert_int_equal(bind(s->lfd, &s->addr.u.sa, net_addr_len(&s->addr)), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	net_sock_addr(s->lfd, &s->addr);
	s->ctx = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate_chain_file(s->ctx, srv_pem), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, srv_key, SSL_FILETYPE_PEM), 1);
	SSL_CTX_set_client_hello_cb(s->ctx, on_client_hello, s);
}

static void srv_stop(struct srv *s)
{
	SSL_CTX_free(s->ctx);
	close(s->lfd);
}

/* The next connection, its handshake done (blocking, bounded by a receive
 * timeout so that a broken client fails the test rather than hanging it). */
static SSL *srv_accept(struct srv *s, int *fdp)
{
	struct pollfd p = {.fd = s->lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	int fd = accept(s->lfd, NULL, NULL);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	SSL *ssl = SSL_new(s->ctx);
	SSL_set_fd(ssl, fd);
	s->psk_offered = false;
	assert_int_equal(SSL_accept(ssl), 1);
	*fdp = fd;
	return ssl;
}

enum end { END_CLOSE_NOTIFY, END_RESET, END_FIN };

/* The end of a connection: with a close_notify, or dropped without one: a
 * reset (a NAT that forgot the flow) or a bare FIN (a server process that
 * died: the kernel closes its sockets). */
static void srv_close(SSL *ssl, int fd, enum end how)
{
	if (how == END_RESET) {
		struct linger l = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	} else if (how == END_CLOSE_NOTIFY) {
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	close(fd);
}

/* ---- the TLS client alone (net_tls_sock, as the ua drives it) ---- */

/* One connection served on a thread of its own: handshake, a line, the
 * end (dropped or closed), and what the ClientHello offered. */
struct serve_one {
	struct srv *s;
	enum end how;
	int read_it[2]; /* the client has read the line: a reset loses nothing unread */
	bool offered, resumed;
};

static void *serve_one(void *arg)
{
	struct serve_one *o = arg;
	int fd;
	SSL *ssl = srv_accept(o->s, &fd);
	o->offered = o->s->psk_offered;
	o->resumed = SSL_session_reused(ssl) == 1;
	size_t done;
	assert_int_equal(SSL_write_ex(ssl, "OK\n", 3, &done), 1);
	char b[8];
	if (o->how != END_CLOSE_NOTIFY)
		assert_int_equal(read(o->read_it[0], b, 1), 1);
	else /* the client's close_notify, or its close */
		SSL_read_ex(ssl, b, sizeof b, &done);
	srv_close(ssl, fd, o->how);
	return NULL;
}

/* Connects to s as host, shakes hands, reads the server's line (the tickets
 * come before it), closes; returns whether the handshake resumed. */
static bool client_round(struct net_tls_client *cl, struct srv *s, const char *host,
			 bool *offered, enum end how)
{
	bool drop = how != END_CLOSE_NOTIFY;
	struct serve_one o = {.s = s, .how = how};
	assert_int_equal(pipe(o.read_it), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, serve_one, &o), 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, &s->addr.u.sa, net_addr_len(&s->addr)), 0);
	struct net_tls_sock *ts;
	assert_int_equal(net_tls_sock_alloc(&ts, cl, fd, host), 0);
	uint32_t want;
	char why[200];
	int err;
	for (int i = 0; (err = net_tls_sock_handshake(ts, &want, why, sizeof why)) == EAGAIN; i++) {
		assert_true(i < 1000);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, 20);
	}
	assert_int_equal(err, 0);
	bool resumed = net_tls_sock_resumed(ts);
	char line[16] = "";
	size_t got = 0;
	for (int i = 0; i < 1000 && !memchr(line, '\n', got); i++) {
		bool more;
		ssize_t k = net_tls_sock_read(ts, line + got, sizeof line - 1 - got, &more);
		if (k > 0) {
			got += (size_t)k;
		} else if (k == 0 || errno != EAGAIN) {
			break;
		} else {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			poll(&p, 1, 20);
		}
	}
	assert_int_equal(got, 3);
	if (drop) { /* the client sees the end before it closes */
		assert_int_equal(write(o.read_it[1], "x", 1), 1);
		pthread_join(th, NULL);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, WAIT_MS);
		bool more;
		assert_true(net_tls_sock_read(ts, line, sizeof line, &more) <= 0);
	}
	net_tls_sock_free(ts);
	close(fd);
	if (!drop)
		pthread_join(th, NULL);
	close(o.read_it[0]), close(o.read_it[1]);
	assert_int_equal(resumed, o.resumed);
	*offered = o.offered;
	return resumed;
}

/* The second connection to the same name and address resumes, also after
 * the first was dropped without a close_notify; a ticket is never offered
 * to another name of the same server, and stays for the name it came from. */
static void sock_resumes_by_target(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s);
	struct net_tls_client *cl;
	char why[256];
	assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
	bool offered;
	assert_false(client_round(cl, &s, "sip.test", &offered, END_FIN));
	assert_false(offered);
	/* ended without a close_notify, and resumed all the same */
	assert_true(client_round(cl, &s, "sip.test", &offered, END_RESET));
	assert_true(offered);
	assert_true(client_round(cl, &s, "sip.test", &offered, END_CLOSE_NOTIFY));
	assert_true(offered);
	/* another name of the same server, at the same address: no ticket */
	assert_false(client_round(cl, &s, "other.test", &offered, END_CLOSE_NOTIFY));
	assert_false(offered);
	/* nor to the address by itself */
	assert_false(client_round(cl, &s, "127.0.0.1", &offered, END_CLOSE_NOTIFY));
	assert_false(offered);
	/* the first name's ticket (from its resumed connection) is still there */
	assert_true(client_round(cl, &s, "sip.test", &offered, END_CLOSE_NOTIFY));
	assert_true(offered);
	net_tls_client_free(cl);
	srv_stop(&s);
}

/* ---- the ua ---- */

struct rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct {
		enum ua_event_kind kind;
		bool tls, resumed;
	} ev[64];
	size_t n;
};

static void on_event(const struct ua_event *ev, void *arg)
{
	struct rec *r = arg;
	pthread_mutex_lock(&r->mu);
	if (r->n < 64) {
		r->ev[r->n].kind = ev->kind;
		r->ev[r->n].tls = ev->tls != NULL;
		r->ev[r->n].resumed = ev->tls_resumed;
		r->n++;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Index of the first event of kind at or after from. */
static size_t wait_event(struct rec *r, enum ua_event_kind kind, size_t from)
{
	pthread_mutex_lock(&r->mu);
	for (int waited = 0; waited < WAIT_MS / 100; waited++) {
		for (size_t i = from; i < r->n; i++) {
			if (r->ev[i].kind == kind) {
				pthread_mutex_unlock(&r->mu);
				return i;
			}
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000L;
		if (ts.tv_nsec >= 1000000000L)
			ts.tv_sec++, ts.tv_nsec -= 1000000000L;
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	fail_msg("no event %s", ua_event_name(kind));
	return 0;
}

static void *run_loop(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void post_shutdown(void *arg)
{
	ua_shutdown(arg);
}

/* The next SIP request over ssl (blocking, bounded by the socket's timeout). */
static void read_request(SSL *ssl, char *buf, size_t cap, struct sip_msg *m)
{
	size_t len = 0;
	for (;;) {
		size_t ml = 0;
		if (len && sip_frame(buf, len, cap, &ml) == 0 && buf[0] != '\r') {
			assert_int_equal(sip_msg_parse(m, buf, ml, true, NULL), 0);
			return;
		}
		if (len && buf[0] == '\r' && ml) { /* a keepalive: not ours to answer here */
			memmove(buf, buf + ml, len - ml);
			len -= ml;
			continue;
		}
		size_t got = 0;
		assert_int_equal(SSL_read_ex(ssl, buf + len, cap - len, &got), 1);
		len += got;
	}
}

static void reply_200(SSL *ssl, const struct sip_msg *req)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(
	    sip_build_response(&b, req, 200, NULL, SLICE_NULL, SLICE_LIT("srv1"), NULL), 0);
	size_t done;
	assert_int_equal(SSL_write_ex(ssl, b.data, b.len, &done), 1);
	buf_free(&b);
}

/* A ua registered over tls: whose connection the server drops: it connects
 * again at once, offers the ticket of the first connection, and the
 * handshake resumes (the server says so, and the ua's flow-up says so). */
static void ua_reconnect_resumes(void **state)
{
	(void)state;
	static char buf[8192];
	static struct sip_msg m;
	struct srv s;
	srv_start(&s);
	struct rec r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct ua_conf c;
	memset(&c, 0, sizeof c);
	snprintf(c.aor, sizeof c.aor, "sip:alice@sip.test");
	snprintf(c.instance, sizeof c.instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	snprintf(c.ca_file, sizeof c.ca_file, "%s", ca_pem);
	struct ua_proxy *px = &c.proxy[c.n_proxy++];
	px->tp = NET_TLS;
	px->addr = s.addr;
	snprintf(px->host, sizeof px->host, "sip.test");
	px->port = net_addr_port(&s.addr);
	struct loop *l;
	struct ua *ua;
	pthread_t th;
	assert_int_equal(loop_alloc(&l), 0);
	assert_int_equal(ua_alloc(&ua, l, &c, on_event, &r), 0);
	assert_int_equal(ua_start(ua), 0);
	assert_int_equal(pthread_create(&th, NULL, run_loop, l), 0);

	int fd1;
	SSL *c1 = srv_accept(&s, &fd1);
	assert_false(s.psk_offered);
	read_request(c1, buf, sizeof buf, &m);
	assert_int_equal(m.method, SIP_REGISTER);
	reply_200(c1, &m);
	size_t up1 = wait_event(&r, UA_EV_FLOW_UP, 0);
	assert_true(r.ev[up1].tls);
	assert_false(r.ev[up1].resumed);
	size_t i = wait_event(&r, UA_EV_REGISTERED, 0);
	/* the ua has read the 200, so the ticket before it too; then the
	 * connection is gone without a close_notify */
	srv_close(c1, fd1, END_RESET);
	i = wait_event(&r, UA_EV_FLOW_DOWN, i);

	int fd2;
	SSL *c2 = srv_accept(&s, &fd2);
	assert_true(s.psk_offered);
	assert_int_equal(SSL_session_reused(c2), 1);
	read_request(c2, buf, sizeof buf, &m);
	assert_int_equal(m.method, SIP_REGISTER);
	reply_200(c2, &m);
	size_t up2 = wait_event(&r, UA_EV_FLOW_UP, up1 + 1);
	assert_true(r.ev[up2].tls);
	assert_true(r.ev[up2].resumed);
	wait_event(&r, UA_EV_REGISTERED, i);
	struct ua_stats st;
	ua_stats_get(ua, &st);
	assert_int_equal(st.tls_handshakes, 2);
	assert_int_equal(st.tls_resumed, 1);

	/* unregistration over the resumed connection, then done */
	assert_int_equal(loop_post(l, post_shutdown, ua), 0);
	read_request(c2, buf, sizeof buf, &m);
	assert_int_equal(m.method, SIP_REGISTER);
	reply_200(c2, &m);
	wait_event(&r, UA_EV_DONE, 0);
	loop_stop(l);
	pthread_join(th, NULL);
	ua_free(ua);
	loop_free(l);
	srv_close(c2, fd2, END_CLOSE_NOTIFY);
	srv_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sock_resumes_by_target),
	    cmocka_unit_test(ua_reconnect_resumes),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
