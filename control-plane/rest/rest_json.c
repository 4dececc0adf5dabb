/*
 * Mapping between model structs and JSON. One field table per object drives both directions:
 * rendering a struct and applying a request body onto one (type checks, length limits, unknown
 * and read-only members refused). Semantic validation stays in model.c.
 */
#include "rest_internal.h"

#include "timeutil.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum ftype { F_STR, F_NAME, F_U32, F_I64, F_DBL, F_BOOL, F_ENUM, F_OBJ, F_STRLIST };

/* One JSON member of an object. */
struct field {
    const char *name;
    enum ftype type;
    size_t off;               /* offset of the value in the struct */
    size_t size;              /* F_STR, F_NAME, F_STRLIST: bytes per string */
    bool immutable;           /* set at creation only */
    bool required;            /* must be sent when creating */
    bool ranged;              /* F_U32, F_I64: imin..imax; F_DBL: dmin..dmax */
    int64_t imin, imax;       /* inclusive bounds of an integer */
    double dmin, dmax;        /* inclusive bounds of a number */
    const char *const *names; /* F_ENUM: names indexed by value, NULL-terminated */
    const struct field *sub;  /* F_OBJ: the nested table, {NULL}-terminated */
    size_t cap;               /* F_STRLIST: capacity */
    size_t count_off;         /* F_STRLIST: offset of the uint32_t count */
};

/* Enum values are stored as int-sized enums. */
static_assert(sizeof(enum hf_fleet_role) == sizeof(int), "enums are int-sized");

static const char *const affinity_modes[] = {"none", "cookie", "hash_cookie", NULL};
static const char *const hc_protocols[] = {"http", "tcp", "grpc", NULL};
static const char *const upstream_protocols[] = {"http1", "http2", "auto", NULL};
static const char *const fleet_roles[] = {"active", "standby", "draining", "retired", NULL};
static const char *const admin_states[] = {"active", "draining", "disabled", NULL};

#define STR(T, m) .type = F_STR, .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define NAME(T, m) .type = F_NAME, .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define U32(T, m) .type = F_U32, .off = offsetof(T, m)
#define I64(T, m) .type = F_I64, .off = offsetof(T, m)
#define DBL(T, m) .type = F_DBL, .off = offsetof(T, m)
#define BOOL(T, m) .type = F_BOOL, .off = offsetof(T, m)
#define ENUM(T, m, list) .type = F_ENUM, .off = offsetof(T, m), .names = list
#define IRANGE(lo, hi) .ranged = true, .imin = (lo), .imax = (hi)
#define DRANGE(lo, hi) .ranged = true, .dmin = (lo), .dmax = (hi)

static const struct field group_fields[] = {
    {"name", STR(hf_proxy_group, name), .immutable = true},
    {"listener_port", U32(hf_proxy_group, listener_port), .required = true},
    {NULL},
};

static const struct field affinity_fields[] = {
    {"mode", ENUM(hf_affinity, mode, affinity_modes)},
    {"cookie_name", STR(hf_affinity, cookie_name)},
    {"ttl_s", U32(hf_affinity, ttl_s)},
    {"path", STR(hf_affinity, path)},
    {"strict", BOOL(hf_affinity, strict)},
    {NULL},
};

static const struct field health_check_fields[] = {
    {"protocol", ENUM(hf_health_check, protocol, hc_protocols)},
    {"path", STR(hf_health_check, path)},
    {"service_name", STR(hf_health_check, service_name)},
    {"interval_ms", U32(hf_health_check, interval_ms)},
    {"timeout_ms", U32(hf_health_check, timeout_ms)},
    {"unhealthy_threshold", U32(hf_health_check, unhealthy_threshold)},
    {"healthy_threshold", U32(hf_health_check, healthy_threshold)},
    {"reuse_connection", BOOL(hf_health_check, reuse_connection)},
    {NULL},
};

static const struct field connection_fields[] = {
    {"max_connection_age_s", U32(hf_connection, max_connection_age_s)},
    {"drain_timeout_s", U32(hf_connection, drain_timeout_s)},
    {"max_stream_duration_s", U32(hf_connection, max_stream_duration_s)},
    {"websocket", BOOL(hf_connection, websocket)},
    {"upstream_protocol", ENUM(hf_connection, upstream_protocol, upstream_protocols)},
    {NULL},
};

static const struct field service_fields[] = {
    {"name", STR(hf_service, name), .immutable = true},
    {"proxy_group", STR(hf_service, proxy_group)},
    {"domains", .type = F_STRLIST, .off = offsetof(hf_service, domains), .size = HF_DOMAIN_MAX,
     .cap = HF_MAX_DOMAINS, .count_off = offsetof(hf_service, n_domains)},
    {"affinity", .type = F_OBJ, .off = offsetof(hf_service, affinity), .sub = affinity_fields},
    {"health_check", .type = F_OBJ, .off = offsetof(hf_service, health_check),
     .sub = health_check_fields},
    {"connection", .type = F_OBJ, .off = offsetof(hf_service, connection),
     .sub = connection_fields},
    {"compatible_session_formats", .type = F_STRLIST,
     .off = offsetof(hf_service, compatible_session_formats), .size = HF_SHORT_MAX,
     .cap = HF_MAX_FORMATS, .count_off = offsetof(hf_service, n_compatible_session_formats)},
    {NULL},
};

static const struct field fleet_fields[] = {
    {"name", STR(hf_fleet, name), .immutable = true},
    {"version", STR(hf_fleet, version)},
    {"session_format", STR(hf_fleet, session_format)},
    {"role", ENUM(hf_fleet, role, fleet_roles)},
    {NULL},
};

static const struct field endpoint_fields[] = {
    {"address", STR(hf_endpoint, address), .immutable = true, .required = true},
    {"port", U32(hf_endpoint, port), .immutable = true, .required = true},
    {"zone", STR(hf_endpoint, zone)},
    {"weight", U32(hf_endpoint, weight)},
    {"admin_state", ENUM(hf_endpoint, admin_state, admin_states)},
    {NULL},
};

/* Members the server writes; a request that sends them is refused as read-only. */
static const char *const server_fields[] = {"created_at", "updated_at", "id", "health",
                                            "service",    "fleet",      NULL};

/* ---- rendering ---- */

static json_t *render(const struct field *fields, const void *base)
{
    const char *p = base;
    json_t *obj = json_object();
    for (const struct field *f = fields; f->name; f++) {
        json_t *v = NULL;
        switch (f->type) {
        case F_STR:
        case F_NAME:
            v = json_string(p + f->off);
            break;
        case F_U32:
            v = json_integer(*(const uint32_t *)(p + f->off));
            break;
        case F_I64:
            v = json_integer(*(const int64_t *)(p + f->off));
            break;
        case F_DBL:
            v = json_real(*(const double *)(p + f->off));
            break;
        case F_BOOL:
            v = json_boolean(*(const bool *)(p + f->off));
            break;
        case F_ENUM:
            v = json_string(f->names[*(const int *)(p + f->off)]);
            break;
        case F_OBJ:
            v = render(f->sub, p + f->off);
            break;
        case F_STRLIST: {
            v = json_array();
            uint32_t n = *(const uint32_t *)(p + f->count_off);
            for (uint32_t i = 0; i < n; i++) {
                json_array_append_new(v, json_string(p + f->off + i * f->size));
            }
            break;
        }
        }
        json_object_set_new(obj, f->name, v);
    }
    return obj;
}

static void set_time(json_t *obj, const char *key, int64_t ms)
{
    char buf[32];
    hf_time_format(ms, buf, sizeof(buf));
    json_object_set_new(obj, key, json_string(buf));
}

json_t *rest__group_json(const hf_proxy_group *g)
{
    json_t *o = render(group_fields, g);
    set_time(o, "created_at", g->created_at);
    set_time(o, "updated_at", g->updated_at);
    return o;
}

json_t *rest__service_json(const hf_service *s)
{
    json_t *o = render(service_fields, s);
    /* The cookie TTL proxies get now (lowered while a blue-green deployment runs). */
    json_object_set_new(o, "ttl_in_force_s", json_integer(hf_service_ttl_in_force(s)));
    set_time(o, "created_at", s->created_at);
    set_time(o, "updated_at", s->updated_at);
    return o;
}

json_t *rest__fleet_json(const hf_fleet *f)
{
    json_t *o = render(fleet_fields, f);
    json_object_set_new(o, "service", json_string(f->service));
    set_time(o, "created_at", f->created_at);
    set_time(o, "updated_at", f->updated_at);
    return o;
}

json_t *rest__endpoint_json(const hf_endpoint *e)
{
    char id[HF_ENDPOINT_ID_MAX];
    hf_endpoint_id(e, id, sizeof(id));
    json_t *o = render(endpoint_fields, e);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "service", json_string(e->service));
    json_object_set_new(o, "fleet", json_string(e->fleet));
    json_object_set_new(o, "health", json_string(hf_health_name(e->health)));
    if (e->health_changed_at != 0) {
        set_time(o, "health_changed_at", e->health_changed_at);
    } else {
        json_object_set_new(o, "health_changed_at", json_null());
    }
    set_time(o, "created_at", e->created_at);
    set_time(o, "updated_at", e->updated_at);
    return o;
}

json_t *rest__token_json(const hf_token *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(t->id));
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "role", json_string(hf_role_name(t->role)));
    set_time(o, "created_at", t->created_at);
    return o;
}

json_t *rest__event_json(const hf_event *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(e->id));
    set_time(o, "at", e->at);
    json_object_set_new(o, "actor", json_string(e->actor));
    json_object_set_new(o, "action", json_string(e->action));
    json_object_set_new(o, "object", json_string(e->object));
    json_object_set_new(o, "summary", json_string(e->summary));
    return o;
}

/* ---- applying a request body ---- */

static int apply(const struct field *fields, json_t *obj, void *base, bool creating,
                 const char *prefix, const char *const *server_owned, hf_detail *d);

static int apply_string(const struct field *f, json_t *v, char *dst, const char *path, hf_detail *d)
{
    if (!json_is_string(v)) {
        return hf_fail(d, HF_EINVAL, path, "%s must be a string", path);
    }
    size_t len = json_string_length(v);
    if (len >= f->size || memchr(json_string_value(v), '\0', len) != NULL) {
        return hf_fail(d, HF_EINVAL, path, "%s must be at most %zu characters", path, f->size - 1);
    }
    if (f->type == F_NAME && !hf_name_valid(json_string_value(v))) {
        return hf_fail(d, HF_EINVAL, path, "%s must match [a-z0-9][a-z0-9-]{0,62}", path);
    }
    memcpy(dst, json_string_value(v), len + 1);
    return HF_OK;
}

/* An integer member: F_U32 (0..UINT32_MAX) or F_I64, within the field's range when it has one. */
static int apply_int(const struct field *f, json_t *v, char *dst, const char *path, hf_detail *d)
{
    int64_t lo = f->type == F_U32 ? 0 : INT64_MIN;
    int64_t hi = f->type == F_U32 ? (int64_t)UINT32_MAX : INT64_MAX;
    if (f->ranged) {
        lo = f->imin > lo ? f->imin : lo;
        hi = f->imax < hi ? f->imax : hi;
    }
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
    if (!json_is_integer(v) || n < lo || n > hi) {
        if (!f->ranged) {
            return hf_fail(d, HF_EINVAL, path, "%s must be a non-negative integer", path);
        }
        return hf_fail(d, HF_EINVAL, path, "%s must be an integer from %lld to %lld", path,
                       (long long)lo, (long long)hi);
    }
    if (f->type == F_U32) {
        *(uint32_t *)dst = (uint32_t)n;
    } else {
        *(int64_t *)dst = n;
    }
    return HF_OK;
}

/* A number member (integer or real), within the field's range when it has one. */
static int apply_double(const struct field *f, json_t *v, double *dst, const char *path,
                        hf_detail *d)
{
    double x = json_number_value(v);
    if (!json_is_number(v) || !isfinite(x) || (f->ranged && (x < f->dmin || x > f->dmax))) {
        if (!f->ranged) {
            return hf_fail(d, HF_EINVAL, path, "%s must be a number", path);
        }
        if (isinf(f->dmax)) {
            return hf_fail(d, HF_EINVAL, path, "%s must be a number of at least %g", path, f->dmin);
        }
        return hf_fail(d, HF_EINVAL, path, "%s must be a number from %g to %g", path, f->dmin,
                       f->dmax);
    }
    *dst = x;
    return HF_OK;
}

static int apply_enum(const struct field *f, json_t *v, int *dst, const char *path, hf_detail *d)
{
    if (json_is_string(v)) {
        for (int i = 0; f->names[i]; i++) {
            if (strcmp(json_string_value(v), f->names[i]) == 0) {
                *dst = i;
                return HF_OK;
            }
        }
    }
    char allowed[128] = "";
    for (int i = 0; f->names[i]; i++) {
        size_t used = strlen(allowed);
        snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "", f->names[i]);
    }
    return hf_fail(d, HF_EINVAL, path, "%s must be one of: %s", path, allowed);
}

static int apply_strlist(const struct field *f, json_t *v, char *base, const char *path,
                         hf_detail *d)
{
    if (!json_is_array(v)) {
        return hf_fail(d, HF_EINVAL, path, "%s must be an array of strings", path);
    }
    if (json_array_size(v) > f->cap) {
        return hf_fail(d, HF_EINVAL, path, "%s holds at most %zu items", path, f->cap);
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        int rc = apply_string(f, item, base + f->off + i * f->size, path, d);
        if (rc != HF_OK) {
            return rc;
        }
    }
    *(uint32_t *)(base + f->count_off) = (uint32_t)json_array_size(v);
    return HF_OK;
}

static int apply_one(const struct field *f, json_t *v, char *base, bool creating, const char *path,
                     hf_detail *d)
{
    switch (f->type) {
    case F_STR:
    case F_NAME:
        return apply_string(f, v, base + f->off, path, d);
    case F_U32:
    case F_I64:
        return apply_int(f, v, base + f->off, path, d);
    case F_DBL:
        return apply_double(f, v, (double *)(base + f->off), path, d);
    case F_BOOL:
        if (!json_is_boolean(v)) {
            return hf_fail(d, HF_EINVAL, path, "%s must be true or false", path);
        }
        *(bool *)(base + f->off) = json_is_true(v);
        return HF_OK;
    case F_ENUM:
        return apply_enum(f, v, (int *)(base + f->off), path, d);
    case F_OBJ:
        return apply(f->sub, v, base + f->off, creating, path, NULL, d);
    case F_STRLIST:
        return apply_strlist(f, v, base, path, d);
    }
    return HF_EINVAL;
}

/* Checks an immutable field on update: it may be sent only with its current value. */
static int check_immutable(const struct field *f, json_t *v, char *base, const char *path,
                           hf_detail *d)
{
    char copy[HF_DOMAIN_MAX];
    size_t size = f->type == F_STR || f->type == F_NAME ? f->size : sizeof(uint32_t);
    assert(size <= sizeof(copy));
    memcpy(copy, base + f->off, size);
    int rc = apply_one(f, v, base, false, path, d);
    if (rc == HF_OK && memcmp(copy, base + f->off, size) != 0) {
        memcpy(base + f->off, copy, size);
        rc = hf_fail(d, HF_EINVAL, path, "%s cannot be changed", path);
    }
    return rc;
}

/* On creation: every required member of the table was sent. */
static int check_required(const struct field *fields, json_t *obj, const char *prefix, hf_detail *d)
{
    for (const struct field *f = fields; f->name; f++) {
        if (f->required && json_object_get(obj, f->name) == NULL) {
            char path[128];
            snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", f->name);
            return hf_fail(d, HF_EINVAL, path, "%s is required", path);
        }
    }
    return HF_OK;
}

/* Applies obj onto base along fields. prefix names the enclosing member ("" at the top);
 * server_owned lists top-level members refused as read-only (NULL: none). */
static int apply(const struct field *fields, json_t *obj, void *base, bool creating,
                 const char *prefix, const char *const *server_owned, hf_detail *d)
{
    if (!json_is_object(obj)) {
        return hf_fail(d, HF_EINVAL, prefix, "%s must be a JSON object",
                       prefix[0] ? prefix : "the body");
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char path[128];
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", key);
        const struct field *f = fields;
        while (f->name && strcmp(f->name, key) != 0) {
            f++;
        }
        if (f->name == NULL) {
            for (int i = 0; server_owned != NULL && server_owned[i]; i++) {
                if (strcmp(server_owned[i], key) == 0) {
                    return hf_fail(d, HF_EINVAL, path, "%s is set by the server", path);
                }
            }
            return hf_fail(d, HF_EUNKNOWN, path, "unknown field %s", path);
        }
        int rc = (f->immutable && !creating) ? check_immutable(f, v, base, path, d)
                                             : apply_one(f, v, base, creating, path, d);
        if (rc != HF_OK) {
            return rc;
        }
    }
    return creating ? check_required(fields, obj, prefix, d) : HF_OK;
}

int rest__group_apply(json_t *obj, hf_proxy_group *g, bool creating, hf_detail *d)
{
    return apply(group_fields, obj, g, creating, "", server_fields, d);
}

int rest__service_apply(json_t *obj, hf_service *s, bool creating, hf_detail *d)
{
    return apply(service_fields, obj, s, creating, "", server_fields, d);
}

int rest__fleet_apply(json_t *obj, hf_fleet *f, bool creating, hf_detail *d)
{
    return apply(fleet_fields, obj, f, creating, "", server_fields, d);
}

int rest__endpoint_apply(json_t *obj, hf_endpoint *e, bool creating, hf_detail *d)
{
    return apply(endpoint_fields, obj, e, creating, "", server_fields, d);
}

/* ---- request bodies that are no model object ---- */

static const char *const role_names[] = {"viewer", "operator", "admin", NULL};
static_assert(sizeof(enum hf_role) == sizeof(int), "enums are int-sized");

static const struct field token_fields[] = {
    {"role", ENUM(rest_token_body, role, role_names), .required = true},
    {"name", NAME(rest_token_body, name)},
    {NULL},
};

static const struct field deploy_plan_fields[] = {
    {"service", NAME(deploy_plan_input, service), .required = true},
    {"to_fleet", NAME(deploy_plan_input, to_fleet), .required = true},
    {"lowered_ttl_s", U32(deploy_plan_input, lowered_ttl_s), IRANGE(1, HF_TTL_MAX_S)},
    {"lead_s", I64(deploy_plan_input, lead_s), IRANGE(0, INT64_MAX)},
    {"tail_threshold_pct", DBL(deploy_plan_input, tail_threshold_pct), DRANGE(0, INFINITY)},
    {"deadline_factor", DBL(deploy_plan_input, deadline_factor), DRANGE(0, INFINITY)},
    {"force", BOOL(deploy_plan_input, force)},
    {NULL},
};

static const struct field deploy_action_fields[] = {
    {"force", BOOL(deploy_action_args, force)},
    {"acknowledge_format_change", BOOL(deploy_action_args, acknowledge_format_change)},
    {"by_s", U32(deploy_action_args, extend_by_s), IRANGE(1, HF_TTL_MAX_S)},
    {NULL},
};

#define RB rest_restart_body
static const struct field restart_fields[] = {
    {"service", NAME(RB, service), .required = true},
    {"fleet", NAME(RB, fleet), .required = true},
    {"avg_connection_s", U32(RB, in.avg_connection_s), IRANGE(1, HF_DURATION_MAX_S),
     .required = true},
    {"restart_s", U32(RB, in.restart_s), IRANGE(1, HF_DURATION_MAX_S)},
    {"max_disconnect_pct", DBL(RB, in.max_disconnect_pct)},
    {"max_draining_pct", DBL(RB, in.max_draining_pct)},
    /* Required: starting a restart takes an explicit false. */
    {"dry_run", BOOL(RB, dry_run), .required = true},
    {"webhook_url", STR(RB, webhook_url)},
    {NULL},
};
#undef RB

/* A body with no members at all (the action routes that take none). */
static const struct field no_fields[] = {{NULL}};

int rest__token_body_apply(json_t *obj, rest_token_body *t, hf_detail *d)
{
    *t = (rest_token_body){.role = HF_TOKEN_VIEWER};
    return apply(token_fields, obj, t, true, "", NULL, d);
}

int rest__deploy_plan_apply(json_t *obj, deploy_plan_input *in, hf_detail *d)
{
    *in = (deploy_plan_input){.lead_s = -1, .tail_threshold_pct = -1, .deadline_factor = -1};
    return apply(deploy_plan_fields, obj, in, true, "", NULL, d);
}

int rest__deploy_action_apply(json_t *obj, deploy_action_args *a, hf_detail *d)
{
    memset(a, 0, sizeof(*a));
    return obj == NULL ? HF_OK : apply(deploy_action_fields, obj, a, true, "", NULL, d);
}

int rest__restart_body_apply(json_t *obj, rest_restart_body *r, hf_detail *d)
{
    *r = (rest_restart_body){
        .in = {.max_disconnect_pct = 5, .max_draining_pct = 60, .restart_s = 60}};
    return apply(restart_fields, obj, r, true, "", NULL, d);
}

int rest__empty_body_apply(json_t *obj, hf_detail *d)
{
    return obj == NULL ? HF_OK : apply(no_fields, obj, NULL, true, "", NULL, d);
}

bool rest__body_dry_run(json_t *obj)
{
    return json_is_true(json_object_get(obj, "dry_run"));
}

/* ---- deployments ---- */

json_t *rest__time_json(int64_t ms)
{
    if (ms == 0) {
        return json_null();
    }
    char buf[32];
    hf_time_format(ms, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *warnings_json(const char *text)
{
    json_t *arr = json_array();
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_array_append_new(arr, json_stringn(p, len));
        p += len + (nl ? 1 : 0);
    }
    return arr;
}

/* What an operator may do next, in the order a drain goes. */
static json_t *next_actions(enum hf_deploy_state s)
{
    static const char *const by_state[][4] = {
        [HF_DEP_PLANNED] = {"lower-ttl", "abort", NULL},
        [HF_DEP_TTL_LOWERED] = {"cutover", "rollback", "abort", NULL},
        [HF_DEP_DRAINING] = {"finish", "extend", "rollback", NULL},
        [HF_DEP_ROLLING_BACK] = {"finish", "extend", NULL},
        [HF_DEP_COMPLETED] = {NULL},
        [HF_DEP_ROLLED_BACK] = {NULL},
        [HF_DEP_ABORTED] = {NULL},
    };
    json_t *arr = json_array();
    for (int i = 0; by_state[s][i] != NULL; i++) {
        json_array_append_new(arr, json_string(by_state[s][i]));
    }
    return arr;
}

json_t *rest__deployment_json(const hf_deployment *dep, const hf_tail_sample *s, size_t n)
{
    const char *draining = hf_deployment_draining_fleet(dep);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(dep->id));
    json_object_set_new(o, "service", json_string(dep->service));
    json_object_set_new(o, "from_fleet", json_string(dep->from_fleet));
    json_object_set_new(o, "to_fleet", json_string(dep->to_fleet));
    json_object_set_new(o, "state", json_string(hf_deploy_state_name(dep->state)));
    json_object_set_new(o, "draining_fleet", draining ? json_string(draining) : json_null());
    json_object_set_new(o, "normal_ttl_s", json_integer(dep->normal_ttl_s));
    json_object_set_new(o, "lowered_ttl_s", json_integer(dep->lowered_ttl_s));
    json_object_set_new(o, "lead_s", json_integer(dep->lead_s));
    json_object_set_new(o, "tail_threshold_pct", json_real(dep->tail_threshold_pct));
    json_object_set_new(o, "deadline_factor", json_real(dep->deadline_factor));
    json_object_set_new(o, "session_format_change", json_boolean(dep->format_change));
    json_object_set_new(o, "format_change_acknowledged", json_boolean(dep->format_acknowledged));
    json_object_set_new(o, "warnings", warnings_json(dep->warnings));
    json_object_set_new(o, "created_at", rest__time_json(dep->created_at));
    json_object_set_new(o, "updated_at", rest__time_json(dep->updated_at));
    json_object_set_new(o, "ttl_lowered_at", rest__time_json(dep->ttl_lowered_at));
    json_object_set_new(o, "cutover_unlocks_at", rest__time_json(dep->cutover_unlocks_at));
    json_object_set_new(o, "cutover_at", rest__time_json(dep->cutover_at));
    json_object_set_new(o, "min_finish_at", rest__time_json(dep->min_finish_at));
    json_object_set_new(o, "deadline_at", rest__time_json(dep->deadline_at));
    json_object_set_new(o, "finished_at", rest__time_json(dep->finished_at));
    json_object_set_new(o, "finish_reason",
                        dep->finish_reason[0] ? json_string(dep->finish_reason) : json_null());
    json_object_set_new(o, "final_tail_pct",
                        dep->final_tail_pct >= 0 ? json_real(dep->final_tail_pct) : json_null());
    json_object_set_new(o, "next_actions", next_actions(dep->state));
    if (s == NULL) {
        return o;
    }
    json_t *tail = json_array();
    double latest = -1;
    for (size_t i = 0; i < n; i++) {
        char ts[32];
        hf_time_format(s[i].t, ts, sizeof(ts));
        json_t *sample = json_pack("{s:s, s:f, s:I, s:I, s:i}", "t", ts, "pct", s[i].pct,
                                   "old_requests", (json_int_t)s[i].old_requests, "total_requests",
                                   (json_int_t)s[i].total_requests, "reporters", s[i].reporters);
        json_object_set_new(sample, "connected_proxies",
                            s[i].connected_proxies >= 0 ? json_integer(s[i].connected_proxies)
                                                        : json_null());
        json_array_append_new(tail, sample);
        latest = s[i].pct;
    }
    json_object_set_new(o, "tail", tail);
    json_object_set_new(o, "tail_pct", latest >= 0 ? json_real(latest) : json_null());
    deploy_fit fit;
    deploy_fit_tail(s, n, dep->cutover_at, dep->tail_threshold_pct, &fit);
    json_t *eta = json_null();
    json_t *fit_json = json_null();
    if (fit.ok && dep->cutover_at != 0) {
        fit_json = json_pack("{s:f, s:f, s:f, s:o}", "rate_per_s", fit.rate_per_s, "half_life_s",
                             fit.half_life_s, "pct_at_origin", exp(fit.a), "origin",
                             rest__time_json(fit.origin_ms));
        if (draining != NULL) {
            eta = rest__time_json(fit.eta_ms);
        }
    }
    json_object_set_new(o, "fit", fit_json);
    json_object_set_new(o, "eta", eta);
    return o;
}
