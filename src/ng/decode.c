/* ng: bencode decoder into an arena-allocated tree, with limits for hostile input. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ng/ng.h"

void ng_arena_init(struct ng_arena *a, struct ng_node *storage, size_t cap)
{
	a->nodes = storage;
	a->cap = storage ? cap : 0;
	a->used = 0;
	a->heap = false;
}

int ng_arena_alloc(struct ng_arena *a, size_t cap)
{
	ng_arena_init(a, NULL, 0);
	if (cap == 0)
		return 0;
	a->nodes = calloc(cap, sizeof *a->nodes);
	if (!a->nodes)
		return ENOMEM;
	a->cap = cap;
	a->heap = true;
	return 0;
}

void ng_arena_free(struct ng_arena *a)
{
	if (a->heap)
		free(a->nodes);
	ng_arena_init(a, NULL, 0);
}

void ng_arena_reset(struct ng_arena *a)
{
	a->used = 0;
}

struct dec {
	const char *p;
	const char *end;
	struct ng_arena *a;
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "<len>:<bytes>": no leading zeros (the encoding is canonical), and the
 * length is checked against what is left before anything is trusted, so a
 * claimed length of 2^64 costs nothing. */
static int dec_str(struct dec *d, struct slice *out)
{
	const char *p = d->p;
	size_t avail = (size_t)(d->end - p);
	size_t len = 0;

	if (p == d->end || !is_digit(*p))
		return EBADMSG;
	if (*p == '0' && p + 1 < d->end && is_digit(p[1]))
		return EBADMSG;
	while (p < d->end && is_digit(*p)) {
		len = len * 10 + (size_t)(*p - '0');
		if (len > avail)
			return EBADMSG;
		p++;
	}
	if (p == d->end || *p != ':')
		return EBADMSG;
	p++;
	if (len > (size_t)(d->end - p))
		return EBADMSG;
	*out = (struct slice){p, len};
	d->p = p + len;
	return 0;
}

/* "i<decimal>e": "i-0e", "i03e" and "ie" are malformed (BEP 3). */
static int dec_int(struct dec *d, int64_t *out)
{
	const char *p = d->p + 1; /* past 'i' */
	bool neg = false;
	uint64_t mag = 0;
	const uint64_t limit = (uint64_t)INT64_MAX + 1;

	if (p < d->end && *p == '-') {
		neg = true;
		p++;
	}
	if (p == d->end || !is_digit(*p))
		return EBADMSG;
	if (*p == '0' && (neg || (p + 1 < d->end && *(p + 1) != 'e')))
		return EBADMSG;
	while (p < d->end && is_digit(*p)) {
		uint64_t dg = (uint64_t)(*p - '0');
		if (mag > (limit - dg) / 10)
			return EBADMSG;
		mag = mag * 10 + dg;
		p++;
	}
	if (p == d->end || *p != 'e')
		return EBADMSG;
	if (!neg && mag > (uint64_t)INT64_MAX)
		return EBADMSG;
	if (neg)
		*out = mag == limit ? INT64_MIN : -(int64_t)mag;
	else
		*out = (int64_t)mag;
	d->p = p + 1;
	return 0;
}

static struct ng_node *node_new(struct dec *d)
{
	if (d->a->used >= d->a->cap)
		return NULL;
	struct ng_node *n = &d->a->nodes[d->a->used++];
	memset(n, 0, sizeof *n);
	return n;
}

static int dec_value(struct dec *d, unsigned depth, struct ng_node **np);

/* Lists and dictionaries: elements until 'e'; dictionary keys are strings.
 * Key order is not enforced: Kamailio's module writes keys unsorted. */
static int dec_container(struct dec *d, struct ng_node *n, unsigned depth)
{
	struct ng_node **tail = &n->child;
	d->p++; /* past 'l' or 'd' */
	for (;;) {
		if (d->p == d->end)
			return EBADMSG;
		if (*d->p == 'e') {
			d->p++;
			return 0;
		}
		struct slice key = SLICE_NULL;
		if (n->type == NG_DICT) {
			int err = dec_str(d, &key);
			if (err)
				return err;
		}
		struct ng_node *child;
		int err = dec_value(d, depth + 1, &child);
		if (err)
			return err;
		child->key = key;
		*tail = child;
		tail = &child->next;
		n->count++;
	}
}

static int dec_value(struct dec *d, unsigned depth, struct ng_node **np)
{
	if (depth >= NG_MAX_DEPTH || d->p == d->end)
		return EBADMSG;
	struct ng_node *n = node_new(d);
	if (!n)
		return EBADMSG; /* more values than the arena allows: abusive */
	const char *start = d->p;
	int err;
	switch (*d->p) {
	case 'i':
		n->type = NG_INT;
		err = dec_int(d, &n->i);
		break;
	case 'l':
		n->type = NG_LIST;
		err = dec_container(d, n, depth);
		break;
	case 'd':
		n->type = NG_DICT;
		err = dec_container(d, n, depth);
		break;
	default:
		n->type = NG_STR;
		err = dec_str(d, &n->str);
		break;
	}
	if (err)
		return err;
	n->raw = (struct slice){start, (size_t)(d->p - start)};
	*np = n;
	return 0;
}

int ng_decode(struct slice in, struct ng_arena *a, struct ng_node **rootp)
{
	size_t mark = a->used;
	struct dec d = {.p = in.p, .end = in.p + in.l, .a = a};
	struct ng_node *root = NULL;
	if (in.l == 0 || !in.p)
		return EBADMSG;
	int err = dec_value(&d, 0, &root);
	if (!err && d.p != d.end)
		err = EBADMSG; /* trailing bytes */
	if (err) {
		a->used = mark;
		return err;
	}
	*rootp = root;
	return 0;
}

const struct ng_node *ng_dict_get(const struct ng_node *dict, const char *key)
{
	if (!dict || dict->type != NG_DICT)
		return NULL;
	struct slice k = slice_cstr(key);
	for (const struct ng_node *n = dict->child; n; n = n->next)
		if (slice_eq(n->key, k))
			return n;
	return NULL;
}

int ng_dict_str(const struct ng_node *dict, const char *key, struct slice *out)
{
	const struct ng_node *n = ng_dict_get(dict, key);
	if (!n)
		return ENOENT;
	if (n->type != NG_STR)
		return EBADMSG;
	*out = n->str;
	return 0;
}

int ng_dict_int(const struct ng_node *dict, const char *key, int64_t *out)
{
	const struct ng_node *n = ng_dict_get(dict, key);
	if (!n)
		return ENOENT;
	if (n->type == NG_INT) {
		*out = n->i;
		return 0;
	}
	if (n->type != NG_STR)
		return EBADMSG;
	/* a number sent as a string: plain decimal, optional minus, fits int64 */
	struct slice s = n->str;
	bool neg = s.l && s.p[0] == '-';
	size_t i = neg ? 1 : 0;
	uint64_t mag = 0;
	const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (i == s.l)
		return EBADMSG;
	for (; i < s.l; i++) {
		if (!is_digit(s.p[i]))
			return EBADMSG;
		uint64_t dg = (uint64_t)(s.p[i] - '0');
		if (mag > (limit - dg) / 10)
			return EBADMSG;
		mag = mag * 10 + dg;
	}
	if (neg)
		*out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	else
		*out = (int64_t)mag;
	return 0;
}

bool ng_list_has(const struct ng_node *list, const char *s)
{
	if (!list || list->type != NG_LIST)
		return false;
	for (const struct ng_node *n = list->child; n; n = n->next)
		if (n->type == NG_STR && slice_eq_cstr_nocase(n->str, s))
			return true;
	return false;
}
