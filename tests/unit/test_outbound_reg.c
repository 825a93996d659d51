/* Registrar side of SIP Outbound (RFC 5626 6) and Path (RFC 3327), over real sockets:
 * flows per instance and reg-id, 439, Path trust, bad input, the per-source bound,
 * what the 200 says, and what survives a restart. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
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

#include "phone.h"
#include "registrar/registrar_int.h"

#define INST "\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""
#define INST2 "\"<urn:uuid:2b7e1a40-5c9d-4a8e-9f00-0000000000b2>\""

/* The phones: 127.0.0.1 a phone straight to us, 127.0.0.2 an edge proxy of
 * ours ([proxy] trusted), 127.0.0.3 a stranger, 127.0.0.4 another phone. */
#define CONF_BASE                                                                                  \
	"[sip]\nlisten = udp:127.0.0.1:0, tcp:127.0.0.1:0\n"                                       \
	"[registrar]\nmin_expires = 60\nmax_expires = 600\n"                                       \
	"[keepalive]\ninterval = 0\n"                                                              \
	"[proxy]\ntrusted = 127.0.0.2\n"                                                           \
	"[outbound]\nmax_flows_per_source = 4\n"

struct fixture {
	struct test_server srv;
	struct phone ph, edge, atk, other;
	unsigned seq;
};

static struct fixture fx;

static void phones_open(struct fixture *f)
{
	phone_open_at(&f->ph, &f->srv, "127.0.0.1");
	phone_open_at(&f->edge, &f->srv, "127.0.0.2");
	phone_open_at(&f->atk, &f->srv, "127.0.0.3");
	phone_open_at(&f->other, &f->srv, "127.0.0.4");
}

static void phones_close(struct fixture *f)
{
	phone_close(&f->ph);
	phone_close(&f->edge);
	phone_close(&f->atk);
	phone_close(&f->other);
}

static int setup(void **state)
{
	memset(&fx, 0, sizeof fx);
	test_server_start(&fx.srv, CONF_BASE);
	phones_open(&fx);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	phones_close(f);
	test_server_stop(&f->srv);
	return 0;
}

static const char *ip_of(const struct phone *p)
{
	static _Thread_local char ip[NET_ADDR_STRLEN];
	struct net_addr a;
	net_sock_addr(p->fd, &a);
	return net_addr_ip_fmt(&a, ip, sizeof ip);
}

/* A REGISTER for user from p: p's own Via on top, then below (more Via
 * lines: a REGISTER that an edge passes on), then the extra headers. Returns
 * the status; the response goes to resp. */
static int reg(struct fixture *f, struct phone *p, const char *user, const char *call_id,
	       unsigned cseq, const char *below, const char *extra, char *resp, size_t len)
{
	phone_send(p,
		   "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
		   "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bK-ob-%u\r\n"
		   "%s"
		   "From: <sip:%s@127.0.0.1>;tag=t1\r\n"
		   "To: <sip:%s@127.0.0.1>\r\n"
		   "Call-ID: %s\r\n"
		   "CSeq: %u REGISTER\r\n"
		   "Max-Forwards: 70\r\n"
		   "%s"
		   "Content-Length: 0\r\n\r\n",
		   ip_of(p), p->port, ++f->seq, below ? below : "", user, user, call_id, cseq,
		   extra);
	phone_expect(p, "SIP/2.0 ", resp, len);
	int status = 0;
	sscanf(resp, "SIP/2.0 %d", &status);
	return status;
}

/* An outbound REGISTER straight from the phone: instance, reg-id, expires. */
static int reg_ob(struct fixture *f, struct phone *p, const char *user, const char *call_id,
		  unsigned cseq, const char *inst, unsigned reg_id, unsigned expires, char *resp,
		  size_t len)
{
	char extra[512];
	snprintf(extra, sizeof extra,
		 "Supported: outbound, path\r\n"
		 "Contact: <sip:%s@100.64.9.9:%u;ob>;+sip.instance=%s;reg-id=%u;expires=%u\r\n",
		 user, 5060 + reg_id, inst, reg_id, expires);
	return reg(f, p, user, call_id, cseq, NULL, extra, resp, len);
}

static size_t lookup(struct fixture *f, const char *user, struct store_binding *b, size_t max)
{
	char aor[64];
	snprintf(aor, sizeof aor, "%s@127.0.0.1", user);
	size_t n = 0;
	assert_int_equal(registrar_lookup(f->srv.reg, aor, b, max, &n), 0);
	return n;
}

static int64_t counter(const char *name)
{
	usleep(50 * 1000); /* the workers count after they answer */
	struct buf b;
	buf_init(&b);
	metrics_write_prometheus(&b);
	buf_append(&b, "", 1);
	int64_t v = -1;
	char key[128];
	snprintf(key, sizeof key, "\npinhole_%s ", name);
	const char *at = b.data ? strstr(b.data, key) : NULL;
	if (at)
		v = strtoll(at + strlen(key), NULL, 10);
	buf_free(&b);
	return v;
}

/* A header's value in a response, "" when it has none. */
static void header(const char *msg, const char *name, char *out, size_t len)
{
	char key[64];
	snprintf(key, sizeof key, "\r\n%s: ", name);
	const char *h = strstr(msg, key);
	const char *e = h ? strstr(h + strlen(key), "\r\n") : NULL;
	if (!e) {
		snprintf(out, len, "%s", "");
		return;
	}
	h += strlen(key);
	snprintf(out, len, "%.*s", (int)(e - h), h);
}

/* The registrar is the first hop (one Via): the 200 says Require: outbound
 * and how often to ping, and the binding holds the phone's flow. */
static void test_first_hop_outbound(void **state)
{
	struct fixture *f = *state;
	char r[4096], h[256];
	assert_int_equal(reg_ob(f, &f->ph, "amy", "c-amy", 1, INST, 1, 300, r, sizeof r), 200);
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "outbound");
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "25");
	assert_null(strstr(r, "\r\nPath:"));
	assert_non_null(strstr(r, ";+sip.instance=" INST ";reg-id=1"));
	struct store_binding b[4];
	assert_int_equal(lookup(f, "amy", b, 4), 1);
	assert_int_equal(b[0].reg_id, 1);
	assert_string_equal(b[0].instance, INST);
	assert_int_equal(net_addr_port(&b[0].flow.remote), f->ph.port);
	assert_string_equal(b[0].path, "");
}

/* Same instance and reg-id: the flow (and contact) is replaced, even from
 * a new socket and a new Call-ID (a phone that rebooted or whose NAT
 * mapping changed); another reg-id is a second flow of the instance. */
static void test_replace_and_second_flow(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	struct phone again;
	phone_open_at(&again, &f->srv, "127.0.0.1");
	assert_int_equal(reg_ob(f, &f->ph, "bea", "c-bea", 1, INST, 1, 300, r, sizeof r), 200);
	assert_int_equal(reg_ob(f, &again, "bea", "c-bea-reboot", 1, INST, 1, 300, r, sizeof r),
			 200);
	struct store_binding b[4];
	assert_int_equal(lookup(f, "bea", b, 4), 1);
	assert_int_equal(net_addr_port(&b[0].flow.remote), again.port);
	/* reg-id 2 over the other socket: two flows of one instance */
	assert_int_equal(reg_ob(f, &f->ph, "bea", "c-bea-2", 1, INST, 2, 300, r, sizeof r), 200);
	assert_int_equal(lookup(f, "bea", b, 4), 2);
	bool seen1 = false, seen2 = false;
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(b[i].instance, INST);
		if (b[i].reg_id == 1) {
			seen1 = true;
			assert_int_equal(net_addr_port(&b[i].flow.remote), again.port);
		} else if (b[i].reg_id == 2) {
			seen2 = true;
			assert_int_equal(net_addr_port(&b[i].flow.remote), f->ph.port);
		}
	}
	assert_true(seen1 && seen2);
	/* refreshing flow 1 leaves flow 2 alone; its removal removes only it */
	assert_int_equal(reg_ob(f, &again, "bea", "c-bea-reboot", 2, INST, 1, 300, r, sizeof r),
			 200);
	assert_int_equal(lookup(f, "bea", b, 4), 2);
	assert_int_equal(reg_ob(f, &again, "bea", "c-bea-reboot", 3, INST, 1, 0, r, sizeof r), 200);
	assert_int_equal(lookup(f, "bea", b, 4), 1);
	assert_int_equal(b[0].reg_id, 2);
	phone_close(&again);
}

/* An instance without reg-id is a plain binding (keyed by its Contact, as
 * in RFC 5627), beside the outbound ones of the same AOR; no Require. */
static void test_instance_without_reg_id(void **state)
{
	struct fixture *f = *state;
	char r[4096], h[256];
	assert_int_equal(reg_ob(f, &f->ph, "cyd", "c-cyd", 1, INST, 1, 300, r, sizeof r), 200);
	assert_int_equal(reg(f, &f->ph, "cyd", "c-cyd-g", 1, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:cyd@100.64.9.8>;+sip.instance=" INST2 "\r\n",
			     r, sizeof r),
			 200);
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "");
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "");
	/* a second Contact for the same instance is a second binding */
	assert_int_equal(reg(f, &f->ph, "cyd", "c-cyd-g", 2, NULL,
			     "Contact: <sip:cyd@100.64.9.7>;+sip.instance=" INST2 "\r\n", r,
			     sizeof r),
			 200);
	struct store_binding b[4];
	assert_int_equal(lookup(f, "cyd", b, 4), 3);
	size_t plain = 0;
	for (size_t i = 0; i < 3; i++)
		plain += b[i].reg_id == 0 && strcmp(b[i].instance, INST2) == 0;
	assert_int_equal(plain, 2);
}

/* RFC 5626 6: without the outbound option tag, or through a first hop
 * without outbound when the phone did not ask for it, or without an
 * instance, the reg-id is ignored: a plain binding, no Require: outbound. */
static void test_reg_id_ignored(void **state)
{
	struct fixture *f = *state;
	char r[4096], h[256];
	struct store_binding b[4];
	/* no Supported: outbound */
	assert_int_equal(reg(f, &f->ph, "dot", "c-dot", 1, NULL,
			     "Contact: <sip:dot@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n", r,
			     sizeof r),
			 200);
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "");
	assert_null(strstr(r, "reg-id="));
	assert_int_equal(lookup(f, "dot", b, 4), 1);
	assert_int_equal(b[0].reg_id, 0);
	/* two Vias, no Path, no option tag: ignored, not 439 */
	assert_int_equal(reg(f, &f->ph, "dot", "c-dot", 2,
			     "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-phone\r\n",
			     "Contact: <sip:dot@100.64.9.10>;+sip.instance=" INST ";reg-id=2\r\n",
			     r, sizeof r),
			 200);
	assert_null(strstr(r, "reg-id="));
	/* reg-id without instance: ignored (it used to be 400) */
	assert_int_equal(reg(f, &f->ph, "dot", "c-dot", 3, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:dot@100.64.9.11>;reg-id=3\r\n",
			     r, sizeof r),
			 200);
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "");
	assert_int_equal(lookup(f, "dot", b, 4), 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(b[i].reg_id, 0);
}

/* RFC 5626 6: more than one Via and no Path whose first entry has ;ob, with
 * a reg-id and the outbound option tag: 439. One Via never is. */
static void test_439(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	const char *phone_via = "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-phone;rport\r\n";
	int64_t c0 = counter("registrar_first_hop_lacks_outbound_total");
	/* a proxy that adds no Path */
	assert_int_equal(reg(f, &f->ph, "eve", "c-eve", 1, phone_via,
			     "Supported: outbound\r\n"
			     "Contact: <sip:eve@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 439);
	assert_non_null(strstr(r, "First Hop Lacks Outbound Support"));
	/* Require: outbound counts as asking for it too */
	assert_int_equal(reg(f, &f->ph, "eve", "c-eve", 2, phone_via,
			     "Require: outbound\r\n"
			     "Contact: <sip:eve@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 439);
	/* an edge of ours whose Path lacks ;ob */
	assert_int_equal(reg(f, &f->edge, "eve", "c-eve", 3, phone_via,
			     "Path: <sip:tok@127.0.0.2;lr>\r\n"
			     "Supported: outbound\r\n"
			     "Contact: <sip:eve@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 439);
	/* ;ob on a Path entry below the first does not count */
	assert_int_equal(reg(f, &f->edge, "eve", "c-eve", 4, phone_via,
			     "Path: <sip:tok@127.0.0.2;lr>, <sip:tok2@127.0.0.9;lr;ob>\r\n"
			     "Supported: outbound\r\n"
			     "Contact: <sip:eve@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 439);
	assert_int_equal(counter("registrar_first_hop_lacks_outbound_total") - c0, 4);
	struct store_binding b[4];
	assert_int_equal(lookup(f, "eve", b, 4), 0);
	/* no reg-id: nothing to refuse */
	assert_int_equal(reg(f, &f->ph, "eve", "c-eve", 5, phone_via,
			     "Supported: outbound\r\n"
			     "Contact: <sip:eve@100.64.9.9>;+sip.instance=" INST "\r\n",
			     r, sizeof r),
			 200);
	/* one Via (we are the first hop): outbound, whatever else */
	assert_int_equal(reg_ob(f, &f->ph, "eve", "c-eve", 6, INST, 1, 300, r, sizeof r), 200);
	assert_non_null(strstr(r, "Require: outbound"));
}

/* An edge of ours (trusted) with ;ob first in the Path: outbound applies,
 * the Path is stored and returned to a UA that supports path; no
 * Flow-Timer (the edge is the first hop and says it). */
static void test_edge_path_ob(void **state)
{
	struct fixture *f = *state;
	char r[4096], h[512];
	const char *phone_via = "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-phone;rport\r\n";
	assert_int_equal(reg(f, &f->edge, "fay", "c-fay", 1, phone_via,
			     "Path: <sip:tokA@127.0.0.2:5060;lr;ob>\r\n"
			     "Path: <sip:core@127.0.0.9;lr>\r\n"
			     "Supported: outbound, path\r\n"
			     "Contact: <sip:fay@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 200);
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "outbound");
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "");
	header(r, "Path", h, sizeof h);
	assert_string_equal(h, "<sip:tokA@127.0.0.2:5060;lr;ob>, <sip:core@127.0.0.9;lr>");
	struct store_binding b[4];
	assert_int_equal(lookup(f, "fay", b, 4), 1);
	assert_string_equal(b[0].path, "<sip:tokA@127.0.0.2:5060;lr;ob>, <sip:core@127.0.0.9;lr>");
	assert_int_equal(b[0].reg_id, 1);
	/* a UA that did not say Supported: path gets no Path back; it is stored */
	assert_int_equal(reg(f, &f->edge, "fay", "c-fay", 2, phone_via,
			     "Path: <sip:tokB@127.0.0.2:5060;lr;ob>\r\n"
			     "Supported: outbound\r\n"
			     "Contact: <sip:fay@100.64.9.9>;+sip.instance=" INST ";reg-id=2\r\n",
			     r, sizeof r),
			 200);
	assert_null(strstr(r, "\r\nPath:"));
	assert_non_null(strstr(r, "Require: outbound"));
	assert_int_equal(lookup(f, "fay", b, 4), 2);
	for (size_t i = 0; i < 2; i++)
		if (b[i].reg_id == 2)
			assert_string_equal(b[i].path, "<sip:tokB@127.0.0.2:5060;lr;ob>");
}

/* The attack: a stranger puts a Path in its REGISTER, naming a third host,
 * so that calls for the AOR are sent there. Only [proxy] trusted hops may
 * set a Path: 403, counted, nothing stored. */
static void test_path_untrusted_refused(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	int64_t c0 = counter("registrar_path_untrusted_total");
	assert_int_equal(reg(f, &f->atk, "gus", "c-gus", 1, NULL,
			     "Path: <sip:victim@198.51.100.77;lr>\r\n"
			     "Contact: <sip:gus@100.64.9.9>\r\n",
			     r, sizeof r),
			 403);
	/* also dressed up as outbound through an edge */
	assert_int_equal(reg(f, &f->atk, "gus", "c-gus", 2,
			     "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-phone\r\n",
			     "Path: <sip:tok@198.51.100.77;lr;ob>\r\n"
			     "Supported: outbound, path\r\n"
			     "Contact: <sip:gus@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 403);
	assert_int_equal(counter("registrar_path_untrusted_total") - c0, 2);
	struct store_binding b[4];
	assert_int_equal(lookup(f, "gus", b, 4), 0);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	static const char *const bad[] = {
	    /* not URNs */
	    "+sip.instance=\"<http://example.com/x>\";reg-id=1",
	    "+sip.instance=\"urn:uuid:00000000-0000-1000-8000-000A95A0E128\";reg-id=1",
	    "+sip.instance=\"<urn:uuid>\"",
	    "+sip.instance=\"<urn::x>\"",
	    "+sip.instance=\"<urn:-uuid:x>\"",
	    "+sip.instance=\"<urn:uuid:a b>\"",
	    "+sip.instance",
	    "+sip.instance=\"\"",
	    /* reg-id = 1*DIGIT, 1 to 2^31 - 1 */
	    "+sip.instance=" INST ";reg-id=0",
	    "+sip.instance=" INST ";reg-id=2147483648",
	    "+sip.instance=" INST ";reg-id=99999999999999999999",
	    "+sip.instance=" INST ";reg-id=-1",
	    "+sip.instance=" INST ";reg-id=one",
	    "+sip.instance=" INST ";reg-id",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char extra[512];
		snprintf(extra, sizeof extra,
			 "Supported: outbound\r\nContact: <sip:hal@100.64.9.9>;%s\r\n", bad[i]);
		int st = reg(f, &f->ph, "hal", "c-hal", (unsigned)i + 1, NULL, extra, r, sizeof r);
		if (st != 400)
			fail_msg("%s: %d, not 400", bad[i], st);
	}
	struct store_binding b[4];
	assert_int_equal(lookup(f, "hal", b, 4), 0);
	/* without its quotes the value is no gen-value: the Contact is malformed */
	assert_int_equal(reg(f, &f->ph, "hal", "c-hal", 99, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:hal@100.64.9.9>;+sip.instance=<urn:x-pinhole:phone-1>"
			     ";reg-id=1\r\n",
			     r, sizeof r),
			 400);
	/* the edges of the grammar pass */
	assert_int_equal(reg(f, &f->ph, "hal", "c-hal", 100, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:hal@100.64.9.9>;+sip.instance=" INST
			     ";reg-id=2147483647\r\n",
			     r, sizeof r),
			 200);
	assert_int_equal(
	    reg(f, &f->ph, "hal", "c-hal", 101, NULL,
		"Supported: outbound\r\n"
		"Contact: <sip:hal@100.64.9.9>;+sip.instance=\"<urn:x-pinhole:phone-1>\""
		";reg-id=1\r\n",
		r, sizeof r),
	    200);
	assert_int_equal(lookup(f, "hal", b, 4), 2);
	/* RFC 5626 6: a reg-id with another live contact in the same REGISTER */
	assert_int_equal(reg(f, &f->ph, "hal", "c-hal", 102, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:hal@100.64.9.9>;+sip.instance=" INST ";reg-id=3, "
			     "<sip:hal@100.64.9.5>\r\n",
			     r, sizeof r),
			 400);
	/* ...while removing others beside it is fine */
	assert_int_equal(reg(f, &f->ph, "hal", "c-hal", 103, NULL,
			     "Supported: outbound\r\n"
			     "Contact: <sip:hal@100.64.9.9>;+sip.instance=" INST ";reg-id=3, "
			     "<sip:hal@100.64.9.9>;+sip.instance=" INST
			     ";reg-id=2147483647;expires=0\r\n",
			     r, sizeof r),
			 200);
	assert_int_equal(lookup(f, "hal", b, 4), 2);
}

/* The attack: one source registers outbound flows for many AORs (open
 * mode, or a NAT full of accounts) to fill the binding table. At
 * max_flows_per_source (4 here) new ones get 403 and are counted;
 * refreshes pass, other sources and our trusted edges are not affected,
 * and a removed flow frees its place. */
static void test_flows_per_source_bound(void **state)
{
	struct fixture *f = *state;
	char r[4096], user[32], cid[32];
	int64_t c0 = counter("registrar_flows_per_source_refused_total");
	for (int i = 0; i < 4; i++) {
		snprintf(user, sizeof user, "atk%d", i);
		snprintf(cid, sizeof cid, "c-atk%d", i);
		assert_int_equal(reg_ob(f, &f->atk, user, cid, 1, INST, 1, 300, r, sizeof r), 200);
	}
	/* two flows of one instance count twice */
	assert_int_equal(reg_ob(f, &f->atk, "atk0", "c-atk0", 2, INST, 2, 300, r, sizeof r), 403);
	assert_non_null(strstr(r, "Too Many Flows"));
	for (int i = 4; i < 20; i++) {
		snprintf(user, sizeof user, "atk%d", i);
		snprintf(cid, sizeof cid, "c-atk%d", i);
		assert_int_equal(reg_ob(f, &f->atk, user, cid, 1, INST, 1, 300, r, sizeof r), 403);
	}
	assert_int_equal(counter("registrar_flows_per_source_refused_total") - c0, 17);
	struct store_binding b[4];
	assert_int_equal(lookup(f, "atk4", b, 4), 0);
	/* refreshes always pass, also from a new port of the same source */
	struct phone atk2;
	phone_open_at(&atk2, &f->srv, "127.0.0.3");
	assert_int_equal(reg_ob(f, &f->atk, "atk1", "c-atk1", 2, INST, 1, 300, r, sizeof r), 200);
	assert_int_equal(reg_ob(f, &atk2, "atk2", "c-atk2", 2, INST, 1, 300, r, sizeof r), 200);
	/* another source is not affected */
	assert_int_equal(reg_ob(f, &f->other, "oli", "c-oli", 1, INST, 1, 300, r, sizeof r), 200);
	/* a flow that moves in from another source needs room there too */
	assert_int_equal(reg_ob(f, &f->atk, "oli", "c-oli", 2, INST, 1, 300, r, sizeof r), 403);
	assert_int_equal(lookup(f, "oli", b, 4), 1);
	assert_int_equal(net_addr_port(&b[0].flow.remote), f->other.port);
	/* the trusted edge carries many phones' flows: not bound by this */
	for (int i = 0; i < 6; i++) {
		snprintf(user, sizeof user, "via%d", i);
		snprintf(cid, sizeof cid, "c-via%d", i);
		char extra[512];
		snprintf(extra, sizeof extra,
			 "Path: <sip:t%d@127.0.0.2;lr;ob>\r\nSupported: outbound\r\n"
			 "Contact: <sip:%s@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			 i, user);
		assert_int_equal(reg(f, &f->edge, user, cid, 1,
				     "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-p\r\n", extra,
				     r, sizeof r),
				 200);
	}
	/* a removal frees a place; a plain binding never took one */
	assert_int_equal(reg_ob(f, &f->atk, "atk3", "c-atk3", 2, INST, 1, 0, r, sizeof r), 200);
	assert_int_equal(reg(f, &f->atk, "atk9", "c-atk9", 1, NULL,
			     "Contact: <sip:atk9@100.64.9.9>\r\n", r, sizeof r),
			 200);
	assert_int_equal(reg_ob(f, &f->atk, "atk4", "c-atk4", 2, INST, 1, 300, r, sizeof r), 200);
	assert_int_equal(reg_ob(f, &f->atk, "atk5", "c-atk5", 2, INST, 1, 300, r, sizeof r), 403);
	struct net_src_key k;
	struct net_addr a;
	net_sock_addr(f->atk.fd, &a);
	net_addr_src_key(&a, &k);
	assert_int_equal(reg_srcs_count(f->srv.reg->srcs, &k, time_wall_s()), 4);
	/* Contact: * lets go of every flow of the AOR */
	assert_int_equal(
	    reg(f, &f->atk, "atk4", "c-atk4", 3, NULL, "Contact: *\r\nExpires: 0\r\n", r, sizeof r),
	    200);
	assert_int_equal(reg_srcs_count(f->srv.reg->srcs, &k, time_wall_s()), 3);
	phone_close(&atk2);
}

/* A TCP REGISTER: one message on a fresh connection, its answer back. */
static int tcp_register(struct fixture *f, const char *user, char *resp, size_t len)
{
	const struct net_addr *to = net_listener_addr(f->srv.net, 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	assert_int_equal(connect(fd, &to->u.sa, net_addr_len(to)), 0);
	struct net_addr me;
	net_sock_addr(fd, &me);
	char msg[1024];
	int n = snprintf(msg, sizeof msg,
			 "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
			 "Via: SIP/2.0/TCP 127.0.0.1:%u;branch=z9hG4bK-tcp-%u\r\n"
			 "From: <sip:%s@127.0.0.1>;tag=t1\r\n"
			 "To: <sip:%s@127.0.0.1>\r\n"
			 "Call-ID: c-tcp-%s\r\n"
			 "CSeq: 1 REGISTER\r\n"
			 "Max-Forwards: 70\r\n"
			 "Supported: outbound\r\n"
			 "Contact: <sip:%s@100.64.9.9;transport=tcp;ob>;+sip.instance=" INST
			 ";reg-id=1\r\n"
			 "Content-Length: 0\r\n\r\n",
			 net_addr_port(&me), ++f->seq, user, user, user, user);
	assert_true(send(fd, msg, (size_t)n, 0) == n);
	size_t got = 0;
	while (got < len - 1 && !strstr(resp, "\r\n\r\n")) {
		ssize_t k = recv(fd, resp + got, len - 1 - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		resp[got] = '\0';
	}
	close(fd);
	int status = 0;
	sscanf(resp, "SIP/2.0 %d", &status);
	return status;
}

static void test_flow_timer_by_transport(void **state)
{
	struct fixture *f = *state;
	char r[4096] = "", h[64];
	assert_int_equal(tcp_register(f, "ivy", r, sizeof r), 200);
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "120");
	header(r, "Require", h, sizeof h);
	assert_string_equal(h, "outbound");
}

/* A Flow-Timer we cannot honour is not promised: a TCP one at or beyond
 * the idle timeout that would close the connection first is cut to 4/5 of
 * it; UDP keeps its own. */
static void test_flow_timer_honoured(void **state)
{
	(void)state;
	struct fixture *f = &fx;
	phones_close(f);
	test_server_stop(&f->srv);
	test_server_start(&f->srv, CONF_BASE "flow_timer_udp = 20\nflow_timer_tcp = 300\n"
					     "[sip]\ntcp_idle_timeout = 100\n");
	phones_open(f);
	char r[4096] = "", h[64];
	assert_int_equal(reg_ob(f, &f->ph, "jo", "c-jo", 1, INST, 1, 300, r, sizeof r), 200);
	assert_non_null(strstr(r, "Require: outbound"));
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "20");
	memset(r, 0, sizeof r);
	assert_int_equal(tcp_register(f, "kim", r, sizeof r), 200);
	header(r, "Flow-Timer", h, sizeof h);
	assert_string_equal(h, "80");
}

/* The store is what the proxy routes by: instance, reg-id, Path and flow
 * come back from SQLite after a restart, and so does the per-source count. */
static void test_restart_keeps_flows_and_path(void **state)
{
	(void)state;
	struct fixture *f = &fx;
	char dir[] = "/tmp/pinhole-obreg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char conf[1024];
	snprintf(conf, sizeof conf, CONF_BASE "[store]\npath = %s/reg.db\nsync = normal\n", dir);
	phones_close(f);
	test_server_stop(&f->srv);
	test_server_start(&f->srv, conf);
	phones_open(f);
	char r[4096], user[32], cid[32];
	assert_int_equal(reg(f, &f->edge, "lia", "c-lia", 1,
			     "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-p\r\n",
			     "Path: <sip:tokL@127.0.0.2;lr;ob>\r\nSupported: outbound, path\r\n"
			     "Contact: <sip:lia@100.64.9.9>;+sip.instance=" INST ";reg-id=1\r\n",
			     r, sizeof r),
			 200);
	for (int i = 0; i < 4; i++) {
		snprintf(user, sizeof user, "full%d", i);
		snprintf(cid, sizeof cid, "c-full%d", i);
		assert_int_equal(reg_ob(f, &f->atk, user, cid, 1, INST, 1, 300, r, sizeof r), 200);
	}
	struct store_binding before[2];
	assert_int_equal(lookup(f, "lia", before, 2), 1);
	phones_close(f);
	test_server_stop(&f->srv);

	test_server_start(&f->srv, conf);
	phones_open(f);
	struct store_binding b[2];
	assert_int_equal(lookup(f, "lia", b, 2), 1);
	assert_int_equal(b[0].id, before[0].id);
	assert_string_equal(b[0].path, "<sip:tokL@127.0.0.2;lr;ob>");
	assert_string_equal(b[0].instance, INST);
	assert_int_equal(b[0].reg_id, 1);
	assert_int_equal(b[0].flow.tp, NET_UDP);
	assert_true(net_addr_eq(&b[0].flow.remote, &before[0].flow.remote));
	assert_true(net_addr_eq(&b[0].flow.local, &before[0].flow.local));
	assert_int_equal(b[0].flow.listener, before[0].flow.listener);
	/* the stranger's source is still full; its refreshes pass */
	assert_int_equal(reg_ob(f, &f->atk, "full9", "c-full9", 1, INST, 1, 300, r, sizeof r), 403);
	assert_int_equal(reg_ob(f, &f->atk, "full0", "c-full0", 2, INST, 1, 300, r, sizeof r), 200);
	phones_close(f);
	test_server_stop(&f->srv);
	test_server_start(&f->srv, CONF_BASE);
	phones_open(f);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* pinhole ctl registrations shows instance, reg-id, Path and the flow. */
static void test_dump_shows_outbound(void **state)
{
	struct fixture *f = *state;
	char r[4096];
	assert_int_equal(reg(f, &f->edge, "max", "c-max", 1,
			     "Via: SIP/2.0/UDP 100.64.9.9:5060;branch=z9hG4bK-p\r\n",
			     "Path: <sip:tokM@127.0.0.2;lr;ob>\r\nSupported: outbound\r\n"
			     "Contact: <sip:max@100.64.9.9>;+sip.instance=" INST ";reg-id=7\r\n",
			     r, sizeof r),
			 200);
	struct buf out;
	buf_init(&out);
	assert_int_equal(registrar_dump_json(f->srv.reg, &out), 0);
	buf_append(&out, "", 1);
	char want[256];
	snprintf(want, sizeof want, "\"source\":\"127.0.0.2:%u\",\"transport\":\"udp\"",
		 f->edge.port);
	assert_non_null(strstr(out.data, want));
	assert_non_null(strstr(out.data, "\"reg_id\":7,\"path\":\"<sip:tokM@127.0.0.2;lr;ob>\""));
	assert_non_null(strstr(out.data, "\"instance\":\"\\\"<urn:uuid:"));
	assert_non_null(strstr(out.data, "\"conn_id\":0"));
	assert_non_null(strstr(out.data, "\"local\":\"127.0.0.1:"));
	buf_reset(&out);
	assert_int_equal(registrar_dump_text(f->srv.reg, &out), 0);
	buf_append(&out, "", 1);
	assert_non_null(strstr(out.data, "reg-id=7 path=<sip:tokM@127.0.0.2;lr;ob>"));
	snprintf(want, sizeof want, "udp 127.0.0.1:%u<-127.0.0.2:%u", net_addr_port(&f->srv.addr),
		 f->edge.port);
	assert_non_null(strstr(out.data, want));
	buf_free(&out);
}

/* The per-source table alone, on a clock of its own: entries go with their
 * bindings' expiry, at the bound and in the sweep, and refreshes pass. */
static void test_srcs_table(void **state)
{
	(void)state;
	struct reg_srcs *t;
	assert_int_equal(reg_srcs_alloc(&t, 2), 0);
	struct net_src_key a = {0, 0xc6120001}, b = {0, 0xc6120002};
	bool res;
	for (uint64_t id = 1; id <= 2; id++) {
		assert_int_equal(reg_srcs_claim(t, &a, 0, false, 10, 100, &res), 0);
		assert_true(res);
		reg_srcs_settle(t, &a, id, 100, res);
	}
	assert_int_equal(reg_srcs_claim(t, &a, 0, false, 50, 200, &res), EDQUOT);
	/* a refresh updates the expiry in place; a refresh the table lost passes too */
	assert_int_equal(reg_srcs_claim(t, &a, 2, false, 50, 300, &res), 0);
	assert_false(res);
	assert_int_equal(reg_srcs_claim(t, &a, 7, true, 50, 300, &res), 0);
	assert_true(res);
	reg_srcs_settle(t, &a, 7, 300, res);
	assert_int_equal(reg_srcs_count(t, &a, 50), 3);
	/* past binding 1's expiry its place is free again */
	assert_int_equal(reg_srcs_claim(t, &a, 0, false, 150, 400, &res), EDQUOT);
	reg_srcs_release(t, &a, 7);
	assert_int_equal(reg_srcs_claim(t, &a, 0, false, 150, 400, &res), 0);
	reg_srcs_cancel(t, &a, res); /* its put failed */
	assert_int_equal(reg_srcs_count(t, &a, 150), 1);
	assert_int_equal(reg_srcs_claim(t, &b, 0, false, 150, 400, &res), 0);
	reg_srcs_settle(t, &b, 9, 400, res);
	/* the sweep frees what expired, an eighth of the table a call */
	size_t sources = 0, entries = 0;
	for (int i = 0; i < 8; i++)
		reg_srcs_sweep(t, 350, &sources, &entries);
	assert_int_equal(sources, 1);
	assert_int_equal(entries, 1);
	for (int i = 0; i < 8; i++)
		reg_srcs_sweep(t, 1000, &sources, &entries);
	assert_int_equal(sources, 0);
	assert_int_equal(entries, 0);
	reg_srcs_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_hop_outbound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replace_and_second_flow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_instance_without_reg_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reg_id_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_439, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_edge_path_ob, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_untrusted_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flows_per_source_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flow_timer_by_transport, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flow_timer_honoured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_keeps_flows_and_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump_shows_outbound, setup, teardown),
	    cmocka_unit_test(test_srcs_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
