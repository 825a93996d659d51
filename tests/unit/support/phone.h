/* Test support: an in-process SIP server and loopback "phones" that speak raw SIP to it. */
#ifndef PINHOLE_TEST_PHONE_H
#define PINHOLE_TEST_PHONE_H

#include <stddef.h>
#include <stdint.h>

#include "edge/edge.h"
#include "proxy/proxy.h"
#include "registrar/registrar.h"
#include "store/store.h"

struct test_server {
	struct conf *conf;
	struct store *store;
	struct store_cred *creds;
	struct net *net;
	struct edge *edge;
	struct registrar *reg;
	struct proxy *proxy;
	struct relay *relay; /* with a [relay] section in the config, else NULL */
	struct echo *echo;   /* with an [echo] section, else NULL */
	struct net_addr addr; /* where phones send */
	unsigned seq;
};

/* Starts edge, registrar (with its keepalive timers) and proxy on 127.0.0.1:0
 * with a memory store and the given config text, and the media relay when it
 * has a [relay] section; fails the test on error. */
void test_server_start(struct test_server *s, const char *conf_text);
void test_server_stop(struct test_server *s);

/* A phone: one UDP socket on loopback, like a phone behind one NAT mapping. */
struct phone {
	int fd;
	uint16_t port;
	struct test_server *srv;
};

void phone_open(struct phone *p, struct test_server *srv);
/* The same, bound to another local IPv4 address (a namespace's own). */
void phone_open_at(struct phone *p, struct test_server *srv, const char *ip);
void phone_close(struct phone *p);
void phone_send(struct phone *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Receives until a message starting with prefix (skipping others); fails after 2 s. */
void phone_expect(struct phone *p, const char *prefix, char *out, size_t len);
/* Receives everything that arrives within ms; returns the number of
 * datagrams and adds their bytes to *bytes; the first goes to first (len). */
int phone_drain(struct phone *p, int ms, size_t *bytes, char *first, size_t len);
/* Fails if anything arrives within ms. */
void phone_expect_silence(struct phone *p, int ms);
/* Answers req with status, copying Via, From, To (+tag), Call-ID, CSeq, Record-Route. */
void phone_reply(struct phone *p, const char *req, int status, const char *reason,
		 const char *tag);
/* Answers req as a registrar (or whatever a test plays behind an edge) does:
 * "SIP/2.0 <status>", Via, From, Call-ID and CSeq copied, To with tag=reg,
 * then the extra header lines and an empty body. */
void phone_reply_registrar(struct phone *reg, const char *req, const char *status,
			   const char *extra);
/* The same with an SDP body (NULL: none). */
void phone_reply_sdp(struct phone *p, const char *req, int status, const char *reason,
		     const char *tag, const char *sdp);
/* Builds the response phone_reply_sdp sends (Contact at 127.0.0.1:contact_port)
 * into resp[cap]; returns its length. */
int phone_build_reply(const char *req, int status, const char *reason, const char *tag,
		      uint16_t contact_port, const char *sdp, char *resp, size_t cap);
/* REGISTERs user with Contact sip:user@10.1.1.1:<port> (a private address). */
void phone_register(struct phone *p, const char *user);
void phone_invite(struct phone *caller, const char *callee, const char *call_id,
		  const char *branch, int max_forwards);
/* CANCELs the INVITE that phone_invite() sent with the same arguments. */
void phone_cancel(struct phone *caller, const char *callee, const char *call_id,
		  const char *branch);
/* Copies the value of header name (first occurrence) from msg into out. */
void msg_header(const char *msg, const char *name, char *out, size_t len);

#endif
