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
/* Starts the keepalive and expiry timers on worker 0 (after net_start). */
int registrar_start(struct registrar *r);

/* The digest authenticator the registrar owns; the proxy checks with it too. */
struct auth *registrar_auth(struct registrar *r);
/* Whether a SIP URI's host is one of our domains (any port of ours). Stands in
 * for the [sip] domains policy, which replaces it. */
bool registrar_domain_is_local(struct registrar *r, const struct sip_uri *uri);

/* Handles a REGISTER (rx->st set). */
void registrar_handle(struct registrar *r, const struct edge_rx *rx);

/* Canonical AOR of a SIP URI (user@host), into out[STORE_AOR_MAX]. */
int registrar_aor_of(const struct sip_uri *uri, char *out);
/* Live bindings of an AOR, best first. */
int registrar_lookup(struct registrar *r, const char *aor, struct store_binding *out, size_t max,
		     size_t *n);

/* A response that matched no transaction: consumed (true) when it answers one
 * of our keepalive OPTIONS. */
bool registrar_keepalive_response(struct registrar *r, const struct edge_rx *rx);

/* Every live binding as {"registrations":[...]} JSON. */
int registrar_dump_json(struct registrar *r, struct buf *out);
/* The same as an aligned text table with a header line. */
int registrar_dump_text(struct registrar *r, struct buf *out);

/* Whether a REGISTER's sender is behind NAT (RFC 3261 Via/Contact against the
 * real source, private and shared address ranges). Exposed for tests. */
bool registrar_behind_nat(const struct flow *f, const struct sip_via *via,
			  const struct sip_uri *contact);

#endif
