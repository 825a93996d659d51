/* Test support: an edge-only server in a namespace of its own (see edgelab.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "edgelab.h"
#include "stund/stund.h"
#include "testenv.h"

static bool have_ns;

void edgelab_setup(void)
{
	static const char *const addrs[] = {EDGE_IP, REG_IP, ATTACKER, NULL};
	have_ns = test_own_netns(addrs);
}

void edgelab_need_ns(void)
{
	if (!have_ns)
		skip(); /* needs root for a network namespace of its own */
}

void edgelab_start(struct test_server *s, struct phone *reg, const char *extra, bool stun)
{
	phone_open_at(reg, s, REG_IP);
	char conf[1024];
	snprintf(conf, sizeof conf,
		 "[sip]\nlisten = udp:" EDGE_IP ":0, tcp:" EDGE_IP ":0\nt1 = 100\n"
		 "domains = example.org\nflow_key = " KEY_A "\n[keepalive]\ninterval = 0\n"
		 "[proxy]\nrelay = none\nregistrar = udp:" REG_IP ":%u\n%s",
		 reg->port, extra);
	test_server_start(s, conf);
	if (stun)
		edge_set_stun(s->edge, stund_flow_answer, NULL);
}

void edgelab_open(struct test_server *s, struct phone *reg, struct phone *ph, bool stun)
{
	edgelab_need_ns();
	edgelab_start(s, reg, "", stun);
	if (ph)
		phone_open(ph, s);
}

void edgelab_close(struct test_server *s, struct phone *reg, struct phone *ph)
{
	if (ph)
		phone_close(ph);
	phone_close(reg);
	test_server_stop(s);
}
