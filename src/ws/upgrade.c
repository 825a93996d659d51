/* WebSocket opening handshake: the HTTP/1.1 upgrade request, the server's decision and its answer. */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "ws.h"

/* RFC 6455 1.3: the GUID appended to the client's key */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool is_tchar(unsigned char c)
{
	/* RFC 9110 5.6.2 token characters */
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Whether a comma-separated header value holds tok (without case). */
static bool list_has(struct slice v, const char *tok)
{
	struct slice item;
	while (slice_next_item(&v, ',', &item))
		if (slice_eq_cstr_nocase(item, tok))
			return true;
	return false;
}

/* Sets *slot to v, noting a repeat of a header that must appear once. */
static void set_once(struct ws_upgrade *u, struct slice *slot, struct slice v)
{
	if (slot->p)
		u->dup = true;
	*slot = v;
}

static int parse_request_line(struct slice line, struct ws_upgrade *u)
{
	size_t sp1 = slice_find(line, ' ');
	if (sp1 == 0 || sp1 >= line.l)
		return EBADMSG;
	u->method = (struct slice){line.p, sp1};
	struct slice rest = {line.p + sp1 + 1, line.l - sp1 - 1};
	size_t sp2 = slice_find(rest, ' ');
	if (sp2 == 0 || sp2 >= rest.l)
		return EBADMSG;
	u->path = (struct slice){rest.p, sp2};
	u->version = (struct slice){rest.p + sp2 + 1, rest.l - sp2 - 1};
	for (size_t i = 0; i < u->method.l; i++)
		if (!is_tchar((unsigned char)u->method.p[i]))
			return EBADMSG;
	for (size_t i = 0; i < u->path.l; i++)
		if ((unsigned char)u->path.p[i] <= ' ' || u->path.p[i] == 0x7f)
			return EBADMSG;
	if (u->version.l != 8 || memcmp(u->version.p, "HTTP/1.", 7) || u->version.p[7] < '0' ||
	    u->version.p[7] > '9')
		return EBADMSG;
	return 0;
}

/* "Name: value" with a token name and no control characters in the value. */
static int split_header(struct slice line, struct slice *name, struct slice *v)
{
	size_t colon = slice_find(line, ':');
	if (colon == 0 || colon >= line.l)
		return EBADMSG; /* also an obsolete folded line (it starts with SP) */
	*name = (struct slice){line.p, colon};
	for (size_t i = 0; i < name->l; i++)
		if (!is_tchar((unsigned char)name->p[i]))
			return EBADMSG;
	*v = slice_trim((struct slice){line.p + colon + 1, line.l - colon - 1});
	for (size_t i = 0; i < v->l; i++) {
		unsigned char c = (unsigned char)v->p[i];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			return EBADMSG;
	}
	return 0;
}

static int parse_header(struct slice line, struct ws_upgrade *u)
{
	struct slice name, v;
	if (split_header(line, &name, &v))
		return EBADMSG;
	if (slice_eq_cstr_nocase(name, "Host"))
		set_once(u, &u->host, v);
	else if (slice_eq_cstr_nocase(name, "Upgrade"))
		set_once(u, &u->upgrade, v);
	else if (slice_eq_cstr_nocase(name, "Connection"))
		u->conn_upgrade |= list_has(v, "upgrade");
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Key"))
		set_once(u, &u->key, v);
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Version"))
		set_once(u, &u->ws_version, v);
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Protocol"))
		u->sip_offered |= list_has(v, "sip");
	else if (slice_eq_cstr_nocase(name, "Origin"))
		set_once(u, &u->origin, v);
	return 0;
}

/* An HTTP/1.1 head (start line, header lines, empty line) read line by line:
 * lines end in CRLF, a bare CR or LF or a NUL is no line end of ours. 0 and
 * *used past the empty line; ENODATA for more bytes, EMSGSIZE past max. */
static int parse_head(const char *p, size_t l, size_t max, size_t *used,
		      int (*line_fn)(struct slice line, bool first, void *ctx), void *ctx)
{
	size_t scan = MIN(l, max);
	size_t pos = 0;
	bool first = true;
	for (;;) {
		size_t eol = pos;
		while (eol + 1 < scan && !(p[eol] == '\r' && p[eol + 1] == '\n')) {
			if (p[eol] == '\n' || p[eol] == '\0')
				return EBADMSG;
			eol++;
		}
		if (eol + 1 >= scan)
			return l >= max ? EMSGSIZE : ENODATA;
		struct slice line = {p + pos, eol - pos};
		pos = eol + 2;
		if (line.l == 0) {
			if (first)
				return EBADMSG;
			*used = pos;
			return 0;
		}
		int err = line_fn(line, first, ctx);
		if (err)
			return err;
		first = false;
	}
}

static int request_line_fn(struct slice line, bool first, void *u)
{
	return first ? parse_request_line(line, u) : parse_header(line, u);
}

int ws_upgrade_parse(const char *p, size_t l, size_t max, struct ws_upgrade *u, size_t *used)
{
	memset(u, 0, sizeof *u);
	return parse_head(p, l, max, used, request_line_fn, u);
}

/* 16 random bytes in base64: 22 characters and "==" (RFC 6455 4.1) */
static bool key_ok(struct slice k)
{
	if (k.l != 24 || k.p[22] != '=' || k.p[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++) {
		unsigned char c = (unsigned char)k.p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return false;
	}
	return strchr("AQgw", k.p[21]) != NULL; /* the last 4 bits of a 16-byte value are 0 */
}

/* A wildcard entry, a scheme + "://" + "*." + a domain (+ ":" port): an
 * origin of that scheme (and port) whose host is one or more labels under
 * the domain, never the domain itself. */
static bool origin_wildcard(struct slice origin, struct slice item)
{
	size_t sep = 0;
	while (sep + 5 <= item.l && memcmp(item.p + sep, "://*.", 5))
		sep++;
	if (sep + 5 > item.l || sep == 0)
		return false;
	struct slice scheme = {item.p, sep + 3}, suffix = {item.p + sep + 4, item.l - sep - 4};
	if (origin.l <= scheme.l + suffix.l ||
	    !slice_eq_nocase((struct slice){origin.p, scheme.l}, scheme))
		return false;
	struct slice host = {origin.p + scheme.l, origin.l - scheme.l - suffix.l};
	if (!slice_eq_nocase((struct slice){host.p + host.l, suffix.l}, suffix))
		return false;
	/* the labels in place of the star: host characters only (no port, path
	 * or user part smuggled in front of the domain) */
	for (size_t i = 0; i < host.l; i++) {
		unsigned char c = (unsigned char)host.p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return host.p[0] != '.';
}

static bool origin_allowed(struct slice origin, const char *origins)
{
	if (!origins || !origins[0])
		return true;
	struct slice rest = slice_cstr(origins), item;
	while (slice_next_item(&rest, ',', &item))
		if (slice_eq_cstr_nocase(item, "*") || slice_eq_nocase(item, origin) ||
		    origin_wildcard(origin, item))
			return true;
	return false;
}

unsigned ws_upgrade_check(const struct ws_upgrade *u, const char *origins)
{
	/* not asking for a WebSocket at all: say what this port speaks */
	if (!u->upgrade.p || !slice_eq_cstr_nocase(u->upgrade, "websocket") || !u->conn_upgrade)
		return 426;
	if (u->dup || !slice_eq_cstr_nocase(u->method, "GET") ||
	    slice_eq_cstr_nocase(u->version, "HTTP/1.0") || !u->host.p)
		return 400;
	if (!u->ws_version.p || !slice_eq_cstr_nocase(u->ws_version, "13"))
		return 426; /* RFC 6455 4.2.2: with the version we speak */
	if (!key_ok(u->key))
		return 400;
	if (u->origin.p && !origin_allowed(u->origin, origins))
		return 403;
	/* RFC 7118 4: this server speaks SIP and nothing else over WebSocket */
	if (!u->sip_offered)
		return 400;
	return 101;
}

int ws_accept_key(struct slice key, char out[29])
{
	if (!key.l)
		return EINVAL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return ENOMEM;
	int ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key.p, key.l) &&
		 EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) &&
		 EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok || mdlen != 20)
		return ENOMEM;
	/* 20 bytes: 28 characters with one '=' of padding, and a NUL */
	EVP_EncodeBlock((unsigned char *)out, md, 20);
	return 0;
}

static const char *reason(unsigned status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 426:
		return "Upgrade Required";
	default:
		return "Error";
	}
}

int ws_upgrade_answer(const struct ws_upgrade *u, unsigned status, struct buf *out)
{
	if (status == 101) {
		char acc[29];
		int err = ws_accept_key(u->key, acc);
		if (err)
			return err;
		buf_printf(out,
			   "HTTP/1.1 101 Switching Protocols\r\n"
			   "Upgrade: websocket\r\n"
			   "Connection: Upgrade\r\n"
			   "Sec-WebSocket-Accept: %s\r\n"
			   "Sec-WebSocket-Protocol: sip\r\n"
			   "\r\n",
			   acc);
	} else {
		/* short and fixed: the refusal costs a stranger's target nothing */
		buf_printf(out, "HTTP/1.1 %u %s\r\n", status, reason(status));
		if (status == 426)
			buf_printf(out, "Upgrade: websocket\r\n"
					"Sec-WebSocket-Version: 13\r\n"
					"Sec-WebSocket-Protocol: sip\r\n");
		buf_printf(out, "Connection: close\r\nContent-Length: 0\r\n\r\n");
	}
	return out->failed ? ENOMEM : 0;
}

/* ---- the client side ---- */

void ws_client_key(const uint8_t nonce[16], char out[25])
{
	EVP_EncodeBlock((unsigned char *)out, nonce, 16);
}

/* A value we write into a header: printable, no spaces, nothing that ends the line. */
static bool header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

int ws_client_request(const char *host, const char *path, const char *origin, const char *key,
		      struct buf *out)
{
	if (!path || !path[0])
		path = "/";
	if (!host[0] || !header_safe(host) || path[0] != '/' || !header_safe(path) ||
	    (origin && !header_safe(origin)) || !header_safe(key))
		return EINVAL;
	buf_printf(out,
		   "GET %s HTTP/1.1\r\n"
		   "Host: %s\r\n"
		   "Upgrade: websocket\r\n"
		   "Connection: Upgrade\r\n"
		   "Sec-WebSocket-Key: %s\r\n"
		   "Sec-WebSocket-Version: 13\r\n"
		   "Sec-WebSocket-Protocol: sip\r\n",
		   path, host, key);
	if (origin && origin[0])
		buf_printf(out, "Origin: %s\r\n", origin);
	buf_printf(out, "\r\n");
	return out->failed ? ENOMEM : 0;
}

static int parse_status_line(struct slice line, struct ws_response *r)
{
	/* "HTTP/1.1 101 Switching Protocols" */
	if (line.l < 12 || memcmp(line.p, "HTTP/1.", 7) || line.p[7] < '0' || line.p[7] > '9' ||
	    line.p[8] != ' ' || (line.l > 12 && line.p[12] != ' '))
		return EBADMSG;
	unsigned st = 0;
	for (size_t i = 9; i < 12; i++) {
		if (line.p[i] < '0' || line.p[i] > '9')
			return EBADMSG;
		st = st * 10 + (unsigned)(line.p[i] - '0');
	}
	if (st < 100)
		return EBADMSG;
	r->status = st;
	return 0;
}

static void set_once_r(struct ws_response *r, struct slice *slot, struct slice v)
{
	if (slot->p)
		r->dup = true;
	*slot = v;
}

static int parse_response_header(struct slice line, struct ws_response *r)
{
	struct slice name, v;
	if (split_header(line, &name, &v))
		return EBADMSG;
	if (slice_eq_cstr_nocase(name, "Upgrade"))
		set_once_r(r, &r->upgrade, v);
	else if (slice_eq_cstr_nocase(name, "Connection"))
		r->conn_upgrade |= list_has(v, "upgrade");
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Accept"))
		set_once_r(r, &r->accept, v);
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Protocol"))
		set_once_r(r, &r->protocol, v);
	else if (slice_eq_cstr_nocase(name, "Sec-WebSocket-Extensions"))
		set_once_r(r, &r->extensions, v);
	return 0;
}

static int response_line_fn(struct slice line, bool first, void *r)
{
	return first ? parse_status_line(line, r) : parse_response_header(line, r);
}

int ws_response_parse(const char *p, size_t l, size_t max, struct ws_response *r, size_t *used)
{
	memset(r, 0, sizeof *r);
	return parse_head(p, l, max, used, response_line_fn, r);
}

int ws_response_check(const struct ws_response *r, const char *key)
{
	if (r->status != 101)
		return ECONNREFUSED;
	if (r->dup || !r->upgrade.p || !slice_eq_cstr_nocase(r->upgrade, "websocket") ||
	    !r->conn_upgrade)
		return EBADMSG;
	char want[29];
	if (ws_accept_key(slice_cstr(key), want))
		return EBADMSG;
	/* 4.1: compared exactly, not without case: it is base64 */
	if (!r->accept.p || !slice_eq(r->accept, slice_cstr(want)))
		return EBADMSG;
	if (!r->protocol.p || !slice_eq_cstr_nocase(r->protocol, "sip"))
		return EBADMSG;
	if (r->extensions.p && r->extensions.l)
		return EBADMSG;
	return 0;
}
