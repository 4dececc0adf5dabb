/* Model defaults, enum names and validation; see model.h. */
#include "model.h"

#include "endpoint_key.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- enum names ---- */

static int parse_name(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return HF_OK;
        }
    }
    return HF_EINVAL;
}

#define ENUM_NAMES(fn_name, fn_parse, type, ...)                                                   \
    static const char *const fn_name##_names[] = {__VA_ARGS__};                                    \
    const char *fn_name(type v)                                                                    \
    {                                                                                              \
        size_t n = sizeof(fn_name##_names) / sizeof(fn_name##_names[0]);                           \
        return (size_t)v < n ? fn_name##_names[v] : "?";                                           \
    }                                                                                              \
    int fn_parse(const char *s, type *out)                                                         \
    {                                                                                              \
        int v;                                                                                     \
        int n = (int)(sizeof(fn_name##_names) / sizeof(fn_name##_names[0]));                       \
        if (parse_name(s, fn_name##_names, n, &v) != HF_OK) {                                      \
            return HF_EINVAL;                                                                      \
        }                                                                                          \
        *out = (type)v;                                                                            \
        return HF_OK;                                                                              \
    }

ENUM_NAMES(hf_affinity_mode_name, hf_affinity_mode_parse, enum hf_affinity_mode, "none", "cookie",
           "hash_cookie")
ENUM_NAMES(hf_hc_protocol_name, hf_hc_protocol_parse, enum hf_hc_protocol, "http", "tcp", "grpc")
ENUM_NAMES(hf_upstream_protocol_name, hf_upstream_protocol_parse, enum hf_upstream_protocol,
           "http1", "http2", "auto")
ENUM_NAMES(hf_fleet_role_name, hf_fleet_role_parse, enum hf_fleet_role, "active", "standby",
           "draining", "retired")
ENUM_NAMES(hf_admin_state_name, hf_admin_state_parse, enum hf_admin_state, "active", "draining",
           "disabled")
ENUM_NAMES(hf_health_name, hf_health_parse, enum hf_health, "unknown", "healthy", "unhealthy")
ENUM_NAMES(hf_role_name, hf_role_parse, enum hf_role, "viewer", "operator", "admin")
ENUM_NAMES(hf_deploy_state_name, hf_deploy_state_parse, enum hf_deploy_state, "planned",
           "ttl_lowered", "draining", "rolling_back", "completed", "rolled_back", "aborted")

ENUM_NAMES(hf_restart_state_name, hf_restart_state_parse, enum hf_restart_state, "running",
           "paused", "completed", "aborted")
ENUM_NAMES(hf_batch_state_name, hf_batch_state_parse, enum hf_batch_state, "pending", "draining",
           "ready", "restarting", "done")

bool hf_deploy_state_running(enum hf_deploy_state s)
{
    return s == HF_DEP_PLANNED || s == HF_DEP_TTL_LOWERED || s == HF_DEP_DRAINING ||
           s == HF_DEP_ROLLING_BACK;
}

const char *hf_deployment_draining_fleet(const hf_deployment *d)
{
    if (d->state == HF_DEP_DRAINING) {
        return d->from_fleet;
    }
    return d->state == HF_DEP_ROLLING_BACK ? d->to_fleet : NULL;
}

uint32_t hf_service_ttl_in_force(const hf_service *s)
{
    return s->ttl_in_force_s ? s->ttl_in_force_s : s->affinity.ttl_s;
}

/* ---- defaults ---- */

void hf_service_defaults(hf_service *s)
{
    memset(s, 0, sizeof(*s));
    s->affinity.mode = HF_AFFINITY_COOKIE;
    s->affinity.ttl_s = 1800;
    snprintf(s->affinity.path, sizeof(s->affinity.path), "/");
    s->health_check.protocol = HF_HC_HTTP;
    snprintf(s->health_check.path, sizeof(s->health_check.path), "/healthz");
    s->health_check.interval_ms = 2000;
    s->health_check.timeout_ms = 1000;
    s->health_check.unhealthy_threshold = 3;
    s->health_check.healthy_threshold = 2;
    s->health_check.reuse_connection = true;
}

void hf_endpoint_defaults(hf_endpoint *e)
{
    memset(e, 0, sizeof(*e));
    e->weight = 1;
    e->admin_state = HF_ADMIN_ACTIVE;
    e->health = HF_HEALTH_UNKNOWN;
}

/* ---- character classes ---- */

bool hf_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 63) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Printable ASCII without quotes or backslashes, 0..max-1 characters. */
static bool label_valid(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len >= max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            return false;
        }
    }
    return true;
}

/* An RFC 6265 cookie-name token. */
static bool cookie_name_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= HF_COOKIE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c) != NULL) {
            return false;
        }
    }
    return true;
}

/* An absolute URL path without spaces, quotes, ';' or control characters. */
static bool url_path_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= HF_PATH_MAX || s[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\') {
            return false;
        }
    }
    return true;
}

/* "*", "*.example.com" or "cart.example.com": lowercase DNS labels. */
static bool domain_valid(const char *s)
{
    if (strcmp(s, "*") == 0) {
        return true;
    }
    if (strncmp(s, "*.", 2) == 0) {
        s += 2;
    }
    size_t len = strlen(s);
    if (len == 0 || len >= HF_DOMAIN_MAX - 2) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0);
        if (!ok || ++label > 63) {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

static bool zone_valid(const char *s)
{
    size_t len = strlen(s);
    if (len >= HF_SHORT_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* ---- validation ---- */

int hf_proxy_group_validate(const hf_proxy_group *g, hf_detail *d)
{
    if (!hf_name_valid(g->name)) {
        return hf_fail(d, HF_EINVAL, "name", "name must match [a-z0-9][a-z0-9-]{0,62}");
    }
    if (g->listener_port < 1 || g->listener_port > 65535) {
        return hf_fail(d, HF_EINVAL, "listener_port", "listener_port must be 1-65535");
    }
    return HF_OK;
}

static int validate_affinity(const hf_affinity *a, hf_detail *d)
{
    if (a->mode == HF_AFFINITY_NONE) {
        return HF_OK;
    }
    if (!cookie_name_valid(a->cookie_name)) {
        return hf_fail(d, HF_EINVAL, "affinity.cookie_name",
                       "cookie_name must be a cookie token of 1-63 characters");
    }
    if (a->ttl_s < HF_TTL_MIN_S || a->ttl_s > HF_TTL_MAX_S) {
        return hf_fail(d, HF_EINVAL, "affinity.ttl_s", "ttl_s must be 1-%d seconds (7 days)",
                       HF_TTL_MAX_S);
    }
    if (!url_path_valid(a->path)) {
        return hf_fail(d, HF_EINVAL, "affinity.path",
                       "path must start with '/' and hold no spaces, quotes or ';'");
    }
    if (a->strict && a->mode != HF_AFFINITY_COOKIE) {
        return hf_fail(d, HF_EINVAL, "affinity.strict", "strict applies to mode cookie only");
    }
    return HF_OK;
}

static int validate_health_check(const hf_health_check *h, hf_detail *d)
{
    if (h->protocol == HF_HC_HTTP && !url_path_valid(h->path)) {
        return hf_fail(d, HF_EINVAL, "health_check.path",
                       "path must start with '/' and hold no spaces, quotes or ';'");
    }
    for (const char *p = h->service_name; *p; p++) {
        if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\') {
            return hf_fail(d, HF_EINVAL, "health_check.service_name",
                           "service_name must be printable ASCII without spaces or quotes");
        }
    }
    if (h->service_name[0] != '\0' && h->protocol != HF_HC_GRPC) {
        return hf_fail(d, HF_EINVAL, "health_check.service_name",
                       "service_name applies to protocol grpc only");
    }
    if (h->interval_ms < HF_INTERVAL_MIN_MS || h->interval_ms > HF_INTERVAL_MAX_MS) {
        return hf_fail(d, HF_EINVAL, "health_check.interval_ms", "interval_ms must be %d-%d",
                       HF_INTERVAL_MIN_MS, HF_INTERVAL_MAX_MS);
    }
    if (h->timeout_ms < 1 || h->timeout_ms >= h->interval_ms) {
        return hf_fail(d, HF_EINVAL, "health_check.timeout_ms",
                       "timeout_ms must be at least 1 and below interval_ms (%u)", h->interval_ms);
    }
    if (h->unhealthy_threshold < HF_THRESHOLD_MIN || h->unhealthy_threshold > HF_THRESHOLD_MAX) {
        return hf_fail(d, HF_EINVAL, "health_check.unhealthy_threshold",
                       "unhealthy_threshold must be %d-%d", HF_THRESHOLD_MIN, HF_THRESHOLD_MAX);
    }
    if (h->healthy_threshold < HF_THRESHOLD_MIN || h->healthy_threshold > HF_THRESHOLD_MAX) {
        return hf_fail(d, HF_EINVAL, "health_check.healthy_threshold",
                       "healthy_threshold must be %d-%d", HF_THRESHOLD_MIN, HF_THRESHOLD_MAX);
    }
    return HF_OK;
}

static int validate_connection(const hf_connection *c, hf_detail *d)
{
    struct {
        const char *field;
        uint32_t v;
    } items[] = {
        {"connection.max_connection_age_s", c->max_connection_age_s},
        {"connection.drain_timeout_s", c->drain_timeout_s},
        {"connection.max_stream_duration_s", c->max_stream_duration_s},
    };
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        if (items[i].v > HF_DURATION_MAX_S) {
            return hf_fail(d, HF_EINVAL, items[i].field, "%s must be 0 (unset) to %d seconds",
                           items[i].field + 11, HF_DURATION_MAX_S);
        }
    }
    if ((unsigned)c->upstream_protocol > HF_UPSTREAM_AUTO) {
        return hf_fail(d, HF_EINVAL, "connection.upstream_protocol",
                       "upstream_protocol must be http1, http2 or auto");
    }
    return HF_OK;
}

static int validate_domains(const hf_service *s, hf_detail *d)
{
    for (uint32_t i = 0; i < s->n_domains; i++) {
        if (!domain_valid(s->domains[i])) {
            return hf_fail(d, HF_EINVAL, "domains",
                           "domain '%.64s' is not a lowercase DNS name (or '*', '*.name')",
                           s->domains[i]);
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(s->domains[i], s->domains[j]) == 0) {
                return hf_fail(d, HF_EINVAL, "domains", "domain '%.64s' is listed twice",
                               s->domains[i]);
            }
        }
    }
    return HF_OK;
}

int hf_service_validate(const hf_service *s, hf_detail *d)
{
    if (!hf_name_valid(s->name)) {
        return hf_fail(d, HF_EINVAL, "name", "name must match [a-z0-9][a-z0-9-]{0,62}");
    }
    if (!hf_name_valid(s->proxy_group)) {
        return hf_fail(d, HF_EINVAL, "proxy_group",
                       "proxy_group must name a proxy group ([a-z0-9][a-z0-9-]{0,62})");
    }
    int rc = validate_domains(s, d);
    if (rc == HF_OK) {
        rc = validate_affinity(&s->affinity, d);
    }
    if (rc == HF_OK) {
        rc = validate_health_check(&s->health_check, d);
    }
    if (rc == HF_OK) {
        rc = validate_connection(&s->connection, d);
    }
    for (uint32_t i = 0; rc == HF_OK && i < s->n_compatible_session_formats; i++) {
        const char *f = s->compatible_session_formats[i];
        if (f[0] == '\0' || !label_valid(f, HF_SHORT_MAX)) {
            rc = hf_fail(d, HF_EINVAL, "compatible_session_formats",
                         "session formats must be 1-127 printable characters");
        }
    }
    return rc;
}

int hf_fleet_validate(const hf_fleet *f, hf_detail *d)
{
    if (!hf_name_valid(f->name)) {
        return hf_fail(d, HF_EINVAL, "name", "name must match [a-z0-9][a-z0-9-]{0,62}");
    }
    if (!label_valid(f->version, HF_SHORT_MAX)) {
        return hf_fail(d, HF_EINVAL, "version", "version must be 0-127 printable characters");
    }
    if (!label_valid(f->session_format, HF_SHORT_MAX)) {
        return hf_fail(d, HF_EINVAL, "session_format",
                       "session_format must be 0-127 printable characters");
    }
    return HF_OK;
}

int hf_endpoint_validate(hf_endpoint *e, hf_detail *d)
{
    unsigned char bin[sizeof(struct in6_addr)];
    char norm[HF_ADDR_MAX];
    if (inet_pton(AF_INET, e->address, bin) == 1) {
        inet_ntop(AF_INET, bin, norm, sizeof(norm));
    } else if (inet_pton(AF_INET6, e->address, bin) == 1) {
        inet_ntop(AF_INET6, bin, norm, sizeof(norm));
    } else {
        return hf_fail(d, HF_EINVAL, "address", "address must be an IPv4 or IPv6 literal");
    }
    memcpy(e->address, norm, sizeof(norm));
    if (e->port < 1 || e->port > 65535) {
        return hf_fail(d, HF_EINVAL, "port", "port must be 1-65535");
    }
    if (!zone_valid(e->zone)) {
        return hf_fail(d, HF_EINVAL, "zone", "zone must be 0-127 characters of [A-Za-z0-9._-]");
    }
    if (e->weight < 1 || e->weight > HF_WEIGHT_MAX) {
        return hf_fail(d, HF_EINVAL, "weight", "weight must be 1-%d", HF_WEIGHT_MAX);
    }
    return HF_OK;
}

void hf_endpoint_id(const hf_endpoint *e, char *buf, size_t len)
{
    hf_addr_port_format(e->address, e->port, buf, len);
}

int hf_endpoint_id_parse(const char *id, char *address, size_t alen, uint32_t *port)
{
    return hf_addr_port_parse(id, address, alen, port);
}
