/* Domain, relay and loop policy as the attacks it stops, in a network namespace of its own. */
#include <errno.h>
#include <setjmp.h>
#include <sched.h>
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
#include "proxy/proxy.h"
#include "relay/relay.h"
#include "testenv.h"

/* The namespace (lo only): the server listens on 0.0.0.0 and is reached at
 * SRV_IP; an attacker on the "internet" at ATTACKER, a trusted trunk at
 * TRUNK; private phones and the victim on 127.0.0.1. */
#define SRV_IP "198.18.0.1"
#define ATTACKER "198.18.7.7"
#define TRUNK "198.18.9.9"

static bool have_ns;

static void add_user(struct test_server *s, const char *user, const char *pass)
{
	struct store_cred_entry e;
	assert_int_equal(auth_ha1_all(slice_cstr(user), SLICE_LIT(SRV_IP), slice_cstr(pass), &e),
			 0);
	assert_int_equal(store_cred_set(s->creds, slice_cstr(user), SLICE_LIT(SRV_IP), &e), 0);
}

static void start(struct test_server *s, const char *extra)
{
	char conf[1024];
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:0.0.0.0:0\nt1 = 100\n[keepalive]\ninterval = 0\n"
		 "[proxy]\nrelay = none\n%s",
		 extra);
	test_server_start(s, conf);
	net_addr_parse(SRV_IP, net_addr_port(&s->addr), &s->addr);
}

static void need_ns(void)
{
	if (!have_ns)
		skip(); /* needs root for a network namespace of its own */
}

static void send_register(struct phone *p, const char *domain, const char *user)
{
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "REGISTER sip:%s SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKpr%u\r\n"
		   "From: <sip:%s@%s>;tag=r1\r\nTo: <sip:%s@%s>\r\n"
		   "Call-ID: pol-reg-%u@x\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:%s@10.9.9.9:%u>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   domain, p->port, seq, user, domain, user, domain, seq, user, p->port);
}

static void test_register_public_source_without_users(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "");
	struct phone evil, lan;
	phone_open_at(&evil, &s, ATTACKER);
	phone_open(&lan, &s);
	char r[4096];
	int64_t closed = test_metric("registrar_closed_total", NULL);
	send_register(&evil, SRV_IP, "alice");
	phone_expect(&evil, "SIP/2.0 403", r, sizeof r);
	assert_int_equal(test_metric("registrar_closed_total", NULL), closed + 1);
	/* nothing was bound: a call to alice finds no one */
	struct store_binding b[2];
	size_t n = 9;
	registrar_lookup(s.reg, "alice@" SRV_IP, b, 2, &n);
	assert_int_equal(n, 0);
	/* a private source registers */
	send_register(&lan, SRV_IP, "alice");
	phone_expect(&lan, "SIP/2.0 200", r, sizeof r);
	phone_close(&evil);
	phone_close(&lan);
	test_server_stop(&s);
}

static void test_register_open_mode(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "[registrar]\nopen = yes\n");
	struct phone evil;
	phone_open_at(&evil, &s, ATTACKER);
	char r[4096];
	send_register(&evil, SRV_IP, "bob");
	phone_expect(&evil, "SIP/2.0 200", r, sizeof r);
	phone_close(&evil);
	test_server_stop(&s);
}

/* RFC 3261 10.3 step 1: victim@example.org is not ours to bind */
static void test_register_foreign_domain(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "");
	struct phone p;
	phone_open(&p, &s);
	char r[4096];
	int64_t foreign = test_metric("registrar_foreign_domain_total", NULL);
	send_register(&p, "example.org", "victim");
	phone_expect(&p, "SIP/2.0 403", r, sizeof r);
	assert_int_equal(test_metric("registrar_foreign_domain_total", NULL), foreign + 1);
	phone_close(&p);
	test_server_stop(&s);
	/* with [sip] domains, that domain is ours and our bare address is not */
	start(&s, "[sip]\ndomains = example.org, Pinhole.Test\n");
	phone_open(&p, &s);
	send_register(&p, "example.org", "victim");
	phone_expect(&p, "SIP/2.0 200", r, sizeof r);
	send_register(&p, "pinhole.test", "victim");
	phone_expect(&p, "SIP/2.0 200", r, sizeof r);
	send_register(&p, SRV_IP, "victim");
	phone_expect(&p, "SIP/2.0 403", r, sizeof r);
	phone_close(&p);
	test_server_stop(&s);
}

/* Three ways to name a third host: Request-URI, a Route beyond us, maddr.
 * ACK is forwarded without a transaction: the same rule, and no answer. */
static void relay_attempts(struct phone *from, struct phone *victim, int expect_status)
{
	char r[4096], got[4096];
	uint16_t sp = net_addr_port(&from->srv->addr);
	const char *what[3] = {"ruri", "route", "maddr"};
	for (int i = 0; i < 3; i++) {
		char ruri[128], route[128] = "";
		if (i == 0)
			snprintf(ruri, sizeof ruri, "sip:anyone@127.0.0.1:%u", victim->port);
		if (i == 1) {
			snprintf(ruri, sizeof ruri, "sip:x@%s:%u", SRV_IP, sp);
			snprintf(route, sizeof route, "Route: <sip:127.0.0.1:%u;lr>\r\n",
				 victim->port);
		}
		if (i == 2)
			snprintf(ruri, sizeof ruri, "sip:anyone@example.net:%u;maddr=127.0.0.1",
				 victim->port);
		phone_send(from,
			   "MESSAGE %s SIP/2.0\r\n"
			   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKrel%s%d\r\n%s"
			   "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=t%d\r\n"
			   "To: <sip:anyone@example.net>\r\nCall-ID: relay-%s-%d-%u\r\n"
			   "CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
			   ruri, from->port, what[i], expect_status, route, i, what[i],
			   expect_status, from->port);
		if (expect_status == 403) {
			phone_expect(from, "SIP/2.0 403", r, sizeof r);
			phone_expect_silence(victim, 50);
		} else {
			phone_expect(victim, "MESSAGE ", got, sizeof got);
			phone_reply(victim, got, 200, "OK", "v");
			phone_expect(from, "SIP/2.0 200", r, sizeof r);
		}
	}
	phone_send(from,
		   "ACK sip:anyone@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKack%d\r\nMax-Forwards: 70\r\n"
		   "From: <sip:a@example.com>;tag=t\r\nTo: <sip:anyone@example.net>;tag=u\r\n"
		   "Call-ID: relay-ack-%d\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		   victim->port, from->port, expect_status, expect_status);
	if (expect_status == 403)
		phone_expect_silence(victim, 50);
	else
		phone_expect(victim, "ACK ", got, sizeof got);
}

static void test_relay_anonymous_public_source_refused(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "");
	struct phone evil, victim;
	phone_open_at(&evil, &s, ATTACKER);
	phone_open(&victim, &s);
	int64_t denied = test_metric("proxy_relay_denied_total", NULL);
	relay_attempts(&evil, &victim, 403);
	assert_int_equal(test_metric("proxy_relay_denied_total", NULL), denied + 4);
	phone_close(&evil);
	phone_close(&victim);
	test_server_stop(&s);
}

static void test_relay_trusted_peer(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "[proxy]\ntrusted = 203.0.113.7, 198.18.9.0/24\n");
	struct phone trunk, evil, victim;
	phone_open_at(&trunk, &s, TRUNK);
	phone_open_at(&evil, &s, ATTACKER);
	phone_open(&victim, &s);
	relay_attempts(&trunk, &victim, 200);
	relay_attempts(&evil, &victim, 403); /* the list names no one else */
	phone_close(&trunk);
	phone_close(&evil);
	phone_close(&victim);
	test_server_stop(&s);
}

/* The no-users LAN rule: private sources may relay; once users exist they
 * must authenticate like everyone else. */
static void test_relay_private_source_only_without_users(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "");
	struct phone lan, victim;
	phone_open(&lan, &s);
	phone_open(&victim, &s);
	relay_attempts(&lan, &victim, 200);
	add_user(&s, "alice", "secret");
	relay_attempts(&lan, &victim, 403);
	phone_close(&lan);
	phone_close(&victim);
	test_server_stop(&s);
}

static void copy_param(const char *msg, const char *name, char *out, size_t len)
{
	char key[32];
	snprintf(key, sizeof key, "%s=\"", name);
	const char *p = strstr(msg, key);
	assert_non_null(p);
	p += strlen(key);
	const char *e = strchr(p, '"');
	snprintf(out, len, "%.*s", (int)(e - p), p);
}

/* A MESSAGE from alice@SRV_IP to a third host, with the extra lines. */
static void alice_message(struct phone *from, struct phone *victim, const char *branch,
			  const char *extra)
{
	phone_send(from,
		   "MESSAGE sip:anyone@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:alice@" SRV_IP ">;tag=al\r\nTo: <sip:anyone@example.net>\r\n"
		   "Call-ID: auth-relay-%u\r\nCSeq: %d MESSAGE\r\n%sContent-Length: 0\r\n\r\n",
		   victim->port, from->port, branch, from->port, extra[0] ? 2 : 1, extra);
}

/* With users, the authenticated user reaches beyond our domains from a
 * public source; the same request without credentials is challenged, and a
 * stranger's (a From not ours, so never challenged) is refused. */
static void test_relay_authenticated_user(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "[auth]\nalgorithms = MD5\n");
	add_user(&s, "alice", "secret");
	struct phone alice, evil, victim;
	phone_open_at(&alice, &s, ATTACKER);
	phone_open_at(&evil, &s, ATTACKER);
	phone_open(&victim, &s);
	char chal[4096], r[4096], got[4096];
	alice_message(&alice, &victim, "z9hG4bKau1", "");
	phone_expect(&alice, "SIP/2.0 407", chal, sizeof chal);
	phone_expect_silence(&victim, 50);
	char nonce[128], realm[128], ha1[STORE_CRED_HA1_MAX], resp[STORE_CRED_HA1_MAX], uri[64],
	    cred[1024];
	copy_param(chal, "nonce", nonce, sizeof nonce);
	copy_param(chal, "realm", realm, sizeof realm);
	snprintf(uri, sizeof uri, "sip:anyone@127.0.0.1:%u", victim.port);
	auth_ha1(STORE_CRED_MD5, SLICE_LIT("alice"), slice_cstr(realm), SLICE_LIT("secret"), ha1);
	auth_response(STORE_CRED_MD5, ha1, slice_cstr(nonce), SLICE_LIT("00000001"),
		      SLICE_LIT("0a4f113b"), SLICE_LIT("auth"), SLICE_LIT("MESSAGE"),
		      slice_cstr(uri), resp);
	snprintf(cred, sizeof cred,
		 "Proxy-Authorization: Digest username=\"alice\", realm=\"%s\", nonce=\"%s\", "
		 "uri=\"%s\", response=\"%s\", algorithm=MD5, qop=auth, nc=00000001, "
		 "cnonce=\"0a4f113b\"\r\n",
		 realm, nonce, uri, resp);
	alice_message(&alice, &victim, "z9hG4bKau2", cred);
	phone_expect(&victim, "MESSAGE ", got, sizeof got);
	phone_reply(&victim, got, 200, "OK", "v");
	phone_expect(&alice, "SIP/2.0 200", r, sizeof r);
	relay_attempts(&evil, &victim, 403);
	phone_close(&alice);
	phone_close(&evil);
	phone_close(&victim);
	test_server_stop(&s);
}

static void options_to(struct phone *p, const char *host, uint16_t port, char *r, size_t len)
{
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "OPTIONS sip:x@%s:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKself%u\r\nMax-Forwards: 70\r\n"
		   "From: <sip:a@pinhole.test>;tag=s\r\nTo: <sip:x@%s>\r\n"
		   "Call-ID: self-%u@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		   host, port, p->port, seq, host, seq);
	phone_expect(p, "SIP/2.0 ", r, len);
}

/* OPTIONS sip:x@127.0.0.2:<our port> with a 0.0.0.0 listener: 127.0.0.2 is
 * us (lo answers for 127/8). Beyond our domains it is a loop, answered 482
 * before anything is sent; with the default domains it names a local user. */
static void test_loop_through_other_local_address(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "[sip]\ndomains = pinhole.test\n");
	struct phone p;
	phone_open(&p, &s);
	char r[4096];
	uint16_t port = net_addr_port(&s.addr);
	int64_t fwd = test_metric("proxy_forwarded_total", NULL);
	options_to(&p, "127.0.0.2", port, r, sizeof r);
	assert_true(strncmp(r, "SIP/2.0 482", 11) == 0);
	assert_int_equal(test_metric("proxy_forwarded_total", NULL), fwd);
	/* an OPTIONS ping for the server itself is answered, domains or not */
	phone_send(&p,
		   "OPTIONS sip:127.0.0.2:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKping\r\nMax-Forwards: 70\r\n"
		   "From: <sip:a@pinhole.test>;tag=s\r\nTo: <sip:127.0.0.2>\r\n"
		   "Call-ID: ping@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		   port, p.port);
	phone_expect(&p, "SIP/2.0 200", r, sizeof r);
	phone_close(&p);
	test_server_stop(&s);
	start(&s, "");
	phone_open(&p, &s);
	port = net_addr_port(&s.addr);
	options_to(&p, "127.0.0.2", port, r, sizeof r);
	assert_true(strncmp(r, "SIP/2.0 404", 11) == 0);
	assert_int_equal(test_metric("proxy_forwarded_total", NULL), fwd);
	phone_close(&p);
	test_server_stop(&s);
}

static bool wait_local(struct test_server *s, const struct net_addr *a, bool want)
{
	for (int i = 0; i < 300; i++) {
		if (edge_addr_is_local(s->edge, a) == want)
			return true;
		usleep(10 * 1000);
	}
	return false;
}

/* An address added after start is ours (netlink RTM_NEWADDR), one removed
 * is not any more (RTM_DELADDR). */
static void test_address_added_after_start(void **state)
{
	(void)state;
	need_ns();
	struct test_server s;
	start(&s, "[sip]\ndomains = pinhole.test\n");
	uint16_t port = net_addr_port(&s.addr);
	struct net_addr a;
	net_addr_parse("10.77.0.1", port, &a);
	assert_false(edge_addr_is_local(s.edge, &a));
	assert_int_equal(system("ip addr add 10.77.0.1/32 dev lo"), 0);
	assert_true(wait_local(&s, &a, true));
	struct phone p;
	phone_open(&p, &s);
	char r[4096];
	int64_t fwd = test_metric("proxy_forwarded_total", NULL);
	options_to(&p, "10.77.0.1", port, r, sizeof r);
	assert_true(strncmp(r, "SIP/2.0 482", 11) == 0);
	assert_int_equal(test_metric("proxy_forwarded_total", NULL), fwd);
	assert_int_equal(system("ip addr del 10.77.0.1/32 dev lo"), 0);
	assert_true(wait_local(&s, &a, false));
	phone_close(&p);
	test_server_stop(&s);
}

static void test_cidr_parse(void **state)
{
	(void)state;
	struct net_cidr c;
	struct net_addr a;
	assert_int_equal(net_cidr_parse("192.0.2.0/24", &c), 0);
	net_addr_parse("192.0.2.77", 0, &a);
	assert_true(net_cidr_has(&c, &a));
	net_addr_parse("192.0.3.1", 0, &a);
	assert_false(net_cidr_has(&c, &a));
	net_addr_parse("[::ffff:192.0.2.9]", 0, &a); /* a dual-stack socket's IPv4 peer */
	assert_true(net_cidr_has(&c, &a));
	assert_int_equal(net_cidr_parse("2001:db8::/32", &c), 0);
	net_addr_parse("[2001:db8:1::5]", 0, &a);
	assert_true(net_cidr_has(&c, &a));
	net_addr_parse("192.0.2.77", 0, &a);
	assert_false(net_cidr_has(&c, &a));
	assert_int_equal(net_cidr_parse("198.51.100.7", &c), 0);
	assert_int_equal(c.plen, 32);
	assert_int_equal(net_cidr_parse("192.0.2.1/24", &c), EDOM);
	assert_int_equal(net_cidr_parse("192.0.2.0/33", &c), ERANGE);
	assert_int_equal(net_cidr_parse("192.0.2.0/", &c), EINVAL);
	assert_int_equal(net_cidr_parse("example.org", &c), EINVAL);
	assert_int_equal(net_cidr_parse("10.0.0.0/8x", &c), EINVAL);
	/* a bad list stops the server with the entry named */
	struct test_server s;
	memset(&s, 0, sizeof s);
	struct conf *conf;
	static const struct conf_key *const tables[] = {edge_conf_keys,	     proxy_conf_keys,
							registrar_conf_keys, relay_conf_keys,
							auth_conf_keys,	     NULL};
	assert_int_equal(conf_alloc(&conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(conf, "t", "[proxy]\ntrusted = 10.0.0.0/8, 10.1.2.3/16\n",
					  err, sizeof err),
			 0);
	struct net_conf nc = {.workers = 1};
	struct net *n;
	struct edge *e;
	struct store *st;
	struct store_conf sc = {.path = NULL};
	struct registrar *reg;
	struct proxy *p;
	assert_int_equal(store_alloc(&st, &sc), 0);
	assert_int_equal(net_alloc(&n, &nc), 0);
	assert_int_equal(conf_set(conf, "sip", "listen", "udp:127.0.0.1:0", err, sizeof err), 0);
	assert_int_equal(edge_alloc(&e, n, conf), 0);
	/* the registrar reads the list too (whose Path it honours) and stops first */
	assert_int_equal(registrar_alloc(&reg, e, st, NULL, conf), EINVAL);
	assert_int_equal(conf_set(conf, "proxy", "trusted", "10.0.0.0/8", err, sizeof err), 0);
	assert_int_equal(registrar_alloc(&reg, e, st, NULL, conf), 0);
	assert_int_equal(conf_set(conf, "proxy", "trusted", "10.0.0.0/8, 10.1.2.3/16", err,
				  sizeof err),
			 0);
	assert_int_equal(proxy_alloc(&p, e, reg, NULL, conf), EINVAL);
	registrar_free(reg);
	edge_free(e);
	net_free(n);
	store_free(st);
	conf_free(conf);
}

int main(void)
{
	/* a namespace of our own: the addresses below, and the ones the tests
	 * add and remove, are seen by nothing else */
	static const char *const addrs[] = {SRV_IP, ATTACKER, TRUNK, NULL};
	have_ns = test_own_netns(addrs);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cidr_parse),
	    cmocka_unit_test(test_register_public_source_without_users),
	    cmocka_unit_test(test_register_open_mode),
	    cmocka_unit_test(test_register_foreign_domain),
	    cmocka_unit_test(test_relay_anonymous_public_source_refused),
	    cmocka_unit_test(test_relay_trusted_peer),
	    cmocka_unit_test(test_relay_private_source_only_without_users),
	    cmocka_unit_test(test_relay_authenticated_user),
	    cmocka_unit_test(test_loop_through_other_local_address),
	    cmocka_unit_test(test_address_added_after_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
