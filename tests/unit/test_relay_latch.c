/* Unit tests of the relay's latching state machine alone: RTP Bleed, spoofing, re-latching. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "relay/relay.h"

static struct net_addr A(const char *s) {
	struct net_addr a;
	assert_int_equal(net_addr_parse(s, 0, &a), 0);
	return a;
}

static const struct relay_latch_conf strict = {RELAY_LATCH_STRICT, 2000};
static const struct relay_latch_conf loose = {RELAY_LATCH_LOOSE, 2000};

/* A phone behind NAT: SDP says 100.64.1.10:7078, SIP came from 198.18.0.5. */
static void phone(struct relay_latch *l)
{
	struct net_addr guess = A("100.64.1.10:7078"), sig = A("198.18.0.5:5060"),
			sdp = A("100.64.1.10");
	relay_latch_init(l, &guess, &sig, &sdp);
}

static void test_first_valid_packet_latches(void **state)
{
	(void)state;
	struct relay_latch l;
	phone(&l);
	const struct net_addr *d;
	assert_true(relay_latch_dest(&l, &d)); /* the SDP guess, before any packet */
	assert_true(net_addr_eq(d, &l.guess));
	struct net_addr nat = A("198.18.0.5:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &nat)); /* the NAT's port, learnt */
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1020), RELAY_LATCH_PASS);
	assert_int_equal(l.last_ms, 1020);
	/* the SDP's own IP may latch too (a phone with a public address) */
	struct relay_latch l2;
	phone(&l2);
	struct net_addr lan = A("100.64.1.10:7078");
	assert_int_equal(relay_latch_packet(&l2, &strict, &lan, 1, 0), RELAY_LATCH_NEW);
}

static void test_bleed_before_latching(void **state)
{
	(void)state;
	struct relay_latch l;
	phone(&l);
	/* RTP Bleed: a third host races the phone to the fresh port */
	struct net_addr evil = A("198.18.0.66:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &evil, 0x1111, 1000), RELAY_LATCH_DROP);
	assert_false(l.latched);
	const struct net_addr *d;
	assert_true(relay_latch_dest(&l, &d));
	assert_false(net_addr_ip_eq(d, &evil)); /* nothing goes to it */
	/* the real phone still latches afterwards */
	struct net_addr nat = A("198.18.0.5:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1010), RELAY_LATCH_NEW);
	/* loose mode lets anyone in first, by design */
	struct relay_latch l2;
	phone(&l2);
	assert_int_equal(relay_latch_packet(&l2, &loose, &evil, 1, 0), RELAY_LATCH_NEW);
}

static void test_spoof_after_latching(void **state)
{
	(void)state;
	struct relay_latch l;
	phone(&l);
	struct net_addr nat = A("198.18.0.5:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	/* another host, and even another port of the phone's NAT IP, while live */
	struct net_addr evil = A("198.18.0.66:40001"), other_port = A("198.18.0.5:40003");
	assert_int_equal(relay_latch_packet(&l, &strict, &evil, 0x1111, 1020), RELAY_LATCH_DROP);
	assert_int_equal(relay_latch_packet(&l, &strict, &other_port, 0x1111, 1040),
			 RELAY_LATCH_DROP);
	const struct net_addr *d;
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &nat));
	/* loose mode does not let a live stream be taken either */
	struct relay_latch l2;
	phone(&l2);
	assert_int_equal(relay_latch_packet(&l2, &loose, &nat, 1, 0), RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l2, &loose, &evil, 1, 100), RELAY_LATCH_DROP);
}

static void test_relatch_after_silence(void **state)
{
	(void)state;
	struct relay_latch l;
	phone(&l);
	struct net_addr nat = A("198.18.0.5:40001"), rebound = A("198.18.0.5:40777");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	/* the NAT binding changed: too early, the old source spoke 1 s ago */
	assert_int_equal(relay_latch_packet(&l, &strict, &rebound, 0x1111, 2000), RELAY_LATCH_DROP);
	/* 2 s of silence, same SSRC: moves */
	assert_int_equal(relay_latch_packet(&l, &strict, &rebound, 0x1111, 3000),
			 RELAY_LATCH_MOVED);
	const struct net_addr *d;
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &rebound));
	assert_int_equal(l.relatches, 1);
	/* rate limit: the old one cannot flip it back at once */
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 3100), RELAY_LATCH_DROP);
}

static void test_no_relatch_other_ssrc(void **state)
{
	(void)state;
	struct relay_latch l;
	phone(&l);
	struct net_addr nat = A("198.18.0.5:40001"), other = A("198.18.0.5:40777"),
			evil = A("198.18.0.66:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	/* silent long enough, but another stream: an injector behind the same NAT */
	assert_int_equal(relay_latch_packet(&l, &strict, &other, 0x2222, 10000), RELAY_LATCH_DROP);
	/* same SSRC from a host that may not latch at all */
	assert_int_equal(relay_latch_packet(&l, &strict, &evil, 0x1111, 10000), RELAY_LATCH_DROP);
	assert_true(l.latched);
	/* loose: after silence a new SSRC from anywhere takes over (carriers) */
	struct relay_latch l2;
	phone(&l2);
	assert_int_equal(relay_latch_packet(&l2, &loose, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l2, &loose, &evil, 0x2222, 3000), RELAY_LATCH_MOVED);
}

static void test_guess_and_update(void **state)
{
	(void)state;
	struct relay_latch l;
	/* hold (c=0.0.0.0) and no address at all give no target */
	struct net_addr hold = A("0.0.0.0:7078");
	relay_latch_init(&l, &hold, NULL, NULL);
	const struct net_addr *d;
	assert_false(relay_latch_dest(&l, &d));
	relay_latch_init(&l, NULL, NULL, NULL);
	assert_false(relay_latch_dest(&l, &d));
	/* no allowed IP: nothing latches in strict mode */
	struct net_addr any = A("198.18.0.5:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &any, 1, 0), RELAY_LATCH_DROP);
	/* a re-offer from elsewhere drops a latch its IPs no longer allow */
	phone(&l);
	struct net_addr nat = A("198.18.0.5:40001");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 1, 0), RELAY_LATCH_NEW);
	struct net_addr g2 = A("198.18.0.9:9000"), sig2 = A("198.18.0.9");
	relay_latch_update(&l, &strict, &g2, &sig2, NULL);
	assert_false(l.latched);
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &g2));
	/* ...and keeps one they still allow */
	phone(&l);
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 1, 0), RELAY_LATCH_NEW);
	struct net_addr sig = A("198.18.0.5");
	relay_latch_update(&l, &strict, &g2, &sig, NULL);
	assert_true(l.latched);
}

/* A phone behind a NAT with a SIP ALG: its SDP names the NAT's public
 * address and the port the ALG holds for it, 198.18.0.5:40000. */
static void alg_phone(struct relay_latch *l)
{
	struct net_addr guess = A("198.18.0.5:40000"), sig = A("198.18.0.5:5060"),
			sdp = A("198.18.0.5");
	relay_latch_init(l, &guess, &sig, &sdp);
}

/* The phone's first packet and the relay's first packet toward 40000 crossed
 * in the ALG'd NAT: the first left through a mapping of its own (51234), the
 * rest through the announced port. The relay follows at once (it used to drop
 * them for relatch ms: ~2 s of lost audio at the start of the call). */
static void test_crossing_moves_to_announced(void **state)
{
	(void)state;
	struct relay_latch l;
	alg_phone(&l);
	struct net_addr first = A("198.18.0.5:51234"), announced = A("198.18.0.5:40000");
	assert_int_equal(relay_latch_packet(&l, &strict, &first, 0x1111, 1000), RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 1020),
			 RELAY_LATCH_MOVED);
	const struct net_addr *d;
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &announced));
	assert_int_equal(l.relatches, 1);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 1040),
			 RELAY_LATCH_PASS);
	/* the transient mapping cannot take it back while the stream is live */
	assert_int_equal(relay_latch_packet(&l, &strict, &first, 0x1111, 1060), RELAY_LATCH_DROP);
	/* loose mode follows the same way */
	struct relay_latch l2;
	alg_phone(&l2);
	assert_int_equal(relay_latch_packet(&l2, &loose, &first, 0x1111, 0), RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l2, &loose, &announced, 0x1111, 20),
			 RELAY_LATCH_MOVED);
}

/* The early move as an attack: who may use it, and when. */
static void test_crossing_rule_attacks(void **state)
{
	(void)state;
	struct relay_latch l;
	struct net_addr phone_src = A("198.18.0.5:51234"), announced = A("198.18.0.5:40000"),
			other_port = A("198.18.0.5:40002"), evil = A("198.18.0.66:40000");
	const struct net_addr *d;
	/* an injector on the announced address with its own stream */
	alg_phone(&l);
	assert_int_equal(relay_latch_packet(&l, &strict, &phone_src, 0x1111, 1000),
			 RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x2222, 1010),
			 RELAY_LATCH_DROP);
	struct relay_latch l2;
	alg_phone(&l2);
	assert_int_equal(relay_latch_packet(&l2, &loose, &phone_src, 0x1111, 1000),
			 RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l2, &loose, &announced, 0x2222, 1010),
			 RELAY_LATCH_DROP);
	/* the right SSRC from another port of that IP, or from another host on
	 * the announced port: not the announced address */
	assert_int_equal(relay_latch_packet(&l, &strict, &other_port, 0x1111, 1020),
			 RELAY_LATCH_DROP);
	assert_int_equal(relay_latch_packet(&l, &strict, &evil, 0x1111, 1030), RELAY_LATCH_DROP);
	assert_int_equal(relay_latch_packet(&l2, &loose, &evil, 0x1111, 1030), RELAY_LATCH_DROP);
	assert_true(relay_latch_dest(&l, &d));
	assert_true(net_addr_eq(d, &phone_src));
	/* after the first relatch ms of a live stream: the ordinary rule */
	alg_phone(&l);
	assert_int_equal(relay_latch_packet(&l, &strict, &phone_src, 0x1111, 1000),
			 RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &phone_src, 0x1111, 2990),
			 RELAY_LATCH_PASS);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 3000),
			 RELAY_LATCH_DROP);
	assert_int_equal(l.relatches, 0);
	/* once only: moved to the announced address, then a NAT rebinding (2 s of
	 * silence), and the early move does not come back to flip it */
	alg_phone(&l);
	struct net_addr rebound = A("198.18.0.5:47000");
	assert_int_equal(relay_latch_packet(&l, &strict, &phone_src, 0x1111, 1000),
			 RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 1020),
			 RELAY_LATCH_MOVED);
	assert_int_equal(relay_latch_packet(&l, &strict, &rebound, 0x1111, 1100), RELAY_LATCH_DROP);
	assert_int_equal(relay_latch_packet(&l, &strict, &rebound, 0x1111, 3100),
			 RELAY_LATCH_MOVED);
	/* a re-offer keeps the latch: the announced address may not take it now */
	relay_latch_update(&l, &strict, &announced, &announced, NULL);
	assert_true(l.latched);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 3120),
			 RELAY_LATCH_DROP);
	/* a private SDP address (no ALG) is never a source to move to: another IP */
	phone(&l);
	struct net_addr nat = A("198.18.0.5:40001"), lan = A("100.64.1.10:7078");
	assert_int_equal(relay_latch_packet(&l, &strict, &nat, 0x1111, 1000), RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &lan, 0x1111, 1010), RELAY_LATCH_DROP);
	/* hold (c=0.0.0.0): no announced address to move to */
	struct net_addr hold = A("0.0.0.0:40000"), sig = A("198.18.0.5:5060"),
			sdp_ip = A("198.18.0.5");
	relay_latch_init(&l, &hold, &sig, &sdp_ip);
	assert_int_equal(relay_latch_packet(&l, &strict, &phone_src, 0x1111, 1000),
			 RELAY_LATCH_NEW);
	assert_int_equal(relay_latch_packet(&l, &strict, &announced, 0x1111, 1010),
			 RELAY_LATCH_DROP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_valid_packet_latches),
	    cmocka_unit_test(test_bleed_before_latching),
	    cmocka_unit_test(test_spoof_after_latching),
	    cmocka_unit_test(test_relatch_after_silence),
	    cmocka_unit_test(test_no_relatch_other_ssrc),
	    cmocka_unit_test(test_guess_and_update),
	    cmocka_unit_test(test_crossing_moves_to_announced),
	    cmocka_unit_test(test_crossing_rule_attacks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
