/* Base64 (RFC 4648 4, with padding, no line breaks): Pinhole-Seen carries its text this way.
 * OpenSSL does the coding; what is checked here is the strictness it does not have (a '='
 * only at the very end, nothing outside the alphabet, no whitespace). */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "core.h"

int buf_append_base64(struct buf *b, const void *p, size_t l)
{
	size_t n = (l + 2) / 3 * 4;
	if (l > INT_MAX / 2)
		return ENOMEM;
	int err = buf_reserve(b, n + 1);
	if (err)
		return err;
	/* written in place, with a NUL after it inside the reserve */
	EVP_EncodeBlock((unsigned char *)b->data + b->len, p, (int)l);
	b->len += n;
	return 0;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int base64_decode(struct slice in, unsigned char *out, size_t cap, size_t *n)
{
	if (in.l % 4 || in.l > INT_MAX / 2)
		return EBADMSG;
	if (!in.l) {
		*n = 0;
		return 0;
	}
	size_t pad = in.p[in.l - 1] == '=' ? (in.p[in.l - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < in.l - pad; i++)
		if (!b64_char(in.p[i]))
			return EBADMSG;
	size_t len = in.l / 4 * 3 - pad;
	if (len > cap)
		return ENOSPC;
	/* EVP_DecodeBlock writes whole groups of 3: the last group goes through a
	 * scratch so that a cap of exactly len is enough */
	size_t head = in.l - 4;
	if (head && EVP_DecodeBlock(out, (const unsigned char *)in.p, (int)head) < 0)
		return EBADMSG;
	unsigned char last[3];
	if (EVP_DecodeBlock(last, (const unsigned char *)in.p + head, 4) != 3)
		return EBADMSG;
	memcpy(out + head / 4 * 3, last, 3 - pad);
	*n = len;
	return 0;
}
