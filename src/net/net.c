/* Listeners and worker threads: UDP with SO_REUSEPORT and recvmmsg, TCP with a bounded connection table. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

#ifdef PINHOLE_HAVE_BPF
#include <bpf/bpf.h>
#endif

#define MAX_LISTENERS 16
#define RX_BATCH 16
/* UDP send queue per worker: what a loop turn sends leaves in one sendmmsg
 * per socket at the turn's end (or when the queue fills), which saves a
 * system call and, above all, a wake-up of the receiver per datagram. */
#define TX_BATCH 64
#define TX_ARENA (128u * 1024u)

struct conn;

struct worker {
	unsigned id;
	struct net *net;
	struct loop *loop;
	pthread_t thread;
	bool started;
	int fds[MAX_LISTENERS]; /* this worker's socket per listener (UDP or TCP listen) */
	void *data;
	/* UDP receive batch */
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	struct net_addr src[RX_BATCH];
	/* IP_PKTINFO: where each datagram was sent to, for wildcard listeners;
	 * SO_TIMESTAMPNS: when the kernel received it */
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl[RX_BATCH];
	uint64_t rx_age_ms; /* of the message being delivered; worker_rx_age_ms */
	char *rxbuf;
	/* UDP send queue: tx_n datagrams, their bytes in tx_arena */
	struct mmsghdr tx_msgs[TX_BATCH];
	struct iovec tx_iov[TX_BATCH];
	struct net_addr tx_to[TX_BATCH];
	int tx_fd[TX_BATCH];
	unsigned tx_n;
	size_t tx_used;
	char *tx_arena;
	/* TCP connections this worker owns; worker-local list */
	struct conn *conns;
	struct timer sweep;
	struct timer accept_pause;
	int paused_fd; /* listening socket paused after EMFILE, or -1 */
	struct fd_ctx {
		struct worker *w;
		unsigned listener;
	} ctx[MAX_LISTENERS];
};

/* A TCP connection. Idle, it holds no buffer: input is read into the
 * worker's scratch and only the start of an unfinished message is kept (at
 * most max_msg bytes), and the output queue exists only while the kernel
 * does not take everything (at most tcp_max_queue bytes). */
struct conn {
	uint64_t id;
	int fd;
	struct worker *owner;
	struct flow flow;
	struct buf in;     /* start of an unfinished message; worker-local */
	struct net_frame_state fs; /* the framer's place in it; worker-local */
	struct buf out;    /* unsent bytes; guarded by net->conn_lock */
	bool want_out;     /* EPOLLOUT requested; guarded by net->conn_lock */
	/* since when the queue has waited with no byte taken, 0 when empty;
	 * written under conn_lock, read by the sweep */
	_Atomic uint64_t stall_ms;
	_Atomic bool dead; /* a slow reader, shut down; its owner closes it */
	uint64_t last_rx_ms;
	uint64_t opened_ms;
	bool got_message;
	struct conn *next_in_worker, *prev_in_worker;
	struct conn *next_hash;
};

/* Open connections per source (struct net_src_key); one entry per source
 * with a connection, so never more than tcp_max_conns. Guarded by conn_lock. */
struct addr_count {
	struct addr_count *next;
	struct net_src_key key;
	unsigned n;
};

struct listener {
	struct net_listener_conf conf;
	struct net_addr bound;
	int first_fd; /* bound in net_listen; worker 0 takes it */
};

struct net {
	struct net_conf conf;
	struct listener listeners[MAX_LISTENERS];
	unsigned n_listeners;
	struct worker *workers;
	unsigned n_workers;
	net_recv_h *recv;
	net_frame_h *frame;
	void *recv_arg;
	net_worker_init_h *winit;
	void *winit_arg;
	/* connection table: id -> conn; guarded by conn_lock */
	pthread_mutex_t conn_lock;
	struct conn **conn_hash;
	size_t conn_hash_size;
	unsigned n_conns;
	struct addr_count **addr_hash; /* conn_hash_size chains */
	_Atomic uint64_t next_conn_id;
	struct {
		_Atomic int64_t udp_rx, udp_tx, udp_tx_errors, udp_oversize, tcp_accepted,
			tcp_refused, tcp_idle_closed, tcp_broken, tcp_oversize, tcp_refused_addr,
			tcp_slow_closed, tcp_buffered;
	} st;
};

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

static int tcp_listen_socket(const struct net_addr *a, int *fdp)
{
	int fd = socket(net_addr_family(a), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
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

int net_sock_addr(int fd, struct net_addr *out)
{
	socklen_t len = sizeof out->u.ss;
	memset(out, 0, sizeof *out);
	return getsockname(fd, &out->u.sa, &len) < 0 ? errno : 0;
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
	/* room for two of the largest messages, or a big answer would close
	 * every connection whose kernel buffer is momentarily full */
	n->conf.tcp_max_queue = MAX(n->conf.tcp_max_queue, 2 * n->conf.max_msg);
	n->n_workers = n->conf.workers;
	n->workers = calloc(n->n_workers, sizeof *n->workers);
	n->conn_hash_size = 4096;
	n->conn_hash = calloc(n->conn_hash_size, sizeof *n->conn_hash);
	n->addr_hash = calloc(n->conn_hash_size, sizeof *n->addr_hash);
	if (!n->workers || !n->conn_hash || !n->addr_hash) {
		free(n->workers);
		free(n->conn_hash);
		free(n->addr_hash);
		free(n);
		return ENOMEM;
	}
	pthread_mutex_init(&n->conn_lock, NULL);
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

static void conn_close(struct conn *c);
static void udp_flush(struct worker *w);

void net_free(struct net *n)
{
	if (!n)
		return;
	net_stop(n); /* connections and loops belong to the workers until they stop */
	for (unsigned i = 0; i < n->n_workers; i++) {
		struct worker *w = &n->workers[i];
		while (w->conns)
			conn_close(w->conns);
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
	pthread_mutex_destroy(&n->conn_lock);
	free(n->conn_hash);
	free(n->addr_hash);
	free(n->workers);
	free(n);
}

int net_listen(struct net *n, const struct net_listener_conf *lc, unsigned *idx)
{
	if (n->n_listeners == MAX_LISTENERS)
		return ENOSPC;
	if (lc->tp != NET_UDP && lc->tp != NET_TCP)
		return ENOTSUP;
	struct listener *l = &n->listeners[n->n_listeners];
	l->conf = *lc;
	int fd, err = lc->tp == NET_UDP ? net_udp_socket(&lc->addr, true, &fd)
					: tcp_listen_socket(&lc->addr, &fd);
	if (err)
		return err;
	l->first_fd = fd;
	net_sock_addr(fd, &l->bound);
	n->workers[0].fds[n->n_listeners] = fd;
	/* the other workers get their own socket on the same (resolved) address */
	for (unsigned i = 1; i < n->n_workers; i++) {
		err = lc->tp == NET_UDP ? net_udp_socket(&l->bound, true, &fd)
					: tcp_listen_socket(&l->bound, &fd);
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

/* ---- TCP ---- */

static void conn_hash_link(struct net *n, struct conn *c)
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

static struct conn *conn_find_locked(struct net *n, uint64_t id)
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
static int addr_take_locked(struct net *n, const struct net_src_key *k)
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

static void addr_put_locked(struct net *n, const struct net_src_key *k)
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

static void conn_close(struct conn *c)
{
	struct worker *w = c->owner;
	struct net *n = w->net;
	struct net_src_key k;
	net_addr_src_key(&c->flow.remote, &k);
	pthread_mutex_lock(&n->conn_lock);
	conn_hash_unlink(n, c);
	n->n_conns--;
	addr_put_locked(n, &k);
	pthread_mutex_unlock(&n->conn_lock);
	if (c->prev_in_worker)
		c->prev_in_worker->next_in_worker = c->next_in_worker;
	else
		w->conns = c->next_in_worker;
	if (c->next_in_worker)
		c->next_in_worker->prev_in_worker = c->prev_in_worker;
	loop_fd_del(w->loop, c->fd);
	close(c->fd);
	buf_release(n, &c->in);
	buf_release(n, &c->out);
	free(c);
}

bool net_conn_alive(struct net *n, uint64_t conn_id)
{
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = conn_find_locked(n, conn_id);
	bool alive = c && !c->dead;
	pthread_mutex_unlock(&n->conn_lock);
	return alive;
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
 * holds conn_lock. Returns errno on a dead socket. */
static int conn_flush_locked(struct net *n, struct conn *c)
{
	size_t done = 0;
	while (done < c->out.len) {
		ssize_t k = send(c->fd, c->out.data + done, c->out.len - done,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
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
 * wake-up that follows. Any thread; caller holds conn_lock. */
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
				conn_close(c);
				return SIZE_MAX;
			}
			break;
		}
		if (err || msglen == 0 || msglen > len - off) {
			n->st.tcp_broken++;
			conn_close(c);
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

static void conn_readable(int fd, uint32_t events, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->owner;
	struct net *n = w->net;
	if (c->dead) {
		conn_close(c);
		return;
	}
	if (events & EPOLLOUT) {
		pthread_mutex_lock(&n->conn_lock);
		int err = conn_flush_locked(n, c);
		pthread_mutex_unlock(&n->conn_lock);
		if (err) {
			conn_close(c);
			return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	size_t scratch_len = n->conf.max_msg + 1;
	for (;;) {
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
				conn_close(c);
				return;
			}
			dst = c->in.data + c->in.len;
			room = c->in.cap - c->in.len;
		}
		ssize_t k = recv(fd, dst, room, MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			conn_close(c);
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
		size_t off = conn_deliver(c, p, len);
		if (off == SIZE_MAX)
			return;
		if (scratch) {
			/* keep the start of the unfinished message, in a buffer of
			 * its size: the framer will ask for more */
			if (off < len) {
				if (buf_grow(n, &c->in, MAX(len - off + 1024, 4096), scratch_len)) {
					conn_close(c);
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
	}
}

static void accept_resume(void *arg)
{
	struct worker *w = arg;
	if (w->paused_fd >= 0)
		loop_fd_mod(w->loop, w->paused_fd, EPOLLIN);
	w->paused_fd = -1;
}

static void tcp_acceptable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct fd_ctx *ctx = arg;
	struct worker *w = ctx->w;
	struct net *n = w->net;
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
		int full = n->n_conns >= n->conf.tcp_max_conns ? ENOSPC : addr_take_locked(n, &key);
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
			addr_put_locked(n, &key);
			pthread_mutex_unlock(&n->conn_lock);
			close(cfd);
			continue;
		}
		int one = 1;
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->id = n->next_conn_id++;
		c->fd = cfd;
		c->owner = w;
		c->flow.tp = NET_TCP;
		c->flow.listener = (uint16_t)ctx->listener;
		c->flow.conn_id = c->id;
		if (net_sock_addr(cfd, &c->flow.local)) /* the address the peer used */
			c->flow.local = n->listeners[ctx->listener].bound;
		c->flow.remote = peer;
		c->opened_ms = c->last_rx_ms = loop_now_ms(w->loop);
		buf_init(&c->in);
		buf_init(&c->out);
		c->next_in_worker = w->conns;
		if (w->conns)
			w->conns->prev_in_worker = c;
		w->conns = c;
		/* registered before it can be found, so that a send from another
		 * worker can always ask for EPOLLOUT */
		int err = loop_fd_add(w->loop, cfd, EPOLLIN, conn_readable, c);
		pthread_mutex_lock(&n->conn_lock);
		conn_hash_link(n, c);
		pthread_mutex_unlock(&n->conn_lock);
		n->st.tcp_accepted++;
		if (err)
			conn_close(c);
	}
}

/* Closes idle connections and ones that never sent a whole message in time
 * (a bound on half-open floods), and slow readers another worker shut down.
 * O(connections of this worker) once a second. */
static void sweep_conns(void *arg)
{
	struct worker *w = arg;
	struct net *n = w->net;
	uint64_t now = loop_now_ms(w->loop);
	struct conn *c = w->conns;
	while (c) {
		struct conn *next = c->next_in_worker;
		bool idle = n->conf.tcp_idle_s && now - c->last_rx_ms > n->conf.tcp_idle_s * 1000ull;
		bool slow = n->conf.tcp_handshake_s && !c->got_message &&
			    now - c->opened_ms > n->conf.tcp_handshake_s * 1000ull;
		if (idle || slow)
			n->st.tcp_idle_closed++;
		uint64_t stall = c->stall_ms;
		if (stall && now > stall && now - stall > n->conf.tcp_stall_s * 1000ull) {
			/* a peer that takes nothing of what we queue for it */
			pthread_mutex_lock(&n->conn_lock);
			if (!c->dead)
				conn_kill_slow_locked(n, c);
			pthread_mutex_unlock(&n->conn_lock);
		}
		if (idle || slow || c->dead)
			conn_close(c);
		c = next;
	}
	timer_start(w->loop, &w->sweep, 1000, sweep_conns, w);
}

/* TCP send: straight to the kernel when nothing waits, else (or for what the
 * kernel did not take) into the queue, up to tcp_max_queue. */
static int tcp_send(struct net *n, const struct flow *f, const void *data, size_t len)
{
	pthread_mutex_lock(&n->conn_lock);
	struct conn *c = conn_find_locked(n, f->conn_id);
	int err = 0;
	if (!c || c->dead) {
		err = ENOTCONN;
		goto out;
	}
	const char *p = data;
	if (c->out.len == 0) {
		while (len) {
			ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
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
	err = conn_flush_locked(n, c);
out:
	pthread_mutex_unlock(&n->conn_lock);
	return err;
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
	return tcp_send(n, f, data, len);
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
					      udp ? udp_readable : tcp_acceptable, &w->ctx[j]);
			if (err)
				return err;
		}
		timer_start(w->loop, &w->sweep, 1000, sweep_conns, w);
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
	for (unsigned i = 0; i < n->n_workers; i++) {
		if (n->workers[i].started)
			pthread_join(n->workers[i].thread, NULL);
		n->workers[i].started = false;
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
	pthread_mutex_lock(&n->conn_lock);
	out->tcp_open = n->n_conns;
	pthread_mutex_unlock(&n->conn_lock);
}
