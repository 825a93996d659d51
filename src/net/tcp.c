/* TCP: accepting with per-source bounds, resumable framing, bounded buffers, slow readers closed. */
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_int.h"

void net_conn_hash_link(struct net *n, struct conn *c)
{
	size_t b = c->id % n->conn_hash_size;
	c->next_hash = n->conn_hash[b];
	n->conn_hash[b] = c;
}

static void conn_hash_unlink(struct net *n, struct conn *c)
{
	struct conn **pp = &n->conn_hash[c->id % n->conn_hash_size];
	while (*pp && *pp != c)
		pp = &(*pp)->next_hash;
	if (*pp)
		*pp = c->next_hash;
}

struct conn *net_conn_find_locked(struct net *n, uint64_t id)
{
	for (struct conn *c = n->conn_hash[id % n->conn_hash_size]; c; c = c->next_hash)
		if (c->id == id)
			return c;
	return NULL;
}

static struct addr_count **addr_slot(struct net *n, const struct net_src_key *k)
{
	uint64_t h = (k->hi ^ (k->lo * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
	struct addr_count **pp = &n->addr_hash[(h >> 32) % n->conn_hash_size];
	while (*pp && ((*pp)->key.hi != k->hi || (*pp)->key.lo != k->lo))
		pp = &(*pp)->next;
	return pp;
}

/* Counts a new connection from k unless its source is at the bound; caller
 * holds conn_lock. 0, EMFILE (source full) or ENOMEM. */
int net_addr_take_locked(struct net *n, const struct net_src_key *k)
{
	struct addr_count **pp = addr_slot(n, k);
	if (*pp) {
		if (n->conf.tcp_max_conns_per_addr && (*pp)->n >= n->conf.tcp_max_conns_per_addr)
			return EMFILE;
		(*pp)->n++;
		return 0;
	}
	struct addr_count *a = malloc(sizeof *a);
	if (!a)
		return ENOMEM;
	a->key = *k;
	a->n = 1;
	a->next = NULL;
	*pp = a;
	return 0;
}

void net_addr_put_locked(struct net *n, const struct net_src_key *k)
{
	struct addr_count **pp = addr_slot(n, k);
	struct addr_count *a = *pp;
	if (a && --a->n == 0) {
		*pp = a->next;
		free(a);
	}
}

/* Buffers count in tcp_buffered by their capacity, what they really hold. */
static void buf_release(struct net *n, struct buf *b)
{
	n->st.tcp_buffered -= (int64_t)b->cap;
	buf_free(b);
}

/* Grows b to at least need bytes (exactly need when small), counted. */
static int buf_grow(struct net *n, struct buf *b, size_t need, size_t limit)
{
	if (b->cap >= need)
		return 0;
	size_t cap = MIN(MAX(need, b->cap * 2), MAX(limit, need));
	char *p = realloc(b->data, cap);
	if (!p)
		return ENOMEM;
	n->st.tcp_buffered += (int64_t)(cap - b->cap);
	b->data = p;
	b->cap = cap;
	return 0;
}

pthread_mutex_t *net_conn_io(struct net *n, const struct conn *c)
{
	return &n->io_locks[c->id % NET_IO_LOCKS];
}

void net_tcp_close(struct conn *c)
{
	struct worker *w = c->owner;
	struct net *n = w->net;
	struct net_src_key k;
	net_addr_src_key(&c->flow.remote, &k);
	pthread_mutex_lock(&n->conn_lock);
	conn_hash_unlink(n, c);
	net_conn_dst_unlink_locked(n, c);
	if (c->connecting)
		n->n_connecting--;
	n->n_conns--;
	net_addr_put_locked(n, &k);
	pthread_mutex_unlock(&n->conn_lock);
	/* no one finds c now; a send that found it before is over once its
	 * output lock is free */
	pthread_mutex_lock(net_conn_io(n, c));
	pthread_mutex_unlock(net_conn_io(n, c));
	if (c->prev_in_worker)
		c->prev_in_worker->next_in_worker = c->next_in_worker;
	else
		w->conns = c->next_in_worker;
	if (c->next_in_worker)
		c->next_in_worker->prev_in_worker = c->prev_in_worker;
	loop_fd_del(w->loop, c->fd);
	net_tls_conn_free(c);
	close(c->fd);
	buf_release(n, &c->in);
	buf_release(n, &c->out);
	net_ws_conn_free(n, c);
	struct flow f = c->flow;
	free(c);
	/* after the unlink: whoever hears of it and sends on f gets ENOTCONN */
	if (n->closed)
		n->closed(w, &f, n->closed_arg);
}

bool net_conn_alive(struct net *n, uint64_t conn_id)
{
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = net_conn_find_locked(n, conn_id);
	bool alive = c && !c->dead;
	pthread_mutex_unlock(&n->conn_lock);
	return alive;
}

/* send(2), or SSL_write on a TLS connection; caller holds net_conn_io(c). */
static ssize_t conn_send_locked(struct conn *c, const void *p, size_t len)
{
	if (c->tls)
		return net_tls_write_locked(c, p, len);
	return send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void want_out_locked(struct conn *c, bool want)
{
	if (want != c->want_out) {
		/* loop_fd_mod is thread-safe, so any worker may ask for EPOLLOUT;
		 * only on a change, not a syscall per message */
		uint32_t ev = EPOLLIN | (want ? EPOLLOUT : 0);
		if (loop_fd_mod(c->owner->loop, c->fd, ev) == 0)
			c->want_out = want;
	}
}

/* Writes what it can of c->out, and frees the queue once it is empty; caller
 * holds net_conn_io(c). Returns errno on a dead socket. */
int net_conn_flush_locked(struct net *n, struct conn *c)
{
	size_t done = 0;
	while (done < c->out.len) {
		ssize_t k = conn_send_locked(c, c->out.data + done, c->out.len - done);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return errno;
		}
		done += (size_t)k;
	}
	if (done == c->out.len) {
		buf_release(n, &c->out);
		c->stall_ms = 0;
	} else {
		if (done) {
			memmove(c->out.data, c->out.data + done, c->out.len - done);
			c->out.len -= done;
		}
		if (done || !c->stall_ms)
			c->stall_ms = time_mono_ms();
	}
	want_out_locked(c, c->out.len != 0);
	return 0;
}

/* A peer that lets more than tcp_max_queue pile up is not reading: its queue
 * is freed at once and the socket shut down, and its owner closes it on the
 * wake-up that follows. Any thread; caller holds net_conn_io(c). */
static void conn_kill_slow_locked(struct net *n, struct conn *c)
{
	c->dead = true;
	n->st.tcp_slow_closed++;
	buf_release(n, &c->out);
	c->stall_ms = 0;
	shutdown(c->fd, SHUT_RDWR);
}

/* Delivers every whole message at the start of p[0..len); returns the bytes
 * taken, or SIZE_MAX when the connection was closed. */
static size_t conn_deliver(struct conn *c, const char *p, size_t len)
{
	struct net *n = c->owner->net;
	size_t off = 0;
	while (off < len) {
		size_t msglen = 0;
		int err = 0;
		if (n->frame)
			err = n->frame(&c->fs, p + off, len - off, n->conf.max_msg, &msglen);
		else
			msglen = len - off;
		if (err == ENODATA) {
			if (len - off >= n->conf.max_msg) {
				n->st.tcp_oversize++;
				net_tcp_close(c);
				return SIZE_MAX;
			}
			break;
		}
		if (err || msglen == 0 || msglen > len - off) {
			n->st.tcp_broken++;
			net_tcp_close(c);
			return SIZE_MAX;
		}
		/* a keepalive is no first message: a peer sending only CRLF pings
		 * is still closed at tcp_handshake_s */
		if (!c->fs.filler)
			c->got_message = true;
		memset(&c->fs, 0, sizeof c->fs);
		/* handlers may send on this connection but never close it */
		struct flow f = c->flow;
		if (n->recv)
			n->recv(c->owner, &f, p + off, msglen, n->recv_arg);
		off += msglen;
	}
	return off;
}

/* SYN-ACKs the kernel sent again for the connection before it was accepted. */
static unsigned synack_retransmits(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	memset(&ti, 0, sizeof ti);
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? ti.tcpi_total_retrans : 0;
}

/* One step of c's TLS handshake: true when there is nothing more to do now
 * (it goes on, or failed and c is closed), false when it is done and
 * application data may follow. On its owner. */
static bool conn_tls_step(struct conn *c)
{
	struct net *n = c->owner->net;
	uint32_t want = EPOLLIN;
	int err = net_tls_handshake(c, &want);
	bool first = c->deferred;
	c->deferred = false;
	/* A TCP_DEFER_ACCEPT listener's connection comes with its first bytes
	 * (the ClientHello). The kernel hands one over without them in two
	 * cases: it stayed silent through the whole deferral (accepted on the
	 * ACK to the SYN-ACK sent again at its end), closed here at once as a
	 * handshake that timed out, so a connect-and-say-nothing flood never
	 * holds a descriptor or a handshake slot for longer than this; or it
	 * came by a SYN cookie (the listen queue was full), and it waits for
	 * its ClientHello as on any listener. */
	if (err == EAGAIN && first && net_tls_silent(c) && synack_retransmits(c->fd)) {
		net_tls_fail(c, NET_TLS_TIMEOUT);
		net_tcp_close(c);
		return true;
	}
	if (err == EAGAIN) {
		pthread_mutex_lock(net_conn_io(n, c));
		want_out_locked(c, (want & EPOLLOUT) != 0);
		pthread_mutex_unlock(net_conn_io(n, c));
		return true;
	}
	if (err) {
		net_tcp_close(c);
		return true;
	}
	if (c->connecting) /* ours: what was queued meanwhile leaves now */
		return net_conn_up(c);
	pthread_mutex_lock(net_conn_io(n, c));
	want_out_locked(c, c->out.len != 0);
	pthread_mutex_unlock(net_conn_io(n, c));
	return false;
}

void net_conn_readable(int fd, uint32_t events, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->owner;
	struct net *n = w->net;
	if (c->dead) {
		net_tcp_close(c);
		return;
	}
	if (c->connecting && !c->tls) {
		/* an outgoing connect ended, one way or the other */
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) || net_conn_connected(c))
			return;
		events &= ~(uint32_t)EPOLLOUT; /* the queue was flushed */
	}
	if (c->tls && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		net_tls_readable(c);
	if (net_tls_handshaking(c)) {
		/* TLS first: until it is done no byte is the protocol's */
		if (conn_tls_step(c))
			return;
		events = EPOLLIN; /* what followed the handshake, if any */
	}
	if (events & EPOLLOUT) {
		pthread_mutex_lock(net_conn_io(n, c));
		int err = net_conn_flush_locked(n, c);
		pthread_mutex_unlock(net_conn_io(n, c));
		if (err) {
			net_tcp_close(c);
			return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	size_t scratch_len = n->conf.max_msg + 1;
	/* a few reads per wake-up: a connection that always has more does not
	 * keep the worker from the others (epoll is level-triggered: it comes
	 * back next turn) */
	bool more = false; /* OpenSSL holds decrypted bytes epoll cannot see */
	for (int reads = 0; reads < 8 || more; reads++) {
		/* with nothing kept, read into the worker's scratch (the UDP
		 * batch's first slot; both run on this thread, one at a time) */
		bool scratch = c->in.len == 0;
		char *dst;
		size_t room;
		if (scratch) {
			dst = w->rxbuf;
			room = scratch_len;
		} else {
			if (c->in.cap - c->in.len < 1024 &&
			    buf_grow(n, &c->in, c->in.len + 4096, scratch_len)) {
				net_tcp_close(c);
				return;
			}
			dst = c->in.data + c->in.len;
			room = c->in.cap - c->in.len;
		}
		ssize_t k = c->tls ? net_tls_read(c, dst, room, &more)
				   : recv(fd, dst, room, MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			net_tcp_close(c);
			return;
		}
		if (k < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		c->last_rx_ms = loop_now_ms(w->loop);
		const char *p = scratch ? w->rxbuf : c->in.data;
		size_t len = scratch ? (size_t)k : c->in.len + (size_t)k;
		if (!scratch)
			c->in.len = len;
		/* a ws: listener's connection: its bytes are the buffer's (ws.c unmasks in place) */
		size_t off = c->ws ? net_ws_deliver(c, (char *)p, len) : conn_deliver(c, p, len);
		if (off == SIZE_MAX)
			return;
		if (scratch) {
			/* keep the start of the unfinished message, in a buffer of
			 * its size: the framer will ask for more */
			if (off < len) {
				if (buf_grow(n, &c->in, MAX(len - off + 1024, 4096), scratch_len)) {
					net_tcp_close(c);
					return;
				}
				memcpy(c->in.data, p + off, len - off);
				c->in.len = len - off;
			}
		} else if (off == len) {
			buf_release(n, &c->in); /* all taken: an idle connection keeps none */
		} else if (off) {
			memmove(c->in.data, c->in.data + off, len - off);
			c->in.len -= off;
		}
		/* TLS reads ahead: OpenSSL holding nothing means its read took
		 * all the kernel had; epoll (level-triggered) says if more came,
		 * without a read(2) to see EAGAIN */
		if (c->tls && !more)
			break;
	}
	/* a handshake's last step corked what it wrote (the ticket), and the
	 * answer to what came with the Finished joined it: one send(2) */
	if (c->tls && net_tls_uncork(c))
		net_tcp_close(c);
}

static void accept_resume(void *arg)
{
	struct worker *w = arg;
	if (w->paused_fd >= 0)
		loop_fd_mod(w->loop, w->paused_fd, EPOLLIN);
	w->paused_fd = -1;
}

void net_tcp_acceptable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct fd_ctx *ctx = arg;
	struct worker *w = ctx->w;
	struct net *n = w->net;
	const struct listener *l = &n->listeners[ctx->listener];
	/* a deferred (TLS) listener: one connection per wake-up, its handshake's
	 * first step at once; epoll is level-triggered and brings the listener
	 * back with the connections in progress, so they do not wait behind a
	 * backlog, and no accept4 fails for want of a connection */
	for (;;) {
		struct net_addr peer;
		socklen_t plen = sizeof peer.u.ss;
		memset(&peer, 0, sizeof peer);
		int cfd = accept4(fd, &peer.u.sa, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* out of descriptors: the backlog would keep the socket
				 * readable and spin the worker; pause accepting */
				n->st.tcp_refused++;
				loop_fd_mod(w->loop, fd, 0);
				w->paused_fd = fd;
				timer_start(w->loop, &w->accept_pause, 100, accept_resume, w);
			}
			return;
		}
		struct net_src_key key;
		net_addr_src_key(&peer, &key);
		pthread_mutex_lock(&n->conn_lock);
		int full = n->n_conns >= n->conf.tcp_max_conns ? ENOSPC : net_addr_take_locked(n, &key);
		if (!full)
			n->n_conns++;
		pthread_mutex_unlock(&n->conn_lock);
		if (full) {
			if (full == EMFILE)
				n->st.tcp_refused_addr++;
			else
				n->st.tcp_refused++;
			close(cfd);
			continue;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			pthread_mutex_lock(&n->conn_lock);
			n->n_conns--;
			net_addr_put_locked(n, &key);
			pthread_mutex_unlock(&n->conn_lock);
			close(cfd);
			continue;
		}
		/* TCP_NODELAY came with the listening socket */
		c->id = n->next_conn_id++;
		c->fd = cfd;
		c->owner = w;
		c->flow.tp = n->listeners[ctx->listener].conf.tp;
		c->flow.listener = (uint16_t)ctx->listener;
		c->flow.conn_id = c->id;
		/* the address the peer used: the listener's unless it is a wildcard */
		if (!l->wildcard || net_sock_addr(cfd, &c->flow.local))
			c->flow.local = l->bound;
		c->flow.remote = peer;
		c->opened_ms = c->last_rx_ms = loop_now_ms(w->loop);
		buf_init(&c->in);
		buf_init(&c->out);
		if ((c->flow.tp == NET_TLS || c->flow.tp == NET_WSS) && net_tls_accept(c)) {
			/* at [tls] max_handshakes (counted there): the newest waits
			 * no more than the others would let it */
			pthread_mutex_lock(&n->conn_lock);
			n->n_conns--;
			net_addr_put_locked(n, &key);
			pthread_mutex_unlock(&n->conn_lock);
			close(cfd);
			free(c);
			continue;
		}
		c->next_in_worker = w->conns;
		if (w->conns)
			w->conns->prev_in_worker = c;
		w->conns = c;
		/* registered before it can be found, so that a send from another
		 * worker can always ask for EPOLLOUT */
		int err = c->flow.tp == NET_WS || c->flow.tp == NET_WSS ? net_ws_conn_init(n, c) : 0;
		if (!err)
			err = loop_fd_add(w->loop, cfd, EPOLLIN, net_conn_readable, c);
		pthread_mutex_lock(&n->conn_lock);
		net_conn_hash_link(n, c);
		pthread_mutex_unlock(&n->conn_lock);
		n->st.tcp_accepted++;
		if (err) {
			net_tcp_close(c);
			continue;
		}
		if (l->deferred) {
			/* its ClientHello is there: the first step now, not after
			 * another epoll round */
			c->deferred = true;
			net_conn_readable(cfd, EPOLLIN, c);
			return; /* one per wake-up (above) */
		}
	}
}

/* Closes idle connections and ones that never sent a whole message in time
 * (a bound on half-open floods), and slow readers another worker shut down.
 * O(connections of this worker) once a second. */
void net_tcp_sweep(void *arg)
{
	struct worker *w = arg;
	struct net *n = w->net;
	uint64_t now = loop_now_ms(w->loop);
	struct conn *c = w->conns;
	while (c) {
		struct conn *next = c->next_in_worker;
		if (net_tls_timed_out(c, now)) {
			net_tls_fail(c, NET_TLS_TIMEOUT);
			net_tcp_close(c);
			c = next;
			continue;
		}
		if (c->tls)
			net_tls_sweep(c, now); /* parks it if it is still on OpenSSL */
		if (c->ws && net_ws_sweep(c, now)) {
			c = next;
			continue;
		}
		bool idle = n->conf.tcp_idle_s && now - c->last_rx_ms > n->conf.tcp_idle_s * 1000ull;
		bool slow = n->conf.tcp_handshake_s && !c->got_message &&
			    now - c->opened_ms > n->conf.tcp_handshake_s * 1000ull;
		if (idle || slow)
			n->st.tcp_idle_closed++;
		if (c->connecting && now - c->opened_ms > n->conf.tcp_connect_s * 1000ull) {
			net_conn_connect_failed(c, ETIMEDOUT);
			c = next;
			continue;
		}
		uint64_t stall = c->stall_ms;
		if (stall && now > stall && now - stall > n->conf.tcp_stall_s * 1000ull) {
			/* a peer that takes nothing of what we queue for it */
			pthread_mutex_lock(net_conn_io(n, c));
			if (!c->dead)
				conn_kill_slow_locked(n, c);
			pthread_mutex_unlock(net_conn_io(n, c));
		}
		if (idle || slow || c->dead)
			net_tcp_close(c);
		c = next;
	}
	timer_start(w->loop, &w->sweep, 1000, net_tcp_sweep, w);
}

/* TCP send: straight to the kernel when nothing waits, else (or for what the
 * kernel did not take) into the queue, up to tcp_max_queue. A next hop by
 * address is bound to its connection first (net_flow_connect); a flow naming
 * a connection never opens one. */
int net_tcp_send(struct net *n, const struct flow *f, const void *data, size_t len)
{
	struct flow hop;
	if (!f->conn_id) {
		if (!f->may_connect)
			return ENOTCONN;
		hop = *f;
		int err = net_flow_connect(n, &hop);
		if (err)
			return err;
		f = &hop;
	}
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = net_conn_find_locked(n, f->conn_id);
	if (!c || c->dead) {
		pthread_mutex_unlock(&n->conn_lock);
		return ENOTCONN;
	}
	/* the table is free for the other workers while this one sends */
	pthread_mutex_t *io = net_conn_io(n, c);
	pthread_mutex_lock(io);
	pthread_mutex_unlock(&n->conn_lock);
	int err = 0;
	if (c->dead) {
		err = ENOTCONN;
		goto out;
	}
	const char *p = data;
	bool hold = c->connecting || net_tls_handshaking(c); /* queue until it is up */
	if (c->out.len == 0 && !hold) {
		while (len) {
			ssize_t k = conn_send_locked(c, p, len);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (k < 0) {
				err = errno;
				goto out;
			}
			p += k;
			len -= (size_t)k;
		}
		if (!len)
			goto out;
	}
	if (c->out.len + len > n->conf.tcp_max_queue) {
		conn_kill_slow_locked(n, c);
		err = ENOBUFS;
		goto out;
	}
	if (buf_grow(n, &c->out, c->out.len + len, n->conf.tcp_max_queue)) {
		err = ENOMEM;
		goto out;
	}
	memcpy(c->out.data + c->out.len, p, len);
	c->out.len += len;
	if (!hold) /* else it leaves once connected */
		err = net_conn_flush_locked(n, c);
out:
	pthread_mutex_unlock(io);
	return err;
}
