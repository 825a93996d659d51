/* Fuzz target for the ng codec: decode, re-encode from the tree, compare. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ng/ng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

/* Rebuilds a value from the tree, not from raw: bencode as we accept it is
 * canonical, so this must give back the input bytes exactly. */
static void reencode(struct buf *b, const struct ng_node *n)
{
	switch (n->type) {
	case NG_STR:
		ng_enc_str(b, n->str);
		break;
	case NG_INT:
		ng_enc_int(b, n->i);
		break;
	case NG_LIST:
	case NG_DICT: {
		size_t count = 0;
		if (n->type == NG_LIST)
			ng_enc_list_begin(b);
		else
			ng_enc_dict_begin(b);
		for (const struct ng_node *c = n->child; c; c = c->next) {
			if (n->type == NG_DICT)
				ng_enc_str(b, c->key);
			reencode(b, c);
			count++;
		}
		CHECK(count == n->count);
		ng_enc_end(b);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slice in = {(const char *)data, size};
	struct ng_node nodes[256];
	struct ng_arena a;
	struct ng_node *root;
	struct buf b;

	buf_init(&b);
	ng_arena_init(&a, nodes, ARRAY_SIZE(nodes));
	if (ng_decode(in, &a, &root) == 0) {
		CHECK(a.used >= 1 && a.used <= ARRAY_SIZE(nodes));
		CHECK(root->raw.p == in.p && root->raw.l == in.l);
		reencode(&b, root);
		CHECK(!b.failed && b.len == size && memcmp(b.data, data, size) == 0);
		struct slice v;
		int64_t i;
		ng_dict_str(root, "command", &v);
		ng_dict_int(root, "ttl", &i);
		ng_list_has(ng_dict_get(root, "flags"), "trust-address");
	} else {
		CHECK(a.used == 0);
	}

	/* the same bytes as a datagram with a cookie */
	struct slice cookie;
	const struct ng_node *dict;
	ng_arena_reset(&a);
	if (ng_msg_parse(in, &a, &cookie, &dict) == 0) {
		CHECK(dict->type == NG_DICT);
		CHECK(cookie.l >= 1 && cookie.l <= NG_MAX_COOKIE);
		buf_reset(&b);
		CHECK(ng_reply_error(&b, cookie, "fuzz") == 0);
		ng_arena_reset(&a);
		const struct ng_node *d2;
		struct slice c2;
		CHECK(ng_msg_parse(buf_slice(&b), &a, &c2, &d2) == 0);
		CHECK(slice_eq(c2, cookie));
	}
	buf_free(&b);
	return 0;
}
