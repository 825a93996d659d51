/* `pinhole probe --turn`: does a TURN server allocate for these credentials from here, and
 * does data make the round trip through the relay? (src/turnc does the protocol.)
 *
 * The round trip needs a peer the server will relay to, on the far side of
 * our own NAT: a second socket of ours. It first sends to the relayed address
 * (which opens our NAT toward it, and shows its public address and port to
 * the server), with a permission for our NAT's public IP (the mapped
 * address of the Allocate); the server hands that packet up to us as a Data
 * indication naming the peer; we bind a channel to the peer and send back
 * over it; the peer socket must get it. Both directions and both framings
 * (Data indication up, ChannelData down) are exercised.
 *
 * Over tcp: and tls: the connection is opened without blocking and bounded
 * by the check's deadline: a firewall that drops the SYN must not hold the
 * probe for the kernel's two minutes of retries.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "probe.h"
#include "stun/stun.h"
#include "turnc/turnc.h"

struct pt {
	const struct probe_turn_opts *o;
	struct probe_turn_result *r;
	struct turnc *c;
	int fd, pfd; /* to the server; the peer socket */
	struct net_tls_client *tc;
	struct net_tls_sock *ts; /* tls: over fd */
	bool stream;		 /* tcp: or tls: (framed; rx holds a partial frame) */
	bool pending;		 /* tls: OpenSSL holds read bytes the fd no longer shows */
	uint8_t rx[70000];
	size_t rxlen; /* stream bytes not framed yet */
	bool allocated, failed, permitted, bound, closed, err;
	char detail[256];
};

/* Whole messages onto the stream; a full send buffer waits up to a second. */
static int stream_write(struct pt *t, const uint8_t *p, size_t len)
{
	uint64_t until = time_mono_ms() + 1000;
	while (len) {
		ssize_t n =
		    t->ts ? net_tls_sock_write(t->ts, p, len) : send(t->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return errno;
		if (time_mono_ms() >= until)
			return ETIMEDOUT;
		struct pollfd pf = {t->fd, POLLOUT, 0};
		poll(&pf, 1, 50);
	}
	return 0;
}

static void pt_send(const void *p, size_t len, void *arg)
{
	struct pt *t = arg;
	int err = 0;
	if (!t->stream)
		err = send(t->fd, p, len, 0) < 0 ? errno : 0;
	else
		err = stream_write(t, p, len);
	if (err && !t->detail[0])
		snprintf(t->detail, sizeof t->detail, "send to the server: %s", strerror(err));
}

static void pt_event(const struct turnc_event *ev, void *arg)
{
	struct pt *t = arg;
	switch (ev->kind) {
	case TURNC_EV_ALLOCATED:
		t->allocated = true;
		t->r->lifetime_s = ev->lifetime;
		break;
	case TURNC_EV_PERMITTED:
		t->permitted = true;
		break;
	case TURNC_EV_BOUND:
		t->bound = true;
		break;
	case TURNC_EV_REFRESHED:
		break;
	case TURNC_EV_ERROR:
	case TURNC_EV_FAILED:
		t->err = true;
		t->failed |= ev->kind == TURNC_EV_FAILED;
		t->r->code = ev->code;
		t->r->auth_refused = ev->auth;
		snprintf(t->r->error, sizeof t->r->error, "%s", ev->detail ? ev->detail : "");
		break;
	case TURNC_EV_CLOSED:
		t->closed = true;
		break;
	}
}

/* One thing from the server into the client; 1 and d when it was peer data. */
static int feed(struct pt *t, const uint8_t *p, size_t n, struct turnc_data *d, uint8_t *copy,
		size_t *copylen)
{
	int rc = turnc_input(t->c, p, n, time_mono_ms(), d);
	if (rc == 1) {
		*copylen = d->len < 1500 ? d->len : 1500;
		memcpy(copy, d->data, *copylen);
		d->data = copy;
	}
	return rc;
}

/* Feeds the whole frames the stream buffer holds, up to the first one that
 * is peer data (1: it is in d; the frames after it wait for the next call). */
static int drain(struct pt *t, struct turnc_data *d, uint8_t *dbuf, size_t *dlen)
{
	size_t ml;
	while (stun_frame_turn((const char *)t->rx, t->rxlen, sizeof t->rx, &ml) == 0) {
		int got = feed(t, t->rx, ml, d, dbuf, dlen) == 1;
		memmove(t->rx, t->rx + ml, t->rxlen - ml);
		t->rxlen -= ml;
		if (got)
			return 1;
	}
	return 0;
}

/* Reads what the stream has: 1 peer data in d, 0 nothing yet, else an errno. */
static int stream_input(struct pt *t, struct turnc_data *d, uint8_t *dbuf, size_t *dlen)
{
	for (;;) {
		bool more = false;
		size_t room = sizeof t->rx - t->rxlen;
		ssize_t k = t->ts ? net_tls_sock_read(t->ts, t->rx + t->rxlen, room, &more)
				  : recv(t->fd, t->rx + t->rxlen, room, 0);
		t->pending = more;
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (k <= 0 || !room) {
			snprintf(t->detail, sizeof t->detail, "%s",
				 !room	 ? "the server sent a frame larger than any TURN message"
				 : t->ts ? "the server closed the TLS connection"
					 : "the server closed the TCP connection");
			return ECONNRESET;
		}
		t->rxlen += (size_t)k;
		if (drain(t, d, dbuf, dlen))
			return 1;
		if (!t->ts) /* TLS records may hold more than the fd shows; TCP's poll says */
			return 0;
	}
}

/* Runs the loop until done() or the deadline; *got gets what the peer socket
 * received (when peer_buf), and data the client got comes back in d. */
static int spin(struct pt *t, uint64_t deadline, bool (*done)(const struct pt *),
		struct turnc_data *d, uint8_t *dbuf, size_t *dlen, uint8_t *peer_buf,
		size_t *peer_len)
{
	while (!done(t)) {
		uint64_t now = time_mono_ms();
		if (now >= deadline)
			return ETIMEDOUT;
		if (t->stream && drain(t, d, dbuf, dlen))
			return 0;
		uint64_t next = turnc_next_ms(t->c);
		uint64_t until = next < deadline ? next : deadline;
		int wait = until > now ? (int)(until - now) : 0;
		struct pollfd pf[2] = {{t->fd, POLLIN, 0}, {t->pfd, POLLIN, 0}};
		int n = poll(pf, 2, t->pending ? 0 : wait > 50 ? 50 : wait);
		if (n < 0 && errno != EINTR)
			return errno;
		bool readable = n > 0 && (pf[0].revents & (POLLIN | POLLERR | POLLHUP));
		if (!t->stream && readable) {
			ssize_t k = recv(t->fd, t->rx, sizeof t->rx, 0);
			if (k > 0 && feed(t, t->rx, (size_t)k, d, dbuf, dlen) == 1)
				return 0;
		} else if (t->stream && (readable || t->pending)) {
			int rc = stream_input(t, d, dbuf, dlen);
			if (rc == 1)
				return 0;
			if (rc)
				return rc;
		}
		if (n > 0 && (pf[1].revents & POLLIN) && peer_buf) {
			ssize_t k = recv(t->pfd, peer_buf, 1500, 0);
			if (k > 0) {
				*peer_len = (size_t)k;
				return 0;
			}
		}
		turnc_tick(t->c, time_mono_ms());
	}
	return 0;
}

static bool settled_alloc(const struct pt *t)
{
	return t->allocated || t->failed;
}
static bool settled_perm(const struct pt *t)
{
	return t->permitted || t->err;
}
static bool settled_bind(const struct pt *t)
{
	return t->bound || t->err;
}
static bool settled_close(const struct pt *t)
{
	return t->closed;
}
static bool never(const struct pt *t)
{
	(void)t;
	return false;
}

/* The socket to the server, connected by the deadline (ETIMEDOUT). */
static int open_sock(struct pt *t, uint64_t deadline)
{
	const struct sockaddr_storage *server = &t->o->server;
	socklen_t sl = server->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						     : sizeof(struct sockaddr_in);
	int fd = socket(server->ss_family,
			(t->stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errno;
	t->fd = fd;
	if (connect(fd, (const struct sockaddr *)server, sl) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return errno;
	for (;;) {
		uint64_t now = time_mono_ms();
		if (now >= deadline)
			return ETIMEDOUT;
		struct pollfd pf = {fd, POLLOUT, 0};
		int wait = deadline - now > 50 ? 50 : (int)(deadline - now);
		if (poll(&pf, 1, wait) > 0) {
			int e = 0;
			socklen_t el = sizeof e;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
			return e;
		}
	}
}

/* tls: the handshake, the certificate checked against the name the user
 * gave (or the server's address), by the deadline. */
static int tls_start(struct pt *t, uint64_t deadline)
{
	struct probe_turn_result *r = t->r;
	char why[200] = "", host[NET_ADDR_STRLEN];
	int err = net_tls_client_alloc(&t->tc, t->o->ca_file, true, why, sizeof why);
	if (err) {
		snprintf(r->error, sizeof r->error, "TLS client: %s", why);
		return err;
	}
	const char *name = t->o->host;
	if (!name[0]) {
		struct net_addr sa;
		memcpy(&sa.u.ss, &t->o->server, sizeof sa.u.ss);
		name = net_addr_ip_fmt(&sa, host, sizeof host);
	}
	err = net_tls_sock_alloc(&t->ts, t->tc, t->fd, name);
	if (err) {
		snprintf(r->error, sizeof r->error, "TLS: %s", strerror(err));
		return err;
	}
	for (;;) {
		uint32_t want = 0;
		err = net_tls_sock_handshake(t->ts, &want, why, sizeof why);
		if (!err)
			break;
		if (err != EAGAIN) {
			r->tls_failed = true;
			r->tls_refused = err == EPERM;
			snprintf(r->error, sizeof r->error, "TLS handshake with %.80s: %.150s",
				 name, why);
			return err;
		}
		uint64_t now = time_mono_ms();
		if (now >= deadline) {
			r->tls_failed = true;
			snprintf(r->error, sizeof r->error,
				 "TLS handshake with %.80s: no answer in %u ms", name,
				 t->o->timeout_ms);
			return ETIMEDOUT;
		}
		struct pollfd pf = {t->fd, (short)(want & EPOLLOUT ? POLLOUT : POLLIN), 0};
		poll(&pf, 1, deadline - now > 50 ? 50 : (int)(deadline - now));
	}
	snprintf(r->tls_version, sizeof r->tls_version, "%s", net_tls_sock_version(t->ts));
	return 0;
}

const char *probe_turn_transport_name(enum probe_turn_transport tp)
{
	return tp == PROBE_TURN_TLS ? "tls" : tp == PROBE_TURN_TCP ? "tcp" : "udp";
}

static void fmt(const struct net_addr *a, char *out, size_t cap)
{
	net_addr_fmt(a, out, cap);
}

int probe_turn_run(const struct probe_turn_opts *o, struct probe_turn_result *r)
{
	memset(r, 0, sizeof *r);
	struct pt t = {.o = o, .r = r, .fd = -1, .pfd = -1};
	t.stream = o->transport != PROBE_TURN_UDP;
	int ret = 0;
	uint64_t t0 = time_mono_ms();
	uint64_t deadline = t0 + o->timeout_ms;
	int err = open_sock(&t, deadline);
	if (err) {
		snprintf(r->error, sizeof r->error, "cannot reach the server: %s",
			 err == ETIMEDOUT ? "no connection in time (dropped on the way?)"
					  : strerror(err));
		goto out;
	}
	if (o->transport == PROBE_TURN_TLS && tls_start(&t, deadline))
		goto out;
	r->reached = true;
	err = turnc_alloc(&t.c, &o->cred, pt_send, pt_event, &t);
	if (err) {
		snprintf(r->error, sizeof r->error, "bad credentials: %s", strerror(err));
		ret = err;
		goto out;
	}
	snprintf(r->username, sizeof r->username, "%s", turnc_username(t.c));
	struct turnc_data d;
	uint8_t dbuf[1500], pbuf[1500];
	size_t dlen = 0, plen = 0;

	turnc_start(t.c, t0);
	err = spin(&t, deadline, settled_alloc, &d, dbuf, &dlen, NULL, NULL);
	r->answered = t.allocated || t.r->code != 0;
	if (!t.allocated) {
		if (err == ETIMEDOUT && !r->error[0])
			snprintf(r->error, sizeof r->error,
				 "no answer from the TURN server in %u ms", o->timeout_ms);
		if (!r->error[0])
			snprintf(r->error, sizeof r->error, "%s", t.detail);
		goto out;
	}
	r->allocated = true;
	r->allocate_ms = (unsigned)(time_mono_ms() - t0);
	fmt(turnc_relayed(t.c), r->relayed, sizeof r->relayed);
	fmt(turnc_mapped(t.c), r->mapped, sizeof r->mapped);

	/* the peer: a second socket of ours, toward the relayed address */
	const struct net_addr *relay = turnc_relayed(t.c);
	t.pfd = socket(net_addr_family(relay), SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (t.pfd < 0 || connect(t.pfd, &relay->u.sa, net_addr_len(relay)) < 0) {
		snprintf(r->error, sizeof r->error, "peer socket: %s", strerror(errno));
		goto dealloc;
	}
	/* permission for our NAT's public IP (the Allocate's mapped address), or
	 * our own when there is no NAT (the mapped address says which) */
	struct net_addr permit_ip = *turnc_mapped(t.c);
	if (net_addr_family(&permit_ip) != net_addr_family(relay))
		net_sock_addr(t.pfd, &permit_ip);
	uint64_t tp = time_mono_ms();
	turnc_permit(t.c, &permit_ip, tp);
	err = spin(&t, deadline, settled_perm, &d, dbuf, &dlen, NULL, NULL);
	if (!t.permitted) {
		if (!r->error[0])
			snprintf(r->error, sizeof r->error, "no answer to CreatePermission");
		goto dealloc;
	}
	r->permitted = true;
	r->permission_ms = (unsigned)(time_mono_ms() - tp);

	/* up: peer -> relay -> us (Data indication); retried, as UDP may drop it */
	uint8_t probe[32];
	rand_bytes(probe, sizeof probe);
	uint64_t tr = time_mono_ms();
	bool up = false;
	for (int i = 0; i < 5 && !up; i++) {
		send(t.pfd, probe, sizeof probe, 0);
		uint64_t step = time_mono_ms() + 400;
		if (spin(&t, step < deadline ? step : deadline, never, &d, dbuf, &dlen, NULL,
			 NULL) == 0 &&
		    dlen == sizeof probe && memcmp(dbuf, probe, sizeof probe) == 0)
			up = true;
	}
	if (!up) {
		snprintf(r->error, sizeof r->error,
			 "data sent to the relayed address %s did not come back to us", r->relayed);
		goto dealloc;
	}
	r->up = true;
	fmt(&d.peer, r->peer, sizeof r->peer);
	struct net_addr peer = d.peer;

	/* down: us -> channel -> relay -> peer */
	turnc_bind(t.c, &peer, time_mono_ms());
	spin(&t, deadline, settled_bind, &d, dbuf, &dlen, NULL, NULL);
	r->channel = t.bound;
	rand_bytes(probe, sizeof probe);
	for (int i = 0; i < 5 && !r->down; i++) {
		turnc_send(t.c, &peer, probe, sizeof probe);
		uint64_t step = time_mono_ms() + 400;
		plen = 0;
		spin(&t, step < deadline ? step : deadline, never, &d, dbuf, &dlen, pbuf, &plen);
		r->down = plen == sizeof probe && memcmp(pbuf, probe, sizeof probe) == 0;
	}
	r->round_trip_ms = (unsigned)(time_mono_ms() - tr);
	if (!r->down)
		snprintf(r->error, sizeof r->error,
			 "data sent through the relay to %s did not arrive there", r->peer);

dealloc:
	/* RFC 8656 7.3: a Refresh with LIFETIME 0 frees the server's port now */
	turnc_close(t.c, time_mono_ms());
	spin(&t, time_mono_ms() + 2000, settled_close, &d, dbuf, &dlen, NULL, NULL);
	r->deallocated = t.closed && t.r->code == 0;
out:
	turnc_free(t.c);
	net_tls_sock_free(t.ts); /* its close_notify before the fd goes */
	net_tls_client_free(t.tc);
	if (t.fd >= 0)
		close(t.fd);
	if (t.pfd >= 0)
		close(t.pfd);
	return ret;
}

int probe_turn_exit(const struct probe_turn_result *r)
{
	if (r->allocated)
		return r->up && r->down ? 0 : 6;
	if (r->tls_failed)
		return 7;
	if (r->auth_refused)
		return 4;
	if (r->code)
		return 5;
	return 1;
}

static const char *yes_no(bool b)
{
	return b ? "yes" : "no";
}

int probe_turn_report_text(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			   struct buf *out)
{
	char srv[NET_ADDR_STRLEN];
	struct net_addr sa;
	memcpy(&sa.u.ss, &o->server, sizeof sa.u.ss);
	buf_printf(out, "turn %s:%s\n", probe_turn_transport_name(o->transport),
		   net_addr_fmt(&sa, srv, sizeof srv));
	if (o->transport == PROBE_TURN_TLS && r->reached)
		buf_printf(out, "  tls:             %s, the certificate verified for %s\n",
			   r->tls_version, o->host[0] ? o->host : "the server's address");
	if (r->username[0])
		buf_printf(out, "  username:        %s%s\n", r->username,
			   o->cred.secret[0] ? " (shared secret)" : "");
	if (!r->reached) {
		buf_printf(out, "  connection:      failed: %s\n", r->error);
	} else if (!r->allocated) {
		buf_printf(out, "  allocation:      failed: %s\n", r->error);
	} else {
		buf_printf(out, "  allocation:      %u ms (credentials included), lifetime %u s\n",
			   r->allocate_ms, r->lifetime_s);
		buf_printf(out, "  relayed address: %s\n", r->relayed);
		buf_printf(out, "  mapped address:  %s\n", r->mapped);
		buf_printf(out, "  permission:      %s", yes_no(r->permitted));
		if (r->permitted)
			buf_printf(out, " (%u ms)", r->permission_ms);
		buf_printf(out, "\n  peer to client:  %s%s%s\n", yes_no(r->up),
			   r->up ? ", from " : "", r->up ? r->peer : "");
		buf_printf(out, "  client to peer:  %s%s\n", yes_no(r->down),
			   r->channel ? " (over a channel)" : "");
		if (r->up && r->down)
			buf_printf(out, "  round trip:      %u ms\n", r->round_trip_ms);
		buf_printf(out, "  deallocated:     %s\n", yes_no(r->deallocated));
		if (r->error[0])
			buf_printf(out, "  problem:         %s\n", r->error);
	}
	int rc = probe_turn_exit(r);
	const char *what = rc == 0   ? "TURN works from here: allocated, and data went both ways"
			   : rc == 6 ? "allocated, but data did not make the round trip"
			   : rc == 7 ? (r->tls_refused ? "the server's certificate was not trusted"
						       : "no TLS with the server")
			   : rc == 4 ? "the server refused the credentials"
			   : rc == 5 ? "the server refused the allocation"
			   : r->reached ? "no answer from the server"
					: "the server could not be reached";
	return buf_printf(out, "  result:          %s (exit %d)\n", what, rc);
}

int probe_turn_report_json(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			   struct buf *out)
{
	buf_append_cstr(out, "{\"turn\":");
	probe_turn_json_check(o, r, out);
	return buf_append_cstr(out, "}\n");
}

int probe_turn_json_check(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			  struct buf *out)
{
	char srv[NET_ADDR_STRLEN];
	struct net_addr sa;
	memcpy(&sa.u.ss, &o->server, sizeof sa.u.ss);
	buf_printf(out, "{\"server\":\"%s\",\"transport\":\"%s\",\"reached\":%s,",
		   net_addr_fmt(&sa, srv, sizeof srv), probe_turn_transport_name(o->transport),
		   r->reached ? "true" : "false");
	if (o->transport == PROBE_TURN_TLS) {
		buf_append_cstr(out, "\"tls_version\":");
		if (r->tls_version[0])
			buf_append_json_str(out, r->tls_version);
		else
			buf_append_cstr(out, "null");
		buf_printf(out, ",\"tls_failed\":%s,\"certificate_refused\":%s,",
			   r->tls_failed ? "true" : "false", r->tls_refused ? "true" : "false");
	}
	buf_append_cstr(out, "\"username\":");
	buf_append_json_str(out, r->username);
	buf_printf(out,
		   ",\"shared_secret\":%s,\"answered\":%s,\"allocated\":%s,\"allocate_ms\":%u,"
		   "\"lifetime_s\":%u,\"relayed\":\"%s\",\"mapped\":\"%s\",\"permitted\":%s,"
		   "\"peer_to_client\":%s,\"client_to_peer\":%s,\"channel\":%s,\"peer\":\"%s\","
		   "\"round_trip_ms\":%u,\"deallocated\":%s,\"code\":%u,\"auth_refused\":%s,"
		   "\"error\":",
		   o->cred.secret[0] ? "true" : "false", r->answered ? "true" : "false",
		   r->allocated ? "true" : "false", r->allocate_ms, r->lifetime_s, r->relayed,
		   r->mapped, r->permitted ? "true" : "false", r->up ? "true" : "false",
		   r->down ? "true" : "false", r->channel ? "true" : "false", r->peer,
		   r->round_trip_ms, r->deallocated ? "true" : "false", r->code,
		   r->auth_refused ? "true" : "false");
	if (r->error[0])
		buf_append_json_str(out, r->error);
	else
		buf_append_cstr(out, "null");
	return buf_printf(out, ",\"exit\":%d}", probe_turn_exit(r));
}
