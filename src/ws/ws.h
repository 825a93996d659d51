/* ws: WebSocket (RFC 6455) for SIP (RFC 7118): the opening handshake and frames; bytes <-> structures, no I/O. */
#ifndef PINHOLE_WS_H
#define PINHOLE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/*
 * Ownership: a parsed upgrade request or frame is a view into the caller's
 * bytes; it owns nothing. Builders write into caller-owned memory or append
 * to a caller-owned struct buf. Nothing here logs or does I/O.
 *
 * Errors: 0, or ENODATA (need more bytes), EBADMSG (malformed: a protocol
 * error, RFC 6455 7.1.7 "fail the connection"), EMSGSIZE (above the caller's
 * bound), ENOMEM.
 */

/* The longest opening handshake a server reads (a browser's, with cookies,
 * fits well below). */
#define WS_UPGRADE_MAX 8192

/* ---- the opening handshake (RFC 6455 4.2) ---- */

struct ws_upgrade {
	struct slice method, path, version; /* request line */
	struct slice host, upgrade, key, ws_version, origin;
	bool conn_upgrade; /* "upgrade" among the Connection tokens */
	bool sip_offered;  /* "sip" among the Sec-WebSocket-Protocol tokens */
	bool dup;	   /* a header that must appear once came twice */
};

/* Parses the HTTP/1.1 request at p[0..l) up to its empty line. ENODATA: not
 * complete yet and l < max; EMSGSIZE: no end within max bytes; EBADMSG: not
 * an HTTP request line or header; 0: *used = its length (the bytes after it
 * are the first frames), u's slices point into p. */
int ws_upgrade_parse(const char *p, size_t l, size_t max, struct ws_upgrade *u, size_t *used);

/* What a server answers a parsed request, RFC 6455 4.2.1 / RFC 7118 4:
 *   101  a GET for HTTP/1.1 or later with Upgrade: websocket, Connection:
 *        upgrade, a key of 16 bytes in base64, version 13, the "sip"
 *        subprotocol offered, and an Origin on the list (or none sent);
 *   426  not a WebSocket upgrade at all, or a version other than 13;
 *   403  an Origin header not on the list;
 *   400  anything else (no key, no "sip" subprotocol, a repeated header).
 * origins: a comma-separated list of exact origins ("https://ex.org",
 * compared without case), "*" for any; NULL or "" = any. A request with no
 * Origin (not a browser) passes: Origin guards against other web pages, and
 * a non-browser client could send any value anyway. */
unsigned ws_upgrade_check(const struct ws_upgrade *u, const char *origins);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key "258EAFA5-...")), 28
 * characters and a NUL. EINVAL for an empty key, ENOMEM. */
int ws_accept_key(struct slice key, char out[29]);

/* Appends the answer for status (from ws_upgrade_check) to out: the 101 with
 * Sec-WebSocket-Accept and Sec-WebSocket-Protocol: sip, or a short refusal
 * with Connection: close (426 names the version and protocol wanted). */
int ws_upgrade_answer(const struct ws_upgrade *u, unsigned status, struct buf *out);

/* ---- the opening handshake, client side (RFC 6455 4.1, RFC 7118 4) ---- */

/* Sec-WebSocket-Key for 16 random bytes (the caller draws them): 24
 * characters of base64 and a NUL. */
void ws_client_key(const uint8_t nonce[16], char out[25]);

/* Appends the upgrade request to out: GET path (NULL or "" = "/"), Host
 * (host[:port] as given), Upgrade, Connection, the key, version 13,
 * Sec-WebSocket-Protocol: sip, and Origin when origin is set. EINVAL for a
 * host, path or origin with control characters or spaces (header injection),
 * ENOMEM. */
int ws_client_request(const char *host, const char *path, const char *origin, const char *key,
		      struct buf *out);

/* The server's answer, parsed: a view into the caller's bytes. */
struct ws_response {
	unsigned status;
	struct slice upgrade, accept, protocol, extensions;
	bool conn_upgrade;
	bool dup; /* a header that must appear once came twice */
};

/* Parses the HTTP/1.1 status line and headers at p[0..l) up to the empty
 * line; the same framing and errors as ws_upgrade_parse. The bytes after
 * *used are already frames. */
int ws_response_parse(const char *p, size_t l, size_t max, struct ws_response *r, size_t *used);

/* What a client makes of a parsed answer to its key (RFC 6455 4.1 "the
 * client MUST _Fail the WebSocket Connection_"): 0 = the connection is open:
 * 101, Upgrade: websocket, Connection: upgrade, the accept value of our key,
 * Sec-WebSocket-Protocol exactly "sip" (RFC 7118 4: without it the server
 * speaks no SIP), and no extension (we offered none). ECONNREFUSED: a status
 * other than 101 (r->status says which); EBADMSG: a 101 that breaks a rule. */
int ws_response_check(const struct ws_response *r, const char *key);

/* ---- frames (RFC 6455 5.2) ----
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-------+-+-------------+-------------------------------+
 * |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 * |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 * |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 * | |1|2|3|       |K|             |                               |
 * +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 * |     Extended payload length continued, if payload len == 127  |
 * + - - - - - - - - - - - - - - - +-------------------------------+
 * |                               |Masking-key, if MASK set to 1  |
 * +-------------------------------+-------------------------------+
 * | Masking-key (continued)       |          Payload Data         |
 * +-------------------------------- - - - - - - - - - - - - - - - +
 */

#define WS_HDR_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask) */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* RFC 6455 7.4.1 close codes used here */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_NO_STATUS = 1005, /* never sent: an empty close payload */
	WS_CLOSE_BAD_DATA = 1007,  /* a text message that is not UTF-8 */
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
};

struct ws_frame {
	bool fin;
	uint8_t opcode;
	bool masked;
	uint8_t mask[4];
	size_t hlen; /* header bytes: the payload starts at p + hlen */
	size_t plen; /* payload bytes */
};

/* Parses the frame at p[0..l). from_client: its frames must be masked, a
 * server's must not be (RFC 6455 5.1). max: the largest payload accepted.
 * EBADMSG: reserved bits set (no extension is negotiated), an unknown opcode,
 * a control frame fragmented or longer than 125, a length not in its
 * shortest form or with the top bit set, the masking rule broken; EMSGSIZE:
 * payload above max, known from the header alone; ENODATA: the header or
 * the payload not all there yet. 0: the whole frame (hlen + plen) is at p. */
int ws_frame_parse(const char *p, size_t l, bool from_client, size_t max, struct ws_frame *fr);

/* XORs p[0..l) with the mask, in place (masking and unmasking are one). */
void ws_mask(char *p, size_t l, const uint8_t mask[4]);

/* Writes a frame header for a payload of plen bytes to out (WS_HDR_MAX
 * bytes of room); mask NULL for a server's frame. Returns its length. */
size_t ws_frame_hdr(uint8_t *out, bool fin, enum ws_opcode op, size_t plen, const uint8_t *mask);

/* A close frame's payload (RFC 6455 5.5.1): *code = WS_CLOSE_NO_STATUS when
 * empty. EBADMSG: one byte, a code that may not be sent (RFC 6455 7.4), a
 * reason that is not UTF-8. */
int ws_close_parse(const char *p, size_t l, uint16_t *code);

/* Whether p[0..l) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool ws_utf8_valid(const char *p, size_t l);

/* ---- messages: data frames in order (RFC 6455 5.4) ---- */

struct ws_msg_state {
	uint8_t opcode; /* the message in progress (TEXT, BINARY), 0 = none */
	size_t len;	/* its payload so far */
};

/* Adds a data frame (TEXT, BINARY, CONT) to the message in progress. max:
 * the largest message. EBADMSG: a continuation with no message begun, or a
 * new message begun inside one; EMSGSIZE: above max. 0: *done when this
 * frame ends the message (its opcode in *op; s is reset for the next). */
int ws_msg_add(struct ws_msg_state *s, const struct ws_frame *fr, size_t max, bool *done,
	       uint8_t *op);

#endif
