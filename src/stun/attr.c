/* STUN attribute values: addresses, error codes, lists and numbers, both ways. */
#include <errno.h>
#include <netinet/in.h>
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

static bool is_xor_type(uint16_t type)
{
	return type == STUN_ATTR_XOR_MAPPED_ADDRESS || type == STUN_ATTR_XOR_PEER_ADDRESS ||
	       type == STUN_ATTR_XOR_RELAYED_ADDRESS;
}

/* RFC 8489 14.1 and 14.2: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS share a layout.
 *
 *  0                   1                   2                   3
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0 0 0 0 0 0 0 0|    Family     |         (X-)Port              |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                (X-)Address (32 bits or 128 bits)              |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The XOR form XORs the port with the cookie's top 16 bits, an IPv4 address
 * with the cookie, an IPv6 address with cookie || transaction id: that is,
 * with header bytes 4..19, which is what xkey points at.
 */
int stun_attr_addr(const struct stun_msg *m, const struct stun_attr *a,
		   struct sockaddr_storage *out)
{
	const uint8_t *v = a->v;
	const uint8_t *xkey = is_xor_type(a->type) ? m->p + 4 : NULL;
	if (a->len < 4)
		return EBADMSG;
	uint16_t port = rd16(v + 2);
	if (xkey)
		port ^= rd16(xkey);
	memset(out, 0, sizeof *out);
	switch (v[1]) {
	case 0x01: {
		if (a->len != 8)
			return EBADMSG;
		struct sockaddr_in *in = (struct sockaddr_in *)out;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		uint8_t b[4];
		for (int i = 0; i < 4; i++)
			b[i] = v[4 + i] ^ (xkey ? xkey[i] : 0);
		memcpy(&in->sin_addr, b, 4);
		return 0;
	}
	case 0x02: {
		if (a->len != 20)
			return EBADMSG;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		for (int i = 0; i < 16; i++)
			in6->sin6_addr.s6_addr[i] = v[4 + i] ^ (xkey ? xkey[i] : 0);
		return 0;
	}
	}
	return EBADMSG;
}

/* RFC 8489 14.8:
 *
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Reserved, should be 0         |Class|     Number    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |      Reason Phrase (variable)                                ..
 */
int stun_attr_error(const struct stun_attr *a, uint16_t *code, struct slice *reason)
{
	if (a->len < 4)
		return EBADMSG;
	unsigned cls = a->v[2] & 7, num = a->v[3];
	if (cls < 3 || cls > 6 || num > 99)
		return EBADMSG;
	*code = (uint16_t)(cls * 100 + num);
	if (reason)
		*reason = (struct slice){(const char *)a->v + 4, a->len - 4u};
	return 0;
}

int stun_attr_unknown(const struct stun_attr *a, uint16_t *out, size_t cap, size_t *n)
{
	if (a->len & 1)
		return EBADMSG;
	*n = a->len / 2u;
	for (size_t i = 0; i < *n && i < cap; i++)
		out[i] = rd16(a->v + 2 * i);
	return 0;
}

int stun_attr_change(const struct stun_attr *a, uint32_t *flags)
{
	if (a->len != 4)
		return EBADMSG;
	*flags = rd32(a->v) & (STUN_CHANGE_IP | STUN_CHANGE_PORT);
	return 0;
}

int stun_attr_response_port(const struct stun_attr *a, uint16_t *port)
{
	if (a->len != 4)
		return EBADMSG;
	*port = rd16(a->v);
	return 0;
}

/* RFC 8489 14.11: a list of {algorithm, parameters length, parameters (padded)}. */
int stun_attr_pwalgs(const struct stun_attr *a, uint16_t *out, size_t cap, size_t *n)
{
	size_t off = 0, count = 0;
	while (off < a->len) {
		if (a->len - off < 4)
			return EBADMSG;
		uint16_t alg = rd16(a->v + off), plen = rd16(a->v + off + 2);
		size_t padded = ((size_t)plen + 3) & ~(size_t)3;
		if (padded > a->len - off - 4)
			return EBADMSG;
		if (count < cap)
			out[count] = alg;
		count++;
		off += 4 + padded;
	}
	*n = count;
	return 0;
}

int stun_attr_u32(const struct stun_attr *a, uint32_t *v)
{
	if (a->len != 4)
		return EBADMSG;
	*v = rd32(a->v);
	return 0;
}

int stun_attr_u64(const struct stun_attr *a, uint64_t *v)
{
	if (a->len != 8)
		return EBADMSG;
	*v = (uint64_t)rd32(a->v) << 32 | rd32(a->v + 4);
	return 0;
}
