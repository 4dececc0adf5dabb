/*
 * Unit tests of the xDS resource builder on real encoded bytes: decoded back with the official
 * Envoy protos (protobuf-c), versions deterministic across builds, a change touching only the
 * resources it should, and the gRPC view.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "resources.h"
#include "wire.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "google/protobuf/any.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct world {
    hf_proxy_group group;
    hf_service svc;
    hf_fleet fleets[2];
    hf_endpoint eps[3];
    xds_service_input in;
};

static void make_world(struct world *w)
{
    memset(w, 0, sizeof(*w));
    strcpy(w->group.name, "edge");
    w->group.listener_port = 10000;
    hf_service_defaults(&w->svc);
    strcpy(w->svc.name, "cart");
    strcpy(w->svc.proxy_group, "edge");
    strcpy(w->svc.affinity.cookie_name, "hf_cart");
    strcpy(w->svc.domains[0], "cart.example.com");
    w->svc.n_domains = 1;
    const char *names[2] = {"blue", "green"};
    for (int i = 0; i < 2; i++) {
        strcpy(w->fleets[i].service, "cart");
        strcpy(w->fleets[i].name, names[i]);
        strcpy(w->fleets[i].version, i ? "2" : "1");
        w->fleets[i].role = i ? HF_ROLE_STANDBY : HF_ROLE_ACTIVE;
    }
    for (int i = 0; i < 3; i++) {
        hf_endpoint_defaults(&w->eps[i]);
        strcpy(w->eps[i].service, "cart");
        strcpy(w->eps[i].fleet, i < 2 ? "blue" : "green");
        strcpy(w->eps[i].address, "127.0.0.1");
        strcpy(w->eps[i].zone, "z1");
        w->eps[i].port = 8081 + (uint32_t)i;
    }
    w->in = (xds_service_input){&w->svc, w->fleets, 2, w->eps, 3};
}

static void build(struct world *w, enum xds_node_kind kind, xds_resource_list out[XDS_NTYPES])
{
    memset(out, 0, sizeof(xds_resource_list) * XDS_NTYPES);
    xds_build_view(kind == XDS_NODE_ENVOY ? &w->group : NULL, &w->in, 1, kind, out);
}

static void clear(xds_resource_list l[XDS_NTYPES])
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        xds_resource_list_clear(&l[t]);
    }
}

static void test_envoy_view_decodes(void **state)
{
    (void)state;
    struct world w;
    make_world(&w);
    xds_resource_list res[XDS_NTYPES];
    build(&w, XDS_NODE_ENVOY, res);
    for (int t = 0; t < XDS_NTYPES; t++) {
        assert_int_equal(res[t].n, 1);
        assert_int_equal(strlen(res[t].items[0]->version), 16);
    }
    const hf_rbuf *any_bytes = res[XDS_EDS].items[0]->any;
    Google__Protobuf__Any *any =
        google__protobuf__any__unpack(NULL, any_bytes->len, any_bytes->data);
    assert_non_null(any);
    assert_string_equal(any->type_url, xds_type_url(XDS_EDS));
    Envoy__Config__Endpoint__V3__ClusterLoadAssignment *cla =
        envoy__config__endpoint__v3__cluster_load_assignment__unpack(NULL, any->value.len,
                                                                     any->value.data);
    assert_non_null(cla);
    assert_string_equal(cla->cluster_name, "cart");
    assert_int_equal(cla->n_endpoints, 1); /* green is standby: not served */
    assert_string_equal(cla->endpoints[0]->locality->sub_zone, "blue");
    assert_int_equal(cla->endpoints[0]->n_lb_endpoints, 2);
    envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
    google__protobuf__any__free_unpacked(any, NULL);
    clear(res);
}

static void test_versions_are_deterministic_and_local(void **state)
{
    (void)state;
    struct world w;
    make_world(&w);
    xds_resource_list a[XDS_NTYPES], b[XDS_NTYPES];
    build(&w, XDS_NODE_ENVOY, a);
    build(&w, XDS_NODE_ENVOY, b);
    for (int t = 0; t < XDS_NTYPES; t++) {
        assert_string_equal(a[t].items[0]->version, b[t].items[0]->version);
        assert_memory_equal(a[t].items[0]->any->data, b[t].items[0]->any->data,
                            a[t].items[0]->any->len);
    }
    clear(b);
    /* Draining one endpoint changes endpoints (and the cluster's panic threshold) only. */
    w.eps[1].admin_state = HF_ADMIN_DRAINING;
    build(&w, XDS_NODE_ENVOY, b);
    assert_string_not_equal(a[XDS_EDS].items[0]->version, b[XDS_EDS].items[0]->version);
    assert_string_not_equal(a[XDS_CDS].items[0]->version, b[XDS_CDS].items[0]->version);
    assert_string_equal(a[XDS_LDS].items[0]->version, b[XDS_LDS].items[0]->version);
    assert_string_equal(a[XDS_RDS].items[0]->version, b[XDS_RDS].items[0]->version);
    clear(b);
    /* A new weight changes endpoints only. */
    w.eps[1].admin_state = HF_ADMIN_ACTIVE;
    w.eps[1].weight = 3;
    build(&w, XDS_NODE_ENVOY, b);
    assert_string_not_equal(a[XDS_EDS].items[0]->version, b[XDS_EDS].items[0]->version);
    assert_string_equal(a[XDS_CDS].items[0]->version, b[XDS_CDS].items[0]->version);
    clear(a);
    clear(b);
}

static void test_grpc_view(void **state)
{
    (void)state;
    struct world w;
    make_world(&w);
    xds_resource_list res[XDS_NTYPES];
    build(&w, XDS_NODE_GRPC, res);
    assert_int_equal(res[XDS_RDS].n, 0); /* routes are inline in the API listeners */
    assert_int_equal(res[XDS_LDS].n, 2);
    assert_non_null(xds_resource_find(&res[XDS_LDS], "cart"));
    assert_non_null(xds_resource_find(&res[XDS_LDS], "cart.example.com"));
    assert_null(xds_resource_find(&res[XDS_LDS], "edge"));
    const hf_rbuf *bytes = res[XDS_CDS].items[0]->any;
    Google__Protobuf__Any *any = google__protobuf__any__unpack(NULL, bytes->len, bytes->data);
    Envoy__Config__Cluster__V3__Cluster *c =
        envoy__config__cluster__v3__cluster__unpack(NULL, any->value.len, any->value.data);
    assert_non_null(c);
    assert_non_null(c->lrs_server);
    assert_int_equal(c->lrs_server->config_source_specifier_case,
                     ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_SELF);
    envoy__config__cluster__v3__cluster__free_unpacked(c, NULL);
    google__protobuf__any__free_unpacked(any, NULL);
    clear(res);
}

static void test_wire(void **state)
{
    (void)state;
    hf_buf b = {0};
    wire_put_varint(&b, 300);
    assert_int_equal(b.len, 2);
    assert_int_equal((unsigned char)b.data[0], 0xac);
    assert_int_equal((unsigned char)b.data[1], 0x02);
    hf_buf_destroy(&b);
    wire_put_string(&b, 5, "abc"); /* field 5, length-delimited */
    assert_int_equal(b.len, 5);
    assert_int_equal((unsigned char)b.data[0], (5 << 3) | 2);
    assert_int_equal(b.data[1], 3);
    assert_memory_equal(b.data + 2, "abc", 3);
    hf_buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envoy_view_decodes),
        cmocka_unit_test(test_versions_are_deterministic_and_local),
        cmocka_unit_test(test_grpc_view),
        cmocka_unit_test(test_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
