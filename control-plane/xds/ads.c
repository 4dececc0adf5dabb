/*
 * The ADS protocol on one stream (see ads.h), state of the world and delta.
 *
 * Sending: at most one response in flight per stream; what is owed is worked out afresh from the
 * newest snapshot each time a send completes (latest wins, nothing queues). Types go out in
 * make-before-break order CDS, EDS, LDS, RDS, and for Envoy LDS/RDS wait while a CDS or EDS
 * response is unanswered and until Envoy asked for the endpoints of every cluster it accepted.
 *
 * State of the world: CDS and LDS responses carry the complete set; EDS and RDS responses carry
 * only the resources whose version the client does not hold yet ("pseudo delta", as the xDS
 * protocol allows for every type but listeners and clusters). After a cluster changes, its
 * ClusterLoadAssignment is sent again even if the endpoints did not change (Envoy keeps an
 * updated cluster warming until it gets one).
 */
#include "ads.h"

#include "buf.h"
#include "hash.h"
#include "timeutil.h"
#include "wire.h"
#include "xalloc.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__Discovery__V3__DiscoveryRequest DiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest DeltaDiscoveryRequest;
typedef Envoy__Config__Core__V3__Node Node;

#define MAX_IGNORED 4 /* unserved type URLs remembered per stream (xds_proxy_info) */

/* gRPC status codes (the transport's enum lives in the gRPC module). */
enum { ST_INVALID_ARGUMENT = 3, ST_RESOURCE_EXHAUSTED = 8 };

/* ======================================================================================== */
/* name -> version maps (open addressing, linear probing)                                  */
/* ======================================================================================== */

typedef struct nm_slot {
    char *name; /* NULL: empty */
    uint64_t h;
    char version[HF_VERSION_LEN];
} nm_slot;

/* A map from resource name to version, with a fingerprint of its content (equal maps, equal
 * fingerprints) kept up to date in O(1) per change. */
typedef struct namemap {
    nm_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
    uint64_t fp;
} namemap;

static uint64_t entry_fp(const nm_slot *e)
{
    return hf_hash_str(e->h, e->version);
}

static nm_slot *nm_slot_of(const namemap *m, const char *name, uint64_t h)
{
    size_t i = h & (m->cap - 1);
    while (m->slots[i].name != NULL && strcmp(m->slots[i].name, name) != 0) {
        i = (i + 1) & (m->cap - 1);
    }
    return &m->slots[i];
}

static const char *nm_get(const namemap *m, const char *name)
{
    if (m->n == 0) {
        return NULL;
    }
    nm_slot *e = nm_slot_of(m, name, hf_hash_str(HF_HASH_INIT, name));
    return e->name != NULL ? e->version : NULL;
}

static const char *nm_version_of(const void *map, const char *name)
{
    return nm_get(map, name);
}

static void nm_grow(namemap *m)
{
    namemap bigger = {.cap = m->cap ? 2 * m->cap : 4, .fp = m->fp, .n = m->n};
    bigger.slots = xcalloc(bigger.cap, sizeof(*bigger.slots));
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].name != NULL) {
            *nm_slot_of(&bigger, m->slots[i].name, m->slots[i].h) = m->slots[i];
        }
    }
    free(m->slots);
    *m = bigger;
}

static void nm_put(namemap *m, const char *name, const char *version)
{
    if (2 * (m->n + 1) > m->cap) {
        nm_grow(m);
    }
    uint64_t h = hf_hash_str(HF_HASH_INIT, name);
    nm_slot *e = nm_slot_of(m, name, h);
    if (e->name == NULL) {
        e->name = xstrdup(name);
        e->h = h;
        m->n++;
    } else {
        m->fp ^= entry_fp(e);
    }
    snprintf(e->version, sizeof(e->version), "%s", version);
    m->fp ^= entry_fp(e);
}

static void nm_remove(namemap *m, const char *name)
{
    if (m->n == 0) {
        return;
    }
    nm_slot *e = nm_slot_of(m, name, hf_hash_str(HF_HASH_INIT, name));
    if (e->name == NULL) {
        return;
    }
    m->fp ^= entry_fp(e);
    free(e->name);
    e->name = NULL;
    m->n--;
    /* Backward-shift deletion: move later entries of the probe run into the hole. */
    size_t hole = (size_t)(e - m->slots);
    for (size_t i = (hole + 1) & (m->cap - 1); m->slots[i].name != NULL;
         i = (i + 1) & (m->cap - 1)) {
        size_t home = m->slots[i].h & (m->cap - 1);
        bool movable = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
        if (movable) {
            m->slots[hole] = m->slots[i];
            m->slots[i].name = NULL;
            hole = i;
        }
    }
}

static void nm_clear(namemap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].name);
    }
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* The names of m (borrowed; valid until m changes). */
static const char **nm_names(const namemap *m)
{
    const char **names = xcalloc(m->n + 1, sizeof(*names));
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].name != NULL) {
            names[k++] = m->slots[i].name;
        }
    }
    return names;
}

/* ======================================================================================== */
/* subscriptions: sorted, unique name sets                                                   */
/* ======================================================================================== */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_clear(xds_names *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
    }
    free(s->names);
    s->names = NULL;
    s->n = 0;
}

static bool names_has(const xds_names *s, const char *name)
{
    return s->n && bsearch(&name, s->names, s->n, sizeof(char *), cmp_str) != NULL;
}

/* Sorts once and drops duplicates ("*" never enters: it is the wildcard flag). */
static void names_normalise(xds_names *s)
{
    qsort(s->names, s->n, sizeof(char *), cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (k > 0 && strcmp(s->names[k - 1], s->names[i]) == 0) {
            free(s->names[i]);
        } else {
            s->names[k++] = s->names[i];
        }
    }
    s->n = k;
}

/* Adds names (n of them) to s, sorting once, and only when one is new: O(n log |s|) for names
 * already there, O((|s| + n) log) otherwise. */
static void names_add_all(xds_names *s, char *const *names, size_t n)
{
    size_t old = s->n;
    s->names = xrealloc(s->names, (s->n + n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], "*") == 0) {
            s->wildcard = true;
        } else if (old == 0 || bsearch(&names[i], s->names, old, sizeof(char *), cmp_str) == NULL) {
            s->names[s->n++] = xstrdup(names[i]);
        }
    }
    if (s->n > old) {
        names_normalise(s);
    }
}

/* An order-insensitive hash of a list of names (a sum, so a repeated name counts twice and
 * does not match a set without repeats). */
static uint64_t names_sum(char *const *names, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        h += hf_hash_str(HF_HASH_INIT, names[i]);
    }
    return h;
}

/* Removes names (n of them, sorted by the caller) from s: O(|s| log n). */
static void names_remove_all(xds_names *s, char *const *names, size_t n)
{
    xds_names drop = {.names = (char **)names, .n = n};
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (names_has(&drop, s->names[i])) {
            free(s->names[i]);
        } else {
            s->names[k++] = s->names[i];
        }
    }
    s->n = k;
}

/* ======================================================================================== */
/* the stream                                                                               */
/* ======================================================================================== */

/* One type on one stream. */
typedef struct type_state {
    bool active;                  /* the client subscribed to this type */
    bool named;                   /* it has subscribed by name at least once */
    xds_names sub;                /* what it subscribed to */
    uint64_t sub_key;             /* xds_names_key(sub) */
    uint64_t sub_sum;             /* names_sum(sub): a request repeating sub changes nothing */
    char nonce[24];               /* of the last response sent */
    bool awaiting;                /* that response is not ACKed or NACKed yet */
    uint64_t sent_ns;             /* monotonic time it was sent */
    char initial[HF_VERSION_LEN]; /* SotW: the version the client had when it subscribed */
    char sent[HF_VERSION_LEN];    /* visible state, copied out by xds_stream_status */
    char acked[HF_VERSION_LEN];
    char nack_version[HF_VERSION_LEN];
    char *nack_error; /* heap, only once a NACK came */
    int64_t sent_at, acked_at, nack_at;
    namemap known;      /* what the client holds (SotW: was last sent) by name */
    namemap pending;    /* delta: what the last response changes ("" = removed) */
    namemap rejected;   /* delta: versions the client NACKed: not re-sent */
    hf_rbuf *last_body; /* SotW CDS and LDS: the complete body last sent (configuration dump) */
} type_state;

struct xds_stream {
    pthread_mutex_t lock;
    const xds_ads *ads;
    xds_stream_io io;
    bool closed;
    bool delta;
    bool send_busy;
    bool have_node;
    uint64_t nonce_counter;
    xds_stream_info info;
    type_state types[XDS_NTYPES];
    /* Envoy: whether the EDS subscription covers every accepted cluster, for a snapshot serial
     * and EDS subscription (so it is worked out once per change, not per pump) */
    uint64_t cover_serial, cover_key;
    bool covered;
    int only; /* a per-type stream: its enum xds_type + 1; 0 for ADS */
    /* type URLs asked for that holdfast does not serve (shown in /api/v1/proxies; heap, only
     * once one came) */
    char (*ignored)[128];
    int n_ignored;
};

void xds_stream_only(xds_stream *s, enum xds_type t)
{
    pthread_mutex_lock(&s->lock);
    s->only = (int)t + 1;
    pthread_mutex_unlock(&s->lock);
}

xds_stream *xds_stream_open(const xds_ads *ads, const xds_stream_io *io, uint64_t id,
                            const char *peer, bool delta)
{
    xds_stream *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->ads = ads;
    s->io = *io;
    s->delta = delta;
    s->info.delta = delta;
    s->info.stream_id = id;
    s->info.connected_since = hf_now_ms();
    snprintf(s->info.peer, sizeof(s->info.peer), "%s", peer);
    return s;
}

void xds_stream_close(xds_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    if (s->have_node && s->ads->cb.disconnect != NULL) {
        s->ads->cb.disconnect(s->ads->cb.arg, &s->info);
    }
    for (int t = 0; t < XDS_NTYPES; t++) {
        free(s->types[t].nack_error);
        names_clear(&s->types[t].sub);
        nm_clear(&s->types[t].known);
        nm_clear(&s->types[t].pending);
        nm_clear(&s->types[t].rejected);
        hf_rbuf_unref(s->types[t].last_body);
    }
    free(s->ignored);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The version of the complete subscribed set of SotW type t in the newest snapshot: what the
 * proxy should end up ACKing ("" for delta streams and unsubscribed types). s->lock held. */
static void current_version(xds_stream *s, xds_view *v, enum xds_type t, char *out)
{
    const type_state *ts = &s->types[t];
    out[0] = '\0';
    if (s->delta || !ts->active) {
        return;
    }
    xds_sotw_reply r;
    xds_view_sotw(v, t, &ts->sub, ts->sub_key, NULL, &r);
    memcpy(out, r.version, HF_VERSION_LEN);
    xds_sotw_reply_release(&r);
}

/* Fills p from s (s->lock held, a node known); with v, each type's current version too. */
static void status_locked(xds_stream *s, xds_proxy_info *p, xds_view *v)
{
    memset(p, 0, sizeof(*p));
    p->stream_id = s->info.stream_id;
    memcpy(p->node_id, s->info.node_id, sizeof(p->node_id));
    memcpy(p->group, s->info.group, sizeof(p->group));
    p->group_known = s->info.group_known;
    memcpy(p->user_agent, s->info.user_agent, sizeof(p->user_agent));
    p->kind = s->info.kind;
    memcpy(p->peer, s->info.peer, sizeof(p->peer));
    p->delta = s->delta;
    p->connected_since = s->info.connected_since;
    p->build_version = s->info.build_version;
    if (s->n_ignored > 0) {
        memcpy(p->ignored_types, s->ignored, (size_t)s->n_ignored * sizeof(*s->ignored));
    }
    p->n_ignored_types = s->n_ignored;
    p->api = s->only ? xds_type_name((enum xds_type)(s->only - 1)) : "ads";
    for (int t = 0; t < XDS_NTYPES; t++) {
        const type_state *ts = &s->types[t];
        xds_type_status *o = &p->types[t];
        o->subscribed = ts->active;
        memcpy(o->sent, ts->sent, HF_VERSION_LEN);
        memcpy(o->acked, ts->acked, HF_VERSION_LEN);
        memcpy(o->nack_version, ts->nack_version, HF_VERSION_LEN);
        snprintf(o->nack_error, sizeof(o->nack_error), "%s", ts->nack_error ? ts->nack_error : "");
        o->sent_at = ts->sent_at;
        o->acked_at = ts->acked_at;
        o->nack_at = ts->nack_at;
        if (v != NULL) {
            current_version(s, v, (enum xds_type)t, o->current);
        }
    }
}

bool xds_stream_status(xds_stream *s, xds_proxy_info *p)
{
    pthread_mutex_lock(&s->lock);
    bool have = s->have_node;
    if (have) {
        xds_snapshot *snap = s->ads->snapshot(s->ads->snapshot_arg);
        status_locked(s, p, xds_snapshot_view(snap, s->info.group, s->info.kind));
        xds_snapshot_unref(snap);
    }
    pthread_mutex_unlock(&s->lock);
    return have;
}

bool xds_stream_in_group(xds_stream *s, const char *group)
{
    pthread_mutex_lock(&s->lock);
    bool in = s->have_node && strcmp(s->info.group, group) == 0;
    pthread_mutex_unlock(&s->lock);
    return in;
}

bool xds_stream_is_node(xds_stream *s, const char *node_id, uint64_t *stream_id)
{
    pthread_mutex_lock(&s->lock);
    bool is = s->have_node && strcmp(s->info.node_id, node_id) == 0;
    *stream_id = s->info.stream_id;
    pthread_mutex_unlock(&s->lock);
    return is;
}

static int sent_item_cmp(const void *a, const void *b)
{
    return strcmp(((const xds_sent_item *)a)->name, ((const xds_sent_item *)b)->name);
}

/* What the client holds of type t by name and version (delta: with the last response's
 * changes), each with the snapshot's bytes when v still has that version. s->lock held. */
static void dump_held(type_state *ts, bool delta, const xds_view *v, enum xds_type t, xds_sent *out)
{
    out->items = xcalloc(ts->known.n + ts->pending.n + 1, sizeof(*out->items));
    for (int pass = 0; pass < 2; pass++) {
        const namemap *m = pass == 0 ? &ts->known : &ts->pending;
        for (size_t i = 0; i < m->cap && (pass == 0 || delta); i++) {
            const nm_slot *e = &m->slots[i];
            if (e->name == NULL || (pass == 1 && nm_get(&ts->known, e->name) != NULL)) {
                continue; /* empty, or already listed */
            }
            const char *version = pass == 0 && delta ? nm_get(&ts->pending, e->name) : NULL;
            version = version != NULL ? version : e->version;
            if (version[0] == '\0') {
                continue; /* removed by the last response */
            }
            xds_sent_item *it = &out->items[out->n++];
            it->name = xstrdup(e->name);
            memcpy(it->version, version, HF_VERSION_LEN);
            const xds_resource *r = xds_resource_find(&v->res[t], e->name);
            it->any = r != NULL && strcmp(r->version, version) == 0 ? hf_rbuf_ref(r->any) : NULL;
        }
    }
    qsort(out->items, out->n, sizeof(*out->items), sent_item_cmp);
}

bool xds_stream_dump(xds_stream *s, xds_proxy_info *p, xds_sent sent[XDS_NTYPES],
                     hf_rbuf *bodies[XDS_NTYPES])
{
    pthread_mutex_lock(&s->lock);
    bool have = s->have_node;
    if (have) {
        xds_snapshot *snap = s->ads->snapshot(s->ads->snapshot_arg);
        xds_view *v = xds_snapshot_view(snap, s->info.group, s->info.kind);
        status_locked(s, p, NULL);
        for (int t = 0; t < XDS_NTYPES; t++) {
            type_state *ts = &s->types[t];
            memset(&sent[t], 0, sizeof(sent[t]));
            bodies[t] = !s->delta && ts->last_body ? hf_rbuf_ref(ts->last_body) : NULL;
            if (bodies[t] == NULL) {
                dump_held(ts, s->delta, v, (enum xds_type)t, &sent[t]);
            }
        }
        xds_snapshot_unref(snap);
    }
    pthread_mutex_unlock(&s->lock);
    return have;
}

/* Ends the stream for a protocol error; called with s->lock held. */
static void fail(xds_stream *s, int status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->ads->cb.error != NULL) {
        s->ads->cb.error(s->ads->cb.arg, &s->info, msg);
    }
    s->closed = true; /* nothing more is sent on it */
    s->io.finish(s->io.io, status, msg);
}

/* Records the node of the first request. Returns false (stream failed) without one. */
static bool take_node(xds_stream *s, const Node *node)
{
    if (s->have_node) {
        return true;
    }
    if (node == NULL || node->id == NULL || node->id[0] == '\0') {
        fail(s, ST_INVALID_ARGUMENT, "the first request must carry node.id");
        return false;
    }
    if (s->ads->cb.admit != NULL &&
        !s->ads->cb.admit(s->ads->cb.arg, s->io.io, node->id, node->cluster)) {
        s->closed = true; /* refused (PERMISSION_DENIED) by the callee */
        return false;
    }
    xds_stream_info *in = &s->info;
    snprintf(in->node_id, sizeof(in->node_id), "%s", node->id);
    snprintf(in->group, sizeof(in->group), "%s", node->cluster ? node->cluster : "");
    const char *ua = node->user_agent_name ? node->user_agent_name : "";
    const char *uv =
        node->user_agent_version_type_case ==
                ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION
            ? node->user_agent_version
            : "";
    snprintf(in->user_agent, sizeof(in->user_agent), "%s%s%s", ua, uv[0] ? " " : "", uv);
    in->kind = strncmp(ua, "gRPC", 4) == 0 ? XDS_NODE_GRPC : XDS_NODE_ENVOY;
    if (node->user_agent_version_type_case ==
            ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_BUILD_VERSION &&
        node->user_agent_build_version != NULL && node->user_agent_build_version->version) {
        const Envoy__Type__V3__SemanticVersion *sv = node->user_agent_build_version->version;
        in->build_version =
            (xds_build_version){true, sv->major_number, sv->minor_number, sv->patch};
    }
    xds_snapshot *snap = s->ads->snapshot(s->ads->snapshot_arg);
    xds_view *v = xds_snapshot_view(snap, in->group, in->kind);
    in->group_known = v->group[0] != '\0';
    xds_snapshot_unref(snap);
    s->have_node = true;
    if (s->ads->cb.connect != NULL) {
        s->ads->cb.connect(s->ads->cb.arg, in);
    }
    return true;
}

/* Resolves a request's type URL. A type holdfast does not serve (secrets, runtime, extension
 * configs asked for over the same ADS stream) is ignored, as the protocol allows, and noted for
 * /api/v1/proxies: the stream and every other type go on. Returns false when the request is to
 * be ignored or the stream failed. */
static bool take_type(xds_stream *s, const char *url, enum xds_type *t)
{
    if (url == NULL || url[0] == '\0') {
        fail(s, ST_INVALID_ARGUMENT, "ADS requests must name a type_url");
        return false;
    }
    if (xds_type_from_url(url, t) != 0) {
        bool seen = false;
        for (int i = 0; i < s->n_ignored && !seen; i++) {
            seen = strncmp(s->ignored[i], url, sizeof(s->ignored[i]) - 1) == 0;
        }
        if (!seen && s->n_ignored < MAX_IGNORED) {
            if (s->ignored == NULL) {
                s->ignored = xcalloc(MAX_IGNORED, sizeof(*s->ignored));
            }
            char *o = s->ignored[s->n_ignored++];
            size_t i = 0;
            for (; url[i] != '\0' && i < sizeof(s->ignored[0]) - 1; i++) {
                /* peer-supplied: printable ASCII only */
                o[i] = url[i] >= 0x20 && url[i] < 0x7f ? url[i] : '?';
            }
            o[i] = '\0';
        }
        return false;
    }
    if (s->only && (int)*t + 1 != s->only) {
        fail(s, ST_INVALID_ARGUMENT, "this service serves %s only, not '%.120s'",
             xds_type_name((enum xds_type)(s->only - 1)), url);
        return false;
    }
    return true;
}

/* The opening step shared by both variants: is this request an answer (ACK or NACK) to the
 * type's last response? Returns true for such an answer, with *error NULL for an ACK; a stale
 * nonce (an answer to an older response) returns false with *stale set. */
static bool is_answer(const type_state *ts, const char *nonce,
                      const Google__Rpc__Status *error_detail, const char **error, bool *stale)
{
    *stale = false;
    *error = NULL;
    if (nonce == NULL || nonce[0] == '\0') {
        return false;
    }
    if (strcmp(nonce, ts->nonce) != 0 || !ts->awaiting) {
        *stale = strcmp(nonce, ts->nonce) != 0;
        return false;
    }
    if (error_detail != NULL) {
        *error = error_detail->message && error_detail->message[0] ? error_detail->message
                                                                   : "(no message)";
    }
    return true;
}

/* Records an ACK (error NULL) or NACK of the type's last response. */
static void take_reply(xds_stream *s, enum xds_type t, const char *error)
{
    type_state *ts = &s->types[t];
    const xds_callbacks *cb = &s->ads->cb;
    ts->awaiting = false;
    if (error != NULL) {
        memcpy(ts->nack_version, ts->sent, HF_VERSION_LEN);
        free(ts->nack_error);
        ts->nack_error = xstrndup(error, 500);
        ts->nack_at = hf_now_ms();
        if (cb->nack != NULL) {
            cb->nack(cb->arg, &s->info, t, ts->sent, error);
        }
        return;
    }
    memcpy(ts->acked, ts->sent, HF_VERSION_LEN);
    ts->acked_at = hf_now_ms();
    if (cb->ack != NULL) {
        cb->ack(cb->arg, &s->info, t, ts->sent, hf_mono_ns() - ts->sent_ns);
    }
}

/* Checks the size of a request's name list; fails the stream above the cap. */
static bool names_bounded(xds_stream *s, const xds_names *sub, size_t more)
{
    if (more > XDS_MAX_NAMES || sub->n + more > XDS_MAX_NAMES) {
        fail(s, ST_RESOURCE_EXHAUSTED, "a subscription may name at most %d resources",
             XDS_MAX_NAMES);
        return false;
    }
    return true;
}

/* ======================================================================================== */
/* sending                                                                                  */
/* ======================================================================================== */

static hf_rbuf *next_nonce(xds_stream *s, type_state *ts)
{
    snprintf(ts->nonce, sizeof(ts->nonce), "%llu", (unsigned long long)++s->nonce_counter);
    hf_buf b = {0};
    wire_put_string(&b, 5, ts->nonce);
    hf_rbuf *r = hf_rbuf_copy(b.data, b.len);
    hf_buf_destroy(&b);
    return r;
}

/* Sends body plus a fresh nonce as one response of type t; called with s->lock held. */
static bool send_body(xds_stream *s, enum xds_type t, hf_rbuf *body, const char *version)
{
    type_state *ts = &s->types[t];
    char old_nonce[sizeof(ts->nonce)];
    memcpy(old_nonce, ts->nonce, sizeof(old_nonce));
    hf_rbuf *parts[2] = {body, next_nonce(s, ts)}; /* nonce: field 5 in both variants */
    int rc = s->io.send(s->io.io, parts, 2);
    size_t bytes = body->len + parts[1]->len;
    hf_rbuf_unref(parts[1]);
    if (rc != HF_OK) {
        memcpy(ts->nonce, old_nonce, sizeof(old_nonce));
        return false;
    }
    s->send_busy = true;
    ts->awaiting = true;
    ts->sent_ns = hf_mono_ns();
    ts->sent_at = hf_now_ms();
    snprintf(ts->sent, sizeof(ts->sent), "%s", version);
    if (s->ads->cb.push != NULL) {
        s->ads->cb.push(s->ads->cb.arg, &s->info, t, version, bytes);
    }
    return true;
}

/* A cluster that changed (not one that is new) must be followed by its ClusterLoadAssignment
 * even when the endpoints did not change: forget that the client holds it. */
static void clusters_changed(xds_stream *s, xds_resource *const *clusters, size_t n)
{
    type_state *cds = &s->types[XDS_CDS];
    type_state *eds = &s->types[XDS_EDS];
    for (size_t i = 0; i < n; i++) {
        const char *had = nm_get(&cds->known, clusters[i]->name);
        if (had != NULL && strcmp(had, clusters[i]->version) != 0) {
            nm_remove(&eds->known, clusters[i]->name);
        }
        nm_put(&cds->known, clusters[i]->name, clusters[i]->version);
    }
}

/* Envoy: does the EDS subscription cover every cluster it accepted? Worked out once per
 * (snapshot, EDS subscription). A rejected CDS response holds nothing back: its clusters never
 * reach Envoy, so Envoy never asks for their endpoints. */
static bool eds_covers(xds_stream *s, const xds_snapshot *snap, const xds_view *v)
{
    const type_state *cds = &s->types[XDS_CDS];
    const type_state *eds = &s->types[XDS_EDS];
    if (s->cover_serial == snap->serial && s->cover_key == eds->sub_key) {
        return s->covered;
    }
    bool covered = true;
    const xds_resource_list *clusters = &v->res[XDS_CDS];
    for (size_t i = 0; i < clusters->n && covered; i++) {
        covered = eds->active && names_has(&eds->sub, clusters->items[i]->name);
    }
    if (!covered && cds->nack_version[0] != '\0' && strcmp(cds->nack_version, cds->sent) == 0) {
        covered = true;
    }
    s->cover_serial = snap->serial;
    s->cover_key = eds->sub_key;
    s->covered = covered;
    return covered;
}

/* Envoy: LDS and RDS wait while clusters or endpoints are in flight, and until Envoy has asked
 * for the endpoints of every cluster it was sent (make before break: a route never points at a
 * cluster still warming). */
static bool held_back(xds_stream *s, const xds_snapshot *snap, const xds_view *v, enum xds_type t)
{
    if (s->info.kind != XDS_NODE_ENVOY || (t != XDS_LDS && t != XDS_RDS)) {
        return false;
    }
    const type_state *cds = &s->types[XDS_CDS];
    const type_state *eds = &s->types[XDS_EDS];
    if (cds->awaiting || eds->awaiting) {
        return true;
    }
    if (!cds->active || eds->sub.wildcard) {
        return false;
    }
    return !eds_covers(s, snap, v);
}

/* Keeps a reference to the complete-set body (CDS, LDS) last sent, for the configuration dump;
 * EDS and RDS are dumped from what the client holds (known). */
static void keep_body(type_state *ts, enum xds_type t, hf_rbuf *body)
{
    if (t == XDS_CDS || t == XDS_LDS) {
        hf_rbuf_unref(ts->last_body);
        ts->last_body = hf_rbuf_ref(body);
    }
}

/* Tries to send type t (state of the world); returns true when a response went out. */
static bool pump_sotw_type(xds_stream *s, xds_view *v, enum xds_type t)
{
    type_state *ts = &s->types[t];
    bool partial = t == XDS_EDS || t == XDS_RDS;
    xds_held held = {nm_version_of, &ts->known, ts->known.fp};
    xds_sotw_reply r;
    /* The first response of a stream is complete; later EDS/RDS ones carry what changed. */
    xds_view_sotw(v, t, &ts->sub, ts->sub_key, partial && ts->sent[0] ? &held : NULL, &r);
    bool owed = strcmp(r.version, ts->sent) != 0 && strcmp(r.version, ts->nack_version) != 0;
    if (partial && ts->sent[0] != '\0' && r.n_included > 0) {
        owed = true; /* e.g. a cluster update asks for its unchanged endpoints again */
    }
    /* Reconnected holding the current version: nothing to send to Envoy. A gRPC client starts
     * load reporting only once its new ADS stream has seen a response: answer it (issue 12
     * item 9; after a control-plane restart its drain would get no more samples). */
    if (owed && ts->sent[0] == '\0' && strcmp(r.version, ts->initial) == 0 &&
        s->info.kind != XDS_NODE_GRPC) {
        memcpy(ts->sent, r.version, HF_VERSION_LEN);
        memcpy(ts->acked, r.version, HF_VERSION_LEN);
        owed = false;
        for (size_t i = 0; i < r.n_included; i++) {
            nm_put(&ts->known, r.included[i]->name, r.included[i]->version);
        }
        keep_body(ts, t, r.body); /* the client holds them */
    }
    bool sent = false;
    if (owed) {
        sent = send_body(s, t, r.body, r.version);
        if (sent) {
            keep_body(ts, t, r.body);
        }
        if (sent && t == XDS_CDS) {
            clusters_changed(s, r.included, r.n_included);
        }
        for (size_t i = 0; sent && partial && i < r.n_included; i++) {
            nm_put(&ts->known, r.included[i]->name, r.included[i]->version);
        }
    }
    xds_sotw_reply_release(&r);
    return sent;
}

/* Adds resource r to a delta response when the client lacks this version of it. */
static void delta_consider(type_state *ts, const xds_resource *r, hf_buf *b)
{
    const char *have = nm_get(&ts->known, r->name);
    const char *bad = nm_get(&ts->rejected, r->name);
    if ((have != NULL && strcmp(have, r->version) == 0) ||
        (bad != NULL && strcmp(bad, r->version) == 0)) {
        return;
    }
    wire_put_bytes(b, 2, r->delta->data, r->delta->len); /* resources */
    nm_put(&ts->pending, r->name, r->version);
}

/* The delta response body of type t: changed resources, then removed names. */
static void delta_body(type_state *ts, const xds_view *v, enum xds_type t, hf_buf *b)
{
    const xds_resource_list *l = &v->res[t];
    nm_clear(&ts->pending);
    if (ts->sub.wildcard) {
        for (size_t i = 0; i < l->n; i++) {
            delta_consider(ts, l->items[i], b);
        }
    } else {
        for (size_t i = 0; i < ts->sub.n; i++) {
            const xds_resource *r = xds_resource_find(l, ts->sub.names[i]);
            if (r != NULL) {
                delta_consider(ts, r, b);
            }
        }
    }
    const char **held = nm_names(&ts->known);
    for (size_t i = 0; held[i] != NULL; i++) {
        if (xds_resource_find(l, held[i]) == NULL) {
            wire_put_string(b, 6, held[i]); /* removed_resources */
            nm_put(&ts->pending, held[i], "");
        }
    }
    free(held);
}

static bool pump_delta_type(xds_stream *s, xds_view *v, enum xds_type t, uint64_t generation)
{
    type_state *ts = &s->types[t];
    if (ts->awaiting) {
        return false; /* one unanswered response per type keeps the bookkeeping exact */
    }
    hf_buf b = {0};
    delta_body(ts, v, t, &b);
    bool sent = false;
    if (ts->pending.n > 0) {
        char sys[24];
        snprintf(sys, sizeof(sys), "%llu", (unsigned long long)generation);
        wire_put_string(&b, 1, sys);             /* system_version_info */
        wire_put_string(&b, 4, xds_type_url(t)); /* type_url */
        hf_rbuf *body = hf_rbuf_copy(b.data, b.len);
        char version[HF_VERSION_LEN];
        hf_hash_hex(hf_hash_update(HF_HASH_INIT, body->data, body->len), version);
        sent = send_body(s, t, body, version);
        if (!sent) {
            nm_clear(&ts->pending);
        } else if (t == XDS_CDS) {
            /* updated clusters: their endpoints go again (see clusters_changed) */
            for (size_t i = 0; i < ts->pending.cap; i++) {
                const nm_slot *e = &ts->pending.slots[i];
                const char *had = e->name ? nm_get(&ts->known, e->name) : NULL;
                if (had != NULL && e->version[0] != '\0' && strcmp(had, e->version) != 0) {
                    nm_remove(&s->types[XDS_EDS].known, e->name);
                }
            }
        }
        hf_rbuf_unref(body);
    }
    hf_buf_destroy(&b);
    return sent;
}

static void pump_locked(xds_stream *s)
{
    if (s->closed || s->send_busy || !s->have_node) {
        return;
    }
    xds_snapshot *snap = s->ads->snapshot(s->ads->snapshot_arg);
    xds_view *v = xds_snapshot_view(snap, s->info.group, s->info.kind);
    for (int t = 0; t < XDS_NTYPES; t++) {
        if (!s->types[t].active || held_back(s, snap, v, (enum xds_type)t)) {
            continue;
        }
        bool sent = s->delta ? pump_delta_type(s, v, (enum xds_type)t, snap->generation)
                             : pump_sotw_type(s, v, (enum xds_type)t);
        if (sent || s->send_busy) {
            break;
        }
    }
    xds_snapshot_unref(snap);
}

void xds_stream_pump(xds_stream *s)
{
    pthread_mutex_lock(&s->lock);
    pump_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void xds_stream_sent(xds_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->send_busy = false;
    pump_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* ======================================================================================== */
/* requests                                                                                 */
/* ======================================================================================== */

/* Drops from known what is no longer subscribed (SotW: a name dropped and asked for again is
 * sent again). */
static void known_restrict(type_state *ts)
{
    if (ts->sub.wildcard || ts->known.n == 0) {
        return;
    }
    const char **held = nm_names(&ts->known);
    char **drop = xcalloc(ts->known.n + 1, sizeof(*drop));
    size_t n = 0;
    for (size_t i = 0; held[i] != NULL; i++) {
        if (!names_has(&ts->sub, held[i])) {
            drop[n++] = xstrdup(held[i]);
        }
    }
    free(held);
    for (size_t i = 0; i < n; i++) {
        nm_remove(&ts->known, drop[i]);
        free(drop[i]);
    }
    free(drop);
}

static void on_sotw_request(xds_stream *s, DiscoveryRequest *rq)
{
    enum xds_type t;
    if (!take_node(s, rq->node) || !take_type(s, rq->type_url, &t)) {
        return;
    }
    type_state *ts = &s->types[t];
    const char *err;
    bool stale;
    if (is_answer(ts, rq->response_nonce, rq->error_detail, &err, &stale)) {
        take_reply(s, t, err);
    } else if (stale) {
        return; /* an answer to an older response: ignored */
    } else if (rq->response_nonce == NULL || rq->response_nonce[0] == '\0') {
        /* A (re)subscription. A client that already holds the current version is not
         * pushed again: remember what it says it has. */
        ts->active = true;
        snprintf(ts->initial, sizeof(ts->initial), "%s", rq->version_info ? rq->version_info : "");
    }
    xds_names none = {0};
    if (!names_bounded(s, &none, rq->n_resource_names)) {
        return;
    }
    if (rq->n_resource_names > 0 && rq->n_resource_names == ts->sub.n && !ts->sub.wildcard &&
        names_sum(rq->resource_names, rq->n_resource_names) == ts->sub_sum) {
        pump_locked(s); /* the same subscription again (as every ACK repeats it) */
        return;
    }
    names_clear(&ts->sub);
    /* No names is the wildcard only until the client has named resources; after that it
     * unsubscribes from everything (xDS protocol, "How the client specifies..."). */
    ts->sub.wildcard = rq->n_resource_names == 0 && !ts->named;
    ts->named |= rq->n_resource_names > 0;
    names_add_all(&ts->sub, rq->resource_names, rq->n_resource_names);
    ts->sub_key = xds_names_key(t, &ts->sub);
    ts->sub_sum = names_sum(ts->sub.names, ts->sub.n);
    known_restrict(ts);
    pump_locked(s);
}

/* Applies the answer to the last delta response to what the client holds. */
static void delta_answer(type_state *ts, const char *err)
{
    for (size_t i = 0; i < ts->pending.cap; i++) {
        const nm_slot *e = &ts->pending.slots[i];
        if (e->name == NULL) {
            continue;
        }
        if (err != NULL) {
            if (e->version[0] != '\0') {
                nm_put(&ts->rejected, e->name, e->version);
            }
        } else if (e->version[0] == '\0') {
            nm_remove(&ts->known, e->name);
        } else {
            nm_put(&ts->known, e->name, e->version);
        }
    }
    nm_clear(&ts->pending);
}

static void on_delta_request(xds_stream *s, DeltaDiscoveryRequest *rq)
{
    enum xds_type t;
    if (!take_node(s, rq->node) || !take_type(s, rq->type_url, &t)) {
        return;
    }
    type_state *ts = &s->types[t];
    if (!names_bounded(s, &ts->sub, rq->n_resource_names_subscribe)) {
        return;
    }
    if (rq->n_initial_resource_versions > XDS_MAX_NAMES) {
        fail(s, ST_RESOURCE_EXHAUSTED, "at most %d initial_resource_versions", XDS_MAX_NAMES);
        return;
    }
    if (!ts->active) {
        ts->active = true;
        /* The first request: no names means the legacy wildcard (LDS, CDS). */
        ts->sub.wildcard = rq->n_resource_names_subscribe == 0;
        for (size_t i = 0; i < rq->n_initial_resource_versions; i++) {
            nm_put(&ts->known, rq->initial_resource_versions[i]->key,
                   rq->initial_resource_versions[i]->value);
        }
    }
    const char *err;
    bool stale;
    if (is_answer(ts, rq->response_nonce, rq->error_detail, &err, &stale)) {
        delta_answer(ts, err);
        take_reply(s, t, err);
    }
    names_add_all(&ts->sub, rq->resource_names_subscribe, rq->n_resource_names_subscribe);
    char **drop = xcalloc(rq->n_resource_names_unsubscribe + 1, sizeof(*drop));
    size_t n_drop = 0;
    for (size_t i = 0; i < rq->n_resource_names_unsubscribe; i++) {
        const char *name = rq->resource_names_unsubscribe[i];
        if (strcmp(name, "*") == 0) {
            ts->sub.wildcard = false;
        } else {
            drop[n_drop++] = (char *)name;
            nm_remove(&ts->known, name);
        }
    }
    qsort(drop, n_drop, sizeof(*drop), cmp_str);
    names_remove_all(&ts->sub, drop, n_drop);
    free(drop);
    ts->sub_key = xds_names_key(t, &ts->sub);
    pump_locked(s);
}

void xds_stream_message(xds_stream *s, const uint8_t *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    if (s->closed) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (s->delta) {
        DeltaDiscoveryRequest *rq =
            envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, data);
        if (rq == NULL) {
            fail(s, ST_INVALID_ARGUMENT, "cannot decode a DeltaDiscoveryRequest (%zu bytes)", len);
        } else {
            on_delta_request(s, rq);
            envoy__service__discovery__v3__delta_discovery_request__free_unpacked(rq, NULL);
        }
    } else {
        DiscoveryRequest *rq =
            envoy__service__discovery__v3__discovery_request__unpack(NULL, len, data);
        if (rq == NULL) {
            fail(s, ST_INVALID_ARGUMENT, "cannot decode a DiscoveryRequest (%zu bytes)", len);
        } else {
            on_sotw_request(s, rq);
            envoy__service__discovery__v3__discovery_request__free_unpacked(rq, NULL);
        }
    }
    pthread_mutex_unlock(&s->lock);
}
