/* relayctl: the rtpengine ng protocol client (bencode over UDP, cookie, retransmission, timeout).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ng/ng.h"
#include "relayctl/relayctl_int.h"

#define NGC_RXBUF 65536
#define NGC_NODES 2048

/* Shared by every thread using the handle: RO after alloc except seq. */
struct relayctl_ng {
	struct relayctl rc; /* first: the handle */
	struct net_addr server;
	unsigned timeout_ms;
	uint32_t prefix; /* random, so two processes' cookies differ */
	_Atomic uint64_t seq;
};

/* One exchange's memory: the reply and its decoded tree live here. */
struct ngc_call {
	char *rx;
	struct ng_arena arena;
	const struct ng_node *reply;
};

static void call_free(struct ngc_call *k)
{
	free(k->rx);
	ng_arena_free(&k->arena);
}

/*
 * Sends "<cookie> <body>" and waits for the reply with that cookie, sending
 * again every quarter of the timeout (UDP: the datagram or its reply may be
 * lost; the server answers a repeat from its cache). Blocks the calling
 * thread for at most timeout_ms. 0 with k->reply set when result is not
 * "error"; EPROTO (error result or a reply that is no dictionary),
 * ETIMEDOUT, ECONNREFUSED, ENOMEM.
 */
static int transact(struct relayctl_ng *c, const struct buf *body, struct ngc_call *k)
{
	memset(k, 0, sizeof *k);
	if (body->failed)
		return ENOMEM;
	char cookie[48];
	int cl = snprintf(cookie, sizeof cookie, "%08" PRIx32 "_%" PRIu64, c->prefix,
			  atomic_fetch_add(&c->seq, 1));
	struct buf dg;
	buf_init(&dg);
	buf_append(&dg, cookie, (size_t)cl);
	buf_append(&dg, " ", 1);
	buf_append(&dg, body->data, body->len);
	k->rx = malloc(NGC_RXBUF);
	int err = (dg.failed || !k->rx) ? ENOMEM : ng_arena_alloc(&k->arena, NGC_NODES);
	int fd = -1;
	if (err)
		goto out;
	fd = socket(net_addr_family(&c->server), SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, &c->server.u.sa, net_addr_len(&c->server)) < 0) {
		err = errno;
		goto out;
	}
	uint64_t start = time_mono_ms(), deadline = start + c->timeout_ms;
	uint64_t every = MAX(c->timeout_ms / 4, 1);
	uint64_t next_send = start;
	err = ETIMEDOUT;
	for (;;) {
		uint64_t now = time_mono_ms();
		if (now >= deadline)
			break;
		if (now >= next_send) {
			send(fd, dg.data, dg.len, MSG_DONTWAIT);
			next_send = now + every;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int wait = (int)(MIN(next_send, deadline) - now);
		if (poll(&p, 1, wait) <= 0)
			continue;
		ssize_t n = recv(fd, k->rx, NGC_RXBUF, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == ECONNREFUSED) {
				err = ECONNREFUSED;
				break;
			}
			continue;
		}
		if ((size_t)n > NGC_RXBUF)
			continue;
		struct slice rc, rb;
		if (ng_msg_split((struct slice){k->rx, (size_t)n}, &rc, &rb) ||
		    !slice_eq(rc, (struct slice){cookie, (size_t)cl}))
			continue; /* a late reply to an earlier call of this socket: none */
		ng_arena_reset(&k->arena);
		if (ng_msg_parse((struct slice){k->rx, (size_t)n}, &k->arena, &rc, &k->reply)) {
			err = EPROTO;
			break;
		}
		struct slice result;
		if (ng_dict_str(k->reply, "result", &result) ||
		    slice_eq(result, SLICE_LIT("error"))) {
			struct slice why = SLICE_LIT("no result");
			ng_dict_str(k->reply, "error-reason", &why);
			char t[NET_ADDR_STRLEN];
			LOG_W("relayctl", "ng relay %s: %.*s",
			      net_addr_fmt(&c->server, t, sizeof t), (int)MIN(why.l, 200), why.p);
			err = EPROTO;
			break;
		}
		err = 0;
		break;
	}
	if (err == ETIMEDOUT) {
		char t[NET_ADDR_STRLEN];
		LOG_W("relayctl", "ng relay %s: no answer in %u ms",
		      net_addr_fmt(&c->server, t, sizeof t), c->timeout_ms);
	}
out:
	if (fd >= 0)
		close(fd);
	buf_free(&dg);
	return err;
}

static void enc_sdp_req(struct buf *b, const char *cmd, const struct relayctl_req *q)
{
	const struct relayctl_opts *o = &q->opts;
	ng_enc_dict_begin(b);
	ng_enc_kv_cstr(b, "command", cmd);
	ng_enc_kv_str(b, "call-id", q->call_id);
	ng_enc_kv_str(b, "from-tag", q->from_tag);
	if (q->to_tag.l)
		ng_enc_kv_str(b, "to-tag", q->to_tag);
	if (o->via_branch.l)
		ng_enc_kv_str(b, "via-branch", o->via_branch);
	ng_enc_kv_str(b, "sdp", q->sdp);
	if (o->trust_address || o->sip_source_address) {
		ng_enc_cstr(b, "flags");
		ng_enc_list_begin(b);
		if (o->trust_address)
			ng_enc_cstr(b, "trust-address");
		if (o->sip_source_address)
			ng_enc_cstr(b, "SIP-source-address");
		ng_enc_end(b);
	}
	if (o->replace_origin || o->replace_session_conn) {
		ng_enc_cstr(b, "replace");
		ng_enc_list_begin(b);
		if (o->replace_origin)
			ng_enc_cstr(b, "origin");
		if (o->replace_session_conn)
			ng_enc_cstr(b, "session-connection");
		ng_enc_end(b);
	}
	ng_enc_kv_cstr(b, "ICE", o->ice == RELAYCTL_ICE_FORCE ? "force" : "remove");
	if (o->rtcp_mux) {
		static const char *const names[] = {"offer", "accept", "demux", "reject"};
		ng_enc_cstr(b, "rtcp-mux");
		ng_enc_list_begin(b);
		for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
			if (o->rtcp_mux & (1u << i))
				ng_enc_cstr(b, names[i]);
		ng_enc_end(b);
	}
	if (o->direction[0].l || o->direction[1].l) {
		ng_enc_cstr(b, "direction");
		ng_enc_list_begin(b);
		ng_enc_str(b, o->direction[0]);
		ng_enc_str(b, o->direction[1]);
		ng_enc_end(b);
	}
	if (o->family)
		ng_enc_kv_cstr(b, "address family", o->family == AF_INET6 ? "IP6" : "IP4");
	int fam = net_addr_family(&o->received_from);
	if (fam == AF_INET || fam == AF_INET6) {
		char ip[NET_ADDR_STRLEN];
		ng_enc_cstr(b, "received-from");
		ng_enc_list_begin(b);
		ng_enc_cstr(b, fam == AF_INET6 ? "IP6" : "IP4");
		ng_enc_cstr(b, net_addr_ip_fmt(&o->received_from, ip, sizeof ip));
		ng_enc_end(b);
	}
	if (o->media_address.l)
		ng_enc_kv_str(b, "media-address", o->media_address);
	ng_enc_end(b);
}

static struct relayctl_ng *ngc(struct relayctl *rc)
{
	return (struct relayctl_ng *)rc;
}

static int sdp_cmd(struct relayctl *rc, const char *cmd, const struct relayctl_req *q,
		   struct buf *out)
{
	if (!q->call_id.l || !q->from_tag.l || !q->sdp.l)
		return EINVAL;
	struct buf b;
	buf_init(&b);
	enc_sdp_req(&b, cmd, q);
	struct ngc_call k;
	int err = transact(ngc(rc), &b, &k);
	struct slice sdp;
	if (!err && ng_dict_str(k.reply, "sdp", &sdp))
		err = EPROTO;
	if (!err)
		err = buf_append_slice(out, sdp);
	call_free(&k);
	buf_free(&b);
	return err;
}

static int ngc_offer(struct relayctl *rc, const struct relayctl_req *q, struct buf *out)
{
	return sdp_cmd(rc, "offer", q, out);
}

static int ngc_answer(struct relayctl *rc, const struct relayctl_req *q, struct buf *out)
{
	return sdp_cmd(rc, "answer", q, out);
}

static int ngc_del(struct relayctl *rc, struct slice cid, struct slice ft, struct slice tt)
{
	if (!cid.l)
		return EINVAL;
	struct buf b;
	buf_init(&b);
	ng_enc_dict_begin(&b);
	ng_enc_kv_cstr(&b, "command", "delete");
	ng_enc_kv_str(&b, "call-id", cid);
	if (ft.l)
		ng_enc_kv_str(&b, "from-tag", ft);
	if (tt.l)
		ng_enc_kv_str(&b, "to-tag", tt);
	ng_enc_end(&b);
	struct ngc_call k;
	int err = transact(ngc(rc), &b, &k);
	call_free(&k);
	buf_free(&b);
	return err;
}

static void dec_stream(const struct ng_node *s, struct relayctl_stream *out)
{
	int64_t v;
	if (!ng_dict_int(s, "local port", &v))
		net_addr_set_port(&out->local, (uint16_t)v);
	const struct ng_node *ep = ng_dict_get(s, "endpoint");
	struct slice ip;
	if (ep && !ng_dict_str(ep, "address", &ip) && !ng_dict_int(ep, "port", &v))
		net_addr_from_host(ip, (uint16_t)v, &out->peer);
	struct slice st;
	out->latched =
	    !ng_dict_str(s, "status", &st) && slice_eq(st, SLICE_LIT("confirmed peer address"));
	const struct ng_node *stats = ng_dict_get(s, "stats");
	if (!ng_dict_int(stats, "packets", &v))
		out->packets = (uint64_t)v;
	if (!ng_dict_int(stats, "bytes", &v))
		out->bytes = (uint64_t)v;
	if (!ng_dict_int(stats, "errors", &v))
		out->dropped = (uint64_t)v;
	if (!ng_dict_int(s, "gaps", &v))
		out->gaps = (uint64_t)v;
}

static int ngc_query(struct relayctl *rc, struct slice cid, struct slice ft,
		     struct relayctl_query *out)
{
	if (!cid.l)
		return EINVAL;
	struct buf b;
	buf_init(&b);
	ng_enc_dict_begin(&b);
	ng_enc_kv_cstr(&b, "command", "query");
	ng_enc_kv_str(&b, "call-id", cid);
	if (ft.l)
		ng_enc_kv_str(&b, "from-tag", ft);
	ng_enc_end(&b);
	struct ngc_call k;
	int err = transact(ngc(rc), &b, &k);
	if (!err) {
		memset(out, 0, sizeof *out);
		int64_t created;
		if (!ng_dict_int(k.reply, "created", &created) && created <= time_wall_s())
			out->age_ms = (uint64_t)(time_wall_s() - created) * 1000;
		/* rtpengine's shape: tags -> medias -> streams (RTP, RTCP) */
		const struct ng_node *tags = ng_dict_get(k.reply, "tags");
		unsigned l = 0;
		for (const struct ng_node *t = tags && tags->type == NG_DICT ? tags->child : NULL;
		     t && l < 2; t = t->next, l++) {
			struct relayctl_leg *L = &out->leg[l];
			slice_to_cstr(t->key, L->tag, sizeof L->tag);
			const struct ng_node *ms = ng_dict_get(t, "medias");
			for (const struct ng_node *m = ms && ms->type == NG_LIST ? ms->child : NULL;
			     m && L->n_media < RELAYCTL_MAX_MEDIA; m = m->next) {
				const struct ng_node *ss = ng_dict_get(m, "streams");
				if (ss && ss->type == NG_LIST && ss->child) {
					dec_stream(ss->child, &L->media[L->n_media].rtp);
					if (ss->child->next)
						dec_stream(ss->child->next,
							   &L->media[L->n_media].rtcp);
				}
				L->media[L->n_media].rtcp_mux =
				    ng_list_has(ng_dict_get(m, "flags"), "RTCP-mux");
				L->n_media++;
			}
		}
	}
	call_free(&k);
	buf_free(&b);
	return err;
}

static int ngc_list(struct relayctl *rc, size_t max, relayctl_list_h *h, void *arg)
{
	struct buf b;
	buf_init(&b);
	ng_enc_dict_begin(&b);
	ng_enc_kv_cstr(&b, "command", "list");
	if (max)
		ng_enc_kv_int(&b, "limit", (int64_t)max);
	ng_enc_end(&b);
	struct ngc_call k;
	int err = transact(ngc(rc), &b, &k);
	if (!err) {
		const struct ng_node *calls = ng_dict_get(k.reply, "calls");
		for (const struct ng_node *c = calls && calls->type == NG_LIST ? calls->child
									       : NULL;
		     c; c = c->next)
			if (c->type == NG_STR)
				h(c->str, arg);
	}
	call_free(&k);
	buf_free(&b);
	return err;
}

static int ngc_ping(struct relayctl *rc)
{
	struct buf b;
	buf_init(&b);
	ng_enc_dict_begin(&b);
	ng_enc_kv_cstr(&b, "command", "ping");
	ng_enc_end(&b);
	struct ngc_call k;
	int err = transact(ngc(rc), &b, &k);
	struct slice r;
	if (!err && (ng_dict_str(k.reply, "result", &r) || !slice_eq(r, SLICE_LIT("pong"))))
		err = EPROTO;
	call_free(&k);
	buf_free(&b);
	return err;
}

static void ngc_free(struct relayctl *rc)
{
	free(rc);
}

static const struct relayctl_ops ng_ops = {
    .offer = ngc_offer,
    .answer = ngc_answer,
    .del = ngc_del,
    .query = ngc_query,
    .list = ngc_list,
    .ping = ngc_ping,
    .free = ngc_free,
};

int relayctl_ng_alloc(struct relayctl **rcp, const char *uri, unsigned timeout_ms)
{
	if (!uri)
		return EINVAL;
	if (strncmp(uri, "udp:", 4) == 0)
		uri += 4;
	struct relayctl_ng *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	if (net_addr_parse(uri, 2223, &c->server) || net_addr_port(&c->server) == 0 ||
	    net_addr_is_any(&c->server)) {
		free(c);
		return EINVAL;
	}
	c->rc.ops = &ng_ops;
	c->timeout_ms = timeout_ms ? timeout_ms : 1000;
	c->prefix = rand_u32();
	*rcp = &c->rc;
	return 0;
}
