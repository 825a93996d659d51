/* pinhole probe: the SIP verdict from synthetic results, and a run against stund on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"
#include "probe/probe.h"
#include "stund/stund.h"

static bool has_note(const struct probe_verdict *v, const char *part)
{
	for (unsigned i = 0; i < v->nnotes; i++)
		if (strstr(v->notes[i], part))
			return true;
	return false;
}

static void test_verdicts(void **state)
{
	(void)state;
	struct probe_result r;
	struct probe_verdict v;

	memset(&r, 0, sizeof r);
	probe_verdict(&r, &v);
	assert_string_equal(v.media_relay, "unknown");

	/* port-preserving masquerade: EIM, APDF, 20 s conntrack timeout */
	r.answered = r.nat = r.rfc5780 = true;
	r.mapping = PROBE_EI;
	r.filtering = PROBE_APD;
	r.hairpin = PROBE_NO;
	r.lifetime_tested = true;
	r.lifetime_lo_s = 18;
	r.lifetime_hi_s = 20;
	probe_verdict(&r, &v);
	assert_int_equal(v.keepalive_s, 13); /* min(80%, lifetime - 5) */
	assert_true(v.keepalive_measured);
	assert_int_equal(v.symmetric_ok, PROBE_YES);
	assert_string_equal(v.media_relay, "needed without ICE");
	assert_true(has_note(&v, "hairpinning"));

	/* full cone */
	r.filtering = PROBE_EI;
	r.hairpin = PROBE_YES;
	probe_verdict(&r, &v);
	assert_string_equal(v.media_relay, "not needed");

	/* --random-fully: symmetric */
	r.mapping = PROBE_APD;
	probe_verdict(&r, &v);
	assert_string_equal(v.media_relay, "needed");

	/* outlived max-wait */
	r.lifetime_lo_s = 60;
	r.lifetime_hi_s = 0;
	probe_verdict(&r, &v);
	assert_int_equal(v.keepalive_s, 48);
	/* not measured */
	r.lifetime_tested = false;
	probe_verdict(&r, &v);
	assert_int_equal(v.keepalive_s, 25);
	assert_false(v.keepalive_measured);
	/* very short */
	r.lifetime_tested = true;
	r.lifetime_lo_s = 4;
	r.lifetime_hi_s = 5;
	probe_verdict(&r, &v);
	assert_int_equal(v.keepalive_s, 5);
	assert_true(has_note(&v, "TCP"));

	/* no NAT */
	r.nat = false;
	r.mapping = PROBE_NO_NAT;
	probe_verdict(&r, &v);
	assert_int_equal(v.keepalive_s, 0);
	assert_string_equal(v.media_relay, "not needed");

	struct buf out;
	buf_init(&out);
	assert_int_equal(probe_report_json(&r, &v, &out), 0);
	assert_non_null(strstr(out.data, "\"mapping\":\"no-nat\""));
	assert_non_null(strstr(out.data, "\"media_relay\":\"not needed\""));
	buf_reset(&out);
	assert_int_equal(probe_report_text(&r, &v, &out), 0);
	buf_append(&out, "", 1);
	assert_non_null(strstr(out.data, "mapping behaviour:  no-nat"));
	buf_free(&out);
}

struct server {
	struct net *net;
	struct conf *conf;
	struct stund *sd;
};

static int serve(struct server *s, const char *ini)
{
	memset(s, 0, sizeof *s);
	const struct conf_key *const tables[] = {stund_conf_keys, NULL};
	assert_int_equal(conf_alloc(&s->conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(s->conf, "test", ini, err, sizeof err), 0);
	struct net_conf nc = {.workers = 1};
	assert_int_equal(net_alloc(&s->net, &nc), 0);
	int e = stund_start(&s->sd, s->net, s->conf, NULL);
	if (!e)
		assert_int_equal(net_start(s->net), 0);
	return e;
}

static void unserve(struct server *s)
{
	net_stop(s->net);
	stund_free(s->sd);
	net_free(s->net);
	conf_free(s->conf);
}

static void opts_for(struct probe_opts *o, const struct sockaddr_storage *srv)
{
	memset(o, 0, sizeof *o);
	o->server = *srv;
	o->local.ss_family = AF_INET;
	((struct sockaddr_in *)&o->local)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	o->timeout_ms = 1000;
	o->max_wait_s = 3;
	o->lifetime = true;
}

static void test_against_stund(void **state)
{
	(void)state;
	struct server s;
	int err = serve(&s, "[stun]\nlisten = udp:127.0.0.1:0\nother = 127.0.0.2:0\nrate = 0\n");
	if (err == EADDRNOTAVAIL) {
		unserve(&s);
		skip();
	}
	assert_int_equal(err, 0);
	struct probe_opts o;
	opts_for(&o, stund_addr(s.sd, 0, 0));
	o.lifetime_without_nat = true;
	struct probe_result r;
	assert_int_equal(probe_run(&o, &r), 0);
	assert_true(r.answered);
	assert_true(r.rfc5780);
	assert_false(r.nat);
	assert_int_equal(r.mapping, PROBE_NO_NAT);
	assert_int_equal(r.filtering, PROBE_EI);
	assert_int_equal(r.port_preserved, PROBE_YES);
	assert_true(r.lifetime_tested);
	assert_int_equal(r.lifetime_hi_s, 0); /* loopback never forgets */
	assert_int_equal(r.lifetime_lo_s, 3);
	unserve(&s);

	/* one address: what it can tell, and why not more */
	assert_int_equal(serve(&s, "[stun]\nlisten = udp:127.0.0.1:0\n"), 0);
	opts_for(&o, stund_addr(s.sd, 0, 0));
	assert_int_equal(probe_run(&o, &r), 0);
	assert_true(r.answered);
	assert_false(r.rfc5780);
	assert_false(r.nat);
	assert_false(r.lifetime_tested);
	assert_non_null(strstr(r.error, "RFC 5780"));
	unserve(&s);
}

static void test_no_answer(void **state)
{
	(void)state;
	/* a port nobody listens on */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)in, sizeof *in);
	socklen_t l = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &l);
	close(fd);
	struct probe_opts o;
	opts_for(&o, &ss);
	o.timeout_ms = 300;
	struct probe_result r;
	assert_int_equal(probe_run(&o, &r), ETIMEDOUT);
	assert_false(r.answered);
	assert_non_null(strstr(r.error, "no STUN answer"));
}

static void test_cli(void **state)
{
	(void)state;
	char *help[] = {"probe", "--help", NULL};
	assert_int_equal(probe_main(2, help), 0);
	char *none[] = {"probe", NULL};
	assert_int_equal(probe_main(1, none), 2);
	char *bad[] = {"probe", "--max-wait", "0", "127.0.0.1", NULL};
	assert_int_equal(probe_main(4, bad), 2);
	char *silent[] = {"probe", "--timeout", "200", "--json", "127.0.0.1:9", NULL};
	assert_int_equal(probe_main(5, silent), 1);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_against_stund),
	    cmocka_unit_test(test_no_answer),
	    cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
