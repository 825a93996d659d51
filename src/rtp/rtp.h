/* rtp: RTP and RTCP header codec (RFC 3550), first-byte demux (RFC 7983, RFC 5761), loss counting.
 *
 * Pure functions over the caller's bytes: no I/O, no allocation, no logging.
 * Parsers return 0 or EBADMSG and fill a small struct by value; nothing
 * points into the packet after they return, except payload offsets.
 */
#ifndef PINHOLE_RTP_H
#define PINHOLE_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
