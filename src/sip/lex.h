/* sip: private character classes and scanning helpers shared by the SIP codec files. */
#ifndef PINHOLE_SIP_LEX_H
#define PINHOLE_SIP_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/core.h"
#include "sip/sip.h"

enum {
	SIP_CC_TOKEN = 1,      /* RFC 3261 25.1 token */
	SIP_CC_ALNUM = 2,
	SIP_CC_DIGIT = 4,
	SIP_CC_LWS = 8,        /* SP, HTAB, and the CR/LF of a folded line */
	SIP_CC_UNRESERVED = 16, /* RFC 3261 25.1 unreserved (alphanum / mark) */
	/* what a SIP URI part allows beside unreserved and escapes (19.1.1) */
	SIP_CC_URI_USER = 32,      /* user-unreserved "&=+$,;?/" */
	SIP_CC_URI_PASSWORD = 64,  /* "&=+$," */
	SIP_CC_URI_PARAMS = 128,   /* param-unreserved "[]/:&+$" and the ";" "=" between */
	SIP_CC_URI_HEADERS = 256,  /* hnv-unreserved "[]/?:+$" and "=" "&" */
	SIP_CC_LIST_MARK = 512,    /* what ends or nests a header list value: , " < > */
	SIP_CC_PARAM_MARK = 1024,  /* what ends or splits a parameter: ; = " */
	SIP_CC_HOST = 2048,        /* hostname and IPv4 bytes: alphanum - . _ */
	SIP_CC_PVALUE = 4096       /* unquoted parameter values: token : [ ] / */
};

/* Character classes of every byte value (lex.c). */
extern const uint16_t sip_lex_class[256];

static inline bool sip_lex_is_token(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_TOKEN;
}

static inline bool sip_lex_is_alnum(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_ALNUM;
}

static inline bool sip_lex_is_digit(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_DIGIT;
}

static inline bool sip_lex_is_hex(unsigned char c)
{
	return sip_lex_is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* SP, HTAB and the CR/LF of a folded line all count as linear white space
 * inside a header value. */
static inline bool sip_lex_is_lws(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_LWS;
}

static inline bool sip_lex_is_unreserved(unsigned char c)
{
	return sip_lex_class[c] & SIP_CC_UNRESERVED;
}

/* Index of the first byte at or after i whose class has one of the bits of
 * marks, or s.l. Sixteen bytes at a time where SSE2 is there (the four bytes
 * a, b, c, d must be exactly the class's members): header values are scanned
 * for their commas, quotes and angle brackets on every message. */
static inline size_t sip_lex_find_class4(struct slice s, size_t i, unsigned marks, char a, char b,
					 char c, char d)
{
#ifdef __SSE2__
	const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b), vc = _mm_set1_epi8(c),
		      vd = _mm_set1_epi8(d);
	for (; i + 16 <= s.l; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s.p + i));
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)),
					   _mm_or_si128(_mm_cmpeq_epi8(x, vc), _mm_cmpeq_epi8(x, vd)));
		unsigned bits = (unsigned)_mm_movemask_epi8(hit);
		if (bits)
			return i + (size_t)__builtin_ctz(bits);
	}
#else
	(void)a, (void)b, (void)c, (void)d;
#endif
	while (i < s.l && !(sip_lex_class[(unsigned char)s.p[i]] & marks))
		i++;
	return i;
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

/* sip_param_find() with the name as a slice. */
bool sip_lex_param_find(struct slice params, struct slice name, struct sip_param *out);

/* Checks a ";name[=value]..." list one parameter at a time (names are
 * tokens, values tokens, quoted strings or host-like text ([v6]:port)): 1
 * with the parameter at *pos (0 at first) in *out and *pos moved past it, 0
 * at the end, EBADMSG when malformed. */
int sip_lex_params_next(struct slice params, size_t *pos, struct sip_param *out);

/* Parses host[:port] at the start of s (host: name, IPv4 or [IPv6]). *end is
 * the index past what was consumed. EBADMSG when malformed. */
int sip_lex_hostport(struct slice s, size_t *end, struct slice *host, uint16_t *port,
		     bool lws_around_colon);

#endif
