/* REGISTER processing (RFC 3261 10.3): validate, apply atomically in the store, answer once durable. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registrar_int.h"

const struct conf_key registrar_conf_keys[] = {
	{"registrar", "min_expires", CONF_INT, "60", 1, 86400, NULL,
	 "shortest registration accepted; shorter ones get 423 Interval Too Brief"},
	{"registrar", "max_expires", CONF_INT, "3600", 1, 604800, NULL,
	 "longest registration granted; longer requests are cut to this"},
	{"registrar", "default_expires", CONF_INT, "3600", 1, 604800, NULL,
	 "expiry when the REGISTER names none"},
	{"registrar", "max_contacts", CONF_INT, "16", 1, 1000, NULL, "bindings per AOR"},
	{"registrar", "max_bindings", CONF_INT, "1000000", 1, 100000000, NULL,
	 "bindings in all (about 470 bytes each with its AOR, up to 1.2 KB with every field "
	 "full); beyond it a new binding gets 503, refreshes and removals still pass"},
	{"registrar", "open", CONF_BOOL, "no", 0, 0, NULL,
	 "DANGEROUS: with no users configured, accept REGISTER from any source, not only "
	 "loopback and private ones (anyone on the internet can then take any AOR)"},
	{"keepalive", "interval", CONF_INT, "20", 0, 3600, NULL,
	 "seconds between server pings to NATed UDP phones without outbound (one per phone: "
	 "per source flow and AOR, per Path through an edge; a source that has not shown it is "
	 "real gets one OPTIONS per REGISTER); 0 = off"},
	{"keepalive", "method", CONF_ENUM, "options", 0, 0, "options|crlf",
	 "ping with an OPTIONS request or a CRLF datagram"},
	{"keepalive", "max_failures", CONF_INT, "3", 1, 100, NULL,
	 "unanswered OPTIONS pings before a binding is marked unreachable and pings stop"},
	{"store", "path", CONF_STR, "pinhole.db", 0, 0, NULL,
	 "SQLite file for bindings and users (pinhole user); empty = memory only"},
	{"store", "users", CONF_STR, "", 0, 0, NULL,
	 "SQLite file for users (pinhole user) when not [store] path's, e.g. beside a "
	 "memory-only location store; empty = [store] path"},
	{"store", "sync", CONF_ENUM, "full", 0, 0, "full|normal",
	 "full: fsync per commit (survives power loss); normal: survives process crash only"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct metric reg_m_registers = {.name = "registrar_registers_total",
				 .help = "REGISTER requests answered 200"};
struct metric reg_m_rejected = {.name = "registrar_rejected_total",
				.help = "REGISTER requests refused (4xx/5xx)"};
struct metric reg_m_forbidden = {
    .name = "registrar_forbidden_total",
    .help = "authenticated REGISTERs refused for an AOR that is not the user's (403)"};
struct metric reg_m_no_ob_hop = {
    .name = "registrar_first_hop_lacks_outbound_total",
    .help = "outbound REGISTERs through a first hop without outbound support, refused 439"};
struct metric reg_m_flows_refused = {
    .name = "registrar_flows_per_source_refused_total",
    .help = "new outbound bindings refused 403 at [outbound] max_flows_per_source"};
struct metric reg_m_contacts_refused = {
    .name = "registrar_contacts_per_aor_refused_total",
    .help = "new bindings refused 403 at [registrar] max_contacts (an AOR's bindings and "
	    "flows)"};

int registrar_aor_of(const struct sip_uri *uri, char *out)
{
	if (!slice_eq_cstr_nocase(uri->scheme, "sip") && !slice_eq_cstr_nocase(uri->scheme, "sips"))
		return EINVAL;
	if (uri->user.l == 0 || uri->host.l == 0)
		return EINVAL;
	char tmp[STORE_AOR_MAX * 2];
	size_t n = uri->user.l + 1 + uri->host.l;
	if (n >= sizeof tmp)
		return ENAMETOOLONG;
	memcpy(tmp, uri->user.p, uri->user.l);
	tmp[uri->user.l] = '@';
	memcpy(tmp + uri->user.l + 1, uri->host.p, uri->host.l);
	return store_aor_canon((struct slice){tmp, n}, out);
}

static bool host_ip(struct slice host, struct net_addr *a)
{
	return net_addr_from_host(host, 0, a) == 0;
}

bool registrar_behind_nat(const struct flow *f, const struct sip_via *via,
			  const struct sip_uri *contact)
{
	struct net_addr a;
	/* the Via says where the phone thinks it sends from */
	if (via && host_ip(via->host, &a) && !net_addr_ip_eq(&a, &f->remote))
		return true;
	if (via && f->tp == NET_UDP && (via->port ? via->port : 5060) != net_addr_port(&f->remote))
		return true;
	if (contact && host_ip(contact->host, &a)) {
		if (!net_addr_ip_eq(&a, &f->remote))
			return true;
		if (net_addr_is_private(&a) && !net_addr_is_private(&f->remote))
			return true;
		if (f->tp == NET_UDP &&
		    (contact->port ? contact->port : 5060) != net_addr_port(&f->remote))
			return true;
	}
	return false;
}

struct auth *registrar_auth(struct registrar *r)
{
	return r->auth;
}

int registrar_lookup(struct registrar *r, const char *aor, struct store_binding *out, size_t max,
		     size_t *n)
{
	int err = store_lookup(r->store, slice_cstr(aor), out, max, n);
	return err == ENOBUFS ? 0 : err;
}

int registrar_binding_failed(struct registrar *r, const char *aor, uint64_t id)
{
	/* read afresh: the keepalive state may have moved since the lookup */
	struct store_binding b[32];
	size_t n = 0;
	registrar_lookup(r, aor, b, ARRAY_SIZE(b), &n);
	for (size_t i = 0; i < n; i++) {
		if (b[i].id != id)
			continue;
		struct store_ka ka = b[i].ka;
		ka.unreachable = true;
		return store_ka_set(r->store, slice_cstr(aor), id, &ka);
	}
	return ENOENT;
}

/* ---- one REGISTER in flight ---- */

#define MAX_CONTACTS_PER_REQ 16

struct reg_contact {
	struct sip_nameaddr na;
	uint32_t expires;
	uint16_t q;
	struct slice instance;
	uint32_t reg_id;
};

struct reg_job {
	struct registrar *r;
	struct stsx *st;
	struct worker *w;
	char aor[STORE_AOR_MAX];
	struct flow flow;
	bool behind_nat;
	/* NAT verdict of this REGISTER (nat.c) and what its Via/Contact claim */
	uint8_t nat_verdict;
	uint16_t nat_evidence;
	uint32_t nat_claim;
	bool nat_changed; /* unlike the same phone's previous REGISTER */
	struct sip_via phone_via; /* behind an edge: the phone's Via (slices into st's msg) */
	bool proven; /* the source has shown it is real: see registrar_handle */
	bool star;
	/* RFC 5626 6: outbound applies (the option tag, a reg-id, and a first
	 * hop that does outbound); otherwise every reg-id has been cleared */
	bool outbound;
	/* and we are its first hop (one Via, no Path): we promise the
	 * Flow-Timer and watch the flow's keepalives (RFC 5626 5.4, 6) */
	bool first_hop;
	bool count_src;	 /* outbound bindings count against the source's bound */
	struct net_src_key src; /* flow.remote as a source: IPv4 address, IPv6 /64 */
	bool echo_path;	 /* RFC 3327: the UA supports path and sent one */
	uint32_t flow_timer; /* seconds for the 200's Flow-Timer, 0 = none */
	struct slice call_id, user_agent;
	uint32_t cseq;
	int err; /* store result, filled by done */
	/* a new binding counted against the source: taken back if it is not stored */
	bool claimed;
	uint64_t claimed_id;
	/* counted bindings this REGISTER removes or moves away (released once
	 * the update has gone through) */
	size_t n_released;
	struct {
		struct net_src_key src;
		uint64_t id;
	} released[MAX_CONTACTS_PER_REQ];
	char path[STORE_PATH_MAX]; /* the Path vector: every Path value, in order */
	size_t n, cap;
	struct reg_contact c[]; /* cap slots, not cleared, [0, n) valid */
};

static int parse_q(struct slice v, uint16_t *q)
{
	/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
	if (v.l == 0 || (v.p[0] != '0' && v.p[0] != '1') || (v.l > 1 && v.p[1] != '.') || v.l > 5)
		return EINVAL;
	unsigned val = (unsigned)(v.p[0] - '0') * 1000, scale = 100;
	for (size_t i = 2; i < v.l; i++, scale /= 10) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return EINVAL;
		val += (unsigned)(v.p[i] - '0') * scale;
	}
	if (val > 1000)
		return EINVAL;
	*q = (uint16_t)val;
	return 0;
}

/* RFC 5626 4.1: the instance is a URN, carried as a string feature tag
 * (RFC 3840): +sip.instance="<urn:NID:NSS>" (unquoted, the angle brackets
 * are no gen-value and the Contact does not parse). NID as RFC 8141 has
 * it; NSS printable, without quote, angle bracket or backslash (uric). */
static bool instance_is_urn(struct slice v)
{
	if (v.l < 4 || v.p[0] != '"' || v.p[1] != '<' || v.p[v.l - 2] != '>' ||
	    v.p[v.l - 1] != '"')
		return false;
	v = (struct slice){v.p + 2, v.l - 4};
	if (v.l < 4 || !slice_eq_cstr_nocase((struct slice){v.p, 4}, "urn:"))
		return false;
	size_t i = 4, nid = 0;
	for (; i < v.l && v.p[i] != ':'; i++, nid++) {
		char ch = v.p[i];
		bool alnum = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
			     (ch >= 'A' && ch <= 'Z');
		if (!alnum && (ch != '-' || nid == 0))
			return false;
	}
	if (nid < 1 || nid > 32 || i + 1 >= v.l)
		return false; /* no NID, or no NSS after it */
	for (i++; i < v.l; i++) {
		unsigned char ch = (unsigned char)v.p[i];
		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '<' || ch == '>' || ch == '\\')
			return false;
	}
	return true;
}

/* The header parameters of a Contact that the registrar reads, in one pass
 * (the first of each name counts, as sip_param_find would find it). */
struct contact_params {
	struct sip_param expires, q, instance, reg_id;
	bool has_expires, has_q, has_instance, has_reg_id;
};

static void contact_params(struct slice params, struct contact_params *cp)
{
	memset(cp, 0, sizeof *cp);
	size_t pos = 0;
	struct sip_param p;
	while (sip_param_next(params, &pos, &p) == 1) {
		struct sip_param *slot = NULL;
		bool *has = NULL;
		if (p.name.l == 7 && slice_eq_cstr_nocase(p.name, "expires"))
			slot = &cp->expires, has = &cp->has_expires;
		else if (p.name.l == 1 && (p.name.p[0] == 'q' || p.name.p[0] == 'Q'))
			slot = &cp->q, has = &cp->has_q;
		else if (p.name.l == 13 && slice_eq_cstr_nocase(p.name, "+sip.instance"))
			slot = &cp->instance, has = &cp->has_instance;
		else if (p.name.l == 6 && slice_eq_cstr_nocase(p.name, "reg-id"))
			slot = &cp->reg_id, has = &cp->has_reg_id;
		if (slot && !*has) {
			*slot = p;
			*has = true;
		}
	}
}

/* Fills c[0, *n) from every Contact header, at most cap of them (cap >
 * MAX_CONTACTS_PER_REQ: one more than allowed is refused here), and *star.
 * Returns a status (0 = fine). */
static uint16_t collect_contacts(const struct registrar *r, const struct sip_msg *m,
				 uint32_t hdr_expires, struct reg_contact *c, size_t cap, size_t *n,
				 bool *star, const char **reason)
{
	*n = 0;
	*star = false;
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_CONTACT)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			struct sip_nameaddr na;
			if (sip_nameaddr_parse(v, &na)) {
				*reason = "Bad Contact";
				return 400;
			}
			if (na.star) {
				*star = true;
				continue;
			}
			if (*n == MAX_CONTACTS_PER_REQ || *n == cap) {
				*reason = "Too Many Contacts";
				return 403;
			}
			struct reg_contact *rc = &c[(*n)++];
			memset(rc, 0, sizeof *rc);
			rc->na = na;
			rc->expires = hdr_expires;
			rc->q = 1000;
			struct contact_params cp;
			contact_params(na.params, &cp);
			if (cp.has_expires) {
				/* 10.3 step 7: a malformed value is as if absent: the
				 * Expires header or the default applies */
				uint32_t e;
				if (slice_to_u32(cp.expires.value, UINT32_MAX, &e) == 0)
					rc->expires = e;
			}
			if (cp.has_q && parse_q(cp.q.value, &rc->q)) {
				*reason = "Bad q Value";
				return 400;
			}
			if (cp.has_instance) {
				if (!instance_is_urn(cp.instance.value)) {
					*reason = "+sip.instance Is Not A URN"; /* RFC 5626 4.1 */
					return 400;
				}
				rc->instance = cp.instance.value;
			}
			/* RFC 5626 13: reg-id = 1*DIGIT, from 1 to 2^31 - 1 */
			if (cp.has_reg_id &&
			    (slice_to_u32(cp.reg_id.value, 0x7fffffff, &rc->reg_id) || !rc->reg_id)) {
				*reason = "Bad reg-id";
				return 400;
			}
			/* RFC 5626 6: a reg-id without an instance is not valid, and
			 * the registrar ignores it (a plain binding) */
			if (!rc->instance.l)
				rc->reg_id = 0;
		}
	}
	/* 10.3 step 6: "*" only alone and with Expires: 0 */
	if (*star && (*n || hdr_expires != 0)) {
		*reason = "Wildcard Contact Needs Expires 0 Alone";
		return 400;
	}
	for (size_t i = 0; i < *n; i++) {
		if (c[i].expires && c[i].expires < (uint32_t)r->min_expires)
			return 423;
		if (c[i].expires > (uint32_t)r->max_expires)
			c[i].expires = (uint32_t)r->max_expires;
	}
	return 0;
}

#define EOUTOFORDER 10001

/* A counted binding leaves its source (removed, or moved to another one):
 * noted now, released once the whole update has gone through. */
static void note_release(struct reg_job *j, const struct store_binding *old)
{
	if (!j->r->srcs || !registrar_counts_flow(j->r, old) ||
	    j->n_released == ARRAY_SIZE(j->released))
		return;
	net_addr_src_key(&old->flow.remote, &j->released[j->n_released].src);
	j->released[j->n_released].id = old->id;
	j->n_released++;
}

static bool same_source(const struct net_addr *a, const struct net_src_key *kb)
{
	struct net_src_key ka;
	net_addr_src_key(a, &ka);
	return ka.hi == kb->hi && ka.lo == kb->lo;
}

/* Puts b (new, or in place of binding idx) and, for an outbound binding
 * straight from the phone, counts it against its source first
 * ([outbound] max_flows_per_source): a new binding, or one that moves to
 * this source, needs room there; a refresh from the same source always
 * passes. EDQUOT when the source is full. */
static int put_counted(struct reg_job *j, struct store_view *v, long idx,
		       const struct store_binding *b)
{
	struct registrar *r = j->r;
	const struct store_binding *old = idx >= 0 ? store_view_get(v, (size_t)idx) : NULL;
	bool counted = j->count_src && b->reg_id && r->srcs;
	if (old && (!counted || !same_source(&old->flow.remote, &j->src)))
		note_release(j, old);
	if (!counted)
		return idx >= 0 ? store_view_set(v, (size_t)idx, b) : store_view_put(v, b, NULL);
	bool refresh =
	    old && registrar_counts_flow(r, old) && same_source(&old->flow.remote, &j->src);
	bool reserved;
	uint64_t id = old ? old->id : 0;
	int err = reg_srcs_claim(r->srcs, &j->src, id, refresh, store_view_now(v), b->expires_at,
				 &reserved);
	if (err)
		return err;
	size_t at = (size_t)idx;
	err = idx >= 0 ? store_view_set(v, at, b) : store_view_put(v, b, &at);
	if (err) {
		reg_srcs_cancel(r->srcs, &j->src, reserved);
		return err;
	}
	if (!reserved)
		return 0; /* a refresh the source holds already */
	id = store_view_get(v, at)->id;
	reg_srcs_settle(r->srcs, &j->src, id, b->expires_at, reserved);
	if (!old) {
		j->claimed = true; /* taken back if the update does not go through */
		j->claimed_id = id;
	}
	return 0;
}

/* The update went through: the sources of what it removed or moved let go. */
static void release_noted(struct reg_job *j)
{
	for (size_t i = 0; i < j->n_released; i++)
		reg_srcs_release(j->r->srcs, &j->released[i].src, j->released[i].id);
	j->n_released = 0;
}

/* The update did not go through (refused, or its commit failed): the new
 * binding it counted is not there. */
static void undo_claim(struct reg_job *j)
{
	if (j->claimed)
		reg_srcs_release(j->r->srcs, &j->src, j->claimed_id);
	j->claimed = false;
	j->n_released = 0;
}

/* The verdict goes on the binding; what the previous REGISTER of the same
 * phone (this binding, or another of its Call-ID: a phone that rewrote its
 * Contact) claimed is compared, and a disagreement stays on the binding. */
static void nat_carry(struct reg_job *j, struct store_view *v, long idx, struct store_binding *b)
{
	b->nat_verdict = j->nat_verdict;
	b->nat_evidence = j->nat_evidence;
	b->nat_claim = j->nat_claim;
	for (size_t i = 0; i < store_view_count(v); i++) {
		const struct store_binding *o = store_view_get(v, i);
		bool same = (long)i == idx;
		/* a refresh compares with itself; a new binding with the
		 * phone's others (same Call-ID: its Contact changed) */
		if (!same && (idx >= 0 || strcmp(o->call_id, b->call_id) != 0))
			continue;
		if (same) {
			b->nat_media = o->nat_media;
			b->nat_evidence |= o->nat_evidence & REG_EV_CHANGED;
		}
		if (o->nat_claim && o->nat_claim != j->nat_claim) {
			b->nat_evidence |= REG_EV_CHANGED;
			j->nat_changed = true;
		}
	}
}

/* Runs under the AOR's lock: the whole REGISTER applies or nothing does. */
static int apply_update(struct store_view *v, void *arg)
{
	struct reg_job *j = arg;
	int64_t now = store_view_now(v);
	j->claimed = false;
	j->n_released = 0;
	if (j->star) {
		/* 10.3 step 6: a stale request must not clear newer bindings */
		for (size_t i = 0; i < store_view_count(v); i++) {
			const struct store_binding *b = store_view_get(v, i);
			if (slice_eq(slice_cstr(b->call_id), j->call_id) && j->cseq <= b->cseq)
				return EOUTOFORDER;
		}
		/* nothing can fail past this point: the sources let go at once */
		for (size_t i = 0; j->r->srcs && i < store_view_count(v); i++) {
			const struct store_binding *b = store_view_get(v, i);
			if (registrar_counts_flow(j->r, b)) {
				struct net_src_key k;
				net_addr_src_key(&b->flow.remote, &k);
				reg_srcs_release(j->r->srcs, &k, b->id);
			}
		}
		store_view_clear(v);
		return 0;
	}
	for (size_t i = 0; i < j->n; i++) {
		struct reg_contact *c = &j->c[i];
		struct store_binding b;
		memset(&b, 0, sizeof b);
		if (STORE_SET(b.contact, c->na.uri_s) || STORE_SET(b.instance, c->instance) ||
		    STORE_SET(b.call_id, j->call_id) || STORE_SET(b.path, slice_cstr(j->path)))
			goto fail_long;
		store_field_set(b.user_agent, sizeof b.user_agent,
				(struct slice){j->user_agent.p, MIN(j->user_agent.l,
								    sizeof b.user_agent - 1)});
		b.reg_id = c->reg_id;
		long idx = store_view_find(v, &b);
		if (idx >= 0) {
			const struct store_binding *old = store_view_get(v, (size_t)idx);
			/* 10.3 step 7: same Call-ID must come with a higher CSeq */
			if (strcmp(old->call_id, b.call_id) == 0 && j->cseq <= old->cseq) {
				undo_claim(j);
				return EOUTOFORDER;
			}
			if (c->expires == 0) {
				note_release(j, old);
				store_view_remove(v, (size_t)idx);
				continue;
			}
			/* same flow: keep what keepalives learned, and a REGISTER from
			 * it earns it one more ping; a new flow starts afresh */
			if (flow_eq(&old->flow, &j->flow)) {
				b.ka = old->ka;
				b.ka.failures = 0;
				b.ka.unreachable = false;
				b.ka.last_sent = 0; /* next ping an interval from now */
			}
		} else if (c->expires == 0) {
			continue;
		}
		b.expires_at = now + c->expires;
		b.registered_at = now;
		b.flow = j->flow;
		b.cseq = j->cseq;
		b.q = c->q;
		b.behind_nat = j->behind_nat || registrar_behind_nat(&j->flow, NULL, &c->na.uri);
		nat_carry(j, v, idx, &b);
		if (j->proven)
			b.ka.proven = true;
		int err = put_counted(j, v, idx, &b);
		if (err) {
			undo_claim(j);
			return err;
		}
	}
	release_noted(j);
	return 0;
fail_long:
	undo_claim(j);
	return ENAMETOOLONG;
}

/* "Date: ...\r\n" for now, formatted once a second per thread. */
static const char *date_header(void)
{
	static _Thread_local char date[64];
	static _Thread_local time_t when;
	time_t t = time(NULL);
	if (t != when) {
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(date, sizeof date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		when = t;
	}
	return date;
}

/* Bindings copied for the 200 on the stack: most AORs have one or two, and a
 * heap block of max_contacts x 1,280 bytes per REGISTER was, freed and trimmed
 * each time, a fresh page fault per answer. */
#define REPLY_STACK_BINDINGS 4

/* The AOR's bindings into stack (REPLY_STACK_BINDINGS of them) or, when it
 * has more, a heap block of max_contacts: *bs says which (free it when it is
 * not stack). 0 or ENOMEM. */
static int lookup_all(struct registrar *r, const char *aor, struct store_binding *stack,
		      struct store_binding **bs, size_t *n)
{
	size_t max = MIN((size_t)r->max_contacts, (size_t)REPLY_STACK_BINDINGS);
	*bs = stack;
	*n = 0;
	if (store_lookup(r->store, slice_cstr(aor), stack, max, n) == ENOBUFS &&
	    max < (size_t)r->max_contacts) {
		*bs = malloc(sizeof **bs * (size_t)r->max_contacts);
		if (!*bs)
			return ENOMEM;
		registrar_lookup(r, aor, *bs, (size_t)r->max_contacts, n);
	}
	return 0;
}

/* v in decimal: the 200 is built for every REGISTER, and printf's machinery
 * cost more than the rest of its text together */
static void append_u64(struct buf *b, uint64_t v)
{
	char num[24];
	size_t k = sizeof num;
	do {
		num[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, num + k, sizeof num - k);
}

/* The 200 listing bs[0, n), the AOR's bindings as they are now. */
static void reply_ok(struct reg_job *j, const struct store_binding *bs, size_t n)
{
	struct buf extra;
	buf_init(&extra);
	int64_t now = time_wall_s();
	for (size_t i = 0; i < n; i++) {
		int64_t left = bs[i].expires_at > now ? bs[i].expires_at - now : 0;
		buf_append(&extra, "Contact: <", 10);
		buf_append_cstr(&extra, bs[i].contact);
		buf_append(&extra, ">;expires=", 10);
		append_u64(&extra, (uint64_t)left);
		if (bs[i].q != 1000) {
			char q[8] = {';', 'q', '=', (char)('0' + bs[i].q / 1000), '.',
				     (char)('0' + bs[i].q / 100 % 10), (char)('0' + bs[i].q / 10 % 10),
				     (char)('0' + bs[i].q % 10)};
			buf_append(&extra, q, sizeof q);
		}
		if (bs[i].instance[0]) {
			buf_append(&extra, ";+sip.instance=", 15);
			buf_append_cstr(&extra, bs[i].instance);
		}
		if (bs[i].reg_id) {
			buf_append(&extra, ";reg-id=", 8);
			append_u64(&extra, bs[i].reg_id);
		}
		buf_append(&extra, "\r\n", 2);
	}
	/* RFC 5626 6: Require: outbound exactly when the reg-id was honoured */
	if (j->outbound)
		buf_append_cstr(&extra, "Require: outbound\r\n");
	/* RFC 5626 4.4.1 / 5.4: how often the phone should ping, said by its first hop */
	if (j->flow_timer) {
		buf_append(&extra, "Flow-Timer: ", 12);
		append_u64(&extra, j->flow_timer);
		buf_append(&extra, "\r\n", 2);
	}
	/* RFC 3327 5.3: the stored path vector, to a UA that supports path */
	if (j->echo_path) {
		buf_append(&extra, "Path: ", 6);
		buf_append_cstr(&extra, j->path);
		buf_append(&extra, "\r\n", 2);
	}
	/* what reached us, for the phone to compare with what it sent
	 * (docs/nat-evidence.md); through an edge of ours (a Path) the edge
	 * writes it, having seen the phone's own request */
	const struct sip_msg *sm = stsx_msg(j->st);
	if (!j->path[0] && sm)
		edge_seen_append(&extra, sm, &j->flow.remote, false);
	buf_append_cstr(&extra, date_header());
	buf_append(&extra, "", 1);
	if (extra.failed)
		stsx_reply(j->st, 500, "Server Internal Error", NULL);
	else
		stsx_reply(j->st, 200, "OK", extra.data);
	buf_free(&extra);
	metric_inc(&reg_m_registers);
}

/* A query (no Contact): the 200 with the AOR's bindings. */
static void reply_query(struct reg_job *j)
{
	struct store_binding stack[REPLY_STACK_BINDINGS], *bs;
	size_t n;
	if (lookup_all(j->r, j->aor, stack, &bs, &n)) {
		stsx_reply(j->st, 500, "Server Internal Error", NULL);
		return;
	}
	reply_ok(j, bs, n);
	if (bs != stack)
		free(bs);
}

static void job_finish(void *arg)
{
	struct reg_job *j = arg;
	if (j->err)
		undo_claim(j); /* the commit failed: the binding is not there */
	if (j->err == EOUTOFORDER) {
		metric_inc(&reg_m_rejected);
		stsx_reply(j->st, 500, "Request Out Of Order", "Retry-After: 1\r\n");
	} else if (j->err) {
		metric_inc(&reg_m_rejected);
		/* the store logs its failures once per burst: a line per REGISTER
		 * would flood the log while the disk is full */
		LOG_D("registrar", "%s: store error: %s", j->aor, strerror(j->err));
		stsx_reply(j->st, 500, "Binding Not Stored", "Retry-After: 1\r\n");
	} else {
		/* one lookup for both: the flow table learns what the AOR's
		 * bindings on the flow need (watched before the phone hears the
		 * 200 and starts its keepalives), and the 200 lists them all */
		struct store_binding stack[REPLY_STACK_BINDINGS], *bs;
		size_t n;
		if (lookup_all(j->r, j->aor, stack, &bs, &n)) {
			registrar_flow_sync(j->r, &j->flow, j->aor, j->first_hop);
			stsx_reply(j->st, 500, "Server Internal Error", NULL);
		} else {
			registrar_flow_sync_with(j->r, &j->flow, j->aor, j->first_hop, bs, n);
			if (j->n)
				registrar_nat_count(j->nat_verdict, j->nat_changed);
			reply_ok(j, bs, n);
			if (bs != stack)
				free(bs);
		}
	}
	free(j);
}

/* Store durability callback: any thread; the answer goes out on the job's worker. */
static void job_durable(int err, void *arg)
{
	struct reg_job *j = arg;
	j->err = err;
	if (worker_current() == j->w) {
		job_finish(j);
		return;
	}
	if (loop_post(worker_loop(j->w), job_finish, j))
		LOG_E("registrar", "cannot post REGISTER answer for %s", j->aor);
}

static void log_full(struct registrar *r)
{
	int64_t n;
	if (log_burst_due(&r->full_log, 60000, &n))
		LOG_W("registrar",
		      "refused %lld new bindings: the location store holds [registrar] "
		      "max_bindings; refreshes and removals still pass",
		      (long long)n);
}

/* Refuses a REGISTER: one bounded answer, no transaction kept (stsx_reject),
 * whoever the source claims to be. */
static void reject(struct stsx *st, uint16_t status, const char *reason, const char *extra)
{
	metric_inc(&reg_m_rejected);
	stsx_reject(st, status, reason, extra);
}

/* RFC 3261 10.3 steps 3-4: who sends, and may it touch this AOR? true when
 * the REGISTER may go on; otherwise it has been answered. Unknown users and
 * wrong passwords get the same 401 (a fresh challenge), so that a scanner
 * (sipvicious svwar) learns nothing about which users exist. */
static bool authorize(struct registrar *r, const struct edge_rx *rx, bool *authenticated)
{
	const struct sip_msg *m = rx->msg;
	*authenticated = false;
	if (!auth_active(r->auth))
		return true; /* no users: as before users existed */
	char realm[STORE_CRED_REALM_MAX];
	if (auth_realm(r->auth, &m->to.uri, realm)) {
		reject(rx->st, 404, "Not Found", NULL);
		return false;
	}
	struct auth_result ar;
	struct net_addr src;
	registrar_auth_source(r, &rx->flow, m, &src);
	auth_check(r->auth, m, &src, false, realm, &ar);
	char extra[1024];
	const char *reason;
	uint16_t status =
	    auth_answer(r->auth, &ar, realm, &src, false, &reason, extra, sizeof extra);
	if (status) {
		reject(rx->st, status, reason, extra[0] ? extra : NULL);
		return false;
	}
	/* 10.3 step 4: the user registers its own AOR only (the To user, in the
	 * realm it authenticated for, or a domain of ours under a fixed realm) */
	if (!slice_eq(m->to.uri.user, slice_cstr(ar.user)) ||
	    (!slice_eq_nocase(m->to.uri.host, slice_cstr(realm)) &&
	     !registrar_domain_is_local(r, &m->to.uri))) {
		metric_inc(&reg_m_forbidden);
		reject(rx->st, 403, "Forbidden (Not Your AOR)", NULL);
		return false;
	}
	*authenticated = true;
	return true;
}

/* Via values, counted up to max (across Via header lines). */
static size_t count_vias(const struct sip_msg *m, size_t max)
{
	size_t n = 0;
	const struct sip_hdr *h;
	for (size_t i = 0; n < max && (h = sip_msg_hdr(m, SIP_HDR_VIA, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice v;
		while (n < max && sip_hdr_next_value(h->value, &pos, &v))
			n++;
	}
	return n;
}

/* RFC 3327 5.3: the path vector is every Path value in order; copied into
 * out[STORE_PATH_MAX] joined by ", ". *top_ob says whether its first entry
 * has the ;ob URI parameter (RFC 5626 5.1: that first hop does outbound).
 * 0, EBADMSG (a value that is no name-addr) or ENAMETOOLONG. */
static int path_vector(const struct sip_msg *m, char *out, bool *top_ob)
{
	size_t len = 0;
	const struct sip_hdr *h;
	*top_ob = false;
	out[0] = '\0';
	for (size_t i = 0; (h = sip_msg_hdr(m, SIP_HDR_PATH, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(h->value, &pos, &v)) {
			v = slice_trim(v);
			struct sip_nameaddr na;
			if (sip_nameaddr_parse(v, &na) || na.star)
				return EBADMSG;
			if (len == 0)
				*top_ob = sip_param_find(na.uri.params, "ob", NULL);
			if (len + (len ? 2 : 0) + v.l >= STORE_PATH_MAX)
				return ENAMETOOLONG;
			if (len) {
				memcpy(out + len, ", ", 2);
				len += 2;
			}
			memcpy(out + len, v.p, v.l);
			len += v.l;
			out[len] = '\0';
		}
	}
	return 0;
}

static void log_srcs_full(struct registrar *r, const struct flow *f)
{
	metric_inc(&reg_m_flows_refused);
	int64_t n;
	if (!log_burst_due(&r->srcs_log, 60000, &n))
		return;
	char a[NET_ADDR_STRLEN];
	LOG_W("registrar",
	      "refused %lld new outbound bindings from sources holding [outbound] "
	      "max_flows_per_source = %u already (last %s); refreshes still pass",
	      (long long)n, r->max_flows_per_source, net_addr_fmt(&f->remote, a, sizeof a));
}

/* RFC 5626 6: decides whether outbound applies to j's contacts. Returns 0,
 * or the status to refuse the REGISTER with (439, 400). */
static uint16_t decide_outbound(struct reg_job *j, const struct sip_msg *m, bool top_ob,
				bool has_path, const char **reason)
{
	struct registrar *r = j->r;
	bool tag = sip_msg_has_option(m, SIP_HDR_SUPPORTED, "outbound") ||
		   sip_msg_has_option(m, SIP_HDR_REQUIRE, "outbound");
	/* one Via: the phone sent it to us, and we do outbound; more: the
	 * first hop does outbound only if its Path entry (the first) says ;ob */
	bool first_hop = count_vias(m, 2) == 1;
	bool hop_ob = first_hop || top_ob;
	size_t regids = 0, live = 0;
	for (size_t i = 0; i < j->n; i++) {
		regids += j->c[i].reg_id != 0;
		live += j->c[i].expires != 0;
	}
	if (regids && tag && !hop_ob) {
		metric_inc(&reg_m_no_ob_hop);
		*reason = "First Hop Lacks Outbound Support";
		return 439;
	}
	j->outbound = regids && tag && hop_ob;
	if (!j->outbound) {
		/* no option tag (RFC 3261 8.2.2.3: no extension it did not ask
		 * for), or a first hop without outbound: reg-ids are ignored */
		for (size_t i = 0; i < j->n; i++)
			j->c[i].reg_id = 0;
		return 0;
	}
	/* one flow per REGISTER: more live contacts beside a reg-id SHOULD be 400 */
	if (live > 1) {
		*reason = "One Contact With reg-id Per REGISTER";
		return 400;
	}
	j->first_hop = first_hop && !has_path;
	if (j->first_hop && live)
		j->flow_timer = registrar_flow_timer(r, j->flow.tp);
	j->count_src = r->srcs && !has_path && !registrar_source_trusted(r, &j->flow.remote);
	return 0;
}

void registrar_handle(struct registrar *r, const struct edge_rx *rx)
{
	const struct sip_msg *m = rx->msg;
	struct stsx *st = rx->st;
	const char *why = NULL;
	uint16_t refuse = registrar_admit(r, rx, &why);
	if (refuse) {
		reject(st, refuse, why, NULL);
		return;
	}
	/* 10.3 step 2 (Require) */
	const struct sip_hdr *req;
	for (size_t i = 0; (req = sip_msg_hdr(m, SIP_HDR_REQUIRE, i)) != NULL; i++) {
		size_t pos = 0;
		struct slice tag;
		while (sip_hdr_next_value(req->value, &pos, &tag)) {
			tag = slice_trim(tag);
			if (!slice_eq_cstr_nocase(tag, "outbound") &&
			    !slice_eq_cstr_nocase(tag, "path")) {
				char extra[160];
				snprintf(extra, sizeof extra, "Unsupported: %.*s\r\n",
					 (int)MIN(tag.l, 100), tag.p);
				reject(st, 420, "Bad Extension", extra);
				return;
			}
		}
	}
	/* A Path names where requests for the phone will go (RFC 3327): only
	 * a trusted hop (an edge of ours) may set one, or a stranger could aim
	 * our INVITEs at any host. Before authentication: a user's credentials
	 * do not make its Path any safer for the third host. */
	bool has_path = sip_msg_hdr(m, SIP_HDR_PATH, 0) != NULL;
	if (has_path && !registrar_source_trusted(r, &rx->flow.remote)) {
		registrar_log_path_untrusted(r, &rx->flow);
		reject(st, 403, "Forbidden (Path From Untrusted Hop)", NULL);
		return;
	}
	bool authenticated;
	if (!authorize(r, rx, &authenticated))
		return;
	const struct sip_msg *sm = stsx_msg(st); /* the copy that outlives this call */
	char aor[STORE_AOR_MAX];
	if (registrar_aor_of(&sm->to.uri, aor)) {
		reject(st, 404, "Not Found", NULL); /* 10.3 step 3: not an AOR of ours */
		return;
	}
	uint32_t hdr_expires = (uint32_t)r->default_expires;
	const struct sip_hdr *eh = sip_msg_hdr(sm, SIP_HDR_EXPIRES, 0);
	if (eh && slice_to_u32(slice_trim(eh->value), UINT32_MAX, &hdr_expires))
		hdr_expires = (uint32_t)r->default_expires;
	/* parsed here, then copied into a job of just that many slots (most
	 * REGISTERs have one): one pass over the Contacts, not a count first */
	struct reg_contact cs[MAX_CONTACTS_PER_REQ];
	size_t ncs;
	bool star;
	const char *reason = "Bad Request";
	uint16_t status =
	    collect_contacts(r, sm, hdr_expires, cs, ARRAY_SIZE(cs), &ncs, &star, &reason);
	if (status == 423) {
		char extra[64];
		snprintf(extra, sizeof extra, "Min-Expires: %lld\r\n", (long long)r->min_expires);
		reject(st, 423, "Interval Too Brief", extra);
		return;
	}
	if (status) {
		reject(st, status, reason, NULL);
		return;
	}
	/* only the head is cleared: the contact slots are copied in */
	struct reg_job *j = malloc(sizeof *j + ncs * sizeof j->c[0]);
	if (!j) {
		reject(st, 500, "Server Internal Error", NULL);
		return;
	}
	memset(j, 0, sizeof *j);
	memcpy(j->c, cs, ncs * sizeof j->c[0]);
	j->n = j->cap = ncs;
	j->star = star;
	memcpy(j->aor, aor, sizeof aor);
	j->r = r;
	j->st = st;
	j->w = rx->w;
	j->flow = rx->flow;
	net_addr_src_key(&rx->flow.remote, &j->src);
	bool top_ob = false;
	if (!status && has_path) {
		int perr = path_vector(sm, j->path, &top_ob);
		if (perr == ENAMETOOLONG) {
			status = 403; /* ours to store: a longer one is no use to us */
			reason = "Path Too Long";
		} else if (perr) {
			status = 400;
			reason = "Bad Path";
		}
	}
	if (!status)
		status = decide_outbound(j, sm, top_ob, has_path, &reason);
	if (status) {
		free(j);
		reject(st, status, reason, NULL);
		return;
	}
	/* a user who proved its password is bounded per AOR (max_contacts);
	 * the per-source bound is for what strangers may create (no users,
	 * open mode), and would refuse the phones behind one carrier NAT */
	if (authenticated)
		j->count_src = false;
	j->echo_path = has_path && (sip_msg_has_option(sm, SIP_HDR_SUPPORTED, "path") ||
				    sip_msg_has_option(sm, SIP_HDR_REQUIRE, "path"));
	j->call_id = sm->call_id;
	j->cseq = sm->cseq.num;
	const struct sip_hdr *ua = sip_msg_hdr(sm, SIP_HDR_USER_AGENT, 0);
	j->user_agent = ua ? ua->value : SLICE_NULL;
	j->behind_nat = registrar_behind_nat(&rx->flow, &sm->via1, NULL);
	registrar_nat_request(r, &rx->flow, sm, j->n ? &j->c[0].na.uri : NULL, has_path,
			      &j->phone_via, &j->nat_verdict, &j->nat_evidence, &j->nat_claim);
	/* Server pings go only where the source has shown it is real
	 * (keepalive.c): a REGISTER whose credentials were checked, or one
	 * over a stream, whose peer completed a handshake from its address.
	 * Credentials verify only over a nonce that was sent to this source
	 * address (auth.h: the IPv4 address or IPv6 /64, not the port), so
	 * the sender received there: a user cannot aim pings at a third host
	 * by forging a UDP source, only at other ports of its own address
	 * (IPv6: other addresses of its own /64). */
	j->proven = authenticated || rx->flow.tp != NET_UDP;
	if (j->n == 0 && !j->star) {
		/* 10.3 step 8 with no Contact: a query */
		reply_query(j);
		free(j);
		return;
	}
	int err = store_update(r->store, slice_cstr(j->aor), apply_update, j, job_durable, j);
	if (err)
		undo_claim(j); /* nothing changed: done is not called, j is ours */
	if (err == EOUTOFORDER) {
		free(j);
		reject(st, 500, "Request Out Of Order", "Retry-After: 1\r\n");
	} else if (err == ENOSPC) {
		free(j);
		metric_inc(&reg_m_contacts_refused);
		reject(st, 403, "Too Many Bindings", NULL);
	} else if (err == EDQUOT) {
		/* max_flows_per_source: new flows from a full source give way,
		 * its refreshes and everyone else's go on */
		log_srcs_full(r, &rx->flow);
		free(j);
		reject(st, 403, "Too Many Flows From This Source", NULL);
	} else if (err == EAGAIN) {
		/* max_bindings: a table a stranger can grow (no users, open mode)
		 * gives way to new bindings, never to refreshes */
		free(j);
		log_full(r);
		reject(st, 503, "Service Unavailable (Binding Table Full)", r->retry_after_hdr);
	} else if (err) {
		free(j);
		reject(st, 500, "Binding Not Stored", "Retry-After: 1\r\n");
	}
	/* else: job_durable answers, maybe already did */
}
