/* The TURN server over loopback sockets: every method, its errors, credentials, quotas, relaying both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth.h"
#include "stun/stun.h"
#include "turn/turn.h"

#define REALM "turn.test"
#define SECRET "s3cret"

/* ---- a server ---- */

struct srv {
	struct conf *conf;
	struct store_cred *creds;
	struct turn *t;
	struct net_addr udp, tcp;
};

static void srv_start(struct srv *s, const char *extra)
{
	static const struct conf_key *const tables[] = {turn_conf_keys, NULL};
	memset(s, 0, sizeof s[0]);
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	char text[2048], err[256];
	snprintf(text, sizeof text,
		 "[turn]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nrealm = " REALM "\n"
		 "static_auth_secret = " SECRET "\nrelay_address = 127.0.0.1\n"
		 "relay_ports = 42000-42999\n%s",
		 extra);
	if (conf_load_string(s->conf, "test", text, err, sizeof err))
		fail_msg("%s", err);
	assert_int_equal(store_cred_alloc(&s->creds), 0);
	struct store_cred_entry e;
	assert_int_equal(auth_ha1_all(SLICE_LIT("alice"), SLICE_LIT(REALM), SLICE_LIT("wonder"), &e), 0);
	assert_int_equal(store_cred_set(s->creds, SLICE_LIT("alice"), SLICE_LIT(REALM), &e), 0);
	assert_int_equal(auth_ha1_all(SLICE_LIT("bob"), SLICE_LIT(REALM), SLICE_LIT("builder"), &e), 0);
	assert_int_equal(store_cred_set(s->creds, SLICE_LIT("bob"), SLICE_LIT(REALM), &e), 0);
	assert_int_equal(turn_start(&s->t, s->conf, s->creds), 0);
	s->udp = *turn_listen_addr(s->t, NET_UDP, 0);
	s->tcp = *turn_listen_addr(s->t, NET_TCP, 0);
}

static void srv_stop(struct srv *s)
{
	turn_free(s->t);
	store_cred_free(s->creds);
	conf_free(s->conf);
}

static int64_t counter(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

/* ---- a client ---- */

struct cli {
	int fd;
	bool tcp;
	struct net_addr srv;
	char user[80], pass[64];
	char nonce[128];
	uint16_t alg; /* 0: RFC 5389 style (no PASSWORD-ALGORITHM) */
	bool sha256, userhash;
	uint8_t key[32];
	size_t keylen;
	uint8_t rx[70000];
	size_t rxlen;
	struct stun_msg m; /* the last answer */
};

static void cli_open(struct cli *c, const struct srv *s, bool tcp, const char *user,
		     const char *pass)
{
	memset(c, 0, sizeof *c);
	c->tcp = tcp;
	c->srv = tcp ? s->tcp : s->udp;
	c->fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	assert_true(c->fd >= 0);
	if (tcp) {
		assert_int_equal(connect(c->fd, &c->srv.u.sa, net_addr_len(&c->srv)), 0);
	} else {
		struct net_addr lo;
		net_addr_parse("127.0.0.1:0", 0, &lo);
		assert_int_equal(bind(c->fd, &lo.u.sa, net_addr_len(&lo)), 0);
	}
	snprintf(c->user, sizeof c->user, "%s", user);
	snprintf(c->pass, sizeof c->pass, "%s", pass);
}

static void cli_close(struct cli *c)
{
	close(c->fd);
}

static void cli_send(struct cli *c, const void *p, size_t l)
{
	ssize_t n = c->tcp ? send(c->fd, p, l, 0)
			   : sendto(c->fd, p, l, 0, &c->srv.u.sa, net_addr_len(&c->srv));
	assert_int_equal(n, (ssize_t)l);
}

/* One datagram or one TCP frame; false when none came within 3 s (that
 * only decides a failure: a test that wants silence asks the counters). */
static bool cli_recv(struct cli *c)
{
	struct pollfd pf = {c->fd, POLLIN, 0};
	if (!c->tcp) {
		if (poll(&pf, 1, 3000) != 1)
			return false;
		ssize_t n = recv(c->fd, c->rx, sizeof c->rx, 0);
		c->rxlen = n > 0 ? (size_t)n : 0;
		return n > 0;
	}
	c->rxlen = 0;
	for (;;) {
		size_t ml;
		int err = c->rxlen ? stun_frame_turn((char *)c->rx, c->rxlen, sizeof c->rx, &ml)
				   : ENODATA;
		if (err == 0) {
			assert_int_equal(ml, c->rxlen); /* one frame at a time here */
			return true;
		}
		assert_int_equal(err, ENODATA);
		if (poll(&pf, 1, 3000) != 1)
			return false;
		/* read byte-exact: a frame's header first, then the rest */
		size_t want = c->rxlen < 4 ? 4 - c->rxlen : 0;
		if (!want) {
			size_t need = (c->rx[0] & 0xc0) == 0x40
					  ? 4 + ((size_t)(c->rx[2] << 8 | c->rx[3]) + 3) / 4 * 4
					  : 20 + (size_t)(c->rx[2] << 8 | c->rx[3]);
			want = need - c->rxlen;
		}
		ssize_t n = recv(c->fd, c->rx + c->rxlen, want, 0);
		if (n <= 0)
			return false;
		c->rxlen += (size_t)n;
	}
}

static void begin(struct buf *b, struct stun_enc *e, uint16_t method)
{
	buf_reset(b);
	stun_enc_begin(e, b, method, STUN_CLASS_REQUEST, NULL);
}

static void derive_key(struct cli *c)
{
	uint16_t alg = c->alg ? c->alg : STUN_PWALG_MD5;
	assert_int_equal(stun_key_long_term((enum stun_pwalg)alg, slice_cstr(c->user), SLICE_LIT(REALM),
					    slice_cstr(c->pass), c->key, &c->keylen),
			 0);
}

static void add_auth(struct cli *c, struct stun_enc *e)
{
	if (c->userhash) {
		uint8_t h[32];
		stun_userhash(slice_cstr(c->user), SLICE_LIT(REALM), h);
		stun_enc_attr(e, STUN_ATTR_USERHASH, h, 32);
	} else {
		stun_enc_str(e, STUN_ATTR_USERNAME, slice_cstr(c->user));
	}
	stun_enc_str(e, STUN_ATTR_REALM, SLICE_LIT(REALM));
	stun_enc_str(e, STUN_ATTR_NONCE, slice_cstr(c->nonce));
	if (c->alg) {
		static const uint16_t offer[] = {STUN_PWALG_SHA256, STUN_PWALG_MD5};
		stun_enc_pwalgs(e, offer, 2);
		uint8_t v[4] = {0, (uint8_t)c->alg, 0, 0};
		stun_enc_attr(e, STUN_ATTR_PASSWORD_ALGORITHM, v, 4);
	}
	derive_key(c);
	if (c->sha256)
		stun_enc_integrity_sha256(e, c->key, c->keylen);
	else
		stun_enc_integrity(e, c->key, c->keylen);
}

/* Sends b, waits for the answer to it, decodes it into c->m: its code (0 for
 * a success). A 401 or 438 leaves its NONCE in c->nonce. */
static int xchg(struct cli *c, struct buf *b)
{
	cli_send(c, b->data, b->len);
	if (!cli_recv(c))
		fail_msg("no answer");
	assert_int_equal(stun_msg_decode(&c->m, c->rx, c->rxlen), 0);
	assert_memory_equal(c->rx + 8, b->data + 8, 12); /* same transaction */
	if (c->m.cls == STUN_CLASS_SUCCESS)
		return 0;
	assert_int_equal(c->m.cls, STUN_CLASS_ERROR);
	uint16_t code;
	assert_int_equal(stun_attr_error(stun_msg_attr(&c->m, STUN_ATTR_ERROR_CODE), &code, NULL), 0);
	const struct stun_attr *n = stun_msg_attr(&c->m, STUN_ATTR_NONCE);
	if (n)
		slice_to_cstr(stun_attr_slice(n), c->nonce, sizeof c->nonce);
	return code;
}

/* An authenticated request's answer carries integrity under our key. */
static void assert_signed(struct cli *c)
{
	if (c->sha256)
		assert_int_equal(stun_msg_check_integrity_sha256(&c->m, c->key, c->keylen), 0);
	else
		assert_int_equal(stun_msg_check_integrity(&c->m, c->key, c->keylen), 0);
}

/* The 401 round trip: learns the nonce. */
static void challenge(struct cli *c)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	assert_int_equal(xchg(c, &b), 401);
	buf_free(&b);
}

/* Allocate with credentials; returns the code, the relayed address in *relay. */
static int allocate(struct cli *c, struct net_addr *relay)
{
	if (!c->nonce[0])
		challenge(c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	add_auth(c, &e);
	int code = xchg(c, &b);
	if (code == 0) {
		assert_signed(c);
		if (relay)
			assert_int_equal(stun_msg_addr(&c->m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay->u.ss), 0);
		struct net_addr mapped, local;
		assert_int_equal(stun_msg_addr(&c->m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped.u.ss), 0);
		net_sock_addr(c->fd, &local);
		assert_true(net_addr_eq(&mapped, &local));
	}
	buf_free(&b);
	return code;
}

static int perm(struct cli *c, const char *peer)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	struct net_addr a;
	assert_int_equal(net_addr_parse(peer, 9, &a), 0);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &a.u.sa);
	add_auth(c, &e);
	int code = xchg(c, &b);
	if (code == 0 || code >= 403)
		assert_signed(c);
	buf_free(&b);
	return code;
}

static int chan_bind(struct cli *c, uint16_t num, const struct net_addr *peer)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_CHANNEL_BIND);
	stun_enc_channel(&e, num);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer->u.sa);
	add_auth(c, &e);
	int code = xchg(c, &b);
	buf_free(&b);
	return code;
}

static int refresh(struct cli *c, uint32_t lifetime)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_u32(&e, STUN_ATTR_LIFETIME, lifetime);
	add_auth(c, &e);
	int code = xchg(c, &b);
	buf_free(&b);
	return code;
}

/* A UDP peer on loopback. */
static int peer_open(struct net_addr *a)
{
	struct net_addr any;
	net_addr_parse("127.0.0.1:0", 0, &any);
	int fd;
	assert_int_equal(net_udp_socket(&any, false, &fd), 0);
	net_sock_addr(fd, a);
	return fd;
}

static size_t peer_recv(int fd, uint8_t *out, size_t cap, struct net_addr *from)
{
	struct pollfd pf = {fd, POLLIN, 0};
	if (poll(&pf, 1, 3000) != 1)
		fail_msg("peer: nothing arrived");
	socklen_t sl = sizeof from->u.ss;
	ssize_t n = recvfrom(fd, out, cap, 0, &from->u.sa, &sl);
	assert_true(n >= 0);
	return (size_t)n;
}

static bool peer_nothing(int fd)
{
	uint8_t x[16];
	return recv(fd, x, sizeof x, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* ---- the cases ---- */

/* RFC 8489 9.2.4: no credentials -> 401 with REALM, NONCE (cookie) and the
 * algorithms, nothing signed, and small (no amplification). */
static void test_challenge(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	int64_t allocs = counter("turn_allocations_total", NULL);
	assert_int_equal(xchg(&c, &b), 401);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_REALM));
	assert_memory_equal(c.nonce, "obMatJos2", 9);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_PASSWORD_ALGORITHMS));
	assert_int_equal(c.m.mi, -1);
	assert_true(c.rxlen <= 120);
	assert_int_equal(counter("turn_allocations_total", NULL), allocs);
	/* another method without credentials: 401 too; an unknown one: 400 */
	begin(&b, &e, STUN_METHOD_REFRESH);
	assert_int_equal(xchg(&c, &b), 401);
	begin(&b, &e, 0x00a);
	assert_int_equal(xchg(&c, &b), 400);
	/* a Binding request is answered as STUN */
	begin(&b, &e, STUN_METHOD_BINDING);
	assert_int_equal(xchg(&c, &b), 0);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_XOR_MAPPED_ADDRESS));
	buf_free(&b);
	cli_close(&c);
	srv_stop(&s);
}

static void test_credentials_refused(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli c;
	int64_t fails = counter("turn_auth_failures_total", NULL);
	cli_open(&c, &s, false, "alice", "wrong");
	assert_int_equal(allocate(&c, NULL), 401);
	assert_null(stun_msg_attr(&c.m, STUN_ATTR_MESSAGE_INTEGRITY)); /* no oracle */
	snprintf(c.user, sizeof c.user, "mallory");
	assert_int_equal(allocate(&c, NULL), 401);
	c.userhash = true; /* a USERHASH of no user */
	assert_int_equal(allocate(&c, NULL), 401);
	c.userhash = false;
	assert_int_equal(counter("turn_auth_failures_total", NULL), fails + 3);
	/* a nonce that is not ours, or not for this source: 438 and a fresh one */
	snprintf(c.user, sizeof c.user, "alice");
	snprintf(c.pass, sizeof c.pass, "wonder");
	char good[128];
	snprintf(good, sizeof good, "%s", c.nonce);
	c.nonce[20] = c.nonce[20] == 'A' ? 'B' : 'A';
	assert_int_equal(allocate(&c, NULL), 438);
	assert_string_equal(c.nonce, good); /* the 438's: valid again (same second) */
	struct net_addr other;
	net_addr_parse("127.0.0.2:1", 0, &other);
	uint8_t key[32] = {0};
	turn_nonce_make(key, REALM, &other, time_wall_s(), c.nonce);
	assert_int_equal(allocate(&c, NULL), 438);
	/* credentials without REALM: 400 */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT("alice"));
	stun_enc_str(&e, STUN_ATTR_NONCE, slice_cstr(c.nonce));
	stun_enc_integrity(&e, "x", 1);
	assert_int_equal(xchg(&c, &b), 400);
	/* RFC 8489 9.2.4: an offer that did not come back as sent (bid-down) */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT("alice"));
	stun_enc_str(&e, STUN_ATTR_REALM, SLICE_LIT(REALM));
	stun_enc_str(&e, STUN_ATTR_NONCE, slice_cstr(c.nonce));
	static const uint16_t md5only[] = {STUN_PWALG_MD5};
	stun_enc_pwalgs(&e, md5only, 1);
	stun_enc_attr(&e, STUN_ATTR_PASSWORD_ALGORITHM, "\x00\x01\x00\x00", 4);
	c.alg = 0;
	derive_key(&c);
	stun_enc_integrity(&e, c.key, c.keylen);
	assert_int_equal(xchg(&c, &b), 400);
	assert_int_equal(turn_allocation_count(s.t), 0);
	/* the nonce the 438 gave works */
	assert_int_equal(allocate(&c, NULL), 0);
	buf_free(&b);
	cli_close(&c);
	srv_stop(&s);
}

/* MD5 (RFC 5389 style), SHA-256 with PASSWORD-ALGORITHMS and
 * MESSAGE-INTEGRITY-SHA256, USERHASH, and the shared secret. */
static void test_credential_schemes(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli c[5];
	struct net_addr relay;
	cli_open(&c[0], &s, false, "alice", "wonder");
	assert_int_equal(allocate(&c[0], &relay), 0);
	assert_int_equal(c[0].m.mi256, -1); /* answered as asked: SHA-1 integrity */

	cli_open(&c[1], &s, false, "bob", "builder");
	c[1].alg = STUN_PWALG_SHA256;
	c[1].sha256 = true;
	assert_int_equal(allocate(&c[1], &relay), 0);
	assert_true(c[1].m.mi256 >= 0);
	assert_int_equal(c[1].keylen, 32);

	cli_open(&c[2], &s, false, "alice", "wonder");
	c[2].alg = STUN_PWALG_SHA256;
	c[2].userhash = true;
	c[2].sha256 = true;
	assert_int_equal(allocate(&c[2], &relay), 0);

	/* coturn's use-auth-secret: "expiry:user", password from the secret */
	char user[64], pw[29];
	snprintf(user, sizeof user, "%lld:carol", (long long)time_wall_s() + 3600);
	assert_int_equal(turn_secret_password(SLICE_LIT(SECRET), slice_cstr(user), pw), 0);
	cli_open(&c[3], &s, false, user, pw);
	assert_int_equal(allocate(&c[3], &relay), 0);
	/* an expired one is refused although the password fits */
	snprintf(user, sizeof user, "%lld:carol", (long long)time_wall_s() - 1);
	assert_int_equal(turn_secret_password(SLICE_LIT(SECRET), slice_cstr(user), pw), 0);
	cli_open(&c[4], &s, false, user, pw);
	assert_int_equal(allocate(&c[4], &relay), 401);
	assert_int_equal(turn_allocation_count(s.t), 4);
	for (int i = 0; i < 5; i++)
		cli_close(&c[i]);
	srv_stop(&s);
}

static void test_allocate_errors(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	challenge(&c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	/* no REQUESTED-TRANSPORT: 400; TCP (RFC 6062): 442 */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 400);
	assert_signed(&c);
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_TCP);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 442);
	/* an unknown comprehension-required attribute: 420 listing it */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_u32(&e, 0x7f01, 0);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 420);
	uint16_t unk[4];
	size_t n;
	assert_int_equal(stun_attr_unknown(stun_msg_attr(&c.m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(unk[0], 0x7f01);
	/* one the STUN codec knows but TURN does not act on is refused too */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_change(&e, STUN_CHANGE_IP);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 420);
	/* RESERVATION-TOKEN with EVEN-PORT: 400; an unknown token: 508 */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, "12345678", 8);
	stun_enc_even_port(&e, false);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 400);
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, "12345678", 8);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 508);
	/* IPv6 without relay_address6: 440; dual: IPv4 with ADDRESS-ERROR-CODE */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 440);
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 400); /* both at once: 400 */
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
	add_auth(&c, &e);
	uint8_t tid[12];
	memcpy(tid, b.data + 8, 12);
	assert_int_equal(xchg(&c, &b), 0);
	const struct stun_attr *ae = stun_msg_attr(&c.m, STUN_ATTR_ADDRESS_ERROR_CODE);
	assert_non_null(ae);
	assert_memory_equal(ae->v, "\x02\x00\x04\x28", 4);
	struct net_addr relay;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay.u.ss), 0);
	assert_int_equal(net_addr_family(&relay), AF_INET);
	/* RFC 8656 7.2: the same request again (a retransmission) gets the same
	 * allocation; a new one on that 5-tuple gets 437 */
	assert_int_equal(xchg(&c, &b), 0);
	struct net_addr again;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &again.u.ss), 0);
	assert_true(net_addr_eq(&relay, &again));
	assert_int_equal(allocate(&c, NULL), 437);
	assert_int_equal(turn_allocation_count(s.t), 1);
	/* another user on this 5-tuple: 441 */
	snprintf(c.user, sizeof c.user, "bob");
	snprintf(c.pass, sizeof c.pass, "builder");
	assert_int_equal(refresh(&c, 600), 441);
	assert_int_equal(perm(&c, "127.0.0.1:9"), 441);
	buf_free(&b);
	cli_close(&c);
	srv_stop(&s);
}

static void test_even_port_reservation(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli a, b2;
	cli_open(&a, &s, false, "alice", "wonder");
	cli_open(&b2, &s, false, "alice", "wonder");
	challenge(&a);
	snprintf(b2.nonce, sizeof b2.nonce, "%s", a.nonce); /* same source IP: valid */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_even_port(&e, true);
	add_auth(&a, &e);
	assert_int_equal(xchg(&a, &b), 0);
	struct net_addr r1, r2;
	assert_int_equal(stun_msg_addr(&a.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r1.u.ss), 0);
	assert_int_equal(net_addr_port(&r1) % 2, 0);
	const struct stun_attr *tok = stun_msg_attr(&a.m, STUN_ATTR_RESERVATION_TOKEN);
	assert_non_null(tok);
	assert_int_equal(tok->len, 8);
	uint8_t token[8];
	memcpy(token, tok->v, 8);
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, token, 8);
	add_auth(&b2, &e);
	assert_int_equal(xchg(&b2, &b), 0);
	assert_int_equal(stun_msg_addr(&b2.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r2.u.ss), 0);
	assert_int_equal(net_addr_port(&r2), net_addr_port(&r1) + 1);
	buf_free(&b);
	cli_close(&a);
	cli_close(&b2);
	srv_stop(&s);
}

/* Permissions, Send/Data, channels and ChannelData both ways, over UDP or TCP. */
static void relay_both_ways(bool tcp)
{
	struct srv s;
	srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct cli c;
	cli_open(&c, &s, tcp, "alice", "wonder");
	struct net_addr relay, pa, from;
	assert_int_equal(allocate(&c, &relay), 0);
	int pfd = peer_open(&pa);
	char ps[NET_ADDR_STRLEN];
	net_addr_fmt(&pa, ps, sizeof ps);
	uint8_t got[2048];

	/* Send before any permission: dropped, nothing reaches the peer */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	int64_t noperm = counter("turn_dropped_total", "reason=\"no_permission\"");
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &pa.u.sa);
	stun_enc_attr(&e, STUN_ATTR_DATA, "early", 5);
	cli_send(&c, b.data, b.len);
	/* the Binding answer after it proves the server has read it */
	struct buf q;
	buf_init(&q);
	begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(xchg(&c, &q), 0);
	assert_int_equal(counter("turn_dropped_total", "reason=\"no_permission\""), noperm + 1);
	assert_true(peer_nothing(pfd));

	assert_int_equal(perm(&c, ps), 0);
	cli_send(&c, b.data, b.len);
	size_t n = peer_recv(pfd, got, sizeof got, &from);
	assert_int_equal(n, 5);
	assert_memory_equal(got, "early", 5);
	assert_true(net_addr_eq(&from, &relay)); /* from the relayed address */

	/* the peer answers: a Data indication with its address */
	assert_int_equal(sendto(pfd, "pong!", 5, 0, &relay.u.sa, net_addr_len(&relay)), 5);
	assert_true(cli_recv(&c));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, c.rx, c.rxlen), 0);
	assert_int_equal(m.method, STUN_METHOD_DATA);
	assert_int_equal(m.cls, STUN_CLASS_INDICATION);
	struct net_addr xp;
	assert_int_equal(stun_msg_addr(&m, STUN_ATTR_XOR_PEER_ADDRESS, &xp.u.ss), 0);
	assert_true(net_addr_eq(&xp, &pa));
	const struct stun_attr *d = stun_msg_attr(&m, STUN_ATTR_DATA);
	assert_int_equal(d->len, 5);
	assert_memory_equal(d->v, "pong!", 5);

	/* a channel; bad numbers and conflicting bindings are 400 */
	assert_int_equal(chan_bind(&c, 0x3fff, &pa), 400);
	assert_int_equal(chan_bind(&c, 0x8000, &pa), 400);
	assert_int_equal(chan_bind(&c, 0x4001, &pa), 0);
	assert_int_equal(chan_bind(&c, 0x4001, &pa), 0); /* a refresh */
	struct net_addr pb = pa;
	net_addr_set_port(&pb, (uint16_t)(net_addr_port(&pa) + 1));
	assert_int_equal(chan_bind(&c, 0x4001, &pb), 400);
	assert_int_equal(chan_bind(&c, 0x4002, &pa), 400);

	/* ChannelData to the peer: 7 bytes, padded to 8 on TCP */
	uint8_t cd[12] = {0x40, 0x01, 0x00, 0x07, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 0};
	cli_send(&c, cd, tcp ? 12 : 11);
	n = peer_recv(pfd, got, sizeof got, &from);
	assert_int_equal(n, 7);
	assert_memory_equal(got, "channel", 7);
	/* and back: ChannelData, padded on TCP (RFC 8656 12.5), not padded on UDP */
	assert_int_equal(sendto(pfd, "reply", 5, 0, &relay.u.sa, net_addr_len(&relay)), 5);
	assert_true(cli_recv(&c));
	assert_int_equal(c.rxlen, tcp ? 12 : 9);
	assert_memory_equal(c.rx, "\x40\x01\x00\x05reply", 9);
	/* a peer without a permission is not relayed to the client */
	struct net_addr pc;
	int pfd2 = peer_open(&pc);
	noperm = counter("turn_dropped_total", "reason=\"no_permission\"");
	(void)noperm;
	assert_int_equal(sendto(pfd2, "intruder", 8, 0, &relay.u.sa, net_addr_len(&relay)), 8);
	/* pc is on 127.0.0.1 too, and permissions are per IP (RFC 8656 9): it
	 * passes; one from another IP does not (below, 127.0.0.2) */
	assert_true(cli_recv(&c));
	struct net_addr other;
	net_addr_parse("127.0.0.2:0", 0, &other);
	int ofd;
	assert_int_equal(net_udp_socket(&other, false, &ofd), 0);
	int64_t np0 = counter("turn_dropped_total", "reason=\"no_permission\"");
	assert_int_equal(sendto(ofd, "intruder", 8, 0, &relay.u.sa, net_addr_len(&relay)), 8);
	begin(&q, &e, STUN_METHOD_BINDING);
	for (int i = 0; i < 300 && counter("turn_dropped_total", "reason=\"no_permission\"") == np0; i++)
		usleep(10000);
	assert_int_equal(counter("turn_dropped_total", "reason=\"no_permission\""), np0 + 1);
	assert_int_equal(xchg(&c, &q), 0); /* the next thing the client sees is this answer */
	/* counters by direction */
	assert_true(counter("turn_relayed_packets_total", "direction=\"to_peer\"") >= 2);
	assert_true(counter("turn_relayed_packets_total", "direction=\"to_client\"") >= 2);
	/* ctl allocations shows it */
	struct buf dump;
	buf_init(&dump);
	assert_int_equal(turn_dump_json(s.t, &dump), 0);
	buf_append(&dump, "", 1);
	assert_non_null(strstr(dump.data, "\"user\":\"alice\""));
	assert_non_null(strstr(dump.data, "\"number\":16385"));
	buf_free(&dump);
	/* Refresh 0 deletes it (RFC 8656 8) */
	assert_int_equal(refresh(&c, 0), 0);
	assert_int_equal(turn_allocation_count(s.t), 0);
	assert_int_equal(refresh(&c, 600), 437);
	close(ofd);
	close(pfd);
	close(pfd2);
	buf_free(&b);
	buf_free(&q);
	cli_close(&c);
	srv_stop(&s);
}

static void test_relay_udp(void **state)
{
	(void)state;
	relay_both_ways(false);
}

static void test_relay_tcp(void **state)
{
	(void)state;
	relay_both_ways(true);
}

/* The SSRF guard through the protocol: with nothing allowed, loopback and
 * private peers get 403 and count, in any spelling; another allocation's
 * relayed address on this server (also loopback here) is let through. */
static void test_peer_denied(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "");
	struct cli a, b;
	struct net_addr ra, rb;
	cli_open(&a, &s, false, "alice", "wonder");
	cli_open(&b, &s, false, "bob", "builder");
	assert_int_equal(allocate(&a, &ra), 0);
	assert_int_equal(allocate(&b, &rb), 0);
	int64_t denied = counter("turn_denied_peers_total", NULL);
	static const char *bad[] = {"127.0.0.1:5060", "10.0.0.1:80", "192.168.1.1:53",
				    "169.254.169.254:80", "[::ffff:127.0.0.1]:22",
				    "100.64.0.1:5060", "0.0.0.0:22"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (perm(&a, bad[i]) != 403)
			fail_msg("%s was not refused", bad[i]);
	assert_int_equal(counter("turn_denied_peers_total", NULL), denied + (int64_t)ARRAY_SIZE(bad));
	char rbs[NET_ADDR_STRLEN];
	net_addr_fmt(&rb, rbs, sizeof rbs);
	assert_int_equal(perm(&a, rbs), 0);
	assert_int_equal(chan_bind(&a, 0x4000, &rb), 0);
	/* b lets a in, and data flows between the two allocations */
	char ras[NET_ADDR_STRLEN];
	net_addr_fmt(&ra, ras, sizeof ras);
	assert_int_equal(perm(&b, ras), 0);
	uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g'};
	cli_send(&a, cd, sizeof cd);
	assert_true(cli_recv(&b));
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, b.rx, b.rxlen), 0);
	assert_int_equal(m.method, STUN_METHOD_DATA);
	const struct stun_attr *d = stun_msg_attr(&m, STUN_ATTR_DATA);
	assert_memory_equal(d->v, "ping", 4);
	/* a channel to a denied peer: 403; the same port number on the relay IP
	 * that is not an allocation: 403 */
	struct net_addr lo;
	net_addr_parse("127.0.0.1:5060", 0, &lo);
	assert_int_equal(chan_bind(&a, 0x4001, &lo), 403);
	/* b goes: a's channel to it stops working (the filter is asked again) */
	assert_int_equal(refresh(&b, 0), 0);
	int64_t d0 = counter("turn_denied_peers_total", NULL);
	cli_send(&a, cd, sizeof cd);
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(xchg(&a, &q), 0);
	assert_int_equal(counter("turn_denied_peers_total", NULL), d0 + 1);
	buf_free(&q);
	cli_close(&a);
	cli_close(&b);
	srv_stop(&s);
}

static void test_quotas(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "allowed_peers = 127.0.0.0/8\nmax_allocations_per_user = 2\n"
		      "max_allocations = 3\nmax_permissions = 2\nmax_channels = 1\n");
	struct cli c[5];
	int64_t e486 = counter("turn_errors_total", "code=\"486\"");
	int64_t e508 = counter("turn_errors_total", "code=\"508\"");
	cli_open(&c[0], &s, false, "alice", "wonder");
	cli_open(&c[1], &s, false, "alice", "wonder");
	cli_open(&c[2], &s, false, "alice", "wonder");
	cli_open(&c[3], &s, false, "bob", "builder");
	cli_open(&c[4], &s, false, "bob", "builder");
	assert_int_equal(allocate(&c[0], NULL), 0);
	assert_int_equal(allocate(&c[1], NULL), 0);
	assert_int_equal(allocate(&c[2], NULL), 486); /* alice's third */
	assert_int_equal(allocate(&c[3], NULL), 0);
	assert_int_equal(allocate(&c[4], NULL), 508); /* the server's fourth */
	assert_int_equal(counter("turn_errors_total", "code=\"486\""), e486 + 1);
	/* permissions and channels per allocation */
	assert_int_equal(perm(&c[0], "127.0.0.1:1"), 0);
	assert_int_equal(perm(&c[0], "127.0.0.2:1"), 0);
	assert_int_equal(perm(&c[0], "127.0.0.1:2"), 0); /* same IP: a refresh */
	assert_int_equal(perm(&c[0], "127.0.0.3:1"), 508);
	struct net_addr p1, p2;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	net_addr_parse("127.0.0.1:8", 0, &p2);
	assert_int_equal(chan_bind(&c[0], 0x4000, &p1), 0);
	assert_int_equal(chan_bind(&c[0], 0x4001, &p2), 508);
	assert_int_equal(counter("turn_errors_total", "code=\"508\""), e508 + 3);
	for (int i = 0; i < 5; i++)
		cli_close(&c[i]);
	srv_stop(&s);
}

static void test_bandwidth(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "allowed_peers = 127.0.0.0/8\nbandwidth = 8\n"); /* 1000 B/s */
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	struct net_addr relay, pa;
	assert_int_equal(allocate(&c, &relay), 0);
	int pfd = peer_open(&pa);
	assert_int_equal(chan_bind(&c, 0x4000, &pa), 0);
	int64_t bw = counter("turn_dropped_total", "reason=\"bandwidth\"");
	uint8_t cd[4 + 400] = {0x40, 0x00, 0x01, 0x90};
	for (int i = 0; i < 20; i++) /* 8,000 bytes at once against 1,000 a second */
		cli_send(&c, cd, sizeof cd);
	struct buf q;
	buf_init(&q);
	struct stun_enc e;
	begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(xchg(&c, &q), 0);
	int64_t dropped = counter("turn_dropped_total", "reason=\"bandwidth\"") - bw;
	assert_true(dropped >= 10 && dropped <= 18); /* the first second's 1,000 passed */
	buf_free(&q);
	close(pfd);
	cli_close(&c);
	srv_stop(&s);
}

/* Per-source budget: a source over it gets no answers (counted). */
static void test_rate_limit(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "rate = 1\nburst = 3\n");
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	int64_t r0 = counter("turn_dropped_total", "reason=\"rate\"");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	for (int i = 0; i < 3; i++) {
		begin(&b, &e, STUN_METHOD_ALLOCATE);
		assert_int_equal(xchg(&c, &b), 401);
	}
	/* ten more at once: at most what refilled meanwhile (1/s) is answered */
	for (int i = 0; i < 10; i++) {
		begin(&b, &e, STUN_METHOD_ALLOCATE);
		cli_send(&c, b.data, b.len);
	}
	for (int i = 0; i < 300 && counter("turn_dropped_total", "reason=\"rate\"") < r0 + 8; i++)
		usleep(10000);
	assert_true(counter("turn_dropped_total", "reason=\"rate\"") >= r0 + 8);
	buf_free(&b);
	cli_close(&c);
	srv_stop(&s);
}

/* The budgets are per allocation and per TCP connection too: a flood from
 * other ports of the same address (a busy NAT) does not starve an
 * allocation's refreshes, and one TCP connection's does not starve another's. */
static void test_rate_budgets_apart(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "rate = 1\nburst = 3\n");
	struct cli a, flood, t1, t2;
	cli_open(&a, &s, false, "alice", "wonder");
	assert_int_equal(allocate(&a, NULL), 0); /* 2 of the address's 3 */
	cli_open(&flood, &s, false, "bob", "builder");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	int64_t r0 = counter("turn_dropped_total", "reason=\"rate\"");
	for (int i = 0; i < 10; i++) {
		begin(&b, &e, STUN_METHOD_ALLOCATE);
		cli_send(&flood, b.data, b.len);
	}
	for (int i = 0; i < 300 && counter("turn_dropped_total", "reason=\"rate\"") < r0 + 7; i++)
		usleep(10000);
	assert_true(counter("turn_dropped_total", "reason=\"rate\"") >= r0 + 7);
	assert_int_equal(refresh(&a, 600), 0); /* its own budget */
	assert_int_equal(perm(&a, "198.18.0.9:1"), 0);
	/* TCP: one connection over its budget, another one answered */
	cli_open(&t1, &s, true, "alice", "wonder");
	cli_open(&t2, &s, true, "alice", "wonder");
	for (int i = 0; i < 3; i++) {
		begin(&b, &e, STUN_METHOD_ALLOCATE);
		assert_int_equal(xchg(&t1, &b), 401);
	}
	int64_t r1 = counter("turn_dropped_total", "reason=\"rate\"");
	for (int i = 0; i < 10; i++) {
		begin(&b, &e, STUN_METHOD_ALLOCATE);
		cli_send(&t1, b.data, b.len);
	}
	for (int i = 0; i < 300 && counter("turn_dropped_total", "reason=\"rate\"") < r1 + 7; i++)
		usleep(10000);
	assert_true(counter("turn_dropped_total", "reason=\"rate\"") >= r1 + 7);
	assert_int_equal(allocate(&t2, NULL), 0);
	buf_free(&b);
	cli_close(&a);
	cli_close(&flood);
	cli_close(&t1);
	cli_close(&t2);
	srv_stop(&s);
}

/* Lifetimes: the answer's LIFETIME follows RFC 8656 7.2, and an allocation
 * left alone past it goes (the clock jumps; the sweep runs each second). */
/* A live channel whose permission expired (300 s against the channel's
 * 600) is refreshed after the client filled its permissions with others:
 * the binding's permission must still respect max_permissions (508), not
 * be written past the table. */
static void test_channel_refresh_perm_bound(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "allowed_peers = 127.0.0.0/8\nmax_permissions = 1\n");
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(allocate(&c, NULL), 0);
	struct net_addr p1;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	assert_int_equal(chan_bind(&c, 0x4000, &p1), 0);
	int64_t perms = counter("turn_permissions", NULL);
	time_mono_advance(301 * 1000); /* the permission goes, the channel stays */
	for (int i = 0; i < 500 && counter("turn_permissions", NULL) == perms; i++)
		usleep(10000);
	assert_int_equal(counter("turn_permissions", NULL), perms - 1);
	assert_int_equal(perm(&c, "127.0.0.2:1"), 0); /* the one permission */
	assert_int_equal(chan_bind(&c, 0x4000, &p1), 508);
	assert_int_equal(counter("turn_permissions", NULL), perms);
	cli_close(&c);
	srv_stop(&s);
}

/* The rest of the 400s, and 508 when the relay port range is used up. */
static void test_more_errors(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "allowed_peers = 127.0.0.0/8\nrelay_ports = 42900-42901\n");
	struct cli c[3];
	for (int i = 0; i < 3; i++)
		cli_open(&c[i], &s, false, "alice", "wonder");
	assert_int_equal(allocate(&c[0], NULL), 0);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	/* CreatePermission without a peer, ChannelBind without a number */
	begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	add_auth(&c[0], &e);
	assert_int_equal(xchg(&c[0], &b), 400);
	begin(&b, &e, STUN_METHOD_CHANNEL_BIND);
	struct net_addr p1;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p1.u.sa);
	add_auth(&c[0], &e);
	assert_int_equal(xchg(&c[0], &b), 400);
	/* a peer address of a bad length, a family that is neither */
	begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	stun_enc_attr(&e, STUN_ATTR_XOR_PEER_ADDRESS, "\x00\x01\x00\x07\x01\x02", 6);
	add_auth(&c[0], &e);
	assert_int_equal(xchg(&c[0], &b), 400);
	begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_attr(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, "\x03\x00\x00\x00", 4);
	add_auth(&c[0], &e);
	assert_int_equal(xchg(&c[0], &b), 400);
	/* a Send indication from a 5-tuple without an allocation: dropped, counted */
	int64_t bad = counter("turn_dropped_total", "reason=\"malformed\"");
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p1.u.sa);
	stun_enc_attr(&e, STUN_ATTR_DATA, "x", 1);
	cli_send(&c[1], b.data, b.len);
	begin(&b, &e, STUN_METHOD_BINDING);
	assert_int_equal(xchg(&c[1], &b), 0);
	assert_int_equal(counter("turn_dropped_total", "reason=\"malformed\""), bad + 1);
	/* two relay ports: the second allocation takes the last, the third gets 508 */
	assert_int_equal(allocate(&c[1], NULL), 0);
	assert_int_equal(allocate(&c[2], NULL), 508);
	buf_free(&b);
	for (int i = 0; i < 3; i++)
		cli_close(&c[i]);
	srv_stop(&s);
}

static void test_expiry(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "max_lifetime = 1200\n");
	struct cli c;
	cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(allocate(&c, NULL), 0);
	uint32_t life;
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 600);
	assert_int_equal(refresh(&c, 5000), 0);
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 1200);
	assert_int_equal(refresh(&c, 30), 0);
	assert_int_equal(stun_attr_u32(stun_msg_attr(&c.m, STUN_ATTR_LIFETIME), &life), 0);
	assert_int_equal(life, 600);
	int64_t exp = counter("turn_allocations_expired_total", NULL);
	time_mono_advance(601 * 1000);
	for (int i = 0; i < 500 && turn_allocation_count(s.t); i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 0);
	assert_int_equal(counter("turn_allocations_expired_total", NULL), exp + 1);
	cli_close(&c);
	srv_stop(&s);
}

/* A stranger's TCP connections: bounded per address, counted. */
static void test_tcp_caps(void **state)
{
	(void)state;
	struct srv s;
	srv_start(&s, "tcp_max_connections_per_address = 2\n");
	int64_t r0 = counter("turn_tcp_refused_total", NULL);
	struct cli c[3];
	for (int i = 0; i < 3; i++)
		cli_open(&c[i], &s, true, "alice", "wonder");
	/* the third is closed at accept: it reads end of file */
	struct pollfd pf = {c[2].fd, POLLIN, 0};
	assert_int_equal(poll(&pf, 1, 3000), 1);
	uint8_t x[4];
	assert_true(recv(c[2].fd, x, sizeof x, 0) <= 0);
	assert_int_equal(counter("turn_tcp_refused_total", NULL), r0 + 1);
	/* the first two work */
	assert_int_equal(allocate(&c[0], NULL), 0);
	assert_int_equal(allocate(&c[1], NULL), 0);
	/* one closing takes its allocation with it */
	cli_close(&c[0]);
	for (int i = 0; i < 300 && turn_allocation_count(s.t) != 1; i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 1);
	cli_close(&c[1]);
	cli_close(&c[2]);
	srv_stop(&s);
}

/* RFC 8656 with RFC 6156: an IPv6 relay from an IPv4 client, a dual
 * allocation, relaying to an IPv6 peer, and 443 for the other family. */
static void test_ipv6_and_dual(void **state)
{
	(void)state;
	struct net_addr v6lo;
	net_addr_parse("[::1]:0", 0, &v6lo);
	int probe;
	if (net_udp_socket(&v6lo, false, &probe)) {
		skip(); /* no IPv6 loopback here */
		return;
	}
	close(probe);
	struct srv s;
	srv_start(&s, "relay_address6 = ::1\nallowed_peers = 127.0.0.0/8, ::1\n");
	struct cli c, d;
	cli_open(&c, &s, false, "alice", "wonder");
	challenge(&c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 0);
	struct net_addr relay;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay.u.ss), 0);
	assert_int_equal(net_addr_family(&relay), AF_INET6);
	/* an IPv4 peer for an IPv6-only allocation: 443 */
	assert_int_equal(perm(&c, "127.0.0.1:9"), 443);
	/* an IPv6 peer: channel, data both ways */
	int pfd;
	assert_int_equal(net_udp_socket(&v6lo, false, &pfd), 0);
	struct net_addr pa, from;
	net_sock_addr(pfd, &pa);
	assert_int_equal(chan_bind(&c, 0x4000, &pa), 0);
	uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 's', 'i', 'x', '!'};
	cli_send(&c, cd, sizeof cd);
	uint8_t got[64];
	assert_int_equal(peer_recv(pfd, got, sizeof got, &from), 4);
	assert_memory_equal(got, "six!", 4);
	assert_true(net_addr_eq(&from, &relay));
	assert_int_equal(sendto(pfd, "back", 4, 0, &relay.u.sa, net_addr_len(&relay)), 4);
	assert_true(cli_recv(&c));
	assert_int_equal(c.rxlen, 8);
	assert_memory_equal(c.rx, "\x40\x00\x00\x04" "back", 8);
	/* dual: two relayed addresses, one per family; Refresh asking for a
	 * family keeps to what it has */
	cli_open(&d, &s, false, "bob", "builder");
	challenge(&d);
	begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	add_auth(&d, &e);
	assert_int_equal(xchg(&d, &b), 0);
	int fams = 0;
	for (size_t i = 0; i < d.m.nattr; i++)
		if (d.m.attr[i].type == STUN_ATTR_XOR_RELAYED_ADDRESS) {
			struct net_addr r;
			assert_int_equal(stun_attr_addr(&d.m, &d.m.attr[i], &r.u.ss), 0);
			fams |= net_addr_family(&r) == AF_INET6 ? 2 : 1;
		}
	assert_int_equal(fams, 3);
	assert_null(stun_msg_attr(&d.m, STUN_ATTR_ADDRESS_ERROR_CODE));
	assert_int_equal(perm(&d, "127.0.0.1:9"), 0);
	assert_int_equal(perm(&d, "[::1]:9"), 0);
	begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 0);
	begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
	add_auth(&c, &e);
	assert_int_equal(xchg(&c, &b), 443);
	close(pfd);
	buf_free(&b);
	cli_close(&c);
	cli_close(&d);
	srv_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_credentials_refused),
	    cmocka_unit_test(test_credential_schemes),
	    cmocka_unit_test(test_allocate_errors),
	    cmocka_unit_test(test_even_port_reservation),
	    cmocka_unit_test(test_ipv6_and_dual),
	    cmocka_unit_test(test_relay_udp),
	    cmocka_unit_test(test_relay_tcp),
	    cmocka_unit_test(test_peer_denied),
	    cmocka_unit_test(test_quotas),
	    cmocka_unit_test(test_more_errors),
	    cmocka_unit_test(test_bandwidth),
	    cmocka_unit_test(test_rate_limit),
	    cmocka_unit_test(test_rate_budgets_apart),
	    cmocka_unit_test(test_tcp_caps),
	    cmocka_unit_test(test_channel_refresh_perm_bound),
	    cmocka_unit_test(test_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
