/* libFuzzer entry point for the TURN pieces of the STUN codec, the peer filter and the credential
 * parsers. */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "stun/stun.h"
#include "turn/turn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a TURN TCP stream: frames one after another, as the server reads them */
	size_t off = 0, ml;
	while (off < size &&
	       stun_frame_turn((const char *)data + off, size - off, 65535 + 20, &ml) == 0) {
		if (ml == 0 || ml > size - off)
			__builtin_trap(); /* a frame is never empty nor beyond the bytes */
		off += ml;
	}
	uint16_t ch;
	const uint8_t *d;
	size_t dl;
	if (stun_chan_decode(data, size, &ch, &d, &dl) == 0 && d + dl > data + size)
		__builtin_trap();

	struct stun_msg m;
	struct turn_filter f;
	memset(&f, 0, sizeof f);
	if (stun_msg_decode(&m, data, size) == 0) {
		for (size_t i = 0; i < m.nattr; i++) {
			const struct stun_attr *a = &m.attr[i];
			uint8_t u8;
			uint16_t u16;
			bool r;
			struct net_addr na, v4;
			switch (a->type) {
			case STUN_ATTR_CHANNEL_NUMBER:
				stun_attr_channel(a, &u16);
				break;
			case STUN_ATTR_REQUESTED_TRANSPORT:
				stun_attr_transport(a, &u8);
				break;
			case STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
			case STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
				stun_attr_family(a, &u8);
				break;
			case STUN_ATTR_EVEN_PORT:
				stun_attr_even_port(a, &r);
				break;
			case STUN_ATTR_XOR_PEER_ADDRESS:
				if (stun_attr_addr(&m, a, &na.u.ss) == 0) {
					turn_peer_check(&f, &na);
					turn_peer_embedded_v4(&na, &v4);
				}
				break;
			case STUN_ATTR_USERNAME: {
				int64_t exp;
				turn_secret_expiry(stun_attr_slice(a), &exp);
				break;
			}
			case STUN_ATTR_NONCE: {
				static const uint8_t key[32];
				struct net_addr src;
				memset(&src, 0, sizeof src);
				src.u.in.sin_family = AF_INET;
				turn_nonce_check(key, "realm", &src, stun_attr_slice(a), 1000, 600);
				break;
			}
			}
		}
	}
	return 0;
}
