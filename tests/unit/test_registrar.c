/* Registrar behaviour over a real socket: RFC 3261 10.3 rules, answered by an in-process server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
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

/* RFC 3261 10.3 step 7: a malformed expires parameter is ignored, so the
 * Expires header (or the default) applies; it used to grant max_expires,
 * which let a sloppy or hostile phone hold a binding for the longest time
 * the server allows. */
static void test_bad_contact_expires_ignored(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(do_register(f, "gina", "c-gina", 1,
				     "Contact: <sip:gina@10.0.0.12>;expires=soon\r\nExpires: 120\r\n",
				     r, sizeof r),
			 200);
	assert_non_null(strstr(r, "<sip:gina@10.0.0.12>;expires=120"));
	/* no header either: the default (3600, cut to max_expires = 600) */
	assert_int_equal(do_register(f, "gina", "c-gina", 2,
				     "Contact: <sip:gina@10.0.0.13>;expires=-5\r\n", r, sizeof r),
			 200);
	assert_non_null(strstr(r, "<sip:gina@10.0.0.13>;expires=600"));
	/* and a malformed one below min_expires is not refused with 423 */
	assert_int_equal(do_register(f, "gina", "c-gina", 3,
				     "Contact: <sip:gina@10.0.0.14>;expires=1x\r\nExpires: 90\r\n",
				     r, sizeof r),
			 200);
	assert_non_null(strstr(r, "<sip:gina@10.0.0.14>;expires=90"));
}

/* RFC 3261 10.3 step 7 compares Contact URIs by 19.1.4, not byte for byte:
 * a phone that resends its Contact with another case in the host, an
 * escaped user or an extra ;ob refreshes its binding, and its unregistration
 * removes it. Byte comparison left a second binding (forked to, pinged) and
 * a ghost that survived the unregistration. */
static void test_contact_uri_equivalence(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(do_register(f, "hank", "c-hank", 1,
				     "Contact: <sip:hank@Phone.Example.com:5060;transport=udp>\r\n"
				     "Expires: 300\r\n",
				     r, sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 1);
	assert_int_equal(do_register(f, "hank", "c-hank", 2,
				     "Contact: <sip:%68ank@phone.example.com:5060;TRANSPORT=UDP;ob>\r\n"
				     "Expires: 300\r\n",
				     r, sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 1);
	assert_int_equal(do_register(f, "hank", "c-hank", 3,
				     "Contact: <sip:hank@PHONE.EXAMPLE.COM:5060;transport=udp>"
				     ";expires=0\r\n",
				     r, sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 0);
	struct store_binding b[4];
	size_t n = 9;
	assert_int_equal(registrar_lookup(f->srv.reg, "hank@127.0.0.1", b, 4, &n), 0);
	assert_int_equal(n, 0);
	/* what 19.1.4 keeps apart stays apart: no port vs 5060, a transport */
	assert_int_equal(do_register(f, "hank", "c-hank", 4,
				     "Contact: <sip:hank@phone.example.com>, "
				     "<sip:hank@phone.example.com:5060>, "
				     "<sip:hank@phone.example.com:5060;transport=tcp>\r\n"
				     "Expires: 300\r\n",
				     r, sizeof r),
			 200);
	assert_int_equal(count(r, "Contact: "), 3);
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
	/* reg-id without an instance is not valid, and RFC 5626 6 has the
	 * registrar ignore it: a plain binding */
	assert_int_equal(do_register(f, "dave", "c-dave-2", 2,
				     "Supported: outbound\r\n"
				     "Contact: <sip:dave@10.0.0.8>;reg-id=2\r\n",
				     r, sizeof r),
			 200);
	assert_null(strstr(r, "reg-id=2"));
	assert_null(strstr(r, "Require: outbound"));
}

/* One REGISTER with a given branch from phone p: the bytes that a phone
 * retransmits unchanged. */
static void send_register(struct phone *p, const char *user, const char *branch, unsigned cseq,
			  const char *contacts)
{
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK%s\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=t1\r\n"
		   "To: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: rtx-%s\r\n"
		   "CSeq: %u REGISTER\r\n"
		   "Max-Forwards: 70\r\n"
		   "%s"
		   "Expires: 300\r\n"
		   "Content-Length: 0\r\n\r\n",
		   p->port, branch, user, user, user, cseq, contacts);
}

/* A counter's value. The workers count after they answer: wait for the
 * last answer's count to land first. */
static int64_t counter(const char *name)
{
	usleep(50 * 1000);
	struct buf b;
	buf_init(&b);
	metrics_write_prometheus(&b);
	buf_append(&b, "", 1);
	int64_t v = -1;
	char key[128];
	snprintf(key, sizeof key, "\npinhole_%s ", name);
	const char *at = b.data ? strstr(b.data, key) : NULL;
	if (at)
		v = strtoll(at + strlen(key), NULL, 10);
	buf_free(&b);
	return v;
}

/* RFC 3261 17.2.2: a retransmitted REGISTER gets the transaction's own final
 * response again, byte for byte, while the transaction is live and after it
 * completed (Timer J keeps a compact record of it), and the registrar does not
 * see it twice (it would refuse the same Call-ID and CSeq with 500). Several
 * sockets, so that REGISTERs land on both workers: a REGISTER is handled on
 * the worker that received it, and so must its retransmissions. */
static void test_retransmission_absorbed(void **state)
{
	struct fixture *f = *state;
	enum { PHONES = 8 };
	struct phone ph[PHONES];
	int64_t regs = counter("registrar_registers_total");
	int64_t rtx = counter("sip_retransmissions_total");
	for (int i = 0; i < PHONES; i++) {
		phone_open(&ph[i], &f->srv);
		char user[32], branch[32], first[4096], again[4096];
		snprintf(user, sizeof user, "rtx%d", i);
		snprintf(branch, sizeof branch, "rtx-%d", i);
		send_register(&ph[i], user, branch, 1, "Contact: <sip:x@10.0.0.9>\r\n");
		phone_expect(&ph[i], "SIP/2.0 200", first, sizeof first);
		/* at once: the live transaction answers */
		send_register(&ph[i], user, branch, 1, "Contact: <sip:x@10.0.0.9>\r\n");
		phone_expect(&ph[i], "SIP/2.0 ", again, sizeof again);
		assert_string_equal(first, again);
		/* later: the completed record answers */
		usleep(60 * 1000);
		send_register(&ph[i], user, branch, 1, "Contact: <sip:x@10.0.0.9>\r\n");
		phone_expect(&ph[i], "SIP/2.0 ", again, sizeof again);
		assert_string_equal(first, again);
		/* a new transaction (new branch, higher CSeq) is a new REGISTER */
		snprintf(branch, sizeof branch, "rtx-%d-b", i);
		send_register(&ph[i], user, branch, 2, "Contact: <sip:x@10.0.0.9>\r\n");
		phone_expect(&ph[i], "SIP/2.0 200", again, sizeof again);
		assert_string_not_equal(first, again);
	}
	assert_int_equal(counter("registrar_registers_total") - regs, 2 * PHONES);
	assert_int_equal(counter("sip_retransmissions_total") - rtx, 2 * PHONES);
	for (int i = 0; i < PHONES; i++)
		phone_close(&ph[i]);
}

/* More server transactions than the table's first size: it grows, and the
 * first ones are still found (their retransmissions answered, not re-run). */
static void test_many_transactions(void **state)
{
	struct fixture *f = *state;
	enum { N = 2500 };
	char r[4096], first[4096];
	for (int i = 0; i < N; i++) {
		char user[32], branch[32];
		snprintf(user, sizeof user, "many%d", i);
		snprintf(branch, sizeof branch, "many-%d", i);
		send_register(&f->ph, user, branch, 1, "Contact: <sip:y@10.0.0.10>\r\n");
		phone_expect(&f->ph, "SIP/2.0 200", i == 0 ? first : r, sizeof r);
	}
	int64_t regs = counter("registrar_registers_total");
	send_register(&f->ph, "many0", "many-0", 1, "Contact: <sip:y@10.0.0.10>\r\n");
	phone_expect(&f->ph, "SIP/2.0 ", r, sizeof r);
	assert_string_equal(first, r);
	assert_int_equal(counter("registrar_registers_total"), regs);
}

/* Timer J (64*T1) ends the completed record: the same request again is then
 * a new one (here refused, the binding already has its Call-ID and CSeq),
 * and records made after that (in slabs their predecessors gave back) still
 * absorb their retransmissions. Its own server with T1 = 50 ms. */
static void test_timer_j_ends(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 50\n"
				"[registrar]\nmin_expires = 60\n[keepalive]\ninterval = 0\n");
	struct phone ph;
	phone_open(&ph, &srv);
	char first[4096], r[4096];
	for (int round = 0; round < 2; round++) {
		enum { N = 2000 }; /* over 1 MB of records: more than one slab */
		for (int i = 0; i < N; i++) {
			char user[32], branch[32];
			snprintf(user, sizeof user, "j%d-%d", round, i);
			snprintf(branch, sizeof branch, "j-%d-%d", round, i);
			send_register(&ph, user, branch, 1, "Contact: <sip:z@10.0.0.11>\r\n");
			phone_expect(&ph, "SIP/2.0 200", i ? r : first, sizeof r);
		}
		/* within Timer J: absorbed */
		char user[32], branch[32];
		snprintf(user, sizeof user, "j%d-0", round);
		snprintf(branch, sizeof branch, "j-%d-0", round);
		usleep(100 * 1000);
		send_register(&ph, user, branch, 1, "Contact: <sip:z@10.0.0.11>\r\n");
		phone_expect(&ph, "SIP/2.0 ", r, sizeof r);
		assert_string_equal(first, r);
		/* after it: a new transaction, which the registrar refuses */
		usleep(3400 * 1000);
		send_register(&ph, user, branch, 1, "Contact: <sip:z@10.0.0.11>\r\n");
		phone_expect(&ph, "SIP/2.0 ", r, sizeof r);
		assert_int_equal(strncmp(r, "SIP/2.0 500", 11), 0);
	}
	phone_close(&ph);
	test_server_stop(&srv);
}

/* More contacts than the 200's stack copy holds, and more than a REGISTER may carry. */
static void test_many_contacts(void **state)
{
	struct fixture *f = *state;
	char r[8192], contacts[2048] = "";
	for (int i = 0; i < 7; i++) {
		char one[64];
		snprintf(one, sizeof one, "Contact: <sip:erin@10.0.1.%d>\r\n", i + 1);
		strcat(contacts, one);
	}
	assert_int_equal(do_register(f, "erin", "c-erin", 1, contacts, r, sizeof r), 200);
	assert_int_equal(count(r, "Contact: "), 7);
	for (int i = 0; i < 7; i++) {
		char one[64];
		snprintf(one, sizeof one, "<sip:erin@10.0.1.%d>;expires=", i + 1);
		assert_non_null(strstr(r, one));
	}
	contacts[0] = '\0';
	for (int i = 0; i < 17; i++) {
		char one[64];
		snprintf(one, sizeof one, "%s<sip:frank@10.0.2.%d>", i ? ", " : "Contact: ", i + 1);
		strcat(contacts, one);
	}
	strcat(contacts, "\r\n");
	assert_int_equal(do_register(f, "frank", "c-frank", 1, contacts, r, sizeof r), 403);
}

/* The attack: with no users, a LAN source may register any AOR, so one host
 * sends REGISTERs for new AORs until memory runs out (it used to: only
 * max_contacts per AOR bounded anything). With max_bindings = 8 the flood
 * takes what is left of the 8 and then gets 503 with Retry-After, counted;
 * the phones already registered still refresh and unregister, and an
 * unregistration makes room for exactly one new binding. */
static void test_binding_flood_bounded(void **state)
{
	(void)state;
	struct fixture f;
	memset(&f, 0, sizeof f);
	test_server_start(&f.srv, "[sip]\nlisten = udp:127.0.0.1:0\nretry_after = 7\n"
				  "[registrar]\nmax_bindings = 8\n[keepalive]\ninterval = 0\n");
	phone_open(&f.ph, &f.srv);
	char r[4096], contact[128], user[32];
	assert_int_equal(do_register(&f, "alice", "c-alice", 1,
				     "Contact: <sip:alice@10.0.0.1>\r\nExpires: 300\r\n", r,
				     sizeof r),
			 200);
	assert_int_equal(do_register(&f, "bob", "c-bob", 1,
				     "Contact: <sip:bob@10.0.0.2>\r\nExpires: 300\r\n", r, sizeof r),
			 200);
	int64_t rejected0 = counter("registrar_rejected_total");
	int64_t full0 = counter("store_bindings_full_total");
	int ok = 0, busy = 0;
	for (int i = 0; i < 40; i++) {
		snprintf(user, sizeof user, "flood%d", i);
		snprintf(contact, sizeof contact, "Contact: <sip:%s@10.9.0.1:%d>\r\n", user,
			 6000 + i);
		int st = do_register(&f, user, user, 1, contact, r, sizeof r);
		ok += st == 200;
		if (st == 503) {
			busy++;
			assert_non_null(strstr(r, "\r\nRetry-After: 7\r\n"));
		}
	}
	assert_int_equal(ok, 6);
	assert_int_equal(busy, 34);
	assert_int_equal(counter("store_bindings_full_total") - full0, 34);
	assert_int_equal(counter("registrar_rejected_total") - rejected0, 34);
	struct store_stats st;
	store_stats_get(f.srv.store, &st);
	assert_int_equal(st.bindings, 8);
	/* a second contact for alice is a new binding too */
	assert_int_equal(do_register(&f, "alice", "c-alice", 2,
				     "Contact: <sip:alice@10.0.0.3>\r\n", r, sizeof r),
			 503);
	/* at the bound: alice refreshes, bob unregisters */
	assert_int_equal(do_register(&f, "alice", "c-alice", 3,
				     "Contact: <sip:alice@10.0.0.1>\r\nExpires: 600\r\n", r,
				     sizeof r),
			 200);
	assert_non_null(strstr(r, "<sip:alice@10.0.0.1>;expires=600"));
	assert_int_equal(do_register(&f, "bob", "c-bob", 2, "Contact: *\r\nExpires: 0\r\n", r,
				     sizeof r),
			 200);
	struct store_binding b[2];
	size_t n = 9;
	assert_int_equal(registrar_lookup(f.srv.reg, "bob@127.0.0.1", b, 2, &n), 0);
	assert_int_equal(n, 0);
	/* bob's place goes to one more, and no further */
	assert_int_equal(do_register(&f, "late1", "c-late1", 1, "Contact: <sip:l1@10.9.0.2>\r\n",
				     r, sizeof r),
			 200);
	assert_int_equal(do_register(&f, "late2", "c-late2", 1, "Contact: <sip:l2@10.9.0.2>\r\n",
				     r, sizeof r),
			 503);
	phone_close(&f.ph);
	test_server_stop(&f.srv);
}

/* With the disk full, a REGISTER is answered 500, and its binding must not
 * take calls (it used to: live in memory, gone after a restart), nor may an
 * unregistration that failed stop them (it used to, and the binding came
 * back after a restart). Commits fail by RLIMIT_FSIZE 0, as on a full disk. */
static void test_disk_full_not_routed(void **state)
{
	(void)state;
	char dir[] = "/tmp/pinhole-regfull-XXXXXX", conf[256];
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:127.0.0.1:0\n[keepalive]\ninterval = 0\n"
		 "[proxy]\nrelay = none\n[store]\npath = %s/reg.db\n",
		 dir);
	struct test_server srv;
	test_server_start(&srv, conf);
	struct phone a, b, c;
	phone_open(&a, &srv);
	phone_open(&b, &srv);
	phone_open(&c, &srv);
	phone_register(&b, "kept");
	char r[4096];

	signal(SIGXFSZ, SIG_IGN);
	struct rlimit saved, full;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
	full = saved;
	full.rlim_cur = 0;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &full), 0);
	/* a new binding: 500, and calls to it are not routed there */
	phone_send(&c,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKdf1\r\n"
		   "From: <sip:lost@127.0.0.1>;tag=d1\r\nTo: <sip:lost@127.0.0.1>\r\n"
		   "Call-ID: df-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:lost@10.1.1.9:%u>\r\n"
		   "Expires: 300\r\nContent-Length: 0\r\n\r\n",
		   c.port, c.port);
	phone_expect(&c, "SIP/2.0 ", r, sizeof r);
	int new_status = atoi(r + 8);
	phone_invite(&a, "lost", "df-call-1", "z9hG4bKdfi1", 70);
	phone_expect(&a, "SIP/2.0 4", r, sizeof r);
	int lost_status = atoi(r + 8);
	/* unregistering: 500, and calls still reach the binding */
	phone_send(&b,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKdf2\r\n"
		   "From: <sip:kept@127.0.0.1>;tag=d2\r\nTo: <sip:kept@127.0.0.1>\r\n"
		   "Call-ID: df-2\r\nCSeq: 1 REGISTER\r\nContact: *\r\n"
		   "Expires: 0\r\nContent-Length: 0\r\n\r\n",
		   b.port);
	phone_expect(&b, "SIP/2.0 ", r, sizeof r);
	int unreg_status = atoi(r + 8);
	phone_invite(&a, "kept", "df-call-2", "z9hG4bKdfi2", 70);
	phone_expect(&b, "INVITE ", r, sizeof r);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
	assert_int_equal(new_status, 500);
	assert_int_equal(lost_status, 404);
	assert_int_equal(unreg_status, 500);
	phone_close(&a);
	phone_close(&b);
	phone_close(&c);
	test_server_stop(&srv);

	/* after a restart: exactly what memory said */
	test_server_start(&srv, conf);
	struct store_binding bs[2];
	size_t n = 9;
	assert_int_equal(registrar_lookup(srv.reg, "kept@127.0.0.1", bs, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(registrar_lookup(srv.reg, "lost@127.0.0.1", bs, 2, &n), 0);
	assert_int_equal(n, 0);
	test_server_stop(&srv);
	char p[128];
	static const char *const suffix[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/reg.db%s", dir, suffix[i]);
		unlink(p);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add_refresh_remove),
	    cmocka_unit_test(test_interval_too_brief_and_cap),
	    cmocka_unit_test(test_ordering_and_wildcard_rules),
	    cmocka_unit_test(test_bad_contact_expires_ignored),
	    cmocka_unit_test(test_contact_uri_equivalence),
	    cmocka_unit_test(test_outbound_instance),
	    cmocka_unit_test(test_retransmission_absorbed),
	    cmocka_unit_test(test_many_transactions),
	    cmocka_unit_test(test_many_contacts),
	    cmocka_unit_test(test_timer_j_ends),
	    cmocka_unit_test(test_disk_full_not_routed),
	    cmocka_unit_test(test_binding_flood_bounded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
