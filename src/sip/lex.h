/* sip: private character classes and scanning helpers shared by the SIP codec files. */
#ifndef PINHOLE_SIP_LEX_H
#define PINHOLE_SIP_LEX_H

#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"
#include "sip/sip.h"

/* RFC 3261 25.1 token characters */
static inline bool sip_lex_is_token(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	switch (c) {
	case '-': case '.': case '!': case '%': case '*':
	case '_': case '+': case '`': case '\'': case '~':
		return true;
	default:
		return false;
	}
}

static inline bool sip_lex_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static inline bool sip_lex_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool sip_lex_is_hex(unsigned char c)
{
	return sip_lex_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* SP, HTAB and the CR/LF of a folded line all count as linear white space
 * inside a header value. */
static inline bool sip_lex_is_lws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline size_t sip_lex_skip_lws(struct slice s, size_t i)
{
	while (i < s.l && sip_lex_is_lws((unsigned char)s.p[i]))
		i++;
	return i;
}

static inline size_t sip_lex_skip_token(struct slice s, size_t i)
{
	while (i < s.l && sip_lex_is_token((unsigned char)s.p[i]))
		i++;
	return i;
}

static inline bool sip_lex_all_token(struct slice s)
{
	return s.l > 0 && sip_lex_skip_token(s, 0) == s.l;
}

static inline struct slice sip_lex_sub(struct slice s, size_t from, size_t to)
{
	return (struct slice){s.p + from, to - from};
}

/* Index just past the quoted string that starts at s.p[i] == '"', or 0 when
 * it is not terminated. */
size_t sip_lex_skip_quoted(struct slice s, size_t i);

/* The parameter at or after *pos in a ";a=b;c" list into *out, *pos moved
 * past it; false when none is left. Start with *pos = 0. */
bool sip_lex_param_next(struct slice params, size_t *pos, struct sip_param *out);

/* sip_param_find() with the name as a slice. */
bool sip_lex_param_find(struct slice params, struct slice name, struct sip_param *out);

/* Checks a ";name[=value]..." list: names are tokens, values tokens, quoted
 * strings or host-like text ([v6]:port). Returns 0 or EBADMSG. */
int sip_lex_check_params(struct slice params);

/* Parses host[:port] at the start of s (host: name, IPv4 or [IPv6]). *end is
 * the index past what was consumed. EBADMSG when malformed. */
int sip_lex_hostport(struct slice s, size_t *end, struct slice *host, uint16_t *port,
		     bool lws_around_colon);

#endif
