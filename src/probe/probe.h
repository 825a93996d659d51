/* probe: NAT behaviour discovery against any RFC 5780 STUN server, with a verdict for SIP. */
#ifndef PINHOLE_PROBE_H
#define PINHOLE_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"
#include "net/net.h"
#include "turnc/turnc.h"

/* `pinhole probe [options] SERVER[:PORT]`; returns the process exit status:
 * 0 done, 1 the server did not answer, 2 usage, 3 partial (the server does
 * not do RFC 5780: only what one address can tell was measured). */
int probe_main(int argc, char **argv);

/* RFC 4787 behaviours, as RFC 5780 4.3 and 4.4 find them. */
enum probe_behaviour {
	PROBE_UNKNOWN = 0,
	PROBE_NO_NAT, /* the mapped address is the local one */
	PROBE_EI,     /* endpoint-independent */
	PROBE_AD,     /* address-dependent */
	PROBE_APD,    /* address-and-port-dependent */
};

struct probe_opts {
	struct sockaddr_storage server; /* A1:P1 */
	struct sockaddr_storage local;	/* family set; address and port may be 0 */
	unsigned timeout_ms;		/* per transaction, retransmissions included */
	unsigned max_wait_s;		/* bound on the lifetime test */
	bool lifetime;			/* run RFC 5780 4.6 */
	bool lifetime_without_nat;	/* run it even when no NAT was seen (tests) */
};

/* Tri-state for what might not be testable. */
enum probe_tri { PROBE_NA = -1, PROBE_NO = 0, PROBE_YES = 1 };

struct probe_result {
	bool answered; /* test I got a response */
	bool rfc5780;  /* OTHER-ADDRESS present and the alternate answered */
	struct sockaddr_storage local, mapped, other, origin;
	bool nat;
	enum probe_behaviour mapping, filtering;
	enum probe_tri hairpin, port_preserved;
	/* RFC 5780 4.6: alive after lifetime_lo_s, gone by lifetime_hi_s; when it
	 * outlived max_wait, hi is 0 and lo the last time it was seen alive */
	bool lifetime_tested;
	unsigned lifetime_lo_s, lifetime_hi_s;
	char error[256]; /* why something could not be tested, for the report */
};

struct probe_verdict {
	unsigned keepalive_s;	     /* interval to use for outbound keepalives; 0 = none needed */
	bool keepalive_measured;     /* derived from a measured lifetime */
	enum probe_tri symmetric_ok; /* symmetric response (RFC 3581) + keepalives suffice */
	const char *media_relay;     /* "not needed", "needed", "needed without ICE", "unknown" */
	const char *notes[8];
	unsigned nnotes;
};

/* Runs the tests; fills r. Returns 0, or ETIMEDOUT when the server never
 * answered (r->error says so), or an errno from the sockets. */
int probe_run(const struct probe_opts *o, struct probe_result *r);
/* The SIP reading of a result. Pure. */
void probe_verdict(const struct probe_result *r, struct probe_verdict *v);
/* Report, human-readable or one JSON object; appended to out. */
int probe_report_text(const struct probe_result *r, const struct probe_verdict *v, struct buf *out);
int probe_report_json(const struct probe_result *r, const struct probe_verdict *v, struct buf *out);
const char *probe_behaviour_name(enum probe_behaviour b);

/* ---- --turn: a TURN server's check (turn.c) ---- */

/* How the probe reaches the server; the relay is UDP either way. */
enum probe_turn_transport { PROBE_TURN_UDP, PROBE_TURN_TCP, PROBE_TURN_TLS };

struct probe_turn_opts {
	struct sockaddr_storage server;
	enum probe_turn_transport transport;
	/* tls: the name the server's certificate must carry (RFC 5922), sent as
	 * SNI; empty: the server's address, which the certificate must then name */
	char host[256];
	const char *ca_file;	/* tls: trust these CAs, else the system store */
	unsigned timeout_ms;	/* the whole check, deallocation aside */
	struct turnc_conf cred; /* user/password or secret */
};

struct probe_turn_result {
	bool answered, allocated, permitted, channel;
	bool up, down; /* peer -> client (Data indication), client -> peer */
	bool deallocated;
	bool auth_refused;
	bool reached;	 /* udp: sent; tcp: connected; tls: the handshake done */
	bool tls_failed; /* tls: the handshake failed (tls_refused: over the certificate) */
	bool tls_refused;
	char tls_version[16];
	uint16_t code; /* the error that ended it (0 = none or no answer) */
	unsigned allocate_ms, permission_ms, round_trip_ms, lifetime_s;
	char username[300];
	char relayed[NET_ADDR_STRLEN], mapped[NET_ADDR_STRLEN], peer[NET_ADDR_STRLEN];
	char error[256];
};

/* Connects (tcp:, tls: with the certificate checked), allocates, permits our
 * own NAT's address, relays a random payload from a second socket of ours
 * up through the relay and back down over a channel, deallocates. Returns 0
 * (r says how it went, a server out of reach too) or EINVAL for unusable
 * credentials. */
int probe_turn_run(const struct probe_turn_opts *o, struct probe_turn_result *r);
/* 0 works both ways, 1 no answer (or no connection), 4 credentials
 * refused, 5 another refusal, 6 allocated but the data did not make the
 * round trip, 7 the TLS handshake failed (the certificate refused, or the
 * port does not speak TLS). */
int probe_turn_exit(const struct probe_turn_result *r);
const char *probe_turn_transport_name(enum probe_turn_transport t);
int probe_turn_report_text(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			   struct buf *out);
int probe_turn_report_json(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			   struct buf *out);
/* The check alone as one JSON object (report_json wraps it in {"turn": }). */
int probe_turn_json_check(const struct probe_turn_opts *o, const struct probe_turn_result *r,
			  struct buf *out);

#endif
