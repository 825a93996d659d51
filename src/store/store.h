/* store: location service (sharded memory, SQLite group commit) and credentials. */
#ifndef PINHOLE_STORE_H
#define PINHOLE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "net/net.h"

/*
 * Who owns what
 * -------------
 * struct store owns every binding. Callers never hold a pointer into it outside
 * the calls below: lookups and visits copy bindings out; updates see them through
 * a struct store_view that is valid only during the update callback.
 *
 * Threads
 * -------
 * Every function is thread-safe unless it says otherwise. Memory is split into
 * shards (one mutex each, chosen by a hash of the AOR), so workers that touch
 * different AORs rarely wait on each other. With a database, one writer thread
 * owns the SQLite connection: workers never touch SQLite.
 *
 * Durability contract
 * -------------------
 * A change is seen by lookups (and so used for routing) only once it is
 * committed: memory never holds what the database does not. store_update()
 * applies a change to the AOR's working state at once, so that the next
 * update of the AOR builds on it, and queues its rows for the writer;
 * store_lookup() and store_foreach() keep seeing the committed state. After
 * the COMMIT the writer makes the rows the committed state and then calls
 * done, so a REGISTER answered 200 from done is routable at once and
 * survives kill -9. If the COMMIT fails the change is undone in memory too
 * (a new binding is not routed, a removed one stays, as after a restart),
 * and done gets the error, so the registrar answers 500 and the phone
 * retries. Failures are logged once per burst with a count, and counted
 * (store_commit_errors_total). Memory-only stores commit at once.
 */

/* Bounds of the fixed-size fields, terminating NUL included. STORE_SET refuses
 * longer input with ENAMETOOLONG; user_agent is only informative, so callers
 * had better truncate it (slice_to_cstr) than refuse the REGISTER. */
#define STORE_AOR_MAX 128     /* "user@host", host lowercased by the store */
#define STORE_CONTACT_MAX 256 /* Contact URI as the phone sent it, no <> */
#define STORE_INSTANCE_MAX 80 /* +sip.instance value, e.g. "<urn:uuid:...>" (47 bytes) */
#define STORE_CALLID_MAX 128
#define STORE_PATH_MAX 256 /* Path header values, comma-joined */
#define STORE_UA_MAX 96

#define STORE_Q_MAX 1000 /* q is kept in thousandths: q=0.5 -> 500 */

/* Keepalive state, written by the keepalive task through store_ka_set(). Kept in
 * memory only: it is rebuilt by the next pings after a restart, and writing it
 * to disk on every ping would cost one fsync per ping for nothing. It reaches the
 * database only as part of a binding that is upserted for another reason. */
struct store_ka {
	int64_t last_sent;   /* wall clock seconds, 0 = never */
	int64_t last_answer; /* wall clock seconds, 0 = never */
	uint32_t failures;   /* consecutive pings without answer */
	bool unreachable;
	/* the source has shown it is real (an answer from it, a REGISTER over a
	 * stream, an authenticated REGISTER); false after a restart unless
	 * last_answer says it answered */
	bool proven;
};

/* One registered contact of an AOR.
 * Size: 1,280 bytes on x86-64 (the flow 272 of them, its two sockaddr_storage
 * mostly padding; the strings 1,024). That is the exchange format of the calls
 * below; the memory tier keeps each binding packed (about 140 bytes plus its
 * strings, so some 250 for a usual phone) and copies it in and out.
 * Identity within its AOR (RFC 5626 6): (instance, reg_id) when instance is set
 * and reg_id != 0, else the contact URI, compared by the store's contact
 * comparison (store_set_contact_eq: the registrar gives RFC 3261 19.1.4's). */
struct store_binding {
	uint64_t id;	       /* set by the store: unique, kept across refreshes and restarts */
	int64_t expires_at;    /* wall clock seconds; expired when expires_at <= now */
	int64_t registered_at; /* wall clock seconds of the last REGISTER that wrote it */
	struct flow flow;      /* where the REGISTER arrived; flow.remote is the real source */
	struct store_ka ka;
	uint32_t cseq;
	uint32_t reg_id;		 /* 0 = none */
	uint16_t q;			 /* 0..STORE_Q_MAX, thousandths */
	bool behind_nat;		 /* the source differed from the Contact/Via address */
	/* NAT verdict of the last REGISTER and its evidence (registrar.h:
	 * REG_NAT_*, REG_EV_*), a hash of what its Via and Contact claimed
	 * (0 = none), and the last relayed call's media evidence (REG_MEDIA_*).
	 * Memory only: not in SQLite; a restart forgets them until the next
	 * REGISTER or call. */
	uint8_t nat_verdict;
	uint8_t nat_media;
	uint16_t nat_evidence;
	uint32_t nat_claim;
	char aor[STORE_AOR_MAX];	 /* set by the store from the update's AOR */
	char contact[STORE_CONTACT_MAX]; /* required, non-empty */
	char instance[STORE_INSTANCE_MAX];
	char call_id[STORE_CALLID_MAX];
	char path[STORE_PATH_MAX];
	char user_agent[STORE_UA_MAX];
};

/* Copies s into a fixed field with its NUL: 0, or ENAMETOOLONG (dst untouched).
 * STORE_SET(b.contact, s) passes the field's size. */
int store_field_set(char *dst, size_t cap, struct slice s);
#define STORE_SET(field, s) store_field_set((field), sizeof(field), (s))

/* Whether two contact URIs name the same binding. The store is plumbing and
 * does not parse SIP: without one it compares bytes. */
typedef bool(store_contact_eq_h)(struct slice a, struct slice b);

/* Whether two bindings of one AOR are the same binding (see identity above);
 * eq NULL compares contacts byte for byte. */
bool store_binding_same(const struct store_binding *a, const struct store_binding *b,
			store_contact_eq_h *eq);

/* Canonical AOR: the host part (after the last '@') lowercased, the user part
 * kept as is. 0, ENAMETOOLONG or EINVAL (empty). dst holds STORE_AOR_MAX. */
int store_aor_canon(struct slice aor, char dst[STORE_AOR_MAX]);

/* ---- the location store ---- */

struct store;
struct store_view;

enum store_sync {
	/* WAL, synchronous=FULL: each COMMIT fsyncs the WAL. An acknowledged binding
	 * survives kill -9 and power loss. Group commit shares the fsync between all
	 * REGISTERs of a batch, which is what makes FULL affordable. Default. */
	STORE_SYNC_FULL = 0,
	/* WAL, synchronous=NORMAL: COMMIT writes the WAL without fsync. Survives kill -9
	 * of the process (the bytes are in the kernel's page cache), not power loss or
	 * a kernel crash, which may lose the last commits. Cheaper on slow disks. */
	STORE_SYNC_NORMAL = 1,
};

/* Heap measured per binding with its own AOR (malloc overhead and hash
 * buckets included): about 470 bytes for a usual phone's fields, so some
 * 470 MB at the bound; 1,230 bytes when every field is full (what a flood
 * can send), so at most about 1.2 GB. */
#define STORE_MAX_BINDINGS_DEFAULT 1000000

struct store_conf {
	const char *path;     /* SQLite file, created if absent; NULL = memory only */
	unsigned shards;      /* 0 = 64 */
	unsigned max_per_aor; /* store_view_put() refuses more with ENOSPC; 0 = 32 */
	/* Bindings in all (each AOR's latest state, queued changes included);
	 * store_view_put() refuses a binding that would grow the total past it
	 * with EAGAIN, and counts it. A refresh, a removal, or a new binding in
	 * place of one that expired or was removed in the same update always
	 * passes. Checked without a lock: concurrent updates of different
	 * shards may overshoot by one binding each. Bindings loaded at start
	 * count: past the bound on disk, all are loaded (logged) and new ones
	 * are refused until enough expire or go. AORs need no bound of their
	 * own: one exists only while it holds a binding or a queued change.
	 * 0 = STORE_MAX_BINDINGS_DEFAULT. */
	size_t max_bindings;
	enum store_sync sync;
	/* false: every store_update() wakes the writer; batches form from the updates
	 * queued while the previous COMMIT is in flight.
	 * true: store_update() only queues; the caller calls store_kick() once per
	 * loop turn (from loop_on_turn_end), so the REGISTERs of one turn share one
	 * transaction. The writer also wakes by itself every 5 ms as a safety net. */
	bool kick_explicit;
};

/* Opens the store. With a path: opens or creates the database (WAL), creates the
 * schema, loads every binding that has not expired (deleting expired rows), and
 * starts the writer thread. Returns 0, ENOMEM, EINVAL (bad conf) or EIO (SQLite
 * error, logged with the file name). Sets *sp only on success. */
int store_alloc(struct store **sp, const struct store_conf *conf);
/* How contacts are compared for identity from now on; call before the first
 * update (the registrar does, with the SIP codec's URI comparison). */
void store_set_contact_eq(struct store *s, store_contact_eq_h *eq);
/* Commits everything queued (calling its done callbacks), stops the writer,
 * closes the database and frees all memory. NULL is fine. */
void store_free(struct store *s);

/* Update callback: runs under the AOR's shard lock with the AOR's bindings in v
 * (expired ones already dropped). It may read and change them through the
 * store_view_* functions, and must not call other store functions (the shard
 * lock is held). Return 0 to keep the changes, or an errno to discard all of them. */
typedef int(store_update_h)(struct store_view *v, void *arg);
/* Durability callback: err is 0 once the change is committed, else the commit error.
 * On the writer thread it delays the next batch, so it should only post to the
 * caller's loop (loop_post); it may call store functions except store_flush and
 * store_free. */
typedef void(store_done_h)(int err, void *arg);

/*
 * Atomic read-modify-write of one AOR.
 *
 * Returns what fn returned, or EINVAL/ENAMETOOLONG for a bad AOR, or ENOMEM.
 * On a non-zero return nothing changed and done is never called.
 * On 0 the next store_update of the AOR sees the change; lookups see it once
 * it is committed (at once when memory-only), and never if the commit fails.
 * done(err, done_arg) is called exactly once, after that:
 *   - from the writer thread after the COMMIT that holds the change, or
 *   - synchronously, before store_update returns, when the store is memory-only
 *     or fn changed nothing.
 * done may be NULL (fire and forget).
 */
int store_update(struct store *s, struct slice aor, store_update_h *fn, void *arg,
		 store_done_h *done, void *done_arg);

/* ---- inside an update callback: the AOR's bindings ----
 * Indices run 0..count-1 and shift down on remove. Pointers returned by
 * store_view_get() stay valid until the next change through the view. */
const char *store_view_aor(const struct store_view *v); /* canonical AOR */
int64_t store_view_now(const struct store_view *v);	/* wall clock at update start */
size_t store_view_count(const struct store_view *v);
const struct store_binding *store_view_get(const struct store_view *v, size_t i);
/* Index of the binding with b's identity, or -1. */
long store_view_find(const struct store_view *v, const struct store_binding *b);
/* Adds b, or replaces the binding with its identity (keeping its id). The whole
 * binding is copied, keepalive state included: a refresh that wants to keep the
 * old ka state copies it from the old binding first. aor and id are set by the
 * store. Index in *idx if not NULL. 0, EINVAL (empty contact, q > 1000),
 * ENOSPC (max_per_aor reached), EAGAIN (max_bindings reached: a new binding
 * only). */
int store_view_put(struct store_view *v, const struct store_binding *b, size_t *idx);
/* Replaces binding i with b (the identity may change, e.g. a new contact for the
 * same instance); keeps binding i's id. 0, EINVAL, ERANGE (bad index), EEXIST
 * (another binding already has b's identity). */
int store_view_set(struct store_view *v, size_t i, const struct store_binding *b);
/* 0 or ERANGE. */
int store_view_remove(struct store_view *v, size_t i);
/* Removes every binding (Contact: *). */
void store_view_clear(struct store_view *v);

/* ---- reading ---- */

/* Copies the AOR's live bindings into out[0..max), best first (q descending, then
 * the most recent registration). Expired bindings are skipped; unreachable ones
 * are returned with ka.unreachable set: the proxy decides. *n = number copied.
 * Returns 0 (also for an unknown AOR, with *n = 0), ENOBUFS when there were more
 * than max (out holds the best max), EINVAL/ENAMETOOLONG for a bad AOR. */
int store_lookup(struct store *s, struct slice aor, struct store_binding *out, size_t max,
		 size_t *n);

/* Visit callback: b is a copy, valid during the call; return non-zero to stop. */
typedef int(store_visit_h)(const struct store_binding *b, void *arg);
/* Visits every live binding, shard by shard. Each shard is copied out under its
 * lock and visited without it, so fn may call any store function (store_ka_set
 * in particular). A binding changed meanwhile is seen as it was at the copy.
 * Returns 0, what fn returned to stop, or ENOMEM. */
int store_foreach(struct store *s, store_visit_h *fn, void *arg);

/* Where a sliced walk stands; zeroed = at the start. */
struct store_cursor {
	unsigned shard;
	size_t bucket;
};
/* One slice of a walk over every live binding: from *c on, visits bindings as
 * store_foreach does until about budget units are spent (one per hash bucket
 * looked at, one per binding; whole buckets, so a slice may overshoot by one
 * bucket's bindings), then advances *c. *round_done is set, and *c back to
 * the start, when the walk has passed the last binding. A binding added or a
 * table resized between slices may be missed or seen twice in that round.
 * Returns 0, what fn returned to stop, or ENOMEM. */
int store_foreach_slice(struct store *s, struct store_cursor *c, size_t budget,
			store_visit_h *fn, void *arg, bool *round_done);

/* ---- keepalive state (memory only, see struct store_ka) ---- */

/* Sets the keepalive state of the binding with this id in this AOR. 0, ENOENT. */
int store_ka_set(struct store *s, struct slice aor, uint64_t id, const struct store_ka *ka);
/* Sets nat_media on aor's bindings whose flow.remote equals src (address
 * and port), memory only like store_ka_set: 0, or ENOENT when none. */
int store_nat_media_set(struct store *s, struct slice aor, const struct net_addr *src,
			uint8_t media);
/* Same for every binding of the AOR whose contact URI is contact. 0, ENOENT. */
int store_ka_set_contact(struct store *s, struct slice aor, struct slice contact,
			 const struct store_ka *ka);

/* ---- housekeeping ---- */

/* Removes bindings with expires_at <= now and queues their deletion (no callback).
 * *removed (may be NULL) = how many. Call it every few seconds from one thread. */
int store_expire(struct store *s, int64_t now, size_t *removed);

/* With kick_explicit: wakes the writer to commit what is queued. Cheap, any thread. */
void store_kick(struct store *s);
/* store_kick with the loop_call_h signature: loop_on_turn_end(l, store_kick_turn, s). */
void store_kick_turn(void *store);
/* Blocks until everything queued before the call is committed and its done
 * callbacks have run. Returns the error of the last commit (0 if fine). Must not
 * be called from a done callback. Memory-only: returns 0 at once. */
int store_flush(struct store *s);

struct store_stats {
	size_t bindings; /* in memory, expired but not yet purged included */
	size_t bindings_latest; /* with queued changes applied: what max_bindings bounds */
	size_t aors;
	uint64_t commits;     /* transactions committed */
	uint64_t commit_rows; /* rows written by them */
	uint64_t commit_errors;
	size_t pending; /* updates queued, not yet committed */
};
void store_stats_get(struct store *s, struct store_stats *out);

/* Metrics registered by store_alloc (process-wide, summed over stores):
 * store_bindings, store_aors (gauges), store_commits_total,
 * store_commit_rows_total, store_commit_errors_total, store_bindings_full_total
 * (new bindings refused at max_bindings). */

/* ---- credentials: user@realm -> HA1 per digest algorithm ----
 *
 * The interface beside the location store. The password is never stored:
 * `pinhole user` computes H(user:realm:password) for each algorithm (RFC 7616
 * 3.4.2, RFC 8760) and the store keeps those hex strings. No user at all means
 * what it meant before users existed (the registrar and proxy then
 * authenticate nobody): callers check store_cred_count() == 0.
 *
 * Backends. Lookups always read a memory table (hash of user+realm behind a
 * read-write lock), never a database on the packet path. The memory backend is
 * only that table (tests). The SQLite backend (the credential table in the
 * [store] path file) writes through to the file and keeps the table current
 * from it: a watcher thread checks PRAGMA data_version every reload_ms and,
 * when the file changed, the credential table's own change counter (kept by
 * triggers, so that the bindings' commits do not count); when that moved, it
 * reads the whole table into a new memory table and swaps it in. So `pinhole
 * serve` sees users that `pinhole user` added, changed or deleted within about
 * reload_ms, without a restart. A Redis backend would implement the same ops
 * (store_int.h, struct store_cred_backend_ops) with its change feed.
 */

struct store_cred;

enum store_cred_alg {
	STORE_CRED_MD5 = 0,
	STORE_CRED_SHA256 = 1,
	STORE_CRED_SHA512_256 = 2,
	STORE_CRED_ALGS
};

#define STORE_CRED_USER_MAX 64
#define STORE_CRED_REALM_MAX 128
#define STORE_CRED_HA1_MAX 65 /* hex of a 256-bit digest and its NUL */

struct store_cred_entry {
	char ha1[STORE_CRED_ALGS][STORE_CRED_HA1_MAX]; /* lowercase hex; "" = none */
};

/* A memory-only store (tests). 0 or ENOMEM. */
int store_cred_alloc(struct store_cred **cp);
/* The SQLite backend on path (created if absent, WAL). Loads every user; with
 * reload_ms > 0 starts the watcher thread described above. 0, ENOMEM or EIO
 * (logged with the file name). */
int store_cred_open(struct store_cred **cp, const char *path, unsigned reload_ms);
/* Stops the watcher, closes the file, frees the table. NULL is fine. */
void store_cred_free(struct store_cred *c);
/* Adds or replaces a user (written to the backend first, then the table).
 * Realm compared case-insensitively, user exactly. 0, ENAMETOOLONG, EINVAL
 * (empty user, or no HA1 at all), ENOMEM, EIO. */
int store_cred_set(struct store_cred *c, struct slice user, struct slice realm,
		   const struct store_cred_entry *e);
/* 0, ENOENT or EIO. */
int store_cred_del(struct store_cred *c, struct slice user, struct slice realm);
/* Copies the entry out. 0 or ENOENT. */
int store_cred_lookup(struct store_cred *c, struct slice user, struct slice realm,
		      struct store_cred_entry *out);
size_t store_cred_count(struct store_cred *c);
/* Visits every user (a copy of the table is taken first; fn may call anything).
 * Returns 0, what fn returned to stop, or ENOMEM. */
typedef int(store_cred_visit_h)(const char *user, const char *realm,
				const struct store_cred_entry *e, void *arg);
int store_cred_foreach(struct store_cred *c, store_cred_visit_h *fn, void *arg);
/* What the watcher does, now: reloads if the backend changed. *reloaded (may be
 * NULL) says whether it did. 0 or EIO. Memory backend: 0, never reloads. */
int store_cred_sync(struct store_cred *c, bool *reloaded);
/* The longest bucket chain of the table: what the worst lookup walks (tests). */
size_t store_cred_chain_max(struct store_cred *c);

#endif
