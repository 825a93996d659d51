/* A TURN server on loopback and a test client for it (see turnc.h). */
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

#include "turnc.h"

/* ---- a server ---- */

/* Below the ephemeral range (32768-60999 by default): a port the kernel gives
 * a client socket of any test running beside us cannot then be taken. Each
 * binary narrows it to its own part (24000-25199 in all). */
const char *tt_relay_ports = "24000-24999";

void tt_srv_start(struct tt_srv *s, const char *extra)
{
	const struct conf_key *const tables[] = {turn_conf_keys, NULL};
	memset(s, 0, sizeof s[0]);
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	char text[2048], err[256];
	snprintf(text, sizeof text,
		 "[turn]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nrealm = " REALM "\n"
		 "static_auth_secret = " SECRET "\nrelay_address = 127.0.0.1\n"
		 "relay_ports = %s\n%s%s",
		 tt_relay_ports,
		 /* the kernel path only where a test asks for it (test_turn_fast) */
		 strstr(extra, "fastpath") ? "" : "fastpath = off\n", extra);
	if (conf_load_string(s->conf, "test", text, err, sizeof err))
		fail_msg("%s", err);
	assert_int_equal(store_cred_alloc(&s->creds), 0);
	struct store_cred_entry e;
	assert_int_equal(
	    auth_ha1_all(SLICE_LIT("alice"), SLICE_LIT(REALM), SLICE_LIT("wonder"), &e), 0);
	assert_int_equal(store_cred_set(s->creds, SLICE_LIT("alice"), SLICE_LIT(REALM), &e), 0);
	assert_int_equal(auth_ha1_all(SLICE_LIT("bob"), SLICE_LIT(REALM), SLICE_LIT("builder"), &e),
			 0);
	assert_int_equal(store_cred_set(s->creds, SLICE_LIT("bob"), SLICE_LIT(REALM), &e), 0);
	assert_int_equal(turn_start(&s->t, s->conf, s->creds), 0);
	s->udp = *turn_listen_addr(s->t, NET_UDP, 0);
	s->tcp = *turn_listen_addr(s->t, NET_TCP, 0);
}

void tt_srv_stop(struct tt_srv *s)
{
	turn_free(s->t);
	store_cred_free(s->creds);
	conf_free(s->conf);
}

int64_t tt_counter(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

/* ---- a client ---- */

void tt_cli_open(struct tt_cli *c, const struct tt_srv *s, bool tcp, const char *user,
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

void tt_cli_close(struct tt_cli *c)
{
	close(c->fd);
}

void tt_cli_send(struct tt_cli *c, const void *p, size_t l)
{
	ssize_t n = c->tcp ? send(c->fd, p, l, 0)
			   : sendto(c->fd, p, l, 0, &c->srv.u.sa, net_addr_len(&c->srv));
	assert_int_equal(n, (ssize_t)l);
}

/* One datagram or one TCP frame; false when none came within 3 s (that
 * only decides a failure: a test that wants silence asks the counters). */
bool tt_cli_recv(struct tt_cli *c)
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

void tt_begin(struct buf *b, struct stun_enc *e, uint16_t method)
{
	buf_reset(b);
	stun_enc_begin(e, b, method, STUN_CLASS_REQUEST, NULL);
}

void tt_derive_key(struct tt_cli *c)
{
	uint16_t alg = c->alg ? c->alg : STUN_PWALG_MD5;
	assert_int_equal(stun_key_long_term((enum stun_pwalg)alg, slice_cstr(c->user),
					    SLICE_LIT(REALM), slice_cstr(c->pass), c->key,
					    &c->keylen),
			 0);
}

void tt_add_auth(struct tt_cli *c, struct stun_enc *e)
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
		const uint16_t offer[] = {STUN_PWALG_SHA256, STUN_PWALG_MD5};
		stun_enc_pwalgs(e, offer, 2);
		uint8_t v[4] = {0, (uint8_t)c->alg, 0, 0};
		stun_enc_attr(e, STUN_ATTR_PASSWORD_ALGORITHM, v, 4);
	}
	tt_derive_key(c);
	if (c->sha256)
		stun_enc_integrity_sha256(e, c->key, c->keylen);
	else
		stun_enc_integrity(e, c->key, c->keylen);
}

/* Sends b, waits for the answer to it, decodes it into c->m: its code (0 for
 * a success). A 401 or 438 leaves its NONCE in c->nonce. */
int tt_xchg(struct tt_cli *c, struct buf *b)
{
	tt_cli_send(c, b->data, b->len);
	if (!tt_cli_recv(c))
		fail_msg("no answer");
	assert_int_equal(stun_msg_decode(&c->m, c->rx, c->rxlen), 0);
	assert_memory_equal(c->rx + 8, b->data + 8, 12); /* same transaction */
	if (c->m.cls == STUN_CLASS_SUCCESS)
		return 0;
	assert_int_equal(c->m.cls, STUN_CLASS_ERROR);
	uint16_t code;
	assert_int_equal(stun_attr_error(stun_msg_attr(&c->m, STUN_ATTR_ERROR_CODE), &code, NULL),
			 0);
	const struct stun_attr *n = stun_msg_attr(&c->m, STUN_ATTR_NONCE);
	if (n)
		slice_to_cstr(stun_attr_slice(n), c->nonce, sizeof c->nonce);
	return code;
}

/* An authenticated request's answer carries integrity under our key. */
void tt_assert_signed(struct tt_cli *c)
{
	if (c->sha256)
		assert_int_equal(stun_msg_check_integrity_sha256(&c->m, c->key, c->keylen), 0);
	else
		assert_int_equal(stun_msg_check_integrity(&c->m, c->key, c->keylen), 0);
}

/* The 401 round trip: learns the nonce. */
void tt_challenge(struct tt_cli *c)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	assert_int_equal(tt_xchg(c, &b), 401);
	buf_free(&b);
}

/* Allocate with credentials; returns the code, the relayed address in *relay. */
int tt_allocate(struct tt_cli *c, struct net_addr *relay)
{
	if (!c->nonce[0])
		tt_challenge(c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	tt_add_auth(c, &e);
	int code = tt_xchg(c, &b);
	if (code == 0) {
		tt_assert_signed(c);
		if (relay)
			assert_int_equal(
			    stun_msg_addr(&c->m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay->u.ss), 0);
		struct net_addr mapped, local;
		assert_int_equal(stun_msg_addr(&c->m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped.u.ss),
				 0);
		net_sock_addr(c->fd, &local);
		assert_true(net_addr_eq(&mapped, &local));
	}
	buf_free(&b);
	return code;
}

int tt_perm(struct tt_cli *c, const char *peer)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	struct net_addr a;
	assert_int_equal(net_addr_parse(peer, 9, &a), 0);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &a.u.sa);
	tt_add_auth(c, &e);
	int code = tt_xchg(c, &b);
	if (code == 0 || code >= 403)
		tt_assert_signed(c);
	buf_free(&b);
	return code;
}

int tt_chan_bind(struct tt_cli *c, uint16_t num, const struct net_addr *peer)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_CHANNEL_BIND);
	stun_enc_channel(&e, num);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer->u.sa);
	tt_add_auth(c, &e);
	int code = tt_xchg(c, &b);
	buf_free(&b);
	return code;
}

int tt_refresh(struct tt_cli *c, uint32_t lifetime)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_u32(&e, STUN_ATTR_LIFETIME, lifetime);
	tt_add_auth(c, &e);
	int code = tt_xchg(c, &b);
	buf_free(&b);
	return code;
}

/* A UDP peer on loopback. */
int tt_peer_open(struct net_addr *a)
{
	struct net_addr any;
	net_addr_parse("127.0.0.1:0", 0, &any);
	int fd;
	assert_int_equal(net_udp_socket(&any, false, &fd), 0);
	net_sock_addr(fd, a);
	return fd;
}

size_t tt_peer_recv(int fd, uint8_t *out, size_t cap, struct net_addr *from)
{
	struct pollfd pf = {fd, POLLIN, 0};
	if (poll(&pf, 1, 3000) != 1)
		fail_msg("peer: nothing arrived");
	socklen_t sl = sizeof from->u.ss;
	ssize_t n = recvfrom(fd, out, cap, 0, &from->u.sa, &sl);
	assert_true(n >= 0);
	return (size_t)n;
}

bool tt_peer_nothing(int fd)
{
	uint8_t x[16];
	return recv(fd, x, sizeof x, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}
