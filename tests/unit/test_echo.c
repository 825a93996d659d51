/* Unit tests of the echo service behind the proxy on loopback: answer, symmetric echo after the
 * ACK, strangers, RTCP, BYE both ways, bounds, through the relay. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "echo/echo.h"
#include "phone.h"
#include "rtp/rtp.h"
#include "testenv.h"

/* A media socket: a caller's RTP port, or a stranger's. */
struct msock {
	int fd;
	uint16_t port;
};

static void msock_open(struct msock *s, const char *ip)
{
	s->fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(s->fd >= 0);
	struct net_addr a, me;
	assert_int_equal(net_addr_parse(ip, 0, &a), 0);
	assert_int_equal(bind(s->fd, &a.u.sa, net_addr_len(&a)), 0);
	net_sock_addr(s->fd, &me);
	s->port = net_addr_port(&me);
}

static void msock_send(struct msock *s, uint16_t port, const void *p, size_t len)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	to.sin_addr.s_addr = htonl(0x7f000001);
	assert_true(sendto(s->fd, p, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len);
}

/* Receives one datagram within ms: its length, or -1; *from_port set. */
static ssize_t msock_recv(struct msock *s, int ms, uint8_t *buf, size_t cap, uint16_t *from_port)
{
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	struct sockaddr_in from;
	socklen_t sl = sizeof from;
	ssize_t k = recvfrom(s->fd, buf, cap, 0, (struct sockaddr *)&from, &sl);
	if (from_port)
		*from_port = ntohs(from.sin_port);
	return k;
}

static size_t make_rtp(uint8_t *out, uint16_t seq, uint32_t ssrc, uint8_t fill)
{
	struct rtp_hdr h = {.pt = RTP_PT_PCMU, .seq = seq, .ts = 160u * seq, .ssrc = ssrc};
	rtp_hdr_write(out, &h);
	memset(out + 12, fill, 160);
	return 172;
}

static const char *sdp_offer(char *buf, size_t cap, uint16_t port, bool mux)
{
	snprintf(buf, cap,
		 "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n%s",
		 port, mux ? "a=rtcp-mux\r\n" : "");
	return buf;
}

static void invite(struct phone *p, const char *call_id, const char *sdp)
{
	phone_send(p,
		   "INVITE sip:echo@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-%s;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@example.com>;tag=c1\r\nTo: <sip:echo@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: %zu\r\n\r\n%s",
		   net_addr_port(&p->srv->addr), p->port, call_id, call_id, p->port, strlen(sdp),
		   sdp);
}

/* What the caller learnt from the 200: the echo's media port, IP, tag, route. */
struct answer {
	uint16_t port;
	char ip[64];
	char tag[64];
	char route[2048]; /* Record-Route values, as the UAC's Route (reversed) */
	char contact[256];
	bool mux;
};

static void parse_200(const char *r, struct answer *a)
{
	memset(a, 0, sizeof *a);
	const char *m = strstr(r, "\r\nm=audio ");
	assert_non_null(m);
	a->port = (uint16_t)atoi(m + 10);
	const char *c = strstr(r, "\r\nc=IN IP4 ");
	assert_non_null(c);
	sscanf(c + 11, "%63[0-9.]", a->ip);
	char to[512];
	msg_header(r, "To", to, sizeof to);
	const char *t = strstr(to, "tag=");
	assert_non_null(t);
	snprintf(a->tag, sizeof a->tag, "%s", t + 4);
	char rr[2048];
	msg_header(r, "Record-Route", rr, sizeof rr);
	/* our proxy's pair: the caller's route set is it reversed */
	const char *comma = strstr(rr, ", ");
	assert_non_null(comma);
	snprintf(a->route, sizeof a->route, "%s, %.*s", comma + 2, (int)(comma - rr), rr);
	msg_header(r, "Contact", a->contact, sizeof a->contact);
	a->mux = strstr(r, "a=rtcp-mux") != NULL;
}

static void in_dialog(struct phone *p, const char *method, int cseq, const char *call_id,
		      const struct answer *a)
{
	char uri[256];
	snprintf(uri, sizeof uri, "%.*s", (int)strlen(a->contact) - 2, a->contact + 1);
	phone_send(p,
		   "%s %s SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-%s-%d;rport\r\n"
		   "Max-Forwards: 70\r\nRoute: %s\r\n"
		   "From: <sip:caller@example.com>;tag=c1\r\nTo: <sip:echo@127.0.0.1>;tag=%s\r\n"
		   "Call-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
		   method, uri, p->port, method, cseq, a->route, a->tag, call_id, cseq, method);
}

struct fixture {
	struct test_server srv;
	struct phone caller;
	struct msock media;
};

static void start(struct fixture *f, const char *extra)
{
	char conf[512];
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:127.0.0.1:0\n[echo]\nports = 22400-22499\n%s", extra);
	test_server_start(&f->srv, conf);
	assert_non_null(f->srv.echo);
	phone_open(&f->caller, &f->srv);
	msock_open(&f->media, "127.0.0.1");
}

static void stop(struct fixture *f)
{
	close(f->media.fd);
	phone_close(&f->caller);
	test_server_stop(&f->srv);
}

/* Calls the echo and answers with ACK: returns what the 200 said. */
static void call(struct fixture *f, const char *call_id, bool mux, struct answer *a)
{
	char sdp[512], r[8192];
	invite(&f->caller, call_id, sdp_offer(sdp, sizeof sdp, f->media.port, mux));
	phone_expect(&f->caller, "SIP/2.0 200", r, sizeof r);
	parse_200(r, a);
	assert_non_null(strstr(r, "m=audio"));
	assert_non_null(strstr(r, "a=rtpmap:8 PCMA/8000")); /* the caller's first choice */
	in_dialog(&f->caller, "ACK", 1, call_id, a);
}

/* Sends RTP until the first comes back (the ACK is on its way). */
/* Returns how many echoes came back while waiting (the fence included). */
static unsigned wait_echo(struct fixture *f, const struct answer *a, uint16_t *seq)
{
	unsigned echoed = 1;
	uint8_t pkt[256], back[2048];
	for (int i = 0; i < 100; i++) {
		size_t n = make_rtp(pkt, (*seq)++, 0x1234, 0x55);
		msock_send(&f->media, a->port, pkt, n);
		if (msock_recv(&f->media, 50, back, sizeof back, NULL) > 0)
			goto fence;
	}
	fail_msg("nothing came back from the echo");
fence:
	/* Under load more probes are in flight than the one that came back;
	 * their echoes must not be read by the caller's next checks. The echo
	 * answers one socket in order, so once a fence packet is back, every
	 * earlier echo has been read. */
	size_t n = make_rtp(pkt, (*seq)++, 0x1234, 0x66);
	msock_send(&f->media, a->port, pkt, n);
	for (;;) {
		ssize_t k = msock_recv(&f->media, 2000, back, sizeof back, NULL);
		assert_true(k > 12);
		echoed++;
		if (back[12] == 0x66)
			return echoed;
		assert_int_equal(back[12], 0x55);
	}
}

static void test_echo_call(void **state)
{
	(void)state;
	struct fixture f;
	start(&f, "");
	struct msock stranger, far;
	msock_open(&stranger, "127.0.0.1");
	msock_open(&far, "127.0.0.2"); /* neither the caller's SIP IP nor its SDP IP */
	char sdp[512], r[8192];
	invite(&f.caller, "echo-1", sdp_offer(sdp, sizeof sdp, f.media.port, true));
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	struct answer a;
	parse_200(r, &a);
	assert_string_equal(a.ip, "127.0.0.1");
	assert_true(a.mux);
	assert_in_range(a.port, 22400, 22499);
	assert_int_equal(a.port % 2, 0);
	uint8_t pkt[256], back[2048];
	uint16_t from = 0;
	/* the attack: before the ACK nothing is echoed, to anyone (a forged
	 * INVITE's SDP or source could name a victim) */
	size_t n = make_rtp(pkt, 1, 0x1234, 0x11);
	msock_send(&f.media, a.port, pkt, n);
	msock_send(&stranger, a.port, pkt, n);
	assert_true(msock_recv(&f.media, 300, back, sizeof back, NULL) < 0);
	assert_true(msock_recv(&stranger, 10, back, sizeof back, NULL) < 0);
	/* and a source that may not latch is never answered */
	msock_send(&far, a.port, pkt, n);
	in_dialog(&f.caller, "ACK", 1, "echo-1", &a);
	uint16_t seq = 100;
	unsigned echoed = wait_echo(&f, &a, &seq);
	assert_true(msock_recv(&far, 100, back, sizeof back, NULL) < 0);
	/* each packet comes back once, from the echo's port, as its own stream */
	uint32_t their_ssrc = 0;
	uint16_t their_seq = 0;
	for (int i = 0; i < 20; i++) {
		n = make_rtp(pkt, seq++, 0x1234, (uint8_t)i);
		msock_send(&f.media, a.port, pkt, n);
		ssize_t k = msock_recv(&f.media, 1000, back, sizeof back, &from);
		assert_int_equal(k, (ssize_t)n);
		assert_int_equal(from, a.port);
		struct rtp_hdr h;
		assert_int_equal(rtp_parse(&h, back, (size_t)k), 0);
		assert_memory_equal(back + 12, pkt + 12, 160);
		assert_int_not_equal(h.ssrc, 0x1234);
		if (i)
			assert_int_equal(h.seq, (uint16_t)(their_seq + 1));
		assert_true(i == 0 || h.ssrc == their_ssrc);
		their_ssrc = h.ssrc;
		their_seq = h.seq;
	}
	/* the attack: a stranger on another port gets nothing, the caller
	 * nothing extra (latched onto the caller's port) */
	for (int i = 0; i < 5; i++) {
		n = make_rtp(pkt, 9000, 0x1234, 0x77);
		msock_send(&stranger, a.port, pkt, n);
		msock_send(&far, a.port, pkt, n);
	}
	assert_true(msock_recv(&stranger, 200, back, sizeof back, NULL) < 0);
	assert_true(msock_recv(&far, 10, back, sizeof back, NULL) < 0);
	assert_true(msock_recv(&f.media, 10, back, sizeof back, NULL) < 0);
	assert_true(test_metric("echo_media_dropped_total", "reason=\"source\"") >= 10);

	/* RTCP on the muxed port: an SR gets a report about our stream */
	struct rtcp_report sr;
	memset(&sr, 0, sizeof sr);
	sr.sr = true;
	sr.ssrc = 0x1234;
	sr.ntp = rtcp_ntp_from_unix_us(1700000000000000ull);
	sr.packets = 22;
	uint8_t rb[512];
	size_t rl;
	assert_int_equal(rtcp_report_build(&sr, "caller@example.com", rb, sizeof rb, &rl), 0);
	msock_send(&f.media, a.port, rb, rl);
	ssize_t k = msock_recv(&f.media, 1000, back, sizeof back, &from);
	assert_true(k > 0 && (size_t)k <= rl); /* never larger than what came */
	assert_int_equal(rtp_demux(back, (size_t)k), RTP_KIND_RTCP);
	struct rtcp_report rep;
	assert_int_equal(rtcp_report_parse(&rep, back, (size_t)k), 0);
	assert_true(rep.sr); /* it sent: a sender report */
	assert_int_equal(rep.ssrc, their_ssrc);
	assert_int_equal(rep.packets, 20 + echoed);
	const struct rtcp_block *blk = rtcp_report_block_for(&rep, 0x1234);
	assert_non_null(blk);
	assert_int_equal(blk->lsr, rtcp_ntp_mid32(sr.ntp));
	assert_int_equal(blk->cum_lost, 0);
	/* a tiny RTCP gets nothing bigger back: an empty RR of 8 bytes */
	sr.sr = false;
	assert_int_equal(rtcp_report_build(&sr, NULL, rb, sizeof rb, &rl), 0);
	assert_int_equal(rl, 8);
	msock_send(&f.media, a.port, rb, rl);
	assert_true(msock_recv(&f.media, 200, back, sizeof back, NULL) < 0);

	/* the caller hangs up: 200, and the port is silent after */
	in_dialog(&f.caller, "BYE", 2, "echo-1", &a);
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 2 BYE"));
	n = make_rtp(pkt, seq++, 0x1234, 0x99);
	msock_send(&f.media, a.port, pkt, n);
	msock_send(&stranger, a.port, pkt, n);
	assert_true(msock_recv(&f.media, 300, back, sizeof back, NULL) < 0);
	assert_true(msock_recv(&stranger, 10, back, sizeof back, NULL) < 0);
	struct echo_stats st;
	echo_stats_get(f.srv.echo, &st);
	assert_int_equal(st.calls_active, 0);
	close(stranger.fd);
	close(far.fd);
	stop(&f);
}

static void test_echo_hangs_up(void **state)
{
	(void)state;
	struct fixture f;
	start(&f, "max_duration = 1\n");
	struct answer a;
	call(&f, "echo-2", false, &a);
	assert_false(a.mux);
	uint16_t seq = 1;
	wait_echo(&f, &a, &seq);
	/* after max_duration the echo sends BYE through the proxy */
	char r[8192];
	phone_expect(&f.caller, "BYE ", r, sizeof r);
	assert_non_null(strstr(r, "Call-ID: echo-2"));
	char to[256];
	msg_header(r, "To", to, sizeof to);
	assert_non_null(strstr(to, "tag=c1"));
	phone_reply(&f.caller, r, 200, "OK", "c1");
	uint8_t pkt[256], back[2048];
	size_t n = make_rtp(pkt, seq, 0x1234, 1);
	msock_send(&f.media, a.port, pkt, n);
	assert_true(msock_recv(&f.media, 300, back, sizeof back, NULL) < 0);
	assert_true(test_metric("echo_calls_ended_total", "by=\"max_duration\"") >= 1);
	stop(&f);
}

static void test_echo_bounds(void **state)
{
	(void)state;
	struct fixture f;
	start(&f, "max_calls_per_source = 1\nmax_calls = 2\n");
	char sdp[512], r[8192];
	/* an offer without PCMU/PCMA: 488 */
	phone_send(&f.caller,
		   "INVITE sip:echo@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-g722;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@example.com>;tag=c2\r\nTo: <sip:echo@127.0.0.1>\r\n"
		   "Call-ID: echo-5\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: 84\r\n\r\n"
		   "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		   "m=audio 4000 RTP/AVP 9\r\n",
		   net_addr_port(&f.srv.addr), f.caller.port, f.caller.port);
	phone_expect(&f.caller, "SIP/2.0 488", r, sizeof r);
	struct answer a;
	call(&f, "echo-3", true, &a);
	/* the attack: a second call from the same source is refused */
	invite(&f.caller, "echo-4", sdp_offer(sdp, sizeof sdp, f.media.port, true));
	phone_expect(&f.caller, "SIP/2.0 486", r, sizeof r);
	assert_non_null(strstr(r, "Too Many Echo Calls"));
	/* another user of our domain is not the echo */
	phone_invite(&f.caller, "someone", "echo-6", "z9hG4bK-x", 70);
	phone_expect(&f.caller, "SIP/2.0 404", r, sizeof r);
	in_dialog(&f.caller, "BYE", 2, "echo-3", &a);
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	/* now it has room again */
	invite(&f.caller, "echo-7", sdp_offer(sdp, sizeof sdp, f.media.port, true));
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	stop(&f);
}

/* A re-INVITE in the dialog with an SDP whose direction is dir. */
static void reinvite(struct fixture *f, int cseq, const char *call_id, const struct answer *a,
		     const char *dir)
{
	char sdp[512], uri[256];
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=caller 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 8 0\r\na=rtcp-mux\r\na=%s\r\n",
		 cseq, f->media.port, dir);
	snprintf(uri, sizeof uri, "%.*s", (int)strlen(a->contact) - 2, a->contact + 1);
	phone_send(&f->caller,
		   "INVITE %s SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-re-%d;rport\r\n"
		   "Max-Forwards: 70\r\nRoute: %s\r\n"
		   "From: <sip:caller@example.com>;tag=c1\r\nTo: <sip:echo@127.0.0.1>;tag=%s\r\n"
		   "Call-ID: %s\r\nCSeq: %d INVITE\r\nContact: <sip:caller@127.0.0.1:%u>\r\n"
		   "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
		   uri, f->caller.port, cseq, a->route, a->tag, call_id, cseq, f->caller.port,
		   strlen(sdp), sdp);
}

static void test_echo_hold(void **state)
{
	(void)state;
	struct fixture f;
	start(&f, "");
	struct answer a;
	call(&f, "echo-9", true, &a);
	uint16_t seq = 1;
	wait_echo(&f, &a, &seq);
	/* hold: the caller only sends, so the echo only receives */
	char r[8192];
	reinvite(&f, 2, "echo-9", &a, "sendonly");
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "a=recvonly"));
	assert_non_null(strstr(r, "CSeq: 2 INVITE"));
	in_dialog(&f.caller, "ACK", 2, "echo-9", &a);
	uint8_t pkt[256], back[2048];
	for (int i = 0; i < 5; i++) {
		size_t n = make_rtp(pkt, seq++, 0x1234, 1);
		msock_send(&f.media, a.port, pkt, n);
	}
	assert_true(msock_recv(&f.media, 300, back, sizeof back, NULL) < 0);
	/* resume: echoed again, on the same port */
	reinvite(&f, 3, "echo-9", &a, "sendrecv");
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "a=sendrecv"));
	const char *m = strstr(r, "\r\nm=audio ");
	assert_non_null(m);
	assert_int_equal(atoi(m + 10), a.port);
	in_dialog(&f.caller, "ACK", 3, "echo-9", &a);
	wait_echo(&f, &a, &seq);
	in_dialog(&f.caller, "BYE", 4, "echo-9", &a);
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	stop(&f);
}

/* Through the relay: the proxy relays the echo's call like any, the echo's
 * answer names the relay, and what comes back comes from the relay's port. */
static void test_echo_through_relay(void **state)
{
	(void)state;
	struct fixture f;
	int64_t echoed = test_metric("echo_packets_total", NULL);
	start(&f, "[relay]\naddress = 127.0.0.1\nports = 22500-22599\nmedia = always\n");
	assert_non_null(f.srv.relay);
	struct answer a;
	call(&f, "echo-8", true, &a);
	assert_in_range(a.port, 22500, 22599); /* the relay's, not the echo's */
	uint16_t seq = 1;
	wait_echo(&f, &a, &seq);
	uint8_t pkt[256], back[2048];
	uint16_t from;
	for (int i = 0; i < 10; i++) {
		size_t n = make_rtp(pkt, seq++, 0x1234, (uint8_t)i);
		msock_send(&f.media, a.port, pkt, n);
		ssize_t k = msock_recv(&f.media, 1000, back, sizeof back, &from);
		assert_int_equal(k, (ssize_t)n);
		assert_int_equal(from, a.port);
		assert_memory_equal(back + 12, pkt + 12, 160);
	}
	/* the echo sent each of them: the relay did not answer by itself */
	assert_true(test_metric("echo_packets_total", NULL) >= echoed + 11);
	char r[8192];
	in_dialog(&f.caller, "BYE", 2, "echo-8", &a);
	phone_expect(&f.caller, "SIP/2.0 200", r, sizeof r);
	stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_echo_call),	       cmocka_unit_test(test_echo_hangs_up),
	    cmocka_unit_test(test_echo_bounds),	       cmocka_unit_test(test_echo_hold),
	    cmocka_unit_test(test_echo_through_relay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
