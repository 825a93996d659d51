/* The TURN client (src/turnc): against pinhole's own server on loopback, and against
 * hand-made answers for the credential dance, forged successes and timeouts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turnc.h"
#include "probe/probe.h"
#include "turnc/turnc.h"

/* What the client did: the last request it sent, events seen. */
struct rec {
	int fd;
	struct net_addr srv;
	uint8_t sent[2048];
	size_t sentlen;
	unsigned nsent;
	unsigned ev[TURNC_EV_CLOSED + 1];
	struct turnc_event last;
	char detail[200];
	uint16_t channel;
};

static void rec_send(const void *p, size_t len, void *arg)
{
	struct rec *r = arg;
	assert_true(len <= sizeof r->sent);
	memcpy(r->sent, p, len);
	r->sentlen = len;
	r->nsent++;
	if (r->fd >= 0)
		sendto(r->fd, p, len, 0, &r->srv.u.sa, net_addr_len(&r->srv));
}

static void rec_event(const struct turnc_event *ev, void *arg)
{
	struct rec *r = arg;
	r->ev[ev->kind]++;
	r->last = *ev;
	snprintf(r->detail, sizeof r->detail, "%s", ev->detail ? ev->detail : "");
	if (ev->kind == TURNC_EV_BOUND)
		r->channel = ev->channel;
}

/* Feeds the client what the server sends until cond holds (3 s at most);
 * data from peers is copied to got. */
static size_t pump(struct turnc *c, struct rec *r, bool (*cond)(const struct rec *), uint8_t *got,
		   size_t cap, struct turnc_data *gd)
{
	uint64_t end = time_mono_ms() + 3000;
	size_t glen = 0;
	while (!cond(r) && time_mono_ms() < end) {
		struct pollfd pf = {r->fd, POLLIN, 0};
		if (poll(&pf, 1, 20) == 1) {
			uint8_t p[2048];
			ssize_t n = recv(r->fd, p, sizeof p, 0);
			struct turnc_data d;
			if (n > 0 && turnc_input(c, p, (size_t)n, time_mono_ms(), &d) == 1 && got) {
				glen = d.len < cap ? d.len : cap;
				memcpy(got, d.data, glen);
				*gd = d;
				return glen;
			}
		}
		turnc_tick(c, time_mono_ms());
	}
	return glen;
}

static bool allocated(const struct rec *r)
{
	return r->ev[TURNC_EV_ALLOCATED] || r->ev[TURNC_EV_FAILED];
}
static bool permitted(const struct rec *r)
{
	return r->ev[TURNC_EV_PERMITTED] || r->ev[TURNC_EV_ERROR];
}
static bool bound(const struct rec *r)
{
	return r->ev[TURNC_EV_BOUND] || r->ev[TURNC_EV_ERROR];
}
static bool refreshed(const struct rec *r)
{
	return r->ev[TURNC_EV_REFRESHED] || r->ev[TURNC_EV_FAILED];
}
static bool closed(const struct rec *r)
{
	return r->ev[TURNC_EV_CLOSED] != 0;
}
static bool never(const struct rec *r)
{
	(void)r;
	return false;
}

static void rec_open(struct rec *r, const struct tt_srv *s)
{
	memset(r, 0, sizeof *r);
	r->srv = s->udp;
	struct net_addr lo;
	net_addr_parse("127.0.0.1:0", 0, &lo);
	assert_int_equal(net_udp_socket(&lo, false, &r->fd), 0);
}

/* Allocate, permit, bind, relay both ways, refresh, deallocate: with the
 * store's user (SHA-256 chosen from the server's offer) or the shared secret. */
static void full_cycle(const char *user, const char *pass, const char *secret)
{
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct rec r;
	rec_open(&r, &s);
	struct turnc_conf cf = {0};
	snprintf(cf.user, sizeof cf.user, "%s", user);
	snprintf(cf.pass, sizeof cf.pass, "%s", pass);
	snprintf(cf.secret, sizeof cf.secret, "%s", secret);
	struct turnc *c;
	assert_int_equal(turnc_alloc(&c, &cf, rec_send, rec_event, &r), 0);
	assert_int_equal(turnc_send(c, &s.udp, "x", 1), EAGAIN);
	assert_int_equal(turnc_start(c, time_mono_ms()), 0);
	pump(c, &r, allocated, NULL, 0, NULL);
	assert_int_equal(r.ev[TURNC_EV_ALLOCATED], 1);
	assert_int_equal(turnc_state(c), TURNC_READY);
	assert_int_equal(turn_allocation_count(s.t), 1);
	const struct net_addr *relay = turnc_relayed(c);
	assert_int_equal(net_addr_family(relay), AF_INET);
	assert_true(net_addr_port(relay) >= 24000 && net_addr_port(relay) <= 24999);
	if (secret[0]) {
		char want[64];
		snprintf(want, sizeof want, ":%s", user);
		assert_non_null(strstr(turnc_username(c), want));
	}

	/* a peer: no permission yet, nothing goes */
	struct net_addr pa, from;
	int pfd = tt_peer_open(&pa);
	assert_int_equal(turnc_send(c, &pa, "early", 5), ENOENT);
	assert_int_equal(turnc_permit(c, &pa, time_mono_ms()), 0);
	pump(c, &r, permitted, NULL, 0, NULL);
	assert_int_equal(r.ev[TURNC_EV_PERMITTED], 1);
	/* a Send indication, and the answer as a Data indication */
	assert_int_equal(turnc_send(c, &pa, "indication", 10), 0);
	uint8_t got[256];
	assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 10);
	assert_memory_equal(got, "indication", 10);
	assert_true(net_addr_eq(&from, relay));
	assert_int_equal(sendto(pfd, "data-ind", 8, 0, &relay->u.sa, net_addr_len(relay)), 8);
	struct turnc_data d;
	assert_int_equal(pump(c, &r, never, got, sizeof got, &d), 8);
	assert_memory_equal(got, "data-ind", 8);
	assert_false(d.channel);
	assert_true(net_addr_eq(&d.peer, &pa));

	/* a channel: then ChannelData both ways */
	assert_int_equal(turnc_bind(c, &pa, time_mono_ms()), 0);
	pump(c, &r, bound, NULL, 0, NULL);
	assert_int_equal(r.ev[TURNC_EV_BOUND], 1);
	assert_int_equal(r.channel, STUN_CHAN_MIN);
	assert_true(turnc_bound(c, &pa));
	assert_int_equal(turnc_send(c, &pa, "over-channel", 12), 0);
	assert_int_equal(r.sentlen, 4 + 12);
	assert_int_equal(r.sent[0], 0x40);
	assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 12);
	assert_memory_equal(got, "over-channel", 12);
	assert_int_equal(sendto(pfd, "chan-back", 9, 0, &relay->u.sa, net_addr_len(relay)), 9);
	assert_int_equal(pump(c, &r, never, got, sizeof got, &d), 9);
	assert_memory_equal(got, "chan-back", 9);
	assert_true(d.channel);
	assert_true(net_addr_eq(&d.peer, &pa));

	/* refreshes come due by the clock: the allocation's, the channel's */
	uint64_t later = time_mono_ms() + 600000;
	assert_true(turnc_next_ms(c) <= later);
	unsigned before = r.nsent;
	turnc_tick(c, later);
	assert_true(r.nsent >= before + 2); /* Refresh and ChannelBind */
	pump(c, &r, refreshed, NULL, 0, NULL);
	assert_int_equal(r.ev[TURNC_EV_REFRESHED], 1);
	assert_int_equal(r.ev[TURNC_EV_ERROR], 0);

	/* deallocation: Refresh with LIFETIME 0 (RFC 8656 7.3) */
	turnc_close(c, time_mono_ms());
	pump(c, &r, closed, NULL, 0, NULL);
	assert_int_equal(r.ev[TURNC_EV_CLOSED], 1);
	assert_int_equal(r.last.code, 0);
	assert_int_equal(turn_allocation_count(s.t), 0);
	turnc_free(c);
	close(pfd);
	close(r.fd);
	tt_srv_stop(&s);
}

static void test_long_term(void **state)
{
	(void)state;
	full_cycle("alice", "wonder", "");
}

static void test_shared_secret(void **state)
{
	(void)state;
	full_cycle("carol", "", SECRET);
}

/* A wrong password ends in FAILED with auth set, after exactly one answer to
 * the challenge (no guessing loop), and nothing is allocated. */
static void test_wrong_password(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	const char *const secrets[] = {"", "not-the-secret"};
	for (size_t k = 0; k < 2; k++) {
		struct rec r;
		rec_open(&r, &s);
		struct turnc_conf cf = {0};
		snprintf(cf.user, sizeof cf.user, "alice");
		snprintf(cf.pass, sizeof cf.pass, "wrong");
		snprintf(cf.secret, sizeof cf.secret, "%s", secrets[k]);
		struct turnc *c;
		assert_int_equal(turnc_alloc(&c, &cf, rec_send, rec_event, &r), 0);
		assert_int_equal(turnc_start(c, time_mono_ms()), 0);
		pump(c, &r, allocated, NULL, 0, NULL);
		assert_int_equal(r.ev[TURNC_EV_FAILED], 1);
		assert_int_equal(r.last.code, 401);
		assert_true(r.last.auth);
		assert_int_equal(r.nsent, 2);
		assert_int_equal(turnc_state(c), TURNC_FAILED);
		assert_int_equal(turn_allocation_count(s.t), 0);
		turnc_close(c, time_mono_ms()); /* nothing to deallocate: closed at once */
		assert_int_equal(r.ev[TURNC_EV_CLOSED], 1);
		assert_int_equal(r.nsent, 2);
		turnc_free(c);
		close(r.fd);
	}
	tt_srv_stop(&s);
}

/* ---- a scripted server ---- */

static void answer(struct turnc *c, const uint8_t *req, size_t reqlen, enum stun_class cls,
		   uint16_t code, void (*more)(struct stun_enc *, void *), void *arg)
{
	struct stun_msg q;
	assert_int_equal(stun_msg_decode(&q, req, reqlen), 0);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &b, &q, cls);
	if (code)
		stun_enc_error(&e, code, NULL);
	if (more)
		more(&e, arg);
	assert_int_equal(stun_enc_end(&e), 0);
	struct turnc_data d;
	assert_int_equal(turnc_input(c, (const uint8_t *)b.data, b.len, 0, &d), 0);
	buf_free(&b);
}

static void challenge_md5(struct stun_enc *e, void *arg)
{
	stun_enc_str(e, STUN_ATTR_REALM, SLICE_LIT("example.org"));
	stun_enc_str(e, STUN_ATTR_NONCE, slice_cstr(arg));
	const uint16_t algs[] = {STUN_PWALG_MD5};
	stun_enc_pwalgs(e, algs, 1);
}

static void relayed_signed(struct stun_enc *e, void *arg)
{
	struct net_addr ra;
	net_addr_parse("198.51.100.7:50000", 0, &ra);
	stun_enc_addr(e, STUN_ATTR_XOR_RELAYED_ADDRESS, &ra.u.sa);
	stun_enc_u32(e, STUN_ATTR_LIFETIME, 300);
	if (arg) {
		uint8_t key[32];
		size_t kl;
		stun_key_long_term(STUN_PWALG_MD5, SLICE_LIT("bob"), SLICE_LIT("example.org"),
				   SLICE_LIT("builder"), key, &kl);
		stun_enc_integrity(e, key, kl);
	}
}

static struct slice attr_s(const struct stun_msg *m, uint16_t t)
{
	const struct stun_attr *a = stun_msg_attr(m, t);
	return a ? stun_attr_slice(a) : (struct slice){0};
}

/* RFC 8489 9.2: 401 -> credentials with the offered algorithm echoed and
 * chosen (MD5 only on offer here); 438 -> the fresh nonce, a new
 * transaction; a success without our integrity (someone who saw the
 * transaction id) is not believed; the signed one is. */
static void test_credential_dance(void **state)
{
	(void)state;
	struct rec r;
	memset(&r, 0, sizeof r);
	r.fd = -1;
	struct turnc_conf cf = {.rto_ms = 100, .lifetime_s = 300};
	snprintf(cf.user, sizeof cf.user, "bob");
	snprintf(cf.pass, sizeof cf.pass, "builder");
	struct turnc *c;
	assert_int_equal(turnc_alloc(&c, &cf, rec_send, rec_event, &r), 0);
	assert_int_equal(turnc_start(c, 0), 0);
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, r.sent, r.sentlen), 0);
	assert_int_equal(m.method, STUN_METHOD_ALLOCATE);
	assert_null(stun_msg_attr(&m, STUN_ATTR_USERNAME));
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_REQUESTED_TRANSPORT));
	uint8_t tid1[12];
	memcpy(tid1, m.tid, 12);

	uint8_t req[2048];
	size_t reqlen = r.sentlen;
	memcpy(req, r.sent, reqlen);
	answer(c, req, reqlen, STUN_CLASS_ERROR, 401, challenge_md5, "nonce-one");
	assert_int_equal(stun_msg_decode(&m, r.sent, r.sentlen), 0);
	assert_memory_not_equal(m.tid, tid1, 12);
	assert_true(slice_eq(attr_s(&m, STUN_ATTR_USERNAME), slice_cstr("bob")));
	assert_true(slice_eq(attr_s(&m, STUN_ATTR_NONCE), slice_cstr("nonce-one")));
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_PASSWORD_ALGORITHMS));
	assert_non_null(stun_msg_attr(&m, STUN_ATTR_PASSWORD_ALGORITHM));
	uint8_t key[32];
	size_t kl;
	stun_key_long_term(STUN_PWALG_MD5, SLICE_LIT("bob"), SLICE_LIT("example.org"),
			   SLICE_LIT("builder"), key, &kl);
	assert_int_equal(stun_msg_check_integrity(&m, key, kl), 0);

	/* stale nonce: again with the new one */
	memcpy(req, r.sent, r.sentlen);
	reqlen = r.sentlen;
	answer(c, req, reqlen, STUN_CLASS_ERROR, 438, challenge_md5, "nonce-two");
	assert_int_equal(stun_msg_decode(&m, r.sent, r.sentlen), 0);
	assert_true(slice_eq(attr_s(&m, STUN_ATTR_NONCE), slice_cstr("nonce-two")));
	assert_int_equal(stun_msg_check_integrity(&m, key, kl), 0);

	/* a forged success (no integrity) is dropped; the request stays */
	memcpy(req, r.sent, r.sentlen);
	reqlen = r.sentlen;
	struct stun_msg q;
	assert_int_equal(stun_msg_decode(&q, req, reqlen), 0);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &b, &q, STUN_CLASS_SUCCESS);
	relayed_signed(&e, NULL);
	assert_int_equal(stun_enc_end(&e), 0);
	struct turnc_data d;
	assert_int_equal(turnc_input(c, (const uint8_t *)b.data, b.len, 0, &d), EBADMSG);
	assert_int_equal(turnc_state(c), TURNC_ALLOCATING);
	/* an answer to a transaction we never sent: not ours */
	b.data[8] ^= 1;
	assert_int_equal(turnc_input(c, (const uint8_t *)b.data, b.len, 0, &d), EBADMSG);
	buf_free(&b);

	answer(c, req, reqlen, STUN_CLASS_SUCCESS, 0, relayed_signed, "signed");
	assert_int_equal(turnc_state(c), TURNC_READY);
	assert_int_equal(r.ev[TURNC_EV_ALLOCATED], 1);
	char s[NET_ADDR_STRLEN];
	assert_string_equal(net_addr_fmt(turnc_relayed(c), s, sizeof s), "198.51.100.7:50000");
	/* lifetime 300: the refresh a minute before the end */
	assert_int_equal(turnc_next_ms(c), 240000);

	/* ChannelData for a channel never bound, a Data indication without
	 * DATA, a request: none of it is data */
	uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 'a', 'b', 'c', 'd'};
	assert_int_equal(turnc_input(c, cd, sizeof cd, 0, &d), EBADMSG);
	buf_init(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_DATA, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &turnc_relayed(c)->u.sa);
	assert_int_equal(stun_enc_end(&e), 0);
	assert_int_equal(turnc_input(c, (const uint8_t *)b.data, b.len, 0, &d), EBADMSG);
	buf_free(&b);
	turnc_free(c);
}

/* No answer: RFC 8489 6.2.1 retransmissions (RTO doubling), then FAILED
 * with code 0; a failed permission is an ERROR, not the allocation's end. */
static void test_timeouts(void **state)
{
	(void)state;
	struct rec r;
	memset(&r, 0, sizeof r);
	r.fd = -1;
	struct turnc_conf cf = {.rto_ms = 100, .max_tries = 4};
	snprintf(cf.user, sizeof cf.user, "bob");
	snprintf(cf.pass, sizeof cf.pass, "builder");
	struct turnc *c;
	assert_int_equal(turnc_alloc(&c, &cf, rec_send, rec_event, &r), 0);
	assert_int_equal(turnc_start(c, 1000), 0);
	const uint64_t at[] = {1100, 1300, 1700};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(turnc_next_ms(c), at[i]);
		turnc_tick(c, at[i] - 1);
		assert_int_equal(r.nsent, i + 1);
		turnc_tick(c, at[i]);
		assert_int_equal(r.nsent, i + 2);
	}
	assert_int_equal(turnc_next_ms(c), 1700 + 1600);
	turnc_tick(c, 3300);
	assert_int_equal(r.ev[TURNC_EV_FAILED], 1);
	assert_int_equal(r.last.code, 0);
	assert_false(r.last.auth);
	assert_int_equal(turnc_next_ms(c), UINT64_MAX);
	turnc_free(c);
	/* turnc_alloc wants credentials */
	struct turnc_conf empty = {0};
	assert_int_equal(turnc_alloc(&c, &empty, rec_send, rec_event, &r), EINVAL);
}

/* probe --turn against the loopback server: both ways over UDP and TCP,
 * the report; a wrong secret is exit 4, a silent server exit 1. */
static void test_probe_turn(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	for (int tcp = 0; tcp < 2; tcp++) {
		struct probe_turn_opts o = {.transport = tcp ? PROBE_TURN_TCP : PROBE_TURN_UDP,
					    .timeout_ms = 3000};
		memcpy(&o.server, tcp ? &s.tcp.u.ss : &s.udp.u.ss, sizeof o.server);
		snprintf(o.cred.user, sizeof o.cred.user, "bob");
		snprintf(o.cred.pass, sizeof o.cred.pass, "builder");
		struct probe_turn_result r;
		assert_int_equal(probe_turn_run(&o, &r), 0);
		assert_true(r.allocated && r.permitted && r.up && r.down && r.channel);
		assert_true(r.deallocated);
		assert_int_equal(probe_turn_exit(&r), 0);
		assert_int_equal(turn_allocation_count(s.t), 0);
		struct buf b;
		buf_init(&b);
		probe_turn_report_json(&o, &r, &b);
		buf_append(&b, "", 1);
		assert_non_null(strstr(b.data, "\"client_to_peer\":true"));
		assert_non_null(
		    strstr(b.data, tcp ? "\"transport\":\"tcp\"" : "\"transport\":\"udp\""));
		buf_reset(&b);
		probe_turn_report_text(&o, &r, &b);
		buf_append(&b, "", 1);
		assert_non_null(strstr(b.data, "TURN works from here"));
		buf_free(&b);
	}
	struct probe_turn_opts o = {.timeout_ms = 3000};
	memcpy(&o.server, &s.udp.u.ss, sizeof o.server);
	snprintf(o.cred.secret, sizeof o.cred.secret, "not-" SECRET);
	struct probe_turn_result r;
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_false(r.allocated);
	assert_true(r.auth_refused);
	assert_int_equal(probe_turn_exit(&r), 4);
	tt_srv_stop(&s);
	/* nobody there */
	o.timeout_ms = 300;
	assert_int_equal(probe_turn_run(&o, &r), 0);
	assert_false(r.answered);
	assert_int_equal(probe_turn_exit(&r), 1);
}

int main(void)
{
	tt_relay_ports = "24400-24599";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_long_term),	   cmocka_unit_test(test_shared_secret),
	    cmocka_unit_test(test_wrong_password), cmocka_unit_test(test_credential_dance),
	    cmocka_unit_test(test_timeouts),	   cmocka_unit_test(test_probe_turn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
