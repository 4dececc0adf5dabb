/*
 * The SQLite backend of the store's driver (store_db.h): one file, WAL, synchronous=FULL,
 * foreign keys on, a 5 s busy timeout; write transactions are BEGIN IMMEDIATE (one writer at a
 * time, across processes too); the schema version is PRAGMA user_version.
 */
#include "store_db.h"

#include "xalloc.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

struct store_conn {
    sqlite3 *db;
};

typedef struct lite_stmt {
    store_stmt base;
    sqlite3_stmt *s;
    sqlite3 *db;
} lite_stmt;

static sqlite3_stmt *S(store_stmt *s)
{
    return ((lite_stmt *)s)->s;
}

static int lite_exec_script(store_conn *c, const char *sql, hf_detail *d)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = hf_fail(d, HF_EDB, "", "SQL failed (%.60s...): %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return rc;
    }
    return HF_OK;
}

static void lite_close(store_conn *c)
{
    if (c == NULL) {
        return;
    }
    sqlite3_close(c->db);
    free(c);
}

static int lite_open(const char *path, store_conn **out, hf_detail *d)
{
    store_conn *c = xcalloc(1, sizeof(*c));
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        int rc = hf_fail(d, HF_EDB, "", "cannot open database %s: %s", path,
                         c->db ? sqlite3_errmsg(c->db) : "out of memory");
        lite_close(c);
        return rc;
    }
    sqlite3_busy_timeout(c->db, 5000);
    /* synchronous=FULL: a transaction acknowledged to a client survives a power cut too. */
    int rc = lite_exec_script(
        c, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", d);
    if (rc != HF_OK) {
        lite_close(c);
        return rc;
    }
    *out = c;
    return HF_OK;
}

static int lite_begin(store_conn *c)
{
    return sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? HF_OK : HF_EDB;
}

static int lite_begin_read(store_conn *c)
{
    return sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? HF_OK : HF_EDB;
}

static int lite_commit(store_conn *c, const char *announce)
{
    (void)announce; /* one process per file: the change hook is the announcement */
    return sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? HF_OK : HF_EDB;
}

static void lite_rollback(store_conn *c)
{
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static int lite_get_version(store_conn *c, int *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) {
        return HF_EDB;
    }
    int rc = HF_EDB;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = HF_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

static int lite_set_version(store_conn *c, int version)
{
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version);
    return sqlite3_exec(c->db, pragma, NULL, NULL, NULL) == SQLITE_OK ? HF_OK : HF_EDB;
}

static int lite_prepare(store_conn *c, const char *sql, store_stmt **out, hf_detail *d)
{
    lite_stmt *l = xcalloc(1, sizeof(*l));
    l->base.be = &store__sqlite_backend;
    l->db = c->db;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &l->s, NULL) != SQLITE_OK) {
        int rc = hf_fail(d, HF_EDB, "", "cannot prepare (%.60s): %s", sql, sqlite3_errmsg(c->db));
        free(l);
        return rc;
    }
    *out = &l->base;
    return HF_OK;
}

static void lite_finalize(store_stmt *s)
{
    if (s != NULL) {
        sqlite3_finalize(S(s));
        free(s);
    }
}

static void lite_bind_int64(store_stmt *s, int i, int64_t v)
{
    sqlite3_bind_int64(S(s), i, v);
}

static void lite_bind_double(store_stmt *s, int i, double v)
{
    sqlite3_bind_double(S(s), i, v);
}

static void lite_bind_text(store_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(S(s), i, v, -1, SQLITE_TRANSIENT);
}

static void lite_bind_null(store_stmt *s, int i)
{
    sqlite3_bind_null(S(s), i);
}

static int lite_step(store_stmt *s)
{
    int rc = sqlite3_step(S(s));
    if (rc == SQLITE_ROW) {
        return SQL_ROW;
    }
    if (rc == SQLITE_DONE) {
        return SQL_DONE;
    }
    int ext = sqlite3_extended_errcode(((lite_stmt *)s)->db);
    return (ext & 0xff) == SQLITE_CONSTRAINT ? HF_ECONFLICT : HF_EDB;
}

static void lite_reset(store_stmt *s)
{
    sqlite3_reset(S(s));
    sqlite3_clear_bindings(S(s));
}

static int64_t lite_column_int64(store_stmt *s, int col)
{
    return sqlite3_column_int64(S(s), col);
}

static double lite_column_double(store_stmt *s, int col)
{
    return sqlite3_column_double(S(s), col);
}

static const char *lite_column_text(store_stmt *s, int col)
{
    return (const char *)sqlite3_column_text(S(s), col);
}

static int64_t lite_changes(store_conn *c)
{
    return sqlite3_changes(c->db);
}

static int64_t lite_last_insert_id(store_conn *c)
{
    return sqlite3_last_insert_rowid(c->db);
}

static const char *lite_errmsg(store_conn *c)
{
    return sqlite3_errmsg(c->db);
}

static const char *lite_sql(store_stmt *s)
{
    return sqlite3_sql(S(s));
}

const store_backend store__sqlite_backend = {
    .name = "sqlite",
    .shared = false,
    .open = lite_open,
    .close = lite_close,
    .exec_script = lite_exec_script,
    .begin = lite_begin,
    .begin_read = lite_begin_read,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .get_version = lite_get_version,
    .set_version = lite_set_version,
    .prepare = lite_prepare,
    .finalize = lite_finalize,
    .bind_int64 = lite_bind_int64,
    .bind_double = lite_bind_double,
    .bind_text = lite_bind_text,
    .bind_null = lite_bind_null,
    .step = lite_step,
    .reset = lite_reset,
    .column_int64 = lite_column_int64,
    .column_double = lite_column_double,
    .column_text = lite_column_text,
    .changes = lite_changes,
    .last_insert_id = lite_last_insert_id,
    .errmsg = lite_errmsg,
    .sql = lite_sql,
};
