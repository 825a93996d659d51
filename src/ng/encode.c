/* ng: bencode encoder helpers that append to a struct buf. */
#include <errno.h>
#include <inttypes.h>

#include "ng/ng.h"

/* <length>:<bytes>, the length in decimal without leading zeros (BEP 3) */
int ng_enc_str(struct buf *b, struct slice s)
{
	int err = buf_printf(b, "%zu:", s.l);
	return err ? err : buf_append_slice(b, s);
}

int ng_enc_cstr(struct buf *b, const char *s)
{
	return ng_enc_str(b, slice_cstr(s));
}

int ng_enc_int(struct buf *b, int64_t v)
{
	return buf_printf(b, "i%" PRId64 "e", v);
}

int ng_enc_dict_begin(struct buf *b)
{
	return buf_append(b, "d", 1);
}

int ng_enc_list_begin(struct buf *b)
{
	return buf_append(b, "l", 1);
}

int ng_enc_end(struct buf *b)
{
	return buf_append(b, "e", 1);
}

int ng_enc_kv_str(struct buf *b, const char *key, struct slice v)
{
	int err = ng_enc_cstr(b, key);
	return err ? err : ng_enc_str(b, v);
}

int ng_enc_kv_cstr(struct buf *b, const char *key, const char *v)
{
	return ng_enc_kv_str(b, key, slice_cstr(v));
}

int ng_enc_kv_int(struct buf *b, const char *key, int64_t v)
{
	int err = ng_enc_cstr(b, key);
	return err ? err : ng_enc_int(b, v);
}

int ng_enc_node(struct buf *b, const struct ng_node *n)
{
	return buf_append_slice(b, n->raw);
}
