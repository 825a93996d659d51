/* stund: the STUN Binding server role (RFC 8489, RFC 5780), also used on the SIP port. */
#ifndef PINHOLE_STUND_H
#define PINHOLE_STUND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"
#include "net/net.h"

/* ---- the responder: a pure function from request bytes to response bytes ----
 *
 * No I/O, no state, no logging: the caller owns the sockets, the counters and
 * the rate limits. Used by the standalone server below and by the SIP edge for
 * RFC 5626 STUN keepalives arriving on a SIP UDP socket.
 */

/* Where a Binding can be answered from (RFC 5780 7.1). Index bit 0 means
 * "alternate port", bit 1 "alternate IP": addr[0] = A1:P1, addr[1] = A1:P2,
 * addr[2] = A2:P1, addr[3] = A2:P2. Owned by the caller; RO while in use. */
struct stund_view {
	struct sockaddr_storage addr[4];
	bool rfc5780;	      /* all four are set: CHANGE-REQUEST, RESPONSE-PORT honoured */
	const char *software; /* SOFTWARE value, or NULL for none */
};

/* What to do with a response the responder built. */
struct stund_reply {
	unsigned from;		    /* index into stund_view.addr: the socket to send from */
	struct sockaddr_storage to; /* destination: the source, or RESPONSE-PORT at its IP */
	uint16_t code;		    /* 0 for a success response, else the error code sent */
};

/* Responses to unpadded requests never exceed this many bytes, nor the
 * request's own size when that is larger: enough for the full RFC 5780 answer
 * over IPv6 with FINGERPRINT, so the amplification of a 20-byte request is
 * bounded at 5 and the per-source budget of the server does the rest. */
#define STUND_RESP_FLOOR 100

/*
 * Answers one datagram that arrived on socket `in` of view v (v may be NULL:
 * one address, no RFC 5780, no SOFTWARE) from src. Appends the response to
 * resp (caller-owned) and fills out.
 * Returns 0 when there is a response to send; otherwise the datagram is to be
 * dropped, and the code says why: EBADMSG (not STUN, or broken header),
 * EACCES (FINGERPRINT does not match, RFC 8489 7.3), ENOTSUP (not a request:
 * indications and responses get no answer), ENOMEM.
 */
int stund_respond(const struct stund_view *v, unsigned in, const struct sockaddr *src,
		  const void *req, size_t len, struct buf *resp, struct stund_reply *out);

/* The SIP edge's form: single address, reply goes back to src on the socket
 * the request came in on. Same return values. */
int stund_answer(const struct sockaddr *src, const void *req, size_t len, struct buf *resp);


/* ---- per-source budget: token buckets keyed by source IP ----
 *
 * A fixed table, direct-mapped by a hash of the source IP (IPv6 by its /64:
 * a spoofer picks any address of the victim's prefix). A colliding source
 * takes over a slot only once the slot's bucket has refilled; until then both
 * share it, which errs on the side of refusing. O(1), no allocation after
 * init. One table serves every worker (a source's datagrams land on any of
 * them, so per-worker tables would multiply its rate by the worker count) and
 * every port that answers STUN (3478 and the SIP ports): slots are guarded by
 * STUND_LIMIT_LOCKS striped spinlocks, uncontended but for one source.
 */
#define STUND_LIMIT_LOCKS 64

struct stund_bucket {
	uint64_t key;
	uint64_t last_ms;
	uint32_t milli; /* tokens x 1000 */
};

struct stund_limiter {
	struct stund_bucket *slots; /* owned */
	size_t mask;
	uint32_t rate;	/* tokens per second; 0 = unlimited */
	uint32_t burst; /* bucket size */
	pthread_spinlock_t locks[STUND_LIMIT_LOCKS];
};

/* slots is rounded up to a power of two. */
int stund_limiter_init(struct stund_limiter *l, size_t slots, uint32_t rate, uint32_t burst);
/* The same from [stun] rate, burst and sources. */
int stund_limiter_init_conf(struct stund_limiter *l, const struct conf *c);
void stund_limiter_free(struct stund_limiter *l);
/* Takes one token for src at time now_ms; false when the source is over
 * budget. Thread-safe. */
bool stund_limiter_allow(struct stund_limiter *l, const struct sockaddr *src, uint64_t now_ms);

/* The SIP edge's STUN hook (edge_stun_h, for edge_set_stun): answers
 * f->remote, within the budget of the limiter in arg (a struct
 * stund_limiter, the one the server on 3478 uses; NULL = unlimited).
 * EAGAIN: over budget, dropped and counted as the server counts its own. */
int stund_flow_answer(const struct flow *f, const uint8_t *p, size_t len, struct buf *out,
		      void *arg);

/* ---- the standalone server role ----
 *
 * [stun] listen = udp:0.0.0.0:3478, udp:[::]:3478   (each on every net worker,
 *        with its own SO_REUSEPORT socket)
 *        other = 198.18.0.2:3479   RFC 5780: the alternate IP and port
 *        rate, burst: per-source token bucket
 */

extern const struct conf_key stund_conf_keys[];

struct stund;

/* Opens the sockets (errors such as EADDRINUSE or a bad address surface here,
 * with a log line) and hands them to every worker of n via loop_post. Call
 * before or after net_start. *sp is set on success; the stund is owned by the
 * caller and freed with stund_free after net_stop. lim: the per-source
 * budget to share (the SIP ports' one, which must outlive the stund), or NULL
 * for one of its own from [stun] rate, burst and sources. */
int stund_start(struct stund **sp, struct net *n, const struct conf *c,
		struct stund_limiter *lim);
void stund_free(struct stund *sd);

/* Bound primary address of listen entry i (port resolved when configured 0);
 * NULL past the end. For tests and the status page. */
const struct sockaddr_storage *stund_addr(const struct stund *sd, unsigned i, unsigned slot);
unsigned stund_listen_count(const struct stund *sd);

struct stund_stats {
	int64_t requests, responses, errors, dropped_malformed, dropped_rate, send_failed;
	int64_t fast_responses; /* of responses, sent by the in-kernel fast path */
	bool fast;		/* the fast path is loaded */
};
void stund_stats_get(const struct stund *sd, struct stund_stats *out);

#endif
