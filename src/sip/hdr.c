/* sip: method and header-name tables, value iteration and parameter lists. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

static const char *const method_names[] = {
	[SIP_INVITE] = "INVITE",       [SIP_ACK] = "ACK",
	[SIP_BYE] = "BYE",             [SIP_CANCEL] = "CANCEL",
	[SIP_REGISTER] = "REGISTER",   [SIP_OPTIONS] = "OPTIONS",
	[SIP_INFO] = "INFO",           [SIP_UPDATE] = "UPDATE",
	[SIP_PRACK] = "PRACK",         [SIP_SUBSCRIBE] = "SUBSCRIBE",
	[SIP_NOTIFY] = "NOTIFY",       [SIP_REFER] = "REFER",
	[SIP_MESSAGE] = "MESSAGE",     [SIP_PUBLISH] = "PUBLISH",
};

/* RFC 3261 7.1: method names are case-sensitive. */
enum sip_method sip_method_from(struct slice s)
{
	for (size_t i = 1; i < ARRAY_SIZE(method_names); i++) {
		const char *n = method_names[i];
		if (n[0] == (s.l ? s.p[0] : 0) && strlen(n) == s.l && memcmp(n, s.p, s.l) == 0)
			return (enum sip_method)i;
	}
	return SIP_METHOD_UNKNOWN;
}

const char *sip_method_name(enum sip_method m)
{
	if (m <= SIP_METHOD_UNKNOWN || (size_t)m >= ARRAY_SIZE(method_names))
		return NULL;
	return method_names[m];
}

struct hdr_name {
	const char *full;
	uint8_t len;  /* of full */
	char compact; /* 0 when the header has no compact form */
};

#define H(full, compact) {full, sizeof(full) - 1, compact}

static const struct hdr_name hdr_names[SIP_HDR_COUNT_] = {
	[SIP_HDR_VIA] = H("Via", 'v'),
	[SIP_HDR_FROM] = H("From", 'f'),
	[SIP_HDR_TO] = H("To", 't'),
	[SIP_HDR_CALL_ID] = H("Call-ID", 'i'),
	[SIP_HDR_CSEQ] = H("CSeq", 0),
	[SIP_HDR_CONTACT] = H("Contact", 'm'),
	[SIP_HDR_MAX_FORWARDS] = H("Max-Forwards", 0),
	[SIP_HDR_CONTENT_LENGTH] = H("Content-Length", 'l'),
	[SIP_HDR_CONTENT_TYPE] = H("Content-Type", 'c'),
	[SIP_HDR_ROUTE] = H("Route", 0),
	[SIP_HDR_RECORD_ROUTE] = H("Record-Route", 0),
	[SIP_HDR_PATH] = H("Path", 0),
	[SIP_HDR_EXPIRES] = H("Expires", 0),
	[SIP_HDR_MIN_EXPIRES] = H("Min-Expires", 0),
	[SIP_HDR_SUPPORTED] = H("Supported", 'k'),
	[SIP_HDR_REQUIRE] = H("Require", 0),
	[SIP_HDR_PROXY_REQUIRE] = H("Proxy-Require", 0),
	[SIP_HDR_UNSUPPORTED] = H("Unsupported", 0),
	[SIP_HDR_AUTHORIZATION] = H("Authorization", 0),
	[SIP_HDR_PROXY_AUTHORIZATION] = H("Proxy-Authorization", 0),
	[SIP_HDR_WWW_AUTHENTICATE] = H("WWW-Authenticate", 0),
	[SIP_HDR_PROXY_AUTHENTICATE] = H("Proxy-Authenticate", 0),
	[SIP_HDR_USER_AGENT] = H("User-Agent", 0),
	[SIP_HDR_SERVER] = H("Server", 0),
	[SIP_HDR_ALLOW] = H("Allow", 0),
	[SIP_HDR_CONTENT_ENCODING] = H("Content-Encoding", 'e'),
	[SIP_HDR_SUBJECT] = H("Subject", 's'),
	[SIP_HDR_EVENT] = H("Event", 'o'),
	[SIP_HDR_REFER_TO] = H("Refer-To", 'r'),
	[SIP_HDR_DATE] = H("Date", 0),
	[SIP_HDR_TIMESTAMP] = H("Timestamp", 0),
};

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Header ids by the first letter of their full name (0-terminated lists) and
 * by compact form, built once at start-up from hdr_names. */
static uint8_t ids_by_letter[26][SIP_HDR_COUNT_];
static uint8_t id_by_compact[26];

__attribute__((constructor)) static void hdr_index_build(void)
{
	size_t n[26] = {0};
	for (size_t i = 1; i < SIP_HDR_COUNT_; i++) {
		const struct hdr_name *h = &hdr_names[i];
		unsigned l = (unsigned)(lower(h->full[0]) - 'a');
		if (l < 26)
			ids_by_letter[l][n[l]++] = (uint8_t)i;
		if (h->compact)
			id_by_compact[h->compact - 'a'] = (uint8_t)i;
	}
}

/* Case-insensitive equality of a header name (a token) with a known name
 * (letters and '-'), 8 bytes at a time: OR-ing 0x20 folds A-Z onto a-z and
 * leaves '-', so among token characters it matches exactly the same pairs. */
static bool name_eq(const char *a, const char *known, size_t l)
{
	const uint64_t fold = 0x2020202020202020ull;
	uint64_t x, y;
	for (; l >= 8; a += 8, known += 8, l -= 8) {
		memcpy(&x, a, 8);
		memcpy(&y, known, 8);
		if ((x | fold) != (y | fold))
			return false;
	}
	for (; l; a++, known++, l--)
		if ((*a | 0x20) != (*known | 0x20))
			return false;
	return true;
}

/* Runs once per header line: the candidates of its first letter only. */
enum sip_hdr_id sip_hdr_id_from(struct slice name)
{
	if (name.l == 0)
		return SIP_HDR_OTHER;
	unsigned l = (unsigned)(lower(name.p[0]) - 'a');
	if (l >= 26)
		return SIP_HDR_OTHER;
	if (name.l == 1)
		return id_by_compact[l] ? (enum sip_hdr_id)id_by_compact[l] : SIP_HDR_OTHER;
	for (const uint8_t *id = ids_by_letter[l]; *id; id++) {
		const struct hdr_name *h = &hdr_names[*id];
		if (h->len == name.l && name_eq(name.p, h->full, name.l))
			return (enum sip_hdr_id)*id;
	}
	return SIP_HDR_OTHER;
}

/* Full name of a header id, for writers that normalise compact forms. */
const char *sip_hdr_name(enum sip_hdr_id id)
{
	if (id <= SIP_HDR_OTHER || id >= SIP_HDR_COUNT_)
		return NULL;
	return hdr_names[id].full;
}

size_t sip_lex_skip_quoted(struct slice s, size_t i)
{
	for (i++; i < s.l; i++) {
		if (s.p[i] == '\\') {
			i++; /* quoted-pair: the next byte is taken as is */
			continue;
		}
		if (s.p[i] == '"')
			return i + 1;
	}
	return 0;
}

bool sip_hdr_next_value(struct slice value, size_t *pos, struct slice *out)
{
	size_t i = *pos;
	for (;;) {
		i = sip_lex_skip_lws(value, i);
		if (i >= value.l) {
			*pos = value.l;
			return false;
		}
		if (value.p[i] != ',')
			break;
		i++; /* empty value between commas */
	}
	size_t start = i;
	bool in_angle = false;
	while (i < value.l) {
		i = sip_lex_find_class4(value, i, SIP_CC_LIST_MARK, ',', '"', '<', '>');
		if (i >= value.l)
			break;
		char c = value.p[i];
		if (c == '"') {
			size_t e = sip_lex_skip_quoted(value, i);
			if (e == 0) {
				i = value.l; /* unterminated: the rest is one value */
				break;
			}
			i = e;
			continue;
		}
		if (c == '<')
			in_angle = true;
		else if (c == '>')
			in_angle = false;
		else if (c == ',' && !in_angle)
			break;
		i++;
	}
	*out = slice_trim(sip_lex_sub(value, start, i));
	*pos = i < value.l ? i + 1 : value.l;
	return true;
}

/* Splits the parameter at params[i..] (after its ';'): name and value trimmed
 * of LWS; returns the index of the next ';' or params.l. */
static size_t param_at(struct slice params, size_t i, struct sip_param *p)
{
	size_t start = i, eq = 0;
	bool has_eq = false;
	for (;;) {
		i = sip_lex_find_class4(params, i, SIP_CC_PARAM_MARK, ';', '=', '"', ';');
		if (i >= params.l || params.p[i] == ';')
			break;
		if (params.p[i] == '"') {
			size_t e = sip_lex_skip_quoted(params, i);
			i = e ? e : params.l;
			continue;
		}
		if (params.p[i] == '=' && !has_eq) {
			has_eq = true;
			eq = i;
		}
		i++;
	}
	if (has_eq) {
		p->name = slice_trim(sip_lex_sub(params, start, eq));
		p->value = slice_trim(sip_lex_sub(params, eq + 1, i));
	} else {
		p->name = slice_trim(sip_lex_sub(params, start, i));
		p->value = (struct slice){params.p + i, 0};
	}
	p->has_value = has_eq;
	return i;
}

bool sip_param_find(struct slice params, const char *name, struct sip_param *out)
{
	return sip_lex_param_find(params, slice_cstr(name), out);
}

int sip_param_next(struct slice params, size_t *pos, struct sip_param *out)
{
	return sip_lex_params_next(params, pos, out);
}

bool sip_lex_param_find(struct slice params, struct slice want, struct sip_param *out)
{
	size_t i = 0;
	while (i < params.l) {
		if (params.p[i] == ';' || sip_lex_is_lws((unsigned char)params.p[i])) {
			i++;
			continue;
		}
		struct sip_param p;
		i = param_at(params, i, &p);
		if (slice_eq_nocase(p.name, want)) {
			if (out)
				*out = p;
			return true;
		}
	}
	return false;
}

/* token plus what hosts and IPv6 references need (received=[::1]) */
static bool is_pvalue_char(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_PVALUE;
}

int sip_lex_params_next(struct slice params, size_t *pos, struct sip_param *out)
{
	size_t i = *pos ? *pos : sip_lex_skip_lws(params, 0);
	if (i >= params.l)
		return 0;
	if (params.p[i] != ';')
		return EBADMSG;
	*pos = param_at(params, i + 1, out);
	if (!sip_lex_all_token(out->name))
		return EBADMSG;
	if (!out->has_value)
		return 1;
	if (out->value.l == 0)
		return EBADMSG;
	if (out->value.p[0] == '"')
		return sip_lex_skip_quoted(out->value, 0) == out->value.l ? 1 : EBADMSG;
	for (size_t k = 0; k < out->value.l; k++)
		if (!is_pvalue_char((unsigned char)out->value.p[k]))
			return EBADMSG;
	return 1;
}

static bool is_v6_char(unsigned char c)
{
	return sip_lex_is_hex(c) || c == ':' || c == '.';
}

int sip_lex_hostport(struct slice s, size_t *end, struct slice *host, uint16_t *port,
		     bool lws_around_colon)
{
	size_t i = 0;
	if (s.l == 0)
		return EBADMSG;
	if (s.p[0] == '[') {
		i = 1;
		while (i < s.l && is_v6_char((unsigned char)s.p[i]))
			i++;
		if (i >= s.l || s.p[i] != ']' || i < 3)
			return EBADMSG;
		i++;
	} else {
		/* hostname or IPv4; '_' tolerated because real deployments use it */
		while (i < s.l && (sip_lex_class[(unsigned char)s.p[i]] & SIP_CC_HOST))
			i++;
		if (i == 0)
			return EBADMSG;
	}
	*host = sip_lex_sub(s, 0, i);
	*port = 0;
	size_t j = lws_around_colon ? sip_lex_skip_lws(s, i) : i;
	if (j < s.l && s.p[j] == ':') {
		j = lws_around_colon ? sip_lex_skip_lws(s, j + 1) : j + 1;
		size_t d = j;
		uint32_t v = 0;
		while (j < s.l && sip_lex_is_digit((unsigned char)s.p[j]) && j - d < 6) {
			v = v * 10 + (uint32_t)(s.p[j] - '0');
			j++;
		}
		if (j == d || v > 65535 || (j < s.l && sip_lex_is_digit((unsigned char)s.p[j])))
			return EBADMSG;
		*port = (uint16_t)v;
		i = j;
	}
	*end = i;
	return 0;
}
