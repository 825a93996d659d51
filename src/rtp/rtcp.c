/* rtp: RTCP sender and receiver reports (RFC 3550 6.4), SDES CNAME, BYE, NTP time and round trip.
 */
#include <errno.h>
#include <string.h>

#include "rtp/rtp.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_hdr(uint8_t *p, uint8_t count, uint8_t pt, size_t len)
{
	p[0] = (uint8_t)(0x80 | (count & 0x1f));
	p[1] = pt;
	size_t words = len / 4 - 1;
	p[2] = (uint8_t)(words >> 8);
	p[3] = (uint8_t)words;
}

static void put_block(uint8_t *p, const struct rtcp_block *b)
{
	put32(p, b->ssrc);
	/* 24-bit signed, clamped (RFC 3550 6.4.1) */
	int32_t lost = b->cum_lost;
	if (lost > 0x7fffff)
		lost = 0x7fffff;
	if (lost < -0x800000)
		lost = -0x800000;
	put32(p + 4, (uint32_t)b->fraction_lost << 24 | ((uint32_t)lost & 0xffffff));
	put32(p + 8, b->ext_max_seq);
	put32(p + 12, b->jitter);
	put32(p + 16, b->lsr);
	put32(p + 20, b->dlsr);
}

static void get_block(const uint8_t *p, struct rtcp_block *b)
{
	b->ssrc = get32(p);
	uint32_t w = get32(p + 4);
	b->fraction_lost = (uint8_t)(w >> 24);
	int32_t lost = (int32_t)(w & 0xffffff);
	if (lost & 0x800000)
		lost -= 0x1000000; /* sign-extend */
	b->cum_lost = lost;
	b->ext_max_seq = get32(p + 8);
	b->jitter = get32(p + 12);
	b->lsr = get32(p + 16);
	b->dlsr = get32(p + 20);
}

int rtcp_report_build(const struct rtcp_report *r, const char *cname, uint8_t *out, size_t cap,
		      size_t *len)
{
	if (r->n_blocks > RTCP_MAX_BLOCKS)
		return EINVAL;
	size_t cl = cname ? strnlen(cname, RTCP_CNAME_MAX + 1) : 0;
	if (cl > RTCP_CNAME_MAX)
		return EINVAL;
	size_t first = (r->sr ? 28 : 8) + 24 * (size_t)r->n_blocks;
	/* SDES: header, SSRC, item (type, length, text), a zero octet ending
	 * the item list, padded to a word (RFC 3550 6.5) */
	size_t sdes = cl ? 8 + ((2 + cl + 1 + 3) & ~(size_t)3) : 0;
	size_t bye = r->bye ? 8 : 0;
	size_t total = first + sdes + bye;
	if (total > cap)
		return ENOSPC;
	memset(out, 0, total);
	put_hdr(out, (uint8_t)r->n_blocks, r->sr ? RTCP_SR : RTCP_RR, first);
	put32(out + 4, r->ssrc);
	uint8_t *p = out + 8;
	if (r->sr) {
		put32(p, (uint32_t)(r->ntp >> 32));
		put32(p + 4, (uint32_t)r->ntp);
		put32(p + 8, r->rtp_ts);
		put32(p + 12, r->packets);
		put32(p + 16, r->octets);
		p += 20;
	}
	for (unsigned i = 0; i < r->n_blocks; i++, p += 24)
		put_block(p, &r->blocks[i]);
	if (sdes) {
		put_hdr(p, 1, RTCP_SDES, sdes);
		put32(p + 4, r->ssrc);
		p[8] = 1; /* CNAME */
		p[9] = (uint8_t)cl;
		memcpy(p + 10, cname, cl);
		p += sdes; /* the zeros after the text end the list and pad */
	}
	if (bye) {
		put_hdr(p, 1, RTCP_BYE, bye);
		put32(p + 4, r->ssrc);
	}
	*len = total;
	return 0;
}

static void add_blocks(struct rtcp_report *r, const uint8_t *p, unsigned rc, size_t avail)
{
	for (unsigned i = 0; i < rc && avail >= 24 && r->n_blocks < RTCP_MAX_BLOCKS; i++) {
		get_block(p, &r->blocks[r->n_blocks++]);
		p += 24;
		avail -= 24;
	}
}

static void take_cname(struct rtcp_report *r, const uint8_t *p, size_t plen, unsigned sc)
{
	/* chunks: SSRC, then items (type, length, text) up to a zero type */
	size_t off = 4;
	if (sc == 0 || plen < 8)
		return;
	off += 4;
	while (off + 2 <= plen && p[off] != 0) {
		size_t il = p[off + 1];
		if (off + 2 + il > plen)
			return;
		if (p[off] == 1) {
			memcpy(r->cname, p + off + 2, il);
			r->cname[il] = '\0';
			return;
		}
		off += 2 + il;
	}
}

int rtcp_report_parse(struct rtcp_report *r, const uint8_t *p, size_t len)
{
	struct rtcp_hdr h;
	if (rtcp_parse(&h, p, len))
		return EBADMSG;
	memset(r, 0, sizeof *r);
	r->ssrc = h.ssrc;
	r->bye = h.has_bye;
	bool have_report = false;
	size_t off = 0;
	while (off < len) {
		const uint8_t *q = p + off;
		size_t plen = 4 * ((size_t)(q[2] << 8 | q[3]) + 1);
		/* padding (last packet only) is not content */
		size_t clen = plen;
		if ((q[0] & 0x20) && plen >= 4) {
			size_t pad = q[plen - 1];
			clen = pad <= plen - 4 ? plen - pad : 4;
		}
		unsigned count = q[0] & 0x1f;
		if (q[1] == RTCP_SR && clen >= 28) {
			if (!have_report) {
				r->sr = true;
				r->ssrc = get32(q + 4);
				r->ntp = (uint64_t)get32(q + 8) << 32 | get32(q + 12);
				r->rtp_ts = get32(q + 16);
				r->packets = get32(q + 20);
				r->octets = get32(q + 24);
				have_report = true;
			}
			add_blocks(r, q + 28, count, clen - 28);
		} else if (q[1] == RTCP_RR && clen >= 8) {
			if (!have_report) {
				r->ssrc = get32(q + 4);
				have_report = true;
			}
			add_blocks(r, q + 8, count, clen - 8);
		} else if (q[1] == RTCP_SDES && !r->cname[0]) {
			take_cname(r, q, clen, count);
		}
		off += plen;
	}
	return 0;
}

const struct rtcp_block *rtcp_report_block_for(const struct rtcp_report *r, uint32_t ssrc)
{
	for (unsigned i = 0; i < r->n_blocks; i++)
		if (r->blocks[i].ssrc == ssrc)
			return &r->blocks[i];
	return NULL;
}

uint64_t rtcp_ntp_from_unix_us(uint64_t unix_us)
{
	/* 70 years, 17 of them leap: 1900-01-01 to 1970-01-01 */
	uint64_t sec = unix_us / 1000000 + 2208988800u;
	uint64_t frac = ((unix_us % 1000000) << 32) / 1000000;
	return sec << 32 | frac;
}

bool rtcp_rtt_ms(uint32_t now_mid32, uint32_t lsr, uint32_t dlsr, uint32_t *ms)
{
	if (lsr == 0)
		return false;		       /* 6.4.1: no SR of ours received yet */
	uint32_t rtt = now_mid32 - lsr - dlsr; /* modulo 2^32, 1/65536 s */
	if (rtt > 0x80000000u)
		return false; /* negative: the far end's DLSR is off, or a stale block */
	*ms = (uint32_t)(((uint64_t)rtt * 1000 + 32768) >> 16);
	return true;
}

uint32_t rtcp_dlsr(uint64_t delay_us)
{
	uint64_t v = (delay_us << 16) / 1000000;
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}
