/* Registrar behaviour over a real socket: RFC 3261 10.3 rules, answered by an in-process server. */
#include <errno.h>
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

struct fixture {
	struct test_server srv;
	struct phone ph; /* every REGISTER comes from this one socket */
	unsigned cseq;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof f);
	test_server_start(&f.srv, "[sip]\nlisten = udp:127.0.0.1:0\n"
				  "[registrar]\nmin_expires = 60\nmax_expires = 600\n"
				  "[keepalive]\ninterval = 0\n");
	phone_open(&f.ph, &f.srv);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	phone_close(&f->ph);
	test_server_stop(&f->srv);
	return 0;
}

/* Sends a REGISTER for user with the extra header lines; returns the status
 * and copies the response into resp. */
static int do_register(struct fixture *f, const char *user, const char *call_id, unsigned cseq,
		       const char *extra, char *resp, size_t resplen)
{
	phone_send(&f->ph,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK%s-%u-%u\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=t1\r\n"
		   "To: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\n"
		   "CSeq: %u REGISTER\r\n"
		   "Max-Forwards: 70\r\n"
		   "%s"
		   "Content-Length: 0\r\n\r\n",
		   f->ph.port, call_id, cseq, ++f->cseq, user, user, call_id, cseq, extra);
	phone_expect(&f->ph, "SIP/2.0 ", resp, resplen);
	int status = 0;
	sscanf(resp, "SIP/2.0 %d", &status);
	return status;
}

static size_t count(const char *hay, const char *needle)
{
	size_t c = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		c++;
	return c;
}

static void test_add_refresh_remove(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(do_register(f, "alice", "c-alice", 1,
				     "Contact: <sip:alice@10.0.0.1:5060>\r\nExpires: 300\r\n", r,
				     sizeof r),
			 200);
	assert_non_null(strstr(r, "Contact: <sip:alice@10.0.0.1:5060>;expires=300"));
	/* a second contact: both listed */
	assert_int_equal(do_register(f, "alice", "c-alice", 2,
				     "Contact: <sip:alice@10.0.0.2:5060>;q=0.5;expires=120\r\n", r,
				     sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 2);
	assert_non_null(strstr(r, "<sip:alice@10.0.0.2:5060>;expires=120;q=0.500"));
	/* the binding holds the real source and the NAT flag (private Contact) */
	struct store_binding b[4];
	size_t n = 0;
	assert_int_equal(registrar_lookup(f->srv.reg, "alice@127.0.0.1", b, 4, &n), 0);
	assert_int_equal(n, 2);
	struct net_addr me;
	net_sock_addr(f->ph.fd, &me);
	assert_true(net_addr_eq(&b[0].flow.remote, &me));
	assert_true(b[0].behind_nat);
	/* remove one with expires=0 */
	assert_int_equal(do_register(f, "alice", "c-alice", 3,
				     "Contact: <sip:alice@10.0.0.2:5060>;expires=0\r\n", r, sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 1);
	/* a query (no Contact) lists without changing */
	assert_int_equal(do_register(f, "alice", "c-alice", 4, "", r, sizeof r), 200);
	assert_int_equal(count(r, "Contact: "), 1);
	/* Contact: * with Expires: 0 removes all */
	assert_int_equal(do_register(f, "alice", "c-alice", 5, "Contact: *\r\nExpires: 0\r\n", r,
				     sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 0);
	assert_int_equal(registrar_lookup(f->srv.reg, "alice@127.0.0.1", b, 4, &n), 0);
	assert_int_equal(n, 0);
}

static void test_interval_too_brief_and_cap(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(do_register(f, "bob", "c-bob", 1,
				     "Contact: <sip:bob@10.0.0.3>\r\nExpires: 30\r\n", r, sizeof r),
			 423);
	assert_non_null(strstr(r, "Min-Expires: 60"));
	/* longer than max_expires is granted max_expires */
	assert_int_equal(do_register(f, "bob", "c-bob", 2,
				     "Contact: <sip:bob@10.0.0.3>\r\nExpires: 7200\r\n", r, sizeof r),
			 200);
	assert_non_null(strstr(r, ";expires=600"));
}

static void test_ordering_and_wildcard_rules(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(do_register(f, "carol", "c-carol", 10,
				     "Contact: <sip:carol@10.0.0.4>\r\nExpires: 300\r\n", r, sizeof r),
			 200);
	/* same Call-ID, not a higher CSeq: refused, binding unchanged */
	assert_int_equal(do_register(f, "carol", "c-carol", 10,
				     "Contact: <sip:carol@10.0.0.4>\r\nExpires: 0\r\n", r, sizeof r),
			 500);
	struct store_binding b[2];
	size_t n = 0;
	registrar_lookup(f->srv.reg, "carol@127.0.0.1", b, 2, &n);
	assert_int_equal(n, 1);
	/* "*" needs Expires: 0 and no other contact */
	assert_int_equal(do_register(f, "carol", "c-carol", 11, "Contact: *\r\nExpires: 300\r\n", r,
				     sizeof r),
			 400);
	assert_int_equal(do_register(f, "carol", "c-carol", 12,
				     "Contact: *, <sip:carol@10.0.0.5>\r\nExpires: 0\r\n", r, sizeof r),
			 400);
	/* an unknown Require is 420 with Unsupported */
	assert_int_equal(do_register(f, "carol", "c-carol", 13,
				     "Require: frobnicate\r\nContact: <sip:carol@10.0.0.4>\r\n", r,
				     sizeof r),
			 420);
	assert_non_null(strstr(r, "Unsupported: frobnicate"));
}

static void test_outbound_instance(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	const char *inst = "\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
	char extra[512];
	snprintf(extra, sizeof extra,
		 "Supported: outbound, path\r\n"
		 "Contact: <sip:dave@10.0.0.6:5060>;+sip.instance=%s;reg-id=1\r\nExpires: 300\r\n",
		 inst);
	assert_int_equal(do_register(f, "dave", "c-dave", 1, extra, r, sizeof r), 200);
	assert_non_null(strstr(r, "Require: outbound"));
	/* same instance and reg-id from a new Contact replaces the binding (RFC 5626 6) */
	snprintf(extra, sizeof extra,
		 "Supported: outbound\r\n"
		 "Contact: <sip:dave@10.0.0.7:5060>;+sip.instance=%s;reg-id=1\r\nExpires: 300\r\n",
		 inst);
	assert_int_equal(do_register(f, "dave", "c-dave-2", 1, extra, r, sizeof r), 200);
	assert_int_equal(count(r, "Contact: "), 1);
	assert_non_null(strstr(r, "10.0.0.7"));
	/* reg-id without an instance is malformed */
	assert_int_equal(do_register(f, "dave", "c-dave-2", 2,
				     "Contact: <sip:dave@10.0.0.8>;reg-id=2\r\n", r, sizeof r),
			 400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_refresh_remove),
		cmocka_unit_test(test_interval_too_brief_and_cap),
		cmocka_unit_test(test_ordering_and_wildcard_rules),
		cmocka_unit_test(test_outbound_instance),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
