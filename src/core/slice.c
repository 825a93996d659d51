/* Slices and growable buffers: the zero-copy vocabulary of every parser. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct slice slice_cstr(const char *s)
{
	return (struct slice){s, s ? strlen(s) : 0};
}

bool slice_eq(struct slice a, struct slice b)
{
	return a.l == b.l && (a.l == 0 || memcmp(a.p, b.p, a.l) == 0);
}

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* ASCII case folding over exactly l bytes: slices are not NUL-terminated and
 * may hold NUL bytes (strncasecmp would stop at the first one, and is locale
 * dependent). */
bool slice_eq_nocase(struct slice a, struct slice b)
{
	if (a.l != b.l)
		return false;
	for (size_t i = 0; i < a.l; i++)
		if (fold((unsigned char)a.p[i]) != fold((unsigned char)b.p[i]))
			return false;
	return true;
}

bool slice_eq_cstr_nocase(struct slice a, const char *s)
{
	return slice_eq_nocase(a, slice_cstr(s));
}

static bool is_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct slice slice_trim(struct slice s)
{
	while (s.l && is_lws(s.p[0])) {
		s.p++;
		s.l--;
	}
	while (s.l && is_lws(s.p[s.l - 1]))
		s.l--;
	return s;
}

int slice_to_u32(struct slice s, uint32_t max, uint32_t *out)
{
	if (s.l == 0)
		return EINVAL;
	/* leading zeros are valid ("Content-Length: 00000000005"); the value is
	 * capped as it grows so that any length of digits cannot overflow */
	uint64_t v = 0;
	for (size_t i = 0; i < s.l; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return EINVAL;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
		if (v > max)
			return EINVAL;
	}
	if (v > max)
		return EINVAL;
	*out = (uint32_t)v;
	return 0;
}

char *slice_to_cstr(struct slice s, char *dst, size_t cap)
{
	if (cap == 0)
		return dst;
	size_t n = MIN(s.l, cap - 1);
	if (n)
		memcpy(dst, s.p, n);
	dst[n] = '\0';
	return dst;
}

size_t slice_find(struct slice s, char c)
{
	const char *hit = s.l ? memchr(s.p, c, s.l) : NULL;
	return hit ? (size_t)(hit - s.p) : s.l;
}

bool slice_next_item(struct slice *rest, char sep, struct slice *item)
{
	if (!rest->l)
		return false;
	size_t at = slice_find(*rest, sep);
	*item = slice_trim((struct slice){rest->p, at});
	*rest = at < rest->l ? (struct slice){rest->p + at + 1, rest->l - at - 1}
			     : (struct slice){rest->p + rest->l, 0};
	return true;
}

void buf_init(struct buf *b)
{
	memset(b, 0, sizeof *b);
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->failed = false;
}

int buf_reserve(struct buf *b, size_t extra)
{
	if (b->failed)
		return ENOMEM;
	if (extra > SIZE_MAX / 2 - b->len) { /* would overflow the doubling below */
		b->failed = true;
		return ENOMEM;
	}
	if (b->len + extra <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t l)
{
	if (l == 0)
		return b->failed ? ENOMEM : 0;
	int err = buf_reserve(b, l);
	if (err)
		return err;
	memcpy(b->data + b->len, p, l);
	b->len += l;
	return 0;
}

int buf_append_slice(struct buf *b, struct slice s)
{
	return buf_append(b, s.p, s.l);
}

int buf_append_cstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char small[256];
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return EINVAL;
	if ((size_t)n < sizeof small)
		return buf_append(b, small, (size_t)n);
	int err = buf_reserve(b, (size_t)n + 1);
	if (err)
		return err;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

struct slice buf_slice(const struct buf *b)
{
	return (struct slice){b->data, b->len};
}
