/*
 * Unit tests of the store against a real database (test_db.h): a SQLite file in a temporary
 * folder, or a fresh database in a real PostgreSQL cluster when run under
 * tests/pg/pgcluster.py (the unit.test_store.pg variant): migrations, reopen, newer-schema
 * refusal, constraints and conflicts, and that a refused change changes nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "store.h"
#include "test_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    test_db db;
    char *path; /* db.url */
    hf_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    test_db_create(&f->db);
    f->path = f->db.url;
    hf_detail d = {0};
    if (store_open(f->path, &f->st, &d) != HF_OK) {
        fail_msg("store_open(%s): %s", f->path, d.message);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    test_db_destroy(&f->db);
    free(f);
    return 0;
}

/* The number of rows of a table, read with a separate connection (as another process would). */
static int count_rows(struct fixture *f, const char *table)
{
    return test_db_count(&f->db, table);
}

static void make_group(hf_store *st, const char *name, uint32_t port)
{
    hf_proxy_group g = {.listener_port = port};
    snprintf(g.name, sizeof(g.name), "%s", name);
    assert_int_equal(store_group_create(st, "test", &g, NULL), HF_OK);
}

static void make_service(hf_store *st, const char *name, const char *group, const char *domain)
{
    hf_service s;
    hf_service_defaults(&s);
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.proxy_group, sizeof(s.proxy_group), "%s", group);
    snprintf(s.affinity.cookie_name, sizeof(s.affinity.cookie_name), "hf_%s", name);
    if (domain != NULL) {
        snprintf(s.domains[0], sizeof(s.domains[0]), "%s", domain);
        s.n_domains = 1;
    }
    hf_detail d = {0};
    assert_int_equal(store_service_create(st, "test", &s, &d), HF_OK);
}

static int make_fleet(hf_store *st, const char *service, const char *name, enum hf_fleet_role role,
                      hf_fleet *out)
{
    hf_fleet f = {.role = role};
    snprintf(f.service, sizeof(f.service), "%s", service);
    snprintf(f.name, sizeof(f.name), "%s", name);
    snprintf(f.version, sizeof(f.version), "1.0");
    int rc = store_fleet_create(st, "test", &f, NULL);
    if (out != NULL) {
        *out = f;
    }
    return rc;
}

static int make_endpoint(hf_store *st, const char *service, const char *fleet, uint32_t port)
{
    hf_endpoint e;
    hf_endpoint_defaults(&e);
    snprintf(e.service, sizeof(e.service), "%s", service);
    snprintf(e.fleet, sizeof(e.fleet), "%s", fleet);
    snprintf(e.address, sizeof(e.address), "127.0.0.1");
    e.port = port;
    return store_endpoint_create(st, "test", &e, NULL);
}

static void test_fresh_migration_and_reopen(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_schema_version(f->st), store_schema_latest());
    assert_int_equal(store_ping(f->st), HF_OK);
    make_group(f->st, "edge", 10000);
    store_close(f->st);

    hf_detail d = {0};
    assert_int_equal(store_open(f->path, &f->st, &d), HF_OK);
    hf_proxy_group g;
    assert_int_equal(store_group_get(f->st, "edge", &g, NULL), HF_OK);
    assert_int_equal(g.listener_port, 10000);
    assert_true(g.created_at > 0);

    assert_string_equal(store_backend_name(f->st), f->db.pg ? "postgresql" : "sqlite");
    if (!f->db.pg) {
        /* WAL mode is persistent in the file. */
        char wal[160];
        snprintf(wal, sizeof(wal), "%s-wal", f->path);
        assert_int_equal(access(wal, F_OK), 0);
    }
}

static void test_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    test_db_set_schema_version(&f->db, 999);

    hf_store *st = NULL;
    hf_detail d = {0};
    assert_int_equal(store_open(f->path, &st, &d), HF_ESCHEMA);
    assert_null(st);
    assert_non_null(strstr(d.message, "newer"));
    assert_non_null(strstr(d.message, "999"));
}

static void test_group_conflicts_change_nothing(void **state)
{
    struct fixture *f = *state;
    make_group(f->st, "edge", 10000);
    int events = count_rows(f, "events");

    hf_proxy_group dup = {.name = "edge", .listener_port = 10001};
    hf_detail d = {0};
    assert_int_equal(store_group_create(f->st, "test", &dup, &d), HF_ECONFLICT);
    assert_non_null(strstr(d.message, "already exists"));

    make_service(f->st, "cart", "edge", "cart.example.com");
    events = count_rows(f, "events");
    assert_int_equal(store_group_delete(f->st, "test", "edge", &d), HF_ECONFLICT);
    assert_int_equal(store_group_delete(f->st, "test", "nope", &d), HF_ENOTFOUND);
    assert_int_equal(count_rows(f, "events"), events);
    assert_int_equal(count_rows(f, "proxy_groups"), 1);
    hf_proxy_group g;
    assert_int_equal(store_group_get(f->st, "edge", &g, NULL), HF_OK);
    assert_int_equal(g.listener_port, 10000);
}

static void test_service_constraints(void **state)
{
    struct fixture *f = *state;
    make_group(f->st, "edge", 10000);
    make_group(f->st, "internal", 10001);
    make_service(f->st, "cart", "edge", "cart.example.com");
    int events = count_rows(f, "events");

    hf_service s;
    hf_service_defaults(&s);
    strcpy(s.name, "cart2");
    strcpy(s.proxy_group, "missing");
    strcpy(s.affinity.cookie_name, "c");
    hf_detail d = {0};
    assert_int_equal(store_service_create(f->st, "test", &s, &d), HF_EINVAL);
    assert_string_equal(d.field, "proxy_group");

    /* The same domain twice in one proxy group is a conflict; in another group it is fine. */
    strcpy(s.proxy_group, "edge");
    strcpy(s.domains[0], "cart.example.com");
    s.n_domains = 1;
    assert_int_equal(store_service_create(f->st, "test", &s, &d), HF_ECONFLICT);
    assert_string_equal(d.field, "domains");
    assert_int_equal(count_rows(f, "services"), 1);
    assert_int_equal(count_rows(f, "events"), events);
    strcpy(s.proxy_group, "internal");
    assert_int_equal(store_service_create(f->st, "test", &s, &d), HF_OK);

    /* Duplicate name. */
    assert_int_equal(store_service_create(f->st, "test", &s, &d), HF_ECONFLICT);

    /* Update replaces fields and domains, keeps created_at. */
    hf_service cur;
    assert_int_equal(store_service_get(f->st, "cart", &cur, NULL), HF_OK);
    int64_t created = cur.created_at;
    cur.affinity.ttl_s = 300;
    strcpy(cur.domains[1], "shop.example.com");
    cur.n_domains = 2;
    assert_int_equal(store_service_update(f->st, "test", &cur, &d), HF_OK);
    assert_int_equal(store_service_get(f->st, "cart", &cur, NULL), HF_OK);
    assert_int_equal(cur.affinity.ttl_s, 300);
    assert_int_equal(cur.n_domains, 2);
    assert_string_equal(cur.domains[1], "shop.example.com");
    assert_int_equal(cur.created_at, created);

    hf_service *list;
    size_t n;
    assert_int_equal(store_service_list(f->st, "edge", &list, &n), HF_OK);
    assert_int_equal(n, 1);
    free(list);
    assert_int_equal(store_service_list(f->st, NULL, &list, &n), HF_OK);
    assert_int_equal(n, 2);
    free(list);
}

static void test_fleet_roles(void **state)
{
    struct fixture *f = *state;
    make_group(f->st, "edge", 10000);
    make_service(f->st, "cart", "edge", NULL);
    hf_fleet blue, green;
    /* The first fleet is active whatever was asked. */
    assert_int_equal(make_fleet(f->st, "cart", "blue", HF_ROLE_STANDBY, &blue), HF_OK);
    assert_int_equal(blue.role, HF_ROLE_ACTIVE);
    assert_int_equal(make_fleet(f->st, "cart", "green", HF_ROLE_STANDBY, &green), HF_OK);
    assert_int_equal(green.role, HF_ROLE_STANDBY);
    assert_int_equal(make_fleet(f->st, "cart", "green", HF_ROLE_STANDBY, NULL), HF_ECONFLICT);
    assert_int_equal(make_fleet(f->st, "nope", "x", HF_ROLE_STANDBY, NULL), HF_ENOTFOUND);
    assert_int_equal(make_fleet(f->st, "cart", "x", HF_ROLE_DRAINING, NULL), HF_EINVAL);

    /* The active fleet cannot be demoted or deleted directly. */
    hf_detail d = {0};
    blue.role = HF_ROLE_STANDBY;
    assert_int_equal(store_fleet_update(f->st, "test", &blue, &d), HF_ECONFLICT);
    assert_int_equal(store_fleet_delete(f->st, "test", "cart", "blue", &d), HF_ECONFLICT);
    green.role = HF_ROLE_DRAINING;
    assert_int_equal(store_fleet_update(f->st, "test", &green, &d), HF_EINVAL);

    /* Making green active demotes blue: a hard switch. */
    green.role = HF_ROLE_ACTIVE;
    assert_int_equal(store_fleet_update(f->st, "test", &green, &d), HF_OK);
    assert_int_equal(store_fleet_get(f->st, "cart", "blue", &blue, NULL), HF_OK);
    assert_int_equal(blue.role, HF_ROLE_STANDBY);

    /* A standby fleet is deleted with its endpoints; the service then still has green. */
    assert_int_equal(make_endpoint(f->st, "cart", "blue", 8081), HF_OK);
    assert_int_equal(make_endpoint(f->st, "cart", "blue", 8082), HF_OK);
    assert_int_equal(count_rows(f, "endpoints"), 2);
    assert_int_equal(store_service_delete(f->st, "test", "cart", &d), HF_ECONFLICT);
    assert_int_equal(store_fleet_delete(f->st, "test", "cart", "blue", &d), HF_OK);
    assert_int_equal(count_rows(f, "endpoints"), 0);
}

static void test_endpoints(void **state)
{
    struct fixture *f = *state;
    make_group(f->st, "edge", 10000);
    make_service(f->st, "cart", "edge", NULL);
    assert_int_equal(make_fleet(f->st, "cart", "blue", HF_ROLE_ACTIVE, NULL), HF_OK);
    assert_int_equal(make_fleet(f->st, "cart", "green", HF_ROLE_STANDBY, NULL), HF_OK);
    assert_int_equal(make_endpoint(f->st, "cart", "blue", 8081), HF_OK);
    /* One address:port belongs to one fleet of a service. */
    assert_int_equal(make_endpoint(f->st, "cart", "blue", 8081), HF_ECONFLICT);
    assert_int_equal(make_endpoint(f->st, "cart", "green", 8081), HF_ECONFLICT);
    assert_int_equal(make_endpoint(f->st, "cart", "nope", 8083), HF_ENOTFOUND);

    hf_endpoint e;
    assert_int_equal(store_endpoint_get(f->st, "cart", "blue", "127.0.0.1", 8081, &e, NULL), HF_OK);
    assert_int_equal(e.health, HF_HEALTH_UNKNOWN);
    e.admin_state = HF_ADMIN_DRAINING;
    e.weight = 5;
    assert_int_equal(store_endpoint_update(f->st, "test", &e, NULL), HF_OK);
    hf_endpoint *list;
    size_t n;
    assert_int_equal(store_endpoint_list(f->st, "cart", "blue", &list, &n, NULL), HF_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].admin_state, HF_ADMIN_DRAINING);
    assert_int_equal(list[0].weight, 5);
    free(list);
    assert_int_equal(store_endpoint_delete(f->st, "test", "cart", "blue", "127.0.0.1", 8081, NULL),
                     HF_OK);
    assert_int_equal(store_endpoint_delete(f->st, "test", "cart", "blue", "127.0.0.1", 8081, NULL),
                     HF_ENOTFOUND);
}

struct hook_log {
    int calls;
    uint64_t last;
};

static void on_change(void *arg, uint64_t generation)
{
    struct hook_log *log = arg;
    log->calls++;
    log->last = generation;
}

static void test_change_hook_and_events(void **state)
{
    struct fixture *f = *state;
    struct hook_log log = {0};
    store_set_change_hook(f->st, on_change, &log);
    uint64_t g0 = store_generation(f->st);
    make_group(f->st, "edge", 10000);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.last, g0 + 1);
    hf_proxy_group dup = {.name = "edge", .listener_port = 1};
    assert_int_equal(store_group_create(f->st, "test", &dup, NULL), HF_ECONFLICT);
    assert_int_equal(log.calls, 1); /* nothing committed, nothing announced */

    hf_event *ev;
    size_t n;
    assert_int_equal(store_event_list(f->st, 0, 10, &ev, &n), HF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].actor, "test");
    assert_string_equal(ev[0].action, "proxy_group.create");
    assert_string_equal(ev[0].object, "proxy-groups/edge");
    int64_t first = ev[0].id;
    free(ev);
    assert_int_equal(store_event_list(f->st, first, 10, &ev, &n), HF_OK);
    assert_int_equal(n, 0);
    free(ev);
}

static void test_tokens(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_token_count(f->st), 0);
    hf_token t = {.role = HF_TOKEN_OPERATOR, .name = "ci"};
    assert_int_equal(store_token_create(f->st, "test", "abc123", &t, NULL), HF_OK);
    assert_true(t.id > 0);
    assert_int_equal(store_token_count(f->st), 1);
    hf_token found;
    assert_int_equal(store_token_lookup(f->st, "abc123", &found), HF_OK);
    assert_int_equal(found.role, HF_TOKEN_OPERATOR);
    assert_string_equal(found.name, "ci");
    assert_int_equal(store_token_lookup(f->st, "other", &found), HF_ENOTFOUND);
    /* The same hash twice is refused. */
    assert_int_equal(store_token_create(f->st, "test", "abc123", &t, NULL), HF_ECONFLICT);
    assert_int_equal(store_token_delete(f->st, "test", found.id, NULL), HF_OK);
    assert_int_equal(store_token_delete(f->st, "test", found.id, NULL), HF_ENOTFOUND);
    assert_int_equal(store_token_count(f->st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_migration_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_conflicts_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_hook_and_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
