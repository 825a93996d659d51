/* Proxy behaviour over real sockets: forking, CANCEL, hop-by-hop ACK, 404/483, Record-Route routing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "edge/edge.h"
#include "proxy/proxy.h"
#include "registrar/registrar.h"
#include "relay/relay.h"
#include "store/store.h"

static const struct conf_key *const tables[] = {edge_conf_keys, proxy_conf_keys,
						registrar_conf_keys, relay_conf_keys, NULL};

/* A phone: one UDP socket on loopback. */
struct phone {
	int fd;
	uint16_t port;
};

struct fixture {
	struct conf *conf;
	struct store *store;
	struct store_cred *creds;
	struct net *net;
	struct edge *edge;
	struct registrar *reg;
	struct proxy *proxy;
	struct net_addr server;
	unsigned seq;
};

static struct fixture fx;

static void phone_open(struct phone *p)
{
	p->fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct net_addr lo, me;
	net_addr_parse("127.0.0.1:0", 0, &lo);
	assert_int_equal(bind(p->fd, &lo.u.sa, net_addr_len(&lo)), 0);
	net_sock_addr(p->fd, &me);
	p->port = net_addr_port(&me);
}

static void phone_send(struct phone *p, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof msg);
	assert_true(sendto(p->fd, msg, (size_t)n, 0, &fx.server.u.sa, net_addr_len(&fx.server)) ==
		    n);
}

/* Receives the next message whose first line starts with prefix (others, such
 * as 100 Trying, are skipped); fails the test after 2 s. */
static void phone_expect(struct phone *p, const char *prefix, char *out, size_t len)
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

/* Copies header name's first value line (without name) from msg into out. */
static void header(const char *msg, const char *name, char *out, size_t len)
{
	char key[64];
	snprintf(key, sizeof key, "\r\n%s: ", name);
	const char *h = strstr(msg, key);
	assert_non_null(h);
	h += strlen(key);
	const char *e = strstr(h, "\r\n");
	snprintf(out, len, "%.*s", (int)(e - h), h);
}

/* Answers a request received by a phone with status, copying its Vias, From,
 * To (with tag), Call-ID, CSeq and Record-Route. */
static void phone_reply(struct phone *p, const char *req, int status, const char *reason,
			const char *tag)
{
	char resp[4096];
	int n = snprintf(resp, sizeof resp, "SIP/2.0 %d %s\r\n", status, reason);
	for (const char *line = strstr(req, "\r\n") + 2; strncmp(line, "\r\n", 2) != 0;
	     line = strstr(line, "\r\n") + 2) {
		const char *e = strstr(line, "\r\n");
		if (!strncmp(line, "Via:", 4) || !strncmp(line, "From:", 5) ||
		    !strncmp(line, "Call-ID:", 8) || !strncmp(line, "CSeq:", 5) ||
		    !strncmp(line, "Record-Route:", 13))
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s\r\n",
				      (int)(e - line), line);
		else if (!strncmp(line, "To:", 3)) {
			const char *t = strstr(line, "tag=");
			bool tagged = t && t < e; /* a CANCEL's or in-dialog To keeps its tag */
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s%s%s\r\n",
				      (int)(e - line), line, tagged ? "" : ";tag=", tagged ? "" : tag);
		}
	}
	n += snprintf(resp + n, sizeof resp - (size_t)n,
		      "Contact: <sip:callee@127.0.0.1:%u>\r\nContent-Length: 0\r\n\r\n", p->port);
	assert_true(sendto(p->fd, resp, (size_t)n, 0, &fx.server.u.sa, net_addr_len(&fx.server)) ==
		    n);
}

static void phone_register(struct phone *p, const char *user)
{
	char r[4096];
	fx.seq++;
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKreg%u\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=r%u\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: reg-%u-%u\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:%s@10.1.1.1:%u>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   p->port, fx.seq, user, fx.seq, user, p->port, fx.seq, user, p->port);
	phone_expect(p, "SIP/2.0 200", r, sizeof r);
}

static void send_invite(struct phone *caller, const char *callee, const char *call_id,
			const char *branch, int max_forwards)
{
	phone_send(caller,
		   "INVITE sip:%s@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "Max-Forwards: %d\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@10.2.2.2:%u>\r\nContent-Length: 0\r\n\r\n",
		   callee, net_addr_port(&fx.server), caller->port, branch, max_forwards, callee,
		   call_id, caller->port);
}

static int setup(void **state)
{
	(void)state;
	memset(&fx, 0, sizeof fx);
	char err[256];
	assert_int_equal(conf_alloc(&fx.conf, tables), 0);
	assert_int_equal(conf_load_string(fx.conf, "test",
					  "[sip]\nlisten = udp:127.0.0.1:0\nt1 = 100\n"
					  "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n",
					  err, sizeof err),
			 0);
	struct store_conf sc = {.path = NULL};
	assert_int_equal(store_alloc(&fx.store, &sc), 0);
	assert_int_equal(store_cred_alloc(&fx.creds), 0);
	struct net_conf nc = {.workers = 2, .max_msg = 8192};
	assert_int_equal(net_alloc(&fx.net, &nc), 0);
	assert_int_equal(edge_alloc(&fx.edge, fx.net, fx.conf), 0);
	assert_int_equal(registrar_alloc(&fx.reg, fx.edge, fx.store, fx.creds, fx.conf), 0);
	assert_int_equal(proxy_alloc(&fx.proxy, fx.edge, fx.reg, NULL, fx.conf), 0);
	assert_int_equal(net_start(fx.net), 0);
	fx.server = *net_listener_addr(fx.net, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	net_stop(fx.net);
	proxy_free(fx.proxy);
	registrar_free(fx.reg);
	edge_free(fx.edge);
	net_free(fx.net);
	store_free(fx.store);
	store_cred_free(fx.creds);
	conf_free(fx.conf);
	return 0;
}

static void test_unknown_user_and_max_forwards(void **state)
{
	(void)state;
	struct phone a;
	phone_open(&a);
	char r[4096];
	send_invite(&a, "nobody", "c-404", "z9hG4bKnf1", 70);
	phone_expect(&a, "SIP/2.0 404", r, sizeof r);
	struct phone b;
	phone_open(&b);
	phone_register(&b, "mf");
	send_invite(&a, "mf", "c-483", "z9hG4bKmf1", 0);
	phone_expect(&a, "SIP/2.0 483", r, sizeof r);
	close(a.fd);
	close(b.fd);
}

static void test_fork_first_200_wins_other_cancelled(void **state)
{
	(void)state;
	struct phone a, b1, b2;
	phone_open(&a);
	phone_open(&b1);
	phone_open(&b2);
	phone_register(&b1, "forked");
	phone_register(&b2, "forked");
	char r[4096], inv1[4096], inv2[4096], rr[1024];
	send_invite(&a, "forked", "c-fork", "z9hG4bKfork1", 70);
	/* both bindings ring, each at its own (real) source */
	phone_expect(&b1, "INVITE sip:forked@10.1.1.1:", inv1, sizeof inv1);
	phone_expect(&b2, "INVITE sip:forked@10.1.1.1:", inv2, sizeof inv2);
	header(inv1, "Record-Route", rr, sizeof rr);
	assert_non_null(strstr(rr, ";lr>"));
	header(inv1, "Max-Forwards", r, sizeof r);
	assert_string_equal(r, "69");
	phone_reply(&b1, inv1, 180, "Ringing", "b1");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_reply(&b2, inv2, 200, "OK", "b2");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "tag=b2"));
	/* the other branch is cancelled with the branch of its INVITE */
	char cancel[4096], v1[256], v2[256];
	phone_expect(&b1, "CANCEL ", cancel, sizeof cancel);
	header(inv1, "Via", v1, sizeof v1);
	header(cancel, "Via", v2, sizeof v2);
	assert_string_equal(v1, v2);
	phone_reply(&b1, cancel, 200, "OK", "b1");
	phone_reply(&b1, inv1, 487, "Request Terminated", "b1");
	/* the proxy ACKs the 487 itself (hop by hop) */
	phone_expect(&b1, "ACK ", r, sizeof r);
	close(a.fd);
	close(b1.fd);
	close(b2.fd);
}

static void test_cancel_before_answer(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a);
	phone_open(&b);
	phone_register(&b, "cancelme");
	char r[4096], inv[4096];
	send_invite(&a, "cancelme", "c-cancel", "z9hG4bKcan1", 70);
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	phone_reply(&b, inv, 180, "Ringing", "bb");
	phone_expect(&a, "SIP/2.0 180", r, sizeof r);
	phone_send(&a,
		   "CANCEL sip:cancelme@127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKcan1;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:cancelme@127.0.0.1>\r\n"
		   "Call-ID: c-cancel\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
		   a.port);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_non_null(strstr(r, "CSeq: 1 CANCEL"));
	char cancel[4096];
	phone_expect(&b, "CANCEL ", cancel, sizeof cancel);
	phone_reply(&b, cancel, 200, "OK", "bb");
	phone_reply(&b, inv, 487, "Request Terminated", "bb");
	phone_expect(&a, "SIP/2.0 487", r, sizeof r);
	close(a.fd);
	close(b.fd);
}

static void test_in_dialog_bye_follows_record_route(void **state)
{
	(void)state;
	struct phone a, b;
	phone_open(&a);
	phone_open(&b);
	phone_register(&b, "dialog");
	char r[4096], inv[4096], rr[1024];
	send_invite(&a, "dialog", "c-dlg", "z9hG4bKdlg1", 70);
	phone_expect(&b, "INVITE ", inv, sizeof inv);
	phone_reply(&b, inv, 200, "OK", "dd");
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	header(r, "Record-Route", rr, sizeof rr);
	/* the callee hangs up: Request-URI is the caller's private Contact, the
	 * route set is the Record-Route; it must reach the caller's real socket */
	phone_send(&b,
		   "BYE sip:caller@10.2.2.2:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKbye1\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:dialog@127.0.0.1>;tag=dd\r\nTo: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "Call-ID: c-dlg\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		   a.port, b.port, rr);
	char bye[4096];
	phone_expect(&a, "BYE sip:caller@10.2.2.2:", bye, sizeof bye);
	assert_null(strstr(bye, "\r\nRoute:")); /* both of our entries were consumed */
	phone_reply(&a, bye, 200, "OK", "caller1");
	phone_expect(&b, "SIP/2.0 200", r, sizeof r);
	/* a forged flow token in the route is not followed */
	char forged[1024];
	snprintf(forged, sizeof forged, "%s", rr);
	char *at = strchr(forged, '@');
	assert_non_null(at);
	at[-3] = at[-3] == 'A' ? 'B' : 'A';
	phone_send(&b,
		   "BYE sip:caller@10.2.2.2:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKbye2\r\n"
		   "Route: %s\r\nMax-Forwards: 70\r\n"
		   "From: <sip:dialog@127.0.0.1>;tag=dd\r\nTo: <sip:caller@127.0.0.1>;tag=caller1\r\n"
		   "Call-ID: c-dlg\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		   a.port, b.port, forged);
	phone_expect(&b, "SIP/2.0 403", r, sizeof r); /* RFC 5626 5.3 */
	close(a.fd);
	close(b.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_user_and_max_forwards),
		cmocka_unit_test(test_fork_first_200_wins_other_cancelled),
		cmocka_unit_test(test_cancel_before_answer),
		cmocka_unit_test(test_in_dialog_bye_follows_record_route),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
