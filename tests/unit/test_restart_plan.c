/*
 * Unit tests of the rolling-restart planner against the seed's example (10 % of the fleet every
 * 5 minutes, 30-60 minute connections, a 30-minute max connection age bounding the drain) and
 * the edge cases: one endpoint, a budget smaller than one endpoint, a large fleet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "restart_plan.h"

#include <string.h>

static void test_seed_example(void **state)
{
    (void)state;
    /* 20 instances, connections of 30-60 min (mean 45), max age 30 min, 10 % budget. */
    restart_plan_input in = {.endpoints = 20,
                             .avg_connection_s = 45 * 60,
                             .max_connection_age_s = 30 * 60,
                             .drain_timeout_s = 30,
                             .max_disconnect_pct = 10,
                             .restart_s = 60};
    restart_plan p;
    hf_detail d = {0};
    assert_int_equal(restart_plan_compute(&in, &p, &d), HF_OK);
    assert_int_equal(p.batch_size, 2); /* 10 % of the fleet */
    assert_int_equal(p.batches, 10);
    assert_true(p.disconnect_pct <= 10.0 + 1e-9);
    assert_int_equal(p.drain_window_s, 30 * 60 + 30); /* bounded by the max age */
    /* a batch about every 5 minutes, as in the seed */
    assert_true(p.interval_s >= 4 * 60 && p.interval_s <= 6 * 60);
    /* the last instance is done after about an hour (the seed's "an hour"), not hours */
    assert_true(p.total_s >= 55 * 60 && p.total_s <= 85 * 60);
    assert_non_null(strstr(p.explanation, "max connection age"));

    /* Without a max age the same fleet drains for three mean lengths per batch: far longer. */
    in.max_connection_age_s = 0;
    assert_int_equal(restart_plan_compute(&in, &p, &d), HF_OK);
    assert_true(p.total_s > 3 * 3600);
    assert_non_null(strstr(p.explanation, "Set a max connection age"));
}

static void test_edges(void **state)
{
    (void)state;
    restart_plan p;
    hf_detail d = {0};
    restart_plan_input one = {.endpoints = 1, .avg_connection_s = 600, .max_disconnect_pct = 5};
    assert_int_equal(restart_plan_compute(&one, &p, &d), HF_EINVAL);
    assert_string_equal(d.field, "max_disconnect_pct");
    assert_non_null(strstr(d.message, "100.0 %"));

    restart_plan_input small = {.endpoints = 10, .avg_connection_s = 600, .max_disconnect_pct = 5};
    assert_int_equal(restart_plan_compute(&small, &p, &d), HF_EINVAL);
    assert_non_null(strstr(d.message, "at least 10.0"));
    small.max_disconnect_pct = 10;
    assert_int_equal(restart_plan_compute(&small, &p, &d), HF_OK);
    assert_int_equal(p.batch_size, 1);
    assert_int_equal(p.batches, 10);

    restart_plan_input big = {.endpoints = 1000,
                              .avg_connection_s = 1800,
                              .max_connection_age_s = 1800,
                              .drain_timeout_s = 30,
                              .max_disconnect_pct = 5};
    assert_int_equal(restart_plan_compute(&big, &p, &d), HF_OK);
    assert_int_equal(p.batch_size, 50);
    assert_int_equal(p.batches, 20);
    assert_int_equal(p.concurrent_batches, 12); /* 60 % of the fleet at once */

    restart_plan_input bad = {.endpoints = 10, .avg_connection_s = 600, .max_disconnect_pct = 20};
    assert_int_equal(restart_plan_compute(&bad, &p, &d), HF_EINVAL);
    bad.max_disconnect_pct = 5;
    bad.avg_connection_s = 0;
    assert_int_equal(restart_plan_compute(&bad, &p, &d), HF_EINVAL);
    assert_string_equal(d.field, "avg_connection_s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_example),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
