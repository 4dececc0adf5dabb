/*
 * One function per REST route. A handler maps the request onto model structs, validates,
 * calls the store (which makes each change one transaction) and renders the result. Routing,
 * authentication and body limits happen before (rest.c).
 */
#include "rest_internal.h"

#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "restart.h"
#include "restart_plan.h"
#include "token.h"
#include "ui_assets.h"
#include "xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Renders a list as {"items": [...]}; render(i) is called for each element. */
#define LIST_RESPONSE(resp, items, n, render_fn)                                                   \
    do {                                                                                           \
        json_t *arr_ = json_array();                                                               \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                      \
            json_array_append_new(arr_, render_fn(&(items)[i_]));                                  \
        }                                                                                          \
        json_t *obj_ = json_object();                                                              \
        json_object_set_new(obj_, "items", arr_);                                                  \
        rest__json(resp, 200, obj_);                                                               \
    } while (0)

/* ======================================================================================== */
/* proxy groups                                                                             */
/* ======================================================================================== */

void rest__h_groups_list(rest_req *req, rest_resp *resp)
{
    hf_proxy_group *items;
    size_t n;
    int rc = store_group_list(req->store, &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    LIST_RESPONSE(resp, items, n, rest__group_json);
    free(items);
}

void rest__h_groups_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_proxy_group g = {0};
    int rc = rest__group_apply(req->body, &g, true, &d);
    if (rc == HF_OK && !json_object_get(req->body, "listener_port")) {
        rc = hf_fail(&d, HF_EINVAL, "listener_port", "listener_port is required");
    }
    if (rc == HF_OK) {
        rc = hf_proxy_group_validate(&g, &d);
    }
    if (rc == HF_OK) {
        rc = store_group_create(req->store, req->actor, &g, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 201, rest__group_json(&g));
}

void rest__h_groups_get(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_proxy_group g;
    int rc = store_group_get(req->store, req->params[0], &g, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    json_t *o = rest__group_json(&g);
    hf_service *svcs;
    size_t n;
    if (store_service_list(req->store, g.name, &svcs, &n) == HF_OK) {
        json_t *names = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(names, json_string(svcs[i].name));
        }
        json_object_set_new(o, "services", names);
        free(svcs);
    }
    rest__json(resp, 200, o);
}

void rest__h_groups_delete(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    int rc = store_group_delete(req->store, req->actor, req->params[0], &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    resp->status = 204;
}

/* ======================================================================================== */
/* services                                                                                 */
/* ======================================================================================== */

void rest__h_services_list(rest_req *req, rest_resp *resp)
{
    hf_service *items;
    size_t n;
    int rc = store_service_list(req->store, rest__query(req, "proxy_group"), &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    LIST_RESPONSE(resp, items, n, rest__service_json);
    free(items);
}

void rest__h_services_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_service *s = xmalloc(sizeof(*s));
    hf_service_defaults(s);
    int rc = rest__service_apply(req->body, s, true, &d);
    if (rc == HF_OK && s->affinity.cookie_name[0] == '\0') {
        snprintf(s->affinity.cookie_name, sizeof(s->affinity.cookie_name), "hf_%.60s", s->name);
    }
    if (rc == HF_OK) {
        rc = hf_service_validate(s, &d);
    }
    if (rc == HF_OK) {
        rc = store_service_create(req->store, req->actor, s, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
    } else {
        rest__json(resp, 201, rest__service_json(s));
    }
    free(s);
}

void rest__h_services_get(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_service *s = xmalloc(sizeof(*s));
    int rc = store_service_get(req->store, req->params[0], s, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
    } else {
        rest__json(resp, 200, rest__service_json(s));
    }
    free(s);
}

void rest__h_services_patch(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_service *s = xmalloc(sizeof(*s));
    int rc = store_service_get(req->store, req->params[0], s, &d);
    if (rc == HF_OK) {
        rc = rest__service_apply(req->body, s, false, &d);
    }
    if (rc == HF_OK) {
        rc = hf_service_validate(s, &d);
    }
    if (rc == HF_OK) {
        rc = store_service_update(req->store, req->actor, s, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
    } else {
        rest__json(resp, 200, rest__service_json(s));
    }
    free(s);
}

void rest__h_services_delete(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    int rc = store_service_delete(req->store, req->actor, req->params[0], &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    resp->status = 204;
}

/* ======================================================================================== */
/* fleets                                                                                   */
/* ======================================================================================== */

void rest__h_fleets_list(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_fleet *items;
    size_t n;
    int rc = store_fleet_list(req->store, req->params[0], &items, &n, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    LIST_RESPONSE(resp, items, n, rest__fleet_json);
    free(items);
}

void rest__h_fleets_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_fleet f = {.role = HF_ROLE_STANDBY};
    snprintf(f.service, sizeof(f.service), "%s", req->params[0]);
    int rc = rest__fleet_apply(req->body, &f, true, &d);
    if (rc == HF_OK) {
        rc = hf_fleet_validate(&f, &d);
    }
    if (rc == HF_OK) {
        rc = store_fleet_create(req->store, req->actor, &f, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 201, rest__fleet_json(&f));
}

void rest__h_fleets_get(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_fleet f;
    int rc = store_fleet_get(req->store, req->params[0], req->params[1], &f, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 200, rest__fleet_json(&f));
}

void rest__h_fleets_patch(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_fleet f;
    int rc = store_fleet_get(req->store, req->params[0], req->params[1], &f, &d);
    if (rc == HF_OK) {
        rc = rest__fleet_apply(req->body, &f, false, &d);
    }
    if (rc == HF_OK) {
        rc = hf_fleet_validate(&f, &d);
    }
    if (rc == HF_OK) {
        rc = store_fleet_update(req->store, req->actor, &f, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 200, rest__fleet_json(&f));
}

void rest__h_fleets_delete(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    int rc = store_fleet_delete(req->store, req->actor, req->params[0], req->params[1], &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    resp->status = 204;
}

/* ======================================================================================== */
/* endpoints                                                                                */
/* ======================================================================================== */

/* Parses the {endpoint} path parameter; 404 when it cannot name an endpoint. */
static bool endpoint_param(rest_req *req, rest_resp *resp, hf_endpoint *e)
{
    hf_endpoint_defaults(e);
    snprintf(e->service, sizeof(e->service), "%s", req->params[0]);
    snprintf(e->fleet, sizeof(e->fleet), "%s", req->params[1]);
    if (hf_endpoint_id_parse(req->params[2], e->address, sizeof(e->address), &e->port) != HF_OK ||
        hf_endpoint_validate(e, NULL) != HF_OK) {
        rest__error_status(resp, 404, "not_found", "", "'%s' is not an endpoint id (address:port)",
                           req->params[2]);
        return false;
    }
    return true;
}

void rest__h_endpoints_list(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_endpoint *items;
    size_t n;
    int rc = store_endpoint_list(req->store, req->params[0], req->params[1], &items, &n, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    LIST_RESPONSE(resp, items, n, rest__endpoint_json);
    free(items);
}

void rest__h_endpoints_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_endpoint e;
    hf_endpoint_defaults(&e);
    snprintf(e.service, sizeof(e.service), "%s", req->params[0]);
    snprintf(e.fleet, sizeof(e.fleet), "%s", req->params[1]);
    int rc = rest__endpoint_apply(req->body, &e, true, &d);
    if (rc == HF_OK && !json_object_get(req->body, "address")) {
        rc = hf_fail(&d, HF_EINVAL, "address", "address is required");
    }
    if (rc == HF_OK && !json_object_get(req->body, "port")) {
        rc = hf_fail(&d, HF_EINVAL, "port", "port is required");
    }
    if (rc == HF_OK) {
        rc = hf_endpoint_validate(&e, &d);
    }
    if (rc == HF_OK) {
        rc = store_endpoint_create(req->store, req->actor, &e, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 201, rest__endpoint_json(&e));
}

void rest__h_endpoints_get(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_endpoint e;
    if (!endpoint_param(req, resp, &e)) {
        return;
    }
    int rc = store_endpoint_get(req->store, e.service, e.fleet, e.address, e.port, &e, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 200, rest__endpoint_json(&e));
}

void rest__h_endpoints_patch(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_endpoint e;
    if (!endpoint_param(req, resp, &e)) {
        return;
    }
    int rc = store_endpoint_get(req->store, e.service, e.fleet, e.address, e.port, &e, &d);
    if (rc == HF_OK) {
        rc = rest__endpoint_apply(req->body, &e, false, &d);
    }
    if (rc == HF_OK) {
        rc = hf_endpoint_validate(&e, &d);
    }
    if (rc == HF_OK) {
        rc = store_endpoint_update(req->store, req->actor, &e, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 200, rest__endpoint_json(&e));
}

void rest__h_endpoints_delete(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_endpoint e;
    if (!endpoint_param(req, resp, &e)) {
        return;
    }
    int rc =
        store_endpoint_delete(req->store, req->actor, e.service, e.fleet, e.address, e.port, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    resp->status = 204;
}

/* ======================================================================================== */
/* tokens                                                                                   */
/* ======================================================================================== */

void rest__h_tokens_list(rest_req *req, rest_resp *resp)
{
    hf_token *items;
    size_t n;
    int rc = store_token_list(req->store, &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    LIST_RESPONSE(resp, items, n, rest__token_json);
    free(items);
}

void rest__h_tokens_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    rest_token_body body;
    int rc = rest__token_body_apply(req->body, &body, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    char secret[HF_TOKEN_LEN + 1];
    hf_token t;
    rc = hf_token_issue(req->store, req->actor, body.role, body.name, secret, &t, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    json_t *o = rest__token_json(&t);
    json_object_set_new(o, "token", json_string(secret));
    rest__json(resp, 201, o);
}

void rest__h_tokens_delete(rest_req *req, rest_resp *resp)
{
    char *end;
    long long id = strtoll(req->params[0], &end, 10);
    if (*end != '\0' || id <= 0) {
        rest__error_status(resp, 404, "not_found", "", "'%s' is not a token id", req->params[0]);
        return;
    }
    hf_detail d = {0};
    int rc = store_token_delete(req->store, req->actor, id, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    resp->status = 204;
}

/* ======================================================================================== */
/* events, health, metrics                                                                  */
/* ======================================================================================== */

/* Parses an optional non-negative integer query argument. */
static bool query_int(rest_req *req, rest_resp *resp, const char *key, long long def, long long max,
                      long long *out)
{
    const char *v = rest__query(req, key);
    if (v == NULL) {
        *out = def;
        return true;
    }
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 0 || n > max) {
        rest__error_status(resp, 422, "invalid_field", key, "%s must be an integer 0-%lld", key,
                           max);
        return false;
    }
    *out = n;
    return true;
}

/* GET /events with before, service, action or object: the newest matching events (paging back). */
static void events_query(rest_req *req, rest_resp *resp)
{
    long long before, limit;
    if (!query_int(req, resp, "before", 0, INT64_MAX, &before) ||
        !query_int(req, resp, "limit", 100, 1000, &limit)) {
        return;
    }
    if (limit < 1) {
        rest__error_status(resp, 422, "invalid_field", "limit", "limit must be 1-1000");
        return;
    }
    hf_event_filter f = {.before = before,
                         .service = rest__query(req, "service"),
                         .action = rest__query(req, "action"),
                         .object = rest__query(req, "object"),
                         .limit = (int)limit};
    if (f.service != NULL && !hf_name_valid(f.service)) {
        rest__error_status(resp, 422, "invalid_field", "service", "service is not a valid name");
        return;
    }
    if ((f.action != NULL && strlen(f.action) > 64) ||
        (f.object != NULL && strlen(f.object) > 160)) {
        rest__error_status(resp, 422, "invalid_field", f.object ? "object" : "action",
                           "action is at most 64 characters, object at most 160");
        return;
    }
    hf_event *items;
    size_t n;
    int rc = store_event_query(req->store, &f, &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, rest__event_json(&items[i]));
    }
    /* more may be older than the first one returned when the page was full */
    json_t *next = n == (size_t)limit ? json_integer(items[0].id) : json_null();
    free(items);
    rest__json(resp, 200, json_pack("{s:o, s:o}", "items", arr, "next_before", next));
}

void rest__h_events_list(rest_req *req, rest_resp *resp)
{
    if (rest__query(req, "before") || rest__query(req, "service") || rest__query(req, "action") ||
        rest__query(req, "object")) {
        events_query(req, resp);
        return;
    }
    long long since, limit;
    if (!query_int(req, resp, "since", -1, INT64_MAX, &since) ||
        !query_int(req, resp, "limit", 100, 1000, &limit)) {
        return;
    }
    const char *stream = rest__query(req, "stream");
    const char *accept = rest__accept(req);
    if ((stream != NULL && strcmp(stream, "true") == 0) ||
        (accept != NULL && strstr(accept, "text/event-stream") != NULL)) {
        /* Live: from since, or from now when not given. */
        if (since < 0) {
            since = store_event_last_id(req->store);
        }
        resp->status = 200;
        resp->stream_events = true;
        resp->stream_since = since;
        return;
    }
    if (since < 0) {
        since = 0;
    }
    hf_event *items;
    size_t n;
    int rc = store_event_list(req->store, since, (int)limit, &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, rest__event_json(&items[i]));
    }
    json_t *o = json_object();
    json_object_set_new(o, "items", arr);
    json_object_set_new(o, "next_since", json_integer(n ? items[n - 1].id : since));
    free(items);
    rest__json(resp, 200, o);
}

static json_t *version_or_null(const char *v)
{
    return v[0] ? json_string(v) : json_null();
}

/* A string a peer chose (node id, user agent, NACK text): as it is when it is valid UTF-8,
 * otherwise escaped (hf_escape) rather than dropped with the whole object. */
static json_t *peer_string(const char *s)
{
    json_t *j = json_string(s);
    if (j == NULL) {
        char *escaped = hf_escape_dup(s);
        j = json_string(escaped);
        free(escaped);
    }
    return j;
}

/* The Envoy version a proxy announced (null if none) and, when it is older than a feature its
 * group's services use needs, one warning per such feature and service (issue 12 item 6). */
static void proxy_compat_json(hf_store *st, const xds_proxy_info *p, json_t *o)
{
    const xds_build_version *v = &p->build_version;
    json_t *warnings = json_array();
    hf_service *svcs = NULL;
    size_t n = 0;
    if (v->known && p->kind == XDS_NODE_ENVOY && p->group_known &&
        store_service_list(st, p->group, &svcs, &n) == HF_OK) {
        char out[16][XDS_COMPAT_WARNING_MAX];
        size_t k = xds_compat_warnings(v, svcs, n, out, 16);
        for (size_t i = 0; i < k; i++) {
            json_array_append_new(warnings, json_string(out[i]));
        }
    }
    free(svcs);
    json_t *ver = json_null();
    if (v->known) {
        char buf[48];
        snprintf(buf, sizeof(buf), "%u.%u.%u", v->major, v->minor, v->patch);
        ver = json_string(buf);
    }
    json_object_set_new(o, "build_version", ver);
    json_object_set_new(o, "warnings", warnings);
}

static json_t *proxy_json(hf_store *st, const xds_proxy_info *p)
{
    json_t *types = json_object();
    for (int t = 0; t < XDS_NTYPES; t++) {
        const xds_type_status *ts = &p->types[t];
        json_t *nack = json_null();
        if (ts->nack_at != 0) {
            nack = json_pack("{s:o, s:o, s:o}", "version", peer_string(ts->nack_version), "error",
                             peer_string(ts->nack_error), "at", rest__time_json(ts->nack_at));
        }
        json_object_set_new(types, xds_type_name((enum xds_type)t),
                            json_pack("{s:b, s:o, s:o, s:o, s:o, s:o}", "subscribed",
                                      ts->subscribed, "sent_version", version_or_null(ts->sent),
                                      "sent_at", rest__time_json(ts->sent_at), "acked_version",
                                      version_or_null(ts->acked), "acked_at",
                                      rest__time_json(ts->acked_at), "last_nack", nack));
        /* the version the proxy should end up with (null when unknown: delta streams) */
        json_object_set_new(json_object_get(types, xds_type_name((enum xds_type)t)),
                            "current_version", version_or_null(ts->current));
    }
    json_t *o =
        json_pack("{s:o, s:I, s:o, s:b, s:o, s:s, s:o, s:s, s:o, s:o}", "id",
                  peer_string(p->node_id), "stream_id", (json_int_t)p->stream_id, "proxy_group",
                  peer_string(p->group), "proxy_group_known", p->group_known, "user_agent",
                  peer_string(p->user_agent), "kind", xds_node_kind_name(p->kind), "peer",
                  peer_string(p->peer), "mode", p->delta ? "delta" : "sotw", "connected_since",
                  rest__time_json(p->connected_since), "types", types);
    proxy_compat_json(st, p, o);
    json_t *ignored = json_array();
    for (int i = 0; i < p->n_ignored_types; i++) {
        json_array_append_new(ignored, json_string(p->ignored_types[i]));
    }
    json_object_set_new(o, "ignored_type_urls", ignored);
    json_object_set_new(o, "api", json_string(p->api ? p->api : "ads"));
    return o;
}

void rest__h_proxies_list(rest_req *req, rest_resp *resp)
{
    json_t *arr = json_array();
    if (req->xds != NULL) {
        xds_proxy_info *items;
        size_t n;
        xds_proxies(req->xds, &items, &n);
        const char *group = rest__query(req, "proxy_group");
        for (size_t i = 0; i < n; i++) {
            if (group == NULL || strcmp(group, items[i].group) == 0) {
                json_array_append_new(arr, proxy_json(req->store, &items[i]));
            }
        }
        free(items);
    }
    rest__json(resp, 200, json_pack("{s:o}", "items", arr));
}

/* GET /api/v1/proxies/{node_id}/config: what the xDS server last sent that node (issue 12
 * item 8). The JSON text comes from the xDS module (proto3 JSON of the resources). */
void rest__h_proxies_config(rest_req *req, rest_resp *resp)
{
    char *text = NULL;
    if (req->xds == NULL || xds_proxy_config(req->xds, req->params[0], &text) != HF_OK) {
        rest__error_status(resp, 404, "not_found", "", "no connected proxy with node id '%.128s'",
                           req->params[0]);
        return;
    }
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    free(text);
    if (j == NULL) {
        rest__error_status(resp, 500, "internal", "", "cannot render the configuration: %s",
                           err.text);
        return;
    }
    rest__json(resp, 200, j);
}

void rest__h_healthz(rest_req *req, rest_resp *resp)
{
    (void)req;
    rest__json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void rest__h_readyz(rest_req *req, rest_resp *resp)
{
    int version = store_schema_version(req->store);
    bool reachable = store_ping(req->store) == HF_OK;
    bool ready = reachable && version == store_schema_latest();
    json_t *body = json_pack("{s:s, s:i, s:s, s:b}", "status", ready ? "ready" : "not_ready",
                             "schema_version", version, "database", store_backend_name(req->store),
                             "leader", store_is_leader(req->store));
    if (!reachable) {
        json_object_set_new(body, "reason", json_string("the database is unavailable"));
        int64_t since = store_unavailable_since(req->store);
        if (since > 0) {
            json_object_set_new(body, "unavailable_since", rest__time_json(since));
        }
    }
    rest__json(resp, ready ? 200 : 503, body);
}

void rest__h_metrics(rest_req *req, rest_resp *resp)
{
    (void)req;
    resp->status = 200;
    resp->text = hf_metrics_render();
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ======================================================================================== */
/* deployments                                                                              */
/* ======================================================================================== */

static void render_deployment(rest_req *req, rest_resp *resp, int status, const hf_deployment *dep)
{
    hf_tail_sample *s = NULL;
    size_t n = 0;
    store_tail_list(req->store, dep->id, &s, &n);
    rest__json(resp, status, rest__deployment_json(dep, s ? s : (hf_tail_sample[1]){0}, n));
    free(s);
}

void rest__h_deployments_create(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    deploy_plan_input in;
    hf_deployment dep;
    int rc = rest__deploy_plan_apply(req->body, &in, &d);
    if (rc == HF_OK) {
        rc = deploy_plan(req->store, req->actor, &in, &dep, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_deployment(req, resp, 201, &dep);
}

/* A deployment in a list: without its tail samples. */
static json_t *deployment_summary_json(const hf_deployment *dep)
{
    return rest__deployment_json(dep, NULL, 0);
}

void rest__h_deployments_list(rest_req *req, rest_resp *resp)
{
    hf_deployment *items;
    size_t n;
    const char *running = rest__query(req, "running");
    int rc = store_deployment_list(req->store, rest__query(req, "service"),
                                   running != NULL && strcmp(running, "true") == 0, &items, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    LIST_RESPONSE(resp, items, n, deployment_summary_json);
    free(items);
}

void rest__h_deployments_get(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    hf_deployment dep;
    int rc = store_deployment_get(req->store, req->params[0], &dep, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_deployment(req, resp, 200, &dep);
}

void rest__h_deployments_action(rest_req *req, rest_resp *resp)
{
    enum deploy_action action;
    if (deploy_action_parse(req->params[1], &action) != 0) {
        rest__error_status(resp, 404, "not_found", "",
                           "no action '%s' (lower-ttl, cutover, finish, extend, rollback, abort)",
                           req->params[1]);
        return;
    }
    hf_detail d = {0};
    deploy_action_args args;
    hf_deployment dep;
    int rc = rest__deploy_action_apply(req->body, &args, &d);
    if (rc == HF_OK) {
        rc = deploy_act(req->store, req->actor, req->params[0], action, &args, &dep, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_deployment(req, resp, 200, &dep);
}

/* ======================================================================================== */
/* health                                                                                   */
/* ======================================================================================== */

/* Orders a verdict against an endpoint as both lists are sorted (service, address, port). */
static int verdict_cmp(const hf_verdict *v, const hf_endpoint *e)
{
    int c = strcmp(v->service, e->service);
    c = c ? c : strcmp(v->address, e->address);
    return c ? c : (v->port > e->port) - (v->port < e->port);
}

void rest__h_health_list(rest_req *req, rest_resp *resp)
{
    hf_endpoint *eps;
    size_t ne;
    hf_verdict *vs;
    size_t nv;
    if (store_endpoint_list_all(req->store, &eps, &ne) != HF_OK) {
        rest__error(resp, HF_EDB, NULL);
        return;
    }
    if (store_verdict_list(req->store, &vs, &nv) != HF_OK) {
        free(eps);
        rest__error(resp, HF_EDB, NULL);
        return;
    }
    const char *only = rest__query(req, "service");
    json_t *arr = json_array();
    size_t first = 0; /* both lists are sorted alike: one merge walk */
    for (size_t i = 0; i < ne; i++) {
        while (first < nv && verdict_cmp(&vs[first], &eps[i]) < 0) {
            first++;
        }
        if (only != NULL && strcmp(only, eps[i].service) != 0) {
            continue;
        }
        json_t *o = rest__endpoint_json(&eps[i]);
        json_t *verdicts = json_array();
        for (size_t j = first; j < nv && verdict_cmp(&vs[j], &eps[i]) == 0; j++) {
            json_array_append_new(verdicts,
                                  json_pack("{s:s, s:s, s:o, s:s}", "checker", vs[j].checker,
                                            "verdict", hf_health_name(vs[j].verdict), "at",
                                            rest__time_json(vs[j].at), "reason", vs[j].reason));
        }
        json_object_set_new(o, "verdicts", verdicts);
        json_t *assigned = json_array();
        if (req->xds != NULL) {
            char names[5][128];
            int n =
                xds_assignments(req->xds, eps[i].service, eps[i].address, eps[i].port, names, 5);
            for (int k = 0; k < n; k++) {
                json_array_append_new(assigned, json_string(names[k]));
            }
        }
        json_object_set_new(o, "checkers", assigned);
        json_array_append_new(arr, o);
    }
    free(eps);
    free(vs);
    json_t *checkers = json_array();
    if (req->xds != NULL) {
        xds_checker_info *cs;
        size_t nc;
        xds_checkers(req->xds, &cs, &nc);
        for (size_t i = 0; i < nc; i++) {
            json_array_append_new(checkers, json_pack("{s:o, s:o, s:o, s:I, s:o}", "node_id",
                                                      peer_string(cs[i].node_id), "zone",
                                                      peer_string(cs[i].zone), "connected_since",
                                                      rest__time_json(cs[i].connected_since),
                                                      "endpoints", (json_int_t)cs[i].endpoints,
                                                      "replica", peer_string(cs[i].replica)));
        }
        free(cs);
    }
    rest__json(resp, 200, json_pack("{s:o, s:o}", "endpoints", arr, "checkers", checkers));
}

/* ======================================================================================== */
/* the web UI                                                                               */
/* ======================================================================================== */

static void serve_asset(rest_resp *resp, const char *path)
{
    for (size_t i = 0; i < hf_ui_n_assets; i++) {
        if (strcmp(hf_ui_assets[i].path, path) == 0) {
            resp->status = 200;
            resp->static_body = hf_ui_assets[i].data;
            resp->static_len = hf_ui_assets[i].len;
            resp->content_type = hf_ui_assets[i].content_type;
            return;
        }
    }
    rest__error_status(resp, 404, "not_found", "", "no UI file %s", path);
}

void rest__h_ui_index(rest_req *req, rest_resp *resp)
{
    (void)req;
    serve_asset(resp, "/");
}

void rest__h_ui_asset(rest_req *req, rest_resp *resp)
{
    char path[128];
    snprintf(path, sizeof(path), "/ui/%.100s", req->params[0]);
    serve_asset(resp, path);
}

void rest__h_ui_favicon(rest_req *req, rest_resp *resp)
{
    (void)req;
    serve_asset(resp, "/favicon.ico");
}

void rest__h_whoami(rest_req *req, rest_resp *resp)
{
    rest__json(resp, 200,
               json_pack("{s:s, s:s}", "role", hf_role_name(req->role), "actor", req->actor));
}

/* ======================================================================================== */
/* rolling restarts: the planner                                                            */
/* ======================================================================================== */

static json_t *restart_json(const hf_restart *r, const hf_restart_batch *b, size_t nb)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:o, s:o, s:o}", "id", r->id,
        "service", r->service, "fleet", r->fleet, "state", hf_restart_state_name(r->state),
        "batch_size", (int)r->batch_size, "batches", (int)r->batches, "interval_s",
        (int)r->interval_s, "drain_window_s", (int)r->drain_window_s, "restart_s",
        (int)r->restart_s, "concurrent_batches", (int)r->concurrent_batches, "webhook_url",
        r->webhook_url, "created_at", rest__time_json(r->created_at), "updated_at",
        rest__time_json(r->updated_at), "finished_at", rest__time_json(r->finished_at));
    if (b != NULL) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nb; i++) {
            json_t *eps = json_array();
            for (uint32_t k = 0; k < b[i].n_endpoints; k++) {
                json_array_append_new(eps, json_string(b[i].endpoints[k]));
            }
            json_array_append_new(
                arr, json_pack("{s:i, s:s, s:o, s:o, s:o, s:o, s:o, s:i, s:b, s:b}", "n",
                               (int)b[i].n, "state", hf_batch_state_name(b[i].state), "endpoints",
                               eps, "started_at", rest__time_json(b[i].started_at), "ready_at",
                               rest__time_json(b[i].ready_at), "restarted_at",
                               rest__time_json(b[i].restarted_at), "done_at",
                               rest__time_json(b[i].done_at), "webhook_attempts",
                               (int)b[i].webhook_attempts, "webhook_ok", b[i].webhook_ok,
                               "drained_early", b[i].drained_early));
        }
        json_object_set_new(o, "batch_list", arr);
    }
    return o;
}

static void render_restart(rest_req *req, rest_resp *resp, int status, const char *id)
{
    hf_detail d = {0};
    hf_restart r;
    hf_restart_batch *b;
    size_t nb;
    int rc = store_restart_get(req->store, id, &r, &b, &nb, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, status, restart_json(&r, b, nb));
    free(b);
}

/* A restart in a list: without its batches. */
static json_t *restart_summary_json(const hf_restart *r)
{
    return restart_json(r, NULL, 0);
}

void rest__h_restarts_list(rest_req *req, rest_resp *resp)
{
    hf_restart *rs;
    size_t n;
    int rc = store_restart_list(req->store, false, &rs, &n);
    if (rc != HF_OK) {
        rest__error(resp, rc, NULL);
        return;
    }
    LIST_RESPONSE(resp, rs, n, restart_summary_json);
    free(rs);
}

void rest__h_restarts_get(rest_req *req, rest_resp *resp)
{
    render_restart(req, resp, 200, req->params[0]);
}

void rest__h_restarts_action(rest_req *req, rest_resp *resp)
{
    enum restart_action a;
    if (restart_action_parse(req->params[1], &a) != 0) {
        rest__error_status(resp, 404, "not_found", "", "no action '%s' (pause, resume, abort)",
                           req->params[1]);
        return;
    }
    hf_detail d = {0};
    int rc = rest__empty_body_apply(req->body, &d);
    if (rc == HF_OK) {
        rc = restart_act(req->store, req->actor, req->params[0], a, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_restart(req, resp, 200, req->params[0]);
}

void rest__h_restarts_batch_restarted(rest_req *req, rest_resp *resp)
{
    char *end;
    unsigned long n = strtoul(req->params[1], &end, 10);
    hf_detail d = {0};
    int rc = rest__empty_body_apply(req->body, &d);
    if (rc == HF_OK) {
        rc = *end != '\0'
                 ? hf_fail(&d, HF_ENOTFOUND, "", "'%s' is not a batch number", req->params[1])
                 : restart_batch_restarted(req->store, req->actor, req->params[0], (uint32_t)n, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_restart(req, resp, 200, req->params[0]);
}

/* A dry run: the plan for the fleet as it is now, nothing stored. */
static void restart_dry_run(rest_req *req, rest_resp *resp, const rest_restart_body *body)
{
    hf_detail d = {0};
    const char *service = body->service, *fleet = body->fleet;
    restart_plan_input in = body->in;
    hf_service svc;
    hf_endpoint *eps;
    size_t n;
    int rc = store_service_get(req->store, service, &svc, &d);
    if (rc == HF_OK) {
        rc = store_endpoint_list(req->store, service, fleet, &eps, &n, &d);
    }
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        in.endpoints += eps[i].admin_state != HF_ADMIN_DISABLED;
    }
    free(eps);
    in.max_connection_age_s = svc.connection.max_connection_age_s;
    in.drain_timeout_s = svc.connection.drain_timeout_s;
    restart_plan p;
    rc = restart_plan_compute(&in, &p, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    rest__json(resp, 200,
               json_pack("{s:b, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:i, s:i, s:f, s:i, s:i, s:i, "
                         "s:i, s:s}",
                         "dry_run", 1, "service", service, "fleet", fleet, "endpoints",
                         (int)in.endpoints, "avg_connection_s", (int)in.avg_connection_s,
                         "max_connection_age_s", (int)in.max_connection_age_s, "drain_timeout_s",
                         (int)in.drain_timeout_s, "max_disconnect_pct", in.max_disconnect_pct,
                         "batch_size", (int)p.batch_size, "batches", (int)p.batches,
                         "disconnect_pct", p.disconnect_pct, "drain_window_s",
                         (int)p.drain_window_s, "concurrent_batches", (int)p.concurrent_batches,
                         "interval_s", (int)p.interval_s, "total_s", (int)p.total_s, "explanation",
                         p.explanation));
}

/* The route table lets a viewer through only when dry_run is true (rest.c); starting a restart
 * needs the operator role. */
void rest__h_restarts_plan(rest_req *req, rest_resp *resp)
{
    hf_detail d = {0};
    rest_restart_body body;
    int rc = rest__restart_body_apply(req->body, &body, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    if (body.dry_run) {
        restart_dry_run(req, resp, &body);
        return;
    }
    hf_restart r;
    rc = restart_start(req->store, req->actor, body.service, body.fleet, &body.in, body.webhook_url,
                       &r, &d);
    if (rc != HF_OK) {
        rest__error(resp, rc, &d);
        return;
    }
    render_restart(req, resp, 201, r.id);
}
