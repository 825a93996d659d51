/* rtp: header parsers for RTP and compound RTCP, the first-byte demux, and loss counting. */
#include <errno.h>

#include "rtp/rtp.h"

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum rtp_kind rtp_demux(const uint8_t *p, size_t len)
{
	if (len < 2)
		return RTP_KIND_OTHER;
	uint8_t b = p[0];
	if (b <= 3)
		return len >= 20 ? RTP_KIND_STUN : RTP_KIND_OTHER;
	if (b >= 16 && b <= 19)
		return RTP_KIND_ZRTP;
	if (b >= 20 && b <= 63)
		return RTP_KIND_DTLS;
	if (b >= 64 && b <= 79)
		return len >= 4 ? RTP_KIND_TURN_CHANNEL : RTP_KIND_OTHER;
	if (b >= 128 && b <= 191) {
		/* RFC 5761 4: PT 64..95 with the marker bit is the RTCP range */
		if (rtp_byte2_is_rtcp(p[1]))
			return len >= 8 ? RTP_KIND_RTCP : RTP_KIND_OTHER;
		return len >= 12 ? RTP_KIND_RTP : RTP_KIND_OTHER;
	}
	return RTP_KIND_OTHER;
}

const char *rtp_kind_name(enum rtp_kind k)
{
	switch (k) {
	case RTP_KIND_STUN:
		return "stun";
	case RTP_KIND_ZRTP:
		return "zrtp";
	case RTP_KIND_DTLS:
		return "dtls";
	case RTP_KIND_TURN_CHANNEL:
		return "turn-channel";
	case RTP_KIND_RTP:
		return "rtp";
	case RTP_KIND_RTCP:
		return "rtcp";
	case RTP_KIND_OTHER:
		break;
	}
	return "other";
}

int rtp_parse(struct rtp_hdr *h, const uint8_t *p, size_t len)
{
	if (len < 12 || (p[0] >> 6) != 2)
		return EBADMSG;
	uint8_t pt = p[1] & 0x7f;
	/* RFC 5761 4: these would collide with RTCP SR..APP on a muxed port */
	if (pt >= 64 && pt <= 95)
		return EBADMSG;
	h->padding = (p[0] & 0x20) != 0;
	h->extension = (p[0] & 0x10) != 0;
	h->csrc_count = p[0] & 0x0f;
	h->marker = (p[1] & 0x80) != 0;
	h->pt = pt;
	h->seq = get16(p + 2);
	h->ts = get32(p + 4);
	h->ssrc = get32(p + 8);
	size_t off = 12 + 4 * (size_t)h->csrc_count;
	if (off > len)
		return EBADMSG;
	if (h->extension) {
		/* RFC 3550 5.3.1: 16-bit profile, 16-bit length in 32-bit words */
		if (off + 4 > len)
			return EBADMSG;
		size_t words = get16(p + off + 2);
		off += 4 + 4 * words;
		if (off > len)
			return EBADMSG;
	}
	size_t pad = 0;
	if (h->padding) {
		/* the last octet counts the padding, itself included */
		pad = p[len - 1];
		if (pad == 0 || pad > len - off)
			return EBADMSG;
	}
	h->payload_off = off;
	h->payload_len = len - off - pad;
	return 0;
}

int rtcp_parse(struct rtcp_hdr *h, const uint8_t *p, size_t len)
{
	if (len < 8)
		return EBADMSG;
	size_t off = 0;
	unsigned n = 0;
	bool bye = false;
	while (off < len) {
		if (len - off < 4)
			return EBADMSG;
		const uint8_t *q = p + off;
		if ((q[0] >> 6) != 2 || !rtp_byte2_is_rtcp(q[1]))
			return EBADMSG;
		size_t plen = 4 * ((size_t)get16(q + 2) + 1);
		if (plen > len - off)
			return EBADMSG;
		/* RFC 3550 6.4.1: only the last packet of a compound may be padded */
		if ((q[0] & 0x20) && off + plen != len)
			return EBADMSG;
		if (n == 0) {
			if (plen < 8)
				return EBADMSG;
			h->pt = q[1];
			h->count = q[0] & 0x1f;
			h->ssrc = get32(q + 4);
		}
		if (q[1] == RTCP_BYE)
			bye = true;
		n++;
		off += plen;
	}
	h->packets = n;
	h->has_bye = bye;
	return 0;
}

uint32_t rtp_seq_update(struct rtp_seq *s, uint32_t ssrc, uint16_t seq)
{
	if (!s->init || s->ssrc != ssrc) {
		if (s->init)
			s->resyncs++;
		s->init = true;
		s->ssrc = ssrc;
		s->max_seq = seq;
		return 0;
	}
	uint16_t delta = (uint16_t)(seq - s->max_seq);
	if (delta == 0)
		return 0; /* duplicate */
	if (delta < RTP_SEQ_MAX_DROPOUT) {
		/* in order, maybe with a gap; wraps modulo 2^16 on its own */
		s->max_seq = seq;
		s->gaps += (uint32_t)delta - 1;
		return (uint32_t)delta - 1;
	}
	if (delta > 0x10000 - 100)
		return 0; /* late or reordered: counted when it was skipped */
	/* a jump too big to be loss: the source restarted its numbering */
	s->resyncs++;
	s->max_seq = seq;
	return 0;
}
