/* The TURN role on two threads ([turn] threads = 2): what the threads share works across them.
 * Which thread a client lands on is the kernel's SO_REUSEPORT hash of its 5-tuple, so the test
 * first sorts client sockets by the thread their allocation was made on (then frees it: the
 * same 5-tuple comes back to the same thread), and then uses sockets of both. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turn/turn_int.h" /* which thread holds an allocation */
#include "turnc.h"

#define POOL 48	    /* client sockets sorted by thread */
#define PER_USER 4 /* [turn] max_allocations_per_user below */
#define TOTAL 7	    /* [turn] max_allocations below */

/* The thread whose tables hold the allocation of c's 5-tuple, or -1. */
static int owner(struct turn *t0, const struct tt_cli *c)
{
	struct net_addr local;
	net_sock_addr(c->fd, &local);
	int found = -1;
	for (unsigned i = 0; i < t0->sh->nthr; i++) {
		struct turn *t = t0->sh->thr[i];
		pthread_mutex_lock(&t->lock);
		for (struct turn_alloc *a = t->all; a; a = a->next)
			if (a->tp == NET_UDP && net_addr_eq(&a->client, &local))
				found = (int)i;
		pthread_mutex_unlock(&t->lock);
	}
	return found;
}

/* A shared-secret user of its own for each probe: no quota in the way. */
static void secret_user(struct tt_cli *c, int i)
{
	snprintf(c->user, sizeof c->user, "%lld:probe%d", (long long)time_wall_s() + 3600, i);
	assert_int_equal(turn_secret_password(SLICE_LIT(SECRET), slice_cstr(c->user), c->pass), 0);
}

struct pool {
	struct tt_cli c[POOL];
	int thr[POOL];
	int by[2][POOL]; /* indices of the sockets of thread 0 and 1 */
	int n[2];
};

static void sort_sockets(struct tt_srv *s, struct pool *p)
{
	memset(p->n, 0, sizeof p->n);
	for (int i = 0; i < POOL; i++) {
		tt_cli_open(&p->c[i], s, false, "x", "y");
		secret_user(&p->c[i], i);
		assert_int_equal(tt_allocate(&p->c[i], NULL), 0);
		p->thr[i] = owner(s->t, &p->c[i]);
		assert_true(p->thr[i] == 0 || p->thr[i] == 1);
		p->by[p->thr[i]][p->n[p->thr[i]]++] = i;
		assert_int_equal(tt_refresh(&p->c[i], 0), 0); /* freed: its quota back */
		p->c[i].nonce[0] = 0;
	}
	assert_int_equal(turn_allocation_count(s->t), 0);
	/* 48 5-tuples all on one of two sockets would be a broken hash */
	assert_true(p->n[0] > PER_USER + 1 && p->n[1] > PER_USER + 1);
}

static void as_user(struct tt_cli *c, const char *user, const char *pass)
{
	snprintf(c->user, sizeof c->user, "%s", user);
	snprintf(c->pass, sizeof c->pass, "%s", pass);
	c->nonce[0] = 0;
}

static void pool_close(struct pool *p)
{
	for (int i = 0; i < POOL; i++)
		tt_cli_close(&p->c[i]);
}

/* Per-user and total quotas count the allocations of both threads. */
static void test_quota_across_threads(void **state)
{
	(void)state;
	struct tt_srv s;
	char extra[160];
	snprintf(extra, sizeof extra,
		 "threads = 2\nrate = 0\nmax_allocations_per_user = %d\nmax_allocations = %d\n",
		 PER_USER, TOTAL);
	tt_srv_start(&s, extra);
	static struct pool p;
	sort_sockets(&s, &p);
	/* alice: two on each thread, then a fifth is over her quota on either */
	for (int k = 0; k < PER_USER; k++) {
		struct tt_cli *c = &p.c[p.by[k % 2][k / 2]];
		as_user(c, "alice", "wonder");
		assert_int_equal(tt_allocate(c, NULL), 0);
		assert_int_equal(owner(s.t, c), k % 2);
	}
	int64_t q0 = tt_counter("turn_errors_total", "code=\"486\"");
	for (int th = 0; th < 2; th++) {
		struct tt_cli *c = &p.c[p.by[th][PER_USER]];
		as_user(c, "alice", "wonder");
		assert_int_equal(tt_allocate(c, NULL), 486);
	}
	assert_int_equal(tt_counter("turn_errors_total", "code=\"486\""), q0 + 2);
	/* bob: the total (7) leaves him three, wherever they land */
	struct tt_cli *b[4] = {&p.c[p.by[0][3]], &p.c[p.by[1][3]], &p.c[p.by[0][4]],
			       &p.c[p.by[1][4]]};
	for (int k = 0; k < 3; k++) {
		as_user(b[k], "bob", "builder");
		assert_int_equal(tt_allocate(b[k], NULL), 0);
	}
	as_user(b[3], "bob", "builder");
	assert_int_equal(tt_allocate(b[3], NULL), 508);
	assert_int_equal(turn_allocation_count(s.t), TOTAL);
	/* the listing has all of them, from both threads */
	struct buf out;
	buf_init(&out);
	assert_int_equal(turn_dump_json(s.t, &out), 0);
	buf_append(&out, "", 1);
	char want[32];
	snprintf(want, sizeof want, "\"count\":%d}", TOTAL);
	assert_non_null(strstr(out.data, want));
	buf_free(&out);
	/* one of alice's on thread 1 goes: her next one fits, on thread 0 */
	assert_int_equal(tt_refresh(&p.c[p.by[1][0]], 0), 0);
	struct tt_cli *c = &p.c[p.by[0][PER_USER + 1]];
	as_user(c, "alice", "wonder");
	assert_int_equal(tt_allocate(c, NULL), 0);
	assert_int_equal(owner(s.t, c), 0);
	pool_close(&p);
	tt_srv_stop(&s);
}

/* Two clients of the server on different threads relay to each other's
 * relayed address (loopback: only allowed as another allocation's), both
 * ways; once one allocation goes, the other's channel to it stops. */
static void test_relay_across_threads(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "threads = 2\nrate = 0\n");
	static struct pool p;
	sort_sockets(&s, &p);
	struct tt_cli *a = &p.c[p.by[0][0]], *b = &p.c[p.by[1][0]];
	as_user(a, "alice", "wonder");
	as_user(b, "bob", "builder");
	struct net_addr ra, rb;
	assert_int_equal(tt_allocate(a, &ra), 0);
	assert_int_equal(tt_allocate(b, &rb), 0);
	assert_int_equal(owner(s.t, a), 0);
	assert_int_equal(owner(s.t, b), 1);
	char sa[NET_ADDR_STRLEN], sb[NET_ADDR_STRLEN];
	net_addr_fmt(&ra, sa, sizeof sa);
	net_addr_fmt(&rb, sb, sizeof sb);
	/* loopback that is no relayed address: refused */
	assert_int_equal(tt_perm(a, "127.0.0.1:9"), 403);
	/* thread 0's client to thread 1's relayed address, over a channel */
	assert_int_equal(tt_chan_bind(a, 0x4000, &rb), 0);
	assert_int_equal(tt_perm(b, sa), 0);
	uint8_t cd[9] = {0x40, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
	tt_cli_send(a, cd, sizeof cd);
	assert_true(tt_cli_recv(b));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b->rx, b->rxlen), 0);
	assert_int_equal(m.method, STUN_METHOD_DATA);
	struct net_addr xp;
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_PEER_ADDRESS, &xp.u.ss), 0);
	assert_true(net_addr_eq(&xp, &ra));
	const struct stun_attr *d = stun_msg_attr(&m, STUN_ATTR_DATA);
	assert_non_null(d);
	assert_int_equal(d->len, 5);
	assert_memory_equal(d->v, "hello", 5);
	/* and back with a Send indication: ChannelData on a's channel */
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	stun_enc_begin(&e, &q, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &ra.u.sa);
	stun_enc_attr(&e, STUN_ATTR_DATA, "world", 5);
	assert_int_equal(stun_enc_end(&e), 0);
	tt_cli_send(b, q.data, q.len);
	assert_true(tt_cli_recv(a));
	assert_int_equal(a->rxlen, 9);
	assert_memory_equal(a->rx, "\x40\x00\x00\x05world", 9);
	/* b's allocation goes (on thread 1): a's channel to its address is
	 * refused from the next packet on (thread 0 sees the shared index move) */
	assert_int_equal(tt_refresh(b, 0), 0);
	int64_t denied = tt_counter("turn_denied_peers_total", NULL);
	tt_cli_send(a, cd, sizeof cd);
	tt_begin(&q, &e, STUN_METHOD_BINDING); /* its answer: the server has read the above */
	assert_int_equal(tt_xchg(a, &q), 0);
	assert_int_equal(tt_counter("turn_denied_peers_total", NULL), denied + 1);
	buf_free(&q);
	pool_close(&p);
	tt_srv_stop(&s);
}

/* An EVEN-PORT reservation made through one thread is claimed through the
 * other (RFC 8656 7.2: a RESERVATION-TOKEN from another 5-tuple). */
static void test_reservation_across_threads(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "threads = 2\nrate = 0\n");
	static struct pool p;
	sort_sockets(&s, &p);
	for (int th = 0; th < 2; th++) {
		struct tt_cli *a = &p.c[p.by[th][1]], *b = &p.c[p.by[1 - th][1]];
		as_user(a, "alice", "wonder");
		as_user(b, "alice", "wonder");
		struct buf q;
		buf_init(&q);
		struct stun_enc e;
		tt_challenge(a);
		tt_begin(&q, &e, STUN_METHOD_ALLOCATE);
		stun_enc_transport(&e, STUN_PROTO_UDP);
		stun_enc_even_port(&e, true);
		tt_add_auth(a, &e);
		assert_int_equal(tt_xchg(a, &q), 0);
		struct net_addr r1, r2;
		assert_int_equal(stun_msg_addr(&a->m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r1.u.ss), 0);
		const struct stun_attr *tok = stun_msg_attr(&a->m, STUN_ATTR_RESERVATION_TOKEN);
		assert_non_null(tok);
		uint8_t token[8];
		memcpy(token, tok->v, 8);
		tt_challenge(b);
		tt_begin(&q, &e, STUN_METHOD_ALLOCATE);
		stun_enc_transport(&e, STUN_PROTO_UDP);
		stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, token, 8);
		tt_add_auth(b, &e);
		assert_int_equal(tt_xchg(b, &q), 0);
		assert_int_equal(stun_msg_addr(&b->m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r2.u.ss), 0);
		assert_int_equal(net_addr_port(&r2), net_addr_port(&r1) + 1);
		assert_int_equal(owner(s.t, a), th);
		assert_int_equal(owner(s.t, b), 1 - th);
		/* the token is spent */
		struct tt_cli *c = &p.c[p.by[th][2]];
		as_user(c, "alice", "wonder");
		tt_challenge(c);
		tt_begin(&q, &e, STUN_METHOD_ALLOCATE);
		stun_enc_transport(&e, STUN_PROTO_UDP);
		stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, token, 8);
		tt_add_auth(c, &e);
		assert_int_equal(tt_xchg(c, &q), 508);
		assert_int_equal(tt_refresh(a, 0), 0);
		assert_int_equal(tt_refresh(b, 0), 0);
		buf_free(&q);
	}
	pool_close(&p);
	tt_srv_stop(&s);
}

/* The batched reads and sends: a burst both ways arrives whole and in order,
 * and a datagram longer than a read slot (2 KiB) is relayed intact both
 * ways (its rest spills over into the shared area). */
static void test_batches_and_long_datagrams(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "threads = 2\nallowed_peers = 127.0.0.0/8\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	struct net_addr relay, pa, from;
	assert_int_equal(tt_allocate(&c, &relay), 0);
	int pfd = tt_peer_open(&pa);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &pa), 0);
	enum { BURST = 200 };
	for (int i = 0; i < BURST; i++) {
		uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, (uint8_t)(i >> 8), (uint8_t)i, 0xaa, 0x55};
		tt_cli_send(&c, cd, sizeof cd);
	}
	uint8_t got[8192];
	for (int i = 0; i < BURST; i++) {
		assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 4);
		assert_int_equal(got[0] << 8 | got[1], i);
	}
	for (int i = 0; i < BURST; i++) {
		uint8_t d[2] = {(uint8_t)(i >> 8), (uint8_t)i};
		assert_int_equal(sendto(pfd, d, 2, 0, &relay.u.sa, net_addr_len(&relay)), 2);
	}
	for (int i = 0; i < BURST; i++) {
		assert_true(tt_cli_recv(&c));
		assert_int_equal(c.rxlen, 6);
		assert_int_equal(c.rx[4] << 8 | c.rx[5], i);
	}
	/* 5000 bytes each way */
	static uint8_t big[5004];
	big[0] = 0x40;
	big[1] = 0x00;
	big[2] = 5000 >> 8;
	big[3] = 5000 & 0xff;
	for (size_t i = 4; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	tt_cli_send(&c, big, sizeof big);
	assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 5000);
	assert_memory_equal(got, big + 4, 5000);
	assert_int_equal(sendto(pfd, big + 4, 5000, 0, &relay.u.sa, net_addr_len(&relay)), 5000);
	assert_true(tt_cli_recv(&c));
	assert_int_equal(c.rxlen, 5004);
	assert_memory_equal(c.rx, big, 5004);
	close(pfd);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "25000-25199";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quota_across_threads),
	    cmocka_unit_test(test_relay_across_threads),
	    cmocka_unit_test(test_reservation_across_threads),
	    cmocka_unit_test(test_batches_and_long_datagrams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
