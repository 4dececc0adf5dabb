/*
 * The xDS server's lifecycle and its own thread. The store's change hook only records the newest
 * generation and wakes the thread; the thread rebuilds the snapshot, pushes it to every stream,
 * and writes queued audit events, so neither REST requests nor gRPC threads wait on it.
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "log.h"
#include "metrics.h"
#include "thread.h"
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

/* ---- the protocol's subscribers: metrics, logs and the audit log ---- */

/* The per-type series the protocol's callbacks update, looked up once (metrics off the hot
 * path: an atomic add per push or ACK, no lookup). */
static void metrics_init(struct xds_server *srv)
{
    hf_metric *pushes = hf_metric_get(HF_METRIC_COUNTER, "holdfast_xds_pushes_total",
                                      "Responses sent to proxies.", "type", 0);
    hf_metric *bytes = hf_metric_get(HF_METRIC_COUNTER, "holdfast_xds_pushed_bytes_total",
                                     "Bytes of responses sent to proxies.", "type", 0);
    hf_metric *acks = hf_metric_get(HF_METRIC_COUNTER, "holdfast_xds_acks_total",
                                    "Responses accepted by proxies.", "type", 0);
    hf_metric *nacks = hf_metric_get(HF_METRIC_COUNTER, "holdfast_xds_nacks_total",
                                     "Responses rejected by proxies.", "type", 0);
    hf_metric *lag = hf_metric_get(HF_METRIC_HISTOGRAM, "holdfast_xds_push_to_ack_seconds",
                                   "Time from sending a response to its ACK.", "type", 0);
    for (int t = 0; t < XDS_NTYPES; t++) {
        const char *type[] = {xds_type_name((enum xds_type)t)};
        srv->m_pushes[t] = hf_metric_series(pushes, type);
        srv->m_bytes[t] = hf_metric_series(bytes, type);
        srv->m_acks[t] = hf_metric_series(acks, type);
        srv->m_nacks[t] = hf_metric_series(nacks, type);
        srv->m_push_to_ack[t] = hf_metric_series(lag, type);
    }
}

static void cb_connect(void *arg, const xds_stream_info *in)
{
    struct xds_server *srv = arg;
    atomic_fetch_add(&srv->connected[in->kind], 1);
    xds__update_gauges(srv);
    xds__event(srv, "proxy.connect", in->node_id,
               "%s node %s connected from %s (group %s%s, %s, %s)", xds_node_kind_name(in->kind),
               in->node_id, in->peer, in->group, in->group_known ? "" : ": unknown",
               in->user_agent[0] ? in->user_agent : "no user agent",
               in->delta ? "delta" : "state of the world");
}

static void cb_disconnect(void *arg, const xds_stream_info *in)
{
    struct xds_server *srv = arg;
    atomic_fetch_sub(&srv->connected[in->kind], 1);
    xds__update_gauges(srv);
    xds__event(srv, "proxy.disconnect", in->node_id, "%s node %s (group %s) disconnected",
               xds_node_kind_name(in->kind), in->node_id, in->group);
}

static void cb_push(void *arg, const xds_stream_info *in, enum xds_type t, const char *version,
                    size_t bytes)
{
    struct xds_server *srv = arg;
    (void)in, (void)version;
    hf_series_add(srv->m_pushes[t], 1);
    hf_series_add(srv->m_bytes[t], bytes);
}

static void cb_ack(void *arg, const xds_stream_info *in, enum xds_type t, const char *version,
                   uint64_t push_to_ack_ns)
{
    struct xds_server *srv = arg;
    (void)in, (void)version;
    hf_series_add(srv->m_acks[t], 1);
    hf_series_observe(srv->m_push_to_ack[t], (double)push_to_ack_ns / 1e9);
}

static void cb_nack(void *arg, const xds_stream_info *in, enum xds_type t, const char *version,
                    const char *error)
{
    struct xds_server *srv = arg;
    hf_series_add(srv->m_nacks[t], 1);
    hf_warn("xds", "%s NACKed %s version %s: %s", in->node_id, xds_type_name(t), version, error);
    xds__event(srv, "proxy.nack", in->node_id, "%s rejected %s version %s: %.300s", in->node_id,
               xds_type_name(t), version, error);
}

static void cb_error(void *arg, const xds_stream_info *in, const char *message)
{
    (void)arg;
    hf_warn("xds", "stream %llu from %s (%s): %s", (unsigned long long)in->stream_id, in->peer,
            in->node_id[0] ? in->node_id : "no node yet", message);
    hf_counter_add("holdfast_xds_stream_errors_total", "Streams ended for bad input.", "", 1);
}

/* Identity check of a node on an ADS stream (xds_auth.c; io is the gRPC stream). */
static bool cb_admit(void *arg, void *io, const char *node_id, const char *cluster)
{
    return xds__authorize_ads(arg, io, node_id, cluster);
}

static xds_snapshot *current_snapshot(void *arg)
{
    return xds__snapshot(arg);
}

/* ---- the transport glue: gRPC streams to protocol streams ---- */

static int io_send(void *io, hf_rbuf *const *parts, size_t n)
{
    return hf_stream_send(io, parts, n);
}

static void io_finish(void *io, int status, const char *message)
{
    hf_stream_finish(io, (enum hf_grpc_status)status, message);
}

static void *open_conn(struct xds_server *srv, hf_stream *t, const char *peer, bool delta)
{
    xds_conn *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->transport = t;
    xds_stream_io io = {io_send, io_finish, t};
    c->proto =
        xds_stream_open(&srv->ads, &io, atomic_fetch_add(&srv->next_stream_id, 1) + 1, peer, delta);
    pthread_mutex_lock(&srv->reg_lock);
    c->next = srv->streams;
    if (srv->streams != NULL) {
        srv->streams->prev = c;
    }
    srv->streams = c;
    pthread_mutex_unlock(&srv->reg_lock);
    return c;
}

static void *open_sotw(void *ctx, hf_stream *t, const char *peer)
{
    return open_conn(ctx, t, peer, false);
}

static void *open_delta(void *ctx, hf_stream *t, const char *peer)
{
    return open_conn(ctx, t, peer, true);
}

static void on_message(void *user, const uint8_t *data, size_t len)
{
    xds_conn *c = user;
    xds_stream_message(c->proto, data, len);
}

static void on_sent(void *user)
{
    xds_conn *c = user;
    xds_stream_sent(c->proto);
}

/* A new snapshot: pump on the stream's own thread (see rebuild). */
static void on_wake(void *user)
{
    xds_conn *c = user;
    xds_stream_pump(c->proto);
}

static void on_closed(void *user)
{
    xds_conn *c = user;
    struct xds_server *srv = c->srv;
    pthread_mutex_lock(&srv->reg_lock);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        srv->streams = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&srv->reg_lock);
    xds_stream_close(c->proto);
    free(c);
}

const hf_stream_handler xds__sotw_handler = {open_sotw, on_message, on_sent, on_closed, on_wake};
const hf_stream_handler xds__delta_handler = {open_delta, on_message, on_sent, on_closed, on_wake};

/* Per-type services (ClusterDiscoveryService and the like): the same protocol and snapshots, one
 * type per stream. */
static void *open_typed(void *ctx, hf_stream *t, const char *peer, bool delta)
{
    struct xds_typed_ctx *tc = ctx;
    xds_conn *c = open_conn(tc->srv, t, peer, delta);
    xds_stream_only(c->proto, tc->type);
    return c;
}

static void *open_typed_sotw(void *ctx, hf_stream *t, const char *peer)
{
    return open_typed(ctx, t, peer, false);
}

static void *open_typed_delta(void *ctx, hf_stream *t, const char *peer)
{
    return open_typed(ctx, t, peer, true);
}

static const hf_stream_handler typed_sotw_handler = {open_typed_sotw, on_message, on_sent,
                                                     on_closed, on_wake};
static const hf_stream_handler typed_delta_handler = {open_typed_delta, on_message, on_sent,
                                                      on_closed, on_wake};

/* Registers the per-type services' methods after the first four. */
static size_t typed_methods(struct xds_server *srv)
{
    static const char *const paths[XDS_NTYPES][2] = {
        [XDS_CDS] = {"/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters",
                     "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters"},
        [XDS_EDS] = {"/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints",
                     "/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints"},
        [XDS_LDS] = {"/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners",
                     "/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners"},
        [XDS_RDS] = {"/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes",
                     "/envoy.service.route.v3.RouteDiscoveryService/DeltaRoutes"},
    };
    size_t n = 4;
    for (int t = 0; t < XDS_NTYPES; t++) {
        srv->typed[t] = (struct xds_typed_ctx){srv, (enum xds_type)t};
        srv->methods[n++] = (hf_grpc_method){paths[t][0], &typed_sotw_handler, &srv->typed[t]};
        srv->methods[n++] = (hf_grpc_method){paths[t][1], &typed_delta_handler, &srv->typed[t]};
    }
    return n;
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

/* Health notifications of other replicas (store_ha.c's thread). */
static void on_health(void *arg, enum store_health_kind kind)
{
    struct xds_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    if (kind == STORE_HEALTH_VERDICTS) {
        srv->hds_take = true;
    } else {
        srv->hds_dirty = true; /* checkers, specifiers or leadership moved */
    }
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

/* Reads the configuration (one transaction, unchanged services shared with the last input) and
 * builds a snapshot from it, reusing what did not change since prev. An inconsistent snapshot
 * is refused. */
static int build(hf_store *st, store_input **input, const xds_snapshot *prev, xds_snapshot **out,
                 hf_detail *d)
{
    store_input *in;
    int rc = store_input_read(st, *input, &in, d);
    if (rc != HF_OK) {
        return rc;
    }
    xds_snapshot *snap;
    rc = xds_snapshot_build(in, prev, &snap, d);
    if (rc == HF_OK && (rc = xds_snapshot_check(snap, d)) != HF_OK) {
        hf_counter_add("holdfast_xds_snapshot_inconsistent_total",
                       "Snapshots not published because they failed the consistency check.", "", 1);
        xds_snapshot_unref(snap);
    }
    if (rc != HF_OK) {
        store_input_free(in);
        return rc;
    }
    store_input_free(*input);
    *input = in;
    *out = snap;
    return HF_OK;
}

/* Builds a snapshot for generation and pushes it to every stream. */
static void rebuild(struct xds_server *srv, uint64_t generation)
{
    uint64_t t0 = hf_mono_ns();
    xds_snapshot *snap;
    hf_detail d = {0};
    if (build(srv->store, &srv->input, srv->snap, &snap, &d) != HF_OK) {
        hf_error("xds", "snapshot %llu not published: %s", (unsigned long long)generation,
                 d.message);
        return;
    }
    pthread_mutex_lock(&srv->snap_lock);
    xds_snapshot *old = srv->snap;
    srv->snap = snap;
    pthread_mutex_unlock(&srv->snap_lock);
    xds_snapshot_unref(old);

    size_t n = 0;
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_conn *c = srv->streams; c != NULL; c = c->next) {
        /* The stream's own gRPC thread builds and sends what it is owed: this thread does not
         * contend with it inside gRPC. */
        hf_stream_wake(c->transport);
        n++;
    }
    pthread_mutex_unlock(&srv->reg_lock);
    double secs = (double)(hf_mono_ns() - t0) / 1e9;
    hf_histogram_observe("holdfast_xds_snapshot_seconds",
                         "Time to build a snapshot and wake every stream to push it.", "", secs);
    hf_gauge_set("holdfast_xds_snapshot_resources", "Resources in the current snapshot.", "",
                 (double)snap->n_resources);
    hf_debug("xds", "generation %llu (%zu services rebuilt) announced to %zu streams in %.2f ms",
             (unsigned long long)snap->generation, snap->n_rebuilt, n, secs * 1000);
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
               !srv->hds_dirty && !srv->hds_pending && !srv->hds_take) {
            pthread_cond_wait(&srv->cond, &srv->lock);
        }
        uint64_t want = srv->wanted_gen;
        bool hds_dirty = srv->hds_dirty || want > built;
        bool hds_take = srv->hds_take;
        bool hds_pending = srv->hds_pending || hds_take;
        srv->hds_dirty = srv->hds_pending = srv->hds_take = false;
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
            xds__hds_process(srv, hds_take);
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
    metrics_init(srv);
    srv->ads =
        (xds_ads){current_snapshot,
                  srv,
                  {cb_connect, cb_disconnect, cb_push, cb_ack, cb_nack, cb_error, cb_admit, srv}};
    int rc = build(cfg->store, &srv->input, NULL, &srv->snap, d);
    if (rc != HF_OK) {
        goto fail;
    }
    srv->wanted_gen = srv->snap->generation;
    store_set_change_hook(cfg->store, on_store_change, srv);
    srv->hds_shared = store_is_shared(cfg->store);
    srv->hds_mine_ok = true; /* a new replica id: no checker recorded for it yet */
    store_set_health_hook(cfg->store, on_health, srv);
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
    size_t n_methods = typed_methods(srv);
    hf_grpc_config gc = {.address = cfg->address,
                         .threads = cfg->threads > 0 ? cfg->threads : 1,
                         .max_message = MAX_MESSAGE,
                         .max_connections = cfg->max_connections,
                         .methods = srv->methods,
                         .n_methods = n_methods,
                         .tls = cfg->tls,
                         .local_address = cfg->local_address,
                         .on_tls_failure = xds__tls_failure,
                         .tls_failure_arg = srv};
    rc = hf_grpc_start(&gc, &srv->grpc, port, d);
    if (rc != HF_OK) {
        store_set_change_hook(cfg->store, NULL, NULL);
        store_set_health_hook(cfg->store, NULL, NULL);
        goto fail;
    }
    hf_thread_start(&srv->thread, xds_main, srv, "xds");
    *out = srv;
    return HF_OK;
fail:
    xds_snapshot_unref(srv->snap);
    store_input_free(srv->input);
    free(srv);
    return rc;
}

void xds_stop(xds_server *srv)
{
    if (srv == NULL) {
        return;
    }
    store_set_change_hook(srv->store, NULL, NULL);
    store_set_health_hook(srv->store, NULL, NULL);
    hf_grpc_stop(srv->grpc); /* ends every stream: their closed callbacks queue events */
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->thread, NULL);
    xds_snapshot_unref(srv->snap);
    store_input_free(srv->input);
    xds__hds_destroy(srv);
    pthread_mutex_destroy(&srv->hds_lock);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->snap_lock);
    pthread_mutex_destroy(&srv->reg_lock);
    free(srv);
}

int xds_proxies(xds_server *srv, xds_proxy_info **out, size_t *n)
{
    xds_proxy_info *items = NULL;
    size_t count = 0, cap = 0;
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_conn *c = srv->streams; c != NULL; c = c->next) {
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            items = xrealloc(items, cap * sizeof(*items));
        }
        if (xds_stream_status(c->proto, &items[count])) {
            count++;
        }
    }
    pthread_mutex_unlock(&srv->reg_lock);
    *out = items;
    *n = count;
    return HF_OK;
}
