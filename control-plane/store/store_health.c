/*
 * Health from the health checkers: their verdicts per endpoint, and the quorum's decisions
 * (evict / restore) that change what proxies receive. Decisions are made by the xDS module;
 * here they are stored atomically with their audit events.
 */
#include "store_internal.h"

#include "timeutil.h"
#include "xalloc.h"

#include <stdatomic.h>
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

/* ---- health checking across replicas ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The bytes d[0..n) as base64 text (heap). Specifiers travel as text: the store's statements
 * bind text, integers and doubles only. */
static char *to_base64(const uint8_t *d, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        v |= i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0;
        v |= i + 2 < n ? d[i + 2] : 0;
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Decodes base64 text (heap bytes); HF_EDB when it is not base64. */
static int from_base64(const char *s, uint8_t **out, size_t *len)
{
    size_t n = strlen(s);
    if (n % 4 != 0) {
        return HF_EDB;
    }
    uint8_t *d = xmalloc(n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char *p = s[i + j] == '=' ? NULL : strchr(b64, s[i + j]);
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                pad++;
            } else if (p == NULL || s[i + j] == '\0' || pad > 0) {
                free(d);
                return HF_EDB;
            }
            v = (v << 6) | (p ? (uint32_t)(p - b64) : 0);
        }
        d[o++] = (uint8_t)(v >> 16);
        if (pad < 2) {
            d[o++] = (uint8_t)(v >> 8);
        }
        if (pad < 1) {
            d[o++] = (uint8_t)v;
        }
    }
    *out = d;
    *len = o;
    return HF_OK;
}

int store_checkers_set(hf_store *st, const store_checker *c, size_t n, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_CHECKER_CLEAR);
    sql_bind_text(s, 1, st->replica_id);
    rc = store__exec(st, s, d);
    for (size_t i = 0; rc == HF_OK && i < n && i < 1024; i++) {
        s = store__stmt(st, ST_CHECKER_UPSERT);
        sql_bind_text(s, 1, c[i].node_id);
        sql_bind_text(s, 2, c[i].zone);
        sql_bind_text(s, 3, st->replica_id);
        sql_bind_int64(s, 4, c[i].connected_at);
        rc = store__exec(st, s, d);
    }
    return store__end_health(st, rc, STORE_HEALTH_CHECKERS, d);
}

static void read_checker(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    store_checker *c = elem;
    store__col_text(s, 0, c->node_id, sizeof(c->node_id));
    store__col_text(s, 1, c->zone, sizeof(c->zone));
    store__col_text(s, 2, c->replica, sizeof(c->replica));
    c->connected_at = sql_column_int64(s, 3);
    c->endpoints = (size_t)sql_column_int64(s, 4);
    c->spec_at = sql_column_int64(s, 5);
}

int store_checker_list(hf_store *st, store_checker **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_CHECKER_LIST);
    sql_bind_int64(s, 1, hf_now_ms() - STORE_LEASE_MS);
    int rc = store__collect(st, s, sizeof(**out), read_checker, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_verdict_push(hf_store *st, const hf_verdict *v, size_t n, hf_detail *d)
{
    if (n == 0) {
        return HF_OK;
    }
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    for (size_t i = 0; rc == HF_OK && i < n; i++) {
        store_stmt *s = store__stmt(st, ST_VQ_INSERT);
        sql_bind_text(s, 1, v[i].service);
        sql_bind_text(s, 2, v[i].address);
        sql_bind_int(s, 3, (int)v[i].port);
        sql_bind_text(s, 4, v[i].checker);
        sql_bind_text(s, 5, hf_health_name(v[i].verdict));
        sql_bind_text(s, 6, v[i].reason);
        sql_bind_int64(s, 7, v[i].at);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        rc = store__exec(st, store__stmt(st, ST_VQ_TRIM), d);
    }
    return store__end_health(st, rc, STORE_HEALTH_VERDICTS, d);
}

struct queued {
    int64_t id;
    hf_verdict v;
};

static void read_queued(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    struct queued *q = elem;
    q->id = sql_column_int64(s, 0);
    store__col_text(s, 1, q->v.service, sizeof(q->v.service));
    store__col_text(s, 2, q->v.address, sizeof(q->v.address));
    q->v.port = (uint32_t)sql_column_int(s, 3);
    store__col_text(s, 4, q->v.checker, sizeof(q->v.checker));
    hf_health_parse(sql_column_text(s, 5), &q->v.verdict);
    store__col_text(s, 6, q->v.reason, sizeof(q->v.reason));
    q->v.at = sql_column_int64(s, 7);
}

int store_verdict_take(hf_store *st, hf_verdict **out, size_t *n, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    struct queued *q = NULL;
    size_t count = 0;
    rc = store__collect(st, store__stmt(st, ST_VQ_READ), sizeof(*q), read_queued, (void **)&q,
                        &count);
    if (rc == HF_OK && count > 0) {
        store_stmt *s = store__stmt(st, ST_VQ_CLEAR);
        sql_bind_int64(s, 1, q[count - 1].id);
        rc = store__exec(st, s, d);
    }
    rc = store__end_quiet(st, rc, d);
    hf_verdict *v = xcalloc(count + 1, sizeof(*v));
    for (size_t i = 0; rc == HF_OK && i < count; i++) {
        v[i] = q[i].v;
    }
    free(q);
    if (rc != HF_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return HF_OK;
}

int store_specifiers_put(hf_store *st, const store_specifier *sp, size_t n, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    /* Its revision: microseconds of the wall clock, kept unique by this process's counter (a
     * replica tells a new specifier by it). */
    static _Atomic int64_t last_rev;
    int64_t now = hf_now_ms() * 1000;
    int64_t prev = atomic_load(&last_rev);
    while (!atomic_compare_exchange_weak(&last_rev, &prev, now > prev ? now : prev + 1)) {
    }
    now = now > prev ? now : prev + 1;
    for (size_t i = 0; rc == HF_OK && i < n; i++) {
        char *text = to_base64(sp[i].data, sp[i].len);
        store_stmt *s = store__stmt(st, ST_SPEC_UPSERT);
        sql_bind_text(s, 1, sp[i].checker);
        sql_bind_text(s, 2, text);
        sql_bind_int64(s, 3, (int64_t)sp[i].endpoints);
        sql_bind_int64(s, 4, now);
        rc = store__exec(st, s, d);
        free(text);
    }
    if (rc == HF_OK) {
        rc = store__exec(st, store__stmt(st, ST_SPEC_PRUNE), d);
    }
    return store__end_health(st, rc, STORE_HEALTH_SPECIFIERS, d);
}

int store_specifier_get(hf_store *st, const char *checker, uint8_t **data, size_t *len,
                        size_t *endpoints)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_SPEC_GET);
    sql_bind_text(s, 1, checker);
    int rc = sql_step(s);
    if (rc == SQL_ROW) {
        const char *t = sql_column_text(s, 0);
        *endpoints = (size_t)sql_column_int64(s, 1);
        rc = from_base64(t ? t : "", data, len);
    } else {
        rc = rc == SQL_DONE ? HF_ENOTFOUND : HF_EDB;
    }
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}
