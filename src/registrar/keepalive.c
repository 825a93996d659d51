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

static struct metric m_ka_sent = {.name = "keepalive_sent_total",
				  .help = "server keepalive pings sent"};
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

/* Bindings of one AOR looked at for one ping, on the heap: up to this many
 * share the ping of their flow; more than that are pinged on their own. */
#define KA_GROUP_MAX 64
/* the least a keepalive tick looks at (buckets + bindings): small stores in one go */
#define KA_SLICE_MIN 4096

struct sweep {
	struct registrar *r;
	int64_t now;
	size_t live;
	struct store_binding *group; /* KA_GROUP_MAX, allocated on first need */
};

static bool pingable(const struct store_binding *b)
{
	/* RFC 5626 phones (reg-id) and streams keep their own flows alive */
	return b->behind_nat && b->flow.tp == NET_UDP && !b->reg_id;
}

/* The same phone flow: bindings through one edge share its flow to us, and
 * differ in the Path (the token of the phone's flow at the edge). */
static bool same_flow(const struct store_binding *a, const struct store_binding *b)
{
	return flow_eq(&a->flow, &b->flow) && strcmp(a->path, b->path) == 0;
}

static int sweep_one(const struct store_binding *b, void *arg)
{
	struct sweep *s = arg;
	struct registrar *r = s->r;
	s->live++;
	if (!pingable(b) || b->ka.unreachable)
		return 0; /* not ours to ping, or pinging stopped */
	int64_t since = b->ka.last_sent ? b->ka.last_sent : b->registered_at;
	if (s->now - since < (int64_t)r->ka_interval)
		return 0;
	/* One ping per source flow, however many contacts of the AOR share it:
	 * the one with the lowest id pings for all, and all take its state. */
	if (!s->group)
		s->group = malloc(KA_GROUP_MAX * sizeof *s->group);
	size_t n = 0;
	if (s->group)
		registrar_lookup(r, b->aor, s->group, KA_GROUP_MAX, &n);
	for (size_t i = 0; i < n; i++)
		if (pingable(&s->group[i]) && same_flow(&s->group[i], b) &&
		    s->group[i].id < b->id)
			return 0;
	struct store_ka ka = b->ka;
	bool proven = ka.proven || ka.last_answer;
	if (r->ka_method == KA_OPTIONS && ka.last_sent && ka.last_answer < ka.last_sent)
		ka.failures++;
	if (!proven && ka.last_sent && r->ka_method == KA_OPTIONS) {
		/* An unproven source gets one OPTIONS ping per REGISTER: whoever
		 * sent that REGISTER may have named a victim, who never answers
		 * (and calls to it would be INVITEs to the victim). A CRLF ping
		 * cannot be answered, so it goes on: 4 bytes per interval and
		 * flow, at most 4 x max_expires / interval per REGISTER (720
		 * bytes with the defaults). */
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
		ka.last_sent = s->now;
		send_ping(r, b, s->now);
		metric_inc(&m_ka_sent);
	}
	store_ka_set(r->store, slice_cstr(b->aor), b->id, &ka);
	for (size_t i = 0; i < n; i++)
		if (s->group[i].id != b->id && pingable(&s->group[i]) && same_flow(&s->group[i], b))
			store_ka_set(r->store, slice_cstr(b->aor), s->group[i].id, &ka);
	return 0;
}

static void ka_tick(void *arg)
{
	struct registrar *r = arg;
	struct sweep s = {.r = r, .now = time_wall_s()};
	if (r->ka_interval) {
		/* answers to pings sent an interval ago or more are failures
		 * already (sweep_one): their records go first */
		ka_forget_before(r, s.now - (int64_t)r->ka_interval + 1);
		/* A round over the store every interval / 4 s, a slice a tick,
		 * rather than all of it every second: REGISTERs a flood leaves
		 * would make this O(bindings) per second on worker 0. A ping is
		 * late by up to a round. */
		struct store_stats st;
		store_stats_get(r->store, &st);
		size_t round_s = MAX(1u, r->ka_interval / 4);
		size_t budget = KA_SLICE_MIN + (st.bindings + 2 * st.aors) / round_s;
		bool done;
		store_foreach_slice(r->store, &r->ka_cursor, budget, sweep_one, &s, &done);
	}
	free(s.group);
	struct loop *l = worker_loop(net_worker(edge_net(r->edge), 0));
	timer_start(l, &r->ka_timer, 1000, ka_tick, r);
}

static void expire_tick(void *arg)
{
	struct registrar *r = arg;
	size_t removed = 0;
	store_expire(r->store, time_wall_s(), &removed);
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
	metric_register(&reg_m_registers);
	metric_register(&reg_m_rejected);
	metric_register(&reg_m_forbidden);
	metric_register(&reg_m_foreign_domain);
	metric_register(&reg_m_closed);
	*rp = r;
	return 0;
}

void registrar_free(struct registrar *r)
{
	if (!r)
		return;
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
	free(r);
}
