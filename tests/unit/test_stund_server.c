/* The STUN server role on loopback: Binding, RFC 5780 answers from the other address, budgets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"
#include "stun/stun.h"
#include "stund/stund.h"

struct fixture {
	struct net *net;
	struct conf *conf;
	struct stund *sd;
	int fd;
};

static int start(struct fixture *f, const char *ini)
{
	memset(f, 0, sizeof *f);
	const struct conf_key *const tables[] = {stund_conf_keys, NULL};
	assert_int_equal(conf_alloc(&f->conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(f->conf, "test", ini, err, sizeof err), 0);
	struct net_conf nc = {.workers = 2};
	assert_int_equal(net_alloc(&f->net, &nc), 0);
	int e = stund_start(&f->sd, f->net, f->conf, NULL);
	if (e)
		return e;
	assert_int_equal(net_start(f->net), 0);
	struct net_addr local;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &local), 0);
	assert_int_equal(net_udp_socket(&local, false, &f->fd), 0);
	return 0;
}

static void stop(struct fixture *f)
{
	if (f->fd > 0)
		close(f->fd);
	if (f->net)
		net_stop(f->net);
	stund_free(f->sd);
	net_free(f->net);
	conf_free(f->conf);
}

static void send_to(int fd, const struct buf *b, const struct sockaddr_storage *to)
{
	socklen_t l =
	    to->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	assert_int_equal(sendto(fd, b->data, b->len, 0, (const struct sockaddr *)to, l),
			 (ssize_t)b->len);
}

/* Waits up to ms for one datagram; returns its length or -1. */
static ssize_t recv_from(int fd, uint8_t *p, size_t cap, struct sockaddr_storage *from, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	socklen_t l = sizeof *from;
	return recvfrom(fd, p, cap, 0, (struct sockaddr *)from, &l);
}

static bool same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
	return a->ss_family == AF_INET && b->ss_family == AF_INET &&
	       x->sin_addr.s_addr == y->sin_addr.s_addr && x->sin_port == y->sin_port;
}

static void test_binding(void **state)
{
	(void)state;
	struct fixture f;
	assert_int_equal(start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nsoftware = pinhole\n"), 0);
	const struct sockaddr_storage *srv = stund_addr(f.sd, 0, 0);
	assert_non_null(srv);
	assert_null(stund_addr(f.sd, 0, 1));
	assert_int_not_equal(((const struct sockaddr_in *)srv)->sin_port, 0);

	struct buf req;
	buf_init(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_fingerprint(&e);
	send_to(f.fd, &req, srv);
	uint8_t p[1500];
	struct sockaddr_storage from, mapped, me;
	ssize_t n = recv_from(f.fd, p, sizeof p, &from, 2000);
	assert_true(n > 0);
	assert_true(same(&from, srv));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, p, (size_t)n), 0);
	assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
	assert_memory_equal(m.tid, req.data + 8, 12);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped), 0);
	socklen_t l = sizeof me;
	getsockname(f.fd, (struct sockaddr *)&me, &l);
	assert_true(same(&mapped, &me));
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_SOFTWARE));
	/* single address: no RFC 5780 attributes, and CHANGE-REQUEST is refused */
	assert_null(stun_msg_attr(&m, STUN_ATTR_OTHER_ADDRESS));
	buf_reset(&req);
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_change(&e, STUN_CHANGE_IP);
	send_to(f.fd, &req, srv);
	n = recv_from(f.fd, p, sizeof p, &from, 2000);
	assert_true(n > 0);
	assert_int_equal(stun_msg_decode(&m, p, (size_t)n), 0);
	assert_int_equal(m.cls, STUN_CLASS_ERROR);

	/* garbage is dropped and counted */
	struct stund_stats st0, st1;
	stund_stats_get(f.sd, &st0);
	buf_reset(&req);
	buf_append_cstr(&req, "OPTIONS sip:x SIP/2.0\r\n\r\n");
	send_to(f.fd, &req, srv);
	assert_true(recv_from(f.fd, p, sizeof p, &from, 200) < 0);
	stund_stats_get(f.sd, &st1);
	assert_int_equal(st1.dropped_malformed, st0.dropped_malformed + 1);
	buf_free(&req);
	stop(&f);
}

static void test_rfc5780(void **state)
{
	(void)state;
	struct fixture f;
	/* 127.0.0.2 answers on Linux loopback without configuration */
	int err = start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nother = 127.0.0.2:0\n");
	if (err == EADDRNOTAVAIL) {
		stop(&f);
		skip();
	}
	assert_int_equal(err, 0);
	const struct sockaddr_storage *a[4];
	for (unsigned s = 0; s < 4; s++)
		assert_non_null(a[s] = stund_addr(f.sd, 0, s));

	static const uint32_t flags[] = {0, STUN_CHANGE_PORT, STUN_CHANGE_IP,
					 STUN_CHANGE_IP | STUN_CHANGE_PORT};
	for (unsigned i = 0; i < 4; i++) {
		struct buf req;
		buf_init(&req);
		struct stun_enc e;
		stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
		if (flags[i])
			stun_enc_change(&e, flags[i]);
		send_to(f.fd, &req, a[0]);
		uint8_t p[1500];
		struct sockaddr_storage from, ro, oa;
		ssize_t n = recv_from(f.fd, p, sizeof p, &from, 2000);
		assert_true(n > 0);
		/* CHANGE-REQUEST port = slot bit 0, IP = slot bit 1 */
		assert_true(same(&from, a[i]));
		struct stun_msg m;
		assert_int_equal(stun_msg_decode(&m, p, (size_t)n), 0);
		assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
		assert_int_equal(stun_msg_addr(&m, STUN_ATTR_RESPONSE_ORIGIN, &ro), 0);
		assert_true(same(&ro, &from));
		assert_int_equal(stun_msg_addr(&m, STUN_ATTR_OTHER_ADDRESS, &oa), 0);
		assert_true(same(&oa, a[3]));
		buf_free(&req);
	}

	/* RESPONSE-PORT: the answer goes to another port of this host */
	int fd2;
	struct net_addr local;
	net_addr_parse("127.0.0.1:0", 0, &local);
	assert_int_equal(net_udp_socket(&local, false, &fd2), 0);
	struct net_addr bound;
	net_sock_addr(fd2, &bound);
	struct buf req;
	buf_init(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_response_port(&e, net_addr_port(&bound));
	send_to(f.fd, &req, a[0]);
	uint8_t p[1500];
	struct sockaddr_storage from;
	assert_true(recv_from(fd2, p, sizeof p, &from, 2000) > 0);
	buf_free(&req);
	close(fd2);
	stop(&f);
}

/* The in-kernel fast path (root and a kernel with BPF): plain Binding
 * requests get from the kernel the very bytes user space would send, others
 * still reach user space, and the counters add up. */
static void test_fastpath(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct fixture f;
	assert_int_equal(start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nfastpath = on\nrate = 0\n"), 0);
	const struct sockaddr_storage *srv = stund_addr(f.sd, 0, 0);
	struct sockaddr_storage me, from;
	socklen_t l = sizeof me;
	getsockname(f.fd, (struct sockaddr *)&me, &l);
	struct stund_stats st0, st1;
	stund_stats_get(f.sd, &st0);
	assert_true(st0.fast);
	struct buf req, want;
	buf_init(&req);
	buf_init(&want);
	uint8_t p[1500];
	for (int i = 0; i < 200; i++) {
		buf_reset(&req);
		struct stun_enc e;
		stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
		assert_int_equal(stun_enc_end(&e), 0);
		assert_int_equal(req.len, 20);
		buf_reset(&want);
		assert_int_equal(stund_answer((struct sockaddr *)&me, req.data, req.len, &want), 0);
		send_to(f.fd, &req, srv);
		ssize_t n = recv_from(f.fd, p, sizeof p, &from, 2000);
		assert_int_equal(n, (ssize_t)want.len);
		assert_memory_equal(p, want.data, want.len);
		assert_true(same(&from, srv));
	}
	/* with FINGERPRINT: user space answers, as before */
	buf_reset(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
	send_to(f.fd, &req, srv);
	ssize_t n = recv_from(f.fd, p, sizeof p, &from, 2000);
	assert_true(n > 0);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, p, (size_t)n), 0);
	assert_int_equal(stun_msg_check_fingerprint(&m), 0);
	stund_stats_get(f.sd, &st1);
	assert_int_equal(st1.fast_responses - st0.fast_responses, 200);
	assert_int_equal(st1.responses - st0.responses, 201);
	assert_int_equal(st1.requests - st0.requests, 201);
	buf_free(&req);
	buf_free(&want);
	stop(&f);

	/* RFC 5780: RESPONSE-ORIGIN and OTHER-ADDRESS from the kernel too */
	int err = start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nother = 127.0.0.2:0\nfastpath = on\n");
	if (err == EADDRNOTAVAIL) {
		stop(&f);
		skip();
	}
	assert_int_equal(err, 0);
	l = sizeof me;
	getsockname(f.fd, (struct sockaddr *)&me, &l);
	stund_stats_get(f.sd, &st0);
	buf_init(&req);
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	assert_int_equal(stun_enc_end(&e), 0);
	for (unsigned s = 0; s < 4; s++) {
		const struct sockaddr_storage *a = stund_addr(f.sd, 0, s);
		struct sockaddr_storage ro, oa, mapped;
		send_to(f.fd, &req, a);
		n = recv_from(f.fd, p, sizeof p, &from, 2000);
		assert_int_equal(n, 56);
		assert_true(same(&from, a));
		assert_int_equal(stun_msg_decode(&m, p, (size_t)n), 0);
		assert_int_equal(m.cls, STUN_CLASS_SUCCESS);
		assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped), 0);
		assert_true(same(&mapped, &me));
		assert_int_equal(stun_msg_addr(&m, STUN_ATTR_RESPONSE_ORIGIN, &ro), 0);
		assert_true(same(&ro, a));
		assert_int_equal(stun_msg_addr(&m, STUN_ATTR_OTHER_ADDRESS, &oa), 0);
		assert_true(same(&oa, stund_addr(f.sd, 0, s ^ 3u)));
	}
	stund_stats_get(f.sd, &st1);
	assert_int_equal(st1.fast_responses - st0.fast_responses, 4);
	buf_free(&req);
	stop(&f);
}

static void test_rate_limit(void **state)
{
	(void)state;
	struct fixture f;
	assert_int_equal(start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nrate = 1\nburst = 3\n"), 0);
	const struct sockaddr_storage *srv = stund_addr(f.sd, 0, 0);
	struct stund_stats st0, st1;
	stund_stats_get(f.sd, &st0);
	struct buf req;
	buf_init(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	for (int i = 0; i < 10; i++)
		send_to(f.fd, &req, srv);
	int answers = 0;
	uint8_t p[1500];
	struct sockaddr_storage from;
	while (recv_from(f.fd, p, sizeof p, &from, 300) > 0)
		answers++;
	/* the burst, plus perhaps one token refilled meanwhile; one socket, so
	 * one worker sees them all */
	assert_true(answers >= 3 && answers <= 4);
	stund_stats_get(f.sd, &st1);
	assert_int_equal(st1.dropped_rate - st0.dropped_rate, 10 - answers);
	buf_free(&req);
	stop(&f);
}

/* A flood from many ports of one address spreads over both workers: the
 * budget is the address's, whichever worker answers. */
static void test_rate_limit_across_workers(void **state)
{
	(void)state;
	struct fixture f;
	assert_int_equal(start(&f, "[stun]\nlisten = udp:127.0.0.1:0\nrate = 1\nburst = 3\n"
				   "fastpath = off\n"),
			 0);
	const struct sockaddr_storage *srv = stund_addr(f.sd, 0, 0);
	struct buf req;
	buf_init(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	int fds[16];
	struct net_addr local;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &local), 0);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(net_udp_socket(&local, false, &fds[i]), 0);
		for (int k = 0; k < 4; k++)
			send_to(fds[i], &req, srv);
	}
	int answers = 0;
	uint8_t p[1500];
	struct sockaddr_storage from;
	for (int i = 0; i < 16; i++) {
		while (recv_from(fds[i], p, sizeof p, &from, i == 0 ? 300 : 20) > 0)
			answers++;
		close(fds[i]);
	}
	/* the burst, plus perhaps a token refilled meanwhile: not once per worker */
	assert_true(answers >= 3 && answers <= 4);
	buf_free(&req);
	stop(&f);
}

/* Error responses stay within the budget too: a short request with many
 * unknown comprehension-required attributes gets a 420 no larger than
 * STUND_RESP_FLOOR. */
static void test_error_within_budget(void **state)
{
	(void)state;
	uint8_t req[20 + 16 * 4];
	memset(req, 0, sizeof req);
	req[1] = 0x01; /* Binding request */
	req[3] = 16 * 4;
	req[4] = 0x21, req[5] = 0x12, req[6] = 0xa4, req[7] = 0x42;
	for (int i = 0; i < 16; i++) {
		req[20 + 4 * i] = 0x00;
		req[20 + 4 * i + 1] = (uint8_t)(0x30 + i); /* unknown, < 0x8000 */
	}
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(4000)};
	struct buf out;
	buf_init(&out);
	assert_int_equal(stund_answer((struct sockaddr *)&src, req, sizeof req, &out), 0);
	assert_true(out.len <= MAX(sizeof req, (size_t)STUND_RESP_FLOOR));
	assert_true(out.len > 20);
	buf_free(&out);
}

static void test_limiter(void **state)
{
	(void)state;
	struct stund_limiter l;
	assert_int_equal(stund_limiter_init(&l, 100, 10, 5), 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0xc6120001)};
	struct sockaddr_in6 b = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "2001:db8:1:2::1", &b.sin6_addr);
	struct sockaddr_in6 b2 = b;
	inet_pton(AF_INET6, "2001:db8:1:2::ffff", &b2.sin6_addr); /* same /64 */
	uint64_t t = 1000000;
	for (int i = 0; i < 5; i++)
		assert_true(stund_limiter_allow(&l, (struct sockaddr *)&a, t));
	assert_false(stund_limiter_allow(&l, (struct sockaddr *)&a, t));
	assert_false(stund_limiter_allow(&l, (struct sockaddr *)&a, t + 50));
	assert_true(stund_limiter_allow(&l, (struct sockaddr *)&a, t + 100)); /* 10/s */
	for (int i = 0; i < 5; i++)
		assert_true(stund_limiter_allow(&l, (struct sockaddr *)&b, t));
	assert_false(stund_limiter_allow(&l, (struct sockaddr *)&b2, t));
	/* idle long enough: full again */
	for (int i = 0; i < 5; i++)
		assert_true(stund_limiter_allow(&l, (struct sockaddr *)&b2, t + 10000));
	stund_limiter_free(&l);

	assert_int_equal(stund_limiter_init(&l, 64, 0, 1), 0);
	for (int i = 0; i < 100; i++)
		assert_true(stund_limiter_allow(&l, (struct sockaddr *)&a, t));
	stund_limiter_free(&l);
}

static void test_bad_config(void **state)
{
	(void)state;
	struct fixture f;
	assert_int_equal(start(&f, "[stun]\nlisten = udp:0.0.0.0:0\nother = 127.0.0.2:0\n"),
			 EINVAL);
	stop(&f);
	assert_int_equal(start(&f, "[stun]\nlisten = tcp:127.0.0.1:0\n"), ENOTSUP);
	stop(&f);
	assert_int_equal(start(&f, "[stun]\nlisten = udp:nonsense\n"), EINVAL);
	stop(&f);
	/* a port some other socket holds with SO_REUSEPORT (a SIP or TURN
	 * listener's group): joining it would take a share of its datagrams */
	int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	char ini[64];
	snprintf(ini, sizeof ini, "[stun]\nlisten = udp:127.0.0.1:%u\n", ntohs(a.sin_port));
	assert_int_equal(start(&f, ini), EADDRINUSE);
	stop(&f);
	close(fd);
	assert_int_equal(start(&f, ini), 0);
	stop(&f);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_binding),    cmocka_unit_test(test_rfc5780),
	    cmocka_unit_test(test_rate_limit), cmocka_unit_test(test_rate_limit_across_workers),
	    cmocka_unit_test(test_error_within_budget), cmocka_unit_test(test_limiter),
	    cmocka_unit_test(test_bad_config), cmocka_unit_test(test_fastpath),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
