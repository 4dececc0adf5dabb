/* Unit tests of the metrics registry: label values escaped for the text format, the cap on
 * series with its "other" series, retiring series, histogram buckets, handles that stay the
 * same, the call-per-update API, and exact counts under concurrent updates from threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int teardown(void **state)
{
    (void)state;
    hf_metrics_free_all();
    return 0;
}

/* Whether the exposition holds line (a whole line). */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') {
            return true;
        }
    }
    return false;
}

static void test_values_are_escaped(void **state)
{
    (void)state;
    hf_metric *m = hf_metric_get(HF_METRIC_COUNTER, "t_escaped_total", "Escaping.", "a,b", 0);
    const char *v[] = {"say \"hi\"\\now", "line\nbreak"};
    hf_series_add(hf_metric_series(m, v), 3);
    char *text = hf_metrics_render();
    assert_true(
        has_line(text, "t_escaped_total{a=\"say \\\"hi\\\"\\\\now\",b=\"line\\nbreak\"} 3"));
    assert_true(has_line(text, "# TYPE t_escaped_total counter"));
    free(text);
}

static void test_cap_folds_into_other(void **state)
{
    (void)state;
    hf_metric *m = hf_metric_get(HF_METRIC_COUNTER, "t_capped_total", "Capped.", "method", 3);
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof(name), "M%d", i);
        const char *v[] = {name};
        hf_series_add(hf_metric_series(m, v), 1);
    }
    assert_int_equal(hf_metric_series_count(m), 4); /* three plus "other" */
    char *text = hf_metrics_render();
    assert_true(has_line(text, "t_capped_total{method=\"M2\"} 1"));
    assert_true(has_line(text, "t_capped_total{method=\"other\"} 97"));
    assert_null(strstr(text, "M3\""));
    assert_true(
        has_line(text, "holdfast_metrics_series_overflow_total{metric=\"t_capped_total\"} 97"));
    free(text);
}

static bool keep_b(const char *const *values, void *arg)
{
    (void)arg;
    return strcmp(values[1], "b") == 0;
}

static void test_retire(void **state)
{
    (void)state;
    hf_metric *m = hf_metric_get(HF_METRIC_GAUGE, "t_tail_pct", "Tail.", "service,deployment", 2);
    const char *a[] = {"cart", "a"}, *b[] = {"cart", "b"}, *c[] = {"cart", "c"};
    hf_series_set(hf_metric_series(m, a), 1.5);
    hf_series *sb = hf_metric_series(m, b);
    hf_series_set(sb, 2.5);
    assert_ptr_equal(hf_metric_series(m, b), sb); /* the same handle every time */
    hf_metric_retire_unless(m, keep_b, NULL);
    assert_int_equal(hf_metric_series_count(m), 1);
    hf_series_set(hf_metric_series(m, c), 4); /* the retired one's place is free again */
    char *text = hf_metrics_render();
    assert_null(strstr(text, "deployment=\"a\""));
    assert_true(has_line(text, "t_tail_pct{service=\"cart\",deployment=\"b\"} 2.5"));
    assert_true(has_line(text, "t_tail_pct{service=\"cart\",deployment=\"c\"} 4"));
    assert_null(strstr(text, "other"));
    free(text);
}

static void test_histogram_is_cumulative(void **state)
{
    (void)state;
    hf_metric *m = hf_metric_get(HF_METRIC_HISTOGRAM, "t_seconds", "Latency.", "route", 0);
    const char *v[] = {"/x"};
    hf_series *s = hf_metric_series(m, v);
    hf_series_observe(s, 0.0001);
    hf_series_observe(s, 0.003);
    hf_series_observe(s, 60);
    char *text = hf_metrics_render();
    assert_true(has_line(text, "t_seconds_bucket{route=\"/x\",le=\"0.0005\"} 1"));
    assert_true(has_line(text, "t_seconds_bucket{route=\"/x\",le=\"0.005\"} 2"));
    assert_true(has_line(text, "t_seconds_bucket{route=\"/x\",le=\"10\"} 2"));
    assert_true(has_line(text, "t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3"));
    assert_true(has_line(text, "t_seconds_count{route=\"/x\"} 3"));
    assert_true(has_line(text, "t_seconds_sum{route=\"/x\"} 60.003100000"));
    free(text);
}

static void test_call_per_update_api(void **state)
{
    (void)state;
    hf_counter_add("t_legacy_total", "Legacy.", "type=\"cds\"", 2);
    hf_counter_add("t_legacy_total", "Legacy.", "type=\"cds\"", 3);
    hf_counter_add("t_legacy_total", "Legacy.", "", 1);
    hf_gauge_set("t_legacy_gauge", "Legacy.", "", 7.25);
    char *text = hf_metrics_render();
    assert_true(has_line(text, "t_legacy_total{type=\"cds\"} 5"));
    assert_true(has_line(text, "t_legacy_total{} 1"));
    assert_true(has_line(text, "t_legacy_gauge{} 7.25"));
    free(text);
}

#define THREADS 4
#define PER_THREAD 20000

static void *hammer(void *arg)
{
    hf_metric *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        const char *v[] = {i % 2 ? "odd" : "even"};
        hf_series_add(hf_metric_series(m, v), 1);
        hf_counter_add("t_hammer_legacy_total", "Legacy.", "", 1);
    }
    return NULL;
}

static void test_concurrent_updates_are_exact(void **state)
{
    (void)state;
    hf_metric *m = hf_metric_get(HF_METRIC_COUNTER, "t_hammer_total", "Hammer.", "parity", 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    char *text = hf_metrics_render();
    char line[128];
    snprintf(line, sizeof(line), "t_hammer_total{parity=\"odd\"} %d", THREADS * PER_THREAD / 2);
    assert_true(has_line(text, line));
    snprintf(line, sizeof(line), "t_hammer_legacy_total{} %d", THREADS * PER_THREAD);
    assert_true(has_line(text, line));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_values_are_escaped, teardown),
        cmocka_unit_test_teardown(test_cap_folds_into_other, teardown),
        cmocka_unit_test_teardown(test_retire, teardown),
        cmocka_unit_test_teardown(test_histogram_is_cumulative, teardown),
        cmocka_unit_test_teardown(test_call_per_update_api, teardown),
        cmocka_unit_test_teardown(test_concurrent_updates_are_exact, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
