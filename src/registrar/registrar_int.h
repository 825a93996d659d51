/* registrar internals shared by REGISTER processing and keepalives. */
#ifndef PINHOLE_REGISTRAR_INT_H
#define PINHOLE_REGISTRAR_INT_H

#include <pthread.h>

#include "auth/auth.h"
#include "registrar.h"

enum ka_method { KA_OPTIONS, KA_CRLF };

struct ka_pending; /* OPTIONS pings awaiting an answer, by binding id */

struct registrar {
	struct edge *edge;
	struct store *store;
	struct store_cred *creds;
	struct auth *auth; /* owned; digest checks for us and for the proxy */
	int64_t min_expires, max_expires, default_expires, max_contacts;
	unsigned ka_interval;
	enum ka_method ka_method;
	unsigned ka_max_failures;
	struct timer ka_timer; /* worker 0 */
	struct timer expire_timer;
	/* id -> aor of pings in flight; guarded by ka_lock (answers arrive on any worker) */
	pthread_mutex_t ka_lock;
	struct ka_pending **ka_hash;
	size_t ka_hash_size;
};

extern struct metric reg_m_registers, reg_m_rejected, reg_m_forbidden;

#endif
