/* STUN message decoding: header checks and the TLV walk (RFC 8489 5, 14). */
#include <errno.h>
#include <string.h>

#include "stun.h"

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Lengths the RFC fixes; anything else is malformed rather than truncated. */
static bool check_fixed_len(uint16_t type, uint16_t len)
{
	switch (type) {
	case STUN_ATTR_MESSAGE_INTEGRITY:
		return len == 20;
	case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
		/* RFC 8489 14.6: 16 to 32 bytes, a multiple of 4 */
		return len >= 16 && len <= 32 && (len & 3) == 0;
	case STUN_ATTR_FINGERPRINT:
		return len == 4;
	}
	return true;
}

/* RFC 8489 14: each attribute is a TLV padded to 4 bytes.
 *
 *  0                   1                   2                   3
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Type                  |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                         Value (variable)                ....
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
int stun_msg_decode(struct stun_msg *m, const void *vp, size_t len)
{
	const uint8_t *p = vp;
	if (len < STUN_HDR_LEN || (p[0] & 0xc0) != 0)
		return EBADMSG;
	size_t ml = rd16(p + 2);
	if ((ml & 3) != 0 || ml + STUN_HDR_LEN != len)
		return EBADMSG;

	m->p = p;
	m->len = len;
	m->type = rd16(p);
	m->method = stun_type_method(m->type);
	m->cls = stun_type_class(m->type);
	m->classic = rd32(p + 4) != STUN_MAGIC_COOKIE;
	m->tid = p + 8;
	m->nattr = 0;
	m->mi = m->mi256 = m->fp = -1;

	size_t off = STUN_HDR_LEN;
	while (off < len) {
		if (len - off < 4)
			return EBADMSG;
		uint16_t type = rd16(p + off), alen = rd16(p + off + 2);
		size_t padded = ((size_t)alen + 3) & ~(size_t)3;
		if (padded > len - off - 4)
			return EBADMSG;
		size_t here = off;
		off += 4 + padded;

		/* RFC 8489 14.5-14.7: after MESSAGE-INTEGRITY only the SHA256 variant
		 * and FINGERPRINT count; after the SHA256 variant only FINGERPRINT;
		 * FINGERPRINT is last. The rest is ignored, not refused. */
		if (m->fp >= 0)
			break;
		if (m->mi256 >= 0 && type != STUN_ATTR_FINGERPRINT)
			continue;
		if (m->mi >= 0 && type != STUN_ATTR_FINGERPRINT &&
		    type != STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
			continue;
		if (!check_fixed_len(type, alen))
			return EBADMSG;
		if (m->nattr == STUN_MAX_ATTRS)
			return ENOTSUP;

		int idx = (int)m->nattr;
		struct stun_attr *a = &m->attr[m->nattr++];
		a->type = type;
		a->len = alen;
		a->v = p + here + 4;
		a->off = here;
		if (type == STUN_ATTR_MESSAGE_INTEGRITY)
			m->mi = idx;
		else if (type == STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
			m->mi256 = idx;
		else if (type == STUN_ATTR_FINGERPRINT)
			m->fp = idx;
	}
	return 0;
}

const struct stun_attr *stun_msg_attr(const struct stun_msg *m, uint16_t type)
{
	for (size_t i = 0; i < m->nattr; i++)
		if (m->attr[i].type == type)
			return &m->attr[i];
	return NULL;
}

size_t stun_msg_unknown(const struct stun_msg *m, const uint16_t *extra_known, size_t nextra,
			uint16_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nattr; i++) {
		uint16_t t = m->attr[i].type;
		if (t >= 0x8000 || stun_attr_known(t))
			continue;
		bool skip = false;
		for (size_t k = 0; k < nextra && !skip; k++)
			skip = extra_known[k] == t;
		for (size_t k = 0; k < n && !skip; k++)
			skip = out[k] == t;
		if (skip)
			continue;
		if (n == cap)
			break;
		out[n++] = t;
	}
	return n;
}

struct slice stun_attr_slice(const struct stun_attr *a)
{
	return (struct slice){(const char *)a->v, a->len};
}

int stun_msg_addr(const struct stun_msg *m, uint16_t type, struct sockaddr_storage *out)
{
	const struct stun_attr *a = stun_msg_attr(m, type);
	if (!a)
		return ENOENT;
	return stun_attr_addr(m, a, out);
}
