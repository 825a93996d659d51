/* The relay decision table ([relay] media, direct_networks, webrtc), written as the attacks on the
 * old content-based default. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy_int.h"
#include "relay/relay.h"
#include "sdp/sdp.h"

/* The default config plus text, read as pinhole serve reads it. */
static struct conf *conf_with(const char *text)
{
	static const struct conf_key *const tables[] = {proxy_conf_keys, relay_conf_keys, NULL};
	struct conf *c;
	char err[256];
	assert_int_equal(conf_alloc(&c, tables), 0);
	assert_int_equal(conf_load_string(c, "t.ini", text, err, sizeof err), 0);
	return c;
}

static struct net_cidr trusted[2];
static size_t n_trusted;

static void policy(struct proxy_media_policy *pol, const char *text)
{
	struct conf *c = conf_with(text);
	assert_int_equal(
	    net_cidr_list_parse(conf_str(c, "proxy", "trusted"), trusted, 2, &n_trusted), 0);
	assert_int_equal(proxy_media_policy_init(pol, c, trusted, n_trusted), 0);
	conf_free(c);
}

static struct net_addr addr(const char *ip, uint16_t port)
{
	struct net_addr a;
	assert_int_equal(net_addr_from_host(slice_cstr(ip), port, &a), 0);
	return a;
}

struct call {
	char raw[4096];
	struct sip_msg m;
	struct sdp sdp;
	struct proxy_media_party caller, callee;
};

/* An INVITE from src_ip:src_port whose Via, Contact and c= say host:port
 * (a phone's own private address, or what an ALG rewrote them to), to a
 * registered callee whose REGISTER came from callee_ip; extra_sdp goes at
 * the end of the SDP. */
static void call_setup(struct call *c, const struct proxy_media_policy *pol, const char *src_ip,
		       uint16_t src_port, const char *host, uint16_t port, const char *callee_ip,
		       bool callee_claims_nat, const char *extra_sdp)
{
	char sdp[1024];
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\n%s",
		 host, host, port + 2, extra_sdp);
	int n =
	    snprintf(c->raw, sizeof c->raw,
		     "INVITE sip:bob@sip.example.org SIP/2.0\r\n"
		     "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bKdecide;rport\r\n"
		     "Max-Forwards: 70\r\n"
		     "From: <sip:alice@sip.example.org>;tag=a\r\nTo: <sip:bob@sip.example.org>\r\n"
		     "Call-ID: decide\r\nCSeq: 1 INVITE\r\n"
		     "Contact: <sip:alice@%s:%u>\r\nContent-Type: application/sdp\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     host, port, host, port, strlen(sdp), sdp);
	assert_int_equal(sip_msg_parse(&c->m, c->raw, (size_t)n, false, NULL), 0);
	assert_int_equal(sdp_parse(&c->sdp, c->m.body), 0);
	struct flow f = {.tp = NET_UDP, .remote = addr(src_ip, src_port)};
	proxy_media_caller(pol, &c->m, &f, &c->caller);
	memset(&c->callee, 0, sizeof c->callee);
	c->callee.src = addr(callee_ip, 5060);
	c->callee.claims_nat = callee_claims_nat;
	c->callee.direct = proxy_media_direct(pol, &c->callee.src);
}

static enum proxy_media_why decide(const struct proxy_media_policy *pol, struct call *c)
{
	return proxy_media_decide(pol, &c->sdp, &c->caller, &c->callee, 1);
}

/* The failure: a phone behind a symmetric NAT whose router's SIP
 * ALG rewrote Via, Contact and c= to the NAT's public address and port, so
 * the message matches its packet's source exactly. Every content test says
 * "public"; the announced media port is not the one the NAT uses. It must
 * be relayed by default. */
static void test_alg_rewritten_nated_phone_is_relayed(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	policy(&pol, "");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   "");
	assert_false(c.caller.claims_nat); /* the ALG did its job: nothing says NAT */
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
	assert_true(proxy_why_relays(decide(&pol, &c)));
	/* the old default, auto, believed it: no relay, no audio */
	policy(&pol, "[relay]\nmedia = auto\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_DIRECT);
	assert_false(proxy_why_relays(decide(&pol, &c)));
}

/* The same with a STUN-using phone: it writes its mapped address (the NAT's
 * public one) into Via, Contact and SDP, but the mapping it learnt from the
 * STUN server is not the one a symmetric NAT gives its SIP or RTP flow. */
static void test_stun_announced_phone_is_relayed(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	policy(&pol, "");
	/* STUN said :50001, the SIP flow's mapping is :50007 */
	call_setup(&c, &pol, "198.51.100.7", 50007, "198.51.100.7", 50001, "203.0.113.9", false,
		   "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
}

/* The callee is the NATed one and the caller a public trunk: the call is
 * relayed for the callee, whatever its binding's NAT flag says. */
static void test_nated_callee_relayed_whatever_its_flag(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	policy(&pol, "[proxy]\ntrusted = 192.0.2.10\n");
	call_setup(&c, &pol, "192.0.2.10", 5060, "192.0.2.10", 5060, "198.51.100.20", false, "");
	assert_true(c.caller.direct);
	assert_false(c.callee.direct);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
}

/* Only where packets come from makes a party direct: a message claiming a
 * direct network's address from elsewhere is still NAT-facing, and parties
 * whose packets come from direct networks or trusted peers are not relayed
 * even when their messages carry private addresses (an operator's LAN). */
static void test_direct_only_by_source(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	policy(&pol, "[relay]\ndirect_networks = 10.20.0.0/16, 203.0.113.0/24\n");
	/* claims 10.20.1.5 (direct), sends from the internet */
	call_setup(&c, &pol, "198.51.100.7", 40112, "10.20.1.5", 5060, "203.0.113.9", false, "");
	assert_false(c.caller.direct);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
	/* the LAN desk phone to a gateway in the direct networks */
	call_setup(&c, &pol, "10.20.1.5", 5060, "10.20.1.5", 5060, "203.0.113.9", false, "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_DIRECT);
	/* auto would relay the same call for its private c= */
	policy(&pol, "[relay]\nmedia = auto\ndirect_networks = 10.20.0.0/16, 203.0.113.0/24\n");
	call_setup(&c, &pol, "10.20.1.5", 5060, "10.20.1.5", 5060, "203.0.113.9", false, "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_CLAIMS_NAT);
}

/* A request through a trusted proxy (an edge of ours): the party is whoever
 * sent to that proxy, as its Via below says; one Via is the trusted peer
 * itself. */
static void test_through_trusted_proxy(void **state)
{
	(void)state;
	struct proxy_media_policy pol;
	policy(&pol, "[proxy]\ntrusted = 192.0.2.10\n[relay]\ndirect_networks = 10.20.0.0/16\n");
	static const char *const tpl =
	    "INVITE sip:bob@sip.example.org SIP/2.0\r\n"
	    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKedge\r\n"
	    "Via: SIP/2.0/UDP %s:5060;received=%s;branch=z9hG4bKphone;rport=40112\r\n"
	    "Max-Forwards: 69\r\nFrom: <sip:alice@sip.example.org>;tag=a\r\n"
	    "To: <sip:bob@sip.example.org>\r\nCall-ID: t\r\nCSeq: 1 INVITE\r\n"
	    "Content-Length: 0\r\n\r\n";
	char raw[1024];
	struct sip_msg m;
	struct proxy_media_party p;
	struct flow edge = {.tp = NET_UDP, .remote = addr("192.0.2.10", 5060)};
	int n = snprintf(raw, sizeof raw, tpl, "198.51.100.7", "198.51.100.7");
	assert_int_equal(sip_msg_parse(&m, raw, (size_t)n, false, NULL), 0);
	proxy_media_caller(&pol, &m, &edge, &p);
	assert_false(p.direct); /* a phone on the internet behind our edge */
	n = snprintf(raw, sizeof raw, tpl, "10.20.1.5", "10.20.1.5");
	assert_int_equal(sip_msg_parse(&m, raw, (size_t)n, false, NULL), 0);
	proxy_media_caller(&pol, &m, &edge, &p);
	assert_true(p.direct); /* a LAN phone behind it */
}

/* WebRTC (ICE + DTLS fingerprint) passes untouched by default: the relay
 * would strip ICE and drop DTLS. ICE alone (a SIP phone with ICE) does not
 * exempt a call; webrtc = relay relays it. */
static void test_webrtc_passes(void **state)
{
	(void)state;
	static struct call c;
	static const char webrtc[] = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
				     "a=fingerprint:sha-256 AB:CD\r\n";
	struct proxy_media_policy pol;
	policy(&pol, "");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   webrtc);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_WEBRTC);
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
	policy(&pol, "[relay]\nwebrtc = relay\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   webrtc);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
}

static void test_always_never_and_family(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	policy(&pol, "[relay]\nmedia = never\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "192.168.1.2", 5060, "203.0.113.9", true, "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NEVER);
	policy(&pol, "[relay]\nmedia = always\ndirect_networks = 0.0.0.0/0\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_ALWAYS);
	/* both direct, but IPv4 to IPv6: only the relay joins them */
	policy(&pol, "[relay]\ndirect_networks = 0.0.0.0/0, ::/0\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "2001:db8::9", false,
		   "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_FAMILY);
	/* the echo service on this host is direct */
	policy(&pol, "[relay]\ndirect_networks = 198.51.100.0/24\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 40112, "203.0.113.9", false,
		   "");
	c.callee.local = true;
	assert_int_equal(decide(&pol, &c), PROXY_WHY_DIRECT);
}

static void test_bad_direct_networks_refused(void **state)
{
	(void)state;
	struct conf *c = conf_with("[relay]\ndirect_networks = 10.0.0.0/8, nonsense\n");
	struct proxy_media_policy pol;
	assert_int_equal(proxy_media_policy_init(&pol, c, NULL, 0), EINVAL);
	conf_free(c);
}

/* [proxy] ice = candidate: a NAT-facing call whose offer has ICE is engaged
 * as a candidate ("ice-candidate": the parties' checks decide), one without
 * ICE is relayed as before; WebRTC under webrtc = pass, and calls between
 * direct parties, are not engaged at all; ice = remove changes nothing. */
static void test_ice_candidate(void **state)
{
	(void)state;
	static struct call c;
	struct proxy_media_policy pol;
	const char *ice = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
			  "a=candidate:1 1 UDP 2130706431 100.64.1.2 4000 typ host\r\n";
	policy(&pol, "[proxy]\nice = candidate\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "100.64.1.2", 5060, "203.0.113.9", false, ice);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_ICE);
	assert_true(proxy_why_relays(PROXY_WHY_ICE));
	assert_string_equal(proxy_why_name(PROXY_WHY_ICE), "ice-candidate");
	call_setup(&c, &pol, "198.51.100.7", 40112, "100.64.1.2", 5060, "203.0.113.9", false, "");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 5060, "203.0.113.9", false,
		   "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=fingerprint:sha-256 AB\r\n");
	assert_int_equal(decide(&pol, &c), PROXY_WHY_WEBRTC);
	policy(&pol, "[proxy]\nice = candidate\n[relay]\ndirect_networks = 198.51.100.0/24, "
		     "203.0.113.0/24\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "198.51.100.7", 5060, "203.0.113.9", false, ice);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_DIRECT);
	policy(&pol, "[proxy]\nice = candidate\n[relay]\nmedia = always\n");
	call_setup(&c, &pol, "198.51.100.7", 40112, "100.64.1.2", 5060, "203.0.113.9", false, ice);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_ALWAYS);
	policy(&pol, "");
	call_setup(&c, &pol, "198.51.100.7", 40112, "100.64.1.2", 5060, "203.0.113.9", false, ice);
	assert_int_equal(decide(&pol, &c), PROXY_WHY_NAT_FACING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alg_rewritten_nated_phone_is_relayed),
	    cmocka_unit_test(test_stun_announced_phone_is_relayed),
	    cmocka_unit_test(test_nated_callee_relayed_whatever_its_flag),
	    cmocka_unit_test(test_direct_only_by_source),
	    cmocka_unit_test(test_through_trusted_proxy),
	    cmocka_unit_test(test_webrtc_passes),
	    cmocka_unit_test(test_always_never_and_family),
	    cmocka_unit_test(test_bad_direct_networks_refused),
	    cmocka_unit_test(test_ice_candidate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
