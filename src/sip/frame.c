/* sip: TCP/TLS stream framing (RFC 3261 18.3) and RFC 5626 CRLF keepalives. */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Offset just past the empty line ending the headers of p[0..l), or 0. A bare
 * LF is accepted as a line end, as the parser does. */
static size_t headers_end(const char *p, size_t l)
{
	for (size_t i = 0; i < l; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < l && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < l && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Finds Content-Length (or "l") among the header lines of p[0..hend).
 * Returns 0 with *cl, ENOENT when absent, EBADMSG when invalid or
 * contradictory. */
static int find_content_length(const char *p, size_t hend, uint32_t *cl)
{
	bool found = false;
	size_t pos = 0;
	/* skip the start line */
	const char *lf = memchr(p, '\n', hend);
	if (!lf)
		return ENOENT;
	pos = (size_t)(lf - p) + 1;
	while (pos < hend) {
		lf = memchr(p + pos, '\n', hend - pos);
		size_t next = lf ? (size_t)(lf - p) + 1 : hend;
		struct slice line = {p + pos, next - pos};
		size_t n = sip_lex_skip_token(line, 0);
		size_t colon = n;
		while (colon < line.l && (line.p[colon] == ' ' || line.p[colon] == '\t'))
			colon++;
		if (n && colon < line.l && line.p[colon] == ':' &&
		    sip_hdr_id_from(sip_lex_sub(line, 0, n)) == SIP_HDR_CONTENT_LENGTH) {
			/* the value may be folded onto following lines */
			size_t vend = next;
			while (vend < hend && (p[vend] == ' ' || p[vend] == '\t')) {
				const char *lf2 = memchr(p + vend, '\n', hend - vend);
				vend = lf2 ? (size_t)(lf2 - p) + 1 : hend;
			}
			struct slice v = slice_trim((struct slice){line.p + colon + 1,
								  vend - pos - colon - 1});
			uint32_t x;
			if (slice_to_u32(v, 0x7fffffff, &x) || (found && x != *cl))
				return EBADMSG;
			*cl = x;
			found = true;
			next = vend;
		}
		pos = next;
	}
	return found ? 0 : ENOENT;
}

int sip_frame(const char *p, size_t l, size_t max, size_t *msglen)
{
	if (l == 0)
		return ENODATA;
	if (p[0] == '\r' || p[0] == '\n') {
		/* RFC 5626 4.4.1: "\r\n\r\n" ping, "\r\n" pong, returned whole
		 * as one run; a CR at the very end waits for its LF */
		size_t n = 0;
		while (n < l && (p[n] == '\r' || p[n] == '\n'))
			n++;
		if (n == l && p[n - 1] == '\r')
			return ENODATA;
		*msglen = n;
		return 0;
	}
	size_t scan = MIN(l, max);
	size_t hend = headers_end(p, scan);
	if (hend == 0)
		return l >= max ? EBADMSG : ENODATA;
	uint32_t cl = 0;
	int err = find_content_length(p, hend, &cl);
	if (err)
		return EBADMSG; /* RFC 3261 18.3: mandatory over streams */
	if ((size_t)cl > max || hend + cl > max)
		return EBADMSG;
	if (l < hend + cl)
		return ENODATA;
	*msglen = hend + cl;
	return 0;
}
