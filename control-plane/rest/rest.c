/*
 * The REST server: libmicrohttpd (thread per connection), the route table, authentication and
 * roles, request bodies (1 MiB limit, JSON parsed once), error objects and request metrics.
 * The handlers themselves are in rest_handlers.c.
 */
#include "rest.h"

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "rest_guard.h"
#include "rest_internal.h"
#include "rest_tls.h"
#include "timeutil.h"
#include "token.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rest_server {
    struct MHD_Daemon *daemon;
    atomic_bool stopping; /* event streams end */
    hf_store *store;
    xds_server *xds;
    bool loopback;
    uint16_t port;
    rest_guard guard;     /* Host, Origin, Content-Type and length checks (rest_guard.c) */
    atomic_int streams;   /* event streams open, at most REST_MAX_STREAMS */
    struct rest_tls *tls; /* NULL: plain HTTP */
    /* Event streams wait for new audit events on ev_cond: the store's event hook (called with
     * the store's lock held) bumps ev_gen. Lock order: store lock -> ev_lock; ev_lock is a leaf
     * and is never held while calling the store. */
    pthread_mutex_t ev_lock;
    pthread_cond_t ev_cond; /* CLOCK_MONOTONIC */
    uint64_t ev_gen;        /* under ev_lock: commits that wrote events */
    hf_metric *requests;    /* holdfast_http_requests_total{method,route,status} */
    hf_metric *latency;     /* holdfast_http_request_seconds{route} */
};

/* Connection bounds (issue 14): one client address cannot take the whole pool, a connection
 * that sends nothing is dropped after a few seconds, and event streams have their own cap. */
#define REST_MAX_CONNECTIONS 512u
#define REST_MAX_PER_CLIENT 64u
#define REST_IDLE_TIMEOUT_S 10u
#define REST_STREAM_TIMEOUT_S 60u
#define REST_MAX_STREAMS 32

/* ---- the route table ---- */

enum access { OPEN, VIEWER, OPERATOR, ADMIN };

/* What a route does with a request body. Whatever is sent must be JSON (400 otherwise). */
enum body {
    NO_BODY,   /* none expected (GET, DELETE); the handler ignores one */
    OPT_BODY,  /* optional; when sent, a JSON object (422 otherwise) checked by the handler */
    NEED_BODY, /* required (400 when absent), a JSON object (422 otherwise) */
};

/* One route. Access and body rules are enforced here, before the handler runs: a handler
 * never checks roles or the presence of a body itself. */
struct route {
    const char *method;
    const char *pattern;
    rest_handler_fn handler;
    enum access access;
    enum body body;
    enum access dry_run_access; /* when != OPEN: enough when the body's dry_run is true */
};

#define API "/api/v1"
#define SVC API "/services/{service}"
#define FLEET SVC "/fleets/{fleet}"
static const struct route routes[] = {
    {"GET", API "/proxy-groups", rest__h_groups_list, VIEWER, .body = NO_BODY},
    {"POST", API "/proxy-groups", rest__h_groups_create, ADMIN, .body = NEED_BODY},
    {"GET", API "/proxy-groups/{group}", rest__h_groups_get, VIEWER, .body = NO_BODY},
    {"DELETE", API "/proxy-groups/{group}", rest__h_groups_delete, ADMIN, .body = NO_BODY},
    {"GET", API "/services", rest__h_services_list, VIEWER, .body = NO_BODY},
    {"POST", API "/services", rest__h_services_create, ADMIN, .body = NEED_BODY},
    {"GET", SVC, rest__h_services_get, VIEWER, .body = NO_BODY},
    {"PATCH", SVC, rest__h_services_patch, ADMIN, .body = NEED_BODY},
    {"DELETE", SVC, rest__h_services_delete, ADMIN, .body = NO_BODY},
    {"GET", SVC "/fleets", rest__h_fleets_list, VIEWER, .body = NO_BODY},
    {"POST", SVC "/fleets", rest__h_fleets_create, ADMIN, .body = NEED_BODY},
    {"GET", FLEET, rest__h_fleets_get, VIEWER, .body = NO_BODY},
    {"PATCH", FLEET, rest__h_fleets_patch, ADMIN, .body = NEED_BODY},
    {"DELETE", FLEET, rest__h_fleets_delete, ADMIN, .body = NO_BODY},
    {"GET", FLEET "/endpoints", rest__h_endpoints_list, VIEWER, .body = NO_BODY},
    {"POST", FLEET "/endpoints", rest__h_endpoints_create, OPERATOR, .body = NEED_BODY},
    {"GET", FLEET "/endpoints/{endpoint}", rest__h_endpoints_get, VIEWER, .body = NO_BODY},
    {"PATCH", FLEET "/endpoints/{endpoint}", rest__h_endpoints_patch, OPERATOR, .body = NEED_BODY},
    {"DELETE", FLEET "/endpoints/{endpoint}", rest__h_endpoints_delete, OPERATOR, .body = NO_BODY},
    {"GET", API "/tokens", rest__h_tokens_list, ADMIN, .body = NO_BODY},
    {"POST", API "/tokens", rest__h_tokens_create, ADMIN, .body = NEED_BODY},
    {"DELETE", API "/tokens/{token}", rest__h_tokens_delete, ADMIN, .body = NO_BODY},
    {"GET", API "/events", rest__h_events_list, VIEWER, .body = NO_BODY},
    {"GET", API "/whoami", rest__h_whoami, VIEWER, .body = NO_BODY},
    {"GET", API "/proxies", rest__h_proxies_list, VIEWER, .body = NO_BODY},
    {"GET", API "/proxies/{node_id}/config", rest__h_proxies_config, VIEWER, .body = NO_BODY},
    {"GET", API "/health", rest__h_health_list, VIEWER, .body = NO_BODY},
    /* A dry run only plans (viewer); starting a restart needs the operator role. */
    {"POST", API "/restarts", rest__h_restarts_plan, OPERATOR, .body = NEED_BODY,
     .dry_run_access = VIEWER},
    {"GET", API "/restarts", rest__h_restarts_list, VIEWER, .body = NO_BODY},
    {"GET", API "/restarts/{restart}", rest__h_restarts_get, VIEWER, .body = NO_BODY},
    {"POST", API "/restarts/{restart}/{action}", rest__h_restarts_action, OPERATOR,
     .body = OPT_BODY},
    {"POST", API "/restarts/{restart}/batches/{batch}/restarted", rest__h_restarts_batch_restarted,
     OPERATOR, .body = OPT_BODY},
    {"GET", API "/deployments", rest__h_deployments_list, VIEWER, .body = NO_BODY},
    {"POST", API "/deployments", rest__h_deployments_create, OPERATOR, .body = NEED_BODY},
    {"GET", API "/deployments/{deployment}", rest__h_deployments_get, VIEWER, .body = NO_BODY},
    {"POST", API "/deployments/{deployment}/{action}", rest__h_deployments_action, OPERATOR,
     .body = OPT_BODY},
    {"GET", "/healthz", rest__h_healthz, OPEN, .body = NO_BODY},
    {"GET", "/readyz", rest__h_readyz, OPEN, .body = NO_BODY},
    {"GET", "/metrics", rest__h_metrics, OPEN, .body = NO_BODY},
    {"GET", "/", rest__h_ui_index, OPEN, .body = NO_BODY},
    {"GET", "/ui/{asset}", rest__h_ui_asset, OPEN, .body = NO_BODY},
    {"GET", "/favicon.ico", rest__h_ui_favicon, OPEN, .body = NO_BODY},
    {"GET", API "/replicas", rest__h_replicas_list, VIEWER, .body = NO_BODY},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

const rest_route_info *rest_routes(size_t *n)
{
    static rest_route_info info[N_ROUTES];
    for (size_t i = 0; i < N_ROUTES; i++) {
        info[i].method = routes[i].method;
        info[i].pattern = routes[i].pattern;
    }
    *n = N_ROUTES;
    return info;
}

#define MAX_SEGMENTS 12

/* Splits an absolute path in place into its segments; returns their count, or 0 when the path
 * is not absolute or has too many segments. */
static size_t split(char *s, char **segs)
{
    if (*s != '/') {
        return 0;
    }
    size_t n = 0;
    for (s++; n < MAX_SEGMENTS; n++) {
        segs[n] = s;
        char *slash = strchr(s, '/');
        if (slash == NULL) {
            return n + 1;
        }
        *slash = '\0';
        s = slash + 1;
    }
    return 0;
}

/* Matches the split request path against pattern; on a match, req->params point at the
 * captured segments. A {param} never matches an empty segment. */
static bool match(const char *pattern, char **segs, size_t nsegs, rest_req *req)
{
    char copy[256];
    char *psegs[MAX_SEGMENTS];
    snprintf(copy, sizeof(copy), "%s", pattern);
    size_t np = split(copy, psegs);
    if (np != nsegs) {
        return false;
    }
    size_t nparams = 0;
    for (size_t i = 0; i < np; i++) {
        if (psegs[i][0] == '{') {
            if (segs[i][0] == '\0' || nparams == REST_MAX_PARAMS) {
                return false;
            }
            req->params[nparams++] = segs[i];
        } else if (strcmp(psegs[i], segs[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* ---- responses ---- */

void rest__json(rest_resp *resp, int status, json_t *json)
{
    json_decref(resp->json);
    resp->status = status;
    resp->json = json;
}

void rest__error_status(rest_resp *resp, int status, const char *code, const char *field,
                        const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (field != NULL && field[0] != '\0') {
        json_object_set_new(err, "field", json_string(field));
    }
    rest__json(resp, status, json_pack("{s:o}", "error", err));
}

void rest__error(rest_resp *resp, int code, const hf_detail *d)
{
    const char *field = d ? d->field : "";
    const char *message = d && d->message[0] ? d->message : "internal error";
    switch (code) {
    case HF_EINVAL:
        rest__error_status(resp, 422, "invalid_field", field, "%s", message);
        break;
    case HF_EUNKNOWN:
        rest__error_status(resp, 422, "unknown_field", field, "%s", message);
        break;
    case HF_ENOTFOUND:
        rest__error_status(resp, 404, "not_found", field, "%s", message);
        break;
    case HF_ECONFLICT:
        rest__error_status(resp, 409, "conflict", field, "%s", message);
        break;
    case HF_EDB: /* the database is unreachable or failed: try again later (docs/ha.md) */
        rest__error_status(resp, 503, "unavailable", "", "%s", message);
        break;
    default:
        rest__error_status(resp, 500, "internal", "", "%s", message);
        break;
    }
}

/* ---- request lifecycle ---- */

struct request_state {
    hf_buf body;
    bool too_big;
    bool refused;      /* refused on its headers (rest_guard.c): the body is discarded */
    bool answered;     /* the refusal is queued */
    rest_resp refusal; /* what to answer when refused */
    uint64_t start_ns;
};

const char *rest__query(rest_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *rest__accept(rest_req *req)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Accept");
}

static const char *const access_names[] = {"open", "viewer", "operator", "admin"};

/* Resolves the caller's role (401 when a token is needed and missing or wrong). Returns true
 * when the request may proceed; authorize() then checks the role against the route. */
static bool authenticate(struct rest_server *srv, struct MHD_Connection *conn,
                         const struct route *r, rest_req *req, rest_resp *resp)
{
    req->role = HF_TOKEN_ADMIN;
    snprintf(req->actor, sizeof(req->actor), "anonymous");
    if (r->access == OPEN) {
        return true;
    }
    int64_t ntokens = store_token_count(srv->store);
    if (ntokens == 0 && srv->loopback) {
        return true; /* open on loopback until the first token exists */
    }
    if (ntokens < 0) {
        rest__error_status(resp, 503, "unavailable", "",
                           "the database is unavailable; try again shortly");
        return false;
    }
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
        rest__error_status(resp, 401, "unauthorized", "",
                           "this API needs a bearer token (Authorization: Bearer hf_...)");
        return false;
    }
    char hash[HF_TOKEN_HASH_LEN];
    hf_token_hash(auth + 7, hash);
    hf_token t;
    int found = store_token_lookup(srv->store, hash, &t);
    if (found == HF_EDB) {
        rest__error_status(resp, 503, "unavailable", "",
                           "the database is unavailable; try again shortly");
        return false;
    }
    if (found != HF_OK) {
        rest__error_status(resp, 401, "unauthorized", "", "the bearer token is not valid");
        return false;
    }
    req->role = t.role;
    snprintf(req->actor, sizeof(req->actor), "token:%lld%s%s", (long long)t.id,
             t.name[0] ? ":" : "", t.name);
    return true;
}

/* Checks the caller's role against the route (403). A route with a dry_run_access lets that
 * role through when the (parsed) body asks for a dry run only. */
static bool authorize(const struct route *r, rest_req *req, rest_resp *resp)
{
    enum access need = r->access;
    if (r->dry_run_access != OPEN && rest__body_dry_run(req->body)) {
        need = r->dry_run_access;
    }
    if (need == OPEN || (int)req->role + 1 >= (int)need) {
        return true;
    }
    rest__error_status(resp, 403, "forbidden", "",
                       "this action needs the %s role%s; the token has %s", access_names[need],
                       r->dry_run_access != OPEN ? " (a dry run needs less)" : "",
                       hf_role_name(req->role));
    return false;
}

/* Checks the parsed body against the route: present when needed (400), an object (422). */
static bool check_body(const struct route *r, rest_req *req, rest_resp *resp)
{
    if (r->body == NEED_BODY && req->body == NULL) {
        rest__error_status(resp, 400, "malformed_json", "", "this request needs a JSON body");
        return false;
    }
    if (r->body != NO_BODY && req->body != NULL && !json_is_object(req->body)) {
        rest__error_status(resp, 422, "invalid_field", "", "the body must be a JSON object");
        return false;
    }
    return true;
}

/* Finds the route for method and path; sets *path_matched when a route has the path only. */
static const struct route *route_find(const char *method, char **segs, size_t nsegs, rest_req *req,
                                      bool *path_matched)
{
    *path_matched = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!match(routes[i].pattern, segs, nsegs, req)) {
            continue;
        }
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
            return &routes[i]; /* HEAD: the GET route; libmicrohttpd leaves the body out */
        }
        *path_matched = true;
    }
    return NULL;
}

/* Parses the body when there is one; false (and a 400) when it is not JSON. */
static bool parse_body(struct request_state *rs, rest_req *req, rest_resp *resp)
{
    if (rs->body.len == 0) {
        return true;
    }
    json_error_t err;
    req->body = json_loadb(rs->body.data, rs->body.len, JSON_REJECT_DUPLICATES, &err);
    if (req->body == NULL) {
        rest__error_status(resp, 400, "malformed_json", "",
                           "the body is not valid JSON: %s (line %d, column %d)", err.text,
                           err.line, err.column);
        return false;
    }
    return true;
}

/* Routes, authenticates and runs one request; returns the route label for metrics. */
static const char *dispatch(struct rest_server *srv, struct MHD_Connection *conn, const char *url,
                            const char *method, struct request_state *rs, rest_req *req,
                            rest_resp *resp)
{
    char path[2048];
    char *segs[MAX_SEGMENTS];
    size_t nsegs = 0;
    if (strlen(url) < sizeof(path)) {
        snprintf(path, sizeof(path), "%s", url);
        nsegs = split(path, segs);
    }
    bool path_matched;
    const struct route *r = nsegs ? route_find(method, segs, nsegs, req, &path_matched) : NULL;
    if (r == NULL) {
        if (nsegs && path_matched) {
            rest__error_status(resp, 405, "method_not_allowed", "", "%s is not allowed on %s",
                               method, url);
            return "unmatched";
        }
        rest__error_status(resp, 404, "not_found", "", "no such route: %s %s", method, url);
        return "unmatched";
    }
    if (rs->too_big) { /* chunked: no Content-Length announced it */
        rest__error_status(resp, 413, "too_large", "", "the body is larger than %d bytes",
                           REST_MAX_BODY);
        return r->pattern;
    }
    /* A route whose role depends on the body is authorized once the body is parsed. */
    bool by_body = r->dry_run_access != OPEN;
    if (authenticate(srv, conn, r, req, resp) && (by_body || authorize(r, req, resp)) &&
        parse_body(rs, req, resp) && (!by_body || authorize(r, req, resp)) &&
        check_body(r, req, resp)) {
        r->handler(req, resp);
    }
    return r->pattern;
}

/* ---- server-sent events: the audit log, live ---- */

#define KEEPALIVE_MS 10000

/* CLOCK_MONOTONIC in ms, the clock ev_cond waits on. */
static int64_t mono_ms(void)
{
    return (int64_t)(hf_mono_ns() / 1000000u);
}

struct event_stream {
    struct rest_server *srv;
    int64_t since;
    hf_buf pending;
    size_t off;
    int64_t last_write_ms;
};

static void format_events(struct event_stream *es, const hf_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *j = rest__event_json(&ev[i]);
        char *text = json_dumps(j, JSON_COMPACT);
        hf_buf_printf(&es->pending, "id: %lld\nevent: audit\ndata: %s\n\n", (long long)ev[i].id,
                      text);
        free(text);
        json_decref(j);
        es->since = ev[i].id;
    }
}

/* The store's event hook: wakes every event stream. Store lock held; ev_lock is a leaf. */
static void on_events(void *arg)
{
    struct rest_server *srv = arg;
    pthread_mutex_lock(&srv->ev_lock);
    srv->ev_gen++;
    pthread_cond_broadcast(&srv->ev_cond);
    pthread_mutex_unlock(&srv->ev_lock);
}

/* Waits until events were committed after generation seen, the server stops, or deadline_ms
 * (mono_ms time) passes. */
static void wait_events(struct rest_server *srv, uint64_t seen, int64_t deadline_ms)
{
    struct timespec until = {.tv_sec = (time_t)(deadline_ms / 1000),
                             .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
    pthread_mutex_lock(&srv->ev_lock);
    while (srv->ev_gen == seen && !atomic_load(&srv->stopping)) {
        if (pthread_cond_timedwait(&srv->ev_cond, &srv->ev_lock, &until) != 0) {
            break; /* the deadline */
        }
    }
    pthread_mutex_unlock(&srv->ev_lock);
}

static uint64_t events_seen(struct rest_server *srv)
{
    pthread_mutex_lock(&srv->ev_lock);
    uint64_t g = srv->ev_gen;
    pthread_mutex_unlock(&srv->ev_lock);
    return g;
}

/* Feeds the stream: new events as they are committed (woken by the store's event hook, no
 * polling), a comment every 10 s so proxies and browsers keep the connection. Blocks: one
 * thread per connection. */
static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct event_stream *es = cls;
    for (;;) {
        if (es->off < es->pending.len) {
            size_t n = es->pending.len - es->off;
            n = n < max ? n : max;
            memcpy(buf, es->pending.data + es->off, n);
            es->off += n;
            return (ssize_t)n;
        }
        hf_buf_destroy(&es->pending);
        es->off = 0;
        if (atomic_load(&es->srv->stopping)) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Read the generation first: an event committed after it wakes the wait below. */
        uint64_t seen = events_seen(es->srv);
        hf_event *ev;
        size_t n = 0;
        if (store_event_list(es->srv->store, es->since, 200, &ev, &n) == HF_OK) {
            format_events(es, ev, n);
            free(ev);
        }
        int64_t now = mono_ms();
        if (es->pending.len == 0 && now - es->last_write_ms >= KEEPALIVE_MS) {
            hf_buf_puts(&es->pending, ": keep-alive\n\n");
        }
        if (es->pending.len > 0) {
            es->last_write_ms = now;
            continue;
        }
        wait_events(es->srv, seen, es->last_write_ms + KEEPALIVE_MS);
    }
}

static void free_events(void *cls)
{
    struct event_stream *es = cls;
    atomic_fetch_sub(&es->srv->streams, 1);
    hf_buf_destroy(&es->pending);
    free(es);
}

/* Headers every page of the UI gets: no inline script, no framing, no sniffing. */
static void ui_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

static enum MHD_Result send_response(struct MHD_Connection *conn, rest_resp *resp);

static enum MHD_Result send_special(struct rest_server *srv, struct MHD_Connection *conn,
                                    rest_resp *resp)
{
    struct MHD_Response *r;
    if (resp->stream_events && atomic_fetch_add(&srv->streams, 1) >= REST_MAX_STREAMS) {
        atomic_fetch_sub(&srv->streams, 1);
        resp->stream_events = false;
        rest__error_status(resp, 503, "busy", "", "too many event streams are open (at most %d)",
                           REST_MAX_STREAMS);
        return send_response(conn, resp);
    }
    if (resp->stream_events) {
        /* The stream writes at least every 10 s; the short idle timeout is for requests. */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, REST_STREAM_TIMEOUT_S);
        struct event_stream *es = xcalloc(1, sizeof(*es));
        es->srv = srv;
        es->since = resp->stream_since;
        es->last_write_ms = -KEEPALIVE_MS; /* a first comment at once: the client knows */
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_events, es, free_events);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    } else {
        r = MHD_create_response_from_buffer(resp->static_len, (void *)resp->static_body,
                                            MHD_RESPMEM_PERSISTENT);
        char type[96];
        bool text = strncmp(resp->content_type, "text/", 5) == 0;
        snprintf(type, sizeof(type), "%s%s", resp->content_type, text ? "; charset=utf-8" : "");
        MHD_add_response_header(r, "Content-Type", type);
        ui_headers(r);
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, rest_resp *resp)
{
    char *body = NULL;
    const char *type = resp->content_type ? resp->content_type : "application/json";
    if (resp->json != NULL) {
        body = json_dumps(resp->json, JSON_COMPACT);
        hf_buf b = {0};
        hf_buf_puts(&b, body);
        hf_buf_puts(&b, "\n");
        free(body);
        body = hf_buf_take(&b);
    } else if (resp->text != NULL) {
        body = resp->text;
        resp->text = NULL;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (char *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (body != NULL) {
        MHD_add_response_header(r, "Content-Type", type);
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (resp->status == 401) {
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"holdfast\"");
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The method as a label value: a peer chooses it, so only the known ones are counted by name
 * and any other as "other" (one series, however many made-up methods arrive). */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(method, known[i]) == 0) {
            return known[i];
        }
    }
    return "other";
}

static void record(struct rest_server *srv, const char *method, const char *route, int status,
                   uint64_t start_ns, const char *actor, const char *url)
{
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    const char *labels[] = {method_label(method), route, code};
    hf_series_add(hf_metric_series(srv->requests, labels), 1);
    double secs = (double)(hf_mono_ns() - start_ns) / 1e9;
    hf_series_observe(hf_metric_series(srv->latency, &route), secs);
    bool mutation = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    hf_log(mutation ? HF_LOG_INFO : HF_LOG_DEBUG, "rest", "%s %s -> %d (%s, %.1f ms)", method, url,
           status, actor, secs * 1000);
}

/* Queues a refusal made on the headers; the connection closes after it. */
static enum MHD_Result send_refusal(struct rest_server *srv, struct MHD_Connection *conn,
                                    struct request_state *rs, const char *method, const char *url)
{
    char *body = json_dumps(rs->refusal.json, JSON_COMPACT);
    hf_buf b = {0};
    hf_buf_puts(&b, body);
    hf_buf_puts(&b, "\n");
    free(body);
    size_t len = b.len;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, hf_buf_take(&b), MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)rs->refusal.status, r);
    MHD_destroy_response(r);
    rs->answered = true;
    record(srv, method, "refused", rs->refusal.status, rs->start_ns, "-", url);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct rest_server *srv = cls;
    struct request_state *rs = *con_cls;
    if (rs == NULL) {
        rs = xcalloc(1, sizeof(*rs));
        rs->start_ns = hf_mono_ns();
        *con_cls = rs;
        rs->refusal.status = 500;
        rs->refused = !rest__guard_admit(&srv->guard, conn, method, &rs->refusal);
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
        if (rs->refused && expect != NULL && strcasecmp(expect, "100-continue") == 0) {
            /* The client waits for our word before it sends the body: no "100 Continue". */
            return send_refusal(srv, conn, rs, method, url);
        }
        return MHD_YES;
    }
    if (rs->refused) {
        /* Read and dropped (never buffered), so that the client reads the answer. */
        bool last = *upload_data_size == 0;
        *upload_data_size = 0;
        return last && !rs->answered ? send_refusal(srv, conn, rs, method, url) : MHD_YES;
    }
    if (*upload_data_size != 0) {
        if (!rs->too_big && rs->body.len + *upload_data_size > REST_MAX_BODY) {
            rs->too_big = true;
            hf_buf_destroy(&rs->body);
        }
        if (!rs->too_big) {
            hf_buf_append(&rs->body, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    rest_req req = {
        .method = method, .path = url, .store = srv->store, .xds = srv->xds, .conn = conn};
    rest_resp resp = {.status = 500};
    const char *route = dispatch(srv, conn, url, method, rs, &req, &resp);
    enum MHD_Result ret = resp.stream_events || resp.static_body != NULL
                              ? send_special(srv, conn, &resp)
                              : send_response(conn, &resp);
    record(srv, method, route, resp.status, rs->start_ns, req.actor[0] ? req.actor : "-", url);
    json_decref(req.body);
    json_decref(resp.json);
    free(resp.text);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct request_state *rs = *con_cls;
    if (rs != NULL) {
        json_decref(rs->refusal.json);
        hf_buf_destroy(&rs->body);
        free(rs);
        *con_cls = NULL;
    }
}

/* microhttpd's own messages, at most 10 a second: a connection flood (each refused connection
 * is one message) must not become a disk flood. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    static atomic_llong window_s;
    static atomic_int in_window;
    long long now_s = (long long)(hf_mono_ns() / 1000000000u);
    if (atomic_exchange(&window_s, now_s) != now_s) {
        int dropped = atomic_exchange(&in_window, 0) - 10;
        if (dropped > 0) {
            hf_warn("rest", "microhttpd: %d more messages not logged", dropped);
        }
    }
    if (atomic_fetch_add(&in_window, 1) >= 10) {
        return;
    }
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    hf_warn("rest", "microhttpd: %s", line);
}

/* ---- start / stop ---- */

/* Fills ss from address and port; returns its length or 0 when address is no IP literal. */
static socklen_t make_addr(const char *address, uint16_t port, struct sockaddr_storage *ss,
                           bool *loopback, bool *v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        *v6 = false;
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        *v6 = true;
        return sizeof(*a6);
    }
    return 0;
}

int rest_start(const rest_config *cfg, rest_server **out, hf_detail *d)
{
    struct sockaddr_storage ss;
    bool loopback, v6;
    if (make_addr(cfg->address, cfg->port, &ss, &loopback, &v6) == 0) {
        return hf_fail(d, HF_EINVAL, "http", "'%s' is not an IP address", cfg->address);
    }
    if (!loopback && store_token_count(cfg->store) < 1) {
        return hf_fail(d, HF_ECONFLICT, "http",
                       "binding %s (not loopback) requires API tokens; create one first with "
                       "'holdfast token create --role admin'",
                       cfg->address);
    }
    struct rest_server *srv = xcalloc(1, sizeof(*srv));
    srv->store = cfg->store;
    srv->xds = cfg->xds;
    srv->loopback = loopback;
    int rc = rest__guard_init(&srv->guard, cfg->address, cfg->hosts, cfg->n_hosts, d);
    if (rc != HF_OK) {
        free(srv);
        return rc;
    }
    struct MHD_OptionItem tls_opts[2] = {{MHD_OPTION_END, 0, NULL}};
    unsigned tls_flags = 0;
    if (cfg->tls_cert_pem != NULL) {
        rc = rest__tls_new(cfg, &srv->tls, tls_opts, &tls_flags, d);
        if (rc != HF_OK) {
            free(srv);
            return rc;
        }
    }
    pthread_mutex_init(&srv->ev_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->ev_cond, &ca);
    pthread_condattr_destroy(&ca);
    /* Labels are bounded: known methods or "other", route patterns, statuses. */
    srv->requests = hf_metric_get(HF_METRIC_COUNTER, "holdfast_http_requests_total",
                                  "REST requests by route and status.", "method,route,status", 0);
    srv->latency = hf_metric_get(HF_METRIC_HISTOGRAM, "holdfast_http_request_seconds",
                                 "REST request latency.", "route", 0);
    /* poll(), not select(): with thousands of proxies connected, descriptors pass FD_SETSIZE. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0) | tls_flags;
    srv->daemon = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
        REST_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, REST_MAX_PER_CLIENT,
        MHD_OPTION_CONNECTION_TIMEOUT, REST_IDLE_TIMEOUT_S, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (srv->daemon == NULL) {
        rest__tls_free(srv->tls);
        pthread_cond_destroy(&srv->ev_cond);
        pthread_mutex_destroy(&srv->ev_lock);
        free(srv);
        return hf_fail(d, HF_EIO, "http", "cannot listen on %s port %u (in use?)", cfg->address,
                       cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
    store_set_event_hook(srv->store, on_events, srv);
    *out = srv;
    return HF_OK;
}

int rest_tls_update(rest_server *srv, const char *cert_pem, const char *key_pem, hf_detail *d)
{
    return rest__tls_update(srv->tls, cert_pem, key_pem, d);
}

uint16_t rest_port(const rest_server *srv)
{
    return srv->port;
}

void rest_stop(rest_server *srv)
{
    if (srv == NULL) {
        return;
    }
    store_set_event_hook(srv->store, NULL, NULL); /* no call in progress after this */
    pthread_mutex_lock(&srv->ev_lock);
    atomic_store(&srv->stopping, true);
    pthread_cond_broadcast(&srv->ev_cond); /* event streams end */
    pthread_mutex_unlock(&srv->ev_lock);
    MHD_stop_daemon(srv->daemon);
    rest__tls_free(srv->tls);
    pthread_cond_destroy(&srv->ev_cond);
    pthread_mutex_destroy(&srv->ev_lock);
    free(srv);
}
