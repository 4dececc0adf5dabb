/*
 * The deployment engine: gathers load reports (deploy_record_load, called on gRPC threads) into
 * per-(cluster, fleet) counters and, every interval on its own thread, turns them into
 * affinity-tail samples of each draining deployment, then finishes drains whose tail stayed under
 * the threshold for DEPLOY_FINISH_SAMPLES samples, or whose deadline passed. It holds no state a
 * restart could lose: deployments and samples are in the store.
 *
 * With several replicas on one database (docs/ha.md) every replica's engine passes the load
 * its proxies reported to the database each interval - with, per cluster, how many proxies
 * reported and how many of the group are connected to it - and only the leader's engine acts:
 * it takes the load of every replica (so a tail counts every proxy, wherever it is connected),
 * samples, finishes drains and runs the restart executor.
 */
#include "deploy.h"
#include "reporters.h"
#include "restart.h"

#include "endpoint_key.h"
#include "log.h"
#include "metrics.h"
#include "thread.h"
#include "timeutil.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* In deploy.c. */
int deploy__finish(hf_store *st, const char *actor, const hf_deployment *cur, const char *reason,
                   double tail, hf_deployment *out, hf_detail *d);

/* The load (store_load: requests of one cluster's fleet since the last tick) and the in-flight
 * reports (store_inflight: the last report of requests in progress on one endpoint from one
 * node) have the store's shapes, so that replicas pass them through the database as they are. */
#define INFLIGHT_MAX 65536

struct deploy_engine {
    hf_store *store;
    webhooks *hooks;
    store_inflight *inflight; /* under lock */
    size_t n_inflight;
    uint32_t interval_ms;
    pthread_t thread;
    hf_metric *tail_pct; /* holdfast_deployment_tail_pct{service,deployment}; engine thread */
    /* Lock order: lock is a leaf. It is never held while calling the store or the webhook
     * worker (tick() copies what it needs and unlocks first). */
    pthread_mutex_t lock; /* loads, stopping */
    pthread_cond_t cond;
    bool stopping;
    store_load *loads;
    size_t n_loads;
    deploy_reporters reporters; /* under lock: who reported this interval */
    int64_t inflight_pushed_ms; /* engine thread: reports newer than this are not pushed yet */
    pthread_mutex_t count_lock; /* count_proxies and its calls */
    int (*count_proxies)(void *arg, const char *group);
    void *count_arg;
};

void deploy_record_reporter(void *engine, const char *node, const char *cluster)
{
    struct deploy_engine *e = engine;
    pthread_mutex_lock(&e->lock);
    deploy_reporters_add(&e->reporters, cluster, node);
    pthread_mutex_unlock(&e->lock);
}

void deploy_set_proxy_counter(deploy_engine *e, int (*fn)(void *arg, const char *group), void *arg)
{
    pthread_mutex_lock(&e->count_lock);
    e->count_proxies = fn;
    e->count_arg = arg;
    pthread_mutex_unlock(&e->count_lock);
}

/* Connected proxies of the service's group, -1 when not known. Engine thread. */
static int connected_proxies(struct deploy_engine *e, const char *service)
{
    hf_service svc;
    if (store_service_get(e->store, service, &svc, NULL) != HF_OK) {
        return -1;
    }
    pthread_mutex_lock(&e->count_lock);
    int n = e->count_proxies != NULL ? e->count_proxies(e->count_arg, svc.proxy_group) : -1;
    pthread_mutex_unlock(&e->count_lock);
    return n;
}

void deploy_record_load(void *engine, const char *cluster, const char *fleet, uint64_t requests)
{
    struct deploy_engine *e = engine;
    pthread_mutex_lock(&e->lock);
    size_t i = 0;
    while (i < e->n_loads &&
           (strcmp(e->loads[i].cluster, cluster) != 0 || strcmp(e->loads[i].fleet, fleet) != 0)) {
        i++;
    }
    if (i == e->n_loads && e->n_loads < 4096) {
        e->loads = xrealloc(e->loads, (e->n_loads + 1) * sizeof(*e->loads));
        store_load *l = &e->loads[e->n_loads++];
        snprintf(l->cluster, sizeof(l->cluster), "%s", cluster);
        snprintf(l->fleet, sizeof(l->fleet), "%s", fleet);
        l->requests = 0;
    }
    if (i < e->n_loads) {
        e->loads[i].requests += requests;
    }
    pthread_mutex_unlock(&e->lock);
}

void deploy_record_endpoint(void *engine, const char *node, const char *cluster,
                            const char *address, uint32_t port, uint64_t in_progress)
{
    struct deploy_engine *e = engine;
    char ep[HF_ENDPOINT_ID_MAX];
    hf_addr_port_format(address, port, ep, sizeof(ep));
    int64_t now = hf_now_ms();
    pthread_mutex_lock(&e->lock);
    size_t i = 0;
    while (i < e->n_inflight &&
           (strcmp(e->inflight[i].endpoint, ep) != 0 || strcmp(e->inflight[i].node, node) != 0 ||
            strcmp(e->inflight[i].cluster, cluster) != 0)) {
        i++;
    }
    if (i == e->n_inflight && e->n_inflight < INFLIGHT_MAX) {
        e->inflight = xrealloc(e->inflight, (e->n_inflight + 1) * sizeof(*e->inflight));
        store_inflight *f = &e->inflight[e->n_inflight++];
        snprintf(f->node, sizeof(f->node), "%s", node);
        snprintf(f->cluster, sizeof(f->cluster), "%s", cluster);
        snprintf(f->endpoint, sizeof(f->endpoint), "%s", ep);
    }
    if (i < e->n_inflight) {
        e->inflight[i].in_progress = in_progress;
        e->inflight[i].at_ms = now;
    }
    pthread_mutex_unlock(&e->lock);
}

/* restart_idle_fn: true when every endpoint of the batch was reported since since_ms, and every
 * report since then says no request is in progress on it. */
static bool batch_idle(void *arg, const char *cluster, const hf_restart_batch *b, int64_t since_ms)
{
    struct deploy_engine *e = arg;
    bool idle = b->n_endpoints > 0;
    pthread_mutex_lock(&e->lock);
    for (uint32_t k = 0; idle && k < b->n_endpoints; k++) {
        size_t reports = 0;
        for (size_t i = 0; idle && i < e->n_inflight; i++) {
            const store_inflight *f = &e->inflight[i];
            if (f->at_ms >= since_ms && strcmp(f->endpoint, b->endpoints[k]) == 0 &&
                strcmp(f->cluster, cluster) == 0) {
                reports++;
                idle = f->in_progress == 0;
            }
        }
        idle = idle && reports > 0;
    }
    pthread_mutex_unlock(&e->lock);
    return idle;
}

/* Samples every tail since cutover; returns how many of the last ones are under thr. */
static size_t under_threshold_run(const hf_tail_sample *s, size_t n, int64_t since, double thr)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].t < since) {
            continue;
        }
        run = s[i].pct < thr ? run + 1 : 0;
    }
    return run;
}

static void sample_and_decide(struct deploy_engine *e, const hf_deployment *dep,
                              const store_load *loads, size_t n_loads, deploy_reporters *rep,
                              int64_t now)
{
    const char *draining = hf_deployment_draining_fleet(dep);
    uint64_t old = 0, total = 0;
    for (size_t i = 0; i < n_loads; i++) {
        if (strcmp(loads[i].cluster, dep->service) == 0) {
            total += loads[i].requests;
            old += strcmp(loads[i].fleet, draining) == 0 ? loads[i].requests : 0;
        }
    }
    hf_detail d = {0};
    if (total > 0) {
        hf_tail_sample s = {.t = now,
                            .pct = 100.0 * (double)old / (double)total,
                            .old_requests = (int64_t)old,
                            .total_requests = (int64_t)total};
        if (store_is_shared(e->store)) {
            /* Every replica's count, from the summary rows (fleet "") it passed. */
            s.connected_proxies = 0;
            for (size_t i = 0; i < n_loads; i++) {
                if (loads[i].fleet[0] == '\0' && strcmp(loads[i].cluster, dep->service) == 0) {
                    s.reporters += loads[i].reporters;
                    s.connected_proxies += loads[i].proxies;
                }
            }
        } else {
            s.reporters = (int32_t)deploy_reporters_count(rep, dep->service);
            s.connected_proxies = connected_proxies(e, dep->service);
        }
        if (store_tail_add(e->store, dep->id, &s, &d) != HF_OK) {
            hf_error("deploy", "cannot store a tail sample of %s: %s", dep->id, d.message);
        }
        const char *labels[] = {dep->service, dep->id};
        hf_series_set(hf_metric_series(e->tail_pct, labels), s.pct);
    }
    hf_tail_sample *samples;
    size_t n;
    if (store_tail_list(e->store, dep->id, &samples, &n) != HF_OK) {
        return;
    }
    size_t run = under_threshold_run(samples, n, dep->cutover_at, dep->tail_threshold_pct);
    double last = -1;
    for (size_t i = 0; i < n; i++) {
        if (samples[i].t >= dep->cutover_at) {
            last = samples[i].pct;
        }
    }
    free(samples);
    const char *reason = NULL;
    if (run >= DEPLOY_FINISH_SAMPLES && now >= dep->min_finish_at) {
        reason = "threshold";
    } else if (now >= dep->deadline_at) {
        reason = "deadline";
    }
    if (reason != NULL) {
        hf_deployment done;
        if (deploy__finish(e->store, "deploy", dep, reason, last, &done, &d) == HF_OK) {
            hf_info("deploy", "%s %s by %s (tail %.2f %%)", dep->id,
                    hf_deploy_state_name(done.state), reason, last);
        } else {
            hf_warn("deploy", "cannot finish %s: %s", dep->id, d.message);
        }
    }
}

/* The deployments still draining, for retiring the tail series of the others. */
struct draining_set {
    const hf_deployment *deps;
    size_t n;
};

static bool still_draining(const char *const *labels, void *arg)
{
    const struct draining_set *set = arg;
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->deps[i].id, labels[1]) == 0 &&
            hf_deployment_draining_fleet(&set->deps[i]) != NULL) {
            return true;
        }
    }
    return false;
}

/* Shared database: pushes this replica's in-flight reports, and on the leader replaces the
 * in-memory reports with every replica's. */
static void share_inflight(struct deploy_engine *e, bool leader)
{
    hf_detail d = {0};
    pthread_mutex_lock(&e->lock);
    store_inflight *fresh = xcalloc(e->n_inflight + 1, sizeof(*fresh));
    size_t n = 0;
    int64_t newest = e->inflight_pushed_ms;
    for (size_t i = 0; i < e->n_inflight; i++) {
        if (e->inflight[i].at_ms > e->inflight_pushed_ms) {
            fresh[n++] = e->inflight[i];
            newest = e->inflight[i].at_ms > newest ? e->inflight[i].at_ms : newest;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (store_inflight_push(e->store, fresh, n, &d) == HF_OK) {
        e->inflight_pushed_ms = newest;
    }
    free(fresh);
    store_inflight *all;
    if (leader && store_inflight_list(e->store, hf_now_ms() - 120000, &all, &n) == HF_OK) {
        pthread_mutex_lock(&e->lock);
        free(e->inflight);
        e->inflight = all;
        e->n_inflight = n;
        pthread_mutex_unlock(&e->lock);
    }
}

/* Appends to *loads one summary row (fleet "") per cluster with load: how many proxies
 * reported it to this replica and how many of its group are connected here. */
static void add_summaries(struct deploy_engine *e, store_load **loads, size_t *n,
                          deploy_reporters *rep)
{
    size_t base = *n;
    for (size_t i = 0; i < base; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = strcmp((*loads)[j].cluster, (*loads)[i].cluster) == 0;
        }
        if (seen) {
            continue;
        }
        *loads = xrealloc(*loads, (*n + 1) * sizeof(**loads));
        store_load *l = &(*loads)[(*n)++];
        memset(l, 0, sizeof(*l));
        memcpy(l->cluster, (*loads)[i].cluster, sizeof(l->cluster));
        l->reporters = (int32_t)deploy_reporters_count(rep, l->cluster);
        int proxies = connected_proxies(e, l->cluster);
        l->proxies = proxies > 0 ? proxies : 0;
    }
}

/* Takes the load gathered since the last tick: this replica's, or on a shared database every
 * replica's (through the database; only the leader takes). */
static void gather(struct deploy_engine *e, store_load **loads, size_t *n_loads,
                   deploy_reporters *rep, bool leader)
{
    pthread_mutex_lock(&e->lock);
    *loads = e->loads;
    *n_loads = e->n_loads;
    e->loads = NULL;
    e->n_loads = 0;
    *rep = e->reporters;
    e->reporters = (deploy_reporters){0};
    pthread_mutex_unlock(&e->lock);
    if (!store_is_shared(e->store)) {
        return;
    }
    hf_detail d = {0};
    add_summaries(e, loads, n_loads, rep);
    if (store_load_push(e->store, *loads, *n_loads, &d) != HF_OK) {
        hf_warn("deploy", "cannot pass load reports to the leader: %s", d.message);
    }
    free(*loads);
    *loads = NULL;
    *n_loads = 0;
    if (leader && store_load_take(e->store, loads, n_loads, &d) != HF_OK) {
        hf_warn("deploy", "cannot read the replicas' load reports: %s", d.message);
    }
}

static void tick(struct deploy_engine *e)
{
    bool leader = store_is_leader(e->store);
    store_load *loads;
    size_t n_loads;
    deploy_reporters rep;
    gather(e, &loads, &n_loads, &rep, leader);
    if (store_is_shared(e->store)) {
        share_inflight(e, leader);
    }
    if (leader) {
        restart_env env = {batch_idle, e, 2 * (int64_t)e->interval_ms, e->hooks};
        restart_tick(e->store, &env);
    }
    hf_deployment *deps;
    size_t n;
    if (leader && store_deployment_list(e->store, NULL, true, &deps, &n) == HF_OK) {
        int64_t now = hf_now_ms();
        for (size_t i = 0; i < n; i++) {
            if (hf_deployment_draining_fleet(&deps[i]) != NULL) {
                sample_and_decide(e, &deps[i], loads, n_loads, &rep, now);
            }
        }
        /* A deployment that ended (or stopped draining) keeps no series. */
        struct draining_set set = {deps, n};
        hf_metric_retire_unless(e->tail_pct, still_draining, &set);
        free(deps);
    }
    free(loads);
    deploy_reporters_clear(&rep);
}

static void *engine_main(void *arg)
{
    struct deploy_engine *e = arg;
    pthread_mutex_lock(&e->lock);
    while (!e->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)e->interval_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        while (!e->stopping && pthread_cond_timedwait(&e->cond, &e->lock, &until) == 0) {
        }
        if (e->stopping) {
            break;
        }
        pthread_mutex_unlock(&e->lock);
        tick(e);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

int deploy_start(hf_store *st, uint32_t interval_ms, deploy_engine **out, hf_detail *d)
{
    (void)d;
    struct deploy_engine *e = xcalloc(1, sizeof(*e));
    e->store = st;
    e->interval_ms = interval_ms ? interval_ms : 2000;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->count_lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->hooks = webhooks_start();
    /* Bounded: one series per draining deployment (one per service), retired when it ends. */
    e->tail_pct = hf_metric_get(HF_METRIC_GAUGE, "holdfast_deployment_tail_pct",
                                "Share of requests still reaching the draining fleet.",
                                "service,deployment", 256);
    hf_thread_start(&e->thread, engine_main, e, "deploy-engine");
    *out = e;
    return HF_OK;
}

void deploy_stop(deploy_engine *e)
{
    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    webhooks_stop(e->hooks);
    free(e->loads);
    free(e->inflight);
    deploy_reporters_clear(&e->reporters);
    pthread_mutex_destroy(&e->count_lock);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}
