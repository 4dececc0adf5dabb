/*
 * The health module's rules (control-plane/health): assignment spread across zones, least
 * loaded, stable under churn; quorum with k = 1, 2, 3; every assignment change and every
 * checker disconnect re-decides; verdicts for unknown endpoints or unassigned checkers dropped;
 * the endpoint key's one formatter and parser.
 */
#include "endpoint_key.h"
#include "health.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static hf_hc_endpoint ep(int i)
{
    hf_hc_endpoint e;
    memset(&e, 0, sizeof(e));
    char addr[32];
    snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    hf_endpoint_key_set(&e.key, i % 3 ? "web" : "api", addr, 8080);
    snprintf(e.fleet, sizeof(e.fleet), "blue");
    e.policy = 1;
    return e;
}

static hf_hc_checker ck(const char *id, const char *zone)
{
    hf_hc_checker c;
    memset(&c, 0, sizeof(c));
    snprintf(c.id, sizeof(c.id), "%s", id);
    snprintf(c.zone, sizeof(c.zone), "%s", zone);
    return c;
}

static hf_health_table *table_with(int k, int n)
{
    hf_health_table *t = hf_health_new(k);
    for (int i = 0; i < n; i++) {
        hf_hc_endpoint e = ep(i);
        hf_health_upsert(t, &e, 1, NULL);
    }
    return t;
}

static int checkers_of(hf_health_table *t, size_t i, char ids[][HF_CHECKER_ID_MAX])
{
    const hf_hc_slot *s;
    int n = hf_health_slots(t, i, &s);
    for (int j = 0; j < n; j++) {
        snprintf(ids[j], HF_CHECKER_ID_MAX, "%s", hf_health_checker_id(t, s[j].checker));
    }
    return n;
}

static int verdict(hf_health_table *t, size_t i, const char *checker, enum hf_health v,
                   hf_hc_decisions *out)
{
    hf_endpoint_key k = hf_health_endpoint(t, i)->key;
    return hf_health_verdict(t, &k, hf_health_checker_index(t, checker), v, "r", 1, 100, out);
}

static void test_key_format_parse(void **state)
{
    (void)state;
    char buf[HF_ADDR_PORT_MAX], addr[HF_KEY_ADDR_MAX];
    uint32_t port;
    hf_addr_port_format("2001:db8::7", 8080, buf, sizeof(buf));
    assert_string_equal(buf, "[2001:db8::7]:8080");
    hf_addr_port_format("192.0.2.7", 80, buf, sizeof(buf));
    assert_string_equal(buf, "192.0.2.7:80");
    assert_int_equal(hf_addr_port_parse("[::1]:9", addr, sizeof(addr), &port), 0);
    assert_string_equal(addr, "::1");
    assert_int_equal(port, 9);
    assert_int_equal(hf_addr_port_parse("::1:9", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_addr_port_parse("1.2.3.4:0", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_addr_port_parse("1.2.3.4:+80", addr, sizeof(addr), &port), HF_EINVAL);
    assert_int_equal(hf_addr_port_parse("[::1:9", addr, sizeof(addr), &port), HF_EINVAL);
    hf_endpoint_key a, b;
    hf_endpoint_key_set(&a, "web", "::1", 9);
    hf_endpoint_key_set(&b, "web", "::1", 9);
    assert_true(hf_endpoint_key_eq(&a, &b));
    assert_int_equal(hf_endpoint_key_hash(&a), hf_endpoint_key_hash(&b));
    b.port = 10;
    assert_false(hf_endpoint_key_eq(&a, &b));
}

static void test_spread_across_zones(void **state)
{
    (void)state;
    hf_health_table *t = table_with(2, 300);
    hf_hc_checker c[] = {ck("a1", "a"), ck("a2", "a"), ck("a3", "a"), ck("b1", "b")};
    hf_health_set_checkers(t, c, 4, 1, NULL);
    for (size_t i = 0; i < hf_health_size(t); i++) {
        char ids[HF_HC_MAX_K][HF_CHECKER_ID_MAX];
        assert_int_equal(checkers_of(t, i, ids), 2);
        /* one of them in zone b: b1 is in every pair although it is then the most loaded */
        assert_true(strcmp(ids[0], "b1") == 0 || strcmp(ids[1], "b1") == 0);
    }
    hf_health_free(t);
}

static void test_least_loaded(void **state)
{
    (void)state;
    hf_health_table *t = table_with(2, 999);
    hf_hc_checker c[] = {ck("x", ""), ck("y", ""), ck("z", "")};
    hf_health_set_checkers(t, c, 3, 1, NULL);
    for (int i = 0; i < 3; i++) {
        size_t load = hf_health_checker_load(t, hf_health_checker_index(t, c[i].id));
        assert_in_range(load, 665, 667); /* 1998 slots over 3 */
    }
    /* new endpoints go to the least loaded */
    hf_health_remove(t, &hf_health_endpoint(t, 0)->key);
    int x = hf_health_checker_index(t, "x");
    for (int i = 1000; i < 1100; i++) {
        hf_hc_endpoint e = ep(i);
        hf_health_upsert(t, &e, 1, NULL);
    }
    size_t lx = hf_health_checker_load(t, x);
    size_t ly = hf_health_checker_load(t, hf_health_checker_index(t, "y"));
    size_t lz = hf_health_checker_load(t, hf_health_checker_index(t, "z"));
    assert_true(lx + ly + lz == 2 * 1098);
    assert_true(lx - ly + 1 <= 2 && ly - lz + 1 <= 2 && lz - lx + 1 <= 2);
    hf_health_free(t);
}

static void test_stable_under_churn(void **state)
{
    (void)state;
    enum { N = 1200 };
    hf_health_table *t = table_with(2, N);
    hf_hc_checker c[] = {ck("a", "1"), ck("b", "2"), ck("c", "3"), ck("d", "4")};
    hf_health_set_checkers(t, c, 3, 1, NULL);
    /* a checker joins: it takes about its share, nothing more */
    size_t moved = hf_health_set_checkers(t, c, 4, 1, NULL);
    size_t ld = hf_health_checker_load(t, hf_health_checker_index(t, "d"));
    assert_int_equal(moved, ld);
    assert_in_range(ld, 2 * N / 4 - 3, 2 * N / 4 + 3);
    /* a checker leaves: only its own endpoints change */
    char before[N][2][HF_CHECKER_ID_MAX];
    for (size_t i = 0; i < N; i++) {
        checkers_of(t, i, before[i]);
    }
    hf_hc_checker rest[] = {c[0], c[2], c[3]};
    size_t lb = hf_health_checker_load(t, hf_health_checker_index(t, "b"));
    moved = hf_health_set_checkers(t, rest, 3, 1, NULL);
    assert_int_equal(moved, 2 * lb); /* each of b's slots: one removed, one assigned */
    for (size_t i = 0; i < N; i++) {
        char now[2][HF_CHECKER_ID_MAX];
        checkers_of(t, i, now);
        bool had_b = strcmp(before[i][0], "b") == 0 || strcmp(before[i][1], "b") == 0;
        if (!had_b) {
            assert_string_equal(now[0], before[i][0]);
            assert_string_equal(now[1], before[i][1]);
        }
        assert_string_not_equal(now[0], "b");
        assert_string_not_equal(now[1], "b");
    }
    /* the same set again changes nothing */
    assert_int_equal(hf_health_set_checkers(t, rest, 3, 1, NULL), 0);
    hf_health_free(t);
}

static void quorum_case(int k, int bad_needed)
{
    hf_health_table *t = table_with(k, 1);
    hf_hc_checker c[] = {ck("c0", "a"), ck("c1", "b"), ck("c2", "c")};
    hf_health_set_checkers(t, c, (size_t)k, 1, NULL);
    hf_hc_decisions d = {0};
    for (int i = 0; i < k; i++) {
        assert_int_equal(verdict(t, 0, c[i].id, HF_HEALTH_HEALTHY, &d), 1);
    }
    assert_int_equal(d.n, 1); /* restored (from unknown) once a majority says healthy */
    assert_int_equal(d.v[0].health, HF_HEALTH_HEALTHY);
    d.n = 0;
    for (int i = 0; i < bad_needed; i++) {
        assert_int_equal(d.n, 0);
        verdict(t, 0, c[i].id, HF_HEALTH_UNHEALTHY, &d);
    }
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].health, HF_HEALTH_UNHEALTHY);
    assert_int_equal(d.v[0].votes, bad_needed);
    assert_int_equal(d.v[0].assigned, k);
    assert_int_equal(hf_health_endpoint(t, 0)->health, HF_HEALTH_UNHEALTHY);
    /* the same verdict again: no change, no decision */
    assert_int_equal(verdict(t, 0, c[0].id, HF_HEALTH_UNHEALTHY, &d), 0);
    assert_int_equal(d.n, 1);
    hf_hc_decisions_free(&d);
    hf_health_free(t);
}

static void test_quorum_k1(void **state)
{
    (void)state;
    quorum_case(1, 1);
}

static void test_quorum_k2(void **state)
{
    (void)state;
    quorum_case(2, 2);
}

static void test_quorum_k3(void **state)
{
    (void)state;
    quorum_case(3, 2);
}

/* Issue 11 item 1: fakes evict, then leave; the healthy checkers that take over restore. */
static void test_assignment_change_redecides(void **state)
{
    (void)state;
    hf_health_table *t = table_with(2, 1);
    hf_hc_checker fakes[] = {ck("f1", "a"), ck("f2", "b")};
    hf_health_set_checkers(t, fakes, 2, 1, NULL);
    hf_hc_decisions d = {0};
    verdict(t, 0, "f1", HF_HEALTH_UNHEALTHY, &d);
    verdict(t, 0, "f2", HF_HEALTH_UNHEALTHY, &d);
    assert_int_equal(d.n, 1);
    /* healthy checkers join while the fakes are still there: they report healthy too */
    hf_hc_checker all[] = {fakes[0], fakes[1], ck("h1", "a"), ck("h2", "b")};
    hf_health_set_checkers(t, all, 4, 2, &d);
    /* the fakes leave: h1 and h2 take over; without verdicts nothing changes yet */
    hf_hc_checker good[] = {all[2], all[3]};
    d.n = 0;
    hf_health_set_checkers(t, good, 2, 3, &d);
    assert_int_equal(d.n, 0);
    assert_int_equal(hf_health_endpoint(t, 0)->health, HF_HEALTH_UNHEALTHY);
    verdict(t, 0, "h1", HF_HEALTH_HEALTHY, &d);
    verdict(t, 0, "h2", HF_HEALTH_HEALTHY, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].health, HF_HEALTH_HEALTHY);
    hf_hc_decisions_free(&d);
    hf_health_free(t);
}

/* A checker that said "unhealthy" disconnects: the remaining healthy verdict decides at once. */
static void test_disconnect_redecides(void **state)
{
    (void)state;
    hf_health_table *t = table_with(3, 1);
    hf_hc_checker c[] = {ck("a", "a"), ck("b", "b"), ck("c", "c")};
    hf_health_set_checkers(t, c, 3, 1, NULL);
    hf_hc_decisions d = {0};
    verdict(t, 0, "a", HF_HEALTH_UNHEALTHY, &d);
    verdict(t, 0, "b", HF_HEALTH_UNHEALTHY, &d);
    verdict(t, 0, "c", HF_HEALTH_HEALTHY, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].health, HF_HEALTH_UNHEALTHY);
    /* a and b disconnect: only c is left (k = 3 but one checker), and it says healthy */
    d.n = 0;
    hf_health_set_checkers(t, &c[2], 1, 5, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].health, HF_HEALTH_HEALTHY);
    assert_int_equal(d.v[0].assigned, 1);
    /* every checker gone: fail static, nothing decided */
    d.n = 0;
    hf_health_set_checkers(t, NULL, 0, 6, &d);
    assert_int_equal(d.n, 0);
    assert_int_equal(hf_health_endpoint(t, 0)->health, HF_HEALTH_HEALTHY);
    hf_hc_decisions_free(&d);
    hf_health_free(t);
}

static void test_unknown_dropped(void **state)
{
    (void)state;
    hf_health_table *t = table_with(1, 10);
    hf_hc_checker c[] = {ck("a", ""), ck("b", "")};
    hf_health_set_checkers(t, c, 2, 1, NULL);
    hf_endpoint_key k;
    hf_endpoint_key_set(&k, "web", "192.0.2.1", 1);
    int a = hf_health_checker_index(t, "a");
    assert_int_equal(hf_health_verdict(t, &k, a, HF_HEALTH_UNHEALTHY, "", 1, 1, NULL),
                     HF_ENOTFOUND);
    assert_int_equal(hf_health_size(t), 10);
    /* a checker that is not assigned to the endpoint */
    const hf_hc_slot *s;
    hf_health_slots(t, 0, &s);
    int other = s[0].checker == a ? hf_health_checker_index(t, "b") : a;
    k = hf_health_endpoint(t, 0)->key;
    assert_int_equal(hf_health_verdict(t, &k, other, HF_HEALTH_UNHEALTHY, "", 1, 1, NULL),
                     HF_ENOTFOUND);
    assert_int_equal(hf_health_verdict(t, &k, -1, HF_HEALTH_UNHEALTHY, "", 1, 1, NULL),
                     HF_ENOTFOUND);
    hf_health_free(t);
}

/* sync of some services: the others' endpoints are left as they are, even when absent from the
 * input; the synced service's missing endpoints go. */
static void test_sync_services(void **state)
{
    (void)state;
    enum { N = 300 };
    hf_hc_endpoint eps[N], api[N];
    size_t na = 0;
    for (int i = 0; i < N; i++) {
        eps[i] = ep(i); /* "api" when i % 3 == 0, else "web" */
    }
    hf_health_table *t = hf_health_new(2);
    hf_hc_checker c[] = {ck("a", ""), ck("b", "")};
    hf_health_set_checkers(t, c, 2, 1, NULL);
    assert_int_equal(hf_health_sync(t, eps, N, 1, NULL), N);
    for (int i = 0; i < N; i += 3) {
        if (i != 3) { /* api's endpoint 3 is gone; 6 changed policy */
            api[na] = eps[i];
            if (i == 6) {
                api[na].policy = 9;
            }
            na++;
        }
    }
    const char *only_api[] = {"api"};
    assert_int_equal(hf_health_sync_services(t, only_api, 1, api, na, 1, NULL), 2);
    assert_int_equal(hf_health_size(t), N - 1);
    assert_true(hf_health_find(t, &eps[3].key) < 0);
    assert_true(hf_health_find(t, &eps[4].key) >= 0); /* web: untouched */
    long at = hf_health_find(t, &eps[6].key);
    assert_true(at >= 0 && hf_health_endpoint(t, (size_t)at)->policy == 9);
    /* a removed service: every endpoint of it goes, nothing else */
    const char *only_web[] = {"web"};
    assert_int_equal(hf_health_sync_services(t, only_web, 1, NULL, 0, 1, NULL), N - N / 3);
    assert_int_equal(hf_health_size(t), na);
    assert_int_equal(hf_health_sync_services(t, NULL, 0, NULL, 0, 1, NULL), 0);
    assert_int_equal(hf_health_checker_load(t, 0) + hf_health_checker_load(t, 1), 2 * na);
    hf_health_free(t);
}

/* sync: only differences touch the table; removals and re-adds keep the index right. */
static void test_sync_incremental(void **state)
{
    (void)state;
    enum { N = 5000 };
    hf_hc_endpoint *eps = calloc(N, sizeof(*eps));
    for (int i = 0; i < N; i++) {
        eps[i] = ep(i);
    }
    hf_health_table *t = hf_health_new(2);
    hf_hc_checker c[] = {ck("a", ""), ck("b", "")};
    hf_health_set_checkers(t, c, 2, 1, NULL);
    assert_int_equal(hf_health_sync(t, eps, N, 1, NULL), N);
    assert_true(hf_health_take_dirty(t, 0));
    assert_false(hf_health_take_dirty(t, 0));
    hf_health_take_dirty(t, 1);
    assert_int_equal(hf_health_sync(t, eps, N, 1, NULL), 0);
    assert_false(hf_health_take_dirty(t, 0));
    eps[17].policy = 2; /* one endpoint's service policy changed */
    assert_int_equal(hf_health_sync(t, eps, N, 1, NULL), 1);
    assert_true(hf_health_take_dirty(t, 0) && hf_health_take_dirty(t, 1));
    /* remove every other endpoint, then bring them back */
    hf_hc_endpoint *half = calloc(N, sizeof(*half));
    size_t nh = 0;
    for (int i = 0; i < N; i += 2) {
        half[nh++] = eps[i];
    }
    assert_int_equal(hf_health_sync(t, half, nh, 1, NULL), N - nh);
    assert_int_equal(hf_health_size(t), nh);
    for (int i = 0; i < N; i++) {
        assert_true((hf_health_find(t, &eps[i].key) >= 0) == (i % 2 == 0));
    }
    assert_int_equal(hf_health_sync(t, eps, N, 1, NULL), N - nh);
    for (int i = 0; i < N; i++) {
        long at = hf_health_find(t, &eps[i].key);
        assert_true(at >= 0);
        assert_true(hf_endpoint_key_eq(&hf_health_endpoint(t, (size_t)at)->key, &eps[i].key));
    }
    assert_int_equal(hf_health_checker_load(t, 0) + hf_health_checker_load(t, 1), 2 * N);
    free(half);
    free(eps);
    hf_health_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_format_parse),
        cmocka_unit_test(test_spread_across_zones),
        cmocka_unit_test(test_least_loaded),
        cmocka_unit_test(test_stable_under_churn),
        cmocka_unit_test(test_quorum_k1),
        cmocka_unit_test(test_quorum_k2),
        cmocka_unit_test(test_quorum_k3),
        cmocka_unit_test(test_assignment_change_redecides),
        cmocka_unit_test(test_disconnect_redecides),
        cmocka_unit_test(test_unknown_dropped),
        cmocka_unit_test(test_sync_incremental),
        cmocka_unit_test(test_sync_services),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
