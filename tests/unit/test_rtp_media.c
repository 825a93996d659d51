/* Unit tests of the media codecs: G.711, tones, RTCP reports, receiver statistics (RFC 3550 A.1/A.3/A.8), RTT, WAV. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtp/rtp.h"

static void test_g711_known(void **state)
{
	(void)state;
	/* mu-law: zero is 0xff, the extremes 0x80 / 0x00 decode to +-32124 */
	assert_int_equal(rtp_ulaw_encode(0), 0xff);
	assert_int_equal(rtp_ulaw_decode(0xff), 0);
	assert_int_equal(rtp_ulaw_decode(0x7f), 0); /* "negative zero" */
	assert_int_equal(rtp_ulaw_decode(0x80), 32124);
	assert_int_equal(rtp_ulaw_decode(0x00), -32124);
	assert_int_equal(rtp_ulaw_encode(32767), 0x80);
	assert_int_equal(rtp_ulaw_encode(-32768), 0x00);
	assert_int_equal(rtp_ulaw_encode(1000), 0xce);
	assert_int_equal(rtp_ulaw_decode(0xce), 988);
	/* A-law: zero is 0xd5 (decodes to +8), the extremes 0xaa / 0x2a */
	assert_int_equal(rtp_alaw_encode(0), 0xd5);
	assert_int_equal(rtp_alaw_decode(0xd5), 8);
	assert_int_equal(rtp_alaw_decode(0x55), -8);
	assert_int_equal(rtp_alaw_decode(0xaa), 32256);
	assert_int_equal(rtp_alaw_decode(0x2a), -32256);
	assert_int_equal(rtp_alaw_encode(32767), 0xaa);
	assert_int_equal(rtp_alaw_encode(-32768), 0x2a);
	assert_int_equal(rtp_alaw_encode(1000), 0xfa);
	assert_int_equal(rtp_alaw_decode(0xfa), 1008);
}

static void test_g711_roundtrip(void **state)
{
	(void)state;
	/* every code decodes to a value that encodes back to a code of the
	 * same value, and the quantiser is monotonic over the whole range */
	for (int c = 0; c < 256; c++) {
		int16_t u = rtp_ulaw_decode((uint8_t)c), a = rtp_alaw_decode((uint8_t)c);
		assert_int_equal(rtp_ulaw_decode(rtp_ulaw_encode(u)), u);
		assert_int_equal(rtp_alaw_decode(rtp_alaw_encode(a)), a);
	}
	int16_t pu = -32768, pa = -32768;
	for (int s = -32768; s <= 32767; s += 7) {
		int16_t u = rtp_ulaw_decode(rtp_ulaw_encode((int16_t)s));
		int16_t a = rtp_alaw_decode(rtp_alaw_encode((int16_t)s));
		assert_true(u >= pu);
		assert_true(a >= pa);
		/* the error stays within half a step of the segment (<= 1/32 + bias) */
		assert_true(abs(u - s) <= 1024 || abs(s) > 32124);
		pu = u;
		pa = a;
	}
	int16_t in[4] = {0, 1000, -1000, 32767};
	uint8_t enc[4];
	int16_t dec[4];
	assert_int_equal(rtp_g711_encode(RTP_PT_PCMA, in, 4, enc), 0);
	assert_int_equal(enc[1], 0xfa);
	assert_int_equal(rtp_g711_decode(RTP_PT_PCMA, enc, 4, dec), 0);
	assert_int_equal(dec[1], 1008);
	assert_int_equal(rtp_g711_encode(RTP_PT_PCMU, in, 4, enc), 0);
	assert_int_equal(enc[0], 0xff);
	assert_int_equal(rtp_g711_encode(9, in, 4, enc), EINVAL); /* G.722 is not ours */
	assert_string_equal(rtp_g711_name(8), "PCMA");
	assert_null(rtp_g711_name(18));
}

static void test_tone(void **state)
{
	(void)state;
	struct rtp_tone t;
	assert_int_equal(rtp_tone_init(&t, 4000, 100), EINVAL); /* Nyquist */
	assert_int_equal(rtp_tone_init(&t, 1000, 10000), 0);
	int16_t f[2][RTP_FRAME_SAMPLES];
	rtp_tone_fill(&t, f[0], RTP_FRAME_SAMPLES);
	rtp_tone_fill(&t, f[1], RTP_FRAME_SAMPLES);
	/* 1 kHz at 8 kHz: eight samples per period */
	static const int16_t period[8] = {0, 7071, 10000, 7071, 0, -7071, -10000, -7071};
	for (int i = 0; i < 8; i++)
		assert_int_equal(f[0][i], period[i]);
	/* 160 samples are 20 whole periods: the next frame starts in phase */
	for (int i = 0; i < RTP_FRAME_SAMPLES; i++)
		assert_true(abs(f[1][i] - f[0][i]) <= 1);
	assert_int_equal(rtp_tone_init(&t, 400, 8000), 0);
	int16_t g[RTP_FRAME_SAMPLES];
	rtp_tone_fill(&t, g, RTP_FRAME_SAMPLES);
	int16_t peak = 0;
	for (int i = 0; i < RTP_FRAME_SAMPLES; i++)
		peak = g[i] > peak ? g[i] : peak;
	assert_int_equal(peak, 8000); /* 400 Hz: a sample falls on the crest */
}

/* An SR with one block and CNAME "ab", byte for byte (RFC 3550 6.4.1, 6.5). */
static const uint8_t sr_bytes[] = {
	0x81, 200,  0x00, 0x0c, 0x11, 0x22, 0x33, 0x44,		/* SR, RC 1, 13 words */
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,		/* NTP */
	0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x00, 0x00, 0x05,		/* RTP ts, packets */
	0x00, 0x00, 0x03, 0x20,					/* octets */
	0xaa, 0xbb, 0xcc, 0xdd, 0x40, 0xff, 0xff, 0xff,		/* block: ssrc, 1/4, -1 */
	0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x0c,		/* ext max, jitter */
	0x03, 0x04, 0x05, 0x06, 0x00, 0x01, 0x00, 0x00,		/* LSR, DLSR */
	0x81, 202,  0x00, 0x03, 0x11, 0x22, 0x33, 0x44,		/* SDES, one chunk */
	0x01, 0x02, 'a',  'b',	0x00, 0x00, 0x00, 0x00,		/* CNAME "ab", end, pad */
};

static void test_rtcp_known_bytes(void **state)
{
	(void)state;
	struct rtcp_report r;
	memset(&r, 0, sizeof r);
	r.sr = true;
	r.ssrc = 0x11223344;
	r.ntp = 0x0102030405060708ull;
	r.rtp_ts = 0x0a0b0c0d;
	r.packets = 5;
	r.octets = 800;
	r.n_blocks = 1;
	r.blocks[0] = (struct rtcp_block){.ssrc = 0xaabbccdd,
					  .fraction_lost = 0x40,
					  .cum_lost = -1,
					  .ext_max_seq = 0x00010005,
					  .jitter = 12,
					  .lsr = 0x03040506,
					  .dlsr = 0x00010000};
	uint8_t out[256];
	size_t len = 0;
	assert_int_equal(rtcp_report_build(&r, "ab", out, sizeof out, &len), 0);
	assert_int_equal(len, sizeof sr_bytes);
	assert_memory_equal(out, sr_bytes, sizeof sr_bytes);
	assert_int_equal(rtcp_report_build(&r, "ab", out, len - 1, &len), ENOSPC);

	struct rtcp_report p;
	assert_int_equal(rtcp_report_parse(&p, sr_bytes, sizeof sr_bytes), 0);
	assert_true(p.sr);
	assert_int_equal(p.ssrc, 0x11223344);
	assert_true(p.ntp == 0x0102030405060708ull);
	assert_int_equal(p.packets, 5);
	assert_int_equal(p.octets, 800);
	assert_int_equal(p.n_blocks, 1);
	assert_int_equal(p.blocks[0].cum_lost, -1);
	assert_int_equal(p.blocks[0].fraction_lost, 0x40);
	assert_int_equal(p.blocks[0].lsr, 0x03040506);
	assert_string_equal(p.cname, "ab");
	assert_false(p.bye);
	assert_non_null(rtcp_report_block_for(&p, 0xaabbccdd));
	assert_null(rtcp_report_block_for(&p, 0x11223344));
	/* the compound is also what the demux calls RTCP (rtcp-mux) */
	assert_int_equal(rtp_demux(out, sizeof sr_bytes), RTP_KIND_RTCP);
}

static void test_rtcp_roundtrip(void **state)
{
	(void)state;
	/* an RR with 31 blocks, reduced size (no SDES), then a BYE */
	struct rtcp_report r, p;
	memset(&r, 0, sizeof r);
	r.ssrc = 7;
	r.bye = true;
	r.n_blocks = RTCP_MAX_BLOCKS;
	for (unsigned i = 0; i < r.n_blocks; i++)
		r.blocks[i] = (struct rtcp_block){.ssrc = 100 + i,
						  .cum_lost = (int32_t)i * 1000 - 5000,
						  .ext_max_seq = 65536 * i + 3,
						  .jitter = i,
						  .fraction_lost = (uint8_t)i};
	r.blocks[3].cum_lost = 0x7fffff + 10; /* clamps to 24 bits */
	uint8_t out[1024];
	size_t len;
	assert_int_equal(rtcp_report_build(&r, NULL, out, sizeof out, &len), 0);
	assert_int_equal(len, 8 + 24 * 31 + 8);
	assert_int_equal(rtcp_report_parse(&p, out, len), 0);
	assert_false(p.sr);
	assert_true(p.bye);
	assert_int_equal(p.ssrc, 7);
	assert_int_equal(p.n_blocks, 31);
	for (unsigned i = 0; i < 31; i++) {
		assert_int_equal(p.blocks[i].ssrc, 100 + i);
		assert_int_equal(p.blocks[i].ext_max_seq, 65536 * i + 3);
		if (i != 3)
			assert_int_equal(p.blocks[i].cum_lost, (int32_t)i * 1000 - 5000);
	}
	assert_int_equal(p.blocks[3].cum_lost, 0x7fffff);
	assert_string_equal(p.cname, "");
	r.n_blocks = 32;
	assert_int_equal(rtcp_report_build(&r, NULL, out, sizeof out, &len), EINVAL);
	/* CNAME lengths around the word boundary all parse back */
	char cname[RTCP_CNAME_MAX + 1];
	for (size_t l = 1; l <= RTCP_CNAME_MAX; l += 1) {
		memset(cname, 'x', l);
		cname[l] = '\0';
		r.n_blocks = 0;
		r.bye = false;
		assert_int_equal(rtcp_report_build(&r, cname, out, sizeof out, &len), 0);
		assert_int_equal(len % 4, 0);
		assert_int_equal(rtcp_report_parse(&p, out, len), 0);
		assert_string_equal(p.cname, cname);
	}
	/* broken: a length that does not add up */
	out[3] ^= 1;
	assert_int_equal(rtcp_report_parse(&p, out, len), EBADMSG);
}

static void feed(struct rtp_recv *s, uint16_t seq, uint32_t arrival)
{
	rtp_recv_update(s, 0x5eed, seq, (uint32_t)seq * 160, arrival);
}

static void test_stats_loss_reorder(void **state)
{
	(void)state;
	struct rtp_recv s;
	memset(&s, 0, sizeof s);
	/* A.1 probation: the first packet of a new source is not yet counted */
	feed(&s, 1000, 0);
	assert_int_equal(s.received, 0);
	assert_int_equal(rtp_recv_expected(&s), 0);
	for (uint16_t q = 1001; q < 1100; q++)
		feed(&s, q, (uint32_t)q * 160);
	assert_int_equal(s.received, 99);
	assert_int_equal(rtp_recv_expected(&s), 99);
	assert_int_equal(rtp_recv_lost(&s), 0);
	struct rtcp_block b;
	rtp_recv_block(&s, 0, 0, &b);
	assert_int_equal(b.fraction_lost, 0);
	assert_int_equal(b.ext_max_seq, 1099);
	/* 100 more, 10 of them lost, two swapped, one duplicated */
	for (uint16_t q = 1100; q < 1200; q++) {
		if (q % 10 == 3)
			continue;
		if (q == 1150 || q == 1151)
			continue;
		feed(&s, q, (uint32_t)q * 160);
		if (q == 1152) {
			feed(&s, 1151, 1151 * 160); /* late */
			feed(&s, 1150, 1150 * 160);
		}
	}
	feed(&s, 1160, 1160 * 160); /* duplicate: counts, so lost goes down */
	assert_int_equal(rtp_recv_expected(&s), 199);
	assert_int_equal(rtp_recv_lost(&s), 10 - 1);
	rtp_recv_block(&s, 0, 0, &b);
	assert_int_equal(b.cum_lost, 9);
	/* interval: 100 expected, 91 received: 9/100 * 256 = 23 */
	assert_int_equal(b.fraction_lost, 23);
	rtp_recv_block(&s, 0, 0, &b); /* nothing new: the fraction is 0 */
	assert_int_equal(b.fraction_lost, 0);
	assert_int_equal(s.restarts, 0);
}

static void test_stats_wrap_restart(void **state)
{
	(void)state;
	struct rtp_recv s;
	memset(&s, 0, sizeof s);
	uint16_t q = 65500;
	for (int i = 0; i < 100; i++, q++)
		feed(&s, q, (uint32_t)i * 160);
	/* 65500..65535, 0..63: one wrap */
	assert_int_equal(s.cycles, 65536);
	assert_int_equal(rtp_recv_ext_max(&s), 65536 + 63);
	assert_int_equal(rtp_recv_lost(&s), 0);
	assert_int_equal(s.received, 99);
	/* a lone packet far ahead is a stray, not 20,000 lost */
	feed(&s, 20000, 0);
	assert_int_equal(s.strays, 1);
	feed(&s, 64, 0);
	assert_int_equal(rtp_recv_lost(&s), 0);
	assert_int_equal(rtp_recv_ext_max(&s), 65536 + 64);
	/* a jump followed by its successor is a restart (A.1): counts anew */
	feed(&s, 30000, 0);
	feed(&s, 30001, 0);
	assert_int_equal(s.restarts, 1);
	assert_int_equal(rtp_recv_ext_max(&s), 30001);
	assert_int_equal(rtp_recv_expected(&s), 1);
	assert_int_equal(rtp_recv_lost(&s), 0);
	/* a new SSRC restarts too, with probation */
	assert_false(rtp_recv_update(&s, 0xbeef, 5, 0, 0));
	assert_true(rtp_recv_update(&s, 0xbeef, 6, 160, 160));
	assert_int_equal(s.restarts, 2);
	assert_int_equal(s.ssrc, 0xbeef);
	assert_int_equal(s.received, 1);
}

static void test_stats_jitter(void **state)
{
	(void)state;
	struct rtp_recv s;
	memset(&s, 0, sizeof s);
	/* steady 20 ms spacing: no jitter */
	for (uint16_t q = 0; q < 100; q++)
		feed(&s, q, 5000 + (uint32_t)q * 160);
	assert_int_equal(rtp_recv_jitter(&s), 0);
	/* every other packet 10 ms late (80 units): |D| = 80 each time, and
	 * J converges to 80 (A.8) */
	memset(&s, 0, sizeof s);
	for (uint16_t q = 0; q < 400; q++)
		feed(&s, q, (uint32_t)q * 160 + (q & 1) * 80);
	assert_in_range(rtp_recv_jitter(&s), 78, 80);
	/* timestamps wrapping through 2^32 change nothing */
	memset(&s, 0, sizeof s);
	for (uint32_t i = 0; i < 100; i++)
		rtp_recv_update(&s, 1, (uint16_t)i, 0xffffff00u + i * 160, i * 160 + 7);
	assert_int_equal(rtp_recv_jitter(&s), 0);
}

static void test_rtt(void **state)
{
	(void)state;
	uint64_t t0 = 1700000000123456ull; /* Unix us */
	uint64_t ntp = rtcp_ntp_from_unix_us(t0);
	assert_true((ntp >> 32) == 1700000000ull + 2208988800ull);
	/* the far end held our SR 500 ms, the answer came 100 ms after that
	 * plus 500: RTT 100 ms */
	uint32_t lsr = rtcp_ntp_mid32(ntp);
	uint32_t dlsr = rtcp_dlsr(500000);
	assert_int_equal(dlsr, 32768);
	uint32_t now = rtcp_ntp_mid32(rtcp_ntp_from_unix_us(t0 + 600000));
	uint32_t ms = 0;
	assert_true(rtcp_rtt_ms(now, lsr, dlsr, &ms));
	assert_in_range(ms, 99, 101);
	/* no SR received yet */
	assert_false(rtcp_rtt_ms(now, 0, 0, &ms));
	/* a DLSR longer than the wait: negative, not 18 hours */
	assert_false(rtcp_rtt_ms(now, lsr, rtcp_dlsr(700000), &ms));
	/* across the 16-bit seconds wrap of the mid 32 bits */
	assert_true(rtcp_rtt_ms(0x00001000u, 0xfffff000u, 0, &ms));
	assert_int_equal(ms, 125); /* 0x2000 / 65536 s */
}

static void test_wav_roundtrip(void **state)
{
	(void)state;
	size_t n = 400;
	uint8_t *f = malloc(RTP_WAV_HDR_LEN + 2 * n);
	assert_non_null(f);
	rtp_wav_header(f, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		int16_t v = (int16_t)(i * 150 - 30000);
		f[RTP_WAV_HDR_LEN + 2 * i] = (uint8_t)v;
		f[RTP_WAV_HDR_LEN + 2 * i + 1] = (uint8_t)((uint16_t)v >> 8);
	}
	struct rtp_wav w;
	assert_int_equal(rtp_wav_parse(&w, f, RTP_WAV_HDR_LEN + 2 * n), 0);
	assert_int_equal(w.data_off, 44);
	assert_int_equal(w.data_len, 2 * n);
	assert_int_equal(w.rate, 8000);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rtp_wav_sample(&w, f, i), (int16_t)(i * 150 - 30000));
	/* cut short: what is there, whole samples only */
	assert_int_equal(rtp_wav_parse(&w, f, RTP_WAV_HDR_LEN + 101), 0);
	assert_int_equal(w.data_len, 100);
	free(f);
}

/* A header with a given format and an odd-sized LIST chunk before data. */
static size_t make_wav(uint8_t *out, uint16_t format, uint16_t channels, uint32_t rate,
		       uint16_t bits)
{
	rtp_wav_header(out, 0);
	out[20] = (uint8_t)format;
	out[21] = (uint8_t)(format >> 8);
	out[22] = (uint8_t)channels;
	out[24] = (uint8_t)rate;
	out[25] = (uint8_t)(rate >> 8);
	out[26] = (uint8_t)(rate >> 16);
	out[34] = (uint8_t)bits;
	/* move data after a LIST chunk of 3 bytes (+1 pad) */
	memcpy(out + 36, "LIST\x03\x00\x00\x00xyz\x00", 12);
	memcpy(out + 48, "data\x04\x00\x00\x00\x01\x00\x02\x00", 12);
	return 60;
}

static void test_wav_bad(void **state)
{
	(void)state;
	uint8_t f[64];
	struct rtp_wav w;
	size_t l = make_wav(f, 1, 1, 8000, 16);
	assert_int_equal(rtp_wav_parse(&w, f, l), 0);
	assert_int_equal(w.data_off, 56);
	assert_int_equal(w.data_len, 4);
	assert_int_equal(rtp_wav_sample(&w, f, 1), 2);

	l = make_wav(f, 1, 2, 8000, 16);
	assert_int_equal(rtp_wav_parse(&w, f, l), ENOTSUP);
	assert_string_equal(w.why, "2 channels, want 1 (mono)");
	l = make_wav(f, 1, 1, 44100, 16);
	assert_int_equal(rtp_wav_parse(&w, f, l), ENOTSUP);
	assert_string_equal(w.why, "44100 Hz, want 8000 Hz");
	l = make_wav(f, 3, 1, 8000, 32);
	assert_int_equal(rtp_wav_parse(&w, f, l), ENOTSUP);
	assert_string_equal(w.why, "audio format 3 (IEEE float), want 1 (PCM)");
	l = make_wav(f, 1, 1, 8000, 8);
	assert_int_equal(rtp_wav_parse(&w, f, l), ENOTSUP);
	assert_string_equal(w.why, "8 bits per sample, want 16");
	l = make_wav(f, 7, 1, 8000, 8);
	assert_int_equal(rtp_wav_parse(&w, f, l), ENOTSUP);
	assert_string_equal(w.why, "audio format 7 (mu-law), want 1 (PCM)");

	assert_int_equal(rtp_wav_parse(&w, (const uint8_t *)"RIFX\0\0\0\0WAVE", 12), EBADMSG);
	assert_string_equal(w.why, "not a RIFF/WAVE file");
	assert_int_equal(rtp_wav_parse(&w, f, 8), EBADMSG);
	l = make_wav(f, 1, 1, 8000, 16);
	assert_int_equal(rtp_wav_parse(&w, f, 30), EBADMSG); /* fmt cut */
	assert_string_equal(w.why, "fmt chunk truncated");
	f[40] = 0xff; /* LIST says it is 255 bytes */
	assert_int_equal(rtp_wav_parse(&w, f, l), EBADMSG);
	assert_string_equal(w.why, "chunk runs past the end of the file");
	rtp_wav_header(f, 0);
	memcpy(f + 12, "data", 4); /* data first */
	assert_int_equal(rtp_wav_parse(&w, f, 44), EBADMSG);
	assert_string_equal(w.why, "data chunk before fmt chunk");
	rtp_wav_header(f, 0);
	assert_int_equal(rtp_wav_parse(&w, f, 36), EBADMSG);
	assert_string_equal(w.why, "no data chunk");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_g711_known),	       cmocka_unit_test(test_g711_roundtrip),
	    cmocka_unit_test(test_tone),	       cmocka_unit_test(test_rtcp_known_bytes),
	    cmocka_unit_test(test_rtcp_roundtrip),     cmocka_unit_test(test_stats_loss_reorder),
	    cmocka_unit_test(test_stats_wrap_restart), cmocka_unit_test(test_stats_jitter),
	    cmocka_unit_test(test_rtt),		       cmocka_unit_test(test_wav_roundtrip),
	    cmocka_unit_test(test_wav_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
