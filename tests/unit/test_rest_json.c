/* Unit tests of the JSON mapping: type checks, unknown and read-only members, immutable fields,
 * length limits, and that rendering then applying gives back the same object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "rest_internal.h"

#include <stdio.h>
#include <string.h>

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL) {
        fail_msg("bad test JSON: %s", err.text);
    }
    return j;
}

/* Applies text to a default service; returns the code and fills d. */
static int apply_service(const char *text, bool creating, hf_service *s, hf_detail *d)
{
    hf_service_defaults(s);
    strcpy(s->name, "cart");
    json_t *j = parse(text);
    int rc = rest__service_apply(j, s, creating, d);
    json_decref(j);
    return rc;
}

static void test_rejections_name_the_field(void **state)
{
    (void)state;
    struct {
        const char *body;
        int code;
        const char *field;
    } cases[] = {
        {"{\"bogus\":1}", HF_EUNKNOWN, "bogus"},
        {"{\"affinity\":{\"ttl\":5}}", HF_EUNKNOWN, "affinity.ttl"},
        {"{\"created_at\":\"x\"}", HF_EINVAL, "created_at"},
        {"{\"affinity\":{\"ttl_s\":\"300\"}}", HF_EINVAL, "affinity.ttl_s"},
        {"{\"affinity\":{\"ttl_s\":-1}}", HF_EINVAL, "affinity.ttl_s"},
        {"{\"affinity\":{\"ttl_s\":1.5}}", HF_EINVAL, "affinity.ttl_s"},
        {"{\"affinity\":{\"ttl_s\":4294967296}}", HF_EINVAL, "affinity.ttl_s"},
        {"{\"affinity\":{\"strict\":\"yes\"}}", HF_EINVAL, "affinity.strict"},
        {"{\"affinity\":{\"mode\":\"sticky\"}}", HF_EINVAL, "affinity.mode"},
        {"{\"affinity\":[]}", HF_EINVAL, "affinity"},
        {"{\"domains\":\"a.com\"}", HF_EINVAL, "domains"},
        {"{\"domains\":[1]}", HF_EINVAL, "domains"},
        {"{\"proxy_group\":null}", HF_EINVAL, "proxy_group"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hf_service s;
        hf_detail d = {0};
        int rc = apply_service(cases[i].body, true, &s, &d);
        if (rc != cases[i].code || strcmp(d.field, cases[i].field) != 0) {
            fail_msg("%s: got %d field '%s', want %d field '%s'", cases[i].body, rc, d.field,
                     cases[i].code, cases[i].field);
        }
    }
}

static void test_mode_message_lists_choices(void **state)
{
    (void)state;
    hf_service s;
    hf_detail d = {0};
    assert_int_equal(apply_service("{\"affinity\":{\"mode\":\"x\"}}", true, &s, &d), HF_EINVAL);
    assert_non_null(strstr(d.message, "none, cookie, hash_cookie"));
}

static void test_length_limits(void **state)
{
    (void)state;
    char body[512];
    char name[80];
    memset(name, 'a', 70);
    name[70] = '\0';
    snprintf(body, sizeof(body), "{\"proxy_group\":\"%s\"}", name);
    hf_service s;
    hf_detail d = {0};
    assert_int_equal(apply_service(body, true, &s, &d), HF_EINVAL);
    assert_string_equal(d.field, "proxy_group");
    assert_non_null(strstr(d.message, "at most 63"));
    /* An embedded NUL (which the REST parser already refuses) is refused rather than
     * truncated. */
    json_t *j = json_loads("{\"proxy_group\":\"ed\\u0000ge\"}", JSON_ALLOW_NUL, NULL);
    assert_non_null(j);
    assert_int_equal(rest__service_apply(j, &s, true, &d), HF_EINVAL);
    assert_string_equal(d.field, "proxy_group");
    json_decref(j);
}

static void test_immutable_on_update(void **state)
{
    (void)state;
    hf_service s;
    hf_detail d = {0};
    assert_int_equal(apply_service("{\"name\":\"other\"}", false, &s, &d), HF_EINVAL);
    assert_string_equal(d.field, "name");
    assert_string_equal(s.name, "cart");
    assert_int_equal(
        apply_service("{\"name\":\"cart\",\"affinity\":{\"ttl_s\":300}}", false, &s, &d), HF_OK);
    assert_int_equal(s.affinity.ttl_s, 300);

    hf_endpoint e;
    hf_endpoint_defaults(&e);
    strcpy(e.address, "127.0.0.1");
    e.port = 8081;
    json_t *j = parse("{\"port\":8082}");
    assert_int_equal(rest__endpoint_apply(j, &e, false, &d), HF_EINVAL);
    assert_string_equal(d.field, "port");
    assert_int_equal(e.port, 8081);
    json_decref(j);
}

static void test_round_trip(void **state)
{
    (void)state;
    hf_service a;
    hf_detail d = {0};
    assert_int_equal(apply_service("{\"name\":\"cart\",\"proxy_group\":\"edge\","
                                   "\"domains\":[\"cart.example.com\",\"*.cart.example.com\"],"
                                   "\"affinity\":{\"mode\":\"hash_cookie\",\"cookie_name\":\"c\","
                                   "\"ttl_s\":60,\"path\":\"/x\"},"
                                   "\"health_check\":{\"protocol\":\"tcp\",\"interval_ms\":500,"
                                   "\"timeout_ms\":100},"
                                   "\"connection\":{\"max_connection_age_s\":1800},"
                                   "\"compatible_session_formats\":[\"v1\",\"v2\"]}",
                                   true, &a, &d),
                     HF_OK);
    json_t *out = rest__service_json(&a);
    json_object_del(out, "created_at");
    json_object_del(out, "updated_at");
    json_object_del(out, "ttl_in_force_s");
    hf_service b;
    hf_service_defaults(&b);
    assert_int_equal(rest__service_apply(out, &b, true, &d), HF_OK);
    json_decref(out);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(b.affinity.mode, HF_AFFINITY_HASH_COOKIE);
    assert_int_equal(b.n_domains, 2);
    assert_int_equal(b.n_compatible_session_formats, 2);
    assert_int_equal(b.health_check.protocol, HF_HC_TCP);
}

static void test_endpoint_json_has_server_fields(void **state)
{
    (void)state;
    hf_endpoint e;
    hf_endpoint_defaults(&e);
    strcpy(e.service, "cart");
    strcpy(e.fleet, "blue");
    strcpy(e.address, "::1");
    e.port = 8081;
    json_t *j = rest__endpoint_json(&e);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "[::1]:8081");
    assert_string_equal(json_string_value(json_object_get(j, "health")), "unknown");
    assert_string_equal(json_string_value(json_object_get(j, "admin_state")), "active");
    /* Sending it back as a create body is refused: id and health are the server's. */
    hf_endpoint e2;
    hf_endpoint_defaults(&e2);
    hf_detail d = {0};
    assert_int_equal(rest__endpoint_apply(j, &e2, true, &d), HF_EINVAL);
    json_decref(j);
}

/* The request bodies that are no model object, one case a row: the code and the field named. */
enum body_kind { DEPLOY_PLAN, DEPLOY_ACTION, RESTART, TOKEN, EMPTY };

static int apply_body(enum body_kind kind, const char *text, hf_detail *d)
{
    json_t *j = parse(text);
    deploy_plan_input plan;
    deploy_action_args args;
    rest_restart_body restart;
    rest_token_body token;
    int rc = HF_EINVAL;
    switch (kind) {
    case DEPLOY_PLAN:
        rc = rest__deploy_plan_apply(j, &plan, d);
        break;
    case DEPLOY_ACTION:
        rc = rest__deploy_action_apply(j, &args, d);
        break;
    case RESTART:
        rc = rest__restart_body_apply(j, &restart, d);
        break;
    case TOKEN:
        rc = rest__token_body_apply(j, &token, d);
        break;
    case EMPTY:
        rc = rest__empty_body_apply(j, d);
        break;
    }
    json_decref(j);
    return rc;
}

#define RESTART_OK "\"service\":\"ws\",\"fleet\":\"blue\",\"avg_connection_s\":60,\"dry_run\":true"

static void test_request_bodies_name_the_field(void **state)
{
    (void)state;
    struct {
        enum body_kind kind;
        const char *body;
        int code;
        const char *field;
    } cases[] = {
        {DEPLOY_PLAN, "{\"service\":\"cart\",\"to_fleet\":\"green\"}", HF_OK, ""},
        {DEPLOY_PLAN, "{\"service\":\"cart\"}", HF_EINVAL, "to_fleet"},
        {DEPLOY_PLAN, "{\"to_fleet\":\"green\"}", HF_EINVAL, "service"},
        {DEPLOY_PLAN, "{\"service\":\"Cart!\",\"to_fleet\":\"g\"}", HF_EINVAL, "service"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"lead_s\":-1}", HF_EINVAL, "lead_s"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"lead_s\":1.5}", HF_EINVAL, "lead_s"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"lowered_ttl_s\":0}", HF_EINVAL,
         "lowered_ttl_s"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"tail_threshold_pct\":-0.5}",
         HF_EINVAL, "tail_threshold_pct"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"deadline_factor\":\"3\"}", HF_EINVAL,
         "deadline_factor"},
        {DEPLOY_PLAN, "{\"service\":\"c\",\"to_fleet\":\"g\",\"sfervice\":1}", HF_EUNKNOWN,
         "sfervice"},
        {DEPLOY_ACTION, "{}", HF_OK, ""},
        {DEPLOY_ACTION, "{\"by_s\":604801}", HF_EINVAL, "by_s"},
        {DEPLOY_ACTION, "{\"by_s\":0}", HF_EINVAL, "by_s"},
        {DEPLOY_ACTION, "{\"force\":1}", HF_EINVAL, "force"},
        {DEPLOY_ACTION, "{\"acknowledge\":true}", HF_EUNKNOWN, "acknowledge"},
        {DEPLOY_ACTION, "[]", HF_EINVAL, ""},
        {RESTART, "{" RESTART_OK "}", HF_OK, ""},
        {RESTART, "{" RESTART_OK ",\"max_disconnect_pct\":2.5,\"restart_s\":5}", HF_OK, ""},
        {RESTART, "{\"service\":\"ws\",\"fleet\":\"blue\",\"avg_connection_s\":60}", HF_EINVAL,
         "dry_run"},
        {RESTART, "{\"service\":\"ws\",\"fleet\":\"blue\",\"dry_run\":true}", HF_EINVAL,
         "avg_connection_s"},
        {RESTART, "{" RESTART_OK ",\"restart_s\":0}", HF_EINVAL, "restart_s"},
        {RESTART, "{" RESTART_OK ",\"max_draining_pct\":\"60\"}", HF_EINVAL, "max_draining_pct"},
        {RESTART, "{" RESTART_OK ",\"webhook\":\"x\"}", HF_EUNKNOWN, "webhook"},
        {TOKEN, "{\"role\":\"operator\",\"name\":\"ci\"}", HF_OK, ""},
        {TOKEN, "{\"name\":\"ci\"}", HF_EINVAL, "role"},
        {TOKEN, "{\"role\":\"root\"}", HF_EINVAL, "role"},
        {TOKEN, "{\"role\":\"admin\",\"name\":\"CI bot\"}", HF_EINVAL, "name"},
        {TOKEN, "{\"role\":\"admin\",\"id\":3}", HF_EUNKNOWN, "id"},
        {EMPTY, "{}", HF_OK, ""},
        {EMPTY, "{\"force\":true}", HF_EUNKNOWN, "force"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hf_detail d = {0};
        int rc = apply_body(cases[i].kind, cases[i].body, &d);
        if (rc != cases[i].code || strcmp(d.field, cases[i].field) != 0) {
            fail_msg("%s: got %d field '%s', want %d field '%s'", cases[i].body, rc, d.field,
                     cases[i].code, cases[i].field);
        }
    }
}

static void test_request_bodies_values_and_defaults(void **state)
{
    (void)state;
    hf_detail d = {0};
    json_t *j = parse("{\"service\":\"cart\",\"to_fleet\":\"green\",\"lead_s\":5000000000,"
                      "\"tail_threshold_pct\":1,\"force\":true}");
    deploy_plan_input plan;
    assert_int_equal(rest__deploy_plan_apply(j, &plan, &d), HF_OK);
    json_decref(j);
    assert_string_equal(plan.to_fleet, "green");
    assert_true(plan.lead_s == 5000000000LL);    /* 64-bit */
    assert_true(plan.tail_threshold_pct == 1.0); /* an integer is a number too */
    assert_true(plan.deadline_factor < 0);       /* not sent: the engine's default */
    assert_int_equal(plan.lowered_ttl_s, 0);
    assert_true(plan.force);

    j = parse("{" RESTART_OK ",\"max_disconnect_pct\":2.5,\"webhook_url\":\"http://h/x\"}");
    rest_restart_body r;
    assert_int_equal(rest__restart_body_apply(j, &r, &d), HF_OK);
    json_decref(j);
    assert_true(r.dry_run);
    assert_int_equal(r.in.avg_connection_s, 60);
    assert_int_equal(r.in.restart_s, 60); /* default */
    assert_true(r.in.max_disconnect_pct == 2.5);
    assert_true(r.in.max_draining_pct == 60);
    assert_string_equal(r.webhook_url, "http://h/x");

    deploy_action_args a = {.force = true, .extend_by_s = 9};
    assert_int_equal(rest__deploy_action_apply(NULL, &a, &d), HF_OK); /* no body: defaults */
    assert_false(a.force);
    assert_int_equal(a.extend_by_s, 0);
}

static void test_range_message(void **state)
{
    (void)state;
    hf_detail d = {0};
    assert_int_equal(apply_body(DEPLOY_ACTION, "{\"by_s\":0}", &d), HF_EINVAL);
    assert_non_null(strstr(d.message, "from 1 to 604800"));
    assert_int_equal(apply_body(DEPLOY_PLAN, "{\"deadline_factor\":-1}", &d), HF_EINVAL);
    assert_non_null(strstr(d.message, "at least 0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejections_name_the_field),
        cmocka_unit_test(test_mode_message_lists_choices),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_immutable_on_update),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_endpoint_json_has_server_fields),
        cmocka_unit_test(test_request_bodies_name_the_field),
        cmocka_unit_test(test_request_bodies_values_and_defaults),
        cmocka_unit_test(test_range_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
