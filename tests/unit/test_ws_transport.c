/* SIP over WebSocket end to end in process: upgrade, REGISTER and a call over the flow, and the attacks: bad upgrades, unmasked, oversize, silent. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"
#include "ws/ws.h"

static const char *const CONF =
    "[sip]\nlisten = udp:127.0.0.1:0, ws:127.0.0.1:0\nt1 = 100\n"
    "ws_origins = https://good.example\n"
    "ws_ping_interval = 1\nws_pong_timeout = 1\ntcp_first_message_timeout = 2\n"
    "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n";

static int64_t metric_val(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

static int ws_connect(struct test_server *s)
{
	const struct net_addr *to = net_listener_addr(s->net, 1);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

static void send_all(int fd, const void *p, size_t l)
{
	assert_int_equal(send(fd, p, l, MSG_NOSIGNAL), (ssize_t)l);
}

/* Reads what arrives within ms (until the peer closes: *closed). */
static size_t read_for(int fd, char *out, size_t cap, int ms, bool *closed)
{
	size_t got = 0;
	*closed = false;
	uint64_t end = time_mono_ms() + (uint64_t)ms;
	while (got < cap - 1 && time_mono_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t k = recv(fd, out + got, cap - 1 - got, 0);
		if (k <= 0) {
			*closed = true;
			break;
		}
		got += (size_t)k;
	}
	out[got] = '\0';
	return got;
}

/* Reads an HTTP answer head within 3 s. */
static void http_expect(int fd, const char *prefix, char *out, size_t cap)
{
	size_t got = 0;
	out[0] = '\0';
	uint64_t end = time_mono_ms() + 3000;
	while (!strstr(out, "\r\n\r\n") && got < cap - 1 && time_mono_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t k = recv(fd, out + got, 1, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		out[got] = '\0';
	}
	if (strncmp(out, prefix, strlen(prefix)) != 0)
		fail_msg("expected \"%s\", got:\n%s", prefix, out);
}

static void upgrade_req(int fd, const char *origin, const char *proto)
{
	char req[1024];
	int n =
	    snprintf(req, sizeof req,
		     "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n%s%s%s\r\n",
		     proto, origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
	send_all(fd, req, (size_t)n);
}

static int ws_open(struct test_server *s)
{
	int fd = ws_connect(s);
	upgrade_req(fd, "https://good.example", "sip");
	char ans[1024];
	http_expect(fd, "HTTP/1.1 101 ", ans, sizeof ans);
	assert_non_null(strstr(ans, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
	assert_non_null(strstr(ans, "Sec-WebSocket-Protocol: sip\r\n"));
	return fd;
}

/* A client's frame: masked, as RFC 6455 5.1 wants. */
static void ws_send(int fd, bool fin, uint8_t op, const char *p, size_t l)
{
	static char out[70000];
	const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
	size_t h = ws_frame_hdr((uint8_t *)out, fin, op, l, key);
	memcpy(out + h, p, l);
	ws_mask(out + h, l, key);
	send_all(fd, out, h + l);
}

/* The next server frame within 3 s: its opcode, payload into out (NUL-ended). */
static int ws_recv(int fd, char *out, size_t cap, size_t *plen)
{
	static char in[70000];
	size_t got = 0;
	uint64_t end = time_mono_ms() + 3000;
	while (time_mono_ms() < end) {
		struct ws_frame fr;
		if (got && ws_frame_parse(in, got, false, sizeof in, &fr) == 0) {
			assert_true(fr.plen < cap);
			memcpy(out, in + fr.hlen, fr.plen);
			out[fr.plen] = '\0';
			*plen = fr.plen;
			/* one frame at a time: put back what follows */
			assert_int_equal(got, fr.hlen + fr.plen);
			return fr.opcode;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		/* two bytes, then exactly what the header says */
		size_t want = 2;
		if (got >= 2) {
			size_t l7 = (uint8_t)in[1] & 0x7f;
			size_t h = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
			want = h;
			if (got >= h) {
				struct ws_frame hf;
				int err = ws_frame_parse(in, got, false, sizeof in, &hf);
				want = err == ENODATA ? hf.hlen + hf.plen : got;
			}
		}
		ssize_t k = recv(fd, in + got, want > got ? want - got : 1, 0);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return -1;
}

/* The next SIP message over the WebSocket that starts with prefix, within 3 s. */
static void ws_expect_sip(int fd, const char *prefix, char *out, size_t cap)
{
	for (int i = 0; i < 10; i++) {
		size_t l;
		int op = ws_recv(fd, out, cap, &l);
		if (op < 0)
			fail_msg("no frame (waiting for \"%s\")", prefix);
		if (op == WS_OP_TEXT && strncmp(out, prefix, strlen(prefix)) == 0)
			return;
	}
	fail_msg("no \"%s\" over the WebSocket", prefix);
}

static void ws_register(int fd, const char *user, bool fragmented)
{
	char msg[2048];
	int n = snprintf(msg, sizeof msg,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKws%s\r\n"
			 "Max-Forwards: 70\r\n"
			 "From: <sip:%s@127.0.0.1>;tag=w1\r\nTo: <sip:%s@127.0.0.1>\r\n"
			 "Call-ID: ws-reg-%s\r\nCSeq: 1 REGISTER\r\n"
			 "Contact: <sip:%s@df7jal23ls0d.invalid;transport=ws>\r\n"
			 "Expires: 300\r\nContent-Length: 0\r\n\r\n",
			 user, user, user, user, user);
	if (!fragmented) {
		ws_send(fd, true, WS_OP_TEXT, msg, (size_t)n);
		return;
	}
	/* three fragments with a ping between them (RFC 6455 5.4: control
	 * frames may come in the middle of a fragmented message) */
	size_t a = (size_t)n / 3, b = 2 * (size_t)n / 3;
	ws_send(fd, false, WS_OP_TEXT, msg, a);
	ws_send(fd, true, WS_OP_PING, "hi", 2);
	ws_send(fd, false, WS_OP_CONT, msg + a, b - a);
	ws_send(fd, true, WS_OP_CONT, msg + b, (size_t)n - b);
}

static void test_register_and_call(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, CONF);
	int64_t up0 = metric_val("ws_upgrades_total", NULL);
	int fd = ws_open(&s);
	assert_int_equal(metric_val("ws_upgrades_total", NULL), up0 + 1);
	ws_register(fd, "alice", false);
	char msg[8192];
	ws_expect_sip(fd, "SIP/2.0 200", msg, sizeof msg);
	/* a Via received= names where it came from; WSS kept as the client wrote */
	assert_non_null(strstr(msg, "Via: SIP/2.0/WSS df7jal23ls0d.invalid;"));
	assert_non_null(strstr(msg, "received=127.0.0.1"));

	/* a call from a UDP phone reaches alice over her WebSocket only: her
	 * Contact's .invalid host is no address */
	struct phone bob;
	phone_open(&bob, &s);
	phone_invite(&bob, "alice", "ws-call-1", "z9hG4bKwsc1", 70);
	ws_expect_sip(fd, "INVITE sip:alice@df7jal23ls0d.invalid;transport=ws", msg, sizeof msg);
	/* our Via says WS, and the Record-Route names the flow over ws */
	assert_non_null(strstr(msg, "Via: SIP/2.0/WS 127.0.0.1:"));
	assert_non_null(strstr(msg, ";transport=ws;lr>"));
	/* alice answers over the WebSocket: bob hears it */
	char via[512], from[256], to[256], cseq[64], rr[1024];
	msg_header(msg, "Via", via, sizeof via);
	msg_header(msg, "From", from, sizeof from);
	msg_header(msg, "To", to, sizeof to);
	msg_header(msg, "CSeq", cseq, sizeof cseq);
	msg_header(msg, "Record-Route", rr, sizeof rr);
	/* every Via of the request, in order */
	char vias[2048] = "";
	for (const char *v = strstr(msg, "\r\nVia: "); v; v = strstr(v + 2, "\r\nVia: ")) {
		const char *e = strstr(v + 2, "\r\n");
		strncat(vias, v + 2, (size_t)(e - v));
	}
	char resp[4096];
	int n = snprintf(resp, sizeof resp,
			 "SIP/2.0 486 Busy Here\r\n%sFrom: %s\r\nTo: %s;tag=alice1\r\n"
			 "Call-ID: ws-call-1\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
			 vias, from, to, cseq);
	ws_send(fd, true, WS_OP_TEXT, resp, (size_t)n);
	char got[4096];
	phone_expect(&bob, "SIP/2.0 486", got, sizeof got);
	phone_close(&bob);
	close(fd);
	test_server_stop(&s);
}

static void test_fragmented_and_ping(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, CONF);
	int fd = ws_open(&s);
	ws_register(fd, "frag", true);
	char msg[8192];
	size_t l;
	/* the pong first, with the ping's payload, unmasked */
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_PONG);
	assert_string_equal(msg, "hi");
	ws_expect_sip(fd, "SIP/2.0 200", msg, sizeof msg);
	/* a close is answered with its code, then the server closes */
	ws_send(fd, true, WS_OP_CLOSE, "\x03\xe8", 2);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_int_equal(l, 2);
	assert_memory_equal(msg, "\x03\xe8", 2);
	bool closed;
	read_for(fd, msg, sizeof msg, 2000, &closed);
	assert_true(closed);
	close(fd);
	test_server_stop(&s);
}

/* Each bad upgrade: one short answer, then the connection is closed, counted. */
static void refused(struct test_server *s, const char *raw, const char *origin, const char *proto,
		    const char *status)
{
	char labels[32];
	snprintf(labels, sizeof labels, "status=\"%.3s\"", status);
	int64_t before = metric_val("ws_refused_total", labels);
	int fd = ws_connect(s);
	if (raw)
		send_all(fd, raw, strlen(raw));
	else
		upgrade_req(fd, origin, proto);
	char ans[4096];
	bool closed;
	size_t got = read_for(fd, ans, sizeof ans, 3000, &closed);
	if (strncmp(ans, "HTTP/1.1 ", 9) != 0 || strncmp(ans + 9, status, 3) != 0)
		fail_msg("expected %s, got %zu bytes:\n%s", status, got, ans);
	assert_true(closed);
	assert_true(got < 200); /* small whatever was sent */
	assert_int_equal(metric_val("ws_refused_total", labels), before + 1);
	close(fd);
}

static void test_bad_upgrades(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, CONF);
	refused(&s, NULL, "https://evil.example", "sip", "403");
	refused(&s, NULL, "https://good.example", "chat", "400");
	refused(&s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL, NULL, "426");
	/* SIP straight onto a ws: port is not HTTP */
	refused(&s,
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4\r\nContent-Length: "
		"0\r\n\r\n",
		NULL, NULL, "400");
	/* no Origin (not a browser): let in */
	int fd = ws_connect(&s);
	upgrade_req(fd, NULL, "sip");
	char ans[1024];
	http_expect(fd, "HTTP/1.1 101 ", ans, sizeof ans);
	close(fd);
	/* a request that never ends: refused at its size bound (400, counted),
	 * not buffered on until the time bound */
	int64_t r0 = metric_val("ws_refused_total", "status=\"400\"");
	fd = ws_connect(&s);
	static char big[WS_UPGRADE_MAX + 4096];
	memset(big, 'a', sizeof big);
	memcpy(big, "GET / HTTP/1.1\r\nX-Pad: ", 23);
	send(fd, big, sizeof big, MSG_NOSIGNAL);
	bool closed;
	read_for(fd, ans, sizeof ans, 3000, &closed);
	assert_true(closed);
	assert_int_equal(strncmp(ans, "HTTP/1.1 400", 12), 0);
	assert_int_equal(metric_val("ws_refused_total", "status=\"400\""), r0 + 1);
	close(fd);
	/* a half upgrade, then silence: closed at tcp_first_message_timeout */
	int64_t t0 = metric_val("ws_upgrade_timeouts_total", NULL);
	fd = ws_connect(&s);
	send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n", 25);
	read_for(fd, ans, sizeof ans, 6000, &closed);
	assert_true(closed);
	assert_int_equal(metric_val("ws_upgrade_timeouts_total", NULL), t0 + 1);
	close(fd);
	test_server_stop(&s);
}

/* Frames that break RFC 6455: the connection fails with the code that says why. */
static void test_bad_frames(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, CONF);
	char msg[1024];
	size_t l;
	bool closed;
	/* an unmasked client frame: 1002 */
	int64_t p0 = metric_val("ws_protocol_errors_total", NULL);
	int fd = ws_open(&s);
	send_all(fd, "\x81\x05Hello", 7);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_memory_equal(msg, "\x03\xea", 2);
	read_for(fd, msg, sizeof msg, 2000, &closed);
	assert_true(closed);
	assert_int_equal(metric_val("ws_protocol_errors_total", NULL), p0 + 1);
	close(fd);
	/* a frame header announcing more than [sip] max_message: 1009 at once,
	 * before any of its payload */
	int64_t o0 = metric_val("ws_oversize_total", NULL);
	fd = ws_open(&s);
	send_all(fd, "\x81\xff\x00\x00\x00\x00\x7f\xff\xff\xff\x01\x02\x03\x04", 14);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_memory_equal(msg, "\x03\xf1", 2);
	read_for(fd, msg, sizeof msg, 2000, &closed);
	assert_true(closed);
	assert_int_equal(metric_val("ws_oversize_total", NULL), o0 + 1);
	close(fd);
	/* fragments that add up to more than max_message: 1009 */
	fd = ws_open(&s);
	static char chunk[5000];
	memset(chunk, 'x', sizeof chunk);
	ws_send(fd, false, WS_OP_TEXT, chunk, sizeof chunk);
	ws_send(fd, true, WS_OP_CONT, chunk, sizeof chunk);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_memory_equal(msg, "\x03\xf1", 2);
	assert_int_equal(metric_val("ws_oversize_total", NULL), o0 + 2);
	close(fd);
	/* a continuation of nothing; text that is not UTF-8 */
	fd = ws_open(&s);
	ws_send(fd, true, WS_OP_CONT, "abc", 3);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_memory_equal(msg, "\x03\xea", 2);
	close(fd);
	fd = ws_open(&s);
	ws_send(fd, true, WS_OP_TEXT, "\xc0\xaf", 2);
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_CLOSE);
	assert_memory_equal(msg, "\x03\xef", 2);
	close(fd);
	test_server_stop(&s);
}

/* The flow keepalive: a silent WebSocket is pinged; one that answers stays,
 * one that does not is closed and its binding's flow fails (430). */
static void test_server_ping(void **state)
{
	(void)state;
	struct test_server s;
	test_server_start(&s, CONF);
	int64_t t0 = metric_val("ws_ping_timeouts_total", NULL);
	int fd = ws_open(&s);
	ws_register(fd, "quiet", false);
	char msg[8192];
	ws_expect_sip(fd, "SIP/2.0 200", msg, sizeof msg);
	/* answer two pings: still open */
	for (int i = 0; i < 2; i++) {
		size_t l;
		assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_PING);
		ws_send(fd, true, WS_OP_PONG, msg, l);
	}
	/* then play dead: closed within ping interval + pong timeout (+ a sweep) */
	size_t l;
	assert_int_equal(ws_recv(fd, msg, sizeof msg, &l), WS_OP_PING);
	bool closed;
	read_for(fd, msg, sizeof msg, 5000, &closed);
	assert_true(closed);
	assert_int_equal(metric_val("ws_ping_timeouts_total", NULL), t0 + 1);
	close(fd);
	/* a call for quiet now finds no way to her: not sent anywhere else */
	struct phone bob;
	phone_open(&bob, &s);
	phone_invite(&bob, "quiet", "ws-call-2", "z9hG4bKwsc2", 70);
	char got[4096];
	phone_expect(&bob, "SIP/2.0 4", got, sizeof got);
	fprintf(stderr, "after the ping timeout: %.40s\n", got);
	phone_close(&bob);
	test_server_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_and_call), cmocka_unit_test(test_fragmented_and_ping),
	    cmocka_unit_test(test_bad_upgrades),      cmocka_unit_test(test_bad_frames),
	    cmocka_unit_test(test_server_ping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
