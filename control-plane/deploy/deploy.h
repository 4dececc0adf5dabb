/*
 * Blue-green deployments with sticky sessions (DESIGN §4): the plan and its session-format
 * gate, the transitions (lower TTL, cutover, finish, extend, rollback, abort), the affinity tail
 * measured from load reports, its exponential fit, and the engine that samples the tail and
 * finishes drains on its own. Every decision is stored (absolute timestamps), so a restarted
 * holdfast carries on where it was.
 */
#ifndef HF_DEPLOY_H
#define HF_DEPLOY_H

#include "hf_err.h"
#include "model.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define DEPLOY_FINISH_SAMPLES 3 /* consecutive samples under the threshold to finish */

typedef struct deploy_plan_input {
    char service[HF_NAME_MAX];
    char to_fleet[HF_NAME_MAX];
    uint32_t lowered_ttl_s;    /* 0: min(300 s, the normal TTL) */
    int64_t lead_s;            /* < 0: 2 x the normal TTL */
    double tail_threshold_pct; /* < 0: 2 %, or 1 % when the session format changes */
    double deadline_factor;    /* < 0: 3 */
    bool force;                /* accept a lead shorter than the normal TTL */
} deploy_plan_input;

/* Validates and stores a new deployment (state planned). HF_EINVAL (field named),
 * HF_ENOTFOUND (service), HF_ECONFLICT (another deployment runs, no healthy target). */
int deploy_plan(hf_store *st, const char *actor, const deploy_plan_input *in, hf_deployment *out,
                hf_detail *d);

enum deploy_action {
    DEPLOY_LOWER_TTL,
    DEPLOY_CUTOVER,
    DEPLOY_FINISH,
    DEPLOY_EXTEND,
    DEPLOY_ROLLBACK,
    DEPLOY_ABORT,
};

typedef struct deploy_action_args {
    bool force;                     /* cutover before cutover_unlocks_at */
    bool acknowledge_format_change; /* cutover across a session-format change */
    uint32_t extend_by_s;           /* extend: 0 = one lowered TTL */
} deploy_action_args;

/* Parses "lower-ttl", "cutover", ... Returns 0 or -1. */
int deploy_action_parse(const char *name, enum deploy_action *out);
/* Applies an operator's action; *out receives the deployment afterwards. HF_ECONFLICT when the
 * state does not allow it (the message says why and what would). */
int deploy_act(hf_store *st, const char *actor, const char *id, enum deploy_action action,
               const deploy_action_args *args, hf_deployment *out, hf_detail *d);

/* The exponential decay fitted to the tail since the drain began: pct(t) = exp(a + b t). */
typedef struct deploy_fit {
    bool ok;            /* enough samples above zero */
    double rate_per_s;  /* -b */
    double half_life_s; /* ln 2 / rate */
    double a;
    int64_t origin_ms; /* t = 0 */
    int64_t eta_ms;    /* when the fit reaches the threshold; 0 if it never does */
} deploy_fit;

void deploy_fit_tail(const hf_tail_sample *s, size_t n, int64_t origin_ms, double threshold,
                     deploy_fit *out);

/* ---- the engine ---- */
typedef struct deploy_engine deploy_engine;

/* Starts the engine's thread: every interval_ms it turns the load gathered by
 * deploy_record_load into tail samples, and finishes drains (threshold or deadline). */
int deploy_start(hf_store *st, uint32_t interval_ms, deploy_engine **out, hf_detail *d);
void deploy_stop(deploy_engine *e);
/* An xds_load_sink: requests of one cluster's fleet in one report. Thread-safe, never blocks
 * for long (a short mutex). */
void deploy_record_load(void *engine, const char *cluster, const char *fleet, uint64_t requests);
/* The xds_load_sink reporter_fn: node's report counted for cluster (a tail sample records how
 * many proxies reported). Thread-safe. */
void deploy_record_reporter(void *engine, const char *node, const char *cluster);
/* Where tail samples learn how many proxies of a group are connected: fn(arg, group). Set it to
 * NULL before what arg points to goes away; once this returns, no call of the old fn runs. */
void deploy_set_proxy_counter(deploy_engine *e, int (*fn)(void *arg, const char *group), void *arg);
/* The xds_load_sink endpoint_fn: requests in progress on one endpoint, as one node reports. */
void deploy_record_endpoint(void *engine, const char *node, const char *cluster,
                            const char *address, uint32_t port, uint64_t in_progress);

#endif
