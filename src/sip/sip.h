/* sip: lazy zero-copy SIP message parser, URI/Via/name-addr parsers, splicing serializer.
 *
 * A parsed message is the caller's receive buffer plus slices into it; nothing
 * here copies or owns message bytes. Only what routing and transaction matching
 * need is decoded eagerly (start line, top Via, CSeq, Call-ID, From/To tags,
 * Max-Forwards, Content-Length); every other header is found through the header
 * index and parsed on demand with the functions below. No I/O, no logging.
 */
#ifndef PINHOLE_SIP_H
#define PINHOLE_SIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

enum sip_method {
	SIP_METHOD_UNKNOWN = 0,
	SIP_INVITE,
	SIP_ACK,
	SIP_BYE,
	SIP_CANCEL,
	SIP_REGISTER,
	SIP_OPTIONS,
	SIP_INFO,
	SIP_UPDATE,
	SIP_PRACK,
	SIP_SUBSCRIBE,
	SIP_NOTIFY,
	SIP_REFER,
	SIP_MESSAGE,
	SIP_PUBLISH,
};

enum sip_method sip_method_from(struct slice s);
const char *sip_method_name(enum sip_method m); /* NULL for UNKNOWN */

/* Header ids: one table of names, compact forms included, looked up once per header. */
enum sip_hdr_id {
	SIP_HDR_OTHER = 0,
	SIP_HDR_VIA,            /* v */
	SIP_HDR_FROM,           /* f */
	SIP_HDR_TO,             /* t */
	SIP_HDR_CALL_ID,        /* i */
	SIP_HDR_CSEQ,
	SIP_HDR_CONTACT,        /* m */
	SIP_HDR_MAX_FORWARDS,
	SIP_HDR_CONTENT_LENGTH, /* l */
	SIP_HDR_CONTENT_TYPE,   /* c */
	SIP_HDR_ROUTE,
	SIP_HDR_RECORD_ROUTE,
	SIP_HDR_PATH,
	SIP_HDR_EXPIRES,
	SIP_HDR_MIN_EXPIRES,
	SIP_HDR_SUPPORTED,      /* k */
	SIP_HDR_REQUIRE,
	SIP_HDR_PROXY_REQUIRE,
	SIP_HDR_UNSUPPORTED,
	SIP_HDR_AUTHORIZATION,
	SIP_HDR_PROXY_AUTHORIZATION,
	SIP_HDR_WWW_AUTHENTICATE,
	SIP_HDR_PROXY_AUTHENTICATE,
	SIP_HDR_USER_AGENT,
	SIP_HDR_SERVER,
	SIP_HDR_ALLOW,
	SIP_HDR_CONTENT_ENCODING, /* e */
	SIP_HDR_SUBJECT,          /* s */
	SIP_HDR_EVENT,            /* o */
	SIP_HDR_REFER_TO,         /* r */
	SIP_HDR_DATE,
	SIP_HDR_TIMESTAMP,
	SIP_HDR_COUNT_
};

/* Maps a header name (a token; full or compact, case-insensitive) to its id. */
enum sip_hdr_id sip_hdr_id_from(struct slice name);
/* Full canonical name of a header id ("Call-ID"), NULL for SIP_HDR_OTHER. */
const char *sip_hdr_name(enum sip_hdr_id id);

/* One header line. A header line may carry several comma-separated values;
 * sip_hdr_next_value() walks them. */
struct sip_hdr {
	enum sip_hdr_id id;
	struct slice name;  /* as written */
	struct slice value; /* trimmed, folding (LWS CRLF) kept inside */
	struct slice line;  /* the whole line from name to its CRLF inclusive */
};

/* A "key[=value]" parameter list, e.g. ";branch=z9hG4bK1;rport". */
struct sip_param {
	struct slice name;
	struct slice value; /* empty when the parameter has no '=' */
	bool has_value;
};

/* Finds a parameter in a ";a=b;c" string (case-insensitive name). Returns true
 * and fills *out when present. */
bool sip_param_find(struct slice params, const char *name, struct sip_param *out);
/* The parameters of a ";a=b;c" string one at a time, from *pos = 0: 1 with
 * *out filled, 0 at the end, EBADMSG at one that is malformed. A caller that
 * wants several parameters reads them in one pass instead of one find each. */
int sip_param_next(struct slice params, size_t *pos, struct sip_param *out);

struct sip_uri {
	struct slice scheme;  /* "sip", "sips", "tel" */
	struct slice user;    /* may be empty; for tel: the number */
	struct slice password;
	struct slice host;    /* IPv6 references keep their brackets */
	uint16_t port;        /* 0 when absent */
	struct slice params;  /* ";transport=tcp;lr" including the leading ';' or empty */
	struct slice headers; /* "?a=b" without the '?' or empty */
	struct slice whole;
};

/* Parses a SIP/SIPS/tel URI. EBADMSG when malformed; ENOTSUP (scheme and
 * whole filled) for a well-formed URI of another scheme (416 material). */
int sip_uri_parse(struct slice s, struct sip_uri *out);
/* URI equality as RFC 3261 19.1.4 says: scheme and host in any case (IPv6
 * references by address), userinfo case-sensitive, %HH escapes equal to the
 * characters they stand for, ports equal (absent is not 5060); a parameter on
 * both sides has equal values in any case, user/ttl/method/maddr/transport
 * must be on both or neither, other parameters on one side are ignored;
 * headers must be the same set with equal values. Symmetric, not transitive
 * (a;x=1 = a = a;x=2), so it cannot be a hash key. */
bool sip_uri_eq(const struct sip_uri *a, const struct sip_uri *b);
/* The same on URI text (no <>): equal bytes are equal; otherwise both must
 * parse as SIP, SIPS or tel URIs and compare equal. */
bool sip_uri_text_eq(struct slice a, struct slice b);

/* name-addr / addr-spec with header parameters, as in From, To, Contact, Route. */
struct sip_nameaddr {
	struct slice display;   /* may be empty; as written, quotes kept */
	struct slice uri_s;     /* the URI text, without < > */
	struct sip_uri uri;
	struct slice params;    /* header params after the URI (";tag=..;expires=..") */
	struct slice whole;     /* the full value */
	struct slice tag;       /* the first tag parameter's value (From, To) */
	bool has_tag;           /* a tag parameter was there, even without a value */
	bool star;              /* Contact: * */
};

int sip_nameaddr_parse(struct slice s, struct sip_nameaddr *out);

struct sip_via {
	struct slice transport; /* "UDP" */
	struct slice host;      /* sent-by host; IPv6 keeps brackets */
	uint16_t port;          /* 0 when absent */
	struct slice params;    /* ";branch=..;rport" */
	struct slice branch;
	struct slice received;
	bool rport;             /* rport present */
	struct slice rport_value;
	struct slice maddr;
	struct slice ttl;
	struct slice whole;     /* this via-parm, without separators */
};

int sip_via_parse(struct slice s, struct sip_via *out);
/* Where a Via's sender was seen (RFC 3581): received= else the sent-by host,
 * rport= else the sent-by port else 5060. For a Via a hop of ours wrote. */
void sip_via_sender(const struct sip_via *v, struct slice *host, uint16_t *port);

struct sip_cseq {
	uint32_t num;
	struct slice method_s;
	enum sip_method method;
};

/* Iterates the comma-separated values of one header value, honouring quotes
 * and <>. *pos starts at 0; returns false when no value is left. */
bool sip_hdr_next_value(struct slice value, size_t *pos, struct slice *out);

/* Digest credentials, one Authorization or Proxy-Authorization value
 * (RFC 3261 22.4 and 25.1, RFC 7616 3.4). Each slice points into the value:
 * quoted strings without their quotes, quoted-pairs left as written (escaped
 * is set when one was seen). A parameter that was absent has p == NULL; one
 * present but empty has p set and l == 0. */
struct sip_digest_cred {
	struct slice username, realm, nonce, uri, response, algorithm, cnonce, opaque, qop, nc;
	struct slice userhash;
	struct slice stale; /* challenges (WWW-Authenticate) only: "true" / "false" */
	bool escaped;
};

/* Parses "Digest k=v, k=\"v\", ..." (credentials, or a challenge: the
 * same grammar, read with realm, nonce, opaque, algorithm, qop, stale). 0, ENOTSUP (another scheme, e.g. Basic),
 * or EBADMSG (malformed, a parameter given twice, or a quoted one unquoted).
 * Parameters it does not know are skipped. */
int sip_digest_parse(struct slice value, struct sip_digest_cred *out);

#define SIP_MAX_HEADERS 128

struct sip_msg {
	struct slice raw;          /* the whole message */
	bool request;
	/* request line */
	struct slice method_s;
	enum sip_method method;
	struct slice ruri_s;
	struct sip_uri ruri;
	/* status line */
	uint16_t status;
	struct slice reason;
	struct slice version;      /* "SIP/2.0" */
	struct slice start_line;   /* without CRLF */

	struct sip_hdr hdrs[SIP_MAX_HEADERS];
	size_t n_hdrs;
	size_t first_idx[SIP_HDR_COUNT_]; /* index of first header with id, or SIP_MAX_HEADERS */

	/* eagerly decoded */
	struct sip_via via1;        /* top Via value */
	size_t via1_hdr;            /* index of the header line holding via1 */
	struct slice call_id;
	struct sip_cseq cseq;
	struct slice from_tag, to_tag;
	struct sip_nameaddr from, to;
	int max_forwards;           /* -1 when absent */
	long content_length;        /* -1 when absent */
	struct slice body;
	size_t hdr_end;             /* offset of the first body byte */
};

/* Why a message failed to parse: a short phrase fit for a 400 reason
 * ("Bad CSeq", "Missing Call-ID"), and the status to answer with. */
struct sip_parse_error {
	uint16_t status;     /* 400, 413, 505, 0 when no response should be sent */
	const char *reason;
};

/* Parses data (not copied; must outlive msg). Leading CRLFs are skipped, so
 * raw may start after data. stream: the message came over a
 * stream transport, so Content-Length is mandatory and the body is exactly that
 * long (data is exactly one framed message). Over datagrams a body longer than
 * Content-Length is truncated and a shorter one is an error (RFC 3261 18.3).
 * Returns 0, or EBADMSG with err filled (err may be NULL). After EBADMSG
 * the parse has gone on as far as it could: the index and every eager field
 * whose header decoded cleanly (call_id, cseq, via1, from/to...) stay valid,
 * so a 400 or 505 can still be built with sip_build_response(). */
int sip_msg_parse(struct sip_msg *msg, const char *data, size_t len, bool stream,
		  struct sip_parse_error *err);

/* The i-th header with id (i = 0 first), or NULL. */
const struct sip_hdr *sip_msg_hdr(const struct sip_msg *msg, enum sip_hdr_id id, size_t i);
/* Header by name for ids outside the table (case-insensitive). */
const struct sip_hdr *sip_msg_hdr_named(const struct sip_msg *msg, const char *name);
size_t sip_msg_hdr_count(const struct sip_msg *msg, enum sip_hdr_id id);
/* The Via value after the top one (the hop before the last sender), parsed;
 * raw (may be NULL) gets its text. false when there is none or it is bad. */
bool sip_msg_via2(const struct sip_msg *msg, struct sip_via *out, struct slice *raw);

/* Whether an option tag is listed in Supported/Require/Proxy-Require. */
bool sip_msg_has_option(const struct sip_msg *msg, enum sip_hdr_id id, const char *tag);

/* TCP framing: 0 and *msglen when p starts with a whole message (CRLF keepalives
 * are returned as a message of their own, made only of CR and LF), ENODATA
 * when more bytes are needed, EBADMSG when the headers exceed max or
 * Content-Length is missing or invalid. Stateless: it looks at p from the start. */
int sip_frame(const char *p, size_t l, size_t max, size_t *msglen);

/* Where sip_frame_resume stopped in the next message of a stream, so that a
 * message trickled in a byte at a time is scanned once, not once per read.
 * Zero it for each new message (the bytes before must stay where they were). */
struct sip_frame_state {
	size_t scanned; /* bytes of the headers searched for their end */
	size_t hend;    /* end of the headers once found, else 0 */
	size_t cl;      /* Content-Length once the headers are whole */
	bool keepalive; /* out: the bytes framed are a CRLF keepalive (RFC 5626 4.4.1) */
	size_t work;    /* bytes examined over all calls (a cost counter for tests) */
};

/* sip_frame that resumes where the last call on this message stopped. */
int sip_frame_resume(struct sip_frame_state *fs, const char *p, size_t l, size_t max,
		     size_t *msglen);

/* ---- serializer: builds a new message by splicing slices of a parsed one ----
 *
 * An edit list names byte ranges of the original to drop or replace and pieces
 * to insert; sip_edit_apply() writes the original with the edits applied, in
 * one pass, into out. The original is never modified. Content-Length is
 * rewritten when the body is replaced.
 */

struct sip_edit {
	size_t at;          /* offset in msg->raw where the edit starts */
	size_t del;         /* bytes of the original removed from there */
	struct slice ins;   /* bytes inserted there (must outlive apply) */
};

#define SIP_MAX_EDITS 32

struct sip_editor {
	const struct sip_msg *msg;
	struct sip_edit edits[SIP_MAX_EDITS];
	size_t n;
	char arena[2048];                  /* printf'd pieces, one after the other */
	size_t arena_used;
	struct buf scratch[SIP_MAX_EDITS]; /* a piece the arena has no room for */
	size_t n_scratch;
	bool failed;
	bool body_replaced;
	struct slice new_body;
};

void sip_editor_init(struct sip_editor *e, const struct sip_msg *msg);
void sip_editor_free(struct sip_editor *e);
/* Inserts a whole header line (without CRLF) before header index idx
 * (idx == msg->n_hdrs: after the last header). */
int sip_edit_insert_hdr_before(struct sip_editor *e, size_t idx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Removes header line idx entirely. */
int sip_edit_remove_hdr(struct sip_editor *e, size_t idx);
/* Removes the first value of a header line (e.g. top Via or top Route when a
 * line holds several); the whole line when it holds only one value. */
int sip_edit_remove_first_value(struct sip_editor *e, size_t idx);
/* Replaces a slice of the original (it must point into msg->raw). */
int sip_edit_replace(struct sip_editor *e, struct slice orig, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Inserts text right after a slice of the original (e.g. params after a Via). */
int sip_edit_insert_after(struct sip_editor *e, struct slice orig, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Replaces the Request-URI. */
int sip_edit_set_ruri(struct sip_editor *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Replaces the body (and Content-Length, inserted when absent; Content-Type
 * is left alone). Do not also remove the Content-Length line yourself. */
int sip_edit_set_body(struct sip_editor *e, struct slice body);
/* Appends the edited message to out. The message ends with its body: bytes
 * past Content-Length are not copied. EINVAL when an earlier edit failed or
 * two edits overlap, ENOSPC past SIP_MAX_EDITS, ENOMEM. */
int sip_edit_apply(struct sip_editor *e, struct buf *out);

/* ---- building responses and requests from scratch ---- */

/* Writes a response to req: status line, every Via (the top one with any
 * received/rport the caller already spliced is the caller's job: pass via1_text
 * to replace the top Via value, or an empty slice to copy it), From, To (adding
 * to_tag when req's To has none and to_tag is not empty), Call-ID, CSeq, the
 * extra header lines (each ending CRLF, may be NULL), and Content-Length: 0. */
int sip_build_response(struct buf *out, const struct sip_msg *req, uint16_t status,
		       const char *reason, struct slice via1_text, struct slice to_tag,
		       const char *extra_hdrs);

const char *sip_reason_phrase(uint16_t status); /* default phrase */

/* RFC 3261 magic cookie: branch ids of RFC 3261 transactions start with it. */
#define SIP_BRANCH_MAGIC "z9hG4bK"

#endif
