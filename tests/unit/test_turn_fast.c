/* The TURN fast path (src/turn/fastpath.c, bpf/turn_fast.bpf.c): ChannelData relayed in the
 * kernel both ways with exact counters, user space for the rest, entries gone with the
 * permission and the allocation, the bandwidth bucket in the kernel. Needs root: runs in a
 * network namespace of its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turnc.h"

static bool have_ns;

#define TO_PEER "direction=\"to_peer\""
#define TO_CLIENT "direction=\"to_client\""

struct counts {
	int64_t rel_tp, rel_tc, fast_tp, fast_tc, noperm, bw;
};

static void counts(struct counts *c)
{
	c->rel_tp = tt_counter("turn_relayed_packets_total", TO_PEER);
	c->rel_tc = tt_counter("turn_relayed_packets_total", TO_CLIENT);
	c->fast_tp = tt_counter("turn_fast_relayed_packets_total", TO_PEER);
	c->fast_tc = tt_counter("turn_fast_relayed_packets_total", TO_CLIENT);
	c->noperm = tt_counter("turn_dropped_total", "reason=\"no_permission\"");
	c->bw = tt_counter("turn_dropped_total", "reason=\"bandwidth\"");
}

/* The kernel's counts reach the metrics when user space pulls them: a dump
 * does, for every allocation. */
static void pull(struct tt_srv *s, struct buf *out)
{
	buf_reset(out);
	assert_int_equal(turn_dump_json(s->t, out), 0);
}

/* Datagrams with a checksum of 0 (none): on loopback the kernel leaves the
 * checksum of ours to the "hardware", and the fast path leaves such
 * datagrams to user space; a NIC's datagrams come with theirs. */
static void no_check(int fd, int on)
{
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &on, sizeof on), 0);
}

static void chan_send(struct tt_cli *c, uint16_t num, const uint8_t *p, size_t len, size_t pad)
{
	uint8_t pkt[2048] = {0};
	stun_chan_header(pkt, num, (uint16_t)len);
	memcpy(pkt + 4, p, len);
	tt_cli_send(c, pkt, 4 + len + pad);
}

static bool quiet(int fd, int ms)
{
	struct pollfd pf = {fd, POLLIN, 0};
	return poll(&pf, 1, ms) == 0;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((seed * 2654435761u + i * 40503u) >> 13);
}

struct pair {
	struct tt_srv s;
	struct tt_cli c;
	struct net_addr relay, pa;
	int peer;
};

static void pair_open(struct pair *x, const char *conf)
{
	tt_srv_start(&x->s, conf);
	tt_cli_open(&x->c, &x->s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&x->c, &x->relay), 0);
	x->peer = tt_peer_open(&x->pa);
	no_check(x->c.fd, 1);
	no_check(x->peer, 1);
	assert_int_equal(tt_chan_bind(&x->c, 0x4001, &x->pa), 0);
}

static void pair_close(struct pair *x)
{
	close(x->peer);
	tt_cli_close(&x->c);
	tt_srv_stop(&x->s);
}

/* One datagram each way through the channel, checked byte for byte. */
static void round_trip(struct pair *x, size_t len, unsigned seed)
{
	uint8_t d[1500], rx[2048];
	struct net_addr from;
	fill(d, len, seed);
	chan_send(&x->c, 0x4001, d, len, 0);
	assert_int_equal(tt_peer_recv(x->peer, rx, sizeof rx, &from), len);
	assert_memory_equal(rx, d, len);
	assert_true(net_addr_eq(&from, &x->relay));
	fill(d, len, seed + 7);
	assert_int_equal(sendto(x->peer, d, len, 0, &x->relay.u.sa, net_addr_len(&x->relay)),
			 (ssize_t)len);
	assert_true(tt_cli_recv(&x->c));
	assert_int_equal(x->c.rxlen, 4 + len); /* UDP: no padding */
	assert_int_equal(x->c.rx[0] << 8 | x->c.rx[1], 0x4001);
	assert_int_equal((size_t)(x->c.rx[2] << 8 | x->c.rx[3]), len);
	assert_memory_equal(x->c.rx + 4, d, len);
}

/* Both ways through the kernel: every packet counted once, exactly, in the
 * allocation and the metrics, and user space carried none of them; what the
 * kernel cannot do (padding, a checksum left to the NIC) still goes through
 * user space on the same channel. */
static void test_fast_both_ways(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 0\nfastpath = on\n");
	struct buf out;
	buf_init(&out);
	pull(&x.s, &out);
	assert_non_null(strstr(out.data, "\"fast\":true"));
	struct counts c0, c1;
	counts(&c0);
	int64_t bytes = 0;
	for (unsigned i = 0; i < 200; i++) {
		size_t len = 1 + (i * 37) % 1400; /* odd and even, 1 to 1400 */
		round_trip(&x, len, i);
		bytes += (int64_t)len;
	}
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tp - c0.fast_tp, 200);
	assert_int_equal(c1.fast_tc - c0.fast_tc, 200);
	assert_int_equal(c1.rel_tp - c0.rel_tp, 200); /* user space: 0 of them */
	assert_int_equal(c1.rel_tc - c0.rel_tc, 200);
	char want[160];
	snprintf(want, sizeof want,
		 "\"to_peer\":{\"bytes\":%lld,\"packets\":200},\"to_client\":{\"bytes\":%lld,"
		 "\"packets\":200}",
		 (long long)bytes, (long long)bytes);
	assert_non_null(strstr(out.data, want));

	/* padded ChannelData (allowed on UDP): user space strips it */
	uint8_t d[8] = "abcde", rx[64];
	struct net_addr from;
	chan_send(&x.c, 0x4001, d, 5, 3);
	assert_int_equal(tt_peer_recv(x.peer, rx, sizeof rx, &from), 5);
	assert_memory_equal(rx, d, 5);
	/* a datagram whose checksum the kernel left for the NIC: user space */
	no_check(x.c.fd, 0);
	round_trip(&x, 100, 999);
	no_check(x.c.fd, 1);
	pull(&x.s, &out);
	struct counts c2;
	counts(&c2);
	assert_int_equal(c2.fast_tp, c1.fast_tp);
	assert_int_equal(c2.rel_tp, c1.rel_tp + 2);
	assert_int_equal(c2.fast_tc, c1.fast_tc + 1); /* the peer's answer: kernel */
	assert_int_equal(c2.rel_tc, c1.rel_tc + 1);
	buf_free(&out);
	pair_close(&x);
}

/* The kernel lets go with the permission: once it lapses, ChannelData and
 * the peer's data are user space's again, which drops them (no permission);
 * a new ChannelBind brings the channel back; the allocation's end removes
 * everything and the totals are exact. */
static void test_fast_expiry(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 0\nfastpath = on\n");
	struct buf out;
	buf_init(&out);
	struct counts c0, c1;
	counts(&c0);
	round_trip(&x, 160, 1);
	int64_t perms = tt_counter("turn_permissions", NULL);
	time_mono_advance(301 * 1000); /* the permission goes, the channel stays */
	for (int i = 0; i < 500 && tt_counter("turn_permissions", NULL) == perms; i++)
		usleep(10000);
	assert_int_equal(tt_counter("turn_permissions", NULL), perms - 1);
	uint8_t d[160] = {1, 2, 3};
	chan_send(&x.c, 0x4001, d, sizeof d, 0);
	assert_true(quiet(x.peer, 300));
	assert_int_equal(sendto(x.peer, d, sizeof d, 0, &x.relay.u.sa, net_addr_len(&x.relay)),
			 (ssize_t)sizeof d);
	assert_true(quiet(x.c.fd, 300));
	counts(&c1);
	assert_int_equal(c1.noperm - c0.noperm, 2);

	assert_int_equal(tt_chan_bind(&x.c, 0x4001, &x.pa), 0); /* back */
	round_trip(&x, 161, 2);
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tp - c0.fast_tp, 2);
	assert_int_equal(c1.fast_tc - c0.fast_tc, 2);

	/* traffic the sweep has not pulled yet is counted when it goes */
	round_trip(&x, 162, 3);
	assert_int_equal(tt_refresh(&x.c, 0), 0);
	chan_send(&x.c, 0x4001, d, sizeof d, 0);
	assert_true(quiet(x.peer, 300));
	sendto(x.peer, d, sizeof d, 0, &x.relay.u.sa, net_addr_len(&x.relay));
	assert_true(quiet(x.c.fd, 300));
	counts(&c1);
	assert_int_equal(c1.fast_tp - c0.fast_tp, 3);
	assert_int_equal(c1.fast_tc - c0.fast_tc, 3);
	assert_int_equal(c1.rel_tp - c0.rel_tp, 3);
	assert_int_equal(c1.rel_tc - c0.rel_tc, 3);
	buf_free(&out);
	pair_close(&x);
}

/* The users' buckets' clock (the kernel's, CLOCK_MONOTONIC_COARSE), ms */
static uint64_t coarse_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Datagrams of len bytes read from fd until it is quiet for 200 ms; *last:
 * when the last arrived (coarse_ms), if any did. */
static int drain(int fd, size_t len, uint64_t *last)
{
	uint8_t rx[2048];
	int got = 0;
	while (!quiet(fd, 200)) {
		assert_int_equal(recv(fd, rx, sizeof rx, 0), (ssize_t)len);
		*last = coarse_ms();
		got++;
	}
	return got;
}

/* [turn] bandwidth holds in the kernel: a burst beyond the bucket is
 * dropped there and counted. 1 kbit/s: 125 bytes a second, the bucket starts
 * full; 100-byte packets: the first goes, then one per 0.8 s of the burst. */
static void test_fast_bandwidth(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 1\nfastpath = on\n");
	struct buf out;
	buf_init(&out);
	struct counts c0, c1;
	counts(&c0);
	uint8_t d[100] = {0}, rx[2048];
	uint64_t t0 = time_mono_ms();
	for (int i = 0; i < 40; i++)
		chan_send(&x.c, 0x4001, d, sizeof d, 0);
	uint64_t burst_ms = time_mono_ms() - t0;
	int got = 0;
	while (!quiet(x.peer, 200)) {
		assert_int_equal(recv(x.peer, rx, sizeof rx, 0), 100);
		got++;
	}
	pull(&x.s, &out);
	counts(&c1);
	assert_true(got >= 1);
	assert_true((uint64_t)got <= 2 + burst_ms / 800); /* however slow the burst was */
	assert_int_equal(c1.fast_tp - c0.fast_tp, got);
	assert_int_equal(c1.bw - c0.bw, 40 - got);
	buf_free(&out);
	pair_close(&x);
}

/* The allocation's bucket at a rate where a channel's ChannelData takes it
 * in pieces (800 kbit/s: 100,000 bytes a second, pieces of 1,562 kept in the
 * channel's slot): a burst both ways of three times that is held to it, the
 * two directions drawing on one bucket: what passed is at most the full
 * bucket, what refilled from the first packet to the last that passed, a
 * piece and a packet per direction (racing CPUs); every packet over it is
 * dropped in the kernel and counted. */
static void test_fast_bandwidth_pieces(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	enum { LEN = 1000, N = 150 };
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 800\nfastpath = on\n");
	struct buf out;
	buf_init(&out);
	struct counts c0, c1;
	counts(&c0);
	uint8_t d[LEN] = {0}, rx[2048];
	uint64_t t0 = coarse_ms();
	for (int i = 0; i < N; i++) {
		chan_send(&x.c, 0x4001, d, LEN, 0);
		assert_int_equal(sendto(x.peer, d, LEN, 0, &x.relay.u.sa, net_addr_len(&x.relay)),
				 LEN);
	}
	uint64_t last = coarse_ms();
	int to_client = 0;
	while (recv(x.c.fd, rx, sizeof rx, MSG_DONTWAIT) == 4 + LEN)
		to_client++;
	int to_peer = drain(x.peer, LEN, &last);
	uint64_t tc_last = 0;
	to_client += drain(x.c.fd, 4 + LEN, &tc_last);
	uint64_t ms = MAX(last, tc_last) - t0;
	pull(&x.s, &out);
	counts(&c1);
	fprintf(stderr, "bandwidth: %d and %d of %d each way passed in %llu ms\n", to_peer,
		to_client, N, (unsigned long long)ms);
	assert_int_equal(c1.fast_tp - c0.fast_tp, to_peer);
	assert_int_equal(c1.fast_tc - c0.fast_tc, to_client);
	assert_int_equal(c1.bw - c0.bw, 2 * N - to_peer - to_client);
	uint64_t allowed = 100000 + (ms + 10) * 100 + 1562 + 2 * LEN;
	if ((uint64_t)(to_peer + to_client) * LEN > allowed)
		fail_msg("%d bytes passed, the bucket allows %llu", (to_peer + to_client) * LEN,
			 (unsigned long long)allowed);
	assert_true(to_peer > 0 && to_client > 0);
	buf_free(&out);
	pair_close(&x);
}

/* ---- checksums: datagrams whose UDP checksum the test writes (a raw socket: complete, as
 * from a NIC), and a raw socket that sees every datagram delivered here, after the program,
 * with its IP header: the checksum the receiver got is checked by the test's own sum. */

static uint32_t sum16(const uint8_t *p, size_t len)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	return s;
}

/* the one's complement sum of the pseudo-header and the UDP datagram (host order) */
static uint16_t udp_sum(const struct net_addr *src, const struct net_addr *dst,
			const uint8_t *udp, size_t len)
{
	uint8_t ph[12] = {0};
	memcpy(ph, &src->u.in.sin_addr, 4);
	memcpy(ph + 4, &dst->u.in.sin_addr, 4);
	ph[9] = IPPROTO_UDP;
	ph[10] = (uint8_t)(len >> 8);
	ph[11] = (uint8_t)len;
	uint32_t s = sum16(ph, sizeof ph) + sum16(udp, len);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

enum csum { CSUM_GOOD, CSUM_NONE, CSUM_BAD };

/* a UDP datagram from src to dst (both on this host) with a checksum of ours */
static void raw_send(const struct net_addr *src, const struct net_addr *dst, const uint8_t *p,
		     size_t len, enum csum how)
{
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
	assert_true(fd >= 0);
	uint8_t d[2048] = {0};
	memcpy(d, &src->u.in.sin_port, 2);
	memcpy(d + 2, &dst->u.in.sin_port, 2);
	d[4] = (uint8_t)((8 + len) >> 8);
	d[5] = (uint8_t)(8 + len);
	memcpy(d + 8, p, len);
	uint16_t c = (uint16_t)~udp_sum(src, dst, d, 8 + len);
	if (how == CSUM_NONE)
		c = 0;
	else if (c == 0)
		c = 0xffff;
	if (how == CSUM_BAD)
		c = (uint16_t)(c == 0x1234 ? 0x4321 : 0x1234);
	d[6] = (uint8_t)(c >> 8);
	d[7] = (uint8_t)c;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = dst->u.in.sin_addr};
	assert_int_equal(sendto(fd, d, 8 + len, 0, (struct sockaddr *)&to, sizeof to),
			 (ssize_t)(8 + len));
	close(fd);
}

static int raw_capture(void)
{
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
	assert_true(fd >= 0);
	int big = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	return fd;
}

/* The datagram delivered to dst with this payload, as the receiver got it:
 * 1 if its checksum verifies, 0 if it is 0 (none), -1 if it does not verify. */
static int captured(int fd, const struct net_addr *dst, const uint8_t *p, size_t len)
{
	uint8_t rx[2048];
	for (;;) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, 3000) != 1)
			fail_msg("capture: no datagram of %zu bytes to port %u", len,
				 ntohs(dst->u.in.sin_port));
		ssize_t n = recv(fd, rx, sizeof rx, 0);
		assert_true(n >= 28);
		size_t ihl = (size_t)(rx[0] & 15) * 4;
		const uint8_t *u = rx + ihl;
		if ((size_t)n != ihl + 8 + len || memcmp(u + 2, &dst->u.in.sin_port, 2) ||
		    memcmp(u + 8, p, len))
			continue; /* someone else's (a request, the other way) */
		struct net_addr src = *dst, to = *dst;
		memcpy(&src.u.in.sin_addr, rx + 12, 4);
		memcpy(&to.u.in.sin_addr, rx + 16, 4);
		if (!u[6] && !u[7])
			return 0;
		return udp_sum(&src, &to, u, 8 + len) == 0xffff ? 1 : -1;
	}
}

/* Nothing readable arrives on fd for ms: the kernel checks the UDP checksum of
 * a datagram over 76 bytes only when it is read (poll already said readable),
 * so each one is read. */
static bool nothing_read(int fd, int ms)
{
	uint8_t rx[2048];
	for (int waited = 0; waited < ms; waited += 50) {
		if (quiet(fd, 50))
			continue;
		if (recv(fd, rx, sizeof rx, MSG_DONTWAIT) >= 0)
			return false;
	}
	return true;
}

static int64_t csum_errors(void)
{
	FILE *f = fopen("/proc/net/snmp", "r");
	assert_non_null(f);
	char line[512];
	long long v = -1;
	bool head = false;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "Udp: ", 5) == 0) {
			if (head) { /* InErrors ... InCsumErrors is the 7th value */
				sscanf(line + 5, "%*d %*d %*d %*d %*d %*d %lld", &v);
				break;
			}
			head = true;
		}
	fclose(f);
	assert_true(v >= 0);
	return v;
}

/* Complete checksums both ways (as from a NIC), odd and even lengths from 1 to
 * the largest the kernel takes: the kernel relays each one, the bytes arrive
 * intact at the receiver's socket, and the checksum it got verifies by the
 * test's own sum; a checksum of 0 (none) stays 0; a datagram with a wrong
 * checksum is relayed as a router would (the kernel does not read the payload)
 * and its receiver drops it, counted in its InCsumErrors. */
static void test_fast_checksums(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 0\nfastpath = on\n");
	struct net_addr cli;
	net_sock_addr(x.c.fd, &cli);
	int cap = raw_capture();
	struct buf out;
	buf_init(&out);
	struct counts c0, c1;
	counts(&c0);
	int64_t err0 = csum_errors();
	static const size_t lens[] = {1, 2, 3, 4, 5, 171, 172, 173, 1023, 1399, 1400};
	unsigned n = 0;
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
		for (int none = 0; none < 2; none++, n++) {
			size_t len = lens[i];
			enum csum how = none ? CSUM_NONE : CSUM_GOOD;
			uint8_t d[1404], rx[2048];
			struct net_addr from;
			/* client -> peer: ChannelData in, the data out */
			fill(d + 4, len, (unsigned)(n * 2));
			stun_chan_header(d, 0x4001, (uint16_t)len);
			raw_send(&cli, &x.s.udp, d, 4 + len, how);
			assert_int_equal(tt_peer_recv(x.peer, rx, sizeof rx, &from), len);
			assert_memory_equal(rx, d + 4, len);
			assert_int_equal(captured(cap, &x.pa, d + 4, len), none ? 0 : 1);
			/* peer -> client: the data in, ChannelData out */
			fill(d + 4, len, (unsigned)(n * 2 + 1));
			raw_send(&x.pa, &x.relay, d + 4, len, how);
			assert_true(tt_cli_recv(&x.c));
			assert_int_equal(x.c.rxlen, 4 + len);
			assert_memory_equal(x.c.rx, d, 4 + len);
			assert_int_equal(captured(cap, &cli, d, 4 + len), none ? 0 : 1);
		}
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tp - c0.fast_tp, n); /* all of them in the kernel */
	assert_int_equal(c1.fast_tc - c0.fast_tc, n);
	assert_int_equal(c1.rel_tp - c0.rel_tp, n);
	assert_int_equal(csum_errors(), err0);

	/* a wrong checksum from the client: relayed, dropped by the peer's kernel */
	uint8_t d[4 + 100];
	fill(d + 4, 100, 4242);
	stun_chan_header(d, 0x4001, 100);
	raw_send(&cli, &x.s.udp, d, sizeof d, CSUM_BAD);
	assert_int_equal(captured(cap, &x.pa, d + 4, 100), -1);
	assert_true(nothing_read(x.peer, 300));
	assert_int_equal(csum_errors(), err0 + 1);
	/* and from the peer: dropped by the client's */
	raw_send(&x.pa, &x.relay, d + 4, 100, CSUM_BAD);
	assert_int_equal(captured(cap, &cli, d, sizeof d), -1);
	assert_true(nothing_read(x.c.fd, 300));
	assert_int_equal(csum_errors(), err0 + 2);
	pull(&x.s, &out);
	struct counts c2;
	counts(&c2);
	assert_int_equal(c2.fast_tp - c1.fast_tp, 1);
	assert_int_equal(c2.fast_tc - c1.fast_tc, 1);
	/* padded ChannelData with a complete checksum: user space strips the
	 * padding (the kernel only takes what adds up) */
	uint8_t pd[4 + 5 + 3] = {0};
	fill(pd + 4, 5, 555);
	stun_chan_header(pd, 0x4001, 5);
	raw_send(&cli, &x.s.udp, pd, sizeof pd, CSUM_GOOD);
	uint8_t rx[64];
	struct net_addr from;
	assert_int_equal(tt_peer_recv(x.peer, rx, sizeof rx, &from), 5);
	assert_memory_equal(rx, pd + 4, 5);
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tp, c2.fast_tp);
	assert_int_equal(c1.rel_tp, c2.rel_tp + 1);
	/* and the channel still works */
	round_trip(&x, 99, 77);
	close(cap);
	buf_free(&out);
	pair_close(&x);
}

/* fastpath = off: the same traffic, all of it through user space. */
static void test_fast_off(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct pair x;
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 0\nfastpath = off\n");
	struct buf out;
	buf_init(&out);
	struct counts c0, c1;
	counts(&c0);
	for (unsigned i = 0; i < 20; i++)
		round_trip(&x, 172, i);
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tp - c0.fast_tp, 0);
	assert_int_equal(c1.rel_tp - c0.rel_tp, 20);
	assert_int_equal(c1.rel_tc - c0.rel_tc, 20);
	assert_non_null(strstr(out.data, "\"fast\":false"));
	buf_free(&out);
	pair_close(&x);
}

/* The per-user budget, as the attack through the fast path: one user with
 * three allocations, each with a channel in the kernel, sends bursts both
 * ways on all of them, and first spends most of the budget through user
 * space (padded ChannelData, which the kernel leaves to it). The kernel
 * relays (its counters move), and together the two paths carry no more
 * than the one budget allows: 10,000 bytes (the bucket starts full) plus
 * what refilled from the first packet to the last that passed, plus a
 * packet per path that racing CPUs may let through, plus a clock tick.
 * Every packet over it is dropped and counted as user_bandwidth, by user
 * space or the kernel. Without the kernel's bucket the kernel would carry
 * all of it; with a bucket of its own beside user space's, 10,000 bytes
 * more. */
static void test_fast_user_budget(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	enum { N = 3, LEN = 400, BURST = 20 };
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\nbandwidth_per_user = 80\n" /* 10,000 B/s */
			 "fastpath = on\n");
	struct net_addr pa, relay[N];
	int peer = tt_peer_open(&pa);
	no_check(peer, 1);
	struct tt_cli c[N];
	for (int i = 0; i < N; i++) {
		tt_cli_open(&c[i], &s, false, "alice", "wonder");
		no_check(c[i].fd, 1);
		assert_int_equal(tt_allocate(&c[i], &relay[i]), 0);
		assert_int_equal(tt_chan_bind(&c[i], 0x4001, &pa), 0);
	}
	struct buf out;
	buf_init(&out);
	pull(&s, &out);
	const char *f = out.data;
	for (int i = 0; i < N; i++) /* every channel in the kernel */
		assert_non_null(f = strstr(f, "\"fast\":true")), f++;
	struct counts c0, c1;
	counts(&c0);
	int64_t ubw = tt_counter("turn_dropped_total", "reason=\"user_bandwidth\"");
	uint8_t d[LEN] = {0};
	uint64_t t0 = coarse_ms();

	/* user space first: 20 padded ChannelData, 8,000 of the 10,000 bytes:
	 * all pass (the bucket starts full) */
	for (int k = 0; k < BURST; k++)
		chan_send(&c[0], 0x4001, d, LEN, 4);
	uint8_t rx[2048];
	struct net_addr from;
	int user = 0;
	for (; user < BURST; user++)
		assert_int_equal(tt_peer_recv(peer, rx, sizeof rx, &from), LEN);
	uint64_t last = coarse_ms();

	/* then the kernel, both ways on every allocation */
	for (int k = 0; k < BURST; k++)
		for (int i = 0; i < N; i++) {
			chan_send(&c[i], 0x4001, d, LEN, 0);
			assert_int_equal(sendto(peer, d, LEN, 0, &relay[i].u.sa,
						net_addr_len(&relay[i])),
					 LEN);
		}
	uint64_t sent_ms = coarse_ms(), tc_last = 0;
	int to_client = 0;
	for (int i = 0; i < N; i++) /* what is there already (the kernel's, on loopback) */
		while (recv(c[i].fd, rx, sizeof rx, MSG_DONTWAIT) == 4 + LEN)
			to_client++;
	int to_peer = drain(peer, LEN, &last);
	for (int i = 0; i < N; i++) /* any later: read late, which only widens the bound */
		to_client += drain(c[i].fd, 4 + LEN, &tc_last);
	/* the last pass was taken before the sends ended or its packet arrived */
	uint64_t ms = MAX(last, MAX(sent_ms, tc_last)) - t0;
	pull(&s, &out);
	counts(&c1);

	int sent = BURST + 2 * N * BURST, got = user + to_peer + to_client;
	fprintf(stderr, "user budget: %d of %d packets passed in %llu ms (%d by user space, "
			"%d and %d by the kernel)\n",
		got, sent, (unsigned long long)ms, user, to_peer, to_client);
	assert_true(to_peer + to_client > 0);
	/* the kernel carried what passed after the first phase */
	assert_int_equal(c1.fast_tp - c0.fast_tp, to_peer);
	assert_int_equal(c1.fast_tc - c0.fast_tc, to_client);
	assert_int_equal(c1.rel_tp - c0.rel_tp, user + to_peer);
	assert_int_equal(c1.rel_tc - c0.rel_tc, to_client);
	/* one budget: the bucket's 10,000 bytes, what refilled, a packet per path */
	uint64_t allowed = 10000 + (ms + 10) * 10 + 2 * LEN;
	if ((uint64_t)got * LEN > allowed)
		fail_msg("%d bytes passed, the budget allows %llu", got * LEN,
			 (unsigned long long)allowed);
	assert_int_equal(tt_counter("turn_dropped_total", "reason=\"user_bandwidth\"") - ubw,
			 sent - got);
	assert_int_equal(c1.bw, c0.bw);
	buf_free(&out);
	for (int i = 0; i < N; i++)
		tt_cli_close(&c[i]);
	close(peer);
	tt_srv_stop(&s);
}

/* The attack on the relayed port's entry (the kernel's way to the client of
 * the allocation's first channel, found by the port alone): an allocation
 * ends and its port goes to another user's allocation; the same peer then
 * sends to the port. Its data must reach the new owner, never the old client,
 * and the new owner's counts must not hold the old one's. One relayed port in
 * all, so that the second allocation gets the first one's. */
static void test_fast_port_reuse(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	const char *ports = tt_relay_ports;
	tt_relay_ports = "26200-26200";
	struct pair x; /* alice: a channel to the peer, in the kernel */
	pair_open(&x, "allowed_peers = 127.0.0.0/8\nbandwidth = 0\nfastpath = on\n");
	tt_relay_ports = ports;
	struct counts c0, c1;
	counts(&c0);
	round_trip(&x, 172, 1);
	round_trip(&x, 172, 2);
	assert_int_equal(tt_refresh(&x.c, 0), 0); /* alice's ends; her socket stays */

	struct tt_cli b;
	tt_cli_open(&b, &x.s, false, "bob", "builder");
	no_check(b.fd, 1);
	struct net_addr relay;
	assert_int_equal(tt_allocate(&b, &relay), 0);
	assert_true(net_addr_eq(&relay, &x.relay)); /* alice's port */
	char peer[NET_ADDR_STRLEN];
	net_addr_fmt(&x.pa, peer, sizeof peer);
	assert_int_equal(tt_perm(&b, peer), 0);

	/* bob has no channel: a Data indication from user space, nothing to alice */
	uint8_t d[172];
	fill(d, sizeof d, 3);
	assert_int_equal(sendto(x.peer, d, sizeof d, 0, &relay.u.sa, net_addr_len(&relay)),
			 (ssize_t)sizeof d);
	assert_true(tt_cli_recv(&b));
	assert_int_equal(b.rx[0] << 8 | b.rx[1], 0x0017);
	assert_non_null(memmem(b.rx, b.rxlen, d, sizeof d));
	assert_true(quiet(x.c.fd, 300));

	/* bob's own channel, in the kernel: framed with his number, to him */
	assert_int_equal(tt_chan_bind(&b, 0x4002, &x.pa), 0);
	fill(d, sizeof d, 4);
	assert_int_equal(sendto(x.peer, d, sizeof d, 0, &relay.u.sa, net_addr_len(&relay)),
			 (ssize_t)sizeof d);
	assert_true(tt_cli_recv(&b));
	assert_int_equal(b.rxlen, 4 + sizeof d);
	assert_int_equal(b.rx[0] << 8 | b.rx[1], 0x4002);
	assert_memory_equal(b.rx + 4, d, sizeof d);
	assert_true(quiet(x.c.fd, 300));

	struct buf out;
	buf_init(&out);
	pull(&x.s, &out);
	counts(&c1);
	assert_int_equal(c1.fast_tc - c0.fast_tc, 3); /* alice's 2, bob's channel's 1 */
	/* bob's: the Data indication and the ChannelData, none of alice's */
	assert_non_null(strstr(out.data, "\"to_peer\":{\"bytes\":0,\"packets\":0},"
					 "\"to_client\":{\"bytes\":344,\"packets\":2}"));
	buf_free(&out);
	tt_cli_close(&b);
	pair_close(&x);
}

#ifdef TEST_TURN_FAST_PROG
#include <bpf/bpf.h>
#include <linux/pkt_cls.h>
#include <pthread.h>

#include "turn/bpf/turn_fast.h"
#include "turn_fast.skel.h"

/* The port's entry changed while packets read it: the program run on a
 * peer's datagram (BPF_PROG_TEST_RUN) again and again while another thread
 * switches the entry between two ways to two clients with user space's
 * writer. Every datagram must leave framed wholly for one of the two (MAC,
 * address, port and channel of the same way), or go up to user space
 * unchanged (turn_peer is empty here); never a mix. The counters count
 * exactly what left. */
struct flipper {
	struct turn_fast_port *e;
	struct turn_fast_out way[2];
	volatile int stop;
	unsigned long flips;
};

static void *flip(void *arg)
{
	struct flipper *f = arg;
	while (!f->stop) {
		turn_fast_port_set(f->e, htonl(0x0a000009), &f->way[f->flips & 1]);
		f->flips++;
	}
	return NULL;
}

static void test_fast_entry_changed(void **state)
{
	(void)state;
	struct turn_fast *skel = turn_fast__open();
	assert_non_null(skel);
	assert_int_equal(bpf_map__set_max_entries(skel->maps.turn_port, 1), 0);
	if (turn_fast__load(skel)) {
		turn_fast__destroy(skel);
		skip(); /* not root */
	}
	size_t len = (sizeof(struct turn_fast_port) + 4095) & ~(size_t)4095;
	struct turn_fast_port *e = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
					bpf_map__fd(skel->maps.turn_port), 0);
	assert_true(e != MAP_FAILED);
	struct turn_fast_conf c = {.relay_addr = htonl(0x0a000001),
				   .relay_lo = 26001,
				   .relay_hi = 26001,
				   .port_first = 1};
	uint32_t zero = 0;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.turn_conf), &zero, &c, 0), 0);
	struct flipper f = {.e = e};
	for (int i = 0; i < 2; i++) {
		struct turn_fast_out *o = &f.way[i];
		*o = (struct turn_fast_out){.src_addr = htonl(0x0a000001),
					    .dst_addr = htonl(0x0a000100 + (uint32_t)i),
					    .src_port = htons(3478),
					    .dst_port = htons((uint16_t)(1000 + i)),
					    .num = (uint16_t)(0x4001 + i),
					    .flags = TURN_FAST_L2 | TURN_FAST_DF,
					    .ifindex = 1,
					    .hop = htonl(0x0a000100 + (uint32_t)i),
					    .peer_port = htons(5000)};
		memset(o->l2, 0x11 * (i + 1), 6);
		memset(o->l2 + 6, 0xee, 6);
	}
	turn_fast_port_set(e, htonl(0x0a000009), &f.way[0]);

	/* 10.0.0.9:5000 -> 10.0.0.1:26001, 64 bytes of data, checksum 0 (none) */
	uint8_t in[14 + 20 + 8 + 64] = {0};
	in[12] = 0x08;
	uint8_t *ip = in + 14, *u = ip + 20;
	ip[0] = 0x45;
	ip[3] = 20 + 8 + 64;
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	uint32_t sa = htonl(0x0a000009), da = htonl(0x0a000001);
	memcpy(ip + 12, &sa, 4);
	memcpy(ip + 16, &da, 4);
	uint16_t sp = htons(5000), dp = htons(26001), ul = htons(8 + 64);
	memcpy(u, &sp, 2);
	memcpy(u + 2, &dp, 2);
	memcpy(u + 4, &ul, 2);
	fill(u + 8, 64, 9);

	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, flip, &f), 0);
	int prog = bpf_program__fd(skel->progs.turn_fast);
	unsigned long way[2] = {0, 0}, up = 0;
	for (int n = 0; n < 100000; n++) {
		uint8_t out[256];
		LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = in, .data_size_in = sizeof in,
			    .data_out = out, .data_size_out = sizeof out, .repeat = 1);
		assert_int_equal(bpf_prog_test_run_opts(prog, &t), 0);
		if ((int)t.retval == TC_ACT_UNSPEC) {
			assert_int_equal(t.data_size_out, sizeof in);
			assert_memory_equal(out, in, sizeof in);
			up++;
			continue;
		}
		assert_int_equal(t.retval, TC_ACT_REDIRECT);
		assert_int_equal(t.data_size_out, sizeof in + 4);
		int w = out[0] == 0x22;
		const struct turn_fast_out *o = &f.way[w];
		assert_memory_equal(out, o->l2, 12);
		assert_memory_equal(out + 14 + 16, &o->dst_addr, 4);
		assert_memory_equal(out + 14 + 20 + 2, &o->dst_port, 2);
		assert_int_equal(out[42] << 8 | out[43], o->num);
		assert_memory_equal(out + 46, u + 8, 64);
		way[w]++;
	}
	f.stop = 1;
	pthread_join(th, NULL);
	fprintf(stderr, "entry changed %lu times: %lu and %lu datagrams each way, %lu to user "
			"space\n", f.flips, way[0], way[1], up);
	assert_true(f.flips > 0);
	__u64 p, b;
	turn_fast_count_diff(0, e->to_client_count, &p, &b);
	assert_int_equal(p, way[0] + way[1]);
	assert_int_equal(b, 64 * (way[0] + way[1]));
	munmap(e, len);
	turn_fast__destroy(skel);
}

/* The attack on the channel slot's counts: a channel leaves its slot (and
 * another takes it) while its ChannelData is in the program. The program
 * runs on a client's ChannelData again and again while another thread makes
 * the slot change owner with user space's writer, each owner counting from
 * the slot's count word when it took the slot to the word the writer
 * returned when it left. The owners' counts and the port entry's (where a
 * packet counts whose owner left meanwhile) must add up to exactly what the
 * program relayed: none lost to the gap, none counted twice. */
struct slot_flipper {
	struct turn_fast_chan_slot *e;
	struct turn_fast_chan_key k;
	struct turn_fast_out way;
	volatile int stop;
	unsigned long owners;
	uint64_t pkts, bytes;
};

static void *slot_flip(void *arg)
{
	struct slot_flipper *f = arg;
	while (!f->stop) {
		uint64_t start = __atomic_load_n(&f->e->count, __ATOMIC_SEQ_CST);
		turn_fast_chan_set(f->e, &f->k, &f->way);
		for (volatile int i = 0; i < 2000; i++)
			;
		uint64_t last = turn_fast_chan_set(f->e, NULL, NULL);
		__u64 p, b;
		turn_fast_count_diff(start, last, &p, &b);
		f->pkts += p;
		f->bytes += b;
		f->owners++;
	}
	return NULL;
}

static void test_fast_slot_owner_changed(void **state)
{
	(void)state;
	struct turn_fast *skel = turn_fast__open();
	assert_non_null(skel);
	assert_int_equal(bpf_map__set_max_entries(skel->maps.turn_port, 1), 0);
	assert_int_equal(bpf_map__set_max_entries(skel->maps.turn_chan_slot, 1024), 0);
	if (turn_fast__load(skel)) {
		turn_fast__destroy(skel);
		skip(); /* not root */
	}
	size_t plen = (sizeof(struct turn_fast_port) + 4095) & ~(size_t)4095;
	struct turn_fast_port *port = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_SHARED,
					   bpf_map__fd(skel->maps.turn_port), 0);
	size_t slen = 1024 * sizeof(struct turn_fast_chan_slot);
	struct turn_fast_chan_slot *slots = mmap(NULL, slen, PROT_READ | PROT_WRITE, MAP_SHARED,
						 bpf_map__fd(skel->maps.turn_chan_slot), 0);
	assert_true(port != MAP_FAILED && slots != MAP_FAILED);
	struct turn_fast_conf c = {.relay_addr = htonl(0x0a000001),
				   .relay_lo = 26201,
				   .relay_hi = 26201,
				   .port_first = 1,
				   .chan_bits = 10,
				   .seed = 0x1234567890abcdefull,
				   .nlisten = 1,
				   .listen_port = {htons(3478)}};
	uint32_t zero = 0;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.turn_conf), &zero, &c, 0), 0);
	struct slot_flipper f = {.k = {.srv_addr = htonl(0x0a000001),
				       .client_addr = htonl(0x0a000009),
				       .srv_port = htons(3478),
				       .client_port = htons(5000),
				       .num = 0x4001},
				 .way = {.src_addr = htonl(0x0a000001),
					 .dst_addr = htonl(0x0a000100),
					 .src_port = htons(26201),
					 .dst_port = htons(6000),
					 .flags = TURN_FAST_L2,
					 .ifindex = 1}};
	memset(f.way.l2, 0x11, 12);
	f.e = &slots[turn_fast_chan_home(&f.k, c.seed, c.chan_bits)];

	/* 10.0.0.9:5000 -> 10.0.0.1:3478, ChannelData 0x4001 with 64 bytes,
	 * checksum 0 (none) */
	uint8_t in[14 + 20 + 8 + 4 + 64] = {0};
	in[12] = 0x08;
	uint8_t *ip = in + 14, *u = ip + 20;
	ip[0] = 0x45;
	ip[3] = 20 + 8 + 4 + 64;
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, &f.k.client_addr, 4);
	memcpy(ip + 16, &f.k.srv_addr, 4);
	uint16_t ul = htons(8 + 4 + 64);
	memcpy(u, &f.k.client_port, 2);
	memcpy(u + 2, &f.k.srv_port, 2);
	memcpy(u + 4, &ul, 2);
	u[8] = 0x40, u[9] = 0x01, u[11] = 64;
	fill(u + 12, 64, 5);

	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, slot_flip, &f), 0);
	int prog = bpf_program__fd(skel->progs.turn_fast);
	unsigned long relayed = 0, up = 0;
	for (int n = 0; n < 200000; n++) {
		uint8_t out[256];
		LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = in, .data_size_in = sizeof in,
			    .data_out = out, .data_size_out = sizeof out, .repeat = 1);
		assert_int_equal(bpf_prog_test_run_opts(prog, &t), 0);
		if ((int)t.retval == TC_ACT_UNSPEC) { /* no owner: user space's */
			assert_int_equal(t.data_size_out, sizeof in);
			up++;
			continue;
		}
		assert_int_equal(t.retval, TC_ACT_REDIRECT);
		assert_int_equal(t.data_size_out, sizeof in - 4);
		assert_memory_equal(out + 14 + 20 + 8, u + 12, 64);
		relayed++;
	}
	f.stop = 1;
	pthread_join(th, NULL); /* it stops with the slot left: every owner's counts final */
	uint64_t late = port->to_peer_pkts;
	fprintf(stderr, "slot owner changed %lu times: %lu relayed (%llu counted by the slot's "
			"owners, %llu in the port's entry), %lu to user space\n",
		f.owners, relayed, (unsigned long long)f.pkts, (unsigned long long)late, up);
	assert_true(f.owners > 0 && relayed > 0);
	assert_int_equal(f.pkts + late, relayed);
	assert_int_equal(f.bytes + port->to_peer_bytes, 64 * relayed);
	munmap(slots, slen);
	munmap(port, plen);
	turn_fast__destroy(skel);
}
#endif

int main(void)
{
	if (unshare(CLONE_NEWNET) == 0 && system("ip link set lo up") == 0)
		have_ns = true;
	else
		fprintf(stderr, "no network namespace of our own (not root?): skipping\n");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fast_both_ways), cmocka_unit_test(test_fast_checksums),
	    cmocka_unit_test(test_fast_expiry),	   cmocka_unit_test(test_fast_bandwidth),
	    cmocka_unit_test(test_fast_bandwidth_pieces),
	    cmocka_unit_test(test_fast_off),	   cmocka_unit_test(test_fast_user_budget),
	    cmocka_unit_test(test_fast_port_reuse),
#ifdef TEST_TURN_FAST_PROG
	    cmocka_unit_test(test_fast_entry_changed),
	    cmocka_unit_test(test_fast_slot_owner_changed),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
