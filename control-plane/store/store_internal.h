/*
 * Internals shared by the store's source files: the connection (through the driver of
 * store_db.h: SQLite or PostgreSQL), the prepared-statement table and the transaction helpers.
 * Statements are written once, in SQLite's dialect with ?N parameters; the PostgreSQL driver
 * translates them. Nothing outside control-plane/store includes this.
 */
#ifndef HF_STORE_INTERNAL_H
#define HF_STORE_INTERNAL_H

#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include "store_db.h"

#define SERVICE_COLS                                                                               \
    "s.name, g.name, s.affinity_mode, s.cookie_name, s.ttl_s, s.cookie_path, s.strict, "           \
    "s.hc_protocol, s.hc_path, s.hc_interval_ms, s.hc_timeout_ms, s.hc_unhealthy_threshold, "      \
    "s.hc_healthy_threshold, s.max_connection_age_s, s.drain_timeout_s, "                          \
    "s.max_stream_duration_s, s.created_at, s.updated_at, s.id, s.ttl_in_force_s, "                \
    "s.hc_reuse_connection, s.websocket, s.upstream_protocol, s.hc_grpc, s.hc_service_name "
#define FLEET_COLS                                                                                 \
    "s.name, f.name, f.version, f.session_format, f.role, f.created_at, f.updated_at "
#define DEPLOY_COLS                                                                                \
    "d.id, s.name, d.from_fleet, d.to_fleet, d.state, d.normal_ttl_s, d.lowered_ttl_s, d.lead_s, " \
    "d.tail_threshold_pct, d.deadline_factor, d.format_change, d.format_acknowledged, "            \
    "d.warnings, d.created_at, d.updated_at, d.ttl_lowered_at, d.cutover_unlocks_at, "             \
    "d.cutover_at, d.min_finish_at, d.deadline_at, d.finished_at, d.finish_reason, "               \
    "d.final_tail_pct "
#define RUNNING_STATES "('planned','ttl_lowered','draining','rolling_back')"
#define LOAD_NEWEST                                                                                \
    "(SELECT max(id) FROM load_reports m WHERE m.replica = l.replica AND m.cluster = l.cluster "   \
    "AND m.fleet = l.fleet)"
#define ENDPOINT_COLS                                                                              \
    "s.name, f.name, e.address, e.port, e.zone, e.weight, e.admin_state, e.health, "               \
    "e.created_at, e.updated_at, e.health_changed_at "

/* The whole-configuration reader (store_input.c). */
#define STORE_INPUT_STATEMENTS(X)                                                                  \
    X(ST_INPUT_SERVICES, "SELECT id, config_rev FROM services ORDER BY name")                      \
    X(ST_INPUT_SERVICE, "SELECT " SERVICE_COLS "FROM services s JOIN proxy_groups g ON "           \
                        "g.id = s.group_id WHERE s.id = ?1")                                       \
    X(ST_INPUT_FLEETS, "SELECT " FLEET_COLS "FROM fleets f JOIN services s ON "                    \
                       "s.id = f.service_id WHERE s.id = ?1 ORDER BY f.name")                      \
    X(ST_INPUT_ENDPOINTS, "SELECT " ENDPOINT_COLS "FROM endpoints e JOIN fleets f ON "             \
                          "f.id = e.fleet_id JOIN services s ON s.id = e.service_id WHERE "        \
                          "s.id = ?1 ORDER BY e.address, e.port")                                  \
    X(ST_INPUT_RUNNING,                                                                            \
      "SELECT (SELECT id FROM deployments WHERE service_id = ?1 AND state IN " RUNNING_STATES      \
      "), (SELECT id FROM restarts WHERE service_id = ?1 AND "                                     \
      "state IN ('running','paused'))")

/* Every statement the store runs, prepared once at open. X(id, sql) */
#define STORE_STATEMENTS(X)                                                                        \
    X(ST_PING, "SELECT count(*) FROM proxy_groups")                                                \
    X(ST_EVENT_INSERT,                                                                             \
      "INSERT INTO events(at, actor, action, object, summary) VALUES(?1, ?2, ?3, ?4, ?5)")         \
    X(ST_EVENT_LIST, "SELECT id, at, actor, action, object, summary FROM events WHERE id > ?1 "    \
                     "ORDER BY id LIMIT ?2")                                                       \
    X(ST_EVENT_LAST, "SELECT coalesce(max(id), 0) FROM events")                                    \
    X(ST_GROUP_INSERT, "INSERT INTO proxy_groups(name, listener_port, created_at, updated_at) "    \
                       "VALUES(?1, ?2, ?3, ?3)")                                                   \
    X(ST_GROUP_GET, "SELECT name, listener_port, created_at, updated_at, id FROM proxy_groups "    \
                    "WHERE name = ?1")                                                             \
    X(ST_GROUP_LIST, "SELECT name, listener_port, created_at, updated_at, id FROM proxy_groups "   \
                     "ORDER BY name")                                                              \
    X(ST_GROUP_SERVICES, "SELECT count(*) FROM services WHERE group_id = ?1")                      \
    X(ST_GROUP_DELETE, "DELETE FROM proxy_groups WHERE id = ?1")                                   \
    X(ST_SERVICE_INSERT,                                                                           \
      "INSERT INTO services(name, group_id, affinity_mode, cookie_name, ttl_s, cookie_path, "      \
      "strict, hc_protocol, hc_path, hc_interval_ms, hc_timeout_ms, hc_unhealthy_threshold, "      \
      "hc_healthy_threshold, max_connection_age_s, drain_timeout_s, max_stream_duration_s, "       \
      "created_at, updated_at, hc_reuse_connection, websocket, upstream_protocol, hc_grpc, "       \
      "hc_service_name) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, " \
      "?16, ?17, ?17, ?18, ?19, ?20, ?21, ?22)")                                                   \
    X(ST_SERVICE_UPDATE,                                                                           \
      "UPDATE services SET group_id = ?2, affinity_mode = ?3, cookie_name = ?4, ttl_s = ?5, "      \
      "cookie_path = ?6, strict = ?7, hc_protocol = ?8, hc_path = ?9, hc_interval_ms = ?10, "      \
      "hc_timeout_ms = ?11, hc_unhealthy_threshold = ?12, hc_healthy_threshold = ?13, "            \
      "max_connection_age_s = ?14, drain_timeout_s = ?15, max_stream_duration_s = ?16, "           \
      "updated_at = ?17, hc_reuse_connection = ?18, websocket = ?19, upstream_protocol = ?20, "    \
      "hc_grpc = ?21, hc_service_name = ?22 "                                                      \
      "WHERE name = ?1")                                                                           \
    X(ST_SERVICE_GET, "SELECT " SERVICE_COLS "FROM services s JOIN proxy_groups g ON "             \
                      "g.id = s.group_id WHERE s.name = ?1")                                       \
    X(ST_SERVICE_LIST, "SELECT " SERVICE_COLS "FROM services s JOIN proxy_groups g ON "            \
                       "g.id = s.group_id WHERE ?1 IS NULL OR g.name = ?1 ORDER BY s.name")        \
    X(ST_SERVICE_ID, "SELECT id FROM services WHERE name = ?1")                                    \
    X(ST_SERVICE_FLEETS, "SELECT count(*) FROM fleets WHERE service_id = ?1")                      \
    X(ST_SERVICE_DELETE, "DELETE FROM services WHERE id = ?1")                                     \
    X(ST_DOMAINS_DELETE, "DELETE FROM service_domains WHERE service_id = ?1")                      \
    X(ST_DOMAIN_INSERT, "INSERT INTO service_domains(service_id, group_id, position, domain) "     \
                        "VALUES(?1, ?2, ?3, ?4)")                                                  \
    X(ST_DOMAIN_OWNER, "SELECT s.name FROM service_domains d JOIN services s ON "                  \
                       "s.id = d.service_id WHERE d.group_id = ?1 AND d.domain = ?2")              \
    X(ST_GROUP_SERVICE_NAMED, "SELECT name FROM services WHERE group_id = ?1 AND "                 \
                              "name = ?2 AND id <> ?3")                                            \
    X(ST_DOMAIN_LIST, "SELECT domain FROM service_domains WHERE service_id = ?1 ORDER BY "         \
                      "position")                                                                  \
    X(ST_FORMATS_DELETE, "DELETE FROM service_formats WHERE service_id = ?1")                      \
    X(ST_FORMAT_INSERT, "INSERT INTO service_formats(service_id, position, format) "               \
                        "VALUES(?1, ?2, ?3)")                                                      \
    X(ST_FORMAT_LIST, "SELECT format FROM service_formats WHERE service_id = ?1 ORDER BY "         \
                      "position")                                                                  \
    X(ST_FLEET_INSERT, "INSERT INTO fleets(service_id, name, version, session_format, role, "      \
                       "created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)")               \
    X(ST_FLEET_GET, "SELECT " FLEET_COLS ", f.id FROM fleets f JOIN services s ON "                \
                    "s.id = f.service_id WHERE s.name = ?1 AND f.name = ?2")                       \
    X(ST_FLEET_LIST, "SELECT " FLEET_COLS ", f.id FROM fleets f JOIN services s ON "               \
                     "s.id = f.service_id WHERE s.name = ?1 ORDER BY f.name")                      \
    X(ST_FLEET_ACTIVE, "SELECT name FROM fleets WHERE service_id = ?1 AND role = 'active'")        \
    X(ST_FLEET_DEMOTE,                                                                             \
      "UPDATE fleets SET role = 'standby', updated_at = ?2 WHERE service_id = ?1 "                 \
      "AND role = 'active'")                                                                       \
    X(ST_FLEET_UPDATE, "UPDATE fleets SET version = ?2, session_format = ?3, role = ?4, "          \
                       "updated_at = ?5 WHERE id = ?1")                                            \
    X(ST_FLEET_DELETE, "DELETE FROM fleets WHERE id = ?1")                                         \
    X(ST_ENDPOINT_INSERT,                                                                          \
      "INSERT INTO endpoints(fleet_id, service_id, address, port, zone, weight, admin_state, "     \
      "health, created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)")            \
    X(ST_ENDPOINT_OWNER, "SELECT f.name FROM endpoints e JOIN fleets f ON f.id = e.fleet_id "      \
                         "WHERE e.service_id = ?1 AND e.address = ?2 AND e.port = ?3")             \
    X(ST_ENDPOINT_GET, "SELECT " ENDPOINT_COLS ", e.id FROM endpoints e JOIN fleets f ON "         \
                       "f.id = e.fleet_id JOIN services s ON s.id = e.service_id WHERE "           \
                       "s.name = ?1 AND f.name = ?2 AND e.address = ?3 AND e.port = ?4")           \
    X(ST_ENDPOINT_LIST, "SELECT " ENDPOINT_COLS ", e.id FROM endpoints e JOIN fleets f ON "        \
                        "f.id = e.fleet_id JOIN services s ON s.id = e.service_id WHERE "          \
                        "s.name = ?1 AND f.name = ?2 ORDER BY e.address, e.port")                  \
    X(ST_ENDPOINT_UPDATE, "UPDATE endpoints SET zone = ?2, weight = ?3, admin_state = ?4, "        \
                          "updated_at = ?5 WHERE id = ?1")                                         \
    X(ST_ENDPOINT_DELETE, "DELETE FROM endpoints WHERE id = ?1")                                   \
    X(ST_DEPLOY_INSERT,                                                                            \
      "INSERT INTO deployments(id, service_id, from_fleet, to_fleet, state, normal_ttl_s, "        \
      "lowered_ttl_s, lead_s, tail_threshold_pct, deadline_factor, format_change, "                \
      "format_acknowledged, warnings, created_at, updated_at, ttl_lowered_at, "                    \
      "cutover_unlocks_at, "                                                                       \
      "cutover_at, min_finish_at, deadline_at, finished_at, finish_reason, final_tail_pct) "       \
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "   \
      "?19, ?20, ?21, ?22, ?23)")                                                                  \
    X(ST_DEPLOY_UPDATE,                                                                            \
      "UPDATE deployments SET state = ?5, lowered_ttl_s = ?7, lead_s = ?8, "                       \
      "tail_threshold_pct = ?9, deadline_factor = ?10, format_acknowledged = ?12, "                \
      "updated_at = ?15, ttl_lowered_at = ?16, cutover_unlocks_at = ?17, cutover_at = ?18, "       \
      "min_finish_at = ?19, deadline_at = ?20, finished_at = ?21, finish_reason = ?22, "           \
      "final_tail_pct = ?23 WHERE id = ?1")                                                        \
    X(ST_DEPLOY_GET, "SELECT " DEPLOY_COLS "FROM deployments d JOIN services s ON "                \
                     "s.id = d.service_id WHERE d.id = ?1")                                        \
    X(ST_DEPLOY_LIST, "SELECT " DEPLOY_COLS "FROM deployments d JOIN services s ON "               \
                      "s.id = d.service_id WHERE (?1 IS NULL OR s.name = ?1) AND (?2 = 0 OR "      \
                      "d.state IN " RUNNING_STATES ") ORDER BY d.created_at, d.id")                \
    X(ST_DEPLOY_RUNNING, "SELECT id, from_fleet, to_fleet FROM deployments WHERE service_id = ?1 " \
                         "AND state IN " RUNNING_STATES)                                           \
    X(ST_FLEET_SET_ROLE, "UPDATE fleets SET role = ?3, updated_at = ?4 WHERE service_id = ?1 AND " \
                         "name = ?2")                                                              \
    X(ST_SERVICE_SET_TTL,                                                                          \
      "UPDATE services SET ttl_in_force_s = ?2, updated_at = ?3 WHERE id = ?1")                    \
    X(ST_TAIL_INSERT, "INSERT INTO tail_samples(deployment_id, t, pct, old_requests, "             \
                      "total_requests, reporters, connected_proxies) "                             \
                      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(deployment_id, t) DO "       \
                      "UPDATE SET pct = excluded.pct, old_requests = excluded.old_requests, "      \
                      "total_requests = excluded.total_requests, reporters = excluded.reporters, " \
                      "connected_proxies = excluded.connected_proxies")                            \
    X(ST_TAIL_LIST, "SELECT t, pct, old_requests, total_requests, reporters, connected_proxies "   \
                    "FROM tail_samples WHERE deployment_id = ?1 ORDER BY t")                       \
    X(ST_ENDPOINT_KEY, "SELECT e.id, e.health FROM endpoints e JOIN services s ON "                \
                       "s.id = e.service_id WHERE s.name = ?1 AND e.address = ?2 AND e.port = ?3") \
    X(ST_ENDPOINT_SET_HEALTH, "UPDATE endpoints SET health = ?2, health_changed_at = ?3 WHERE "    \
                              "id = ?1")                                                           \
    X(ST_VERDICT_UPSERT, "INSERT INTO health_verdicts(endpoint_id, checker, verdict, at, reason) " \
                         "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(endpoint_id, checker) DO UPDATE " \
                         "SET verdict = excluded.verdict, at = excluded.at, "                      \
                         "reason = excluded.reason")                                               \
    X(ST_VERDICT_LIST, "SELECT s.name, e.address, e.port, v.checker, v.verdict, v.at, v.reason "   \
                       "FROM "                                                                     \
                       "health_verdicts v JOIN endpoints e ON e.id = v.endpoint_id JOIN services " \
                       "s ON s.id = e.service_id ORDER BY s.name, e.address, e.port, v.checker")   \
    X(ST_ENDPOINT_ALL,                                                                             \
      "SELECT " ENDPOINT_COLS ", e.id FROM endpoints e JOIN fleets f ON "                          \
      "f.id = e.fleet_id JOIN services s ON s.id = e.service_id ORDER BY s.name, "                 \
      "e.address, e.port")                                                                         \
    X(ST_RESTART_INSERT,                                                                           \
      "INSERT INTO restarts(id, service_id, fleet, state, batch_size, batches, interval_s, "       \
      "drain_window_s, restart_s, concurrent_batches, webhook_url, created_at, updated_at, "       \
      "finished_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, 0)")            \
    X(ST_RESTART_UPDATE, "UPDATE restarts SET state = ?2, updated_at = ?3, finished_at = ?4 "      \
                         "WHERE id = ?1")                                                          \
    X(ST_RESTART_GET, "SELECT r.id, s.name, r.fleet, r.state, r.batch_size, r.batches, "           \
                      "r.interval_s, r.drain_window_s, r.restart_s, r.concurrent_batches, "        \
                      "r.webhook_url, r.created_at, r.updated_at, r.finished_at FROM restarts r "  \
                      "JOIN services s ON s.id = r.service_id WHERE r.id = ?1 OR (?1 IS NULL "     \
                      "AND (?2 = 0 OR r.state IN ('running','paused'))) ORDER BY r.created_at")    \
    X(ST_RESTART_RUNNING, "SELECT id FROM restarts WHERE service_id = ?1 AND state IN "            \
                          "('running','paused')")                                                  \
    X(ST_BATCH_UPSERT,                                                                             \
      "INSERT INTO restart_batches(restart_id, n, state, endpoints, started_at, ready_at, "        \
      "restarted_at, done_at, webhook_attempts, webhook_ok, drained_early) VALUES(?1, ?2, ?3, "    \
      "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT(restart_id, n) DO UPDATE SET state = "        \
      "excluded.state, "                                                                           \
      "started_at = excluded.started_at, ready_at = excluded.ready_at, restarted_at = "            \
      "excluded.restarted_at, done_at = excluded.done_at, webhook_attempts = "                     \
      "excluded.webhook_attempts, webhook_ok = excluded.webhook_ok, drained_early = "              \
      "excluded.drained_early")                                                                    \
    X(ST_BATCH_LIST,                                                                               \
      "SELECT n, state, endpoints, started_at, ready_at, restarted_at, done_at, "                  \
      "webhook_attempts, webhook_ok, drained_early FROM restart_batches WHERE restart_id = ?1 "    \
      "ORDER BY n")                                                                                \
    X(ST_ENDPOINT_SET_ADMIN, "UPDATE endpoints SET admin_state = ?4, updated_at = ?5 WHERE id = "  \
                             "(SELECT e.id FROM endpoints e JOIN fleets f ON f.id = e.fleet_id "   \
                             "JOIN services s ON s.id = e.service_id WHERE s.name = ?1 AND "       \
                             "f.name = ?2 AND e.address || ':' || e.port = ?3)")                   \
    X(ST_TOKEN_INSERT, "INSERT INTO tokens(name, hash, role, created_at) VALUES(?1, ?2, ?3, ?4)")  \
    X(ST_TOKEN_LOOKUP, "SELECT id, name, role, created_at FROM tokens WHERE hash = ?1")            \
    X(ST_TOKEN_COUNT, "SELECT count(*) FROM tokens")                                               \
    X(ST_TOKEN_LIST, "SELECT id, name, role, created_at FROM tokens ORDER BY id")                  \
    X(ST_TOKEN_DELETE, "DELETE FROM tokens WHERE id = ?1")                                         \
    X(ST_REPLICA_LIST, "SELECT id, http_address, xds_address, started_at, heartbeat_at, "          \
                       "leader_since FROM replicas ORDER BY started_at, id")                       \
    X(ST_LOAD_INSERT, "INSERT INTO load_reports(replica, cluster, fleet, requests, at, "           \
                      "reporters, proxies) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")                    \
    /* Requests add up over intervals; reporters and proxies are each replica's newest count. */   \
    X(ST_LOAD_SUM,                                                                                 \
      "SELECT cluster, fleet, sum(requests), sum(CASE WHEN id = " LOAD_NEWEST " THEN reporters "   \
      "ELSE 0 END), sum(CASE WHEN id = " LOAD_NEWEST " THEN proxies ELSE 0 END) FROM "             \
      "load_reports l GROUP BY cluster, fleet ORDER BY cluster, fleet")                            \
    X(ST_LOAD_CLEAR, "DELETE FROM load_reports")                                                   \
    X(ST_INFLIGHT_UPSERT, "INSERT INTO load_inflight(node, cluster, endpoint, in_progress, at) "   \
                          "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(node, cluster, endpoint) DO "    \
                          "UPDATE SET in_progress = excluded.in_progress, at = excluded.at")       \
    X(ST_INFLIGHT_LIST, "SELECT node, cluster, endpoint, in_progress, at FROM load_inflight "      \
                        "WHERE at >= ?1 ORDER BY node, cluster, endpoint")                         \
    X(ST_INFLIGHT_PRUNE, "DELETE FROM load_inflight WHERE at < ?1")                                \
    X(ST_CHECKER_CLEAR, "DELETE FROM hc_checkers WHERE replica = ?1")                              \
    X(ST_CHECKER_UPSERT, "INSERT INTO hc_checkers(node_id, zone, replica, connected_at) "          \
                         "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(node_id) DO UPDATE SET zone = "       \
                         "excluded.zone, replica = excluded.replica, connected_at = "              \
                         "excluded.connected_at")                                                  \
    X(ST_CHECKER_LIST, "SELECT c.node_id, c.zone, c.replica, c.connected_at, "                     \
                       "coalesce(s.endpoints, 0), coalesce(s.at, 0) FROM hc_checkers c JOIN "      \
                       "replicas r ON r.id = c.replica LEFT JOIN hc_specifiers s ON s.checker "    \
                       "= c.node_id WHERE r.heartbeat_at >= ?1 ORDER BY c.node_id LIMIT 1024")     \
    X(ST_VQ_INSERT, "INSERT INTO hc_verdict_queue(service, address, port, checker, verdict, "      \
                    "reason, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)")                              \
    X(ST_VQ_TRIM, "DELETE FROM hc_verdict_queue WHERE id <= (SELECT max(id) FROM "                 \
                  "hc_verdict_queue) - 100000")                                                    \
    X(ST_VQ_READ, "SELECT id, service, address, port, checker, verdict, reason, at FROM "          \
                  "hc_verdict_queue ORDER BY id LIMIT 100000")                                     \
    X(ST_VQ_CLEAR, "DELETE FROM hc_verdict_queue WHERE id <= ?1")                                  \
    X(ST_SPEC_UPSERT, "INSERT INTO hc_specifiers(checker, spec, endpoints, at) VALUES(?1, ?2, "    \
                      "?3, ?4) ON CONFLICT(checker) DO UPDATE SET spec = excluded.spec, "          \
                      "endpoints = excluded.endpoints, at = excluded.at")                          \
    X(ST_SPEC_PRUNE, "DELETE FROM hc_specifiers WHERE checker NOT IN (SELECT node_id FROM "        \
                     "hc_checkers)")                                                               \
    X(ST_SPEC_GET, "SELECT spec, endpoints FROM hc_specifiers WHERE checker = ?1")                 \
    STORE_INPUT_STATEMENTS(X)

#define STORE_STMT_ENUM(id, sql) id,
enum store_stmt_id { STORE_STATEMENTS(STORE_STMT_ENUM) ST__COUNT };

struct store_ha;

struct hf_store {
    const store_backend *be;
    store_conn *conn;
    char *target; /* the --db it was opened with */
    /* Serialises every use of conn and stmts. Lock order: callers hold no other Holdfast lock
     * when they call the store; under this lock only the event hook's lock (REST's ev_lock, a
     * leaf) and the metrics' locks are taken. The change hook runs after it is released. */
    pthread_mutex_t lock;
    store_stmt *stmts[ST__COUNT];
    uint64_t generation;
    _Atomic int64_t down_since; /* store_unavailable_since */
    uint64_t tx_start_ns;
    pthread_mutex_t hook_lock; /* held while the change hook runs, and to change it */
    store_change_fn change_fn;
    store_health_fn health_fn; /* under hook_lock */
    void *health_arg;
    void *change_arg;
    char replica_id[64]; /* this process, among the replicas of a shared database */
    /* replicas, leadership, notifications (store_ha.c); NULL if off. Atomic: published by the
     * main thread after the engines' threads started, read by them (store_is_leader). */
    _Atomic(struct store_ha *) ha;
    int64_t audit_max;       /* audit rows kept (store_set_audit_retention) */
    uint32_t audit_appends;  /* events since the last count against audit_max */
    store_event_fn event_fn; /* under lock; called with lock held (a leaf after it) */
    void *event_arg;
    bool tx_events; /* the open transaction wrote audit events */
};

/* Returns the prepared statement id, reset and with its bindings cleared. */
store_stmt *store__stmt(hf_store *st, enum store_stmt_id id);
/* Steps a statement to SQL_DONE; maps failures (constraints to HF_ECONFLICT). */
int store__exec(hf_store *st, store_stmt *s, hf_detail *d);
/* Database error with the failing statement and the database's message. */
int store__db_fail(hf_store *st, store_stmt *s, hf_detail *d);
/* Locks and starts a write transaction. Returns HF_OK or HF_EDB (then the lock is released). */
int store__begin(hf_store *st, hf_detail *d);
/* Commits when rc == HF_OK, else rolls back; unlocks; runs the change hook after a commit.
 * Returns rc, or HF_EDB when the commit itself failed. */
int store__end(hf_store *st, int rc, hf_detail *d);
/* A read transaction (one consistent state; SQLite BEGIN, PostgreSQL REPEATABLE READ READ
 * ONLY), with the lock held by the caller. store__read_end ends it. */
int store__read_begin(hf_store *st);
void store__read_end(hf_store *st);
/* As store__end, for transactions that change no configuration: no new generation, no hook. */
int store__end_quiet(hf_store *st, int rc, hf_detail *d);
/* As store__end_quiet, and other replicas hear of it as a health notification of kind (see
 * store_health_kind). */
int store__end_health(hf_store *st, int rc, char kind, hf_detail *d);
/* Runs the health hook (the replica thread, for another replica's notification or this one's
 * leadership change). */
void store__health_remote(hf_store *st, char kind);
/* Creates path mode 0600 when it does not exist (SQLite gives the -wal and -shm files the mode
 * of the database); warns when an existing file is readable by others. ":memory:" and "" pass. */
int store__create_private(const char *path, hf_detail *d);
/* Applies the audit retention after an event was appended (store_retention.c): collapses a
 * peer's connect/disconnect rows, and now and then prunes past the row cap. In the transaction. */
int store__retain(hf_store *st, const char *action, const char *object, hf_detail *d);
/* Appends an audit event inside the current transaction. */
int store__event(hf_store *st, const char *actor, const char *action, const char *object,
                 hf_detail *d, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Copies column text (or "" for NULL) into buf. */
void store__col_text(store_stmt *s, int col, char *buf, size_t len);
/* Steps s to the end, reading each row into a new element of a heap array (elem bytes each,
 * zeroed first). Called with the lock held. On success *out and *n hold the array (NULL, 0 if
 * empty); on failure nothing is returned. */
typedef void (*store_row_fn)(hf_store *st, store_stmt *s, void *elem);
int store__collect(hf_store *st, store_stmt *s, size_t elem, store_row_fn read, void **out,
                   size_t *n);
/* The running deployment of a service, if any: HF_OK and id/from/to (each HF_NAME_MAX bytes),
 * or HF_ENOTFOUND. Lock held. */
int store__running_deployment(hf_store *st, int64_t service_id, char *id, char *from, char *to);
/* The one "service is busy" check: HF_ECONFLICT (field "service", naming what runs) while the
 * service has a running blue-green deployment or rolling restart, else HF_OK. Called inside
 * the transaction that would start either, so two starts cannot both pass. */
int store__service_busy(hf_store *st, int64_t service_id, const char *service, hf_detail *d);
/* Reads an endpoint row of ENDPOINT_COLS into elem (an hf_endpoint). */
void store__read_endpoint(hf_store *st, store_stmt *s, void *elem);
/* A statement outside the prepared table (ad hoc, lock held): the caller finalizes it with
 * store__finalize. HF_EDB with d saying why. */
int store__prepare(hf_store *st, const char *sql, store_stmt **out, hf_detail *d);
void store__finalize(hf_store *st, store_stmt *s);
/* The database's message about the last failure. */
const char *store__errmsg(hf_store *st);
/* Rows changed by the last statement, and the row id of the last insert (lock held). */
int64_t sql_changes(hf_store *st);
int64_t sql_last_insert_id(hf_store *st);
/* Runs the change hook with a new generation, and the event hook (a change committed by another
 * replica). */
void store__announce_remote(hf_store *st);
/* Runs the event hook (another replica committed audit events only). */
void store__events_remote(hf_store *st);
/* This process's replica id (host, pid and a random part). */
void store__replica_id_init(hf_store *st);
/* Stops the replica's thread and dedicated session, if started (store_close calls it). */
void store__ha_stop(hf_store *st);
void store__read_endpoint(hf_store *st, store_stmt *s, void *elem);
/* Row readers for ST_GROUP_LIST, SERVICE_COLS and FLEET_COLS rows (store_objects.c). */
void store__read_group(hf_store *st, store_stmt *s, void *elem);
void store__read_service(hf_store *st, store_stmt *s, void *elem);
void store__read_fleet(hf_store *st, store_stmt *s, void *elem);
/* Looks up a service's row id, with a not-found detail naming it. */
int store__service_id(hf_store *st, const char *name, int64_t *id, hf_detail *d);

#endif
