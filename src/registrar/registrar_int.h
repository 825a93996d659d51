/* registrar internals shared by REGISTER processing and keepalives. */
#ifndef PINHOLE_REGISTRAR_INT_H
#define PINHOLE_REGISTRAR_INT_H

#include <pthread.h>

#include "auth/auth.h"
#include "registrar.h"

enum ka_method { KA_OPTIONS, KA_CRLF };

struct ka_pending; /* OPTIONS pings awaiting an answer, by binding id */

#define REG_MAX_DOMAINS 32
#define REG_MAX_TRUSTED 64

struct reg_srcs; /* flows.c: outbound bindings per source */

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
	/* [proxy] trusted: the hops whose Path we honour (RFC 3327); RO after alloc */
	struct net_cidr trusted[REG_MAX_TRUSTED];
	size_t n_trusted;
	/* [relay] direct_networks: sources that reach us without NAT (a
	 * verdict's no-nat); RO after alloc */
	struct net_cidr direct[REG_MAX_TRUSTED];
	size_t n_direct;
	struct log_burst path_log; /* Path from an untrusted source */
	/* [outbound] (RFC 5626); RO after alloc */
	unsigned max_flows_per_source;
	struct reg_srcs *srcs; /* owned; NULL when max_flows_per_source = 0 */
	struct log_burst srcs_log; /* 403 at max_flows_per_source */
};

/* keepalive.c: the Flow-Timer promised for flows of transport tp. */
unsigned registrar_flow_timer(const struct registrar *r, enum net_transport tp);
/* keepalive.c: after a REGISTER over f for aor was committed (or at start):
 * tells the edge's flow table what the AOR's bindings on f need (server
 * pings, a keepalive check when the REGISTER asked for outbound with us as
 * its first hop (first_hop), their expiry; a connection is always watched for its
 * close), or that none is left on f, or none needs watching. */
void registrar_flow_sync(struct registrar *r, const struct flow *f, const char *aor, bool first_hop);
/* The same from the AOR's bindings the caller looked up already (all of
 * them: those on other flows are skipped). */
void registrar_flow_sync_with(struct registrar *r, const struct flow *f, const char *aor,
			      bool first_hop, const struct store_binding *all, size_t n_all);

/* policy.c: reads [sip] domains, [registrar] open and [proxy] trusted; EINVAL
 * (logged) on a bad list. */
int registrar_policy_init(struct registrar *r, const struct conf *c);
/* Counts and logs (once per burst) a REGISTER refused for its Path. */
void registrar_log_path_untrusted(struct registrar *r, const struct flow *f);
/* 0 when the REGISTER may go on, else the status to refuse it with. */
uint16_t registrar_admit(struct registrar *r, const struct edge_rx *rx, const char **reason);

/* Whether a binding counts against its source's max_flows_per_source: an
 * outbound one (reg-id kept) that came straight from the phone (no Path),
 * not from a [proxy] trusted peer. */
bool registrar_counts_flow(const struct registrar *r, const struct store_binding *b);

/* ---- flows.c: outbound bindings per source address ----
 * Thread-safe (stripe locks of its own, taken under a store shard lock, never
 * the other way round). Entries are store binding ids with their expiry. */
int reg_srcs_alloc(struct reg_srcs **sp, unsigned max);
void reg_srcs_free(struct reg_srcs *s);
/* Before binding id (0: a new one, its id not known yet) is put for src
 * until expires_at: passes when src holds id already (its expiry is
 * updated: nothing more to do), when refresh (the binding exists and came
 * from src: refreshes always pass), or when src holds fewer than max; in
 * those last two cases it sets *reserved, a slot that settle or cancel must
 * give back. 0, EDQUOT (at the bound) or ENOMEM. */
int reg_srcs_claim(struct reg_srcs *s, const struct net_src_key *src, uint64_t id, bool refresh,
		   int64_t now, int64_t expires_at, bool *reserved);
/* After the put of a reserved claim: src holds id until expires_at, in
 * place of the reserved slot. */
void reg_srcs_settle(struct reg_srcs *s, const struct net_src_key *src, uint64_t id,
		     int64_t expires_at, bool reserved);
/* The put did not happen: gives the reserved slot back. */
void reg_srcs_cancel(struct reg_srcs *s, const struct net_src_key *src, bool reserved);
/* src no longer holds id (removed, moved to another source, undone). */
void reg_srcs_release(struct reg_srcs *s, const struct net_src_key *src, uint64_t id);
/* Live entries of src (tests). */
size_t reg_srcs_count(struct reg_srcs *s, const struct net_src_key *src, int64_t now);
/* Drops expired entries and empty records from the next eighth of the
 * table (one caller at a time); sources and entries held in all (may be NULL). */
void reg_srcs_sweep(struct reg_srcs *s, int64_t now, size_t *sources, size_t *entries);

extern struct metric reg_m_registers, reg_m_rejected, reg_m_forbidden, reg_m_foreign_domain,
	reg_m_closed, reg_m_path_untrusted, reg_m_no_ob_hop, reg_m_flows_refused,
	reg_m_contacts_refused;

/* nat.c */
void registrar_nat_register_metrics(void);
void registrar_nat_count(uint8_t verdict, bool changed);
/* The verdict, evidence and claim hash of REGISTER m over flow f whose
 * first Contact is contact (NULL: none); has_path: it came through an edge
 * (then judged by the phone's Via, kept in *pvia: slices into m). */
void registrar_nat_request(struct registrar *r, const struct flow *f, const struct sip_msg *m,
			   const struct sip_uri *contact, bool has_path, struct sip_via *pvia,
			   uint8_t *verdict, uint16_t *evidence, uint32_t *claim);

#endif
