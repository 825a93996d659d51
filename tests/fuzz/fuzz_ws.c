/* libFuzzer entry point for the WebSocket codec: the upgrade request (or a server's answer), then the frames after it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a private copy: frames are unmasked in place, as the transport does */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	size_t off = 0;
	struct ws_upgrade u;
	size_t used;
	if (ws_upgrade_parse(p, size, WS_UPGRADE_MAX, &u, &used) == 0) {
		if (used > size)
			__builtin_trap();
		unsigned st = ws_upgrade_check(&u, "https://a.example, https://b.example");
		struct buf out;
		buf_init(&out);
		if (ws_upgrade_answer(&u, st, &out) == 0 && out.len < 12)
			__builtin_trap();
		buf_free(&out);
		off = used;
	}
	/* the same bytes as a server's answer, as the ua's client side reads it */
	struct ws_response r;
	if (ws_response_parse(p, size, WS_UPGRADE_MAX, &r, &used) == 0) {
		if (used > size)
			__builtin_trap();
		int rc = ws_response_check(&r, "dGhlIHNhbXBsZSBub25jZQ==");
		if (rc == 0 && r.status != 101)
			__builtin_trap();
		if (!off)
			off = used;
	}
	/* the rest as a client's frames, as a server reads them; and as a
	 * server's, as a client would */
	for (int from_client = 1; from_client >= 0; from_client--) {
		struct ws_msg_state ms = {0};
		size_t pos = off;
		while (pos < size) {
			struct ws_frame fr;
			if (ws_frame_parse(p + pos, size - pos, from_client, 4096, &fr))
				break;
			if (fr.hlen + fr.plen > size - pos || fr.plen > 4096)
				__builtin_trap();
			char *pl = p + pos + fr.hlen;
			if (fr.masked)
				ws_mask(pl, fr.plen, fr.mask);
			if (fr.opcode == WS_OP_CLOSE) {
				uint16_t code;
				ws_close_parse(pl, fr.plen, &code);
			} else if (!(fr.opcode & 8)) {
				bool done;
				uint8_t op;
				if (ws_msg_add(&ms, &fr, 8192, &done, &op))
					break;
				ws_utf8_valid(pl, fr.plen);
			}
			pos += fr.hlen + fr.plen;
		}
	}
	/* building: a header for the input's length must parse back */
	uint8_t h[WS_HDR_MAX];
	size_t hl = ws_frame_hdr(h, true, WS_OP_TEXT, size, NULL);
	struct ws_frame fr;
	int err = ws_frame_parse((const char *)h, hl, false, SIZE_MAX, &fr);
	if ((size && err != ENODATA) || (!size && err) || fr.plen != size || fr.hlen != hl)
		__builtin_trap();
	free(p);
	return 0;
}
