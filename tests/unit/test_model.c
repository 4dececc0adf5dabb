/* Unit tests of model validation, defaults and endpoint ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "model.h"

#include <stdio.h>
#include <string.h>

static void test_names(void **state)
{
    (void)state;
    assert_true(hf_name_valid("cart"));
    assert_true(hf_name_valid("a"));
    assert_true(hf_name_valid("v42-blue"));
    assert_true(hf_name_valid("0abc"));
    char longest[64];
    memset(longest, 'a', 63);
    longest[63] = '\0';
    assert_true(hf_name_valid(longest));
    char too_long[65];
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    assert_false(hf_name_valid(too_long));
    assert_false(hf_name_valid(""));
    assert_false(hf_name_valid("-cart"));
    assert_false(hf_name_valid("Cart"));
    assert_false(hf_name_valid("cart_1"));
    assert_false(hf_name_valid("cart.example"));
    assert_false(hf_name_valid("cart/x"));
}

static void valid_service(hf_service *s)
{
    hf_service_defaults(s);
    snprintf(s->name, sizeof(s->name), "cart");
    snprintf(s->proxy_group, sizeof(s->proxy_group), "edge");
    snprintf(s->affinity.cookie_name, sizeof(s->affinity.cookie_name), "hf_cart");
}

static void test_service_defaults_are_valid(void **state)
{
    (void)state;
    hf_service s;
    valid_service(&s);
    hf_detail d = {0};
    assert_int_equal(hf_service_validate(&s, &d), HF_OK);
    assert_int_equal(s.affinity.ttl_s, 1800);
    assert_int_equal(s.health_check.interval_ms, 2000);
    assert_int_equal(s.health_check.unhealthy_threshold, 3);
    assert_int_equal(s.health_check.healthy_threshold, 2);
}

/* Breaks rule number i of a valid service; returns the field that must be named, or NULL past
 * the last rule. */
static const char *break_rule(hf_service *s, int i)
{
    switch (i) {
    case 0:
        s->affinity.ttl_s = 0;
        return "affinity.ttl_s";
    case 1:
        s->affinity.ttl_s = 7 * 24 * 3600 + 1;
        return "affinity.ttl_s";
    case 2:
        strcpy(s->affinity.cookie_name, "bad name");
        return "affinity.cookie_name";
    case 3:
        s->affinity.cookie_name[0] = '\0';
        return "affinity.cookie_name";
    case 4:
        strcpy(s->affinity.path, "nopath");
        return "affinity.path";
    case 5:
        s->health_check.interval_ms = 99;
        return "health_check.interval_ms";
    case 6:
        s->health_check.interval_ms = 300001;
        return "health_check.interval_ms";
    case 7:
        s->health_check.timeout_ms = 2000; /* equal to the interval */
        return "health_check.timeout_ms";
    case 8:
        s->health_check.unhealthy_threshold = 0;
        return "health_check.unhealthy_threshold";
    case 9:
        s->health_check.healthy_threshold = 11;
        return "health_check.healthy_threshold";
    case 10:
        strcpy(s->health_check.path, "/health z");
        return "health_check.path";
    case 11:
        s->connection.max_connection_age_s = 700000;
        return "connection.max_connection_age_s";
    case 12:
        strcpy(s->domains[0], "Cart.Example.com");
        s->n_domains = 1;
        return "domains";
    case 13:
        strcpy(s->domains[0], "a..b");
        s->n_domains = 1;
        return "domains";
    case 14:
        strcpy(s->domains[0], "a.b");
        strcpy(s->domains[1], "a.b");
        s->n_domains = 2;
        return "domains";
    case 15:
        strcpy(s->name, "Cart");
        return "name";
    case 16:
        s->proxy_group[0] = '\0';
        return "proxy_group";
    case 17:
        s->affinity.mode = HF_AFFINITY_HASH_COOKIE;
        s->affinity.strict = true;
        return "affinity.strict";
    default:
        return NULL;
    }
}

static void test_service_rules(void **state)
{
    (void)state;
    int i = 0;
    for (;; i++) {
        hf_service s;
        valid_service(&s);
        const char *field = break_rule(&s, i);
        if (field == NULL) {
            break;
        }
        hf_detail d = {0};
        assert_int_equal(hf_service_validate(&s, &d), HF_EINVAL);
        assert_string_equal(d.field, field);
        assert_true(strlen(d.message) > 0);
    }
    assert_int_equal(i, 18);
}

static void test_service_accepts_edges(void **state)
{
    (void)state;
    hf_service s;
    valid_service(&s);
    s.affinity.ttl_s = 1;
    s.health_check.interval_ms = 100;
    s.health_check.timeout_ms = 99;
    s.health_check.unhealthy_threshold = 10;
    strcpy(s.domains[0], "*");
    strcpy(s.domains[1], "*.example.com");
    strcpy(s.domains[2], "cart-1.example.com");
    s.n_domains = 3;
    assert_int_equal(hf_service_validate(&s, NULL), HF_OK);
    s.affinity.mode = HF_AFFINITY_NONE;
    s.affinity.cookie_name[0] = '\0'; /* not needed without affinity */
    assert_int_equal(hf_service_validate(&s, NULL), HF_OK);
    s.health_check.protocol = HF_HC_TCP;
    s.health_check.path[0] = '\0'; /* not needed for TCP */
    assert_int_equal(hf_service_validate(&s, NULL), HF_OK);
}

static void test_endpoint(void **state)
{
    (void)state;
    hf_endpoint e;
    hf_endpoint_defaults(&e);
    strcpy(e.address, "::0001");
    e.port = 8081;
    assert_int_equal(hf_endpoint_validate(&e, NULL), HF_OK);
    assert_string_equal(e.address, "::1");
    char id[HF_ENDPOINT_ID_MAX];
    hf_endpoint_id(&e, id, sizeof(id));
    assert_string_equal(id, "[::1]:8081");

    char addr[HF_ADDR_MAX];
    uint32_t port;
    assert_int_equal(hf_endpoint_id_parse(id, addr, sizeof(addr), &port), HF_OK);
    assert_string_equal(addr, "::1");
    assert_int_equal(port, 8081);
    assert_int_equal(hf_endpoint_id_parse("10.0.0.1:80", addr, sizeof(addr), &port), HF_OK);
    assert_string_equal(addr, "10.0.0.1");
    assert_int_equal(hf_endpoint_id_parse("10.0.0.1", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_endpoint_id_parse("10.0.0.1:0", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_endpoint_id_parse("10.0.0.1:x", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_endpoint_id_parse(":80", addr, sizeof(addr), &port), HF_EINVAL);

    hf_detail d = {0};
    strcpy(e.address, "backend.local");
    assert_int_equal(hf_endpoint_validate(&e, &d), HF_EINVAL);
    assert_string_equal(d.field, "address");
    strcpy(e.address, "127.0.0.1");
    e.port = 70000;
    assert_int_equal(hf_endpoint_validate(&e, &d), HF_EINVAL);
    assert_string_equal(d.field, "port");
    e.port = 1;
    e.weight = 0;
    assert_int_equal(hf_endpoint_validate(&e, &d), HF_EINVAL);
    assert_string_equal(d.field, "weight");
    e.weight = 1;
    strcpy(e.zone, "z 1");
    assert_int_equal(hf_endpoint_validate(&e, &d), HF_EINVAL);
    assert_string_equal(d.field, "zone");
}

static void test_enum_names_round_trip(void **state)
{
    (void)state;
    const char *roles[] = {"active", "standby", "draining", "retired"};
    for (int i = 0; i < 4; i++) {
        enum hf_fleet_role r;
        assert_int_equal(hf_fleet_role_parse(roles[i], &r), HF_OK);
        assert_string_equal(hf_fleet_role_name(r), roles[i]);
    }
    enum hf_affinity_mode m;
    assert_int_equal(hf_affinity_mode_parse("sticky", &m), HF_EINVAL);
    assert_int_equal(hf_affinity_mode_parse("hash_cookie", &m), HF_OK);
    assert_int_equal(m, HF_AFFINITY_HASH_COOKIE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_service_defaults_are_valid),
        cmocka_unit_test(test_service_rules), cmocka_unit_test(test_service_accepts_edges),
        cmocka_unit_test(test_endpoint),      cmocka_unit_test(test_enum_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
