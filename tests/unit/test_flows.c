/* The edge's flow table: liveness by Flow-Timer and margin on a fake clock, closes, spoofed
 * keepalives, its bound under a flood, ctl flows; and through a real server, outbound bindings
 * marked unreachable. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "phone.h"
#include "stund/stund.h"

/* ---- the table alone, on a fake clock ---- */

struct seen {
	size_t fails, pings;
	enum edge_flow_cause cause;
	char aor[EDGE_FLOW_AOR_MAX];
	size_t used; /* what the fail handler answers */
	bool keep_pinging;
};

static size_t on_fail(const struct flow *f, const char *aor, enum edge_flow_cause cause, void *arg)
{
	(void)f;
	struct seen *s = arg;
	s->fails++;
	s->cause = cause;
	snprintf(s->aor, sizeof s->aor, "%s", aor);
	return s->used;
}

static bool on_ping(const struct flow *f, const char *aor, void *arg)
{
	(void)f;
	(void)aor;
	struct seen *s = arg;
	s->pings++;
	return s->keep_pinging;
}

static struct edge_flows *table(struct seen *s, size_t max, unsigned margin)
{
	struct edge_flows *fl;
	struct edge_flows_conf c = {.max_flows = max, .margin_s = margin};
	assert_int_equal(edge_flows_alloc(&fl, &c), 0);
	memset(s, 0, sizeof *s);
	s->used = 1;
	s->keep_pinging = true;
	edge_flows_set_handlers(fl, on_fail, on_ping, s);
	return fl;
}

static struct flow udp_flow(const char *remote)
{
	struct flow f;
	memset(&f, 0, sizeof f);
	f.tp = NET_UDP;
	assert_int_equal(net_addr_parse("198.18.0.1:5060", 0, &f.local), 0);
	assert_int_equal(net_addr_parse(remote, 5060, &f.remote), 0);
	return f;
}

static struct flow tcp_flow(const char *remote, uint64_t conn_id)
{
	struct flow f = udp_flow(remote);
	f.tp = NET_TCP;
	f.conn_id = conn_id;
	return f;
}

static bool failed(struct edge_flows *fl, const struct flow *f, const char *aor)
{
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, f, aor, &fi), 0);
	return fi.failed;
}

/* Ticks every 250 ms from *now to until (what the edge's timer does). */
static void run(struct edge_flows *fl, uint64_t *now, uint64_t until)
{
	for (; *now <= until; *now += 250)
		edge_flows_tick(fl, *now);
	*now -= 250;
}

#define T0 1000000000ULL /* a monotonic clock some way into its run */

/* Flow-Timer 25, margin 10: silent for 35 s is within the promise; past
 * it the flow fails once, and its owner hears it. */
static void test_silence_fails_after_interval_and_margin(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = udp_flow("198.51.100.7:40000");
	struct edge_flow_bind b = {.aor = "alice@example.com",
				   .instance = "<urn:uuid:1>",
				   .reg_id = 1,
				   .check_s = 25,
				   .expires_s = 3600};
	uint64_t now = T0;
	assert_int_equal(edge_flows_bind(fl, &f, &b, now), 0);
	run(fl, &now, T0 + 35000);
	assert_int_equal(s.fails, 0);
	assert_false(failed(fl, &f, "alice@example.com"));
	run(fl, &now, T0 + 35000 + 500);
	assert_int_equal(s.fails, 1);
	assert_int_equal(s.cause, EDGE_FLOW_KEEPALIVE);
	assert_string_equal(s.aor, "alice@example.com");
	assert_true(failed(fl, &f, "alice@example.com"));
	run(fl, &now, T0 + 50000);
	assert_int_equal(s.fails, 1); /* once */
	edge_flows_free(fl);
}

/* Keepalives within the interval keep it alive for as long as they come;
 * when they stop, interval + margin after the last one it fails. */
static void test_keepalives_keep_it_alive(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = udp_flow("198.51.100.7:40000");
	struct edge_flow_bind b = {.aor = "alice@example.com", .reg_id = 1, .check_s = 25};
	uint64_t now = T0;
	assert_int_equal(edge_flows_bind(fl, &f, &b, now), 0);
	uint64_t last = now;
	for (int i = 0; i < 40; i++) { /* 40 x 24 s: far past any single deadline */
		run(fl, &now, last + 24000);
		last = now;
		edge_flows_keepalive(fl, &f, EDGE_KA_STUN, now);
	}
	assert_int_equal(s.fails, 0);
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, &f, "alice@example.com", &fi), 0);
	assert_int_equal(fi.last_kind, EDGE_KA_STUN);
	assert_int_equal(fi.last_ka_ms, last);
	run(fl, &now, last + 35000);
	assert_int_equal(s.fails, 0);
	run(fl, &now, last + 35500);
	assert_int_equal(s.fails, 1);
	edge_flows_free(fl);
}

/* Keepalives from anyone but the flow's own source (another port, another
 * address, another listener) do not keep it alive. */
static void test_spoofed_keepalive_keeps_nothing(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = udp_flow("198.51.100.7:40000");
	struct flow other_port = udp_flow("198.51.100.7:40001");
	struct flow other_ip = udp_flow("198.51.100.8:40000");
	struct flow other_listener = f;
	other_listener.listener = 1;
	struct flow over_tcp = tcp_flow("198.51.100.7:40000", 7);
	struct edge_flow_bind b = {.aor = "alice@example.com", .reg_id = 1, .check_s = 25};
	uint64_t now = T0;
	assert_int_equal(edge_flows_bind(fl, &f, &b, now), 0);
	while (now < T0 + 40000) {
		run(fl, &now, now + 5000);
		edge_flows_keepalive(fl, &other_port, EDGE_KA_STUN, now);
		edge_flows_keepalive(fl, &other_ip, EDGE_KA_STUN, now);
		edge_flows_keepalive(fl, &other_listener, EDGE_KA_STUN, now);
		edge_flows_keepalive(fl, &over_tcp, EDGE_KA_CRLF, now);
	}
	assert_int_equal(s.fails, 1);
	assert_true(failed(fl, &f, "alice@example.com"));
	edge_flows_free(fl);
}

/* A closed connection fails its bound flow at once, without a tick; an
 * unbound one just goes. A send refused on a stream fails it too. */
static void test_closed_connection_fails_at_once(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = tcp_flow("198.51.100.7:40000", 42);
	struct flow idle = tcp_flow("198.51.100.9:40000", 43);
	struct edge_flow_bind b = {.aor = "bob@example.com", .reg_id = 2, .check_s = 120};
	assert_int_equal(edge_flows_bind(fl, &f, &b, T0), 0);
	edge_flows_keepalive(fl, &idle, EDGE_KA_CRLF, T0);
	edge_flows_conn_closed(fl, 42, T0 + 10);
	assert_int_equal(s.fails, 1);
	assert_int_equal(s.cause, EDGE_FLOW_CLOSED);
	assert_true(failed(fl, &f, "bob@example.com"));
	edge_flows_conn_closed(fl, 43, T0 + 10);
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, &idle, "", &fi), ENOENT);
	/* a phone without outbound (no check) over a stream: its close fails it too */
	struct flow g = tcp_flow("198.51.100.7:40002", 44);
	struct edge_flow_bind nb = {.aor = "carol@example.com"};
	assert_int_equal(edge_flows_bind(fl, &g, &nb, T0), 0);
	edge_flows_send_failed(fl, &g, T0 + 20);
	assert_int_equal(s.fails, 2);
	assert_int_equal(s.cause, EDGE_FLOW_SEND);
	edge_flows_free(fl);
}

/* A phone without outbound that does not ping is never failed for
 * silence: it gets server pings instead, every ping_s, until the owner
 * says stop. Its entry goes when its binding expires unrefreshed. */
static void test_no_outbound_gets_pings_not_failure(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = udp_flow("198.51.100.7:40000");
	struct edge_flow_bind b = {.aor = "dave@example.com", .ping_s = 20, .expires_s = 300};
	uint64_t now = T0;
	assert_int_equal(edge_flows_bind(fl, &f, &b, now), 0);
	run(fl, &now, T0 + 19750);
	assert_int_equal(s.pings, 0);
	run(fl, &now, T0 + 20500);
	assert_int_equal(s.pings, 1);
	run(fl, &now, T0 + 100500);
	assert_int_equal(s.pings, 5);
	s.keep_pinging = false;
	run(fl, &now, T0 + 200500);
	assert_int_equal(s.pings, 6);
	assert_int_equal(s.fails, 0);
	run(fl, &now, T0 + 301000);
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, &f, "dave@example.com", &fi), ENOENT);
	edge_flows_free(fl);
}

/* The attack: a flood of keepalives from many (spoofed) sources on the SIP
 * port. Registered flows are never pushed out; strangers' entries stay
 * within their sixteenth and give way to each other, counted. */
static void test_flood_does_not_push_out_bound_flows(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 3200, 10); /* 100 a shard, 6 of them unbound */
	char a[64];
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(a, sizeof a, "203.0.113.%u:%u", i % 250, 10000 + i);
		struct flow f = udp_flow(a);
		char aor[32];
		snprintf(aor, sizeof aor, "u%u@example.com", i);
		struct edge_flow_bind b = {.aor = aor, .reg_id = 1, .check_s = 25};
		assert_int_equal(edge_flows_bind(fl, &f, &b, T0), 0);
	}
	struct edge_flows_stats st0;
	edge_flows_stats_get(fl, &st0);
	for (unsigned i = 0; i < 100000; i++) {
		snprintf(a, sizeof a, "192.0.2.%u:%u", i % 256, 1024 + i / 256);
		struct flow f = udp_flow(a);
		edge_flows_keepalive(fl, &f, EDGE_KA_STUN, T0 + 1);
	}
	struct edge_flows_stats st;
	edge_flows_stats_get(fl, &st);
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(a, sizeof a, "203.0.113.%u:%u", i % 250, 10000 + i);
		struct flow f = udp_flow(a);
		char aor[32];
		snprintf(aor, sizeof aor, "u%u@example.com", i);
		struct edge_flow_info fi;
		assert_int_equal(edge_flows_get(fl, &f, aor, &fi), 0);
		assert_true(fi.owned);
	}
	assert_true(st.unowned <= 32 * 6);
	assert_true(st.flows <= 3200);
	assert_true(st.evicted - st0.evicted >= 100000 - 32 * 6);
	/* CRLF datagrams (anyone may send them at any rate) make no entry */
	struct flow crlf = udp_flow("192.0.2.200:60000");
	edge_flows_keepalive(fl, &crlf, EDGE_KA_CRLF, T0 + 1);
	struct edge_flow_info none;
	assert_int_equal(edge_flows_get(fl, &crlf, "", &none), ENOENT);
	/* and a keepalive on a bound flow still reaches it */
	struct flow f0 = udp_flow("203.0.113.0:10000");
	edge_flows_keepalive(fl, &f0, EDGE_KA_STUN, T0 + 2);
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, &f0, "u0@example.com", &fi), 0);
	assert_int_equal(fi.last_ka_ms, T0 + 2);
	edge_flows_free(fl);
}

/* Bound flows past the bound: refused and counted; the ones in stay. */
static void test_full_of_bound_flows_refuses(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 64, 10); /* 2 a shard */
	char a[64];
	size_t ok = 0, refused = 0;
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(a, sizeof a, "203.0.113.%u:%u", i % 250, 10000 + i);
		struct flow f = udp_flow(a);
		struct edge_flow_bind b = {.aor = "u@example.com", .reg_id = 1, .check_s = 25};
		int err = edge_flows_bind(fl, &f, &b, T0);
		if (err == 0)
			ok++;
		else if (err == ENOSPC)
			refused++;
	}
	assert_int_equal(ok + refused, 2000);
	assert_int_equal(ok, 64);
	struct edge_flows_stats st;
	edge_flows_stats_get(fl, &st);
	assert_int_equal(st.flows, 64);
	assert_true(st.refused >= (int64_t)refused);
	edge_flows_free(fl);
}

/* The bound is the table's, not a shard's: max_flows bound flows fit, however
 * unevenly they spread over the shards, and the next one is refused. */
static void test_bound_is_the_whole_table(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 3200, 10);
	char a[64];
	for (unsigned i = 0; i < 3200; i++) {
		snprintf(a, sizeof a, "127.1.%u.%u:%u", i / 100 / 250, i / 100 % 250, 40000 + i);
		struct flow f = udp_flow(a);
		struct edge_flow_bind b = {.aor = "u@example.com", .reg_id = 1, .check_s = 120};
		assert_int_equal(edge_flows_bind(fl, &f, &b, T0), 0);
	}
	struct edge_flows_stats st0, st;
	edge_flows_stats_get(fl, &st0); /* the counters are the process's */
	struct flow one_more = udp_flow("127.2.0.1:40000");
	struct edge_flow_bind b = {.aor = "u@example.com", .reg_id = 1, .check_s = 120};
	assert_int_equal(edge_flows_bind(fl, &one_more, &b, T0), ENOSPC);
	edge_flows_stats_get(fl, &st);
	assert_int_equal(st.flows, 3200);
	assert_int_equal(st.refused - st0.refused, 1);
	edge_flows_free(fl);
}

/* A flow whose bindings moved away is not a failure: it goes, uncounted. */
static void test_orphan_is_not_a_failure(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	s.used = 0;
	struct flow f = udp_flow("198.51.100.7:40000");
	struct edge_flow_bind b = {.aor = "alice@example.com", .reg_id = 1, .check_s = 25};
	uint64_t now = T0;
	assert_int_equal(edge_flows_bind(fl, &f, &b, now), 0);
	run(fl, &now, T0 + 40000);
	assert_int_equal(s.fails, 1); /* asked */
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(fl, &f, "alice@example.com", &fi), ENOENT);
	edge_flows_free(fl);
}

static void test_dump(void **state)
{
	(void)state;
	struct seen s;
	struct edge_flows *fl = table(&s, 0, 10);
	struct flow f = udp_flow("198.51.100.7:40000");
	struct flow t = tcp_flow("198.51.100.8:40000", 9);
	struct edge_flow_bind b = {.aor = "alice@example.com",
				   .instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
				   .reg_id = 1,
				   .check_s = 25};
	assert_int_equal(edge_flows_bind(fl, &f, &b, T0), 0);
	edge_flows_keepalive(fl, &f, EDGE_KA_STUN, T0 + 3000);
	edge_flows_keepalive(fl, &t, EDGE_KA_CRLF, T0 + 4000);
	struct buf out;
	buf_init(&out);
	assert_int_equal(edge_flows_dump_json(fl, T0 + 10000, &out), 0);
	buf_append(&out, "", 1);
	const char *j = out.data;
	assert_non_null(strstr(j, "{\"flows\":["));
	assert_non_null(strstr(j,
			       "\"transport\":\"udp\",\"local\":\"198.18.0.1:5060\","
			       "\"remote\":\"198.51.100.7:40000\",\"conn_id\":0,\"age\":10,"
			       "\"last_keepalive_ago\":7,\"last_keepalive_kind\":\"stun\","
			       "\"aor\":\"alice@example.com\","
			       "\"instance\":\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\","
			       "\"reg_id\":1,\"flow_timer\":25,\"ping_interval\":0,"
			       "\"state\":\"alive\",\"failed\":false,\"cause\":\"\"}"));
	assert_non_null(strstr(j, "\"transport\":\"tcp\",\"local\":\"198.18.0.1:5060\","
				  "\"remote\":\"198.51.100.8:40000\",\"conn_id\":9,\"age\":6,"
				  "\"last_keepalive_ago\":6,\"last_keepalive_kind\":\"crlf\","
				  "\"aor\":\"\""));
	buf_free(&out);
	/* text: a header and one row per entry, failed ones with their cause */
	edge_flows_conn_closed(fl, 9, T0 + 5000); /* unbound: gone */
	run(fl, &(uint64_t){T0 + 250}, T0 + 40000);
	buf_init(&out);
	assert_int_equal(edge_flows_dump_text(fl, T0 + 41000, &out), 0);
	buf_append(&out, "", 1);
	const char *nl = strchr(out.data, '\n');
	assert_non_null(nl);
	assert_true(strncmp(out.data, "TP   LOCAL", 10) == 0);
	assert_non_null(strstr(nl, "udp  198.18.0.1:5060"));
	assert_non_null(strstr(nl, "198.51.100.7:40000"));
	assert_non_null(strstr(nl, "alice@example.com"));
	assert_non_null(strstr(nl, "FAILED:keepalive"));
	assert_null(strstr(nl, "198.51.100.8"));
	assert_null(strchr(strchr(nl + 1, '\n') + 1, '\n')); /* one row */
	buf_free(&out);
	edge_flows_free(fl);
}

/* ---- through a real server ---- */

static struct test_server srv;

static int setup_server(void **state)
{
	(void)state;
	test_server_start(&srv,
			  "[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\nt1 = 100\n"
			  "[outbound]\nflow_timer_udp = 5\nflow_timer_tcp = 30\nflow_margin = 1\n"
			  "[keepalive]\ninterval = 0\n"
			  "[proxy]\nrelay = none\n");
	edge_set_stun(srv.edge, stund_flow_answer, NULL);
	return 0;
}

static int teardown_server(void **state)
{
	(void)state;
	test_server_stop(&srv);
	return 0;
}

static void outbound_register(struct phone *p, const char *user, char *resp, size_t len)
{
	unsigned seq = ++srv.seq;
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 10.1.1.1:%u;branch=z9hG4bKob%u;rport\r\n"
		   "From: <sip:%s@127.0.0.1>;tag=o%u\r\nTo: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: ob-%u-%u\r\nCSeq: 1 REGISTER\r\nSupported: outbound, path\r\n"
		   "Contact: <sip:%s@10.1.1.1:%u;ob>;reg-id=1;"
		   "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"\r\n"
		   "Expires: 300\r\nContent-Length: 0\r\n\r\n",
		   p->port, seq, user, seq, user, p->port, seq, user, p->port);
	phone_expect(p, "SIP/2.0 200", resp, len);
}

static bool unreachable_soon(const char *aor)
{
	/* waits for the state, up to 20 s; no timing is asserted */
	for (int i = 0; i < 200; i++) {
		struct store_binding b[2];
		size_t n = 0;
		assert_int_equal(registrar_lookup(srv.reg, aor, b, 2, &n), 0);
		assert_int_equal(n, 1);
		if (b[0].ka.unreachable)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

/* An outbound phone over UDP that stops its STUN keepalives: the 200
 * promised it Flow-Timer 5, and after 5 + 1 s of silence its binding is
 * marked unreachable (what the proxy's failover reads). */
static void test_silent_outbound_phone_marked_unreachable(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	char resp[4096], ft[32];
	outbound_register(&p, "obsilent", resp, sizeof resp);
	msg_header(resp, "Flow-Timer", ft, sizeof ft);
	assert_string_equal(ft, "5");
	/* a STUN Binding on the SIP port is answered and seen */
	unsigned char req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
				 3,    4,    5,	   6,	 7,    8,    9,	   10,	 11, 12};
	assert_true(sendto(p.fd, req, sizeof req, 0, &srv.addr.u.sa, net_addr_len(&srv.addr)) ==
		    (ssize_t)sizeof req);
	char stun[512];
	assert_true(recv(p.fd, stun, sizeof stun, 0) >= 20);
	assert_int_equal((unsigned char)stun[0], 0x01);
	struct store_binding b[2];
	size_t n = 0;
	assert_int_equal(registrar_lookup(srv.reg, "obsilent@127.0.0.1", b, 2, &n), 0);
	assert_int_equal(n, 1);
	struct flow f = b[0].flow;
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(edge_flows(srv.edge), &f, "obsilent@127.0.0.1", &fi), 0);
	assert_int_equal(fi.last_kind, EDGE_KA_STUN);
	assert_int_equal(fi.reg_id, 1);
	assert_int_equal(fi.check_s, 5);
	/* then nothing */
	assert_true(unreachable_soon("obsilent@127.0.0.1"));
	assert_int_equal(edge_flows_get(edge_flows(srv.edge), &f, "obsilent@127.0.0.1", &fi), 0);
	assert_true(fi.failed);
	assert_int_equal(fi.cause, EDGE_FLOW_KEEPALIVE);
	/* a REGISTER over the flow again makes it alive and reachable */
	outbound_register(&p, "obsilent", resp, sizeof resp);
	assert_int_equal(registrar_lookup(srv.reg, "obsilent@127.0.0.1", b, 2, &n), 0);
	assert_false(b[0].ka.unreachable);
	assert_int_equal(edge_flows_get(edge_flows(srv.edge), &f, "obsilent@127.0.0.1", &fi), 0);
	assert_false(fi.failed);
	phone_close(&p);
}

/* RFC 5626 5.4 / 6: keepalives go to the first hop. A REGISTER that came
 * through another proxy (two Vias, no Path) gets no Flow-Timer from us, and
 * its flow (the proxy's) is not failed for the phone's silence. (A phone
 * that asked for outbound that way gets 439: test_outbound_reg; this one
 * did not, so its reg-id is ignored.) */
static void test_not_first_hop_no_flow_timer(void **state)
{
	(void)state;
	struct phone p;
	phone_open(&p, &srv);
	unsigned seq = ++srv.seq;
	phone_send(&p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKpx%u\r\n"
		   "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKph%u;received=198.51.100.4\r\n"
		   "From: <sip:proxied@127.0.0.1>;tag=p%u\r\nTo: <sip:proxied@127.0.0.1>\r\n"
		   "Call-ID: px-%u\r\nCSeq: 1 REGISTER\r\n"
		   "Contact: <sip:proxied@10.1.1.1:5060;ob>;reg-id=1;"
		   "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEE11>\"\r\n"
		   "Expires: 300\r\nContent-Length: 0\r\n\r\n",
		   p.port, seq, seq, seq, seq);
	char resp[4096];
	phone_expect(&p, "SIP/2.0 200", resp, sizeof resp);
	assert_null(strstr(resp, "\r\nFlow-Timer:"));
	struct store_binding b[2];
	size_t n = 0;
	assert_int_equal(registrar_lookup(srv.reg, "proxied@127.0.0.1", b, 2, &n), 0);
	assert_int_equal(n, 1);
	struct edge_flow_info fi;
	int err = edge_flows_get(edge_flows(srv.edge), &b[0].flow, "proxied@127.0.0.1", &fi);
	assert_true(err == ENOENT || fi.check_s == 0);
	phone_close(&p);
}

/* An outbound phone over TCP closes its connection: its binding is marked
 * unreachable at the close (Flow-Timer over TCP is 30 s here: not the
 * silence; the cause says so too). */
static void test_closed_tcp_phone_marked_unreachable(void **state)
{
	(void)state;
	int tcp_li = net_listener_find(srv.net, NET_TCP, AF_INET);
	assert_true(tcp_li >= 0);
	const struct net_addr *to = net_listener_addr(srv.net, (unsigned)tcp_li);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	struct net_addr me;
	net_sock_addr(fd, &me);
	char msg[2048];
	int n = snprintf(msg, sizeof msg,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKtcp1\r\n"
			 "From: <sip:obtcp@127.0.0.1>;tag=t1\r\nTo: <sip:obtcp@127.0.0.1>\r\n"
			 "Call-ID: obtcp-1\r\nCSeq: 1 REGISTER\r\nSupported: outbound\r\n"
			 "Contact: <sip:obtcp@10.1.1.1:5060;transport=tcp;ob>;reg-id=2;"
			 "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEE00>\"\r\n"
			 "Expires: 300\r\nContent-Length: 0\r\n\r\n");
	assert_true(write(fd, msg, (size_t)n) == n);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char resp[4096];
	ssize_t k = read(fd, resp, sizeof resp - 1);
	assert_true(k > 0);
	resp[k] = '\0';
	assert_true(strncmp(resp, "SIP/2.0 200", 11) == 0);
	/* a CRLF ping is answered and seen */
	assert_true(write(fd, "\r\n\r\n", 4) == 4);
	k = read(fd, resp, sizeof resp);
	assert_int_equal(k, 2);
	struct store_binding b[2];
	size_t nb = 0;
	assert_int_equal(registrar_lookup(srv.reg, "obtcp@127.0.0.1", b, 2, &nb), 0);
	assert_int_equal(nb, 1);
	struct flow f = b[0].flow;
	struct edge_flow_info fi;
	assert_int_equal(edge_flows_get(edge_flows(srv.edge), &f, "obtcp@127.0.0.1", &fi), 0);
	assert_int_equal(fi.last_kind, EDGE_KA_CRLF);
	close(fd);
	assert_true(unreachable_soon("obtcp@127.0.0.1"));
	assert_int_equal(edge_flows_get(edge_flows(srv.edge), &f, "obtcp@127.0.0.1", &fi), 0);
	assert_true(fi.failed);
	assert_int_equal(fi.cause, EDGE_FLOW_CLOSED);
}

int main(void)
{
	const struct CMUnitTest alone[] = {
	    cmocka_unit_test(test_silence_fails_after_interval_and_margin),
	    cmocka_unit_test(test_keepalives_keep_it_alive),
	    cmocka_unit_test(test_spoofed_keepalive_keeps_nothing),
	    cmocka_unit_test(test_closed_connection_fails_at_once),
	    cmocka_unit_test(test_no_outbound_gets_pings_not_failure),
	    cmocka_unit_test(test_flood_does_not_push_out_bound_flows),
	    cmocka_unit_test(test_full_of_bound_flows_refuses),
	    cmocka_unit_test(test_bound_is_the_whole_table),
	    cmocka_unit_test(test_orphan_is_not_a_failure),
	    cmocka_unit_test(test_dump),
	};
	const struct CMUnitTest served[] = {
	    cmocka_unit_test(test_silent_outbound_phone_marked_unreachable),
	    cmocka_unit_test(test_closed_tcp_phone_marked_unreachable),
	    cmocka_unit_test(test_not_first_hop_no_flow_timer),
	};
	int failed_n = cmocka_run_group_tests(alone, NULL, NULL);
	return failed_n + cmocka_run_group_tests(served, setup_server, teardown_server);
}
