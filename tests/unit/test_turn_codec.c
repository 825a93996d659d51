/* TURN pieces without sockets: ChannelData framing, TURN attributes, the peer filter, nonces,
 * coturn's shared secret. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "stun/stun.h"
#include "turn/turn.h"

static struct net_addr addr(const char *s)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse(s, 1234, &a), 0);
	return a;
}

static void test_channel_data_datagram(void **state)
{
	(void)state;
	uint8_t p[16] = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
	uint16_t ch;
	const uint8_t *d;
	size_t dl;
	assert_true(stun_is_channel_data(p, 9));
	assert_int_equal(stun_chan_decode(p, 9, &ch, &d, &dl), 0); /* unpadded: fine on UDP */
	assert_int_equal(ch, 0x4001);
	assert_int_equal(dl, 5);
	assert_memory_equal(d, "hello", 5);
	assert_int_equal(stun_chan_decode(p, 12, &ch, &d, &dl), 0); /* padded: fine too */
	assert_int_equal(dl, 5);
	/* a length beyond the datagram is malformed, never read past */
	assert_int_equal(stun_chan_decode(p, 8, &ch, &d, &dl), EBADMSG);
	/* RFC 5766 numbers (coturn's clients pick them) frame as ChannelData */
	p[0] = 0x7c;
	assert_true(stun_is_channel_data(p, 9));
	/* STUN (00/01) and RTP-looking (0x80) first bytes are not ChannelData */
	p[0] = 0x00;
	assert_false(stun_is_channel_data(p, 9));
	p[0] = 0x80;
	assert_false(stun_is_channel_data(p, 9));
	assert_false(stun_is_channel_data(p, 3));
	uint8_t h[4];
	stun_chan_header(h, 0x4abc, 0x0102);
	assert_memory_equal(h, "\x4a\xbc\x01\x02", 4);
	assert_int_equal(stun_chan_pad(0), 0);
	assert_int_equal(stun_chan_pad(5), 3);
	assert_int_equal(stun_chan_pad(6), 2);
	assert_int_equal(stun_chan_pad(8), 0);
}

static void test_frame_turn_stream(void **state)
{
	(void)state;
	/* a ChannelData frame of 5 bytes (padded to 8), then a STUN message */
	uint8_t s[64];
	memset(s, 0, sizeof s);
	memcpy(s, "\x40\x00\x00\x05hello\0\0\0", 12);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_REFRESH, STUN_CLASS_REQUEST, NULL);
	stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
	assert_int_equal(stun_enc_end(&e), 0);
	memcpy(s + 12, b.data, b.len);
	size_t ml;
	for (size_t l = 0; l < 12; l++) /* every cut before the padding's end: more */
		assert_int_equal(stun_frame_turn((char *)s, l, 1000, &ml), ENODATA);
	assert_int_equal(stun_frame_turn((char *)s, 12 + b.len, 1000, &ml), 0);
	assert_int_equal(ml, 12); /* RFC 8656 12.5: the padding belongs to the frame */
	assert_int_equal(stun_frame_turn((char *)s + 12, b.len, 1000, &ml), 0);
	assert_int_equal(ml, b.len);
	assert_int_equal(stun_frame_turn((char *)s + 12, b.len - 1, 1000, &ml), ENODATA);
	/* larger than the caller's bound, and a first byte neither STUN nor channel */
	s[2] = 0xff;
	assert_int_equal(stun_frame_turn((char *)s, 12, 1000, &ml), EBADMSG);
	s[0] = 0x80;
	assert_int_equal(stun_frame_turn((char *)s, 12, 1000, &ml), EBADMSG);
	buf_free(&b);
}

static void test_turn_attrs(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST, NULL);
	stun_enc_channel(&e, 0x4123);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	stun_enc_even_port(&e, true);
	stun_enc_address_error(&e, STUN_FAMILY_IPV6, 440);
	assert_int_equal(stun_enc_end(&e), 0);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b.data, b.len), 0);
	uint16_t ch;
	uint8_t proto, fam;
	bool r;
	assert_int_equal(stun_attr_channel(stun_msg_attr(&m, STUN_ATTR_CHANNEL_NUMBER), &ch), 0);
	assert_int_equal(ch, 0x4123);
	assert_int_equal(
	    stun_attr_transport(stun_msg_attr(&m, STUN_ATTR_REQUESTED_TRANSPORT), &proto), 0);
	assert_int_equal(proto, 17);
	assert_int_equal(
	    stun_attr_family(stun_msg_attr(&m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY), &fam), 0);
	assert_int_equal(fam, STUN_FAMILY_IPV6);
	const struct stun_attr *ev = stun_msg_attr(&m, STUN_ATTR_EVEN_PORT);
	assert_int_equal(ev->len, 1);
	assert_int_equal(stun_attr_even_port(ev, &r), 0);
	assert_true(r);
	const struct stun_attr *ae = stun_msg_attr(&m, STUN_ATTR_ADDRESS_ERROR_CODE);
	assert_memory_equal(ae->v, "\x02\x00\x04\x28", 4);
	/* a family that is neither IPv4 nor IPv6 is malformed */
	struct stun_attr bad = {STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 4,
				(const uint8_t *)"\x03\0\0\0", 0};
	assert_int_equal(stun_attr_family(&bad, &fam), EBADMSG);
	assert_string_equal(stun_attr_name(STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY),
			    "ADDITIONAL-ADDRESS-FAMILY");
	buf_free(&b);
}

static enum turn_peer_verdict chk(const struct turn_filter *f, const char *s)
{
	struct net_addr a = addr(s);
	return turn_peer_check(f, &a);
}

/* The SSRF guard: every way of writing a denied address is denied. */
static void test_peer_filter_defaults(void **state)
{
	(void)state;
	struct turn_filter f;
	memset(&f, 0, sizeof f);
	static const char *denied[] = {
	    "127.0.0.1",
	    "127.1.2.3",
	    "0.0.0.0",
	    "0.1.2.3",
	    "10.0.0.1",
	    "172.16.5.5",
	    "172.31.255.255",
	    "192.168.1.1",
	    "100.64.0.1",
	    "100.127.255.254",
	    "169.254.169.254",
	    "224.0.0.1",
	    "239.255.255.250",
	    "255.255.255.255",
	    "240.0.0.1",
	    "192.0.0.8",
	    "[::1]",
	    "[::]",
	    "[::ffff:127.0.0.1]",
	    "[::ffff:10.1.2.3]",
	    "[::ffff:169.254.169.254]",
	    "[::127.0.0.1]",
	    "[64:ff9b::7f00:1]",
	    "[64:ff9b::a9fe:a9fe]",
	    "[2002:7f00:1::1]",
	    "[2002:c0a8:101::]",
	    "[fe80::1]",
	    "[fc00::1]",
	    "[fd12:3456::1]",
	    "[ff02::1]",
	    "[fec0::1]",
	    "[64:ff9b:1::1]",
	    "[2001:0:4136:e378::1]",
	    "[100::1]",
	};
	for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
		if (chk(&f, denied[i]) != TURN_PEER_DENIED_CLASS)
			fail_msg("%s was not denied", denied[i]);
	}
	static const char *allowed[] = {
	    "198.18.0.5",	   "8.8.8.8",
	    "100.63.255.255",	   "100.128.0.1",
	    "172.32.0.1",	   "[2a00:1450:4001::1]",
	    "[::ffff:198.18.0.5]", "[64:ff9b::808:808]",
	};
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
		if (chk(&f, allowed[i]) != TURN_PEER_OK)
			fail_msg("%s was denied", allowed[i]);
	}
	/* the embedded IPv4 address comes out with the port */
	struct net_addr v4, m = addr("[::ffff:10.9.8.7]:555");
	assert_true(turn_peer_embedded_v4(&m, &v4));
	assert_int_equal(net_addr_family(&v4), AF_INET);
	assert_int_equal(net_addr_port(&v4), 555);
	struct net_addr plain = addr("[2a00:1450:4001::1]");
	assert_false(turn_peer_embedded_v4(&plain, &v4));
}

static void test_peer_filter_lists(void **state)
{
	(void)state;
	struct turn_filter f;
	memset(&f, 0, sizeof f);
	assert_int_equal(
	    net_cidr_list_parse("10.1.0.0/16, 127.0.0.1", f.allow, TURN_PEERS_MAX, &f.nallow), 0);
	assert_int_equal(
	    net_cidr_list_parse("203.0.113.0/24, 2a00::/16", f.deny, TURN_PEERS_MAX, &f.ndeny), 0);
	f.own[f.nown++] = addr("198.18.0.2");
	assert_int_equal(chk(&f, "10.1.2.3"), TURN_PEER_OK);
	assert_int_equal(chk(&f, "[::ffff:10.1.2.3]"), TURN_PEER_OK);
	assert_int_equal(chk(&f, "10.2.0.1"), TURN_PEER_DENIED_CLASS);
	assert_int_equal(chk(&f, "127.0.0.1"), TURN_PEER_OK);
	assert_int_equal(chk(&f, "127.0.0.2"), TURN_PEER_DENIED_CLASS);
	assert_int_equal(chk(&f, "203.0.113.9"), TURN_PEER_DENIED_LIST);
	assert_int_equal(chk(&f, "[::ffff:203.0.113.9]"), TURN_PEER_DENIED_LIST);
	assert_int_equal(chk(&f, "[64:ff9b::cb00:7109]"), TURN_PEER_DENIED_LIST);
	assert_int_equal(chk(&f, "[2a00:1450::1]"), TURN_PEER_DENIED_LIST);
	/* the server's own (public) address, however written */
	assert_int_equal(chk(&f, "198.18.0.2"), TURN_PEER_DENIED_SELF);
	assert_int_equal(chk(&f, "[::ffff:198.18.0.2]"), TURN_PEER_DENIED_SELF);
	assert_int_equal(chk(&f, "[2002:c612:2::]"), TURN_PEER_DENIED_SELF);
	assert_int_equal(chk(&f, "198.18.0.3"), TURN_PEER_OK);
	/* and the host's own addresses as the kernel knows them */
	struct turn_filter h;
	memset(&h, 0, sizeof h);
	assert_int_equal(net_cidr_list_parse("127.0.0.0/8", h.allow, TURN_PEERS_MAX, &h.nallow), 0);
	assert_int_equal(net_hostaddrs_alloc(&h.host), 0);
	struct net_addr src;
	if (net_default_source(AF_INET, &src) == 0 && !net_addr_is_loopback(&src)) {
		char ip[NET_ADDR_STRLEN];
		net_addr_ip_fmt(&src, ip, sizeof ip);
		if (net_addr_is_private(&src))
			assert_int_equal(chk(&h, ip), TURN_PEER_DENIED_CLASS);
		else
			assert_int_equal(chk(&h, ip), TURN_PEER_DENIED_SELF);
	}
	net_hostaddrs_free(h.host);
}

/* coturn's documented recipe (turnserver.conf, use-auth-secret):
 *   echo -n "$username" | openssl dgst -binary -sha1 -hmac "$secret" | openssl base64
 * The expected values were printed by that command line, not by this code. */
static void test_shared_secret_coturn_formula(void **state)
{
	(void)state;
	char pw[29];
	assert_int_equal(
	    turn_secret_password(SLICE_LIT("s3cret"), SLICE_LIT("1700000000:carol"), pw), 0);
	assert_string_equal(pw, "lltCUDCxI+lapGw0T415Da+cOkQ=");
	assert_int_equal(turn_secret_password(SLICE_LIT("north"), SLICE_LIT("1893456000"), pw), 0);
	assert_string_equal(pw, "sqdTDrNuKKg7b57nGt21S56Eu5s=");
	int64_t exp;
	assert_int_equal(turn_secret_expiry(SLICE_LIT("1700000000:carol"), &exp), 0);
	assert_int_equal(exp, 1700000000);
	assert_int_equal(turn_secret_expiry(SLICE_LIT("1893456000"), &exp), 0);
	assert_int_equal(exp, 1893456000);
	assert_int_equal(turn_secret_expiry(SLICE_LIT("carol"), &exp), EINVAL);
	assert_int_equal(turn_secret_expiry(SLICE_LIT(":carol"), &exp), EINVAL);
	assert_int_equal(turn_secret_expiry(SLICE_LIT("17x0:carol"), &exp), EINVAL);
	assert_int_equal(turn_secret_expiry(SLICE_LIT("99999999999999:c"), &exp), EINVAL);
}

static void test_nonce(void **state)
{
	(void)state;
	uint8_t key[32], key2[32];
	memset(key, 7, sizeof key);
	memset(key2, 8, sizeof key2);
	struct net_addr src = addr("198.18.0.10:4000"), port2 = addr("198.18.0.10:5000"),
			other = addr("198.18.0.11:4000"), v6 = addr("[2001:db8:1:2::1]:1"),
			v6same64 = addr("[2001:db8:1:2::99]:2"),
			v6other = addr("[2001:db8:1:3::1]:1");
	char n[TURN_NONCE_LEN + 1];
	turn_nonce_make(key, "turn.test", &src, 1000, n);
	assert_int_equal(strlen(n), TURN_NONCE_LEN);
	assert_memory_equal(n, "obMatJos2", 9); /* RFC 8489 9.2: the nonce cookie */
	struct slice s = slice_cstr(n);
	assert_int_equal(turn_nonce_check(key, "turn.test", &src, s, 1000, 600), 0);
	assert_int_equal(turn_nonce_check(key, "turn.test", &port2, s, 1100, 600), 0);
	assert_int_equal(turn_nonce_check(key, "turn.test", &src, s, 1601, 600), ETIMEDOUT);
	assert_int_equal(turn_nonce_check(key, "turn.test", &other, s, 1000, 600), EPERM);
	assert_int_equal(turn_nonce_check(key, "other.test", &src, s, 1000, 600), EPERM);
	assert_int_equal(turn_nonce_check(key2, "turn.test", &src, s, 1000, 600), EPERM);
	assert_int_equal(turn_nonce_check(key, "turn.test", &src, s, 900, 600), EPERM); /* future */
	n[20] = n[20] == 'A' ? 'B' : 'A';
	assert_int_equal(turn_nonce_check(key, "turn.test", &src, s, 1000, 600), EPERM);
	assert_int_equal(
	    turn_nonce_check(key, "turn.test", &src, SLICE_LIT("obMatJos2AAAD"), 1000, 600), EPERM);
	turn_nonce_make(key, "turn.test", &v6, 1000, n);
	assert_int_equal(turn_nonce_check(key, "turn.test", &v6same64, s, 1000, 600), 0);
	assert_int_equal(turn_nonce_check(key, "turn.test", &v6other, s, 1000, 600), EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_channel_data_datagram),
	    cmocka_unit_test(test_frame_turn_stream),
	    cmocka_unit_test(test_turn_attrs),
	    cmocka_unit_test(test_peer_filter_defaults),
	    cmocka_unit_test(test_peer_filter_lists),
	    cmocka_unit_test(test_shared_secret_coturn_formula),
	    cmocka_unit_test(test_nonce),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
