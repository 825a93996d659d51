/* TURN methods: long-term credentials, Allocate, Refresh, CreatePermission, ChannelBind, Send,
 * ChannelData. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "turn_int.h"

#define MAX_UNKNOWN 8

/* One request being answered. */
struct req {
	struct turn *t;
	const struct turn_src *s;
	struct stun_msg m;
	uint64_t now;
	bool fp;		/* the request had FINGERPRINT: so does the answer */
	struct turn_alloc *own; /* the 5-tuple's allocation, if any, when it came */
	/* set by authenticate() */
	char user[TURN_USER_MAX], quota[TURN_USER_MAX];
	uint8_t key[32];
	size_t keylen;
	bool sha256;
	uint16_t alg;	    /* the key's STUN_PWALG_* */
	struct slice nonce; /* verified */
	bool cached;	    /* the nonce is own's cached one: key from own->kc */
};

/* What our 401s and 438s offer (RFC 8489 9.2.4: a later request must echo
 * exactly this), most preferred first. */
static const uint16_t offered_algs[] = {STUN_PWALG_SHA256, STUN_PWALG_MD5};

static void send_reply(struct req *r)
{
	turn_send_client(r->t, r->s, r->t->tx.data, r->t->tx.len);
}

static void finish(struct req *r, struct stun_enc *e, bool integrity)
{
	if (integrity) {
		if (r->sha256)
			stun_enc_integrity_sha256(e, r->key, r->keylen);
		else
			stun_enc_integrity(e, r->key, r->keylen);
	}
	if (r->fp)
		stun_enc_fingerprint(e);
	if (stun_enc_end(e) == 0)
		send_reply(r);
}

/* An error answer. Before credentials verified (integrity false) it is small
 * and carries nothing but what the client needs to go on. */
static void error_reply(struct req *r, uint16_t code, bool integrity)
{
	struct turn *t = r->t;
	buf_reset(&t->tx);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &t->tx, &r->m, STUN_CLASS_ERROR);
	stun_enc_error(&e, code, "");
	if (code == STUN_ERR_UNAUTHORIZED || code == STUN_ERR_STALE_NONCE) {
		char nonce[TURN_NONCE_LEN + 1];
		turn_nonce_make(t->nonce_key, t->cf.realm, &r->s->client, time_wall_s(), nonce);
		stun_enc_str(&e, STUN_ATTR_REALM, slice_cstr(t->cf.realm));
		stun_enc_str(&e, STUN_ATTR_NONCE, slice_cstr(nonce));
		stun_enc_pwalgs(&e, offered_algs, ARRAY_SIZE(offered_algs));
	}
	turn_count_error(code);
	char c[NET_ADDR_STRLEN];
	LOG_D("turn", "%s from %s:%s: %u", stun_method_name(r->m.method),
	      net_transport_name(r->s->tp), net_addr_fmt(&r->s->client, c, sizeof c), code);
	finish(r, &e, integrity);
}

static void unknown_reply(struct req *r, const uint16_t *unk, size_t n)
{
	struct turn *t = r->t;
	buf_reset(&t->tx);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &t->tx, &r->m, STUN_CLASS_ERROR);
	stun_enc_error(&e, STUN_ERR_UNKNOWN_ATTRIBUTE, "");
	stun_enc_unknown(&e, unk, n);
	turn_count_error(STUN_ERR_UNKNOWN_ATTRIBUTE);
	finish(r, &e, true);
}

static int hex_key(const char *hex, uint8_t *out, size_t *outlen)
{
	size_t n = strlen(hex);
	if (n == 0 || n > 64 || (n & 1))
		return ENOENT;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = hex[2 * i + (size_t)k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return ENOENT;
		}
		out[i] = (uint8_t)v;
	}
	*outlen = n / 2;
	return 0;
}

/* The key for user under alg: the shared secret's, or the store's HA1 (which
 * is the long-term key itself: H(user:realm:password)). 0 or ENOENT. */
static int user_key(struct req *r, uint16_t alg)
{
	struct turn *t = r->t;
	struct slice u = slice_cstr(r->user);
	struct slice realm = slice_cstr(t->cf.realm);
	int64_t expiry;
	bool secret = t->cf.secret[0] && turn_secret_expiry(u, &expiry) == 0;
	if (secret && expiry < time_wall_s())
		return ENOENT; /* coturn: an expired username is a wrong one */
	if (r->cached && r->own->kc.alg == alg && strcmp(r->own->user, r->user) == 0) {
		memcpy(r->key, r->own->kc.key, r->own->kc.keylen);
		r->keylen = r->own->kc.keylen;
		snprintf(r->quota, sizeof r->quota, "%s", r->own->quota);
		return 0;
	}
	r->cached = false;
	snprintf(r->quota, sizeof r->quota, "%s", r->user);
	if (secret) {
		char pw[29];
		if (turn_secret_password(slice_cstr(t->cf.secret), u, pw))
			return ENOENT;
		size_t colon = slice_find(u, ':');
		if (colon < u.l)
			snprintf(r->quota, sizeof r->quota, "%s", r->user + colon + 1);
		return stun_key_long_term((enum stun_pwalg)alg, u, realm, slice_cstr(pw), r->key,
					  &r->keylen)
			   ? ENOENT
			   : 0;
	}
	struct store_cred_entry ce;
	if (!t->creds || store_cred_lookup(t->creds, u, realm, &ce))
		return ENOENT;
	const char *hex =
	    alg == STUN_PWALG_SHA256 ? ce.ha1[STORE_CRED_SHA256] : ce.ha1[STORE_CRED_MD5];
	return hex_key(hex, r->key, &r->keylen);
}

/* Keeps r's verified nonce and key on a (its user's). */
static void keycache_fill(const struct req *r, struct turn_alloc *a)
{
	int64_t issued;
	if (r->nonce.l != TURN_NONCE_LEN || r->keylen > sizeof a->kc.key ||
	    turn_nonce_issued(r->nonce, &issued)) {
		a->kc.alg = 0;
		return;
	}
	memcpy(a->kc.nonce, r->nonce.p, TURN_NONCE_LEN);
	a->kc.issued = issued;
	a->kc.alg = r->alg;
	memcpy(a->kc.key, r->key, r->keylen);
	a->kc.keylen = (uint8_t)r->keylen;
}

/* RFC 8489 9.2.4. 0 when the request's credentials verify (r's user and key
 * set); otherwise the answer was sent (or the request dropped) and -1. */
static int authenticate(struct req *r)
{
	struct turn *t = r->t;
	const struct stun_msg *m = &r->m;
	if (m->mi < 0 && m->mi256 < 0) {
		error_reply(r, STUN_ERR_UNAUTHORIZED, false);
		return -1;
	}
	const struct stun_attr *ua = stun_msg_attr(m, STUN_ATTR_USERNAME);
	const struct stun_attr *uh = stun_msg_attr(m, STUN_ATTR_USERHASH);
	const struct stun_attr *ra = stun_msg_attr(m, STUN_ATTR_REALM);
	const struct stun_attr *na = stun_msg_attr(m, STUN_ATTR_NONCE);
	if ((!ua && !uh) || !ra || !na || (uh && uh->len != 32) ||
	    (ua && ua->len >= TURN_USER_MAX)) {
		error_reply(r, STUN_ERR_BAD_REQUEST, false);
		return -1;
	}
	/* the allocation's cached nonce passed the MAC already (for this
	 * source: the 5-tuple's); only its age is left to check */
	r->nonce = stun_attr_slice(na);
	r->cached = r->own && r->own->kc.alg && r->nonce.l == TURN_NONCE_LEN &&
		    memcmp(r->own->kc.nonce, r->nonce.p, TURN_NONCE_LEN) == 0;
	int err = r->cached
		      ? (time_wall_s() - r->own->kc.issued > t->cf.nonce_lifetime ? ETIMEDOUT : 0)
		      : turn_nonce_check(t->nonce_key, t->cf.realm, &r->s->client, r->nonce,
					 time_wall_s(), t->cf.nonce_lifetime);
	if (err) {
		if (r->own)
			r->own->kc.alg = 0; /* stale: the next nonce is checked whole */
		error_reply(r, STUN_ERR_STALE_NONCE, false);
		return -1;
	}
	/* RFC 8489 9.2.4: the algorithm, and that the offer came back unchanged
	 * (a bid-down to MD5 in transit shows here) */
	uint16_t alg = STUN_PWALG_MD5;
	const struct stun_attr *pa = stun_msg_attr(m, STUN_ATTR_PASSWORD_ALGORITHM);
	const struct stun_attr *pl = stun_msg_attr(m, STUN_ATTR_PASSWORD_ALGORITHMS);
	if (pa || pl) {
		uint8_t want[4 * ARRAY_SIZE(offered_algs)];
		for (size_t i = 0; i < ARRAY_SIZE(offered_algs); i++) {
			want[4 * i] = (uint8_t)(offered_algs[i] >> 8);
			want[4 * i + 1] = (uint8_t)offered_algs[i];
			want[4 * i + 2] = want[4 * i + 3] = 0;
		}
		if (!pa || !pl || pa->len < 4 || pl->len != sizeof want ||
		    memcmp(pl->v, want, sizeof want) != 0) {
			error_reply(r, STUN_ERR_BAD_REQUEST, false);
			return -1;
		}
		alg = (uint16_t)(pa->v[0] << 8 | pa->v[1]);
		if (alg != STUN_PWALG_MD5 && alg != STUN_PWALG_SHA256) {
			error_reply(r, STUN_ERR_BAD_REQUEST, false);
			return -1;
		}
	}
	if (!slice_eq(stun_attr_slice(ra), slice_cstr(t->cf.realm))) {
		metric_inc(&turn_m_auth_fail);
		error_reply(r, STUN_ERR_UNAUTHORIZED, false);
		return -1;
	}
	r->user[0] = '\0';
	if (ua) {
		slice_to_cstr(stun_attr_slice(ua), r->user, sizeof r->user);
		if (strlen(r->user) != ua->len)
			r->user[0] = '\0'; /* a NUL inside: no such user */
	} else if (turn_userhash_find(t, uh->v, r->now, r->user, sizeof r->user)) {
		r->user[0] = '\0';
	}
	r->alg = alg;
	if (!r->user[0] || user_key(r, alg)) {
		metric_inc(&turn_m_auth_fail);
		error_reply(r, STUN_ERR_UNAUTHORIZED, false);
		return -1;
	}
	r->sha256 = m->mi256 >= 0;
	err = r->sha256 ? stun_msg_check_integrity_sha256(m, r->key, r->keylen)
			: stun_msg_check_integrity(m, r->key, r->keylen);
	if (err) {
		metric_inc(&turn_m_auth_fail);
		error_reply(r, STUN_ERR_UNAUTHORIZED, false);
		return -1;
	}
	if (r->cached)
		metric_inc(&turn_m_auth_cached);
	else if (r->own && strcmp(r->own->user, r->user) == 0)
		keycache_fill(r, r->own);
	return 0;
}

/* A peer the filter lets through, or another allocation's relayed address
 * (on any thread: the shared index, under its lock, so asked second). gen:
 * the index's generation when it was the latter, else 0. */
static bool peer_ok(struct turn *t, const struct net_addr *peer, uint64_t *gen)
{
	*gen = 0;
	if (turn_peer_check(&t->filter, peer) == TURN_PEER_OK)
		return true;
	if (turn_relay_known(t, peer, gen))
		return true;
	*gen = 0;
	metric_inc(&turn_m_denied_peer);
	char b[NET_ADDR_STRLEN];
	LOG_D("turn", "peer %s denied", net_addr_fmt(peer, b, sizeof b));
	return false;
}

static uint32_t lifetime_for(const struct turn *t, const struct stun_msg *m)
{
	uint32_t want = t->cf.lifetime_default;
	const struct stun_attr *la = stun_msg_attr(m, STUN_ATTR_LIFETIME);
	if (la)
		stun_attr_u32(la, &want);
	if (want == 0)
		return 0;
	/* RFC 8656 7.2: min(asked, max), never below the default */
	want = MIN(want, t->cf.lifetime_max);
	return MAX(want, t->cf.lifetime_default);
}

static void alloc_success(struct req *r, struct turn_alloc *a, const uint8_t *token, int v6_error)
{
	struct turn *t = r->t;
	buf_reset(&t->tx);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &t->tx, &r->m, STUN_CLASS_SUCCESS);
	for (unsigned f = 0; f < 2; f++)
		if (a->relay[f].sk.fd >= 0)
			stun_enc_addr(&e, STUN_ATTR_XOR_RELAYED_ADDRESS, &a->relay[f].addr.u.sa);
	if (v6_error)
		stun_enc_address_error(&e, STUN_FAMILY_IPV6, (uint16_t)v6_error);
	uint64_t left = a->expire_ms > r->now ? (a->expire_ms - r->now + 999) / 1000 : 0;
	stun_enc_u32(&e, STUN_ATTR_LIFETIME, (uint32_t)left);
	if (token)
		stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, token, 8);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &r->s->client.u.sa);
	finish(r, &e, true);
}

static void do_allocate(struct req *r)
{
	struct turn *t = r->t;
	const struct stun_msg *m = &r->m;
	struct turn_alloc *a = turn_alloc_find(t, r->s->tp, r->s->li, &r->s->client, r->s->conn);
	if (a) {
		/* RFC 8656 7.2: a retransmission gets the same answer */
		if (memcmp(a->tid, m->tid, STUN_TID_LEN) == 0 && strcmp(a->user, r->user) == 0)
			alloc_success(r, a, NULL, 0);
		else
			error_reply(r, STUN_ERR_ALLOCATION_MISMATCH, true);
		return;
	}
	const struct stun_attr *tr = stun_msg_attr(m, STUN_ATTR_REQUESTED_TRANSPORT);
	uint8_t proto;
	if (!tr || stun_attr_transport(tr, &proto)) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	if (proto != STUN_PROTO_UDP) { /* RFC 6062 TCP allocations: not done */
		error_reply(r, STUN_ERR_UNSUPPORTED_TRANSPORT, true);
		return;
	}
	const struct stun_attr *rt = stun_msg_attr(m, STUN_ATTR_RESERVATION_TOKEN);
	const struct stun_attr *ev = stun_msg_attr(m, STUN_ATTR_EVEN_PORT);
	const struct stun_attr *rf = stun_msg_attr(m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
	const struct stun_attr *af = stun_msg_attr(m, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY);
	bool reserve = false;
	uint8_t fam = STUN_FAMILY_IPV4, addfam = 0;
	if ((rt && (ev || rf || af || rt->len != 8)) || (ev && stun_attr_even_port(ev, &reserve)) ||
	    (rf && (af || stun_attr_family(rf, &fam))) ||
	    (af && (stun_attr_family(af, &addfam) || addfam != STUN_FAMILY_IPV6))) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	if (reserve && (fam != STUN_FAMILY_IPV4 || addfam)) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	uint32_t life = lifetime_for(t, m);
	if (life == 0)
		life = t->cf.lifetime_default;
	if (turn_alloc_new(t, &a)) {
		error_reply(r, STUN_ERR_SERVER_ERROR, true);
		return;
	}
	/* counted over every thread: a user's clients hash to any of them */
	uint16_t qerr = turn_quota_take(t, a, r->quota);
	if (qerr) {
		turn_alloc_delete(t, a, NULL);
		error_reply(r, qerr, true);
		return;
	}
	a->tp = r->s->tp;
	a->li = r->s->li;
	a->client = r->s->client;
	a->conn = r->s->conn;
	snprintf(a->user, sizeof a->user, "%s", r->user);
	memcpy(a->tid, m->tid, STUN_TID_LEN);
	keycache_fill(r, a);
	a->created_ms = a->bw_last_ms = r->now;
	a->expire_ms = r->now + (uint64_t)life * 1000;
	a->dont_fragment = stun_msg_attr(m, STUN_ATTR_DONT_FRAGMENT) != NULL;
	uint8_t token[8];
	int err = 0, v6_error = 0;
	if (rt) {
		err = turn_relay_take(t, a, rt->v) ? EADDRNOTAVAIL : 0;
	} else {
		unsigned f = fam == STUN_FAMILY_IPV6 ? 1 : 0;
		err = turn_relay_open(t, a, f, ev != NULL, reserve, token);
		if (!err && addfam) {
			int e6 = turn_relay_open(t, a, 1, false, false, NULL);
			if (e6) /* RFC 8656 7.2: the IPv4 one stands, the IPv6 one says why */
				v6_error = e6 == EAFNOSUPPORT ? STUN_ERR_ADDRESS_FAMILY
							      : STUN_ERR_CAPACITY;
		}
	}
	if (err) {
		turn_alloc_delete(t, a, NULL);
		error_reply(r, err == EAFNOSUPPORT ? STUN_ERR_ADDRESS_FAMILY : STUN_ERR_CAPACITY,
			    true);
		return;
	}
	if (a->dont_fragment)
		for (unsigned f = 0; f < 2; f++)
			if (a->relay[f].sk.fd >= 0) {
				int v = IP_PMTUDISC_DO;
				if (f == 0)
					setsockopt(a->relay[f].sk.fd, IPPROTO_IP, IP_MTU_DISCOVER,
						   &v, sizeof v);
				else
					setsockopt(a->relay[f].sk.fd, IPPROTO_IPV6,
						   IPV6_MTU_DISCOVER, &v, sizeof v);
			}
	turn_alloc_link(t, a);
	char c[NET_ADDR_STRLEN], rl[NET_ADDR_STRLEN];
	LOG_I("turn", "allocation %llu for %s from %s:%s relayed at %s, %u s",
	      (unsigned long long)a->id, a->user, net_transport_name(a->tp),
	      net_addr_fmt(&a->client, c, sizeof c),
	      net_addr_fmt(&a->relay[a->relay[0].sk.fd >= 0 ? 0 : 1].addr, rl, sizeof rl), life);
	alloc_success(r, a, reserve ? token : NULL, v6_error);
}

/* The 5-tuple's allocation, under the same credentials (RFC 8656 5: 441). */
static struct turn_alloc *own_alloc(struct req *r)
{
	struct turn *t = r->t;
	struct turn_alloc *a = turn_alloc_find(t, r->s->tp, r->s->li, &r->s->client, r->s->conn);
	if (!a) {
		error_reply(r, STUN_ERR_ALLOCATION_MISMATCH, true);
		return NULL;
	}
	if (strcmp(a->user, r->user) != 0) {
		error_reply(r, STUN_ERR_WRONG_CREDENTIALS, true);
		return NULL;
	}
	return a;
}

static void simple_success(struct req *r, uint32_t lifetime, bool with_lifetime)
{
	struct turn *t = r->t;
	buf_reset(&t->tx);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &t->tx, &r->m, STUN_CLASS_SUCCESS);
	if (with_lifetime)
		stun_enc_u32(&e, STUN_ATTR_LIFETIME, lifetime);
	finish(r, &e, true);
}

static void do_refresh(struct req *r)
{
	struct turn *t = r->t;
	struct turn_alloc *a = own_alloc(r);
	if (!a)
		return;
	const struct stun_attr *rf = stun_msg_attr(&r->m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
	uint8_t fam;
	if (rf) {
		if (stun_attr_family(rf, &fam)) {
			error_reply(r, STUN_ERR_BAD_REQUEST, true);
			return;
		}
		if (a->relay[fam == STUN_FAMILY_IPV6 ? 1 : 0].sk.fd < 0) {
			error_reply(r, STUN_ERR_PEER_FAMILY_MISMATCH, true);
			return;
		}
	}
	uint32_t life = lifetime_for(t, &r->m);
	if (life == 0) {
		struct turn_conn *c = a->conn;
		turn_alloc_delete(t, a, "deleted by its client");
		(void)c; /* the connection stays: the client may allocate again on it */
		simple_success(r, 0, true);
		return;
	}
	a->expire_ms = r->now + (uint64_t)life * 1000;
	simple_success(r, life, true);
}

/* Decodes a peer address and checks the allocation has that family (443). */
static int peer_of(struct req *r, struct turn_alloc *a, const struct stun_attr *pa,
		   struct net_addr *peer)
{
	if (stun_attr_addr(&r->m, pa, &peer->u.ss)) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return -1;
	}
	struct net_addr v4;
	if (turn_peer_embedded_v4(peer, &v4) && a->relay[0].sk.fd >= 0 &&
	    ((const uint8_t *)&peer->u.in6.sin6_addr)[10] == 0xff)
		*peer = v4; /* ::ffff:a.b.c.d is the IPv4 peer it names */
	if (a->relay[turn_fam_index(peer)].sk.fd < 0) {
		error_reply(r, STUN_ERR_PEER_FAMILY_MISMATCH, true);
		return -1;
	}
	uint64_t gen;
	if (!peer_ok(r->t, peer, &gen)) {
		error_reply(r, STUN_ERR_FORBIDDEN, true);
		return -1;
	}
	return 0;
}

static void add_perm(struct turn_alloc *a, const struct net_addr *peer, uint64_t now)
{
	struct turn_perm *p = turn_perm_find(a, peer, now);
	if (!p) {
		/* an expired slot is reused before the sweep gets to it */
		for (size_t i = 0; i < a->nperm && !p; i++)
			if (a->perms[i].expire_ms <= now)
				p = &a->perms[i];
		if (!p) {
			p = &a->perms[a->nperm++];
			metric_inc(&turn_m_perms);
		}
		p->ip = *peer;
		net_addr_set_port(&p->ip, 0);
	}
	p->expire_ms = now + TURN_PERM_S * 1000ull;
}

static size_t live_perms(const struct turn_alloc *a, uint64_t now)
{
	size_t n = 0;
	for (size_t i = 0; i < a->nperm; i++)
		n += a->perms[i].expire_ms > now;
	return n;
}

static void do_create_permission(struct req *r)
{
	struct turn *t = r->t;
	struct turn_alloc *a = own_alloc(r);
	if (!a)
		return;
	struct net_addr peers[STUN_MAX_ATTRS];
	size_t n = 0, fresh = 0;
	for (size_t i = 0; i < r->m.nattr; i++) {
		if (r->m.attr[i].type != STUN_ATTR_XOR_PEER_ADDRESS)
			continue;
		if (peer_of(r, a, &r->m.attr[i], &peers[n]))
			return; /* RFC 8656 9.2: all or none */
		bool dup = turn_perm_find(a, &peers[n], r->now) != NULL;
		for (size_t k = 0; k < n && !dup; k++)
			dup = net_addr_ip_eq(&peers[k], &peers[n]);
		fresh += !dup;
		n++;
	}
	if (!n) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	if (live_perms(a, r->now) + fresh > t->cf.max_perms) {
		error_reply(r, STUN_ERR_CAPACITY, true);
		return;
	}
	if (turn_perms_reserve(a, a->nperm + fresh)) {
		error_reply(r, STUN_ERR_SERVER_ERROR, true);
		return;
	}
	for (size_t i = 0; i < n; i++)
		add_perm(a, &peers[i], r->now);
	turn_fast_sync(t, a, r->now);
	simple_success(r, 0, false);
}

static void do_channel_bind(struct req *r)
{
	struct turn *t = r->t;
	struct turn_alloc *a = own_alloc(r);
	if (!a)
		return;
	const struct stun_attr *ca = stun_msg_attr(&r->m, STUN_ATTR_CHANNEL_NUMBER);
	const struct stun_attr *pa = stun_msg_attr(&r->m, STUN_ATTR_XOR_PEER_ADDRESS);
	uint16_t num;
	if (!ca || !pa || stun_attr_channel(ca, &num) || num < STUN_CHAN_MIN ||
	    num > STUN_CHAN_MAX_5766) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	struct net_addr peer;
	if (peer_of(r, a, pa, &peer))
		return;
	struct turn_chan *byn = turn_chan_held_num(a, num, r->now);
	struct turn_chan *byp = turn_chan_held_peer(a, &peer, r->now);
	/* RFC 8656 11.2: a number bound to another peer, or the peer to another
	 * number; 12: also while the old binding is held after it expired */
	if (byn != byp) {
		error_reply(r, STUN_ERR_BAD_REQUEST, true);
		return;
	}
	/* the binding installs the permission too: within the bound, also when
	 * a live channel's permission expired (300 s against 600) and the
	 * client filled the table with others meanwhile */
	bool new_perm = turn_perm_find(a, &peer, r->now) == NULL;
	if (new_perm && live_perms(a, r->now) >= t->cf.max_perms) {
		error_reply(r, STUN_ERR_CAPACITY, true);
		return;
	}
	if (new_perm && turn_perms_reserve(a, a->nperm + 1)) {
		error_reply(r, STUN_ERR_SERVER_ERROR, true);
		return;
	}
	if (!byn) {
		size_t slot = a->nchan;
		for (size_t i = 0; i < a->nchan; i++)
			if (turn_chan_free(&a->chans[i], r->now)) {
				slot = i;
				break;
			}
		if (slot == a->nchan && a->nchan >= t->cf.max_chans) {
			error_reply(r, STUN_ERR_CAPACITY, true);
			return;
		}
		if (turn_chans_reserve(a, a->nchan + 1)) {
			error_reply(r, STUN_ERR_SERVER_ERROR, true);
			return;
		}
		byn = &a->chans[slot];
		if (slot == a->nchan) {
			a->nchan++;
			byn->fast = false;
			byn->held = true; /* counted below */
		} else {
			turn_fast_chan_drop(t, a, byn); /* a reused slot: its old entries go */
		}
		byn->num = num;
		byn->peer = peer;
		byn->relay_gen = 0; /* checked again at its first ChannelData */
		byn->filter_gen = 0;
	} else if (byn->expire_ms <= r->now) { /* a held pair bound again */
		byn->relay_gen = 0;
		byn->filter_gen = 0;
	}
	if (byn->held) { /* new, or back from expiry: live again */
		byn->held = false;
		metric_inc(&turn_m_chans);
	}
	byn->expire_ms = r->now + TURN_CHANNEL_S * 1000ull;
	add_perm(a, &peer, r->now); /* RFC 8656 11.2: binding installs or refreshes it */
	turn_fast_sync(t, a, r->now);
	simple_success(r, 0, false);
}

/* Sends data from a's relay to peer, within a's budget. */
static void to_peer(struct turn *t, struct turn_alloc *a, const struct net_addr *peer,
		    const uint8_t *p, size_t len, bool df, uint64_t now)
{
	unsigned f = turn_fam_index(peer);
	int fd = a->relay[f].sk.fd;
	if (fd < 0) {
		metric_inc(&turn_m_drop_bad);
		return;
	}
	if (!turn_bw_take(t, a, len, now)) /* counted by cause */
		return;
	bool flip = df && !a->dont_fragment && f == 0;
	int v = IP_PMTUDISC_DO;
	if (flip)
		setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
	if (sendto(fd, p, len, MSG_DONTWAIT, &peer->u.sa, net_addr_len(peer)) >= 0) {
		a->tx_bytes += (int64_t)len;
		a->tx_pkts++;
		metric_add(&turn_m_to_peer_bytes, (int64_t)len);
		metric_inc(&turn_m_to_peer_pkts);
	}
	if (flip) {
		v = IP_PMTUDISC_DONT;
		setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
	}
}

/* RFC 8656 10.2: a Send indication, unauthenticated, for the 5-tuple's own
 * allocation, to a peer with a permission; anything else is dropped. */
static void do_send(struct turn *t, const struct turn_src *s, const struct stun_msg *m,
		    uint64_t now)
{
	struct turn_alloc *a = turn_alloc_find(t, s->tp, s->li, &s->client, s->conn);
	const struct stun_attr *pa = stun_msg_attr(m, STUN_ATTR_XOR_PEER_ADDRESS);
	const struct stun_attr *da = stun_msg_attr(m, STUN_ATTR_DATA);
	struct net_addr peer;
	if (!a || !pa || !da || stun_attr_addr(m, pa, &peer.u.ss)) {
		metric_inc(&turn_m_drop_bad);
		return;
	}
	struct net_addr v4;
	if (turn_peer_embedded_v4(&peer, &v4) && peer.u.in6.sin6_addr.s6_addr[10] == 0xff)
		peer = v4;
	if (!turn_perm_find(a, &peer, now)) {
		metric_inc(&turn_m_drop_noperm);
		return;
	}
	uint64_t gen;
	if (!peer_ok(t, &peer, &gen))
		return;
	to_peer(t, a, &peer, da->v, da->len, stun_msg_attr(m, STUN_ATTR_DONT_FRAGMENT) != NULL,
		now);
}

static void do_channel_data(struct turn *t, const struct turn_src *s, const uint8_t *p, size_t len,
			    uint64_t now)
{
	uint16_t num;
	const uint8_t *data;
	size_t dlen;
	struct turn_alloc *a = turn_alloc_find(t, s->tp, s->li, &s->client, s->conn);
	if (!a || stun_chan_decode(p, len, &num, &data, &dlen)) {
		metric_inc(&turn_m_drop_bad);
		return;
	}
	struct turn_chan *ch = turn_chan_by_num(a, num, now);
	if (!ch || !turn_perm_find(a, &ch->peer, now)) {
		metric_inc(&turn_m_drop_noperm);
		return;
	}
	/* the filter again: a peer let through as another allocation's relayed
	 * address stops being one when that allocation goes, and one of the
	 * host's addresses may be added. Its verdict stands while neither
	 * moved (the allow and deny lists are fixed at start): the filter is
	 * asked once per channel and change, the shared index's lock taken once
	 * per channel while no relayed address left it since, not per packet */
	uint64_t fg = (t->filter.host ? net_hostaddrs_gen(t->filter.host) : 0) + 1;
	if (ch->filter_gen != fg &&
	    (!ch->relay_gen ||
	     ch->relay_gen != atomic_load_explicit(&t->sh->relay_gen, memory_order_acquire))) {
		if (!peer_ok(t, &ch->peer, &ch->relay_gen)) {
			ch->filter_gen = 0;
			return;
		}
		ch->filter_gen = ch->relay_gen ? 0 : fg;
	}
	to_peer(t, a, &ch->peer, data, dlen, false, now);
}

/* RFC 8489 6.3.1: comprehension-required attributes this role does not act
 * on (the codec knows more, such as CHANGE-REQUEST: here it would be ignored,
 * so it is refused) -> 420. */
static size_t unknown_attrs(const struct stun_msg *m, uint16_t out[MAX_UNKNOWN])
{
	static const uint16_t understood[] = {
	    STUN_ATTR_USERNAME,
	    STUN_ATTR_MESSAGE_INTEGRITY,
	    STUN_ATTR_MESSAGE_INTEGRITY_SHA256,
	    STUN_ATTR_REALM,
	    STUN_ATTR_NONCE,
	    STUN_ATTR_PASSWORD_ALGORITHM,
	    STUN_ATTR_USERHASH,
	    STUN_ATTR_CHANNEL_NUMBER,
	    STUN_ATTR_LIFETIME,
	    STUN_ATTR_XOR_PEER_ADDRESS,
	    STUN_ATTR_DATA,
	    STUN_ATTR_REQUESTED_ADDRESS_FAMILY,
	    STUN_ATTR_EVEN_PORT,
	    STUN_ATTR_REQUESTED_TRANSPORT,
	    STUN_ATTR_DONT_FRAGMENT,
	    STUN_ATTR_RESERVATION_TOKEN,
	};
	size_t n = 0;
	for (size_t i = 0; i < m->nattr && n < MAX_UNKNOWN; i++) {
		uint16_t t = m->attr[i].type;
		bool known = t >= 0x8000;
		for (size_t k = 0; k < ARRAY_SIZE(understood) && !known; k++)
			known = understood[k] == t;
		for (size_t k = 0; k < n && !known; k++)
			known = out[k] == t; /* listed once */
		if (!known)
			out[n++] = t;
	}
	return n;
}

void turn_client_packet(struct turn *t, const struct turn_src *s, const uint8_t *p, size_t len,
			uint64_t now)
{
	if (stun_is_channel_data(p, len)) {
		do_channel_data(t, s, p, len, now);
		return;
	}
	struct req r = {.t = t, .s = s, .now = now};
	if (!stun_is_message(p, len)) {
		metric_inc(&turn_m_drop_bad);
		return;
	}
	int err = stun_msg_decode(&r.m, p, len);
	if (!err && r.m.fp >= 0 && stun_msg_check_fingerprint(&r.m))
		err = EACCES; /* RFC 8489 7.3: not STUN after all */
	if (err || r.m.cls == STUN_CLASS_SUCCESS || r.m.cls == STUN_CLASS_ERROR) {
		metric_inc(&turn_m_drop_bad);
		return;
	}
	if (r.m.cls == STUN_CLASS_INDICATION) {
		if (r.m.method == STUN_METHOD_SEND)
			do_send(t, s, &r.m, now);
		else
			metric_inc(&turn_m_drop_bad);
		return;
	}
	/* requests: within a budget. A 5-tuple with an allocation spends its
	 * own (a busy NAT address with many clients does not starve them); a
	 * TCP connection its own (its source cannot be forged; connections per
	 * address are bounded); any other UDP source its address's, shared with
	 * every port of it (the reflection guard, as STUN's). */
	struct turn_alloc *own = turn_alloc_find(t, s->tp, s->li, &s->client, s->conn);
	r.own = own;
	bool ok = own	    ? turn_budget_take(t, &own->rq, now)
		  : s->conn ? turn_budget_take(t, &s->conn->rq, now)
			    : stund_limiter_allow(&t->sh->lim, &s->client.u.sa, now);
	if (!ok) {
		metric_inc(&turn_m_drop_rate);
		return;
	}
	metric_inc(&turn_m_requests);
	r.fp = r.m.fp >= 0;
	if (r.m.method == STUN_METHOD_BINDING) {
		buf_reset(&t->tx);
		if (stund_answer(&s->client.u.sa, p, len, &t->tx) == 0)
			turn_send_client(t, s, t->tx.data, t->tx.len);
		return;
	}
	if (r.m.method != STUN_METHOD_ALLOCATE && r.m.method != STUN_METHOD_REFRESH &&
	    r.m.method != STUN_METHOD_CREATE_PERMISSION && r.m.method != STUN_METHOD_CHANNEL_BIND) {
		error_reply(&r, STUN_ERR_BAD_REQUEST, false);
		return;
	}
	if (authenticate(&r))
		return;
	uint16_t unk[MAX_UNKNOWN];
	size_t nunk = unknown_attrs(&r.m, unk);
	if (nunk) {
		unknown_reply(&r, unk, nunk);
		return;
	}
	switch (r.m.method) {
	case STUN_METHOD_ALLOCATE:
		do_allocate(&r);
		break;
	case STUN_METHOD_REFRESH:
		do_refresh(&r);
		break;
	case STUN_METHOD_CREATE_PERMISSION:
		do_create_permission(&r);
		break;
	case STUN_METHOD_CHANNEL_BIND:
		do_channel_bind(&r);
		break;
	}
}

static void count_to_client(struct turn_alloc *a, size_t len)
{
	a->rx_bytes += (int64_t)len;
	a->rx_pkts++;
	metric_add(&turn_m_from_peer_bytes, (int64_t)len);
	metric_inc(&turn_m_from_peer_pkts);
}

void turn_peer_packet(struct turn *t, struct turn_alloc *a, unsigned fam,
		      const struct net_addr *peer, const uint8_t *p, size_t len, uint64_t now)
{
	(void)fam;
	if (!turn_perm_find(a, peer, now)) {
		metric_inc(&turn_m_drop_noperm);
		return;
	}
	if (!turn_bw_take(t, a, len, now)) /* counted by cause */
		return;
	struct turn_src s = {a->tp, a->li, a->client, a->conn};
	struct turn_chan *ch = turn_chan_by_peer(a, peer, now);
	uint8_t *d;
	if (ch && len <= 0xffff && (d = turn_txq_reserve(t, &s, STUN_CHAN_HDR + len))) {
		/* UDP (unpadded): written straight into the send queue */
		stun_chan_header(d, ch->num, (uint16_t)len);
		memcpy(d + STUN_CHAN_HDR, p, len);
		count_to_client(a, len);
		return;
	}
	buf_reset(&t->tx);
	if (ch && len <= 0xffff) {
		uint8_t hdr[STUN_CHAN_HDR];
		static const uint8_t zero[3];
		stun_chan_header(hdr, ch->num, (uint16_t)len);
		buf_append(&t->tx, hdr, sizeof hdr);
		buf_append(&t->tx, p, len);
		if (a->tp != NET_UDP) /* RFC 8656 12.5: padded on streams */
			buf_append(&t->tx, zero, stun_chan_pad(len));
	} else {
		struct stun_enc e;
		stun_enc_begin(&e, &t->tx, STUN_METHOD_DATA, STUN_CLASS_INDICATION, NULL);
		stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer->u.sa);
		stun_enc_attr(&e, STUN_ATTR_DATA, p, len);
		if (stun_enc_end(&e)) {
			metric_inc(&turn_m_drop_bad);
			return;
		}
	}
	if (t->tx.failed)
		return;
	count_to_client(a, len);
	turn_send_client(t, &s, t->tx.data, t->tx.len);
}
