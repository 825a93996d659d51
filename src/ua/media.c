/* ua: a call's media: 20 ms G.711 packets of a tone or a WAV file, RTCP reports every 5 s
 * (the first after 1 s), and what arrives measured (RFC 3550 A.1, A.3, A.8) for the verdict and written to a WAV
 * file (--record).
 *
 * Symmetric RTP (RFC 4961): each socket sends from the address it receives
 * on, so a NAT or a latching relay in the path sees one flow each way.
 * Anyone may send to our ports: a packet from elsewhere than the SSRC we took
 * is counted (strays) and dropped; nothing is ever sent in answer to a packet,
 * so a stranger gains nothing, and the call's life bounds the whole thing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stun/stun.h"
#include "ua_int.h"

#define UAM_RTCP_MS 5000
/* The first report goes out 1 s after media starts, not 5 s: RFC 3550 6.2
 * halves the minimum for the first one, and a two-party G.711 call's RTCP
 * share (5 % of ~80 kbit/s, some 500 bytes/s) allows one report a second
 * anyway. Early, a relay that latches RTCP apart from RTP (rtpengine without
 * rtcp-mux) learns our RTCP address while the call is young, and a short
 * call's verdict has the far end's report about our RTP. */
#define UAM_RTCP_FIRST_MS 1000
/* --record stops writing after an hour of audio (57.6 MB): a bound on the
 * disk a far end that never hangs up can fill */
#define UAM_RECORD_MAX ((uint64_t)RTP_RATE * 3600)

static uint64_t unix_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_rx(int fd, uint32_t events, void *arg);

/* Through the TURN allocation with --turn, else straight. */
static ssize_t media_send(struct ua_media *m, int fd, const void *p, size_t len,
			  const struct net_addr *to)
{
	if (m->turn)
		return uam_turn_send(m, fd, p, len, to) ? -1 : (ssize_t)len;
	return sendto(fd, p, len, 0, &to->u.sa, net_addr_len(to));
}

static int bind_one(struct ua_media *m, const struct net_addr *ip, int *fdp, uint16_t *port)
{
	struct net_addr a = *ip;
	net_addr_set_port(&a, 0);
	int fd = socket(net_addr_family(&a), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	struct net_addr got;
	if (bind(fd, &a.u.sa, net_addr_len(&a)) < 0 || net_sock_addr(fd, &got)) {
		int e = errno;
		close(fd);
		return e;
	}
	int err = loop_fd_add(m->loop, fd, EPOLLIN, on_rx, m);
	if (err) {
		close(fd);
		return err;
	}
	*fdp = fd;
	*port = net_addr_port(&got);
	if (fdp == &m->fd_rtp)
		m->local = got;
	return 0;
}

int uam_open(struct ua_media *m, struct loop *l, const struct net_addr *local_ip)
{
	memset(m, 0, sizeof *m);
	m->loop = l;
	m->fd_rtp = m->fd_rtcp = -1;
	int err = bind_one(m, local_ip, &m->fd_rtp, &m->rtp_port);
	if (!err)
		err = bind_one(m, local_ip, &m->fd_rtcp, &m->rtcp_port);
	if (err) {
		uam_close(m);
		return err;
	}
	net_addr_ip_fmt(&m->local, m->local_ip, sizeof m->local_ip);
	snprintf(m->sdp_ip, sizeof m->sdp_ip, "%s", m->local_ip);
	m->sdp_rtp_port = m->rtp_port;
	m->sdp_rtcp_port = m->rtcp_port;
	m->ssrc = rand_u32();
	m->seq = m->seq0 = (uint16_t)rand_u32();
	m->ts = rand_u32();
	return 0;
}

static void send_frame(struct ua_media *m)
{
	int16_t pcm[RTP_FRAME_SAMPLES];
	uint8_t pkt[12 + RTP_FRAME_SAMPLES];
	if (m->wav_n) {
		for (size_t i = 0; i < RTP_FRAME_SAMPLES; i++) {
			pcm[i] = m->wav[m->wav_pos++];
			if (m->wav_pos == m->wav_n)
				m->wav_pos = 0; /* looped */
		}
	} else {
		rtp_tone_fill(&m->tone, pcm, RTP_FRAME_SAMPLES);
	}
	if (!m->send_rtp) {
		/* held: the source and timestamps run on, nothing goes out */
		m->ts += RTP_FRAME_SAMPLES;
		m->frames++;
		return;
	}
	struct rtp_hdr h = {
	    .pt = m->pt, .marker = m->frames == 0, .seq = m->seq, .ts = m->ts, .ssrc = m->ssrc};
	rtp_hdr_write(pkt, &h);
	rtp_g711_encode(m->pt, pcm, RTP_FRAME_SAMPLES, pkt + 12);
	if (media_send(m, m->fd_rtp, pkt, sizeof pkt, &m->to_rtp) == (ssize_t)sizeof pkt) {
		m->sent_packets++;
		m->sent_bytes += RTP_FRAME_SAMPLES;
		if (!m->far_sends)
			m->sent_unanswered++;
	}
	m->seq++;
	m->ts += RTP_FRAME_SAMPLES;
	m->frames++;
}

/* Paced against the clock from the start, so the timer wheel's 10 ms grain
 * does not add up into drift. */
static void send_due(void *arg)
{
	struct ua_media *m = arg;
	uint64_t due = (time_mono_us() - m->start_us) / 20000 + 1;
	for (unsigned k = 0; m->frames < due && k < 5; k++)
		send_frame(m);
	uint64_t next_us = m->start_us + m->frames * 20000;
	uint64_t now = time_mono_us();
	timer_start(m->loop, &m->t_send, next_us > now ? (next_us - now + 999) / 1000 : 1, send_due,
		    m);
}

static void send_rtcp(struct ua_media *m, bool bye)
{
	struct rtcp_report r = {.sr = m->sent_packets > 0, .ssrc = m->ssrc, .bye = bye};
	uint64_t now_us = time_mono_us();
	r.ntp = rtcp_ntp_from_unix_us(unix_us());
	r.rtp_ts = m->ts;
	r.packets = (uint32_t)m->sent_packets;
	r.octets = (uint32_t)m->sent_bytes;
	if (r.sr)
		m->our_ntp_last = r.ntp;
	if (m->rs.init) {
		uint32_t dlsr = m->their_lsr ? rtcp_dlsr(now_us - m->their_sr_us) : 0;
		rtp_recv_block(&m->rs, m->their_lsr, dlsr, &r.blocks[0]);
		r.n_blocks = 1;
	}
	uint8_t out[512];
	size_t len;
	char cname[80];
	snprintf(cname, sizeof cname, "pinhole-ua@%s", m->local_ip);
	if (rtcp_report_build(&r, cname, out, sizeof out, &len))
		return;
	int fd = m->mux ? m->fd_rtp : m->fd_rtcp;
	const struct net_addr *to = m->mux ? &m->to_rtp : &m->to_rtcp;
	media_send(m, fd, out, len, to);
}

static void rtcp_due(void *arg)
{
	struct ua_media *m = arg;
	send_rtcp(m, false);
	timer_start(m->loop, &m->t_rtcp, UAM_RTCP_MS, rtcp_due, m);
}

static void on_rtcp(struct ua_media *m, const uint8_t *p, size_t n)
{
	struct rtcp_report r;
	if (rtcp_report_parse(&r, p, n)) {
		m->bad++;
		return;
	}
	m->far_rtcp = true;
	uint64_t now_us = unix_us();
	if (r.sr) {
		m->their_lsr = rtcp_ntp_mid32(r.ntp);
		m->their_sr_us = time_mono_us();
	}
	const struct rtcp_block *b = rtcp_report_block_for(&r, m->ssrc);
	if (!b)
		return;
	m->far_block = true;
	m->block = *b;
	uint32_t ms;
	if (rtcp_rtt_ms(rtcp_ntp_mid32(rtcp_ntp_from_unix_us(now_us)), b->lsr, b->dlsr, &ms)) {
		m->have_rtt = true;
		m->rtt_ms = ms;
	}
}

static void on_rtp(struct ua_media *m, const uint8_t *p, size_t n, const struct net_addr *from)
{
	struct rtp_hdr h;
	if (rtp_parse(&h, p, n)) {
		m->bad++;
		return;
	}
	if (m->rs.init && h.ssrc != m->rs.ssrc) {
		m->strays++; /* one source per call: the first one */
		return;
	}
	uint32_t arrival = (uint32_t)((time_mono_us() - m->start_us) * RTP_RATE / 1000000u);
	rtp_recv_update(&m->rs, h.ssrc, h.seq, h.ts, arrival);
	m->recv_packets++;
	m->recv_bytes += h.payload_len;
	if (m->rec && (h.pt == RTP_PT_PCMU || h.pt == RTP_PT_PCMA) &&
	    h.payload_len <= RTP_FRAME_SAMPLES * 3 &&
	    m->rec_samples + h.payload_len <= UAM_RECORD_MAX) {
		/* in arrival order; what was lost is simply not there */
		int16_t pcm[RTP_FRAME_SAMPLES * 3];
		uint8_t le[RTP_FRAME_SAMPLES * 3 * 2];
		rtp_g711_decode(h.pt, p + h.payload_off, h.payload_len, pcm);
		for (size_t i = 0; i < h.payload_len; i++) {
			le[2 * i] = (uint8_t)((uint16_t)pcm[i] & 0xff);
			le[2 * i + 1] = (uint8_t)((uint16_t)pcm[i] >> 8);
		}
		if (fwrite(le, 2, h.payload_len, m->rec) == h.payload_len)
			m->rec_samples += h.payload_len;
	}
	if (!m->have_src) {
		m->have_src = true;
		m->src = *from;
	}
}

/* ---- --stun ---- */

static void stun_send(struct ua_media *m, unsigned i)
{
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin(&e, &b, STUN_METHOD_BINDING, STUN_CLASS_REQUEST, m->stun.tid[i]);
	stun_enc_fingerprint(&e);
	if (stun_enc_end(&e) == 0) {
		const struct net_addr *to = i == 2 ? &m->stun.other : &m->stun.server;
		sendto(i == 1 ? m->fd_rtcp : m->fd_rtp, b.data, b.len, 0, &to->u.sa,
		       net_addr_len(to));
	}
	buf_free(&b);
}

static void stun_finish(struct ua_media *m)
{
	struct uam_stun *st = &m->stun;
	if (st->done)
		return;
	st->done = true;
	st->active = false;
	timer_cancel(&st->t);
	if (st->got[0]) {
		m->stun_ok = true;
		net_addr_ip_fmt(&st->mapped[0], m->sdp_ip, sizeof m->sdp_ip);
		m->sdp_rtp_port = net_addr_port(&st->mapped[0]);
		/* an RTCP socket that got no answer: RTP + 1 is the best guess */
		m->sdp_rtcp_port =
		    st->got[1] ? net_addr_port(&st->mapped[1]) : (uint16_t)(m->sdp_rtp_port + 1);
		m->stun_varies = st->got[2] && !net_addr_eq(&st->mapped[2], &st->mapped[0]);
	}
	st->h(m, st->arg);
}

/* RFC 8489 6.2.1: sent at 0, 0.5, 1.5 s; given up at 3.5 s (a call waits) */
static void stun_due(void *arg)
{
	struct ua_media *m = arg;
	struct uam_stun *st = &m->stun;
	if (++st->tries > 3) {
		stun_finish(m);
		return;
	}
	for (unsigned i = 0; i < 3; i++)
		if (!st->got[i] && (i < 2 || (st->has_other && st->got[0])))
			stun_send(m, i);
	timer_start(m->loop, &st->t, st->tries == 3 ? 2000 : 500u << (st->tries - 1), stun_due, m);
}

void uam_stun_start(struct ua_media *m, const struct net_addr *server, uam_stun_h *h, void *arg)
{
	struct uam_stun *st = &m->stun;
	memset(st, 0, sizeof *st);
	st->active = true;
	st->server = *server;
	st->h = h;
	st->arg = arg;
	for (unsigned i = 0; i < 3; i++)
		rand_bytes(st->tid[i], sizeof st->tid[i]);
	stun_due(m);
}

static void on_stun(struct ua_media *m, int fd, const uint8_t *p, size_t n,
		    const struct net_addr *from)
{
	struct uam_stun *st = &m->stun;
	struct stun_msg s;
	if (stun_msg_decode(&s, p, n) || s.classic || s.method != STUN_METHOD_BINDING ||
	    s.cls != STUN_CLASS_SUCCESS || (s.fp >= 0 && stun_msg_check_fingerprint(&s)))
		return;
	for (unsigned i = 0; i < 3; i++) {
		const struct net_addr *srv = i == 2 ? &st->other : &st->server;
		if (st->got[i] || memcmp(s.tid, st->tid[i], STUN_TID_LEN) != 0 ||
		    (i == 1) != (fd == m->fd_rtcp) || !net_addr_eq(from, srv))
			continue;
		struct net_addr mapped;
		memset(&mapped, 0, sizeof mapped);
		if (stun_msg_addr(&s, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped.u.ss) &&
		    stun_msg_addr(&s, STUN_ATTR_MAPPED_ADDRESS, &mapped.u.ss))
			return;
		st->got[i] = true;
		st->mapped[i] = mapped;
		if (i == 0) {
			struct net_addr other;
			memset(&other, 0, sizeof other);
			if (stun_msg_addr(&s, STUN_ATTR_OTHER_ADDRESS, &other.u.ss) == 0 &&
			    net_addr_family(&other) == net_addr_family(from) &&
			    !net_addr_eq(&other, from)) {
				st->other = other;
				st->has_other = true;
				stun_send(m, 2);
			}
		}
		if (st->got[0] && st->got[1] && (!st->has_other || st->got[2]))
			stun_finish(m);
		return;
	}
}

void uam_stun_describe(const struct ua_media *m, char *out, size_t cap)
{
	const struct uam_stun *st = &m->stun;
	char a[NET_ADDR_STRLEN], b[NET_ADDR_STRLEN], c[NET_ADDR_STRLEN];
	if (!m->stun_ok) {
		snprintf(out, cap, "stun: no answer from %s in 3.5 s: the SDP announces %s:%u",
			 net_addr_fmt(&st->server, a, sizeof a), m->local_ip, m->rtp_port);
		return;
	}
	int n = snprintf(out, cap, "stun: RTP socket %s:%u maps to %s (RTCP :%u)", m->local_ip,
			 m->rtp_port, net_addr_fmt(&st->mapped[0], a, sizeof a), m->sdp_rtcp_port);
	if (n < 0 || (size_t)n >= cap)
		return;
	if (m->stun_varies)
		snprintf(out + n, cap - (size_t)n,
			 "; to the other address %s it maps to %s: a symmetric NAT",
			 net_addr_fmt(&st->other, b, sizeof b),
			 net_addr_fmt(&st->mapped[2], c, sizeof c));
	else if (st->got[2])
		snprintf(out + n, cap - (size_t)n, "; the same to the other address %s",
			 net_addr_fmt(&st->other, b, sizeof b));
}

static void on_rx(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct ua_media *m = arg;
	for (int k = 0; k < 64; k++) {
		uint8_t p[1500];
		struct net_addr from;
		memset(&from, 0, sizeof from);
		socklen_t sl = sizeof from.u.ss;
		ssize_t n = recvfrom(fd, p, sizeof p, 0, &from.u.sa, &sl);
		if (n < 0)
			return;
		if (m->turn) {
			/* only the TURN server's datagrams; media comes out of them */
			struct net_addr peer;
			const uint8_t *d;
			size_t dl;
			int err = uam_turn_input(m, fd, p, (size_t)n, &from, &peer, &d, &dl);
			if (err) {
				if (err == EPERM || err == EBADMSG)
					m->bad++;
				continue;
			}
			if (!m->running || dl > sizeof p)
				continue;
			memmove(p, d, dl);
			n = (ssize_t)dl;
			from = peer;
		}
		if (m->stun.active && rtp_demux(p, (size_t)n) == RTP_KIND_STUN) {
			on_stun(m, fd, p, (size_t)n, &from);
			continue;
		}
		if (!m->running)
			continue; /* before the far end's SDP, or after the call: dropped */
		switch (rtp_demux(p, (size_t)n)) {
		case RTP_KIND_RTP:
			if (fd == m->fd_rtp)
				on_rtp(m, p, (size_t)n, &from);
			else
				m->bad++;
			break;
		case RTP_KIND_RTCP:
			on_rtcp(m, p, (size_t)n);
			break;
		default:
			m->bad++;
			break;
		}
	}
}

static void rec_close(struct ua_media *m)
{
	if (!m->rec)
		return;
	uint8_t hdr[RTP_WAV_HDR_LEN];
	rtp_wav_header(hdr, (uint32_t)m->rec_samples);
	if (fseek(m->rec, 0, SEEK_SET) == 0)
		fwrite(hdr, 1, sizeof hdr, m->rec);
	fclose(m->rec);
	m->rec = NULL;
}

static int rec_open(struct ua_media *m, const char *path)
{
	m->rec = fopen(path, "wbe");
	if (!m->rec)
		return errno ? errno : EIO;
	uint8_t hdr[RTP_WAV_HDR_LEN];
	rtp_wav_header(hdr, 0); /* the count is written at the end */
	if (fwrite(hdr, 1, sizeof hdr, m->rec) != sizeof hdr) {
		fclose(m->rec);
		m->rec = NULL;
		return EIO;
	}
	return 0;
}

int uam_start(struct ua_media *m, const struct ua_sdp_remote *r, const struct ua_conf *conf)
{
	if (m->running)
		return 0;
	if (net_addr_from_host(slice_cstr(r->null_addr ? m->local_ip : r->addr), r->port,
			       &m->to_rtp))
		return EINVAL;
	if (conf->record && conf->record[0]) {
		int err = rec_open(m, conf->record);
		if (err)
			return err;
	}
	m->wav = conf->wav;
	m->wav_n = conf->wav_n;
	m->to_rtcp = m->to_rtp;
	net_addr_set_port(&m->to_rtcp, r->rtcp_port);
	m->mux = r->rtcp_mux;
	m->pt = r->pt;
	snprintf(m->remote_announced, sizeof m->remote_announced, "%s",
		 net_addr_fmt(&m->to_rtp, (char[NET_ADDR_STRLEN]){0}, NET_ADDR_STRLEN));
	m->remote_private = net_addr_is_private(&m->to_rtp);
	rtp_tone_init(&m->tone, conf->tone_hz ? conf->tone_hz : 440, 8000);
	if (m->turn)
		uam_turn_peers(m);
	m->send_rtp = ua_sdp_dir_we_send(r->dir);
	m->far_sends = ua_sdp_dir_they_send(r->dir);
	m->running = true;
	m->start_us = time_mono_us();
	if (!m->far_sends)
		m->held_since_us = m->start_us;
	send_due(m);
	timer_start(m->loop, &m->t_rtcp, UAM_RTCP_FIRST_MS, rtcp_due, m);
	return 0;
}

void uam_update(struct ua_media *m, const struct ua_sdp_remote *r, enum sdp_dir ours)
{
	struct net_addr to;
	if (!r->null_addr && net_addr_from_host(slice_cstr(r->addr), r->port, &to) == 0) {
		m->to_rtp = to;
		m->to_rtcp = to;
		net_addr_set_port(&m->to_rtcp, r->rtcp_port);
		m->mux = r->rtcp_mux;
		m->pt = r->pt;
		net_addr_fmt(&m->to_rtp, m->remote_announced, sizeof m->remote_announced);
		m->remote_private = net_addr_is_private(&m->to_rtp);
		if (m->turn)
			uam_turn_peers(m);
	}
	/* both sides' words count: theirs, and what we wrote (RFC 3264 6.1) */
	bool send =
	    ua_sdp_dir_we_send(r->dir) && ours != SDP_DIR_RECVONLY && ours != SDP_DIR_INACTIVE;
	bool recv =
	    ua_sdp_dir_they_send(r->dir) && ours != SDP_DIR_SENDONLY && ours != SDP_DIR_INACTIVE;
	uint64_t now = time_mono_us();
	if (m->far_sends && !recv)
		m->held_since_us = now;
	else if (!m->far_sends && recv && m->held_since_us)
		m->held_ms += (now - m->held_since_us) / 1000;
	m->far_sends = recv;
	m->send_rtp = send;
}

void uam_stop(struct ua_media *m)
{
	if (!m->running)
		return;
	timer_cancel(&m->t_send);
	timer_cancel(&m->t_rtcp);
	send_rtcp(m, true);
	m->running = false;
	if (!m->far_sends && m->held_since_us)
		m->held_ms += (time_mono_us() - m->held_since_us) / 1000;
	m->held_since_us = 0;
	rec_close(m);
}

void uam_close(struct ua_media *m)
{
	if (!m->loop)
		return; /* never opened */
	timer_cancel(&m->t_send);
	timer_cancel(&m->t_rtcp);
	m->running = false;
	rec_close(m);
	timer_cancel(&m->stun.t);
	m->stun.active = false;
	uam_turn_close(m); /* before the sockets close: it sends the deallocation */
	int *fds[] = {&m->fd_rtp, &m->fd_rtcp};
	for (size_t i = 0; i < 2; i++)
		if (*fds[i] >= 0) {
			loop_fd_del(m->loop, *fds[i]);
			close(*fds[i]);
			*fds[i] = -1;
		}
}

void uam_verdict(const struct ua_media *m, bool echo, struct rtp_verdict_in *in)
{
	memset(in, 0, sizeof *in);
	in->echo = echo;
	/* an echo returns nothing while the far end is not to send (we hold
	 * it): those packets are not missing (the verdict's held interval) */
	in->sent_packets = echo ? m->sent_packets - m->sent_unanswered : m->sent_packets;
	in->sent_bytes =
	    echo ? m->sent_bytes - m->sent_unanswered * RTP_FRAME_SAMPLES : m->sent_bytes;
	in->far_rtcp = m->far_rtcp;
	in->far_block = m->far_block;
	if (m->far_block) {
		/* its extended highest sequence, from our first one, less its losses */
		int64_t span = (int64_t)m->block.ext_max_seq - (int64_t)m->seq0 + 1;
		int64_t got = span - m->block.cum_lost;
		in->far_received = got > 0 ? (uint64_t)got : 0;
		in->far_lost = m->block.cum_lost;
		in->far_jitter_ms = (double)m->block.jitter * 1000.0 / RTP_RATE;
	}
	in->recv_packets = m->recv_packets;
	in->recv_bytes = m->recv_bytes;
	in->lost = m->rs.init ? rtp_recv_lost(&m->rs) : 0;
	in->jitter_ms = m->rs.init ? (double)rtp_recv_jitter(&m->rs) * 1000.0 / RTP_RATE : 0;
	in->strays = m->strays;
	in->have_rtt = m->have_rtt;
	in->rtt_ms = m->rtt_ms;
	const struct net_addr *ours = m->stun_ok ? &m->stun.mapped[0] : &m->local;
	if (uam_turn_relayed(m))
		ours = uam_turn_relayed(m);
	net_addr_fmt(ours, in->local_announced, sizeof in->local_announced);
	in->local_private = net_addr_is_private(ours);
	in->local_stun = m->stun_ok;
	snprintf(in->remote_announced, sizeof in->remote_announced, "%s", m->remote_announced);
	in->remote_private = m->remote_private;
	if (m->have_src)
		net_addr_fmt(&m->src, in->remote_source, sizeof in->remote_source);
}
