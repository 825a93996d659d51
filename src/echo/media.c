/* echo media: a port pair per call, strict latching, each RTP packet sent back as our own stream,
 * RTCP answered with our report. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "echo_int.h"

static struct metric m_packets = {.name = "echo_packets_total",
				  .help = "RTP packets the echo service sent back"};
static struct metric m_reports = {.name = "echo_rtcp_reports_total",
				  .help =
				      "RTCP reports the echo service sent (one per RTCP received)"};
static struct metric m_early = {.name = "echo_media_dropped_total",
				.help = "echo media packets dropped",
				.labels = "reason=\"early\""};
static struct metric m_stranger = {.name = "echo_media_dropped_total",
				   .help = "echo media packets dropped",
				   .labels = "reason=\"source\""};
static struct metric m_malformed = {.name = "echo_media_dropped_total",
				    .help = "echo media packets dropped",
				    .labels = "reason=\"malformed\""};

void echo_media_register_metrics(void)
{
	metric_register(&m_packets);
	metric_register(&m_reports);
	metric_register(&m_early);
	metric_register(&m_stranger);
	metric_register(&m_malformed);
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* RFC 4961 / the relay's strict latch: the first packet from the caller's
 * signalling IP or its SDP IP takes the socket; nothing else is answered. */
static bool latch(struct echo_sock *s, const struct net_addr *from)
{
	if (s->latched)
		return net_addr_eq(&s->peer, from);
	const struct echo_call *c = s->c;
	for (size_t i = 0; i < ARRAY_SIZE(c->allow); i++) {
		if (net_addr_family(&c->allow[i]) != AF_UNSPEC &&
		    net_addr_ip_eq(&c->allow[i], from)) {
			s->peer = *from;
			s->latched = true;
			return true;
		}
	}
	return false;
}

static void send_to(struct echo_sock *s, const void *p, size_t len)
{
	(void)sendto(s->fd, p, len, MSG_DONTWAIT, &s->peer.u.sa, net_addr_len(&s->peer));
}

/* One packet back per packet in, as our stream: our SSRC and sequence, the
 * caller's timestamps shifted by a fixed offset, the same payload, no
 * CSRC/extension/padding: never larger than what came. */
static void echo_rtp(struct echo_call *c, struct echo_sock *s, const uint8_t *p, size_t len)
{
	struct rtp_hdr h;
	if (rtp_parse(&h, p, len)) {
		metric_inc(&m_malformed);
		return;
	}
	uint32_t arrival = (uint32_t)(time_mono_us() * RTP_RATE / 1000000u);
	rtp_recv_update(&c->rs, h.ssrc, h.seq, h.ts, arrival);
	if (!c->send_ok)
		return;
	if (!c->ts_set) {
		c->ts_off = rand_u32() - h.ts;
		c->ts_set = true;
	}
	uint8_t out[1500];
	if (h.payload_len > sizeof out - 12)
		return;
	struct rtp_hdr o = {.pt = h.pt,
			    .marker = h.marker,
			    .seq = c->seq++,
			    .ts = h.ts + c->ts_off,
			    .ssrc = c->ssrc};
	rtp_hdr_write(out, &o);
	memcpy(out + 12, p + h.payload_off, h.payload_len);
	c->last_ts = o.ts;
	c->out_pkts++;
	c->out_octets += (uint32_t)h.payload_len;
	metric_inc(&m_packets); /* before it leaves: whoever gets it sees it counted */
	send_to(s, out, 12 + h.payload_len);
}

/* RTCP in: note the caller's SR for our LSR/DLSR (its RTT), and answer with
 * our own SR (or RR before we sent anything), no larger than what came. */
static void answer_rtcp(struct echo_call *c, struct echo_sock *s, const uint8_t *p, size_t len)
{
	struct rtcp_report in;
	if (rtcp_report_parse(&in, p, len)) {
		metric_inc(&m_malformed);
		return;
	}
	uint64_t now = time_mono_us();
	if (in.sr) {
		c->lsr = rtcp_ntp_mid32(in.ntp);
		c->lsr_at_us = now;
	}
	struct rtcp_report r;
	memset(&r, 0, sizeof r);
	r.ssrc = c->ssrc;
	r.sr = c->out_pkts > 0;
	r.ntp = rtcp_ntp_from_unix_us(wall_us());
	r.rtp_ts = c->last_ts;
	r.packets = c->out_pkts;
	r.octets = c->out_octets;
	if (c->rs.init) {
		r.n_blocks = 1;
		rtp_recv_block(&c->rs, c->lsr, c->lsr ? rtcp_dlsr(now - c->lsr_at_us) : 0,
			       &r.blocks[0]);
	}
	uint8_t out[256];
	size_t n = 0;
	/* the full compound, else reduced size (RFC 5506), else an RR */
	if (rtcp_report_build(&r, "echo", out, sizeof out, &n) || n > len)
		n = 0;
	if (!n && (rtcp_report_build(&r, NULL, out, sizeof out, &n) || n > len))
		n = 0;
	if (!n && r.sr) {
		r.sr = false;
		if (rtcp_report_build(&r, NULL, out, sizeof out, &n) || n > len)
			n = 0;
	}
	if (!n)
		return;
	metric_inc(&m_reports);
	send_to(s, out, n);
}

static void on_media(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct echo_sock *s = arg;
	struct echo_call *c = s->c;
	for (int i = 0; i < 64; i++) {
		uint8_t buf[2048];
		struct net_addr from;
		socklen_t sl = sizeof from.u.ss;
		ssize_t k = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, &from.u.sa, &sl);
		if (k <= 0)
			return;
		/* nothing is sent for a call not confirmed by its ACK: a forged
		 * INVITE's SDP can name anyone */
		if (!c->acked || c->state == ECHO_ENDING) {
			metric_inc(&m_early);
			continue;
		}
		enum rtp_kind kind = rtp_demux(buf, (size_t)k);
		bool rtp = kind == RTP_KIND_RTP && !s->rtcp;
		bool rtcp = kind == RTP_KIND_RTCP && (s->rtcp || c->mux);
		if (!rtp && !rtcp) {
			metric_inc(&m_malformed);
			continue;
		}
		if (!latch(s, &from)) {
			metric_inc(&m_stranger);
			continue;
		}
		if (rtp)
			echo_rtp(c, s, buf, (size_t)k);
		else
			answer_rtcp(c, s, buf, (size_t)k);
	}
}

static int open_sock(struct echo *e, struct echo_sock *s, struct echo_call *c, uint16_t port,
		     bool rtcp)
{
	struct net_addr a = e->media_addr;
	net_addr_set_port(&a, port);
	memset(s, 0, sizeof *s);
	s->fd = -1;
	s->c = c;
	s->rtcp = rtcp;
	int err = net_udp_socket(&a, false, &s->fd);
	if (err)
		return err;
	if ((err = loop_fd_add(e->loop, s->fd, EPOLLIN, on_media, s))) {
		close(s->fd);
		s->fd = -1;
	}
	return err;
}

static void close_sock(struct echo *e, struct echo_sock *s)
{
	if (s->fd < 0)
		return;
	loop_fd_del(e->loop, s->fd);
	close(s->fd);
	s->fd = -1;
}

int echo_media_open(struct echo *e, struct echo_call *c)
{
	c->rtp.fd = c->rtcp_sock.fd = -1;
	c->ssrc = rand_u32();
	c->seq = (uint16_t)rand_u32();
	/* pairs taken in turn from the range; one in use (or another
	 * program's) is skipped */
	unsigned tries = e->npairs < 64 ? e->npairs : 64;
	for (unsigned i = 0; i < tries; i++) {
		unsigned pair = e->next_pair++ % e->npairs;
		uint16_t port = (uint16_t)(e->port_lo + 2 * pair);
		if (open_sock(e, &c->rtp, c, port, false))
			continue;
		if (!c->mux && open_sock(e, &c->rtcp_sock, c, (uint16_t)(port + 1), true)) {
			close_sock(e, &c->rtp);
			continue;
		}
		c->port = port;
		return 0;
	}
	return EADDRINUSE;
}

void echo_media_close(struct echo *e, struct echo_call *c)
{
	close_sock(e, &c->rtp);
	close_sock(e, &c->rtcp_sock);
}
