/* Unit tests of the minimum-Envoy-version warnings (issue 12 item 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "compat.h"

#include <stdio.h>
#include <string.h>

static hf_service svc(const char *name, enum hf_affinity_mode mode, bool strict)
{
    hf_service s;
    hf_service_defaults(&s);
    snprintf(s.name, sizeof(s.name), "%s", name);
    s.affinity.mode = mode;
    s.affinity.strict = strict;
    return s;
}

static size_t warn(uint32_t major, uint32_t minor, bool known, const hf_service *s, size_t n,
                   char out[][XDS_COMPAT_WARNING_MAX])
{
    xds_build_version v = {known, major, minor, 3};
    return xds_compat_warnings(&v, s, n, out, 8);
}

static void test_strict_needs_1_29(void **state)
{
    (void)state;
    hf_service s[3] = {svc("cart", HF_AFFINITY_COOKIE, true),
                       svc("search", HF_AFFINITY_HASH_COOKIE, true),
                       svc("lax", HF_AFFINITY_COOKIE, false)};
    char out[8][XDS_COMPAT_WARNING_MAX];
    assert_int_equal(warn(1, 28, true, s, 3, out), 1);
    assert_non_null(strstr(out[0], "Envoy 1.28.3 is older than 1.29"));
    assert_non_null(strstr(out[0], "affinity.strict of service 'cart'"));
    assert_int_equal(warn(1, 29, true, s, 3, out), 0);
    assert_int_equal(warn(2, 0, true, s, 3, out), 0);
    assert_int_equal(warn(1, 28, false, s, 3, out), 0); /* version unknown: no guess */
}

static void test_cookie_affinity_needs_1_22(void **state)
{
    (void)state;
    hf_service s[2] = {svc("cart", HF_AFFINITY_COOKIE, true),
                       svc("plain", HF_AFFINITY_NONE, false)};
    char out[8][XDS_COMPAT_WARNING_MAX];
    assert_int_equal(warn(1, 21, true, s, 2, out), 2); /* cookie affinity, and strict */
    assert_non_null(strstr(out[0], "older than 1.22"));
    assert_non_null(strstr(out[1], "older than 1.29"));
    assert_int_equal(warn(0, 99, true, s + 1, 1, out), 0); /* nothing used that needs a version */
}

static void test_bounded_by_max(void **state)
{
    (void)state;
    hf_service s[20];
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        s[i] = svc(name, HF_AFFINITY_COOKIE, true);
    }
    char out[8][XDS_COMPAT_WARNING_MAX];
    xds_build_version v = {true, 1, 20, 0};
    assert_int_equal(xds_compat_warnings(&v, s, 20, out, 8), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_needs_1_29),
        cmocka_unit_test(test_cookie_affinity_needs_1_22),
        cmocka_unit_test(test_bounded_by_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
