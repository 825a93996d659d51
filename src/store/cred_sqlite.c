/* Credentials, SQLite backend: the credential table in the [store] file, and its change counter. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/store_int.h"

struct cq {
	sqlite3 *db;
	sqlite3_stmt *put, *del, *all, *version, *data_version;
	int64_t seen_data, seen_ver; /* -1 = never read */
	char *path;		     /* for log lines */
};

/*
 * One row per user and realm; the password itself is never stored. The realm
 * is NOCASE like a host name. credential_version counts changes to the table
 * (triggers, so that any writer, the sqlite3 shell included, moves it): the
 * binding writer commits to the same file all the time, and PRAGMA
 * data_version alone would reload the users after every REGISTER batch.
 */
static const char cred_schema[] =
    "CREATE TABLE IF NOT EXISTS credential ("
    " user TEXT NOT NULL, realm TEXT NOT NULL COLLATE NOCASE,"
    " ha1_md5 TEXT NOT NULL DEFAULT '', ha1_sha256 TEXT NOT NULL DEFAULT '',"
    " ha1_sha512_256 TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (user, realm));"
    "CREATE TABLE IF NOT EXISTS credential_version (v INTEGER NOT NULL);"
    "INSERT INTO credential_version SELECT 0 WHERE NOT EXISTS"
    " (SELECT 1 FROM credential_version);"
    "CREATE TRIGGER IF NOT EXISTS credential_ins AFTER INSERT ON credential"
    " BEGIN UPDATE credential_version SET v = v + 1; END;"
    "CREATE TRIGGER IF NOT EXISTS credential_upd AFTER UPDATE ON credential"
    " BEGIN UPDATE credential_version SET v = v + 1; END;"
    "CREATE TRIGGER IF NOT EXISTS credential_del AFTER DELETE ON credential"
    " BEGIN UPDATE credential_version SET v = v + 1; END;";

static int cq_fail(struct cq *q, const char *what)
{
	LOG_E("store", "%s: credentials: %s: %s", q->path, what, sqlite3_errmsg(q->db));
	return EIO;
}

static void cq_close(void *ctx)
{
	struct cq *q = ctx;
	if (!q)
		return;
	sqlite3_finalize(q->put);
	sqlite3_finalize(q->del);
	sqlite3_finalize(q->all);
	sqlite3_finalize(q->version);
	sqlite3_finalize(q->data_version);
	sqlite3_close(q->db);
	free(q->path);
	free(q);
}

static int cq_prepare(struct cq *q, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		return cq_fail(q, "prepare");
	return 0;
}

static int cq_open(void **ctxp, const char *path)
{
	struct cq *q = calloc(1, sizeof *q);
	if (!q)
		return ENOMEM;
	q->seen_data = q->seen_ver = -1;
	q->path = strdup(path);
	if (!q->path) {
		free(q);
		return ENOMEM;
	}
	int err = 0;
	if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		err = q->db ? cq_fail(q, "open") : ENOMEM;
		goto out_close;
	}
	sqlite3_busy_timeout(q->db, 5000);
	char *msg = NULL;
	/* WAL as the binding store has it: the watcher's reads never block its writer */
	if (sqlite3_exec(q->db, "PRAGMA journal_mode = WAL", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(q->db, cred_schema, NULL, NULL, &msg) != SQLITE_OK) {
		LOG_E("store", "%s: credentials schema: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		err = EIO;
		goto out_close;
	}
	err = cq_prepare(q,
			 "INSERT OR REPLACE INTO credential (user, realm, ha1_md5, ha1_sha256,"
			 " ha1_sha512_256) VALUES (?,?,?,?,?)",
			 &q->put);
	err = err ? err
		  : cq_prepare(q, "DELETE FROM credential WHERE user = ? AND realm = ?", &q->del);
	err = err ? err
		  : cq_prepare(q,
			       "SELECT user, realm, ha1_md5, ha1_sha256, ha1_sha512_256"
			       " FROM credential",
			       &q->all);
	err = err ? err : cq_prepare(q, "SELECT v FROM credential_version", &q->version);
	err = err ? err : cq_prepare(q, "PRAGMA data_version", &q->data_version);
	if (err)
		goto out_close;
	*ctxp = q;
	return 0;
out_close:
	cq_close(q);
	return err;
}

static int read_int(struct cq *q, sqlite3_stmt *st, int64_t *v)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : cq_fail(q, "read version");
}

static int cq_changed(void *ctx, bool *changed)
{
	struct cq *q = ctx;
	*changed = false;
	int64_t dv, v;
	int err = read_int(q, q->data_version, &dv);
	if (err || dv == q->seen_data)
		return err; /* nobody else committed to the file: the common case, one cheap read */
	q->seen_data = dv;
	if ((err = read_int(q, q->version, &v)))
		return err;
	*changed = v != q->seen_ver;
	q->seen_ver = v;
	return 0;
}

static int cq_load(void *ctx, store_cred_load_h *h, void *arg)
{
	struct cq *q = ctx;
	int rc, err = 0;
	while (!err && (rc = sqlite3_step(q->all)) == SQLITE_ROW) {
		struct store_cred_entry e;
		memset(&e, 0, sizeof e);
		for (int a = 0; a < STORE_CRED_ALGS; a++) {
			const unsigned char *t = sqlite3_column_text(q->all, 2 + a);
			if (t && strlen((const char *)t) < sizeof e.ha1[a])
				memcpy(e.ha1[a], t, strlen((const char *)t) + 1);
		}
		const unsigned char *u = sqlite3_column_text(q->all, 0);
		const unsigned char *r = sqlite3_column_text(q->all, 1);
		if (u && r)
			err = h((const char *)u, (const char *)r, &e, arg);
	}
	if (!err && rc != SQLITE_DONE)
		err = cq_fail(q, "load");
	sqlite3_reset(q->all);
	return err;
}

static int cq_put(void *ctx, const char *user, const char *realm, const struct store_cred_entry *e)
{
	struct cq *q = ctx;
	sqlite3_bind_text(q->put, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(q->put, 2, realm, -1, SQLITE_STATIC);
	for (int a = 0; a < STORE_CRED_ALGS; a++)
		sqlite3_bind_text(q->put, 3 + a, e->ha1[a], -1, SQLITE_STATIC);
	int rc = sqlite3_step(q->put);
	sqlite3_reset(q->put);
	sqlite3_clear_bindings(q->put);
	return rc == SQLITE_DONE ? 0 : cq_fail(q, "write");
}

static int cq_del(void *ctx, const char *user, const char *realm)
{
	struct cq *q = ctx;
	sqlite3_bind_text(q->del, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(q->del, 2, realm, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q->del);
	sqlite3_reset(q->del);
	sqlite3_clear_bindings(q->del);
	if (rc != SQLITE_DONE)
		return cq_fail(q, "delete");
	return sqlite3_changes(q->db) ? 0 : ENOENT;
}

const struct store_cred_backend_ops store_cred_sqlite_ops = {
    .name = "sqlite",
    .open = cq_open,
    .changed = cq_changed,
    .load = cq_load,
    .put = cq_put,
    .del = cq_del,
    .close = cq_close,
};
