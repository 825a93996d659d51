/* WebSocket transport (RFC 6455, RFC 7118) on a TCP connection: upgrade, frames, pings, close; the codec comes from the role. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net_int.h"

/* A connection's WebSocket state. Idle and open it holds no buffer. */
struct net_ws {
	bool open;	  /* upgraded: frames from here on */
	uint8_t msg_op;	  /* the fragmented message in progress, 0 = none */
	struct buf msg;	  /* its payload so far, at most max_msg */
	uint64_t ping_ms; /* when our unanswered ping went out, 0 = none */
};

static struct metric m_upgraded = {.name = "ws_upgrades_total",
				   .help = "WebSocket connections opened (101 answered)"};
static struct metric m_refused[3] = {
    {.name = "ws_refused_total",
     .help = "WebSocket upgrades refused and closed, by status",
     .labels = "status=\"400\""},
    {.name = "ws_refused_total",
     .help = "WebSocket upgrades refused and closed, by status",
     .labels = "status=\"403\""},
    {.name = "ws_refused_total",
     .help = "WebSocket upgrades refused and closed, by status",
     .labels = "status=\"426\""},
};
static struct metric m_upgrade_timeouts = {
    .name = "ws_upgrade_timeouts_total",
    .help = "connections to a ws: listener closed without a whole upgrade in time"};
static struct metric m_protocol = {
    .name = "ws_protocol_errors_total",
    .help = "WebSocket connections failed for a protocol error (close 1002/1007)"};
static struct metric m_oversize = {
    .name = "ws_oversize_total",
    .help = "WebSocket connections closed for a message over [sip] max_message (close 1009)"};
static struct metric m_pings = {.name = "ws_pings_total",
				.help = "pings sent to silent WebSocket connections"};
static struct metric m_ping_timeouts = {
    .name = "ws_ping_timeouts_total",
    .help = "WebSocket connections closed for a ping left unanswered (the flow fails)"};
static struct metric m_closes = {.name = "ws_closes_total",
				 .help = "close frames received (answered, then closed)"};
static struct metric m_messages = {.name = "ws_messages_total",
				   .help = "WebSocket messages received and passed up"};

void net_set_ws(struct net *n, const struct net_ws_hooks *h)
{
	n->ws = *h;
	metric_register(&m_upgraded);
	for (int i = 0; i < 3; i++)
		metric_register(&m_refused[i]);
	metric_register(&m_upgrade_timeouts);
	metric_register(&m_protocol);
	metric_register(&m_oversize);
	metric_register(&m_pings);
	metric_register(&m_ping_timeouts);
	metric_register(&m_closes);
	metric_register(&m_messages);
}

int net_ws_conn_init(struct net *n, struct conn *c)
{
	if (!n->ws.upgrade)
		return ENOTSUP;
	c->ws = calloc(1, sizeof *c->ws);
	if (!c->ws)
		return ENOMEM;
	buf_init(&c->ws->msg);
	return 0;
}

void net_ws_conn_free(struct net *n, struct conn *c)
{
	(void)n;
	if (!c->ws)
		return;
	buf_free(&c->ws->msg);
	free(c->ws);
	c->ws = NULL;
}

/* One frame of ours (control, or a message), header and payload queued as
 * one piece: senders on other workers never interleave inside it. */
static int send_frame(struct net *n, const struct flow *f, uint8_t op, const void *data, size_t len)
{
	char stack[2048], *p = stack;
	if (len + 14 > sizeof stack && !(p = malloc(len + 14)))
		return ENOMEM;
	size_t h = n->ws.frame_hdr((uint8_t *)p, true, op, len);
	if (len)
		memcpy(p + h, data, len);
	int err = net_tcp_send(n, f, p, h + len);
	if (p != stack)
		free(p);
	return err;
}

int net_ws_send(struct net *n, const struct flow *f, const void *data, size_t len)
{
	/* a WebSocket is never dialled: only the client's own connection */
	if (!f->conn_id || !n->ws.frame_hdr)
		return ENOTCONN;
	/* RFC 7118 5: text when it is UTF-8 (SIP almost always is), else binary */
	return send_frame(n, f, n->ws.utf8(data, len) ? 0x1 : 0x2, data, len);
}

/* Fails the connection (RFC 6455 7.1.7): a close frame with code, then closed. */
static size_t fail(struct conn *c, uint16_t code, struct metric *m)
{
	uint8_t pl[2] = {(uint8_t)(code >> 8), (uint8_t)code};
	metric_inc(m);
	send_frame(c->owner->net, &c->flow, 0x8, pl, 2);
	net_tcp_close(c);
	return SIZE_MAX;
}

/* The opening handshake: answered once; a refusal closes. */
static size_t upgrade(struct conn *c, const char *p, size_t len)
{
	struct net *n = c->owner->net;
	size_t used = 0;
	unsigned status = 0;
	struct buf out;
	buf_init(&out);
	int err = n->ws.upgrade(&c->flow, p, len, &used, &out, &status, n->ws.arg);
	if (err == ENODATA && len < n->conf.max_msg) {
		buf_free(&out);
		return 0;
	}
	bool ok = !err && status == 101;
	/* counted before the answer leaves: whoever sees the answer sees the count */
	if (ok)
		metric_inc(&m_upgraded);
	else
		metric_inc(&m_refused[status == 403 ? 1 : status == 426 ? 2 : 0]);
	if (!err && out.len)
		net_tcp_send(n, &c->flow, out.data, out.len);
	buf_free(&out);
	if (!ok) {
		net_tcp_close(c);
		return SIZE_MAX;
	}
	c->ws->open = true;
	return used;
}

static void deliver(struct conn *c, const char *p, size_t len)
{
	struct net *n = c->owner->net;
	metric_inc(&m_messages);
	/* a message that is only CR/LF is a keepalive (RFC 5626 over a
	 * stream), not a first message */
	bool filler = true;
	for (size_t i = 0; i < len && filler; i++)
		filler = p[i] == '\r' || p[i] == '\n';
	if (!filler)
		c->got_message = true;
	/* handlers may send on this connection but never close it */
	struct flow f = c->flow;
	if (n->recv)
		n->recv(c->owner, &f, p, len, n->recv_arg);
}

/* A data frame: delivered at once when it is a whole message (the common
 * case: no copy), else gathered until its last fragment. SIZE_MAX: closed. */
static size_t data_frame(struct conn *c, const struct net_ws_frame *fr, const char *pl)
{
	struct net *n = c->owner->net;
	struct net_ws *ws = c->ws;
	/* RFC 6455 5.4: a continuation of nothing, or messages interleaved */
	if ((fr->opcode == 0) != (ws->msg_op != 0))
		return fail(c, 1002, &m_protocol);
	if (fr->opcode && fr->fin) {
		if (fr->opcode == 0x1 && !n->ws.utf8(pl, fr->plen))
			return fail(c, 1007, &m_protocol);
		if (fr->plen)
			deliver(c, pl, fr->plen);
		return 0;
	}
	if (fr->opcode)
		ws->msg_op = fr->opcode;
	if (fr->plen > n->conf.max_msg - MIN(n->conf.max_msg, ws->msg.len))
		return fail(c, 1009, &m_oversize);
	if (buf_append(&ws->msg, pl, fr->plen))
		return fail(c, 1011, &m_protocol);
	if (!fr->fin)
		return 0;
	uint8_t op = ws->msg_op;
	ws->msg_op = 0;
	if (op == 0x1 && !n->ws.utf8(ws->msg.data, ws->msg.len))
		return fail(c, 1007, &m_protocol);
	if (ws->msg.len)
		deliver(c, ws->msg.data, ws->msg.len);
	buf_free(&ws->msg); /* an idle connection keeps none */
	buf_init(&ws->msg);
	return 0;
}

size_t net_ws_deliver(struct conn *c, char *p, size_t len)
{
	struct net *n = c->owner->net;
	size_t off = 0;
	if (!c->ws->open && (off = upgrade(c, p, len)) == 0)
		return 0;
	if (off == SIZE_MAX)
		return SIZE_MAX;
	while (off < len) {
		struct net_ws_frame fr;
		int err = n->ws.frame(p + off, len - off, n->conf.max_msg, &fr);
		if (err == ENODATA)
			break;
		if (err == EMSGSIZE)
			return fail(c, 1009, &m_oversize);
		if (err)
			return fail(c, 1002, &m_protocol);
		c->ws->ping_ms = 0; /* it is alive */
		const char *pl = p + off + fr.hlen;
		off += fr.hlen + fr.plen;
		switch (fr.opcode) {
		case 0x9: /* ping: a pong with its payload (5.5.3) */
			send_frame(n, &c->flow, 0xa, pl, fr.plen);
			break;
		case 0xa: /* pong: the answer to ours, or unsolicited; either way alive */
			break;
		case 0x8: {
			/* 5.5.1: answer with the code and close (the server closes TCP first) */
			uint16_t code;
			if (n->ws.close_code(pl, fr.plen, &code))
				return fail(c, 1002, &m_protocol);
			metric_inc(&m_closes);
			send_frame(n, &c->flow, 0x8, pl, MIN(fr.plen, 2));
			net_tcp_close(c);
			return SIZE_MAX;
		}
		default:
			if (data_frame(c, &fr, pl) == SIZE_MAX)
				return SIZE_MAX;
		}
	}
	return off;
}

bool net_ws_sweep(struct conn *c, uint64_t now)
{
	struct net *n = c->owner->net;
	struct net_ws *ws = c->ws;
	if (!ws->open) {
		/* the upgrade is bounded like a first message */
		if (n->conf.tcp_handshake_s &&
		    now - c->opened_ms > n->conf.tcp_handshake_s * 1000ull) {
			metric_inc(&m_upgrade_timeouts);
			n->st.tcp_idle_closed++;
			net_tcp_close(c);
			return true;
		}
		return false;
	}
	unsigned pong_s = n->conf.ws_pong_s ? n->conf.ws_pong_s : NET_WS_PONG_S_DEFAULT;
	if (ws->ping_ms && now - ws->ping_ms > pong_s * 1000ull) {
		/* the flow keepalive failed: closing fails the flow (430 from now) */
		metric_inc(&m_ping_timeouts);
		net_tcp_close(c);
		return true;
	}
	if (n->conf.ws_ping_s && !ws->ping_ms &&
	    now - c->last_rx_ms >= n->conf.ws_ping_s * 1000ull) {
		metric_inc(&m_pings);
		ws->ping_ms = now;
		send_frame(n, &c->flow, 0x9, NULL, 0);
	}
	return false;
}
