/* ua check: the summary from events and a probe result: NAT type names, the keepalive
 * interval and what it rests on, the exit status's order, text and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "ua/ua.h"

static void conf2(struct ua_conf *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "sip:alice@example.org");
	snprintf(c->call_uri, sizeof c->call_uri, "sip:echo@example.org");
	c->n_proxy = 2;
	c->proxy[0].tp = NET_UDP;
	c->proxy[1].tp = NET_TCP;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in *in = &c->proxy[i].addr.u.in;
		in->sin_family = AF_INET;
		in->sin_port = htons(5060);
		inet_pton(AF_INET, "198.18.0.1", &in->sin_addr);
	}
}

static void set_sin(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof *ss);
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
}

static struct probe_result nat(enum probe_behaviour map, enum probe_behaviour filt)
{
	struct probe_result r;
	memset(&r, 0, sizeof r);
	r.answered = true;
	r.nat = map != PROBE_NO_NAT;
	r.rfc5780 = true;
	r.mapping = map;
	r.filtering = filt;
	set_sin(&r.local, "100.64.1.2", 4000);
	set_sin(&r.mapped, "198.18.0.11", 4000);
	return r;
}

static void test_nat_types(void **state)
{
	(void)state;
	struct probe_result r = nat(PROBE_EI, PROBE_EI);
	assert_string_equal(ua_check_nat_type(&r), "endpoint-independent");
	r = nat(PROBE_EI, PROBE_AD);
	assert_string_equal(ua_check_nat_type(&r), "address-restricted");
	r = nat(PROBE_EI, PROBE_APD);
	assert_string_equal(ua_check_nat_type(&r), "port-restricted");
	r = nat(PROBE_AD, PROBE_APD);
	assert_string_equal(ua_check_nat_type(&r), "symmetric");
	r = nat(PROBE_APD, PROBE_APD);
	assert_string_equal(ua_check_nat_type(&r), "symmetric");
	r = nat(PROBE_NO_NAT, PROBE_UNKNOWN);
	assert_string_equal(ua_check_nat_type(&r), "no-nat");
	r = nat(PROBE_UNKNOWN, PROBE_UNKNOWN); /* a server without RFC 5780 */
	assert_string_equal(ua_check_nat_type(&r), "nat");
	r.answered = false;
	assert_string_equal(ua_check_nat_type(&r), "unknown");
}

static void registered(struct ua_check *c, unsigned flow, uint32_t flow_timer)
{
	struct ua_event ev = {.kind = UA_EV_REGISTERED,
			      .flow = flow,
			      .outbound = true,
			      .flow_timer = flow_timer,
			      .expires = 600,
			      .interval_ms = flow_timer * 900,
			      .local = "100.64.1.2:5000"};
	ua_check_event(c, &ev);
}

static void verdict(struct ua_check *c, enum rtp_verdict v)
{
	struct rtp_verdict_in in = {.echo = true,
				    .sent_packets = 300,
				    .recv_packets = v == RTP_VERDICT_TWO_WAY ? 294 : 0,
				    .lost = v == RTP_VERDICT_TWO_WAY ? 6 : 0,
				    .far_block = true,
				    .far_received = 250,
				    .have_rtt = true,
				    .rtt_ms = 42};
	struct rtp_verdict_out out = {.verdict = v};
	snprintf(out.cause, sizeof out.cause, "a cause");
	struct ua_event ev = {.kind = UA_EV_VERDICT, .flow = 1, .verdict_in = &in, .verdict_out = &out};
	ua_check_event(c, &ev);
}

static void done(struct ua_check *c, int code)
{
	struct ua_event ev = {.kind = UA_EV_DONE, .exit_code = code};
	ua_check_event(c, &ev);
}

static void test_exit_order(void **state)
{
	(void)state;
	struct ua_conf conf;
	conf2(&conf);
	struct ua_check *c = test_malloc(sizeof *c);

	/* all good */
	ua_check_init(c, &conf);
	registered(c, 1, 25);
	registered(c, 2, 120);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	assert_int_equal(ua_check_exit(c), 0);

	/* two-way audio, but the TCP flow refused: the flow's failure counts */
	ua_check_init(c, &conf);
	registered(c, 1, 25);
	struct ua_event f = {.kind = UA_EV_REG_FAILED, .flow = 2, .status = 403, .detail = "403 Forbidden"};
	ua_check_event(c, &f);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	assert_int_equal(ua_check_exit(c), UA_EXIT_REFUSED);

	/* a wrong password outranks a refusal on the other flow */
	struct ua_event a = {.kind = UA_EV_AUTH_FAILED, .flow = 1, .status = 401, .detail = "x"};
	ua_check_init(c, &conf);
	ua_check_event(c, &f);
	ua_check_event(c, &a);
	done(c, UA_EXIT_AUTH);
	assert_int_equal(ua_check_exit(c), UA_EXIT_AUTH);

	/* both registered, audio one way only */
	ua_check_init(c, &conf);
	registered(c, 1, 25);
	registered(c, 2, 120);
	verdict(c, RTP_VERDICT_ONE_WAY_OUT);
	done(c, UA_EXIT_NO_AUDIO);
	assert_int_equal(ua_check_exit(c), UA_EXIT_NO_AUDIO);

	/* the call refused at once while the TCP flow was still registering:
	 * the call's refusal, not a timeout */
	ua_check_init(c, &conf);
	registered(c, 1, 25);
	struct ua_event cl = {.kind = UA_EV_CALL, .flow = 1, .status = 404, .detail = "404 Not Found"};
	ua_check_event(c, &cl);
	done(c, UA_EXIT_REFUSED);
	assert_int_equal(ua_check_exit(c), UA_EXIT_REFUSED);

	/* two-way, but a flow never heard back: a timeout */
	ua_check_init(c, &conf);
	registered(c, 1, 25);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	assert_int_equal(ua_check_exit(c), UA_EXIT_TIMEOUT);

	/* --no-register: only the call counts */
	conf.no_register = true;
	ua_check_init(c, &conf);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	assert_int_equal(ua_check_exit(c), 0);

	/* the ua said 0 but no verdict came: not a pass */
	ua_check_init(c, &conf);
	done(c, 0);
	assert_int_equal(ua_check_exit(c), UA_EXIT_NO_AUDIO);
	test_free(c);
}

static void test_keepalive_and_output(void **state)
{
	(void)state;
	struct ua_conf conf;
	conf2(&conf);
	struct ua_check *c = test_malloc(sizeof *c);
	ua_check_init(c, &conf);
	struct probe_result r = nat(PROBE_APD, PROBE_APD);
	r.lifetime_tested = true;
	r.lifetime_lo_s = 30;
	r.lifetime_hi_s = 31;
	ua_check_set_probe(c, &r);
	registered(c, 1, 25);
	registered(c, 2, 120);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	struct buf b;
	buf_init(&b);
	assert_int_equal(ua_check_json(c, &b), 0);
	buf_append(&b, "", 1);
	/* the measured lifetime wins over the Flow-Timer: 80 % of 30 s */
	assert_non_null(strstr(b.data, "\"keepalive\":{\"interval_s\":24,\"basis\":\"measured"));
	assert_non_null(strstr(b.data, "\"type\":\"symmetric\""));
	assert_non_null(strstr(b.data, "\"lifetime\":{\"alive_s\":30,\"gone_s\":31}"));
	assert_non_null(strstr(b.data, "\"audio\":\"two-way\""));
	assert_non_null(strstr(b.data, "\"loss_in_pct\":2.0")); /* 6 of 300 */
	assert_non_null(strstr(b.data, "\"rtt_ms\":42"));
	assert_non_null(strstr(b.data, "\"exit\":0}"));
	assert_non_null(strstr(b.data, "\"mapped\":\"198.18.0.11:4000\""));
	buf_free(&b);

	buf_init(&b);
	assert_int_equal(ua_check_text(c, &b), 0);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "  nat:              symmetric"));
	assert_non_null(strstr(b.data, "every 24 s (measured binding lifetime)"));
	assert_non_null(strstr(b.data, "flow 2:           tcp:198.18.0.1:5060 registered, outbound, Flow-Timer 120 s"));
	assert_non_null(strstr(b.data, "  rtt:              42 ms"));
	assert_non_null(strstr(b.data, "(exit 0)"));
	buf_free(&b);

	/* no lifetime measured: the server's Flow-Timer of the first flow */
	ua_check_init(c, &conf);
	r.lifetime_tested = false;
	ua_check_set_probe(c, &r);
	registered(c, 1, 25);
	buf_init(&b);
	ua_check_json(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "\"interval_s\":20,\"basis\":\"server's Flow-Timer\""));
	assert_non_null(strstr(b.data, "\"audio\":null"));
	buf_free(&b);

	/* no NAT: no keepalive needed */
	ua_check_init(c, &conf);
	r = nat(PROBE_NO_NAT, PROBE_UNKNOWN);
	ua_check_set_probe(c, &r);
	buf_init(&b);
	ua_check_text(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "keepalive:        none needed, no NAT"));
	buf_free(&b);
	test_free(c);
}

static void alg_event(struct ua_check *c, unsigned flow, const char *method, unsigned rewritten)
{
	struct ua_event ev = {
	    .kind = UA_EV_SIP_ALG, .flow = flow, .method = method, .rewritten = rewritten};
	ua_check_event(c, &ev);
}

/* The SIP ALG verdict (Pinhole-Seen, alg.c) in the summary: unknown without
 * one, "no SIP ALG" when nothing was rewritten, the parts per request when
 * something was; it never changes the exit status (audio decides). */
static void test_alg_verdict(void **state)
{
	(void)state;
	struct ua_conf conf;
	conf2(&conf);
	struct ua_check *c = test_malloc(sizeof *c);
	struct buf b;

	ua_check_init(c, &conf);
	registered(c, 1, 25);
	registered(c, 2, 120);
	verdict(c, RTP_VERDICT_TWO_WAY);
	done(c, 0);
	buf_init(&b);
	ua_check_text(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "  sip alg:          unknown: the server did not say"));
	buf_free(&b);
	buf_init(&b);
	ua_check_json(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "\"sip_alg\":null"));
	buf_free(&b);

	/* both flows' REGISTERs seen as sent */
	alg_event(c, 1, "REGISTER", 0);
	alg_event(c, 2, "REGISTER", 0);
	buf_init(&b);
	ua_check_text(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "  sip alg:          the server saw what the ua sent: no SIP "
				       "ALG on the path (REGISTER: nothing rewritten)"));
	buf_free(&b);
	buf_init(&b);
	ua_check_json(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "\"sip_alg\":{\"rewritten\":false,\"register\":[],"
				       "\"invite\":null,"));
	buf_free(&b);

	/* the UDP flow's REGISTER and the INVITE rewritten */
	alg_event(c, 1, "REGISTER", UA_ALG_VIA | UA_ALG_CONTACT);
	alg_event(c, 1, "INVITE", UA_ALG_CONTACT | UA_ALG_SDP);
	buf_init(&b);
	ua_check_text(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "  sip alg:          a SIP ALG on your router rewrote Via, "
				       "Contact and SDP: switch it off (REGISTER: via, contact; "
				       "INVITE: contact, sdp rewritten)"));
	assert_non_null(strstr(b.data, "(exit 0)"));
	buf_free(&b);
	buf_init(&b);
	ua_check_json(c, &b);
	buf_append(&b, "", 1);
	assert_non_null(strstr(b.data, "\"sip_alg\":{\"rewritten\":true,\"register\":[\"via\","
				       "\"contact\"],\"invite\":[\"contact\",\"sdp\"],\"words\":"
				       "\"a SIP ALG on your router rewrote Via, Contact and SDP: switch "
				       "it off\"}"));
	assert_non_null(strstr(b.data, "\"exit\":0}"));
	buf_free(&b);
	test_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nat_types),
	    cmocka_unit_test(test_exit_order),
	    cmocka_unit_test(test_keepalive_and_output),
	    cmocka_unit_test(test_alg_verdict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
