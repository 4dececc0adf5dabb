/*
 * Unit tests of store_input_read (the whole configuration in one read transaction) against a
 * real SQLite file: what it reads, the lookups, and that a later read re-reads exactly the
 * services whose configuration changed, whatever changed it (endpoints, health, fleets, the
 * service row, a service deleted and created again under the same name).
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
    test_db db; /* a SQLite file, or a PostgreSQL database under the .pg variant */
    hf_store *st;
};

static void make_service(hf_store *st, const char *name)
{
    hf_service s;
    hf_service_defaults(&s);
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.proxy_group, sizeof(s.proxy_group), "edge");
    snprintf(s.affinity.cookie_name, sizeof(s.affinity.cookie_name), "hf_%s", name);
    assert_int_equal(store_service_create(st, "test", &s, NULL), HF_OK);
    hf_fleet f = {.role = HF_ROLE_ACTIVE};
    snprintf(f.service, sizeof(f.service), "%s", name);
    snprintf(f.name, sizeof(f.name), "blue");
    assert_int_equal(store_fleet_create(st, "test", &f, NULL), HF_OK);
    const char *addrs[] = {"10.0.0.2", "10.0.0.1", "::1"};
    for (int i = 0; i < 3; i++) {
        hf_endpoint e;
        hf_endpoint_defaults(&e);
        snprintf(e.service, sizeof(e.service), "%s", name);
        snprintf(e.fleet, sizeof(e.fleet), "blue");
        snprintf(e.address, sizeof(e.address), "%s", addrs[i]);
        e.port = 8080;
        assert_int_equal(store_endpoint_create(st, "test", &e, NULL), HF_OK);
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    test_db_create(&f->db);
    assert_int_equal(store_open(f->db.url, &f->st, NULL), HF_OK);
    hf_proxy_group g = {.listener_port = 10000};
    snprintf(g.name, sizeof(g.name), "edge");
    assert_int_equal(store_group_create(f->st, "test", &g, NULL), HF_OK);
    make_service(f->st, "shop");
    make_service(f->st, "cart");
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

static void test_reads_everything(void **state)
{
    struct fixture *f = *state;
    store_input *in;
    assert_int_equal(store_input_read(f->st, NULL, &in, NULL), HF_OK);
    assert_int_equal(in->generation, store_generation(f->st));
    assert_int_equal(in->n_groups, 1);
    assert_int_equal(in->n_services, 2);
    assert_int_equal(in->n_reread, 2);
    assert_string_equal(in->services[0]->svc.name, "cart"); /* by name */
    assert_string_equal(in->services[0]->svc.affinity.cookie_name, "hf_cart");
    assert_int_equal(in->services[0]->n_fleets, 1);
    assert_int_equal(in->services[0]->n_endpoints, 3);
    assert_string_equal(in->services[0]->endpoints[0].address, "10.0.0.1"); /* by address */
    assert_string_equal(in->services[0]->deployment, "");
    const hf_endpoint *e = store_input_endpoint(in, "shop", "::1", 8080);
    assert_non_null(e);
    assert_string_equal(e->service, "shop");
    assert_null(store_input_endpoint(in, "shop", "::1", 8081));
    assert_null(store_input_endpoint(in, "nope", "::1", 8080));
    assert_non_null(store_input_service_find(in, "cart"));
    store_input_free(in);
}

/* Reads again after a change; returns the new input (prev is freed). */
static store_input *reread(struct fixture *f, store_input *prev, size_t want_reread)
{
    store_input *in;
    assert_int_equal(store_input_read(f->st, prev, &in, NULL), HF_OK);
    assert_int_equal(in->n_reread, want_reread);
    store_input_free(prev);
    return in;
}

static void test_rereads_what_changed(void **state)
{
    struct fixture *f = *state;
    store_input *in;
    assert_int_equal(store_input_read(f->st, NULL, &in, NULL), HF_OK);
    in = reread(f, in, 0); /* nothing changed */
    const store_input_service *shop = store_input_service_find(in, "shop");

    hf_endpoint e = *store_input_endpoint(in, "cart", "10.0.0.2", 8080);
    e.weight = 7;
    assert_int_equal(store_endpoint_update(f->st, "test", &e, NULL), HF_OK);
    in = reread(f, in, 1);
    assert_ptr_equal(store_input_service_find(in, "shop"), shop); /* shared */
    assert_int_equal(store_input_endpoint(in, "cart", "10.0.0.2", 8080)->weight, 7);

    hf_health_change c = {.port = 8080, .health = HF_HEALTH_UNHEALTHY};
    snprintf(c.service, sizeof(c.service), "shop");
    snprintf(c.address, sizeof(c.address), "::1");
    assert_int_equal(store_health_apply(f->st, NULL, 0, &c, 1, NULL), HF_OK);
    in = reread(f, in, 1);
    assert_int_equal(store_input_endpoint(in, "shop", "::1", 8080)->health, HF_HEALTH_UNHEALTHY);

    hf_service s = store_input_service_find(in, "cart")->svc;
    s.affinity.ttl_s = 60;
    assert_int_equal(store_service_update(f->st, "test", &s, NULL), HF_OK);
    in = reread(f, in, 1);
    assert_int_equal(store_input_service_find(in, "cart")->svc.affinity.ttl_s, 60);

    hf_fleet fl = {.role = HF_ROLE_STANDBY};
    snprintf(fl.service, sizeof(fl.service), "shop");
    snprintf(fl.name, sizeof(fl.name), "green");
    assert_int_equal(store_fleet_create(f->st, "test", &fl, NULL), HF_OK);
    in = reread(f, in, 1);
    assert_int_equal(store_input_service_find(in, "shop")->n_fleets, 2);
    store_input_free(in);
}

/* A service deleted and created again under the same name (SQLite may give it the same row id)
 * is read afresh. */
static void test_recreated_service_is_reread(void **state)
{
    struct fixture *f = *state;
    hf_service s;
    hf_service_defaults(&s);
    snprintf(s.name, sizeof(s.name), "tmp");
    snprintf(s.proxy_group, sizeof(s.proxy_group), "edge");
    snprintf(s.affinity.cookie_name, sizeof(s.affinity.cookie_name), "hf_tmp");
    assert_int_equal(store_service_create(f->st, "test", &s, NULL), HF_OK);
    store_input *in;
    assert_int_equal(store_input_read(f->st, NULL, &in, NULL), HF_OK);
    int64_t id = store_input_service_find(in, "tmp")->id;
    assert_int_equal(store_service_delete(f->st, "test", "tmp", NULL), HF_OK);
    s.affinity.ttl_s = 42;
    assert_int_equal(store_service_create(f->st, "test", &s, NULL), HF_OK);
    in = reread(f, in, 1);
    const store_input_service *t = store_input_service_find(in, "tmp");
    assert_int_equal(t->svc.affinity.ttl_s, 42);
    (void)id; /* the same id or not: either way it was read again */
    store_input_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rereads_what_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recreated_service_is_reread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
