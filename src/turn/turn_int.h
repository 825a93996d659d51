/* turn internals shared by the server, the methods, the allocations and the dumps. */
#ifndef PINHOLE_TURN_INT_H
#define PINHOLE_TURN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "stun/stun.h"
#include "stund/stund.h"
#include "turn.h"
#include "turn/bpf/turn_fast.h" /* the users' buckets: one struct, one take, both paths */

#define TURN_MAX_LISTEN 8
#define TURN_RX_MAX (65536 + 64) /* a datagram, or a whole TCP frame */
#define TURN_TCP_OUT_MAX (256u * 1024u)
#define TURN_USER_MAX (STORE_CRED_USER_MAX + 16) /* shared secret: "expiry:user" */
#define TURN_PERM_S 300				 /* RFC 8656 9 */
#define TURN_CHANNEL_S 600			 /* RFC 8656 12 */
/* RFC 8656 12: after a binding expires, its number and its peer stay tied
 * to each other this long (the same pair may be bound again): a late
 * ChannelData the client sent to the old peer must never reach a new one */
#define TURN_CHANNEL_HOLD_S 300
#define TURN_RESERVE_S 30			 /* RFC 8656 7.2: EVEN-PORT R bit reservations */
#define TURN_RESERVE_MAX 256			 /* reservations held at once */
#define TURN_TCP_IDLE_S 30			 /* a connection without an allocation */
#define TURN_RELAY_RCVBUF (256 * 1024)		 /* per relay socket: media, not bulk */
#define TURN_CONN_ROUNDS 16			 /* reads per wake-up of one connection */
#define TURN_LISTEN_ROUNDS 512			 /* datagrams per wake-up of a UDP listener */
#define TURN_THREADS_MAX 64			 /* [turn] threads */

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
	struct turn *t;	    /* back-pointer */
	uint64_t read_turn; /* relay sockets: the loop turn (t->turns) of the last read */
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
	bool fast_home; /* fast, and in its home slot of turn_chan_slot (it counts there) */
	uint64_t fast_count; /* fast_home: the slot's count word as last added to the totals */
	bool held; /* expired and held (TURN_CHANNEL_HOLD_S): out of turn_channels */
	/* its peer was let through as another allocation's relayed address while
	 * the shared relay index was at this generation (0 = not so) */
	uint64_t relay_gen;
	/* the peer filter let it through while the host's address set was at
	 * this generation + 1 (0 = not so): asked again only when that moves */
	uint64_t filter_gen;
};

/* One relayed transport address of an allocation (IPv4, IPv6). */
struct turn_relay {
	struct turn_sock sk; /* fd -1 when this family is not allocated */
	struct net_addr addr;
	struct turn_alloc *next_by_addr; /* hash chain of sh->by_relay (under sh->lock) */
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

/* One allocation; owned by the struct turn (thread) it was created on.
 * What every relayed packet reads comes first (the 5-tuple's chain and
 * client, the permission and channel arrays, the bandwidth bucket, the
 * counters), so that a packet touches two cache lines of it, not six. */
struct turn_alloc {
	struct turn_alloc *next_by_tuple; /* hash chain of t->by_tuple */
	enum net_transport tp;		  /* to the client: NET_UDP or NET_TCP */
	unsigned li;			  /* the listener the 5-tuple's server side is */
	struct turn_perm *perms;	  /* [perm_cap], grown up to max_permissions; owned */
	size_t nperm;
	struct turn_chan *chans; /* [chan_cap], grown up to max_channels; owned */
	size_t nchan;
	uint64_t bw_milli, bw_last_ms;		      /* bandwidth token bucket (bytes x 1000) */
	int64_t tx_bytes, tx_pkts, rx_bytes, rx_pkts; /* to peers / from peers, the kernel's
							 included once pulled */
	struct turn_conn *conn;	/* TCP: its connection (which points back) */
	bool dont_fragment;
	struct net_addr client; /* the 5-tuple's client side */
	size_t perm_cap, chan_cap;
	uint64_t id;
	char user[TURN_USER_MAX];  /* as authenticated (USERNAME, or found by USERHASH) */
	char quota[TURN_USER_MAX]; /* what per-user quotas count: the user part */
	uint8_t tid[STUN_TID_LEN]; /* the Allocate's, for its retransmissions */
	struct turn_keycache kc;
	uint64_t created_ms, expire_ms;
	struct turn_relay relay[2]; /* [0] IPv4, [1] IPv6 */
	bool counted;		    /* in the shared quotas (turn_quota_take) */
	struct turn_count *user_ent; /* counted: its entry in the users table */
	struct turn_budget rq;	    /* requests on its own 5-tuple */
	bool fast_stats;	    /* the kernel keeps counters for it */
	struct {
		uint64_t tx_pkts, tx_bytes, drop_bw, drop_user_bw;
		uint64_t rx_count; /* the port's to_client_count word */
	} fast_seen;		   /* the kernel's counters already added */
	struct turn_alloc *next, *prev; /* every allocation of its thread, for sweeps */
};

/* A port held for a later Allocate with RESERVATION-TOKEN (EVEN-PORT R). */
struct turn_reservation {
	uint8_t token[8];
	int fd; /* -1 = free slot */
	struct net_addr addr;
	uint64_t expire_ms;
};

/* A client's TCP connection to a listener; owned by the thread that accepted it. */
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
	bool counted;		  /* in sh->nconns and sh->srcs */
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
	uint64_t bandwidth;	 /* bytes per second per allocation; 0 = unlimited */
	uint64_t bandwidth_user; /* bytes per second per user; 0 = no budget */
	unsigned tcp_max_conns, tcp_max_conns_src;
	uint32_t rate, burst; /* requests per second per budget; rate 0 = unlimited */
};

struct turn_fast_state;

/* Counts by key (per-user allocations, TCP connections per source): a
 * chained hash of small entries, one per key with a count, freed at 0. The
 * caller locks (sh->lock). */
struct turn_count {
	struct turn_count *next;
	uint32_t n;
	uint16_t len;
	/* users: the user's bucket while an allocation holds the entry: own, or
	 * the kernel's entry fast_user of its per-user array (fastpath.c) */
	int32_t fast_user; /* -1: none */
	struct turn_fast_user_bw *bw;
	struct turn_fast_user_bw own;
	uint8_t key[];
};
struct turn_counts {
	struct turn_count **b;
	size_t nb; /* a power of two */
};

/* What the role's threads share. Lock order: a thread's own t->lock, then
 * lock; never another thread's t->lock while holding either. */
struct turn_shared {
	struct turn **thr; /* [nthr]; thr[0] is the role's handle (owned by the caller) */
	unsigned nthr;
	struct stund_limiter lim;     /* per-source request budget; its own locks */
	_Atomic size_t nallocs;	      /* counted allocations (written under lock) */
	_Atomic uint64_t next_id;     /* allocation ids, unique over the threads */
	_Atomic uint64_t relay_gen;   /* moves each time a relayed address leaves by_relay */
	_Atomic unsigned nconns;      /* TCP connections over the threads */
	pthread_mutex_t lock;	      /* guards what is below */
	struct turn_alloc **by_relay; /* relayed address -> allocation, [nrbuckets] */
	size_t nrbuckets;
	struct turn_counts users; /* allocations per quota name */
	struct turn_counts srcs;  /* TCP connections per source address (IPv6 /64) */
	struct turn_reservation resv[TURN_RESERVE_MAX];
};

/* Datagrams to UDP clients a loop turn queued on one listener: sent with one
 * sendmmsg at the turn's end (or when full). */
#define TURN_TXQ_MAX 64
#define TURN_RX_SLOTS 32   /* datagrams per recvmmsg */
#define TURN_RX_SLOT 2048 /* each: a path MTU's datagram; longer ones spill over */
struct turn_txq {
	unsigned n;
	size_t used; /* bytes of data[] taken */
	struct mmsghdr msg[TURN_TXQ_MAX];
	struct iovec iov[TURN_TXQ_MAX];
	struct net_addr to[TURN_TXQ_MAX];
	uint8_t data[TURN_TXQ_MAX * 1536];
};

/* One thread of the role: its loop, its own SO_REUSEPORT listener sockets
 * (the kernel hashes a client's 5-tuple, or a connection, to one of them, so
 * every packet of an allocation's client comes to the same thread), and the
 * allocations and connections created on it (their sockets in its loop, its
 * sweep). The configuration fields are copies of thread 0's, read-only after
 * start; sh is what the threads share. */
struct turn {
	struct turn_shared *sh;
	unsigned idx;		      /* 0..sh->nthr-1 */
	struct turn_conf cf;	      /* RO after start */
	struct turn_fast_state *fast; /* the in-kernel path (thread 0's); NULL: user space only */
	struct turn_filter filter;    /* its host is thread 0's (thread-safe reads) */
	struct store_cred *creds;     /* borrowed */
	uint8_t nonce_key[32];	      /* the same in every thread */
	struct loop *loop;
	unsigned batch_wait_us; /* [turn] batch_wait */
	pthread_t thread;
	bool running;
	/* everything below: the thread itself, and dumps under lock */
	pthread_mutex_t lock;
	unsigned nudp, ntcp;
	struct turn_sock udp[TURN_MAX_LISTEN], tcp[TURN_MAX_LISTEN];
	struct net_addr udp_addr[TURN_MAX_LISTEN], tcp_addr[TURN_MAX_LISTEN];
	bool tcp_tls[TURN_MAX_LISTEN]; /* this stream listener is tls: */
	struct net_tls *tls;	       /* the [tls] contexts when a listener is tls:; thread 0's */
	struct turn_alloc **by_tuple;  /* hash heads, [nbuckets] */
	size_t nbuckets;
	struct turn_alloc *all; /* list of this thread's allocations */
	size_t nallocs;
	struct turn_conn *conns;
	size_t nconns;
	struct timer sweep;
	struct turn_userhash *uh; /* sorted by hash; owned */
	size_t nuh;
	uint64_t uh_built_ms;
	struct turn_txq *txq[TURN_MAX_LISTEN]; /* [nudp]; owned */
	uint64_t turns;				/* loop turns ended (relay reads) */
	uint64_t behind_turn; /* the last turn a listener read filled a whole batch */
	/* recvmmsg's: a slot per datagram, and one spill-over area the rest of
	 * a longer one goes to (kept when no later one of the batch used it) */
	struct mmsghdr rx_msg[TURN_RX_SLOTS];
	struct iovec rx_iov[TURN_RX_SLOTS][2];
	struct net_addr rx_from[TURN_RX_SLOTS];
	uint8_t rx[TURN_RX_SLOTS][TURN_RX_SLOT];
	uint8_t rx_big[TURN_RX_MAX];
	struct buf tx;
};

/* ---- alloc.c: the tables ---- */
int turn_shared_init(struct turn_shared *sh, const struct turn_conf *cf);
void turn_shared_free(struct turn_shared *sh);
int turn_tables_init(struct turn *t);
void turn_tables_free(struct turn *t);
struct turn_alloc *turn_alloc_find(struct turn *t, enum net_transport tp, unsigned li,
				   const struct net_addr *client, struct turn_conn *conn);
/* Whether a (IP and port) is the relayed address of an allocation on any
 * thread; *gen: the index's generation it was true at. */
bool turn_relay_known(struct turn *t, const struct net_addr *a, uint64_t *gen);
/* Counts a new allocation of quota against the per-user and total limits: 0,
 * or the error code to answer (486, 508). a->counted is set on success. */
uint16_t turn_quota_take(struct turn *t, struct turn_alloc *a, const char *quota);
/* A TCP connection from remote against tcp_max_connections and
 * tcp_max_connections_per_address: true (c->counted set) or false. */
bool turn_conn_take(struct turn *t, struct turn_conn *c);
void turn_conn_put(struct turn *t, struct turn_conn *c);
int turn_counts_init(struct turn_counts *c, size_t nb);
void turn_counts_free(struct turn_counts *c);
/* Adds one to key's count unless it is at max (or out of memory): true when added. */
struct turn_count *turn_counts_take(struct turn_counts *c, const void *key, size_t len,
				    uint32_t max);
void turn_counts_put(struct turn_counts *c, const void *key, size_t len);
/* A new allocation with empty relays, not yet in the tables. ENOMEM. */
int turn_alloc_new(struct turn *t, struct turn_alloc **ap);
/* Opens a relay socket of family fam (0 v4, 1 v6) on a port from the range;
 * even: an even port; reserve: also the next one, held under *token. 0,
 * EAFNOSUPPORT (no relay address of that family), EADDRNOTAVAIL (no port). */
int turn_relay_open(struct turn *t, struct turn_alloc *a, unsigned fam, bool even, bool reserve,
		    uint8_t token[8]);
/* Takes the socket reserved under token for a's IPv4 relay (the reservation
 * may have been made on another thread): 0 or ENOENT. */
int turn_relay_take(struct turn *t, struct turn_alloc *a, const uint8_t token[8]);
/* Links a filled allocation (5-tuple, relays) into the tables. */
void turn_alloc_link(struct turn *t, struct turn_alloc *a);
/* Unlinks (when linked), closes its relays, frees. why: a log word or NULL. */
void turn_alloc_delete(struct turn *t, struct turn_alloc *a, const char *why);
/* Expires what is due: the thread's allocations, permissions, channels, idle
 * connections; thread 0 also the reservations. */
void turn_sweep(struct turn *t, uint64_t now);
struct turn_perm *turn_perm_find(struct turn_alloc *a, const struct net_addr *peer, uint64_t now);
struct turn_chan *turn_chan_by_num(struct turn_alloc *a, uint16_t num, uint64_t now);
struct turn_chan *turn_chan_by_peer(struct turn_alloc *a, const struct net_addr *peer,
				    uint64_t now);
/* A channel bound or held (TURN_CHANNEL_HOLD_S after it expired), by number or
 * by peer: what a new binding must agree with. */
struct turn_chan *turn_chan_held_num(struct turn_alloc *a, uint16_t num, uint64_t now);
struct turn_chan *turn_chan_held_peer(struct turn_alloc *a, const struct net_addr *peer,
				      uint64_t now);
/* Whether ch's slot may take another binding: expired and no longer held. */
bool turn_chan_free(const struct turn_chan *ch, uint64_t now);
/* Room for n permissions / n channels (most allocations need one or two:
 * the arrays grow on demand). 0 or ENOMEM. */
int turn_perms_reserve(struct turn_alloc *a, size_t n);
int turn_chans_reserve(struct turn_alloc *a, size_t n);
/* Takes one request token: false when over [turn] rate/burst. */
bool turn_budget_take(const struct turn *t, struct turn_budget *b, uint64_t now);
/* Spends len bytes of a's bandwidth and of its user's: false (counted in
 * turn_dropped_total by which) when over either budget. */
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
/* Sends to the client of a 5-tuple: onto its connection, or a datagram
 * queued on the listener until the end of the loop turn (one sendmmsg for
 * the turn's answers and relayed data, in the order they were made). */
void turn_send_client(struct turn *t, const struct turn_src *s, const void *p, size_t len);
/* Room for a datagram of len bytes to a UDP client, queued as turn_send_client
 * queues one (the caller writes it in place, before the turn ends); NULL for a
 * stream client or one too long: then turn_send_client. */
uint8_t *turn_txq_reserve(struct turn *t, const struct turn_src *s, size_t len);
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
/* A user's first allocation (u->n 1, under sh->lock): its bucket (full)
 * goes to the kernel's per-user array when the fast path is on, so that
 * both paths take from one budget; else, or when the array is full, it
 * stays in u->own. turn_fast_user_close gives the entry back, at the last. */
void turn_fast_user_open(struct turn *t, struct turn_count *u);
void turn_fast_user_close(struct turn *t, struct turn_count *u);
/* The users' buckets' clock, ms: with the fast path the kernel's own
 * (CLOCK_MONOTONIC_COARSE, as the program reads it), else now. */
uint64_t turn_fast_user_clock(const struct turn *t, uint64_t now);

/* ---- metrics ---- */
extern struct metric turn_m_allocs, turn_m_perms, turn_m_chans, turn_m_requests,
    turn_m_to_peer_bytes, turn_m_to_peer_pkts, turn_m_from_peer_bytes, turn_m_from_peer_pkts,
    turn_m_denied_peer, turn_m_drop_rate, turn_m_drop_bw, turn_m_drop_user_bw, turn_m_drop_noperm,
    turn_m_drop_bad, turn_m_alloc_total, turn_m_expired, turn_m_auth_fail, turn_m_conn_refused,
    turn_m_fast_to_peer, turn_m_fast_to_client, turn_m_fast_full, turn_m_auth_cached;
/* Counts an error response by code. */
void turn_count_error(uint16_t code);
void turn_metrics_register(void);

#endif
