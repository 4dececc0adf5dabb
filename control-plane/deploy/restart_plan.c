/* The rolling-restart planner; see restart_plan.h. */
#include "restart_plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* How long a batch's connections take to go: bounded by the max age when there is one, else by
 * three mean lengths (95 % of exponentially distributed connections are over by then). */
static uint32_t drain_window(const restart_plan_input *in, uint32_t *unbounded)
{
    uint32_t natural = 3 * in->avg_connection_s;
    *unbounded = natural + in->drain_timeout_s;
    if (in->max_connection_age_s > 0 && in->max_connection_age_s < natural) {
        return in->max_connection_age_s + in->drain_timeout_s;
    }
    return natural + in->drain_timeout_s;
}

int restart_plan_compute(const restart_plan_input *in, restart_plan *out, hf_detail *d)
{
    if (in->endpoints < 1) {
        return hf_fail(d, HF_EINVAL, "fleet", "the fleet has no endpoints to restart");
    }
    if (in->max_disconnect_pct < 1 || in->max_disconnect_pct > 10) {
        return hf_fail(d, HF_EINVAL, "max_disconnect_pct", "max_disconnect_pct must be 1-10");
    }
    if (in->avg_connection_s < 1) {
        return hf_fail(d, HF_EINVAL, "avg_connection_s", "avg_connection_s must be at least 1");
    }
    double draining = in->max_draining_pct > 0 ? in->max_draining_pct : 60;
    if (draining < 10 || draining > 90) {
        return hf_fail(d, HF_EINVAL, "max_draining_pct", "max_draining_pct must be 10-90");
    }
    double share = 100.0 / in->endpoints; /* connections on one instance, % */
    uint32_t b = (uint32_t)floor(in->endpoints * in->max_disconnect_pct / 100.0 + 1e-9);
    if (b < 1) {
        return hf_fail(d, HF_EINVAL, "max_disconnect_pct",
                       "restarting even one of %u instances disconnects %.1f %% of the "
                       "connections, over the %.1f %% budget: raise max_disconnect_pct to at "
                       "least %.1f, or grow the fleet",
                       in->endpoints, share, in->max_disconnect_pct, share);
    }
    memset(out, 0, sizeof(*out));
    out->batch_size = b;
    out->batches = (in->endpoints + b - 1) / b;
    out->disconnect_pct = share * b;
    out->drain_window_s = drain_window(in, &out->unbounded_last_drain_s);
    uint32_t restart = in->restart_s ? in->restart_s : 60;
    double batch_pct = out->disconnect_pct;
    uint32_t concurrent = (uint32_t)floor(draining / batch_pct + 1e-9);
    out->concurrent_batches = concurrent < 1 ? 1 : concurrent;
    uint32_t busy = out->drain_window_s + restart; /* a batch out of rotation */
    out->interval_s = (busy + out->concurrent_batches - 1) / out->concurrent_batches;
    out->total_s = (out->batches - 1) * out->interval_s + busy;
    snprintf(out->explanation, sizeof(out->explanation),
             "%u instances in %u batches of %u: a batch disconnects %.1f %% of the connections "
             "(budget %.1f %%). Each batch drains for %u s (%s, plus %u s drain timeout), then "
             "restarts in about %u s. At most %u batches (%.0f %% of the fleet, cap %.0f %%) are "
             "out of rotation at once, so a batch starts every %u s; the last instance is healthy "
             "again after %u s (%.0f min).%s",
             in->endpoints, out->batches, b, out->disconnect_pct, in->max_disconnect_pct,
             out->drain_window_s,
             in->max_connection_age_s && in->max_connection_age_s < 3 * in->avg_connection_s
                 ? "bounded by the max connection age"
                 : "three mean connection lengths",
             in->drain_timeout_s, restart, out->concurrent_batches,
             out->concurrent_batches * batch_pct, draining, out->interval_s, out->total_s,
             out->total_s / 60.0,
             in->max_connection_age_s ? ""
                                      : " Set a max connection age: without one a drain lasts as "
                                        "long as the longest connections.");
    return HF_OK;
}
