/* The edge-only process watches its phones' outbound flows: bound as the REGISTER's 2xx passes,
 * failed by silence (on a fake clock) or close, 430 for a token naming a failed flow, listed by
 * ctl flows, let go on unregistration; in a network namespace of its own. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "edgelab.h"
#include "phone.h"
#include "stund/stund.h"
#include "testenv.h"

#define INST_FMT "\"<urn:uuid:00000000-0000-4000-8000-%012u>\""

/* An edge-only server in front of reg (Flow-Timer 25 over UDP, margin 10:
 * the defaults), answering STUN on its SIP port. */
static void start_edge_conf(struct test_server *s, struct phone *reg, const char *extra)
{
	edgelab_start(s, reg, extra, true);
}

static void start_edge(struct test_server *s, struct phone *reg)
{
	start_edge_conf(s, reg, "");
}

/* Sends an outbound REGISTER for user@example.org from p (instance n,
 * reg-id 1); contact_extra: "" or ";expires=0" and the like; hdrs: extra
 * header lines. */
static void send_register(struct phone *p, const char *user, unsigned n, const char *contact,
			  const char *hdrs)
{
	unsigned seq = ++p->srv->seq;
	char c[256];
	if (contact)
		snprintf(c, sizeof c, "%s", contact);
	else
		snprintf(c, sizeof c, "<sip:%s@10.1.1.1:%u>;+sip.instance=" INST_FMT ";reg-id=1",
			 user, p->port, n);
	phone_send(p,
		   "REGISTER sip:example.org SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKef%u;rport\r\n"
		   "Max-Forwards: 70\r\nFrom: <sip:%s@example.org>;tag=r%u\r\n"
		   "To: <sip:%s@example.org>\r\nCall-ID: ef-reg-%u\r\nCSeq: %u REGISTER\r\n"
		   "Supported: outbound, path\r\nContact: %s\r\n%sContent-Length: 0\r\n\r\n",
		   p->port, seq, user, seq, user, seq, seq, c, hdrs);
}

/* The registrar's 2xx lists the binding it keeps: outbound accepted, the
 * Contact with its instance, reg-id and expiry. */
static void reg_accept(struct phone *reg, const char *req, const char *user, struct phone *ph,
		       unsigned n, unsigned expires)
{
	char extra[512];
	snprintf(extra, sizeof extra,
		 "Require: outbound\r\nContact: <sip:%s@10.1.1.1:%u>;+sip.instance=" INST_FMT
		 ";reg-id=1;expires=%u\r\n",
		 user, ph->port, n, expires);
	phone_reply_registrar(reg, req, "200 OK", extra);
}

/* Registers user through the edge (the registrar accepts, expires 300);
 * path gets the Path the registrar saw. */
static void register_phone(struct phone *ph, struct phone *reg, const char *user, unsigned n,
			   char *path, size_t len)
{
	char req[4096], r[4096];
	send_register(ph, user, n, NULL, "");
	phone_expect(reg, "REGISTER sip:example.org ", req, sizeof req);
	msg_header(req, "Path", path, len);
	reg_accept(reg, req, user, ph, n, 300);
	phone_expect(ph, "SIP/2.0 200", r, sizeof r);
}

/* The phone's flow at the edge, from the token in the Path. */
static struct flow path_flow(struct test_server *s, const char *path)
{
	const char *p = strstr(path, "sip:"), *at = p ? strchr(p, '@') : NULL;
	assert_non_null(at);
	struct flow f;
	assert_int_equal(
	    edge_flow_token_decode(s->edge, (struct slice){p + 4, (size_t)(at - p - 4)}, &f), 0);
	return f;
}

/* A STUN Binding request (RFC 5626 keepalive) from p to the edge's SIP
 * port, and its answer. */
static void stun_keepalive(struct phone *p)
{
	unsigned char req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
				 3,    4,    5,	   6,	 7,    8,    9,	   10,	 11, 12};
	const struct net_addr *to = &p->srv->addr;
	assert_true(sendto(p->fd, req, sizeof req, 0, &to->u.sa, net_addr_len(to)) ==
		    (ssize_t)sizeof req);
	unsigned char ans[512];
	assert_true(recv(p->fd, ans, sizeof ans, 0) >= 20);
	assert_int_equal(ans[0], 0x01); /* a Binding success: it was recorded first */
}

static void reg_invite(struct phone *reg, const char *route, const char *user,
		       unsigned contact_port, const char *call_id)
{
	phone_send(reg,
		   "INVITE sip:%s@10.1.1.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP " REG_IP ":%u;branch=z9hG4bK%s\r\n"
		   "Route: %s\r\nMax-Forwards: 69\r\nFrom: <sip:alice@example.org>;tag=a1\r\n"
		   "To: <sip:%s@example.org>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
		   "Contact: <sip:alice@10.2.2.2>\r\nContent-Length: 0\r\n\r\n",
		   user, contact_port, reg->port, call_id, route, user, call_id);
}

/* The registrar's ACK of a non-2xx final answer r to its INVITE (hop by
 * hop, or the edge repeats the answer: Timer G). */
static void reg_ack(struct phone *reg, const char *r)
{
	char via[512], from[256], to[256], cid[128];
	msg_header(r, "Via", via, sizeof via);
	msg_header(r, "From", from, sizeof from);
	msg_header(r, "To", to, sizeof to);
	msg_header(r, "Call-ID", cid, sizeof cid);
	phone_send(reg,
		   "ACK sip:x@10.1.1.1 SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\n"
		   "To: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		   via, from, to, cid);
}

static struct edge_flow_info info(struct test_server *s, const struct flow *f, const char *aor)
{
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(edge_flows(s->edge), f, aor, &fi), 0);
	return fi;
}

/* RFC 5626 5.4 / 5.3, the separate shape: bob keeps his STUN keepalives,
 * carol stops hers (and a stranger's keepalives from elsewhere keep
 * nothing). Past Flow-Timer + margin (25 + 10 s, on a fake clock) carol's
 * flow is failed: the registrar's INVITE over it gets 430 from the edge and
 * nothing reaches her; bob's still reaches bob. */
static void test_silent_flow_gets_430(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	struct phone reg, bob, carol, evil;
	start_edge(&s, &reg);
	phone_open(&bob, &s);
	phone_open(&carol, &s);
	phone_open_at(&evil, &s, ATTACKER);
	char bob_path[512], carol_path[512], r[4096];
	register_phone(&bob, &reg, "bob", 1, bob_path, sizeof bob_path);
	register_phone(&carol, &reg, "carol", 2, carol_path, sizeof carol_path);
	struct flow bf = path_flow(&s, bob_path), cf = path_flow(&s, carol_path);
	struct edge_flow_info fi = info(&s, &cf, "carol@example.org");
	assert_true(fi.owned);
	assert_int_equal(fi.check_s, 25); /* what the phone was told */
	assert_int_equal(fi.reg_id, 1);

	time_mono_advance(20000);
	stun_keepalive(&bob);
	stun_keepalive(&evil); /* answered, but from another address: carol's flow gains nothing */
	time_mono_advance(20000); /* carol: 40 s silent; bob: 20 s */
	edge_flows_tick(edge_flows(s.edge), time_mono_ms());
	fi = info(&s, &cf, "carol@example.org");
	assert_true(fi.failed);
	assert_int_equal(fi.cause, EDGE_FLOW_KEEPALIVE);
	assert_false(info(&s, &bf, "bob@example.org").failed);

	reg_invite(&reg, carol_path, "carol", carol.port, "ef-inv-carol");
	phone_expect(&reg, "SIP/2.0 430", r, sizeof r);
	phone_expect_silence(&carol, 300);
	reg_invite(&reg, bob_path, "bob", bob.port, "ef-inv-bob");
	phone_expect(&bob, "INVITE sip:bob@10.1.1.1:", r, sizeof r);
	phone_reply(&bob, r, 486, "Busy Here", "b1");
	phone_expect(&reg, "SIP/2.0 486", r, sizeof r);

	/* carol registers again over the same flow: alive, reached again */
	register_phone(&carol, &reg, "carol", 2, carol_path, sizeof carol_path);
	assert_false(info(&s, &cf, "carol@example.org").failed);
	reg_invite(&reg, carol_path, "carol", carol.port, "ef-inv-carol2");
	phone_expect(&carol, "INVITE sip:carol@10.1.1.1:", r, sizeof r);
	phone_reply(&carol, r, 486, "Busy Here", "c1");
	phone_expect(&reg, "SIP/2.0 486", r, sizeof r);
	phone_close(&evil);
	phone_close(&carol);
	phone_close(&bob);
	edgelab_close(&s, &reg, NULL);
}

/* A failed datagram flow stays failed while its binding lasts, not only
 * for the minute a failed entry is listed: 5 minutes on (the binding's 300
 * s less a little) the INVITE still gets 430. Once the binding expired the
 * entry goes. */
static void test_failed_flow_430_while_bound(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, true);
	char path[512], r[4096];
	register_phone(&ph, &reg, "dave", 4, path, sizeof path);
	struct flow f = path_flow(&s, path);
	time_mono_advance(40000);
	edge_flows_tick(edge_flows(s.edge), time_mono_ms());
	assert_true(info(&s, &f, "dave@example.org").failed);
	time_mono_advance(250000); /* 290 s after the REGISTER */
	edge_flows_tick(edge_flows(s.edge), time_mono_ms());
	reg_invite(&reg, path, "dave", ph.port, "ef-inv-dave");
	phone_expect(&reg, "SIP/2.0 430", r, sizeof r);
	phone_expect_silence(&ph, 300);
	time_mono_advance(15000);
	edge_flows_tick(edge_flows(s.edge), time_mono_ms());
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(edge_flows(s.edge), &f, "dave@example.org", &fi), ENOENT);
	edgelab_close(&s, &reg, &ph);
}

/* An outbound phone over TCP whose connection closes: its flow fails at
 * once (cause closed) and the registrar's INVITE over its token gets 430. */
/* erin registers an outbound flow over TCP through the edge; her socket,
 * and in path the Path the registrar saw. */
static int tcp_register_erin(struct test_server *s, struct phone *reg, char *path, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	const struct net_addr *tcp = net_listener_addr(s->net, 1);
	assert_int_equal(connect(fd, &tcp->u.sa, net_addr_len(tcp)), 0);
	char msg[1024], req[4096], r[4096], extra[512];
	int n = snprintf(msg, sizeof msg,
			 "REGISTER sip:example.org SIP/2.0\r\n"
			 "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKeftcp\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:erin@example.org>;tag=t1\r\n"
			 "To: <sip:erin@example.org>\r\nCall-ID: ef-tcp\r\nCSeq: 1 REGISTER\r\n"
			 "Supported: outbound\r\nContact: <sip:erin@10.1.1.1:5060;transport=tcp>;"
			 "+sip.instance=" INST_FMT ";reg-id=2\r\nExpires: 300\r\n"
			 "Content-Length: 0\r\n\r\n",
			 5u);
	assert_int_equal(send(fd, msg, (size_t)n, 0), n);
	phone_expect(reg, "REGISTER ", req, sizeof req);
	msg_header(req, "Path", path, len);
	snprintf(extra, sizeof extra,
		 "Require: outbound\r\nContact: <sip:erin@10.1.1.1:5060;transport=tcp>;"
		 "+sip.instance=" INST_FMT ";reg-id=2;expires=300\r\n",
		 5u);
	phone_reply_registrar(reg, req, "200 OK", extra);
	ssize_t k = recv(fd, r, sizeof r - 1, 0);
	assert_true(k > 0);
	return fd;
}

static void test_closed_tcp_flow_gets_430(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg;
	edgelab_open(&s, &reg, NULL, true);
	char path[512], r[4096];
	int fd = tcp_register_erin(&s, &reg, path, sizeof path);
	struct flow f = path_flow(&s, path);
	assert_int_equal(info(&s, &f, "erin@example.org").check_s, 120);
	close(fd);
	for (int i = 0; i < 200 && !info(&s, &f, "erin@example.org").failed; i++)
		usleep(10 * 1000); /* the close reaches the table on the connection's worker */
	struct edge_flow_info fi = info(&s, &f, "erin@example.org");
	assert_true(fi.failed);
	assert_int_equal(fi.cause, EDGE_FLOW_CLOSED);
	reg_invite(&reg, path, "erin", 5060, "ef-inv-erin");
	phone_expect(&reg, "SIP/2.0 430", r, sizeof r);
	edgelab_close(&s, &reg, NULL);
}

/* The connection closes while the registrar's INVITE is on it (the phone
 * took it, then its NAT or the phone went): the registrar gets 430 after the
 * edge's 100, and tries the instance's next flow. Before, it got the edge's
 * 503 and the caller a 500. */
static void test_tcp_flow_closing_under_an_invite_gets_430(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg;
	edgelab_open(&s, &reg, NULL, true);
	char path[512], r[4096];
	int fd = tcp_register_erin(&s, &reg, path, sizeof path);
	reg_invite(&reg, path, "erin", 5060, "ef-inv-erin-rst");
	phone_expect(&reg, "SIP/2.0 100", r, sizeof r);
	ssize_t k = recv(fd, r, sizeof r - 1, 0);
	assert_true(k > 0);
	r[k] = 0;
	assert_non_null(strstr(r, "INVITE sip:erin@10.1.1.1"));
	struct linger lg = {1, 0}; /* an RST, as a NAT that dropped the mapping sends */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
	phone_expect(&reg, "SIP/2.0 ", r, sizeof r);
	assert_true(strncmp(r, "SIP/2.0 430", 11) == 0);
	reg_ack(&reg, r);
	edgelab_close(&s, &reg, NULL);
}

/* `pinhole ctl flows` on the edge lists the phone's flow with its owner
 * (AOR, instance, reg-id), the Flow-Timer it was told and its state; an
 * unregistration (expires 0), a 2xx that no longer lists the binding, and
 * Contact: * each let the flow go. A 401 changes nothing. */
static void test_ctl_flows_and_unregistration(void **state)
{
	(void)state;
	struct test_server s;
	struct phone reg, ph;
	edgelab_open(&s, &reg, &ph, true);
	char path[512], req[4096], r[4096], want[128];
	register_phone(&ph, &reg, "frank", 6, path, sizeof path);
	struct flow f = path_flow(&s, path);
	struct buf out;
	buf_init(&out);
	assert_int_equal(edge_flows_dump_text(edge_flows(s.edge), time_mono_ms(), &out), 0);
	buf_append(&out, "", 1);
	snprintf(want, sizeof want, "127.0.0.1:%u", ph.port);
	const char *row = strstr((const char *)out.data, want);
	assert_non_null(row);
	assert_non_null(strstr(row, "frank@example.org"));
	snprintf(want, sizeof want, INST_FMT, 6u);
	assert_non_null(strstr(row, want));
	assert_non_null(strstr(row, " alive"));
	buf_reset(&out);
	assert_int_equal(edge_flows_dump_json(edge_flows(s.edge), time_mono_ms(), &out), 0);
	buf_append(&out, "", 1);
	assert_non_null(strstr((const char *)out.data, "\"aor\":\"frank@example.org\""));
	assert_non_null(strstr((const char *)out.data, "\"reg_id\":1,\"flow_timer\":25,"));
	buf_free(&out);
	struct edge_flow_info fi;

	/* a challenge is no answer about the binding */
	send_register(&ph, "frank", 6, NULL, "");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	phone_reply_registrar(&reg, req, "401 Unauthorized",
		  "WWW-Authenticate: Digest realm=\"example.org\", nonce=\"x\"\r\n");
	phone_expect(&ph, "SIP/2.0 401", r, sizeof r);
	assert_true(info(&s, &f, "frank@example.org").owned);

	/* expires 0 in the 2xx's Contact */
	send_register(&ph, "frank", 6, NULL, "Expires: 0\r\n");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	reg_accept(&reg, req, "frank", &ph, 6, 0);
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(edge_flows_get(edge_flows(s.edge), &f, "frank@example.org", &fi), ENOENT);

	/* the 2xx no longer lists it */
	register_phone(&ph, &reg, "frank", 6, path, sizeof path);
	assert_true(info(&s, &f, "frank@example.org").owned);
	send_register(&ph, "frank", 6, NULL, "Expires: 0\r\n");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	phone_reply_registrar(&reg, req, "200 OK", "");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(edge_flows_get(edge_flows(s.edge), &f, "frank@example.org", &fi), ENOENT);

	/* Contact: * (no instance in the REGISTER at all) */
	register_phone(&ph, &reg, "frank", 6, path, sizeof path);
	assert_true(info(&s, &f, "frank@example.org").owned);
	send_register(&ph, "frank", 6, "*", "Expires: 0\r\n");
	phone_expect(&reg, "REGISTER ", req, sizeof req);
	phone_reply_registrar(&reg, req, "200 OK", "");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	assert_int_equal(edge_flows_get(edge_flows(s.edge), &f, "frank@example.org", &fi), ENOENT);
	edgelab_close(&s, &reg, &ph);
}

/* The table's bound holds on this path too: with [outbound] max_flows =
 * 64, 100 phones that register outbound through the edge all get their 200
 * (the binding is the registrar's), at most 64 flows are watched, and the
 * others are counted as refused. */
static void test_bound_holds(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	struct phone reg, ph[100];
	start_edge_conf(&s, &reg, "[outbound]\nmax_flows = 64\n");
	int64_t refused = test_metric("flows_refused_total", NULL);
	char path[512];
	for (unsigned i = 0; i < 100; i++) {
		char user[16];
		snprintf(user, sizeof user, "u%u", i);
		phone_open(&ph[i], &s);
		register_phone(&ph[i], &reg, user, 100 + i, path, sizeof path);
	}
	struct edge_flows_stats st;
	edge_flows_stats_get(edge_flows(s.edge), &st);
	assert_true(st.flows <= 64);
	assert_true(st.flows > 0);
	assert_int_equal(test_metric("flows_refused_total", NULL) - refused,
			 (int64_t)(100 - st.flows));
	for (unsigned i = 0; i < 100; i++)
		phone_close(&ph[i]);
	edgelab_close(&s, &reg, NULL);
}

/* The same rule in one process (edge and registrar together): an
 * in-dialog request whose Route token names an outbound phone's flow that
 * went silent past Flow-Timer + margin gets 430, and the phone gets
 * nothing. */
static void test_colocated_failed_flow_430(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	test_server_start(&s, "[sip]\nlisten = udp:" EDGE_IP ":0\nt1 = 100\n"
			      "domains = example.org\n[keepalive]\ninterval = 0\n"
			      "[proxy]\nrelay = none\n");
	struct phone ph, caller;
	phone_open(&ph, &s);
	phone_open(&caller, &s);
	char r[4096], tok[FLOW_TOKEN_LEN + 1];
	send_register(&ph, "gina", 7, NULL, "Expires: 300\r\n");
	phone_expect(&ph, "SIP/2.0 200", r, sizeof r);
	struct store_binding b[2];
	size_t n = 0;
	assert_int_equal(registrar_lookup(s.reg, "gina@example.org", b, 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(info(&s, &b[0].flow, "gina@example.org").check_s, 25);
	edge_flow_token_encode(s.edge, &b[0].flow, tok);
	time_mono_advance(40000);
	edge_flows_tick(edge_flows(s.edge), time_mono_ms());
	assert_true(info(&s, &b[0].flow, "gina@example.org").failed);
	phone_send(&caller,
		   "BYE sip:gina@10.1.1.1:%u SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKcobye;rport\r\n"
		   "Route: <sip:%s@" EDGE_IP ":%u;lr>\r\nMax-Forwards: 70\r\n"
		   "From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:gina@example.org>;tag=g1\r\n"
		   "Call-ID: ef-co-bye\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		   ph.port, caller.port, tok, net_addr_port(&s.addr));
	phone_expect(&caller, "SIP/2.0 430", r, sizeof r);
	phone_expect_silence(&ph, 300);
	phone_close(&caller);
	phone_close(&ph);
	test_server_stop(&s);
}

/* RFC 5626 5.3, the separate shape: erin's UDP flow is alive by its
 * keepalives, but the path to her went dead since. The edge answers the
 * registrar's INVITE 100 at once, which hides her silence from it; so the
 * edge answers 430 itself after failover_timeout (the registrar then tries
 * her other flow), stops retransmitting to her, and does not mark the flow
 * failed (one lost INVITE is not a dead flow). A phone that answers, and a
 * phone without outbound (no other flow to go to), are left to their INVITE. */
static void test_silent_phone_gets_430(void **state)
{
	(void)state;
	edgelab_need_ns();
	struct test_server s;
	struct phone reg, erin, plain;
	start_edge_conf(&s, &reg, "[outbound]\nfailover_timeout = 300\n");
	phone_open(&erin, &s);
	phone_open(&plain, &s);
	char path[512], ppath[512], r[4096], req[4096];
	register_phone(&erin, &reg, "erin", 8, path, sizeof path);
	struct flow f = path_flow(&s, path);
	struct metric *silent = metric_find("outbound_silent_flows_total", NULL);
	assert_non_null(silent);
	int64_t before = metric_get(silent);
	reg_invite(&reg, path, "erin", erin.port, "ef-inv-erin");
	phone_expect(&reg, "SIP/2.0 100", r, sizeof r);
	phone_expect(&erin, "INVITE sip:erin@10.1.1.1:", r, sizeof r); /* and she says nothing */
	phone_expect(&reg, "SIP/2.0 430", r, sizeof r);
	reg_ack(&reg, r);
	assert_int_equal(metric_get(silent), before + 1);
	size_t bytes = 0;
	phone_drain(&erin, 50, &bytes, NULL, 0); /* retransmissions sent before the 430 */
	phone_expect_silence(&erin, 600);	 /* none after it (T1 100 ms) */
	assert_false(info(&s, &f, "erin@example.org").failed);
	/* she answers the next one: hers to finish, no 430 */
	reg_invite(&reg, path, "erin", erin.port, "ef-inv-erin2");
	phone_expect(&erin, "INVITE sip:erin@10.1.1.1:", req, sizeof req);
	phone_reply(&erin, req, 180, "Ringing", "e2");
	phone_expect(&reg, "SIP/2.0 180", r, sizeof r);
	usleep(500 * 1000);
	phone_reply(&erin, req, 486, "Busy Here", "e2");
	phone_expect(&reg, "SIP/2.0 486", r, sizeof r);
	reg_ack(&reg, r);
	assert_int_equal(metric_get(silent), before + 1);
	/* a phone without outbound (STUN keepalives, but no instance): the
	 * registrar has no other flow for it */
	send_register(&plain, "pat", 9, "<sip:pat@10.1.1.1:5060>", "");
	phone_expect(&reg, "REGISTER sip:example.org ", req, sizeof req);
	msg_header(req, "Path", ppath, sizeof ppath);
	phone_reply_registrar(&reg, req, "200 OK",
			      "Contact: <sip:pat@10.1.1.1:5060>;expires=300\r\n");
	phone_expect(&plain, "SIP/2.0 200", r, sizeof r);
	stun_keepalive(&plain); /* an entry in the flow table, but no instance */
	reg_invite(&reg, ppath, "pat", 5060, "ef-inv-pat");
	phone_expect(&reg, "SIP/2.0 100", r, sizeof r);
	phone_expect(&plain, "INVITE sip:pat@10.1.1.1:", req, sizeof req);
	phone_expect_silence(&reg, 600);
	assert_int_equal(metric_get(silent), before + 1);
	phone_close(&plain);
	phone_close(&erin);
	edgelab_close(&s, &reg, NULL);
}

int main(void)
{
	edgelab_setup();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_silent_flow_gets_430),
	    cmocka_unit_test(test_failed_flow_430_while_bound),
	    cmocka_unit_test(test_closed_tcp_flow_gets_430),
	    cmocka_unit_test(test_tcp_flow_closing_under_an_invite_gets_430),
	    cmocka_unit_test(test_ctl_flows_and_unregistration),
	    cmocka_unit_test(test_colocated_failed_flow_430),
	    cmocka_unit_test(test_bound_holds),
	    cmocka_unit_test(test_silent_phone_gets_430),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
