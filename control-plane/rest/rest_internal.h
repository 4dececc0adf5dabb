/*
 * Internals of the REST module shared by rest.c (HTTP, routing, auth), rest_json.c (mapping
 * between model structs and JSON) and rest_handlers.c (one function per route).
 * microhttpd.h is included by rest.c only; handlers see requests through these types.
 */
#ifndef HF_REST_INTERNAL_H
#define HF_REST_INTERNAL_H

#include "hf_err.h"
#include "model.h"
#include "store.h"
#include "deploy.h"
#include "restart_plan.h"
#include "xds.h"

#include <jansson.h>
#include <stdbool.h>

#define REST_MAX_PARAMS 4
#define REST_MAX_BODY (1024 * 1024)

typedef struct rest_req {
    const char *method;
    const char *path;
    const char *params[REST_MAX_PARAMS]; /* path captures in pattern order, borrowed */
    json_t *body;                        /* parsed body, or NULL when the request had none */
    enum hf_role role;                   /* the caller's role */
    char actor[HF_SHORT_MAX];            /* who acts, for audit events */
    hf_store *store;
    xds_server *xds; /* NULL when xDS is not served */
    void *conn;      /* opaque, for rest__query */
} rest_req;

typedef struct rest_resp {
    int status;
    json_t *json; /* owned; rendered as the body */
    char *text;   /* owned; used when json is NULL */
    const char *content_type;
    const void *static_body; /* a UI asset (not owned), with static_len bytes */
    size_t static_len;
    bool stream_events; /* answer with the audit log as server-sent events from stream_since */
    int64_t stream_since;
} rest_resp;

typedef void (*rest_handler_fn)(rest_req *req, rest_resp *resp);

/* A query-string argument, or NULL. */
const char *rest__query(rest_req *req, const char *key);
/* The request's Accept header, or NULL. */
const char *rest__accept(rest_req *req);

/* Sets resp to the JSON error object of DESIGN §7 with the status for code. */
void rest__error(rest_resp *resp, int code, const hf_detail *d);
/* Sets resp to an explicit status and error code name. */
void rest__error_status(rest_resp *resp, int status, const char *code, const char *field,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Sets resp to status with json (taken). */
void rest__json(rest_resp *resp, int status, json_t *json);

/* ---- JSON mapping (rest_json.c); *_apply return HF_OK or HF_EINVAL with d ---- */
/* A time (ms since the epoch) as RFC 3339, or null when 0. */
json_t *rest__time_json(int64_t ms);
json_t *rest__group_json(const hf_proxy_group *g);
json_t *rest__service_json(const hf_service *s);
json_t *rest__fleet_json(const hf_fleet *f);
json_t *rest__endpoint_json(const hf_endpoint *e);
json_t *rest__token_json(const hf_token *t);
json_t *rest__event_json(const hf_event *e);
/* A deployment with its tail samples (NULL, 0 for none) and their fit. */
json_t *rest__deployment_json(const hf_deployment *dep, const hf_tail_sample *s, size_t n);
/* Applies the members of obj onto the struct. creating=false refuses changes to immutable
 * fields (name, address, port...). Unknown and server-owned members are refused. */
int rest__group_apply(json_t *obj, hf_proxy_group *g, bool creating, hf_detail *d);
int rest__service_apply(json_t *obj, hf_service *s, bool creating, hf_detail *d);
int rest__fleet_apply(json_t *obj, hf_fleet *f, bool creating, hf_detail *d);
int rest__endpoint_apply(json_t *obj, hf_endpoint *e, bool creating, hf_detail *d);

/* Request bodies that are no model object, applied from the same field tables: types, ranges,
 * required members (HF_EINVAL naming the field), unknown members (HF_EUNKNOWN). Each sets the
 * defaults first. */
typedef struct rest_token_body {
    enum hf_role role;
    char name[HF_NAME_MAX]; /* "" when not sent */
} rest_token_body;

typedef struct rest_restart_body {
    char service[HF_NAME_MAX];
    char fleet[HF_NAME_MAX];
    char webhook_url[HF_WEBHOOK_MAX];
    bool dry_run;
    restart_plan_input in; /* endpoints and the service's connection limits are filled later */
} rest_restart_body;

int rest__token_body_apply(json_t *obj, rest_token_body *t, hf_detail *d);
int rest__deploy_plan_apply(json_t *obj, deploy_plan_input *in, hf_detail *d);
/* obj may be NULL (an action without a body): the defaults. */
int rest__deploy_action_apply(json_t *obj, deploy_action_args *a, hf_detail *d);
int rest__restart_body_apply(json_t *obj, rest_restart_body *r, hf_detail *d);
/* A route that takes no members: NULL or {} pass, anything else is refused. */
int rest__empty_body_apply(json_t *obj, hf_detail *d);
/* Whether a (restart) body asks for a dry run only: its "dry_run" member is true. */
bool rest__body_dry_run(json_t *obj);

/* ---- handlers (rest_handlers.c) ---- */
#define REST_HANDLERS(X)                                                                           \
    X(groups_list)                                                                                 \
    X(groups_create)                                                                               \
    X(groups_get)                                                                                  \
    X(groups_delete)                                                                               \
    X(services_list)                                                                               \
    X(services_create)                                                                             \
    X(services_get)                                                                                \
    X(services_patch)                                                                              \
    X(services_delete)                                                                             \
    X(fleets_list)                                                                                 \
    X(fleets_create)                                                                               \
    X(fleets_get)                                                                                  \
    X(fleets_patch)                                                                                \
    X(fleets_delete)                                                                               \
    X(endpoints_list)                                                                              \
    X(endpoints_create)                                                                            \
    X(endpoints_get)                                                                               \
    X(endpoints_patch)                                                                             \
    X(endpoints_delete)                                                                            \
    X(tokens_list)                                                                                 \
    X(tokens_create)                                                                               \
    X(tokens_delete)                                                                               \
    X(events_list)                                                                                 \
    X(proxies_list)                                                                                \
    X(proxies_config)                                                                              \
    X(health_list)                                                                                 \
    X(deployments_list)                                                                            \
    X(deployments_create)                                                                          \
    X(deployments_get)                                                                             \
    X(deployments_action)                                                                          \
    X(whoami)                                                                                      \
    X(restarts_plan)                                                                               \
    X(restarts_list)                                                                               \
    X(restarts_get)                                                                                \
    X(restarts_action)                                                                             \
    X(restarts_batch_restarted)                                                                    \
    X(ui_index)                                                                                    \
    X(ui_asset)                                                                                    \
    X(ui_favicon)                                                                                  \
    X(healthz)                                                                                     \
    X(readyz)                                                                                      \
    X(metrics)                                                                                     \
    X(replicas_list)

#define REST_DECLARE_HANDLER(name) void rest__h_##name(rest_req *req, rest_resp *resp);
REST_HANDLERS(REST_DECLARE_HANDLER)

#endif
