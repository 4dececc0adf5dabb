/*
 * The database a unit test runs on: a SQLite file in a fresh temporary folder, or - when the
 * test runs under tests/pg/pgcluster.py (HF_TEST_PG_DIR and HF_TEST_PG_PORT set) - a fresh
 * database in that real PostgreSQL cluster. Read with a separate connection, as another
 * process would. Test code only; aborts the test on any failure.
 */
#ifndef HF_TEST_DB_H
#define HF_TEST_DB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct test_db {
    char dir[64];  /* SQLite: the temporary folder */
    char name[64]; /* PostgreSQL: the database */
    char url[512]; /* what store_open takes */
    bool pg;
} test_db;

/* Whether the tests run on PostgreSQL. */
bool test_db_is_pg(void);
/* Creates an empty database. */
void test_db_create(test_db *t);
/* Removes it (the store must be closed). */
void test_db_destroy(test_db *t);
/* SELECT count(*) FROM table. */
int test_db_count(const test_db *t, const char *table);
/* Sets the stored schema version (to test that a newer schema is refused). */
void test_db_set_schema_version(const test_db *t, int version);

#endif
