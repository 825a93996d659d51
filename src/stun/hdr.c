/* STUN header: message type bits, demultiplexing, TCP framing and names. */
#include <errno.h>

#include "stun.h"

/* RFC 8489 5: the message type interleaves class and method.
 *
 *  0                 1
 *  2  3  4 5 6 7 8 9 0 1 2 3 4 5
 * +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
 * |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
 * |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
 * +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
 */
uint16_t stun_type(uint16_t method, enum stun_class cls)
{
	unsigned m = method & 0xfff, c = (unsigned)cls & 3;
	return (uint16_t)((m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) |
			  ((c & 1) << 4) | ((c & 2) << 7));
}

uint16_t stun_type_method(uint16_t type)
{
	return (uint16_t)((type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2));
}

enum stun_class stun_type_class(uint16_t type)
{
	return (enum stun_class)(((type >> 4) & 1) | ((type >> 7) & 2));
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool stun_is_message_classic(const void *vp, size_t len)
{
	const uint8_t *p = vp;
	if (len < STUN_HDR_LEN || (p[0] & 0xc0) != 0)
		return false;
	size_t ml = rd16(p + 2);
	return (ml & 3) == 0 && ml + STUN_HDR_LEN == len;
}

/* RFC 7983 5 demultiplexes by first byte (0..3 is STUN); the cookie and the
 * length make a false positive on SIP text or RTP practically impossible. */
bool stun_is_message(const void *vp, size_t len)
{
	const uint8_t *p = vp;
	return stun_is_message_classic(p, len) && rd32(p + 4) == STUN_MAGIC_COOKIE;
}

int stun_frame(const char *cp, size_t l, size_t max, size_t *msglen)
{
	const uint8_t *p = (const uint8_t *)cp;
	if (l >= 1 && (p[0] & 0xc0) != 0)
		return EBADMSG;
	if (l < 4)
		return ENODATA;
	size_t ml = rd16(p + 2);
	if (ml & 3)
		return EBADMSG;
	size_t total = ml + STUN_HDR_LEN;
	if (total > max)
		return EBADMSG;
	if (l < total)
		return ENODATA;
	*msglen = total;
	return 0;
}

const char *stun_attr_name(uint16_t type)
{
	switch (type) {
	case STUN_ATTR_MAPPED_ADDRESS:
		return "MAPPED-ADDRESS";
	case STUN_ATTR_RESPONSE_ADDRESS:
		return "RESPONSE-ADDRESS";
	case STUN_ATTR_CHANGE_REQUEST:
		return "CHANGE-REQUEST";
	case STUN_ATTR_SOURCE_ADDRESS:
		return "SOURCE-ADDRESS";
	case STUN_ATTR_CHANGED_ADDRESS:
		return "CHANGED-ADDRESS";
	case STUN_ATTR_USERNAME:
		return "USERNAME";
	case STUN_ATTR_PASSWORD:
		return "PASSWORD";
	case STUN_ATTR_MESSAGE_INTEGRITY:
		return "MESSAGE-INTEGRITY";
	case STUN_ATTR_ERROR_CODE:
		return "ERROR-CODE";
	case STUN_ATTR_UNKNOWN_ATTRIBUTES:
		return "UNKNOWN-ATTRIBUTES";
	case STUN_ATTR_REFLECTED_FROM:
		return "REFLECTED-FROM";
	case STUN_ATTR_CHANNEL_NUMBER:
		return "CHANNEL-NUMBER";
	case STUN_ATTR_LIFETIME:
		return "LIFETIME";
	case STUN_ATTR_XOR_PEER_ADDRESS:
		return "XOR-PEER-ADDRESS";
	case STUN_ATTR_DATA:
		return "DATA";
	case STUN_ATTR_REALM:
		return "REALM";
	case STUN_ATTR_NONCE:
		return "NONCE";
	case STUN_ATTR_XOR_RELAYED_ADDRESS:
		return "XOR-RELAYED-ADDRESS";
	case STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
		return "REQUESTED-ADDRESS-FAMILY";
	case STUN_ATTR_EVEN_PORT:
		return "EVEN-PORT";
	case STUN_ATTR_REQUESTED_TRANSPORT:
		return "REQUESTED-TRANSPORT";
	case STUN_ATTR_DONT_FRAGMENT:
		return "DONT-FRAGMENT";
	case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
		return "MESSAGE-INTEGRITY-SHA256";
	case STUN_ATTR_PASSWORD_ALGORITHM:
		return "PASSWORD-ALGORITHM";
	case STUN_ATTR_USERHASH:
		return "USERHASH";
	case STUN_ATTR_XOR_MAPPED_ADDRESS:
		return "XOR-MAPPED-ADDRESS";
	case STUN_ATTR_RESERVATION_TOKEN:
		return "RESERVATION-TOKEN";
	case STUN_ATTR_PRIORITY:
		return "PRIORITY";
	case STUN_ATTR_USE_CANDIDATE:
		return "USE-CANDIDATE";
	case STUN_ATTR_PADDING:
		return "PADDING";
	case STUN_ATTR_RESPONSE_PORT:
		return "RESPONSE-PORT";
	case STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
		return "ADDITIONAL-ADDRESS-FAMILY";
	case STUN_ATTR_ADDRESS_ERROR_CODE:
		return "ADDRESS-ERROR-CODE";
	case STUN_ATTR_PASSWORD_ALGORITHMS:
		return "PASSWORD-ALGORITHMS";
	case STUN_ATTR_ALTERNATE_DOMAIN:
		return "ALTERNATE-DOMAIN";
	case STUN_ATTR_SOFTWARE:
		return "SOFTWARE";
	case STUN_ATTR_ALTERNATE_SERVER:
		return "ALTERNATE-SERVER";
	case STUN_ATTR_FINGERPRINT:
		return "FINGERPRINT";
	case STUN_ATTR_ICE_CONTROLLED:
		return "ICE-CONTROLLED";
	case STUN_ATTR_ICE_CONTROLLING:
		return "ICE-CONTROLLING";
	case STUN_ATTR_RESPONSE_ORIGIN:
		return "RESPONSE-ORIGIN";
	case STUN_ATTR_OTHER_ADDRESS:
		return "OTHER-ADDRESS";
	}
	return NULL;
}

bool stun_attr_known(uint16_t type)
{
	/* RFC 3489's RESPONSE-ADDRESS, PASSWORD and REFLECTED-FROM are named but not
	 * understood: nothing here acts on them, so a request carrying them must get
	 * 420 rather than be answered as if they had been honoured. */
	switch (type) {
	case STUN_ATTR_RESPONSE_ADDRESS:
	case STUN_ATTR_PASSWORD:
	case STUN_ATTR_REFLECTED_FROM:
		return false;
	}
	return stun_attr_name(type) != NULL;
}

const char *stun_method_name(uint16_t method)
{
	switch (method) {
	case STUN_METHOD_BINDING:
		return "Binding";
	case STUN_METHOD_ALLOCATE:
		return "Allocate";
	case STUN_METHOD_REFRESH:
		return "Refresh";
	case STUN_METHOD_SEND:
		return "Send";
	case STUN_METHOD_DATA:
		return "Data";
	case STUN_METHOD_CREATE_PERMISSION:
		return "CreatePermission";
	case STUN_METHOD_CHANNEL_BIND:
		return "ChannelBind";
	}
	return NULL;
}

const char *stun_error_reason(uint16_t code)
{
	switch (code) {
	case 300:
		return "Try Alternate";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 405:
		return "Mismatch";
	case 420:
		return "Unknown Attribute";
	case 437:
		return "Allocation Mismatch";
	case 438:
		return "Stale Nonce";
	case 440:
		return "Address Family not Supported";
	case 441:
		return "Wrong Credentials";
	case 442:
		return "Unsupported Transport Protocol";
	case 443:
		return "Peer Address Family Mismatch";
	case 486:
		return "Allocation Quota Reached";
	case 500:
		return "Server Error";
	case 508:
		return "Insufficient Capacity";
	}
	return "Error";
}
