/*
 * What the REST server checks before a request's body is read (issue 14): conflicting
 * Content-Length headers, a body announced larger than the limit, the Host header (DNS
 * rebinding), and for requests that change something the Origin (cross-site requests) and the
 * Content-Type (a browser form or a "simple" fetch cannot send application/json). Internal to the
 * REST module; rest.c calls it on the first callback of each request.
 */
#ifndef HF_REST_GUARD_H
#define HF_REST_GUARD_H

#include "rest_internal.h"

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

#define REST_GUARD_MAX_HOSTS 8

/* The names a request's Host header may carry, besides "localhost". */
typedef struct rest_guard {
    char bound[64];                        /* the bound address literal, without brackets */
    bool wildcard;                         /* bound to 0.0.0.0 or ::: any IP literal names us */
    char hosts[REST_GUARD_MAX_HOSTS][256]; /* --http-host names, lower case */
    size_t n_hosts;
} rest_guard;

/* Fills g from the bound address and the extra host names (at most REST_GUARD_MAX_HOSTS, each
 * shorter than 256 bytes). Returns HF_OK or HF_EINVAL with d naming the bad name. */
int rest__guard_init(rest_guard *g, const char *bound, const char *const *hosts, size_t n_hosts,
                     hf_detail *d);

/* Checks the request's headers. Returns true when it may proceed; otherwise resp holds the
 * refusal: 400 (two different Content-Length values), 413 (announced body over REST_MAX_BODY),
 * 421 (Host names another site), 403 (a cross-origin Origin on a change), 415 (a change without
 * Content-Type: application/json). Thread-safe; g is read only. */
bool rest__guard_admit(const rest_guard *g, struct MHD_Connection *conn, const char *method,
                       rest_resp *resp);

/* True for the methods that change something (everything but GET, HEAD and OPTIONS). */
bool rest__guard_mutating(const char *method);

#endif
