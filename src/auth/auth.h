/* auth: SIP digest (RFC 3261 22, RFC 7616, RFC 8760): nonces, challenges, checks, backoff.
 *
 * Who may ask: anyone can send a request with credentials. What it costs us:
 * one HMAC to check the nonce, one table lookup, and two or three hashes;
 * a request in a limiter's backoff costs only the limiter lookup. What our
 * answer costs a third party: one challenge (about 600 bytes) per request,
 * sent by the caller's reply path (stateless where the role makes it so).
 * What state a stranger can create: a nonce is stateless (an HMAC over its
 * issue time, a salt, the realm and the source it was sent to, keyed by
 * [auth] nonce_key or a per-process random key); state appears only for a
 * nonce that verified (its nc, in a bounded table), for failures (per source
 * and per user name) and successes (per user and source), in a bounded table.
 * A failure is counted only for a nonce issued to the sender's own source:
 * the sender has shown that it receives there, so a forged UDP source counts
 * for nothing (see auth_check).
 *
 * Threads: struct auth is shared by every worker. The nc table and the limiter
 * are each behind one mutex (a lookup is a few loads; fine below ~100k
 * authentications a second per process). The rest is read-only after alloc.
 *
 * Ownership: struct auth is owned by whoever allocates it (the serve command,
 * or the registrar when it is given none); it borrows the credential store.
 */
#ifndef PINHOLE_AUTH_H
#define PINHOLE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"
#include "sip/sip.h"
#include "store/store.h"

extern const struct conf_key auth_conf_keys[]; /* [auth] */

/* ---- digest arithmetic (RFC 7616 3.4.1, 3.4.2) ---- */

/* Algorithms are the store's (one HA1 column each). */
const char *auth_alg_name(enum store_cred_alg a); /* "MD5", "SHA-256", "SHA-512-256" */
/* Parses an algorithm token; absent (p == NULL) means MD5 (RFC 7616 3.4).
 * 0, or ENOTSUP for the -sess variants and anything else. */
int auth_alg_parse(struct slice s, enum store_cred_alg *out);
size_t auth_alg_hexlen(enum store_cred_alg a); /* 32 or 64 */

/* out = lowercase hex of H(p), NUL-terminated (STORE_CRED_HA1_MAX). 0 or EIO. */
int auth_hash_hex(enum store_cred_alg a, const void *p, size_t l, char *out);
/* HA1 = H(user ":" realm ":" password). 0, EIO or ENAMETOOLONG. */
int auth_ha1(enum store_cred_alg a, struct slice user, struct slice realm, struct slice password,
	     char *out);
/* Fills every algorithm's HA1 (what `pinhole user` stores). 0 or an error. */
int auth_ha1_all(struct slice user, struct slice realm, struct slice password,
		 struct store_cred_entry *e);
/* The expected response for qop=auth:
 *   H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))
 * 0, EIO or ENAMETOOLONG. */
int auth_response(enum store_cred_alg a, const char *ha1, struct slice nonce, struct slice nc,
		  struct slice cnonce, struct slice qop, struct slice method, struct slice uri,
		  char *out);

/* ---- the role object ---- */

struct auth;

/* Reads [auth]. creds is borrowed and must outlive the auth. 0, ENOMEM, EINVAL
 * (a nonce_key that is not 32-128 hex digits, logged). */
int auth_alloc(struct auth **ap, struct store_cred *creds, const struct conf *c);
void auth_free(struct auth *a);

/* Whether authentication is on: some user exists. Without users nothing is
 * challenged (the rule for that case belongs to the caller). */
bool auth_active(struct auth *a);

/* The realm of a request into out (STORE_CRED_REALM_MAX): [auth] realm if set,
 * else the host of uri (To for REGISTER, From for others), lowercased. 0 or
 * ENAMETOOLONG/EINVAL. */
int auth_realm(struct auth *a, const struct sip_uri *uri, char *out);

enum auth_verdict {
	AUTH_OK = 0,	  /* user holds the authenticated name */
	AUTH_CHALLENGE,	  /* no (usable) credentials for this realm, a stale nonce, a
			     nonce not ours or issued to another source, a replay:
			     answer 401/407 with auth_challenge(); not a failure */
	AUTH_FAILED,	  /* wrong password or unknown user, over a live nonce issued to
			     this source: answer exactly like AUTH_CHALLENGE (no
			     enumeration), counted */
	AUTH_LIMITED,	  /* the source, or the user name (from a source where it has not
			     authenticated lately), is in backoff: answer 403 with
			     Retry-After = retry_after; nothing was verified */
	AUTH_BAD_REQUEST, /* credentials that do not parse, or whose uri is not the
			     Request-URI: 400 */
};

struct auth_result {
	enum auth_verdict verdict;
	bool stale;	      /* with AUTH_CHALLENGE: the nonce was ours but expired */
	uint32_t retry_after; /* with AUTH_LIMITED, seconds */
	char user[STORE_CRED_USER_MAX];
};

/* Checks the Authorization (proxy = false) or Proxy-Authorization (proxy =
 * true) headers of m for realm, from source src (the address the request
 * came from, which its nonce must have been issued to). Fills *res. */
void auth_check(struct auth *a, const struct sip_msg *m, const struct net_addr *src, bool proxy,
		const char *realm, struct auth_result *res);

/* Appends the challenge header lines (CRLF-terminated) for realm to out: one
 * WWW-Authenticate (or Proxy-Authenticate) per algorithm of [auth]
 * algorithms, in the order listed there (RFC 8760 2.4: the phone takes the first it supports),
 * qop="auth", one fresh nonce shared by the three and bound to src (the
 * address the challenge is sent to), stale=true when asked. NUL-terminated. 0 or
 * ENOSPC. */
int auth_challenge(struct auth *a, const char *realm, const struct net_addr *src, bool proxy,
		   bool stale, char *out, size_t cap);

/* The answer to a request whose auth_check gave res, for the registrar
 * (proxy = false: 401) and the proxy (407): 0 for AUTH_OK, else the status,
 * with its reason in *reason and extra header lines (a challenge, a
 * Retry-After; "" when none) in extra. */
uint16_t auth_answer(struct auth *a, const struct auth_result *res, const char *realm,
		     const struct net_addr *src, bool proxy, const char **reason, char *extra,
		     size_t cap);

/* ---- nonces (exposed for tests) ----
 *
 *  0        8        16                               32 bytes
 *  +--------+--------+--------------------------------+
 *  | issued | salt   | HMAC-SHA256(key, issued|salt|  |  -> base64url, 43 chars
 *  | (BE s) | random |   source|realm)[0..16)         |
 *  +--------+--------+--------------------------------+
 *
 * source is net_addr_src_key() of the address challenged: the IPv4 address
 * (v4-mapped too) or the IPv6 /64, never the port. Finer would break real
 * phones: a NAT may move a phone to another port between the challenge and
 * the answer (a new mapping after a TCP reconnect or an idle timeout), and an
 * IPv6 host may answer from another privacy address (RFC 8981) of its /64.
 * What it costs: a NAT pool that gives one phone two public IPv4 addresses
 * ("arbitrary" pooling, which RFC 4787 REQ-2 advises against) costs it an
 * extra challenge whenever it changes mapping between challenge and answer.
 */
#define AUTH_NONCE_LEN 43

/* Makes a nonce issued at now (wall seconds) for realm and source src into
 * out[AUTH_NONCE_LEN + 1]. */
void auth_nonce_make(struct auth *a, const char *realm, const struct net_addr *src, int64_t now,
		     char *out);
/* 0 (ours, live), ETIMEDOUT (ours, expired: stale), EPERM (not ours: forged,
 * another realm, issued to another source, or malformed). *issued set when 0
 * or ETIMEDOUT. */
int auth_nonce_check(struct auth *a, const char *realm, const struct net_addr *src,
		     struct slice nonce, int64_t now, int64_t *issued);
/* Records nc for a live nonce: 0 when nc is above every nc seen with it, EALREADY
 * for a replay (or a nonce that gave way in a full table: answered stale).
 * ESTALE when the nonce is older than what the full table gave away. */
int auth_nc_use(struct auth *a, struct slice nonce, int64_t issued, uint32_t nc, int64_t now);

/* ---- failure limiter (exposed for tests) ---- */

/*
 * Sources are keyed like every other per-source bound: an IPv4 address, an
 * IPv6 /64 (net_addr_src_key). A source's backoff holds every user from it.
 * A user name's backoff engages only once its failures came from two sources
 * or more, and holds only sources where that user has not authenticated in
 * the last AUTH_TRUST_S (see limit.c for why).
 */
#define AUTH_TRUST_S 86400

/* A failure from src for user (any claimed name, known or not). */
void auth_fail_note(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms);
/* 0, or seconds left of the longest backoff that holds src trying user. */
uint32_t auth_fail_blocked(struct auth *a, const struct net_addr *src, struct slice user,
			   int64_t now_ms);
/* A success clears the source's and the user's failure counts (not a live
 * block) and remembers that user authenticated from src. */
void auth_fail_clear(struct auth *a, const struct net_addr *src, struct slice user, int64_t now_ms);

struct auth_stats {
	uint64_t ok, challenges, failures, stale, replays, limited;
	uint64_t foreign;      /* nonces not ours or issued to another source */
	uint64_t nc_evicted;   /* nc entries that gave way to newer ones */
	uint64_t fail_evicted; /* limiter entries that gave way */
	size_t nc_entries, fail_entries;
};
void auth_stats_get(struct auth *a, struct auth_stats *out);

#endif
