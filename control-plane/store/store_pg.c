/*
 * The PostgreSQL backend of the store's driver (store_db.h), on libpq.
 *
 * One session per store. Statements are written in SQLite's dialect and translated once
 * ($N parameters), prepared on the session, and re-prepared after a reconnect. Parameters are
 * sent as text and typed by the server from their context. Every write transaction first takes
 * a transaction-scoped advisory lock, so write transactions are serialised across every replica
 * exactly as SQLite serialises writers (BEGIN IMMEDIATE): the store's read-check-write
 * transactions keep their meaning, and event ids are assigned in commit order.
 *
 * A lost session is re-established on the next use (at most one attempt a second, each bounded
 * by connect_timeout); meanwhile calls fail with HF_EDB "database unavailable". A read outside a
 * transaction that finds the session lost is retried once on a new one. A transaction whose
 * session is lost is lost with it: the caller gets an error, never an acknowledgement.
 */
#include "store_db.h"

#include "log.h"
#include "timeutil.h"
#include "xalloc.h"

#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store_conn {
    PGconn *pg;
    uint64_t epoch; /* incremented by every (re)connection: statements re-prepare */
    bool in_tx;
    int64_t changes;
    int64_t next_attempt_ms;
    int next_name;
    char err[512];
};

typedef struct pg_stmt {
    store_stmt base;
    store_conn *c;
    char name[24];
    char *sql; /* translated */
    int nparams;
    char **values; /* nparams, heap strings or NULL */
    uint64_t prepared_epoch;
    PGresult *res;
    int row, nrows;
    bool executed;
} pg_stmt;

static void set_err(store_conn *c, const char *what, const char *msg)
{
    snprintf(c->err, sizeof(c->err), "%s%s%s", what, msg && msg[0] ? ": " : "", msg ? msg : "");
    size_t n = strlen(c->err);
    while (n > 0 && (c->err[n - 1] == '\n' || c->err[n - 1] == ' ')) {
        c->err[--n] = '\0';
    }
}

static bool healthy(store_conn *c)
{
    return c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
}

/* Session settings: bound every statement and lock wait, so that a hung server or a stuck
 * writer elsewhere turns into an error rather than a hang. */
static int session_setup(store_conn *c)
{
    PGresult *r = PQexec(c->pg, "SET statement_timeout = 10000; SET lock_timeout = 10000; "
                                "SET idle_in_transaction_session_timeout = 30000");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        set_err(c, "cannot configure the database session", PQerrorMessage(c->pg));
    }
    PQclear(r);
    return ok ? HF_OK : HF_EDB;
}

/* Makes sure the session is up; reconnects at most once a second. */
static int ensure(store_conn *c)
{
    if (healthy(c)) {
        return HF_OK;
    }
    if (c->in_tx) {
        /* Never continue a transaction on a new session: its first part is gone. */
        set_err(c, "database unavailable", "the session was lost in a transaction");
        return HF_EDB;
    }
    int64_t now = hf_mono_ns() / 1000000;
    if (now < c->next_attempt_ms) {
        set_err(c, "database unavailable", "reconnecting");
        return HF_EDB;
    }
    c->next_attempt_ms = now + 1000;
    PQreset(c->pg);
    if (!healthy(c)) {
        set_err(c, "database unavailable", PQerrorMessage(c->pg));
        return HF_EDB;
    }
    c->epoch++;
    hf_info("store", "reconnected to PostgreSQL");
    return session_setup(c);
}

static void pg_close(store_conn *c)
{
    if (c == NULL) {
        return;
    }
    PQfinish(c->pg);
    free(c);
}

/* Connection keywords added to the target: bounded connects, TCP keepalives and a TCP user
 * timeout, so that a dead server or a partition is noticed within seconds. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    hf_debug("store", "PostgreSQL: %s", message);
}

static PGconn *connect_target(const char *target)
{
    const char *keys[] = {"dbname",           "connect_timeout",     "keepalives",
                          "keepalives_idle",  "keepalives_interval", "keepalives_count",
                          "tcp_user_timeout", "application_name",    NULL};
    const char *vals[] = {target, "3", "1", "2", "1", "3", "5000", "holdfast", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    PQsetNoticeProcessor(pg, quiet_notice, NULL);
    return pg;
}

PGconn *store__pg_connect(const char *target, char *err, size_t len)
{
    PGconn *pg = connect_target(target);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, len, "%s", PQerrorMessage(pg));
        size_t n = strlen(err);
        while (n > 0 && err[n - 1] == '\n') {
            err[--n] = '\0';
        }
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static int pg_exec_script(store_conn *c, const char *sql, hf_detail *d);

static int pg_open(const char *target, store_conn **out, hf_detail *d)
{
    store_conn *c = xcalloc(1, sizeof(*c));
    c->pg = connect_target(target);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        set_err(c, "", PQerrorMessage(c->pg));
        int rc = hf_fail(d, HF_EDB, "", "cannot connect to PostgreSQL%s", c->err);
        pg_close(c);
        return rc;
    }
    c->epoch = 1;
    int rc = session_setup(c);
    if (rc == HF_OK) {
        /* The version table, created once even when several replicas start together. */
        rc = pg_exec_script(c,
                            "SELECT pg_advisory_lock(" STORE_PG_KEY_SETUP ");"
                            "CREATE TABLE IF NOT EXISTS holdfast_schema (id int PRIMARY KEY "
                            "CHECK (id = 1), version int NOT NULL, changes bigint NOT NULL);"
                            "INSERT INTO holdfast_schema VALUES (1, 0, 0) ON CONFLICT DO NOTHING;"
                            "SELECT pg_advisory_unlock(" STORE_PG_KEY_SETUP ");",
                            d);
    }
    if (rc != HF_OK) {
        pg_close(c);
        return rc;
    }
    *out = c;
    return HF_OK;
}

/* Runs SQL with the simple protocol (several statements allowed); HF_OK when the last result
 * is a success. */
static int simple(store_conn *c, const char *sql, const char *what)
{
    if (ensure(c) != HF_OK) {
        return HF_EDB;
    }
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType t = PQresultStatus(r);
    int rc = HF_OK;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        set_err(c, what, PQerrorMessage(c->pg));
        rc = HF_EDB;
    } else if (strcmp(what, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        set_err(c, "COMMIT", "the transaction was rolled back");
        rc = HF_EDB;
    }
    PQclear(r);
    return rc;
}

static int pg_exec_script(store_conn *c, const char *sql, hf_detail *d)
{
    char *pgsql = store__pg_translate_ddl(sql);
    int rc = simple(c, pgsql, "SQL failed");
    if (rc != HF_OK) {
        hf_fail(d, HF_EDB, "", "SQL failed (%.60s...): %s", sql, c->err);
    }
    free(pgsql);
    return rc;
}

static int pg_begin(store_conn *c)
{
    int rc = simple(c, "BEGIN; SELECT pg_advisory_xact_lock(" STORE_PG_KEY_WRITE ")", "BEGIN");
    if (rc != HF_OK && healthy(c)) {
        simple(c, "ROLLBACK", "ROLLBACK");
    }
    c->in_tx = rc == HF_OK;
    return rc;
}

static int pg_begin_read(store_conn *c)
{
    int rc = simple(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "BEGIN");
    c->in_tx = rc == HF_OK;
    return rc;
}

static int pg_exec_native(store_conn *c, const char *sql, hf_detail *d)
{
    int rc = simple(c, sql, "SQL failed");
    if (rc != HF_OK) {
        hf_fail(d, HF_EDB, "", "SQL failed (%.60s...): %s", sql, c->err);
    }
    return rc;
}

static int pg_commit(store_conn *c, const char *announce)
{
    int rc = HF_OK;
    if (announce != NULL) {
        /* "c ..." is a configuration change: the safety net's counter moves too. */
        char *lit = PQescapeLiteral(c->pg, announce, strlen(announce));
        char sql[256];
        snprintf(sql, sizeof(sql), "%sSELECT pg_notify('holdfast_change', %s)",
                 announce[0] == 'c' ? "UPDATE holdfast_schema SET changes = changes + 1; " : "",
                 lit ? lit : "''");
        PQfreemem(lit);
        rc = simple(c, sql, "announce");
    }
    if (rc == HF_OK) {
        rc = simple(c, "COMMIT", "COMMIT");
    }
    c->in_tx = false;
    return rc;
}

static void pg_rollback(store_conn *c)
{
    if (healthy(c)) {
        PGresult *r = PQexec(c->pg, "ROLLBACK");
        PQclear(r);
    }
    c->in_tx = false;
}

static int pg_get_version(store_conn *c, int *out)
{
    if (ensure(c) != HF_OK) {
        return HF_EDB;
    }
    PGresult *r = PQexec(c->pg, "SELECT version FROM holdfast_schema WHERE id = 1");
    int rc = HF_EDB;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *out = atoi(PQgetvalue(r, 0, 0));
        rc = HF_OK;
    } else {
        set_err(c, "cannot read the schema version", PQerrorMessage(c->pg));
    }
    PQclear(r);
    return rc;
}

static int pg_set_version(store_conn *c, int version)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "UPDATE holdfast_schema SET version = %d WHERE id = 1", version);
    return simple(c, sql, "cannot set the schema version");
}

/* Prepares p on the session. A parameter whose type the server cannot infer (as in
 * "?1 IS NULL OR name = ?1", SQLite's idiom for an optional filter) is declared text and the
 * statement prepared again. */
static int pg_prepare_now(pg_stmt *p)
{
    store_conn *c = p->c;
    Oid types[64] = {0};
    int ntypes = p->nparams < 64 ? p->nparams : 64;
    for (int attempt = 0; attempt <= ntypes; attempt++) {
        PGresult *r = PQprepare(c->pg, p->name, p->sql, ntypes, types);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        int n = 0;
        bool untyped =
            !ok && state != NULL && (strcmp(state, "42P08") == 0 || strcmp(state, "42P18") == 0) &&
            msg != NULL && sscanf(msg, "could not determine data type of parameter $%d", &n) == 1 &&
            n >= 1 && n <= ntypes && types[n - 1] == 0;
        if (!ok && !untyped) {
            set_err(c, "cannot prepare", PQerrorMessage(c->pg));
        }
        PQclear(r);
        if (ok) {
            p->prepared_epoch = c->epoch;
            return HF_OK;
        }
        if (!untyped) {
            return HF_EDB;
        }
        types[n - 1] = 25; /* text */
    }
    return HF_EDB;
}

static int pg_prepare(store_conn *c, const char *sql, store_stmt **out, hf_detail *d)
{
    pg_stmt *p = xcalloc(1, sizeof(*p));
    p->base.be = &store__pg_backend;
    p->c = c;
    snprintf(p->name, sizeof(p->name), "hf%d", c->next_name++);
    p->sql = store__pg_translate_params(sql, &p->nparams);
    p->values = xcalloc((size_t)p->nparams + 1, sizeof(char *));
    int rc = pg_prepare_now(p);
    if (rc != HF_OK) {
        hf_fail(d, HF_EDB, "", "cannot prepare (%.60s): %s", p->sql, c->err);
        free(p->values);
        free(p->sql);
        free(p);
        return rc;
    }
    *out = &p->base;
    return HF_OK;
}

static void clear_values(pg_stmt *p)
{
    for (int i = 0; i < p->nparams; i++) {
        free(p->values[i]);
        p->values[i] = NULL;
    }
}

static void pg_reset(store_stmt *s)
{
    pg_stmt *p = (pg_stmt *)s;
    PQclear(p->res);
    p->res = NULL;
    p->executed = false;
    p->row = -1;
    p->nrows = 0;
    clear_values(p);
}

static void pg_finalize(store_stmt *s)
{
    if (s == NULL) {
        return;
    }
    pg_stmt *p = (pg_stmt *)s;
    pg_reset(s);
    if (healthy(p->c) && p->prepared_epoch == p->c->epoch) {
        char sql[48];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", p->name);
        PQclear(PQexec(p->c->pg, sql));
    }
    free(p->values);
    free(p->sql);
    free(p);
}

static void set_value(store_stmt *s, int i, char *v)
{
    pg_stmt *p = (pg_stmt *)s;
    if (i < 1 || i > p->nparams) {
        free(v);
        return;
    }
    free(p->values[i - 1]);
    p->values[i - 1] = v;
}

static void pg_bind_int64(store_stmt *s, int i, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    set_value(s, i, xstrdup(buf));
}

static void pg_bind_double(store_stmt *s, int i, double v)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%.17g", v);
    set_value(s, i, xstrdup(buf));
}

static void pg_bind_text(store_stmt *s, int i, const char *v)
{
    set_value(s, i, xstrdup(v));
}

static void pg_bind_null(store_stmt *s, int i)
{
    set_value(s, i, NULL);
}

/* Executes the bound statement once; retried once on a new session when the session was lost
 * outside a transaction. */
static int execute(pg_stmt *p)
{
    store_conn *c = p->c;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure(c) != HF_OK) {
            return HF_EDB;
        }
        if (p->prepared_epoch != c->epoch && pg_prepare_now(p) != HF_OK) {
            if (!healthy(c) && !c->in_tx) {
                continue;
            }
            return HF_EDB;
        }
        p->res = PQexecPrepared(c->pg, p->name, p->nparams, (const char *const *)p->values, NULL,
                                NULL, 0);
        ExecStatusType t = PQresultStatus(p->res);
        if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK) {
            p->nrows = t == PGRES_TUPLES_OK ? PQntuples(p->res) : 0;
            const char *n = PQcmdTuples(p->res);
            c->changes = n[0] ? atoll(n) : 0;
            return HF_OK;
        }
        const char *state = PQresultErrorField(p->res, PG_DIAG_SQLSTATE);
        set_err(c, healthy(c) ? "" : "database unavailable", PQerrorMessage(c->pg));
        bool constraint = state != NULL && strncmp(state, "23", 2) == 0;
        PQclear(p->res);
        p->res = NULL;
        if (constraint) {
            return HF_ECONFLICT;
        }
        if (healthy(c) || c->in_tx) {
            return HF_EDB;
        }
    }
    return HF_EDB;
}

static int pg_step(store_stmt *s)
{
    pg_stmt *p = (pg_stmt *)s;
    if (!p->executed) {
        p->executed = true;
        p->row = -1;
        int rc = execute(p);
        if (rc != HF_OK) {
            return rc;
        }
    }
    if (p->res == NULL) {
        return HF_EDB;
    }
    if (p->row + 1 < p->nrows) {
        p->row++;
        return SQL_ROW;
    }
    p->row = p->nrows;
    return SQL_DONE;
}

static const char *value(store_stmt *s, int col)
{
    pg_stmt *p = (pg_stmt *)s;
    if (p->res == NULL || p->row < 0 || p->row >= p->nrows || col >= PQnfields(p->res) ||
        PQgetisnull(p->res, p->row, col)) {
        return NULL;
    }
    return PQgetvalue(p->res, p->row, col);
}

static int64_t pg_column_int64(store_stmt *s, int col)
{
    const char *v = value(s, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static double pg_column_double(store_stmt *s, int col)
{
    const char *v = value(s, col);
    return v ? strtod(v, NULL) : 0;
}

static const char *pg_column_text(store_stmt *s, int col)
{
    return value(s, col);
}

static int64_t pg_changes(store_conn *c)
{
    return c->changes;
}

static int64_t pg_last_insert_id(store_conn *c)
{
    PGresult *r = PQexec(c->pg, "SELECT lastval()");
    int64_t id = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return id;
}

static const char *pg_errmsg(store_conn *c)
{
    return c->err;
}

static const char *pg_sql(store_stmt *s)
{
    return ((pg_stmt *)s)->sql;
}

const store_backend store__pg_backend = {
    .name = "postgresql",
    .shared = true,
    .open = pg_open,
    .close = pg_close,
    .exec_script = pg_exec_script,
    .begin = pg_begin,
    .begin_read = pg_begin_read,
    .exec_native = pg_exec_native,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .get_version = pg_get_version,
    .set_version = pg_set_version,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .reset = pg_reset,
    .column_int64 = pg_column_int64,
    .column_double = pg_column_double,
    .column_text = pg_column_text,
    .changes = pg_changes,
    .last_insert_id = pg_last_insert_id,
    .errmsg = pg_errmsg,
    .sql = pg_sql,
};
