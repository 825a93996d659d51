/* The relay on loopback: offer/answer through the direct relayctl, two phones, a third host,
 * counters, ports. */
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
#include "relay/relay.h"
#include "relayctl/relayctl.h"
#include "rtp/rtp.h"
#include "sdp/sdp.h"
#include "relayfix.h"

static void send_to(int fd, const void *p, size_t l, uint16_t port)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse("127.0.0.1", port, &a), 0);
	assert_int_equal(sendto(fd, p, l, 0, &a.u.sa, net_addr_len(&a)), (ssize_t)l);
}

/* Receives one datagram within ms; returns its length or -1, and its source port. */
static ssize_t recv_within(int fd, uint8_t *buf, size_t cap, int ms, uint16_t *from)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	struct net_addr a;
	socklen_t al = sizeof a.u.ss;
	ssize_t n = recvfrom(fd, buf, cap, 0, &a.u.sa, &al);
	if (from)
		*from = net_addr_port(&a);
	return n;
}

static void rtp_pkt(uint8_t *p, uint16_t seq, uint32_t ssrc)
{
	memset(p, 0, 172);
	p[0] = 0x80;
	p[2] = (uint8_t)(seq >> 8);
	p[3] = (uint8_t)seq;
	p[8] = (uint8_t)(ssrc >> 24);
	p[9] = (uint8_t)(ssrc >> 16);
	p[10] = (uint8_t)(ssrc >> 8);
	p[11] = (uint8_t)ssrc;
}

static const uint8_t rr[] = {0x80, 201, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44};

static void sdp_for(char *out, size_t cap, uint16_t port, bool mux)
{
	snprintf(out, cap,
		 "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		 "m=audio %u RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
		 "a=candidate:1 1 UDP 2130706431 127.0.0.1 %u typ host\r\n%s",
		 port, port, mux ? "a=rtcp-mux\r\n" : "");
}

/* The relay port a rewritten SDP names, after checking its shape. */
static uint16_t relay_port(const struct buf *b, bool want_mux)
{
	struct sdp s;
	assert_false(b->failed);
	assert_int_equal(sdp_parse(&s, buf_slice(b)), 0);
	assert_int_equal(s.n_media, 1);
	assert_true(sdp_has_nortpproxy(&s));
	assert_false(sdp_has_ice(&s));
	assert_true(s.media[0].conn.present);
	assert_true(slice_eq(s.media[0].conn.addr, SLICE_LIT("127.0.0.1")));
	assert_int_equal(s.media[0].port % 2, 0);
	assert_int_equal(s.media[0].rtcp_mux, want_mux);
	if (!want_mux) {
		assert_true(s.media[0].has_rtcp);
		assert_int_equal(s.media[0].rtcp_port, s.media[0].port + 1);
	}
	return s.media[0].port;
}

static struct relayctl_req req(const char *cid, const char *ft, const char *tt, const char *sdp)
{
	struct relayctl_req q;
	memset(&q, 0, sizeof q);
	q.call_id = slice_cstr(cid);
	q.from_tag = slice_cstr(ft);
	q.to_tag = slice_cstr(tt);
	q.sdp = slice_cstr(sdp);
	assert_int_equal(net_addr_parse("127.0.0.1:5060", 0, &q.opts.received_from), 0);
	q.opts.replace_origin = true;
	q.opts.replace_session_conn = true;
	return q;
}

static void wait_ports(struct relayfix *f, int64_t want)
{
	struct relay_stats st;
	for (int i = 0; i < 200; i++) {
		relay_stats_get(f->relay, &st);
		if (st.ports_free == want)
			return;
		usleep(10000);
	}
	assert_int_equal(st.ports_free, want);
}

static void test_call(void **state)
{
	(void)state;
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21000-21099\n");
	struct relay_stats st0;
	relay_stats_get(f.relay, &st0);
	assert_int_equal(st0.ports_free, 50);

	uint16_t pa, pa2, pb, pb2, pe;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	/* the RTCP sockets of the phones, on RTP + 1 (RFC 3550 11) */
	int a2 = relayfix_udp("127.0.0.1:0", &pa2), b2 = relayfix_udp("127.0.0.1:0", &pb2);
	close(a2);
	close(b2);
	pa2 = pa + 1;
	pb2 = pb + 1;
	char t[NET_ADDR_STRLEN];
	snprintf(t, sizeof t, "127.0.0.1:%u", pa2);
	a2 = relayfix_udp(t, &pa2);
	snprintf(t, sizeof t, "127.0.0.1:%u", pb2);
	b2 = relayfix_udp(t, &pb2);
	int evil = relayfix_udp("127.0.0.3:0", &pe);

	char sdp_a[512], sdp_b[512];
	sdp_for(sdp_a, sizeof sdp_a, pa, false);
	sdp_for(sdp_b, sizeof sdp_b, pb, false);
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("call-1@test", "tagA", "", sdp_a);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	uint16_t rb = relay_port(&out, false); /* where B sends */
	buf_reset(&out);
	q = req("call-1@test", "tagA", "tagB", sdp_b);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = relay_port(&out, false); /* where A sends */
	assert_int_not_equal(ra, rb);
	relay_stats_get(f.relay, &st0);
	assert_int_equal(st0.ports_free, 48);
	assert_int_equal(st0.sessions, 1);

	uint8_t pkt[172], rx[2048];
	uint16_t from;
	/* RTP Bleed: a third host sends first to both fresh ports */
	rtp_pkt(pkt, 1, 0xbad);
	send_to(evil, pkt, sizeof pkt, ra);
	send_to(evil, pkt, sizeof pkt, rb);
	assert_int_equal(recv_within(b, rx, sizeof rx, 150, NULL), -1);
	assert_int_equal(recv_within(a, rx, sizeof rx, 10, NULL), -1);
	assert_int_equal(recv_within(evil, rx, sizeof rx, 10, NULL), -1);

	/* A -> B, with seq 4 lost */
	const uint16_t seqs[] = {1, 2, 3, 5, 6};
	for (size_t i = 0; i < ARRAY_SIZE(seqs); i++) {
		rtp_pkt(pkt, seqs[i], 0xaaaa);
		send_to(a, pkt, sizeof pkt, ra);
		assert_int_equal(recv_within(b, rx, sizeof rx, 1000, &from), (ssize_t)sizeof pkt);
		assert_int_equal(from, rb); /* B sees the relay port its SDP named */
		assert_memory_equal(rx, pkt, sizeof pkt);
	}
	/* B -> A */
	for (uint16_t i = 0; i < 3; i++) {
		rtp_pkt(pkt, (uint16_t)(100 + i), 0xbbbb);
		send_to(b, pkt, sizeof pkt, rb);
		assert_int_equal(recv_within(a, rx, sizeof rx, 1000, &from), (ssize_t)sizeof pkt);
		assert_int_equal(from, ra);
	}
	/* RTCP A -> B on the odd ports */
	send_to(a2, rr, sizeof rr, (uint16_t)(ra + 1));
	assert_int_equal(recv_within(b2, rx, sizeof rx, 1000, &from), (ssize_t)sizeof rr);
	assert_int_equal(from, rb + 1);
	/* garbage from A is dropped, not forwarded */
	send_to(a, "hello", 5, ra);
	/* the third host after latching: dropped, and it gets nothing */
	rtp_pkt(pkt, 7, 0xaaaa);
	send_to(evil, pkt, sizeof pkt, ra);
	send_to(evil, pkt, sizeof pkt, rb);
	assert_int_equal(recv_within(b, rx, sizeof rx, 150, NULL), -1);
	assert_int_equal(recv_within(a, rx, sizeof rx, 10, NULL), -1);
	assert_int_equal(recv_within(evil, rx, sizeof rx, 10, NULL), -1);

	struct relayctl_query qr;
	assert_int_equal(relayctl_query(f.rc, slice_cstr("call-1@test"), SLICE_NULL, &qr), 0);
	assert_string_equal(qr.leg[0].tag, "tagA");
	assert_string_equal(qr.leg[1].tag, "tagB");
	assert_int_equal(qr.leg[0].n_media, 1);
	const struct relayctl_stream *sa = &qr.leg[0].media[0].rtp, *sb = &qr.leg[1].media[0].rtp;
	assert_int_equal(sa->packets, 5);
	assert_int_equal(sa->bytes, 5 * 172);
	assert_int_equal(sa->gaps, 1);
	assert_true(sa->latched);
	assert_int_equal(net_addr_port(&sa->peer), pa);
	assert_int_equal(net_addr_port(&sa->local), ra);
	assert_int_equal(sa->dropped, 3); /* evil twice, "hello" */
	assert_int_equal(sb->packets, 3);
	assert_int_equal(sb->dropped, 2);
	assert_int_equal(sb->gaps, 0);
	assert_int_equal(qr.leg[0].media[0].rtcp.packets, 1);

	struct relay_stats st;
	relay_stats_get(f.relay, &st);
	assert_true(st.dropped[RELAY_DROP_SOURCE] >= 4);
	assert_true(st.dropped[RELAY_DROP_MALFORMED] >= 1);
	assert_true(st.packets >= 9);

	/* delete: ports go back */
	assert_int_equal(
	    relayctl_delete(f.rc, slice_cstr("call-1@test"), slice_cstr("tagA"), SLICE_NULL), 0);
	assert_int_equal(relayctl_delete(f.rc, slice_cstr("call-1@test"), SLICE_NULL, SLICE_NULL),
			 ENOENT);
	wait_ports(&f, 50);
	/* and nothing is forwarded any more */
	rtp_pkt(pkt, 8, 0xaaaa);
	send_to(a, pkt, sizeof pkt, ra);
	assert_int_equal(recv_within(b, rx, sizeof rx, 100, NULL), -1);

	buf_free(&out);
	close(a);
	close(b);
	close(a2);
	close(b2);
	close(evil);
	relayfix_stop(&f);
}

/* A muxes, B does not, and the relay demuxes between them (RFC 5761). */
static void test_rtcp_demux(void **state)
{
	(void)state;
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21100-21199\n");
	uint16_t pa, pb, pb2;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	char t[64];
	snprintf(t, sizeof t, "127.0.0.1:%u", pb + 1);
	int b2 = relayfix_udp(t, &pb2);
	char sdp_a[512], sdp_b[512];
	sdp_for(sdp_a, sizeof sdp_a, pa, true);
	sdp_for(sdp_b, sizeof sdp_b, pb, false);
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("call-2", "a", "", sdp_a);
	q.opts.rtcp_mux = RELAYCTL_MUX_DEMUX;
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	uint16_t rb = relay_port(&out, false); /* no a=rtcp-mux towards B */
	buf_reset(&out);
	q = req("call-2", "a", "b", sdp_b);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = relay_port(&out, true); /* A is told its mux is accepted */

	uint8_t pkt[172], rx[512];
	uint16_t from;
	rtp_pkt(pkt, 1, 0xaaaa);
	send_to(a, pkt, sizeof pkt, ra); /* latch A first */
	assert_int_equal(recv_within(b, rx, sizeof rx, 1000, &from), (ssize_t)sizeof pkt);
	/* A's RTCP, muxed on its RTP port, reaches B's RTCP port */
	send_to(a, rr, sizeof rr, ra);
	assert_int_equal(recv_within(b2, rx, sizeof rx, 1000, &from), (ssize_t)sizeof rr);
	assert_int_equal(from, rb + 1);
	assert_int_equal(recv_within(b, rx, sizeof rx, 50, NULL), -1);
	/* B's RTCP on the odd port reaches A on its one port */
	send_to(b2, rr, sizeof rr, (uint16_t)(rb + 1));
	assert_int_equal(recv_within(a, rx, sizeof rx, 1000, &from), (ssize_t)sizeof rr);
	assert_int_equal(from, ra);
	buf_free(&out);
	close(a);
	close(b);
	close(b2);
	relayfix_stop(&f);
}

static void test_errors_and_pool(void **state)
{
	(void)state;
	struct relayfix f;
	/* two pairs only: one call of one stream */
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21200-21203\n");
	char sdp[512];
	sdp_for(sdp, sizeof sdp, 7078, false);
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("c1", "x", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	/* a re-offer reuses the ports */
	buf_reset(&out);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	buf_reset(&out);
	q = req("c2", "y", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), ENOSPC);
	struct relay_stats st;
	relay_stats_get(f.relay, &st);
	assert_int_equal(st.sessions, 1); /* the failed one is gone */
	assert_string_equal(relayctl_strerror(ENOSPC), "out of relay ports");

	buf_reset(&out);
	q = req("c3", "z", "", "v=0\r\nthis is not sdp\r\n");
	assert_int_equal(relayctl_offer(f.rc, &q, &out), EBADMSG);
	q = req("nope", "x", "y", sdp);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), ENOENT);
	q = req("c1", "not-a-leg", "y", sdp);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), ENOENT);
	q = req("", "x", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), EINVAL);
	q = req("c4", "x", "", sdp);
	q.opts.ice = RELAYCTL_ICE_FORCE;
	assert_int_equal(relayctl_offer(f.rc, &q, &out), ENOTSUP);
	q.opts.ice = RELAYCTL_ICE_REMOVE;
	q.opts.family = AF_INET6; /* no IPv6 interface configured */
	assert_int_equal(relayctl_offer(f.rc, &q, &out), ENOTSUP);
	assert_int_equal(relayctl_ping(f.rc), 0);
	buf_free(&out);
	relayfix_stop(&f);
}

/* An SDP of n m= lines, those from first on with ports (the others port 0). */
static void sdp_lines(char *out, size_t cap, int n, int first)
{
	int k = snprintf(out, cap,
			 "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
			 "c=IN IP4 127.0.0.1\r\nt=0 0\r\n");
	for (int i = 0; i < n; i++)
		k += snprintf(out + k, cap - (size_t)k, "m=audio %d RTP/AVP 0\r\n",
			      i >= first ? 7000 + 2 * i : 0);
	assert_true((size_t)k < cap);
}

static int offer_from(struct relayfix *f, const char *cid, const char *src, const char *owner,
		      const char *sdp)
{
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req(cid, "a", "", sdp);
	assert_int_equal(net_addr_parse(src, 5060, &q.opts.received_from), 0);
	q.opts.owner = slice_cstr(owner);
	int err = relayctl_offer(f->rc, &q, &out);
	buf_free(&out);
	return err;
}

static int64_t metric_value(const char *name)
{
	struct metric *m = metric_find(name, NULL);
	return m ? metric_get(m) : -1;
}

/* The media bounds, as the attack: one offer with 16 m= lines used to take
 * 32 port pairs, and one source could hold the whole pool (503 for everyone
 * else). Now an offer has at most max_media lines with ports (E2BIG: 488),
 * re-offers cannot walk a call through more indexes, and a source and an AOR
 * hold at most their share of pairs (EDQUOT: 503), each refusal counted. */
static void test_media_bounds(void **state)
{
	(void)state;
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21600-21799\n"
			   "max_pairs_per_source = 8\nmax_pairs_per_aor = 6\n");
	char sdp[2048];
	int64_t m0 = metric_value("relay_limit_media_total");
	int64_t s0 = metric_value("relay_limit_source_total");
	int64_t a0 = metric_value("relay_limit_aor_total");

	sdp_lines(sdp, sizeof sdp, 16, 0);
	assert_int_equal(offer_from(&f, "flood", "198.18.9.1", "", sdp), E2BIG);
	struct relay_stats st;
	relay_stats_get(f.relay, &st);
	assert_int_equal(st.ports_free, 100);
	assert_int_equal(st.sessions, 0);
	assert_int_equal(metric_value("relay_limit_media_total") - m0, 1);
	/* lines with port 0 take nothing and do not count */
	sdp_lines(sdp, sizeof sdp, 16, 12);
	assert_int_equal(offer_from(&f, "walk", "198.18.9.2", "", sdp), 0);
	relay_stats_get(f.relay, &st);
	assert_int_equal(st.ports_free, 100 - 8);
	/* a re-offer moving to other lines keeps the old ones: still capped */
	sdp_lines(sdp, sizeof sdp, 12, 8);
	assert_int_equal(offer_from(&f, "walk", "198.18.9.2", "", sdp), E2BIG);

	/* one source: 8 pairs (the "walk" call holds them all) */
	sdp_lines(sdp, sizeof sdp, 1, 0);
	assert_int_equal(offer_from(&f, "src-2", "198.18.9.2", "", sdp), EDQUOT);
	assert_int_equal(metric_value("relay_limit_source_total") - s0, 1);
	assert_int_equal(offer_from(&f, "other", "198.18.9.3", "", sdp), 0);
	/* an IPv6 source is one /64 */
	assert_int_equal(offer_from(&f, "v6-1", "[2001:db8:1:2::1]", "",
				    "v=0\r\no=- 1 1 IN IP4 "
				    "127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
				    "m=audio 7000 RTP/AVP 0\r\nm=audio 7002 RTP/AVP 0\r\n"
				    "m=audio 7004 RTP/AVP 0\r\nm=audio 7006 RTP/AVP 0\r\n"),
			 0);
	assert_int_equal(offer_from(&f, "v6-2", "[2001:db8:1:2::99]", "", sdp), EDQUOT);

	/* one AOR from many sources: 6 pairs */
	assert_int_equal(offer_from(&f, "aor-1", "198.18.9.10", "mallory@example.com", sdp), 0);
	assert_int_equal(offer_from(&f, "aor-2", "198.18.9.11", "mallory@example.com", sdp), 0);
	assert_int_equal(offer_from(&f, "aor-3", "198.18.9.12", "mallory@example.com", sdp), 0);
	assert_int_equal(relay_charge_pairs_of(f.relay, "mallory@example.com"), 6);
	assert_int_equal(offer_from(&f, "aor-4", "198.18.9.13", "mallory@example.com", sdp),
			 EDQUOT);
	assert_int_equal(metric_value("relay_limit_aor_total") - a0, 1);
	assert_int_equal(offer_from(&f, "aor-5", "198.18.9.13", "alice@example.com", sdp), 0);

	/* a call that ends gives its share back. Deletion is posted to each
	 * session's own worker, so "walk" (the source's 8 pairs) and "aor-1"
	 * may be freed in either order: wait until both calls' 10 pairs are
	 * back in the pool (a pair's charge is dropped as it is put back). */
	relay_stats_get(f.relay, &st);
	int64_t free0 = st.ports_free;
	assert_int_equal(relayctl_delete(f.rc, SLICE_LIT("walk"), SLICE_NULL, SLICE_NULL), 0);
	assert_int_equal(relayctl_delete(f.rc, SLICE_LIT("aor-1"), SLICE_NULL, SLICE_NULL), 0);
	for (int i = 0; i < 500; i++) {
		relay_stats_get(f.relay, &st);
		if (st.ports_free == free0 + 10)
			break;
		usleep(10000);
	}
	assert_int_equal(st.ports_free, free0 + 10);
	assert_int_equal(relay_charge_pairs_of(f.relay, "mallory@example.com"), 4);
	assert_int_equal(offer_from(&f, "src-3", "198.18.9.2", "", sdp), 0);
	assert_int_equal(offer_from(&f, "aor-6", "198.18.9.14", "mallory@example.com", sdp), 0);
	assert_string_equal(relayctl_strerror(EDQUOT),
			    "relay ports for this source or caller used up");
	relayfix_stop(&f);
}

static void count_cb(struct slice cid, void *arg)
{
	(void)cid;
	(*(size_t *)arg)++;
}

static void test_timeout(void **state)
{
	(void)state;
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21300-21399\ntimeout = 1\n");
	char sdp[512];
	sdp_for(sdp, sizeof sdp, 7078, false);
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("silent", "x", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	size_t n = 0;
	assert_int_equal(relayctl_list(f.rc, 0, count_cb, &n), 0);
	assert_int_equal(n, 1);
	/* deleted after 1 s of silence, swept once a second */
	struct relay_stats st;
	for (int i = 0; i < 400; i++) {
		relay_stats_get(f.relay, &st);
		if (st.sessions == 0 && st.ports_free == 50)
			break;
		usleep(10000);
	}
	assert_int_equal(st.sessions, 0);
	assert_int_equal(st.ports_free, 50);
	buf_free(&out);
	relayfix_stop(&f);
}

static bool session_alive(struct relayfix *f, const char *cid)
{
	struct relayctl_query q;
	return relayctl_query(f->rc, slice_cstr(cid), SLICE_NULL, &q) == 0;
}

/* A call on hold is silent (no music on hold): it used to be swept after
 * [relay] timeout like a dead call, and the resumed call had no relay and no
 * audio. A session whose streams are all sendonly/recvonly/inactive waits
 * hold_timeout instead; resumed, the short timeout applies again. */
static void test_hold_timeout(void **state)
{
	(void)state;
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21800-21899\ntimeout = 1\n"
			   "hold_timeout = 60\n");
	char sdp[512], held[600], answer[600];
	sdp_for(sdp, sizeof sdp, 7078, false);
	snprintf(held, sizeof held, "%sa=sendonly\r\n", sdp);
	sdp_for(answer, sizeof answer, 7080, false);
	snprintf(answer + strlen(answer), sizeof answer - strlen(answer), "a=recvonly\r\n");
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("dead", "x", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	buf_reset(&out);
	q = req("held", "x", "", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	/* the caller puts the call on hold, the callee agrees */
	buf_reset(&out);
	q = req("held", "x", "y", held);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	buf_reset(&out);
	q = req("held", "x", "y", answer);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	for (int i = 0; i < 400 && session_alive(&f, "dead"); i++)
		usleep(10000);
	assert_false(session_alive(&f, "dead"));
	assert_true(session_alive(&f, "held"));
	/* resumed: silence ends it after the short timeout again */
	buf_reset(&out);
	q = req("held", "x", "y", sdp);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	for (int i = 0; i < 400 && session_alive(&f, "held"); i++)
		usleep(10000);
	assert_false(session_alive(&f, "held"));
	buf_free(&out);
	relayfix_stop(&f);
}

/* Sends pkt from fd to port and expects it at rx_fd from from_port. */
static void relay_one(int fd, uint16_t port, int rx_fd, uint16_t from_port, const uint8_t *pkt)
{
	uint8_t rx[2048];
	uint16_t from;
	send_to(fd, pkt, 172, port);
	assert_int_equal(recv_within(rx_fd, rx, sizeof rx, 1000, &from), 172);
	assert_int_equal(from, from_port);
	assert_memory_equal(rx, pkt, 172);
}

/* The in-kernel fast path (needs root and a kernel with BPF): the kernel
 * carries latched RTP; counters stay exact, a spoofed source still meets the
 * latch, a moved phone is re-latched, a stream the kernel carries keeps its
 * session alive, and a deleted session forwards nothing. */
static void test_fastpath(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct relayfix f;
	relayfix_start(&f, "[relay]\naddress = 127.0.0.1\nports = 21400-21499\nfastpath = on\n"
			   "relatch = 200\ntimeout = 1\n");
	struct relay_stats s0, st;
	relay_stats_get(f.relay, &s0);
	assert_true(s0.fast);

	uint16_t pa, pb, pe, pa3;
	int a = relayfix_udp("127.0.0.1:0", &pa), b = relayfix_udp("127.0.0.1:0", &pb);
	int evil = relayfix_udp("127.0.0.3:0", &pe), a3 = relayfix_udp("127.0.0.1:0", &pa3);
	char sdp_a[512], sdp_b[512];
	sdp_for(sdp_a, sizeof sdp_a, pa, false);
	sdp_for(sdp_b, sizeof sdp_b, pb, false);
	struct buf out;
	buf_init(&out);
	struct relayctl_req q = req("fast-1@test", "tagA", "", sdp_a);
	assert_int_equal(relayctl_offer(f.rc, &q, &out), 0);
	uint16_t rb = relay_port(&out, false);
	buf_reset(&out);
	q = req("fast-1@test", "tagA", "tagB", sdp_b);
	assert_int_equal(relayctl_answer(f.rc, &q, &out), 0);
	uint16_t ra = relay_port(&out, false);

	/* A -> B: seq 1..1000 without 10..19; B -> A: 500 */
	uint8_t pkt[172], rx[2048];
	uint64_t delivered = 0;
	for (uint16_t seq = 1; seq <= 1000; seq++) {
		if (seq >= 10 && seq <= 19)
			continue;
		rtp_pkt(pkt, seq, 0xaaaa);
		relay_one(a, ra, b, rb, pkt);
		delivered++;
	}
	for (uint16_t i = 0; i < 500; i++) {
		rtp_pkt(pkt, (uint16_t)(7000 + i), 0xbbbb);
		relay_one(b, rb, a, ra, pkt);
		delivered++;
	}
	struct relayctl_query qr;
	assert_int_equal(relayctl_query(f.rc, slice_cstr("fast-1@test"), SLICE_NULL, &qr), 0);
	const struct relayctl_stream *sa = &qr.leg[0].media[0].rtp, *sb = &qr.leg[1].media[0].rtp;
	assert_int_equal(sa->packets, 990);
	assert_int_equal(sa->bytes, 990 * 172);
	assert_int_equal(sa->gaps, 10);
	assert_int_equal(sb->packets, 500);
	assert_int_equal(sb->gaps, 0);
	/* user space adds to the totals just after it sends: wait for the last */
	for (int i = 0; i < 100; i++) {
		relay_stats_get(f.relay, &st);
		if (st.packets - s0.packets >= 1490)
			break;
		usleep(10000);
	}
	/* the kernel carried all but the first packets of each direction */
	assert_true(st.fast_packets - s0.fast_packets >= 1480);
	assert_int_equal(st.packets - s0.packets, 1490);

	/* a spoofed source after latching: user space drops it */
	rtp_pkt(pkt, 1001, 0xaaaa);
	send_to(evil, pkt, sizeof pkt, ra);
	assert_int_equal(recv_within(b, rx, sizeof rx, 150, NULL), -1);
	assert_int_equal(recv_within(evil, rx, sizeof rx, 10, NULL), -1);
	relay_stats_get(f.relay, &st);
	assert_true(st.dropped[RELAY_DROP_SOURCE] > s0.dropped[RELAY_DROP_SOURCE]);

	/* A's NAT moved it to another port: after relatch ms of silence the same
	 * SSRC takes over, in both directions */
	usleep(300 * 1000);
	for (uint16_t seq = 1002; seq < 1102; seq++) {
		rtp_pkt(pkt, seq, 0xaaaa);
		relay_one(a3, ra, b, rb, pkt);
		delivered++;
	}
	for (uint16_t i = 0; i < 100; i++) {
		rtp_pkt(pkt, (uint16_t)(7500 + i), 0xbbbb);
		relay_one(b, rb, a3, ra, pkt);
		delivered++;
	}
	assert_int_equal(recv_within(a, rx, sizeof rx, 50, NULL), -1);

	/* 1.5 s of a stream only the kernel sees keeps a 1 s timeout away */
	for (int i = 0; i < 30; i++) {
		rtp_pkt(pkt, (uint16_t)(1200 + i), 0xaaaa);
		relay_one(a3, ra, b, rb, pkt);
		delivered++;
		usleep(50 * 1000);
	}
	assert_int_equal(relayctl_query(f.rc, slice_cstr("fast-1@test"), SLICE_NULL, &qr), 0);
	assert_int_equal(qr.leg[0].media[0].rtp.packets, 990 + 100 + 30);

	/* silence: the sweep deletes it; every packet is counted exactly once */
	for (int i = 0; i < 400; i++) {
		relay_stats_get(f.relay, &st);
		if (st.sessions == 0 && st.ports_free == 50)
			break;
		usleep(10000);
	}
	assert_int_equal(st.sessions, 0);
	assert_int_equal(st.ports_free, 50);
	assert_int_equal(st.packets - s0.packets, (int64_t)delivered);
	/* and the kernel forwards nothing for it any more */
	rtp_pkt(pkt, 1300, 0xaaaa);
	send_to(a3, pkt, sizeof pkt, ra);
	assert_int_equal(recv_within(b, rx, sizeof rx, 100, NULL), -1);

	buf_free(&out);
	close(a);
	close(a3);
	close(b);
	close(evil);
	relayfix_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_call),
	    cmocka_unit_test(test_rtcp_demux),
	    cmocka_unit_test(test_errors_and_pool),
	    cmocka_unit_test(test_media_bounds),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_hold_timeout),
	    cmocka_unit_test(test_fastpath),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
