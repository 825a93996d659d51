/* net: outgoing TCP over loopback: connect, queue, reuse, RFC 5923 alias, failures, bounds. */
#include <errno.h>
#include <netinet/tcp.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/net.h"
#include "testenv.h"

/* ---- what the net under test received ---- */

#define MAX_RECS 32
struct rec {
	struct flow f;
	char data[64];
	size_t len;
};
static struct {
	pthread_mutex_t lock;
	struct rec r[MAX_RECS];
	size_t n;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_recv(struct worker *w, const struct flow *f, const char *data, size_t len, void *arg)
{
	(void)w, (void)arg;
	pthread_mutex_lock(&R.lock);
	if (R.n < MAX_RECS) {
		R.r[R.n].f = *f;
		R.r[R.n].len = MIN(len, sizeof R.r[R.n].data);
		memcpy(R.r[R.n].data, data, R.r[R.n].len);
		R.n++;
	}
	pthread_mutex_unlock(&R.lock);
}

/* Connections the closed hook heard of, in order. */
static struct {
	pthread_mutex_t lock;
	uint64_t id[MAX_RECS];
	size_t n;
} C = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_closed(struct worker *w, const struct flow *f, void *arg)
{
	(void)w, (void)arg;
	pthread_mutex_lock(&C.lock);
	if (C.n < MAX_RECS)
		C.id[C.n++] = f->conn_id;
	pthread_mutex_unlock(&C.lock);
}

static bool closed_heard(uint64_t id)
{
	bool found = false;
	pthread_mutex_lock(&C.lock);
	for (size_t i = 0; i < C.n; i++)
		found |= C.id[i] == id;
	pthread_mutex_unlock(&C.lock);
	return found;
}

static size_t rec_count(void)
{
	pthread_mutex_lock(&R.lock);
	size_t n = R.n;
	pthread_mutex_unlock(&R.lock);
	return n;
}

static struct rec rec_get(size_t i)
{
	pthread_mutex_lock(&R.lock);
	struct rec r = R.r[i];
	pthread_mutex_unlock(&R.lock);
	return r;
}

static struct net_addr addr_of(const char *s)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse(s, 0, &a), 0);
	return a;
}

/* A net with one TCP listener on 127.0.0.1 and two workers. */
static struct net *srv_start(unsigned max_conns, unsigned max_connecting, unsigned connect_s)
{
	struct net_conf nc = {.workers = 2,
			      .max_msg = 1500,
			      .tcp_max_conns = max_conns,
			      .tcp_connect_s = connect_s,
			      .tcp_max_connecting = max_connecting};
	pthread_mutex_lock(&R.lock);
	R.n = 0;
	pthread_mutex_unlock(&R.lock);
	struct net *n;
	assert_int_equal(net_alloc(&n, &nc), 0);
	struct net_listener_conf t = {.tp = NET_TCP, .addr = addr_of("127.0.0.1:0")};
	unsigned idx;
	assert_int_equal(net_listen(n, &t, &idx), 0);
	assert_int_equal(idx, 0);
	net_set_recv(n, on_recv, test_frame_lines, NULL);
	pthread_mutex_lock(&C.lock);
	C.n = 0;
	pthread_mutex_unlock(&C.lock);
	net_set_conn_closed(n, on_closed, NULL);
	assert_int_equal(net_start(n), 0);
	return n;
}

static struct net_stats stats(struct net *n)
{
	struct net_stats st;
	net_stats_get(n, &st);
	return st;
}

/* ---- running a call on a worker (a connection belongs to a worker's loop) ---- */

struct on_worker {
	struct net *n;
	struct flow f;
	const char *msg;
	int connect_err, send_err;
	_Atomic bool done;
};

static void connect_and_send(void *arg)
{
	struct on_worker *ow = arg;
	ow->connect_err = net_flow_connect(ow->n, &ow->f);
	ow->send_err =
	    ow->msg && !ow->connect_err ? net_send(ow->n, &ow->f, ow->msg, strlen(ow->msg)) : 0;
	ow->done = true;
}

/* On worker 0: net_flow_connect on f, then (if it worked) sends msg on it. */
static struct on_worker run_connect(struct net *n, const struct flow *f, const char *msg)
{
	struct on_worker ow = {.n = n, .f = *f, .msg = msg};
	assert_int_equal(loop_post(worker_loop(net_worker(n, 0)), connect_and_send, &ow), 0);
	assert_true(WAIT_UNTIL(ow.done, 5000));
	return ow;
}

/* ---- the far end: plain sockets ---- */

static int listener(int backlog, struct net_addr *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct net_addr a = addr_of("127.0.0.1:0");
	assert_int_equal(bind(fd, &a.u.sa, net_addr_len(&a)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(net_sock_addr(fd, bound), 0);
	return fd;
}

static int accept_within(int lfd, unsigned ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, (int)ms) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static ssize_t read_within(int fd, char *buf, size_t cap, unsigned ms)
{
	size_t got = 0;
	uint64_t end = time_mono_ms() + ms;
	while (got < cap - 1 && !memchr(buf, '\n', got)) {
		uint64_t now = time_mono_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		ssize_t k = recv(fd, buf + got, cap - 1 - got, MSG_DONTWAIT);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

static int tcp_client(const struct net_addr *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

/* ---- tests ---- */

/* A request to a next hop by address opens a connection on the worker, the
 * message queued while it connects leaves once it is up, and the answer
 * comes back over that same connection. */
static void connect_send_answer(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 0);
	struct net_addr peer;
	int lfd = listener(16, &peer);
	struct flow hop;
	net_flow_next_hop(n, 0, &peer, &hop);
	assert_true(hop.may_connect);
	assert_int_equal(hop.conn_id, 0);
	assert_int_equal(hop.tp, NET_TCP);

	struct on_worker ow = run_connect(n, &hop, "INVITE 1\n");
	assert_int_equal(ow.connect_err, 0);
	assert_int_equal(ow.send_err, 0);
	assert_true(ow.f.conn_id != 0);
	assert_false(ow.f.may_connect);
	/* our end as a Via names it: our IP, the listener's port */
	assert_int_equal(net_addr_port(&ow.f.local), net_addr_port(net_listener_addr(n, 0)));

	int fd = accept_within(lfd, 5000);
	assert_true(fd >= 0);
	char buf[256];
	read_within(fd, buf, sizeof buf, 5000);
	assert_string_equal(buf, "INVITE 1\n");
	assert_int_equal(send(fd, "200 OK\n", 7, MSG_NOSIGNAL), 7);
	assert_true(WAIT_UNTIL(rec_count() == 1, 5000));
	struct rec r = rec_get(0);
	assert_int_equal(r.f.conn_id, ow.f.conn_id); /* the same connection */
	assert_true(net_addr_eq(&r.f.remote, &peer));
	assert_memory_equal(r.data, "200 OK\n", 7);

	struct net_stats st = stats(n);
	assert_int_equal(st.tcp_connects, 1);
	assert_int_equal(st.tcp_connect_failed, 0);
	assert_int_equal(st.tcp_connecting, 0);
	assert_int_equal(st.tcp_open, 1);
	assert_int_equal(st.tcp_accepted, 0);
	assert_int_equal(st.tcp_buffered, 0); /* the queue went out and was freed */

	/* an alias the peer says over our own connection leaves it the way to
	 * where we connected */
	assert_int_equal(net_conn_alias(n, ow.f.conn_id, 5555), 0);
	/* sent from a thread that is no worker, the next hop reuses it too */
	assert_int_equal(net_send(n, &hop, "BYE 1\n", 6), 0);
	read_within(fd, buf, sizeof buf, 5000);
	assert_string_equal(buf, "BYE 1\n");
	assert_int_equal(stats(n).tcp_connects, 1);
	close(fd);
	close(lfd);
	net_free(n);
}

/* Two requests to the same next hop: one connect, one connection. */
static void reuse_one_connect(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 0);
	struct net_addr peer;
	int lfd = listener(16, &peer);
	struct flow hop;
	net_flow_next_hop(n, 0, &peer, &hop);
	struct on_worker a = run_connect(n, &hop, "one\n");
	struct on_worker b = run_connect(n, &hop, "two\n");
	assert_int_equal(a.connect_err, 0);
	assert_int_equal(b.connect_err, 0);
	assert_int_equal(a.f.conn_id, b.f.conn_id);
	int fd = accept_within(lfd, 5000);
	assert_true(fd >= 0);
	char buf[256];
	size_t got = 0;
	uint64_t end = time_mono_ms() + 5000;
	while (got < 8 && time_mono_ms() < end) {
		ssize_t k = read_within(fd, buf + got, sizeof buf - got, 100);
		if (k > 0)
			got += (size_t)k;
	}
	buf[got] = '\0';
	assert_string_equal(buf, "one\ntwo\n");	      /* in order, one stream */
	assert_int_equal(accept_within(lfd, 50), -1); /* no second connection */
	assert_int_equal(stats(n).tcp_connects, 1);
	close(fd);
	close(lfd);
	net_free(n);
}

/* RFC 5923: a peer connected to us and said ;alias for its listening port:
 * a request toward that port goes over the peer's connection, no connect. */
static void alias_reused_no_connect(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	assert_int_equal(send(fd, "REGISTER\n", 9, MSG_NOSIGNAL), 9);
	assert_true(WAIT_UNTIL(rec_count() == 1, 5000));
	struct flow in = rec_get(0).f;
	/* the peer's listening address: its IP, another port */
	struct net_addr peer_listen = in.remote;
	net_addr_set_port(&peer_listen, 5099);
	assert_int_equal(net_conn_alias(n, in.conn_id, 5099), 0);

	struct flow hop;
	net_flow_next_hop(n, 0, &peer_listen, &hop);
	struct on_worker ow = run_connect(n, &hop, "INVITE\n");
	assert_int_equal(ow.connect_err, 0);
	assert_int_equal(ow.send_err, 0);
	assert_int_equal(ow.f.conn_id, in.conn_id);
	char buf[64];
	read_within(fd, buf, sizeof buf, 5000);
	assert_string_equal(buf, "INVITE\n");
	assert_int_equal(stats(n).tcp_connects, 0);

	/* what a Record-Route names for it: the peer's listening address */
	struct flow rr = in;
	assert_true(net_conn_next_hop(n, &rr));
	assert_true(rr.may_connect);
	assert_int_equal(rr.conn_id, 0);
	assert_true(net_addr_eq(&rr.remote, &peer_listen));

	/* an alias for another port is no alias for this one */
	assert_int_equal(net_conn_alias(n, in.conn_id, 5098), 0);
	assert_int_equal(net_conn_alias(n, 987654, 5098), ENOTCONN);
	close(fd);
	assert_true(WAIT_UNTIL(!net_conn_alive(n, in.conn_id), 5000));
	net_free(n);
}

/* Never connect toward a phone: its flow names its connection; once that
 * closed, a request for it fails and no connect is attempted, although the
 * phone's address is there to dial. A stored flow of an earlier run (conn_id
 * cleared) does not dial either. */
static void phone_flow_never_connects(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 0);
	int fd = tcp_client(net_listener_addr(n, 0));
	assert_int_equal(send(fd, "REGISTER\n", 9, MSG_NOSIGNAL), 9);
	assert_true(WAIT_UNTIL(rec_count() == 1, 5000));
	struct flow phone = rec_get(0).f;
	assert_false(phone.may_connect);
	struct flow rr = phone; /* a phone's connection is no next hop */
	assert_false(net_conn_next_hop(n, &rr));
	assert_true(flow_eq(&rr, &phone));
	close(fd);
	assert_true(WAIT_UNTIL(!net_conn_alive(n, phone.conn_id), 5000));

	/* a listener at the phone's very address: a dial would reach it */
	struct net_addr at = phone.remote;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	bool listening = bind(lfd, &at.u.sa, net_addr_len(&at)) == 0 && listen(lfd, 4) == 0;

	struct on_worker ow = run_connect(n, &phone, "INVITE\n");
	assert_int_equal(ow.connect_err, 0); /* left as it is: names its connection */
	assert_int_equal(ow.send_err, ENOTCONN);
	assert_int_equal(net_send(n, &phone, "INVITE\n", 7), ENOTCONN);
	struct flow stored = phone;
	stored.conn_id = 0;
	ow = run_connect(n, &stored, "INVITE\n");
	assert_int_equal(ow.connect_err, ENOTCONN);
	assert_int_equal(net_send(n, &stored, "INVITE\n", 7), ENOTCONN);
	assert_int_equal(stats(n).tcp_connects, 0);
	if (listening)
		assert_int_equal(accept_within(lfd, 100), -1);
	close(lfd);
	net_free(n);
}

/* Nothing listens: the connect fails, is counted and its connection (and
 * what was queued on it) goes at once, not at a timeout. */
static void connect_refused_reported(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 600); /* a timeout could not be what ends it */
	struct net_addr dead;
	close(listener(1, &dead));
	struct flow hop;
	net_flow_next_hop(n, 0, &dead, &hop);
	struct on_worker ow = run_connect(n, &hop, "INVITE\n");
	/* refused at once by the kernel, or soon on the loop */
	if (ow.connect_err == 0) {
		assert_int_equal(ow.send_err, 0);
		/* the sender hears of it as of any close: the closed hook */
		assert_true(WAIT_UNTIL(closed_heard(ow.f.conn_id), 5000));
		assert_false(net_conn_alive(n, ow.f.conn_id));
	} else {
		assert_int_equal(ow.connect_err, ECONNREFUSED);
	}
	assert_true(WAIT_UNTIL(stats(n).tcp_connect_failed == 1, 5000));
	struct net_stats st = stats(n);
	assert_int_equal(st.tcp_connects, 1);
	assert_int_equal(st.tcp_open, 0);
	assert_int_equal(st.tcp_connecting, 0);
	assert_int_equal(st.tcp_buffered, 0);
	assert_int_equal(net_send(n, &ow.f, "x\n", 2), ENOTCONN);
	net_free(n);
}

/* A listener whose accept queue is full drops SYNs: a connect to it hangs
 * until tcp_connect_s ends it. fillers[] keep the queue full. */
static int black_hole(struct net_addr *at, int fillers[2])
{
	int lfd = listener(0, at);
	for (int i = 0; i < 2; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fillers[i], &at->u.sa, net_addr_len(at));
	}
	test_sleep_ms(50);
	return lfd;
}

static void connect_timeout_reported(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 2);
	struct net_addr at;
	int fill[2];
	int lfd = black_hole(&at, fill);
	struct flow hop;
	net_flow_next_hop(n, 0, &at, &hop);
	struct on_worker ow = run_connect(n, &hop, "INVITE\n");
	assert_int_equal(ow.connect_err, 0);
	assert_int_equal(stats(n).tcp_connecting, 1);
	assert_true(stats(n).tcp_buffered > 0); /* queued while it connects */
	assert_true(WAIT_UNTIL(closed_heard(ow.f.conn_id), 10000));
	assert_false(net_conn_alive(n, ow.f.conn_id));
	struct net_stats st = stats(n);
	assert_int_equal(st.tcp_connect_failed, 1);
	assert_int_equal(st.tcp_connecting, 0);
	assert_int_equal(st.tcp_open, 0);
	assert_int_equal(st.tcp_buffered, 0);
	close(fill[0]);
	close(fill[1]);
	close(lfd);
	net_free(n);
}

/* What a request naming TCP hosts can make us open: at most
 * tcp_max_connecting connects at once, and they count in tcp_max_conns. */
static void connect_bounds(void **state)
{
	(void)state;
	struct net *n = srv_start(4, 2, 600);
	struct net_addr at[3];
	int lfd[3], fill[3][2];
	for (int i = 0; i < 3; i++)
		lfd[i] = black_hole(&at[i], fill[i]);
	struct flow hop;
	for (int i = 0; i < 2; i++) {
		net_flow_next_hop(n, 0, &at[i], &hop);
		assert_int_equal(run_connect(n, &hop, "x\n").connect_err, 0);
	}
	net_flow_next_hop(n, 0, &at[2], &hop);
	assert_int_equal(run_connect(n, &hop, "x\n").connect_err, EAGAIN);
	/* the pending ones are reused, not dialled again */
	net_flow_next_hop(n, 0, &at[0], &hop);
	assert_int_equal(run_connect(n, &hop, "y\n").connect_err, 0);
	struct net_stats st = stats(n);
	assert_int_equal(st.tcp_connects, 2);
	assert_int_equal(st.tcp_connect_limited, 1);
	assert_int_equal(st.tcp_connecting, 2);
	assert_int_equal(st.tcp_open, 2);

	/* tcp_max_conns holds accepted and outgoing ones together */
	int c1 = tcp_client(net_listener_addr(n, 0)), c2 = tcp_client(net_listener_addr(n, 0));
	assert_true(WAIT_UNTIL(stats(n).tcp_open == 4, 5000));
	struct net_addr free_peer;
	int lf = listener(4, &free_peer);
	net_flow_next_hop(n, 0, &free_peer, &hop);
	assert_int_equal(run_connect(n, &hop, "x\n").connect_err, ENOSPC);
	assert_int_equal(stats(n).tcp_connect_limited, 2);
	assert_int_equal(stats(n).tcp_connects, 2);
	assert_int_equal(accept_within(lf, 50), -1);
	close(c1);
	close(c2);
	close(lf);
	for (int i = 0; i < 3; i++) {
		close(fill[i][0]);
		close(fill[i][1]);
		close(lfd[i]);
	}
	net_free(n);
}

/* Off the workers no connection is opened (it would belong to no loop),
 * but an existing one is reused. */
static void connect_off_worker(void **state)
{
	(void)state;
	struct net *n = srv_start(0, 0, 0);
	struct net_addr peer;
	int lfd = listener(4, &peer);
	struct flow hop;
	net_flow_next_hop(n, 0, &peer, &hop);
	struct flow f = hop;
	assert_int_equal(net_flow_connect(n, &f), ENOTCONN);
	assert_int_equal(net_send(n, &hop, "x\n", 2), ENOTCONN);
	assert_int_equal(stats(n).tcp_connects, 0);
	assert_int_equal(stats(n).tcp_connect_limited, 0);
	struct net_addr v6 = addr_of("[::1]:5060");
	net_flow_next_hop(n, 0, &v6, &f);
	assert_int_equal(net_flow_connect(n, &f), EAFNOSUPPORT);
	close(lfd);
	net_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(connect_send_answer),	cmocka_unit_test(reuse_one_connect),
	    cmocka_unit_test(alias_reused_no_connect),	cmocka_unit_test(phone_flow_never_connects),
	    cmocka_unit_test(connect_refused_reported), cmocka_unit_test(connect_timeout_reported),
	    cmocka_unit_test(connect_bounds),		cmocka_unit_test(connect_off_worker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
