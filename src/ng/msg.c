/* ng: framing of control messages, "<cookie> <bencoded dictionary>", and replies. */
#include <errno.h>

#include "ng/ng.h"

/* The cookie lets a client match replies and lets the relay answer a
 * retransmission; it is opaque and ends at the first space. */
int ng_msg_split(struct slice dgram, struct slice *cookie, struct slice *body)
{
	size_t sp = slice_find(dgram, ' ');
	if (sp == 0 || sp == dgram.l || sp > NG_MAX_COOKIE)
		return EBADMSG;
	for (size_t i = 0; i < sp; i++) {
		unsigned char c = (unsigned char)dgram.p[i];
		if (c <= 0x20 || c >= 0x7f)
			return EBADMSG;
	}
	if (sp + 1 == dgram.l)
		return EBADMSG;
	*cookie = (struct slice){dgram.p, sp};
	*body = (struct slice){dgram.p + sp + 1, dgram.l - sp - 1};
	return 0;
}

int ng_msg_parse(struct slice dgram, struct ng_arena *a, struct slice *cookie,
		 const struct ng_node **dict)
{
	struct slice body;
	struct ng_node *root;
	int err = ng_msg_split(dgram, cookie, &body);
	if (err)
		return err;
	size_t mark = a->used;
	err = ng_decode(body, a, &root);
	if (err)
		return err;
	if (root->type != NG_DICT) {
		a->used = mark;
		return EBADMSG;
	}
	*dict = root;
	return 0;
}

int ng_reply_begin(struct buf *b, struct slice cookie)
{
	int err = buf_append_slice(b, cookie);
	return err ? err : buf_append(b, " d", 2);
}

int ng_reply_result(struct buf *b, struct slice cookie, const char *result)
{
	int err = ng_reply_begin(b, cookie);
	if (!err)
		err = ng_enc_kv_cstr(b, "result", result);
	return err ? err : ng_enc_end(b);
}

int ng_reply_error(struct buf *b, struct slice cookie, const char *reason)
{
	int err = ng_reply_begin(b, cookie);
	if (!err)
		err = ng_enc_kv_cstr(b, "result", "error");
	if (!err)
		err = ng_enc_kv_cstr(b, "error-reason", reason);
	return err ? err : ng_enc_end(b);
}
