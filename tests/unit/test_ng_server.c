/* The relay's ng server over UDP: raw ng datagrams and pinhole's own ng client, ping to delete,
 * errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <poll.h>
#include <unistd.h>

#include "net/net.h"
#include "ng/ng.h"
#include "relay/relay.h"
#include "relayctl/relayctl.h"
#include "sdp/sdp.h"
#include "testenv.h"

struct fixture {
	struct conf *conf;
	struct net *net;
	struct relay *relay;
	struct relayctl *ng; /* the client, towards the server */
	int fd;		     /* a raw ng client socket */
	char uri[80];
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof f);
	const struct conf_key *const tables[] = {relay_conf_keys, NULL};
	assert_int_equal(conf_alloc(&f.conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(f.conf, "test",
					  "[relay]\naddress = 127.0.0.1\nports = 22000-22099\n"
					  "ng = udp:127.0.0.1:0\n",
					  err, sizeof err),
			 0);
	struct net_conf nc = {.workers = 2};
	assert_int_equal(net_alloc(&f.net, &nc), 0);
	assert_int_equal(relay_start(&f.relay, f.net, f.conf), 0);
	assert_int_equal(net_start(f.net), 0);
	const struct net_addr *ng = relay_ng_addr(f.relay);
	assert_non_null(ng);
	char t[NET_ADDR_STRLEN];
	snprintf(f.uri, sizeof f.uri, "udp:%s", net_addr_fmt(ng, t, sizeof t));
	assert_int_equal(relayctl_ng_alloc(&f.ng, f.uri, 1000), 0);
	struct net_addr any;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &any), 0);
	assert_int_equal(net_udp_socket(&any, false, &f.fd), 0);
	assert_int_equal(connect(f.fd, &ng->u.sa, net_addr_len(ng)), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->fd);
	relayctl_free(f->ng);
	net_stop(f->net);
	relay_free(f->relay);
	net_free(f->net);
	conf_free(f->conf);
	return 0;
}

/* Sends a raw datagram, returns the reply in buf (NUL-terminated). */
static size_t exchange(struct fixture *f, const char *msg, size_t len, char *buf, size_t cap)
{
	assert_int_equal(send(f->fd, msg, len, 0), (ssize_t)len);
	struct pollfd p = {.fd = f->fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 2000), 1);
	ssize_t n = recv(f->fd, buf, cap - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	return (size_t)n;
}

#define RAW(f, s, buf) exchange(f, s, sizeof(s) - 1, buf, sizeof buf)

static void test_ping(void **state)
{
	struct fixture *f = *state;
	char r[256];
	RAW(f, "c1 d7:command4:pinge", r);
	assert_string_equal(r, "c1 d6:result4:ponge");
	assert_int_equal(relayctl_ping(f->ng), 0);
}

static void assert_error(const char *reply, const char *cookie, const char *reason_part)
{
	struct ng_node nodes[32];
	struct ng_arena a;
	struct slice cookie_s, v;
	const struct ng_node *d;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse(slice_cstr(reply), &a, &cookie_s, &d), 0);
	assert_true(slice_eq(cookie_s, slice_cstr(cookie)));
	assert_int_equal(ng_dict_str(d, "result", &v), 0);
	assert_true(slice_eq(v, SLICE_LIT("error")));
	assert_int_equal(ng_dict_str(d, "error-reason", &v), 0);
	char why[200];
	slice_to_cstr(v, why, sizeof why);
	assert_non_null(strstr(why, reason_part));
}

static void test_malformed_and_unsupported(void **state)
{
	struct fixture *f = *state;
	char r[512];
	RAW(f, "m1 d7:command4:ping", r); /* truncated bencode */
	assert_error(r, "m1", "Malformed");
	RAW(f, "m2 i42e", r); /* not a dictionary */
	assert_error(r, "m2", "Malformed");
	RAW(f, "m3 d7:command5:blinke", r);
	assert_error(r, "m3", "Unsupported command");
	RAW(f, "m4 d3:foo3:bare", r);
	assert_error(r, "m4", "No command");
	RAW(f,
	    "m5 d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp5:v=0\r\n"
	    "5:flagsl10:asymmetricee",
	    r);
	assert_error(r, "m5", "Unsupported flag: asymmetric");
	RAW(f, "m6 d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp5:v=0\r\n3:ICE5:forcee", r);
	assert_error(r, "m6", "Unsupported ICE");
	RAW(f, "m7 d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp5:v=0\r\n4:nope3:yese", r);
	assert_error(r, "m7", "Unsupported option: nope");
	RAW(f, "m8 d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp11:not an sdp!e", r);
	assert_error(r, "m8", "malformed SDP");
	RAW(f, "m9 d7:command6:answer7:call-id7:unknown8:from-tag1:y6:to-tag1:z3:sdp5:v=0\r\ne", r);
	assert_error(r, "m9", "");
	RAW(f, "m10 d7:command6:delete7:call-id7:unknowne", r);
	assert_error(r, "m10", "Unknown call-id");
}

#define OFFER_SDP                                                                                  \
	"v=0\r\no=- 1545997027 1 IN IP4 100.64.1.10\r\ns=-\r\nc=IN IP4 100.64.1.10\r\n"            \
	"t=0 0\r\nm=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"

/* What Kamailio's rtpengine module sends for rtpengine_offer("trust-address
 * replace-origin replace-session-connection rtcp-mux-demux ICE=remove"). */
/* clang-format off */
static const char kamailio_offer[] =
	"8253_7 d3:sdp141:" OFFER_SDP
	"5:flagsl13:trust-addresse7:replacel6:origin18:session-connectione"
	"8:rtcp-muxl5:demuxe3:ICE6:remove7:call-id31:a84b4c76e66710@pc33.example.com"
	"10:via-branch16:z9hG4bK776asdhds13:received-froml3:IP411:203.0.113.5e"
	"8:from-tag10:19283017747:command5:offer12:delete-delay2:303:ttli60ee";
/* clang-format on */

static void test_kamailio_offer_and_retransmission(void **state)
{
	struct fixture *f = *state;
	char r[4096], r2[4096];
	size_t n = RAW(f, kamailio_offer, r);
	struct ng_node nodes[64];
	struct ng_arena a;
	struct slice cookie, v;
	const struct ng_node *d;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse((struct slice){r, n}, &a, &cookie, &d), 0);
	assert_int_equal(ng_dict_str(d, "result", &v), 0);
	assert_true(slice_eq(v, SLICE_LIT("ok")));
	assert_int_equal(ng_dict_str(d, "sdp", &v), 0);
	struct sdp s;
	assert_int_equal(sdp_parse(&s, v), 0);
	assert_true(slice_eq(s.origin.conn.addr, SLICE_LIT("127.0.0.1")));
	assert_true(slice_eq(s.conn.addr, SLICE_LIT("127.0.0.1")));
	assert_true(s.media[0].port >= 22000 && s.media[0].port < 22100);
	/* a retransmission gets the same answer, not a second allocation */
	size_t n2 = RAW(f, kamailio_offer, r2);
	assert_int_equal(n, n2);
	assert_memory_equal(r, r2, n);
	char lr[512];
	RAW(f, "l1 d7:command4:liste", lr);
	assert_non_null(strstr(lr, "a84b4c76e66710@pc33.example.com"));
	RAW(f, "d1 d7:command6:delete7:call-id31:a84b4c76e66710@pc33.example.come", lr);
	assert_string_equal(lr, "d1 d6:result2:oke");
}

/* pinhole's ng client against pinhole's ng server: offer, answer, RTP, query, delete. */
static void test_client_call(void **state)
{
	struct fixture *f = *state;
	struct net_addr lo;
	int a, b;
	assert_int_equal(net_addr_parse("127.0.0.1:0", 0, &lo), 0);
	assert_int_equal(net_udp_socket(&lo, false, &a), 0);
	assert_int_equal(net_udp_socket(&lo, false, &b), 0);
	struct net_addr aa, ba;
	net_sock_addr(a, &aa);
	net_sock_addr(b, &ba);
	char sa[256], sb[256];
	snprintf(sa, sizeof sa,
		 "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\n",
		 net_addr_port(&aa));
	snprintf(sb, sizeof sb,
		 "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\n",
		 net_addr_port(&ba));
	struct relayctl_req q;
	memset(&q, 0, sizeof q);
	q.call_id = SLICE_LIT("ngcall");
	q.from_tag = SLICE_LIT("ta");
	q.sdp = slice_cstr(sa);
	q.opts.received_from = aa;
	q.opts.replace_origin = q.opts.replace_session_conn = true;
	struct buf out;
	buf_init(&out);
	assert_int_equal(relayctl_offer(f->ng, &q, &out), 0);
	struct sdp s;
	assert_int_equal(sdp_parse(&s, buf_slice(&out)), 0);
	uint16_t rb = s.media[0].port;
	q.to_tag = SLICE_LIT("tb");
	q.sdp = slice_cstr(sb);
	q.opts.received_from = ba;
	buf_reset(&out);
	assert_int_equal(relayctl_answer(f->ng, &q, &out), 0);
	assert_int_equal(sdp_parse(&s, buf_slice(&out)), 0);
	uint16_t ra = s.media[0].port;

	uint8_t pkt[172] = {0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
	struct net_addr to = lo;
	net_addr_set_port(&to, ra);
	assert_int_equal(sendto(a, pkt, sizeof pkt, 0, &to.u.sa, net_addr_len(&to)), 172);
	struct pollfd p = {.fd = b, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 2000), 1);
	uint8_t rx[512];
	assert_int_equal(recv(b, rx, sizeof rx, 0), 172);

	struct relayctl_query qr;
	assert_int_equal(relayctl_query(f->ng, SLICE_LIT("ngcall"), SLICE_NULL, &qr), 0);
	assert_string_equal(qr.leg[0].tag, "ta");
	assert_string_equal(qr.leg[1].tag, "tb");
	assert_int_equal(qr.leg[0].n_media, 1);
	assert_int_equal(qr.leg[0].media[0].rtp.packets, 1);
	assert_int_equal(qr.leg[0].media[0].rtp.bytes, 172);
	assert_true(qr.leg[0].media[0].rtp.latched);
	assert_int_equal(net_addr_port(&qr.leg[0].media[0].rtp.local), ra);
	assert_int_equal(net_addr_port(&qr.leg[1].media[0].rtp.local), rb);

	assert_int_equal(relayctl_delete(f->ng, SLICE_LIT("ngcall"), SLICE_LIT("ta"), SLICE_NULL),
			 0);
	assert_int_equal(relayctl_delete(f->ng, SLICE_LIT("ngcall"), SLICE_NULL, SLICE_NULL),
			 EPROTO);
	assert_int_equal(relayctl_query(f->ng, SLICE_LIT("ngcall"), SLICE_NULL, &qr), EPROTO);
	buf_free(&out);
	close(a);
	close(b);
}

static void test_client_timeout(void **state)
{
	(void)state;
	/* nobody listens there: refused (ICMP) or timed out, bounded either way */
	struct relayctl *rc;
	assert_int_equal(relayctl_ng_alloc(&rc, "udp:127.0.0.1:9", 200), 0);
	uint64_t t0 = time_mono_ms();
	int err = relayctl_ping(rc);
	assert_true(err == ECONNREFUSED || err == ETIMEDOUT);
	assert_true(time_mono_ms() - t0 < 1000);
	relayctl_free(rc);
	assert_int_equal(relayctl_ng_alloc(&rc, "udp:nonsense", 0), EINVAL);
}

/* A second relay whose ng listener admits only 127.0.0.2: the fixture's
 * client on 127.0.0.1 is the stranger. */
struct acl_fixture {
	struct conf *conf;
	struct net *net;
	struct relay *relay;
	int stranger, friend; /* raw ng sockets on 127.0.0.1 and 127.0.0.2 */
};

static void acl_start(struct acl_fixture *f, const char *extra)
{
	memset(f, 0, sizeof *f);
	const struct conf_key *const tables[] = {relay_conf_keys, NULL};
	assert_int_equal(conf_alloc(&f->conf, tables), 0);
	char ini[512], err[256];
	snprintf(ini, sizeof ini,
		 "[relay]\naddress = 127.0.0.1\nports = 22100-22199\nng = udp:127.0.0.1:0\n%s",
		 extra);
	assert_int_equal(conf_load_string(f->conf, "test", ini, err, sizeof err), 0);
	struct net_conf nc = {.workers = 1};
	assert_int_equal(net_alloc(&f->net, &nc), 0);
	assert_int_equal(relay_start(&f->relay, f->net, f->conf), 0);
	assert_int_equal(net_start(f->net), 0);
	const struct net_addr *ng = relay_ng_addr(f->relay);
	const char *src[2] = {"127.0.0.1:0", "127.0.0.2:0"};
	int *fd[2] = {&f->stranger, &f->friend};
	for (int i = 0; i < 2; i++) {
		struct net_addr a;
		assert_int_equal(net_addr_parse(src[i], 0, &a), 0);
		assert_int_equal(net_udp_socket(&a, false, fd[i]), 0);
		assert_int_equal(connect(*fd[i], &ng->u.sa, net_addr_len(ng)), 0);
	}
}

static void acl_stop(struct acl_fixture *f)
{
	close(f->stranger);
	close(f->friend);
	net_stop(f->net);
	relay_free(f->relay);
	net_free(f->net);
	conf_free(f->conf);
}

static size_t ask(int fd, const char *msg, char *buf, size_t cap)
{
	assert_int_equal(send(fd, msg, strlen(msg), 0), (ssize_t)strlen(msg));
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 2000), 1);
	ssize_t n = recv(fd, buf, cap - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	return (size_t)n;
}

/* ng from a source outside ng_allow: no answer, counted, and nothing done. */
static void test_acl_drops_strangers(void **state)
{
	(void)state;
	struct acl_fixture f;
	acl_start(&f, "ng_allow = 127.0.0.2/32, 10.0.0.0/8\n");
	int64_t denied = test_metric("relay_ng_denied_total", NULL);
	int64_t cmds = test_metric("relay_ng_commands_total", NULL);
	const char ping[] = "s1 d7:command4:pinge";
	const char offer[] = "s2 d7:command5:offer7:call-id8:stranger8:from-tag1:a"
			     "3:sdp62:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
			     "t=0 0\r\ne";
	assert_int_equal(send(f.stranger, ping, strlen(ping), 0), (ssize_t)strlen(ping));
	assert_int_equal(send(f.stranger, offer, strlen(offer), 0), (ssize_t)strlen(offer));
	/* the friend is answered; the server reads in order, so the stranger's
	 * datagrams were handled (dropped) before this answer left */
	char r[512];
	ask(f.friend, "f1 d7:command4:pinge", r, sizeof r);
	assert_string_equal(r, "f1 d6:result4:ponge");
	struct pollfd p = {.fd = f.stranger, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(test_metric("relay_ng_denied_total", NULL), denied + 2);
	assert_int_equal(test_metric("relay_ng_commands_total", NULL), cmds + 1);
	ask(f.friend, "f2 d7:command4:liste", r, sizeof r);
	assert_string_equal(r, "f2 d6:result2:ok5:callslee"); /* the offer made nothing */
	acl_stop(&f);
}

/* The default admits loopback only: a stranger's prefix must be named. */
static void test_acl_default_loopback(void **state)
{
	(void)state;
	struct acl_fixture f;
	acl_start(&f, "");
	char r[512];
	ask(f.stranger, "d1 d7:command4:pinge", r, sizeof r);
	ask(f.friend, "d2 d7:command4:pinge", r, sizeof r);
	acl_stop(&f);
	const struct conf_key *const tables[] = {relay_conf_keys, NULL};
	struct conf *c;
	assert_int_equal(conf_alloc(&c, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(c, "test",
					  "[relay]\naddress = 127.0.0.1\nports = 22100-22199\n"
					  "ng = udp:127.0.0.1:0\nng_allow = 10.0.0.0/33\n",
					  err, sizeof err),
			 0);
	struct net_conf nc = {.workers = 1};
	struct net *n;
	struct relay *rl;
	assert_int_equal(net_alloc(&n, &nc), 0);
	assert_int_equal(relay_start(&rl, n, c), EINVAL);
	net_free(n);
	conf_free(c);
}

static size_t count_calls(const char *reply, size_t len)
{
	struct ng_node nodes[256];
	struct ng_arena a;
	struct slice cookie;
	const struct ng_node *d;
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	assert_int_equal(ng_msg_parse((struct slice){reply, len}, &a, &cookie, &d), 0);
	const struct ng_node *calls = ng_dict_get(d, "calls");
	assert_non_null(calls);
	assert_int_equal(calls->type, NG_LIST);
	return calls->count;
}

/* list with a huge limit (or none, or a negative one) is clamped to ng_list_max. */
static void test_list_clamped(void **state)
{
	(void)state;
	struct acl_fixture f;
	acl_start(&f, "ng_list_max = 2\n");
	char r[4096];
	for (int i = 0; i < 3; i++) {
		char offer[512];
		snprintf(offer, sizeof offer,
			 "o%d d7:command5:offer7:call-id5:call%d8:from-tag1:a"
			 "3:sdp84:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
			 "t=0 0\r\nm=audio 9 RTP/AVP 0\r\ne",
			 i, i);
		ask(f.friend, offer, r, sizeof r);
		assert_non_null(strstr(r, "6:result2:ok"));
	}
	size_t n = ask(f.friend, "l1 d7:command4:list5:limiti1000000000ee", r, sizeof r);
	assert_int_equal(count_calls(r, n), 2);
	n = ask(f.friend, "l2 d7:command4:liste", r, sizeof r);
	assert_int_equal(count_calls(r, n), 2);
	n = ask(f.friend, "l3 d7:command4:list5:limiti0ee", r, sizeof r);
	assert_int_equal(count_calls(r, n), 1);
	n = ask(f.friend, "l4 d7:command4:list5:limiti-1ee", r, sizeof r);
	assert_int_equal(count_calls(r, n), 1);
	acl_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ping),
	    cmocka_unit_test(test_malformed_and_unsupported),
	    cmocka_unit_test(test_kamailio_offer_and_retransmission),
	    cmocka_unit_test(test_client_call),
	    cmocka_unit_test(test_client_timeout),
	    cmocka_unit_test(test_acl_drops_strangers),
	    cmocka_unit_test(test_acl_default_loopback),
	    cmocka_unit_test(test_list_clamped),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
