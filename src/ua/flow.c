/* ua: one socket per flow (symmetric signaling), TCP framing, and the flow's keepalives. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stun/stun.h"
#include "ua_int.h"

static void on_io(int fd, uint32_t events, void *arg);

/* A proxy that drops our SYNs would hold the flow in connect for the
 * kernel's two minutes of retries: 64*T1 bounds it, like a transaction. */
static void connect_timeout(void *arg)
{
	ua_flow_failed(arg, "cannot connect within 32 s", UA_EXIT_TIMEOUT);
}

static void note_local(struct ua_flow *f)
{
	if (net_sock_addr(f->fd, &f->local) == 0)
		net_addr_fmt(&f->local, f->local_s, sizeof f->local_s);
}

/* UDP: a socket connect()ed to the proxy, so that what we send and what we
 * take in use one address and port (RFC 5626 4.1, RFC 3581), and the kernel
 * drops datagrams from anyone else. TCP: a connection we open. */
int uaf_open(struct ua_flow *f)
{
	const struct ua_proxy *px = f->px;
	int type = px->tp == NET_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int fd = socket(net_addr_family(&px->addr), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (ua_stream(px)) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	int err = 0;
	if (f->ua->c.has_source) {
		/* ua load: many flows from many addresses of one host */
		struct net_addr src = f->ua->c.source;
		net_addr_set_port(&src, 0);
		if (bind(fd, &src.u.sa, net_addr_len(&src)) < 0) {
			err = errno;
			close(fd);
			return err;
		}
	}
	if (connect(fd, &px->addr.u.sa, net_addr_len(&px->addr)) < 0 && errno != EINPROGRESS)
		err = errno;
	if (!err)
		err = loop_fd_add(f->ua->loop, fd, EPOLLIN | (ua_stream(px) ? EPOLLOUT : 0),
				  on_io, f);
	if (err) {
		close(fd);
		return err;
	}
	f->fd = fd;
	f->connected = px->tp == NET_UDP;
	if (ua_stream(px)) /* the REGISTER's own Timer F replaces it once connected */
		timer_start(f->ua->loop, &f->t_tsx, UA_TIMER_F_MS, connect_timeout, f);
	f->sock_err = 0;
	buf_reset(&f->rx);
	buf_reset(&f->tx);
	note_local(f);
	return 0;
}

/* ---- closing with a queue: the socket lingers until it is sent ---- */

static void linger_end(struct ua_linger *L)
{
	timer_cancel(&L->t);
	loop_fd_del(L->ua->loop, L->fd);
	net_tls_sock_free(L->tls); /* a close_notify after the queue */
	close(L->fd);
	buf_free(&L->tx);
	*L->pprev = L->next;
	if (L->next)
		L->next->pprev = L->pprev;
	free(L);
}

static void linger_timeout(void *arg)
{
	linger_end(arg); /* the peer did not take it in time: dropped */
}

static void on_linger(int fd, uint32_t events, void *arg)
{
	(void)fd;
	struct ua_linger *L = arg;
	if (events & (EPOLLERR | EPOLLHUP)) {
		linger_end(L);
		return;
	}
	while (L->tx.len) {
		ssize_t n = L->tls ? net_tls_sock_write(L->tls, L->tx.data, L->tx.len)
				   : send(L->fd, L->tx.data, L->tx.len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			break;
		}
		memmove(L->tx.data, L->tx.data + n, L->tx.len - (size_t)n);
		L->tx.len -= (size_t)n;
	}
	linger_end(L); /* sent, or the connection is gone */
}

/* Hands f's socket, TLS and unsent queue to a linger of their own; the flow
 * can open its next socket at once. 0, or an error (then close at once). */
static int linger_start(struct ua_flow *f)
{
	struct ua *ua = f->ua;
	struct ua_linger *L = calloc(1, sizeof *L);
	if (!L)
		return ENOMEM;
	L->ua = ua;
	L->fd = f->fd;
	L->tls = f->tls;
	int err = loop_fd_add(ua->loop, L->fd, EPOLLOUT, on_linger, L);
	if (err) {
		free(L);
		return err;
	}
	L->tx = f->tx;
	buf_init(&f->tx);
	L->next = ua->lingering;
	if (L->next)
		L->next->pprev = &L->next;
	L->pprev = &ua->lingering;
	ua->lingering = L;
	timer_start(ua->loop, &L->t, ua->c.linger_ms ? ua->c.linger_ms : 2000, linger_timeout, L);
	ua->stats.flows_lingered++;
	f->fd = -1;
	f->tls = NULL;
	return 0;
}

void uaf_linger_free_all(struct ua *ua)
{
	while (ua->lingering)
		linger_end(ua->lingering);
}

void uaf_close(struct ua_flow *f)
{
	uaf_ka_stop(f);
	uaws_close(f); /* a WebSocket close frame joins the queue */
	if (f->fd >= 0) {
		loop_fd_del(f->ua->loop, f->fd);
		/* what the kernel has not taken yet (the close frame, a last
		 * message) is sent before the socket goes, bounded in time */
		if (!(ua_stream(f->px) && f->tx.len && !f->ua->freeing && linger_start(f) == 0)) {
			net_tls_sock_free(f->tls); /* its close_notify before the fd goes */
			close(f->fd);
		}
	}
	f->tls = NULL;
	f->tcp_up = false;
	f->ws_upgrading = false;
	f->fd = -1;
	f->connected = false;
	buf_reset(&f->rx);
	buf_reset(&f->tx);
}

static void want_out(struct ua_flow *f, bool on)
{
	loop_fd_mod(f->ua->loop, f->fd, EPOLLIN | (on ? EPOLLOUT : 0));
}

static int flush_tx(struct ua_flow *f)
{
	while (f->tx.len) {
		ssize_t n = f->tls ? net_tls_sock_write(f->tls, f->tx.data, f->tx.len)
				   : send(f->fd, f->tx.data, f->tx.len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return errno;
		}
		memmove(f->tx.data, f->tx.data + n, f->tx.len - (size_t)n);
		f->tx.len -= (size_t)n;
	}
	want_out(f, f->tx.len > 0);
	return 0;
}

int uaf_send_raw(struct ua_flow *f, const void *p, size_t len)
{
	if (f->fd < 0)
		return ENOTCONN;
	/* a UA sends a few small messages: a queue beyond one message's worth
	 * means the server stopped reading */
	if (f->tx.len + len > 4 * UA_MAX_MSG)
		return ENOBUFS;
	if (buf_append(&f->tx, p, len))
		return ENOMEM;
	return flush_tx(f);
}

int uaf_send(struct ua_flow *f, const void *p, size_t len)
{
	if (f->fd < 0 || !f->connected)
		return ENOTCONN;
	if (ua_ws(f->px))
		return uaws_send(f, p, len);
	if (f->px->tp == NET_UDP) {
		if (send(f->fd, p, len, 0) < 0) {
			/* an ICMP error from an earlier datagram surfaces here;
			 * the transaction's timer decides, the error is kept for
			 * the message */
			f->sock_err = errno;
			return errno;
		}
		return 0;
	}
	return uaf_send_raw(f, p, len);
}

/* ---- keepalives: RFC 5626 4.4 ---- */

static void ka_due(void *arg);
static void ka_wait(void *arg);

static void ka_schedule(struct ua_flow *f)
{
	uint32_t ft = f->ua->c.keepalive_s ? f->ua->c.keepalive_s : f->flow_timer;
	uint64_t ms = ua_keepalive_ms(ft, f->px->tp, (double)rand_u32() / 4294967296.0);
	timer_start(f->ua->loop, &f->t_ka, ms, ka_due, f);
}

void uaf_ka_start(struct ua_flow *f)
{
	if (timer_active(&f->t_ka) || f->ka_pending)
		return;
	ka_schedule(f);
}

void uaf_ka_stop(struct ua_flow *f)
{
	timer_cancel(&f->t_ka);
	timer_cancel(&f->t_ka_wait);
	f->ka_pending = false;
}

static int ka_send_stun(struct ua_flow *f)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, f->tid);
	stun_enc_fingerprint(&e);
	int err = stun_enc_end(&e);
	if (!err)
		err = uaf_send(f, b.data, b.len);
	buf_free(&b);
	return err;
}

static void ka_due(void *arg)
{
	struct ua_flow *f = arg;
	if (!f->connected)
		return;
	f->ka_pending = true;
	f->ka_sent_ms = loop_now_ms(f->ua->loop);
	f->ua->stats.keepalives_sent++;
	if (f->px->tp == NET_UDP) {
		rand_bytes(f->tid, sizeof f->tid);
		ka_send_stun(f);
		f->ka_next_rto_ms = UA_KA_RTO_MS;
		timer_start(f->ua->loop, &f->t_ka_wait, UA_KA_RTO_MS, ka_wait, f);
	} else {
		/* RFC 5626 4.4.1: the ping is a double CRLF, the pong one CRLF;
		 * over a WebSocket a ping frame (RFC 7118 has no CRLF keepalive,
		 * and the server answers pings with pongs) */
		int err = ua_ws(f->px) ? uaws_ping(f) : uaf_send(f, "\r\n\r\n", 4);
		if (err) {
			ua_flow_failed(f, ua_ws(f->px) ? "cannot send a WebSocket ping"
						       : "cannot send a CRLF ping",
				       UA_EXIT_TIMEOUT);
			return;
		}
		timer_start(f->ua->loop, &f->t_ka_wait, UA_KA_WAIT_MS, ka_wait, f);
	}
}

static void ka_failed(struct ua_flow *f, const char *cause)
{
	struct ua_event ev = {.kind = UA_EV_KEEPALIVE_FAILED, .detail = cause};
	ua_emit(f, &ev);
	ua_flow_failed(f, cause, UA_EXIT_TIMEOUT);
}

/* STUN: retransmit with a doubling RTO until UA_KA_WAIT_MS; CRLF: the deadline. */
static void ka_wait(void *arg)
{
	struct ua_flow *f = arg;
	uint64_t waited = loop_now_ms(f->ua->loop) - f->ka_sent_ms;
	if (ua_stream(f->px) || waited + 5 >= UA_KA_WAIT_MS) {
		ka_failed(f, f->px->tp == NET_UDP ? "no STUN answer within 10 s"
			     : ua_ws(f->px)	      ? "no WebSocket pong within 10 s"
						      : "no CRLF pong within 10 s");
		return;
	}
	ka_send_stun(f);
	f->ka_next_rto_ms *= 2;
	uint64_t next = MIN(f->ka_next_rto_ms, UA_KA_WAIT_MS - waited);
	timer_start(f->ua->loop, &f->t_ka_wait, next, ka_wait, f);
}

void uaf_ka_answered(struct ua_flow *f)
{
	timer_cancel(&f->t_ka_wait);
	f->ka_pending = false;
	f->failures = 0; /* 4.5: registered and a keepalive answered: successful */
	f->ua->stats.keepalives_answered++;
	ka_schedule(f);
	if (!f->ka_answered) {
		f->ka_answered = true;
		struct ua_event ev = {.kind = UA_EV_KEEPALIVE_OK};
		ua_emit(f, &ev);
	}
}

static void on_stun(struct ua_flow *f, const char *p, size_t len)
{
	struct stun_msg m;
	if (stun_msg_decode(&m, p, len) || m.classic || m.method != STUN_METHOD_BINDING) {
		ua_bad_message(f, "malformed or unexpected STUN message");
		return;
	}
	if (m.cls != STUN_CLASS_SUCCESS || !f->ka_pending ||
	    memcmp(m.tid, f->tid, STUN_TID_LEN) != 0)
		return; /* a late answer to an earlier keepalive, or not one */
	if (m.fp >= 0 && stun_msg_check_fingerprint(&m)) {
		ua_bad_message(f, "STUN answer with a bad FINGERPRINT");
		return;
	}
	struct net_addr mapped;
	memset(&mapped, 0, sizeof mapped);
	if (stun_msg_addr(&m, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped.u.ss) == 0) {
		/* RFC 5626 4.4.2: a new mapped address is a failed flow: the NAT
		 * rebound us, and the registrar's flow points at the old one */
		if (f->has_mapped && !net_addr_eq(&mapped, &f->mapped)) {
			char was[NET_ADDR_STRLEN], now[NET_ADDR_STRLEN], why[160];
			snprintf(why, sizeof why, "the NAT mapping moved from %s to %s",
				 net_addr_fmt(&f->mapped, was, sizeof was),
				 net_addr_fmt(&mapped, now, sizeof now));
			ka_failed(f, why);
			return;
		}
		f->mapped = mapped;
		f->has_mapped = true;
	}
	uaf_ka_answered(f);
}

/* A run of CR and LF on a stream: a pong ("\r\n") answers our ping; a ping
 * from the server ("\r\n\r\n") is answered with a pong. */
static void on_crlf(struct ua_flow *f, size_t n)
{
	if (n >= 4) {
		uaf_send(f, "\r\n", 2);
		return;
	}
	if (f->ka_pending)
		uaf_ka_answered(f);
}

/* ---- input ---- */

static void read_udp(struct ua_flow *f)
{
	char p[UA_MAX_MSG + 1];
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(f->fd, p, sizeof p - 1, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			/* ICMP: the proxy's port is closed, or no route. Anyone on
			 * the path can forge one; the cost is one early retry */
			f->sock_err = errno;
			ua_reg_transport_error(f, errno);
			return;
		}
		if (n == 0)
			continue;
		if (stun_is_message(p, (size_t)n))
			on_stun(f, p, (size_t)n);
		else if (p[0] == '\r' || p[0] == '\n')
			continue; /* a CRLF keepalive over UDP: nothing to answer */
		else
			ua_on_sip(f, p, (size_t)n, false);
		if (f->fd < 0)
			return; /* the message closed the flow */
	}
}

/* Frames whole messages off the front of rx; false when the flow was closed. */
static bool frame_tcp(struct ua_flow *f)
{
	size_t off = 0;
	bool ok = true;
	while (off < f->rx.len) {
		size_t ml = 0;
		int err = sip_frame(f->rx.data + off, f->rx.len - off, UA_MAX_MSG, &ml);
		if (err == ENODATA)
			break;
		if (err) {
			ua_bad_message(f, "unframeable bytes on the TCP flow");
			ua_flow_failed(f, "the server sent bytes that are not SIP", UA_EXIT_ERROR);
			return false;
		}
		const char *m = f->rx.data + off;
		off += ml;
		if (m[0] == '\r' || m[0] == '\n')
			on_crlf(f, ml);
		else
			ua_on_sip(f, m, ml, true);
		if (f->fd < 0) {
			ok = false;
			break;
		}
	}
	if (ok && off) {
		memmove(f->rx.data, f->rx.data + off, f->rx.len - off);
		f->rx.len -= off;
	}
	return ok;
}

static void read_tcp(struct ua_flow *f)
{
	bool more = false;
	for (;;) {
		if (buf_reserve(&f->rx, 4096)) {
			ua_flow_failed(f, "out of memory", UA_EXIT_ERROR);
			return;
		}
		/* the framer refuses a message over UA_MAX_MSG, so rx stays below
		 * it plus one read */
		ssize_t n = f->tls ? net_tls_sock_read(f->tls, f->rx.data + f->rx.len,
						       f->rx.cap - f->rx.len, &more)
				   : recv(f->fd, f->rx.data + f->rx.len, f->rx.cap - f->rx.len, 0);
		if (n == 0) {
			ua_flow_failed(f, "connection closed by the server", UA_EXIT_TIMEOUT);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			char why[96];
			snprintf(why, sizeof why, "connection lost: %s", strerror(errno));
			ua_flow_failed(f, why, UA_EXIT_TIMEOUT);
			return;
		}
		f->rx.len += (size_t)n;
		if (!(ua_ws(f->px) ? uaws_input(f) : frame_tcp(f)))
			return;
	}
}

static void on_connected(struct ua_flow *f);
static void ws_or_up(struct ua_flow *f);

/* One step of a tls: flow's handshake; the flow is up when it is done. A
 * certificate we do not trust ends the flow as a failure of its own kind:
 * the server may be someone else. */
static void tls_step(struct ua_flow *f)
{
	uint32_t want;
	char why[200];
	int err = net_tls_sock_handshake(f->tls, &want, why, sizeof why);
	if (err == EAGAIN) {
		loop_fd_mod(f->ua->loop, f->fd, want);
		return;
	}
	if (err) {
		char msg[300];
		snprintf(msg, sizeof msg, "TLS handshake with %s failed: %s", f->proxy_s, why);
		ua_flow_failed(f, msg, err == EPERM ? UA_EXIT_TLS : UA_EXIT_TIMEOUT);
		return;
	}
	ws_or_up(f);
}

static void on_connected(struct ua_flow *f)
{
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		char why[96];
		f->sock_err = soerr;
		snprintf(why, sizeof why, "cannot connect: %s", strerror(soerr));
		ua_flow_failed(f, why, UA_EXIT_TIMEOUT);
		return;
	}
	note_local(f);
	if (ua_tls(f->px) && !f->tcp_up) {
		/* TCP is up: the handshake next, and the flow is up after it */
		f->tcp_up = true;
		int err = net_tls_sock_alloc(&f->tls, f->ua->tls, f->fd, f->px->host);
		if (err) {
			ua_flow_failed(f, "cannot start TLS", UA_EXIT_ERROR);
			return;
		}
		tls_step(f);
		return;
	}
	ws_or_up(f);
}

/* The byte stream is up: a WebSocket flow asks for the upgrade first (ws.c
 * calls uaf_up on the 101), the others are up. */
static void ws_or_up(struct ua_flow *f)
{
	if (!ua_ws(f->px)) {
		uaf_up(f);
		return;
	}
	f->tcp_up = true;
	int err = uaws_start(f);
	if (err) {
		char why[96];
		snprintf(why, sizeof why, "cannot send the WebSocket upgrade: %s", strerror(err));
		ua_flow_failed(f, why, UA_EXIT_ERROR);
		return;
	}
	f->ws_upgrading = true;
}

void uaf_up(struct ua_flow *f)
{
	f->ws_upgrading = false;
	f->connected = true;
	want_out(f, f->tx.len > 0);
	struct ua_event ev = {.kind = UA_EV_FLOW_UP};
	if (f->tls) {
		ev.tls = net_tls_sock_version(f->tls);
		ev.tls_resumed = net_tls_sock_resumed(f->tls);
		f->ua->stats.tls_handshakes++;
		f->ua->stats.tls_resumed += ev.tls_resumed;
	}
	ua_emit(f, &ev);
	ua_flow_ready(f);
}

static void on_io(int fd, uint32_t events, void *arg)
{
	struct ua_flow *f = arg;
	if (fd != f->fd)
		return;
	if (ua_stream(f->px) && !f->connected && !f->ws_upgrading) {
		if (f->tcp_up)
			tls_step(f);
		else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_connected(f);
		return;
	}
	if ((events & EPOLLOUT) && ua_stream(f->px)) {
		int err = flush_tx(f);
		if (err) {
			char why[96];
			snprintf(why, sizeof why, "connection lost: %s", strerror(err));
			ua_flow_failed(f, why, UA_EXIT_TIMEOUT);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (f->px->tp == NET_UDP)
			read_udp(f);
		else
			read_tcp(f);
	}
}
