/* ua against a scripted registrar on loopback: digest, outbound, Flow-Timer, STUN keepalives,
 * a moved NAT mapping, strangers and garbage, incoming requests, unregistration. */
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
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "stun/stun.h"
#include "ua/ua.h"
#include "uatest.h"

/* Receives one datagram (UAT_WAIT_MS at most); its source into from. */
/* The next SIP message (skipping STUN) into m. */
static void recv_sip(int fd, char *buf, size_t cap, struct net_addr *from, struct sip_msg *m)
{
	for (;;) {
		size_t n = uat_recv_one(fd, buf, cap, from);
		if (stun_is_message(buf, n))
			continue;
		assert_int_equal(sip_msg_parse(m, buf, n, false, NULL), 0);
		return;
	}
}

/* Answers a REGISTER: status with extra header lines. */
static void reply(int fd, const struct net_addr *to, const struct sip_msg *req, uint16_t status,
		  const char *extra)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(
	    sip_build_response(&b, req, status, NULL, SLICE_NULL, SLICE_LIT("srv1"), extra), 0);
	uat_send_to(fd, to, b.data, b.len);
	buf_free(&b);
}

/* The Contact of a REGISTER echoed with expires, as a registrar does. */
static void ok_with_contact(int fd, const struct net_addr *to, const struct sip_msg *req,
			    const char *more)
{
	const struct sip_hdr *c = sip_msg_hdr(req, SIP_HDR_CONTACT, 0);
	assert_non_null(c);
	char extra[1024];
	snprintf(extra, sizeof extra, "Contact: %.*s\r\n%s", (int)c->value.l, c->value.p, more);
	reply(fd, to, req, 200, extra);
}

/* Checks the Authorization of req against what the registrar knows. */
static void check_creds(const struct sip_msg *req, const char *nonce)
{
	const struct sip_hdr *h = sip_msg_hdr(req, SIP_HDR_AUTHORIZATION, 0);
	assert_non_null(h);
	struct sip_digest_cred c;
	assert_int_equal(sip_digest_parse(h->value, &c), 0);
	assert_true(slice_eq(c.nonce, slice_cstr(nonce)));
	assert_true(slice_eq(c.username, SLICE_LIT("alice")));
	assert_true(slice_eq(c.algorithm, SLICE_LIT("SHA-256")));
	assert_true(slice_eq(c.uri, req->ruri_s));
	char ha1[STORE_CRED_HA1_MAX], want[STORE_CRED_HA1_MAX];
	auth_ha1(STORE_CRED_SHA256, SLICE_LIT("alice"), SLICE_LIT("example.test"),
		 SLICE_LIT("wonderland"), ha1);
	auth_response(STORE_CRED_SHA256, ha1, c.nonce, c.nc, c.cnonce, SLICE_LIT("auth"),
		      SLICE_LIT("REGISTER"), c.uri, want);
	assert_true(slice_eq(c.response, slice_cstr(want)));
}

/* What a NATed phone's REGISTER must carry (RFC 5626 4.2, RFC 3581). */
static void check_register(const struct sip_msg *req, const struct net_addr *from,
			   const char *instance)
{
	assert_int_equal(req->method, SIP_REGISTER);
	assert_true(req->via1.rport);
	assert_int_equal(req->via1.port, net_addr_port(from)); /* symmetric: one socket */
	assert_true(sip_msg_has_option(req, SIP_HDR_SUPPORTED, "outbound"));
	assert_true(sip_msg_has_option(req, SIP_HDR_SUPPORTED, "path"));
	const struct sip_hdr *c = sip_msg_hdr(req, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(c->value, &na), 0);
	assert_int_equal(na.uri.port, net_addr_port(from));
	struct sip_param p;
	assert_true(sip_param_find(na.params, "reg-id", &p));
	assert_true(slice_eq(p.value, SLICE_LIT("1")));
	assert_true(sip_param_find(na.params, "+sip.instance", &p));
	char want[UA_INSTANCE_MAX + 4];
	snprintf(want, sizeof want, "\"<%s>\"", instance);
	assert_true(slice_eq(p.value, slice_cstr(want)));
}

/* Answers a STUN Binding request with mapped as XOR-MAPPED-ADDRESS. */
static void stun_answer(int fd, const struct net_addr *to, const char *req, size_t len,
			const struct net_addr *mapped)
{
	struct stun_msg m;
	assert_int_equal(stun_msg_decode(&m, req, len), 0);
	assert_int_equal(m.cls, STUN_CLASS_REQUEST);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &b, &m, STUN_CLASS_SUCCESS);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped->u.sa);
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
	uat_send_to(fd, to, b.data, b.len);
	buf_free(&b);
}

/* The next STUN request from the ua (SIP skipped); its length. */
static size_t recv_stun(int fd, char *buf, size_t cap, struct net_addr *from)
{
	for (;;) {
		size_t n = uat_recv_one(fd, buf, cap, from);
		if (stun_is_message(buf, n))
			return n;
	}
}

static void post_shutdown(void *arg)
{
	ua_shutdown(arg);
}

static void test_register_keepalive_recover(void **state)
{
	(void)state;
	static struct uat_rec r = UAT_REC_INIT(64);
	static char buf[8192];
	static struct sip_msg m;
	struct net_addr srv, from, stranger_addr;
	int s = uat_udp_bound(&srv), stranger = uat_udp_bound(&stranger_addr);

	struct ua_conf *c = calloc(1, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "sip:alice@example.test");
	snprintf(c->password, sizeof c->password, "wonderland");
	snprintf(c->instance, sizeof c->instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	c->n_proxy = 1;
	c->proxy[0].tp = NET_UDP;
	c->proxy[0].addr = srv;
	snprintf(c->proxy[0].host, sizeof c->proxy[0].host, "127.0.0.1");
	c->proxy[0].port = net_addr_port(&srv);
	c->backoff_ok_s = c->backoff_all_s = 1;
	struct loop *l;
	assert_int_equal(loop_alloc(&l), 0);
	struct ua *ua;
	assert_int_equal(ua_alloc(&ua, l, c, uat_on_event, &r), 0);
	assert_int_equal(ua_start(ua), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, uat_run_loop, l), 0);

	/* 1. REGISTER, 401 (SHA-256 beside MD5), REGISTER with credentials, 200
	 * with Require: outbound and Flow-Timer */
	recv_sip(s, buf, sizeof buf, &from, &m);
	check_register(&m, &from, c->instance);
	assert_null(sip_msg_hdr(&m, SIP_HDR_AUTHORIZATION, 0));
	/* the proxy is not the AOR's domain: loose-routed through it */
	const struct sip_hdr *rt = sip_msg_hdr(&m, SIP_HDR_ROUTE, 0);
	assert_non_null(rt);
	char want_rt[64];
	snprintf(want_rt, sizeof want_rt, "<sip:127.0.0.1:%u;lr>", net_addr_port(&srv));
	assert_true(slice_eq(rt->value, slice_cstr(want_rt)));
	reply(s, &from, &m, 401,
	      "WWW-Authenticate: Digest realm=\"example.test\", nonce=\"n1\", qop=\"auth\", "
	      "algorithm=MD5\r\n"
	      "WWW-Authenticate: Digest realm=\"example.test\", nonce=\"n1\", qop=\"auth\", "
	      "algorithm=SHA-256\r\n");
	recv_sip(s, buf, sizeof buf, &from, &m);
	check_register(&m, &from, c->instance);
	check_creds(&m, "n1");
	ok_with_contact(s, &from, &m, "Require: outbound\r\nFlow-Timer: 2\r\n");
	size_t i = uat_wait(&r, UA_EV_REGISTERED, NULL, 0);
	assert_true(r.ev[i].outbound);
	assert_int_equal(r.ev[i].flow_timer, 2);
	assert_true(r.ev[i].interval_ms >= 1600 && r.ev[i].interval_ms <= 2000);
	assert_int_equal(uat_count(&r, UA_EV_NO_OUTBOUND), 0);
	struct net_addr first = from;

	/* 2. a stranger's request to the ua's port is not taken (the flow's
	 * socket is connected to its proxy); the proxy's OPTIONS is answered */
	static const char opts[] =
	    "OPTIONS sip:alice@127.0.0.1 SIP/2.0\r\n"
	    "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKo1\r\n"
	    "From: <sip:x@example.test>;tag=9\r\nTo: <sip:alice@example.test>\r\n"
	    "Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
	static const char sopts[] =
	    "OPTIONS sip:alice@127.0.0.1 SIP/2.0\r\n"
	    "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKs1\r\n"
	    "From: <sip:x@example.test>;tag=9\r\nTo: <sip:alice@example.test>\r\n"
	    "Call-ID: stranger1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
	uat_send_to(stranger, &first, sopts, sizeof sopts - 1);
	/* 3. garbage from the proxy is counted, not fatal */
	uat_send_to(s, &first, "garbage\r\n\r\n", 11);
	uat_send_to(s, &first, opts, sizeof opts - 1);
	recv_sip(s, buf, sizeof buf, &from, &m);
	assert_false(m.request);
	assert_int_equal(m.status, 200);
	assert_true(slice_eq(m.call_id, SLICE_LIT("opt1"))); /* not the stranger's */
	assert_true(net_addr_eq(&from, &first));
	assert_int_equal(uat_count(&r, UA_EV_REQUEST), 1);
	assert_int_equal(uat_count(&r, UA_EV_BAD_MESSAGE), 1);
	static const char inv[] =
	    "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n"
	    "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKi1\r\n"
	    "From: <sip:x@example.test>;tag=9\r\nTo: <sip:alice@example.test>\r\n"
	    "Call-ID: inv1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
	uat_send_to(s, &first, inv, sizeof inv - 1);
	recv_sip(s, buf, sizeof buf, &from, &m);
	assert_int_equal(m.status, 480);
	assert_true(m.to_tag.l > 0);

	/* 4. STUN keepalives on the flow, answered with its mapped address */
	size_t n = recv_stun(s, buf, sizeof buf, &from);
	assert_true(net_addr_eq(&from, &first));
	stun_answer(s, &from, buf, n, &from);
	n = recv_stun(s, buf, sizeof buf, &from);
	/* 5. the NAT rebinds: the mapped address moves. RFC 5626 4.4.2: the
	 * flow has failed; it worked, so it is replaced at once (4.5) over a
	 * new socket, with credentials for the nonce it holds */
	struct net_addr moved = from;
	net_addr_set_port(&moved, (uint16_t)(net_addr_port(&from) ^ 1));
	stun_answer(s, &from, buf, n, &moved);
	i = uat_wait(&r, UA_EV_KEEPALIVE_FAILED, NULL, 0);
	assert_non_null(strstr(r.ev[i].detail, "mapping moved"));
	uat_wait(&r, UA_EV_FLOW_DOWN, NULL, i);
	recv_sip(s, buf, sizeof buf, &from, &m);
	assert_false(net_addr_eq(&from, &first)); /* a new flow */
	check_register(&m, &from, c->instance);
	check_creds(&m, "n1");
	ok_with_contact(s, &from, &m, "Require: outbound\r\nFlow-Timer: 2\r\n");
	i = uat_wait(&r, UA_EV_REGISTERED, NULL, i);
	assert_true(r.ev[i].recovered);
	assert_int_equal(uat_count(&r, UA_EV_RETRY), 0); /* no wait for a flow that worked */

	/* 6. shutdown: REGISTER expires=0 with credentials, then done */
	assert_int_equal(loop_post(l, post_shutdown, ua), 0);
	recv_sip(s, buf, sizeof buf, &from, &m);
	const struct sip_hdr *ex = sip_msg_hdr(&m, SIP_HDR_EXPIRES, 0);
	assert_non_null(ex);
	assert_true(slice_eq(ex->value, SLICE_LIT("0")));
	reply(s, &from, &m, 200, NULL);
	uat_wait(&r, UA_EV_UNREGISTERED, NULL, 0);
	i = uat_wait(&r, UA_EV_DONE, NULL, 0);
	loop_stop(l);
	pthread_join(th, NULL);
	struct ua_stats st;
	ua_stats_get(ua, &st);
	assert_int_equal(st.bad_messages, 1);
	assert_int_equal(st.requests_answered, 2);
	assert_true(st.keepalives_answered >= 1);
	ua_free(ua);
	loop_free(l);
	free(c);
	close(s);
	close(stranger);
}

/* A plain registrar (no Require: outbound): the ua says so and refreshes
 * below the NAT lifetime instead of keeping the flow alive. */
static void test_no_outbound(void **state)
{
	(void)state;
	static struct uat_rec r = UAT_REC_INIT(64);
	static char buf[8192];
	static struct sip_msg m;
	struct net_addr srv, from;
	int s = uat_udp_bound(&srv);
	struct ua_conf *c = calloc(1, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "sip:alice@example.test");
	snprintf(c->instance, sizeof c->instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	c->n_proxy = 1;
	c->proxy[0].tp = NET_UDP;
	c->proxy[0].addr = srv;
	snprintf(c->proxy[0].host, sizeof c->proxy[0].host, "127.0.0.1");
	c->proxy[0].port = net_addr_port(&srv);
	c->nat_refresh_s = 1;
	struct loop *l;
	assert_int_equal(loop_alloc(&l), 0);
	struct ua *ua;
	assert_int_equal(ua_alloc(&ua, l, c, uat_on_event, &r), 0);
	assert_int_equal(ua_start(ua), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, uat_run_loop, l), 0);
	recv_sip(s, buf, sizeof buf, &from, &m);
	/* a registrar that knows nothing of outbound: the contacts of the AOR
	 * with their URI and expires only (another phone's first) */
	const struct sip_hdr *ch = sip_msg_hdr(&m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(ch->value, &na), 0);
	char plain[512];
	snprintf(plain, sizeof plain,
		 "Contact: <sip:alice@192.0.2.9:5060>;expires=50, <%.*s>;expires=300\r\n",
		 (int)na.uri_s.l, na.uri_s.p);
	reply(s, &from, &m, 200, plain); /* no Require: outbound */
	size_t i = uat_wait(&r, UA_EV_REGISTERED, NULL, 0);
	assert_int_equal(r.ev[i].expires, 300);
	assert_false(r.ev[i].outbound);
	assert_int_equal(r.ev[i].interval_ms, 1000);
	uat_wait(&r, UA_EV_NO_OUTBOUND, NULL, 0);
	/* the refresh comes, on the same flow, and no STUN is sent */
	struct net_addr again;
	size_t n = uat_recv_one(s, buf, sizeof buf, &again);
	assert_false(stun_is_message(buf, n));
	assert_int_equal(sip_msg_parse(&m, buf, n, false, NULL), 0);
	assert_int_equal(m.method, SIP_REGISTER);
	assert_true(net_addr_eq(&again, &from));
	ok_with_contact(s, &from, &m, "");
	uat_wait(&r, UA_EV_REGISTERED, NULL, i + 1);
	assert_int_equal(uat_count(&r, UA_EV_NO_OUTBOUND), 1); /* said once */
	assert_int_equal(loop_post(l, post_shutdown, ua), 0);
	recv_sip(s, buf, sizeof buf, &from, &m);
	reply(s, &from, &m, 200, NULL);
	uat_wait(&r, UA_EV_DONE, NULL, 0);
	loop_stop(l);
	pthread_join(th, NULL);
	ua_free(ua);
	loop_free(l);
	free(c);
	close(s);
}

/* ---- a harness for the shorter cases ---- */

struct harness {
	struct uat_rec r;
	struct ua_conf c;
	struct loop *l;
	struct ua *ua;
	pthread_t th;
};

static struct harness *h_new(void)
{
	struct harness *h = calloc(1, sizeof *h);
	uat_rec_init(&h->r, 64);
	snprintf(h->c.aor, sizeof h->c.aor, "sip:alice@example.test");
	snprintf(h->c.password, sizeof h->c.password, "wonderland");
	snprintf(h->c.instance, sizeof h->c.instance,
		 "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	return h;
}

static void h_proxy(struct harness *h, enum net_transport tp, const struct net_addr *a)
{
	struct ua_proxy *px = &h->c.proxy[h->c.n_proxy++];
	px->tp = tp;
	px->addr = *a;
	snprintf(px->host, sizeof px->host, "127.0.0.1");
	px->port = net_addr_port(a);
}

static void h_start(struct harness *h)
{
	assert_int_equal(loop_alloc(&h->l), 0);
	assert_int_equal(ua_alloc(&h->ua, h->l, &h->c, uat_on_event, &h->r), 0);
	assert_int_equal(ua_start(h->ua), 0);
	assert_int_equal(pthread_create(&h->th, NULL, uat_run_loop, h->l), 0);
}

static void h_free(struct harness *h)
{
	loop_stop(h->l);
	pthread_join(h->th, NULL);
	ua_free(h->ua);
	loop_free(h->l);
	uat_rec_destroy(&h->r);
	free(h);
}

/* A loopback UDP port with nothing behind it: datagrams to it draw ICMP
 * port unreachable. */
static void closed_port(struct net_addr *a)
{
	int fd = uat_udp_bound(a);
	close(fd);
}

/* A TCP connection's input, framed like the ua frames ours. */
struct conn {
	int fd;
	char buf[16384];
	size_t len;
};

/* The next message or keepalive run; 1 for a CRLF run, 0 for SIP (in m). */
static int conn_next(struct conn *c, char *out, size_t cap, struct sip_msg *m)
{
	for (;;) {
		size_t ml = 0;
		int err = c->len ? sip_frame(c->buf, c->len, sizeof c->buf, &ml) : ENODATA;
		if (!err) {
			bool crlf = c->buf[0] == '\r' || c->buf[0] == '\n';
			assert_true(ml < cap);
			memcpy(out, c->buf, ml);
			out[ml] = '\0';
			memmove(c->buf, c->buf + ml, c->len - ml);
			c->len -= ml;
			if (crlf)
				return 1;
			assert_int_equal(sip_msg_parse(m, out, ml, true, NULL), 0);
			return 0;
		}
		assert_int_equal(err, ENODATA);
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
		assert_true(n > 0);
		c->len += (size_t)n;
	}
}

static void conn_accept(int lfd, struct conn *c)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	c->fd = accept(lfd, NULL, NULL);
	assert_true(c->fd >= 0);
	c->len = 0;
}

/* A response to req over c, written in two pieces (the ua must frame it). */
static void conn_reply(struct conn *c, const struct sip_msg *req, uint16_t status,
		       const char *extra)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(
	    sip_build_response(&b, req, status, NULL, SLICE_NULL, SLICE_LIT("srv1"), extra), 0);
	size_t half = b.len / 2;
	assert_int_equal(send(c->fd, b.data, half, 0), (ssize_t)half);
	usleep(20000);
	assert_int_equal(send(c->fd, b.data + half, b.len - half, 0), (ssize_t)(b.len - half));
	buf_free(&b);
}

static void check_proxy_creds(const struct sip_msg *req, uint32_t nc)
{
	const struct sip_hdr *h = sip_msg_hdr(req, SIP_HDR_PROXY_AUTHORIZATION, 0);
	assert_non_null(h);
	assert_null(sip_msg_hdr(req, SIP_HDR_AUTHORIZATION, 0));
	struct sip_digest_cred c;
	assert_int_equal(sip_digest_parse(h->value, &c), 0);
	assert_true(slice_eq(c.algorithm, SLICE_LIT("SHA-512-256")));
	assert_true(slice_eq(c.nonce, SLICE_LIT("p1")));
	char ncs[9];
	snprintf(ncs, sizeof ncs, "%08x", nc);
	assert_true(slice_eq(c.nc, slice_cstr(ncs)));
	char ha1[STORE_CRED_HA1_MAX], want[STORE_CRED_HA1_MAX];
	auth_ha1(STORE_CRED_SHA512_256, SLICE_LIT("alice"), SLICE_LIT("example.test"),
		 SLICE_LIT("wonderland"), ha1);
	auth_response(STORE_CRED_SHA512_256, ha1, c.nonce, c.nc, c.cnonce, SLICE_LIT("auth"),
		      SLICE_LIT("REGISTER"), c.uri, want);
	assert_true(slice_eq(c.response, slice_cstr(want)));
}

/* TCP: a 407 answered with Proxy-Authorization (SHA-512-256), a 200 that
 * arrives in two pieces, double-CRLF pings answered by a pong, then a ping
 * left unanswered: after 10 s the flow has failed (RFC 5626 4.4.1) and is
 * replaced by a new connection at once, with credentials for the kept
 * challenge. */
static void test_tcp_crlf_keepalive(void **state)
{
	(void)state;
	static char buf[8192];
	static struct sip_msg m;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct net_addr a;
	net_addr_parse("127.0.0.1:0", 0, &a);
	assert_int_equal(bind(lfd, &a.u.sa, net_addr_len(&a)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	net_sock_addr(lfd, &a);
	struct harness *h = h_new();
	h_proxy(h, NET_TCP, &a);
	h->c.keepalive_s = 1;
	h_start(h);
	static struct conn c1, c2;
	conn_accept(lfd, &c1);
	assert_int_equal(conn_next(&c1, buf, sizeof buf, &m), 0);
	assert_true(m.via1.rport);
	assert_true(slice_eq_cstr_nocase(m.via1.transport, "TCP"));
	conn_reply(&c1, &m, 407,
		   "Proxy-Authenticate: Digest realm=\"example.test\", nonce=\"p1\", "
		   "qop=\"auth\", algorithm=SHA-512-256\r\n");
	assert_int_equal(conn_next(&c1, buf, sizeof buf, &m), 0);
	check_proxy_creds(&m, 1);
	conn_reply(&c1, &m, 200, "Require: outbound\r\n");
	size_t i = uat_wait(&h->r, UA_EV_REGISTERED, NULL, 0);
	assert_true(h->r.ev[i].outbound);
	assert_true(h->r.ev[i].interval_ms >= 800 && h->r.ev[i].interval_ms <= 1000);
	/* a ping, answered */
	assert_int_equal(conn_next(&c1, buf, sizeof buf, &m), 1);
	assert_string_equal(buf, "\r\n\r\n");
	assert_int_equal(send(c1.fd, "\r\n", 2, 0), 2);
	uat_wait(&h->r, UA_EV_KEEPALIVE_OK, NULL, 0);
	/* the next one is not */
	assert_int_equal(conn_next(&c1, buf, sizeof buf, &m), 1);
	i = uat_wait(&h->r, UA_EV_KEEPALIVE_FAILED, NULL, 0);
	assert_non_null(strstr(h->r.ev[i].detail, "no CRLF pong"));
	uat_wait(&h->r, UA_EV_FLOW_DOWN, NULL, i);
	/* the connection is closed by the ua */
	struct pollfd p = {.fd = c1.fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	assert_int_equal(recv(c1.fd, buf, sizeof buf, 0), 0);
	conn_accept(lfd, &c2);
	assert_int_equal(conn_next(&c2, buf, sizeof buf, &m), 0);
	check_proxy_creds(&m, 2);
	conn_reply(&c2, &m, 200, "Require: outbound\r\n");
	i = uat_wait(&h->r, UA_EV_REGISTERED, NULL, i);
	assert_true(h->r.ev[i].recovered);
	assert_int_equal(uat_count(&h->r, UA_EV_RETRY), 0);
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	/* pings may come first */
	while (conn_next(&c2, buf, sizeof buf, &m) == 1)
		;
	assert_int_equal(m.method, SIP_REGISTER);
	conn_reply(&c2, &m, 200, NULL);
	i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	h_free(h);
	close(c1.fd);
	close(c2.fd);
	close(lfd);
}

/* Before anything registered: a flow whose proxy is unreachable waits while
 * the other tries, and retries by 4.5 once it works; every flow failing ends
 * the run with the timeout code; refused credentials end it with the auth
 * code at once. */
static void test_initial_failures(void **state)
{
	(void)state;
	static char buf[8192];
	static struct sip_msg m;
	struct net_addr dead, dead2, srv, from;

	/* one dead, one alive */
	closed_port(&dead);
	int s = uat_udp_bound(&srv);
	struct harness *h = h_new();
	h_proxy(h, NET_UDP, &dead);
	h_proxy(h, NET_UDP, &srv);
	h->c.backoff_ok_s = 100;
	h_start(h);
	size_t i = uat_wait(&h->r, UA_EV_REG_FAILED, NULL, 0);
	assert_int_equal(h->r.ev[i].flow, 1);
	assert_non_null(strstr(h->r.ev[i].detail, "ICMP"));
	recv_sip(s, buf, sizeof buf, &from, &m);
	ok_with_contact(s, &from, &m, "Require: outbound\r\n");
	uat_wait(&h->r, UA_EV_REGISTERED, NULL, 0);
	i = uat_wait(&h->r, UA_EV_RETRY, NULL, 0);
	assert_int_equal(h->r.ev[i].flow, 1);
	/* 4.5: one failure, another flow works, base 100 s: 100-200 s */
	assert_int_equal(h->r.ev[i].failures, 1);
	assert_true(h->r.ev[i].retry_ms >= 100000 && h->r.ev[i].retry_ms <= 200000);
	assert_int_equal(uat_count(&h->r, UA_EV_DONE), 0);
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	recv_sip(s, buf, sizeof buf, &from, &m);
	reply(s, &from, &m, 200, NULL);
	i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, 0);
	assert_int_equal(uat_count(&h->r, UA_EV_UNREGISTERED), 1);
	h_free(h);

	/* both dead: done, exit 5, no retry */
	closed_port(&dead2);
	h = h_new();
	h_proxy(h, NET_UDP, &dead);
	h_proxy(h, NET_UDP, &dead2);
	h_start(h);
	i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_TIMEOUT);
	assert_int_equal(uat_count(&h->r, UA_EV_REG_FAILED), 2);
	assert_int_equal(uat_count(&h->r, UA_EV_RETRY), 0);
	h_free(h);

	/* --once with one dead flow: the live one still registers and
	 * unregisters, and the run says the other failed */
	h = h_new();
	h_proxy(h, NET_UDP, &dead);
	h_proxy(h, NET_UDP, &srv);
	h->c.once = true;
	h_start(h);
	recv_sip(s, buf, sizeof buf, &from, &m);
	ok_with_contact(s, &from, &m, "Require: outbound\r\n");
	recv_sip(s, buf, sizeof buf, &from, &m);
	const struct sip_hdr *ex = sip_msg_hdr(&m, SIP_HDR_EXPIRES, 0);
	assert_true(ex && slice_eq(ex->value, SLICE_LIT("0")));
	reply(s, &from, &m, 200, NULL);
	i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_TIMEOUT);
	assert_int_equal(uat_count(&h->r, UA_EV_REGISTERED), 1);
	assert_int_equal(uat_count(&h->r, UA_EV_UNREGISTERED), 1);
	assert_int_equal(uat_count(&h->r, UA_EV_RETRY), 0);
	h_free(h);

	/* a wrong password: 401, credentials, 401 again (not stale): exit 3 */
	h = h_new();
	h_proxy(h, NET_UDP, &srv);
	h_start(h);
	static const char chal[] =
	    "WWW-Authenticate: Digest realm=\"example.test\", nonce=\"n1\", qop=\"auth\"\r\n";
	recv_sip(s, buf, sizeof buf, &from, &m);
	reply(s, &from, &m, 401, chal);
	recv_sip(s, buf, sizeof buf, &from, &m);
	assert_non_null(sip_msg_hdr(&m, SIP_HDR_AUTHORIZATION, 0));
	reply(s, &from, &m, 401, chal);
	uat_wait(&h->r, UA_EV_AUTH_FAILED, NULL, 0);
	i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_AUTH);
	h_free(h);
	close(s);
}

/* A proxy whose SYNs go unanswered (here: a listener whose accept queue is
 * full, so the kernel drops them) does not hold the ua in connect for the
 * kernel's two minutes: 64*T1, then the run ends with the timeout code. */
static void test_tcp_connect_bounded(void **state)
{
	(void)state;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct net_addr a;
	net_addr_parse("127.0.0.1:0", 0, &a);
	assert_int_equal(bind(lfd, &a.u.sa, net_addr_len(&a)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	net_sock_addr(lfd, &a);
	/* fill the accept queue (backlog 0 holds one) */
	int fill[2];
	for (int k = 0; k < 2; k++) {
		fill[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		connect(fill[k], &a.u.sa, net_addr_len(&a));
	}
	usleep(100000);
	struct harness *h = h_new();
	h_proxy(h, NET_TCP, &a);
	h_start(h);
	size_t i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_TIMEOUT);
	assert_int_equal(uat_count(&h->r, UA_EV_FLOW_UP), 0);
	assert_int_equal(uat_count(&h->r, UA_EV_FLOW_DOWN), 1);
	h_free(h);
	close(fill[0]);
	close(fill[1]);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_keepalive_recover),
	    cmocka_unit_test(test_no_outbound),
	    cmocka_unit_test(test_tcp_crlf_keepalive),
	    cmocka_unit_test(test_initial_failures),
	    cmocka_unit_test(test_tcp_connect_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
