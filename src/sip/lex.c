/* sip: the character class table behind lex.h's predicates. */
#include "sip/lex.h"

#define ALPHA_DIGIT(f)                                                                 \
	['a' ... 'z'] = (f) | SIP_CC_ALNUM, ['A' ... 'Z'] = (f) | SIP_CC_ALNUM,        \
	['0' ... '9'] = (f) | SIP_CC_ALNUM | SIP_CC_DIGIT

/* One lookup per byte instead of a chain of range tests and a switch: the
 * parser asks these questions of nearly every byte of every message. */
const uint16_t sip_lex_class[256] = {
	ALPHA_DIGIT(SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_HOST | SIP_CC_PVALUE),
	/* RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" /
	 * "_" / "+" / "`" / "'" / "~"); unreserved = alphanum / mark, mark =
	 * "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"; hosts also
	 * get "_", which real deployments use */
	['-'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_HOST | SIP_CC_PVALUE,
	['.'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_HOST | SIP_CC_PVALUE,
	['_'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_HOST | SIP_CC_PVALUE,
	['!'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_PVALUE,
	['*'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_PVALUE,
	['\''] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_PVALUE,
	['~'] = SIP_CC_TOKEN | SIP_CC_UNRESERVED | SIP_CC_PVALUE,
	['%'] = SIP_CC_TOKEN | SIP_CC_PVALUE,
	['`'] = SIP_CC_TOKEN | SIP_CC_PVALUE,
	['+'] = SIP_CC_TOKEN | SIP_CC_PVALUE | SIP_CC_URI_USER | SIP_CC_URI_PASSWORD |
		SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS,
	['('] = SIP_CC_UNRESERVED,
	[')'] = SIP_CC_UNRESERVED,
	/* 19.1.1: the URI parts' own extra characters */
	['&'] = SIP_CC_URI_USER | SIP_CC_URI_PASSWORD | SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS,
	['$'] = SIP_CC_URI_USER | SIP_CC_URI_PASSWORD | SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS,
	['='] = SIP_CC_URI_USER | SIP_CC_URI_PASSWORD | SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS |
		SIP_CC_PARAM_MARK,
	[','] = SIP_CC_URI_USER | SIP_CC_URI_PASSWORD | SIP_CC_LIST_MARK,
	[';'] = SIP_CC_URI_USER | SIP_CC_URI_PARAMS | SIP_CC_PARAM_MARK,
	['?'] = SIP_CC_URI_USER | SIP_CC_URI_HEADERS,
	['/'] = SIP_CC_URI_USER | SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS | SIP_CC_PVALUE,
	['['] = SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS | SIP_CC_PVALUE,
	[']'] = SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS | SIP_CC_PVALUE,
	[':'] = SIP_CC_URI_PARAMS | SIP_CC_URI_HEADERS | SIP_CC_PVALUE,
	['"'] = SIP_CC_LIST_MARK | SIP_CC_PARAM_MARK,
	['<'] = SIP_CC_LIST_MARK,
	['>'] = SIP_CC_LIST_MARK,
	[' '] = SIP_CC_LWS,
	['\t'] = SIP_CC_LWS,
	['\r'] = SIP_CC_LWS,
	['\n'] = SIP_CC_LWS,
};
