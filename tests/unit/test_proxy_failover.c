/* Routing to an instance and failover between its flows (RFC 5626 5.3 / 7), over real sockets. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"

static struct test_server srv;

/* T1 500 ms: Timer B is 32 s, far beyond anything a test waits for, so an
 * answer within phone_expect's 2 s is never Timer B's doing. */
static int setup(void **state)
{
	(void)state;
	test_server_start(&srv, "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 500\n"
				"[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n"
				"[outbound]\nfailover_timeout = 300\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(&srv);
	return 0;
}

static int64_t failovers(const char *cause)
{
	char labels[64];
	snprintf(labels, sizeof labels, "cause=\"%s\"", cause);
	struct metric *m = metric_find("outbound_failovers_total", labels);
	return m ? metric_get(m) : -1;
}

/* An outbound REGISTER (RFC 5626 5.2) over the phone's UDP flow: instance
 * number inst, reg_id. */
static void register_ob(struct phone *p, const char *user, unsigned inst, unsigned reg_id)
{
	char r[4096];
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKob%u;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=o%u\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: ob-%u-%u\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n"
		   "Contact: <sip:%s@10.1.1.1:%u;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-"
		   "8000-%012u>\";reg-id=%u\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   p->port, seq, user, seq, user, p->port, seq, user, p->port, inst, reg_id);
	phone_expect(p, "SIP/2.0 200", r, sizeof r);
}

/* Which of two phones a datagram arrives at first (0 or 1); fails after 2 s. */
static int first_of(struct phone *a, struct phone *b)
{
	struct pollfd pfd[2] = {{.fd = a->fd, .events = POLLIN}, {.fd = b->fd, .events = POLLIN}};
	if (poll(pfd, 2, 2000) <= 0)
		fail_msg("neither phone received anything");
	return pfd[0].revents & POLLIN ? 0 : 1;
}

/* Expects a final response at the caller, skipping 100 and any provisional:
 * returns it in r. */
static void expect_final(struct phone *a, char *r, size_t len)
{
	for (int i = 0; i < 10; i++) {
		phone_expect(a, "SIP/2.0 ", r, len);
		if (r[8] != '1')
			return;
	}
	fail_msg("no final response");
}

/* RFC 5626 5.3: a request for an AOR goes once to each instance, over its
 * newest working flow, and once to each binding without an instance. It
 * used to go over every binding in parallel, so a phone with two flows
 * rang twice (two INVITEs, the second one a merged request it answers 482). */
static void test_one_branch_per_instance(void **state)
{
	(void)state;
	struct phone a, f1, f2, plain;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	phone_open(&plain, &srv);
	register_ob(&f1, "inst", 1, 1);
	register_ob(&f2, "inst", 1, 2);
	phone_register(&plain, "inst");
	char r[4096], inv[4096], inv2[4096];
	phone_invite(&a, "inst", "c-inst", "z9hG4bKinst1", 70);
	phone_expect(&plain, "INVITE sip:inst@10.1.1.1:", inv2, sizeof inv2);
	int first = first_of(&f1, &f2);
	struct phone *got = first ? &f2 : &f1, *other = first ? &f1 : &f2;
	phone_expect(got, "INVITE sip:inst@10.1.1.1:", inv, sizeof inv);
	phone_reply(got, inv, 180, "Ringing", "ob");
	phone_expect_silence(other, 500); /* past failover_timeout, but it rings */
	phone_reply(&plain, inv2, 180, "Ringing", "pl");
	phone_reply(got, inv, 200, "OK", "ob");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	phone_expect(&plain, "CANCEL ", r, sizeof r);
	phone_expect_silence(other, 0);
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
	phone_close(&plain);
}

/* The edge (here the phone's flow itself) answers 430 Flow Failed: the same
 * INVITE goes over the instance's other flow at once, the caller sees only
 * the final answer of that one, and on the next request the failed flow is
 * tried last. Before, the 430 went up to the caller. */
static void test_430_next_flow_then_failed_flow_last(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "fo430", 2, 1);
	register_ob(&f2, "fo430", 2, 2);
	int64_t before = failovers("430");
	char r[4096], inv[4096], inv2[4096], ack[4096];
	phone_invite(&a, "fo430", "c-430", "z9hG4bK4301", 70);
	int first = first_of(&f1, &f2);
	struct phone *bad = first ? &f2 : &f1, *good = first ? &f1 : &f2;
	phone_expect(bad, "INVITE ", inv, sizeof inv);
	phone_expect_silence(good, 0);
	phone_reply(bad, inv, 430, "Flow Failed", "x");
	phone_expect(bad, "ACK ", ack, sizeof ack); /* hop by hop */
	phone_expect(good, "INVITE sip:fo430@10.1.1.1:", inv2, sizeof inv2);
	char v1[256], v2[256];
	msg_header(inv, "Via", v1, sizeof v1);
	msg_header(inv2, "Via", v2, sizeof v2);
	assert_string_not_equal(v1, v2); /* a new branch: a new client transaction */
	assert_int_equal(failovers("430"), before + 1);
	phone_reply(good, inv2, 180, "Ringing", "g");
	phone_expect(&a, "SIP/2.0 100", r, sizeof r);
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_reply(good, inv2, 200, "OK", "g");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=g"));
	phone_expect_silence(&a, 100); /* no 430 ever */
	/* the next request tries the failed flow last, but still tries it */
	phone_invite(&a, "fo430", "c-430b", "z9hG4bK4302", 70);
	phone_expect(good, "INVITE sip:fo430@10.1.1.1:", inv2, sizeof inv2);
	phone_expect_silence(bad, 0);
	phone_reply(good, inv2, 430, "Flow Failed", "g2");
	phone_expect(good, "ACK ", ack, sizeof ack);
	phone_expect(bad, "INVITE sip:fo430@10.1.1.1:", inv, sizeof inv);
	phone_reply(bad, inv, 180, "Ringing", "b2");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_reply(bad, inv, 200, "OK", "b2");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	/* a final answer of the phone's own is its word: no other flow */
	phone_invite(&a, "fo430", "c-430c", "z9hG4bK4303", 70);
	first = first_of(&f1, &f2);
	struct phone *x = first ? &f2 : &f1, *y = first ? &f1 : &f2;
	phone_expect(x, "INVITE sip:fo430@10.1.1.1:", inv2, sizeof inv2);
	phone_reply(x, inv2, 486, "Busy Here", "x3");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 486"));
	phone_expect_silence(y, 500);
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* An edge apart from us answers 100 Trying at once, then 430 when the
 * phone's flow behind it turned out dead (it stayed silent). The 100 was the
 * edge's, not the phone's: the INVITE still goes over the instance's other
 * flow. Before, any 100 held the branch to its flow and the caller got 480. A
 * provisional beyond 100 (the phone rang) still holds it. */
static void test_430_after_edge_100_next_flow(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "fo100", 7, 1);
	register_ob(&f2, "fo100", 7, 2);
	int64_t before = failovers("430");
	char r[4096], inv[4096], inv2[4096], ack[4096];
	phone_invite(&a, "fo100", "c-100", "z9hG4bK1001", 70);
	int first = first_of(&f1, &f2);
	struct phone *edge = first ? &f2 : &f1, *good = first ? &f1 : &f2;
	phone_expect(edge, "INVITE ", inv, sizeof inv);
	phone_reply(edge, inv, 100, "Trying", "e");
	phone_reply(edge, inv, 430, "Flow Failed", "e");
	phone_expect(edge, "ACK ", ack, sizeof ack);
	phone_expect(good, "INVITE sip:fo100@10.1.1.1:", inv2, sizeof inv2);
	assert_int_equal(failovers("430"), before + 1);
	phone_reply(good, inv2, 200, "OK", "g");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	/* rang first, then 430: the phone has it; no second copy elsewhere */
	phone_invite(&a, "fo100", "c-100b", "z9hG4bK1002", 70);
	first = first_of(&f1, &f2);
	struct phone *x = first ? &f2 : &f1, *y = first ? &f1 : &f2;
	phone_expect(x, "INVITE sip:fo100@10.1.1.1:", inv, sizeof inv);
	phone_reply(x, inv, 180, "Ringing", "x");
	phone_reply(x, inv, 430, "Flow Failed", "x");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 480"));
	phone_expect_silence(y, 400);
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* All flows of the instance fail: the caller gets one final answer, 480,
 * never the 430 meant for a proxy. */
static void test_all_flows_failed(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "allfail", 3, 1);
	register_ob(&f2, "allfail", 3, 2);
	char r[4096], inv[4096];
	phone_invite(&a, "allfail", "c-allfail", "z9hG4bKaf1", 70);
	int first = first_of(&f1, &f2);
	struct phone *x = first ? &f2 : &f1, *y = first ? &f1 : &f2;
	phone_expect(x, "INVITE ", inv, sizeof inv);
	phone_reply(x, inv, 430, "Flow Failed", "x");
	phone_expect(y, "INVITE ", inv, sizeof inv);
	phone_reply(y, inv, 430, "Flow Failed", "y");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 480"));
	phone_expect_silence(&a, 100);
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* A 2xx on the first flow: no second flow is ever tried. */
static void test_2xx_first_no_failover(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "ok1st", 4, 1);
	register_ob(&f2, "ok1st", 4, 2);
	char r[4096], inv[4096];
	phone_invite(&a, "ok1st", "c-ok1st", "z9hG4bKok1", 70);
	int first = first_of(&f1, &f2);
	struct phone *x = first ? &f2 : &f1, *y = first ? &f1 : &f2;
	phone_expect(x, "INVITE ", inv, sizeof inv);
	phone_reply(x, inv, 200, "OK", "x");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	phone_expect_silence(y, 600); /* twice failover_timeout */
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* A UDP flow that stays silent: after failover_timeout (not Timer B) the
 * request goes over the next flow; the first copy, should it arrive after
 * all and ring, is cancelled. */
static void test_udp_silence_then_next_flow(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "silent", 5, 1);
	register_ob(&f2, "silent", 5, 2);
	int64_t before = failovers("timeout");
	char r[4096], inv[4096], inv2[4096];
	phone_invite(&a, "silent", "c-silent", "z9hG4bKsil1", 70);
	int first = first_of(&f1, &f2);
	struct phone *mute = first ? &f2 : &f1, *next = first ? &f1 : &f2;
	phone_expect(mute, "INVITE ", inv, sizeof inv);
	phone_expect(next, "INVITE sip:silent@10.1.1.1:", inv2, sizeof inv2);
	assert_int_equal(failovers("timeout"), before + 1);
	/* the old copy is not sent again (a retransmission would have been due
	 * at T1 = 500 ms, well within this) */
	phone_expect_silence(mute, 700);
	phone_reply(next, inv2, 180, "Ringing", "n");
	phone_expect(&a, "SIP/2.0 100", r, sizeof r);
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	/* the first copy rings after all: it is cancelled, and the caller hears
	 * nothing of it */
	phone_reply(mute, inv, 180, "Ringing", "m");
	char cancel[4096], v1[256], v2[256];
	phone_expect(mute, "CANCEL ", cancel, sizeof cancel);
	msg_header(inv, "Via", v1, sizeof v1);
	msg_header(cancel, "Via", v2, sizeof v2);
	assert_string_equal(v1, v2);
	phone_expect_silence(&a, 100);
	phone_reply(mute, cancel, 200, "OK", "m");
	phone_reply(mute, inv, 487, "Request Terminated", "m");
	phone_reply(next, inv2, 200, "OK", "n");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=n"));
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* A 430 from anyone but the hop the INVITE went to (here a stranger that
 * copied our branch) does nothing: no failover, the flow is not marked, and
 * the phone's own answer still reaches the caller. */
static void test_430_from_stranger_ignored(void **state)
{
	(void)state;
	struct test_server s2;
	test_server_start(&s2, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 500\n"
			       "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n"
			       "[outbound]\nfailover_timeout = 5000\n");
	struct phone a, f1, f2, stranger;
	phone_open(&a, &s2);
	phone_open(&f1, &s2);
	phone_open(&f2, &s2);
	phone_open(&stranger, &s2);
	register_ob(&f1, "strange", 6, 1);
	register_ob(&f2, "strange", 6, 2);
	int64_t before = failovers("430");
	char r[4096], inv[4096];
	phone_invite(&a, "strange", "c-strange", "z9hG4bKstr1", 70);
	int first = first_of(&f1, &f2);
	struct phone *x = first ? &f2 : &f1, *y = first ? &f1 : &f2;
	phone_expect(x, "INVITE ", inv, sizeof inv);
	phone_reply(&stranger, inv, 430, "Flow Failed", "s");
	phone_expect_silence(y, 300);
	phone_expect_silence(&stranger, 0); /* not even an ACK */
	assert_int_equal(failovers("430"), before);
	phone_reply(x, inv, 200, "OK", "x");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	assert_non_null(strstr(r, "tag=x"));
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
	phone_close(&stranger);
	test_server_stop(&s2);
}

/* The silent flow's phone answers 200 after the request went over the next
 * flow: a 2xx always reaches the caller (RFC 3261 16.7 step 5), and the
 * copy on the other flow is cancelled; a given-up transaction that only
 * stopped reporting would swallow it (its retransmissions alone going up
 * statelessly), leaving the phone in a call the caller never heard of. */
static void test_late_2xx_on_given_up_flow_goes_up(void **state)
{
	(void)state;
	struct phone a, f1, f2;
	phone_open(&a, &srv);
	phone_open(&f1, &srv);
	phone_open(&f2, &srv);
	register_ob(&f1, "late2xx", 8, 1);
	register_ob(&f2, "late2xx", 8, 2);
	char r[4096], inv[4096], inv2[4096];
	phone_invite(&a, "late2xx", "c-late2xx", "z9hG4bKl2x1", 70);
	int first = first_of(&f1, &f2);
	struct phone *slow = first ? &f2 : &f1, *next = first ? &f1 : &f2;
	phone_expect(slow, "INVITE ", inv, sizeof inv);
	phone_expect(next, "INVITE sip:late2xx@10.1.1.1:", inv2, sizeof inv2);
	phone_reply(next, inv2, 180, "Ringing", "n");
	phone_expect(&a, "SIP/2.0 100", r, sizeof r);
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_reply(slow, inv, 200, "OK", "late");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=late"));
	/* and the copy on the other flow is cancelled: the call is answered */
	char cancel[4096];
	phone_expect(next, "CANCEL ", cancel, sizeof cancel);
	phone_reply(next, cancel, 200, "OK", "n");
	phone_reply(next, inv2, 487, "Request Terminated", "n");
	phone_expect(next, "ACK ", r, sizeof r);
	phone_expect_silence(&a, 200);
	phone_close(&a);
	phone_close(&f1);
	phone_close(&f2);
}

/* ---- a phone over TCP ---- */

struct tphone {
	int fd;
	uint16_t port;
	char buf[16384];
	size_t len;
};

static void tphone_open(struct tphone *t, struct test_server *s)
{
	memset(t, 0, sizeof *t);
	t->fd = socket(AF_INET, SOCK_STREAM, 0);
	const struct net_addr *to = net_listener_addr(s->net, 1);
	assert_int_equal(connect(t->fd, &to->u.sa, net_addr_len(to)), 0);
	struct net_addr me;
	net_sock_addr(t->fd, &me);
	t->port = net_addr_port(&me);
}

static void tphone_send(struct tphone *t, const char *msg, size_t n)
{
	assert_int_equal(send(t->fd, msg, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* The next whole message on the stream; fails after 2 s. */
static void tphone_next(struct tphone *t, char *out, size_t cap)
{
	for (int i = 0; i < 200; i++) {
		char *end = memmem(t->buf, t->len, "\r\n\r\n", 4);
		if (end) {
			size_t hlen = (size_t)(end - t->buf) + 4, body = 0;
			char *cl = memmem(t->buf, hlen, "Content-Length: ", 16);
			if (cl)
				body = strtoul(cl + 16, NULL, 10);
			if (t->len >= hlen + body) {
				size_t n = hlen + body;
				assert_true(n < cap);
				memcpy(out, t->buf, n);
				out[n] = '\0';
				memmove(t->buf, t->buf + n, t->len - n);
				t->len -= n;
				return;
			}
		}
		struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		ssize_t k = recv(t->fd, t->buf + t->len, sizeof t->buf - t->len, 0);
		assert_true(k > 0);
		t->len += (size_t)k;
	}
	fail_msg("tcp phone %u: nothing whole within 2 s", t->port);
}

static void tphone_expect(struct tphone *t, const char *prefix, char *out, size_t cap)
{
	for (int i = 0; i < 10; i++) {
		tphone_next(t, out, cap);
		if (strncmp(out, prefix, strlen(prefix)) == 0)
			return;
	}
	fail_msg("tcp phone %u: \"%s\" never came", t->port, prefix);
}

static void tphone_register(struct tphone *t, const char *user, unsigned inst, unsigned reg_id)
{
	char msg[2048], r[4096];
	int n =
	    snprintf(msg, sizeof msg,
		     "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		     "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=z9hG4bKtreg%u\r\nMax-Forwards: 70\r\n"
		     "From: <sip:%s@127.0.0.1>;tag=t%u\r\nTo: <sip:%s@127.0.0.1>\r\n"
		     "Call-ID: tob-%u\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n"
		     "Contact: <sip:%s@10.1.1.1:%u;transport=tcp;ob>%s",
		     t->port, t->port, user, t->port, user, t->port, user, t->port,
		     inst ? ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-" : "");
	if (inst)
		n += snprintf(msg + n, sizeof msg - (size_t)n, "%012u>\";reg-id=%u", inst, reg_id);
	n += snprintf(msg + n, sizeof msg - (size_t)n,
		      "\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n");
	tphone_send(t, msg, (size_t)n);
	tphone_expect(t, "SIP/2.0 200", r, sizeof r);
}

static void tphone_reply(struct tphone *t, const char *req, int status, const char *tag)
{
	char resp[4096];
	int n = phone_build_reply(req, status, status == 200 ? "OK" : "Ringing", tag, t->port, NULL,
				  resp, sizeof resp);
	tphone_send(t, resp, (size_t)n);
}

/* The phone's TCP flow (its newest) closes with the INVITE on it: the INVITE
 * goes over its UDP flow at once, on the close, neither after Timer B (32 s
 * here) nor after failover_timeout (which is for UDP flows: here 5 s,
 * longer than phone_expect waits). Before, the caller waited for Timer B. */
static void test_closed_connection_fails_over_at_once(void **state)
{
	(void)state;
	struct test_server s2;
	test_server_start(&s2, "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 500\n"
			       "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n"
			       "[outbound]\nfailover_timeout = 5000\n");
	struct phone a, u;
	struct tphone t;
	phone_open(&a, &s2);
	phone_open(&u, &s2);
	register_ob(&u, "closer", 7, 1);
	usleep(1100 * 1000); /* registrations count in seconds: the TCP flow is the newest */
	tphone_open(&t, &s2);
	tphone_register(&t, "closer", 7, 2);
	int64_t before = failovers("closed");
	char r[4096], inv[4096];
	phone_invite(&a, "closer", "c-closer", "z9hG4bKcl1", 70);
	tphone_expect(&t, "INVITE sip:closer@10.1.1.1:", inv, sizeof inv);
	phone_expect_silence(&u, 100);
	close(t.fd);
	phone_expect(&u, "INVITE sip:closer@10.1.1.1:", inv, sizeof inv);
	assert_int_equal(failovers("closed"), before + 1);
	phone_reply(&u, inv, 200, "OK", "u");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	/* the next INVITE does not try the closed connection at all */
	phone_invite(&a, "closer", "c-closer2", "z9hG4bKcl2", 70);
	phone_expect(&u, "INVITE sip:closer@10.1.1.1:", inv, sizeof inv);
	phone_reply(&u, inv, 486, "Busy Here", "u2");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 486"));
	phone_close(&a);
	phone_close(&u);
	test_server_stop(&s2);
}

/* RFC 5626 5.3: a request whose Route names, with our token, a TCP flow
 * whose connection has closed gets 430 Flow Failed (the proxy before us may
 * try another flow); it used to be sent nowhere and answered 500. A forged
 * token stays 403. */
static void test_token_for_closed_connection_430(void **state)
{
	(void)state;
	struct phone a;
	struct tphone t;
	phone_open(&a, &srv);
	tphone_open(&t, &srv);
	tphone_register(&t, "tdlg", 0, 0);
	char r[4096], inv[4096], rr[1024];
	phone_invite(&a, "tdlg", "c-tdlg", "z9hG4bKtd1", 70);
	tphone_expect(&t, "INVITE ", inv, sizeof inv);
	tphone_reply(&t, inv, 200, "td");
	expect_final(&a, r, sizeof r);
	assert_non_null(strstr(r, "SIP/2.0 200"));
	msg_header(r, "Record-Route", rr, sizeof rr);
	close(t.fd);
	usleep(100 * 1000); /* the server sees the close */
	char route[1024];
	const char *comma = strstr(rr, ", ");
	assert_non_null(comma);
	snprintf(route, sizeof route, "%s, %.*s", comma + 2, (int)(comma - rr), rr);
	phone_send(&a,
		   "BYE sip:tdlg@10.1.1.1:%u;transport=tcp SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKtdbye;rport\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:tdlg@127.0.0.1>;tag=td\r\n"
		   "Call-ID: c-tdlg\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		   t.port, a.port, route);
	phone_expect(&a, "SIP/2.0 430", r, sizeof r);
	/* the same route with the far token tampered: 403, not 430 */
	char *at = strstr(route, "@");
	assert_non_null(at);
	at[-3] = at[-3] == 'A' ? 'B' : 'A';
	phone_send(&a,
		   "BYE sip:tdlg@10.1.1.1:%u;transport=tcp SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKtdbye2;rport\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:tdlg@127.0.0.1>;tag=td\r\n"
		   "Call-ID: c-tdlg\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
		   t.port, a.port, route);
	phone_expect(&a, "SIP/2.0 403", r, sizeof r);
	phone_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_branch_per_instance),
	    cmocka_unit_test(test_430_next_flow_then_failed_flow_last),
	    cmocka_unit_test(test_430_after_edge_100_next_flow),
	    cmocka_unit_test(test_all_flows_failed),
	    cmocka_unit_test(test_2xx_first_no_failover),
	    cmocka_unit_test(test_udp_silence_then_next_flow),
	    cmocka_unit_test(test_late_2xx_on_given_up_flow_goes_up),
	    cmocka_unit_test(test_430_from_stranger_ignored),
	    cmocka_unit_test(test_closed_connection_fails_over_at_once),
	    cmocka_unit_test(test_token_for_closed_connection_430),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
