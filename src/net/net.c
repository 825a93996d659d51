/* Listeners and worker threads: UDP with SO_REUSEPORT, recvmmsg and receive timestamps; TCP is in tcp.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef PINHOLE_HAVE_BPF
#include <bpf/bpf.h>
#endif

#include "net_int.h"

static _Thread_local struct worker *current_worker;
static void udp_flush_hook(void *arg);

struct worker *worker_current(void)
{
	return current_worker;
}

int net_udp_socket(const struct net_addr *a, bool reuseport, int *fdp)
{
	int fd = socket(net_addr_family(a), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int one = 1;
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (net_addr_family(a) == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	int rcv = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	if (net_addr_is_any(a)) {
		if (net_addr_family(a) == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
		else
			setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
	}
	if (bind(fd, &a->u.sa, net_addr_len(a)) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	*fdp = fd;
	return 0;
}

/* A TCP listening socket; defer_s > 0: TCP_DEFER_ACCEPT for that long (see
 * net_tcp_acceptable). */
static int tcp_listen_socket(const struct net_addr *a, int defer_s, int *fdp)
{
	int fd = socket(net_addr_family(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	/* accepted sockets inherit it (Linux): no setsockopt per connection */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (defer_s > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s);
	if (net_addr_family(a) == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, &a->u.sa, net_addr_len(a)) < 0 || listen(fd, 1024) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	*fdp = fd;
	return 0;
}

/* A bind without SO_REUSEPORT fails where any socket holds the port, with or
 * without the option. SO_REUSEADDR on the TCP probe lets it pass a port whose
 * only holders are connections in TIME_WAIT, as the listener's own bind does. */
int net_port_free(const struct net_addr *a, bool stream)
{
	if (net_addr_port(a) == 0)
		return 0;
	int fd = socket(net_addr_family(a), (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int one = 1;
	if (stream)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (net_addr_family(a) == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	int err = bind(fd, &a->u.sa, net_addr_len(a)) < 0 ? errno : 0;
	close(fd);
	return err;
}

int net_sock_addr(int fd, struct net_addr *out)
{
	socklen_t len = sizeof out->u.ss;
	memset(out, 0, sizeof *out);
	return getsockname(fd, &out->u.sa, &len) < 0 ? errno : 0;
}

int net_default_source(int family, struct net_addr *out)
{
	struct net_addr dst;
	if (net_addr_parse(family == AF_INET6 ? "[2001:db8::1]:9" : "192.0.2.1:9", 9, &dst))
		return EINVAL;
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int err = 0;
	if (connect(fd, &dst.u.sa, net_addr_len(&dst)) < 0 || net_sock_addr(fd, out))
		err = errno ? errno : EADDRNOTAVAIL;
	close(fd);
	return err;
}

int net_alloc(struct net **np, const struct net_conf *conf)
{
	struct net *n = calloc(1, sizeof *n);
	if (!n)
		return ENOMEM;
	n->conf = *conf;
	if (!n->conf.workers) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		n->conf.workers = cpus > 0 ? (unsigned)cpus : 1;
	}
	if (!n->conf.max_msg)
		n->conf.max_msg = 65535;
	if (!n->conf.tcp_max_conns)
		n->conf.tcp_max_conns = NET_TCP_MAX_CONNS_DEFAULT;
	if (!n->conf.tcp_max_queue)
		n->conf.tcp_max_queue = NET_TCP_MAX_QUEUE_DEFAULT;
	if (!n->conf.tcp_stall_s)
		n->conf.tcp_stall_s = NET_TCP_STALL_S_DEFAULT;
	if (!n->conf.tcp_connect_s)
		n->conf.tcp_connect_s = NET_TCP_CONNECT_S_DEFAULT;
	if (!n->conf.tcp_max_connecting)
		n->conf.tcp_max_connecting = NET_TCP_MAX_CONNECTING_DEFAULT;
	/* room for two of the largest messages, or a big answer would close
	 * every connection whose kernel buffer is momentarily full */
	n->conf.tcp_max_queue = MAX(n->conf.tcp_max_queue, 2 * n->conf.max_msg);
	n->n_workers = n->conf.workers;
	n->workers = calloc(n->n_workers, sizeof *n->workers);
	n->conn_hash_size = 4096;
	n->conn_hash = calloc(n->conn_hash_size, sizeof *n->conn_hash);
	n->addr_hash = calloc(n->conn_hash_size, sizeof *n->addr_hash);
	n->dst_hash = calloc(NET_DST_BUCKETS, sizeof *n->dst_hash);
	if (!n->workers || !n->conn_hash || !n->addr_hash || !n->dst_hash) {
		free(n->workers);
		free(n->conn_hash);
		free(n->addr_hash);
		free(n->dst_hash);
		free(n);
		return ENOMEM;
	}
	pthread_mutex_init(&n->conn_lock, NULL);
	for (unsigned i = 0; i < NET_IO_LOCKS; i++)
		pthread_mutex_init(&n->io_locks[i], NULL);
	n->next_conn_id = 1;
	for (unsigned i = 0; i < n->n_workers; i++) {
		struct worker *w = &n->workers[i];
		w->id = i;
		w->net = n;
		for (unsigned j = 0; j < MAX_LISTENERS; j++)
			w->fds[j] = -1;
		int err = loop_alloc(&w->loop);
		if (!err) {
			w->rxbuf = malloc(RX_BATCH * (n->conf.max_msg + 1));
			w->tx_arena = malloc(TX_ARENA);
			if (!w->rxbuf || !w->tx_arena)
				err = ENOMEM;
		}
		if (!err)
			err = loop_on_turn_end(w->loop, udp_flush_hook, w);
		if (err) {
			net_free(n);
			return err;
		}
		timer_init(&w->sweep);
		timer_init(&w->accept_pause);
		w->paused_fd = -1;
	}
	*np = n;
	return 0;
}

static void udp_flush(struct worker *w);

void net_free(struct net *n)
{
	if (!n)
		return;
	net_stop(n); /* connections and loops belong to the workers until they stop */
	n->closed = NULL; /* the roles that would hear of these closes are gone */
	for (unsigned i = 0; i < n->n_workers; i++) {
		struct worker *w = &n->workers[i];
		while (w->conns)
			net_tcp_close(w->conns);
		udp_flush(w); /* queued outside a loop turn, e.g. by a worker init */
		for (unsigned j = 0; j < n->n_listeners; j++)
			if (w->fds[j] >= 0)
				close(w->fds[j]);
		loop_free(w->loop);
		free(w->rxbuf);
		free(w->tx_arena);
	}
	for (unsigned j = 0; j < n->n_listeners; j++)
		if (n->n_workers == 0 && n->listeners[j].first_fd >= 0)
			close(n->listeners[j].first_fd);
	net_tls_free(n->tls);
	pthread_mutex_destroy(&n->conn_lock);
	for (unsigned i = 0; i < NET_IO_LOCKS; i++)
		pthread_mutex_destroy(&n->io_locks[i]);
	free(n->conn_hash);
	free(n->addr_hash);
	free(n->dst_hash);
	free(n->workers);
	free(n);
}

int net_listen(struct net *n, const struct net_listener_conf *lc, unsigned *idx)
{
	if (n->n_listeners == MAX_LISTENERS)
		return ENOSPC;
	if (lc->tp != NET_UDP && lc->tp != NET_TCP && lc->tp != NET_TLS && lc->tp != NET_WS &&
	    lc->tp != NET_WSS)
		return ENOTSUP;
	if ((lc->tp == NET_TLS || lc->tp == NET_WSS) && !net_tls_can_listen(n))
		return ENOKEY; /* no [tls] certificate */
	struct listener *l = &n->listeners[n->n_listeners];
	l->conf = *lc;
	/* the workers' sockets are a SO_REUSEPORT group: first make sure it is
	 * not someone else's (a [stun] on the SIP port, a pinhole already running) */
	int fd, err = net_port_free(&lc->addr, lc->tp != NET_UDP);
	/* TLS: the client speaks first (its ClientHello), so the kernel holds a
	 * connection until it did, and one that stays silent costs no
	 * descriptor and no handshake slot for as long as a handshake may take */
	int defer = lc->tp == NET_TLS || lc->tp == NET_WSS ? net_tls_defer_s(n) : 0;
	l->deferred = defer > 0;
	if (!err)
		err = lc->tp == NET_UDP ? net_udp_socket(&lc->addr, true, &fd)
					: tcp_listen_socket(&lc->addr, defer, &fd);
	if (err)
		return err;
	l->first_fd = fd;
	net_sock_addr(fd, &l->bound);
	l->wildcard = net_addr_is_any(&l->bound);
	n->workers[0].fds[n->n_listeners] = fd;
	/* the other workers get their own socket on the same (resolved) address */
	for (unsigned i = 1; i < n->n_workers; i++) {
		err = lc->tp == NET_UDP ? net_udp_socket(&l->bound, true, &fd)
					: tcp_listen_socket(&l->bound, defer, &fd);
		if (err) {
			/* the listener is not counted, so net_free would not close these */
			for (unsigned j = 0; j < i; j++) {
				close(n->workers[j].fds[n->n_listeners]);
				n->workers[j].fds[n->n_listeners] = -1;
			}
			return err;
		}
		n->workers[i].fds[n->n_listeners] = fd;
	}
	if (idx)
		*idx = n->n_listeners;
	n->n_listeners++;
	return 0;
}

void net_set_recv(struct net *n, net_recv_h *h, net_frame_h *frame, void *arg)
{
	n->recv = h;
	n->frame = frame;
	n->recv_arg = arg;
}

void net_set_worker_init(struct net *n, net_worker_init_h *h, void *arg)
{
	n->winit = h;
	n->winit_arg = arg;
}

void net_set_conn_closed(struct net *n, net_conn_closed_h *h, void *arg)
{
	n->closed = h;
	n->closed_arg = arg;
}

unsigned net_listener_count(const struct net *n)
{
	return n->n_listeners;
}

const struct net_listener_conf *net_listener(const struct net *n, unsigned idx)
{
	return idx < n->n_listeners ? &n->listeners[idx].conf : NULL;
}

const struct net_addr *net_listener_addr(const struct net *n, unsigned idx)
{
	return idx < n->n_listeners ? &n->listeners[idx].bound : NULL;
}

int net_listener_find(const struct net *n, enum net_transport tp, int family)
{
	for (unsigned i = 0; i < n->n_listeners; i++)
		if (n->listeners[i].conf.tp == tp &&
		    (!family || net_addr_family(&n->listeners[i].bound) == family))
			return (int)i;
	return -1;
}

unsigned net_worker_count(const struct net *n)
{
	return n->n_workers;
}

struct worker *net_worker(struct net *n, unsigned i)
{
	return i < n->n_workers ? &n->workers[i] : NULL;
}

unsigned worker_id(const struct worker *w)
{
	return w->id;
}

struct loop *worker_loop(struct worker *w)
{
	return w->loop;
}

struct net *worker_net(struct worker *w)
{
	return w->net;
}

void worker_set_data(struct worker *w, void *data)
{
	w->data = data;
}

void *worker_data(struct worker *w)
{
	return w->data;
}

void net_flow_udp(const struct net *n, unsigned listener, const struct net_addr *dst,
		  struct flow *out)
{
	memset(out, 0, sizeof *out);
	out->tp = NET_UDP;
	out->listener = (uint16_t)listener;
	out->local = n->listeners[listener].bound;
	out->remote = *dst;
}

/* ---- UDP ---- */

uint64_t worker_rx_age_ms(const struct worker *w)
{
	return w->rx_age_ms;
}

/* The address a datagram was sent to, so that a wildcard listener can name
 * itself in Via and Record-Route with the address the peer actually used;
 * and how long it waited since the kernel received it (now_ns: realtime,
 * the timestamps' clock). */
static void read_cmsgs(struct msghdr *h, const struct net_addr *bound, bool wildcard,
		       int64_t now_ns, struct net_addr *out, uint64_t *age_ms)
{
	*out = *bound;
	*age_ms = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(c), sizeof ts);
			int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
			/* a clock step may put it in the future or far back: clamp */
			if (now_ns > at)
				*age_ms = (uint64_t)MIN(now_ns - at, 3600ll * 1000000000) / 1000000;
		} else if (!wildcard) {
			continue;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			out->u.in.sin_addr = pi.ipi_addr;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof pi);
			out->u.in6.sin6_addr = pi.ipi6_addr;
		}
	}
}

static void udp_readable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct fd_ctx *ctx = arg;
	struct worker *w = ctx->w;
	struct net *n = w->net;
	size_t bufsz = n->conf.max_msg + 1;
	bool wildcard = net_addr_is_any(&n->listeners[ctx->listener].bound);
	for (int rounds = 0; rounds < 8; rounds++) {
		for (unsigned i = 0; i < RX_BATCH; i++) {
			w->iov[i].iov_base = w->rxbuf + i * bufsz;
			w->iov[i].iov_len = bufsz;
			memset(&w->msgs[i].msg_hdr, 0, sizeof w->msgs[i].msg_hdr);
			w->msgs[i].msg_hdr.msg_iov = &w->iov[i];
			w->msgs[i].msg_hdr.msg_iovlen = 1;
			w->msgs[i].msg_hdr.msg_name = &w->src[i].u.ss;
			w->msgs[i].msg_hdr.msg_namelen = sizeof w->src[i].u.ss;
			w->msgs[i].msg_hdr.msg_control = w->ctl[i].buf;
			w->msgs[i].msg_hdr.msg_controllen = sizeof w->ctl[i].buf;
		}
		int got = recvmmsg(fd, w->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
		if (got <= 0)
			return;
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
		struct flow f;
		memset(&f, 0, sizeof f);
		f.tp = NET_UDP;
		f.listener = (uint16_t)ctx->listener;
		f.local = n->listeners[ctx->listener].bound;
		for (int i = 0; i < got; i++) {
			size_t len = w->msgs[i].msg_len;
			if (len > n->conf.max_msg || (w->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
				n->st.udp_oversize++;
				continue;
			}
			n->st.udp_rx++;
			f.remote = w->src[i];
			read_cmsgs(&w->msgs[i].msg_hdr, &n->listeners[ctx->listener].bound, wildcard,
				   now_ns, &f.local, &w->rx_age_ms);
			if (n->recv)
				n->recv(w, &f, w->iov[i].iov_base, len, n->recv_arg);
			w->rx_age_ms = 0;
		}
		if (got < RX_BATCH)
			return;
	}
}

/* Sends the queue: one sendmmsg per run of datagrams for the same socket. A
 * datagram the kernel refuses (no route, a full buffer) is counted and
 * dropped, as a lost one would be; the rest still go. */
static void udp_flush(struct worker *w)
{
	struct net *n = w->net;
	unsigned i = 0;
	while (i < w->tx_n) {
		unsigned end = i + 1;
		while (end < w->tx_n && w->tx_fd[end] == w->tx_fd[i])
			end++;
		while (i < end) {
			int r = sendmmsg(w->tx_fd[i], &w->tx_msgs[i], end - i, MSG_DONTWAIT);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				n->st.udp_tx_errors++;
				i++;
				continue;
			}
			n->st.udp_tx += r;
			i += (unsigned)r;
		}
	}
	w->tx_n = 0;
	w->tx_used = 0;
}

static void udp_flush_hook(void *arg)
{
	struct worker *w = arg;
	if (w->tx_n)
		udp_flush(w);
}

/* Queues a datagram on this worker; sent at the end of the loop turn. */
static int udp_queue(struct worker *w, int fd, const struct net_addr *to, const void *data,
		     size_t len)
{
	if (w->tx_n == TX_BATCH || w->tx_used + len > TX_ARENA)
		udp_flush(w);
	if (len > TX_ARENA)
		return EMSGSIZE;
	unsigned i = w->tx_n++;
	char *p = w->tx_arena + w->tx_used;
	memcpy(p, data, len);
	w->tx_used += len;
	w->tx_to[i] = *to;
	w->tx_fd[i] = fd;
	w->tx_iov[i] = (struct iovec){p, len};
	w->tx_msgs[i].msg_hdr = (struct msghdr){.msg_name = &w->tx_to[i].u.sa,
						.msg_namelen = net_addr_len(to),
						.msg_iov = &w->tx_iov[i],
						.msg_iovlen = 1};
	return 0;
}

int net_send(struct net *n, const struct flow *f, const void *data, size_t len)
{
	if (f->tp == NET_UDP) {
		if (f->listener >= n->n_listeners ||
		    n->listeners[f->listener].conf.tp != NET_UDP)
			return EINVAL;
		if (net_addr_family(&f->remote) != net_addr_family(&n->listeners[f->listener].bound))
			return EAFNOSUPPORT;
		struct worker *w = current_worker;
		if (w && w->net == n)
			return udp_queue(w, w->fds[f->listener], &f->remote, data, len);
		/* not a worker of this net (the store's writer thread): at once */
		ssize_t k = sendto(n->workers[0].fds[f->listener], data, len, MSG_DONTWAIT,
				   &f->remote.u.sa, net_addr_len(&f->remote));
		if (k < 0)
			return errno;
		n->st.udp_tx++;
		return 0;
	}
	if (f->tp == NET_WS || f->tp == NET_WSS)
		return net_ws_send(n, f, data, len);
	return net_tcp_send(n, f, data, len);
}

int net_udp_steer(struct net *n, unsigned listener, int prog_fd, int sockarray_fd)
{
	if (listener >= n->n_listeners || n->listeners[listener].conf.tp != NET_UDP)
		return EINVAL;
#ifdef PINHOLE_HAVE_BPF
	for (unsigned i = 0; i < n->n_workers; i++) {
		uint32_t k = i;
		uint64_t fd = (uint64_t)n->workers[i].fds[listener];
		if (bpf_map_update_elem(sockarray_fd, &k, &fd, BPF_ANY))
			return errno;
	}
	/* one socket of the group carries the program for all of them */
	if (setsockopt(n->workers[0].fds[listener], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
		       sizeof prog_fd))
		return errno;
	return 0;
#else
	(void)prog_fd, (void)sockarray_fd;
	return ENOTSUP;
#endif
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	current_worker = w;
	if (w->net->winit)
		w->net->winit(w, w->net->winit_arg);
	loop_run(w->loop);
	current_worker = NULL;
	return NULL;
}

int net_start(struct net *n)
{
	for (unsigned i = 0; i < n->n_workers; i++) {
		struct worker *w = &n->workers[i];
		for (unsigned j = 0; j < n->n_listeners; j++) {
			w->ctx[j].w = w;
			w->ctx[j].listener = j;
			bool udp = n->listeners[j].conf.tp == NET_UDP;
			if (udp) {
				/* receive timestamps: how long a datagram waited (worker_rx_age_ms) */
				int one = 1;
				setsockopt(w->fds[j], SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
			}
			int err = loop_fd_add(w->loop, w->fds[j], EPOLLIN,
					      udp ? udp_readable : net_tcp_acceptable, &w->ctx[j]);
			if (err)
				return err;
		}
		timer_start(w->loop, &w->sweep, 1000, net_tcp_sweep, w);
	}
	for (unsigned i = 0; i < n->n_workers; i++) {
		struct worker *w = &n->workers[i];
		int err = pthread_create(&w->thread, NULL, worker_main, w);
		if (err)
			return err;
		w->started = true;
	}
	return 0;
}

void net_stop(struct net *n)
{
	for (unsigned i = 0; i < n->n_workers; i++)
		if (n->workers[i].started)
			loop_stop(n->workers[i].loop);
	bool stopped = false;
	for (unsigned i = 0; i < n->n_workers; i++) {
		if (n->workers[i].started)
			pthread_join(n->workers[i].thread, NULL);
		stopped |= n->workers[i].started;
		n->workers[i].started = false;
	}
	/* A worker still busy with its last turn may have posted to one that
	 * had already run its queue and gone (a datagram received while
	 * stopping, handed to its Call-ID's worker): loop_free would drop the
	 * call and leak what it carries. The threads are gone, so run what is
	 * left here, each as its own worker, one at a time, while the roles
	 * still exist (a call may post again: a few rounds). */
	for (unsigned round = 0; stopped && round < 8; round++) {
		bool ran = false;
		for (unsigned i = 0; i < n->n_workers; i++) {
			struct worker *w = &n->workers[i];
			if (!loop_post_pending(w->loop))
				continue;
			current_worker = w;
			loop_run_pending(w->loop);
			current_worker = NULL;
			ran = true;
		}
		if (!ran)
			break;
	}
}

void net_stats_get(struct net *n, struct net_stats *out)
{
	out->udp_rx = n->st.udp_rx;
	out->udp_tx = n->st.udp_tx;
	out->udp_tx_errors = n->st.udp_tx_errors;
	out->udp_oversize = n->st.udp_oversize;
	out->tcp_accepted = n->st.tcp_accepted;
	out->tcp_refused = n->st.tcp_refused;
	out->tcp_idle_closed = n->st.tcp_idle_closed;
	out->tcp_broken = n->st.tcp_broken;
	out->tcp_oversize = n->st.tcp_oversize;
	out->tcp_refused_addr = n->st.tcp_refused_addr;
	out->tcp_slow_closed = n->st.tcp_slow_closed;
	out->tcp_buffered = n->st.tcp_buffered;
	out->tcp_connects = n->st.tcp_connects;
	out->tcp_connect_failed = n->st.tcp_connect_failed;
	out->tcp_connect_limited = n->st.tcp_connect_limited;
	pthread_mutex_lock(&n->conn_lock);
	out->tcp_open = n->n_conns;
	out->tcp_connecting = n->n_connecting;
	pthread_mutex_unlock(&n->conn_lock);
}
