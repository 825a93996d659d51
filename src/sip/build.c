/* sip: building responses from a parsed request, and default reason phrases. */
#include <errno.h>
#include <string.h>

#include "sip/lex.h"
#include "sip/sip.h"

/* Writes "Name: value\r\n" with the full header name, so compact forms in the
 * request come back in their long form. */
static void put_hdr(struct buf *out, const char *name, struct slice value)
{
	buf_append_cstr(out, name);
	buf_append(out, ": ", 2);
	buf_append_slice(out, value);
	buf_append(out, "\r\n", 2);
}

int sip_build_response(struct buf *out, const struct sip_msg *req, uint16_t status,
		       const char *reason, struct slice via1_text, struct slice to_tag,
		       const char *extra_hdrs)
{
	if (!req->request || status < 100 || status > 699)
		return EINVAL;
	if (!reason)
		reason = sip_reason_phrase(status);
	/* room for the usual response at once (the request's headers come back) */
	buf_reserve(out, req->hdr_end + 128 + (extra_hdrs ? strlen(extra_hdrs) : 0));
	char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
			(char)('0' + status % 10), ' '};
	buf_append(out, "SIP/2.0 ", 8);
	buf_append(out, code, sizeof code);
	buf_append_cstr(out, reason);
	buf_append(out, "\r\n", 2);

	/* RFC 3261 8.2.6.2: every Via, in order */
	for (size_t k = 0; k < req->n_hdrs; k++) {
		const struct sip_hdr *h = &req->hdrs[k];
		if (h->id != SIP_HDR_VIA)
			continue;
		if (k == req->via1_hdr && via1_text.l && req->via1.whole.p) {
			const char *vs = h->value.p, *ve = vs + h->value.l;
			const struct slice w = req->via1.whole;
			buf_append_cstr(out, "Via: ");
			buf_append(out, vs, (size_t)(w.p - vs));
			buf_append_slice(out, via1_text);
			buf_append(out, w.p + w.l, (size_t)(ve - (w.p + w.l)));
			buf_append(out, "\r\n", 2);
			continue;
		}
		put_hdr(out, "Via", h->value);
	}
	const struct sip_hdr *h = sip_msg_hdr(req, SIP_HDR_FROM, 0);
	if (h)
		put_hdr(out, "From", h->value);
	h = sip_msg_hdr(req, SIP_HDR_TO, 0);
	if (h) {
		buf_append_cstr(out, "To: ");
		buf_append_slice(out, h->value);
		/* RFC 3261 8.2.6.2: add a tag unless the request had one */
		if (req->to_tag.l == 0 && to_tag.l) {
			buf_append_cstr(out, ";tag=");
			buf_append_slice(out, to_tag);
		}
		buf_append(out, "\r\n", 2);
	}
	h = sip_msg_hdr(req, SIP_HDR_CALL_ID, 0);
	if (h)
		put_hdr(out, "Call-ID", h->value);
	h = sip_msg_hdr(req, SIP_HDR_CSEQ, 0);
	if (h)
		put_hdr(out, "CSeq", h->value);
	if (extra_hdrs)
		buf_append_cstr(out, extra_hdrs);
	buf_append_cstr(out, "Content-Length: 0\r\n\r\n");
	return out->failed ? ENOMEM : 0;
}

struct reason {
	uint16_t status;
	const char *phrase;
};

static const struct reason reasons[] = {
	{100, "Trying"},
	{180, "Ringing"},
	{181, "Call Is Being Forwarded"},
	{182, "Queued"},
	{183, "Session Progress"},
	{199, "Early Dialog Terminated"},
	{200, "OK"},
	{202, "Accepted"},
	{204, "No Notification"},
	{300, "Multiple Choices"},
	{301, "Moved Permanently"},
	{302, "Moved Temporarily"},
	{305, "Use Proxy"},
	{380, "Alternative Service"},
	{400, "Bad Request"},
	{401, "Unauthorized"},
	{402, "Payment Required"},
	{403, "Forbidden"},
	{404, "Not Found"},
	{405, "Method Not Allowed"},
	{406, "Not Acceptable"},
	{407, "Proxy Authentication Required"},
	{408, "Request Timeout"},
	{410, "Gone"},
	{412, "Conditional Request Failed"},
	{413, "Request Entity Too Large"},
	{414, "Request-URI Too Long"},
	{415, "Unsupported Media Type"},
	{416, "Unsupported URI Scheme"},
	{417, "Unknown Resource-Priority"},
	{420, "Bad Extension"},
	{421, "Extension Required"},
	{422, "Session Interval Too Small"},
	{423, "Interval Too Brief"},
	{428, "Use Identity Header"},
	{429, "Provide Referrer Identity"},
	{430, "Flow Failed"},
	{433, "Anonymity Disallowed"},
	{439, "First Hop Lacks Outbound Support"},
	{440, "Max-Breadth Exceeded"},
	{469, "Bad Info Package"},
	{470, "Consent Needed"},
	{480, "Temporarily Unavailable"},
	{481, "Call/Transaction Does Not Exist"},
	{482, "Loop Detected"},
	{483, "Too Many Hops"},
	{484, "Address Incomplete"},
	{485, "Ambiguous"},
	{486, "Busy Here"},
	{487, "Request Terminated"},
	{488, "Not Acceptable Here"},
	{489, "Bad Event"},
	{491, "Request Pending"},
	{493, "Undecipherable"},
	{494, "Security Agreement Required"},
	{500, "Server Internal Error"},
	{501, "Not Implemented"},
	{502, "Bad Gateway"},
	{503, "Service Unavailable"},
	{504, "Server Time-out"},
	{505, "Version Not Supported"},
	{513, "Message Too Large"},
	{555, "Push Notification Service Not Supported"},
	{580, "Precondition Failure"},
	{600, "Busy Everywhere"},
	{603, "Decline"},
	{604, "Does Not Exist Anywhere"},
	{606, "Not Acceptable"},
	{607, "Unwanted"},
	{608, "Rejected"},
};

const char *sip_reason_phrase(uint16_t status)
{
	for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].phrase;
	/* RFC 3261 21: an unknown code is treated as the x00 of its class */
	static const char *const cls[] = {"Unknown", "Trying", "OK", "Multiple Choices",
					  "Bad Request", "Server Internal Error",
					  "Busy Everywhere"};
	return status < 700 ? cls[status / 100] : "Unknown";
}
