/* The TURN server over loopback sockets: every method and its errors, credentials, relaying both
 * ways. */
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

#include "turn/turn_int.h" /* the allocations' key caches, aged below */
#include "turnc.h"

/* RFC 8489 9.2.4: no credentials -> 401 with REALM, NONCE (cookie) and the
 * algorithms, nothing signed, and small (no amplification). */
static void test_challenge(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	int64_t allocs = tt_counter("turn_allocations_total", NULL);
	assert_int_equal(tt_xchg(&c, &b), 401);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_REALM));
	assert_memory_equal(c.nonce, "obMatJos2", 9);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_PASSWORD_ALGORITHMS));
	assert_int_equal(c.m.mi, -1);
	assert_true(c.rxlen <= 120);
	assert_int_equal(tt_counter("turn_allocations_total", NULL), allocs);
	/* another method without credentials: 401 too; an unknown one: 400 */
	tt_begin(&b, &e, STUN_METHOD_REFRESH);
	assert_int_equal(tt_xchg(&c, &b), 401);
	tt_begin(&b, &e, 0x00a);
	assert_int_equal(tt_xchg(&c, &b), 400);
	/* a Binding request is answered as STUN */
	tt_begin(&b, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&c, &b), 0);
	assert_non_null(stun_msg_attr(&c.m, STUN_ATTR_XOR_MAPPED_ADDRESS));
	buf_free(&b);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

static void test_credentials_refused(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli c;
	int64_t fails = tt_counter("turn_auth_failures_total", NULL);
	tt_cli_open(&c, &s, false, "alice", "wrong");
	assert_int_equal(tt_allocate(&c, NULL), 401);
	assert_null(stun_msg_attr(&c.m, STUN_ATTR_MESSAGE_INTEGRITY)); /* no oracle */
	snprintf(c.user, sizeof c.user, "mallory");
	assert_int_equal(tt_allocate(&c, NULL), 401);
	c.userhash = true; /* a USERHASH of no user */
	assert_int_equal(tt_allocate(&c, NULL), 401);
	c.userhash = false;
	assert_int_equal(tt_counter("turn_auth_failures_total", NULL), fails + 3);
	/* a nonce that is not ours, or not for this source: 438 and a fresh one */
	snprintf(c.user, sizeof c.user, "alice");
	snprintf(c.pass, sizeof c.pass, "wonder");
	char good[128];
	snprintf(good, sizeof good, "%s", c.nonce);
	c.nonce[20] = c.nonce[20] == 'A' ? 'B' : 'A';
	assert_int_equal(tt_allocate(&c, NULL), 438);
	assert_string_equal(c.nonce, good); /* the 438's: valid again (same second) */
	struct net_addr other;
	net_addr_parse("127.0.0.2:1", 0, &other);
	uint8_t key[32] = {0};
	turn_nonce_make(key, REALM, &other, time_wall_s(), c.nonce);
	assert_int_equal(tt_allocate(&c, NULL), 438);
	/* credentials without REALM: 400 */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT("alice"));
	stun_enc_str(&e, STUN_ATTR_NONCE, slice_cstr(c.nonce));
	stun_enc_integrity(&e, "x", 1);
	assert_int_equal(tt_xchg(&c, &b), 400);
	/* RFC 8489 9.2.4: an offer that did not come back as sent (bid-down) */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_str(&e, STUN_ATTR_USERNAME, SLICE_LIT("alice"));
	stun_enc_str(&e, STUN_ATTR_REALM, SLICE_LIT(REALM));
	stun_enc_str(&e, STUN_ATTR_NONCE, slice_cstr(c.nonce));
	static const uint16_t md5only[] = {STUN_PWALG_MD5};
	stun_enc_pwalgs(&e, md5only, 1);
	stun_enc_attr(&e, STUN_ATTR_PASSWORD_ALGORITHM, "\x00\x01\x00\x00", 4);
	c.alg = 0;
	tt_derive_key(&c);
	stun_enc_integrity(&e, c.key, c.keylen);
	assert_int_equal(tt_xchg(&c, &b), 400);
	assert_int_equal(turn_allocation_count(s.t), 0);
	/* the nonce the 438 gave works */
	assert_int_equal(tt_allocate(&c, NULL), 0);
	buf_free(&b);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

/* MD5 (RFC 5389 style), SHA-256 with PASSWORD-ALGORITHMS and
 * MESSAGE-INTEGRITY-SHA256, USERHASH, and the shared secret. */
static void test_credential_schemes(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli c[5];
	struct net_addr relay;
	tt_cli_open(&c[0], &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c[0], &relay), 0);
	assert_int_equal(c[0].m.mi256, -1); /* answered as asked: SHA-1 integrity */

	tt_cli_open(&c[1], &s, false, "bob", "builder");
	c[1].alg = STUN_PWALG_SHA256;
	c[1].sha256 = true;
	assert_int_equal(tt_allocate(&c[1], &relay), 0);
	assert_true(c[1].m.mi256 >= 0);
	assert_int_equal(c[1].keylen, 32);

	tt_cli_open(&c[2], &s, false, "alice", "wonder");
	c[2].alg = STUN_PWALG_SHA256;
	c[2].userhash = true;
	c[2].sha256 = true;
	assert_int_equal(tt_allocate(&c[2], &relay), 0);

	/* coturn's use-auth-secret: "expiry:user", password from the secret */
	char user[64], pw[29];
	snprintf(user, sizeof user, "%lld:carol", (long long)time_wall_s() + 3600);
	assert_int_equal(turn_secret_password(SLICE_LIT(SECRET), slice_cstr(user), pw), 0);
	tt_cli_open(&c[3], &s, false, user, pw);
	assert_int_equal(tt_allocate(&c[3], &relay), 0);
	/* an expired one is refused although the password fits */
	snprintf(user, sizeof user, "%lld:carol", (long long)time_wall_s() - 1);
	assert_int_equal(turn_secret_password(SLICE_LIT(SECRET), slice_cstr(user), pw), 0);
	tt_cli_open(&c[4], &s, false, user, pw);
	assert_int_equal(tt_allocate(&c[4], &relay), 401);
	assert_int_equal(turn_allocation_count(s.t), 4);
	for (int i = 0; i < 5; i++)
		tt_cli_close(&c[i]);
	tt_srv_stop(&s);
}

static void test_allocate_errors(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	tt_challenge(&c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	/* no REQUESTED-TRANSPORT: 400; TCP (RFC 6062): 442 */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 400);
	tt_assert_signed(&c);
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_TCP);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 442);
	/* an unknown comprehension-required attribute: 420 listing it */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_u32(&e, 0x7f01, 0);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 420);
	uint16_t unk[4];
	size_t n;
	assert_int_equal(
	    stun_attr_unknown(stun_msg_attr(&c.m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(unk[0], 0x7f01);
	/* one the STUN codec knows but TURN does not act on is refused too */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_change(&e, STUN_CHANGE_IP);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 420);
	/* RESERVATION-TOKEN with EVEN-PORT: 400; an unknown token: 508 */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, "12345678", 8);
	stun_enc_even_port(&e, false);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 400);
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, "12345678", 8);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 508);
	/* IPv6 without relay_address6: 440; dual: IPv4 with ADDRESS-ERROR-CODE */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 440);
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 400); /* both at once: 400 */
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
	tt_add_auth(&c, &e);
	uint8_t tid[12];
	memcpy(tid, b.data + 8, 12);
	assert_int_equal(tt_xchg(&c, &b), 0);
	const struct stun_attr *ae = stun_msg_attr(&c.m, STUN_ATTR_ADDRESS_ERROR_CODE);
	assert_non_null(ae);
	assert_memory_equal(ae->v, "\x02\x00\x04\x28", 4);
	struct net_addr relay;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay.u.ss), 0);
	assert_int_equal(net_addr_family(&relay), AF_INET);
	/* RFC 8656 7.2: the same request again (a retransmission) gets the same
	 * allocation; a new one on that 5-tuple gets 437 */
	assert_int_equal(tt_xchg(&c, &b), 0);
	struct net_addr again;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &again.u.ss), 0);
	assert_true(net_addr_eq(&relay, &again));
	assert_int_equal(tt_allocate(&c, NULL), 437);
	assert_int_equal(turn_allocation_count(s.t), 1);
	/* another user on this 5-tuple: 441 */
	snprintf(c.user, sizeof c.user, "bob");
	snprintf(c.pass, sizeof c.pass, "builder");
	assert_int_equal(tt_refresh(&c, 600), 441);
	assert_int_equal(tt_perm(&c, "127.0.0.1:9"), 441);
	buf_free(&b);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

static void test_even_port_reservation(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli a, b2;
	tt_cli_open(&a, &s, false, "alice", "wonder");
	tt_cli_open(&b2, &s, false, "alice", "wonder");
	tt_challenge(&a);
	snprintf(b2.nonce, sizeof b2.nonce, "%s", a.nonce); /* same source IP: valid */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_even_port(&e, true);
	tt_add_auth(&a, &e);
	assert_int_equal(tt_xchg(&a, &b), 0);
	struct net_addr r1, r2;
	assert_int_equal(stun_msg_addr(&a.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r1.u.ss), 0);
	assert_int_equal(net_addr_port(&r1) % 2, 0);
	const struct stun_attr *tok = stun_msg_attr(&a.m, STUN_ATTR_RESERVATION_TOKEN);
	assert_non_null(tok);
	assert_int_equal(tok->len, 8);
	uint8_t token[8];
	memcpy(token, tok->v, 8);
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, token, 8);
	tt_add_auth(&b2, &e);
	assert_int_equal(tt_xchg(&b2, &b), 0);
	assert_int_equal(stun_msg_addr(&b2.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &r2.u.ss), 0);
	assert_int_equal(net_addr_port(&r2), net_addr_port(&r1) + 1);
	buf_free(&b);
	tt_cli_close(&a);
	tt_cli_close(&b2);
	tt_srv_stop(&s);
}

/* Permissions, Send/Data, channels and ChannelData both ways, over UDP or TCP. */
static void relay_both_ways(bool tcp)
{
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, tcp, "alice", "wonder");
	struct net_addr relay, pa, from;
	assert_int_equal(tt_allocate(&c, &relay), 0);
	int pfd = tt_peer_open(&pa);
	char ps[NET_ADDR_STRLEN];
	net_addr_fmt(&pa, ps, sizeof ps);
	uint8_t got[2048];

	/* Send before any permission: dropped, nothing reaches the peer */
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	int64_t noperm = tt_counter("turn_dropped_total", "reason=\"no_permission\"");
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &pa.u.sa);
	stun_enc_attr(&e, STUN_ATTR_DATA, "early", 5);
	tt_cli_send(&c, b.data, b.len);
	/* the Binding answer after it proves the server has read it */
	struct buf q;
	buf_init(&q);
	tt_begin(&q, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&c, &q), 0);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"no_permission\""), noperm + 1);
	assert_true(tt_peer_nothing(pfd));

	assert_int_equal(tt_perm(&c, ps), 0);
	tt_cli_send(&c, b.data, b.len);
	size_t n = tt_peer_recv(pfd, got, sizeof got, &from);
	assert_int_equal(n, 5);
	assert_memory_equal(got, "early", 5);
	assert_true(net_addr_eq(&from, &relay)); /* from the relayed address */

	/* the peer answers: a Data indication with its address */
	assert_int_equal(sendto(pfd, "pong!", 5, 0, &relay.u.sa, net_addr_len(&relay)), 5);
	assert_true(tt_cli_recv(&c));
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
	assert_int_equal(tt_chan_bind(&c, 0x3fff, &pa), 400);
	assert_int_equal(tt_chan_bind(&c, 0x8000, &pa), 400);
	assert_int_equal(tt_chan_bind(&c, 0x4001, &pa), 0);
	assert_int_equal(tt_chan_bind(&c, 0x4001, &pa), 0); /* a refresh */
	struct net_addr pb = pa;
	net_addr_set_port(&pb, (uint16_t)(net_addr_port(&pa) + 1));
	assert_int_equal(tt_chan_bind(&c, 0x4001, &pb), 400);
	assert_int_equal(tt_chan_bind(&c, 0x4002, &pa), 400);

	/* ChannelData to the peer: 7 bytes, padded to 8 on TCP */
	uint8_t cd[12] = {0x40, 0x01, 0x00, 0x07, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 0};
	tt_cli_send(&c, cd, tcp ? 12 : 11);
	n = tt_peer_recv(pfd, got, sizeof got, &from);
	assert_int_equal(n, 7);
	assert_memory_equal(got, "channel", 7);
	/* and back: ChannelData, padded on TCP (RFC 8656 12.5), not padded on UDP */
	assert_int_equal(sendto(pfd, "reply", 5, 0, &relay.u.sa, net_addr_len(&relay)), 5);
	assert_true(tt_cli_recv(&c));
	assert_int_equal(c.rxlen, tcp ? 12 : 9);
	assert_memory_equal(c.rx, "\x40\x01\x00\x05reply", 9);
	/* a peer without a permission is not relayed to the client */
	struct net_addr pc;
	int pfd2 = tt_peer_open(&pc);
	noperm = tt_counter("turn_dropped_total", "reason=\"no_permission\"");
	(void)noperm;
	assert_int_equal(sendto(pfd2, "intruder", 8, 0, &relay.u.sa, net_addr_len(&relay)), 8);
	/* pc is on 127.0.0.1 too, and permissions are per IP (RFC 8656 9): it
	 * passes; one from another IP does not (below, 127.0.0.2) */
	assert_true(tt_cli_recv(&c));
	struct net_addr other;
	net_addr_parse("127.0.0.2:0", 0, &other);
	int ofd;
	assert_int_equal(net_udp_socket(&other, false, &ofd), 0);
	int64_t np0 = tt_counter("turn_dropped_total", "reason=\"no_permission\"");
	assert_int_equal(sendto(ofd, "intruder", 8, 0, &relay.u.sa, net_addr_len(&relay)), 8);
	tt_begin(&q, &e, STUN_METHOD_BINDING);
	for (int i = 0;
	     i < 300 && tt_counter("turn_dropped_total", "reason=\"no_permission\"") == np0; i++)
		usleep(10000);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"no_permission\""), np0 + 1);
	assert_int_equal(tt_xchg(&c, &q), 0); /* the next thing the client sees is this answer */
	/* counters by direction */
	assert_true(tt_counter("turn_relayed_packets_total", "direction=\"to_peer\"") >= 2);
	assert_true(tt_counter("turn_relayed_packets_total", "direction=\"to_client\"") >= 2);
	/* ctl allocations shows it */
	struct buf dump;
	buf_init(&dump);
	assert_int_equal(turn_dump_json(s.t, &dump), 0);
	buf_append(&dump, "", 1);
	assert_non_null(strstr(dump.data, "\"user\":\"alice\""));
	assert_non_null(strstr(dump.data, "\"number\":16385"));
	buf_free(&dump);
	/* Refresh 0 deletes it (RFC 8656 8) */
	assert_int_equal(tt_refresh(&c, 0), 0);
	assert_int_equal(turn_allocation_count(s.t), 0);
	assert_int_equal(tt_refresh(&c, 600), 437);
	close(ofd);
	close(pfd);
	close(pfd2);
	buf_free(&b);
	buf_free(&q);
	tt_cli_close(&c);
	tt_srv_stop(&s);
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

/* The rest of the 400s, and 508 when the relay port range is used up. */
static void test_more_errors(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nrelay_ports = 24198-24199\n");
	struct tt_cli c[3];
	for (int i = 0; i < 3; i++)
		tt_cli_open(&c[i], &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c[0], NULL), 0);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	/* CreatePermission without a peer, ChannelBind without a number */
	tt_begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	tt_add_auth(&c[0], &e);
	assert_int_equal(tt_xchg(&c[0], &b), 400);
	tt_begin(&b, &e, STUN_METHOD_CHANNEL_BIND);
	struct net_addr p1;
	net_addr_parse("127.0.0.1:7", 0, &p1);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p1.u.sa);
	tt_add_auth(&c[0], &e);
	assert_int_equal(tt_xchg(&c[0], &b), 400);
	/* a peer address of a bad length, a family that is neither */
	tt_begin(&b, &e, STUN_METHOD_CREATE_PERMISSION);
	stun_enc_attr(&e, STUN_ATTR_XOR_PEER_ADDRESS, "\x00\x01\x00\x07\x01\x02", 6);
	tt_add_auth(&c[0], &e);
	assert_int_equal(tt_xchg(&c[0], &b), 400);
	tt_begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_attr(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, "\x03\x00\x00\x00", 4);
	tt_add_auth(&c[0], &e);
	assert_int_equal(tt_xchg(&c[0], &b), 400);
	/* a Send indication from a 5-tuple without an allocation: dropped, counted */
	int64_t bad = tt_counter("turn_dropped_total", "reason=\"malformed\"");
	buf_reset(&b);
	stun_enc_begin(&e, &b, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
	stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p1.u.sa);
	stun_enc_attr(&e, STUN_ATTR_DATA, "x", 1);
	tt_cli_send(&c[1], b.data, b.len);
	tt_begin(&b, &e, STUN_METHOD_BINDING);
	assert_int_equal(tt_xchg(&c[1], &b), 0);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"malformed\""), bad + 1);
	/* two relay ports: the second allocation takes the last, the third gets 508 */
	assert_int_equal(tt_allocate(&c[1], NULL), 0);
	assert_int_equal(tt_allocate(&c[2], NULL), 508);
	buf_free(&b);
	for (int i = 0; i < 3; i++)
		tt_cli_close(&c[i]);
	tt_srv_stop(&s);
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
	struct tt_srv s;
	tt_srv_start(&s, "relay_address6 = ::1\nallowed_peers = 127.0.0.0/8, ::1\n");
	struct tt_cli c, d;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	tt_challenge(&c);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 0);
	struct net_addr relay;
	assert_int_equal(stun_msg_addr(&c.m, STUN_ATTR_XOR_RELAYED_ADDRESS, &relay.u.ss), 0);
	assert_int_equal(net_addr_family(&relay), AF_INET6);
	/* an IPv4 peer for an IPv6-only allocation: 443 */
	assert_int_equal(tt_perm(&c, "127.0.0.1:9"), 443);
	/* an IPv6 peer: channel, data both ways */
	int pfd;
	assert_int_equal(net_udp_socket(&v6lo, false, &pfd), 0);
	struct net_addr pa, from;
	net_sock_addr(pfd, &pa);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &pa), 0);
	uint8_t cd[8] = {0x40, 0x00, 0x00, 0x04, 's', 'i', 'x', '!'};
	tt_cli_send(&c, cd, sizeof cd);
	uint8_t got[64];
	assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 4);
	assert_memory_equal(got, "six!", 4);
	assert_true(net_addr_eq(&from, &relay));
	assert_int_equal(sendto(pfd, "back", 4, 0, &relay.u.sa, net_addr_len(&relay)), 4);
	assert_true(tt_cli_recv(&c));
	assert_int_equal(c.rxlen, 8);
	assert_memory_equal(c.rx,
			    "\x40\x00\x00\x04"
			    "back",
			    8);
	/* dual: two relayed addresses, one per family; Refresh asking for a
	 * family keeps to what it has */
	tt_cli_open(&d, &s, false, "bob", "builder");
	tt_challenge(&d);
	tt_begin(&b, &e, STUN_METHOD_ALLOCATE);
	stun_enc_transport(&e, STUN_PROTO_UDP);
	stun_enc_family(&e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	tt_add_auth(&d, &e);
	assert_int_equal(tt_xchg(&d, &b), 0);
	int fams = 0;
	for (size_t i = 0; i < d.m.nattr; i++)
		if (d.m.attr[i].type == STUN_ATTR_XOR_RELAYED_ADDRESS) {
			struct net_addr r;
			assert_int_equal(stun_attr_addr(&d.m, &d.m.attr[i], &r.u.ss), 0);
			fams |= net_addr_family(&r) == AF_INET6 ? 2 : 1;
		}
	assert_int_equal(fams, 3);
	assert_null(stun_msg_attr(&d.m, STUN_ATTR_ADDRESS_ERROR_CODE));
	assert_int_equal(tt_perm(&d, "127.0.0.1:9"), 0);
	assert_int_equal(tt_perm(&d, "[::1]:9"), 0);
	tt_begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 0);
	tt_begin(&b, &e, STUN_METHOD_REFRESH);
	stun_enc_family(&e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
	tt_add_auth(&c, &e);
	assert_int_equal(tt_xchg(&c, &b), 443);
	close(pfd);
	buf_free(&b);
	tt_cli_close(&c);
	tt_cli_close(&d);
	tt_srv_stop(&s);
}

/* Ages every allocation's cached nonce by s seconds (as if issued earlier). */
static void age_keycaches(struct turn *t0, int64_t s)
{
	for (unsigned i = 0; i < t0->sh->nthr; i++) {
		struct turn *t = t0->sh->thr[i];
		pthread_mutex_lock(&t->lock);
		for (struct turn_alloc *a = t->all; a; a = a->next)
			a->kc.issued -= s;
		pthread_mutex_unlock(&t->lock);
	}
}

/* The allocation's cached nonce and key serve its later requests (the
 * counter) but are never a pass: a wrong password, another user on the
 * 5-tuple, another algorithm still go through the whole check; and they hold
 * only while the nonce stands (past nonce_lifetime: 438, whatever the cache
 * says). */
static void test_key_cache(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c, NULL), 0);
	int64_t hits = tt_counter("turn_auth_cached_total", NULL);
	int64_t fails = tt_counter("turn_auth_failures_total", NULL);
	assert_int_equal(tt_refresh(&c, 600), 0);
	tt_assert_signed(&c);
	assert_int_equal(tt_counter("turn_auth_cached_total", NULL), hits + 1);
	/* the same nonce with a wrong password: 401, unsigned */
	snprintf(c.pass, sizeof c.pass, "wrong");
	assert_int_equal(tt_refresh(&c, 600), 401);
	assert_int_equal(c.m.mi, -1);
	assert_int_equal(tt_counter("turn_auth_failures_total", NULL), fails + 1);
	/* another user of the realm on alice's 5-tuple and nonce: 441, not
	 * alice's key */
	snprintf(c.user, sizeof c.user, "bob");
	snprintf(c.pass, sizeof c.pass, "wonder"); /* alice's: no */
	assert_int_equal(tt_refresh(&c, 600), 401);
	snprintf(c.pass, sizeof c.pass, "builder");
	assert_int_equal(tt_refresh(&c, 600), 441);
	assert_int_equal(tt_counter("turn_auth_cached_total", NULL), hits + 1);
	/* SHA-256 on the same nonce: derived (not the cached MD5 key), then cached */
	snprintf(c.user, sizeof c.user, "alice");
	snprintf(c.pass, sizeof c.pass, "wonder");
	c.alg = STUN_PWALG_SHA256;
	assert_int_equal(tt_refresh(&c, 600), 0);
	tt_assert_signed(&c);
	assert_int_equal(tt_counter("turn_auth_cached_total", NULL), hits + 1);
	assert_int_equal(tt_refresh(&c, 600), 0);
	assert_int_equal(tt_counter("turn_auth_cached_total", NULL), hits + 2);
	/* the cached nonce gone past nonce_lifetime (600 s): 438 and a fresh
	 * one (the same text within the second it was issued in), which works */
	age_keycaches(s.t, 601);
	assert_int_equal(tt_refresh(&c, 600), 438);
	assert_int_equal(tt_refresh(&c, 600), 0);
	tt_assert_signed(&c);
	assert_int_equal(turn_allocation_count(s.t), 1);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "24000-24199";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_credentials_refused),
	    cmocka_unit_test(test_credential_schemes),
	    cmocka_unit_test(test_allocate_errors),
	    cmocka_unit_test(test_even_port_reservation),
	    cmocka_unit_test(test_ipv6_and_dual),
	    cmocka_unit_test(test_relay_udp),
	    cmocka_unit_test(test_relay_tcp),
	    cmocka_unit_test(test_more_errors),
	    cmocka_unit_test(test_key_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
