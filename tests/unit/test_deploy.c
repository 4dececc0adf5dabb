/*
 * Unit tests of the deployment rules: the exponential fit recovers a known decay, and planning
 * against a real store (temporary SQLite file) applies the defaults, the format gate and the
 * refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "deploy.h"
#include "restart.h"
#include "test_db.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_fit_recovers_decay(void **state)
{
    (void)state;
    /* pct(t) = 80 * exp(-0.1 t), sampled every 2 s from the origin. */
    hf_tail_sample s[12];
    int64_t origin = 1000000;
    for (int i = 0; i < 12; i++) {
        s[i].t = origin + i * 2000;
        s[i].pct = 80.0 * exp(-0.1 * i * 2);
    }
    deploy_fit f;
    deploy_fit_tail(s, 12, origin, 2.0, &f);
    assert_true(f.ok);
    assert_true(fabs(f.rate_per_s - 0.1) < 1e-6);
    assert_true(fabs(f.half_life_s - log(2) / 0.1) < 1e-4);
    /* 80 e^{-0.1 t} = 2  =>  t = 10 ln 40 = 36.89 s */
    assert_true(llabs(f.eta_ms - (origin + 36889)) < 5);

    /* Samples before the origin and zero samples are ignored; a flat tail has no fit. */
    for (int i = 0; i < 12; i++) {
        s[i].pct = 10;
    }
    deploy_fit_tail(s, 12, origin, 2.0, &f);
    assert_false(f.ok);
    deploy_fit_tail(s, 2, origin, 2.0, &f);
    assert_false(f.ok);
}

struct fx {
    test_db db;
    hf_store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    test_db_create(&f->db);
    assert_int_equal(store_open(f->db.url, &f->st, NULL), HF_OK);
    hf_proxy_group g = {.name = "edge", .listener_port = 10000};
    assert_int_equal(store_group_create(f->st, "t", &g, NULL), HF_OK);
    hf_service s;
    hf_service_defaults(&s);
    strcpy(s.name, "cart");
    strcpy(s.proxy_group, "edge");
    strcpy(s.affinity.cookie_name, "c");
    s.affinity.ttl_s = 1800;
    assert_int_equal(store_service_create(f->st, "t", &s, NULL), HF_OK);
    const char *fleets[2][2] = {{"blue", "v3"}, {"green", "v4"}};
    for (int i = 0; i < 2; i++) {
        hf_fleet fl = {.role = HF_ROLE_STANDBY};
        strcpy(fl.service, "cart");
        strcpy(fl.name, fleets[i][0]);
        strcpy(fl.session_format, fleets[i][1]);
        assert_int_equal(store_fleet_create(f->st, "t", &fl, NULL), HF_OK);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    test_db_destroy(&f->db);
    free(f);
    return 0;
}

static deploy_plan_input plan_in(void)
{
    deploy_plan_input in = {.lead_s = -1, .tail_threshold_pct = -1, .deadline_factor = -1};
    strcpy(in.service, "cart");
    strcpy(in.to_fleet, "green");
    return in;
}

static void add_green_endpoint(hf_store *st)
{
    hf_endpoint e;
    hf_endpoint_defaults(&e);
    strcpy(e.service, "cart");
    strcpy(e.fleet, "green");
    strcpy(e.address, "127.0.0.1");
    e.port = 9000;
    assert_int_equal(store_endpoint_create(st, "t", &e, NULL), HF_OK);
}

static void test_plan_rules(void **state)
{
    struct fx *f = *state;
    deploy_plan_input in = plan_in();
    hf_deployment dep;
    hf_detail d = {0};
    /* green has no endpoints yet */
    assert_int_equal(deploy_plan(f->st, "t", &in, &dep, &d), HF_EINVAL);
    assert_string_equal(d.field, "to_fleet");
    add_green_endpoint(f->st);

    in.lead_s = 60; /* shorter than the 1800 s TTL */
    assert_int_equal(deploy_plan(f->st, "t", &in, &dep, &d), HF_EINVAL);
    assert_string_equal(d.field, "lead_s");
    in.lead_s = -1;
    in.lowered_ttl_s = 3600;
    assert_int_equal(deploy_plan(f->st, "t", &in, &dep, &d), HF_EINVAL);
    assert_string_equal(d.field, "lowered_ttl_s");
    in.lowered_ttl_s = 0;

    assert_int_equal(deploy_plan(f->st, "t", &in, &dep, &d), HF_OK);
    assert_int_equal(dep.state, HF_DEP_PLANNED);
    assert_string_equal(dep.from_fleet, "blue");
    assert_int_equal(dep.lowered_ttl_s, 300);
    assert_int_equal(dep.lead_s, 3600); /* 2 x the normal TTL */
    assert_true(dep.format_change);     /* v3 -> v4, not declared compatible */
    assert_true(dep.tail_threshold_pct == 1.0);
    assert_non_null(strstr(dep.warnings, "session format"));
    assert_int_equal(strncmp(dep.id, "d-", 2), 0);

    /* one running deployment per service, and no rolling restart meanwhile: the one "busy"
     * check answers first, naming what runs, before any planning */
    assert_int_equal(deploy_plan(f->st, "t", &in, &dep, &d), HF_ECONFLICT);
    assert_string_equal(d.field, "service");
    assert_non_null(strstr(d.message, dep.id));
    assert_int_equal(store_service_busy(f->st, "cart", &d), HF_ECONFLICT);
    assert_int_equal(store_service_busy(f->st, "nope", &d), HF_ENOTFOUND);
    restart_plan_input rin = {.avg_connection_s = 60, .max_disconnect_pct = 0.001};
    hf_restart r;
    /* a budget no plan can meet would be 422: busy (409) comes first */
    assert_int_equal(restart_start(f->st, "t", "cart", "blue", &rin, "", &r, &d), HF_ECONFLICT);

    /* cutover before lowering the TTL is refused with the reason */
    deploy_action_args a = {0};
    hf_deployment out;
    assert_int_equal(deploy_act(f->st, "t", dep.id, DEPLOY_CUTOVER, &a, &out, &d), HF_ECONFLICT);
    assert_non_null(strstr(d.message, "ttl_lowered"));
    assert_int_equal(deploy_act(f->st, "t", dep.id, DEPLOY_LOWER_TTL, &a, &out, &d), HF_OK);
    hf_service svc;
    assert_int_equal(store_service_get(f->st, "cart", &svc, NULL), HF_OK);
    assert_int_equal(hf_service_ttl_in_force(&svc), 300);
    assert_int_equal(deploy_act(f->st, "t", dep.id, DEPLOY_ABORT, &a, &out, &d), HF_OK);
    assert_int_equal(out.state, HF_DEP_ABORTED);
    assert_int_equal(store_service_get(f->st, "cart", &svc, NULL), HF_OK);
    assert_int_equal(hf_service_ttl_in_force(&svc), 1800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit_recovers_decay),
        cmocka_unit_test_setup_teardown(test_plan_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
