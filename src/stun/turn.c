/* TURN (RFC 8656) attribute values and ChannelData framing, both ways. */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "stun.h"

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

bool stun_is_channel_data(const void *p, size_t len)
{
	return len >= STUN_CHAN_HDR && (((const uint8_t *)p)[0] & 0xc0) == 0x40;
}

int stun_chan_decode(const void *vp, size_t len, uint16_t *chan, const uint8_t **data, size_t *dlen)
{
	const uint8_t *p = vp;
	if (!stun_is_channel_data(p, len))
		return EBADMSG;
	size_t l = rd16(p + 2);
	if (l > len - STUN_CHAN_HDR)
		return EBADMSG;
	*chan = rd16(p);
	*data = p + STUN_CHAN_HDR;
	*dlen = l;
	return 0;
}

void stun_chan_header(uint8_t hdr[STUN_CHAN_HDR], uint16_t chan, uint16_t len)
{
	hdr[0] = (uint8_t)(chan >> 8);
	hdr[1] = (uint8_t)chan;
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
}

size_t stun_chan_pad(size_t dlen)
{
	return (4 - (dlen & 3)) & 3;
}

int stun_frame_turn(const char *cp, size_t l, size_t max, size_t *msglen)
{
	const uint8_t *p = (const uint8_t *)cp;
	if (l >= 1 && (p[0] & 0xc0) == 0x40) {
		if (l < STUN_CHAN_HDR)
			return ENODATA;
		size_t dl = rd16(p + 2);
		size_t total = STUN_CHAN_HDR + dl + stun_chan_pad(dl);
		if (total > max)
			return EBADMSG;
		if (l < total)
			return ENODATA;
		*msglen = total;
		return 0;
	}
	return stun_frame(cp, l, max, msglen);
}

int stun_attr_channel(const struct stun_attr *a, uint16_t *chan)
{
	if (a->len != 4)
		return EBADMSG;
	*chan = rd16(a->v);
	return 0;
}

void stun_enc_channel(struct stun_enc *e, uint16_t chan)
{
	stun_enc_u32(e, STUN_ATTR_CHANNEL_NUMBER, (uint32_t)chan << 16);
}

int stun_attr_transport(const struct stun_attr *a, uint8_t *proto)
{
	if (a->len != 4)
		return EBADMSG;
	*proto = a->v[0];
	return 0;
}

void stun_enc_transport(struct stun_enc *e, uint8_t proto)
{
	stun_enc_u32(e, STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)proto << 24);
}

int stun_attr_family(const struct stun_attr *a, uint8_t *family)
{
	if (a->len != 4 || (a->v[0] != STUN_FAMILY_IPV4 && a->v[0] != STUN_FAMILY_IPV6))
		return EBADMSG;
	*family = a->v[0];
	return 0;
}

void stun_enc_family(struct stun_enc *e, uint16_t type, uint8_t family)
{
	stun_enc_u32(e, type, (uint32_t)family << 24);
}

/* RFC 8656 18.6: one byte, R in its top bit, then padding. */
int stun_attr_even_port(const struct stun_attr *a, bool *reserve)
{
	if (a->len != 1)
		return EBADMSG;
	*reserve = (a->v[0] & 0x80) != 0;
	return 0;
}

void stun_enc_even_port(struct stun_enc *e, bool reserve)
{
	uint8_t v = reserve ? 0x80 : 0;
	stun_enc_attr(e, STUN_ATTR_EVEN_PORT, &v, 1);
}

/* RFC 8656 18.12:
 *
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Family       |    Reserved             |Class|     Number    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |      Reason Phrase (variable)                                ..
 */
void stun_enc_address_error(struct stun_enc *e, uint8_t family, uint16_t code)
{
	uint8_t v[4] = {family, 0, (uint8_t)(code / 100), (uint8_t)(code % 100)};
	stun_enc_attr(e, STUN_ATTR_ADDRESS_ERROR_CODE, v, sizeof v);
}

/* coturn's use-auth-secret ("TURN REST API"): base64(HMAC-SHA1(secret, username)). */
int stun_secret_password(struct slice secret, struct slice username, char out[29])
{
	uint8_t md[20];
	if (stun_hmac_sha1(secret.p ? secret.p : "", secret.l, username.p ? username.p : "",
			   username.l, md))
		return EINVAL;
	/* 20 bytes -> 28 characters and the NUL */
	return EVP_EncodeBlock((unsigned char *)out, md, 20) == 28 ? 0 : EINVAL;
}
