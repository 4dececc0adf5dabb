/*
 * The Holdfast store: every piece of persistent state, in one SQLite database (WAL, foreign keys,
 * busy timeout, migrations keyed on PRAGMA user_version) or in one PostgreSQL database shared by
 * several holdfast replicas (DESIGN §9, docs/ha.md). All SQL lives in this module.
 *
 * Every mutating call is one transaction that also appends an audit event naming the actor; it
 * either commits entirely or changes nothing. Calls are thread-safe (one connection, serialised
 * by a mutex) and may block on disk: never call them from a gRPC completion-queue thread.
 *
 * Errors: HF_OK, or HF_EINVAL / HF_ENOTFOUND / HF_ECONFLICT / HF_EDB with d (may be NULL) saying
 * what failed. Output parameters are written only on success. Lists are heap arrays the caller
 * frees with free().
 */
#ifndef HF_STORE_H
#define HF_STORE_H

#include "hf_err.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct hf_store hf_store;

/* The schema version this build writes. */
int store_schema_latest(void);

/* Opens (creating if needed) and migrates the database target: a PostgreSQL URL
 * (postgresql://USER@HOST:PORT/DB, or ?host=/socket/dir) or else a SQLite file path. A new SQLite
 * file is created mode 0600 (its -wal and -shm files take the same mode); an existing one
 * readable by others is opened with a warning. A database from a newer schema is refused with
 * HF_ESCHEMA. On success *out is a store the caller closes with store_close. */
int store_open(const char *target, hf_store **out, hf_detail *d);
void store_close(hf_store *st);
/* PRAGMA user_version of the open database. */
int store_schema_version(hf_store *st);
/* Cheap liveness check for /readyz: HF_OK when a read succeeds. */
int store_ping(hf_store *st);
/* When this process first failed to reach its database in the current outage (ms since the
 * epoch), or 0 when the last attempt reached it. Any thread, cheap. */
int64_t store_unavailable_since(hf_store *st);

/* Called after every committed change (outside the store's lock), with the new generation.
 * Set once, before other threads use the store. */
typedef void (*store_change_fn)(void *arg, uint64_t generation);
void store_set_change_hook(hf_store *st, store_change_fn fn, void *arg);
/* Called after every commit that wrote audit events, WITH the store's lock held: it must be
 * short and make no store call (it signals a condition variable). NULL removes it; once
 * store_set_event_hook returns, the previous hook is not running and is not called again. */
typedef void (*store_event_fn)(void *arg);
void store_set_event_hook(hf_store *st, store_event_fn fn, void *arg);
/* HF_ECONFLICT (field "service", naming what runs) while service has a running blue-green
 * deployment or rolling restart; HF_ENOTFOUND when there is no such service; else HF_OK. The
 * same check runs again inside the transaction that starts either: this one lets callers answer
 * "busy" before planning. */
int store_service_busy(hf_store *st, const char *service, hf_detail *d);
/* Incremented by every committed change (of this replica or, on a shared database, another
 * one); starts at 1 when opened. */
uint64_t store_generation(hf_store *st);
/* "sqlite" or "postgresql". */
const char *store_backend_name(hf_store *st);

/* Copies the SQLite database at from (schema and every row, audit included) into the empty
 * PostgreSQL database to, in one transaction, and verifies every table's row count; prints one
 * line per table to out (may be NULL). Both are migrated to this build's schema first.
 * HF_EINVAL for a bad argument, HF_ECONFLICT when the destination is not empty. */
int store_copy(const char *from, const char *to, FILE *out, hf_detail *d);

/* ---- replicas (several holdfast processes on one PostgreSQL database) ---- */
typedef struct store_replica {
    char id[64];
    char http_address[128];
    char xds_address[128];
    int64_t started_at;   /* ms since the epoch */
    int64_t heartbeat_at; /* last heartbeat (database clock) */
    int64_t leader_since; /* 0 unless this replica leads */
    bool alive;           /* heartbeat within the lease */
    bool leader;
    bool self;
} store_replica;

/* The lease: a replica whose heartbeat is older is dead to the others (a leader is fenced). */
#define STORE_LEASE_MS 5000

/* Starts this process's replica on a shared database: a thread with a dedicated session that
 * registers the replica and keeps its heartbeat, listens for changes committed by other
 * replicas (each runs the change hook with a new generation; a slow check of a change counter
 * is the safety net), and competes for leadership with an advisory lock. On SQLite it only
 * records the addresses: the one process is the leader. Call once, after the change hook. */
int store_replica_start(hf_store *st, const char *http_address, const char *xds_address,
                        hf_detail *d);
/* Whether this process runs the engines now (always true on SQLite). Any thread, cheap. */
bool store_is_leader(hf_store *st);
/* Whether other processes may share the database (PostgreSQL). */
bool store_is_shared(hf_store *st);
/* Every known replica, oldest first (heap array). */
int store_replica_list(hf_store *st, store_replica **out, size_t *n);

/* Load reports gathered by one replica, passed to the leader through the database: requests
 * per (cluster, fleet), and per cluster (fleet "") how many proxies reported and how many of its
 * group are connected to that replica (-1 unknown). */
typedef struct store_load {
    char cluster[HF_NAME_MAX];
    char fleet[HF_NAME_MAX];
    uint64_t requests;
    int32_t reporters;
    int32_t proxies;
} store_load;
/* Adds this replica's load (one transaction; no new generation). */
int store_load_push(hf_store *st, const store_load *l, size_t n, hf_detail *d);
/* Takes every pushed load, summed by cluster and fleet (reporters and proxies too), and clears
 * them (one transaction). */
int store_load_take(hf_store *st, store_load **out, size_t *n, hf_detail *d);
/* Requests in progress on endpoints, as each node last reported them. */
typedef struct store_inflight {
    char node[128];
    char cluster[HF_NAME_MAX];
    char endpoint[HF_ENDPOINT_ID_MAX];
    uint64_t in_progress;
    int64_t at_ms;
} store_inflight;
int store_inflight_push(hf_store *st, const store_inflight *f, size_t n, hf_detail *d);
/* Reports newer than since_ms (older ones are pruned). */
int store_inflight_list(hf_store *st, int64_t since_ms, store_inflight **out, size_t *n);

/* ---- health checking across replicas (docs/ha.md) ----
 * Checkers connect to any replica; the leader assigns endpoints over all of them and counts
 * every verdict. On a shared database each replica records its connected checkers, passes the
 * verdicts it receives to the leader, and serves its checkers the specifier the leader stored
 * for them. Each write notifies the other replicas (the health hook, with its kind). On SQLite
 * none of this is used: the one process does everything in memory. */
typedef struct store_checker {
    char node_id[128];
    char zone[HF_SHORT_MAX];
    char replica[64];
    int64_t connected_at;
    size_t endpoints; /* in the specifier the leader stored for it (0 before) */
    int64_t spec_at;  /* its revision: when the leader stored it, in µs (0: not yet) */
} store_checker;
/* What a health notification says: checkers connected or left, verdicts were queued for the
 * leader, specifiers were stored, leadership moved (this replica's). */
enum store_health_kind {
    STORE_HEALTH_CHECKERS = 'k',
    STORE_HEALTH_VERDICTS = 'v',
    STORE_HEALTH_SPECIFIERS = 's',
    STORE_HEALTH_LEADERSHIP = 'l',
};
typedef void (*store_health_fn)(void *arg, enum store_health_kind kind);
/* Sets the hook run (on the replica thread) for each health notification of another replica,
 * and for this replica's own leadership changes; a previous hook is not called again once this
 * returns. */
void store_set_health_hook(hf_store *st, store_health_fn fn, void *arg);
/* Makes the checkers recorded for this replica exactly c[0..n) (at most 1,024), in one
 * transaction; a checker recorded by another replica moves to this one. */
int store_checkers_set(hf_store *st, const store_checker *c, size_t n, hf_detail *d);
/* The checkers connected to live replicas (heartbeat within the lease), by node id. */
int store_checker_list(hf_store *st, store_checker **out, size_t *n);
/* Queues verdicts for the leader (at most 100,000 waiting; beyond that the oldest are dropped:
 * checkers report again). */
int store_verdict_push(hf_store *st, const hf_verdict *v, size_t n, hf_detail *d);
/* Takes every queued verdict, oldest first (the leader). */
int store_verdict_take(hf_store *st, hf_verdict **out, size_t *n, hf_detail *d);
/* A checker's specifier as the leader encoded it. */
typedef struct store_specifier {
    char checker[128];
    const uint8_t *data;
    size_t len;
    size_t endpoints;
} store_specifier;
/* Stores specifiers (the leader) and forgets those of checkers connected nowhere. */
int store_specifiers_put(hf_store *st, const store_specifier *s, size_t n, hf_detail *d);
/* A checker's stored specifier (heap bytes, *endpoints how many it holds); HF_ENOTFOUND when
 * the leader has not stored one. */
int store_specifier_get(hf_store *st, const char *checker, uint8_t **data, size_t *len,
                        size_t *endpoints);

/* ---- proxy groups ---- */
int store_group_create(hf_store *st, const char *actor, hf_proxy_group *g, hf_detail *d);
int store_group_get(hf_store *st, const char *name, hf_proxy_group *out, hf_detail *d);
int store_group_list(hf_store *st, hf_proxy_group **out, size_t *n);
int store_group_delete(hf_store *st, const char *actor, const char *name, hf_detail *d);

/* ---- services ---- */
int store_service_create(hf_store *st, const char *actor, hf_service *s, hf_detail *d);
int store_service_get(hf_store *st, const char *name, hf_service *out, hf_detail *d);
/* All services, or those of one proxy group when group is not NULL. */
int store_service_list(hf_store *st, const char *group, hf_service **out, size_t *n);
/* Replaces every field of the service s->name (created_at is kept). */
int store_service_update(hf_store *st, const char *actor, hf_service *s, hf_detail *d);
int store_service_delete(hf_store *st, const char *actor, const char *name, hf_detail *d);

/* ---- fleets ---- */
/* Creates f. The first fleet of a service is made active whatever f->role says; a later fleet
 * created active demotes the current active fleet to standby (a hard switch). */
int store_fleet_create(hf_store *st, const char *actor, hf_fleet *f, hf_detail *d);
int store_fleet_get(hf_store *st, const char *service, const char *name, hf_fleet *out,
                    hf_detail *d);
int store_fleet_list(hf_store *st, const char *service, hf_fleet **out, size_t *n, hf_detail *d);
/* Replaces version, session_format and role. Making a fleet active demotes the active one; the
 * active fleet cannot be demoted directly (make another fleet active instead). */
int store_fleet_update(hf_store *st, const char *actor, hf_fleet *f, hf_detail *d);
/* Deletes a standby or retired fleet and its endpoints. */
int store_fleet_delete(hf_store *st, const char *actor, const char *service, const char *name,
                       hf_detail *d);

/* ---- endpoints ---- */
int store_endpoint_create(hf_store *st, const char *actor, hf_endpoint *e, hf_detail *d);
int store_endpoint_get(hf_store *st, const char *service, const char *fleet, const char *address,
                       uint32_t port, hf_endpoint *out, hf_detail *d);
int store_endpoint_list(hf_store *st, const char *service, const char *fleet, hf_endpoint **out,
                        size_t *n, hf_detail *d);
/* Replaces zone, weight and admin_state of the endpoint (address, port) of e's fleet. */
int store_endpoint_update(hf_store *st, const char *actor, hf_endpoint *e, hf_detail *d);
int store_endpoint_delete(hf_store *st, const char *actor, const char *service, const char *fleet,
                          const char *address, uint32_t port, hf_detail *d);

/* ---- health (from health checkers, through HDS) ---- */
/* Every endpoint of every service, with its health. */
int store_endpoint_list_all(hf_store *st, hf_endpoint **out, size_t *n);
/* Records checkers' verdicts (for endpoints that still exist) and applies quorum decisions to
 * endpoints' health, with an audit event each (endpoint.evict / endpoint.restore), in one
 * transaction. A new generation is announced only when some endpoint's health changed. */
int store_health_apply(hf_store *st, const hf_verdict *v, size_t nv, const hf_health_change *c,
                       size_t nc, hf_detail *d);
/* Every stored verdict, by service, address, port, checker. */
int store_verdict_list(hf_store *st, hf_verdict **out, size_t *n);

/* ---- blue-green deployments (rules in control-plane/deploy) ---- */
/* Stores a new deployment (state planned). HF_ECONFLICT when the service already has a running
 * one. */
int store_deployment_create(hf_store *st, const char *actor, hf_deployment *dep, hf_detail *d);
int store_deployment_get(hf_store *st, const char *id, hf_deployment *out, hf_detail *d);
/* Deployments oldest first: of one service (or all when service is NULL), running ones only
 * when running_only. */
int store_deployment_list(hf_store *st, const char *service, bool running_only, hf_deployment **out,
                          size_t *n);

/* A transition, applied in one transaction with its side effects and audit event. */
typedef struct store_deploy_change {
    enum hf_deploy_state expect; /* the state the deployment must be in (else HF_ECONFLICT) */
    const hf_deployment *next;   /* the row after the transition */
    struct {
        const char *fleet;
        enum hf_fleet_role role;
    } roles[2]; /* applied in order: put demotions first */
    size_t n_roles;
    int64_t ttl_in_force_s; /* the service's TTL in force afterwards: -1 unchanged, 0 normal */
    const char *action;     /* audit action, e.g. "deployment.cutover" */
    const char *summary;
} store_deploy_change;
int store_deployment_change(hf_store *st, const char *actor, const store_deploy_change *c,
                            hf_detail *d);

/* ---- rolling restarts (rules in control-plane/deploy) ---- */
/* Stores a running restart and its batches. HF_ECONFLICT when the service already has a
 * running restart or a running blue-green deployment. */
int store_restart_create(hf_store *st, const char *actor, hf_restart *r, const hf_restart_batch *b,
                         size_t nb, hf_detail *d);
/* A restart and its batches (heap array the caller frees). */
int store_restart_get(hf_store *st, const char *id, hf_restart *out, hf_restart_batch **b,
                      size_t *nb, hf_detail *d);
int store_restart_list(hf_store *st, bool running_only, hf_restart **out, size_t *n);
/* Saves a restart's row and batches and, when endpoints is not NULL, sets the admin_state of
 * those endpoints ("address:port", of the restart's fleet) - one transaction with its event;
 * a new generation only when admin states changed. */
int store_restart_save(hf_store *st, const char *actor, const hf_restart *r,
                       const hf_restart_batch *b, size_t nb, const hf_restart_batch *endpoints,
                       enum hf_admin_state admin, const char *action, const char *summary,
                       hf_detail *d);

/* Affinity-tail samples (not configuration: no new generation). */
int store_tail_add(hf_store *st, const char *id, const hf_tail_sample *s, hf_detail *d);
int store_tail_list(hf_store *st, const char *id, hf_tail_sample **out, size_t *n);

/* ---- the whole configuration at one point in time (store_input.c) ---- */

/* One service as the snapshot builder, the health module and the restart code see it: its row,
 * its fleets and every endpoint of every fleet, read in the same transaction as the rest of the
 * input. Immutable and shared between consecutive inputs while its revision does not move
 * (reference-counted; only store_input_read and store_input_free touch refs). */
typedef struct store_input_service {
    _Atomic unsigned refs;
    int64_t id;   /* row id */
    uint64_t rev; /* configuration revision: moves whenever anything below changes */
    hf_service svc;
    hf_fleet *fleets; /* by name */
    size_t n_fleets;
    hf_endpoint *endpoints; /* every fleet's, by (address, port): unique within a service */
    size_t n_endpoints;
    char deployment[HF_DEPLOY_ID_MAX]; /* the running blue-green deployment, or "" */
    char restart[HF_DEPLOY_ID_MAX];    /* the running (or paused) rolling restart, or "" */
} store_input_service;

/* The whole configuration, read in one transaction. Owned by the caller; immutable. */
typedef struct store_input {
    uint64_t generation;    /* the store generation it reflects */
    hf_proxy_group *groups; /* by name */
    size_t n_groups;
    store_input_service **services; /* by name */
    size_t n_services;
    size_t n_reread; /* services read afresh (the others were shared with prev) */
} store_input;

/* Reads every proxy group, service (with policies, domains and formats), fleet and endpoint
 * (with admin_state and health), and the running deployment and restart of each service, in
 * one read transaction. Services whose revision equals theirs in prev (may be NULL) are shared
 * with prev, not read again. On success *out is a new input the caller frees with
 * store_input_free; on failure (HF_EDB) nothing is returned. Blocks on disk: not on gRPC
 * threads. */
int store_input_read(hf_store *st, const store_input *prev, store_input **out, hf_detail *d);
/* Frees an input (NULL is fine); services still shared with another input stay alive. */
void store_input_free(store_input *in);
/* A new, empty service for a hand-built input (tests): refs 1, arrays NULL. */
store_input_service *store_input_service_new(void);
/* The service named name, or NULL (binary search). */
const store_input_service *store_input_service_find(const store_input *in, const char *name);
/* The endpoint (address, port) of service, or NULL (two binary searches). */
const hf_endpoint *store_input_endpoint(const store_input *in, const char *service,
                                        const char *address, uint32_t port);

/* ---- API tokens (only hashes are stored) ---- */
int store_token_create(hf_store *st, const char *actor, const char *hash_hex, hf_token *t,
                       hf_detail *d);
/* HF_OK and *out when a token with this hash exists, else HF_ENOTFOUND. */
int store_token_lookup(hf_store *st, const char *hash_hex, hf_token *out);
/* Number of tokens; -1 on a database error. */
int64_t store_token_count(hf_store *st);
int store_token_list(hf_store *st, hf_token **out, size_t *n);
int store_token_delete(hf_store *st, const char *actor, int64_t id, hf_detail *d);

/* ---- audit log ---- */
/* Audit retention: at most max_rows events are kept (STORE_AUDIT_DEFAULT unless set); past it
 * the oldest connect/disconnect events (proxy.*, checker.*) go first, then the oldest others.
 * Whatever the cap, a peer keeps at most STORE_AUDIT_PER_PEER connect/disconnect rows (the
 * newest), so a flapping proxy cannot fill the log. Call before the store is shared. */
#define STORE_AUDIT_DEFAULT 100000
#define STORE_AUDIT_PER_PEER 10
void store_set_audit_retention(hf_store *st, int64_t max_rows);

/* Appends an event that records something other than a configuration change (a proxy
 * connected, a NACK): one transaction, and it does not announce a new generation. */
int store_event_append(hf_store *st, const char *actor, const char *action, const char *object,
                       const char *summary, hf_detail *d);
/* The same for n events (their actor, action, object and summary) in one transaction. */
int store_events_append(hf_store *st, const hf_event *events, size_t n, hf_detail *d);
/* The id of the newest event (0 when there is none). */
int64_t store_event_last_id(hf_store *st);
/* Events with id > since, oldest first, at most limit of them. */
int store_event_list(hf_store *st, int64_t since, int limit, hf_event **out, size_t *n);

/* What store_event_query selects; NULL strings and before 0 select everything. */
typedef struct hf_event_filter {
    int64_t before;      /* only ids below it */
    const char *service; /* events of the service: its objects, its deployments and restarts */
    const char *action;  /* action prefix, e.g. "deployment." */
    const char *object;  /* the object or anything under it, e.g. "services/cart" */
    int limit;
} hf_event_filter;
/* The newest limit events matching f, oldest first (page back with before = the first id). */
int store_event_query(hf_store *st, const hf_event_filter *f, hf_event **out, size_t *n);

#endif
