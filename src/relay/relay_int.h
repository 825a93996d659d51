/* relay: internal structures shared by the relay's files (not a public header). */
#ifndef PINHOLE_RELAY_INT_H
#define PINHOLE_RELAY_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"
#include "net/net.h"
#include "relay/relay.h"
#include "rtp/rtp.h"
#include "sdp/sdp.h"

#define RELAY_MAX_IF 8
#define RELAY_BATCH 32
#define RELAY_RXBUF 2048 /* larger datagrams are dropped as malformed */
#define RELAY_SWEEP_MS 1000

struct relay_session;
struct relay_media;
struct relay_charge; /* limits.c: who pays for a session's port pairs */

enum { RELAY_CHARGE_SOURCE = 0, RELAY_CHARGE_AOR = 1, RELAY_CHARGE_KINDS = 2 };

/* One relay interface: a bind address, the address the SDP advertises, and
 * its share of the port range. RO after relay_start, except the pool fields
 * (guarded by relay.pool_lock). */
struct relay_if {
	char name[32];
	struct net_addr bind;	   /* port 0 */
	char adv[NET_ADDR_STRLEN]; /* IP text written into SDP */
	struct net_addr adv_addr;
	int family;
	uint8_t *used;	 /* per pair: 1 taken; owned */
	uint32_t cursor; /* next pair to try: round robin delays port reuse */
	uint32_t nfree;
};

/* One receiving socket (RTP or RTCP of one m= line of one leg); the epoll
 * argument. Owned by its struct relay_media; fields under the session lock. */
struct relay_sock {
	struct relay_media *m; /* back-pointer */
	int fd;		       /* -1 when not open */
	uint16_t port;	       /* bound port */
	bool rtcp;	       /* the odd port */
	struct relay_latch latch;
	struct rtp_seq seq;
	uint64_t packets, bytes, dropped; /* totals, the kernel's included once pulled */
	uint64_t created_ms;
	bool fast;	 /* the kernel forwards its latched RTP (an entry in the fwd map) */
	bool fast_stats; /* the kernel keeps counters for it */
	struct {
		uint64_t packets, bytes, gaps, resyncs;
	} fast_seen; /* the kernel's counters already added to the totals */
};

/* One m= line of one leg. Owned by struct relay_leg. */
struct relay_media {
	struct relay_session *s; /* back-pointer */
	unsigned leg, idx;
	unsigned ifidx;
	uint32_t pair; /* pool index of the port pair */
	struct relay_sock rtp, rtcp;
	bool offered_mux;    /* this party's SDP had a=rtcp-mux */
	bool we_offered_mux; /* we put a=rtcp-mux in the offer sent to this party */
	bool mux;	     /* this party gets RTCP on its RTP port */
	struct relay_ice *ice; /* owned (ice.c); NULL: this party's ICE is stripped */
};

/* One party. Owned by struct relay_session. */
struct relay_leg {
	char *tag; /* owned; NULL until known */
	size_t tag_len;
	bool ifset;
	unsigned ifidx;
	struct net_addr sig;			  /* received-from; AF_UNSPEC when unknown */
	struct relay_media *media[SDP_MAX_MEDIA]; /* owned; NULL: no sockets */
	struct sdp_vstate vout;			  /* o= version of what we send to this party */
};

/* One call. Owned by the relay's table (then by its dying list). */
struct relay_session {
	struct relay *r;      /* back-pointer */
	pthread_mutex_t lock; /* everything below */
	char *call_id;	      /* owned */
	size_t call_id_len;
	uint64_t hash;
	struct relay_session *next; /* table chain or dying list; table lock */
	unsigned worker;	    /* whose loop runs its sockets; RO */
	bool dead;		    /* unlinked; sockets close on the worker */
	uint64_t created_ms;
	uint64_t touched_ms; /* last offer or answer */
	bool on_hold;	     /* the last offer or answer held every stream */
	struct relay_leg leg[2];
	/* charged with its pairs (limits.c); set at creation, under pool_lock */
	struct relay_charge *charge[RELAY_CHARGE_KINDS];
};

/* Per-worker receive and send scratch; only that worker's thread uses it. */
struct relay_worker {
	struct relay *r;
	struct loop *loop;
	struct timer sweep;
	uint8_t rx[RELAY_BATCH][RELAY_RXBUF];
	struct sockaddr_storage src[RELAY_BATCH], dst[RELAY_BATCH];
	struct iovec riov[RELAY_BATCH], siov[RELAY_BATCH];
	struct mmsghdr rmsg[RELAY_BATCH], smsg[RELAY_BATCH];
	int sfd[RELAY_BATCH];
};

struct relay {
	struct net *net;
	struct relay_latch_conf latch; /* RO */
	uint64_t timeout_ms;	       /* RO */
	uint64_t hold_timeout_ms;      /* RO: for sessions on hold */
	unsigned nif;
	struct relay_if ifs[RELAY_MAX_IF];
	uint16_t port_lo; /* even */
	uint32_t npairs;
	pthread_mutex_t pool_lock;		/* the pool and the charges */
	unsigned max_media;			/* RO: m= lines relayed per call */
	uint32_t max_pairs[RELAY_CHARGE_KINDS]; /* RO: 0 = no limit */
	struct relay_charge **charges;		/* owned; chained by hash */

	pthread_mutex_t table_lock;
	struct relay_session **table; /* owned; chained by hash */
	size_t table_size;	      /* power of two */
	size_t nsessions;
	struct relay_session *dying; /* unlinked, waiting for their worker */

	unsigned nworkers;
	struct relay_worker **workers; /* owned */

	struct relay_ngd *ngd; /* owned; NULL when off */

	struct relay_fast_state *fast; /* owned; NULL: all media in user space */
};

/* pool (relay.c) */
int relay_pool_get(struct relay *r, unsigned ifidx, struct relay_media *m);
void relay_pool_put(struct relay *r, struct relay_media *m);

/* limits (limits.c) */
void relay_limits_register(void);
int relay_limits_init(struct relay *r, const struct conf *c);
void relay_limits_free(struct relay *r); /* after every session */
/* E2BIG (counted) when sd and what leg L keeps from earlier offers make more
 * m= lines with ports than max_media. */
int relay_limit_media(struct relay *r, const struct sdp *sd, const struct relay_leg *L);
/* Charges a new session to its source's IP (/64) and to owner (may be empty). */
int relay_charge_attach(struct relay *r, struct relay_session *s, const struct net_addr *src,
			struct slice owner);
void relay_charge_detach(struct relay *r, struct relay_session *s);
/* pool_lock held: EDQUOT (counted) when a charge of s holds its limit. */
int relay_charge_check(struct relay *r, const struct relay_session *s);
void relay_charge_add(struct relay_session *s, int delta); /* pool_lock held */
/* Pairs held by one charge (tests): kind, and the IP bytes or the AOR. */
uint32_t relay_charge_pairs(struct relay *r, int kind, const void *key, size_t len);

/* sessions (session.c) */
void relay_session_destroy_now(struct relay_session *s); /* closes and frees */
void relay_sweep(struct relay *r, uint64_t now_ms);
void relay_sessions_free(struct relay *r);

/* packet path (forward.c) */
void relay_sock_readable(int fd, uint32_t events, void *arg);
int relay_media_attach(struct relay_media *m);	/* loop_fd_add both sockets */
void relay_media_detach(struct relay_media *m); /* on the worker, or after net_stop */

/* counters (forward.c) */
void relay_metrics_register(void);
void relay_metrics_drop(enum relay_drop d, int64_t n);
void relay_metrics_sessions(int64_t delta);
/* One RTP stream of an ended call, by its evidence. */
void relay_metrics_evidence(enum relay_evidence e);
int64_t relay_metrics_get(int what); /* 0 packets, 1 bytes, 2+d drops */

void relay_metrics_fast(int64_t packets, int64_t bytes); /* forwarded by the kernel */
int64_t relay_metrics_fast_get(void);

/* in-kernel fast path (fastpath.c). A latched IPv4 RTP stream is forwarded by
 * a tc program; its counters are pulled into the socket's (session locked). */
struct relay_fast_state;
int relay_fast_start(struct relay *r, const char *mode); /* [relay] fastpath */
void relay_fast_stop(struct relay *r);
void relay_fast_sync(struct relay_media *m);  /* after latch or SDP changes of m */
void relay_fast_pull(struct relay_sock *k);   /* fold the kernel's counters in */
void relay_fast_forget(struct relay_sock *k); /* before the socket closes */

/* ICE checks across the relay (ice.c), [proxy] ice = candidate. Session locked. */
struct relay_ice;
void relay_ice_register_metrics(void);
/* When on: keeps the ICE credentials of the party of m from section i of its
 * SDP sd, or for a party without ICE makes the relay's own (ICE-lite agent);
 * when not, forgets them. 0 or ENOMEM. */
int relay_ice_set(struct relay_media *m, const struct sdp *sd, size_t i, bool on);
void relay_ice_free(struct relay_media *m);
/* A STUN packet at k (whose media has ICE credentials): the socket to send
 * out of and *dst, or NULL (dropped and counted by verdict). What to send is
 * p[0..*len): the packet, or the relay's own answer written over it. */
struct relay_sock *relay_ice_packet(struct relay *r, struct relay_sock *k, uint8_t *p,
				    size_t *len, const struct net_addr *src, uint64_t now,
				    const struct net_addr **dst);
/* The ICE part of the rewrite of section i of sd (the sender's SDP, whose
 * media is from) for the party whose relay media is to. */
void relay_ice_rw(const struct relay_media *from, const struct relay_media *to,
		  const struct sdp *sd, size_t i, bool mux, struct sdp_media_rw *mrw);
void relay_ice_session_end(const struct relay_session *s); /* counts how its media went */

/* ng server (ngd.c) */
struct relay_ngd;
int relay_ngd_start(struct relay *r, const struct conf *c); /* [relay] ng, ng_allow, ng_list_max */
void relay_ngd_free(struct relay_ngd *d);
const struct net_addr *relay_ngd_addr(const struct relay_ngd *d);

#endif
