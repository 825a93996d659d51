/* relay: the latching state machine of one receiving socket (RFC 4961, RFC 7362), safe against RTP
 * Bleed. */
#include <string.h>

#include "relay/relay.h"

static bool usable(const struct net_addr *a)
{
	return a && (a->u.sa.sa_family == AF_INET || a->u.sa.sa_family == AF_INET6);
}

static void set_allow(struct relay_latch *l, const struct net_addr *a0, const struct net_addr *a1)
{
	memset(l->allow, 0, sizeof l->allow);
	if (usable(a0))
		l->allow[0] = *a0;
	if (usable(a1))
		l->allow[1] = *a1;
}

static void set_guess(struct relay_latch *l, const struct net_addr *guess)
{
	memset(&l->guess, 0, sizeof l->guess);
	l->guess_ok = false;
	if (!usable(guess))
		return;
	l->guess = *guess;
	/* c=0.0.0.0 is hold (RFC 2543 style), port 0 a rejected stream: no target */
	l->guess_ok = !net_addr_is_any(guess) && net_addr_port(guess) != 0;
}

void relay_latch_init(struct relay_latch *l, const struct net_addr *guess,
		      const struct net_addr *allow0, const struct net_addr *allow1)
{
	memset(l, 0, sizeof *l);
	set_guess(l, guess);
	set_allow(l, allow0, allow1);
}

/* RFC 7362 4: only the IP that signalled for the party, or the one its SDP
 * names, may take the stream; the port is what NAT changes, so it is learnt. */
static bool allowed(const struct relay_latch *l, const struct relay_latch_conf *c,
		    const struct net_addr *src)
{
	if (c->mode == RELAY_LATCH_LOOSE)
		return true;
	for (unsigned i = 0; i < RELAY_LATCH_ALLOW; i++)
		if (usable(&l->allow[i]) && net_addr_ip_eq(&l->allow[i], src))
			return true;
	return false;
}

void relay_latch_update(struct relay_latch *l, const struct relay_latch_conf *c,
			const struct net_addr *guess, const struct net_addr *allow0,
			const struct net_addr *allow1)
{
	set_guess(l, guess);
	set_allow(l, allow0, allow1);
	if (l->latched && !allowed(l, c, &l->peer))
		l->latched = false;
	if (l->checked_ok && !allowed(l, c, &l->checked))
		l->checked_ok = false;
}

bool relay_latch_check(struct relay_latch *l, const struct relay_latch_conf *c,
		       const struct net_addr *src)
{
	if (!allowed(l, c, src))
		return false;
	l->checked = *src;
	l->checked_ok = true;
	return true;
}

enum relay_latch_verdict relay_latch_packet(struct relay_latch *l, const struct relay_latch_conf *c,
					    const struct net_addr *src, uint32_t ssrc,
					    uint64_t now_ms)
{
	if (l->latched && net_addr_eq(&l->peer, src)) {
		l->ssrc = ssrc;
		l->last_ms = now_ms;
		return RELAY_LATCH_PASS;
	}
	if (!allowed(l, c, src))
		return RELAY_LATCH_DROP;
	if (!l->latched) {
		l->peer = *src;
		l->latched = true;
		l->ssrc = ssrc;
		l->last_ms = now_ms;
		l->latched_ms = now_ms;
		l->to_guess = false;
		return RELAY_LATCH_NEW;
	}
	/* Crossing in an ALG'd NAT (relay.h): right after it started, the stream
	 * moved to another port of the same IP, the one its own SDP announced and
	 * the relay was sending to. Taken at once, but only that address, only
	 * the latched SSRC, only in the first relatch_ms and only once: a stranger
	 * needs the party's announced source and its SSRC, within that window. */
	if (l->guess_ok && !l->to_guess && ssrc == l->ssrc && net_addr_eq(src, &l->guess) &&
	    net_addr_ip_eq(src, &l->peer) && now_ms - l->latched_ms < c->relatch_ms) {
		l->peer = *src;
		l->last_ms = now_ms;
		l->to_guess = true;
		l->relatches++;
		return RELAY_LATCH_MOVED;
	}
	/* Re-latch (the phone's NAT binding changed, or it roamed): only once
	 * the latched source fell silent, and in strict mode only for the
	 * stream it was sending (same SSRC), so that an injector on an allowed
	 * IP cannot take a live stream, nor one that stopped, with its own. */
	if (now_ms - l->last_ms < c->relatch_ms)
		return RELAY_LATCH_DROP;
	if (c->mode == RELAY_LATCH_STRICT && ssrc != l->ssrc)
		return RELAY_LATCH_DROP;
	l->peer = *src;
	l->ssrc = ssrc;
	l->last_ms = now_ms;
	l->relatches++;
	return RELAY_LATCH_MOVED;
}

bool relay_latch_dest(const struct relay_latch *l, const struct net_addr **out)
{
	if (l->latched) {
		*out = &l->peer;
		return true;
	}
	if (l->checked_ok) {
		*out = &l->checked;
		return true;
	}
	if (l->guess_ok) {
		*out = &l->guess;
		return true;
	}
	return false;
}

enum relay_evidence relay_latch_evidence(const struct relay_latch *l)
{
	if (!l->latched)
		return RELAY_EV_NO_MEDIA;
	/* no address announced (c=0.0.0.0, a name) counts as another IP */
	if (!usable(&l->guess) || net_addr_is_any(&l->guess) || !net_addr_ip_eq(&l->guess, &l->peer))
		return RELAY_EV_OTHER_IP;
	return net_addr_port(&l->guess) == net_addr_port(&l->peer) ? RELAY_EV_AS_ANNOUNCED
								     : RELAY_EV_OTHER_PORT;
}

const char *relay_evidence_name(enum relay_evidence e)
{
	static const char *const names[RELAY_EV_N] = {
	    [RELAY_EV_UNKNOWN] = "unknown",
	    [RELAY_EV_NO_MEDIA] = "no-media",
	    [RELAY_EV_AS_ANNOUNCED] = "media-as-announced",
	    [RELAY_EV_OTHER_PORT] = "media-other-port",
	    [RELAY_EV_OTHER_IP] = "media-other-ip",
	};
	return (unsigned)e < RELAY_EV_N ? names[e] : "unknown";
}
