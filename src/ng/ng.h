/* ng: bencode codec and message framing of the rtpengine "ng" control protocol.
 *
 * An ng message is one UDP datagram "<cookie> <bencoded dictionary>"; the reply
 * repeats the cookie. Decoding builds a small tree of struct ng_node taken from
 * a struct ng_arena; strings are slices into the caller's input, so the tree
 * must not outlive the datagram. The encoder helpers append to a struct buf.
 * No I/O, no logging.
 *
 * Errors: EBADMSG malformed or abusive input (truncated, leading zeros, "i-0e",
 * lengths beyond the input, nesting deeper than NG_MAX_DEPTH, more nodes than
 * the arena holds, trailing bytes), ENOENT key absent, ENOMEM from a buf.
 */
#ifndef PINHOLE_NG_H
#define PINHOLE_NG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Real ng commands nest three deep (dict -> list -> string); 32 is generous. */
#define NG_MAX_DEPTH 32
/* Longest cookie we accept; rtpengine clients send a few dozen bytes. */
#define NG_MAX_COOKIE 128

enum ng_type {
	NG_STR,
	NG_INT,
	NG_LIST,
	NG_DICT,
};

/* One decoded value. Owned by the arena it came from. */
struct ng_node {
	enum ng_type type;
	struct slice key;      /* the key when this node is a dictionary value, else empty */
	struct slice str;      /* NG_STR: the bytes, a slice into the input */
	int64_t i;	       /* NG_INT */
	struct ng_node *child; /* NG_LIST, NG_DICT: first element, in input order */
	struct ng_node *next;  /* next element of the enclosing list or dictionary */
	size_t count;	       /* NG_LIST, NG_DICT: number of elements */
	struct slice raw;      /* the encoded bytes of this value */
};

/* Node storage: either caller-supplied (a stack array) or heap. */
struct ng_arena {
	struct ng_node *nodes;
	size_t cap;
	size_t used;
	bool heap;
};

/* Uses caller storage; nothing to free. */
void ng_arena_init(struct ng_arena *a, struct ng_node *storage, size_t cap);
/* Allocates room for cap nodes; release with ng_arena_free. Returns 0 or ENOMEM. */
int ng_arena_alloc(struct ng_arena *a, size_t cap);
void ng_arena_free(struct ng_arena *a);
/* Forgets every node so the arena can decode another message. */
void ng_arena_reset(struct ng_arena *a);

/* Decodes exactly one bencoded value filling the whole of in. *rootp points
 * into the arena. Returns 0 or EBADMSG (on error the arena's nodes taken by
 * this call are given back). */
int ng_decode(struct slice in, struct ng_arena *a, struct ng_node **rootp);

/* ---- reading a decoded tree ---- */

/* The value under key in a dictionary (first one if repeated), or NULL. */
const struct ng_node *ng_dict_get(const struct ng_node *dict, const char *key);
/* String value under key: 0, ENOENT (absent or dict is NULL), EBADMSG (not a string). */
int ng_dict_str(const struct ng_node *dict, const char *key, struct slice *out);
/* Integer under key; a string of decimal digits is accepted too, since some
 * clients send numbers as strings. 0, ENOENT or EBADMSG. */
int ng_dict_int(const struct ng_node *dict, const char *key, int64_t *out);
/* True if list holds a string equal to s, ignoring ASCII case (flags lists). */
bool ng_list_has(const struct ng_node *list, const char *s);

/* ---- encoding into a buf ----
 * Each appends to b and returns 0 or ENOMEM. Dictionary keys are written in
 * the order given; ng peers do not require sorted keys. */

int ng_enc_str(struct buf *b, struct slice s);
int ng_enc_cstr(struct buf *b, const char *s);
int ng_enc_int(struct buf *b, int64_t v);
int ng_enc_dict_begin(struct buf *b); /* "d" */
int ng_enc_list_begin(struct buf *b); /* "l" */
int ng_enc_end(struct buf *b);	      /* "e" closes either */
/* key then value: "<key><value>" inside an open dictionary */
int ng_enc_kv_str(struct buf *b, const char *key, struct slice v);
int ng_enc_kv_cstr(struct buf *b, const char *key, const char *v);
int ng_enc_kv_int(struct buf *b, const char *key, int64_t v);
/* Writes a decoded value again (its raw bytes). */
int ng_enc_node(struct buf *b, const struct ng_node *n);

/* ---- message framing ---- */

/* Splits "<cookie> <body>": the cookie is 1..NG_MAX_COOKIE printable bytes
 * without spaces, one space follows, body is the rest and non-empty. 0 or EBADMSG. */
int ng_msg_split(struct slice dgram, struct slice *cookie, struct slice *body);
/* Splits and decodes; the body must be a dictionary. 0 or EBADMSG. */
int ng_msg_parse(struct slice dgram, struct ng_arena *a, struct slice *cookie,
		 const struct ng_node **dict);
/* Starts a reply: "<cookie> d". Add entries with ng_enc_kv_*, then ng_enc_end. */
int ng_reply_begin(struct buf *b, struct slice cookie);
/* A whole reply with only a result: "<cookie> d6:result<n>:<result>e" ("pong", "ok"). */
int ng_reply_result(struct buf *b, struct slice cookie, const char *result);
/* A whole error reply: "<cookie> d6:result5:error12:error-reason<n>:<reason>e". */
int ng_reply_error(struct buf *b, struct slice cookie, const char *reason);

#endif
