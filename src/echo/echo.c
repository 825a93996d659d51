/* echo: [echo] config, the echo's SIP socket, and its UAS: INVITE answered with SDP, ACK, BYE both
 * ways, the call's bounds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_int.h"
#include "sdp/sdp.h"

const struct conf_key echo_conf_keys[] = {
    {"echo", "user", CONF_STR, "echo", 0, 0, NULL,
     "user part that reaches the echo service in each of our domains (sip:echo@domain); the "
     "service is on only when the config has an [echo] section"},
    {"echo", "max_calls", CONF_INT, "16", 1, 1000, NULL,
     "echo calls at once; more get 486 (echo_calls_refused_total{reason=\"busy\"})"},
    {"echo", "max_calls_per_source", CONF_INT, "2", 1, 1000, NULL,
     "echo calls at once from one caller source (IPv4 address, IPv6 /64); more get 486 "
     "(echo_calls_refused_total{reason=\"source\"})"},
    {"echo", "max_duration", CONF_INT, "60", 1, 3600, NULL,
     "seconds after which the echo hangs up with BYE"},
    {"echo", "address", CONF_STR, "", 0, 0, NULL,
     "IP the echo's media binds to and its SDP names; empty = the SIP UDP listener's, or for a "
     "wildcard the source IP of the default route"},
    {"echo", "ports", CONF_STR, "29000-29999", 0, 0, NULL,
     "UDP port range of the echo's media: RTP on even ports, RTCP on the next odd one"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static struct metric m_calls = {.name = "echo_calls_total", .help = "calls the echo answered"};
static struct metric m_active = {.name = "echo_calls", .help = "echo calls up now", .gauge = true};
static struct metric m_busy = {
    .name = "echo_calls_refused_total", .help = "echo calls refused", .labels = "reason=\"busy\""};
static struct metric m_source = {.name = "echo_calls_refused_total",
				 .help = "echo calls refused",
				 .labels = "reason=\"source\""};
static struct metric m_media = {
    .name = "echo_calls_refused_total", .help = "echo calls refused", .labels = "reason=\"media\""};
static struct metric m_by_bye = {
    .name = "echo_calls_ended_total", .help = "echo calls ended", .labels = "by=\"bye\""};
static struct metric m_by_limit = {
    .name = "echo_calls_ended_total", .help = "echo calls ended", .labels = "by=\"max_duration\""};
static struct metric m_by_noack = {
    .name = "echo_calls_ended_total", .help = "echo calls ended", .labels = "by=\"no_ack\""};
static struct metric m_foreign = {
    .name = "echo_sip_foreign_total",
    .help = "datagrams to the echo's SIP socket not from our own SIP listener, dropped"};

#define ALLOW_HDR "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"

/* ---- sending ---- */

/* A fresh random token of len-1 base64url characters (branches, tags). */
static void new_token(char *out, size_t len, const char *prefix)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t n = (size_t)snprintf(out, len, "%s", prefix);
	uint8_t r[32];
	rand_bytes(r, sizeof r);
	for (size_t i = 0; n + 1 < len && i < sizeof r; i++)
		out[n++] = b64[r[i] & 63];
	out[n] = '\0';
}

static void send_sip(struct echo *e, const struct net_addr *to, const void *p, size_t len)
{
	(void)sendto(e->sip_fd, p, len, MSG_DONTWAIT, &to->u.sa, net_addr_len(to));
}

static void reply(struct echo *e, const struct sip_msg *m, const struct net_addr *to,
		  uint16_t status, const char *reason, const char *tag, const char *extra)
{
	struct buf b;
	buf_init(&b);
	char fresh[24] = "";
	if (!tag && status > 100) /* a final answer carries a To tag (RFC 3261 8.2.6.2) */
		new_token(fresh, sizeof fresh, "");
	if (sip_build_response(&b, m, status, reason, SLICE_NULL, slice_cstr(tag ? tag : fresh),
			       extra) == 0)
		send_sip(e, to, b.data, b.len);
	buf_free(&b);
}

/* sip_build_response ends with an empty body; a 2xx with SDP swaps that tail. */
static int with_body(struct buf *b, const char *body)
{
	static const char tail[] = "Content-Length: 0\r\n\r\n";
	size_t tl = sizeof tail - 1;
	if (b->len < tl || memcmp(b->data + b->len - tl, tail, tl) != 0)
		return EINVAL;
	b->len -= tl;
	buf_printf(b, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
		   strlen(body), body);
	return b->failed ? ENOMEM : 0;
}

/* ---- calls ---- */

static struct echo_call *find_call(struct echo *e, struct slice call_id, struct slice from_tag)
{
	for (unsigned i = 0; i < e->max_calls; i++) {
		struct echo_call *c = &e->calls[i];
		if (c->state != ECHO_FREE && slice_eq(call_id, slice_cstr(c->call_id)) &&
		    slice_eq(from_tag, slice_cstr(c->from_tag)))
			return c;
	}
	return NULL;
}

static void call_free(struct echo_call *c)
{
	struct echo *e = c->e;
	timer_cancel(&c->t_sip);
	timer_cancel(&c->t_end);
	echo_media_close(e, c);
	buf_free(&c->resp);
	buf_free(&c->bye);
	c->state = ECHO_FREE;
	atomic_fetch_sub(&e->active, 1);
	metric_add(&m_active, -1);
}

static void retx_bye(void *arg);

/* RFC 3261 15: the echo hangs up: BYE along the route set, through the proxy. */
static void send_bye(struct echo_call *c)
{
	struct echo *e = c->e;
	echo_media_close(e, c); /* nothing more is echoed */
	timer_cancel(&c->t_end);
	c->state = ECHO_ENDING;
	char branch[32], host[NET_ADDR_STRLEN];
	new_token(branch, sizeof branch, SIP_BRANCH_MAGIC);
	net_addr_fmt(&e->sip_addr, host, sizeof host);
	buf_reset(&c->bye);
	buf_printf(&c->bye,
		   "BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n",
		   c->target, host, branch);
	if (c->route[0])
		buf_printf(&c->bye, "Route: %s\r\n", c->route);
	buf_printf(&c->bye,
		   "From: %s;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\n"
		   "Content-Length: 0\r\n\r\n",
		   c->to_hdr, c->to_tag, c->from_hdr, c->call_id);
	send_sip(e, &c->proxy, c->bye.data, c->bye.len);
	c->retx_ms = e->t1;
	c->sip_started_ms = loop_now_ms(e->loop);
	timer_start(e->loop, &c->t_sip, c->retx_ms, retx_bye, c);
}

static void retx_bye(void *arg)
{
	struct echo_call *c = arg;
	struct echo *e = c->e;
	if (loop_now_ms(e->loop) - c->sip_started_ms >= 64u * e->t1) {
		call_free(c); /* Timer F: gone either way */
		return;
	}
	send_sip(e, &c->proxy, c->bye.data, c->bye.len);
	c->retx_ms = MIN(c->retx_ms * 2, e->t2);
	timer_start(e->loop, &c->t_sip, c->retx_ms, retx_bye, c);
}

static void retx_ok(void *arg)
{
	struct echo_call *c = arg;
	struct echo *e = c->e;
	if (loop_now_ms(e->loop) - c->sip_started_ms >= 64u * e->t1) {
		/* RFC 3261 13.3.1.4: no ACK, so the dialog ends with a BYE */
		metric_inc(&m_by_noack);
		send_bye(c);
		return;
	}
	send_sip(e, &c->proxy, c->resp.data, c->resp.len);
	c->retx_ms = MIN(c->retx_ms * 2, e->t2);
	timer_start(e->loop, &c->t_sip, c->retx_ms, retx_ok, c);
}

static void on_max_duration(void *arg)
{
	struct echo_call *c = arg;
	metric_inc(&m_by_limit);
	timer_cancel(&c->t_sip);
	send_bye(c);
}

/* The caller's signalling source: the Via below the proxy's, with the
 * received the proxy wrote (RFC 3581). */
static int caller_source(const struct sip_msg *m, struct net_addr *out)
{
	size_t seen = 0;
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_VIA)
			continue;
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(m->hdrs[i].value, &pos, &v)) {
			if (seen++ == 0)
				continue;
			struct sip_via via;
			if (sip_via_parse(v, &via))
				return EBADMSG;
			return net_addr_from_host(via.received.l ? via.received : via.host, 0, out);
		}
	}
	return ENOENT;
}

/* The first audio stream we can take: RTP/AVP with PCMU or PCMA, in the
 * caller's order of preference. */
static const struct sdp_media *pick_audio(const struct sdp *s, uint8_t *pt)
{
	for (size_t i = 0; i < s->n_media; i++) {
		const struct sdp_media *md = &s->media[i];
		if (md->port == 0 || !slice_eq_cstr_nocase(md->type, "audio") ||
		    !slice_eq_cstr_nocase(md->proto, "RTP/AVP"))
			continue;
		struct slice rest = md->fmts, f;
		while (slice_next_item(&rest, ' ', &f)) {
			uint32_t v;
			if (slice_to_u32(f, 127, &v) == 0 &&
			    (v == RTP_PT_PCMU || v == RTP_PT_PCMA)) {
				*pt = (uint8_t)v;
				return md;
			}
		}
	}
	return NULL;
}

static void answer_sdp(struct echo *e, struct echo_call *c, enum sdp_dir offered, struct buf *b)
{
	const char *af = net_addr_family(&e->media_addr) == AF_INET6 ? "IP6" : "IP4";
	/* RFC 3264 6.1: the answer's direction mirrors the offer's */
	const char *dir = offered == SDP_DIR_SENDONLY	? "recvonly"
			  : offered == SDP_DIR_RECVONLY ? "sendonly"
			  : offered == SDP_DIR_INACTIVE ? "inactive"
							: "sendrecv";
	e->sess_version++;
	buf_printf(b,
		   "v=0\r\no=pinhole-echo %u %llu IN %s %s\r\ns=echo\r\nc=IN %s %s\r\nt=0 0\r\n"
		   "m=audio %u RTP/AVP %u\r\na=rtpmap:%u %s/8000\r\n",
		   c->ssrc, (unsigned long long)e->sess_version, af, e->media_ip, af, e->media_ip,
		   c->port, c->pt, c->pt, rtp_g711_name(c->pt));
	if (c->mux)
		buf_printf(b, "a=rtcp:%u\r\na=rtcp-mux\r\n", c->port);
	else
		buf_printf(b, "a=rtcp:%u\r\n", c->port + 1);
	buf_printf(b, "a=%s\r\n", dir);
}

static struct slice sdp_body(const struct sip_msg *m)
{
	const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTENT_TYPE, 0);
	if (!m->body.l || !ct)
		return SLICE_NULL;
	struct slice v = slice_trim(ct->value);
	v = slice_trim((struct slice){v.p, slice_find(v, ';')});
	return slice_eq_cstr_nocase(v, "application/sdp") ? m->body : SLICE_NULL;
}

/* Builds and sends the 2xx (kept for retransmission) for an INVITE or re-INVITE. */
static int send_ok(struct echo *e, struct echo_call *c, const struct sip_msg *m,
		   enum sdp_dir offered)
{
	char extra[2048 + 256];
	size_t n = 0;
	char host[NET_ADDR_STRLEN];
	n += (size_t)snprintf(extra, sizeof extra, "Contact: <sip:%s@%s>\r\n%s", e->user,
			      net_addr_fmt(&e->sip_addr, host, sizeof host), ALLOW_HDR);
	/* RFC 3261 12.1.1: the Record-Route comes back in the 2xx */
	for (size_t i = 0; i < m->n_hdrs && n < sizeof extra; i++)
		if (m->hdrs[i].id == SIP_HDR_RECORD_ROUTE)
			n += (size_t)snprintf(extra + n, sizeof extra - n, "Record-Route: %.*s\r\n",
					      (int)m->hdrs[i].value.l, m->hdrs[i].value.p);
	if (n >= sizeof extra)
		return E2BIG;
	struct buf body;
	buf_init(&body);
	answer_sdp(e, c, offered, &body);
	buf_append(&body, "", 1);
	buf_reset(&c->resp);
	int err = body.failed ? ENOMEM
			      : sip_build_response(&c->resp, m, 200, "OK", SLICE_NULL,
						   slice_cstr(c->to_tag), extra);
	if (!err)
		err = with_body(&c->resp, body.data);
	buf_free(&body);
	if (err)
		return err;
	send_sip(e, &c->proxy, c->resp.data, c->resp.len);
	c->state = ECHO_ANSWERED;
	c->retx_ms = e->t1;
	c->sip_started_ms = loop_now_ms(e->loop);
	timer_start(e->loop, &c->t_sip, c->retx_ms, retx_ok, c);
	return 0;
}

static unsigned calls_from(struct echo *e, const struct net_src_key *k)
{
	unsigned n = 0;
	for (unsigned i = 0; i < e->max_calls; i++)
		n += e->calls[i].state != ECHO_FREE && e->calls[i].src.hi == k->hi &&
		     e->calls[i].src.lo == k->lo;
	return n;
}

static bool copy_hdr(const struct sip_msg *m, enum sip_hdr_id id, char *out, size_t cap)
{
	const struct sip_hdr *h = sip_msg_hdr(m, id, 0);
	if (!h || h->value.l >= cap)
		return false;
	slice_to_cstr(h->value, out, cap);
	return true;
}

/* The route set: every Record-Route value, in order (RFC 3261 12.1.1). */
static bool copy_route(const struct sip_msg *m, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < m->n_hdrs; i++) {
		if (m->hdrs[i].id != SIP_HDR_RECORD_ROUTE)
			continue;
		int k = snprintf(out + n, cap - n, "%s%.*s", n ? ", " : "", (int)m->hdrs[i].value.l,
				 m->hdrs[i].value.p);
		if (k < 0 || (size_t)k >= cap - n)
			return false;
		n += (size_t)k;
	}
	return true;
}

static void on_invite(struct echo *e, const struct sip_msg *m, const struct net_addr *from)
{
	struct echo_call *c = find_call(e, m->call_id, m->from_tag);
	if (m->to_tag.l) {
		/* re-INVITE (hold, resume): same port, direction mirrored */
		if (!c || !slice_eq(m->to_tag, slice_cstr(c->to_tag)) || c->state == ECHO_ENDING) {
			reply(e, m, from, 481, NULL, NULL, NULL);
			return;
		}
		struct sdp s;
		struct slice body = sdp_body(m);
		uint8_t pt = c->pt;
		const struct sdp_media *md = NULL;
		if (body.l && (sdp_parse(&s, body) || !(md = pick_audio(&s, &pt)) || pt != c->pt)) {
			reply(e, m, from, 488, NULL, NULL, NULL);
			return;
		}
		enum sdp_dir dir = md ? md->dir : SDP_DIR_SENDRECV;
		c->send_ok = dir == SDP_DIR_SENDRECV || dir == SDP_DIR_RECVONLY;
		timer_cancel(&c->t_sip);
		send_ok(e, c, m, dir);
		return;
	}
	if (c) { /* a retransmission: the same answer */
		if (c->state == ECHO_ANSWERED || c->state == ECHO_CONFIRMED)
			send_sip(e, from, c->resp.data, c->resp.len);
		return;
	}
	struct net_addr src;
	if (caller_source(m, &src)) {
		reply(e, m, from, 400, "Bad Request (No Caller Via)", NULL, NULL);
		return;
	}
	struct net_src_key key;
	net_addr_src_key(&src, &key);
	struct echo_call *slot = NULL;
	for (unsigned i = 0; i < e->max_calls && !slot; i++)
		if (e->calls[i].state == ECHO_FREE)
			slot = &e->calls[i];
	if (!slot) {
		metric_inc(&m_busy);
		reply(e, m, from, 486, "Busy Here (Echo Full)", NULL, NULL);
		return;
	}
	if (calls_from(e, &key) >= e->max_per_source) {
		metric_inc(&m_source);
		reply(e, m, from, 486, "Busy Here (Too Many Echo Calls From You)", NULL, NULL);
		return;
	}
	struct sdp s;
	struct slice body = sdp_body(m);
	uint8_t pt = 0;
	const struct sdp_media *md = NULL;
	if (!body.l || sdp_parse(&s, body) || !(md = pick_audio(&s, &pt))) {
		metric_inc(&m_media);
		reply(e, m, from, 488, "Not Acceptable Here (PCMU or PCMA over RTP/AVP)", NULL,
		      ALLOW_HDR);
		return;
	}
	c = slot;
	struct echo_call fresh = {.state = ECHO_ANSWERED, .e = e, .proxy = *from, .src = key};
	*c = fresh;
	timer_init(&c->t_sip);
	timer_init(&c->t_end);
	buf_init(&c->resp);
	buf_init(&c->bye);
	c->rtp.fd = c->rtcp_sock.fd = -1;
	atomic_fetch_add(&e->active, 1);
	metric_add(&m_active, 1);
	if (m->call_id.l >= sizeof c->call_id || m->from_tag.l >= sizeof c->from_tag ||
	    !copy_hdr(m, SIP_HDR_FROM, c->from_hdr, sizeof c->from_hdr) ||
	    !copy_hdr(m, SIP_HDR_TO, c->to_hdr, sizeof c->to_hdr) ||
	    !copy_route(m, c->route, sizeof c->route)) {
		call_free(c);
		reply(e, m, from, 500, "Server Internal Error (Headers Too Long)", NULL, NULL);
		return;
	}
	const struct sip_hdr *ch = sip_msg_hdr(m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr contact;
	if (!ch || sip_nameaddr_parse(ch->value, &contact) || contact.star ||
	    contact.uri_s.l >= sizeof c->target) {
		call_free(c);
		reply(e, m, from, 400, "Bad Request (Contact)", NULL, NULL);
		return;
	}
	slice_to_cstr(contact.uri_s, c->target, sizeof c->target);
	slice_to_cstr(m->call_id, c->call_id, sizeof c->call_id);
	slice_to_cstr(m->from_tag, c->from_tag, sizeof c->from_tag);
	new_token(c->to_tag, sizeof c->to_tag, "");
	c->pt = pt;
	c->mux = md->rtcp_mux;
	c->send_ok = md->dir == SDP_DIR_SENDRECV || md->dir == SDP_DIR_RECVONLY;
	c->allow[0] = src;
	if (md->conn.present)
		(void)net_addr_from_host(md->conn.addr, 0, &c->allow[1]);
	if (echo_media_open(e, c)) {
		call_free(c);
		metric_inc(&m_media);
		reply(e, m, from, 503, "Service Unavailable (No Echo Ports)", NULL, NULL);
		return;
	}
	if (send_ok(e, c, m, md->dir)) {
		call_free(c);
		reply(e, m, from, 500, NULL, NULL, NULL);
		return;
	}
	metric_inc(&m_calls);
	timer_start(e->loop, &c->t_end, e->max_duration_ms, on_max_duration, c);
}

static void on_request(struct echo *e, const struct sip_msg *m, const struct net_addr *from)
{
	switch (m->method) {
	case SIP_INVITE:
		on_invite(e, m, from);
		return;
	case SIP_ACK: {
		struct echo_call *c = find_call(e, m->call_id, m->from_tag);
		if (c && c->state == ECHO_ANSWERED && slice_eq(m->to_tag, slice_cstr(c->to_tag))) {
			c->state = ECHO_CONFIRMED;
			c->acked = true;
			timer_cancel(&c->t_sip);
		}
		return; /* never answered */
	}
	case SIP_BYE: {
		struct echo_call *c = find_call(e, m->call_id, m->from_tag);
		if (!c || !slice_eq(m->to_tag, slice_cstr(c->to_tag))) {
			reply(e, m, from, 481, NULL, NULL, NULL);
			return;
		}
		reply(e, m, from, 200, NULL, NULL, NULL);
		if (c->state != ECHO_ENDING)
			metric_inc(&m_by_bye);
		call_free(c);
		return;
	}
	case SIP_CANCEL:
		/* the INVITE was answered at once: nothing left to cancel (9.2) */
		reply(e, m, from, 200, NULL, NULL, NULL);
		return;
	case SIP_OPTIONS:
		reply(e, m, from, 200, NULL, NULL, ALLOW_HDR "Accept: application/sdp\r\n");
		return;
	default:
		reply(e, m, from, 405, NULL, NULL, ALLOW_HDR);
	}
}

static void on_response(struct echo *e, const struct sip_msg *m)
{
	/* only our BYE is ever answered: From tag is ours */
	if (m->status < 200 || m->cseq.method != SIP_BYE)
		return;
	for (unsigned i = 0; i < e->max_calls; i++) {
		struct echo_call *c = &e->calls[i];
		if (c->state == ECHO_ENDING && slice_eq(m->call_id, slice_cstr(c->call_id)) &&
		    slice_eq(m->from_tag, slice_cstr(c->to_tag))) {
			call_free(c);
			return;
		}
	}
}

/* Only our own SIP listener talks to the echo: the proxy forwards to it. */
static bool from_proxy(const struct echo *e, const struct net_addr *from)
{
	if (net_addr_port(from) != net_addr_port(&e->proxy_addr))
		return false;
	return e->proxy_wild ? net_addr_ip_eq(from, &e->sip_addr) || net_addr_is_loopback(from)
			     : net_addr_ip_eq(from, &e->proxy_addr);
}

static void on_sip(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct echo *e = arg;
	for (int i = 0; i < 32; i++) {
		char buf[8192];
		struct net_addr from;
		socklen_t sl = sizeof from.u.ss;
		ssize_t k = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, &from.u.sa, &sl);
		if (k <= 0)
			return;
		if (!from_proxy(e, &from)) {
			metric_inc(&m_foreign);
			continue;
		}
		struct sip_msg *m = malloc(sizeof *m);
		if (!m)
			return;
		if (sip_msg_parse(m, buf, (size_t)k, false, NULL) == 0) {
			if (m->request)
				on_request(e, m, &from);
			else
				on_response(e, m);
		}
		free(m);
	}
}

/* ---- setup ---- */

static void attach(void *arg)
{
	struct echo *e = arg;
	if (loop_fd_add(e->loop, e->sip_fd, EPOLLIN, on_sip, e))
		LOG_E("echo", "cannot watch the echo's SIP socket");
}

static int read_conf(struct echo *e, const struct conf *c)
{
	snprintf(e->user, sizeof e->user, "%s", conf_str(c, "echo", "user"));
	if (!e->user[0] || strpbrk(e->user, "@:;<> ")) {
		LOG_E("echo", "echo.user: want a SIP user part, got '%s'", e->user);
		return EINVAL;
	}
	e->max_calls = (unsigned)conf_int(c, "echo", "max_calls");
	e->max_per_source = (unsigned)conf_int(c, "echo", "max_calls_per_source");
	e->max_duration_ms = (uint32_t)conf_int(c, "echo", "max_duration") * 1000u;
	e->t1 = (uint32_t)conf_int(c, "sip", "t1");
	e->t2 = MAX(4000u, e->t1);
	const char *ports = conf_str(c, "echo", "ports");
	unsigned lo, hi;
	char extra;
	if (sscanf(ports, "%u - %u %c", &lo, &hi, &extra) != 2 || lo < 1024 || hi > 65535 ||
	    hi <= lo + (lo & 1)) {
		LOG_E("echo",
		      "echo.ports: want lo-hi within 1024-65535 with an even/odd pair, "
		      "got '%s'",
		      ports);
		return EINVAL;
	}
	lo += lo & 1; /* RFC 3550 11: RTP even, RTCP the next odd */
	e->port_lo = (uint16_t)lo;
	e->npairs = (hi - lo + 1) / 2;
	e->next_pair = rand_u32() % e->npairs;
	return 0;
}

/* The echo's addresses: its SIP socket on the listener's own IP (loopback
 * for a wildcard listener: nothing outside reaches it), its media on
 * [echo] address or the listener's or default route's. */
static int pick_addrs(struct echo *e, const struct conf *c)
{
	int li = net_listener_find(e->net, NET_UDP, AF_INET);
	if (li < 0)
		li = net_listener_find(e->net, NET_UDP, AF_INET6);
	if (li < 0) {
		LOG_E("echo", "[echo] needs a UDP SIP listener ([sip] listen)");
		return EINVAL;
	}
	e->proxy_addr = *net_listener_addr(e->net, (unsigned)li);
	int family = net_addr_family(&e->proxy_addr);
	e->proxy_wild = net_addr_is_any(&e->proxy_addr);
	if (e->proxy_wild)
		net_addr_parse(family == AF_INET6 ? "[::1]:0" : "127.0.0.1:0", 0, &e->sip_addr);
	else
		e->sip_addr = e->proxy_addr;
	net_addr_set_port(&e->sip_addr, 0);
	const char *a = conf_str(c, "echo", "address");
	if (a[0]) {
		if (net_addr_parse(a, 0, &e->media_addr) || net_addr_port(&e->media_addr) ||
		    net_addr_is_any(&e->media_addr)) {
			LOG_E("echo", "echo.address: want one IP address (no port), got '%s'", a);
			return EINVAL;
		}
	} else if (!e->proxy_wild) {
		e->media_addr = e->proxy_addr;
	} else if (net_default_source(family, &e->media_addr)) {
		LOG_E("echo", "no route to guess the echo's media address; set echo.address");
		return EINVAL;
	}
	net_addr_set_port(&e->media_addr, 0);
	net_addr_ip_fmt(&e->media_addr, e->media_ip, sizeof e->media_ip);
	int err = net_udp_socket(&e->sip_addr, false, &e->sip_fd);
	if (err || (err = net_sock_addr(e->sip_fd, &e->sip_addr))) {
		LOG_E("echo", "echo SIP socket: %s", strerror(err));
		return err;
	}
	net_flow_udp(e->net, (unsigned)li, &e->sip_addr, &e->to_echo);
	return 0;
}

int echo_start(struct echo **ep, struct net *n, const struct conf *c)
{
	struct echo *e = calloc(1, sizeof *e);
	if (!e)
		return ENOMEM;
	e->net = n;
	e->sip_fd = -1;
	e->loop = worker_loop(net_worker(n, 0));
	int err = read_conf(e, c);
	if (!err)
		err = pick_addrs(e, c);
	if (!err && !(e->calls = calloc(e->max_calls, sizeof *e->calls)))
		err = ENOMEM;
	if (!err)
		err = loop_post(e->loop, attach, e);
	if (err) {
		if (e->sip_fd >= 0)
			close(e->sip_fd);
		free(e->calls);
		free(e);
		return err;
	}
	metric_register(&m_calls);
	metric_register(&m_active);
	metric_register(&m_busy);
	metric_register(&m_source);
	metric_register(&m_media);
	metric_register(&m_by_bye);
	metric_register(&m_by_limit);
	metric_register(&m_by_noack);
	metric_register(&m_foreign);
	echo_media_register_metrics();
	char sa[NET_ADDR_STRLEN];
	LOG_I("echo",
	      "echo service: sip:%s@<our domains>, SIP socket %s, media on %s ports "
	      "%u-%u, %u calls (%u per source) of at most %u s",
	      e->user, net_addr_fmt(&e->sip_addr, sa, sizeof sa), e->media_ip, e->port_lo,
	      e->port_lo + 2 * e->npairs - 1, e->max_calls, e->max_per_source,
	      e->max_duration_ms / 1000);
	*ep = e;
	return 0;
}

void echo_free(struct echo *e)
{
	if (!e)
		return;
	for (unsigned i = 0; e->calls && i < e->max_calls; i++) {
		struct echo_call *c = &e->calls[i];
		if (c->state == ECHO_FREE)
			continue;
		timer_cancel(&c->t_sip);
		timer_cancel(&c->t_end);
		if (c->rtp.fd >= 0)
			close(c->rtp.fd);
		if (c->rtcp_sock.fd >= 0)
			close(c->rtcp_sock.fd);
		buf_free(&c->resp);
		buf_free(&c->bye);
		metric_add(&m_active, -1);
	}
	if (e->sip_fd >= 0)
		close(e->sip_fd);
	free(e->calls);
	free(e);
}

bool echo_route(const struct sip_uri *ruri, struct flow *out, void *arg)
{
	const struct echo *e = arg;
	if (!slice_eq(ruri->user, slice_cstr(e->user)))
		return false;
	*out = e->to_echo;
	return true;
}

void echo_stats_get(struct echo *e, struct echo_stats *out)
{
	out->calls_active = atomic_load(&e->active);
	out->sip_port = net_addr_port(&e->sip_addr);
}
