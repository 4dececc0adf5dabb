/*
 * Benchmark: the cost of one metrics update from several threads at once, with many series
 * registered (the shape of /metrics after a busy day: routes x statuses, xDS types x nodes).
 * Prints figures; asserts nothing.
 *   build/tests/bench/metrics_bench [THREADS] [SERIES] [UPDATES_PER_THREAD]
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int series = 1000;
static int updates = 200000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The call-per-update API, as ads.c uses it: a preformatted label string per update. */
static void *by_name(void *arg)
{
    (void)arg;
    char labels[64];
    for (int i = 0; i < updates; i++) {
        snprintf(labels, sizeof(labels), "type=\"t%d\"", i % series);
        hf_counter_add("bench_by_name_total", "Bench.", labels, 1);
    }
    return NULL;
}

/* Handles: the series looked up once, then atomic updates. */
static void *by_handle(void *arg)
{
    hf_series **handles = arg;
    for (int i = 0; i < updates; i++) {
        hf_series_add(handles[i % series], 1);
    }
    return NULL;
}

static double run(int threads, void *(*fn)(void *), void *arg)
{
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, fn, arg) != 0) {
            abort();
        }
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    return (now_s() - t0) * 1e9 / ((double)threads * updates);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    series = argc > 2 ? atoi(argv[2]) : 1000;
    updates = argc > 3 ? atoi(argv[3]) : 200000;
    if (threads < 1 || threads > 64 || series < 1 || series > 100000 || updates < 1) {
        fprintf(stderr, "usage: metrics_bench [THREADS 1-64] [SERIES] [UPDATES]\n");
        return 2;
    }
    hf_metric *m =
        hf_metric_get(HF_METRIC_COUNTER, "bench_handle_total", "Bench.", "type", (size_t)series);
    hf_series **handles = calloc((size_t)series, sizeof(*handles));
    for (int i = 0; i < series; i++) {
        char v[32];
        snprintf(v, sizeof(v), "t%d", i);
        const char *values[] = {v};
        handles[i] = hf_metric_series(m, values);
    }
    printf("%d threads, %d series: by name %.0f ns/update, by handle %.0f ns/update\n", threads,
           series, run(threads, by_name, NULL), run(threads, by_handle, handles));
    free(handles);
    hf_metrics_free_all();
    return 0;
}
