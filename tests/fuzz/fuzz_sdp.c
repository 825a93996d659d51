/* Fuzz target for the SDP codec: parse, rewrite, and re-parse what was written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdp/sdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzzer must find crashes, not just sanitizer reports: a broken
 * invariant aborts. */
#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

static void check_layout(const struct sdp *s, struct slice in)
{
	const char *end = in.p + in.l;
	CHECK(s->n_media <= SDP_MAX_MEDIA);
	CHECK(s->session.p == in.p && s->session.l <= in.l);
	const char *prev = in.p + s->session.l;
	for (size_t i = 0; i < s->n_media; i++) {
		const struct sdp_media *m = &s->media[i];
		CHECK(m->section.p == prev);
		CHECK(m->section.p + m->section.l <= end);
		CHECK(m->section.l >= 2 && m->section.p[0] == 'm');
		prev = m->section.p + m->section.l;
		if (m->conn_level != SDP_CONN_NONE)
			CHECK(m->conn.present && m->conn.addr.l > 0);
	}
	/* only empty lines may follow the last section */
	for (const char *p = prev; p < end; p++)
		CHECK(*p == '\r' || *p == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slice in = {(const char *)data, size};
	struct sdp s, o;
	struct buf out;
	int err = sdp_parse(&s, in);
	if (err)
		return 0;
	check_layout(&s, in);
	buf_init(&out);

	/* nothing asked: every line comes back verbatim */
	struct sdp_rw none = {0};
	CHECK(sdp_rewrite(&s, &none, &out) == 0);
	size_t content = s.n_media ? (size_t)(s.media[s.n_media - 1].section.p +
					      s.media[s.n_media - 1].section.l - in.p)
				   : s.session.l;
	CHECK(out.len >= content && out.len <= content + 2);
	CHECK(memcmp(out.data, in.p, content) == 0);
	CHECK(sdp_parse(&o, buf_slice(&out)) == 0);

	/* everything asked, options chosen by the input's last byte */
	uint8_t opt = size ? data[size - 1] : 0;
	struct sdp_media_rw mrw[SDP_MAX_MEDIA];
	for (size_t i = 0; i < s.n_media; i++) {
		bool v6 = (opt >> 1) & 1;
		mrw[i] = (struct sdp_media_rw){
		    .keep = ((opt >> 2) & 1) && (i & 1),
		    .af = v6 ? SDP_AF_IP6 : SDP_AF_IP4,
		    .addr = v6 ? SLICE_LIT("2001:db8::7") : SLICE_LIT("198.18.0.7"),
		    .port = (uint16_t)(30000 + 2 * i),
		    .rtcp_port = (opt & 8) ? 0 : (uint16_t)(30001 + 2 * i),
		    .rtcp_mux = opt & 16,
		};
		/* ICE (docs/ice.md), by the byte before: the relay as a candidate
		 * or as an ICE-lite agent */
		uint8_t opt2 = size > 1 ? data[size - 2] : 0;
		mrw[i].ice_candidate = (opt2 & 1) && ((i + (opt2 >> 2)) & 1);
		mrw[i].ice_rtcp_port = (opt2 & 8) ? 0 : (uint16_t)(30001 + 2 * i);
		if (opt2 & 2) {
			mrw[i].lite_ufrag = SLICE_LIT("Rel4yUfr");
			mrw[i].lite_pwd = SLICE_LIT("abcdefghijklmnopqrstuvwx");
		}
	}
	struct sdp_vstate vs = {0};
	struct sdp_rw rw = {
	    .media = mrw,
	    .n_media = s.n_media,
	    .replace_origin = opt & 1,
	    .origin_af = SDP_AF_IP4,
	    .origin_addr = SLICE_LIT("198.18.0.7"),
	    .replace_session_conn = opt & 32,
	    .strip_ice = opt & 64,
	    .add_nortpproxy = opt & 128,
	    .vstate = (opt & 4) ? &vs : NULL,
	};
	for (int round = 0; round < 2; round++) {
		buf_reset(&out);
		CHECK(sdp_rewrite(&s, &rw, &out) == 0);
		CHECK(sdp_parse(&o, buf_slice(&out)) == 0);
		CHECK(o.n_media == s.n_media);
		for (size_t i = 0; i < s.n_media; i++) {
			bool active = !mrw[i].keep && s.media[i].port != 0;
			if (!active)
				continue;
			CHECK(o.media[i].port == mrw[i].port);
			CHECK(o.media[i].conn.present && o.media[i].conn.af == mrw[i].af);
			CHECK(slice_eq(o.media[i].conn.addr, mrw[i].addr));
			CHECK(o.media[i].rtcp_mux == mrw[i].rtcp_mux);
			CHECK(o.media[i].has_rtcp == (mrw[i].rtcp_port != 0));
			size_t ours = 1 + (mrw[i].ice_rtcp_port != 0);
			if (mrw[i].ice_candidate)
				CHECK(o.media[i].ice.n_candidates == s.media[i].ice.n_candidates + ours);
			else if (rw.strip_ice && !mrw[i].lite_ufrag.l)
				CHECK(o.media[i].ice.n_candidates == 0);
		}
		if (rw.add_nortpproxy)
			CHECK(o.nortpproxy);
		if (rw.vstate && round == 1)
			CHECK(o.origin.version == vs.out_version);
	}
	buf_free(&out);
	return 0;
}
