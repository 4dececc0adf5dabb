/*
 * Model -> Envoy resources (DESIGN §3). Messages are built in an arena with protobuf-c, packed
 * into google.protobuf.Any once, and hashed for their version. Everything is emitted in a
 * deterministic order so that the same store state gives the same bytes and versions on every
 * run (a reconnecting proxy with the current version is not pushed again).
 */
#include "resources.h"

#include "arena.h"
#include "buf.h"
#include "wire.h"
#include "xalloc.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/http/stateful_session/v3/stateful_session.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/http/stateful_session/cookie/v3/cookie.pb-c.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- short names for the generated types ---- */
typedef Google__Protobuf__Any Any;
typedef Google__Protobuf__Duration Duration;
typedef Google__Protobuf__UInt32Value UInt32Value;
typedef Envoy__Config__Core__V3__Address Address;
typedef Envoy__Config__Core__V3__SocketAddress SocketAddress;
typedef Envoy__Config__Core__V3__ConfigSource ConfigSource;
typedef Envoy__Config__Core__V3__AggregatedConfigSource AggregatedConfigSource;
typedef Envoy__Config__Core__V3__SelfConfigSource SelfConfigSource;
typedef Envoy__Config__Core__V3__TypedExtensionConfig TypedExtensionConfig;
typedef Envoy__Config__Core__V3__HttpProtocolOptions HttpProtocolOptions;
typedef Envoy__Config__Core__V3__Locality Locality;
typedef Envoy__Config__Core__V3__Metadata Metadata;
typedef Envoy__Config__Core__V3__Metadata__FilterMetadataEntry FilterMetadataEntry;
typedef Envoy__Config__Core__V3__HealthStatusSet HealthStatusSet;
typedef Envoy__Config__Listener__V3__Listener Listener;
typedef Envoy__Config__Listener__V3__ApiListener ApiListener;
typedef Envoy__Config__Listener__V3__FilterChain FilterChain;
typedef Envoy__Config__Listener__V3__Filter Filter;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager Hcm;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__Rds Rds;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter HttpFilter;
typedef Envoy__Extensions__Filters__Http__Router__V3__Router Router;
typedef Envoy__Extensions__Filters__Http__StatefulSession__V3__StatefulSession StatefulSession;
typedef Envoy__Extensions__Filters__Http__StatefulSession__V3__StatefulSessionPerRoute
    StatefulSessionPerRoute;
typedef Envoy__Extensions__Http__StatefulSession__Cookie__V3__CookieBasedSessionState
    CookieBasedSessionState;
typedef Envoy__Type__Http__V3__Cookie HttpCookie;
typedef Envoy__Config__Route__V3__RouteConfiguration RouteConfiguration;
typedef Envoy__Config__Route__V3__VirtualHost VirtualHost;
typedef Envoy__Config__Route__V3__VirtualHost__TypedPerFilterConfigEntry PerFilterEntry;
typedef Envoy__Config__Route__V3__Route Route;
typedef Envoy__Config__Route__V3__RouteMatch RouteMatch;
typedef Envoy__Config__Route__V3__RouteAction RouteAction;
typedef Envoy__Config__Route__V3__RouteAction__HashPolicy HashPolicy;
typedef Envoy__Config__Route__V3__RouteAction__HashPolicy__Cookie HashCookie;
typedef Envoy__Config__Cluster__V3__Cluster Cluster;
typedef Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig EdsClusterConfig;
typedef Envoy__Config__Cluster__V3__Cluster__CommonLbConfig CommonLbConfig;
typedef Envoy__Type__V3__Percent Percent;
typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment ClusterLoadAssignment;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints LocalityLbEndpoints;
typedef Envoy__Config__Endpoint__V3__LbEndpoint LbEndpoint;
typedef Envoy__Config__Endpoint__V3__Endpoint Endpoint;
typedef Google__Protobuf__Struct Struct;
typedef Google__Protobuf__Struct__FieldsEntry StructEntry;
typedef Google__Protobuf__Value Value;
typedef Envoy__Service__Discovery__V3__Resource DeltaResource;

#define TYPE_PREFIX "type.googleapis.com/"
#define HCM_URL                                                                                    \
    TYPE_PREFIX "envoy.extensions.filters.network.http_connection_manager.v3."                     \
                "HttpConnectionManager"
#define ROUTER_URL TYPE_PREFIX "envoy.extensions.filters.http.router.v3.Router"
#define SESSION_URL TYPE_PREFIX "envoy.extensions.filters.http.stateful_session.v3.StatefulSession"
#define SESSION_ROUTE_URL                                                                          \
    TYPE_PREFIX "envoy.extensions.filters.http.stateful_session.v3.StatefulSessionPerRoute"
#define COOKIE_STATE_URL                                                                           \
    TYPE_PREFIX "envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState"
#define UPSTREAM_HTTP_OPTIONS "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
#define UPSTREAM_HTTP_OPTIONS_URL TYPE_PREFIX UPSTREAM_HTTP_OPTIONS
#define SESSION_FILTER "envoy.filters.http.stateful_session"
#define ROUTER_FILTER "envoy.filters.http.router"
#define HCM_FILTER "envoy.filters.network.http_connection_manager"
#define COOKIE_STATE "envoy.http.stateful_session.cookie"

/* Allocates a message in the arena, initialised from its protobuf-c INIT value. */
#define NEW(T, INIT) ((T *)new_msg(a, &(T)INIT, sizeof(T)))

static void *new_msg(hf_arena *a, const void *init, size_t n)
{
    void *p = hf_arena_alloc(a, n);
    memcpy(p, init, n);
    return p;
}

/* ---- small builders ---- */

static Any *pack_any(hf_arena *a, const char *type_url, const ProtobufCMessage *m)
{
    Any *any = NEW(Any, GOOGLE__PROTOBUF__ANY__INIT);
    any->type_url = (char *)type_url;
    any->value.len = protobuf_c_message_get_packed_size(m);
    any->value.data = hf_arena_alloc(a, any->value.len);
    protobuf_c_message_pack(m, any->value.data);
    return any;
}

static Duration *seconds(hf_arena *a, int64_t s)
{
    Duration *d = NEW(Duration, GOOGLE__PROTOBUF__DURATION__INIT);
    d->seconds = s;
    return d;
}

static UInt32Value *u32(hf_arena *a, uint32_t v)
{
    UInt32Value *w = NEW(UInt32Value, GOOGLE__PROTOBUF__UINT32_VALUE__INIT);
    w->value = v;
    return w;
}

static ConfigSource *ads_source(hf_arena *a)
{
    ConfigSource *cs = NEW(ConfigSource, ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__INIT);
    cs->resource_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
    cs->config_source_specifier_case =
        ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS;
    cs->ads = NEW(AggregatedConfigSource, ENVOY__CONFIG__CORE__V3__AGGREGATED_CONFIG_SOURCE__INIT);
    return cs;
}

static Address *socket_address(hf_arena *a, const char *ip, uint32_t port)
{
    SocketAddress *sa = NEW(SocketAddress, ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__INIT);
    sa->address = hf_arena_strdup(a, ip);
    sa->port_specifier_case = ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
    sa->port_value = port;
    Address *addr = NEW(Address, ENVOY__CONFIG__CORE__V3__ADDRESS__INIT);
    addr->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
    addr->socket_address = sa;
    return addr;
}

static HttpFilter *http_filter(hf_arena *a, const char *name, Any *config)
{
    HttpFilter *f =
        NEW(HttpFilter,
            ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__INIT);
    f->name = (char *)name;
    f->config_type_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG;
    f->typed_config = config;
    return f;
}

static HttpFilter *router_filter(hf_arena *a)
{
    Router *r = NEW(Router, ENVOY__EXTENSIONS__FILTERS__HTTP__ROUTER__V3__ROUTER__INIT);
    return http_filter(a, ROUTER_FILTER, pack_any(a, ROUTER_URL, &r->base));
}

/* ---- the resource list ---- */

static int by_name(const void *x, const void *y)
{
    return strcmp((*(xds_resource *const *)x)->name, (*(xds_resource *const *)y)->name);
}

/* By name, then by content: a total order, so the choice among duplicates is stable. */
static int by_name_content(const void *x, const void *y)
{
    const xds_resource *p = *(xds_resource *const *)x, *q = *(xds_resource *const *)y;
    int c = strcmp(p->name, q->name);
    if (c == 0 && p->any->len != q->any->len) {
        return p->any->len < q->any->len ? -1 : 1;
    }
    return c != 0 ? c : memcmp(p->any->data, q->any->data, p->any->len);
}

void xds_resource_list_unique(xds_resource_list *l)
{
    if (l->n < 2) {
        return;
    }
    qsort(l->items, l->n, sizeof(*l->items), by_name_content);
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (m > 0 && strcmp(l->items[i]->name, l->items[m - 1]->name) == 0) {
            xds_resource_unref(l->items[i]);
            continue;
        }
        l->items[m++] = l->items[i];
    }
    l->n = m;
}

/* Encodes m as a resource of type t named name, appended to l. */
static void emit(hf_arena *a, xds_resource_list *l, enum xds_type t, const char *name,
                 const ProtobufCMessage *m)
{
    Any *any = pack_any(a, xds_type_url(t), m);
    size_t len = protobuf_c_message_get_packed_size(&any->base);
    xds_resource *r = xcalloc(1, sizeof(*r));
    atomic_init(&r->refs, 1);
    r->name = xstrdup(name);
    r->any = hf_rbuf_new(len);
    protobuf_c_message_pack(&any->base, r->any->data);
    r->hash = hf_hash_update(HF_HASH_INIT, r->any->data, len);
    hf_hash_hex(r->hash, r->version);

    DeltaResource dr = ENVOY__SERVICE__DISCOVERY__V3__RESOURCE__INIT;
    dr.name = r->name;
    dr.version = r->version;
    dr.resource = any;
    r->delta = hf_rbuf_new(protobuf_c_message_get_packed_size(&dr.base));
    protobuf_c_message_pack(&dr.base, r->delta->data);

    l->items = xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    l->items[l->n++] = r;
}

/* Records that the resource last emitted into l names resources of type t. */
static void refer(xds_resource_list *l, enum xds_type t, const char *name)
{
    xds_resource *r = l->items[l->n - 1];
    r->ref_type = t;
    r->ref_names = xrealloc(r->ref_names, (r->n_refs + 1) * sizeof(*r->ref_names));
    r->ref_names[r->n_refs++] = xstrdup(name);
}

xds_resource *xds_resource_ref(xds_resource *r)
{
    atomic_fetch_add(&r->refs, 1);
    return r;
}

void xds_resource_unref(xds_resource *r)
{
    if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < r->n_refs; i++) {
        free(r->ref_names[i]);
    }
    free(r->ref_names);
    free(r->name);
    hf_rbuf_unref(r->any);
    hf_rbuf_unref(r->delta);
    free(r);
}

void xds_resource_list_add(xds_resource_list *l, xds_resource *r)
{
    l->items = xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    l->items[l->n++] = xds_resource_ref(r);
}

void xds_resource_list_extend(xds_resource_list *l, const xds_resource_list *from)
{
    if (from->n == 0) {
        return;
    }
    l->items = xrealloc(l->items, (l->n + from->n) * sizeof(*l->items));
    for (size_t i = 0; i < from->n; i++) {
        l->items[l->n++] = xds_resource_ref(from->items[i]);
    }
}

void xds_resource_list_sort(xds_resource_list *l)
{
    if (l->n > 1) {
        qsort(l->items, l->n, sizeof(*l->items), by_name);
    }
}

void xds_resource_list_clear(xds_resource_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        xds_resource_unref(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int find_by_name(const void *key, const void *elem)
{
    return strcmp(key, (*(xds_resource *const *)elem)->name);
}

const xds_resource *xds_resource_find(const xds_resource_list *l, const char *name)
{
    if (l->n == 0) {
        return NULL;
    }
    xds_resource *const *p = bsearch(name, l->items, l->n, sizeof(*l->items), find_by_name);
    return p != NULL ? *p : NULL;
}

/* ======================================================================================== */
/* EDS                                                                                      */
/* ======================================================================================== */

/* How an endpoint appears in EDS: 0 = left out, else an Envoy HealthStatus. */
static int endpoint_status(const hf_endpoint *e, const hf_fleet *f)
{
    if (f == NULL || e->admin_state == HF_ADMIN_DISABLED || e->health == HF_HEALTH_UNHEALTHY) {
        return 0; /* disabled, or evicted by health checks (DESIGN §6) */
    }
    if (f->role == HF_ROLE_ACTIVE) {
        return e->admin_state == HF_ADMIN_DRAINING
                   ? ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING
                   : ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY;
    }
    if (f->role == HF_ROLE_DRAINING) {
        return ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING;
    }
    return 0; /* standby and retired fleets are not in EDS */
}

static const hf_fleet *fleet_of(const xds_service_input *in, const char *name)
{
    for (size_t i = 0; i < in->n_fleets; i++) {
        if (strcmp(in->fleets[i].name, name) == 0) {
            return &in->fleets[i];
        }
    }
    return NULL;
}

/* Endpoints in EDS order: zone, fleet, address, port. */
static int endpoint_order(const void *x, const void *y)
{
    const hf_endpoint *a = *(const hf_endpoint *const *)x;
    const hf_endpoint *b = *(const hf_endpoint *const *)y;
    int c = strcmp(a->zone, b->zone);
    if (c == 0) {
        c = strcmp(a->fleet, b->fleet);
    }
    if (c == 0) {
        c = strcmp(a->address, b->address);
    }
    return c != 0 ? c : (int)a->port - (int)b->port;
}

static Value *string_value(hf_arena *a, const char *s)
{
    Value *v = NEW(Value, GOOGLE__PROTOBUF__VALUE__INIT);
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v->string_value = hf_arena_strdup(a, s);
    return v;
}

/* metadata {filter_metadata {"holdfast": {fleet, version}}} */
static Metadata *endpoint_metadata(hf_arena *a, const hf_fleet *f)
{
    Struct *st = NEW(Struct, GOOGLE__PROTOBUF__STRUCT__INIT);
    st->n_fields = 2;
    st->fields = HF_ANEW_N(a, StructEntry *, 2);
    const char *keys[2] = {"fleet", "version"};
    const char *vals[2] = {f->name, f->version};
    for (int i = 0; i < 2; i++) {
        StructEntry *e = NEW(StructEntry, GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT);
        e->key = (char *)keys[i];
        e->value = string_value(a, vals[i]);
        st->fields[i] = e;
    }
    FilterMetadataEntry *fm =
        NEW(FilterMetadataEntry, ENVOY__CONFIG__CORE__V3__METADATA__FILTER_METADATA_ENTRY__INIT);
    fm->key = "holdfast";
    fm->value = st;
    Metadata *md = NEW(Metadata, ENVOY__CONFIG__CORE__V3__METADATA__INIT);
    md->n_filter_metadata = 1;
    md->filter_metadata = HF_ANEW_N(a, FilterMetadataEntry *, 1);
    md->filter_metadata[0] = fm;
    return md;
}

static LbEndpoint *lb_endpoint(hf_arena *a, const hf_endpoint *e, const hf_fleet *f, int status)
{
    Endpoint *ep = NEW(Endpoint, ENVOY__CONFIG__ENDPOINT__V3__ENDPOINT__INIT);
    ep->address = socket_address(a, e->address, e->port);
    LbEndpoint *lb = NEW(LbEndpoint, ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__INIT);
    lb->host_identifier_case = ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT;
    lb->endpoint = ep;
    lb->health_status = (Envoy__Config__Core__V3__HealthStatus)status;
    lb->metadata = endpoint_metadata(a, f);
    lb->load_balancing_weight = u32(a, e->weight);
    return lb;
}

/* Returns whether any endpoint is DRAINING (the cluster then disables panic mode). */
static bool build_eds(hf_arena *a, xds_resource_list *l, const xds_service_input *in)
{
    const hf_endpoint **eps = HF_ANEW_N(a, const hf_endpoint *, in->n_endpoints + 1);
    size_t n = 0;
    for (size_t i = 0; i < in->n_endpoints; i++) {
        if (endpoint_status(&in->endpoints[i], fleet_of(in, in->endpoints[i].fleet)) != 0) {
            eps[n++] = &in->endpoints[i];
        }
    }
    if (n > 1) {
        qsort(eps, n, sizeof(*eps), endpoint_order);
    }

    ClusterLoadAssignment *cla =
        NEW(ClusterLoadAssignment, ENVOY__CONFIG__ENDPOINT__V3__CLUSTER_LOAD_ASSIGNMENT__INIT);
    cla->cluster_name = (char *)in->svc->name;
    cla->endpoints = HF_ANEW_N(a, LocalityLbEndpoints *, n + 1);
    bool draining = false;
    LocalityLbEndpoints *cur = NULL;
    for (size_t i = 0; i < n; i++) {
        const hf_endpoint *e = eps[i];
        const hf_fleet *f = fleet_of(in, e->fleet);
        if (cur == NULL || strcmp(cur->locality->zone, e->zone) != 0 ||
            strcmp(cur->locality->sub_zone, e->fleet) != 0) {
            /* One locality per (zone, fleet): sub_zone = fleet, so load reports split by fleet. */
            cur =
                NEW(LocalityLbEndpoints, ENVOY__CONFIG__ENDPOINT__V3__LOCALITY_LB_ENDPOINTS__INIT);
            cur->locality = NEW(Locality, ENVOY__CONFIG__CORE__V3__LOCALITY__INIT);
            cur->locality->zone = hf_arena_strdup(a, e->zone);
            cur->locality->sub_zone = hf_arena_strdup(a, e->fleet);
            cur->lb_endpoints = HF_ANEW_N(a, LbEndpoint *, n);
            cur->load_balancing_weight = u32(a, 0);
            cla->endpoints[cla->n_endpoints++] = cur;
        }
        int status = endpoint_status(e, f);
        draining |= status == ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING;
        cur->lb_endpoints[cur->n_lb_endpoints++] = lb_endpoint(a, e, f, status);
        /* gRPC clients skip localities without a weight: weigh each by its endpoints. */
        cur->load_balancing_weight->value += e->weight;
    }
    emit(a, l, XDS_EDS, in->svc->name, &cla->base);
    return draining;
}

/* ======================================================================================== */
/* CDS                                                                                      */
/* ======================================================================================== */

/* The cluster's upstream HTTP options: the protocol spoken to the backends and a bound on the
 * upstream connections' age (the HCM option bounds downstream ones), so a rolling restart's drain
 * also ends connections from Envoy to the backends in time. Nothing for HTTP/1.1 without a max
 * age (Envoy's default). "auto" follows the downstream protocol: Envoy accepts ALPN-based
 * auto_config only with a transport socket that does ALPN, and these clusters are plaintext. */
static void upstream_options(hf_arena *a, Cluster *c, const hf_connection *conn)
{
    typedef Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions UpstreamOptions;
    typedef Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions__UseDownstreamHttpConfig
        UseDownstream;
    typedef Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions__ExplicitHttpConfig
        Explicit;
    if (conn->max_connection_age_s == 0 && conn->upstream_protocol == HF_UPSTREAM_HTTP1) {
        return;
    }
    UpstreamOptions *o =
        NEW(UpstreamOptions, ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__INIT);
    if (conn->max_connection_age_s > 0) {
        o->common_http_protocol_options =
            NEW(HttpProtocolOptions, ENVOY__CONFIG__CORE__V3__HTTP_PROTOCOL_OPTIONS__INIT);
        o->common_http_protocol_options->max_connection_duration =
            seconds(a, conn->max_connection_age_s);
    }
    if (conn->upstream_protocol == HF_UPSTREAM_AUTO) {
        UseDownstream *ud = NEW(
            UseDownstream,
            ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__USE_DOWNSTREAM_HTTP_CONFIG__INIT);
        ud->http_protocol_options = NEW(Envoy__Config__Core__V3__Http1ProtocolOptions,
                                        ENVOY__CONFIG__CORE__V3__HTTP1_PROTOCOL_OPTIONS__INIT);
        ud->http2_protocol_options = NEW(Envoy__Config__Core__V3__Http2ProtocolOptions,
                                         ENVOY__CONFIG__CORE__V3__HTTP2_PROTOCOL_OPTIONS__INIT);
        o->upstream_protocol_options_case =
            ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_USE_DOWNSTREAM_PROTOCOL_CONFIG;
        o->use_downstream_protocol_config = ud;
    } else {
        Explicit *ex = NEW(
            Explicit,
            ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__EXPLICIT_HTTP_CONFIG__INIT);
        if (conn->upstream_protocol == HF_UPSTREAM_HTTP2) {
            ex->protocol_config_case =
                ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__EXPLICIT_HTTP_CONFIG__PROTOCOL_CONFIG_HTTP2_PROTOCOL_OPTIONS;
            ex->http2_protocol_options = NEW(Envoy__Config__Core__V3__Http2ProtocolOptions,
                                             ENVOY__CONFIG__CORE__V3__HTTP2_PROTOCOL_OPTIONS__INIT);
            /* WebSocket to an HTTP/2 backend: RFC 8441 extended CONNECT. */
            ex->http2_protocol_options->allow_connect = conn->websocket;
        } else {
            ex->protocol_config_case =
                ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__EXPLICIT_HTTP_CONFIG__PROTOCOL_CONFIG_HTTP_PROTOCOL_OPTIONS;
            ex->http_protocol_options = NEW(Envoy__Config__Core__V3__Http1ProtocolOptions,
                                            ENVOY__CONFIG__CORE__V3__HTTP1_PROTOCOL_OPTIONS__INIT);
        }
        o->upstream_protocol_options_case =
            ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_EXPLICIT_HTTP_CONFIG;
        o->explicit_http_config = ex;
    }
    Envoy__Config__Cluster__V3__Cluster__TypedExtensionProtocolOptionsEntry *e =
        NEW(Envoy__Config__Cluster__V3__Cluster__TypedExtensionProtocolOptionsEntry,
            ENVOY__CONFIG__CLUSTER__V3__CLUSTER__TYPED_EXTENSION_PROTOCOL_OPTIONS_ENTRY__INIT);
    e->key = UPSTREAM_HTTP_OPTIONS;
    e->value = pack_any(a, UPSTREAM_HTTP_OPTIONS_URL, &o->base);
    c->n_typed_extension_protocol_options = 1;
    c->typed_extension_protocol_options =
        HF_ANEW_N(a, Envoy__Config__Cluster__V3__Cluster__TypedExtensionProtocolOptionsEntry *, 1);
    c->typed_extension_protocol_options[0] = e;
}

static void build_cds(hf_arena *a, xds_resource_list *l, const xds_service_input *in,
                      enum xds_node_kind kind, bool draining)
{
    Cluster *c = NEW(Cluster, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT);
    c->name = (char *)in->svc->name;
    c->cluster_discovery_type_case =
        ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
    c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS;
    c->eds_cluster_config =
        NEW(EdsClusterConfig, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__EDS_CLUSTER_CONFIG__INIT);
    c->eds_cluster_config->eds_config = ads_source(a);
    c->eds_cluster_config->service_name = (char *)in->svc->name;
    c->connect_timeout = seconds(a, 5);
    c->lb_policy = in->svc->affinity.mode == HF_AFFINITY_HASH_COOKIE
                       ? ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RING_HASH
                       : ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN;
    /* A session cookie may keep reaching a DRAINING host; UNHEALTHY stays out (failover). */
    static Envoy__Config__Core__V3__HealthStatus override[] = {
        ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNKNOWN,
        ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY,
        ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DEGRADED,
        ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING,
    };
    CommonLbConfig *lb =
        NEW(CommonLbConfig, ENVOY__CONFIG__CLUSTER__V3__CLUSTER__COMMON_LB_CONFIG__INIT);
    lb->override_host_status =
        NEW(HealthStatusSet, ENVOY__CONFIG__CORE__V3__HEALTH_STATUS_SET__INIT);
    lb->override_host_status->n_statuses = 4;
    lb->override_host_status->statuses = override;
    if (draining) {
        /* Panic mode would spread new sessions over DRAINING hosts once half the cluster
         * drains; a threshold of 0 turns it off while anything drains. */
        lb->healthy_panic_threshold = NEW(Percent, ENVOY__TYPE__V3__PERCENT__INIT);
        lb->healthy_panic_threshold->value = 0;
    }
    c->common_lb_config = lb;
    /* Hosts leave EDS when evicted: remove them even if active health checking says healthy. */
    c->ignore_health_on_host_removal = 1;
    if (kind == XDS_NODE_ENVOY) {
        upstream_options(a, c, &in->svc->connection);
    }
    if (kind == XDS_NODE_GRPC) {
        c->lrs_server = NEW(ConfigSource, ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__INIT);
        c->lrs_server->config_source_specifier_case =
            ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_SELF;
        c->lrs_server->self =
            NEW(SelfConfigSource, ENVOY__CONFIG__CORE__V3__SELF_CONFIG_SOURCE__INIT);
    }
    emit(a, l, XDS_CDS, in->svc->name, &c->base);
    refer(l, XDS_EDS, in->svc->name);
}

/* ======================================================================================== */
/* RDS                                                                                      */
/* ======================================================================================== */

static HttpCookie *http_cookie(hf_arena *a, const hf_affinity *af, uint32_t ttl_s)
{
    HttpCookie *ck = NEW(HttpCookie, ENVOY__TYPE__HTTP__V3__COOKIE__INIT);
    ck->name = (char *)af->cookie_name;
    ck->ttl = seconds(a, ttl_s);
    ck->path = (char *)af->path;
    return ck;
}

/* typed_per_filter_config enabling cookie-based stateful sessions for one virtual host. */
static PerFilterEntry *session_per_route(hf_arena *a, const hf_affinity *af, uint32_t ttl_s)
{
    CookieBasedSessionState *cs = NEW(
        CookieBasedSessionState,
        ENVOY__EXTENSIONS__HTTP__STATEFUL_SESSION__COOKIE__V3__COOKIE_BASED_SESSION_STATE__INIT);
    cs->cookie = http_cookie(a, af, ttl_s);
    TypedExtensionConfig *state =
        NEW(TypedExtensionConfig, ENVOY__CONFIG__CORE__V3__TYPED_EXTENSION_CONFIG__INIT);
    state->name = COOKIE_STATE;
    state->typed_config = pack_any(a, COOKIE_STATE_URL, &cs->base);
    StatefulSession *ss =
        NEW(StatefulSession,
            ENVOY__EXTENSIONS__FILTERS__HTTP__STATEFUL_SESSION__V3__STATEFUL_SESSION__INIT);
    ss->session_state = state;
    ss->strict = af->strict;
    StatefulSessionPerRoute *pr = NEW(
        StatefulSessionPerRoute,
        ENVOY__EXTENSIONS__FILTERS__HTTP__STATEFUL_SESSION__V3__STATEFUL_SESSION_PER_ROUTE__INIT);
    pr->override_case =
        ENVOY__EXTENSIONS__FILTERS__HTTP__STATEFUL_SESSION__V3__STATEFUL_SESSION_PER_ROUTE__OVERRIDE_STATEFUL_SESSION;
    pr->stateful_session = ss;
    PerFilterEntry *e =
        NEW(PerFilterEntry,
            ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__TYPED_PER_FILTER_CONFIG_ENTRY__INIT);
    e->key = SESSION_FILTER;
    e->value = pack_any(a, SESSION_ROUTE_URL, &pr->base);
    return e;
}

static Google__Protobuf__BoolValue *boolean(hf_arena *a, bool v)
{
    Google__Protobuf__BoolValue *b =
        NEW(Google__Protobuf__BoolValue, GOOGLE__PROTOBUF__BOOL_VALUE__INIT);
    b->value = v;
    return b;
}

/* Enables WebSocket upgrades on one route (the connection manager disables them by default
 * once any service of the group allows them). */
static void route_websocket(hf_arena *a, RouteAction *ra)
{
    typedef Envoy__Config__Route__V3__RouteAction__UpgradeConfig UpgradeConfig;
    UpgradeConfig *u =
        NEW(UpgradeConfig, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__UPGRADE_CONFIG__INIT);
    u->upgrade_type = "websocket";
    u->enabled = boolean(a, true);
    ra->n_upgrade_configs = 1;
    ra->upgrade_configs = HF_ANEW_N(a, UpgradeConfig *, 1);
    ra->upgrade_configs[0] = u;
}

/* A route "/" (or "" for gRPC) to the service's cluster; upgrades: Envoy's WebSocket setting. */
static Route *route_to(hf_arena *a, const hf_service *svc, const char *prefix, bool upgrades)
{
    RouteAction *ra = NEW(RouteAction, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__INIT);
    ra->cluster_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_CLUSTER;
    ra->cluster = (char *)svc->name;
    if (svc->affinity.mode == HF_AFFINITY_HASH_COOKIE) {
        HashCookie *hc =
            NEW(HashCookie, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__COOKIE__INIT);
        hc->name = (char *)svc->affinity.cookie_name;
        hc->ttl = seconds(a, hf_service_ttl_in_force(svc));
        hc->path = (char *)svc->affinity.path;
        HashPolicy *hp = NEW(HashPolicy, ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__INIT);
        hp->policy_specifier_case =
            ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__HASH_POLICY__POLICY_SPECIFIER_COOKIE;
        hp->cookie = hc;
        ra->n_hash_policy = 1;
        ra->hash_policy = HF_ANEW_N(a, HashPolicy *, 1);
        ra->hash_policy[0] = hp;
    }
    if (svc->connection.max_stream_duration_s > 0) {
        ra->max_stream_duration =
            NEW(Envoy__Config__Route__V3__RouteAction__MaxStreamDuration,
                ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__MAX_STREAM_DURATION__INIT);
        ra->max_stream_duration->max_stream_duration =
            seconds(a, svc->connection.max_stream_duration_s);
    }
    if (upgrades && svc->connection.websocket) {
        route_websocket(a, ra);
    }
    RouteMatch *m = NEW(RouteMatch, ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__INIT);
    m->path_specifier_case = ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX;
    m->prefix = (char *)prefix;
    Route *r = NEW(Route, ENVOY__CONFIG__ROUTE__V3__ROUTE__INIT);
    r->match = m;
    r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE;
    r->route = ra;
    return r;
}

static VirtualHost *virtual_host(hf_arena *a, const hf_service *svc)
{
    VirtualHost *vh = NEW(VirtualHost, ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__INIT);
    vh->name = (char *)svc->name;
    if (svc->n_domains == 0) {
        vh->n_domains = 1;
        vh->domains = HF_ANEW_N(a, char *, 1);
        vh->domains[0] = (char *)svc->name;
    } else {
        vh->n_domains = svc->n_domains;
        vh->domains = HF_ANEW_N(a, char *, svc->n_domains);
        for (uint32_t i = 0; i < svc->n_domains; i++) {
            vh->domains[i] = (char *)svc->domains[i];
        }
    }
    vh->n_routes = 1;
    vh->routes = HF_ANEW_N(a, Route *, 1);
    vh->routes[0] = route_to(a, svc, "/", true);
    if (svc->affinity.mode == HF_AFFINITY_COOKIE) {
        vh->n_typed_per_filter_config = 1;
        vh->typed_per_filter_config = HF_ANEW_N(a, PerFilterEntry *, 1);
        vh->typed_per_filter_config[0] =
            session_per_route(a, &svc->affinity, hf_service_ttl_in_force(svc));
    }
    return vh;
}

/* One domain of a route table: virtual host vh, position pos; by_name: the service's name. */
typedef struct host_ref {
    const char *host;
    size_t vh, pos;
    bool by_name;
} host_ref;

static int host_cmp(const void *x, const void *y)
{
    const host_ref *p = x, *q = y;
    int c = strcasecmp(p->host, q->host);
    if (c != 0) {
        return c;
    }
    if (p->by_name != q->by_name) {
        return p->by_name ? 1 : -1; /* an explicit domain wins over routing by name */
    }
    return p->vh < q->vh ? -1 : p->vh > q->vh;
}

/* Envoy rejects a whole route table over one duplicate domain (compared lower-cased). The REST
 * API refuses them (issue 12 item 2), but a database written before may hold a service routed
 * by its name that another service claims as a domain: the explicit domain is kept, the
 * duplicate left out, and a virtual host left without a domain is left out. */
static void unique_domains(RouteConfiguration *rc, const xds_service_input *svcs)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < rc->n_virtual_hosts; i++) {
        total += rc->virtual_hosts[i]->n_domains;
    }
    host_ref *refs = xcalloc(total ? total : 1, sizeof(*refs));
    for (size_t i = 0; i < rc->n_virtual_hosts; i++) {
        for (size_t d = 0; d < rc->virtual_hosts[i]->n_domains; d++) {
            refs[k++] =
                (host_ref){rc->virtual_hosts[i]->domains[d], i, d, svcs[i].svc->n_domains == 0};
        }
    }
    qsort(refs, total, sizeof(*refs), host_cmp);
    for (k = 1; k < total; k++) {
        if (strcasecmp(refs[k].host, refs[k - 1].host) == 0) {
            rc->virtual_hosts[refs[k].vh]->domains[refs[k].pos] = NULL;
        }
    }
    free(refs);
    size_t kept = 0;
    for (size_t i = 0; i < rc->n_virtual_hosts; i++) {
        VirtualHost *vh = rc->virtual_hosts[i];
        size_t m = 0;
        for (size_t d = 0; d < vh->n_domains; d++) {
            if (vh->domains[d] != NULL) {
                vh->domains[m++] = vh->domains[d];
            }
        }
        vh->n_domains = m;
        if (m > 0) {
            rc->virtual_hosts[kept++] = vh;
        }
    }
    rc->n_virtual_hosts = kept;
}

static void build_rds(hf_arena *a, xds_resource_list *l, const hf_proxy_group *g,
                      const xds_service_input *svcs, size_t n)
{
    RouteConfiguration *rc =
        NEW(RouteConfiguration, ENVOY__CONFIG__ROUTE__V3__ROUTE_CONFIGURATION__INIT);
    rc->name = (char *)g->name;
    rc->n_virtual_hosts = n;
    rc->virtual_hosts = HF_ANEW_N(a, VirtualHost *, n + 1);
    for (size_t i = 0; i < n; i++) {
        rc->virtual_hosts[i] = virtual_host(a, svcs[i].svc);
    }
    unique_domains(rc, svcs);
    emit(a, l, XDS_RDS, g->name, &rc->base);
    for (size_t i = 0; i < n; i++) {
        refer(l, XDS_CDS, svcs[i].svc->name);
    }
}

/* ======================================================================================== */
/* LDS                                                                                      */
/* ======================================================================================== */

/* HCM connection limits for a group: the strictest max age / stream duration of its services
 * (0 = unset) and the longest drain timeout. */
static void group_limits(const xds_service_input *svcs, size_t n, hf_connection *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const hf_connection *c = &svcs[i].svc->connection;
        if (c->max_connection_age_s &&
            (!out->max_connection_age_s || c->max_connection_age_s < out->max_connection_age_s)) {
            out->max_connection_age_s = c->max_connection_age_s;
        }
        if (c->max_stream_duration_s && (!out->max_stream_duration_s ||
                                         c->max_stream_duration_s < out->max_stream_duration_s)) {
            out->max_stream_duration_s = c->max_stream_duration_s;
        }
        if (c->drain_timeout_s > out->drain_timeout_s) {
            out->drain_timeout_s = c->drain_timeout_s;
        }
    }
}

static Hcm *new_hcm(hf_arena *a, const char *stat_prefix, const hf_connection *lim)
{
    Hcm *h = NEW(
        Hcm,
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__INIT);
    h->stat_prefix = hf_arena_strdup(a, stat_prefix);
    h->codec_type =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__CODEC_TYPE__AUTO;
    if (lim->max_connection_age_s || lim->max_stream_duration_s) {
        h->common_http_protocol_options =
            NEW(HttpProtocolOptions, ENVOY__CONFIG__CORE__V3__HTTP_PROTOCOL_OPTIONS__INIT);
        if (lim->max_connection_age_s) {
            h->common_http_protocol_options->max_connection_duration =
                seconds(a, lim->max_connection_age_s);
        }
        if (lim->max_stream_duration_s) {
            h->common_http_protocol_options->max_stream_duration =
                seconds(a, lim->max_stream_duration_s);
        }
    }
    if (lim->drain_timeout_s) {
        h->drain_timeout = seconds(a, lim->drain_timeout_s);
    }
    return h;
}

/* WebSocket upgrades known to the connection manager but off by default: the routes of the
 * services that allow them turn them on (without any upgrade_configs Envoy answers 403). */
static void hcm_websocket(hf_arena *a, Hcm *h)
{
    typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager__UpgradeConfig
        UpgradeConfig;
    UpgradeConfig *u = NEW(
        UpgradeConfig,
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__UPGRADE_CONFIG__INIT);
    u->upgrade_type = "websocket";
    u->enabled = boolean(a, false);
    h->n_upgrade_configs = 1;
    h->upgrade_configs = HF_ANEW_N(a, UpgradeConfig *, 1);
    h->upgrade_configs[0] = u;
}

static void build_envoy_listener(hf_arena *a, xds_resource_list *l, const hf_proxy_group *g,
                                 const xds_service_input *svcs, size_t n)
{
    hf_connection lim;
    group_limits(svcs, n, &lim);
    Hcm *h = new_hcm(a, g->name, &lim);
    h->route_specifier_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_RDS;
    h->rds = NEW(Rds, ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__RDS__INIT);
    h->rds->config_source = ads_source(a);
    h->rds->route_config_name = (char *)g->name;

    bool cookie = false;
    bool websocket = false;
    for (size_t i = 0; i < n; i++) {
        cookie |= svcs[i].svc->affinity.mode == HF_AFFINITY_COOKIE;
        websocket |= svcs[i].svc->connection.websocket;
    }
    if (websocket) {
        hcm_websocket(a, h);
    }
    h->http_filters = HF_ANEW_N(a, HttpFilter *, 2);
    if (cookie) {
        /* Disabled at the filter level (no session_state); each cookie-mode virtual host
         * enables it with its own cookie through typed_per_filter_config. */
        StatefulSession *ss =
            NEW(StatefulSession,
                ENVOY__EXTENSIONS__FILTERS__HTTP__STATEFUL_SESSION__V3__STATEFUL_SESSION__INIT);
        h->http_filters[h->n_http_filters++] =
            http_filter(a, SESSION_FILTER, pack_any(a, SESSION_URL, &ss->base));
    }
    h->http_filters[h->n_http_filters++] = router_filter(a);

    Filter *f = NEW(Filter, ENVOY__CONFIG__LISTENER__V3__FILTER__INIT);
    f->name = HCM_FILTER;
    f->config_type_case = ENVOY__CONFIG__LISTENER__V3__FILTER__CONFIG_TYPE_TYPED_CONFIG;
    f->typed_config = pack_any(a, HCM_URL, &h->base);
    FilterChain *fc = NEW(FilterChain, ENVOY__CONFIG__LISTENER__V3__FILTER_CHAIN__INIT);
    fc->n_filters = 1;
    fc->filters = HF_ANEW_N(a, Filter *, 1);
    fc->filters[0] = f;
    Listener *ls = NEW(Listener, ENVOY__CONFIG__LISTENER__V3__LISTENER__INIT);
    ls->name = (char *)g->name;
    ls->address = socket_address(a, "0.0.0.0", g->listener_port);
    ls->n_filter_chains = 1;
    ls->filter_chains = HF_ANEW_N(a, FilterChain *, 1);
    ls->filter_chains[0] = fc;
    emit(a, l, XDS_LDS, g->name, &ls->base);
    refer(l, XDS_RDS, g->name);
}

/* The API listener a gRPC client resolves for xds:///name: routes everything to svc. */
static void build_api_listener(hf_arena *a, xds_resource_list *l, const char *name,
                               const hf_service *svc)
{
    Hcm *h = new_hcm(a, name, &svc->connection);
    VirtualHost *vh = NEW(VirtualHost, ENVOY__CONFIG__ROUTE__V3__VIRTUAL_HOST__INIT);
    vh->name = (char *)svc->name;
    vh->n_domains = 1;
    vh->domains = HF_ANEW_N(a, char *, 1);
    vh->domains[0] = "*";
    vh->n_routes = 1;
    vh->routes = HF_ANEW_N(a, Route *, 1);
    vh->routes[0] = route_to(a, svc, "", false);
    RouteConfiguration *rc =
        NEW(RouteConfiguration, ENVOY__CONFIG__ROUTE__V3__ROUTE_CONFIGURATION__INIT);
    rc->name = (char *)svc->name;
    rc->n_virtual_hosts = 1;
    rc->virtual_hosts = HF_ANEW_N(a, VirtualHost *, 1);
    rc->virtual_hosts[0] = vh;
    h->route_specifier_case =
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG;
    h->route_config = rc;
    h->n_http_filters = 1;
    h->http_filters = HF_ANEW_N(a, HttpFilter *, 1);
    h->http_filters[0] = router_filter(a);

    ApiListener *api = NEW(ApiListener, ENVOY__CONFIG__LISTENER__V3__API_LISTENER__INIT);
    api->api_listener = pack_any(a, HCM_URL, &h->base);
    Listener *ls = NEW(Listener, ENVOY__CONFIG__LISTENER__V3__LISTENER__INIT);
    ls->name = (char *)name;
    ls->api_listener = api;
    emit(a, l, XDS_LDS, name, &ls->base);
    refer(l, XDS_CDS, svc->name);
}

/* ======================================================================================== */

void xds_build_service(const xds_service_input *in, xds_service_resources *out)
{
    hf_arena arena = {0};
    hf_arena *a = &arena;
    bool draining = build_eds(a, &out->eds, in);
    build_cds(a, &out->cds[XDS_NODE_ENVOY], in, XDS_NODE_ENVOY, draining);
    build_cds(a, &out->cds[XDS_NODE_GRPC], in, XDS_NODE_GRPC, draining);
    build_api_listener(a, &out->api, in->svc->name, in->svc);
    for (uint32_t d = 0; d < in->svc->n_domains; d++) {
        /* A service may list its own name: one listener of that name. */
        if (strcmp(in->svc->domains[d], in->svc->name) != 0) {
            build_api_listener(a, &out->api, in->svc->domains[d], in->svc);
        }
    }
    xds_resource_list_sort(&out->api);
    hf_arena_destroy(a);
}

void xds_service_resources_clear(xds_service_resources *r)
{
    xds_resource_list_clear(&r->eds);
    xds_resource_list_clear(&r->cds[0]);
    xds_resource_list_clear(&r->cds[1]);
    xds_resource_list_clear(&r->api);
}

void xds_build_group(const hf_proxy_group *group, const xds_service_input *svcs, size_t n,
                     xds_resource_list *rds, xds_resource_list *lds)
{
    hf_arena arena = {0};
    build_rds(&arena, rds, group, svcs, n);
    build_envoy_listener(&arena, lds, group, svcs, n);
    hf_arena_destroy(&arena);
}

void xds_build_view(const hf_proxy_group *group, const xds_service_input *svcs, size_t n,
                    enum xds_node_kind kind, xds_resource_list out[XDS_NTYPES])
{
    for (size_t i = 0; i < n; i++) {
        xds_service_resources r = {0};
        xds_build_service(&svcs[i], &r);
        xds_resource_list_extend(&out[XDS_EDS], &r.eds);
        xds_resource_list_extend(&out[XDS_CDS], &r.cds[kind]);
        if (kind == XDS_NODE_GRPC) {
            xds_resource_list_extend(&out[XDS_LDS], &r.api);
        }
        xds_service_resources_clear(&r);
    }
    if (kind == XDS_NODE_ENVOY && group != NULL) {
        xds_build_group(group, svcs, n, &out[XDS_RDS], &out[XDS_LDS]);
    }
    for (int t = 0; t < XDS_NTYPES; t++) {
        if (t == XDS_LDS && kind == XDS_NODE_GRPC) {
            xds_resource_list_unique(&out[t]);
        } else {
            xds_resource_list_sort(&out[t]);
        }
    }
}
