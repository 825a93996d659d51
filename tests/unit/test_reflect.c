/* Attacks on reflection and state: spoofed requests, forged responses and BYEs, answered once, dropped, or refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "edge/edge_int.h"
#include "phone.h"
#include "relay/relay.h"
#include "relayctl/relayctl.h"
#include "stun/stun.h"
#include "stund/stund.h"

static struct test_server srv;

static int setup(void **state)
{
	(void)state;
	test_server_start(&srv,
			  "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 50\n"
			  "[keepalive]\ninterval = 1\nmax_failures = 2\n"
			  "[proxy]\nrelay = local\n"
			  "[relay]\naddress = 127.0.0.1\nports = 23000-23099\nmedia = always\n"
			  "fastpath = off\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(&srv);
	return 0;
}

static int64_t metric_value(const char *name)
{
	/* the metrics are global: read them through their text */
	struct buf b;
	buf_init(&b);
	metrics_write_prometheus(&b);
	buf_append(&b, "", 1);
	int64_t v = -1;
	char key[128];
	snprintf(key, sizeof key, "\npinhole_%s ", name);
	const char *p = strstr(b.data, key);
	if (p)
		sscanf(p + strlen(key), "%lld", (long long *)&v);
	buf_free(&b);
	return v;
}

/* The attacker sends an INVITE for a user that does not exist with the
 * victim's address as its source (here: from the victim's own socket). The
 * victim must get one answer, no 100 Trying, no retransmissions of it, and
 * no more than EDGE_REPLY_FACTOR times what was sent. */
static void test_spoofed_invite_unknown_user(void **state)
{
	(void)state;
	struct phone victim;
	phone_open(&victim, &srv);
	char req[1024];
	int n = snprintf(req, sizeof req,
			 "INVITE sip:nobody@127.0.0.1:%u SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKspoof1;rport\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=s1\r\n"
			 "To: <sip:nobody@127.0.0.1>\r\nCall-ID: spoof-404\r\nCSeq: 1 INVITE\r\n"
			 "Content-Length: 0\r\n\r\n",
			 net_addr_port(&srv.addr), victim.port);
	phone_send(&victim, "%s", req);
	/* T1 = 50 ms: Timer G would resend at 50, 150, 350, 750, 1150... */
	size_t bytes = 0;
	char first[4096] = "";
	int got = phone_drain(&victim, 1500, &bytes, first, sizeof first);
	assert_int_equal(got, 1);
	assert_memory_equal(first, "SIP/2.0 404", 11);
	assert_true(bytes <= EDGE_REPLY_FACTOR * (size_t)n);
	/* its ACK is known as the ACK of that answer and goes nowhere */
	char tag[64];
	msg_header(first, "To", tag, sizeof tag);
	phone_send(&victim,
		   "ACK sip:nobody@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKspoof1;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=s1\r\n"
		   "To: %s\r\nCall-ID: spoof-404\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		   net_addr_port(&srv.addr), victim.port, tag);
	phone_expect_silence(&victim, 300);
	phone_close(&victim);
}

/* A short request that draws an answer with extra headers (Allow and Accept
 * on OPTIONS to us) gets it within the bound, once. */
static void test_options_answer_within_bound(void **state)
{
	(void)state;
	struct phone victim;
	phone_open(&victim, &srv);
	char req[512];
	int n = snprintf(
	    req, sizeof req,
	    "OPTIONS sip:127.0.0.1:%u SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKt\r\n"
	    "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: t\r\nCSeq: 1 OPTIONS\r\n"
	    "Max-Forwards: 9\r\n\r\n",
	    net_addr_port(&srv.addr));
	phone_send(&victim, "%s", req);
	size_t bytes = 0;
	char first[4096] = "";
	assert_int_equal(phone_drain(&victim, 300, &bytes, first, sizeof first), 1);
	assert_memory_equal(first, "SIP/2.0 200", 11);
	assert_true(bytes <= EDGE_REPLY_FACTOR * (size_t)n);
	phone_expect_silence(&victim, 300);
	phone_close(&victim);
}

/* The bound itself: extra headers go first, then the whole answer, each
 * counted; a request large enough gets everything. */
static void test_reply_bound_trims_then_drops(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	static char req[512];
	int n = snprintf(req, sizeof req,
			 "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKbound\r\n"
			 "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bound\r\n"
			 "CSeq: 1 OPTIONS\r\nMax-Forwards: 9\r\nContent-Length: 0\r\n\r\n",
			 p.port);
	struct sip_msg m;
	assert_int_equal(sip_msg_parse(&m, req, (size_t)n, false, NULL), 0);
	struct net_addr to;
	assert_int_equal(net_addr_parse("127.0.0.1", p.port, &to), 0);
	struct flow f;
	net_flow_udp(srv.net, 0, &to, &f);
	char extra[1200];
	memset(extra, 0, sizeof extra);
	memcpy(extra, "X-Big: ", 7);
	memset(extra + 7, 'b', 3 * (size_t)n);
	strcat(extra, "\r\n");
	int64_t trimmed = metric_value("sip_reply_trimmed_total");
	int64_t oversize = metric_value("sip_reply_oversize_total");
	char got[4096];
	/* as received: the extra header would pass 3x, so it is left out */
	assert_int_equal(edge_reply_bounded(srv.edge, &f, &m, (size_t)n, 403, "Forbidden",
					    m.via1.whole, NULL, extra),
			 0);
	phone_expect(&p, "SIP/2.0 403", got, sizeof got);
	assert_null(strstr(got, "X-Big"));
	assert_int_equal(metric_value("sip_reply_trimmed_total"), trimmed + 1);
	/* a request far smaller than any answer: nothing goes out */
	assert_int_equal(
	    edge_reply_bounded(srv.edge, &f, &m, 40, 403, "Forbidden", m.via1.whole, NULL, NULL),
	    EMSGSIZE);
	phone_expect_silence(&p, 200);
	assert_int_equal(metric_value("sip_reply_oversize_total"), oversize + 1);
	/* a large request may have its extra headers */
	assert_int_equal(
	    edge_reply_bounded(srv.edge, &f, &m, 4000, 403, "Forbidden", m.via1.whole, NULL, extra),
	    0);
	phone_expect(&p, "SIP/2.0 403", got, sizeof got);
	assert_non_null(strstr(got, "X-Big"));
	phone_close(&p);
}

/* One spoofed REGISTER with 16 contacts and a Via that is not its source
 * (so it looks NATed) names the victim as the phone. The victim gets the
 * 200 and at most one ping, not 16 every interval; the ping's record is
 * freed once it goes unanswered. */
static void test_spoofed_multicontact_register(void **state)
{
	(void)state;
	struct phone victim;
	phone_open(&victim, &srv);
	char req[4096];
	int n = snprintf(req, sizeof req,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKmc1\r\n"
			 "From: <sip:mc@127.0.0.1>;tag=m1\r\nTo: <sip:mc@127.0.0.1>\r\n"
			 "Call-ID: mc-1\r\nCSeq: 1 REGISTER\r\nExpires: 300\r\n");
	for (int i = 0; i < 16; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "Contact: <sip:mc%d@10.9.9.%d>\r\n",
			      i, i + 1);
	n += snprintf(req + n, sizeof req - (size_t)n, "Content-Length: 0\r\n\r\n");
	phone_send(&victim, "%s", req);
	char first[8192] = "";
	size_t bytes = 0;
	/* four keepalive intervals */
	int got = phone_drain(&victim, 4200, &bytes, first, sizeof first);
	assert_memory_equal(first, "SIP/2.0 200", 11);
	assert_true(got <= 2); /* the 200 and one ping */
	assert_true(bytes <= 3 * (size_t)n);
	/* pings stop; the unanswered one's record is gone */
	struct store_binding b[16];
	size_t nb = 0;
	assert_int_equal(registrar_lookup(srv.reg, "mc@127.0.0.1", b, 16, &nb), 0);
	assert_int_equal(nb, 16);
	for (size_t i = 0; i < nb; i++)
		assert_true(b[i].ka.unreachable);
	assert_int_equal(registrar_keepalive_pending(srv.reg), 0);
	phone_close(&victim);
}

/* A source that answers proves itself and goes on being pinged, once per
 * interval for all the contacts it registered. */
static void test_answering_source_gets_pings(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	char req[4096];
	int n = snprintf(req, sizeof req,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKans1\r\n"
			 "From: <sip:ans@127.0.0.1>;tag=a1\r\nTo: <sip:ans@127.0.0.1>\r\n"
			 "Call-ID: ans-1\r\nCSeq: 1 REGISTER\r\nExpires: 300\r\n"
			 "Contact: <sip:ans@10.1.1.1:5060>, <sip:ans2@10.1.1.1:5060>\r\n"
			 "Content-Length: 0\r\n\r\n");
	(void)n;
	phone_send(&p, "%s", req);
	char msg[4096];
	phone_expect(&p, "SIP/2.0 200", msg, sizeof msg);
	for (int i = 0; i < 3; i++) {
		phone_expect(&p, "OPTIONS ", msg, sizeof msg);
		phone_reply(&p, msg, 200, "OK", "ans");
	}
	/* one ping per interval for both contacts: in ~1.5 interval, one or two */
	size_t bytes = 0;
	int got = phone_drain(&p, 1500, &bytes, msg, sizeof msg);
	assert_true(got >= 1 && got <= 2);
	struct store_binding b[4];
	size_t nb = 0;
	assert_int_equal(registrar_lookup(srv.reg, "ans@127.0.0.1", b, 4, &nb), 0);
	assert_true(b[0].ka.proven && !b[0].ka.unreachable);
	phone_close(&p);
}

/* ---- a relayed call, and strangers who know its Call-ID ---- */

static const char *sdp_fmt = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
			     "t=0 0\r\nm=audio %u RTP/AVP 0\r\n";

struct call {
	struct phone a, b, evil;
	char inv[8192];
	const char *call_id;
};

static void call_up(struct call *c, const char *call_id)
{
	c->call_id = call_id;
	phone_open(&c->a, &srv);
	phone_open(&c->b, &srv);
	phone_open(&c->evil, &srv);
	phone_register(&c->b, call_id); /* a user of its own per call */
	char sdp[256];
	int sl = snprintf(sdp, sizeof sdp, sdp_fmt, 20000u);
	phone_send(&c->a,
		   "INVITE sip:%s@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK%s;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "To: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: %d\r\n\r\n%s",
		   call_id, net_addr_port(&srv.addr), c->a.port, call_id, call_id, call_id,
		   c->a.port, sl, sdp);
	char r[4096];
	phone_expect(&c->a, "SIP/2.0 100", r, sizeof r);
	phone_expect(&c->b, "INVITE ", c->inv, sizeof c->inv);
	/* the callee answers with its SDP */
	char resp[8192];
	int n = snprintf(resp, sizeof resp, "SIP/2.0 200 OK\r\n");
	for (const char *line = strstr(c->inv, "\r\n") + 2; strncmp(line, "\r\n", 2) != 0;
	     line = strstr(line, "\r\n") + 2) {
		int l = (int)(strstr(line, "\r\n") - line);
		if (!strncmp(line, "Via:", 4) || !strncmp(line, "From:", 5) ||
		    !strncmp(line, "Call-ID:", 8) || !strncmp(line, "CSeq:", 5) ||
		    !strncmp(line, "Record-Route:", 13))
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s\r\n", l, line);
		else if (!strncmp(line, "To:", 3))
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s;tag=callee1\r\n", l,
				      line);
	}
	sl = snprintf(sdp, sizeof sdp, sdp_fmt, 20002u);
	n += snprintf(resp + n, sizeof resp - (size_t)n,
		      "Contact: <sip:callee@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
		      "Content-Length: %d\r\n\r\n%s",
		      c->b.port, sl, sdp);
	struct net_addr to = srv.addr;
	assert_true(sendto(c->b.fd, resp, (size_t)n, 0, &to.u.sa, net_addr_len(&to)) == n);
	phone_expect(&c->a, "SIP/2.0 200", r, sizeof r);
}

static void call_close(struct call *c)
{
	phone_close(&c->a);
	phone_close(&c->b);
	phone_close(&c->evil);
}

/* Where the relay sends each party's RTP, and that the session exists. */
static void relay_peers(const char *call_id, struct net_addr peer[2])
{
	struct relayctl_query q;
	assert_int_equal(relay_query(srv.relay, slice_cstr(call_id), SLICE_NULL, &q), 0);
	assert_true(q.leg[0].n_media >= 1 && q.leg[1].n_media >= 1);
	peer[0] = q.leg[0].media[0].rtp.peer;
	peer[1] = q.leg[1].media[0].rtp.peer;
}

/* A stranger who knows the Call-ID and the caller's From tag sends a 2xx
 * with our Via on top and the caller's below, and its own port in the SDP.
 * It must reach no one and leave the relay as it was. */
static void test_forged_2xx_dropped(void **state)
{
	(void)state;
	struct call c;
	call_up(&c, "forged2xx");
	struct net_addr before[2], after[2];
	relay_peers(c.call_id, before);
	int64_t dropped = metric_value("proxy_responses_unproven_total");
	char sdp[256];
	int sl = snprintf(sdp, sizeof sdp, sdp_fmt, (unsigned)c.evil.port);
	phone_send(&c.evil,
		   "SIP/2.0 200 OK\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKguess\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK%s;rport=%u;received=127.0.0.1\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "To: <sip:callee@127.0.0.1>;tag=evil\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:evil@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: %d\r\n\r\n%s",
		   net_addr_port(&srv.addr), c.a.port, c.call_id, c.a.port, c.call_id, c.evil.port,
		   sl, sdp);
	phone_expect_silence(&c.a, 400);
	assert_int_equal(metric_value("proxy_responses_unproven_total"), dropped + 1);
	relay_peers(c.call_id, after);
	assert_true(net_addr_eq(&before[0], &after[0]));
	assert_true(net_addr_eq(&before[1], &after[1]));
	call_close(&c);
}

/* A BYE with only the Call-ID (no tags of the dialog) is forwarded like any
 * request but ends nothing; the real BYE ends the session once answered. */
static void test_spoofed_bye_keeps_session(void **state)
{
	(void)state;
	struct call c;
	call_up(&c, "spoofbye");
	struct net_addr peer[2];
	phone_send(&c.evil,
		   "BYE sip:spoofbye@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKevilbye;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=x\r\n"
		   "To: <sip:spoofbye@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 2 BYE\r\n"
		   "Content-Length: 0\r\n\r\n",
		   net_addr_port(&srv.addr), c.evil.port, c.call_id);
	char bye[4096];
	phone_expect(&c.b, "BYE ", bye, sizeof bye);
	relay_peers(c.call_id, peer); /* not deleted on receipt */
	phone_reply(&c.b, bye, 481, "Call/Transaction Does Not Exist", "callee1");
	char r[4096];
	phone_expect(&c.evil, "SIP/2.0 481", r, sizeof r);
	relay_peers(c.call_id, peer); /* nor by its answer */
	/* the caller hangs up for real */
	phone_send(&c.a,
		   "BYE sip:spoofbye@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKrealbye;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "To: <sip:spoofbye@127.0.0.1>;tag=callee1\r\nCall-ID: %s\r\nCSeq: 3 BYE\r\n"
		   "Content-Length: 0\r\n\r\n",
		   net_addr_port(&srv.addr), c.a.port, c.call_id);
	phone_expect(&c.b, "BYE ", bye, sizeof bye);
	relay_peers(c.call_id, peer); /* still there until the answer */
	phone_reply(&c.b, bye, 200, "OK", "callee1");
	phone_expect(&c.a, "SIP/2.0 200", r, sizeof r);
	struct relayctl_query q;
	assert_int_equal(relay_query(srv.relay, slice_cstr(c.call_id), SLICE_NULL, &q), ENOENT);
	call_close(&c);
}

/* What we did forward is still ours after its transaction ends: a late 200
 * to a MESSAGE (Timer F gave the caller 408) goes up statelessly, its
 * signed branch checked (RFC 3261 16.7), not dropped as a forgery. */
static void test_late_response_to_our_forward(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_register(&b, "late");
	phone_send(&a,
		   "MESSAGE sip:late@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKlate1;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=la\r\n"
		   "To: <sip:late@127.0.0.1>\r\nCall-ID: late-1\r\nCSeq: 1 MESSAGE\r\n"
		   "Content-Length: 0\r\n\r\n",
		   net_addr_port(&srv.addr), a.port);
	char msg[4096], r[4096];
	phone_expect(&b, "MESSAGE ", msg, sizeof msg);
	size_t bytes = 0;
	assert_int_equal(phone_drain(&a, 4000, &bytes, r, sizeof r), 1); /* 64*T1 = 3.2 s */
	assert_memory_equal(r, "SIP/2.0 408", 11);
	int64_t dropped = metric_value("proxy_responses_unproven_total");
	phone_reply(&b, msg, 200, "OK", "lb");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(metric_value("proxy_responses_unproven_total"), dropped);
	phone_close(&a);
	phone_close(&b);
}

/* A STUN flood on the SIP port spends the per-source budget of port 3478. */
static void test_stun_flood_on_sip_port(void **state)
{
	(void)state;
	struct stund_limiter lim;
	assert_int_equal(stund_limiter_init(&lim, 64, 1, 3), 0);
	edge_set_stun(srv.edge, stund_flow_answer, &lim);
	struct phone p;
	phone_open(&p, &srv);
	struct buf req;
	buf_init(&req);
	struct stun_enc e;
	stun_enc_begin(&e, &req, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	for (int i = 0; i < 20; i++)
		assert_true(sendto(p.fd, req.data, req.len, 0, &srv.addr.u.sa,
				   net_addr_len(&srv.addr)) == (ssize_t)req.len);
	size_t bytes = 0;
	int got = phone_drain(&p, 400, &bytes, NULL, 0);
	assert_true(got >= 3 && got <= 4); /* the burst, perhaps one refilled */
	edge_set_stun(srv.edge, NULL, NULL);
	buf_free(&req);
	phone_close(&p);
	stund_limiter_free(&lim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spoofed_invite_unknown_user),
	    cmocka_unit_test(test_options_answer_within_bound),
	    cmocka_unit_test(test_reply_bound_trims_then_drops),
	    cmocka_unit_test(test_spoofed_multicontact_register),
	    cmocka_unit_test(test_answering_source_gets_pings),
	    cmocka_unit_test(test_forged_2xx_dropped),
	    cmocka_unit_test(test_spoofed_bye_keeps_session),
	    cmocka_unit_test(test_late_response_to_our_forward),
	    cmocka_unit_test(test_stun_flood_on_sip_port),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
