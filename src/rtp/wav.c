/* rtp: WAV (RIFF) reader and header writer for 8 kHz mono 16-bit PCM, the only kind the ua plays
 * and records.
 *
 * Here in the codec layer, not in core: it is a media format the ua and the
 * tests share, pure over bytes like the rest of rtp/ (the caller reads and
 * writes the file), and fuzzed with the other parsers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rtp/rtp.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static int fail(struct rtp_wav *w, int err, const char *why)
{
	snprintf(w->why, sizeof w->why, "%s", why);
	return err;
}

static const char *format_name(uint16_t f)
{
	switch (f) {
	case 3:
		return " (IEEE float)";
	case 6:
		return " (A-law)";
	case 7:
		return " (mu-law)";
	case 0xfffe:
		return " (extensible)";
	default:
		return "";
	}
}

int rtp_wav_parse(struct rtp_wav *w, const uint8_t *p, size_t len)
{
	memset(w, 0, sizeof *w);
	if (len < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WAVE", 4) != 0)
		return fail(w, EBADMSG, "not a RIFF/WAVE file");
	bool have_fmt = false;
	size_t off = 12;
	while (off + 8 <= len) {
		const uint8_t *c = p + off;
		uint32_t clen = le32(c + 4);
		size_t body = off + 8;
		if (memcmp(c, "fmt ", 4) == 0) {
			if (clen < 16 || clen > len - body)
				return fail(w, EBADMSG, "fmt chunk truncated");
			w->format = le16(c + 8);
			w->channels = le16(c + 10);
			w->rate = le32(c + 12);
			w->bits = le16(c + 22);
			have_fmt = true;
		} else if (memcmp(c, "data", 4) == 0) {
			if (!have_fmt)
				return fail(w, EBADMSG, "data chunk before fmt chunk");
			break;
		}
		/* RIFF chunks are padded to an even length */
		if (clen > len - body)
			return fail(w, EBADMSG, "chunk runs past the end of the file");
		off = body + clen + (clen & 1);
	}
	if (!have_fmt)
		return fail(w, EBADMSG, "no fmt chunk");
	if (off + 8 > len)
		return fail(w, EBADMSG, "no data chunk");
	if (w->format != 1) {
		snprintf(w->why, sizeof w->why, "audio format %u%s, want 1 (PCM)", w->format,
			 format_name(w->format));
		return ENOTSUP;
	}
	if (w->channels != 1) {
		snprintf(w->why, sizeof w->why, "%u channels, want 1 (mono)", w->channels);
		return ENOTSUP;
	}
	if (w->rate != RTP_RATE) {
		snprintf(w->why, sizeof w->why, "%u Hz, want 8000 Hz", (unsigned)w->rate);
		return ENOTSUP;
	}
	if (w->bits != 16) {
		snprintf(w->why, sizeof w->why, "%u bits per sample, want 16", w->bits);
		return ENOTSUP;
	}
	uint32_t dlen = le32(p + off + 4);
	w->data_off = off + 8;
	/* a recording cut short (or a streaming writer's 0 / 0xffffffff):
	 * what is there */
	size_t avail = len - w->data_off;
	w->data_len = (dlen == 0 || dlen > avail) ? avail : dlen;
	w->data_len &= ~(size_t)1;
	return 0;
}

int16_t rtp_wav_sample(const struct rtp_wav *w, const uint8_t *p, size_t i)
{
	return (int16_t)le16(p + w->data_off + 2 * i);
}

void rtp_wav_header(uint8_t out[RTP_WAV_HDR_LEN], uint32_t samples)
{
	uint32_t bytes = samples > (UINT32_MAX - 36) / 2 ? (UINT32_MAX - 36) & ~1u : samples * 2;
	memcpy(out, "RIFF", 4);
	put_le32(out + 4, 36 + bytes);
	memcpy(out + 8, "WAVEfmt ", 8);
	put_le32(out + 16, 16);
	put_le16(out + 20, 1); /* PCM */
	put_le16(out + 22, 1); /* mono */
	put_le32(out + 24, RTP_RATE);
	put_le32(out + 28, RTP_RATE * 2); /* byte rate */
	put_le16(out + 32, 2);		  /* block align */
	put_le16(out + 34, 16);
	memcpy(out + 36, "data", 4);
	put_le32(out + 40, bytes);
}
