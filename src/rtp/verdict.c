/* rtp: the one-way-audio verdict: from a call's figures, whether audio went both ways and the
 * likely cause when not. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rtp/rtp.h"

const char *rtp_verdict_name(enum rtp_verdict v)
{
	switch (v) {
	case RTP_VERDICT_TWO_WAY:
		return "two-way";
	case RTP_VERDICT_ONE_WAY_IN:
		return "one-way-in";
	case RTP_VERDICT_ONE_WAY_OUT:
		return "one-way-out";
	case RTP_VERDICT_NONE:
		return "none";
	case RTP_VERDICT_UNCONFIRMED:
		break;
	}
	return "unconfirmed";
}

static const char *or_unknown(const char *s)
{
	return s[0] ? s : "(unknown)";
}

/* Why nothing of the far end's reached us, in a clause: the usual NAT and
 * STUN failures, from what we announced. */
static const char *why_nothing_in(const struct rtp_verdict_in *in)
{
	if (in->local_private)
		return "we are behind NAT and announced our private address, which the far end "
		       "cannot reach, and nothing relays or latches our media";
	if (in->local_stun)
		return "the STUN-mapped address we announced does not receive: the NAT is "
		       "symmetric (or filters by address), so the mapping STUN saw is not the one "
		       "our media uses, and nothing relays our media";
	return "a NAT or firewall in front of us drops it, or the far end sends it elsewhere";
}

/* What arrived of what was expected in one direction. A direction carries
 * audio only when at least half arrived: above that the call is usable and
 * its loss is reported; below it, a few packets (a NAT binding that passed
 * some then closed, one stray) are not working audio. */
struct share {
	uint64_t got, of; /* of = 0: nothing expected, nothing known */
};

static struct share share_of(uint64_t got, int64_t lost)
{
	/* lost < 0 means duplicates: nothing missing */
	return (struct share){got, got + (lost > 0 ? (uint64_t)lost : 0)};
}

static bool share_ok(struct share s)
{
	return s.got > 0 && s.got >= s.of - s.got;
}

static double share_lost_pct(struct share s)
{
	return s.of ? 100.0 * (double)(s.of - s.got) / (double)s.of : 0;
}

/* Appends a clause about a direction's loss (", but ..."), if any. */
static void loss_clause(char *c, size_t cap, const char *what, struct share s)
{
	size_t n = strlen(c);
	if (s.got >= s.of || n >= cap)
		return;
	snprintf(c + n, cap - n, " %s %" PRIu64 " of %" PRIu64 " (%.1f%% lost).", what, s.got, s.of,
		 share_lost_pct(s));
}

void rtp_verdict_decide(const struct rtp_verdict_in *in, struct rtp_verdict_out *out)
{
	memset(out, 0, sizeof *out);
	/* an echo: what came back is measured against what we sent */
	struct share s_in = in->echo ? (struct share){in->recv_packets, in->sent_packets}
				     : share_of(in->recv_packets, in->lost);
	if (s_in.got > s_in.of)
		s_in.of = s_in.got;
	struct share s_out = in->echo ? s_in : share_of(in->far_received, in->far_lost);
	bool got_in = share_ok(s_in);
	/* ours reached them: they say so, or (an echo) it came back */
	bool out_known = in->echo || in->far_rtcp;
	bool got_out = in->echo ? got_in : (in->far_block && share_ok(s_out));
	out->source_mismatch = got_in && in->remote_source[0] && in->remote_announced[0] &&
			       strcmp(in->remote_source, in->remote_announced) != 0;
	const char *la = or_unknown(in->local_announced), *ra = or_unknown(in->remote_announced);
	char *c = out->cause;
	size_t cap = sizeof out->cause;

	if (in->sent_packets == 0 && in->recv_packets == 0) {
		out->verdict = RTP_VERDICT_NONE;
		snprintf(c, cap,
			 "No RTP was sent or received: the call carried no media (no "
			 "usable SDP answer, or the call ended before media started).");
		return;
	}
	if (got_in && (got_out || !out_known)) {
		out->verdict = got_out ? RTP_VERDICT_TWO_WAY : RTP_VERDICT_UNCONFIRMED;
		if (!got_out)
			snprintf(
			    c, cap,
			    "RTP arrived from %s, but the far end sent no RTCP, so nothing says "
			    "whether our RTP to %s reached it.",
			    or_unknown(in->remote_source), ra);
		else if (out->source_mismatch)
			snprintf(
			    c, cap,
			    "Audio went both ways; the far end's RTP came from %s, not from the "
			    "announced %s: it is behind NAT, and symmetric RTP (latching) made it "
			    "work.",
			    in->remote_source, ra);
		else
			snprintf(c, cap, "Audio went both ways.");
		if (in->echo) {
			loss_clause(c, cap, "Of our packets, the echo returned", s_in);
		} else if (got_out) {
			loss_clause(c, cap, "Of ours, the far end reports", s_out);
			loss_clause(c, cap, "Of theirs, we got", s_in);
		}
		return;
	}
	if (got_in) {
		/* theirs came, ours did not arrive */
		out->verdict = RTP_VERDICT_ONE_WAY_IN;
		if (out->source_mismatch)
			snprintf(
			    c, cap,
			    "RTP arrived from %s, not from the announced %s: the far end is "
			    "behind NAT and nothing relays or latches its media, so our RTP to "
			    "%s never reached it.",
			    in->remote_source, ra, ra);
		else if (in->remote_private)
			snprintf(
			    c, cap,
			    "The far end announced the private address %s and our RTP sent there "
			    "never reached it: it is behind NAT and nothing relays its media.",
			    ra);
		else if (in->far_block && s_out.got > 0)
			snprintf(c, cap,
				 "RTP arrived from %s, but the far end reports only %" PRIu64
				 " of %" PRIu64 " of ours: our RTP to %s is mostly dropped on "
				 "the way (a firewall, or a NAT that does not pass it).",
				 or_unknown(in->remote_source), s_out.got, s_out.of, ra);
		else
			snprintf(
			    c, cap,
			    "RTP arrived from %s, but the far end reports none of ours: our RTP "
			    "to %s is dropped on the way (a firewall, or a NAT that does not pass "
			    "it).",
			    or_unknown(in->remote_source), ra);
		return;
	}
	if (got_out) {
		out->verdict = RTP_VERDICT_ONE_WAY_OUT;
		if (s_in.got > 0)
			snprintf(c, cap,
				 "Our RTP reached the far end but only %" PRIu64 " of %" PRIu64
				 " of its packets came to our announced %s: %s.",
				 s_in.got, s_in.of, la, why_nothing_in(in));
		else
			snprintf(c, cap,
				 "Our RTP reached the far end but nothing came back to our "
				 "announced %s: %s.",
				 la, why_nothing_in(in));
		loss_clause(c, cap, "Of ours, the far end reports", s_out);
		return;
	}
	out->verdict = RTP_VERDICT_NONE;
	if (in->echo && s_in.got > 0)
		snprintf(c, cap,
			 "We sent %" PRIu64 " RTP packets to the echo at %s and only %" PRIu64
			 " of %" PRIu64 " packets came back to our announced %s: %s.",
			 in->sent_packets, ra, s_in.got, s_in.of, la, why_nothing_in(in));
	else if (in->echo)
		snprintf(c, cap,
			 "We sent %" PRIu64 " RTP packets to the echo at %s and none came back to "
			 "our announced %s: %s.",
			 in->sent_packets, ra, la, why_nothing_in(in));
	else if (s_in.got > 0 || (in->far_block && s_out.got > 0))
		snprintf(c, cap,
			 "Almost no RTP arrived either way: %" PRIu64 " of %" PRIu64
			 " of theirs reached our announced %s, and the far end reports %" PRIu64
			 " of our %" PRIu64 " sent to %s: %s.",
			 s_in.got, s_in.of, la, s_out.got, s_out.of, ra, why_nothing_in(in));
	else if (in->local_private && in->remote_private)
		snprintf(
		    c, cap,
		    "No RTP arrived either way: both ends announced private addresses (ours %s, "
		    "theirs %s): both are behind NAT and nothing relays the media.",
		    la, ra);
	else if (in->remote_private)
		snprintf(
		    c, cap,
		    "No RTP arrived either way: the far end announced the private address %s, "
		    "unreachable from here, and nothing it sent reached our %s: it is behind NAT "
		    "and nothing relays its media.",
		    ra, la);
	else
		snprintf(c, cap,
			 "No RTP arrived either way (we sent %" PRIu64 " packets to %s): %s.",
			 in->sent_packets, ra, why_nothing_in(in));
}

static double loss_pct(int64_t lost, uint64_t received)
{
	if (lost <= 0)
		return 0;
	return 100.0 * (double)lost / ((double)lost + (double)received);
}

int rtp_verdict_text(const struct rtp_verdict_in *in, const struct rtp_verdict_out *out,
		     struct buf *b)
{
	buf_printf(b, "audio: %s\n", rtp_verdict_name(out->verdict));
	buf_printf(b, "cause: %s\n", out->cause);
	buf_printf(b, "out: %" PRIu64 " packets, %" PRIu64 " bytes sent to %s", in->sent_packets,
		   in->sent_bytes, or_unknown(in->remote_announced));
	if (in->far_block)
		buf_printf(b, "; far end got %" PRIu64 ", lost %" PRId64 ", jitter %.1f ms",
			   in->far_received, in->far_lost, in->far_jitter_ms);
	else if (!in->echo)
		buf_printf(b, "; %s",
			   in->far_rtcp ? "far end reports nothing of ours"
					: "no RTCP from the far end");
	buf_printf(b, "\nin: %" PRIu64 " packets, %" PRIu64 " bytes from %s (announced %s)",
		   in->recv_packets, in->recv_bytes, or_unknown(in->remote_source),
		   or_unknown(in->remote_announced));
	if (in->recv_packets)
		buf_printf(b, ", lost %" PRId64 " (%.1f%%), jitter %.1f ms", in->lost,
			   loss_pct(in->lost, in->recv_packets), in->jitter_ms);
	if (in->strays)
		buf_printf(b, ", %" PRIu64 " from other sources ignored", in->strays);
	buf_printf(b, "\nrtt: ");
	if (in->have_rtt)
		buf_printf(b, "%u ms\n", in->rtt_ms);
	else
		buf_printf(b, "unknown\n");
	return b->failed ? ENOMEM : 0;
}

static void json_kv_str(struct buf *b, const char *k, const char *v, bool comma)
{
	buf_printf(b, "%s\"%s\":", comma ? "," : "", k);
	buf_append_json_str(b, v);
}

int rtp_verdict_json(const struct rtp_verdict_in *in, const struct rtp_verdict_out *out,
		     struct buf *b)
{
	buf_append(b, "{", 1);
	json_kv_str(b, "verdict", rtp_verdict_name(out->verdict), false);
	json_kv_str(b, "cause", out->cause, true);
	buf_printf(b, ",\"out\":{\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"far_rtcp\":%s",
		   in->sent_packets, in->sent_bytes, in->far_rtcp ? "true" : "false");
	if (in->far_block)
		buf_printf(b,
			   ",\"far_received\":%" PRIu64 ",\"far_lost\":%" PRId64
			   ",\"far_jitter_ms\":%.1f",
			   in->far_received, in->far_lost, in->far_jitter_ms);
	buf_printf(b,
		   "},\"in\":{\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"lost\":%" PRId64
		   ",\"loss_pct\":%.1f,\"jitter_ms\":%.1f,\"strays\":%" PRIu64 "}",
		   in->recv_packets, in->recv_bytes, in->lost, loss_pct(in->lost, in->recv_packets),
		   in->jitter_ms, in->strays);
	if (in->have_rtt)
		buf_printf(b, ",\"rtt_ms\":%u", in->rtt_ms);
	else
		buf_printf(b, ",\"rtt_ms\":null");
	json_kv_str(b, "local_announced", in->local_announced, true);
	json_kv_str(b, "remote_announced", in->remote_announced, true);
	json_kv_str(b, "remote_source", in->remote_source, true);
	buf_printf(b, ",\"source_mismatch\":%s}", out->source_mismatch ? "true" : "false");
	return b->failed ? ENOMEM : 0;
}
