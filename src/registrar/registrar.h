/* registrar: RFC 3261 10.3 bindings that remember the flow they came on, and server keepalives for NATed phones.
 *
 * Owns nothing but its configuration and the keepalive bookkeeping; bindings are
 * in the store, which the serve command owns. REGISTER is answered 200 only once
 * its change is committed (the store's done callback), on the worker that owns
 * the transaction.
 */
#ifndef PINHOLE_REGISTRAR_H
#define PINHOLE_REGISTRAR_H

#include "edge/edge.h"
#include "store/store.h"

struct registrar;
struct auth;

extern const struct conf_key registrar_conf_keys[]; /* [registrar], [keepalive], [store] */

/* creds (borrowed, may be NULL) holds the users: with at least one, every
 * REGISTER must carry digest credentials (401) of the user it registers. The
 * registrar owns the struct auth built from creds and [auth]. */
int registrar_alloc(struct registrar **rp, struct edge *e, struct store *s,
		    struct store_cred *creds, const struct conf *c);
void registrar_free(struct registrar *r);
/* Before net_start: watches the flows of the bindings loaded from the store
 * (before any REGISTER can change them) and posts the keepalive and expiry
 * timers to worker 0, where they start with it. */
int registrar_start(struct registrar *r);

/* The digest authenticator the registrar owns; the proxy checks with it too. */
struct auth *registrar_auth(struct registrar *r);

/* Handles a REGISTER (rx->st set). */
void registrar_handle(struct registrar *r, const struct edge_rx *rx);

/* Canonical AOR of a SIP URI (user@host), into out[STORE_AOR_MAX]. */
int registrar_aor_of(const struct sip_uri *uri, char *out);
/* Live bindings of an AOR, best first. */
int registrar_lookup(struct registrar *r, const char *aor, struct store_binding *out, size_t max,
		     size_t *n);

/* The flow of binding id of aor failed (the proxy saw a 430, a closed
 * connection, a send error or silence over it): marks it ka.unreachable
 * (memory only), so that the proxy tries it after the instance's other
 * flows; a REGISTER over a working flow clears the mark. 0 or ENOENT. */
int registrar_binding_failed(struct registrar *r, const char *aor, uint64_t id);

/* ---- policy (policy.c) ---- */

/* Whether a URI's host is a domain this server is responsible for: one of
 * [sip] domains, or by default this server's addresses and host name and
 * [sip] advertise (an address with a port only when we listen on that
 * port). The one answer to "is this host ours" for the registrar (RFC 3261
 * 10.3 step 1) and the proxy (a local user or not). */
bool registrar_domain_is_local(const struct registrar *r, const struct sip_uri *uri);
/* Whether the credentials store holds any user. */
bool registrar_has_users(const struct registrar *r);
/* The embedded run's safe default: with no users, loopback, private (RFC
 * 1918, ULA, link-local) and shared (100.64.0.0/10) sources are trusted
 * to register and to reach beyond the local domain; nobody else is. */
bool registrar_lan_default(const struct registrar *r, const struct net_addr *src);
/* Whether src is one of [proxy] trusted: a peer whose Path the registrar
 * stores (RFC 3327; anyone else's REGISTER with a Path gets 403). */
bool registrar_source_trusted(const struct registrar *r, const struct net_addr *src);
/* The source a request's digest nonce is bound to and its failures count
 * against: the packet's; from a [proxy] trusted hop (an edge of ours) the
 * address that hop wrote into the Via below its own, which we believe of a
 * trusted hop. So one guesser behind an edge holds only its own address,
 * not the edge and every phone behind it. */
void registrar_auth_source(const struct registrar *r, const struct flow *f, const struct sip_msg *m,
			   struct net_addr *out);
/* Logs which registration rule is in force (at start). */
void registrar_log_rule(const struct registrar *r);

/* A response that matched no transaction: consumed (true) when it answers one
 * of our keepalive OPTIONS. */
bool registrar_keepalive_response(struct registrar *r, const struct edge_rx *rx);
/* OPTIONS pings awaiting an answer (each is freed when answered or when the
 * next sweep finds it unanswered). For tests and metrics. */
size_t registrar_keepalive_pending(struct registrar *r);

/* Every live binding as {"registrations":[...]} JSON. */
int registrar_dump_json(struct registrar *r, struct buf *out);
/* The same as an aligned text table with a header line. */
int registrar_dump_text(struct registrar *r, struct buf *out);

/* Whether a REGISTER's sender is behind NAT (RFC 3261 Via/Contact against the
 * real source, private and shared address ranges). Exposed for tests. */
bool registrar_behind_nat(const struct flow *f, const struct sip_via *via,
			  const struct sip_uri *contact);

/* ---- NAT verdict per binding (nat.c, docs/nat-evidence.md) ---- */

/* The verdict words, in ctl and in registrar_nat_verdicts_total{verdict}. */
enum registrar_nat_verdict {
	REG_NAT_UNKNOWN = 0, /* "unknown": no address to compare, source not direct */
	REG_NAT_NONE,	     /* "no-nat": Via/Contact are the source, which is direct
				([relay] direct_networks, [proxy] trusted) or private */
	REG_NAT,	     /* "nat": Via/Contact private (or another public address) */
	REG_NAT_ALG,	     /* "nat-alg-suspected": Via/Contact are exactly the packet's
				public source, with no STUN from it: an ALG rewrote them */
	REG_NAT_STUN,	     /* "stun-announced": the same, after a STUN Binding from
				that very source on our SIP port */
	REG_NAT_N
};

/* Evidence bits (ctl prints their names, comma-separated). */
#define REG_EV_VIA_IS_SOURCE (1u << 0)	   /* "via=source" */
#define REG_EV_CONTACT_IS_SOURCE (1u << 1) /* "contact=source" */
#define REG_EV_VIA_PRIVATE (1u << 2)	   /* "via-private" (source public) */
#define REG_EV_CONTACT_PRIVATE (1u << 3)   /* "contact-private" */
#define REG_EV_VIA_OTHER (1u << 4)	   /* "via-other": public, not the source */
#define REG_EV_CONTACT_OTHER (1u << 5)	   /* "contact-other" */
#define REG_EV_STUN_SEEN (1u << 6)	   /* "stun-from-source" */
#define REG_EV_DIRECT (1u << 7)		   /* "direct-network" */
#define REG_EV_PRIVATE_SOURCE (1u << 8)	   /* "private-source" */
#define REG_EV_CHANGED (1u << 9)	   /* "addresses-changed": unlike the same
					      phone's previous REGISTER (sticky) */

/* Media evidence of the last relayed call, as the relay's words
 * (relay_evidence in relay.h, same order). */
enum registrar_media_evidence {
	REG_MEDIA_UNKNOWN = 0, /* "-" */
	REG_MEDIA_NONE,	       /* "no-media" */
	REG_MEDIA_AS_ANNOUNCED,
	REG_MEDIA_OTHER_PORT,
	REG_MEDIA_OTHER_IP,
};

/* What the verdict is made of; pure inputs, for tests. */
struct registrar_nat_in {
	struct net_addr src;	       /* the packet's source */
	enum net_transport tp;	       /* ports compare over UDP only */
	const struct sip_via *via;     /* top Via, or NULL */
	const struct sip_uri *contact; /* the Contact's URI, or NULL */
	bool direct;		       /* src in [relay] direct_networks or [proxy] trusted */
	bool stun_seen;		       /* a STUN Binding from src on our SIP port lately */
};
void registrar_nat_judge(const struct registrar_nat_in *in, uint8_t *verdict,
			 uint16_t *evidence);
/* A hash of the addresses Via and Contact claim (never 0). */
uint32_t registrar_nat_claim(const struct sip_via *via, const struct sip_uri *contact);
const char *registrar_nat_verdict_name(unsigned v);
const char *registrar_media_evidence_name(unsigned m);
/* The name of evidence bit number bit (0..), NULL past the last. */
const char *registrar_nat_evidence_name(unsigned bit);
/* The evidence's names, comma-separated ("-" for none): 0 or ENOSPC. */
int registrar_nat_evidence_fmt(uint16_t ev, char *out, size_t cap);
/* A relayed call of aor ended: its party at src (signalling source) had
 * media evidence m; noted on aor's bindings from exactly src. */
void registrar_note_media(struct registrar *r, const char *aor, const struct net_addr *src,
			  unsigned m);

#endif
