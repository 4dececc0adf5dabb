/*
 * The backend-neutral statement calls (dispatch to the statement's backend) and the pure
 * translations from SQLite's dialect to PostgreSQL's used by the PostgreSQL backend.
 */
#include "store_db.h"

#include "buf.h"
#include "xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool store__is_pg_target(const char *target)
{
    return strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0;
}

void sql_bind_int64(store_stmt *s, int i, int64_t v)
{
    s->be->bind_int64(s, i, v);
}

void sql_bind_int(store_stmt *s, int i, int v)
{
    s->be->bind_int64(s, i, v);
}

void sql_bind_double(store_stmt *s, int i, double v)
{
    s->be->bind_double(s, i, v);
}

void sql_bind_text(store_stmt *s, int i, const char *v)
{
    if (v == NULL) {
        s->be->bind_null(s, i);
    } else {
        s->be->bind_text(s, i, v);
    }
}

void sql_bind_null(store_stmt *s, int i)
{
    s->be->bind_null(s, i);
}

int sql_step(store_stmt *s)
{
    return s->be->step(s);
}

void sql_reset(store_stmt *s)
{
    s->be->reset(s);
}

int64_t sql_column_int64(store_stmt *s, int col)
{
    return s->be->column_int64(s, col);
}

int sql_column_int(store_stmt *s, int col)
{
    return (int)s->be->column_int64(s, col);
}

double sql_column_double(store_stmt *s, int col)
{
    return s->be->column_double(s, col);
}

const char *sql_column_text(store_stmt *s, int col)
{
    return s->be->column_text(s, col);
}

/* ---- PostgreSQL dialect ---- */

char *store__pg_translate_params(const char *sql, int *nparams)
{
    hf_buf b = {0};
    int next = 1, max = 0;
    char quote = 0;
    for (const char *p = sql; *p != '\0'; p++) {
        if (quote != 0) {
            quote = *p == quote ? 0 : quote;
            hf_buf_append(&b, p, 1);
            continue;
        }
        if (*p == '\'' || *p == '"') {
            quote = *p;
            hf_buf_append(&b, p, 1);
            continue;
        }
        if (*p != '?') {
            hf_buf_append(&b, p, 1);
            continue;
        }
        int n = 0;
        while (isdigit((unsigned char)p[1])) {
            n = n * 10 + (p[1] - '0');
            p++;
        }
        if (n == 0) {
            n = next;
        }
        next = n + 1;
        max = n > max ? n : max;
        hf_buf_printf(&b, "$%d", n);
    }
    *nparams = max;
    return hf_buf_take(&b);
}

/* Whether sql[i..] starts with the word w (case-insensitive, word boundaries both sides). */
static bool word_at(const char *sql, size_t i, const char *w)
{
    size_t n = strlen(w);
    if (i > 0 && (isalnum((unsigned char)sql[i - 1]) || sql[i - 1] == '_')) {
        return false;
    }
    if (strncasecmp(sql + i, w, n) != 0) {
        return false;
    }
    return !isalnum((unsigned char)sql[i + n]) && sql[i + n] != '_';
}

char *store__pg_translate_ddl(const char *sql)
{
    static const struct {
        const char *from, *to;
    } words[] = {
        /* longest first */
        {"INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"},
        {"INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"},
        {"INTEGER", "BIGINT"},
        {"REAL", "DOUBLE PRECISION"},
        {"TEXT", "TEXT COLLATE \"C\""},
    };
    hf_buf b = {0};
    char quote = 0;
    for (size_t i = 0; sql[i] != '\0';) {
        if (quote != 0 || sql[i] == '\'' || sql[i] == '"') {
            quote = quote == 0 ? sql[i] : (sql[i] == quote ? 0 : quote);
            hf_buf_append(&b, sql + i, 1);
            i++;
            continue;
        }
        size_t k = 0;
        while (k < sizeof(words) / sizeof(words[0]) && !word_at(sql, i, words[k].from)) {
            k++;
        }
        if (k < sizeof(words) / sizeof(words[0])) {
            hf_buf_printf(&b, "%s", words[k].to);
            i += strlen(words[k].from);
        } else {
            hf_buf_append(&b, sql + i, 1);
            i++;
        }
    }
    return hf_buf_take(&b);
}
