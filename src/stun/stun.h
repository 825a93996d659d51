/* stun: RFC 8489 / RFC 5780 / RFC 3489 message codec; bytes <-> structures, no I/O. */
#ifndef PINHOLE_STUN_H
#define PINHOLE_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"

/*
 * Ownership: a decoded struct stun_msg is a view into the caller's bytes (the
 * attribute values point into them); it owns nothing and needs no free. The
 * encoder appends to a caller-owned struct buf. Nothing here logs or does I/O.
 *
 * Errors: 0, or EBADMSG (malformed), ENODATA (need more bytes, TCP framing),
 * ENOTSUP (valid but not supported), ENOENT (attribute absent), EACCES (an
 * integrity or fingerprint value that does not match), ENOMEM, EMSGSIZE.
 */

/* RFC 8489 5: the fixed header.
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |0 0|     STUN Message Type     |         Message Length        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                         Magic Cookie                          |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                     Transaction ID (96 bits)                  |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * RFC 3489 ("classic") had a 128-bit transaction id where the cookie is now.
 */
#define STUN_HDR_LEN 20
#define STUN_MAGIC_COOKIE 0x2112a442u
#define STUN_TID_LEN 12
#define STUN_FINGERPRINT_XOR 0x5354554eu
#define STUN_MAX_MSG 65555 /* header plus the largest 16-bit length */
#define STUN_MAX_ATTRS 48  /* more is refused (ENOTSUP): no real message has that many */

enum stun_class {
	STUN_CLASS_REQUEST = 0,
	STUN_CLASS_INDICATION = 1,
	STUN_CLASS_SUCCESS = 2,
	STUN_CLASS_ERROR = 3,
};

enum stun_method {
	STUN_METHOD_BINDING = 0x001,
	/* RFC 8656 (TURN), for the turn role */
	STUN_METHOD_ALLOCATE = 0x003,
	STUN_METHOD_REFRESH = 0x004,
	STUN_METHOD_SEND = 0x006,
	STUN_METHOD_DATA = 0x007,
	STUN_METHOD_CREATE_PERMISSION = 0x008,
	STUN_METHOD_CHANNEL_BIND = 0x009,
};

/* Attribute types. Below 0x8000 a receiver must understand them (RFC 8489 14). */
enum stun_attr_type {
	STUN_ATTR_MAPPED_ADDRESS = 0x0001,
	STUN_ATTR_RESPONSE_ADDRESS = 0x0002, /* RFC 3489 only */
	STUN_ATTR_CHANGE_REQUEST = 0x0003,   /* RFC 5780 7.2 (and RFC 3489) */
	STUN_ATTR_SOURCE_ADDRESS = 0x0004,   /* RFC 3489 only */
	STUN_ATTR_CHANGED_ADDRESS = 0x0005,  /* RFC 3489 only */
	STUN_ATTR_USERNAME = 0x0006,
	STUN_ATTR_PASSWORD = 0x0007, /* RFC 3489 only */
	STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
	STUN_ATTR_ERROR_CODE = 0x0009,
	STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000a,
	STUN_ATTR_REFLECTED_FROM = 0x000b, /* RFC 3489 only */
	STUN_ATTR_CHANNEL_NUMBER = 0x000c, /* RFC 8656 */
	STUN_ATTR_LIFETIME = 0x000d,
	STUN_ATTR_XOR_PEER_ADDRESS = 0x0012,
	STUN_ATTR_DATA = 0x0013,
	STUN_ATTR_REALM = 0x0014,
	STUN_ATTR_NONCE = 0x0015,
	STUN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,
	STUN_ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017,
	STUN_ATTR_EVEN_PORT = 0x0018,
	STUN_ATTR_REQUESTED_TRANSPORT = 0x0019,
	STUN_ATTR_DONT_FRAGMENT = 0x001a,
	STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001c,
	STUN_ATTR_PASSWORD_ALGORITHM = 0x001d,
	STUN_ATTR_USERHASH = 0x001e,
	STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
	STUN_ATTR_RESERVATION_TOKEN = 0x0022,
	STUN_ATTR_PRIORITY = 0x0024,	  /* RFC 8445 */
	STUN_ATTR_USE_CANDIDATE = 0x0025, /* RFC 8445 */
	STUN_ATTR_PADDING = 0x0026,	  /* RFC 5780 7.6 */
	STUN_ATTR_RESPONSE_PORT = 0x0027, /* RFC 5780 7.5 */
	STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000, /* RFC 8656 18.11 */
	STUN_ATTR_ADDRESS_ERROR_CODE = 0x8001,	      /* RFC 8656 18.12 */
	STUN_ATTR_PASSWORD_ALGORITHMS = 0x8002,
	STUN_ATTR_ALTERNATE_DOMAIN = 0x8003,
	STUN_ATTR_SOFTWARE = 0x8022,
	STUN_ATTR_ALTERNATE_SERVER = 0x8023,
	STUN_ATTR_FINGERPRINT = 0x8028,
	STUN_ATTR_ICE_CONTROLLED = 0x8029,
	STUN_ATTR_ICE_CONTROLLING = 0x802a,
	STUN_ATTR_RESPONSE_ORIGIN = 0x802b, /* RFC 5780 7.3 */
	STUN_ATTR_OTHER_ADDRESS = 0x802c,   /* RFC 5780 7.4 */
};

/* RFC 5780 7.2 CHANGE-REQUEST flags */
#define STUN_CHANGE_IP 0x04u
#define STUN_CHANGE_PORT 0x02u

/* RFC 8489 18.5 password algorithms */
enum stun_pwalg {
	STUN_PWALG_MD5 = 0x0001,
	STUN_PWALG_SHA256 = 0x0002,
};

/* Error codes used by the roles (RFC 8489 14.8, RFC 8656 19) */
enum stun_error {
	STUN_ERR_TRY_ALTERNATE = 300,
	STUN_ERR_BAD_REQUEST = 400,
	STUN_ERR_UNAUTHORIZED = 401,
	STUN_ERR_FORBIDDEN = 403,
	STUN_ERR_UNKNOWN_ATTRIBUTE = 420,
	STUN_ERR_ALLOCATION_MISMATCH = 437,
	STUN_ERR_STALE_NONCE = 438,
	STUN_ERR_ADDRESS_FAMILY = 440,
	STUN_ERR_WRONG_CREDENTIALS = 441,
	STUN_ERR_UNSUPPORTED_TRANSPORT = 442,
	STUN_ERR_PEER_FAMILY_MISMATCH = 443,
	STUN_ERR_QUOTA = 486,
	STUN_ERR_SERVER_ERROR = 500,
	STUN_ERR_CAPACITY = 508,
};

/* ---- header ---- */

/* Message type <-> method and class (RFC 8489 5: the class bits are C1 at bit 8
 * and C0 at bit 4, interleaved with the 12 method bits). */
uint16_t stun_type(uint16_t method, enum stun_class cls);
uint16_t stun_type_method(uint16_t type);
enum stun_class stun_type_class(uint16_t type);

/* Demux on a port shared with another protocol (SIP, RTP): true when p holds a
 * whole STUN message with the magic cookie: top two bits zero, length a
 * multiple of 4 that matches len (RFC 8489 7, RFC 7983). */
bool stun_is_message(const void *p, size_t len);
/* Same without the cookie test: an RFC 3489 message may be there. Weaker. */
bool stun_is_message_classic(const void *p, size_t len);

/* TCP framing (net_frame_h shape): 0 and *msglen when a whole message starts at
 * p, ENODATA when more bytes are needed, EBADMSG when it is not STUN or it is
 * longer than max. */
int stun_frame(const char *p, size_t l, size_t max, size_t *msglen);

/* ---- decoding ---- */

struct stun_attr {
	uint16_t type;
	uint16_t len;	  /* value length, padding excluded */
	const uint8_t *v; /* into the message */
	size_t off;	  /* offset of the attribute header in the message */
};

struct stun_msg {
	const uint8_t *p; /* the whole message; borrowed */
	size_t len;
	uint16_t type, method;
	enum stun_class cls;
	bool classic;	    /* RFC 3489: no magic cookie */
	const uint8_t *tid; /* 12 bytes at p + 8 (for classic, p + 4 holds 16) */
	size_t nattr;
	struct stun_attr attr[STUN_MAX_ATTRS];
	int mi, mi256, fp; /* index into attr of the integrity / fingerprint, or -1 */
};

/* Decodes a whole message of exactly len bytes (one datagram, or one frame).
 * Checks the header and the TLV layout; validates the fixed-size attributes
 * (integrity and fingerprint lengths). Does not verify integrity or the
 * fingerprint. Attributes after MESSAGE-INTEGRITY other than
 * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and anything after FINGERPRINT,
 * are ignored (RFC 8489 14.5, 14.6, 14.7). */
int stun_msg_decode(struct stun_msg *m, const void *p, size_t len);

/* First attribute of a type, or NULL. */
const struct stun_attr *stun_msg_attr(const struct stun_msg *m, uint16_t type);
/* Whether the codec knows how to read a type. */
bool stun_attr_known(uint16_t type);
/* Comprehension-required attributes (type < 0x8000) of m that are neither known
 * to the codec nor in extra_known[]; written to out (at most cap, without
 * duplicates); returns how many. */
size_t stun_msg_unknown(const struct stun_msg *m, const uint16_t *extra_known, size_t nextra,
			uint16_t *out, size_t cap);

/* Value as a slice (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN, ...). */
struct slice stun_attr_slice(const struct stun_attr *a);
/* Addresses (MAPPED-ADDRESS family): plain, or XORed for the XOR-* types.
 * EBADMSG on a bad family or length. */
int stun_attr_addr(const struct stun_msg *m, const struct stun_attr *a,
		   struct sockaddr_storage *out);
/* Finds and decodes an address attribute; ENOENT if absent. */
int stun_msg_addr(const struct stun_msg *m, uint16_t type, struct sockaddr_storage *out);
/* ERROR-CODE: code is class * 100 + number (300..699); reason is UTF-8. */
int stun_attr_error(const struct stun_attr *a, uint16_t *code, struct slice *reason);
/* UNKNOWN-ATTRIBUTES: writes at most cap types; *n is how many the attribute lists. */
int stun_attr_unknown(const struct stun_attr *a, uint16_t *out, size_t cap, size_t *n);
/* CHANGE-REQUEST: STUN_CHANGE_IP | STUN_CHANGE_PORT. */
int stun_attr_change(const struct stun_attr *a, uint32_t *flags);
/* RESPONSE-PORT */
int stun_attr_response_port(const struct stun_attr *a, uint16_t *port);
/* PASSWORD-ALGORITHMS: writes at most cap algorithm numbers; *n how many listed. */
int stun_attr_pwalgs(const struct stun_attr *a, uint16_t *out, size_t cap, size_t *n);
/* 32-bit and 64-bit values (PRIORITY, LIFETIME, ICE-CONTROLLED, ...). */
int stun_attr_u32(const struct stun_attr *a, uint32_t *v);
int stun_attr_u64(const struct stun_attr *a, uint64_t *v);

/* ---- integrity (RFC 8489 9, 14.5, 14.6, 14.7) ---- */

/* Checks MESSAGE-INTEGRITY (HMAC-SHA1) with key: 0, ENOENT (absent) or EACCES. */
int stun_msg_check_integrity(const struct stun_msg *m, const void *key, size_t keylen);
/* Same for MESSAGE-INTEGRITY-SHA256 (possibly truncated to 16..32 bytes). */
int stun_msg_check_integrity_sha256(const struct stun_msg *m, const void *key, size_t keylen);
/* Checks FINGERPRINT: 0, ENOENT (absent) or EACCES. */
int stun_msg_check_fingerprint(const struct stun_msg *m);

/* Long-term key (RFC 8489 9.2.2): H(username ":" realm ":" password) with MD5
 * (16 bytes) or SHA-256 (32 bytes). The password is used as given (no
 * OpaqueString preparation: callers pass prepared strings). key holds 32. */
int stun_key_long_term(enum stun_pwalg alg, struct slice user, struct slice realm,
		       struct slice pass, uint8_t key[32], size_t *keylen);
/* Plain HMACs with the codec's cached contexts (nonces, shared-secret
 * passwords): 0 or ENOTSUP. */
int stun_hmac_sha1(const void *key, size_t keylen, const void *msg, size_t len, uint8_t out[20]);
int stun_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len, uint8_t out[32]);
/* USERHASH (RFC 8489 14.4): SHA-256(username ":" realm). */
void stun_userhash(struct slice user, struct slice realm, uint8_t out[32]);

/* ---- encoding ----
 *
 * An encoder appends one message to a buf (after whatever the buf holds, so a
 * TCP or ChannelData prefix can come first). Errors are sticky: chain the calls
 * and look at stun_enc_end() once. The header length is kept current, so the
 * integrity and fingerprint calls see the right value.
 */
struct stun_enc {
	struct buf *b;
	size_t start; /* offset of the header in b */
	int err;
};

/* Header with the magic cookie; tid may be NULL for a fresh random one. */
void stun_enc_begin(struct stun_enc *e, struct buf *b, uint16_t method, enum stun_class cls,
		    const uint8_t *tid);
/* Header that answers req: same method, class cls, and the request's bytes 4..19
 * copied as they are (so RFC 3489 128-bit transaction ids echo too). */
void stun_enc_begin_reply(struct stun_enc *e, struct buf *b, const struct stun_msg *req,
			  enum stun_class cls);
/* Any attribute; padded with zeros to 4 bytes. */
void stun_enc_attr(struct stun_enc *e, uint16_t type, const void *v, size_t len);
void stun_enc_str(struct stun_enc *e, uint16_t type, struct slice s);
void stun_enc_u32(struct stun_enc *e, uint16_t type, uint32_t v);
void stun_enc_u64(struct stun_enc *e, uint16_t type, uint64_t v);
/* Address attribute: plain, or XORed for the XOR-* types. EAFNOSUPPORT for
 * families other than AF_INET/AF_INET6 (v4-mapped IPv6 is written as IPv4). */
void stun_enc_addr(struct stun_enc *e, uint16_t type, const struct sockaddr *sa);
void stun_enc_error(struct stun_enc *e, uint16_t code, const char *reason);
void stun_enc_unknown(struct stun_enc *e, const uint16_t *types, size_t n);
void stun_enc_change(struct stun_enc *e, uint32_t flags);
void stun_enc_response_port(struct stun_enc *e, uint16_t port);
/* PADDING of len bytes (zeros). */
void stun_enc_padding(struct stun_enc *e, size_t len);
void stun_enc_pwalgs(struct stun_enc *e, const uint16_t *algs, size_t n);
/* MESSAGE-INTEGRITY (20 bytes) / MESSAGE-INTEGRITY-SHA256 (32 bytes) over what
 * is there now. Add FINGERPRINT after, nothing else. */
void stun_enc_integrity(struct stun_enc *e, const void *key, size_t keylen);
void stun_enc_integrity_sha256(struct stun_enc *e, const void *key, size_t keylen);
void stun_enc_fingerprint(struct stun_enc *e);
/* Current message length (header included). */
size_t stun_enc_len(const struct stun_enc *e);
/* 0 or the first error (ENOMEM, EMSGSIZE, EAFNOSUPPORT, EINVAL). */
int stun_enc_end(struct stun_enc *e);

/* ---- TURN (RFC 8656) values and ChannelData ---- */

/* RFC 8656 12: channel numbers 0x4000..0x4FFF. RFC 5766 allowed up to
 * 0x7FFF and clients still pick those (coturn's own uclient), so the framing
 * takes a first byte 0x40..0x7F, which no STUN message starts with, and the
 * server accepts the old range too (STUN_CHAN_MAX_5766). */
#define STUN_CHAN_MIN 0x4000u
#define STUN_CHAN_MAX 0x4fffu
#define STUN_CHAN_MAX_5766 0x7fffu
#define STUN_CHAN_HDR 4
#define STUN_PROTO_UDP 17 /* REQUESTED-TRANSPORT */
#define STUN_PROTO_TCP 6
#define STUN_FAMILY_IPV4 0x01 /* REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY */
#define STUN_FAMILY_IPV6 0x02

/* Whether p starts a ChannelData message (first byte 0x40..0x7F). */
bool stun_is_channel_data(const void *p, size_t len);
/* ChannelData over a datagram (RFC 8656 12.5): the length field may be
 * shorter than what follows (padding, or junk that is ignored), never
 * longer. *chan and the data (into p) out. EBADMSG otherwise. */
int stun_chan_decode(const void *p, size_t len, uint16_t *chan, const uint8_t **data,
		     size_t *dlen);
/* ChannelData header:
 *
 *  0                   1                   2                   3
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Channel Number        |            Length             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                      Application Data  ...                   ...
 */
void stun_chan_header(uint8_t hdr[STUN_CHAN_HDR], uint16_t chan, uint16_t len);
/* Bytes after the data on a stream transport: padding to a multiple of 4
 * (RFC 8656 12.5 says it MUST be there over TCP and TLS). */
size_t stun_chan_pad(size_t dlen);
/* TCP framing for a TURN port, where STUN messages and ChannelData
 * interleave (net_frame_h shape as stun_frame). A ChannelData frame's length
 * includes its padding. */
int stun_frame_turn(const char *p, size_t l, size_t max, size_t *msglen);

/* CHANNEL-NUMBER: number in the top 16 bits, RFFU below. */
int stun_attr_channel(const struct stun_attr *a, uint16_t *chan);
void stun_enc_channel(struct stun_enc *e, uint16_t chan);
/* REQUESTED-TRANSPORT: protocol number in the first byte. */
int stun_attr_transport(const struct stun_attr *a, uint8_t *proto);
void stun_enc_transport(struct stun_enc *e, uint8_t proto);
/* REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY: family in the first
 * byte (0x01 IPv4, 0x02 IPv6; anything else EBADMSG). */
int stun_attr_family(const struct stun_attr *a, uint8_t *family);
void stun_enc_family(struct stun_enc *e, uint16_t type, uint8_t family);
/* EVEN-PORT: the R bit (reserve the next port too). */
int stun_attr_even_port(const struct stun_attr *a, bool *reserve);
void stun_enc_even_port(struct stun_enc *e, bool reserve);
/* ADDRESS-ERROR-CODE (RFC 8656 18.12): the family whose allocation failed, and why. */
void stun_enc_address_error(struct stun_enc *e, uint8_t family, uint16_t code);

/* coturn's shared-secret scheme (its use-auth-secret, the "TURN REST API"):
 * the password of username (EXPIRY[:USER]) is base64(HMAC-SHA1(secret,
 * username)), 28 characters; out gets them and a NUL. 0 or EINVAL. Used by
 * the server to check and by the client to answer. */
int stun_secret_password(struct slice secret, struct slice username, char out[29]);

/* Human-readable names, for logs and the probe ("XOR-MAPPED-ADDRESS"). */
const char *stun_attr_name(uint16_t type);
const char *stun_method_name(uint16_t method);
const char *stun_error_reason(uint16_t code);

#endif
