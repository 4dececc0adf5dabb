/*
 * The HDS server (envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck) and failover
 * eviction (DESIGN §6). Health checkers (holdfast-shim, or Envoy with hds_config) connect and
 * announce themselves; every endpoint is assigned to k of them (spread over zones when possible)
 * and each gets a HealthCheckSpecifier of its endpoints with each service's policy. Their
 * reports are verdicts; when a majority of an endpoint's assigned checkers agree it is
 * unhealthy it is evicted (it leaves EDS for every proxy), and restored when a majority says
 * healthy. A checker that disconnects changes nothing by itself (fail static); its endpoints are
 * reassigned.
 *
 * gRPC threads only decode and queue; assignments, decisions and the store are on the xDS thread.
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "hash.h"
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

/* Queues the verdicts of one report for the xDS thread. */
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
                srv->vq = xrealloc(srv->vq, (srv->n_vq + 1) * sizeof(*srv->vq));
                hf_verdict *q = &srv->vq[srv->n_vq++];
                memset(q, 0, sizeof(*q));
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
    char node[128];
    snprintf(node, sizeof(node), "%s", c->node_id);
    if (bad != NULL) {
        hf_warn("hds", "checker %s: %s", c->node_id[0] ? c->node_id : "(new)", bad);
        hf_stream_finish(c->transport, HF_GRPC_INVALID_ARGUMENT, bad);
    }
    pthread_mutex_unlock(&c->lock);
    if (announce) {
        hf_info("hds", "health checker %s connected (zone %s)", node, c->zone);
        xds__event(c->srv, "checker.connect", node, "health checker %s connected (zone %s)", node,
                   c->zone[0] ? c->zone : "none");
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
        /* Fail static: its verdicts stay as they are; its endpoints go to others. */
        hf_info("hds", "health checker %s disconnected", c->node_id);
        xds__event(srv, "checker.disconnect", c->node_id,
                   "health checker %s disconnected; its endpoints are reassigned", c->node_id);
        xds__hds_wake(srv, true);
    }
    hf_rbuf_unref(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const hf_stream_handler xds__hds_handler = {hds_open, hds_message, hds_sent, hds_closed,
                                            hds_wake_cb};

/* ======================================================================================== */
/* xDS thread: assignments and specifiers                                                   */
/* ======================================================================================== */

static void store_decisions(struct xds_server *srv, const hf_verdict *v, size_t nv,
                            const hf_health_change *c, size_t nc);
static size_t decide_unevaluated(struct xds_server *srv, hf_health_change **out);

struct checker_ref {
    hds_checker *c;
    char node_id[128];
    char zone[HF_SHORT_MAX];
    size_t load;
};

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const struct checker_ref *)a)->node_id,
                  ((const struct checker_ref *)b)->node_id);
}

/* Picks k checkers for t: different zones first, then the least loaded, ties by a hash. */
static void assign(hds_target *t, struct checker_ref *refs, size_t n, int k)
{
    t->n_assigned = 0;
    char key[128];
    snprintf(key, sizeof(key), "%s/%s/%u", t->service, t->address, t->port);
    for (int round = 0; round < k && (size_t)round < n; round++) {
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            bool taken = false, zone_used = false;
            for (int j = 0; j < t->n_assigned; j++) {
                taken |= strcmp(t->assigned[j], refs[i].node_id) == 0;
                for (size_t z = 0; z < n; z++) {
                    if (strcmp(refs[z].node_id, t->assigned[j]) == 0 &&
                        strcmp(refs[z].zone, refs[i].zone) == 0) {
                        zone_used = true;
                    }
                }
            }
            if (taken) {
                continue;
            }
            if (best == n) {
                best = i;
                continue;
            }
            bool bz = false;
            for (int j = 0; j < t->n_assigned; j++) {
                for (size_t z = 0; z < n; z++) {
                    if (strcmp(refs[z].node_id, t->assigned[j]) == 0 &&
                        strcmp(refs[z].zone, refs[best].zone) == 0) {
                        bz = true;
                    }
                }
            }
            uint64_t hi = hf_hash_str(hf_hash_str(HF_HASH_INIT, key), refs[i].node_id);
            uint64_t hb = hf_hash_str(hf_hash_str(HF_HASH_INIT, key), refs[best].node_id);
            if ((zone_used < bz) || (zone_used == bz && refs[i].load < refs[best].load) ||
                (zone_used == bz && refs[i].load == refs[best].load && hi < hb)) {
                best = i;
            }
        }
        snprintf(t->assigned[t->n_assigned++], sizeof(t->assigned[0]), "%s", refs[best].node_id);
        refs[best].load++;
    }
}

static Google__Protobuf__Duration *dur_ms(Google__Protobuf__Duration *d, uint32_t ms)
{
    google__protobuf__duration__init(d);
    d->seconds = ms / 1000;
    d->nanos = (int32_t)(ms % 1000) * 1000000;
    return d;
}

/* Encodes the specifier of one checker: its targets grouped by service and locality. */
static hf_rbuf *encode_specifier(const char *checker, const hds_target *t, size_t nt,
                                 const hf_service *svcs, size_t ns, uint32_t report_ms,
                                 size_t *count)
{
    Specifier spec = ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_SPECIFIER__INIT;
    Google__Protobuf__Duration interval;
    spec.interval = dur_ms(&interval, report_ms);
    ClusterHealthCheck *chs = xcalloc(ns + 1, sizeof(*chs));
    ClusterHealthCheck **chp = xcalloc(ns + 1, sizeof(*chp));
    HealthCheck *hcs = xcalloc(ns + 1, sizeof(*hcs));
    HealthCheck **hcp = xcalloc(ns + 1, sizeof(*hcp));
    Google__Protobuf__Duration *durs = xcalloc(2 * ns + 1, sizeof(*durs));
    Google__Protobuf__UInt32Value *u32s = xcalloc(2 * ns + 1, sizeof(*u32s));
    Google__Protobuf__BoolValue *reuse = xcalloc(ns + 1, sizeof(*reuse));
    Envoy__Config__Core__V3__HealthCheck__HttpHealthCheck *https = xcalloc(ns + 1, sizeof(*https));
    Envoy__Config__Core__V3__HealthCheck__TcpHealthCheck tcp =
        ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__TCP_HEALTH_CHECK__INIT;
    /* one locality per target at most: simple, correct grouping (a locality per endpoint) */
    LocalityEndpoints *les = xcalloc(nt + 1, sizeof(*les));
    LocalityEndpoints **lep = xcalloc(nt + 1, sizeof(*lep));
    Envoy__Config__Core__V3__Locality *locs = xcalloc(nt + 1, sizeof(*locs));
    Envoy__Config__Endpoint__V3__Endpoint *eps = xcalloc(nt + 1, sizeof(*eps));
    Envoy__Config__Endpoint__V3__Endpoint **epp = xcalloc(nt + 1, sizeof(*epp));
    Envoy__Config__Core__V3__Address *addrs = xcalloc(nt + 1, sizeof(*addrs));
    Envoy__Config__Core__V3__SocketAddress *sas = xcalloc(nt + 1, sizeof(*sas));
    size_t nle = 0;
    *count = 0;
    for (size_t s = 0; s < ns; s++) {
        const hf_service *svc = &svcs[s];
        ClusterHealthCheck *ch = &chs[spec.n_cluster_health_checks];
        envoy__service__health__v3__cluster_health_check__init(ch);
        ch->cluster_name = (char *)svc->name;
        ch->locality_endpoints = &lep[nle];
        for (size_t i = 0; i < nt; i++) {
            bool mine = false;
            for (int j = 0; j < t[i].n_assigned; j++) {
                mine |= strcmp(t[i].assigned[j], checker) == 0;
            }
            if (!mine || strcmp(t[i].service, svc->name) != 0) {
                continue;
            }
            LocalityEndpoints *le = &les[nle];
            envoy__service__health__v3__locality_endpoints__init(le);
            envoy__config__core__v3__locality__init(&locs[nle]);
            locs[nle].zone = (char *)t[i].zone;
            locs[nle].sub_zone = (char *)t[i].fleet;
            le->locality = &locs[nle];
            envoy__config__core__v3__socket_address__init(&sas[nle]);
            sas[nle].address = (char *)t[i].address;
            sas[nle].port_specifier_case =
                ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
            sas[nle].port_value = t[i].port;
            envoy__config__core__v3__address__init(&addrs[nle]);
            addrs[nle].address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
            addrs[nle].socket_address = &sas[nle];
            envoy__config__endpoint__v3__endpoint__init(&eps[nle]);
            eps[nle].address = &addrs[nle];
            epp[nle] = &eps[nle];
            le->n_endpoints = 1;
            le->endpoints = &epp[nle];
            lep[nle] = le;
            nle++;
            ch->n_locality_endpoints++;
            (*count)++;
        }
        if (ch->n_locality_endpoints == 0) {
            continue;
        }
        HealthCheck *hc = &hcs[spec.n_cluster_health_checks];
        envoy__config__core__v3__health_check__init(hc);
        hc->timeout = dur_ms(&durs[2 * s], svc->health_check.timeout_ms);
        hc->interval = dur_ms(&durs[2 * s + 1], svc->health_check.interval_ms);
        google__protobuf__uint32_value__init(&u32s[2 * s]);
        u32s[2 * s].value = svc->health_check.unhealthy_threshold;
        google__protobuf__uint32_value__init(&u32s[2 * s + 1]);
        u32s[2 * s + 1].value = svc->health_check.healthy_threshold;
        hc->unhealthy_threshold = &u32s[2 * s];
        hc->healthy_threshold = &u32s[2 * s + 1];
        hc->interval_jitter_percent = 10;
        google__protobuf__bool_value__init(&reuse[s]);
        reuse[s].value = svc->health_check.reuse_connection;
        hc->reuse_connection = &reuse[s];
        if (svc->health_check.protocol == HF_HC_HTTP) {
            envoy__config__core__v3__health_check__http_health_check__init(&https[s]);
            https[s].path = (char *)svc->health_check.path;
            hc->health_checker_case =
                ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_HTTP_HEALTH_CHECK;
            hc->http_health_check = &https[s];
        } else {
            hc->health_checker_case =
                ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_TCP_HEALTH_CHECK;
            hc->tcp_health_check = &tcp;
        }
        hcp[spec.n_cluster_health_checks] = hc;
        ch->n_health_checks = 1;
        ch->health_checks = &hcp[spec.n_cluster_health_checks];
        chp[spec.n_cluster_health_checks] = ch;
        spec.n_cluster_health_checks++;
    }
    spec.cluster_health_checks = chp;
    hf_rbuf *b = hf_rbuf_new(protobuf_c_message_get_packed_size(&spec.base));
    protobuf_c_message_pack(&spec.base, b->data);
    free(chs);
    free(chp);
    free(hcs);
    free(hcp);
    free(durs);
    free(u32s);
    free(reuse);
    free(https);
    free(les);
    free(lep);
    free(locs);
    free(eps);
    free(epp);
    free(addrs);
    free(sas);
    return b;
}

/* Reads what must be checked: endpoints not disabled, of fleets not retired. */
static int load_targets(struct xds_server *srv, hds_target **out, size_t *nt, hf_service **svcs,
                        size_t *ns)
{
    hf_endpoint *eps;
    size_t ne;
    if (store_endpoint_list_all(srv->store, &eps, &ne) != HF_OK) {
        return HF_EDB;
    }
    if (store_service_list(srv->store, NULL, svcs, ns) != HF_OK) {
        free(eps);
        return HF_EDB;
    }
    hds_target *t = xcalloc(ne + 1, sizeof(*t));
    size_t n = 0;
    for (size_t i = 0; i < ne; i++) {
        hf_fleet f;
        if (eps[i].admin_state == HF_ADMIN_DISABLED ||
            store_fleet_get(srv->store, eps[i].service, eps[i].fleet, &f, NULL) != HF_OK ||
            f.role == HF_ROLE_RETIRED) {
            continue;
        }
        snprintf(t[n].service, sizeof(t[n].service), "%s", eps[i].service);
        snprintf(t[n].address, sizeof(t[n].address), "%s", eps[i].address);
        t[n].port = eps[i].port;
        snprintf(t[n].zone, sizeof(t[n].zone), "%s", eps[i].zone);
        snprintf(t[n].fleet, sizeof(t[n].fleet), "%s", eps[i].fleet);
        t[n].health = eps[i].health;
        n++;
    }
    free(eps);
    *out = t;
    *nt = n;
    return HF_OK;
}

void xds__hds_reassign(struct xds_server *srv)
{
    hds_target *t;
    size_t nt;
    hf_service *svcs;
    size_t ns;
    if (load_targets(srv, &t, &nt, &svcs, &ns) != HF_OK) {
        hf_error("hds", "cannot read endpoints for health checking");
        return;
    }
    uint32_t report_ms = 10000;
    for (size_t s = 0; s < ns; s++) {
        if (svcs[s].health_check.interval_ms < report_ms) {
            report_ms = svcs[s].health_check.interval_ms;
        }
    }
    report_ms = report_ms < 1000 ? 1000 : report_ms;

    pthread_mutex_lock(&srv->hds_lock);
    size_t nc = 0;
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        nc++;
    }
    struct checker_ref *refs = xcalloc(nc + 1, sizeof(*refs));
    size_t nr = 0;
    for (hds_checker *c = srv->checkers; c; c = c->next) {
        pthread_mutex_lock(&c->lock);
        if (c->registered && !c->closed) {
            refs[nr].c = c;
            memcpy(refs[nr].node_id, c->node_id, sizeof(refs[nr].node_id));
            memcpy(refs[nr].zone, c->zone, sizeof(refs[nr].zone));
            nr++;
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (nr > 1) {
        qsort(refs, nr, sizeof(*refs), cmp_ref);
    }
    int k = srv->hds_replicas < HDS_MAX_K ? srv->hds_replicas : HDS_MAX_K;
    for (size_t i = 0; i < nt; i++) {
        /* keep the first bad time of targets that were already known */
        for (size_t j = 0; j < srv->n_targets; j++) {
            if (strcmp(srv->targets[j].service, t[i].service) == 0 &&
                strcmp(srv->targets[j].address, t[i].address) == 0 &&
                srv->targets[j].port == t[i].port) {
                t[i].first_bad_at = srv->targets[j].first_bad_at;
            }
        }
        assign(&t[i], refs, nr, k);
    }
    for (size_t r = 0; r < nr; r++) {
        size_t count;
        hf_rbuf *spec = encode_specifier(refs[r].node_id, t, nt, svcs, ns, report_ms, &count);
        uint64_t h = hf_hash_update(HF_HASH_INIT, spec->data, spec->len);
        hds_checker *c = refs[r].c;
        pthread_mutex_lock(&c->lock);
        c->n_endpoints = count;
        if (h != c->pending_hash || c->pending == NULL) {
            hf_rbuf_unref(c->pending);
            c->pending = spec;
            c->pending_hash = h;
            spec = NULL;
            try_send(c);
        }
        pthread_mutex_unlock(&c->lock);
        hf_rbuf_unref(spec);
    }
    free(srv->targets);
    srv->targets = t;
    srv->n_targets = nt;
    hf_health_change *late = NULL;
    size_t nlate = decide_unevaluated(srv, &late);
    pthread_mutex_unlock(&srv->hds_lock);
    store_decisions(srv, NULL, 0, late, nlate);
    free(late);
    hf_gauge_set("holdfast_hds_checkers_connected", "Health checkers connected over HDS.", "",
                 (double)nr);
    free(refs);
    free(svcs);
}

/* ======================================================================================== */
/* xDS thread: verdicts and quorum                                                          */
/* ======================================================================================== */

static hf_verdict *verdict_slot(struct xds_server *srv, const hf_verdict *v)
{
    for (size_t i = 0; i < srv->n_verdicts; i++) {
        hf_verdict *x = &srv->verdicts[i];
        if (x->port == v->port && strcmp(x->address, v->address) == 0 &&
            strcmp(x->service, v->service) == 0 && strcmp(x->checker, v->checker) == 0) {
            return x;
        }
    }
    srv->verdicts = xrealloc(srv->verdicts, (srv->n_verdicts + 1) * sizeof(*srv->verdicts));
    hf_verdict *x = &srv->verdicts[srv->n_verdicts++];
    *x = *v;
    x->verdict = HF_HEALTH_UNKNOWN;
    return x;
}

static hds_target *target_of(struct xds_server *srv, const hf_verdict *v)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        hds_target *t = &srv->targets[i];
        if (t->port == v->port && strcmp(t->address, v->address) == 0 &&
            strcmp(t->service, v->service) == 0) {
            return t;
        }
    }
    return NULL;
}

/* The quorum's verdict on t: a majority of its assigned checkers (at least one). */
static enum hf_health quorum(struct xds_server *srv, const hds_target *t, int *bad, int *good)
{
    *bad = *good = 0;
    for (int j = 0; j < t->n_assigned; j++) {
        for (size_t i = 0; i < srv->n_verdicts; i++) {
            const hf_verdict *v = &srv->verdicts[i];
            if (v->port == t->port && strcmp(v->checker, t->assigned[j]) == 0 &&
                strcmp(v->address, t->address) == 0 && strcmp(v->service, t->service) == 0) {
                *bad += v->verdict == HF_HEALTH_UNHEALTHY;
                *good += v->verdict == HF_HEALTH_HEALTHY;
            }
        }
    }
    int majority = t->n_assigned / 2 + 1;
    if (t->n_assigned > 0 && *bad >= majority) {
        return HF_HEALTH_UNHEALTHY;
    }
    if (t->n_assigned > 0 && *good >= majority) {
        return HF_HEALTH_HEALTHY;
    }
    return HF_HEALTH_UNKNOWN;
}

/* Applies the quorum to t; appends a decision when its health changes. hds_lock held. */
static void decide(struct xds_server *srv, hds_target *t, hf_health_change *out, size_t *n,
                   int64_t mono)
{
    int bad, good;
    enum hf_health h = quorum(srv, t, &bad, &good);
    if (h == HF_HEALTH_UNKNOWN || h == t->health) {
        return;
    }
    hf_health_change *c = &out[(*n)++];
    snprintf(c->service, sizeof(c->service), "%s", t->service);
    snprintf(c->address, sizeof(c->address), "%s", t->address);
    c->port = t->port;
    c->health = h;
    snprintf(c->reason, sizeof(c->reason), "%d of %d assigned checkers say %s",
             h == HF_HEALTH_UNHEALTHY ? bad : good, t->n_assigned, hf_health_name(h));
    if (h == HF_HEALTH_UNHEALTHY) {
        hf_counter_add("holdfast_evictions_total", "Endpoints evicted by health checks.", "", 1);
        if (t->first_bad_at != 0) {
            hf_histogram_observe("holdfast_hds_detection_seconds",
                                 "From the first unhealthy verdict to the quorum's eviction.", "",
                                 (double)(mono - t->first_bad_at) / 1000.0);
        }
    } else {
        t->first_bad_at = 0;
    }
    t->health = h;
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
        hf_info("hds", "%s %s:%u of %s (%s)",
                c[i].health == HF_HEALTH_UNHEALTHY ? "evicted" : "restored", c[i].address,
                c[i].port, c[i].service, c[i].reason);
    }
    if (nc > 0) {
        hf_histogram_observe("holdfast_hds_decision_store_seconds",
                             "Time to store eviction decisions (they then reach proxies through "
                             "a new snapshot).",
                             "", (double)(hf_mono_ns() - t0) / 1e9);
    }
}

void xds__hds_process(struct xds_server *srv)
{
    pthread_mutex_lock(&srv->hds_lock);
    hf_verdict *q = srv->vq;
    size_t nq = srv->n_vq;
    srv->vq = NULL;
    srv->n_vq = 0;
    hf_verdict *changed = xcalloc(nq + 1, sizeof(*changed));
    hf_health_change *decisions = xcalloc(nq + 1, sizeof(*decisions));
    size_t nchanged = 0, ndec = 0;
    int64_t mono = (int64_t)(hf_mono_ns() / 1000000);
    for (size_t i = 0; i < nq; i++) {
        hf_verdict *slot = verdict_slot(srv, &q[i]);
        if (slot->verdict == q[i].verdict) {
            continue;
        }
        *slot = q[i];
        changed[nchanged++] = q[i];
        hds_target *t = target_of(srv, &q[i]);
        if (t == NULL) {
            /* not assigned yet (e.g. just after a restart): decide at the next assignment */
            srv->unevaluated =
                xrealloc(srv->unevaluated, (srv->n_unevaluated + 1) * sizeof(*srv->unevaluated));
            srv->unevaluated[srv->n_unevaluated++] = q[i];
            continue;
        }
        if (q[i].verdict == HF_HEALTH_UNHEALTHY && t->first_bad_at == 0) {
            t->first_bad_at = mono;
        }
        decide(srv, t, decisions, &ndec, mono);
    }
    pthread_mutex_unlock(&srv->hds_lock);
    store_decisions(srv, changed, nchanged, decisions, ndec);
    free(q);
    free(changed);
    free(decisions);
}

/* Decides for verdicts that came before their endpoint was assigned. hds_lock held. */
static size_t decide_unevaluated(struct xds_server *srv, hf_health_change **out)
{
    *out = xcalloc(srv->n_unevaluated + 1, sizeof(**out));
    size_t n = 0;
    int64_t mono = (int64_t)(hf_mono_ns() / 1000000);
    for (size_t i = 0; i < srv->n_unevaluated; i++) {
        hds_target *t = target_of(srv, &srv->unevaluated[i]);
        if (t != NULL) {
            decide(srv, t, *out, &n, mono);
        }
    }
    free(srv->unevaluated);
    srv->unevaluated = NULL;
    srv->n_unevaluated = 0;
    return n;
}

void xds__hds_destroy(struct xds_server *srv)
{
    free(srv->unevaluated);
    free(srv->vq);
    free(srv->targets);
    free(srv->verdicts);
}

/* ---- what GET /api/v1/health shows of the checkers ---- */

int xds_checkers(xds_server *srv, xds_checker_info **out, size_t *n)
{
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
    pthread_mutex_lock(&srv->hds_lock);
    int n = 0;
    for (size_t i = 0; i < srv->n_targets; i++) {
        hds_target *t = &srv->targets[i];
        if (t->port == port && strcmp(t->address, address) == 0 &&
            strcmp(t->service, service) == 0) {
            for (int j = 0; j < t->n_assigned && n < max; j++) {
                memcpy(assigned[n++], t->assigned[j], 128);
            }
        }
    }
    pthread_mutex_unlock(&srv->hds_lock);
    return n;
}
