/* Unit tests of the RTP/RTCP codec: demux by first byte, header parsing, sequence gaps. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rtp/rtp.h"

/* V=2, PT 0 (PCMU), seq 0x1234, ts 0x01020304, SSRC 0xdeadbeef, 4 bytes payload */
static const uint8_t pcmu[] = {0x80, 0x00, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04,
			       0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff};

/* RR with no report blocks (8 bytes) + SDES with one CNAME chunk (12 bytes) */
static const uint8_t rr_sdes[] = {0x80, 201,  0x00, 0x01, 0x11, 0x22, 0x33, 0x44, 0x81, 202,
				  0x00, 0x02, 0x11, 0x22, 0x33, 0x44, 0x01, 0x01, 'a',	0x00};

static void test_demux(void **state)
{
	(void)state;
	uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
	assert_int_equal(rtp_demux(stun, sizeof stun), RTP_KIND_STUN);
	assert_int_equal(rtp_demux(stun, 10), RTP_KIND_OTHER); /* too short for STUN */
	assert_int_equal(rtp_demux(pcmu, sizeof pcmu), RTP_KIND_RTP);
	assert_int_equal(rtp_demux(rr_sdes, sizeof rr_sdes), RTP_KIND_RTCP);
	uint8_t dtls[13] = {22, 0xfe, 0xfd};
	assert_int_equal(rtp_demux(dtls, sizeof dtls), RTP_KIND_DTLS);
	uint8_t zrtp[12] = {0x10};
	assert_int_equal(rtp_demux(zrtp, sizeof zrtp), RTP_KIND_ZRTP);
	uint8_t chan[8] = {0x40, 0x00, 0x00, 0x04};
	assert_int_equal(rtp_demux(chan, sizeof chan), RTP_KIND_TURN_CHANNEL);
	uint8_t junk[16] = {0xff};
	assert_int_equal(rtp_demux(junk, sizeof junk), RTP_KIND_OTHER);
	assert_int_equal(rtp_demux(pcmu, 1), RTP_KIND_OTHER);
	/* RFC 5761 4: RTP with the marker bit and PT 72..76 would be SR..APP */
	assert_true(rtp_byte2_is_rtcp(200));
	assert_true(rtp_byte2_is_rtcp(0x80 | 64));
	assert_false(rtp_byte2_is_rtcp(0x80 | 96)); /* dynamic PT 96 with marker */
	assert_false(rtp_byte2_is_rtcp(8));
	assert_string_equal(rtp_kind_name(RTP_KIND_RTCP), "rtcp");
}

static void test_rtp_parse(void **state)
{
	(void)state;
	struct rtp_hdr h;
	assert_int_equal(rtp_parse(&h, pcmu, sizeof pcmu), 0);
	assert_int_equal(h.pt, 0);
	assert_int_equal(h.seq, 0x1234);
	assert_int_equal(h.ts, 0x01020304);
	assert_int_equal(h.ssrc, 0xdeadbeef);
	assert_int_equal(h.payload_off, 12);
	assert_int_equal(h.payload_len, 4);
	assert_false(h.marker);

	uint8_t p[64];
	/* CSRC count 2, extension of one word, padding 3 */
	memset(p, 0, sizeof p);
	p[0] = 0x80 | 0x20 | 0x10 | 2;
	p[1] = 0x80 | 101; /* marker, telephone-event */
	size_t len = 12 + 8 + 4 + 4 + 10 + 3;
	p[12 + 8 + 2] = 0;
	p[12 + 8 + 3] = 1; /* extension length 1 word */
	p[len - 1] = 3;
	assert_int_equal(rtp_parse(&h, p, len), 0);
	assert_true(h.marker && h.padding && h.extension);
	assert_int_equal(h.pt, 101);
	assert_int_equal(h.csrc_count, 2);
	assert_int_equal(h.payload_off, 28);
	assert_int_equal(h.payload_len, 10);

	/* broken ones */
	assert_int_equal(rtp_parse(&h, pcmu, 11), EBADMSG);
	uint8_t v1[12];
	memcpy(v1, pcmu, 12);
	v1[0] = 0x40;
	assert_int_equal(rtp_parse(&h, v1, 12), EBADMSG); /* version 1 */
	v1[0] = 0x8f;					  /* 15 CSRCs, none there */
	assert_int_equal(rtp_parse(&h, v1, 12), EBADMSG);
	v1[0] = 0x90; /* extension header missing */
	assert_int_equal(rtp_parse(&h, v1, 12), EBADMSG);
	v1[0] = 0xa0; /* padding count 0xef > payload */
	uint8_t pad[13];
	memcpy(pad, v1, 12);
	pad[12] = 0xef;
	assert_int_equal(rtp_parse(&h, pad, 13), EBADMSG);
	pad[12] = 0;
	assert_int_equal(rtp_parse(&h, pad, 13), EBADMSG); /* padding count 0 */
	memcpy(v1, pcmu, 12);
	v1[1] = 72; /* PT 72 = SR's range without marker: forbidden (RFC 5761 4) */
	assert_int_equal(rtp_parse(&h, v1, 12), EBADMSG);
}

static void test_rtcp_parse(void **state)
{
	(void)state;
	struct rtcp_hdr h;
	assert_int_equal(rtcp_parse(&h, rr_sdes, sizeof rr_sdes), 0);
	assert_int_equal(h.pt, RTCP_RR);
	assert_int_equal(h.ssrc, 0x11223344);
	assert_int_equal(h.packets, 2);
	assert_false(h.has_bye);

	/* a BYE alone (reduced size, RFC 5506) */
	const uint8_t bye[] = {0x81, 203, 0x00, 0x01, 0xaa, 0xbb, 0xcc, 0xdd};
	assert_int_equal(rtcp_parse(&h, bye, sizeof bye), 0);
	assert_true(h.has_bye);
	assert_int_equal(h.count, 1);

	/* lengths that do not add up */
	assert_int_equal(rtcp_parse(&h, rr_sdes, sizeof rr_sdes - 1), EBADMSG);
	uint8_t extra[sizeof rr_sdes + 4];
	memcpy(extra, rr_sdes, sizeof rr_sdes);
	memset(extra + sizeof rr_sdes, 0, 4);
	assert_int_equal(rtcp_parse(&h, extra, sizeof extra), EBADMSG);
	/* padding on a packet that is not the last */
	uint8_t padded[sizeof rr_sdes];
	memcpy(padded, rr_sdes, sizeof rr_sdes);
	padded[0] |= 0x20;
	assert_int_equal(rtcp_parse(&h, padded, sizeof padded), EBADMSG);
	/* PT out of range in the second packet */
	memcpy(padded, rr_sdes, sizeof rr_sdes);
	padded[9] = 100;
	assert_int_equal(rtcp_parse(&h, padded, sizeof padded), EBADMSG);
	assert_int_equal(rtcp_parse(&h, bye, 4), EBADMSG);
}

static void test_seq(void **state)
{
	(void)state;
	struct rtp_seq s;
	memset(&s, 0, sizeof s);
	assert_int_equal(rtp_seq_update(&s, 1, 100), 0);
	assert_int_equal(rtp_seq_update(&s, 1, 101), 0);
	assert_int_equal(rtp_seq_update(&s, 1, 104), 2); /* 102, 103 lost */
	assert_int_equal(rtp_seq_update(&s, 1, 103), 0); /* late: not counted again */
	assert_int_equal(rtp_seq_update(&s, 1, 104), 0); /* duplicate */
	assert_int_equal(s.gaps, 2);
	/* wrap around 65535 -> 0 */
	assert_int_equal(rtp_seq_update(&s, 1, 65534), 0); /* huge jump: resync */
	assert_int_equal(s.resyncs, 1);
	assert_int_equal(rtp_seq_update(&s, 1, 65535), 0);
	assert_int_equal(rtp_seq_update(&s, 1, 1), 1); /* 0 lost across the wrap */
	assert_int_equal(s.gaps, 3);
	/* a new SSRC starts over */
	assert_int_equal(rtp_seq_update(&s, 2, 5000), 0);
	assert_int_equal(s.resyncs, 2);
	assert_int_equal(s.gaps, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_demux),
	    cmocka_unit_test(test_rtp_parse),
	    cmocka_unit_test(test_rtcp_parse),
	    cmocka_unit_test(test_seq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
