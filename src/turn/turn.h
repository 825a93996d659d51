/* turn: the TURN server role (RFC 8656): allocations, permissions, channels, relaying.
 *
 * Who may ask: anyone may send to the TURN ports; only a request whose
 * long-term credentials (RFC 8489 9.2) verify creates or changes state, and
 * only an allocation's own 5-tuple may make it send anywhere. What it costs
 * us: a request without credentials costs one HMAC (the nonce) and one small
 * answer, within the per-source budget ([turn] rate, burst); one with
 * credentials a store lookup and one or two hashes more. What our answer costs
 * a third party: a 401 is at most about 150 bytes (no SOFTWARE by default),
 * once per request and per-source limited; nothing at all is sent to a peer
 * before the client's credentials verified and a permission for that peer
 * exists, and never to a peer the filter refuses (loopback, private,
 * link-local, shared, multicast, unspecified, reserved, the server's own
 * addresses; IPv4 written inside IPv6 counts as the IPv4 address), unless
 * [turn] allowed_peers names it or it is another allocation's relayed address
 * on this server. What state a stranger can create: none; an authenticated
 * user creates allocations (bounded per user and in total), each with a
 * bounded number of permissions and channels, a bandwidth budget, and relay
 * ports from [turn] relay_ports.
 *
 * Threads: [turn] threads of its own, each with its own event loop and its
 * own SO_REUSEPORT socket on every listen address (the kernel keeps a
 * client's 5-tuple on one of them); a thread owns the allocations and
 * connections made on it, touched there and by the control thread's dumps
 * under that thread's mutex. Quotas, the relayed-address index and EVEN-PORT
 * reservations are shared under one more mutex (turn_int.h). Counters are
 * process-wide metrics.
 *
 * Ownership: struct turn (thread 0's, which frees the others) is owned by the
 * caller of turn_start; it borrows the credential store, which must outlive it.
 */
#ifndef PINHOLE_TURN_H
#define PINHOLE_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"
#include "store/store.h"

extern const struct conf_key turn_conf_keys[]; /* [turn] */

struct turn;

/* Reads [turn], opens the listeners and starts the role's thread. Errors
 * (a bad key value, a port in use) are logged and returned. creds is
 * borrowed (may be NULL: only the shared secret then). */
int turn_start(struct turn **tp, const struct conf *c, struct store_cred *creds);
/* Stops the thread, closes every socket, frees every allocation. NULL is fine. */
void turn_free(struct turn *t);

/* Bound address of the i-th listener of a transport (NET_UDP, NET_TCP), or
 * NULL past the end (tests, logs). */
const struct net_addr *turn_listen_addr(const struct turn *t, enum net_transport tp, unsigned i);

/* `pinhole ctl allocations`: one entry per allocation. Any thread. */
int turn_dump_json(struct turn *t, struct buf *out);
int turn_dump_text(struct turn *t, struct buf *out);
/* Live allocations (tests). */
size_t turn_allocation_count(struct turn *t);

/* ---- the peer filter (exposed for tests) ----
 *
 * A peer is denied when its IP (an IPv4 address written inside IPv6 --
 * v4-mapped, v4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16 -- is judged
 * as that IPv4 address) is in a denied class or in denied, or is one of the
 * host's own addresses, unless it is in allowed. The caller exempts another
 * allocation's relayed address before asking.
 */
enum turn_peer_verdict {
	TURN_PEER_OK = 0,
	TURN_PEER_DENIED_CLASS, /* loopback, private, link-local, shared, multicast... */
	TURN_PEER_DENIED_LIST,	/* [turn] denied_peers */
	TURN_PEER_DENIED_SELF,	/* this host's address */
};

#define TURN_PEERS_MAX 64

struct turn_filter {
	struct net_cidr allow[TURN_PEERS_MAX], deny[TURN_PEERS_MAX];
	size_t nallow, ndeny;
	struct net_hostaddrs *host; /* borrowed; NULL: only the relay addresses below */
	struct net_addr own[4];	    /* relay and listen addresses; port unused */
	size_t nown;
};

enum turn_peer_verdict turn_peer_check(const struct turn_filter *f, const struct net_addr *peer);
/* The IPv4 address an IPv6 address stands for (the spellings above) into
 * out; false when it is a plain IPv6 address (out untouched). */
bool turn_peer_embedded_v4(const struct net_addr *a, struct net_addr *out);

/* ---- credentials (exposed for tests) ---- */

/* coturn's use-auth-secret (TURN REST API) scheme: the password of username
 * "expiry[:user]" is base64(HMAC-SHA1(secret, username)), 28 characters and
 * a NUL into out. 0 or EINVAL. */
int turn_secret_password(struct slice secret, struct slice username, char out[29]);
/* The expiry (Unix seconds) at the front of such a username: 0 or EINVAL. */
int turn_secret_expiry(struct slice username, int64_t *expiry);

/* Stateless nonces: "obMatJos2" + security features (RFC 8489 9.2.1:
 * password algorithms, username anonymity) + base64url(issued | HMAC-SHA256
 * (key, issued | source | realm)[0..16)). Bound to the source IP (IPv6 /64)
 * it was sent to, verifiable without state. */
#define TURN_NONCE_LEN 45
void turn_nonce_make(const uint8_t key[32], const char *realm, const struct net_addr *src,
		     int64_t now, char out[TURN_NONCE_LEN + 1]);
/* 0 (ours, live), ETIMEDOUT (ours, older than lifetime), EPERM (not ours). */
int turn_nonce_check(const uint8_t key[32], const char *realm, const struct net_addr *src,
		     struct slice nonce, int64_t now, int64_t lifetime);

#endif
