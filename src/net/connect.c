/* Outgoing TCP connections, bounded in time and number, and their reuse (RFC 5923 alias too). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_int.h"

/* The destination index holds only reusable connections: the ones we opened
 * and the ones a trusted peer aliased, a handful per next hop; a phone's
 * connection is never in it, so a request toward a phone's address can
 * never pick up a connection by address (it goes by conn_id or not at all). */
static struct conn **dst_slot(struct net *n, const struct net_addr *ip, uint16_t port)
{
	struct net_addr a = *ip;
	net_addr_set_port(&a, port);
	return &n->dst_hash[net_addr_hash(&a) % NET_DST_BUCKETS];
}

static struct conn *dst_find_locked(struct net *n, const struct net_addr *dst)
{
	uint16_t port = net_addr_port(dst);
	for (struct conn *c = *dst_slot(n, dst, port); c; c = c->next_dst)
		if (c->dst_port == port && !c->dead && net_addr_ip_eq(&c->flow.remote, dst))
			return c;
	return NULL;
}

static void dst_link_locked(struct net *n, struct conn *c, uint16_t port)
{
	struct conn **head = dst_slot(n, &c->flow.remote, port);
	c->dst_port = port;
	c->next_dst = *head;
	*head = c;
}

void net_conn_dst_unlink_locked(struct net *n, struct conn *c)
{
	if (!c->dst_port)
		return;
	struct conn **pp = dst_slot(n, &c->flow.remote, c->dst_port);
	while (*pp && *pp != c)
		pp = &(*pp)->next_dst;
	if (*pp)
		*pp = c->next_dst;
	c->dst_port = 0;
	c->next_dst = NULL;
}

void net_flow_next_hop(const struct net *n, unsigned listener, const struct net_addr *dst,
		       struct flow *out)
{
	memset(out, 0, sizeof *out);
	out->tp = listener < n->n_listeners ? n->listeners[listener].conf.tp : NET_TCP;
	out->listener = (uint16_t)listener;
	out->may_connect = true;
	if (listener < n->n_listeners)
		out->local = n->listeners[listener].bound;
	out->remote = *dst;
}

static void flow_of_conn(const struct conn *c, struct flow *f)
{
	f->conn_id = c->id;
	f->may_connect = false;
	f->listener = c->flow.listener;
	f->local = c->flow.local;
}

int net_conn_alias(struct net *n, uint64_t conn_id, uint16_t port)
{
	int err = 0;
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = net_conn_find_locked(n, conn_id);
	if (!c || c->dead) {
		err = ENOTCONN;
	} else if (c->dst_port && c->dst_port == net_addr_port(&c->flow.remote)) {
		/* one we opened: it stays the way to where we connected */
	} else if (c->dst_port != port) {
		net_conn_dst_unlink_locked(n, c);
		if (port)
			dst_link_locked(n, c, port);
	}
	pthread_mutex_unlock(&n->conn_lock);
	return err;
}

bool net_conn_next_hop(struct net *n, struct flow *f)
{
	if (f->tp == NET_UDP || !f->conn_id)
		return false;
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = net_conn_find_locked(n, f->conn_id);
	uint16_t port = c ? c->dst_port : 0;
	pthread_mutex_unlock(&n->conn_lock);
	if (!port)
		return false;
	struct net_addr to = f->remote;
	net_addr_set_port(&to, port);
	net_flow_next_hop(n, f->listener, &to, f);
	return true;
}

/* Gives back what a connect reserved (its place in tcp_max_conns, in
 * tcp_max_connecting and its address's count); caller holds conn_lock. */
static void unreserve_locked(struct net *n, const struct net_src_key *k)
{
	n->n_conns--;
	n->n_connecting--;
	net_addr_put_locked(n, k);
}

/* A new non-blocking connect to dst from the listener's address (its IP,
 * an ephemeral port; a wildcard listener leaves the choice to the kernel),
 * so that the Via we write (the listener's) names the IP the peer sees, as
 * RFC 5923's alias check wants: 0 and the socket, connecting or (rare,
 * loopback) connected already (the first EPOLLOUT tells either way); or the
 * errno of a failure known at once. */
static int dial(const struct net_addr *from, const struct net_addr *dst, int *fdp)
{
	int fd = socket(net_addr_family(dst), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (!net_addr_is_any(from)) {
		struct net_addr src = *from;
		net_addr_set_port(&src, 0);
		/* the port is picked at connect, per destination: no ephemeral
		 * port is held by the bind alone */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, &src.u.sa, net_addr_len(&src)) < 0) {
			int err = errno;
			close(fd);
			return err;
		}
	}
	int r;
	do
		r = connect(fd, &dst->u.sa, net_addr_len(dst));
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EINPROGRESS) {
		int err = errno;
		close(fd);
		return err;
	}
	*fdp = fd;
	return 0;
}

int net_flow_connect(struct net *n, struct flow *f)
{
	/* explicit: a flow that names a connection (a phone's) never turns into
	 * a connect; if it is gone, it is gone */
	if (f->tp == NET_UDP || f->conn_id)
		return 0;
	if (!f->may_connect)
		return ENOTCONN;
	if ((f->tp != NET_TCP && f->tp != NET_TLS) || f->listener >= n->n_listeners ||
	    n->listeners[f->listener].conf.tp != f->tp)
		return EINVAL;
	if (net_addr_family(&f->remote) != net_addr_family(&n->listeners[f->listener].bound))
		return EAFNOSUPPORT;
	struct net_src_key key;
	net_addr_src_key(&f->remote, &key);
	struct worker *w = worker_current();
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = dst_find_locked(n, &f->remote);
	if (c) {
		flow_of_conn(c, f);
		pthread_mutex_unlock(&n->conn_lock);
		return 0;
	}
	/* a connection belongs to a worker's loop: only a worker opens one */
	int err = !w || w->net != n				  ? ENOTCONN
		  : n->n_conns >= n->conf.tcp_max_conns		  ? ENOSPC
		  : n->n_connecting >= n->conf.tcp_max_connecting ? EAGAIN
								  : net_addr_take_locked(n, &key);
	if (!err) {
		n->n_conns++;
		n->n_connecting++;
	}
	pthread_mutex_unlock(&n->conn_lock);
	if (err) {
		if (err != ENOTCONN)
			n->st.tcp_connect_limited++;
		return err;
	}
	c = calloc(1, sizeof *c);
	int fd = -1;
	n->st.tcp_connects++;
	err = c ? dial(&n->listeners[f->listener].bound, &f->remote, &fd) : ENOMEM;
	if (err) {
		n->st.tcp_connect_failed++;
		goto out_unreserve;
	}
	c->id = n->next_conn_id++;
	c->fd = fd;
	c->owner = w;
	c->flow = *f;
	c->flow.conn_id = c->id;
	c->flow.may_connect = false;
	/* what a Via names: our address on this connection, the listener's port
	 * (the ephemeral one is no place to reach us at) */
	if (net_sock_addr(fd, &c->flow.local) == 0)
		net_addr_set_port(&c->flow.local, net_addr_port(&n->listeners[f->listener].bound));
	else
		c->flow.local = n->listeners[f->listener].bound;
	c->opened_ms = c->last_rx_ms = loop_now_ms(w->loop);
	c->got_message = true; /* ours: the first-message bound is for strangers */
	c->connecting = true;
	c->want_out = true; /* EPOLLOUT: the connect's end */
	buf_init(&c->in);
	buf_init(&c->out);
	err = loop_fd_add(w->loop, fd, EPOLLIN | EPOLLOUT, net_conn_readable, c);
	if (err) {
		close(fd);
		goto out_unreserve;
	}
	pthread_mutex_lock(&n->conn_lock);
	/* another worker may have opened one to the same place meanwhile: one
	 * connection per destination, the first one wins */
	struct conn *other = dst_find_locked(n, &f->remote);
	if (other) {
		flow_of_conn(other, f);
		unreserve_locked(n, &key);
		pthread_mutex_unlock(&n->conn_lock);
		loop_fd_del(w->loop, fd);
		close(fd);
		free(c);
		return 0;
	}
	net_conn_hash_link(n, c);
	dst_link_locked(n, c, net_addr_port(&f->remote));
	pthread_mutex_unlock(&n->conn_lock);
	c->next_in_worker = w->conns;
	if (w->conns)
		w->conns->prev_in_worker = c;
	w->conns = c;
	flow_of_conn(c, f);
	return 0;
out_unreserve:
	pthread_mutex_lock(&n->conn_lock);
	unreserve_locked(n, &key);
	pthread_mutex_unlock(&n->conn_lock);
	free(c);
	return err;
}

void net_conn_connect_failed(struct conn *c, int err)
{
	(void)err; /* one counter for refused, unreachable and timed out */
	c->owner->net->st.tcp_connect_failed++;
	net_tcp_close(c);
}

bool net_conn_connected(struct conn *c)
{
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		net_conn_connect_failed(c, soerr);
		return true;
	}
	if (c->flow.tp == NET_TLS) {
		/* TCP is up; the connection is up once the handshake is done
		 * (tcp.c drives it, then net_conn_up) */
		int err = net_tls_connect(c);
		if (err) {
			net_conn_connect_failed(c, err);
			return true;
		}
		return false;
	}
	return net_conn_up(c);
}

bool net_conn_up(struct conn *c)
{
	struct net *n = c->owner->net;
	pthread_mutex_lock(&n->conn_lock);
	n->n_connecting--;
	pthread_mutex_unlock(&n->conn_lock);
	pthread_mutex_lock(net_conn_io(n, c));
	c->connecting = false;
	/* what was queued while connecting leaves now; EPOLLOUT stays on only
	 * while some of it waits */
	int err = net_conn_flush_locked(n, c);
	pthread_mutex_unlock(net_conn_io(n, c));
	if (err) {
		net_tcp_close(c);
		return true;
	}
	c->last_rx_ms = loop_now_ms(c->owner->loop);
	return false;
}
