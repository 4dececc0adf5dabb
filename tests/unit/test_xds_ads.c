/*
 * Unit tests of the ADS protocol (ads.c) and the snapshot builder (snapshot.c) without gRPC or
 * SQLite: snapshots are built from hand-made store inputs, streams are driven with real encoded
 * DiscoveryRequests through a fake stream that records what the protocol sends, and every
 * response is decoded with the official protos.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ads.h"
#include "buf.h"
#include "xalloc.h"

#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Discovery__V3__DiscoveryRequest DiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse DiscoveryResponse;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest DeltaDiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse DeltaDiscoveryResponse;

#define CDS "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#define EDS "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#define LDS "type.googleapis.com/envoy.config.listener.v3.Listener"
#define RDS "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

/* ---- the world: a hand-made input, its snapshot, a fake stream ---- */

#define MAX_SENT 64

struct fake {
    hf_buf sent[MAX_SENT];
    int n_sent;
    int finished_status; /* -1 while open */
    int acks, nacks, connects, disconnects;
    store_input *input;
    xds_snapshot *snap;
    uint64_t next_rev;
    xds_ads ads;
};

static struct fake F;

static int fake_send(void *io, hf_rbuf *const *parts, size_t n)
{
    (void)io;
    assert_true(F.n_sent < MAX_SENT);
    hf_buf *b = &F.sent[F.n_sent++];
    memset(b, 0, sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        hf_buf_append(b, parts[i]->data, parts[i]->len);
    }
    return HF_OK;
}

static void fake_finish(void *io, int status, const char *message)
{
    (void)io, (void)message;
    F.finished_status = status;
}

static xds_snapshot *fake_snapshot(void *arg)
{
    (void)arg;
    return xds_snapshot_ref(F.snap);
}

static void on_ack(void *arg, const xds_stream_info *in, enum xds_type t, const char *v,
                   uint64_t ns)
{
    (void)arg, (void)in, (void)t, (void)v, (void)ns;
    F.acks++;
}

static void on_nack(void *arg, const xds_stream_info *in, enum xds_type t, const char *v,
                    const char *e)
{
    (void)arg, (void)in, (void)t, (void)v, (void)e;
    F.nacks++;
}

static void on_connect(void *arg, const xds_stream_info *in)
{
    (void)arg, (void)in;
    F.connects++;
}

static void on_disconnect(void *arg, const xds_stream_info *in)
{
    (void)arg, (void)in;
    F.disconnects++;
}

/* A service with one active fleet "blue" and n endpoints 10.0.0.1..n:8080. */
static store_input_service *make_service(const char *name, int64_t id, int n)
{
    store_input_service *s = store_input_service_new();
    s->id = id;
    s->rev = ++F.next_rev;
    hf_service_defaults(&s->svc);
    snprintf(s->svc.name, sizeof(s->svc.name), "%s", name);
    snprintf(s->svc.proxy_group, sizeof(s->svc.proxy_group), "edge");
    snprintf(s->svc.affinity.cookie_name, sizeof(s->svc.affinity.cookie_name), "hf_%s", name);
    s->fleets = xcalloc(1, sizeof(*s->fleets));
    s->n_fleets = 1;
    snprintf(s->fleets[0].service, HF_NAME_MAX, "%s", name);
    snprintf(s->fleets[0].name, HF_NAME_MAX, "blue");
    s->fleets[0].role = HF_ROLE_ACTIVE;
    s->endpoints = xcalloc((size_t)n + 1, sizeof(*s->endpoints));
    s->n_endpoints = (size_t)n;
    for (int i = 0; i < n; i++) {
        hf_endpoint *e = &s->endpoints[i];
        hf_endpoint_defaults(e);
        snprintf(e->service, HF_NAME_MAX, "%s", name);
        snprintf(e->fleet, HF_NAME_MAX, "blue");
        snprintf(e->address, HF_ADDR_MAX, "10.0.0.%d", i + 1);
        snprintf(e->zone, HF_SHORT_MAX, "z1");
        e->port = 8080;
    }
    return s;
}

/* A copy of service i of the current input with a new revision, for the caller to change. */
static store_input_service *copy_service(size_t i)
{
    const store_input_service *o = F.input->services[i];
    store_input_service *s = store_input_service_new();
    s->id = o->id;
    s->rev = ++F.next_rev;
    s->svc = o->svc;
    s->fleets = xcalloc(o->n_fleets + 1, sizeof(*s->fleets));
    memcpy(s->fleets, o->fleets, o->n_fleets * sizeof(*s->fleets));
    s->n_fleets = o->n_fleets;
    s->endpoints = xcalloc(o->n_endpoints + 1, sizeof(*s->endpoints));
    memcpy(s->endpoints, o->endpoints, o->n_endpoints * sizeof(*s->endpoints));
    s->n_endpoints = o->n_endpoints;
    return s;
}

/* Publishes a new input: the current one with service i replaced by s (NULL: removed; i equal
 * to the number of services: s appended, its name sorting last). */
static void publish(size_t i, store_input_service *s)
{
    store_input *in = xcalloc(1, sizeof(*in));
    in->generation = F.input->generation + 1;
    in->groups = xcalloc(F.input->n_groups, sizeof(*in->groups));
    memcpy(in->groups, F.input->groups, F.input->n_groups * sizeof(*in->groups));
    in->n_groups = F.input->n_groups;
    in->services = xcalloc(F.input->n_services + 1, sizeof(*in->services));
    for (size_t k = 0; k < F.input->n_services; k++) {
        store_input_service *o = F.input->services[k];
        if (k == i) {
            o = s;
        } else {
            atomic_fetch_add(&o->refs, 1);
        }
        if (o != NULL) {
            in->services[in->n_services++] = o;
        }
    }
    if (i == F.input->n_services) {
        in->services = xrealloc(in->services, (in->n_services + 1) * sizeof(*in->services));
        in->services[in->n_services++] = s;
    }
    xds_snapshot *snap;
    assert_int_equal(xds_snapshot_build(in, F.snap, &snap, NULL), HF_OK);
    assert_int_equal(xds_snapshot_check(snap, NULL), HF_OK);
    xds_snapshot_unref(F.snap);
    store_input_free(F.input);
    F.snap = snap;
    F.input = in;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    F.finished_status = -1;
    F.ads = (xds_ads){
        .snapshot = fake_snapshot,
        .cb = {.connect = on_connect, .disconnect = on_disconnect, .ack = on_ack, .nack = on_nack}};
    store_input *in = xcalloc(1, sizeof(*in));
    in->generation = 1;
    in->groups = xcalloc(1, sizeof(*in->groups));
    in->n_groups = 1;
    snprintf(in->groups[0].name, HF_NAME_MAX, "edge");
    in->groups[0].listener_port = 10000;
    in->services = xcalloc(2, sizeof(*in->services));
    in->services[in->n_services++] = make_service("cart", 1, 2);
    in->services[in->n_services++] = make_service("shop", 2, 3);
    F.input = in;
    assert_int_equal(xds_snapshot_build(in, NULL, &F.snap, NULL), HF_OK);
    assert_int_equal(xds_snapshot_check(F.snap, NULL), HF_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < F.n_sent; i++) {
        hf_buf_destroy(&F.sent[i]);
    }
    xds_snapshot_unref(F.snap);
    store_input_free(F.input);
    return 0;
}

static xds_stream *open_stream(bool delta)
{
    xds_stream_io io = {fake_send, fake_finish, NULL};
    return xds_stream_open(&F.ads, &io, 1, "ipv4:127.0.0.1:1", delta);
}

/* ---- requests ---- */

static Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;

static void sotw(xds_stream *s, const char *url, const char **names, size_t n, const char *nonce,
                 const char *error)
{
    node.id = "n1";
    node.cluster = "edge";
    node.user_agent_name = "envoy";
    DiscoveryRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    rq.node = &node;
    rq.type_url = (char *)url;
    rq.resource_names = (char **)names;
    rq.n_resource_names = n;
    rq.response_nonce = (char *)(nonce ? nonce : "");
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    if (error != NULL) {
        st.code = 3;
        st.message = (char *)error;
        rq.error_detail = &st;
    }
    uint8_t buf[4096];
    size_t len = envoy__service__discovery__v3__discovery_request__pack(&rq, buf);
    xds_stream_message(s, buf, len);
}

static void
delta(xds_stream *s, const char *url, const char **sub, size_t nsub, const char **unsub,
      size_t nunsub, const char *nonce, const char *error,
      Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry **initial,
      size_t ninitial)
{
    node.id = "n1";
    node.cluster = "edge";
    node.user_agent_name = "envoy";
    DeltaDiscoveryRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    rq.node = &node;
    rq.type_url = (char *)url;
    rq.resource_names_subscribe = (char **)sub;
    rq.n_resource_names_subscribe = nsub;
    rq.resource_names_unsubscribe = (char **)unsub;
    rq.n_resource_names_unsubscribe = nunsub;
    rq.initial_resource_versions = initial;
    rq.n_initial_resource_versions = ninitial;
    rq.response_nonce = (char *)(nonce ? nonce : "");
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    if (error != NULL) {
        st.message = (char *)error;
        rq.error_detail = &st;
    }
    uint8_t buf[4096];
    size_t len = envoy__service__discovery__v3__delta_discovery_request__pack(&rq, buf);
    xds_stream_message(s, buf, len);
}

/* ---- responses ---- */

static DiscoveryResponse *response(int i)
{
    assert_true(i < F.n_sent);
    DiscoveryResponse *r = envoy__service__discovery__v3__discovery_response__unpack(
        NULL, F.sent[i].len, (const uint8_t *)F.sent[i].data);
    assert_non_null(r);
    return r;
}

static void response_free(DiscoveryResponse *r)
{
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
}

static DeltaDiscoveryResponse *delta_response(int i)
{
    assert_true(i < F.n_sent);
    DeltaDiscoveryResponse *r = envoy__service__discovery__v3__delta_discovery_response__unpack(
        NULL, F.sent[i].len, (const uint8_t *)F.sent[i].data);
    assert_non_null(r);
    return r;
}

/* The type URL, number of resources and nonce of SotW response i. */
static void expect(int i, const char *url, size_t n, char nonce[24])
{
    DiscoveryResponse *r = response(i);
    assert_string_equal(r->type_url, url);
    assert_int_equal(r->n_resources, n);
    for (size_t k = 0; k < r->n_resources; k++) {
        assert_string_equal(r->resources[k]->type_url, url);
    }
    if (nonce != NULL) {
        snprintf(nonce, 24, "%s", r->nonce);
    }
    response_free(r);
}

/* Brings an Envoy SotW stream to holding CDS, EDS (both clusters), LDS and RDS, all ACKed. */
static void envoy_steady(xds_stream *s)
{
    char n1[24], n2[24], n3[24], n4[24];
    const char *clusters[] = {"cart", "shop"};
    const char *routes[] = {"edge"};
    sotw(s, CDS, NULL, 0, NULL, NULL);
    sotw(s, LDS, NULL, 0, NULL, NULL);
    assert_int_equal(F.n_sent, 1);
    expect(0, CDS, 2, n1);
    xds_stream_sent(s);
    assert_int_equal(F.n_sent, 1); /* LDS waits for CDS's answer */
    sotw(s, CDS, NULL, 0, n1, NULL);
    assert_int_equal(F.n_sent, 1); /* ... and for Envoy to ask for every cluster's endpoints */
    sotw(s, EDS, clusters, 2, NULL, NULL);
    assert_int_equal(F.n_sent, 2);
    expect(1, EDS, 2, n2);
    xds_stream_sent(s);
    assert_int_equal(F.n_sent, 2); /* LDS waits for EDS's answer */
    sotw(s, EDS, clusters, 2, n2, NULL);
    assert_int_equal(F.n_sent, 3);
    expect(2, LDS, 1, n3);
    xds_stream_sent(s);
    sotw(s, LDS, NULL, 0, n3, NULL);
    sotw(s, RDS, routes, 1, NULL, NULL);
    assert_int_equal(F.n_sent, 4);
    expect(3, RDS, 1, n4);
    xds_stream_sent(s);
    sotw(s, RDS, routes, 1, n4, NULL);
    assert_int_equal(F.acks, 4);
}

/* ---- tests ---- */

/* CDS -> EDS -> LDS -> RDS, each after the answer to the one before. */
static void test_make_before_break(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    envoy_steady(s);
    assert_int_equal(F.connects, 1);
    assert_int_equal(F.nacks, 0);
    xds_stream_close(s);
    assert_int_equal(F.disconnects, 1);
}

/* A NACKed version is not sent again; the next snapshot is. */
static void test_nack_not_resent(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    char n1[24], n2[24];
    sotw(s, CDS, NULL, 0, NULL, NULL);
    expect(0, CDS, 2, n1);
    xds_stream_sent(s);
    sotw(s, CDS, NULL, 0, n1, "cluster cart: bad");
    assert_int_equal(F.nacks, 1);
    xds_proxy_info info;
    assert_true(xds_stream_status(s, &info));
    assert_string_equal(info.types[XDS_CDS].nack_error, "cluster cart: bad");
    assert_string_equal(info.types[XDS_CDS].nack_version, info.types[XDS_CDS].sent);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 1);
    store_input_service *c = copy_service(0);
    c->svc.affinity.mode = HF_AFFINITY_HASH_COOKIE; /* changes the cluster */
    publish(0, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 2);
    expect(1, CDS, 2, n2);
    assert_string_not_equal(n1, n2);
    xds_stream_close(s);
}

/* An answer carrying an older nonce is ignored: no ACK recorded, nothing sent. */
static void test_stale_nonce(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    char n1[24], n2[24];
    sotw(s, CDS, NULL, 0, NULL, NULL);
    expect(0, CDS, 2, n1);
    xds_stream_sent(s);
    store_input_service *c = copy_service(1);
    c->svc.affinity.mode = HF_AFFINITY_HASH_COOKIE;
    publish(1, c);
    xds_stream_pump(s);
    expect(1, CDS, 2, n2);
    xds_stream_sent(s);
    sotw(s, CDS, NULL, 0, n1, NULL); /* stale */
    assert_int_equal(F.acks, 0);
    assert_int_equal(F.n_sent, 2);
    sotw(s, CDS, NULL, 0, n2, NULL);
    assert_int_equal(F.acks, 1);
    xds_proxy_info info;
    assert_true(xds_stream_status(s, &info));
    assert_string_equal(info.types[XDS_CDS].acked, info.types[XDS_CDS].sent);
    xds_stream_close(s);
}

/* Named subscriptions get the named resources; wildcard gets all. */
static void test_named_and_wildcard(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    const char *one[] = {"shop"};
    sotw(s, EDS, one, 1, NULL, NULL);
    DiscoveryResponse *r = response(0);
    assert_int_equal(r->n_resources, 1);
    Envoy__Config__Endpoint__V3__ClusterLoadAssignment *cla =
        envoy__config__endpoint__v3__cluster_load_assignment__unpack(
            NULL, r->resources[0]->value.len, r->resources[0]->value.data);
    assert_string_equal(cla->cluster_name, "shop");
    assert_int_equal(cla->endpoints[0]->n_lb_endpoints, 3);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
    response_free(r);
    xds_stream_sent(s);
    xds_stream_close(s);
    xds_stream *w = open_stream(false);
    sotw(w, EDS, NULL, 0, NULL, NULL);
    expect(1, EDS, 2, NULL);
    xds_stream_close(w);
}

/* State of the world, EDS: after one endpoint changes, only that ClusterLoadAssignment goes. */
static void test_sotw_eds_sends_only_changes(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    envoy_steady(s);
    store_input_service *c = copy_service(1);
    c->endpoints[0].admin_state = HF_ADMIN_DRAINING;
    publish(1, c);
    xds_stream_pump(s);
    /* The cluster changed too (panic threshold while draining): CDS first, complete. */
    char n[24];
    expect(4, CDS, 2, n);
    xds_stream_sent(s);
    DiscoveryResponse *r = response(5);
    assert_string_equal(r->type_url, EDS);
    assert_int_equal(r->n_resources, 1); /* shop only */
    response_free(r);
    xds_stream_sent(s);

    c = copy_service(1);
    c->endpoints[1].weight = 7; /* an endpoint change only */
    publish(1, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 7);
    expect(6, EDS, 1, NULL);
    xds_stream_close(s);
}

/* Issue 12 item 1: a cluster update is followed by its ClusterLoadAssignment although the
 * endpoints did not change. */
static void test_cluster_update_resends_endpoints(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    envoy_steady(s);
    store_input_service *c = copy_service(0);
    c->svc.connection.max_connection_age_s = 600; /* the cluster only */
    publish(0, c);
    xds_stream_pump(s);
    expect(4, CDS, 2, NULL);
    xds_stream_sent(s);
    assert_int_equal(F.n_sent, 6);
    DiscoveryResponse *r = response(5);
    assert_string_equal(r->type_url, EDS);
    assert_int_equal(r->n_resources, 1);
    response_free(r);
    xds_stream_close(s);
}

/* With a send in flight, two new snapshots give one response: the newest. */
static void test_latest_wins(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    sotw(s, CDS, NULL, 0, NULL, NULL);
    assert_int_equal(F.n_sent, 1);
    store_input_service *c = copy_service(0);
    c->svc.affinity.mode = HF_AFFINITY_HASH_COOKIE;
    publish(0, c);
    xds_stream_pump(s);
    c = copy_service(0);
    c->svc.connection.max_connection_age_s = 900;
    publish(0, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 1); /* one in flight */
    xds_stream_sent(s);
    assert_int_equal(F.n_sent, 2);
    DiscoveryResponse *r = response(1);
    char want[HF_VERSION_LEN];
    xds_view *v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    xds_names all = {.wildcard = true};
    xds_sotw_reply full;
    xds_view_sotw(v, XDS_CDS, &all, xds_names_key(XDS_CDS, &all), NULL, &full);
    snprintf(want, sizeof(want), "%s", full.version);
    xds_sotw_reply_release(&full);
    assert_string_equal(r->version_info, want);
    response_free(r);
    xds_stream_sent(s);
    assert_int_equal(F.n_sent, 2);
    xds_stream_close(s);
}

/* Issue 12 item 4: after named subscriptions, an empty list unsubscribes (not wildcard). */
static void test_empty_after_named_unsubscribes(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    const char *one[] = {"cart"};
    char n1[24];
    sotw(s, EDS, one, 1, NULL, NULL);
    expect(0, EDS, 1, n1);
    xds_stream_sent(s);
    sotw(s, EDS, NULL, 0, n1, NULL);
    store_input_service *c = copy_service(0);
    c->endpoints[0].weight = 3;
    publish(0, c);
    xds_stream_pump(s);
    if (F.n_sent > 1) {
        expect(1, EDS, 0, NULL); /* never a resource it did not ask for */
    }
    xds_stream_close(s);
}

/* Delta: initial_resource_versions are honoured, removals are announced, a NACKed version is
 * not re-sent. */
static void test_delta_bookkeeping(void **state)
{
    (void)state;
    xds_view *v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    const xds_resource *cart = xds_resource_find(&v->res[XDS_CDS], "cart");
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry e =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INITIAL_RESOURCE_VERSIONS_ENTRY__INIT;
    e.key = "cart";
    e.value = (char *)cart->version;
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry *init[] = {
        &e};
    xds_stream *s = open_stream(true);
    delta(s, CDS, NULL, 0, NULL, 0, NULL, NULL, init, 1);
    assert_int_equal(F.n_sent, 1);
    DeltaDiscoveryResponse *r = delta_response(0);
    assert_int_equal(r->n_resources, 1);
    assert_string_equal(r->resources[0]->name, "shop");
    char nonce[24];
    snprintf(nonce, sizeof(nonce), "%s", r->nonce);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    xds_stream_sent(s);
    delta(s, CDS, NULL, 0, NULL, 0, nonce, NULL, NULL, 0);
    assert_int_equal(F.acks, 1);

    publish(1, NULL); /* shop deleted */
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 2);
    r = delta_response(1);
    assert_int_equal(r->n_resources, 0);
    assert_int_equal(r->n_removed_resources, 1);
    assert_string_equal(r->removed_resources[0], "shop");
    snprintf(nonce, sizeof(nonce), "%s", r->nonce);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    xds_stream_sent(s);
    delta(s, CDS, NULL, 0, NULL, 0, nonce, NULL, NULL, 0);

    store_input_service *c = copy_service(0);
    c->svc.affinity.mode = HF_AFFINITY_HASH_COOKIE;
    publish(0, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 3);
    r = delta_response(2);
    snprintf(nonce, sizeof(nonce), "%s", r->nonce);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    xds_stream_sent(s);
    delta(s, CDS, NULL, 0, NULL, 0, nonce, "rejected", NULL, 0);
    assert_int_equal(F.nacks, 1);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 3); /* the rejected version is not sent again */
    xds_stream_close(s);
}

/* Delta: an unsubscribed resource is no longer sent; a subscribed one is. */
static void test_delta_unsubscribe(void **state)
{
    (void)state;
    xds_stream *s = open_stream(true);
    const char *both[] = {"cart", "shop"};
    const char *shop[] = {"shop"};
    delta(s, EDS, both, 2, NULL, 0, NULL, NULL, NULL, 0);
    DeltaDiscoveryResponse *r = delta_response(0);
    assert_int_equal(r->n_resources, 2);
    char nonce[24];
    snprintf(nonce, sizeof(nonce), "%s", r->nonce);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    xds_stream_sent(s);
    delta(s, EDS, NULL, 0, shop, 1, nonce, NULL, NULL, 0);
    store_input_service *c = copy_service(1);
    c->endpoints[0].weight = 9;
    publish(1, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 1);
    c = copy_service(0);
    c->endpoints[0].weight = 9;
    publish(0, c);
    xds_stream_pump(s);
    assert_int_equal(F.n_sent, 2);
    r = delta_response(1);
    assert_int_equal(r->n_resources, 1);
    assert_string_equal(r->resources[0]->name, "cart");
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(r, NULL);
    xds_stream_close(s);
}

/* Bad input ends the stream with a status. */
static void test_no_node_fails(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    DiscoveryRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    rq.type_url = CDS;
    uint8_t buf[256];
    size_t len = envoy__service__discovery__v3__discovery_request__pack(&rq, buf);
    xds_stream_message(s, buf, len);
    assert_int_equal(F.finished_status, 3);
    assert_int_equal(F.n_sent, 0);
    xds_stream_close(s);
    assert_int_equal(F.disconnects, 0);
}

/* Issue 12 item 4: a rejected cluster does not hold back an unrelated route change. */
static void test_nacked_cluster_does_not_hold_back_routes(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    envoy_steady(s);
    /* one snapshot: a new cluster (that Envoy will reject) and a lower cookie TTL for cart */
    store_input_service *c = copy_service(0);
    c->svc.ttl_in_force_s = 300;
    publish(0, c);
    publish(2, make_service("zed", 3, 1));
    xds_stream_pump(s);
    char n[24];
    expect(4, CDS, 3, n);
    xds_stream_sent(s);
    const char *clusters[] = {"cart", "shop"};
    sotw(s, CDS, NULL, 0, n, "zed: rejected");
    (void)clusters;
    assert_int_equal(F.nacks, 1);
    bool rds = false;
    for (int i = 5; i < F.n_sent; i++) {
        DiscoveryResponse *r = response(i);
        rds |= strcmp(r->type_url, RDS) == 0;
        response_free(r);
        xds_stream_sent(s);
    }
    assert_true(rds);
    xds_stream_close(s);
}

/* Issue 12 item 3: a type holdfast does not serve is ignored; the stream goes on and shows it. */
static void test_unknown_type_ignored(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    sotw(s, "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", NULL, 0, NULL,
         NULL);
    assert_int_equal(F.finished_status, -1);
    assert_int_equal(F.n_sent, 0);
    sotw(s, CDS, NULL, 0, NULL, NULL);
    expect(0, CDS, 2, NULL);
    xds_proxy_info info;
    assert_true(xds_stream_status(s, &info));
    assert_int_equal(info.n_ignored_types, 1);
    assert_string_equal(info.ignored_types[0],
                        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
    assert_string_equal(info.api, "ads");
    xds_stream_close(s);
}

/* A per-type stream (ClusterDiscoveryService) serves its type and refuses the others. */
static void test_typed_stream(void **state)
{
    (void)state;
    xds_stream *s = open_stream(false);
    xds_stream_only(s, XDS_CDS);
    sotw(s, CDS, NULL, 0, NULL, NULL);
    expect(0, CDS, 2, NULL);
    xds_stream_sent(s);
    xds_proxy_info info;
    assert_true(xds_stream_status(s, &info));
    assert_string_equal(info.api, "cds");
    const char *one[] = {"cart"};
    sotw(s, EDS, one, 1, NULL, NULL);
    assert_int_equal(F.finished_status, 3);
    assert_int_equal(F.n_sent, 1);
    xds_stream_close(s);
}

/* Issue 14 item 4: a subscription over the cap ends the stream with RESOURCE_EXHAUSTED; one at
 * the cap is served. */
static void test_name_cap(void **state)
{
    (void)state;
    size_t n = XDS_MAX_NAMES + 1;
    char **names = xcalloc(n, sizeof(*names));
    for (size_t i = 0; i < n; i++) {
        names[i] = xcalloc(1, 16);
        snprintf(names[i], 16, "c%zu", i);
    }
    node.id = "n1";
    node.cluster = "edge";
    node.user_agent_name = "envoy";
    DiscoveryRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    rq.node = &node;
    rq.type_url = EDS;
    rq.resource_names = names;
    rq.n_resource_names = n - 1;
    uint8_t *buf = xmalloc(envoy__service__discovery__v3__discovery_request__get_packed_size(&rq));
    xds_stream *at = open_stream(false);
    size_t len = envoy__service__discovery__v3__discovery_request__pack(&rq, buf);
    xds_stream_message(at, buf, len);
    assert_int_equal(F.finished_status, -1);
    assert_int_equal(F.n_sent, 1);
    xds_stream_close(at);
    free(buf);
    rq.n_resource_names = n;
    buf = xmalloc(envoy__service__discovery__v3__discovery_request__get_packed_size(&rq));
    xds_stream *over = open_stream(false);
    len = envoy__service__discovery__v3__discovery_request__pack(&rq, buf);
    xds_stream_message(over, buf, len);
    assert_int_equal(F.finished_status, 8);
    assert_int_equal(F.n_sent, 1);
    xds_stream_close(over);
    free(buf);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* Incremental build: an unchanged service's resources are the same objects. */
static void test_incremental_build(void **state)
{
    (void)state;
    xds_view *v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    const xds_resource *shop = xds_resource_find(&v->res[XDS_EDS], "shop");
    const xds_resource *cart = xds_resource_find(&v->res[XDS_EDS], "cart");
    const xds_resource *routes = xds_resource_find(&v->res[XDS_RDS], "edge");
    store_input_service *c = copy_service(0);
    c->endpoints[0].weight = 4;
    publish(0, c);
    assert_int_equal(F.snap->n_rebuilt, 1);
    v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    assert_ptr_equal(xds_resource_find(&v->res[XDS_EDS], "shop"), shop);
    assert_ptr_not_equal(xds_resource_find(&v->res[XDS_EDS], "cart"), cart);
    /* an endpoint change leaves the routes alone; a service change rebuilds them */
    assert_ptr_equal(xds_resource_find(&v->res[XDS_RDS], "edge"), routes);
    c = copy_service(0);
    c->svc.ttl_in_force_s = 60;
    publish(0, c);
    v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    assert_ptr_not_equal(xds_resource_find(&v->res[XDS_RDS], "edge"), routes);
}

/* The consistency check refuses a view whose cluster has no ClusterLoadAssignment. */
static void test_consistency_check(void **state)
{
    (void)state;
    assert_int_equal(xds_snapshot_check(F.snap, NULL), HF_OK);
    xds_view *v = xds_snapshot_view(F.snap, "edge", XDS_NODE_ENVOY);
    xds_resource_list *eds = &v->res[XDS_EDS];
    xds_resource *gone = eds->items[0]; /* cart */
    eds->items[0] = eds->items[1];
    eds->n = 1;
    hf_detail d = {0};
    assert_int_equal(xds_snapshot_check(F.snap, &d), HF_EINVAL);
    assert_non_null(strstr(d.message, "'cart'"));
    eds->items[1] = eds->items[0];
    eds->items[0] = gone;
    eds->n = 2;
    assert_int_equal(xds_snapshot_check(F.snap, NULL), HF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_make_before_break, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_not_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_nonce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_named_and_wildcard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sotw_eds_sends_only_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_update_resends_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_after_named_unsubscribes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_bookkeeping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_unsubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_node_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nacked_cluster_does_not_hold_back_routes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typed_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consistency_check, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
