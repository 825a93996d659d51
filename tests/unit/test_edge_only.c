/* The edge-only process ([proxy] registrar): Path with flow token and ;ob, Flow-Timer, token
 * routing, 403/430, and what a stranger can make it forward; in a network namespace of its own. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "edgelab.h"
#include "phone.h"
#include "testenv.h"

#define KEY_B "2222222222222222222222222222222222222222222222222222222222222222"
#define INSTANCE "+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\""

/* An edge-only server in front of reg (opened here). */
static void start_edge(struct test_server *s, struct phone *reg)
{
	edgelab_start(s, reg, "", false);
}

/* REGISTER for bob@example.org from p; outbound: Supported: outbound and a
 * Contact with instance and reg-id; extra_via: a Via below the phone's (we
 * are then not its first hop). */
static void send_register(struct phone *p, bool outbound, const char *extra_via)
{
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "REGISTER sip:example.org SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKeo%u;rport\r\n%s"
		   "Max-Forwards: 70\r\nFrom: <sip:bob@example.org>;tag=r%u\r\n"
		   "To: <sip:bob@example.org>\r\nCall-ID: eo-reg-%u\r\nCSeq: 1 REGISTER\r\n%s"
		   "Contact: <sip:bob@10.1.1.1:%u>%s\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   p->port, seq, extra_via, seq, seq,
		   outbound ? "Supported: outbound, path\r\n" : "", p->port,
		   outbound ? ";" INSTANCE ";reg-id=1" : "");
}

/* The user part of the first URI in a header value. */
static void uri_user(const char *v, char *out, size_t len)
{
	const char *p = strstr(v, "sip:"), *at = p ? strchr(p, '@') : NULL;
	assert_non_null(at);
	snprintf(out, len, "%.*s", (int)(at - p - 4), p + 4);
}

static int count_lines(const char *msg, const char *name)
{
	int n = 0;
	for (const char *p = msg; (p = strstr(p, name)) != NULL; p++)
		if (p > msg && p[-1] == '\n')
			n++;
	return n;
}

/* Registers bob through the edge with outbound and returns the Path the
 * registrar saw (its first value). */
static void register_bob(struct test_server *s, struct phone *ph, struct phone *reg, char *path,
			 size_t len)
{
	char req[4096], r[4096];
	send_register(ph, true, "");
	phone_expect(reg, "REGISTER sip:example.org ", req, sizeof req);
	msg_header(req, "Path", path, len);
	phone_reply_registrar(reg, req, "200 OK", "Require: outbound\r\n");
	phone_expect(ph, "SIP/2.0 200", r, sizeof r);
	(void)s;
}

/* Pinhole-Seen in the edge-only shape: the edge saw the phone's own
 * request, so the 2xx the phone gets carries the edge's copy (one, in
 * place of whatever the registrar wrote, which saw only the edge). */
static void test_register_2xx_seen_by_edge(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, false);
	char req[4096], r[4096], v[1024], want[256];
	unsigned char txt[1024];
	size_t n = 0;
	send_register(&ph, false, "");
	phone_expect(&reg, "REGISTER sip:example.org ", req, sizeof req);
	assert_null(strstr(req, "Pinhole-Seen"));
	/* "src=198.18.0.1:5060", as a registrar behind the edge would see it */
	phone_reply_registrar(&reg, req, "200 OK", "Pinhole-Seen: c3JjPTE5OC4xOC4wLjE6NTA2MA==\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(count_lines(r, "Pinhole-Seen:"), 1);
	msg_header(r, "Pinhole-Seen", v, sizeof v);
	assert_int_equal(base64_decode(slice_cstr(v), txt, sizeof txt - 1, &n), 0);
	txt[n] = '\0';
	snprintf(want, sizeof want, "src=127.0.0.1:%u\nvia=SIP/2.0/UDP 127.0.0.1:%u;", ph.port,
		 ph.port);
	assert_memory_equal(txt, want, strlen(want));
	snprintf(want, sizeof want, "\ncontact=<sip:bob@10.1.1.1:%u>", ph.port);
	assert_non_null(strstr((char *)txt, want));
	/* a refusal gets none of ours, nor one a hop beyond us wrote */
	send_register(&ph, false, "");
	phone_expect(&reg, "REGISTER sip:example.org ", req, sizeof req);
	phone_reply_registrar(&reg, req, "401 Unauthorized",
		  "WWW-Authenticate: Digest realm=\"x\", nonce=\"y\"\r\n"
		  "Pinhole-Seen: c3JjPTE5OC4xOC4wLjE6NTA2MA==\r\n");
	phone_expect(&ph, "SIP/2.0 401", r, sizeof r);
	assert_null(strstr(r, "Pinhole-Seen"));
	edgelab_close(&s, &reg, &ph);
}

/* RFC 5626 5.1 / RFC 3327: the registrar gets a Path naming the phone's flow
 * (token) with ;ob, above our Via; the 2xx gets Flow-Timer, our Via gone. */
static void test_register_path_ob_flow_timer(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, false);
	char req[4096], path[512], via[256], tok[128], r[4096], v[64];
	send_register(&ph, true, "");
	phone_expect(&reg, "REGISTER sip:example.org ", req, sizeof req);
	msg_header(req, "Path", path, sizeof path);
	char want[64];
	snprintf(want, sizeof want, "@%s:%u;lr;ob>", EDGE_IP, net_addr_port(&s.addr));
	assert_non_null(strstr(path, want));
	/* the token names the phone's flow */
	uri_user(path, tok, sizeof tok);
	assert_int_equal(strlen(tok), FLOW_TOKEN_LEN);
	struct flow f;
	assert_int_equal(edge_flow_token_decode(s.edge, slice_cstr(tok), &f), 0);
	assert_int_equal(net_addr_port(&f.remote), ph.port);
	assert_int_equal(f.tp, NET_UDP);
	/* our Via on top, the phone's below (two Via lines) */
	msg_header(req, "Via", via, sizeof via);
	assert_non_null(strstr(via, EDGE_IP));
	assert_int_equal(count_lines(req, "Via:"), 2);
	/* the registrar accepts outbound: the phone learns how often to ping */
	phone_reply_registrar(&reg, req, "200 OK", "Require: outbound\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	msg_header(r, "Flow-Timer", v, sizeof v);
	assert_string_equal(v, "25");
	assert_int_equal(count_lines(r, "Via:"), 1);
	assert_null(strstr(r, EDGE_IP ":"));
	/* a registrar's own Flow-Timer is kept when no longer than ours, and
	 * lowered to ours when longer */
	send_register(&ph, true, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	phone_reply_registrar(&reg, req, "200 OK", "Require: outbound\r\nFlow-Timer: 10\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	msg_header(r, "Flow-Timer", v, sizeof v);
	assert_string_equal(v, "10");
	send_register(&ph, true, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	phone_reply_registrar(&reg, req, "200 OK", "Require: outbound\r\nFlow-Timer: 300\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	msg_header(r, "Flow-Timer", v, sizeof v);
	assert_string_equal(v, "25");
	assert_int_equal(count_lines(r, "Flow-Timer:"), 1);
	edgelab_close(&s, &reg, &ph);
}

/* No ;ob (and so no Flow-Timer, whatever the registrar answers) for a phone
 * that did not ask for outbound, or when we are not its first hop; the
 * Path with the token is there all the same (the way back leads through us). */
static void test_register_without_outbound(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, false);
	char req[4096], path[512], r[4096];
	send_register(&ph, false, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	msg_header(req, "Path", path, sizeof path);
	assert_non_null(strstr(path, ";lr>"));
	assert_null(strstr(path, ";ob"));
	phone_reply_registrar(&reg, req, "200 OK", "Require: outbound\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_null(strstr(r, "Flow-Timer"));
	/* outbound asked, but another proxy stands between it and us */
	send_register(&ph, true, "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKfar\r\n");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	msg_header(req, "Path", path, sizeof path);
	assert_null(strstr(path, ";ob"));
	/* the registrar did not accept outbound: nothing to promise */
	send_register(&ph, true, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	msg_header(req, "Path", path, sizeof path);
	assert_non_null(strstr(path, ";lr;ob>"));
	phone_reply_registrar(&reg, req, "200 OK", "");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_null(strstr(r, "Flow-Timer"));
	edgelab_close(&s, &reg, &ph);
}

/* Over TCP the promise is [outbound] flow_timer_tcp. */
static void test_register_tcp_flow_timer(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg;
	edgelab_open(&s, &reg, NULL, false);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	assert_int_equal(connect(fd, &net_listener_addr(s.net, 1)->u.sa,
				 net_addr_len(net_listener_addr(s.net, 1))),
			 0);
	char msg[1024], req[4096], path[512], r[4096], v[64];
	int n = snprintf(
	    msg, sizeof msg,
	    "REGISTER sip:example.org SIP/2.0\r\n"
	    "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKeotcp\r\n"
	    "Max-Forwards: 70\r\nFrom: <sip:bob@example.org>;tag=t1\r\n"
	    "To: <sip:bob@example.org>\r\nCall-ID: eo-tcp\r\nCSeq: 1 REGISTER\r\n"
	    "Supported: outbound\r\nContact: <sip:bob@10.1.1.1:5060;transport=tcp>;" INSTANCE
	    ";reg-id=2\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(send(fd, msg, (size_t)n, 0), n);
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	msg_header(req, "Path", path, sizeof path);
	assert_non_null(strstr(path, ";lr;ob>"));
	phone_reply_registrar(&reg, req, "200 OK", "Require: outbound\r\n");
	ssize_t k = recv(fd, r, sizeof r - 1, 0);
	assert_true(k > 0);
	r[k] = '\0';
	assert_non_null(strstr(r, "SIP/2.0 200"));
	msg_header(r, "Flow-Timer", v, sizeof v);
	assert_string_equal(v, "120");
	close(fd);
	edgelab_close(&s, &reg, NULL);
}

static void reg_invite(struct phone *reg, const char *route, unsigned contact_port,
		       const char *call_id)
{
	phone_send(reg,
		   "INVITE sip:bob@10.1.1.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " REG_IP ":%u;branch=z9hG4bK%s\r\n"
		   "%s%s%sMax-Forwards: 69\r\nFrom: <sip:alice@example.org>;tag=a1\r\n"
		   "To: <sip:bob@example.org>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:alice@10.2.2.2>\r\nContent-Length: 0\r\n\r\n",
		   contact_port, reg->port, call_id, route[0] ? "Route: " : "", route,
		   route[0] ? "\r\n" : "", call_id);
}

/* RFC 5626 5.3: a request from the registrar whose Route is our Path goes
 * out over exactly the flow its token names, our entry popped, the
 * Request-URI (the Contact) as the registrar set it. A token that does not
 * verify gets 403 and a token of another epoch (here another key) 430;
 * neither reaches the phone. */
static void test_token_routing_403_430(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s, other;
	struct phone reg, ph;
	start_edge(&s, &reg);
	phone_open(&ph, &s);
	char path[512], inv[4096], r[4096];
	register_bob(&s, &ph, &reg, path, sizeof path);
	reg_invite(&reg, path, ph.port, "eo-inv-1");
	phone_expect(&ph, "INVITE sip:bob@10.1.1.1:", inv, sizeof inv);
	assert_null(strstr(inv, "\r\nRoute:"));
	phone_reply(&ph, inv, 200, "OK", "b1");
	phone_expect(&reg, "SIP/2.0 200", r, sizeof r);

	/* tampered: the MAC's last character changed */
	char forged[512];
	snprintf(forged, sizeof forged, "%s", path);
	char *at = strchr(forged, '@');
	at[-1] = at[-1] == 'A' ? 'B' : 'A';
	reg_invite(&reg, forged, ph.port, "eo-inv-2");
	phone_expect(&reg, "SIP/2.0 403", r, sizeof r);
	phone_expect_silence(&ph, 200);

	/* another key's token (a rotated flow_key): the flow is gone */
	test_server_start(&other, "[sip]\nlisten = udp:127.0.0.1:0\nflow_key = " KEY_B "\n"
				  "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n");
	struct flow f;
	struct net_addr pa;
	net_addr_parse("127.0.0.1", ph.port, &pa);
	net_flow_udp(other.net, 0, &pa, &f);
	char tok[FLOW_TOKEN_LEN + 1], stale[512];
	edge_flow_token_encode(other.edge, &f, tok);
	snprintf(stale, sizeof stale, "<sip:%s@%s:%u;lr;ob>", tok, EDGE_IP, net_addr_port(&s.addr));
	reg_invite(&reg, stale, ph.port, "eo-inv-3");
	phone_expect(&reg, "SIP/2.0 430", r, sizeof r);
	phone_expect_silence(&ph, 200);
	test_server_stop(&other);
	edgelab_close(&s, &reg, &ph);
}

/* What the registrar sends without our token is never sent back to it: the
 * edge keeps no bindings, so a user's request ends here (404). */
static void test_from_registrar_not_sent_back(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg;
	edgelab_open(&s, &reg, NULL, false);
	char r[4096];
	phone_send(&reg,
		   "MESSAGE sip:bob@example.org SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " REG_IP ":%u;branch=z9hG4bKback1\r\nMax-Forwards: 70\r\n"
		   "From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.org>\r\n"
		   "Call-ID: eo-back\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
		   reg.port);
	phone_expect(&reg, "SIP/2.0 404", r, sizeof r);
	phone_expect_silence(&reg, 200);
	edgelab_close(&s, &reg, NULL);
}

static void send_request(struct phone *p, const char *method, const char *ruri, const char *from)
{
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKood%u;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <%s>;tag=o%u\r\nTo: <%s>\r\nCall-ID: eo-ood-%u\r\n"
		   "CSeq: 1 %s\r\nContact: <sip:x@10.3.3.3>\r\nContent-Length: 0\r\n\r\n",
		   method, ruri, p->port, seq, from, seq, ruri, seq, method);
}

/* An out-of-dialog request from a phone goes to the registrar, Request-URI
 * unchanged, Record-Routed with the phone's flow token (the way back). */
static void test_out_of_dialog_to_registrar(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, false);
	char req[4096], rr[1024], tok[128], r[4096];
	send_request(&ph, "INVITE", "sip:carol@example.org", "sip:bob@example.org");
	phone_expect(&reg, "INVITE sip:carol@example.org SIP/2.0", req, sizeof req);
	msg_header(req, "Record-Route", rr, sizeof rr);
	/* the second entry is the caller's side */
	uri_user(strchr(rr, ',') + 1, tok, sizeof tok);
	struct flow f;
	assert_int_equal(edge_flow_token_decode(s.edge, slice_cstr(tok), &f), 0);
	assert_int_equal(net_addr_port(&f.remote), ph.port);
	phone_reply_registrar(&reg, req, "486 Busy Here", "");
	phone_expect(&ph, "SIP/2.0 486", r, sizeof r);
	phone_expect(&reg, "ACK ", r, sizeof r); /* hop by hop (RFC 3261 17.1.1.3) */
	/* an OPTIONS ping to the edge itself is answered here */
	char me[64];
	snprintf(me, sizeof me, "sip:%s:%u", EDGE_IP, net_addr_port(&s.addr));
	send_request(&ph, "OPTIONS", me, "sip:bob@example.org");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	phone_expect_silence(&reg, 100);
	edgelab_close(&s, &reg, &ph);
}

/* The registrar trusts its edges ([proxy] trusted), so what a stranger sends
 * to an edge must not reach the registrar as a request it would relay
 * unauthenticated: a target beyond our domains with a foreign From is
 * refused at the edge (the registrar never sees it); with a From of ours it
 * goes on, for the registrar to challenge. A REGISTER for another domain
 * stops at the edge too. */
static void test_stranger_cannot_relay_through_edge(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	struct phone reg, evil;
	start_edge(&s, &reg);
	phone_open_at(&evil, &s, ATTACKER);
	char r[4096];
	send_request(&evil, "INVITE", "sip:+442079460000@gw.example.net", "sip:x@evil.example");
	phone_expect(&evil, "SIP/2.0 403", r, sizeof r);
	send_request(&evil, "MESSAGE", "sip:victim@mail.example.net", "sip:x@evil.example");
	phone_expect(&evil, "SIP/2.0 403", r, sizeof r);
	phone_send(&evil,
		   "REGISTER sip:evil.example SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " ATTACKER ":%u;branch=z9hG4bKevreg\r\nMax-Forwards: 70\r\n"
		   "From: <sip:x@evil.example>;tag=e1\r\nTo: <sip:x@evil.example>\r\n"
		   "Call-ID: eo-evil-reg\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:x@" ATTACKER ":%u>\r\nContent-Length: 0\r\n\r\n",
		   evil.port, evil.port);
	phone_expect(&evil, "SIP/2.0 403", r, sizeof r);
	phone_expect_silence(&reg, 200);
	/* a call to a local user, and a From of ours, go to the registrar */
	send_request(&evil, "INVITE", "sip:bob@example.org", "sip:x@evil.example");
	phone_expect(&reg, "INVITE sip:bob@example.org ", r, sizeof r);
	send_request(&evil, "INVITE", "sip:+442079460000@gw.example.net", "sip:bob@example.org");
	phone_expect(&reg, "INVITE sip:+442079460000@gw.example.net ", r, sizeof r);
	phone_close(&evil);
	edgelab_close(&s, &reg, NULL);
}

/* No reflector: a request from a forged source that the registrar refuses
 * before anything rings comes back once (no Timer G resends to the victim)
 * and within 3 times the request's size (a larger refusal is dropped and
 * counted), as if the edge had refused it itself. */
static void test_registrar_refusal_not_reflected(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	struct phone reg, victim;
	start_edge(&s, &reg);
	phone_open_at(&victim, &s, ATTACKER);
	char req[4096], r[4096];
	send_request(&victim, "INVITE", "sip:nobody@example.org", "sip:x@evil.example");
	phone_expect(&reg, "INVITE sip:nobody@example.org ", req, sizeof req);
	phone_reply_registrar(&reg, req, "404 Not Found", "");
	phone_expect(&victim, "SIP/2.0 404", r, sizeof r);
	/* t1 = 100 ms: Timer G would have resent it 4 times by now */
	phone_expect_silence(&victim, 1600);
	/* a refusal over the bound: nothing goes out */
	int64_t over = test_metric("sip_reply_oversize_total", NULL);
	send_register(&victim, false, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	char big[3200];
	snprintf(big, sizeof big,
		 "WWW-Authenticate: Digest realm=\"example.org\", nonce=\"%03000d\"\r\n", 0);
	phone_reply_registrar(&reg, req, "401 Unauthorized", big);
	phone_expect_silence(&victim, 500);
	assert_int_equal(test_metric("sip_reply_oversize_total", NULL), over + 1);
	phone_close(&victim);
	edgelab_close(&s, &reg, NULL);
}

/* ---- the registrar over TCP: one connection for both ways (RFC 5923) ---- */

/* One SIP message without a body from a stream, within 3 s. */
static void stream_expect(int fd, const char *prefix, char *out, size_t len)
{
	size_t got = 0;
	out[0] = '\0';
	for (int i = 0; i < 300 && !strstr(out, "\r\n\r\n") && got < len - 1; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		while (got < len - 1 && !strstr(out, "\r\n\r\n") &&
		       recv(fd, out + got, 1, MSG_DONTWAIT) == 1)
			out[++got] = '\0';
	}
	if (strncmp(out, prefix, strlen(prefix)) != 0)
		fail_msg("expected \"%s\" on the stream, got:\n%s", prefix, out);
}

static void stream_send(int fd, const char *msg)
{
	assert_int_equal(send(fd, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
}

/* What reg_reply answers, over a stream. */
static void stream_reply(int fd, const char *req, const char *status, const char *extra)
{
	char out[4096];
	size_t n = (size_t)snprintf(out, sizeof out, "SIP/2.0 %s\r\n", status);
	for (const char *l = strstr(req, "\r\n") + 2; *l && strncmp(l, "\r\n", 2);) {
		const char *e = strstr(l, "\r\n");
		if (!strncmp(l, "Via:", 4) || !strncmp(l, "From:", 5) ||
		    !strncmp(l, "Call-ID:", 8) || !strncmp(l, "CSeq:", 5))
			n += (size_t)snprintf(out + n, sizeof out - n, "%.*s\r\n", (int)(e - l),
					      l);
		else if (!strncmp(l, "To:", 3))
			n += (size_t)snprintf(out + n, sizeof out - n, "%.*s;tag=reg\r\n",
					      (int)(e - l), l);
		l = e + 2;
	}
	snprintf(out + n, sizeof out - n, "%sContent-Length: 0\r\n\r\n", extra);
	stream_send(fd, out);
}

/* [proxy] registrar = tcp: the edge opens one connection to the registrar
 * (from its listener's address, offered with ;alias: the registrar is
 * trusted here), every REGISTER goes over it, and the registrar's INVITE
 * for the phone comes back over it too: no connection per message, none
 * the other way. */
static void test_registrar_over_tcp(void **state)
{
	(void)state;
	edgelab_need_ns();
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct net_addr ra, peer;
	assert_int_equal(net_addr_parse(REG_IP ":0", 0, &ra), 0);
	assert_int_equal(bind(lfd, &ra.u.sa, net_addr_len(&ra)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	net_sock_addr(lfd, &ra);
	struct test_server s;
	char conf[1024];
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:" EDGE_IP ":0, tcp:" EDGE_IP ":0\nt1 = 100\n"
		 "domains = example.org\nflow_key = " KEY_A "\n[keepalive]\ninterval = 0\n"
		 "[proxy]\nrelay = none\nregistrar = tcp:" REG_IP ":%u\ntrusted = " REG_IP "\n",
		 net_addr_port(&ra));
	test_server_start(&s, conf);
	uint16_t edge_tcp = net_addr_port(net_listener_addr(s.net, 1));
	struct phone ph;
	phone_open(&ph, &s);
	char req[4096], r[4096], path[512], want[128];
	send_register(&ph, true, "");
	struct pollfd pl = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&pl, 1, 3000), 1);
	socklen_t sl = sizeof peer.u.ss;
	int fd = accept4(lfd, &peer.u.sa, &sl, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	char ip[NET_ADDR_STRLEN];
	assert_string_equal(net_addr_ip_fmt(&peer, ip, sizeof ip), EDGE_IP); /* as its Via says */
	stream_expect(fd, "REGISTER sip:example.org ", req, sizeof req);
	snprintf(want, sizeof want, "Via: SIP/2.0/TCP " EDGE_IP ":%u;branch=", edge_tcp);
	const char *via = strstr(req, want);
	assert_non_null(via);
	const char *alias = strstr(via, ";alias");
	assert_true(alias && alias < strstr(via, "\r\n"));
	msg_header(req, "Path", path, sizeof path);
	snprintf(want, sizeof want, "@" EDGE_IP ":%u;transport=tcp;lr;ob>", edge_tcp);
	assert_non_null(strstr(path, want));
	stream_reply(fd, req, "200 OK", "Require: outbound\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	/* a refresh: the same connection */
	send_register(&ph, true, "");
	stream_expect(fd, "REGISTER sip:example.org ", req, sizeof req);
	stream_reply(fd, req, "200 OK", "Require: outbound\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	/* the registrar's INVITE for bob, through the Path, over that connection */
	char inv[2048];
	snprintf(inv, sizeof inv,
		 "INVITE sip:bob@10.1.1.1:%u SIP/2.0\r\n"
		 "Via: SIP/2.0/TCP " REG_IP ":%u;branch=z9hG4bKreginv1;alias\r\n"
		 "Route: %s\r\nMax-Forwards: 70\r\n"
		 "From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.org>\r\n"
		 "Call-ID: eo-tcp-inv\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		 ph.port, net_addr_port(&ra), path);
	stream_send(fd, inv);
	phone_expect(&ph, "INVITE sip:bob@10.1.1.1", r, sizeof r);
	phone_reply(&ph, r, 486, "Busy Here", "bob1");
	stream_expect(fd, "SIP/2.0 100", req, sizeof req);
	stream_expect(fd, "SIP/2.0 486", req, sizeof req);
	pl.revents = 0;
	assert_int_equal(poll(&pl, 1, 50), 0); /* never a second connection */
	struct net_stats st;
	net_stats_get(s.net, &st);
	assert_int_equal(st.tcp_connects, 1);
	assert_int_equal(st.tcp_accepted, 0);
	close(fd);
	close(lfd);
	phone_close(&ph);
	test_server_stop(&s);
}

/* The two processes over TCP, both pinhole: when the edge's connection to
 * the registrar is gone (here the registrar's idle close; an edge restart
 * or reconnect is the same), the registrar reaches the phone through its
 * Path's first hop (RFC 3327 5.3) over a new connection to the edge (one
 * connect), and the edge routes it by its token to the phone. */
static void test_registrar_reaches_edge_after_close(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server rs, s;
	test_server_start(&rs, "[sip]\nlisten = udp:" REG_IP ":0, tcp:" REG_IP ":0\nt1 = 100\n"
			       "domains = example.org\ntcp_idle_timeout = 1\n"
			       "[keepalive]\ninterval = 0\n[registrar]\nopen = yes\n"
			       "[proxy]\nrelay = none\ntrusted = " EDGE_IP "\n");
	char conf[1024];
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:" EDGE_IP ":0, tcp:" EDGE_IP ":0\nt1 = 100\n"
		 "domains = example.org\nflow_key = " KEY_A "\n[keepalive]\ninterval = 0\n"
		 "[proxy]\nrelay = none\nregistrar = tcp:" REG_IP ":%u\ntrusted = " REG_IP "\n",
		 net_addr_port(net_listener_addr(rs.net, 1)));
	test_server_start(&s, conf);
	struct phone ph, caller;
	phone_open(&ph, &s);
	phone_open(&caller, &rs);
	char r[4096], inv[4096], route[512];
	send_register(&ph, true, "");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	struct net_stats st;
	net_stats_get(rs.net, &st);
	assert_int_equal(st.tcp_accepted, 1);
	int64_t connects0 = st.tcp_connects;
	for (int i = 0; i < 500 && st.tcp_open; i++) { /* the idle close, within 2 s */
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
		net_stats_get(rs.net, &st);
	}
	assert_int_equal(st.tcp_open, 0);

	phone_send(&caller,
		   "INVITE sip:bob@example.org SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKpathhop1;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\n"
		   "To: <sip:bob@example.org>\r\nCall-ID: eo-path-hop\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:alice@10.2.2.2>\r\nContent-Length: 0\r\n\r\n",
		   caller.port);
	phone_expect(&ph, "INVITE sip:bob@10.1.1.1:", inv, sizeof inv);
	route[0] = '\0';
	if (strstr(inv, "\r\nRoute:"))
		msg_header(inv, "Route", route, sizeof route);
	assert_string_equal(route, ""); /* the edge's entry popped */
	net_stats_get(rs.net, &st);
	assert_int_equal(st.tcp_connects, connects0 + 1);
	struct net_stats es;
	net_stats_get(s.net, &es);
	assert_int_equal(es.tcp_accepted, 1);
	phone_reply(&ph, inv, 486, "Busy Here", "bob1");
	phone_expect(&caller, "SIP/2.0 486", r, sizeof r);
	char to[256];
	msg_header(r, "To", to, sizeof to);
	phone_send(&caller,
		   "ACK sip:bob@example.org SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKpathhop1;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\n"
		   "To: %s\r\nCall-ID: eo-path-hop\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		   caller.port, to);
	phone_expect_silence(&caller, 300); /* no 486 again: the ACK was taken */
	phone_close(&caller);
	phone_close(&ph);
	test_server_stop(&s);
	test_server_stop(&rs);
}

int main(void)
{
	edgelab_setup();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_path_ob_flow_timer),
	    cmocka_unit_test(test_register_2xx_seen_by_edge),
	    cmocka_unit_test(test_register_without_outbound),
	    cmocka_unit_test(test_register_tcp_flow_timer),
	    cmocka_unit_test(test_token_routing_403_430),
	    cmocka_unit_test(test_from_registrar_not_sent_back),
	    cmocka_unit_test(test_out_of_dialog_to_registrar),
	    cmocka_unit_test(test_stranger_cannot_relay_through_edge),
	    cmocka_unit_test(test_registrar_refusal_not_reflected),
	    cmocka_unit_test(test_registrar_over_tcp),
	    cmocka_unit_test(test_registrar_reaches_edge_after_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
