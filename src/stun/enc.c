/* STUN message encoding into a struct buf, header length kept current. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "stun.h"

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint8_t *hdr(const struct stun_enc *e)
{
	return (uint8_t *)e->b->data + e->start;
}

static void fail(struct stun_enc *e, int err)
{
	if (!e->err)
		e->err = err;
}

static void begin(struct stun_enc *e, struct buf *b, uint16_t type, const uint8_t cookie_tid[16])
{
	e->b = b;
	e->start = b->len;
	e->err = 0;
	uint8_t h[STUN_HDR_LEN];
	wr16(h, type);
	wr16(h + 2, 0);
	memcpy(h + 4, cookie_tid, 16);
	if (buf_append(b, h, sizeof h))
		fail(e, ENOMEM);
}

void stun_enc_begin(struct stun_enc *e, struct buf *b, uint16_t method, enum stun_class cls,
		    const uint8_t *tid)
{
	uint8_t ct[16];
	wr32(ct, STUN_MAGIC_COOKIE);
	if (tid)
		memcpy(ct + 4, tid, STUN_TID_LEN);
	else
		rand_bytes(ct + 4, STUN_TID_LEN);
	begin(e, b, stun_type(method, cls), ct);
}

void stun_enc_begin_reply(struct stun_enc *e, struct buf *b, const struct stun_msg *req,
			  enum stun_class cls)
{
	begin(e, b, stun_type(req->method, cls), req->p + 4);
}

/* Reserves room for one attribute and returns its value, or NULL (error set).
 * The padding is zeroed and the header length updated. */
static uint8_t *attr_room(struct stun_enc *e, uint16_t type, size_t len)
{
	if (e->err)
		return NULL;
	size_t padded = (len + 3) & ~(size_t)3;
	size_t body = e->b->len - e->start - STUN_HDR_LEN;
	if (len > 0xffff || body + 4 + padded > 0xffff) {
		fail(e, EMSGSIZE);
		return NULL;
	}
	if (buf_reserve(e->b, 4 + padded)) {
		fail(e, ENOMEM);
		return NULL;
	}
	uint8_t *a = (uint8_t *)e->b->data + e->b->len;
	wr16(a, type);
	wr16(a + 2, (uint16_t)len);
	memset(a + 4 + len, 0, padded - len);
	e->b->len += 4 + padded;
	wr16(hdr(e) + 2, (uint16_t)(body + 4 + padded));
	return a + 4;
}

void stun_enc_attr(struct stun_enc *e, uint16_t type, const void *v, size_t len)
{
	uint8_t *p = attr_room(e, type, len);
	if (p && len)
		memcpy(p, v, len);
}

void stun_enc_str(struct stun_enc *e, uint16_t type, struct slice s)
{
	stun_enc_attr(e, type, s.p, s.l);
}

void stun_enc_u32(struct stun_enc *e, uint16_t type, uint32_t v)
{
	uint8_t *p = attr_room(e, type, 4);
	if (p)
		wr32(p, v);
}

void stun_enc_u64(struct stun_enc *e, uint16_t type, uint64_t v)
{
	uint8_t *p = attr_room(e, type, 8);
	if (p) {
		wr32(p, (uint32_t)(v >> 32));
		wr32(p + 4, (uint32_t)v);
	}
}

/* Layout in attr.c above stun_attr_addr. */
void stun_enc_addr(struct stun_enc *e, uint16_t type, const struct sockaddr *sa)
{
	bool x = type == STUN_ATTR_XOR_MAPPED_ADDRESS || type == STUN_ATTR_XOR_PEER_ADDRESS ||
		 type == STUN_ATTR_XOR_RELAYED_ADDRESS;
	uint8_t ip[16];
	size_t iplen;
	uint16_t port;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(ip, &in->sin_addr, 4);
		iplen = 4;
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		port = ntohs(in6->sin6_port);
		/* a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(ip, in6->sin6_addr.s6_addr + 12, 4);
			iplen = 4;
		} else {
			memcpy(ip, in6->sin6_addr.s6_addr, 16);
			iplen = 16;
		}
	} else {
		fail(e, EAFNOSUPPORT);
		return;
	}
	uint8_t *p = attr_room(e, type, 4 + iplen);
	if (!p)
		return;
	const uint8_t *xkey = hdr(e) + 4; /* cookie || transaction id */
	p[0] = 0;
	p[1] = iplen == 4 ? 0x01 : 0x02;
	if (x)
		port ^= (uint16_t)(xkey[0] << 8 | xkey[1]);
	wr16(p + 2, port);
	for (size_t i = 0; i < iplen; i++)
		p[4 + i] = ip[i] ^ (x ? xkey[i] : 0);
}

void stun_enc_error(struct stun_enc *e, uint16_t code, const char *reason)
{
	if (code < 300 || code > 699) {
		fail(e, EINVAL);
		return;
	}
	if (!reason)
		reason = stun_error_reason(code);
	size_t rl = strlen(reason);
	uint8_t *p = attr_room(e, STUN_ATTR_ERROR_CODE, 4 + rl);
	if (!p)
		return;
	p[0] = p[1] = 0;
	p[2] = (uint8_t)(code / 100);
	p[3] = (uint8_t)(code % 100);
	memcpy(p + 4, reason, rl);
}

void stun_enc_unknown(struct stun_enc *e, const uint16_t *types, size_t n)
{
	uint8_t *p = attr_room(e, STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n);
	for (size_t i = 0; p && i < n; i++)
		wr16(p + 2 * i, types[i]);
}

void stun_enc_change(struct stun_enc *e, uint32_t flags)
{
	stun_enc_u32(e, STUN_ATTR_CHANGE_REQUEST, flags & (STUN_CHANGE_IP | STUN_CHANGE_PORT));
}

/* RFC 5780 7.5: port in the top 16 bits, the rest reserved. */
void stun_enc_response_port(struct stun_enc *e, uint16_t port)
{
	stun_enc_u32(e, STUN_ATTR_RESPONSE_PORT, (uint32_t)port << 16);
}

void stun_enc_padding(struct stun_enc *e, size_t len)
{
	uint8_t *p = attr_room(e, STUN_ATTR_PADDING, len);
	if (p)
		memset(p, 0, len);
}

void stun_enc_pwalgs(struct stun_enc *e, const uint16_t *algs, size_t n)
{
	/* no algorithm defined so far takes parameters: 4 bytes each */
	uint8_t *p = attr_room(e, STUN_ATTR_PASSWORD_ALGORITHMS, 4 * n);
	for (size_t i = 0; p && i < n; i++) {
		wr16(p + 4 * i, algs[i]);
		wr16(p + 4 * i + 2, 0);
	}
}

size_t stun_enc_len(const struct stun_enc *e)
{
	return e->b->len - e->start;
}

int stun_enc_end(struct stun_enc *e)
{
	if (!e->err && e->b->failed)
		e->err = ENOMEM;
	return e->err;
}
