/* ua calls against a scripted far end on loopback: re-INVITEs both ways (hold, resume,
 * glare, retransmissions, an offerless one), rtcp-mux used or not, the WAV source and the
 * recording, and --stun (the mapping announced, a stranger's answer ignored). */
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
#include "stun/stun.h"
#include "ua/ua.h"
#include "uatest.h"

/* The next SIP request of `method` or response to it (retransmissions of
 * others are skipped) into m; buf holds its bytes. */
static void recv_sip(int fd, char *buf, size_t cap, struct net_addr *from, struct sip_msg *m,
		     enum sip_method method, bool response)
{
	for (;;) {
		size_t n = uat_recv_one(fd, buf, cap, from);
		if (stun_is_message(buf, n))
			continue;
		assert_int_equal(sip_msg_parse(m, buf, n, false, NULL), 0);
		if (m->request != response && (response ? m->cseq.method : m->method) == method)
			return;
	}
}

/* The next RTP packet (RTCP skipped). */
static void recv_rtp(int fd, struct rtp_hdr *h, uint8_t *pkt, size_t cap)
{
	for (;;) {
		struct net_addr from;
		size_t n = uat_recv_one(fd, (char *)pkt, cap, &from);
		if (rtp_demux(pkt, n) == RTP_KIND_RTP) {
			assert_int_equal(rtp_parse(h, pkt, n), 0);
			return;
		}
	}
}

/* The next RTCP packet on fd (RTP skipped): its parsed report. */
static void recv_rtcp(int fd, struct rtcp_report *r)
{
	for (;;) {
		uint8_t pkt[1500];
		struct net_addr from;
		size_t n = uat_recv_one(fd, (char *)pkt, sizeof pkt, &from);
		if (rtp_demux(pkt, n) == RTP_KIND_RTCP) {
			assert_int_equal(rtcp_report_parse(r, pkt, n), 0);
			return;
		}
	}
}

/* Drops whatever is queued on fd now. */
static void drain(int fd)
{
	char b[2048];
	while (recv(fd, b, sizeof b, MSG_DONTWAIT) > 0)
		;
}

static void respond(int fd, const struct net_addr *to, const struct sip_msg *req, uint16_t status,
		    const char *sdp)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(sip_build_response(&b, req, status, NULL, SLICE_NULL, SLICE_LIT("bobtag"),
					    "Contact: <sip:bob@127.0.0.1:5999>\r\n"),
			 0);
	if (sdp) {
		static const char cl0[] = "Content-Length: 0\r\n\r\n";
		assert_true(b.len > sizeof cl0);
		b.len -= sizeof cl0 - 1;
		buf_printf(&b, "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
			   strlen(sdp), sdp);
	}
	uat_send_to(fd, to, b.data, b.len);
	buf_free(&b);
}

static char *sdp_of(char *out, size_t cap, uint16_t rtp_port, uint16_t rtcp_port, bool mux,
		    const char *dir, unsigned version)
{
	snprintf(out, cap,
		 "v=0\r\no=bob 77 %u IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0\r\na=rtcp:%u\r\n%sa=%s\r\n",
		 version, rtp_port, rtcp_port, mux ? "a=rtcp-mux\r\n" : "", dir);
	return out;
}

/* The dialog as the far end sees it, from the ua's INVITE. */
struct dlg {
	char call_id[80], ua_tag[40], ua_uri[120];
	unsigned cseq;
};

static void take_dlg(struct dlg *d, const struct sip_msg *inv)
{
	slice_to_cstr(inv->call_id, d->call_id, sizeof d->call_id);
	slice_to_cstr(inv->from_tag, d->ua_tag, sizeof d->ua_tag);
	const struct sip_hdr *ct = sip_msg_hdr(inv, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr na;
	assert_non_null(ct);
	assert_int_equal(sip_nameaddr_parse(ct->value, &na), 0);
	slice_to_cstr(na.uri_s, d->ua_uri, sizeof d->ua_uri);
	d->cseq = 100;
}

/* An in-dialog request from the far end (cseq given), with an SDP or none. */
static void send_req(int fd, const struct net_addr *to, const struct dlg *d, const char *method,
		     unsigned cseq, const char *branch, const char *sdp)
{
	char b[2048];
	int n = snprintf(b, sizeof b,
			 "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK%s\r\n"
			 "Max-Forwards: 70\r\nFrom: <sip:bob@127.0.0.1>;tag=bobtag\r\n"
			 "To: <sip:alice@example.test>;tag=%s\r\nCall-ID: %s\r\nCSeq: %u %s\r\n"
			 "Contact: <sip:bob@127.0.0.1:5999>\r\n",
			 method, d->ua_uri, branch, d->ua_tag, d->call_id, cseq, method);
	if (sdp)
		n += snprintf(b + n, sizeof b - (size_t)n,
			      "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
			      strlen(sdp), sdp);
	else
		n += snprintf(b + n, sizeof b - (size_t)n, "Content-Length: 0\r\n\r\n");
	uat_send_to(fd, to, b, (size_t)n);
}

static const char *body_of(const struct sip_msg *m, char *out, size_t cap)
{
	slice_to_cstr(m->body, out, cap);
	return out;
}

struct harness {
	struct uat_rec r;
	struct ua_conf c;
	struct loop *l;
	struct ua *ua;
	pthread_t th;
	int sip, rtp, rtcp;
	struct net_addr sip_a, rtp_a, rtcp_a;
};

static struct harness *h_new(void)
{
	struct harness *h = calloc(1, sizeof *h);
	uat_rec_init(&h->r, 96);
	h->sip = uat_udp_bound(&h->sip_a);
	h->rtp = uat_udp_bound(&h->rtp_a);
	h->rtcp = uat_udp_bound(&h->rtcp_a);
	snprintf(h->c.aor, sizeof h->c.aor, "sip:alice@example.test");
	snprintf(h->c.instance, sizeof h->c.instance,
		 "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
	snprintf(h->c.call_uri, sizeof h->c.call_uri, "sip:bob@127.0.0.1");
	h->c.no_register = true;
	h->c.duration_s = 3600;
	struct ua_proxy *px = &h->c.proxy[h->c.n_proxy++];
	px->tp = NET_UDP;
	px->addr = h->sip_a;
	snprintf(px->host, sizeof px->host, "127.0.0.1");
	px->port = net_addr_port(&h->sip_a);
	return h;
}

static void h_start(struct harness *h)
{
	assert_int_equal(loop_alloc(&h->l), 0);
	assert_int_equal(ua_alloc(&h->ua, h->l, &h->c, uat_on_event, &h->r), 0);
	assert_int_equal(ua_start(h->ua), 0);
	assert_int_equal(pthread_create(&h->th, NULL, uat_run_loop, h->l), 0);
}

static void post_shutdown(void *arg)
{
	ua_shutdown(arg);
}

static void h_free(struct harness *h)
{
	loop_stop(h->l);
	pthread_join(h->th, NULL);
	ua_free(h->ua);
	loop_free(h->l);
	close(h->sip);
	close(h->rtp);
	close(h->rtcp);
	uat_rec_destroy(&h->r);
	free(h);
}

static char buf[16384], body[4096], sdp[1024];
static struct sip_msg m;

/* The ua's INVITE answered 200 with our SDP (mux or not), ACK received. */
static void answer_call(struct harness *h, struct dlg *d, struct net_addr *ua_sip, bool mux)
{
	recv_sip(h->sip, buf, sizeof buf, ua_sip, &m, SIP_INVITE, false);
	take_dlg(d, &m);
	respond(h->sip, ua_sip, &m, 200,
		sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a),
		       mux ? net_addr_port(&h->rtp_a) : net_addr_port(&h->rtcp_a), mux, "sendrecv",
		       1));
	recv_sip(h->sip, buf, sizeof buf, ua_sip, &m, SIP_ACK, false);
}

/* A re-INVITE from the far end holds the call: answered recvonly, the ua's
 * RTP stops (its sequence numbers go on where they stopped, its timestamps
 * ran on); a retransmission gets the same 200, an old CSeq 500; the resume
 * brings RTP back; an offerless re-INVITE gets an offer; rtcp-mux is used
 * (the last report comes on the RTP port). Before, any re-INVITE got 488. */
static void test_far_end_holds(void **state)
{
	(void)state;
	struct harness *h = h_new();
	h_start(h);
	struct dlg d;
	struct net_addr ua_sip;
	answer_call(h, &d, &ua_sip, true);
	struct rtp_hdr rh;
	uint8_t pkt[1500];
	recv_rtp(h->rtp, &rh, pkt, sizeof pkt);

	/* hold */
	send_req(h->sip, &ua_sip, &d, "INVITE", ++d.cseq, "h1",
		 sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtp_a), true,
			"sendonly", 2));
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, true);
	assert_int_equal(m.status, 200);
	assert_int_equal(m.cseq.num, d.cseq);
	body_of(&m, body, sizeof body);
	assert_non_null(strstr(body, "a=recvonly\r\n"));
	assert_non_null(strstr(body, "a=rtcp-mux\r\n"));
	char first_answer[4096];
	snprintf(first_answer, sizeof first_answer, "%s", body);
	/* its retransmission: the same 200; the ua keeps resending it until the ACK */
	send_req(h->sip, &ua_sip, &d, "INVITE", d.cseq, "h1",
		 sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtp_a), true,
			"sendonly", 2));
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, true);
	assert_int_equal(m.status, 200);
	assert_string_equal(body_of(&m, body, sizeof body), first_answer);
	send_req(h->sip, &ua_sip, &d, "ACK", d.cseq, "h1a", NULL);
	uat_wait(&h->r, UA_EV_CALL, "held by the far end", 0);
	/* what it sent before it took the hold is queued here already (loopback
	 * sends are synchronous): the last of it is the last before the hold */
	struct rtp_hdr last = rh;
	for (;;) {
		struct pollfd p = {.fd = h->rtp, .events = POLLIN};
		if (poll(&p, 1, 0) != 1)
			break;
		ssize_t n = recv(h->rtp, pkt, sizeof pkt, 0);
		struct rtp_hdr x;
		if (n > 0 && rtp_demux(pkt, (size_t)n) == RTP_KIND_RTP &&
		    rtp_parse(&x, pkt, (size_t)n) == 0)
			last = x;
	}
	/* an old CSeq: 500 (RFC 3261 12.2.2), nothing changes */
	send_req(h->sip, &ua_sip, &d, "INVITE", d.cseq - 1, "old", NULL);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, true);
	assert_int_equal(m.status, 500);
	usleep(300000); /* held a while (15 packet times at least) */

	/* resume */
	send_req(h->sip, &ua_sip, &d, "INVITE", ++d.cseq, "r1",
		 sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtp_a), true,
			"sendrecv", 3));
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, true);
	assert_int_equal(m.status, 200);
	assert_non_null(strstr(body_of(&m, body, sizeof body), "a=sendrecv\r\n"));
	send_req(h->sip, &ua_sip, &d, "ACK", d.cseq, "r1a", NULL);
	struct rtp_hdr next;
	recv_rtp(h->rtp, &next, pkt, sizeof pkt);
	/* nothing was sent while held: the next sequence number follows the last
	 * one sent before, and the timestamp ran on through the held time */
	assert_int_equal((uint16_t)(next.seq - last.seq), 1);
	assert_true(next.ts - last.ts >= 10 * RTP_FRAME_SAMPLES);

	/* an offerless re-INVITE: we offer in the 200 (our direction: sendrecv),
	 * the answer comes in the ACK */
	send_req(h->sip, &ua_sip, &d, "INVITE", ++d.cseq, "o1", NULL);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, true);
	assert_int_equal(m.status, 200);
	body_of(&m, body, sizeof body);
	assert_non_null(strstr(body, "a=sendrecv\r\n"));
	assert_non_null(strstr(body, "RTP/AVP 0 8\r\n")); /* an offer: both codecs */
	send_req(h->sip, &ua_sip, &d, "ACK", d.cseq, "o1a",
		 sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtp_a), true,
			"sendrecv", 4));
	uat_wait(&h->r, UA_EV_CALL, "answered a=sendrecv in the ACK", 0);

	/* the end: the last RTCP (with BYE) comes on the RTP port: mux in use */
	drain(h->rtp);
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	struct rtcp_report rr;
	recv_rtcp(h->rtp, &rr);
	assert_true(rr.bye);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_BYE, false);
	respond(h->sip, &ua_sip, &m, 200, NULL);
	uat_wait(&h->r, UA_EV_VERDICT, NULL, 0);
	uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	h_free(h);
}

/* The first RTCP report goes out soon after media starts (1 s), not after
 * the regular 5 s: counted in the ua's own RTP packets (20 ms each, paced by
 * its clock), the first SR comes before 2.5 s of them (RFC 3550 6.2's halved
 * first interval); at 5 s it came after some 250. */
static void test_first_rtcp_early(void **state)
{
	(void)state;
	struct harness *h = h_new();
	h_start(h);
	struct dlg d;
	struct net_addr ua_sip;
	answer_call(h, &d, &ua_sip, true);
	unsigned rtp_before = 0;
	struct rtcp_report rr;
	for (;;) {
		uint8_t pkt[1500];
		struct net_addr from;
		size_t n = uat_recv_one(h->rtp, (char *)pkt, sizeof pkt, &from);
		enum rtp_kind k = rtp_demux(pkt, n);
		if (k == RTP_KIND_RTP) {
			rtp_before++;
			assert_true(rtp_before < 2500 / 20); /* else the report is late */
		} else if (k == RTP_KIND_RTCP) {
			assert_int_equal(rtcp_report_parse(&rr, pkt, n), 0);
			break;
		}
	}
	assert_true(rr.sr);
	assert_false(rr.bye);
	assert_true(rtp_before >= 1); /* after media started, not before */
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_BYE, false);
	respond(h->sip, &ua_sip, &m, 200, NULL);
	uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	h_free(h);
}

/* --hold-after / --resume-after: the ua's re-INVITEs carry a=sendonly then
 * a=sendrecv in the same session with a higher version; a 491 (glare) is
 * ACKed and the resume retried with a new CSeq; without rtcp-mux in the
 * answer, RTCP goes to the a=rtcp port. */
static void test_we_hold(void **state)
{
	(void)state;
	struct harness *h = h_new();
	h->c.hold_s = 1;
	h->c.resume_s = 1;
	h_start(h);
	struct dlg d;
	struct net_addr ua_sip;
	answer_call(h, &d, &ua_sip, false);

	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, false);
	assert_true(m.to_tag.l > 0); /* in the dialog */
	body_of(&m, body, sizeof body);
	assert_non_null(strstr(body, "a=sendonly\r\n"));
	unsigned long long sess, ver;
	assert_int_equal(sscanf(strstr(body, "o=pinhole "), "o=pinhole %llu %llu", &sess, &ver), 2);
	assert_int_equal(ver, 2);
	uint32_t hold_cseq = m.cseq.num;
	respond(h->sip, &ua_sip, &m, 200,
		sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtcp_a), false,
		       "recvonly", 2));
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_ACK, false);
	assert_int_equal(m.cseq.num, hold_cseq);
	uat_wait(&h->r, UA_EV_CALL, "held: the far end answered a=recvonly", 0);

	/* the resume meets glare */
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, false);
	assert_non_null(strstr(body_of(&m, body, sizeof body), "a=sendrecv\r\n"));
	uint32_t c1 = m.cseq.num;
	assert_true(c1 > hold_cseq);
	respond(h->sip, &ua_sip, &m, 491, NULL);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_ACK, false);
	assert_int_equal(m.cseq.num, c1);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, false);
	assert_true(m.cseq.num > c1);
	body_of(&m, body, sizeof body);
	assert_non_null(strstr(body, "a=sendrecv\r\n"));
	unsigned long long sess2, ver2;
	assert_int_equal(sscanf(strstr(body, "o=pinhole "), "o=pinhole %llu %llu", &sess2, &ver2),
			 2);
	assert_int_equal(sess2, sess);
	assert_true(ver2 > ver);
	respond(h->sip, &ua_sip, &m, 200,
		sdp_of(sdp, sizeof sdp, net_addr_port(&h->rtp_a), net_addr_port(&h->rtcp_a), false,
		       "sendrecv", 3));
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_ACK, false);
	uat_wait(&h->r, UA_EV_CALL, "resumed: the far end answered a=sendrecv", 0);

	/* the end: the last RTCP comes to the a=rtcp port, not the RTP one */
	drain(h->rtcp);
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	struct rtcp_report rr;
	recv_rtcp(h->rtcp, &rr);
	assert_true(rr.bye);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_BYE, false);
	respond(h->sip, &ua_sip, &m, 200, NULL);
	uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	h_free(h);
}

/* --wav: the packets carry the file's samples (looped); --record: the
 * file holds what came, decoded. */
static void test_wav_and_record(void **state)
{
	(void)state;
	struct harness *h = h_new();
	enum { N = 400 }; /* 2.5 packets: the third packet loops back to the start */
	int16_t *src = calloc(N, sizeof *src);
	for (size_t i = 0; i < N; i++)
		src[i] = (int16_t)((i * 7919) % 16000 - 8000);
	h->c.wav = src;
	h->c.wav_n = N;
	char path[] = "/tmp/pinhole-ua-rec-XXXXXX";
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	close(tfd);
	h->c.record = path;
	h_start(h);
	struct dlg d;
	struct net_addr ua_sip;
	answer_call(h, &d, &ua_sip, true);

	/* what we get: the first three packets against the samples, as G.711
	 * turns them (encode what we expect, compare the bytes) */
	struct rtp_hdr rh;
	uint8_t pkt[1500];
	recv_rtp(h->rtp, &rh, pkt, sizeof pkt);
	uint16_t seq0 = rh.seq;
	for (unsigned k = 0; k < 3; k++) {
		if (k)
			recv_rtp(h->rtp, &rh, pkt, sizeof pkt);
		assert_int_equal((uint16_t)(rh.seq - seq0), k);
		int16_t want[RTP_FRAME_SAMPLES];
		for (size_t i = 0; i < RTP_FRAME_SAMPLES; i++)
			want[i] = src[(k * RTP_FRAME_SAMPLES + i) % N];
		uint8_t enc[RTP_FRAME_SAMPLES];
		rtp_g711_encode(rh.pt, want, RTP_FRAME_SAMPLES, enc);
		assert_int_equal(rh.payload_len, RTP_FRAME_SAMPLES);
		assert_memory_equal(pkt + rh.payload_off, enc, RTP_FRAME_SAMPLES);
	}

	/* what we send it: five packets of known PCMU bytes */
	struct net_addr ua_rtp;
	socklen_t sl = sizeof ua_rtp.u.ss;
	memset(&ua_rtp, 0, sizeof ua_rtp);
	struct pollfd p = {.fd = h->rtp, .events = POLLIN};
	assert_int_equal(poll(&p, 1, UAT_WAIT_MS), 1);
	assert_true(recvfrom(h->rtp, pkt, sizeof pkt, 0, &ua_rtp.u.sa, &sl) > 0);
	uint8_t sent[5][RTP_FRAME_SAMPLES];
	for (unsigned k = 0; k < 5; k++) {
		for (size_t i = 0; i < RTP_FRAME_SAMPLES; i++)
			sent[k][i] = (uint8_t)(k * 31 + i * 3);
		struct rtp_hdr o = {.pt = RTP_PT_PCMU,
				    .seq = (uint16_t)(1000 + k),
				    .ts = 5000 + k * RTP_FRAME_SAMPLES,
				    .ssrc = 0xabcdef};
		uint8_t out[12 + RTP_FRAME_SAMPLES];
		rtp_hdr_write(out, &o);
		memcpy(out + 12, sent[k], RTP_FRAME_SAMPLES);
		uat_send_to(h->rtp, &ua_rtp, out, sizeof out);
	}
	/* a stranger's packet (another SSRC) is not recorded */
	{
		struct rtp_hdr o = {.pt = RTP_PT_PCMU, .seq = 7, .ts = 7, .ssrc = 0x5757};
		uint8_t out[12 + RTP_FRAME_SAMPLES];
		rtp_hdr_write(out, &o);
		memset(out + 12, 0x11, RTP_FRAME_SAMPLES);
		int other = uat_udp_bound(&(struct net_addr){0});
		uat_send_to(other, &ua_rtp, out, sizeof out);
		close(other);
	}
	usleep(200000); /* let the loop read them before it ends */
	assert_int_equal(loop_post(h->l, post_shutdown, h->ua), 0);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_BYE, false);
	respond(h->sip, &ua_sip, &m, 200, NULL);
	uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	h_free(h);

	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static uint8_t wav[65536];
	size_t n = fread(wav, 1, sizeof wav, f);
	fclose(f);
	unlink(path);
	struct rtp_wav w;
	assert_int_equal(rtp_wav_parse(&w, wav, n), 0);
	assert_int_equal(w.data_len, 5 * RTP_FRAME_SAMPLES * 2);
	for (unsigned k = 0; k < 5; k++) {
		int16_t pcm[RTP_FRAME_SAMPLES];
		rtp_g711_decode(RTP_PT_PCMU, sent[k], RTP_FRAME_SAMPLES, pcm);
		for (size_t i = 0; i < RTP_FRAME_SAMPLES; i++)
			assert_int_equal(rtp_wav_sample(&w, wav, k * RTP_FRAME_SAMPLES + i),
					 pcm[i]);
	}
	free(src);
}

/* Answers a Binding request in buf (from `from`, received on fd) from
 * socket `via`, with mapped as XOR-MAPPED-ADDRESS and other as
 * OTHER-ADDRESS when given. */
static void stun_reply(int via, const struct net_addr *to, const char *req, size_t len,
		       const struct net_addr *mapped, const struct net_addr *other)
{
	struct stun_msg s;
	assert_int_equal(stun_msg_decode(&s, req, len), 0);
	struct buf b;
	buf_init(&b);
	struct stun_enc e;
	stun_enc_begin_reply(&e, &b, &s, STUN_CLASS_SUCCESS);
	stun_enc_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped->u.sa);
	if (other)
		stun_enc_addr(&e, STUN_ATTR_OTHER_ADDRESS, &other->u.sa);
	stun_enc_fingerprint(&e);
	assert_int_equal(stun_enc_end(&e), 0);
	uat_send_to(via, to, b.data, b.len);
	buf_free(&b);
}

/* --stun: the SDP announces the mappings the server saw (RTP and RTCP);
 * another mapping at the server's other address is a symmetric NAT, said in
 * the events and the verdict; a stranger's answer with another mapping,
 * even with the right transaction ID, is not taken. */
static void test_stun(void **state)
{
	(void)state;
	struct harness *h = h_new();
	struct net_addr stun_a, other_a, stranger_a;
	int stun = uat_udp_bound(&stun_a), other = uat_udp_bound(&other_a),
	    stranger = uat_udp_bound(&stranger_a);
	h->c.stun = stun_a;
	h->c.has_stun = true;
	h_start(h);
	struct net_addr m_rtp, m_rtcp, m_other, m_evil;
	net_addr_parse("192.0.2.7:4242", 0, &m_rtp);
	net_addr_parse("192.0.2.7:4343", 0, &m_rtcp);
	net_addr_parse("192.0.2.7:5555", 0, &m_other);
	net_addr_parse("203.0.113.66:6666", 0, &m_evil);
	/* two requests at the server (RTP and RTCP sockets) */
	struct net_addr from[2];
	char req[2][1500];
	size_t len[2];
	for (int i = 0; i < 2; i++)
		len[i] = uat_recv_one(stun, req[i], sizeof req[i], &from[i]);
	/* the stranger answers first, to both, from its own address */
	for (int i = 0; i < 2; i++)
		stun_reply(stranger, &from[i], req[i], len[i], &m_evil, NULL);
	usleep(50000);
	/* which socket is which shows later (the RTP one asks the other
	 * address): answer both with distinct mappings */
	stun_reply(stun, &from[0], req[0], len[0], &m_rtp, &other_a);
	stun_reply(stun, &from[1], req[1], len[1], &m_rtcp, &other_a);
	/* the request to the other address, from the socket that got OTHER-ADDRESS
	 * first (both did: the RTP one asks) */
	struct net_addr of;
	char oreq[1500];
	size_t olen = uat_recv_one(other, oreq, sizeof oreq, &of);
	stun_reply(other, &of, oreq, olen, &m_other, NULL);

	struct net_addr ua_sip;
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_INVITE, false);
	body_of(&m, body, sizeof body);
	assert_non_null(strstr(body, "c=IN IP4 192.0.2.7\r\n"));
	assert_null(strstr(body, "203.0.113.66"));
	/* the RTP socket asked the other address: its mapping is the m= port */
	bool rtp_is_0 = net_addr_eq(&of, &from[0]);
	char mline[64], rline[64];
	snprintf(mline, sizeof mline, "m=audio %u ", rtp_is_0 ? 4242 : 4343);
	snprintf(rline, sizeof rline, "a=rtcp:%u\r\n", rtp_is_0 ? 4343 : 4242);
	assert_non_null(strstr(body, mline));
	assert_non_null(strstr(body, rline));
	uat_wait(&h->r, UA_EV_CALL, "a symmetric NAT", 0);
	respond(h->sip, &ua_sip, &m, 486, NULL);
	recv_sip(h->sip, buf, sizeof buf, &ua_sip, &m, SIP_ACK, false);
	size_t i = uat_wait(&h->r, UA_EV_DONE, NULL, 0);
	assert_int_equal(h->r.ev[i].exit_code, UA_EXIT_REFUSED);
	h_free(h);
	close(stun);
	close(other);
	close(stranger);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_far_end_holds),
	    cmocka_unit_test(test_first_rtcp_early),
	    cmocka_unit_test(test_we_hold),
	    cmocka_unit_test(test_wav_and_record),
	    cmocka_unit_test(test_stun),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
