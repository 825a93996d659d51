/* The relay as an ICE candidate on loopback ([proxy] ice = candidate): the parties' checks
 * passed on only when they are theirs, the relay as ICE-lite agent for a party without ICE,
 * and the attacks on both (a stranger's checks, forged answers, floods) written as such. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <poll.h>
#include <unistd.h>

#include "net/net.h"
#include "relay/relay.h"
#include "relayctl/relayctl.h"
#include "sdp/sdp.h"
#include "stun/stun.h"
#include "relayfix.h"

/* The relay of these cases, with its fast path off. */
static void start(struct relayfix *f)
{
	relayfix_start(f, "[relay]\naddress = 127.0.0.1\nports = 23400-23499\n"
			  "fastpath = off\n");
}

static void send_to(int fd, const struct buf *b, uint16_t port)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse("127.0.0.1", port, &a), 0);
	assert_int_equal(sendto(fd, b->data, b->len, 0, &a.u.sa, net_addr_len(&a)),
			 (ssize_t)b->len);
}

static ssize_t recv_within(int fd, uint8_t *buf, size_t cap, int ms, uint16_t *from)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	struct net_addr a;
	socklen_t al = sizeof a.u.ss;
	ssize_t n = recvfrom(fd, buf, cap, 0, &a.u.sa, &al);
	if (from)
		*from = net_addr_port(&a);
	return n;
}

#define UFRAG_A "aliceUf"
#define PWD_A "alicePasswordIs22Chars"
#define UFRAG_B "bobUfrag"
#define PWD_B "bobsPasswordIs22Chars!"

static void sdp_ice(char *out, size_t cap, uint16_t port, const char *ufrag, const char *pwd)
{
	snprintf(out, cap,
		 "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n"
		 "m=audio %u RTP/AVP 0\r\n"
		 "a=candidate:1 1 UDP 2130706431 127.0.0.1 %u typ host\r\n"
		 "a=candidate:1 2 UDP 2130706430 127.0.0.1 %u typ host\r\n",
		 ufrag, pwd, port, port, port + 1);
}

static void sdp_plain(char *out, size_t cap, uint16_t port)
{
	snprintf(out, cap,
		 "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\n",
		 port);
}

static struct relayctl_req req(const char *ft, const char *tt, const char *sdp)
{
	struct relayctl_req q;
	memset(&q, 0, sizeof q);
	q.call_id = slice_cstr("ice-call@test");
	q.from_tag = slice_cstr(ft);
	q.to_tag = slice_cstr(tt);
	q.sdp = slice_cstr(sdp);
	assert_int_equal(net_addr_parse("127.0.0.1:5060", 0, &q.opts.received_from), 0);
	q.opts.ice = RELAYCTL_ICE_CANDIDATE;
	return q;
}

/* The relay port (m=) of a rewritten SDP, and its section parsed. */
static uint16_t port_of(const struct buf *b, struct sdp *s)
{
	assert_false(b->failed);
	assert_int_equal(sdp_parse(s, buf_slice(b)), 0);
	assert_int_equal(s->n_media, 1);
	return s->media[0].port;
}

/* A Binding request "user" signed with pwd (RFC 8445 7.2.2), or a success
 * response with tid signed with pwd (cls SUCCESS). */
static void stun_msg(struct buf *b, enum stun_class cls, const uint8_t *tid, const char *user,
		     const char *pwd)
{
	struct stun_enc e;
	buf_reset(b);
	stun_enc_begin(&e, b, STUN_METHOD_BINDING, cls, tid);
	if (user)
		stun_enc_str(&e, STUN_ATTR_USERNAME, slice_cstr(user));
	if (cls == STUN_CLASS_REQUEST) {
		stun_enc_u32(&e, STUN_ATTR_PRIORITY, 1845494015);
		stun_enc_u64(&e, STUN_ATTR_ICE_CONTROLLING, 42);
	} else {
		struct net_addr a;
		assert_int_equal(net_addr_parse("127.0.0.1:4242", 0, &a), 0);
		stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &a.u.sa);
	}
	stun_enc_integrity(&e, pwd, strlen(pwd));
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
}

/* Two ICE parties: the relay keeps their ICE, adds itself as a relay
 * candidate, and passes their own checks on; nothing else. */
static void test_pass_checks(void **state)
{
	(void)state;
	struct relayfix f;
	start(&f);
	uint16_t pa, pb, pe;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	int evil = relayfix_udp("127.0.0.3:0", &pe);
	char sa[512], sb[512];
	sdp_ice(sa, sizeof sa, pa, UFRAG_A, PWD_A);
	sdp_ice(sb, sizeof sb, pb, UFRAG_B, PWD_B);
	struct buf out, m;
	buf_init(&out);
	buf_init(&m);
	struct sdp s;
	struct slice u, p;
	struct relayctl_req q = req("tagA", "", sa);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	uint16_t rb = port_of(&out, &s); /* where B sends */
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(slice_eq(u, SLICE_LIT(UFRAG_A))); /* A's own ICE reaches B */
	assert_int_equal(s.media[0].ice.n_candidates, 4);
	struct sdp_candidate c;
	assert_int_equal(sdp_candidate_parse(s.media[0].ice.candidates[2], &c), 0);
	assert_true(slice_eq(c.type, SLICE_LIT("relay")));
	assert_int_equal(c.port, rb);
	buf_reset(&out);
	q = req("tagA", "tagB", sb);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = port_of(&out, &s); /* where A sends */
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(slice_eq(u, SLICE_LIT(UFRAG_B)));

	uint8_t rx[2048], tid[STUN_TID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	uint16_t from;
	/* A's check for B: passed on to B byte for byte, from the port B's SDP names */
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, PWD_B);
	send_to(a, &m, ra);
	assert_int_equal(recv_within(b, rx, sizeof rx, 1000, &from), (ssize_t)m.len);
	assert_int_equal(from, rb);
	assert_memory_equal(rx, m.data, m.len);
	/* B's answer: back to A from the port A's SDP names, its mapped address
	 * (B saw the relay's port) now A's own as the relay saw it, signed again
	 * with B's password, the same size */
	stun_msg(&m, STUN_CLASS_SUCCESS, tid, NULL, PWD_B);
	send_to(b, &m, rb);
	assert_int_equal(recv_within(a, rx, sizeof rx, 1000, &from), (ssize_t)m.len);
	assert_int_equal(from, ra);
	struct stun_msg r;
	assert_int_equal(stun_msg_decode(&r, rx, m.len), 0);
	assert_int_equal(r.cls, STUN_CLASS_SUCCESS);
	assert_memory_equal(r.tid, tid, STUN_TID_LEN);
	assert_int_equal(stun_msg_check_integrity(&r, PWD_B, strlen(PWD_B)), 0);
	assert_int_equal(stun_msg_check_fingerprint(&r), 0);
	struct sockaddr_storage xm;
	assert_int_equal(stun_msg_addr(&r, STUN_ATTR_XOR_MAPPED_ADDRESS, &xm), 0);
	struct net_addr mapped;
	memcpy(&mapped.u.ss, &xm, sizeof xm);
	assert_int_equal(net_addr_port(&mapped), pa);

	/* Attacks. A stranger's check, with a password it does not know */
	tid[0] = 2;
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, "guessedPassword0123456");
	send_to(evil, &m, ra);
	send_to(a, &m, ra); /* from the party's own address too */
	/* one that knows it (it saw the SDP) but sends from another host */
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, PWD_B);
	send_to(evil, &m, ra);
	/* A's password for B's direction, or another username */
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, PWD_A);
	send_to(a, &m, ra);
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":mallory", PWD_B);
	send_to(a, &m, ra);
	/* an answer to nothing the relay passed on, well signed */
	tid[0] = 3;
	stun_msg(&m, STUN_CLASS_SUCCESS, tid, NULL, PWD_A);
	send_to(a, &m, ra);
	stun_msg(&m, STUN_CLASS_SUCCESS, tid, NULL, PWD_B);
	send_to(b, &m, rb);
	/* an indication, and a check without integrity */
	buf_reset(&m);
	struct stun_enc e;
	stun_enc_begin(&e, &m, STUN_METHOD_BINDING, STUN_CLASS_INDICATION, NULL);
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
	send_to(a, &m, ra);
	buf_reset(&m);
	stun_enc_begin(&e, &m, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, NULL);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT(UFRAG_B ":" UFRAG_A));
	assert_int_equal(stun_enc_end(&e), 0);
	send_to(evil, &m, ra);
	send_to(a, &m, ra);
	/* none of it reached anyone, the stranger least of all */
	assert_int_equal(recv_within(b, rx, sizeof rx, 200, NULL), -1);
	assert_int_equal(recv_within(a, rx, sizeof rx, 10, NULL), -1);
	assert_int_equal(recv_within(evil, rx, sizeof rx, 10, NULL), -1);

	/* A flood of A's own valid checks: bounded per second */
	unsigned got = 0;
	for (unsigned i = 0; i < 250; i++) {
		tid[1] = (uint8_t)i;
		stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, PWD_B);
		send_to(a, &m, ra);
		if (i % 50 == 49)
			while (recv_within(b, rx, sizeof rx, 100, NULL) > 0)
				got++;
	}
	while (recv_within(b, rx, sizeof rx, 100, NULL) > 0)
		got++;
	assert_true(got >= 90);
	assert_true(got <= 200); /* 100 a second, at most two windows */

	buf_free(&m);
	buf_free(&out);
	close(a);
	close(b);
	close(evil);
	relayfix_stop(&f);
}

/* A party without ICE: the other's checks are answered by the relay as an
 * ICE-lite agent with credentials of its own, and only those. */
static void test_lite_agent(void **state)
{
	(void)state;
	struct relayfix f;
	start(&f);
	uint16_t pa, pb, pe;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	int evil = relayfix_udp("127.0.0.3:0", &pe);
	char sa[512], sb[512];
	sdp_ice(sa, sizeof sa, pa, UFRAG_A, PWD_A);
	sdp_plain(sb, sizeof sb, pb);
	struct buf out, m;
	buf_init(&out);
	buf_init(&m);
	struct sdp s;
	struct slice u, p;
	struct relayctl_req q = req("tagA", "", sa);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	buf_reset(&out);
	q = req("tagA", "tagB", sb);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = port_of(&out, &s);
	/* B's answer reaches A with the relay as an ICE-lite agent */
	assert_true(s.ice.lite);
	assert_true(sdp_media_ice_creds(&s, 0, &u, &p));
	assert_true(u.l >= 4 && p.l >= 22);
	char user[300], pwd[300];
	snprintf(user, sizeof user, "%.*s:" UFRAG_A, (int)u.l, u.p);
	slice_to_cstr(p, pwd, sizeof pwd);
	struct sdp_candidate c;
	assert_int_equal(sdp_candidate_parse(s.media[0].ice.candidates[0], &c), 0);
	assert_true(slice_eq(c.type, SLICE_LIT("host")));
	assert_int_equal(c.port, ra);

	/* A's check: answered by the relay, from ra, signed with its password,
	 * naming A's address, no larger than the check */
	uint8_t rx[2048], tid[STUN_TID_LEN] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2};
	uint16_t from;
	stun_msg(&m, STUN_CLASS_REQUEST, tid, user, pwd);
	send_to(a, &m, ra);
	ssize_t n = recv_within(a, rx, sizeof rx, 1000, &from);
	assert_true(n > 0 && (size_t)n <= m.len);
	assert_int_equal(from, ra);
	struct stun_msg r;
	assert_int_equal(stun_msg_decode(&r, rx, (size_t)n), 0);
	assert_int_equal(r.cls, STUN_CLASS_SUCCESS);
	assert_memory_equal(r.tid, tid, STUN_TID_LEN);
	assert_int_equal(stun_msg_check_integrity(&r, pwd, strlen(pwd)), 0);
	assert_int_equal(stun_msg_check_fingerprint(&r), 0);
	struct sockaddr_storage xm;
	assert_int_equal(stun_msg_addr(&r, STUN_ATTR_XOR_MAPPED_ADDRESS, &xm), 0);
	struct net_addr got;
	memcpy(&got.u.ss, &xm, sizeof xm);
	assert_int_equal(net_addr_port(&got), pa);
	/* nothing went to B (it does no ICE) */
	assert_int_equal(recv_within(b, rx, sizeof rx, 100, NULL), -1);

	/* a wrong password, or the right one from another host: no answer */
	stun_msg(&m, STUN_CLASS_REQUEST, tid, user, "guessedPassword0123456");
	send_to(a, &m, ra);
	send_to(evil, &m, ra);
	stun_msg(&m, STUN_CLASS_REQUEST, tid, user, pwd);
	send_to(evil, &m, ra);
	assert_int_equal(recv_within(a, rx, sizeof rx, 200, NULL), -1);
	assert_int_equal(recv_within(evil, rx, sizeof rx, 10, NULL), -1);
	assert_int_equal(recv_within(b, rx, sizeof rx, 10, NULL), -1);

	/* a re-offer from B keeps the relay's credentials (no ICE restart) */
	buf_reset(&out);
	q = req("tagB", "tagA", sb);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	assert_int_equal(sdp_parse(&s, buf_slice(&out)), 0);
	struct slice u2, p2;
	assert_true(sdp_media_ice_creds(&s, 0, &u2, &p2));
	assert_true(u2.l == u.l && memcmp(u2.p, user, u.l) == 0);

	buf_free(&m);
	buf_free(&out);
	close(a);
	close(b);
	close(evil);
	relayfix_stop(&f);
}

/* ice = remove (the default): ICE stripped, checks dropped as before. */
static void test_remove(void **state)
{
	(void)state;
	struct relayfix f;
	start(&f);
	uint16_t pa, pb;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	char sa[512], sb[512];
	sdp_ice(sa, sizeof sa, pa, UFRAG_A, PWD_A);
	sdp_ice(sb, sizeof sb, pb, UFRAG_B, PWD_B);
	struct buf out, m;
	buf_init(&out);
	buf_init(&m);
	struct sdp s;
	struct relayctl_req q = req("tagA", "", sa);
	q.opts.ice = RELAYCTL_ICE_REMOVE;
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	port_of(&out, &s);
	assert_false(sdp_has_ice(&s));
	buf_reset(&out);
	q = req("tagA", "tagB", sb);
	q.opts.ice = RELAYCTL_ICE_REMOVE;
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = port_of(&out, &s);
	assert_false(sdp_has_ice(&s));
	uint8_t rx[2048], tid[STUN_TID_LEN] = {0};
	stun_msg(&m, STUN_CLASS_REQUEST, tid, UFRAG_B ":" UFRAG_A, PWD_B);
	send_to(a, &m, ra);
	assert_int_equal(recv_within(b, rx, sizeof rx, 200, NULL), -1);
	buf_free(&m);
	buf_free(&out);
	close(a);
	close(b);
	relayfix_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pass_checks),
	    cmocka_unit_test(test_lite_agent),
	    cmocka_unit_test(test_remove),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
