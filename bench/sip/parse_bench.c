/* SIP parser micro-benchmark: sip_msg_parse() on the messages a proxy sees in
 * the call benchmark, plus a REGISTER. bench/sip/parse.sh builds and runs it.
 *
 *   parse_bench KIND N   parse message KIND (invite|ok|bye|register) N times,
 *                        print "KIND ns_per_parse"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sip/sip.h"

struct sample {
	const char *kind;
	const char *text;
};

static const struct sample samples[] = {
	/* the caller's INVITE as sipp sends it (bench/sipp/uac.xml) */
	{"invite",
	 "INVITE sip:u17@127.0.0.1:15060 SIP/2.0\r\n"
	 "Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-31415-1-0\r\n"
	 "Max-Forwards: 70\r\n"
	 "From: <sip:caller@127.0.0.1:15090>;tag=31415C1\r\n"
	 "To: <sip:u17@127.0.0.1:15060>\r\n"
	 "Call-ID: 1-31415@127.0.0.1\r\n"
	 "CSeq: 1 INVITE\r\n"
	 "Contact: <sip:caller@127.0.0.1:15090>\r\n"
	 "User-Agent: sipp-bench\r\n"
	 "Content-Type: application/sdp\r\n"
	 "Content-Length: 129\r\n\r\n"
	 "v=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"},
	/* the callee's 200 as it comes back: our Via on top, two Record-Route values */
	{"ok",
	 "SIP/2.0 200 OK\r\n"
	 "Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bKAbCdEfGhIjKlMnOpQrStUv\r\n"
	 "Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-31415-1-0;received=127.0.0.1;rport=15090\r\n"
	 "Record-Route: <sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:15060;lr>, <sip:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB@127.0.0.1:15060;lr>\r\n"
	 "From: <sip:caller@127.0.0.1:15090>;tag=31415C1\r\n"
	 "To: <sip:u17@127.0.0.1:15060>;tag=31416SIPpTag011\r\n"
	 "Call-ID: 1-31415@127.0.0.1\r\n"
	 "CSeq: 1 INVITE\r\n"
	 "Contact: <sip:u17@127.0.0.1:15070;transport=UDP>\r\n"
	 "Content-Type: application/sdp\r\n"
	 "Content-Length: 0\r\n\r\n"},
	/* the caller's BYE along the route set */
	{"bye",
	 "BYE sip:u17@127.0.0.1:15070;transport=UDP SIP/2.0\r\n"
	 "Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-31415-1-5\r\n"
	 "Route: <sip:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB@127.0.0.1:15060;lr>, <sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:15060;lr>\r\n"
	 "Max-Forwards: 70\r\n"
	 "From: <sip:caller@127.0.0.1:15090>;tag=31415C1\r\n"
	 "To: <sip:u17@127.0.0.1:15060>;tag=31416SIPpTag011\r\n"
	 "Call-ID: 1-31415@127.0.0.1\r\n"
	 "CSeq: 2 BYE\r\n"
	 "Contact: <sip:caller@127.0.0.1:15090>\r\n"
	 "Content-Length: 0\r\n\r\n"},
	/* a phone's REGISTER (bench/sipp/register.xml) */
	{"register",
	 "REGISTER sip:127.0.0.1:15060 SIP/2.0\r\n"
	 "Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-31415-1-0;rport\r\n"
	 "Max-Forwards: 70\r\n"
	 "From: <sip:s10000r1u17@127.0.0.1>;tag=31415R1\r\n"
	 "To: <sip:s10000r1u17@127.0.0.1>\r\n"
	 "Call-ID: 1-31415@127.0.0.1\r\n"
	 "CSeq: 1 REGISTER\r\n"
	 "Contact: <sip:s10000r1u17@127.0.0.1:15090>\r\n"
	 "Expires: 3600\r\n"
	 "User-Agent: sipp-bench\r\n"
	 "Content-Length: 0\r\n\r\n"},
};

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s invite|ok|bye|register N\n", argv[0]);
		return 2;
	}
	const struct sample *s = NULL;
	for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
		if (strcmp(argv[1], samples[i].kind) == 0)
			s = &samples[i];
	long n = atol(argv[2]);
	if (!s || n <= 0) {
		fprintf(stderr, "%s: unknown kind or bad count\n", argv[0]);
		return 2;
	}
	static struct sip_msg m;
	size_t len = strlen(s->text);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		if (sip_msg_parse(&m, s->text, len, false, NULL)) {
			fprintf(stderr, "%s: the %s sample does not parse\n", argv[0], s->kind);
			return 1;
		}
		__asm__ volatile("" : : "r"(&m) : "memory"); /* keep every parse */
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
	printf("%s %.1f\n", s->kind, ns);
	return 0;
}
