/*
 * Health from the health checkers: their verdicts per endpoint, and the quorum's decisions
 * (evict / restore) that change what proxies receive. Decisions are made by the xDS module;
 * here they are stored atomically with their audit events.
 */
#include "store_internal.h"

#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_endpoint_list_all(hf_store *st, hf_endpoint **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    int rc = store__collect(st, store__stmt(st, ST_ENDPOINT_ALL), sizeof(**out),
                            store__read_endpoint, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_health_targets(hf_store *st, hf_endpoint **out, size_t *n)
{
    static const char sql[] =
        "SELECT " ENDPOINT_COLS ", e.id FROM endpoints e JOIN fleets f ON f.id = e.fleet_id "
        "JOIN services s ON s.id = e.service_id WHERE e.admin_state != 'disabled' AND "
        "f.role != 'retired'";
    pthread_mutex_lock(&st->lock);
    store_stmt *s = NULL;
    int rc = HF_EDB;
    if (store__prepare(st, sql, &s, NULL) == HF_OK) {
        rc = store__collect(st, s, sizeof(**out), store__read_endpoint, (void **)out, n);
    }
    store__finalize(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* The row id and health of an endpoint; HF_ENOTFOUND when it is gone. Lock held. */
static int endpoint_key(hf_store *st, const char *service, const char *address, uint32_t port,
                        int64_t *id, enum hf_health *health)
{
    store_stmt *s = store__stmt(st, ST_ENDPOINT_KEY);
    sql_bind_text(s, 1, service);
    sql_bind_text(s, 2, address);
    sql_bind_int(s, 3, (int)port);
    int rc = HF_ENOTFOUND;
    if (sql_step(s) == SQL_ROW) {
        *id = sql_column_int64(s, 0);
        hf_health_parse(sql_column_text(s, 1), health);
        rc = HF_OK;
    }
    sql_reset(s);
    return rc;
}

static int apply_change(hf_store *st, const hf_health_change *c, int64_t now, bool *changed,
                        hf_detail *d)
{
    int64_t id;
    enum hf_health cur;
    if (endpoint_key(st, c->service, c->address, c->port, &id, &cur) != HF_OK || cur == c->health) {
        return HF_OK; /* gone, or already so */
    }
    store_stmt *s = store__stmt(st, ST_ENDPOINT_SET_HEALTH);
    sql_bind_int64(s, 1, id);
    sql_bind_text(s, 2, hf_health_name(c->health));
    sql_bind_int64(s, 3, now);
    int rc = store__exec(st, s, d);
    if (rc != HF_OK) {
        return rc;
    }
    *changed = true;
    char object[160];
    hf_endpoint tmp = {.port = c->port};
    snprintf(tmp.address, sizeof(tmp.address), "%s", c->address);
    char key[HF_ENDPOINT_ID_MAX];
    hf_endpoint_id(&tmp, key, sizeof(key));
    snprintf(object, sizeof(object), "services/%s/endpoints/%s", c->service, key);
    bool evict = c->health == HF_HEALTH_UNHEALTHY;
    return store__event(st, "health", evict ? "endpoint.evict" : "endpoint.restore", object, d,
                        "%s %s of %s: %s", evict ? "evicted" : "restored", key, c->service,
                        c->reason);
}

int store_health_apply(hf_store *st, const hf_verdict *v, size_t nv, const hf_health_change *c,
                       size_t nc, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    for (size_t i = 0; rc == HF_OK && i < nv; i++) {
        int64_t id;
        enum hf_health cur;
        if (v[i].verdict == HF_HEALTH_UNKNOWN ||
            endpoint_key(st, v[i].service, v[i].address, v[i].port, &id, &cur) != HF_OK) {
            continue;
        }
        store_stmt *s = store__stmt(st, ST_VERDICT_UPSERT);
        sql_bind_int64(s, 1, id);
        sql_bind_text(s, 2, v[i].checker);
        sql_bind_text(s, 3, hf_health_name(v[i].verdict));
        sql_bind_int64(s, 4, v[i].at);
        sql_bind_text(s, 5, v[i].reason);
        rc = store__exec(st, s, d);
    }
    bool changed = false;
    for (size_t i = 0; rc == HF_OK && i < nc; i++) {
        rc = apply_change(st, &c[i], now, &changed, d);
    }
    return changed ? store__end(st, rc, d) : store__end_quiet(st, rc, d);
}

static void read_verdict(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_verdict *v = elem;
    store__col_text(s, 0, v->service, sizeof(v->service));
    store__col_text(s, 1, v->address, sizeof(v->address));
    v->port = (uint32_t)sql_column_int(s, 2);
    store__col_text(s, 3, v->checker, sizeof(v->checker));
    hf_health_parse(sql_column_text(s, 4), &v->verdict);
    v->at = sql_column_int64(s, 5);
    store__col_text(s, 6, v->reason, sizeof(v->reason));
}

int store_verdict_list(hf_store *st, hf_verdict **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    int rc = store__collect(st, store__stmt(st, ST_VERDICT_LIST), sizeof(**out), read_verdict,
                            (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}
