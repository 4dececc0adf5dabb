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

/* ---- migrations: one transaction each, keyed on PRAGMA user_version ---- */

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
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int store_schema_latest(void)
{
    return migrations[N_MIGRATIONS - 1].version;
}

static int exec_sql(sqlite3 *db, const char *sql, hf_detail *d)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = hf_fail(d, HF_EDB, "", "SQL failed (%.60s...): %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return rc;
    }
    return HF_OK;
}

static int read_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) {
        return HF_EDB;
    }
    int rc = HF_EDB;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = HF_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

static int migrate(sqlite3 *db, hf_detail *d)
{
    int version;
    if (read_user_version(db, &version) != HF_OK) {
        return hf_fail(d, HF_EDB, "", "cannot read PRAGMA user_version: %s", sqlite3_errmsg(db));
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
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", migrations[i].version);
        int rc = exec_sql(db, "BEGIN IMMEDIATE", d);
        if (rc == HF_OK) {
            rc = exec_sql(db, migrations[i].sql, d);
        }
        if (rc == HF_OK) {
            rc = exec_sql(db, pragma, d);
        }
        if (rc == HF_OK) {
            rc = exec_sql(db, "COMMIT", d);
        }
        if (rc != HF_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        hf_info("store", "migrated schema to version %d", migrations[i].version);
    }
    return HF_OK;
}

static int prepare_all(hf_store *st, hf_detail *d)
{
#define STORE_STMT_SQL(id, sql) sql,
    static const char *const sql[] = {STORE_STATEMENTS(STORE_STMT_SQL)};
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[i],
                               NULL) != SQLITE_OK) {
            return hf_fail(d, HF_EDB, "", "cannot prepare statement %d (%.60s): %s", i, sql[i],
                           sqlite3_errmsg(st->db));
        }
    }
    return HF_OK;
}

int store_open(const char *path, hf_store **out, hf_detail *d)
{
    hf_store *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->generation = 1;
    st->audit_max = STORE_AUDIT_DEFAULT;
    int rc = store__create_private(path, d);
    if (rc != HF_OK) {
        goto out;
    }
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = hf_fail(d, HF_EDB, "", "cannot open database %s: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* synchronous=FULL: a transaction acknowledged to a client survives a power cut too. */
    rc = exec_sql(st->db,
                  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                  d);
    if (rc == HF_OK) {
        rc = migrate(st->db, d);
    }
    if (rc == HF_OK) {
        rc = prepare_all(st, d);
    }
out:
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
    for (int i = 0; i < ST__COUNT; i++) {
        sqlite3_finalize(st->stmts[i]);
    }
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

int store_schema_version(hf_store *st)
{
    int v = -1;
    pthread_mutex_lock(&st->lock);
    read_user_version(st->db, &v);
    pthread_mutex_unlock(&st->lock);
    return v;
}

int store_ping(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = store__stmt(st, ST_PING);
    int rc = sqlite3_step(s) == SQLITE_ROW ? HF_OK : HF_EDB;
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void store_set_change_hook(hf_store *st, store_change_fn fn, void *arg)
{
    st->change_fn = fn;
    st->change_arg = arg;
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

/* ---- helpers shared with store_objects.c ---- */

sqlite3_stmt *store__stmt(hf_store *st, enum store_stmt id)
{
    sqlite3_stmt *s = st->stmts[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

int store__db_fail(hf_store *st, sqlite3_stmt *s, hf_detail *d)
{
    const char *sql = sqlite3_sql(s);
    hf_error("store", "statement failed (%.80s): %s", sql, sqlite3_errmsg(st->db));
    return hf_fail(d, HF_EDB, "", "database error: %s", sqlite3_errmsg(st->db));
}

int store__exec(hf_store *st, sqlite3_stmt *s, hf_detail *d)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        sqlite3_reset(s);
        return HF_OK;
    }
    int ext = sqlite3_extended_errcode(st->db);
    sqlite3_reset(s);
    if ((ext & 0xff) == SQLITE_CONSTRAINT) {
        return hf_fail(d, HF_ECONFLICT, "", "conflict: %s", sqlite3_errmsg(st->db));
    }
    return store__db_fail(st, s, d);
}

int store__begin(hf_store *st, hf_detail *d)
{
    pthread_mutex_lock(&st->lock);
    st->tx_start_ns = hf_mono_ns();
    int rc = store__exec(st, store__stmt(st, ST_BEGIN), d);
    if (rc != HF_OK) {
        pthread_mutex_unlock(&st->lock);
    }
    return rc;
}

static int end_tx(hf_store *st, int rc, bool announce, hf_detail *d)
{
    uint64_t generation = 0;
    if (rc == HF_OK) {
        rc = store__exec(st, store__stmt(st, ST_COMMIT), d);
        if (rc != HF_OK) {
            rc = HF_EDB;
        } else if (announce) {
            generation = ++st->generation;
        }
    }
    if (rc == HF_OK && st->tx_events && st->event_fn != NULL) {
        st->event_fn(st->event_arg);
    }
    st->tx_events = false;
    if (rc != HF_OK) {
        sqlite3_step(store__stmt(st, ST_ROLLBACK));
        sqlite3_reset(st->stmts[ST_ROLLBACK]);
    }
    double secs = (double)(hf_mono_ns() - st->tx_start_ns) / 1e9;
    pthread_mutex_unlock(&st->lock);
    hf_histogram_observe("holdfast_store_transaction_seconds",
                         "Duration of store write transactions.",
                         rc == HF_OK ? "result=\"commit\"" : "result=\"rollback\"", secs);
    if (generation != 0 && st->change_fn != NULL) {
        st->change_fn(st->change_arg, generation);
    }
    return rc;
}

int store__end(hf_store *st, int rc, hf_detail *d)
{
    return end_tx(st, rc, true, d);
}

int store__end_quiet(hf_store *st, int rc, hf_detail *d)
{
    return end_tx(st, rc, false, d);
}

int store__event(hf_store *st, const char *actor, const char *action, const char *object,
                 hf_detail *d, const char *fmt, ...)
{
    char summary[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(summary, sizeof(summary), fmt, ap);
    va_end(ap);
    sqlite3_stmt *s = store__stmt(st, ST_EVENT_INSERT);
    sqlite3_bind_int64(s, 1, hf_now_ms());
    sqlite3_bind_text(s, 2, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, object, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, summary, -1, SQLITE_TRANSIENT);
    st->tx_events = true;
    int rc = store__exec(st, s, d);
    return rc == HF_OK ? store__retain(st, action, object, d) : rc;
}

void store__col_text(sqlite3_stmt *s, int col, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(buf, len, "%s", t ? (const char *)t : "");
}

int store__service_id(hf_store *st, const char *name, int64_t *id, hf_detail *d)
{
    sqlite3_stmt *s = store__stmt(st, ST_SERVICE_ID);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return HF_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) {
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

static void read_event(hf_store *st, sqlite3_stmt *s, void *elem)
{
    (void)st;
    hf_event *e = elem;
    e->id = sqlite3_column_int64(s, 0);
    e->at = sqlite3_column_int64(s, 1);
    store__col_text(s, 2, e->actor, sizeof(e->actor));
    store__col_text(s, 3, e->action, sizeof(e->action));
    store__col_text(s, 4, e->object, sizeof(e->object));
    store__col_text(s, 5, e->summary, sizeof(e->summary));
}

int64_t store_event_last_id(hf_store *st)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = store__stmt(st, ST_EVENT_LAST);
    int64_t id = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->lock);
    return id;
}

int store_event_list(hf_store *st, int64_t since, int limit, hf_event **out, size_t *n)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = store__stmt(st, ST_EVENT_LIST);
    sqlite3_bind_int64(s, 1, since);
    sqlite3_bind_int(s, 2, limit);
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
    sqlite3_stmt *s = NULL;
    int rc = HF_EDB;
    if (sqlite3_prepare_v2(st->db, event_query_sql, -1, &s, NULL) != SQLITE_OK) {
        hf_error("store", "event query: %s", sqlite3_errmsg(st->db));
        goto out;
    }
    sqlite3_bind_int64(s, 1, f->before);
    const char *texts[3] = {f->action, f->object, f->service};
    for (int i = 0; i < 3; i++) {
        if (texts[i] != NULL) {
            sqlite3_bind_text(s, 2 + i, texts[i], -1, SQLITE_STATIC);
        }
    }
    sqlite3_bind_int(s, 5, f->limit);
    rc = store__collect(st, s, sizeof(**out), read_event, (void **)out, n);
    /* newest first from the database; oldest first to the caller, like store_event_list */
    for (size_t i = 0; rc == HF_OK && i < *n / 2; i++) {
        hf_event tmp = (*out)[i];
        (*out)[i] = (*out)[*n - 1 - i];
        (*out)[*n - 1 - i] = tmp;
    }
out:
    sqlite3_finalize(s);
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
    sqlite3_stmt *s = store__stmt(st, ST_TOKEN_INSERT);
    sqlite3_bind_text(s, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, hash_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, hf_role_name(t->role), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    rc = store__exec(st, s, d);
    int64_t id = sqlite3_last_insert_rowid(st->db);
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
    sqlite3_stmt *s = store__stmt(st, ST_TOKEN_COUNT);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void read_token(hf_store *st, sqlite3_stmt *s, void *elem)
{
    (void)st;
    hf_token *t = elem;
    t->id = sqlite3_column_int64(s, 0);
    store__col_text(s, 1, t->name, sizeof(t->name));
    hf_role_parse((const char *)sqlite3_column_text(s, 2), &t->role);
    t->created_at = sqlite3_column_int64(s, 3);
}

int store_token_lookup(hf_store *st, const char *hash_hex, hf_token *out)
{
    pthread_mutex_lock(&st->lock);
    sqlite3_stmt *s = store__stmt(st, ST_TOKEN_LOOKUP);
    sqlite3_bind_text(s, 1, hash_hex, -1, SQLITE_STATIC);
    int rc = HF_ENOTFOUND;
    if (sqlite3_step(s) == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        read_token(st, s, out);
        rc = HF_OK;
    }
    sqlite3_reset(s);
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
    sqlite3_stmt *s = store__stmt(st, ST_TOKEN_DELETE);
    sqlite3_bind_int64(s, 1, id);
    rc = store__exec(st, s, d);
    if (rc == HF_OK && sqlite3_changes(st->db) == 0) {
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

int store__collect(hf_store *st, sqlite3_stmt *s, size_t elem, store_row_fn read, void **out,
                   size_t *n)
{
    char *items = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        items = xrealloc(items, (count + 1) * elem);
        memset(items + count * elem, 0, elem);
        read(st, s, items + count * elem);
        count++;
    }
    int result = rc == SQLITE_DONE ? HF_OK : store__db_fail(st, s, NULL);
    sqlite3_reset(s);
    if (result != HF_OK) {
        free(items);
        return result;
    }
    *out = items;
    *n = count;
    return HF_OK;
}
