/*
 * Rolling restarts: their rows, batches, and the endpoints' admin-state changes each step makes,
 * stored atomically with the step's audit event. The rules are in control-plane/deploy.
 */
#include "store_internal.h"

#include "buf.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void read_restart(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_restart *r = elem;
    store__col_text(s, 0, r->id, sizeof(r->id));
    store__col_text(s, 1, r->service, sizeof(r->service));
    store__col_text(s, 2, r->fleet, sizeof(r->fleet));
    hf_restart_state_parse(sql_column_text(s, 3), &r->state);
    uint32_t *u[] = {&r->batch_size,     &r->batches,   &r->interval_s,
                     &r->drain_window_s, &r->restart_s, &r->concurrent_batches};
    for (int i = 0; i < 6; i++) {
        *u[i] = (uint32_t)sql_column_int64(s, 4 + i);
    }
    store__col_text(s, 10, r->webhook_url, sizeof(r->webhook_url));
    r->created_at = sql_column_int64(s, 11);
    r->updated_at = sql_column_int64(s, 12);
    r->finished_at = sql_column_int64(s, 13);
}

static void read_batch(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_restart_batch *b = elem;
    b->n = (uint32_t)sql_column_int(s, 0);
    hf_batch_state_parse(sql_column_text(s, 1), &b->state);
    char list[HF_BATCH_MAX_ENDPOINTS * HF_ENDPOINT_ID_MAX];
    store__col_text(s, 2, list, sizeof(list));
    char *save = NULL;
    for (char *tok = strtok_r(list, " ", &save); tok && b->n_endpoints < HF_BATCH_MAX_ENDPOINTS;
         tok = strtok_r(NULL, " ", &save)) {
        snprintf(b->endpoints[b->n_endpoints++], HF_ENDPOINT_ID_MAX, "%s", tok);
    }
    b->started_at = sql_column_int64(s, 3);
    b->ready_at = sql_column_int64(s, 4);
    b->restarted_at = sql_column_int64(s, 5);
    b->done_at = sql_column_int64(s, 6);
    b->webhook_attempts = (uint32_t)sql_column_int(s, 7);
    b->webhook_ok = sql_column_int(s, 8) != 0;
    b->drained_early = sql_column_int(s, 9) != 0;
}

static int save_batches(hf_store *st, const char *id, const hf_restart_batch *b, size_t nb,
                        hf_detail *d)
{
    int rc = HF_OK;
    for (size_t i = 0; rc == HF_OK && i < nb; i++) {
        hf_buf list = {0};
        for (uint32_t k = 0; k < b[i].n_endpoints; k++) {
            hf_buf_printf(&list, "%s%s", k ? " " : "", b[i].endpoints[k]);
        }
        store_stmt *s = store__stmt(st, ST_BATCH_UPSERT);
        sql_bind_text(s, 1, id);
        sql_bind_int(s, 2, (int)b[i].n);
        sql_bind_text(s, 3, hf_batch_state_name(b[i].state));
        sql_bind_text(s, 4, list.data ? list.data : "");
        sql_bind_int64(s, 5, b[i].started_at);
        sql_bind_int64(s, 6, b[i].ready_at);
        sql_bind_int64(s, 7, b[i].restarted_at);
        sql_bind_int64(s, 8, b[i].done_at);
        sql_bind_int(s, 9, (int)b[i].webhook_attempts);
        sql_bind_int(s, 10, b[i].webhook_ok);
        sql_bind_int(s, 11, b[i].drained_early);
        rc = store__exec(st, s, d);
        hf_buf_destroy(&list);
    }
    return rc;
}

int store_restart_create(hf_store *st, const char *actor, hf_restart *r, const hf_restart_batch *b,
                         size_t nb, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t service_id = 0;
    rc = store__service_id(st, r->service, &service_id, d);
    if (rc == HF_OK) {
        rc = store__service_busy(st, service_id, r->service, d);
    }
    if (rc == HF_OK) {
        r->created_at = r->updated_at = hf_now_ms();
        store_stmt *s = store__stmt(st, ST_RESTART_INSERT);
        sql_bind_text(s, 1, r->id);
        sql_bind_int64(s, 2, service_id);
        sql_bind_text(s, 3, r->fleet);
        sql_bind_text(s, 4, hf_restart_state_name(r->state));
        const uint32_t u[] = {r->batch_size,     r->batches,   r->interval_s,
                              r->drain_window_s, r->restart_s, r->concurrent_batches};
        for (int i = 0; i < 6; i++) {
            sql_bind_int64(s, 5 + i, u[i]);
        }
        sql_bind_text(s, 11, r->webhook_url);
        sql_bind_int64(s, 12, r->created_at);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        rc = save_batches(st, r->id, b, nb, d);
    }
    if (rc == HF_OK) {
        char object[64];
        snprintf(object, sizeof(object), "restarts/%s", r->id);
        rc = store__event(st, actor, "restart.start", object, d,
                          "started rolling restart %s of %s/%s: %u batches of %u, one every %u s",
                          r->id, r->service, r->fleet, r->batches, r->batch_size, r->interval_s);
    }
    return store__end(st, rc, d);
}

int store_restart_get(hf_store *st, const char *id, hf_restart *out, hf_restart_batch **b,
                      size_t *nb, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_RESTART_GET);
    sql_bind_text(s, 1, id);
    sql_bind_int(s, 2, 0);
    int rc = sql_step(s) == SQL_ROW ? HF_OK : HF_ENOTFOUND;
    if (rc == HF_OK) {
        memset(out, 0, sizeof(*out));
        read_restart(st, s, out);
    }
    sql_reset(s);
    if (rc == HF_OK) {
        s = store__stmt(st, ST_BATCH_LIST);
        sql_bind_text(s, 1, id);
        rc = store__collect(st, s, sizeof(**b), read_batch, (void **)b, nb);
    } else {
        hf_fail(d, rc, "", "restart '%s' does not exist", id);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_restart_list(hf_store *st, bool running_only, hf_restart **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_RESTART_GET);
    sql_bind_int(s, 2, running_only);
    int rc = store__collect(st, s, sizeof(**out), read_restart, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_restart_save(hf_store *st, const char *actor, const hf_restart *r,
                       const hf_restart_batch *b, size_t nb, const hf_restart_batch *endpoints,
                       enum hf_admin_state admin, const char *action, const char *summary,
                       hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    store_stmt *s = store__stmt(st, ST_RESTART_UPDATE);
    sql_bind_text(s, 1, r->id);
    sql_bind_text(s, 2, hf_restart_state_name(r->state));
    sql_bind_int64(s, 3, now);
    sql_bind_int64(s, 4, r->finished_at);
    rc = store__exec(st, s, d);
    if (rc == HF_OK) {
        rc = save_batches(st, r->id, b, nb, d);
    }
    for (uint32_t i = 0; rc == HF_OK && endpoints && i < endpoints->n_endpoints; i++) {
        s = store__stmt(st, ST_ENDPOINT_SET_ADMIN);
        sql_bind_text(s, 1, r->service);
        sql_bind_text(s, 2, r->fleet);
        sql_bind_text(s, 3, endpoints->endpoints[i]);
        sql_bind_text(s, 4, hf_admin_state_name(admin));
        sql_bind_int64(s, 5, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK && action != NULL) {
        char object[64];
        snprintf(object, sizeof(object), "restarts/%s", r->id);
        rc = store__event(st, actor, action, object, d, "%s", summary);
    }
    return endpoints ? store__end(st, rc, d) : store__end_quiet(st, rc, d);
}
