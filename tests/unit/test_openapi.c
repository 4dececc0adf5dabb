/*
 * Checks api/openapi.yaml against the server's route table, both ways: every route the server
 * has is documented, and every documented operation exists. The document is read line by line
 * in the layout we keep it in (paths at two spaces, methods at four).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "rest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS 256

struct op {
    char method[8];
    char path[160];
};

static size_t read_document(struct op *ops)
{
    const char *src = getenv("HOLDFAST_SOURCE_DIR");
    assert_non_null(src);
    char file[512];
    snprintf(file, sizeof(file), "%s/api/openapi.yaml", src);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char line[512];
    char path[160] = "";
    bool in_paths = false;
    size_t n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != ' ' && line[0] != '\0' && line[0] != '#') {
            in_paths = strcmp(line, "paths:") == 0;
            continue;
        }
        if (!in_paths) {
            continue;
        }
        if (strncmp(line, "  /", 3) == 0) {
            snprintf(path, sizeof(path), "%.150s", line + 2);
            path[strcspn(path, ":")] = '\0';
        } else if (strncmp(line, "    ", 4) == 0 && islower((unsigned char)line[4])) {
            static const char *const methods[] = {"get", "post", "patch", "put", "delete"};
            for (size_t i = 0; i < 5; i++) {
                size_t len = strlen(methods[i]);
                if (strncmp(line + 4, methods[i], len) == 0 && line[4 + len] == ':') {
                    assert_true(n < MAX_OPS);
                    for (size_t k = 0; k <= len; k++) {
                        ops[n].method[k] = (char)toupper((unsigned char)methods[i][k]);
                    }
                    snprintf(ops[n].path, sizeof(ops[n].path), "%s", path);
                    n++;
                }
            }
        }
    }
    fclose(f);
    return n;
}

static void test_every_route_documented(void **state)
{
    (void)state;
    static struct op ops[MAX_OPS];
    size_t nops = read_document(ops);
    assert_true(nops > 10);
    size_t nroutes;
    const rest_route_info *routes = rest_routes(&nroutes);
    for (size_t i = 0; i < nroutes; i++) {
        bool found = false;
        for (size_t k = 0; k < nops && !found; k++) {
            found = strcmp(ops[k].method, routes[i].method) == 0 &&
                    strcmp(ops[k].path, routes[i].pattern) == 0;
        }
        if (!found) {
            fail_msg("api/openapi.yaml lacks %s %s", routes[i].method, routes[i].pattern);
        }
    }
    for (size_t k = 0; k < nops; k++) {
        bool found = false;
        for (size_t i = 0; i < nroutes && !found; i++) {
            found = strcmp(ops[k].method, routes[i].method) == 0 &&
                    strcmp(ops[k].path, routes[i].pattern) == 0;
        }
        if (!found) {
            fail_msg("api/openapi.yaml documents %s %s, which the server does not serve",
                     ops[k].method, ops[k].path);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
