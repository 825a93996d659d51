/* The peer filter's verdict on a channel is kept between ChannelData packets (not asked per
 * packet) only while the host's addresses stay as they were: a channel's peer that becomes
 * one of this host's addresses is refused from then on, and relayed again when it is no
 * longer. Root, in a network namespace of its own (skipped otherwise). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "testenv.h"
#include "turnc.h"

/* not of a denied class; routed out of lo, the relayed address (127.0.0.1) may
 * send to it only there */
#define PEER "198.18.77.9"

static bool have_ns;

static int64_t to_peer(void)
{
	return tt_counter("turn_relayed_packets_total", "direction=\"to_peer\"");
}

/* One ChannelData of 8 bytes on channel 0x4000. */
static void chan_send(struct tt_cli *c)
{
	uint8_t p[STUN_CHAN_HDR + 8] = {0};
	stun_chan_header(p, 0x4000, 8);
	tt_cli_send(c, p, sizeof p);
}

/* Sends ChannelData until the counter named by which moved past from (one
 * datagram may be on its way while the host's set changes): true when it did. */
static bool sent_until(struct tt_cli *c, const char *name, const char *labels, int64_t from)
{
	for (int i = 0; i < 500; i++) {
		chan_send(c);
		if (WAIT_UNTIL(tt_counter(name, labels) > from, 10))
			return true;
	}
	return false;
}

static void test_peer_becomes_own_address(void **state)
{
	(void)state;
	if (!have_ns)
		skip();
	struct tt_srv s;
	tt_srv_start(&s, "fastpath = off\n"); /* user space: the kernel path is fastpath.c's */
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	assert_int_equal(tt_allocate(&c, NULL), 0);
	struct net_addr peer;
	net_addr_parse(PEER ":5000", 0, &peer);
	assert_int_equal(tt_chan_bind(&c, 0x4000, &peer), 0);

	/* relayed while the peer is somebody else's */
	int64_t tp0 = to_peer();
	for (int i = 0; i < 5; i++)
		chan_send(&c);
	assert_true(WAIT_UNTIL(to_peer() == tp0 + 5, 2000));

	/* the peer's address becomes this host's: refused and counted, the
	 * relayed count stands still from then on */
	int64_t d0 = tt_counter("turn_denied_peers_total", NULL);
	assert_int_equal(system("ip addr add " PEER "/32 dev lo"), 0);
	assert_true(sent_until(&c, "turn_denied_peers_total", NULL, d0));
	int64_t tp1 = to_peer(), d1 = tt_counter("turn_denied_peers_total", NULL);
	for (int i = 0; i < 5; i++)
		chan_send(&c);
	assert_true(WAIT_UNTIL(tt_counter("turn_denied_peers_total", NULL) == d1 + 5, 2000));
	assert_int_equal(to_peer(), tp1);

	/* and relayed again once it is not */
	assert_int_equal(system("ip addr del " PEER "/32 dev lo"), 0);
	assert_true(sent_until(&c, "turn_relayed_packets_total", "direction=\"to_peer\"", tp1));
	int64_t d2 = tt_counter("turn_denied_peers_total", NULL), tp2 = to_peer();
	for (int i = 0; i < 5; i++)
		chan_send(&c);
	assert_true(WAIT_UNTIL(to_peer() == tp2 + 5, 2000));
	assert_int_equal(tt_counter("turn_denied_peers_total", NULL), d2);

	tt_cli_close(&c);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "26200-26399";
	if (unshare(CLONE_NEWNET) == 0 && system("ip link set lo up") == 0 &&
	    system("ip route add 198.18.77.0/24 dev lo") == 0)
		have_ns = true;
	else
		fprintf(stderr, "no network namespace of our own (not root?): skipping\n");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_peer_becomes_own_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
