/* The flow table: the flows bindings use, their keepalives, and one wheel for liveness checks and
 * server pings. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

/* 32 shards keep workers apart on the keepalive path. A wheel slot is a
 * quarter second (what a deadline may be late by, beyond the tick's own
 * lateness), and 1,024 of them cover the default intervals in one round:
 * a deadline further away sits out whole rounds, one look per round. */
#define FLOW_SHARDS 32
#define WHEEL_SLOTS 1024
#define SLOT_MS 250
#define FLOW_BUCKETS_MIN 16
/* a failed entry stays this long, for ctl flows, before it goes */
#define FLOW_LINGER_S 60

/* Who bound an entry: its AOR and instance, each with its NUL, in one block
 * of their size (a usual phone's is some 80 bytes). Owned by the entry. */
struct fowner {
	uint32_t reg_id;
	uint16_t inst; /* where the instance starts in s */
	char s[];      /* aor NUL instance NUL */
};

static const char *owner_aor(const struct fowner *o)
{
	return o->s;
}

static const char *owner_instance(const struct fowner *o)
{
	return o->s + o->inst;
}

/* A block for b's owner, or NULL (no memory). Bounded: aor by bind's check,
 * instance cut at EDGE_FLOW_INSTANCE_MAX - 1. */
static struct fowner *owner_new(const struct edge_flow_bind *b)
{
	const char *inst = b->instance ? b->instance : "";
	size_t la = strlen(b->aor), li = strnlen(inst, EDGE_FLOW_INSTANCE_MAX - 1);
	struct fowner *o = malloc(sizeof *o + la + 1 + li + 1);
	if (!o)
		return NULL;
	o->reg_id = b->reg_id;
	o->inst = (uint16_t)(la + 1);
	memcpy(o->s, b->aor, la + 1);
	memcpy(o->s + la + 1, inst, li);
	o->s[la + 1 + li] = '\0';
	return o;
}

static bool owner_same(const struct fowner *o, const struct edge_flow_bind *b)
{
	const char *inst = b->instance ? b->instance : "";
	return o->reg_id == b->reg_id && strcmp(owner_aor(o), b->aor) == 0 &&
	       strncmp(owner_instance(o), inst, EDGE_FLOW_INSTANCE_MAX - 1) == 0 &&
	       strlen(owner_instance(o)) == strnlen(inst, EDGE_FLOW_INSTANCE_MAX - 1);
}

/* One (flow, owner). Owned by its shard; touched under the shard's lock.
 * What a keepalive reads and writes is in the first cache line: the chain,
 * the hash (for a stream, mix64 of its connection id: equal hashes are the
 * same connection) and the time. */
struct fentry {
	struct fentry *hnext; /* hash chain */
	uint64_t h;	      /* flow_hash(&flow) */
	uint64_t last_ka_ms;
	uint8_t tp;   /* flow.tp */
	uint8_t kind; /* enum edge_ka_kind of the last keepalive, 0 = none */
	bool failed;
	uint8_t cause;
	uint32_t check_s, ping_s;
	struct fowner *owner;	       /* NULL: belongs to no binding */
	struct fentry *wnext, **wprev; /* wheel slot list; wprev NULL when out of the wheel */
	struct fentry *unext, *uprev;  /* the shard's unbound entries, oldest first */
	uint64_t opened_ms, bound_ms, next_ping_ms, expires_ms, failed_ms;
	uint64_t due_u; /* its wheel slot's time, in SLOT_MS units */
	struct flow flow;
};

struct fshard {
	pthread_mutex_t lock;
	struct fentry **hash; /* n_buckets chains, a power of two */
	size_t n_buckets, n, n_unowned;
	struct fentry *u_head, *u_tail;
	struct fentry *wheel[WHEEL_SLOTS];
	uint64_t tick_u; /* the last slot time the wheel has run; 0 = not yet */
};

struct edge_flows {
	struct fshard sh[FLOW_SHARDS];
	size_t max, shard_max_unowned; /* RO after alloc */
	_Atomic size_t n_all;          /* entries over all shards */
	unsigned margin_s, idle_udp_s, idle_tcp_s;
	struct net *net; /* RO; NULL in tests without one */
	edge_flow_fail_h *on_fail; /* RO after setup */
	edge_flow_ping_h *on_ping;
	void *arg;
};

static struct metric m_opened = {
    .name = "flows_opened_total",
    .help = "flow table entries made (a bind, or a keepalive on an unknown flow)"};
static struct metric m_closed = {
    .name = "flows_closed_total",
    .help = "flow table entries gone (closed, expired, idle, let go, evicted)"};
static struct metric m_failed[3] = {
    {.name = "flows_failed_total",
     .help = "bound flows failed, by cause",
     .labels = "cause=\"keepalive\""},
    {.name = "flows_failed_total",
     .help = "bound flows failed, by cause",
     .labels = "cause=\"closed\""},
    {.name = "flows_failed_total",
     .help = "bound flows failed, by cause",
     .labels = "cause=\"send\""},
};
static struct metric m_seen[2] = {
    {.name = "keepalives_seen_total",
     .help = "client keepalives received on SIP ports",
     .labels = "kind=\"stun\""},
    {.name = "keepalives_seen_total",
     .help = "client keepalives received on SIP ports",
     .labels = "kind=\"crlf\""},
};
static struct metric m_evicted = {
    .name = "flows_evicted_total",
    .help = "flows of no binding that gave way to newer ones at [outbound] max_flows"};
static struct metric m_refused = {
    .name = "flows_refused_total",
    .help = "bound flows not watched: the table was full of bound flows ([outbound] max_flows)"};
static struct metric m_flows = {.name = "flows", .help = "flow table entries", .gauge = true};

static const char *const cause_names[] = {"keepalive", "closed", "send"};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* Streams by connection (what a close names), datagrams by listener and source. */
static uint64_t flow_hash(const struct flow *f)
{
	if (f->tp != NET_UDP)
		return mix64(f->conn_id);
	return mix64(net_addr_hash(&f->remote) ^ ((uint64_t)f->listener << 48));
}

static bool same_flow(const struct flow *a, const struct flow *b)
{
	if (a->tp != b->tp)
		return false;
	if (a->tp != NET_UDP)
		return a->conn_id == b->conn_id;
	return a->listener == b->listener && net_addr_eq(&a->remote, &b->remote);
}

/* Whether e is f's entry (h = flow_hash(f)): streams by hash alone (mix64
 * is a bijection of the connection id), datagrams by hash and then key. */
static bool entry_is(const struct fentry *e, uint64_t h, const struct flow *f)
{
	return e->h == h && e->tp == f->tp && (f->tp != NET_UDP || same_flow(&e->flow, f));
}

static struct fshard *shard_of(struct edge_flows *fl, uint64_t h)
{
	return &fl->sh[h % FLOW_SHARDS];
}

static struct fentry **bucket_of(struct fshard *s, uint64_t h)
{
	return &s->hash[(h / FLOW_SHARDS) & (s->n_buckets - 1)];
}

int edge_flows_alloc(struct edge_flows **fp, const struct edge_flows_conf *c)
{
	struct edge_flows *fl = calloc(1, sizeof *fl);
	if (!fl)
		return ENOMEM;
	size_t max = c->max_flows ? c->max_flows : 1000000;
	fl->max = max;
	fl->shard_max_unowned = MAX((size_t)1, (max + FLOW_SHARDS - 1) / FLOW_SHARDS / 16);
	fl->margin_s = c->margin_s;
	fl->net = c->net;
	fl->idle_udp_s = c->idle_udp_s ? c->idle_udp_s : 35;
	fl->idle_tcp_s = c->idle_tcp_s ? c->idle_tcp_s : 130;
	for (unsigned i = 0; i < FLOW_SHARDS; i++) {
		struct fshard *s = &fl->sh[i];
		pthread_mutex_init(&s->lock, NULL);
		s->n_buckets = FLOW_BUCKETS_MIN;
		s->hash = calloc(s->n_buckets, sizeof *s->hash);
		if (!s->hash) {
			edge_flows_free(fl);
			return ENOMEM;
		}
	}
	metric_register(&m_opened);
	metric_register(&m_closed);
	for (int i = 0; i < 3; i++)
		metric_register(&m_failed[i]);
	metric_register(&m_seen[0]);
	metric_register(&m_seen[1]);
	metric_register(&m_evicted);
	metric_register(&m_refused);
	metric_register(&m_flows);
	*fp = fl;
	return 0;
}

void edge_flows_free(struct edge_flows *fl)
{
	if (!fl)
		return;
	for (unsigned i = 0; i < FLOW_SHARDS; i++) {
		struct fshard *s = &fl->sh[i];
		for (size_t b = 0; s->hash && b < s->n_buckets; b++) {
			while (s->hash[b]) {
				struct fentry *e = s->hash[b];
				s->hash[b] = e->hnext;
				free(e->owner);
				free(e);
				metric_add(&m_flows, -1);
			}
		}
		free(s->hash);
		pthread_mutex_destroy(&s->lock);
	}
	free(fl);
}

void edge_flows_set_handlers(struct edge_flows *fl, edge_flow_fail_h *fail, edge_flow_ping_h *ping,
			     void *arg)
{
	fl->on_fail = fail;
	fl->on_ping = ping;
	fl->arg = arg;
}

/* ---- the wheel ---- */

static void wheel_unlink(struct fentry *e)
{
	if (!e->wprev)
		return;
	*e->wprev = e->wnext;
	if (e->wnext)
		e->wnext->wprev = e->wprev;
	e->wnext = NULL;
	e->wprev = NULL;
}

/* Puts e in the slot of time due_u (never one the wheel has passed). */
static void wheel_at(struct fshard *s, struct fentry *e, uint64_t due_u)
{
	wheel_unlink(e);
	if (s->tick_u && due_u <= s->tick_u)
		due_u = s->tick_u + 1;
	e->due_u = due_u;
	struct fentry **head = &s->wheel[due_u % WHEEL_SLOTS];
	e->wnext = *head;
	if (*head)
		(*head)->wprev = &e->wnext;
	e->wprev = head;
	*head = e;
}

/* The first slot time strictly after ms. */
static uint64_t slot_after(uint64_t ms)
{
	return ms / SLOT_MS + 1;
}

/* ---- entries ---- */

static void unowned_unlink(struct fshard *s, struct fentry *e)
{
	if (e->uprev)
		e->uprev->unext = e->unext;
	else if (s->u_head == e)
		s->u_head = e->unext;
	else
		return; /* not in the list */
	if (e->unext)
		e->unext->uprev = e->uprev;
	else
		s->u_tail = e->uprev;
	e->unext = e->uprev = NULL;
	s->n_unowned--;
}

static void unowned_push(struct fshard *s, struct fentry *e)
{
	e->unext = NULL;
	e->uprev = s->u_tail;
	if (s->u_tail)
		s->u_tail->unext = e;
	else
		s->u_head = e;
	s->u_tail = e;
	s->n_unowned++;
}

static void entry_remove(struct edge_flows *fl, struct fshard *s, struct fentry *e)
{
	struct fentry **pp = bucket_of(s, e->h);
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	wheel_unlink(e);
	if (!e->owner)
		unowned_unlink(s, e);
	free(e->owner);
	free(e);
	s->n--;
	atomic_fetch_sub(&fl->n_all, 1);
	metric_inc(&m_closed);
	metric_add(&m_flows, -1);
}

/* Doubles the shard's buckets when it holds more entries than buckets. */
static void maybe_grow(struct fshard *s)
{
	if (s->n < s->n_buckets)
		return;
	size_t nb = s->n_buckets * 2;
	struct fentry **nh = calloc(nb, sizeof *nh);
	if (!nh)
		return; /* longer chains, still correct */
	for (size_t b = 0; b < s->n_buckets; b++) {
		while (s->hash[b]) {
			struct fentry *e = s->hash[b];
			s->hash[b] = e->hnext;
			struct fentry **head = &nh[(e->h / FLOW_SHARDS) & (nb - 1)];
			e->hnext = *head;
			*head = e;
		}
	}
	free(s->hash);
	s->hash = nh;
	s->n_buckets = nb;
}

/* Room for one more entry in s: at the table's bound (counted over all
 * shards, so that flows spread unevenly over the shards are not refused
 * before the table holds max) the shard's oldest unbound entry gives way;
 * also, for a new unbound one, at the shard's unbound bound. false when
 * nothing may give way. The count is read outside the other shards' locks:
 * workers racing at the bound may pass it by one each. */
static bool make_room(struct edge_flows *fl, struct fshard *s, bool for_unowned)
{
	bool full = atomic_load(&fl->n_all) >= fl->max ||
		    (for_unowned && s->n_unowned >= fl->shard_max_unowned);
	if (!full)
		return true;
	if (!s->u_head)
		return false;
	entry_remove(fl, s, s->u_head);
	metric_inc(&m_evicted);
	return true;
}

static struct fentry *entry_new(struct edge_flows *fl, struct fshard *s, const struct flow *f,
				uint64_t h, uint64_t now_ms)
{
	struct fentry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->flow = *f;
	e->h = h;
	e->tp = (uint8_t)f->tp;
	e->opened_ms = now_ms;
	struct fentry **head = bucket_of(s, h);
	e->hnext = *head;
	*head = e;
	s->n++;
	atomic_fetch_add(&fl->n_all, 1);
	metric_inc(&m_opened);
	metric_add(&m_flows, 1);
	maybe_grow(s);
	return e;
}

/* The idle deadline of an unbound entry: it goes when nothing keeps it. */
static void schedule_unowned(struct edge_flows *fl, struct fshard *s, struct fentry *e)
{
	unsigned idle = e->flow.tp == NET_UDP ? fl->idle_udp_s : fl->idle_tcp_s;
	wheel_at(s, e, slot_after(e->last_ka_ms + (uint64_t)idle * 1000));
}

/* The keepalive deadline of a bound entry that promised an interval. */
static uint64_t check_deadline(const struct edge_flows *fl, const struct fentry *e)
{
	uint64_t since = MAX(e->last_ka_ms, e->bound_ms);
	return since + ((uint64_t)e->check_s + fl->margin_s) * 1000;
}

/* Puts a bound, alive entry at its next deadline: silence, ping or expiry. */
static void schedule_owned(struct edge_flows *fl, struct fshard *s, struct fentry *e)
{
	uint64_t next = UINT64_MAX;
	if (e->check_s)
		next = MIN(next, check_deadline(fl, e));
	if (e->ping_s)
		next = MIN(next, e->next_ping_ms ? e->next_ping_ms - 1 : 0);
	if (e->expires_ms)
		next = MIN(next, e->expires_ms);
	if (next == UINT64_MAX)
		wheel_unlink(e); /* nothing to wait for: out of the wheel until it changes */
	else
		wheel_at(s, e, slot_after(next));
}

/* When a failed entry goes. A stream's close is final and the net knows it
 * (net_conn_alive): a minute, for the dump. A datagram flow's failure is
 * known only here, and its address may be sent to again: it stays failed
 * until its binding expires (at least that minute), so that a request
 * routed over it by its token gets 430 for as long as the binding could
 * send one there, not only in the first minute; a REGISTER over the flow
 * binds it alive again, an unbind takes it away. No growth: a bound entry
 * held its place until then anyway. */
static uint64_t failed_until(const struct fentry *e)
{
	uint64_t t = e->failed_ms + FLOW_LINGER_S * 1000;
	return e->tp == NET_UDP ? MAX(t, e->expires_ms) : t;
}

/* Fails a bound entry: its owner hears it; the entry stays, failed, until
 * failed_until, unless the owner had let go of the flow. Shard locked. */
static void entry_fail(struct edge_flows *fl, struct fshard *s, struct fentry *e,
		       enum edge_flow_cause cause, uint64_t now_ms)
{
	if (e->failed || !e->owner)
		return;
	size_t used = fl->on_fail ? fl->on_fail(&e->flow, owner_aor(e->owner), cause, fl->arg) : 1;
	if (!used) {
		entry_remove(fl, s, e); /* its bindings moved or went: nothing failed */
		return;
	}
	e->failed = true;
	e->cause = (uint8_t)cause;
	e->failed_ms = now_ms;
	metric_inc(&m_failed[cause]);
	wheel_at(s, e, slot_after(failed_until(e)));
}

static struct fentry *find(struct fshard *s, uint64_t h, const struct flow *f, const char *aor)
{
	for (struct fentry *e = *bucket_of(s, h); e; e = e->hnext) {
		if (!entry_is(e, h, f))
			continue;
		if (!aor ? !e->owner
			 : (!aor[0] || (e->owner && strcmp(owner_aor(e->owner), aor) == 0)))
			return e;
	}
	return NULL;
}

void edge_flows_keepalive(struct edge_flows *fl, const struct flow *f, enum edge_ka_kind kind,
			  uint64_t now_ms)
{
	metric_inc(&m_seen[kind == EDGE_KA_STUN ? 0 : 1]);
	uint64_t h = flow_hash(f);
	struct fshard *s = shard_of(fl, h);
	pthread_mutex_lock(&s->lock);
	bool any = false;
	for (struct fentry *e = *bucket_of(s, h); e; e = e->hnext) {
		if (!entry_is(e, h, f))
			continue;
		any = true;
		/* only the time: the wheel finds the entry later at its old
		 * deadline, sees this, and moves it on (once per interval) */
		e->last_ka_ms = now_ms;
		e->kind = (uint8_t)kind;
	}
	/* an unknown flow gets an entry for a STUN request (answered, so within
	 * its source's STUN budget) or a CRLF over a connection (bounded by the
	 * connection caps), not for a CRLF datagram: anyone may send those at
	 * any rate, and an entry says nothing for a flow that never registers */
	bool create = kind == EDGE_KA_STUN || f->tp != NET_UDP;
	if (!any && create && make_room(fl, s, true)) {
		struct fentry *e = entry_new(fl, s, f, h, now_ms);
		if (e) {
			e->last_ka_ms = now_ms;
			e->kind = (uint8_t)kind;
			unowned_push(s, e);
			schedule_unowned(fl, s, e);
		}
	}
	pthread_mutex_unlock(&s->lock);
}

int edge_flows_bind(struct edge_flows *fl, const struct flow *f, const struct edge_flow_bind *b,
		    uint64_t now_ms)
{
	if (!b->aor || !b->aor[0] || strlen(b->aor) >= EDGE_FLOW_AOR_MAX)
		return EINVAL;
	uint64_t h = flow_hash(f);
	struct fshard *s = shard_of(fl, h);
	int err = 0;
	pthread_mutex_lock(&s->lock);
	struct fentry *e = find(s, h, f, b->aor);
	if (!e && (e = find(s, h, f, NULL)) != NULL) {
		/* the flow was seen before it was bound: adopt its entry */
		unowned_unlink(s, e);
	} else if (!e) {
		if (!make_room(fl, s, false)) {
			metric_inc(&m_refused);
			err = ENOSPC;
			goto out;
		}
		if (!(e = entry_new(fl, s, f, h, now_ms))) {
			err = ENOMEM;
			goto out;
		}
	}
	if (!e->owner || !owner_same(e->owner, b)) {
		struct fowner *o = owner_new(b);
		if (!o) {
			if (!e->owner)
				entry_remove(fl, s, e);
			err = ENOMEM;
			goto out;
		}
		free(e->owner);
		e->owner = o;
	}
	e->flow = *f;
	e->check_s = b->check_s;
	e->ping_s = b->ping_s;
	e->bound_ms = now_ms;
	e->next_ping_ms = b->ping_s ? now_ms + (uint64_t)b->ping_s * 1000 : 0;
	e->expires_ms = b->expires_s ? now_ms + (uint64_t)b->expires_s * 1000 : 0;
	e->failed = false;
	schedule_owned(fl, s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return err;
}

void edge_flows_unbind(struct edge_flows *fl, const struct flow *f, const char *aor)
{
	if (!aor || !aor[0])
		return;
	uint64_t h = flow_hash(f);
	struct fshard *s = shard_of(fl, h);
	pthread_mutex_lock(&s->lock);
	struct fentry *e = find(s, h, f, aor);
	if (e)
		entry_remove(fl, s, e);
	pthread_mutex_unlock(&s->lock);
}

bool edge_flows_failed(struct edge_flows *fl, const struct flow *f)
{
	uint64_t h = flow_hash(f);
	struct fshard *s = shard_of(fl, h);
	bool failed = false, alive = false;
	pthread_mutex_lock(&s->lock);
	for (struct fentry *e = *bucket_of(s, h); e; e = e->hnext) {
		if (!entry_is(e, h, f) || !e->owner)
			continue;
		failed |= e->failed;
		alive |= !e->failed;
	}
	pthread_mutex_unlock(&s->lock);
	return failed && !alive;
}

/* Fails (or, unbound, drops) every entry of the stream flow f; conn_id only
 * when f is NULL. */
static void fail_conn(struct edge_flows *fl, const struct flow *f, uint64_t conn_id,
		      enum edge_flow_cause cause, uint64_t now_ms)
{
	struct flow key = {.tp = NET_TCP, .conn_id = conn_id};
	if (f)
		key = *f;
	if (key.tp == NET_UDP || !key.conn_id)
		return;
	uint64_t h = flow_hash(&key);
	struct fshard *s = shard_of(fl, h);
	pthread_mutex_lock(&s->lock);
	struct fentry *e = *bucket_of(s, h);
	while (e) {
		struct fentry *next = e->hnext;
		if (e->h == h && e->tp != NET_UDP) { /* ids are unique across transports */
			if (e->owner)
				entry_fail(fl, s, e, cause, now_ms);
			else
				entry_remove(fl, s, e);
		}
		e = next;
	}
	pthread_mutex_unlock(&s->lock);
}

void edge_flows_conn_closed(struct edge_flows *fl, uint64_t conn_id, uint64_t now_ms)
{
	fail_conn(fl, NULL, conn_id, EDGE_FLOW_CLOSED, now_ms);
}

void edge_flows_send_failed(struct edge_flows *fl, const struct flow *f, uint64_t now_ms)
{
	fail_conn(fl, f, 0, EDGE_FLOW_SEND, now_ms);
}

/* One entry whose slot came up at now: what it waited for. */
static void entry_due(struct edge_flows *fl, struct fshard *s, struct fentry *e, uint64_t now_ms)
{
	if (e->failed) {
		if (now_ms >= failed_until(e))
			entry_remove(fl, s, e);
		else
			wheel_at(s, e, slot_after(failed_until(e)));
		return;
	}
	if (!e->owner) {
		unsigned idle = e->flow.tp == NET_UDP ? fl->idle_udp_s : fl->idle_tcp_s;
		if (now_ms > e->last_ka_ms + (uint64_t)idle * 1000)
			entry_remove(fl, s, e);
		else
			schedule_unowned(fl, s, e);
		return;
	}
	if (e->expires_ms && now_ms >= e->expires_ms) {
		entry_remove(fl, s, e); /* its binding was not refreshed */
		return;
	}
	/* RFC 5626 4.4.1 has the phone ping within the Flow-Timer; we wait that
	 * and the margin, and not a millisecond less */
	if (e->check_s && now_ms > check_deadline(fl, e)) {
		entry_fail(fl, s, e, EDGE_FLOW_KEEPALIVE, now_ms);
		return;
	}
	if (e->ping_s && now_ms >= e->next_ping_ms) {
		if (fl->on_ping && fl->on_ping(&e->flow, owner_aor(e->owner), fl->arg))
			e->next_ping_ms = now_ms + (uint64_t)e->ping_s * 1000;
		else
			e->ping_s = 0;
	}
	schedule_owned(fl, s, e);
}

void edge_flows_tick(struct edge_flows *fl, uint64_t now_ms)
{
	uint64_t now_u = now_ms / SLOT_MS;
	for (unsigned i = 0; i < FLOW_SHARDS; i++) {
		struct fshard *s = &fl->sh[i];
		pthread_mutex_lock(&s->lock);
		/* the slots since the last tick, each at most once (the first
		 * tick, or one after a long stall, looks at every slot) */
		uint64_t from;
		if (s->tick_u >= now_u)
			from = now_u + 1; /* this slot is done */
		else if (s->tick_u && now_u - s->tick_u < WHEEL_SLOTS)
			from = s->tick_u + 1;
		else
			from = now_u >= WHEEL_SLOTS ? now_u - (WHEEL_SLOTS - 1) : 0;
		s->tick_u = MAX(s->tick_u, now_u);
		for (uint64_t u = from; u <= now_u; u++) {
			struct fentry *list = s->wheel[u % WHEEL_SLOTS];
			s->wheel[u % WHEEL_SLOTS] = NULL;
			if (list)
				list->wprev = &list; /* detach the slot as a list of our own */
			while (list) {
				struct fentry *e = list;
				wheel_unlink(e);
				if (e->due_u > now_u)
					wheel_at(s, e, e->due_u); /* a later round */
				else
					entry_due(fl, s, e, now_ms);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* ---- seeing inside ---- */

static void info_of(const struct fentry *e, struct edge_flow_info *out)
{
	memset(out, 0, sizeof *out);
	out->flow = e->flow;
	out->opened_ms = e->opened_ms;
	out->last_ka_ms = e->last_ka_ms;
	out->last_kind = (enum edge_ka_kind)e->kind;
	out->owned = e->owner != NULL;
	out->failed = e->failed;
	out->cause = (enum edge_flow_cause)e->cause;
	if (e->owner) {
		snprintf(out->aor, sizeof out->aor, "%s", owner_aor(e->owner));
		snprintf(out->instance, sizeof out->instance, "%s", owner_instance(e->owner));
		out->reg_id = e->owner->reg_id;
	}
	out->check_s = e->check_s;
	out->ping_s = e->ping_s;
}

int edge_flows_get(struct edge_flows *fl, const struct flow *f, const char *aor,
		   struct edge_flow_info *out)
{
	uint64_t h = flow_hash(f);
	struct fshard *s = shard_of(fl, h);
	pthread_mutex_lock(&s->lock);
	struct fentry *e = find(s, h, f, aor ? aor : "");
	if (e)
		info_of(e, out);
	pthread_mutex_unlock(&s->lock);
	return e ? 0 : ENOENT;
}

typedef void(dump_h)(struct edge_flows *fl, const struct edge_flow_info *fi, uint64_t now_ms, struct buf *out,
		     bool *first);

/* Formats each shard under its lock: a copy of one entry at a time. */
static int dump(struct edge_flows *fl, uint64_t now_ms, struct buf *out, dump_h *h)
{
	bool first = true;
	for (unsigned i = 0; i < FLOW_SHARDS; i++) {
		struct fshard *s = &fl->sh[i];
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->n_buckets; b++) {
			for (struct fentry *e = s->hash[b]; e; e = e->hnext) {
				struct edge_flow_info fi;
				info_of(e, &fi);
				h(fl, &fi, now_ms, out, &first);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
	return out->failed ? ENOMEM : 0;
}

static long long ago_s(uint64_t now_ms, uint64_t then_ms)
{
	return then_ms ? (long long)((now_ms > then_ms ? now_ms - then_ms : 0) / 1000) : -1;
}

static const char *state_of(const struct edge_flow_info *fi)
{
	return !fi->failed ? "alive" : cause_names[fi->cause];
}

/* A TLS flow's protocol version and peer certificate subject, "" else. */
static void tls_of(struct edge_flows *fl, const struct flow *f, char *ver, size_t vl, char *subj,
		   size_t sl)
{
	ver[0] = subj[0] = '\0';
	if (fl->net && (f->tp == NET_TLS || f->tp == NET_WSS) && f->conn_id)
		net_conn_tls_info(fl->net, f->conn_id, ver, vl, subj, sl);
}

static void json_one(struct edge_flows *fl, const struct edge_flow_info *fi, uint64_t now_ms,
		     struct buf *o, bool *first)
{
	char local[NET_ADDR_STRLEN], remote[NET_ADDR_STRLEN];
	net_addr_fmt(&fi->flow.local, local, sizeof local);
	net_addr_fmt(&fi->flow.remote, remote, sizeof remote);
	buf_append_cstr(o, *first ? "\n  {" : ",\n  {");
	*first = false;
	buf_printf(o,
		   "\"transport\":\"%s\",\"local\":\"%s\",\"remote\":\"%s\",\"conn_id\":%llu,"
		   "\"age\":%lld,\"last_keepalive_ago\":%lld,\"last_keepalive_kind\":\"%s\",",
		   net_transport_name(fi->flow.tp), local, remote,
		   (unsigned long long)fi->flow.conn_id, ago_s(now_ms, fi->opened_ms),
		   ago_s(now_ms, fi->last_ka_ms),
		   fi->last_kind == EDGE_KA_STUN   ? "stun"
		   : fi->last_kind == EDGE_KA_CRLF ? "crlf"
						   : "");
	buf_append_cstr(o, "\"aor\":");
	buf_append_json_str(o, fi->aor);
	buf_append_cstr(o, ",\"instance\":");
	buf_append_json_str(o, fi->instance);
	buf_printf(o,
		   ",\"reg_id\":%u,\"flow_timer\":%u,\"ping_interval\":%u,\"state\":\"%s\","
		   "\"failed\":%s,\"cause\":\"%s\"",
		   fi->reg_id, fi->check_s, fi->ping_s, fi->failed ? "failed" : "alive",
		   fi->failed ? "true" : "false", fi->failed ? cause_names[fi->cause] : "");
	char ver[16], subj[256];
	tls_of(fl, &fi->flow, ver, sizeof ver, subj, sizeof subj);
	if (ver[0]) {
		buf_printf(o, ",\"tls_version\":\"%s\",\"peer_subject\":", ver);
		buf_append_json_str(o, subj);
	}
	buf_append_cstr(o, "}");
}

int edge_flows_dump_json(struct edge_flows *fl, uint64_t now_ms, struct buf *out)
{
	buf_append_cstr(out, "{\"flows\":[");
	size_t mark = out->len;
	int err = dump(fl, now_ms, out, json_one);
	buf_append_cstr(out, out->len == mark ? "]}\n" : "\n]}\n");
	return err ? err : (out->failed ? ENOMEM : 0);
}

static void text_one(struct edge_flows *fl, const struct edge_flow_info *fi, uint64_t now_ms,
		     struct buf *o, bool *first)
{
	(void)first;
	char local[NET_ADDR_STRLEN], remote[NET_ADDR_STRLEN], ka[24], rid[12], state[24];
	net_addr_fmt(&fi->flow.local, local, sizeof local);
	net_addr_fmt(&fi->flow.remote, remote, sizeof remote);
	if (fi->last_ka_ms)
		snprintf(ka, sizeof ka, "%llds %s", ago_s(now_ms, fi->last_ka_ms),
			 fi->last_kind == EDGE_KA_STUN ? "stun" : "crlf");
	else
		snprintf(ka, sizeof ka, "-");
	if (fi->reg_id)
		snprintf(rid, sizeof rid, "%u", fi->reg_id);
	else
		snprintf(rid, sizeof rid, "-");
	snprintf(state, sizeof state, "%s%s", fi->failed ? "FAILED:" : "", state_of(fi));
	char ver[16], subj[256];
	tls_of(fl, &fi->flow, ver, sizeof ver, subj, sizeof subj);
	buf_printf(o, "%-4s %-22s %-24s %6lld %-10s %-28s %-49s %-6s %s%s%s%s%s\n",
		   net_transport_name(fi->flow.tp), local, remote, ago_s(now_ms, fi->opened_ms), ka,
		   fi->aor[0] ? fi->aor : "-", fi->instance[0] ? fi->instance : "-", rid, state,
		   ver[0] ? " " : "", ver, ver[0] ? " peer=" : "", ver[0] ? (subj[0] ? subj : "-") : "");
}

int edge_flows_dump_text(struct edge_flows *fl, uint64_t now_ms, struct buf *out)
{
	buf_printf(out, "%-4s %-22s %-24s %6s %-10s %-28s %-49s %-6s %s\n", "TP", "LOCAL", "REMOTE",
		   "AGE", "KEEPALIVE", "AOR", "INSTANCE", "REG-ID", "STATE");
	return dump(fl, now_ms, out, text_one);
}

void edge_flows_stats_get(struct edge_flows *fl, struct edge_flows_stats *out)
{
	memset(out, 0, sizeof *out);
	for (unsigned i = 0; i < FLOW_SHARDS; i++) {
		struct fshard *s = &fl->sh[i];
		pthread_mutex_lock(&s->lock);
		out->flows += s->n;
		out->unowned += s->n_unowned;
		pthread_mutex_unlock(&s->lock);
	}
	out->evicted = metric_get(&m_evicted);
	out->refused = metric_get(&m_refused);
}

/* ---- the edge's table: a tick a slot on worker 0 ---- */

static void flows_tick(void *arg)
{
	struct edge *e = arg;
	struct loop *l = worker_loop(net_worker(e->net, 0));
	edge_flows_tick(e->flows, loop_now_ms(l));
	timer_start(l, &e->flows_timer, SLOT_MS, flows_tick, e);
}

void edge_flows_start(struct edge *e)
{
	loop_post(worker_loop(net_worker(e->net, 0)), flows_tick, e);
}
