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

/* Signed branches: a response names the branch of our Via, and carries the
 * Via below ours (what the previous hop sent, with our received/rport:
 * where the answer goes) and the Call-ID, so it can be checked without any
 * record of the request. A branch no one can make without the key names
 * only destinations that we sent on.
 *
 *   stateless (RFC 3261 16.11: the same input gives the same branch)
 *     z9hG4bK sl <14: b64url(HMAC-SHA1(flow_key, Via below | Call-ID)[0..10))>
 *   stateful (one per branch of a fork, so a nonce makes them differ; the
 *   proxy appends "." and its loop-detection hash, which is not signed)
 *     z9hG4bK sf <6: nonce, 36 random bits in base64url characters>
 *                <14: b64url(HMAC-SHA1(flow_key, nonce | Via below | Call-ID)[0..10))>
 *                [ "." anything ]
 * The Via below ours holds the previous hop's own branch, so the MAC (and
 * the branch) differs for every transaction even with a short nonce.
 */
#define SL_BRANCH_PREFIX SIP_BRANCH_MAGIC "sl"
#define SF_BRANCH_PREFIX SIP_BRANCH_MAGIC "sf"
#define SL_BRANCH_LEN (9 + 14)
#define SF_NONCE 6
_Static_assert(EDGE_SIGNED_BRANCH_LEN == 9 + SF_NONCE + 14, "edge.h says so");
_Static_assert(EDGE_SIGNED_BRANCH_LEN < 32 && SL_BRANCH_LEN < 32, "fits the branch buffers");

void edge_branch_sign(const struct edge *e, struct slice via_up, struct slice call_id, char out[32])
{
	struct slice s[2] = {via_up, call_id};
	unsigned char m[EDGE_MAC_LEN];
	mac_pieces(e, s, 2, m);
	memcpy(out, SL_BRANCH_PREFIX, 9);
	edge_b64url_encode(m, EDGE_MAC_LEN, out + 9); /* 14 chars */
}

/* The stateful form for a nonce of SF_NONCE characters. */
static void branch_sign_nonce(const struct edge *e, const char *nonce, struct slice via_up,
			      struct slice call_id, char out[32])
{
	struct slice s[3] = {{nonce, SF_NONCE}, via_up, call_id};
	unsigned char m[EDGE_MAC_LEN];
	mac_pieces(e, s, 3, m);
	memcpy(out, SF_BRANCH_PREFIX, 9);
	memcpy(out + 9, nonce, SF_NONCE);
	edge_b64url_encode(m, EDGE_MAC_LEN, out + 9 + SF_NONCE); /* 14 chars */
}

void edge_branch_new_signed(const struct edge *e, struct slice via_up, struct slice call_id,
			    char out[32])
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char r[SF_NONCE];
	char nonce[SF_NONCE];
	rand_bytes(r, sizeof r);
	for (size_t i = 0; i < SF_NONCE; i++)
		nonce[i] = b64[r[i] & 63];
	branch_sign_nonce(e, nonce, via_up, call_id, out);
}

bool edge_branch_verify(const struct edge *e, struct slice branch, struct slice via_up,
			struct slice call_id)
{
	char want[32];
	size_t l;
	if (branch.l == SL_BRANCH_LEN && memcmp(branch.p, SL_BRANCH_PREFIX, 9) == 0) {
		l = SL_BRANCH_LEN;
		edge_branch_sign(e, via_up, call_id, want);
	} else if (branch.l >= EDGE_SIGNED_BRANCH_LEN &&
		   memcmp(branch.p, SF_BRANCH_PREFIX, 9) == 0 &&
		   (branch.l == EDGE_SIGNED_BRANCH_LEN || branch.p[EDGE_SIGNED_BRANCH_LEN] == '.')) {
		l = EDGE_SIGNED_BRANCH_LEN;
		branch_sign_nonce(e, branch.p + 9, via_up, call_id, want);
	} else {
		return false;
	}
	return CRYPTO_memcmp(want, branch.p, l) == 0;
}

int edge_reply_stateless(const struct edge_rx *rx, uint16_t status, const char *reason,
			 const char *extra_hdrs)
{
	return edge_reply_bounded(rx->edge, &rx->flow, rx->msg, rx->msg->raw.l, status, reason,
				  rx->via1_fixed, NULL, extra_hdrs);
}
