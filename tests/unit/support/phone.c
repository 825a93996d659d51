/* Test support: an in-process SIP server and loopback phones (see phone.h). */
#include <setjmp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"
#include "auth/auth.h"
#include "echo/echo.h"
#include "relay/relay.h"

static const struct conf_key *const tables[] = {edge_conf_keys, proxy_conf_keys, proxy_upstream_conf_keys,
						registrar_conf_keys, auth_conf_keys, relay_conf_keys, echo_conf_keys, NULL};

void test_server_start(struct test_server *s, const char *conf_text)
{
	memset(s, 0, sizeof *s);
	char err[256];
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	if (conf_load_string(s->conf, "test", conf_text, err, sizeof err))
		fail_msg("config: %s", err);
	/* memory only, unless the config names a [store] */
	struct store_conf sc = {
	    .path = NULL,
	    .sync = STORE_SYNC_NORMAL,
	    .max_per_aor = (unsigned)conf_int(s->conf, "registrar", "max_contacts"),
	    .max_bindings = (size_t)conf_int(s->conf, "registrar", "max_bindings"),
	};
	if (conf_section_present(s->conf, "store") && conf_str(s->conf, "store", "path")[0])
		sc.path = conf_str(s->conf, "store", "path");
	assert_int_equal(store_alloc(&s->store, &sc), 0);
	assert_int_equal(store_cred_alloc(&s->creds), 0);
	struct net_conf nc = {
	    .workers = 2,
	    .max_msg = 8192,
	    .tcp_idle_s = (unsigned)conf_int(s->conf, "sip", "tcp_idle_timeout"),
	    .tcp_handshake_s = (unsigned)conf_int(s->conf, "sip", "tcp_first_message_timeout"),
	    .ws_ping_s = (unsigned)conf_int(s->conf, "sip", "ws_ping_interval"),
	    .ws_pong_s = (unsigned)conf_int(s->conf, "sip", "ws_pong_timeout"),
	};
	assert_int_equal(net_alloc(&s->net, &nc), 0);
	assert_int_equal(edge_alloc(&s->edge, s->net, s->conf), 0);
	assert_int_equal(registrar_alloc(&s->reg, s->edge, s->store, s->creds, s->conf), 0);
	if (conf_section_present(s->conf, "relay"))
		assert_int_equal(relay_start(&s->relay, s->net, s->conf), 0);
	assert_int_equal(proxy_alloc(&s->proxy, s->edge, s->reg, s->relay, s->conf), 0);
	if (conf_section_present(s->conf, "echo")) {
		assert_int_equal(echo_start(&s->echo, s->net, s->conf), 0);
		proxy_set_service(s->proxy, echo_route, s->echo);
	}
	assert_int_equal(registrar_start(s->reg), 0);
	assert_int_equal(net_start(s->net), 0);
	s->addr = *net_listener_addr(s->net, 0);
}

void test_server_stop(struct test_server *s)
{
	net_stop(s->net);
	echo_free(s->echo);
	proxy_free(s->proxy);
	relay_free(s->relay);
	registrar_free(s->reg);
	edge_free(s->edge);
	net_free(s->net);
	store_free(s->store);
	store_cred_free(s->creds);
	conf_free(s->conf);
}

void phone_open(struct phone *p, struct test_server *srv)
{
	phone_open_at(p, srv, "127.0.0.1");
}

void phone_open_at(struct phone *p, struct test_server *srv, const char *ip)
{
	p->srv = srv;
	p->fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct net_addr lo, me;
	assert_int_equal(net_addr_parse(ip, 0, &lo), 0);
	assert_int_equal(bind(p->fd, &lo.u.sa, net_addr_len(&lo)), 0);
	net_sock_addr(p->fd, &me);
	p->port = net_addr_port(&me);
}

void phone_close(struct phone *p)
{
	close(p->fd);
}

static void send_raw(struct phone *p, const char *msg, size_t n)
{
	const struct net_addr *to = &p->srv->addr;
	assert_true(sendto(p->fd, msg, n, 0, &to->u.sa, net_addr_len(to)) == (ssize_t)n);
}

void phone_send(struct phone *p, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof msg);
	send_raw(p, msg, (size_t)n);
}

void phone_expect(struct phone *p, const char *prefix, char *out, size_t len)
{
	for (int i = 0; i < 10; i++) {
		ssize_t k = recv(p->fd, out, len - 1, 0);
		if (k <= 0)
			fail_msg("phone %u: nothing received while waiting for \"%s\"", p->port,
				 prefix);
		out[k] = '\0';
		if (strncmp(out, prefix, strlen(prefix)) == 0)
			return;
	}
	fail_msg("phone %u: \"%s\" never came", p->port, prefix);
}

int phone_drain(struct phone *p, int ms, size_t *bytes, char *first, size_t len)
{
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int n = 0, left = ms;
	while (left > 0 && poll(&pfd, 1, left) > 0) {
		char out[8192];
		ssize_t k = recv(p->fd, out, sizeof out - 1, 0);
		if (k > 0) {
			if (n == 0 && first && len) {
				out[k] = '\0';
				snprintf(first, len, "%s", out);
			}
			n++;
			*bytes += (size_t)k;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
	}
	return n;
}

void phone_expect_silence(struct phone *p, int ms)
{
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) <= 0)
		return;
	char out[4096];
	ssize_t k = recv(p->fd, out, sizeof out - 1, 0);
	out[k > 0 ? k : 0] = '\0';
	fail_msg("phone %u: expected nothing, received:\n%s", p->port, out);
}

void msg_header(const char *msg, const char *name, char *out, size_t len)
{
	char key[64];
	snprintf(key, sizeof key, "\r\n%s: ", name);
	const char *h = strstr(msg, key);
	if (!h)
		fail_msg("no %s header in:\n%s", name, msg);
	h += strlen(key);
	const char *e = strstr(h, "\r\n");
	snprintf(out, len, "%.*s", (int)(e - h), h);
}

static bool starts(const char *line, const char *name)
{
	return strncmp(line, name, strlen(name)) == 0;
}

void phone_reply_registrar(struct phone *reg, const char *req, const char *status,
			   const char *extra)
{
	char out[4096];
	size_t n = (size_t)snprintf(out, sizeof out, "SIP/2.0 %s\r\n", status);
	for (const char *l = strstr(req, "\r\n") + 2; *l && strncmp(l, "\r\n", 2);) {
		const char *e = strstr(l, "\r\n");
		if (starts(l, "Via:") || starts(l, "From:") || starts(l, "Call-ID:") ||
		    starts(l, "CSeq:"))
			n += (size_t)snprintf(out + n, sizeof out - n, "%.*s\r\n", (int)(e - l),
					      l);
		else if (starts(l, "To:"))
			n += (size_t)snprintf(out + n, sizeof out - n, "%.*s;tag=reg\r\n",
					      (int)(e - l), l);
		l = e + 2;
	}
	snprintf(out + n, sizeof out - n, "%sContent-Length: 0\r\n\r\n", extra);
	phone_send(reg, "%s", out);
}

void phone_reply(struct phone *p, const char *req, int status, const char *reason,
		 const char *tag)
{
	phone_reply_sdp(p, req, status, reason, tag, NULL);
}

int phone_build_reply(const char *req, int status, const char *reason, const char *tag,
		      uint16_t contact_port, const char *sdp, char *resp, size_t cap)
{
	int n = snprintf(resp, cap, "SIP/2.0 %d %s\r\n", status, reason);
	for (const char *line = strstr(req, "\r\n") + 2; !starts(line, "\r\n");
	     line = strstr(line, "\r\n") + 2) {
		const char *e = strstr(line, "\r\n");
		int l = (int)(e - line);
		if (starts(line, "Via:") || starts(line, "From:") || starts(line, "Call-ID:") ||
		    starts(line, "CSeq:") || starts(line, "Record-Route:")) {
			n += snprintf(resp + n, cap - (size_t)n, "%.*s\r\n", l, line);
		} else if (starts(line, "To:")) {
			const char *t = strstr(line, "tag=");
			bool tagged = t && t < e; /* a CANCEL's or in-dialog To keeps its tag */
			n += snprintf(resp + n, cap - (size_t)n, "%.*s%s%s\r\n", l, line,
				      tagged ? "" : ";tag=", tagged ? "" : tag);
		}
	}
	if (sdp)
		n += snprintf(resp + n, cap - (size_t)n,
			      "Contact: <sip:callee@127.0.0.1:%u>\r\nContent-Type: application/sdp\r\n"
			      "Content-Length: %zu\r\n\r\n%s",
			      contact_port, strlen(sdp), sdp);
	else
		n += snprintf(resp + n, cap - (size_t)n,
			      "Contact: <sip:callee@127.0.0.1:%u>\r\nContent-Length: 0\r\n\r\n",
			      contact_port);
	assert_true(n > 0 && (size_t)n < cap);
	return n;
}

void phone_reply_sdp(struct phone *p, const char *req, int status, const char *reason,
		     const char *tag, const char *sdp)
{
	char resp[4096];
	int n = phone_build_reply(req, status, reason, tag, p->port, sdp, resp, sizeof resp);
	send_raw(p, resp, (size_t)n);
}

void phone_register(struct phone *p, const char *user)
{
	char r[4096];
	unsigned seq = ++p->srv->seq;
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKreg%u\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=r%u\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: reg-%u-%u\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:%s@10.1.1.1:%u>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   p->port, seq, user, seq, user, p->port, seq, user, p->port);
	phone_expect(p, "SIP/2.0 200", r, sizeof r);
}

void phone_invite(struct phone *caller, const char *callee, const char *call_id,
		  const char *branch, int max_forwards)
{
	phone_send(caller,
		   "INVITE sip:%s@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "Max-Forwards: %d\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@10.2.2.2:%u>\r\nContent-Length: 0\r\n\r\n",
		   callee, net_addr_port(&caller->srv->addr), caller->port, branch, max_forwards,
		   callee, call_id, caller->port);
}

void phone_cancel(struct phone *caller, const char *callee, const char *call_id,
		  const char *branch)
{
	phone_send(caller,
		   "CANCEL sip:%s@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
		   callee, net_addr_port(&caller->srv->addr), caller->port, branch, callee, call_id);
}
