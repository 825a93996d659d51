/* The TURN server's protections over loopback sockets: the peer filter, quotas, bandwidth, request
 * budgets, TCP bounds, expiry. */
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
#include <sys/socket.h>
#include <unistd.h>

#include "turnc.h"

/* The SSRF guard through the protocol: with nothing allowed, loopback and
 * private peers get 403 and count, in any spelling; another allocation's
 * relayed address on this server (also loopback here) is let through. */
static void test_peer_denied(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli a, b;
	struct net_addr ra, rb;
	tt_cli_open(&a, &s, false, "alice", "wonder");
	tt_cli_open(&b, &s, false, "bob", "builder");
	assert_int_equal(tt_allocate(&a, &ra), 0);
	assert_int_equal(tt_allocate(&b, &rb), 0);
	int64_t denied = tt_counter("turn_denied_peers_total", NULL);
	static const char *bad[] = {
	    "127.0.0.1:5060",	     "10.0.0.1:80",	"192.168.1.1:53", "169.254.169.254:80",
	    "[::ffff:127.0.0.1]:22", "100.64.0.1:5060", "0.0.0.0:22"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (tt_perm(&a, bad[i]) != 403)
			fail_msg("%s was not refused", bad[i]);
	assert_int_equal(tt_counter("turn_denied_peers_total", NULL),
			 denied + (int64_t)ARRAY_SIZE(bad));
	char rbs[NET_ADDR_STRLEN];
	net_addr_fmt(&rb, rbs, sizeof rbs);
	assert_int_equal(tt_perm(&a, rbs), 0);
	assert_int_equal(tt_chan_bind(&a, 0x4000, &rb), 0);
	/* b lets a in, and data flows between the two allocations */
	char ras[NET_ADDR_STRLEN];
	net_addr_fmt(&ra, ras, sizeof ras);
	assert_int_equal(tt_perm(&b, ras), 0);
	uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g'};
	tt_cli_send(&a, cd, sizeof cd);
	assert_true(tt_cli_recv(&b));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b.rx, b.rxlen), 0);
	assert_int_equal(m.method, STUN_METHOD_DATA);
	const struct stun_attr *d = stun_msg_attr(&m, STUN_ATTR_DATA);
	assert_memory_equal(d->v, "ping", 4);
	/* a channel to a denied peer: 403; the same port number on the relay IP
	 * that is not an allocation: 403 */
	struct net_addr lo;
	net_addr_parse("127.0.0.1:5060", 0, &lo);
	assert_int_equal(tt_chan_bind(&a, 0x4001, &lo), 403);
	/* b goes: a's channel to it stops working (the filter is asked again) */
	assert_int_equal(tt_refresh(&b, 0), 0);
	int64_t d0 = tt_counter("turn_denied_peers_total", NULL);
	tt_cli_send(&a, cd, sizeof cd);
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	tt_begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&a, &q), 0);
	assert_int_equal(tt_counter("turn_denied_peers_total", NULL), d0 + 1);
	buf_free(&q);
	tt_cli_close(&a);
	tt_cli_close(&b);
	tt_srv_stop(&s);
}

static void test_quotas(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nmax_allocations_per_user = 2\n"
			 "max_allocations = 3\nmax_permissions = 2\nmax_channels = 1\n");
	struct tt_cli c[5];
	int64_t e486 = tt_counter("turn_errors_total", "code=\"486\"");
	int64_t e508 = tt_counter("turn_errors_total", "code=\"508\"");
	tt_cli_open(&c[0], &s, false, "alice", "wonder");
	tt_cli_open(&c[1], &s, false, "alice", "wonder");
	tt_cli_open(&c[2], &s, false, "alice", "wonder");
	tt_cli_open(&c[3], &s, false, "bob", "builder");
	tt_cli_open(&c[4], &s, false, "bob", "builder");
	assert_int_equal(tt_allocate(&c[0], NULL), 0);
	assert_int_equal(tt_allocate(&c[1], NULL), 0);
	assert_int_equal(tt_allocate(&c[2], NULL), 486); /* alice's third */
	assert_int_equal(tt_allocate(&c[3], NULL), 0);
	assert_int_equal(tt_allocate(&c[4], NULL), 508); /* the server's fourth */
	assert_int_equal(tt_counter("turn_errors_total", "code=\"486\""), e486 + 1);
	/* a deallocation gives the user's place back (its count follows the
	 * tables), and only one */
	assert_int_equal(tt_refresh(&c[1], 0), 0);
	assert_int_equal(tt_allocate(&c[2], NULL), 0);
	assert_int_equal(tt_allocate(&c[1], NULL), 486);
	assert_int_equal(tt_counter("turn_errors_total", "code=\"486\""), e486 + 2);
	/* permissions and channels per allocation */
	assert_int_equal(tt_perm(&c[0], "127.0.0.1:1"), 0);
	assert_int_equal(tt_perm(&c[0], "127.0.0.2:1"), 0);
	assert_int_equal(tt_perm(&c[0], "127.0.0.1:2"), 0); /* same IP: a refresh */
	assert_int_equal(tt_perm(&c[0], "127.0.0.3:1"), 508);
	struct net_addr p1, p2;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	net_addr_parse("127.0.0.1:8", 0, &p2);
	assert_int_equal(tt_chan_bind(&c[0], 0x4000, &p1), 0);
	assert_int_equal(tt_chan_bind(&c[0], 0x4001, &p2), 508);
	assert_int_equal(tt_counter("turn_errors_total", "code=\"508\""), e508 + 3);
	for (int i = 0; i < 5; i++)
		tt_cli_close(&c[i]);
	tt_srv_stop(&s);
}

static void test_bandwidth(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nbandwidth = 8\n"); /* 1000 B/s */
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	struct net_addr relay, pa;
	assert_int_equal(tt_allocate(&c, &relay), 0);
	int pfd = tt_peer_open(&pa);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &pa), 0);
	int64_t bw = tt_counter("turn_dropped_total", "reason=\"bandwidth\"");
	uint8_t cd[4 + 400] = {0x40, 0x00, 0x01, 0x90};
	for (int i = 0; i < 20; i++) /* 8,000 bytes at once against 1,000 a second */
		tt_cli_send(&c, cd, sizeof cd);
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	tt_begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&c, &q), 0);
	int64_t dropped = tt_counter("turn_dropped_total", "reason=\"bandwidth\"") - bw;
	assert_true(dropped >= 10 && dropped <= 18); /* the first second's 1,000 passed */
	buf_free(&q);
	close(pfd);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* The per-user budget, as the attack: one user splits traffic over two
 * allocations, each within its own bandwidth; together they get no more
 * than bandwidth_per_user (1,000 B/s here: two 400-byte payloads of the
 * first burst pass, nothing of the second allocation's), counted apart from
 * the per-allocation drops. Another user's allocation is not touched. */
static void test_bandwidth_per_user(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nbandwidth = 800\n" /* 100,000 B/s */
			 "bandwidth_per_user = 8\n");			  /* 1,000 B/s */
	struct tt_cli c1, c2, other;
	tt_cli_open(&c1, &s, false, "alice", "wonder");
	tt_cli_open(&c2, &s, false, "alice", "wonder");
	tt_cli_open(&other, &s, false, "bob", "builder");
	assert_int_equal(tt_allocate(&c1, NULL), 0);
	assert_int_equal(tt_allocate(&c2, NULL), 0);
	assert_int_equal(tt_allocate(&other, NULL), 0);
	struct net_addr pa, from;
	int pfd = tt_peer_open(&pa);
	assert_int_equal(tt_chan_bind(&c1, 0x4000, &pa), 0);
	assert_int_equal(tt_chan_bind(&c2, 0x4000, &pa), 0);
	assert_int_equal(tt_chan_bind(&other, 0x4000, &pa), 0);
	int64_t bw = tt_counter("turn_dropped_total", "reason=\"bandwidth\"");
	int64_t ubw = tt_counter("turn_dropped_total", "reason=\"user_bandwidth\"");
	uint8_t cd[4 + 400] = {0x40, 0x00, 0x01, 0x90};
	for (int i = 0; i < 10; i++)
		tt_cli_send(&c1, cd, sizeof cd);
	for (int i = 0; i < 10; i++)
		tt_cli_send(&c2, cd, sizeof cd);
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	tt_begin(&q, &e, STUN_METHOD_BINDING); /* answered after the ChannelData */
	assert_int_equal(tt_xchg(&c1, &q), 0);
	tt_begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&c2, &q), 0);
	int64_t dropped = tt_counter("turn_dropped_total", "reason=\"user_bandwidth\"") - ubw;
	if (dropped < 17 || dropped > 18) /* 1,000 B and what refilled meanwhile */
		fail_msg("%lld dropped for the user's budget", (long long)dropped);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"bandwidth\""), bw);
	uint8_t got[512];
	int arrived = 0;
	struct pollfd pf = {pfd, POLLIN, 0};
	while (poll(&pf, 1, 200) == 1)
		arrived += tt_peer_recv(pfd, got, sizeof got, &from) == 400;
	assert_int_equal(arrived, 20 - dropped);
	/* bob has a budget of his own */
	for (int i = 0; i < 2; i++)
		tt_cli_send(&other, cd, sizeof cd);
	for (int i = 0; i < 2; i++)
		assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 400);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"user_bandwidth\""),
			 ubw + dropped);
	buf_free(&q);
	close(pfd);
	tt_cli_close(&c1);
	tt_cli_close(&c2);
	tt_cli_close(&other);
	tt_srv_stop(&s);
}

/* Per-source budget: a source over it gets no answers (counted). */
static void test_rate_limit(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "rate = 1\nburst = 3\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	int64_t r0 = tt_counter("turn_dropped_total", "reason=\"rate\"");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	for (int i = 0; i < 3; i++) {
		tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
		assert_int_equal(tt_xchg(&c, &b), 401);
	}
	/* ten more at once: at most what refilled meanwhile (1/s) is answered */
	for (int i = 0; i < 10; i++) {
		tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
		tt_cli_send(&c, b.data, b.len);
	}
	for (int i = 0; i < 300 && tt_counter("turn_dropped_total", "reason=\"rate\"") < r0 + 8;
	     i++)
		usleep(10000);
	assert_true(tt_counter("turn_dropped_total", "reason=\"rate\"") >= r0 + 8);
	buf_free(&b);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* The budgets are per allocation and per TCP connection too: a flood from
 * other ports of the same address (a busy NAT) does not starve an
 * allocation's refreshes, and one TCP connection's does not starve another's. */
static void test_rate_budgets_apart(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "rate = 1\nburst = 3\n");
	struct tt_cli a, flood, t1, t2;
	tt_cli_open(&a, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&a, NULL), 0); /* 2 of the address's 3 */
	tt_cli_open(&flood, &s, false, "bob", "builder");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	int64_t r0 = tt_counter("turn_dropped_total", "reason=\"rate\"");
	for (int i = 0; i < 10; i++) {
		tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
		tt_cli_send(&flood, b.data, b.len);
	}
	for (int i = 0; i < 300 && tt_counter("turn_dropped_total", "reason=\"rate\"") < r0 + 7;
	     i++)
		usleep(10000);
	assert_true(tt_counter("turn_dropped_total", "reason=\"rate\"") >= r0 + 7);
	assert_int_equal(tt_refresh(&a, 600), 0); /* its own budget */
	assert_int_equal(tt_perm(&a, "198.18.0.9:1"), 0);
	/* TCP: one connection over its budget, another one answered */
	tt_cli_open(&t1, &s, true, "alice", "wonder");
	tt_cli_open(&t2, &s, true, "alice", "wonder");
	for (int i = 0; i < 3; i++) {
		tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
		assert_int_equal(tt_xchg(&t1, &b), 401);
	}
	int64_t r1 = tt_counter("turn_dropped_total", "reason=\"rate\"");
	for (int i = 0; i < 10; i++) {
		tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
		tt_cli_send(&t1, b.data, b.len);
	}
	for (int i = 0; i < 300 && tt_counter("turn_dropped_total", "reason=\"rate\"") < r1 + 7;
	     i++)
		usleep(10000);
	assert_true(tt_counter("turn_dropped_total", "reason=\"rate\"") >= r1 + 7);
	assert_int_equal(tt_allocate(&t2, NULL), 0);
	buf_free(&b);
	tt_cli_close(&a);
	tt_cli_close(&flood);
	tt_cli_close(&t1);
	tt_cli_close(&t2);
	tt_srv_stop(&s);
}

/* Lifetimes: the answer's LIFETIME follows RFC 8656 7.2, and an allocation
 * left alone past it goes (the clock jumps; the sweep runs each second). */
/* A live channel whose permission expired (300 s against the channel's
 * 600) is refreshed after the client filled its permissions with others:
 * the binding's permission must still respect max_permissions (508), not
 * be written past the table. */
static void test_channel_refresh_perm_bound(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nmax_permissions = 1\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c, NULL), 0);
	struct net_addr p1;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p1), 0);
	int64_t perms = tt_counter("turn_permissions", NULL);
	time_mono_advance(301 * 1000); /* the permission goes, the channel stays */
	for (int i = 0; i < 500 && tt_counter("turn_permissions", NULL) == perms; i++)
		usleep(10000);
	assert_int_equal(tt_counter("turn_permissions", NULL), perms - 1);
	assert_int_equal(tt_perm(&c, "127.0.0.2:1"), 0); /* the one permission */
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p1), 508);
	assert_int_equal(tt_counter("turn_permissions", NULL), perms);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* RFC 8656 12, as the attack: a client's channel to peer 1 expires; binding
 * that number to peer 2, or peer 1 to another number, is refused for the
 * 5 minutes after, so a late ChannelData meant for peer 1 cannot reach
 * peer 2; the same pair may be bound again and relays; after the hold the
 * number is free. The kernel's copy (when the fast path runs) goes at
 * expiry as well: nothing reaches either peer meanwhile. */
static void test_channel_hold(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c, NULL), 0);
	assert_int_equal(tt_refresh(&c, 3600), 0);
	struct net_addr p1, p2, from;
	int f1 = tt_peer_open(&p1), f2 = tt_peer_open(&p2);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p1), 0);
	int64_t chans = tt_counter("turn_channels", NULL);
	time_mono_advance(601 * 1000); /* the channel expires, the allocation lives */
	for (int i = 0; i < 500 && tt_counter("turn_channels", NULL) == chans; i++)
		usleep(10000);
	assert_int_equal(tt_counter("turn_channels", NULL), chans - 1);
	const uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 'l', 'a', 't', 'e'};
	tt_cli_send(&c, cd, sizeof cd); /* late: for nobody */
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p2), 400);
	assert_int_equal(tt_chan_bind(&c, 0x4001, &p1), 400);
	tt_cli_send(&c, cd, sizeof cd);
	usleep(100000);
	assert_true(tt_peer_nothing(f1));
	assert_true(tt_peer_nothing(f2));
	/* the same pair again: live, counted, relaying to peer 1 */
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p1), 0);
	assert_int_equal(tt_counter("turn_channels", NULL), chans);
	tt_cli_send(&c, cd, sizeof cd);
	uint8_t got[16];
	assert_int_equal(tt_peer_recv(f1, got, sizeof got, &from), 4);
	assert_memory_equal(got, "late", 4);
	/* expired again and past the hold: the number may go to peer 2 */
	time_mono_advance((600 + 300 + 1) * 1000);
	for (int i = 0; i < 500 && tt_counter("turn_channels", NULL) == chans; i++)
		usleep(10000);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &p2), 0);
	tt_cli_send(&c, cd, sizeof cd);
	assert_int_equal(tt_peer_recv(f2, got, sizeof got, &from), 4);
	usleep(50000);
	assert_true(tt_peer_nothing(f1));
	assert_int_equal(tt_counter("turn_channels", NULL), chans);
	close(f1);
	close(f2);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

static void test_expiry(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "max_lifetime = 1200\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c, NULL), 0);
	uint32_t life;
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 600);
	assert_int_equal(tt_refresh(&c, 5000), 0);
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 1200);
	assert_int_equal(tt_refresh(&c, 30), 0);
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 600);
	int64_t exp = tt_counter("turn_allocations_expired_total", NULL);
	time_mono_advance(601 * 1000);
	for (int i = 0; i < 500 && turn_allocation_count(s.t); i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 0);
	assert_int_equal(tt_counter("turn_allocations_expired_total", NULL), exp + 1);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* A stranger's TCP connections: bounded per address, counted. */
static void test_tcp_caps(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "tcp_max_connections_per_address = 2\n");
	int64_t r0 = tt_counter("turn_tcp_refused_total", NULL);
	struct tt_cli c[3];
	/* the first two work (answered: accepted, on whichever thread) */
	for (int i = 0; i < 2; i++) {
		tt_cli_open(&c[i], &s, true, "alice", "wonder");
		assert_int_equal(tt_allocate(&c[i], NULL), 0);
	}
	/* the third is closed at accept, on any thread: it reads end of file */
	tt_cli_open(&c[2], &s, true, "alice", "wonder");
	struct pollfd pf = {c[2].fd, POLLIN, 0};
	assert_int_equal(poll(&pf, 1, 3000), 1);
	uint8_t x[4];
	assert_true(recv(c[2].fd, x, sizeof x, 0) <= 0);
	assert_int_equal(tt_counter("turn_tcp_refused_total", NULL), r0 + 1);
	/* one closing takes its allocation with it */
	tt_cli_close(&c[0]);
	for (int i = 0; i < 300 && turn_allocation_count(s.t) != 1; i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 1);
	tt_cli_close(&c[1]);
	tt_cli_close(&c[2]);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "24200-24399";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_peer_denied),	 cmocka_unit_test(test_quotas),
	    cmocka_unit_test(test_bandwidth),	 cmocka_unit_test(test_bandwidth_per_user),
	    cmocka_unit_test(test_rate_limit),	 cmocka_unit_test(test_rate_budgets_apart),
	    cmocka_unit_test(test_tcp_caps),	 cmocka_unit_test(test_channel_refresh_perm_bound),
	    cmocka_unit_test(test_channel_hold), cmocka_unit_test(test_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
