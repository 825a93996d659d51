/* auth: [auth] config, a request's realm, challenges, and checking one request's credentials. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth_int.h"

const struct conf_key auth_conf_keys[] = {
    {"auth", "realm", CONF_STR, "", 0, 0, NULL,
     "digest realm; empty = the domain of the request (To of a REGISTER, From of others)"},
    {"auth", "algorithms", CONF_STR, "MD5", 0, 0, NULL,
     "digest algorithms offered and accepted, one challenge each in this order (RFC 8760: "
     "a phone takes the first it supports; list SHA-512-256, SHA-256, MD5 to prefer SHA). "
     "MD5 alone by default: MD5-only phones may fail on any SHA challenge (Debian 12's "
     "baresip does, whatever the order; sipp reads only the first)"},
    {"auth", "nonce_lifetime", CONF_INT, "300", 10, 86400, NULL,
     "seconds a nonce is accepted; an older one is answered stale=true"},
    {"auth", "nonce_key", CONF_STR, "", 0, 0, NULL,
     "hex key (32-128 digits) that signs nonces, shared by servers behind one name; "
     "empty = random per process"},
    {"auth", "nc_table", CONF_INT, "16384", 64, 4194304, NULL,
     "nonces whose nc is tracked against replay; when full the oldest gives way "
     "and nonces as old are answered stale"},
    {"auth", "max_failures", CONF_INT, "5", 1, 1000, NULL,
     "failed authentications per source (IPv4 address, IPv6 /64), or per user name from "
     "two sources or more, before a backoff; only answers to a nonce sent to that source count"},
    {"auth", "fail_window", CONF_INT, "60", 1, 86400, NULL,
     "seconds over which max_failures are counted"},
    {"auth", "backoff_min", CONF_INT, "5", 1, 86400, NULL,
     "first backoff in seconds; each further one doubles, up to backoff_max"},
    {"auth", "backoff_max", CONF_INT, "300", 1, 86400, NULL, "longest backoff in seconds"},
    {"auth", "fail_table", CONF_INT, "8192", 64, 4194304, NULL,
     "sources and user names whose failures are remembered, and the sources each user "
     "authenticated from lately; when full the least recently seen one that is not blocked "
     "gives way"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct metric auth_m_ok = {.name = "auth_ok_total", .help = "requests whose credentials verified"};
struct metric auth_m_challenges = {.name = "auth_challenges_total",
				   .help = "401/407 challenges sent"};
struct metric auth_m_failures = {
    .name = "auth_failures_total",
    .help = "credentials refused: wrong password, unknown user, replay or forged nonce"};
struct metric auth_m_stale = {.name = "auth_stale_total", .help = "expired nonces (stale=true)"};
struct metric auth_m_replays = {.name = "auth_replays_total",
				.help = "credentials refused for an nc already used"};
struct metric auth_m_limited = {.name = "auth_limited_total",
				.help = "requests refused unverified during a failure backoff"};
struct metric auth_m_nc_evicted = {.name = "auth_nc_evicted_total",
				   .help = "live nonces that gave way in the full nc table"};
struct metric auth_m_fail_evicted = {.name = "auth_fail_evicted_total",
				     .help = "failure-limiter entries that gave way (table full)"};
struct metric auth_m_blocks = {.name = "auth_blocks_total",
			       .help = "backoffs started (per source or per user name)"};
struct metric auth_m_foreign = {
    .name = "auth_nonce_foreign_total",
    .help = "credentials over a nonce not ours or issued to another source: challenged again, "
	    "not counted as a failure"};

static int parse_key(const char *hex, uint8_t *key)
{
	size_t n = strlen(hex);
	if (n < 32 || n > 128 || n % 2)
		return EINVAL;
	uint8_t raw[64];
	for (size_t i = 0; i < n; i += 2) {
		unsigned v;
		if (sscanf(hex + i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", hex[i]) ||
		    !strchr("0123456789abcdefABCDEF", hex[i + 1]))
			return EINVAL;
		raw[i / 2] = (uint8_t)v;
	}
	/* any length in, AUTH_KEY_LEN out: hash it down (or pad by hashing) */
	char hx[STORE_CRED_HA1_MAX];
	if (auth_hash_hex(STORE_CRED_SHA256, raw, n / 2, hx))
		return EIO;
	for (size_t i = 0; i < AUTH_KEY_LEN; i++) {
		unsigned v;
		sscanf(hx + 2 * i, "%2x", &v);
		key[i] = (uint8_t)v;
	}
	return 0;
}

/* "SHA-256, MD5" -> offer[alg] = true, and the order as listed (a repeat
 * keeps its first place). 0 or EINVAL (logged). */
static int parse_algs(struct auth *a, const char *list)
{
	bool *offer = a->offer;
	bool any = false;
	struct slice l = slice_cstr(list);
	size_t pos = 0;
	while (pos <= l.l) {
		size_t e = pos;
		while (e < l.l && l.p[e] != ',')
			e++;
		struct slice name = slice_trim((struct slice){l.p + pos, e - pos});
		enum store_cred_alg alg;
		if (!name.l || auth_alg_parse(name, &alg)) {
			LOG_E("auth",
			      "[auth] algorithms: \"%.*s\" is not one of SHA-512-256, "
			      "SHA-256, MD5",
			      (int)name.l, name.p);
			return EINVAL;
		}
		if (!offer[alg])
			a->order[a->n_order++] = alg;
		offer[alg] = any = true;
		pos = e + 1;
	}
	return any ? 0 : EINVAL;
}

int auth_alloc(struct auth **ap, struct store_cred *creds, const struct conf *c)
{
	struct auth *a = calloc(1, sizeof *a);
	if (!a)
		return ENOMEM;
	a->creds = creds;
	const char *realm = conf_str(c, "auth", "realm");
	int err = 0;
	if (strlen(realm) >= sizeof a->realm || strpbrk(realm, "\"\\\r\n")) {
		LOG_E("auth", "[auth] realm: at most %zu characters, no quotes or backslashes",
		      sizeof a->realm - 1);
		err = EINVAL;
		goto out_free;
	}
	snprintf(a->realm, sizeof a->realm, "%s", realm);
	const char *key = conf_str(c, "auth", "nonce_key");
	if (key[0]) {
		if (parse_key(key, a->key)) {
			LOG_E("auth", "[auth] nonce_key: expected 32 to 128 hex digits");
			err = EINVAL;
			goto out_free;
		}
	} else {
		rand_bytes(a->key, sizeof a->key);
	}
	if ((err = parse_algs(a, conf_str(c, "auth", "algorithms"))))
		goto out_free;
	if ((err = auth_hmac_init(a)))
		goto out_free;
	a->nonce_lifetime = conf_int(c, "auth", "nonce_lifetime");
	a->max_failures = (unsigned)conf_int(c, "auth", "max_failures");
	a->fail_window_ms = conf_int(c, "auth", "fail_window") * 1000;
	a->backoff_min_ms = conf_int(c, "auth", "backoff_min") * 1000;
	a->backoff_max_ms = conf_int(c, "auth", "backoff_max") * 1000;
	if (a->backoff_min_ms > a->backoff_max_ms)
		a->backoff_min_ms = a->backoff_max_ms;
	if ((err = auth_nc_init(a, (size_t)conf_int(c, "auth", "nc_table"))) ||
	    (err = auth_fail_init(a, (size_t)conf_int(c, "auth", "fail_table"))))
		goto out_free;
	struct metric *ms[] = {&auth_m_ok,	   &auth_m_challenges,	 &auth_m_failures,
			       &auth_m_stale,	   &auth_m_replays,	 &auth_m_limited,
			       &auth_m_nc_evicted, &auth_m_fail_evicted, &auth_m_blocks,
			       &auth_m_foreign};
	for (size_t i = 0; i < ARRAY_SIZE(ms); i++)
		metric_register(ms[i]);
	*ap = a;
	return 0;
out_free:
	auth_free(a);
	return err;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	auth_nc_fini(a);
	auth_fail_fini(a);
	auth_hmac_fini(a);
	OPENSSL_cleanse(a->key, sizeof a->key);
	free(a);
}

bool auth_active(struct auth *a)
{
	return a && a->creds && store_cred_count(a->creds) > 0;
}

int auth_realm(struct auth *a, const struct sip_uri *uri, char *out)
{
	if (a->realm[0]) {
		memcpy(out, a->realm, strlen(a->realm) + 1);
		return 0;
	}
	if (!uri->host.l)
		return EINVAL;
	if (uri->host.l >= STORE_CRED_REALM_MAX)
		return ENAMETOOLONG;
	for (size_t i = 0; i < uri->host.l; i++) {
		char ch = uri->host.p[i];
		if (ch == '"' || ch == '\\' || (unsigned char)ch < 0x21)
			return EINVAL;
		out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch | 0x20) : ch;
	}
	out[uri->host.l] = '\0';
	return 0;
}

int auth_challenge(struct auth *a, const char *realm, const struct net_addr *src, bool proxy,
		   bool stale, char *out, size_t cap)
{
	char nonce[AUTH_NONCE_LEN + 1];
	auth_nonce_make(a, realm, src, time_wall_s(), nonce);
	size_t o = 0;
	for (size_t i = 0; i < a->n_order; i++) {
		int n = snprintf(out + o, cap - o,
				 "%s: Digest realm=\"%s\", nonce=\"%s\", algorithm=%s, "
				 "qop=\"auth\"%s\r\n",
				 proxy ? "Proxy-Authenticate" : "WWW-Authenticate", realm, nonce,
				 auth_alg_name(a->order[i]), stale ? ", stale=true" : "");
		if (n < 0 || (size_t)n >= cap - o)
			return ENOSPC;
		o += (size_t)n;
	}
	metric_inc(&auth_m_challenges);
	if (stale)
		metric_inc(&auth_m_stale);
	return 0;
}

static bool is_lhex(struct slice s, size_t n)
{
	if (s.l != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF", s.p[i]) || !s.p[i])
			return false;
	return true;
}

static uint32_t hex_u32(struct slice s)
{
	uint32_t v = 0;
	for (size_t i = 0; i < s.l; i++) {
		char ch = s.p[i];
		v = v << 4 | (uint32_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
	}
	return v;
}

/* The first credentials of our realm, if any: 0, ENOENT, EBADMSG. */
static int find_cred(const struct sip_msg *m, bool proxy, const char *realm,
		     struct sip_digest_cred *dc)
{
	enum sip_hdr_id id = proxy ? SIP_HDR_PROXY_AUTHORIZATION : SIP_HDR_AUTHORIZATION;
	const struct sip_hdr *h;
	for (size_t i = 0; (h = sip_msg_hdr(m, id, i)) != NULL; i++) {
		int err = sip_digest_parse(h->value, dc);
		if (err == ENOTSUP)
			continue; /* Basic or another scheme: not for us */
		if (err)
			return EBADMSG;
		if (dc->realm.p && slice_eq_nocase(dc->realm, slice_cstr(realm)))
			return 0;
	}
	return ENOENT;
}

/* Used for unknown users, so that they cost what a known one costs. */
static const char dummy_ha1[] = "0000000000000000000000000000000000000000000000000000000000000000";

static void failed(struct auth *a, const uint64_t k[FAIL_K_N], const struct net_addr *src,
		   struct slice user, struct auth_result *res)
{
	res->verdict = AUTH_FAILED;
	metric_inc(&auth_m_failures);
	auth_fail_note_k(a, k, src, user, (int64_t)time_mono_ms());
}

void auth_check(struct auth *a, const struct sip_msg *m, const struct net_addr *src, bool proxy,
		const char *realm, struct auth_result *res)
{
	memset(res, 0, sizeof *res);
	struct sip_digest_cred dc;
	int err = find_cred(m, proxy, realm, &dc);
	if (err) {
		res->verdict = err == ENOENT ? AUTH_CHALLENGE : AUTH_BAD_REQUEST;
		return;
	}
	if (!dc.username.p || !dc.nonce.p || !dc.uri.p || !dc.response.p) {
		res->verdict = AUTH_BAD_REQUEST; /* RFC 7616 3.4: these are required */
		return;
	}
	/* RFC 7616 3.4.6, RFC 3261 22.4: the credentials are for this
	 * Request-URI. Without the check, credentials taken from a request held
	 * back on the way would carry another Request-URI (the response covers
	 * only the uri parameter) */
	struct sip_uri du;
	if (!slice_eq(dc.uri, m->ruri_s) &&
	    (sip_uri_parse(dc.uri, &du) || !sip_uri_eq(&du, &m->ruri))) {
		res->verdict = AUTH_BAD_REQUEST;
		return;
	}
	enum store_cred_alg alg;
	if (auth_alg_parse(dc.algorithm, &alg) || !a->offer[alg]) {
		res->verdict = AUTH_CHALLENGE; /* one we did not offer: offer ours again */
		return;
	}
	/* The nonce first: only one we sent to this very source (auth.h) shows
	 * that the sender receives there. Anything else (made up, another
	 * key's, fetched at another address, or a forged UDP source) gets a
	 * fresh challenge at that source and counts against no one: failures
	 * counted without that round trip would let anyone put alice, or an
	 * office's NAT, into backoff from forged addresses. */
	int64_t now = time_wall_s(), issued = 0;
	err = auth_nonce_check(a, realm, src, dc.nonce, now, &issued);
	if (err == ETIMEDOUT) {
		res->verdict = AUTH_CHALLENGE;
		res->stale = true;
		return;
	}
	if (err) {
		res->verdict = AUTH_CHALLENGE;
		metric_inc(&auth_m_foreign);
		return;
	}
	int64_t now_ms = (int64_t)time_mono_ms();
	uint64_t k[FAIL_K_N];
	auth_fail_keys(a, src, dc.username, k);
	uint32_t wait = auth_fail_blocked_k(a, k, now_ms);
	if (wait) {
		/* nothing verified, so a right guess during the backoff is worth nothing */
		res->verdict = AUTH_LIMITED;
		res->retry_after = wait;
		metric_inc(&auth_m_limited);
		return;
	}
	/* qop=auth is what we offered: without it there is no nc, no replay
	 * protection, and RFC 2069 clients get no exception */
	if (!dc.qop.p || !slice_eq_cstr_nocase(dc.qop, "auth") || !is_lhex(dc.nc, 8) ||
	    !dc.cnonce.l || !is_lhex(dc.response, auth_alg_hexlen(alg)) || dc.escaped) {
		failed(a, k, src, dc.username, res);
		return;
	}
	struct store_cred_entry ce;
	bool known =
	    store_cred_lookup(a->creds, dc.username, slice_cstr(realm), &ce) == 0 && ce.ha1[alg][0];
	char want[STORE_CRED_HA1_MAX];
	/* the same work for an unknown user: its answer must not come sooner */
	if (auth_response(alg, known ? ce.ha1[alg] : dummy_ha1 + (64 - auth_alg_hexlen(alg)),
			  dc.nonce, dc.nc, dc.cnonce, dc.qop, m->method_s, dc.uri, want)) {
		failed(a, k, src, dc.username, res);
		return;
	}
	char got[STORE_CRED_HA1_MAX];
	for (size_t i = 0; i < dc.response.l; i++)
		got[i] = (char)(dc.response.p[i] | 0x20); /* hex: lowercase is the form */
	got[dc.response.l] = '\0';
	bool match = CRYPTO_memcmp(got, want, dc.response.l) == 0;
	if (!known || !match) {
		failed(a, k, src, dc.username, res);
		return;
	}
	/* state only for credentials that verified: a stranger cannot fill the table */
	err = auth_nc_use(a, dc.nonce, issued, hex_u32(dc.nc), now);
	if (err == ESTALE) {
		res->verdict = AUTH_CHALLENGE;
		res->stale = true;
		return;
	}
	if (err) {
		/* a replay is a copy, not a guess: whoever sent it may only have
		 * seen alice's request (and forged her source), so it proves
		 * nothing about the source and must not count against her */
		metric_inc(&auth_m_replays);
		res->verdict = AUTH_CHALLENGE;
		return;
	}
	auth_fail_clear_k(a, k, now_ms);
	slice_to_cstr(dc.username, res->user, sizeof res->user);
	res->verdict = AUTH_OK;
	metric_inc(&auth_m_ok);
}

void auth_stats_get(struct auth *a, struct auth_stats *out)
{
	out->ok = (uint64_t)metric_get(&auth_m_ok);
	out->challenges = (uint64_t)metric_get(&auth_m_challenges);
	out->failures = (uint64_t)metric_get(&auth_m_failures);
	out->stale = (uint64_t)metric_get(&auth_m_stale);
	out->replays = (uint64_t)metric_get(&auth_m_replays);
	out->limited = (uint64_t)metric_get(&auth_m_limited);
	out->nc_evicted = (uint64_t)metric_get(&auth_m_nc_evicted);
	out->fail_evicted = (uint64_t)metric_get(&auth_m_fail_evicted);
	out->foreign = (uint64_t)metric_get(&auth_m_foreign);
	pthread_mutex_lock(&a->nc_lock);
	out->nc_entries = a->nc_count;
	pthread_mutex_unlock(&a->nc_lock);
	pthread_mutex_lock(&a->fail_lock);
	out->fail_entries = a->fail_count;
	pthread_mutex_unlock(&a->fail_lock);
}

uint16_t auth_answer(struct auth *a, const struct auth_result *res, const char *realm,
		     const struct net_addr *src, bool proxy, const char **reason, char *extra,
		     size_t cap)
{
	extra[0] = '\0';
	switch (res->verdict) {
	case AUTH_OK:
		return 0;
	case AUTH_CHALLENGE:
	case AUTH_FAILED:
		if (auth_challenge(a, realm, src, proxy, res->stale, extra, cap)) {
			extra[0] = '\0';
			*reason = "Server Internal Error";
			return 500;
		}
		*reason = proxy ? "Proxy Authentication Required" : "Unauthorized";
		return proxy ? 407 : 401;
	case AUTH_LIMITED:
		snprintf(extra, cap, "Retry-After: %u\r\n", res->retry_after);
		*reason = "Forbidden";
		return 403;
	case AUTH_BAD_REQUEST:
	default:
		*reason = proxy ? "Bad Proxy-Authorization" : "Bad Authorization";
		return 400;
	}
}
