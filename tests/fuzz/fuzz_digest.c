/* libFuzzer entry point for Digest credentials (Authorization / Proxy-Authorization values). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "sip/sip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct slice s, const char *p, size_t l)
{
	if (!s.p)
		return;
	if (s.p < p || s.p + s.l > p + l)
		abort(); /* every slice points into the value */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes: ASan sees any read past the value */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	struct slice v = {p, size};
	struct sip_digest_cred c;
	if (sip_digest_parse(v, &c) == 0) {
		const struct slice *all[] = {&c.username, &c.realm,	&c.nonce,    &c.uri,
					     &c.response, &c.algorithm, &c.cnonce,   &c.opaque,
					     &c.qop,	  &c.nc,	&c.userhash, &c.stale};
		for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
			inside(*all[i], p, size);
		enum store_cred_alg a;
		auth_alg_parse(c.algorithm, &a);
		/* the same input parses the same way twice */
		struct sip_digest_cred c2;
		if (sip_digest_parse(v, &c2) != 0 || memcmp(&c, &c2, sizeof c) != 0)
			abort();
	}
	free(p);
	return 0;
}
