/* turn_check: a minimal TURN client for the NAT lab that checks relayed data byte for byte.
 *
 * Written from RFC 8656 / RFC 8489, not from pinhole's code (it is the other
 * side of a test of that code). Long-term credentials with MD5 (RFC 5389
 * style), over UDP or TCP to the server; UDP relays.
 *
 * usage: turn_check [-t] -s SERVER:PORT -u USER -w PASS [-n N] [-l LEN] MODE
 *   MODE  echo PEER:PORT   one allocation, a channel to PEER (an echo
 *                          service): N random payloads, half as ChannelData,
 *                          half in Send indications; each must come back
 *                          unchanged (as ChannelData: the channel's peer)
 *         c2c              two allocations of the server, A with a channel to
 *                          B's relayed address, B with a permission for A's:
 *                          N payloads A->B (ChannelData in, Data indication
 *                          out) and N B->A (Send in, ChannelData out), each
 *                          unchanged
 * -H SECS  echo: hold the allocation that long after the last payload (the
 *           server's state can be looked at), then end it
 * Prints "relayed ADDR" per allocation and "intact K/N"; exit 0 when every
 * payload arrived unchanged, 1 otherwise, 2 usage, 3 a request failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define COOKIE 0x2112a442u

static int use_tcp;
static const char *user, *pass;

struct sess {
	int fd;
	char realm[256], nonce[256];
	uint8_t key[16];
	struct sockaddr_in relayed;
	uint8_t in[70000];
	size_t inlen;
};

static void die(int code, const char *what)
{
	fprintf(stderr, "turn_check: %s\n", what);
	exit(code);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* A message under construction. */
struct msg {
	uint8_t b[4096];
	size_t len;
};

static void msg_begin(struct msg *m, unsigned type)
{
	put16(m->b, type);
	put16(m->b + 2, 0);
	uint32_t c = htonl(COOKIE);
	memcpy(m->b + 4, &c, 4);
	if (getrandom(m->b + 8, 12, 0) != 12)
		die(1, "getrandom");
	m->len = 20;
}

static void msg_attr(struct msg *m, unsigned type, const void *v, size_t l)
{
	put16(m->b + m->len, type);
	put16(m->b + m->len + 2, (unsigned)l);
	memcpy(m->b + m->len + 4, v, l);
	size_t pad = (4 - l % 4) % 4;
	memset(m->b + m->len + 4 + l, 0, pad);
	m->len += 4 + l + pad;
	put16(m->b + 2, (unsigned)(m->len - 20));
}

static void msg_xaddr(struct msg *m, unsigned type, const struct sockaddr_in *a)
{
	uint8_t v[8] = {0, 1};
	put16(v + 2, ntohs(a->sin_port) ^ (COOKIE >> 16));
	uint32_t x = a->sin_addr.s_addr ^ htonl(COOKIE);
	memcpy(v + 4, &x, 4);
	msg_attr(m, type, v, 8);
}

static void msg_auth(struct sess *s, struct msg *m)
{
	msg_attr(m, 0x0006, user, strlen(user));
	msg_attr(m, 0x0014, s->realm, strlen(s->realm));
	msg_attr(m, 0x0015, s->nonce, strlen(s->nonce));
	/* MESSAGE-INTEGRITY: HMAC-SHA1 over the message, length counting it */
	put16(m->b + 2, (unsigned)(m->len - 20 + 24));
	unsigned ml = 0;
	uint8_t mac[20];
	HMAC(EVP_sha1(), s->key, 16, m->b, m->len, mac, &ml);
	msg_attr(m, 0x0008, mac, 20);
}

static void xsend(struct sess *s, const void *p, size_t l)
{
	if (send(s->fd, p, l, 0) != (ssize_t)l)
		die(1, "send");
}

/* One datagram, or one frame (STUN or ChannelData) off the stream, into
 * s->in; 0, or -1 after ms without one. */
static int xrecv(struct sess *s, int ms)
{
	struct pollfd pf = {s->fd, POLLIN, 0};
	if (!use_tcp) {
		if (poll(&pf, 1, ms) != 1)
			return -1;
		ssize_t n = recv(s->fd, s->in, sizeof s->in, 0);
		if (n <= 0)
			return -1;
		s->inlen = (size_t)n;
		return 0;
	}
	size_t have = 0, need = 4;
	while (have < need) {
		if (poll(&pf, 1, ms) != 1)
			return -1;
		ssize_t n = recv(s->fd, s->in + have, need - have, 0);
		if (n <= 0)
			die(1, "the server closed the connection");
		have += (size_t)n;
		if (have == 4)
			need = (s->in[0] & 0xc0) == 0x40 ? 4 + (get16(s->in + 2) + 3) / 4 * 4
							 : 20 + get16(s->in + 2);
	}
	s->inlen = have;
	return 0;
}

/* Finds an attribute of the message in s->in; its value and length. */
static const uint8_t *attr_of(const struct sess *s, unsigned type, size_t *l)
{
	size_t off = 20, end = 20 + get16(s->in + 2);
	while (off + 4 <= end && end <= s->inlen) {
		unsigned t = get16(s->in + off), al = get16(s->in + off + 2);
		if (off + 4 + al > end)
			break;
		if (t == type) {
			*l = al;
			return s->in + off + 4;
		}
		off += 4 + (al + 3) / 4 * 4;
	}
	return NULL;
}

static void xaddr_of(const struct sess *s, unsigned type, struct sockaddr_in *out)
{
	size_t l;
	const uint8_t *v = attr_of(s, type, &l);
	if (!v || l != 8 || v[1] != 1)
		die(3, "no IPv4 address attribute in the answer");
	memset(out, 0, sizeof *out);
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)(get16(v + 2) ^ (COOKIE >> 16)));
	uint32_t x;
	memcpy(&x, v + 4, 4);
	out->sin_addr.s_addr = x ^ htonl(COOKIE);
}

/* Sends a request and waits for its answer (retransmitting over UDP):
 * returns the error code, 0 for success. */
static int transact(struct sess *s, struct msg *m)
{
	for (int attempt = 0; attempt < 7; attempt++) {
		if (attempt == 0 || !use_tcp)
			xsend(s, m->b, m->len);
		int wait = use_tcp ? 10000 : 500 << (attempt < 4 ? attempt : 4);
		while (xrecv(s, wait) == 0) {
			if (s->inlen < 20 || (s->in[0] & 0xc0) != 0 ||
			    memcmp(s->in + 8, m->b + 8, 12) != 0)
				continue; /* data, or another transaction's */
			unsigned cls = (s->in[0] & 1) << 1 | (s->in[1] & 0x10) >> 4;
			if (cls == 2)
				return 0;
			size_t l;
			const uint8_t *e = attr_of(s, 0x0009, &l);
			if (!e || l < 4)
				die(3, "error answer without ERROR-CODE");
			const uint8_t *r = attr_of(s, 0x0014, &l);
			if (r && l < sizeof s->realm) {
				memcpy(s->realm, r, l);
				s->realm[l] = '\0';
			}
			const uint8_t *n = attr_of(s, 0x0015, &l);
			if (n && l < sizeof s->nonce) {
				memcpy(s->nonce, n, l);
				s->nonce[l] = '\0';
			}
			return (e[2] & 7) * 100 + e[3];
		}
	}
	die(3, "no answer from the server");
	return -1;
}

static void parse_addr(const char *s, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		die(2, "want ADDR:PORT");
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof *out);
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		die(2, "want an IPv4 address");
}

static void open_sess(struct sess *s, const struct sockaddr_in *srv)
{
	memset(s, 0, sizeof *s);
	s->fd = socket(AF_INET, use_tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (s->fd < 0 || connect(s->fd, (const struct sockaddr *)srv, sizeof *srv) < 0)
		die(1, "cannot reach the server");
	struct msg m;
	msg_begin(&m, 0x0003);
	uint8_t udp[4] = {17, 0, 0, 0};
	msg_attr(&m, 0x0019, udp, 4);
	if (transact(s, &m) != 401)
		die(3, "Allocate without credentials was not answered 401");
	/* the long-term key: MD5(user ":" realm ":" password) */
	char kin[1024];
	int kl = snprintf(kin, sizeof kin, "%s:%s:%s", user, s->realm, pass);
	unsigned ol = 0;
	EVP_Digest(kin, (size_t)kl, s->key, &ol, EVP_md5(), NULL);
	msg_begin(&m, 0x0003);
	msg_attr(&m, 0x0019, udp, 4);
	msg_auth(s, &m);
	int code = transact(s, &m);
	if (code) {
		fprintf(stderr, "turn_check: Allocate: %d\n", code);
		exit(3);
	}
	xaddr_of(s, 0x0016, &s->relayed);
	char a[INET_ADDRSTRLEN];
	printf("relayed %s:%u\n", inet_ntop(AF_INET, &s->relayed.sin_addr, a, sizeof a),
	       ntohs(s->relayed.sin_port));
	fflush(stdout);
}

static void request_peer(struct sess *s, unsigned method, unsigned chan,
			 const struct sockaddr_in *peer)
{
	struct msg m;
	msg_begin(&m, method);
	if (chan) {
		uint8_t c[4] = {(uint8_t)(chan >> 8), (uint8_t)chan, 0, 0};
		msg_attr(&m, 0x000c, c, 4);
	}
	msg_xaddr(&m, 0x0012, peer);
	msg_auth(s, &m);
	int code = transact(s, &m);
	if (code == 438) { /* stale: once more with the fresh nonce */
		msg_begin(&m, method);
		if (chan) {
			uint8_t c[4] = {(uint8_t)(chan >> 8), (uint8_t)chan, 0, 0};
			msg_attr(&m, 0x000c, c, 4);
		}
		msg_xaddr(&m, 0x0012, peer);
		msg_auth(s, &m);
		code = transact(s, &m);
	}
	if (code) {
		fprintf(stderr, "turn_check: %s: %d\n", chan ? "ChannelBind" : "CreatePermission",
			code);
		exit(3);
	}
}

static void send_channel(struct sess *s, unsigned chan, const uint8_t *p, size_t l)
{
	uint8_t b[4 + 1500 + 3] = {0};
	put16(b, chan);
	put16(b + 2, (unsigned)l);
	memcpy(b + 4, p, l);
	/* RFC 8656 12.5: padded on a stream; over UDP padded or not, either is fine */
	xsend(s, b, 4 + l + (use_tcp ? (4 - l % 4) % 4 : 0));
}

static void send_indication(struct sess *s, const struct sockaddr_in *peer, const uint8_t *p,
			    size_t l)
{
	struct msg m;
	msg_begin(&m, 0x0016);
	msg_xaddr(&m, 0x0012, peer);
	msg_attr(&m, 0x0013, p, l);
	xsend(s, m.b, m.len);
}

/* Waits for the payload to come to s as ChannelData on chan (chan != 0) or
 * as a Data indication from peer: 1 when it came unchanged. */
static int expect(struct sess *s, unsigned chan, const struct sockaddr_in *peer, const uint8_t *p,
		  size_t l)
{
	while (xrecv(s, 3000) == 0) {
		if (chan && (s->in[0] & 0xc0) == 0x40) {
			size_t dl = get16(s->in + 2);
			return get16(s->in) == chan && dl == l && s->inlen >= 4 + dl &&
			       memcmp(s->in + 4, p, l) == 0;
		}
		if (!chan && s->inlen >= 20 && get16(s->in) == 0x0017) {
			struct sockaddr_in from;
			xaddr_of(s, 0x0012, &from);
			size_t dl;
			const uint8_t *d = attr_of(s, 0x0013, &dl);
			return d && dl == l && memcmp(d, p, l) == 0 &&
			       from.sin_addr.s_addr == peer->sin_addr.s_addr &&
			       from.sin_port == peer->sin_port;
		}
	}
	return 0;
}

static void refresh0(struct sess *s)
{
	struct msg m;
	msg_begin(&m, 0x0004);
	uint8_t z[4] = {0};
	msg_attr(&m, 0x000d, z, 4);
	msg_auth(s, &m);
	transact(s, &m);
}

int main(int argc, char **argv)
{
	const char *server = NULL;
	int n = 10, len = 160, hold = 0, o;
	while ((o = getopt(argc, argv, "ts:u:w:n:l:H:")) != -1) {
		switch (o) {
		case 't':
			use_tcp = 1;
			break;
		case 's':
			server = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'w':
			pass = optarg;
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'l':
			len = atoi(optarg);
			break;
		case 'H':
			hold = atoi(optarg);
			break;
		default:
			die(2, "bad option");
		}
	}
	if (!server || !user || !pass || optind >= argc || len < 1 || len > 1400 || n < 1)
		die(2, "usage: turn_check [-t] -s SERVER:PORT -u USER -w PASS [-n N] [-l LEN] echo "
		       "PEER:PORT | c2c");
	struct sockaddr_in srv;
	parse_addr(server, &srv);
	int intact = 0, total = 0;
	uint8_t p[1400];
	if (strcmp(argv[optind], "echo") == 0 && optind + 1 < argc) {
		struct sockaddr_in peer;
		parse_addr(argv[optind + 1], &peer);
		struct sess a;
		open_sess(&a, &srv);
		request_peer(&a, 0x0009, 0x4000, &peer);
		for (int i = 0; i < n; i++, total++) {
			if (getrandom(p, (size_t)len, 0) != len)
				die(1, "getrandom");
			if (i % 2)
				send_indication(&a, &peer, p, (size_t)len);
			else
				send_channel(&a, 0x4000, p, (size_t)len);
			intact += expect(&a, 0x4000, &peer, p, (size_t)len);
		}
		printf("intact %d/%d so far\n", intact, total);
		fflush(stdout);
		sleep((unsigned)hold);
		refresh0(&a);
	} else if (strcmp(argv[optind], "c2c") == 0) {
		struct sess a, b;
		open_sess(&a, &srv);
		open_sess(&b, &srv);
		request_peer(&a, 0x0009, 0x4001, &b.relayed);
		request_peer(&b, 0x0008, 0, &a.relayed);
		for (int i = 0; i < n; i++) {
			if (getrandom(p, (size_t)len, 0) != len)
				die(1, "getrandom");
			send_channel(&a, 0x4001, p, (size_t)len);
			intact += expect(&b, 0, &a.relayed, p, (size_t)len);
			total++;
			if (getrandom(p, (size_t)len, 0) != len)
				die(1, "getrandom");
			send_indication(&b, &a.relayed, p, (size_t)len);
			intact += expect(&a, 0x4001, NULL, p, (size_t)len);
			total++;
		}
		refresh0(&a);
		refresh0(&b);
	} else {
		die(2, "MODE: echo PEER:PORT or c2c");
	}
	printf("intact %d/%d\n", intact, total);
	return intact == total ? 0 : 1;
}
