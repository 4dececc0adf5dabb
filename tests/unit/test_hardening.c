/*
 * Unit tests of the hardening helpers on real inputs: hf_escape (every log line, peer strings
 * shown in the API) and the webhook URL check (curl's URL parser, forbidden targets).
 */
#include "log.h"
#include "webhook.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void escape(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t n = hf_escape(in, len, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_escape_controls_and_bad_utf8(void **state)
{
    (void)state;
    escape("plain text", 10, "plain text");
    escape("a\nb\rc\td", 7, "a\\x0ab\\x0dc\\x09d");
    escape("\x1b[31mred", 8, "\\x1b[31mred");
    escape("del\x7f", 4, "del\\x7f");
    escape("caf\xc3\xa9 \xe2\x9c\x93", 9, "caf\xc3\xa9 \xe2\x9c\x93"); /* valid UTF-8 kept */
    escape("x\xff\xfey", 4, "x\\xff\\xfey");                           /* invalid bytes */
    escape("\xc0\xaf", 2, "\\xc0\\xaf");                               /* overlong '/' */
    escape("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");                      /* a surrogate */
    escape("\xc2\x85next", 6, "\\xc2\\x85next");                       /* C1 NEL */
    escape("\xe2\x9c", 2, "\\xe2\\x9c");                               /* cut sequence */
    escape("nul\0x", 5, "nul\\x00x");
}

static void test_escape_bounded(void **state)
{
    (void)state;
    char out[8];
    /* Never past cap, never half an escape: "ab" + "\x0a" needs 7 bytes, the next does not fit. */
    size_t n = hf_escape("ab\n\n", 4, out, sizeof(out));
    assert_string_equal(out, "ab\\x0a");
    assert_int_equal(n, 6);
    char *dup = hf_escape_dup("id\n");
    assert_string_equal(dup, "id\\x0a");
    free(dup);
}

static void test_webhook_url_check(void **state)
{
    (void)state;
    char why[160];
    static const char *const good[] = {
        "http://127.0.0.1:8080/hook", "https://orchestrator.example.com/restart?x=1",
        "http://localhost:9/x", "http://[::1]:9/x", "http://10.1.2.3/x"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(webhook_url_check(good[i], why, sizeof(why)), 0);
    }
    static const char *const bad[] = {"http://127.0.0.1/x\r\nHost: evil",
                                      "http://127.0.0.1/a b",
                                      "http://h\xc3\xa9.example/",
                                      "ftp://127.0.0.1/x",
                                      "http:///x",
                                      "http://",
                                      "not a url",
                                      "http://169.254.169.254/latest",
                                      "http://169.254.0.1:80/",
                                      "http://0.0.0.0:80/",
                                      "http://0.1.2.3/",
                                      "http://[::]/",
                                      "http://[fe80::1]/",
                                      "http://[fe80::1%25eth0]/",
                                      "http://[::ffff:169.254.169.254]/",
                                      "http://224.0.0.1/",
                                      "http://255.255.255.255/",
                                      "http://[ff02::1]/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(webhook_url_check(bad[i], why, sizeof(why)), -1);
        assert_true(strstr(why, "webhook_url") != NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_controls_and_bad_utf8),
        cmocka_unit_test(test_escape_bounded),
        cmocka_unit_test(test_webhook_url_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
