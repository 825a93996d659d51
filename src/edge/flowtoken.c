/* Flow tokens: a flow packed into a URI user part and authenticated with HMAC (RFC 5626 5.2). */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "edge_int.h"

#define TOKEN_RAW 39
#define TOKEN_MAC 10
#define TOKEN_VERSION 1

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = b64url[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[o++] = b64url[(acc << (6 - bits)) & 63];
	out[o] = '\0';
}

static int b64url_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;
	return p ? (int)(p - b64url) : -1;
}

static int b64url_decode(struct slice in, unsigned char *out, size_t cap, size_t *n)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < in.l; i++) {
		int v = b64url_value(in.p[i]);
		if (v < 0)
			return EBADMSG;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return EBADMSG;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*n = o;
	return 0;
}

static void mac(const struct edge *e, const unsigned char *p, size_t n,
		unsigned char out[TOKEN_MAC])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	HMAC(EVP_sha1(), e->flow_key, sizeof e->flow_key, p, n, full, &len);
	memcpy(out, full, TOKEN_MAC);
}

void edge_flow_token_encode(const struct edge *e, const struct flow *f,
			    char out[FLOW_TOKEN_LEN + 1])
{
	unsigned char raw[TOKEN_RAW] = {0};
	raw[0] = (unsigned char)(TOKEN_VERSION << 4 | (f->tp & 0x0f));
	raw[1] = (unsigned char)f->listener;
	for (int i = 0; i < 8; i++)
		raw[2 + i] = (unsigned char)(f->conn_id >> (56 - 8 * i));
	if (net_addr_family(&f->remote) == AF_INET6) {
		raw[10] = 6;
		memcpy(raw + 11, &f->remote.u.in6.sin6_addr, 16);
	} else {
		raw[10] = 4;
		memcpy(raw + 11, &f->remote.u.in.sin_addr, 4);
	}
	uint16_t port = net_addr_port(&f->remote);
	raw[27] = (unsigned char)(port >> 8);
	raw[28] = (unsigned char)port;
	mac(e, raw, 29, raw + 29);
	b64url_encode(raw, TOKEN_RAW, out);
}

int edge_flow_token_decode(const struct edge *e, struct slice token, struct flow *out)
{
	unsigned char raw[TOKEN_RAW + 1];
	size_t n;
	if (token.l != FLOW_TOKEN_LEN || b64url_decode(token, raw, sizeof raw, &n) ||
	    n != TOKEN_RAW || raw[0] >> 4 != TOKEN_VERSION)
		return EBADMSG;
	unsigned char expect[TOKEN_MAC];
	mac(e, raw, 29, expect);
	if (CRYPTO_memcmp(expect, raw + 29, TOKEN_MAC) != 0)
		return EPERM;
	unsigned listener = raw[1];
	if (listener >= net_listener_count(e->net))
		return EBADMSG;
	memset(out, 0, sizeof *out);
	out->tp = (enum net_transport)(raw[0] & 0x0f);
	out->listener = (uint16_t)listener;
	for (int i = 0; i < 8; i++)
		out->conn_id = out->conn_id << 8 | raw[2 + i];
	uint16_t port = (uint16_t)(raw[27] << 8 | raw[28]);
	if (raw[10] == 6) {
		out->remote.u.in6.sin6_family = AF_INET6;
		memcpy(&out->remote.u.in6.sin6_addr, raw + 11, 16);
	} else if (raw[10] == 4) {
		out->remote.u.in.sin_family = AF_INET;
		memcpy(&out->remote.u.in.sin_addr, raw + 11, 4);
	} else {
		return EBADMSG;
	}
	net_addr_set_port(&out->remote, port);
	out->local = *net_listener_addr(e->net, listener);
	return 0;
}

void edge_new_branch(char out[32])
{
	unsigned char r[16];
	rand_bytes(r, sizeof r);
	memcpy(out, SIP_BRANCH_MAGIC, 7);
	b64url_encode(r, 16, out + 7); /* 22 chars */
}

void edge_new_tag(char out[24])
{
	unsigned char r[12];
	rand_bytes(r, sizeof r);
	b64url_encode(r, sizeof r, out); /* 16 chars */
}
