/*
 * Proxy groups, services, fleets and endpoints: their transactions and row mapping.
 * Each mutating function is one transaction with its audit event (see store__begin/end).
 */
#include "store_internal.h"

#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bind_text(store_stmt *s, int i, const char *v)
{
    sql_bind_text(s, i, v);
}

/* Runs a single-row query; HF_OK with the row current, HF_ENOTFOUND, or HF_EDB. The caller
 * resets s. */
static int step_row(hf_store *st, store_stmt *s)
{
    int rc = sql_step(s);
    if (rc == SQL_ROW) {
        return HF_OK;
    }
    return rc == SQL_DONE ? HF_ENOTFOUND : store__db_fail(st, s, NULL);
}

/* ======================================================================================== */
/* proxy groups                                                                             */
/* ======================================================================================== */

static void read_group(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_proxy_group *g = elem;
    store__col_text(s, 0, g->name, sizeof(g->name));
    g->listener_port = (uint32_t)sql_column_int(s, 1);
    g->created_at = sql_column_int64(s, 2);
    g->updated_at = sql_column_int64(s, 3);
}

/* Reads a group by name with the lock held; *id receives its row id. */
static int group_load(hf_store *st, const char *name, hf_proxy_group *g, int64_t *id, hf_detail *d)
{
    store_stmt *s = store__stmt(st, ST_GROUP_GET);
    bind_text(s, 1, name);
    int rc = step_row(st, s);
    if (rc == HF_OK) {
        read_group(st, s, g);
        *id = sql_column_int64(s, 4);
    } else if (rc == HF_ENOTFOUND) {
        hf_fail(d, rc, "", "proxy group '%s' does not exist", name);
    }
    sql_reset(s);
    return rc;
}

int store_group_create(hf_store *st, const char *actor, hf_proxy_group *g, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    store_stmt *s = store__stmt(st, ST_GROUP_INSERT);
    bind_text(s, 1, g->name);
    sql_bind_int(s, 2, (int)g->listener_port);
    sql_bind_int64(s, 3, now);
    rc = store__exec(st, s, d);
    if (rc == HF_ECONFLICT) {
        hf_fail(d, rc, "name", "proxy group '%s' already exists", g->name);
    }
    if (rc == HF_OK) {
        char object[96];
        snprintf(object, sizeof(object), "proxy-groups/%s", g->name);
        rc = store__event(st, actor, "proxy_group.create", object, d,
                          "created proxy group %s (listener port %u)", g->name, g->listener_port);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        g->created_at = g->updated_at = now;
    }
    return rc;
}

int store_group_get(hf_store *st, const char *name, hf_proxy_group *out, hf_detail *d)
{
    hf_proxy_group g = {0};
    int64_t id;
    pthread_mutex_lock(&st->lock);
    int rc = group_load(st, name, &g, &id, d);
    pthread_mutex_unlock(&st->lock);
    if (rc == HF_OK) {
        *out = g;
    }
    return rc;
}

int store_group_list(hf_store *st, hf_proxy_group **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    int rc = store__collect(st, store__stmt(st, ST_GROUP_LIST), sizeof(**out), read_group,
                            (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int64_t count_query(hf_store *st, enum store_stmt_id id, int64_t arg)
{
    store_stmt *s = store__stmt(st, id);
    sql_bind_int64(s, 1, arg);
    int64_t n = sql_step(s) == SQL_ROW ? sql_column_int64(s, 0) : -1;
    sql_reset(s);
    return n;
}

int store_group_delete(hf_store *st, const char *actor, const char *name, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    hf_proxy_group g;
    int64_t id;
    rc = group_load(st, name, &g, &id, d);
    if (rc == HF_OK) {
        int64_t services = count_query(st, ST_GROUP_SERVICES, id);
        if (services != 0) {
            rc = hf_fail(d, HF_ECONFLICT, "",
                         "proxy group '%s' still routes %lld service(s); delete them first", name,
                         (long long)services);
        }
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_GROUP_DELETE);
        sql_bind_int64(s, 1, id);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[96];
        snprintf(object, sizeof(object), "proxy-groups/%s", name);
        rc = store__event(st, actor, "proxy_group.delete", object, d, "deleted proxy group %s",
                          name);
    }
    return store__end(st, rc, d);
}

/* ======================================================================================== */
/* services                                                                                 */
/* ======================================================================================== */

static void read_service(hf_store *st, store_stmt *s, void *elem)
{
    hf_service *v = elem;
    store__col_text(s, 0, v->name, sizeof(v->name));
    store__col_text(s, 1, v->proxy_group, sizeof(v->proxy_group));
    hf_affinity_mode_parse(sql_column_text(s, 2), &v->affinity.mode);
    store__col_text(s, 3, v->affinity.cookie_name, sizeof(v->affinity.cookie_name));
    v->affinity.ttl_s = (uint32_t)sql_column_int64(s, 4);
    store__col_text(s, 5, v->affinity.path, sizeof(v->affinity.path));
    v->affinity.strict = sql_column_int(s, 6) != 0;
    hf_hc_protocol_parse(sql_column_text(s, 7), &v->health_check.protocol);
    store__col_text(s, 8, v->health_check.path, sizeof(v->health_check.path));
    v->health_check.interval_ms = (uint32_t)sql_column_int64(s, 9);
    v->health_check.timeout_ms = (uint32_t)sql_column_int64(s, 10);
    v->health_check.unhealthy_threshold = (uint32_t)sql_column_int64(s, 11);
    v->health_check.healthy_threshold = (uint32_t)sql_column_int64(s, 12);
    v->connection.max_connection_age_s = (uint32_t)sql_column_int64(s, 13);
    v->connection.drain_timeout_s = (uint32_t)sql_column_int64(s, 14);
    v->connection.max_stream_duration_s = (uint32_t)sql_column_int64(s, 15);
    v->created_at = sql_column_int64(s, 16);
    v->updated_at = sql_column_int64(s, 17);
    v->ttl_in_force_s = (uint32_t)sql_column_int64(s, 19);
    v->health_check.reuse_connection = sql_column_int(s, 20) != 0;
    v->connection.websocket = sql_column_int(s, 21) != 0;
    hf_upstream_protocol_parse(sql_column_text(s, 22), &v->connection.upstream_protocol);
    if (sql_column_int(s, 23) != 0) {
        v->health_check.protocol = HF_HC_GRPC; /* stored as 'tcp' + hc_grpc (migration 9) */
    }
    store__col_text(s, 24, v->health_check.service_name, sizeof(v->health_check.service_name));

    int64_t id = sql_column_int64(s, 18);
    store_stmt *q = store__stmt(st, ST_DOMAIN_LIST);
    sql_bind_int64(q, 1, id);
    while (sql_step(q) == SQL_ROW && v->n_domains < HF_MAX_DOMAINS) {
        store__col_text(q, 0, v->domains[v->n_domains++], HF_DOMAIN_MAX);
    }
    sql_reset(q);
    q = store__stmt(st, ST_FORMAT_LIST);
    sql_bind_int64(q, 1, id);
    while (sql_step(q) == SQL_ROW && v->n_compatible_session_formats < HF_MAX_FORMATS) {
        store__col_text(q, 0, v->compatible_session_formats[v->n_compatible_session_formats++],
                        HF_SHORT_MAX);
    }
    sql_reset(q);
}

/* Binds ?2..?22 but ?17 of ST_SERVICE_INSERT / ST_SERVICE_UPDATE (same numbering). */
static void bind_service_fields(store_stmt *s, const hf_service *v, int64_t group_id)
{
    sql_bind_int64(s, 2, group_id);
    bind_text(s, 3, hf_affinity_mode_name(v->affinity.mode));
    bind_text(s, 4, v->affinity.cookie_name);
    sql_bind_int64(s, 5, v->affinity.ttl_s);
    bind_text(s, 6, v->affinity.path);
    sql_bind_int(s, 7, v->affinity.strict);
    bool grpc = v->health_check.protocol == HF_HC_GRPC;
    bind_text(s, 8, grpc ? "tcp" : hf_hc_protocol_name(v->health_check.protocol));
    bind_text(s, 9, v->health_check.path);
    sql_bind_int64(s, 10, v->health_check.interval_ms);
    sql_bind_int64(s, 11, v->health_check.timeout_ms);
    sql_bind_int64(s, 12, v->health_check.unhealthy_threshold);
    sql_bind_int64(s, 13, v->health_check.healthy_threshold);
    sql_bind_int64(s, 14, v->connection.max_connection_age_s);
    sql_bind_int64(s, 15, v->connection.drain_timeout_s);
    sql_bind_int64(s, 16, v->connection.max_stream_duration_s);
    sql_bind_int(s, 18, v->health_check.reuse_connection);
    sql_bind_int(s, 19, v->connection.websocket);
    bind_text(s, 20, hf_upstream_protocol_name(v->connection.upstream_protocol));
    sql_bind_int(s, 21, grpc);
    bind_text(s, 22, v->health_check.service_name);
}

/* HF_ECONFLICT when host (a domain of service v, or v's name, by which a service without domains
 * is routed and a gRPC client resolves it) is already claimed in the group by another service:
 * as one of its domains, or as its name. Envoy compares domains lower-cased and rejects a whole
 * route table over one duplicate; a gRPC node would get two listeners of the same name. Names
 * and domains are lower case (model validation), so exact comparison is case-insensitive and
 * both lookups use an index. */
static int host_claimed(hf_store *st, const hf_service *v, int64_t id, int64_t group_id,
                        const char *host, bool is_name, hf_detail *d)
{
    const char *what = is_name ? "name" : "domain";
    int rc = HF_OK;
    store_stmt *o = store__stmt(st, ST_DOMAIN_OWNER);
    sql_bind_int64(o, 1, group_id);
    bind_text(o, 2, host);
    if (sql_step(o) == SQL_ROW) {
        rc = hf_fail(d, HF_ECONFLICT, is_name ? "name" : "domains",
                     "%s '%s' of service '%s' is already a domain of service '%s' in proxy "
                     "group '%s'",
                     what, host, v->name, sql_column_text(o, 0), v->proxy_group);
    }
    sql_reset(o);
    if (rc != HF_OK || is_name) {
        return rc;
    }
    o = store__stmt(st, ST_GROUP_SERVICE_NAMED);
    sql_bind_int64(o, 1, group_id);
    bind_text(o, 2, host);
    sql_bind_int64(o, 3, id);
    if (sql_step(o) == SQL_ROW) {
        rc = hf_fail(d, HF_ECONFLICT, "domains",
                     "domain '%s' of service '%s' is the name of service '%s' in proxy group "
                     "'%s' (a service is routed by its name)",
                     host, v->name, sql_column_text(o, 0), v->proxy_group);
    }
    sql_reset(o);
    return rc;
}

/* Replaces the domains and compatible formats of service id (lock held, inside a tx). */
static int write_service_lists(hf_store *st, const hf_service *v, int64_t id, int64_t group_id,
                               hf_detail *d)
{
    store_stmt *s = store__stmt(st, ST_DOMAINS_DELETE);
    sql_bind_int64(s, 1, id);
    int rc = store__exec(st, s, d);
    if (rc == HF_OK) {
        rc = host_claimed(st, v, id, group_id, v->name, true, d);
    }
    for (uint32_t i = 0; rc == HF_OK && i < v->n_domains; i++) {
        rc = host_claimed(st, v, id, group_id, v->domains[i], false, d);
        if (rc != HF_OK) {
            break;
        }
        s = store__stmt(st, ST_DOMAIN_INSERT);
        sql_bind_int64(s, 1, id);
        sql_bind_int64(s, 2, group_id);
        sql_bind_int(s, 3, (int)i);
        bind_text(s, 4, v->domains[i]);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        s = store__stmt(st, ST_FORMATS_DELETE);
        sql_bind_int64(s, 1, id);
        rc = store__exec(st, s, d);
    }
    for (uint32_t i = 0; rc == HF_OK && i < v->n_compatible_session_formats; i++) {
        s = store__stmt(st, ST_FORMAT_INSERT);
        sql_bind_int64(s, 1, id);
        sql_bind_int(s, 2, (int)i);
        bind_text(s, 3, v->compatible_session_formats[i]);
        rc = store__exec(st, s, d);
    }
    return rc;
}

/* The row id of the service's proxy group; a missing group is an invalid field. */
static int service_group_id(hf_store *st, const hf_service *v, int64_t *group_id, hf_detail *d)
{
    hf_proxy_group g;
    int rc = group_load(st, v->proxy_group, &g, group_id, d);
    if (rc == HF_ENOTFOUND) {
        return hf_fail(d, HF_EINVAL, "proxy_group", "proxy group '%s' does not exist",
                       v->proxy_group);
    }
    return rc;
}

int store_service_create(hf_store *st, const char *actor, hf_service *v, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t group_id = 0;
    rc = service_group_id(st, v, &group_id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_SERVICE_INSERT);
        bind_text(s, 1, v->name);
        bind_service_fields(s, v, group_id);
        sql_bind_int64(s, 17, now);
        rc = store__exec(st, s, d);
        if (rc == HF_ECONFLICT) {
            hf_fail(d, rc, "name", "service '%s' already exists", v->name);
        }
    }
    if (rc == HF_OK) {
        rc = write_service_lists(st, v, sql_last_insert_id(st), group_id, d);
    }
    if (rc == HF_OK) {
        char object[96];
        snprintf(object, sizeof(object), "services/%s", v->name);
        rc = store__event(st, actor, "service.create", object, d,
                          "created service %s in proxy group %s (affinity %s)", v->name,
                          v->proxy_group, hf_affinity_mode_name(v->affinity.mode));
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        v->created_at = v->updated_at = now;
    }
    return rc;
}

int store_service_get(hf_store *st, const char *name, hf_service *out, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_SERVICE_GET);
    bind_text(s, 1, name);
    int rc = step_row(st, s);
    if (rc == HF_OK) {
        memset(out, 0, sizeof(*out));
        read_service(st, s, out);
    } else if (rc == HF_ENOTFOUND) {
        hf_fail(d, rc, "", "service '%s' does not exist", name);
    }
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_service_list(hf_store *st, const char *group, hf_service **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_SERVICE_LIST);
    if (group != NULL) {
        bind_text(s, 1, group);
    }
    int rc = store__collect(st, s, sizeof(**out), read_service, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_service_update(hf_store *st, const char *actor, hf_service *v, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t id = 0;
    int64_t group_id = 0;
    rc = store__service_id(st, v->name, &id, d);
    if (rc == HF_OK) {
        rc = service_group_id(st, v, &group_id, d);
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_SERVICE_UPDATE);
        bind_text(s, 1, v->name);
        bind_service_fields(s, v, group_id);
        sql_bind_int64(s, 17, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        rc = write_service_lists(st, v, id, group_id, d);
    }
    if (rc == HF_OK) {
        char object[96];
        snprintf(object, sizeof(object), "services/%s", v->name);
        rc = store__event(st, actor, "service.update", object, d,
                          "updated service %s (affinity %s, cookie TTL %u s)", v->name,
                          hf_affinity_mode_name(v->affinity.mode), v->affinity.ttl_s);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        v->updated_at = now;
    }
    return rc;
}

int store_service_delete(hf_store *st, const char *actor, const char *name, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t id = 0;
    rc = store__service_id(st, name, &id, d);
    if (rc == HF_OK) {
        int64_t fleets = count_query(st, ST_SERVICE_FLEETS, id);
        if (fleets != 0) {
            rc = hf_fail(d, HF_ECONFLICT, "",
                         "service '%s' still has %lld fleet(s); delete them first", name,
                         (long long)fleets);
        }
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_SERVICE_DELETE);
        sql_bind_int64(s, 1, id);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[96];
        snprintf(object, sizeof(object), "services/%s", name);
        rc = store__event(st, actor, "service.delete", object, d, "deleted service %s", name);
    }
    return store__end(st, rc, d);
}

/* ======================================================================================== */
/* fleets                                                                                   */
/* ======================================================================================== */

static void read_fleet(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_fleet *f = elem;
    store__col_text(s, 0, f->service, sizeof(f->service));
    store__col_text(s, 1, f->name, sizeof(f->name));
    store__col_text(s, 2, f->version, sizeof(f->version));
    store__col_text(s, 3, f->session_format, sizeof(f->session_format));
    hf_fleet_role_parse(sql_column_text(s, 4), &f->role);
    f->created_at = sql_column_int64(s, 5);
    f->updated_at = sql_column_int64(s, 6);
}

/* Reads a fleet with the lock held; *id receives its row id. */
static int fleet_load(hf_store *st, const char *service, const char *name, hf_fleet *f, int64_t *id,
                      hf_detail *d)
{
    int64_t service_id;
    int rc = store__service_id(st, service, &service_id, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_FLEET_GET);
    bind_text(s, 1, service);
    bind_text(s, 2, name);
    rc = step_row(st, s);
    if (rc == HF_OK) {
        memset(f, 0, sizeof(*f));
        read_fleet(st, s, f);
        *id = sql_column_int64(s, 7);
    } else if (rc == HF_ENOTFOUND) {
        hf_fail(d, rc, "", "fleet '%s' of service '%s' does not exist", name, service);
    }
    sql_reset(s);
    return rc;
}

/* Demotes the service's active fleet to standby (lock held, inside a tx). */
static int demote_active(hf_store *st, int64_t service_id, int64_t now, hf_detail *d)
{
    store_stmt *s = store__stmt(st, ST_FLEET_DEMOTE);
    sql_bind_int64(s, 1, service_id);
    sql_bind_int64(s, 2, now);
    return store__exec(st, s, d);
}

int store_fleet_create(hf_store *st, const char *actor, hf_fleet *f, hf_detail *d)
{
    if (f->role != HF_ROLE_ACTIVE && f->role != HF_ROLE_STANDBY) {
        return hf_fail(d, HF_EINVAL, "role", "a new fleet's role must be active or standby");
    }
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t service_id = 0;
    enum hf_fleet_role role = f->role;
    rc = store__service_id(st, f->service, &service_id, d);
    char dep[HF_NAME_MAX], from[HF_NAME_MAX], to[HF_NAME_MAX];
    if (rc == HF_OK && role == HF_ROLE_ACTIVE &&
        store__running_deployment(st, service_id, dep, from, to) == HF_OK) {
        rc = hf_fail(d, HF_ECONFLICT, "role",
                     "deployment %s drives the roles of %s's fleets; create this one as standby",
                     dep, f->service);
    }
    if (rc == HF_OK && count_query(st, ST_SERVICE_FLEETS, service_id) == 0) {
        role = HF_ROLE_ACTIVE;
    } else if (rc == HF_OK && role == HF_ROLE_ACTIVE) {
        rc = demote_active(st, service_id, now, d);
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_FLEET_INSERT);
        sql_bind_int64(s, 1, service_id);
        bind_text(s, 2, f->name);
        bind_text(s, 3, f->version);
        bind_text(s, 4, f->session_format);
        bind_text(s, 5, hf_fleet_role_name(role));
        sql_bind_int64(s, 6, now);
        rc = store__exec(st, s, d);
        if (rc == HF_ECONFLICT) {
            hf_fail(d, rc, "name", "fleet '%s' of service '%s' already exists", f->name,
                    f->service);
        }
    }
    if (rc == HF_OK) {
        char object[160];
        snprintf(object, sizeof(object), "services/%s/fleets/%s", f->service, f->name);
        rc = store__event(st, actor, "fleet.create", object, d,
                          "created fleet %s of %s (version %s, session format %s, %s)", f->name,
                          f->service, f->version, f->session_format, hf_fleet_role_name(role));
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        f->role = role;
        f->created_at = f->updated_at = now;
    }
    return rc;
}

int store_fleet_get(hf_store *st, const char *service, const char *name, hf_fleet *out,
                    hf_detail *d)
{
    hf_fleet f;
    int64_t id;
    pthread_mutex_lock(&st->lock);
    int rc = fleet_load(st, service, name, &f, &id, d);
    pthread_mutex_unlock(&st->lock);
    if (rc == HF_OK) {
        *out = f;
    }
    return rc;
}

int store_fleet_list(hf_store *st, const char *service, hf_fleet **out, size_t *n, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    int64_t service_id;
    int rc = store__service_id(st, service, &service_id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_FLEET_LIST);
        bind_text(s, 1, service);
        rc = store__collect(st, s, sizeof(**out), read_fleet, (void **)out, n);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Whether changing a fleet's role from `from` to `to` by hand is allowed. */
static int check_role_change(const hf_fleet *cur, enum hf_fleet_role to, hf_detail *d)
{
    if (cur->role == to) {
        return HF_OK;
    }
    if (to == HF_ROLE_DRAINING) {
        return hf_fail(d, HF_EINVAL, "role", "role draining is set by deployments only");
    }
    if (cur->role == HF_ROLE_DRAINING) {
        return hf_fail(d, HF_ECONFLICT, "role",
                       "fleet '%s' is draining in a deployment; use the deployment's actions",
                       cur->name);
    }
    if (cur->role == HF_ROLE_ACTIVE) {
        return hf_fail(d, HF_ECONFLICT, "role",
                       "fleet '%s' is the active fleet; make another fleet active instead",
                       cur->name);
    }
    return HF_OK;
}

int store_fleet_update(hf_store *st, const char *actor, hf_fleet *f, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t id = 0;
    int64_t service_id = 0;
    hf_fleet cur;
    rc = fleet_load(st, f->service, f->name, &cur, &id, d);
    if (rc == HF_OK) {
        rc = store__service_id(st, f->service, &service_id, d);
    }
    char dep[HF_NAME_MAX], from[HF_NAME_MAX], to[HF_NAME_MAX];
    if (rc == HF_OK && cur.role != f->role &&
        store__running_deployment(st, service_id, dep, from, to) == HF_OK) {
        rc = hf_fail(d, HF_ECONFLICT, "role",
                     "deployment %s drives the roles of %s's fleets; use its actions", dep,
                     f->service);
    }
    if (rc == HF_OK) {
        rc = check_role_change(&cur, f->role, d);
    }
    if (rc == HF_OK && f->role == HF_ROLE_ACTIVE && cur.role != HF_ROLE_ACTIVE) {
        rc = demote_active(st, service_id, now, d);
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_FLEET_UPDATE);
        sql_bind_int64(s, 1, id);
        bind_text(s, 2, f->version);
        bind_text(s, 3, f->session_format);
        bind_text(s, 4, hf_fleet_role_name(f->role));
        sql_bind_int64(s, 5, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[160];
        snprintf(object, sizeof(object), "services/%s/fleets/%s", f->service, f->name);
        rc = store__event(st, actor, "fleet.update", object, d,
                          "updated fleet %s of %s: role %s -> %s, version %s", f->name, f->service,
                          hf_fleet_role_name(cur.role), hf_fleet_role_name(f->role), f->version);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        f->created_at = cur.created_at;
        f->updated_at = now;
    }
    return rc;
}

int store_fleet_delete(hf_store *st, const char *actor, const char *service, const char *name,
                       hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t id = 0;
    hf_fleet cur;
    rc = fleet_load(st, service, name, &cur, &id, d);
    int64_t service_id = 0;
    char dep[HF_NAME_MAX], from[HF_NAME_MAX], to[HF_NAME_MAX];
    if (rc == HF_OK && store__service_id(st, service, &service_id, NULL) == HF_OK &&
        store__running_deployment(st, service_id, dep, from, to) == HF_OK &&
        (strcmp(from, name) == 0 || strcmp(to, name) == 0)) {
        rc = hf_fail(d, HF_ECONFLICT, "", "fleet '%s' is part of running deployment %s", name, dep);
    }
    if (rc == HF_OK && (cur.role == HF_ROLE_ACTIVE || cur.role == HF_ROLE_DRAINING)) {
        rc = hf_fail(d, HF_ECONFLICT, "",
                     "fleet '%s' is %s; only a standby or retired fleet "
                     "can be deleted",
                     name, hf_fleet_role_name(cur.role));
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_FLEET_DELETE);
        sql_bind_int64(s, 1, id);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[160];
        snprintf(object, sizeof(object), "services/%s/fleets/%s", service, name);
        rc = store__event(st, actor, "fleet.delete", object, d,
                          "deleted %s fleet %s of %s with its endpoints",
                          hf_fleet_role_name(cur.role), name, service);
    }
    return store__end(st, rc, d);
}

/* ======================================================================================== */
/* endpoints                                                                                */
/* ======================================================================================== */

void store__read_endpoint(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_endpoint *e = elem;
    store__col_text(s, 0, e->service, sizeof(e->service));
    store__col_text(s, 1, e->fleet, sizeof(e->fleet));
    store__col_text(s, 2, e->address, sizeof(e->address));
    e->port = (uint32_t)sql_column_int(s, 3);
    store__col_text(s, 4, e->zone, sizeof(e->zone));
    e->weight = (uint32_t)sql_column_int(s, 5);
    hf_admin_state_parse(sql_column_text(s, 6), &e->admin_state);
    hf_health_parse(sql_column_text(s, 7), &e->health);
    e->created_at = sql_column_int64(s, 8);
    e->updated_at = sql_column_int64(s, 9);
    e->health_changed_at = sql_column_int64(s, 10);
}

static void endpoint_object(char *buf, size_t len, const char *service, const char *fleet,
                            const char *address, uint32_t port)
{
    hf_endpoint tmp = {.port = port};
    snprintf(tmp.address, sizeof(tmp.address), "%s", address);
    char id[HF_ENDPOINT_ID_MAX];
    hf_endpoint_id(&tmp, id, sizeof(id));
    snprintf(buf, len, "services/%s/fleets/%s/endpoints/%s", service, fleet, id);
}

/* Reads an endpoint with the lock held (the fleet must exist); *id receives its row id. */
static int endpoint_load(hf_store *st, const char *service, const char *fleet, const char *address,
                         uint32_t port, hf_endpoint *e, int64_t *id, hf_detail *d)
{
    hf_fleet f;
    int64_t fleet_id;
    int rc = fleet_load(st, service, fleet, &f, &fleet_id, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_ENDPOINT_GET);
    bind_text(s, 1, service);
    bind_text(s, 2, fleet);
    bind_text(s, 3, address);
    sql_bind_int(s, 4, (int)port);
    rc = step_row(st, s);
    if (rc == HF_OK) {
        memset(e, 0, sizeof(*e));
        store__read_endpoint(st, s, e);
        *id = sql_column_int64(s, 11);
    } else if (rc == HF_ENOTFOUND) {
        hf_fail(d, rc, "", "endpoint %s port %u is not in fleet '%s' of service '%s'", address,
                port, fleet, service);
    }
    sql_reset(s);
    return rc;
}

int store_endpoint_create(hf_store *st, const char *actor, hf_endpoint *e, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t service_id = 0;
    int64_t fleet_id = 0;
    hf_fleet f;
    rc = fleet_load(st, e->service, e->fleet, &f, &fleet_id, d);
    if (rc == HF_OK) {
        rc = store__service_id(st, e->service, &service_id, d);
    }
    if (rc == HF_OK) {
        store_stmt *o = store__stmt(st, ST_ENDPOINT_OWNER);
        sql_bind_int64(o, 1, service_id);
        bind_text(o, 2, e->address);
        sql_bind_int(o, 3, (int)e->port);
        if (sql_step(o) == SQL_ROW) {
            rc = hf_fail(d, HF_ECONFLICT, "address",
                         "endpoint %s port %u already belongs to fleet '%s' of service '%s'",
                         e->address, e->port, sql_column_text(o, 0), e->service);
        }
        sql_reset(o);
    }
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_ENDPOINT_INSERT);
        sql_bind_int64(s, 1, fleet_id);
        sql_bind_int64(s, 2, service_id);
        bind_text(s, 3, e->address);
        sql_bind_int(s, 4, (int)e->port);
        bind_text(s, 5, e->zone);
        sql_bind_int(s, 6, (int)e->weight);
        bind_text(s, 7, hf_admin_state_name(e->admin_state));
        bind_text(s, 8, hf_health_name(HF_HEALTH_UNKNOWN));
        sql_bind_int64(s, 9, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[256];
        endpoint_object(object, sizeof(object), e->service, e->fleet, e->address, e->port);
        rc = store__event(st, actor, "endpoint.create", object, d,
                          "added endpoint %s:%u (zone %s, weight %u) to fleet %s of %s", e->address,
                          e->port, e->zone, e->weight, e->fleet, e->service);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        e->health = HF_HEALTH_UNKNOWN;
        e->created_at = e->updated_at = now;
    }
    return rc;
}

int store_endpoint_get(hf_store *st, const char *service, const char *fleet, const char *address,
                       uint32_t port, hf_endpoint *out, hf_detail *d)
{
    hf_endpoint e;
    int64_t id;
    pthread_mutex_lock(&st->lock);
    int rc = endpoint_load(st, service, fleet, address, port, &e, &id, d);
    pthread_mutex_unlock(&st->lock);
    if (rc == HF_OK) {
        *out = e;
    }
    return rc;
}

int store_endpoint_list(hf_store *st, const char *service, const char *fleet, hf_endpoint **out,
                        size_t *n, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    hf_fleet f;
    int64_t fleet_id;
    int rc = fleet_load(st, service, fleet, &f, &fleet_id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_ENDPOINT_LIST);
        bind_text(s, 1, service);
        bind_text(s, 2, fleet);
        rc = store__collect(st, s, sizeof(**out), store__read_endpoint, (void **)out, n);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_endpoint_update(hf_store *st, const char *actor, hf_endpoint *e, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    int64_t id = 0;
    hf_endpoint cur;
    rc = endpoint_load(st, e->service, e->fleet, e->address, e->port, &cur, &id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_ENDPOINT_UPDATE);
        sql_bind_int64(s, 1, id);
        bind_text(s, 2, e->zone);
        sql_bind_int(s, 3, (int)e->weight);
        bind_text(s, 4, hf_admin_state_name(e->admin_state));
        sql_bind_int64(s, 5, now);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[256];
        endpoint_object(object, sizeof(object), e->service, e->fleet, e->address, e->port);
        rc = store__event(st, actor, "endpoint.update", object, d,
                          "endpoint %s:%u: admin state %s -> %s, weight %u, zone %s", e->address,
                          e->port, hf_admin_state_name(cur.admin_state),
                          hf_admin_state_name(e->admin_state), e->weight, e->zone);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        e->health = cur.health;
        e->created_at = cur.created_at;
        e->updated_at = now;
    }
    return rc;
}

int store_endpoint_delete(hf_store *st, const char *actor, const char *service, const char *fleet,
                          const char *address, uint32_t port, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t id = 0;
    hf_endpoint cur;
    rc = endpoint_load(st, service, fleet, address, port, &cur, &id, d);
    if (rc == HF_OK) {
        store_stmt *s = store__stmt(st, ST_ENDPOINT_DELETE);
        sql_bind_int64(s, 1, id);
        rc = store__exec(st, s, d);
    }
    if (rc == HF_OK) {
        char object[256];
        endpoint_object(object, sizeof(object), service, fleet, address, port);
        rc = store__event(st, actor, "endpoint.delete", object, d,
                          "removed endpoint %s:%u from fleet %s of %s", address, port, fleet,
                          service);
    }
    return store__end(st, rc, d);
}

/* ======================================================================================== */
/* row readers shared with store_input.c                                                    */
/* ======================================================================================== */

void store__read_group(hf_store *st, store_stmt *s, void *elem)
{
    read_group(st, s, elem);
}

void store__read_service(hf_store *st, store_stmt *s, void *elem)
{
    read_service(st, s, elem);
}

void store__read_fleet(hf_store *st, store_stmt *s, void *elem)
{
    read_fleet(st, s, elem);
}
