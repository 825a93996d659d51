/* TURN over TLS: a tls: listener relays as a TCP one does after the handshake; plain text to it is
 * closed unanswered; handshakes are bounded in number and in time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "edge/edge.h"
#include "probe/probe.h"
#include "turnc.h"
#include "certs.h"

static struct tc_files certs;

/* A self-signed certificate for 127.0.0.1 (in subjectAltName, as RFC 5922
 * wants for an address), made at run time (no key in the tree). */
static int make_cert(void **state)
{
	(void)state;
	tc_temp_self_signed(&certs, "turn-tls", "turn test", 86400);
	EVP_PKEY *k = tc_key();
	X509 *x = tc_cert(k, "turn test", "IP:127.0.0.1", NULL, NULL, -60, 86400);
	tc_write_cert(certs.cert, x);
	tc_write_key(certs.key, k);
	X509_free(x);
	EVP_PKEY_free(k);
	return 0;
}

static int remove_cert(void **state)
{
	(void)state;
	tc_temp_remove(&certs);
	return 0;
}

/* [turn] with a tls: listener on 127.0.0.1 (and a udp: one the helpers want). */
static void srv_start(struct tt_srv *s, const char *tls_extra)
{
	const struct conf_key *const tables[] = {turn_conf_keys, edge_tls_conf_keys, NULL};
	memset(s, 0, sizeof s[0]);
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	char text[2048], err[256];
	snprintf(text, sizeof text,
		 "[turn]\nlisten = udp:127.0.0.1:0, tls:127.0.0.1:0\nrealm = " REALM "\n"
		 "relay_address = 127.0.0.1\nrelay_ports = 24800-24999\n"
		 "allowed_peers = 127.0.0.0/8\n"
		 "[tls]\ncertificate = %s\nprivate_key = %s\n%s",
		 certs.cert, certs.key, tls_extra);
	if (conf_load_string(s->conf, "test", text, err, sizeof err))
		fail_msg("%s", err);
	assert_int_equal(store_cred_alloc(&s->creds), 0);
	struct store_cred_entry e;
	assert_int_equal(
	    auth_ha1_all(SLICE_LIT("alice"), SLICE_LIT(REALM), SLICE_LIT("wonder"), &e), 0);
	assert_int_equal(store_cred_set(s->creds, SLICE_LIT("alice"), SLICE_LIT(REALM), &e), 0);
	assert_int_equal(turn_start(&s->t, s->conf, s->creds), 0);
	s->udp = *turn_listen_addr(s->t, NET_UDP, 0);
	assert_non_null(turn_listen_addr(s->t, NET_TLS, 0));
	assert_null(turn_listen_addr(s->t, NET_TCP, 0));
	s->tcp = *turn_listen_addr(s->t, NET_TLS, 0);
}

static int tcp_to(const struct net_addr *a)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &a->u.sa, net_addr_len(a)), 0);
	return fd;
}

/* Whether the server closes fd within 10 s without a byte (a bound for
 * what must happen, not a measure). */
static bool closed_unanswered(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	if (poll(&p, 1, 10000) != 1)
		return false;
	char b[64];
	return recv(fd, b, sizeof b, 0) <= 0;
}

/* ---- a TLS client for the plain-TCP test client: a pump on a thread ---- */

struct pump {
	int lfd, plain, tls_fd;
	struct net_addr at; /* where the test client connects */
	struct net_addr to; /* the TURN tls: listener */
	SSL_CTX *ctx;
	SSL *ssl;
	volatile bool stop;
	pthread_t th;
};

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	p->plain = accept(p->lfd, NULL, NULL);
	char b[16384];
	while (!p->stop && p->plain >= 0) {
		struct pollfd pf[2] = {{p->plain, POLLIN, 0}, {p->tls_fd, POLLIN, 0}};
		if (SSL_pending(p->ssl) == 0 && poll(pf, 2, 100) <= 0)
			continue;
		if (pf[0].revents) {
			ssize_t n = recv(p->plain, b, sizeof b, 0);
			if (n <= 0)
				break;
			if (SSL_write(p->ssl, b, (int)n) != (int)n)
				break;
		}
		if (pf[1].revents || SSL_pending(p->ssl)) {
			int n = SSL_read(p->ssl, b, sizeof b);
			if (n <= 0 && SSL_get_error(p->ssl, n) == SSL_ERROR_WANT_READ)
				continue; /* a record that was no data (TLS 1.3's tickets) */
			if (n <= 0)
				break;
			if (send(p->plain, b, (size_t)n, 0) != n)
				break;
		}
	}
	return NULL;
}

static void pump_start(struct pump *p, const struct net_addr *to)
{
	memset(p, 0, sizeof *p);
	p->to = *to;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	net_addr_parse("127.0.0.1:0", 0, &p->at);
	assert_int_equal(bind(p->lfd, &p->at.u.sa, net_addr_len(&p->at)), 0);
	assert_int_equal(listen(p->lfd, 1), 0);
	net_sock_addr(p->lfd, &p->at);
	p->tls_fd = tcp_to(to);
	p->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->ctx);
	SSL_CTX_load_verify_locations(p->ctx, certs.cert, NULL);
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
	/* SSL_read must not wait for data after a ticket: the client's request
	 * may be waiting on the other side of this thread */
	SSL_CTX_clear_mode(p->ctx, SSL_MODE_AUTO_RETRY);
	p->ssl = SSL_new(p->ctx);
	SSL_set_fd(p->ssl, p->tls_fd);
	assert_int_equal(SSL_connect(p->ssl), 1); /* our certificate, verified */
	assert_int_equal(pthread_create(&p->th, NULL, pump_main, p), 0);
}

static void pump_stop(struct pump *p)
{
	p->stop = true;
	shutdown(p->lfd, SHUT_RDWR);
	pthread_join(p->th, NULL);
	SSL_free(p->ssl);
	SSL_CTX_free(p->ctx);
	close(p->tls_fd);
	if (p->plain >= 0)
		close(p->plain);
	close(p->lfd);
}

/* tt_allocate, with the mapped address the TLS connection's own (the pump's
 * socket), not the test client's */
static int allocate(struct tt_cli *c, const struct pump *p, struct net_addr *relay)
{
	tt_challenge(c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	tt_add_auth(c, &e);
	int code = tt_xchg(c, &b);
	if (code == 0) {
		tt_assert_signed(c);
		assert_int_equal(stun_msg_addr(&c->m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay->u.ss),
				 0);
		struct net_addr mapped, local;
		assert_int_equal(stun_msg_addr(&c->m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped.u.ss),
				 0);
		net_sock_addr(p->tls_fd, &local);
		assert_true(net_addr_eq(&mapped, &local));
	}
	buf_free(&b);
	return code;
}

/* An allocation over TLS: a permission, a channel, ChannelData both ways
 * (padded to 4 bytes, as on TCP), the allocation shown as tls:. */
static void test_relay_over_tls(void **state)
{
	(void)state;
	struct tt_srv s;
	srv_start(&s, "");
	int64_t ok0 = tt_counter("turn_tls_handshakes_total", NULL);
	struct pump p;
	pump_start(&p, &s.tcp);
	struct tt_srv via = s;
	via.tcp = p.at;
	struct tt_cli c;
	tt_cli_open(&c, &via, true, "alice", "wonder");
	struct net_addr relay, pa, from;
	assert_int_equal(allocate(&c, &p, &relay), 0);
	assert_int_equal(tt_counter("turn_tls_handshakes_total", NULL), ok0 + 1);
	int pfd = tt_peer_open(&pa);
	char ps[NET_ADDR_STRLEN];
	net_addr_fmt(&pa, ps, sizeof ps);
	assert_int_equal(tt_perm(&c, ps), 0);
	assert_int_equal(tt_chan_bind(&c, 0x4001, &pa), 0);
	uint8_t cd[12] = {0x40, 0x01, 0x00, 0x07, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 0};
	tt_cli_send(&c, cd, sizeof cd);
	uint8_t got[64];
	assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 7);
	assert_memory_equal(got, "channel", 7);
	assert_true(net_addr_eq(&from, &relay));
	assert_int_equal(sendto(pfd, "reply", 5, 0, &relay.u.sa, net_addr_len(&relay)), 5);
	assert_true(tt_cli_recv(&c));
	assert_int_equal(c.rxlen, 12);
	assert_memory_equal(c.rx, "\x40\x01\x00\x05reply", 9);
	struct buf dump;
	buf_init(&dump);
	assert_int_equal(turn_dump_json(s.t, &dump), 0);
	buf_append(&dump, "", 1);
	assert_non_null(strstr(dump.data, "\"client\":\"tls:127.0.0.1:"));
	buf_free(&dump);
	/* the connection closes: its allocation goes with it (RFC 8656 3.1) */
	tt_cli_close(&c);
	pump_stop(&p);
	for (int i = 0; i < 500 && turn_allocation_count(s.t); i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 0);
	close(pfd);
	tt_srv_stop(&s);
}

/* TURN in plain text to the tls: port: no answer, closed, counted. */
static void test_plaintext_refused(void **state)
{
	(void)state;
	struct tt_srv s;
	srv_start(&s, "");
	int64_t bad0 = tt_counter("turn_tls_handshake_failures_total", "cause=\"protocol\"");
	struct tt_cli c;
	tt_cli_open(&c, &s, true, "alice", "wonder");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_BINDING);
	assert_int_equal(stun_enc_end(&e), 0);
	tt_cli_send(&c, b.data, b.len);
	assert_true(closed_unanswered(c.fd));
	assert_int_equal(tt_counter("turn_tls_handshake_failures_total", "cause=\"protocol\""),
			 bad0 + 1);
	buf_free(&b);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* Handshakes a stranger starts and never ends: at most max_handshakes at
 * once (more closed at accept, counted), each closed after
 * handshake_timeout; then a real client gets through. */
static void test_handshakes_bounded(void **state)
{
	(void)state;
	struct tt_srv s;
	srv_start(&s, "max_handshakes = 2\nhandshake_timeout = 1\n");
	int64_t lim0 = tt_counter("turn_tls_handshake_failures_total", "cause=\"limited\"");
	int64_t to0 = tt_counter("turn_tls_handshake_failures_total", "cause=\"timeout\"");
	int fd[3];
	for (int i = 0; i < 3; i++)
		fd[i] = tcp_to(&s.tcp);
	/* the third is over the bound: closed at once */
	assert_true(closed_unanswered(fd[2]));
	assert_int_equal(tt_counter("turn_tls_handshake_failures_total", "cause=\"limited\""),
			 lim0 + 1);
	/* the two others: closed once their handshake_timeout is over */
	assert_true(closed_unanswered(fd[0]));
	assert_true(closed_unanswered(fd[1]));
	assert_int_equal(tt_counter("turn_tls_handshake_failures_total", "cause=\"timeout\""),
			 to0 + 2);
	/* their slots are free again */
	struct pump p;
	pump_start(&p, &s.tcp);
	pump_stop(&p);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	tt_srv_stop(&s);
}

/* probe --turn over tls: the whole check through the server's tls: listener
 * with its certificate trusted; then the attacks a TLS client must refuse: a
 * certificate no trusted CA signed, one for another name (RFC 5922); and a
 * port that does not speak TLS. None of them allocates. */
static void test_probe_over_tls(void **state)
{
	(void)state;
	struct tt_srv s;
	srv_start(&s, "");
	struct probe_turn_opts o = {.transport = PROBE_TURN_TLS, .timeout_ms = 5000};
	memcpy(&o.server, &s.tcp.u.ss, sizeof o.server);
	snprintf(o.cred.user, sizeof o.cred.user, "alice");
	snprintf(o.cred.pass, sizeof o.cred.pass, "wonder");
	o.ca_file = certs.cert;
	struct probe_turn_result r;
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_true(r.reached && r.allocated && r.permitted && r.up && r.down && r.channel);
	assert_true(r.deallocated);
	assert_string_equal(r.tls_version, "TLSv1.3");
	assert_int_equal(probe_turn_exit(&r), 0);
	struct buf b;
	buf_init(&b);
	probe_turn_report_json(&o, &r, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "\"transport\":\"tls\""));
	assert_non_null(strstr(b.data, "\"tls_version\":\"TLSv1.3\""));
	buf_free(&b);

	int64_t hs0 = tt_counter("turn_tls_handshakes_total", NULL);
	/* the system store does not know the test's self-signed certificate */
	o.ca_file = NULL;
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_true(r.tls_failed && r.tls_refused && !r.reached && !r.allocated);
	assert_non_null(strstr(r.error, "certificate not trusted"));
	assert_int_equal(probe_turn_exit(&r), 7);
	/* trusted, but for 127.0.0.1, not the name asked for */
	o.ca_file = certs.cert;
	snprintf(o.host, sizeof o.host, "turn.example.net");
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_true(r.tls_refused && !r.allocated);
	assert_int_equal(probe_turn_exit(&r), 7);
	assert_int_equal(tt_counter("turn_tls_handshakes_total", NULL), hs0);
	o.host[0] = 0;
	assert_int_equal(turn_allocation_count(s.t), 0);

	/* a plain TCP port that answers nothing TLS: the handshake fails, bounded */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct net_addr la;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &la), 0);
	assert_int_equal(bind(lfd, &la.u.sa, net_addr_len(&la)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	net_sock_addr(lfd, &la);
	memcpy(&o.server, &la.u.ss, sizeof o.server);
	o.timeout_ms = 500;
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_true(r.tls_failed && !r.tls_refused && !r.reached);
	assert_int_equal(probe_turn_exit(&r), 7);
	close(lfd);
	/* nobody listening: not reached, exit 1 */
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_false(r.reached || r.tls_failed);
	assert_int_equal(probe_turn_exit(&r), 1);
	tt_srv_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relay_over_tls),
	    cmocka_unit_test(test_plaintext_refused),
	    cmocka_unit_test(test_handshakes_bounded),
	    cmocka_unit_test(test_probe_over_tls),
	};
	return cmocka_run_group_tests(tests, make_cert, remove_cert);
}
