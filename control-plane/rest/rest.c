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

struct route {
    const char *method;
    const char *pattern;
    rest_handler_fn handler;
    enum access access;
};

#define API "/api/v1"
#define SVC API "/services/{service}"
#define FLEET SVC "/fleets/{fleet}"
static const struct route routes[] = {
    {"GET", API "/proxy-groups", rest__h_groups_list, VIEWER},
    {"POST", API "/proxy-groups", rest__h_groups_create, ADMIN},
    {"GET", API "/proxy-groups/{group}", rest__h_groups_get, VIEWER},
    {"DELETE", API "/proxy-groups/{group}", rest__h_groups_delete, ADMIN},
    {"GET", API "/services", rest__h_services_list, VIEWER},
    {"POST", API "/services", rest__h_services_create, ADMIN},
    {"GET", SVC, rest__h_services_get, VIEWER},
    {"PATCH", SVC, rest__h_services_patch, ADMIN},
    {"DELETE", SVC, rest__h_services_delete, ADMIN},
    {"GET", SVC "/fleets", rest__h_fleets_list, VIEWER},
    {"POST", SVC "/fleets", rest__h_fleets_create, ADMIN},
    {"GET", FLEET, rest__h_fleets_get, VIEWER},
    {"PATCH", FLEET, rest__h_fleets_patch, ADMIN},
    {"DELETE", FLEET, rest__h_fleets_delete, ADMIN},
    {"GET", FLEET "/endpoints", rest__h_endpoints_list, VIEWER},
    {"POST", FLEET "/endpoints", rest__h_endpoints_create, OPERATOR},
    {"GET", FLEET "/endpoints/{endpoint}", rest__h_endpoints_get, VIEWER},
    {"PATCH", FLEET "/endpoints/{endpoint}", rest__h_endpoints_patch, OPERATOR},
    {"DELETE", FLEET "/endpoints/{endpoint}", rest__h_endpoints_delete, OPERATOR},
    {"GET", API "/tokens", rest__h_tokens_list, ADMIN},
    {"POST", API "/tokens", rest__h_tokens_create, ADMIN},
    {"DELETE", API "/tokens/{token}", rest__h_tokens_delete, ADMIN},
    {"GET", API "/events", rest__h_events_list, VIEWER},
    {"GET", API "/whoami", rest__h_whoami, VIEWER},
    {"GET", API "/proxies", rest__h_proxies_list, VIEWER},
    {"GET", API "/proxies/{node_id}/config", rest__h_proxies_config, VIEWER},
    {"GET", API "/health", rest__h_health_list, VIEWER},
    {"POST", API "/restarts", rest__h_restarts_plan, VIEWER},
    {"GET", API "/restarts", rest__h_restarts_list, VIEWER},
    {"GET", API "/restarts/{restart}", rest__h_restarts_get, VIEWER},
    {"POST", API "/restarts/{restart}/{action}", rest__h_restarts_action, OPERATOR},
    {"POST", API "/restarts/{restart}/batches/{batch}/restarted", rest__h_restarts_batch_restarted,
     OPERATOR},
    {"GET", API "/deployments", rest__h_deployments_list, VIEWER},
    {"POST", API "/deployments", rest__h_deployments_create, OPERATOR},
    {"GET", API "/deployments/{deployment}", rest__h_deployments_get, VIEWER},
    {"POST", API "/deployments/{deployment}/{action}", rest__h_deployments_action, OPERATOR},
    {"GET", API "/replicas", rest__h_replicas_list, VIEWER},
    {"GET", "/healthz", rest__h_healthz, OPEN},
    {"GET", "/readyz", rest__h_readyz, OPEN},
    {"GET", "/metrics", rest__h_metrics, OPEN},
    {"GET", "/", rest__h_ui_index, OPEN},
    {"GET", "/ui/{asset}", rest__h_ui_asset, OPEN},
    {"GET", "/favicon.ico", rest__h_ui_favicon, OPEN},
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

/* Resolves the caller's role. Returns true when the request may proceed. */
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
    if ((int)t.role + 1 < (int)r->access) {
        rest__error_status(resp, 403, "forbidden", "",
                           "this action needs the %s role; the token "
                           "has %s",
                           access_names[r->access], hf_role_name(t.role));
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
    if (authenticate(srv, conn, r, req, resp) && parse_body(rs, req, resp)) {
        r->handler(req, resp);
    }
    return r->pattern;
}

/* ---- server-sent events: the audit log, live ---- */

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

/* Feeds the stream: new events as they are committed (polled every 200 ms), a comment every
 * 10 s so proxies and browsers keep the connection. Blocks: one thread per connection. */
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
        hf_event *ev;
        size_t n = 0;
        if (store_event_list(es->srv->store, es->since, 200, &ev, &n) == HF_OK) {
            format_events(es, ev, n);
            free(ev);
        }
        int64_t now = hf_now_ms();
        if (es->pending.len == 0 && now - es->last_write_ms >= 10000) {
            hf_buf_puts(&es->pending, ": keep-alive\n\n");
        }
        if (es->pending.len > 0) {
            es->last_write_ms = now;
            continue;
        }
        usleep(200 * 1000);
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
        es->last_write_ms = 0; /* a first comment at once: the client knows it is connected */
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

static void record(const char *method, const char *route, int status, uint64_t start_ns,
                   const char *actor, const char *url)
{
    char labels[384];
    snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\",status=\"%d\"", method, route,
             status);
    hf_counter_add("holdfast_http_requests_total", "REST requests by route and status.", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", route);
    double secs = (double)(hf_mono_ns() - start_ns) / 1e9;
    hf_histogram_observe("holdfast_http_request_seconds", "REST request latency.", labels, secs);
    bool mutation = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    hf_log(mutation ? HF_LOG_INFO : HF_LOG_DEBUG, "rest", "%s %s -> %d (%s, %.1f ms)", method, url,
           status, actor, secs * 1000);
}

/* Queues a refusal made on the headers; the connection closes after it. */
static enum MHD_Result send_refusal(struct MHD_Connection *conn, struct request_state *rs,
                                    const char *method, const char *url)
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
    record(method, "refused", rs->refusal.status, rs->start_ns, "-", url);
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
            return send_refusal(conn, rs, method, url);
        }
        return MHD_YES;
    }
    if (rs->refused) {
        /* Read and dropped (never buffered), so that the client reads the answer. */
        bool last = *upload_data_size == 0;
        *upload_data_size = 0;
        return last && !rs->answered ? send_refusal(conn, rs, method, url) : MHD_YES;
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
    record(method, route, resp.status, rs->start_ns, req.actor[0] ? req.actor : "-", url);
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
        free(srv);
        return hf_fail(d, HF_EIO, "http", "cannot listen on %s port %u (in use?)", cfg->address,
                       cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : cfg->port;
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
    atomic_store(&srv->stopping, true);
    MHD_stop_daemon(srv->daemon);
    rest__tls_free(srv->tls);
    free(srv);
}
