/* WebSocket client side: the codec's key, request and 101 check, and pinhole ua over a scripted
 * WebSocket server on loopback (masked frames, ping/pong both ways, close, broken server frames).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ua/ua.h"
#include "ws/ws.h"
#include "uatest.h"

/* ---- the codec ---- */

/* RFC 6455 4.1: the sample nonce is "the sample nonce" */
static void test_client_key(void **state)
{
	(void)state;
	char k[25];
	ws_client_key((const uint8_t *)"the sample nonce", k);
	assert_string_equal(k, "dGhlIHNhbXBsZSBub25jZQ==");
}

static int answer_of(const char *resp, const char *key)
{
	struct ws_response r;
	size_t used = 0;
	int err = ws_response_parse(resp, strlen(resp), WS_UPGRADE_MAX, &r, &used);
	if (err)
		return 1000 + err;
	assert_int_equal(used, strlen(resp));
	return ws_response_check(&r, key);
}

/* Our request passes the server's own parser and decision; its answer passes
 * ours; every way a 101 can be wrong is refused. */
static void test_request_and_answer(void **state)
{
	(void)state;
	uint8_t nonce[16];
	for (int i = 0; i < 16; i++)
		nonce[i] = (uint8_t)(i * 37 + 1);
	char key[25];
	ws_client_key(nonce, key);
	struct buf req;
	buf_init(&req);
	assert_int_equal(
	    ws_client_request("sip.example.org:8443", "/ws", "https://a.example", key, &req), 0);
	struct ws_upgrade u;
	size_t used;
	assert_int_equal(ws_upgrade_parse(req.data, req.len, WS_UPGRADE_MAX, &u, &used), 0);
	assert_int_equal(used, req.len);
	assert_true(u.sip_offered);
	assert_true(slice_eq_cstr_nocase(u.host, "sip.example.org:8443"));
	assert_true(slice_eq_cstr_nocase(u.path, "/ws"));
	assert_int_equal(ws_upgrade_check(&u, "https://a.example"), 101);
	assert_int_equal(ws_upgrade_check(&u, "https://b.example"), 403);
	struct buf ans;
	buf_init(&ans);
	assert_int_equal(ws_upgrade_answer(&u, 101, &ans), 0);
	buf_append(&ans, "", 1);
	assert_int_equal(answer_of(ans.data, key), 0);
	/* the same answer for another key: a cached or forged 101 */
	char other[25];
	nonce[0] ^= 1;
	ws_client_key(nonce, other);
	assert_int_equal(answer_of(ans.data, other), EBADMSG);
	buf_free(&ans);
	buf_free(&req);

	char acc[29];
	assert_int_equal(ws_accept_key(slice_cstr(key), acc), 0);
	char r[512];
#define R101(proto, extra)                                                                         \
	snprintf(r, sizeof r,                                                                      \
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "          \
		 "Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s\r\n",                                \
		 acc, proto, extra)
	R101("Sec-WebSocket-Protocol: sip\r\n", "");
	assert_int_equal(answer_of(r, key), 0);
	R101("", ""); /* RFC 7118 4: no subprotocol, no SIP */
	assert_int_equal(answer_of(r, key), EBADMSG);
	R101("Sec-WebSocket-Protocol: chat\r\n", "");
	assert_int_equal(answer_of(r, key), EBADMSG);
	R101("Sec-WebSocket-Protocol: sip\r\n", "Sec-WebSocket-Extensions: permessage-deflate\r\n");
	assert_int_equal(answer_of(r, key), EBADMSG);
	R101("Sec-WebSocket-Protocol: sip\r\n", "Sec-WebSocket-Accept: x\r\n");
	assert_int_equal(answer_of(r, key), EBADMSG);
	/* the accept value is base64: compared with its case */
	R101("Sec-WebSocket-Protocol: sip\r\n", "");
	char *a = strstr(r, "Accept: ") + 8;
	for (; *a != '\r'; a++)
		if (*a >= 'a' && *a <= 'z') {
			*a = (char)(*a - 'a' + 'A');
			break;
		}
	assert_int_equal(answer_of(r, key), EBADMSG);
	assert_int_equal(answer_of("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n", key),
			 ECONNREFUSED);
	assert_int_equal(answer_of("HTTP/1.1 200 OK\r\n\r\n", key), ECONNREFUSED);
	assert_int_equal(answer_of("SIP/2.0 200 OK\r\n\r\n", key), 1000 + EBADMSG);
	assert_int_equal(answer_of("HTTP/1.1 1O1 x\r\n\r\n", key), 1000 + EBADMSG);
	/* an answer that never ends is bounded */
	struct ws_response wr;
	static char big[WS_UPGRADE_MAX + 10];
	memset(big, 'a', sizeof big);
	memcpy(big, "HTTP/1.1 101 x\r\nX: ", 19);
	assert_int_equal(ws_response_parse(big, sizeof big, WS_UPGRADE_MAX, &wr, &used), EMSGSIZE);
	assert_int_equal(ws_response_parse(big, 100, WS_UPGRADE_MAX, &wr, &used), ENODATA);
	/* header injection through what we write is refused */
	buf_init(&req);
	assert_int_equal(ws_client_request("h\r\nX: y", "/", NULL, key, &req), EINVAL);
	assert_int_equal(ws_client_request("h", "/a b", NULL, key, &req), EINVAL);
	assert_int_equal(ws_client_request("h", "nopath", NULL, key, &req), EINVAL);
	assert_int_equal(ws_client_request("h", NULL, "o\r\n", key, &req), EINVAL);
	assert_int_equal(req.len, 0);
	buf_free(&req);
}

/* ---- the ua over a scripted server ---- */

struct harness {
	struct uat_rec r;
	struct ua_conf c;
	struct loop *l;
	struct ua *ua;
	pthread_t th;
	int lfd, fd;
	char in[1 << 17];
	size_t len;
};

static struct harness *h_start(unsigned keepalive_s)
{
	struct harness *h = calloc(1, sizeof *h);
	uat_rec_init(&h->r, 64);
	snprintf(h->c.aor, sizeof h->c.aor, "sip:alice@example.test");
	snprintf(h->c.instance, sizeof h->c.instance,
		 "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	h->c.ws_origin = "https://phone.example";
	h->c.keepalive_s = keepalive_s;
	h->c.once = keepalive_s == 0; /* with keepalives: stay registered */
	h->c.linger_ms = UAT_WAIT_MS; /* a closing flow's queue: never cut short here */
	h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct net_addr a;
	net_addr_parse("127.0.0.1:0", 0, &a);
	assert_int_equal(bind(h->lfd, &a.u.sa, net_addr_len(&a)), 0);
	assert_int_equal(listen(h->lfd, 4), 0);
	net_sock_addr(h->lfd, &a);
	struct ua_proxy *px = &h->c.proxy[h->c.n_proxy++];
	px->tp = NET_WS;
	px->addr = a;
	snprintf(px->host, sizeof px->host, "127.0.0.1");
	px->port = net_addr_port(&a);
	assert_int_equal(loop_alloc(&h->l), 0);
	assert_int_equal(ua_alloc(&h->ua, h->l, &h->c, uat_on_event, &h->r), 0);
	assert_int_equal(ua_start(h->ua), 0);
	assert_int_equal(pthread_create(&h->th, NULL, uat_run_loop, h->l), 0);
	struct pollfd p = {.fd = h->lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	h->fd = accept(h->lfd, NULL, NULL);
	assert_true(h->fd >= 0);
	return h;
}

static void h_free(struct harness *h)
{
	loop_stop(h->l);
	pthread_join(h->th, NULL);
	ua_free(h->ua);
	loop_free(h->l);
	close(h->fd);
	close(h->lfd);
	free(h);
}

/* More bytes from the ua; false when it closed the connection. */
static bool more(struct harness *h)
{
	struct pollfd p = {.fd = h->fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	ssize_t n = recv(h->fd, h->in + h->len, sizeof h->in - h->len, 0);
	assert_true(n >= 0);
	h->len += (size_t)n;
	return n > 0;
}

/* The upgrade request: checked as pinhole's server checks it; its answer
 * (101, or `status`, or a 101 for another key when forged). */
static void upgrade(struct harness *h, unsigned status, bool forged)
{
	struct ws_upgrade u;
	size_t used = 0;
	int err;
	while ((err = ws_upgrade_parse(h->in, h->len, WS_UPGRADE_MAX, &u, &used)) == ENODATA)
		assert_true(more(h));
	assert_int_equal(err, 0);
	assert_int_equal(ws_upgrade_check(&u, "https://phone.example"), 101);
	assert_true(slice_eq_cstr_nocase(u.path, "/"));
	char host[64];
	snprintf(host, sizeof host, "127.0.0.1:%u", h->c.proxy[0].port);
	assert_true(slice_eq_cstr_nocase(u.host, host));
	if (forged)
		u.key = SLICE_LIT("dGhlIHNhbXBsZSBub25jZQ==");
	struct buf b;
	buf_init(&b);
	assert_int_equal(ws_upgrade_answer(&u, status, &b), 0);
	assert_int_equal(send(h->fd, b.data, b.len, 0), (ssize_t)b.len);
	buf_free(&b);
	memmove(h->in, h->in + used, h->len - used);
	h->len -= used;
}

/* The next frame from the ua: it must be masked (RFC 6455 5.1); unmasked
 * into out. Returns its opcode, -1 when the connection closed. */
static int next_frame(struct harness *h, char *out, size_t cap, size_t *plen)
{
	struct ws_frame fr;
	int err;
	while ((err = ws_frame_parse(h->in, h->len, true, 1 << 16, &fr)) == ENODATA)
		if (!more(h))
			return -1;
	assert_int_equal(err, 0); /* EBADMSG here: an unmasked client frame */
	assert_true(fr.fin);
	assert_true(fr.plen < cap);
	memcpy(out, h->in + fr.hlen, fr.plen);
	ws_mask(out, fr.plen, fr.mask);
	out[fr.plen] = '\0';
	*plen = fr.plen;
	size_t all = fr.hlen + fr.plen;
	memmove(h->in, h->in + all, h->len - all);
	h->len -= all;
	return fr.opcode;
}

/* A server frame (unmasked), its header given whole. */
static void send_frame(struct harness *h, enum ws_opcode op, const void *p, size_t len)
{
	uint8_t hdr[WS_HDR_MAX];
	size_t hl = ws_frame_hdr(hdr, true, op, len, NULL);
	assert_int_equal(send(h->fd, hdr, hl, 0), (ssize_t)hl);
	if (len)
		assert_int_equal(send(h->fd, p, len, 0), (ssize_t)len);
}

static void reply(struct harness *h, const struct sip_msg *req, uint16_t status, const char *extra)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(
	    sip_build_response(&b, req, status, NULL, SLICE_NULL, SLICE_LIT("srv1"), extra), 0);
	send_frame(h, WS_OP_TEXT, b.data, b.len);
	buf_free(&b);
}

/* Registered over ws: as RFC 7118 says (Via WS, a .invalid Contact with
 * transport=ws, every frame masked with a fresh key); a server ping answered
 * with its payload; our keepalive is a ping whose pong counts; a masked
 * frame from the server fails the flow with close 1002, and the flow is
 * formed again at once. */
static void test_ua_over_ws(void **state)
{
	(void)state;
	static char out[1 << 16];
	static struct sip_msg m;
	struct harness *h = h_start(1);
	upgrade(h, 101, false);
	size_t n;
	assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_TEXT);
	assert_int_equal(sip_msg_parse(&m, out, n, false, NULL), 0);
	assert_int_equal(m.method, SIP_REGISTER);
	assert_true(slice_eq_cstr_nocase(m.via1.transport, "WS"));
	assert_true(
	    m.via1.host.l > 8 &&
	    slice_eq_cstr_nocase((struct slice){m.via1.host.p + m.via1.host.l - 8, 8}, ".invalid"));
	const struct sip_hdr *c = sip_msg_hdr(&m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(c->value, &na), 0);
	assert_true(slice_eq(na.uri.host, m.via1.host));
	struct sip_param tp;
	assert_true(sip_param_find(na.uri.params, "transport", &tp));
	assert_true(slice_eq_cstr_nocase(tp.value, "ws"));
	char extra[1024];
	snprintf(extra, sizeof extra, "Contact: %.*s;expires=600\r\nRequire: outbound\r\n",
		 (int)c->value.l, c->value.p);
	reply(h, &m, 200, extra);
	uat_wait(&h->r, UA_EV_REGISTERED, NULL, 0);

	/* the server's ping: a pong with the same payload */
	send_frame(h, WS_OP_PING, "abc", 3);
	int op;
	while ((op = next_frame(h, out, sizeof out, &n)) == WS_OP_PING) {
		/* our keepalive came first: left unanswered for now */
	}
	assert_int_equal(op, WS_OP_PONG);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "abc", 3);

	/* our keepalive: a ping; a pong with another payload answers nothing,
	 * the right one does */
	uint8_t pl[125];
	while ((op = next_frame(h, out, sizeof out, &n)) != WS_OP_PING)
		assert_int_equal(op, WS_OP_PONG);
	assert_true(n > 0 && n <= 125);
	memcpy(pl, out, n);
	send_frame(h, WS_OP_PONG, "zzzz", 4);
	send_frame(h, WS_OP_PONG, pl, n);
	uat_wait(&h->r, UA_EV_KEEPALIVE_OK, NULL, 0);

	/* RFC 6455 5.1: a masked frame from the server fails the connection */
	uint8_t mask[4] = {1, 2, 3, 4}, hdr[WS_HDR_MAX];
	char body[] = "OPTIONS sip:x SIP/2.0\r\n\r\n";
	size_t hl = ws_frame_hdr(hdr, true, WS_OP_TEXT, sizeof body - 1, mask);
	ws_mask(body, sizeof body - 1, mask);
	/* in one segment: bytes the ua left unread when it closes would make
	 * its kernel answer with a reset, which discards its close frame here */
	char whole[WS_HDR_MAX + sizeof body];
	memcpy(whole, hdr, hl);
	memcpy(whole + hl, body, sizeof body - 1);
	assert_int_equal(send(h->fd, whole, hl + sizeof body - 1, 0),
			 (ssize_t)(hl + sizeof body - 1));
	size_t i = uat_wait(&h->r, UA_EV_FLOW_DOWN, NULL, 0);
	assert_non_null(strstr(h->r.ev[i].detail, "malformed WebSocket frame"));
	while ((op = next_frame(h, out, sizeof out, &n)) == WS_OP_PING || op == WS_OP_PONG)
		;
	assert_int_equal(op, WS_OP_CLOSE);
	assert_int_equal(n, 2);
	assert_int_equal(((uint8_t)out[0] << 8) | (uint8_t)out[1], WS_CLOSE_PROTOCOL);
	assert_int_equal(next_frame(h, out, sizeof out, &n), -1); /* and closed */

	/* RFC 5626 4.5: a flow that worked is replaced at once: a new
	 * connection, a new upgrade (a new key), the same .invalid Contact */
	char host[64];
	snprintf(host, sizeof host, "%.*s", (int)m.via1.host.l, m.via1.host.p);
	close(h->fd);
	h->len = 0;
	struct pollfd lp = {.fd = h->lfd, .events = POLLIN};
	assert_int_equal(poll(&lp, 1, UAT_WAIT_MS), 1);
	h->fd = accept(h->lfd, NULL, NULL);
	assert_true(h->fd >= 0);
	upgrade(h, 101, false);
	assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_TEXT);
	assert_int_equal(sip_msg_parse(&m, out, n, false, NULL), 0);
	assert_int_equal(m.method, SIP_REGISTER);
	assert_true(slice_eq_cstr_nocase(m.via1.host, host));
	h_free(h);
}

/* A 101 whose accept value is not our key's (a proxy or cache answering for
 * the server) is refused before any SIP goes out; so is a 403. */
static void test_ua_refuses_bad_101(void **state)
{
	(void)state;
	static char out[4096];
	for (int k = 0; k < 2; k++) {
		struct harness *h = h_start(0);
		upgrade(h, k ? 403 : 101, k == 0);
		size_t i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
		assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_REFUSED);
		i = uat_wait(&h->r, UA_EV_FLOW_DOWN, NULL, 0);
		assert_non_null(strstr(h->r.ev[i].detail, k ? "HTTP 403" : "breaks RFC 6455"));
		size_t n;
		assert_int_equal(next_frame(h, out, sizeof out, &n), -1); /* nothing sent */
		assert_int_equal(h->len, 0);
		h_free(h);
	}
}

/* A frame above 64 KiB, known from its header: close 1009, the payload is
 * never awaited; the server's close is answered with a close. */
static void test_ua_frame_bounds(void **state)
{
	(void)state;
	static char out[1 << 16];
	static struct sip_msg m;
	for (int k = 0; k < 2; k++) {
		struct harness *h = h_start(0);
		upgrade(h, 101, false);
		size_t n;
		assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_TEXT);
		assert_int_equal(sip_msg_parse(&m, out, n, false, NULL), 0);
		if (k == 0) {
			uint8_t hdr[WS_HDR_MAX];
			size_t hl = ws_frame_hdr(hdr, true, WS_OP_TEXT, 1u << 30, NULL);
			assert_int_equal(send(h->fd, hdr, hl, 0), (ssize_t)hl);
		} else {
			send_frame(h, WS_OP_CLOSE, "\x03\xe9", 2); /* 1001 going away */
		}
		size_t i = uat_wait(&h->r, UA_EV_FLOW_DOWN, NULL, 0);
		assert_non_null(
		    strstr(h->r.ev[i].detail, k ? "closed the WebSocket (1001)" : "above 64 KiB"));
		assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_CLOSE);
		assert_int_equal(((uint8_t)out[0] << 8) | (uint8_t)out[1],
				 k ? 1001 : WS_CLOSE_TOO_BIG);
		assert_int_equal(next_frame(h, out, sizeof out, &n), -1);
		h_free(h);
	}
}

/* The ua's own socket of the connection the harness accepted (same process). */
static int ua_socket_of(struct harness *h)
{
	struct net_addr peer;
	socklen_t pl = sizeof peer.u.ss;
	memset(&peer, 0, sizeof peer);
	assert_int_equal(getpeername(h->fd, &peer.u.sa, &pl), 0);
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int found = -1;
	for (struct dirent *e; (e = readdir(d));) {
		int fd = atoi(e->d_name);
		struct net_addr a;
		if (e->d_name[0] != '.' && fd != h->fd && fd != dirfd(d) &&
		    net_sock_addr(fd, &a) == 0 && net_addr_eq(&a, &peer))
			found = fd;
	}
	closedir(d);
	assert_true(found >= 0);
	return found;
}

/* Fills the way from the ua's socket ufd to us until its kernel takes no
 * more. MSG_EOR: each write ends its own buffer, so a later small write (the
 * ua's close frame) cannot slip into the room left in the last one and needs
 * send buffer space, which comes back only when we read. Returns the bytes. */
static size_t fill(int ufd)
{
	static char junk[4096];
	memset(junk, 'j', sizeof junk);
	size_t filled = 0;
	for (;;) {
		ssize_t k = send(ufd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL | MSG_EOR);
		if (k < 0) {
			assert_int_equal(errno, EAGAIN);
			return filled;
		}
		filled += (size_t)k;
		assert_true(filled < (64u << 20));
	}
}

/* One try of the case below; false when the kernel found room for the close
 * frame after all (the segment that carries the server's frame also
 * acknowledges and may open the window), so the frame left at once: then it
 * must still come after everything before it, which is checked too. */
static bool close_drains_once(void)
{
	static char out[1 << 16];
	static struct sip_msg m;
	struct harness *h = h_start(30);
	upgrade(h, 101, false);
	size_t n;
	assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_TEXT);
	assert_int_equal(sip_msg_parse(&m, out, n, false, NULL), 0);
	reply(h, &m, 200, NULL);
	uat_wait(&h->r, UA_EV_REGISTERED, NULL, 0);
	/* bytes on the ua's own socket (the ua is idle, registered for an hour)
	 * until its kernel takes no more */
	int ufd = ua_socket_of(h);
	int small = 4096;
	setsockopt(ufd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	setsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	size_t filled = 0;
	for (int quiet = 0; quiet < 3;) {
		/* acknowledged at once: an acknowledgement held back would come
		 * with our next segment and free room for the close frame */
		int one = 1;
		setsockopt(h->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
		size_t k = fill(ufd);
		filled += k;
		quiet = k ? 0 : quiet + 1;
		usleep(10000);
	}
	filled += fill(ufd);
	/* a masked frame from the server fails the flow (close 1002) */
	uint8_t mask[4] = {1, 2, 3, 4}, hdr[WS_HDR_MAX];
	char body[] = "OPTIONS sip:x SIP/2.0\r\n\r\n", whole[WS_HDR_MAX + sizeof body];
	size_t hl = ws_frame_hdr(hdr, true, WS_OP_TEXT, sizeof body - 1, mask);
	ws_mask(body, sizeof body - 1, mask);
	memcpy(whole, hdr, hl);
	memcpy(whole + hl, body, sizeof body - 1);
	assert_int_equal(send(h->fd, whole, hl + sizeof body - 1, 0),
			 (ssize_t)(hl + sizeof body - 1));
	uat_wait(&h->r, UA_EV_FLOW_DOWN, NULL, 0);
	struct ua_stats st;
	ua_stats_get(h->ua, &st); /* written by the ua's thread before the event */
	assert_true(st.flows_lingered <= 1);
	/* the flow connects again (while the old connection still waits, when
	 * the frame did not fit) */
	struct pollfd lp = {.fd = h->lfd, .events = POLLIN};
	assert_int_equal(poll(&lp, 1, UAT_WAIT_MS), 1);
	int fd2 = accept(h->lfd, NULL, NULL);
	assert_true(fd2 >= 0);
	/* now read the old one: the filler, then the close frame, then the end */
	for (size_t got = 0; got < filled;) {
		struct pollfd p = {.fd = h->fd, .events = POLLIN};
		assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
		size_t want = filled - got < sizeof out ? filled - got : sizeof out;
		ssize_t k = recv(h->fd, out, want, 0);
		assert_true(k > 0);
		for (ssize_t i = 0; i < k; i++)
			assert_int_equal(out[i], 'j');
		got += (size_t)k;
	}
	assert_int_equal(next_frame(h, out, sizeof out, &n), WS_OP_CLOSE);
	assert_int_equal(n, 2);
	assert_int_equal(((uint8_t)out[0] << 8) | (uint8_t)out[1], WS_CLOSE_PROTOCOL);
	assert_int_equal(next_frame(h, out, sizeof out, &n), -1);
	close(h->fd);
	h->fd = fd2;
	h->len = 0;
	h_free(h);
	return st.flows_lingered == 1;
}

/* A flow that fails while the kernel has no room for its close frame (the
 * server stopped reading): the frame waits in the ua's queue and goes out,
 * after everything before it, once the server reads again; then that
 * connection closes. Meanwhile the flow is formed again on a new one. The
 * kernel decides whether the frame fits; tries until it did not. */
static void test_ua_close_drains_queue(void **state)
{
	(void)state;
	for (int tries = 0; tries < 20; tries++)
		if (close_drains_once())
			return;
	/* the kernel decides whether the frame fits, and found room each time:
	 * the waiting queue was not reached in this run (the order was checked) */
	skip();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_key),	    cmocka_unit_test(test_request_and_answer),
	    cmocka_unit_test(test_ua_over_ws),	    cmocka_unit_test(test_ua_refuses_bad_101),
	    cmocka_unit_test(test_ua_frame_bounds), cmocka_unit_test(test_ua_close_drains_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
