/*
 * The shim's health-check engine: one epoll loop checking thousands of endpoints, HTTP/1.1 GET
 * (kept-alive connections reused between checks, as Envoy's checker does, unless the policy says
 * otherwise) and TCP connect, non-blocking, each endpoint on its own jittered timer, with
 * timeouts and Envoy's thresholds. No gRPC here: the HDS client feeds it targets and takes its
 * results through the two functions below, from another thread.
 */
#ifndef SHIM_CHECKER_H
#define SHIM_CHECKER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sh_protocol { SH_HTTP = 0, SH_TCP };
enum sh_health { SH_UNKNOWN = 0, SH_HEALTHY, SH_UNHEALTHY };

/* One endpoint to check, with its policy. */
typedef struct sh_target_spec {
    char cluster[64];
    char address[48];
    uint16_t port;
    char zone[128];
    char fleet[64];
    enum sh_protocol protocol;
    char path[256];
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t unhealthy_threshold;
    uint32_t healthy_threshold;
    uint32_t jitter_pct;
    bool reuse_connection;
} sh_target_spec;

/* One endpoint's verdict, as reported. */
typedef struct sh_result {
    char cluster[64];
    char address[48];
    uint16_t port;
    char zone[128];
    char fleet[64];
    enum sh_health health;
} sh_result;

/* Called on the checker's thread: transitions as they happen (full = false), and every
 * report interval every endpoint (full = true). */
typedef void (*sh_report_fn)(void *arg, const sh_result *r, size_t n, bool full);

typedef struct sh_checker sh_checker;

sh_checker *sh_checker_new(const char *node_id, sh_report_fn fn, void *arg);
void sh_checker_free(sh_checker *c);
/* Replaces the targets (thread-safe; applied by the loop soon). Endpoints kept from the previous
 * set keep their state and connections. report_ms is the full-report interval. */
void sh_checker_apply(sh_checker *c, const sh_target_spec *t, size_t n, uint32_t report_ms);
/* Runs the loop until *stop is set. Returns 0, or -1 if epoll fails. */
int sh_checker_run(sh_checker *c, atomic_int *stop);

/* Counters, for logs and benchmarks. */
typedef struct sh_stats {
    uint64_t checks;
    uint64_t failures;
    uint64_t connects;
} sh_stats;
void sh_checker_stats(sh_checker *c, sh_stats *out);

#endif
