/*
 * What the store does to stay bounded and private (issue 14 items 8 and 10): the audit
 * retention (connect/disconnect rows collapsed per peer, a cap on rows) and the database file
 * created mode 0600.
 */
#include "store_internal.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONN_ACTIONS "('proxy.connect','proxy.disconnect','checker.connect','checker.disconnect')"

/* Events between two counts of the table against the cap. */
#define RECOUNT_EVERY 256

void store_set_audit_retention(hf_store *st, int64_t max_rows)
{
    st->audit_max = max_rows > 0 ? max_rows : STORE_AUDIT_DEFAULT;
}

static bool is_conn_action(const char *action)
{
    return strcmp(action, "proxy.connect") == 0 || strcmp(action, "proxy.disconnect") == 0 ||
           strcmp(action, "checker.connect") == 0 || strcmp(action, "checker.disconnect") == 0;
}

/* Runs one statement with up to one text and one integer parameter (?1, ?2); *changes receives
 * the rows changed, or the first column of the first row for a query. */
static int run(hf_store *st, const char *sql, const char *text, int64_t num, int64_t *out,
               hf_detail *d)
{
    store_stmt *s;
    if (store__prepare(st, sql, &s, NULL) != HF_OK) {
        return hf_fail(d, HF_EDB, "", "cannot prepare %.60s: %s", sql, store__errmsg(st));
    }
    if (text != NULL) {
        sql_bind_text(s, 1, text);
    }
    sql_bind_int64(s, 2, num);
    int rc = sql_step(s);
    if (out != NULL) {
        *out = rc == SQL_ROW ? sql_column_int64(s, 0) : sql_changes(st);
    }
    store__finalize(st, s);
    if (rc != SQL_DONE && rc != SQL_ROW) {
        return hf_fail(d, HF_EDB, "", "audit retention failed: %s", store__errmsg(st));
    }
    return HF_OK;
}

/* Deletes the oldest rows past the cap: connect/disconnect rows first. */
static int prune(hf_store *st, hf_detail *d)
{
    int64_t rows = 0, gone = 0;
    int rc = run(st, "SELECT count(*) FROM events", NULL, 0, &rows, d);
    if (rc != HF_OK || rows <= st->audit_max) {
        return rc;
    }
    int64_t excess = rows - st->audit_max;
    rc = run(st,
             "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE action IN " CONN_ACTIONS
             " ORDER BY id LIMIT ?2)",
             NULL, excess, &gone, d);
    if (rc == HF_OK && gone < excess) {
        rc = run(st, "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?2)",
                 NULL, excess - gone, NULL, d);
    }
    if (rc == HF_OK) {
        hf_debug("store", "audit retention: %lld rows past the cap of %lld deleted",
                 (long long)excess, (long long)st->audit_max);
    }
    return rc;
}

int store__retain(hf_store *st, const char *action, const char *object, hf_detail *d)
{
    int rc = HF_OK;
    if (is_conn_action(action)) {
        rc = run(st,
                 "DELETE FROM events WHERE object = ?1 AND action IN " CONN_ACTIONS
                 " AND id <= (SELECT id FROM events WHERE object = ?1 AND action IN " CONN_ACTIONS
                 " ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                 object, STORE_AUDIT_PER_PEER, NULL, d);
    }
    if (rc == HF_OK && ++st->audit_appends >= RECOUNT_EVERY) {
        st->audit_appends = 0;
        rc = prune(st, d);
    }
    return rc;
}

int store__create_private(const char *path, hf_detail *d)
{
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0) {
        return HF_OK;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        close(fd);
        return HF_OK;
    }
    if (errno != EEXIST) {
        return hf_fail(d, HF_EDB, "", "cannot create database %s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 077) != 0) {
        hf_warn("store", "database %s is readable by others (mode %03o); chmod 600 it", path,
                (unsigned)(sb.st_mode & 0777));
    }
    return HF_OK;
}
