/*
 * Blue-green deployments and their affinity-tail samples. The rules (what may follow what, the
 * timestamps) are the deploy module's; here each transition is applied atomically: the state
 * precondition, the deployment row, the fleets' roles, the service's TTL in force and the audit
 * event commit together or not at all.
 */
#include "store_internal.h"

#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void read_deployment(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_deployment *d = elem;
    store__col_text(s, 0, d->id, sizeof(d->id));
    store__col_text(s, 1, d->service, sizeof(d->service));
    store__col_text(s, 2, d->from_fleet, sizeof(d->from_fleet));
    store__col_text(s, 3, d->to_fleet, sizeof(d->to_fleet));
    hf_deploy_state_parse(sql_column_text(s, 4), &d->state);
    d->normal_ttl_s = (uint32_t)sql_column_int64(s, 5);
    d->lowered_ttl_s = (uint32_t)sql_column_int64(s, 6);
    d->lead_s = (uint32_t)sql_column_int64(s, 7);
    d->tail_threshold_pct = sql_column_double(s, 8);
    d->deadline_factor = sql_column_double(s, 9);
    d->format_change = sql_column_int(s, 10) != 0;
    d->format_acknowledged = sql_column_int(s, 11) != 0;
    store__col_text(s, 12, d->warnings, sizeof(d->warnings));
    int64_t *times[] = {&d->created_at,         &d->updated_at, &d->ttl_lowered_at,
                        &d->cutover_unlocks_at, &d->cutover_at, &d->min_finish_at,
                        &d->deadline_at,        &d->finished_at};
    for (int i = 0; i < 8; i++) {
        *times[i] = sql_column_int64(s, 13 + i);
    }
    store__col_text(s, 21, d->finish_reason, sizeof(d->finish_reason));
    d->final_tail_pct = sql_column_double(s, 22);
}

/* Binds every column of ST_DEPLOY_INSERT / ST_DEPLOY_UPDATE (same numbering). */
static void bind_deployment(store_stmt *s, const hf_deployment *d, int64_t service_id)
{
    sql_bind_text(s, 1, d->id);
    sql_bind_int64(s, 2, service_id);
    sql_bind_text(s, 3, d->from_fleet);
    sql_bind_text(s, 4, d->to_fleet);
    sql_bind_text(s, 5, hf_deploy_state_name(d->state));
    sql_bind_int64(s, 6, d->normal_ttl_s);
    sql_bind_int64(s, 7, d->lowered_ttl_s);
    sql_bind_int64(s, 8, d->lead_s);
    sql_bind_double(s, 9, d->tail_threshold_pct);
    sql_bind_double(s, 10, d->deadline_factor);
    sql_bind_int(s, 11, d->format_change);
    sql_bind_int(s, 12, d->format_acknowledged);
    sql_bind_text(s, 13, d->warnings);
    const int64_t times[] = {d->created_at,         d->updated_at, d->ttl_lowered_at,
                             d->cutover_unlocks_at, d->cutover_at, d->min_finish_at,
                             d->deadline_at,        d->finished_at};
    for (int i = 0; i < 8; i++) {
        sql_bind_int64(s, 14 + i, times[i]);
    }
    sql_bind_text(s, 22, d->finish_reason);
    sql_bind_double(s, 23, d->final_tail_pct);
}

int store__running_deployment(hf_store *st, int64_t service_id, char *id, char *from, char *to)
{
    store_stmt *s = store__stmt(st, ST_DEPLOY_RUNNING);
    sql_bind_int64(s, 1, service_id);
    int rc = HF_ENOTFOUND;
    if (sql_step(s) == SQL_ROW) {
        store__col_text(s, 0, id, HF_NAME_MAX);
        store__col_text(s, 1, from, HF_NAME_MAX);
        store__col_text(s, 2, to, HF_NAME_MAX);
        rc = HF_OK;
    }
    sql_reset(s);
    return rc;
}

int store__service_busy(hf_store *st, int64_t service_id, const char *service, hf_detail *d)
{
    char id[HF_NAME_MAX], from[HF_NAME_MAX], to[HF_NAME_MAX];
    if (store__running_deployment(st, service_id, id, from, to) == HF_OK) {
        return hf_fail(d, HF_ECONFLICT, "service",
                       "service '%s' has a running blue-green deployment (%s); finish, roll back "
                       "or abort it first",
                       service, id);
    }
    store_stmt *s = store__stmt(st, ST_RESTART_RUNNING);
    sql_bind_int64(s, 1, service_id);
    int rc = HF_OK;
    if (sql_step(s) == SQL_ROW) {
        rc = hf_fail(d, HF_ECONFLICT, "service",
                     "service '%s' has a running rolling restart (%s); let it complete or abort it "
                     "first",
                     service, sql_column_text(s, 0));
    }
    sql_reset(s);
    return rc;
}

int store_service_busy(hf_store *st, const char *service, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    int64_t service_id = 0;
    int rc = store__service_id(st, service, &service_id, d);
    if (rc == HF_OK) {
        rc = store__service_busy(st, service_id, service, d);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_deployment_create(hf_store *st, const char *actor, hf_deployment *dep, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t service_id = 0;
    rc = store__service_id(st, dep->service, &service_id, d);
    if (rc == HF_OK) {
        rc = store__service_busy(st, service_id, dep->service, d);
    }
    if (rc == HF_OK) {
        dep->created_at = dep->updated_at = hf_now_ms();
        store_stmt *s = store__stmt(st, ST_DEPLOY_INSERT);
        bind_deployment(s, dep, service_id);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[64];
        snprintf(object, sizeof(object), "deployments/%s", dep->id);
        rc = store__event(st, actor, "deployment.plan", object, d,
                          "planned %s of %s: %s -> %s (TTL %u s lowered to %u s, lead %u s)%s",
                          dep->id, dep->service, dep->from_fleet, dep->to_fleet, dep->normal_ttl_s,
                          dep->lowered_ttl_s, dep->lead_s,
                          dep->format_change ? "; session format changes" : "");
    }
    return store__end(st, rc, d);
}

int store_deployment_get(hf_store *st, const char *id, hf_deployment *out, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_DEPLOY_GET);
    sql_bind_text(s, 1, id);
    int rc = sql_step(s);
    if (rc == SQL_ROW) {
        memset(out, 0, sizeof(*out));
        read_deployment(st, s, out);
        rc = HF_OK;
    } else {
        rc = rc == SQL_DONE ? hf_fail(d, HF_ENOTFOUND, "", "deployment '%s' does not exist", id)
                            : store__db_fail(st, s, d);
    }
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_deployment_list(hf_store *st, const char *service, bool running_only, hf_deployment **out,
                          size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_DEPLOY_LIST);
    if (service != NULL) {
        sql_bind_text(s, 1, service);
    }
    sql_bind_int(s, 2, running_only);
    int rc = store__collect(st, s, sizeof(**out), read_deployment, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Checks the precondition of c; lock held, inside the transaction. */
static int check_state(hf_store *st, const store_deploy_change *c, int64_t *service_id,
                       hf_detail *d)
{
    store_stmt *s = store__stmt(st, ST_DEPLOY_GET);
    sql_bind_text(s, 1, c->next->id);
    hf_deployment cur;
    int rc = sql_step(s);
    if (rc != SQL_ROW) {
        sql_reset(s);
        return hf_fail(d, HF_ENOTFOUND, "", "deployment '%s' does not exist", c->next->id);
    }
    memset(&cur, 0, sizeof(cur));
    read_deployment(st, s, &cur);
    sql_reset(s);
    if (cur.state != c->expect) {
        return hf_fail(d, HF_ECONFLICT, "", "deployment %s is %s, not %s", cur.id,
                       hf_deploy_state_name(cur.state), hf_deploy_state_name(c->expect));
    }
    return store__service_id(st, cur.service, service_id, d);
}

int store_deployment_change(hf_store *st, const char *actor, const store_deploy_change *c,
                            hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t service_id = 0;
    rc = check_state(st, c, &service_id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_DEPLOY_UPDATE);
        bind_deployment(s, c->next, service_id);
        rc = store__exec(st, s, d);
    }
    for (size_t i = 0; rc == HF_OK && i < c->n_roles; i++) {
        store_stmt *s = store__stmt(st, ST_FLEET_SET_ROLE);
        sql_bind_int64(s, 1, service_id);
        sql_bind_text(s, 2, c->roles[i].fleet);
        sql_bind_text(s, 3, hf_fleet_role_name(c->roles[i].role));
        sql_bind_int64(s, 4, now);
        rc = store__exec(st, s, d);
        if (rc == HF_OK && sql_changes(st) != 1) {
            rc = hf_fail(d, HF_ECONFLICT, "", "fleet '%s' no longer exists", c->roles[i].fleet);
        }
    }
    if (rc == HF_OK && c->ttl_in_force_s >= 0) {
        store_stmt *s = store__stmt(st, ST_SERVICE_SET_TTL);
        sql_bind_int64(s, 1, service_id);
        sql_bind_int64(s, 2, c->ttl_in_force_s);
        sql_bind_int64(s, 3, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[64];
        snprintf(object, sizeof(object), "deployments/%s", c->next->id);
        rc = store__event(st, actor, c->action, object, d, "%s", c->summary);
    }
    return store__end(st, rc, d);
}

int store_tail_add(hf_store *st, const char *id, const hf_tail_sample *t, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_TAIL_INSERT);
    sql_bind_text(s, 1, id);
    sql_bind_int64(s, 2, t->t);
    sql_bind_double(s, 3, t->pct);
    sql_bind_int64(s, 4, t->old_requests);
    sql_bind_int64(s, 5, t->total_requests);
    sql_bind_int(s, 6, t->reporters);
    sql_bind_int(s, 7, t->connected_proxies);
    rc = store__exec(st, s, d);
    return store__end_quiet(st, rc, d);
}

static void read_sample(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_tail_sample *t = elem;
    t->t = sql_column_int64(s, 0);
    t->pct = sql_column_double(s, 1);
    t->old_requests = sql_column_int64(s, 2);
    t->total_requests = sql_column_int64(s, 3);
    t->reporters = sql_column_int(s, 4);
    t->connected_proxies = sql_column_int(s, 5);
}

int store_tail_list(hf_store *st, const char *id, hf_tail_sample **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_TAIL_LIST);
    sql_bind_text(s, 1, id);
    int rc = store__collect(st, s, sizeof(**out), read_sample, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}
