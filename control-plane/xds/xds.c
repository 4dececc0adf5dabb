/*
 * The xDS server's lifecycle and its own thread. The store's change hook only records the newest
 * generation and wakes the thread; the thread rebuilds the snapshot, pushes it to every stream,
 * and writes queued audit events, so neither REST requests nor gRPC threads wait on it.
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (4 * 1024 * 1024)
#define MAX_QUEUED_EVENTS 10000

struct xds_event {
    struct xds_event *next;
    char action[32];
    char object[160];
    char summary[512];
};

/* ---- shared with ads.c ---- */

xds_snapshot *xds__snapshot(struct xds_server *srv)
{
    pthread_mutex_lock(&srv->snap_lock);
    xds_snapshot *s = xds_snapshot_ref(srv->snap);
    pthread_mutex_unlock(&srv->snap_lock);
    return s;
}

void xds__event(struct xds_server *srv, const char *action, const char *object, const char *fmt,
                ...)
{
    struct xds_event *e = xcalloc(1, sizeof(*e));
    snprintf(e->action, sizeof(e->action), "%s", action);
    snprintf(e->object, sizeof(e->object), "proxies/%s", object);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->summary, sizeof(e->summary), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&srv->lock);
    if (srv->n_events >= MAX_QUEUED_EVENTS) {
        /* Bounded: under a connection storm the audit log keeps the first events. */
        pthread_mutex_unlock(&srv->lock);
        hf_counter_add("holdfast_xds_events_dropped_total", "Audit events dropped (queue full).",
                       "", 1);
        free(e);
        return;
    }
    srv->n_events++;
    if (srv->events_tail != NULL) {
        srv->events_tail->next = e;
    } else {
        srv->events = e;
    }
    srv->events_tail = e;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

void xds__update_gauges(struct xds_server *srv)
{
    hf_gauge_set("holdfast_xds_connected_streams", "Connected ADS streams by kind of node.",
                 "kind=\"envoy\"", atomic_load(&srv->connected[XDS_NODE_ENVOY]));
    hf_gauge_set("holdfast_xds_connected_streams", "Connected ADS streams by kind of node.",
                 "kind=\"grpc\"", atomic_load(&srv->connected[XDS_NODE_GRPC]));
}

/* ---- the xDS thread ---- */

static void on_store_change(void *arg, uint64_t generation)
{
    struct xds_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    if (generation > srv->wanted_gen) {
        srv->wanted_gen = generation;
    }
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

/* Builds a snapshot for generation and pushes it to every stream. */
static void rebuild(struct xds_server *srv, uint64_t generation)
{
    uint64_t t0 = hf_mono_ns();
    xds_snapshot *snap;
    hf_detail d = {0};
    if (xds_snapshot_build(srv->store, generation, &snap, &d) != HF_OK) {
        hf_error("xds", "snapshot %llu: %s", (unsigned long long)generation, d.message);
        return;
    }
    pthread_mutex_lock(&srv->snap_lock);
    xds_snapshot *old = srv->snap;
    srv->snap = snap;
    pthread_mutex_unlock(&srv->snap_lock);
    xds_snapshot_unref(old);

    size_t n = 0;
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_stream *s = srv->streams; s != NULL; s = s->next) {
        /* The stream's own gRPC thread builds and sends what it is owed: this thread does not
         * contend with it inside gRPC. */
        hf_stream_wake(s->transport);
        n++;
    }
    pthread_mutex_unlock(&srv->reg_lock);
    double secs = (double)(hf_mono_ns() - t0) / 1e9;
    hf_histogram_observe("holdfast_xds_snapshot_seconds",
                         "Time to build a snapshot and wake every stream to push it.", "", secs);
    hf_gauge_set("holdfast_xds_snapshot_resources", "Resources in the current snapshot.", "",
                 (double)snap->n_resources);
    hf_debug("xds", "generation %llu announced to %zu streams in %.2f ms",
             (unsigned long long)generation, n, secs * 1000);
}

/* Writes the queued events in one transaction (thousands of proxies may connect at once). */
static void write_events(struct xds_server *srv, struct xds_event *e)
{
    size_t n = 0;
    for (struct xds_event *p = e; p != NULL; p = p->next) {
        n++;
    }
    if (n == 0) {
        return;
    }
    hf_event *batch = xcalloc(n, sizeof(*batch));
    size_t i = 0;
    while (e != NULL) {
        struct xds_event *next = e->next;
        hf_event *b = &batch[i++];
        snprintf(b->actor, sizeof(b->actor), "xds");
        snprintf(b->action, sizeof(b->action), "%s", e->action);
        snprintf(b->object, sizeof(b->object), "%s", e->object);
        snprintf(b->summary, sizeof(b->summary), "%s", e->summary);
        free(e);
        e = next;
    }
    hf_detail d = {0};
    if (store_events_append(srv->store, batch, n, &d) != HF_OK) {
        hf_error("xds", "cannot record %zu events: %s", n, d.message);
    }
    free(batch);
}

static void *xds_main(void *arg)
{
    struct xds_server *srv = arg;
    uint64_t built = srv->snap->generation;
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        while (!srv->stopping && srv->wanted_gen <= built && srv->events == NULL &&
               !srv->hds_dirty && !srv->hds_pending) {
            pthread_cond_wait(&srv->cond, &srv->lock);
        }
        uint64_t want = srv->wanted_gen;
        bool hds_dirty = srv->hds_dirty || want > built;
        bool hds_pending = srv->hds_pending;
        srv->hds_dirty = srv->hds_pending = false;
        struct xds_event *events = srv->events;
        srv->events = srv->events_tail = NULL;
        srv->n_events = 0;
        bool stopping = srv->stopping;
        pthread_mutex_unlock(&srv->lock);
        if (want > built && !stopping) {
            rebuild(srv, want);
            built = want;
        }
        if (hds_dirty && !stopping) {
            xds__hds_reassign(srv); /* first: verdicts are judged against assignments */
        }
        if (hds_pending && !stopping) {
            xds__hds_process(srv);
        }
        write_events(srv, events);
        pthread_mutex_lock(&srv->lock);
        if (stopping && srv->events == NULL) {
            break;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ---- start / stop ---- */

int xds_start(const xds_config *cfg, xds_server **out, int *port, hf_detail *d)
{
    struct xds_server *srv = xcalloc(1, sizeof(*srv));
    srv->store = cfg->store;
    srv->lrs_interval_ms = cfg->lrs_interval_ms ? cfg->lrs_interval_ms : 2000;
    srv->hds_replicas = cfg->hds_replicas > 0 ? cfg->hds_replicas : 2;
    pthread_mutex_init(&srv->hds_lock, NULL);
    srv->load_sink = cfg->load_sink;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    pthread_mutex_init(&srv->snap_lock, NULL);
    pthread_mutex_init(&srv->reg_lock, NULL);
    uint64_t generation = store_generation(cfg->store);
    int rc = xds_snapshot_build(cfg->store, generation, &srv->snap, d);
    if (rc != HF_OK) {
        goto fail;
    }
    srv->wanted_gen = generation;
    store_set_change_hook(cfg->store, on_store_change, srv);
    xds__update_gauges(srv);

    srv->methods[0] = (hf_grpc_method){
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        &xds__sotw_handler, srv};
    srv->methods[1] = (hf_grpc_method){
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
        &xds__delta_handler, srv};
    srv->methods[2] =
        (hf_grpc_method){"/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats",
                         &xds__lrs_handler, srv};
    srv->methods[3] =
        (hf_grpc_method){"/envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck",
                         &xds__hds_handler, srv};
    hf_grpc_config gc = {.address = cfg->address,
                         .threads = cfg->threads > 0 ? cfg->threads : 1,
                         .max_message = MAX_MESSAGE,
                         .max_connections = cfg->max_connections,
                         .methods = srv->methods,
                         .n_methods = 4,
                         .tls = cfg->tls,
                         .local_address = cfg->local_address,
                         .on_tls_failure = xds__tls_failure,
                         .tls_failure_arg = srv};
    rc = hf_grpc_start(&gc, &srv->grpc, port, d);
    if (rc != HF_OK) {
        store_set_change_hook(cfg->store, NULL, NULL);
        goto fail;
    }
    pthread_create(&srv->thread, NULL, xds_main, srv);
    *out = srv;
    return HF_OK;
fail:
    xds_snapshot_unref(srv->snap);
    free(srv);
    return rc;
}

void xds_stop(xds_server *srv)
{
    if (srv == NULL) {
        return;
    }
    store_set_change_hook(srv->store, NULL, NULL);
    hf_grpc_stop(srv->grpc); /* ends every stream: their closed callbacks queue events */
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->thread, NULL);
    xds_snapshot_unref(srv->snap);
    xds__hds_destroy(srv);
    pthread_mutex_destroy(&srv->hds_lock);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->snap_lock);
    pthread_mutex_destroy(&srv->reg_lock);
    free(srv);
}

/* The SotW version the current snapshot has for stream s's subscription to t ("" when delta,
 * not subscribed or no snapshot). Call with s->lock held. */
static void current_version(xds_snapshot *snap, xds_stream *s, enum xds_type t,
                            char version[HF_VERSION_LEN])
{
    version[0] = '\0';
    if (snap == NULL || s->delta || !s->types[t].active) {
        return;
    }
    xds_view *v = xds_snapshot_view(snap, s->info.group, s->info.kind);
    hf_rbuf_unref(xds_view_sotw_body(v, t, &s->types[t].sub, version));
}

int xds_proxies(xds_server *srv, xds_proxy_info **out, size_t *n)
{
    xds_proxy_info *items = NULL;
    size_t count = 0;
    xds_snapshot *snap = xds__snapshot(srv);
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_stream *s = srv->streams; s != NULL; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->have_node) {
            items = xrealloc(items, (count + 1) * sizeof(*items));
            xds_proxy_info *p = &items[count++];
            memset(p, 0, sizeof(*p));
            p->stream_id = s->info.stream_id;
            memcpy(p->node_id, s->info.node_id, sizeof(p->node_id));
            memcpy(p->group, s->info.group, sizeof(p->group));
            p->group_known = s->info.group_known;
            memcpy(p->user_agent, s->info.user_agent, sizeof(p->user_agent));
            p->kind = s->info.kind;
            memcpy(p->peer, s->info.peer, sizeof(p->peer));
            p->delta = s->delta;
            p->connected_since = s->info.connected_since;
            p->build_version = s->info.build_version;
            for (int t = 0; t < XDS_NTYPES; t++) {
                const xds_type_state *ts = &s->types[t];
                xds_type_status *o = &p->types[t];
                o->subscribed = ts->active;
                memcpy(o->sent, ts->sent, HF_VERSION_LEN);
                memcpy(o->acked, ts->acked, HF_VERSION_LEN);
                memcpy(o->nack_version, ts->nack_version, HF_VERSION_LEN);
                snprintf(o->nack_error, sizeof(o->nack_error), "%s",
                         ts->nack_error ? ts->nack_error : "");
                o->sent_at = ts->sent_at;
                o->acked_at = ts->acked_at;
                o->nack_at = ts->nack_at;
                current_version(snap, s, (enum xds_type)t, o->current);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&srv->reg_lock);
    if (snap != NULL) {
        xds_snapshot_unref(snap);
    }
    *out = items;
    *n = count;
    return HF_OK;
}
