/* Server keepalives: OPTIONS or CRLF pings that hold NAT bindings open for phones that do not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registrar_int.h"

#define KA_HASH_SIZE 4096

/* An OPTIONS ping in flight. Its From tag carries nonce, 64 random bits: an
 * answer is credited only when it names a ping we sent and comes from the
 * address the ping went to, so no third party can make a binding look alive
 * (or a victim's address look like a phone). Owned by the table; freed when
 * answered or when the next sweep finds it unanswered. */
struct ka_pending {
	struct ka_pending *next;
	uint64_t nonce;
	int64_t sent; /* wall clock seconds */
	struct flow flow;
	char aor[STORE_AOR_MAX];
};

static struct metric m_ka_sent = {.name = "keepalives_sent_total",
				  .help = "server keepalive pings sent (OPTIONS or CRLF)"};
static struct metric m_ka_answered = {.name = "keepalive_answered_total",
				      .help = "server OPTIONS pings answered"};
static struct metric m_ka_unreachable = {.name = "keepalive_unreachable_total",
					 .help = "bindings marked unreachable after failed pings"};
static struct metric m_ka_unproven = {
	.name = "keepalive_unproven_unanswered_total",
	.help = "unproven sources that left their one ping unanswered: unreachable, no more "
		"pings until they REGISTER again"};
static struct metric m_ka_forged = {
	.name = "keepalive_answers_refused_total",
	.help = "answers to keepalive pings from another address than the ping's, or unknown"};
static struct metric m_ka_pending = {.name = "keepalive_pending",
				     .help = "OPTIONS pings awaiting an answer", .gauge = true};
static struct metric m_bindings = {.name = "registrar_bindings", .help = "live bindings",
				   .gauge = true};
static struct metric m_flow_sources = {
	.name = "registrar_flow_sources",
	.help = "sources holding outbound bindings counted by [outbound] max_flows_per_source",
	.gauge = true};

static void ka_remember(struct registrar *r, uint64_t nonce, const struct store_binding *b,
			int64_t now)
{
	struct ka_pending *p = calloc(1, sizeof *p);
	if (!p)
		return; /* its answer will not be credited: a failure, not a leak */
	p->nonce = nonce;
	p->sent = now;
	p->flow = b->flow;
	snprintf(p->aor, sizeof p->aor, "%s", b->aor);
	pthread_mutex_lock(&r->ka_lock);
	struct ka_pending **pp = &r->ka_hash[nonce % r->ka_hash_size];
	p->next = *pp;
	*pp = p;
	m_ka_pending.value = (int64_t)++r->ka_n_pending;
	pthread_mutex_unlock(&r->ka_lock);
}

/* Takes a ping in flight out of the table into out; false if unknown. */
static bool ka_take(struct registrar *r, uint64_t nonce, struct ka_pending *out)
{
	bool found = false;
	pthread_mutex_lock(&r->ka_lock);
	struct ka_pending **pp = &r->ka_hash[nonce % r->ka_hash_size];
	while (*pp && (*pp)->nonce != nonce)
		pp = &(*pp)->next;
	if (*pp) {
		struct ka_pending *p = *pp;
		*pp = p->next;
		*out = *p;
		free(p);
		m_ka_pending.value = (int64_t)--r->ka_n_pending;
		found = true;
	}
	pthread_mutex_unlock(&r->ka_lock);
	return found;
}

/* Frees the pings sent before `before` that no one answered: by then the
 * sweep has counted them as failures. */
static void ka_forget_before(struct registrar *r, int64_t before)
{
	pthread_mutex_lock(&r->ka_lock);
	for (size_t i = 0; r->ka_n_pending && i < r->ka_hash_size; i++) {
		struct ka_pending **pp = &r->ka_hash[i];
		while (*pp) {
			if ((*pp)->sent < before) {
				struct ka_pending *p = *pp;
				*pp = p->next;
				free(p);
				r->ka_n_pending--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	m_ka_pending.value = (int64_t)r->ka_n_pending;
	pthread_mutex_unlock(&r->ka_lock);
}

size_t registrar_keepalive_pending(struct registrar *r)
{
	pthread_mutex_lock(&r->ka_lock);
	size_t n = r->ka_n_pending;
	pthread_mutex_unlock(&r->ka_lock);
	return n;
}

static void send_ping(struct registrar *r, const struct store_binding *b, int64_t now)
{
	struct edge *e = r->edge;
	/* RFC 3327: a binding with a Path is reached through its edge, which a
	 * CRLF would not cross: an OPTIONS routed by the Path keeps the phone's
	 * NAT binding (behind the edge) warm and proves it answers */
	bool path = b->path[0] != '\0';
	if (r->ka_method == KA_CRLF && !path) {
		edge_send(e, &b->flow, "\r\n\r\n", 4);
		return;
	}
	char host[NET_ADDR_STRLEN + 8], branch[32], tag[24];
	edge_local_hostport(e, &b->flow, host, sizeof host);
	edge_new_branch(branch);
	edge_new_tag(tag);
	uint64_t nonce;
	rand_bytes(&nonce, sizeof nonce);
	struct buf req;
	buf_init(&req);
	/* the From tag names the ping, so any worker can credit the answer */
	buf_printf(&req,
		   "OPTIONS %s SIP/2.0\r\n"
		   "Via: SIP/2.0/%s %s;branch=%s;rport\r\n%s%s%s"
		   "Max-Forwards: %d\r\n"
		   "From: <sip:keepalive@%s>;tag=ka-%016llx\r\n"
		   "To: <%s>\r\n"
		   "Call-ID: %s@pinhole\r\n"
		   "CSeq: 1 OPTIONS\r\n"
		   "User-Agent: pinhole\r\n"
		   "Content-Length: 0\r\n\r\n",
		   b->contact, net_transport_name_upper(b->flow.tp), host, branch,
		   path ? "Route: " : "", path ? b->path : "", path ? "\r\n" : "", path ? 2 : 1, host,
		   (unsigned long long)nonce, b->contact, tag);
	if (!req.failed) {
		edge_send(e, &b->flow, req.data, req.len);
		ka_remember(r, nonce, b, now);
	}
	buf_free(&req);
}

/* Bindings of one AOR looked at for one flow: on the stack up to this many
 * (most AORs have one or two), else on the heap up to max_contacts. */
#define KA_GROUP_STACK 4

static bool pingable(const struct store_binding *b)
{
	/* RFC 5626 phones (reg-id) and streams keep their own flows alive */
	return b->behind_nat && b->flow.tp == NET_UDP && !b->reg_id;
}

/* The AOR's bindings on flow f, into stack (KA_GROUP_STACK of them) or, when
 * the AOR has more, a heap block: *g says which (free it with group_free).
 * How many. */
static size_t on_flow(struct registrar *r, const char *aor, const struct flow *f,
		      struct store_binding *stack, struct store_binding **g)
{
	size_t n = 0, k = 0;
	*g = stack;
	if (store_lookup(r->store, slice_cstr(aor), stack, KA_GROUP_STACK, &n) == ENOBUFS) {
		struct store_binding *h = malloc(sizeof *h * (size_t)r->max_contacts);
		if (h) {
			*g = h;
			registrar_lookup(r, aor, h, (size_t)r->max_contacts, &n);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (flow_eq(&(*g)[i].flow, f))
			(*g)[k++] = (*g)[i];
	return k;
}

static void group_free(struct store_binding *stack, struct store_binding *g)
{
	if (g != stack)
		free(g);
}

/* One phone on the flow: bindings that share it and, through an edge, the
 * Path too (the edge's flow to us is shared, the token in the Path names the
 * phone's flow at the edge). */
static bool same_phone(const struct store_binding *a, const struct store_binding *b)
{
	return strcmp(a->path, b->path) == 0;
}

/* Pings the phone of g[lead] once for all its bindings in g (they take the
 * lead's state): false when it is unreachable now. */
static bool ping_phone(struct registrar *r, const char *aor, struct store_binding *g, size_t n,
		       size_t lead)
{
	const struct store_binding *b = &g[lead];
	int64_t now = time_wall_s();
	struct store_ka ka = b->ka;
	bool proven = ka.proven || ka.last_answer;
	if (r->ka_method == KA_OPTIONS && ka.last_sent && ka.last_answer < ka.last_sent)
		ka.failures++;
	if (!proven && ka.last_sent && r->ka_method == KA_OPTIONS) {
		/* An unproven source gets one OPTIONS ping per REGISTER: whoever
		 * sent that REGISTER may have named a victim, who never answers
		 * (and calls to it would be INVITEs to the victim). A CRLF ping
		 * cannot be answered, so it goes on: 4 bytes per interval and
		 * flow, at most 4 x max_expires / interval bytes per REGISTER
		 * (720 with the defaults). */
		ka.unreachable = true;
		metric_inc(&m_ka_unproven);
		LOG_D("registrar", "%s %s: unproven source left its ping unanswered, pings stop",
		      b->aor, b->contact);
	} else if (ka.failures >= r->ka_max_failures) {
		ka.unreachable = true;
		metric_inc(&m_ka_unreachable);
		LOG_W("registrar", "%s %s: unreachable after %u unanswered pings, pings stop",
		      b->aor, b->contact, ka.failures);
	} else {
		ka.last_sent = now;
		send_ping(r, b, now);
		metric_inc(&m_ka_sent);
	}
	for (size_t i = 0; i < n; i++)
		if (pingable(&g[i]) && same_phone(&g[i], b))
			store_ka_set(r->store, slice_cstr(aor), g[i].id, &ka);
	return !ka.unreachable;
}

/* The flow table's ping handler (the wheel on worker 0, the entry's shard
 * locked): one ping per phone on the flow (per Path through an edge),
 * however many contacts of the AOR it registered; each phone's bindings take
 * the state of its one with the lowest id. False when none is left to ping. */
static bool flow_ping(const struct flow *f, const char *aor, void *arg)
{
	struct registrar *r = arg;
	struct store_binding stack[KA_GROUP_STACK], *g;
	size_t n = on_flow(r, aor, f, stack, &g);
	bool more = false;
	for (size_t i = 0; r->ka_interval && i < n; i++) {
		if (!pingable(&g[i]))
			continue;
		bool lead = true; /* O(n^2) over one AOR's bindings on one flow */
		for (size_t k = 0; k < n && lead; k++)
			lead = k == i || !pingable(&g[k]) || !same_phone(&g[k], &g[i]) ||
			       g[k].id > g[i].id;
		if (lead && !g[i].ka.unreachable)
			more |= ping_phone(r, aor, g, n, i);
	}
	group_free(stack, g);
	return more;
}

/* The flow table's failure handler: a flow that lost its keepalives, its
 * connection or a send takes its bindings with it (RFC 5626 5.4: the
 * registrar learns it at once, the proxy tries them last). Returns how many
 * bindings are reached over f itself (those without a Path). */
static size_t flow_failed(const struct flow *f, const char *aor, enum edge_flow_cause cause,
			  void *arg)
{
	struct registrar *r = arg;
	struct store_binding stack[KA_GROUP_STACK], *g;
	size_t n = on_flow(r, aor, f, stack, &g), own = 0;
	for (size_t i = 0; i < n; i++) {
		/* a binding with a Path is reached through its edge, not over
		 * this flow (the edge's own to us): not this flow's to fail */
		if (g[i].path[0])
			continue;
		struct store_ka ka = g[i].ka;
		ka.unreachable = true;
		store_ka_set(r->store, slice_cstr(aor), g[i].id, &ka);
		own++;
	}
	n = own;
	if (n) {
		char fs[NET_ADDR_STRLEN + 32];
		LOG_D("registrar", "%s: flow %s failed (%s): %zu binding(s) unreachable", aor,
		      flow_fmt(f, fs, sizeof fs),
		      cause == EDGE_FLOW_KEEPALIVE ? "keepalives stopped"
		      : cause == EDGE_FLOW_CLOSED  ? "connection closed"
						   : "send failed",
		      n);
	}
	group_free(stack, g);
	return n;
}

unsigned registrar_flow_timer(const struct registrar *r, enum net_transport tp)
{
	return edge_flow_timer(r->edge, tp);
}

void registrar_flow_sync_with(struct registrar *r, const struct flow *f, const char *aor,
			      bool first_hop, const struct store_binding *all, size_t n_all)
{
	struct edge_flows *fl = edge_flows(r->edge);
	int64_t now = time_wall_s(), until = 0;
	struct edge_flow_bind fb = {.aor = aor};
	bool own = false; /* a binding reached over f itself, not through a Path */
	size_t n = 0;
	for (size_t i = 0; i < n_all; i++) {
		const struct store_binding *b = &all[i];
		if (!flow_eq(&b->flow, f))
			continue;
		n++;
		until = MAX(until, b->expires_at);
		own |= !b->path[0];
		if (pingable(b) && !b->ka.unreachable)
			fb.ping_s = r->ka_interval;
		/* RFC 5626 6: the registrar is the first hop (no Path) and
		 * promised a Flow-Timer to an outbound REGISTER over f */
		if (first_hop && b->reg_id && !b->path[0]) {
			fb.check_s = registrar_flow_timer(r, f->tp);
			fb.instance = b->instance;
			fb.reg_id = b->reg_id;
		}
	}
	if (!n || (!fb.ping_s && !fb.check_s && (f->tp == NET_UDP || !own))) {
		/* none left on f (removed, or moved to another flow), or nothing
		 * to watch: a datagram flow we neither ping nor check (a phone
		 * not behind NAT, without outbound), or a connection that only
		 * an edge's Path bindings came over */
		edge_flows_unbind(fl, f, aor);
		return;
	}
	fb.expires_s = until > now ? (unsigned)(until - now) : 1;
	uint64_t now_ms = time_mono_ms();
	edge_flows_bind(fl, f, &fb, now_ms);
	/* a connection that closed before its REGISTER was answered: its close
	 * went by before the flow was bound */
	if (f->tp != NET_UDP && !net_conn_alive(edge_net(r->edge), f->conn_id))
		edge_flows_conn_closed(fl, f->conn_id, now_ms);
}

void registrar_flow_sync(struct registrar *r, const struct flow *f, const char *aor, bool first_hop)
{
	struct store_binding stack[KA_GROUP_STACK], *g;
	size_t n = on_flow(r, aor, f, stack, &g);
	registrar_flow_sync_with(r, f, aor, first_hop, g, n);
	group_free(stack, g);
}

/* Bindings loaded at start whose flows outlive a restart (UDP) are watched
 * and pinged again; a connection of an earlier run is gone. */
static int sync_loaded(const struct store_binding *b, void *arg)
{
	if (b->flow.tp == NET_UDP)
		registrar_flow_sync(arg, &b->flow, b->aor, b->reg_id != 0);
	return 0;
}

static void ka_tick(void *arg)
{
	struct registrar *r = arg;
	/* answers to pings sent an interval ago or more are failures already
	 * (flow_ping): their records go */
	if (r->ka_interval)
		ka_forget_before(r, time_wall_s() - (int64_t)r->ka_interval + 1);
	struct loop *l = worker_loop(net_worker(edge_net(r->edge), 0));
	timer_start(l, &r->ka_timer, 1000, ka_tick, r);
}

static void expire_tick(void *arg)
{
	struct registrar *r = arg;
	size_t removed = 0;
	int64_t now = time_wall_s();
	store_expire(r->store, now, &removed);
	if (r->srcs) {
		size_t sources;
		reg_srcs_sweep(r->srcs, now, &sources, NULL);
		m_flow_sources.value = (int64_t)sources;
	}
	struct store_stats st;
	store_stats_get(r->store, &st);
	m_bindings.value = (int64_t)st.bindings;
	struct loop *l = worker_loop(net_worker(edge_net(r->edge), 0));
	timer_start(l, &r->expire_timer, 5000, expire_tick, r);
}

static void start_on_worker0(void *arg)
{
	struct registrar *r = arg;
	ka_tick(r);
	expire_tick(r);
}

int registrar_start(struct registrar *r)
{
	metric_register(&m_ka_sent);
	metric_register(&m_ka_answered);
	metric_register(&m_ka_unreachable);
	metric_register(&m_ka_unproven);
	metric_register(&m_ka_forged);
	metric_register(&m_ka_pending);
	metric_register(&m_bindings);
	metric_register(&m_flow_sources);
	/* here, before the workers start, not on worker 0: a walk that ran
	 * after the first REGISTERs would sync their bindings again too, and
	 * a bind clears a failure the flow table saw in between (a flow that
	 * fell silent got its 430s back) */
	store_foreach(r->store, sync_loaded, r);
	return loop_post(worker_loop(net_worker(edge_net(r->edge), 0)), start_on_worker0, r);
}

bool registrar_keepalive_response(struct registrar *r, const struct edge_rx *rx)
{
	const struct sip_msg *m = rx->msg;
	if (m->cseq.method != SIP_OPTIONS || m->from_tag.l != 3 + 16 ||
	    strncmp(m->from_tag.p, "ka-", 3) != 0)
		return false;
	char hex[24];
	slice_to_cstr((struct slice){m->from_tag.p + 3, m->from_tag.l - 3}, hex, sizeof hex);
	char *end;
	unsigned long long nonce = strtoull(hex, &end, 16);
	if (*end)
		return false;
	struct ka_pending p;
	if (!ka_take(r, nonce, &p)) {
		metric_inc(&m_ka_forged); /* late, duplicate or made up: ours, not credited */
		return true;
	}
	/* the answer must come from where the ping went: that is what it proves */
	if (!net_addr_eq(&p.flow.remote, &rx->flow.remote)) {
		metric_inc(&m_ka_forged);
		return true;
	}
	/* any answer, even 404 or 405, proves the NAT binding still leads to the
	 * phone, for every binding of the AOR on that flow */
	struct store_binding b[16];
	size_t n = 0;
	registrar_lookup(r, p.aor, b, ARRAY_SIZE(b), &n);
	for (size_t i = 0; i < n; i++) {
		if (!flow_eq(&b[i].flow, &p.flow))
			continue;
		struct store_ka ka = b[i].ka;
		ka.last_answer = time_wall_s();
		ka.failures = 0;
		ka.unreachable = false;
		ka.proven = true;
		store_ka_set(r->store, slice_cstr(p.aor), b[i].id, &ka);
	}
	metric_inc(&m_ka_answered);
	return true;
}

/* Counts the outbound bindings loaded from the database against their
 * sources, so that the bound holds across a restart. */
static int count_loaded(const struct store_binding *b, void *arg)
{
	struct registrar *r = arg;
	if (!registrar_counts_flow(r, b))
		return 0;
	struct net_src_key k;
	net_addr_src_key(&b->flow.remote, &k);
	bool reserved;
	if (reg_srcs_claim(r->srcs, &k, b->id, true, 0, b->expires_at, &reserved) == 0 &&
	    reserved)
		reg_srcs_settle(r->srcs, &k, b->id, b->expires_at, reserved);
	return 0;
}

/* [outbound] max_flows_per_source: the per-source bound (flows.c). */
static int outbound_init(struct registrar *r, const struct conf *c)
{
	r->max_flows_per_source = (unsigned)conf_int(c, "outbound", "max_flows_per_source");
	if (!r->max_flows_per_source)
		return 0;
	if (reg_srcs_alloc(&r->srcs, r->max_flows_per_source))
		return ENOMEM;
	return store_foreach(r->store, count_loaded, r);
}

int registrar_alloc(struct registrar **rp, struct edge *e, struct store *s,
		    struct store_cred *creds, const struct conf *c)
{
	struct registrar *r = calloc(1, sizeof *r);
	if (!r)
		return ENOMEM;
	r->edge = e;
	r->store = s;
	r->creds = creds;
	/* binding identity by RFC 3261 19.1.4, not bytes: a phone that resends
	 * its Contact in another case or escaping refreshes (or removes) its
	 * binding instead of leaving a second one behind */
	store_set_contact_eq(s, sip_uri_text_eq);
	r->min_expires = conf_int(c, "registrar", "min_expires");
	r->max_expires = conf_int(c, "registrar", "max_expires");
	r->default_expires = conf_int(c, "registrar", "default_expires");
	r->max_contacts = conf_int(c, "registrar", "max_contacts");
	snprintf(r->retry_after_hdr, sizeof r->retry_after_hdr, "Retry-After: %u\r\n",
		 (unsigned)conf_int(c, "sip", "retry_after"));
	if (r->min_expires > r->max_expires) {
		LOG_E("registrar", "min_expires %lld is above max_expires %lld",
		      (long long)r->min_expires, (long long)r->max_expires);
		free(r);
		return EINVAL;
	}
	if (registrar_policy_init(r, c)) {
		free(r);
		return EINVAL;
	}
	r->ka_interval = (unsigned)conf_int(c, "keepalive", "interval");
	r->ka_method = strcmp(conf_str(c, "keepalive", "method"), "crlf") == 0 ? KA_CRLF
										 : KA_OPTIONS;
	r->ka_max_failures = (unsigned)conf_int(c, "keepalive", "max_failures");
	timer_init(&r->ka_timer);
	timer_init(&r->expire_timer);
	pthread_mutex_init(&r->ka_lock, NULL);
	r->ka_hash_size = KA_HASH_SIZE;
	r->ka_hash = calloc(r->ka_hash_size, sizeof *r->ka_hash);
	int err = r->ka_hash ? auth_alloc(&r->auth, creds, c) : ENOMEM;
	if (err) {
		free(r->ka_hash);
		pthread_mutex_destroy(&r->ka_lock);
		free(r);
		return err;
	}
	/* one scheduler: the edge's flow table pings and watches our flows */
	edge_flows_set_handlers(edge_flows(e), flow_failed, flow_ping, r);
	err = outbound_init(r, c);
	if (err) {
		registrar_free(r);
		return err;
	}
	metric_register(&reg_m_registers);
	registrar_nat_register_metrics();
	metric_register(&reg_m_rejected);
	metric_register(&reg_m_forbidden);
	metric_register(&reg_m_foreign_domain);
	metric_register(&reg_m_closed);
	metric_register(&reg_m_path_untrusted);
	metric_register(&reg_m_no_ob_hop);
	metric_register(&reg_m_flows_refused);
	metric_register(&reg_m_contacts_refused);
	*rp = r;
	return 0;
}

void registrar_free(struct registrar *r)
{
	if (!r)
		return;
	edge_flows_set_handlers(edge_flows(r->edge), NULL, NULL, NULL);
	/* the loops are stopped but still exist: unlink our timers from them */
	timer_cancel(&r->ka_timer);
	timer_cancel(&r->expire_timer);
	for (size_t i = 0; i < r->ka_hash_size; i++) {
		while (r->ka_hash[i]) {
			struct ka_pending *p = r->ka_hash[i];
			r->ka_hash[i] = p->next;
			free(p);
		}
	}
	free(r->ka_hash);
	pthread_mutex_destroy(&r->ka_lock);
	auth_free(r->auth);
	reg_srcs_free(r->srcs);
	free(r);
}
