/* net: parked TLS connections (tls_park.c, tls_rec.c). An OpenSSL client talks to a server whose
 * TLS 1.3 connections leave OpenSSL after the handshake: messages both ways before and after
 * parking, a message over several records, records one byte at a time, the client's KeyUpdate
 * asking for ours, close_notify, a tampered record (closed, counted, nothing sent after), TLS 1.2
 * left on OpenSSL, and an outgoing connection that parks and keeps working. The client writes
 * into a memory BIO and the test decides how its bytes reach the socket. */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/net.h"
#include "testenv.h"
#include "certs.h"

/* ---- certificates, made at run time ---- */

static char dir[64], ca_pem[128], srv_pem[128], srv_key[128], cli_pem[128], cli_key[128];

static int make_certs(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/pinhole-park-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
	snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", dir);
	snprintf(srv_key, sizeof srv_key, "%s/srv.key", dir);
	snprintf(cli_pem, sizeof cli_pem, "%s/cli.pem", dir);
	snprintf(cli_key, sizeof cli_key, "%s/cli.key", dir);
	EVP_PKEY *cak = tc_key(), *sk = tc_key();
	X509 *ca = tc_cert(cak, "pinhole test CA", NULL, NULL, NULL, -60, 3600);
	X509 *srv = tc_cert(sk, "srv", "IP:127.0.0.1", ca, cak, -60, 3600);
	tc_write_cert(ca_pem, ca);
	tc_write_cert(srv_pem, srv);
	tc_write_key(srv_key, sk);
	EVP_PKEY *ck = tc_key();
	X509 *cli = tc_cert(ck, "phone 1001", NULL, ca, cak, -60, 3600);
	tc_write_cert(cli_pem, cli);
	tc_write_key(cli_key, ck);
	X509_free(ca), X509_free(srv), X509_free(cli);
	EVP_PKEY_free(cak), EVP_PKEY_free(sk), EVP_PKEY_free(ck);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	unlink(ca_pem), unlink(srv_pem), unlink(srv_key), unlink(cli_pem), unlink(cli_key);
	rmdir(dir);
	return 0;
}

/* ---- the nets under test: lines in, "ECHO " + line back ---- */

#define BIG 40000
static struct {
	pthread_mutex_t lock;
	struct flow last; /* the flow of the last message */
	size_t n, last_len;
	char last_data[BIG + 64];
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_recv(struct worker *w, const struct flow *f, const char *data, size_t len, void *arg)
{
	(void)w;
	pthread_mutex_lock(&R.lock);
	R.last = *f;
	R.n++;
	R.last_len = len < sizeof R.last_data ? len : sizeof R.last_data - 1;
	memcpy(R.last_data, data, R.last_len);
	R.last_data[R.last_len] = '\0';
	pthread_mutex_unlock(&R.lock);
	if (len >= 5 && memcmp(data, "ECHO ", 5) == 0)
		return;
	char *echo = malloc(len + 5);
	memcpy(echo, "ECHO ", 5);
	memcpy(echo + 5, data, len);
	net_send(arg, f, echo, len + 5);
	free(echo);
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
				     .handshake_s = 5,
				     .max_handshakes = 16,
				     .park = true};
}

static int verify_client; /* the next net's [tls] verify_client */

static struct net *net_start_tls(unsigned workers)
{
	struct net_conf nc = {.workers = workers, .max_msg = 65536, .tcp_handshake_s = 30};
	struct net *n;
	assert_int_equal(net_alloc(&n, &nc), 0);
	struct net_tls_conf tc = tls_conf();
	tc.verify_client = verify_client;
	char err[512];
	if (net_tls_setup(n, &tc, err, sizeof err))
		fail_msg("setup: %s", err);
	struct net_listener_conf l = {.tp = NET_TLS};
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &l.addr), 0);
	assert_int_equal(net_listen(n, &l, NULL), 0);
	net_set_recv(n, on_recv, test_frame_lines, n);
	assert_int_equal(net_start(n), 0);
	return n;
}

static struct net *srv_start(void)
{
	pthread_mutex_lock(&R.lock);
	R.n = 0;
	pthread_mutex_unlock(&R.lock);
	return net_start_tls(2);
}

static struct net_tls_stats tls_stats(struct net *n)
{
	struct net_tls_stats st;
	net_tls_stats_get(n, &st);
	return st;
}

/* ---- an OpenSSL client: reads from the socket, writes into a memory BIO ---- */

struct cli {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *wmem;
};

/* Sends what the client wrote: at once, or one byte per send(). */
static void cli_flush(struct cli *c, bool bytewise)
{
	char *p;
	long n = BIO_get_mem_data(c->wmem, &p);
	for (long off = 0; off < n;) {
		ssize_t k = send(c->fd, p + off, bytewise ? 1 : (size_t)(n - off), MSG_NOSIGNAL);
		assert_true(k > 0);
		off += k;
		if (bytewise)
			test_sleep_ms(1); /* its own segment, most likely its own read */
	}
	BIO_reset(c->wmem);
}

/* A connection to n's listener; its handshake done, and first (if any)
 * written behind the client's Finished, so both arrive in one segment. */
static void cli_open(struct cli *c, struct net *n, int max_version, const char *first)
{
	memset(c, 0, sizeof *c);
	const struct net_addr *to = net_listener_addr(n, 0);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(connect(c->fd, &to->u.sa, net_addr_len(to)), 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {5, 0}; /* a broken build fails, never hangs */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	c->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(c->ctx);
	SSL_CTX_load_verify_locations(c->ctx, ca_pem, NULL);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	if (verify_client) /* mutual TLS: our certificate too */
		assert_true(
		    SSL_CTX_use_certificate_file(c->ctx, cli_pem, SSL_FILETYPE_PEM) == 1 &&
		    SSL_CTX_use_PrivateKey_file(c->ctx, cli_key, SSL_FILETYPE_PEM) == 1);
	if (max_version)
		SSL_CTX_set_max_proto_version(c->ctx, max_version);
	c->ssl = SSL_new(c->ctx);
	BIO *rb = BIO_new_socket(c->fd, BIO_NOCLOSE);
	c->wmem = BIO_new(BIO_s_mem());
	SSL_set_bio(c->ssl, rb, c->wmem);
	SSL_set_connect_state(c->ssl);
	int r;
	ERR_clear_error();
	/* non-blocking until done: what the client wrote goes out before it waits */
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	for (int i = 0; (r = SSL_do_handshake(c->ssl)) != 1; i++) {
		if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ || i > 500)
			fail_msg("client handshake: %s", ERR_reason_error_string(ERR_peek_error()));
		cli_flush(c, false);
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		poll(&pf, 1, 10);
	}
	fcntl(c->fd, F_SETFL, 0);
	if (first)
		assert_int_equal(SSL_write(c->ssl, first, (int)strlen(first)), (int)strlen(first));
	cli_flush(c, false);
}

static void cli_close(struct cli *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
	close(c->fd);
}

static void cli_send(struct cli *c, const char *s, size_t len, bool bytewise)
{
	size_t done = 0;
	while (done < len) {
		int k = SSL_write(c->ssl, s + done, (int)(len - done));
		assert_true(k > 0);
		done += (size_t)k;
	}
	cli_flush(c, bytewise);
}

/* Reads until a line ends; its length (0 at EOF or an error). */
static size_t cli_line(struct cli *c, char *out, size_t cap)
{
	size_t got = 0;
	while (got < cap - 1 && (got == 0 || out[got - 1] != '\n')) {
		int k = SSL_read(c->ssl, out + got, (int)(cap - 1 - got));
		cli_flush(c, false); /* a KeyUpdate of ours the read made */
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	out[got] = '\0';
	ERR_clear_error();
	return got;
}

static void expect_echo(struct cli *c, const char *line)
{
	char buf[256], want[256];
	snprintf(want, sizeof want, "ECHO %s", line);
	cli_line(c, buf, sizeof buf);
	assert_string_equal(buf, want);
}

/* ---- tests ---- */

/* The first message comes behind the client's Finished, so OpenSSL reads
 * it and writes its answer; then the connection parks, and messages go on
 * both ways through tls_rec.c. ctl flows still knows version and subject. */
static void parks_and_talks(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, "BEFORE\n");
	expect_echo(&c, "BEFORE\n");
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	for (int i = 0; i < 3; i++) {
		char line[32];
		snprintf(line, sizeof line, "AFTER %d\n", i);
		cli_send(&c, line, strlen(line), false);
		expect_echo(&c, line);
	}
	assert_int_equal(rec_count(), 4);
	char ver[16], subj[64];
	assert_int_equal(
	    net_conn_tls_info(n, R.last.conn_id, ver, sizeof ver, subj, sizeof subj), 0);
	assert_string_equal(ver, "TLSv1.3");
	assert_string_equal(subj, "");
	struct net_tls_stats st = tls_stats(n);
	assert_int_equal(st.parked_total, 1);
	assert_int_equal(st.park_skipped, 0);
	cli_close(&c);
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 0, 3000)); /* closed: freed */
	net_free(n);
}

/* 40,000 bytes: three records from the client, three back. */
static void message_over_records(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, NULL);
	char *big = malloc(BIG + 1);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)('a' + i % 26);
	big[BIG] = '\n';
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	cli_send(&c, big, BIG + 1, false);
	assert_true(WAIT_UNTIL(rec_count() == 1, 3000));
	pthread_mutex_lock(&R.lock);
	assert_int_equal(R.last_len, BIG + 1);
	assert_memory_equal(R.last_data, big, BIG + 1);
	pthread_mutex_unlock(&R.lock);
	char *back = malloc(BIG + 64);
	size_t got = cli_line(&c, back, BIG + 64);
	assert_int_equal(got, BIG + 6);
	assert_memory_equal(back, "ECHO ", 5);
	assert_memory_equal(back + 5, big, BIG + 1);
	free(big), free(back);
	cli_close(&c);
	net_free(n);
}

/* Records cut into one-byte segments: the partial record is kept until
 * whole, header and body alike. */
static void records_byte_by_byte(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, NULL);
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	const char *m = "SLOWLY, ONE BYTE AT A TIME\n";
	/* two records, so that one segment holds the end of one and the start of the next */
	assert_int_equal(SSL_write(c.ssl, m, 10), 10);
	cli_send(&c, m + 10, strlen(m) - 10, true);
	expect_echo(&c, m);
	cli_send(&c, "AND AT ONCE\n", 12, false);
	expect_echo(&c, "AND AT ONCE\n");
	cli_close(&c);
	net_free(n);
}

/* The client updates its key and asks for ours: the server's KeyUpdate
 * comes back, and traffic goes on both ways under the new keys, twice. */
static void key_update_requested(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, NULL);
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	for (int round = 0; round < 2; round++) {
		assert_int_equal(SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
		char line[32];
		snprintf(line, sizeof line, "UPDATED %d\n", round);
		cli_send(&c, line, strlen(line), false);
		expect_echo(&c, line);
		/* the server's KeyUpdate came before the echo: OpenSSL took it */
		assert_int_equal(SSL_get_key_update_type(c.ssl), SSL_KEY_UPDATE_NONE);
		cli_send(&c, "AGAIN\n", 6, false);
		expect_echo(&c, "AGAIN\n");
	}
	struct net_tls_stats st = tls_stats(n);
	assert_int_equal(st.parked_closed_decrypt + st.parked_closed_protocol, 0);
	cli_close(&c);
	net_free(n);
}

/* The client's close_notify closes the parked connection; ours comes back. */
static void close_notify_closes(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, "HI\n");
	expect_echo(&c, "HI\n");
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	assert_true(SSL_shutdown(c.ssl) >= 0);
	cli_flush(&c, false);
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 0, 3000));
	char buf[16];
	assert_int_equal(SSL_read(c.ssl, buf, sizeof buf), 0);
	assert_int_equal(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN); /* its close_notify */
	struct net_tls_stats st = tls_stats(n);
	assert_int_equal(st.parked_closed_decrypt, 0);
	assert_int_equal(st.parked_closed_protocol + st.parked_closed_alert, 0);
	cli_close(&c);
	net_free(n);
}

/* A byte of a record changed on the way: the tag fails, the connection
 * closes without another byte from us, and the cause is counted. */
static void tampered_record_closes(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, NULL);
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	cli_send(&c, "GOOD\n", 5, false);
	expect_echo(&c, "GOOD\n"); /* the client has read all the server sent */
	assert_int_equal(SSL_write(c.ssl, "EVIL\n", 5), 5);
	char *p;
	long len = BIO_get_mem_data(c.wmem, &p);
	assert_true(len > 10);
	p[7] ^= 0x01; /* in the ciphertext */
	cli_flush(&c, false);
	assert_true(WAIT_UNTIL(tls_stats(n).parked_closed_decrypt == 1, 3000));
	char raw[64];
	assert_int_equal(recv(c.fd, raw, sizeof raw, 0), 0); /* FIN, no alert, nothing */
	assert_int_equal(rec_count(), 1);
	assert_int_equal(tls_stats(n).parked, 0);
	cli_close(&c);
	net_free(n);
}

/* A TLS 1.2 connection stays on OpenSSL, through the sweep too. */
static void tls12_not_parked(void **state)
{
	(void)state;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, TLS1_2_VERSION, "OLD\n");
	expect_echo(&c, "OLD\n");
	assert_string_equal(SSL_get_version(c.ssl), "TLSv1.2");
	test_sleep_ms(1500); /* a sweep or two: the chance to park it wrongly */
	cli_send(&c, "STILL\n", 6, false);
	expect_echo(&c, "STILL\n");
	struct net_tls_stats st = tls_stats(n);
	assert_int_equal(st.parked_total, 0);
	assert_int_equal(st.handshakes, 1);
	char ver[16], subj[8];
	assert_int_equal(
	    net_conn_tls_info(n, R.last.conn_id, ver, sizeof ver, subj, sizeof subj), 0);
	assert_string_equal(ver, "TLSv1.2");
	cli_close(&c);
	net_free(n);
}

/* Mutual TLS: the client's certificate subject is kept when parking, for
 * ctl flows, and the connection goes on. */
static void parked_keeps_peer_subject(void **state)
{
	(void)state;
	verify_client = 1;
	struct net *n = srv_start();
	struct cli c;
	cli_open(&c, n, 0, NULL);
	verify_client = 0;
	assert_true(WAIT_UNTIL(tls_stats(n).parked == 1, 3000));
	cli_send(&c, "WHO\n", 4, false);
	expect_echo(&c, "WHO\n");
	char ver[16], subj[128];
	assert_int_equal(
	    net_conn_tls_info(n, R.last.conn_id, ver, sizeof ver, subj, sizeof subj), 0);
	assert_string_equal(ver, "TLSv1.3");
	assert_string_equal(subj, "/CN=phone 1001");
	/* a short buffer gets a cut, terminated copy */
	assert_int_equal(net_conn_tls_info(n, R.last.conn_id, ver, sizeof ver, subj, 6), 0);
	assert_string_equal(subj, "/CN=p");
	cli_close(&c);
	net_free(n);
}

struct on_worker {
	struct net *n;
	struct flow f;
	const char *msg;
	int err;
	_Atomic bool done;
};

static void connect_and_send(void *arg)
{
	struct on_worker *ow = arg;
	ow->err = ow->f.conn_id ? 0 : net_flow_connect(ow->n, &ow->f);
	if (!ow->err)
		ow->err = net_send(ow->n, &ow->f, ow->msg, strlen(ow->msg));
	ow->done = true;
}

/* Our own outgoing connection parks once the server's ticket came (kept
 * for resuming), and keeps working both ways; both ends are parked. */
static void outgoing_parks(void **state)
{
	(void)state;
	struct net *srv = srv_start();
	struct net *cli = net_start_tls(1);
	struct on_worker ow = {.n = cli, .msg = "OUT 1\n"};
	net_flow_next_hop(cli, 0, net_listener_addr(srv, 0), &ow.f);
	assert_int_equal(ow.f.tp, NET_TLS);
	assert_int_equal(loop_post(worker_loop(net_worker(cli, 0)), connect_and_send, &ow), 0);
	assert_true(WAIT_UNTIL(ow.done, 3000));
	assert_int_equal(ow.err, 0);
	/* OUT 1 at the server, its echo back at the client */
	assert_true(WAIT_UNTIL(rec_count() == 2, 3000));
	assert_true(WAIT_UNTIL(tls_stats(cli).parked == 1, 3000));
	assert_true(WAIT_UNTIL(tls_stats(srv).parked == 1, 3000));
	assert_int_equal(tls_stats(cli).sessions, 1); /* the ticket, kept before parking */
	for (int i = 2; i <= 3; i++) {
		char msg[16];
		snprintf(msg, sizeof msg, "OUT %d\n", i);
		struct on_worker again = {.n = cli, .f = ow.f, .msg = msg};
		struct loop *l = worker_loop(net_worker(cli, 0));
		assert_int_equal(loop_post(l, connect_and_send, &again), 0);
		assert_true(WAIT_UNTIL(again.done, 3000));
		assert_int_equal(again.err, 0);
		assert_true(WAIT_UNTIL(rec_count() == (size_t)(2 * i), 3000));
		pthread_mutex_lock(&R.lock);
		char want[32];
		snprintf(want, sizeof want, "ECHO %s", msg);
		assert_string_equal(R.last_data, want);
		pthread_mutex_unlock(&R.lock);
	}
	assert_int_equal(tls_stats(cli).parked_total, 1);
	net_free(cli);
	net_free(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parks_and_talks),	     cmocka_unit_test(message_over_records),
	    cmocka_unit_test(records_byte_by_byte),  cmocka_unit_test(key_update_requested),
	    cmocka_unit_test(close_notify_closes),   cmocka_unit_test(tampered_record_closes),
	    cmocka_unit_test(tls12_not_parked),	     cmocka_unit_test(parked_keeps_peer_subject),
	    cmocka_unit_test(outgoing_parks),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
