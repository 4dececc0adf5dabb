/*
 * The store's connection, migrations, transaction helpers, audit events and tokens.
 * Objects (groups, services, fleets, endpoints) are in store_objects.c.
 */
#include "store_internal.h"

#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- migrations: one transaction each, keyed on PRAGMA user_version (SQLite) or the
 * holdfast_schema table (PostgreSQL) ---- */

/* Gives the service `id` (an SQL expression) a new configuration revision. */
#define REV_BUMP(id)                                                                               \
    "UPDATE config_seq SET n = n + 1; UPDATE services SET config_rev = (SELECT n FROM "            \
    "config_seq) WHERE id = " id ";"
/* Insert, update and delete triggers on table that bump its service's revision. */
#define REV_TRIGGERS(tag, table, col)                                                              \
    "CREATE TRIGGER " tag "_rev_insert AFTER INSERT ON " table " BEGIN " REV_BUMP(                 \
        "NEW." col) " END;"                                                                        \
                    "CREATE TRIGGER " tag "_rev_update AFTER UPDATE ON " table                     \
                    " BEGIN " REV_BUMP("NEW." col) " END;"                                         \
                                                   "CREATE TRIGGER " tag                           \
                                                   "_rev_delete AFTER DELETE ON " table            \
                                                   " BEGIN " REV_BUMP("OLD." col) " END;"

/* A step is written in SQLite's dialect; the PostgreSQL driver translates it (store_db.h). A
 * step the translation cannot carry (triggers, say) has its PostgreSQL text in migrations_pg
 * below, which is run as it is. */
static const struct {
    int version;
    const char *sql;
} migrations[] = {
    {1, "CREATE TABLE proxy_groups ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  listener_port INTEGER NOT NULL CHECK (listener_port BETWEEN 1 AND 65535),"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
        "CREATE TABLE services ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  group_id INTEGER NOT NULL REFERENCES proxy_groups(id) ON DELETE RESTRICT,"
        "  affinity_mode TEXT NOT NULL CHECK (affinity_mode IN ('none','cookie','hash_cookie')),"
        "  cookie_name TEXT NOT NULL, ttl_s INTEGER NOT NULL, cookie_path TEXT NOT NULL,"
        "  strict INTEGER NOT NULL,"
        "  hc_protocol TEXT NOT NULL CHECK (hc_protocol IN ('http','tcp')),"
        "  hc_path TEXT NOT NULL, hc_interval_ms INTEGER NOT NULL, hc_timeout_ms INTEGER NOT NULL,"
        "  hc_unhealthy_threshold INTEGER NOT NULL, hc_healthy_threshold INTEGER NOT NULL,"
        "  max_connection_age_s INTEGER NOT NULL, drain_timeout_s INTEGER NOT NULL,"
        "  max_stream_duration_s INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
        "CREATE INDEX services_group ON services(group_id);"
        "CREATE TABLE service_domains ("
        "  service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
        "  group_id INTEGER NOT NULL REFERENCES proxy_groups(id),"
        "  position INTEGER NOT NULL, domain TEXT NOT NULL,"
        "  PRIMARY KEY (service_id, position), UNIQUE (group_id, domain));"
        "CREATE TABLE service_formats ("
        "  service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
        "  position INTEGER NOT NULL, format TEXT NOT NULL,"
        "  PRIMARY KEY (service_id, position));"
        "CREATE TABLE fleets ("
        "  id INTEGER PRIMARY KEY,"
        "  service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE RESTRICT,"
        "  name TEXT NOT NULL, version TEXT NOT NULL, session_format TEXT NOT NULL,"
        "  role TEXT NOT NULL CHECK (role IN ('active','standby','draining','retired')),"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        "  UNIQUE (service_id, name));"
        "CREATE UNIQUE INDEX fleets_one_active ON fleets(service_id) WHERE role = 'active';"
        "CREATE TABLE endpoints ("
        "  id INTEGER PRIMARY KEY,"
        "  fleet_id INTEGER NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,"
        "  service_id INTEGER NOT NULL REFERENCES services(id),"
        "  address TEXT NOT NULL, port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),"
        "  zone TEXT NOT NULL, weight INTEGER NOT NULL,"
        "  admin_state TEXT NOT NULL CHECK (admin_state IN ('active','draining','disabled')),"
        "  health TEXT NOT NULL CHECK (health IN ('unknown','healthy','unhealthy')),"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        "  UNIQUE (service_id, address, port));"
        "CREATE INDEX endpoints_fleet ON endpoints(fleet_id);"
        "CREATE TABLE tokens ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
        "  role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE events ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
        "  object TEXT NOT NULL, summary TEXT NOT NULL);"},
    {2, "ALTER TABLE services ADD COLUMN ttl_in_force_s INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE deployments ("
        "  id TEXT PRIMARY KEY,"
        "  service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
        "  from_fleet TEXT NOT NULL, to_fleet TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('planned','ttl_lowered','draining',"
        "    'rolling_back','completed','rolled_back','aborted')),"
        "  normal_ttl_s INTEGER NOT NULL, lowered_ttl_s INTEGER NOT NULL, lead_s INTEGER NOT NULL,"
        "  tail_threshold_pct REAL NOT NULL, deadline_factor REAL NOT NULL,"
        "  format_change INTEGER NOT NULL, format_acknowledged INTEGER NOT NULL,"
        "  warnings TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        "  ttl_lowered_at INTEGER NOT NULL, cutover_unlocks_at INTEGER NOT NULL,"
        "  cutover_at INTEGER NOT NULL, min_finish_at INTEGER NOT NULL,"
        "  deadline_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,"
        "  finish_reason TEXT NOT NULL, final_tail_pct REAL NOT NULL);"
        "CREATE UNIQUE INDEX deployments_one_running ON deployments(service_id)"
        "  WHERE state IN ('planned','ttl_lowered','draining','rolling_back');"
        "CREATE TABLE tail_samples ("
        "  deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,"
        "  t INTEGER NOT NULL, pct REAL NOT NULL,"
        "  old_requests INTEGER NOT NULL, total_requests INTEGER NOT NULL,"
        "  PRIMARY KEY (deployment_id, t));"},
    {3, "ALTER TABLE endpoints ADD COLUMN health_changed_at INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE health_verdicts ("
        "  endpoint_id INTEGER NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,"
        "  checker TEXT NOT NULL,"
        "  verdict TEXT NOT NULL CHECK (verdict IN ('healthy','unhealthy')),"
        "  at INTEGER NOT NULL,"
        "  PRIMARY KEY (endpoint_id, checker));"},
    {4, "ALTER TABLE services ADD COLUMN hc_reuse_connection INTEGER NOT NULL DEFAULT 1;"},
    {5,
     "CREATE TABLE restarts ("
     "  id TEXT PRIMARY KEY,"
     "  service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,"
     "  fleet TEXT NOT NULL,"
     "  state TEXT NOT NULL CHECK (state IN ('running','paused','completed','aborted')),"
     "  batch_size INTEGER NOT NULL, batches INTEGER NOT NULL, interval_s INTEGER NOT NULL,"
     "  drain_window_s INTEGER NOT NULL, restart_s INTEGER NOT NULL,"
     "  concurrent_batches INTEGER NOT NULL, webhook_url TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER NOT NULL);"
     "CREATE UNIQUE INDEX restarts_one_running ON restarts(service_id)"
     "  WHERE state IN ('running','paused');"
     "CREATE TABLE restart_batches ("
     "  restart_id TEXT NOT NULL REFERENCES restarts(id) ON DELETE CASCADE,"
     "  n INTEGER NOT NULL,"
     "  state TEXT NOT NULL CHECK (state IN ('pending','draining','ready','restarting','done')),"
     "  endpoints TEXT NOT NULL,"
     "  started_at INTEGER NOT NULL, ready_at INTEGER NOT NULL, restarted_at INTEGER NOT NULL,"
     "  done_at INTEGER NOT NULL, webhook_attempts INTEGER NOT NULL, webhook_ok INTEGER NOT NULL,"
     "  drained_early INTEGER NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (restart_id, n));"},
    /* Audit retention: a peer's connect/disconnect rows are found by object. */
    {6, "CREATE INDEX events_object ON events(object, action, id);"},
    /* Issue 13: whose load reports a tail sample is made of. */
    {7, "ALTER TABLE tail_samples ADD COLUMN reporters INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE tail_samples ADD COLUMN connected_proxies INTEGER NOT NULL DEFAULT -1;"},
    /* A revision per service, bumped by triggers whenever anything that shapes its resources
     * changes (its row, domains, formats, fleets, endpoints, deployments, restarts): the
     * snapshot reader re-reads only services whose revision moved. Revisions come from one
     * counter, so a deleted and re-created service never repeats one. */
    {8, "CREATE TABLE config_seq (n INTEGER NOT NULL);"
        "INSERT INTO config_seq SELECT coalesce(max(id), 0) FROM services;"
        "ALTER TABLE services ADD COLUMN config_rev INTEGER NOT NULL DEFAULT 0;"
        "UPDATE services SET config_rev = id;"
        "CREATE TRIGGER services_rev_insert AFTER INSERT ON services BEGIN " REV_BUMP(
            "NEW.id") " END;"
                      "CREATE TRIGGER services_rev_update AFTER UPDATE ON services "
                      "WHEN NEW.config_rev = OLD.config_rev BEGIN " REV_BUMP(
                          "NEW.id") " END;" REV_TRIGGERS("domains", "service_domains", "service_id")
                          REV_TRIGGERS("formats", "service_formats", "service_id")
                              REV_TRIGGERS("fleets", "fleets", "service_id")
                                  REV_TRIGGERS("endpoints", "endpoints", "service_id")
                                      REV_TRIGGERS("deployments", "deployments", "service_id")
                                          REV_TRIGGERS("restarts", "restarts", "service_id")},
    /* health: why a checker said what it said ("HTTP 503 in 2 ms", "connect refused") */
    /* gRPC health checks. hc_protocol's CHECK cannot be altered without rebuilding services,
     * which other tables reference ON DELETE CASCADE: a gRPC check is stored as hc_protocol
     * 'tcp' (its transport) with hc_grpc = 1. */
    {9, "ALTER TABLE health_verdicts ADD COLUMN reason TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE services ADD COLUMN hc_grpc INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE services ADD COLUMN hc_service_name TEXT NOT NULL DEFAULT '';"},
    /* WebSocket and the upstream protocol (issue 12 item 7). A service with a max connection
     * age used to follow the downstream protocol upstream: it keeps doing so ('auto'). */
    {10, "ALTER TABLE services ADD COLUMN websocket INTEGER NOT NULL DEFAULT 0;"
         "ALTER TABLE services ADD COLUMN upstream_protocol TEXT NOT NULL DEFAULT 'http1'"
         "  CHECK (upstream_protocol IN ('http1','http2','auto'));"
         "UPDATE services SET upstream_protocol = 'auto' WHERE max_connection_age_s > 0;"},
    /* Replicas on a shared database (store_ha.c), and the load reports they pass to the leader.
     * IF NOT EXISTS: a database taken back to an older version (tests do) migrates again. */
    {11, "CREATE TABLE IF NOT EXISTS replicas ("
         "  id TEXT PRIMARY KEY, http_address TEXT NOT NULL, xds_address TEXT NOT NULL,"
         "  started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL,"
         "  leader_since INTEGER NOT NULL DEFAULT 0, session_pid INTEGER NOT NULL DEFAULT 0);"
         "CREATE TABLE IF NOT EXISTS load_reports ("
         "  id INTEGER PRIMARY KEY AUTOINCREMENT, replica TEXT NOT NULL, cluster TEXT NOT NULL,"
         "  fleet TEXT NOT NULL, requests INTEGER NOT NULL, at INTEGER NOT NULL,"
         "  reporters INTEGER NOT NULL, proxies INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS load_inflight ("
         "  node TEXT NOT NULL, cluster TEXT NOT NULL, endpoint TEXT NOT NULL,"
         "  in_progress INTEGER NOT NULL, at INTEGER NOT NULL,"
         "  PRIMARY KEY (node, cluster, endpoint));"},
    /* Health checking across replicas (store_health.c): the checkers connected to each replica,
     * the verdicts replicas pass to the leader, and the specifiers the leader assigns. */
    {12, "CREATE TABLE IF NOT EXISTS hc_checkers ("
         "  node_id TEXT PRIMARY KEY, zone TEXT NOT NULL, replica TEXT NOT NULL,"
         "  connected_at INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS hc_verdict_queue ("
         "  id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, address TEXT NOT NULL,"
         "  port INTEGER NOT NULL, checker TEXT NOT NULL, verdict TEXT NOT NULL,"
         "  reason TEXT NOT NULL, at INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS hc_specifiers ("
         "  checker TEXT PRIMARY KEY, spec TEXT NOT NULL, endpoints INTEGER NOT NULL,"
         "  at INTEGER NOT NULL);"},
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* PostgreSQL's own text of the steps that cannot be translated. */
static const struct {
    int version;
    const char *sql;
} migrations_pg[] = {
    /* 8, service revisions: the same bumps as SQLite's triggers, as PL/pgSQL trigger functions. */
    {8, "CREATE TABLE config_seq (n BIGINT NOT NULL); "
        "INSERT INTO config_seq SELECT coalesce(max(id), 0) FROM services; "
        "ALTER TABLE services ADD COLUMN config_rev BIGINT NOT NULL DEFAULT 0; "
        "UPDATE services SET config_rev = id; "
        "CREATE FUNCTION holdfast_rev_bump(sid bigint) RETURNS void LANGUAGE sql AS $f$ "
        "  UPDATE config_seq SET n = n + 1; "
        "  UPDATE services SET config_rev = (SELECT n FROM config_seq) WHERE id = sid; "
        "$f$; "
        "CREATE FUNCTION holdfast_rev_service() RETURNS trigger LANGUAGE plpgsql AS $f$ "
        "BEGIN "
        "  IF TG_OP = 'UPDATE' THEN "
        "    IF NEW.config_rev <> OLD.config_rev THEN RETURN NULL; END IF; "
        "  END IF; "
        "  IF TG_OP = 'DELETE' THEN PERFORM holdfast_rev_bump(OLD.id); ELSE PERFORM "
        "holdfast_rev_bump(NEW.id); END IF; "
        "  RETURN NULL; "
        "END $f$; "
        "CREATE FUNCTION holdfast_rev_child() RETURNS trigger LANGUAGE plpgsql AS $f$ "
        "BEGIN "
        "  IF TG_OP = 'DELETE' THEN PERFORM holdfast_rev_bump(OLD.service_id); "
        "  ELSE PERFORM holdfast_rev_bump(NEW.service_id); END IF; "
        "  RETURN NULL; "
        "END $f$; "
        "CREATE TRIGGER services_rev AFTER INSERT OR UPDATE ON services FOR EACH ROW EXECUTE "
        "FUNCTION holdfast_rev_service(); "
        "CREATE TRIGGER domains_rev AFTER INSERT OR UPDATE OR DELETE ON service_domains FOR EACH "
        "ROW EXECUTE FUNCTION holdfast_rev_child(); "
        "CREATE TRIGGER formats_rev AFTER INSERT OR UPDATE OR DELETE ON service_formats FOR EACH "
        "ROW EXECUTE FUNCTION holdfast_rev_child(); "
        "CREATE TRIGGER fleets_rev AFTER INSERT OR UPDATE OR DELETE ON fleets FOR EACH ROW EXECUTE "
        "FUNCTION holdfast_rev_child(); "
        "CREATE TRIGGER endpoints_rev AFTER INSERT OR UPDATE OR DELETE ON endpoints FOR EACH ROW "
        "EXECUTE FUNCTION holdfast_rev_child(); "
        "CREATE TRIGGER deployments_rev AFTER INSERT OR UPDATE OR DELETE ON deployments FOR EACH "
        "ROW EXECUTE FUNCTION holdfast_rev_child(); "
        "CREATE TRIGGER restarts_rev AFTER INSERT OR UPDATE OR DELETE ON restarts FOR EACH ROW "
        "EXECUTE FUNCTION holdfast_rev_child();"},
};

/* The PostgreSQL text of step version, or NULL to translate the SQLite one. */
static const char *native_step(int version)
{
    for (size_t i = 0; i < sizeof(migrations_pg) / sizeof(migrations_pg[0]); i++) {
        if (migrations_pg[i].version == version && migrations_pg[i].sql != NULL) {
            return migrations_pg[i].sql;
        }
    }
    return NULL;
}

int store_schema_latest(void)
{
    return migrations[N_MIGRATIONS - 1].version;
}

/* Applies the missing migrations, each in one write transaction that re-reads the version
 * first (another replica may have migrated meanwhile). */
static int migrate(hf_store *st, hf_detail *d)
{
    int version;
    if (st->be->get_version(st->conn, &version) != HF_OK) {
        return hf_fail(d, HF_EDB, "", "cannot read the schema version: %s",
                       st->be->errmsg(st->conn));
    }
    if (version > store_schema_latest()) {
        return hf_fail(d, HF_ESCHEMA, "",
                       "database schema version %d is newer than this holdfast supports (%d); "
                       "use a newer holdfast or another --db",
                       version, store_schema_latest());
    }
    for (size_t i = 0; i < N_MIGRATIONS; i++) {
        if (migrations[i].version <= version) {
            continue;
        }
        if (st->be->begin(st->conn) != HF_OK) {
            return hf_fail(d, HF_EDB, "", "cannot migrate: %s", st->be->errmsg(st->conn));
        }
        int rc = st->be->get_version(st->conn, &version) == HF_OK ? HF_OK : HF_EDB;
        if (rc == HF_OK && version < migrations[i].version) {
            const char *native = native_step(migrations[i].version);
            rc = native != NULL && st->be->exec_native != NULL
                     ? st->be->exec_native(st->conn, native, d)
                     : st->be->exec_script(st->conn, migrations[i].sql, d);
            if (rc == HF_OK && st->be->set_version(st->conn, migrations[i].version) != HF_OK) {
                rc = hf_fail(d, HF_EDB, "", "cannot set the schema version: %s",
                             st->be->errmsg(st->conn));
            }
            if (rc == HF_OK) {
                hf_info("store", "migrated schema to version %d", migrations[i].version);
            }
        }
        if (rc == HF_OK && st->be->commit(st->conn, NULL) != HF_OK) {
            rc = hf_fail(d, HF_EDB, "", "cannot commit a migration: %s", st->be->errmsg(st->conn));
        }
        if (rc != HF_OK) {
            st->be->rollback(st->conn);
            return rc;
        }
    }
    return HF_OK;
}

static int prepare_all(hf_store *st, hf_detail *d)
{
#define STORE_STMT_SQL(id, sql) sql,
    static const char *const sql[] = {STORE_STATEMENTS(STORE_STMT_SQL)};
    for (int i = 0; i < ST__COUNT; i++) {
        int rc = st->be->prepare(st->conn, sql[i], &st->stmts[i], d);
        if (rc != HF_OK) {
            return rc;
        }
    }
    return HF_OK;
}

int store_open(const char *target, hf_store **out, hf_detail *d)
{
    hf_store *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->hook_lock, NULL);
    st->generation = 1;
    st->audit_max = STORE_AUDIT_DEFAULT;
    st->be = store__is_pg_target(target) ? &store__pg_backend : &store__sqlite_backend;
    st->target = xstrdup(target);
    store__replica_id_init(st);
    int rc = st->be == &store__sqlite_backend ? store__create_private(target, d) : HF_OK;
    if (rc == HF_OK) {
        rc = st->be->open(target, &st->conn, d);
    }
    if (rc == HF_OK) {
        rc = migrate(st, d);
    }
    if (rc == HF_OK) {
        rc = prepare_all(st, d);
    }
    if (rc != HF_OK) {
        store_close(st);
        return rc;
    }
    *out = st;
    return HF_OK;
}

void store_close(hf_store *st)
{
    if (st == NULL) {
        return;
    }
    store__ha_stop(st);
    for (int i = 0; i < ST__COUNT; i++) {
        if (st->stmts[i] != NULL) {
            st->be->finalize(st->stmts[i]);
        }
    }
    st->be->close(st->conn);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->hook_lock);
    free(st->target);
    free(st);
}

const char *store_backend_name(hf_store *st)
{
    return st->be->name;
}

int store_schema_version(hf_store *st)
{
    int v = -1;
    pthread_mutex_lock(&st->lock);
    st->be->get_version(st->conn, &v);
    pthread_mutex_unlock(&st->lock);
    return v;
}

/* Notes whether the database was reached (errmsg: the failure's message). Lock held. */
static void note_reach(hf_store *st, bool reached)
{
    if (reached) {
        atomic_store(&st->down_since, 0);
    } else if (strncmp(st->be->errmsg(st->conn), "database unavailable", 20) == 0) {
        int64_t none = 0;
        atomic_compare_exchange_strong(&st->down_since, &none, hf_now_ms());
    }
}

int store_ping(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_PING);
    int rc = sql_step(s) == SQL_ROW ? HF_OK : HF_EDB;
    sql_reset(s);
    note_reach(st, rc == HF_OK);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int64_t store_unavailable_since(hf_store *st)
{
    return atomic_load(&st->down_since);
}

void store_set_change_hook(hf_store *st, store_change_fn fn, void *arg)
{
    pthread_mutex_lock(&st->hook_lock);
    st->change_fn = fn;
    st->change_arg = arg;
    pthread_mutex_unlock(&st->hook_lock);
}

/* Runs the change hook (not under the store's lock: the hook may read the store). */
static void run_hook(hf_store *st, uint64_t generation)
{
    pthread_mutex_lock(&st->hook_lock);
    if (st->change_fn != NULL) {
        st->change_fn(st->change_arg, generation);
    }
    pthread_mutex_unlock(&st->hook_lock);
}

void store_set_event_hook(hf_store *st, store_event_fn fn, void *arg)
{
    pthread_mutex_lock(&st->lock);
    st->event_fn = fn;
    st->event_arg = arg;
    pthread_mutex_unlock(&st->lock);
}

uint64_t store_generation(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t g = st->generation;
    pthread_mutex_unlock(&st->lock);
    return g;
}

void store__events_remote(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    if (st->event_fn != NULL) {
        st->event_fn(st->event_arg);
    }
    pthread_mutex_unlock(&st->lock);
}

void store__announce_remote(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t generation = ++st->generation;
    if (st->event_fn != NULL) {
        st->event_fn(st->event_arg); /* its audit events too */
    }
    pthread_mutex_unlock(&st->lock);
    run_hook(st, generation);
}

/* ---- helpers shared with store_objects.c ---- */

store_stmt *store__stmt(hf_store *st, enum store_stmt_id id)
{
    store_stmt *s = st->stmts[id];
    sql_reset(s);
    return s;
}

int store__prepare(hf_store *st, const char *sql, store_stmt **out, hf_detail *d)
{
    return st->be->prepare(st->conn, sql, out, d);
}

void store__finalize(hf_store *st, store_stmt *s)
{
    st->be->finalize(s);
}

const char *store__errmsg(hf_store *st)
{
    return st->be->errmsg(st->conn);
}

int64_t sql_changes(hf_store *st)
{
    return st->be->changes(st->conn);
}

int64_t sql_last_insert_id(hf_store *st)
{
    return st->be->last_insert_id(st->conn);
}

int store__db_fail(hf_store *st, store_stmt *s, hf_detail *d)
{
    const char *msg = st->be->errmsg(st->conn);
    hf_error("store", "statement failed (%.80s): %s", st->be->sql(s), msg);
    return hf_fail(d, HF_EDB, "", "database error: %s", msg);
}

int store__exec(hf_store *st, store_stmt *s, hf_detail *d)
{
    int rc = sql_step(s);
    if (rc == SQL_DONE || rc == SQL_ROW) {
        sql_reset(s);
        return HF_OK;
    }
    sql_reset(s);
    if (rc == HF_ECONFLICT) {
        return hf_fail(d, HF_ECONFLICT, "", "conflict: %s", st->be->errmsg(st->conn));
    }
    return store__db_fail(st, s, d);
}

int store__begin(hf_store *st, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    st->tx_start_ns = hf_mono_ns();
    if (st->be->begin(st->conn) != HF_OK) {
        int rc = hf_fail(d, HF_EDB, "", "cannot start a transaction: %s", st->be->errmsg(st->conn));
        note_reach(st, false);
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    note_reach(st, true);
    return HF_OK;
}

int store__read_begin(hf_store *st)
{
    return st->be->begin_read(st->conn);
}

void store__read_end(hf_store *st)
{
    if (st->be->commit(st->conn, NULL) != HF_OK) {
        st->be->rollback(st->conn);
    }
}

/* kind: 'c' a configuration change (a new generation), 'e' quiet, or a store_health_kind. */
static int end_tx(hf_store *st, int rc, char kind, hf_detail *d)
{
    uint64_t generation = 0;
    bool announce = kind == 'c';
    /* Other replicas hear of a configuration change ("c"), of new audit events ("e"), or of
     * health checking's shared state (a store_health_kind). */
    char note[80];
    snprintf(note, sizeof(note), "%c %s", kind, st->replica_id);
    if (rc == HF_OK) {
        if (st->be->commit(st->conn, kind != 'e' || st->tx_events ? note : NULL) != HF_OK) {
            rc = hf_fail(d, HF_EDB, "", "cannot commit: %s", st->be->errmsg(st->conn));
        } else if (announce) {
            generation = ++st->generation;
        }
    }
    if (rc == HF_OK && st->tx_events && st->event_fn != NULL) {
        st->event_fn(st->event_arg);
    }
    st->tx_events = false;
    if (rc != HF_OK) {
        st->be->rollback(st->conn);
    }
    double secs = (double)(hf_mono_ns() - st->tx_start_ns) / 1e9;
    pthread_mutex_unlock(&st->lock);
    hf_histogram_observe("holdfast_store_transaction_seconds",
                         "Duration of store write transactions.",
                         rc == HF_OK ? "result=\"commit\"" : "result=\"rollback\"", secs);
    if (generation != 0) {
        run_hook(st, generation);
    }
    return rc;
}

int store__end(hf_store *st, int rc, hf_detail *d)
{
    return end_tx(st, rc, 'c', d);
}

int store__end_quiet(hf_store *st, int rc, hf_detail *d)
{
    return end_tx(st, rc, 'e', d);
}

int store__end_health(hf_store *st, int rc, char kind, hf_detail *d)
{
    return end_tx(st, rc, kind, d);
}

void store_set_health_hook(hf_store *st, store_health_fn fn, void *arg)
{
    pthread_mutex_lock(&st->hook_lock);
    st->health_fn = fn;
    st->health_arg = arg;
    pthread_mutex_unlock(&st->hook_lock);
}

void store__health_remote(hf_store *st, char kind)
{
    pthread_mutex_lock(&st->hook_lock);
    if (st->health_fn != NULL) {
        st->health_fn(st->health_arg, (enum store_health_kind)kind);
    }
    pthread_mutex_unlock(&st->hook_lock);
}

int store__event(hf_store *st, const char *actor, const char *action, const char *object,
                 hf_detail *d, const char *fmt, ...)
{
    char summary[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(summary, sizeof(summary), fmt, ap);
    va_end(ap);
    store_stmt *s = store__stmt(st, ST_EVENT_INSERT);
    sql_bind_int64(s, 1, hf_now_ms());
    sql_bind_text(s, 2, actor);
    sql_bind_text(s, 3, action);
    sql_bind_text(s, 4, object);
    sql_bind_text(s, 5, summary);
    st->tx_events = true;
    int rc = store__exec(st, s, d);
    return rc == HF_OK ? store__retain(st, action, object, d) : rc;
}

void store__col_text(store_stmt *s, int col, char *buf, size_t len)
{
    const char *t = sql_column_text(s, col);
    snprintf(buf, len, "%s", t ? t : "");
}

int store__service_id(hf_store *st, const char *name, int64_t *id, hf_detail *d)
{
    store_stmt *s = store__stmt(st, ST_SERVICE_ID);
    sql_bind_text(s, 1, name);
    int rc = sql_step(s);
    if (rc == SQL_ROW) {
        *id = sql_column_int64(s, 0);
        sql_reset(s);
        return HF_OK;
    }
    sql_reset(s);
    if (rc == SQL_DONE) {
        return hf_fail(d, HF_ENOTFOUND, "", "service '%s' does not exist", name);
    }
    return store__db_fail(st, s, d);
}

/* ---- events ---- */

int store_events_append(hf_store *st, const hf_event *events, size_t n, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    for (size_t i = 0; rc == HF_OK && i < n; i++) {
        rc = store__event(st, events[i].actor, events[i].action, events[i].object, d, "%s",
                          events[i].summary);
    }
    return store__end_quiet(st, rc, d);
}

int store_event_append(hf_store *st, const char *actor, const char *action, const char *object,
                       const char *summary, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    rc = store__event(st, actor, action, object, d, "%s", summary);
    return store__end_quiet(st, rc, d);
}

static void read_event(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_event *e = elem;
    e->id = sql_column_int64(s, 0);
    e->at = sql_column_int64(s, 1);
    store__col_text(s, 2, e->actor, sizeof(e->actor));
    store__col_text(s, 3, e->action, sizeof(e->action));
    store__col_text(s, 4, e->object, sizeof(e->object));
    store__col_text(s, 5, e->summary, sizeof(e->summary));
}

int64_t store_event_last_id(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_EVENT_LAST);
    int64_t id = sql_step(s) == SQL_ROW ? sql_column_int64(s, 0) : 0;
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return id;
}

int store_event_list(hf_store *st, int64_t since, int limit, hf_event **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_EVENT_LIST);
    sql_bind_int64(s, 1, since);
    sql_bind_int(s, 2, limit);
    int rc = store__collect(st, s, sizeof(**out), read_event, (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static const char event_query_sql[] =
    "SELECT id, at, actor, action, object, summary FROM events"
    " WHERE (?1 = 0 OR id < ?1)"
    "  AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)"
    "  AND (?3 IS NULL OR object = ?3 OR substr(object, 1, length(?3) + 1) = ?3 || '/')"
    "  AND (?4 IS NULL OR object = 'services/' || ?4"
    "   OR substr(object, 1, length(?4) + 10) = 'services/' || ?4 || '/'"
    "   OR object IN (SELECT 'deployments/' || d.id FROM deployments d"
    "                 JOIN services s ON s.id = d.service_id WHERE s.name = ?4)"
    "   OR object IN (SELECT 'restarts/' || r.id FROM restarts r"
    "                 JOIN services s ON s.id = r.service_id WHERE s.name = ?4))"
    " ORDER BY id DESC LIMIT ?5";

int store_event_query(hf_store *st, const hf_event_filter *f, hf_event **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = NULL;
    int rc = HF_EDB;
    if (store__prepare(st, event_query_sql, &s, NULL) != HF_OK) {
        hf_error("store", "event query: %s", store__errmsg(st));
        goto out;
    }
    sql_bind_int64(s, 1, f->before);
    const char *texts[3] = {f->action, f->object, f->service};
    for (int i = 0; i < 3; i++) {
        if (texts[i] != NULL) {
            sql_bind_text(s, 2 + i, texts[i]);
        }
    }
    sql_bind_int(s, 5, f->limit);
    rc = store__collect(st, s, sizeof(**out), read_event, (void **)out, n);
    /* newest first from the database; oldest first to the caller, like store_event_list */
    for (size_t i = 0; rc == HF_OK && i < *n / 2; i++) {
        hf_event tmp = (*out)[i];
        (*out)[i] = (*out)[*n - 1 - i];
        (*out)[*n - 1 - i] = tmp;
    }
out:
    store__finalize(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- tokens ---- */

int store_token_create(hf_store *st, const char *actor, const char *hash_hex, hf_token *t,
                       hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    store_stmt *s = store__stmt(st, ST_TOKEN_INSERT);
    sql_bind_text(s, 1, t->name);
    sql_bind_text(s, 2, hash_hex);
    sql_bind_text(s, 3, hf_role_name(t->role));
    sql_bind_int64(s, 4, now);
    rc = store__exec(st, s, d);
    int64_t id = sql_last_insert_id(st);
    if (rc == HF_OK) {
        char object[64];
        snprintf(object, sizeof(object), "tokens/%lld", (long long)id);
        rc = store__event(st, actor, "token.create", object, d, "created %s token %lld '%s'",
                          hf_role_name(t->role), (long long)id, t->name);
    }
    rc = store__end(st, rc, d);
    if (rc == HF_OK) {
        t->id = id;
        t->created_at = now;
    }
    return rc;
}

int64_t store_token_count(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_TOKEN_COUNT);
    int64_t n = sql_step(s) == SQL_ROW ? sql_column_int64(s, 0) : -1;
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void read_token(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    hf_token *t = elem;
    t->id = sql_column_int64(s, 0);
    store__col_text(s, 1, t->name, sizeof(t->name));
    hf_role_parse(sql_column_text(s, 2), &t->role);
    t->created_at = sql_column_int64(s, 3);
}

int store_token_lookup(hf_store *st, const char *hash_hex, hf_token *out)
{
    pthread_mutex_lock(&st->lock);
    store_stmt *s = store__stmt(st, ST_TOKEN_LOOKUP);
    sql_bind_text(s, 1, hash_hex);
    int rc = sql_step(s);
    if (rc == SQL_ROW) {
        memset(out, 0, sizeof(*out));
        read_token(st, s, out);
        rc = HF_OK;
    } else {
        rc = rc == SQL_DONE ? HF_ENOTFOUND : HF_EDB;
    }
    sql_reset(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_token_list(hf_store *st, hf_token **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    int rc = store__collect(st, store__stmt(st, ST_TOKEN_LIST), sizeof(**out), read_token,
                            (void **)out, n);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int store_token_delete(hf_store *st, const char *actor, int64_t id, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_TOKEN_DELETE);
    sql_bind_int64(s, 1, id);
    rc = store__exec(st, s, d);
    if (rc == HF_OK && sql_changes(st) == 0) {
        rc = hf_fail(d, HF_ENOTFOUND, "", "token %lld does not exist", (long long)id);
    }
    if (rc == HF_OK) {
        char object[64];
        snprintf(object, sizeof(object), "tokens/%lld", (long long)id);
        rc =
            store__event(st, actor, "token.delete", object, d, "deleted token %lld", (long long)id);
    }
    return store__end(st, rc, d);
}

int store__collect(hf_store *st, store_stmt *s, size_t elem, store_row_fn read, void **out,
                   size_t *n)
{
    char *items = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sql_step(s)) == SQL_ROW) {
        items = xrealloc(items, (count + 1) * elem);
        memset(items + count * elem, 0, elem);
        read(st, s, items + count * elem);
        count++;
    }
    int result = rc == SQL_DONE ? HF_OK : store__db_fail(st, s, NULL);
    sql_reset(s);
    if (result != HF_OK) {
        free(items);
        return result;
    }
    *out = items;
    *n = count;
    return HF_OK;
}
