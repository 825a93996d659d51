/* Unit tests of the SDP codec: parsing phones' offers and splicing them onto a relay. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sdp/sdp.h"

#define CRLF "\r\n"

/* A desk phone's offer: audio only, session-level c=, CRLF. */
/* clang-format off */
static const char phone_audio[] =
	"v=0" CRLF
	"o=- 20518 0 IN IP4 192.168.1.23" CRLF
	"s=SDP data" CRLF
	"c=IN IP4 192.168.1.23" CRLF
	"t=0 0" CRLF
	"m=audio 11780 RTP/AVP 0 8 18 9 101" CRLF
	"a=rtpmap:0 PCMU/8000" CRLF
	"a=rtpmap:8 PCMA/8000" CRLF
	"a=rtpmap:18 G729/8000" CRLF
	"a=fmtp:18 annexb=no" CRLF
	"a=rtpmap:9 G722/8000" CRLF
	"a=fmtp:101 0-15" CRLF
	"a=rtpmap:101 telephone-event/8000" CRLF
	"a=ptime:20" CRLF
	"a=sendrecv" CRLF;
/* clang-format on */

/* A softphone with audio and video: media c= on audio, a=rtcp with address
 * (RFC 3605), a port count on video. */
/* clang-format off */
static const char phone_av[] =
	"v=0" CRLF
	"o=alice 3724 1 IN IP4 100.64.1.10" CRLF
	"s=Talk" CRLF
	"c=IN IP4 100.64.1.10" CRLF
	"t=0 0" CRLF
	"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics" CRLF
	"m=audio 7078 RTP/AVP 96 97 98 0 8 101" CRLF
	"c=IN IP4 100.64.1.10" CRLF
	"a=rtpmap:96 opus/48000/2" CRLF
	"a=fmtp:96 useinbandfec=1" CRLF
	"a=rtpmap:101 telephone-event/8000" CRLF
	"a=rtcp:7079 IN IP4 100.64.1.10" CRLF
	"m=video 9078/2 RTP/AVP 96 97" CRLF
	"a=rtpmap:96 VP8/90000" CRLF
	"a=rtcp:9079" CRLF
	"a=rtcp-fb:96 nack pli" CRLF;
/* clang-format on */

/* A browser-like offer: ICE, rtcp-mux, DTLS, bare LF line ends. */
/* clang-format off */
static const char webrtc_lf[] =
	"v=0\n"
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\n"
	"s=-\n"
	"t=0 0\n"
	"a=group:BUNDLE 0\n"
	"a=msid-semantic: WMS\n"
	"m=audio 54400 UDP/TLS/RTP/SAVPF 111 0 8 126\n"
	"c=IN IP4 203.0.113.7\n"
	"a=rtcp:9 IN IP4 0.0.0.0\n"
	"a=candidate:842163049 1 udp 1677729535 203.0.113.7 54400 typ srflx raddr "
	"100.64.2.20 rport 54400 generation 0\n"
	"a=candidate:1467250027 1 udp 2122260223 100.64.2.20 54400 typ host generation 0\n"
	"a=candidate:1853887674 1 tcp 1518280447 100.64.2.20 9 typ host tcptype active\n"
	"a=ice-ufrag:EsAw\n"
	"a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\n"
	"a=ice-options:trickle\n"
	"a=fingerprint:sha-256 "
	"7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:"
	"A1:2C:19:08\n"
	"a=setup:actpass\n"
	"a=mid:0\n"
	"a=sendrecv\n"
	"a=rtcp-mux\n"
	"a=rtpmap:111 opus/48000/2\n"
	"a=remote-candidates:1 203.0.113.9 40000\n"
	"a=end-of-candidates\n";
/* clang-format on */

/* clang-format off */
static const char phone_ip6[] =
	"v=0" CRLF
	"o=- 1 1 IN IP6 2001:db8::10" CRLF
	"s=-" CRLF
	"c=IN IP6 2001:db8::10" CRLF
	"t=0 0" CRLF
	"m=audio 40000 RTP/AVP 0" CRLF
	"a=rtcp:40001 IN IP6 2001:db8::10" CRLF;
/* clang-format on */

static struct slice S(const char *s) {
	return slice_cstr(s);
}

static void
assert_slice(struct slice got, const char *want)
{
	char tmp[512];
	assert_true(got.l < sizeof tmp);
	assert_string_equal(slice_to_cstr(got, tmp, sizeof tmp), want);
}

static void assert_buf(const struct buf *b, const char *want)
{
	assert_false(b->failed);
	char *got = test_malloc(b->len + 1);
	memcpy(got, b->data, b->len);
	got[b->len] = '\0';
	assert_string_equal(got, want);
	test_free(got);
}

/* Parses in into *s and rewrites it into *out, a buffer it initialises. */
static void parse_and_rewrite(struct sdp *s, const char *in, const struct sdp_rw *rw,
			      struct buf *out)
{
	assert_int_equal(sdp_parse(s, S(in)), 0);
	buf_init(out);
	assert_int_equal(sdp_rewrite(s, rw, out), 0);
}

/* Rewrites *s again into *out, emptied first, and parses the result into *o. */
static void rewrite_again(const struct sdp *s, const struct sdp_rw *rw, struct buf *out,
			  struct sdp *o)
{
	buf_reset(out);
	assert_int_equal(sdp_rewrite(s, rw, out), 0);
	assert_int_equal(sdp_parse(o, buf_slice(out)), 0);
}

static void test_parse_audio(void **state)
{
	(void)state;
	struct sdp s;
	assert_int_equal(sdp_parse(&s, S(phone_audio)), 0);
	assert_true(s.crlf);
	assert_slice(s.origin.username, "-");
	assert_slice(s.origin.sess_id, "20518");
	assert_int_equal(s.origin.version, 0);
	assert_int_equal(s.origin.conn.af, SDP_AF_IP4);
	assert_slice(s.origin.conn.addr, "192.168.1.23");
	assert_slice(s.name, "SDP data");
	assert_slice(s.timing, "0 0");
	assert_true(s.conn.present);
	assert_true(s.conn.literal);
	assert_slice(s.conn.addr, "192.168.1.23");
	assert_int_equal(s.n_media, 1);

	const struct sdp_media *m = &s.media[0];
	assert_slice(m->type, "audio");
	assert_int_equal(m->port, 11780);
	assert_int_equal(m->port_count, 1);
	assert_slice(m->proto, "RTP/AVP");
	assert_slice(m->fmts, "0 8 18 9 101");
	assert_int_equal(m->conn_level, SDP_CONN_SESSION);
	assert_slice(m->conn.addr, "192.168.1.23");
	assert_false(m->has_rtcp);
	assert_false(m->rtcp_mux);
	assert_int_equal(m->dir_attr, SDP_DIR_SENDRECV);
	assert_int_equal(m->dir, SDP_DIR_SENDRECV);
	assert_false(m->hold);
	assert_false(sdp_has_ice(&s));
	assert_false(sdp_has_nortpproxy(&s));
	/* the section runs from m= to the end of the body */
	assert_ptr_equal(m->section.p, strstr(phone_audio, "m=audio"));
	assert_ptr_equal(m->section.p + m->section.l, phone_audio + strlen(phone_audio));
	assert_int_equal(s.session.l, (size_t)(m->section.p - phone_audio));
}

static void test_parse_audio_video(void **state)
{
	(void)state;
	struct sdp s;
	assert_int_equal(sdp_parse(&s, S(phone_av)), 0);
	assert_int_equal(s.origin.version, 1);
	assert_int_equal(s.n_media, 2);

	const struct sdp_media *a = &s.media[0], *v = &s.media[1];
	assert_slice(a->type, "audio");
	assert_int_equal(a->port, 7078);
	assert_int_equal(a->conn_level, SDP_CONN_MEDIA);
	assert_true(a->has_rtcp);
	assert_int_equal(a->rtcp_port, 7079);
	assert_true(a->rtcp_conn.present);
	assert_int_equal(a->rtcp_conn.af, SDP_AF_IP4);
	assert_slice(a->rtcp_conn.addr, "100.64.1.10");
	assert_int_equal(a->dir, SDP_DIR_SENDRECV);
	assert_int_equal(a->dir_attr, SDP_DIR_NONE);

	assert_slice(v->type, "video");
	assert_int_equal(v->port, 9078);
	assert_int_equal(v->port_count, 2);
	assert_slice(v->fmts, "96 97");
	assert_int_equal(v->conn_level, SDP_CONN_SESSION);
	assert_slice(v->conn.addr, "100.64.1.10");
	assert_true(v->has_rtcp);
	assert_int_equal(v->rtcp_port, 9079);
	assert_false(v->rtcp_conn.present);
	assert_ptr_equal(a->section.p + a->section.l, v->section.p);
}

static void test_parse_webrtc_lf(void **state)
{
	(void)state;
	struct sdp s;
	assert_int_equal(sdp_parse(&s, S(webrtc_lf)), 0);
	assert_false(s.crlf);
	assert_int_equal(s.origin.version, 2);
	assert_false(s.conn.present);
	assert_int_equal(s.n_media, 1);
	const struct sdp_media *m = &s.media[0];
	assert_slice(m->proto, "UDP/TLS/RTP/SAVPF");
	assert_int_equal(m->conn_level, SDP_CONN_MEDIA);
	assert_slice(m->conn.addr, "203.0.113.7");
	assert_true(m->rtcp_mux);
	assert_int_equal(m->rtcp_port, 9);
	assert_slice(m->rtcp_conn.addr, "0.0.0.0");
	assert_slice(m->mid, "0");
	assert_int_equal(m->ice.n_candidates, 3);
	assert_slice(m->ice.candidates[1],
		     "1467250027 1 udp 2122260223 100.64.2.20 54400 typ host generation 0");
	assert_slice(m->ice.ufrag, "EsAw");
	assert_slice(m->ice.pwd, "bP+XJMM09aR8AiX1jdukzR6Y");
	assert_slice(m->ice.options, "trickle");
	assert_slice(m->ice.remote_cands, "1 203.0.113.9 40000");
	assert_true(m->ice.end_of_candidates);
	assert_true(sdp_has_ice(&s));
	/* a=rtcp's 0.0.0.0 is not hold: only c= counts */
	assert_false(m->hold);
}

static void test_parse_ipv6(void **state)
{
	(void)state;
	struct sdp s;
	assert_int_equal(sdp_parse(&s, S(phone_ip6)), 0);
	assert_int_equal(s.origin.conn.af, SDP_AF_IP6);
	assert_int_equal(s.conn.af, SDP_AF_IP6);
	assert_true(s.conn.literal);
	assert_slice(s.media[0].conn.addr, "2001:db8::10");
	assert_int_equal(s.media[0].rtcp_conn.af, SDP_AF_IP6);
	assert_int_equal(s.media[0].rtcp_port, 40001);
}

static void test_parse_hold(void **state)
{
	(void)state;
	struct sdp s;
	/* RFC 2543 style: c=0.0.0.0 */
	static const char old[] = "v=0\r\no=- 5 6 IN IP4 10.0.0.1\r\ns=-\r\n"
				  "c=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
	assert_int_equal(sdp_parse(&s, S(old)), 0);
	assert_true(s.media[0].hold);
	assert_int_equal(s.media[0].dir, SDP_DIR_SENDRECV);

	/* RFC 3264 8.4: a=sendonly, and a=inactive inherited from the session */
	static const char dir[] = "v=0\r\no=- 5 7 IN IP4 10.0.0.1\r\ns=-\r\n"
				  "c=IN IP4 10.0.0.1\r\nt=0 0\r\na=inactive\r\n"
				  "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"
				  "m=video 4002 RTP/AVP 96\r\n"
				  "m=audio 4004 RTP/AVP 0\r\na=recvonly\r\n";
	assert_int_equal(sdp_parse(&s, S(dir)), 0);
	assert_int_equal(s.dir, SDP_DIR_INACTIVE);
	assert_int_equal(s.media[0].dir, SDP_DIR_SENDONLY);
	assert_true(s.media[0].hold);
	assert_int_equal(s.media[1].dir_attr, SDP_DIR_NONE);
	assert_int_equal(s.media[1].dir, SDP_DIR_INACTIVE);
	assert_true(s.media[1].hold);
	assert_int_equal(s.media[2].dir, SDP_DIR_RECVONLY);
	assert_false(s.media[2].hold);
	assert_string_equal(sdp_dir_name(s.media[0].dir), "sendonly");
}

static void test_parse_tolerated(void **state)
{
	(void)state;
	struct sdp s;
	/* multicast TTL/count suffix, no s= line, a last line without a line end,
	 * trailing empty lines, mixed line ends, unknown line types */
	static const char a[] = "v=0\no=- 1 1 IN IP4 10.0.0.1\r\nt=0 0\nx=whatever\n"
				"m=audio 5004 RTP/AVP 0\nc=IN IP4 233.252.0.1/127/3\n"
				"b=AS:64\na=nortpproxy:yes";
	assert_int_equal(sdp_parse(&s, S(a)), 0);
	assert_slice(s.media[0].conn.addr, "233.252.0.1");
	assert_slice(s.media[0].conn.suffix, "/127/3");
	assert_true(s.media[0].nortpproxy);
	assert_true(sdp_has_nortpproxy(&s));

	static const char b[] = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n"
				"m=audio 0 RTP/AVP\r\n\r\n\r\n";
	assert_int_equal(sdp_parse(&s, S(b)), 0);
	assert_int_equal(s.media[0].port, 0);
	assert_int_equal(s.media[0].conn_level, SDP_CONN_NONE);
	assert_int_equal(s.media[0].fmts.l, 0);
	/* the trailing empty lines belong to no section */
	assert_slice(s.media[0].section, "m=audio 0 RTP/AVP\r\n");

	static const char c[] = "v=0\r\no=- 1 1 IN IP4 host.example.net\r\ns=-\r\n"
				"a=nortpproxy:yes\r\n";
	assert_int_equal(sdp_parse(&s, S(c)), 0);
	assert_int_equal(s.n_media, 0);
	assert_false(s.origin.conn.literal);
	assert_true(s.nortpproxy);
	assert_slice(s.nortpproxy_val, "yes");
}

static void test_parse_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *sdp;
		int err;
	} cases[] = {
	    {"", EBADMSG},
	    {"\r\n", EBADMSG},
	    {"garbage", EBADMSG},
	    {"hello world\r\n", EBADMSG},
	    {"v=1\r\no=- 1 1 IN IP4 10.0.0.1\r\n", EBADMSG},
	    {"V=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n", EBADMSG},
	    {" v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n", EBADMSG},
	    {"v=0\r\ns=-\r\n", EBADMSG},			      /* no o= */
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nhello\r\n", EBADMSG}, /* not x= */
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\na =x\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n\r\ns=-\r\n", EBADMSG}, /* empty line inside */
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=a\rb\r\n", EBADMSG},	/* bare CR */
	    {"v=0\r\no=- 1 x IN IP4 10.0.0.1\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4\r\n", EBADMSG},
	    {"v=0\r\no=- 1 99999999999999999999 IN IP4 a\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\no=- 1 1 IN IP4 10.0.0.1\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000/0 RTP/AVP 0\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio -1 RTP/AVP 0\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 1.2.3.4 x\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 1.2.3.4//2\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 1.2.3.4;x\r\n", EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"
	     "a=rtcp:abc\r\n",
	     EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"
	     "a=rtcp:5001\r\na=rtcp:5003\r\n",
	     EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"
	     "o=- 1 1 IN IP4 10.0.0.1\r\n",
	     EBADMSG},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"
	     "t=0 0\r\n",
	     EBADMSG},
	    /* valid, but nothing a relay can use */
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=ATM NSAP 47.0091\r\n", ENOTSUP},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IPX 10.0.0.1\r\n", ENOTSUP},
	    {"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"
	     "c=IN IP4 233.252.0.1/127\r\nc=IN IP4 233.252.0.2/127\r\n",
	     ENOTSUP},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct sdp s;
		int err = sdp_parse(&s, S(cases[i].sdp));
		if (err != cases[i].err)
			fail_msg("case %zu: got %d, want %d: %s", i, err, cases[i].err,
				 cases[i].sdp);
	}

	/* a NUL inside a value */
	static const char nul[] = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=a\0b\r\n";
	struct sdp s;
	assert_int_equal(sdp_parse(&s, (struct slice){nul, sizeof nul - 1}), EBADMSG);
}

static void test_parse_too_many_media(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_append_cstr(&b, "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n");
	for (int i = 0; i < SDP_MAX_MEDIA; i++)
		buf_printf(&b, "m=audio %d RTP/AVP 0\r\n", 4000 + 2 * i);
	struct sdp *s = test_malloc(sizeof *s);
	assert_int_equal(sdp_parse(s, buf_slice(&b)), 0);
	assert_int_equal(s->n_media, SDP_MAX_MEDIA);
	buf_append_cstr(&b, "m=audio 6000 RTP/AVP 0\r\n");
	assert_int_equal(sdp_parse(s, buf_slice(&b)), ENOTSUP);
	test_free(s);
	buf_free(&b);

	/* more candidates than are stored: all counted */
	buf_init(&b);
	buf_append_cstr(&b, "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n");
	for (int i = 0; i < SDP_MAX_CANDIDATES + 4; i++)
		buf_printf(&b, "a=candidate:%d 1 udp 1 10.0.0.1 %d typ host\r\n", i, 4000 + i);
	struct sdp s2;
	assert_int_equal(sdp_parse(&s2, buf_slice(&b)), 0);
	assert_int_equal(s2.media[0].ice.n_candidates, SDP_MAX_CANDIDATES + 4);
	buf_free(&b);
}

static const struct sdp_media_rw relay_a = {
    .af = SDP_AF_IP4, .addr = SLICE_LIT("198.18.0.10"), .port = 30000, .rtcp_port = 30001};

static void test_rewrite_audio(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_vstate vs = {0};
	struct sdp_rw rw = {
	    .media = &relay_a,
	    .n_media = 1,
	    .replace_origin = true,
	    .origin_af = SDP_AF_IP4,
	    .origin_addr = SLICE_LIT("198.18.0.10"),
	    .replace_session_conn = true,
	    .add_nortpproxy = true,
	    .vstate = &vs,
	};
	/* clang-format off */
	static const char want[] =
		"v=0" CRLF
		"o=- 20518 0 IN IP4 198.18.0.10" CRLF
		"s=SDP data" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"t=0 0" CRLF
		"a=nortpproxy:yes" CRLF
		"m=audio 30000 RTP/AVP 0 8 18 9 101" CRLF
		"a=rtpmap:0 PCMU/8000" CRLF
		"a=rtpmap:8 PCMA/8000" CRLF
		"a=rtpmap:18 G729/8000" CRLF
		"a=fmtp:18 annexb=no" CRLF
		"a=rtpmap:9 G722/8000" CRLF
		"a=fmtp:101 0-15" CRLF
		"a=rtpmap:101 telephone-event/8000" CRLF
		"a=ptime:20" CRLF
		"a=sendrecv" CRLF
		"a=rtcp:30001" CRLF;
	/* clang-format on */

	parse_and_rewrite(&s, phone_audio, &rw, &out);
	assert_buf(&out, want);

	/* the output is itself valid SDP, and carries the marker */
	struct sdp again;
	assert_int_equal(sdp_parse(&again, buf_slice(&out)), 0);
	assert_true(sdp_has_nortpproxy(&again));
	assert_int_equal(again.media[0].port, 30000);
	buf_free(&out);
}

static void test_rewrite_version(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_vstate vs = {0};
	struct sdp_media_rw mrw = relay_a;
	struct sdp_rw rw = {.media = &mrw, .n_media = 1, .vstate = &vs};
	struct sdp o;

	parse_and_rewrite(&s, phone_audio, &rw, &out);
	assert_int_equal(sdp_parse(&o, buf_slice(&out)), 0);
	assert_int_equal(o.origin.version, 0);

	/* RFC 3264 8: the same re-offer keeps the version */
	rewrite_again(&s, &rw, &out, &o);
	assert_int_equal(o.origin.version, 0);

	/* our port changed although the phone's SDP did not: raise it */
	mrw.port = 30002;
	rewrite_again(&s, &rw, &out, &o);
	assert_int_equal(o.origin.version, 1);
	assert_int_equal(o.media[0].port, 30002);
	assert_slice(o.origin.sess_version, "1");

	rewrite_again(&s, &rw, &out, &o);
	assert_int_equal(o.origin.version, 1);

	/* the phone re-offers with a higher version and new content */
	static const char reoffer[] = "v=0\r\no=- 20518 7 IN IP4 192.168.1.23\r\ns=SDP data\r\n"
				      "c=IN IP4 192.168.1.23\r\nt=0 0\r\n"
				      "m=audio 11780 RTP/AVP 0\r\na=sendonly\r\n";
	assert_int_equal(sdp_parse(&s, S(reoffer)), 0);
	rewrite_again(&s, &rw, &out, &o);
	assert_int_equal(o.origin.version, 7);
	assert_true(o.media[0].hold);

	/* and then one with fewer digits than ours: never lowered */
	static const char low[] = "v=0\r\no=- 20518 3 IN IP4 192.168.1.23\r\ns=SDP data\r\n"
				  "c=IN IP4 192.168.1.23\r\nt=0 0\r\n"
				  "m=audio 11780 RTP/AVP 8\r\n";
	vs.out_version = 99;
	assert_int_equal(sdp_parse(&s, S(low)), 0);
	rewrite_again(&s, &rw, &out, &o);
	assert_int_equal(o.origin.version, 100);
	assert_true(memmem(out.data, out.len, "o=- 20518 100 IN IP4 192.168.1.23\r\n", 35) != NULL);
	buf_free(&out);
}

static void test_rewrite_keep_video(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_media_rw media[2] = {relay_a, {.keep = true}};
	struct sdp_rw rw = {
	    .media = media,
	    .n_media = 2,
	    .replace_session_conn = true,
	    .session_af = SDP_AF_IP4,
	    .session_addr = SLICE_LIT("198.18.0.10"),
	};
	/* the kept video stream had the session address: it gets its own c= so
	 * that replacing the session c= does not move it */
	/* clang-format off */
	static const char want[] =
		"v=0" CRLF
		"o=alice 3724 1 IN IP4 100.64.1.10" CRLF
		"s=Talk" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"t=0 0" CRLF
		"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics" CRLF
		"m=audio 30000 RTP/AVP 96 97 98 0 8 101" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"a=rtpmap:96 opus/48000/2" CRLF
		"a=fmtp:96 useinbandfec=1" CRLF
		"a=rtpmap:101 telephone-event/8000" CRLF
		"a=rtcp:30001" CRLF
		"m=video 9078/2 RTP/AVP 96 97" CRLF
		"c=IN IP4 100.64.1.10" CRLF
		"a=rtpmap:96 VP8/90000" CRLF
		"a=rtcp:9079" CRLF
		"a=rtcp-fb:96 nack pli" CRLF;
	/* clang-format on */

	parse_and_rewrite(&s, phone_av, &rw, &out);
	assert_buf(&out, want);
	buf_free(&out);
}

static void test_rewrite_both_media(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_media_rw media[2] = {
	    relay_a,
	    {.af = SDP_AF_IP4, .addr = SLICE_LIT("198.18.0.11"), .port = 30010, .rtcp_port = 30011},
	};
	struct sdp_rw rw = {.media = media, .n_media = 2, .replace_session_conn = true};
	/* session c= takes the first media's address; video, on another relay
	 * address, gets a c= of its own after m= */
	/* clang-format off */
	static const char want[] =
		"v=0" CRLF
		"o=alice 3724 1 IN IP4 100.64.1.10" CRLF
		"s=Talk" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"t=0 0" CRLF
		"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics" CRLF
		"m=audio 30000 RTP/AVP 96 97 98 0 8 101" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"a=rtpmap:96 opus/48000/2" CRLF
		"a=fmtp:96 useinbandfec=1" CRLF
		"a=rtpmap:101 telephone-event/8000" CRLF
		"a=rtcp:30001" CRLF
		"m=video 30010 RTP/AVP 96 97" CRLF
		"c=IN IP4 198.18.0.11" CRLF
		"a=rtpmap:96 VP8/90000" CRLF
		"a=rtcp:30011" CRLF
		"a=rtcp-fb:96 nack pli" CRLF;
	/* clang-format on */

	parse_and_rewrite(&s, phone_av, &rw, &out);
	assert_buf(&out, want);
	buf_free(&out);
}

static void test_rewrite_webrtc_strip_ice(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_media_rw m = {
	    .af = SDP_AF_IP4, .addr = SLICE_LIT("198.18.0.10"), .port = 30010, .rtcp_mux = true};
	struct sdp_rw rw = {.media = &m, .n_media = 1, .strip_ice = true, .add_nortpproxy = true};
	/* LF in, LF out; a=rtcp dropped since RTCP is muxed (RFC 5761) */
	/* clang-format off */
	static const char want[] =
		"v=0\n"
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1\n"
		"s=-\n"
		"t=0 0\n"
		"a=group:BUNDLE 0\n"
		"a=msid-semantic: WMS\n"
		"a=nortpproxy:yes\n"
		"m=audio 30010 UDP/TLS/RTP/SAVPF 111 0 8 126\n"
		"c=IN IP4 198.18.0.10\n"
		"a=fingerprint:sha-256 "
		"7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:"
		"A1:2C:19:08\n"
		"a=setup:actpass\n"
		"a=mid:0\n"
		"a=sendrecv\n"
		"a=rtcp-mux\n"
		"a=rtpmap:111 opus/48000/2\n";
	/* clang-format on */

	parse_and_rewrite(&s, webrtc_lf, &rw, &out);
	assert_buf(&out, want);

	struct sdp o;
	assert_int_equal(sdp_parse(&o, buf_slice(&out)), 0);
	assert_false(sdp_has_ice(&o));
	assert_true(o.media[0].rtcp_mux);
	assert_false(o.media[0].has_rtcp);

	/* without mux the relay demuxes: a=rtcp-mux goes, a=rtcp comes */
	m.rtcp_mux = false;
	m.rtcp_port = 30011;
	rw.strip_ice = false;
	rw.add_nortpproxy = false;
	rewrite_again(&s, &rw, &out, &o);
	assert_false(o.media[0].rtcp_mux);
	assert_int_equal(o.media[0].rtcp_port, 30011);
	assert_false(o.media[0].rtcp_conn.present);
	assert_int_equal(o.media[0].ice.n_candidates, 3);
	assert_null(memmem(out.data, out.len, "rtcp-mux", 8));
	buf_free(&out);
}

static void test_rewrite_ipv6_to_ipv4(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_media_rw m = {
	    .af = SDP_AF_IP4, .addr = SLICE_LIT("198.18.0.10"), .port = 30020, .rtcp_port = 30021};
	struct sdp_rw rw = {.media = &m,
			    .n_media = 1,
			    .replace_session_conn = true,
			    .session_af = SDP_AF_IP4,
			    .session_addr = SLICE_LIT("198.18.0.10")};
	/* clang-format off */
	static const char want[] =
		"v=0" CRLF
		"o=- 1 1 IN IP6 2001:db8::10" CRLF
		"s=-" CRLF
		"c=IN IP4 198.18.0.10" CRLF
		"t=0 0" CRLF
		"m=audio 30020 RTP/AVP 0" CRLF
		"a=rtcp:30021" CRLF;
	/* clang-format on */

	parse_and_rewrite(&s, phone_ip6, &rw, &out);
	assert_buf(&out, want);

	/* and the other way, with the origin replaced too */
	struct sdp a;
	struct sdp_media_rw m6 = {
	    .af = SDP_AF_IP6, .addr = SLICE_LIT("2001:db8::1"), .port = 30030};
	struct sdp_rw rw6 = {.media = &m6,
			     .n_media = 1,
			     .replace_origin = true,
			     .origin_af = SDP_AF_IP6,
			     .origin_addr = SLICE_LIT("2001:db8::1")};
	/* clang-format off */
	static const char want6[] =
		"v=0" CRLF
		"o=- 20518 0 IN IP6 2001:db8::1" CRLF
		"s=SDP data" CRLF
		"c=IN IP4 192.168.1.23" CRLF
		"t=0 0" CRLF
		"m=audio 30030 RTP/AVP 0 8 18 9 101" CRLF
		"c=IN IP6 2001:db8::1" CRLF;
	/* clang-format on */
	assert_int_equal(sdp_parse(&a, S(phone_audio)), 0);
	buf_reset(&out);
	assert_int_equal(sdp_rewrite(&a, &rw6, &out), 0);
	assert_true(out.len > strlen(want6));
	assert_memory_equal(out.data, want6, strlen(want6));
	buf_free(&out);
}

static void test_rewrite_rejected_and_marker(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	/* a rejected video stream stays port 0; an existing marker is not doubled;
	 * a last line without line end gets one */
	static const char in[] = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\n"
				 "t=0 0\na=nortpproxy:yes\nm=audio 4000 RTP/AVP 0\n"
				 "m=video 0 RTP/AVP 96\na=inactive";
	struct sdp_media_rw media[2] = {relay_a, relay_a};
	struct sdp_rw rw = {.media = media, .n_media = 2, .add_nortpproxy = true};
	static const char want[] = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\n"
				   "t=0 0\na=nortpproxy:yes\nm=audio 30000 RTP/AVP 0\n"
				   "c=IN IP4 198.18.0.10\na=rtcp:30001\n"
				   "m=video 0 RTP/AVP 96\na=inactive\n";
	parse_and_rewrite(&s, in, &rw, &out);
	assert_buf(&out, want);

	/* nothing to change: the input comes back byte for byte (plus a line end) */
	struct sdp_rw none = {0};
	buf_reset(&out);
	assert_int_equal(sdp_rewrite(&s, &none, &out), 0);
	assert_int_equal(out.len, sizeof in);
	assert_memory_equal(out.data, in, sizeof in - 1);
	buf_free(&out);
}

static void test_rewrite_multicast_session(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	/* fuzzer find: a kept section inheriting a session c= with a TTL suffix
	 * must not get a c= of its own when the session c= stays */
	static const char in[] =
	    "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n"
	    "c=IN IP4 233.252.0.1/127/3\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
	struct sdp_rw none = {0};
	parse_and_rewrite(&s, in, &none, &out);
	assert_buf(&out, in);

	/* once the session c= is replaced, the kept section keeps its group */
	struct sdp_media_rw keep = {.keep = true};
	struct sdp_rw rw = {.media = &keep,
			    .n_media = 1,
			    .replace_session_conn = true,
			    .session_af = SDP_AF_IP4,
			    .session_addr = SLICE_LIT("198.18.0.10")};
	buf_reset(&out);
	assert_int_equal(sdp_rewrite(&s, &rw, &out), 0);
	assert_buf(&out, "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 198.18.0.10\r\n"
			 "t=0 0\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 233.252.0.1/127/3\r\n");
	buf_free(&out);
}

static void test_rewrite_einval(void **state)
{
	(void)state;
	struct sdp s;
	struct buf out;
	struct sdp_media_rw two[2] = {relay_a, relay_a};
	struct sdp_media_rw bad = {
	    .af = SDP_AF_IP4, .addr = SLICE_LIT("1.2.3.4\r\nx=y"), .port = 1};
	struct sdp_media_rw noaf = {.addr = SLICE_LIT("1.2.3.4"), .port = 1};
	buf_init(&out);
	assert_int_equal(sdp_parse(&s, S(phone_audio)), 0);
	struct sdp_rw rw = {.media = two, .n_media = 2};
	assert_int_equal(sdp_rewrite(&s, &rw, &out), EINVAL);
	rw = (struct sdp_rw){.media = &bad, .n_media = 1};
	assert_int_equal(sdp_rewrite(&s, &rw, &out), EINVAL);
	rw = (struct sdp_rw){.media = &noaf, .n_media = 1};
	assert_int_equal(sdp_rewrite(&s, &rw, &out), EINVAL);
	rw = (struct sdp_rw){.replace_origin = true, .origin_af = SDP_AF_IP4};
	assert_int_equal(sdp_rewrite(&s, &rw, &out), EINVAL);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_audio),
	    cmocka_unit_test(test_parse_audio_video),
	    cmocka_unit_test(test_parse_webrtc_lf),
	    cmocka_unit_test(test_parse_ipv6),
	    cmocka_unit_test(test_parse_hold),
	    cmocka_unit_test(test_parse_tolerated),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_too_many_media),
	    cmocka_unit_test(test_rewrite_audio),
	    cmocka_unit_test(test_rewrite_version),
	    cmocka_unit_test(test_rewrite_keep_video),
	    cmocka_unit_test(test_rewrite_both_media),
	    cmocka_unit_test(test_rewrite_webrtc_strip_ice),
	    cmocka_unit_test(test_rewrite_ipv6_to_ipv4),
	    cmocka_unit_test(test_rewrite_rejected_and_marker),
	    cmocka_unit_test(test_rewrite_multicast_session),
	    cmocka_unit_test(test_rewrite_einval),
	};
	return cmocka_run_group_tests_name("sdp", tests, NULL, NULL);
}
