/* store internals shared by the memory tier, the writer and the persistence backends. */
#ifndef PINHOLE_STORE_INT_H
#define PINHOLE_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "store/store.h"

/* ---- packed bindings (rec.c) ----
 *
 * What the memory tier keeps of a binding: its fixed fields, the flow's
 * addresses without sockaddr_storage's padding, and its five strings one
 * after the other, each with its NUL; the AOR is its store_aor's. About 140
 * bytes plus the strings, against 1,280 for a struct store_binding. */

union store_rec_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

enum { REC_CONTACT, REC_INSTANCE, REC_CALLID, REC_PATH, REC_UA, REC_NSTR };

struct store_rec {
	uint64_t id;
	int64_t expires_at, registered_at;
	struct store_ka ka;
	uint64_t conn_id;
	uint32_t cseq, reg_id;
	uint16_t q, listener;
	uint8_t tp;
	bool behind_nat;
	uint8_t nat_verdict, nat_media;
	uint16_t nat_evidence;
	uint32_t nat_claim;
	uint32_t refs;		/* arrays and jobs holding it; under the shard lock */
	uint16_t len[REC_NSTR]; /* without the NUL */
	union store_rec_addr local, remote;
	char s[];
};

/* The string `which` (REC_*) of r, NUL-terminated. */
const char *store_rec_str(const struct store_rec *r, int which);
/* A new record for b (fields checked: see binding_check in mem.c) with one
 * reference, or NULL. */
struct store_rec *store_rec_pack(const struct store_binding *b);
/* Fills b from r; aor is the owning AOR's canonical name. */
void store_rec_unpack(const struct store_rec *r, const char *aor, struct store_binding *b);
/* References: under the shard lock of the record's AOR. */
struct store_rec *store_rec_ref(struct store_rec *r);
void store_rec_unref(struct store_rec *r); /* NULL is fine; frees at 0 */
/* Drops one reference of each of the n records, then frees the array. */
void store_recs_release(struct store_rec **r, size_t n);

/* One AOR in a shard's hash table; owned by its shard. Its bindings are kept
 * packed (mem.c, struct store_rec): a struct store_binding is 1,280 bytes of
 * fixed fields, and the memory tier holds every binding for good.
 *
 * Two states while changes wait for their COMMIT (see store.h, durability):
 * r is what is committed, and all that lookups, visits and keepalives see;
 * w is r with the queued changes applied, what the next update builds on.
 * With nothing queued w is NULL and r is both. Records are shared between
 * r, w and the queued jobs by reference count. Everything here is under
 * the shard's lock; an AOR with queued jobs stays linked. */
struct store_aor {
	struct store_aor *next; /* bucket chain */
	uint64_t hash;
	struct store_rec **r; /* n committed records */
	size_t n;
	struct store_rec **w; /* nw records with the queued changes; NULL when none */
	size_t nw;
	uint32_t npending;    /* update jobs queued, not yet committed or failed */
	int64_t first_expiry; /* the smallest expires_at of the records: the
				 expiry scan skips the AOR without reading them */
	char aor[];	      /* canonical, NUL-terminated */
};

/* A slice of the AORs, by hash; everything inside is protected by lock. */
struct store_shard {
	pthread_mutex_t lock;
	struct store_aor **tab; /* power-of-two buckets */
	size_t tabsize;
	size_t naors;
};

/* One row to persist: an upsert of a whole binding, or a delete by id. */
struct store_row {
	bool del;
	struct store_rec *rec;	/* upsert of an update: the packed binding, one
				   reference held by the job; NULL otherwise */
	struct store_binding b; /* b.id always set; the rest only for an upsert */
};

/* The rows of one store_update (or one shard of a store_expire) and who to tell
 * when they are durable. Owned by the writer queue once queued. */
struct store_job {
	struct store_job *next;
	store_done_h *done; /* may be NULL */
	void *done_arg;
	/* an update's AOR, to apply the rows to its committed state (or undo
	 * them in w) once the COMMIT is known; NULL for expiry deletes, which
	 * memory has applied already. Stays linked while the job is queued. */
	struct store_shard *shard;
	struct store_aor *aor;
	size_t nrows;
	struct store_row rows[];
};

/* Loader callback: a binding read back at startup. */
typedef int(store_load_h)(const struct store_binding *b, void *arg);

/* A persistence backend. The memory tier is always in front of it; a backend
 * only loads at startup and writes batches. A shared backend (Redis) will add a
 * change feed that invalidates the memory tier. */
struct store_backend_ops {
	const char *name;
	int (*open)(void **ctxp, const struct store_conf *conf);
	/* Deletes rows expired at now, calls h for the others; *max_id = largest id. */
	int (*load)(void *ctx, int64_t now, store_load_h *h, void *arg, uint64_t *max_id);
	/* Writes every row of every job in the list in ONE transaction; 0 or EIO.
	 * It does not log: the writer does, once per burst of failures. */
	int (*write)(void *ctx, const struct store_job *jobs, size_t *rows);
	/* Why the last write failed, for that log line; NULL if unknown. */
	const char *(*errmsg)(void *ctx);
	void (*close)(void *ctx);
};

extern const struct store_backend_ops store_sqlite_ops;

struct store_writer;

struct store {
	struct store_shard *shards; /* RO after alloc (the array, not the shards) */
	unsigned nshards;
	unsigned max_per_aor;
	size_t max_bindings;
	store_contact_eq_h *contact_eq; /* NULL: bytes; set before the first update */
	_Atomic uint64_t next_id;
	_Atomic int64_t nbindings, naors;
	/* bindings of every AOR's latest state (w when changes are queued, else
	 * r): what max_bindings bounds, so that queued new bindings count
	 * before their COMMIT */
	_Atomic int64_t nlatest;
	struct store_writer *w; /* NULL when memory-only */
	_Atomic uint64_t commits, commit_rows, commit_errors;
};

/* writer.c: the queue and the thread that drains it. */
int store_writer_alloc(struct store_writer **wp, struct store *s,
		       const struct store_backend_ops *ops, void *ctx, bool kick_explicit);
/* Commits what is queued, stops the thread, closes the backend, frees. */
void store_writer_free(struct store_writer *w);
/* Takes ownership of job. Called under the AOR's shard lock, so that the
 * queue order of the rows of one binding is the order of its changes. */
void store_writer_push(struct store_writer *w, struct store_job *job);
void store_writer_kick(struct store_writer *w);
int store_writer_flush(struct store_writer *w);
size_t store_writer_pending(struct store_writer *w);

/* mem.c, on the writer thread after the transaction that held job: err 0
 * makes its rows the committed state, else they are undone; either way the
 * job's references go. Then the writer calls done and frees the job. */
void store_job_resolve(struct store *s, struct store_job *job, int err);

/* metrics.c-style process-wide counters, defined in mem.c */
extern struct metric store_m_bindings, store_m_aors, store_m_commits, store_m_rows, store_m_errors,
	store_m_full;

/* A credential backend behind the memory table of cred.c. The table is
 * always what lookups read; a backend persists writes and says when someone
 * else changed the data, so that the table is reloaded. Calls come from one
 * thread at a time (cred.c holds its backend mutex around each). */
typedef int(store_cred_load_h)(const char *user, const char *realm,
			       const struct store_cred_entry *e, void *arg);
struct store_cred_backend_ops {
	const char *name;
	int (*open)(void **ctxp, const char *path);
	/* Whether the data may have changed since the last load or changed(). */
	int (*changed)(void *ctx, bool *changed);
	/* Calls h for every user. */
	int (*load)(void *ctx, store_cred_load_h *h, void *arg);
	int (*put)(void *ctx, const char *user, const char *realm,
		   const struct store_cred_entry *e);
	/* 0 or ENOENT when there was no such user. */
	int (*del)(void *ctx, const char *user, const char *realm);
	void (*close)(void *ctx);
};

extern const struct store_cred_backend_ops store_cred_sqlite_ops;

#endif
