/* Base64 (RFC 4648 4, with padding, no line breaks): Pinhole-Seen carries its text this way. */
#include <errno.h>

#include "core.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int buf_append_base64(struct buf *b, const void *p, size_t l)
{
	const unsigned char *in = p;
	size_t n = (l + 2) / 3 * 4;
	int err = buf_reserve(b, n + 1);
	if (err)
		return err;
	char *o = b->data + b->len; /* reserved: written in place */
	size_t i = 0;
	for (; i + 3 <= l; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = b64[(v >> 6) & 63];
		*o++ = b64[v & 63];
	}
	if (i < l) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < l ? (uint32_t)in[i + 1] << 8 : 0);
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < l ? b64[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	b->len += n;
	return 0;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(struct slice in, unsigned char *out, size_t cap, size_t *n)
{
	size_t o = 0;
	if (in.l % 4)
		return EBADMSG;
	for (size_t i = 0; i < in.l; i += 4) {
		int v[4];
		size_t pad = 0;
		for (int k = 0; k < 4; k++) {
			char c = in.p[i + (size_t)k];
			if (c == '=' && i + 4 == in.l && k >= 2) {
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad || (v[k] = b64_val(c)) < 0)
				return EBADMSG; /* a '=' only at the very end */
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		size_t take = 3 - pad;
		if (o + take > cap)
			return ENOSPC;
		out[o++] = (unsigned char)(w >> 16);
		if (take > 1)
			out[o++] = (unsigned char)(w >> 8);
		if (take > 2)
			out[o++] = (unsigned char)w;
	}
	*n = o;
	return 0;
}
