/* The TURN server: [turn] config, its thread and loop, UDP, TCP and TLS listeners, relay sockets. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turn_int.h"

const struct conf_key turn_conf_keys[] = {
    {"turn", "listen", CONF_STR, "udp:0.0.0.0:3478, tcp:0.0.0.0:3478", 0, 0, NULL,
     "TURN listeners: udp:ADDR:PORT, tcp:ADDR:PORT and tls:ADDR:PORT entries (IPv6 as [::]; "
     "tls: with the [tls] certificates, handshake_timeout and max_handshakes); the role also "
     "answers STUN Binding there, so [stun] must listen elsewhere"},
    {"turn", "realm", CONF_STR, "", 0, 0, NULL,
     "REALM of the long-term credentials; users are `pinhole user add USER@REALM`; empty = "
     "[auth] realm (one of them must be set)"},
    {"turn", "static_auth_secret", CONF_STR, "", 0, 0, NULL,
     "coturn use-auth-secret scheme: username = expiry[:user], password = "
     "base64(HMAC-SHA1(secret, username)); empty = off"},
    {"turn", "relay_address", CONF_STR, "", 0, 0, NULL,
     "IPv4 address relayed transport addresses are allocated on; empty = the first IPv4 "
     "listen address, or the host's default source"},
    {"turn", "relay_address6", CONF_STR, "", 0, 0, NULL,
     "IPv6 address for REQUESTED-ADDRESS-FAMILY IPv6 and dual allocations; empty = IPv6 "
     "allocations refused (440)"},
    {"turn", "relay_ports", CONF_STR, "49152-65535", 0, 0, NULL, "relay port range LOW-HIGH"},
    {"turn", "lifetime", CONF_INT, "600", 60, 86400, NULL,
     "default allocation lifetime in seconds (RFC 8656: 600)"},
    {"turn", "max_lifetime", CONF_INT, "3600", 60, 86400, NULL,
     "longest lifetime a client may ask for, seconds"},
    {"turn", "nonce_lifetime", CONF_INT, "600", 10, 86400, NULL,
     "seconds a NONCE stays valid before 438 Stale Nonce"},
    {"turn", "max_allocations", CONF_INT, "10000", 1, 1000000, NULL,
     "allocations in all; more get 508"},
    {"turn", "max_allocations_per_user", CONF_INT, "10", 1, 100000, NULL,
     "allocations per user (shared secret: per user part); more get 486"},
    {"turn", "max_permissions", CONF_INT, "32", 1, 1024, NULL,
     "permissions (peer IPs) per allocation; more get 508"},
    {"turn", "max_channels", CONF_INT, "32", 1, 4096, NULL,
     "channel bindings per allocation; more get 508"},
    {"turn", "bandwidth", CONF_INT, "10000", 0, 10000000, NULL,
     "relayed kbit/s per allocation, both directions together; over it is dropped; 0 = "
     "unlimited"},
    {"turn", "bandwidth_per_user", CONF_INT, "0", 0, 100000000, NULL,
     "relayed kbit/s of all of a user's allocations together (shared secret: per user part), "
     "on top of bandwidth; 0 = no budget beyond bandwidth x max_allocations_per_user; when "
     "set, channels stay in user space (the fast path has no per-user budget)"},
    {"turn", "allowed_peers", CONF_STR, "", 0, 0, NULL,
     "CIDR list of peers allowed even in a denied class (loopback, private, link-local, "
     "shared, multicast, this host's addresses)"},
    {"turn", "denied_peers", CONF_STR, "", 0, 0, NULL,
     "CIDR list of peers denied beyond the default classes"},
    {"turn", "rate", CONF_INT, "20", 0, 1000000, NULL,
     "request budget per second: of a UDP source address (IPv6 per /64) without an "
     "allocation, of each allocation on its own 5-tuple, of each TCP connection; over it "
     "requests are dropped and counted; 0 = unlimited"},
    {"turn", "burst", CONF_INT, "40", 1, 1000000, NULL, "burst of the request budgets"},
    {"turn", "sources", CONF_INT, "16384", 64, 4194304, NULL, "rate-limit table slots"},
    {"turn", "fastpath", CONF_ENUM, "auto", 0, 0, "auto|on|off",
     "relay ChannelData of bound channels (IPv4, UDP clients) in the kernel (eBPF tc program; "
     "needs CAP_BPF and CAP_NET_ADMIN): auto = when it loads, else user space; on = fail to "
     "start without it"},
    {"turn", "tcp_max_connections", CONF_INT, "1024", 1, 1000000, NULL,
     "client TCP connections at once; more are closed at accept"},
    {"turn", "tcp_max_connections_per_address", CONF_INT, "16", 1, 1000000, NULL,
     "client TCP connections from one address (IPv6: one /64); more are closed at accept"},
    {"turn", "batch_wait", CONF_INT, "0", 0, 1000, NULL,
     "microseconds a busy thread waits before its next poll so packets of many relayed "
     "streams share a wake-up; saves CPU under load, adds up to that much latency; 0 = off"},
    {"turn", "threads", CONF_INT, "0", 0, TURN_THREADS_MAX, NULL,
     "threads of the role, each with its own SO_REUSEPORT sockets on every listen address "
     "and the allocations made on it (quotas, relayed addresses and reservations are "
     "shared); 0 = one per online CPU, at most 16; 1 = one thread, listeners without "
     "SO_REUSEPORT"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct metric turn_m_allocs = {
    .name = "turn_allocations", .help = "live TURN allocations", .gauge = true};
struct metric turn_m_perms = {
    .name = "turn_permissions", .help = "live TURN permissions", .gauge = true};
struct metric turn_m_chans = {
    .name = "turn_channels", .help = "live TURN channel bindings", .gauge = true};
struct metric turn_m_alloc_total = {.name = "turn_allocations_total",
				    .help = "TURN allocations created"};
struct metric turn_m_expired = {.name = "turn_allocations_expired_total",
				.help = "TURN allocations that expired unrefreshed"};
struct metric turn_m_requests = {.name = "turn_requests_total",
				 .help = "TURN/STUN requests within the per-source budget"};
struct metric turn_m_to_peer_bytes = {
    .name = "turn_relayed_bytes_total", .help = "bytes relayed", .labels = "direction=\"to_peer\""};
struct metric turn_m_to_peer_pkts = {.name = "turn_relayed_packets_total",
				     .help = "packets relayed",
				     .labels = "direction=\"to_peer\""};
struct metric turn_m_from_peer_bytes = {.name = "turn_relayed_bytes_total",
					.help = "bytes relayed",
					.labels = "direction=\"to_client\""};
struct metric turn_m_from_peer_pkts = {.name = "turn_relayed_packets_total",
				       .help = "packets relayed",
				       .labels = "direction=\"to_client\""};
struct metric turn_m_denied_peer = {.name = "turn_denied_peers_total",
				    .help = "peers refused by the peer filter"};
struct metric turn_m_drop_rate = {
    .name = "turn_dropped_total", .help = "TURN packets dropped", .labels = "reason=\"rate\""};
struct metric turn_m_drop_bw = {
    .name = "turn_dropped_total", .help = "TURN packets dropped", .labels = "reason=\"bandwidth\""};
struct metric turn_m_drop_user_bw = {.name = "turn_dropped_total",
				     .help = "TURN packets dropped",
				     .labels = "reason=\"user_bandwidth\""};
struct metric turn_m_drop_noperm = {.name = "turn_dropped_total",
				    .help = "TURN packets dropped",
				    .labels = "reason=\"no_permission\""};
struct metric turn_m_drop_bad = {
    .name = "turn_dropped_total", .help = "TURN packets dropped", .labels = "reason=\"malformed\""};
struct metric turn_m_auth_fail = {.name = "turn_auth_failures_total",
				  .help = "requests with credentials that did not verify"};
struct metric turn_m_auth_cached = {
    .name = "turn_auth_cached_total",
    .help = "requests verified with their allocation's cached nonce and key"};
struct metric turn_m_conn_refused = {
    .name = "turn_tcp_refused_total",
    .help = "TCP connections closed at tcp_max_connections or tcp_max_connections_per_address"};

static const uint16_t err_codes[] = {400, 401, 403, 420, 437, 438, 440,
				     441, 442, 443, 486, 500, 508};
static struct metric m_err[ARRAY_SIZE(err_codes)];
static char m_err_labels[ARRAY_SIZE(err_codes)][16];
static struct metric m_err_other = {.name = "turn_errors_total",
				    .help = "TURN error responses by code",
				    .labels = "code=\"other\""};

void turn_count_error(uint16_t code)
{
	for (size_t i = 0; i < ARRAY_SIZE(err_codes); i++)
		if (err_codes[i] == code) {
			metric_inc(&m_err[i]);
			return;
		}
	metric_inc(&m_err_other);
}

void turn_metrics_register(void)
{
	static struct metric *all[] = {
	    &turn_m_allocs,	    &turn_m_perms,	  &turn_m_chans,
	    &turn_m_alloc_total,    &turn_m_expired,	  &turn_m_requests,
	    &turn_m_to_peer_bytes,  &turn_m_to_peer_pkts, &turn_m_from_peer_bytes,
	    &turn_m_from_peer_pkts, &turn_m_denied_peer,  &turn_m_drop_rate,
	    &turn_m_drop_bw,	    &turn_m_drop_user_bw, &turn_m_drop_noperm,
	    &turn_m_drop_bad,	    &turn_m_auth_fail,	  &turn_m_conn_refused,
	    &m_err_other,	    &turn_m_fast_to_peer, &turn_m_fast_to_client,
	    &turn_m_fast_full,	    &turn_m_auth_cached,
	};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		metric_register(all[i]);
	for (size_t i = 0; i < ARRAY_SIZE(err_codes); i++) {
		snprintf(m_err_labels[i], sizeof m_err_labels[i], "code=\"%u\"", err_codes[i]);
		m_err[i].name = "turn_errors_total";
		m_err[i].help = "TURN error responses by code";
		m_err[i].labels = m_err_labels[i];
		metric_register(&m_err[i]);
	}
}

/* ---- sending to clients ---- */

static void conn_want_write(struct turn *t, struct turn_conn *c, bool on)
{
	loop_fd_mod(t->loop, c->sk.fd, EPOLLIN | (on ? EPOLLOUT : 0));
}

/* send(2), or TLS's write on a tls: connection (nothing before its handshake) */
static ssize_t conn_write(struct turn_conn *c, const void *p, size_t len)
{
	if (c->handshaking) {
		errno = EAGAIN;
		return -1;
	}
	if (c->tls)
		return net_tls_sock_write(c->tls, p, len);
	return send(c->sk.fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void conn_flush(struct turn *t, struct turn_conn *c)
{
	size_t off = 0;
	while (off < c->out.len) {
		ssize_t w = conn_write(c, c->out.data + off, c->out.len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (off) {
		memmove(c->out.data, c->out.data + off, c->out.len - off);
		c->out.len -= off;
	}
	conn_want_write(t, c, c->out.len > 0);
}

/* Sends what the turn queued on listener li: one sendmmsg (more when the
 * kernel takes part); what the socket has no room for is dropped, as a
 * sendto's would be. */
static void txq_flush(struct turn *t, unsigned li)
{
	struct turn_txq *q = t->txq[li];
	unsigned i = 0;
	while (i < q->n) {
		int r = sendmmsg(t->udp[li].fd, q->msg + i, q->n - i, MSG_DONTWAIT);
		if (r > 0)
			i += (unsigned)r;
		else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
			break;
		else
			i++; /* that one datagram refused (its address): the rest go */
	}
	q->n = 0;
	q->used = 0;
}

static void on_turn_end(void *arg)
{
	struct turn *t = arg;
	t->turns++;
	for (unsigned li = 0; li < t->nudp; li++)
		if (t->txq[li] && t->txq[li]->n)
			txq_flush(t, li);
}

/* Room for a datagram of len bytes to `to` at the end of listener li's queue. */
static uint8_t *txq_slot(struct turn *t, unsigned li, const struct net_addr *to, size_t len)
{
	struct turn_txq *q = t->txq[li];
	if (q->n == TURN_TXQ_MAX || q->used + len > sizeof q->data)
		txq_flush(t, li);
	uint8_t *d = q->data + q->used;
	q->used += len;
	q->to[q->n] = *to;
	q->iov[q->n] = (struct iovec){d, len};
	q->msg[q->n].msg_hdr = (struct msghdr){.msg_name = &q->to[q->n].u.sa,
					       .msg_namelen = net_addr_len(to),
					       .msg_iov = &q->iov[q->n],
					       .msg_iovlen = 1};
	q->n++;
	return d;
}

uint8_t *turn_txq_reserve(struct turn *t, const struct turn_src *s, size_t len)
{
	if (s->tp != NET_UDP || !t->txq[s->li] || len > sizeof t->txq[s->li]->data)
		return NULL;
	return txq_slot(t, s->li, &s->client, len);
}

void turn_send_client(struct turn *t, const struct turn_src *s, const void *p, size_t len)
{
	if (s->tp == NET_UDP) {
		if (t->txq[s->li] && len <= sizeof t->txq[s->li]->data)
			memcpy(txq_slot(t, s->li, &s->client, len), p, len);
		else
			sendto(t->udp[s->li].fd, p, len, MSG_DONTWAIT, &s->client.u.sa,
			       net_addr_len(&s->client));
		return;
	}
	struct turn_conn *c = s->conn;
	if (!c)
		return;
	if (c->out.len + len > TURN_TCP_OUT_MAX) {
		metric_inc(&turn_m_drop_bw); /* a client that does not read: its media goes */
		return;
	}
	if (c->out.len == 0) {
		ssize_t w = conn_write(c, p, len);
		if (w == (ssize_t)len)
			return;
		size_t done = w > 0 ? (size_t)w : 0;
		buf_append(&c->out, (const char *)p + done, len - done);
	} else {
		buf_append(&c->out, p, len);
	}
	conn_want_write(t, c, true);
}

/* ---- sockets ---- */

/* Points the batch's slots at their buffers (once: recvmmsg keeps them). */
static void rx_setup(struct turn *t)
{
	for (unsigned i = 0; i < TURN_RX_SLOTS; i++) {
		t->rx_iov[i][0] = (struct iovec){t->rx[i], TURN_RX_SLOT};
		t->rx_iov[i][1] = (struct iovec){t->rx_big, sizeof t->rx_big};
		t->rx_msg[i].msg_hdr = (struct msghdr){.msg_name = &t->rx_from[i].u.ss,
						       .msg_iov = t->rx_iov[i],
						       .msg_iovlen = 2};
	}
}

/* Up to max datagrams of fd with one recvmmsg (one: recvmsg, a little
 * cheaper): how many came (0: none). */
static unsigned rx_batch(struct turn *t, int fd, unsigned max)
{
	for (unsigned i = 0; i < max; i++)
		t->rx_msg[i].msg_hdr.msg_namelen = sizeof t->rx_from[i].u.ss;
	if (max == 1) {
		ssize_t r = recvmsg(fd, &t->rx_msg[0].msg_hdr, MSG_DONTWAIT);
		t->rx_msg[0].msg_len = r > 0 ? (unsigned)r : 0;
		return r >= 0;
	}
	int n = recvmmsg(fd, t->rx_msg, max, MSG_DONTWAIT, NULL);
	return n > 0 ? (unsigned)n : 0;
}

/* Datagram i of a batch of n in one piece, or NULL (counted): one longer
 * than a slot is whole only when no later one of the batch spilled over too. */
static const uint8_t *rx_get(struct turn *t, unsigned i, unsigned n, size_t *len)
{
	*len = t->rx_msg[i].msg_len;
	if (*len <= TURN_RX_SLOT)
		return t->rx[i];
	for (unsigned k = i + 1; k < n; k++)
		if (t->rx_msg[k].msg_len > TURN_RX_SLOT) {
			metric_inc(&turn_m_drop_bad);
			return NULL;
		}
	memmove(t->rx_big + TURN_RX_SLOT, t->rx_big, *len - TURN_RX_SLOT);
	memcpy(t->rx_big, t->rx[i], TURN_RX_SLOT);
	return t->rx_big;
}

/* A relay socket carries one allocation's peers: mostly one datagram per
 * wake-up, so one is read. A read that finds the queue empty costs about as
 * much as one that finds a datagram, and epoll (level-triggered) reports a
 * socket that still holds some at a later turn. Read in batches of 8 until
 * fewer come: a socket readable in the previous turn too (its queue building
 * up), and every socket while the thread is behind (a listener read filled a
 * whole batch this turn or the last: then epoll's 64 events a turn come
 * round to a socket only every few turns). */
void turn_relay_readable(struct turn *t, struct turn_alloc *a, unsigned fam, int fd)
{
	struct turn_sock *sk = &a->relay[fam].sk;
	bool hot = sk->read_turn + 1 >= t->turns || t->behind_turn + 1 >= t->turns;
	unsigned want = hot ? 8 : 1;
	sk->read_turn = t->turns;
	pthread_mutex_lock(&t->lock);
	uint64_t now = loop_now_ms(t->loop);
	for (unsigned got = 0; got < 64;) {
		unsigned n = rx_batch(t, fd, want);
		for (unsigned i = 0; i < n; i++) {
			size_t len;
			const uint8_t *p = rx_get(t, i, n, &len);
			if (p)
				turn_peer_packet(t, a, fam, &t->rx_from[i], p, len, now);
		}
		got += n;
		if (n < 8)
			break;
	}
	pthread_mutex_unlock(&t->lock);
}

static void on_udp(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct turn_sock *sk = arg;
	struct turn *t = sk->t;
	pthread_mutex_lock(&t->lock);
	uint64_t now = loop_now_ms(t->loop);
	/* a listener carries every UDP client's traffic, a relay socket one
	 * allocation's: it reads more per wake-up, or under load it falls
	 * behind the relay sockets for good and its queue overflows */
	for (unsigned got = 0; got < TURN_LISTEN_ROUNDS;) {
		unsigned n = rx_batch(t, fd, TURN_RX_SLOTS);
		for (unsigned i = 0; i < n; i++) {
			struct turn_src s = {.tp = NET_UDP, .li = sk->li, .client = t->rx_from[i]};
			size_t len;
			const uint8_t *p = rx_get(t, i, n, &len);
			if (p)
				turn_client_packet(t, &s, p, len, now);
		}
		got += n;
		if (n < TURN_RX_SLOTS)
			break;
		t->behind_turn = t->turns;
	}
	pthread_mutex_unlock(&t->lock);
}

void turn_conn_close(struct turn *t, struct turn_conn *c)
{
	if (c->alloc)
		turn_alloc_delete(t, c->alloc, "closed with its connection");
	turn_conn_put(t, c);
	net_tls_sock_free(c->tls); /* its close_notify, if the kernel takes it */
	loop_fd_del(t->loop, c->sk.fd);
	close(c->sk.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	t->nconns--;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void on_conn(int fd, uint32_t events, void *arg)
{
	struct turn_sock *sk = arg;
	struct turn_conn *c = sk->owner;
	struct turn *t = c->t;
	pthread_mutex_lock(&t->lock);
	uint64_t now = loop_now_ms(t->loop);
	if (c->handshaking) {
		bool closed;
		if (!turn_tls_step(t, c, &closed))
			goto out;
		c->last_ms = now;
	}
	if (events & EPOLLOUT)
		conn_flush(t, c);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->tls)
		goto out;
	/* TLS: what OpenSSL decrypted already is no longer on the socket for
	 * epoll to see, so the rounds go on while it holds some (at most the
	 * rest of one 16 KiB record) */
	bool more = false;
	for (int round = 0; round < TURN_CONN_ROUNDS || more; round++) {
		if (buf_reserve(&c->in, 16384)) {
			turn_conn_close(t, c);
			goto out;
		}
		ssize_t n = c->tls ? net_tls_sock_read(c->tls, c->in.data + c->in.len,
						       c->in.cap - c->in.len, &more)
				   : recv(fd, c->in.data + c->in.len, c->in.cap - c->in.len,
					  MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			turn_conn_close(t, c);
			goto out;
		}
		if (n < 0)
			break;
		c->in.len += (size_t)n;
		c->last_ms = now;
		size_t off = 0;
		while (off < c->in.len) {
			size_t ml;
			int err = stun_frame_turn(c->in.data + off, c->in.len - off,
						  65535 + STUN_HDR_LEN, &ml);
			if (err == ENODATA)
				break;
			if (err) {
				metric_inc(&turn_m_drop_bad);
				turn_conn_close(t, c);
				goto out;
			}
			struct turn_src s = {c->tls ? NET_TLS : NET_TCP, c->sk.li, c->remote, c};
			turn_client_packet(t, &s, (const uint8_t *)c->in.data + off, ml, now);
			off += ml;
		}
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
out:
	pthread_mutex_unlock(&t->lock);
}

static void on_accept(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct turn_sock *sk = arg;
	struct turn *t = sk->t;
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < 64; i++) {
		struct net_addr remote;
		socklen_t sl = sizeof remote.u.ss;
		int cfd = accept4(fd, &remote.u.sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			break;
		struct turn_conn *c = calloc(1, sizeof *c);
		if (c)
			c->remote = remote;
		/* the limits count every thread's connections */
		if (!c || !turn_conn_take(t, c)) {
			metric_inc(&turn_m_conn_refused);
			free(c);
			close(cfd);
			continue;
		}
		int one = 1;
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->sk = (struct turn_sock){TURN_SK_CONN, cfd, sk->li, c, 0, t, 0};
		c->t = t;
		c->last_ms = c->opened_ms = loop_now_ms(t->loop);
		buf_init(&c->in);
		buf_init(&c->out);
		if (t->tcp_tls[sk->li] && turn_tls_accept(t, c)) {
			turn_conn_put(t, c);
			close(cfd);
			free(c);
			continue;
		}
		if (loop_fd_add(t->loop, cfd, EPOLLIN, on_conn, &c->sk)) {
			turn_conn_put(t, c);
			net_tls_sock_free(c->tls);
			close(cfd);
			free(c);
			continue;
		}
		c->next = t->conns;
		if (t->conns)
			t->conns->prev = c;
		t->conns = c;
		t->nconns++;
	}
	pthread_mutex_unlock(&t->lock);
}

static void on_sweep(void *arg)
{
	struct turn *t = arg;
	pthread_mutex_lock(&t->lock);
	turn_sweep(t, loop_now_ms(t->loop));
	turn_tls_sweep(t, loop_now_ms(t->loop));
	pthread_mutex_unlock(&t->lock);
	timer_start(t->loop, &t->sweep, 1000, on_sweep, t);
}

static void *thread_main(void *arg)
{
	struct turn *t = arg;
	timer_start(t->loop, &t->sweep, 1000, on_sweep, t);
	loop_run(t->loop);
	return NULL;
}

/* ---- configuration ---- */

static int parse_listen(struct turn *t, const char *s)
{
	char tmp[1024];
	snprintf(tmp, sizeof tmp, "%s", s);
	for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		struct slice it = slice_trim(slice_cstr(tok));
		if (!it.l)
			continue;
		char item[128];
		slice_to_cstr(it, item, sizeof item);
		bool tls = strncmp(item, "tls:", 4) == 0;
		bool tcp = tls || strncmp(item, "tcp:", 4) == 0;
		if (!tcp && strncmp(item, "udp:", 4) != 0) {
			LOG_E("turn",
			      "turn.listen: '%s': want udp:ADDR:PORT, tcp:ADDR:PORT or "
			      "tls:ADDR:PORT (no dtls:)",
			      item);
			return EINVAL;
		}
		if (tcp && t->ntcp < TURN_MAX_LISTEN)
			t->tcp_tls[t->ntcp] = tls;
		unsigned *n = tcp ? &t->ntcp : &t->nudp;
		struct net_addr *addrs = tcp ? t->tcp_addr : t->udp_addr;
		if (*n == TURN_MAX_LISTEN) {
			LOG_E("turn", "turn.listen: more than %d of a transport", TURN_MAX_LISTEN);
			return EINVAL;
		}
		if (net_addr_parse(item + 4, tls ? 5349 : 3478, &addrs[*n])) {
			LOG_E("turn", "turn.listen: '%s' is not transport:address:port", item);
			return EINVAL;
		}
		(*n)++;
	}
	if (!t->nudp && !t->ntcp) {
		LOG_E("turn", "turn.listen: no address");
		return EINVAL;
	}
	return 0;
}

static int parse_peers(const char *key, const char *s, struct net_cidr *out, size_t *n)
{
	int err = net_cidr_list_parse(s, out, TURN_PEERS_MAX, n);
	if (err)
		LOG_E("turn", "turn.%s: '%s': %s", key, s,
		      err == ENOSPC ? "too many entries" : "not a CIDR list");
	return err;
}

static int configure(struct turn *t, const struct conf *c)
{
	struct turn_conf *cf = &t->cf;
	snprintf(cf->realm, sizeof cf->realm, "%s", conf_str(c, "turn", "realm"));
	if (!cf->realm[0])
		snprintf(cf->realm, sizeof cf->realm, "%s", conf_str(c, "auth", "realm"));
	if (!cf->realm[0]) {
		LOG_E("turn", "turn.realm: empty, and so is auth.realm: set one");
		return EINVAL;
	}
	snprintf(cf->secret, sizeof cf->secret, "%s", conf_str(c, "turn", "static_auth_secret"));
	cf->lifetime_default = (uint32_t)conf_int(c, "turn", "lifetime");
	cf->lifetime_max =
	    (uint32_t)MAX(conf_int(c, "turn", "max_lifetime"), conf_int(c, "turn", "lifetime"));
	cf->nonce_lifetime = (uint32_t)conf_int(c, "turn", "nonce_lifetime");
	cf->max_allocs = (uint32_t)conf_int(c, "turn", "max_allocations");
	cf->max_allocs_user = (uint32_t)conf_int(c, "turn", "max_allocations_per_user");
	cf->max_perms = (uint32_t)conf_int(c, "turn", "max_permissions");
	cf->max_chans = (uint32_t)conf_int(c, "turn", "max_channels");
	cf->bandwidth = (uint64_t)conf_int(c, "turn", "bandwidth") * 125; /* kbit/s -> B/s */
	cf->bandwidth_user = (uint64_t)conf_int(c, "turn", "bandwidth_per_user") * 125;
	cf->tcp_max_conns = (unsigned)conf_int(c, "turn", "tcp_max_connections");
	cf->tcp_max_conns_src = (unsigned)conf_int(c, "turn", "tcp_max_connections_per_address");
	cf->rate = (uint32_t)conf_int(c, "turn", "rate");
	cf->burst = (uint32_t)conf_int(c, "turn", "burst");
	unsigned lo, hi;
	char extra;
	if (sscanf(conf_str(c, "turn", "relay_ports"), "%u-%u%c", &lo, &hi, &extra) != 2 ||
	    lo < 1024 || hi > 65535 || lo > hi) {
		LOG_E("turn", "turn.relay_ports: want LOW-HIGH within 1024-65535");
		return EINVAL;
	}
	cf->port_lo = (uint16_t)lo;
	cf->port_hi = (uint16_t)hi;
	int err = parse_listen(t, conf_str(c, "turn", "listen"));
	if (err)
		return err;
	const char *r4 = conf_str(c, "turn", "relay_address");
	const char *r6 = conf_str(c, "turn", "relay_address6");
	if (r4[0]) {
		if (net_addr_parse(r4, 0, &cf->relay_ip[0]) ||
		    net_addr_family(&cf->relay_ip[0]) != AF_INET) {
			LOG_E("turn", "turn.relay_address: '%s' is not an IPv4 address", r4);
			return EINVAL;
		}
	} else {
		for (unsigned i = 0; i < t->nudp + t->ntcp && !cf->relay_ip[0].u.sa.sa_family;
		     i++) {
			const struct net_addr *l =
			    i < t->nudp ? &t->udp_addr[i] : &t->tcp_addr[i - t->nudp];
			if (net_addr_family(l) == AF_INET && !net_addr_is_any(l))
				cf->relay_ip[0] = *l;
		}
		if (!cf->relay_ip[0].u.sa.sa_family &&
		    net_default_source(AF_INET, &cf->relay_ip[0]))
			LOG_W("turn", "no IPv4 relay address: IPv4 allocations refused");
	}
	if (r6[0] && (net_addr_parse(r6, 0, &cf->relay_ip[1]) ||
		      net_addr_family(&cf->relay_ip[1]) != AF_INET6)) {
		LOG_E("turn", "turn.relay_address6: '%s' is not an IPv6 address", r6);
		return EINVAL;
	}
	for (unsigned f = 0; f < 2; f++)
		if (cf->relay_ip[f].u.sa.sa_family)
			net_addr_set_port(&cf->relay_ip[f], 0);
	err = parse_peers("allowed_peers", conf_str(c, "turn", "allowed_peers"), t->filter.allow,
			  &t->filter.nallow);
	if (!err)
		err = parse_peers("denied_peers", conf_str(c, "turn", "denied_peers"),
				  t->filter.deny, &t->filter.ndeny);
	if (err)
		return EINVAL;
	for (unsigned f = 0; f < 2; f++)
		if (cf->relay_ip[f].u.sa.sa_family)
			t->filter.own[t->filter.nown++] = cf->relay_ip[f];
	return 0;
}

/* With several threads a [stun] (SO_REUSEPORT too) on the same port would
 * join the listener's group and take a share of the datagrams silently: a
 * bind without the option first fails there, as one thread's does. */
static int udp_probe(const struct net_addr *a)
{
	if (net_addr_port(a) == 0)
		return 0;
	int fd, err = net_udp_socket(a, false, &fd);
	if (!err)
		close(fd);
	return err;
}

static int open_listeners(struct turn *t)
{
	bool group = t->sh->nthr > 1;
	int herr = loop_on_turn_end(t->loop, on_turn_end, t); /* the txq's flush */
	if (herr)
		return herr;
	for (unsigned i = 0; i < t->nudp; i++) {
		t->udp[i] = (struct turn_sock){TURN_SK_UDP, -1, i, NULL, 0, t, 0};
		/* one thread: no SO_REUSEPORT, so a [stun] on the same port is an
		 * error, not a random split of the datagrams */
		int err = group && t->idx == 0 ? udp_probe(&t->udp_addr[i]) : 0;
		if (!err)
			err = net_udp_socket(&t->udp_addr[i], group, &t->udp[i].fd);
		char a[NET_ADDR_STRLEN];
		if (err) {
			LOG_E("turn", "cannot bind udp:%s: %s%s",
			      net_addr_fmt(&t->udp_addr[i], a, sizeof a), strerror(err),
			      err == EADDRINUSE ? " (is [stun] listening there? the TURN port "
						  "answers Binding itself)"
						: "");
			return err;
		}
		/* thread 0 resolves port 0; the others bind what it got */
		net_sock_addr(t->udp[i].fd, &t->udp_addr[i]);
		if (!(t->txq[i] = calloc(1, sizeof *t->txq[i])))
			return ENOMEM;
		if ((err = loop_fd_add(t->loop, t->udp[i].fd, EPOLLIN, on_udp, &t->udp[i])))
			return err;
	}
	for (unsigned i = 0; i < t->ntcp; i++) {
		t->tcp[i] = (struct turn_sock){TURN_SK_TCP_LISTEN, -1, i, NULL, 0, t, 0};
		const struct net_addr *a = &t->tcp_addr[i];
		int fd = socket(net_addr_family(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			if (group)
				setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
			if (net_addr_family(a) == AF_INET6)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		}
		if (fd < 0 || bind(fd, &a->u.sa, net_addr_len(a)) || listen(fd, 128)) {
			int err = errno;
			char b[NET_ADDR_STRLEN];
			LOG_E("turn", "cannot listen on %s:%s: %s", t->tcp_tls[i] ? "tls" : "tcp",
			      net_addr_fmt(a, b, sizeof b), strerror(err));
			if (fd >= 0)
				close(fd);
			return err;
		}
		t->tcp[i].fd = fd;
		net_sock_addr(fd, &t->tcp_addr[i]);
		int err = loop_fd_add(t->loop, fd, EPOLLIN, on_accept, &t->tcp[i]);
		if (err)
			return err;
	}
	return 0;
}

static unsigned threads_wanted(const struct conf *c)
{
	long n = conf_int(c, "turn", "threads");
	if (n > 0)
		return (unsigned)n;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 1 ? 1 : cpus > 16 ? 16 : (unsigned)cpus;
}

/* A thread's own state; the configuration copied from thread 0's (after
 * its listeners resolved their ports). */
static int thread_new(struct turn_shared *sh, unsigned idx, struct turn **tp)
{
	struct turn *t = calloc(1, sizeof *t);
	if (!t)
		return ENOMEM;
	for (unsigned i = 0; i < TURN_MAX_LISTEN; i++)
		t->udp[i].fd = t->tcp[i].fd = -1;
	t->sh = sh;
	t->idx = idx;
	rx_setup(t);
	pthread_mutex_init(&t->lock, NULL);
	buf_init(&t->tx);
	timer_init(&t->sweep);
	sh->thr[idx] = t;
	*tp = t;
	if (idx == 0)
		return 0;
	const struct turn *z = sh->thr[0];
	t->cf = z->cf;
	t->filter = z->filter;
	t->creds = z->creds;
	memcpy(t->nonce_key, z->nonce_key, sizeof t->nonce_key);
	t->tls = z->tls;
	t->nudp = z->nudp;
	t->ntcp = z->ntcp;
	memcpy(t->udp_addr, z->udp_addr, sizeof t->udp_addr);
	memcpy(t->tcp_addr, z->tcp_addr, sizeof t->tcp_addr);
	memcpy(t->tcp_tls, z->tcp_tls, sizeof t->tcp_tls);
	int err = turn_tables_init(t);
	if (!err)
		err = loop_alloc(&t->loop);
	if (!err) {
		loop_set_batch_wait(t->loop, z->batch_wait_us);
		err = open_listeners(t);
	}
	return err;
}

int turn_start(struct turn **tp, const struct conf *c, struct store_cred *creds)
{
	struct turn_shared *sh = calloc(1, sizeof *sh);
	unsigned n = threads_wanted(c);
	if (sh)
		sh->thr = calloc(n, sizeof *sh->thr);
	if (!sh || !sh->thr) {
		free(sh);
		return ENOMEM;
	}
	sh->nthr = n;
	struct turn *t;
	int err = thread_new(sh, 0, &t);
	if (err) {
		free(sh->thr);
		free(sh);
		return err;
	}
	t->creds = creds;
	rand_bytes(t->nonce_key, sizeof t->nonce_key);
	turn_metrics_register();
	turn_tls_metrics_register();
	err = configure(t, c);
	if (!err)
		err = turn_shared_init(sh, &t->cf);
	if (!err)
		err = turn_tls_setup(t, c);
	if (!err)
		err = turn_tables_init(t);
	if (!err)
		err = stund_limiter_init(&sh->lim, (size_t)conf_int(c, "turn", "sources"),
					 (uint32_t)conf_int(c, "turn", "rate"),
					 (uint32_t)conf_int(c, "turn", "burst"));
	if (!err)
		err = loop_alloc(&t->loop);
	if (!err) {
		t->batch_wait_us = (unsigned)conf_int(c, "turn", "batch_wait");
		loop_set_batch_wait(t->loop, t->batch_wait_us);
	}
	if (!err && net_hostaddrs_alloc(&t->filter.host) == 0)
		net_hostaddrs_watch(t->filter.host, t->loop);
	if (!err)
		err = open_listeners(t);
	for (unsigned i = 1; !err && i < n; i++) {
		struct turn *x;
		err = thread_new(sh, i, &x);
	}
	if (!err)
		err = turn_fast_start(t, conf_str(c, "turn", "fastpath"));
	for (unsigned i = 1; !err && i < n; i++)
		sh->thr[i]->fast = t->fast;
	for (unsigned i = 0; !err && i < n; i++) {
		err = pthread_create(&sh->thr[i]->thread, NULL, thread_main, sh->thr[i]);
		if (!err)
			sh->thr[i]->running = true;
	}
	if (err) {
		turn_free(t);
		return err;
	}
	char a[NET_ADDR_STRLEN], r[NET_ADDR_STRLEN];
	for (unsigned i = 0; i < t->nudp + t->ntcp; i++)
		LOG_I("turn", "listening on %s:%s, realm \"%s\", relays on %s ports %u-%u",
		      i < t->nudp ? "udp" : t->tcp_tls[i - t->nudp] ? "tls" : "tcp",
		      net_addr_fmt(i < t->nudp ? &t->udp_addr[i] : &t->tcp_addr[i - t->nudp], a,
				   sizeof a),
		      t->cf.realm,
		      t->cf.relay_ip[0].u.sa.sa_family
			  ? net_addr_ip_fmt(&t->cf.relay_ip[0], r, sizeof r)
			  : "-",
		      t->cf.port_lo, t->cf.port_hi);
	LOG_I("turn", "%u thread%s", n, n == 1 ? "" : "s");
	*tp = t;
	return 0;
}

/* Its allocations, connections and sockets; the loop stopped. */
static void thread_close(struct turn *t)
{
	if (timer_active(&t->sweep))
		timer_cancel(&t->sweep);
	while (t->conns)
		turn_conn_close(t, t->conns);
	if (t->by_tuple)
		turn_tables_free(t);
	for (unsigned i = 0; i < TURN_MAX_LISTEN; i++) {
		if (t->udp[i].fd >= 0)
			close(t->udp[i].fd);
		if (t->tcp[i].fd >= 0)
			close(t->tcp[i].fd);
		t->udp[i].fd = t->tcp[i].fd = -1;
	}
}

static void thread_free(struct turn *t)
{
	for (unsigned i = 0; i < TURN_MAX_LISTEN; i++)
		free(t->txq[i]);
	turn_userhash_free(t);
	if (t->loop)
		loop_free(t->loop);
	buf_free(&t->tx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void turn_free(struct turn *t)
{
	if (!t)
		return;
	struct turn_shared *sh = t->sh; /* t is thread 0 */
	for (unsigned i = 0; i < sh->nthr; i++)
		if (sh->thr[i] && sh->thr[i]->running)
			loop_stop(sh->thr[i]->loop);
	for (unsigned i = 0; i < sh->nthr; i++)
		if (sh->thr[i] && sh->thr[i]->running) {
			pthread_join(sh->thr[i]->thread, NULL);
			sh->thr[i]->running = false;
		}
	for (unsigned i = 0; i < sh->nthr; i++)
		if (sh->thr[i])
			thread_close(sh->thr[i]);
	turn_fast_stop(t); /* after the allocations: freeing them reads its counters */
	net_tls_server_free(t->tls);
	net_hostaddrs_free(t->filter.host);
	stund_limiter_free(&sh->lim);
	if (sh->by_relay)
		turn_shared_free(sh);
	for (unsigned i = sh->nthr; i-- > 0;)
		if (sh->thr[i])
			thread_free(sh->thr[i]);
	free(sh->thr);
	free(sh);
}

const struct net_addr *turn_listen_addr(const struct turn *t, enum net_transport tp, unsigned i)
{
	if (tp == NET_UDP)
		return i < t->nudp ? &t->udp_addr[i] : NULL;
	/* the i-th stream listener of that kind */
	for (unsigned k = 0; k < t->ntcp; k++)
		if (t->tcp_tls[k] == (tp == NET_TLS) && (tp == NET_TCP || tp == NET_TLS) && i-- == 0)
			return &t->tcp_addr[k];
	return NULL;
}

size_t turn_allocation_count(struct turn *t)
{
	size_t n = 0;
	for (unsigned i = 0; i < t->sh->nthr; i++) {
		struct turn *x = t->sh->thr[i];
		pthread_mutex_lock(&x->lock);
		n += x->nallocs;
		pthread_mutex_unlock(&x->lock);
	}
	return n;
}

/* ---- dumps for `pinhole ctl allocations` ---- */

static void dump_json_thread(struct turn *t, struct buf *out, uint64_t now, size_t *count);

/* Each thread's allocations under its lock, one thread at a time. */
int turn_dump_json(struct turn *t0, struct buf *out)
{
	uint64_t now = time_mono_ms();
	size_t count = 0;
	buf_append_cstr(out, "{\"allocations\":[");
	for (unsigned ti = 0; ti < t0->sh->nthr; ti++) {
		struct turn *t = t0->sh->thr[ti];
		pthread_mutex_lock(&t->lock);
		dump_json_thread(t, out, now, &count);
		pthread_mutex_unlock(&t->lock);
	}
	buf_printf(out, "],\"count\":%zu}\n", count);
	return out->failed ? ENOMEM : 0;
}

static void dump_json_thread(struct turn *t, struct buf *out, uint64_t now, size_t *count)
{
	for (struct turn_alloc *a = t->all; a; a = a->next) {
		turn_fast_pull(t, a);
		char c[NET_ADDR_STRLEN], r4[NET_ADDR_STRLEN] = "", r6[NET_ADDR_STRLEN] = "";
		if (a->relay[0].sk.fd >= 0)
			net_addr_fmt(&a->relay[0].addr, r4, sizeof r4);
		if (a->relay[1].sk.fd >= 0)
			net_addr_fmt(&a->relay[1].addr, r6, sizeof r6);
		buf_printf(out, "%s{\"id\":%llu,\"user\":", (*count)++ ? "," : "",
			   (unsigned long long)a->id);
		buf_append_json_str(out, a->user);
		buf_printf(
		    out,
		    ",\"client\":\"%s:%s\",\"relayed\":[\"%s\",\"%s\"],\"expires_in\":%llu,"
		    "\"age\":%llu,\"permissions\":[",
		    net_transport_name(a->tp), net_addr_fmt(&a->client, c, sizeof c), r4, r6,
		    (unsigned long long)(a->expire_ms > now ? (a->expire_ms - now) / 1000 : 0),
		    (unsigned long long)((now - a->created_ms) / 1000));
		bool first = true;
		for (size_t i = 0; i < a->nperm; i++) {
			if (a->perms[i].expire_ms <= now)
				continue;
			char p[NET_ADDR_STRLEN];
			buf_printf(out, "%s\"%s\"", first ? "" : ",",
				   net_addr_ip_fmt(&a->perms[i].ip, p, sizeof p));
			first = false;
		}
		buf_append_cstr(out, "],\"channels\":[");
		first = true;
		for (size_t i = 0; i < a->nchan; i++) {
			if (a->chans[i].expire_ms <= now)
				continue;
			char p[NET_ADDR_STRLEN];
			buf_printf(out, "%s{\"number\":%u,\"peer\":\"%s\",\"fast\":%s}",
				   first ? "" : ",", a->chans[i].num,
				   net_addr_fmt(&a->chans[i].peer, p, sizeof p),
				   a->chans[i].fast ? "true" : "false");
			first = false;
		}
		buf_printf(out,
			   "],\"to_peer\":{\"bytes\":%lld,\"packets\":%lld},"
			   "\"to_client\":{\"bytes\":%lld,\"packets\":%lld}}",
			   (long long)a->tx_bytes, (long long)a->tx_pkts, (long long)a->rx_bytes,
			   (long long)a->rx_pkts);
	}
}

static void dump_text_thread(struct turn *t, struct buf *out, uint64_t now);

int turn_dump_text(struct turn *t0, struct buf *out)
{
	uint64_t now = time_mono_ms();
	size_t count = 0;
	buf_printf(out, "%-6s %-16s %-26s %-22s %7s %5s %5s %12s %12s\n", "id", "user", "client",
		   "relayed", "expires", "perms", "chans", "to_peer", "to_client");
	for (unsigned ti = 0; ti < t0->sh->nthr; ti++) {
		struct turn *t = t0->sh->thr[ti];
		pthread_mutex_lock(&t->lock);
		dump_text_thread(t, out, now);
		count += t->nallocs;
		pthread_mutex_unlock(&t->lock);
	}
	buf_printf(out, "%zu allocations\n", count);
	return out->failed ? ENOMEM : 0;
}

static void dump_text_thread(struct turn *t, struct buf *out, uint64_t now)
{
	for (struct turn_alloc *a = t->all; a; a = a->next) {
		turn_fast_pull(t, a);
		char c[NET_ADDR_STRLEN + 4], cc[NET_ADDR_STRLEN], r[NET_ADDR_STRLEN];
		snprintf(c, sizeof c, "%s:%s", net_transport_name(a->tp),
			 net_addr_fmt(&a->client, cc, sizeof cc));
		net_addr_fmt(&a->relay[a->relay[0].sk.fd >= 0 ? 0 : 1].addr, r, sizeof r);
		buf_printf(
		    out, "%-6llu %-16s %-26s %-22s %6llus %5zu %5zu %12lld %12lld\n",
		    (unsigned long long)a->id, a->user, c, r,
		    (unsigned long long)(a->expire_ms > now ? (a->expire_ms - now) / 1000 : 0),
		    a->nperm, a->nchan, (long long)a->tx_bytes, (long long)a->rx_bytes);
	}
}
