/* The standalone STUN server: per-worker SO_REUSEPORT sockets, RFC 5780 slots, budgets. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stun/stun.h"
#include "stund_int.h"

const struct conf_key stund_conf_keys[] = {
    {"stun", "listen", CONF_STR, "udp:0.0.0.0:3478", 0, 0, NULL,
     "where to answer STUN Binding: udp:address:port list; IPv6 as udp:[::]:3478"},
    {"stun", "other", CONF_STR, "", 0, 0, NULL,
     "RFC 5780 alternate address:port, IP and port both differing from listen (one per "
     "family); empty = behaviour discovery off"},
    {"stun", "rate", CONF_INT, "20", 0, 1000000, NULL,
     "per-source budget in requests per second (IPv6 per /64), over all workers and shared "
     "with STUN on the SIP ports; 0 = unlimited"},
    {"stun", "burst", CONF_INT, "40", 1, 1000000, NULL, "per-source burst in requests"},
    {"stun", "sources", CONF_INT, "16384", 64, 4194304, NULL, "rate-limit table slots (one table for every worker and the SIP ports)"},
    {"stun", "software", CONF_STR, "", 0, 0, NULL,
     "SOFTWARE attribute in responses; empty = none (smaller answers)"},
    {"stun", "fastpath", CONF_ENUM, "auto", 0, 0, "auto|on|off",
     "answer plain IPv4 Binding requests in the kernel (eBPF tc program; needs CAP_BPF and "
     "CAP_NET_ADMIN, and no SOFTWARE): auto = when it loads; on = fail to start without it"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static struct metric m_requests = {.name = "stun_requests_total",
				   .help = "datagrams received by the STUN server"};
static struct metric m_success = {
    .name = "stun_responses_total", .help = "STUN responses sent", .labels = "class=\"success\""};
static struct metric m_error = {
    .name = "stun_responses_total", .help = "STUN responses sent", .labels = "class=\"error\""};
static struct metric m_drop_bad = {.name = "stun_dropped_total",
				   .help = "STUN datagrams dropped",
				   .labels = "reason=\"malformed\""};
static struct metric m_drop_rate = {
    .name = "stun_dropped_total", .help = "STUN datagrams dropped", .labels = "reason=\"rate\""};
static struct metric m_fast = {
    .name = "stun_fastpath_responses_total",
    .help = "Binding responses the in-kernel fast path sent (included in stun_responses_total)"};
static struct metric m_drop_send = {
    .name = "stun_dropped_total", .help = "STUN datagrams dropped", .labels = "reason=\"send\""};

#define MAX_LISTEN 8
#define BATCH 32
#define RXBUF 4096 /* larger (padded) requests are dropped */

struct stund_worker;

/* One socket of one worker; the epoll argument. Owned by struct stund_worker. */
struct stund_sock {
	struct stund_worker *sw; /* back-pointer */
	unsigned li, slot;
	int fd;
};

/* Worker-local state; only that worker's thread touches it after start. */
struct stund_worker {
	struct stund *sd; /* back-pointer */
	struct loop *loop;
	struct stund_sock socks[MAX_LISTEN][4];
	uint8_t rx[BATCH][RXBUF];
	struct sockaddr_storage src[BATCH], dst[BATCH];
	struct iovec riov[BATCH], siov[BATCH];
	struct mmsghdr rmsg[BATCH], smsg[BATCH];
	struct buf tx[BATCH];
};

struct stund {
	struct net *net;
	unsigned nlisten;
	struct stund_view views[MAX_LISTEN]; /* RO after start */
	unsigned nslots[MAX_LISTEN];	     /* 1, or 4 with RFC 5780 */
	char software[128];
	unsigned nworkers;
	struct stund_worker **workers; /* owned */
	struct stund_fast *fast;       /* owned; NULL: all in user space */
	struct timer fold;	       /* worker 0: the fast path's counters into the metrics */
	/* the per-source budget of every worker: the caller's (shared with the
	 * SIP ports) or own_lim; thread-safe */
	struct stund_limiter *lim;
	struct stund_limiter own_lim;
};

#define FOLD_MS 1000

/* Adds what the kernel answered to the server's counters. Thread-safe. */
static void fold_fast(const struct stund *sd)
{
	int64_t req, resp, lim;
	stund_fast_pull(sd->fast, &req, &resp, &lim);
	metric_add(&m_requests, req);
	metric_add(&m_success, resp);
	metric_add(&m_fast, resp);
	metric_add(&m_drop_rate, lim);
}

static void fold_timer(void *arg)
{
	struct stund *sd = arg;
	fold_fast(sd);
	timer_start(sd->workers[0]->loop, &sd->fold, FOLD_MS, fold_timer, sd);
}

static void fold_arm(void *arg)
{
	struct stund *sd = arg;
	timer_start(sd->workers[0]->loop, &sd->fold, FOLD_MS, fold_timer, sd);
}

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Builds the four RFC 5780 addresses: A1:P1, A1:P2, A2:P1, A2:P2. */
static void slot_addr(const struct net_addr *a1, const struct net_addr *a2, unsigned slot,
		      struct net_addr *out)
{
	*out = (slot & 2) ? *a2 : *a1;
	net_addr_set_port(out, net_addr_port((slot & 1) ? a2 : a1));
}

static int parse_list(const char *s, const char *key, struct net_addr *out, unsigned max,
		      unsigned *n, bool scheme)
{
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s", s);
	*n = 0;
	for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		struct slice t = slice_trim(slice_cstr(tok));
		if (!t.l)
			continue;
		char item[128];
		slice_to_cstr(t, item, sizeof item);
		const char *a = item;
		if (scheme && strncmp(item, "udp:", 4) == 0) {
			a = item + 4;
		} else if (scheme &&
			   (strncmp(item, "tcp:", 4) == 0 || strncmp(item, "tls:", 4) == 0)) {
			LOG_E("stun", "stun.%s: %s: only udp is supported so far", key, item);
			return ENOTSUP;
		}
		if (*n == max) {
			LOG_E("stun", "stun.%s: more than %u addresses", key, max);
			return EINVAL;
		}
		if (net_addr_parse(a, 3478, &out[*n])) {
			LOG_E("stun", "stun.%s: '%s' is not address:port", key, item);
			return EINVAL;
		}
		(*n)++;
	}
	return 0;
}

static void on_readable(int fd, uint32_t events, void *arg);

static void worker_free(struct stund_worker *sw)
{
	if (!sw)
		return;
	for (unsigned i = 0; i < MAX_LISTEN; i++)
		for (unsigned s = 0; s < 4; s++)
			if (sw->socks[i][s].fd >= 0)
				close(sw->socks[i][s].fd);
	for (unsigned i = 0; i < BATCH; i++)
		buf_free(&sw->tx[i]);
	free(sw);
}

/* Runs on the worker's own thread (loop_post), so the loop is only touched there. */
static void worker_attach(void *arg)
{
	struct stund_worker *sw = arg;
	for (unsigned i = 0; i < sw->sd->nlisten; i++)
		for (unsigned s = 0; s < sw->sd->nslots[i]; s++) {
			struct stund_sock *k = &sw->socks[i][s];
			int err = loop_fd_add(sw->loop, k->fd, EPOLLIN, on_readable, k);
			if (err)
				LOG_E("stun", "worker: cannot watch socket: %s", strerror(err));
		}
}

static int open_sockets(struct stund *sd, unsigned li, const struct net_addr *a1,
			const struct net_addr *a2)
{
	struct stund_view *v = &sd->views[li];
	struct net_addr p1 = *a1, p2 = a2 ? *a2 : *a1;
	for (unsigned s = 0; s < sd->nslots[li]; s++) {
		struct net_addr a;
		slot_addr(&p1, &p2, s, &a);
		for (unsigned w = 0; w < sd->nworkers; w++) {
			/* the workers' sockets are a SO_REUSEPORT group: not one a
			 * SIP or TURN listener on the same port already makes */
			int fd, err = w == 0 ? net_port_free(&a, false) : 0;
			if (!err)
				err = net_udp_socket(&a, true, &fd);
			if (err) {
				char t[NET_ADDR_STRLEN];
				LOG_E("stun", "cannot bind udp:%s: %s",
				      net_addr_fmt(&a, t, sizeof t), strerror(err));
				return err;
			}
			sd->workers[w]->socks[li][s].fd = fd;
			if (w == 0 && net_addr_port(&a) == 0) {
				/* port 0: the first bind picks it, the rest share it */
				net_sock_addr(fd, &a);
				if (s == 0)
					net_addr_set_port(&p1, net_addr_port(&a));
				if (s == 1)
					net_addr_set_port(&p2, net_addr_port(&a));
			}
		}
		memcpy(&v->addr[s], &a.u.ss, sizeof a.u.ss);
	}
	return 0;
}

static int configure(struct stund *sd, const struct conf *c)
{
	struct net_addr listen[MAX_LISTEN], other[MAX_LISTEN];
	unsigned nl, no;
	int err =
	    parse_list(conf_str(c, "stun", "listen"), "listen", listen, MAX_LISTEN, &nl, true);
	if (!err)
		err = parse_list(conf_str(c, "stun", "other"), "other", other, MAX_LISTEN, &no,
				 false);
	if (err)
		return err;
	if (!nl) {
		LOG_E("stun", "stun.listen: no address");
		return EINVAL;
	}
	snprintf(sd->software, sizeof sd->software, "%s", conf_str(c, "stun", "software"));
	sd->nlisten = nl;
	for (unsigned i = 0; i < nl; i++) {
		const struct net_addr *alt = NULL;
		for (unsigned k = 0; k < no && !alt; k++)
			if (net_addr_family(&other[k]) == net_addr_family(&listen[i]))
				alt = &other[k];
		sd->nslots[i] = alt ? 4 : 1;
		sd->views[i].rfc5780 = alt != NULL;
		sd->views[i].software = sd->software[0] ? sd->software : NULL;
		if (!alt)
			continue;
		/* RFC 5780 7.1: two IPs and two ports, and the answers must come from
		 * known addresses, which a wildcard bind cannot promise */
		if (net_addr_is_any(&listen[i]) || net_addr_is_any(alt) ||
		    net_addr_ip_eq(&listen[i], alt) ||
		    (net_addr_port(alt) != 0 && net_addr_port(alt) == net_addr_port(&listen[i]))) {
			LOG_E("stun", "stun.other: needs a specific listen address, and an IP and "
				      "a port that both differ from it");
			return EINVAL;
		}
		err = open_sockets(sd, i, &listen[i], alt);
		if (err)
			return err;
	}
	for (unsigned i = 0; i < nl; i++)
		if (sd->nslots[i] == 1 && (err = open_sockets(sd, i, &listen[i], NULL)))
			return err;
	return 0;
}

int stund_start(struct stund **sp, struct net *n, const struct conf *c,
		struct stund_limiter *lim)
{
	static struct metric *metrics[] = {&m_requests, &m_success,   &m_error,
					   &m_drop_bad, &m_drop_rate, &m_drop_send, &m_fast};
	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++)
		metric_register(metrics[i]);

	struct stund *sd = calloc(1, sizeof *sd);
	if (sd)
		sd->lim = lim;
	if (!sd)
		return ENOMEM;
	sd->net = n;
	sd->nworkers = net_worker_count(n);
	sd->workers = calloc(sd->nworkers ? sd->nworkers : 1, sizeof *sd->workers);
	int err = sd->workers ? 0 : ENOMEM;
	uint32_t rate = (uint32_t)conf_int(c, "stun", "rate");
	uint32_t burst = (uint32_t)conf_int(c, "stun", "burst");
	size_t slots = (size_t)conf_int(c, "stun", "sources");
	for (unsigned w = 0; !err && w < sd->nworkers; w++) {
		struct stund_worker *sw = calloc(1, sizeof *sw);
		if (!sw) {
			err = ENOMEM;
			break;
		}
		sd->workers[w] = sw;
		sw->sd = sd;
		sw->loop = worker_loop(net_worker(n, w));
		for (unsigned i = 0; i < MAX_LISTEN; i++)
			for (unsigned s = 0; s < 4; s++)
				sw->socks[i][s] = (struct stund_sock){sw, i, s, -1};
		for (unsigned i = 0; i < BATCH; i++)
			buf_init(&sw->tx[i]);
	}
	if (!err && !sd->lim) {
		err = stund_limiter_init(&sd->own_lim, slots, rate, burst);
		sd->lim = &sd->own_lim;
	}
	timer_init(&sd->fold);
	if (!err)
		err = configure(sd, c);
	if (!err)
		err = stund_fast_start(&sd->fast, conf_str(c, "stun", "fastpath"), sd->views,
				       sd->nslots, sd->nlisten, rate, burst);
	if (err) {
		stund_free(sd);
		return err;
	}
	if (sd->fast && loop_post(sd->workers[0]->loop, fold_arm, sd))
		LOG_W("stun", "fast path counters will only be read on request");
	/* nothing can fail after this: a posted attach must never meet a freed stund */
	for (unsigned w = 0; w < sd->nworkers; w++)
		if (loop_post(sd->workers[w]->loop, worker_attach, sd->workers[w]))
			worker_attach(sd->workers[w]); /* loop_fd_add locks; safe from here */
	for (unsigned i = 0; i < sd->nlisten; i++) {
		struct net_addr a;
		char t[NET_ADDR_STRLEN];
		memcpy(&a.u.ss, &sd->views[i].addr[0], sizeof a.u.ss);
		LOG_I("stun", "listening on udp:%s%s, %u workers", net_addr_fmt(&a, t, sizeof t),
		      sd->views[i].rfc5780 ? " with RFC 5780" : "", sd->nworkers);
	}
	*sp = sd;
	return 0;
}

void stund_free(struct stund *sd)
{
	if (!sd)
		return;
	/* after net_stop the loop no longer runs: detach from its wheel */
	if (timer_active(&sd->fold))
		timer_cancel(&sd->fold);
	fold_fast(sd);
	stund_fast_free(sd->fast);
	for (unsigned w = 0; sd->workers && w < sd->nworkers; w++)
		worker_free(sd->workers[w]);
	free(sd->workers);
	stund_limiter_free(&sd->own_lim);
	free(sd);
}

int stund_flow_answer(const struct flow *f, const uint8_t *p, size_t len, struct buf *out,
		      void *arg)
{
	struct stund_limiter *lim = arg;
	if (lim && !stund_limiter_allow(lim, &f->remote.u.sa, time_mono_ms())) {
		metric_inc(&m_drop_rate);
		return EAGAIN;
	}
	return stund_answer(&f->remote.u.sa, p, len, out);
}

unsigned stund_listen_count(const struct stund *sd)
{
	return sd->nlisten;
}

const struct sockaddr_storage *stund_addr(const struct stund *sd, unsigned i, unsigned slot)
{
	if (i >= sd->nlisten || slot >= sd->nslots[i])
		return NULL;
	return &sd->views[i].addr[slot];
}

void stund_stats_get(const struct stund *sd, struct stund_stats *out)
{
	/* the counters are process-wide, like every metric */
	fold_fast(sd);
	out->requests = metric_get(&m_requests);
	out->responses = metric_get(&m_success) + metric_get(&m_error);
	out->errors = metric_get(&m_error);
	out->dropped_malformed = metric_get(&m_drop_bad);
	out->dropped_rate = metric_get(&m_drop_rate);
	out->send_failed = metric_get(&m_drop_send);
	out->fast_responses = metric_get(&m_fast);
	out->fast = sd->fast != NULL;
}

/* ---- the packet path: recvmmsg -> budget -> respond -> sendmmsg ---- */

static void send_batch(int fd, struct stund_worker *sw, unsigned n)
{
	unsigned done = 0;
	while (done < n) {
		int r = sendmmsg(fd, sw->smsg + done, n - done, MSG_DONTWAIT);
		if (r <= 0) {
			/* a full socket buffer or an unreachable peer: skip that one */
			metric_inc(&m_drop_send);
			done++;
			continue;
		}
		done += (unsigned)r;
	}
}

static void handle_batch(struct stund_sock *k, unsigned got)
{
	struct stund_worker *sw = k->sw;
	const struct stund_view *v = &sw->sd->views[k->li];
	uint64_t now = loop_now_ms(sw->loop);
	unsigned nsend = 0;
	metric_add(&m_requests, got);
	for (unsigned i = 0; i < got; i++) {
		if (sw->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
			metric_inc(&m_drop_bad);
			continue;
		}
		const struct sockaddr *src = (const struct sockaddr *)&sw->src[i];
		if (!stund_limiter_allow(sw->sd->lim, src, now)) {
			metric_inc(&m_drop_rate);
			continue;
		}
		struct buf *out = &sw->tx[nsend];
		buf_reset(out);
		struct stund_reply r;
		int err = stund_respond(v, k->slot, src, sw->rx[i], sw->rmsg[i].msg_len, out, &r);
		if (err) {
			metric_inc(&m_drop_bad);
			continue;
		}
		metric_inc(r.code ? &m_error : &m_success);
		if (r.from != k->slot) {
			/* RFC 5780: answered from another address of this worker */
			int ofd = sw->socks[k->li][r.from].fd;
			if (sendto(ofd, out->data, out->len, MSG_DONTWAIT, (struct sockaddr *)&r.to,
				   ss_len(&r.to)) < 0)
				metric_inc(&m_drop_send);
			continue;
		}
		sw->dst[nsend] = r.to;
		sw->siov[nsend] = (struct iovec){out->data, out->len};
		memset(&sw->smsg[nsend], 0, sizeof sw->smsg[nsend]);
		sw->smsg[nsend].msg_hdr.msg_name = &sw->dst[nsend];
		sw->smsg[nsend].msg_hdr.msg_namelen = ss_len(&sw->dst[nsend]);
		sw->smsg[nsend].msg_hdr.msg_iov = &sw->siov[nsend];
		sw->smsg[nsend].msg_hdr.msg_iovlen = 1;
		nsend++;
	}
	if (nsend)
		send_batch(k->fd, sw, nsend);
}

static void on_readable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct stund_sock *k = arg;
	struct stund_worker *sw = k->sw;
	/* bounded rounds: other sockets of this loop get their turn */
	for (int round = 0; round < 8; round++) {
		for (unsigned i = 0; i < BATCH; i++) {
			sw->riov[i] = (struct iovec){sw->rx[i], RXBUF};
			memset(&sw->rmsg[i], 0, sizeof sw->rmsg[i]);
			sw->rmsg[i].msg_hdr.msg_name = &sw->src[i];
			sw->rmsg[i].msg_hdr.msg_namelen = sizeof sw->src[i];
			sw->rmsg[i].msg_hdr.msg_iov = &sw->riov[i];
			sw->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		int got = recvmmsg(fd, sw->rmsg, BATCH, MSG_DONTWAIT, NULL);
		if (got <= 0)
			return;
		handle_batch(k, (unsigned)got);
		if (got < BATCH)
			return;
	}
}
