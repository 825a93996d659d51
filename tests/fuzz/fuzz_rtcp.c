/* Fuzz target for the RTCP report parser: parse, rebuild, parse again, same report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rtp/rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtcp_report r, again;
	if (rtcp_report_parse(&r, data, size))
		return 0;
	struct rtcp_hdr h;
	CHECK(rtcp_parse(&h, data, size) == 0);
	CHECK(r.n_blocks <= RTCP_MAX_BLOCKS);
	CHECK(strlen(r.cname) <= RTCP_CNAME_MAX);
	CHECK(r.bye == h.has_bye);
	/* what we parsed, we can write, and it reads back the same */
	uint8_t out[8 + 28 + 24 * RTCP_MAX_BLOCKS + 8 + 260 + 8];
	size_t len = 0;
	CHECK(rtcp_report_build(&r, r.cname, out, sizeof out, &len) == 0);
	CHECK(len % 4 == 0 && len <= sizeof out);
	CHECK(rtcp_report_parse(&again, out, len) == 0);
	CHECK(again.sr == r.sr && again.ssrc == r.ssrc && again.n_blocks == r.n_blocks);
	CHECK(strcmp(again.cname, r.cname) == 0 && again.bye == r.bye);
	for (unsigned i = 0; i < r.n_blocks; i++)
		CHECK(memcmp(&again.blocks[i], &r.blocks[i], sizeof r.blocks[i]) == 0);
	uint32_t ms;
	if (r.n_blocks)
		(void)rtcp_rtt_ms(0x12345678u, r.blocks[0].lsr, r.blocks[0].dlsr, &ms);
	return 0;
}
