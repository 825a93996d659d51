/* RFC 5630 / RFC 3261 26.2.2 through the proxy: a sips: request never leaves over a hop that is
 * not TLS, and the URI rules that choose the transport of a next hop. */
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

static const char *const CONF =
    "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 100\n"
    "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n";

static int64_t metric_val(const char *name)
{
	struct metric *m = metric_find(name, NULL);
	return m ? metric_get(m) : 0;
}

static int tcp_client(const struct net_addr *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

/* Reads what arrives on fd within ms into out (NUL-terminated). */
static size_t stream_read(int fd, char *out, size_t len, int ms)
{
	size_t got = 0;
	uint64_t end = time_mono_ms() + (uint64_t)ms;
	out[0] = '\0';
	while (got < len - 1 && time_mono_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t k = recv(fd, out + got, len - 1 - got, MSG_DONTWAIT);
		if (k <= 0)
			break;
		got += (size_t)k;
		out[got] = '\0';
		if (strstr(out, "\r\n\r\n"))
			break;
	}
	return got;
}

/* A phone registered over TCP (its connection kept open). */
static int register_tcp(struct test_server *srv, const char *user)
{
	int fd = tcp_client(net_listener_addr(srv->net, 1));
	char msg[1024], r[4096];
	int n = snprintf(msg, sizeof msg,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKsreg1\r\n"
			 "From: <sip:%s@127.0.0.1>;tag=s1\r\nTo: <sip:%s@127.0.0.1>\r\n"
			 "Call-ID: sreg-%s\r\nCSeq: 1 REGISTER\r\n"
			 "Contact: <sip:%s@10.1.1.1:5060;transport=tcp>\r\nExpires: 300\r\n"
			 "Content-Length: 0\r\n\r\n",
			 user, user, user, user);
	assert_int_equal(send(fd, msg, (size_t)n, MSG_NOSIGNAL), n);
	stream_read(fd, r, sizeof r, 3000);
	assert_true(strncmp(r, "SIP/2.0 200", 11) == 0);
	return fd;
}

static void invite(struct phone *a, const char *scheme, const char *user, const char *call_id,
		   const char *branch)
{
	phone_send(a,
		   "INVITE %s:%s@127.0.0.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <%s:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@10.2.2.2:%u>\r\nContent-Length: 0\r\n\r\n",
		   scheme, user, net_addr_port(&a->srv->addr), a->port, branch, scheme, user,
		   call_id, a->port);
}

/* The attack on the rule: a sips: INVITE for a user whose only flow is TCP.
 * It must not reach the phone over TCP (that would strip the security the
 * caller asked for): 480, the phone hears nothing, and the drop is counted.
 * The same INVITE as sip: does reach it, so the check can fail. */
static void sips_never_over_tcp(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF);
	int pfd = register_tcp(&srv, "sphone");
	struct phone a;
	phone_open(&a, &srv);
	char r[4096];
	int64_t dropped = metric_val("proxy_sips_not_tls_total");

	invite(&a, "sips", "sphone", "sips-call-1", "z9hG4bKsips1");
	phone_expect(&a, "SIP/2.0 480", r, sizeof r);
	assert_int_equal(stream_read(pfd, r, sizeof r, 300), 0);
	assert_int_equal(metric_val("proxy_sips_not_tls_total"), dropped + 1);

	invite(&a, "sip", "sphone", "sip-call-1", "z9hG4bKsip1");
	assert_true(stream_read(pfd, r, sizeof r, 3000) > 0);
	assert_true(strncmp(r, "INVITE sip:sphone@10.1.1.1:5060;transport=tcp", 45) == 0);

	phone_close(&a);
	close(pfd);
	test_server_stop(&srv);
}

/* Next hops named by URI: sips: and transport=tls want TLS (port 5061 by
 * default), sips: over UDP is refused, sip: stays UDP/TCP as it says. */
static void uri_transport_rules(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF);
	static const struct {
		const char *uri;
		int err;
		enum net_transport tp;
		uint16_t port;
	} cases[] = {
	    {"sip:a@192.0.2.1", 0, NET_UDP, 5060},
	    {"sip:a@192.0.2.1;transport=tcp", 0, NET_TCP, 5060},
	    /* no tls: listener here: TLS wanted, nothing to send it from */
	    {"sips:a@192.0.2.1", ENOENT, NET_TLS, 0},
	    {"sips:a@192.0.2.1;transport=tcp", ENOENT, NET_TLS, 0},
	    {"sip:a@192.0.2.1;transport=tls", ENOENT, NET_TLS, 0},
	    {"sips:a@192.0.2.1;transport=udp", EPROTO, NET_UDP, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sip_uri u;
		struct flow f;
		assert_int_equal(sip_uri_parse(slice_cstr(cases[i].uri), &u), 0);
		int err = edge_flow_for_uri(srv.edge, &u, &f);
		if (err != cases[i].err)
			fail_msg("%s: %d, want %d", cases[i].uri, err, cases[i].err);
		if (!err) {
			assert_int_equal(f.tp, cases[i].tp);
			assert_int_equal(net_addr_port(&f.remote), cases[i].port);
		}
	}
	test_server_stop(&srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sips_never_over_tcp),
	    cmocka_unit_test(uri_transport_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
