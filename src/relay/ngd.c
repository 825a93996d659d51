/* relay: the rtpengine ng protocol server (bencode over UDP) in front of the relay engine. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ng/ng.h"
#include "relay/relay_int.h"
#include "relayctl/relayctl.h"

#define NGD_RXBUF 65536 /* an ng datagram carries a whole SDP */
#define NGD_NODES 1024
#define NGD_CACHE 64
#define NGD_CACHE_MS 30000 /* clients retransmit for a few seconds */
#define NGD_ALLOW_MAX 32
#define NGD_LIST_DEFAULT 32    /* rtpengine's default when list names no limit */
#define NGD_LIST_BYTES 60000   /* a list answer stays one datagram */

static struct metric m_cmds = {.name = "relay_ng_commands_total",
			       .help = "ng commands received by the relay"};
static struct metric m_errs = {.name = "relay_ng_errors_total",
			       .help = "ng commands answered with an error result"};
static struct metric m_denied = {
    .name = "relay_ng_denied_total",
    .help = "ng datagrams from sources outside [relay] ng_allow, dropped unanswered"};

/* A reply kept for retransmissions of the same command (same cookie and
 * source), so that a repeated offer does not act twice. */
struct ngd_cached {
	char cookie[NG_MAX_COOKIE];
	size_t clen;
	struct net_addr src;
	uint64_t at_ms;
	struct buf reply;
};

/* Owned by struct relay; only worker 0's thread touches it after start. */
struct relay_ngd {
	struct relay *r; /* back-pointer */
	struct net_addr addr;
	int fd;
	struct loop *loop;
	struct ng_arena arena;
	uint8_t rx[NGD_RXBUF];
	struct buf out;
	struct buf sdp;
	struct ngd_cached cache[NGD_CACHE];
	unsigned cache_next;
	struct net_cidr allow[NGD_ALLOW_MAX]; /* RO after start */
	size_t n_allow;
	size_t list_max; /* RO */
	bool denied_logged;
};

/* ---- options: ng dictionary -> struct relayctl_req ---- */

static bool is(struct slice s, const char *c)
{
	return slice_eq_nocase(s, slice_cstr(c));
}

static bool is_any(struct slice s, const char *const *names)
{
	for (; *names; names++)
		if (is(s, *names))
			return true;
	return false;
}

/* Keys that change nothing here but that clients send as a matter of course. */
static const char *const ignored_keys[] = {
    "command",	  "call-id",  "from-tag",     "to-tag",		  "via-branch",
    "sdp",	  "ttl",      "delete-delay", "delete delay",	  "label",
    "from-label", "to-label", "set-label",    "sip-message-type", "sip_message_type",
    "supports",	  "TOS",      "metadata",     "from-tags",	  "limit",
    NULL,
};
/* Flags accepted as no-ops: the relay already behaves that way. */
static const char *const ignored_flags[] = {
    "symmetric", "strict-source",   "port-latching", "loop-protect", "fatal",
    "all",	 "no-redis-update", "pad-crypto",    NULL,
};

struct why {
	char s[160];
};

static int unsupported(struct why *w, const char *what, struct slice v)
{
	snprintf(w->s, sizeof w->s, "Unsupported %s: %.*s", what, (int)MIN(v.l, 80), v.p);
	return ENOTSUP;
}

static int bad(struct why *w, const char *what)
{
	snprintf(w->s, sizeof w->s, "Malformed %s", what);
	return EBADMSG;
}

static int str_of(const struct ng_node *n, struct slice *out)
{
	if (n->type != NG_STR)
		return EBADMSG;
	*out = n->str;
	return 0;
}

static int opt_flags(const struct ng_node *v, struct relayctl_req *q, struct why *w)
{
	if (v->type != NG_LIST)
		return bad(w, "flags");
	for (const struct ng_node *c = v->child; c; c = c->next) {
		struct slice f;
		if (str_of(c, &f))
			return bad(w, "flags");
		if (is(f, "trust-address"))
			q->opts.trust_address = true;
		else if (is(f, "SIP-source-address"))
			q->opts.sip_source_address = true;
		else if (is(f, "replace-origin"))
			q->opts.replace_origin = true;
		else if (is(f, "replace-session-connection"))
			q->opts.replace_session_conn = true;
		else if (!is_any(f, ignored_flags))
			return unsupported(w, "flag", f);
	}
	return 0;
}

static int opt_replace(const struct ng_node *v, struct relayctl_req *q, struct why *w)
{
	if (v->type != NG_LIST)
		return bad(w, "replace");
	for (const struct ng_node *c = v->child; c; c = c->next) {
		struct slice f;
		if (str_of(c, &f))
			return bad(w, "replace");
		if (is(f, "origin"))
			q->opts.replace_origin = true;
		else if (is(f, "session-connection") || is(f, "session connection"))
			q->opts.replace_session_conn = true;
		else
			return unsupported(w, "replace", f);
	}
	return 0;
}

static int opt_mux(const struct ng_node *v, struct relayctl_req *q, struct why *w)
{
	if (v->type != NG_LIST)
		return bad(w, "rtcp-mux");
	for (const struct ng_node *c = v->child; c; c = c->next) {
		struct slice f;
		if (str_of(c, &f))
			return bad(w, "rtcp-mux");
		if (is(f, "offer"))
			q->opts.rtcp_mux |= RELAYCTL_MUX_OFFER;
		else if (is(f, "accept"))
			q->opts.rtcp_mux |= RELAYCTL_MUX_ACCEPT;
		else if (is(f, "demux"))
			q->opts.rtcp_mux |= RELAYCTL_MUX_DEMUX;
		else if (is(f, "reject"))
			q->opts.rtcp_mux |= RELAYCTL_MUX_REJECT;
		else
			return unsupported(w, "rtcp-mux", f);
	}
	return 0;
}

/* Every m= line must already use the asked protocol: no RTP/SAVP bridging. */
static int opt_transport(struct slice v, struct slice body, struct why *w)
{
	struct sdp s;
	if (sdp_parse(&s, body))
		return 0; /* the offer itself reports it */
	for (size_t i = 0; i < s.n_media; i++)
		if (s.media[i].port && !slice_eq_nocase(s.media[i].proto, v))
			return unsupported(w, "transport-protocol change to", v);
	return 0;
}

static int ngd_req(const struct ng_node *d, struct relayctl_req *q, struct why *w)
{
	memset(q, 0, sizeof *q);
	int err;
	ng_dict_str(d, "call-id", &q->call_id);
	ng_dict_str(d, "from-tag", &q->from_tag);
	ng_dict_str(d, "to-tag", &q->to_tag);
	ng_dict_str(d, "via-branch", &q->opts.via_branch);
	ng_dict_str(d, "sdp", &q->sdp);
	for (const struct ng_node *c = d->child; c; c = c->next) {
		struct slice k = c->key, v = SLICE_NULL;
		if (c->type == NG_STR)
			v = c->str;
		if (is(k, "flags")) {
			if ((err = opt_flags(c, q, w)))
				return err;
		} else if (is(k, "replace")) {
			if ((err = opt_replace(c, q, w)))
				return err;
		} else if (is(k, "rtcp-mux")) {
			if ((err = opt_mux(c, q, w)))
				return err;
		} else if (is(k, "ICE")) {
			if (is(v, "remove") || is(v, "default"))
				q->opts.ice = RELAYCTL_ICE_REMOVE;
			else
				return unsupported(w, "ICE", v); /* force, force-relay, optional */
		} else if (is(k, "direction")) {
			if (c->type != NG_LIST || c->count != 2 ||
			    str_of(c->child, &q->opts.direction[0]) ||
			    str_of(c->child->next, &q->opts.direction[1]))
				return bad(w, "direction");
		} else if (is(k, "address family") || is(k, "address-family")) {
			if (is(v, "IP4"))
				q->opts.family = AF_INET;
			else if (is(v, "IP6"))
				q->opts.family = AF_INET6;
			else
				return unsupported(w, "address family", v);
		} else if (is(k, "received-from") || is(k, "received from")) {
			struct slice ip;
			if (c->type != NG_LIST || c->count != 2 || str_of(c->child->next, &ip) ||
			    net_addr_from_host(ip, 0, &q->opts.received_from))
				return bad(w, "received-from");
		} else if (is(k, "media address") || is(k, "media-address")) {
			struct net_addr tmp;
			if (c->type != NG_STR || net_addr_from_host(v, 0, &tmp))
				return bad(w, "media-address");
			q->opts.media_address = v;
		} else if (is(k, "transport protocol") || is(k, "transport-protocol")) {
			if ((err = opt_transport(v, q->sdp, w)))
				return err;
		} else if (is(k, "record call") || is(k, "record-call")) {
			if (!is(v, "no") && !is(v, "off"))
				return unsupported(w, "record-call", v);
		} else if (is(k, "DTLS") || is(k, "SDES")) {
			if (!is(v, "off") && !is(v, "no") && !is(v, "disable"))
				return unsupported(w, "DTLS/SDES", v);
		} else if (!is_any(k, ignored_keys)) {
			return unsupported(w, "option", k);
		}
	}
	return 0;
}

/* ---- commands ---- */

static int reply_ok_sdp(struct buf *b, struct slice cookie, struct slice sdp)
{
	int err = ng_reply_begin(b, cookie);
	if (!err)
		err = ng_enc_kv_cstr(b, "result", "ok");
	if (!err)
		err = ng_enc_kv_str(b, "sdp", sdp);
	if (!err)
		err = ng_enc_end(b);
	return err;
}

static void enc_stats(struct buf *b, const char *key, uint64_t packets, uint64_t bytes,
		      uint64_t errors)
{
	ng_enc_cstr(b, key);
	ng_enc_dict_begin(b);
	ng_enc_kv_int(b, "packets", (int64_t)packets);
	ng_enc_kv_int(b, "bytes", (int64_t)bytes);
	ng_enc_kv_int(b, "errors", (int64_t)errors);
	ng_enc_end(b);
}

static void enc_stream(struct buf *b, const struct relayctl_stream *s)
{
	char ip[NET_ADDR_STRLEN];
	ng_enc_dict_begin(b);
	ng_enc_kv_int(b, "local port", net_addr_port(&s->local));
	ng_enc_cstr(b, "endpoint");
	ng_enc_dict_begin(b);
	if (s->peer.u.sa.sa_family == AF_INET || s->peer.u.sa.sa_family == AF_INET6) {
		ng_enc_kv_cstr(b, "family", s->peer.u.sa.sa_family == AF_INET6 ? "IPv6" : "IPv4");
		ng_enc_kv_cstr(b, "address", net_addr_ip_fmt(&s->peer, ip, sizeof ip));
		ng_enc_kv_int(b, "port", net_addr_port(&s->peer));
	}
	ng_enc_end(b);
	ng_enc_kv_cstr(b, "status", s->latched ? "confirmed peer address" : "unconfirmed");
	ng_enc_kv_int(b, "last packet", (int64_t)(time_wall_s() - (int64_t)(s->idle_ms / 1000)));
	enc_stats(b, "stats", s->packets, s->bytes, s->dropped);
	ng_enc_kv_int(b, "gaps", (int64_t)s->gaps);
	ng_enc_end(b);
}

/* rtpengine's query shape, as far as the relay knows it: what Kamailio's
 * $rtpstat and OpenSIPS's rtpengine_stats read ("totals"). */
static int reply_query(struct buf *b, struct slice cookie, const struct relayctl_query *q)
{
	uint64_t rp = 0, rb = 0, re = 0, cp = 0, cb = 0, ce = 0;
	int64_t created = time_wall_s() - (int64_t)(q->age_ms / 1000);
	ng_reply_begin(b, cookie);
	ng_enc_kv_cstr(b, "result", "ok");
	ng_enc_kv_int(b, "created", created);
	ng_enc_cstr(b, "tags");
	ng_enc_dict_begin(b);
	for (unsigned l = 0; l < 2; l++) {
		const struct relayctl_leg *L = &q->leg[l];
		if (!L->tag[0])
			continue;
		ng_enc_cstr(b, L->tag);
		ng_enc_dict_begin(b);
		ng_enc_kv_cstr(b, "tag", L->tag);
		ng_enc_kv_int(b, "created", created);
		ng_enc_cstr(b, "medias");
		ng_enc_list_begin(b);
		for (size_t i = 0; i < L->n_media; i++) {
			const struct relayctl_stream *s = &L->media[i].rtp, *c = &L->media[i].rtcp;
			ng_enc_dict_begin(b);
			ng_enc_kv_int(b, "index", (int64_t)i + 1);
			ng_enc_cstr(b, "streams");
			ng_enc_list_begin(b);
			enc_stream(b, s);
			enc_stream(b, c);
			ng_enc_end(b);
			ng_enc_cstr(b, "flags");
			ng_enc_list_begin(b);
			if (L->media[i].rtcp_mux)
				ng_enc_cstr(b, "RTCP-mux");
			ng_enc_end(b);
			ng_enc_end(b);
			rp += s->packets, rb += s->bytes, re += s->dropped;
			cp += c->packets, cb += c->bytes, ce += c->dropped;
		}
		ng_enc_end(b);
		ng_enc_end(b);
	}
	ng_enc_end(b);
	ng_enc_cstr(b, "totals");
	ng_enc_dict_begin(b);
	enc_stats(b, "RTP", rp, rb, re);
	enc_stats(b, "RTCP", cp, cb, ce);
	ng_enc_end(b);
	ng_enc_end(b);
	return b->failed ? ENOMEM : 0;
}

struct list_ctx {
	struct buf *b;
	bool full;
};

static void list_one(struct slice cid, void *arg)
{
	struct list_ctx *lc = arg;
	/* room left for this string's "len:" and the closing "ee" */
	if (lc->full || lc->b->len + cid.l + 16 > NGD_LIST_BYTES) {
		lc->full = true;
		return;
	}
	ng_enc_str(lc->b, cid);
}

/* Builds the reply to one decoded command into d->out. */
static void dispatch(struct relay_ngd *d, struct slice cookie, const struct ng_node *msg)
{
	struct buf *b = &d->out;
	struct slice cmd;
	struct why w = {{0}};
	struct relayctl_req q;
	int err;
	if (ng_dict_str(msg, "command", &cmd)) {
		snprintf(w.s, sizeof w.s, "No command given");
		goto out_error;
	}
	if (is(cmd, "ping")) {
		ng_reply_result(b, cookie, "pong");
		return;
	}
	if (is(cmd, "offer") || is(cmd, "answer")) {
		if ((err = ngd_req(msg, &q, &w)))
			goto out_error;
		buf_reset(&d->sdp);
		err = is(cmd, "offer") ? relay_offer(d->r, &q, &d->sdp)
				       : relay_answer(d->r, &q, &d->sdp);
		if (err)
			goto out_errno;
		reply_ok_sdp(b, cookie, buf_slice(&d->sdp));
		return;
	}
	if (is(cmd, "delete")) {
		if ((err = ngd_req(msg, &q, &w)))
			goto out_error;
		if ((err = relay_delete(d->r, q.call_id, q.from_tag, q.to_tag)))
			goto out_errno;
		ng_reply_result(b, cookie, "ok");
		return;
	}
	if (is(cmd, "query")) {
		struct relayctl_query *qr = malloc(sizeof *qr);
		struct slice cid = SLICE_NULL, ft = SLICE_NULL;
		ng_dict_str(msg, "call-id", &cid);
		ng_dict_str(msg, "from-tag", &ft);
		err = qr ? relay_query(d->r, cid, ft, qr) : ENOMEM;
		if (!err)
			reply_query(b, cookie, qr);
		free(qr);
		if (err)
			goto out_errno;
		return;
	}
	if (is(cmd, "list")) {
		/* clamped to 1..ng_list_max: relay_list holds the session table's
		 * lock while it walks, and the answer must fit one datagram */
		int64_t limit = NGD_LIST_DEFAULT;
		ng_dict_int(msg, "limit", &limit);
		size_t max = limit < 1 ? 1 : (uint64_t)limit > d->list_max ? d->list_max : (size_t)limit;
		struct list_ctx lc = {b, false};
		ng_reply_begin(b, cookie);
		ng_enc_kv_cstr(b, "result", "ok");
		ng_enc_cstr(b, "calls");
		ng_enc_list_begin(b);
		relay_list(d->r, max, list_one, &lc);
		ng_enc_end(b);
		ng_enc_end(b);
		return;
	}
	unsupported(&w, "command", cmd);
	goto out_error;
out_errno:
	if (err == ENOENT)
		snprintf(w.s, sizeof w.s, "Unknown call-id or tag");
	else
		snprintf(w.s, sizeof w.s, "%s", relay_strerror(err));
out_error:
	metric_inc(&m_errs);
	buf_reset(b);
	ng_reply_error(b, cookie, w.s);
}

static struct ngd_cached *cache_find(struct relay_ngd *d, struct slice cookie,
				     const struct net_addr *src, uint64_t now)
{
	for (unsigned i = 0; i < NGD_CACHE; i++) {
		struct ngd_cached *c = &d->cache[i];
		if (c->clen == cookie.l && now - c->at_ms < NGD_CACHE_MS &&
		    memcmp(c->cookie, cookie.p, cookie.l) == 0 && net_addr_eq(&c->src, src))
			return c;
	}
	return NULL;
}

static void cache_put(struct relay_ngd *d, struct slice cookie, const struct net_addr *src,
		      uint64_t now)
{
	struct ngd_cached *c = &d->cache[d->cache_next];
	d->cache_next = (d->cache_next + 1) % NGD_CACHE;
	memcpy(c->cookie, cookie.p, cookie.l);
	c->clen = cookie.l;
	c->src = *src;
	c->at_ms = now;
	buf_reset(&c->reply);
	buf_append(&c->reply, d->out.data, d->out.len);
}

static void handle(struct relay_ngd *d, size_t len, const struct net_addr *src)
{
	struct slice dgram = {(const char *)d->rx, len}, cookie, body;
	uint64_t now = loop_now_ms(d->loop);
	metric_inc(&m_cmds);
	buf_reset(&d->out);
	if (ng_msg_split(dgram, &cookie, &body)) {
		/* no usable cookie: nothing a client could match a reply to */
		metric_inc(&m_errs);
		return;
	}
	struct ngd_cached *c = cache_find(d, cookie, src, now);
	if (c) {
		sendto(d->fd, c->reply.data, c->reply.len, MSG_DONTWAIT, &src->u.sa,
		       net_addr_len(src));
		return;
	}
	const struct ng_node *msg;
	ng_arena_reset(&d->arena);
	if (ng_msg_parse(dgram, &d->arena, &cookie, &msg)) {
		metric_inc(&m_errs);
		ng_reply_error(&d->out, cookie, "Malformed bencode");
	} else {
		dispatch(d, cookie, msg);
	}
	if (d->out.failed || !d->out.len) {
		buf_reset(&d->out);
		ng_reply_error(&d->out, cookie, "Internal error");
	}
	cache_put(d, cookie, src, now);
	if (sendto(d->fd, d->out.data, d->out.len, MSG_DONTWAIT, &src->u.sa, net_addr_len(src)) < 0)
		LOG_W("relay", "ng: reply not sent: %s", strerror(errno));
}

static void on_readable(int fd, uint32_t events, void *arg)
{
	(void)events;
	struct relay_ngd *d = arg;
	for (int i = 0; i < 64; i++) {
		struct net_addr src;
		socklen_t sl = sizeof src.u.ss;
		ssize_t n =
		    recvfrom(fd, d->rx, sizeof d->rx, MSG_DONTWAIT | MSG_TRUNC, &src.u.sa, &sl);
		if (n < 0)
			return;
		if (!net_cidr_list_has(d->allow, d->n_allow, &src)) {
			/* a stranger gets no answer: ng is not a reflector, nor a way in */
			metric_inc(&m_denied);
			if (!d->denied_logged) {
				char t[NET_ADDR_STRLEN];
				LOG_W("relay",
				      "ng: dropping commands from %s, not in [relay] ng_allow "
				      "(counted in relay_ng_denied_total; logged once)",
				      net_addr_fmt(&src, t, sizeof t));
				d->denied_logged = true;
			}
			continue;
		}
		if ((size_t)n > sizeof d->rx) {
			metric_inc(&m_errs); /* truncated: no SDP survives that */
			continue;
		}
		handle(d, (size_t)n, &src);
	}
}

int relay_ngd_start(struct relay *r, const struct conf *c)
{
	metric_register(&m_cmds);
	metric_register(&m_errs);
	metric_register(&m_denied);
	const char *spec = conf_str(c, "relay", "ng");
	const char *a = spec;
	if (strncmp(a, "udp:", 4) == 0)
		a += 4;
	else if (strchr(a, ':') && strncmp(a, "tcp:", 4) == 0) {
		LOG_E("relay", "relay.ng: only udp is supported, got '%s'", spec);
		return ENOTSUP;
	}
	struct relay_ngd *d = calloc(1, sizeof *d);
	if (!d)
		return ENOMEM;
	d->r = r;
	d->fd = -1;
	buf_init(&d->out);
	buf_init(&d->sdp);
	for (unsigned i = 0; i < NGD_CACHE; i++)
		buf_init(&d->cache[i].reply);
	int err = ng_arena_alloc(&d->arena, NGD_NODES);
	if (err)
		goto out_free;
	const char *allow = conf_str(c, "relay", "ng_allow");
	if ((err = net_cidr_list_parse(allow, d->allow, NGD_ALLOW_MAX, &d->n_allow))) {
		LOG_E("relay", "[relay] ng_allow: want %s, got '%s'",
		      err == ENOSPC ? "at most 32 addresses or prefixes"
		      : err == EDOM ? "prefixes without host bits (10.0.0.0/8, not 10.1.0.0/8)"
				    : "addresses or prefixes (10.0.0.0/8, ::1)",
		      allow);
		err = EINVAL;
		goto out_free;
	}
	d->list_max = (size_t)conf_int(c, "relay", "ng_list_max");
	if (net_addr_parse(a, 2223, &d->addr)) {
		LOG_E("relay", "relay.ng: '%s' is not udp:address:port", spec);
		err = EINVAL;
		goto out_free;
	}
	if ((err = net_udp_socket(&d->addr, false, &d->fd))) {
		char t[NET_ADDR_STRLEN];
		LOG_E("relay", "relay.ng: cannot bind %s: %s", net_addr_fmt(&d->addr, t, sizeof t),
		      strerror(err));
		goto out_free;
	}
	net_sock_addr(d->fd, &d->addr);
	d->loop = r->workers[0]->loop;
	if ((err = loop_fd_add(d->loop, d->fd, EPOLLIN, on_readable, d)))
		goto out_free;
	char t[NET_ADDR_STRLEN];
	LOG_I("relay", "ng control on udp:%s, commands from %s", net_addr_fmt(&d->addr, t, sizeof t),
	      d->n_allow ? allow : "nowhere (ng_allow is empty)");
	r->ngd = d;
	return 0;
out_free:
	relay_ngd_free(d);
	return err;
}

void relay_ngd_free(struct relay_ngd *d)
{
	if (!d)
		return;
	if (d->fd >= 0) {
		if (d->loop)
			loop_fd_del(d->loop, d->fd); /* after net_stop: no thread runs it */
		close(d->fd);
	}
	ng_arena_free(&d->arena);
	buf_free(&d->out);
	buf_free(&d->sdp);
	for (unsigned i = 0; i < NGD_CACHE; i++)
		buf_free(&d->cache[i].reply);
	free(d);
}

const struct net_addr *relay_ngd_addr(const struct relay_ngd *d)
{
	return &d->addr;
}
