/*
 * Unit tests of the store driver's SQLite-to-PostgreSQL translations (store_db.h): parameters
 * and DDL, on the statement shapes the store uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "store_db.h"

#include <stdlib.h>
#include <string.h>

static void check_params(const char *in, const char *want, int want_n)
{
    int n = -1;
    char *out = store__pg_translate_params(in, &n);
    assert_string_equal(out, want);
    assert_int_equal(n, want_n);
    free(out);
}

static void test_params(void **state)
{
    (void)state;
    check_params("SELECT 1", "SELECT 1", 0);
    check_params("UPDATE t SET a = ?2 WHERE id = ?1", "UPDATE t SET a = $2 WHERE id = $1", 2);
    check_params("VALUES(?1, ?17, ?17, ?18)", "VALUES($1, $17, $17, $18)", 18);
    check_params("a = ? AND b = ?", "a = $1 AND b = $2", 2);
    /* Not in literals or quoted names. */
    check_params("x = '?1' AND \"q?\" = ?1", "x = '?1' AND \"q?\" = $1", 1);
    check_params("e.address || ':' || e.port = ?3", "e.address || ':' || e.port = $3", 3);
}

static void check_ddl(const char *in, const char *want)
{
    char *out = store__pg_translate_ddl(in);
    assert_string_equal(out, want);
    free(out);
}

static void test_ddl(void **state)
{
    (void)state;
    check_ddl("id INTEGER PRIMARY KEY,", "id BIGSERIAL PRIMARY KEY,");
    check_ddl("id INTEGER PRIMARY KEY AUTOINCREMENT,", "id BIGSERIAL PRIMARY KEY,");
    check_ddl("port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535)",
              "port BIGINT NOT NULL CHECK (port BETWEEN 1 AND 65535)");
    check_ddl("pct REAL NOT NULL", "pct DOUBLE PRECISION NOT NULL");
    check_ddl("name TEXT NOT NULL UNIQUE", "name TEXT COLLATE \"C\" NOT NULL UNIQUE");
    /* Words inside names and literals stay. */
    check_ddl("summary_text TEXT, CHECK (k IN ('TEXT','REAL'))",
              "summary_text TEXT COLLATE \"C\", CHECK (k IN ('TEXT','REAL'))");
    check_ddl("ALTER TABLE s ADD COLUMN n integer NOT NULL DEFAULT 0;",
              "ALTER TABLE s ADD COLUMN n BIGINT NOT NULL DEFAULT 0;");
}

static void test_targets(void **state)
{
    (void)state;
    assert_true(store__is_pg_target("postgresql://u@h:5432/db"));
    assert_true(store__is_pg_target("postgres://u@/db?host=/tmp"));
    assert_false(store__is_pg_target("./holdfast.db"));
    assert_false(store__is_pg_target("postgresql.db"));
    assert_false(store__is_pg_target(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_ddl),
        cmocka_unit_test(test_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
