/* net: TLS over loopback: certificates rejected at setup with their file and reason, a round
 * trip, outgoing TLS verified, plain text to a TLS port, a half-open handshake flood. The
 * certificates are made here at run time (no key is kept in the tree). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/net.h"
#include "testenv.h"
#include "certs.h"

/* ---- certificates, made at run time ---- */

static char dir[64];
static char sni_pem[128], sni_key[128];
static char ca_pem[128], srv_pem[128], srv_key[128], other_key[128], expired_pem[128],
	expired_key[128], junk[128];

static int make_certs(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pinhole-tls-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
	snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", dir);
	snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
	snprintf(other_key, sizeof other_key, "%s/other.key", dir);
	snprintf(expired_pem, sizeof expired_pem, "%s/expired.pem", dir);
	snprintf(expired_key, sizeof expired_key, "%s/expired.key", dir);
	snprintf(junk, sizeof junk, "%s/junk.pem", dir);
	EVP_PKEY *cak = tc_key(), *sk = tc_key(), *ok = tc_key(), *ek = tc_key();
	X509 *ca = tc_cert(cak, "pinhole test CA", NULL, NULL, NULL, -60, 3600);
	X509 *srv = tc_cert(sk, "srv", "IP:127.0.0.1", ca, cak, -60, 3600);
	X509 *exp = tc_cert(ek, "old", "IP:127.0.0.1", ca, cak, -7200, -3600);
	X509 *sni = tc_cert(ok, "sip.other.test", "DNS:sip.other.test", ca, cak, -60, 3600);
	snprintf(sni_pem, sizeof sni_pem, "%s/sni.pem", dir);
	snprintf(sni_key, sizeof sni_key, "%s/sni.key", dir);
	tc_write_cert(sni_pem, sni);
	tc_write_key(sni_key, ok);
	X509_free(sni);
	tc_write_cert(ca_pem, ca);
	tc_write_cert(srv_pem, srv);
	tc_write_key(srv_key, sk);
	tc_write_key(other_key, ok);
	tc_write_cert(expired_pem, exp);
	tc_write_key(expired_key, ek);
	FILE *f = fopen(junk, "w");
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	X509_free(ca), X509_free(srv), X509_free(exp);
	EVP_PKEY_free(cak), EVP_PKEY_free(sk), EVP_PKEY_free(ok), EVP_PKEY_free(ek);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	const char *files[] = {sni_pem, sni_key, ca_pem, srv_pem, srv_key, other_key, expired_pem, expired_key, junk};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		unlink(files[i]);
	rmdir(dir);
	return 0;
}

/* ---- the net under test ---- */

#define MAX_RECS 16
static struct {
	pthread_mutex_t lock;
	struct flow f[MAX_RECS];
	char data[MAX_RECS][64];
	size_t n;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_recv(struct worker *w, const struct flow *f, const char *data, size_t len, void *arg)
{
	(void)w, (void)arg;
	pthread_mutex_lock(&R.lock);
	if (R.n < MAX_RECS) {
		R.f[R.n] = *f;
		snprintf(R.data[R.n], sizeof R.data[0], "%.*s", (int)len, data);
		R.n++;
	}
	pthread_mutex_unlock(&R.lock);
}

static size_t rec_count(void)
{
	pthread_mutex_lock(&R.lock);
	size_t n = R.n;
	pthread_mutex_unlock(&R.lock);
	return n;
}

static struct net_tls_conf tls_conf(void)
{
	return (struct net_tls_conf){.certificate = srv_pem,
				     .private_key = srv_key,
				     .ca_file = ca_pem,
				     .verify_server = true,
				     .handshake_s = 1,
				     .max_handshakes = 4};
}

/* A net with one tls: listener on 127.0.0.1 and two workers. */
static struct net *srv_start(const struct net_tls_conf *tc)
{
	struct net_conf nc = {.workers = 2, .max_msg = 1500, .tcp_handshake_s = 30};
	pthread_mutex_lock(&R.lock);
	R.n = 0;
	pthread_mutex_unlock(&R.lock);
	struct net *n;
	assert_int_equal(net_alloc(&n, &nc), 0);
	char err[512];
	if (net_tls_setup(n, tc, err, sizeof err))
		fail_msg("setup: %s", err);
	struct net_listener_conf l = {.tp = NET_TLS};
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &l.addr), 0);
	assert_int_equal(net_listen(n, &l, NULL), 0);
	net_set_recv(n, on_recv, test_frame_lines, NULL);
	assert_int_equal(net_start(n), 0);
	return n;
}

static struct net_tls_stats tls_stats(struct net *n)
{
	struct net_tls_stats st;
	net_tls_stats_get(n, &st);
	return st;
}

static int tcp_client(const struct net_addr *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

/* A blocking-ish TLS client over fd (poll between steps); 0, or the
 * handshake's error with why. */
static int client_handshake(struct net_tls_sock *s, int fd, char *why, size_t wl)
{
	for (int i = 0; i < 500; i++) {
		uint32_t want;
		int err = net_tls_sock_handshake(s, &want, why, wl);
		if (err != EAGAIN)
			return err;
		struct pollfd p = {.fd = fd, .events = (want & EPOLLOUT) ? POLLOUT : POLLIN};
		poll(&p, 1, 10);
	}
	return ETIMEDOUT;
}

static size_t client_read(struct net_tls_sock *s, int fd, char *out, size_t cap)
{
	size_t got = 0;
	out[0] = '\0';
	for (int i = 0; i < 300 && !memchr(out, '\n', got); i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, 10);
		bool more;
		ssize_t k = net_tls_sock_read(s, out + got, cap - 1 - got, &more);
		if (k > 0) {
			got += (size_t)k;
			out[got] = '\0';
		} else if (k == 0 || errno != EAGAIN) {
			break;
		}
	}
	return got;
}

/* ---- tests ---- */

static void expect_setup_error(struct net_tls_conf tc, const char *file, const char *reason)
{
	struct net *n;
	struct net_conf nc = {.workers = 1};
	assert_int_equal(net_alloc(&n, &nc), 0);
	char err[512] = "";
	assert_int_equal(net_tls_setup(n, &tc, err, sizeof err), EINVAL);
	if (!strstr(err, file) || !strstr(err, reason))
		fail_msg("error \"%s\" should name %s and say \"%s\"", err, file, reason);
	/* a net without a certificate opens no tls: listener */
	struct net_listener_conf l = {.tp = NET_TLS};
	net_addr_parse("127.0.0.1:0", 0, &l.addr);
	assert_int_not_equal(net_listen(n, &l, NULL), 0);
	net_free(n);
}

/* Bad input at start is an error naming the file and the reason. */
static void setup_rejects_bad_files(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	tc.certificate = "/nonexistent/cert.pem";
	expect_setup_error(tc, "/nonexistent/cert.pem", "No such file");
	tc = tls_conf();
	tc.certificate = junk;
	expect_setup_error(tc, junk, "PEM");
	tc = tls_conf();
	tc.private_key = other_key;
	expect_setup_error(tc, other_key, "does not match");
	tc = tls_conf();
	tc.ca_file = "/nonexistent/ca.pem";
	expect_setup_error(tc, "/nonexistent/ca.pem", "No such file");
}

/* An expired certificate loads (with a warning) and shows in the stats. */
static void expiry_in_stats(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	struct net_tls_stats st = tls_stats(n);
	assert_true(st.have_cert);
	assert_true(st.cert_expiry_s > 3000 && st.cert_expiry_s <= 3600);
	net_free(n);
	tc.certificate = expired_pem;
	tc.private_key = expired_key;
	n = srv_start(&tc);
	st = tls_stats(n);
	assert_true(st.cert_expiry_s < 0);
	net_free(n);
}

/* A client that trusts our CA: handshake, a message in, an answer back on
 * the same flow (sent from this thread, not the owner), version known. */
static void roundtrip(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	struct net_tls_client *cl;
	char why[300];
	assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	struct net_tls_sock *s;
	assert_int_equal(net_tls_sock_alloc(&s, cl, fd, "127.0.0.1"), 0);
	if (client_handshake(s, fd, why, sizeof why))
		fail_msg("handshake: %s", why);
	assert_int_equal(net_tls_sock_write(s, "HELLO 1\n", 8), 8);
	assert_true(WAIT_UNTIL(rec_count() == 1, 3000));
	assert_string_equal(R.data[0], "HELLO 1\n");
	assert_int_equal(R.f[0].tp, NET_TLS);
	char ver[16], subj[128];
	assert_int_equal(net_conn_tls_info(n, R.f[0].conn_id, ver, sizeof ver, subj, sizeof subj), 0);
	assert_string_equal(ver, "TLSv1.3");
	assert_string_equal(subj, ""); /* no client certificate */
	assert_int_equal(net_send(n, &R.f[0], "ANSWER\n", 7), 0);
	char buf[64];
	client_read(s, fd, buf, sizeof buf);
	assert_string_equal(buf, "ANSWER\n");
	assert_int_equal(tls_stats(n).handshakes, 1);
	net_tls_sock_free(s);
	close(fd);
	net_tls_client_free(cl);
	net_free(n);
}

/* The ua's side: a client without our CA refuses the server (the system
 * store does not know it), as does one that trusts the CA but meant
 * another address; the server counts a certificate failure. */
static void client_refuses_untrusted(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	struct {
		const char *ca, *host;
	} cases[] = {{NULL, "127.0.0.1"}, {ca_pem, "127.0.0.2"}};
	for (size_t i = 0; i < 2; i++) {
		struct net_tls_client *cl;
		char why[300];
		assert_int_equal(net_tls_client_alloc(&cl, cases[i].ca, true, why, sizeof why), 0);
		int fd = tcp_client(net_listener_addr(n, 0));
		struct net_tls_sock *s;
		assert_int_equal(net_tls_sock_alloc(&s, cl, fd, cases[i].host), 0);
		assert_int_equal(client_handshake(s, fd, why, sizeof why), EPERM);
		assert_non_null(strstr(why, "not trusted"));
		net_tls_sock_free(s);
		close(fd);
		net_tls_client_free(cl);
		assert_true(WAIT_UNTIL(tls_stats(n).failed_verify == (int64_t)i + 1, 3000));
	}
	assert_int_equal(rec_count(), 0);
	net_free(n);
}

struct on_worker {
	struct net *n;
	struct flow f;
	int err;
	_Atomic bool done;
};

static void connect_and_send(void *arg)
{
	struct on_worker *ow = arg;
	ow->err = net_flow_connect(ow->n, &ow->f);
	if (!ow->err)
		ow->err = net_send(ow->n, &ow->f, "OUT 1\n", 6);
	ow->done = true;
}

/* A net that connects out over TLS (one worker), with the listener every
 * net needs; idle_s closes its idle connections (0: the default). */
static struct net *cli_start(const struct net_tls_conf *cc, unsigned idle_s)
{
	struct net_conf nc = {.workers = 1, .max_msg = 1500, .tcp_idle_s = idle_s};
	struct net *cli;
	assert_int_equal(net_alloc(&cli, &nc), 0);
	char err[512];
	if (net_tls_setup(cli, cc, err, sizeof err))
		fail_msg("setup: %s", err);
	struct net_listener_conf l = {.tp = NET_TLS};
	net_addr_parse("127.0.0.1:0", 0, &l.addr);
	assert_int_equal(net_listen(cli, &l, NULL), 0);
	assert_int_equal(net_start(cli), 0);
	return cli;
}

/* Outgoing TLS from one net to another's tls: listener: verified against the
 * CA and the address (RFC 5922), the message arrives; a net that does not
 * trust the CA sends nothing and counts a certificate failure. */
static void outgoing_verified(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *srv = srv_start(&tc);
	for (int trusting = 1; trusting >= 0; trusting--) {
		struct net_tls_conf cc = tls_conf();
		if (!trusting)
			cc.ca_file = ""; /* the system store */
		struct net *cli = cli_start(&cc, 0);
		struct on_worker ow = {.n = cli};
		net_flow_next_hop(cli, 0, net_listener_addr(srv, 0), &ow.f);
		assert_int_equal(ow.f.tp, NET_TLS);
		assert_int_equal(loop_post(worker_loop(net_worker(cli, 0)), connect_and_send, &ow), 0);
		assert_true(WAIT_UNTIL(ow.done, 3000));
		assert_int_equal(ow.err, 0); /* queued until the handshake is done */
		if (trusting) {
			assert_true(WAIT_UNTIL(rec_count() == 1, 3000));
			assert_string_equal(R.data[0], "OUT 1\n");
		} else {
			assert_true(WAIT_UNTIL(tls_stats(cli).failed_verify == 1, 3000));
			assert_true(WAIT_UNTIL(!net_conn_alive(cli, ow.f.conn_id), 3000));
			test_sleep_ms(50);
			assert_int_equal(rec_count(), 1);
		}
		net_free(cli);
	}
	net_free(srv);
}

/* Outgoing resumption: the first connection to a next hop is a full
 * handshake whose session (a TLS 1.3 ticket) is kept for that target; once
 * it is closed, the next connection to the same target resumes it, and
 * the server sees the resumption too. */
static void outgoing_resumed(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *srv = srv_start(&tc);
	struct net_tls_conf cc = tls_conf();
	/* idle connections close after 1 s: the second message needs a new one */
	struct net *cli = cli_start(&cc, 1);
	uint64_t first = 0;
	for (int round = 0; round < 2; round++) {
		struct on_worker ow = {.n = cli};
		net_flow_next_hop(cli, 0, net_listener_addr(srv, 0), &ow.f);
		assert_int_equal(loop_post(worker_loop(net_worker(cli, 0)), connect_and_send, &ow), 0);
		assert_true(WAIT_UNTIL(ow.done, 3000));
		assert_int_equal(ow.err, 0);
		assert_true(WAIT_UNTIL(rec_count() == (size_t)round + 1, 3000));
		assert_true(WAIT_UNTIL(tls_stats(cli).handshakes == round + 1, 3000));
		/* the ticket arrives after the handshake; it is kept for the target */
		assert_true(WAIT_UNTIL(tls_stats(cli).sessions == 1, 3000));
		assert_int_equal(tls_stats(cli).resumed, round);
		assert_int_equal(tls_stats(srv).resumed, round);
		if (round == 0) {
			first = ow.f.conn_id;
			assert_true(WAIT_UNTIL(!net_conn_alive(cli, first), 10000));
		} else {
			assert_true(ow.f.conn_id != first); /* a new connection, resumed */
		}
	}
	assert_int_equal(tls_stats(cli).sessions_evicted, 0);
	net_free(cli);
	net_free(srv);
}

/* SIP in clear to the TLS port: closed at once, counted, never delivered. */
static void plaintext_closed(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	int fd = tcp_client(net_listener_addr(n, 0));
	const char *sip = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\n";
	assert_int_equal(send(fd, sip, strlen(sip), MSG_NOSIGNAL), (ssize_t)strlen(sip));
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 3000), 1);
	char buf[16];
	assert_true(recv(fd, buf, sizeof buf, 0) <= 0); /* closed, nothing said */
	assert_int_equal(tls_stats(n).failed_plaintext, 1);
	assert_int_equal(rec_count(), 0);
	close(fd);
	net_free(n);
}

/* A flood of connections that never finish a handshake: at most
 * max_handshakes (4) hold a TLS state, the others are closed at accept and
 * counted; the held ones go at handshake_timeout; then a real client gets
 * through again. */
static void half_open_flood_bounded(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	int fds[12];
	for (int i = 0; i < 12; i++) {
		fds[i] = tcp_client(net_listener_addr(n, 0));
		/* the start of a ClientHello, and then nothing */
		send(fds[i], "\x16\x03\x01\x02\x00", 5, MSG_NOSIGNAL);
	}
	assert_true(WAIT_UNTIL(tls_stats(n).limited == 8, 3000));
	struct net_tls_stats st = tls_stats(n);
	assert_int_equal(st.handshaking, 4);
	assert_true(WAIT_UNTIL(tls_stats(n).failed_timeout == 4, 5000));
	assert_int_equal(tls_stats(n).handshaking, 0);
	struct net_tls_client *cl;
	char why[300];
	assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	struct net_tls_sock *s;
	assert_int_equal(net_tls_sock_alloc(&s, cl, fd, "127.0.0.1"), 0);
	if (client_handshake(s, fd, why, sizeof why))
		fail_msg("handshake after the flood: %s", why);
	net_tls_sock_free(s);
	close(fd);
	net_tls_client_free(cl);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	net_free(n);
}

/* A connect-and-say-nothing flood against the bound of max_handshakes (4):
 * the kernel holds the silent connections (TCP_DEFER_ACCEPT), so none takes
 * a descriptor or a handshake slot, a real client gets through at once
 * while they sit there, and when the deferral ends each is closed at accept
 * and counted as a handshake that timed out. (Accepted, as before the
 * deferral, the 12 would have held all 4 slots for handshake_timeout and
 * the client would have been refused.) */
static void silent_flood_costs_nothing(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	struct net *n = srv_start(&tc);
	int fds[12];
	for (int i = 0; i < 12; i++)
		fds[i] = tcp_client(net_listener_addr(n, 0)); /* and then nothing */
	struct net_tls_client *cl;
	char why[300];
	assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	struct net_tls_sock *s;
	assert_int_equal(net_tls_sock_alloc(&s, cl, fd, "127.0.0.1"), 0);
	if (client_handshake(s, fd, why, sizeof why))
		fail_msg("handshake beside the silent ones: %s", why);
	/* the accept queue is in order: had any silent one been accepted, it
	 * would have been before the client */
	assert_true(WAIT_UNTIL(tls_stats(n).handshakes == 1, 3000));
	struct net_stats ns;
	net_stats_get(n, &ns);
	assert_int_equal(ns.tcp_accepted, 1);
	assert_int_equal(tls_stats(n).limited, 0);
	/* the deferral (handshake_timeout, 1 s here) ends: each is handed over
	 * and closed at once, never holding a slot beside another */
	assert_true(WAIT_UNTIL(tls_stats(n).failed_timeout == 12, 15000));
	assert_int_equal(tls_stats(n).limited, 0);
	assert_int_equal(tls_stats(n).handshaking, 0);
	for (int i = 0; i < 12; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		assert_int_equal(poll(&p, 1, 3000), 1);
		char buf[8];
		assert_true(recv(fds[i], buf, sizeof buf, 0) <= 0); /* closed, nothing said */
		close(fds[i]);
	}
	/* the client's connection lives on */
	assert_int_equal(net_tls_sock_write(s, "HELLO\n", 6), 6);
	assert_true(WAIT_UNTIL(rec_count() == 1, 3000));
	net_tls_sock_free(s);
	close(fd);
	net_tls_client_free(cl);
	net_free(n);
}

/* Mutual TLS: with verify_client = require, a client without a certificate
 * is refused (counted as a certificate failure). */
static void mutual_tls_required(void **state)
{
	(void)state;
	struct net_tls_conf tc = tls_conf();
	tc.verify_client = 2;
	struct net *n = srv_start(&tc);
	struct net_tls_client *cl;
	char why[300];
	assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	struct net_tls_sock *s;
	assert_int_equal(net_tls_sock_alloc(&s, cl, fd, "127.0.0.1"), 0);
	/* TLS 1.3: the client may finish before the server's refusal arrives */
	int err = client_handshake(s, fd, why, sizeof why);
	if (!err) {
		net_tls_sock_write(s, "HELLO\n", 6);
		char buf[16];
		client_read(s, fd, buf, sizeof buf);
	}
	assert_true(WAIT_UNTIL(tls_stats(n).failed_verify == 1, 3000));
	assert_int_equal(rec_count(), 0);
	net_tls_sock_free(s);
	close(fd);
	net_tls_client_free(cl);
	net_free(n);
}

/* A second certificate chosen by SNI: a client asking for sip.other.test
 * gets it (and verifies that name), one asking for the address gets the
 * default; neither would verify with the other's certificate. */
static void sni_chooses_certificate(void **state)
{
	(void)state;
	char list[300];
	snprintf(list, sizeof list, "%s:%s", sni_pem, sni_key);
	struct net_tls_conf tc = tls_conf();
	tc.sni = list;
	struct net *n = srv_start(&tc);
	const char *hosts[] = {"sip.other.test", "127.0.0.1", "sip.third.test"};
	int want[] = {0, 0, EPERM};
	for (size_t i = 0; i < 3; i++) {
		struct net_tls_client *cl;
		char why[300];
		assert_int_equal(net_tls_client_alloc(&cl, ca_pem, true, why, sizeof why), 0);
		int fd = tcp_client(net_listener_addr(n, 0));
		struct net_tls_sock *s;
		assert_int_equal(net_tls_sock_alloc(&s, cl, fd, hosts[i]), 0);
		int err = client_handshake(s, fd, why, sizeof why);
		if (err != want[i])
			fail_msg("%s: %d (%s), want %d", hosts[i], err, why, want[i]);
		net_tls_sock_free(s);
		close(fd);
		net_tls_client_free(cl);
	}
	net_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(setup_rejects_bad_files), cmocka_unit_test(expiry_in_stats),
	    cmocka_unit_test(roundtrip),		cmocka_unit_test(client_refuses_untrusted),
	    cmocka_unit_test(outgoing_verified),	cmocka_unit_test(outgoing_resumed),
	    cmocka_unit_test(plaintext_closed),
	    cmocka_unit_test(half_open_flood_bounded), cmocka_unit_test(silent_flood_costs_nothing),
	    cmocka_unit_test(mutual_tls_required),
	    cmocka_unit_test(sni_chooses_certificate),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
