/* relay: live calls with their evidence (where each party's media comes from against its SDP), for
 * pinhole ctl calls. */
#include <errno.h>
#include <stdio.h>

#include "relay/relay_int.h"

/* What one party's media did against its SDP, over its streams: the worst
 * (most telling) stream's word; streams that carried nothing count only
 * when every one did. */
static enum relay_evidence leg_evidence(const struct relay_leg *L)
{
	enum relay_evidence best = RELAY_EV_UNKNOWN;
	for (unsigned i = 0; i < SDP_MAX_MEDIA; i++) {
		if (!L->media[i])
			continue;
		/* the enum is in that order: no-media < as-announced < other-port < other-ip */
		enum relay_evidence e = relay_latch_evidence(&L->media[i]->rtp.latch);
		if (e > best)
			best = e;
	}
	return best;
}

static void addr_or_dash(const struct net_addr *a, char *out, size_t cap)
{
	if (a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6)
		net_addr_fmt(a, out, cap);
	else
		snprintf(out, cap, "-");
}

static void json_leg(struct buf *o, const struct relay *r, const struct relay_leg *L)
{
	char a[NET_ADDR_STRLEN];
	buf_append_cstr(o, "{\"tag\":");
	buf_append_json_str(o, L->tag ? L->tag : "");
	addr_or_dash(&L->sig, a, sizeof a);
	buf_printf(o, ",\"signalling_source\":\"%s\",\"evidence\":\"%s\",\"streams\":[", a,
		   relay_evidence_name(leg_evidence(L)));
	bool first = true;
	for (unsigned i = 0; i < SDP_MAX_MEDIA; i++) {
		const struct relay_media *m = L->media[i];
		if (!m)
			continue;
		const struct relay_latch *l = &m->rtp.latch;
		char ann[NET_ADDR_STRLEN], got[NET_ADDR_STRLEN], loc[NET_ADDR_STRLEN];
		addr_or_dash(&l->guess, ann, sizeof ann);
		addr_or_dash(l->latched ? &l->peer : &(struct net_addr){0}, got, sizeof got);
		struct net_addr local = r->ifs[m->ifidx].adv_addr;
		net_addr_set_port(&local, m->rtp.port);
		net_addr_fmt(&local, loc, sizeof loc);
		buf_printf(o,
			   "%s{\"m\":%u,\"relay\":\"%s\",\"announced\":\"%s\",\"latched\":\"%s\","
			   "\"evidence\":\"%s\",\"packets\":%llu}",
			   first ? "" : ",", i, loc, ann, got,
			   relay_evidence_name(relay_latch_evidence(l)),
			   (unsigned long long)m->rtp.packets);
		first = false;
	}
	buf_append_cstr(o, "]}");
}

static void text_leg(struct buf *o, const struct relay *r, const struct relay_leg *L,
		     const char *who)
{
	char a[NET_ADDR_STRLEN];
	addr_or_dash(&L->sig, a, sizeof a);
	for (unsigned i = 0; i < SDP_MAX_MEDIA; i++) {
		const struct relay_media *m = L->media[i];
		if (!m)
			continue;
		const struct relay_latch *l = &m->rtp.latch;
		char ann[NET_ADDR_STRLEN], got[NET_ADDR_STRLEN];
		addr_or_dash(&l->guess, ann, sizeof ann);
		addr_or_dash(l->latched ? &l->peer : &(struct net_addr){0}, got, sizeof got);
		(void)r;
		buf_printf(o, "  %-6s m=%u sig %-24s sdp %-24s media %-24s %-18s %llu pkts\n", who,
			   i, a, ann, got, relay_evidence_name(relay_latch_evidence(l)),
			   (unsigned long long)m->rtp.packets);
	}
}

int relay_dump(struct relay *r, bool json, size_t max, struct buf *out)
{
	size_t n = 0, total = 0;
	uint64_t now = time_mono_ms();
	if (json)
		buf_append_cstr(out, "{\"calls\":[");
	else
		buf_printf(out, "%-40s %6s  %s\n", "CALL-ID", "AGE",
			   "LEGS (WHO, STREAM, "
			   "SIGNALLING SOURCE, SDP ADDRESS, MEDIA SOURCE, EVIDENCE)");
	/* under the table lock: a bounded walk (max), the session locks inside
	 * it in the order the rest of the relay takes them */
	pthread_mutex_lock(&r->table_lock);
	total = r->nsessions;
	for (size_t b = 0; b < r->table_size && n < max; b++)
		for (struct relay_session *s = r->table[b]; s && n < max; s = s->next, n++) {
			pthread_mutex_lock(&s->lock);
			uint64_t age = (now - MIN(now, s->created_ms)) / 1000;
			char cid[256];
			slice_to_cstr((struct slice){s->call_id, s->call_id_len}, cid, sizeof cid);
			if (json) {
				buf_append_cstr(out,
						n ? ",\n  {\"call_id\":" : "\n  {\"call_id\":");
				buf_append_json_str(out, cid);
				buf_printf(out, ",\"age\":%llu,\"on_hold\":%s,\"legs\":[",
					   (unsigned long long)age, s->on_hold ? "true" : "false");
				json_leg(out, r, &s->leg[0]);
				buf_append_cstr(out, ",");
				json_leg(out, r, &s->leg[1]);
				buf_append_cstr(out, "]}");
			} else {
				buf_printf(out, "%-40s %5llus\n", cid, (unsigned long long)age);
				text_leg(out, r, &s->leg[0], "caller");
				text_leg(out, r, &s->leg[1], "callee");
			}
			pthread_mutex_unlock(&s->lock);
		}
	pthread_mutex_unlock(&r->table_lock);
	if (json)
		buf_printf(out, "%s],\"shown\":%zu,\"total\":%zu}\n", n ? "\n" : "", n, total);
	else if (n < total)
		buf_printf(out, "(%zu of %zu calls shown)\n", n, total);
	return out->failed ? ENOMEM : 0;
}
