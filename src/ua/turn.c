/* ua: a call's media through a TURN allocation (--turn): one allocation per media socket,
 * the relayed addresses in the SDP, channels to the far end, RTP and RTCP over them.
 *
 * The RTP socket and the RTCP socket each allocate (each is its own 5-tuple
 * on the server); the SDP names the two relayed addresses. Once the far
 * end's SDP is known, a channel is bound to its RTP address (and RTCP's,
 * without rtcp-mux), which installs the permission too; until the bind is
 * answered, packets go as Send indications. Media from a permitted IP but
 * another port than its SDP said (a NAT that moved the port) gets a channel
 * of its own, and our packets follow it there (symmetric RTP, RFC 4961).
 *
 * Who can reach us: with --turn only the TURN server's datagrams are read
 * (anything else is dropped and counted as bad), and the server relays only
 * from IPs we permitted. At the end each allocation is released by a
 * Refresh with LIFETIME 0, sent once (a lost one expires at its lifetime).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stun/stun.h"
#include "ua_int.h"

/* One allocation: of the RTP socket (0) or the RTCP one (1). */
struct uam_turn_alloc {
	struct uam_turn *tu;
	unsigned idx;
	struct turnc *c;
	struct timer t;
	bool ready, failed;
};

struct uam_turn {
	struct ua_media *m;
	struct net_addr server;
	struct uam_turn_alloc a[2];
	uam_stun_h *h; /* told once: both allocated, or one failed */
	void *arg;     /* the call (struct ua_call) */
	bool told;
	struct timer t_tell; /* h runs from here, not inside a turnc callback */
	bool auth_refused;
	char error[256];
	uint64_t t0_ms, alloc_ms;
};

static int fd_of(const struct uam_turn_alloc *a)
{
	return a->idx == 0 ? a->tu->m->fd_rtp : a->tu->m->fd_rtcp;
}

static void on_send(const void *p, size_t len, void *arg)
{
	struct uam_turn_alloc *a = arg;
	sendto(fd_of(a), p, len, 0, &a->tu->server.u.sa, net_addr_len(&a->tu->server));
}

static void tick(void *arg);

static void rearm(struct uam_turn_alloc *a)
{
	uint64_t next = turnc_next_ms(a->c);
	if (next == UINT64_MAX) {
		timer_cancel(&a->t);
		return;
	}
	uint64_t now = time_mono_ms();
	timer_start(a->tu->m->loop, &a->t, next > now ? next - now : 1, tick, a);
}

static void tick(void *arg)
{
	struct uam_turn_alloc *a = arg;
	turnc_tick(a->c, time_mono_ms());
	rearm(a);
}

static void tell_now(void *arg)
{
	struct uam_turn *tu = arg;
	struct ua_media *m = tu->m;
	bool ok = tu->a[0].ready && tu->a[1].ready;
	if (ok) {
		tu->alloc_ms = time_mono_ms() - tu->t0_ms;
		const struct net_addr *r0 = turnc_relayed(tu->a[0].c);
		net_addr_ip_fmt(r0, m->sdp_ip, sizeof m->sdp_ip);
		m->sdp_rtp_port = net_addr_port(r0);
		m->sdp_rtcp_port = net_addr_port(turnc_relayed(tu->a[1].c));
	}
	tu->h(m, tu->arg); /* may close the media, and free tu with it */
}

static void tell(struct uam_turn *tu)
{
	if (tu->told)
		return;
	bool ok = tu->a[0].ready && tu->a[1].ready;
	if (!ok && !tu->a[0].failed && !tu->a[1].failed)
		return;
	tu->told = true;
	timer_start(tu->m->loop, &tu->t_tell, 0, tell_now, tu);
}

static void on_event(const struct turnc_event *ev, void *arg)
{
	struct uam_turn_alloc *a = arg;
	struct uam_turn *tu = a->tu;
	char what[400], p[NET_ADDR_STRLEN];
	switch (ev->kind) {
	case TURNC_EV_ALLOCATED:
		a->ready = true;
		tell(tu);
		break;
	case TURNC_EV_FAILED:
		a->failed = true;
		tu->auth_refused |= ev->auth;
		if (!tu->error[0])
			snprintf(tu->error, sizeof tu->error, "turn: %s allocation: %s",
				 a->idx ? "RTCP" : "RTP", ev->detail ? ev->detail : "failed");
		if (tu->told) /* mid-call: the media stops going through */
			uac_emit(tu->arg, 0, tu->error);
		tell(tu);
		break;
	case TURNC_EV_ERROR:
		snprintf(what, sizeof what, "turn: %s for %s refused: %s",
			 ev->method == STUN_METHOD_CHANNEL_BIND ? "channel" : "permission",
			 ev->peer ? net_addr_fmt(ev->peer, p, sizeof p) : "?",
			 ev->detail ? ev->detail : "");
		uac_emit(tu->arg, 0, what);
		break;
	case TURNC_EV_BOUND:
		snprintf(what, sizeof what, "turn: channel 0x%04x bound to %s on the %s allocation",
			 ev->channel, net_addr_fmt(ev->peer, p, sizeof p), a->idx ? "RTCP" : "RTP");
		uac_emit(tu->arg, 0, what);
		break;
	case TURNC_EV_PERMITTED:
	case TURNC_EV_REFRESHED:
	case TURNC_EV_CLOSED:
		break;
	}
}

int uam_turn_start(struct ua_media *m, const struct ua_conf *conf, uam_stun_h *h, void *arg)
{
	struct uam_turn *tu = calloc(1, sizeof *tu);
	if (!tu)
		return ENOMEM;
	tu->m = m;
	tu->server = conf->turn;
	tu->h = h;
	tu->arg = arg;
	tu->t0_ms = time_mono_ms();
	timer_init(&tu->t_tell);
	m->turn = tu;
	for (unsigned i = 0; i < 2; i++) {
		struct uam_turn_alloc *a = &tu->a[i];
		a->tu = tu;
		a->idx = i;
		timer_init(&a->t);
		int err = turnc_alloc(&a->c, &conf->turn_cred, on_send, on_event, a);
		if (err) {
			uam_turn_close(m);
			return err;
		}
	}
	for (unsigned i = 0; i < 2; i++) {
		turnc_start(tu->a[i].c, time_mono_ms());
		rearm(&tu->a[i]);
	}
	return 0;
}

bool uam_turn_ok(const struct ua_media *m)
{
	return m->turn && m->turn->a[0].ready && m->turn->a[1].ready;
}

bool uam_turn_auth_refused(const struct ua_media *m)
{
	return m->turn && m->turn->auth_refused;
}

void uam_turn_describe(const struct ua_media *m, char *out, size_t cap)
{
	const struct uam_turn *tu = m->turn;
	char s[NET_ADDR_STRLEN], r0[NET_ADDR_STRLEN], r1[NET_ADDR_STRLEN], mp[NET_ADDR_STRLEN];
	if (!uam_turn_ok(m)) {
		snprintf(out, cap, "%s", tu && tu->error[0] ? tu->error : "turn: no allocation");
		return;
	}
	snprintf(out, cap,
		 "turn: allocated on %s in %llu ms as %s: relayed %s (RTP), %s (RTCP), mapped %s",
		 net_addr_fmt(&tu->server, s, sizeof s), (unsigned long long)tu->alloc_ms,
		 turnc_username(tu->a[0].c), net_addr_fmt(turnc_relayed(tu->a[0].c), r0, sizeof r0),
		 net_addr_fmt(turnc_relayed(tu->a[1].c), r1, sizeof r1),
		 net_addr_fmt(turnc_mapped(tu->a[0].c), mp, sizeof mp));
}

/* Channels to where the far end's SDP says (the permissions come with them). */
void uam_turn_peers(struct ua_media *m)
{
	struct uam_turn *tu = m->turn;
	if (!uam_turn_ok(m))
		return;
	uint64_t now = time_mono_ms();
	turnc_bind(tu->a[0].c, &m->to_rtp, now);
	if (!m->mux)
		turnc_bind(tu->a[1].c, &m->to_rtcp, now);
	rearm(&tu->a[0]);
	rearm(&tu->a[1]);
}

int uam_turn_send(struct ua_media *m, int fd, const void *p, size_t len, const struct net_addr *to)
{
	struct uam_turn_alloc *a = &m->turn->a[fd == m->fd_rtp ? 0 : 1];
	int err = turnc_send(a->c, to, p, len);
	if (err == ENOENT && turnc_bind(a->c, to, time_mono_ms()) == 0) {
		rearm(a);
		err = turnc_send(a->c, to, p, len);
	}
	return err;
}

int uam_turn_input(struct ua_media *m, int fd, const uint8_t *p, size_t len,
		   const struct net_addr *from, struct net_addr *peer, const uint8_t **data,
		   size_t *dlen)
{
	struct uam_turn *tu = m->turn;
	if (!net_addr_eq(from, &tu->server))
		return EPERM;
	struct uam_turn_alloc *a = &tu->a[fd == m->fd_rtp ? 0 : 1];
	struct turnc_data d;
	int rc = turnc_input(a->c, p, len, time_mono_ms(), &d);
	rearm(a);
	if (rc != 1)
		return rc ? rc : ENODATA;
	*peer = d.peer;
	*data = d.data;
	*dlen = d.len;
	/* media from a permitted IP but not where we send (its NAT moved the
	 * port): a channel to it, and our packets follow (RFC 4961) */
	if (m->running && a->idx == 0 && !net_addr_eq(&d.peer, &m->to_rtp) &&
	    rtp_demux(d.data, d.len) == RTP_KIND_RTP) {
		char was[NET_ADDR_STRLEN], now_s[NET_ADDR_STRLEN], what[300];
		snprintf(what, sizeof what, "turn: media comes from %s, not %s: sending there",
			 net_addr_fmt(&d.peer, now_s, sizeof now_s),
			 net_addr_fmt(&m->to_rtp, was, sizeof was));
		uac_emit(tu->arg, 0, what);
		m->to_rtp = d.peer;
		if (m->mux)
			m->to_rtcp = d.peer;
		turnc_bind(a->c, &d.peer, time_mono_ms());
		rearm(a);
	}
	return 0;
}

const struct net_addr *uam_turn_relayed(const struct ua_media *m)
{
	return uam_turn_ok(m) ? turnc_relayed(m->turn->a[0].c) : NULL;
}

void uam_turn_close(struct ua_media *m)
{
	struct uam_turn *tu = m->turn;
	if (!tu)
		return;
	timer_cancel(&tu->t_tell);
	for (unsigned i = 0; i < 2; i++) {
		struct uam_turn_alloc *a = &tu->a[i];
		timer_cancel(&a->t);
		if (a->c) {
			/* RFC 8656 7.3: sent once while the socket is still open */
			turnc_close(a->c, time_mono_ms());
			turnc_free(a->c);
		}
	}
	free(tu);
	m->turn = NULL;
}
