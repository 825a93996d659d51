/* Fuzz target for the WAV reader: the data it reports lies inside the input, and reads stay there.
 */
#include <errno.h>
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
	struct rtp_wav w;
	int err = rtp_wav_parse(&w, data, size);
	CHECK(memchr(w.why, '\0', sizeof w.why) != NULL);
	if (err) {
		CHECK(err == EBADMSG || err == ENOTSUP);
		CHECK(w.why[0] != '\0');
		return 0;
	}
	CHECK(w.data_off <= size && w.data_len <= size - w.data_off);
	CHECK(w.data_len % 2 == 0);
	CHECK(w.format == 1 && w.channels == 1 && w.rate == 8000 && w.bits == 16);
	int64_t sum = 0;
	for (size_t i = 0; i < w.data_len / 2; i++)
		sum += rtp_wav_sample(&w, data, i);
	(void)sum;
	return 0;
}
