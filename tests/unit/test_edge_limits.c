/* Tests for the edge's bounds, each written as the attack: CRLF-only TCP
 * connections, transaction caps, per-source rate limits, overload shedding. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "edge/edge.h"
#include "phone.h"

static const struct conf_key *const tables[] = {edge_conf_keys, NULL};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int64_t metric_val(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

/* ---- an edge alone, with a handler that answers 200 or holds ---- */

static _Atomic bool hold;       /* leave requests unanswered (transactions pile up) */
static _Atomic int handled;     /* requests the handler saw */

static void on_request(const struct edge_rx *rx, void *arg)
{
	(void)arg;
	handled++;
	if (rx->st && !hold)
		stsx_reply(rx->st, 200, "OK", NULL);
}

struct lone {
	struct conf *conf;
	struct net *net;
	struct edge *edge;
	struct net_addr udp, tcp;
};

static void lone_start(struct lone *s, unsigned workers, unsigned handshake_s, const char *extra)
{
	char cfg[1024], err[256];
	snprintf(cfg, sizeof cfg,
		 "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nsteering = off\n%s", extra);
	memset(s, 0, sizeof *s);
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	if (conf_load_string(s->conf, "test", cfg, err, sizeof err))
		fail_msg("config: %s", err);
	struct net_conf nc = {.workers = workers, .max_msg = 8192, .tcp_handshake_s = handshake_s};
	assert_int_equal(net_alloc(&s->net, &nc), 0);
	assert_int_equal(edge_alloc(&s->edge, s->net, s->conf), 0);
	edge_set_handlers(s->edge, on_request, NULL, NULL);
	hold = false;
	handled = 0;
	assert_int_equal(net_start(s->net), 0);
	s->udp = *net_listener_addr(s->net, 0);
	s->tcp = *net_listener_addr(s->net, 1);
}

static void lone_stop(struct lone *s)
{
	net_stop(s->net);
	edge_free(s->edge);
	net_free(s->net);
	conf_free(s->conf);
}

static int udp_from(const char *ip)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct net_addr a;
	assert_int_equal(net_addr_parse(ip, 0, &a), 0);
	assert_int_equal(bind(fd, &a.u.sa, net_addr_len(&a)), 0);
	return fd;
}

/* An OPTIONS out of dialog (to_tag NULL) or within one. */
static void send_options(int fd, const struct net_addr *to, const char *call_id, int n,
			 const char *to_tag)
{
	char msg[1024];
	struct net_addr me;
	net_sock_addr(fd, &me);
	int l = snprintf(msg, sizeof msg,
			 "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKlim%s-%d;rport\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\n"
			 "To: <sip:x@127.0.0.1>%s%s\r\nCall-ID: %s\r\nCSeq: %d OPTIONS\r\n"
			 "Content-Length: 0\r\n\r\n",
			 net_addr_port(&me), call_id, n, to_tag ? ";tag=" : "", to_tag ? to_tag : "",
			 call_id, n + 1);
	assert_int_equal(sendto(fd, msg, (size_t)l, 0, &to->u.sa, net_addr_len(to)), l);
}

/* The status of the next response within ms (-1: none); its text in out. */
static int recv_status(int fd, unsigned ms, char *out, size_t cap)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, (int)ms) <= 0)
		return -1;
	ssize_t k = recv(fd, out, cap - 1, MSG_DONTWAIT);
	if (k < 12)
		return -1;
	out[k] = '\0';
	int st = -1;
	if (sscanf(out, "SIP/2.0 %d", &st) != 1)
		return -1;
	return st;
}

/* ---- TCP: a CRLF ping is no first message ---- */

/* The attack: connections that only ever send double-CRLF pings, each
 * answered, held open past tcp_first_message_timeout. */
static void test_crlf_pings_only_closed(void **state)
{
	(void)state;
	struct lone s;
	lone_start(&s, 1, 1, "");
	int64_t crlf0 = metric_val("sip_crlf_keepalives_total", NULL);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, &s.tcp.u.sa, net_addr_len(&s.tcp)), 0);
	bool closed = false;
	int pongs = 0;
	for (int i = 0; i < 40 && !closed; i++) { /* a ping every 100 ms, up to 4 s */
		if (send(fd, "\r\n\r\n", 4, MSG_NOSIGNAL) != 4) {
			closed = true;
			break;
		}
		sleep_ms(100);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) > 0) {
			char buf[64];
			ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (k <= 0)
				closed = true;
			else
				pongs++;
		}
	}
	assert_true(closed);
	assert_true(pongs > 0); /* the pings were answered while it lasted */
	assert_true(metric_val("sip_crlf_keepalives_total", NULL) > crlf0);
	struct net_stats st;
	net_stats_get(s.net, &st);
	assert_int_equal(st.tcp_idle_closed, 1);
	close(fd);
	lone_stop(&s);
}

/* ---- transaction caps ---- */

/* The attack: requests the handler never answers (a callee that rings for
 * ever) pile up server transactions. Past max_server_transactions the next
 * gets 503 with Retry-After, statelessly, and is counted. */
static void test_server_tsx_cap(void **state)
{
	(void)state;
	struct lone s;
	lone_start(&s, 2, 0, "max_server_transactions = 16\nrate_limit = 0\nretry_after = 7\n");
	hold = true;
	int fd = udp_from("127.0.0.1:0");
	int64_t refused0 = metric_val("sip_transactions_refused_total", "table=\"server\"");
	char buf[4096], cid[64];
	for (int i = 0; i < 16; i++) {
		snprintf(cid, sizeof cid, "cap-%d-%d", (int)getpid(), i);
		send_options(fd, &s.udp, cid, i, NULL);
	}
	for (int i = 0; i < 200 && handled < 16; i++)
		sleep_ms(10);
	assert_int_equal(handled, 16);
	assert_int_equal(recv_status(fd, 100, buf, sizeof buf), -1); /* all held */
	snprintf(cid, sizeof cid, "cap-%d-last", (int)getpid());
	send_options(fd, &s.udp, cid, 99, NULL);
	assert_int_equal(recv_status(fd, 2000, buf, sizeof buf), 503);
	assert_non_null(strstr(buf, "\r\nRetry-After: 7\r\n"));
	assert_non_null(strstr(buf, cid));
	assert_int_equal(handled, 16); /* it never reached the role */
	assert_int_equal(metric_val("sip_transactions_refused_total", "table=\"server\"") - refused0,
			 1);
	assert_int_equal(recv_status(fd, 100, buf, sizeof buf), -1); /* one answer only */
	/* a request within a dialog (a BYE ending a call) still gets through */
	send_options(fd, &s.udp, "cap-dialog", 1, "t1");
	for (int i = 0; i < 200 && handled < 17; i++)
		sleep_ms(10);
	assert_int_equal(handled, 17);
	close(fd);
	lone_stop(&s);
}

/* The attack: INVITEs to a callee that answers 180 and nothing more (an
 * attacker's own host) each pin a client transaction for Timer C's 3
 * minutes. Past max_client_transactions a new INVITE gets 503 with
 * Retry-After, and is not forwarded. */
static void test_client_tsx_cap(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, "[sip]\nlisten = udp:127.0.0.1:0\nmax_client_transactions = 16\n"
				"steering = off\n");
	struct phone caller, callee;
	phone_open(&caller, &srv);
	phone_open(&callee, &srv);
	phone_register(&callee, "bob");
	int64_t refused0 = metric_val("sip_transactions_refused_total", "table=\"client\"");
	char buf[4096], cid[64], br[64];
	for (int i = 0; i < 16; i++) {
		snprintf(cid, sizeof cid, "ccap-%d-%d", (int)getpid(), i);
		snprintf(br, sizeof br, "z9hG4bKccap%d", i);
		phone_invite(&caller, "bob", cid, br, 70);
		phone_expect(&callee, "INVITE ", buf, sizeof buf);
		phone_reply(&callee, buf, 180, "Ringing", "cb"); /* and rings for ever */
	}
	snprintf(cid, sizeof cid, "ccap-%d-last", (int)getpid());
	phone_invite(&caller, "bob", cid, "z9hG4bKccaplast", 70);
	bool got503 = false;
	for (int i = 0; i < 40 && !got503; i++) {
		int st = recv_status(caller.fd, 2000, buf, sizeof buf);
		if (st < 0)
			break;
		got503 = st == 503 && strstr(buf, cid);
	}
	assert_true(got503);
	assert_non_null(strstr(buf, "\r\nRetry-After: 5\r\n"));
	assert_int_equal(metric_val("sip_transactions_refused_total", "table=\"client\"") - refused0,
			 1);
	phone_expect_silence(&callee, 200); /* the 17th was not forwarded */
	phone_close(&caller);
	phone_close(&callee);
	test_server_stop(&srv);
}

/* ---- per-source rate limit ---- */

/* Sends 40 requests from one address over 8 sockets (so that the kernel
 * spreads them over the workers) and returns how many were answered. */
static int flood_answered(unsigned workers, int64_t *limited)
{
	struct lone s;
	lone_start(&s, workers, 0, "rate_limit = 1\nrate_limit_burst = 10\nrate_limit_exempt =\n");
	int64_t lim0 = metric_val("sip_rate_limited_total", NULL);
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = udp_from("127.0.0.1:0");
	char cid[64], buf[4096];
	for (int i = 0; i < 40; i++) {
		snprintf(cid, sizeof cid, "rl-%u-%d-%d", workers, (int)getpid(), i);
		send_options(fds[i % 8], &s.udp, cid, i, NULL);
	}
	int answered = 0;
	for (int i = 0; i < 8; i++)
		while (recv_status(fds[i], 300, buf, sizeof buf) == 200)
			answered++;
	*limited = metric_val("sip_rate_limited_total", NULL) - lim0;
	/* another source is served all the same */
	int other = udp_from("127.0.0.2:0");
	send_options(other, &s.udp, "rl-other", 1, NULL);
	assert_int_equal(recv_status(other, 2000, buf, sizeof buf), 200);
	close(other);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	lone_stop(&s);
	return answered;
}

/* The attack: a flood from one source. Beyond its burst (and 1/s after) it
 * is dropped unanswered and counted, while another source is served; the
 * limit is the same with two workers as with one. */
static void test_rate_limit_per_source(void **state)
{
	(void)state;
	for (unsigned workers = 1; workers <= 2; workers++) {
		int64_t limited;
		int answered = flood_answered(workers, &limited);
		/* the burst of 10, and at 1/s at most a couple more while it runs */
		if (answered < 10 || answered > 12)
			fail_msg("%u workers: %d of 40 answered", workers, answered);
		assert_int_equal(limited, 40 - answered);
	}
}

/* ---- overload: a worker that falls behind sheds new dialogs ---- */

static _Atomic bool blocked, release;

static void block_worker(void *arg)
{
	(void)arg;
	blocked = true;
	while (!release)
		sleep_ms(1);
	blocked = false;
}

static void block(struct net *n, unsigned worker)
{
	release = false;
	blocked = false;
	assert_int_equal(loop_post(worker_loop(net_worker(n, worker)), block_worker, NULL), 0);
	for (int i = 0; i < 1000 && !blocked; i++)
		sleep_ms(1);
	assert_true(blocked);
}

/* The attack: more requests than a worker can take; they wait in its socket.
 * Once they have waited past overload_delay, new dialogs get 503 with
 * Retry-After while a request within a dialog is still served; the worker
 * serves new ones again once it has caught up. */
static void test_overload_delay(void **state)
{
	(void)state;
	struct lone s;
	lone_start(&s, 1, 0, "overload_delay = 300\nrate_limit = 0\n");
	int fd = udp_from("127.0.0.1:0");
	int64_t shed0 = metric_val("sip_overload_rejected_total", NULL);
	block(s.net, 0);
	send_options(fd, &s.udp, "ovl-new-1", 1, NULL);
	send_options(fd, &s.udp, "ovl-dlg", 2, "t0");
	send_options(fd, &s.udp, "ovl-new-2", 3, NULL);
	sleep_ms(700); /* they wait at least this long */
	release = true;
	char buf[4096];
	int n503 = 0, n200 = 0;
	for (int i = 0; i < 3; i++) {
		int st = recv_status(fd, 2000, buf, sizeof buf);
		if (st == 503) {
			assert_non_null(strstr(buf, "ovl-new-"));
			assert_non_null(strstr(buf, "\r\nRetry-After: 5\r\n"));
			n503++;
		} else if (st == 200) {
			assert_non_null(strstr(buf, "ovl-dlg"));
			n200++;
		}
	}
	assert_int_equal(n503, 2);
	assert_int_equal(n200, 1);
	assert_int_equal(metric_val("sip_overload_rejected_total", NULL) - shed0, 2);
	/* caught up: served again */
	send_options(fd, &s.udp, "ovl-after", 4, NULL);
	assert_int_equal(recv_status(fd, 2000, buf, sizeof buf), 200);
	close(fd);
	lone_stop(&s);
}

/* The attack: the same, seen from the other worker: requests it receives
 * for a Call-ID the stuck worker owns queue up for it. Past overload_queue
 * new dialogs are refused where they arrive, while the owner is still
 * stuck, instead of piling up in its queue. */
static void test_overload_handoff_queue(void **state)
{
	(void)state;
	struct lone s;
	lone_start(&s, 2, 0, "overload_queue = 16\noverload_delay = 0\nrate_limit = 0\n");
	int64_t shed0 = metric_val("sip_overload_rejected_total", NULL);
	block(s.net, 0);
	enum { N = 100 };
	int fds[N];
	char cid[N][64], buf[4096];
	for (int i = 0, k = 0; i < N; k++) {
		snprintf(cid[i], sizeof cid[i], "hq-%d-%d", (int)getpid(), k);
		if (edge_worker_of_callid(s.edge, slice_cstr(cid[i])) != 0)
			continue; /* only Call-IDs the stuck worker owns */
		fds[i] = udp_from("127.0.0.1:0"); /* a socket each: spread over both */
		send_options(fds[i], &s.udp, cid[i], i, NULL);
		i++;
	}
	/* worker 1 got about half; 16 wait in the owner's queue, the rest are
	 * refused by worker 1 now */
	int early503 = 0;
	for (int i = 0; i < N; i++)
		if (recv_status(fds[i], i ? 20 : 1000, buf, sizeof buf) == 503) {
			assert_non_null(strstr(buf, "\r\nRetry-After: 5\r\n"));
			early503++;
		}
	assert_true(blocked); /* all of that while the owner was stuck */
	assert_true(early503 > 0);
	release = true;
	/* the owner catches up and answers the rest (a late 503 of worker 1's
	 * may still come) */
	int answered = 0, late503 = 0;
	for (int i = 0; i < N; i++) {
		int st;
		while ((st = recv_status(fds[i], 500, buf, sizeof buf)) == 503)
			late503++;
		answered += st == 200;
	}
	assert_int_equal(answered + early503 + late503, N);
	assert_int_equal(metric_val("sip_overload_rejected_total", NULL) - shed0,
			 early503 + late503);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	lone_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crlf_pings_only_closed),
	    cmocka_unit_test(test_server_tsx_cap),
	    cmocka_unit_test(test_client_tsx_cap),
	    cmocka_unit_test(test_rate_limit_per_source),
	    cmocka_unit_test(test_overload_delay),
	    cmocka_unit_test(test_overload_handoff_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
