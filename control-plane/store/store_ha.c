/*
 * Replicas on a shared (PostgreSQL) database: registration and heartbeat, notifications of
 * changes committed by other replicas, leadership, and the load reports replicas pass to the
 * leader. See docs/ha.md for the picture and the bounds.
 *
 * Each replica runs one thread with a dedicated session (not the store's): it LISTENs on
 * holdfast_change (every commit that changed the configuration or wrote audit events NOTIFYs
 * it, with its kind and the committing replica as payload) and runs the change hook (and the
 * event hook, which wakes event streams) for the others' commits; every second it writes its
 * heartbeat (database clock) and, unless it leads, tries pg_try_advisory_lock on the leader key.
 * The lock belongs to the session: when the leader dies or its session is lost, PostgreSQL releases
 * it and the next try of another replica wins (<= 1 s later). A leader that hangs with its session
 * open stops heartbeating; after STORE_LEASE_MS a candidate terminates that session
 * (pg_terminate_backend), which releases the lock. A leader whose own heartbeat has not
 * succeeded for STORE_LEASE_MS - 1 s stops leading by itself (store_is_leader turns false),
 * before anyone may take over. Every 10 s the thread compares the database's change counter
 * with the last it saw: a safety net for notifications lost with a session.
 */
#include "store_internal.h"
#include "store_pg.h"

#include "log.h"
#include "metrics.h"
#include "timeutil.h"
#include "xalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BEAT_MS 1000
#define SAFETY_NET_MS 10000
#define SELF_FENCE_MS (STORE_LEASE_MS - 1000)

struct store_ha {
    hf_store *st;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; /* the fields below */
    bool stopping;
    bool leader;
    int64_t leader_since;   /* ms since the epoch */
    int64_t last_beat_mono; /* ms, monotonic: last successful heartbeat */
    char http[128];
    char xds[128];
    int64_t started_at;
    /* thread only */
    PGconn *pg;
    int64_t seen_changes;
    int64_t next_safety_ms;
};

static int64_t mono_ms(void)
{
    return (int64_t)(hf_mono_ns() / 1000000);
}

void store__replica_id_init(hf_store *st)
{
    char host[40] = "host";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    unsigned r = (unsigned)(hf_mono_ns() ^ ((uint64_t)getpid() << 20));
    snprintf(st->replica_id, sizeof(st->replica_id), "%s-%d-%04x", host, (int)getpid(), r & 0xffff);
}

bool store_is_shared(hf_store *st)
{
    return st->be->shared;
}

bool store_is_leader(hf_store *st)
{
    struct store_ha *ha = st->ha;
    if (!st->be->shared) {
        return true;
    }
    if (ha == NULL) {
        return false;
    }
    pthread_mutex_lock(&ha->lock);
    bool leader = ha->leader && mono_ms() - ha->last_beat_mono < SELF_FENCE_MS;
    pthread_mutex_unlock(&ha->lock);
    return leader;
}

/* ---- the thread's statements (its own session) ---- */

static PGresult *q(struct store_ha *ha, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(ha->pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK) {
        hf_warn("store", "replica session: %s", PQerrorMessage(ha->pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

#define DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

static bool beat(struct store_ha *ha)
{
    char started[32];
    snprintf(started, sizeof(started), "%lld", (long long)ha->started_at);
    const char *p[] = {ha->st->replica_id, ha->http, ha->xds, started};
    PGresult *r = q(ha,
                    "INSERT INTO replicas(id, http_address, xds_address, started_at, heartbeat_at, "
                    "session_pid) VALUES($1, $2, $3, $4::bigint, " DB_NOW_MS ", pg_backend_pid()) "
                    "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
                    "session_pid = excluded.session_pid, http_address = excluded.http_address, "
                    "xds_address = excluded.xds_address",
                    4, p);
    PQclear(r);
    return r != NULL;
}

/* Tries to become the leader; when another replica leads with a stale heartbeat, terminates
 * its session so that the lock is released. */
static void compete(struct store_ha *ha)
{
    PGresult *r = q(ha, "SELECT pg_try_advisory_lock(" STORE_PG_KEY_LEADER ")", 0, NULL);
    bool won = r != NULL && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!won) {
        char lease[32];
        snprintf(lease, sizeof(lease), "%d", STORE_LEASE_MS);
        const char *p[] = {ha->st->replica_id, lease};
        r = q(ha,
              "SELECT id, pg_terminate_backend(session_pid::int) FROM replicas WHERE id <> $1 AND "
              "leader_since > 0 AND session_pid > 0 AND heartbeat_at < " DB_NOW_MS " - $2::bigint",
              2, p);
        for (int i = 0; r != NULL && i < PQntuples(r); i++) {
            hf_warn("store", "replica %s led without a heartbeat for %d ms: ended its session",
                    PQgetvalue(r, i, 0), STORE_LEASE_MS);
        }
        PQclear(r);
        return;
    }
    const char *p[] = {ha->st->replica_id};
    r = q(ha,
          "UPDATE replicas SET leader_since = CASE WHEN id = $1 THEN " DB_NOW_MS
          " ELSE 0 END RETURNING id, leader_since",
          1, p);
    int64_t since = hf_now_ms();
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), ha->st->replica_id) == 0) {
            since = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        }
    }
    PQclear(r);
    pthread_mutex_lock(&ha->lock);
    ha->leader = true;
    ha->leader_since = since;
    pthread_mutex_unlock(&ha->lock);
    hf_info("store", "replica %s is now the leader", ha->st->replica_id);
    store__health_remote(ha->st, STORE_HEALTH_LEADERSHIP);
}

/* The change counter, for the safety net. Returns -1 on failure. */
static int64_t change_count(struct store_ha *ha)
{
    PGresult *r = q(ha, "SELECT changes FROM holdfast_schema WHERE id = 1", 0, NULL);
    int64_t n = r != NULL && PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

static void drop_session(struct store_ha *ha, const char *why)
{
    pthread_mutex_lock(&ha->lock);
    bool was = ha->leader;
    ha->leader = false;
    ha->leader_since = 0;
    pthread_mutex_unlock(&ha->lock);
    if (was) {
        hf_warn("store", "replica %s stops leading: %s", ha->st->replica_id, why);
        store__health_remote(ha->st, STORE_HEALTH_LEADERSHIP);
    }
    PQfinish(ha->pg);
    ha->pg = NULL;
}

static bool session_open(struct store_ha *ha)
{
    char err[256];
    ha->pg = store__pg_connect(ha->st->target, err, sizeof(err));
    if (ha->pg == NULL) {
        return false;
    }
    PGresult *r = q(ha, "SET statement_timeout = 3000", 0, NULL);
    PQclear(r);
    r = r ? q(ha, "LISTEN holdfast_change", 0, NULL) : NULL;
    PQclear(r);
    if (r == NULL || !beat(ha)) {
        PQfinish(ha->pg);
        ha->pg = NULL;
        return false;
    }
    pthread_mutex_lock(&ha->lock);
    ha->last_beat_mono = mono_ms();
    pthread_mutex_unlock(&ha->lock);
    ha->seen_changes = change_count(ha);
    ha->next_safety_ms = mono_ms() + SAFETY_NET_MS;
    return true;
}

/* Waits up to ms for a notification; runs the change hook for other replicas' commits. Returns
 * false when the session is lost. */
static bool listen_for(struct store_ha *ha, int ms)
{
    struct pollfd p = {.fd = PQsocket(ha->pg), .events = POLLIN};
    if (p.fd < 0) {
        return false;
    }
    int n = poll(&p, 1, ms);
    if (n < 0 && errno != EINTR) {
        return false;
    }
    if (n > 0 && PQconsumeInput(ha->pg) == 0) {
        return false;
    }
    bool config = false, events = false;
    char health[8] = "";
    PGnotify *note;
    while ((note = PQnotifies(ha->pg)) != NULL) {
        /* "c REPLICA" (a configuration change), "e REPLICA" (audit events only), or a
         * store_health_kind letter and the replica */
        const char *from = strlen(note->extra) > 2 ? note->extra + 2 : "";
        char kind = note->extra[0];
        if (strcmp(from, ha->st->replica_id) != 0) {
            config = config || kind == 'c';
            events = events || kind == 'e';
            if ((kind == STORE_HEALTH_CHECKERS || kind == STORE_HEALTH_VERDICTS ||
                 kind == STORE_HEALTH_SPECIFIERS) &&
                strchr(health, kind) == NULL) {
                strncat(health, &kind, 1);
            }
        }
        PQfreemem(note);
    }
    if (config) {
        store__announce_remote(ha->st);
    } else if (events) {
        store__events_remote(ha->st);
    }
    for (const char *k = health; *k; k++) {
        store__health_remote(ha->st, *k);
    }
    return PQstatus(ha->pg) == CONNECTION_OK;
}

/* One heartbeat round: heartbeat, leadership, safety net. */
static void round_trip(struct store_ha *ha)
{
    int64_t now = mono_ms();
    bool ok = beat(ha);
    pthread_mutex_lock(&ha->lock);
    if (ok) {
        ha->last_beat_mono = now;
    }
    bool leader = ha->leader;
    bool fenced = leader && now - ha->last_beat_mono >= SELF_FENCE_MS;
    pthread_mutex_unlock(&ha->lock);
    if (fenced || PQstatus(ha->pg) != CONNECTION_OK) {
        drop_session(ha, fenced ? "its heartbeat is failing" : "its session was lost");
        return;
    }
    if (ok && !leader) {
        compete(ha);
    } else if (ok) {
        /* The leader takes the verdicts other replicas queued even if a notification was lost,
         * and sees checkers of replicas that died (their rows outlive them) every 10 s. */
        store__health_remote(ha->st, STORE_HEALTH_VERDICTS);
    }
    hf_gauge_set("holdfast_leader", "1 while this replica leads the engines (docs/ha.md).", "",
                 store_is_leader(ha->st) ? 1 : 0);
    if (now >= ha->next_safety_ms) {
        ha->next_safety_ms = now + SAFETY_NET_MS;
        /* Replicas gone for an hour leave the list. */
        PQclear(
            q(ha, "DELETE FROM replicas WHERE heartbeat_at < " DB_NOW_MS " - 3600000", 0, NULL));
        if (leader) {
            store__health_remote(ha->st, STORE_HEALTH_CHECKERS);
        }
        int64_t n = change_count(ha);
        if (n >= 0 && n != ha->seen_changes) {
            ha->seen_changes = n;
            store__announce_remote(ha->st);
        }
    }
}

static bool stopping(struct store_ha *ha)
{
    pthread_mutex_lock(&ha->lock);
    bool s = ha->stopping;
    pthread_mutex_unlock(&ha->lock);
    return s;
}

static void *ha_main(void *arg)
{
    struct store_ha *ha = arg;
    int64_t next_beat = 0, next_connect = 0;
    bool warned = false;
    while (!stopping(ha)) {
        int64_t now = mono_ms();
        if (ha->pg == NULL) {
            if (now >= next_connect) {
                next_connect = now + BEAT_MS;
                if (session_open(ha)) {
                    hf_info("store", "replica %s: session open", ha->st->replica_id);
                    warned = false;
                    next_beat = now + BEAT_MS;
                    store__announce_remote(ha->st); /* catch up on what was missed */
                    compete(ha);
                } else if (!warned) {
                    hf_warn("store", "replica %s: database unreachable, retrying every second",
                            ha->st->replica_id);
                    warned = true;
                }
            }
            usleep(100 * 1000);
            continue;
        }
        int wait = (int)(next_beat - now);
        if (!listen_for(ha, wait < 0 ? 0 : (wait > 200 ? 200 : wait))) {
            drop_session(ha, "its session was lost");
            continue;
        }
        if (mono_ms() >= next_beat) {
            next_beat = mono_ms() + BEAT_MS;
            round_trip(ha);
        }
    }
    if (ha->pg != NULL) {
        const char *p[] = {ha->st->replica_id};
        PQclear(q(ha, "DELETE FROM replicas WHERE id = $1", 1, p));
        PQfinish(ha->pg); /* releases the leader lock at once */
        ha->pg = NULL;
    }
    return NULL;
}

int store_replica_start(hf_store *st, const char *http_address, const char *xds_address,
                        hf_detail *d)
{
    (void)d;
    if (st->ha != NULL) {
        return HF_OK;
    }
    struct store_ha *ha = xcalloc(1, sizeof(*ha));
    ha->st = st;
    pthread_mutex_init(&ha->lock, NULL);
    snprintf(ha->http, sizeof(ha->http), "%s", http_address ? http_address : "");
    snprintf(ha->xds, sizeof(ha->xds), "%s", xds_address ? xds_address : "");
    ha->started_at = hf_now_ms();
    if (!st->be->shared) {
        ha->leader = true;
        ha->leader_since = ha->started_at;
    }
    st->ha = ha; /* published before its thread starts (see store_internal.h) */
    if (st->be->shared) {
        ha->running = pthread_create(&ha->thread, NULL, ha_main, ha) == 0;
    }
    return HF_OK;
}

void store__ha_stop(hf_store *st)
{
    struct store_ha *ha = st->ha;
    if (ha == NULL) {
        return;
    }
    pthread_mutex_lock(&ha->lock);
    ha->stopping = true;
    pthread_mutex_unlock(&ha->lock);
    if (ha->running) {
        pthread_join(ha->thread, NULL);
    }
    pthread_mutex_destroy(&ha->lock);
    free(ha);
    st->ha = NULL;
}

/* ---- the replica list and the load passed to the leader (the store's own session) ---- */

static void read_replica(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    store_replica *r = elem;
    store__col_text(s, 0, r->id, sizeof(r->id));
    store__col_text(s, 1, r->http_address, sizeof(r->http_address));
    store__col_text(s, 2, r->xds_address, sizeof(r->xds_address));
    r->started_at = sql_column_int64(s, 3);
    r->heartbeat_at = sql_column_int64(s, 4);
    r->leader_since = sql_column_int64(s, 5);
}

/* The one replica of an unshared database: this process, leading since it started. */
static int list_self(hf_store *st, store_replica **out, size_t *n)
{
    store_replica *r = xcalloc(1, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", st->replica_id);
    if (st->ha != NULL) {
        snprintf(r->http_address, sizeof(r->http_address), "%s", st->ha->http);
        snprintf(r->xds_address, sizeof(r->xds_address), "%s", st->ha->xds);
        r->started_at = r->leader_since = st->ha->started_at;
    }
    r->heartbeat_at = hf_now_ms();
    r->alive = r->leader = r->self = true;
    *out = r;
    *n = 1;
    return HF_OK;
}

int store_replica_list(hf_store *st, store_replica **out, size_t *n)
{
    if (!st->be->shared) {
        return list_self(st, out, n);
    }
    store_replica *r = NULL;
    size_t count = 0;
    pthread_mutex_lock(&st->lock);
    int rc = store__collect(st, store__stmt(st, ST_REPLICA_LIST), sizeof(*r), read_replica,
                            (void **)&r, &count);
    pthread_mutex_unlock(&st->lock);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    for (size_t i = 0; i < count; i++) {
        r[i].self = strcmp(r[i].id, st->replica_id) == 0;
        r[i].alive = now - r[i].heartbeat_at < STORE_LEASE_MS;
        r[i].leader = r[i].alive && r[i].leader_since > 0;
        if (!r[i].leader) {
            r[i].leader_since = 0;
        }
    }
    *out = r;
    *n = count;
    return HF_OK;
}

int store_load_push(hf_store *st, const store_load *l, size_t n, hf_detail *d)
{
    if (n == 0) {
        return HF_OK;
    }
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    int64_t now = hf_now_ms();
    for (size_t i = 0; rc == HF_OK && i < n; i++) {
        store_stmt *s = store__stmt(st, ST_LOAD_INSERT);
        sql_bind_text(s, 1, st->replica_id);
        sql_bind_text(s, 2, l[i].cluster);
        sql_bind_text(s, 3, l[i].fleet);
        sql_bind_int64(s, 4, (int64_t)l[i].requests);
        sql_bind_int64(s, 5, now);
        sql_bind_int64(s, 6, l[i].reporters);
        sql_bind_int64(s, 7, l[i].proxies);
        rc = store__exec(st, s, d);
    }
    return store__end_quiet(st, rc, d);
}

static void read_load(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    store_load *l = elem;
    store__col_text(s, 0, l->cluster, sizeof(l->cluster));
    store__col_text(s, 1, l->fleet, sizeof(l->fleet));
    l->requests = (uint64_t)sql_column_int64(s, 2);
    l->reporters = (int32_t)sql_column_int64(s, 3);
    l->proxies = (int32_t)sql_column_int64(s, 4);
}

int store_load_take(hf_store *st, store_load **out, size_t *n, hf_detail *d)
{
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    store_load *l = NULL;
    size_t count = 0;
    rc = store__collect(st, store__stmt(st, ST_LOAD_SUM), sizeof(*l), read_load, (void **)&l,
                        &count);
    if (rc == HF_OK) {
        rc = store__exec(st, store__stmt(st, ST_LOAD_CLEAR), d);
    }
    rc = store__end_quiet(st, rc, d);
    if (rc != HF_OK) {
        free(l);
        return rc;
    }
    *out = l;
    *n = count;
    return HF_OK;
}

int store_inflight_push(hf_store *st, const store_inflight *f, size_t n, hf_detail *d)
{
    if (n == 0) {
        return HF_OK;
    }
    int rc = store__begin(st, d);
    if (rc != HF_OK) {
        return rc;
    }
    for (size_t i = 0; rc == HF_OK && i < n; i++) {
        store_stmt *s = store__stmt(st, ST_INFLIGHT_UPSERT);
        sql_bind_text(s, 1, f[i].node);
        sql_bind_text(s, 2, f[i].cluster);
        sql_bind_text(s, 3, f[i].endpoint);
        sql_bind_int64(s, 4, (int64_t)f[i].in_progress);
        sql_bind_int64(s, 5, f[i].at_ms);
        rc = store__exec(st, s, d);
    }
    return store__end_quiet(st, rc, d);
}

static void read_inflight(hf_store *st, store_stmt *s, void *elem)
{
    (void)st;
    store_inflight *f = elem;
    store__col_text(s, 0, f->node, sizeof(f->node));
    store__col_text(s, 1, f->cluster, sizeof(f->cluster));
    store__col_text(s, 2, f->endpoint, sizeof(f->endpoint));
    f->in_progress = (uint64_t)sql_column_int64(s, 3);
    f->at_ms = sql_column_int64(s, 4);
}

int store_inflight_list(hf_store *st, int64_t since_ms, store_inflight **out, size_t *n)
{
    int rc = store__begin(st, NULL);
    if (rc != HF_OK) {
        return rc;
    }
    store_stmt *s = store__stmt(st, ST_INFLIGHT_PRUNE);
    sql_bind_int64(s, 1, since_ms - 60000);
    rc = store__exec(st, s, NULL);
    store_inflight *f = NULL;
    size_t count = 0;
    if (rc == HF_OK) {
        s = store__stmt(st, ST_INFLIGHT_LIST);
        sql_bind_int64(s, 1, since_ms);
        rc = store__collect(st, s, sizeof(*f), read_inflight, (void **)&f, &count);
    }
    rc = store__end_quiet(st, rc, NULL);
    if (rc != HF_OK) {
        free(f);
        return rc;
    }
    *out = f;
    *n = count;
    return HF_OK;
}
