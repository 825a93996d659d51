/* relay: the media relay role: port pool, sessions of two legs, latching, RTP/RTCP forwarding, ng
 * server.
 *
 * A session (one per Call-ID) has two legs, one per party, and each leg has,
 * per m= line, a pair of UDP sockets (RTP on an even port, RTCP on the next
 * odd one) bound on one relay interface. A packet that arrives at leg A's
 * socket goes out of leg B's socket of the same m= line, so each party sees
 * the relay's address and port that its SDP named (RFC 4961 symmetric RTP).
 *
 *     party A                      relay                        party B
 *   src a:pa ---> [A rtp :30000] ----------> [B rtp :30002] ---> b:pb
 *            <--- [A rtp :30000] <---------- [B rtp :30002] <---
 *
 * RTCP follows the same way on the odd ports, or on the RTP port for a party
 * that muxes (RFC 5761); the relay converts between the two, so a muxing
 * party can talk to one that does not.
 *
 * Threads. Sessions are created, changed and deleted by control calls
 * (relayctl_local from SIP workers, the ng server) on any thread; each
 * session's sockets live on one net worker's epoll loop (chosen by a hash of
 * the Call-ID), which forwards with recvmmsg/sendmmsg. A session's mutable
 * state is guarded by the session's mutex, taken once per receive batch.
 * The session table and the port pool have their own locks. A deleted
 * session's sockets are closed on its worker (loop_post), or by relay_free.
 *
 * The request and result types are relayctl's (relayctl/relayctl.h): this
 * role implements that contract; it never calls relayctl.
 */
#ifndef PINHOLE_RELAY_H
#define PINHOLE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"

struct relayctl_req;
struct relayctl_query;

/* ---- configuration: [relay] ---- */

extern const struct conf_key relay_conf_keys[];

/* ---- latching: the state machine of one receiving socket ----
 *
 * RFC 4961 / RFC 7362: the relay learns where a party really sends from (its
 * NAT mapping) from the first authentic packet, and sends back there.
 *
 *   UNLATCHED --valid RTP/RTCP from an allowed IP--> LATCHED(src, ssrc)
 *   LATCHED   --from src-------------------------> accept, refresh
 *   LATCHED   --from elsewhere---------------------> drop ("source")
 *   LATCHED   --src silent >= relatch_ms, a valid packet with the same
 *               SSRC from an allowed IP------------> LATCHED(new src)
 *   LATCHED   --within relatch_ms of latching, once: the same SSRC from
 *               exactly the SDP's address and port-> LATCHED(that address)
 *
 * Strict mode (the default): the allowed IPs are the party's SIP signaling
 * source (received-from) and the IP its SDP names; only the port is learnt.
 * A third host that races the phone with a forged first packet ("RTP Bleed")
 * neither latches nor receives anything. Loose mode, for carriers whose media
 * comes from other hosts than their signaling: any source may latch first,
 * and after relatch_ms of silence any source sending valid packets takes over
 * (the SSRC need not match). Re-latching is rate-limited by construction: the
 * new source must wait relatch_ms of silence of the old one.
 *
 * The one exception is the start of a stream whose SDP address is public: a
 * NAT with a SIP ALG (nf_nat_sip) holds a mapping for the port it announced
 * and opens it to the relay. When the party's first packet and the relay's
 * first packet toward that port cross in the NAT, the party's packet can lose
 * the NAT's race and leave through a mapping of its own, and every later one
 * through the announced port. So, once and only in the first relatch_ms after
 * latching, a packet of the latched SSRC from exactly the address and port the
 * SDP announced (where the relay was sending already) takes the latch at once.
 * The old source cannot take it back before relatch_ms of silence.
 */
enum relay_latch_mode {
	RELAY_LATCH_STRICT = 0,
	RELAY_LATCH_LOOSE,
};

struct relay_latch_conf {
	enum relay_latch_mode mode;
	uint32_t relatch_ms;
};

#define RELAY_LATCH_ALLOW 2

/* Worker-local once the socket is live (changed under the session lock). */
struct relay_latch {
	struct net_addr guess;			  /* SDP address and port; AF_UNSPEC: none */
	bool guess_ok;				  /* may be sent to before latching */
	struct net_addr allow[RELAY_LATCH_ALLOW]; /* IPs that may latch; AF_UNSPEC unused */
	struct net_addr peer;			  /* latched source */
	bool latched;
	struct net_addr checked; /* source of the party's last authenticated ICE check */
	bool checked_ok;
	uint32_t ssrc; /* of the latched source's last packet */
	uint64_t last_ms;
	uint64_t latched_ms; /* when it latched from unlatched */
	bool to_guess;	     /* the one early move to the SDP's address was made */
	uint64_t relatches;
};

enum relay_latch_verdict {
	RELAY_LATCH_PASS = 0, /* from the latched source */
	RELAY_LATCH_NEW,      /* latched now */
	RELAY_LATCH_MOVED,    /* re-latched onto a new source */
	RELAY_LATCH_DROP,     /* not from an acceptable source: drop and count */
};

/* Zeroes l and sets the guess (may be NULL) and allowed IPs (each may be NULL). */
void relay_latch_init(struct relay_latch *l, const struct net_addr *guess,
		      const struct net_addr *allow0, const struct net_addr *allow1);
/* A re-offer or answer changed the description: new guess and allowed IPs;
 * the latched source stays if it is still allowed, else the latch is reset. */
void relay_latch_update(struct relay_latch *l, const struct relay_latch_conf *c,
			const struct net_addr *guess, const struct net_addr *allow0,
			const struct net_addr *allow1);
/* Decides on one packet that parsed as RTP or RTCP (ssrc from its header). */
enum relay_latch_verdict relay_latch_packet(struct relay_latch *l, const struct relay_latch_conf *c,
					    const struct net_addr *src, uint32_t ssrc,
					    uint64_t now_ms);
/* An authenticated ICE check (docs/ice.md) came from src: it becomes where
 * to send to this party until RTP latches, if src may latch. False if not. */
bool relay_latch_check(struct relay_latch *l, const struct relay_latch_conf *c,
		       const struct net_addr *src);
/* Where to send to this party: the latched source, else the source of its
 * last authenticated ICE check, else the guess when it is usable. False:
 * nowhere yet (the packet is dropped, "no-peer"). */
bool relay_latch_dest(const struct relay_latch *l, const struct net_addr **out);

/* What the latched source says about the SDP that announced it (docs/nat-evidence.md):
 * where the party's media really comes from against its c= and m= port. */
enum relay_evidence {
	RELAY_EV_UNKNOWN = 0,	   /* not known here (a relay driven over ng) */
	RELAY_EV_NO_MEDIA,	   /* "no-media": nothing latched */
	RELAY_EV_AS_ANNOUNCED,	   /* "media-as-announced": the SDP's address and port */
	RELAY_EV_OTHER_PORT,	   /* "media-other-port": its IP, another port (a NAT
				      that maps each flow anew, under an ALG or STUN) */
	RELAY_EV_OTHER_IP,	   /* "media-other-ip": another IP (NAT, private c=) */
	RELAY_EV_N
};
/* The evidence of one receiving socket's latch. */
enum relay_evidence relay_latch_evidence(const struct relay_latch *l);
const char *relay_evidence_name(enum relay_evidence e); /* "media-other-port", ... */

/* ---- the role ---- */

struct relay;

/* Why a received datagram was not forwarded. */
enum relay_drop {
	RELAY_DROP_MALFORMED = 0, /* not RTP/RTCP (garbage, truncated) */
	RELAY_DROP_STUN,	  /* STUN/DTLS/other demuxed kinds: not relayed yet */
	RELAY_DROP_SOURCE,	  /* from a source that may not latch / is not latched */
	RELAY_DROP_NO_PEER,	  /* the other party's address is not known yet */
	RELAY_DROP_SEND,	  /* sendmmsg failed */
	RELAY_DROP_COUNT,
};

const char *relay_drop_name(enum relay_drop d); /* "malformed", ... */

/* Reads [relay] (address, advertise, ports, timeout, latch, relatch, ng),
 * checks the interfaces can bind, opens the ng socket when configured and
 * starts one sweep timer per worker of n (via loop_post; before or after
 * net_start). Errors are logged and returned (EINVAL bad config,
 * EADDRINUSE...). The relay is owned by the caller: relay_free after
 * net_stop (it closes every session's sockets). */
int relay_start(struct relay **rp, struct net *n, const struct conf *c);
void relay_free(struct relay *r);

/* The engine behind relayctl_local and the ng server; see relayctl.h for the
 * request, the semantics and the errors. Thread-safe. */
int relay_offer(struct relay *r, const struct relayctl_req *req, struct buf *out);
int relay_answer(struct relay *r, const struct relayctl_req *req, struct buf *out);
int relay_delete(struct relay *r, struct slice call_id, struct slice from_tag, struct slice to_tag);
int relay_query(struct relay *r, struct slice call_id, struct slice from_tag,
		struct relayctl_query *out);
typedef void(relay_list_h)(struct slice call_id, void *arg);
int relay_list(struct relay *r, size_t max, relay_list_h *h, void *arg);
/* "out of relay ports", ... for an error of the calls above. */
const char *relay_strerror(int err);

struct relay_stats {
	int64_t sessions;	/* live */
	int64_t ports_free;	/* RTP/RTCP pairs free over all interfaces */
	int64_t packets, bytes; /* forwarded */
	int64_t fast_packets;	/* of which by the in-kernel fast path (counted once pulled) */
	bool fast;		/* the fast path is loaded */
	int64_t dropped[RELAY_DROP_COUNT];
};
void relay_stats_get(struct relay *r, struct relay_stats *out);

/* Live calls for pinhole ctl calls: per party and stream, the signalling
 * source, the SDP's address, the latched media source and the evidence
 * word (relay_evidence_name), as JSON or a text table; at most max calls
 * (a bounded walk under the table lock). 0 or ENOMEM. */
int relay_dump(struct relay *r, bool json, size_t max, struct buf *out);

/* Port pairs held now by the calls charged to the AOR aor (limits, tests). */
uint32_t relay_charge_pairs_of(struct relay *r, const char *aor);

/* The bound ng address (port resolved when configured 0), or NULL when the
 * ng server is off. For tests and logs. */
const struct net_addr *relay_ng_addr(const struct relay *r);

#endif
