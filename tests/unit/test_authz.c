/*
 * Unit tests of xDS authorization by certificate identity (control-plane/xds/authz.c): parsing
 * URI SANs into principals, and what each principal may do on ADS, LRS and HDS — including the
 * attacks of issue 13 (another group's configuration, a checker under someone else's name, load
 * reports for another group's clusters).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "authz.h"

#include <string.h>

static void parse(const char *san, xds_principal *p)
{
    xds_principal_parse(san, p);
}

static void test_parse(void **state)
{
    (void)state;
    xds_principal p;
    parse(NULL, &p);
    assert_int_equal(p.kind, XDS_PRINCIPAL_PLAINTEXT);
    parse("spiffe://holdfast/group/edge", &p);
    assert_int_equal(p.kind, XDS_PRINCIPAL_GROUP);
    assert_string_equal(p.name, "edge");
    parse("spiffe://holdfast/checker/shim-a.z1", &p);
    assert_int_equal(p.kind, XDS_PRINCIPAL_CHECKER);
    assert_string_equal(p.name, "shim-a.z1");
    /* Not ours, or not a valid name: unknown. */
    const char *bad[] = {"",
                         "spiffe://holdfast/group/",
                         "spiffe://holdfast/group/Edge",
                         "spiffe://holdfast/group/edge/x",
                         "spiffe://holdfast/group/-edge",
                         "spiffe://other/group/edge",
                         "spiffe://holdfast/checker/",
                         "spiffe://holdfast/checker/a/b",
                         "spiffe://holdfast/admin/root",
                         "https://holdfast/group/edge",
                         "(several URI SANs)"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(bad[i], &p);
        assert_int_equal(p.kind, XDS_PRINCIPAL_UNKNOWN);
    }
    /* An unknown SAN is kept printable for the audit log. */
    parse("spiffe://x/\x01'y", &p);
    assert_string_equal(p.name, "spiffe://x/??y");
}

static void test_ads(void **state)
{
    (void)state;
    xds_principal p;
    char why[256] = "";
    parse(NULL, &p);
    assert_true(xds_authz_ads(&p, "anything", why, sizeof(why)));
    parse("spiffe://holdfast/group/edge", &p);
    assert_true(xds_authz_ads(&p, "edge", why, sizeof(why)));
    assert_false(xds_authz_ads(&p, "payments", why, sizeof(why)));
    assert_non_null(strstr(why, "group edge may not fetch the configuration of group 'payments'"));
    assert_false(xds_authz_ads(&p, NULL, why, sizeof(why)));
    assert_false(xds_authz_ads(&p, "", why, sizeof(why)));
    parse("spiffe://holdfast/checker/shim-a", &p);
    assert_false(xds_authz_ads(&p, "edge", why, sizeof(why)));
    assert_non_null(strstr(why, "HDS only"));
    parse("spiffe://evil/x", &p);
    assert_false(xds_authz_ads(&p, "edge", why, sizeof(why)));
    assert_non_null(strstr(why, "unknown identity 'spiffe://evil/x'"));
    parse("", &p);
    assert_false(xds_authz_ads(&p, "edge", why, sizeof(why)));
    assert_non_null(strstr(why, "without a URI SAN"));
}

static void test_lrs(void **state)
{
    (void)state;
    xds_principal p;
    char why[256] = "";
    parse("spiffe://holdfast/group/edge", &p);
    assert_true(xds_authz_lrs_stream(&p, why, sizeof(why)));
    /* The certificate's group, whatever the node claims. */
    assert_string_equal(xds_authz_lrs_group(&p, "payments"), "edge");
    assert_true(xds_authz_lrs_report("edge", "edge"));
    assert_false(xds_authz_lrs_report("edge", "payments"));
    assert_false(xds_authz_lrs_report("edge", NULL)); /* no such cluster */
    assert_false(xds_authz_lrs_report(NULL, "edge"));
    assert_false(xds_authz_lrs_report("", ""));
    /* Plaintext: the node's claim, which must still match the cluster's group. */
    parse(NULL, &p);
    assert_true(xds_authz_lrs_stream(&p, why, sizeof(why)));
    assert_string_equal(xds_authz_lrs_group(&p, "edge"), "edge");
    assert_null(xds_authz_lrs_group(&p, ""));
    assert_null(xds_authz_lrs_group(&p, NULL));
    parse("spiffe://holdfast/checker/shim-a", &p);
    assert_false(xds_authz_lrs_stream(&p, why, sizeof(why)));
    assert_non_null(strstr(why, "may not send load reports"));
    assert_null(xds_authz_lrs_group(&p, "edge"));
}

static void test_hds(void **state)
{
    (void)state;
    xds_principal p, q;
    char why[256] = "";
    parse("spiffe://holdfast/checker/shim-a", &p);
    assert_true(xds_authz_hds(&p, "shim-a", why, sizeof(why)));
    /* The hijack: a checker certificate claiming another checker's node id. */
    assert_false(xds_authz_hds(&p, "shim-b", why, sizeof(why)));
    assert_non_null(strstr(why, "checker shim-a may not check health as 'shim-b'"));
    parse("spiffe://holdfast/group/edge", &q);
    assert_false(xds_authz_hds(&q, "edge-proxy-1", why, sizeof(why)));
    assert_non_null(strstr(why, "group edge may not open a health-check (HDS) stream"));
    parse(NULL, &q);
    assert_true(xds_authz_hds(&q, "anything", why, sizeof(why)));

    /* Replacement: the same authenticated checker only. */
    xds_principal older, other, plain;
    parse("spiffe://holdfast/checker/shim-a", &older);
    parse("spiffe://holdfast/checker/shim-b", &other);
    parse(NULL, &plain);
    assert_true(xds_authz_hds_replaces(&p, &older));
    assert_false(xds_authz_hds_replaces(&p, &other));
    assert_false(xds_authz_hds_replaces(&plain, &plain));
    assert_false(xds_authz_hds_replaces(&p, &plain));
}

static void test_describe(void **state)
{
    (void)state;
    xds_principal p;
    char buf[200];
    parse(NULL, &p);
    xds_principal_describe(&p, buf, sizeof(buf));
    assert_string_equal(buf, "a plaintext client");
    parse("spiffe://holdfast/group/edge", &p);
    xds_principal_describe(&p, buf, sizeof(buf));
    assert_string_equal(buf, "group edge");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse), cmocka_unit_test(test_ads),      cmocka_unit_test(test_lrs),
        cmocka_unit_test(test_hds),   cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
