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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_match_the_grammar),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
