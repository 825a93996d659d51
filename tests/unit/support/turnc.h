/* A TURN server on loopback and a test client for it: the helpers of test_turn_server.c and
 * test_turn_limits.c. */
#ifndef PINHOLE_TEST_TURNC_H
#define PINHOLE_TEST_TURNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "stun/stun.h"
#include "turn/turn.h"

#define REALM "turn.test"
#define SECRET "s3cret" /* [turn] static_auth_secret */

/* A server: [turn] on udp and tcp 127.0.0.1 (ports picked by the kernel),
 * relays on 127.0.0.1 in tt_relay_ports, users alice/wonder and bob/builder; the
 * fast path off unless extra sets [turn] fastpath. */
struct tt_srv {
	struct conf *conf;
	struct store_cred *creds;
	struct turn *t;
	struct net_addr udp, tcp;
};

/* A client over UDP (bound to 127.0.0.1) or TCP; RFC 5389-style MD5 unless
 * alg, sha256 or userhash say otherwise. */
struct tt_cli {
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

/* Each test binary that runs beside the others sets a range of its own
 * before its first server: ctest runs them in parallel on one loopback, and
 * a port another binary holds would change what an allocation gets. */
extern const char *tt_relay_ports;

void tt_srv_start(struct tt_srv *s, const char *extra);
void tt_srv_stop(struct tt_srv *s);
int64_t tt_counter(const char *name, const char *labels);
void tt_cli_open(struct tt_cli *c, const struct tt_srv *s, bool tcp, const char *user,
		 const char *pass);
void tt_cli_close(struct tt_cli *c);
void tt_cli_send(struct tt_cli *c, const void *p, size_t l);
bool tt_cli_recv(struct tt_cli *c);
void tt_begin(struct buf *b, struct stun_enc *e, uint16_t method);
void tt_derive_key(struct tt_cli *c);
void tt_add_auth(struct tt_cli *c, struct stun_enc *e);
int tt_xchg(struct tt_cli *c, struct buf *b);
void tt_assert_signed(struct tt_cli *c);
void tt_challenge(struct tt_cli *c);
int tt_allocate(struct tt_cli *c, struct net_addr *relay);
int tt_perm(struct tt_cli *c, const char *peer);
int tt_chan_bind(struct tt_cli *c, uint16_t num, const struct net_addr *peer);
int tt_refresh(struct tt_cli *c, uint32_t lifetime);
int tt_peer_open(struct net_addr *a);
size_t tt_peer_recv(int fd, uint8_t *out, size_t cap, struct net_addr *from);
bool tt_peer_nothing(int fd);

#endif
