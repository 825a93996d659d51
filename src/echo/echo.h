/* echo: the echo service of pinhole serve: a small UAS that answers calls to [echo] user and sends
 * each RTP packet back where it came from.
 *
 * The echo is a callee behind the proxy, like a registered phone: the proxy
 * forwards an INVITE for sip:<user>@<one of our domains> to the echo's own SIP
 * socket (on loopback, or on the SIP listener's own address), with its usual
 * Record-Route and media policy, so when the proxy engages the relay for the
 * caller the echo's media goes through the relay as any call's would. The
 * echo answers 200 with an SDP (PCMU or PCMA, rtcp-mux when offered), opens a
 * port pair of its own, and once the ACK has come, sends each RTP packet it
 * receives back to its source, as its own stream (own SSRC and sequence,
 * the caller's timestamps and payload), and answers each RTCP packet with
 * its own report. It ends the call on BYE, or sends BYE after max_duration.
 *
 * What a stranger can make it send, and to whom: nothing before an ACK
 * (which needs the To tag of our 200, so a forged INVITE's victim is never
 * echoed to); then at most one packet back per packet in, never larger, only
 * to the one source the stream latched onto (the first valid packet from
 * the caller's signalling IP or its SDP IP, like the relay's strict latch),
 * for at most max_duration; the calls at once are bounded in total and per
 * caller source. Calls and counters live on one worker's loop.
 *
 * Ownership: struct echo is owned by the serve command; echo_free after
 * net_stop.
 */
#ifndef PINHOLE_ECHO_H
#define PINHOLE_ECHO_H

#include <stdbool.h>

#include "core/core.h"
#include "net/net.h"
#include "sip/sip.h"

extern const struct conf_key echo_conf_keys[]; /* [echo] */

struct echo;

/* Reads [echo], opens the SIP socket, and puts it on worker 0's loop (by
 * loop_post: before or after net_start). The net's UDP SIP listeners must
 * exist (edge_alloc before). Errors are logged and returned. */
int echo_start(struct echo **ep, struct net *n, const struct conf *c);
/* After net_stop. */
void echo_free(struct echo *e);

/* The proxy's hook (proxy_service_h): whether a Request-URI in our domains
 * names the echo user, and the flow from our SIP listener to the echo.
 * Any thread; reads only what echo_start set. */
bool echo_route(const struct sip_uri *ruri, struct flow *out, void *arg);

struct echo_stats {
	int64_t calls_active;
	uint16_t sip_port; /* the echo's own SIP socket (tests) */
};
void echo_stats_get(struct echo *e, struct echo_stats *out);

#endif
