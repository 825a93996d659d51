/* Test support: an in-process relay on loopback, driven through the direct relayctl. */
#ifndef PINHOLE_TEST_RELAYFIX_H
#define PINHOLE_TEST_RELAYFIX_H

#include <stdint.h>

#include "core/core.h"
#include "net/net.h"
#include "relay/relay.h"
#include "relayctl/relayctl.h"

/* What relayfix_start makes; relayfix_stop frees it all. */
struct relayfix {
	struct conf *conf;
	struct net *net; /* two workers */
	struct relay *relay;
	struct relayctl *rc; /* the direct (in-process) control */
};

/* Starts a relay configured by the INI text ini; fails the test on any error. */
void relayfix_start(struct relayfix *f, const char *ini);
void relayfix_stop(struct relayfix *f);

/* A UDP socket bound to ip on a free port (in *port), as a party's media socket. */
int relayfix_udp(const char *ip, uint16_t *port);

#endif
