/* relay: sessions and legs: offer, answer, delete, query, list, timeouts; SDP in, rewritten SDP
 * out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay_int.h"
#include "relayctl/relayctl.h"

/* ---- the table: Call-ID -> session, chained, under table_lock ---- */

static char *dup_slice(struct slice s)
{
	char *p = malloc(s.l + 1);
	if (p) {
		memcpy(p, s.p, s.l);
		p[s.l] = '\0';
	}
	return p;
}

static bool tag_is(const struct relay_leg *l, struct slice tag)
{
	return l->tag && l->tag_len == tag.l && memcmp(l->tag, tag.p, tag.l) == 0;
}

static int set_tag(struct relay_leg *l, struct slice tag)
{
	if (tag_is(l, tag))
		return 0;
	char *t = dup_slice(tag);
	if (!t)
		return ENOMEM;
	free(l->tag);
	l->tag = t;
	l->tag_len = tag.l;
	return 0;
}

static struct relay_session *lookup_locked(struct relay *r, struct slice cid, uint64_t h)
{
	for (struct relay_session *s = r->table[h & (r->table_size - 1)]; s; s = s->next)
		if (s->hash == h && s->call_id_len == cid.l &&
		    memcmp(s->call_id, cid.p, cid.l) == 0)
			return s;
	return NULL;
}

/* Finds (or creates) the session and returns it locked. */
static int session_get(struct relay *r, struct slice cid, bool create, struct relay_session **sp,
		       bool *created)
{
	uint64_t h = hash_bytes(cid.p, cid.l);
	int err = 0;
	*created = false;
	pthread_mutex_lock(&r->table_lock);
	struct relay_session *s = lookup_locked(r, cid, h);
	if (!s && !create) {
		err = ENOENT;
		goto out_unlock;
	}
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s || !(s->call_id = dup_slice(cid))) {
			free(s);
			err = ENOMEM;
			goto out_unlock;
		}
		s->r = r;
		s->call_id_len = cid.l;
		s->hash = h;
		s->worker = (unsigned)((h >> 32) % r->nworkers);
		s->created_ms = time_mono_ms();
		pthread_mutex_init(&s->lock, NULL);
		size_t b = h & (r->table_size - 1);
		s->next = r->table[b];
		r->table[b] = s;
		r->nsessions++;
		relay_metrics_sessions(1);
		*created = true;
	}
	pthread_mutex_lock(&s->lock);
	*sp = s;
out_unlock:
	pthread_mutex_unlock(&r->table_lock);
	return err;
}

static void media_free(struct relay *r, struct relay_media *m)
{
	relay_media_detach(m);
	relay_pool_put(r, m);
	relay_ice_free(m);
	free(m);
}

void relay_session_destroy_now(struct relay_session *s)
{
	for (unsigned l = 0; l < 2; l++) {
		for (unsigned i = 0; i < SDP_MAX_MEDIA; i++)
			if (s->leg[l].media[i])
				media_free(s->r, s->leg[l].media[i]);
		free(s->leg[l].tag);
	}
	relay_charge_detach(s->r, s); /* its pairs are back already */
	pthread_mutex_destroy(&s->lock);
	free(s->call_id);
	free(s);
}

/* Posted to the session's worker: its sockets are only touched there. */
static void destroy_on_worker(void *arg)
{
	struct relay_session *s = arg;
	struct relay *r = s->r;
	pthread_mutex_lock(&r->table_lock);
	for (struct relay_session **pp = &r->dying; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&r->table_lock);
	relay_session_destroy_now(s);
}

/* Unlinks s (table lock held, s not locked by the caller). */
static void unlink_locked(struct relay *r, struct relay_session *s)
{
	struct relay_session **pp = &r->table[s->hash & (r->table_size - 1)];
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (!*pp)
		return; /* already gone */
	*pp = s->next;
	r->nsessions--;
	relay_metrics_sessions(-1);
	pthread_mutex_lock(&s->lock);
	s->dead = true; /* the packet path stops looking at it */
	relay_ice_session_end(s);
	/* what each party's media did against its SDP, once per stream */
	for (unsigned l = 0; l < 2; l++)
		for (unsigned i = 0; i < SDP_MAX_MEDIA; i++)
			if (s->leg[l].media[i])
				relay_metrics_evidence(
				    relay_latch_evidence(&s->leg[l].media[i]->rtp.latch));
	pthread_mutex_unlock(&s->lock);
	s->next = r->dying;
	r->dying = s;
	/* if the post fails the session waits on the dying list for relay_free */
	loop_post(r->workers[s->worker]->loop, destroy_on_worker, s);
}

static void session_kill(struct relay *r, struct relay_session *s)
{
	pthread_mutex_lock(&r->table_lock);
	unlink_locked(r, s);
	pthread_mutex_unlock(&r->table_lock);
}

void relay_sessions_free(struct relay *r)
{
	if (!r->table)
		return;
	for (size_t b = 0; b < r->table_size; b++)
		while (r->table[b]) {
			struct relay_session *s = r->table[b];
			r->table[b] = s->next;
			relay_session_destroy_now(s);
		}
	while (r->dying) {
		struct relay_session *s = r->dying;
		r->dying = s->next;
		relay_session_destroy_now(s);
	}
	relay_metrics_sessions(-(int64_t)r->nsessions);
	r->nsessions = 0;
}

static uint64_t session_last_ms(struct relay_session *s)
{
	uint64_t last = MAX(s->created_ms, s->touched_ms);
	for (unsigned l = 0; l < 2; l++)
		for (unsigned i = 0; i < SDP_MAX_MEDIA; i++) {
			struct relay_media *m = s->leg[l].media[i];
			if (!m)
				continue;
			/* streams the kernel forwards: their activity and counters */
			relay_fast_pull(&m->rtp);
			last = MAX(last, m->rtp.latch.last_ms);
			last = MAX(last, m->rtcp.latch.last_ms);
		}
	return last;
}

/* O(sessions) once a second under the table lock: a few microseconds per
 * thousand calls. */
void relay_sweep(struct relay *r, uint64_t now_ms)
{
	pthread_mutex_lock(&r->table_lock);
	for (size_t b = 0; b < r->table_size; b++) {
		struct relay_session *s = r->table[b];
		while (s) {
			struct relay_session *next = s->next;
			pthread_mutex_lock(&s->lock);
			uint64_t last = session_last_ms(s);
			/* a call on hold may be silent for long (no music on
			 * hold): it keeps its ports until the longer timeout */
			uint64_t limit = s->on_hold ? r->hold_timeout_ms : r->timeout_ms;
			pthread_mutex_unlock(&s->lock);
			if (now_ms > last && now_ms - last >= limit) {
				LOG_I("relay", "session %.*s: %llu ms silent, deleted",
				      (int)MIN(s->call_id_len, 64), s->call_id,
				      (unsigned long long)(now_ms - last));
				unlink_locked(r, s);
			}
			s = next;
		}
	}
	pthread_mutex_unlock(&r->table_lock);
}

/* Whether every stream with a port is on hold: sendonly, recvonly (the
 * answer to a hold), inactive, or the old c=0.0.0.0 form (RFC 3264 8.4). */
static bool sdp_held(const struct sdp *sd)
{
	bool any = false;
	for (size_t i = 0; i < sd->n_media; i++) {
		const struct sdp_media *m = &sd->media[i];
		if (!m->port)
			continue;
		any = true;
		if (!m->hold && m->dir != SDP_DIR_SENDONLY && m->dir != SDP_DIR_RECVONLY &&
		    m->dir != SDP_DIR_INACTIVE)
			return false;
	}
	return any;
}

/* ---- SDP to addresses ---- */

static int sdp_af_family(enum sdp_af af)
{
	return af == SDP_AF_IP6 ? AF_INET6 : AF_INET;
}

static enum sdp_af family_sdp_af(int family)
{
	return family == AF_INET6 ? SDP_AF_IP6 : SDP_AF_IP4;
}

static bool conn_ip(const struct sdp_conn *c, struct net_addr *out)
{
	return c->present && c->literal && net_addr_from_host(c->addr, 0, out) == 0;
}

static int sdp_family(const struct sdp *sd)
{
	for (size_t i = 0; i < sd->n_media; i++)
		if (sd->media[i].port && sd->media[i].conn.present)
			return sdp_af_family(sd->media[i].conn.af);
	if (sd->conn.present)
		return sdp_af_family(sd->conn.af);
	if (sd->origin.conn.present)
		return sdp_af_family(sd->origin.conn.af);
	return AF_INET;
}

static bool addr_set(const struct net_addr *a)
{
	return a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6;
}

/* What one party's SDP says about where it receives, and who may latch. */
static void party_media(struct relay *r, const struct relay_leg *L, struct relay_media *rm,
			const struct sdp_media *m, const struct relayctl_opts *o)
{
	struct net_addr sdp_ip, ip;
	bool have_sdp = conn_ip(&m->conn, &sdp_ip);
	bool have_ip = false;
	if (o->media_address.l && net_addr_from_host(o->media_address, 0, &ip) == 0)
		have_ip = true;
	else if (o->sip_source_address && addr_set(&L->sig))
		ip = L->sig, have_ip = true;
	else if (have_sdp)
		ip = sdp_ip, have_ip = true;
	/* A private SDP address of a party whose signaling came through NAT
	 * is unreachable from here: wait for its first packet instead of
	 * sending into the relay's own network. */
	if (have_ip && !o->trust_address && addr_set(&L->sig) && net_addr_is_private(&ip) &&
	    !net_addr_is_private(&L->sig))
		have_ip = false;

	struct net_addr g_rtp, g_rtcp;
	const struct net_addr *allow0 = addr_set(&L->sig) ? &L->sig : NULL;
	const struct net_addr *allow1 = have_sdp ? &sdp_ip : NULL;
	if (o->media_address.l && have_ip)
		allow1 = &ip;
	if (have_ip) {
		g_rtp = ip;
		net_addr_set_port(&g_rtp, m->port);
		/* RFC 3605: a=rtcp port (and address), else port + 1 */
		g_rtcp = ip;
		struct net_addr rip;
		if (m->has_rtcp && m->rtcp_conn.present && conn_ip(&m->rtcp_conn, &rip) &&
		    !o->media_address.l && !o->sip_source_address)
			g_rtcp = rip;
		net_addr_set_port(&g_rtcp, m->has_rtcp ? m->rtcp_port : (uint16_t)(m->port + 1));
	}
	relay_latch_update(&rm->rtp.latch, &r->latch, have_ip ? &g_rtp : NULL, allow0, allow1);
	relay_latch_update(&rm->rtcp.latch, &r->latch, have_ip ? &g_rtcp : NULL, allow0, allow1);
	rm->offered_mux = m->rtcp_mux;
}

static int pick_if(struct relay *r, struct slice name, int family, unsigned *out)
{
	for (unsigned i = 0; i < r->nif; i++) {
		if (name.l ? slice_eq(name, slice_cstr(r->ifs[i].name))
			   : r->ifs[i].family == family) {
			*out = i;
			return 0;
		}
	}
	return ENOTSUP;
}

/* Sockets for m= line i of leg l, allocated once and kept for re-offers. */
static int ensure_media(struct relay_session *s, unsigned l, unsigned i)
{
	struct relay_leg *L = &s->leg[l];
	if (L->media[i])
		return 0;
	struct relay_media *m = calloc(1, sizeof *m);
	if (!m)
		return ENOMEM;
	m->s = s;
	m->leg = l;
	m->idx = i;
	m->rtp = (struct relay_sock){.m = m, .fd = -1, .created_ms = time_mono_ms()};
	m->rtcp =
	    (struct relay_sock){.m = m, .fd = -1, .rtcp = true, .created_ms = m->rtp.created_ms};
	int err = relay_pool_get(s->r, L->ifidx, m);
	if (err) {
		free(m);
		return err;
	}
	/* kept even when attaching fails: only the worker may unwatch it */
	L->media[i] = m;
	return relay_media_attach(m);
}

/* Writes sd rewritten to name leg `to`'s sockets (the party receiving it
 * sends there). mux[i]: advertise a=rtcp-mux on line i. */
static int rewrite(struct relay_session *s, const struct sdp *sd, unsigned to,
		   const struct relayctl_opts *o, const bool *mux, struct buf *out)
{
	struct relay *r = s->r;
	struct relay_leg *L = &s->leg[to];
	const struct relay_if *ifc = &r->ifs[L->ifidx];
	struct sdp_media_rw mrw[SDP_MAX_MEDIA];
	memset(mrw, 0, sizeof mrw);
	enum sdp_af af = family_sdp_af(ifc->family);
	struct slice adv = slice_cstr(ifc->adv);
	for (size_t i = 0; i < sd->n_media; i++) {
		const struct relay_media *m = L->media[i];
		if (!m || sd->media[i].port == 0) {
			mrw[i].keep = true;
			continue;
		}
		mrw[i].af = af;
		mrw[i].addr = adv;
		mrw[i].port = m->rtp.port;
		/* RFC 5761 5.1.3: with mux agreed no separate RTCP port is needed */
		mrw[i].rtcp_port = mux[i] ? 0 : m->rtcp.port;
		mrw[i].rtcp_mux = mux[i];
		/* [proxy] ice = candidate (docs/ice.md) */
		relay_ice_rw(s->leg[1 - to].media[i], m, sd, i, mux[i], &mrw[i]);
	}
	struct sdp_rw rw = {
	    .media = mrw,
	    .n_media = sd->n_media,
	    .replace_origin = o->replace_origin,
	    .origin_af = af,
	    .origin_addr = adv,
	    .replace_session_conn = o->replace_session_conn,
	    .session_af = af,
	    .session_addr = adv,
	    .strip_ice = true,
	    .add_nortpproxy = true,
	    .vstate = &L->vout,
	};
	return sdp_rewrite(sd, &rw, out);
}

static int check_req(const struct relayctl_req *q, struct sdp *sd)
{
	if (!q->call_id.l || !q->from_tag.l || !q->sdp.l)
		return EINVAL;
	if (q->opts.ice == RELAYCTL_ICE_FORCE)
		return ENOTSUP; /* the relay is no ICE agent (docs/ice.md) */
	if (q->opts.family && q->opts.family != AF_INET && q->opts.family != AF_INET6)
		return EINVAL;
	return sdp_parse(sd, q->sdp);
}

int relay_offer(struct relay *r, const struct relayctl_req *q, struct buf *out)
{
	struct sdp sd;
	int err = check_req(q, &sd);
	if (err)
		return err;
	const struct relayctl_opts *o = &q->opts;
	struct relay_session *s;
	bool created;
	if ((err = session_get(r, q->call_id, true, &s, &created)))
		return err;
	if (created && (err = relay_charge_attach(r, s, &o->received_from, o->owner)))
		goto out_unlock;

	/* Which leg offers: the one with this tag; a new session's first leg. */
	unsigned a;
	if (tag_is(&s->leg[0], q->from_tag))
		a = 0;
	else if (tag_is(&s->leg[1], q->from_tag))
		a = 1;
	else if (!s->leg[1].tag || created)
		a = 0; /* first offer, or a repeat before any answer with a new tag */
	else {
		err = ENOENT; /* a third party in an answered call */
		goto out_unlock;
	}
	unsigned b = 1 - a;
	if ((err = set_tag(&s->leg[a], q->from_tag)))
		goto out_unlock;
	if (q->to_tag.l && (err = set_tag(&s->leg[b], q->to_tag)))
		goto out_unlock;
	if (addr_set(&o->received_from))
		s->leg[a].sig = o->received_from;

	int in_fam = sdp_family(&sd), out_fam = o->family ? o->family : in_fam;
	if (!s->leg[a].ifset) {
		if ((err = pick_if(r, o->direction[0], in_fam, &s->leg[a].ifidx)))
			goto out_unlock;
		s->leg[a].ifset = true;
	}
	if (!s->leg[b].ifset) {
		if ((err = pick_if(r, o->direction[1], out_fam, &s->leg[b].ifidx)))
			goto out_unlock;
		s->leg[b].ifset = true;
	}

	if ((err = relay_limit_media(r, &sd, &s->leg[a])))
		goto out_unlock;
	bool mux[SDP_MAX_MEDIA] = {false};
	for (unsigned i = 0; i < sd.n_media; i++) {
		const struct sdp_media *m = &sd.media[i];
		if (m->port == 0)
			continue; /* RFC 3264 6: rejected or disabled; no ports */
		if ((err = ensure_media(s, a, i)) || (err = ensure_media(s, b, i)))
			goto out_unlock;
		struct relay_media *ma = s->leg[a].media[i], *mb = s->leg[b].media[i];
		party_media(r, &s->leg[a], ma, m, o);
		relay_fast_sync(ma);
		if ((err = relay_ice_set(ma, &sd, i, o->ice == RELAYCTL_ICE_CANDIDATE)))
			goto out_unlock;
		bool rej = o->rtcp_mux & RELAYCTL_MUX_REJECT;
		mux[i] = !rej && ((m->rtcp_mux && !(o->rtcp_mux & RELAYCTL_MUX_DEMUX)) ||
				  (o->rtcp_mux & RELAYCTL_MUX_OFFER));
		mb->we_offered_mux = mux[i];
		/* until the answer: the offerer listens on its RTCP port too
		 * (RFC 5761 5.1.1), and the answerer's choice is unknown */
		(void)mb;
	}
	s->touched_ms = time_mono_ms(); /* signaling keeps it alive */
	s->on_hold = sdp_held(&sd);
	err = rewrite(s, &sd, b, o, mux, out);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	if (err && created)
		session_kill(r, s);
	return err;
}

int relay_answer(struct relay *r, const struct relayctl_req *q, struct buf *out)
{
	struct sdp sd;
	int err = check_req(q, &sd);
	if (err)
		return err;
	const struct relayctl_opts *o = &q->opts;
	struct relay_session *s;
	bool created;
	if ((err = session_get(r, q->call_id, false, &s, &created)))
		return err;
	unsigned a;
	if (tag_is(&s->leg[0], q->from_tag))
		a = 0;
	else if (tag_is(&s->leg[1], q->from_tag))
		a = 1;
	else {
		err = ENOENT;
		goto out_unlock;
	}
	unsigned b = 1 - a;
	/* a later branch of a forked call answering replaces the earlier one:
	 * one answerer per session (several early dialogs are not kept apart) */
	if (q->to_tag.l && (err = set_tag(&s->leg[b], q->to_tag)))
		goto out_unlock;
	if (addr_set(&o->received_from))
		s->leg[b].sig = o->received_from;

	bool mux[SDP_MAX_MEDIA] = {false};
	for (unsigned i = 0; i < sd.n_media; i++) {
		const struct sdp_media *m = &sd.media[i];
		struct relay_media *ma = s->leg[a].media[i], *mb = s->leg[b].media[i];
		if (!ma || !mb)
			continue; /* not offered (or rejected in the offer): kept as is */
		if (m->port == 0) {
			/* the answerer rejected it: nothing to send there */
			relay_latch_update(&mb->rtp.latch, &r->latch, NULL, NULL, NULL);
			relay_latch_update(&mb->rtcp.latch, &r->latch, NULL, NULL, NULL);
			relay_fast_sync(mb);
			relay_ice_free(mb);
			continue;
		}
		party_media(r, &s->leg[b], mb, m, o);
		relay_fast_sync(mb);
		if ((err = relay_ice_set(mb, &sd, i, o->ice == RELAYCTL_ICE_CANDIDATE)))
			goto out_unlock;
		bool rej = o->rtcp_mux & RELAYCTL_MUX_REJECT;
		/* the answerer muxes if it says so (RFC 5761 5.1.1) */
		mb->mux = !rej && m->rtcp_mux;
		/* the offerer muxes if it offered and the answerer does, or the
		 * relay demuxes for it: asked now (accept), or when the offer
		 * was sent on without a=rtcp-mux (demux) */
		ma->mux = !rej && ma->offered_mux &&
			  (mb->mux || !mb->we_offered_mux ||
			   (o->rtcp_mux & (RELAYCTL_MUX_ACCEPT | RELAYCTL_MUX_DEMUX)));
		mux[i] = ma->mux;
	}
	s->touched_ms = time_mono_ms();
	s->on_hold = sdp_held(&sd);
	err = rewrite(s, &sd, a, o, mux, out);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return err;
}

int relay_delete(struct relay *r, struct slice call_id, struct slice from_tag, struct slice to_tag)
{
	if (!call_id.l)
		return EINVAL;
	uint64_t h = hash_bytes(call_id.p, call_id.l);
	int err = 0;
	pthread_mutex_lock(&r->table_lock);
	struct relay_session *s = lookup_locked(r, call_id, h);
	if (!s) {
		err = ENOENT;
		goto out_unlock;
	}
	pthread_mutex_lock(&s->lock);
	bool match =
	    (!from_tag.l || tag_is(&s->leg[0], from_tag) || tag_is(&s->leg[1], from_tag)) &&
	    (!to_tag.l || tag_is(&s->leg[0], to_tag) || tag_is(&s->leg[1], to_tag) ||
	     !s->leg[1].tag);
	pthread_mutex_unlock(&s->lock);
	if (!match) {
		err = ENOENT;
		goto out_unlock;
	}
	unlink_locked(r, s);
out_unlock:
	pthread_mutex_unlock(&r->table_lock);
	return err;
}

static void fill_stream(const struct relay_if *ifc, struct relay_sock *k, uint64_t now,
			struct relayctl_stream *out)
{
	relay_fast_pull(k);
	out->local = ifc->adv_addr;
	net_addr_set_port(&out->local, k->port);
	const struct net_addr *d;
	if (relay_latch_dest(&k->latch, &d))
		out->peer = *d;
	else
		memset(&out->peer, 0, sizeof out->peer);
	out->latched = k->latch.latched;
	out->announced = k->latch.guess;
	out->evidence = (uint8_t)relay_latch_evidence(&k->latch);
	out->packets = k->packets;
	out->bytes = k->bytes;
	out->gaps = k->seq.gaps;
	out->dropped = k->dropped;
	uint64_t last = MAX(k->created_ms, k->latch.last_ms);
	out->idle_ms = now > last ? now - last : 0;
}

int relay_query(struct relay *r, struct slice call_id, struct slice from_tag,
		struct relayctl_query *out)
{
	struct relay_session *s;
	bool created;
	if (!call_id.l)
		return EINVAL;
	int err = session_get(r, call_id, false, &s, &created);
	if (err)
		return err;
	if (from_tag.l && !tag_is(&s->leg[0], from_tag) && !tag_is(&s->leg[1], from_tag)) {
		pthread_mutex_unlock(&s->lock);
		return ENOENT;
	}
	memset(out, 0, sizeof *out);
	uint64_t now = time_mono_ms();
	out->age_ms = now - MIN(now, s->created_ms);
	for (unsigned l = 0; l < 2; l++) {
		const struct relay_leg *L = &s->leg[l];
		struct relayctl_leg *ol = &out->leg[l];
		if (L->tag)
			slice_to_cstr((struct slice){L->tag, L->tag_len}, ol->tag, sizeof ol->tag);
		ol->sig = L->sig;
		for (unsigned i = 0; i < SDP_MAX_MEDIA && i < RELAYCTL_MAX_MEDIA; i++) {
			struct relay_media *m = L->media[i];
			if (!m)
				continue;
			ol->n_media = i + 1;
			fill_stream(&r->ifs[m->ifidx], &m->rtp, now, &ol->media[i].rtp);
			fill_stream(&r->ifs[m->ifidx], &m->rtcp, now, &ol->media[i].rtcp);
			ol->media[i].rtcp_mux = m->mux;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int relay_list(struct relay *r, size_t max, relay_list_h *h, void *arg)
{
	size_t n = 0;
	pthread_mutex_lock(&r->table_lock);
	for (size_t b = 0; b < r->table_size; b++)
		for (struct relay_session *s = r->table[b]; s; s = s->next) {
			if (max && n == max)
				goto out_unlock;
			h((struct slice){s->call_id, s->call_id_len}, arg);
			n++;
		}
out_unlock:
	pthread_mutex_unlock(&r->table_lock);
	return 0;
}
