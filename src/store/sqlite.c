/* SQLite persistence backend: schema, startup load, one transaction per batch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/store_int.h"

#define SCHEMA_VERSION 1

struct sq {
	sqlite3 *db;
	sqlite3_stmt *upsert, *del, *begin, *commit, *rollback;
	char *path;    /* for log lines */
	char why[256]; /* the last write error: the writer logs it, once per burst */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS binding ("
    " id INTEGER PRIMARY KEY,"
    " aor TEXT NOT NULL, contact TEXT NOT NULL, instance TEXT NOT NULL,"
    " reg_id INTEGER NOT NULL, q INTEGER NOT NULL, call_id TEXT NOT NULL,"
    " cseq INTEGER NOT NULL, expires_at INTEGER NOT NULL, registered_at INTEGER NOT NULL,"
    " transport INTEGER NOT NULL, listener INTEGER NOT NULL, conn_id INTEGER NOT NULL,"
    " local_ip BLOB, local_port INTEGER NOT NULL,"
    " remote_ip BLOB, remote_port INTEGER NOT NULL,"
    " path TEXT NOT NULL, user_agent TEXT NOT NULL, behind_nat INTEGER NOT NULL,"
    " ka_sent INTEGER NOT NULL, ka_answer INTEGER NOT NULL,"
    " ka_failures INTEGER NOT NULL, unreachable INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS binding_expires ON binding(expires_at);";

#define COLUMNS                                                                                    \
	"id, aor, contact, instance, reg_id, q, call_id, cseq, expires_at, registered_at,"         \
	" transport, listener, conn_id, local_ip, local_port, remote_ip, remote_port,"             \
	" path, user_agent, behind_nat, ka_sent, ka_answer, ka_failures, unreachable"

static int sq_fail(struct sq *q, const char *what)
{
	LOG_E("store", "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
	return EIO;
}

/* A write-path error: kept for the writer's log line, not logged here (a
 * full disk fails every batch). */
static int sq_note(struct sq *q, const char *what)
{
	snprintf(q->why, sizeof q->why, "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
	return EIO;
}

static const char *sq_errmsg(void *ctx)
{
	struct sq *q = ctx;
	return q->why[0] ? q->why : NULL;
}

static int sq_exec(struct sq *q, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	LOG_E("store", "%s: %s: %s", q->path, sql, msg ? msg : "?");
	sqlite3_free(msg);
	return EIO;
}

static int sq_prepare(struct sq *q, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		return sq_fail(q, "prepare");
	return 0;
}

static void sq_close(void *ctx)
{
	struct sq *q = ctx;
	if (!q)
		return;
	sqlite3_finalize(q->upsert);
	sqlite3_finalize(q->del);
	sqlite3_finalize(q->begin);
	sqlite3_finalize(q->commit);
	sqlite3_finalize(q->rollback);
	sqlite3_close(q->db);
	free(q->path);
	free(q);
}

static int schema_check(struct sq *q)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "user_version");
	int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (v < 0 || v > SCHEMA_VERSION) {
		LOG_E("store", "%s: schema version %d, this build knows %d", q->path, v,
		      SCHEMA_VERSION);
		return EIO;
	}
	int err = sq_exec(q, schema);
	if (!err && v < SCHEMA_VERSION)
		err = sq_exec(q, "PRAGMA user_version = 1");
	return err;
}

static int sq_open(void **ctxp, const struct store_conf *conf)
{
	struct sq *q = calloc(1, sizeof *q);
	if (!q)
		return ENOMEM;
	q->path = strdup(conf->path);
	if (!q->path) {
		free(q);
		return ENOMEM;
	}
	/* NOMUTEX: the connection is used by one thread at a time (alloc, then the writer) */
	int rc =
	    sqlite3_open_v2(conf->path, &q->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	int err;
	if (rc != SQLITE_OK) {
		err = q->db ? sq_fail(q, "open") : ENOMEM;
		goto out_close;
	}
	sqlite3_busy_timeout(q->db, 5000);
	/*
	 * WAL: readers never block the writer, and a COMMIT is one sequential append.
	 * synchronous=FULL fsyncs the WAL at each COMMIT, so a binding acknowledged
	 * from done survives kill -9 and power loss; group commit pays that fsync once
	 * per batch. NORMAL (by choice) skips it: still safe against kill -9, since
	 * the WAL bytes are in the page cache, but not against power loss.
	 */
	err = sq_exec(q, "PRAGMA journal_mode = WAL");
	if (!err)
		err = sq_exec(q, conf->sync == STORE_SYNC_NORMAL ? "PRAGMA synchronous = NORMAL"
								 : "PRAGMA synchronous = FULL");
	if (!err)
		err = schema_check(q);
	if (!err)
		err = sq_prepare(q,
				 "INSERT OR REPLACE INTO binding (" COLUMNS ") VALUES "
				 "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
				 &q->upsert);
	if (!err)
		err = sq_prepare(q, "DELETE FROM binding WHERE id = ?", &q->del);
	if (!err)
		err = sq_prepare(q, "BEGIN IMMEDIATE", &q->begin);
	if (!err)
		err = sq_prepare(q, "COMMIT", &q->commit);
	if (!err)
		err = sq_prepare(q, "ROLLBACK", &q->rollback);
	if (err)
		goto out_close;
	*ctxp = q;
	return 0;

out_close:
	sq_close(q);
	return err;
}

/* ---- addresses as (raw IP blob, port): no text parsing on reload ----
 * blob: 4 bytes IPv4, 16 bytes IPv6, 20 bytes IPv6 + scope id (link-local) */

static void addr_bind(sqlite3_stmt *st, int col, const struct net_addr *a)
{
	switch (a->u.sa.sa_family) {
	case AF_INET:
		sqlite3_bind_blob(st, col, &a->u.in.sin_addr, 4, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, col + 1, ntohs(a->u.in.sin_port));
		break;
	case AF_INET6: {
		unsigned char raw[20];
		uint32_t scope = a->u.in6.sin6_scope_id;
		memcpy(raw, &a->u.in6.sin6_addr, 16);
		memcpy(raw + 16, &scope, 4);
		sqlite3_bind_blob(st, col, raw, scope ? 20 : 16, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, col + 1, ntohs(a->u.in6.sin6_port));
		break;
	}
	default:
		sqlite3_bind_null(st, col);
		sqlite3_bind_int(st, col + 1, 0);
	}
}

static void addr_column(sqlite3_stmt *st, int col, struct net_addr *a)
{
	const void *p = sqlite3_column_blob(st, col);
	int l = sqlite3_column_bytes(st, col);
	uint16_t port = (uint16_t)sqlite3_column_int(st, col + 1);
	memset(a, 0, sizeof *a);
	if (p && l == 4) {
		a->u.in.sin_family = AF_INET;
		memcpy(&a->u.in.sin_addr, p, 4);
		a->u.in.sin_port = htons(port);
	} else if (p && (l == 16 || l == 20)) {
		a->u.in6.sin6_family = AF_INET6;
		memcpy(&a->u.in6.sin6_addr, p, 16);
		if (l == 20) {
			uint32_t scope;
			memcpy(&scope, (const char *)p + 16, 4);
			a->u.in6.sin6_scope_id = scope;
		}
		a->u.in6.sin6_port = htons(port);
	}
}

static void text_bind(sqlite3_stmt *st, int col, const char *s)
{
	sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int text_column(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const char *p = (const char *)sqlite3_column_text(st, col);
	size_t l = (size_t)sqlite3_column_bytes(st, col);
	return store_field_set(dst, cap, (struct slice){p ? p : "", p ? l : 0});
}

static int row_upsert(struct sq *q, const struct store_binding *b)
{
	sqlite3_stmt *st = q->upsert;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)b->id);
	text_bind(st, 2, b->aor);
	text_bind(st, 3, b->contact);
	text_bind(st, 4, b->instance);
	sqlite3_bind_int64(st, 5, b->reg_id);
	sqlite3_bind_int(st, 6, b->q);
	text_bind(st, 7, b->call_id);
	sqlite3_bind_int64(st, 8, b->cseq);
	sqlite3_bind_int64(st, 9, b->expires_at);
	sqlite3_bind_int64(st, 10, b->registered_at);
	sqlite3_bind_int(st, 11, (int)b->flow.tp);
	sqlite3_bind_int(st, 12, b->flow.listener);
	sqlite3_bind_int64(st, 13, (sqlite3_int64)b->flow.conn_id);
	addr_bind(st, 14, &b->flow.local);
	addr_bind(st, 16, &b->flow.remote);
	text_bind(st, 18, b->path);
	text_bind(st, 19, b->user_agent);
	sqlite3_bind_int(st, 20, b->behind_nat);
	sqlite3_bind_int64(st, 21, b->ka.last_sent);
	sqlite3_bind_int64(st, 22, b->ka.last_answer);
	sqlite3_bind_int64(st, 23, b->ka.failures);
	sqlite3_bind_int(st, 24, b->ka.unreachable);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : sq_note(q, "upsert");
}

static int row_delete(struct sq *q, uint64_t id)
{
	sqlite3_bind_int64(q->del, 1, (sqlite3_int64)id);
	int rc = sqlite3_step(q->del);
	sqlite3_reset(q->del);
	return rc == SQLITE_DONE ? 0 : sq_note(q, "delete");
}

static int stmt_run(struct sq *q, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int err = rc == SQLITE_DONE ? 0 : sq_note(q, what);
	sqlite3_reset(st);
	return err;
}

static int sq_write(void *ctx, const struct store_job *jobs, size_t *rows)
{
	struct sq *q = ctx;
	size_t n = 0;
	int err = stmt_run(q, q->begin, "begin");
	if (err)
		return err;
	for (const struct store_job *j = jobs; j && !err; j = j->next) {
		for (size_t i = 0; i < j->nrows && !err; i++) {
			const struct store_row *r = &j->rows[i];
			err = r->del ? row_delete(q, r->b.id) : row_upsert(q, &r->b);
			n++;
		}
	}
	if (!err)
		err = stmt_run(q, q->commit, "commit");
	if (err) {
		/* nothing of the batch is durable; memory undoes it (see store.h) */
		if (!sqlite3_get_autocommit(q->db)) {
			sqlite3_step(q->rollback);
			sqlite3_reset(q->rollback);
		}
		return err;
	}
	*rows = n;
	return 0;
}

static int row_read(sqlite3_stmt *st, struct store_binding *b)
{
	memset(b, 0, sizeof *b);
	b->id = (uint64_t)sqlite3_column_int64(st, 0);
	int err = text_column(st, 1, b->aor, sizeof b->aor);
	err = err ? err : text_column(st, 2, b->contact, sizeof b->contact);
	err = err ? err : text_column(st, 3, b->instance, sizeof b->instance);
	err = err ? err : text_column(st, 6, b->call_id, sizeof b->call_id);
	err = err ? err : text_column(st, 17, b->path, sizeof b->path);
	err = err ? err : text_column(st, 18, b->user_agent, sizeof b->user_agent);
	if (err)
		return err;
	b->reg_id = (uint32_t)sqlite3_column_int64(st, 4);
	b->q = (uint16_t)sqlite3_column_int(st, 5);
	b->cseq = (uint32_t)sqlite3_column_int64(st, 7);
	b->expires_at = sqlite3_column_int64(st, 8);
	b->registered_at = sqlite3_column_int64(st, 9);
	b->flow.tp = (enum net_transport)sqlite3_column_int(st, 10);
	b->flow.listener = (uint16_t)sqlite3_column_int(st, 11);
	b->flow.conn_id = (uint64_t)sqlite3_column_int64(st, 12);
	addr_column(st, 13, &b->flow.local);
	addr_column(st, 15, &b->flow.remote);
	b->behind_nat = sqlite3_column_int(st, 19) != 0;
	b->ka.last_sent = sqlite3_column_int64(st, 20);
	b->ka.last_answer = sqlite3_column_int64(st, 21);
	b->ka.failures = (uint32_t)sqlite3_column_int64(st, 22);
	b->ka.unreachable = sqlite3_column_int(st, 23) != 0;
	return 0;
}

static int sq_load(void *ctx, int64_t now, store_load_h *h, void *arg, uint64_t *max_id)
{
	struct sq *q = ctx;
	sqlite3_stmt *st = NULL;
	int err = 0;

	/* the max over all rows, expired ones included, so that no id comes back */
	if (sqlite3_prepare_v2(q->db, "SELECT COALESCE(MAX(id), 0) FROM binding", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(q, "max id");
	*max_id = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);

	if (sqlite3_prepare_v2(q->db, "DELETE FROM binding WHERE expires_at <= ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(q, "prepare purge");
	sqlite3_bind_int64(st, 1, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		err = sq_fail(q, "purge");
	sqlite3_finalize(st);
	if (err)
		return err;

	if (sqlite3_prepare_v2(q->db, "SELECT " COLUMNS " FROM binding", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(q, "prepare load");
	size_t skipped = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && !err) {
		struct store_binding b;
		if (row_read(st, &b)) {
			skipped++;
			continue;
		}
		err = h(&b, arg);
	}
	if (!err && rc != SQLITE_DONE)
		err = sq_fail(q, "load");
	sqlite3_finalize(st);
	if (skipped)
		LOG_W("store", "%s: skipped %zu rows with oversized fields", q->path, skipped);
	return err;
}

const struct store_backend_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .load = sq_load,
    .write = sq_write,
    .errmsg = sq_errmsg,
    .close = sq_close,
};
