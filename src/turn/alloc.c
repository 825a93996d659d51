/* TURN allocations: the 5-tuple and relayed-address tables, relay ports, expiry, budgets. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turn_int.h"

unsigned turn_fam_index(const struct net_addr *a)
{
	return a->u.sa.sa_family == AF_INET6 ? 1 : 0;
}

static size_t tuple_hash(const struct turn *t, enum net_transport tp, unsigned li,
			 const struct net_addr *client, const struct turn_conn *conn)
{
	if (tp != NET_UDP)
		return hash_bytes(&conn, sizeof conn) & (t->nbuckets - 1);
	return (net_addr_hash(client) ^ (uint64_t)li * 0x9e3779b97f4a7c15ull) & (t->nbuckets - 1);
}

static size_t relay_hash(const struct turn_shared *sh, const struct net_addr *a)
{
	return net_addr_hash(a) & (sh->nrbuckets - 1);
}

static size_t pow2_at_least(size_t n)
{
	size_t b = 64;
	while (b < n)
		b <<= 1;
	return b;
}

int turn_counts_init(struct turn_counts *c, size_t nb)
{
	c->nb = pow2_at_least(nb);
	c->b = calloc(c->nb, sizeof *c->b);
	return c->b ? 0 : ENOMEM;
}

void turn_counts_free(struct turn_counts *c)
{
	for (size_t i = 0; c->b && i < c->nb; i++)
		for (struct turn_count *e = c->b[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(c->b);
	c->b = NULL;
}

static struct turn_count **counts_slot(struct turn_counts *c, const void *key, size_t len)
{
	struct turn_count **pp = &c->b[hash_bytes(key, len) & (c->nb - 1)];
	while (*pp && ((*pp)->len != len || memcmp((*pp)->key, key, len) != 0))
		pp = &(*pp)->next;
	return pp;
}

struct turn_count *turn_counts_take(struct turn_counts *c, const void *key, size_t len,
				    uint32_t max)
{
	struct turn_count **pp = counts_slot(c, key, len);
	if (!*pp) {
		if (!max || !(*pp = calloc(1, sizeof **pp + len)))
			return NULL;
		(*pp)->len = (uint16_t)len;
		memcpy((*pp)->key, key, len);
	}
	if ((*pp)->n >= max)
		return NULL;
	(*pp)->n++;
	return *pp;
}

void turn_counts_put(struct turn_counts *c, const void *key, size_t len)
{
	struct turn_count **pp = counts_slot(c, key, len);
	struct turn_count *e = *pp;
	if (e && --e->n == 0) {
		*pp = e->next;
		free(e);
	}
}

int turn_shared_init(struct turn_shared *sh, const struct turn_conf *cf)
{
	pthread_mutex_init(&sh->lock, NULL);
	atomic_init(&sh->nallocs, 0);
	atomic_init(&sh->next_id, 0);
	atomic_init(&sh->relay_gen, 1);
	atomic_init(&sh->nconns, 0);
	for (size_t i = 0; i < TURN_RESERVE_MAX; i++)
		sh->resv[i].fd = -1;
	sh->nrbuckets = pow2_at_least(2 * (size_t)cf->max_allocs);
	sh->by_relay = calloc(sh->nrbuckets, sizeof *sh->by_relay);
	int err = sh->by_relay ? 0 : ENOMEM;
	if (!err)
		err = turn_counts_init(&sh->users, (size_t)cf->max_allocs / 4);
	if (!err)
		err = turn_counts_init(&sh->srcs, 256);
	return err;
}

/* After every thread's allocations are gone. */
void turn_shared_free(struct turn_shared *sh)
{
	for (size_t i = 0; i < TURN_RESERVE_MAX; i++)
		if (sh->resv[i].fd >= 0)
			close(sh->resv[i].fd);
	free(sh->by_relay);
	turn_counts_free(&sh->users);
	turn_counts_free(&sh->srcs);
	pthread_mutex_destroy(&sh->lock);
}

int turn_tables_init(struct turn *t)
{
	t->nbuckets = pow2_at_least(2 * (size_t)t->cf.max_allocs / t->sh->nthr);
	t->by_tuple = calloc(t->nbuckets, sizeof *t->by_tuple);
	return t->by_tuple ? 0 : ENOMEM;
}

void turn_tables_free(struct turn *t)
{
	while (t->all)
		turn_alloc_delete(t, t->all, NULL);
	free(t->by_tuple);
	t->by_tuple = NULL;
}

struct turn_alloc *turn_alloc_find(struct turn *t, enum net_transport tp, unsigned li,
				   const struct net_addr *client, struct turn_conn *conn)
{
	if (tp != NET_UDP)
		return conn ? conn->alloc : NULL;
	for (struct turn_alloc *a = t->by_tuple[tuple_hash(t, tp, li, client, conn)]; a;
	     a = a->next_by_tuple)
		if (a->tp == NET_UDP && a->li == li && net_addr_eq(&a->client, client))
			return a;
	return NULL;
}

bool turn_relay_known(struct turn *t, const struct net_addr *addr, uint64_t *gen)
{
	struct turn_shared *sh = t->sh;
	struct net_addr v4;
	const struct net_addr *a = turn_peer_embedded_v4(addr, &v4) ? &v4 : addr;
	unsigned f = turn_fam_index(a);
	bool found = false;
	pthread_mutex_lock(&sh->lock);
	/* only linked relays are in the chains, and their addresses stay put
	 * until unlinked (under this lock): another thread's are safe to read */
	for (struct turn_alloc *x = sh->by_relay[relay_hash(sh, a)]; x && !found;
	     x = x->relay[f].next_by_addr)
		found = net_addr_eq(&x->relay[f].addr, a);
	*gen = atomic_load(&sh->relay_gen);
	pthread_mutex_unlock(&sh->lock);
	return found;
}

uint16_t turn_quota_take(struct turn *t, struct turn_alloc *a, const char *quota)
{
	struct turn_shared *sh = t->sh;
	uint16_t code = 0;
	pthread_mutex_lock(&sh->lock);
	size_t n = atomic_load(&sh->nallocs);
	struct turn_count *u =
	    turn_counts_take(&sh->users, quota, strlen(quota), t->cf.max_allocs_user);
	if (!u)
		code = STUN_ERR_QUOTA;
	else if (n >= t->cf.max_allocs) {
		turn_counts_put(&sh->users, quota, strlen(quota));
		code = STUN_ERR_CAPACITY;
	} else {
		atomic_store(&sh->nallocs, n + 1);
		if (u->n == 1) { /* the user's first: the bucket starts full */
			u->own.milli = (int64_t)(t->cf.bandwidth_user * 1000);
			u->own.last_ms = turn_fast_user_clock(t, time_mono_ms());
			u->bw = &u->own;
			u->fast_user = -1;
			turn_fast_user_open(t, u);
		}
	}
	pthread_mutex_unlock(&sh->lock);
	if (!code) {
		a->counted = true;
		a->user_ent = u;
		snprintf(a->quota, sizeof a->quota, "%s", quota);
	}
	return code;
}

static void quota_put(struct turn *t, struct turn_alloc *a)
{
	struct turn_shared *sh = t->sh;
	pthread_mutex_lock(&sh->lock);
	if (a->user_ent && a->user_ent->n == 1) /* the user's last: its bucket goes */
		turn_fast_user_close(t, a->user_ent);
	turn_counts_put(&sh->users, a->quota, strlen(a->quota));
	atomic_fetch_sub(&sh->nallocs, 1);
	pthread_mutex_unlock(&sh->lock);
	a->counted = false;
	a->user_ent = NULL;
}

bool turn_conn_take(struct turn *t, struct turn_conn *c)
{
	struct turn_shared *sh = t->sh;
	struct net_src_key k;
	net_addr_src_key(&c->remote, &k);
	bool ok = false;
	pthread_mutex_lock(&sh->lock);
	if (atomic_load(&sh->nconns) < t->cf.tcp_max_conns &&
	    turn_counts_take(&sh->srcs, &k, sizeof k, t->cf.tcp_max_conns_src)) {
		atomic_fetch_add(&sh->nconns, 1);
		ok = true;
	}
	pthread_mutex_unlock(&sh->lock);
	c->counted = ok;
	return ok;
}

void turn_conn_put(struct turn *t, struct turn_conn *c)
{
	if (!c->counted)
		return;
	struct turn_shared *sh = t->sh;
	struct net_src_key k;
	net_addr_src_key(&c->remote, &k);
	pthread_mutex_lock(&sh->lock);
	turn_counts_put(&sh->srcs, &k, sizeof k);
	atomic_fetch_sub(&sh->nconns, 1);
	pthread_mutex_unlock(&sh->lock);
	c->counted = false;
}

int turn_alloc_new(struct turn *t, struct turn_alloc **ap)
{
	struct turn_alloc *a = calloc(1, sizeof *a);
	if (!a)
		return ENOMEM;
	a->id = atomic_fetch_add(&t->sh->next_id, 1) + 1;
	for (unsigned f = 0; f < 2; f++)
		a->relay[f].sk = (struct turn_sock){TURN_SK_RELAY, -1, 0, a, f, t, 0};
	a->bw_milli = t->cf.bandwidth * 1000;
	*ap = a;
	return 0;
}

void turn_alloc_link(struct turn *t, struct turn_alloc *a)
{
	size_t h = tuple_hash(t, a->tp, a->li, &a->client, a->conn);
	a->next_by_tuple = t->by_tuple[h];
	t->by_tuple[h] = a;
	struct turn_shared *sh = t->sh;
	pthread_mutex_lock(&sh->lock);
	for (unsigned f = 0; f < 2; f++) {
		if (a->relay[f].sk.fd < 0)
			continue;
		size_t r = relay_hash(sh, &a->relay[f].addr);
		a->relay[f].next_by_addr = sh->by_relay[r];
		sh->by_relay[r] = a;
	}
	pthread_mutex_unlock(&sh->lock);
	a->next = t->all;
	if (t->all)
		t->all->prev = a;
	t->all = a;
	t->nallocs++;
	if (a->conn)
		a->conn->alloc = a;
	metric_add(&turn_m_allocs, 1);
	metric_inc(&turn_m_alloc_total);
}

static void unlink_alloc(struct turn *t, struct turn_alloc *a)
{
	struct turn_alloc **pp = &t->by_tuple[tuple_hash(t, a->tp, a->li, &a->client, a->conn)];
	while (*pp && *pp != a)
		pp = &(*pp)->next_by_tuple;
	if (*pp)
		*pp = a->next_by_tuple;
	struct turn_shared *sh = t->sh;
	pthread_mutex_lock(&sh->lock);
	for (unsigned f = 0; f < 2; f++) {
		if (a->relay[f].sk.fd < 0)
			continue;
		pp = &sh->by_relay[relay_hash(sh, &a->relay[f].addr)];
		while (*pp && *pp != a)
			pp = &(*pp)->relay[f].next_by_addr;
		if (*pp)
			*pp = a->relay[f].next_by_addr;
	}
	atomic_fetch_add(&sh->relay_gen, 1); /* channels let through to it check again */
	pthread_mutex_unlock(&sh->lock);
	if (a->prev)
		a->prev->next = a->next;
	else
		t->all = a->next;
	if (a->next)
		a->next->prev = a->prev;
	t->nallocs--;
	metric_add(&turn_m_allocs, -1);
}

void turn_alloc_delete(struct turn *t, struct turn_alloc *a, const char *why)
{
	if (a->id && (a->prev || t->all == a))
		unlink_alloc(t, a);
	turn_fast_forget(t, a); /* its counters final before they go, its user's bucket kept */
	if (a->counted)
		quota_put(t, a);
	if (why) {
		char c[NET_ADDR_STRLEN];
		LOG_D("turn", "allocation %llu of %s (%s:%s) %s", (unsigned long long)a->id,
		      a->user, net_transport_name(a->tp), net_addr_fmt(&a->client, c, sizeof c),
		      why);
	}
	for (unsigned f = 0; f < 2; f++)
		if (a->relay[f].sk.fd >= 0) {
			loop_fd_del(t->loop, a->relay[f].sk.fd);
			close(a->relay[f].sk.fd);
		}
	metric_add(&turn_m_perms, -(int64_t)a->nperm);
	for (size_t i = 0; i < a->nchan; i++)
		metric_add(&turn_m_chans, a->chans[i].held ? 0 : -1);
	if (a->conn)
		a->conn->alloc = NULL;
	free(a->perms);
	free(a->chans);
	free(a);
}

static void on_relay(int fd, uint32_t events, void *arg);

static int bind_port(const struct net_addr *ip, uint16_t port, int *fdp)
{
	struct net_addr a = *ip;
	net_addr_set_port(&a, port);
	int err = net_udp_socket(&a, false, fdp);
	if (!err) {
		/* net_udp_socket asks for 4 MB (a listener's); thousands of relay
		 * sockets must not, where rmem_max allows it */
		int sz = TURN_RELAY_RCVBUF;
		setsockopt(*fdp, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
		/* RFC 8656 7.2, 10.2: DF only when the client asked for it
		 * (DONT-FRAGMENT); Linux would set it by default (PMTU discovery) */
		int pmtu = IP_PMTUDISC_DONT;
		if (net_addr_family(&a) == AF_INET)
			setsockopt(*fdp, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
		else
			setsockopt(*fdp, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu);
	}
	return err;
}

/* Holds fd (ip:port) under a new token in the shared table: false when full. */
static bool reserve_put(struct turn *t, const struct net_addr *ip, uint16_t port, int fd,
			uint8_t token[8])
{
	struct turn_shared *sh = t->sh;
	bool ok = false;
	pthread_mutex_lock(&sh->lock);
	for (size_t r = 0; r < TURN_RESERVE_MAX && !ok; r++) {
		struct turn_reservation *rv = &sh->resv[r];
		if (rv->fd >= 0)
			continue;
		rv->fd = fd;
		rand_bytes(rv->token, 8);
		memcpy(token, rv->token, 8);
		rv->addr = *ip;
		net_addr_set_port(&rv->addr, port);
		rv->expire_ms = loop_now_ms(t->loop) + TURN_RESERVE_S * 1000ull;
		ok = true;
	}
	pthread_mutex_unlock(&sh->lock);
	return ok;
}

int turn_relay_open(struct turn *t, struct turn_alloc *a, unsigned fam, bool even, bool reserve,
		    uint8_t token[8])
{
	const struct net_addr *ip = &t->cf.relay_ip[fam];
	if (!ip->u.sa.sa_family)
		return EAFNOSUPPORT;
	uint32_t span = (uint32_t)t->cf.port_hi - t->cf.port_lo + 1;
	uint32_t start = rand_u32() % span;
	/* a random start, then a bounded walk: a busy range fails fast */
	for (uint32_t i = 0; i < MIN(span, 256u); i++) {
		uint16_t port = (uint16_t)(t->cf.port_lo + (start + i) % span);
		if (even && (port & 1))
			continue;
		if (reserve && (uint32_t)port + 1 > t->cf.port_hi)
			continue;
		int fd, fd2 = -1;
		if (bind_port(ip, port, &fd))
			continue;
		if (reserve) {
			if (bind_port(ip, (uint16_t)(port + 1), &fd2)) {
				close(fd);
				continue;
			}
			if (!reserve_put(t, ip, (uint16_t)(port + 1), fd2, token)) {
				close(fd);
				close(fd2);
				return EADDRNOTAVAIL; /* TURN_RESERVE_MAX held */
			}
		}
		a->relay[fam].sk.fd = fd;
		a->relay[fam].addr = *ip;
		net_addr_set_port(&a->relay[fam].addr, port);
		if (loop_fd_add(t->loop, fd, EPOLLIN, on_relay, &a->relay[fam].sk)) {
			close(fd);
			a->relay[fam].sk.fd = -1;
			return EADDRNOTAVAIL;
		}
		return 0;
	}
	return EADDRNOTAVAIL;
}

int turn_relay_take(struct turn *t, struct turn_alloc *a, const uint8_t token[8])
{
	struct turn_shared *sh = t->sh;
	pthread_mutex_lock(&sh->lock);
	int fd = -1;
	struct net_addr addr;
	for (size_t r = 0; r < TURN_RESERVE_MAX && fd < 0; r++) {
		struct turn_reservation *rv = &sh->resv[r];
		if (rv->fd < 0 || memcmp(rv->token, token, 8) != 0)
			continue;
		fd = rv->fd; /* in no loop yet: it joins this thread's */
		addr = rv->addr;
		rv->fd = -1;
	}
	pthread_mutex_unlock(&sh->lock);
	if (fd >= 0) {
		unsigned fam = turn_fam_index(&addr);
		a->relay[fam].sk.fd = fd;
		a->relay[fam].addr = addr;
		if (loop_fd_add(t->loop, a->relay[fam].sk.fd, EPOLLIN, on_relay,
				&a->relay[fam].sk)) {
			close(a->relay[fam].sk.fd);
			a->relay[fam].sk.fd = -1;
			return ENOENT;
		}
		return 0;
	}
	return ENOENT;
}

static void on_relay(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct turn_sock *sk = arg;
	turn_relay_readable(sk->t, sk->owner, sk->fam, fd);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = MAX(need, MAX((size_t)4, 2 * *cap));
	void *p = realloc(*arr, n * elem);
	if (!p)
		return ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

int turn_perms_reserve(struct turn_alloc *a, size_t n)
{
	return grow((void **)&a->perms, &a->perm_cap, n, sizeof *a->perms);
}

int turn_chans_reserve(struct turn_alloc *a, size_t n)
{
	return grow((void **)&a->chans, &a->chan_cap, n, sizeof *a->chans);
}

struct turn_perm *turn_perm_find(struct turn_alloc *a, const struct net_addr *peer, uint64_t now)
{
	for (size_t i = 0; i < a->nperm; i++)
		if (a->perms[i].expire_ms > now && net_addr_ip_eq(&a->perms[i].ip, peer))
			return &a->perms[i];
	return NULL;
}

bool turn_chan_free(const struct turn_chan *ch, uint64_t now)
{
	return ch->expire_ms + TURN_CHANNEL_HOLD_S * 1000ull <= now;
}

/* A number, or a peer, is in at most one slot that is not free (ChannelBind
 * checks it against the held ones): the live channel is that one, if live. */
struct turn_chan *turn_chan_held_num(struct turn_alloc *a, uint16_t num, uint64_t now)
{
	for (size_t i = 0; i < a->nchan; i++)
		if (a->chans[i].num == num && !turn_chan_free(&a->chans[i], now))
			return &a->chans[i];
	return NULL;
}

struct turn_chan *turn_chan_held_peer(struct turn_alloc *a, const struct net_addr *peer,
				      uint64_t now)
{
	for (size_t i = 0; i < a->nchan; i++)
		if (!turn_chan_free(&a->chans[i], now) && net_addr_eq(&a->chans[i].peer, peer))
			return &a->chans[i];
	return NULL;
}

struct turn_chan *turn_chan_by_num(struct turn_alloc *a, uint16_t num, uint64_t now)
{
	struct turn_chan *ch = turn_chan_held_num(a, num, now);
	return ch && ch->expire_ms > now ? ch : NULL;
}

struct turn_chan *turn_chan_by_peer(struct turn_alloc *a, const struct net_addr *peer, uint64_t now)
{
	struct turn_chan *ch = turn_chan_held_peer(a, peer, now);
	return ch && ch->expire_ms > now ? ch : NULL;
}

bool turn_budget_take(const struct turn *t, struct turn_budget *b, uint64_t now)
{
	if (!t->cf.rate)
		return true;
	uint64_t full = (uint64_t)t->cf.burst * 1000;
	if (!b->last_ms) {
		b->milli = full; /* a new one starts full */
		b->last_ms = now;
	} else if (now > b->last_ms) {
		b->milli = MIN(full, b->milli + (now - b->last_ms) * t->cf.rate);
		b->last_ms = now;
	}
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

bool turn_bw_take(struct turn *t, struct turn_alloc *a, size_t len, uint64_t now)
{
	uint64_t rate = t->cf.bandwidth;
	uint64_t cost = (uint64_t)len * 1000;
	if (rate) {
		uint64_t full = rate * 1000; /* one second's worth */
		if (now > a->bw_last_ms) {
			a->bw_milli += (now - a->bw_last_ms) * rate; /* rate B/s = rate mB/ms */
			if (a->bw_milli > full)
				a->bw_milli = full;
			a->bw_last_ms = now;
		}
		if (a->bw_milli < cost) {
			metric_inc(&turn_m_drop_bw);
			return false;
		}
	}
	if (t->cf.bandwidth_user && a->user_ent &&
	    !turn_fast_user_take(a->user_ent->bw, t->cf.bandwidth_user, len,
				 turn_fast_user_clock(t, now))) {
		metric_inc(&turn_m_drop_user_bw);
		return false;
	}
	if (rate)
		a->bw_milli -= cost;
	return true;
}

void turn_sweep(struct turn *t, uint64_t now)
{
	for (struct turn_alloc *a = t->all, *next; a; a = next) {
		next = a->next;
		if (a->expire_ms <= now) {
			metric_inc(&turn_m_expired);
			struct turn_conn *c = a->conn;
			turn_alloc_delete(t, a, "expired");
			if (c) /* RFC 6062 aside, the connection carried only this one */
				turn_conn_close(t, c);
			continue;
		}
		/* the kernel lets go of what expired before the slots move */
		turn_fast_sync(t, a, now);
		turn_fast_pull(t, a);
		size_t k = 0;
		for (size_t i = 0; i < a->nperm; i++)
			if (a->perms[i].expire_ms > now)
				a->perms[k++] = a->perms[i];
		metric_add(&turn_m_perms, (int64_t)k - (int64_t)a->nperm);
		a->nperm = k;
		k = 0; /* an expired channel keeps its slot while it is held */
		for (size_t i = 0; i < a->nchan; i++) {
			struct turn_chan *ch = &a->chans[i];
			if (!ch->held && ch->expire_ms <= now) {
				ch->held = true;
				metric_add(&turn_m_chans, -1);
			}
			if (!turn_chan_free(ch, now))
				a->chans[k++] = *ch;
		}
		a->nchan = k;
	}
	struct turn_shared *sh = t->sh;
	if (t->idx == 0) { /* one thread expires the shared reservations */
		pthread_mutex_lock(&sh->lock);
		for (size_t r = 0; r < TURN_RESERVE_MAX; r++)
			if (sh->resv[r].fd >= 0 && sh->resv[r].expire_ms <= now) {
				close(sh->resv[r].fd);
				sh->resv[r].fd = -1;
			}
		pthread_mutex_unlock(&sh->lock);
	}
	for (struct turn_conn *c = t->conns, *next; c; c = next) {
		next = c->next;
		if (!c->alloc && now - c->last_ms > TURN_TCP_IDLE_S * 1000ull)
			turn_conn_close(t, c);
	}
}
