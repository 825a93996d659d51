/* Test support: an in-process relay on loopback (see relayfix.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "relayfix.h"

void relayfix_start(struct relayfix *f, const char *ini)
{
	memset(f, 0, sizeof *f);
	const struct conf_key *const tables[] = {relay_conf_keys, NULL};
	assert_int_equal(conf_alloc(&f->conf, tables), 0);
	char err[256];
	assert_int_equal(conf_load_string(f->conf, "test", ini, err, sizeof err), 0);
	struct net_conf nc = {.workers = 2};
	assert_int_equal(net_alloc(&f->net, &nc), 0);
	assert_int_equal(relay_start(&f->relay, f->net, f->conf), 0);
	assert_int_equal(net_start(f->net), 0);
	assert_int_equal(relayctl_local(&f->rc, f->relay), 0);
}

void relayfix_stop(struct relayfix *f)
{
	relayctl_free(f->rc);
	net_stop(f->net);
	relay_free(f->relay);
	net_free(f->net);
	conf_free(f->conf);
}

int relayfix_udp(const char *ip, uint16_t *port)
{
	struct net_addr a;
	int fd;
	assert_int_equal(net_addr_parse(ip, 0, &a), 0);
	assert_int_equal(net_udp_socket(&a, false, &fd), 0);
	assert_int_equal(net_sock_addr(fd, &a), 0);
	*port = net_addr_port(&a);
	return fd;
}
