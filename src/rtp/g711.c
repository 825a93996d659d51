/* rtp: G.711 mu-law and A-law (ITU-T G.711), the tone generator, and the RTP header writer. */
#include <errno.h>
#include <math.h>

#include "rtp/rtp.h"

/* mu-law: a sign, a 3-bit segment (exponent) and a 4-bit step, inverted on
 * the wire. Magnitudes are biased by 132 so that segment boundaries fall on
 * powers of two; the largest is 32635 (decodes to 32124). */
#define ULAW_BIAS 0x84
#define ULAW_CLIP 32635

uint8_t rtp_ulaw_encode(int16_t s)
{
	int v = s;
	uint8_t sign = 0;
	if (v < 0) {
		v = -v;
		sign = 0x80;
	}
	if (v > ULAW_CLIP)
		v = ULAW_CLIP;
	v += ULAW_BIAS;
	unsigned seg = 0;
	for (int t = v >> 8; t > 0 && seg < 7; t >>= 1)
		seg++;
	uint8_t step = (uint8_t)((v >> (seg + 3)) & 0x0f);
	return (uint8_t) ~(sign | (uint8_t)(seg << 4) | step);
}

int16_t rtp_ulaw_decode(uint8_t u)
{
	u = (uint8_t)~u;
	int t = (((u & 0x0f) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
	return (int16_t)((u & 0x80) ? ULAW_BIAS - t : t - ULAW_BIAS);
}

/* A-law: 13-bit magnitude, segment 0 and 1 share a step size; even bits
 * inverted on the wire (XOR 0x55), sign bit set for positive values. */
uint8_t rtp_alaw_encode(int16_t s)
{
	int v = s >> 3; /* 13 bits */
	uint8_t mask;
	if (v >= 0) {
		mask = 0xd5;
	} else {
		mask = 0x55;
		v = -v - 1;
	}
	unsigned seg = 0;
	for (int t = v >> 5; t > 0; t >>= 1)
		seg++;
	if (seg >= 8)
		return (uint8_t)(0x7f ^ mask);
	uint8_t a = (uint8_t)(seg << 4);
	a |= (uint8_t)((seg < 2 ? v >> 1 : v >> seg) & 0x0f);
	return (uint8_t)(a ^ mask);
}

int16_t rtp_alaw_decode(uint8_t a)
{
	a ^= 0x55;
	int t = (a & 0x0f) << 4;
	unsigned seg = (a & 0x70) >> 4;
	if (seg == 0)
		t += 8;
	else
		t = (t + 0x108) << (seg - 1);
	return (int16_t)((a & 0x80) ? t : -t);
}

int rtp_g711_encode(uint8_t pt, const int16_t *in, size_t n, uint8_t *out)
{
	if (pt != RTP_PT_PCMU && pt != RTP_PT_PCMA)
		return EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = pt == RTP_PT_PCMU ? rtp_ulaw_encode(in[i]) : rtp_alaw_encode(in[i]);
	return 0;
}

int rtp_g711_decode(uint8_t pt, const uint8_t *in, size_t n, int16_t *out)
{
	if (pt != RTP_PT_PCMU && pt != RTP_PT_PCMA)
		return EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = pt == RTP_PT_PCMU ? rtp_ulaw_decode(in[i]) : rtp_alaw_decode(in[i]);
	return 0;
}

const char *rtp_g711_name(uint8_t pt)
{
	return pt == RTP_PT_PCMU ? "PCMU" : pt == RTP_PT_PCMA ? "PCMA" : NULL;
}

int rtp_tone_init(struct rtp_tone *t, unsigned hz, int amplitude)
{
	if (hz == 0 || hz >= RTP_RATE / 2 || amplitude < 0 || amplitude > 32767)
		return EINVAL;
	t->phase = 0;
	t->step = 2.0 * M_PI * hz / RTP_RATE;
	t->amplitude = amplitude;
	return 0;
}

void rtp_tone_fill(struct rtp_tone *t, int16_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		out[i] = (int16_t)lrint(t->amplitude * sin(t->phase));
		t->phase += t->step;
		if (t->phase >= 2.0 * M_PI) /* keep it small: no drift over hours */
			t->phase -= 2.0 * M_PI;
	}
}

void rtp_hdr_write(uint8_t out[12], const struct rtp_hdr *h)
{
	out[0] = 0x80;
	out[1] = (uint8_t)((h->marker ? 0x80 : 0) | (h->pt & 0x7f));
	out[2] = (uint8_t)(h->seq >> 8);
	out[3] = (uint8_t)h->seq;
	out[4] = (uint8_t)(h->ts >> 24);
	out[5] = (uint8_t)(h->ts >> 16);
	out[6] = (uint8_t)(h->ts >> 8);
	out[7] = (uint8_t)h->ts;
	out[8] = (uint8_t)(h->ssrc >> 24);
	out[9] = (uint8_t)(h->ssrc >> 16);
	out[10] = (uint8_t)(h->ssrc >> 8);
	out[11] = (uint8_t)h->ssrc;
}
