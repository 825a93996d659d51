/* libFuzzer entry point for the ua's reading of a server's challenge (401/407) and its answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ua/ua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sip_msg msg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	if (sip_msg_parse(&msg, p, size, false, NULL) == 0) {
		for (int proxy = 0; proxy < 2; proxy++) {
			struct ua_challenge ch;
			if (ua_challenge_pick(&msg, proxy, &ch))
				continue;
			struct buf b;
			buf_init(&b);
			if (ua_digest_credentials(&ch, "alice", "pw", "REGISTER", "sip:example.test", 1,
						  "cn", &b) == 0) {
				/* whatever the server wrote, our header stays one line:
				 * a challenge cannot add lines to the REGISTER */
				if (memchr(b.data, '\r', b.len) || memchr(b.data, '\n', b.len))
					abort();
			}
			buf_free(&b);
		}
	}
	free(p);
	return 0;
}
