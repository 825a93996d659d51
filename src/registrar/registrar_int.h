/* registrar internals shared by REGISTER processing and keepalives. */
#ifndef PINHOLE_REGISTRAR_INT_H
#define PINHOLE_REGISTRAR_INT_H

#include <pthread.h>

#include "auth/auth.h"
#include "registrar.h"

enum ka_method { KA_OPTIONS, KA_CRLF };

struct ka_pending; /* OPTIONS pings awaiting an answer, by binding id */

#define REG_MAX_DOMAINS 32

struct reg_domain {
	char name[128];
	bool is_ip;
	struct net_addr ip; /* when is_ip */
};

struct registrar {
	struct edge *edge;
	struct store *store;
	struct store_cred *creds;
	struct auth *auth; /* owned; digest checks for us and for the proxy */
	int64_t min_expires, max_expires, default_expires, max_contacts;
	unsigned ka_interval;
	enum ka_method ka_method;
	unsigned ka_max_failures;
	struct timer ka_timer; /* worker 0: forgets unanswered pings */
	struct timer expire_timer;
	/* id -> aor of pings in flight; guarded by ka_lock (answers arrive on any worker) */
	pthread_mutex_t ka_lock;
	struct ka_pending **ka_hash;
	size_t ka_hash_size;
	size_t ka_n_pending; /* guarded by ka_lock */
	/* policy.c; RO after alloc but for the log state */
	struct reg_domain domains[REG_MAX_DOMAINS]; /* [sip] domains; none: the default */
	size_t n_domains;
	char hostname[256];
	bool open; /* [registrar] open */
	struct log_burst closed_log;
	struct log_burst full_log;    /* 503 at max_bindings */
	char retry_after_hdr[32];     /* "Retry-After: N\r\n", [sip] retry_after */
};

/* keepalive.c: the Flow-Timer promised for flows of transport tp. */
unsigned registrar_flow_timer(const struct registrar *r, enum net_transport tp);
/* keepalive.c: after a REGISTER over f for aor was committed (or at start):
 * tells the edge's flow table what the AOR's bindings on f need (server
 * pings, a keepalive check when the REGISTER asked for outbound with us as
 * its first hop (first_hop), their expiry; a connection is always watched for its
 * close), or that none is left on f, or none needs watching. */
void registrar_flow_sync(struct registrar *r, const struct flow *f, const char *aor, bool first_hop);

/* policy.c: reads [sip] domains and [registrar] open; EINVAL (logged) on a bad list. */
int registrar_policy_init(struct registrar *r, const struct conf *c);
/* 0 when the REGISTER may go on, else the status to refuse it with. */
uint16_t registrar_admit(struct registrar *r, const struct edge_rx *rx, const char **reason);

extern struct metric reg_m_registers, reg_m_rejected, reg_m_forbidden, reg_m_foreign_domain,
	reg_m_closed;

#endif
