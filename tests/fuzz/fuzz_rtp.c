/* Fuzz target for the RTP/RTCP codec: demux, both parsers, bounds of what they report. */
#include <stdint.h>
#include <stdlib.h>

#include "rtp/rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

static struct rtp_seq seq; /* across inputs, like a long stream */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum rtp_kind k = rtp_demux(data, size);
	struct rtp_hdr h;
	if (rtp_parse(&h, data, size) == 0) {
		CHECK(size >= 12);
		CHECK(h.payload_off >= 12 && h.payload_off <= size);
		CHECK(h.payload_off + h.payload_len <= size);
		CHECK(h.pt < 64 || h.pt > 95);
		CHECK(k == RTP_KIND_RTP);
		uint64_t before = seq.gaps;
		uint32_t lost = rtp_seq_update(&seq, h.ssrc, h.seq);
		CHECK(lost < RTP_SEQ_MAX_DROPOUT);
		CHECK(seq.gaps == before + lost);
	}
	struct rtcp_hdr c;
	if (rtcp_parse(&c, data, size) == 0) {
		CHECK(size >= 8 && c.packets >= 1 && c.packets <= size / 4);
		CHECK(c.pt >= 192 && c.pt <= 223);
		CHECK(k == RTP_KIND_RTCP);
	}
	(void)rtp_kind_name(k);
	return 0;
}
