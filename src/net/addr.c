/* Socket addresses: parsing, printing, comparing, and the private-range test that NAT detection uses. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

/* Dotted-quad IPv4 in the one form inet_pton accepts (four decimal octets,
 * no leading zeros, nothing after), without its per-character state
 * machine: every REGISTER has three such hosts. False for anything else,
 * which then goes to inet_pton. */
static bool quad_v4(const char *s, struct in_addr *a)
{
	unsigned char b[4];
	for (int i = 0; i < 4; i++) {
		if (i && *s++ != '.')
			return false;
		unsigned v = 0, n = 0;
		for (; *s >= '0' && *s <= '9' && n < 4; s++, n++)
			v = v * 10 + (unsigned)(*s - '0');
		if (n == 0 || n > 3 || v > 255 || (n > 1 && s[-(int)n] == '0'))
			return false;
		b[i] = (unsigned char)v;
	}
	if (*s)
		return false;
	memcpy(&a->s_addr, b, 4);
	return true;
}

static int parse_ip(const char *ip, uint16_t port, struct net_addr *out)
{
	memset(out, 0, sizeof *out);
	/* an IPv6 address has a colon, an IPv4 one only digits and dots; a
	 * name (a phone's "x.invalid", a domain) has neither shape and is told
	 * so without inet_pton's two tries, for the hosts of every REGISTER */
	bool v6 = strchr(ip, ':') != NULL;
	bool v4 = !v6 && ip[strspn(ip, "0123456789.")] == '\0';
	if (v4 && (quad_v4(ip, &out->u.in.sin_addr) ||
		   inet_pton(AF_INET, ip, &out->u.in.sin_addr) == 1)) {
		out->u.in.sin_family = AF_INET;
		out->u.in.sin_port = htons(port);
		return 0;
	}
	if (v6 && inet_pton(AF_INET6, ip, &out->u.in6.sin6_addr) == 1) {
		out->u.in6.sin6_family = AF_INET6;
		out->u.in6.sin6_port = htons(port);
		return 0;
	}
	return EINVAL;
}

int net_addr_from_host(struct slice host, uint16_t port, struct net_addr *out)
{
	char ip[INET6_ADDRSTRLEN + 2];
	bool bracketed = false;
	if (host.l >= 2 && host.p[0] == '[' && host.p[host.l - 1] == ']') {
		host.p++;
		host.l -= 2;
		bracketed = true;
	}
	if (host.l == 0 || host.l >= sizeof ip)
		return EINVAL;
	slice_to_cstr(host, ip, sizeof ip);
	int err = parse_ip(ip, port, out);
	/* brackets mark an IPv6 reference (RFC 3261 IPv6reference); "[1.2.3.4]" is not one */
	if (!err && bracketed && out->u.sa.sa_family != AF_INET6)
		err = EINVAL;
	return err;
}

int net_addr_parse(const char *s, uint16_t defport, struct net_addr *out)
{
	struct slice in = slice_trim(slice_cstr(s));
	struct slice host = in;
	uint32_t port = defport;
	if (in.l && in.p[0] == '[') {
		size_t close = slice_find(in, ']');
		if (close == in.l)
			return EINVAL;
		host = (struct slice){in.p, close + 1};
		if (close + 1 < in.l) {
			if (in.p[close + 1] != ':')
				return EINVAL;
			struct slice ps = {in.p + close + 2, in.l - close - 2};
			if (slice_to_u32(ps, 65535, &port))
				return EINVAL;
		}
	} else {
		size_t colon = slice_find(in, ':');
		/* one colon: v4:port; several: a bare IPv6 address without port */
		if (colon < in.l && slice_find((struct slice){in.p + colon + 1, in.l - colon - 1},
					       ':') == in.l - colon - 1) {
			host = (struct slice){in.p, colon};
			struct slice ps = {in.p + colon + 1, in.l - colon - 1};
			if (slice_to_u32(ps, 65535, &port))
				return EINVAL;
		}
	}
	return net_addr_from_host(host, (uint16_t)port, out);
}

char *net_addr_ip_fmt(const struct net_addr *a, char *buf, size_t len)
{
	const void *src = a->u.sa.sa_family == AF_INET6 ? (const void *)&a->u.in6.sin6_addr
							: (const void *)&a->u.in.sin_addr;
	if (a->u.sa.sa_family != AF_INET && a->u.sa.sa_family != AF_INET6) {
		snprintf(buf, len, "?");
		return buf;
	}
	if (a->u.sa.sa_family == AF_INET && len >= INET_ADDRSTRLEN) {
		/* by hand: glibc's inet_ntop prints IPv4 with sprintf, and this runs
		 * for the Via of every request */
		const unsigned char *b = (const unsigned char *)&a->u.in.sin_addr;
		char *o = buf;
		for (int i = 0; i < 4; i++) {
			if (b[i] >= 100)
				*o++ = (char)('0' + b[i] / 100);
			if (b[i] >= 10)
				*o++ = (char)('0' + b[i] / 10 % 10);
			*o++ = (char)('0' + b[i] % 10);
			*o++ = i < 3 ? '.' : '\0';
		}
		return buf;
	}
	if (!inet_ntop(a->u.sa.sa_family, src, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

char *net_addr_fmt(const struct net_addr *a, char *buf, size_t len)
{
	/* "[ip]:port" or "ip:port" put together by hand, cut to len as
	 * snprintf would: every REGISTER's 200 formats its source */
	char t[INET6_ADDRSTRLEN + 8], *p = t;
	bool v6 = a->u.sa.sa_family == AF_INET6;
	if (v6)
		*p++ = '[';
	net_addr_ip_fmt(a, p, INET6_ADDRSTRLEN);
	p += strlen(p);
	if (v6)
		*p++ = ']';
	*p++ = ':';
	char d[5];
	size_t k = sizeof d;
	unsigned port = net_addr_port(a);
	do {
		d[--k] = (char)('0' + port % 10);
		port /= 10;
	} while (port);
	memcpy(p, d + k, sizeof d - k);
	p += sizeof d - k;
	if (len) {
		size_t n = MIN((size_t)(p - t), len - 1);
		memcpy(buf, t, n);
		buf[n] = 0;
	}
	return buf;
}

uint16_t net_addr_port(const struct net_addr *a)
{
	if (a->u.sa.sa_family == AF_INET6)
		return ntohs(a->u.in6.sin6_port);
	return ntohs(a->u.in.sin_port);
}

void net_addr_set_port(struct net_addr *a, uint16_t port)
{
	if (a->u.sa.sa_family == AF_INET6)
		a->u.in6.sin6_port = htons(port);
	else
		a->u.in.sin_port = htons(port);
}

int net_addr_family(const struct net_addr *a)
{
	return a->u.sa.sa_family;
}

socklen_t net_addr_len(const struct net_addr *a)
{
	return a->u.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					     : sizeof(struct sockaddr_in);
}

bool net_addr_ip_eq(const struct net_addr *a, const struct net_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
	if (a->u.sa.sa_family == AF_INET6)
		return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
	return false;
}

bool net_addr_eq(const struct net_addr *a, const struct net_addr *b)
{
	return net_addr_ip_eq(a, b) && net_addr_port(a) == net_addr_port(b);
}

bool net_addr_is_any(const struct net_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in.sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->u.sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
	return true;
}

static bool v4_in(uint32_t ip, uint32_t net, unsigned bits)
{
	uint32_t mask = bits ? ~0u << (32 - bits) : 0;
	return (ip & mask) == (net & mask);
}

bool net_addr_is_loopback(const struct net_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return v4_in(ntohl(a->u.in.sin_addr.s_addr), 0x7f000000, 8);
	if (a->u.sa.sa_family != AF_INET6)
		return false;
	const struct in6_addr *v6 = &a->u.in6.sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(v6))
		return v6->s6_addr[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(v6);
}

int net_cidr_list_parse(const char *s, struct net_cidr *out, size_t cap, size_t *n)
{
	*n = 0;
	struct slice rest = slice_cstr(s), item;
	while (slice_next_item(&rest, ',', &item)) {
		if (!item.l)
			continue;
		if (*n == cap)
			return ENOSPC;
		char one[INET6_ADDRSTRLEN + 8];
		if (item.l >= sizeof one)
			return EINVAL;
		slice_to_cstr(item, one, sizeof one);
		int err = net_cidr_parse(one, &out[*n]);
		if (err)
			return err;
		(*n)++;
	}
	return 0;
}

bool net_cidr_list_has(const struct net_cidr *list, size_t n, const struct net_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (net_cidr_has(&list[i], a))
			return true;
	return false;
}

bool net_addr_is_private(const struct net_addr *a)
{
	if (a->u.sa.sa_family == AF_INET) {
		uint32_t ip = ntohl(a->u.in.sin_addr.s_addr);
		return v4_in(ip, 0x0a000000, 8) ||   /* 10/8 */
		       v4_in(ip, 0xac100000, 12) ||  /* 172.16/12 */
		       v4_in(ip, 0xc0a80000, 16) ||  /* 192.168/16 */
		       v4_in(ip, 0x64400000, 10) ||  /* 100.64/10, RFC 6598 CGNAT */
		       v4_in(ip, 0xa9fe0000, 16) ||  /* 169.254/16 link-local */
		       v4_in(ip, 0x7f000000, 8);     /* loopback */
	}
	if (a->u.sa.sa_family == AF_INET6) {
		const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
			struct net_addr v4 = {0};
			v4.u.in.sin_family = AF_INET;
			memcpy(&v4.u.in.sin_addr, b + 12, 4);
			return net_addr_is_private(&v4);
		}
		return (b[0] & 0xfe) == 0xfc ||                 /* fc00::/7 ULA */
		       (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 */
		       IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
	}
	return false;
}

uint64_t net_addr_hash(const struct net_addr *a)
{
	uint16_t port = net_addr_port(a);
	uint64_t h;
	if (a->u.sa.sa_family == AF_INET6)
		h = hash_bytes(&a->u.in6.sin6_addr, 16);
	else
		h = hash_bytes(&a->u.in.sin_addr, 4);
	return h ^ (port * 0x9e3779b97f4a7c15ULL);
}

void net_addr_src_key(const struct net_addr *a, struct net_src_key *out)
{
	out->hi = out->lo = 0;
	if (a->u.sa.sa_family == AF_INET) {
		out->lo = ntohl(a->u.in.sin_addr.s_addr);
	} else if (a->u.sa.sa_family == AF_INET6) {
		const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
			out->lo = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
				  (uint32_t)b[14] << 8 | b[15];
			return;
		}
		for (int i = 0; i < 8; i++)
			out->hi = out->hi << 8 | b[i];
		out->lo = 1ull << 63; /* never an IPv4 key */
	}
}

static const char *const tp_lower[] = {"udp", "tcp", "tls", "ws", "wss"};
static const char *const tp_upper[] = {"UDP", "TCP", "TLS", "WS", "WSS"};

const char *net_transport_name(enum net_transport tp)
{
	return (unsigned)tp < ARRAY_SIZE(tp_lower) ? tp_lower[tp] : "?";
}

const char *net_transport_name_upper(enum net_transport tp)
{
	return (unsigned)tp < ARRAY_SIZE(tp_upper) ? tp_upper[tp] : "?";
}

int net_transport_parse(struct slice s, enum net_transport *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(tp_lower); i++) {
		if (slice_eq_cstr_nocase(s, tp_lower[i])) {
			*out = (enum net_transport)i;
			return 0;
		}
	}
	return EINVAL;
}

bool flow_eq(const struct flow *a, const struct flow *b)
{
	return a->tp == b->tp && a->listener == b->listener && a->conn_id == b->conn_id &&
	       a->may_connect == b->may_connect && net_addr_eq(&a->remote, &b->remote);
}

char *flow_fmt(const struct flow *f, char *buf, size_t len)
{
	char a[NET_ADDR_STRLEN];
	net_addr_fmt(&f->remote, a, sizeof a);
	if (f->conn_id)
		snprintf(buf, len, "%s:%s#%llu", net_transport_name(f->tp), a,
			 (unsigned long long)f->conn_id);
	else
		snprintf(buf, len, "%s:%s", net_transport_name(f->tp), a);
	return buf;
}

/* The IP's bytes (4 or 16); an IPv4-mapped IPv6 address as its IPv4 part. */
static const unsigned char *cidr_bytes(const struct net_addr *a, unsigned *bytes)
{
	if (a->u.sa.sa_family == AF_INET) {
		*bytes = 4;
		return (const unsigned char *)&a->u.in.sin_addr;
	}
	if (a->u.sa.sa_family == AF_INET6) {
		const unsigned char *b = a->u.in6.sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
			*bytes = 4;
			return b + 12;
		}
		*bytes = 16;
		return b;
	}
	*bytes = 0;
	return NULL;
}

static bool prefix_eq(const unsigned char *x, const unsigned char *y, unsigned plen)
{
	unsigned full = plen / 8, rest = plen % 8;
	if (memcmp(x, y, full))
		return false;
	if (!rest)
		return true;
	unsigned char m = (unsigned char)(0xff << (8 - rest));
	return ((x[full] ^ y[full]) & m) == 0;
}

int net_cidr_parse(const char *s, struct net_cidr *out)
{
	char ip[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	size_t l = slash ? (size_t)(slash - s) : strlen(s);
	if (l == 0 || l >= sizeof ip)
		return EINVAL;
	memcpy(ip, s, l);
	ip[l] = '\0';
	if (parse_ip(ip, 0, &out->net))
		return EINVAL;
	unsigned max = out->net.u.sa.sa_family == AF_INET6 ? 128 : 32;
	out->plen = max;
	if (slash) {
		uint32_t v;
		if (slice_to_u32(slice_cstr(slash + 1), UINT32_MAX, &v))
			return EINVAL;
		if (v > max)
			return ERANGE;
		out->plen = v;
	}
	const unsigned char *b = out->net.u.sa.sa_family == AF_INET6
					 ? out->net.u.in6.sin6_addr.s6_addr
					 : (const unsigned char *)&out->net.u.in.sin_addr;
	for (unsigned bit = out->plen; bit < max; bit++)
		if (b[bit / 8] & (0x80 >> (bit % 8)))
			return EDOM;
	return 0;
}

bool net_cidr_has(const struct net_cidr *c, const struct net_addr *a)
{
	unsigned nb = c->net.u.sa.sa_family == AF_INET6 ? 16 : 4, ab;
	const unsigned char *n = nb == 16 ? c->net.u.in6.sin6_addr.s6_addr
					  : (const unsigned char *)&c->net.u.in.sin_addr;
	const unsigned char *x = cidr_bytes(a, &ab);
	if (!x)
		return false;
	if (nb == ab)
		return prefix_eq(n, x, c->plen);
	/* ::ffff:0:0/96 and longer written in IPv6 against an IPv4 peer */
	if (nb == 16 && ab == 4 && c->plen >= 96 && IN6_IS_ADDR_V4MAPPED(&c->net.u.in6.sin6_addr))
		return prefix_eq(n + 12, x, c->plen - 96);
	return false;
}
