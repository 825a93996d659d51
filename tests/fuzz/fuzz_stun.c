/* libFuzzer entry point for the STUN codec and the Binding responder. */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "stun/stun.h"
#include "stund/stund.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct stun_msg *m)
{
	for (size_t i = 0; i < m->nattr; i++) {
		const struct stun_attr *a = &m->attr[i];
		struct sockaddr_storage ss;
		uint16_t code, list[8];
		uint32_t u32;
		uint64_t u64;
		size_t n;
		struct slice s;
		switch (a->type) {
		case STUN_ATTR_MAPPED_ADDRESS:
		case STUN_ATTR_XOR_MAPPED_ADDRESS:
		case STUN_ATTR_XOR_PEER_ADDRESS:
		case STUN_ATTR_XOR_RELAYED_ADDRESS:
		case STUN_ATTR_ALTERNATE_SERVER:
		case STUN_ATTR_RESPONSE_ORIGIN:
		case STUN_ATTR_OTHER_ADDRESS:
			stun_attr_addr(m, a, &ss);
			break;
		case STUN_ATTR_ERROR_CODE:
			stun_attr_error(a, &code, &s);
			break;
		case STUN_ATTR_UNKNOWN_ATTRIBUTES:
			stun_attr_unknown(a, list, ARRAY_SIZE(list), &n);
			break;
		case STUN_ATTR_PASSWORD_ALGORITHMS:
			stun_attr_pwalgs(a, list, ARRAY_SIZE(list), &n);
			break;
		case STUN_ATTR_CHANGE_REQUEST:
			stun_attr_change(a, &u32);
			break;
		case STUN_ATTR_RESPONSE_PORT:
			stun_attr_response_port(a, &code);
			break;
		case STUN_ATTR_ICE_CONTROLLED:
		case STUN_ATTR_ICE_CONTROLLING:
			stun_attr_u64(a, &u64);
			break;
		default:
			stun_attr_u32(a, &u32);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t ml;
	stun_frame((const char *)data, size, STUN_MAX_MSG, &ml);
	stun_is_message(data, size);

	struct stun_msg m;
	if (stun_msg_decode(&m, data, size) == 0) {
		stun_msg_check_fingerprint(&m);
		stun_msg_check_integrity(&m, "VOkJxbRl1RmTxUk/WvJxBt", 22);
		stun_msg_check_integrity_sha256(&m, "key", 3);
		uint16_t unk[8];
		stun_msg_unknown(&m, NULL, 0, unk, ARRAY_SIZE(unk));
		walk(&m);
	}

	/* the responder, as the SIP edge calls it */
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(5060)};
	src.sin_addr.s_addr = htonl(0xc6120001);
	struct buf resp;
	buf_init(&resp);
	if (stund_answer((struct sockaddr *)&src, data, size, &resp) == 0 &&
	    stun_msg_decode(&m, resp.data, resp.len) != 0)
		__builtin_trap(); /* what we send must decode */
	buf_free(&resp);
	return 0;
}
