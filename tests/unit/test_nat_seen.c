/* Pinhole-Seen: what reached the server, returned in base64 on accepted REGISTERs and forwarded
 * INVITE answers, never on refusals to strangers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "phone.h"

/* The decoded text of msg's Pinhole-Seen into out; false when it has none. */
static bool seen_of(const char *msg, char *out, size_t cap)
{
	const char *h = strstr(msg, "\r\nPinhole-Seen: ");
	if (!h)
		return false;
	h += strlen("\r\nPinhole-Seen: ");
	const char *e = strstr(h, "\r\n");
	assert_non_null(e);
	size_t n = 0;
	assert_int_equal(
	    base64_decode((struct slice){h, (size_t)(e - h)}, (unsigned char *)out, cap - 1, &n),
	    0);
	out[n] = '\0';
	/* exactly one: ours, in place of any a hop beyond us wrote */
	const char *again = strstr(h, "\r\nPinhole-Seen: ");
	assert_true(!again || again > strstr(msg, "\r\n\r\n"));
	return true;
}

static void test_base64_round_trip(void **state)
{
	(void)state;
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const out[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"}; /* RFC 4648 10 */
	for (size_t i = 0; i < 7; i++) {
		struct buf b;
		buf_init(&b);
		assert_int_equal(buf_append_base64(&b, in[i], strlen(in[i])), 0);
		assert_int_equal(b.len, strlen(out[i]));
		assert_memory_equal(b.data, out[i], b.len);
		unsigned char back[16];
		size_t n = 99;
		assert_int_equal(base64_decode(slice_cstr(out[i]), back, sizeof back, &n), 0);
		assert_int_equal(n, strlen(in[i]));
		assert_memory_equal(back, in[i], n);
		buf_free(&b);
	}
	unsigned char x[8];
	size_t n;
	assert_int_equal(base64_decode(slice_cstr("Zm9=v"), x, sizeof x, &n), EBADMSG);
	assert_int_equal(base64_decode(slice_cstr("Z=9v"), x, sizeof x, &n), EBADMSG);
	assert_int_equal(base64_decode(slice_cstr("Zm9vYmFy"), x, 5, &n), ENOSPC);
}

/* A NATed phone's REGISTER as an ALG leaves it: the 200 says, in a form the
 * ALG cannot touch, what arrived (here the phone's own private Contact). */
static void test_register_200_says_what_arrived(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:127.0.0.1:0\n[keepalive]\ninterval = 0\n");
	struct phone a;
	phone_open(&a, &s);
	char r[4096], seen[2048], want[512];
	phone_send(&a, "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		       "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKseen1;rport\r\n"
		       "From: <sip:alice@127.0.0.1>;tag=s1\r\nTo: <sip:alice@127.0.0.1>\r\n"
		       "Call-ID: seen-1\r\nCSeq: 1 REGISTER\r\n"
		       "Contact: <sip:alice@192.168.1.20:5060>;expires=300\r\n"
		       "Content-Length: 0\r\n\r\n");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_true(seen_of(r, seen, sizeof seen));
	snprintf(want, sizeof want,
		 "src=127.0.0.1:%u\n"
		 "via=SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKseen1;rport\n"
		 "contact=<sip:alice@192.168.1.20:5060>;expires=300",
		 a.port);
	assert_string_equal(seen, want);
	/* no address in the clear for an ALG to rewrite */
	const char *h = strstr(r, "Pinhole-Seen: ");
	assert_null(memmem(h, (size_t)(strstr(h, "\r\n") - h), "192.168", 7));
	phone_close(&a);
	test_server_stop(&s);
}

/* Bounded: a value longer than 256 bytes is left out, so a request cannot
 * make the answer grow by what it stuffs into its Via. */
static void test_long_value_left_out(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:127.0.0.1:0\n[keepalive]\ninterval = 0\n");
	struct phone a;
	phone_open(&a, &s);
	char pad[300], r[8192], seen[2048];
	memset(pad, 'x', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	phone_send(&a,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKseen2;x=%s\r\n"
		   "From: <sip:bob@127.0.0.1>;tag=s2\r\nTo: <sip:bob@127.0.0.1>\r\n"
		   "Call-ID: seen-2\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:bob@127.0.0.1:%u>\r\nExpires: 300\r\n"
		   "Content-Length: 0\r\n\r\n",
		   a.port, pad, a.port);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_true(seen_of(r, seen, sizeof seen));
	assert_non_null(strstr(seen, "src="));
	assert_null(strstr(seen, "via="));
	assert_non_null(strstr(seen, "\ncontact=<sip:bob@127.0.0.1:"));
	assert_true(strlen(seen) < 600);
	phone_close(&a);
	test_server_stop(&s);
}

static void add_user(struct test_server *s, const char *user, const char *pass)
{
	struct store_cred_entry e;
	assert_int_equal(
	    auth_ha1_all(slice_cstr(user), SLICE_LIT("127.0.0.1"), slice_cstr(pass), &e), 0);
	assert_int_equal(store_cred_set(s->creds, slice_cstr(user), SLICE_LIT("127.0.0.1"), &e), 0);
}

/* A stranger (forged source: the answer goes to a victim) gets refusals
 * exactly as before: no copy of what it sent comes back with them. */
static void test_never_on_refusals_to_strangers(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:127.0.0.1:0\n[keepalive]\ninterval = 0\n"
			      "[proxy]\nrelay = none\n");
	struct phone a, b;
	phone_open(&a, &s);
	phone_open(&b, &s);
	phone_register(&b, "carol"); /* before users exist: the LAN rule */
	add_user(&s, "carol", "secret");
	char r[4096], seen[2048];
	/* REGISTER without credentials: 401, no Pinhole-Seen */
	phone_send(&a,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKseen3\r\n"
		   "From: <sip:carol@127.0.0.1>;tag=s3\r\nTo: <sip:carol@127.0.0.1>\r\n"
		   "Call-ID: seen-3\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:carol@127.0.0.1:%u>\r\nExpires: 300\r\n"
		   "Content-Length: 0\r\n\r\n",
		   a.port, a.port);
	phone_expect(&a, "SIP/2.0 401", r, sizeof r);
	assert_false(seen_of(r, seen, sizeof seen));
	/* an anonymous caller (calls come in from the world): a provisional
	 * and a 2xx carry it, the callee's refusal does not */
	static const char sdp[] = "v=0\r\no=- 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\n"
				  "t=0 0\r\nm=audio 4002 RTP/AVP 0\r\n";
	char inv[4096];
	for (int round = 0; round < 2; round++) {
		phone_send(&a,
			   "INVITE sip:carol@127.0.0.1:%u SIP/2.0\r\n"
			   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKseeninv%d;rport\r\n"
			   "Max-Forwards: 70\r\n"
			   "From: <sip:anon@example.net>;tag=an%d\r\nTo: <sip:carol@127.0.0.1>\r\n"
			   "Call-ID: seen-inv-%d\r\nCSeq: 1 INVITE\r\n"
			   "Contact: <sip:anon@10.9.9.9:%u>\r\nContent-Type: application/sdp\r\n"
			   "Content-Length: %zu\r\n\r\n%s",
			   net_addr_port(&s.addr), a.port, round, round, round, a.port, strlen(sdp),
			   sdp);
		phone_expect(&b, "INVITE ", inv, sizeof inv);
		phone_reply(&b, inv, 180, "Ringing", "cb");
		phone_expect(&a, "SIP/2.0 180", r, sizeof r);
		assert_true(seen_of(r, seen, sizeof seen));
		assert_non_null(strstr(seen, "\nsdp-c=10.9.9.9\nsdp-m=4002"));
		assert_non_null(strstr(seen, "contact=<sip:anon@10.9.9.9:"));
		if (round == 0) {
			phone_reply(&b, inv, 486, "Busy Here", "cb");
			phone_expect(&a, "SIP/2.0 486", r, sizeof r);
			assert_false(seen_of(r, seen, sizeof seen));
		} else {
			phone_reply_sdp(&b, inv, 200, "OK", "cb", sdp);
			phone_expect(&a, "SIP/2.0 200", r, sizeof r);
			assert_true(seen_of(r, seen, sizeof seen));
		}
	}
	phone_close(&a);
	phone_close(&b);
	test_server_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64_round_trip),
	    cmocka_unit_test(test_register_200_says_what_arrived),
	    cmocka_unit_test(test_long_value_left_out),
	    cmocka_unit_test(test_never_on_refusals_to_strangers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
