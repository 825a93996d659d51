/* NAT verdicts per binding and media evidence per stream, written as what an ALG, a STUN-using
 * phone and a plain NAT do to a REGISTER. */
#include <errno.h>
#include <sched.h>
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

#include "phone.h"
#include "relay/relay.h"
#include "stund/stund.h"
#include "testenv.h"

/* The namespace (lo only): the server at SRV_IP, phones on the "internet"
 * at NET_IP, a phone in a direct network at LAN_IP. */
#define SRV_IP "198.18.0.1"
#define NET_IP "198.18.5.5"
#define LAN_IP "198.18.6.6"

static bool have_ns;

static void need_ns(void)
{
	if (!have_ns)
		skip(); /* needs root for a network namespace of its own */
}

static struct net_addr addr(const char *ip, uint16_t port)
{
	struct net_addr a;
	assert_int_equal(net_addr_from_host(slice_cstr(ip), port, &a), 0);
	return a;
}

/* ---- the rules alone ---- */

struct judged {
	uint8_t verdict;
	uint16_t ev;
};

static struct judged judge(const char *src_ip, uint16_t src_port, const char *via_host,
			   uint16_t via_port, const char *contact_host, uint16_t contact_port,
			   bool direct, bool stun)
{
	char via_s[128], uri_s[128];
	snprintf(via_s, sizeof via_s, "SIP/2.0/UDP %s:%u;branch=z9hG4bKj;rport", via_host,
		 via_port);
	snprintf(uri_s, sizeof uri_s, "sip:alice@%s:%u", contact_host, contact_port);
	static struct sip_via via;
	static struct sip_uri uri;
	assert_int_equal(sip_via_parse(slice_cstr(via_s), &via), 0);
	assert_int_equal(sip_uri_parse(slice_cstr(uri_s), &uri), 0);
	struct registrar_nat_in in = {.src = addr(src_ip, src_port),
				      .tp = NET_UDP,
				      .via = &via,
				      .contact = &uri,
				      .direct = direct,
				      .stun_seen = stun};
	struct judged j;
	registrar_nat_judge(&in, &j.verdict, &j.ev);
	return j;
}

static void test_rules(void **state)
{
	(void)state;
	/* a plain NAT: the phone's own private address, from the NAT's public one */
	struct judged j =
	    judge("198.51.100.7", 40112, "192.168.1.20", 5060, "192.168.1.20", 5060, false, false);
	assert_int_equal(j.verdict, REG_NAT);
	assert_int_equal(j.ev, REG_EV_VIA_PRIVATE | REG_EV_CONTACT_PRIVATE);
	/* an ALG rewrote both to exactly the packet's public source */
	j = judge("198.51.100.7", 40112, "198.51.100.7", 40112, "198.51.100.7", 40112, false,
		  false);
	assert_int_equal(j.verdict, REG_NAT_ALG);
	assert_int_equal(j.ev, REG_EV_VIA_IS_SOURCE | REG_EV_CONTACT_IS_SOURCE);
	/* the same after a STUN Binding from that source on our SIP port */
	j = judge("198.51.100.7", 40112, "198.51.100.7", 40112, "198.51.100.7", 40112, false, true);
	assert_int_equal(j.verdict, REG_NAT_STUN);
	assert_true(j.ev & REG_EV_STUN_SEEN);
	/* the same from a network known direct: believed */
	j = judge("203.0.113.9", 5060, "203.0.113.9", 5060, "203.0.113.9", 5060, true, false);
	assert_int_equal(j.verdict, REG_NAT_NONE);
	assert_true(j.ev & REG_EV_DIRECT);
	/* a LAN phone reaching us from a private source: no NAT between */
	j = judge("10.1.2.3", 5060, "10.1.2.3", 5060, "10.1.2.3", 5060, false, false);
	assert_int_equal(j.verdict, REG_NAT_NONE);
	assert_true(j.ev & REG_EV_PRIVATE_SOURCE);
	/* STUN learnt from another server behind a symmetric NAT: the right
	 * IP, another port than the SIP flow's mapping */
	j = judge("198.51.100.7", 40112, "198.51.100.7", 50001, "198.51.100.7", 50001, false,
		  false);
	assert_int_equal(j.verdict, REG_NAT);
	assert_int_equal(j.ev, REG_EV_VIA_OTHER | REG_EV_CONTACT_OTHER);
	/* half an ALG (Via rewritten, Contact left private) is still NAT */
	j = judge("198.51.100.7", 40112, "198.51.100.7", 40112, "192.168.1.20", 5060, false, false);
	assert_int_equal(j.verdict, REG_NAT);
	assert_int_equal(j.ev, REG_EV_VIA_IS_SOURCE | REG_EV_CONTACT_PRIVATE);
	char s[256];
	assert_int_equal(registrar_nat_evidence_fmt(j.ev, s, sizeof s), 0);
	assert_string_equal(s, "via=source,contact-private");
	assert_string_equal(registrar_nat_verdict_name(REG_NAT_ALG), "nat-alg-suspected");
	assert_string_equal(registrar_nat_verdict_name(REG_NAT_STUN), "stun-announced");
}

static void test_media_evidence(void **state)
{
	(void)state;
	struct relay_latch_conf c = {.mode = RELAY_LATCH_STRICT, .relatch_ms = 2000};
	struct relay_latch l;
	struct net_addr sdp = addr("198.51.100.7", 4000), sig = addr("198.51.100.7", 40112);
	relay_latch_init(&l, &sdp, &sig, NULL);
	assert_int_equal(relay_latch_evidence(&l), RELAY_EV_NO_MEDIA);
	struct net_addr from = addr("198.51.100.7", 4000);
	relay_latch_packet(&l, &c, &from, 1, 1);
	assert_int_equal(relay_latch_evidence(&l), RELAY_EV_AS_ANNOUNCED);
	/* the ALG's c= with the symmetric NAT's other port */
	relay_latch_init(&l, &sdp, &sig, NULL);
	from = addr("198.51.100.7", 61234);
	relay_latch_packet(&l, &c, &from, 1, 1);
	assert_int_equal(relay_latch_evidence(&l), RELAY_EV_OTHER_PORT);
	assert_string_equal(relay_evidence_name(RELAY_EV_OTHER_PORT), "media-other-port");
	/* a private c= (the plain NAT), media from the public address */
	struct net_addr priv = addr("192.168.1.20", 4000);
	relay_latch_init(&l, &priv, &sig, NULL);
	relay_latch_packet(&l, &c, &from, 1, 1);
	assert_int_equal(relay_latch_evidence(&l), RELAY_EV_OTHER_IP);
	assert_int_equal((int)RELAY_EV_OTHER_IP, (int)REG_MEDIA_OTHER_IP); /* same words */
}

/* ---- through the registrar ---- */

static void reg(struct phone *p, const char *user, const char *host, uint16_t port, unsigned cseq)
{
	char r[4096];
	phone_send(p,
		   "REGISTER sip:" SRV_IP " SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bKv%s%u;rport\r\n"
		   "From: <sip:%s@" SRV_IP ">;tag=v%u\r\nTo: <sip:%s@" SRV_IP ">\r\n"
		   "Call-ID: verdict-%s\r\nCSeq: %u REGISTER\r\n"
		   "Contact: <sip:%s@%s:%u>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   host, port, user, cseq, user, cseq, user, user, cseq, user, host, port);
	phone_expect(p, "SIP/2.0 200", r, sizeof r);
}

static void dump(struct test_server *s, struct buf *out)
{
	buf_reset(out);
	assert_int_equal(registrar_dump_json(s->reg, out), 0);
	buf_append(out, "", 1);
}

/* The binding of user's JSON, from its "aor" up to the next one. */
static const char *binding_of(struct buf *b, const char *user, char *out, size_t cap)
{
	char key[64];
	snprintf(key, sizeof key, "\"aor\":\"%s@", user);
	const char *p = strstr(b->data, key);
	assert_non_null(p);
	const char *e = strstr(p + 1, "\"aor\":");
	snprintf(out, cap, "%.*s", (int)(e ? (size_t)(e - p) : strlen(p)), p);
	return out;
}

static int64_t verdicts(const char *v)
{
	char labels[64];
	snprintf(labels, sizeof labels, "verdict=\"%s\"", v);
	struct metric *m = metric_find("registrar_nat_verdicts_total", labels);
	assert_non_null(m);
	return metric_get(m);
}

static void test_alg_stun_nat_direct_through_registrar(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:" SRV_IP ":0\n[keepalive]\ninterval = 0\n"
			      "[registrar]\nopen = yes\n[relay]\naddress = " SRV_IP
			      "\nports = 22100-22139\n"
			      "direct_networks = " LAN_IP "/32\n");
	edge_set_stun(s.edge, stund_flow_answer, NULL);
	struct phone alg, stun, nat, lan;
	phone_open_at(&alg, &s, NET_IP);
	phone_open_at(&stun, &s, NET_IP);
	phone_open_at(&nat, &s, NET_IP);
	phone_open_at(&lan, &s, LAN_IP);
	int64_t alg0 = verdicts("nat-alg-suspected"), stun0 = verdicts("stun-announced");
	/* the ALG wrote the packet's own public source into Via and Contact */
	reg(&alg, "alg", NET_IP, alg.port, 1);
	/* a STUN-using phone asks our SIP port first, then writes the answer */
	static const uint8_t binding[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,	2,
					    3,	  4,	5,    6,    7,	  8,	9,    10,   11, 12};
	assert_int_equal(
	    sendto(stun.fd, binding, sizeof binding, 0, &s.addr.u.sa, net_addr_len(&s.addr)),
	    (ssize_t)sizeof binding);
	uint8_t ans[512];
	assert_true(recv(stun.fd, ans, sizeof ans, 0) > 20); /* answered: noted */
	reg(&stun, "stun", NET_IP, stun.port, 1);
	/* the honest phone behind a plain NAT */
	reg(&nat, "plain", "192.168.1.20", 5060, 1);
	/* a public phone in a network the operator lists as direct */
	reg(&lan, "lan", LAN_IP, lan.port, 1);
	struct buf b;
	buf_init(&b);
	char one[2048];
	dump(&s, &b);
	assert_non_null(strstr(binding_of(&b, "alg", one, sizeof one),
			       "\"nat\":{\"verdict\":\"nat-alg-suspected\",\"evidence\":["
			       "\"via=source\",\"contact=source\"]"));
	assert_non_null(
	    strstr(binding_of(&b, "stun", one, sizeof one), "\"verdict\":\"stun-announced\""));
	assert_non_null(strstr(one, "\"stun-from-source\""));
	assert_non_null(strstr(binding_of(&b, "plain", one, sizeof one), "\"verdict\":\"nat\""));
	assert_null(strstr(one, "alg"));
	assert_non_null(strstr(binding_of(&b, "lan", one, sizeof one), "\"verdict\":\"no-nat\""));
	assert_int_equal(verdicts("nat-alg-suspected") - alg0, 1);
	assert_int_equal(verdicts("stun-announced") - stun0, 1);

	/* the same phone's addresses disagree across its requests (a phone
	 * that rewrites its Contact from what it learnt, an ALG switched on
	 * between two REGISTERs): noted, and it stays */
	struct metric *ch = metric_find("registrar_nat_addresses_changed_total", NULL);
	assert_non_null(ch);
	int64_t ch0 = metric_get(ch);
	reg(&nat, "plain", NET_IP, nat.port, 2);
	reg(&nat, "plain", NET_IP, nat.port, 3);
	dump(&s, &b);
	assert_int_equal(metric_get(ch) - ch0, 1);
	const char *second = strstr(b.data, "\"contact\":\"sip:plain@" NET_IP);
	assert_non_null(second);
	const char *next = strstr(second, "\"aor\":");
	snprintf(one, sizeof one, "%.*s", (int)(next ? (size_t)(next - second) : strlen(second)),
		 second);
	assert_non_null(strstr(one, "\"addresses-changed\""));
	/* the text table says it too */
	buf_reset(&b);
	assert_int_equal(registrar_dump_text(s.reg, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "nat=nat-alg-suspected evidence=via=source,contact=source"));
	buf_free(&b);
	phone_close(&alg);
	phone_close(&stun);
	phone_close(&nat);
	phone_close(&lan);
	test_server_stop(&s);
}

/* RTP from p's socket to dst (an "ip:port" string): n packets of ssrc. */
static void rtp_send(struct phone *p, const char *dst, uint32_t ssrc, int n)
{
	struct net_addr to;
	char ip[64];
	const char *colon = strrchr(dst, ':');
	snprintf(ip, sizeof ip, "%.*s", (int)(colon - dst), dst);
	assert_int_equal(net_addr_from_host(slice_cstr(ip), (uint16_t)atoi(colon + 1), &to), 0);
	uint8_t pkt[172] = {0x80, 0x00};
	for (int i = 0; i < n; i++) {
		pkt[2] = (uint8_t)(i >> 8);
		pkt[3] = (uint8_t)i;
		pkt[8] = (uint8_t)(ssrc >> 24);
		pkt[9] = (uint8_t)(ssrc >> 16);
		pkt[10] = (uint8_t)(ssrc >> 8);
		pkt[11] = (uint8_t)ssrc;
		assert_int_equal(sendto(p->fd, pkt, sizeof pkt, 0, &to.u.sa, net_addr_len(&to)),
				 (ssize_t)sizeof pkt);
		usleep(2000);
	}
}

/* "ip:port" of the first audio stream of the SDP in msg. */
static void sdp_target(const char *msg, char *out, size_t cap)
{
	const char *c = strstr(strstr(msg, "\r\n\r\n"), "c=IN IP4 ");
	const char *m = strstr(msg, "m=audio ");
	assert_non_null(c);
	assert_non_null(m);
	c += strlen("c=IN IP4 ");
	snprintf(out, cap, "%.*s:%d", (int)strcspn(c, "\r\n"), c, atoi(m + strlen("m=audio ")));
}

/* The issue's call: a phone whose router's ALG rewrote Via, Contact and c=
 * to its public address calls a phone in a direct network. The default
 * relays it anyway (auto did not: nothing in the message says NAT); its
 * media then comes from another port than the SDP said (a symmetric NAT),
 * which the call shows (ctl calls), the counters aggregate and, once the
 * call is over, the caller's binding keeps. */
static void test_alg_call_relayed_with_evidence(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:" SRV_IP ":0\n[keepalive]\ninterval = 0\n"
			      "[registrar]\nopen = yes\n[relay]\naddress = " SRV_IP "\n"
			      "ports = 22140-22179\nfastpath = off\n"
			      "direct_networks = " LAN_IP "/32\n");
	struct phone alg, alg_rtp, lan, lan_rtp;
	phone_open_at(&alg, &s, NET_IP);
	phone_open_at(&alg_rtp, &s, NET_IP); /* the symmetric NAT's mapping for RTP */
	phone_open_at(&lan, &s, LAN_IP);
	phone_open_at(&lan_rtp, &s, LAN_IP);
	reg(&alg, "alg2", NET_IP, alg.port, 1);
	reg(&lan, "desk", LAN_IP, lan.port, 1);
	struct metric *ev = metric_find("relay_media_evidence_total", "kind=\"media-other-port\"");
	assert_non_null(ev);
	int64_t ev0 = metric_get(ev);
	char sdp[512], inv[4096], r[4096], rr[1024], to_callee[64], to_caller[64];
	/* c= and m= as the ALG left them: the NAT's address, the phone's port */
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=- 1 1 IN IP4 " NET_IP "\r\ns=-\r\nc=IN IP4 " NET_IP
		 "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
	phone_send(&alg,
		   "INVITE sip:desk@" SRV_IP " SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " NET_IP ":%u;branch=z9hG4bKalgcall;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:alg2@" SRV_IP ">;tag=algtag\r\n"
		   "To: <sip:desk@" SRV_IP ">\r\nCall-ID: alg-call\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:alg2@" NET_IP ":%u>\r\nContent-Type: application/sdp\r\n"
		   "Content-Length: %zu\r\n\r\n%s",
		   alg.port, alg.port, strlen(sdp), sdp);
	phone_expect(&lan, "INVITE ", inv, sizeof inv);
	assert_non_null(strstr(inv, "a=nortpproxy:yes")); /* relayed */
	assert_null(strstr(strstr(inv, "\r\n\r\n"), NET_IP));
	sdp_target(inv, to_callee, sizeof to_callee);
	msg_header(inv, "Record-Route", rr, sizeof rr);
	char answer[512];
	snprintf(answer, sizeof answer,
		 "v=0\r\no=- 2 1 IN IP4 " LAN_IP "\r\ns=-\r\nc=IN IP4 " LAN_IP
		 "\r\nt=0 0\r\nm=audio %u RTP/AVP 0\r\n",
		 lan_rtp.port);
	phone_reply_sdp(&lan, inv, 200, "OK", "desktag", answer);
	phone_expect(&alg, "SIP/2.0 200", r, sizeof r);
	sdp_target(r, to_caller, sizeof to_caller);
	/* media: the caller's from another port of its address, the callee's
	 * from exactly where its SDP said */
	rtp_send(&alg_rtp, to_caller, 0x11111111, 5);
	rtp_send(&lan_rtp, to_callee, 0x22222222, 5);
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 200; i++) {
		buf_reset(&b);
		assert_int_equal(relay_dump(s.relay, true, 10, &b), 0);
		buf_append(&b, "", 1);
		if (strstr(b.data, "media-as-announced") && strstr(b.data, "media-other-port"))
			break;
		usleep(10000);
	}
	const char *caller = strstr(b.data, "\"tag\":\"algtag\"");
	const char *callee = strstr(b.data, "\"tag\":\"desktag\"");
	assert_non_null(caller);
	assert_non_null(callee);
	assert_non_null(strstr(caller, "\"evidence\":\"media-other-port\""));
	assert_true(strstr(caller, "\"evidence\":\"media-other-port\"") < callee);
	assert_non_null(strstr(callee, "\"evidence\":\"media-as-announced\""));
	assert_non_null(strstr(caller, "\"announced\":\"" NET_IP ":4000\""));
	/* the callee hangs up; the caller's binding keeps what its media did */
	char bye_route[1100];
	snprintf(bye_route, sizeof bye_route, "Route: %s\r\n", rr);
	phone_send(&lan,
		   "BYE sip:alg2@" NET_IP ":%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " LAN_IP ":%u;branch=z9hG4bKalgbye;rport\r\n"
		   "%sMax-Forwards: 70\r\nFrom: <sip:desk@" SRV_IP ">;tag=desktag\r\n"
		   "To: <sip:alg2@" SRV_IP ">;tag=algtag\r\nCall-ID: alg-call\r\n"
		   "CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		   alg.port, lan.port, bye_route);
	char bye[4096];
	phone_expect(&alg, "BYE ", bye, sizeof bye);
	phone_reply(&alg, bye, 200, "OK", NULL);
	phone_expect(&lan, "SIP/2.0 200", r, sizeof r);
	for (int i = 0; i < 200 && metric_get(ev) == ev0; i++)
		usleep(10000);
	assert_int_equal(metric_get(ev) - ev0, 1);
	dump(&s, &b);
	char one[2048];
	assert_non_null(
	    strstr(binding_of(&b, "alg2", one, sizeof one), "\"media\":\"media-other-port\""));
	assert_non_null(
	    strstr(binding_of(&b, "desk", one, sizeof one), "\"media\":\"media-as-announced\""));
	buf_free(&b);
	phone_close(&alg);
	phone_close(&alg_rtp);
	phone_close(&lan);
	phone_close(&lan_rtp);
	test_server_stop(&s);
}

int main(void)
{
	static const char *const addrs[] = {SRV_IP, NET_IP, LAN_IP, NULL};
	have_ns = test_own_netns(addrs);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rules),
	    cmocka_unit_test(test_media_evidence),
	    cmocka_unit_test(test_alg_stun_nat_direct_through_registrar),
	    cmocka_unit_test(test_alg_call_relayed_with_evidence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
