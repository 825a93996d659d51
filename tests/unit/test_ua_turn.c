/* ua --turn against pinhole's TURN server on loopback and a scripted far end: the SDP names
 * the relayed addresses, media goes both ways through the relay, the allocations go at the
 * end; ChannelData sent straight to the ua's socket by a stranger is not taken as media. */
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

#include "rtp/rtp.h"
#include "turnc.h" /* tests/unit/support: the server on loopback */
#include "uatest.h"
#include "ua/ua.h"

#define MAX_EVENTS 128
#define WAIT_MS 20000 /* a bound on waits for things that must happen, not a measure */

struct rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct {
		enum ua_event_kind kind;
		int exit_code;
		char detail[400];
	} ev[MAX_EVENTS];
	size_t n;
	uint64_t recv_packets, strays;
	char verdict[32], local_announced[64];
};

static void on_event(const struct ua_event *ev, void *arg)
{
	struct rec *r = arg;
	pthread_mutex_lock(&r->mu);
	if (ev->kind == UA_EV_VERDICT) {
		r->recv_packets = ev->verdict_in->recv_packets;
		r->strays = ev->verdict_in->strays;
		snprintf(r->verdict, sizeof r->verdict, "%s",
			 rtp_verdict_name(ev->verdict_out->verdict));
		snprintf(r->local_announced, sizeof r->local_announced, "%s",
			 ev->verdict_in->local_announced);
	}
	if (r->n < MAX_EVENTS) {
		r->ev[r->n].kind = ev->kind;
		r->ev[r->n].exit_code = ev->exit_code;
		snprintf(r->ev[r->n].detail, sizeof r->ev[r->n].detail, "%s",
			 ev->detail ? ev->detail : "");
		r->n++;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static size_t wait_ev(struct rec *r, enum ua_event_kind kind, const char *text)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		for (size_t i = 0; i < r->n; i++)
			if (r->ev[i].kind == kind && (!text || strstr(r->ev[i].detail, text))) {
				pthread_mutex_unlock(&r->mu);
				return i;
			}
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) {
			pthread_mutex_unlock(&r->mu);
			fail_msg("no %s event with '%s'", ua_event_name(kind), text ? text : "");
		}
	}
}

static size_t recv_one(int fd, char *b, size_t cap, struct net_addr *from)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	socklen_t sl = sizeof from->u.ss;
	ssize_t n = recvfrom(fd, b, cap - 1, 0, &from->u.sa, &sl);
	assert_true(n > 0);
	b[n] = '\0';
	return (size_t)n;
}

static char buf[16384];
static struct sip_msg m;

static void recv_sip(int fd, struct net_addr *from, enum sip_method method, bool response)
{
	for (;;) {
		size_t n = recv_one(fd, buf, sizeof buf, from);
		assert_int_equal(sip_msg_parse(&m, buf, n, false, NULL), 0);
		if (m.request != response && (response ? m.cseq.method : m.method) == method)
			return;
	}
}

static void *run_loop(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void rtp_packet(uint8_t *p, uint32_t ssrc, uint16_t seq)
{
	struct rtp_hdr h = {.pt = 0, .seq = seq, .ts = seq * 160u, .ssrc = ssrc};
	rtp_hdr_write(p, &h);
	memset(p + 12, 0xff, 160);
}

static void test_call_through_turn(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct rec r = {0};
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	struct net_addr sip_a, rtp_a, stranger_a;
	int sip = uat_udp_bound(&sip_a), rtp = uat_udp_bound(&rtp_a),
	    stranger = uat_udp_bound(&stranger_a);
	struct ua_conf *c = calloc(1, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "sip:alice@example.test");
	snprintf(c->instance, sizeof c->instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	snprintf(c->call_uri, sizeof c->call_uri, "sip:bob@127.0.0.1");
	c->no_register = true;
	c->duration_s = 3600;
	struct ua_proxy *px = &c->proxy[c->n_proxy++];
	px->tp = NET_UDP;
	px->addr = sip_a;
	snprintf(px->host, sizeof px->host, "127.0.0.1");
	px->port = net_addr_port(&sip_a);
	c->has_turn = true;
	c->turn = s.udp;
	snprintf(c->turn_cred.user, sizeof c->turn_cred.user, "alice");
	snprintf(c->turn_cred.pass, sizeof c->turn_cred.pass, "wonder");
	struct loop *l;
	struct ua *ua;
	pthread_t th;
	assert_int_equal(loop_alloc(&l), 0);
	assert_int_equal(ua_alloc(&ua, l, c, on_event, &r), 0);
	assert_int_equal(ua_start(ua), 0);
	assert_int_equal(pthread_create(&th, NULL, run_loop, l), 0);

	/* the INVITE's SDP names the relayed addresses (the relay range) */
	struct net_addr ua_sip;
	recv_sip(sip, &ua_sip, SIP_INVITE, false);
	char body[4096];
	slice_to_cstr(m.body, body, sizeof body);
	assert_non_null(strstr(body, "c=IN IP4 127.0.0.1\r\n"));
	unsigned mport = 0, rport = 0;
	const char *ml = strstr(body, "m=audio ");
	const char *rl = strstr(body, "a=rtcp:");
	assert_non_null(ml);
	assert_non_null(rl);
	sscanf(ml, "m=audio %u", &mport);
	sscanf(rl, "a=rtcp:%u", &rport);
	assert_true(mport >= 24000 && mport <= 24999);
	assert_true(rport >= 24000 && rport <= 24999 && rport != mport);
	assert_int_equal(turn_allocation_count(s.t), 2);
	wait_ev(&r, UA_EV_CALL, "turn: allocated on");

	/* 200 with our SDP (rtcp-mux), then the ACK */
	struct buf b;
	buf_init(&b);
	assert_int_equal(sip_build_response(&b, &m, 200, NULL, SLICE_NULL, SLICE_LIT("bobtag"),
					    "Contact: <sip:bob@127.0.0.1:5999>\r\n"),
			 0);
	char sdp[512];
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=bob 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\na=rtcp-mux\r\na=sendrecv\r\n",
		 net_addr_port(&rtp_a));
	b.len -= strlen("Content-Length: 0\r\n\r\n");
	buf_printf(&b, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
		   strlen(sdp), sdp);
	uat_send_to(sip, &ua_sip, b.data, b.len);
	buf_free(&b);
	static char invite[sizeof buf];
	snprintf(invite, sizeof invite, "%s", buf); /* for the BYE's dialog */
	struct sip_msg inv;
	assert_int_equal(sip_msg_parse(&inv, invite, strlen(invite), false, NULL), 0);
	recv_sip(sip, &ua_sip, SIP_ACK, false);

	/* the ua's RTP arrives from its relayed address */
	struct net_addr from;
	uint8_t pkt[1500];
	for (;;) {
		size_t n = recv_one(rtp, (char *)pkt, sizeof pkt, &from);
		if (rtp_demux(pkt, n) == RTP_KIND_RTP)
			break;
	}
	assert_int_equal(net_addr_port(&from), mport);
	wait_ev(&r, UA_EV_CALL, "turn: channel 0x4000 bound");

	/* the attack: ChannelData on the far end's channel, straight to the
	 * ua's RTP socket (its address is the allocation's client side), first */
	struct buf dump;
	buf_init(&dump);
	assert_int_equal(turn_dump_json(s.t, &dump), 0);
	buf_append(&dump, "", 1);
	char want[64];
	snprintf(want, sizeof want, "\"relayed\":[\"127.0.0.1:%u\"", mport);
	char *at = strstr(dump.data, want);
	assert_non_null(at);
	char *cl = at;
	while (cl > dump.data && strncmp(cl, "\"client\":\"udp:", 14) != 0)
		cl--;
	struct net_addr ua_rtp;
	char cs[64];
	assert_int_equal(sscanf(cl, "\"client\":\"udp:%63[^\"]", cs), 1);
	assert_int_equal(net_addr_parse(cs, 0, &ua_rtp), 0);
	buf_free(&dump);
	for (uint16_t i = 0; i < 20; i++) {
		uint8_t cd[4 + 172];
		stun_chan_header(cd, 0x4000, 172);
		rtp_packet(cd + 4, 0xbad0bad0, i);
		uat_send_to(stranger, &ua_rtp, cd, sizeof cd);
	}
	usleep(100000);
	/* the far end's own 50 packets, through the relay */
	struct net_addr relayed;
	net_addr_parse("127.0.0.1:0", 0, &relayed);
	net_addr_set_port(&relayed, (uint16_t)mport);
	for (uint16_t i = 0; i < 50; i++) {
		rtp_packet(pkt, 0x600d600d, (uint16_t)(1000 + i));
		uat_send_to(rtp, &relayed, pkt, 172);
		usleep(2000);
	}
	usleep(200000);
	/* BYE from the far end ends the call: the verdict, then the deallocations */
	char bye[2048];
	char ua_uri[200], call_id[100], tag[60];
	slice_to_cstr(inv.call_id, call_id, sizeof call_id);
	slice_to_cstr(inv.from_tag, tag, sizeof tag);
	const struct sip_hdr *ct = sip_msg_hdr(&inv, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	assert_int_equal(sip_nameaddr_parse(ct->value, &na), 0);
	slice_to_cstr(na.uri_s, ua_uri, sizeof ua_uri);
	int n = snprintf(bye, sizeof bye,
			 "BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbye1\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=bobtag\r\n"
			 "To: <sip:alice@example.test>;tag=%s\r\nCall-ID: %s\r\nCSeq: 200 BYE\r\n"
			 "Content-Length: 0\r\n\r\n",
			 ua_uri, tag, call_id);
	uat_send_to(sip, &ua_sip, bye, (size_t)n);
	wait_ev(&r, UA_EV_VERDICT, NULL);
	pthread_mutex_lock(&r.mu);
	/* only the far end's packets, none of the stranger's */
	assert_int_equal(r.recv_packets, 50);
	assert_int_equal(r.strays, 0);
	char la[64];
	snprintf(la, sizeof la, "127.0.0.1:%u", mport);
	assert_string_equal(r.local_announced, la);
	pthread_mutex_unlock(&r.mu);
	for (int i = 0; i < 300 && turn_allocation_count(s.t); i++)
		usleep(10000);
	assert_int_equal(turn_allocation_count(s.t), 0);

	loop_stop(l);
	pthread_join(th, NULL);
	ua_free(ua);
	loop_free(l);
	free(c);
	close(sip);
	close(rtp);
	close(stranger);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	tt_srv_stop(&s);
}

/* A wrong TURN password: no INVITE, exit 9, the reason in the events. */
static void test_turn_refused(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "");
	struct rec r = {0};
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	struct net_addr sip_a;
	int sip = uat_udp_bound(&sip_a);
	struct ua_conf *c = calloc(1, sizeof *c);
	snprintf(c->aor, sizeof c->aor, "sip:alice@example.test");
	snprintf(c->instance, sizeof c->instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	snprintf(c->call_uri, sizeof c->call_uri, "sip:bob@127.0.0.1");
	c->no_register = true;
	struct ua_proxy *px = &c->proxy[c->n_proxy++];
	px->tp = NET_UDP;
	px->addr = sip_a;
	snprintf(px->host, sizeof px->host, "127.0.0.1");
	px->port = net_addr_port(&sip_a);
	c->has_turn = true;
	c->turn = s.udp;
	snprintf(c->turn_cred.user, sizeof c->turn_cred.user, "alice");
	snprintf(c->turn_cred.pass, sizeof c->turn_cred.pass, "not-wonder");
	struct loop *l;
	struct ua *ua;
	pthread_t th;
	assert_int_equal(loop_alloc(&l), 0);
	assert_int_equal(ua_alloc(&ua, l, c, on_event, &r), 0);
	assert_int_equal(ua_start(ua), 0);
	assert_int_equal(pthread_create(&th, NULL, run_loop, l), 0);
	size_t i = wait_ev(&r, UA_EV_DONE, NULL);
	assert_int_equal(r.ev[i].exit_code, UA_EXIT_TURN);
	wait_ev(&r, UA_EV_CALL, "credentials refused (401)");
	struct pollfd p = {.fd = sip, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0); /* nothing came to the proxy */
	loop_stop(l);
	pthread_join(th, NULL);
	ua_free(ua);
	loop_free(l);
	free(c);
	close(sip);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "24600-24799";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_call_through_turn),
	    cmocka_unit_test(test_turn_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
