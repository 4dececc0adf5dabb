/*
 * The health module's cost at fleet scale (issue 11 item 8): 100,000 endpoints (1,000 services x
 * 100 addresses sharing port 8080), k = 2, and a number of checkers. Prints, for one-endpoint
 * changes: the full-input path (hf_health_sync over every endpoint), the per-service path
 * holdfast runs (hf_health_sync_services over the one changed service's 100 endpoints: the
 * services whose revision moved in the snapshot's input), and the bare delta
 * (hf_health_upsert / hf_health_remove); a checker joining and leaving; 100,000 verdicts.
 *   health_assign_bench [endpoints] [checkers]
 */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void endpoint(hf_hc_endpoint *e, size_t i)
{
    memset(e, 0, sizeof(*e));
    char svc[32], addr[32];
    snprintf(svc, sizeof(svc), "svc-%zu", i / 100);
    snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    hf_endpoint_key_set(&e->key, svc, addr, 8080);
    snprintf(e->zone, sizeof(e->zone), "z%zu", i % 3);
    snprintf(e->fleet, sizeof(e->fleet), "blue");
    e->policy = 1;
    e->health = HF_HEALTH_HEALTHY;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t nc = argc > 2 ? strtoul(argv[2], NULL, 10) : 2;
    hf_hc_endpoint *eps = calloc(n + 1, sizeof(*eps));
    hf_hc_checker *cs = calloc(nc + 1, sizeof(*cs));
    for (size_t i = 0; i <= n; i++) {
        endpoint(&eps[i], i);
    }
    for (size_t c = 0; c <= nc; c++) {
        snprintf(cs[c].id, sizeof(cs[c].id), "shim-%zu", c);
        snprintf(cs[c].zone, sizeof(cs[c].zone), "z%zu", c % 3);
    }
    hf_health_table *t = hf_health_new(2);
    hf_hc_decisions d = {0};
    hf_health_set_checkers(t, cs, nc, 1, &d);
    double t0 = now_ms();
    hf_health_sync(t, eps, n, 1, &d);
    printf("initial sync of %zu endpoints, %zu checkers: %.1f ms\n", n, nc, now_ms() - t0);

    enum { ROUNDS = 20 };
    double full = 0, delta = 0, service = 0;
    for (int r = 0; r < ROUNDS; r++) {
        eps[r].policy = 100 + (uint64_t)r; /* svc-0 changes: it is re-read, 100 endpoints */
        const char *changed[] = {eps[0].key.service};
        t0 = now_ms();
        hf_health_sync_services(t, changed, 1, eps, n < 100 ? n : 100, 1, &d);
        service += now_ms() - t0;
        eps[r].policy = 2 + (uint64_t)r; /* one endpoint changes (its service's policy) */
        t0 = now_ms();
        hf_health_sync(t, eps, n, 1, &d);
        full += now_ms() - t0;
        t0 = now_ms();
        hf_health_upsert(t, &eps[n], 1, &d); /* one endpoint added, then removed */
        hf_health_remove(t, &eps[n].key);
        delta += (now_ms() - t0) / 2;
    }
    printf("one-endpoint change, full input (sync over %zu): %.2f ms CPU\n", n, full / ROUNDS);
    printf("one-endpoint change, its service re-synced (holdfast's path): %.3f ms CPU\n",
           service / ROUNDS);
    printf("one-endpoint change, delta (upsert/remove):       %.4f ms CPU\n", delta / ROUNDS);

    t0 = now_ms();
    size_t moved = hf_health_set_checkers(t, cs, nc + 1, 1, &d);
    printf("a checker joins: %.1f ms CPU, %zu assignments moved\n", now_ms() - t0, moved);
    t0 = now_ms();
    moved = hf_health_set_checkers(t, cs, nc, 1, &d);
    printf("a checker leaves: %.1f ms CPU, %zu assignments moved\n", now_ms() - t0, moved);

    t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        const hf_hc_slot *s;
        long at = hf_health_find(t, &eps[i].key);
        hf_health_slots(t, (size_t)at, &s);
        hf_health_verdict(t, &eps[i].key, s[0].checker, HF_HEALTH_UNHEALTHY, "HTTP 503 in 1 ms", 1,
                          1, &d);
    }
    printf("%zu verdicts: %.1f ms CPU (%.0f ns each)\n", n, now_ms() - t0,
           (now_ms() - t0) * 1e6 / (double)n);
    hf_hc_decisions_free(&d);
    hf_health_free(t);
    free(eps);
    free(cs);
    return 0;
}
