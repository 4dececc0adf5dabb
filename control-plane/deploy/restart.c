/* Rolling-restart execution; see restart.h. */
#include "restart.h"

#include "log.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define WEBHOOK_ATTEMPTS 6

/* ---- starting ---- */

int restart_start(hf_store *st, const char *actor, const char *service, const char *fleet,
                  const restart_plan_input *in_, const char *webhook_url, hf_restart *out,
                  hf_detail *d)
{
    char why[160];
    if (webhook_url[0] && webhook_url_check(webhook_url, why, sizeof(why)) != 0) {
        return hf_fail(d, HF_EINVAL, "webhook_url", "%s", why);
    }
    hf_service svc;
    hf_endpoint *eps;
    size_t n;
    int rc = store_service_get(st, service, &svc, d);
    if (rc == HF_OK) {
        rc = store_service_busy(st, service, d); /* 409 before a plan of a fleet in flux */
    }
    if (rc == HF_OK) {
        rc = store_endpoint_list(st, service, fleet, &eps, &n, d);
    }
    if (rc != HF_OK) {
        return rc;
    }
    restart_plan_input in = *in_;
    in.endpoints = 0;
    for (size_t i = 0; i < n; i++) {
        in.endpoints += eps[i].admin_state == HF_ADMIN_ACTIVE;
    }
    in.max_connection_age_s = svc.connection.max_connection_age_s;
    in.drain_timeout_s = svc.connection.drain_timeout_s;
    restart_plan p;
    rc = restart_plan_compute(&in, &p, d);
    if (rc == HF_OK && p.batch_size > HF_BATCH_MAX_ENDPOINTS) {
        rc = hf_fail(d, HF_EINVAL, "max_disconnect_pct",
                     "batches of more than %d endpoints are "
                     "not supported",
                     HF_BATCH_MAX_ENDPOINTS);
    }
    if (rc != HF_OK) {
        free(eps);
        return rc;
    }
    hf_restart r = {.state = HF_RS_RUNNING,
                    .batch_size = p.batch_size,
                    .batches = p.batches,
                    .interval_s = p.interval_s,
                    .drain_window_s = p.drain_window_s,
                    .restart_s = in.restart_s ? in.restart_s : 60,
                    .concurrent_batches = p.concurrent_batches};
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        rnd = hf_mono_ns();
    }
    snprintf(r.id, sizeof(r.id), "r-%016llx", (unsigned long long)rnd);
    snprintf(r.service, sizeof(r.service), "%s", service);
    snprintf(r.fleet, sizeof(r.fleet), "%s", fleet);
    snprintf(r.webhook_url, sizeof(r.webhook_url), "%s", webhook_url);
    hf_restart_batch *b = xcalloc(p.batches + 1, sizeof(*b));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (eps[i].admin_state != HF_ADMIN_ACTIVE) {
            continue; /* draining or disabled endpoints are left alone */
        }
        hf_restart_batch *bb = &b[k / p.batch_size];
        bb->n = (uint32_t)(k / p.batch_size) + 1;
        hf_endpoint_id(&eps[i], bb->endpoints[bb->n_endpoints++], HF_ENDPOINT_ID_MAX);
        k++;
    }
    free(eps);
    rc = store_restart_create(st, actor, &r, b, p.batches, d);
    free(b);
    if (rc == HF_OK) {
        *out = r;
    }
    return rc;
}

/* ---- operator actions ---- */

int restart_action_parse(const char *name, enum restart_action *out)
{
    static const char *const names[] = {"pause", "resume", "abort"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum restart_action)i;
            return 0;
        }
    }
    return -1;
}

/* Puts every endpoint of the restart back to active, batch by batch (abort). */
static int restore_all(hf_store *st, const char *actor, hf_restart *r, hf_restart_batch *b,
                       size_t nb, hf_detail *d)
{
    int rc = HF_OK;
    for (size_t i = 0; rc == HF_OK && i < nb; i++) {
        if (b[i].state != HF_BATCH_PENDING && b[i].state != HF_BATCH_DONE) {
            rc = store_restart_save(st, actor, r, b, nb, &b[i], HF_ADMIN_ACTIVE, NULL, NULL, d);
        }
    }
    return rc;
}

int restart_act(hf_store *st, const char *actor, const char *id, enum restart_action a,
                hf_detail *d)
{
    hf_restart r;
    hf_restart_batch *b;
    size_t nb;
    int rc = store_restart_get(st, id, &r, &b, &nb, d);
    if (rc != HF_OK) {
        return rc;
    }
    char summary[256];
    const char *action;
    if (a == RESTART_PAUSE && r.state == HF_RS_RUNNING) {
        r.state = HF_RS_PAUSED;
        action = "restart.pause";
    } else if (a == RESTART_RESUME && r.state == HF_RS_PAUSED) {
        r.state = HF_RS_RUNNING;
        action = "restart.resume";
    } else if (a == RESTART_ABORT && (r.state == HF_RS_RUNNING || r.state == HF_RS_PAUSED)) {
        r.state = HF_RS_ABORTED;
        r.finished_at = hf_now_ms();
        action = "restart.abort";
        rc = restore_all(st, actor, &r, b, nb, d);
    } else {
        free(b);
        return hf_fail(d, HF_ECONFLICT, "", "restart %s is %s: cannot %s it", id,
                       hf_restart_state_name(r.state),
                       a == RESTART_PAUSE    ? "pause"
                       : a == RESTART_RESUME ? "resume"
                                             : "abort");
    }
    snprintf(summary, sizeof(summary), "restart %s of %s/%s: %s", r.id, r.service, r.fleet,
             action + 8);
    if (rc == HF_OK) {
        rc = store_restart_save(st, actor, &r, b, nb, NULL, HF_ADMIN_ACTIVE, action, summary, d);
    }
    free(b);
    return rc;
}

int restart_batch_restarted(hf_store *st, const char *actor, const char *id, uint32_t n,
                            hf_detail *d)
{
    hf_restart r;
    hf_restart_batch *b;
    size_t nb;
    int rc = store_restart_get(st, id, &r, &b, &nb, d);
    if (rc != HF_OK) {
        return rc;
    }
    if (n < 1 || n > nb) {
        rc = hf_fail(d, HF_ENOTFOUND, "", "restart %s has no batch %u", id, n);
    } else if (b[n - 1].state != HF_BATCH_READY) {
        rc = hf_fail(d, HF_ECONFLICT, "", "batch %u of %s is %s, not ready", n, id,
                     hf_batch_state_name(b[n - 1].state));
    } else {
        b[n - 1].state = HF_BATCH_RESTARTING;
        b[n - 1].restarted_at = hf_now_ms();
        char summary[160];
        snprintf(summary, sizeof(summary), "batch %u of %s restarted (orchestrator)", n, id);
        rc = store_restart_save(st, actor, &r, b, nb, NULL, HF_ADMIN_ACTIVE,
                                "restart.batch_restarted", summary, d);
    }
    free(b);
    return rc;
}

/* ---- the engine's step ---- */

/* 1 when every endpoint of the batch is healthy again (or, unchecked, restart_s has passed). */
static bool batch_healthy(hf_store *st, const hf_restart *r, const hf_service *svc,
                          const hf_restart_batch *b, int64_t now)
{
    int64_t settle = (int64_t)svc->health_check.interval_ms * svc->health_check.healthy_threshold;
    for (uint32_t i = 0; i < b->n_endpoints; i++) {
        char addr[HF_ADDR_MAX];
        uint32_t port;
        if (hf_endpoint_id_parse(b->endpoints[i], addr, sizeof(addr), &port) != HF_OK) {
            continue;
        }
        hf_endpoint e;
        if (store_endpoint_get(st, r->service, r->fleet, addr, port, &e, NULL) != HF_OK) {
            continue; /* removed meanwhile */
        }
        if (e.health == HF_HEALTH_UNKNOWN) {
            if (now < b->restarted_at + (int64_t)r->restart_s * 1000) {
                return false; /* no checker: give it the expected restart time */
            }
        } else if (e.health != HF_HEALTH_HEALTHY || now < b->restarted_at + settle) {
            return false; /* checkers must have seen it healthy since the restart */
        }
    }
    return true;
}

/* True when the checkers saw every endpoint fail and come back after it was ready. */
static bool came_back(hf_store *st, const hf_restart *r, const hf_restart_batch *b)
{
    for (uint32_t i = 0; i < b->n_endpoints; i++) {
        char addr[HF_ADDR_MAX];
        uint32_t port;
        hf_endpoint e;
        if (hf_endpoint_id_parse(b->endpoints[i], addr, sizeof(addr), &port) != HF_OK ||
            store_endpoint_get(st, r->service, r->fleet, addr, port, &e, NULL) != HF_OK ||
            e.health != HF_HEALTH_HEALTHY || e.health_changed_at <= b->ready_at) {
            return false;
        }
    }
    return b->n_endpoints > 0;
}

/* Queues the next webhook call of a ready batch (the worker thread makes it). */
static void notify_ready(webhooks *w, hf_restart *r, hf_restart_batch *b)
{
    if (!r->webhook_url[0] || b->webhook_ok || b->webhook_attempts >= WEBHOOK_ATTEMPTS) {
        return;
    }
    char body[HF_BATCH_MAX_ENDPOINTS * (HF_ENDPOINT_ID_MAX + 4) + 512];
    int n = snprintf(body, sizeof(body),
                     "{\"restart\":\"%s\",\"service\":\"%s\",\"fleet\":\"%s\",\"batch\":%u,"
                     "\"restarted_url\":\"/api/v1/restarts/%s/batches/%u/restarted\","
                     "\"endpoints\":[",
                     r->id, r->service, r->fleet, b->n, r->id, b->n);
    for (uint32_t i = 0; i < b->n_endpoints && n > 0 && (size_t)n < sizeof(body); i++) {
        n +=
            snprintf(body + n, sizeof(body) - (size_t)n, "%s\"%s\"", i ? "," : "", b->endpoints[i]);
    }
    if (n > 0 && (size_t)n < sizeof(body) - 3) {
        snprintf(body + n, sizeof(body) - (size_t)n, "]}");
    }
    b->webhook_attempts++;
    char key[64];
    snprintf(key, sizeof(key), "%s/%u", r->id, b->n);
    webhooks_send(w, key, b->webhook_attempts, r->webhook_url, body);
}

/* In a ready batch: learns how the last webhook call went and retries a failed one (or one lost
 * with a restart of holdfast) with backoff, 1, 2, 4, 8... s after the batch became ready. True
 * when webhook_ok changed. */
static bool follow_webhook(webhooks *w, hf_restart *r, hf_restart_batch *b, int64_t now)
{
    if (!r->webhook_url[0] || b->webhook_ok || b->webhook_attempts == 0) {
        return false;
    }
    char key[64];
    snprintf(key, sizeof(key), "%s/%u", r->id, b->n);
    enum webhook_result res = webhooks_result(w, key, b->webhook_attempts);
    if (res == WEBHOOK_OK) {
        b->webhook_ok = true;
        return true;
    }
    if (res == WEBHOOK_FAILED) {
        hf_warn("restart", "webhook %s for batch %u of %s failed (attempt %u)", r->webhook_url,
                b->n, r->id, b->webhook_attempts);
    }
    if (res != WEBHOOK_PENDING && b->webhook_attempts < WEBHOOK_ATTEMPTS &&
        now >= b->ready_at + (1000LL << (b->webhook_attempts - 1))) {
        notify_ready(w, r, b);
    }
    return false;
}

/* Advances one batch; returns the event action when it changed, else NULL. */
static const char *step(hf_store *st, hf_restart *r, const hf_service *svc, hf_restart_batch *b,
                        int64_t now, int *active, int64_t *last_start, bool *first_pending,
                        enum hf_admin_state *admin, bool *set_admin, const restart_env *ic)
{
    *set_admin = false;
    switch (b->state) {
    case HF_BATCH_PENDING:
        if (!*first_pending) {
            return NULL;
        }
        *first_pending = false;
        if (*active >= (int)r->concurrent_batches ||
            (*last_start && now < *last_start + (int64_t)r->interval_s * 1000)) {
            return NULL;
        }
        b->state = HF_BATCH_DRAINING;
        b->started_at = *last_start = now;
        (*active)++;
        *admin = HF_ADMIN_DRAINING;
        *set_admin = true;
        return "restart.batch_draining";
    case HF_BATCH_DRAINING:
        if (now < b->started_at + (int64_t)r->drain_window_s * 1000) {
            int64_t since = b->started_at + ic->settle_ms;
            if (ic->fn == NULL || now < since || !ic->fn(ic->arg, r->service, b, since)) {
                return NULL;
            }
            b->drained_early = true; /* load reports: nothing in progress any more */
        }
        b->state = HF_BATCH_READY;
        b->ready_at = now;
        notify_ready(ic->hooks, r, b);
        return "restart.batch_ready";
    case HF_BATCH_READY: {
        uint32_t before = b->webhook_attempts;
        bool changed = follow_webhook(ic->hooks, r, b, now);
        if (came_back(st, r, b)) {
            b->state = HF_BATCH_RESTARTING;
            b->restarted_at = now;
            return "restart.batch_restarted";
        }
        return changed || before != b->webhook_attempts ? "restart.webhook" : NULL;
    }
    case HF_BATCH_RESTARTING:
        if (!batch_healthy(st, r, svc, b, now)) {
            return NULL;
        }
        b->state = HF_BATCH_DONE;
        b->done_at = now;
        (*active)--;
        *admin = HF_ADMIN_ACTIVE;
        *set_admin = true;
        return "restart.batch_done";
    case HF_BATCH_DONE:
        return NULL;
    }
    return NULL;
}

static void tick_one(hf_store *st, hf_restart *r, const restart_env *ic)
{
    hf_restart_batch *b;
    size_t nb;
    hf_service svc;
    if (store_restart_get(st, r->id, r, &b, &nb, NULL) != HF_OK) {
        return;
    }
    if (store_service_get(st, r->service, &svc, NULL) != HF_OK) {
        free(b);
        return;
    }
    int64_t now = hf_now_ms();
    int active = 0;
    int64_t last_start = 0;
    for (size_t i = 0; i < nb; i++) {
        active += b[i].state != HF_BATCH_PENDING && b[i].state != HF_BATCH_DONE;
        last_start = b[i].started_at > last_start ? b[i].started_at : last_start;
    }
    bool first_pending = true;
    size_t done = 0;
    for (size_t i = 0; i < nb; i++) {
        enum hf_admin_state admin = HF_ADMIN_ACTIVE;
        bool set_admin = false;
        const char *action = step(st, r, &svc, &b[i], now, &active, &last_start, &first_pending,
                                  &admin, &set_admin, ic);
        if (action != NULL) {
            char summary[256];
            snprintf(summary, sizeof(summary), "restart %s of %s/%s: batch %u %s", r->id,
                     r->service, r->fleet, b[i].n, action + 14);
            hf_detail d = {0};
            if (store_restart_save(st, "restart", r, b, nb, set_admin ? &b[i] : NULL, admin,
                                   strcmp(action, "restart.webhook") ? action : NULL, summary,
                                   &d) != HF_OK) {
                hf_warn("restart", "%s: %s", r->id, d.message);
            }
        }
        done += b[i].state == HF_BATCH_DONE;
    }
    if (done == nb) {
        r->state = HF_RS_COMPLETED;
        r->finished_at = now;
        char summary[256];
        snprintf(summary, sizeof(summary), "rolling restart %s of %s/%s completed", r->id,
                 r->service, r->fleet);
        store_restart_save(st, "restart", r, b, nb, NULL, HF_ADMIN_ACTIVE, "restart.complete",
                           summary, NULL);
    }
    free(b);
}

void restart_tick(hf_store *st, const restart_env *env)
{
    hf_restart *rs;
    size_t n;
    if (store_restart_list(st, true, &rs, &n) != HF_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (rs[i].state == HF_RS_RUNNING) {
            tick_one(st, &rs[i], env);
        }
    }
    free(rs);
}
