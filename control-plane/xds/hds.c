/*
 * The HDS protocol adapter (envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck),
 * DESIGN §6. Health checkers (holdfast-shim, or Envoy with hds_config) connect and announce
 * themselves; this file turns their messages into calls on the health module
 * (control-plane/health: assignment, verdict table, quorum) and the module's assignments into
 * HealthCheckSpecifiers. The decisions (evict / restore) are stored with their audit events and
 * reach proxies through the next snapshot. A checker that disconnects decides nothing by itself
 * (fail static): its endpoints go to others and are re-decided.
 *
 * gRPC threads only decode and queue; the table, the store and the specifiers are on the xDS
 * thread. Lock order: srv->hds_lock, then a checker's lock.
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "endpoint_key.h"
#include "hash.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "xalloc.h"

#include "envoy/service/health/v3/hds.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Health__V3__HealthCheckRequestOrEndpointHealthResponse HdsMessage;
typedef Envoy__Service__Health__V3__HealthCheckSpecifier Specifier;
typedef Envoy__Service__Health__V3__ClusterHealthCheck ClusterHealthCheck;
typedef Envoy__Service__Health__V3__LocalityEndpoints LocalityEndpoints;
typedef Envoy__Config__Core__V3__HealthCheck HealthCheck;

#define HDS_HELLO                                                                                  \
    ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__REQUEST_TYPE_HEALTH_CHECK_REQUEST
#define HDS_REPORT                                                                                 \
    ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__REQUEST_TYPE_ENDPOINT_HEALTH_RESPONSE

struct hds_checker {
    struct hds_checker *prev, *next; /* under srv->hds_lock */
    struct xds_server *srv;
    hf_stream *transport;
    pthread_mutex_t lock; /* below */
    bool registered;      /* its HealthCheckRequest came */
    bool closed;
    bool send_busy;
    char node_id[128];
    xds_principal principal; /* set before registered */
    char zone[HF_SHORT_MAX];
    int64_t connected_since;
    size_t n_endpoints;
    hf_rbuf *pending; /* the newest specifier */
    uint64_t pending_hash;
    uint64_t sent_hash;
};

/* ======================================================================================== */
/* gRPC side                                                                                */
/* ======================================================================================== */

void xds__hds_wake(struct xds_server *srv, bool dirty)
{
    pthread_mutex_lock(&srv->lock);
    if (dirty) {
        srv->hds_dirty = true;
    } else {
        srv->hds_pending = true;
    }
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void try_send(hds_checker *c)
{
    if (c->closed || c->send_busy || c->pending == NULL || c->pending_hash == c->sent_hash) {
        return;
    }
    if (hf_stream_send(c->transport, &c->pending, 1) == HF_OK) {
        c->send_busy = true;
        c->sent_hash = c->pending_hash;
    }
}

static void *hds_open(void *ctx, hf_stream *t, const char *peer)
{
    (void)peer;
    struct xds_server *srv = ctx;
    hds_checker *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->transport = t;
    c->connected_since = hf_now_ms();
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_lock(&srv->hds_lock);
    c->next = srv->checkers;
    if (srv->checkers) {
        srv->checkers->prev = c;
    }
    srv->checkers = c;
    pthread_mutex_unlock(&srv->hds_lock);
    return c;
}

/* May the stream register as checker node_id? Refuses it (PERMISSION_DENIED, audited) if not. */
static bool authorize(hds_checker *c, const char *node_id)
{
    xds__principal_of(c->transport, &c->principal);
    char why[256];
    if (xds_authz_hds(&c->principal, node_id, why, sizeof(why))) {
        return true;
    }
    xds__deny(c->srv, c->transport, "HDS", node_id, why);
    return false;
}

/* Ends the live streams of the same authenticated checker as c: the newer one wins. */
static void replace_older(hds_checker *c)
{
    pthread_mutex_lock(&c->srv->hds_lock);
    for (hds_checker *o = c->srv->checkers; o != NULL; o = o->next) {
        if (o == c) {
            continue;
        }
        pthread_mutex_lock(&o->lock);
        if (o->registered && xds_authz_hds_replaces(&c->principal, &o->principal)) {
            hf_info("hds", "checker %s: a newer stream replaces an older one", c->node_id);
            hf_stream_finish(o->transport, HF_GRPC_ABORTED,
                             "replaced by a newer stream of the same checker");
        }
        pthread_mutex_unlock(&o->lock);
    }
    pthread_mutex_unlock(&c->srv->hds_lock);
}

static enum hf_health verdict_of(Envoy__Config__Core__V3__HealthStatus s)
{
    switch (s) {
    case ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY:
        return HF_HEALTH_HEALTHY;
    case ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY:
    case ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__TIMEOUT:
        return HF_HEALTH_UNHEALTHY;
    default:
        return HF_HEALTH_UNKNOWN;
    }
}

/* Copies a peer-supplied string for logs, events and the REST API, escaped as every logged peer
 * string is (hf_escape: control characters and bytes that are not UTF-8 as \xNN). */
static void escape(const char *in, char *out, size_t len)
{
    hf_escape(in, strlen(in), out, len);
}

/* The queue grows by doubling: its length is a power of two whenever it is full. */
static hf_verdict *queue_slot(struct xds_server *srv)
{
    size_t n = srv->n_vq;
    if (n == 0 || (n & (n - 1)) == 0) {
        srv->vq = xrealloc(srv->vq, (n ? 2 * n : 16) * sizeof(*srv->vq));
    }
    return &srv->vq[srv->n_vq++];
}

/* Queues the verdicts of one report for the xDS thread. The reason of a verdict rides in the
 * reported endpoint's hostname (docs/health.md). */
static void take_report(hds_checker *c, const Envoy__Service__Health__V3__EndpointHealthResponse *r)
{
    struct xds_server *srv = c->srv;
    int64_t now = hf_now_ms();
    size_t queued = 0;
    pthread_mutex_lock(&srv->hds_lock);
    for (size_t i = 0; i < r->n_cluster_endpoints_health; i++) {
        const Envoy__Service__Health__V3__ClusterEndpointsHealth *ch =
            r->cluster_endpoints_health[i];
        for (size_t l = 0; l < ch->n_locality_endpoints_health; l++) {
            const Envoy__Service__Health__V3__LocalityEndpointsHealth *le =
                ch->locality_endpoints_health[l];
            for (size_t e = 0; e < le->n_endpoints_health; e++) {
                const Envoy__Service__Health__V3__EndpointHealth *eh = le->endpoints_health[e];
                const Envoy__Config__Core__V3__SocketAddress *sa =
                    eh->endpoint && eh->endpoint->address &&
                            eh->endpoint->address->address_case ==
                                ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS
                        ? eh->endpoint->address->socket_address
                        : NULL;
                enum hf_health v = verdict_of(eh->health_status);
                if (sa == NULL || sa->address == NULL || v == HF_HEALTH_UNKNOWN ||
                    srv->n_vq >= 100000 || ch->cluster_name == NULL) {
                    continue;
                }
                hf_verdict *q = queue_slot(srv);
                memset(q, 0, sizeof(*q));
                if (eh->endpoint->hostname != NULL) {
                    escape(eh->endpoint->hostname, q->reason, sizeof(q->reason));
                }
                snprintf(q->service, sizeof(q->service), "%s", ch->cluster_name);
                snprintf(q->address, sizeof(q->address), "%s", sa->address);
                q->port = sa->port_value;
                snprintf(q->checker, sizeof(q->checker), "%s", c->node_id);
                q->verdict = v;
                q->at = now;
                queued++;
            }
        }
    }
    pthread_mutex_unlock(&srv->hds_lock);
    hf_counter_add("holdfast_hds_reports_total", "Health reports received from checkers.", "", 1);
    if (queued > 0) {
        xds__hds_wake(srv, false);
    }
}

static void hds_message(void *user, const uint8_t *data, size_t len)
{
    hds_checker *c = user;
    HdsMessage *m =
        envoy__service__health__v3__health_check_request_or_endpoint_health_response__unpack(
            NULL, len, data);
    pthread_mutex_lock(&c->lock);
    const char *bad = NULL;
    bool denied = false;
    /* A oneof: its members share a union, so only request_type_case tells which is set. */
    bool is_hello = m != NULL && m->request_type_case == HDS_HELLO;
    bool is_report = m != NULL && m->request_type_case == HDS_REPORT;
    if (m == NULL) {
        bad = "cannot decode a HealthCheckRequestOrEndpointHealthResponse";
    } else if (!is_hello && !is_report) {
        bad = "the message is neither a HealthCheckRequest nor a health report";
    } else if (is_hello) {
        const Envoy__Config__Core__V3__Node *n = m->health_check_request->node;
        if (n == NULL || n->id == NULL || n->id[0] == '\0') {
            bad = "the HealthCheckRequest must carry node.id";
        } else if (!c->registered && !authorize(c, n->id)) {
            denied = true;
        } else if (!c->registered) {
            snprintf(c->node_id, sizeof(c->node_id), "%s", n->id);
            snprintf(c->zone, sizeof(c->zone), "%s",
                     n->locality && n->locality->zone ? n->locality->zone : "");
            c->registered = true;
        }
    } else if (!c->registered) {
        bad = "a health report came before the HealthCheckRequest";
    }
    bool announce = is_hello && bad == NULL && !denied;
    char node[4 * sizeof(c->node_id)], zone[4 * sizeof(c->zone)];
    escape(c->node_id, node, sizeof(node));
    escape(c->zone, zone, sizeof(zone));
    if (bad != NULL) {
        hf_warn("hds", "checker %s: %s", node[0] ? node : "(new)", bad);
        hf_stream_finish(c->transport, HF_GRPC_INVALID_ARGUMENT, bad);
    }
    pthread_mutex_unlock(&c->lock);
    if (announce) {
        hf_info("hds", "health checker %s connected (zone %s)", node, zone);
        xds__event(c->srv, "checker.connect", node, "health checker %s connected (zone %s)", node,
                   zone[0] ? zone : "none");
        replace_older(c);
        xds__hds_wake(c->srv, true);
    }
    if (bad == NULL && is_report && m->endpoint_health_response != NULL) {
        take_report(c, m->endpoint_health_response);
    }
    if (m != NULL) {
        envoy__service__health__v3__health_check_request_or_endpoint_health_response__free_unpacked(
            m, NULL);
    }
}

static void hds_sent(void *user)
{
    hds_checker *c = user;
    pthread_mutex_lock(&c->lock);
    c->send_busy = false;
    try_send(c);
    pthread_mutex_unlock(&c->lock);
}

static void hds_wake_cb(void *user)
{
    hds_sent(user);
}

static void hds_closed(void *user)
{
    hds_checker *c = user;
    struct xds_server *srv = c->srv;
    pthread_mutex_lock(&srv->hds_lock);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        srv->checkers = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&srv->hds_lock);
    pthread_mutex_lock(&c->lock);
    c->closed = true;
    bool registered = c->registered;
    pthread_mutex_unlock(&c->lock);
    if (registered) {
        /* Fail static: its endpoints go to others, whose verdicts decide from then on. */
        char node[4 * sizeof(c->node_id)];
        escape(c->node_id, node, sizeof(node));
        hf_info("hds", "health checker %s disconnected", node);
        xds__event(srv, "checker.disconnect", node,
                   "health checker %s disconnected; its endpoints are reassigned", node);
        xds__hds_wake(srv, true);
    }
    hf_rbuf_unref(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const hf_stream_handler xds__hds_handler = {hds_open, hds_message, hds_sent, hds_closed,
                                            hds_wake_cb};

/* ======================================================================================== */
/* xDS thread: the input, assignments and specifiers                                        */
/* ======================================================================================== */

/* A hash of what a checker is told about a service: a change re-sends its specifiers. */
static uint64_t policy_hash(const hf_service *s)
{
    const hf_health_check *hc = &s->health_check;
    uint32_t v[6] = {(uint32_t)hc->protocol,  hc->interval_ms,       hc->timeout_ms,
                     hc->unhealthy_threshold, hc->healthy_threshold, hc->reuse_connection};
    return hf_hash_str(hf_hash_str(hf_hash_update(HF_HASH_INIT, v, sizeof(v)), hc->path),
                       hc->service_name);
}

static int cmp_fleet(const void *a, const void *b)
{
    return strcmp(((const hf_fleet *)a)->name, ((const hf_fleet *)b)->name);
}

/* Appends to out what must be checked of one service: endpoints not disabled, of fleets not
 * retired. Returns how many. */
static size_t targets_of(const store_input_service *is, hf_hc_endpoint *out)
{
    uint64_t policy = policy_hash(&is->svc);
    size_t count = 0;
    for (size_t i = 0; i < is->n_endpoints; i++) {
        const hf_endpoint *ep = &is->endpoints[i];
        hf_fleet probe;
        snprintf(probe.name, sizeof(probe.name), "%s", ep->fleet);
        const hf_fleet *f =
            bsearch(&probe, is->fleets, is->n_fleets, sizeof(*is->fleets), cmp_fleet);
        if (ep->admin_state == HF_ADMIN_DISABLED || f == NULL || f->role == HF_ROLE_RETIRED) {
            continue;
        }
        hf_hc_endpoint *e = &out[count++];
        memset(e, 0, sizeof(*e));
        hf_endpoint_key_set(&e->key, is->svc.name, ep->address, ep->port);
        memcpy(e->zone, ep->zone, sizeof(e->zone));
        memcpy(e->fleet, ep->fleet, sizeof(e->fleet));
        e->policy = policy;
        e->health = ep->health;
    }
    return count;
}

/* Brings the table's endpoints up to date with the configuration the snapshot was built from
 * (srv->input: no read of its own), re-reading only the services whose revision moved since the
 * last call (all of them after the table was made). hds_lock held. */
static void feed(struct xds_server *srv, int64_t mono, hf_hc_decisions *d)
{
    const store_input *in = srv->input;
    struct hds_rev *old = srv->hds_revs;
    size_t nold = srv->n_hds_revs, o = 0;
    struct hds_rev *revs = xcalloc(in->n_services + 1, sizeof(*revs));
    const char **changed = xcalloc(in->n_services + nold + 1, sizeof(*changed));
    size_t nchanged = 0, neps = 0, cap = 0;
    for (size_t i = 0; i < in->n_services; i++) {
        const store_input_service *is = in->services[i];
        snprintf(revs[i].name, sizeof(revs[i].name), "%s", is->svc.name);
        revs[i].rev = is->rev;
        while (o < nold && strcmp(old[o].name, is->svc.name) < 0) {
            changed[nchanged++] = old[o++].name; /* removed */
        }
        bool same = o < nold && strcmp(old[o].name, is->svc.name) == 0 && old[o].rev == is->rev;
        o += o < nold && strcmp(old[o].name, is->svc.name) == 0;
        if (!same) {
            changed[nchanged++] = is->svc.name;
            cap += is->n_endpoints;
        }
    }
    while (o < nold) {
        changed[nchanged++] = old[o++].name;
    }
    /* names sorted: both lists are by name and merged in order */
    hf_hc_endpoint *eps = xcalloc(cap + 1, sizeof(*eps));
    for (size_t c = 0; c < nchanged; c++) {
        const store_input_service *is = store_input_service_find(in, changed[c]);
        if (is != NULL) {
            neps += targets_of(is, &eps[neps]);
        }
    }
    hf_health_sync_services(srv->health, changed, nchanged, eps, neps, mono, d);
    free(eps);
    free(changed);
    free(old);
    srv->hds_revs = revs;
    srv->n_hds_revs = in->n_services;
}

static Google__Protobuf__Duration *dur_ms(Google__Protobuf__Duration *d, uint32_t ms)
{
    google__protobuf__duration__init(d);
    d->seconds = ms / 1000;
    d->nanos = (int32_t)(ms % 1000) * 1000000;
    return d;
}

static int cmp_ep(const void *a, const void *b)
{
    const hf_hc_endpoint *x = *(const hf_hc_endpoint *const *)a;
    const hf_hc_endpoint *y = *(const hf_hc_endpoint *const *)b;
    int c = strcmp(x->key.service, y->key.service);
    c = c ? c : strcmp(x->zone, y->zone);
    return c ? c : strcmp(x->fleet, y->fleet);
}

/* The check policy of one service, in storage that lives as long as the specifier. */
struct policy_msg {
    HealthCheck hc;
    HealthCheck *hcp;
    Google__Protobuf__Duration timeout, interval;
    Google__Protobuf__UInt32Value unhealthy, healthy;
    Google__Protobuf__BoolValue reuse;
    Envoy__Config__Core__V3__HealthCheck__HttpHealthCheck http;
    Envoy__Config__Core__V3__HealthCheck__TcpHealthCheck tcp;
    Envoy__Config__Core__V3__HealthCheck__GrpcHealthCheck grpc;
};

static void policy_init(struct policy_msg *m, const hf_service *svc)
{
    const hf_health_check *p = &svc->health_check;
    envoy__config__core__v3__health_check__init(&m->hc);
    m->hc.timeout = dur_ms(&m->timeout, p->timeout_ms);
    m->hc.interval = dur_ms(&m->interval, p->interval_ms);
    google__protobuf__uint32_value__init(&m->unhealthy);
    m->unhealthy.value = p->unhealthy_threshold;
    google__protobuf__uint32_value__init(&m->healthy);
    m->healthy.value = p->healthy_threshold;
    m->hc.unhealthy_threshold = &m->unhealthy;
    m->hc.healthy_threshold = &m->healthy;
    m->hc.interval_jitter_percent = 10;
    google__protobuf__bool_value__init(&m->reuse);
    m->reuse.value = p->reuse_connection;
    m->hc.reuse_connection = &m->reuse;
    if (p->protocol == HF_HC_HTTP) {
        envoy__config__core__v3__health_check__http_health_check__init(&m->http);
        m->http.path = (char *)p->path;
        m->hc.health_checker_case =
            ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_HTTP_HEALTH_CHECK;
        m->hc.http_health_check = &m->http;
    } else if (p->protocol == HF_HC_GRPC) {
        envoy__config__core__v3__health_check__grpc_health_check__init(&m->grpc);
        m->grpc.service_name = (char *)p->service_name;
        m->hc.health_checker_case =
            ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_GRPC_HEALTH_CHECK;
        m->hc.grpc_health_check = &m->grpc;
    } else {
        envoy__config__core__v3__health_check__tcp_health_check__init(&m->tcp);
        m->hc.health_checker_case =
            ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_TCP_HEALTH_CHECK;
        m->hc.tcp_health_check = &m->tcp;
    }
    m->hcp = &m->hc;
}

/* Storage of one endpoint in a specifier. */
struct ep_msg {
    Envoy__Config__Endpoint__V3__Endpoint ep;
    Envoy__Config__Core__V3__Address addr;
    Envoy__Config__Core__V3__SocketAddress sa;
};

static void ep_init(struct ep_msg *m, const hf_hc_endpoint *e)
{
    envoy__config__core__v3__socket_address__init(&m->sa);
    m->sa.address = (char *)e->key.address;
    m->sa.port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    m->sa.port_value = e->key.port;
    envoy__config__core__v3__address__init(&m->addr);
    m->addr.address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    m->addr.socket_address = &m->sa;
    envoy__config__endpoint__v3__endpoint__init(&m->ep);
    m->ep.address = &m->addr;
}

/* Encodes a specifier of endpoints e[0..n) sorted by service, zone and fleet: a cluster per
 * service with its policy, a locality per (zone, fleet). */
static hf_rbuf *encode_specifier(const hf_hc_endpoint **e, size_t n, const store_input *in,
                                 uint32_t report_ms)
{
    Specifier spec = ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_SPECIFIER__INIT;
    Google__Protobuf__Duration interval;
    spec.interval = dur_ms(&interval, report_ms);
    ClusterHealthCheck *chs = xcalloc(n + 1, sizeof(*chs));
    ClusterHealthCheck **chp = xcalloc(n + 1, sizeof(*chp));
    struct policy_msg *pols = xcalloc(n + 1, sizeof(*pols));
    LocalityEndpoints *les = xcalloc(n + 1, sizeof(*les));
    LocalityEndpoints **lep = xcalloc(n + 1, sizeof(*lep));
    Envoy__Config__Core__V3__Locality *locs = xcalloc(n + 1, sizeof(*locs));
    struct ep_msg *eps = xcalloc(n + 1, sizeof(*eps));
    Envoy__Config__Endpoint__V3__Endpoint **epp = xcalloc(n + 1, sizeof(*epp));
    size_t nch = 0, nle = 0;
    for (size_t i = 0; i < n; i++) {
        bool new_cluster = i == 0 || strcmp(e[i]->key.service, e[i - 1]->key.service) != 0;
        if (new_cluster) {
            const store_input_service *is = store_input_service_find(in, e[i]->key.service);
            if (is == NULL) {
                continue; /* cannot happen: the table holds only the input's services */
            }
            const hf_service *svc = &is->svc;
            ClusterHealthCheck *ch = &chs[nch];
            envoy__service__health__v3__cluster_health_check__init(ch);
            ch->cluster_name = (char *)svc->name;
            policy_init(&pols[nch], svc);
            ch->n_health_checks = 1;
            ch->health_checks = &pols[nch].hcp;
            ch->locality_endpoints = &lep[nle];
            chp[nch++] = ch;
        }
        ClusterHealthCheck *ch = chp[nch - 1];
        if (new_cluster || strcmp(e[i]->zone, e[i - 1]->zone) != 0 ||
            strcmp(e[i]->fleet, e[i - 1]->fleet) != 0) {
            LocalityEndpoints *le = &les[nle];
            envoy__service__health__v3__locality_endpoints__init(le);
            envoy__config__core__v3__locality__init(&locs[nle]);
            locs[nle].zone = (char *)e[i]->zone;
            locs[nle].sub_zone = (char *)e[i]->fleet;
            le->locality = &locs[nle];
            le->endpoints = &epp[i];
            lep[nle++] = le;
            ch->n_locality_endpoints++;
        }
        ep_init(&eps[i], e[i]);
        epp[i] = &eps[i].ep;
        les[nle - 1].n_endpoints++;
    }
    spec.n_cluster_health_checks = nch;
    spec.cluster_health_checks = chp;
    hf_rbuf *b = hf_rbuf_new(protobuf_c_message_get_packed_size(&spec.base));
    protobuf_c_message_pack(&spec.base, b->data);
    free(chs);
    free(chp);
    free(pols);
    free(les);
    free(lep);
    free(locs);
    free(eps);
    free(epp);
    return b;
}

/* The specifier of checker index c: its endpoints, sorted. hds_lock held. */
static hf_rbuf *specifier_of(struct xds_server *srv, int c)
{
    size_t total = hf_health_size(srv->health);
    const hf_hc_endpoint **mine =
        xcalloc(hf_health_checker_load(srv->health, c) + 1, sizeof(*mine));
    size_t n = 0;
    size_t cap = hf_health_checker_load(srv->health, c);
    for (size_t i = 0; i < total && n < cap; i++) {
        const hf_hc_slot *s;
        int k = hf_health_slots(srv->health, i, &s);
        for (int j = 0; j < k; j++) {
            if (s[j].checker == c) {
                mine[n++] = hf_health_endpoint(srv->health, i);
                break;
            }
        }
    }
    if (n > 1) {
        qsort(mine, n, sizeof(*mine), cmp_ep);
    }
    hf_rbuf *b = encode_specifier(mine, n, srv->input, srv->hds_report_ms);
    free(mine);
    return b;
}

/* Gives a checker a new specifier unless it already has the same bytes. Both locks held. */
static void offer(hds_checker *c, hf_rbuf *spec)
{
    uint64_t h = hf_hash_update(HF_HASH_INIT, spec->data, spec->len);
    if (c->pending != NULL && h == c->pending_hash) {
        return;
    }
    hf_rbuf_unref(c->pending);
    c->pending = hf_rbuf_ref(spec);
    c->pending_hash = h;
    try_send(c);
}

/* ======================================================================================== */
/* xDS thread: decisions                                                                    */
/* ======================================================================================== */

/* The decisions as store changes, with their reason; counts evictions. hds_lock held. */
static hf_health_change *to_changes(struct xds_server *srv, const hf_hc_decisions *d)
{
    hf_health_change *out = xcalloc(d->n + 1, sizeof(*out));
    for (size_t i = 0; i < d->n; i++) {
        const hf_hc_decision *x = &d->v[i];
        hf_health_change *c = &out[i];
        snprintf(c->service, sizeof(c->service), "%s", x->key.service);
        snprintf(c->address, sizeof(c->address), "%s", x->key.address);
        c->port = x->key.port;
        c->health = x->health;
        const char *why = "";
        long at = hf_health_find(srv->health, &x->key);
        const hf_hc_slot *s = NULL;
        int k = at >= 0 ? hf_health_slots(srv->health, (size_t)at, &s) : 0;
        for (int j = 0; j < k && why[0] == '\0'; j++) {
            if (s[j].verdict == x->health) {
                why = s[j].reason;
            }
        }
        snprintf(c->reason, sizeof(c->reason), "%d of %d assigned checkers say %s%s%s%s", x->votes,
                 x->assigned, hf_health_name(x->health), why[0] ? " (" : "", why,
                 why[0] ? ")" : "");
        if (x->health == HF_HEALTH_UNHEALTHY) {
            hf_counter_add("holdfast_evictions_total", "Endpoints evicted by health checks.", "",
                           1);
            if (x->detection_ms >= 0) {
                hf_histogram_observe("holdfast_hds_detection_seconds",
                                     "From the first unhealthy verdict to the quorum's eviction.",
                                     "", (double)x->detection_ms / 1000.0);
            }
        }
    }
    return out;
}

/* Stores verdicts and decisions (xDS thread, no lock held). */
static void store_decisions(struct xds_server *srv, const hf_verdict *v, size_t nv,
                            const hf_health_change *c, size_t nc)
{
    if (nv == 0 && nc == 0) {
        return;
    }
    hf_detail d = {0};
    uint64_t t0 = hf_mono_ns();
    if (store_health_apply(srv->store, v, nv, c, nc, &d) != HF_OK) {
        hf_error("hds", "cannot store health: %s", d.message);
    }
    for (size_t i = 0; i < nc; i++) {
        char id[HF_ADDR_PORT_MAX];
        hf_addr_port_format(c[i].address, c[i].port, id, sizeof(id));
        hf_info("hds", "%s %s of %s (%s)",
                c[i].health == HF_HEALTH_UNHEALTHY ? "evicted" : "restored", id, c[i].service,
                c[i].reason);
    }
    if (nc > 0) {
        hf_histogram_observe("holdfast_hds_decision_store_seconds",
                             "Time to store eviction decisions (they then reach proxies through "
                             "a new snapshot).",
                             "", (double)(hf_mono_ns() - t0) / 1e9);
    }
}

static int64_t mono_ms(void)
{
    return (int64_t)(hf_mono_ns() / 1000000);
}

/* The connected, registered checkers, with when each connected. hds_lock held. */
static hf_hc_checker *connected(struct xds_server *srv, size_t *n, int64_t **since)
{
    size_t count = 0;
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        count++;
    }
    hf_hc_checker *out = xcalloc(count + 1, sizeof(*out));
    *since = xcalloc(count + 1, sizeof(**since));
    *n = 0;
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        if (c->registered && !c->closed) {
            memcpy(out[*n].id, c->node_id, sizeof(out[*n].id));
            memcpy(out[*n].zone, c->zone, sizeof(out[*n].zone));
            (*since)[*n] = c->connected_since;
            (*n)++;
        }
        pthread_mutex_unlock(&c->lock);
    }
    return out;
}

/* Encodes the specifier of every checker in the table whose endpoints changed (every one when
 * all), and of connected checkers that have none yet, and offers them to the connected ones.
 * Returns what it encoded, by checker index (HF_HC_MAX_CHECKERS entries; unref each, free).
 * hds_lock held. */
static hf_rbuf **make_specifiers(struct xds_server *srv, bool all)
{
    hf_rbuf **made = xcalloc(HF_HC_MAX_CHECKERS, sizeof(*made));
    for (int idx = 0; idx < HF_HC_MAX_CHECKERS; idx++) {
        bool dirty = hf_health_take_dirty(srv->health, idx);
        if ((dirty || all) && hf_health_checker_id(srv->health, idx)[0] != '\0') {
            made[idx] = specifier_of(srv, idx);
        }
    }
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        int idx =
            c->registered && !c->closed ? hf_health_checker_index(srv->health, c->node_id) : -1;
        if (idx >= 0 && idx < HF_HC_MAX_CHECKERS) {
            if (made[idx] == NULL && c->pending == NULL) {
                made[idx] = specifier_of(srv, idx);
            }
            c->n_endpoints = hf_health_checker_load(srv->health, idx);
            if (made[idx] != NULL) {
                offer(c, made[idx]);
            }
        }
        pthread_mutex_unlock(&c->lock);
    }
    return made;
}

static void free_made(hf_rbuf **made)
{
    for (size_t i = 0; i < HF_HC_MAX_CHECKERS; i++) {
        hf_rbuf_unref(made[i]);
    }
    free(made);
}

/* The report interval the specifiers ask for: the shortest check interval, at least 1 s. */
static uint32_t report_interval(const store_input *in)
{
    uint32_t report_ms = 10000;
    for (size_t s = 0; s < in->n_services; s++) {
        uint32_t ms = in->services[s]->svc.health_check.interval_ms;
        report_ms = ms < report_ms ? ms : report_ms;
    }
    return report_ms < 1000 ? 1000 : report_ms;
}

/* On a shared database: records the checkers connected here when they changed. */
static void share_checkers(struct xds_server *srv, const hf_hc_checker *cs, const int64_t *since,
                           size_t n)
{
    bool same = srv->hds_mine_ok && n == srv->n_hds_mine;
    for (size_t i = 0; same && i < n; i++) {
        same = strcmp(cs[i].id, srv->hds_mine[i].node_id) == 0 &&
               strcmp(cs[i].zone, srv->hds_mine[i].zone) == 0;
    }
    if (same) {
        return;
    }
    store_checker *mine = xcalloc(n + 1, sizeof(*mine));
    for (size_t i = 0; i < n; i++) {
        snprintf(mine[i].node_id, sizeof(mine[i].node_id), "%s", cs[i].id);
        snprintf(mine[i].zone, sizeof(mine[i].zone), "%s", cs[i].zone);
        mine[i].connected_at = since[i];
    }
    hf_detail d = {0};
    free(srv->hds_mine);
    srv->hds_mine = mine;
    srv->n_hds_mine = n;
    srv->hds_mine_ok = store_checkers_set(srv->store, mine, n, &d) == HF_OK;
    if (!srv->hds_mine_ok) {
        hf_warn("hds", "cannot record this replica's checkers: %s", d.message);
    }
}

/* The checkers the table assigns to: those connected here, or on a shared database those
 * connected to any live replica (the leader's view; NULL when the database cannot say). */
static hf_hc_checker *all_checkers(struct xds_server *srv, hf_hc_checker *local, size_t nlocal,
                                   size_t *n)
{
    store_checker *sc;
    size_t ns;
    if (srv->hds_shared && store_checker_list(srv->store, &sc, &ns) != HF_OK) {
        return NULL;
    }
    if (!srv->hds_shared) {
        hf_hc_checker *out = xcalloc(nlocal + 1, sizeof(*out));
        memcpy(out, local, nlocal * sizeof(*out));
        *n = nlocal;
        return out;
    }
    hf_hc_checker *out = xcalloc(ns + 1, sizeof(*out));
    for (size_t i = 0; i < ns; i++) {
        snprintf(out[i].id, sizeof(out[i].id), "%s", sc[i].node_id);
        snprintf(out[i].zone, sizeof(out[i].zone), "%s", sc[i].zone);
    }
    free(sc);
    *n = ns;
    return out;
}

/* The leader (or the one process): assigns, decides, sends; on a shared database stores every
 * specifier it encoded for the other replicas to serve. */
static void lead(struct xds_server *srv, hf_hc_checker *local, size_t nlocal)
{
    size_t nc;
    hf_hc_checker *cs = all_checkers(srv, local, nlocal, &nc);
    if (cs == NULL) {
        return; /* the database is unreachable: assignments stay as they are (fail static) */
    }
    uint32_t report_ms = report_interval(srv->input);
    hf_hc_decisions d = {0};
    int64_t mono = mono_ms();
    pthread_mutex_lock(&srv->hds_lock);
    bool fresh = srv->health == NULL;
    if (fresh) {
        srv->health = hf_health_new(srv->hds_replicas);
        free(srv->hds_revs);
        srv->hds_revs = NULL;
        srv->n_hds_revs = 0;
    }
    hf_health_set_checkers(srv->health, cs, nc, mono, &d);
    feed(srv, mono, &d);
    bool all = fresh || report_ms != srv->hds_report_ms;
    srv->hds_report_ms = report_ms;
    hf_rbuf **made = make_specifiers(srv, all);
    hf_health_change *changes = to_changes(srv, &d);
    store_specifier *put = xcalloc(HF_HC_MAX_CHECKERS, sizeof(*put));
    size_t nput = 0;
    for (int i = 0; srv->hds_shared && i < HF_HC_MAX_CHECKERS; i++) {
        if (made[i] != NULL) {
            store_specifier *p = &put[nput++];
            snprintf(p->checker, sizeof(p->checker), "%s", hf_health_checker_id(srv->health, i));
            p->data = made[i]->data;
            p->len = made[i]->len;
            p->endpoints = hf_health_checker_load(srv->health, i);
        }
    }
    pthread_mutex_unlock(&srv->hds_lock);
    hf_detail err = {0};
    if (nput > 0 && store_specifiers_put(srv->store, put, nput, &err) != HF_OK) {
        hf_warn("hds", "cannot store specifiers for the other replicas: %s", err.message);
    }
    store_decisions(srv, NULL, 0, changes, d.n);
    free(put);
    free_made(made);
    free(changes);
    hf_hc_decisions_free(&d);
    free(cs);
}

static int cmp_mirror(const void *a, const void *b)
{
    uint64_t x = ((const struct hds_mirror *)a)->hash, y = ((const struct hds_mirror *)b)->hash;
    return (x > y) - (x < y);
}

/* Appends the endpoints of one stored specifier to the mirror being built. */
static void mirror_add(struct hds_mirror **m, size_t *n, size_t *cap, int checker,
                       const uint8_t *data, size_t len)
{
    Specifier *sp = envoy__service__health__v3__health_check_specifier__unpack(NULL, len, data);
    for (size_t c = 0; sp != NULL && c < sp->n_cluster_health_checks; c++) {
        const ClusterHealthCheck *ch = sp->cluster_health_checks[c];
        for (size_t l = 0; l < ch->n_locality_endpoints; l++) {
            const LocalityEndpoints *le = ch->locality_endpoints[l];
            for (size_t e = 0; e < le->n_endpoints; e++) {
                const Envoy__Config__Endpoint__V3__Endpoint *ep = le->endpoints[e];
                if (ep->address == NULL || ep->address->socket_address == NULL ||
                    ch->cluster_name == NULL || ep->address->socket_address->address == NULL) {
                    continue;
                }
                if (*n == *cap) {
                    *cap = *cap ? 2 * *cap : 256;
                    *m = xrealloc(*m, *cap * sizeof(**m));
                }
                struct hds_mirror *x = &(*m)[(*n)++];
                hf_endpoint_key_set(&x->key, ch->cluster_name, ep->address->socket_address->address,
                                    ep->address->socket_address->port_value);
                x->hash = hf_endpoint_key_hash(&x->key);
                x->checker = checker;
            }
        }
    }
    if (sp != NULL) {
        envoy__service__health__v3__health_check_specifier__free_unpacked(sp, NULL);
    }
}

/* The mirrored checkers of endpoint k (a replica that does not lead). hds_lock held. */
static int mirrored(struct xds_server *srv, const hf_endpoint_key *k, char assigned[][128], int max)
{
    struct hds_mirror probe = {.hash = hf_endpoint_key_hash(k)};
    struct hds_mirror *hit =
        srv->n_mirror ? bsearch(&probe, srv->mirror, srv->n_mirror, sizeof(probe), cmp_mirror)
                      : NULL;
    if (hit == NULL) {
        return 0;
    }
    while (hit > srv->mirror && hit[-1].hash == probe.hash) {
        hit--;
    }
    int n = 0;
    for (; hit < srv->mirror + srv->n_mirror && hit->hash == probe.hash && n < max; hit++) {
        if (hf_endpoint_key_eq(&hit->key, k)) {
            snprintf(assigned[n++], 128, "%s", srv->mirror_ids[hit->checker]);
        }
    }
    return n;
}

/* Offers a stored specifier to the local streams of checker id. */
static void offer_stored(struct xds_server *srv, const char *id, const uint8_t *data, size_t len,
                         size_t endpoints)
{
    hf_rbuf *b = NULL;
    pthread_mutex_lock(&srv->hds_lock);
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        if (c->registered && !c->closed && strcmp(c->node_id, id) == 0) {
            if (b == NULL) {
                b = hf_rbuf_new(len);
                memcpy(b->data, data, len);
            }
            c->n_endpoints = endpoints;
            offer(c, b);
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&srv->hds_lock);
    hf_rbuf_unref(b);
}

/* A replica that does not lead: serves its checkers the specifiers the leader stored, and keeps
 * a picture of the leader's assignments (every live checker's specifier) for the REST API. Does
 * nothing when neither the stored specifiers nor the local checkers changed since last time. */
static void follow(struct xds_server *srv, const hf_hc_checker *local, const int64_t *since,
                   size_t nlocal)
{
    pthread_mutex_lock(&srv->hds_lock);
    if (srv->health != NULL) { /* it led before: the next leadership starts afresh */
        hf_health_free(srv->health);
        srv->health = NULL;
    }
    pthread_mutex_unlock(&srv->hds_lock);
    store_checker *sc;
    size_t ns;
    if (store_checker_list(srv->store, &sc, &ns) != HF_OK) {
        return;
    }
    uint64_t sig = HF_HASH_INIT;
    for (size_t i = 0; i < ns; i++) {
        sig =
            hf_hash_update(hf_hash_str(sig, sc[i].node_id), &sc[i].spec_at, sizeof(sc[i].spec_at));
    }
    for (size_t i = 0; i < nlocal; i++) {
        sig = hf_hash_update(hf_hash_str(sig, local[i].id), &since[i], sizeof(since[i]));
    }
    if (sig == srv->follow_sig) {
        free(sc);
        return;
    }
    struct hds_mirror *m = NULL;
    size_t n = 0, cap = 0;
    char(*ids)[128] = xcalloc(ns + 1, sizeof(*ids));
    bool complete = true;
    for (size_t i = 0; i < ns; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s", sc[i].node_id);
        uint8_t *data;
        size_t len, endpoints;
        int rc = store_specifier_get(srv->store, sc[i].node_id, &data, &len, &endpoints);
        complete = complete && rc != HF_EDB;
        if (rc == HF_OK) {
            offer_stored(srv, sc[i].node_id, data, len, endpoints);
            mirror_add(&m, &n, &cap, (int)i, data, len);
            free(data);
        }
    }
    free(sc);
    if (n > 1) {
        qsort(m, n, sizeof(*m), cmp_mirror);
    }
    pthread_mutex_lock(&srv->hds_lock);
    free(srv->mirror);
    free(srv->mirror_ids);
    srv->mirror = m;
    srv->n_mirror = n;
    srv->mirror_ids = ids;
    srv->n_mirror_ids = ns;
    pthread_mutex_unlock(&srv->hds_lock);
    srv->follow_sig = complete ? sig : 0;
}

void xds__hds_reassign(struct xds_server *srv)
{
    uint64_t t0 = hf_mono_ns();
    size_t nlocal;
    int64_t *since;
    pthread_mutex_lock(&srv->hds_lock);
    hf_hc_checker *local = connected(srv, &nlocal, &since);
    pthread_mutex_unlock(&srv->hds_lock);
    if (srv->hds_shared) {
        share_checkers(srv, local, since, nlocal);
    }
    if (store_is_leader(srv->store)) {
        lead(srv, local, nlocal);
    } else {
        follow(srv, local, since, nlocal);
    }
    hf_gauge_set("holdfast_hds_checkers_connected", "Health checkers connected over HDS.", "",
                 (double)nlocal);
    hf_histogram_observe("holdfast_hds_reassign_seconds",
                         "Time to bring assignments up to date after a change (the changed "
                         "services re-read from the snapshot's input, decisions, specifiers).",
                         "", (double)(hf_mono_ns() - t0) / 1e9);
    free(local);
    free(since);
}

/* Applies queued verdicts to the table. hds_lock held. Returns the verdicts that changed. */
static hf_verdict *apply_verdicts(struct xds_server *srv, const hf_verdict *q, size_t nq,
                                  size_t *nchanged, hf_hc_decisions *d)
{
    hf_verdict *changed = xcalloc(nq + 1, sizeof(*changed));
    int64_t mono = mono_ms();
    size_t dropped = 0;
    int idx = -1;
    const char *last = NULL;
    *nchanged = 0;
    for (size_t i = 0; i < nq; i++) {
        if (last == NULL || strcmp(last, q[i].checker) != 0) {
            last = q[i].checker;
            idx = hf_health_checker_index(srv->health, last);
        }
        hf_endpoint_key k;
        hf_endpoint_key_set(&k, q[i].service, q[i].address, q[i].port);
        int rc =
            hf_health_verdict(srv->health, &k, idx, q[i].verdict, q[i].reason, q[i].at, mono, d);
        if (rc == 1) {
            changed[(*nchanged)++] = q[i];
        } else if (rc < 0) {
            dropped++;
        }
    }
    if (dropped > 0) {
        hf_counter_add("holdfast_hds_verdicts_dropped_total",
                       "Verdicts dropped: unknown endpoint, or a checker not assigned to it.", "",
                       (double)dropped);
    }
    return changed;
}

/* Appends the verdicts other replicas queued for the leader to *q. */
static void take_remote(struct xds_server *srv, hf_verdict **q, size_t *nq)
{
    hf_verdict *r;
    size_t nr;
    hf_detail d = {0};
    if (store_verdict_take(srv->store, &r, &nr, &d) != HF_OK) {
        hf_warn("hds", "cannot take the verdicts of other replicas: %s", d.message);
        return;
    }
    if (nr > 0) {
        *q = xrealloc(*q, (*nq + nr) * sizeof(**q));
        memcpy(*q + *nq, r, nr * sizeof(*r));
        *nq += nr;
    }
    free(r);
}

void xds__hds_process(struct xds_server *srv, bool remote)
{
    pthread_mutex_lock(&srv->hds_lock);
    hf_verdict *q = srv->vq;
    size_t nq = srv->n_vq;
    srv->vq = NULL;
    srv->n_vq = 0;
    pthread_mutex_unlock(&srv->hds_lock);
    bool leader = store_is_leader(srv->store);
    if (srv->hds_shared && !leader) {
        hf_detail d = {0};
        if (store_verdict_push(srv->store, q, nq, &d) != HF_OK) {
            hf_warn("hds", "cannot pass %zu verdicts to the leader: %s", nq, d.message);
        }
        free(q);
        return;
    }
    if (srv->hds_shared && remote) {
        take_remote(srv, &q, &nq);
    }
    pthread_mutex_lock(&srv->hds_lock);
    if (srv->health == NULL) {
        pthread_mutex_unlock(&srv->hds_lock);
        free(q);
        return; /* nothing assigned yet: no verdict can count */
    }
    hf_hc_decisions d = {0};
    size_t nchanged;
    hf_verdict *changed = apply_verdicts(srv, q, nq, &nchanged, &d);
    hf_health_change *changes = to_changes(srv, &d);
    pthread_mutex_unlock(&srv->hds_lock);
    store_decisions(srv, changed, nchanged, changes, d.n);
    free(changes);
    hf_hc_decisions_free(&d);
    free(changed);
    free(q);
}

void xds__hds_destroy(struct xds_server *srv)
{
    free(srv->vq);
    free(srv->hds_revs);
    free(srv->hds_mine);
    free(srv->mirror);
    free(srv->mirror_ids);
    hf_health_free(srv->health);
    srv->health = NULL;
}

/* ---- what GET /api/v1/health shows of the checkers ---- */

/* Every live replica's checkers, as the database knows them. */
static int shared_checkers(xds_server *srv, xds_checker_info **out, size_t *n)
{
    store_checker *sc;
    size_t ns;
    int rc = store_checker_list(srv->store, &sc, &ns);
    if (rc != HF_OK) {
        return rc;
    }
    xds_checker_info *items = xcalloc(ns + 1, sizeof(*items));
    for (size_t i = 0; i < ns; i++) {
        snprintf(items[i].node_id, sizeof(items[i].node_id), "%s", sc[i].node_id);
        snprintf(items[i].zone, sizeof(items[i].zone), "%s", sc[i].zone);
        snprintf(items[i].replica, sizeof(items[i].replica), "%s", sc[i].replica);
        items[i].connected_since = sc[i].connected_at;
        items[i].endpoints = sc[i].endpoints;
    }
    free(sc);
    *out = items;
    *n = ns;
    return HF_OK;
}

int xds_checkers(xds_server *srv, xds_checker_info **out, size_t *n)
{
    if (srv->hds_shared && shared_checkers(srv, out, n) == HF_OK) {
        return HF_OK;
    }
    pthread_mutex_lock(&srv->hds_lock);
    size_t count = 0;
    xds_checker_info *items = NULL;
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        if (c->registered && !c->closed) {
            items = xrealloc(items, (count + 1) * sizeof(*items));
            xds_checker_info *i = &items[count++];
            memset(i, 0, sizeof(*i));
            memcpy(i->node_id, c->node_id, sizeof(i->node_id));
            memcpy(i->zone, c->zone, sizeof(i->zone));
            i->connected_since = c->connected_since;
            i->endpoints = c->n_endpoints;
        }
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&srv->hds_lock);
    *out = items;
    *n = count;
    return HF_OK;
}

int xds_assignments(xds_server *srv, const char *service, const char *address, uint32_t port,
                    char assigned[][128], int max)
{
    hf_endpoint_key k;
    hf_endpoint_key_set(&k, service, address, port);
    pthread_mutex_lock(&srv->hds_lock);
    int n = 0;
    if (srv->health == NULL && srv->hds_shared) {
        n = mirrored(srv, &k, assigned, max);
    }
    long at = srv->health ? hf_health_find(srv->health, &k) : -1;
    if (at >= 0) {
        const hf_hc_slot *s;
        int ns = hf_health_slots(srv->health, (size_t)at, &s);
        for (int j = 0; j < ns && n < max; j++) {
            snprintf(assigned[n++], 128, "%s", hf_health_checker_id(srv->health, s[j].checker));
        }
    }
    pthread_mutex_unlock(&srv->hds_lock);
    return n;
}
