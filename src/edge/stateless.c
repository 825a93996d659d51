/* What the edge says without keeping state: bounded rejections, their To tags, and signed branches. */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_int.h"

struct metric edge_m_rejected = {.name = "sip_rejected_stateless_total",
				 .help = "requests answered once without a transaction "
					 "(refused before routing, or OPTIONS to us)"};
struct metric edge_m_reply_trimmed = {
	.name = "sip_reply_trimmed_total",
	.help = "stateless answers sent without their extra headers to stay within "
		"EDGE_REPLY_FACTOR times the request"};
struct metric edge_m_reply_oversize = {
	.name = "sip_reply_oversize_total",
	.help = "stateless answers dropped: larger than EDGE_REPLY_FACTOR times the request"};
struct metric edge_m_acks_absorbed = {.name = "sip_acks_absorbed_total",
				      .help = "ACKs of stateless rejections, taken and dropped"};

/* A MAC over the pieces, each preceded by its length so that no two splits
 * of the same bytes collide. */
static void mac_pieces(const struct edge *e, const struct slice *s, size_t n,
		       unsigned char out[EDGE_MAC_LEN])
{
	unsigned char stack[512];
	size_t need = 0;
	for (size_t i = 0; i < n; i++)
		need += 4 + s[i].l;
	unsigned char *p = need <= sizeof stack ? stack : malloc(need);
	if (!p) {
		rand_bytes(out, EDGE_MAC_LEN); /* out of memory: a MAC no one can match */
		return;
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t l = (uint32_t)s[i].l;
		p[o++] = (unsigned char)(l >> 24);
		p[o++] = (unsigned char)(l >> 16);
		p[o++] = (unsigned char)(l >> 8);
		p[o++] = (unsigned char)l;
		if (s[i].l)
			memcpy(p + o, s[i].p, s[i].l);
		o += s[i].l;
	}
	edge_mac(e, p, o, out);
	if (p != stack)
		free(p);
}

#define SL_TAG_PREFIX "sl"

/* The tag names the request (its branch, Call-ID and From tag), so that a
 * retransmission gets the same answer and the ACK of that answer is known as
 * ours without a record of it. */
void edge_stateless_tag(const struct edge *e, const struct sip_msg *req, char out[24])
{
	struct slice s[3] = {req->via1.branch, req->call_id, req->from_tag};
	unsigned char m[EDGE_MAC_LEN];
	mac_pieces(e, s, 3, m);
	memcpy(out, SL_TAG_PREFIX, 2);
	edge_b64url_encode(m, 9, out + 2); /* 12 chars */
}

bool edge_stateless_tag_ours(const struct edge *e, const struct sip_msg *req)
{
	if (req->to_tag.l != 14 || memcmp(req->to_tag.p, SL_TAG_PREFIX, 2) != 0)
		return false;
	char want[24];
	edge_stateless_tag(e, req, want);
	return CRYPTO_memcmp(want, req->to_tag.p, 14) == 0;
}

int edge_reply_bounded(struct edge *e, const struct flow *f, const struct sip_msg *req,
		       size_t req_len, uint16_t status, const char *reason, struct slice via1,
		       const char *to_tag, const char *extra_hdrs)
{
	char tag[24] = "";
	if (status > 100 && req->to_tag.l == 0) {
		if (to_tag && to_tag[0])
			snprintf(tag, sizeof tag, "%s", to_tag);
		else
			edge_stateless_tag(e, req, tag);
	}
	/* A stream's peer finished a handshake from its address: only datagrams
	 * can be sent in someone else's name, so only they are held to the bound. */
	size_t bound = f->tp == NET_UDP ? EDGE_REPLY_FACTOR * req_len : SIZE_MAX;
	struct buf out;
	buf_init(&out);
	int err = sip_build_response(&out, req, status, reason, via1, slice_cstr(tag), extra_hdrs);
	if (!err && out.len > bound && extra_hdrs && extra_hdrs[0]) {
		metric_inc(&edge_m_reply_trimmed);
		buf_reset(&out);
		err = sip_build_response(&out, req, status, reason, via1, slice_cstr(tag), NULL);
	}
	if (!err && out.len > bound) {
		metric_inc(&edge_m_reply_oversize);
		err = EMSGSIZE;
	}
	if (!err)
		err = edge_send(e, f, out.data, out.len);
	buf_free(&out);
	return err;
}

/* Signed branch of a request forwarded without a transaction:
 *
 *   z9hG4bK sl <14 chars: base64url of the first 10 bytes of
 *               HMAC-SHA1(flow_key, Via below ours | Call-ID)>
 *
 * The Via below ours (what the previous hop sent, with our received/rport)
 * is where the answer goes, and it comes back in every response, so a
 * response can be checked without any record of the request: a branch no
 * one can make without the key names only destinations that we sent on. */
#define SL_BRANCH_PREFIX SIP_BRANCH_MAGIC "sl"

void edge_branch_sign(const struct edge *e, struct slice via_up, struct slice call_id,
		      char out[32])
{
	struct slice s[2] = {via_up, call_id};
	unsigned char m[EDGE_MAC_LEN];
	mac_pieces(e, s, 2, m);
	memcpy(out, SL_BRANCH_PREFIX, 9);
	edge_b64url_encode(m, EDGE_MAC_LEN, out + 9); /* 14 chars */
}

bool edge_branch_verify(const struct edge *e, struct slice branch, struct slice via_up,
			struct slice call_id)
{
	if (branch.l != 23 || memcmp(branch.p, SL_BRANCH_PREFIX, 9) != 0)
		return false;
	char want[32];
	edge_branch_sign(e, via_up, call_id, want);
	return CRYPTO_memcmp(want, branch.p, 23) == 0;
}
