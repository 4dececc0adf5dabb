/*
 * The shim's health-check engine: one epoll loop checking thousands of endpoints, HTTP/1.1 GET
 * (kept-alive connections reused between checks, as Envoy's checker does, unless the policy says
 * otherwise) and TCP connect, non-blocking, each endpoint on its own jittered timer, with
 * timeouts and Envoy's thresholds; gRPC health checks go through grpc_check.h (gRPC core, a
 * channel per endpoint). The HDS client feeds it targets and takes its
 * results through the two functions below, from another thread.
 */
#ifndef SHIM_CHECKER_H
#define SHIM_CHECKER_H

#include "endpoint_key.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sh_protocol { SH_HTTP = 0, SH_TCP, SH_GRPC };
enum sh_health { SH_UNKNOWN = 0, SH_HEALTHY, SH_UNHEALTHY };

#define SH_REASON_MAX 64
#define SH_FULL_REPORT_MS 30000 /* full reports at most this often (transitions go at once) */

/* One endpoint to check, with its policy. key.service is the HDS cluster name. */
typedef struct sh_target_spec {
    enum sh_protocol protocol; /* the numbers every check reads first (one cache line) */
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t unhealthy_threshold;
    uint32_t healthy_threshold;
    uint32_t jitter_pct;
    bool reuse_connection;
    hf_endpoint_key key;
    char zone[128];
    char fleet[64];
    char path[256];         /* HTTP */
    char service_name[256]; /* gRPC: the service asked about ("" = the server) */
} sh_target_spec;

/* One endpoint's verdict, as reported, and why: "HTTP 503 in 2 ms", "timeout after 1000 ms
 * waiting for the answer", "connect refused", "protocol error: not an HTTP response"... */
typedef struct sh_result {
    hf_endpoint_key key;
    char zone[128];
    char fleet[64];
    enum sh_health health;
    char reason[SH_REASON_MAX];
} sh_result;

/* Called on the checker's thread: transitions as they happen (full = false, a small report of
 * their own), and every full-report interval every endpoint (full = true). */
typedef void (*sh_report_fn)(void *arg, const sh_result *r, size_t n, bool full);

typedef struct sh_checker sh_checker;

sh_checker *sh_checker_new(const char *node_id, sh_report_fn fn, void *arg);
void sh_checker_free(sh_checker *c);
/* Replaces the targets (thread-safe; applied by the loop soon). Endpoints kept from the previous
 * set keep their state and connections (matched by key, hashed). report_ms is the report
 * interval holdfast asks for; full reports go out every max(report_ms, SH_FULL_REPORT_MS),
 * transitions at once. */
void sh_checker_apply(sh_checker *c, const sh_target_spec *t, size_t n, uint32_t report_ms);
/* Runs the loop until *stop is set. Returns 0, or -1 if epoll fails. */
int sh_checker_run(sh_checker *c, atomic_int *stop);

/* Counters, for logs and benchmarks. */
typedef struct sh_stats {
    uint64_t checks;
    uint64_t failures;
    uint64_t connects;
    uint64_t timeouts;
    uint64_t late_extended; /* deadlines extended because the loop itself ran late */
} sh_stats;
void sh_checker_stats(sh_checker *c, sh_stats *out);

#endif
