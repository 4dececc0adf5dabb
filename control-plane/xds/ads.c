/*
 * The ADS protocol on one stream (Envoy's xDS protocol document), state-of-the-world and delta.
 *
 * Runs on the stream's gRPC thread (requests, send completions) and on the xDS thread (new
 * snapshots); both hold the stream's lock. Nothing here blocks: no disk, no SQLite.
 *
 * Sending: at most one response in flight per stream; what is owed is worked out afresh from the
 * newest snapshot each time a send completes (latest wins, nothing queues). Types go out in
 * make-before-break order CDS, EDS, LDS, RDS, and for Envoy LDS/RDS wait while a CDS or EDS
 * response is unanswered.
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "wire.h"
#include "xalloc.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Discovery__V3__DiscoveryRequest DiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest DeltaDiscoveryRequest;
typedef Envoy__Config__Core__V3__Node Node;

/* ======================================================================================== */
/* name sets and name -> version maps                                                       */
/* ======================================================================================== */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_clear(xds_names *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
    }
    free(s->names);
    s->names = NULL;
    s->n = 0;
}

static bool names_has(const xds_names *s, const char *name)
{
    return s->n && bsearch(&name, s->names, s->n, sizeof(char *), cmp_str) != NULL;
}

static void names_add(xds_names *s, const char *name)
{
    if (names_has(s, name)) {
        return;
    }
    s->names = xrealloc(s->names, (s->n + 1) * sizeof(char *));
    s->names[s->n++] = xstrdup(name);
    qsort(s->names, s->n, sizeof(char *), cmp_str);
}

static void names_remove(xds_names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->names[i], name) == 0) {
            free(s->names[i]);
            memmove(&s->names[i], &s->names[i + 1], (s->n - i - 1) * sizeof(char *));
            s->n--;
            return;
        }
    }
}

static xds_kv *kv_find(const xds_kvset *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->items[i].name, name) == 0) {
            return &m->items[i];
        }
    }
    return NULL;
}

static void kv_put(xds_kvset *m, const char *name, const char *version)
{
    xds_kv *kv = kv_find(m, name);
    if (kv == NULL) {
        m->items = xrealloc(m->items, (m->n + 1) * sizeof(*m->items));
        kv = &m->items[m->n++];
        kv->name = xstrdup(name);
    }
    snprintf(kv->version, sizeof(kv->version), "%s", version);
}

static void kv_remove(xds_kvset *m, const char *name)
{
    xds_kv *kv = kv_find(m, name);
    if (kv != NULL) {
        free(kv->name);
        *kv = m->items[--m->n];
    }
}

static void kv_clear(xds_kvset *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].name);
    }
    free(m->items);
    m->items = NULL;
    m->n = 0;
}

/* ======================================================================================== */
/* stream lifecycle                                                                         */
/* ======================================================================================== */

static void *open_stream(struct xds_server *srv, hf_stream *t, const char *peer, bool delta)
{
    xds_stream *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->srv = srv;
    s->transport = t;
    s->delta = delta;
    s->info.stream_id = atomic_fetch_add(&srv->next_stream_id, 1) + 1;
    s->info.connected_since = hf_now_ms();
    snprintf(s->info.peer, sizeof(s->info.peer), "%s", peer);
    pthread_mutex_lock(&srv->reg_lock);
    s->next = srv->streams;
    if (srv->streams != NULL) {
        srv->streams->prev = s;
    }
    srv->streams = s;
    pthread_mutex_unlock(&srv->reg_lock);
    return s;
}

static void *open_sotw(void *ctx, hf_stream *t, const char *peer)
{
    return open_stream(ctx, t, peer, false);
}

static void *open_delta(void *ctx, hf_stream *t, const char *peer)
{
    return open_stream(ctx, t, peer, true);
}

static void on_closed(void *user)
{
    xds_stream *s = user;
    struct xds_server *srv = s->srv;
    pthread_mutex_lock(&srv->reg_lock);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        srv->streams = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    pthread_mutex_unlock(&srv->reg_lock);

    pthread_mutex_lock(&s->lock);
    s->closed = true;
    bool had_node = s->have_node;
    pthread_mutex_unlock(&s->lock);
    if (had_node) {
        atomic_fetch_sub(&srv->connected[s->info.kind], 1);
        xds__update_gauges(srv);
        xds__event(srv, "proxy.disconnect", s->info.node_id, "%s node %s (group %s) disconnected",
                   xds_node_kind_name(s->info.kind), s->info.node_id, s->info.group);
    }
    for (int t = 0; t < XDS_NTYPES; t++) {
        free(s->types[t].nack_error);
        names_clear(&s->types[t].sub);
        kv_clear(&s->types[t].known);
        kv_clear(&s->types[t].pending);
        kv_clear(&s->types[t].rejected);
        xds__sent_clear(&s->types[t]);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void on_sent_or_wake(void *user, bool sent)
{
    xds_stream *s = user;
    pthread_mutex_lock(&s->lock);
    if (sent) {
        s->send_busy = false;
    }
    xds__pump(s);
    pthread_mutex_unlock(&s->lock);
}

static void on_sent(void *user)
{
    on_sent_or_wake(user, true);
}

/* Ends the stream for a protocol error; called with s->lock held. */
static void fail(xds_stream *s, enum hf_grpc_status status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hf_warn("xds", "stream %llu from %s (%s): %s", (unsigned long long)s->info.stream_id,
            s->info.peer, s->info.node_id[0] ? s->info.node_id : "no node yet", msg);
    hf_counter_add("holdfast_xds_stream_errors_total", "Streams ended for bad input.", "", 1);
    hf_stream_finish(s->transport, status, msg);
}

/* Records the node of the first request. Returns false (stream failed) without one. */
static bool take_node(xds_stream *s, const Node *node)
{
    if (s->have_node) {
        return true;
    }
    if (node == NULL || node->id == NULL || node->id[0] == '\0') {
        fail(s, HF_GRPC_INVALID_ARGUMENT, "the first request must carry node.id");
        return false;
    }
    if (!xds__authorize_ads(s->srv, s->transport, node->id, node->cluster)) {
        return false; /* PERMISSION_DENIED, audited */
    }
    xds_stream_info *in = &s->info;
    snprintf(in->node_id, sizeof(in->node_id), "%s", node->id);
    snprintf(in->group, sizeof(in->group), "%s", node->cluster ? node->cluster : "");
    const char *ua = node->user_agent_name ? node->user_agent_name : "";
    const char *uv =
        node->user_agent_version_type_case ==
                ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION
            ? node->user_agent_version
            : "";
    snprintf(in->user_agent, sizeof(in->user_agent), "%s%s%s", ua, uv[0] ? " " : "", uv);
    in->kind = strncmp(ua, "gRPC", 4) == 0 ? XDS_NODE_GRPC : XDS_NODE_ENVOY;
    if (node->user_agent_version_type_case ==
            ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_BUILD_VERSION &&
        node->user_agent_build_version != NULL && node->user_agent_build_version->version) {
        const Envoy__Type__V3__SemanticVersion *sv = node->user_agent_build_version->version;
        in->build_version =
            (xds_build_version){true, sv->major_number, sv->minor_number, sv->patch};
    }
    xds_snapshot *snap = xds__snapshot(s->srv);
    xds_view *v = xds_snapshot_view(snap, in->group, in->kind);
    in->group_known = v->group[0] != '\0';
    xds_snapshot_unref(snap);
    s->have_node = true;
    atomic_fetch_add(&s->srv->connected[in->kind], 1);
    xds__update_gauges(s->srv);
    xds__event(s->srv, "proxy.connect", in->node_id,
               "%s node %s connected from %s (group %s%s, %s, %s)", xds_node_kind_name(in->kind),
               in->node_id, in->peer, in->group, in->group_known ? "" : ": unknown",
               in->user_agent[0] ? in->user_agent : "no user agent",
               s->delta ? "delta" : "state of the world");
    return true;
}

/* Resolves a request's type URL; fails the stream for an unknown one. */
static bool take_type(xds_stream *s, const char *url, enum xds_type *t)
{
    if (url == NULL || url[0] == '\0') {
        fail(s, HF_GRPC_INVALID_ARGUMENT, "ADS requests must name a type_url");
        return false;
    }
    if (xds_type_from_url(url, t) != 0) {
        fail(s, HF_GRPC_INVALID_ARGUMENT, "unknown type_url '%.120s'", url);
        return false;
    }
    return true;
}

static void labels_for(enum xds_type t, char *buf, size_t len)
{
    snprintf(buf, len, "type=\"%s\"", xds_type_name(t));
}

/* An ACK or NACK of the response with the type's current nonce. */
static void take_reply(xds_stream *s, enum xds_type t, const char *error)
{
    xds_type_state *ts = &s->types[t];
    char labels[32];
    labels_for(t, labels, sizeof(labels));
    ts->awaiting = false;
    if (error != NULL) {
        memcpy(ts->nack_version, ts->sent, HF_VERSION_LEN);
        free(ts->nack_error);
        ts->nack_error = xstrndup(error, 500);
        ts->nack_at = hf_now_ms();
        hf_counter_add("holdfast_xds_nacks_total", "Responses rejected by proxies.", labels, 1);
        hf_warn("xds", "%s NACKed %s version %s: %s", s->info.node_id, xds_type_name(t), ts->sent,
                error);
        xds__event(s->srv, "proxy.nack", s->info.node_id, "%s rejected %s version %s: %.300s",
                   s->info.node_id, xds_type_name(t), ts->sent, error);
        return;
    }
    memcpy(ts->acked, ts->sent, HF_VERSION_LEN);
    ts->acked_at = hf_now_ms();
    hf_counter_add("holdfast_xds_acks_total", "Responses accepted by proxies.", labels, 1);
    hf_histogram_observe("holdfast_xds_push_to_ack_seconds",
                         "Time from sending a response to its ACK.", labels,
                         (double)(hf_mono_ns() - ts->sent_ns) / 1e9);
}

/* ======================================================================================== */
/* state of the world                                                                       */
/* ======================================================================================== */

static void on_sotw_request(xds_stream *s, DiscoveryRequest *rq)
{
    enum xds_type t;
    if (!take_node(s, rq->node) || !take_type(s, rq->type_url, &t)) {
        return;
    }
    xds_type_state *ts = &s->types[t];
    const char *nonce = rq->response_nonce ? rq->response_nonce : "";
    if (nonce[0] != '\0') {
        if (strcmp(nonce, ts->nonce) != 0) {
            return; /* stale: an answer to an older response; ignored */
        }
        const char *err = NULL;
        if (rq->error_detail != NULL) {
            err = rq->error_detail->message && rq->error_detail->message[0]
                      ? rq->error_detail->message
                      : "(no message)";
        }
        if (ts->awaiting) {
            take_reply(s, t, err);
        }
    } else {
        /* A (re)subscription. A client that already holds the current version is not
         * pushed again: remember what it says it has. */
        ts->active = true;
        snprintf(ts->initial, sizeof(ts->initial), "%s", rq->version_info ? rq->version_info : "");
    }
    names_clear(&ts->sub);
    ts->sub.wildcard = rq->n_resource_names == 0;
    for (size_t i = 0; i < rq->n_resource_names; i++) {
        if (strcmp(rq->resource_names[i], "*") == 0) {
            ts->sub.wildcard = true;
        } else {
            names_add(&ts->sub, rq->resource_names[i]);
        }
    }
    xds__pump(s);
}

/* Starts sending parts as one response of type t; called with s->lock held. */
static bool send_parts(xds_stream *s, enum xds_type t, hf_rbuf *const *parts, size_t n)
{
    if (hf_stream_send(s->transport, parts, n) != HF_OK) {
        return false;
    }
    s->send_busy = true;
    xds_type_state *ts = &s->types[t];
    ts->awaiting = true;
    ts->sent_ns = hf_mono_ns();
    ts->sent_at = hf_now_ms();
    char labels[32];
    labels_for(t, labels, sizeof(labels));
    hf_counter_add("holdfast_xds_pushes_total", "Responses sent to proxies.", labels, 1);
    return true;
}

static hf_rbuf *next_nonce(xds_stream *s, xds_type_state *ts)
{
    snprintf(ts->nonce, sizeof(ts->nonce), "%llu", (unsigned long long)++s->nonce_counter);
    hf_buf b = {0};
    wire_put_string(&b, 5, ts->nonce);
    hf_rbuf *r = hf_rbuf_copy(b.data, b.len);
    hf_buf_destroy(&b);
    return r;
}

/* Envoy: LDS and RDS wait while clusters or endpoints are in flight, and until Envoy has asked
 * for the endpoints of every cluster it was sent (make before break: a route never points at a
 * cluster still warming). */
static bool held_back(const xds_stream *s, const xds_view *v, enum xds_type t)
{
    if (s->info.kind != XDS_NODE_ENVOY || (t != XDS_LDS && t != XDS_RDS)) {
        return false;
    }
    const xds_type_state *cds = &s->types[XDS_CDS];
    const xds_type_state *eds = &s->types[XDS_EDS];
    if (cds->awaiting || eds->awaiting) {
        return true;
    }
    if (!cds->active || eds->sub.wildcard) {
        return false;
    }
    const xds_resource_list *clusters = &v->res[XDS_CDS];
    for (size_t i = 0; i < clusters->n; i++) {
        if (!eds->active || !names_has(&eds->sub, clusters->items[i].name)) {
            return true;
        }
    }
    return false;
}

/* Tries to send type t; returns true when a response went out. */
static bool pump_sotw_type(xds_stream *s, xds_view *v, enum xds_type t)
{
    xds_type_state *ts = &s->types[t];
    char version[HF_VERSION_LEN];
    hf_rbuf *body = xds_view_sotw_body(v, t, &ts->sub, version);
    bool owed = strcmp(version, ts->sent) != 0 && strcmp(version, ts->nack_version) != 0;
    /* Reconnected holding the current version: nothing to send to Envoy. A gRPC client starts
     * load reporting only once its new ADS stream has seen a response: answer it (issue 12
     * item 9; after a control-plane restart its drain would get no more samples). */
    if (owed && ts->sent[0] == '\0' && strcmp(version, ts->initial) == 0 &&
        s->info.kind != XDS_NODE_GRPC) {
        memcpy(ts->sent, version, HF_VERSION_LEN);
        memcpy(ts->acked, version, HF_VERSION_LEN);
        xds__sent_sotw(ts, body); /* the client holds them */
        owed = false;
    }
    bool sent = false;
    if (owed) {
        hf_rbuf *parts[2] = {body, next_nonce(s, ts)};
        sent = send_parts(s, t, parts, 2);
        if (sent) {
            memcpy(ts->sent, version, HF_VERSION_LEN);
            xds__sent_sotw(ts, body);
        }
        hf_rbuf_unref(parts[1]);
    }
    hf_rbuf_unref(body);
    return sent;
}

/* ======================================================================================== */
/* delta                                                                                    */
/* ======================================================================================== */

static void on_delta_request(xds_stream *s, DeltaDiscoveryRequest *rq)
{
    enum xds_type t;
    if (!take_node(s, rq->node) || !take_type(s, rq->type_url, &t)) {
        return;
    }
    xds_type_state *ts = &s->types[t];
    const char *nonce = rq->response_nonce ? rq->response_nonce : "";
    if (!ts->active) {
        ts->active = true;
        /* The first request: no names means the legacy wildcard (LDS, CDS). */
        ts->sub.wildcard = rq->n_resource_names_subscribe == 0;
        for (size_t i = 0; i < rq->n_initial_resource_versions; i++) {
            kv_put(&ts->known, rq->initial_resource_versions[i]->key,
                   rq->initial_resource_versions[i]->value);
        }
    }
    if (nonce[0] != '\0' && strcmp(nonce, ts->nonce) == 0 && ts->awaiting) {
        const char *err = NULL;
        if (rq->error_detail != NULL) {
            err = rq->error_detail->message && rq->error_detail->message[0]
                      ? rq->error_detail->message
                      : "(no message)";
        }
        for (size_t i = 0; i < ts->pending.n; i++) {
            xds_kv *kv = &ts->pending.items[i];
            if (err != NULL) {
                if (kv->version[0] != '\0') {
                    kv_put(&ts->rejected, kv->name, kv->version);
                }
            } else if (kv->version[0] == '\0') {
                kv_remove(&ts->known, kv->name);
            } else {
                kv_put(&ts->known, kv->name, kv->version);
            }
        }
        kv_clear(&ts->pending);
        take_reply(s, t, err);
    }
    for (size_t i = 0; i < rq->n_resource_names_subscribe; i++) {
        if (strcmp(rq->resource_names_subscribe[i], "*") == 0) {
            ts->sub.wildcard = true;
        } else {
            names_add(&ts->sub, rq->resource_names_subscribe[i]);
        }
    }
    for (size_t i = 0; i < rq->n_resource_names_unsubscribe; i++) {
        const char *name = rq->resource_names_unsubscribe[i];
        if (strcmp(name, "*") == 0) {
            ts->sub.wildcard = false;
        } else {
            names_remove(&ts->sub, name);
            kv_remove(&ts->known, name);
        }
    }
    xds__pump(s);
}

/* Adds resource r to a delta response when the client lacks this version of it. */
static void delta_consider(xds_type_state *ts, const xds_resource *r, hf_buf *b)
{
    const xds_kv *have = kv_find(&ts->known, r->name);
    const xds_kv *bad = kv_find(&ts->rejected, r->name);
    if ((have != NULL && strcmp(have->version, r->version) == 0) ||
        (bad != NULL && strcmp(bad->version, r->version) == 0)) {
        return;
    }
    wire_put_bytes(b, 2, r->delta->data, r->delta->len); /* resources */
    kv_put(&ts->pending, r->name, r->version);
}

static bool pump_delta_type(xds_stream *s, xds_view *v, enum xds_type t, uint64_t generation)
{
    xds_type_state *ts = &s->types[t];
    if (ts->awaiting) {
        return false; /* one unanswered response per type keeps the bookkeeping exact */
    }
    const xds_resource_list *l = &v->res[t];
    hf_buf b = {0};
    kv_clear(&ts->pending);
    if (ts->sub.wildcard) {
        for (size_t i = 0; i < l->n; i++) {
            delta_consider(ts, &l->items[i], &b);
        }
    } else {
        for (size_t i = 0; i < ts->sub.n; i++) {
            const xds_resource *r = xds_resource_find(l, ts->sub.names[i]);
            if (r != NULL) {
                delta_consider(ts, r, &b);
            }
        }
    }
    for (size_t i = 0; i < ts->known.n; i++) {
        if (xds_resource_find(l, ts->known.items[i].name) == NULL) {
            wire_put_string(&b, 6, ts->known.items[i].name); /* removed_resources */
            kv_put(&ts->pending, ts->known.items[i].name, "");
        }
    }
    bool sent = false;
    if (ts->pending.n > 0) {
        char sys[24];
        snprintf(sys, sizeof(sys), "%llu", (unsigned long long)generation);
        wire_put_string(&b, 1, sys);             /* system_version_info */
        wire_put_string(&b, 4, xds_type_url(t)); /* type_url */
        hf_rbuf *body = hf_rbuf_copy(b.data, b.len);
        hf_rbuf *parts[2] = {body, next_nonce(s, ts)};
        sent = send_parts(s, t, parts, 2);
        if (sent) {
            snprintf(ts->sent, sizeof(ts->sent), "%016llx",
                     (unsigned long long)hf_hash_update(HF_HASH_INIT, body->data, body->len));
            xds__sent_delta(&ts->last, v, t, &ts->pending);
        } else {
            kv_clear(&ts->pending);
        }
        hf_rbuf_unref(parts[0]);
        hf_rbuf_unref(parts[1]);
    }
    hf_buf_destroy(&b);
    return sent;
}

/* ======================================================================================== */

void xds__pump(xds_stream *s)
{
    if (s->closed || s->send_busy || !s->have_node) {
        return;
    }
    xds_snapshot *snap = xds__snapshot(s->srv);
    xds_view *v = xds_snapshot_view(snap, s->info.group, s->info.kind);
    for (int t = 0; t < XDS_NTYPES; t++) {
        if (!s->types[t].active || held_back(s, v, (enum xds_type)t)) {
            continue;
        }
        bool sent = s->delta ? pump_delta_type(s, v, (enum xds_type)t, snap->generation)
                             : pump_sotw_type(s, v, (enum xds_type)t);
        if (sent || s->send_busy) {
            break;
        }
    }
    xds_snapshot_unref(snap);
}

static void on_message(void *user, const uint8_t *data, size_t len, bool delta)
{
    xds_stream *s = user;
    pthread_mutex_lock(&s->lock);
    if (delta) {
        DeltaDiscoveryRequest *rq =
            envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, data);
        if (rq == NULL) {
            fail(s, HF_GRPC_INVALID_ARGUMENT, "cannot decode a DeltaDiscoveryRequest (%zu bytes)",
                 len);
        } else {
            on_delta_request(s, rq);
            envoy__service__discovery__v3__delta_discovery_request__free_unpacked(rq, NULL);
        }
    } else {
        DiscoveryRequest *rq =
            envoy__service__discovery__v3__discovery_request__unpack(NULL, len, data);
        if (rq == NULL) {
            fail(s, HF_GRPC_INVALID_ARGUMENT, "cannot decode a DiscoveryRequest (%zu bytes)", len);
        } else {
            on_sotw_request(s, rq);
            envoy__service__discovery__v3__discovery_request__free_unpacked(rq, NULL);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_sotw_message(void *user, const uint8_t *data, size_t len)
{
    on_message(user, data, len, false);
}

static void on_delta_message(void *user, const uint8_t *data, size_t len)
{
    on_message(user, data, len, true);
}

/* A new snapshot: pump on the stream's own thread (see xds.c rebuild). */
static void on_wake(void *user)
{
    on_sent_or_wake(user, false);
}

const hf_stream_handler xds__sotw_handler = {open_sotw, on_sotw_message, on_sent, on_closed,
                                             on_wake};
const hf_stream_handler xds__delta_handler = {open_delta, on_delta_message, on_sent, on_closed,
                                              on_wake};
