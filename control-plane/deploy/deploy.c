/*
 * Deployment rules: planning and transitions. The store applies each transition atomically; this
 * file decides whether it is allowed and what the row, the roles and the TTL in force become.
 */
#include "deploy.h"

#include "timeutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void add_warning(hf_deployment *dep, const char *fmt, ...)
{
    size_t used = strlen(dep->warnings);
    if (used > 0 && used + 1 < sizeof(dep->warnings)) {
        dep->warnings[used++] = '\n';
        dep->warnings[used] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dep->warnings + used, sizeof(dep->warnings) - used, fmt, ap);
    va_end(ap);
}

static bool format_listed(const hf_service *s, const char *format)
{
    for (uint32_t i = 0; i < s->n_compatible_session_formats; i++) {
        if (strcmp(s->compatible_session_formats[i], format) == 0) {
            return true;
        }
    }
    return false;
}

/* Finds the active fleet and the target among the service's fleets. */
static int pick_fleets(hf_store *st, const deploy_plan_input *in, hf_fleet *from, hf_fleet *to,
                       hf_detail *d)
{
    hf_fleet *fleets;
    size_t n;
    int rc = store_fleet_list(st, in->service, &fleets, &n, d);
    if (rc != HF_OK) {
        return rc;
    }
    bool have_from = false, have_to = false;
    for (size_t i = 0; i < n; i++) {
        if (fleets[i].role == HF_ROLE_ACTIVE) {
            *from = fleets[i];
            have_from = true;
        }
        if (strcmp(fleets[i].name, in->to_fleet) == 0) {
            *to = fleets[i];
            have_to = true;
        }
    }
    free(fleets);
    if (!have_to) {
        return hf_fail(d, HF_EINVAL, "to_fleet", "service '%s' has no fleet '%s'", in->service,
                       in->to_fleet);
    }
    if (!have_from) {
        return hf_fail(d, HF_ECONFLICT, "", "service '%s' has no active fleet to move from",
                       in->service);
    }
    if (strcmp(from->name, to->name) == 0) {
        return hf_fail(d, HF_EINVAL, "to_fleet", "fleet '%s' is already the active fleet",
                       to->name);
    }
    if (to->role != HF_ROLE_STANDBY && to->role != HF_ROLE_RETIRED) {
        return hf_fail(d, HF_EINVAL, "to_fleet", "fleet '%s' is %s; the target must be standby",
                       to->name, hf_fleet_role_name(to->role));
    }
    return HF_OK;
}

/* The target fleet must have endpoints, healthy ones where health is known. */
static int check_target_endpoints(hf_store *st, const char *service, const char *fleet,
                                  hf_detail *d)
{
    hf_endpoint *eps;
    size_t n;
    int rc = store_endpoint_list(st, service, fleet, &eps, &n, d);
    if (rc != HF_OK) {
        return rc;
    }
    size_t usable = 0, known = 0, healthy = 0;
    for (size_t i = 0; i < n; i++) {
        if (eps[i].admin_state == HF_ADMIN_DISABLED) {
            continue;
        }
        usable++;
        known += eps[i].health != HF_HEALTH_UNKNOWN;
        healthy += eps[i].health == HF_HEALTH_HEALTHY;
    }
    free(eps);
    if (usable == 0) {
        return hf_fail(d, HF_EINVAL, "to_fleet", "fleet '%s' has no endpoints to send traffic to",
                       fleet);
    }
    if (known > 0 && healthy == 0) {
        return hf_fail(d, HF_ECONFLICT, "to_fleet",
                       "no endpoint of fleet '%s' is healthy; health checks must pass first",
                       fleet);
    }
    return HF_OK;
}

static int plan_parameters(const hf_service *svc, const deploy_plan_input *in, hf_deployment *dep,
                           hf_detail *d)
{
    dep->normal_ttl_s = svc->affinity.ttl_s;
    dep->lowered_ttl_s =
        in->lowered_ttl_s ? in->lowered_ttl_s : (dep->normal_ttl_s < 300 ? dep->normal_ttl_s : 300);
    if (dep->lowered_ttl_s < 1 || dep->lowered_ttl_s > dep->normal_ttl_s) {
        return hf_fail(d, HF_EINVAL, "lowered_ttl_s",
                       "lowered_ttl_s must be 1 to the normal TTL (%u s)", dep->normal_ttl_s);
    }
    int64_t lead = in->lead_s >= 0 ? in->lead_s : 2 * (int64_t)dep->normal_ttl_s;
    if (lead > 30 * 24 * 3600) {
        return hf_fail(d, HF_EINVAL, "lead_s", "lead_s must be at most 30 days");
    }
    if (lead < dep->normal_ttl_s && !in->force) {
        return hf_fail(d, HF_EINVAL, "lead_s",
                       "lead_s (%lld s) is shorter than the normal TTL (%u s): cookies issued "
                       "before the TTL is lowered would still pin sessions after cutover; send "
                       "\"force\": true to accept that",
                       (long long)lead, dep->normal_ttl_s);
    }
    dep->lead_s = (uint32_t)lead;
    double thr =
        in->tail_threshold_pct >= 0 ? in->tail_threshold_pct : (dep->format_change ? 1.0 : 2.0);
    if (thr < 0.1 || thr > 5) {
        return hf_fail(d, HF_EINVAL, "tail_threshold_pct", "tail_threshold_pct must be 0.1-5");
    }
    dep->tail_threshold_pct = thr;
    dep->deadline_factor = in->deadline_factor >= 0 ? in->deadline_factor : 3.0;
    if (dep->deadline_factor < 1 || dep->deadline_factor > 10) {
        return hf_fail(d, HF_EINVAL, "deadline_factor", "deadline_factor must be 1-10");
    }
    return HF_OK;
}

static void plan_warnings(const hf_service *svc, const hf_fleet *from, const hf_fleet *to,
                          hf_deployment *dep)
{
    if (dep->format_change) {
        add_warning(dep,
                    "session format changes from '%s' to '%s' and the service does not declare "
                    "them compatible: during the affinity tail both versions serve traffic, so "
                    "sessions that cross versions may fail. The tail threshold defaults to 1 %%, "
                    "the drain cannot finish before a full lowered TTL, and cutover needs "
                    "acknowledge_format_change.",
                    from->session_format, to->session_format);
    }
    if (svc->affinity.mode == HF_AFFINITY_NONE) {
        add_warning(dep,
                    "service '%s' has no affinity: lowering the TTL does nothing and "
                    "cutover moves all traffic at once.",
                    svc->name);
    } else if (svc->affinity.mode == HF_AFFINITY_HASH_COOKIE) {
        add_warning(dep,
                    "hash-cookie affinity has no drain: sessions on '%s' remap to '%s' at "
                    "cutover instead of finishing where they are.",
                    from->name, to->name);
    }
    if (dep->lead_s < dep->normal_ttl_s) {
        add_warning(dep,
                    "the lead (%u s) is shorter than the normal TTL (%u s): cookies issued "
                    "before the TTL is lowered may still pin sessions to '%s' after cutover.",
                    dep->lead_s, dep->normal_ttl_s, from->name);
    }
}

int deploy_plan(hf_store *st, const char *actor, const deploy_plan_input *in, hf_deployment *out,
                hf_detail *d)
{
    hf_service svc;
    int rc = store_service_get(st, in->service, &svc, d);
    if (rc == HF_ENOTFOUND) {
        return hf_fail(d, HF_EINVAL, "service", "service '%s' does not exist", in->service);
    }
    if (rc == HF_OK) {
        rc = store_service_busy(st, in->service, d); /* 409 before planning */
    }
    hf_fleet from, to;
    if (rc == HF_OK) {
        rc = pick_fleets(st, in, &from, &to, d);
    }
    if (rc == HF_OK) {
        rc = check_target_endpoints(st, in->service, to.name, d);
    }
    hf_deployment dep = {.final_tail_pct = -1};
    if (rc == HF_OK) {
        dep.format_change =
            strcmp(from.session_format, to.session_format) != 0 &&
            !(format_listed(&svc, from.session_format) && format_listed(&svc, to.session_format));
        rc = plan_parameters(&svc, in, &dep, d);
    }
    if (rc != HF_OK) {
        return rc;
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        rnd = (uint64_t)hf_now_ms() ^ (uint64_t)hf_mono_ns();
    }
    snprintf(dep.id, sizeof(dep.id), "d-%016llx", (unsigned long long)rnd);
    snprintf(dep.service, sizeof(dep.service), "%s", svc.name);
    snprintf(dep.from_fleet, sizeof(dep.from_fleet), "%s", from.name);
    snprintf(dep.to_fleet, sizeof(dep.to_fleet), "%s", to.name);
    dep.state = HF_DEP_PLANNED;
    plan_warnings(&svc, &from, &to, &dep);
    rc = store_deployment_create(st, actor, &dep, d);
    if (rc == HF_OK) {
        *out = dep;
    }
    return rc;
}

/* ======================================================================================== */
/* transitions                                                                              */
/* ======================================================================================== */

int deploy_action_parse(const char *name, enum deploy_action *out)
{
    static const char *const names[] = {"lower-ttl", "cutover",  "finish",
                                        "extend",    "rollback", "abort"};
    for (int i = 0; i < 6; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum deploy_action)i;
            return 0;
        }
    }
    return -1;
}

static int refuse(hf_detail *d, const hf_deployment *dep, const char *what, const char *allowed)
{
    return hf_fail(d, HF_ECONFLICT, "", "cannot %s deployment %s: it is %s (%s only from %s)", what,
                   dep->id, hf_deploy_state_name(dep->state), what, allowed);
}

/* The last tail sample since the drain began, or -1. */
static double last_tail(hf_store *st, const hf_deployment *dep)
{
    hf_tail_sample *s;
    size_t n;
    double pct = -1;
    if (store_tail_list(st, dep->id, &s, &n) == HF_OK) {
        for (size_t i = 0; i < n; i++) {
            if (s[i].t >= dep->cutover_at) {
                pct = s[i].pct;
            }
        }
        free(s);
    }
    return pct;
}

/* Ends a drain: completed (from fleet retired) or rolled_back (target back to standby); the
 * normal TTL comes back. */
int deploy__finish(hf_store *st, const char *actor, const hf_deployment *cur, const char *reason,
                   double tail, hf_deployment *out, hf_detail *d);

int deploy__finish(hf_store *st, const char *actor, const hf_deployment *cur, const char *reason,
                   double tail, hf_deployment *out, hf_detail *d)
{
    hf_deployment next = *cur;
    bool forward = cur->state == HF_DEP_DRAINING;
    next.state = forward ? HF_DEP_COMPLETED : HF_DEP_ROLLED_BACK;
    next.finished_at = next.updated_at = hf_now_ms();
    snprintf(next.finish_reason, sizeof(next.finish_reason), "%s", reason);
    next.final_tail_pct = tail;
    char summary[400];
    if (tail >= 0) {
        snprintf(summary, sizeof(summary), "%s %s by %s; tail %.2f %% on %s; TTL back to %u s",
                 cur->id, forward ? "completed" : "rolled back", reason, tail,
                 hf_deployment_draining_fleet(cur), cur->normal_ttl_s);
    } else {
        snprintf(summary, sizeof(summary), "%s %s by %s (no tail measured); TTL back to %u s",
                 cur->id, forward ? "completed" : "rolled back", reason, cur->normal_ttl_s);
    }
    store_deploy_change c = {.expect = cur->state,
                             .next = &next,
                             .n_roles = 1,
                             .ttl_in_force_s = 0,
                             .action = forward ? "deployment.complete" : "deployment.rolled_back",
                             .summary = summary};
    c.roles[0].fleet = forward ? cur->from_fleet : cur->to_fleet;
    c.roles[0].role = forward ? HF_ROLE_RETIRED : HF_ROLE_STANDBY;
    int rc = store_deployment_change(st, actor, &c, d);
    if (rc == HF_OK) {
        *out = next;
    }
    return rc;
}

static int lower_ttl(hf_store *st, const char *actor, const hf_deployment *cur, hf_deployment *next,
                     hf_detail *d)
{
    if (cur->state != HF_DEP_PLANNED) {
        return refuse(d, cur, "lower the TTL of", "planned");
    }
    int64_t now = hf_now_ms();
    next->state = HF_DEP_TTL_LOWERED;
    next->ttl_lowered_at = next->updated_at = now;
    next->cutover_unlocks_at = now + (int64_t)cur->lead_s * 1000;
    char summary[400];
    snprintf(summary, sizeof(summary),
             "%s: cookie TTL of %s lowered %u s -> %u s; cutover "
             "unlocks in %u s",
             cur->id, cur->service, cur->normal_ttl_s, cur->lowered_ttl_s, cur->lead_s);
    store_deploy_change c = {.expect = HF_DEP_PLANNED,
                             .next = next,
                             .ttl_in_force_s = cur->lowered_ttl_s,
                             .action = "deployment.lower_ttl",
                             .summary = summary};
    return store_deployment_change(st, actor, &c, d);
}

/* Starts a drain of the fleet being left: forward at cutover, backward at rollback. */
static void start_drain(hf_deployment *next, int64_t now)
{
    next->cutover_at = next->updated_at = now;
    next->deadline_at = now + (int64_t)llround(next->deadline_factor * next->lowered_ttl_s * 1000);
    next->min_finish_at = next->format_change ? now + (int64_t)next->lowered_ttl_s * 1000 : now;
}

static int cutover(hf_store *st, const char *actor, const hf_deployment *cur,
                   const deploy_action_args *a, hf_deployment *next, hf_detail *d)
{
    if (cur->state != HF_DEP_TTL_LOWERED) {
        return refuse(d, cur, "cut over", "ttl_lowered");
    }
    int64_t now = hf_now_ms();
    if (now < cur->cutover_unlocks_at && !a->force) {
        return hf_fail(d, HF_ECONFLICT, "",
                       "cutover unlocks in %lld s: cookies issued before the TTL was lowered "
                       "may still pin sessions; wait, or send \"force\": true",
                       (long long)((cur->cutover_unlocks_at - now + 999) / 1000));
    }
    if (cur->format_change && !a->acknowledge_format_change) {
        return hf_fail(d, HF_ECONFLICT, "acknowledge_format_change",
                       "the session format changes between %s and %s: send "
                       "\"acknowledge_format_change\": true to cut over anyway",
                       cur->from_fleet, cur->to_fleet);
    }
    int rc = check_target_endpoints(st, cur->service, cur->to_fleet, d);
    if (rc != HF_OK) {
        return rc;
    }
    next->state = HF_DEP_DRAINING;
    next->format_acknowledged = a->acknowledge_format_change;
    start_drain(next, now);
    char summary[400];
    snprintf(summary, sizeof(summary),
             "%s: cut over %s from %s to %s%s; %s drains until the "
             "tail is under %.1f %% (deadline in %.0f s)",
             cur->id, cur->service, cur->from_fleet, cur->to_fleet,
             a->force && now < cur->cutover_unlocks_at ? " (forced early)" : "", cur->from_fleet,
             cur->tail_threshold_pct, (next->deadline_at - now) / 1000.0);
    store_deploy_change c = {.expect = HF_DEP_TTL_LOWERED,
                             .next = next,
                             .n_roles = 2,
                             .ttl_in_force_s = -1,
                             .action = "deployment.cutover",
                             .summary = summary};
    c.roles[0].fleet = cur->from_fleet;
    c.roles[0].role = HF_ROLE_DRAINING;
    c.roles[1].fleet = cur->to_fleet;
    c.roles[1].role = HF_ROLE_ACTIVE;
    return store_deployment_change(st, actor, &c, d);
}

static int rollback(hf_store *st, const char *actor, const hf_deployment *cur, hf_deployment *next,
                    hf_detail *d)
{
    int64_t now = hf_now_ms();
    char summary[400];
    store_deploy_change c = {.expect = cur->state, .next = next, .summary = summary};
    if (cur->state == HF_DEP_TTL_LOWERED) {
        /* Nothing reached the target yet: restore the TTL and stop. */
        next->state = HF_DEP_ROLLED_BACK;
        next->finished_at = next->updated_at = now;
        snprintf(next->finish_reason, sizeof(next->finish_reason), "rollback");
        c.ttl_in_force_s = 0;
        c.action = "deployment.rolled_back";
        snprintf(summary, sizeof(summary), "%s rolled back before cutover; TTL of %s back to %u s",
                 cur->id, cur->service, cur->normal_ttl_s);
        return store_deployment_change(st, actor, &c, d);
    }
    if (cur->state != HF_DEP_DRAINING) {
        return refuse(d, cur, "roll back", "ttl_lowered or draining");
    }
    /* Swap the roles: the old fleet serves again, the target's sessions drain back. */
    next->state = HF_DEP_ROLLING_BACK;
    start_drain(next, now);
    c.ttl_in_force_s = -1;
    c.n_roles = 2;
    c.roles[0].fleet = cur->to_fleet;
    c.roles[0].role = HF_ROLE_DRAINING;
    c.roles[1].fleet = cur->from_fleet;
    c.roles[1].role = HF_ROLE_ACTIVE;
    c.action = "deployment.rollback";
    snprintf(summary, sizeof(summary), "%s: rolling back %s: %s active again, %s drains back",
             cur->id, cur->service, cur->from_fleet, cur->to_fleet);
    return store_deployment_change(st, actor, &c, d);
}

static int extend(hf_store *st, const char *actor, const hf_deployment *cur,
                  const deploy_action_args *a, hf_deployment *next, hf_detail *d)
{
    if (cur->state != HF_DEP_DRAINING && cur->state != HF_DEP_ROLLING_BACK) {
        return refuse(d, cur, "extend", "draining or rolling_back");
    }
    uint32_t by = a->extend_by_s ? a->extend_by_s : cur->lowered_ttl_s;
    next->deadline_at += (int64_t)by * 1000;
    next->updated_at = hf_now_ms();
    char summary[400];
    snprintf(summary, sizeof(summary), "%s: deadline extended by %u s", cur->id, by);
    store_deploy_change c = {.expect = cur->state,
                             .next = next,
                             .ttl_in_force_s = -1,
                             .action = "deployment.extend",
                             .summary = summary};
    return store_deployment_change(st, actor, &c, d);
}

static int abort_deployment(hf_store *st, const char *actor, const hf_deployment *cur,
                            hf_deployment *next, hf_detail *d)
{
    if (cur->state != HF_DEP_PLANNED && cur->state != HF_DEP_TTL_LOWERED) {
        return refuse(d, cur, "abort", "planned or ttl_lowered (roll back a drain instead)");
    }
    next->state = HF_DEP_ABORTED;
    next->finished_at = next->updated_at = hf_now_ms();
    snprintf(next->finish_reason, sizeof(next->finish_reason), "aborted");
    char summary[400];
    snprintf(summary, sizeof(summary), "%s aborted; TTL of %s is %u s", cur->id, cur->service,
             cur->normal_ttl_s);
    store_deploy_change c = {.expect = cur->state,
                             .next = next,
                             .ttl_in_force_s = 0,
                             .action = "deployment.abort",
                             .summary = summary};
    return store_deployment_change(st, actor, &c, d);
}

int deploy_act(hf_store *st, const char *actor, const char *id, enum deploy_action action,
               const deploy_action_args *args, hf_deployment *out, hf_detail *d)
{
    hf_deployment cur;
    int rc = store_deployment_get(st, id, &cur, d);
    if (rc != HF_OK) {
        return rc;
    }
    hf_deployment next = cur;
    switch (action) {
    case DEPLOY_LOWER_TTL:
        rc = lower_ttl(st, actor, &cur, &next, d);
        break;
    case DEPLOY_CUTOVER:
        rc = cutover(st, actor, &cur, args, &next, d);
        break;
    case DEPLOY_FINISH:
        if (cur.state != HF_DEP_DRAINING && cur.state != HF_DEP_ROLLING_BACK) {
            return refuse(d, &cur, "finish", "draining or rolling_back");
        }
        return deploy__finish(st, actor, &cur, "manual", last_tail(st, &cur), out, d);
    case DEPLOY_EXTEND:
        rc = extend(st, actor, &cur, args, &next, d);
        break;
    case DEPLOY_ROLLBACK:
        rc = rollback(st, actor, &cur, &next, d);
        break;
    case DEPLOY_ABORT:
        rc = abort_deployment(st, actor, &cur, &next, d);
        break;
    }
    if (rc == HF_OK) {
        *out = next;
    }
    return rc;
}

/* ======================================================================================== */
/* the exponential fit                                                                      */
/* ======================================================================================== */

void deploy_fit_tail(const hf_tail_sample *s, size_t n, int64_t origin_ms, double threshold,
                     deploy_fit *out)
{
    memset(out, 0, sizeof(*out));
    out->origin_ms = origin_ms;
    /* Least squares of ln(pct) on t (seconds since origin), over samples above zero. */
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].t < origin_ms || s[i].pct <= 0) {
            continue;
        }
        double x = (double)(s[i].t - origin_ms) / 1000.0;
        double y = log(s[i].pct);
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
        k++;
    }
    double den = (double)k * sxx - sx * sx;
    if (k < 3 || den <= 0) {
        return;
    }
    double b = ((double)k * sxy - sx * sy) / den;
    double a = (sy - b * sx) / (double)k;
    if (b > -1e-9) {
        return; /* not decaying (a flat tail gives no ETA, whatever the rounding) */
    }
    out->ok = true;
    out->a = a;
    out->rate_per_s = -b;
    out->half_life_s = log(2.0) / -b;
    double t_thr = (log(threshold) - a) / b;
    out->eta_ms = origin_ms + (int64_t)llround((t_thr > 0 ? t_thr : 0) * 1000);
}
