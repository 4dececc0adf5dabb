/*
 * Unit tests of host uniqueness in what the resource builder emits (issue 12 item 2): Envoy
 * rejects a whole route table over one duplicate domain, and a gRPC client must not get two
 * listeners of one name. The REST API refuses such configurations; these cover databases
 * written before it did, and gRPC clients outside any group, which see every group's services.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "resources.h"

#include "envoy/config/route/v3/route.pb-c.h"
#include "google/protobuf/any.pb-c.h"

#include <stdio.h>
#include <string.h>

static void service(hf_service *s, const char *name, const char *group, const char *domain)
{
    hf_service_defaults(s);
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->proxy_group, sizeof(s->proxy_group), "%s", group);
    if (domain != NULL) {
        snprintf(s->domains[0], sizeof(s->domains[0]), "%s", domain);
        s->n_domains = 1;
    }
}

static void test_route_table_keeps_the_explicit_domain(void **state)
{
    (void)state;
    hf_proxy_group g = {.name = "edge", .listener_port = 10000};
    hf_service s[3];
    service(&s[0], "cart", "edge", NULL);   /* routed by its name, "cart" */
    service(&s[1], "shop", "edge", "cart"); /* claims "cart" as a domain */
    service(&s[2], "web", "edge", "web.example.com");
    xds_service_input in[3] = {
        {&s[0], NULL, 0, NULL, 0}, {&s[1], NULL, 0, NULL, 0}, {&s[2], NULL, 0, NULL, 0}};
    xds_resource_list out[XDS_NTYPES];
    memset(out, 0, sizeof(out));
    xds_build_view(&g, in, 3, XDS_NODE_ENVOY, out);
    assert_int_equal(out[XDS_RDS].n, 1);
    Google__Protobuf__Any *any = google__protobuf__any__unpack(
        NULL, out[XDS_RDS].items[0]->any->len, out[XDS_RDS].items[0]->any->data);
    assert_non_null(any);
    Envoy__Config__Route__V3__RouteConfiguration *rc =
        envoy__config__route__v3__route_configuration__unpack(NULL, any->value.len,
                                                              any->value.data);
    assert_non_null(rc);
    assert_int_equal(rc->n_virtual_hosts, 2); /* cart's by-name host is left out */
    assert_string_equal(rc->virtual_hosts[0]->name, "shop");
    assert_string_equal(rc->virtual_hosts[0]->domains[0], "cart");
    assert_string_equal(rc->virtual_hosts[1]->name, "web");
    envoy__config__route__v3__route_configuration__free_unpacked(rc, NULL);
    google__protobuf__any__free_unpacked(any, NULL);
    for (int t = 0; t < XDS_NTYPES; t++) {
        xds_resource_list_clear(&out[t]);
    }
}

static void test_grpc_listeners_are_unique_and_stable(void **state)
{
    (void)state;
    /* Two groups route the same host; a gRPC client outside any group sees both. */
    hf_service s[3];
    service(&s[0], "cart", "edge", "shop.example.com");
    service(&s[1], "cart2", "edge2", "shop.example.com");
    service(&s[2], "shop", "edge2", "cart"); /* another group's service name, as a domain */
    xds_service_input in[3] = {
        {&s[0], NULL, 0, NULL, 0}, {&s[1], NULL, 0, NULL, 0}, {&s[2], NULL, 0, NULL, 0}};
    char first[8][HF_VERSION_LEN];
    for (int round = 0; round < 2; round++) {
        xds_service_input order[3] = {in[round ? 2 : 0], in[1], in[round ? 0 : 2]};
        xds_resource_list out[XDS_NTYPES];
        memset(out, 0, sizeof(out));
        xds_build_view(NULL, order, 3, XDS_NODE_GRPC, out);
        const char *want[] = {"cart", "cart2", "shop", "shop.example.com"};
        assert_int_equal(out[XDS_LDS].n, 4);
        for (size_t i = 0; i < 4; i++) {
            assert_string_equal(out[XDS_LDS].items[i]->name, want[i]);
            if (round == 0) {
                memcpy(first[i], out[XDS_LDS].items[i]->version, HF_VERSION_LEN);
            } else { /* the same choice whatever the input order */
                assert_string_equal(out[XDS_LDS].items[i]->version, first[i]);
            }
        }
        for (int t = 0; t < XDS_NTYPES; t++) {
            xds_resource_list_clear(&out[t]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table_keeps_the_explicit_domain),
        cmocka_unit_test(test_grpc_listeners_are_unique_and_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
