/* The TURN peer filter: which addresses an allocation may relay to (SSRF guard). */
#include <arpa/inet.h>
#include <string.h>

#include "turn.h"

static bool v4_in(uint32_t a, uint32_t net, unsigned plen)
{
	uint32_t mask = plen ? ~0u << (32 - plen) : 0;
	return (a & mask) == net;
}

/* IPv4 ranges no relay may reach: RFC 6890 special-purpose space that is not
 * globally reachable, multicast, and reserved. */
static bool v4_denied_class(uint32_t a)
{
	static const struct {
		uint32_t net;
		unsigned plen;
	} deny[] = {
	    {0x00000000, 8},  /* "this network": Linux treats 0.x as this host */
	    {0x0a000000, 8},  /* RFC 1918 */
	    {0x64400000, 10}, /* RFC 6598 shared (carrier-grade NAT) */
	    {0x7f000000, 8},  /* loopback */
	    {0xa9fe0000, 16}, /* link-local */
	    {0xac100000, 12}, /* RFC 1918 */
	    {0xc0000000, 24}, /* IETF protocol assignments */
	    {0xc0a80000, 16}, /* RFC 1918 */
	    {0xe0000000, 4},  /* multicast */
	    {0xf0000000, 4},  /* reserved, and 255.255.255.255 broadcast */
	};
	for (size_t i = 0; i < ARRAY_SIZE(deny); i++)
		if (v4_in(a, deny[i].net, deny[i].plen))
			return true;
	return false;
}

static bool v6_denied_class(const uint8_t *b)
{
	static const uint8_t zero[16];
	if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
		return true; /* :: and ::1 */
	if (b[0] == 0xff)
		return true; /* multicast */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return true; /* fe80::/10 link-local */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return true; /* fec0::/10 old site-local */
	if ((b[0] & 0xfe) == 0xfc)
		return true; /* fc00::/7 unique local */
	if (b[0] == 0x01 && b[1] == 0 && memcmp(b + 2, zero, 6) == 0)
		return true; /* 100::/64 discard */
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1)
		return true; /* 64:ff9b:1::/48 local-use NAT64 */
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
		return true; /* 2001::/32 Teredo: reaches an IPv4 host we cannot judge */
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return true; /* documentation */
	return false;
}

bool turn_peer_embedded_v4(const struct net_addr *a, struct net_addr *out)
{
	if (a->u.sa.sa_family != AF_INET6)
		return false;
	const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
	static const uint8_t zero[16];
	const uint8_t *v4 = NULL;
	if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
		v4 = b + 12; /* ::ffff:a.b.c.d, what a dual-stack socket would send to */
	else if (memcmp(b, zero, 12) == 0 && (b[12] | b[13] | b[14]) != 0)
		v4 = b + 12; /* ::a.b.c.d, deprecated "compatible" (not :: or ::1) */
	else if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
		 memcmp(b + 4, zero, 8) == 0)
		v4 = b + 12; /* 64:ff9b::/96, NAT64 well-known prefix */
	else if (b[0] == 0x20 && b[1] == 0x02)
		v4 = b + 2; /* 2002:aabb:ccdd::/48, 6to4 */
	if (!v4)
		return false;
	memset(out, 0, sizeof *out);
	out->u.in.sin_family = AF_INET;
	out->u.in.sin_port = a->u.in6.sin6_port;
	memcpy(&out->u.in.sin_addr, v4, 4);
	return true;
}

enum turn_peer_verdict turn_peer_check(const struct turn_filter *f, const struct net_addr *peer)
{
	struct net_addr v4;
	const struct net_addr *a = turn_peer_embedded_v4(peer, &v4) ? &v4 : peer;
	/* an allowed network wins, in either spelling */
	if (net_cidr_list_has(f->allow, f->nallow, a) ||
	    net_cidr_list_has(f->allow, f->nallow, peer))
		return TURN_PEER_OK;
	if (a->u.sa.sa_family == AF_INET) {
		if (v4_denied_class(ntohl(a->u.in.sin_addr.s_addr)))
			return TURN_PEER_DENIED_CLASS;
	} else if (a->u.sa.sa_family == AF_INET6) {
		if (v6_denied_class(a->u.in6.sin6_addr.s6_addr))
			return TURN_PEER_DENIED_CLASS;
	} else {
		return TURN_PEER_DENIED_CLASS;
	}
	if (net_cidr_list_has(f->deny, f->ndeny, a) || net_cidr_list_has(f->deny, f->ndeny, peer))
		return TURN_PEER_DENIED_LIST;
	for (size_t i = 0; i < f->nown; i++)
		if (net_addr_ip_eq(&f->own[i], a))
			return TURN_PEER_DENIED_SELF;
	if (f->host && net_hostaddrs_has(f->host, a))
		return TURN_PEER_DENIED_SELF;
	return TURN_PEER_OK;
}
