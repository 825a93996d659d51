/* ua: the SDP offer and answer of a call (RFC 3264): PCMU and PCMA, a=rtcp, rtcp-mux,
 * the direction (hold and resume). Pure. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rtp/rtp.h"
#include "sdp/sdp.h"
#include "ua/ua.h"

static void sdp_head(const struct ua_sdp_local *l, struct buf *b)
{
	const char *af = l->ip6 ? "IP6" : "IP4";
	buf_printf(
	    b, "v=0\r\no=pinhole %llu %llu IN %s %s\r\ns=pinhole ua\r\nc=IN %s %s\r\nt=0 0\r\n",
	    (unsigned long long)l->sess_id, (unsigned long long)l->version, af, l->ip, af, l->ip);
}

static void rtpmap(struct buf *b, uint8_t pt)
{
	buf_printf(b, "a=rtpmap:%u %s/8000\r\n", pt, rtp_g711_name(pt));
}

int ua_sdp_offer(const struct ua_sdp_local *l, struct buf *b)
{
	sdp_head(l, b);
	buf_printf(b, "m=audio %u RTP/AVP 0 8\r\n", l->rtp_port);
	rtpmap(b, RTP_PT_PCMU);
	rtpmap(b, RTP_PT_PCMA);
	/* RFC 3605: the RTCP port need not be RTP + 1; RFC 5761: offer mux */
	buf_printf(b, "a=rtcp:%u\r\na=rtcp-mux\r\na=ptime:20\r\na=%s\r\n", l->rtcp_port,
		   sdp_dir_name(l->dir ? l->dir : SDP_DIR_SENDRECV));
	return b->failed ? ENOMEM : 0;
}

enum sdp_dir ua_sdp_answer_dir(enum sdp_dir offered, enum sdp_dir want)
{
	bool send = ua_sdp_dir_we_send(offered), recv = ua_sdp_dir_they_send(offered);
	if (want == SDP_DIR_SENDONLY || want == SDP_DIR_INACTIVE)
		recv = false;
	if (want == SDP_DIR_RECVONLY || want == SDP_DIR_INACTIVE)
		send = false;
	return send && recv ? SDP_DIR_SENDRECV
	       : send	    ? SDP_DIR_SENDONLY
	       : recv	    ? SDP_DIR_RECVONLY
			    : SDP_DIR_INACTIVE;
}

bool ua_sdp_dir_we_send(enum sdp_dir theirs)
{
	return theirs != SDP_DIR_SENDONLY && theirs != SDP_DIR_INACTIVE;
}

bool ua_sdp_dir_they_send(enum sdp_dir theirs)
{
	return theirs != SDP_DIR_RECVONLY && theirs != SDP_DIR_INACTIVE;
}

int ua_sdp_answer(const struct ua_sdp_local *l, const struct ua_sdp_remote *offer, struct buf *b)
{
	sdp_head(l, b);
	buf_printf(b, "m=audio %u RTP/AVP %u\r\n", l->rtp_port, offer->pt);
	rtpmap(b, offer->pt);
	if (offer->rtcp_mux)
		buf_printf(b, "a=rtcp:%u\r\na=rtcp-mux\r\n", l->rtp_port);
	else
		buf_printf(b, "a=rtcp:%u\r\n", l->rtcp_port);
	buf_printf(b, "a=ptime:20\r\na=%s\r\n",
		   sdp_dir_name(ua_sdp_answer_dir(offer->dir, l->dir)));
	return b->failed ? ENOMEM : 0;
}

/* The first of PCMU and PCMA in the order the fmt list gives them. */
static int pick_pt(struct slice fmts, uint8_t *pt)
{
	size_t i = 0;
	while (i < fmts.l) {
		while (i < fmts.l && fmts.p[i] == ' ')
			i++;
		size_t s = i;
		while (i < fmts.l && fmts.p[i] != ' ')
			i++;
		if (i - s == 1 && (fmts.p[s] == '0' || fmts.p[s] == '8')) {
			*pt = (uint8_t)(fmts.p[s] - '0');
			return 0;
		}
	}
	return ENOTSUP;
}

int ua_sdp_read(struct slice body, struct ua_sdp_remote *out)
{
	struct sdp s;
	memset(out, 0, sizeof *out);
	if (!body.l)
		return EBADMSG;
	int err = sdp_parse(&s, body);
	if (err)
		return err;
	for (size_t i = 0; i < s.n_media; i++) {
		const struct sdp_media *m = &s.media[i];
		if (!slice_eq_cstr_nocase(m->type, "audio") || !m->port ||
		    !slice_eq_cstr_nocase(m->proto, "RTP/AVP"))
			continue;
		if (pick_pt(m->fmts, &out->pt))
			continue;
		if (!m->conn.present || !m->conn.literal || m->conn.addr.l >= sizeof out->addr)
			return EBADMSG;
		slice_to_cstr(m->conn.addr, out->addr, sizeof out->addr);
		out->ip6 = m->conn.af == SDP_AF_IP6;
		out->port = m->port;
		out->rtcp_mux = m->rtcp_mux;
		out->rtcp_port = m->has_rtcp ? m->rtcp_port : (uint16_t)(m->port + 1);
		out->dir = m->dir;
		if (strcmp(out->addr, "0.0.0.0") == 0) {
			/* RFC 3264 8.4 (the RFC 2543 form): do not send to it */
			out->null_addr = true;
			out->dir =
			    ua_sdp_dir_they_send(m->dir) ? SDP_DIR_SENDONLY : SDP_DIR_INACTIVE;
		}
		return 0;
	}
	return ENOTSUP;
}
