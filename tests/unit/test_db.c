/*
 * Test databases for the store's unit tests: SQLite files or PostgreSQL databases (test_db.h).
 */
#include "test_db.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "test_db: %s: %s\n", what, msg);
    abort();
}

bool test_db_is_pg(void)
{
    return getenv("HF_TEST_PG_DIR") != NULL && getenv("HF_TEST_PG_PORT") != NULL;
}

static void pg_url(char *buf, size_t len, const char *db)
{
    snprintf(buf, len, "postgresql://postgres@/%s?host=%s&port=%s", db, getenv("HF_TEST_PG_DIR"),
             getenv("HF_TEST_PG_PORT"));
}

/* Runs sql on database db; returns the first value of the first row (static buffer) or "". */
static const char *pg_exec(const char *db, const char *sql)
{
    static char out[64];
    char url[512];
    pg_url(url, sizeof(url), db);
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        die("connect", PQerrorMessage(c));
    }
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        die(sql, PQerrorMessage(c));
    }
    snprintf(out, sizeof(out), "%s",
             st == PGRES_TUPLES_OK && PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return out;
}

void test_db_create(test_db *t)
{
    static int counter;
    memset(t, 0, sizeof(*t));
    t->pg = test_db_is_pg();
    if (t->pg) {
        snprintf(t->name, sizeof(t->name), "hf_test_%d_%d", (int)getpid(), counter++);
        char sql[160];
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", t->name);
        pg_exec("postgres", sql);
        pg_url(t->url, sizeof(t->url), t->name);
        return;
    }
    snprintf(t->dir, sizeof(t->dir), "/tmp/hf-store-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        die("mkdtemp", t->dir);
    }
    snprintf(t->url, sizeof(t->url), "%s/test.db", t->dir);
}

void test_db_destroy(test_db *t)
{
    if (t->pg) {
        char sql[160];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->name);
        pg_exec("postgres", sql);
        return;
    }
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    if (system(cmd) != 0) {
        die("rm", t->dir);
    }
}

static void lite_exec(const char *path, const char *sql, int *out)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        die(sql, sqlite3_errmsg(db));
    }
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        die(sql, sqlite3_errmsg(db));
    }
    if (out != NULL) {
        *out = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
}

int test_db_count(const test_db *t, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    if (t->pg) {
        return atoi(pg_exec(t->name, sql));
    }
    int n = 0;
    lite_exec(t->url, sql, &n);
    return n;
}

void test_db_set_schema_version(const test_db *t, int version)
{
    char sql[128];
    if (t->pg) {
        snprintf(sql, sizeof(sql), "UPDATE holdfast_schema SET version = %d", version);
        pg_exec(t->name, sql);
        return;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    lite_exec(t->url, sql, NULL);
}
