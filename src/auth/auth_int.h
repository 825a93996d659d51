/* auth internals shared by nonce.c, limit.c and auth.c. */
#ifndef PINHOLE_AUTH_INT_H
#define PINHOLE_AUTH_INT_H

#include <pthread.h>

#include "auth/auth.h"

#define AUTH_KEY_LEN 32

/* One nonce that verified at least once: the highest nc seen with it. */
struct nc_entry {
	uint8_t id[16]; /* issued|salt, the nonce's first 16 bytes */
	int64_t issued;
	uint32_t nc;
	int32_t next; /* hash chain, -1 = end */
	bool used;
};

/* Failures of one source (IPv4 address, IPv6 /64) or one user name; or a
 * success of one user from one source (kind 'o': last_ms only). */
struct fail_entry {
	uint64_t key; /* keyed hash of "s" + source, "u" + name, "o" + source + name; 0 = free */
	int64_t window_ms, last_ms, blocked_until_ms;
	uint64_t src1;	   /* user entries: the source key of the window's first failure */
	uint32_t failures; /* in the window that started at window_ms */
	uint32_t refused;  /* requests refused while blocked, told in the next log line */
	uint8_t level;	   /* backoff doublings so far */
	bool multi;	   /* user entries: the window's failures came from 2+ sources */
};

/* The limiter's keys for one request: the source, the user name, the pair. */
enum { FAIL_K_SRC, FAIL_K_USER, FAIL_K_PAIR, FAIL_K_N };

#define FAIL_WAYS 8 /* set-associative: a key lives in one set of FAIL_WAYS slots */

struct auth {
	struct store_cred *creds;	  /* borrowed */
	char realm[STORE_CRED_REALM_MAX]; /* "" = the request's domain */
	uint8_t key[AUTH_KEY_LEN];	  /* RO after alloc */
	struct evp_mac_ctx_st *mac;	  /* HMAC-SHA256 keyed with key: copied per use */
	bool offer[STORE_CRED_ALGS];	  /* [auth] algorithms */
	enum store_cred_alg order[STORE_CRED_ALGS]; /* the same, as listed: challenge order */
	size_t n_order;
	int64_t nonce_lifetime;
	unsigned max_failures;
	int64_t fail_window_ms, backoff_min_ms, backoff_max_ms;

	/* nc table: a ring in first-use order plus a hash index; guarded by nc_lock */
	pthread_mutex_t nc_lock;
	struct nc_entry *nc;
	int32_t *nc_hash;
	size_t nc_cap, nc_hash_size, nc_head, nc_count;
	/* nonces issued at or before this second and not in the table may have
	 * given way to newer ones: they are answered stale, never trusted */
	int64_t nc_horizon;

	/* failure limiter; guarded by fail_lock */
	pthread_mutex_t fail_lock;
	struct fail_entry *fail;
	size_t fail_sets; /* slots = fail_sets * FAIL_WAYS */
	size_t fail_count;
};

extern struct metric auth_m_ok, auth_m_challenges, auth_m_failures, auth_m_stale, auth_m_replays,
    auth_m_limited, auth_m_nc_evicted, auth_m_fail_evicted, auth_m_blocks, auth_m_foreign;

/* HMAC-SHA256(key, p) into out[32]. */
void auth_hmac(struct auth *a, const void *p, size_t l, uint8_t *out);
int auth_hmac_init(struct auth *a);
void auth_hmac_fini(struct auth *a);

/* The limiter's keys, made once per request. */
void auth_fail_keys(struct auth *a, const struct net_addr *src, struct slice user,
		    uint64_t k[FAIL_K_N]);
uint32_t auth_fail_blocked_k(struct auth *a, const uint64_t k[FAIL_K_N], int64_t now_ms);
void auth_fail_note_k(struct auth *a, const uint64_t k[FAIL_K_N], const struct net_addr *src,
		      struct slice user, int64_t now_ms);
void auth_fail_clear_k(struct auth *a, const uint64_t k[FAIL_K_N], int64_t now_ms);

int auth_nc_init(struct auth *a, size_t cap);
void auth_nc_fini(struct auth *a);
int auth_fail_init(struct auth *a, size_t cap);
void auth_fail_fini(struct auth *a);

#endif
