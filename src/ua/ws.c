/* ua: SIP over WebSocket, the client side (RFC 7118, RFC 6455): upgrade, masked frames, ping/pong,
 * close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws.h"
#include "ua_int.h"

/*
 * A ws: or wss: flow is a TCP (or TLS) stream flow whose bytes, once the
 * upgrade is answered, are WebSocket frames: one SIP message per message
 * (RFC 7118 5.2). What the server can make us hold: one upgrade answer of
 * at most WS_UPGRADE_MAX, one frame or message of at most UA_MAX_MSG; more
 * fails the flow with a close frame, as RFC 6455 7.1.7 says.
 */

struct uaws {
	bool open; /* the 101 came and was right */
	bool close_sent;
	char key[25];		/* Sec-WebSocket-Key of this connection */
	uint8_t ping[4];	/* the payload of our ping in flight */
	struct ws_msg_state ms; /* a fragmented message in progress */
	struct buf msg;		/* ... its payload so far */
};

static struct uaws *state(struct ua_flow *f)
{
	if (!f->ws) {
		f->ws = calloc(1, sizeof *f->ws);
		if (f->ws)
			buf_init(&f->ws->msg);
	}
	return f->ws;
}

/* A frame of ours: client frames are masked with a fresh key each (RFC 6455
 * 5.3: the key must not be predictable, so a page's script cannot choose the
 * bytes on the wire; we are no browser, but the server checks the rule). */
static int send_frame(struct ua_flow *f, enum ws_opcode op, const void *p, size_t len)
{
	uint8_t mask[4];
	rand_bytes(mask, sizeof mask);
	char *fr = malloc(WS_HDR_MAX + len);
	if (!fr)
		return ENOMEM;
	size_t h = ws_frame_hdr((uint8_t *)fr, true, op, len, mask);
	memcpy(fr + h, p, len);
	ws_mask(fr + h, len, mask);
	int err = uaf_send_raw(f, fr, h + len);
	free(fr);
	return err;
}

static void send_close(struct ua_flow *f, uint16_t code)
{
	struct uaws *w = f->ws;
	if (!w || !w->open || w->close_sent)
		return;
	w->close_sent = true;
	uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
	send_frame(f, WS_OP_CLOSE, p, code == WS_CLOSE_NO_STATUS ? 0 : 2);
}

/* RFC 6455 7.1.7: fail the connection: a close with the reason, then gone */
static void fail(struct ua_flow *f, uint16_t code, const char *why, int exit_code)
{
	send_close(f, code);
	ua_flow_failed(f, why, exit_code);
}

int uaws_start(struct ua_flow *f)
{
	struct uaws *w = state(f);
	if (!w)
		return ENOMEM;
	if (!f->ws_host[0]) {
		/* RFC 7118 5.2: a client that cannot be reached but over its
		 * connection names itself with a random .invalid host, kept for
		 * the ua's life so that re-registrations carry the same Contact */
		char r[17];
		ua_hex_rand(r, 8);
		snprintf(f->ws_host, sizeof f->ws_host, "%s.invalid", r);
	}
	uint8_t nonce[16];
	rand_bytes(nonce, sizeof nonce);
	ws_client_key(nonce, w->key);
	const struct ua_proxy *px = f->px;
	/* Host: as the URL names it; the port when not the scheme's own */
	char host[300];
	bool v6 = strchr(px->host, ':') != NULL;
	bool dflt = px->port == (px->tp == NET_WSS ? 443 : 80);
	snprintf(host, sizeof host, "%s%s%s", v6 ? "[" : "", px->host, v6 ? "]" : "");
	if (!dflt)
		snprintf(host + strlen(host), sizeof host - strlen(host), ":%u", px->port);
	struct buf b;
	buf_init(&b);
	int err = ws_client_request(host, f->ua->c.ws_path, f->ua->c.ws_origin, w->key, &b);
	if (!err)
		err = uaf_send_raw(f, b.data, b.len);
	buf_free(&b);
	return err;
}

int uaws_send(struct ua_flow *f, const void *p, size_t len)
{
	if (!f->ws || !f->ws->open)
		return ENOTCONN;
	/* SIP as we write it is ASCII: a text frame (RFC 7118 5.1 allows both) */
	return send_frame(f, WS_OP_TEXT, p, len);
}

int uaws_ping(struct ua_flow *f)
{
	if (!f->ws || !f->ws->open)
		return ENOTCONN;
	rand_bytes(f->ws->ping, sizeof f->ws->ping);
	return send_frame(f, WS_OP_PING, f->ws->ping, sizeof f->ws->ping);
}

void uaws_close(struct ua_flow *f)
{
	struct uaws *w = f->ws;
	if (!w)
		return;
	if (f->fd >= 0)
		send_close(f, WS_CLOSE_GOING_AWAY); /* best effort: the socket closes next */
	w->open = false;
	w->close_sent = false;
	memset(&w->ms, 0, sizeof w->ms);
	buf_reset(&w->msg);
}

void uaws_free(struct ua_flow *f)
{
	if (!f->ws)
		return;
	buf_free(&f->ws->msg);
	free(f->ws);
	f->ws = NULL;
}

/* The server's answer to the upgrade; *used: its length, 0 = not all here. */
static bool on_answer(struct ua_flow *f, size_t *used)
{
	struct uaws *w = f->ws;
	struct ws_response r;
	*used = 0;
	int err = ws_response_parse(f->rx.data, f->rx.len, WS_UPGRADE_MAX, &r, used);
	if (err == ENODATA)
		return true;
	char why[160];
	if (err) {
		snprintf(why, sizeof why, "the answer to the WebSocket upgrade is not HTTP%s",
			 err == EMSGSIZE ? " within 8 KiB" : "");
		ua_flow_failed(f, why, UA_EXIT_REFUSED);
		return false;
	}
	err = ws_response_check(&r, w->key);
	if (err == ECONNREFUSED) {
		snprintf(why, sizeof why, "the server refused the WebSocket upgrade: HTTP %u%s",
			 r.status, r.status == 403 ? " (is our Origin on its list?)" : "");
		ua_flow_failed(f, why, UA_EXIT_REFUSED);
		return false;
	}
	if (err) {
		ua_flow_failed(f,
			       "the server's 101 breaks RFC 6455 4.1 or RFC 7118 (accept value, "
			       "Upgrade, subprotocol sip, extensions)",
			       UA_EXIT_REFUSED);
		return false;
	}
	w->open = true;
	return true;
}

static void deliver(struct ua_flow *f, uint8_t op, const char *p, size_t n)
{
	if (op == WS_OP_TEXT && !ws_utf8_valid(p, n)) {
		fail(f, WS_CLOSE_BAD_DATA, "the server sent a text message that is not UTF-8",
		     UA_EXIT_ERROR);
		return;
	}
	size_t i = 0;
	while (i < n && (p[i] == '\r' || p[i] == '\n'))
		i++;
	if (i == n)
		return;		   /* blank lines: a keepalive some servers send in a frame */
	ua_on_sip(f, p, n, false); /* a message of its own: no Content-Length needed */
}

static void on_control(struct ua_flow *f, const struct ws_frame *fr, const char *pl)
{
	struct uaws *w = f->ws;
	if (fr->opcode == WS_OP_PING) {
		send_frame(f, WS_OP_PONG, pl, fr->plen); /* 5.5.3: its payload back */
	} else if (fr->opcode == WS_OP_PONG) {
		/* 5.5.3: an unsolicited pong is allowed, and answers nothing */
		if (f->ka_pending && fr->plen == sizeof w->ping &&
		    memcmp(pl, w->ping, sizeof w->ping) == 0)
			uaf_ka_answered(f);
	} else {
		uint16_t code = WS_CLOSE_NO_STATUS;
		bool bad = ws_close_parse(pl, fr->plen, &code) != 0;
		char why[96];
		snprintf(why, sizeof why, "the server closed the WebSocket (%u)", code);
		/* 5.5.1: answer a close with a close, then the TCP connection goes */
		fail(f,
		     bad			  ? WS_CLOSE_PROTOCOL
		     : code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL
						  : code,
		     why, UA_EXIT_TIMEOUT);
	}
}

/* One frame at p (whole); false when the flow was closed. */
static bool on_frame(struct ua_flow *f, const struct ws_frame *fr, const char *p)
{
	struct uaws *w = f->ws;
	const char *pl = p + fr->hlen;
	if (fr->opcode & 0x8) {
		on_control(f, fr, pl);
		return f->fd >= 0;
	}
	bool done = false;
	uint8_t op = 0;
	bool single = w->ms.opcode == 0 && fr->fin;
	int err = ws_msg_add(&w->ms, fr, UA_MAX_MSG, &done, &op);
	if (err) {
		fail(f, err == EMSGSIZE ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL,
		     err == EMSGSIZE ? "the server sent a WebSocket message above 64 KiB"
				     : "the server broke WebSocket fragmentation",
		     UA_EXIT_ERROR);
		return false;
	}
	if (single) {
		deliver(f, op, pl, fr->plen);
	} else {
		if (buf_append(&w->msg, pl, fr->plen)) {
			ua_flow_failed(f, "out of memory", UA_EXIT_ERROR);
			return false;
		}
		if (done) {
			deliver(f, op, w->msg.data, w->msg.len);
			if (f->ws)
				buf_reset(&w->msg);
		}
	}
	return f->fd >= 0;
}

bool uaws_input(struct ua_flow *f)
{
	struct uaws *w = f->ws;
	if (!w)
		return false;
	size_t off = 0;
	if (!w->open) {
		if (!on_answer(f, &off))
			return false;
		if (!w->open)
			return true; /* not all of it yet */
		uaf_up(f);
		if (f->fd < 0)
			return false;
	}
	for (;;) {
		struct ws_frame fr;
		int err = ws_frame_parse(f->rx.data + off, f->rx.len - off, false, UA_MAX_MSG, &fr);
		if (err == ENODATA)
			break;
		if (err) {
			/* a masked or malformed server frame, or one too big to hold */
			fail(f, err == EMSGSIZE ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL,
			     err == EMSGSIZE ? "the server sent a WebSocket frame above 64 KiB"
					     : "the server sent a malformed WebSocket frame",
			     UA_EXIT_ERROR);
			return false;
		}
		if (!on_frame(f, &fr, f->rx.data + off))
			return false;
		off += fr.hlen + fr.plen;
	}
	if (off) {
		memmove(f->rx.data, f->rx.data + off, f->rx.len - off);
		f->rx.len -= off;
	}
	return true;
}
