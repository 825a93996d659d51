/* sdp: private line scanner shared by the SDP parser and rewriter. */
#ifndef PINHOLE_SDP_LINE_H
#define PINHOLE_SDP_LINE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/core.h"

/* One "x=value" line. raw includes the line end (if any), val does not. */
struct sdp_line {
	char type;
	struct slice val;
	struct slice raw;
	bool has_eol;
};

/* Takes the next line off *rest. Returns 0, ENOENT when only empty lines
 * remain, EBADMSG for anything that is not "x=value": RFC 8866 5 allows one
 * lower-case letter, '=' with no white space around it, and no NUL or bare
 * CR in the value. A bare LF is accepted as a line end, as many phones send. */
static inline int sdp_line_next(struct slice *rest, struct sdp_line *ln)
{
	const char *p = rest->p;
	size_t l = rest->l;
	const char *nl = l ? memchr(p, '\n', l) : NULL;
	size_t len = nl ? (size_t)(nl - p) : l;
	size_t raw = nl ? len + 1 : len;
	size_t vlen = len;

	if (vlen && p[vlen - 1] == '\r')
		vlen--;
	if (vlen == 0) {
		/* an empty line: allowed only as trailing padding */
		for (size_t i = raw; i < l; i++)
			if (p[i] != '\r' && p[i] != '\n')
				return EBADMSG;
		if (raw < l && p[l - 1] != '\n')
			return EBADMSG;
		return ENOENT;
	}
	if (vlen < 2 || p[0] < 'a' || p[0] > 'z' || p[1] != '=')
		return EBADMSG;
	for (size_t i = 2; i < vlen; i++)
		if (p[i] == '\0' || p[i] == '\r')
			return EBADMSG;
	ln->type = p[0];
	ln->val = (struct slice){p + 2, vlen - 2};
	ln->raw = (struct slice){p, raw};
	ln->has_eol = nl != NULL;
	rest->p = p + raw;
	rest->l = l - raw;
	return 0;
}

#endif
