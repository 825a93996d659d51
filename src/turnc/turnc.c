/* turnc: the TURN client state machine (RFC 8656 with RFC 8489 long-term credentials). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stun/stun.h"
#include "turnc.h"

#define STALE_MAX 3 /* 438 answers taken per request before giving up */

enum tsx_kind { TSX_ALLOCATE, TSX_REFRESH, TSX_PERMIT, TSX_BIND, TSX_DEALLOC };

/* One request in flight. */
struct tsx {
	bool used;
	enum tsx_kind kind;
	uint8_t tid[STUN_TID_LEN];
	int peer;    /* index into peers for PERMIT/BIND, else -1 */
	bool authed; /* carried credentials */
	unsigned tries, stale;
	uint64_t next_ms;
	uint64_t rto_ms;
	struct buf req;
};

struct peer {
	bool used;
	struct net_addr addr; /* IP (and port when a channel is asked) */
	bool perm_asked, perm_ok;
	uint64_t perm_refresh_ms;
	uint16_t chan; /* 0 = none asked */
	bool chan_ok;
	uint64_t chan_refresh_ms;
};

struct turnc {
	struct turnc_conf cf;
	turnc_send_h *sh;
	turnc_event_h *eh;
	void *arg;
	enum turnc_state st;
	char user[300];
	char pass[300];
	/* from the challenge */
	bool have_creds;
	char realm[256], nonce[512];
	uint16_t algs[8];
	size_t nalgs; /* PASSWORD-ALGORITHMS offered (0 = none: RFC 5389 MD5) */
	uint16_t alg;
	uint8_t key[32];
	size_t keylen;
	/* the allocation */
	struct net_addr relayed, mapped;
	uint32_t lifetime;
	uint64_t refresh_ms; /* 0 = none due */
	struct peer peers[TURNC_MAX_PEERS];
	uint16_t next_chan;
	struct tsx tsx[TURNC_MAX_TSX];
	struct buf out; /* ChannelData and indications are built here */
};

static void emit(struct turnc *c, struct turnc_event *ev)
{
	if (c->eh)
		c->eh(ev, c->arg);
}

int turnc_alloc(struct turnc **cp, const struct turnc_conf *cf, turnc_send_h *sh, turnc_event_h *eh,
		void *arg)
{
	if (!cf->secret[0] && (!cf->user[0] || !cf->pass[0]))
		return EINVAL;
	struct turnc *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	c->cf = *cf;
	c->sh = sh;
	c->eh = eh;
	c->arg = arg;
	c->next_chan = STUN_CHAN_MIN;
	buf_init(&c->out);
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		buf_init(&c->tsx[i].req);
	if (cf->secret[0]) {
		/* coturn: username = EXPIRY[:USER], password = base64(HMAC-SHA1) */
		unsigned ttl = cf->secret_ttl_s ? cf->secret_ttl_s : 86400;
		long long exp = (long long)time(NULL) + ttl;
		if (cf->user[0])
			snprintf(c->user, sizeof c->user, "%lld:%s", exp, cf->user);
		else
			snprintf(c->user, sizeof c->user, "%lld", exp);
		char pw[29];
		if (stun_secret_password(slice_cstr(cf->secret), slice_cstr(c->user), pw)) {
			turnc_free(c);
			return EINVAL;
		}
		snprintf(c->pass, sizeof c->pass, "%s", pw);
	} else {
		snprintf(c->user, sizeof c->user, "%s", cf->user);
		snprintf(c->pass, sizeof c->pass, "%s", cf->pass);
	}
	*cp = c;
	return 0;
}

void turnc_free(struct turnc *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		buf_free(&c->tsx[i].req);
	buf_free(&c->out);
	explicit_bzero(c->pass, sizeof c->pass);
	explicit_bzero(c->key, sizeof c->key);
	free(c);
}

/* ---- requests ---- */

static void add_auth(struct turnc *c, struct stun_enc *e)
{
	stun_enc_str(e, STUN_ATTR_USERNAME, slice_cstr(c->user));
	stun_enc_str(e, STUN_ATTR_REALM, slice_cstr(c->realm));
	stun_enc_str(e, STUN_ATTR_NONCE, slice_cstr(c->nonce));
	if (c->nalgs) {
		/* RFC 8489 9.2.4: the offer echoed as it came, and the choice */
		stun_enc_pwalgs(e, c->algs, c->nalgs);
		uint8_t v[4] = {(uint8_t)(c->alg >> 8), (uint8_t)c->alg, 0, 0};
		stun_enc_attr(e, STUN_ATTR_PASSWORD_ALGORITHM, v, sizeof v);
	}
	if (c->alg == STUN_PWALG_SHA256)
		stun_enc_integrity_sha256(e, c->key, c->keylen);
	else
		stun_enc_integrity(e, c->key, c->keylen);
}

static uint16_t kind_method(enum tsx_kind k)
{
	switch (k) {
	case TSX_ALLOCATE:
		return STUN_METHOD_ALLOCATE;
	case TSX_PERMIT:
		return STUN_METHOD_CREATE_PERMISSION;
	case TSX_BIND:
		return STUN_METHOD_CHANNEL_BIND;
	default:
		return STUN_METHOD_REFRESH;
	}
}

/* Encodes t's request afresh (a new transaction id: after a 401 or 438 the
 * request is a new one, RFC 8489 9.2.3). */
static int encode(struct turnc *c, struct tsx *t)
{
	struct stun_enc e;
	buf_reset(&t->req);
	stun_enc_begin(&e, &t->req, kind_method(t->kind), STUN_CLASS_REQUEST, NULL);
	memcpy(t->tid, (const uint8_t *)t->req.data + 8, STUN_TID_LEN);
	struct peer *p = t->peer >= 0 ? &c->peers[t->peer] : NULL;
	switch (t->kind) {
	case TSX_ALLOCATE:
		stun_enc_transport(&e, STUN_PROTO_UDP);
		if (c->cf.lifetime_s)
			stun_enc_u32(&e, STUN_ATTR_LIFETIME, c->cf.lifetime_s);
		break;
	case TSX_REFRESH:
		if (c->cf.lifetime_s)
			stun_enc_u32(&e, STUN_ATTR_LIFETIME, c->cf.lifetime_s);
		break;
	case TSX_DEALLOC:
		stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
		break;
	case TSX_PERMIT:
		stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p->addr.u.sa);
		break;
	case TSX_BIND:
		stun_enc_channel(&e, p->chan);
		stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p->addr.u.sa);
		break;
	}
	t->authed = c->have_creds;
	if (c->have_creds)
		add_auth(c, &e);
	return stun_enc_end(&e);
}

static void tsx_send(struct turnc *c, struct tsx *t, uint64_t now)
{
	t->tries++;
	if (c->sh)
		c->sh(t->req.data, t->req.len, c->arg);
	unsigned max = c->cf.max_tries ? c->cf.max_tries : 7;
	if (c->cf.stream) {
		t->next_ms = now + 39500; /* RFC 8489 6.2.2: Ti */
		t->tries = max;
	} else {
		/* RFC 8489 6.2.1: RTO doubles; after the last send wait Rm = 16 RTO */
		uint64_t rto0 = c->cf.rto_ms ? c->cf.rto_ms : 500;
		t->next_ms = now + (t->tries >= max ? rto0 * 16 : t->rto_ms);
		t->rto_ms *= 2;
	}
}

static void tsx_done(struct tsx *t)
{
	t->used = false;
	buf_reset(&t->req);
}

static struct tsx *tsx_new(struct turnc *c, enum tsx_kind k, int peer)
{
	for (size_t i = 0; i < TURNC_MAX_TSX; i++) {
		struct tsx *t = &c->tsx[i];
		if (t->used)
			continue;
		t->used = true;
		t->kind = k;
		t->peer = peer;
		t->tries = t->stale = 0;
		t->rto_ms = c->cf.rto_ms ? c->cf.rto_ms : 500;
		return t;
	}
	return NULL;
}

static int request(struct turnc *c, enum tsx_kind k, int peer, uint64_t now)
{
	struct tsx *t = tsx_new(c, k, peer);
	if (!t)
		return ENOSPC;
	int err = encode(c, t);
	if (err) {
		tsx_done(t);
		return err;
	}
	tsx_send(c, t, now);
	return 0;
}

int turnc_start(struct turnc *c, uint64_t now_ms)
{
	if (c->st != TURNC_IDLE)
		return EALREADY;
	c->st = TURNC_ALLOCATING;
	return request(c, TSX_ALLOCATE, -1, now_ms);
}

static void fail(struct turnc *c, uint16_t method, uint16_t code, bool auth, const char *detail)
{
	c->st = TURNC_FAILED;
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		tsx_done(&c->tsx[i]);
	c->refresh_ms = 0;
	struct turnc_event ev = {.kind = TURNC_EV_FAILED,
				 .method = method,
				 .code = code,
				 .auth = auth,
				 .detail = detail};
	emit(c, &ev);
}

void turnc_close(struct turnc *c, uint64_t now_ms)
{
	if (c->st == TURNC_CLOSING || c->st == TURNC_CLOSED)
		return;
	bool had = c->st == TURNC_READY;
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		tsx_done(&c->tsx[i]);
	c->refresh_ms = 0;
	if (had && request(c, TSX_DEALLOC, -1, now_ms) == 0) {
		c->st = TURNC_CLOSING;
		return;
	}
	c->st = TURNC_CLOSED;
	struct turnc_event ev = {.kind = TURNC_EV_CLOSED, .method = STUN_METHOD_REFRESH};
	emit(c, &ev);
}

/* ---- peers ---- */

static int peer_find(const struct turnc *c, const struct net_addr *a, bool port)
{
	for (int i = 0; i < TURNC_MAX_PEERS; i++) {
		const struct peer *p = &c->peers[i];
		if (p->used && (port ? net_addr_eq(&p->addr, a) : net_addr_ip_eq(&p->addr, a)))
			return i;
	}
	return -1;
}

static int peer_new(struct turnc *c, const struct net_addr *a)
{
	for (int i = 0; i < TURNC_MAX_PEERS; i++) {
		struct peer *p = &c->peers[i];
		if (p->used)
			continue;
		memset(p, 0, sizeof *p);
		p->used = true;
		p->addr = *a;
		return i;
	}
	return -1;
}

int turnc_permit(struct turnc *c, const struct net_addr *peer, uint64_t now_ms)
{
	if (c->st != TURNC_READY)
		return EAGAIN;
	int i = peer_find(c, peer, false);
	if (i >= 0 && c->peers[i].perm_asked)
		return 0;
	if (i < 0 && (i = peer_new(c, peer)) < 0)
		return ENOSPC;
	c->peers[i].perm_asked = true;
	return request(c, TSX_PERMIT, i, now_ms);
}

int turnc_bind(struct turnc *c, const struct net_addr *peer, uint64_t now_ms)
{
	if (c->st != TURNC_READY)
		return EAGAIN;
	int i = peer_find(c, peer, true);
	if (i >= 0 && c->peers[i].chan)
		return 0;
	if (i < 0) {
		/* a permission-only entry of the same IP without a channel is reused */
		int j = peer_find(c, peer, false);
		if (j >= 0 && !c->peers[j].chan) {
			i = j;
			c->peers[i].addr = *peer;
		} else if ((i = peer_new(c, peer)) < 0) {
			return ENOSPC;
		}
	}
	if (c->next_chan > STUN_CHAN_MAX)
		return ENOSPC;
	c->peers[i].chan = c->next_chan++;
	c->peers[i].perm_asked = true; /* ChannelBind installs the permission too */
	return request(c, TSX_BIND, i, now_ms);
}

bool turnc_bound(const struct turnc *c, const struct net_addr *peer)
{
	int i = peer_find(c, peer, true);
	return i >= 0 && c->peers[i].chan_ok;
}

/* Send indication (RFC 8656 11.1) or ChannelData (12.4):
 *
 *  0                   1                   2                   3
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Channel Number        |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                       Application Data (+ padding on streams)  |
 */
int turnc_send(struct turnc *c, const struct net_addr *peer, const void *data, size_t len)
{
	if (c->st != TURNC_READY)
		return EAGAIN;
	if (len > 65535 - 64)
		return EMSGSIZE;
	int i = peer_find(c, peer, true);
	if (i < 0 || !c->peers[i].chan_ok) {
		if (peer_find(c, peer, false) < 0)
			return ENOENT;
		struct stun_enc e;
		buf_reset(&c->out);
		stun_enc_begin(&e, &c->out, STUN_METHOD_SEND, STUN_CLASS_INDICATION, NULL);
		stun_enc_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer->u.sa);
		stun_enc_attr(&e, STUN_ATTR_DATA, data, len);
		int err = stun_enc_end(&e);
		if (err)
			return err;
	} else {
		uint8_t hdr[STUN_CHAN_HDR];
		stun_chan_header(hdr, c->peers[i].chan, (uint16_t)len);
		buf_reset(&c->out);
		buf_append(&c->out, hdr, sizeof hdr);
		buf_append(&c->out, data, len);
		if (c->cf.stream)
			buf_append(&c->out, "\0\0\0", stun_chan_pad(len));
		if (c->out.failed)
			return ENOMEM;
	}
	if (c->sh)
		c->sh(c->out.data, c->out.len, c->arg);
	return 0;
}

/* ---- what comes back ---- */

static int take_challenge(struct turnc *c, const struct stun_msg *m)
{
	const struct stun_attr *r = stun_msg_attr(m, STUN_ATTR_REALM);
	const struct stun_attr *n = stun_msg_attr(m, STUN_ATTR_NONCE);
	if (!n || (!r && !c->realm[0]))
		return EBADMSG;
	if (r) {
		struct slice s = stun_attr_slice(r);
		if (s.l >= sizeof c->realm)
			return EBADMSG;
		slice_to_cstr(s, c->realm, sizeof c->realm);
	}
	struct slice ns = stun_attr_slice(n);
	if (ns.l >= sizeof c->nonce)
		return EBADMSG;
	slice_to_cstr(ns, c->nonce, sizeof c->nonce);
	const struct stun_attr *pa = stun_msg_attr(m, STUN_ATTR_PASSWORD_ALGORITHMS);
	size_t total = 0;
	c->nalgs = 0;
	c->alg = STUN_PWALG_MD5;
	if (pa && stun_attr_pwalgs(pa, c->algs, sizeof c->algs / sizeof c->algs[0], &total) == 0 &&
	    total <= sizeof c->algs / sizeof c->algs[0]) {
		c->nalgs = total;
		bool md5 = false, sha = false;
		for (size_t i = 0; i < total; i++) {
			sha |= c->algs[i] == STUN_PWALG_SHA256;
			md5 |= c->algs[i] == STUN_PWALG_MD5;
		}
		if (sha)
			c->alg = STUN_PWALG_SHA256;
		else if (!md5)
			return ENOTSUP;
	}
	c->have_creds = true;
	return stun_key_long_term((enum stun_pwalg)c->alg, slice_cstr(c->user),
				  slice_cstr(c->realm), slice_cstr(c->pass), c->key, &c->keylen);
}

static void schedule_refresh(struct turnc *c, uint64_t now)
{
	uint64_t l = (uint64_t)c->lifetime * 1000;
	c->refresh_ms = now + (l > 120000 ? l - 60000 : l / 2);
}

static void on_success(struct turnc *c, struct tsx *t, const struct stun_msg *m, uint64_t now)
{
	struct peer *p = t->peer >= 0 ? &c->peers[t->peer] : NULL;
	struct turnc_event ev = {.method = kind_method(t->kind)};
	const struct stun_attr *lt = stun_msg_attr(m, STUN_ATTR_LIFETIME);
	uint32_t life = 0;
	if (lt)
		stun_attr_u32(lt, &life);
	switch (t->kind) {
	case TSX_ALLOCATE:
		memset(&c->relayed, 0, sizeof c->relayed);
		memset(&c->mapped, 0, sizeof c->mapped);
		if (stun_msg_addr(m, STUN_ATTR_XOR_RELAYED_ADDRESS, &c->relayed.u.ss)) {
			tsx_done(t);
			fail(c, ev.method, 0, false,
			     "the Allocate success has no XOR-RELAYED-ADDRESS");
			return;
		}
		stun_msg_addr(m, STUN_ATTR_XOR_MAPPED_ADDRESS, &c->mapped.u.ss);
		c->lifetime = life ? life : 600;
		c->st = TURNC_READY;
		schedule_refresh(c, now);
		tsx_done(t);
		ev.kind = TURNC_EV_ALLOCATED;
		ev.lifetime = c->lifetime;
		break;
	case TSX_REFRESH:
		c->lifetime = life ? life : c->lifetime;
		schedule_refresh(c, now);
		tsx_done(t);
		ev.kind = TURNC_EV_REFRESHED;
		ev.lifetime = c->lifetime;
		break;
	case TSX_DEALLOC:
		tsx_done(t);
		c->st = TURNC_CLOSED;
		ev.kind = TURNC_EV_CLOSED;
		break;
	case TSX_PERMIT:
		tsx_done(t);
		p->perm_ok = true;
		p->perm_refresh_ms = now + TURNC_PERM_REFRESH_MS;
		ev.kind = TURNC_EV_PERMITTED;
		ev.peer = &p->addr;
		break;
	case TSX_BIND:
		tsx_done(t);
		p->perm_ok = p->chan_ok = true;
		p->chan_refresh_ms = now + TURNC_CHAN_REFRESH_MS;
		ev.kind = TURNC_EV_BOUND;
		ev.peer = &p->addr;
		ev.channel = p->chan;
		break;
	}
	emit(c, &ev);
}

static void on_error(struct turnc *c, struct tsx *t, const struct stun_msg *m, uint64_t now)
{
	uint16_t code = 0;
	struct slice reason = {0};
	const struct stun_attr *ea = stun_msg_attr(m, STUN_ATTR_ERROR_CODE);
	if (!ea || stun_attr_error(ea, &code, &reason))
		code = 500;
	uint16_t method = kind_method(t->kind);
	char detail[200];
	if ((code == STUN_ERR_UNAUTHORIZED && !t->authed) ||
	    (code == STUN_ERR_STALE_NONCE && t->stale < STALE_MAX)) {
		if (code == STUN_ERR_STALE_NONCE)
			t->stale++;
		int err = take_challenge(c, m);
		if (err == 0) {
			t->tries = 0;
			t->rto_ms = c->cf.rto_ms ? c->cf.rto_ms : 500;
			err = encode(c, t);
		}
		if (err == 0) {
			tsx_send(c, t, now);
			return;
		}
		snprintf(detail, sizeof detail, "%u challenge we cannot answer (%s)", code,
			 err == ENOTSUP ? "no password algorithm we know" : "bad REALM or NONCE");
		tsx_done(t);
		fail(c, method, code, false, detail);
		return;
	}
	snprintf(detail, sizeof detail, "%s: %u %.*s", stun_method_name(method), code,
		 (int)(reason.l > 120 ? 120 : reason.l), reason.p ? reason.p : "");
	enum tsx_kind k = t->kind;
	struct peer *p = t->peer >= 0 ? &c->peers[t->peer] : NULL;
	tsx_done(t);
	if (code == STUN_ERR_UNAUTHORIZED) {
		fail(c, method, code, true,
		     "credentials refused (401): wrong user name or password");
		return;
	}
	if (k == TSX_ALLOCATE) {
		fail(c, method, code, false, detail);
		return;
	}
	if (k == TSX_DEALLOC) {
		c->st = TURNC_CLOSED;
		struct turnc_event ev = {.kind = TURNC_EV_CLOSED, .method = method, .code = code};
		emit(c, &ev);
		return;
	}
	if (k == TSX_REFRESH && code == STUN_ERR_ALLOCATION_MISMATCH) {
		fail(c, method, code, false, "the allocation is gone (437 to Refresh)");
		return;
	}
	if (p) {
		/* forgotten, so that a later call asks again */
		if (k == TSX_BIND) {
			p->chan = 0;
			p->chan_ok = false;
		}
		if (k == TSX_PERMIT || !p->perm_ok)
			p->perm_asked = p->perm_ok = false;
		if (!p->perm_asked && !p->chan)
			p->used = false;
	}
	struct turnc_event ev = {.kind = TURNC_EV_ERROR,
				 .method = method,
				 .code = code,
				 .detail = detail,
				 .peer = p ? &p->addr : NULL};
	emit(c, &ev);
}

static int on_response(struct turnc *c, const struct stun_msg *m, uint64_t now)
{
	struct tsx *t = NULL;
	for (size_t i = 0; i < TURNC_MAX_TSX && !t; i++)
		if (c->tsx[i].used && memcmp(c->tsx[i].tid, m->tid, STUN_TID_LEN) == 0)
			t = &c->tsx[i];
	if (!t || m->method != kind_method(t->kind))
		return EBADMSG;
	if (t->authed && m->cls == STUN_CLASS_SUCCESS) {
		/* RFC 8489 9.2.5: a success to an authenticated request is
		 * believed only with integrity under our key */
		int err = m->mi256 >= 0 ? stun_msg_check_integrity_sha256(m, c->key, c->keylen)
					: stun_msg_check_integrity(m, c->key, c->keylen);
		if (err)
			return EBADMSG;
	}
	if (m->cls == STUN_CLASS_SUCCESS)
		on_success(c, t, m, now);
	else
		on_error(c, t, m, now);
	return 0;
}

int turnc_input(struct turnc *c, const uint8_t *p, size_t len, uint64_t now_ms,
		struct turnc_data *d)
{
	if (stun_is_channel_data(p, len)) {
		uint16_t chan;
		if (stun_chan_decode(p, len, &chan, &d->data, &d->len))
			return EBADMSG;
		for (size_t i = 0; i < TURNC_MAX_PEERS; i++) {
			const struct peer *pe = &c->peers[i];
			if (pe->used && pe->chan == chan && pe->chan_ok) {
				d->peer = pe->addr;
				d->channel = true;
				return 1;
			}
		}
		return EBADMSG;
	}
	struct stun_msg m;
	if (stun_msg_decode(&m, p, len) || m.classic)
		return EBADMSG;
	if (m.cls == STUN_CLASS_INDICATION) {
		if (m.method != STUN_METHOD_DATA || c->st != TURNC_READY)
			return EBADMSG;
		const struct stun_attr *da = stun_msg_attr(&m, STUN_ATTR_DATA);
		memset(&d->peer, 0, sizeof d->peer);
		if (!da || stun_msg_addr(&m, STUN_ATTR_XOR_PEER_ADDRESS, &d->peer.u.ss))
			return EBADMSG;
		d->data = da->v;
		d->len = da->len;
		d->channel = false;
		return 1;
	}
	if (m.cls == STUN_CLASS_REQUEST)
		return EBADMSG;
	return on_response(c, &m, now_ms);
}

/* ---- time ---- */

uint64_t turnc_next_ms(const struct turnc *c)
{
	uint64_t n = UINT64_MAX;
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		if (c->tsx[i].used && c->tsx[i].next_ms < n)
			n = c->tsx[i].next_ms;
	if (c->st != TURNC_READY)
		return n;
	if (c->refresh_ms && c->refresh_ms < n)
		n = c->refresh_ms;
	for (size_t i = 0; i < TURNC_MAX_PEERS; i++) {
		const struct peer *p = &c->peers[i];
		if (!p->used)
			continue;
		if (p->chan_ok && p->chan_refresh_ms < n)
			n = p->chan_refresh_ms;
		else if (!p->chan && p->perm_ok && p->perm_refresh_ms < n)
			n = p->perm_refresh_ms;
	}
	return n;
}

static bool pending(const struct turnc *c, enum tsx_kind k, int peer)
{
	for (size_t i = 0; i < TURNC_MAX_TSX; i++)
		if (c->tsx[i].used && c->tsx[i].kind == k && c->tsx[i].peer == peer)
			return true;
	return false;
}

void turnc_tick(struct turnc *c, uint64_t now)
{
	unsigned max = c->cf.max_tries ? c->cf.max_tries : 7;
	for (size_t i = 0; i < TURNC_MAX_TSX; i++) {
		struct tsx *t = &c->tsx[i];
		if (!t->used || t->next_ms > now)
			continue;
		if (t->tries < max) {
			tsx_send(c, t, now);
			continue;
		}
		enum tsx_kind k = t->kind;
		uint16_t method = kind_method(k);
		int peer = t->peer;
		tsx_done(t);
		if (k == TSX_ALLOCATE || k == TSX_REFRESH) {
			fail(c, method, 0, false, "no answer from the TURN server");
			return;
		}
		if (k == TSX_DEALLOC) {
			c->st = TURNC_CLOSED;
			struct turnc_event ev = {.kind = TURNC_EV_CLOSED, .method = method};
			emit(c, &ev);
			return;
		}
		struct peer *p = &c->peers[peer];
		if (k == TSX_BIND) {
			p->chan = 0;
			p->chan_ok = false;
		}
		if (!p->perm_ok)
			p->perm_asked = false;
		struct turnc_event ev = {.kind = TURNC_EV_ERROR,
					 .method = method,
					 .detail = "no answer from the TURN server",
					 .peer = &p->addr};
		emit(c, &ev);
	}
	if (c->st != TURNC_READY)
		return;
	if (c->refresh_ms && c->refresh_ms <= now && !pending(c, TSX_REFRESH, -1)) {
		c->refresh_ms = 0;
		request(c, TSX_REFRESH, -1, now);
	}
	for (int i = 0; i < TURNC_MAX_PEERS; i++) {
		struct peer *p = &c->peers[i];
		if (!p->used)
			continue;
		if (p->chan_ok && p->chan_refresh_ms <= now && !pending(c, TSX_BIND, i)) {
			p->chan_refresh_ms = now + TURNC_CHAN_REFRESH_MS;
			request(c, TSX_BIND, i, now);
		} else if (!p->chan && p->perm_ok && p->perm_refresh_ms <= now &&
			   !pending(c, TSX_PERMIT, i)) {
			p->perm_refresh_ms = now + TURNC_PERM_REFRESH_MS;
			request(c, TSX_PERMIT, i, now);
		}
	}
}

enum turnc_state turnc_state(const struct turnc *c)
{
	return c->st;
}

const struct net_addr *turnc_relayed(const struct turnc *c)
{
	return &c->relayed;
}

const struct net_addr *turnc_mapped(const struct turnc *c)
{
	return &c->mapped;
}

const char *turnc_username(const struct turnc *c)
{
	return c->user;
}

const char *turnc_state_name(enum turnc_state s)
{
	static const char *const names[] = {"idle",    "allocating", "ready",
					    "closing", "closed",     "failed"};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}
