/* relayctl: the proxy's one door to a media relay, in this process (direct) or remote (ng).
 *
 * The proxy engages a relay per call through a struct relayctl handle, and
 * never sees which kind of relay is behind it:
 *
 *   relayctl_local()     direct calls into a struct relay of this process;
 *                        synchronous and fast (a table lookup, a few bind()s,
 *                        an SDP splice; no waiting on other threads)
 *   relayctl_ng_alloc()  the rtpengine "ng" protocol over UDP towards any ng
 *                        relay (a remote pinhole, rtpengine); SYNCHRONOUS: a
 *                        call blocks the calling thread until the answer or
 *                        the timeout (default 1000 ms, retransmitted every
 *                        250 ms). Fine while remote relays are near and up;
 *                        an async variant can be added beside it later.
 *
 * Every operation may be called from any thread, concurrently (SIP workers).
 *
 * Legs. A call's relay session is named by Call-ID. Each party is a leg,
 * named by its tag: the offer's from_tag names the offering party, the
 * answer's to_tag the answering one. A re-offer from the callee (a re-INVITE
 * in the other direction) passes the callee's tag as from_tag: the session
 * finds the leg by tag, so either party may offer.
 *
 *   party A --RTP--> [leg A sockets]  relay  [leg B sockets] --RTP--> party B
 *            <--RTP--                                        <--RTP--
 *   A's offer, rewritten, names leg B's sockets (where B must send); B's
 *   answer, rewritten, names leg A's sockets. Each party sees one relay
 *   address and port per stream and uses it both ways (RFC 4961 symmetric
 *   RTP); a packet in at leg A goes out of leg B's socket, and back.
 *
 * Errors (return values), and what the proxy should answer:
 *   EBADMSG  the SDP is malformed                      -> 488 (or 400)
 *   ENOTSUP  the SDP or an option is valid but unsupported -> 488
 *   ENOSPC   the relay is out of ports                 -> 503
 *   EDQUOT   the call's source or AOR holds its share of ports -> 503
 *   E2BIG    more m= lines than the relay takes per call -> 488
 *   ENOENT   no such session or leg (answer, delete, query)
 *   EINVAL   bad arguments (empty call_id or from_tag, sdp missing)
 *   ETIMEDOUT, ECONNREFUSED  (ng) the relay did not answer -> 503 or relay-less
 *   EPROTO   (ng) the relay answered with an error result, or garbage
 *   ENOMEM
 * relayctl_strerror() gives a short text for logs and reason phrases.
 */
#ifndef PINHOLE_RELAYCTL_H
#define PINHOLE_RELAYCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"

struct relay;
struct relayctl;

/* Per-media streams a query reports; extra m= lines are relayed but not reported. */
#define RELAYCTL_MAX_MEDIA 16
#define RELAYCTL_TAG_MAX 128 /* longest tag kept in a query answer */

/* ICE attributes of the SDP going out (RFC 8839). */
enum relayctl_ice {
	RELAYCTL_ICE_DEFAULT = 0, /* = remove: a relayed stream drops ICE */
	RELAYCTL_ICE_REMOVE,
	RELAYCTL_ICE_FORCE, /* not supported by the local relay: ENOTSUP */
	/* keep the parties' ICE and add the relay as their last candidate; the
	 * relay passes their checks on (docs/ice.md). The local relay only: the
	 * ng client sends "remove" for it. */
	RELAYCTL_ICE_CANDIDATE,
};

/* RFC 5761 rtcp-mux handling; bits, ng "rtcp-mux" list items. */
enum relayctl_mux {
	RELAYCTL_MUX_OFFER = 1 << 0,  /* offer a=rtcp-mux to the answerer even if the
				       * offerer did not: the relay demuxes for it */
	RELAYCTL_MUX_ACCEPT = 1 << 1, /* answer: accept the offerer's rtcp-mux even if
				       * the answerer does not mux */
	RELAYCTL_MUX_DEMUX = 1 << 2,  /* offer: strip a=rtcp-mux towards the answerer
				       * and demux for the offerer */
	RELAYCTL_MUX_REJECT = 1 << 3, /* never mux on either side */
};

/*
 * Options of one offer or answer, as the ng flags name them. Zero-initialise
 * and set what applies: the zero value is plain NAT traversal with the
 * relay's defaults.
 */
struct relayctl_opts {
	/* Where the party's SIP message really came from (its NAT's public
	 * address): the ng "received-from". Only the IP matters. AF_UNSPEC
	 * (all zero) = unknown. Latching accepts media only from this IP or the
	 * IP its SDP names (RFC 7362 section 3 risks, "RTP Bleed"). */
	struct net_addr received_from;
	/* ng "SIP-source-address": expect media at received_from's IP (with the
	 * SDP's ports) instead of the SDP's address, e.g. a private c=. */
	bool sip_source_address;
	/* ng "trust-address": the SDP address is right; received_from is not
	 * used for the guess (it still widens what may latch when given). */
	bool trust_address;
	/* ng "media-address": use this IP instead of the SDP's c=. Empty = no. */
	struct slice media_address;

	bool replace_origin;	   /* o= address := the relay's */
	bool replace_session_conn; /* session-level c= := the relay's */
	enum relayctl_ice ice;
	unsigned rtcp_mux; /* enum relayctl_mux bits */
	/* Address family of the SDP going out (ng "address family" IP4/IP6):
	 * AF_UNSPEC = same as the incoming SDP, AF_INET or AF_INET6. */
	int family;
	/* ng "direction": names of the relay interfaces facing the offerer
	 * (direction[0]) and the answerer (direction[1]); empty = chosen by
	 * family. Only meaningful on an offer. */
	struct slice direction[2];
	struct slice via_branch; /* accepted for ng matching; the session is per call */
	/* Whom a new session's port pairs are charged to besides its source
	 * (received_from): the caller's AOR; empty = nobody. The in-process
	 * relay only: the ng client does not send it. */
	struct slice owner;
};

/* One offer or answer. Every slice is read during the call only. */
struct relayctl_req {
	struct slice call_id;  /* required */
	struct slice from_tag; /* required: the offering party's tag */
	struct slice to_tag;   /* answer: required, the answering party's tag;
				* offer: optional (a re-offer in an early or
				* confirmed dialog names the other leg) */
	struct slice sdp;      /* required */
	struct relayctl_opts opts;
};

/* The per-stream counters a query reports (one RTP or RTCP socket of a leg). */
struct relayctl_stream {
	struct net_addr local; /* the relay's advertised address and port */
	struct net_addr peer;  /* where it sends: the latched source, else the SDP guess */
	bool latched;
	struct net_addr announced; /* the SDP's address and port; AF_UNSPEC: none */
	uint8_t evidence; /* enum relay_evidence (relay.h): the latch against the SDP;
			     0, unknown, over ng */
	uint64_t packets, bytes; /* received and accepted */
	uint64_t gaps;		 /* RTP sequence numbers missing (RFC 3550 A.3 style) */
	uint64_t dropped;	 /* received and not forwarded, any reason */
	uint64_t idle_ms;	 /* since the last accepted packet, or since creation */
};

struct relayctl_leg {
	char tag[RELAYCTL_TAG_MAX]; /* NUL-terminated, truncated */
	struct net_addr sig;	    /* its received-from; AF_UNSPEC when unknown (ng) */
	size_t n_media;		    /* <= RELAYCTL_MAX_MEDIA */
	struct {
		struct relayctl_stream rtp, rtcp;
		bool rtcp_mux; /* this party gets RTCP on its RTP port */
	} media[RELAYCTL_MAX_MEDIA];
};

struct relayctl_query {
	uint64_t age_ms;
	struct relayctl_leg leg[2]; /* [0] the first offerer, [1] the other party */
};

/* Offers: writes the SDP to send to the answering party, rewritten to point at
 * the relay, to the end of out. Creates the session on the first offer;
 * a re-offer reuses its ports. Returns 0 or an error above (out may then
 * hold a partial result: the caller resets it). */
int relayctl_offer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out);
/* Answers: writes the SDP to send back to the offerer to out. */
int relayctl_answer(struct relayctl *rc, const struct relayctl_req *req, struct buf *out);
/* Deletes the whole session (to_tag empty), or the session if from_tag /
 * to_tag name its legs. Its ports go back to the pool. ENOENT if unknown. */
int relayctl_delete(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		    struct slice to_tag);
/* Counters of a session; from_tag may be empty. ENOENT if unknown. */
int relayctl_query(struct relayctl *rc, struct slice call_id, struct slice from_tag,
		   struct relayctl_query *out);

typedef void(relayctl_list_h)(struct slice call_id, void *arg);
/* Calls h once per session (at most max, 0 = no limit), in no order. */
int relayctl_list(struct relayctl *rc, size_t max, relayctl_list_h *h, void *arg);
/* 0 if the relay is there and answering. */
int relayctl_ping(struct relayctl *rc);

/* "out of relay ports", ... for an errno value above. */
const char *relayctl_strerror(int err);

/* ---- implementations ---- */

/* The direct one: a handle on a relay of this process. The relay must outlive
 * it. Free with relayctl_free before relay_free. */
int relayctl_local(struct relayctl **rcp, struct relay *r);

/* The ng client towards a relay at uri: "udp:1.2.3.4:2223", "1.2.3.4:2223",
 * "udp:[::1]:2223". timeout_ms 0 = 1000 (whole call, retransmissions at a
 * quarter of it). Each call uses its own socket, so threads do not wait on
 * one another. EINVAL for a bad uri. */
int relayctl_ng_alloc(struct relayctl **rcp, const char *uri, unsigned timeout_ms);

void relayctl_free(struct relayctl *rc);

#endif
