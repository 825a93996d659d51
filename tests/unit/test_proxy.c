/* Proxy behaviour over real sockets: forking, CANCEL, hop-by-hop ACK, 404/483, Record-Route routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"
#include "relay/relay.h"

static struct test_server srv;

static int setup(void **state)
{
	(void)state;
	test_server_start(&srv, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
				"[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(&srv);
	return 0;
}

/* A calls user at b, b answers 200 with to_tag; the Record-Route of the 200 that A
 * gets goes to rr. */
static void answered_call(struct phone *a, struct phone *b, const char *user, const char *call_id,
			  const char *branch, const char *to_tag, char *rr, size_t rr_cap)
{
	char r[4096], inv[4096];
	phone_invite(a, user, call_id, branch, 70);
	phone_expect(b, "INVITE ", inv, sizeof inv);
	phone_reply(b, inv, 200, "OK", to_tag);
	phone_expect(a, "SIP/2.0 200", r, sizeof r);
	msg_header(r, "Record-Route", rr, rr_cap);
}

/* The caller's route set: our two Record-Route entries, in reverse order. */
static void reverse_route(const char *rr, char *route, size_t cap)
{
	const char *comma = strstr(rr, ", ");
	assert_non_null(comma);
	snprintf(route, cap, "%s, %.*s", comma + 2, (int)(comma - rr), rr);
}

static void test_unknown_user_and_max_forwards(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	char r[4096];
	phone_invite(&a, "nobody", "c-404", "z9hG4bKnf1", 70);
	phone_expect(&a, "SIP/2.0 404", r, sizeof r);
	phone_register(&b, "mf");
	phone_invite(&a, "mf", "c-483", "z9hG4bKmf1", 0);
	phone_expect(&a, "SIP/2.0 483", r, sizeof r);
	phone_close(&a);
	phone_close(&b);
}

static void test_fork_first_200_wins_other_cancelled(void **state)
{
	(void)state;
	struct phone a, b1, b2;
	phone_open(&a, &srv);
	phone_open(&b1, &srv);
	phone_open(&b2, &srv);
	phone_register(&b1, "forked");
	phone_register(&b2, "forked");
	char r[4096], inv1[4096], inv2[4096], rr[1024];
	phone_invite(&a, "forked", "c-fork", "z9hG4bKfork1", 70);
	/* both bindings ring, each at its own (real) source */
	phone_expect(&b1, "INVITE sip:forked@10.1.1.1:", inv1, sizeof inv1);
	phone_expect(&b2, "INVITE sip:forked@10.1.1.1:", inv2, sizeof inv2);
	msg_header(inv1, "Record-Route", rr, sizeof rr);
	assert_non_null(strstr(rr, ";lr>"));
	msg_header(inv1, "Max-Forwards", r, sizeof r);
	assert_string_equal(r, "69");
	phone_reply(&b1, inv1, 180, "Ringing", "b1");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_reply(&b2, inv2, 200, "OK", "b2");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=b2"));
	/* the other branch is cancelled with the branch of its INVITE */
	char cancel[4096], v1[256], v2[256];
	phone_expect(&b1, "CANCEL ", cancel, sizeof cancel);
	msg_header(inv1, "Via", v1, sizeof v1);
	msg_header(cancel, "Via", v2, sizeof v2);
	assert_string_equal(v1, v2);
	phone_reply(&b1, cancel, 200, "OK", "b1");
	phone_reply(&b1, inv1, 487, "Request Terminated", "b1");
	/* the proxy ACKs the 487 itself (hop by hop) */
	phone_expect(&b1, "ACK ", r, sizeof r);
	phone_close(&a);
	phone_close(&b1);
	phone_close(&b2);
}

static void test_cancel_before_answer(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_register(&b, "cancelme");
	char r[4096], inv[4096];
	phone_invite(&a, "cancelme", "c-cancel", "z9hG4bKcan1", 70);
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	phone_reply(&b, inv, 180, "Ringing", "bb");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_cancel(&a, "cancelme", "c-cancel", "z9hG4bKcan1");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 1 CANCEL"));
	char cancel[4096];
	phone_expect(&b, "CANCEL ", cancel, sizeof cancel);
	phone_reply(&b, cancel, 200, "OK", "bb");
	phone_reply(&b, inv, 487, "Request Terminated", "bb");
	phone_expect(&a, "SIP/2.0 487", r, sizeof r);
	phone_close(&a);
	phone_close(&b);
}

/* RFC 3261 16.10: a CANCEL that matches no transaction here (its INVITE took
 * another path, or this proxy restarted) is forwarded statelessly where the
 * INVITE would go, and the answer of the next hop comes back; it used to be
 * answered 481 by the proxy, so the callee rang on. A CANCEL for us is 481. */
static void test_cancel_without_transaction_forwarded(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_register(&b, "orphan");
	char r[4096], cancel[4096], via[256];
	phone_cancel(&a, "orphan", "c-orphan", "z9hG4bKorphan1");
	phone_expect(&b, "CANCEL sip:orphan@10.1.1.1:", cancel, sizeof cancel);
	msg_header(cancel, "Via", via, sizeof via);
	assert_non_null(strstr(via, "branch=z9hG4bK")); /* ours, on top */
	assert_null(strstr(via, "z9hG4bKorphan1"));
	assert_non_null(strstr(cancel, "z9hG4bKorphan1")); /* the caller's, below */
	phone_reply(&b, cancel, 481, "Call/Transaction Does Not Exist", "bo");
	phone_expect(&a, "SIP/2.0 481", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 1 CANCEL"));
	/* the same CANCEL again gets the same branch (16.11) */
	phone_cancel(&a, "orphan", "c-orphan", "z9hG4bKorphan1");
	char again[4096], via2[256];
	phone_expect(&b, "CANCEL ", again, sizeof again);
	msg_header(again, "Via", via2, sizeof via2);
	assert_string_equal(via, via2);
	/* a CANCEL for the proxy itself has nothing to cancel */
	phone_send(&a,
		   "CANCEL sip:127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKorphan2;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n"
		   "To: <sip:127.0.0.1>\r\nCall-ID: c-orphan2\r\nCSeq: 1 CANCEL\r\n"
		   "Content-Length: 0\r\n\r\n",
		   net_addr_port(&srv.addr), a.port);
	phone_expect(&a, "SIP/2.0 481", r, sizeof r);
	phone_expect_silence(&b, 100);
	phone_close(&a);
	phone_close(&b);
}

/* RFC 6026: once a 2xx went up, the INVITE's server transaction is Accepted
 * (a compact record from the next turn on): it absorbs the INVITE's
 * retransmissions, a CANCEL still matches it, and a 2xx of another branch
 * still reaches the caller. */
static void test_after_2xx_accepted(void **state)
{
	(void)state;
	struct phone a, b1, b2;
	phone_open(&a, &srv);
	phone_open(&b1, &srv);
	phone_open(&b2, &srv);
	phone_register(&b1, "accepted");
	phone_register(&b2, "accepted");
	char r[4096], inv1[4096], inv2[4096];
	phone_invite(&a, "accepted", "c-acc", "z9hG4bKacc1", 70);
	phone_expect(&b1, "INVITE ", inv1, sizeof inv1);
	phone_expect(&b2, "INVITE ", inv2, sizeof inv2);
	phone_reply(&b1, inv1, 200, "OK", "x1");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=x1"));
	usleep(50 * 1000); /* past the turn that makes the record */
	phone_invite(&a, "accepted", "c-acc", "z9hG4bKacc1", 70);
	phone_expect_silence(&a, 200);
	phone_expect_silence(&b1, 0);
	phone_reply(&b2, inv2, 200, "OK", "x2");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=x2"));
	phone_cancel(&a, "accepted", "c-acc", "z9hG4bKacc1");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 1 CANCEL"));
	phone_expect_silence(&b1, 100); /* nothing to cancel there */
	phone_close(&a);
	phone_close(&b1);
	phone_close(&b2);
}

/* RFC 3261 16.7 step 2: every provisional above 100 restarts Timer C. A
 * callee that keeps ringing longer than Timer C (here 2 s instead of 180 s),
 * with a 180 now and then, is not cancelled; it used to be cancelled Timer C
 * after its first 180, however often it rang since. */
static void test_timer_c_reset_by_provisionals(void **state)
{
	(void)state;
	struct test_server s2;
	test_server_start(&s2, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\ntimer_c = 2\n"
			       "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n");
	struct phone a, b;
	phone_open(&a, &s2);
	phone_open(&b, &s2);
	phone_register(&b, "ringer");
	char r[4096], inv[4096];
	phone_invite(&a, "ringer", "c-timer-c", "z9hG4bKtc1", 70);
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	phone_reply(&b, inv, 180, "Ringing", "rg");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_expect_silence(&b, 1300);
	phone_reply(&b, inv, 183, "Session Progress", "rg");
	phone_expect(&a, "SIP/2.0 183", r, sizeof r);
	/* 2.6 s after the first 180, 1.3 s after the 183: still ringing */
	phone_expect_silence(&b, 1300);
	phone_expect_silence(&a, 0);
	phone_reply(&b, inv, 200, "OK", "rg");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	/* and with no provisional for Timer C, the branch is given up */
	phone_invite(&a, "ringer", "c-timer-c2", "z9hG4bKtc2", 70);
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	phone_reply(&b, inv, 180, "Ringing", "rg2");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	struct timeval tv = {.tv_sec = 4};
	setsockopt(b.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	phone_expect(&b, "CANCEL ", r, sizeof r);
	phone_close(&a);
	phone_close(&b);
	test_server_stop(&s2);
}

/* An INVITE with SDP from the caller's socket: an initial one (route NULL)
 * or a re-INVITE inside the dialog (to_tag, route set). */
static void send_invite_sdp(struct phone *a, const char *ruri, const char *to_tag,
			    const char *route, unsigned cseq, const char *branch, const char *dir)
{
	char sdp[512], route_line[1200] = "";
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=- 1 %u IN IP4 10.2.2.2\r\ns=-\r\nc=IN IP4 10.2.2.2\r\nt=0 0\r\n"
		 "m=audio 4000 RTP/AVP 0\r\na=%s\r\n",
		 cseq, dir);
	if (route)
		snprintf(route_line, sizeof route_line, "Route: %s\r\n", route);
	phone_send(a,
		   "INVITE %s SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "%sMax-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:holder@127.0.0.1>%s%s\r\n"
		   "Call-ID: c-hold\r\nCSeq: %u INVITE\r\n"
		   "Contact: <sip:caller@10.2.2.2:%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: %zu\r\n\r\n%s",
		   ruri, a->port, branch, route_line, to_tag ? ";tag=" : "", to_tag ? to_tag : "",
		   cseq, a->port, strlen(sdp), sdp);
}

static int64_t relay_sessions(struct test_server *s)
{
	struct relay_stats st;
	relay_stats_get(s->relay, &st);
	return st.sessions;
}

/* A relayed call put on hold is silent; its relay session is swept (here
 * after hold_timeout = 1 s, standing for a long hold). The re-INVITE that
 * resumes it used to go on unrelayed (no session, so "not a relayed call"):
 * the callee got the caller's private address and there was no audio. The
 * dialog's Record-Route says it is relayed, and the re-INVITE gets a relay
 * session again. */
static void test_hold_then_resume_relayed(void **state)
{
	(void)state;
	struct test_server s2;
	test_server_start(&s2, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
			       "[keepalive]\ninterval = 0\n[proxy]\nrelay = local\n"
			       "[relay]\naddress = 127.0.0.1\nports = 21900-21999\ntimeout = 1\n"
			       "hold_timeout = 1\n");
	struct phone a, b;
	phone_open(&a, &s2);
	phone_open(&b, &s2);
	phone_register(&b, "holder");
	char r[4096], inv[4096], rr[1024], ruri[128];
	static const char answer[] = "v=0\r\no=- 2 1 IN IP4 10.1.1.1\r\ns=-\r\n"
				     "c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
	snprintf(ruri, sizeof ruri, "sip:holder@127.0.0.1:%u", net_addr_port(&s2.addr));
	send_invite_sdp(&a, ruri, NULL, NULL, 1, "z9hG4bKhold1", "sendrecv");
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	assert_non_null(strstr(inv, "a=nortpproxy:yes"));
	phone_reply_sdp(&b, inv, 200, "OK", "hb", answer);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "a=nortpproxy:yes"));
	assert_int_equal(relay_sessions(&s2), 1);
	msg_header(r, "Record-Route", rr, sizeof rr);
	/* the caller's route set is the Record-Route reversed */
	char route[1024];
	reverse_route(rr, route, sizeof route);
	char bruri[64];
	snprintf(bruri, sizeof bruri, "sip:callee@127.0.0.1:%u", b.port);

	/* hold; both sides silent; the session goes */
	send_invite_sdp(&a, bruri, "hb", route, 2, "z9hG4bKhold2", "sendonly");
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	assert_non_null(strstr(inv, "a=nortpproxy:yes"));
	phone_reply_sdp(&b, inv, 200, "OK", "hb", answer);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	for (int i = 0; i < 500 && relay_sessions(&s2); i++)
		usleep(10 * 1000);
	assert_int_equal(relay_sessions(&s2), 0);

	/* resume: relayed again, no private address reaches the callee */
	send_invite_sdp(&a, bruri, "hb", route, 3, "z9hG4bKhold3", "sendrecv");
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	assert_non_null(strstr(inv, "a=nortpproxy:yes"));
	assert_null(strstr(strstr(inv, "\r\n\r\n"), "10.2.2.2"));
	phone_reply_sdp(&b, inv, 200, "OK", "hb", answer);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "a=nortpproxy:yes"));
	assert_null(strstr(strstr(r, "\r\n\r\n"), "10.1.1.1"));
	assert_int_equal(relay_sessions(&s2), 1);
	phone_close(&a);
	phone_close(&b);
	test_server_stop(&s2);
}

static void send_bye(struct phone *from, uint16_t to_port, const char *route, const char *branch,
		     unsigned cseq)
{
	phone_send(from,
		   "BYE sip:caller@10.2.2.2:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:dialog@127.0.0.1>;tag=dd\r\nTo: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "Call-ID: c-dlg\r\nCSeq: %u BYE\r\nContent-Length: 0\r\n\r\n",
		   to_port, from->port, branch, route, cseq);
}

static void test_in_dialog_bye_follows_record_route(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_register(&b, "dialog");
	char r[4096], rr[1024];
	answered_call(&a, &b, "dialog", "c-dlg", "z9hG4bKdlg1", "dd", rr, sizeof rr);
	/* the callee hangs up: Request-URI is the caller's private Contact, the
	 * route set is the Record-Route; it must reach the caller's real socket */
	send_bye(&b, a.port, rr, "z9hG4bKbye1", 1);
	char bye[4096];
	phone_expect(&a, "BYE sip:caller@10.2.2.2:", bye, sizeof bye);
	assert_null(strstr(bye, "\r\nRoute:")); /* both of our entries were consumed */
	phone_reply(&a, bye, 200, "OK", "caller1");
	phone_expect(&b, "SIP/2.0 200", r, sizeof r);
	/* a forged flow token in the route is not followed */
	char forged[1024];
	snprintf(forged, sizeof forged, "%s", rr);
	char *at = strchr(forged, '@');
	assert_non_null(at);
	at[-3] = at[-3] == 'A' ? 'B' : 'A';
	send_bye(&b, a.port, forged, "z9hG4bKbye2", 2);
	phone_expect(&b, "SIP/2.0 403", r, sizeof r); /* RFC 5626 5.3 */
	phone_close(&a);
	phone_close(&b);
}

/* A Route token made under another flow_key (before a key rotation, or a
 * restart with a random key) is stale, not forged: RFC 5626 5.3's 430 Flow
 * Failed, where it used to be 403 like a tampered one. */
static void test_stale_flow_token_430(void **state)
{
	(void)state;
	struct test_server old;
	test_server_start(&old, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
				"[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n");
	struct phone a, b;
	phone_open(&a, &old);
	phone_open(&b, &old);
	phone_register(&b, "rotated");
	char r[4096], rr[1024];
	answered_call(&a, &b, "rotated", "c-rot", "z9hG4bKrot1", "rt", rr, sizeof rr);
	unsigned old_port = net_addr_port(&old.addr);
	phone_close(&a);
	phone_close(&b);
	test_server_stop(&old);
	/* the same route towards the running server (its own key) */
	char from[32], to[32], route[1024] = "";
	snprintf(from, sizeof from, "@127.0.0.1:%u", old_port);
	snprintf(to, sizeof to, "@127.0.0.1:%u", net_addr_port(&srv.addr));
	for (const char *p = rr, *at; *p; p = at + strlen(from)) {
		at = strstr(p, from);
		if (!at) {
			strncat(route, p, sizeof route - strlen(route) - 1);
			break;
		}
		strncat(route, p, (size_t)(at - p));
		strncat(route, to, sizeof route - strlen(route) - 1);
	}
	struct phone c;
	phone_open(&c, &srv);
	send_bye(&c, 5060, route, "z9hG4bKrot2", 1);
	phone_expect(&c, "SIP/2.0 430", r, sizeof r);
	phone_close(&c);
}

/* The sender of an in-dialog request comes back on a new flow (its NAT
 * rebound, or it sends from another port than it listens on): neither of
 * our Route entries names the flow it came on, and the request must still
 * go to the far side, never back to the sender. Both directions. */
static void test_in_dialog_rebound_sender_reaches_far_side(void **state)
{
	(void)state;
	struct phone a, b, a2, b2;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_open(&a2, &srv);
	phone_open(&b2, &srv);
	phone_register(&b, "rebound");
	char r[4096], rr[1024], bye[4096];
	answered_call(&a, &b, "rebound", "c-rebind", "z9hG4bKrb1", "rb", rr, sizeof rr);
	/* the callee, from a new port, with its route set (Record-Route as is) */
	phone_send(&b2,
		   "BYE sip:caller@10.2.2.2:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKrbye1\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:rebound@127.0.0.1>;tag=rb\r\nTo: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "Call-ID: c-rebind\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		   a.port, b2.port, rr);
	phone_expect(&a, "BYE sip:caller@10.2.2.2:", bye, sizeof bye);
	phone_reply(&a, bye, 200, "OK", "caller1");
	phone_expect(&b2, "SIP/2.0 200", r, sizeof r);
	phone_expect_silence(&b, 0);
	/* the caller, from a new port, with its route set reversed */
	char rev[1024];
	reverse_route(rr, rev, sizeof rev);
	phone_send(&a2,
		   "BYE sip:rebound@10.1.1.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKrbye2\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:rebound@127.0.0.1>;tag=rb\r\n"
		   "Call-ID: c-rebind\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		   b.port, a2.port, rev);
	phone_expect(&b, "BYE sip:rebound@10.1.1.1:", bye, sizeof bye);
	phone_reply(&b, bye, 200, "OK", "rb");
	phone_expect(&a2, "SIP/2.0 200", r, sizeof r);
	phone_expect_silence(&a, 0);
	phone_close(&a);
	phone_close(&b);
	phone_close(&a2);
	phone_close(&b2);
}

/* A hairpin: the same phone (or trunk) on both sides of a dialog. Both of
 * our Route tokens name the flow the BYE came on, and that flow is also the
 * far side: the BYE goes there, not to its Request-URI (a private Contact
 * behind the NAT, unreachable). */
static void test_in_dialog_hairpin(void **state)
{
	(void)state;
	struct phone h;
	phone_open(&h, &srv);
	phone_register(&h, "hairpin");
	char r[4096], rr[1024], bye[4096];
	answered_call(&h, &h, "hairpin", "c-hairpin", "z9hG4bKhp1", "hp", rr, sizeof rr);
	char rev[1024];
	reverse_route(rr, rev, sizeof rev);
	phone_send(&h,
		   "BYE sip:hairpin@10.1.1.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKhpbye\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:hairpin@127.0.0.1>;tag=hp\r\n"
		   "Call-ID: c-hairpin\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		   h.port, h.port, rev);
	phone_expect(&h, "BYE sip:hairpin@10.1.1.1:", bye, sizeof bye);
	phone_reply(&h, bye, 200, "OK", "hp");
	phone_expect(&h, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 2 BYE"));
	phone_close(&h);
}

/* Sends req back to the server as a stateless proxy would: its own Via on
 * top, the Request-URI replaced when ruri is given. */
static void bounce(struct phone *p, const char *req, const char *ruri, const char *branch)
{
	const char *eol = strstr(req, "\r\n");
	assert_non_null(eol);
	const char *sp = strchr(req, ' ');
	const char *sp2 = strchr(sp + 1, ' ');
	if (ruri)
		phone_send(p, "%.*s %s%.*s\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=%s%s",
			   (int)(sp - req), req, ruri, (int)(eol - sp2), sp2, p->port, branch,
			   eol);
	else
		phone_send(p, "%.*s\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=%s%s",
			   (int)(eol - req), req, p->port, branch, eol);
}

/* RFC 3261 16.3 step 4: a request that another element sends back to us
 * unchanged has looped (482 at once, not 70 more rounds); one that comes
 * back changed (another Request-URI) is a spiral and goes on. */
static void test_loop_through_other_element(void **state)
{
	(void)state;
	struct phone a, p, q;
	phone_open(&a, &srv);
	phone_open(&p, &srv);
	phone_open(&q, &srv);
	char r[4096], req[4096], again[4096], ruri[128];
	phone_send(&a,
		   "OPTIONS sip:x@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKlp1;rport\r\nMax-Forwards: 70\r\n"
		   "From: <sip:a@127.0.0.1>;tag=lp\r\nTo: <sip:x@127.0.0.1>\r\n"
		   "Call-ID: c-loop\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		   p.port, a.port);
	phone_expect(&p, "OPTIONS sip:x@127.0.0.1:", req, sizeof req);
	bounce(&p, req, NULL, "z9hG4bKbounce1");
	phone_expect(&p, "SIP/2.0 482", r, sizeof r);
	assert_non_null(strstr(r, "branch=z9hG4bKbounce1"));
	/* a spiral: the element changed the Request-URI */
	snprintf(ruri, sizeof ruri, "sip:x@127.0.0.1:%u", q.port);
	bounce(&p, req, ruri, "z9hG4bKbounce2");
	phone_expect(&q, "OPTIONS sip:x@127.0.0.1:", again, sizeof again);
	phone_reply(&q, again, 200, "OK", "qq");
	phone_expect(&p, "SIP/2.0 200", r, sizeof r);
	phone_reply(&p, req, 200, "OK", "pp");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	phone_close(&a);
	phone_close(&p);
	phone_close(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_user_and_max_forwards),
		cmocka_unit_test(test_fork_first_200_wins_other_cancelled),
		cmocka_unit_test(test_cancel_before_answer),
		cmocka_unit_test(test_cancel_without_transaction_forwarded),
		cmocka_unit_test(test_after_2xx_accepted),
		cmocka_unit_test(test_timer_c_reset_by_provisionals),
		cmocka_unit_test(test_hold_then_resume_relayed),
		cmocka_unit_test(test_in_dialog_bye_follows_record_route),
		cmocka_unit_test(test_stale_flow_token_430),
		cmocka_unit_test(test_in_dialog_rebound_sender_reaches_far_side),
		cmocka_unit_test(test_in_dialog_hairpin),
		cmocka_unit_test(test_loop_through_other_element),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
