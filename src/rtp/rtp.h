/* rtp: RTP and RTCP codec (RFC 3550), first-byte demux (RFC 7983, RFC 5761), G.711, tones, WAV, receiver statistics and the one-way-audio verdict.
 *
 * Pure functions over the caller's bytes: no I/O, no allocation, no logging.
 * Parsers return 0 or EBADMSG and fill a small struct by value; nothing
 * points into the packet after they return, except payload offsets.
 * Sockets, files and clocks are the caller's (pinhole ua, the echo service):
 * times come in as numbers, WAV files as bytes.
 */
#ifndef PINHOLE_RTP_H
#define PINHOLE_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- demultiplexing by the first byte (RFC 7983 7, RFC 5764 5.1.2) ----
 *
 *   first byte   0..3     STUN (RFC 8489)
 *               16..19    ZRTP (RFC 6189)
 *               20..63    DTLS (RFC 6347)
 *               64..79    TURN ChannelData (RFC 8656)
 *              128..191   RTP or RTCP (version 2); the second byte tells
 *                         them apart (RFC 5761 4): PT 64..95, i.e. the byte
 *                         192..223 with the marker bit, is RTCP
 *               anything else: not ours
 */
enum rtp_kind {
	RTP_KIND_OTHER = 0,
	RTP_KIND_STUN,
	RTP_KIND_ZRTP,
	RTP_KIND_DTLS,
	RTP_KIND_TURN_CHANNEL,
	RTP_KIND_RTP,
	RTP_KIND_RTCP,
};

/* Classifies a datagram by its first two bytes; packets shorter than the
 * fixed header of their kind (12 RTP, 8 RTCP, 20 STUN, 4 ChannelData) are
 * RTP_KIND_OTHER. It does not validate further: parse after. */
enum rtp_kind rtp_demux(const uint8_t *p, size_t len);
const char *rtp_kind_name(enum rtp_kind k); /* "rtp", "rtcp", "stun"... */

/* RFC 5761 4: the second byte of a version-2 packet, marker bit included,
 * in 192..223 (payload type 64..95) means RTCP when RTP and RTCP share a port. */
static inline bool rtp_byte2_is_rtcp(uint8_t b)
{
	return b >= 192 && b <= 223;
}

/* ---- RTP (RFC 3550 5.1) ----
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                           timestamp                           |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |           synchronization source (SSRC) identifier            |
 *   +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
 *   |            contributing source (CSRC) identifiers             |
 *   |                             ....                              |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |  defined by profile (X)       |           length (words)      |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   payload ... [padding, last byte = padding count (P)]
 */
struct rtp_hdr {
	uint8_t pt; /* 0..127 */
	bool marker;
	bool padding;
	bool extension;
	uint8_t csrc_count;
	uint16_t seq;
	uint32_t ts;
	uint32_t ssrc;
	size_t payload_off; /* header, CSRCs and extension */
	size_t payload_len; /* without padding */
};

/* Parses and validates one RTP packet: version 2, CSRCs, extension and
 * padding inside len, PT not in the RTCP range 64..95 (RFC 5761 4).
 * Returns 0 or EBADMSG. */
int rtp_parse(struct rtp_hdr *h, const uint8_t *p, size_t len);

/* ---- RTCP (RFC 3550 6.4) ----
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |V=2|P|   RC    |      PT       |        length (words - 1)     |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 SSRC of sender / first chunk                  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   ... then more packets of the compound, back to back
 */
enum {
	RTCP_SR = 200,
	RTCP_RR = 201,
	RTCP_SDES = 202,
	RTCP_BYE = 203,
	RTCP_APP = 204,
};

struct rtcp_hdr {
	uint8_t pt;	  /* of the first packet */
	uint8_t count;	  /* RC/SC of the first packet */
	uint32_t ssrc;	  /* sender SSRC of the first packet */
	unsigned packets; /* in the compound */
	bool has_bye;	  /* some packet of the compound is a BYE */
};

/* Parses a compound RTCP packet (RFC 3550 A.2 validity, relaxed for RFC 5506
 * reduced-size RTCP): every packet version 2 with PT 192..223 (the RFC 5761
 * RTCP range: 200..204 and the feedback types), lengths that add up to len
 * exactly, padding only on the last one. Returns 0 or EBADMSG. */
int rtcp_parse(struct rtcp_hdr *h, const uint8_t *p, size_t len);

/* ---- sequence accounting (after RFC 3550 A.1 and A.3) ----
 *
 * Counts RTP sequence numbers that never arrived. A forward jump of up to
 * RTP_SEQ_MAX_DROPOUT adds the missing numbers to gaps; late, duplicate and
 * reordered packets add nothing; a larger jump, or a new SSRC, restarts the
 * count from that packet (a source restarted, RFC 3550 A.1 "probation" is
 * not needed for counting). Caller-owned; zero-initialise.
 */
#define RTP_SEQ_MAX_DROPOUT 3000

struct rtp_seq {
	bool init;
	uint32_t ssrc;
	uint16_t max_seq; /* highest seen, modulo 2^16 */
	uint64_t gaps;	  /* numbers skipped so far */
	uint64_t resyncs; /* restarts (SSRC change or huge jump) */
};

/* Accounts one packet; returns how many numbers it showed missing (0 usually). */
uint32_t rtp_seq_update(struct rtp_seq *s, uint32_t ssrc, uint16_t seq);


/* Writes a 12-byte RTP header (no CSRC, no extension, no padding) from h's
 * pt, marker, seq, ts and ssrc into out[12]. */
void rtp_hdr_write(uint8_t out[12], const struct rtp_hdr *h);

/* ---- G.711 (ITU-T G.711; RFC 3551 4.5.14 PCMU = PT 0, PCMA = PT 8) ----
 *
 * 8 kHz, one byte per sample; a 20 ms packet carries 160 samples. Encoding
 * takes 16-bit linear PCM (the low bits G.711 does not keep are dropped).
 */
#define RTP_PT_PCMU 0
#define RTP_PT_PCMA 8
#define RTP_RATE 8000
#define RTP_FRAME_SAMPLES 160 /* 20 ms at 8 kHz */

uint8_t rtp_ulaw_encode(int16_t s);
int16_t rtp_ulaw_decode(uint8_t u);
uint8_t rtp_alaw_encode(int16_t s);
int16_t rtp_alaw_decode(uint8_t a);
/* n samples by payload type (PCMU or PCMA); EINVAL for another pt. */
int rtp_g711_encode(uint8_t pt, const int16_t *in, size_t n, uint8_t *out);
int rtp_g711_decode(uint8_t pt, const uint8_t *in, size_t n, int16_t *out);
/* "PCMU", "PCMA", NULL for others. */
const char *rtp_g711_name(uint8_t pt);

/* ---- a tone generator: a sine at hz, sampled at RTP_RATE ----
 * Caller-owned; rtp_tone_init before use. The phase runs on across frames,
 * so consecutive frames join without a click. */
struct rtp_tone {
	double phase, step; /* radians */
	double amplitude;   /* peak, in 16-bit units */
};
/* hz in 1..3999 (below Nyquist); amplitude 0..32767. EINVAL otherwise. */
int rtp_tone_init(struct rtp_tone *t, unsigned hz, int amplitude);
void rtp_tone_fill(struct rtp_tone *t, int16_t *out, size_t n);

/* ---- RTCP sender and receiver reports (RFC 3550 6.4) ----
 *
 *   SR: header (RC, PT=200, length) | SSRC of sender
 *       | NTP timestamp (64) | RTP timestamp | sender's packet count
 *       | sender's octet count | report blocks
 *   RR: header (RC, PT=201, length) | SSRC of packet sender | report blocks
 *
 *   report block (24 bytes):
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 SSRC of the source reported on                |
 *   | fraction lost |       cumulative number of packets lost       |
 *   |           extended highest sequence number received           |
 *   |                      interarrival jitter                      |
 *   |                         last SR (LSR)                         |
 *   |                   delay since last SR (DLSR)                  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * A report is sent as a compound packet: the SR or RR first, then an SDES
 * with the CNAME (6.1), then a BYE when leaving. With rtcp-mux (RFC 5761)
 * the same bytes go to the RTP port; rtp_demux tells them apart.
 */
#define RTCP_MAX_BLOCKS 31 /* RC is 5 bits */
#define RTCP_CNAME_MAX 255

struct rtcp_block {
	uint32_t ssrc;
	uint8_t fraction_lost; /* fixed point, /256 */
	int32_t cum_lost;      /* 24-bit signed on the wire */
	uint32_t ext_max_seq;
	uint32_t jitter; /* timestamp units */
	uint32_t lsr;	 /* middle 32 bits of the NTP time of the last SR */
	uint32_t dlsr;	 /* 1/65536 s */
};

struct rtcp_report {
	bool sr; /* a sender report (sender info valid) */
	uint32_t ssrc;
	uint64_t ntp; /* SR: 32.32 fixed point seconds since 1900 */
	uint32_t rtp_ts;
	uint32_t packets, octets; /* SR: sent so far */
	unsigned n_blocks;
	struct rtcp_block blocks[RTCP_MAX_BLOCKS];
	char cname[RTCP_CNAME_MAX + 1]; /* "" when none */
	bool bye;
};

/* Builds a compound SR or RR (r->sr), with an SDES CNAME when cname is
 * non-empty (RFC 5506 reduced size otherwise) and a BYE when r->bye, into
 * out[cap]. 0 and *len, ENOSPC when cap is too small, EINVAL for more than
 * RTCP_MAX_BLOCKS blocks. */
int rtcp_report_build(const struct rtcp_report *r, const char *cname, uint8_t *out, size_t cap,
		      size_t *len);
/* Parses a compound packet (rtcp_parse's validity rules): the first SR or RR
 * (its sender info and blocks; blocks of later SR/RR packets are added up to
 * RTCP_MAX_BLOCKS), the first CNAME, and whether a BYE is there. A compound
 * with no SR or RR parses with ssrc from its first packet and no blocks.
 * 0 or EBADMSG. */
int rtcp_report_parse(struct rtcp_report *r, const uint8_t *p, size_t len);
/* The block about ssrc, or NULL. */
const struct rtcp_block *rtcp_report_block_for(const struct rtcp_report *r, uint32_t ssrc);

/* NTP time (RFC 3550 4: seconds since 1900 in 32.32 fixed point) of a Unix
 * time in microseconds, and its middle 32 bits (the LSR form). */
uint64_t rtcp_ntp_from_unix_us(uint64_t unix_us);
static inline uint32_t rtcp_ntp_mid32(uint64_t ntp)
{
	return (uint32_t)(ntp >> 16);
}
/* RFC 3550 6.4.1: round trip from a report block that names our SR: now
 * (mid32 NTP at arrival) - LSR - DLSR. True and *ms when the block carries
 * an LSR (0 means no SR received yet) and the result is not negative. */
bool rtcp_rtt_ms(uint32_t now_mid32, uint32_t lsr, uint32_t dlsr, uint32_t *ms);
/* DLSR for a block: the delay since the SR it names arrived, in 1/65536 s. */
uint32_t rtcp_dlsr(uint64_t delay_us);

/* ---- receiver statistics (RFC 3550 A.1, A.3, A.8) ----
 *
 * One per received SSRC. A.1: a new source is valid after RTP_MIN_SEQUENTIAL
 * packets in sequence (probation); a jump of RTP_SEQ_MAX_DROPOUT or more is
 * taken as a restart only when the next packet follows it, else dropped as a
 * stray; late packets within RTP_SEQ_MAX_MISORDER count as received.
 * A.8: interarrival jitter, kept scaled by 16. Caller-owned; zero it, then
 * rtp_recv_update per packet with the arrival time in timestamp units.
 */
#define RTP_MIN_SEQUENTIAL 2
#define RTP_SEQ_MAX_MISORDER 100

struct rtp_recv {
	bool init;
	uint32_t ssrc;
	uint16_t max_seq;
	uint32_t cycles; /* wraps, times 2^16 */
	uint32_t base_seq;
	uint32_t bad_seq;
	uint32_t probation;
	uint32_t received;
	uint32_t expected_prior, received_prior; /* at the last report (A.3) */
	bool have_transit;
	uint32_t transit;
	uint32_t jitter_q4; /* jitter * 16 (A.8) */
	uint32_t restarts;  /* sequence restarts and SSRC changes */
	uint32_t strays;    /* packets A.1 refused once valid (big jumps) */
};

/* Accounts one packet; true when it counted as received (valid source,
 * sequence accepted). ssrc changes restart the statistics. */
bool rtp_recv_update(struct rtp_recv *s, uint32_t ssrc, uint16_t seq, uint32_t rtp_ts,
		     uint32_t arrival_ts);
uint32_t rtp_recv_ext_max(const struct rtp_recv *s); /* extended highest sequence */
uint32_t rtp_recv_expected(const struct rtp_recv *s);
int64_t rtp_recv_lost(const struct rtp_recv *s); /* may be negative: duplicates */
uint32_t rtp_recv_jitter(const struct rtp_recv *s); /* timestamp units */
/* Fills a report block (A.3: fraction over the interval since the last
 * call, which this call starts anew) with lsr and dlsr given. */
void rtp_recv_block(struct rtp_recv *s, uint32_t lsr, uint32_t dlsr, struct rtcp_block *b);

/* ---- WAV files: 8 kHz mono 16-bit PCM, RIFF (the ua's tone source and recording) ----
 *
 *   "RIFF" size "WAVE" | "fmt " 16 | format=1 channels=1 rate=8000
 *   byte_rate=16000 block_align=2 bits=16 | ... other chunks ... | "data" size samples(LE)
 *
 * Parsed from bytes the caller read; the caller does the file I/O. */
#define RTP_WAV_HDR_LEN 44

struct rtp_wav {
	size_t data_off, data_len; /* the samples: whole, inside the bytes given */
	uint16_t format, channels, bits;
	uint32_t rate;
	char why[96]; /* on error: what is wrong, for a person */
};
/* 0, EBADMSG (not RIFF/WAVE, truncated or broken chunks) or ENOTSUP (a valid
 * WAV of another kind: float, stereo, 44.1 kHz, 8-bit...), why filled. A
 * data chunk that claims more than is there (a recording cut short) is taken
 * up to the end of the bytes. */
int rtp_wav_parse(struct rtp_wav *w, const uint8_t *p, size_t len);
/* Sample i of the data (little-endian 16-bit). */
int16_t rtp_wav_sample(const struct rtp_wav *w, const uint8_t *p, size_t i);
/* The 44-byte header for samples 8 kHz mono 16-bit samples (a writer puts a
 * placeholder first and this once the count is known). */
void rtp_wav_header(uint8_t out[RTP_WAV_HDR_LEN], uint32_t samples);

/* ---- the verdict: did audio go both ways, and if not, why (verdict.c) ----
 *
 * The ua feeds figures it measured; the verdict decides from them alone.
 * "out" is what we sent to the far end, "in" what came from it. Whether the
 * far end got our RTP is known from its RTCP (a report block about our SSRC)
 * or, when calling an echo service, from our own packets coming back.
 * Addresses are text as the caller formats them ("198.51.100.7:40112"),
 * compared as given; "" = unknown or none.
 * A direction counts as carrying audio only when at least half of what was
 * expected arrived (an echo: packets back of packets sent; far end: its
 * received of received + lost; ours: received of received + lost); a
 * two-way cause then states the loss, a failing one the figures.
 */
enum rtp_verdict {
	RTP_VERDICT_TWO_WAY = 0,
	RTP_VERDICT_ONE_WAY_IN,	 /* theirs reached us, ours did not reach them */
	RTP_VERDICT_ONE_WAY_OUT, /* ours reached them, theirs never reached us */
	RTP_VERDICT_NONE,	 /* nothing either way */
	RTP_VERDICT_UNCONFIRMED, /* theirs reached us; nothing says whether ours did */
};

struct rtp_verdict_in {
	bool echo; /* the far end is an echo service: what comes back is ours */
	/* out */
	uint64_t sent_packets, sent_bytes;
	bool far_rtcp;		/* any RTCP came from the far end */
	bool far_block;		/* its report had a block about our SSRC */
	uint64_t far_received;	/* packets of ours it says it got (ext max - base - lost) */
	int64_t far_lost;	/* its cumulative lost about us */
	double far_jitter_ms;	/* its jitter about us */
	/* in */
	uint64_t recv_packets, recv_bytes;
	int64_t lost; /* by our receiver statistics */
	double jitter_ms;
	uint64_t strays; /* RTP from other sources than the one we took, ignored */
	/* both */
	bool have_rtt;
	uint32_t rtt_ms;
	/* addresses */
	char local_announced[64];  /* what our SDP said */
	bool local_private;	   /* ... is private (RFC 1918, 100.64/10, ULA) */
	bool local_stun;	   /* ... came from STUN */
	char remote_announced[64]; /* what the far end's SDP said */
	bool remote_private;
	char remote_source[64]; /* where its RTP actually came from */
};

struct rtp_verdict_out {
	enum rtp_verdict verdict;
	bool source_mismatch; /* RTP came from elsewhere than announced */
	char cause[512];      /* one sentence */
};

const char *rtp_verdict_name(enum rtp_verdict v); /* "two-way", "one-way-in", ... */
/* Decides; never fails. */
void rtp_verdict_decide(const struct rtp_verdict_in *in, struct rtp_verdict_out *out);
/* Appends a few lines for a person: the verdict and cause, then per direction
 * packets, bytes, loss, jitter, and the RTT. */
int rtp_verdict_text(const struct rtp_verdict_in *in, const struct rtp_verdict_out *out,
		     struct buf *b);
/* Appends one JSON object (no newline). */
int rtp_verdict_json(const struct rtp_verdict_in *in, const struct rtp_verdict_out *out,
		     struct buf *b);

#endif
