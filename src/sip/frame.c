/* sip: TCP/TLS stream framing (RFC 3261 18.3) and RFC 5626 CRLF keepalives. */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Offset just past the empty line ending the headers of p[0..l), or 0,
 * searching from `from` (an earlier call saw p[0..from+2) without finding it).
 * A bare LF is accepted as a line end, as the parser does. Adds the bytes it
 * stepped over to *work. */
static size_t headers_end(const char *p, size_t from, size_t l, size_t *work)
{
	size_t i = from;
	while (i < l) {
		const char *lf = memchr(p + i, '\n', l - i);
		if (!lf)
			break;
		i = (size_t)(lf - p);
		if (i + 1 < l && p[i + 1] == '\n') {
			*work += i + 2 - from;
			return i + 2;
		}
		if (i + 2 < l && p[i + 1] == '\r' && p[i + 2] == '\n') {
			*work += i + 3 - from;
			return i + 3;
		}
		i++;
	}
	*work += l > from ? l - from : 0;
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
		/* only "Content-Length" and "l" can name it: the others are not
		 * looked up (this runs on every header of every message) */
		bool may = (n == 14 && (line.p[0] | 0x20) == 'c') || n == 1;
		if (may && colon < line.l && line.p[colon] == ':' &&
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

int sip_frame_resume(struct sip_frame_state *fs, const char *p, size_t l, size_t max,
		     size_t *msglen)
{
	fs->keepalive = false;
	if (l == 0)
		return ENODATA;
	if (p[0] == '\r' || p[0] == '\n') {
		/* RFC 5626 4.4.1: "\r\n\r\n" ping, "\r\n" pong, returned whole
		 * as one run; a CR at the very end waits for its LF */
		size_t n = fs->scanned;
		while (n < l && (p[n] == '\r' || p[n] == '\n'))
			n++;
		fs->work += n - fs->scanned;
		fs->scanned = n;
		if (n == l && p[n - 1] == '\r')
			return l >= max ? EBADMSG : ENODATA;
		fs->keepalive = true;
		*msglen = n;
		return 0;
	}
	if (!fs->hend) {
		size_t scan = MIN(l, max);
		/* the last two bytes seen may begin the empty line */
		size_t from = MIN(fs->scanned, scan);
		from = from >= 2 ? from - 2 : 0;
		size_t hend = headers_end(p, from, scan, &fs->work);
		if (hend == 0) {
			fs->scanned = scan;
			return l >= max ? EBADMSG : ENODATA;
		}
		uint32_t cl = 0;
		fs->work += hend;
		if (find_content_length(p, hend, &cl))
			return EBADMSG; /* RFC 3261 18.3: mandatory over streams */
		if ((size_t)cl > max || hend + cl > max)
			return EBADMSG;
		fs->hend = hend;
		fs->cl = cl;
		fs->scanned = hend;
	}
	if (l < fs->hend + fs->cl)
		return ENODATA;
	*msglen = fs->hend + fs->cl;
	return 0;
}

int sip_frame(const char *p, size_t l, size_t max, size_t *msglen)
{
	struct sip_frame_state fs = {0};
	return sip_frame_resume(&fs, p, l, max, msglen);
}
