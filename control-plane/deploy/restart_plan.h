/*
 * The rolling-restart planner (DESIGN §5): from the fleet size, the connections' length, the
 * max connection age and a disconnect budget, how many instances to restart at once, how often
 * to start a batch, and how long the whole restart takes. Pure arithmetic, no I/O.
 *
 * Model. Connections are spread evenly over the fleet's instances. A batch's instances are set
 * DRAINING: new requests go elsewhere, open connections end by themselves or are closed when
 * they reach the max connection age, then after drain_timeout whatever is left is cut: the
 * clients of a batch reconnect elsewhere, so a batch of b instances out of n disconnects about
 * b/n of all connections. The budget caps that share: b = floor(n * budget / 100). Batches are
 * staggered so that at most max_draining_pct of the fleet is out of rotation at once (draining
 * or restarting): the interval between batch starts is window / concurrent batches.
 */
#ifndef HF_RESTART_PLAN_H
#define HF_RESTART_PLAN_H

#include "hf_err.h"

#include <stdint.h>

typedef struct restart_plan_input {
    uint32_t endpoints;            /* instances in the fleet */
    uint32_t avg_connection_s;     /* mean connection length */
    uint32_t max_connection_age_s; /* 0: connections are not bounded */
    uint32_t drain_timeout_s;      /* grace after the window before the rest is cut */
    double max_disconnect_pct;     /* 1-10 */
    double max_draining_pct;       /* capacity out of rotation at once, 10-90 (default 60) */
    uint32_t restart_s;            /* an instance's restart until healthy (default 60) */
} restart_plan_input;

typedef struct restart_plan {
    uint32_t batch_size;
    uint32_t batches;
    uint32_t drain_window_s; /* per batch: until its connections are gone */
    uint32_t concurrent_batches;
    uint32_t interval_s;             /* between batch starts */
    uint32_t total_s;                /* from the first batch's start to the last instance healthy */
    uint32_t unbounded_last_drain_s; /* without a max age: how long the last drain could take */
    double disconnect_pct;           /* the share of connections one batch disconnects */
    char explanation[1024];
} restart_plan;

/* Computes a plan; HF_EINVAL (d names the field) when the inputs cannot make one, e.g. a budget
 * smaller than one instance's share of the connections. */
int restart_plan_compute(const restart_plan_input *in, restart_plan *out, hf_detail *d);

#endif
