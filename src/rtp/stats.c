/* rtp: receiver statistics per source: RFC 3550 A.1 sequence validation, A.3 loss, A.8 jitter. */
#include <string.h>

#include "rtp/rtp.h"

#define SEQ_MOD (1u << 16)

static void init_seq(struct rtp_recv *s, uint16_t seq)
{
	s->base_seq = seq;
	s->max_seq = seq;
	s->bad_seq = SEQ_MOD + 1; /* so seq == bad_seq is false */
	s->cycles = 0;
	s->received = 0;
	s->received_prior = 0;
	s->expected_prior = 0;
}

/* A.1 update_seq: true when the packet is valid and counted. */
static bool update_seq(struct rtp_recv *s, uint16_t seq)
{
	uint16_t udelta = (uint16_t)(seq - s->max_seq);
	if (s->probation) {
		/* a new source: packets must come in sequence first */
		if (seq == (uint16_t)(s->max_seq + 1)) {
			s->probation--;
			s->max_seq = seq;
			if (s->probation == 0) {
				init_seq(s, seq);
				s->received++;
				return true;
			}
		} else {
			s->probation = RTP_MIN_SEQUENTIAL - 1;
			s->max_seq = seq;
		}
		return false;
	}
	if (udelta < RTP_SEQ_MAX_DROPOUT) {
		if (seq < s->max_seq)
			s->cycles += SEQ_MOD; /* wrapped */
		s->max_seq = seq;
	} else if (udelta <= SEQ_MOD - RTP_SEQ_MAX_MISORDER) {
		/* a very large jump: a restart if the next one follows it */
		if (seq == s->bad_seq) {
			s->restarts++;
			init_seq(s, seq);
		} else {
			s->bad_seq = (seq + 1) & (SEQ_MOD - 1);
			return false;
		}
	}
	/* else a duplicate or a late one: counted, max unchanged */
	s->received++;
	return true;
}

bool rtp_recv_update(struct rtp_recv *s, uint32_t ssrc, uint16_t seq, uint32_t rtp_ts,
		     uint32_t arrival_ts)
{
	if (!s->init || s->ssrc != ssrc) {
		uint32_t restarts = s->restarts + (s->init ? 1 : 0), strays = s->strays;
		memset(s, 0, sizeof *s);
		s->restarts = restarts;
		s->strays = strays;
		s->init = true;
		s->ssrc = ssrc;
		init_seq(s, seq);
		s->max_seq = (uint16_t)(seq - 1);
		s->probation = RTP_MIN_SEQUENTIAL;
	}
	bool probing = s->probation != 0;
	if (!update_seq(s, seq)) {
		if (!probing) /* a new source's first packets are not strays */
			s->strays++;
		return false;
	}
	/* A.8: J += (|D| - J) / 16, with D the change in transit time */
	uint32_t transit = arrival_ts - rtp_ts;
	if (s->have_transit) {
		int32_t d = (int32_t)(transit - s->transit);
		if (d < 0)
			d = -d;
		s->jitter_q4 += (uint32_t)d - ((s->jitter_q4 + 8) >> 4);
	}
	s->transit = transit;
	s->have_transit = true;
	return true;
}

uint32_t rtp_recv_ext_max(const struct rtp_recv *s)
{
	return s->cycles + s->max_seq;
}

uint32_t rtp_recv_expected(const struct rtp_recv *s)
{
	if (!s->init || s->probation)
		return 0;
	return rtp_recv_ext_max(s) - s->base_seq + 1;
}

int64_t rtp_recv_lost(const struct rtp_recv *s)
{
	return (int64_t)rtp_recv_expected(s) - (int64_t)s->received;
}

uint32_t rtp_recv_jitter(const struct rtp_recv *s)
{
	return s->jitter_q4 >> 4;
}

void rtp_recv_block(struct rtp_recv *s, uint32_t lsr, uint32_t dlsr, struct rtcp_block *b)
{
	memset(b, 0, sizeof *b);
	b->ssrc = s->ssrc;
	b->lsr = lsr;
	b->dlsr = dlsr;
	if (!s->init || s->probation)
		return;
	uint32_t expected = rtp_recv_expected(s);
	int64_t lost = rtp_recv_lost(s);
	b->cum_lost = lost > 0x7fffff ? 0x7fffff : lost < -0x800000 ? -0x800000 : (int32_t)lost;
	b->ext_max_seq = rtp_recv_ext_max(s);
	b->jitter = rtp_recv_jitter(s);
	/* A.3: the fraction over the interval since the last report */
	uint32_t exp_int = expected - s->expected_prior;
	uint32_t rec_int = s->received - s->received_prior;
	s->expected_prior = expected;
	s->received_prior = s->received;
	int64_t lost_int = (int64_t)exp_int - (int64_t)rec_int;
	if (exp_int != 0 && lost_int > 0)
		b->fraction_lost = (uint8_t)MIN(255, (lost_int << 8) / exp_int);
}
