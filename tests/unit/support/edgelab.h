/* Test support: an edge-only server ([proxy] registrar) in front of a registrar that a test
 * socket plays, in a network namespace of the test's own (lo only). */
#ifndef PINHOLE_TEST_EDGELAB_H
#define PINHOLE_TEST_EDGELAB_H

#include <stdbool.h>

#include "phone.h"

/* The namespace's addresses: the edge, the registrar it forwards to, a stranger on the
 * "internet"; phones stay on 127.0.0.1. The edge's flow_key is KEY_A. */
#define EDGE_IP "198.18.0.1"
#define REG_IP "198.18.0.3"
#define ATTACKER "198.18.7.7"
#define KEY_A "1111111111111111111111111111111111111111111111111111111111111111"

/* Enters a namespace of the process's own holding the three addresses; from main,
 * before the cases. Without root there is none and edgelab_need_ns skips. */
void edgelab_setup(void);

/* Skips the case unless edgelab_setup made the namespace. */
void edgelab_need_ns(void);

/* Opens reg at REG_IP and starts an edge-only server (UDP and TCP at EDGE_IP, t1 100 ms,
 * domain example.org, no keepalives or relay) forwarding to it over UDP; extra: more
 * config text ("" for none); stun: it answers STUN on its SIP port. */
void edgelab_start(struct test_server *s, struct phone *reg, const char *extra, bool stun);

/* The usual cast: skips without the namespace; else edgelab_start (no extra config) and,
 * unless ph is NULL, a phone opened on it. */
void edgelab_open(struct test_server *s, struct phone *reg, struct phone *ph, bool stun);

/* Undoes edgelab_open: closes ph (unless NULL) and reg, stops s. */
void edgelab_close(struct test_server *s, struct phone *reg, struct phone *ph);

#endif
