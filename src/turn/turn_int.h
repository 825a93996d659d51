/* turn internals shared by the server, the methods, the allocations and the dumps. */
#ifndef PINHOLE_TURN_INT_H
#define PINHOLE_TURN_INT_H

#include <pthread.h>

#include "stun/stun.h"
#include "stund/stund.h"
#include "turn.h"

#define TURN_MAX_LISTEN 8
#define TURN_RX_MAX 65536 + 64 /* a datagram, or a whole TCP frame */
#define TURN_TCP_OUT_MAX (256u * 1024u)
#define TURN_USER_MAX (STORE_CRED_USER_MAX + 16) /* shared secret: "expiry:user" */
#define TURN_PERM_S 300				 /* RFC 8656 9 */
#define TURN_CHANNEL_S 600			 /* RFC 8656 12 */
#define TURN_RESERVE_S 30			 /* RFC 8656 7.2: EVEN-PORT R bit reservations */
#define TURN_RESERVE_MAX 256			 /* reservations held at once */
#define TURN_TCP_IDLE_S 30			 /* a connection without an allocation */
#define TURN_RELAY_RCVBUF (256 * 1024)		 /* per relay socket: media, not bulk */
#define TURN_CONN_ROUNDS 16			 /* reads per wake-up of one connection */
#define TURN_LISTEN_ROUNDS 512			 /* datagrams per wake-up of a UDP listener */

struct turn;
struct turn_conn;

/* The epoll argument of every socket: what kind it is and whose. */
enum turn_sock_kind { TURN_SK_UDP, TURN_SK_TCP_LISTEN, TURN_SK_CONN, TURN_SK_RELAY };
struct turn_sock {
	enum turn_sock_kind kind;
	int fd;
	unsigned li; /* listener index for UDP / TCP listeners */
	void *owner; /* struct turn_conn or struct turn_alloc; back-pointer */
	unsigned fam;
	struct turn *t; /* back-pointer */
};

/* A request budget (token bucket, tokens x 1000) of one allocation or one
 * TCP connection: [turn] rate and burst. */
struct turn_budget {
	uint64_t milli, last_ms;
};

struct turn_perm {
	struct net_addr ip; /* port 0 */
	uint64_t expire_ms;
};

struct turn_chan {
	uint16_t num;
	struct net_addr peer;
	uint64_t expire_ms;
	bool fast; /* the kernel relays it (entries in both maps, fastpath.c) */
};

/* One relayed transport address of an allocation (IPv4, IPv6). */
struct turn_relay {
	struct turn_sock sk; /* fd -1 when this family is not allocated */
	struct net_addr addr;
	struct turn_alloc *next_by_addr; /* hash chain of t->by_relay */
};

/* The long-term key of an allocation's last verified request, kept while its
 * nonce stands: a request on the allocation's 5-tuple with the same nonce,
 * user and algorithm skips the nonce MAC, the shared-secret password and the
 * key derivation (its integrity is still checked with the key). A store
 * password change thus reaches a live allocation with its next nonce, at most
 * nonce_lifetime later. */
struct turn_keycache {
	char nonce[TURN_NONCE_LEN];
	int64_t issued; /* the nonce's, wall seconds */
	uint16_t alg;	/* STUN_PWALG_*; 0 = empty */
	uint8_t keylen;
	uint8_t key[32];
};

/* One allocation; owned by struct turn (its tables). */
struct turn_alloc {
	uint64_t id;
	enum net_transport tp;	   /* to the client: NET_UDP or NET_TCP */
	unsigned li;		   /* the listener the 5-tuple's server side is */
	struct net_addr client;	   /* the 5-tuple's client side */
	struct turn_conn *conn;	   /* TCP: its connection (which points back) */
	char user[TURN_USER_MAX];  /* as authenticated (USERNAME, or found by USERHASH) */
	char quota[TURN_USER_MAX]; /* what per-user quotas count: the user part */
	uint8_t tid[STUN_TID_LEN]; /* the Allocate's, for its retransmissions */
	struct turn_keycache kc;
	uint64_t created_ms, expire_ms;
	struct turn_relay relay[2]; /* [0] IPv4, [1] IPv6 */
	bool dont_fragment;
	struct turn_perm *perms; /* [perm_cap], grown up to max_permissions; owned */
	size_t nperm, perm_cap;
	struct turn_chan *chans; /* [chan_cap], grown up to max_channels; owned */
	size_t nchan, chan_cap;
	uint64_t bw_milli, bw_last_ms;		      /* bandwidth token bucket (bytes x 1000) */
	struct turn_budget rq;			      /* requests on its own 5-tuple */
	int64_t tx_bytes, tx_pkts, rx_bytes, rx_pkts; /* to peers / from peers, the kernel's
							 included once pulled */
	bool fast_stats;			      /* the kernel keeps counters for it */
	struct {
		uint64_t tx_pkts, tx_bytes, rx_pkts, rx_bytes, drop_bw;
	} fast_seen;					/* the kernel's counters already added */
	struct turn_alloc *next_by_tuple;		/* hash chain of t->by_tuple */
	struct turn_alloc *next_by_user, *prev_by_user; /* chain of t->by_user (quota) */
	struct turn_alloc *next, *prev;			/* every allocation, for sweeps */
};

/* A port held for a later Allocate with RESERVATION-TOKEN (EVEN-PORT R). */
struct turn_reservation {
	uint8_t token[8];
	int fd; /* -1 = free slot */
	struct net_addr addr;
	uint64_t expire_ms;
};

/* A client's TCP connection to a listener; owned by struct turn. */
struct turn_conn {
	struct turn_sock sk;
	struct turn *t;
	struct net_addr remote;
	struct turn_alloc *alloc; /* at most one (its 5-tuple) */
	struct buf in, out;	  /* out: what the kernel did not take yet */
	struct turn_budget rq;	  /* its requests before it holds an allocation */
	uint64_t last_ms;
	struct turn_conn *next, *prev;
	struct net_tls_sock *tls; /* a tls: listener's connection; owned */
	bool handshaking;	  /* tls: the handshake is not done yet */
	uint64_t opened_ms;
};

/* One user of the realm by its USERHASH (userhash.c). */
struct turn_userhash {
	uint8_t hash[32];
	char user[STORE_CRED_USER_MAX];
};
#define TURN_USERHASH_MS 5000 /* the index is at most this old (new users) */

struct turn_conf {
	char realm[STORE_CRED_REALM_MAX];
	char secret[256];
	char software[128];
	struct net_addr relay_ip[2]; /* [0] IPv4, [1] IPv6; family 0 = none */
	uint16_t port_lo, port_hi;
	uint32_t lifetime_default, lifetime_max, nonce_lifetime;
	uint32_t max_allocs, max_allocs_user, max_perms, max_chans;
	uint64_t bandwidth; /* bytes per second per allocation; 0 = unlimited */
	unsigned tcp_max_conns, tcp_max_conns_src;
	uint32_t rate, burst; /* requests per second per budget; rate 0 = unlimited */
};

struct turn_fast_state;

struct turn {
	struct turn_conf cf;	      /* RO after start */
	struct turn_fast_state *fast; /* the in-kernel path; NULL: user space only */
	struct turn_filter filter;
	struct store_cred *creds; /* borrowed */
	uint8_t nonce_key[32];
	struct stund_limiter lim;
	struct loop *loop;
	pthread_t thread;
	bool running;
	/* everything below: the role's thread, and dumps under lock */
	pthread_mutex_t lock;
	unsigned nudp, ntcp;
	struct turn_sock udp[TURN_MAX_LISTEN], tcp[TURN_MAX_LISTEN];
	struct net_addr udp_addr[TURN_MAX_LISTEN], tcp_addr[TURN_MAX_LISTEN];
	bool tcp_tls[TURN_MAX_LISTEN]; /* this stream listener is tls: */
	struct net_tls *tls;	       /* the [tls] contexts when a listener is tls:; owned */
	struct turn_alloc **by_tuple, **by_relay, **by_user; /* hash heads, [nbuckets] */
	size_t nbuckets;
	size_t nubuckets;	/* by_user's: an eighth (a full table: chains of about 4) */
	struct turn_alloc *all; /* list of every allocation */
	size_t nallocs;
	uint64_t next_id;
	struct turn_conn *conns;
	size_t nconns;
	struct turn_reservation resv[TURN_RESERVE_MAX];
	struct timer sweep;
	struct turn_userhash *uh; /* sorted by hash; owned */
	size_t nuh;
	uint64_t uh_built_ms;
	uint8_t rx[TURN_RX_MAX];
	struct buf tx;
};

/* ---- alloc.c: the tables ---- */
int turn_tables_init(struct turn *t);
void turn_tables_free(struct turn *t);
struct turn_alloc *turn_alloc_find(struct turn *t, enum net_transport tp, unsigned li,
				   const struct net_addr *client, struct turn_conn *conn);
/* An allocation whose relayed address is a (IP and port), or NULL. */
struct turn_alloc *turn_alloc_by_relay(struct turn *t, const struct net_addr *a);
/* The allocations counted under quota (per-user quotas), up to stop: walks
 * the user's hash chain (its own allocations and hash neighbours), not all. */
size_t turn_alloc_count_user(struct turn *t, const char *quota, size_t stop);
/* A new allocation with empty relays, not yet in the tables. ENOMEM. */
int turn_alloc_new(struct turn *t, struct turn_alloc **ap);
/* Opens a relay socket of family fam (0 v4, 1 v6) on a port from the range;
 * even: an even port; reserve: also the next one, held under *token. 0,
 * EAFNOSUPPORT (no relay address of that family), EADDRNOTAVAIL (no port). */
int turn_relay_open(struct turn *t, struct turn_alloc *a, unsigned fam, bool even, bool reserve,
		    uint8_t token[8]);
/* Takes the socket reserved under token for a's IPv4 relay: 0 or ENOENT. */
int turn_relay_take(struct turn *t, struct turn_alloc *a, const uint8_t token[8]);
/* Links a filled allocation (5-tuple, relays) into the tables. */
void turn_alloc_link(struct turn *t, struct turn_alloc *a);
/* Unlinks (when linked), closes its relays, frees. why: a log word or NULL. */
void turn_alloc_delete(struct turn *t, struct turn_alloc *a, const char *why);
/* Expires what is due: allocations, permissions, channels, reservations, idle
 * connections. */
void turn_sweep(struct turn *t, uint64_t now);
struct turn_perm *turn_perm_find(struct turn_alloc *a, const struct net_addr *peer, uint64_t now);
struct turn_chan *turn_chan_by_num(struct turn_alloc *a, uint16_t num, uint64_t now);
struct turn_chan *turn_chan_by_peer(struct turn_alloc *a, const struct net_addr *peer,
				    uint64_t now);
/* Room for n permissions / n channels (most allocations need one or two:
 * the arrays grow on demand). 0 or ENOMEM. */
int turn_perms_reserve(struct turn_alloc *a, size_t n);
int turn_chans_reserve(struct turn_alloc *a, size_t n);
/* Takes one request token: false when over [turn] rate/burst. */
bool turn_budget_take(const struct turn *t, struct turn_budget *b, uint64_t now);
/* Spends len bytes of a's bandwidth: false when over budget. */
bool turn_bw_take(struct turn *t, struct turn_alloc *a, size_t len, uint64_t now);
unsigned turn_fam_index(const struct net_addr *a); /* 0 IPv4, 1 IPv6 */

/* ---- userhash.c ---- */
/* The user whose USERHASH is hash, into user[cap]: 0 or ENOENT. */
int turn_userhash_find(struct turn *t, const uint8_t hash[32], uint64_t now, char *user,
		       size_t cap);
void turn_userhash_free(struct turn *t);

/* ---- cred.c ---- */
/* The issue time of a nonce of ours (its MAC not checked: for a nonce that
 * was). 0 or EPERM. */
int turn_nonce_issued(struct slice nonce, int64_t *issued);

/* ---- method.c: requests and indications from clients ---- */
struct turn_src {
	enum net_transport tp;
	unsigned li;
	struct net_addr client;
	struct turn_conn *conn;
};
/* A STUN message or ChannelData from a client; an answer (if any) goes out
 * by turn_send_client. */
void turn_client_packet(struct turn *t, const struct turn_src *s, const uint8_t *p, size_t len,
			uint64_t now);
/* A datagram from a peer on a's relay socket fam. */
void turn_peer_packet(struct turn *t, struct turn_alloc *a, unsigned fam,
		      const struct net_addr *peer, const uint8_t *p, size_t len, uint64_t now);

/* ---- server.c: I/O ---- */
/* Sends to the client of a 5-tuple (a datagram, or onto its connection). */
void turn_send_client(struct turn *t, const struct turn_src *s, const void *p, size_t len);
void turn_conn_close(struct turn *t, struct turn_conn *c);

/* ---- tls.c: TURN over TLS (RFC 8656 3.1: TLS over TCP to the server) ---- */
void turn_tls_metrics_register(void);
/* Reads [tls] into the role's own contexts when a listener is tls:. */
int turn_tls_setup(struct turn *t, const struct conf *c);
/* A tls: listener's new connection: its TLS state, the handshake begun.
 * EAGAIN at [tls] max_handshakes (counted): the caller closes it. */
int turn_tls_accept(struct turn *t, struct turn_conn *c);
/* Moves the handshake on; true when it is done and the connection may be
 * read; false while it goes on, or when it failed (then c is closed and
 * freed: *closed is set). */
bool turn_tls_step(struct turn *t, struct turn_conn *c, bool *closed);
/* Closes the connections whose handshake took longer than [tls]
 * handshake_timeout. */
void turn_tls_sweep(struct turn *t, uint64_t now);
/* A relay socket is readable: reads what is there, hands it to turn_peer_packet. */
void turn_relay_readable(struct turn *t, struct turn_alloc *a, unsigned fam, int fd);

/* ---- fastpath.c: ChannelData of bound channels relayed in the kernel ---- */
/* mode: [turn] fastpath (auto, on, off). 0, or (on only) why it could not load. */
int turn_fast_start(struct turn *t, const char *mode);
void turn_fast_stop(struct turn *t);
/* Makes the kernel's entries of a's channels what they should be now: added
 * for a live channel whose peer has a live permission (and the rest of the
 * rules in fastpath.c), removed for any other. After every change of a's
 * channels or permissions, and before the sweep drops expired ones. */
void turn_fast_sync(struct turn *t, struct turn_alloc *a, uint64_t now);
/* Removes ch's entries (a slot about to be reused for another channel). */
void turn_fast_chan_drop(struct turn *t, struct turn_alloc *a, struct turn_chan *ch);
/* Adds the kernel's new counts for a to its counters and the metrics. */
void turn_fast_pull(struct turn *t, struct turn_alloc *a);
/* Before a is freed: every entry of it removed, its counts pulled. */
void turn_fast_forget(struct turn *t, struct turn_alloc *a);
/* Whether the kernel path is loaded (tests, dumps). */
bool turn_fast_on(const struct turn *t);

/* ---- metrics ---- */
extern struct metric turn_m_allocs, turn_m_perms, turn_m_chans, turn_m_requests,
    turn_m_to_peer_bytes, turn_m_to_peer_pkts, turn_m_from_peer_bytes, turn_m_from_peer_pkts,
    turn_m_denied_peer, turn_m_drop_rate, turn_m_drop_bw, turn_m_drop_noperm, turn_m_drop_bad,
    turn_m_alloc_total, turn_m_expired, turn_m_auth_fail, turn_m_conn_refused, turn_m_fast_to_peer,
    turn_m_fast_to_client, turn_m_fast_full, turn_m_auth_cached;
/* Counts an error response by code. */
void turn_count_error(uint16_t code);
void turn_metrics_register(void);

#endif
