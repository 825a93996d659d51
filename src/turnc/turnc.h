/* turnc: the client half of TURN (RFC 8656): one allocation on a TURN server, its
 * long-term credentials, refreshes, permissions and channels; no I/O.
 *
 * The caller owns the socket and the clock: it hands in what came from the
 * server (turnc_input), sends what the client asks to send (turnc_send_h),
 * and calls turnc_tick when turnc_next_ms comes due. So the event-loop ua
 * (src/ua/turn.c) and the blocking probe (src/probe/turn.c) drive the same
 * state machine. Over a stream (TCP, TLS) the caller frames with
 * stun_frame_turn and sets conf.stream: ChannelData is then padded and
 * nothing is retransmitted.
 *
 * Credentials (RFC 8489 9.2): the first Allocate goes without; a 401 gives
 * REALM, NONCE and maybe PASSWORD-ALGORITHMS (SHA-256 is taken when offered,
 * else MD5, and the offer is echoed: 9.2.4); a 438 gives a fresh NONCE and the
 * request goes again (at most 3 times). A 401 to a request that carried
 * credentials is a refused password. With conf.secret the user name and
 * password are coturn's shared-secret ones (stun_secret_password).
 *
 * Who can talk to it: the caller passes only datagrams from the server's
 * address (a connected socket); a response counts only when its transaction
 * id is one of ours and, once credentials are known, its integrity verifies.
 * What it keeps is bounded: TURNC_MAX_PEERS peers, TURNC_MAX_TSX requests.
 *
 * Ownership: struct turnc is owned by its caller (turnc_alloc / turnc_free).
 * Callbacks run inside turnc_* calls; they may call turnc_send and friends,
 * never turnc_free.
 */
#ifndef PINHOLE_TURNC_H
#define PINHOLE_TURNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"

#define TURNC_MAX_PEERS 16
#define TURNC_MAX_TSX 16
#define TURNC_PERM_REFRESH_MS 240000 /* permissions live 300 s (RFC 8656 9) */
#define TURNC_CHAN_REFRESH_MS 240000 /* a rebind also refreshes the permission (12) */

struct turnc_conf {
	char user[256]; /* with secret: the part after "EXPIRY:" ("" = none) */
	char pass[256];
	char secret[256];      /* non-empty: coturn's shared-secret scheme */
	unsigned secret_ttl_s; /* the made-up username's lifetime; 0 = 86400 */
	uint32_t lifetime_s;   /* LIFETIME asked for; 0 = none (the server's default) */
	bool stream;	       /* TCP/TLS to the server */
	unsigned rto_ms;       /* first retransmission (UDP); 0 = 500 (RFC 8489 6.2.1) */
	unsigned max_tries;    /* sends per request (UDP); 0 = 7 (Rc) */
};

enum turnc_state {
	TURNC_IDLE,
	TURNC_ALLOCATING,
	TURNC_READY,   /* relayed address known */
	TURNC_CLOSING, /* Refresh with LIFETIME 0 in flight */
	TURNC_CLOSED,
	TURNC_FAILED,
};

enum turnc_event_kind {
	TURNC_EV_ALLOCATED, /* relayed, mapped, lifetime */
	TURNC_EV_REFRESHED, /* lifetime */
	TURNC_EV_PERMITTED, /* peer (its IP) */
	TURNC_EV_BOUND,	    /* peer, channel */
	TURNC_EV_ERROR,	    /* a permission, channel or refresh request failed: method, code */
	TURNC_EV_FAILED,    /* no allocation (any more): code (0 = no answer), detail */
	TURNC_EV_CLOSED,    /* the deallocation was answered or timed out */
};

struct turnc_event {
	enum turnc_event_kind kind;
	uint16_t method; /* STUN_METHOD_* of the request */
	uint16_t code;	 /* STUN error code; 0 = no answer */
	bool auth;	 /* FAILED: the credentials were refused */
	const char *detail;
	const struct net_addr *peer;
	uint16_t channel;
	uint32_t lifetime;
};

typedef void(turnc_send_h)(const void *p, size_t len, void *arg);
typedef void(turnc_event_h)(const struct turnc_event *ev, void *arg);

struct turnc;

/* A client; nothing is sent before turnc_start. EINVAL for a conf without
 * user/password (or secret), ENOMEM. */
int turnc_alloc(struct turnc **cp, const struct turnc_conf *cf, turnc_send_h *sh, turnc_event_h *eh,
		void *arg);
void turnc_free(struct turnc *c);
/* Sends the Allocate. */
int turnc_start(struct turnc *c, uint64_t now_ms);

/* Data from a peer, as turnc_input hands it out (data points into the input). */
struct turnc_data {
	struct net_addr peer;
	const uint8_t *data;
	size_t len;
	bool channel; /* came as ChannelData (else a Data indication) */
};
/* One datagram (or one frame) from the server. 0: handled (a response, or
 * nothing of use); 1: d holds data from a peer; EBADMSG: not TURN or not
 * ours (the caller may count it). */
int turnc_input(struct turnc *c, const uint8_t *p, size_t len, uint64_t now_ms,
		struct turnc_data *d);

/* CreatePermission for peer's IP, kept refreshed. Needs READY (EAGAIN
 * before). ENOSPC past TURNC_MAX_PEERS. */
int turnc_permit(struct turnc *c, const struct net_addr *peer, uint64_t now_ms);
/* ChannelBind to peer (IP and port), kept refreshed; the permission comes
 * with it. Data to the peer goes by Send indication until the bind is
 * answered. */
int turnc_bind(struct turnc *c, const struct net_addr *peer, uint64_t now_ms);
/* Relays data to peer: ChannelData when its channel is bound, else a Send
 * indication. ENOENT when there is no permission for the peer's IP (asked
 * or granted), EAGAIN when not READY, EMSGSIZE. */
int turnc_send(struct turnc *c, const struct net_addr *peer, const void *data, size_t len);
/* Refresh with LIFETIME 0 (CLOSED follows); at once CLOSED when there is no
 * allocation. */
void turnc_close(struct turnc *c, uint64_t now_ms);

/* When turnc_tick wants calling next (monotonic ms); UINT64_MAX = never. */
uint64_t turnc_next_ms(const struct turnc *c);
/* Retransmissions, timeouts, refreshes that are due. */
void turnc_tick(struct turnc *c, uint64_t now_ms);

enum turnc_state turnc_state(const struct turnc *c);
const struct net_addr *turnc_relayed(const struct turnc *c);
const struct net_addr *turnc_mapped(const struct turnc *c);
/* The user name the requests carry (the made-up one with a secret). */
const char *turnc_username(const struct turnc *c);
/* Whether peer's channel is bound (answered). */
bool turnc_bound(const struct turnc *c, const struct net_addr *peer);
const char *turnc_state_name(enum turnc_state s);

#endif
