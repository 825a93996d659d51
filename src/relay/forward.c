/* relay: the packet path: recvmmsg -> demux -> parse -> latch -> choose the peer's socket ->
 * sendmmsg. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "relay/relay_int.h"

static struct metric m_packets = {
    .name = "relay_forwarded_packets_total",
    .help = "RTP and RTCP packets the relay forwarded (and ICE checks, docs/ice.md)"};
static struct metric m_bytes = {.name = "relay_forwarded_bytes_total",
				.help = "bytes of RTP and RTCP the relay forwarded"};
static struct metric m_fast = {
    .name = "relay_fastpath_packets_total",
    .help = "RTP packets the in-kernel fast path forwarded (included in relay_forwarded_packets_total)"};
static struct metric m_sessions = {
    .name = "relay_sessions", .help = "live relay sessions", .gauge = true};
#define DROP_METRIC(r)                                                                             \
	{                                                                                          \
		.name = "relay_dropped_total",                                                     \
		.help = "datagrams received at relay ports and not forwarded",                     \
		.labels = "reason=\"" r "\""                                                       \
	}
static struct metric m_drops[RELAY_DROP_COUNT] = {
    DROP_METRIC("malformed"), DROP_METRIC("stun"), DROP_METRIC("source"),
    DROP_METRIC("no-peer"),   DROP_METRIC("send"),
};

#define EV_METRIC(k)                                                                               \
	{                                                                                          \
		.name = "relay_media_evidence_total",                                              \
		.help = "RTP streams of ended relayed calls by where their media came from, "     \
			"against the SDP that announced it (docs/nat-evidence.md)",                 \
		.labels = "kind=\"" k "\""                                                         \
	}
static struct metric m_evidence[RELAY_EV_N] = {
    [RELAY_EV_NO_MEDIA] = EV_METRIC("no-media"),
    [RELAY_EV_AS_ANNOUNCED] = EV_METRIC("media-as-announced"),
    [RELAY_EV_OTHER_PORT] = EV_METRIC("media-other-port"),
    [RELAY_EV_OTHER_IP] = EV_METRIC("media-other-ip"),
};

void relay_metrics_evidence(enum relay_evidence e)
{
	if (e > RELAY_EV_UNKNOWN && e < RELAY_EV_N)
		metric_inc(&m_evidence[e]);
}

const char *relay_drop_name(enum relay_drop d)
{
	static const char *const names[RELAY_DROP_COUNT] = {"malformed", "stun", "source",
							    "no-peer", "send"};
	return (unsigned)d < RELAY_DROP_COUNT ? names[d] : "?";
}

void relay_metrics_register(void)
{
	metric_register(&m_packets);
	metric_register(&m_bytes);
	metric_register(&m_fast);
	metric_register(&m_sessions);
	for (int d = 0; d < RELAY_DROP_COUNT; d++)
		metric_register(&m_drops[d]);
	for (int e = RELAY_EV_NO_MEDIA; e < RELAY_EV_N; e++)
		metric_register(&m_evidence[e]);
	relay_ice_register_metrics();
}

void relay_metrics_drop(enum relay_drop d, int64_t n)
{
	if (n)
		metric_add(&m_drops[d], n);
}

void relay_metrics_sessions(int64_t delta)
{
	metric_add(&m_sessions, delta);
}

void relay_metrics_fast(int64_t packets, int64_t bytes)
{
	metric_add(&m_packets, packets);
	metric_add(&m_bytes, bytes);
	metric_add(&m_fast, packets);
}

int64_t relay_metrics_fast_get(void)
{
	return metric_get(&m_fast);
}

int64_t relay_metrics_get(int what)
{
	if (what == 0)
		return metric_get(&m_packets);
	if (what == 1)
		return metric_get(&m_bytes);
	return metric_get(&m_drops[what - 2]);
}

static struct loop *media_loop(const struct relay_media *m)
{
	return m->s->r->workers[m->s->worker]->loop;
}

int relay_media_attach(struct relay_media *m)
{
	struct loop *l = media_loop(m);
	int err = loop_fd_add(l, m->rtp.fd, EPOLLIN, relay_sock_readable, &m->rtp);
	if (!err)
		err = loop_fd_add(l, m->rtcp.fd, EPOLLIN, relay_sock_readable, &m->rtcp);
	return err;
}

void relay_media_detach(struct relay_media *m)
{
	struct loop *l = media_loop(m);
	relay_fast_forget(&m->rtp);
	relay_fast_forget(&m->rtcp);
	if (m->rtp.fd >= 0)
		loop_fd_del(l, m->rtp.fd);
	if (m->rtcp.fd >= 0)
		loop_fd_del(l, m->rtcp.fd);
}

/* One datagram through the stages; returns the socket to send from and sets
 * *dst, or NULL with *why set. What goes out is p[0..*lenp): the datagram,
 * or an answer to it the relay wrote over it (ice.c). Session locked. */
static struct relay_sock *classify(struct relay *r, struct relay_sock *k, uint8_t *p,
				   size_t *lenp, bool trunc, const struct net_addr *src, uint64_t now,
				   const struct net_addr **dst, enum relay_drop *why,
				   bool *relatched)
{
	size_t len = *lenp;
	*why = RELAY_DROP_MALFORMED;
	if (trunc)
		return NULL;
	uint32_t ssrc;
	bool rtcp;
	struct rtp_hdr rh;
	struct rtcp_hdr ch;
	switch (rtp_demux(p, len)) {
	case RTP_KIND_RTP:
		/* RTP belongs on the even port; the odd one only carries RTCP */
		if (k->rtcp || rtp_parse(&rh, p, len))
			return NULL;
		ssrc = rh.ssrc;
		rtcp = false;
		break;
	case RTP_KIND_RTCP:
		if (rtcp_parse(&ch, p, len))
			return NULL;
		ssrc = ch.ssrc;
		rtcp = true;
		break;
	case RTP_KIND_STUN:
		/* the parties' own ICE checks when the relay is their candidate */
		if (k->m->ice) {
			*why = RELAY_DROP_STUN;
			return relay_ice_packet(r, k, p, lenp, src, now, dst);
		}
		/* fall through */
	case RTP_KIND_DTLS:
	case RTP_KIND_ZRTP:
	case RTP_KIND_TURN_CHANNEL:
		/* DTLS-SRTP handshakes are not relayed, nor ICE checks where
		 * ICE is stripped from relayed SDP */
		*why = RELAY_DROP_STUN;
		return NULL;
	default:
		return NULL;
	}
	enum relay_latch_verdict v = relay_latch_packet(&k->latch, &r->latch, src, ssrc, now);
	if (v == RELAY_LATCH_DROP) {
		*why = RELAY_DROP_SOURCE;
		return NULL;
	}
	if (v != RELAY_LATCH_PASS)
		*relatched = true;
	if (v != RELAY_LATCH_PASS && log_get_level() >= LOG_DEBUG) {
		char t[NET_ADDR_STRLEN];
		LOG_D("relay", "%.*s leg %u m%u %s %s %s", (int)MIN(k->m->s->call_id_len, 64),
		      k->m->s->call_id, k->m->leg, k->m->idx, k->rtcp ? "rtcp" : "rtp",
		      v == RELAY_LATCH_NEW ? "latched to" : "re-latched to",
		      net_addr_fmt(src, t, sizeof t));
	}
	k->packets++;
	k->bytes += len;
	if (!rtcp)
		rtp_seq_update(&k->seq, ssrc, rh.seq);

	/* out of the other leg's socket of the same m= line */
	const struct relay_media *m = k->m;
	struct relay_media *om = m->s->leg[1 - m->leg].media[m->idx];
	*why = RELAY_DROP_NO_PEER;
	if (!om)
		return NULL;
	/* RFC 5761: RTCP for a muxing party goes to its RTP port; the relay
	 * demuxes and muxes between parties that differ */
	struct relay_sock *out = rtcp && !om->mux ? &om->rtcp : &om->rtp;
	if (out->fd < 0 || !relay_latch_dest(&out->latch, dst))
		return NULL;
	return out;
}

static void flush(struct relay_worker *w, unsigned n, int64_t *send_drops)
{
	unsigned j = 0;
	while (j < n) {
		unsigned run = 1;
		while (j + run < n && w->sfd[j + run] == w->sfd[j])
			run++;
		unsigned done = 0;
		while (done < run) {
			int got = sendmmsg(w->sfd[j], w->smsg + j + done, run - done, MSG_DONTWAIT);
			if (got <= 0) {
				/* full socket buffer or ICMP error: lose that one */
				(*send_drops)++;
				done++;
				continue;
			}
			done += (unsigned)got;
		}
		j += run;
	}
}

void relay_sock_readable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct relay_sock *k = arg;
	struct relay_session *s = k->m->s;
	struct relay *r = s->r;
	struct relay_worker *w = r->workers[s->worker];
	/* bounded rounds: the loop's other sockets get their turn */
	for (int round = 0; round < 4; round++) {
		for (unsigned i = 0; i < RELAY_BATCH; i++) {
			w->riov[i] = (struct iovec){w->rx[i], RELAY_RXBUF};
			memset(&w->rmsg[i].msg_hdr, 0, sizeof w->rmsg[i].msg_hdr);
			w->rmsg[i].msg_hdr.msg_name = &w->src[i];
			w->rmsg[i].msg_hdr.msg_namelen = sizeof w->src[i];
			w->rmsg[i].msg_hdr.msg_iov = &w->riov[i];
			w->rmsg[i].msg_hdr.msg_iovlen = 1;
		}
		int got = recvmmsg(fd, w->rmsg, RELAY_BATCH, MSG_DONTWAIT, NULL);
		if (got <= 0)
			return;
		int64_t drops[RELAY_DROP_COUNT] = {0}, fwd = 0, fwd_bytes = 0;
		unsigned n = 0;
		uint64_t now = loop_now_ms(w->loop);
		pthread_mutex_lock(&s->lock);
		if (s->dead) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		/* the kernel forwarded this stream until now: the latch must see
		 * its last activity before judging another source */
		if (k->fast)
			relay_fast_pull(k);
		bool relatched = false;
		for (int i = 0; i < got; i++) {
			struct net_addr src;
			memcpy(&src.u.ss, &w->src[i], sizeof src.u.ss);
			size_t len = w->rmsg[i].msg_len;
			const struct net_addr *dst;
			enum relay_drop why;
			struct relay_sock *out = classify(
			    r, k, w->rx[i], &len, (w->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) != 0,
			    &src, now, &dst, &why, &relatched);
			if (!out) {
				drops[why]++;
				k->dropped++;
				continue;
			}
			memcpy(&w->dst[n], &dst->u.ss, sizeof w->dst[n]);
			w->sfd[n] = out->fd;
			w->siov[n] = (struct iovec){w->rx[i], len};
			memset(&w->smsg[n].msg_hdr, 0, sizeof w->smsg[n].msg_hdr);
			w->smsg[n].msg_hdr.msg_name = &w->dst[n];
			w->smsg[n].msg_hdr.msg_namelen = net_addr_len(dst);
			w->smsg[n].msg_hdr.msg_iov = &w->siov[n];
			w->smsg[n].msg_hdr.msg_iovlen = 1;
			fwd_bytes += (int64_t)len;
			n++;
		}
		if (relatched)
			relay_fast_sync(k->m); /* hand the stream (and its reverse) to the kernel */
		pthread_mutex_unlock(&s->lock);
		/* sockets close only on this thread, so sending unlocked is safe */
		int64_t send_drops = 0;
		if (n)
			flush(w, n, &send_drops);
		fwd = (int64_t)n - send_drops;
		drops[RELAY_DROP_SEND] += send_drops;
		if (fwd) {
			metric_add(&m_packets, fwd);
			metric_add(&m_bytes, fwd_bytes);
		}
		for (int d = 0; d < RELAY_DROP_COUNT; d++)
			relay_metrics_drop((enum relay_drop)d, drops[d]);
		if (got < RELAY_BATCH)
			return;
	}
}
