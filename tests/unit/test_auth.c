/* Digest: RFC 7616 vectors, nonces, nc replay, credential checks and the failure limiter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "auth/auth.h"

/* RFC 7616 3.9.1 */
#define V_USER "Mufasa"
#define V_REALM "http-auth@example.org"
#define V_PASS "Circle of Life"
#define V_NONCE "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
#define V_CNONCE "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

static void vector(enum store_cred_alg alg, char *out)
{
	char ha1[STORE_CRED_HA1_MAX];
	assert_int_equal(
	    auth_ha1(alg, SLICE_LIT(V_USER), SLICE_LIT(V_REALM), SLICE_LIT(V_PASS), ha1), 0);
	assert_int_equal(auth_response(alg, ha1, SLICE_LIT(V_NONCE), SLICE_LIT("00000001"),
				       SLICE_LIT(V_CNONCE), SLICE_LIT("auth"), SLICE_LIT("GET"),
				       SLICE_LIT("/dir/index.html"), out),
			 0);
}

static void test_rfc7616_vectors(void **state)
{
	(void)state;
	char r[STORE_CRED_HA1_MAX];
	vector(STORE_CRED_MD5, r);
	assert_string_equal(r, "8ca523f5e9506fed4657c9700eebdbec");
	vector(STORE_CRED_SHA256, r);
	assert_string_equal(r, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

static void ossl_hex(const EVP_MD *md, const char *s, char *out)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned l = 0;
	assert_int_equal(EVP_Digest(s, strlen(s), d, &l, md, NULL), 1);
	for (unsigned i = 0; i < l; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* RFC 7616 gives no SHA-512-256 example: the chain is recomputed here with
 * OpenSSL's digest looked up by name, and checked against a value computed
 * by another implementation (Python hashlib). */
static void test_sha512_256_cross_check(void **state)
{
	(void)state;
	const EVP_MD *md = EVP_get_digestbyname("SHA512-256");
	assert_non_null(md);
	char ha1[STORE_CRED_HA1_MAX], ha2[STORE_CRED_HA1_MAX], in[512], want[STORE_CRED_HA1_MAX];
	ossl_hex(md, V_USER ":" V_REALM ":" V_PASS, ha1);
	ossl_hex(md, "GET:/dir/index.html", ha2);
	snprintf(in, sizeof in, "%s:" V_NONCE ":00000001:" V_CNONCE ":auth:%s", ha1, ha2);
	ossl_hex(md, in, want);
	char r[STORE_CRED_HA1_MAX];
	vector(STORE_CRED_SHA512_256, r);
	assert_string_equal(r, want);
	assert_string_equal(r, "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0");
	/* and not SHA-512 cut short: a different initial value */
	char full[129];
	ossl_hex(EVP_sha512(), V_USER ":" V_REALM ":" V_PASS, full);
	assert_memory_not_equal(full, ha1, 64);
}

static void test_alg_names(void **state)
{
	(void)state;
	enum store_cred_alg a;
	assert_int_equal(auth_alg_parse(SLICE_NULL, &a), 0);
	assert_int_equal(a, STORE_CRED_MD5);
	assert_int_equal(auth_alg_parse(SLICE_LIT("sha-512-256"), &a), 0);
	assert_int_equal(a, STORE_CRED_SHA512_256);
	assert_int_equal(auth_alg_parse(SLICE_LIT("SHA-256-sess"), &a), ENOTSUP);
	assert_int_equal(auth_alg_parse(SLICE_LIT("SHA-1"), &a), ENOTSUP);
}

/* ---- the Authorization parser ---- */

static void test_digest_parse(void **state)
{
	(void)state;
	struct sip_digest_cred c;
	struct slice v = SLICE_LIT(
	    "Digest username=\"alice\",realm=\"example.com\", nonce=\"abc\", "
	    "uri=\"sip:example.com\", response=\"0123\", algorithm=SHA-256, cnonce=\"xyz\", "
	    "qop=auth, nc=00000001, opaque=\"\", foo=bar");
	assert_int_equal(sip_digest_parse(v, &c), 0);
	assert_true(slice_eq(c.username, SLICE_LIT("alice")));
	assert_true(slice_eq(c.realm, SLICE_LIT("example.com")));
	assert_true(slice_eq(c.algorithm, SLICE_LIT("SHA-256")));
	assert_true(slice_eq(c.qop, SLICE_LIT("auth")));
	assert_true(slice_eq(c.nc, SLICE_LIT("00000001")));
	assert_non_null(c.opaque.p);
	assert_int_equal(c.opaque.l, 0);
	assert_null(c.userhash.p);
	/* a quoted qop, folded lines */
	assert_int_equal(sip_digest_parse(SLICE_LIT("digest\r\n qop=\"auth\" ,\tnc=1"), &c), 0);
	assert_true(slice_eq(c.qop, SLICE_LIT("auth")));
	assert_int_equal(sip_digest_parse(SLICE_LIT("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), &c),
			 ENOTSUP);
	static const char *const bad[] = {
	    "",
	    "Digest",
	    "Digest ",
	    "Digest username=\"a\", username=\"b\"", /* twice */
	    "Digest username=alice",		     /* must be quoted */
	    "Digest username=\"alice",		     /* unterminated */
	    "Digest username=\"al\\",		     /* escape at the end */
	    "Digest realm=\"a\" nonce=\"b\"",	     /* no comma */
	    "Digest =\"a\"",
	    "Digest realm",
	    "Digest realm=",
	    "Digest realm=\"a\",",
	    "Digest realm=\"a\x01\"",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (sip_digest_parse(slice_cstr(bad[i]), &c) != EBADMSG)
			fail_msg("accepted: %s", bad[i]);
	}
	assert_int_equal(sip_digest_parse(SLICE_LIT("Digest username=\"a\\\"b\""), &c), 0);
	assert_true(c.escaped);
}

/* ---- nonces and nc ---- */

static struct auth *make_auth(struct store_cred *creds, const char *text)
{
	static const struct conf_key *const tables[] = {auth_conf_keys, NULL};
	struct conf *c;
	char err[256];
	assert_int_equal(conf_alloc(&c, tables), 0);
	if (conf_load_string(c, "test", text, err, sizeof err))
		fail_msg("%s", err);
	struct auth *a;
	assert_int_equal(auth_alloc(&a, creds, c), 0);
	conf_free(c);
	return a;
}

static void test_nonce(void **state)
{
	(void)state;
	struct auth *a = make_auth(NULL, "[auth]\nnonce_lifetime = 60\n");
	char n[AUTH_NONCE_LEN + 1];
	int64_t now = 1700000000, issued = 0;
	struct net_addr s0;
	net_addr_parse("198.18.5.5:5060", 0, &s0);
	auth_nonce_make(a, "example.com", &s0, now, n);
	assert_int_equal(strlen(n), AUTH_NONCE_LEN);
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, slice_cstr(n), now + 60, &issued),
			 0);
	assert_int_equal(issued, now);
	/* the realm is compared case-insensitively, and bound */
	assert_int_equal(auth_nonce_check(a, "EXAMPLE.com", &s0, slice_cstr(n), now, &issued), 0);
	assert_int_equal(auth_nonce_check(a, "example.org", &s0, slice_cstr(n), now, &issued),
			 EPERM);
	/* bound to the source challenged: its address (any port), not another */
	struct net_addr other;
	net_addr_parse("198.18.5.5:1", 0, &other);
	assert_int_equal(auth_nonce_check(a, "example.com", &other, slice_cstr(n), now, &issued),
			 0);
	net_addr_parse("[::ffff:198.18.5.5]:1", 0, &other);
	assert_int_equal(auth_nonce_check(a, "example.com", &other, slice_cstr(n), now, &issued),
			 0);
	net_addr_parse("198.18.5.6:5060", 0, &other);
	assert_int_equal(auth_nonce_check(a, "example.com", &other, slice_cstr(n), now, &issued),
			 EPERM);
	/* IPv6: its /64 (privacy addresses), not the next one */
	struct net_addr v6;
	net_addr_parse("[2001:db8:1:2::1]:5060", 0, &v6);
	char n6[AUTH_NONCE_LEN + 1];
	auth_nonce_make(a, "example.com", &v6, now, n6);
	net_addr_parse("[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:7", 0, &other);
	assert_int_equal(auth_nonce_check(a, "example.com", &other, slice_cstr(n6), now, &issued),
			 0);
	net_addr_parse("[2001:db8:1:3::1]:5060", 0, &other);
	assert_int_equal(auth_nonce_check(a, "example.com", &other, slice_cstr(n6), now, &issued),
			 EPERM);
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, slice_cstr(n6), now, &issued),
			 EPERM);
	/* expired but ours: stale */
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, slice_cstr(n), now + 61, &issued),
			 ETIMEDOUT);
	/* every single-character change is refused */
	for (size_t i = 0; i < AUTH_NONCE_LEN; i++) {
		char t[AUTH_NONCE_LEN + 1];
		memcpy(t, n, sizeof t);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		assert_int_equal(
		    auth_nonce_check(a, "example.com", &s0, slice_cstr(t), now, &issued), EPERM);
	}
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, SLICE_LIT("short"), now, &issued),
			 EPERM);
	/* from the future */
	auth_nonce_make(a, "example.com", &s0, now + 100, n);
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, slice_cstr(n), now, &issued),
			 EPERM);
	/* another process's key: not ours */
	struct auth *b = make_auth(NULL, "");
	auth_nonce_make(b, "example.com", &s0, now, n);
	assert_int_equal(auth_nonce_check(a, "example.com", &s0, slice_cstr(n), now, &issued),
			 EPERM);
	auth_free(b);
	/* a shared nonce_key: ours on both */
	struct auth *k1 = make_auth(NULL, "[auth]\nnonce_key = 00112233445566778899aabbccddeeff\n");
	struct auth *k2 = make_auth(NULL, "[auth]\nnonce_key = 00112233445566778899AABBCCDDEEFF\n");
	auth_nonce_make(k1, "example.com", &s0, now, n);
	assert_int_equal(auth_nonce_check(k2, "example.com", &s0, slice_cstr(n), now, &issued), 0);
	auth_free(k1);
	auth_free(k2);
	auth_free(a);
}

static void test_nc_replay_and_bound(void **state)
{
	(void)state;
	struct auth *a = make_auth(NULL, "[auth]\nnc_table = 64\nnonce_lifetime = 300\n");
	int64_t now = time_wall_s();
	struct net_addr s0;
	net_addr_parse("198.18.5.5:5060", 0, &s0);
	char n[AUTH_NONCE_LEN + 1];
	auth_nonce_make(a, "r", &s0, now - 10, n);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 1, now), 0);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 1, now), EALREADY); /* replay */
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 2, now), 0);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 2, now), EALREADY);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 7, now), 0); /* gaps are fine */
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 3, now), EALREADY);
	/* fill the table with 64 newer nonces: the first gives way */
	int64_t before = metric_get(metric_find("auth_nc_evicted_total", NULL));
	for (int i = 0; i < 64; i++) {
		char m[AUTH_NONCE_LEN + 1];
		auth_nonce_make(a, "r", &s0, now, m);
		assert_int_equal(auth_nc_use(a, slice_cstr(m), now, 1, now), 0);
	}
	struct auth_stats st;
	auth_stats_get(a, &st);
	assert_int_equal(st.nc_entries, 64);
	assert_int_equal(metric_get(metric_find("auth_nc_evicted_total", NULL)) - before, 1);
	/* the evicted nonce is not trusted again, whatever its nc: stale */
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 8, now), ESTALE);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now - 10, 1, now), ESTALE);
	/* a nonce issued after the horizon still works */
	auth_nonce_make(a, "r", &s0, now + 1, n);
	assert_int_equal(auth_nc_use(a, slice_cstr(n), now + 1, 1, now + 1), 0);
	auth_free(a);
}

/* ---- auth_check on whole requests ---- */

struct ctx {
	struct store_cred *creds;
	struct auth *a;
	struct net_addr src;
	char buf[4096];
	struct sip_msg m;
};

static void ctx_open(struct ctx *c, const char *conf)
{
	memset(c, 0, sizeof *c);
	assert_int_equal(store_cred_alloc(&c->creds), 0);
	struct store_cred_entry e;
	assert_int_equal(
	    auth_ha1_all(SLICE_LIT("alice"), SLICE_LIT("example.com"), SLICE_LIT("wonderland"), &e),
	    0);
	assert_int_equal(store_cred_set(c->creds, SLICE_LIT("alice"), SLICE_LIT("example.com"), &e),
			 0);
	c->a = make_auth(c->creds, conf);
	net_addr_parse("198.18.5.5:5060", 0, &c->src);
}

static void ctx_close(struct ctx *c)
{
	auth_free(c->a);
	store_cred_free(c->creds);
}

/* A REGISTER with an Authorization computed for user/password over nonce. */
static void build(struct ctx *c, const char *user, const char *pass, const char *nonce,
		  const char *nc, enum store_cred_alg alg)
{
	char ha1[STORE_CRED_HA1_MAX], resp[STORE_CRED_HA1_MAX];
	auth_ha1(alg, slice_cstr(user), SLICE_LIT("example.com"), slice_cstr(pass), ha1);
	auth_response(alg, ha1, slice_cstr(nonce), slice_cstr(nc), SLICE_LIT("cn1"),
		      SLICE_LIT("auth"), SLICE_LIT("REGISTER"), SLICE_LIT("sip:example.com"), resp);
	int n = snprintf(c->buf, sizeof c->buf,
			 "REGISTER sip:example.com SIP/2.0\r\n"
			 "Via: SIP/2.0/UDP 198.18.5.5;branch=z9hG4bK1\r\n"
			 "From: <sip:%s@example.com>;tag=1\r\nTo: <sip:%s@example.com>\r\n"
			 "Call-ID: c1\r\nCSeq: 1 REGISTER\r\n"
			 "Authorization: Digest username=\"%s\", realm=\"example.com\", "
			 "nonce=\"%s\", uri=\"sip:example.com\", response=\"%s\", "
			 "algorithm=%s, qop=auth, nc=%s, cnonce=\"cn1\"\r\n"
			 "Content-Length: 0\r\n\r\n",
			 user, user, user, nonce, resp, auth_alg_name(alg), nc);
	assert_int_equal(sip_msg_parse(&c->m, c->buf, (size_t)n, false, NULL), 0);
}

static enum auth_verdict check(struct ctx *c, struct auth_result *r)
{
	auth_check(c->a, &c->m, &c->src, false, "example.com", r);
	return r->verdict;
}

static void test_check(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nmax_failures = 100\nalgorithms = SHA-512-256, SHA-256, MD5\n");
	struct auth_result r;
	char n[AUTH_NONCE_LEN + 1];
	/* no credentials: a challenge, not a failure */
	static const char bare[] =
	    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
	    "From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
	    "Call-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(sip_msg_parse(&c.m, bare, sizeof bare - 1, false, NULL), 0);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	assert_false(r.stale);
	for (int alg = 0; alg < STORE_CRED_ALGS; alg++) {
		auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
		build(&c, "alice", "wonderland", n, "00000001", (enum store_cred_alg)alg);
		assert_int_equal(check(&c, &r), AUTH_OK);
		assert_string_equal(r.user, "alice");
		/* the same request again: a replay, challenged, not a failure (a
		 * copy proves nothing about who sent it) */
		int64_t fails = metric_get(metric_find("auth_failures_total", NULL));
		assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
		assert_false(r.stale);
		assert_int_equal(metric_get(metric_find("auth_failures_total", NULL)), fails);
		build(&c, "alice", "wonderland", n, "00000002", (enum store_cred_alg)alg);
		assert_int_equal(check(&c, &r), AUTH_OK);
	}
	/* credentials lifted onto another Request-URI: 400 (RFC 7616 3.4.6) */
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	char *rl = strstr(c.buf, "sip:example.com SIP/2.0");
	memcpy(rl, "sip:example.org", 15);
	assert_int_equal(sip_msg_parse(&c.m, c.buf, strlen(c.buf), false, NULL), 0);
	assert_int_equal(check(&c, &r), AUTH_BAD_REQUEST);
	/* the same URI written differently is the same resource */
	memcpy(rl, "sip:EXAMPLE.com", 15);
	assert_int_equal(sip_msg_parse(&c.m, c.buf, strlen(c.buf), false, NULL), 0);
	assert_int_equal(check(&c, &r), AUTH_OK);
	/* wrong password and unknown user: the same verdict */
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
	build(&c, "alice", "guess", n, "00000001", STORE_CRED_SHA256);
	assert_int_equal(check(&c, &r), AUTH_FAILED);
	build(&c, "mallory", "guess", n, "00000001", STORE_CRED_SHA256);
	assert_int_equal(check(&c, &r), AUTH_FAILED);
	/* an expired nonce with the right password: stale, a challenge */
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s() - 301, n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	assert_true(r.stale);
	/* a nonce made up, or for another realm, or sent to another source:
	 * a fresh challenge (stale=false), counted apart, not a failure */
	int64_t fails = metric_get(metric_find("auth_failures_total", NULL));
	int64_t foreign = metric_get(metric_find("auth_nonce_foreign_total", NULL));
	build(&c, "alice", "wonderland", "7ypf_xlj9XXwfDPEoM4URrv_xwf94BcCAzFZH4GiTo0", "00000001",
	      STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	assert_false(r.stale);
	auth_nonce_make(c.a, "example.org", &c.src, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	struct net_addr elsewhere;
	net_addr_parse("198.18.5.6:5060", 0, &elsewhere);
	auth_nonce_make(c.a, "example.com", &elsewhere, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	assert_false(r.stale);
	assert_int_equal(metric_get(metric_find("auth_failures_total", NULL)), fails);
	assert_int_equal(metric_get(metric_find("auth_nonce_foreign_total", NULL)) - foreign, 3);
	/* the same nonce from the source it was sent to: alice */
	c.src = elsewhere;
	assert_int_equal(check(&c, &r), AUTH_OK);
	ctx_close(&c);
}

/* [auth] algorithms narrows what is offered and what is accepted. */
static void test_algorithms_offered(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nalgorithms = MD5\n");
	char ch[1024], n[AUTH_NONCE_LEN + 1];
	assert_int_equal(auth_challenge(c.a, "example.com", &c.src, false, false, ch, sizeof ch),
			 0);
	assert_non_null(strstr(ch, "algorithm=MD5"));
	assert_null(strstr(ch, "SHA"));
	struct auth_result r;
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_SHA256);
	assert_int_equal(check(&c, &r), AUTH_CHALLENGE);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_OK);
	ctx_close(&c);
	/* the default: MD5 alone (MD5-only phones give up on a SHA challenge),
	 * one nonce, stale when asked */
	ctx_open(&c, "");
	assert_int_equal(auth_challenge(c.a, "example.com", &c.src, true, true, ch, sizeof ch), 0);
	char *a = strstr(ch, "Proxy-Authenticate: Digest realm=\"example.com\", nonce=\"");
	assert_non_null(a);
	char *s1, *s2, *s3 = strstr(ch, "algorithm=MD5");
	assert_true(s3 > a);
	assert_null(strstr(ch, "SHA"));
	assert_non_null(strstr(s3, "qop=\"auth\", stale=true\r\n"));
	ctx_close(&c);
	/* the operator's order is the order offered (RFC 8760 preference) */
	ctx_open(&c, "[auth]\nalgorithms = SHA-512-256, SHA-256, MD5, SHA-256\n");
	assert_int_equal(auth_challenge(c.a, "example.com", &c.src, false, false, ch, sizeof ch),
			 0);
	s1 = strstr(ch, "algorithm=SHA-512-256");
	s2 = strstr(ch, "algorithm=SHA-256");
	s3 = strstr(ch, "algorithm=MD5");
	assert_true(s1 && s2 && s3 && s1 < s2 && s2 < s3);
	assert_null(strstr(s2 + 1, "algorithm=SHA-256")); /* a repeat is offered once */
	ctx_close(&c);
	static const struct conf_key *const tables[] = {auth_conf_keys, NULL};
	struct conf *cf;
	char err[128];
	assert_int_equal(conf_alloc(&cf, tables), 0);
	assert_int_equal(conf_load_string(cf, "t", "[auth]\nalgorithms = SHA-1\n", err, sizeof err),
			 0);
	struct auth *bad;
	assert_int_equal(auth_alloc(&bad, NULL, cf), EINVAL);
	conf_free(cf);
}

/* ---- the failure limiter ---- */

static void test_limiter_backoff(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nmax_failures = 3\nbackoff_min = 10\nbackoff_max = 40\n");
	struct auth_result r;
	char n[AUTH_NONCE_LEN + 1];
	int64_t blocks = metric_get(metric_find("auth_blocks_total", NULL));
	int64_t limited = metric_get(metric_find("auth_limited_total", NULL));
	for (int i = 0; i < 3; i++) {
		auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
		build(&c, "alice", "guess", n, "00000001", STORE_CRED_MD5);
		assert_int_equal(check(&c, &r), AUTH_FAILED);
	}
	/* one source: the source is held, not the user name (see limit.c) */
	assert_int_equal(metric_get(metric_find("auth_blocks_total", NULL)) - blocks, 1);
	/* now even the right password is not verified */
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_LIMITED);
	assert_true(r.retry_after >= 1 && r.retry_after <= 10);
	assert_int_equal(metric_get(metric_find("auth_limited_total", NULL)) - limited, 1);
	/* another source of the same IPv4 address (another port) is held too */
	net_addr_parse("198.18.5.5:5099", 0, &c.src);
	assert_int_equal(check(&c, &r), AUTH_LIMITED);
	/* alice elsewhere is not */
	net_addr_parse("198.18.6.6:5060", 0, &c.src);
	auth_nonce_make(c.a, "example.com", &c.src, time_wall_s(), n);
	build(&c, "alice", "wonderland", n, "00000001", STORE_CRED_MD5);
	assert_int_equal(check(&c, &r), AUTH_OK);
	/* the backoff doubles, up to backoff_max */
	int64_t t = (int64_t)time_mono_ms() + 11000;
	struct net_addr s2;
	net_addr_parse("198.18.7.7:1", 0, &s2);
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &s2, SLICE_LIT("bob"), t);
	assert_int_equal(auth_fail_blocked(c.a, &s2, SLICE_LIT("x"), t), 10);
	t += 10001;
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &s2, SLICE_LIT("bob"), t);
	assert_int_equal(auth_fail_blocked(c.a, &s2, SLICE_LIT("x"), t), 20);
	t += 20001;
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &s2, SLICE_LIT("bob"), t);
	assert_int_equal(auth_fail_blocked(c.a, &s2, SLICE_LIT("x"), t), 40);
	t += 40001;
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &s2, SLICE_LIT("bob"), t);
	assert_int_equal(auth_fail_blocked(c.a, &s2, SLICE_LIT("x"), t), 40); /* capped */
	ctx_close(&c);
}

/* A flood of failures from many sources: the table stays at its bound, the
 * counter says how often something gave way, and blocked entries are the last
 * to go. */
static void test_limiter_bound(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nmax_failures = 2\nfail_table = 64\n");
	int64_t now = (int64_t)time_mono_ms();
	struct net_addr victim;
	net_addr_parse("198.18.9.9:1", 0, &victim);
	auth_fail_note(c.a, &victim, SLICE_LIT("v"), now);
	auth_fail_note(c.a, &victim, SLICE_LIT("v"), now);
	assert_true(auth_fail_blocked(c.a, &victim, SLICE_LIT("v"), now) > 0);
	int64_t ev = metric_get(metric_find("auth_fail_evicted_total", NULL));
	for (int i = 0; i < 5000; i++) {
		char a[32], u[16];
		snprintf(a, sizeof a, "198.19.%d.%d:1", i / 250, i % 250);
		snprintf(u, sizeof u, "u%d", i);
		struct net_addr s;
		net_addr_parse(a, 0, &s);
		auth_fail_note(c.a, &s, slice_cstr(u), now + 1);
	}
	struct auth_stats st;
	auth_stats_get(c.a, &st);
	assert_int_equal(st.fail_entries, 64);
	assert_true(metric_get(metric_find("auth_fail_evicted_total", NULL)) - ev >= 5000 * 2 - 64);
	/* one failure each never blocks: the victim's block outlived the flood */
	assert_true(auth_fail_blocked(c.a, &victim, SLICE_LIT("v"), now + 2) > 0);
	ctx_close(&c);
}

/* The user-name backoff: only for failures from two sources or more, and it
 * does not hold a source where the user authenticated lately. */
static void test_limiter_user_backoff_narrow(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nmax_failures = 3\nbackoff_min = 10\n");
	int64_t t = (int64_t)time_mono_ms();
	struct net_addr home, x, y, z;
	net_addr_parse("198.18.1.1:5060", 0, &home);
	net_addr_parse("198.18.2.2:5060", 0, &x);
	net_addr_parse("198.18.3.3:5060", 0, &y);
	net_addr_parse("198.18.4.4:5060", 0, &z);
	auth_fail_clear(c.a, &home, SLICE_LIT("alice"), t); /* alice's phone at home */
	/* many failures naming alice, one source: x is held, alice is not */
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &x, SLICE_LIT("alice"), t);
	assert_int_equal(auth_fail_blocked(c.a, &x, SLICE_LIT("alice"), t), 10);
	assert_int_equal(auth_fail_blocked(c.a, &z, SLICE_LIT("alice"), t), 0);
	/* a second source: the user name is held, except where alice was lately */
	auth_fail_note(c.a, &y, SLICE_LIT("alice"), t);
	assert_int_equal(auth_fail_blocked(c.a, &z, SLICE_LIT("alice"), t), 10);
	assert_int_equal(auth_fail_blocked(c.a, &z, SLICE_LIT("bob"), t), 0);
	assert_int_equal(auth_fail_blocked(c.a, &home, SLICE_LIT("alice"), t), 0);
	/* the home source is held by its own backoff like any other */
	for (int i = 0; i < 3; i++)
		auth_fail_note(c.a, &home, SLICE_LIT("carol"), t);
	assert_int_equal(auth_fail_blocked(c.a, &home, SLICE_LIT("alice"), t), 10);
	/* and the trust is for lately only */
	int64_t later = t + (int64_t)AUTH_TRUST_S * 1000 + 1;
	auth_fail_note(c.a, &x, SLICE_LIT("alice"), later);
	auth_fail_note(c.a, &y, SLICE_LIT("alice"), later);
	auth_fail_note(c.a, &z, SLICE_LIT("alice"), later);
	struct net_addr home2;
	net_addr_parse("198.18.1.1:7000", 0, &home2);
	assert_true(auth_fail_blocked(c.a, &home2, SLICE_LIT("alice"), later) > 0);
	ctx_close(&c);
}

/* IPv6 sources by /64, like every other per-source bound: a host that owns
 * a /64 cannot go on guessing by changing address inside it. */
static void test_limiter_ipv6_by_64(void **state)
{
	(void)state;
	struct ctx c;
	ctx_open(&c, "[auth]\nmax_failures = 3\nbackoff_min = 10\n");
	int64_t t = (int64_t)time_mono_ms();
	for (int i = 0; i < 3; i++) {
		char a[64], u[16];
		snprintf(a, sizeof a, "[2001:db8:1:2::%x]:5060", i + 1);
		snprintf(u, sizeof u, "user%d", i);
		struct net_addr s;
		assert_int_equal(net_addr_parse(a, 0, &s), 0);
		auth_fail_note(c.a, &s, slice_cstr(u), t);
	}
	struct net_addr same64, other64;
	net_addr_parse("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", 0, &same64);
	net_addr_parse("[2001:db8:1:3::1]:5060", 0, &other64);
	assert_int_equal(auth_fail_blocked(c.a, &same64, SLICE_LIT("x"), t), 10);
	assert_int_equal(auth_fail_blocked(c.a, &other64, SLICE_LIT("x"), t), 0);
	ctx_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc7616_vectors),
	    cmocka_unit_test(test_sha512_256_cross_check),
	    cmocka_unit_test(test_alg_names),
	    cmocka_unit_test(test_digest_parse),
	    cmocka_unit_test(test_nonce),
	    cmocka_unit_test(test_nc_replay_and_bound),
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_limiter_backoff),
	    cmocka_unit_test(test_limiter_bound),
	    cmocka_unit_test(test_algorithms_offered),
	    cmocka_unit_test(test_limiter_user_backoff_narrow),
	    cmocka_unit_test(test_limiter_ipv6_by_64),
	};
	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
