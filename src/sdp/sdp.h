/* sdp: zero-copy SDP parser (RFC 8866) and a splicing rewriter for media relaying.
 *
 * A parsed description is the caller's body bytes plus slices into them: struct
 * sdp owns nothing and must not outlive the bytes it was parsed from. It is a
 * fixed-size value (no allocation): at most SDP_MAX_MEDIA m= sections, and for
 * each the first SDP_MAX_CANDIDATES a=candidate lines (all are counted).
 *
 * The rewriter builds a new description into a struct buf by copying untouched
 * lines verbatim and splicing in only what the relay changes: m= ports, c=
 * addresses, a=rtcp / a=rtcp-mux, ICE attributes (stripped, or kept with the
 * relay added as a candidate), the o= address and version, and the
 * a=nortpproxy marker. No I/O, no logging.
 *
 * Errors: EBADMSG malformed (a line not of the form "x=value", a bad number, a
 * missing v= or o=), ENOTSUP valid but unsupported (a non-IN network type, an
 * address type other than IP4/IP6, more than SDP_MAX_MEDIA m= lines, several
 * c= lines in one section), EINVAL for bad arguments from the caller.
 */
#ifndef PINHOLE_SDP_H
#define PINHOLE_SDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define SDP_MAX_MEDIA 16
#define SDP_MAX_CANDIDATES 16

enum sdp_af {
	SDP_AF_NONE = 0,
	SDP_AF_IP4,
	SDP_AF_IP6,
};

/* RFC 8866 6.7: media direction; SDP_DIR_NONE means "no attribute given". */
enum sdp_dir {
	SDP_DIR_NONE = 0,
	SDP_DIR_SENDRECV,
	SDP_DIR_SENDONLY,
	SDP_DIR_RECVONLY,
	SDP_DIR_INACTIVE,
};

/* "sendrecv", "sendonly"...; "" for SDP_DIR_NONE. */
const char *sdp_dir_name(enum sdp_dir d);

/* A c= line, or the address part of o= or a=rtcp. */
struct sdp_conn {
	bool present;
	enum sdp_af af;
	struct slice addr;   /* without the /ttl and /count suffixes */
	struct slice suffix; /* "/127/2" or empty (RFC 8866 5.7, multicast only) */
	bool literal;	     /* addr is an IP literal of its family, not a name */
};

struct sdp_origin {
	struct slice username;
	struct slice sess_id;
	struct slice sess_version; /* the digits as written */
	uint64_t version;
	struct sdp_conn conn;
};

/* Where a media section's effective connection came from. */
enum sdp_conn_level {
	SDP_CONN_NONE = 0, /* neither the section nor the session has c= */
	SDP_CONN_SESSION,
	SDP_CONN_MEDIA,
};

/* ICE attributes (RFC 8839) of the session or of one media section. */
struct sdp_ice {
	struct slice ufrag;			     /* a=ice-ufrag */
	struct slice pwd;			     /* a=ice-pwd */
	struct slice options;			     /* a=ice-options */
	struct slice remote_cands;		     /* a=remote-candidates */
	bool lite;				     /* a=ice-lite (session level only) */
	bool end_of_candidates;			     /* a=end-of-candidates */
	size_t n_candidates;			     /* all a=candidate lines, stored or not */
	struct slice candidates[SDP_MAX_CANDIDATES]; /* values after "candidate:" */
};

struct sdp_media {
	struct slice section; /* from "m=" to the end of the section, line ends included */
	struct slice type;    /* "audio", "video", "application"... */
	uint16_t port;	      /* 0: stream rejected or disabled (RFC 3264 6) */
	uint32_t port_count;  /* the "/2" of m=; 1 when absent */
	struct slice proto;   /* "RTP/AVP", "UDP/TLS/RTP/SAVPF"... */
	struct slice fmts;    /* everything after proto, may be empty */

	/* Effective connection: the section's c= if it has one, else the
	 * session's (RFC 8866 5.7); conn_level says which. */
	struct sdp_conn conn;
	enum sdp_conn_level conn_level;

	/* RFC 3605: a=rtcp. rtcp_conn.present only when the address is given. */
	bool has_rtcp;
	uint16_t rtcp_port;
	struct sdp_conn rtcp_conn;
	bool rtcp_mux; /* RFC 5761 5.1.1 */

	enum sdp_dir dir_attr; /* the section's own direction attribute */
	enum sdp_dir dir;      /* effective: own, else session's, else sendrecv */
	/* On hold, as phones signal it: the old c=0.0.0.0 form (RFC 2543, still
	 * sent) or a=sendonly / a=inactive (RFC 3264 8.4). */
	bool hold;

	struct slice mid; /* a=mid (RFC 5888), empty if absent */
	bool nortpproxy;  /* a=nortpproxy in this section */
	bool fingerprint; /* a=fingerprint (RFC 8122): DTLS-SRTP, as WebRTC has it */
	struct sdp_ice ice;
};

struct sdp {
	struct slice raw;     /* the whole body */
	struct slice session; /* session section: from "v=" up to the first "m=" */
	bool crlf;	      /* the first line ends in CRLF; inserted lines copy it */
	struct sdp_origin origin;
	struct slice name;    /* s= */
	struct slice timing;  /* first t= */
	struct sdp_conn conn; /* session-level c= */
	enum sdp_dir dir;     /* session-level direction attribute */
	bool nortpproxy;      /* a=nortpproxy at session level */
	struct slice nortpproxy_val;
	bool fingerprint; /* a=fingerprint at session level */
	struct sdp_ice ice; /* session-level ICE attributes */
	size_t n_media;
	struct sdp_media media[SDP_MAX_MEDIA];
};

/* Parses body into *s (slices into body). Accepts CRLF or bare LF line ends
 * and a last line without one; trailing empty lines are ignored. Returns 0,
 * EBADMSG or ENOTSUP; on error *s is unspecified. */
int sdp_parse(struct sdp *s, struct slice body);

/* True if any a=nortpproxy appears (session or media): another proxy already
 * relays this media and we must not relay it twice. */
bool sdp_has_nortpproxy(const struct sdp *s);

/* True if a=fingerprint appears (session or media). */
bool sdp_has_fingerprint(const struct sdp *s);

/* True if any media section (or the session) carries ICE attributes. */
bool sdp_has_ice(const struct sdp *s);

/* ---- ICE (RFC 8445, RFC 8839) ---- */

/* One a=candidate value (RFC 8839 5.1); slices into it. */
struct sdp_candidate {
	struct slice foundation; /* 1..32 ice-chars */
	unsigned component;	 /* 1..256 */
	struct slice transport;	 /* "UDP", or an extension token */
	uint32_t priority;	 /* 1..2^31-1 */
	struct slice addr;	 /* connection-address: an IP literal or a name */
	uint16_t port;
	struct slice type; /* after "typ": host, srflx, prflx, relay, or another token */
};

/* Parses the value of an a=candidate line (after "candidate:"); the fields
 * after the type (raddr, rport, extensions) are not read. 0 or EBADMSG. */
int sdp_candidate_parse(struct slice v, struct sdp_candidate *c);
/* The ICE credentials in force for media section i: its own a=ice-ufrag and
 * a=ice-pwd, else the session's (RFC 8839 5.4). True when both are there. */
bool sdp_media_ice_creds(const struct sdp *s, size_t i, struct slice *ufrag, struct slice *pwd);
/* Whether section i lists a well-formed candidate of component comp (among
 * its first SDP_MAX_CANDIDATES). */
bool sdp_media_ice_component(const struct sdp *s, size_t i, unsigned comp);

/* ---- rewriting ---- */

/* What the relay puts in one media section. */
struct sdp_media_rw {
	bool keep;	    /* leave this section's port, c= and rtcp lines as they are */
	enum sdp_af af;	    /* family of addr */
	struct slice addr;  /* relay address the peer must send to */
	uint16_t port;	    /* relay RTP port; an m= port count is dropped */
	uint16_t rtcp_port; /* relay RTCP port; 0 writes no a=rtcp line */
	bool rtcp_mux;	    /* advertise a=rtcp-mux (and keep the peer's) */
	/* RFC 8445 / RFC 8839: keep this section's ICE attributes (and the
	 * session's) even under strip_ice, and add addr as a candidate of type
	 * relay: component 1 at port, component 2 at ice_rtcp_port unless 0.
	 * Its priority is below every well-formed candidate of the section for
	 * the same component, so that the party's own paths are tried first. */
	bool ice_candidate;
	uint16_t ice_rtcp_port;
	/* Or the relay answers checks itself for a party without ICE, as an
	 * ICE-lite agent (RFC 8445 2.5): when lite_ufrag is set (and
	 * ice_candidate is not), the section gets a=ice-ufrag and a=ice-pwd with
	 * these, addr as a host candidate (component 1 at port, component 2 at
	 * ice_rtcp_port unless 0), and the session gets a=ice-lite. */
	struct slice lite_ufrag, lite_pwd;
};

/* The foundation of the candidates the rewriter adds (another is chosen if
 * the party already uses it). */
#define SDP_RELAY_FOUNDATION "pinholerelay"


/* RFC 3264 8: o= version state for one direction of one call leg, kept by the
 * caller between offers. Zero-initialise before the first rewrite. */
struct sdp_vstate {
	bool valid;
	uint64_t out_version; /* the version we last sent */
	uint64_t digest;      /* of what we last sent, version digits excluded */
};

struct sdp_rw {
	const struct sdp_media_rw *media; /* one per m= line in order; may be shorter */
	size_t n_media;			  /* <= s->n_media; sections beyond are kept */

	bool replace_origin; /* o= address := origin_addr */
	enum sdp_af origin_af;
	struct slice origin_addr;

	/* Session c= := session_addr (if empty, the first non-kept media's
	 * address). With no session c= in the input nothing is added. */
	bool replace_session_conn;
	enum sdp_af session_af;
	struct slice session_addr;

	bool strip_ice;	     /* drop candidate, ice-*, end-of-candidates, remote-candidates
			      * (not in sections with ice_candidate, nor at session
			      * level when a section has it) */
	bool add_nortpproxy; /* append a=nortpproxy:yes at session level unless present */

	/* NULL: the o= version is copied. Otherwise it is kept while what we send
	 * is unchanged, and raised (never lowered) when it changed. */
	struct sdp_vstate *vstate;
};

/* Writes the rewritten description of s (parsed earlier) to the end of out.
 * Untouched lines are copied verbatim with their own line ends; inserted lines
 * use the input's line end style; the output always ends with a line end.
 * A section whose input port is 0 keeps port 0 and its lines (a rejected
 * stream stays rejected, RFC 3264 6). Returns 0, EINVAL (bad rw) or ENOMEM.
 * On error out may hold a partial result. */
int sdp_rewrite(const struct sdp *s, const struct sdp_rw *rw, struct buf *out);

#endif
