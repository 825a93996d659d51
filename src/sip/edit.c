/* sip: splicing serializer: writes a parsed message with edits applied, never touching the input. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

void sip_editor_init(struct sip_editor *e, const struct sip_msg *msg)
{
	e->msg = msg;
	e->n = 0;
	e->arena_used = 0;
	e->n_scratch = 0;
	e->failed = false;
	e->body_replaced = false;
	e->new_body = SLICE_NULL;
}

void sip_editor_free(struct sip_editor *e)
{
	for (size_t i = 0; i < e->n_scratch; i++)
		buf_free(&e->scratch[i]);
	e->n = 0;
	e->arena_used = 0;
	e->n_scratch = 0;
}

static int add_edit(struct sip_editor *e, size_t at, size_t del, struct slice ins)
{
	if (e->failed)
		return EINVAL;
	if (e->n >= SIP_MAX_EDITS) {
		e->failed = true;
		return ENOSPC;
	}
	size_t end = (size_t)(e->msg->body.p - e->msg->raw.p);
	if (at > end || del > end - at) {
		e->failed = true;
		return EINVAL;
	}
	e->edits[e->n++] = (struct sip_edit){at, del, ins};
	return 0;
}

/* Appends len bytes of p at *o if they fit before end; counts them anyway. */
static void put(char **o, char *end, size_t *n, const char *p, size_t len)
{
	if (*o && (size_t)(end - *o) >= len) {
		memcpy(*o, p, len);
		*o += len;
	} else {
		*o = NULL;
	}
	*n += len;
}

static size_t put_uint(char d[20], unsigned long long v)
{
	size_t k = 20;
	do
		d[--k] = (char)('0' + v % 10);
	while (v /= 10);
	return k;
}

/* vsnprintf for the conversions the proxy's pieces use (%s %.*s %d %u %zu
 * %%), without glibc's general machinery, which cost more than the rest of a
 * forwarded request's edits. The length the text needs, like vsnprintf, or
 * -1 for any other conversion (the caller then uses vsnprintf). */
static int format_simple(char *out, size_t cap, const char *fmt, va_list ap)
{
	char *o = out, *end = out + cap;
	size_t n = 0;
	char d[20];
	for (const char *f = fmt; *f;) {
		const char *pct = strchr(f, '%');
		size_t lit = pct ? (size_t)(pct - f) : strlen(f);
		put(&o, end, &n, f, lit);
		if (!pct)
			break;
		f = pct + 1;
		if (f[0] == 's') {
			const char *a = va_arg(ap, const char *);
			put(&o, end, &n, a, strlen(a));
			f += 1;
		} else if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
			int l = va_arg(ap, int);
			const char *a = va_arg(ap, const char *);
			put(&o, end, &n, a, l > 0 ? (size_t)l : 0);
			f += 3;
		} else if (f[0] == 'd') {
			int v = va_arg(ap, int);
			unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
			if (v < 0)
				put(&o, end, &n, "-", 1);
			size_t k = put_uint(d, u);
			put(&o, end, &n, d + k, 20 - k);
			f += 1;
		} else if (f[0] == 'u' || (f[0] == 'z' && f[1] == 'u')) {
			unsigned long long u = f[0] == 'u' ? va_arg(ap, unsigned) : va_arg(ap, size_t);
			size_t k = put_uint(d, u);
			put(&o, end, &n, d + k, 20 - k);
			f += f[0] == 'u' ? 1 : 2;
		} else if (f[0] == '%') {
			put(&o, end, &n, "%", 1);
			f += 1;
		} else {
			return -1;
		}
	}
	if (n > INT32_MAX)
		return -1;
	if (o && o < end)
		*o = '\0';
	return (int)n;
}

/* Formats a piece into the editor's arena, or into the next scratch buffer
 * when the arena is full; the slice stays valid until sip_editor_free()
 * because nothing written is moved. */
static int vformat(struct sip_editor *e, const char *suffix, struct slice *out,
		   const char *fmt, va_list ap)
{
	if (e->failed)
		return EINVAL;
	size_t slen = strlen(suffix);
	char *dst = e->arena + e->arena_used;
	size_t room = sizeof e->arena - e->arena_used;
	va_list ap2;
	va_copy(ap2, ap);
	int n = format_simple(dst, room, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		va_copy(ap2, ap);
		n = vsnprintf(dst, room, fmt, ap2);
		va_end(ap2);
	}
	if (n >= 0 && (size_t)n + slen < room) {
		memcpy(dst + n, suffix, slen + 1);
		e->arena_used += (size_t)n + slen;
		*out = (struct slice){dst, (size_t)n + slen};
		return 0;
	}
	if (e->n_scratch >= SIP_MAX_EDITS) {
		e->failed = true;
		return ENOSPC;
	}
	struct buf *b = &e->scratch[e->n_scratch];
	buf_init(b);
	e->n_scratch++; /* freed by sip_editor_free() whatever happens next */
	/* one pass into room that fits every usual piece; a second, sized,
	 * only for a longer one */
	va_copy(ap2, ap);
	int err = buf_reserve(b, 256);
	n = err ? -1 : vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (!err && n >= 0 && (size_t)n >= b->cap - b->len) {
		err = buf_reserve(b, (size_t)n + 1);
		if (!err)
			n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	}
	if (!err && n < 0)
		err = EINVAL;
	if (!err)
		err = buf_reserve(b, (size_t)n + strlen(suffix) + 1);
	if (err) {
		e->failed = true;
		return err;
	}
	b->len += (size_t)n;
	buf_append_cstr(b, suffix);
	*out = buf_slice(b);
	return 0;
}

static size_t off_of(const struct sip_editor *e, const char *p)
{
	return (size_t)(p - e->msg->raw.p);
}

static bool in_raw(const struct sip_editor *e, struct slice s)
{
	const struct slice raw = e->msg->raw;
	return s.p >= raw.p && s.p <= raw.p + raw.l && s.l <= (size_t)(raw.p + raw.l - s.p);
}

/* Offset of the empty line that ends the headers. */
static size_t headers_close(const struct sip_msg *m)
{
	if (m->n_hdrs) {
		const struct slice *l = &m->hdrs[m->n_hdrs - 1].line;
		return (size_t)(l->p + l->l - m->raw.p);
	}
	const char *sl_end = m->start_line.p + m->start_line.l;
	const char *lf = memchr(sl_end, '\n', (size_t)(m->raw.p + m->raw.l - sl_end));
	return lf ? (size_t)(lf + 1 - m->raw.p) : m->raw.l;
}

int sip_edit_insert_hdr_before(struct sip_editor *e, size_t idx, const char *fmt, ...)
{
	if (idx > e->msg->n_hdrs) {
		e->failed = true;
		return EINVAL;
	}
	struct slice ins;
	va_list ap;
	va_start(ap, fmt);
	int err = vformat(e, "\r\n", &ins, fmt, ap);
	va_end(ap);
	if (err)
		return err;
	size_t at = idx < e->msg->n_hdrs ? off_of(e, e->msg->hdrs[idx].line.p)
					 : headers_close(e->msg);
	return add_edit(e, at, 0, ins);
}

int sip_edit_remove_hdr(struct sip_editor *e, size_t idx)
{
	if (idx >= e->msg->n_hdrs) {
		e->failed = true;
		return EINVAL;
	}
	const struct slice l = e->msg->hdrs[idx].line;
	return add_edit(e, off_of(e, l.p), l.l, SLICE_NULL);
}

int sip_edit_remove_first_value(struct sip_editor *e, size_t idx)
{
	if (idx >= e->msg->n_hdrs) {
		e->failed = true;
		return EINVAL;
	}
	const struct sip_hdr *h = &e->msg->hdrs[idx];
	size_t pos = 0;
	struct slice v1, v2;
	if (!sip_hdr_next_value(h->value, &pos, &v1) ||
	    !sip_hdr_next_value(h->value, &pos, &v2))
		return sip_edit_remove_hdr(e, idx);
	/* "Via: a, b" -> "Via: b": drop from the first value to the second */
	return add_edit(e, off_of(e, v1.p), (size_t)(v2.p - v1.p), SLICE_NULL);
}

/* Replaces orig (after = false) or inserts right after it (after = true). */
static int vsplice(struct sip_editor *e, struct slice orig, bool after, const char *fmt,
		   va_list ap)
{
	if (!orig.p || !in_raw(e, orig)) {
		e->failed = true;
		return EINVAL;
	}
	struct slice ins;
	int err = vformat(e, "", &ins, fmt, ap);
	if (err)
		return err;
	size_t at = off_of(e, orig.p);
	return after ? add_edit(e, at + orig.l, 0, ins) : add_edit(e, at, orig.l, ins);
}

int sip_edit_replace(struct sip_editor *e, struct slice orig, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int err = vsplice(e, orig, false, fmt, ap);
	va_end(ap);
	return err;
}

int sip_edit_insert_after(struct sip_editor *e, struct slice orig, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int err = vsplice(e, orig, true, fmt, ap);
	va_end(ap);
	return err;
}

int sip_edit_set_ruri(struct sip_editor *e, const char *fmt, ...)
{
	if (!e->msg->request || !e->msg->ruri_s.p) {
		e->failed = true;
		return EINVAL;
	}
	struct slice ins;
	va_list ap;
	va_start(ap, fmt);
	int err = vformat(e, "", &ins, fmt, ap);
	va_end(ap);
	if (err)
		return err;
	return add_edit(e, off_of(e, e->msg->ruri_s.p), e->msg->ruri_s.l, ins);
}

int sip_edit_set_body(struct sip_editor *e, struct slice body)
{
	if (e->failed)
		return EINVAL;
	e->body_replaced = true;
	e->new_body = body;
	return 0;
}

/* Insertion sort by offset, pure insertions first at equal offsets so that
 * "insert before header i" and "remove header i" compose; otherwise stable. */
static void sort_edits(struct sip_edit *ed, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct sip_edit x = ed[i];
		size_t j = i;
		while (j > 0 && (ed[j - 1].at > x.at ||
				 (ed[j - 1].at == x.at && ed[j - 1].del > 0 && x.del == 0))) {
			ed[j] = ed[j - 1];
			j--;
		}
		ed[j] = x;
	}
}

/* Content-Length lines plus the body make up to this many extra edits. */
#define EXTRA_EDITS 4

int sip_edit_apply(struct sip_editor *e, struct buf *out)
{
	if (e->failed)
		return EINVAL;
	const struct sip_msg *m = e->msg;
	struct sip_edit ed[SIP_MAX_EDITS + EXTRA_EDITS + 1];
	size_t n = e->n;
	memcpy(ed, e->edits, n * sizeof ed[0]);
	/* the message ends with its body: datagram bytes past Content-Length
	 * are noise (RFC 3261 18.3) and are not forwarded */
	size_t end = (size_t)(m->body.p - m->raw.p) + m->body.l;
	char clbuf[EXTRA_EDITS][24];
	if (e->body_replaced) {
		size_t ncl = 0;
		const struct sip_hdr *h;
		int len = snprintf(clbuf[0], sizeof clbuf[0], "%zu", e->new_body.l);
		for (size_t i = 0; (h = sip_msg_hdr(m, SIP_HDR_CONTENT_LENGTH, i)) != NULL; i++) {
			if (ncl >= EXTRA_EDITS - 1)
				return EBADMSG;
			ed[n++] = (struct sip_edit){off_of(e, h->value.p), h->value.l,
						    (struct slice){clbuf[0], (size_t)len}};
			ncl++;
		}
		if (ncl == 0) {
			snprintf(clbuf[1], sizeof clbuf[1], "Content-Length: %zu\r\n",
				 e->new_body.l);
			ed[n++] = (struct sip_edit){headers_close(m), 0, slice_cstr(clbuf[1])};
		}
		ed[n++] = (struct sip_edit){m->hdr_end, end - m->hdr_end, e->new_body};
	}
	sort_edits(ed, n);
	/* the output's size, reserved at once rather than grown by doubling */
	size_t size = end;
	for (size_t i = 0; i < n; i++) {
		/* more deleted than there is: edits overlap */
		if (ed[i].at > end || ed[i].del > end - ed[i].at || ed[i].del > size)
			return EINVAL;
		size = size - ed[i].del + ed[i].ins.l;
	}
	size_t cur = 0;
	int err = buf_reserve(out, size);
	for (size_t i = 0; i < n && !err; i++) {
		if (ed[i].at < cur || ed[i].at + ed[i].del > end)
			return EINVAL; /* overlapping edits */
		err = buf_append(out, m->raw.p + cur, ed[i].at - cur);
		if (!err)
			err = buf_append_slice(out, ed[i].ins);
		cur = ed[i].at + ed[i].del;
	}
	if (!err)
		err = buf_append(out, m->raw.p + cur, end - cur);
	return err;
}
