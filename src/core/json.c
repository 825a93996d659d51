/* JSON string output for the control API. */
#include <stdio.h>

#include "core.h"

int buf_append_json_str(struct buf *b, const char *s)
{
	buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = {'\\', (char)*p};
			buf_append(b, esc, 2);
		} else if (*p < 0x20) {
			buf_printf(b, "\\u%04x", *p);
		} else {
			buf_append(b, p, 1);
		}
	}
	return buf_append(b, "\"", 1);
}
