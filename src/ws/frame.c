/* WebSocket frames: header decode with RFC 6455's protocol checks, masking, building, close payloads, messages. */
#include <errno.h>
#include <string.h>

#include "ws.h"

static bool is_control(uint8_t op)
{
	return op & 0x8;
}

static bool op_known(uint8_t op)
{
	return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
	       op == WS_OP_PING || op == WS_OP_PONG;
}

int ws_frame_parse(const char *cp, size_t l, bool from_client, size_t max, struct ws_frame *fr)
{
	const uint8_t *p = (const uint8_t *)cp;
	if (l < 2)
		return ENODATA;
	memset(fr, 0, sizeof *fr);
	fr->fin = p[0] & 0x80;
	fr->opcode = p[0] & 0x0f;
	fr->masked = p[1] & 0x80;
	/* 5.2: RSV1-3 only with an extension that defines them; none is agreed */
	if (p[0] & 0x70 || !op_known(fr->opcode))
		return EBADMSG;
	/* 5.1: a server closes on an unmasked client frame; a client on a masked one */
	if (fr->masked != from_client)
		return EBADMSG;
	uint64_t len = p[1] & 0x7f;
	size_t h = 2;
	if (len == 126) {
		if (l < 4)
			return ENODATA;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
		if (len < 126) /* 5.2: the minimal number of bytes */
			return EBADMSG;
	} else if (len == 127) {
		if (l < 10)
			return ENODATA;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		h = 10;
		if (len >> 63 || len <= 0xffff)
			return EBADMSG;
	}
	/* 5.5: control frames are short and never fragmented */
	if (is_control(fr->opcode) && (len > 125 || !fr->fin))
		return EBADMSG;
	if (len > max)
		return EMSGSIZE;
	if (fr->masked) {
		if (l < h + 4)
			return ENODATA;
		memcpy(fr->mask, p + h, 4);
		h += 4;
	}
	fr->hlen = h;
	fr->plen = (size_t)len;
	if (l - h < fr->plen)
		return ENODATA;
	return 0;
}

void ws_mask(char *p, size_t l, const uint8_t mask[4])
{
	for (size_t i = 0; i < l; i++)
		p[i] = (char)((uint8_t)p[i] ^ mask[i & 3]);
}

size_t ws_frame_hdr(uint8_t *out, bool fin, enum ws_opcode op, size_t plen, const uint8_t *mask)
{
	size_t h = 2;
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
	uint8_t m = mask ? 0x80 : 0;
	if (plen < 126) {
		out[1] = (uint8_t)(m | plen);
	} else if (plen <= 0xffff) {
		out[1] = m | 126;
		out[2] = (uint8_t)(plen >> 8);
		out[3] = (uint8_t)plen;
		h = 4;
	} else {
		out[1] = m | 127;
		uint64_t v = plen;
		for (int i = 7; i >= 0; i--) {
			out[2 + i] = (uint8_t)v;
			v >>= 8;
		}
		h = 10;
	}
	if (mask) {
		memcpy(out + h, mask, 4);
		h += 4;
	}
	return h;
}

/* RFC 6455 7.4.1/7.4.2: what an endpoint may put in a close frame */
static bool code_sendable(uint16_t c)
{
	if (c >= 3000 && c <= 4999)
		return true; /* registered and private use */
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011);
}

int ws_close_parse(const char *p, size_t l, uint16_t *code)
{
	if (l == 0) {
		*code = WS_CLOSE_NO_STATUS;
		return 0;
	}
	if (l == 1)
		return EBADMSG;
	uint16_t c = (uint16_t)((uint8_t)p[0] << 8 | (uint8_t)p[1]);
	if (!code_sendable(c) || !ws_utf8_valid(p + 2, l - 2))
		return EBADMSG;
	*code = c;
	return 0;
}

bool ws_utf8_valid(const char *cp, size_t l)
{
	const uint8_t *p = (const uint8_t *)cp;
	size_t i = 0;
	while (i < l) {
		uint8_t c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t min, v;
		if ((c & 0xe0) == 0xc0) {
			n = 1, min = 0x80, v = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, min = 0x800, v = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, min = 0x10000, v = c & 0x07;
		} else {
			return false;
		}
		if (l - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			v = v << 6 | (p[i + k] & 0x3f);
		}
		if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

int ws_msg_add(struct ws_msg_state *s, const struct ws_frame *fr, size_t max, bool *done,
	       uint8_t *op)
{
	*done = false;
	if (fr->opcode == WS_OP_CONT) {
		if (!s->opcode)
			return EBADMSG; /* 5.4: a continuation of nothing */
	} else if (fr->opcode == WS_OP_TEXT || fr->opcode == WS_OP_BINARY) {
		if (s->opcode)
			return EBADMSG; /* 5.4: messages do not interleave */
		s->opcode = fr->opcode;
		s->len = 0;
	} else {
		return EINVAL; /* control frames are not part of a message */
	}
	if (fr->plen > max - MIN(max, s->len))
		return EMSGSIZE;
	s->len += fr->plen;
	if (fr->fin) {
		*done = true;
		*op = s->opcode;
		s->opcode = 0;
	}
	return 0;
}
