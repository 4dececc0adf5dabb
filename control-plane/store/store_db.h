/*
 * The store's database driver: the few operations the store needs of a SQL engine (connect,
 * run a script, prepare, bind, step, read columns, transactions, schema version), with one
 * implementation per backend - SQLite (store_sqlite.c) and PostgreSQL (store_pg.c). Store code
 * above this line is written once, against the sql_* calls below, which keep SQLite's shapes
 * (1-based parameters, 0-based columns, step until SQL_DONE), so that code written against the
 * SQLite API ports textually (scripts/store-port.sed).
 *
 * Statements are written in SQLite's dialect with numbered parameters (?1, ?2, ...); the
 * PostgreSQL driver rewrites them ($1, $2, ...). Schema scripts are translated too (see
 * store__pg_translate_ddl). Nothing outside control-plane/store includes this.
 */
#ifndef HF_STORE_DB_H
#define HF_STORE_DB_H

#include "hf_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store_conn store_conn;
typedef struct store_stmt store_stmt;

enum { SQL_DONE = 0, SQL_ROW = 1 };

/* What a backend implements. Every function is called with the store's lock held (one thread
 * at a time per connection). Errors are HF_EDB (HF_ECONFLICT for a constraint violation) and
 * errmsg() says why. */
typedef struct store_backend {
    const char *name; /* "sqlite" or "postgresql" */
    bool shared;      /* several holdfast processes may use one database */
    int (*open)(const char *target, store_conn **out, hf_detail *d);
    void (*close)(store_conn *c);
    /* Runs a script of ';'-separated statements written in SQLite's dialect. */
    int (*exec_script)(store_conn *c, const char *sql, hf_detail *d);
    /* Runs a script in the backend's own dialect, untranslated (NULL for SQLite). */
    int (*exec_native)(store_conn *c, const char *sql, hf_detail *d);
    /* Write transactions are serialised across every process using the database. */
    int (*begin)(store_conn *c);
    /* A read-only transaction that sees one consistent state (ended with commit, NULL). */
    int (*begin_read)(store_conn *c);
    /* announce: when not NULL, every process using the database is notified of the commit,
     * with this text (the committing replica) as the payload. */
    int (*commit)(store_conn *c, const char *announce);
    void (*rollback)(store_conn *c);
    /* The schema version (0 for an empty database), and setting it inside a transaction. */
    int (*get_version)(store_conn *c, int *out);
    int (*set_version)(store_conn *c, int version);
    int (*prepare)(store_conn *c, const char *sql, store_stmt **out, hf_detail *d);
    void (*finalize)(store_stmt *s);
    void (*bind_int64)(store_stmt *s, int i, int64_t v);
    void (*bind_double)(store_stmt *s, int i, double v);
    void (*bind_text)(store_stmt *s, int i, const char *v);
    void (*bind_null)(store_stmt *s, int i);
    int (*step)(store_stmt *s); /* SQL_ROW, SQL_DONE, or HF_EDB / HF_ECONFLICT */
    void (*reset)(store_stmt *s);
    int64_t (*column_int64)(store_stmt *s, int col);
    double (*column_double)(store_stmt *s, int col);
    const char *(*column_text)(store_stmt *s, int col); /* NULL for NULL; valid until step */
    int64_t (*changes)(store_conn *c);                  /* rows changed by the last statement */
    int64_t (*last_insert_id)(store_conn *c);
    const char *(*errmsg)(store_conn *c);
    const char *(*sql)(store_stmt *s);
} store_backend;

/* The header every backend's statement starts with. */
struct store_stmt {
    const store_backend *be;
};

extern const store_backend store__sqlite_backend;
extern const store_backend store__pg_backend;

/* Whether a --db target names a PostgreSQL database (postgresql:// or postgres:// URL). */
bool store__is_pg_target(const char *target);

/* ---- the calls store code uses (thin dispatch to the statement's backend) ---- */
void sql_bind_int64(store_stmt *s, int i, int64_t v);
void sql_bind_int(store_stmt *s, int i, int v);
void sql_bind_double(store_stmt *s, int i, double v);
/* The text is copied. */
void sql_bind_text(store_stmt *s, int i, const char *v);
void sql_bind_null(store_stmt *s, int i);
int sql_step(store_stmt *s);
void sql_reset(store_stmt *s);
int64_t sql_column_int64(store_stmt *s, int col);
int sql_column_int(store_stmt *s, int col);
double sql_column_double(store_stmt *s, int col);
const char *sql_column_text(store_stmt *s, int col);

/* ---- PostgreSQL dialect helpers (store_pg_sql.c), pure functions ---- */
/* Rewrites ?N (and bare ?, numbered in order) to $N outside string literals. Returns a heap
 * string; *nparams receives the highest parameter number. */
char *store__pg_translate_params(const char *sql, int *nparams);
/* Translates a SQLite DDL script to PostgreSQL: INTEGER PRIMARY KEY [AUTOINCREMENT] becomes
 * BIGSERIAL PRIMARY KEY, INTEGER BIGINT, REAL DOUBLE PRECISION, TEXT TEXT COLLATE "C" (so that
 * ORDER BY sorts bytes as SQLite does). Returns a heap string. */
char *store__pg_translate_ddl(const char *sql);

#endif
