/* libFuzzer entry point for the SIP codec: parse, frame, sub-parsers, editor, builder. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip/sip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sip_msg msg;
static struct sip_editor ed;

/* Runs every sub-parser over every value of every header. */
static void walk_headers(const struct sip_msg *m)
{
	for (size_t i = 0; i < m->n_hdrs; i++) {
		const struct sip_hdr *h = &m->hdrs[i];
		size_t pos = 0;
		struct slice v;
		while (sip_hdr_next_value(h->value, &pos, &v)) {
			struct sip_uri u, u2;
			struct sip_via via;
			struct sip_nameaddr na;
			struct sip_param p;
			if (sip_uri_parse(v, &u) == 0 && sip_uri_parse(v, &u2) == 0 &&
			    !sip_uri_eq(&u, &u2))
				abort(); /* equality must be reflexive */
			sip_via_parse(v, &via);
			if (sip_nameaddr_parse(v, &na) == 0) {
				sip_param_find(na.params, "tag", &p);
				sip_param_find(na.params, "expires", &p);
				sip_param_find(na.uri.params, "lr", &p);
			}
		}
		sip_hdr_id_from(h->name);
	}
	sip_msg_has_option(m, SIP_HDR_SUPPORTED, "outbound");
	sip_msg_hdr_named(m, "X-Fuzz");
}

/* Applies a typical set of proxy edits and re-parses the result. */
static void edit(const struct sip_msg *m, bool stream)
{
	struct buf out;
	buf_init(&out);
	sip_editor_init(&ed, m);
	sip_edit_insert_after(&ed, m->via1.whole, ";received=%s", "198.18.0.1");
	sip_edit_insert_hdr_before(&ed, 0, "Via: SIP/2.0/UDP fuzz.invalid;branch=%sx", SIP_BRANCH_MAGIC);
	const struct sip_hdr *r = sip_msg_hdr(m, SIP_HDR_ROUTE, 0);
	if (r)
		sip_edit_remove_first_value(&ed, (size_t)(r - m->hdrs));
	const struct sip_hdr *mf = sip_msg_hdr(m, SIP_HDR_MAX_FORWARDS, 0);
	if (mf)
		sip_edit_replace(&ed, mf->value, "%d", m->max_forwards > 0 ? m->max_forwards - 1 : 0);
	if (m->request)
		sip_edit_set_ruri(&ed, "sip:fuzz@198.18.0.2");
	if (m->body.l & 1)
		sip_edit_set_body(&ed, SLICE_LIT("v=0\r\n"));
	sip_edit_insert_hdr_before(&ed, m->n_hdrs, "X-Fuzz: 1");
	if (sip_edit_apply(&ed, &out) == 0 && !out.failed) {
		/* what we produce from a valid message must be valid */
		char *copy = malloc(out.len ? out.len : 1);
		if (copy) {
			memcpy(copy, out.data, out.len);
			struct sip_msg *again = malloc(sizeof *again);
			if (again && sip_msg_parse(again, copy, out.len, stream, NULL) != 0 &&
			    m->request)
				abort();
			free(again);
			free(copy);
		}
	}
	sip_editor_free(&ed);
	if (m->request) {
		buf_reset(&out);
		sip_build_response(&out, m, 400, NULL, SLICE_NULL, SLICE_LIT("t"), NULL);
	}
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct sip_parse_error err;
	if (sip_msg_parse(&msg, p, size, false, &err) == 0) {
		walk_headers(&msg);
		edit(&msg, false);
	} else if (msg.n_hdrs <= SIP_MAX_HEADERS) {
		walk_headers(&msg); /* whatever was indexed is still safe to read */
	}
	size_t off = 0;
	while (off < size) {
		size_t n = 0;
		int rc = sip_frame(p + off, size - off, 65535, &n);
		/* resumed framing, fed the same bytes in growing pieces, agrees */
		struct sip_frame_state fs = {0};
		size_t rn = 0, step = 1 + (size - off) / 7;
		int rrc = ENODATA;
		for (size_t l = 1; rrc == ENODATA && l < size - off; l += step)
			rrc = sip_frame_resume(&fs, p + off, l, 65535, &rn);
		if (rrc == ENODATA) {
			rrc = sip_frame_resume(&fs, p + off, size - off, 65535, &rn);
			if (rrc != rc || (rc == 0 && rn != n))
				abort();
		} else if (rrc == 0 && rc == 0 && rn != n && !fs.keepalive) {
			abort(); /* whole early: the same message (a CRLF run ends
				  * where the bytes that came so far end) */
		}
		if (rc != 0)
			break;
		if (n == 0 || n > size - off)
			abort();
		if (sip_msg_parse(&msg, p + off, n, true, &err) == 0)
			edit(&msg, true);
		off += n;
	}
	return 0;
}
