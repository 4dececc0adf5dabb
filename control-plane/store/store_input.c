/*
 * The whole configuration at one point in time (store.h, store_input_read): one read
 * transaction over groups, services, fleets, endpoints and running operations. Services are
 * shared with the previous input while their revision (maintained by triggers, migration 8) has
 * not moved, so a one-endpoint change re-reads one service, not the whole estate.
 */
#include "store_internal.h"

#include "xalloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

store_input_service *store_input_service_new(void)
{
    store_input_service *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    return s;
}

static void service_unref(store_input_service *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) {
        return;
    }
    free(s->fleets);
    free(s->endpoints);
    free(s);
}

void store_input_free(store_input *in)
{
    if (in == NULL) {
        return;
    }
    for (size_t i = 0; i < in->n_services; i++) {
        service_unref(in->services[i]);
    }
    free(in->services);
    free(in->groups);
    free(in);
}

/* The service with row id in prev, when its revision is rev (prev is sorted by name, not id:
 * the caller walks both lists by name). */
static store_input_service *reusable(const store_input *prev, size_t *cursor, int64_t id,
                                     uint64_t rev)
{
    if (prev == NULL) {
        return NULL;
    }
    /* Both lists are by name, so a matching service is at or after the cursor; a service whose
     * name changed (never: names are keys) or that was deleted is skipped over. */
    for (size_t i = *cursor; i < prev->n_services; i++) {
        store_input_service *p = prev->services[i];
        if (p->id == id) {
            *cursor = i + 1;
            return p->rev == rev ? p : NULL;
        }
    }
    return NULL;
}

/* Reads one service afresh (lock and transaction held). */
static int read_service(hf_store *st, int64_t id, uint64_t rev, store_input_service **out)
{
    store_input_service *s = store_input_service_new();
    s->id = id;
    s->rev = rev;
    store_stmt *q = store__stmt(st, ST_INPUT_SERVICE);
    sql_bind_int64(q, 1, id);
    int rc = sql_step(q);
    if (rc == SQL_ROW) {
        store__read_service(st, q, &s->svc);
        rc = HF_OK;
    } else {
        rc = store__db_fail(st, q, NULL);
    }
    sql_reset(q);
    if (rc == HF_OK) {
        q = store__stmt(st, ST_INPUT_FLEETS);
        sql_bind_int64(q, 1, id);
        rc = store__collect(st, q, sizeof(hf_fleet), store__read_fleet, (void **)&s->fleets,
                            &s->n_fleets);
    }
    if (rc == HF_OK) {
        q = store__stmt(st, ST_INPUT_ENDPOINTS);
        sql_bind_int64(q, 1, id);
        rc = store__collect(st, q, sizeof(hf_endpoint), store__read_endpoint,
                            (void **)&s->endpoints, &s->n_endpoints);
    }
    if (rc == HF_OK) {
        q = store__stmt(st, ST_INPUT_RUNNING);
        sql_bind_int64(q, 1, id);
        if (sql_step(q) == SQL_ROW) {
            store__col_text(q, 0, s->deployment, sizeof(s->deployment));
            store__col_text(q, 1, s->restart, sizeof(s->restart));
        }
        sql_reset(q);
    }
    if (rc != HF_OK) {
        service_unref(s);
        return rc;
    }
    *out = s;
    return HF_OK;
}

/* Reads the service list, sharing unchanged services with prev (lock and transaction held). */
static int read_services(hf_store *st, const store_input *prev, store_input *in)
{
    store_stmt *q = store__stmt(st, ST_INPUT_SERVICES);
    size_t cap = 0;
    size_t cursor = 0;
    int rc;
    while ((rc = sql_step(q)) == SQL_ROW) {
        int64_t id = sql_column_int64(q, 0);
        uint64_t rev = (uint64_t)sql_column_int64(q, 1);
        if (in->n_services == cap) {
            cap = cap ? 2 * cap : 64;
            in->services = xrealloc(in->services, cap * sizeof(*in->services));
        }
        store_input_service *s = reusable(prev, &cursor, id, rev);
        if (s != NULL) {
            atomic_fetch_add(&s->refs, 1);
            in->services[in->n_services++] = s;
        } else {
            in->services[in->n_services] = NULL;
            /* ST_INPUT_SERVICES stays mid-step: the per-service statements are others. */
            if (read_service(st, id, rev, &in->services[in->n_services]) != HF_OK) {
                sql_reset(q);
                return HF_EDB;
            }
            in->n_services++;
            in->n_reread++;
        }
    }
    int result = rc == SQL_DONE ? HF_OK : store__db_fail(st, q, NULL);
    sql_reset(q);
    return result;
}

int store_input_read(hf_store *st, const store_input *prev, store_input **out, hf_detail *d)
{
    store_input *in = xcalloc(1, sizeof(*in));
    pthread_mutex_lock(&st->lock);
    int rc = store__read_begin(st);
    if (rc == HF_OK) {
        in->generation = st->generation;
        rc = store__collect(st, store__stmt(st, ST_GROUP_LIST), sizeof(hf_proxy_group),
                            store__read_group, (void **)&in->groups, &in->n_groups);
        if (rc == HF_OK) {
            rc = read_services(st, prev, in);
        }
        store__read_end(st);
    }
    const char *err = rc == HF_OK ? NULL : store__errmsg(st);
    if (rc != HF_OK) {
        hf_fail(d, HF_EDB, "", "cannot read the configuration: %s", err);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc != HF_OK) {
        store_input_free(in);
        return HF_EDB;
    }
    *out = in;
    return HF_OK;
}

static int service_cmp(const void *key, const void *elem)
{
    return strcmp(key, (*(store_input_service *const *)elem)->svc.name);
}

const store_input_service *store_input_service_find(const store_input *in, const char *name)
{
    if (in->n_services == 0) {
        return NULL;
    }
    store_input_service *const *p =
        bsearch(name, in->services, in->n_services, sizeof(*in->services), service_cmp);
    return p != NULL ? *p : NULL;
}

struct endpoint_key {
    const char *address;
    uint32_t port;
};

static int endpoint_cmp(const void *key, const void *elem)
{
    const struct endpoint_key *k = key;
    const hf_endpoint *e = elem;
    int c = strcmp(k->address, e->address);
    if (c != 0) {
        return c;
    }
    return k->port < e->port ? -1 : k->port > e->port;
}

const hf_endpoint *store_input_endpoint(const store_input *in, const char *service,
                                        const char *address, uint32_t port)
{
    const store_input_service *s = store_input_service_find(in, service);
    if (s == NULL || s->n_endpoints == 0) {
        return NULL;
    }
    struct endpoint_key k = {address, port};
    return bsearch(&k, s->endpoints, s->n_endpoints, sizeof(*s->endpoints), endpoint_cmp);
}
