/* A relayed transport address belongs to its allocation alone: no other
 * socket, of this process or another, with or without SO_REUSEPORT or
 * SO_REUSEADDR, may bind to it (it would take some of the allocation's
 * datagrams from its peers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turnc.h"

/* A bind of a new UDP socket with these options to addr: 0 or errno. */
static int stranger_bind(const struct net_addr *addr, bool reuseport, bool reuseaddr)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
	assert_true(fd >= 0);
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	int err = bind(fd, &addr->u.sa, net_addr_len(addr)) < 0 ? errno : 0;
	close(fd);
	return err;
}

static void test_relayed_port_taken(void **state)
{
	(void)state;
	struct tt_srv s;
	tt_srv_start(&s, "allowed_peers = 127.0.0.0/8\n");
	struct tt_cli c;
	tt_cli_open(&c, &s, false, "alice", "wonder");
	struct net_addr relay, pa;
	assert_int_equal(tt_allocate(&c, &relay), 0);
	int pfd = tt_peer_open(&pa);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(stranger_bind(&relay, false, false), EADDRINUSE);
		assert_int_equal(stranger_bind(&relay, true, false), EADDRINUSE);
		assert_int_equal(stranger_bind(&relay, false, true), EADDRINUSE);
		assert_int_equal(stranger_bind(&relay, true, true), EADDRINUSE);
		/* and the same once a channel is bound and has carried traffic */
		assert_int_equal(tt_chan_bind(&c, 0x4001, &pa), 0);
		const uint8_t cd[] = {0x40, 0x01, 0x00, 0x02, 'h', 'i'};
		tt_cli_send(&c, cd, sizeof cd);
		uint8_t got[16];
		struct net_addr from;
		assert_int_equal(tt_peer_recv(pfd, got, sizeof got, &from), 2);
		assert_true(net_addr_eq(&from, &relay));
	}
	assert_int_equal(tt_refresh(&c, 0), 0);
	close(pfd);
	tt_cli_close(&c);
	tt_srv_stop(&s);
}

int main(void)
{
	tt_relay_ports = "26200-26399";
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relayed_port_taken),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
