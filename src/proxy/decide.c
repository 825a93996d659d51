/* The relay decision: whether a call's media goes through the relay, by where its parties' packets
 * come from, not by what their messages claim. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"
#include "sdp/sdp.h"

#define DECIDE_HELP "initial offers by the relay decision's outcome and its reason ([relay] media)"
static struct metric m_decision[PROXY_WHY_N] = {
    [PROXY_WHY_NAT_FACING] = {.name = "relay_decisions_total",
			      .help = DECIDE_HELP,
			      .labels = "why=\"nat-facing\""},
    [PROXY_WHY_CLAIMS_NAT] = {.name = "relay_decisions_total",
			      .help = DECIDE_HELP,
			      .labels = "why=\"claims-nat\""},
    [PROXY_WHY_FAMILY] = {.name = "relay_decisions_total",
			  .help = DECIDE_HELP,
			  .labels = "why=\"family\""},
    [PROXY_WHY_ALWAYS] = {.name = "relay_decisions_total",
			  .help = DECIDE_HELP,
			  .labels = "why=\"always\""},
    [PROXY_WHY_ICE] = {.name = "relay_decisions_total",
		       .help = DECIDE_HELP,
		       .labels = "why=\"ice-candidate\""},
    [PROXY_WHY_DIRECT] = {.name = "relay_decisions_total",
			  .help = DECIDE_HELP,
			  .labels = "why=\"direct\""},
    [PROXY_WHY_WEBRTC] = {.name = "relay_decisions_total",
			  .help = DECIDE_HELP,
			  .labels = "why=\"webrtc\""},
    [PROXY_WHY_NEVER] = {.name = "relay_decisions_total",
			 .help = DECIDE_HELP,
			 .labels = "why=\"never\""},
};

const char *proxy_why_name(enum proxy_media_why w)
{
	static const char *const names[PROXY_WHY_N] = {
	    [PROXY_WHY_NAT_FACING] = "nat-facing", [PROXY_WHY_CLAIMS_NAT] = "claims-nat",
	    [PROXY_WHY_FAMILY] = "family",	   [PROXY_WHY_ALWAYS] = "always",
	    [PROXY_WHY_ICE] = "ice-candidate",	   [PROXY_WHY_DIRECT] = "direct",
	    [PROXY_WHY_WEBRTC] = "webrtc",	   [PROXY_WHY_NEVER] = "never"};
	return (unsigned)w < PROXY_WHY_N ? names[w] : "?";
}

int proxy_media_policy_init(struct proxy_media_policy *pol, const struct conf *c,
			    const struct net_cidr *trusted, size_t n_trusted)
{
	memset(pol, 0, sizeof *pol);
	const char *media = conf_str(c, "relay", "media");
	pol->mode = strcmp(media, "always") == 0  ? MEDIA_ALWAYS
		    : strcmp(media, "never") == 0 ? MEDIA_NEVER
		    : strcmp(media, "auto") == 0  ? MEDIA_AUTO
						  : MEDIA_NAT_FACING;
	pol->webrtc_pass = strcmp(conf_str(c, "relay", "webrtc"), "pass") == 0;
	pol->ice_candidate = strcmp(conf_str(c, "proxy", "ice"), "candidate") == 0;
	pol->trusted = trusted;
	pol->n_trusted = n_trusted;
	const char *spec = conf_str(c, "relay", "direct_networks");
	int err = net_cidr_list_parse(spec, pol->direct, PROXY_MAX_DIRECT, &pol->n_direct);
	if (err) {
		LOG_E("proxy", "[relay] direct_networks = %s: %s", spec,
		      err == ENOSPC
			  ? "more than 64 entries"
			  : "expected addresses or ADDRESS/PREFIX (CIDR), comma-separated");
		return EINVAL;
	}
	for (int i = 0; i < PROXY_WHY_N; i++)
		metric_register(&m_decision[i]);
	return 0;
}

bool proxy_media_direct(const struct proxy_media_policy *pol, const struct net_addr *src)
{
	return net_cidr_list_has(pol->direct, pol->n_direct, src) ||
	       net_cidr_list_has(pol->trusted, pol->n_trusted, src);
}

void proxy_media_caller(const struct proxy_media_policy *pol, const struct sip_msg *m,
			const struct flow *f, struct proxy_media_party *out)
{
	const struct net_addr *src = &f->remote;
	memset(out, 0, sizeof *out);
	out->src = *src;
	/* what the message claims (auto's evidence): Via or Contact unlike the
	 * packet's source, or private addresses in them */
	const struct sip_hdr *ch = sip_msg_hdr(m, SIP_HDR_CONTACT, 0);
	struct sip_nameaddr contact;
	bool have_contact = ch && sip_nameaddr_parse(ch->value, &contact) == 0 && !contact.star;
	out->claims_nat = registrar_behind_nat(f, &m->via1, have_contact ? &contact.uri : NULL);
	out->direct = proxy_media_direct(pol, src);
	/* Through a trusted proxy (an edge of ours, an SBC), the party is
	 * whoever sent to it: the address it wrote into the Via below its own
	 * (received=, else the sent-by), which we believe of a trusted hop. A
	 * trusted sender with one Via is the party itself (a trunk). */
	struct sip_via below;
	if (out->direct && net_cidr_list_has(pol->trusted, pol->n_trusted, src) &&
	    sip_msg_via2(m, &below, NULL)) {
		struct slice host;
		uint16_t port;
		sip_via_sender(&below, &host, &port);
		struct net_addr a;
		out->direct = net_addr_from_host(host, port, &a) == 0 &&
			      net_cidr_list_has(pol->direct, pol->n_direct, &a);
	}
}

static bool sdp_private(const struct sdp *s)
{
	for (size_t i = 0; i < s->n_media; i++) {
		struct net_addr a;
		if (s->media[i].conn.present &&
		    net_addr_from_host(s->media[i].conn.addr, 0, &a) == 0 &&
		    net_addr_is_private(&a))
			return true;
	}
	return false;
}

static enum proxy_media_why decide(const struct proxy_media_policy *pol, const struct sdp *offer,
				   const struct proxy_media_party *caller,
				   const struct proxy_media_party *callees, size_t n);

enum proxy_media_why proxy_media_decide(const struct proxy_media_policy *pol,
					const struct sdp *offer,
					const struct proxy_media_party *caller,
					const struct proxy_media_party *callees, size_t n)
{
	enum proxy_media_why w = decide(pol, offer, caller, callees, n);
	/* An ICE-capable caller under ice = candidate is not forced through the
	 * relay: the relay becomes its last candidate (and the c= that a party
	 * without ICE uses), and the parties' own checks decide whether media
	 * goes direct (issue 14: such legs need no relay by policy). */
	if ((w == PROXY_WHY_NAT_FACING || w == PROXY_WHY_CLAIMS_NAT) && pol->ice_candidate &&
	    offer && sdp_has_ice(offer))
		return PROXY_WHY_ICE;
	return w;
}

static enum proxy_media_why decide(const struct proxy_media_policy *pol, const struct sdp *offer,
				   const struct proxy_media_party *caller,
				   const struct proxy_media_party *callees, size_t n)
{
	if (pol->mode == MEDIA_ALWAYS)
		return PROXY_WHY_ALWAYS;
	if (pol->mode == MEDIA_NEVER)
		return PROXY_WHY_NEVER;
	/* WebRTC (ICE with DTLS-SRTP): the relay strips ICE and drops DTLS,
	 * so relaying would break it; ICE finds its own path */
	if (pol->webrtc_pass && offer && sdp_has_ice(offer) && sdp_has_fingerprint(offer))
		return PROXY_WHY_WEBRTC;
	bool family = false;
	for (size_t i = 0; i < n; i++)
		family |= net_addr_family(&callees[i].src) != net_addr_family(&caller->src);
	if (pol->mode == MEDIA_NAT_FACING) {
		/* Nothing the message says makes a party direct: an ALG rewrites
		 * Via, Contact and c= to the public address, and a STUN-using
		 * phone writes its mapped one, both true-looking and both useless
		 * behind a symmetric NAT. Only where packets come from counts. */
		if (!caller->direct)
			return PROXY_WHY_NAT_FACING;
		for (size_t i = 0; i < n; i++)
			if (!callees[i].direct && !callees[i].local)
				return PROXY_WHY_NAT_FACING;
		return family ? PROXY_WHY_FAMILY : PROXY_WHY_DIRECT;
	}
	/* auto: believes what the messages say (docs/relay.md: its risk) */
	if (caller->claims_nat || (offer && sdp_private(offer)))
		return PROXY_WHY_CLAIMS_NAT;
	for (size_t i = 0; i < n; i++)
		if (callees[i].claims_nat || net_addr_is_private(&callees[i].src))
			return PROXY_WHY_CLAIMS_NAT;
	return family ? PROXY_WHY_FAMILY : PROXY_WHY_DIRECT;
}

bool proxy_why_relays(enum proxy_media_why w)
{
	return w == PROXY_WHY_NAT_FACING || w == PROXY_WHY_CLAIMS_NAT || w == PROXY_WHY_FAMILY ||
	       w == PROXY_WHY_ALWAYS || w == PROXY_WHY_ICE;
}

void proxy_media_count(enum proxy_media_why w)
{
	if ((unsigned)w < PROXY_WHY_N)
		metric_inc(&m_decision[w]);
}
