/*
 * `holdfast db copy`: moves an installation from a SQLite file to an empty PostgreSQL database.
 * Both are first opened as stores (so both are migrated to this build's schema), then every
 * table of the SQLite file - whatever tables the migrations made - is copied with COPY, parents
 * before children (by the file's foreign keys), in one PostgreSQL transaction; rows a migration
 * seeded (counters) are replaced by the file's, the tables' own triggers are off while their rows
 * arrive (the copied revisions stay as they were), the identity sequences are moved past the
 * copied ids, and the row counts of every table are compared.
 */
#include "store_internal.h"
#include "store_pg.h"

#include "buf.h"
#include "xalloc.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TABLES 64

struct copy {
    sqlite3 *src;
    PGconn *dst;
    char *tables[MAX_TABLES];
    size_t n;
    hf_detail *d;
};

static int pg_ok(struct copy *c, PGresult *r, const char *what)
{
    ExecStatusType t = PQresultStatus(r);
    bool ok = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK || t == PGRES_COPY_IN;
    if (!ok) {
        hf_fail(c->d, HF_EDB, "", "%s: %s", what, PQerrorMessage(c->dst));
    }
    return ok ? HF_OK : HF_EDB;
}

/* Whether every table referenced by table's foreign keys is already in the first n. */
static bool parents_placed(struct copy *c, const char *table, size_t n)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT \"table\" FROM pragma_foreign_key_list('%s')", table);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->src, sql, -1, &s, NULL) != SQLITE_OK) {
        return true;
    }
    bool ok = true;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        const char *parent = (const char *)sqlite3_column_text(s, 0);
        bool found = strcmp(parent, table) == 0;
        for (size_t i = 0; !found && i < n; i++) {
            found = strcmp(c->tables[i], parent) == 0;
        }
        ok = found;
    }
    sqlite3_finalize(s);
    return ok;
}

/* The source's tables, parents first. */
static int list_tables(struct copy *c)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->src,
                           "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite_%' ORDER BY name",
                           -1, &s, NULL) != SQLITE_OK) {
        return hf_fail(c->d, HF_EDB, "", "cannot list tables: %s", sqlite3_errmsg(c->src));
    }
    char *all[MAX_TABLES];
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n < MAX_TABLES) {
        all[n++] = xstrdup((const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    for (size_t round = 0; round < n && c->n < n; round++) {
        for (size_t i = 0; i < n; i++) {
            if (all[i] != NULL && parents_placed(c, all[i], c->n)) {
                c->tables[c->n++] = all[i];
                all[i] = NULL;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(all[i]);
    }
    return HF_OK;
}

static int64_t pg_count(struct copy *c, const char *table)
{
    char *id = PQescapeIdentifier(c->dst, table, strlen(table));
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", id ? id : "?");
    PQfreemem(id);
    PGresult *r = PQexec(c->dst, sql);
    int64_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

static int64_t lite_count(struct copy *c, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table);
    sqlite3_stmt *s;
    int64_t n = -1;
    if (sqlite3_prepare_v2(c->src, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return n;
}

/* Appends one value in COPY's text format. */
static void copy_value(hf_buf *b, sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        hf_buf_puts(b, "\\N");
        return;
    case SQLITE_INTEGER:
        hf_buf_printf(b, "%lld", (long long)sqlite3_column_int64(s, col));
        return;
    case SQLITE_FLOAT:
        hf_buf_printf(b, "%.17g", sqlite3_column_double(s, col));
        return;
    default:
        break;
    }
    const char *t = (const char *)sqlite3_column_text(s, col);
    for (; t != NULL && *t != '\0'; t++) {
        const char *esc = *t == '\\'   ? "\\\\"
                          : *t == '\t' ? "\\t"
                          : *t == '\n' ? "\\n"
                          : *t == '\r' ? "\\r"
                                       : NULL;
        if (esc != NULL) {
            hf_buf_puts(b, esc);
        } else {
            hf_buf_append(b, t, 1);
        }
    }
}

/* Copies one table's rows with COPY FROM STDIN. */
static int copy_table(struct copy *c, const char *table)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", table);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->src, sql, -1, &s, NULL) != SQLITE_OK) {
        return hf_fail(c->d, HF_EDB, "", "cannot read %s: %s", table, sqlite3_errmsg(c->src));
    }
    int ncol = sqlite3_column_count(s);
    hf_buf b = {0};
    hf_buf_printf(&b, "DELETE FROM \"%s\"; ALTER TABLE \"%s\" DISABLE TRIGGER USER; COPY \"%s\" (",
                  table, table, table);
    for (int i = 0; i < ncol; i++) {
        hf_buf_printf(&b, "%s\"%s\"", i ? ", " : "", sqlite3_column_name(s, i));
    }
    hf_buf_puts(&b, ") FROM STDIN");
    PGresult *r = PQexec(c->dst, b.data);
    int rc = pg_ok(c, r, table);
    PQclear(r);
    int step = SQLITE_DONE;
    while (rc == HF_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        b.len = 0;
        for (int i = 0; i < ncol; i++) {
            if (i > 0) {
                hf_buf_puts(&b, "\t");
            }
            copy_value(&b, s, i);
        }
        hf_buf_puts(&b, "\n");
        if (PQputCopyData(c->dst, b.data, (int)b.len) != 1) {
            rc = hf_fail(c->d, HF_EDB, "", "copying %s: %s", table, PQerrorMessage(c->dst));
        }
    }
    if (rc == HF_OK && step != SQLITE_DONE) {
        rc = hf_fail(c->d, HF_EDB, "", "reading %s: %s", table, sqlite3_errmsg(c->src));
    }
    if (PQputCopyEnd(c->dst, rc == HF_OK ? NULL : "aborted") == 1) {
        while ((r = PQgetResult(c->dst)) != NULL) {
            if (rc == HF_OK) {
                rc = pg_ok(c, r, table);
            }
            PQclear(r);
        }
    }
    sqlite3_finalize(s);
    if (rc == HF_OK) {
        b.len = 0;
        hf_buf_printf(&b, "ALTER TABLE \"%s\" ENABLE TRIGGER USER", table);
        r = PQexec(c->dst, b.data);
        rc = pg_ok(c, r, table);
        PQclear(r);
    }
    hf_buf_destroy(&b);
    return rc;
}

/* Moves every identity sequence past the largest copied id. */
static int advance_sequences(struct copy *c)
{
    PGresult *r = PQexec(c->dst, "SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = current_schema() AND column_default LIKE "
                                 "'nextval%'");
    int rc = pg_ok(c, r, "listing sequences");
    for (int i = 0; rc == HF_OK && i < PQntuples(r); i++) {
        char sql[400];
        snprintf(sql, sizeof(sql),
                 "SELECT setval(pg_get_serial_sequence('\"%s\"', '%s'), m) FROM (SELECT "
                 "max(\"%s\") AS m FROM \"%s\") x WHERE m IS NOT NULL",
                 PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 1),
                 PQgetvalue(r, i, 0));
        PGresult *q = PQexec(c->dst, sql);
        rc = pg_ok(c, q, "advancing a sequence");
        PQclear(q);
    }
    PQclear(r);
    return rc;
}

/* The destination must never have been used: no audit event, group or token (a migration may
 * have seeded bookkeeping rows, which the copy replaces). */
static int check_empty(struct copy *c)
{
    static const char *const used[] = {"events", "proxy_groups", "tokens"};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++) {
        int64_t n = pg_count(c, used[i]);
        if (n != 0) {
            return hf_fail(c->d, HF_ECONFLICT, "",
                           "the destination is not empty (%s has %lld rows); copy into a new "
                           "database",
                           used[i], (long long)n);
        }
    }
    return HF_OK;
}

static int copy_all(struct copy *c, FILE *out)
{
    int rc = check_empty(c);
    PGresult *r = NULL;
    if (rc == HF_OK) {
        r = PQexec(c->dst, "BEGIN; SELECT pg_advisory_xact_lock(" STORE_PG_KEY_WRITE ")");
        rc = pg_ok(c, r, "BEGIN");
        PQclear(r);
    }
    for (size_t i = 0; rc == HF_OK && i < c->n; i++) {
        rc = copy_table(c, c->tables[i]);
    }
    if (rc == HF_OK) {
        rc = advance_sequences(c);
    }
    r = PQexec(c->dst, rc == HF_OK ? "COMMIT" : "ROLLBACK");
    if (rc == HF_OK) {
        rc = pg_ok(c, r, "COMMIT");
    }
    PQclear(r);
    for (size_t i = 0; rc == HF_OK && i < c->n; i++) {
        int64_t a = lite_count(c, c->tables[i]), b = pg_count(c, c->tables[i]);
        if (a != b) {
            rc = hf_fail(c->d, HF_EDB, "", "%s: %lld rows in the source, %lld copied", c->tables[i],
                         (long long)a, (long long)b);
        } else if (out != NULL) {
            fprintf(out, "%-20s %lld rows\n", c->tables[i], (long long)b);
        }
    }
    return rc;
}

int store_copy(const char *from, const char *to, FILE *out, hf_detail *d)
{
    if (store__is_pg_target(from) || access(from, R_OK) != 0) {
        return hf_fail(d, HF_EINVAL, "from", "--from must be an existing SQLite file: %s", from);
    }
    if (!store__is_pg_target(to)) {
        return hf_fail(d, HF_EINVAL, "to", "--to must be a postgresql:// URL");
    }
    /* Both migrated to this build's schema, so that the tables match. */
    hf_store *st = NULL;
    int rc = store_open(from, &st, d);
    store_close(st);
    if (rc == HF_OK) {
        rc = store_open(to, &st, d);
        store_close(st);
    }
    if (rc != HF_OK) {
        return rc;
    }
    struct copy c = {.d = d};
    char err[256];
    if (sqlite3_open_v2(from, &c.src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = hf_fail(d, HF_EDB, "", "cannot open %s: %s", from, sqlite3_errmsg(c.src));
    } else if ((c.dst = store__pg_connect(to, err, sizeof(err))) == NULL) {
        rc = hf_fail(d, HF_EDB, "", "cannot connect to PostgreSQL: %s", err);
    }
    if (rc == HF_OK) {
        rc = list_tables(&c);
    }
    if (rc == HF_OK) {
        rc = copy_all(&c, out);
    }
    for (size_t i = 0; i < c.n; i++) {
        free(c.tables[i]);
    }
    PQfinish(c.dst);
    sqlite3_close(c.src);
    return rc;
}
