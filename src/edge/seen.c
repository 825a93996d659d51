/* Pinhole-Seen: what a request looked like when it reached us, returned in a form a SIP ALG does
 * not rewrite.
 *
 *   Pinhole-Seen: base64( "src=198.51.100.7:40112" "\n"
 *                         "via=SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK..;rport" "\n"
 *                         "contact=<sip:alice@192.168.1.20:5060>" "\n"
 *                         "sdp-c=192.168.1.20" "\n"          (INVITE only)
 *                         "sdp-m=4000" )                     (INVITE only)
 *
 * An ALG rewrites addresses it finds in Via, Contact and SDP on the way in;
 * it finds none in base64, so the phone reads back exactly what arrived and
 * can tell what the path changed (docs/nat-evidence.md).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"
#include "sdp/sdp.h"

/* The text before encoding: five keys of at most EDGE_SEEN_VALUE_MAX bytes,
 * on the stack (one REGISTER's 200 pays no allocation for it). */
struct seen_text {
	char p[5 * (EDGE_SEEN_VALUE_MAX + 16)];
	size_t l;
};

/* One "key=value" line; a value longer than EDGE_SEEN_VALUE_MAX is left
 * out (the header stays small whatever the request carried). Line breaks
 * of a folded header are dropped so that each key stays one line. */
static void add_kv(struct seen_text *t, const char *key, struct slice v)
{
	v = slice_trim(v);
	size_t kl = strlen(key);
	if (!v.l || v.l > EDGE_SEEN_VALUE_MAX || t->l + kl + v.l + 2 > sizeof t->p)
		return;
	if (t->l)
		t->p[t->l++] = '\n';
	memcpy(t->p + t->l, key, kl);
	t->l += kl;
	t->p[t->l++] = '=';
	/* runs between line breaks, a copy each (usually one: no folding) */
	while (v.l) {
		const char *cr = memchr(v.p, '\r', v.l), *lf = memchr(v.p, '\n', v.l);
		const char *stop = !cr ? lf : !lf ? cr : MIN(cr, lf);
		size_t run = stop ? (size_t)(stop - v.p) : v.l;
		memcpy(t->p + t->l, v.p, run);
		t->l += run;
		run += stop != NULL;
		v.p += run;
		v.l -= run;
	}
}

static struct slice first_value(const struct sip_msg *m, enum sip_hdr_id id, size_t line)
{
	const struct sip_hdr *h = NULL;
	if (id == SIP_HDR_VIA)
		h = line < m->n_hdrs && m->hdrs[line].id == SIP_HDR_VIA ? &m->hdrs[line] : NULL;
	else
		h = sip_msg_hdr(m, id, 0);
	size_t pos = 0;
	struct slice v = SLICE_NULL;
	if (h && !sip_hdr_next_value(h->value, &pos, &v))
		v = SLICE_NULL;
	return v;
}

static bool body_is_sdp(const struct sip_msg *m)
{
	const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTENT_TYPE, 0);
	if (!m->body.l || !ct)
		return false;
	struct slice v = slice_trim(ct->value);
	v = slice_trim((struct slice){v.p, slice_find(v, ';')});
	return slice_eq_cstr_nocase(v, "application/sdp");
}

/* RFC 8866 5.7: the session's c= when it has one, else the first audio
 * section's own; and that section's port. */
static void add_sdp(struct seen_text *t, const struct sip_msg *m)
{
	if (!body_is_sdp(m))
		return;
	struct sdp *s = malloc(sizeof *s);
	if (!s || sdp_parse(s, m->body)) {
		free(s);
		return;
	}
	const struct sdp_media *audio = NULL;
	for (size_t i = 0; i < s->n_media && !audio; i++)
		if (slice_eq_cstr_nocase(s->media[i].type, "audio"))
			audio = &s->media[i];
	if (s->conn.present)
		add_kv(t, "sdp-c", s->conn.addr);
	else if (audio && audio->conn.present)
		add_kv(t, "sdp-c", audio->conn.addr);
	if (audio) {
		char port[8];
		size_t k = sizeof port;
		unsigned v = audio->port;
		do {
			port[--k] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		add_kv(t, "sdp-m", (struct slice){port + k, sizeof port - k});
	}
	free(s);
}

int edge_seen_append(struct buf *out, const struct sip_msg *m, const struct net_addr *src,
		     bool with_sdp)
{
	struct seen_text t;
	t.l = 0;
	char a[NET_ADDR_STRLEN];
	add_kv(&t, "src", slice_cstr(net_addr_fmt(src, a, sizeof a)));
	add_kv(&t, "via", first_value(m, SIP_HDR_VIA, m->via1_hdr));
	add_kv(&t, "contact", first_value(m, SIP_HDR_CONTACT, 0));
	if (with_sdp)
		add_sdp(&t, m);
	buf_append_cstr(out, EDGE_SEEN_HDR ": ");
	buf_append_base64(out, t.p, t.l);
	buf_append_cstr(out, "\r\n");
	return out->failed ? ENOMEM : 0;
}

void edge_seen_strip(struct sip_editor *ed, const struct sip_msg *m)
{
	for (size_t i = 0; i < m->n_hdrs; i++)
		if (m->hdrs[i].id == SIP_HDR_OTHER &&
		    slice_eq_cstr_nocase(m->hdrs[i].name, EDGE_SEEN_HDR))
			sip_edit_remove_hdr(ed, i);
}

/* ---- STUN Bindings seen on the SIP port ---- */

static struct metric m_stun_replaced = {
    .name = "edge_stun_seen_replaced_total",
    .help = "sources of STUN Bindings on the SIP port forgotten for another in their slot "
	    "(the table behind the stun-announced verdict holds 4096)"};

void edge_seen_register_metrics(void)
{
	metric_register(&m_stun_replaced);
}

static uint64_t stun_key(const struct net_addr *a)
{
	return net_addr_hash(a) | 1;
}

void edge_stun_seen_note(struct edge *e, const struct flow *f, uint64_t now_ms)
{
	uint64_t k = stun_key(&f->remote);
	struct edge_stun_seen *s = &e->stun_seen[k % EDGE_STUN_SEEN_SLOTS];
	uint64_t old = atomic_exchange_explicit(&s->key, k, memory_order_relaxed);
	if (old && old != k)
		metric_inc(&m_stun_replaced);
	atomic_store_explicit(&s->ms, now_ms, memory_order_relaxed);
}

bool edge_stun_seen(struct edge *e, const struct net_addr *src, uint64_t now_ms, uint64_t within_ms)
{
	uint64_t k = stun_key(src);
	struct edge_stun_seen *s = &e->stun_seen[k % EDGE_STUN_SEEN_SLOTS];
	if (atomic_load_explicit(&s->key, memory_order_relaxed) != k)
		return false;
	uint64_t ms = atomic_load_explicit(&s->ms, memory_order_relaxed);
	return ms <= now_ms && now_ms - ms <= within_ms;
}
