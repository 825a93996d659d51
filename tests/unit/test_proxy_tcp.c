/* The proxy over TCP next hops: connect, reuse, RFC 5923 alias, never toward a phone, who may. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "phone.h"

static const char *const CONF_TRUSTED =
    "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 100\n"
    "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\ntrusted = 127.0.0.1\n";
static const char *const CONF_UNTRUSTED =
    "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 100\n"
    "[keepalive]\ninterval = 0\n[proxy]\nrelay = none\n";

static int64_t metric_val(const char *name, const char *labels)
{
	struct metric *m = metric_find(name, labels);
	return m ? metric_get(m) : 0;
}

static struct net_stats stats(struct test_server *s)
{
	struct net_stats st;
	net_stats_get(s->net, &st);
	return st;
}

/* Waits (3 s at most) until the server holds no TCP connection; fails if one stays. */
static void wait_no_conns(struct test_server *srv)
{
	struct timespec ts = {0, 10 * 1000000L};
	for (int i = 0; i < 300 && stats(srv).tcp_open; i++)
		nanosleep(&ts, NULL);
	assert_int_equal(stats(srv).tcp_open, 0);
}

static const struct net_addr *tcp_addr(struct test_server *s)
{
	return net_listener_addr(s->net, 1);
}

static int listener(struct net_addr *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct net_addr a;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &a), 0);
	assert_int_equal(bind(fd, &a.u.sa, net_addr_len(&a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(net_sock_addr(fd, bound), 0);
	return fd;
}

static int accept_within(int lfd, int ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, ms) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* The next connection to lfd, within 3 s; fails the test if none comes. */
static int accept_one(int lfd)
{
	int fd = accept_within(lfd, 3000);
	assert_true(fd >= 0);
	return fd;
}

static int tcp_client(const struct net_addr *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	return fd;
}

/* Reads one SIP message without a body (up to the blank line) within 3 s. */
static void stream_expect(int fd, const char *prefix, char *out, size_t len)
{
	size_t got = 0;
	out[0] = '\0';
	uint64_t end = time_mono_ms() + 3000;
	while (!strstr(out, "\r\n\r\n") && time_mono_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t k = recv(fd, out + got, 1, 0); /* byte by byte: one message only */
		if (k <= 0)
			break;
		got += (size_t)k;
		out[got] = '\0';
		if (got == len - 1)
			break;
	}
	out[got] = '\0';
	if (strncmp(out, prefix, strlen(prefix)) != 0)
		fail_msg("expected \"%s\" on the stream, got:\n%s", prefix, out);
}

static void stream_send(int fd, const char *msg)
{
	assert_int_equal(send(fd, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
}

/* A's INVITE to a host beyond our domains over TCP (Request-URI transport=tcp). */
static void invite_tcp_host(struct phone *a, const struct net_addr *to, const char *call_id,
			    const char *branch)
{
	phone_send(a,
		   "INVITE sip:bob@127.0.0.1:%u;transport=tcp SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=%s;rport\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:bob@127.0.0.1>\r\n"
		   "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:caller@10.2.2.2:%u>\r\nContent-Length: 0\r\n\r\n",
		   net_addr_port(to), a->port, branch, call_id, a->port);
}

/* Answers the request in req (a stream's) with a 200 over fd. */
static void stream_reply_200(int fd, const char *req)
{
	char resp[4096];
	int n = snprintf(resp, sizeof resp, "SIP/2.0 200 OK\r\n");
	for (const char *line = strstr(req, "\r\n") + 2; strncmp(line, "\r\n", 2) != 0;
	     line = strstr(line, "\r\n") + 2) {
		const char *e = strstr(line, "\r\n");
		int l = (int)(e - line);
		if (!strncmp(line, "Via:", 4) || !strncmp(line, "From:", 5) ||
		    !strncmp(line, "Call-ID:", 8) || !strncmp(line, "CSeq:", 5))
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s\r\n", l, line);
		else if (!strncmp(line, "To:", 3))
			n += snprintf(resp + n, sizeof resp - (size_t)n, "%.*s;tag=callee\r\n", l,
				      line);
	}
	snprintf(resp + n, sizeof resp - (size_t)n, "Content-Length: 0\r\n\r\n");
	stream_send(fd, resp);
}

/* An INVITE for a TCP host opens one connection to it; our Via offers it
 * back (;alias: the peer is trusted); the 200 comes over it; a second call
 * reuses it. */
static void next_hop_connect_and_reuse(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_TRUSTED);
	struct net_addr peer;
	int lfd = listener(&peer);
	struct phone a;
	phone_open(&a, &srv);
	char req[4096], r[4096], want[128];
	invite_tcp_host(&a, &peer, "tcp-1", "z9hG4bKtcp1");
	int fd = accept_one(lfd);
	stream_expect(fd, "INVITE sip:bob@", req, sizeof req);
	snprintf(want, sizeof want,
		 "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=", net_addr_port(tcp_addr(&srv)));
	if (!strstr(req, want))
		fail_msg("our Via should name our TCP listener (%s):\n%s", want, req);
	const char *via = strstr(req, want);
	const char *eol = strstr(via, "\r\n");
	const char *alias = strstr(via, ";alias");
	assert_true(alias && alias < eol);
	/* the dialog's way back to the next hop is its address (transport=tcp) */
	assert_non_null(strstr(req, "transport=tcp"));
	stream_reply_200(fd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(stats(&srv).tcp_connects, 1);

	invite_tcp_host(&a, &peer, "tcp-2", "z9hG4bKtcp2");
	stream_expect(fd, "INVITE sip:bob@", req, sizeof req);
	assert_non_null(strstr(req, "Call-ID: tcp-2"));
	assert_int_equal(accept_within(lfd, 50), -1); /* no second connection */
	assert_int_equal(stats(&srv).tcp_connects, 1);
	close(fd);
	close(lfd);
	phone_close(&a);
	test_server_stop(&srv);
}

/* The dialog's Record-Route names the next hop by its address: a BYE after
 * its connection closed opens a new one (the other side, a UDP phone, is
 * named by its flow as before). */
static void in_dialog_after_next_hop_closed(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_TRUSTED);
	struct net_addr peer;
	int lfd = listener(&peer);
	struct phone a;
	phone_open(&a, &srv);
	char req[4096], r[4096], rr[1024];
	invite_tcp_host(&a, &peer, "tcp-dlg", "z9hG4bKdlg1");
	int fd = accept_one(lfd);
	stream_expect(fd, "INVITE sip:bob@", req, sizeof req);
	msg_header(req, "Record-Route", rr, sizeof rr);
	stream_reply_200(fd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	close(fd); /* the next hop goes away, as an idle timeout would */
	wait_no_conns(&srv);

	/* the caller's route set is the Record-Route reversed */
	char *comma = strstr(rr, ", ");
	assert_non_null(comma);
	*comma = '\0';
	phone_send(
	    &a,
	    "BYE sip:bob@127.0.0.1:%u;transport=tcp SIP/2.0\r\n"
	    "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKdlg2;rport\r\n"
	    "Route: %s, %s\r\nMax-Forwards: 70\r\n"
	    "From: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: <sip:bob@127.0.0.1>;tag=callee\r\n"
	    "Call-ID: tcp-dlg\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
	    net_addr_port(&peer), a.port, comma + 2, rr);
	fd = accept_one(lfd);
	stream_expect(fd, "BYE sip:bob@", req, sizeof req);
	stream_reply_200(fd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(stats(&srv).tcp_connects, 2);
	close(fd);
	close(lfd);
	phone_close(&a);
	test_server_stop(&srv);
}

/* A next hop that refuses: the caller hears at once (no Timer B wait). */
static void next_hop_refused_answered(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_TRUSTED);
	struct net_addr dead;
	close(listener(&dead));
	struct phone a;
	phone_open(&a, &srv);
	char r[4096];
	invite_tcp_host(&a, &dead, "tcp-refused", "z9hG4bKref1");
	/* the first final answer, within 10 s (Timer B is 6.4 s at t1 = 100) */
	bool final = false;
	for (int i = 0; i < 50 && !final; i++) {
		struct pollfd p = {.fd = a.fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t k = recv(a.fd, r, sizeof r - 1, 0);
		r[k > 0 ? k : 0] = '\0';
		final = k > 12 && strncmp(r, "SIP/2.0 1", 9) != 0;
	}
	assert_true(final);
	/* a transport error (the connection's close), not Timer B's 408 */
	if (strncmp(r, "SIP/2.0 500", 11) != 0)
		fail_msg("expected 500 for the refused next hop, got:\n%s", r);
	assert_int_equal(stats(&srv).tcp_connect_failed, 1);
	assert_int_equal(stats(&srv).tcp_open, 0);
	phone_close(&a);
	test_server_stop(&srv);
}

/* A peer opened a connection to us and said ;alias (RFC 5923): a request
 * toward its sent-by goes back over that connection. From an untrusted peer
 * the alias is ignored (and counted): the same request opens its own. */
static void alias_trusted_only(const char *conf, bool trusted)
{
	struct test_server srv;
	test_server_start(&srv, conf);
	struct net_addr peer;
	int lfd = listener(&peer); /* the peer's listening address, named in its Via */
	int pfd = tcp_client(tcp_addr(&srv));
	char req[4096], r[4096], msg[1024];
	snprintf(msg, sizeof msg,
		 "OPTIONS sip:127.0.0.1:%u;transport=tcp SIP/2.0\r\n"
		 "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=z9hG4bKal1;alias\r\n"
		 "Max-Forwards: 70\r\nFrom: <sip:peer@127.0.0.1>;tag=p1\r\n"
		 "To: <sip:127.0.0.1>\r\nCall-ID: alias-1\r\nCSeq: 1 OPTIONS\r\n"
		 "Content-Length: 0\r\n\r\n",
		 net_addr_port(tcp_addr(&srv)), net_addr_port(&peer));
	stream_send(pfd, msg);
	stream_expect(pfd, "SIP/2.0 200", req, sizeof req);

	struct phone a;
	phone_open(&a, &srv);
	invite_tcp_host(&a, &peer, "alias-call", "z9hG4bKal2");
	if (trusted) {
		stream_expect(pfd, "INVITE sip:bob@", req, sizeof req);
		assert_int_equal(accept_within(lfd, 50), -1);
		assert_int_equal(stats(&srv).tcp_connects, 0);
		stream_reply_200(pfd, req);
	} else {
		int fd = accept_one(lfd);
		stream_expect(fd, "INVITE sip:bob@", req, sizeof req);
		assert_int_equal(stats(&srv).tcp_connects, 1);
		stream_reply_200(fd, req);
		close(fd);
	}
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	phone_close(&a);
	close(pfd);
	close(lfd);
	test_server_stop(&srv);
}

static void alias_from_trusted_peer_reused(void **state)
{
	(void)state;
	alias_trusted_only(CONF_TRUSTED, true);
}

static void alias_from_stranger_ignored(void **state)
{
	(void)state;
	int64_t ignored0 = metric_val("proxy_via_alias_ignored_total", NULL);
	alias_trusted_only(CONF_UNTRUSTED, false);
	assert_int_equal(metric_val("proxy_via_alias_ignored_total", NULL), ignored0 + 1);
}

/* A phone registered over TCP is reached only over its connection: once it
 * closed, an INVITE for it opens nothing, although its Contact names a
 * TCP address that listens. */
static void phone_over_tcp_never_dialled(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_TRUSTED);
	struct net_addr contact;
	int lfd = listener(&contact);
	int pfd = tcp_client(tcp_addr(&srv));
	char msg[1024], r[4096];
	snprintf(msg, sizeof msg,
		 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		 "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKtreg1\r\n"
		 "From: <sip:tphone@127.0.0.1>;tag=t1\r\nTo: <sip:tphone@127.0.0.1>\r\n"
		 "Call-ID: treg-1\r\nCSeq: 1 REGISTER\r\n"
		 "Contact: <sip:tphone@127.0.0.1:%u;transport=tcp>\r\nExpires: 300\r\n"
		 "Content-Length: 0\r\n\r\n",
		 net_addr_port(&contact));
	stream_send(pfd, msg);
	stream_expect(pfd, "SIP/2.0 200", r, sizeof r);
	close(pfd);
	wait_no_conns(&srv);

	struct phone a;
	phone_open(&a, &srv);
	phone_invite(&a, "tphone", "tphone-call", "z9hG4bKtp1", 70);
	phone_expect(&a, "SIP/2.0 4", r, sizeof r); /* 480 today; the fail helper's to refine */
	assert_int_equal(accept_within(lfd, 100), -1);
	assert_int_equal(stats(&srv).tcp_connects, 0);
	phone_close(&a);
	close(lfd);
	test_server_stop(&srv);
}

/* Who may make us connect: with users configured, an anonymous untrusted
 * source naming a TCP host in a Route gets 403 and nothing is dialled. */
static void stranger_route_tcp_no_connect(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_UNTRUSTED);
	struct store_cred_entry e;
	assert_int_equal(
	    auth_ha1_all(SLICE_LIT("alice"), SLICE_LIT("127.0.0.1"), SLICE_LIT("secret"), &e), 0);
	assert_int_equal(store_cred_set(srv.creds, SLICE_LIT("alice"), SLICE_LIT("127.0.0.1"), &e),
			 0);
	struct net_addr peer;
	int lfd = listener(&peer);
	struct phone a;
	phone_open(&a, &srv);
	char r[4096];
	phone_send(&a,
		   "INVITE sip:bob@198.18.7.7 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKstr1;rport\r\n"
		   "Route: <sip:127.0.0.1:%u;transport=tcp;lr>\r\n"
		   "Max-Forwards: 70\r\n"
		   "From: <sip:someone@198.18.9.9>;tag=s1\r\nTo: <sip:bob@198.18.7.7>\r\n"
		   "Call-ID: stranger-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		   a.port, net_addr_port(&peer));
	phone_expect(&a, "SIP/2.0 403", r, sizeof r);
	assert_int_equal(accept_within(lfd, 100), -1);
	assert_int_equal(stats(&srv).tcp_connects, 0);
	phone_close(&a);
	close(lfd);
	test_server_stop(&srv);
}

/* ---- two processes: a phone registered through an edge's Path ---- */

/* An edge (played by a socket) registers pbob for its phone over a TCP
 * connection of its own to us, with a Path naming its TCP listener at edge
 * (and its flow token for the phone) and ;alias in its Via, as an edge-only
 * pinhole does; returns that connection and the answer's status line. */
static int edge_register_path(struct test_server *srv, const struct net_addr *edge, char *r,
			      size_t len)
{
	int fd = tcp_client(tcp_addr(srv));
	char msg[1024];
	snprintf(msg, sizeof msg,
		 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		 "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=z9hG4bKpreg1;alias\r\n"
		 "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKpph1;received=198.18.5.5;rport=7\r\n"
		 "Path: <sip:edgetok1@127.0.0.1:%u;transport=tcp;lr;ob>\r\n"
		 "Max-Forwards: 69\r\nFrom: <sip:pbob@127.0.0.1>;tag=p1\r\n"
		 "To: <sip:pbob@127.0.0.1>\r\nCall-ID: preg-1\r\nCSeq: 1 REGISTER\r\n"
		 "Supported: path\r\nContact: <sip:pbob@10.1.1.1:5060>\r\nExpires: 300\r\n"
		 "Content-Length: 0\r\n\r\n",
		 net_addr_port(edge), net_addr_port(edge));
	stream_send(fd, msg);
	stream_expect(fd, "SIP/2.0 ", r, len);
	return fd;
}

/* RFC 3327 5.3: the way to a phone registered through a Path is its first
 * Path hop, not the connection the REGISTER came over. Once that connection
 * is gone (the edge reconnected, an idle close), an INVITE for the phone
 * goes over the edge's new connection (aliased: nothing is dialled), and
 * with none, over one we open to the hop's address; the edge gets it with
 * its token in the Route. */
static void path_hop_after_edge_conn_closed(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_TRUSTED);
	struct net_addr edge;
	int lfd = listener(&edge); /* the edge's TCP listener, named in its Path */
	char req[4096], r[4096], route[512], want[128];
	int efd = edge_register_path(&srv, &edge, r, sizeof r);
	if (strncmp(r, "SIP/2.0 200", 11) != 0)
		fail_msg("the edge's REGISTER with Path:\n%s", r);
	close(efd);
	wait_no_conns(&srv);
	snprintf(want, sizeof want, "<sip:edgetok1@127.0.0.1:%u;transport=tcp;lr;ob>",
		 net_addr_port(&edge));

	/* the edge is back on a new connection (here an OPTIONS ping, ;alias) */
	efd = tcp_client(tcp_addr(&srv));
	char msg[1024];
	snprintf(msg, sizeof msg,
		 "OPTIONS sip:127.0.0.1:%u;transport=tcp SIP/2.0\r\n"
		 "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=z9hG4bKpopt;alias\r\n"
		 "Max-Forwards: 70\r\nFrom: <sip:edge@127.0.0.1>;tag=e1\r\n"
		 "To: <sip:127.0.0.1>\r\nCall-ID: popt-1\r\nCSeq: 1 OPTIONS\r\n"
		 "Content-Length: 0\r\n\r\n",
		 net_addr_port(tcp_addr(&srv)), net_addr_port(&edge));
	stream_send(efd, msg);
	stream_expect(efd, "SIP/2.0 200", r, sizeof r);
	struct phone a;
	phone_open(&a, &srv);
	phone_invite(&a, "pbob", "path-call-1", "z9hG4bKpc1", 70);
	stream_expect(efd, "INVITE sip:pbob@10.1.1.1:5060 ", req, sizeof req);
	msg_header(req, "Route", route, sizeof route);
	assert_string_equal(route, want);
	assert_int_equal(accept_within(lfd, 50), -1);
	assert_int_equal(stats(&srv).tcp_connects, 0);
	stream_reply_200(efd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	close(efd);
	wait_no_conns(&srv);

	/* no connection to the edge at all: one opened to its Path address */
	phone_invite(&a, "pbob", "path-call-2", "z9hG4bKpc2", 70);
	int fd = accept_within(lfd, 3000);
	if (fd < 0)
		fail_msg("no connection to the edge's Path address; the caller got:\n%s",
			 phone_drain(&a, 300, &(size_t){0}, r, sizeof r) ? r : "(nothing)");
	stream_expect(fd, "INVITE sip:pbob@10.1.1.1:5060 ", req, sizeof req);
	msg_header(req, "Route", route, sizeof route);
	assert_string_equal(route, want);
	assert_int_equal(stats(&srv).tcp_connects, 1);
	stream_reply_200(fd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	/* the next call reuses it */
	phone_invite(&a, "pbob", "path-call-3", "z9hG4bKpc3", 70);
	stream_expect(fd, "INVITE sip:pbob@10.1.1.1:5060 ", req, sizeof req);
	assert_int_equal(accept_within(lfd, 50), -1);
	assert_int_equal(stats(&srv).tcp_connects, 1);
	stream_reply_200(fd, req);
	phone_expect(&a, "SIP/2.0 200", r, sizeof r);
	close(fd);
	close(lfd);
	phone_close(&a);
	test_server_stop(&srv);
}

/* A Path names where we send; only a [proxy] trusted hop's is followed to
 * a new connection. From a stranger (refused at the REGISTER where the
 * registrar checks it, or stored), an INVITE after its connection closed
 * dials nothing. */
static void path_from_stranger_never_dialled(void **state)
{
	(void)state;
	struct test_server srv;
	test_server_start(&srv, CONF_UNTRUSTED);
	struct net_addr edge;
	int lfd = listener(&edge);
	char r[4096];
	int efd = edge_register_path(&srv, &edge, r, sizeof r);
	close(efd);
	wait_no_conns(&srv);
	struct phone a;
	phone_open(&a, &srv);
	phone_invite(&a, "pbob", "path-stranger", "z9hG4bKps1", 70);
	do /* the final answer: the phone is not reached (480, or 503 where tried) */
		phone_expect(&a, "SIP/2.0 ", r, sizeof r);
	while (strncmp(r, "SIP/2.0 1", 9) == 0);
	assert_true(strncmp(r, "SIP/2.0 4", 9) == 0 || strncmp(r, "SIP/2.0 5", 9) == 0);
	assert_int_equal(accept_within(lfd, 100), -1);
	assert_int_equal(stats(&srv).tcp_connects, 0);
	phone_close(&a);
	close(lfd);
	test_server_stop(&srv);
}

/* Over UDP the Path hop is its URI's address too: an edge whose REGISTER
 * left from another port than the one its Path names gets the INVITE at the
 * Path's; a stranger's Path is not followed (the REGISTER's source is). */
static void path_hop_udp(const char *conf, bool trusted)
{
	struct test_server srv;
	test_server_start(&srv, conf);
	struct phone from, hop, a;
	phone_open(&from, &srv); /* where the edge's REGISTER comes from */
	phone_open(&hop, &srv);	 /* the address its Path names */
	phone_open(&a, &srv);
	char r[4096];
	phone_send(&from,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKpu1;rport\r\n"
		   "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKpu0;received=198.18.5.5;rport=7\r\n"
		   "Path: <sip:edgetok2@127.0.0.1:%u;lr>\r\n"
		   "Max-Forwards: 69\r\nFrom: <sip:ubob@127.0.0.1>;tag=u1\r\n"
		   "To: <sip:ubob@127.0.0.1>\r\nCall-ID: pureg-1\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:ubob@10.1.1.1:5060>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		   from.port, hop.port);
	phone_expect(&from, "SIP/2.0 ", r, sizeof r);
	if (strncmp(r, "SIP/2.0 200", 11) == 0) { /* a stranger's may be refused */
		phone_invite(&a, "ubob", "path-udp", "z9hG4bKpu2", 70);
		phone_expect(trusted ? &hop : &from, "INVITE sip:ubob@10.1.1.1:5060 ", r, sizeof r);
		phone_expect_silence(trusted ? &from : &hop, 100);
	} else {
		assert_false(trusted);
	}
	phone_close(&a);
	phone_close(&hop);
	phone_close(&from);
	test_server_stop(&srv);
}

static void path_hop_udp_trusted(void **state)
{
	(void)state;
	path_hop_udp(CONF_TRUSTED, true);
}

static void path_hop_udp_stranger(void **state)
{
	(void)state;
	path_hop_udp(CONF_UNTRUSTED, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(next_hop_connect_and_reuse),
	    cmocka_unit_test(in_dialog_after_next_hop_closed),
	    cmocka_unit_test(next_hop_refused_answered),
	    cmocka_unit_test(alias_from_trusted_peer_reused),
	    cmocka_unit_test(alias_from_stranger_ignored),
	    cmocka_unit_test(phone_over_tcp_never_dialled),
	    cmocka_unit_test(stranger_route_tcp_no_connect),
	    cmocka_unit_test(path_hop_after_edge_conn_closed),
	    cmocka_unit_test(path_from_stranger_never_dialled),
	    cmocka_unit_test(path_hop_udp_trusted),
	    cmocka_unit_test(path_hop_udp_stranger),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
