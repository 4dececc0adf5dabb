/*
 * The Holdfast data model (DESIGN §2) as plain C structs, with defaults and validation.
 * No I/O here: the store persists these structs, the REST layer maps them to and from JSON.
 * Strings are fixed-size arrays so that structs can be copied and returned without ownership
 * questions; the limits below are also the validation limits.
 */
#ifndef HF_MODEL_H
#define HF_MODEL_H

#include "hf_err.h"

#include <stdbool.h>
#include <stdint.h>

#define HF_NAME_MAX 64    /* names: [a-z0-9][a-z0-9-]{0,62} plus NUL */
#define HF_DOMAIN_MAX 254 /* a DNS name (or *.name) plus NUL */
#define HF_MAX_DOMAINS 16
#define HF_PATH_MAX 256
#define HF_COOKIE_MAX 64
#define HF_SHORT_MAX 128 /* version, session_format, zone */
#define HF_MAX_FORMATS 16
#define HF_ADDR_MAX 46        /* INET6_ADDRSTRLEN */
#define HF_ENDPOINT_ID_MAX 56 /* "[v6]:port" */

#define HF_TTL_MIN_S 1
#define HF_TTL_MAX_S (7 * 24 * 3600)
#define HF_INTERVAL_MIN_MS 100
#define HF_INTERVAL_MAX_MS 300000
#define HF_THRESHOLD_MIN 1
#define HF_THRESHOLD_MAX 10
#define HF_WEIGHT_MAX 1000
#define HF_DURATION_MAX_S (7 * 24 * 3600)

typedef struct hf_proxy_group {
    char name[HF_NAME_MAX];
    uint32_t listener_port;
    int64_t created_at; /* ms since the epoch; set by the store */
    int64_t updated_at;
} hf_proxy_group;

enum hf_affinity_mode { HF_AFFINITY_NONE = 0, HF_AFFINITY_COOKIE, HF_AFFINITY_HASH_COOKIE };
enum hf_hc_protocol { HF_HC_HTTP = 0, HF_HC_TCP, HF_HC_GRPC };
/* The protocol Envoy speaks to a service's backends: HTTP/1.1, HTTP/2 (prior knowledge), or the
 * downstream connection's protocol (plaintext has no ALPN; see docs/envoy.md). */
enum hf_upstream_protocol { HF_UPSTREAM_HTTP1 = 0, HF_UPSTREAM_HTTP2, HF_UPSTREAM_AUTO };

typedef struct hf_affinity {
    enum hf_affinity_mode mode;
    char cookie_name[HF_COOKIE_MAX];
    uint32_t ttl_s; /* the normal TTL */
    char path[HF_PATH_MAX];
    bool strict;
} hf_affinity;

typedef struct hf_health_check {
    enum hf_hc_protocol protocol;
    char path[HF_PATH_MAX];         /* HTTP only */
    char service_name[HF_PATH_MAX]; /* gRPC only: grpc.health.v1 service; "" = the server */
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t unhealthy_threshold;
    uint32_t healthy_threshold;
    bool reuse_connection; /* keep HTTP connections between checks (Envoy's default) */
} hf_health_check;

/* Connection lifetime; 0 means "not set" (Envoy's default applies). */
typedef struct hf_connection {
    uint32_t max_connection_age_s;
    uint32_t drain_timeout_s;
    uint32_t max_stream_duration_s;
    bool websocket; /* WebSocket upgrades allowed on the service's route (else refused) */
    enum hf_upstream_protocol upstream_protocol;
} hf_connection;

typedef struct hf_service {
    char name[HF_NAME_MAX];
    char proxy_group[HF_NAME_MAX];
    char domains[HF_MAX_DOMAINS][HF_DOMAIN_MAX];
    uint32_t n_domains;
    hf_affinity affinity;
    hf_health_check health_check;
    hf_connection connection;
    /* session_format values the application declares mutually compatible */
    char compatible_session_formats[HF_MAX_FORMATS][HF_SHORT_MAX];
    uint32_t n_compatible_session_formats;
    uint32_t ttl_in_force_s; /* set by a deployment (lowered TTL); 0 = the normal TTL */
    int64_t created_at;
    int64_t updated_at;
} hf_service;

/* The cookie TTL proxies are given now: lowered during a blue-green deployment. */
uint32_t hf_service_ttl_in_force(const hf_service *s);

enum hf_fleet_role { HF_ROLE_ACTIVE = 0, HF_ROLE_STANDBY, HF_ROLE_DRAINING, HF_ROLE_RETIRED };

typedef struct hf_fleet {
    char service[HF_NAME_MAX];
    char name[HF_NAME_MAX];
    char version[HF_SHORT_MAX];
    char session_format[HF_SHORT_MAX];
    enum hf_fleet_role role;
    int64_t created_at;
    int64_t updated_at;
} hf_fleet;

enum hf_admin_state { HF_ADMIN_ACTIVE = 0, HF_ADMIN_DRAINING, HF_ADMIN_DISABLED };
enum hf_health { HF_HEALTH_UNKNOWN = 0, HF_HEALTH_HEALTHY, HF_HEALTH_UNHEALTHY };

typedef struct hf_endpoint {
    char service[HF_NAME_MAX];
    char fleet[HF_NAME_MAX];
    char address[HF_ADDR_MAX]; /* an IPv4 or IPv6 literal, normalised */
    uint32_t port;
    char zone[HF_SHORT_MAX];
    uint32_t weight;
    enum hf_admin_state admin_state;
    enum hf_health health;
    int64_t health_changed_at; /* when the quorum of health checkers last changed it; 0 never */
    int64_t created_at;
    int64_t updated_at;
} hf_endpoint;

/* One health checker's verdict on one endpoint. */
typedef struct hf_verdict {
    char service[HF_NAME_MAX];
    char address[HF_ADDR_MAX];
    uint32_t port;
    char checker[128]; /* the checker's node id */
    enum hf_health verdict;
    int64_t at;
    char reason[64]; /* why, as the checker says: "HTTP 503 in 2 ms", "connect refused"... */
} hf_verdict;

/* A quorum decision: the endpoint's health becomes health. */
typedef struct hf_health_change {
    char service[HF_NAME_MAX];
    char address[HF_ADDR_MAX];
    uint32_t port;
    enum hf_health health;
    char reason[256];
} hf_health_change;

/* Blue-green deployment states (DESIGN §4). rolling_back drains the target fleet back after a
 * rollback from draining; it ends in rolled_back. */
enum hf_deploy_state {
    HF_DEP_PLANNED = 0,
    HF_DEP_TTL_LOWERED,
    HF_DEP_DRAINING,
    HF_DEP_ROLLING_BACK,
    HF_DEP_COMPLETED,
    HF_DEP_ROLLED_BACK,
    HF_DEP_ABORTED,
};

#define HF_DEPLOY_ID_MAX 24
#define HF_WARNINGS_MAX 1024

typedef struct hf_deployment {
    char id[HF_DEPLOY_ID_MAX]; /* "d-" + 16 hex digits */
    char service[HF_NAME_MAX];
    char from_fleet[HF_NAME_MAX];
    char to_fleet[HF_NAME_MAX];
    enum hf_deploy_state state;
    uint32_t normal_ttl_s;
    uint32_t lowered_ttl_s;
    uint32_t lead_s;
    double tail_threshold_pct;
    double deadline_factor;
    bool format_change;             /* session formats differ and are not declared compatible */
    bool format_acknowledged;       /* cutover acknowledged the change */
    char warnings[HF_WARNINGS_MAX]; /* newline-separated sentences */
    /* absolute times, ms since the epoch; 0 = not yet */
    int64_t created_at;
    int64_t updated_at;
    int64_t ttl_lowered_at;
    int64_t cutover_unlocks_at;
    int64_t cutover_at;    /* also the start of a rollback's drain */
    int64_t min_finish_at; /* the drain cannot finish before (format changes) */
    int64_t deadline_at;
    int64_t finished_at;
    char finish_reason[32]; /* "threshold", "deadline", "manual", "aborted", "rollback" */
    double final_tail_pct;  /* < 0 when unknown */
} hf_deployment;

typedef struct hf_tail_sample {
    int64_t t; /* ms since the epoch */
    double pct;
    int64_t old_requests;
    int64_t total_requests;
    int32_t reporters;         /* proxies of the service's group whose reports are in it */
    int32_t connected_proxies; /* ADS streams of that group when it was taken; -1 unknown */
} hf_tail_sample;

const char *hf_deploy_state_name(enum hf_deploy_state s);
int hf_deploy_state_parse(const char *s, enum hf_deploy_state *out);
/* planned, ttl_lowered, draining and rolling_back are running states. */
bool hf_deploy_state_running(enum hf_deploy_state s);
/* The fleet whose share is the affinity tail: from_fleet while draining, to_fleet while rolling
 * back; NULL otherwise. */
const char *hf_deployment_draining_fleet(const hf_deployment *d);

/* Rolling restarts (DESIGN §5). */
enum hf_restart_state { HF_RS_RUNNING = 0, HF_RS_PAUSED, HF_RS_COMPLETED, HF_RS_ABORTED };
enum hf_batch_state {
    HF_BATCH_PENDING = 0,
    HF_BATCH_DRAINING,
    HF_BATCH_READY,
    HF_BATCH_RESTARTING,
    HF_BATCH_DONE
};

#define HF_BATCH_MAX_ENDPOINTS 64
#define HF_WEBHOOK_MAX 256

typedef struct hf_restart_batch {
    uint32_t n; /* 1-based */
    enum hf_batch_state state;
    char endpoints[HF_BATCH_MAX_ENDPOINTS][HF_ENDPOINT_ID_MAX]; /* "address:port" */
    uint32_t n_endpoints;
    int64_t started_at, ready_at, restarted_at, done_at;
    uint32_t webhook_attempts;
    bool webhook_ok;
    bool drained_early; /* ready before the drain window: load reports showed it idle */
} hf_restart_batch;

typedef struct hf_restart {
    char id[HF_DEPLOY_ID_MAX]; /* "r-" + 16 hex digits */
    char service[HF_NAME_MAX];
    char fleet[HF_NAME_MAX];
    enum hf_restart_state state;
    uint32_t batch_size, batches, interval_s, drain_window_s, restart_s, concurrent_batches;
    char webhook_url[HF_WEBHOOK_MAX];
    int64_t created_at, updated_at, finished_at;
} hf_restart;

const char *hf_restart_state_name(enum hf_restart_state s);
const char *hf_batch_state_name(enum hf_batch_state s);
int hf_restart_state_parse(const char *s, enum hf_restart_state *out);
int hf_batch_state_parse(const char *s, enum hf_batch_state *out);

enum hf_role { HF_TOKEN_VIEWER = 0, HF_TOKEN_OPERATOR, HF_TOKEN_ADMIN };

typedef struct hf_token {
    int64_t id;
    char name[HF_NAME_MAX]; /* optional label */
    enum hf_role role;
    int64_t created_at;
} hf_token;

typedef struct hf_event {
    int64_t id;
    int64_t at;
    char actor[HF_SHORT_MAX];
    char action[HF_SHORT_MAX]; /* e.g. "service.create" */
    char object[160];          /* e.g. "services/cart/fleets/blue" */
    char summary[512];
} hf_event;

/* ---- enum names (for JSON and SQL); *_parse return 0 or HF_EINVAL ---- */
const char *hf_affinity_mode_name(enum hf_affinity_mode m);
int hf_affinity_mode_parse(const char *s, enum hf_affinity_mode *out);
const char *hf_hc_protocol_name(enum hf_hc_protocol p);
int hf_hc_protocol_parse(const char *s, enum hf_hc_protocol *out);
const char *hf_upstream_protocol_name(enum hf_upstream_protocol p);
int hf_upstream_protocol_parse(const char *s, enum hf_upstream_protocol *out);
const char *hf_fleet_role_name(enum hf_fleet_role r);
int hf_fleet_role_parse(const char *s, enum hf_fleet_role *out);
const char *hf_admin_state_name(enum hf_admin_state a);
int hf_admin_state_parse(const char *s, enum hf_admin_state *out);
const char *hf_health_name(enum hf_health h);
int hf_health_parse(const char *s, enum hf_health *out);
const char *hf_role_name(enum hf_role r);
int hf_role_parse(const char *s, enum hf_role *out);

/* ---- defaults ---- */
/* A service with DESIGN's defaults: cookie affinity off (mode none), cookie "hf_<name>",
 * TTL 1800 s, path "/", HTTP check of /healthz every 2000 ms, timeout 1000 ms, thresholds 3/2. */
void hf_service_defaults(hf_service *s);
void hf_endpoint_defaults(hf_endpoint *e);

/* ---- validation: return HF_OK or HF_EINVAL with d naming the field ---- */
bool hf_name_valid(const char *name);
int hf_proxy_group_validate(const hf_proxy_group *g, hf_detail *d);
int hf_service_validate(const hf_service *s, hf_detail *d);
int hf_fleet_validate(const hf_fleet *f, hf_detail *d);
/* Also normalises e->address (e.g. "::0001" -> "::1"). */
int hf_endpoint_validate(hf_endpoint *e, hf_detail *d);

/* The endpoint's id: "address:port", or "[address]:port" for IPv6 (hf_addr_port_format). */
void hf_endpoint_id(const hf_endpoint *e, char *buf, size_t len);
/* Parses an id back into address and port; returns HF_OK or HF_EINVAL. */
int hf_endpoint_id_parse(const char *id, char *address, size_t alen, uint32_t *port);

#endif
