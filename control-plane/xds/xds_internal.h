/*
 * Internals shared by xds.c (lifecycle, the builder thread, the stream registry, the event
 * queue) and ads.c (the ADS protocol on one stream).
 */
#ifndef HF_XDS_INTERNAL_H
#define HF_XDS_INTERNAL_H

#include "grpc_transport.h"
#include "snapshot.h"
#include "xds.h"

#include <pthread.h>
#include <stdatomic.h>

/* A sorted map name -> version (delta xDS bookkeeping). */
typedef struct xds_kv {
    char *name;
    char version[HF_VERSION_LEN];
} xds_kv;

typedef struct xds_kvset {
    xds_kv *items;
    size_t n;
} xds_kvset;

/* The resources of one type a stream last sent (config_dump.c), sorted by name. */
typedef struct xds_sent_item {
    char *name;
    char version[HF_VERSION_LEN];
    hf_rbuf *any; /* a reference to the snapshot's encoded Any */
} xds_sent_item;

typedef struct xds_sent {
    xds_sent_item *items;
    size_t n;
} xds_sent;

/* One type on one stream. */
typedef struct xds_type_state {
    bool active;                  /* the client subscribed to this type */
    xds_names sub;                /* what it subscribed to */
    char nonce[24];               /* of the last response sent */
    bool awaiting;                /* that response is not ACKed or NACKed yet */
    uint64_t sent_ns;             /* monotonic time it was sent */
    char initial[HF_VERSION_LEN]; /* SotW: the version the client had when it subscribed */
    char sent[HF_VERSION_LEN];    /* visible state, copied out by xds_proxies */
    char acked[HF_VERSION_LEN];
    char nack_version[HF_VERSION_LEN];
    char *nack_error; /* heap, only once a NACK came */
    int64_t sent_at, acked_at, nack_at;
    /* delta only */
    xds_kvset known;    /* what the client holds */
    xds_kvset pending;  /* what the last response changes ("" = removed) */
    xds_kvset rejected; /* versions the client NACKed: not re-sent */
    /* what the client was last sent (GET .../config): SotW, the shared response body; delta,
     * the resources it holds */
    hf_rbuf *last_body;
    xds_sent last;
} xds_type_state;

/* What a stream shows in GET /api/v1/proxies, apart from its types. */
typedef struct xds_stream_info {
    uint64_t stream_id;
    char node_id[128];
    char group[64];
    bool group_known;
    char user_agent[128];
    enum xds_node_kind kind;
    char peer[64];
    int64_t connected_since;
    xds_build_version build_version; /* node.user_agent_build_version, when sent */
} xds_stream_info;

typedef struct xds_stream {
    struct xds_stream *prev, *next; /* registry, under srv->reg_lock */
    struct xds_server *srv;
    hf_stream *transport;
    pthread_mutex_t lock; /* everything below */
    bool closed;
    bool delta;
    bool send_busy;
    bool have_node;
    uint64_t nonce_counter;
    xds_stream_info info;
    xds_type_state types[XDS_NTYPES];
} xds_stream;

#define HDS_MAX_K 5

/* One endpoint being health checked, and the checkers it is assigned to. */
typedef struct hds_target {
    char service[HF_NAME_MAX];
    char address[HF_ADDR_MAX];
    uint32_t port;
    char zone[HF_SHORT_MAX];
    char fleet[HF_NAME_MAX];
    enum hf_health health; /* as stored; updated by quorum decisions */
    char assigned[HDS_MAX_K][128];
    int n_assigned;
    int64_t first_bad_at; /* monotonic ms of the first unhealthy verdict since healthy */
} hds_target;

typedef struct hds_checker hds_checker;

struct xds_server {
    hf_store *store;
    hf_grpc_server *grpc;
    hf_grpc_method methods[4];
    uint32_t lrs_interval_ms;
    xds_load_sink load_sink;

    pthread_t thread;
    pthread_mutex_t lock; /* wanted_gen, stopping, events */
    pthread_cond_t cond;
    bool stopping;
    uint64_t wanted_gen;
    struct xds_event *events, *events_tail;
    size_t n_events;

    pthread_mutex_t snap_lock;
    xds_snapshot *snap;

    pthread_mutex_t reg_lock;
    xds_stream *streams;

    /* HDS (hds.c). hds_dirty and hds_pending are under lock; the rest under hds_lock. */
    int hds_replicas;
    bool hds_dirty;   /* assignments must be recomputed */
    bool hds_pending; /* verdicts are queued */
    pthread_mutex_t hds_lock;
    hds_checker *checkers;
    hf_verdict *vq; /* verdicts queued by gRPC threads */
    size_t n_vq;
    hds_target *targets;
    size_t n_targets;
    hf_verdict *verdicts; /* the latest verdict per (endpoint, checker) */
    size_t n_verdicts;
    hf_verdict *unevaluated; /* verdicts that came before their endpoint was assigned */
    size_t n_unevaluated;
    atomic_ullong next_stream_id;
    atomic_int connected[2]; /* by node kind */
};

/* The current snapshot, with a reference for the caller. */
xds_snapshot *xds__snapshot(struct xds_server *srv);
/* Queues an audit event for the xDS thread to write. Never blocks on disk. */
void xds__event(struct xds_server *srv, const char *action, const char *object, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
/* Sends whatever the stream is owed; called with s->lock held. */
void xds__pump(xds_stream *s);
/* Updates the connected-streams gauge. */
void xds__update_gauges(struct xds_server *srv);

/* The transport handlers for SotW and delta ADS (ads.c). */
extern const hf_stream_handler xds__sotw_handler;
extern const hf_stream_handler xds__delta_handler;
/* HDS (hds.c): the stream handler, and the xDS thread's work. */
extern const hf_stream_handler xds__hds_handler;
/* Recomputes assignments from the store and sends changed specifiers. xDS thread only. */
void xds__hds_reassign(struct xds_server *srv);
/* Applies queued verdicts: quorum decisions stored with their events. xDS thread only. */
void xds__hds_process(struct xds_server *srv);
/* Frees HDS state at stop. */
void xds__hds_destroy(struct xds_server *srv);
/* Wakes the xDS thread for HDS work (dirty: reassign; otherwise: verdicts queued). */
void xds__hds_wake(struct xds_server *srv, bool dirty);
/* Records what a response of type t carried (config_dump.c; s->lock held): state of the world,
 * a reference to its shared body (the stream costs one pointer per type); delta, the changes in
 * pending ("" = removed) applied to what the stream holds. xds__sent_clear releases both. */
void xds__sent_sotw(xds_type_state *ts, hf_rbuf *body);
void xds__sent_delta(xds_sent *s, const xds_view *v, enum xds_type t, const xds_kvset *pending);
void xds__sent_clear(xds_type_state *ts);
/* The LRS handler (lrs.c). */
extern const hf_stream_handler xds__lrs_handler;

#endif
