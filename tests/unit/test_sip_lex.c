/* Unit tests for the SIP lexer's character class table: every class against
 * its definition in RFC 3261 25.1 and 19.1.1, for all 256 byte values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sip/lex.h"

static bool alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool in(int c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

static bool unreserved(int c)
{
	return alnum(c) || in(c, "-_.!~*'()");
}

static bool token(int c)
{
	return alnum(c) || in(c, "-.!%*_+`'~");
}

static void test_classes_match_the_grammar(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		unsigned k = sip_lex_class[c];
		assert_int_equal(!!(k & SIP_CC_TOKEN), token(c));
		assert_int_equal(!!(k & SIP_CC_ALNUM), alnum(c));
		assert_int_equal(!!(k & SIP_CC_DIGIT), c >= '0' && c <= '9');
		assert_int_equal(!!(k & SIP_CC_LWS), in(c, " \t\r\n"));
		assert_int_equal(!!(k & SIP_CC_UNRESERVED), unreserved(c));
		assert_int_equal(!!(k & SIP_CC_URI_USER), in(c, "&=+$,;?/"));
		assert_int_equal(!!(k & SIP_CC_URI_PASSWORD), in(c, "&=+$,"));
		assert_int_equal(!!(k & SIP_CC_URI_PARAMS), in(c, "[]/:&+$;="));
		assert_int_equal(!!(k & SIP_CC_URI_HEADERS), in(c, "[]/?:+$=&"));
		assert_int_equal(!!(k & SIP_CC_LIST_MARK), in(c, ",\"<>"));
		assert_int_equal(!!(k & SIP_CC_PARAM_MARK), in(c, ";=\""));
		assert_int_equal(!!(k & SIP_CC_HOST), alnum(c) || in(c, "-._"));
		assert_int_equal(!!(k & SIP_CC_PVALUE), token(c) || in(c, ":[]/"));
	}
}

/* The 16-byte scan finds the first mark wherever it sits: in the first
 * block, across the block boundary, in the tail, or nowhere. */
static void test_find_class4(void **state)
{
	(void)state;
	const char marks[] = ",\"<>";
	char buf[48];
	for (size_t l = 0; l <= sizeof buf; l++) {
		memset(buf, 'a', sizeof buf);
		struct slice s = {buf, l};
		assert_int_equal(sip_lex_find_class4(s, 0, SIP_CC_LIST_MARK, ',', '"', '<', '>'), l);
		for (size_t at = 0; at < l; at++) {
			for (size_t m = 0; m < 4; m++) {
				memset(buf, 'a', sizeof buf);
				buf[at] = marks[m];
				if (at + 5 < l)
					buf[at + 5] = ','; /* a later mark does not win */
				for (size_t from = 0; from <= at; from += 3)
					assert_int_equal(sip_lex_find_class4(s, from, SIP_CC_LIST_MARK,
									     ',', '"', '<', '>'),
							 at);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_match_the_grammar),
		cmocka_unit_test(test_find_class4),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
